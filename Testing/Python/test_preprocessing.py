"""Tests of LiverTumorSegLib.preprocessing: intensity ops, config, spatial mapping, 2.5D stacking."""
import json

import numpy as np
import pytest

from LiverTumorSegLib.errors import InputError, LiverTumorSegError
from LiverTumorSegLib.phantom import make_phantom
from LiverTumorSegLib.preprocessing import (WINDOW_PRESETS, PreparedVolume, PreprocessingConfig,
                                            PreprocessingConfigError, SlicePreprocessor, SpatialInfo,
                                            available_presets, body_bbox_yx, body_mask, clahe,
                                            equalize_histogram, freqhist_bins, gaussian_smooth, hist_scaled,
                                            median_smooth, window_hu, zscore)
from LiverTumorSegLib.volume import CTVolume, ImageGeometry


def ks_uniform(values: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance of ``values`` from U(0, 1)."""
    v = np.sort(values.ravel())
    n = v.size
    return float(max(np.max(np.arange(1, n + 1) / n - v), np.max(v - np.arange(n) / n)))


# ---- windowing ------------------------------------------------------------------------------------
def test_window_known_values():
    hu = np.array([-1000, -160, -60, 40, 140, 240, 3000], dtype=np.int16)
    out = window_hu(hu, level=40, width=400)
    assert out.dtype == np.float32 and out.shape == hu.shape
    np.testing.assert_allclose(out, [0, 0, 0.25, 0.5, 0.75, 1, 1], atol=1e-6)


def test_window_rejects_nonpositive_width():
    with pytest.raises(InputError):
        window_hu(np.zeros(3), 0, 0)


def test_window_presets_documented_values():
    assert WINDOW_PRESETS["abdomen"] == (40.0, 400.0)
    assert WINDOW_PRESETS["wide"] == (0.0, 2000.0)
    assert WINDOW_PRESETS["centre0_width250"] == (0.0, 250.0)
    assert "liver" in WINDOW_PRESETS
    lo, w = WINDOW_PRESETS["wide"]
    np.testing.assert_allclose(window_hu(np.array([-1000.0, 0.0, 1000.0]), lo, w), [0, 0.5, 1])


# ---- frequency histogram --------------------------------------------------------------------------
def test_freqhist_bins_known_positions():
    bins = freqhist_bins(np.arange(1000, dtype=np.float32), n_bins=10)
    np.testing.assert_array_equal(bins, [1, 50, 150, 250, 350, 450, 550, 650, 750, 850, 950, 999])


@pytest.mark.parametrize("dist", ["exponential", "normal"])
def test_hist_scaled_output_is_uniform(dist):
    rng = np.random.default_rng(1)
    x = getattr(rng, dist)(size=(128, 128)).astype(np.float32) * 100
    out = hist_scaled(x, n_bins=100)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 1
    assert ks_uniform(out) < 0.02
    assert ks_uniform(window_hu(x, float(np.median(x)), float(np.ptp(x)))) > 0.1  # the raw one is not uniform


def test_hist_scaled_matches_reference_interp_and_batches_per_slice():
    rng = np.random.default_rng(2)
    slices = rng.normal(40, 50, size=(3, 40, 40)).astype(np.float32)
    slices[1, :20] = -1024  # many duplicates (air): duplicated break points must be handled like np.unique
    slices[2] = 7.0         # constant slice maps to 0
    batched = hist_scaled(slices, n_bins=20)
    for i in range(3):
        bins = freqhist_bins(slices[i], n_bins=20)
        ref = np.clip(np.interp(slices[i], bins, np.linspace(0, 1, len(bins))), 0, 1) if len(bins) > 1 \
            else np.zeros_like(slices[i])
        np.testing.assert_allclose(batched[i], ref, atol=1e-5)
        np.testing.assert_allclose(hist_scaled(slices[i], bins=bins), ref, atol=1e-5)
    assert np.all(batched[2] == 0)


def test_hist_scaled_fixed_bins_any_shape():
    out = hist_scaled(np.array([[-5.0, 0.0], [5.0, 10.0]]), bins=np.array([0.0, 10.0]))
    np.testing.assert_allclose(out, [[0, 0], [0.5, 1]])
    with pytest.raises(InputError):
        hist_scaled(np.zeros(4), bins=np.array([3.0, 1.0]))


# ---- equalization -----------------------------------------------------------------------------
def test_equalize_histogram_monotone_and_spans_range():
    rng = np.random.default_rng(3)
    x = rng.exponential(size=(2, 64, 64)).astype(np.float32)
    out = equalize_histogram(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    for i in range(2):
        order = np.argsort(x[i].ravel(), kind="stable")
        assert np.all(np.diff(out[i].ravel()[order]) >= -1e-6)
        assert out[i].min() == pytest.approx(0, abs=1e-6) and out[i].max() == pytest.approx(1, abs=1e-6)
        np.testing.assert_allclose(out[i], equalize_histogram(x[i]), atol=1e-6)  # per slice
    assert ks_uniform(out[0]) < 0.05  # equalized exponential is ~uniform


def test_equalize_histogram_constant_slice_is_zero():
    assert np.all(equalize_histogram(np.full((8, 8), 3.0)) == 0)


def test_clahe_range_contrast_and_single_tile_monotone():
    rng = np.random.default_rng(4)
    x = (0.45 + 0.1 * rng.random((2, 64, 64))).astype(np.float32)  # low contrast in [0.45, 0.55]
    out = clahe(x, clip_limit=0.05, tiles=4)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 1
    assert out.std() > 2 * x.std()
    single = clahe(x[0], clip_limit=0.05, tiles=1)
    order = np.argsort(x[0].ravel())
    assert np.all(np.diff(single.ravel()[order]) >= -1e-6)
    const = clahe(np.full((16, 16), 0.5, np.float32), tiles=2)
    assert np.ptp(const) < 1e-6


# ---- smoothing --------------------------------------------------------------------------------
def test_median_removes_single_voxel_spike_in_plane_only():
    x = np.zeros((3, 9, 9), np.float32)
    x[1, 4, 4] = 1000
    assert np.all(median_smooth(x, 3) == 0)
    plate = np.zeros((3, 9, 9), np.float32)
    plate[1] = 5  # a whole slice: in-plane median keeps it (no mixing across z)
    np.testing.assert_array_equal(median_smooth(plate, 3), plate)
    with pytest.raises(InputError):
        median_smooth(x, 4)


def test_gaussian_preserves_mean_and_uses_mm():
    rng = np.random.default_rng(5)
    x = rng.normal(100, 20, size=(2, 64, 64)).astype(np.float32)
    g = gaussian_smooth(x, sigma_mm=2.0, spacing_yx=(2.0, 2.0))
    assert g.dtype == np.float32
    assert abs(g.mean() - x.mean()) < 0.05
    assert g.std() < 0.5 * x.std()
    np.testing.assert_allclose(g, gaussian_smooth(x, 1.0, (1.0, 1.0)), atol=1e-4)  # sigma is in mm
    np.testing.assert_array_equal(gaussian_smooth(x, 0.0, (1, 1)), x)


# ---- zscore / body --------------------------------------------------------------------------------
def test_zscore_inside_mask_and_per_slice():
    rng = np.random.default_rng(6)
    x = rng.normal(50, 30, size=(2, 32, 32)).astype(np.float32)
    x[1] += 500
    mask = np.zeros_like(x, dtype=bool)
    mask[:, 8:24, 8:24] = True
    z = zscore(x, mask, axes=(-2, -1))
    for i in range(2):
        assert z[i][mask[i]].mean() == pytest.approx(0, abs=1e-4)
        assert z[i][mask[i]].std() == pytest.approx(1, abs=1e-3)
    whole = zscore(x)
    assert whole.mean() == pytest.approx(0, abs=1e-4) and whole.std() == pytest.approx(1, abs=1e-3)


def test_body_mask_drops_table_and_fills_holes():
    hu = np.full((2, 40, 40), -1000, np.int16)
    hu[:, 5:30, 5:35] = 40          # body
    hu[:, 12:18, 12:18] = -900      # lung/gas inside the body
    hu[:, 34:37, 2:38] = 300        # table, separate component
    m = body_mask(hu)
    assert m.dtype == bool and m.shape == hu.shape
    assert m[:, 5:30, 5:35].all() and not m[:, 34:37].any()
    assert body_bbox_yx(hu, margin_px=(2, 1)) == (3, 32, 4, 36)
    assert body_bbox_yx(np.full((1, 4, 4), -1000)) is None



def test_body_bbox_compares_an_integer_ct_in_its_own_type(monkeypatch):
    """An int16 CT is compared with the body threshold as an int16 (threshold_for; in float64 the box took 0.033 s
    CPU of a 300 x 512 x 512 CT, now 0.012 s), with the same box: a voxel at exactly -500 HU is not body, -499 is;
    a fractional threshold stays a float."""
    from LiverTumorSegLib.inference import thresholds

    given = []
    original = thresholds.threshold_for
    monkeypatch.setattr(thresholds, "threshold_for", lambda a, v: given.append(original(a, v)) or given[-1])
    hu = np.full((3, 20, 20), -1000, np.int16)
    hu[1, 4:9, 6:12] = -500  # at the threshold: not body
    hu[2, 10:15, 3:5] = -499
    assert body_bbox_yx(hu) == (10, 15, 3, 5)
    assert given and given[-1].dtype == np.int16
    assert body_bbox_yx(hu, threshold_hu=-500.5) == (4, 9, 6, 12)  # the larger part, now body
    assert isinstance(given[-1], float)
    assert body_bbox_yx(hu.astype(np.float32)) == (10, 15, 3, 5)

# ---- config -----------------------------------------------------------------------------------
def test_default_preset_matches_contract():
    cfg = PreprocessingConfig.preset("default")
    assert [(c["level"], c["width"]) for c in cfg.channels] == [(40, 400), (75, 250), (0, 2000)]
    assert cfg.context_slices == 1 and cfg.in_channels == 9
    assert cfg.target_spacing_mm == 1.5 and cfg.size_multiple == 32 and cfg.crop_to_body
    assert set(available_presets()) >= {"default", "zscore_body", "two_windows_histscaled", "window250_equalized",
                                        "wide_equalized_median"}


@pytest.mark.parametrize("name", ["default", "zscore_body", "two_windows_histscaled", "window250_equalized",
                                  "wide_equalized_median"])
def test_config_json_round_trip(name):
    cfg = PreprocessingConfig.preset(name)
    text = cfg.to_json()
    json.loads(text)
    again = PreprocessingConfig.from_json(text)
    assert again == cfg and again.to_dict() == cfg.to_dict()


def test_config_window_preset_resolves():
    cfg = PreprocessingConfig(channels=[{"kind": "window", "preset": "abdomen"}], context_slices=2)
    assert cfg.channels[0]["level"] == 40 and cfg.channels[0]["width"] == 400
    assert cfg.in_channels == 5


@pytest.mark.parametrize("bad", [
    {"bogus": 1},
    {"channels": [{"kind": "sharpen"}]},
    {"channels": [{"kind": "window", "level": 1, "width": 2, "colour": 3}]},
    {"channels": [{"kind": "window", "preset": "brain-ish"}]},
    {"channels": [{"kind": "window", "level": 40}]},
    {"channels": []},
    {"target_size": [256, 256]},             # together with the default target_spacing_mm
    {"median_size": 4},
    {"equalize": "sometimes"},
    {"context_slices": -1},
])
def test_config_invalid_raises_clear_error(bad):
    with pytest.raises(PreprocessingConfigError) as exc:
        PreprocessingConfig.from_dict(bad)
    assert isinstance(exc.value, LiverTumorSegError) and len(str(exc.value)) > 20


@pytest.mark.parametrize("bad", [
    {"channels": [{"kind": "window", "level": float("nan"), "width": 400}]},
    {"channels": [{"kind": "window", "level": float("inf"), "width": 400}]},
    {"pad_hu": float("nan")},
    {"crop_margin_mm": float("nan")},
    {"body_threshold_hu": float("-inf")},
    {"gaussian_sigma_mm": float("nan")},
    {"target_spacing_mm": float("nan")},
])
def test_config_non_finite_numbers_are_refused(bad):
    """NaN in a package's preprocessing gave an all-background result (window level, pad_hu) or an internal
    error (crop_margin_mm); every number must be finite."""
    with pytest.raises(PreprocessingConfigError, match="must be a finite number"):
        PreprocessingConfig.from_dict(bad)


def test_config_bad_json_and_missing_file(tmp_path):
    with pytest.raises(PreprocessingConfigError):
        PreprocessingConfig.from_json("{not json")
    with pytest.raises(InputError):
        PreprocessingConfig.from_file(tmp_path / "missing.json")
    with pytest.raises(PreprocessingConfigError):
        PreprocessingConfig.preset("nope")


def test_config_path_of_a_folder_says_it_is_a_folder(tmp_path):
    """``--preprocessing configs/`` (the folder, not the file in it) was refused as "does not exist; check the
    path", of a path that exists."""
    folder = tmp_path / "configs.json"
    folder.mkdir()
    with pytest.raises(InputError, match=r"configs\.json' is a folder, not a JSON file; give the path") as caught:
        PreprocessingConfig.from_file(folder)
    assert "does not exist" not in str(caught.value)


@pytest.mark.parametrize("settings, message", [
    ({"channels": ["window"]}, r"channels\[0\] must be an object like .* got 'window'"),
    ({"channels": [{"kind": "window", "preset": "liver", "name": 3}]}, r"channels\[0\] name must be a string"),
    ({"channels": [{"kind": "hist_scaled", "bins": -100}]}, r"bins must be a non-empty list of HU values"),
    ({"channels": [{"kind": "hist_scaled", "bins": []}]}, r"bins must be a non-empty list of HU values"),
    ({"channels": [{"kind": "hist_scaled", "bins": [0, -100]}]}, r"bins must be sorted ascending"),
    ({"channels": [{"kind": "zscore", "mask": "liver"}]}, r"mask must be one of \['body', 'none'\], got 'liver'"),
    ({"target_spacing_mm": None, "target_size": [256]}, r"target_size must be \[H, W\] in pixels, got \[256\]"),
    ({"crop_to_body": "false"}, r"crop_to_body must be true or false, got 'false'"),
    ({"clahe_clip_limit": 0}, r"clahe_clip_limit must be > 0"),
    ({"equalize": "CLAHE"}, r"equalize must be null, \"histogram\" or \"clahe\", got 'CLAHE'"),
], ids=["channel-string", "name-number", "bins-number", "bins-empty", "bins-descending", "zscore-mask",
        "size-one-number", "crop-string", "clip-zero", "equalize-capitals"])
def test_a_researchers_config_mistake_names_the_key_and_the_value(settings, message):
    """Each refusal of a hand-written config names the key (and channel), what it holds and what is allowed."""
    with pytest.raises(PreprocessingConfigError, match=message):
        PreprocessingConfig.from_dict(settings)


@pytest.mark.parametrize("text", ["[1, 2]", "null"])
def test_a_config_that_is_not_a_json_object_is_refused(text):
    with pytest.raises(PreprocessingConfigError, match="must be a JSON object, got"):
        PreprocessingConfig.from_json(text)


def test_fixed_bins_and_a_named_channel_give_known_values_and_names():
    """hist_scaled with fixed ``bins`` (the same map for every slice) maps HU linearly between the break points,
    a repeated break point sharing one value, and a channel's ``name`` is what the preview and the input channel
    names show. Bins [-100, 0, 0, 200] HU are values 0, 0.5, 0.5, 1."""
    config = PreprocessingConfig.from_dict({
        "channels": [{"kind": "window", "preset": "liver", "name": "liver window"},
                     {"kind": "hist_scaled", "bins": [-100, 0, 0, 200]}],
        "context_slices": 1, "target_spacing_mm": None})
    assert config.channels[1]["bins"] == [-100.0, 0.0, 0.0, 200.0]
    assert config.input_channel_names == [
        "z-1: liver window", "z-1: hist_scaled (fixed bins)", "z: liver window", "z: hist_scaled (fixed bins)",
        "z+1: liver window", "z+1: hist_scaled (fixed bins)"]
    hu = np.array([[[-200, -100, -50, 0, 100, 200, 300]]], np.float32)  # (n=1, H=1, W=7)
    channels = SlicePreprocessor(config).intensity_channels(hu)  # (n, C0, H, W)
    np.testing.assert_allclose(channels[0, 1, 0], [0, 0, 0.25, 0.5, 0.75, 1, 1], atol=1e-6)
    np.testing.assert_allclose(channels[0, 0, 0], window_hu(hu, 60, 200)[0, 0], atol=0)  # liver: L60 W200
    assert SlicePreprocessor(config).slice_statistics(hu) is None  # nothing per slice: training = inference


# ---- 2.5D stacking ------------------------------------------------------------------------------
def test_stack_context_slice_major_with_replicated_edges():
    z, h, w = 6, 2, 3
    chans = np.zeros((z, 2, h, w), np.float32)
    chans[:, 0] = 10 * np.arange(z)[:, None, None]
    chans[:, 1] = 10 * np.arange(z)[:, None, None] + 1
    pre = SlicePreprocessor(PreprocessingConfig(channels=[{"kind": "window", "preset": "abdomen"},
                                                          {"kind": "window", "preset": "wide"}], context_slices=1))
    out = pre.stack_context(chans, [0, 3, 5])
    assert out.shape == (3, 6, h, w) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, :, 0, 0], [[0, 1, 0, 1, 10, 11], [20, 21, 30, 31, 40, 41],
                                                     [40, 41, 50, 51, 50, 51]])
    seen = []

    def source(idx):
        seen.append(list(idx))
        return chans[idx]

    np.testing.assert_array_equal(pre.stack_context(source, [0, 3, 5], num_slices=z), out)
    assert seen == [[0, 1, 2, 3, 4, 5]]
    with pytest.raises(InputError):
        pre.stack_context(chans, [6])


