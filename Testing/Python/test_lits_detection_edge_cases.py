"""Edge cases of LiTS lesion detection (LiverTumorSegLib.metrics.lits): IoU exactly 0.5, no prediction, a false lesion
beside a found one. The earlier tests let each of them through: every test here fails when one operator or constant
of the code it covers is changed (checked by mutation in stop 26). Known inputs, known answers."""
import math
import tracemalloc

import numpy as np
import pytest

from LiverTumorSegLib.metrics import lits


def _detection_and_peak_bytes(pred, ref):
    """``lits.detect_lesions(pred, ref)`` and the peak of the memory Python allocated during it (tracemalloc)."""
    tracemalloc.start()
    try:
        result = lits.detect_lesions(pred, ref)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


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

    ref = np.zeros((64, 128, 128), bool)              # 1 Mi voxels, two small lesions in the middle
    pred = np.zeros_like(ref)
    ref[30:34, 60:64, 60:64] = True
    pred[31:35, 61:66, 60:64] = True
    lits.detect_lesions(pred[28:36], ref[28:36])      # scipy's modules imported: not counted
    result, peak = _detection_and_peak_bytes(pred, ref)
    assert (result.ref_lesions, result.pred_lesions) == (1, 1)
    assert peak / ref.size < 0.1, f"{peak / ref.size:.2f} bytes a voxel"


def _dense_reference_detection(pred, ref, iou_threshold=0.5):
    """The grouping and counts from the dense ``predicted x reference`` intersection table (the code before
    stop 48, kept here as the reference, with each prediction matched to a merged group as the LiTS script matches
    it): ``(ref_group, pred_group, detected, false positives, no overlap)``."""
    from scipy import ndimage

    structure = np.ones((3, 3, 3), bool)
    ref_ids, n_ref = ndimage.label(ref, structure=structure)
    pred_ids, n_pred = ndimage.label(pred, structure=structure)
    inter = np.zeros((n_pred, n_ref), dtype=np.int64)
    for i in range(n_pred):
        for j in range(n_ref):
            inter[i, j] = np.count_nonzero((pred_ids == i + 1) & (ref_ids == j + 1))
    ref_group, pred_group = np.arange(n_ref), np.full(n_pred, -1)
    if n_pred and n_ref:
        best_pred, group_of_pred = inter.argmax(axis=0), {}
        for j in np.flatnonzero(inter.max(axis=0) > 0):
            group_of_pred.setdefault(int(best_pred[j]), n_ref + int(best_pred[j]))
            ref_group[j] = group_of_pred[int(best_pred[j])]
        groups = sorted(set(ref_group.tolist()), key=lambda g: int(np.flatnonzero(ref_group == g)[0]))
        for i in range(n_pred):  # the merged group it shares most voxels with (LiTS: ties to the lowest reference)
            if inter[i].max() > 0:
                summed = [inter[i, ref_group == g].sum() for g in groups]
                pred_group[i] = groups[int(np.argmax(summed))]
    sizes_ref = np.bincount(ref_ids.ravel(), minlength=n_ref + 1)[1:]
    sizes_pred = np.bincount(pred_ids.ravel(), minlength=n_pred + 1)[1:]
    detected_groups = set()
    for g in np.unique(ref_group):
        refs, preds = ref_group == g, pred_group == g
        shared = int(inter[np.ix_(preds, refs)].sum())
        union = int(sizes_ref[refs].sum() + sizes_pred[preds].sum()) - shared
        if union and shared / union > iou_threshold:
            detected_groups.add(int(g))
    detected = sum(1 for j in range(n_ref) if int(ref_group[j]) in detected_groups)
    false_positive = sum(1 for g in pred_group if int(g) not in detected_groups)
    no_overlap = int(np.count_nonzero(inter.sum(axis=1) == 0)) if n_ref else int(n_pred)
    return ref_group, pred_group, detected, false_positive, no_overlap


