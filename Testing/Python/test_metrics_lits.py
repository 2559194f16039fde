"""LiTS label-map evaluation, lesion detection, tumor burden, global Dice and the report writers."""
import json
import math

import numpy as np
import pytest
from evaluate_helpers import two_lesion_maps, write_evaluate_folders

from LiverTumorSegLib.errors import LabelError, OutputExistsError
from LiverTumorSegLib.metrics import lits, report
from LiverTumorSegLib.phantom import make_phantom


def ball(shape, center, radius):
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    return (z - center[0]) ** 2 + (y - center[1]) ** 2 + (x - center[2]) ** 2 <= radius ** 2


SHAPE = (30, 60, 60)


def lesion_phantom():
    """Reference lesions A (missed), B (split in two by the prediction), C (found); one extra predicted
    lesion D (false positive). Returns (pred_labels, ref_labels)."""
    ref = np.zeros(SHAPE, np.uint8)
    ref[2:28, 5:55, 5:55] = 1
    pred = ref.copy()
    a, b, c = ball(SHAPE, (15, 15, 15), 4), ball(SHAPE, (15, 15, 40), 4), ball(SHAPE, (15, 40, 25), 4)
    d = ball(SHAPE, (15, 45, 45), 3)
    for lesion in (a, b, c):
        ref[lesion] = 2
    b_split = b.copy()
    b_split[:, :, 40] = False          # one-voxel gap: two 26-disconnected halves
    pred[b_split | c | d] = 2
    return pred, ref


def test_lesion_detection_missed_split_and_false_positive():
    pred, ref = lesion_phantom()
    result = lits.detect_lesions(pred == 2, ref == 2)
    assert (result.ref_lesions, result.pred_lesions) == (3, 4)
    assert (result.detected, result.missed, result.false_positive) == (2, 1, 1)
    assert result.precision == pytest.approx(2 / 3) and result.recall == pytest.approx(2 / 3)
    by_center = {lesion["id"]: lesion for lesion in result.lesions}
    assert sum(1 for lesion in by_center.values() if not lesion["detected"]) == 1


def test_split_halves_alone_fail_the_iou_test_but_merged_pass():
    _, ref = lesion_phantom()
    b = ball(SHAPE, (15, 15, 40), 4)
    half = b.copy()
    half[:, :, 40:] = False
    assert np.count_nonzero(half) / np.count_nonzero(b) < 0.5    # one half alone would not be detected
    pred_halves = b.copy()
    pred_halves[:, :, 40] = False
    result = lits.detect_lesions(pred_halves, b)
    assert (result.detected, result.false_positive, result.pred_lesions) == (1, 0, 2)
    assert result.lesions[0]["iou"] == pytest.approx(np.count_nonzero(pred_halves) / np.count_nonzero(b))


def test_one_prediction_spanning_two_reference_lesions_detects_both():
    ref = np.zeros((9, 9, 13), bool)
    ref[3:6, 3:6, 2:5] = True
    ref[3:6, 3:6, 6:9] = True           # gap at x = 5
    pred = np.zeros_like(ref)
    pred[3:6, 3:6, 2:9] = True          # 63 voxels, 54 overlapping
    result = lits.detect_lesions(pred, ref)
    assert (result.ref_lesions, result.pred_lesions, result.detected, result.false_positive) == (2, 1, 2, 0)
    assert result.lesions[0]["iou"] == pytest.approx(54 / 63)


def test_lits_script_counting_one_hit_per_detected_group():
    """The LiTS challenge script: TP = detected groups, FP = predicted - TP, FN = reference - TP. Split (1 ref,
    2 pred pieces): 1 hit, 1 FP, 0 FN; merge (2 refs, 1 pred): 1 hit, 0 FP, 1 FN; pooled P = R = 2/3, where
    evaluate's own counting gives 1.0 and 1.0."""
    b = ball(SHAPE, (15, 15, 40), 4)
    split_pred = b.copy()
    split_pred[:, :, 40] = False
    split = lits.detect_lesions(split_pred, b, connectivity=6)
    assert (split.detected_groups, split.pred_lesions, split.ref_lesions) == (1, 2, 1)
    ref = np.zeros((9, 9, 13), bool)
    ref[3:6, 3:6, 2:5] = True
    ref[3:6, 3:6, 6:9] = True
    merge_pred = np.zeros_like(ref)
    merge_pred[3:6, 3:6, 2:9] = True
    merge = lits.detect_lesions(merge_pred, ref, connectivity=6)
    assert (merge.detected_groups, merge.pred_lesions, merge.ref_lesions) == (1, 1, 2)
    rows = []
    for name, pred, truth in (("split", split_pred, b), ("merge", merge_pred, ref)):
        liver = np.ones(truth.shape, np.uint8)
        rows.append(lits.evaluate_case(np.where(pred, 2, liver), np.where(truth, 2, liver), (1.0, 1.0, 1.0), name,
                                       surface=False, connectivity=6))
    assert [row["lesions_detected_groups"] for row in rows] == [1, 1]
    detection = report.summarize_cases(rows)["lesion_detection"]
    assert (detection["precision"], detection["recall"]) == (1.0, 1.0)
    assert detection["lits_script"] == {"detected": 2, "false_positive": 1, "missed": 1,
                                        "precision": pytest.approx(2 / 3), "recall": pytest.approx(2 / 3)}
    undetected = lits.detect_lesions(np.zeros_like(ref), ref)
    assert undetected.detected_groups == 0
    del rows[0]["lesions_detected_groups"]    # a table written before the column: unknown, not 0
    assert report.summarize_cases(rows)["lesion_detection"]["lits_script"] is None


def test_18_connectivity_joins_lesions_across_an_edge_but_not_a_corner():
    """evaluate --connectivity 18: faces and edges join voxels, corners do not (it counted as 26 unnoticed)."""
    edge = np.zeros((3, 3, 3), bool)
    edge[0, 0, 0] = edge[1, 1, 0] = True      # share an edge: 18- and 26-connected, not 6-connected
    corner = np.zeros((3, 3, 3), bool)
    corner[0, 0, 0] = corner[1, 1, 1] = True  # share a corner only: 26-connected alone
    assert [lits.detect_lesions(edge, edge, connectivity=c).ref_lesions for c in (6, 18, 26)] == [2, 1, 1]
    assert [lits.detect_lesions(corner, corner, connectivity=c).ref_lesions for c in (6, 18, 26)] == [2, 2, 1]