@pytest.mark.parametrize("min_mm, max_mm, spacing, offset", [
    (None, None, 0.5, 1.0), (None, None, 7.0, 1.0), (1.0, None, 3.0, 1.0), (1.0, None, 1.0, 1.0),
    (1.0, None, 0.1 * 10, 1.0), (1.0, None, 0.99, 2.0), (1.0, None, 0.75, 2.0), (1.0, None, 0.625, 2.0),
    (1.0, None, 0.5, 2.0), (1.0, None, 0.45, 3.0), (2.5, None, 1.25, 2.0), (2.5, None, 1.0, 3.0),
    (1.0, 3.0, 3.0, 1.0), (1.0, 3.0, 0.3 * 10, 1.0), (1.0, 3.0, 5.0, 0.6), (1.0, 3.0, 7.5, 0.4), (None, 2.0, 2.5, 0.8),
    (1.0, 3.0, 0.99999, 1.0), (1.0, 3.0, 3.00001, 1.0), (1.0, None, 0.33333, 3.0), (1.0, None, 0.4999, 2.0),
    (None, 2.0, 0.5, 1.0), (1.0, 1.0, 1.0, 1.0), (1.0, 1.0, 2.0, 0.5)])
def test_context_offset_keeps_neighbours_within_the_bounds(min_mm, max_mm, spacing, offset):
    """Known answers: below context_min_mm ceil(min / spacing) whole slices; above context_max_mm max / spacing (a
    fraction: interpolated); adjacent (1) in between or without bounds."""
    cfg = PreprocessingConfig(context_min_mm=min_mm, context_max_mm=max_mm)
    assert cfg.context_offset(spacing) == pytest.approx(offset, abs=1e-12)


