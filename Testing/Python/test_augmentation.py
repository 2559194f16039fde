"""SliceAugmenter: image/label alignment, identity, label values, zoom, rotation, liver-only HU shift."""
import json

import numpy as np
import pytest

from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.training.augmentation import (EDGE_AIR_HU, AugmentationConfig, SliceAugmenter,
                                                    affine_source_matrix, cut_context, gamma_in_window,
                                                    gaussian_blur_in_plane, grain_gain, grained_noise,
                                                    liver_hu_shift, resample_slices, smooth_displacement,
                                                    smooth_liver_field)
import seeding
from seeding import test_seed


def _square_sample(size=64, t=3):
    """HU stack (t, size, size): 40 HU soft tissue, a 300 HU square with label 1 (off-centre)."""
    hu = np.full((t, size, size), 40.0, dtype=np.float32)
    labels = np.zeros((t, size, size), dtype=np.uint8)
    hu[:, 14:34, 20:44] = 300.0
    labels[:, 14:34, 20:44] = 1
    return hu, labels


def _only(**kw):
    cfg = AugmentationConfig.disabled()
    for k, v in kw.items():
        setattr(cfg, k, v)
    cfg.validate()
    return cfg


def _iou(a, b):
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


def test_identity_when_all_probabilities_zero():
    hu, labels = _square_sample()
    out_hu, out_lab = SliceAugmenter(AugmentationConfig.disabled())(hu, labels, 0)
    assert np.array_equal(out_hu, hu) and np.array_equal(out_lab, labels)
    assert out_hu is not hu and out_lab is not labels


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_spatial_keeps_image_and_label_aligned(seed):
    hu, labels = _square_sample()
    cfg = _only(rotation_probability=1.0, rotation_range_deg=(-30.0, 30.0), shift_probability=1.0,
                shear_probability=1.0, zoom_probability=1.0, elastic_probability=1.0,
                elastic_magnitude_mm=(3.0, 3.0))
    aug = SliceAugmenter(cfg, pixel_spacing_mm=1.5)
    out_hu, out_lab = aug(hu, labels, test_seed(seed))
    assert {"rotation_deg", "zoom_yx", "elastic_magnitude_mm"} <= set(aug.last_params)
    for t in range(3):
        bright = out_hu[t] > 170.0
        assert bright.sum() > 100
        assert _iou(bright, out_lab[t] == 1) > 0.95
    # one transform for all slices
    assert np.array_equal(out_lab[0], out_lab[2]) and np.allclose(out_hu[0], out_hu[2])


def test_labels_stay_in_label_set_and_fill_is_air():
    hu, labels = _square_sample()
    labels[:, 20:28, 26:36] = 2
    cfg = _only(rotation_probability=1.0, zoom_probability=1.0, zoom_range=(0.7, 0.7),
                elastic_probability=1.0)
    out_hu, out_lab = SliceAugmenter(cfg)(hu, labels, test_seed(5))
    assert set(np.unique(out_lab)) <= {0, 1, 2} and (out_lab == 2).any()
    assert out_lab.dtype == np.uint8
    assert out_hu[:, 0, 0] == pytest.approx(-1024.0)        # zoom out: corners come from outside


def test_two_dimensional_label_is_returned_two_dimensional():
    hu, labels = _square_sample()
    out_hu, out_lab = SliceAugmenter(_only(rotation_probability=1.0))(hu, labels[1], 0)
    assert out_lab.shape == (64, 64) and out_hu.shape == (3, 64, 64)
    assert _iou(out_hu[1] > 170, out_lab == 1) > 0.95


def test_zoom_scales_area_by_zoom_squared():
    hu, labels = _square_sample(size=96)
    zoom = 1.3
    cfg = _only(zoom_probability=1.0, zoom_range=(zoom, zoom), zoom_anisotropy=1.0)
    _, out_lab = SliceAugmenter(cfg)(hu, labels, 0)
    ratio = (out_lab[1] == 1).sum() / (labels[1] == 1).sum()
    assert ratio == pytest.approx(zoom ** 2, rel=0.05)