def test_weak_overlap_is_a_miss_and_a_false_positive_and_threshold_is_configurable():
    ref = ball((20, 20, 20), (10, 10, 10), 2)
    pred = np.zeros_like(ref)
    pred[4:17, 4:17, 4:17] = True       # swallows the lesion: IoU 33/2197
    result = lits.detect_lesions(pred, ref)
    assert (result.detected, result.missed, result.false_positive) == (0, 1, 1)
    assert lits.detect_lesions(pred, ref, iou_threshold=0.01).detected == 1
    with pytest.raises(ValueError, match=r"iou_threshold must be in \[0, 1\), got 1.0"):
        lits.detect_lesions(pred, ref, iou_threshold=1.0)


def test_connectivity_changes_lesion_count():
    mask = np.zeros((3, 3, 3), bool)
    mask[0, 0, 0] = mask[1, 1, 1] = True      # corner-touching voxels
    assert lits.detect_lesions(mask, mask, connectivity=26).ref_lesions == 1
    assert lits.detect_lesions(mask, mask, connectivity=6).ref_lesions == 2
    with pytest.raises(ValueError, match="connectivity must be one of .* got 5"):
        lits.detect_lesions(mask, mask, connectivity=5)
    with pytest.raises(ValueError, match=r"pred shape \(3, 3, 3\) differs from ref shape \(2, 3, 3\)"):
        lits.detect_lesions(mask, mask[:-1])


def test_no_lesions_anywhere_is_perfect():
    empty = np.zeros((4, 4, 4), bool)
    result = lits.detect_lesions(empty, empty)
    assert (result.ref_lesions, result.pred_lesions, result.detected) == (0, 0, 0)
    assert result.precision == 1.0 and result.recall == 1.0
    fp_only = lits.detect_lesions(ball((9, 9, 9), (4, 4, 4), 1), np.zeros((9, 9, 9), bool))
    assert fp_only.false_positive == 1 and fp_only.precision == 0.0 and math.isnan(fp_only.recall)


def test_structure_masks_follow_lits():
    labels = np.array([[[0, 1, 2]]], np.uint8)
    assert lits.structure_mask(labels, "liver").tolist() == [[[False, True, True]]]
    assert lits.structure_mask(labels, "tumor").tolist() == [[[False, False, True]]]
    with pytest.raises(ValueError, match="unknown structure 'kidney'"):
        lits.structure_mask(labels, "kidney")


def test_tumor_burden_hand_computed():
    labels = np.zeros((2, 2, 5), np.uint8)
    labels[0, 0, :4] = 1
    labels[0, 0, 4] = 2                      # 1 tumor voxel of 5 liver voxels
    assert lits.tumor_burden(labels) == pytest.approx(0.2)
    assert lits.tumor_burden(np.zeros((2, 2, 2), np.uint8)) == 0.0   # no liver, so no tumor


def test_burden_error_of_a_prediction_without_liver_counts_in_the_rmse():
    ref = np.zeros((4, 6, 6), np.uint8)
    ref[1:3, 1:5, 1:5] = 1
    ref[1, 1:3, 1:3] = 2                     # 4 tumor voxels of 32 liver voxels: burden 0.125
    row = lits.evaluate_case(np.zeros_like(ref), ref, (1.0, 1.0, 1.0), surface=False)
    assert row["tumor_burden_error"] == pytest.approx(-0.125)
    burden = report.summarize_cases([row])["tumor_burden"]
    assert (burden["n"], burden["n_nan"]) == (1, 0) and burden["rmse"] == pytest.approx(0.125)


def test_evaluate_case_keys_values_and_spacing():
    pred, ref = lesion_phantom()
    row = lits.evaluate_case(pred, ref, (2.0, 1.0, 1.0), case="p1")
    assert list(row)[0] == "case" and row["case"] == "p1"
    for key in ("dice_liver", "dice_tumor", "assd_liver_mm", "hd95_liver_mm", "hd_tumor_mm", "rmsd_tumor_mm",
                "volume_ref_tumor_ml", "voxels_tp_tumor", "lesions_detected", "tumor_burden_error"):
        assert key in row
    assert row["dice_liver"] == 1.0 and row["hd_liver_mm"] == 0.0
    tp = np.count_nonzero((pred == 2) & (ref == 2))
    assert row["dice_tumor"] == pytest.approx(2 * tp / (np.count_nonzero(pred == 2) + np.count_nonzero(ref == 2)))
    assert row["volume_ref_tumor_ml"] == pytest.approx(np.count_nonzero(ref == 2) * 2.0 / 1000)
    assert (row["lesions_detected"], row["lesions_missed"], row["lesions_false_positive"]) == (2, 1, 1)
    assert row["tumor_burden_error"] == pytest.approx(lits.tumor_burden(pred) - lits.tumor_burden(ref))
    fast = lits.evaluate_case(pred, ref, (2.0, 1.0, 1.0), surface=False)
    assert "assd_liver_mm" not in fast and fast["dice_tumor"] == row["dice_tumor"]


def test_evaluate_case_with_probabilities_and_phantom_identity():
    phantom = make_phantom(shape_zyx=(16, 48, 48), seed=1)
    labels = phantom.labels
    prob = (labels == 2).astype(np.float32) * 0.9 + 0.05
    row = lits.evaluate_case(labels, labels, phantom.ct.spacing_zyx, probabilities=prob)
    assert row["roc_auc_tumor"] == 1.0 and row["dice_tumor"] == 1.0
    assert row["lesions_detected"] == row["lesions_ref"] == len([l for l in phantom.lesions if l.voxel_count])
    with pytest.raises(LabelError):
        lits.evaluate_case(labels, labels, phantom.ct.spacing_zyx, probabilities=prob[:-1])


def test_evaluate_case_rejects_bad_labels_and_shapes():
    ok = np.zeros((3, 3, 3), np.uint8)
    with pytest.raises(LabelError):
        lits.evaluate_case(ok + 3, ok, (1, 1, 1))
    with pytest.raises(LabelError):
        lits.evaluate_case(ok[:-1], ok, (1, 1, 1))