@pytest.mark.parametrize("seed", range(12))
def test_sparse_lesion_pairs_group_and_count_as_the_dense_table_did(seed):
    """The intersection table now holds only the overlapping pairs (the dense one took 8 bytes a pair of lesions);
    random blob masks with splits, merges, ties and misses give the same groups and counts as the dense table."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    shape = (6, 24, 24)
    ref = ndimage.gaussian_filter(rng.random(shape), 1.0) > 0.55
    pred = ndimage.gaussian_filter(rng.random(shape), 1.0) > rng.uniform(0.5, 0.6)
    pred |= ref & (rng.random(shape) > 0.5)  # partly overlapping
    ref_group, pred_group, detected, false_positive, no_overlap = _dense_reference_detection(pred, ref)
    pair_pred, pair_ref, voxels = lits._overlap_pairs(*(ndimage.label(m, structure=np.ones((3, 3, 3)))[0]
                                                        for m in (pred, ref)), int(ref_group.size))
    sparse_ref_group, sparse_pred_group = lits._group_lesions(pair_pred, pair_ref, voxels, pred_group.size,
                                                              ref_group.size)
    assert sparse_ref_group.tolist() == ref_group.tolist() and sparse_pred_group.tolist() == pred_group.tolist()
    result = lits.detect_lesions(pred, ref)
    assert (result.detected, result.false_positive, result.pred_no_overlap) == (detected, false_positive, no_overlap)
    assert result.ref_lesions == ref_group.size and result.pred_lesions == pred_group.size


def test_tens_of_thousands_of_speckle_lesions_are_counted_in_bounded_memory():
    """An untrained model's speckles: 6,250 predicted against 6,251 reference one-voxel lesions. The dense table
    needed 312 MB (and the loop over groups x lesions took a quadratic time); the pairs hold one here."""
    import time

    pred = np.zeros((20, 100, 100), bool)
    ref = np.zeros_like(pred)
    pred[::2, ::4, ::4] = True      # each voxel its own 26-connected lesion
    ref[::2, 2::4, 2::4] = True     # none touching a predicted one
    ref[0, 0, 0] = pred[0, 0, 0] = True  # ... but one shared lesion (2 voxels away from the next in each mask)
    lits.detect_lesions(pred[:2], ref[:2])  # scipy's modules imported: not counted
    start = time.perf_counter()
    result, peak = _detection_and_peak_bytes(pred, ref)
    seconds = time.perf_counter() - start
    assert (result.ref_lesions, result.pred_lesions) == (6251, 6250)
    assert (result.detected, result.pred_no_overlap, result.false_positive) == (1, 6249, 6249)
    assert peak < 100 << 20, f"{peak / 2 ** 20:.0f} MiB"
    assert seconds < 60, seconds  # a bound on the algorithm (quadratic before), not a timing


def test_a_prediction_joins_the_merged_group_it_overlaps_most_as_the_lits_script_matches_it():
    """References A, B, C (rows 0, 2, 4; 6-connected lesions). P3 covers most of A; P1 spans B and C (merging
    them); P2 touches A (3 voxels), B (2) and C (2). The LiTS script matches P2 to the merged lesion B+C (4 voxels
    against A's 3): every group detected (B+C: IoU 14/26), no false positive. P2 used to join A's group (its single
    largest overlap), which left B+C at IoU 10/21 (missed, P1 a false positive): 1 of 3 detected."""
    ref = np.zeros((1, 5, 12), bool)
    pred = np.zeros_like(ref)
    ref[0, 0, :10] = ref[0, 2, :10] = ref[0, 4, :10] = True  # A, B, C
    pred[0, 0, :6] = True  # P3: 6 voxels of A
    pred[0, 2, :5] = pred[0, 3, 0] = pred[0, 4, :5] = True  # P1: 5 of B, 5 of C
    pred[0, 0, 7:10] = pred[0, 1, 9] = pred[0, 2, 8:10] = pred[0, 3, 9] = pred[0, 4, 8:10] = True  # P2
    result = lits.detect_lesions(pred, ref, connectivity=6)
    assert (result.ref_lesions, result.pred_lesions) == (3, 3)
    assert (result.detected, result.missed, result.false_positive, result.detected_groups) == (3, 0, 0, 2)
    assert [round(lesion["iou"], 4) for lesion in result.lesions] == [0.6, round(14 / 26, 4), round(14 / 26, 4)]


def test_a_prediction_that_merged_a_lesion_can_leave_it_for_a_group_it_overlaps_more():
    """P1 is the largest overlap of the small reference X (2 voxels, no other prediction touches it) but shares 8
    voxels with Y, whose largest overlap is P2 (10 voxels). The LiTS script matches P1 to Y's group, so X's group has
    no prediction (missed) and Y's holds P1 and P2. P1 used to stay in X's group: X detected with IoU 2/11, Y with
    10/20."""
    ref = np.zeros((1, 3, 20), bool)
    pred = np.zeros_like(ref)
    ref[0, 0, :2] = True  # X
    ref[0, 2, :] = True  # Y
    pred[0, 0, :2] = pred[0, 1, 1] = pred[0, 2, 1:9] = True  # P1: 2 of X, 8 of Y (one lesion through row 1)
    pred[0, 2, 10:] = True  # P2: 10 of Y
    result = lits.detect_lesions(pred, ref, connectivity=6, iou_threshold=0.1)
    assert (result.ref_lesions, result.pred_lesions) == (2, 2)
    by_size = {lesion["voxels"]: lesion for lesion in result.lesions}
    assert by_size[2]["detected"] is False and by_size[2]["iou"] == 0.0
    assert by_size[20]["detected"] is True and by_size[20]["iou"] == pytest.approx(18 / 23)
    assert (result.detected, result.missed, result.false_positive, result.detected_groups) == (1, 1, 0, 1)
