"""Synthetic lesions on a tumor-free phantom liver: placement, contrast, volume, count, determinism."""
import json

import numpy as np
import pytest

from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.phantom import make_phantom
from LiverTumorSegLib.training.synthetic_lesions import (LesionConfig, correlated_noise, insert_lesions,
                                                         local_liver_stats)
import seeding


@pytest.fixture(scope="module")
def phantom():
    """Tumor-free liver, 32 x 96 x 96 voxels of 4 x 2 x 2 mm (z, y, x), liver 60 HU, noise 8 HU."""
    p = make_phantom(lesions=[], noise_hu=8.0, liver_hu=60.0)
    spacing_zyx = tuple(reversed(p.ct.geometry.spacing))
    return p.ct.array.astype(np.float32), p.labels, spacing_zyx


def _fixed(**kw):
    """A config with one deterministic kind of lesion (overridable)."""
    base = dict(probability=1.0, count_range=(1, 1), hypodense_probability=1.0, necrosis_probability=0.0,
                rim_probability=0.0, heterogeneity_hu=(0.0, 0.0), irregularity_range=(0.0, 0.0),
                margin_softness_mm=(0.5, 0.5), edge_probability=0.0, allow_boundary_touching=False,
                z_offset_fraction=0.0)
    base.update(kw)
    return LesionConfig(**base)


def test_lesions_only_inside_liver_and_nothing_changes_outside(phantom):
    hu, labels, spacing = phantom
    cfg = LesionConfig(probability=1.0, count_range=(4, 8), edge_probability=1.0, anchor="any")
    hu_new, lab_new, infos = insert_lesions(hu, labels, spacing, seeding.rng(3), cfg)
    assert 4 <= len(infos) <= 8
    assert (lab_new == 2).sum() > 0
    assert np.all(labels[lab_new == 2] == 1)                 # tumor subset of original liver
    assert np.array_equal(lab_new >= 1, labels >= 1)          # liver extent unchanged
    assert np.array_equal(hu_new[labels == 0], hu[labels == 0])
    assert hu_new.dtype == np.float32 and lab_new.dtype == np.uint8
    assert sum(i["voxel_count"] for i in infos) >= (lab_new == 2).sum()   # overlaps counted once in labels


def test_inputs_not_modified(phantom):
    hu, labels, spacing = phantom
    hu0, lab0 = hu.copy(), labels.copy()
    insert_lesions(hu, labels, spacing, 1, LesionConfig(probability=1.0))
    assert np.array_equal(hu, hu0) and np.array_equal(labels, lab0)