def test_rotation_90_matches_rot90():
    rng = seeding.rng(0)
    hu = rng.normal(0, 100, (3, 40, 40)).astype(np.float32)
    labels = (rng.random((3, 40, 40)) > 0.5).astype(np.uint8)
    cfg = _only(rotation_probability=1.0, rotation_range_deg=(90.0, 90.0))
    out_hu, out_lab = SliceAugmenter(cfg)(hu, labels, 0)
    assert np.allclose(out_hu, np.rot90(hu, axes=(1, 2)), atol=1e-2)
    assert np.array_equal(out_lab, np.rot90(labels, axes=(1, 2)))


def test_liver_only_shift_changes_only_liver():
    hu, labels = _square_sample()
    labels[:, 22:26, 30:34] = 2
    cfg = _only(liver_shift_probability=1.0, liver_shift_range_hu=(-30.0, -30.0), liver_target_hu_range=None,
                tumor_shift_fraction=(0.5, 0.5))
    aug = SliceAugmenter(cfg)
    out_hu, out_lab = aug(hu, labels, 0)
    assert np.array_equal(out_hu[labels == 0], hu[labels == 0])
    assert np.allclose(out_hu[:, 20, 30], 270.0)            # liver interior: full shift
    assert np.allclose(out_hu[:, 14, 30], 285.0)            # outermost ring: half
    assert np.allclose(out_hu[:, 24, 32], 285.0)            # tumor: shift x 0.5
    assert np.array_equal(out_lab, labels)


def test_liver_shift_clipped_to_target_range():
    hu, labels = _square_sample()
    hu[labels == 1] = 50.0
    cfg = _only(liver_shift_probability=1.0, liver_shift_range_hu=(-40.0, -40.0),
                liver_target_hu_range=(35.0, 135.0))
    out_hu, _ = SliceAugmenter(cfg)(hu, labels, 0)
    assert np.allclose(out_hu[:, 20, 30], 35.0)             # 50 - 40 clipped at 35


def test_intensity_ops_known_answers():
    hu = np.full((1, 32, 32), 50.0, dtype=np.float32)
    assert np.allclose(gamma_in_window(hu, 2.0, (0.0, 100.0)), 25.0)
    assert np.allclose(gamma_in_window(np.float32([[[-500.0]]]), 2.0, (0.0, 100.0)), -500.0)
    step = np.zeros((2, 16, 16), dtype=np.float32)
    step[:, :, 8:] = 100.0
    blurred = gaussian_blur_in_plane(step, 1.0)
    assert 0 < blurred[0, 5, 7] < 50 < blurred[0, 5, 8] < 100 and np.allclose(blurred[0], blurred[1])
    cfg = _only(noise_probability=1.0, noise_std_hu=(10.0, 10.0))
    noisy, _ = SliceAugmenter(cfg)(np.zeros((3, 64, 64), np.float32), np.zeros((64, 64), np.uint8), test_seed(0))
    assert noisy.std() == pytest.approx(10.0, rel=0.05)
    cfg = _only(hu_scale_probability=1.0, hu_scale_range=(2.0, 2.0), hu_shift_probability=1.0,
                hu_shift_range=(5.0, 5.0))
    scaled, _ = SliceAugmenter(cfg)(hu, np.zeros((32, 32), np.uint8), 0)
    assert np.allclose(scaled, 105.0)


def test_liver_hu_shift_function_2d_label():
    hu = np.zeros((3, 10, 10), dtype=np.float32)
    lab = np.zeros((10, 10), dtype=np.uint8)
    lab[2:8, 2:8] = 1
    out = liver_hu_shift(hu, lab, 20.0)
    assert np.allclose(out[:, 5, 5], 20.0) and np.allclose(out[:, 2, 5], 10.0) and out[:, 0, 0].max() == 0


