"""Exophytic synthetic lesions (issue 11: a tumor bulging out of the liver capsule was found only inside the liver):
where the part outside the liver goes, what it leaves alone, and that recipes without the lever keep their stream."""
import hashlib
import json

import numpy as np
import pytest
from scipy.ndimage import label as connected

from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.training.synthetic_lesions import EXOPHYTIC_ROOM_HU, LesionConfig, _outside_depth, insert_lesions

SPACING = (2.5, 1.5, 1.5)  # (z, y, x) mm


def _phantom(seed=0):
    """(7, 64, 64): air, a body of fat (-100 HU) and soft tissue (45 HU), an elliptic liver (60 HU) at its left and a
    bone block (700 HU) behind it, 8 HU noise; labels 1 on the liver."""
    rng = np.random.default_rng(seed)
    t, n = 7, 64
    z, y, x = np.meshgrid(np.arange(t), np.arange(n), np.arange(n), indexing="ij")
    r_body = np.hypot(y - 32, x - 32)
    hu = np.full((t, n, n), -1000.0, dtype=np.float32)
    hu[r_body < 29] = -100.0
    hu[r_body < 26] = 45.0
    liver = ((y - 30) / 16.0) ** 2 + ((x - 24) / 13.0) ** 2 < 1.0
    hu[liver] = 60.0
    hu[(np.abs(y - 50) < 3) & (np.abs(x - 32) < 4)] = 700.0
    hu += rng.normal(0, 8, hu.shape).astype(np.float32)
    return hu, liver.astype(np.uint8)


def _rounded(value):
    """Floats to 3 decimals (lists too): what the lesions' infos record, kept CPU-independent."""
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


def _digest(config, seeds=range(6)):
    """The labels and each lesion's drawn settings (centre, size, radii, contrast, local liver HU, noise, kind, volume)
    over ``seeds``: they pin the random stream. The HU array itself is left out: its blend goes through float32
    exp, whose last bit may differ between CPUs' vector units, and a digest of rounded HU could then flip."""
    hu, labels = _phantom()
    h = hashlib.sha256()
    for s in seeds:
        _, out_lab, infos = insert_lesions(hu, labels, SPACING, rng=s, config=config)
        h.update(out_lab.tobytes())
        h.update(json.dumps([{k: _rounded(v) for k, v in sorted(i.items())} for i in infos]).encode())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("options, expected", [
    ({"edge_probability": 0.6}, "be053c8337aebd6e"),
    ({"edge_probability": 1.0, "anchor": "any", "count_range": (1, 3), "probability": 1.0}, "eab1bf8dd9a40c1c"),
    ({"vessel_probability": 0.5, "perihepatic_fluid_probability": 0.5, "edge_probability": 0.5}, "cbf8dc4f0acfe403"),
])
def test_without_the_lever_every_array_is_what_the_code_before_it_made(options, expected):
    """The digests were computed with the code before exophytic_probability existed (commit 8f505e9f): a recipe
    that does not set it keeps its random stream, its samples and so its trained weights."""
    assert _digest(LesionConfig(**options)) == expected
    assert _digest(LesionConfig(exophytic_probability=0.0, **options)) == expected


def _exophytic(**kw):
    base = dict(probability=1.0, count_range=(1, 2), diameter_range_mm=(20.0, 30.0), edge_probability=1.0,
                cluster_probability=0.0, exophytic_probability=1.0)
    base.update(kw)
    return LesionConfig(**base)


@pytest.mark.parametrize("anchor", ["middle_slice", "any"])
def test_an_exophytic_lesion_reaches_into_fat_and_soft_tissue_with_its_label_and_intensity(anchor):
    hu, labels = _phantom()
    outside_fractions = []
    for seed in range(6):
        config = _exophytic(anchor=anchor, count_range=(1, 1), necrosis_probability=0.0, rim_probability=0.0)
        out_hu, out_lab, infos = insert_lesions(hu, labels, SPACING, rng=seed, config=config)
        assert len(infos) == 1 and infos[0].get("exophytic")
        tumor = out_lab == 2
        outside = tumor & (labels == 0)
        assert outside.any()
        # never air, padding or bone; always the fat or soft tissue the lesion may take
        assert not (tumor & ((hu < -500) | (hu > 300))).any()
        assert (hu[outside] >= EXOPHYTIC_ROOM_HU[0]).all() and (hu[outside] <= EXOPHYTIC_ROOM_HU[1]).all()
        # the outside part belongs to a lesion that touches the liver (one component with an inside part)
        components, _ = connected(tumor)
        inside_ids = set(np.unique(components[tumor & (labels == 1)])) - {0}
        assert set(np.unique(components[outside])) - {0} <= inside_ids
        # the outside part is lesion, not the fat or tissue it replaced: about the lesion's own HU
        lesion_hu = infos[0]["local_liver_hu"] + infos[0]["contrast_hu"]
        assert abs(np.median(out_hu[outside]) - lesion_hu) < 20.0
        assert abs(np.median(out_hu[tumor & (labels == 1)]) - lesion_hu) < 20.0
        outside_fractions.append(infos[0]["outside_fraction"])
    assert 0.3 <= np.median(outside_fractions) <= 0.75
    assert min(outside_fractions) > 0.15


def test_a_liver_against_air_only_gets_no_exophytic_part():
    hu, labels = _phantom()
    hu[labels == 0] = -1000.0  # the liver floats in air: nothing for a tumor to grow into
    for seed in range(4):
        _, out_lab, infos = insert_lesions(hu, labels, SPACING, rng=seed, config=_exophytic())
        assert not ((out_lab == 2) & (labels == 0)).any()
        assert all(info.get("outside_fraction", 0.0) == 0.0 for info in infos)


def test_lesions_that_are_not_exophytic_stay_in_the_liver_and_carry_no_new_info_keys():
    hu, labels = _phantom()
    _, out_lab, infos = insert_lesions(hu, labels, SPACING, rng=3, config=_exophytic(exophytic_probability=0.0))
    assert infos and not ((out_lab == 2) & (labels == 0)).any()
    assert not any("exophytic" in info or "outside_fraction" in info for info in infos)


def test_the_depth_for_a_share_outside_is_that_of_a_balls_cap():
    assert _outside_depth(0.5) == pytest.approx(0.0, abs=1e-3)
    for share in (0.3, 0.4, 0.7):
        t = _outside_depth(share)
        assert (1 - t) ** 2 * (2 + t) / 4 == pytest.approx(share, abs=1e-3)
    assert _outside_depth(0.3) > 0 > _outside_depth(0.7)


@pytest.mark.parametrize("bad", [{"exophytic_probability": 1.5}, {"exophytic_probability": -0.1},
                                 {"exophytic_outside_fraction": (0.5, 1.2)},
                                 {"exophytic_outside_fraction": (-0.1, 0.5)},
                                 {"exophytic_outside_fraction": (0.7, 0.3)}])
def test_out_of_range_settings_are_refused_by_name(bad):
    with pytest.raises(InputError, match=list(bad)[0]):
        LesionConfig.from_dict(bad).validate()


def test_a_recipes_lesions_section_takes_the_keys():
    config = LesionConfig.from_dict({"exophytic_probability": 0.2, "exophytic_outside_fraction": [0.4, 0.6]})
    config.validate()
    assert config.exophytic_probability == 0.2 and tuple(config.exophytic_outside_fraction) == (0.4, 0.6)
    assert LesionConfig.from_dict(config.to_dict()) == config
