"""Known answers at the boundaries and sign conventions the documentation states, each one a change a user would
see that no other test caught (a mutation audit: 9 of 77 single changes to user-visible numbers survived the whole
suite). Each value comes from the rule as README / docs state it, computed by hand."""
import dataclasses

import numpy as np
import pytest

from LiverTumorSegLib.followup import _group_entry, _status
from LiverTumorSegLib.inference.lesion_report import lesion_report
from LiverTumorSegLib.inference.plausibility import liver_ras_xz, liver_side_mm, liver_side_warnings
from LiverTumorSegLib.inference.postprocess import PostprocessingOptions, postprocess_labels
from LiverTumorSegLib.metrics import lits
from LiverTumorSegLib.metrics.recist import slice_thickness_mm
from LiverTumorSegLib.volume import ImageGeometry


def test_recist_slice_thickness_is_the_z_spacing_and_sets_the_measurable_minimum():
    """RECIST 1.1: measurable = long axis >= max(10 mm, 2 x slice thickness). On 0.8 x 0.8 x 6 mm voxels a lesion
    of 14 voxels along x (13 x 0.8 + 0.8 = 11.2 mm) is below 12 mm: no target. Reading x's 0.8 mm as the thickness
    gave a 10 mm minimum and made it a target."""
    geometry = ImageGeometry(spacing=(0.8, 0.8, 6.0))  # (x, y, z) mm
    labels = np.zeros((5, 40, 40), np.uint8)
    labels[1:4, 5:35, 5:35] = 1
    labels[2, 20, 10:24] = 2
    report = lesion_report(labels, geometry)
    assert slice_thickness_mm(geometry) == 6.0
    assert report["recist"]["slice_thickness_mm"] == 6.0 and report["recist"]["measurable_minimum_mm"] == 12.0
    assert report["lesions"][0]["long_axis_mm"] == pytest.approx(11.2)
    assert report["recist"]["target_lesion_ids"] == []


def test_lesions_exactly_at_the_volume_limits_are_kept():
    """Post-processing: tumor components *smaller* than min_lesion_ml become liver, and those *smaller* than
    uncertain_lesion_max_ml with a mean probability below min_lesion_probability (README). At 1 mm voxels: 100
    voxels = 0.1 mL exactly stays tumor at min 0.1, 99 voxels go; 5000 voxels = 5.0 mL at p 0.3 stays, 4999 go."""
    labels = np.zeros((20, 30, 30), np.uint8)
    labels[2:18, 2:28, 2:28] = 1
    labels[5:9, 5:10, 5:10] = 2        # 4 x 5 x 5 = 100 voxels
    labels[12:15, 15:26, 15:18] = 2    # 3 x 11 x 3 = 99 voxels
    out = postprocess_labels(labels, (1.0, 1.0, 1.0),
                             dataclasses.replace(PostprocessingOptions.disabled(), min_lesion_ml=0.1))
    assert int((out[5:9, 5:10, 5:10] == 2).sum()) == 100 and int((out[12:15, 15:26, 15:18] == 2).sum()) == 0

    labels = np.zeros((30, 60, 60), np.uint8)
    labels[1:29, 1:59, 1:59] = 1
    labels[3:23, 3:28, 3:13] = 2       # 20 x 25 x 10 = 5000 voxels
    labels[3:23, 33:58, 30:40] = 2
    labels[3, 33, 30] = 1              # 4999 voxels
    probability = np.where(labels == 2, np.uint8(round(255 * 0.3)), np.uint8(0)).astype(np.uint8)
    options = dataclasses.replace(PostprocessingOptions.disabled(), min_lesion_probability=0.65,
                                  uncertain_lesion_max_ml=5.0)
    out = postprocess_labels(labels, (1.0, 1.0, 1.0), options, tumor_probability_zyx=probability)
    assert int((out[3:23, 3:28, 3:13] == 2).sum()) == 5000 and int((out[3:23, 33:58, 30:40] == 2).sum()) == 0


@pytest.mark.parametrize("follow_mm, status", [(15.0, "stable"), (14.5, "stable"), (14.0, "shrunk"),
                                                (23.0, "stable"), (24.0, "grown")])
def test_followup_status_thresholds_on_both_sides(follow_mm, status):
    """Per-lesion status by the long axis' change (README): grown >= +20 %, shrunk <= -30 %, else stable. From
    20 mm: -25 % and -27.5 % are stable (a -25 % threshold called them shrunk), -30 % is shrunk."""
    assert _status([1], [1], 20.0, follow_mm) == status


def test_followup_entry_changes_are_relative_to_the_baseline_and_its_ras_centroid_negates_x_and_y():
    """2.0 -> 3.0 mL is +50 % (dividing by the follow-up gives +33.3 %), 10 -> 12 mm +20 %; the baseline centroid
    LPS (10, 20, 30) mm is RAS (-10, -20, 30)."""
    base = {1: {"volume_ml": 2.0, "long_axis_mm": 10.0, "short_axis_mm": 8.0, "centroid_lps_mm": [10.0, 20.0, 30.0]}}
    follow = {1: {"volume_ml": 3.0, "long_axis_mm": 12.0, "short_axis_mm": 9.0, "centroid_lps_mm": [11.0, 21.0, 30.0]}}
    entry = _group_entry(1, [1], [1], base, follow, [], 5.0, {}, set())
    assert entry["volume_change_percent"] == pytest.approx(50.0)
    assert entry["long_axis_change_percent"] == pytest.approx(20.0)
    assert entry["centroid_baseline_lps_mm"] == [10.0, 20.0, 30.0]
    assert entry["centroid_baseline_ras_mm"] == [-10.0, -20.0, 30.0]


