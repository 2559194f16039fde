"""The engine's restore writes each batch straight into the CT's label (and probability) volume where it can, else
into scratch slices kept for the whole CT (LiverTumorSegLib.inference.engine._finish, restore_targets). Both give the
numbers of a restore into new arrays, on a CT stored as the canonical grid (views) and one stored flipped (scratch),
and the scratch is reused across batches and let go at the end."""
import numpy as np
import pytest

import LiverTumorSegLib.inference.engine as engine_module
from LiverTumorSegLib.inference.engine import SliceInferenceEngine
from LiverTumorSegLib.volume import CTVolume

from inference_helpers import corner_phantom, reoriented, tiny_unet_package


@pytest.fixture(scope="module")
def tiny_package(tmp_path_factory):
    return tiny_unet_package(tmp_path_factory.mktemp("restore_into"))


def _predict(package, volume, everywhere=True):
    engine = SliceInferenceEngine(package, device="cpu", precision="fp32", batch_size=3, threads=1)
    labels, probability = engine.predict_with_probability(volume, probability_everywhere=everywhere)
    return engine, labels, probability


def _new_arrays_each_batch(monkeypatch):
    """The restore as before: no views of the volume, a new (garbage-filled) pair of arrays per batch."""
    monkeypatch.setattr(engine_module, "restore_targets", lambda labels, probability, indices: None)

    def fresh(self, count, shape_yx, with_probability):
        arrays = [np.full((count,) + tuple(shape_yx), 255, np.uint8) for _ in range(2)]
        return arrays[0], arrays[1] if with_probability else None

    monkeypatch.setattr(SliceInferenceEngine, "_restore_scratch", fresh)


STORED = {"LPS": ((0, 1, 2), (False, False, False)),  # the canonical grid itself: views of the volume
          "RAS": ((0, 1, 2), (False, True, True)),  # a flipped canonical view: the scratch path
          "permuted": ((1, 2, 0), (False, False, False))}  # transposed, no flip: strided views of the volume


@pytest.mark.parametrize("stored", sorted(STORED))
def test_restore_into_the_volume_or_scratch_gives_the_numbers_of_new_arrays(tiny_package, monkeypatch, stored):
    phantom = corner_phantom(shape_zyx=(10, 40, 44))
    volume, _ = reoriented(phantom.ct, phantom.labels, *STORED[stored])
    targets = []
    real_targets = engine_module.restore_targets
    monkeypatch.setattr(engine_module, "restore_targets",
                        lambda *args: targets.append(real_targets(*args)) or targets[-1])
    engine, labels, probability = _predict(tiny_package, volume)
    assert engine._scratch is None  # let go with the CT
    batches = -(-volume.array.shape[STORED[stored][0].index(0)] // 3)  # the canonical z: 10 slices, batches of 3
    assert len(targets) == batches == 4 and all((t is None) == (stored == "RAS") for t in targets)
    monkeypatch.undo()
    _new_arrays_each_batch(monkeypatch)
    _, labels_before, probability_before = _predict(tiny_package, volume)
    np.testing.assert_array_equal(labels, labels_before)
    np.testing.assert_array_equal(probability, probability_before)
    assert probability.max() > 0 and labels.size == volume.array.size


def test_scratch_slices_are_reused_by_every_batch_of_a_ct(tiny_package, monkeypatch):
    phantom = corner_phantom(shape_zyx=(10, 40, 44))
    volume, _ = reoriented(phantom.ct, phantom.labels, (0, 1, 2), (False, True, True))
    real = SliceInferenceEngine._restore_scratch
    bases = []

    def recording(self, count, shape_yx, with_probability):
        out = real(self, count, shape_yx, with_probability)
        bases.append((out[0].base if out[0].base is not None else out[0], count))
        return out

    monkeypatch.setattr(SliceInferenceEngine, "_restore_scratch", recording)
    engine, labels, _ = _predict(tiny_package, volume)
    assert [count for _, count in bases] == [3, 3, 3, 1]
    assert all(base is bases[0][0] for base, _ in bases)  # one allocation for the CT
    assert engine._scratch is None
    assert isinstance(volume, CTVolume) and labels.shape == volume.array.shape
