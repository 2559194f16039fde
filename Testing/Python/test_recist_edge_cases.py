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
    # 3 x 0.7 mm long and one voxel across, which in that slice is along k (array axis 0, 2.5 mm): a 2.1 x 2.5 mm
    # rectangle, so the long axis is the 2.5 mm across the row and the short axis the row (RECIST: short <= long)
    g = ImageGeometry(spacing=(0.7, 1.1, 2.5), direction=(1, 0, 0, 0, 0, 1, 0, 1, 0))
    mask = np.zeros((5, 4, 6), bool)
    mask[2, 1, 1:4] = True
    axes = lesion_axes(mask, g)
    assert axes["measurement_slice"] == {"axis_zyx": 1, "index": 1}
    assert axes["long_axis_mm"] == pytest.approx(2.5) and axes["short_axis_mm"] == pytest.approx(2.1)
    long_ends = np.asarray(axes["long_axis"]["end_points_lps_mm"])
    short_ends = np.asarray(axes["short_axis"]["end_points_lps_mm"])
    assert np.allclose(np.abs(long_ends[1] - long_ends[0]), [0, 2.5, 0])   # along k: LPS y (direction column 3)
    assert np.allclose(np.abs(short_ends[1] - short_ends[0]), [2.1, 0, 0])
    assert axes["long_axis_voxel_centres_mm"] == 0.0   # one voxel across: no two centres along the long axis


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
    """Thresholds and the order of target candidates use one tolerance (BOUNDARY_TOLERANCE, 1e-6 of the threshold,
    at least 1e-6): a value short of a threshold by rounding (float64, or a float32 header's 7 digits) meets it, a
    real shortfall does not; long axes apart by rounding are equal (the lower id first), long axes of 20 mm 1e-4 mm
    apart (5e-6 of them) are not."""
    assert at_least(9.999999999999995, 10.0) and at_least(9.99999967, 10.0) and not at_least(9.99998, 10.0)
    assert at_least(179.99985, 180.0) and not at_least(179.9997, 180.0)  # 1e-6 of 180 mm is 0.00018 mm
    assert at_most(-0.29999999999999993, -0.3) and at_most(-0.2999995, -0.3) and not at_most(-0.29999, -0.3)
    rounded = [{"id": 1, "long_axis_mm": 19.999999999999996}, {"id": 2, "long_axis_mm": 20.000000000000004},
               {"id": 3, "long_axis_mm": 15.0}]
    assert select_target_lesions(rounded) == [1, 2] and select_target_lesions(rounded[::-1]) == [1, 2]
    apart = [{"id": 1, "long_axis_mm": 20.0}, {"id": 2, "long_axis_mm": 20.0001}, {"id": 3, "long_axis_mm": 15.0}]
    assert select_target_lesions(apart) == [2, 1]


def test_non_square_pixels_the_slice_with_the_longest_reported_axis_is_the_measurement_slice():
    # x 0.5 mm, y 2.0 mm: slice 0 holds 21 pixels along x (centres 10 mm apart, 10.5 mm edge to edge), slice 1
    # holds 6 pixels along y (centres also 10 mm apart, 12 mm edge to edge). The long axis is the 12 mm one.
    g = ImageGeometry(spacing=(0.5, 2.0, 2.5))
    mask = np.zeros((3, 20, 60), bool)
    mask[0, 5, 10:31] = True
    mask[1, 5:11, 10] = True
    axes = lesion_axes(mask, g)
    assert axes["long_axis_mm"] == pytest.approx(12.0)
    assert axes["measurement_slice"]["index"] == 1
    assert axes["long_axis_voxel_centres_mm"] == pytest.approx(10.0)


def test_non_square_pixels_never_give_a_short_axis_longer_than_the_long_axis():
    # near-circular discs at 0.6 x 1.5 mm pixels: a voxel is 1.5 mm across but 0.6 mm along a row, so the
    # perpendicular extent plus its voxel length could exceed the long axis (10.35 against 10.75 mm before)
    g = ImageGeometry(spacing=(0.6, 1.5, 2.5))
    radius, ratio, angle = 5.132308503527405, 0.9801113111929683, 2.0182205081593323
    n = int(30 / 0.6) + 4
    y, x = np.meshgrid(np.arange(n) * 1.5, np.arange(n) * 0.6, indexing="ij")
    worst = -np.inf
    for dx in np.linspace(0, 1, 6):
        for dy in np.linspace(0, 1, 6):
            px, py = x - (n * 0.6 / 2 + dx), y - (n * 1.5 / 2 + dy)
            u = np.cos(angle) * px + np.sin(angle) * py
            v = -np.sin(angle) * px + np.cos(angle) * py
            axes = lesion_axes(((u / radius) ** 2 + (v / (radius * ratio)) ** 2 <= 1)[None], g)
            worst = max(worst, axes["short_axis_mm"] - axes["long_axis_mm"])
            ends = np.asarray(axes["short_axis"]["end_points_lps_mm"])
            assert np.linalg.norm(ends[1] - ends[0]) == pytest.approx(axes["short_axis_mm"])
            assert axes["long_axis_mm"] == pytest.approx(2 * radius, abs=1.6)
    assert worst <= 1e-9