def test_check_same_grid():
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    a = CTVolume(np.zeros((2, 3, 4), np.uint8), ImageGeometry(spacing=(1, 1, 2)))
    lits.check_same_grid(a, a)
    with pytest.raises(LabelError):
        lits.check_same_grid(a, CTVolume(np.zeros((2, 3, 5), np.uint8), a.geometry))
    with pytest.raises(LabelError):
        lits.check_same_grid(a, CTVolume(a.array, ImageGeometry(spacing=(1, 1, 2), origin=(0, 5, 0))))


# ------------------------------------------------------------------------------------------------ report
def two_rows():
    return [
        {"case": "a", "dice_tumor": 0.5, "assd_tumor_mm": 2.0, "voxels_tp_tumor": 10, "voxels_pred_tumor": 10,
         "voxels_ref_tumor": 30, "voxels_tp_liver": 90, "voxels_pred_liver": 100, "voxels_ref_liver": 100,
         "lesions_ref": 3, "lesions_pred": 4, "lesions_detected": 2, "lesions_missed": 1,
         "lesions_false_positive": 1, "tumor_burden_error": 0.1},
        {"case": "b", "dice_tumor": 1.0, "assd_tumor_mm": float("nan"), "voxels_tp_tumor": 0,
         "voxels_pred_tumor": 0, "voxels_ref_tumor": 0, "voxels_tp_liver": 50, "voxels_pred_liver": 50,
         "voxels_ref_liver": 50, "lesions_ref": 1, "lesions_pred": 0, "lesions_detected": 0, "lesions_missed": 1,
         "lesions_false_positive": 0, "tumor_burden_error": -0.3},
    ]


def test_summarize_cases_hand_computed():
    summary = report.summarize_cases(two_rows())
    assert summary["n_cases"] == 2
    dice = summary["metrics"]["dice_tumor"]
    assert dice["mean"] == pytest.approx(0.75) and dice["median"] == pytest.approx(0.75)
    assert dice["std"] == pytest.approx(np.std([0.5, 1.0], ddof=1)) and dice["n"] == 2 and dice["n_nan"] == 0
    assd = summary["metrics"]["assd_tumor_mm"]
    assert assd["mean"] == 2.0 and assd["n"] == 1 and assd["n_nan"] == 1 and assd["std"] is None  # one value: no spread
    assert "voxels_tp_tumor" not in summary["metrics"]
    # global Dice pools voxels: tumor 2*10 / (10 + 30) = 0.5 (per-case mean is 0.75)
    assert summary["global_dice"]["tumor"] == pytest.approx(0.5)
    assert summary["global_dice"]["liver"] == pytest.approx(2 * 140 / 300)
    det = summary["lesion_detection"]
    assert (det["detected"], det["missed"], det["false_positive"]) == (2, 2, 1)
    assert det["precision"] == pytest.approx(2 / 3) and det["recall"] == pytest.approx(0.5)
    burden = summary["tumor_burden"]
    assert burden["rmse"] == pytest.approx(math.sqrt((0.01 + 0.09) / 2)) and burden["max_abs_error"] == 0.3
    json.dumps(summary, allow_nan=False)   # JSON-ready: no NaN left


def test_global_dice_empty_inputs():
    assert math.isnan(lits.global_dice([], "tumor"))
    rows = [{"voxels_tp_tumor": 0, "voxels_pred_tumor": 0, "voxels_ref_tumor": 0}]
    assert lits.global_dice(rows, "tumor") == 1.0


def test_case_table_round_trip_and_overwrite(tmp_path):
    rows = two_rows()
    rows[1]["extra_column"] = 7
    path = report.write_case_table(rows, tmp_path / "cases.csv")
    header = path.read_text().splitlines()[0].split(",")
    assert header[0] == "case" and header[-1] == "extra_column"
    back = report.read_case_table(path)
    assert back[0]["case"] == "a" and back[0]["dice_tumor"] == 0.5 and back[0]["extra_column"] is None
    assert math.isnan(back[1]["assd_tumor_mm"]) and back[1]["extra_column"] == 7.0
    assert report.summarize_cases(back)["global_dice"]["tumor"] == pytest.approx(0.5)
    with pytest.raises(OutputExistsError):
        report.write_case_table(rows, path)
    report.write_case_table(rows[:1], path, overwrite=True)
    assert len(report.read_case_table(path)) == 1


def test_write_json_replaces_nan(tmp_path):
    path = report.write_json({"a": float("nan"), "b": [np.float32(1.5), np.int64(2)], "c": float("inf")},
                             tmp_path / "s.json")
    assert json.loads(path.read_text()) == {"a": None, "b": [1.5, 2], "c": None}


def test_rank_cases_direction():
    rows = [{"case": "x", "dice_liver": 0.9, "assd_liver_mm": 3.0},
            {"case": "y", "dice_liver": 0.7, "assd_liver_mm": 1.0},
            {"case": "z", "dice_liver": float("nan"), "assd_liver_mm": float("nan")}]
    assert report.rank_cases(rows, "dice_liver") == ("x", "y")
    assert report.rank_cases(rows, "assd_liver_mm") == ("y", "x")
    assert report.rank_cases(rows, "missing") == (None, None)


def is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_write_pngs(tmp_path):
    from LiverTumorSegLib.metrics.roc import roc_curve

    pred, ref = lesion_phantom()
    rows = [lits.evaluate_case(pred, ref, (1, 1, 1), case="p", surface=False), two_rows()[0]]
    box = report.plot_metric_boxplots(rows, tmp_path / "box.png")
    assert box is not None and is_png(box)
    assert report.plot_metric_boxplots(rows, tmp_path / "none.png", metrics=["nothing"]) is None
    curve = roc_curve(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    assert is_png(report.plot_roc_curve(curve, tmp_path / "roc.png"))
    image = np.full(SHAPE, 40, np.int16)
    assert is_png(report.plot_case_overlay(pred, ref, tmp_path / "ov.png", image=image, title="t"))
    assert is_png(report.plot_case_overlay(pred, ref, tmp_path / "ov2.png"))


def test_metric_hints():
    assert report.metric_hint("dice_liver") == "1 = perfect overlap"
    assert report.metric_hint("hd95_tumor_mm") == "mm, 0 = perfect"
    assert report.metric_hint("hd_tumor_mm") == "mm, 0 = perfect"
    assert report.metric_hint("lesions_ref") == ""


def test_whole_tumor_mask_metrics_are_labelled_as_such():
    """Tumor VOE, RVD, ASSD, HD, HD95 and RMSD are of the case's whole tumor mask, where LiTS averages them over
    detected lesions; the box plots, evaluate's help and summary.json's settings say so (nothing did)."""
    from LiverTumorSegLib.cli import build_parser

    note = "per case, whole tumor mask (not LiTS's per-lesion average)"
    for column in ("voe_tumor", "rvd_tumor", "assd_tumor_mm", "hd_tumor_mm", "hd95_tumor_mm", "rmsd_tumor_mm"):
        assert report.metric_scope(column) == note
    for column in ("dice_tumor", "assd_liver_mm", "lesions_ref"):
        assert report.metric_scope(column) == ""
    assert "not LiTS's per-lesion average" in lits.structure_row.__doc__
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["evaluate"].format_help().split())
    assert "are per case, of the whole tumor mask: not LiTS's per-lesion average" in help_text


