"""RECIST-style axes (known ellipsoids on several grids), target lesions, sum of diameters, response, CSV."""
import csv
import io

import numpy as np
import pytest

from LiverTumorSegLib.inference.lesion_report import lesion_report, report_to_csv_text
from LiverTumorSegLib.metrics.recist import (lesion_axes, measurable_minimum_mm, recist_response,
                                             select_target_lesions, voxel_length_along)
from LiverTumorSegLib.volume import ImageGeometry

CENTRE_LPS = np.array([-20.0, 35.0, 110.0])


def rotation_z(degrees):
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


def ellipsoid_on_grid(geometry, shape_zyx, semi_axes_mm=(15.0, 10.0, 12.0), angle_deg=0.0):
    """Boolean (z, y, x) mask of the voxels whose centres lie in an ellipsoid centred at CENTRE_LPS whose
    first semi-axis points along LPS x rotated by ``angle_deg`` about the patient S axis."""
    k, j, i = np.indices(shape_zyx).astype(float)
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()])
    lps = (geometry.ijk_to_lps()[:3, :3] @ ijk).T + np.asarray(geometry.origin) - CENTRE_LPS
    local = lps @ rotation_z(angle_deg)  # rows: coordinates in the ellipsoid's own axes
    inside = ((local / np.asarray(semi_axes_mm)) ** 2).sum(1) <= 1.0
    return inside.reshape(shape_zyx)


def grid_around_centre(spacing_xyz, direction=np.eye(3), shape_zyx=None):
    """Geometry + shape covering 44 mm around CENTRE_LPS in-plane and 30 mm in the slice direction."""
    spacing = np.asarray(spacing_xyz, float)
    extent = np.array([44.0, 44.0, 30.0])
    size_xyz = np.ceil(extent / spacing).astype(int) + 1
    origin = CENTRE_LPS - np.asarray(direction) @ (spacing * (size_xyz - 1) / 2.0 + np.array([0.3, -0.2, 0.1]))
    geometry = ImageGeometry(spacing=tuple(spacing), origin=tuple(origin), direction=tuple(np.ravel(direction)))
    return geometry, tuple(int(s) for s in size_xyz[::-1])


GRIDS = {
    "isotropic_1mm": ((1.0, 1.0, 1.0), np.eye(3)),
    "anisotropic": ((0.7, 1.3, 2.5), np.eye(3)),
    "coarse_1.5mm_5mm_slices": ((1.5, 1.5, 5.0), np.eye(3)),
    "flipped_RAS_like": ((0.8, 0.9, 2.0), np.diag([-1.0, -1.0, 1.0])),
    "oblique_25deg_flipped_z": ((0.9, 0.9, 3.0), rotation_z(25.0) @ np.diag([1.0, 1.0, -1.0])),
}


@pytest.mark.parametrize("grid", sorted(GRIDS))
@pytest.mark.parametrize("angle_deg", [0.0, 37.0, 90.0])
def test_ellipsoid_30_by_20_mm_axes(grid, angle_deg):
    spacing, direction = GRIDS[grid]
    geometry, shape = grid_around_centre(spacing, direction)
    mask = ellipsoid_on_grid(geometry, shape, angle_deg=angle_deg)
    axes = lesion_axes(mask, geometry)
    assert axes["long_axis_mm"] == pytest.approx(30.0, abs=1.6)
    assert axes["short_axis_mm"] == pytest.approx(20.0, abs=1.6)
    long_pts = np.array(axes["long_axis"]["end_points_lps_mm"])
    short_pts = np.array(axes["short_axis"]["end_points_lps_mm"])
    # end points: lengths as reported, perpendicular, same axial plane, near the true vertices (either order)
    assert np.linalg.norm(long_pts[1] - long_pts[0]) == pytest.approx(axes["long_axis_mm"])
    assert np.linalg.norm(short_pts[1] - short_pts[0]) == pytest.approx(axes["short_axis_mm"])
    u = (long_pts[1] - long_pts[0]) / axes["long_axis_mm"]
    v = (short_pts[1] - short_pts[0]) / axes["short_axis_mm"]
    assert abs(float(u @ v)) < 1e-6
    true_u = rotation_z(angle_deg)[:, 0]
    for pts, semi, true_dir in ((long_pts, 15.0, true_u), (short_pts, 10.0, rotation_z(angle_deg)[:, 1])):
        expected = np.stack([CENTRE_LPS - semi * true_dir, CENTRE_LPS + semi * true_dir])
        err = min(np.linalg.norm(pts - expected, axis=1).max(), np.linalg.norm(pts[::-1] - expected, axis=1).max())
        # the farthest voxel pair across a blunt digital tip may tilt the axis a few degrees: ends within 4 mm
        assert err < 4.0, (pts, expected)
        assert np.linalg.norm(pts.mean(0) - CENTRE_LPS) < 3.0  # short axis: any chord of the flat middle
    np.testing.assert_allclose(np.array(axes["long_axis"]["end_points_ras_mm"]), long_pts * [-1, -1, 1])