def test_the_response_reason_never_rounds_a_change_onto_a_threshold_it_misses_and_says_why_20_percent_is_not_pd():
    """+19.97 % read '+20.0 %' beside SD and -29.96 % read '-30.0 %' beside SD; 20 -> 24 mm (+20 %, +4 mm) said
    nothing of the 5 mm rule (the follow-up audit)."""
    # the sums as well: '100.0 -> 120.0 mm' is +20 % and '100.0 -> 70.0 mm' -30 %, the rules the percents miss
    assert recist_response(100.0, 119.97, False, 1, 1) == ("SD", "sum of diameters 100.00 -> 119.97 mm (+19.97 %)")
    assert recist_response(100.0, 70.04, False, 1, 1) == ("SD", "sum of diameters 100.00 -> 70.04 mm (-29.96 %)")
    category, reason = recist_response(20.0, 24.0, False, 1, 1)
    assert category == "SD" and reason.endswith("(+20.0 %); up by 4.0 mm, under the 5 mm PD needs")
    assert recist_response(100.0, 120.0, False, 1, 1) == ("PD", "sum of diameters 100.0 -> 120.0 mm (+20.0 %)")
    assert recist_response(100.0, 70.0, False, 1, 1) == ("PR", "sum of diameters 100.0 -> 70.0 mm (-30.0 %)")