def test_context_offset_is_one_for_single_slice_input_and_refuses_a_bad_spacing():
    assert PreprocessingConfig(context_slices=0, context_min_mm=1.0, context_max_mm=3.0).context_offset(0.25) == 1.0
    for spacing in (0.0, -1.0, float("nan")):
        with pytest.raises(PreprocessingConfigError):
            PreprocessingConfig(context_min_mm=1.0).context_offset(spacing)


@pytest.mark.parametrize("name", ["context_min_mm", "context_max_mm"])
@pytest.mark.parametrize("bad", [0, -1.0, 50.0, 1e9, float("nan"), "1 mm", True])
def test_context_bounds_out_of_range_or_not_a_number_are_refused(name, bad):
    with pytest.raises(PreprocessingConfigError, match=name):
        PreprocessingConfig(**{name: bad})


def test_context_min_above_max_is_refused():
    with pytest.raises(PreprocessingConfigError, match="context_min_mm .* must not exceed context_max_mm"):
        PreprocessingConfig(context_min_mm=3.0, context_max_mm=2.0)


def test_context_bounds_round_trip_and_older_configs_keep_adjacent_slices():
    cfg = PreprocessingConfig(context_min_mm=1.25, context_max_mm=2.5)
    back = PreprocessingConfig.from_json(cfg.to_json())
    assert (back.context_min_mm, back.context_max_mm) == (1.25, 2.5)
    older = {k: v for k, v in PreprocessingConfig.preset("default").to_dict().items()
             if k not in ("context_min_mm", "context_max_mm")}
    old = PreprocessingConfig.from_dict(older)  # packages saved before the fields
    assert (old.context_min_mm, old.context_max_mm) == (None, None) and old.context_offset(0.5) == 1.0
    default = PreprocessingConfig.preset("default")
    assert (default.context_min_mm, default.context_max_mm) == (1.0, 3.0)
    assert default.context_text(2.0) == ""
    assert default.context_text(0.5) == "neighbours 2 slices (1 mm) apart on this CT's 0.5 mm slices (context_min_mm=1)"
    assert default.context_text(5.0) == ("neighbours interpolated 3 mm from the centre on this CT's 5 mm slices "
                                         "(context_max_mm=3)")