@pytest.mark.parametrize("long_mm, unequivocal", [(5.0, True), (4.9, False)])
def test_a_new_lesion_counts_for_progression_from_the_minimum_long_axis_on(long_mm, unequivocal):
    """A new lesion counts for PD when its long axis is at least min_new_lesion_mm (docs): exactly 5.0 mm does."""
    follow = {1: {"volume_ml": 0.05, "long_axis_mm": long_mm, "short_axis_mm": 4.0, "centroid_lps_mm": [0.0, 0.0, 0.0]}}
    entry = _group_entry(1, [], [1], {}, follow, [], 5.0, {1: np.zeros(3)}, set())
    assert entry["status"] == "new" and entry["unequivocal"] is unequivocal


def test_a_liver_exactly_20_mm_right_of_the_body_centre_is_not_flagged():
    """The liver-side check flags a liver whose centre is *not at least* 20 mm to the patient's right (README).
    Body over RAS x -100..100 (centre 0), liver over RAS x 16..24 (centre 20): no warning."""
    geometry = ImageGeometry(spacing=(1.0, 1.0, 1.0), origin=(-100.0, 0.0, 0.0))  # LPS x = -100 + i: RAS x = 100 - i
    hu = np.full((2, 8, 201), 40.0, np.float32)
    labels = np.zeros(hu.shape, np.uint8)
    labels[:, :, 76:85] = 1
    assert liver_side_mm(liver_ras_xz(labels, geometry), hu, geometry)[0] == pytest.approx(20.0)
    assert liver_side_warnings(liver_ras_xz(labels, geometry), hu, geometry) == []
    labels[:] = 0
    labels[:, :, 77:86] = 1  # centre 19 mm right
    assert liver_side_warnings(liver_ras_xz(labels, geometry), hu, geometry)


def test_the_per_case_roc_auc_scores_the_probabilities_against_the_reference():
    """Probability 0.9 on the reference tumor and 0.1 elsewhere: AUC 1.0 whatever the prediction found (here no
    tumor; scored against the prediction it was undefined)."""
    ref = np.zeros((6, 10, 10), np.uint8)
    ref[1:5, 2:8, 2:8] = 1
    ref[2:4, 4:6, 4:6] = 2
    pred = np.where(ref == 2, 1, ref).astype(np.uint8)
    probability = np.where(ref == 2, 0.9, 0.1).astype(np.float32)
    assert lits.evaluate_case(pred, ref, (2.0, 1.0, 1.0), probabilities=probability)["roc_auc_tumor"] == 1.0


@pytest.mark.parametrize("origin_mm", [0.0, -187.3, 12.7])
def test_a_lesion_exactly_10_mm_long_is_measurable_wherever_the_grid_lies(origin_mm):
    """25 voxels of 0.4 mm in a row are 10 mm long (24 x 0.4 between centres + 0.4): measurable (RECIST 1.1: >= 10 mm).
    The float long axis is 9.999999999999995 mm at origin -187.3 mm and 10.000000000000002 mm at 12.7 mm, and the
    lesion was a target on one grid and not on the other; so was a new lesion of exactly min_new_lesion_mm."""
    geometry = ImageGeometry(spacing=(0.4, 0.4, 2.0), origin=(origin_mm, origin_mm, 0.0))
    labels = np.ones((3, 5, 29), np.uint8)
    labels[1, 2, 2:27] = 2
    report = lesion_report(labels, geometry)
    (lesion,) = report["lesions"]
    assert lesion["long_axis_mm"] == pytest.approx(10.0, abs=1e-12)
    assert lesion["recist_target"] is True and report["recist"]["target_lesion_ids"] == [1]
    assert report["recist"]["sum_of_diameters_mm"] == pytest.approx(10.0)
    follow = {1: dict(lesion, centroid_lps_mm=[0.0, 0.0, 0.0])}
    entry = _group_entry(1, [], [1], {}, follow, [], 10.0, {1: np.zeros(3)}, set())
    assert entry["status"] == "new" and entry["unequivocal"] is True


def test_the_documented_diameter_is_voxel_centres_plus_one_pixel_not_corner_to_corner():
    """The docs called the long axis 'edge to edge, like a caliper on the displayed mask'; it is the largest
    voxel-centre distance plus one pixel spacing. A 45-degree line of 15 pixels of 1 mm: 14 x sqrt(2) + 1 =
    20.80 mm, not 15 x sqrt(2) = 21.21 mm corner to corner; the docs now give these numbers."""
    from LiverTumorSegLib.metrics import recist

    labels = np.ones((3, 20, 20), np.uint8)
    for i in range(15):
        labels[1, 2 + i, 2 + i] = 2
    (lesion,) = lesion_report(labels, ImageGeometry(spacing=(1.0, 1.0, 2.0)))["lesions"]
    assert lesion["longest_axial_diameter_mm"] == pytest.approx(14 * np.sqrt(2))
    assert lesion["long_axis_mm"] == pytest.approx(14 * np.sqrt(2) + 1.0) and f"{lesion['long_axis_mm']:.2f}" == "20.80"
    assert "20.80 mm" in recist.__doc__ and "caliper" not in recist.__doc__