@pytest.mark.parametrize("spacing_xy", [(0.6, 1.5), (1.5, 0.6)])
@pytest.mark.parametrize("angle_deg", [0.0, 45.0, 90.0])
def test_short_axis_with_non_square_pixels(spacing_xy, angle_deg):
    """Binning voxel centres in strips of the *smaller* pixel split a chord's row of 1.5 mm pixels over several
    strips: the short axis of a 30 x 20 mm ellipse read 18.9 mm at 0.6 x 1.5 mm (an audit's caliper: 20.2)."""
    geometry, shape = grid_around_centre(spacing_xy + (2.5,), np.eye(3))
    axes = lesion_axes(ellipsoid_on_grid(geometry, shape, angle_deg=angle_deg), geometry)
    assert axes["short_axis_mm"] == pytest.approx(20.0, abs=1.0)
    assert axes["long_axis_mm"] == pytest.approx(30.0, abs=1.6)


def test_voxel_length_along_axes_and_diagonal():
    g = ImageGeometry(spacing=(0.5, 2.0, 3.0))
    assert voxel_length_along(np.array([1.0, 0, 0]), g, axis=0) == pytest.approx(0.5)
    assert voxel_length_along(np.array([0, 1.0, 0]), g, axis=0) == pytest.approx(2.0)
    diag = np.array([1.0, 1.0, 0]) / np.sqrt(2)
    assert voxel_length_along(diag, g, axis=0) == pytest.approx(np.sqrt((0.5 ** 2 + 2.0 ** 2) / 2))


def test_single_voxel_and_one_voxel_wide_lesions():
    g = ImageGeometry(spacing=(0.8, 1.2, 3.0))
    mask = np.zeros((3, 5, 5), bool)
    mask[1, 2, 2] = True
    axes = lesion_axes(mask, g)
    assert (axes["long_axis_mm"], axes["short_axis_mm"]) == (pytest.approx(1.2), pytest.approx(0.8))
    mask[1, 2, 1:4] = True  # a row of 3 voxels along x
    axes = lesion_axes(mask, g)
    assert axes["long_axis_mm"] == pytest.approx(3 * 0.8) and axes["short_axis_mm"] == pytest.approx(1.2)


def test_measurement_slice_is_where_the_lesion_is_longest():
    g = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    mask = np.zeros((5, 20, 20), bool)
    mask[1, 5:10, 5:10] = True
    mask[2, 5:8, 2:18] = True  # 16 x 3 voxels: the longest slice
    mask[3, 6:8, 6:8] = True
    axes = lesion_axes(mask, g, offset_zyx=(10, 0, 0))
    assert axes["measurement_slice"] == {"axis_zyx": 0, "index": 12}
    assert axes["long_axis_mm"] == pytest.approx(np.hypot(15, 2) + 1.0, abs=0.1)  # farthest pair is diagonal
    assert axes["short_axis_mm"] == pytest.approx(3.0, abs=0.2)
    assert axes["long_axis"]["end_points_lps_mm"][0][2] == pytest.approx(24.0)  # slice 12 x 2 mm


def test_measurable_minimum_and_target_choice():
    assert measurable_minimum_mm(1.0) == 10.0 and measurable_minimum_mm(5.0) == 10.0
    assert measurable_minimum_mm(7.0) == 14.0
    lesions = [{"id": 1, "long_axis_mm": 12.0}, {"id": 2, "long_axis_mm": 9.9}, {"id": 3, "long_axis_mm": 40.0},
               {"id": 4, "long_axis_mm": 25.0}]
    assert select_target_lesions(lesions) == [3, 4]
    assert select_target_lesions(lesions, minimum_mm=30.0) == [3]
    assert select_target_lesions([{"id": 1, "long_axis_mm": 5.0}]) == []


