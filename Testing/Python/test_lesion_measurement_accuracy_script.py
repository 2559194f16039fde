"""The helpers of benchmarks/lesion_measurement_accuracy.py: the truth it computes (analytic volumes, its own lesion
measurement from a NIfTI affine, re-stored grids) and the checks it makes of a report. Small synthetic arrays only."""
import math

import numpy as np
import pytest

from script_helpers import load_script

LMA = load_script("benchmarks/lesion_measurement_accuracy.py", "lesion_measurement_accuracy_script")
LPS_STORED = np.array([[-0.8, 0, 0, 40.0], [0, -0.8, 0, 30.0], [0, 0, 2.0, -100.0], [0, 0, 0, 1]])
"""A voxel-to-RAS affine as SimpleITK writes an LPS-stored DICOM series: i runs to patient left (RAS x falls)."""


def test_truncated_ellipsoid_volume_and_centroid():
    a, b, c = 3.0, 4.0, 5.0
    full, z_full = LMA.truncated_ellipsoid((a, b, c), -10, 10)
    assert full == pytest.approx(4 / 3 * math.pi * a * b * c)
    assert z_full == pytest.approx(0.0)
    half, z_half = LMA.truncated_ellipsoid((a, b, c), 0, 10)
    assert half == pytest.approx(full / 2)
    assert z_half == pytest.approx(3 * c / 8)  # centroid of a half ellipsoid
    assert LMA.truncated_ellipsoid((a, b, c), 6, 9)[0] == 0.0


def test_signed_distance_is_exact_for_a_sphere_and_turns_with_the_angle():
    pts = np.array([[13.0, 0, 0], [10.0, 5.0, 0], [10.0, 0, 0]])
    rho, d = LMA.ellipsoid_signed_distance(pts, (10.0, 0, 0), (2.0, 2.0, 2.0))
    np.testing.assert_allclose(rho, [1.5, 2.5, 0.0])
    np.testing.assert_allclose(d[:2], [1.0, 3.0])
    assert d[2] < 0
    # an ellipsoid 2a = 10 along x, turned 90 degrees about S, reaches 5 mm along y and 1 mm along x
    rho, _ = LMA.ellipsoid_signed_distance(np.array([[0, 5.0, 0], [1.0, 0, 0]]), (0, 0, 0), (5.0, 1.0, 1.0), 90.0)
    np.testing.assert_allclose(rho, [1.0, 1.0])


def test_true_axes_use_the_slice_plane_nearest_the_centre():
    long_mm, short_mm, index = LMA.true_axes_on_slices((15.0, 7.5, 6.0), 1.0, [-4.0, -2.0, 0.0, 2.0, 4.0])
    f = math.sqrt(1 - (1.0 / 6.0) ** 2)
    assert index == 2  # a tie between 0 and 2 mm: the first
    assert long_mm == pytest.approx(30 * f)
    assert short_mm == pytest.approx(15 * f)


@pytest.mark.parametrize("storage", [("flip_k",), ("swap_ij",), ("swap_ij", "flip_k"), ("flip_i", "flip_j")])
def test_restore_order_keeps_every_voxel_at_its_ras_position(storage):
    data = np.arange(4 * 3 * 5).reshape(4, 3, 5)
    new, affine = LMA.restore_order(data, LPS_STORED, storage)
    def position(aff, ijk):
        return tuple(np.round(LMA.voxel_centres_ras(aff, [ijk])[0], 6))

    old_pos = {position(LPS_STORED, ijk): data[ijk] for ijk in np.ndindex(data.shape)}
    for ijk in np.ndindex(new.shape):
        assert old_pos[position(affine, ijk)] == new[ijk]


def test_rotation_about_s_keeps_the_slices_and_the_spacing():
    new, affine = LMA.restore_order(np.zeros((4, 3, 5)), LPS_STORED, ("rot_s_30",))
    np.testing.assert_allclose(np.linalg.norm(affine[:3, :3], axis=0), [0.8, 0.8, 2.0])
    np.testing.assert_allclose(affine[2], LPS_STORED[2])  # S of every voxel unchanged
    # i pointed to patient left (RAS -x, 180 degrees); turned by +30 degrees about S it points to -150 degrees
    np.testing.assert_allclose(math.degrees(math.atan2(affine[1, 0], affine[0, 0])), -150.0)