def test_affine_matrix_and_resample_known_answers():
    assert np.allclose(affine_source_matrix(zoom_yx=(2.0, 4.0)), np.diag([0.5, 0.25]))
    assert np.allclose(affine_source_matrix(flip_lr=True), np.diag([1.0, -1.0]))
    img = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    src = np.stack(np.meshgrid(np.arange(3), np.arange(4), indexing="ij")).astype(np.float32)
    assert np.allclose(resample_slices(img, src, "bilinear", -1024.0), img)
    src[1] += 0.5
    shifted = resample_slices(img, src, "bilinear", -1024.0)
    assert np.allclose(shifted[0, :, :3], img[0, :, :3] + 0.5)


def test_smooth_displacement_magnitude():
    field = smooth_displacement((128, 128), 3.0, 20.0, seeding.rng(0))
    assert field.shape == (2, 128, 128)
    assert 1.0 < field.std() < 5.0
    assert np.abs(np.diff(field, axis=2)).max() < 2.0       # smooth: neighbours move together


def test_flips_off_by_default_and_deterministic():
    cfg = AugmentationConfig()
    assert cfg.flip_lr_probability == 0.0 and cfg.flip_ud_probability == 0.0
    hu, labels = _square_sample()
    a = SliceAugmenter(cfg)(hu, labels, np.random.default_rng(4))
    b = SliceAugmenter(cfg)(hu, labels, np.random.default_rng(4))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_flip_lr():
    hu, labels = _square_sample()
    out_hu, out_lab = SliceAugmenter(_only(flip_lr_probability=1.0))(hu, labels, 0)
    assert np.allclose(out_hu, hu[:, :, ::-1], atol=1e-3) and np.array_equal(out_lab, labels[:, :, ::-1])


def test_config_json_round_trip_and_validation():
    cfg = AugmentationConfig(rotation_range_deg=(-5.0, 5.0))
    assert AugmentationConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(InputError, match="rotation_probability"):
        AugmentationConfig(rotation_probability=2.0)
    with pytest.raises(InputError, match="zoom_range"):
        AugmentationConfig(zoom_range=(0.0, 1.0))
    with pytest.raises(InputError, match="Unknown"):
        AugmentationConfig.from_dict({"rotate": 1})
    with pytest.raises(InputError, match="shape"):
        SliceAugmenter()(np.zeros((3, 8, 8), np.float32), np.zeros((3, 9, 8), np.uint8), 0)


def test_smooth_liver_field_is_wide_soft_liver_only_and_the_same_on_every_slice():
    """Uneven enhancement, not a lesion: background untouched, the largest change in the liver equals the
    amplitude, no step between neighbouring pixels of 4 HU (300 draws: at most 2.8), every
    slice shifted alike, tumor voxels shifted with the liver around them."""
    size = 128
    hu = np.full((3, size, size), 40.0, dtype=np.float32)
    labels = np.zeros((3, size, size), dtype=np.uint8)
    labels[:, 10:118, 10:118] = 1
    labels[:, 60:70, 60:70] = 2
    hu[labels == 1], hu[labels == 2] = 100.0, 60.0
    rng = np.random.default_rng(test_seed(21))
    out = smooth_liver_field(hu, labels, amplitude_hu=30.0, scale_px=40.0, rng=rng)
    delta = out - hu
    assert out.dtype == np.float32 and np.array_equal(out[labels == 0], hu[labels == 0])
    assert np.abs(delta).max() == pytest.approx(30.0, abs=1e-3)
    core = delta[1, 11:117, 11:117]
    assert np.abs(np.diff(core, axis=0)).max() < 4.0 and np.abs(np.diff(core, axis=1)).max() < 4.0  # 2.8 in 300 draws
    assert np.allclose(delta[0], delta[2]) and np.allclose(delta[0], delta[1])
    assert np.abs(core).mean() > 3.0  # it does change the liver