def float32_tilted_geometry(tilt_degrees, spacing_xyz):
    """A grid of ``spacing_xyz`` (mm) tilted ``tilt_degrees`` about x, its voxel-to-RAS matrix rounded to float32 as
    a NIfTI header stores it."""
    tilt = np.deg2rad(tilt_degrees)
    rotation = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(tilt), -np.sin(tilt)], [0.0, np.sin(tilt), np.cos(tilt)]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing_xyz)
    return ImageGeometry.from_ijk_to_ras(affine.astype(np.float32))


def test_a_float32_tilted_header_does_not_raise_the_measurable_minimum_over_10_mm():
    # 5 mm slices tilted 5 degrees about x, the voxel-to-RAS matrix stored in float32 as a NIfTI header holds it:
    # the slice spacing read 5.000000229 mm, the minimum 10.0000005 mm, and a lesion of 10.0 mm was no target
    geometry = float32_tilted_geometry(5.0, (0.625, 0.625, 5.0))
    assert geometry.spacing[2] != 5.0  # the float32 rounding is there
    labels = np.zeros((5, 30, 40), np.uint8)  # (z, y, x)
    labels[1:4, 2:28, 2:38] = 1
    labels[2, 15, 10:26] = 2  # 16 voxels of 0.625 mm along x: a long axis of 10.0 mm
    report = lesion_report(labels, geometry)
    assert report["lesions"][0]["long_axis_mm"] == pytest.approx(10.0, abs=1e-12)
    assert report["recist"]["slice_thickness_mm"] == 5.0
    assert report["recist"]["measurable_minimum_mm"] == 10.0
    assert report["recist"]["target_lesion_ids"] == [1]


def test_a_float32_tilted_header_does_not_shorten_an_in_plane_10_mm_lesion_below_measurable():
    # 0.625 mm pixels tilted 15 degrees about x, the voxel-to-RAS matrix in float32 as a NIfTI header holds it: 16
    # pixels along y measured 9.999999666 mm, and a lesion the same CT untilted makes a target was none. Tilted 2
    # degrees (9.99999966 mm): over 5 degrees the axes are measured in true axial planes, which cut this one-slice
    # plate of 2 mm short of its 10 mm (AXIAL_PLANES_TILT_DEGREES)
    geometry = float32_tilted_geometry(2.0, (0.625, 0.625, 2.0))
    labels = np.zeros((5, 40, 30), np.uint8)  # (z, y, x)
    labels[1:4, 2:38, 2:28] = 1
    labels[2, 10:26, 15] = 2  # 16 voxels of 0.625 mm along y: a long axis of 10.0 mm
    report = lesion_report(labels, geometry)
    long_axis = report["lesions"][0]["long_axis_mm"]
    assert long_axis != 10.0 and long_axis == pytest.approx(10.0, abs=1e-5)  # the float32 rounding is there
    assert report["recist"]["target_lesion_ids"] == [1]


@pytest.mark.parametrize("base, follow, new, n_follow, expected", [
    (50.0, 34.0, False, 2, "PR"),    # -32 %
    (50.0, 36.0, False, 2, "SD"),    # -28 %
    (50.0, 60.0, False, 2, "PD"),    # +20 %, +10 mm
    (20.0, 24.0, False, 2, "SD"),    # +20 % but only +4 mm
    (50.0, 40.0, True, 3, "PD"),     # any new lesion
    (50.0, 0.0, False, 0, "CR"),
    (None, None, False, 1, "Non-CR/non-PD"),  # only non-target lesions, still there (RECIST 1.1 Table 2)
    # exactly on the thresholds: 14 -> 9.8 is -30 %, 26 -> 31.2 is +20 % with +5.2 mm, 11.4 -> 16.4 is +5 mm;
    # float rounding made each of them SD
    (14.0, 9.8, False, 2, "PR"),
    (26.0, 31.2, False, 2, "PD"),
    (11.4, 16.4, False, 2, "PD"),
])
def test_recist_response_categories(base, follow, new, n_follow, expected):
    assert recist_response(base, follow, new, n_follow, 2)[0] == expected


def test_recist_response_boundaries_hold_for_every_sum():
    """Every sum from 10 to 300 mm in 0.1 mm steps: exactly -30 % is PR, exactly +20 % with >= +5 mm is PD
    (the audit found 43 and 220 such pairs misclassified)."""
    for tenths in range(100, 3001):
        base = tenths / 10
        assert recist_response(base, base * 0.7, False, 2, 2)[0] == "PR", base
        if base * 0.2 >= 5.0:
            assert recist_response(base, base * 1.2, False, 2, 2)[0] == "PD", base
    assert recist_response(None, None, False, 0, 0)[0] == "NE"  # no lesion at either time point


