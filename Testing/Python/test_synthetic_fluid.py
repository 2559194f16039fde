"""Synthetic fluid beside the liver (training negative): where it goes, what it leaves alone, its random stream."""
import numpy as np
import pytest

from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.training.synthetic_fluid import DISPLACEABLE_HU, FLUID_EDGE_MM, insert_perihepatic_fluid
from LiverTumorSegLib.training.synthetic_lesions import LesionConfig, insert_lesions

SPACING = (2.0, 1.5, 1.5)  # (z, y, x) mm


def _phantom(seed=0):
    """(5, 80, 80) soft tissue (40 HU) with an elliptic liver (100 HU) centred at (40, 36), a bone block (700 HU)
    and an air pocket (-1000 HU) beside it; labels 1 on the liver."""
    rng = np.random.default_rng(seed)
    hu = (40.0 + 5.0 * rng.standard_normal((5, 80, 80))).astype(np.float32)
    yy, xx = np.mgrid[:80, :80]
    liver2d = ((yy - 40) / 18.0) ** 2 + ((xx - 36) / 22.0) ** 2 <= 1
    labels = np.zeros((5, 80, 80), np.uint8)
    labels[:, liver2d] = 1
    hu[labels == 1] += 60.0
    hu[:, 10:16, 30:44] = 700.0   # bone just above the liver (2-8 px from it)
    hu[:, 62:68, 30:44] = -1000.0  # gas just below it
    return hu, labels


def _config(**kw):
    base = {"perihepatic_fluid_probability": 1.0, "perihepatic_fluid_thickness_mm": (9.0, 9.0),
            "perihepatic_fluid_sector_deg": (240.0, 240.0), "perihepatic_fluid_hu": (10.0, 10.0)}
    base.update(kw)
    return LesionConfig.from_dict(base)


def test_the_layer_lies_outside_the_liver_within_its_thickness_and_leaves_liver_bone_and_air_alone():
    from scipy.ndimage import distance_transform_edt

    hu, labels = _phantom()
    out = hu.copy()
    infos = insert_perihepatic_fluid(out, labels, SPACING, np.random.default_rng(4), _config())
    assert len(infos) == 1 and infos[0]["voxel_count"] > 200
    changed = np.abs(out - hu) > 1.0
    liver = labels >= 1
    assert not changed[liver].any()
    assert np.array_equal(out[hu >= 300], hu[hu >= 300]) and np.array_equal(out[hu <= -500], hu[hu <= -500])
    distance = distance_transform_edt(~liver, sampling=SPACING)
    assert distance[changed].max() <= 9.0 + 6.0 * FLUID_EDGE_MM   # thickness plus the soft edge's tail
    core = changed & (distance <= 6.0)
    # the core is water: 10 HU plus the liver's grain (5 HU here); soft tissue was 40 HU
    assert abs(float(np.median(out[core])) - 10.0) < 3.0
    assert DISPLACEABLE_HU[0] <= 40.0 <= DISPLACEABLE_HU[1]


def test_the_layer_covers_one_sector_not_the_whole_outline():
    hu, labels = _phantom()
    out = hu.copy()
    info = insert_perihepatic_fluid(out, labels, SPACING, np.random.default_rng(4),
                                    _config(perihepatic_fluid_sector_deg=(120.0, 120.0)))[0]
    changed = (np.abs(out - hu) > 1.0).any(axis=0)
    yy, xx = np.nonzero(changed)
    angles = np.degrees(np.arctan2((yy - 40) * SPACING[1], (xx - 36) * SPACING[2]))
    offset = np.abs((angles - info["direction_deg"] + 180.0) % 360.0 - 180.0)
    assert offset.max() <= 60.0 + 15.0 + 3.0   # half the sector plus its taper, a pixel's slack
    ring = np.zeros_like(changed)
    ring[2:78, 2:78] = True
    assert changed.sum() < 0.6 * ((labels[0] == 0) & ring).sum()


def test_same_seed_same_layer_other_seed_other_layer():
    hu, labels = _phantom()
    a, b, c = hu.copy(), hu.copy(), hu.copy()
    insert_perihepatic_fluid(a, labels, SPACING, np.random.default_rng(7), _config(perihepatic_fluid_sector_deg=(90, 240)))
    insert_perihepatic_fluid(b, labels, SPACING, np.random.default_rng(7), _config(perihepatic_fluid_sector_deg=(90, 240)))
    insert_perihepatic_fluid(c, labels, SPACING, np.random.default_rng(8), _config(perihepatic_fluid_sector_deg=(90, 240)))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_no_room_beside_the_liver_no_layer():
    hu, labels = _phantom()
    hu[labels == 0] = -1000.0   # a liver surrounded by air (a lung-like stand-in): nothing to displace
    out = hu.copy()
    assert insert_perihepatic_fluid(out, labels, SPACING, np.random.default_rng(1), _config()) == []
    assert np.array_equal(out, hu)


def test_insert_lesions_keeps_the_labels_and_adds_the_layer_when_switched_on():
    hu, labels = _phantom()
    cfg = _config(probability=0.0, vessel_probability=0.0)
    out_hu, out_labels, _ = insert_lesions(hu, labels, SPACING, np.random.default_rng(2), cfg)
    assert np.array_equal(out_labels, labels)
    assert (np.abs(out_hu - hu)[labels == 0] > 1.0).sum() > 200