def test_summary_json_settings_say_what_the_tumor_surface_metrics_are_computed_on(tmp_path):
    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.phantom import make_phantom

    phantom = make_phantom(shape_zyx=(8, 24, 24), seed=0)
    write_evaluate_folders(tmp_path, {"a": phantom.labels}, phantom.ct.geometry)
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "-o",
                 str(tmp_path / "out"), "--no-plots", "--no-progress"]) == 0
    settings = json.loads((tmp_path / "out" / "summary.json").read_text())["settings"]
    assert settings["tumor_voe_rvd_surface_distances"] == {
        "columns": ["voe_tumor", "rvd_tumor", "assd_tumor_mm", "hd_tumor_mm", "hd95_tumor_mm", "rmsd_tumor_mm"],
        "computed_on": "per case, whole tumor mask (not LiTS's per-lesion average)"}
    assert "18-connected" in settings["surface"]


def test_overlay_slice_prefers_tumor():
    labels = np.zeros((5, 4, 4), np.uint8)
    labels[1] = 1
    labels[3, :2, :2] = 2
    assert report.overlay_slice_index(labels, labels) == 3
    labels[3] = 0
    assert report.overlay_slice_index(labels, np.zeros_like(labels)) == 1
    assert report.overlay_slice_index(np.zeros_like(labels), np.zeros_like(labels)) == 2


def test_evaluate_case_refuses_what_it_cannot_score_in_its_own_words():
    import numpy as np
    import pytest

    from LiverTumorSegLib.errors import LabelError
    from LiverTumorSegLib.metrics.lits import evaluate_case

    ref = np.zeros((4, 6, 6), dtype=np.uint8)
    ref[1:3, 1:5, 1:5] = 1
    fractional = ref.astype(np.float32) * 0.4                     # 0.4 counted as background, 1.5 as liver
    with pytest.raises(LabelError, match="label values"):
        evaluate_case(fractional, ref, (2.0, 1.0, 1.0))
    with pytest.raises(LabelError, match="3-D"):
        evaluate_case(ref[0], ref[0], (1.0, 1.0))                  # was: "connectivity ... for 2-D masks"
    for spacing in (1.0, (1.0, 1.0), (2.0, -1.0, 1.0)):           # a scalar was a TypeError from deep inside
        with pytest.raises(LabelError, match="positive"):
            evaluate_case(ref, ref, spacing, surface=False)
    assert evaluate_case(ref.astype(np.float64), ref, (2.0, 1.0, 1.0), surface=False)["dice_liver"] == 1.0


def test_lesions_sharing_no_voxel_and_volume_outside_the_reference_by_hand():
    """The numbers a held-out test quotes: D shares no voxel with a reference lesion (counted); E overlaps the
    missed reference lesion A weakly (a LiTS false positive, but it touches a real lesion: not counted); a
    3-voxel-thick slab of liver beyond the reference liver is 26 x 3 x 50 voxels of 2 mm^3 = 7.8 mL."""
    pred, ref = lesion_phantom()
    e = ball(SHAPE, (15, 15, 21), 4)
    assert (e & (ref == 2)).sum() > 0 and not (e & (pred == 2)).any()
    pred[e] = 2
    pred[2:28, 55:58, 5:55] = 1
    row = lits.evaluate_case(pred, ref, (2.0, 1.0, 1.0), case="p1", surface=False)
    assert row["lesions_false_positive"] == 2 and row["lesions_pred_no_overlap"] == 1
    assert row["volume_outside_ref_liver_ml"] == pytest.approx(26 * 3 * 50 * 2.0 / 1000)
    outside_tumor = np.count_nonzero((pred == 2) & (ref != 2))
    assert row["volume_outside_ref_tumor_ml"] == pytest.approx(outside_tumor * 2.0 / 1000)
    perfect = lits.evaluate_case(ref, ref, (2.0, 1.0, 1.0), case="p2", surface=False)
    assert perfect["lesions_pred_no_overlap"] == 0 and perfect["volume_outside_ref_liver_ml"] == 0.0
    no_reference = lits.evaluate_case(pred, np.where(ref == 2, 1, ref).astype(np.uint8), (2.0, 1.0, 1.0))
    assert no_reference["lesions_pred_no_overlap"] == no_reference["lesions_pred"] == 5  # b's halves, c, d, e

    summary = report.summarize_cases([row, perfect])
    assert summary["lesion_detection"]["pred_no_overlap"] == 1
    assert summary["volume_outside_ref_total_ml"]["liver"] == pytest.approx(7.8)
    from LiverTumorSegLib.commands.evaluate import held_out_lines

    first, second = held_out_lines(summary)
    mean = summary["metrics"]["dice_liver"]["mean"]
    assert f"liver Dice mean {mean:.4f}, worst case {row['dice_liver']:.4f}" in first
    assert "1 predicted lesion(s) sharing no voxel with a reference lesion; 7.8 mL labelled liver outside" in second
    assert held_out_lines({"metrics": {}}) == []