def test_liver_field_in_the_augmenter_keeps_labels_and_reports_what_it_drew():
    hu, labels = _square_sample()
    cfg = _only(liver_field_probability=1.0, liver_field_amplitude_hu=(20.0, 20.0), liver_field_scale_mm=(60.0, 60.0))
    augmenter = SliceAugmenter(cfg, pixel_spacing_mm=1.5)
    out_hu, out_lab = augmenter(hu, labels, np.random.default_rng(test_seed(3)))
    assert np.array_equal(out_lab, labels) and np.array_equal(out_hu[labels == 0], hu[labels == 0])
    assert augmenter.last_params == {"liver_field_amplitude_hu": 20.0, "liver_field_scale_mm": 60.0}
    assert 0 < np.abs(out_hu - hu).max() <= 20.0 + 1e-3
    with pytest.raises(InputError, match="liver_field_scale_mm"):
        _only(liver_field_scale_mm=(0.0, 10.0))


@pytest.mark.parametrize("field,value", [("liver_field_amplitude_hu", (10.0, float("inf"))),
                                         ("liver_field_amplitude_hu", (float("nan"), 30.0)),
                                         ("liver_field_scale_mm", (40.0, float("nan"))),
                                         ("liver_shift_range_hu", (0.0, float("inf"))),
                                         ("liver_field_amplitude_hu", (-30.0, -10.0))])
def test_ranges_must_be_finite_and_the_field_amplitude_a_size(field, value):
    # these passed validate() and crashed the first sample (OverflowError) or drew negative 'amplitudes'
    with pytest.raises(InputError, match=field):
        _only(**{field: value})


def _lag1_correlation(noise, axis):
    a = np.moveaxis(noise, axis, -1)
    x, y = a[..., :-1].ravel().astype(np.float64), a[..., 1:].ravel().astype(np.float64)
    return float(np.corrcoef(x, y)[0, 1])


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.5])
def test_grain_gain_is_the_std_of_filtered_unit_white_noise(sigma):
    white = np.random.default_rng(test_seed(41)).standard_normal((1, 512, 512)).astype(np.float32)
    filtered = gaussian_blur_in_plane(white, sigma)[:, 16:-16, 16:-16]  # away from the 'nearest' edges
    assert filtered.std() == pytest.approx(grain_gain(sigma), rel=0.03)
    if sigma >= 1.0:  # the continuous limit 1 / (2 sqrt(pi) sigma)
        assert grain_gain(sigma) == pytest.approx(1.0 / (2.0 * np.sqrt(np.pi) * sigma), rel=0.03)


def test_grained_noise_keeps_the_std_and_correlates_in_plane_only():
    white = np.random.default_rng(test_seed(42)).normal(0.0, 20.0, (4, 256, 256)).astype(np.float32)
    grained = grained_noise(white, 1.0)
    assert grained.dtype == np.float32 and grained.shape == white.shape
    assert grained.std() == pytest.approx(20.0, rel=0.05)
    # Gaussian-filtered white noise has a Gaussian autocorrelation: lag 1 px -> exp(-1 / (4 sigma^2)) = 0.78
    for axis in (1, 2):
        assert 0.72 < _lag1_correlation(grained, axis) < 0.84
        assert abs(_lag1_correlation(white, axis)) < 0.02
    assert abs(_lag1_correlation(grained, 0)) < 0.03  # slices stay independent


def test_noise_grain_in_the_augmenter_is_drawn_only_when_asked():
    hu = np.full((3, 128, 128), 50.0, dtype=np.float32)
    labels = np.zeros((3, 128, 128), dtype=np.uint8)
    grainy = SliceAugmenter(_only(noise_probability=1.0, noise_std_hu=(25.0, 25.0), noise_grain_probability=1.0,
                                  noise_grain_px=(1.5, 1.5)))
    out, _ = grainy(hu, labels, np.random.default_rng(test_seed(43)))
    assert grainy.last_params == {"noise_std_hu": 25.0, "noise_grain_px": 1.5}
    assert (out - 50.0).std() == pytest.approx(25.0, rel=0.1)
    assert 0.8 < _lag1_correlation(out - 50.0, 2) < 0.95  # exp(-1 / 9) = 0.89
    white = SliceAugmenter(_only(noise_probability=1.0, noise_std_hu=(25.0, 25.0)))
    out, _ = white(hu, labels, np.random.default_rng(test_seed(43)))
    assert white.last_params == {"noise_std_hu": 25.0}
    assert abs(_lag1_correlation(out - 50.0, 2)) < 0.03
    with pytest.raises(InputError, match="noise_grain_px"):
        _only(noise_grain_px=(0.0, 1.0))


