"""Lesion detection by reference lesion size (equivalent-sphere diameter bins <10, 10-20, >=20 mm): per lesion in
detect_lesions, per case in evaluate_case, pooled in summarize_cases and printed by `evaluate`.

A pooled lesion recall of 0.8 can hide a recall of 0.2 for the lesions under 10 mm; before these columns nothing in
evaluate's outputs said how the small lesions fared."""
import csv
import json
import math

import numpy as np
import pytest

from LiverTumorSegLib.cli import main
from LiverTumorSegLib.io import write_label_map
from LiverTumorSegLib.metrics.lits import (LESION_SIZE_BINS, detect_lesions, equivalent_diameter_mm, evaluate_case,
                                           lesion_size_bin)
from LiverTumorSegLib.metrics.report import lesion_size_line, summarize_cases
from LiverTumorSegLib.volume import ImageGeometry

SPACING_ZYX = (2.5, 0.8, 0.8)  # anisotropic: thick slices, fine pixels
SHAPE = (24, 100, 100)
BIN_KEYS = [key for key, _label, _low, _high in LESION_SIZE_BINS]


def _ball(centre_zyx, radius_mm, shape=SHAPE, spacing=SPACING_ZYX):
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    return (((z - centre_zyx[0]) * spacing[0]) ** 2 + ((y - centre_zyx[1]) * spacing[1]) ** 2
            + ((x - centre_zyx[2]) * spacing[2]) ** 2) <= radius_mm ** 2


# four balls: two small (8 and 6 mm across), one medium (15 mm), one large (24 mm), far apart
BALLS = {"small_a": ((12, 15, 15), 4.0), "small_b": ((12, 15, 85), 3.0), "medium": ((12, 85, 15), 7.5),
         "large": ((12, 60, 65), 12.0)}


def _labels(tumors):
    labels = np.ones(SHAPE, np.uint8)  # liver everywhere
    for name in tumors:
        labels[_ball(*BALLS[name])] = 2
    return labels


def test_each_reference_lesion_gets_its_equivalent_sphere_diameter_at_anisotropic_spacing():
    ref = _labels(BALLS) == 2
    detection = detect_lesions(ref, ref, spacing_zyx=SPACING_ZYX)
    by_voxels = sorted(detection.lesions, key=lambda lesion: lesion["voxels"])
    diameters = [lesion["diameter_mm"] for lesion in by_voxels]
    # the definition, by hand: (6 V / pi)^(1/3), V = voxels x 2.5 x 0.8 x 0.8 mm^3
    for lesion in by_voxels:
        assert lesion["diameter_mm"] == pytest.approx((6 * lesion["voxels"] * 1.6 / math.pi) ** (1 / 3), rel=1e-12)
    # and the balls' diameters (6, 8, 15, 24 mm) within the voxelization's error
    assert diameters == pytest.approx([6.0, 8.0, 15.0, 24.0], abs=0.5)
    assert [lesion["size_bin"] for lesion in by_voxels] == ["lt10mm", "lt10mm", "10to20mm", "ge20mm"]
    assert detect_lesions(ref, ref).lesions[0].keys() == {"id", "voxels", "iou", "detected"}  # no spacing: no size


def test_a_diameter_on_a_bin_edge_goes_to_the_larger_bin():
    assert lesion_size_bin(10.0) == "10to20mm" and lesion_size_bin(20.0) == "ge20mm"
    assert lesion_size_bin(9.99) == "lt10mm" and lesion_size_bin(19.99) == "10to20mm"
    for bad in (float("nan"), float("inf"), -1.0):  # NaN was binned < 10 mm
        with pytest.raises(ValueError, match="finite number of mm"):
            lesion_size_bin(bad)
    assert lesion_size_bin(0.0) == "lt10mm" and lesion_size_bin(500.0) == "ge20mm"
    # a one-voxel lesion of exactly (pi / 6) x 1000 mm^3 is a 10 mm sphere, which rounding can leave a hair short
    edge_spacing = (10.0 * math.pi / 6.0, 10.0, 10.0)
    assert equivalent_diameter_mm(1, edge_spacing) == pytest.approx(10.0, abs=1e-9)
    mask = np.zeros((3, 3, 3), bool)
    mask[1, 1, 1] = True
    assert detect_lesions(mask, mask, spacing_zyx=edge_spacing).lesions[0]["size_bin"] == "10to20mm"
    smaller = (edge_spacing[0] * 0.99, 10.0, 10.0)  # 1 % less volume: 9.97 mm
    assert detect_lesions(mask, mask, spacing_zyx=smaller).lesions[0]["size_bin"] == "lt10mm"


