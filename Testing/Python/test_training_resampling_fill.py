"""Training with a CT resampled onto another grid with a fill outside its original field of view (SimpleITK's default
0 HU): the slice cache gives the network -1024 HU there, as ``segment`` does
(:mod:`LiverTumorSegLib.inference.resampling_fill`), and the training log names the case with the fill's volume.
Before, the network learned 0 HU tissue labelled background there, which ``segment`` never shows it."""
import json
from pathlib import Path

import numpy as np
import pytest

from LiverTumorSegLib.io import write_label_map, write_volume
from LiverTumorSegLib.orientation import canonicalize
from LiverTumorSegLib.phantom import make_phantom
from LiverTumorSegLib.preprocessing import PreprocessingConfig, SlicePreprocessor
from LiverTumorSegLib.training.datasets import Case
from LiverTumorSegLib.training.slice_cache import build_slice_cache
from LiverTumorSegLib.volume import CTVolume

FILL_FROM_ROW = 32  # rows 32-39 of the 40 (y) hold the fill: 8 x 44 pixels in each of 6 slices
VOXEL_ML = 0.7 * 0.7 * 3.0 / 1000.0


def _config():
    return PreprocessingConfig(channels=[{"kind": "window", "level": 40.0, "width": 400.0}], context_slices=1,
                               crop_to_body=False, size_multiple=8, target_spacing_mm=None)  # native pixels


def _case(tmp_path, fill_hu):
    """A phantom CT (6 x 40 x 44, 0.7 x 0.7 x 3 mm, 20 HU noise) with rows from :data:`FILL_FROM_ROW` on set to
    ``fill_hu`` (None: as it is) and no label there, written as a case; and that CT with -1024 there."""
    phantom = make_phantom((6, 40, 44), (0.7, 0.7, 3.0), noise_hu=20.0, seed=0)
    hu, labels = phantom.ct.array.copy(), phantom.labels.copy()
    as_air = hu.copy()
    if fill_hu is not None:
        hu[:, FILL_FROM_ROW:], as_air[:, FILL_FROM_ROW:], labels[:, FILL_FROM_ROW:] = fill_hu, -1024, 0
    ct = CTVolume(hu, phantom.ct.geometry)
    image = write_volume(tmp_path / "ct.nii.gz", ct)
    label = write_label_map(tmp_path / "lab.nii.gz", labels, ct.geometry)
    return Case("c", "p", str(image), str(label), "csv"), CTVolume(as_air, ct.geometry), ct


def test_a_training_ct_s_0_hu_fill_is_cached_as_air_and_logged(tmp_path):
    case, as_air, ct = _case(tmp_path, 0)
    preprocessor = SlicePreprocessor(_config())
    said = []
    (cached,) = build_slice_cache([case], preprocessor, tmp_path / "cache", log=said.append)
    expected, _ = preprocessor.spatial_forward(canonicalize(as_air)[0].array, ct.spacing_zyx)
    as_read, _ = preprocessor.spatial_forward(canonicalize(ct)[0].array, ct.spacing_zyx)
    assert not np.allclose(as_read, expected, atol=1.0)  # the fill reaches the network grid
    np.testing.assert_allclose(cached.hu, expected, atol=1e-3)
    fill_ml = 6 * 8 * 44 * VOXEL_ML
    assert cached.resampling_fill == {"values_hu": [0.0], "volume_ml": round(fill_ml, 1), "read_as_hu": -1024.0}
    named = [line for line in said if line.startswith("case c: ")]
    assert len(named) == 1 and f"{fill_ml:.0f} mL of its CT hold exactly 0 HU" in named[0]
    assert "-1024 HU (air)" in named[0]
    # reused from the cache, the case is named again in that run's log
    said.clear()
    (again,) = build_slice_cache([case], preprocessor, tmp_path / "cache", log=said.append)
    assert not [line for line in said if line.startswith("caching")]  # served, not rebuilt
    assert [line for line in said if line.startswith("case c: ")] == named
    np.testing.assert_allclose(again.hu, expected, atol=1e-3)


@pytest.mark.parametrize("fill_hu", [None, -1024])
def test_a_training_ct_without_a_0_hu_fill_is_cached_as_it_is(tmp_path, fill_hu):
    case, _, ct = _case(tmp_path, fill_hu)
    preprocessor = SlicePreprocessor(_config())
    said = []
    (cached,) = build_slice_cache([case], preprocessor, tmp_path / "cache", log=said.append)
    as_read, _ = preprocessor.spatial_forward(canonicalize(ct)[0].array, ct.spacing_zyx)
    np.testing.assert_allclose(cached.hu, as_read, atol=1e-3)
    assert cached.resampling_fill is None and not [line for line in said if line.startswith("case c: ")]


def test_an_entry_cached_before_fills_were_read_is_cached_again(tmp_path):
    """An entry whose sidecar lacks ``resampling_fill`` was made by a version that cached the fill as it is: it is
    rebuilt, not served (and the cache key's version changed with this, so a whole older cache is not used)."""
    case, as_air, ct = _case(tmp_path, 0)
    preprocessor = SlicePreprocessor(_config())
    (cached,) = build_slice_cache([case], preprocessor, tmp_path / "cache")
    meta_path = Path(cached.hu_path[:-len(".hu.npy")] + ".json")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    del meta["resampling_fill"]
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    said = []
    (again,) = build_slice_cache([case], preprocessor, tmp_path / "cache", log=said.append)
    assert [line for line in said if line.startswith("caching")]
    assert again.resampling_fill is not None
