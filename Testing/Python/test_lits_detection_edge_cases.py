"""Edge cases of LiTS lesion detection (LiverTumorSegLib.metrics.lits): IoU exactly 0.5, no prediction, a false lesion
beside a found one. The earlier tests let each of them through: every test here fails when one operator or constant
of the code it covers is changed (checked by mutation in stop 26). Known inputs, known answers."""
import math

import numpy as np
import pytest

from LiverTumorSegLib.metrics import lits


def test_iou_of_exactly_one_half_is_not_a_detection():
    # LiTS: detected when IoU > 0.5. Reference lesion 4 voxels, prediction covers 2 of them: IoU = 2/4 = 0.5
    ref = np.zeros((3, 3, 8), bool)
    ref[1, 1, 2:6] = True
    pred = np.zeros_like(ref)
    pred[1, 1, 2:4] = True
    result = lits.detect_lesions(pred, ref)
    assert result.lesions[0]["iou"] == 0.5
    assert (result.detected, result.missed, result.false_positive) == (0, 1, 1)
    pred[1, 1, 4] = True                              # 3/4 > 0.5: detected
    assert lits.detect_lesions(pred, ref).detected == 1


def test_reference_lesions_without_any_prediction_are_missed():
    ref = np.zeros((5, 5, 12), bool)
    ref[1:3, 1:3, 1:3] = True
    ref[1:3, 1:3, 7:10] = True                        # two lesions, nothing predicted
    result = lits.detect_lesions(np.zeros_like(ref), ref)
    assert (result.ref_lesions, result.pred_lesions) == (2, 0)
    assert (result.detected, result.missed, result.false_positive, result.pred_no_overlap) == (0, 2, 0, 0)
    assert result.recall == 0.0 and math.isnan(result.precision)   # no prediction: precision undefined
    assert [lesion["iou"] for lesion in result.lesions] == [0.0, 0.0]


def test_a_prediction_touching_no_lesion_stays_a_false_positive_next_to_a_detected_one():
    ref = np.zeros((4, 4, 16), bool)
    ref[1:3, 1:3, 1:4] = True                         # lesion 1, found exactly
    pred = ref.copy()
    pred[1:3, 1:3, 10:14] = True                      # lesion far away: no overlap
    result = lits.detect_lesions(pred, ref)
    assert (result.detected, result.false_positive, result.pred_no_overlap) == (1, 1, 1)
    assert result.lesions[0]["iou"] == 1.0 and result.precision == pytest.approx(0.5)