def _numbered_stack(t=5):
    """HU stack (t, 4, 4) whose slice z holds HU 10 z, labels z % 3 (0/1/2)."""
    z = np.arange(t)
    hu = (10.0 * z)[:, None, None] * np.ones((t, 4, 4), dtype=np.float32)
    labels = (z % 3).astype(np.uint8)[:, None, None] * np.ones((t, 4, 4), dtype=np.uint8)
    return hu.astype(np.float32), labels


@pytest.mark.parametrize("side, keep, air, hu_z, labels_z", [
    (1, 0, False, [0, 10, 20, 20, 20], [0, 1, 2, 2, 2]),     # the scan's last slice is the centre: repeated
    (1, 1, False, [0, 10, 20, 30, 30], [0, 1, 2, 0, 0]),
    (-1, 0, False, [20, 20, 20, 30, 40], [2, 2, 2, 0, 1]),
    (-1, 1, True, [EDGE_AIR_HU, 10, 20, 30, 40], [0, 1, 2, 0, 1]),  # air beyond the body, unlabelled
    (1, 0, True, [0, 10, 20, EDGE_AIR_HU, EDGE_AIR_HU], [0, 1, 2, 0, 0]),
])
def test_cut_context_known_answers(side, keep, air, hu_z, labels_z):
    hu, labels = _numbered_stack()
    out_hu, out_lab = cut_context(hu, labels, side, keep, air)
    np.testing.assert_array_equal(out_hu[:, 0, 0], np.asarray(hu_z, dtype=np.float32))
    np.testing.assert_array_equal(out_lab[:, 0, 0], labels_z)
    assert (out_hu == out_hu[:, :1, :1]).all() and (out_lab == out_lab[:, :1, :1]).all()  # whole slices
    np.testing.assert_array_equal(hu, _numbered_stack()[0])  # the input is not changed
    centre_label = labels[2]
    assert cut_context(hu, centre_label, side, keep, air)[1] is not centre_label  # a (H, W) label: a copy
    np.testing.assert_array_equal(cut_context(hu, centre_label, side, keep, air)[1], centre_label)


def test_a_repeated_edge_slice_stays_an_exact_copy_through_the_noise():
    """cut_context's repeat is inference's clipped neighbour, an exact copy of the scan's last slice; the noise
    drawn after it gave the copy noise of its own (an input inference never gives). Air keeps its own noise."""
    seeding.seed_everything(44)
    hu, labels = _numbered_stack()
    augmenter = SliceAugmenter(_only(edge_context_probability=1.0, edge_context_air_fraction=0.5,
                                     noise_probability=1.0, noise_std_hu=(20.0, 20.0)))
    rng = np.random.default_rng(test_seed(44))
    kinds = set()
    for _ in range(60):
        out_hu, _ = augmenter(hu, labels, rng)
        cut = augmenter.last_params["edge_context"]
        c, last = 2, 2 + cut["side"] * cut["keep"]
        beyond = range(last + 1, 5) if cut["side"] > 0 else range(0, last)
        for j in beyond:
            same = np.array_equal(out_hu[j], out_hu[last])
            assert same != cut["air"], (cut, j)  # a repeat: the very slice; air: noise of its own
        assert not np.array_equal(out_hu[c], hu[c])  # the noise was drawn
        kinds.add(cut["air"])
    assert kinds == {True, False}


def test_cut_context_refuses_what_is_no_stack_or_no_cut():
    hu, labels = _numbered_stack()
    for bad in [dict(side=0, keep=0), dict(side=1, keep=2), dict(side=-1, keep=-1)]:
        with pytest.raises(InputError, match="side must be -1 or \\+1 and keep in 0 .. 1"):
            cut_context(hu, labels, air=False, **bad)
    with pytest.raises(InputError, match="2c \\+ 1 >= 3"):
        cut_context(hu[:1], labels[:1], 1, 0, False)
    with pytest.raises(InputError, match="2c \\+ 1 >= 3"):
        cut_context(hu[:4], labels[:4], 1, 0, False)