def _bar(shape, i_range, j_range, k_range):
    mask = np.zeros(shape, dtype=bool)
    mask[slice(*i_range), slice(*j_range), slice(*k_range)] = True
    return mask


def test_own_measurement_in_an_lps_stored_grid():
    """A bar of 10 x 1 pixels along i on 2 slices: i runs to patient left, so the centroid's RAS x falls with i."""
    mask = _bar((20, 12, 6), (4, 14), (2, 3), (2, 4))
    hu = np.where(mask, 30, 90).astype(np.int16)
    m = LMA.measure_mask(mask, LPS_STORED, hu)
    # mean index (8.5, 2, 2.5) -> RAS (40 - 0.8 * 8.5, 30 - 0.8 * 2, -100 + 2 * 2.5)
    np.testing.assert_allclose(m["centroid_ras_mm"], [33.2, 28.4, -95.0])
    np.testing.assert_allclose(m["centroid_lps_mm"], [-33.2, -28.4, -95.0])
    assert m["volume_ml"] == pytest.approx(20 * 0.8 * 0.8 * 2 / 1000)
    assert m["long_axis_mm"] == pytest.approx(10 * 0.8)  # 9 pixels between centres, plus one
    np.testing.assert_allclose(np.abs(m["long_dir_ras"]), [1.0, 0.0, 0.0], atol=1e-12)  # along RAS x
    assert m["short_axis_mm"] == pytest.approx(0.8)  # one pixel across
    assert m["mean_hu"] == 30.0 and not m["touches_scan_edge"]
    assert LMA.measure_mask(_bar((20, 12, 6), (4, 14), (2, 3), (0, 2)), LPS_STORED)["touches_scan_edge"]
    turned = LMA.measure_mask(np.swapaxes(mask, 0, 1), LPS_STORED)  # the same bar along j: along RAS y
    np.testing.assert_allclose(np.abs(turned["long_dir_ras"]), [0.0, 1.0, 0.0], atol=1e-12)


def test_own_measurement_agrees_with_the_library_report_on_a_small_mask():
    """The library's lesion report and this script's measurement of the same disc: equal to rounding, and the
    report passes the script's internal checks; a report with the LPS sign wrong is caught."""
    from LiverTumorSegLib.inference.lesion_report import lesion_report
    from LiverTumorSegLib.volume import ImageGeometry

    shape = (24, 24, 5)
    ii, jj = np.mgrid[0:24, 0:24]
    disc = ((ii - 11.3) ** 2 + ((jj - 12.6) * 1.0) ** 2 <= 6.2 ** 2)
    mask = np.zeros(shape, dtype=bool)
    mask[:, :, 1:4] = disc[:, :, None]
    mask[:, :, 1] &= ((ii - 11.3) ** 2 + (jj - 12.6) ** 2 <= 4.0 ** 2)
    labels_xyz = np.where(mask, 2, 1).astype(np.uint8)
    report = lesion_report(labels_xyz.T, ImageGeometry.from_ijk_to_ras(LPS_STORED))
    lesion = report["lesions"][0]
    mine = LMA.measure_mask(mask, LPS_STORED, None, lesion["long_axis"]["end_points_ras_mm"])
    assert lesion["volume_ml"] == pytest.approx(mine["volume_ml"])
    np.testing.assert_allclose(lesion["centroid_ras_mm"], mine["centroid_ras_mm"], atol=1e-9)
    np.testing.assert_allclose(lesion["centroid_lps_mm"], mine["centroid_lps_mm"], atol=1e-9)
    assert lesion["long_axis_mm"] == pytest.approx(mine["long_axis_mm"])
    assert lesion["short_axis_mm"] == pytest.approx(mine["short_axis_mm"])
    assert LMA.report_consistency(report, LPS_STORED, shape) == []
    lesion["centroid_lps_mm"] = list(lesion["centroid_ras_mm"])  # the RAS numbers written as LPS
    problems = LMA.report_consistency(report, LPS_STORED, shape)
    assert len(problems) == 1 and "is not RAS" in problems[0]