def test_two_equal_long_axes_on_a_tilted_float32_grid_are_ordered_by_id(tmp_path):
    """Two lesions of 20 mm (32 pixels of 0.625 mm along x, 25 of 0.8 mm along y) on a grid tilted 1 degree and
    stored in a NIfTI header (float32) read 20.00000006 and 20.0000006 mm: apart by the header's rounding only, so
    the lower id comes first (the absolute 1e-6 mm steps the order used put lesion 2 first), as it does for long
    axes 20 mm and 20.0001 mm apart by less than a real difference would not."""
    import nibabel as nib

    from LiverTumorSegLib.io.reading import read_volume

    tilt = np.deg2rad(1.0)
    rotation = np.array([[np.cos(tilt), -np.sin(tilt), 0], [np.sin(tilt), np.cos(tilt), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.625, 0.8, 5.0])
    affine[:3, 3] = [-100.3, 50.7, 12.1]
    image = nib.Nifti1Image(np.zeros((48, 32, 3), np.int16), affine)   # (x, y, z)
    nib.save(image, str(tmp_path / "tilted.nii.gz"))
    geometry = read_volume(tmp_path / "tilted.nii.gz").geometry
    along_x = np.zeros((3, 32, 48), bool)   # (z, y, x)
    along_x[1, 2, 5:37] = True
    along_y = np.zeros((3, 32, 48), bool)
    along_y[1, 4:29, 45] = True
    lesions = [{"id": 1, "long_axis_mm": lesion_axes(along_x, geometry)["long_axis_mm"]},
               {"id": 2, "long_axis_mm": lesion_axes(along_y, geometry)["long_axis_mm"]}]
    assert lesions[0]["long_axis_mm"] == pytest.approx(20.0, abs=1e-5)
    assert lesions[1]["long_axis_mm"] == pytest.approx(20.0, abs=1e-5)
    assert lesions[0]["long_axis_mm"] != lesions[1]["long_axis_mm"]   # the float32 noise the test is about
    assert select_target_lesions(lesions) == [1, 2] and select_target_lesions(lesions[::-1]) == [1, 2]
    relative = [{"id": 1, "long_axis_mm": 20.0}, {"id": 2, "long_axis_mm": 20.000015}]   # 7.5e-7 of 20 mm
    assert select_target_lesions(relative) == [1, 2]
    apart = [{"id": 1, "long_axis_mm": 20.0}, {"id": 2, "long_axis_mm": 20.0001}]   # 5e-6 of 20 mm
    assert select_target_lesions(apart) == [2, 1]


@pytest.mark.parametrize("slice_mm, measurable_from_mm", [(5.0, 10), (6.0, 12), (7.5, 15)])
def test_a_lesion_is_measurable_from_10_mm_or_twice_a_slice_thickness_over_5_mm(slice_mm, measurable_from_mm):
    """RECIST 1.1: measurable from a long axis of 10 mm on CT of slices up to 5 mm, else twice the slice thickness.
    A row of n voxels of 1 mm along x measures n mm: one voxel short of the minimum is no target, the minimum is."""
    from LiverTumorSegLib.inference.lesion_report import lesion_report

    for length, is_target in ((measurable_from_mm - 1, False), (measurable_from_mm, True)):
        labels = np.zeros((8, 40, 40), np.uint8)   # (z, y, x)
        labels[1:7, 2:38, 2:38] = 1
        labels[3:5, 20, 5:5 + length] = 2
        report = lesion_report(labels, ImageGeometry(spacing=(1.0, 1.0, slice_mm)))
        assert report["lesions"][0]["long_axis_mm"] == pytest.approx(length, abs=1e-9)
        assert report["recist"]["measurable_minimum_mm"] == measurable_from_mm
        assert report["recist"]["target_lesion_ids"] == ([1] if is_target else [])


def test_at_most_two_targets_the_longest_not_cut_by_the_scans_edge():
    """RECIST 1.1: at most 2 target lesions per organ, chosen by size and suited to reproducible measurement: of a
    30 mm lesion cut by the scan's edge, lesions of 30, 20 and 15 mm, the 30 and 20 mm ones; sum 50 mm."""
    from LiverTumorSegLib.inference.lesion_report import lesion_report

    labels = np.zeros((8, 60, 60), np.uint8)   # (z, y, x)
    labels[1:7, 0:58, 2:58] = 1
    labels[3:5, 10, 5:35] = 2     # 30 mm
    labels[3:5, 0:30, 45] = 2     # 30 mm along y from the grid's first row: cut by the scan's edge
    labels[3:5, 20, 5:25] = 2     # 20 mm
    labels[3:5, 30, 5:20] = 2     # 15 mm
    report = lesion_report(labels, ImageGeometry(spacing=(1.0, 1.0, 2.0)))
    by_axis = {round(d["long_axis_mm"], 6): d for d in report["lesions"] if not d["touches_scan_edge"]}
    assert sorted(by_axis) == [15.0, 20.0, 30.0]
    assert [d["long_axis_mm"] for d in report["lesions"] if d["touches_scan_edge"]] == [pytest.approx(30.0)]
    assert report["recist"]["target_lesion_ids"] == [by_axis[30.0]["id"], by_axis[20.0]["id"]]
    assert report["recist"]["sum_of_diameters_mm"] == pytest.approx(50.0)


def _rotation(axis, degrees):
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]), "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def _phantom_label_map(direction, n=64):
    """A liver (sphere of radius 28 mm) holding a tumor ellipsoid of axial diameters 30 x 20 mm (its long axis 30
    degrees from L) and 15 mm head to foot, both centred at the origin, rasterised on an ``n``^3 grid of 1 mm voxels
    with ``direction`` (LPS columns), centred on the origin: the same physical lesion however the grid is turned."""
    origin = -direction @ (np.full(3, n - 1) / 2.0)
    geometry = ImageGeometry(spacing=(1.0, 1.0, 1.0), origin=tuple(origin), direction=tuple(direction.ravel()))
    k, j, i = np.meshgrid(np.arange(n), np.arange(n), np.arange(n), indexing="ij")
    points = np.stack([i, j, k], -1).reshape(-1, 3).astype(float) @ direction.T + origin  # LPS mm
    in_tumor_frame = points @ _rotation("z", 30.0)
    labels = np.zeros(len(points), np.uint8)
    labels[(points ** 2).sum(1) <= 28.0 ** 2] = 1
    labels[((in_tumor_frame / [15.0, 10.0, 7.5]) ** 2).sum(1) <= 1.0] = 2
    return labels.reshape(n, n, n), geometry


