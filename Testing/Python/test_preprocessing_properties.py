"""Property tests (hypothesis): random shapes/values never crash and outputs stay in range."""
import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from LiverTumorSegLib.preprocessing import (PreprocessingConfig, SlicePreprocessor, clahe, equalize_histogram,
                                            hist_scaled, window_hu)

hu_values = st.floats(min_value=-3024, max_value=4000, allow_nan=False, width=32)
slices = st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(1, 12)).flatmap(
    lambda shape: arrays(np.float32, shape, elements=hu_values))
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(x=slices, level=st.floats(-1000, 1000), width=st.floats(1, 4000))
def test_window_in_unit_range(x, level, width):
    out = window_hu(x, level, width)
    assert out.shape == x.shape and out.dtype == np.float32
    assert np.all((out >= 0) & (out <= 1))


@SETTINGS
@given(x=slices, n_bins=st.integers(1, 120))
def test_hist_scaled_in_unit_range_and_monotone(x, n_bins):
    out = hist_scaled(x, n_bins=n_bins)
    assert out.shape == x.shape and out.dtype == np.float32
    assert np.all((out >= 0) & (out <= 1))
    for i in range(x.shape[0]):
        order = np.argsort(x[i].ravel(), kind="stable")
        assert np.all(np.diff(out[i].ravel()[order]) >= -1e-6)


@SETTINGS
@given(x=slices)
def test_equalization_in_unit_range(x):
    w = window_hu(x, 40, 400)
    for out in (equalize_histogram(w, value_range=(0, 1)), clahe(w, tiles=3)):
        assert out.shape == x.shape and np.all((out >= 0) & (out <= 1))


@SETTINGS
@given(x=st.tuples(st.integers(1, 4), st.integers(1, 20), st.integers(1, 20)).flatmap(
    lambda s: arrays(np.int16, s, elements=st.integers(-1024, 2000))),
       spacing=st.floats(0.5, 4.0), preset=st.sampled_from(["default", "two_windows_histscaled", "zscore_body",
                                                           "wide_equalized_median"]))
def test_pipeline_never_crashes(x, spacing, preset):
    cfg = PreprocessingConfig.preset(preset)
    pre = SlicePreprocessor(cfg)
    net, info = pre.spatial_forward(x, (3.0, spacing, spacing))
    batch = pre.stack_context(lambda idx: pre.intensity_channels(net[idx], info), list(range(x.shape[0])),
                              num_slices=x.shape[0])
    assert batch.shape == (x.shape[0], cfg.in_channels) + net.shape[1:]
    assert np.all(np.isfinite(batch))
    back = pre.spatial_inverse(np.ones((1, 3) + net.shape[1:], np.float32), info)
    assert back.shape == (1, 3) + x.shape[1:]
