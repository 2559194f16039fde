"""Edge cases of the case summaries of LiverTumorSegLib.metrics.report: all-NaN columns, burden counts, the overlay
slice. The earlier tests let each of them through: every test here fails when one operator or constant of the code
it covers is changed (checked by mutation in stop 26). Known inputs, known answers."""
import math

import numpy as np
import pytest

from LiverTumorSegLib.metrics import report


def test_all_nan_column_and_burden_counts_say_how_many_were_left_out():
    rows = [{"case": "a", "assd_tumor_mm": float("nan"), "tumor_burden_error": float("nan"),
             "lesions_ref": 0, "lesions_pred": 0, "lesions_detected": 0, "lesions_missed": 0,
             "lesions_false_positive": 0},
            {"case": "b", "assd_tumor_mm": float("nan"), "tumor_burden_error": 0.2,
             "lesions_ref": 0, "lesions_pred": 0, "lesions_detected": 0, "lesions_missed": 0,
             "lesions_false_positive": 0},
            {"case": "c", "assd_tumor_mm": float("nan"), "tumor_burden_error": -0.1,
             "lesions_ref": 0, "lesions_pred": 0, "lesions_detected": 0, "lesions_missed": 0,
             "lesions_false_positive": 0}]
    summary = report.summarize_cases(rows)
    assert summary["metrics"]["assd_tumor_mm"] == {"mean": None, "std": None, "median": None, "min": None,
                                                   "max": None, "n": 0, "n_nan": 3, "ci95_low": None,
                                                   "ci95_high": None}
    burden = summary["tumor_burden"]
    assert (burden["n"], burden["n_nan"]) == (2, 1)
    assert burden["rmse"] == pytest.approx(math.sqrt((0.04 + 0.01) / 2))
    assert burden["max_abs_error"] == pytest.approx(0.2)
    only_nan = report.summarize_cases(rows[:1])["tumor_burden"]
    assert only_nan == {"rmse": None, "max_abs_error": None, "n": 0, "n_nan": 1}
    det = summary["lesion_detection"]            # no lesion anywhere: precision and recall undefined
    assert det["precision"] is None and det["recall"] is None and det["ref_lesions"] == 0


def test_stats_min_max_median_of_three_values():
    rows = [{"case": c, "dice_liver": v} for c, v in (("a", 0.9), ("b", 0.6), ("c", 0.75))]
    stats = report.summarize_cases(rows)["metrics"]["dice_liver"]
    assert stats["min"] == 0.6 and stats["max"] == 0.9 and stats["median"] == 0.75
    assert stats["mean"] == pytest.approx(0.75) and stats["std"] == pytest.approx(0.15)


def test_overlay_slice_of_an_empty_case_is_the_middle_slice_along_z():
    empty = np.zeros((7, 4, 4), np.uint8)
    assert report.overlay_slice_index(empty, empty) == 3
    labels = empty.copy()
    labels[5, 0, 0] = 1                           # one liver voxel only in the prediction
    labels[2, 0, :2] = 1
    assert report.overlay_slice_index(labels, empty) == 2