def labels_with_two_ellipsoids():
    geometry, shape = grid_around_centre((1.0, 1.0, 2.0))
    labels = np.ones(shape, np.uint8)
    labels[ellipsoid_on_grid(geometry, shape, (15.0, 10.0, 8.0))] = 2
    small = np.zeros(shape, bool)
    small[7, 2:6, 2:6] = True  # 4 x 4 voxels: 3 x sqrt(2) + 1 = 5.2 mm along the diagonal -> not measurable
    labels[small] = 2
    return geometry, labels


def test_report_has_axes_targets_sum_and_probability():
    geometry, labels = labels_with_two_ellipsoids()
    probability = np.where(labels == 2, 0.8, 0.1).astype(np.float32)
    probability[7, 2:6, 2:6] = 0.5
    report = lesion_report(labels, geometry, tumor_probability_zyx=probability)
    big, small = report["lesions"]
    assert big["long_axis_mm"] == pytest.approx(30.0, abs=1.6) and big["short_axis_mm"] == pytest.approx(20, abs=1.6)
    assert big["recist_target"] and not small["recist_target"]
    assert report["recist"]["target_lesion_ids"] == [1]
    assert report["recist"]["sum_of_diameters_mm"] == pytest.approx(big["long_axis_mm"])
    assert big["mean_tumor_probability"] == pytest.approx(0.8) and small["mean_tumor_probability"] == pytest.approx(0.5)
    uint8_report = lesion_report(labels, geometry, tumor_probability_zyx=np.round(probability * 255).astype(np.uint8))
    assert uint8_report["lesions"][0]["mean_tumor_probability"] == pytest.approx(0.8, abs=0.003)
    assert "mean_tumor_probability" not in lesion_report(labels, geometry)["lesions"][0]


def test_csv_has_no_comment_lines_and_carries_case_facts():
    geometry, labels = labels_with_two_ellipsoids()
    report = lesion_report(labels, geometry, extra={"input": "ct.nii.gz", "two_stage": False,
                                                    "postprocessing": {"min_lesion_ml": 0.1}})
    text = report_to_csv_text(report)
    assert not any(line.startswith("#") for line in text.splitlines())
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 2 and rows[0]["id"] == "1"
    assert float(rows[0]["long_axis_mm"]) == pytest.approx(report["lesions"][0]["long_axis_mm"], abs=0.01)
    assert float(rows[1]["liver_volume_ml"]) == pytest.approx(report["liver_volume_ml"], abs=0.001)
    assert rows[0]["input"] == "ct.nii.gz" and rows[0]["recist_target"] == "1" and rows[1]["recist_target"] == "0"
    assert '"min_lesion_ml": 0.1' in rows[0]["postprocessing"]
    empty = report_to_csv_text(lesion_report(np.ones((2, 3, 3), np.uint8), ImageGeometry(spacing=(1, 1, 1))))
    rows = list(csv.DictReader(io.StringIO(empty)))
    assert len(rows) == 1 and rows[0]["id"] == "" and rows[0]["lesion_count"] == "0"
    assert float(rows[0]["liver_volume_ml"]) == pytest.approx(0.018)


def _stored_flipped(mask, geometry, array_axis):
    """The same world mask stored with one array axis ``(z, y, x)`` reversed (geometry adjusted)."""
    column = 2 - array_axis
    corner = [0, 0, 0]
    corner[column] = mask.shape[array_axis] - 1
    flip = np.eye(3)
    flip[column, column] = -1.0
    stored = ImageGeometry(spacing=geometry.spacing, origin=tuple(geometry.index_to_lps(tuple(corner))),
                           direction=tuple((geometry.direction_matrix @ flip).ravel()))
    return np.flip(mask, axis=array_axis).copy(), stored