def test_edge_context_in_the_augmenter_draws_both_sides_and_kinds_and_keeps_the_centre():
    seeding.seed_everything(43)
    hu, labels = _numbered_stack()
    cfg = _only(edge_context_probability=0.5, edge_context_air_fraction=0.25)
    augmenter, rng = SliceAugmenter(cfg), np.random.default_rng(test_seed(43))
    drawn = []
    for _ in range(800):
        out_hu, out_lab = augmenter(hu, labels, rng)
        np.testing.assert_array_equal(out_hu[2], hu[2])
        np.testing.assert_array_equal(out_lab[2], labels[2])
        cut = augmenter.last_params.get("edge_context")
        if cut is None:
            np.testing.assert_array_equal(out_hu, hu)
            continue
        drawn.append((cut["side"], cut["keep"], cut["air"]))
        expected_hu, expected_lab = cut_context(hu, labels, cut["side"], cut["keep"], cut["air"])
        np.testing.assert_array_equal(out_hu, expected_hu)
        np.testing.assert_array_equal(out_lab, expected_lab)
    # binomial margins of 4 sd or more: 800 x 0.5 = 400 cut (sd 14); of about 400 cut, air 25 % (sd 0.022), each
    # side and keep 50 % (sd 0.025)
    assert 340 < len(drawn) < 460
    air = sum(d[2] for d in drawn)
    assert 0.16 < air / len(drawn) < 0.34
    for position, value in ((0, -1), (1, 0)):
        assert 0.40 < sum(d[position] == value for d in drawn) / len(drawn) < 0.60
    np.testing.assert_array_equal(SliceAugmenter(_only(edge_context_probability=1.0))(hu[:1], labels[:1], 0)[0],
                                  hu[:1])  # one slice: no neighbour to cut


def test_recipes_without_the_edge_context_draw_the_random_numbers_they_drew_before_it():
    """The default augmentation with v3's liver field, seed 2027: the draws and the generator's state after six
    calls, recorded with the code before ``edge_context_probability`` existed (so v3's recipe trains on the same
    samples; a draw added for everyone would shift every later one)."""
    augmenter, rng = SliceAugmenter(AugmentationConfig(liver_field_probability=0.5)), np.random.default_rng(2027)
    drawn = []
    for _ in range(6):
        hu, labels = _square_sample()
        augmenter(hu, labels, rng)
        drawn.append(augmenter.last_params)
    assert drawn[0] == pytest.approx({"elastic_magnitude_mm": 3.171162684, "liver_field_amplitude_hu": 18.974912669,
                                      "liver_field_scale_mm": 82.325700606, "liver_shift_hu": -1.411744911,
                                      "shear": 0.023504988, "tumor_shift_fraction": 0.541260308}, abs=1e-8)
    assert drawn[4] == pytest.approx({"elastic_magnitude_mm": 1.286322841, "hu_scale": 0.952526205,
                                      "hu_shift": -2.164707432}, abs=1e-8)
    assert rng.random() == 0.7657123490208317


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_edge_context_air_fraction_must_be_a_fraction(value):
    with pytest.raises(InputError, match="edge_context_air_fraction"):
        AugmentationConfig(edge_context_air_fraction=value).validate()
    with pytest.raises(InputError, match="edge_context_probability"):
        AugmentationConfig(edge_context_probability=value).validate()