def test_recipes_without_fluid_keep_their_random_stream():
    """Drawn only when switched on: a recipe without the option draws exactly what it drew before the option existed
    (the next draw and the labels pinned at commit cc29549, before this code; integers, so no CPU's rounding)."""
    rng = np.random.default_rng(3)
    hu = (40 + 10 * rng.standard_normal((3, 64, 64))).astype(np.float32)
    labels = np.zeros((3, 64, 64), np.uint8)
    yy, xx = np.mgrid[:64, :64]
    labels[:, ((yy - 32) / 20.0) ** 2 + ((xx - 30) / 24.0) ** 2 <= 1] = 1
    hu[labels == 1] += 60
    g = np.random.default_rng(11)
    insert_lesions(hu, labels, (2.0, 1.5, 1.5), g, LesionConfig.from_dict({"vessel_probability": 0.5,
                                                                          "probability": 1.0}))
    assert int(g.integers(1 << 30)) == 448779271


def _angle_from_right_deg(yy, xx, centre_yx=(40, 36)):
    """Degrees (0..180) between the patient's right (-x in the canonical LPS plane) and each pixel, seen from the
    phantom liver's centre."""
    return np.degrees(np.abs(np.arctan2((yy - centre_yx[0]) * SPACING[1], -(xx - centre_yx[1]) * SPACING[2])))


@pytest.mark.parametrize("sector", [(90.0, 240.0), (300.0, 300.0)])
def test_a_reach_keeps_the_whole_arc_on_the_patients_right_and_still_turns_it(sector):
    """perihepatic_fluid_reach_deg 135 (the benchmark row's): over many draws no changed pixel lies more than 135
    degrees from the patient's right (the medial quarter, vena cava and hilum, stays as it is; an arc wider than the
    reach is narrowed), while the layers still cover the front, the right side and the back."""
    hu, labels = _phantom()
    widest, reached_front, reached_back = 0.0, False, False
    for seed in range(12):
        out = hu.copy()
        config = _config(perihepatic_fluid_sector_deg=sector, perihepatic_fluid_reach_deg=135.0)
        infos = insert_perihepatic_fluid(out, labels, SPACING, np.random.default_rng(seed), config)
        assert len(infos) == 1
        yy, xx = np.nonzero((np.abs(out - hu) > 1.0).any(axis=0))
        angle = _angle_from_right_deg(yy, xx)
        widest = max(widest, float(angle.max()))
        signed = np.degrees(np.arctan2((yy - 40) * SPACING[1], -(xx - 36) * SPACING[2]))
        reached_front |= bool((signed < -100).any())
        reached_back |= bool((signed > 100).any())
    assert widest <= 135.0 + 3.0       # a pixel's slack
    assert widest > 100.0 and reached_front and reached_back


def test_the_default_reach_leaves_the_layer_as_it_was():
    """reach 180 (the default) is the any-direction layer: the same output as a config without the key, and over a
    few draws the medial side (within 45 degrees of the patient's left) gets fluid too."""
    hu, labels = _phantom()
    medial = False
    for seed in range(8):
        a, b = hu.copy(), hu.copy()
        insert_perihepatic_fluid(a, labels, SPACING, np.random.default_rng(seed), _config())
        insert_perihepatic_fluid(b, labels, SPACING, np.random.default_rng(seed),
                                 _config(perihepatic_fluid_reach_deg=180.0))
        assert np.array_equal(a, b)
        yy, xx = np.nonzero((np.abs(a - hu) > 1.0).any(axis=0))
        medial |= bool((_angle_from_right_deg(yy, xx) > 150.0).any())
    assert medial


@pytest.mark.parametrize("bad", [{"perihepatic_fluid_probability": 1.5},
                                 {"perihepatic_fluid_reach_deg": 0.0},
                                 {"perihepatic_fluid_reach_deg": 200.0},
                                 {"perihepatic_fluid_thickness_mm": (0.0, 5.0)},
                                 {"perihepatic_fluid_sector_deg": (90.0, 400.0)},
                                 {"perihepatic_fluid_sector_deg": (0.0, 90.0)},
                                 {"perihepatic_fluid_thickness_mm": (9.0, 3.0)}])
def test_out_of_range_settings_are_refused_by_name(bad):
    with pytest.raises(InputError, match=list(bad)[0]):
        LesionConfig.from_dict(bad).validate()


def test_holes_the_liver_encloses_and_tissue_beyond_a_closed_bone_wall_stay_as_they_are():
    hu, labels = _phantom()
    labels[:, 38:43, 34:39] = 0          # a hole in the liver label (the hilum's vessels), soft tissue
    hu[:, 38:43, 34:39] = 40.0
    yy, xx = np.mgrid[:80, :80]
    r = np.hypot((yy - 40) / 18.0, (xx - 36) / 22.0)
    hu[:, (r > 1.25) & (r <= 1.35)] = 700.0   # a closed bone ring around the liver, a few mm out
    out = hu.copy()
    insert_perihepatic_fluid(out, labels, SPACING, np.random.default_rng(4),
                             _config(perihepatic_fluid_thickness_mm=(15.0, 15.0), perihepatic_fluid_sector_deg=(240, 240)))
    changed = np.abs(out - hu) > 1.0
    assert changed.any()                       # the gap between liver and ring
    assert not changed[:, 38:43, 34:39].any()
    assert not changed[:, r > 1.35].any()      # beyond the ring, though within 15 mm of the liver