@pytest.mark.parametrize("axis, degrees", [("x", 45.0), ("y", 45.0), ("x", 30.0), ("x", 10.0)])
def test_measure_of_a_label_map_stored_tilted_gives_the_axes_of_the_same_lesion_stored_axial(tmp_path, axis, degrees):
    """measure (without --ct, and the same with it: both measure the label map's grid) took a label map's slices
    nearest to axial as the axial planes, so the same lesion stored tilted 45 degrees about L measured 27.7 x 17.5 mm,
    about P 23.1 x 18.1 mm, against 30.2 x 20.3 mm stored axial: its RECIST axes depended on how it was stored. On a
    grid tilted more than 5 degrees the axes are measured in true axial planes: within a voxel (1 mm) of the axial
    storage's; the volume (a voxel count) differs by the rasterisation only."""
    import json

    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.io.writers import write_label_map

    reports = {}
    for name, direction in (("axial", np.eye(3)), ("tilted", _rotation(axis, degrees))):
        labels, geometry = _phantom_label_map(direction)
        path = write_label_map(tmp_path / f"{name}.nii.gz", labels, geometry)
        assert main(["measure", str(path), "-o", str(tmp_path / f"{name}.json")]) == 0
        reports[name] = json.loads((tmp_path / f"{name}.json").read_text())
    (axial,), (tilted,) = reports["axial"]["lesions"], reports["tilted"]["lesions"]
    assert axial["long_axis_mm"] == pytest.approx(30.0, abs=1.0) and axial["short_axis_mm"] == pytest.approx(20.0, abs=1.0)
    # the sampling lattice's phase (through the volume's origin) moves the axes: over 40 random phases, tilted 45
    # degrees about P the long axis read +0.81..+1.72 mm over the axial storage's (the tilted voxels' corners reach
    # further along L), the short -0.93..+0.41 mm; the other tilts here long +0.00..+0.86, short -0.53..+0.94 mm
    assert -0.1 <= tilted["long_axis_mm"] - axial["long_axis_mm"] <= 1.8
    assert tilted["short_axis_mm"] == pytest.approx(axial["short_axis_mm"], abs=1.0)
    assert tilted["volume_ml"] == pytest.approx(axial["volume_ml"], rel=0.02)
    # the end points lie in one true axial plane (one S), and the warning (over 20 degrees) says how it was measured
    for key in ("long_axis", "short_axis"):
        ends = np.asarray(tilted[key]["end_points_lps_mm"])
        assert ends[0][2] == pytest.approx(ends[1][2], abs=1e-9)
    said = [w for w in reports["tilted"]["warnings"] if "tilted" in w]
    assert said == ([] if degrees <= 20.0 else [f"'{tmp_path / 'tilted.nii.gz'}' is stored in slices tilted "
                                                f"{degrees:.0f} degrees from the axial plane: the long and short axes "
                                                f"are measured in true axial planes through its voxels (each point "
                                                f"takes the label of the voxel it lies in), within about two voxels of "
                                                f"the same lesion stored axial (up to 1.7 mm longer for a 30 mm "
                                                f"lesion on 1 mm voxels tilted 45 degrees, with where the sampling "
                                                f"falls)."])


@pytest.mark.parametrize("axis, spin", [("x", 0.0), ("x", 17.0), ("y", 0.0)])
def test_axes_in_true_axial_planes_do_not_depend_on_the_crop_of_the_mask(axis, spin):
    """On a grid tilted over 5 degrees the patient-aligned sampling grid started at the given mask's corner, so the
    same lesion as a full-volume mask and as a tight crop with its offset (as the lesion report passes it) was
    sampled at other points: a 30 x 20 x 16 mm ellipsoid tilted 40 degrees about L measured 30.27 x 20.23 mm full
    and 30.27 x 21.22 mm cropped. The sampling lattice runs through the volume's origin: every crop measures the
    same, to the end points."""
    n = 48
    direction = _rotation(axis, 40.0)
    origin = -direction @ (np.full(3, n - 1) / 2.0) + np.array([0.3, -0.17, 0.41])
    geometry = ImageGeometry(spacing=(1.0, 1.0, 1.0), origin=tuple(origin), direction=tuple(direction.ravel()))
    k, j, i = np.meshgrid(np.arange(n), np.arange(n), np.arange(n), indexing="ij")
    points = np.stack([i, j, k], -1).reshape(-1, 3).astype(float) @ direction.T + origin  # LPS mm
    mask = ((((points @ _rotation("z", spin)) / [15.0, 10.0, 8.0]) ** 2).sum(1) <= 1.0).reshape(n, n, n)
    full = lesion_axes(mask, geometry)
    nonzero = np.nonzero(mask)
    low = [int(a.min()) for a in nonzero]
    high = [int(a.max()) + 1 for a in nonzero]
    for margin in ((0, 0, 0), (1, 2, 3), (3, 0, 1)):
        start = [max(0, lo - m) for lo, m in zip(low, margin)]
        crop = mask[tuple(slice(s, h + m) for s, h, m in zip(start, high, margin))]
        axes = lesion_axes(crop, geometry, offset_zyx=start)
        assert axes["long_axis_mm"] == pytest.approx(full["long_axis_mm"], abs=1e-9)
        assert axes["short_axis_mm"] == pytest.approx(full["short_axis_mm"], abs=1e-9)
        assert axes["measurement_slice"] == full["measurement_slice"]
        for key in ("long_axis", "short_axis"):
            np.testing.assert_allclose(axes[key]["end_points_lps_mm"], full[key]["end_points_lps_mm"], atol=1e-9)
    assert full["long_axis_mm"] == pytest.approx(30.0, abs=1.5) and full["short_axis_mm"] == pytest.approx(20.0, abs=1.5)