def _index_volume(z):
    """(z, 16, 16) HU: slice i is 10 x i everywhere, so a window channel tells which slice (or mix) it holds."""
    return np.repeat((10.0 * np.arange(z, dtype=np.float32))[:, None, None], 16, axis=1).repeat(16, axis=2)


def _stacked_positions(pre, hu, spacing_z, indices):
    """The slice positions (10 HU per slice, window 0..200 HU) each network input of ``indices`` holds."""
    prepared = pre.prepare(CTVolume(hu, ImageGeometry(spacing=(1.0, 1.0, spacing_z))))
    x = prepared.batch(indices)[:, :, 0, 0]  # (n, 3): window 0..200 HU -> slice index / 20
    return prepared.context_offset, np.round(x.astype(np.float64) * 20, 4).tolist()


CONTEXT_TEST_CONFIG = dict(channels=[{"kind": "window", "level": 100, "width": 200}], context_slices=1,
                           context_min_mm=1.0, context_max_mm=3.0, target_spacing_mm=None, crop_to_body=False,
                           size_multiple=1)


def test_prepared_volume_stacks_neighbours_as_far_apart_as_the_bounds_say():
    """Slices 0.5 mm apart under context_min_mm 1.0: the input of slice i holds slices i-2, i, i+2 (edges
    replicated); at 1 mm: adjacent slices; at 5 mm under context_max_mm 3.0: HU 0.6 of the way to each adjacent
    slice (3 mm from the centre), the centre slice itself unmixed."""
    pre = SlicePreprocessor(PreprocessingConfig(**CONTEXT_TEST_CONFIG))
    hu = _index_volume(8)
    assert _stacked_positions(pre, hu, 0.5, [0, 1, 4, 7]) == (2.0, [[0, 0, 2], [0, 1, 3], [2, 4, 6], [5, 7, 7]])
    assert _stacked_positions(pre, hu, 1.0, [0, 1, 4, 7]) == (1.0, [[0, 0, 1], [0, 1, 2], [3, 4, 5], [6, 7, 7]])
    assert _stacked_positions(pre, hu, 5.0, [0, 1, 4, 7]) == (
        0.6, [[0, 0, 0.6], [0.4, 1, 1.6], [3.4, 4, 4.6], [6.4, 7, 7]])


def test_slice_indices_outside_the_volume_are_refused_on_both_paths():
    """A centre index outside the volume is refused whether the neighbours are real slices or interpolated ones
    (the interpolated path clipped it into an input of the edge slice)."""
    pre = SlicePreprocessor(PreprocessingConfig(**CONTEXT_TEST_CONFIG))
    hu = _index_volume(5)
    for spacing_z in (1.0, 5.0):
        prepared = pre.prepare(CTVolume(hu, ImageGeometry(spacing=(1.0, 1.0, spacing_z))))
        for bad in ([7], [-3]):
            with pytest.raises(InputError, match="Slice indices must be in 0..4"):
                prepared.batch(bad)
    with pytest.raises(InputError, match="whole number"):
        pre.context_indices([1], 5, 1.5)