def test_case_columns_count_reference_and_detected_lesions_per_bin():
    ref = _labels(BALLS)
    pred = _labels(["small_b", "large"])  # finds the 6 mm and the 24 mm ball, misses the 8 mm and the 15 mm one
    pred[_ball((12, 40, 40), 4.0)] = 2  # and a false positive, which has no reference size: in no bin
    row = evaluate_case(pred, ref, SPACING_ZYX, case="a", surface=False)
    assert [row[f"lesions_size_{key}_ref"] for key in BIN_KEYS] == [2, 1, 1]
    assert [row[f"lesions_size_{key}_detected"] for key in BIN_KEYS] == [1, 0, 1]
    assert sum(row[f"lesions_size_{key}_ref"] for key in BIN_KEYS) == row["lesions_ref"] == 4
    assert sum(row[f"lesions_size_{key}_detected"] for key in BIN_KEYS) == row["lesions_detected"] == 2
    assert row["lesions_false_positive"] == 1


def test_a_case_without_lesions_has_empty_bins_and_no_recall():
    labels = np.ones((8, 20, 20), np.uint8)
    row = evaluate_case(labels, labels, SPACING_ZYX, surface=False)
    assert all(row[f"lesions_size_{key}_{kind}"] == 0 for key in BIN_KEYS for kind in ("ref", "detected"))
    by_size = summarize_cases([row])["lesion_detection_by_size"]
    assert [by_size["bins"][key]["recall"] for key in BIN_KEYS] == [None, None, None]
    assert lesion_size_line(by_size).endswith("<10 mm 0/0 (n/a), 10-20 mm 0/0 (n/a), >=20 mm 0/0 (n/a)")


def test_summary_pools_the_bins_over_cases_as_the_pooled_recall():
    ref_a, pred_a = _labels(BALLS), _labels(["small_b", "large"])  # small 1/2, medium 0/1, large 1/1
    ref_b, pred_b = _labels(["small_a", "medium"]), _labels(["small_a", "medium"])  # small 1/1, medium 1/1
    rows = [evaluate_case(pred_a, ref_a, SPACING_ZYX, case="a", surface=False),
            evaluate_case(pred_b, ref_b, SPACING_ZYX, case="b", surface=False)]
    summary = summarize_cases(rows, confidence_intervals=False)
    bins = summary["lesion_detection_by_size"]["bins"]
    # by hand: small (1 + 1) / (2 + 1) = 2/3, medium (0 + 1) / (1 + 1) = 1/2, large 1/1
    assert [(bins[key]["detected"], bins[key]["ref_lesions"]) for key in BIN_KEYS] == [(2, 3), (1, 2), (1, 1)]
    assert [bins[key]["recall"] for key in BIN_KEYS] == pytest.approx([2 / 3, 1 / 2, 1.0])
    assert [bins[key]["missed"] for key in BIN_KEYS] == [1, 1, 0]
    assert summary["lesion_detection"]["recall"] == pytest.approx(4 / 6)  # the pooled recall, unchanged
    assert not any(column.startswith("lesions_size_") for column in summary["metrics"])  # pooled, not averaged
    assert lesion_size_line(summary["lesion_detection_by_size"]).endswith(
        "<10 mm 2/3 (0.67), 10-20 mm 1/2 (0.50), >=20 mm 1/1 (1.00)")


def test_a_table_without_the_size_columns_gets_no_size_summary():
    row = evaluate_case(_labels(["large"]), _labels(["large"]), SPACING_ZYX, surface=False)
    old = {key: value for key, value in row.items() if not key.startswith("lesions_size_")}
    summary = summarize_cases([old], confidence_intervals=False)
    assert "lesion_detection_by_size" not in summary and "lesion_detection" in summary