def test_cli_refuses_unknown_scenarios_and_a_non_empty_work_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        LMA.main(["--scenarios", "nope", "--data", str(tmp_path)])
    assert exc.value.code == 2 and "unknown ['nope']" in capsys.readouterr().err
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "keep.txt").write_text("x")
    for scenario in LMA.SCENARIOS.values():
        for name in (scenario.ct, scenario.label):
            (tmp_path / name).write_bytes(b"")
    with pytest.raises(SystemExit) as exc:
        LMA.main(["--data", str(tmp_path), "--work", str(tmp_path / "work")])
    assert exc.value.code == 2 and "is not empty" in capsys.readouterr().err
    assert (tmp_path / "work" / "keep.txt").read_text() == "x"


def test_tumor_threshold_sweep_counts_the_voxels_above_each_threshold():
    truth = np.zeros((4, 4, 4), bool)
    truth[1:3, 1:3, 1:3] = True                       # 8 voxels
    prob = np.zeros((4, 4, 4), np.uint8)
    prob[truth] = 230                                 # 0.90
    prob[0, 1:3, 1:3] = 166                           # 4 voxels at 0.65, outside the truth
    rows = LMA.tumor_threshold_sweep(prob, truth, thresholds=(0.5, 0.7, 0.95))
    assert [r["threshold"] for r in rows] == [0.5, 0.7, 0.95]
    assert rows[0]["volume_ratio"] == pytest.approx(12 / 8) and rows[0]["dice"] == pytest.approx(16 / 20)
    assert rows[1]["volume_ratio"] == pytest.approx(1.0) and rows[1]["dice"] == pytest.approx(1.0)
    assert rows[2]["volume_ratio"] == 0.0 and rows[2]["dice"] == 0.0


def test_the_sweep_reads_segment_s_probability_map_as_stored_255_x_p(tmp_path):
    """segment's NIfTI probability map gained scl_slope 1/255 (27 Nov 2026); the script read nibabel's scaled dataobj
    (0..1) and divided it by 255 again, so its sweep printed 0.00 volume and Dice 0.000 at every threshold."""
    from LiverTumorSegLib.io.writers import write_probability_map
    from LiverTumorSegLib.volume import ImageGeometry

    truth = np.zeros((4, 4, 4), bool)
    truth[1:3, 1:3, 1:3] = True
    prob = np.where(truth, 230, 0).astype(np.uint8)  # 0.90 on the 8 truth voxels
    path = write_probability_map(tmp_path / "prob.nii.gz", prob, ImageGeometry(spacing=(1.0, 1.0, 1.0)))
    stored = LMA.read_probability_u8(path)
    assert stored.dtype == np.uint8 and int(stored.max()) == 230
    row, = LMA.tumor_threshold_sweep(stored, truth, thresholds=(0.6,))  # a cube: the same in either axis order
    assert row["volume_ratio"] == pytest.approx(1.0) and row["dice"] == pytest.approx(1.0)


def test_the_target_check_takes_a_lesion_of_water_density_last():
    """Since 0.2.0 the lesion report chooses a lesion of water density as a RECIST target only after the others; the
    script's check still expected the longest first, so README's fresh-clone run (sm_3mm, whose inserted lesions of
    -9..+5 HU are of water density) listed 'RECIST targets [4, 2], expected [2, 4]' as a measurement discrepancy."""
    from LiverTumorSegLib.inference.lesion_report import lesion_report
    from LiverTumorSegLib.volume import ImageGeometry

    rng = np.random.default_rng(0)
    shape = (48, 48, 12)  # (x, y, z) voxels of LPS_STORED: 0.8 mm pixels, 2 mm slices
    ii, jj, kk = np.mgrid[0:48, 0:48, 0:12]
    labels = np.zeros(shape, np.uint8)
    labels[2:-2, 2:-2, 1:-1] = 1
    hu = np.where(labels == 1, 60.0, -100.0)
    for (ci, cj, ck), radius_px, value in (((14, 14, 6), 9, 5.0), ((34, 34, 6), 8, 40.0)):  # a cyst, a solid tumor
        ball = (ii - ci) ** 2 + (jj - cj) ** 2 + ((kk - ck) * 2.5) ** 2 <= radius_px ** 2
        labels[ball], hu[ball] = 2, value
    hu = hu + rng.normal(0.0, 10.0, shape)
    report = lesion_report(labels.T, ImageGeometry.from_ijk_to_ras(LPS_STORED), hu.T.astype(np.float32))
    cyst, solid = report["lesions"]
    assert cyst["water_density"] and not solid["water_density"] and cyst["long_axis_mm"] > solid["long_axis_mm"] > 10
    assert report["recist"]["target_lesion_ids"] == [solid["id"], cyst["id"]]
    assert LMA.report_consistency(report, LPS_STORED, shape) == []
    report["recist"]["target_lesion_ids"] = [cyst["id"], solid["id"]]  # the long axis alone: now a discrepancy
    assert any("RECIST targets" in p for p in LMA.report_consistency(report, LPS_STORED, shape))