def test_interpolated_neighbours_are_the_stacked_input_of_the_interpolated_slices():
    """The interpolated path (stack_input of the interpolated HU) and the whole-slice path (stack_context of each
    slice's channels) agree where both apply: the default preset's channels of a phantom, offset 1 either way."""
    from LiverTumorSegLib.preprocessing.preprocessor import context_positions, slices_at

    ph = make_phantom((6, 32, 32))
    pre = SlicePreprocessor(PreprocessingConfig(target_spacing_mm=None, crop_to_body=False))
    hu = ph.ct.array.astype(np.float32)
    whole = pre.stack_context(pre.intensity_channels(hu), [0, 2, 5])
    positions = context_positions([0, 2, 5], 1, 6, 1.0 + 1e-13)  # a fraction, in effect whole slices
    np.testing.assert_allclose(pre.stack_input(slices_at(hu, positions)), whole, atol=1e-5)
    np.testing.assert_array_equal(slices_at(hu, np.array([[1.0, 2.0]])), hu[None, [1, 2]])
    np.testing.assert_allclose(slices_at(hu, np.array([1.25])), 0.75 * hu[1:2] + 0.25 * hu[2:3], rtol=1e-6)


def test_stack_input_equals_volume_stacking():
    ph = make_phantom((5, 32, 32))
    pre = SlicePreprocessor(PreprocessingConfig(target_spacing_mm=None, crop_to_body=False))
    hu = ph.ct.array.astype(np.float32)
    volume_way = pre.stack_context(pre.intensity_channels(hu), [2])
    np.testing.assert_array_equal(pre.stack_input(hu[1:4]), volume_way[0])
    assert pre.stack_input(hu[None, 1:4]).shape == (1, 9, 32, 32)


# ---- spatial ----------------------------------------------------------------------------------
def test_resample_changes_size_by_spacing_ratio_and_pads():
    hu = np.zeros((2, 128, 100), np.int16)
    pre = SlicePreprocessor(PreprocessingConfig(crop_to_body=False, target_spacing_mm=1.5, size_multiple=32))
    net, info = pre.spatial_forward(hu, (5.0, 0.75, 0.9))
    assert info.resampled_shape_yx == (64, 60) and net.shape == (2, 64, 64) and net.dtype == np.float32
    assert info.pad_yx == (0, 0, 2, 2)
    assert np.all(net[:, :, :2] == -1024) and np.all(net[:, :, 2:62] == 0)
    assert info.net_spacing_yx == pytest.approx((1.5, 1.5))


def test_crop_to_body_and_resize_to_target_size():
    hu = np.full((3, 64, 64), -1000, np.int16)
    hu[:, 20:40, 10:50] = 50
    cfg = PreprocessingConfig(crop_to_body=True, crop_margin_mm=2.0, target_spacing_mm=None, size_multiple=8)
    info = SlicePreprocessor(cfg).plan(hu, (1.0, 1.0, 1.0))
    assert info.crop_yx == (18, 42, 8, 52) and info.net_shape_yx == (24, 48)
    cfg2 = PreprocessingConfig(crop_to_body=False, target_spacing_mm=None, target_size=(32, 16), size_multiple=1)
    net, info2 = SlicePreprocessor(cfg2).spatial_forward(hu, (1.0, 1.0, 1.0))
    assert net.shape == (3, 32, 16) and info2.net_spacing_yx == (2.0, 4.0)
    assert SpatialInfo.from_dict(json.loads(json.dumps(info2.to_dict()))) == info2


def test_spatial_round_trip_exact_when_spacing_is_target():
    ph = make_phantom((6, 64, 64), spacing_xyz=(1.5, 1.5, 4.0))
    pre = SlicePreprocessor(PreprocessingConfig(target_spacing_mm=1.5, size_multiple=32, crop_margin_mm=3.0))
    net, info = pre.spatial_forward(ph.ct.array, ph.ct.spacing_zyx)
    assert not info.is_resampled
    lab = pre.labels_forward(ph.labels, info)
    np.testing.assert_array_equal(pre.labels_inverse(lab, info), ph.labels)
    onehot = np.stack([lab == k for k in range(3)], axis=1).astype(np.float32)
    np.testing.assert_array_equal(np.argmax(pre.spatial_inverse(onehot, info), axis=1), ph.labels)
    # a label map of another slice count was mapped, its slices no longer the CT's (the preprocessing audit)
    with pytest.raises(InputError, match="The label map has 5 slices, the CT 6"):
        pre.labels_forward(ph.labels[:5], info)


def test_spatial_round_trip_with_resampling():
    ph = make_phantom((6, 96, 96), spacing_xyz=(0.8, 0.8, 4.0))
    pre = SlicePreprocessor(PreprocessingConfig(target_spacing_mm=1.5, size_multiple=32))
    prepared = pre.prepare(ph.ct)
    assert isinstance(prepared, PreparedVolume) and prepared.num_slices == 6
    assert prepared.info.is_resampled
    lab = pre.labels_forward(ph.labels, prepared.info)
    assert lab.dtype == np.uint8 and lab.shape == prepared.hu_net.shape
    assert (prepared.restore_labels(lab) == ph.labels).mean() > 0.98
    onehot = np.stack([lab == k for k in range(3)], axis=1).astype(np.float32)
    probs = prepared.restore(onehot[2:5])
    assert probs.shape == (3, 3, 96, 96) and probs.dtype == np.float32
    assert (np.argmax(probs, axis=1) == ph.labels[2:5]).mean() > 0.98


def test_spatial_inverse_fills_outside_crop_with_background():
    hu = np.full((1, 40, 40), -1000, np.int16)
    hu[:, 10:20, 10:20] = 40
    pre = SlicePreprocessor(PreprocessingConfig(crop_margin_mm=0.0, target_spacing_mm=None, size_multiple=1))
    net, info = pre.spatial_forward(hu, (1, 1, 1))
    probs = np.zeros((1, 3) + net.shape[1:], np.float32)
    probs[:, 1] = 1
    back = pre.spatial_inverse(probs, info)
    assert np.all(back[0, 1, 10:20, 10:20] == 1) and np.all(back[0, 0, 10:20, 10:20] == 0)
    assert np.all(back[0, 0, :10] == 1) and np.all(back[0, 1:, :10] == 0)
    with pytest.raises(InputError):
        pre.spatial_inverse(probs[:, :, :5], info)