def test_evaluate_prints_writes_and_documents_the_recall_by_size(tmp_path, capsys):
    geometry = ImageGeometry(spacing=(0.8, 0.8, 2.5))  # (x, y, z)
    write_label_map(tmp_path / "ref.nii.gz", _labels(BALLS), geometry)
    write_label_map(tmp_path / "pred.nii.gz", _labels(["small_b", "large"]), geometry)
    out = tmp_path / "out"
    assert main(["evaluate", "--pred", str(tmp_path / "pred.nii.gz"), "--ref", str(tmp_path / "ref.nii.gz"),
                 "-o", str(out), "--no-plots", "--no-surface", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert ("lesion recall by size (reference lesions' equivalent-sphere diameter; predicted lesions not binned): "
            "<10 mm 1/2 (0.50), 10-20 mm 0/1 (0.00), >=20 mm 1/1 (1.00)") in printed
    summary = json.loads((out / "summary.json").read_text())
    by_size = summary["lesion_detection_by_size"]
    assert by_size["n_cases"] == 1 and "equivalent-sphere diameter" in by_size["definition"]
    assert by_size["bins"]["lt10mm"] == {"label": "<10 mm", "low_mm": None, "high_mm": 10.0, "ref_lesions": 2,
                                         "detected": 1, "missed": 1, "recall": 0.5}
    with open(out / "cases.csv", newline="") as handle:
        (case,) = list(csv.DictReader(handle))
    assert [case[f"lesions_size_{key}_ref"] for key in BIN_KEYS] == ["2", "1", "1"]
    assert [case[f"lesions_size_{key}_detected"] for key in BIN_KEYS] == ["1", "0", "1"]


def test_a_2d_masks_lesion_is_sized_by_the_circle_of_its_area():
    """detect_lesions takes 2-D (y, x) masks (4- or 8-connected), but sized every lesion as the sphere of a volume:
    a 20 mm disc (317 pixels of 1 mm^2) read (6 x 317 / pi)^(1/3) = 8.46 mm, in the smallest bin. The circle of its
    area: (4 x 317 / pi)^(1/2) = 20.09 mm."""
    yy, xx = np.mgrid[:40, :40]
    disc = (yy - 20) ** 2 + (xx - 20) ** 2 <= 100
    assert int(disc.sum()) == 317
    (lesion,) = detect_lesions(disc, disc, spacing_zyx=(1.0, 1.0)).lesions
    assert lesion["diameter_mm"] == pytest.approx(math.sqrt(4 * 317 / math.pi)) and lesion["size_bin"] == "ge20mm"
    # at 0.5 mm pixels the same disc covers a quarter of the area: half the diameter
    assert equivalent_diameter_mm(317, (0.5, 0.5)) == pytest.approx(0.5 * math.sqrt(4 * 317 / math.pi))
    assert equivalent_diameter_mm(317, (1.0, 1.0, 1.0)) == pytest.approx((6 * 317 / math.pi) ** (1 / 3))


@pytest.mark.parametrize("spacing, said", [((1.0, 1.0), "3"), ((-2.0, 1.0, 1.0), "positive"),
                                            ((1.0, float("nan"), 1.0), "finite")])
def test_detect_lesions_refuses_a_spacing_that_is_not_one_positive_mm_a_mask_axis(spacing, said):
    """Without a detected group (so no surface distance checked it) a 3-D mask with 2 spacings was sized as a disc
    (400 voxels: 9.14 mm, no error) and a negative spacing raised TypeError on a complex diameter."""
    ref = np.zeros((10, 30, 30), bool)
    ref[3:7, 10:20, 10:20] = True
    pred = np.zeros_like(ref)
    pred[0, 0, 0] = True  # far from it: missed, nothing scored
    with pytest.raises(ValueError, match=said):
        detect_lesions(pred, ref, spacing_zyx=spacing)
    with pytest.raises(ValueError, match=said):  # nor does the row of a structure without its surface metrics
        from LiverTumorSegLib.metrics.lits import structure_row
        structure_row(pred, ref, spacing, "tumor", surface=False)