def test_nested_options_take_their_defaults_types_and_ranges():
    """The nested augmentation / lesion options of a YAML recipe: numbers PyYAML reads as text ('5e-1') were
    stored as text and failed at the first sample, after caching; negative sizes (noise std, blur sigma, edge
    width) and inf/NaN passed the check and failed later or silently changed the data; the text "false" for a
    true/false option meant true."""
    import math

    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.training.synthetic_lesions import LesionConfig

    config = AugmentationConfig.from_dict({"noise_probability": "5e-1", "zoom_range": ["0.8", 1.25]})
    assert config.noise_probability == 0.5 and config.zoom_range == (0.8, 1.25)
    lesions = LesionConfig.from_dict({"probability": "8e-1", "count_range": [1, "3"]})
    assert lesions.probability == 0.8 and lesions.count_range == (1, 3) and isinstance(lesions.count_range[1], int)
    assert AugmentationConfig(liver_target_hu_range=None).liver_target_hu_range is None  # Optional: None is fine
    numpy_values = LesionConfig(min_liver_voxels=np.int64(30), allow_boundary_touching=np.bool_(False),
                                anisotropy=np.float32(1.25))  # a config computed with numpy
    assert (numpy_values.min_liver_voxels, numpy_values.allow_boundary_touching) == (30, False)
    refused = [
        (AugmentationConfig, {"noise_std_hu": [-5, -1]}, "noise_std_hu"),
        (AugmentationConfig, {"blur_sigma_px": [-1, -1]}, "blur_sigma_px"),
        (AugmentationConfig, {"zoom_anisotropy": math.inf}, "zoom_anisotropy"),
        (AugmentationConfig, {"zoom_anisotropy": "1.2x"}, "zoom_anisotropy"),
        (AugmentationConfig, {"fill_hu": math.nan}, "fill_hu"),
        (AugmentationConfig, {"noise_std_hu": None}, "noise_std_hu"),
        (LesionConfig, {"margin_softness_mm": [-2, -1]}, "margin_softness_mm"),
        (LesionConfig, {"diameter_range_mm": [5, math.inf]}, "diameter_range_mm"),
        (LesionConfig, {"hypo_contrast_hu": [math.nan, 40]}, "hypo_contrast_hu"),
        (LesionConfig, {"allow_boundary_touching": "false"}, "allow_boundary_touching"),
        (LesionConfig, {"count_range": [1, 2.5]}, "count_range"),
        (LesionConfig, {"count_range": [1, 2, 3]}, "count_range"),
        (LesionConfig, {"necrosis_fraction": [0.5, 1.5]}, "necrosis_fraction"),
        (LesionConfig, {"vessel_count_range": [-1, 2]}, "vessel_count_range"),
    ]
    for cls, values, name in refused:
        with pytest.raises(InputError, match=name):
            cls.from_dict(values)


@pytest.mark.parametrize("spacing", [float("nan"), float("inf"), "1.5", True, 0.0, -1.5])
def test_pixel_spacing_must_be_a_finite_positive_number(spacing):
    """NaN and text were taken by the constructor and failed inside the DataLoader ("cannot convert float NaN to
    integer", "'<=' not supported"); infinity failed with a division by zero, also as a call's own pixel size."""
    hu, labels = _square_sample(16)
    with pytest.raises(InputError, match="pixel_spacing_mm must be a finite number"):
        SliceAugmenter(_only(elastic_probability=1.0), pixel_spacing_mm=spacing)
    with pytest.raises(InputError, match="pixel_spacing_mm must be a finite number"):
        SliceAugmenter(_only(elastic_probability=1.0), pixel_spacing_mm=1.5)(hu, labels, 0, pixel_spacing_mm=spacing)


def test_a_dict_for_the_config_is_refused_with_the_way_to_build_one():
    with pytest.raises(InputError, match=r"AugmentationConfig\.from_dict"):
        SliceAugmenter({"zoom_probability": 1.0})


@pytest.mark.parametrize("options, named, other", [
    ({"zoom_anisotropy": 0.5}, "zoom_anisotropy", "elastic_grid_mm"),
    ({"elastic_grid_mm": -1.0}, "elastic_grid_mm", "zoom_anisotropy"),
    ({"gamma_window_hu": [100.0, 100.0]}, "gamma_window_hu", None)])
def test_each_refusal_names_only_the_wrong_key(options, named, other):
    """Two keys shared one message ('zoom_anisotropy must be >= 1 and elastic_grid_mm > 0'); an empty gamma window
    was accepted and gamma then did nothing however often it was drawn."""
    with pytest.raises(InputError, match=named) as refused:
        AugmentationConfig.from_dict(options)
    assert other is None or other not in str(refused.value)