# ---- whole pipeline -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["default", "zscore_body", "two_windows_histscaled", "window250_equalized",
                                  "wide_equalized_median"])
def test_presets_produce_network_batches(name):
    ph = make_phantom((4, 64, 64), spacing_xyz=(2.0, 2.0, 4.0))
    cfg = PreprocessingConfig.preset(name)
    prepared = SlicePreprocessor(cfg).prepare(ph.ct)
    x = prepared.batch([0, 3])
    h, w = prepared.net_shape_yx
    assert x.shape == (2, cfg.in_channels, h, w) and x.dtype == np.float32
    assert h % cfg.size_multiple == 0 and w % cfg.size_multiple == 0
    assert np.all(np.isfinite(x))
    if name != "zscore_body":
        assert x.min() >= 0 and x.max() <= 1


def test_intensity_channels_known_window_values_and_smoothing_order():
    cfg = PreprocessingConfig(channels=[{"kind": "window", "level": 40, "width": 400},
                                        {"kind": "zscore", "mask": "none"}], context_slices=0, median_size=3)
    hu = np.full((1, 8, 8), 40.0, np.float32)
    hu[0, 3, 3] = 2000  # removed by the median before windowing
    ch = SlicePreprocessor(cfg).intensity_channels(hu)
    assert ch.shape == (1, 2, 8, 8)
    np.testing.assert_allclose(ch[0, 0], 0.5)
    np.testing.assert_allclose(ch[0, 1], 0.0, atol=1e-3)


def test_prepare_reports_progress_and_honours_cancel():
    from LiverTumorSegLib.errors import CancelledError
    from LiverTumorSegLib.progress import CancellationToken
    ph = make_phantom((2, 32, 32))
    seen = []
    SlicePreprocessor().prepare(ph.ct, progress=lambda f, s: seen.append(f))
    assert seen[-1] == 1.0
    token = CancellationToken()
    token.cancel()
    with pytest.raises(CancelledError):
        SlicePreprocessor().prepare(ph.ct, cancel=token)


def test_spatial_forward_rejects_non_volume():
    with pytest.raises(InputError):
        SlicePreprocessor().spatial_forward(np.zeros((4, 4)), (1, 1, 1))
    vol = CTVolume(np.zeros((1, 4, 4), np.int16), ImageGeometry(spacing=(1, 1, 1)))
    assert SlicePreprocessor(PreprocessingConfig(size_multiple=1, target_spacing_mm=None)).prepare(vol).num_slices == 1


def test_real_ct_default_preset_keeps_liver_and_round_trips():
    """Real 512x512 CT (0.81 mm, -3024 outside the field of view) and its liver label (Testing/Data)."""
    from LiverTumorSegLib.io import read_label_map, read_volume
    from LiverTumorSegLib.orientation import canonicalize
    ct = read_volume("Testing/Data/ct3slice_ct.nii.gz")
    seg = read_label_map("Testing/Data/ct3slice_liver_seg.nii.gz", reference=ct)
    canonical, reo = canonicalize(ct)
    labels = reo.to_canonical(np.asarray(seg.array))
    pre = SlicePreprocessor(PreprocessingConfig.preset("default"))
    prepared = pre.prepare(canonical)
    info = prepared.info
    assert info.net_spacing_yx == pytest.approx((1.5, 1.5), rel=0.01)
    assert info.crop_shape_yx[0] < 512 and info.crop_shape_yx[1] < 512  # cropped to the body
    lab_net = pre.labels_forward(labels, info)
    liver_mm2_native = np.count_nonzero(labels) * canonical.spacing_zyx[1] * canonical.spacing_zyx[2]
    liver_mm2_net = np.count_nonzero(lab_net) * info.net_spacing_yx[0] * info.net_spacing_yx[1]
    assert liver_mm2_net == pytest.approx(liver_mm2_native, rel=0.03)  # the crop keeps the liver
    assert (prepared.restore_labels(lab_net) == labels).mean() > 0.995
    x = prepared.batch([1])
    assert x.shape == (1, 9) + prepared.net_shape_yx and 0 <= x.min() and x.max() <= 1


@pytest.mark.parametrize("native_yx, crop_yx, resampled_yx, pad_yx", [
    ((40, 50), (5, 37, 0, 50), (20, 31), (2, 2, 1, 0)),    # upsampling back to a crop
    ((24, 20), (0, 24, 0, 20), (30, 25), (1, 1, 0, 3)),    # shrinking back (antialiased), whole slice
    ((16, 18), (2, 14, 3, 18), (12, 15), (0, 0, 0, 0)),    # no resampling, crop only
])
def test_inverse_argmax_equals_argmax_of_inverse_maps(native_yx, crop_yx, resampled_yx, pad_yx):
    from LiverTumorSegLib.inference.engine import argmax_channels
    from LiverTumorSegLib.preprocessing.spatial import SpatialInfo, inverse_argmax, inverse_maps

    info = SpatialInfo(native_shape_yx=native_yx, native_spacing_yx=(1.0, 1.0), crop_yx=crop_yx,
                       resampled_shape_yx=resampled_yx, pad_yx=pad_yx, num_slices=37)
    h, w = info.net_shape_yx
    rng = np.random.default_rng(11)
    logits = rng.normal(scale=3.0, size=(37, 3, h, w)).astype(np.float32)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    probs[3, :, :4, :4] = 1.0 / 3.0  # exact three-way ties: the first class wins in both
    native = inverse_maps(probs, info)
    labels, probability = inverse_argmax(probs, info, class_index=2)
    np.testing.assert_array_equal(labels, argmax_channels(native))
    np.testing.assert_array_equal(probability, np.clip(np.rint(native[:, 2] * 255.0), 0, 255).astype(np.uint8))
    assert labels.shape == (37,) + tuple(native_yx) and labels.max() == 2 and probability.max() > 200
    only_labels, none = inverse_argmax(probs, info)
    assert none is None
    np.testing.assert_array_equal(only_labels, labels)
    with pytest.raises(InputError, match="no class 3"):
        inverse_argmax(probs, info, class_index=3)
    # the device-side restore (used on CUDA) computes the same numbers; on the CPU, bit for bit
    import torch
    from LiverTumorSegLib.preprocessing.spatial import inverse_argmax_tensor
    labels_t, probability_t = inverse_argmax_tensor(torch.from_numpy(probs), info, class_index=2)
    assert labels_t.dtype == torch.uint8 and labels_t.device.type == "cpu"
    np.testing.assert_array_equal(labels_t.numpy(), labels)
    np.testing.assert_array_equal(probability_t.numpy(), probability)
    assert inverse_argmax_tensor(torch.from_numpy(probs), info)[1] is None
    with pytest.raises(InputError, match="no class 3"):
        inverse_argmax_tensor(torch.from_numpy(probs), info, class_index=3)


