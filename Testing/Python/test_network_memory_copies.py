"""The memory check before ``segment``'s network (``Segmenter.check_network_memory``) against the bytes the run
really allocates, measured with ``tracemalloc``, on the paths where the CT the network is given is a copy or a
relabelled view of the CT: a resampling's fill made air (a copy, and its mask), a small body enlarged in-plane (a
view, a larger network grid), a float64 CT, and a network-grid CT prepared ahead of the engine.

What the check asks for is ``required - CT bytes - held_bytes``: the copies made before the check (the fill's copy
and mask) are already taken from the available memory when it reads it, so they are not asked for again; neither is
a network-grid CT prepared ahead (``held_bytes``). Without the network (a numpy stand-in here) the part of that ask
numpy can allocate is the ask less the runtime's share and the live activations; the bytes traced from the check to
the end of the network phase stay within it. The ask's per-batch terms are the real network's (torch's copies, which
``tracemalloc`` does not see): the stand-in allocates about half of them, so an upper bound is asserted on what
changes between paths (the enlarged grid, the prepared CT), not on the whole ask.
"""
import types

import numpy as np
import pytest

from inference_helpers import oracle_predictor

from LiverTumorSegLib import validation
from LiverTumorSegLib.inference.body_size import PACKAGE_KEY
from LiverTumorSegLib.volume import CTVolume, ImageGeometry

pytest.importorskip("torch")  # the engine's in-plane resampling

MARGIN_BYTES = 64 * 1024
"""Python objects ``tracemalloc`` counts beside the arrays (a few kB)."""
SPACING_XYZ = (1.5, 1.5, 3.0)  # mm
TRAINING_BODY_MM = 315.0


def _ct(dtype, fill=None, body_mm=150.0, shape=(4, 128, 128)):
    """``(z, y, x)`` CT in HU of ``dtype``: an elliptic body (``body_mm`` wide left-right, 0.7x that front-back; a
    child's below 236 mm) of fat, muscle and a 60 HU core with 15 HU of noise, in air; ``fill`` (HU) in the slices'
    four corners, as a grid turned in-plane leaves them (none: air there)."""
    z, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    half_mm = body_mm / 2.0
    r = np.hypot((xx - (w - 1) / 2) * SPACING_XYZ[0] / half_mm, (yy - (h - 1) / 2) * SPACING_XYZ[1] / (0.7 * half_mm))
    plane = np.select([r <= 0.6, r <= 0.8, r <= 1.0], [60.0, 40.0, -100.0], -1000.0)
    hu = np.rint(plane[None] + np.random.default_rng(0).normal(0.0, 15.0, shape))
    if fill is not None:
        hu[:, (np.abs(xx - (w - 1) / 2) + np.abs(yy - (h - 1) / 2)) > 0.73 * w] = fill
    return CTVolume(hu.astype(dtype), ImageGeometry(spacing=SPACING_XYZ))


def _segmenter(body_size_scaling=True):
    """A Segmenter over the engine with a numpy stand-in network (the oracle), resampling to 1.5 mm."""
    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference.engine import SliceInferenceEngine
    from LiverTumorSegLib.inference.postprocess import PostprocessingOptions
    from LiverTumorSegLib.inference.segmenter import Segmenter
    from LiverTumorSegLib.preprocessing import PreprocessingConfig

    config = PreprocessingConfig(channels=[dict(kind="window", level=50.0, width=100.0)], context_slices=0,
                                 target_spacing_mm=1.5, size_multiple=1, crop_to_body=False)
    package = types.SimpleNamespace(preprocessing=config, model=None, name="oracle", path="oracle",
                                    metadata={PACKAGE_KEY: {"adult": TRAINING_BODY_MM}})
    engine = SliceInferenceEngine(package, device="cpu", threads=1, batch_size=8, batch_predictor=oracle_predictor)
    return Segmenter(SegmentationOptions(postprocessing=PostprocessingOptions.disabled(),
                                         body_size_scaling=body_size_scaling), engine=engine)


def _asked_bytes(segmenter, volume, monkeypatch):
    """The bytes ``segmenter.check_network_memory(volume)`` asks for beside what is held: the least available
    memory it lets through (found by bisection on the available bytes it reads)."""
    from LiverTumorSegLib.errors import ResourceError

    low, high = 0, 1 << 40
    while low < high:
        middle = (low + high) // 2
        monkeypatch.setattr(validation, "available_memory_bytes", lambda *args, **kwargs: middle)
        try:
            segmenter.check_network_memory(volume)
            high = middle
        except ResourceError:
            low = middle + 1
    return low


def _numpy_share(asked, network_volume, segmenter):
    """``asked`` less what numpy never allocates here: the runtime's share and the live activations of a batch."""
    config = segmenter.engine.preprocessing
    nz, h, w = validation.network_grid_zyx(network_volume.shape_zyx, network_volume.geometry.spacing[::-1], config)
    activations = min(8, nz) * 4 * validation.ACTIVATION_FEATURE_MAPS * h * w
    return asked - validation.RUNTIME_OVERHEAD_BYTES - activations


