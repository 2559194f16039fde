"""Edge cases of LiverTumorSegLib.metrics.recist that the earlier tests let through: each test fails when one
operator or constant of the code it covers is changed (checked by mutation in stop 26). Known inputs, known answers."""
import numpy as np
import pytest

from LiverTumorSegLib.metrics.recist import at_least, at_most, lesion_axes, recist_response, select_target_lesions
from LiverTumorSegLib.volume import ImageGeometry


def test_a_lesion_of_exactly_10_mm_is_measurable():
    # RECIST 1.1: measurable when the long axis is >= 10 mm (and >= twice a slice thickness above 5 mm)
    lesions = [{"id": 1, "long_axis_mm": 10.0}, {"id": 2, "long_axis_mm": 9.999}]
    assert select_target_lesions(lesions) == [1]
    assert select_target_lesions([{"id": 5, "long_axis_mm": 14.0}], minimum_mm=14.0) == [5]


def test_one_baseline_lesion_gone_is_cr_and_one_persisting_non_target_is_non_cr_non_pd():
    # baseline with exactly one lesion (the earlier tests always had two)
    assert recist_response(20.0, 0.0, False, 0, 1)[0] == "CR"
    assert recist_response(None, None, False, 0, 1)[0] == "CR"
    assert recist_response(None, None, False, 1, 1)[0] == "Non-CR/non-PD"
    assert recist_response(None, None, False, 0, 0)[0] == "NE"


def test_single_voxel_lesion_end_points_are_the_voxel_sides():
    g = ImageGeometry(spacing=(0.8, 1.2, 3.0))   # identity direction, origin 0: LPS = (0.8 i, 1.2 j, 3 k)
    mask = np.zeros((3, 5, 5), bool)
    mask[1, 2, 2] = True                          # centre LPS (1.6, 2.4, 3.0)
    axes = lesion_axes(mask, g)
    assert axes["long_axis_voxel_centres_mm"] == 0.0
    ends = sorted(map(tuple, axes["long_axis"]["end_points_lps_mm"]))
    np.testing.assert_allclose(ends, [(1.6, 1.8, 3.0), (1.6, 3.0, 3.0)], atol=1e-9)   # along y, 1.2 mm
    ends = sorted(map(tuple, axes["short_axis"]["end_points_lps_mm"]))
    np.testing.assert_allclose(ends, [(1.2, 2.4, 3.0), (2.0, 2.4, 3.0)], atol=1e-9)   # along x, 0.8 mm


def test_single_voxel_slice_does_not_outrank_a_two_voxel_slice():
    # slice 1: one voxel (no diameter between voxel centres); slice 2: two voxels 0.8 mm apart -> slice 2,
    # long axis 2 x 0.8 = 1.6 mm edge to edge, short axis one voxel across (1.2 mm)
    g = ImageGeometry(spacing=(0.8, 1.2, 3.0))
    mask = np.zeros((4, 5, 5), bool)
    mask[1, 2, 2] = True
    mask[2, 2, 2:4] = True
    axes = lesion_axes(mask, g)
    assert axes["measurement_slice"] == {"axis_zyx": 0, "index": 2}
    assert axes["long_axis_voxel_centres_mm"] == pytest.approx(0.8)
    assert axes["long_axis_mm"] == pytest.approx(1.6) and axes["short_axis_mm"] == pytest.approx(1.2)


def test_one_voxel_wide_lesion_in_a_coronally_stored_volume():
    # array axis 1 (j) points to patient S: the axial slices are mask[:, y, :]; a row of 3 voxels along x is
    # 3 x 0.7 mm long and one voxel across, which in that slice is along k (array axis 0, 2.5 mm)
    g = ImageGeometry(spacing=(0.7, 1.1, 2.5), direction=(1, 0, 0, 0, 0, 1, 0, 1, 0))
    mask = np.zeros((5, 4, 6), bool)
    mask[2, 1, 1:4] = True
    axes = lesion_axes(mask, g)
    assert axes["measurement_slice"] == {"axis_zyx": 1, "index": 1}
    assert axes["long_axis_mm"] == pytest.approx(2.1) and axes["short_axis_mm"] == pytest.approx(2.5)


def test_a_long_straight_one_voxel_line_keeps_its_full_length():
    # 70 collinear voxel centres (> 64: the convex hull is tried and fails on collinear points)
    g = ImageGeometry(spacing=(0.5, 0.7, 2.0))
    mask = np.zeros((3, 4, 80), bool)
    mask[1, 2, 5:75] = True
    axes = lesion_axes(mask, g)
    assert axes["long_axis_voxel_centres_mm"] == pytest.approx(69 * 0.5)
    assert axes["long_axis_mm"] == pytest.approx(70 * 0.5) and axes["short_axis_mm"] == pytest.approx(0.7)
    xs = sorted(p[0] for p in axes["long_axis"]["end_points_lps_mm"])
    assert xs == [pytest.approx(2.25), pytest.approx(37.25)]   # 5 x 0.5 - 0.25, 74 x 0.5 + 0.25



def test_ras_end_points_have_no_negative_zero():
    """RAS = LPS with x, y negated: an LPS coordinate of exactly 0 was written -0.0 (JSON) and -0.00 (CSV), beside
    the centroid's 0.0 for the same coordinate."""
    import math

    mask = np.zeros((4, 10, 10), bool)
    mask[1, 0:3, 0] = True  # a column at x index 0 and origin 0: LPS x = 0 at both ends
    axes = lesion_axes(mask, ImageGeometry(spacing=(1.0, 1.0, 2.0)))
    for point in axes["long_axis"]["end_points_ras_mm"]:
        assert point[0] == 0.0 and math.copysign(1.0, point[0]) == 1.0


def test_a_lesion_cut_by_the_scans_edge_is_not_a_target():
    """A lesion the scan's edge cuts has lower-bound axes that move with the scan range; it was chosen as a target
    (largest first). The next measurable lesion is chosen instead."""
    lesions = [{"id": 1, "long_axis_mm": 40.0, "touches_scan_edge": True},
               {"id": 2, "long_axis_mm": 25.0, "touches_scan_edge": False},
               {"id": 3, "long_axis_mm": 12.0}]  # older reports without the flag: not cut
    assert select_target_lesions(lesions) == [2, 3]


def test_one_tolerance_for_thresholds_and_for_equal_long_axes():
    """Thresholds and the order of target candidates use one tolerance (BOUNDARY_TOLERANCE, 1e-9): a value short of a
    threshold by float rounding meets it, a real shortfall does not; long axes apart by float rounding are equal
    (the lower id first), long axes 1e-7 mm apart are not (rounding to 6 decimals made them equal, by id)."""
    assert at_least(9.999999999999995, 10.0) and not at_least(9.9999999, 10.0)
    assert at_most(-0.29999999999999993, -0.3) and not at_most(-0.2999999, -0.3)
    rounded = [{"id": 1, "long_axis_mm": 19.999999999999996}, {"id": 2, "long_axis_mm": 20.000000000000004},
               {"id": 3, "long_axis_mm": 15.0}]
    assert select_target_lesions(rounded) == [1, 2] and select_target_lesions(rounded[::-1]) == [1, 2]
    apart = [{"id": 1, "long_axis_mm": 20.0}, {"id": 2, "long_axis_mm": 20.0000001}, {"id": 3, "long_axis_mm": 15.0}]
    assert select_target_lesions(apart) == [2, 1]