def test_error_volumes_and_counts_rank_lower_as_better_and_old_tables_say_unknown():
    rows = [{"case": "clean", "volume_outside_ref_liver_ml": 0.0, "lesions_pred_no_overlap": 0, "lesions_ref": 1,
             "lesions_pred": 1, "lesions_detected": 1, "lesions_missed": 0, "lesions_false_positive": 0},
            {"case": "leaky", "volume_outside_ref_liver_ml": 98.0, "lesions_pred_no_overlap": 4, "lesions_ref": 1,
             "lesions_pred": 5, "lesions_detected": 1, "lesions_missed": 0, "lesions_false_positive": 4}]
    for metric in ("volume_outside_ref_liver_ml", "lesions_pred_no_overlap", "lesions_false_positive"):
        assert report.rank_cases(rows, metric) == ("clean", "leaky"), metric
    assert report.summarize_cases(rows)["lesion_detection"]["pred_no_overlap"] == 4
    old = [{k: v for k, v in row.items() if k != "lesions_pred_no_overlap"} for row in rows]
    assert report.summarize_cases(old)["lesion_detection"]["pred_no_overlap"] is None  # unknown, not 0


def test_a_model_that_misses_every_tumor_gets_no_tumor_surface_mean():
    """One case whose only tumor is missed (surface distances NaN) and one tumor-free case: the tumor ASSD and
    HD95 means were 0.0 mm, from the tumor-free case's two empty masks; now there is no mean to print."""
    liver = np.zeros((8, 20, 20), np.uint8)
    liver[2:6, 4:16, 4:16] = 1
    with_tumor = liver.copy()
    with_tumor[3:5, 8:12, 8:12] = 2
    rows = [lits.evaluate_case(liver, with_tumor, (2.0, 1.0, 1.0), case="missed"),
            lits.evaluate_case(liver, liver, (2.0, 1.0, 1.0), case="tumor-free")]
    summary = report.summarize_cases(rows)
    for column in ("assd_tumor_mm", "hd95_tumor_mm"):
        assert summary["metrics"][column]["mean"] is None
        assert summary["metrics"][column]["n"] == 0 and summary["metrics"][column]["n_nan"] == 2
    assert summary["metrics"]["hd95_liver_mm"]["mean"] == 0.0  # the liver, in both, is still measured


MEMORY_GRID = (40, 64, 64)


def _memory_case(name):
    """``(pred, ref)`` 0/1/2 maps on :data:`MEMORY_GRID` (z, y, x): the worst cases of each part of the metrics and a
    liver of a small box."""
    ref = np.zeros(MEMORY_GRID, np.uint8)
    if name == "whole_grid_tumors_in_opposite_corners":  # surface distances and lesion labelling over the whole grid
        ref[:] = 1
        pred = ref.copy()
        ref[:2, :2, :2] = 2
        pred[-2:, -2:, -2:] = 2
    elif name == "tumor_filling_the_grid":  # every voxel a lesion voxel of both maps
        ref[:] = 2
        pred = ref.copy()
        pred[0] = 0
    elif name == "thin_slab_liver":  # nearly every liver voxel a surface voxel
        ref[18:21] = 1
        pred = np.roll(ref, 1, axis=0)
    else:  # "small_liver_box": a liver box of 20 x 24 x 24 voxels (a tenth of the grid)
        ref[10:30, 20:44, 20:44] = 1
        ref[14:18, 24:28, 24:28] = 2
        pred = np.roll(ref, 1, axis=2)
    return pred, ref


def _metrics_peak_bytes(pred, ref, surface, probabilities):
    """tracemalloc peak of one case's metrics as ``evaluate`` runs them: evaluate_case, then the ROC."""
    import tracemalloc

    from LiverTumorSegLib.metrics.roc import RocAccumulator

    def run():
        lits.evaluate_case(pred, ref, (2.5, 0.8, 0.8), surface=surface)
        if probabilities is not None:
            RocAccumulator().add_and_score(probabilities, lits.structure_mask(ref, "tumor"), divisor=255.0)

    run()  # scipy's modules imported: not counted
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name,surface,prob", [
    ("whole_grid_tumors_in_opposite_corners", True, False), ("whole_grid_tumors_in_opposite_corners", False, False),
    ("tumor_filling_the_grid", False, False), ("tumor_filling_the_grid", True, False), ("thin_slab_liver", True, False),
    ("small_liver_box", True, False), ("small_liver_box", False, True)])
def test_memory_estimate_covers_the_measured_peak_and_follows_the_boxes(name, surface, prob):
    """evaluate asked 21 bytes a grid voxel of every case (the metrics' worst case, a liver box as large as the grid),
    so a liver in a tenth of the grid, which needs about 5, was refused with memory to spare. The estimate now follows
    the boxes the metrics work in; it covers the measured peak without its fixed allowance (which is for imports and
    Python objects: 64 KiB of slack here), and stays within 1.5 times the peak for a small liver box."""
    pred, ref = _memory_case(name)
    probabilities = np.round(255 * np.linspace(0, 1, ref.size)).astype(np.uint8).reshape(ref.shape) if prob else None
    peak = _metrics_peak_bytes(pred, ref, surface, probabilities)
    estimate = lits.evaluate_case_memory_bytes(pred, ref, surface=surface, probabilities=probabilities) - \
        lits.EVALUATE_CASE_FIXED_BYTES
    assert estimate >= peak - (64 << 10), f"estimate {estimate / ref.size:.1f} < peak {peak / ref.size:.1f} B/voxel"
    if name == "small_liver_box" and not prob:
        assert estimate <= 1.5 * peak, f"estimate {estimate / ref.size:.1f}, peak {peak / ref.size:.1f} B/voxel"


@pytest.mark.parametrize("name", ["whole_grid_tumors_in_opposite_corners", "thin_slab_liver", "small_liver_box"])
def test_the_upper_bound_without_erosions_is_never_below_the_estimate(name):
    """evaluate checks a case first with ``exact_surface=False`` (every mask voxel counted as a surface voxel: no
    erosions, which were ~18 % of a case's metrics) and computes the exact estimate only when that bound does not
    fit, so the bound must never be lower; without surface distances the two are the same."""
    pred, ref = _memory_case(name)
    exact = lits.evaluate_case_memory_bytes(pred, ref)
    bound = lits.evaluate_case_memory_bytes(pred, ref, exact_surface=False)
    assert bound >= exact > lits.EVALUATE_CASE_FIXED_BYTES
    assert lits.evaluate_case_memory_bytes(pred, ref, surface=False, exact_surface=False) == \
        lits.evaluate_case_memory_bytes(pred, ref, surface=False)