@pytest.mark.parametrize("crop, target, multiple", [(None, 1.5, 32), ((3, 40, 5, 37), 1.5, 16), (None, None, 16),
                                                    ((0, 44, 0, 50), None, 1), (None, 0.7, 8)])
def test_forward_image_fills_one_padded_volume_exactly_as_pad_after_resample(crop, target, multiple):
    """The (z, H, W) path resamples into the padded volume's interior (no second float32 copy); the result is
    the old resample-then-np.pad, voxel for voxel."""
    from LiverTumorSegLib.preprocessing.spatial import _pad, forward_image, plan_spatial, resample_slices

    hu = np.random.default_rng(2).normal(0, 300, size=(5, 44, 50)).astype(np.int16)
    info = plan_spatial(hu.shape, (0.9, 1.1), crop, target, None, multiple)
    y0, y1, x0, x1 = info.crop_yx
    cropped = hu[:, y0:y1, x0:x1]
    old = _pad(resample_slices(cropped, info.resampled_shape_yx, "bilinear") if info.is_resampled
               else cropped.astype(np.float32), info.pad_yx, -1000.0)
    new = forward_image(hu, info, pad_value=-1000.0)
    assert new.dtype == np.float32 and new.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(new, old)
    np.testing.assert_array_equal(forward_image(hu[None], info, pad_value=-1000.0)[0], old)  # (c, z, H, W) too


def test_config_takes_numpy_numbers_and_stores_python_ones():
    """np.float32(1.5) was refused as 'must be a number' while np.float64 passed."""
    import json

    import numpy as np

    from LiverTumorSegLib.preprocessing import PreprocessingConfig

    config = PreprocessingConfig(target_spacing_mm=np.float32(1.5), size_multiple=np.int64(32),
                                 channels=[{"kind": "window", "level": np.float32(40), "width": np.int16(400)}])
    data = config.to_dict()
    assert data["target_spacing_mm"] == 1.5 and type(data["target_spacing_mm"]) is float
    assert data["size_multiple"] == 32 and type(data["size_multiple"]) is int
    assert json.loads(json.dumps(data)) == data
    sized = PreprocessingConfig(target_spacing_mm=None, target_size=(np.int64(256), 256))
    assert json.loads(json.dumps(sized.to_dict()))["target_size"] == [256, 256]


@pytest.mark.parametrize("settings, message", [
    ({"channels": [{"kind": ["window"]}]}, "unknown kind"),
    ({"channels": [{"kind": "window", "preset": ["liver"]}]}, "unknown window preset"),
    ({"channels": [{"kind": "hist_scaled", "n_bins": 10 ** 9}]}, "n_bins must be an integer from 1 to 65536"),
    ({"median_size": 1001}, "median_size must be an integer from 0 to 15"),
    ({"gaussian_sigma_mm": 1e6}, "gaussian_sigma_mm must be from 0"),
    ({"clahe_tiles": 100000, "equalize": "clahe"}, "clahe_tiles must be an integer from 1 to 64"),
    ({"channels": [{"kind": "window", "level": 40, "width": 1e-300}]}, "width must be from 1 to 20000 HU"),
    ({"crop_margin_mm": 1e308}, "crop_margin_mm must be from 0 to 1000"),
    ({"pad_hu": 1e39}, "pad_hu must be from -10000 to 10000"),
    ({"size_multiple": 4096}, "size_multiple must be an integer from 1 to 512"),
    ({"channels": [{"kind": "zscore"}], "equalize": "clahe"}, "applies to window channels, and this config has none"),
    ({"target_spacing_mm": None, "target_size": [256, 60000]}, "target_size W must be an integer from 1 to 4096"),
    ({"target_spacing_mm": 0.001}, "target_spacing_mm must be from 0.1 to under 100 mm"),
], ids=["list-kind", "list-preset", "huge-bins", "huge-median", "huge-sigma", "huge-tiles", "tiny-width",
        "huge-margin", "huge-pad", "huge-multiple", "no-window-to-equalize", "huge-size", "tiny-spacing"])
def test_settings_beyond_any_use_are_refused_when_read(settings, message):
    """An audit's reproductions: a list as kind/preset was an internal TypeError; n_bins 1e9 an out-of-memory
    message blaming the machine; median 1001 ~2 h and sigma 1e6 mm days per CT; 1e5 CLAHE tiles a constant white
    channel; width 1e-300 NaN at the window's edge; a 1e308 mm margin an internal error; size_multiple 4096, a
    60000 px target size or 0.001 mm pixels a network grid of tens of GiB per CT (training has no memory check); an
    equalization without a window channel to equalize did nothing, silently."""
    with pytest.raises(PreprocessingConfigError, match=message):
        PreprocessingConfig.from_dict(settings)