@pytest.mark.parametrize("grid", ["isotropic_1mm", "anisotropic", "oblique_25deg_flipped_z"])
@pytest.mark.parametrize("semi_axes", [(12.0, 12.0, 12.0), (15.0, 10.0, 8.0)])
def test_axes_do_not_depend_on_how_the_file_is_stored(grid, semi_axes):
    # a sphere on a grid has many equally long diameters: the one reported was the first in scan order, and the
    # short axis's bins started at that end, so the same lesion stored flipped read 24.75 vs 25.38 mm
    spacing, direction = GRIDS[grid]
    geometry, shape = grid_around_centre(spacing, direction)
    mask = ellipsoid_on_grid(geometry, shape, semi_axes_mm=semi_axes, angle_deg=20.0)
    reference = lesion_axes(mask, geometry)
    for array_axis in range(3):
        stored_mask, stored_geometry = _stored_flipped(mask, geometry, array_axis)
        axes = lesion_axes(stored_mask, stored_geometry)
        assert axes["long_axis_mm"] == pytest.approx(reference["long_axis_mm"], abs=1e-6)
        assert axes["short_axis_mm"] == pytest.approx(reference["short_axis_mm"], abs=1e-6)
        for name in ("long_axis", "short_axis"):
            np.testing.assert_allclose(axes[name]["end_points_lps_mm"], reference[name]["end_points_lps_mm"],
                                       atol=1e-6)


@pytest.mark.parametrize("shape_zyx", [(1, 1, 1), (1, 1, 6), (1, 6, 1)], ids=["one_voxel", "row_x", "row_y"])
def test_end_points_of_one_voxel_wide_lesions_do_not_depend_on_storage(shape_zyx):
    """A lesion one voxel wide: its short axis (one voxel across) came out start-to-end in storage order, so
    the file flipped listed the same two points reversed (audit; report_format.md promises a fixed order)."""
    geometry = ImageGeometry(spacing=(0.7, 0.9, 2.5), origin=(-20.0, 10.0, 40.0))
    mask = np.zeros((3, 8, 8), bool)
    mask[1:1 + shape_zyx[0], 2:2 + shape_zyx[1], 1:1 + shape_zyx[2]] = True
    reference = lesion_axes(mask, geometry)
    for array_axis in range(3):
        stored_mask, stored_geometry = _stored_flipped(mask, geometry, array_axis)
        axes = lesion_axes(stored_mask, stored_geometry)
        for name in ("long_axis", "short_axis"):
            np.testing.assert_allclose(axes[name]["end_points_lps_mm"], reference[name]["end_points_lps_mm"],
                                       atol=1e-6)


@pytest.mark.parametrize("base, nadir, follow, expected", [
    (50.0, 30.0, 40.0, "PD"),    # +33 % and +10 mm from the nadir: PD (from the baseline alone, -20 %: SD)
    (50.0, 30.0, 34.0, "PR"),    # +13 % from the nadir; -32 % from the baseline: PR
    (50.0, 20.0, 24.5, "PR"),    # +22.5 % from the nadir but +4.5 mm: not PD; -51 % from the baseline: PR
    (30.0, 20.0, 24.5, "SD"),    # the same rise from the nadir, -18 % from the baseline: SD, the 5 mm said
    (50.0, 60.0, 58.0, "SD"),    # a nadir above the baseline: the baseline is the smallest sum, +16 %: SD
    (50.0, 0.0, 6.0, "PD"),      # every target gone earlier, one measured again: PD
    (50.0, None, 40.0, "SD"),    # no nadir given: from the baseline, -20 %
])
def test_recist_response_judges_progression_from_the_nadir_and_partial_response_from_the_baseline(
        base, nadir, follow, expected):
    """RECIST 1.1 4.3.1: PD is +20 % and +5 mm over the smallest sum on study (the baseline's included); PR is
    -30 % from the baseline. Two scans gave progression from the baseline only: 50 -> 30 -> 40 mm read SD."""
    response, reason = recist_response(base, follow, False, 2, 2, nadir)
    assert response == expected, reason
    if nadir is not None and 0 < nadir < base:
        assert f"nadir {nadir:.1f} mm" in reason
    if (base, nadir, follow) == (30.0, 20.0, 24.5):
        assert "up by 4.5 mm from the nadir, under the 5 mm PD needs" in reason


