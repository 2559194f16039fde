"""Edge cases of LiverTumorSegLib.preprocessing.intensity: the body threshold, z-score fallbacks, histogram plateaus.
The earlier tests let each of them through: every test here fails when one operator or constant of the code it
covers is changed (checked by mutation in stop 26). Known inputs, known answers."""
import numpy as np

from LiverTumorSegLib.preprocessing.intensity import body_bbox_yx, body_mask, zscore


def test_zscore_empty_mask_slice_falls_back_to_the_whole_slice():
    """Per-slice z-score of 3 slices whose mask is empty on slice 1: slices 0 and 2 use the mask's voxels,
    slice 1 uses all of its voxels (numpy reference computed independently)."""
    rng = np.random.default_rng(7)
    x = rng.normal(100, 40, size=(3, 8, 10)).astype(np.float32)
    mask = np.zeros(x.shape, bool)
    mask[0, 2:6, 3:8] = True
    mask[2, 1:4, 1:9] = True
    z = zscore(x, mask, axes=(-2, -1))
    assert z.shape == x.shape and z.dtype == np.float32
    for i in range(3):
        sel = x[i][mask[i]] if mask[i].any() else x[i].ravel()
        expected = (x[i].astype(np.float64) - sel.mean()) / sel.std()
        np.testing.assert_allclose(z[i], expected, rtol=1e-4, atol=1e-4)


def test_body_threshold_is_strict():
    """The body is HU > -500: a voxel of exactly -500 HU is outside (mask and bounding box)."""
    hu = np.full((1, 10, 12), -1000, np.int16)
    hu[0, 3:6, 4:8] = 40
    hu[0, 6, 4:8] = -500  # exactly at the threshold: not body
    m = body_mask(hu)
    expected = np.zeros(hu.shape, bool)
    expected[0, 3:6, 4:8] = True
    np.testing.assert_array_equal(m, expected)
    assert body_bbox_yx(hu) == (3, 6, 4, 8)
    assert body_bbox_yx(np.full((2, 4, 4), -500, np.int16)) is None


def test_hist_scaled_per_slice_with_a_plateau_in_the_middle_matches_np_interp():
    """A third of the slice is exactly 40 HU (liver-like plateau) between lower and higher values: the repeated
    break points sit in the middle of the list, not at its start; they share one target, as fastai's
    np.unique + linspace + np.interp does."""
    from LiverTumorSegLib.preprocessing.intensity import freqhist_bins, hist_scaled

    rng = np.random.default_rng(8)
    x = rng.uniform(-200, 300, size=(2, 30, 30)).astype(np.float32)
    x[:, 10:20] = 40.0
    out = hist_scaled(x, n_bins=20)
    for i in range(2):
        bins = freqhist_bins(x[i], n_bins=20)
        assert len(bins) < 22  # duplicates were dropped from the middle
        ref = np.clip(np.interp(x[i], bins, np.linspace(0, 1, len(bins))), 0, 1)
        np.testing.assert_allclose(out[i], ref, atol=1e-5)


def test_body_mask_single_slice_and_3d_keep_the_largest_component():
    """The 2D path and per_slice=False keep the largest component (the body), not everything else."""
    hu = np.full((20, 20), -1000, np.int16)
    hu[2:12, 2:18] = 40      # body, 160 px
    hu[15:17, 1:19] = 300    # table, 36 px, separate
    expected = np.zeros(hu.shape, bool)
    expected[2:12, 2:18] = True
    np.testing.assert_array_equal(body_mask(hu), expected)
    vol = np.stack([hu, hu])
    np.testing.assert_array_equal(body_mask(vol, per_slice=False), np.stack([expected, expected]))


def test_zscore_of_a_low_variance_slice_is_unit_variance():
    """Values +-0.05 (std 0.05): the output is exactly +-1; eps only guards a zero variance (constant -> 0)."""
    x = np.tile(np.array([-0.05, 0.05], np.float32), (1, 4, 2))  # (1, 4, 4)
    np.testing.assert_allclose(zscore(x, axes=(-2, -1)), x / 0.05, rtol=1e-4)
    np.testing.assert_array_equal(zscore(np.full((1, 3, 3), 7.0, np.float32), axes=(-2, -1)), 0.0)


def test_histogram_equalization_maps_the_darkest_occupied_bin_to_0_between_bin_centres():
    """4 bins over 0..1 (centres 0.125, 0.375, 0.625, 0.875) and pixels 0.375, 0.5, 0.875, 0.875: counts 0, 1, 1, 2,
    cumulative 0, 0.25, 0.5, 1. The darkest occupied bin (1, not the empty bin 0) maps to 0:
    (cdf - 0.25) / 0.75 = -1/3, 0, 1/3, 1 at the centres. Pixel 0.375 sits on centre 1 (0), pixel 0.5 halfway between
    centres 1 and 2 (1/6), pixels 0.875 on centre 3 (1). With bin 0 as the darkest the slice read 0.25, 0.375, 1, 1;
    with knots at the bins' left edges 0.5 read 1/3."""
    from LiverTumorSegLib.preprocessing.equalization import equalize_histogram

    out = equalize_histogram(np.array([[0.375, 0.5, 0.875, 0.875]], np.float32), n_bins=4, value_range=(0.0, 1.0))
    np.testing.assert_allclose(out, [[0.0, 1.0 / 6.0, 1.0, 1.0]], atol=1e-6)


def test_zscore_body_channel_of_slices_above_the_body_uses_the_whole_slices():
    """A batch of slices without any voxel above the body threshold (a CT's first slices, all air): body_mask is
    all False (body_mask's early return), so the body z-score of each slice (n, H, W) falls back to the whole
    slice: air with 5 HU noise gives mean 0 and std 1 per slice; a constant slice gives 0, not NaN."""
    from LiverTumorSegLib.preprocessing import PreprocessingConfig, SlicePreprocessor

    rng = np.random.default_rng(3)
    air = np.stack([rng.normal(-1000, 5, (16, 16)), np.full((16, 16), -1024.0)]).astype(np.float32)
    assert not body_mask(air).any() and body_mask(air).shape == air.shape
    config = PreprocessingConfig(channels=[{"kind": "zscore", "mask": "body"}], context_slices=0,
                                 target_spacing_mm=None)
    channel = SlicePreprocessor(config).intensity_channels(air)[:, 0]  # (n, H, W)
    assert abs(float(channel[0].mean())) < 1e-4 and abs(float(channel[0].std()) - 1.0) < 1e-3
    np.testing.assert_array_equal(channel[1], np.zeros((16, 16), np.float32))


def test_zero_slices_give_zero_slices_for_every_channel_kind_and_equalization():
    """An empty selection of slices (0, H, W): windows and z-scores gave (0, C0, H, W), but histogram scaling and
    histogram or CLAHE equalization raised numpy's "cannot reshape array of size 0" (a ValueError, no InputError)
    from their per-slice rows."""
    from LiverTumorSegLib.preprocessing import (PreprocessingConfig, SlicePreprocessor, clahe, equalize_histogram,
                                                hist_scaled)

    empty = np.zeros((0, 8, 6), np.float32)  # (n, H, W)
    for function in (hist_scaled, equalize_histogram, clahe):
        out = function(empty)
        assert out.shape == (0, 8, 6) and out.dtype == np.float32, function.__name__
    for config in (PreprocessingConfig(equalize="histogram"), PreprocessingConfig(equalize="clahe"),
                   PreprocessingConfig.preset("two_windows_histscaled")):
        channels = SlicePreprocessor(config).intensity_channels(empty)
        assert channels.shape == (0, len(config.channels), 8, 6) and channels.dtype == np.float32