def test_clahe_equalize_in_the_preprocessor_equalizes_only_the_window_channels():
    """``"equalize": "clahe"`` had no test through :meth:`SlicePreprocessor.intensity_channels`: the window channel
    of a low-contrast liver slice (60 +- 10 HU in a W400 window: std 0.025) gets CLAHE's contrast (std > 0.1) within
    [0, 1] with the config's clip limit and tiles, a z-score channel is left as it is, and one (H, W) slice gives
    ``(1, C0, H, W)`` with the same values."""
    config = PreprocessingConfig(channels=[{"kind": "window", "level": 40, "width": 400},
                                           {"kind": "zscore", "mask": "none"}],
                                 equalize="clahe", clahe_clip_limit=0.02, clahe_tiles=2, context_slices=0,
                                 target_spacing_mm=None)
    pre = SlicePreprocessor(config)
    hu = np.random.default_rng(0).normal(60, 10, (2, 32, 32)).astype(np.float32)  # (n, H, W)
    channels = pre.intensity_channels(hu)  # (n, C0, H, W)
    window = window_hu(hu, 40, 400)
    assert channels.shape == (2, 2, 32, 32) and window.std() < 0.03
    assert channels[:, 0].std() > 0.1 and 0.0 <= channels[:, 0].min() and channels[:, 0].max() <= 1.0
    np.testing.assert_allclose(channels[:, 0], clahe(window, 0.02, 2, value_range=(0.0, 1.0)), atol=1e-6)
    assert not np.allclose(channels[:, 0], clahe(window, 0.01, 8, value_range=(0.0, 1.0)), atol=1e-3)
    np.testing.assert_allclose(channels[0, 1], (hu[0] - hu[0].mean()) / hu[0].std(), atol=1e-5)
    single = pre.intensity_channels(hu[0])
    assert single.shape == (1, 2, 32, 32) and np.array_equal(single[0], channels[0])
    assert config.patch_computed_steps == ["clahe equalization"]


def test_clahe_keeps_tiles_of_several_pixels():
    """64 tiles on a 64 x 64 slice made 1-pixel tiles, each mapping its pixel to 1.0: a constant channel."""
    rng = np.random.default_rng(5)
    x = rng.random((64, 64)).astype(np.float32)
    many = clahe(x, tiles=64)
    assert many.std() > 0.1 and 0 <= many.min() and many.max() <= 1
    np.testing.assert_array_equal(many, clahe(x, tiles=8))        # 64 // 8 px per tile side at most 8 tiles


def test_window_hu_refuses_a_width_whose_scale_overflows():
    with pytest.raises(InputError, match="Window width"):
        window_hu(np.array([-10.0, 40.0, 100.0]), 40.0, 1e-300)


@pytest.mark.parametrize("spec, words", [
    ({"kind": "window", "level": 40, "width": 1e39}, "width must be from 1 to 20000 HU"),
    ({"kind": "window", "level": 40, "width": 1e300}, "width must be from 1 to 20000 HU"),
    ({"kind": "window", "level": 1e30, "width": 400}, "level must be from -10000 to 10000 HU"),
    ({"kind": "hist_scaled", "bins": [-1e39, 1e39]}, "bins must lie from -10000 to 10000 HU"),
])
def test_a_config_window_or_bins_beyond_float32_is_refused_when_read(spec, words):
    """A config (package, --config file) with width 1e39 gave a constant channel and 1e300 a NaN one, exit 0
    (the float32 scale overflowed); the CLI's --window-width was capped for this, configs were not."""
    from LiverTumorSegLib.preprocessing.config import normalize_channel

    with pytest.raises(InputError, match=words):
        normalize_channel(spec)
    wide = normalize_channel({"kind": "window", "level": 40, "width": 20000})  # the widest still works:
    x = window_hu(np.array([-1000.0, 40.0, 1000.0], np.float32), wide["level"], wide["width"])
    np.testing.assert_allclose(x, [0.448, 0.5, 0.548], atol=1e-6)  # (hu - (40 - 10000)) / 20000


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.float64])
def test_window_into_a_given_array_gives_the_same_numbers(dtype):
    """window_hu(out=...) writes each network input channel in place (the batch no longer makes a copy per window to
    assign: 0.10-0.13 -> 0.07-0.09 s CPU for the 300-slice stack's batches), with the numbers of a new array, also
    for a float64 CT (read as float32 first either way)."""
    rng = np.random.default_rng(0)
    hu = rng.uniform(-1100, 1500, size=(3, 17, 19)).astype(dtype)
    expected = window_hu(hu, 40.0, 400.0)
    stacked = np.full((3, 2, 17, 19), 7.0, np.float32)
    returned = window_hu(hu, 40.0, 400.0, out=stacked[:, 1])
    assert np.shares_memory(returned, stacked)
    assert np.array_equal(stacked[:, 1], expected) and expected.dtype == np.float32
    assert np.all(stacked[:, 0] == 7.0)
    channels = SlicePreprocessor(PreprocessingConfig.preset("default")).intensity_channels(hu)
    for c, (level, width) in enumerate([(40, 400), (75, 250), (0, 2000)]):
        assert np.array_equal(channels[:, c], window_hu(hu, level, width))


def test_a_users_partial_preprocessing_keeps_the_default_presets_other_settings(tmp_path):
    """train --preprocessing '{"target_spacing_mm": 1.25}' (help: 'default: default') took the other keys from the
    dataclass, whose 2.5D context bounds are None: the 1-3 mm neighbour spacing of the default preset was dropped
    without a word (the researcher-journey audit). A user's dict or file changes only the keys it gives; null keeps
    no bound; a package's recorded preprocessing is read as recorded (from_dict)."""
    from LiverTumorSegLib.training.trainer import build_preprocessing

    default = PreprocessingConfig.preset("default").to_dict()
    given = build_preprocessing({"target_spacing_mm": 1.25}).to_dict()
    assert given == dict(default, target_spacing_mm=1.25)
    assert given["context_min_mm"] == 1.0 and given["context_max_mm"] == 3.0
    unbounded = build_preprocessing({"context_min_mm": None, "context_max_mm": None})
    assert unbounded.context_min_mm is None and unbounded.context_max_mm is None
    wide = build_preprocessing({"context_min_mm": 6.0})  # the bounds go together: no maximum of 3 under 6
    assert wide.context_min_mm == 6.0 and wide.context_max_mm is None
    path = tmp_path / "pre.json"
    path.write_text('{"target_spacing_mm": 1.25}')
    assert build_preprocessing(str(path)).to_dict() == given
    assert PreprocessingConfig.from_file(path, given=True).to_dict() == given
    assert PreprocessingConfig.from_dict({"target_spacing_mm": 1.25}).context_min_mm is None  # a package's record
