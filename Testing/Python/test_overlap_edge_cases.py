"""Edge cases of LiverTumorSegLib.metrics.overlap with integer and float masks, tiny masks and volume_ml. The earlier
tests let each of them through: every test here fails when one operator or constant of the code it covers is changed
(checked by mutation in stop 26). Known inputs, known answers."""
import numpy as np
import pytest

from LiverTumorSegLib.metrics import overlap


def test_integer_masks_count_every_nonzero_value_as_foreground():
    # pred holds label 2 (tumor-like), ref holds label 1: both "nonzero = foreground"; bitwise 2 & 1 would be 0
    pred = np.array([[[0, 2, 2, 2, 2, 0, 0, 0]]], dtype=np.uint8)
    ref = np.array([[[0, 0, 0, 1, 1, 1, 0, 0]]], dtype=np.uint8)
    c = overlap.confusion_counts(pred, ref)
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 2, 1, 3)
    assert overlap.dice(pred, ref) == pytest.approx(2 * 2 / (4 + 3))
    # a 0/1 integer mask gives the same counts as its boolean version
    assert overlap.confusion_counts(pred.astype(bool).astype(np.int64), ref.astype(np.int64)) == c
    # a float mask: 0.0 background, anything else foreground
    assert overlap.iou(pred.astype(np.float32) * 0.5, ref.astype(np.float32)) == pytest.approx(2 / 5)


def test_volume_ml_counts_voxels_times_spacing_product():
    mask = np.zeros((4, 5, 6), bool)
    mask[1:3, 1:4, 2:6] = True                          # 2 * 3 * 4 = 24 voxels
    assert overlap.volume_ml(mask, (2.5, 0.8, 0.8)) == pytest.approx(24 * 2.5 * 0.8 * 0.8 / 1000.0)
    assert overlap.volume_ml(mask.astype(np.uint8) * 2, (1.0, 1.0, 1.0)) == pytest.approx(0.024)
    assert overlap.volume_ml(np.zeros((2, 2, 2)), (1.0, 1.0, 1.0)) == 0.0


def test_accuracy_of_one_voxel_and_zero_size_masks():
    one = np.ones((1, 1, 1), bool)
    assert overlap.accuracy(one, one) == 1.0
    assert overlap.accuracy(one, ~one) == 0.0
    empty = np.zeros((0, 3, 3), bool)                   # zero-size masks: accuracy undefined (NaN), no error
    assert np.isnan(overlap.accuracy(empty, empty))