@pytest.mark.parametrize("follow", [4.0, 4.9, 4.999999, 5.0, 6.0])
@pytest.mark.parametrize("complete_response", [None, True, False])
def test_a_target_back_after_a_nadir_of_0_mm_is_pd_from_5_mm_or_after_a_complete_response(follow, complete_response):
    """Every target gone at an earlier follow-up (nadir 0 mm), one measured again. From 0 mm any rise is over +20 %,
    so the 5 mm absolute rule decides: 5 mm (also 5 mm short by float rounding only) and more is PD whatever that
    follow-up was. Under 5 mm it is PD only after a complete response (every lesion gone; RECIST working group FAQ:
    a lesion that disappears and reappears is not automatically PD unless CR was assigned before); otherwise 50 ->
    4 mm (-92 % from the baseline) is PR, and, where it is not known whether that follow-up was a CR, the reason says
    that it is PD if it was. 4.0 mm read PD whether or not that follow-up was a CR."""
    response, reason = recist_response(50.0, follow, False, 3, 3, 0.0, complete_response)
    assert "measured again after a nadir of 0 mm" in reason
    if follow >= 5.0 - 1e-5:
        assert response == "PD" and reason.endswith("measured again after a nadir of 0 mm"), reason
    elif complete_response:
        assert response == "PD"
        assert reason.endswith("every lesion had disappeared at that follow-up (CR), and after a CR any lesion that "
                               "reappears is PD)")
    else:
        assert response == "PR"
        assert f"up by {follow:.1f} mm from the nadir, under the 5 mm PD needs" in reason
        assert ("PD if that follow-up was a complete response" in reason) == (complete_response is None)


def test_after_a_nadir_of_0_mm_the_smallest_baseline_sum_gives_pr_under_5_mm_and_pd_from_5_mm():
    # baseline 10 mm (one target of the measurable minimum), nadir 0, back at 4.5 mm: -55 % is PR; from 5 mm PD, also
    # at -25 % from the baseline: the sum rule from a nadir of 0 never needs the baseline's +20 %
    assert recist_response(10.0, 4.5, False, 1, 1, 0.0)[0] == "PR"
    assert recist_response(10.0, 5.0, False, 1, 1, 0.0)[0] == "PD"   # -50 % from the baseline, +5 mm from 0 mm
    assert recist_response(10.0, 7.5, False, 1, 1, 0.0)[0] == "PD"   # -25 % from the baseline
    assert recist_response(10.0, 0.0, False, 1, 1, 0.0) == ("PR", "sum of diameters 10.0 -> 0.0 mm (-100.0 %); "
                                                             "nadir 0 mm")


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_voxels_by_slice_are_the_rows_a_selection_per_slice_gives(axis):
    # lesion_axes groups a lesion's voxels by axial slice with one sort (a selection per slice read all of a
    # confluent mass once per slice: 4.7 s for 10 million voxels); the groups, their order and the order of the
    # rows in each must stay those of the selection, so that every axis and tie-break is unchanged
    from LiverTumorSegLib.metrics.recist import _voxels_by_slice

    rng = np.random.default_rng(7)
    kji = np.argwhere(rng.random((9, 11, 13)) < 0.3).astype(np.float64) + [3, 5, 7]
    expected = [(value, kji[kji[:, axis] == value]) for value in np.unique(kji[:, axis])]
    got = _voxels_by_slice(kji, axis)
    assert [v for v, _ in got] == [v for v, _ in expected]
    for (_, rows), (_, want) in zip(got, expected):
        np.testing.assert_array_equal(rows, want)


def test_lesion_axes_of_a_lesion_stored_across_other_axes_is_unchanged():
    # the same voxels stored (z, y, x) and transposed (coronal storage, axial axis 1) measure the same
    origin = tuple(CENTRE_LPS - [24 * 0.8, 24 * 0.8, 8 * 2.5])
    geometry = ImageGeometry(spacing=(0.8, 0.8, 2.5), origin=origin)
    mask = ellipsoid_on_grid(geometry, (16, 48, 48), semi_axes_mm=(12.0, 8.0, 10.0), angle_deg=30.0)
    axes = lesion_axes(mask, geometry)
    coronal = ImageGeometry(spacing=(0.8, 2.5, 0.8), origin=origin, direction=(1, 0, 0, 0, 0, 1, 0, 1, 0))
    stored = np.transpose(mask, (1, 0, 2))  # (j, k, i): array axis 1 is now the S axis
    other = lesion_axes(stored, coronal)
    assert other["measurement_slice"]["axis_zyx"] == 1
    assert other["long_axis_mm"] == pytest.approx(axes["long_axis_mm"], abs=1e-9)
    assert other["short_axis_mm"] == pytest.approx(axes["short_axis_mm"], abs=1e-9)
    np.testing.assert_allclose(other["long_axis"]["end_points_lps_mm"], axes["long_axis"]["end_points_lps_mm"],
                               atol=1e-6)