def test_requested_contrast_is_achieved_in_core(phantom):
    hu, labels, spacing = phantom
    cfg = _fixed(diameter_range_mm=(30.0, 30.0), hypo_contrast_hu=(40.0, 40.0))
    hu_new, lab_new, infos = insert_lesions(hu, labels, spacing, 5, cfg, sphere=True)
    (info,) = infos
    assert info["contrast_hu"] == pytest.approx(-40.0)
    assert info["local_liver_hu"] == pytest.approx(60.0, abs=2.0)
    # core: voxels within 8 mm of the centre (radius 15 mm)
    c = (np.array(info["center_zyx"]) + 0.5) * spacing
    z, y, x = np.meshgrid(*[(np.arange(n) + 0.5) * s for n, s in zip(hu.shape, spacing)], indexing="ij")
    core = ((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) < 8.0 ** 2
    assert core.sum() > 50
    assert hu_new[core].mean() == pytest.approx(20.0, abs=3.0)
    # texture matches the liver's noise (8 HU), so the lesion is not smoother or grainier than the liver
    assert hu_new[core].std() == pytest.approx(8.0, rel=0.35)


def test_hyperdense_contrast(phantom):
    hu, labels, spacing = phantom
    cfg = _fixed(diameter_range_mm=(30.0, 30.0), hypodense_probability=0.0, hyper_contrast_hu=(30.0, 30.0))
    hu_new, lab_new, infos = insert_lesions(hu, labels, spacing, 2, cfg, sphere=True)
    assert infos[0]["kind"] == "hyperdense" and infos[0]["contrast_hu"] == pytest.approx(30.0)
    assert hu_new[lab_new == 2].mean() == pytest.approx(90.0, abs=6.0)


def test_sphere_volume_matches_formula(phantom):
    hu, labels, spacing = phantom
    r = 12.0
    cfg = _fixed(diameter_range_mm=(2 * r, 2 * r))
    _, lab_new, infos = insert_lesions(hu, labels, spacing, 7, cfg, sphere=True)
    expected_ml = 4.0 / 3.0 * np.pi * r ** 3 / 1000.0
    voxel_ml = float(np.prod(spacing)) / 1000.0
    assert infos[0]["ellipsoid_volume_ml"] == pytest.approx(expected_ml, rel=1e-6)
    assert infos[0]["volume_ml"] == pytest.approx((lab_new == 2).sum() * voxel_ml)
    # surface voxels: tolerance ~ surface area x half a voxel
    surface_tol = 4 * np.pi * r ** 2 * 0.5 * np.mean(spacing) / 1000.0
    assert abs(infos[0]["volume_ml"] - expected_ml) < surface_tol


def test_count_in_range_and_diameters_in_range(phantom):
    hu, labels, spacing = phantom
    cfg = LesionConfig(probability=1.0, count_range=(2, 3), diameter_range_mm=(5.0, 20.0))
    for seed in range(5):
        _, _, infos = insert_lesions(hu, labels, spacing, seeding.test_seed(seed), cfg)
        assert 2 <= len(infos) <= 3
        assert all(5.0 - 1e-9 <= i["diameter_mm"] <= 20.0 + 1e-9 for i in infos)


def test_deterministic_with_seed(phantom):
    hu, labels, spacing = phantom
    cfg = LesionConfig(probability=1.0)
    a = insert_lesions(hu, labels, spacing, np.random.default_rng(11), cfg)
    b = insert_lesions(hu, labels, spacing, np.random.default_rng(11), cfg)
    c = insert_lesions(hu, labels, spacing, np.random.default_rng(12), cfg)
    assert len(a[2]) >= 1
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert not np.array_equal(a[0], c[0])


def test_no_liver_no_lesion():
    hu = np.full((3, 32, 32), 40.0, dtype=np.float32)
    labels = np.zeros((3, 32, 32), dtype=np.uint8)
    hu_new, lab_new, infos = insert_lesions(hu, labels, (2.0, 1.5, 1.5), 0, LesionConfig(probability=1.0))
    assert infos == [] and np.array_equal(hu_new, hu) and not lab_new.any()


def test_probability_zero_gives_no_lesion(phantom):
    hu, labels, spacing = phantom
    _, lab_new, infos = insert_lesions(hu, labels, spacing, 0, LesionConfig(probability=0.0))
    assert infos == [] and np.array_equal(lab_new, labels)


def test_thin_stack_with_middle_slice_label():
    """A (3, H, W) stack with the (H, W) middle label: lesion consistent across slices, label returned 2D."""
    p = make_phantom(lesions=[], shape_zyx=(3, 96, 96), spacing_xyz=(1.5, 1.5, 2.5))
    hu, labels = p.ct.array.astype(np.float32), p.labels
    cfg = _fixed(diameter_range_mm=(20.0, 20.0))
    hu_new, lab_new, infos = insert_lesions(hu, labels[1], (2.5, 1.5, 1.5), 4, cfg, sphere=True)
    assert lab_new.shape == (96, 96) and (lab_new == 2).sum() > 100
    changed = np.abs(hu_new - hu) > 20
    # a 20 mm sphere centred on slice 1 also darkens the 2.5 mm-away neighbour slices, by about the same area
    areas = changed.reshape(3, -1).sum(axis=1)
    assert areas[0] > 0.6 * areas[1] and areas[2] > 0.6 * areas[1]


def test_boundary_touching_lesions_are_clipped_to_liver(phantom):
    hu, labels, spacing = phantom
    cfg = _fixed(diameter_range_mm=(40.0, 40.0), edge_probability=1.0, allow_boundary_touching=True,
                 anchor="any")
    hu_new, lab_new, infos = insert_lesions(hu, labels, spacing, 9, cfg, sphere=True)
    # clipped: fewer labelled voxels than the full sphere, none outside the liver
    assert infos[0]["volume_ml"] < 0.95 * infos[0]["ellipsoid_volume_ml"]
    assert np.all(labels[lab_new == 2] == 1)


def test_local_liver_stats_known_noise():
    rng = seeding.rng(0)
    hu = (70.0 + 10.0 * rng.standard_normal((4, 60, 60))).astype(np.float32)
    liver = np.ones(hu.shape, dtype=bool)
    median, noise, rho = local_liver_stats(hu, liver, (2, 30, 30), (2.0, 1.5, 1.5), 20.0)
    assert median == pytest.approx(70.0, abs=1.0)
    assert noise == pytest.approx(10.0, rel=0.1)
    assert max(rho) < 0.15


@pytest.mark.parametrize("rho", [0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 0.9])
def test_correlated_noise_unit_variance_and_correlation(rho):
    """The continuous formula for the filter width gave 0.08 for 0.2 and 0.18 for 0.3: lesion texture whiter
    than the liver's that it copies. The width now comes from the discrete kernel itself."""
    rng = seeding.rng(1)
    n = correlated_noise((8, 128, 128), (0.0, rho, 0.0), rng)
    assert n.std() == pytest.approx(1.0, rel=0.05)
    along_y = np.mean(n[:, 1:, :] * n[:, :-1, :]) / n.var()
    along_x = np.mean(n[:, :, 1:] * n[:, :, :-1]) / n.var()
    assert along_y == pytest.approx(rho, abs=0.03)
    assert abs(along_x) < 0.03  # white along the axes asked for 0


def test_config_json_round_trip_and_validation():
    cfg = LesionConfig(count_range=(2, 4), hypodense_probability=0.5)
    again = LesionConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(InputError, match="probability"):
        LesionConfig(probability=1.5)
    with pytest.raises(InputError, match="diameter_range_mm"):
        LesionConfig(diameter_range_mm=(60.0, 3.0))
    with pytest.raises(InputError, match="Unknown"):
        LesionConfig.from_dict({"nope": 1})


def test_shape_mismatch_is_a_user_error():
    with pytest.raises(InputError, match="shape"):
        insert_lesions(np.zeros((3, 8, 8), np.float32), np.zeros((3, 8, 9), np.uint8), (1, 1, 1), 0)


@pytest.mark.parametrize("spacing", [(float("nan"), 2.0, 2.0), (4.0, 2.0, float("inf")), "421", (4.0, True, 2.0)])
def test_spacing_must_be_three_finite_positive_numbers(phantom, spacing):
    """NaN or infinity gave no lesion at all without a word (and RuntimeWarnings); text was read digit by digit."""
    hu, labels, _ = phantom
    with pytest.raises(InputError, match="spacing_zyx must be three finite positive mm values"):
        insert_lesions(hu, labels, spacing, 0, LesionConfig(probability=1.0))


def test_a_dict_for_the_config_is_refused_with_the_way_to_build_one(phantom):
    hu, labels, spacing = phantom
    with pytest.raises(InputError, match=r"LesionConfig\.from_dict"):
        insert_lesions(hu, labels, spacing, 0, {"probability": 1.0})


@pytest.mark.parametrize("options, named, other", [({"count_range": [-1, 3]}, "count_range", "diameter_range_mm"),
                                                    ({"diameter_range_mm": [-3.0, 10.0]}, "diameter_range_mm", "count_range"),
                                                    ({"z_offset_fraction": 2.0}, "z_offset_fraction", "count_range")])
def test_each_refusal_names_only_the_wrong_key(options, named, other):
    with pytest.raises(InputError, match=named) as refused:
        LesionConfig.from_dict(options)
    assert other not in str(refused.value)


@pytest.mark.parametrize("options, words", [
    ({"anisotropy": 0.5}, r"LesionConfig\.anisotropy = 0\.5 must be >= 1 \(1 = sphere\)"),
    ({"anchor": "edge"}, r"LesionConfig\.anchor = 'edge' must be 'middle_slice' or 'any'"),
    ({"hypo_contrast_hu": [-10, 5]}, r"LesionConfig\.hypo_contrast_hu = \(-10\.0, 5\.0\) must be >= 0"),
    ({"local_radius_mm": -5}, r"LesionConfig\.local_radius_mm = -5\.0 must be >= 0"),
])
def test_a_recipes_lesion_setting_of_the_wrong_sign_or_word_is_refused_naming_it(options, words):
    """--lesions / a recipe's lesions: a hyperdense contrast written as a negative hypodense one, a squashed
    anisotropy below 1 or a misspelt anchor is refused with the key, the value and the allowed range."""
    with pytest.raises(InputError, match=words):
        LesionConfig.from_dict(options)


def test_vessels_never_run_through_a_labelled_tumor(phantom):
    """Vessels are the negatives for 'a bright tube is tumor': one drawn through a real tumor (label 2, synthetic
    lesions switched on for data with tumor labels) was a bright tube labelled tumor (67 of 100 stacks)."""
    hu, labels, spacing = phantom
    z = int(np.argmax((labels >= 1).sum(axis=(1, 2))))
    hu3, lab3 = hu[z - 1:z + 2].copy(), labels[z - 1:z + 2].copy()
    ys, xs = np.nonzero(lab3[1] == 1)
    yy, xx = np.mgrid[:lab3.shape[1], :lab3.shape[2]]
    tumor = ((yy - ys.mean()) ** 2 + (xx - xs.mean()) ** 2 < 12 ** 2) & (lab3[1] == 1)
    lab3[:, tumor] = 2
    cfg = LesionConfig(probability=0.0, vessel_probability=1.0, vessel_count_range=(4, 4))
    changed_liver = 0
    for seed in range(10):
        hu_new, lab_new, _ = insert_lesions(hu3, lab3, spacing, seeding.rng(seed), cfg)
        assert np.array_equal(lab_new, lab3)
        assert np.array_equal(hu_new[lab3 == 2], hu3[lab3 == 2])
        changed_liver += np.any(np.abs(hu_new - hu3)[lab3 == 1] > 20)
    assert changed_liver >= 8                 # vessels are still drawn in the tumor-free liver


def test_cluster_makes_one_confluent_mass(phantom):
    from scipy.ndimage import label as connected_components

    hu, labels, spacing = phantom
    cfg = _fixed(count_range=(4, 4), diameter_range_mm=(15.0, 25.0), cluster_probability=1.0,
                 allow_boundary_touching=True)
    _, lab_new, infos = insert_lesions(hu, labels, spacing, 3, cfg)
    assert len(infos) >= 3
    _, n_components = connected_components(lab_new == 2)
    assert n_components == 1


def test_companion_of_a_confluent_mass_lands_in_reach_when_random_directions_miss_the_liver():
    """When none of the eight random directions at the drawn distance landed on liver (a mass at the liver's
    edge), the companion was placed anywhere in the liver: the benchmark's "one confluent mass" came out as two
    (example_ct_sm, seed 4). It now takes a liver voxel at 0.4-0.9 x the sum of radii from the first centre."""
    from LiverTumorSegLib.training.synthetic_lesions import _pick_next_to

    spacing = (2.0, 1.0, 1.0)
    liver = np.zeros((20, 80, 80), dtype=bool)
    liver[9:12, 38:43, 58:63] = True        # a small patch about 20 mm from the first centre, towards +x
    liver[9:12, 5:10, 5:10] = True          # and one 50 mm away: out of reach
    first = {"center_zyx": [10.0, 40.0, 40.0], "diameter_mm": 20.0}
    for seed in range(10):
        center, radius = _pick_next_to(first, liver, 12.0, spacing, False, seeding.rng(seed))
        assert radius == 12.0 and liver[tuple(np.rint(center).astype(int))]
        distance = float(np.linalg.norm((np.asarray(center) - first["center_zyx"]) * spacing))
        assert 0.4 * 22.0 <= distance <= 0.9 * 22.0        # touching the first: within the sum of radii
        flat, _ = _pick_next_to(first, liver, 12.0, spacing, True, seeding.rng(seed))  # in-plane: same z
        assert flat[0] == 10.0 and liver[tuple(np.rint(flat).astype(int))]
    lonely = np.zeros_like(liver)
    lonely[9:12, 5:10, 5:10] = True
    assert _pick_next_to(first, lonely, 12.0, spacing, False, seeding.rng(0)) is None   # nothing in reach


def test_cluster_is_confluent_in_a_three_slice_stack(phantom):
    """A training stack has 3 slices and the first lesion's centre is moved in z by up to 0.6 of its radius, often
    past the stack: companions were then refused (centre 'not on liver') and placed anywhere (14 of 20 seeds)."""
    from scipy.ndimage import label as connected_components

    hu, labels, spacing = phantom
    z = int(np.argmax((labels >= 1).sum(axis=(1, 2))))
    hu3, lab3 = hu[z - 1:z + 2], labels[z - 1:z + 2]
    cfg = LesionConfig(probability=1.0, count_range=(3, 3), diameter_range_mm=(20.0, 40.0), cluster_probability=1.0,
                       edge_probability=0.0)
    # Measured over generator seeds 0-399: 3 lesions placed in 99.5 % (a companion finds no room in 2 of 400
    # draws), one connected tumor in 98.5 %; the worst of 381 runs of 20 consecutive seeds had 19 and 17. Before
    # the fix, 6 of 20. (A margin of 19 failed under LIVERTUMORSEG_TEST_SEED=23.)
    confluent = placed = 0
    for seed in range(20):
        _, lab_new, infos = insert_lesions(hu3, lab3, spacing, seeding.rng(seed), cfg)
        assert len(infos) >= 2
        placed += len(infos) == 3
        confluent += connected_components(lab_new == 2, structure=np.ones((3, 3, 3)))[1] == 1
    assert placed >= 18 and confluent >= 16, (placed, confluent)


def test_gallery_script_on_small_real_ct(tmp_path):
    """scripts/lesion_gallery.py end to end on the small TotalSegmentator CT in Testing/Data."""
    from script_helpers import ROOT, load_script

    gallery = load_script("scripts/lesion_gallery.py", "lesion_gallery")
    data = ROOT / "Testing" / "Data"
    hu, labels, spacing = gallery.load_canonical(str(data / "example_ct_sm.nii.gz"),
                                                 str(data / "example_ct_sm_liver.nii.gz"))
    assert spacing == pytest.approx((3.0, 3.0, 3.0)) and labels.max() == 1
    hu_net, lab_net, spacing_net = gallery.to_network_grid(hu, labels, spacing, 1.5)
    assert hu_net.shape[1] == 2 * hu.shape[1] and spacing_net == (3.0, 1.5, 1.5)
    assert lab_net.sum() == pytest.approx(4 * labels.sum(), rel=0.05)
    picks = gallery.liver_slices(lab_net, 3, seeding.rng(0))
    area = lab_net.reshape(lab_net.shape[0], -1).sum(axis=1)
    assert len(picks) == 3 and all(area[z] >= 0.3 * area.max() for z in picks)
    out = tmp_path / "gallery.png"
    assert gallery.main([str(data / "example_ct_sm.nii.gz"), str(data / "example_ct_sm_liver.nii.gz"),
                         "--panels", "2", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_synthetic_vessels_are_bright_tubes_labelled_liver(phantom):
    from LiverTumorSegLib.training.synthetic_lesions import insert_vessels

    hu, labels, spacing = phantom
    cfg = LesionConfig(vessel_probability=1.0, vessel_count_range=(3, 3), vessel_radius_mm=(3.0, 3.0),
                       vessel_contrast_hu=(80.0, 80.0), vessel_hypodense_probability=0.0)
    hu_new = hu.astype(np.float32).copy()
    infos = insert_vessels(hu_new, labels, spacing, np.random.default_rng(4), cfg)
    assert len(infos) == 3
    changed = np.abs(hu_new - hu) > 40
    assert changed.sum() > 100 and (labels[changed] == 1).all()          # inside the liver only
    assert np.array_equal(hu_new[labels == 0], hu[labels == 0])
    assert 110.0 < float(np.median(hu_new[changed])) < 170.0              # ~60 HU liver + 80
    from scipy import ndimage

    components, count = ndimage.label(changed)
    sizes = np.bincount(components.ravel())[1:]
    biggest = components == (int(np.argmax(sizes)) + 1)
    coords = np.argwhere(biggest) * np.asarray(spacing)
    eig = np.sort(np.linalg.eigvalsh(np.cov(coords.T)))[::-1]
    assert np.sqrt(eig[0] / eig[1]) > 2.5                                # tube-like, not a blob
    # inside insert_lesions: labels keep the liver (no tumor from vessels), and off by default
    cfg_all = LesionConfig(probability=0.0, vessel_probability=1.0)
    hu_v, lab_v, lesions = insert_lesions(hu, labels, spacing, 7, cfg_all)
    assert lesions == [] and np.array_equal(lab_v, labels) and np.abs(hu_v - hu).max() > 20
    hu_0, _, _ = insert_lesions(hu, labels, spacing, 7, LesionConfig(probability=0.0))
    assert np.array_equal(hu_0, hu.astype(np.float32))


def test_sphere_means_no_outline_noise_even_with_the_default_irregularity(phantom):
    """sphere=True promised round lesions, but the outline noise of irregularity_range was still drawn: a 30 mm
    'sphere' came out 33 x 20 x 30 mm (an audit). Its labelled volume is now that of a 30 mm ball."""
    hu, labels, spacing = phantom
    cfg = _fixed(diameter_range_mm=(30.0, 30.0), irregularity_range=(0.3, 0.3))  # the default's upper end
    _, lab_new, (info,) = insert_lesions(hu, labels, spacing, 5, cfg, sphere=True)
    ball_ml = 4.0 / 3.0 * np.pi * 15.0 ** 3 / 1000.0  # 14.1 mL
    assert info["volume_ml"] == pytest.approx(ball_ml, rel=0.08)
    assert np.allclose(info["radii_mm"], 15.0)


def test_no_tumor_label_without_visible_contrast_in_a_very_fatty_liver():
    """In a liver at -15 HU the -10 HU floor left a hypodense lesion no contrast at all: a tumor label on tissue
    that looks like liver. Such lesions are not inserted; hyperdense ones still are."""
    fatty = make_phantom(lesions=[], noise_hu=2.0, liver_hu=-15.0)
    hu = fatty.ct.array.astype(np.float32)
    spacing = tuple(reversed(fatty.ct.geometry.spacing))
    _, lab_new, infos = insert_lesions(hu, fatty.labels, spacing, 4, _fixed(diameter_range_mm=(20.0, 20.0)))
    assert infos == [] and not (lab_new == 2).any()
    _, lab_new, infos = insert_lesions(hu, fatty.labels, spacing, 4,
                                       _fixed(diameter_range_mm=(20.0, 20.0), hypodense_probability=0.0))
    assert len(infos) == 1 and infos[0]["contrast_hu"] >= 15.0 and (lab_new == 2).any()


def test_faint_lesions_the_user_asks_for_are_inserted(phantom):
    """Only lesions whose contrast the min_lesion_hu floor cuts are dropped, not faint ones asked for."""
    hu, labels, spacing = phantom
    _, lab_new, infos = insert_lesions(hu, labels, spacing, 4,
                                       _fixed(diameter_range_mm=(20.0, 20.0), hypo_contrast_hu=(2.0, 4.0)))
    assert len(infos) == 1 and -4.0 <= infos[0]["contrast_hu"] <= -2.0 and (lab_new == 2).any()


@pytest.mark.parametrize("rho", [0.55, 0.8])
def test_correlated_noise_keeps_unit_variance_on_a_three_slice_axis(rho):
    """Filtering with reflection at the edges of a 3-slice training stack folded the kernel onto itself: the
    outer slices' std was 1.25 (rho 0.55) and 1.34 (rho 0.8), lesion grain noisier than the liver's."""
    n = correlated_noise((3, 256, 256), (rho, 0.0, 0.0), seeding.rng(3))
    np.testing.assert_allclose(n.std(axis=(1, 2)), 1.0, atol=0.03)
    along_z = np.mean(n[1:] * n[:-1]) / n.var()
    assert along_z == pytest.approx(rho, abs=0.03)
    small = np.stack([correlated_noise((3, 12, 12), (0.5, 0.8, 0.8), seeding.rng(s)) for s in range(200)])
    assert float(np.mean(small ** 2)) == pytest.approx(1.0, abs=0.05)  # was 1.78


@pytest.mark.parametrize("rho", [0.8, 0.9])
def test_local_liver_stats_measure_strongly_correlated_noise(rho):
    """The noise estimate was capped at twice the neighbour-difference estimate, so no rho above 0.75 could be
    measured and a rho-0.9 liver's 10 HU noise read 6.3 HU: its lesions were smoother than the liver."""
    n = correlated_noise((9, 160, 160), (0.0, rho, rho), seeding.rng(4))
    hu = (60.0 + 10.0 * n).astype(np.float32)
    _, noise, rhos = local_liver_stats(hu, np.ones(hu.shape, bool), (4, 80, 80), (2.5, 1.0, 1.0), 25.0)
    # 0.955-1.043 of the sample's std over 40 seeds at rho 0.9 and 0.925 with LIVERTUMORSEG_TEST_SEED=913 (a few
    # correlation lengths per 80-pixel window); the capped estimate read 0.63
    assert noise == pytest.approx(float(hu.std()), rel=0.12)
    assert rhos[1] == pytest.approx(rho, abs=0.03) and rhos[2] == pytest.approx(rho, abs=0.03)


def test_text_numbers_in_a_recipe_draw_lesions_like_numbers():
    """'8e-1' (text, as PyYAML reads it) for the lesion probability failed with a TypeError at the first sample."""
    from LiverTumorSegLib.training.synthetic_lesions import LesionConfig

    as_text = LesionConfig.from_dict({"probability": "8e-1", "diameter_range_mm": ["10", "20"]})
    as_numbers = LesionConfig.from_dict({"probability": 0.8, "diameter_range_mm": [10, 20]})
    assert as_text == as_numbers


def test_anchor_slice_puts_every_centre_on_that_slice_and_a_slice_without_liver_is_refused(phantom):
    hu, labels, spacing = phantom
    liver_z = np.flatnonzero((labels >= 1).any(axis=(1, 2)))
    high = int(liver_z[-1]) - 2                               # near the top of the liver, far from the middle
    cfg = _fixed(count_range=(3, 3), anchor="any", edge_probability=0.5, allow_boundary_touching=True)
    _, lab_new, infos = insert_lesions(hu, labels, spacing, seeding.rng(5), cfg, anchor_slice=high)
    assert len(infos) == 3 and all(float(i["center_zyx"][0]) == high for i in infos)  # z_offset_fraction 0
    assert (lab_new[high] == 2).any()
    # moved in z by at most 0.6 of the z radius; not clustered: a clustered lesion starts from the first one's
    # moved centre and adds its own offset (under test seed 69 one landed 0.6 x (r1 + r2) away)
    moved = _fixed(count_range=(3, 3), z_offset_fraction=0.6, cluster_probability=0.0)
    _, _, infos = insert_lesions(hu, labels, spacing, seeding.rng(6), moved, anchor_slice=high)
    assert infos and all(abs(float(i["center_zyx"][0]) - high) <= 0.6 * i["diameter_mm"] / 2 / spacing[0] + 1e-6
                         for i in infos)
    assert float(np.mean([i["center_zyx"][0] for i in infos])) > labels.shape[0] // 2 + 3  # not the middle
    empty = int(np.flatnonzero(~(labels >= 1).any(axis=(1, 2)))[0])
    for wrong in (empty, labels.shape[0], -1, True, 2.0):
        with pytest.raises(InputError, match="anchor_slice"):
            insert_lesions(hu, labels, spacing, seeding.rng(5), _fixed(probability=0.0), anchor_slice=wrong)


@pytest.mark.parametrize("hu_shape, label_shape, words", [
    ((8, 8), (8, 8), r"needs an HU stack \(z, y, x\); got shape \(8, 8\)"),
    ((3, 8, 8), (8, 9), r"Label \(H, W\) \(8, 9\) does not match the HU stack's slices \(8, 8\)")])
def test_an_hu_array_not_3d_or_a_slice_label_of_another_size_is_refused(hu_shape, label_shape, words):
    """A single CT slice for the stack, or an (H, W) middle-slice label of another size: each refused in words
    that give the shapes (no test ran either)."""
    with pytest.raises(InputError, match=words):
        insert_lesions(np.zeros(hu_shape, np.float32), np.zeros(label_shape, np.uint8), (1.0, 1.0, 1.0), 0)


def test_a_liver_smaller_than_min_liver_voxels_gets_no_lesion(phantom):
    """Fewer liver voxels than ``min_liver_voxels`` (a stack at the liver's tip): unchanged copies and no lesion,
    even with probability 1 (no test ran it)."""
    hu, labels, spacing = phantom
    liver_voxels = int(np.count_nonzero(labels >= 1))
    cfg = _fixed(min_liver_voxels=liver_voxels + 1)
    hu_new, lab_new, infos = insert_lesions(hu, labels, spacing, seeding.rng(4), cfg)
    assert infos == []
    assert np.array_equal(hu_new, hu) and np.array_equal(lab_new, labels)
    assert hu_new is not hu and lab_new is not labels  # copies: the caller's arrays are never handed back


def test_a_middle_slice_without_liver_places_lesions_on_the_other_slices(phantom):
    """anchor middle_slice on a stack whose middle slice holds no liver (a stack reaching over the liver's top or
    bottom): lesions are still placed, in the liver of the other slices (no test ran it), and the middle slice
    is left as it was."""
    hu, labels, spacing = phantom
    middle = hu.shape[0] // 2
    cut = labels.copy()
    cut[middle] = 0
    cfg = _fixed(count_range=(3, 3), anchor="middle_slice", diameter_range_mm=(10.0, 10.0))
    hu_new, lab_new, infos = insert_lesions(hu, cut, spacing, seeding.rng(5), cfg)
    assert len(infos) >= 1 and (lab_new == 2).any()
    assert np.all(cut[lab_new == 2] == 1)  # tumor only where the given labels had liver
    assert np.array_equal(lab_new[middle], cut[middle]) and np.array_equal(hu_new[middle], hu[middle])