def test_the_tie_frame_is_lps_on_an_axis_aligned_grid_and_the_same_for_every_storage_order_and_small_turn():
    """Equally long axes are decided in recist.tie_frame's coordinates: the identity (LPS) on any axis-aligned grid;
    the same frame for a grid stored flipped or with its axes swapped; turned with the grid, so that a voxel's
    coordinates in it do not change when the grid turns a little."""
    from LiverTumorSegLib.metrics.recist import tie_frame

    flipped_swapped = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    for direction in (np.eye(3), flipped_swapped):
        np.testing.assert_array_equal(tie_frame(ImageGeometry(spacing=(1.0, 1.0, 1.0), direction=tuple(direction.ravel()))), np.eye(3))
    angle = np.radians(3.0)
    turn = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    for direction in (np.eye(3), flipped_swapped):
        turned = ImageGeometry(spacing=(1.0, 1.0, 1.0), direction=tuple((turn @ direction).ravel()))
        np.testing.assert_allclose(tie_frame(turned), turn, atol=1e-12)  # R P^T = T
        # a voxel's coordinates in the frame: the same on the turned grid as on the straight one
        index_mm = np.array([3.0, -2.0, 5.0])
        np.testing.assert_allclose(tie_frame(turned).T @ (turn @ direction @ index_mm), direction @ index_mm,
                                   atol=1e-12)
    # two index axes nearest to one patient axis (a 45-degree grid): no permutation, the identity (LPS) as before
    diagonal = np.array([[np.sqrt(0.5), -np.sqrt(0.5), 0.0], [np.sqrt(0.5), np.sqrt(0.5), 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(tie_frame(ImageGeometry(spacing=(1.0, 1.0, 1.0), direction=tuple(diagonal.ravel()))), np.eye(3))


def test_a_rise_short_of_5_mm_is_never_printed_as_5_mm_beside_sd():
    """20.0256 -> 25.0056 mm (+4.98 mm, +24.87 %) read 'sum of diameters 20.0 -> 25.0 mm (+24.9 %); up by 5.0 mm,
    under the 5 mm PD needs': numbers that make PD beside SD (the printed-numbers audit). The same from a nadir,
    and for a target back at 4.97 mm after a nadir of 0 mm."""
    category, reason = recist_response(20.0256, 25.0056, False, 1, 1)
    assert category == "SD"
    assert reason == "sum of diameters 20.03 -> 25.01 mm (+24.9 %); up by 4.98 mm, under the 5 mm PD needs"
    category, reason = recist_response(30.0, 24.98, False, 1, 1, nadir_sum_mm=20.0)
    assert category == "SD"
    assert "nadir 20.00 mm" in reason and reason.endswith("up by 4.98 mm from the nadir, under the 5 mm PD needs")
    category, reason = recist_response(30.0, 4.97, False, 1, 1, nadir_sum_mm=0.0)
    assert category == "PR" and "up by 4.97 mm from the nadir" in reason
    category, reason = recist_response(30.0, 4.97, False, 1, 1, nadir_sum_mm=0.0, nadir_complete_response=True)
    assert category == "PD" and "(4.97 mm, under the 5 mm" in reason
    # away from the rules, a tenth of a millimetre as before
    assert recist_response(20.0, 30.0, False, 1, 1)[1] == "sum of diameters 20.0 -> 30.0 mm (+50.0 %)"


def test_change_places_keeps_each_rule_on_its_side():
    from LiverTumorSegLib.metrics.recist import change_places

    assert change_places(20.0, 30.0) == 1
    assert change_places(20.0256, 25.0056) == 2                 # +4.98 mm, not '+5.0'
    assert change_places(100.0, 119.97) == 2                    # +19.97 %, not '+20.0 %'
    assert change_places(100.0, 70.04) == 2                     # -29.96 %, not '-30.0 %'
    assert change_places(100.0, 120.0) == 1 and change_places(100.0, 70.0) == 1   # exactly on a rule: met
    assert change_places(20.03, 23.99, relative_rules=(0.2, -0.3), absolute_rise=None) == 2   # +19.8 %
    assert change_places(0.0, 4.0) == 1 and change_places(float("nan"), 4.0) == 1