def test_evaluate_erodes_for_its_memory_check_only_when_the_bound_does_not_fit(monkeypatch):
    """The case check's erosions are spent only on a case the upper bound would refuse; the refusal still gives the
    exact estimate (test_bad_inputs_cli checks its text)."""
    from types import SimpleNamespace

    from LiverTumorSegLib import validation
    from LiverTumorSegLib.commands import evaluate
    from LiverTumorSegLib.errors import ResourceError
    from LiverTumorSegLib.metrics import surface

    pred, ref = _memory_case("small_liver_box")
    maps = [SimpleNamespace(array=a, shape_zyx=a.shape) for a in (pred, ref)]
    erosions = []
    counted = surface._surface_voxel_count
    monkeypatch.setattr(surface, "_surface_voxel_count", lambda *a: erosions.append(1) or counted(*a))
    exact = lits.evaluate_case_memory_bytes(pred, ref)
    bound = lits.evaluate_case_memory_bytes(pred, ref, exact_surface=False)
    erosions.clear()
    for available, refused, eroded in ((bound, False, False), ((exact + bound) // 2, False, True),
                                       (exact - 1, True, True)):
        monkeypatch.setattr(validation, "available_memory_bytes", lambda *a, **k: available)
        erosions.clear()
        if refused:
            with pytest.raises(ResourceError, match=r"needs about [0-9.]+ GiB of memory but only [0-9.]+ GiB"):
                evaluate._check_case_memory("c", *maps, None, True, "tumor")
        else:
            evaluate._check_case_memory("c", *maps, None, True, "tumor")
        assert bool(erosions) == eroded, available


def test_detection_precision_and_recall_are_pooled_never_averaged_over_cases():
    """Three tumor-free cases with nothing predicted (per-case lesion precision and recall 1.0) and one case whose two
    lesions were both missed: the summary's metrics averaged the per-case lesion_recall to 0.75 where the pooled recall
    is 0.0. The per-case columns stay in the table; the summary gives detection only pooled."""
    shape, spacing = (8, 30, 30), (5.0, 0.7, 0.7)
    free = np.zeros(shape, np.uint8)
    free[1:7, 3:27, 3:27] = 1
    with_tumor = free.copy()
    with_tumor[3:5, 10:14, 10:14] = 2
    with_tumor[3:5, 20:24, 20:24] = 2
    missed = np.where(with_tumor == 2, 1, with_tumor).astype(np.uint8)
    rows = [lits.evaluate_case(free, free, spacing, case=f"free{i}", surface=False) for i in range(3)]
    rows.append(lits.evaluate_case(missed, with_tumor, spacing, case="missed", surface=False))
    assert [row["lesion_recall"] for row in rows] == [1.0, 1.0, 1.0, 0.0]     # per case, as before
    summary = report.summarize_cases(rows)
    assert "lesion_recall" not in summary["metrics"] and "lesion_precision" not in summary["metrics"]
    detection = summary["lesion_detection"]
    assert (detection["detected"], detection["missed"], detection["false_positive"]) == (0, 2, 0)
    assert detection["recall"] == 0.0 and detection["precision"] is None
    assert "dice_tumor" in summary["metrics"]          # other per-case columns are still averaged


def test_lits_per_lesion_scores_are_of_detected_lesions_beside_the_whole_mask_ones():
    """The reviewer's example: A found exactly, B missed. The whole tumor mask's ASSD is 7.4 mm (B's surface is 35 mm
    from any prediction); LiTS scores the one detected lesion, which is perfect, and leaves B to the detection
    counts."""
    ref, spacing = two_lesion_maps()
    pred = ref.copy()
    pred[8:12, 70:76, 70:76] = 1
    row = lits.evaluate_case(pred, ref, spacing)
    assert round(row["assd_tumor_mm"], 3) == 7.355 and round(row["voe_tumor"], 3) == 0.265    # whole mask, as before
    assert row["lits_lesions_scored"] == 1
    assert {key: row[f"lits_lesion_{key}"] for key in lits.LITS_LESION_KEYS} == {
        "dice": 1.0, "voe": 0.0, "rvd": 0.0, "assd_mm": 0.0, "hd_mm": 0.0, "rmsd_mm": 0.0}
    no_surface = lits.evaluate_case(pred, ref, spacing, surface=False)
    assert "lits_lesion_dice" in no_surface and "lits_lesion_assd_mm" not in no_surface
    missed_all = lits.evaluate_case(np.where(ref == 2, 1, ref).astype(np.uint8), ref, spacing)
    assert missed_all["lits_lesions_scored"] == 0 and math.isnan(missed_all["lits_lesion_dice"])


def test_lits_per_lesion_scores_are_averaged_over_all_detected_lesions_of_all_cases():
    """Case a: A exact, B missed. Case b: both shifted by one voxel in x (0.7 mm): A Dice 0.9, B 5/6, HD 0.7 mm each.
    LiTS averages the three detected lesions: Dice (1 + 0.9 + 5/6) / 3, HD 1.4 / 3 mm; a mean of the two cases' means
    would give (1 + 0.8667) / 2 = 0.9333."""
    ref, spacing = two_lesion_maps()
    pred_a = ref.copy()
    pred_a[8:12, 70:76, 70:76] = 1
    rows = [lits.evaluate_case(pred_a, ref, spacing, case="a"),
            lits.evaluate_case(np.roll(ref, 1, axis=2), ref, spacing, case="b")]
    assert [row["lits_lesions_scored"] for row in rows] == [1, 2]
    assert rows[1]["lits_lesion_dice"] == pytest.approx((0.9 + 5 / 6) / 2)
    summary = report.summarize_cases(rows)
    scores = summary["lesion_segmentation_lits"]
    assert scores["n_lesions"] == 3
    assert scores["dice"] == pytest.approx((1 + 0.9 + 5 / 6) / 3) and scores["hd_mm"] == pytest.approx(1.4 / 3)
    assert scores["voe"] == pytest.approx((0 + (1 - 0.9 / 1.1) + (1 - (5 / 6) / (7 / 6))) / 3)
    assert scores["rvd"] == 0.0 and "per detected lesion" in scores["definition"]
    assert not any(column.startswith("lits_lesion") for column in summary["metrics"])  # no mean of per-case means
    json.dumps(summary, allow_nan=False)
    nothing_detected = report.summarize_cases([lits.evaluate_case(np.where(ref == 2, 1, ref).astype(np.uint8), ref,
                                                                  spacing)])["lesion_segmentation_lits"]
    assert nothing_detected["n_lesions"] == 0 and nothing_detected["dice"] is None


def test_a_cases_lits_lesion_score_is_the_mean_over_its_detected_lesions_not_the_median():
    """A case's lits_lesion_<key> is the mean over its detected lesions (the summary weights it by their count), not
    their median: with two lesions the two agree, so three are needed to tell them apart."""
    ref_tumor = np.zeros((8, 8, 40), bool)
    pred_tumor = np.zeros_like(ref_tumor)
    for x0, longer in ((2, 0), (14, 1), (26, 2)):   # three 4 x 4 x 4 lesions, 64 voxels each
        ref_tumor[2:6, 2:6, x0:x0 + 4] = True
        pred_tumor[2:6, 2:6, x0:x0 + 4 + longer] = True   # 64, 80 and 96 voxels predicted, all 64 shared
    labels = np.ones(ref_tumor.shape, np.uint8)
    row = lits.evaluate_case(np.where(pred_tumor, 2, labels), np.where(ref_tumor, 2, labels), (1.0, 1.0, 1.0),
                             surface=False)
    # Dice 2 x 64 / (64 + 64) = 1, 128 / 144 = 8/9, 128 / 160 = 0.8; mean 0.8963 (the median would be 8/9)
    assert row["lits_lesions_scored"] == 3
    assert row["lits_lesion_dice"] == pytest.approx((1.0 + 8 / 9 + 0.8) / 3)
    # RVD (|pred| - |ref|) / |ref| = 0, 16/64, 32/64: mean 0.25
    assert row["lits_lesion_rvd"] == pytest.approx((0.0 + 0.25 + 0.5) / 3)


def test_lits_per_lesion_scores_of_merged_and_split_groups():
    """A detected group is scored whole, as the LiTS script merges it: a prediction spanning two reference lesions is
    one scored lesion (both references against it), a lesion predicted in two pieces one (the pieces together)."""
    ref = np.zeros((9, 9, 13), bool)
    ref[3:6, 3:6, 2:5] = True
    ref[3:6, 3:6, 6:9] = True
    merge = np.zeros_like(ref)
    merge[3:6, 3:6, 2:9] = True                      # 63 voxels over the two 27-voxel lesions
    scores = lits.detect_lesions(merge, ref, spacing_zyx=(1.0, 1.0, 1.0)).detected_scores
    assert len(scores) == 1 and scores[0]["dice"] == pytest.approx(2 * 54 / (63 + 54))
    assert scores[0]["rvd"] == pytest.approx((63 - 54) / 54)
    split = merge.copy()
    split[:, :, 5] = False                           # the prediction in two pieces, of one reference lesion
    whole = np.zeros_like(ref)
    whole[3:6, 3:6, 2:9] = True
    scores = lits.detect_lesions(split, whole, spacing_zyx=(1.0, 1.0, 1.0), connectivity=6).detected_scores
    assert len(scores) == 1 and scores[0]["dice"] == pytest.approx(2 * 54 / (54 + 63))
    assert scores[0]["hd_mm"] == 1.0
    assert lits.detect_lesions(split, whole).detected_scores == []  # only with spacing_zyx


def test_a_detected_group_holding_every_lesion_takes_the_whole_tumor_masks_scores(monkeypatch):
    """One detected group holding every reference and predicted lesion (the common one-lesion case) is the whole
    tumor masks, whose scores structure_row has: they are taken, not computed again (a second surface computation,
    about 12 % of a case's time), and equal what scoring the group gives. With a lesion missed the group is scored
    on its own."""
    ref, spacing = two_lesion_maps()
    one = ref.copy()
    one[8:12, 70:76, 70:76] = 1                      # lesion A only
    pred = np.roll(one, 1, axis=2)                   # found, shifted by one voxel
    calls = []
    surface_metrics = lits.surface_metrics

    def counted(*args, **kwargs):
        calls.append(1)
        return surface_metrics(*args, **kwargs)

    monkeypatch.setattr(lits, "surface_metrics", counted)
    row = lits.evaluate_case(pred, one, spacing)
    assert len(calls) == 2                           # liver and tumor, no third for the lesion
    scored = lits.detect_lesions(pred == 2, one == 2, spacing_zyx=spacing).detected_scores
    assert len(scored) == 1 and {key: row[f"lits_lesion_{key}"] for key in lits.LITS_LESION_KEYS} == scored[0]
    assert row["lits_lesion_dice"] == row["dice_tumor"] == 0.9 and row["lits_lesion_hd_mm"] == row["hd_tumor_mm"]
    calls.clear()
    two = lits.evaluate_case(np.roll(one, 1, axis=2), ref, spacing)   # B missed: A scored alone
    assert len(calls) == 3 and two["lits_lesion_dice"] == 0.9 and two["lits_lesion_dice"] != two["dice_tumor"]


def test_tumor_voe_and_rvd_of_a_case_without_tumor_on_either_side_are_not_defined():
    """Counted as 0 (perfect), a tumor-free case lowered the tumor VOE and RVD means, which the printout said were
    'over the cases where each is defined' (the evaluate audit: VOE 0.600 over n=4 where 0.800 over 3 is right).
    Dice keeps LiTS's 1.0 for such a case."""
    import math

    from LiverTumorSegLib.metrics import report
    from LiverTumorSegLib.metrics.lits import evaluate_case

    spacing = (2.5, 0.8, 0.8)
    liver = np.zeros((6, 20, 20), np.uint8)
    liver[1:5, 2:18, 2:18] = 1
    empty = evaluate_case(liver, liver, spacing, case="no tumor", surface=False)
    assert empty["dice_tumor"] == 1.0 and math.isnan(empty["voe_tumor"]) and math.isnan(empty["rvd_tumor"])
    ref = liver.copy()
    ref[2:4, 5:9, 5:9] = 2                                        # 32 voxels
    pred = liver.copy()
    pred[2:4, 5:9, 5:7] = 2                                       # 16 of them: IoU 0.5, RVD -0.5
    half = evaluate_case(pred, ref, spacing, case="half", surface=False)
    assert half["voe_tumor"] == pytest.approx(0.5) and half["rvd_tumor"] == pytest.approx(-0.5)
    metrics = report.summarize_cases([empty, half])["metrics"]
    assert metrics["voe_tumor"]["n"] == 1 and metrics["voe_tumor"]["mean"] == pytest.approx(0.5)
    assert metrics["rvd_tumor"]["n"] == 1 and metrics["rvd_tumor"]["mean"] == pytest.approx(-0.5)
    assert metrics["dice_tumor"]["n"] == 2


def test_tumor_iou_precision_and_sensitivity_of_a_case_without_tumor_on_either_side_are_not_defined():
    """VOE = 1 - IoU in every row: a tumor-free case had IoU 1.0 beside VOE NaN, so the summary's tumor IoU mean
    (0.8 over a tumor-free case and one of IoU 0.6, hand-computed: two 4-voxel cubes shifted by one voxel share 48 of
    80 voxels) was not 1 - its VOE mean (0.4 over the one case). Precision and sensitivity are 0/0 there too (MONAI
    gives NaN) and read 1.0, lifting their means as the tumor-free cases' lesion recall did. Dice (and F1, its
    twin) keeps LiTS's 1.0."""
    import math

    from LiverTumorSegLib.metrics import report
    from LiverTumorSegLib.metrics.lits import evaluate_case

    liver = np.zeros((10, 10, 10), np.uint8)
    liver[1:9, 1:9, 1:9] = 1
    empty = evaluate_case(liver, liver, (1.0, 1.0, 1.0), case="no tumor", surface=False)
    for column in ("iou_tumor", "precision_tumor", "sensitivity_tumor"):
        assert math.isnan(empty[column]), column
    assert empty["dice_tumor"] == 1.0 and empty["f1_tumor"] == 1.0 and empty["iou_liver"] == 1.0
    ref, pred = liver.copy(), liver.copy()
    ref[2:6, 2:6, 2:6] = 2                                        # 64 voxels
    pred[2:6, 2:6, 3:7] = 2                                       # shifted by one voxel: 48 shared, union 80
    shifted = evaluate_case(pred, ref, (1.0, 1.0, 1.0), case="shifted", surface=False)
    assert shifted["iou_tumor"] == pytest.approx(0.6) and shifted["sensitivity_tumor"] == pytest.approx(0.75)
    metrics = report.summarize_cases([empty, shifted])["metrics"]
    assert metrics["iou_tumor"]["n"] == 1 and metrics["iou_tumor"]["mean"] == pytest.approx(0.6)
    assert metrics["voe_tumor"]["mean"] == pytest.approx(1.0 - metrics["iou_tumor"]["mean"])
    assert metrics["sensitivity_tumor"]["mean"] == pytest.approx(0.75)
    assert metrics["precision_tumor"]["mean"] == pytest.approx(0.75)
    assert metrics["dice_tumor"]["n"] == 2 and metrics["dice_tumor"]["mean"] == pytest.approx((1.0 + 0.75) / 2)


def test_liver_overlap_of_a_case_without_liver_on_either_side_is_not_defined_as_the_tumors_is():
    """A reference without liver (warned of) and an empty prediction scored liver VOE 0, RVD 0, IoU, precision and
    sensitivity 1.0 beside NaN liver surface distances, while the same case's tumor columns were NaN: its perfect
    liver VOE lifted the liver VOE mean (hand: 0.0 and 0.5 -> 0.25, where the one defined case gives 0.5)."""
    import math

    from LiverTumorSegLib.metrics import report
    from LiverTumorSegLib.metrics.lits import evaluate_case

    spacing = (2.0, 1.0, 1.0)
    nothing = np.zeros((4, 8, 8), np.uint8)
    empty = evaluate_case(nothing, nothing, spacing, case="no liver")
    for key in ("voe", "rvd", "iou", "precision", "sensitivity", "assd"):
        assert math.isnan(empty[f"{key}_liver" if key != "assd" else "assd_liver_mm"]), key
    assert empty["dice_liver"] == 1.0 and empty["f1_liver"] == 1.0 and empty["specificity_liver"] == 1.0
    ref = nothing.copy()
    ref[1:3, 2:6, 2:6] = 1                                        # 32 voxels
    pred = nothing.copy()
    pred[1:3, 2:6, 2:4] = 1                                       # 16 of them: IoU 0.5, VOE 0.5, RVD -0.5
    half = evaluate_case(pred, ref, spacing, case="half")
    assert half["voe_liver"] == pytest.approx(0.5) and half["rvd_liver"] == pytest.approx(-0.5)
    metrics = report.summarize_cases([empty, half])["metrics"]
    assert metrics["voe_liver"]["n"] == 1 and metrics["voe_liver"]["mean"] == pytest.approx(0.5)
    assert metrics["iou_liver"]["mean"] == pytest.approx(0.5) and metrics["sensitivity_liver"]["mean"] == 0.5
    assert metrics["dice_liver"]["n"] == 2 and metrics["dice_liver"]["mean"] == pytest.approx((1.0 + 2 / 3) / 2)


def test_detect_lesions_and_lesion_hits_take_a_2d_mask_with_their_default_connectivity():
    """Their default connectivity (26) was refused for 2-D masks ('connectivity must be one of [4, 8]'), although
    the docstrings take 2-D masks; in 2-D, 26 and 18 mean 8 and 6 means 4."""
    import numpy as np

    from LiverTumorSegLib.metrics.froc import lesion_hits
    from LiverTumorSegLib.metrics.lits import detect_lesions

    ref = np.zeros((12, 12), bool)
    ref[1:4, 1:4] = True
    ref[4, 4] = True                                       # touches the square at a corner only
    pred = ref.copy()
    assert detect_lesions(pred, ref).ref_lesions == 1      # 8-connected: one lesion
    assert detect_lesions(pred, ref, connectivity=6).ref_lesions == 2   # faces only: two
    assert detect_lesions(pred, ref, connectivity=4).ref_lesions == 2
    hits = lesion_hits(pred, ref, pred.astype(np.float32))
    assert hits.n_ref == 1 and list(hits.hits) == [0]