def _axis_row():
    """sm_3mm's ellipsoid_x_30x15x15 (the audit's run): the report's short axis 18.28 mm, the predicted mask
    re-measured across the report's long axis 18.28 mm, across the script's own long axis 15.37 mm."""
    truth = {"long_grid_mm": 29.6, "long_continuous_mm": 30.0, "short_grid_mm": 14.8, "short_continuous_mm": 15.0,
             "long_dir_ras": [1.0, 0.0, 0.0]}
    report = {"long_axis_mm": 27.74, "short_axis_mm": 18.28,
              "long_axis": {"end_points_ras_mm": [[0.0, 0.0, 0.0], [27.0, 0.0, 0.0]]}}
    remeasured = {"long_axis_mm": 27.74, "short_axis_mm": 15.37, "short_axis_across_report_long_mm": 18.28}
    return {"lesion": "ellipsoid_x_30x15x15", "truth": truth, "measure_on_truth_mask": {"long_axis_mm": 30.17,
            "short_axis_mm": 14.93}, "segment_report": report, "remeasured_prediction": remeasured}


def test_the_axis_table_prints_the_re_measured_short_axis_that_the_check_compares():
    """The table printed the script's own short axis (15.37 mm) while the check compared the report with the one
    across the report's long axis (18.28 mm), unprinted, and said 'discrepancies: none'."""
    row = _axis_row()
    head, columns, line = LMA.axis_table([row])
    assert "across the segment report's own long axis" in head and "remeas x seg" in columns
    short_cells = line.split("|")[1].split()
    assert short_cells[-1] == "18.28" and "15.37" not in line  # truth, meas, seg, re-measured across seg's axis
    # the value printed is the value checked: no discrepancy when it equals the report's, one when it does not
    t = dict(row["truth"], centroid_analytic_ras_mm=[0, 0, 0])
    rm = dict(row["remeasured_prediction"], centroid_ras_mm=[0, 0, 0], centroid_lps_mm=[0, 0, 0], volume_ml=1.0,
              touches_scan_edge=False, slice_longest_mm={0.0: 1.0})
    rep = dict(row["segment_report"], volume_ml=1.0, centroid_ras_mm=[0, 0, 0], centroid_lps_mm=[0, 0, 0],
               touches_scan_edge=False, axial_position_s_mm=0.0, longest_axial_diameter_mm=1.0)
    out = []
    LMA._compare_measured(out, "x", rep, rm, t, 3.0, np.array([3.0, 3.0, 3.0]))
    assert not [o for o in out if "short_axis" in o]
    assert LMA.remeasured_short_axis(rm) == 18.28
    assert LMA.remeasured_short_axis({"short_axis_mm": 15.37}) == 15.37  # no report lesion: the script's own
    assert LMA.remeasured_short_axis(None) is None


def test_the_summary_labels_dice_as_a_dice_not_a_difference():
    """'segment dice +0.85 [...]' stood under the '(reported - truth)' heading."""
    truth = {"volume_mask_ml": 2.0, "volume_analytic_ml": 2.0, "long_grid_mm": 10.0, "short_grid_mm": 5.0,
             "centroid_analytic_ras_mm": [0.0, 0.0, 0.0]}
    lesion = {"volume_ml": 2.0, "long_axis_mm": 11.0, "short_axis_mm": 5.0, "centroid_ras_mm": [0.0, 0.0, 0.0]}
    results = [{"rows": [{"truth": truth, "measure_on_truth_mask": lesion, "segment_report": lesion, "dice": 0.85},
                         {"truth": truth, "measure_on_truth_mask": lesion, "segment_report": lesion, "dice": 0.75}]}]
    lines = LMA.summary_lines(results)
    dice_lines = [line for line in lines if "Dice" in line]
    assert len(dice_lines) == 1 and "0.800 [0.750..0.850]" in dice_lines[0] and "not reported - truth" in dice_lines[0]
    assert not [line for line in lines if "+0.80" in line]
    assert any("long_mm" in line and "+1.00" in line for line in lines)