def _traced_after_check(segmenter, volume, monkeypatch, prepare_ahead=False):
    """``(asked bytes, bytes traced at the check, peak bytes traced from the check to the end of predict)``: the
    network form made (and, with ``prepare_ahead``, its network-grid CT prepared and offered to the engine, as
    ``segment``'s load and a batch's reader do) before the check, as in ``segment_file``."""
    import importlib
    import tracemalloc

    from LiverTumorSegLib.inference.prepared_input import prepare_input

    importlib.import_module("scipy.ndimage")
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        network_volume = segmenter.network_volume(volume)[0]
        if prepare_ahead:
            segmenter.engine.offer_prepared(prepare_input(network_volume, segmenter.engine.preprocessing))
        offered = segmenter.engine._offered
        asked = _asked_bytes(segmenter, volume, monkeypatch)
        segmenter.engine._offered = offered  # the bisection's checks leave the offer as it was
        held = tracemalloc.get_traced_memory()[0] - start
        tracemalloc.reset_peak()
        segmenter.predict(volume)
        peak = tracemalloc.get_traced_memory()[1] - start - held
    finally:
        tracemalloc.stop()
    return asked, held, peak, network_volume


@pytest.mark.parametrize("dtype", [np.int16, np.float64])
def test_a_resampling_fill_s_copy_is_held_at_the_check_and_costs_nothing_after_it(dtype, monkeypatch):
    """The copy given to the network (the fill made air) and the fill's mask are made before the check (held then)
    and the available memory it reads has them taken off, so the original CT beside the copy needs no count of its
    own: the same CT without a fill is asked the same bytes, and its run allocates as much after the check. (A first,
    untraced run imports what the fill's path imports: run alone, the file traced those imports as the run's.)"""
    with pytest.MonkeyPatch.context() as warm_up:  # its bisection's available memory is undone after it
        _traced_after_check(_segmenter(), _ct(dtype, fill=0, body_mm=330.0, shape=(8, 256, 256)), warm_up)
    asked, held, peak, network_volume = _traced_after_check(_segmenter(), _ct(dtype, fill=0, body_mm=330.0,
                                                                               shape=(8, 256, 256)), monkeypatch)
    asked_plain, _, peak_plain, _ = _traced_after_check(_segmenter(), _ct(dtype, body_mm=330.0, shape=(8, 256, 256)),
                                                        monkeypatch)
    assert held >= network_volume.array.nbytes + network_volume.array.size  # the copy and its mask
    assert asked == asked_plain and peak <= peak_plain + MARGIN_BYTES
    assert peak <= _numpy_share(asked, network_volume, _segmenter()) + MARGIN_BYTES


@pytest.mark.parametrize("fill", [None, 0])
def test_a_child_s_enlarged_network_grid_is_counted_as_the_run_allocates_it(fill, monkeypatch):
    """A child's CT is given as a view with larger pixels (no copy): the network grid it is resampled to grows 4.5x
    (2.1x in-plane), and so does the check's ask (its part numpy allocates): by at least what the run allocates more after the check, and by
    not more than 1.5x that (measured: 10.7 MiB asked for 7.8 MiB traced)."""
    volume = _ct(np.float64 if fill is not None else np.int16, fill=fill)
    segmenter = _segmenter()
    asked, _, peak, network_volume = _traced_after_check(segmenter, volume, monkeypatch)
    as_is = _segmenter(body_size_scaling=False)
    asked_as_is, _, peak_as_is, volume_as_is = _traced_after_check(as_is, volume, monkeypatch)
    assert network_volume.geometry.spacing[0] > 2 * SPACING_XYZ[0]  # enlarged more than 2x in-plane
    assert fill is not None or network_volume.array is volume.array  # a view of the CT's voxels
    countable = _numpy_share(asked, network_volume, segmenter)
    assert peak <= countable + MARGIN_BYTES
    grown, measured = countable - _numpy_share(asked_as_is, volume_as_is, as_is), peak - peak_as_is
    assert measured > 2 ** 22 and measured <= grown <= 1.5 * measured


def test_the_check_does_not_ask_again_for_a_network_grid_ct_prepared_ahead(monkeypatch):
    """``segment`` prepares the network-grid CT while the model loads (a batch's reader while the previous case
    runs): it is held when the check reads the available memory, and the run allocates that much less after it.
    The check asked for it again: 1.3 MiB too much here (17.9 MiB for a 16 x 256 x 256 child's CT enlarged 2.1x)."""
    volume = _ct(np.int16, fill=0)
    asked_plain, _, peak_plain, _ = _traced_after_check(_segmenter(), volume, monkeypatch)
    segmenter = _segmenter()
    asked, held, peak, network_volume = _traced_after_check(segmenter, volume, monkeypatch, prepare_ahead=True)
    assert segmenter.engine.used_offered
    prepared_bytes = int(np.prod(validation.network_grid_zyx(network_volume.shape_zyx,
                                                             network_volume.geometry.spacing[::-1],
                                                             segmenter.engine.preprocessing))) * 4
    assert peak <= peak_plain - prepared_bytes + MARGIN_BYTES  # the run allocates that much less after the check
    assert asked == asked_plain - prepared_bytes
    assert peak <= _numpy_share(asked, network_volume, segmenter) + MARGIN_BYTES


def test_an_offer_for_another_ct_is_not_taken_off(monkeypatch):
    """The engine uses an offered preparation only for the very CT object it was made of: one made of another CT
    is prepared again by the engine, so the check counts it in full."""
    from LiverTumorSegLib.inference.prepared_input import prepare_input

    volume, other = _ct(np.int16), _ct(np.int16)
    segmenter = _segmenter()
    plain = _asked_bytes(segmenter, volume, monkeypatch)
    segmenter.engine.offer_prepared(prepare_input(other, segmenter.engine.preprocessing))
    assert _asked_bytes(segmenter, volume, monkeypatch) == plain
