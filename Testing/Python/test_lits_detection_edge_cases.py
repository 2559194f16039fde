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


def _detection_numbers(result):
    return (result.ref_lesions, result.pred_lesions, result.detected, result.missed, result.false_positive,
            result.pred_no_overlap, result.detected_groups, result.lesions)


def test_lesions_on_the_volume_edges_keep_every_voxel_of_the_box():
    """Only the box of both masks is labelled; lesions on the array's faces and corners (the box clipped there)
    must count every voxel: a box one voxel short on any side changes these hand-counted numbers, and padding the
    volume with background (the lesions no longer on an edge) must change nothing."""
    ref = np.zeros((5, 6, 7), bool)                   # (z, y, x)
    pred = np.zeros_like(ref)
    ref[0:2, 0:2, 0:2] = True                         # lesion 1: the first corner, 8 voxels
    pred[0:2, 0:2, 0:3] = True                        # 12 voxels over it: IoU 8/12, detected
    ref[2, 0, 6] = True                               # lesion 2: one voxel on the last x face, nothing predicted
    ref[3:5, 4:6, 5:7] = True                         # lesion 3: the last corner, 8 voxels
    pred[4, 4:6, 5:7] = True                          # 4 of them: IoU 0.5, missed, a false positive
    pred[0:5, 5, 0] = True                            # along a whole edge, touching no lesion: a false positive
    expected = (3, 3, 1, 2, 2, 1, 1, [{"id": 1, "voxels": 8, "iou": 8 / 12, "detected": True},
                                      {"id": 2, "voxels": 1, "iou": 0.0, "detected": False},
                                      {"id": 3, "voxels": 8, "iou": 0.5, "detected": False}])
    assert _detection_numbers(lits.detect_lesions(pred, ref)) == expected
    assert _detection_numbers(lits.detect_lesions(np.pad(pred, 2), np.pad(ref, 2))) == expected

    ref = np.zeros((6, 7, 8), bool)                   # only at the last corner: the box starts inside the volume
    pred = np.zeros_like(ref)
    ref[4:6, 5:7, 6:8] = True                         # 8 voxels
    pred[5:6, 5:7, 5:8] = True                        # 6 voxels, 4 shared: IoU 4 / 10
    expected = (1, 1, 0, 1, 1, 0, 0, [{"id": 1, "voxels": 8, "iou": 0.4, "detected": False}])
    for flip in ((), (0,), (0, 1, 2)):                # and the same at the first corner
        flipped = (np.flip(pred, flip), np.flip(ref, flip)) if flip else (pred, ref)
        assert _detection_numbers(lits.detect_lesions(*flipped)) == expected
        assert _detection_numbers(lits.detect_lesions(*(np.pad(m, 1) for m in flipped))) == expected


def test_lesion_detection_makes_no_whole_volume_mask():
    """detect_lesions made three whole-volume masks to find the box it labels (a copy of each boolean mask and
    their union): 3 bytes a voxel, 0.75 GiB for a 512 x 512 x 1000 CT, for lesions of a few mL."""
    import tracemalloc

    ref = np.zeros((64, 128, 128), bool)              # 1 Mi voxels, two small lesions in the middle
    pred = np.zeros_like(ref)
    ref[30:34, 60:64, 60:64] = True
    pred[31:35, 61:66, 60:64] = True
    lits.detect_lesions(pred[28:36], ref[28:36])      # scipy's modules imported: not counted
    tracemalloc.start()
    try:
        result = lits.detect_lesions(pred, ref)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (result.ref_lesions, result.pred_lesions) == (1, 1)
    assert peak / ref.size < 0.1, f"{peak / ref.size:.2f} bytes a voxel"
