"""Overlap, surface-distance and ROC metrics against hand-computed answers and independent
implementations (MONAI's metrics, scipy brute force)."""
import math

import numpy as np
import pytest

from LiverTumorSegLib.metrics import overlap, roc, surface


def cube(shape, start, size):
    mask = np.zeros(shape, dtype=bool)
    z, y, x = start
    mask[z:z + size, y:y + size, x:x + size] = True
    return mask


def random_blob(rng, shape=(12, 14, 16), fraction=0.5, smooth=1.5):
    from scipy import ndimage

    noise = ndimage.gaussian_filter(rng.standard_normal(shape), smooth)
    return noise > np.quantile(noise, 1.0 - fraction)


# ------------------------------------------------------------------------------------------------ overlap
def test_overlap_of_offset_cubes_matches_hand_computation():
    # 4^3 cubes, one shifted one voxel along z: intersection 4*4*3 = 48, each 64 voxels
    a = cube((10, 10, 10), (2, 2, 2), 4)
    b = cube((10, 10, 10), (3, 2, 2), 4)
    m = overlap.overlap_metrics(b, a)
    assert m["dice"] == pytest.approx(96 / 128)
    assert m["iou"] == pytest.approx(48 / 80)
    assert m["voe"] == pytest.approx(1 - 48 / 80)
    assert m["rvd"] == 0.0
    assert m["precision"] == pytest.approx(48 / 64)
    assert m["sensitivity"] == pytest.approx(48 / 64)
    assert m["specificity"] == pytest.approx((1000 - 80) / (1000 - 64))
    assert m["accuracy"] == pytest.approx((1000 - 32) / 1000)
    assert m["f1"] == m["dice"]


def test_rvd_sign_positive_for_over_segmentation():
    ref = cube((8, 8, 8), (2, 2, 2), 2)        # 8 voxels
    big = cube((8, 8, 8), (2, 2, 2), 4)        # 64 voxels
    assert overlap.rvd(big, ref) == pytest.approx((64 - 8) / 8)
    assert overlap.rvd(ref, big) == pytest.approx((8 - 64) / 64)


def test_empty_mask_conventions():
    empty = np.zeros((4, 4, 4), bool)
    full = cube((4, 4, 4), (1, 1, 1), 2)
    both = overlap.overlap_metrics(empty, empty)
    assert both["dice"] == 1.0 and both["iou"] == 1.0 and both["voe"] == 0.0 and both["rvd"] == 0.0
    assert both["precision"] == 1.0 and both["sensitivity"] == 1.0 and both["specificity"] == 1.0
    pred_only = overlap.overlap_metrics(full, empty)
    assert pred_only["dice"] == 0.0 and pred_only["voe"] == 1.0 and pred_only["precision"] == 0.0
    assert math.isnan(pred_only["rvd"]) and math.isnan(pred_only["sensitivity"])
    ref_only = overlap.overlap_metrics(empty, full)
    assert ref_only["dice"] == 0.0 and ref_only["rvd"] == -1.0 and ref_only["sensitivity"] == 0.0
    assert math.isnan(ref_only["precision"])
    assert math.isnan(overlap.specificity(full, np.ones((4, 4, 4), bool)))


def test_confusion_counts_add_and_shape_check():
    a = cube((6, 6, 6), (0, 0, 0), 3)
    b = cube((6, 6, 6), (1, 1, 1), 3)
    c = overlap.confusion_counts(b, a)
    assert (c.tp, c.fp, c.fn, c.tn) == (8, 19, 19, 216 - 46)
    assert (c + c).tp == 16 and (c + c).total == 432
    # numpy's own broadcasting error is a ValueError too: only the check's message shows the check ran
    with pytest.raises(ValueError, match=r"pred shape \(6, 6, 6\) differs from ref shape \(5, 6, 6\)"):
        overlap.confusion_counts(a, a[:-1])


def test_single_metric_functions_agree_with_overlap_metrics():
    rng = np.random.default_rng(1)
    a, b = random_blob(rng), random_blob(rng)
    m = overlap.overlap_metrics(a, b)
    for name in ("dice", "iou", "voe", "rvd", "precision", "sensitivity", "specificity", "accuracy", "f1"):
        assert getattr(overlap, name)(a, b) == pytest.approx(m[name])
    assert overlap.jaccard(a, b) == m["iou"] and overlap.recall(a, b) == m["sensitivity"]
    assert overlap.volume_ml(a, (2.0, 1.0, 0.5)) == pytest.approx(np.count_nonzero(a) * 1e-3)


def test_dice_matches_monai_dicemetric_on_random_blobs():
    torch = pytest.importorskip("torch")
    from monai.metrics import DiceMetric

    rng = np.random.default_rng(7)
    for _ in range(5):
        a, b = random_blob(rng, fraction=rng.uniform(0.1, 0.6)), random_blob(rng)
        metric = DiceMetric(include_background=True, reduction="none")
        expected = metric(torch.from_numpy(a[None, None].astype(np.float32)),
                          torch.from_numpy(b[None, None].astype(np.float32)))
        assert overlap.dice(a, b) == pytest.approx(float(expected), abs=1e-6)


def test_iou_and_confusion_metrics_match_monai_on_random_blobs():
    torch = pytest.importorskip("torch")
    from monai.metrics import MeanIoU, get_confusion_matrix, compute_confusion_matrix_metric

    rng = np.random.default_rng(11)
    for _ in range(5):
        a, b = random_blob(rng, fraction=rng.uniform(0.1, 0.6)), random_blob(rng)
        ta = torch.from_numpy(a[None, None].astype(np.float32))
        tb = torch.from_numpy(b[None, None].astype(np.float32))
        expected_iou = MeanIoU(include_background=True, reduction="none")(ta, tb)
        assert overlap.iou(a, b) == pytest.approx(float(expected_iou), abs=1e-6)
        matrix = get_confusion_matrix(ta, tb, include_background=True)
        for ours, monai_name in ((overlap.precision, "precision"), (overlap.sensitivity, "sensitivity"),
                                 (overlap.specificity, "specificity"), (overlap.accuracy, "accuracy"),
                                 (overlap.f1, "f1 score")):
            expected = compute_confusion_matrix_metric(monai_name, matrix)
            assert ours(a, b) == pytest.approx(float(expected), abs=1e-6), monai_name


# ------------------------------------------------------------------------------------------------ surface
def test_surface_voxels_are_face_connected_boundary():
    a = cube((8, 8, 8), (2, 2, 2), 4)
    s = surface.surface_voxels(a)
    assert np.count_nonzero(s) == 64 - 8
    assert not s[3:5, 3:5, 3:5].any()
    edge = np.ones((3, 3, 3), bool)                       # touches the array border everywhere
    assert np.count_nonzero(surface.surface_voxels(edge)) == 26


def test_offset_cubes_with_anisotropic_spacing_hand_computed():
    # A = 4^3 cube, B = A shifted +1 voxel along z; spacing (z, y, x) = (2.0, 1.0, 0.5) mm.
    # A -> B: the 16 voxels of A's bottom face (z=2) are 2.0 mm from B's bottom face; the 4 inner
    # voxels of A's top face (z=5) are 0.5 mm (one x step) from B's side faces; the other 36 are on
    # B's surface. Symmetric for B -> A.  Sum = 2 * (16*2.0 + 4*0.5) = 68 over 112 surface voxels.
    a = cube((10, 10, 10), (2, 2, 2), 4)
    b = cube((10, 10, 10), (3, 2, 2), 4)
    d = surface.surface_distances(b, a, (2.0, 1.0, 0.5))
    assert sorted(np.unique(d.pred_to_ref).tolist()) == [0.0, 0.5, 2.0]
    m = surface.surface_metrics(b, a, (2.0, 1.0, 0.5))
    assert m["assd_mm"] == pytest.approx(68 / 112)
    assert m["hd_mm"] == pytest.approx(2.0)
    assert m["hd95_mm"] == pytest.approx(2.0)           # P95 of 36x0, 4x0.5, 16x2.0 is 2.0
    assert m["rmsd_mm"] == pytest.approx(math.sqrt((32 * 4.0 + 8 * 0.25) / 112))


def test_disjoint_cubes_hausdorff_is_the_shift_in_mm():
    # 2^3 cubes at x = 2..3 and x = 7..8 (spacing x = 0.7 mm): every voxel is surface; the far layer of
    # each cube is 5 x-steps from the nearest voxel of the other, the near layer 4 steps.
    a = cube((6, 6, 20), (2, 2, 2), 2)
    b = cube((6, 6, 20), (2, 2, 7), 2)
    m = surface.surface_metrics(a, b, (3.0, 2.0, 0.7))
    assert m["hd_mm"] == pytest.approx(5 * 0.7)
    assert m["assd_mm"] == pytest.approx(4.5 * 0.7)


def test_surface_empty_conventions():
    """Two empty masks have no surface: NaN, not 0.0 (0.0 let tumor-free cases pull a tumor HD95 mean to 0 mm,
    down to 0.0 for a model that missed every tumor, whose misses are NaN)."""
    empty = np.zeros((5, 5, 5), bool)
    a = cube((5, 5, 5), (1, 1, 1), 2)
    for pred, ref in ((empty, empty), (a, empty), (empty, a)):
        values = surface.surface_metrics(pred, ref, (1, 1, 1))
        assert all(math.isnan(v) for v in values.values())


def test_surface_rejects_bad_spacing_and_shapes():
    a = cube((5, 5, 5), (1, 1, 1), 2)
    with pytest.raises(ValueError, match=r"spacing_zyx must be 3 positive, finite voxel sizes in mm"):
        surface.surface_metrics(a, a, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match=r"spacing_zyx must be 3 positive, finite voxel sizes in mm"):
        surface.surface_metrics(a, a, (1.0, 1.0))
    with pytest.raises(ValueError, match=r"pred shape \(5, 5, 5\) differs from ref shape \(5, 5, 4\)"):
        surface.surface_metrics(a, a[:, :, :-1], (1.0, 1.0, 1.0))


def test_spacing_given_as_a_geometry_or_volume_says_which_attribute_to_pass():
    """A CTVolume given as spacing_zyx printed its whole voxel array in the message; an ImageGeometry was refused
    without saying that its spacing is (x, y, z); evaluate_case said "float() argument must be a string or a real
    number, not 'ImageGeometry'"."""
    from LiverTumorSegLib.errors import LabelError
    from LiverTumorSegLib.metrics import evaluate_case, volume_ml
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry
    a = cube((5, 5, 5), (1, 1, 1), 2)
    geometry = ImageGeometry(spacing=(0.7, 0.8, 2.5))
    with pytest.raises(ValueError, match=r"got a CTVolume; pass its \.spacing_zyx\.$"):
        surface.hd95(a, a, CTVolume(a.astype(np.int16), geometry))
    geometry_advice = r"got an ImageGeometry; pass tuple\(geometry\.spacing\[::-1\]\), its spacing in \(z, y, x\) order"
    with pytest.raises(ValueError, match=geometry_advice):
        volume_ml(a, geometry)
    with pytest.raises(LabelError, match=r"case 'c1': spacing_zyx must be 3 voxel sizes in mm, " + geometry_advice):
        evaluate_case(a.astype(np.uint8), a.astype(np.uint8), geometry, case="c1")
    with pytest.raises(LabelError, match=r"got \(1\.0, 1\.0\) \(three positive numbers, \(z, y, x\) mm\)\.$"):
        evaluate_case(a.astype(np.uint8), a.astype(np.uint8), (1.0, 1.0), case="c1")
    assert evaluate_case(a.astype(np.uint8), a.astype(np.uint8), np.array(geometry.spacing[::-1]))["dice_liver"] == 1.0


def test_bounding_box_margin_and_empty():
    a = cube((10, 10, 10), (2, 3, 4), 2)
    assert surface.bounding_box(a) == (slice(2, 4), slice(3, 5), slice(4, 6))
    assert surface.bounding_box(a, margin=3) == (slice(0, 7), slice(0, 8), slice(1, 9))
    assert surface.bounding_box(np.zeros((3, 3, 3), bool)) is None
    # one margin per axis (post-processing grows the tumor box by its dilation's half-size per axis)
    assert surface.bounding_box(a, margin=(0, 1, 5)) == (slice(2, 4), slice(2, 6), slice(0, 10))
    assert surface.bounding_box(a, margin=np.int64(1)) == (slice(1, 5), slice(2, 6), slice(3, 7))
    with pytest.raises(ValueError, match="one value per axis"):
        surface.bounding_box(a, margin=(1, 1))


def test_union_bounding_box_is_the_box_of_both_masks_or_of_the_one_not_empty():
    a = cube((10, 10, 10), (2, 3, 4), 2)
    b = cube((10, 10, 10), (6, 0, 5), 4)
    empty = np.zeros_like(a)
    assert surface.union_bounding_box(a, b) == surface.bounding_box(a | b) == (slice(2, 10), slice(0, 5), slice(4, 9))
    assert surface.union_bounding_box(a, empty) == surface.union_bounding_box(empty, a) == surface.bounding_box(a)
    assert surface.union_bounding_box(empty, empty) is None


def brute_force_directed(src, dst, spacing):
    """Directed surface distances by an explicit pairwise distance matrix (tiny masks only)."""
    from scipy.spatial.distance import cdist

    ps = np.argwhere(surface.surface_voxels(src)) * np.asarray(spacing)
    pd = np.argwhere(surface.surface_voxels(dst)) * np.asarray(spacing)
    return cdist(ps, pd).min(axis=1)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_surface_matches_scipy_brute_force_on_random_blobs(seed):
    rng = np.random.default_rng(seed)
    spacing = (2.5, 0.8, 1.1)
    a = random_blob(rng, fraction=rng.uniform(0.2, 0.5))
    b = random_blob(rng, fraction=rng.uniform(0.2, 0.5))
    d = surface.surface_distances(a, b, spacing)
    ab, ba = brute_force_directed(a, b, spacing), brute_force_directed(b, a, spacing)
    np.testing.assert_allclose(np.sort(d.pred_to_ref), np.sort(ab), atol=1e-9)
    np.testing.assert_allclose(np.sort(d.ref_to_pred), np.sort(ba), atol=1e-9)
    pooled = np.concatenate([ab, ba])
    m = surface.surface_metrics(a, b, spacing)
    assert m["assd_mm"] == pytest.approx(pooled.mean())
    assert m["hd_mm"] == pytest.approx(pooled.max())
    assert m["hd95_mm"] == pytest.approx(max(np.percentile(ab, 95), np.percentile(ba, 95)))
    assert m["rmsd_mm"] == pytest.approx(np.sqrt(np.mean(pooled ** 2)))


@pytest.mark.parametrize("seed", [10, 11, 12])
def test_surface_matches_monai_on_random_blobs(seed):
    torch = pytest.importorskip("torch")
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    rng = np.random.default_rng(seed)
    spacing = (3.0, 0.75, 1.25)
    a = random_blob(rng, shape=(10, 24, 20), fraction=rng.uniform(0.1, 0.4))
    b = random_blob(rng, shape=(10, 24, 20), fraction=rng.uniform(0.1, 0.4))
    ta = torch.from_numpy(a[None, None].astype(np.float32))
    tb = torch.from_numpy(b[None, None].astype(np.float32))
    half_voxel = 0.5 * min(spacing)
    m = surface.surface_metrics(a, b, spacing)
    hd = float(compute_hausdorff_distance(ta, tb, include_background=True, spacing=spacing))
    hd95 = float(compute_hausdorff_distance(ta, tb, include_background=True, percentile=95, spacing=spacing))
    asd = float(compute_average_surface_distance(ta, tb, include_background=True, symmetric=True,
                                                 spacing=spacing))
    assert abs(m["hd_mm"] - hd) < half_voxel
    assert abs(m["hd95_mm"] - hd95) < half_voxel
    assert abs(m["assd_mm"] - asd) < half_voxel
    # same definitions, so in fact equal up to float32 rounding
    assert m["hd_mm"] == pytest.approx(hd, abs=1e-4)
    assert m["hd95_mm"] == pytest.approx(hd95, abs=1e-4)
    assert m["assd_mm"] == pytest.approx(asd, abs=1e-4)


def test_single_surface_functions_agree():
    rng = np.random.default_rng(4)
    a, b = random_blob(rng), random_blob(rng)
    m = surface.surface_metrics(a, b, (1.0, 2.0, 3.0))
    assert surface.assd(a, b, (1.0, 2.0, 3.0)) == m["assd_mm"]
    assert surface.hausdorff(a, b, (1.0, 2.0, 3.0)) == m["hd_mm"]
    assert surface.hd95(a, b, (1.0, 2.0, 3.0)) == m["hd95_mm"]
    assert surface.rmsd(a, b, (1.0, 2.0, 3.0)) == m["rmsd_mm"]


def test_cropping_does_not_change_distances():
    # same pair embedded in a much larger array (crop path) equals the small-array result
    rng = np.random.default_rng(5)
    a, b = random_blob(rng), random_blob(rng)
    big_a = np.zeros((40, 50, 60), bool)
    big_b = np.zeros((40, 50, 60), bool)
    big_a[10:22, 20:34, 30:46] = a
    big_b[10:22, 20:34, 30:46] = b
    small = surface.surface_metrics(a, b, (1.5, 1.0, 0.8))
    large = surface.surface_metrics(big_a, big_b, (1.5, 1.0, 0.8))
    for key in small:
        assert small[key] == pytest.approx(large[key])


def _distances_as_the_whole_distance_map_gave_them(pred, ref, spacing):
    """The directed distances as surface_distances computed them before: scipy's float64 distance map of the
    whole padded box, read at the surface voxels."""
    from scipy import ndimage

    box = surface.bounding_box(pred | ref)
    surface_pred = surface.surface_voxels(np.pad(pred[box], 1))
    surface_ref = surface.surface_voxels(np.pad(ref[box], 1))
    return (ndimage.distance_transform_edt(~surface_ref, sampling=spacing)[surface_pred],
            ndimage.distance_transform_edt(~surface_pred, sampling=spacing)[surface_ref])


def _hand_made_shapes():
    """(pred, ref) pairs: shifted and resized boxes, a sphere against an ellipsoid, one voxel against an L, masks
    on the array's border, a hollow shell around a core, a thin oblique rod."""
    shape = (18, 22, 26)
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    box_a, box_b = np.zeros(shape, bool), np.zeros(shape, bool)
    box_a[3:12, 4:15, 5:20] = True
    box_b[5:14, 2:13, 8:25] = True
    sphere = (z - 9) ** 2 + (y - 11) ** 2 + (x - 13) ** 2 <= 36
    ellipsoid = ((z - 8) / 5.0) ** 2 + ((y - 12) / 8.0) ** 2 + ((x - 12) / 10.0) ** 2 <= 1
    dot, ell = np.zeros(shape, bool), np.zeros(shape, bool)
    dot[9, 3, 20] = True
    ell[2:16, 5, 6] = True
    ell[15, 5:18, 6] = True
    edge_a, edge_b = np.zeros(shape, bool), np.zeros(shape, bool)
    edge_a[0:6, :, 0:4] = True
    edge_b[12:, 15:, 20:] = True
    shell = (z - 9) ** 2 + (y - 11) ** 2 + (x - 13) ** 2 <= 64
    shell &= ~sphere
    core = (z - 9) ** 2 + (y - 11) ** 2 + (x - 13) ** 2 <= 4
    rod = (np.abs(z - y * 0.7) < 1.2) & (np.abs(x - y) < 1.5)
    return [(box_a, box_b), (sphere, ellipsoid), (dot, ell), (edge_a, edge_b), (shell, core), (rod, ellipsoid),
            (ellipsoid, ellipsoid)]


def test_surface_distances_are_those_of_the_whole_distance_map_bit_for_bit():
    """surface_distances no longer makes the box's float64 distance maps (54 bytes a box voxel at the peak); its
    distances, and so every metric, are still exactly those of the maps, at anisotropic spacings."""
    for spacing in ((2.5, 0.7421875, 0.7421875), (5.0, 0.69, 1.3), (0.8, 3.0, 0.5), (1.0, 1.0, 1.0)):
        for pred, ref in _hand_made_shapes():
            got = surface.surface_distances(pred, ref, spacing)
            for distances, expected in zip((got.pred_to_ref, got.ref_to_pred),
                                           _distances_as_the_whole_distance_map_gave_them(pred, ref, spacing)):
                assert distances.dtype == np.float64 and distances.tobytes() == expected.tobytes()
    pred, ref = _hand_made_shapes()[0]
    two_d = surface.surface_distances(pred[7], ref[7], (0.7, 1.9))  # any number of axes, as before
    assert two_d.pred_to_ref.tobytes() == _distances_as_the_whole_distance_map_gave_them(pred[7], ref[7],
                                                                                         (0.7, 1.9))[0].tobytes()


def test_surface_distances_need_no_float64_distance_map_of_the_box():
    """A liver-sized box (300 x 300 x 200 voxels) took 1.4 GiB of distance maps and index arrays at the peak
    (53.6 bytes a box voxel; 53.4 here); the nearest-voxel indices alone take 12 and the surfaces 2 (17 here)."""
    import tracemalloc

    shape = (40, 60, 60)
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    ref = ((z - 20) / 16.0) ** 2 + ((y - 30) / 25.0) ** 2 + ((x - 30) / 24.0) ** 2 <= 1
    pred = ((z - 21) / 16.0) ** 2 + ((y - 29) / 24.0) ** 2 + ((x - 31) / 26.0) ** 2 <= 1
    box_voxels = np.prod([s.stop - s.start + 2 for s in surface.bounding_box(pred | ref)])
    surface.surface_metrics(pred[18:22], ref[18:22], (2.0, 0.8, 0.75))  # scipy's modules imported: not counted
    tracemalloc.start()
    try:
        metrics = surface.surface_metrics(pred, ref, (2.0, 0.8, 0.75))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.isfinite(metrics["hd95_mm"]) and peak / box_voxels < 20, f"{peak / box_voxels:.1f} bytes a box voxel"


# ------------------------------------------------------------------------------------------------ ROC
def test_roc_auc_hand_example_and_ties():
    assert roc.roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert roc.roc_auc(np.array([0.5, 0.5]), np.array([0, 1])) == pytest.approx(0.5)
    assert roc.roc_auc(np.array([0.2, 0.9]), np.array([0, 1])) == 1.0
    assert math.isnan(roc.roc_auc(np.array([0.2, 0.9]), np.array([1, 1])))
    curve = roc.roc_curve(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    np.testing.assert_allclose(curve.fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(curve.tpr, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(curve.thresholds, [np.inf, 0.8, 0.4, 0.35, 0.1])


def test_every_curve_is_made_from_counts_by_one_function_that_leaves_out_empty_scores():
    """The exact curve, the counted levels and the pooled bins each turned counts into a curve with their own
    filtering of empty scores; one function does it now (given counts in decreasing score order)."""
    curve = roc._curve_from_counts(np.array([0.9, 0.5, 0.3, 0.1]), np.array([1, 0, 0, 1]), np.array([0, 0, 2, 2]))
    np.testing.assert_array_equal(curve.thresholds, [np.inf, 0.9, 0.3, 0.1])  # 0.5: no voxel, no point
    np.testing.assert_array_equal(curve.tpr, [0, 0.5, 0.5, 1])
    np.testing.assert_array_equal(curve.fpr, [0, 0, 0.5, 1])
    levels = roc.count_levels(np.array([3, 7, 7, 5], np.uint8), np.array([0, 1, 0, 1]))
    assert (levels.low, levels.high, levels.positives.tolist(), levels.negatives.tolist()) == (
        3, 7, [0, 0, 1, 0, 1], [1, 0, 0, 0, 1])
    np.testing.assert_array_equal(levels.curve().thresholds, [np.inf, 7, 5, 3])
    assert roc.count_levels(np.array([0.5, 0.7], np.float32), np.array([0, 1])) is None  # floats are ranked


@pytest.mark.parametrize("stored", ["uint8", "float32"])
def test_add_and_score_gives_the_cases_roc_auc_and_the_pool_that_add_gives(stored):
    rng = np.random.default_rng(12)
    labels = rng.random((4, 6, 7)) < 0.3
    probability = np.clip(rng.normal(0.3, 0.2, labels.shape) + 0.3 * labels, 0, 1)
    scores, divisor = ((np.round(probability * 255).astype(np.uint8), 255.0) if stored == "uint8"
                       else (probability.astype(np.float32), 1.0))
    scored, added = roc.RocAccumulator(), roc.RocAccumulator()
    assert scored.add_and_score(scores, labels, divisor=divisor) == roc.roc_auc(scores, labels)
    added.add(scores, labels, divisor=divisor)
    np.testing.assert_array_equal(scored.positives, added.positives)
    np.testing.assert_array_equal(scored.negatives, added.negatives)
    with pytest.raises(ValueError, match="NaN"):  # a refused map leaves the pool as it was
        scored.add_and_score(np.array([0.2, np.nan], np.float32), np.array([0, 1]))
    np.testing.assert_array_equal(scored.positives, added.positives)


def mann_whitney_auc(scores, labels):
    pos, neg = scores[labels == 1], scores[labels == 0]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return (greater + 0.5 * ties) / (pos.size * neg.size)


def test_roc_auc_equals_mann_whitney_with_many_ties():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.uniform(0, 1, 500) * 0.6 + labels * 0.3, 1)   # heavy ties
    assert roc.roc_auc(scores, labels) == pytest.approx(mann_whitney_auc(scores, labels), abs=1e-12)


def test_roc_accumulator_equals_exact_curve_of_binned_scores():
    rng = np.random.default_rng(9)
    acc = roc.RocAccumulator(n_bins=20)
    all_scores, all_labels = [], []
    for _ in range(3):
        labels = rng.integers(0, 2, (4, 5, 6))
        scores = np.clip(rng.uniform(0, 1, labels.shape) * 0.7 + labels * 0.3, 0, 1).astype(np.float32)
        acc.add(scores, labels)
        all_scores.append(np.minimum(np.floor(scores * 20), 19) / 20)
        all_labels.append(labels)
    exact = roc.roc_curve(np.concatenate([s.ravel() for s in all_scores]),
                          np.concatenate([y.ravel() for y in all_labels]))
    pooled = acc.curve()
    np.testing.assert_allclose(pooled.fpr, exact.fpr)
    np.testing.assert_allclose(pooled.tpr, exact.tpr)
    assert pooled.auc == pytest.approx(exact.auc)
    d = pooled.to_dict(max_points=5)
    assert len(d["fpr"]) == 5 and d["thresholds"][0] is None and d["fpr"][-1] == 1.0


def test_roc_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN or infinite"):
        roc.roc_curve(np.array([0.1, np.nan]), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"scores has shape \(2,\), labels \(3,\)"):
        roc.roc_curve(np.array([0.1, 0.2]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="n_bins must be >= 1"):
        roc.RocAccumulator(n_bins=0)


def test_roc_refuses_maps_of_the_same_size_but_another_shape():
    """A transposed probability map (same size) was flattened and scored against the labels: AUC 0.499
    instead of 1.0, without a word."""
    from LiverTumorSegLib.metrics.roc import RocAccumulator, roc_auc
    labels = np.zeros((4, 6, 8), np.uint8)
    labels[1:3, 2:4, 3:6] = 1
    prob = labels.astype(np.float32)
    assert roc_auc(prob, labels) == 1.0
    with pytest.raises(ValueError, match=r"shape \(8, 6, 4\), labels \(4, 6, 8\)"):
        roc_auc(prob.T, labels)
    with pytest.raises(ValueError, match="give them on one grid"):
        RocAccumulator().add(prob.T, labels)


def test_roc_of_integer_and_boolean_scores_ranks_them_by_value():
    """roc_curve sorted by -scores: for uint8/uint16 that wraps (-255 -> 1) and for int8 -(-128) is -128, so a
    perfect ranking gave AUC 0.5; bool scores raised TypeError. The accumulator clipped a raw uint8 map into its
    top bin (AUC 0.75 here) and refuses it now."""
    from LiverTumorSegLib.metrics.roc import RocAccumulator, roc_auc

    labels = np.array([0, 0, 1, 1])
    for scores in (np.array([0, 100, 255, 200], np.uint8), np.array([0, 100, 255, 200], np.uint16),
                   np.array([-128, 0, 127, 5], np.int8), np.array([False, False, True, True])):
        assert roc_auc(scores, labels) == 1.0, scores.dtype
    assert roc_auc(np.array([0, 200, 255, 100], np.uint8), labels) == 0.75
    with pytest.raises(ValueError, match="divide by 255"):
        RocAccumulator().add(np.array([0, 100, 255, 200], np.uint8), labels)
    accumulator = RocAccumulator()
    accumulator.add(np.array([False, False, True, True]), labels)
    assert accumulator.curve().auc == 1.0


def _binned_counts(probabilities_float32, labels, n_bins=1000):
    """The pooled accumulator's bins as it computed them on a whole float32 map (before 2026-11-28)."""
    bins = np.clip((np.clip(probabilities_float32.ravel(), 0.0, 1.0) * n_bins).astype(np.int64), 0, n_bins - 1)
    positive = labels.ravel() != 0
    return (np.bincount(bins[positive], minlength=n_bins), np.bincount(bins[~positive], minlength=n_bins))


@pytest.mark.parametrize("chunk", [None, 97, 50, 5])
def test_roc_of_a_255_map_as_stored_equals_that_of_its_probabilities_exactly(monkeypatch, chunk):
    """evaluate --prob scores a `segment --probabilities` map (uint8 255 x p, int16 as read) as stored, counted
    per level, instead of sorting a float copy: the per-case AUC, the curve and the pooled bins must be exactly
    those of the float32 probabilities (k / 255) the sort-based code scored, ties and empty levels included."""
    if chunk is not None:  # 97: whole slabs of 8 x 9 voxels a piece; 50: a slab split into its rows; 5: rows split
        monkeypatch.setattr(roc, "CHUNK_VOXELS", chunk)
    rng = np.random.default_rng(28)
    pooled_levels, pooled_floats = roc.RocAccumulator(), roc.RocAccumulator()
    expected_pos, expected_neg = np.zeros(1000, np.int64), np.zeros(1000, np.int64)
    for case in range(6):
        shape = (int(rng.integers(1, 12)), 8, 9)
        labels = rng.random(shape) < (0.05 + 0.15 * case)
        levels = rng.integers(0, 256, shape).astype(np.uint8)
        if case % 2:  # few levels, many ties, some tumor-ranked
            levels = np.where(labels, rng.integers(100, 140, shape), rng.integers(0, 120, shape)).astype(np.uint8)
        floats = levels.astype(np.float32) / 255.0  # what io.probability makes of it
        exact = roc.roc_curve(floats, labels)  # float scores: the sort-based exact curve
        for stored in (levels, levels.astype(np.int16)):
            assert roc.roc_auc(stored, labels) == exact.auc
            counted = roc.roc_curve(stored, labels)
            np.testing.assert_array_equal(counted.fpr, exact.fpr)
            np.testing.assert_array_equal(counted.tpr, exact.tpr)
            np.testing.assert_array_equal(counted.thresholds[1:], np.round(exact.thresholds[1:] * 255))  # levels
        pooled_levels.add(levels.astype(np.int16), labels, divisor=255)
        pooled_floats.add(floats, labels)
        pos, neg = _binned_counts(floats, labels)
        expected_pos += pos
        expected_neg += neg
    for pooled in (pooled_levels, pooled_floats):
        np.testing.assert_array_equal(pooled.positives, expected_pos)
        np.testing.assert_array_equal(pooled.negatives, expected_neg)
    assert pooled_levels.curve().auc == pooled_floats.curve().auc


@pytest.mark.parametrize("chunk", [None, 5])
def test_roc_accumulator_divides_wide_integer_maps_and_refuses_a_divisor_for_floats(monkeypatch, chunk):
    """An integer map spanning more values than are counted per level is binned in pieces: its divisor was ignored
    there (every nonzero value clipped into the top bin); a float map with a divisor was binned undivided."""
    if chunk is not None:
        monkeypatch.setattr(roc, "CHUNK_VOXELS", chunk)
    scores = np.array([0, 10000, 50000, 100000, 65000, 99999], np.int32)  # spans > MAX_COUNTED_LEVELS values
    labels = np.array([0, 0, 1, 1, 0, 1], bool)
    accumulator = roc.RocAccumulator(n_bins=10)
    accumulator.add(scores, labels, divisor=100000)
    np.testing.assert_array_equal(accumulator.positives, [0, 0, 0, 0, 0, 1, 0, 0, 0, 2])
    np.testing.assert_array_equal(accumulator.negatives, [1, 1, 0, 0, 0, 0, 1, 0, 0, 0])
    with pytest.raises(ValueError, match="divisor 255 is for integer maps"):
        accumulator.add(scores.astype(np.float32) * 255 / 100000, labels, divisor=255)
    np.testing.assert_array_equal(accumulator.positives, [0, 0, 0, 0, 0, 1, 0, 0, 0, 2])  # left as it was


@pytest.mark.parametrize("chunk", [None, 50, 5])
def test_roc_auc_of_a_float_map_is_the_exact_mann_whitney_count(monkeypatch, chunk):
    """Float maps are scored by the Mann-Whitney count (the smaller class sorted, the other searched in it piece
    by piece), exact in integers and rounded once: equal to the pairwise count, ties half, either class the
    smaller, reoriented (non-contiguous) views too."""
    from fractions import Fraction

    if chunk is not None:
        monkeypatch.setattr(roc, "CHUNK_VOXELS", chunk)
    rng = np.random.default_rng(29)
    for share in (0.1, 0.5, 0.9):
        labels = rng.random((5, 7, 6)) < share
        scores = np.round(np.clip(rng.normal(0.4, 0.2, labels.shape) + 0.2 * labels, 0, 1), 2).astype(np.float32)
        pos, neg = scores[labels], scores[~labels]
        twice = 2 * int((pos[:, None] > neg[None, :]).sum()) + int((pos[:, None] == neg[None, :]).sum())
        expected = float(Fraction(twice, 2 * pos.size * neg.size))
        assert roc.roc_auc(scores, labels) == expected
        assert roc.roc_auc(scores[::-1].transpose(2, 0, 1), labels[::-1].transpose(2, 0, 1)) == expected
        assert roc.roc_auc(scores.astype(np.float64), labels) == expected
        assert roc.roc_curve(scores, labels).auc == pytest.approx(expected, abs=1e-12)
    assert math.isnan(roc.roc_auc(np.array([0.2, 0.3], np.float32), np.array([0, 0])))
    with pytest.raises(ValueError, match="NaN"):
        roc.roc_auc(np.array([0.2, np.nan], np.float32), np.array([0, 1]))
    accumulator = roc.RocAccumulator()
    with pytest.raises(ValueError, match="NaN"):  # found in a later piece: nothing of the map is added
        accumulator.add(np.array([0.2] * 60 + [np.inf], np.float32), np.ones(61))
    assert accumulator.positives.sum() == 0 and accumulator.negatives.sum() == 0


def _peak_bytes_per_voxel(function, *args, **kwargs):
    import tracemalloc

    tracemalloc.start()
    try:
        function(*args, **kwargs)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32])
def test_roc_memory_beside_the_map_is_bounded(monkeypatch, dtype):
    """evaluate --prob needed about 37 bytes a voxel for a uint8 map (a float32 copy, the exact ROC's argsort
    and sorted copies, the pooled bins' float and int64 copies) and about 100 for a float map: 5.6 GiB for a
    600-slice CT, a MemoryError for 900. Now the per-case AUC and the pooled bins allocate well below 10 bytes a
    voxel beside the map (measured here with pieces of 16 Ki voxels; 1 Mi by default: about 17 MiB)."""
    monkeypatch.setattr(roc, "CHUNK_VOXELS", 1 << 14, raising=False)
    rng = np.random.default_rng(30)
    shape = (32, 128, 128)  # 0.5 Mi voxels
    labels = np.zeros(shape, bool)
    labels[8:20, 30:90, 40:100] = True  # a large structure: the sorted smaller class is big
    if dtype == np.float32:
        scores = np.clip(rng.normal(0.2, 0.2, shape) + 0.5 * labels, 0, 1).astype(np.float32)
        divisor = 1.0
    else:
        scores = np.clip(rng.normal(50, 40, shape) + 120 * labels, 0, 255).astype(dtype)
        divisor = 255.0
    voxels = scores.size
    assert _peak_bytes_per_voxel(roc.roc_auc, scores, labels) / voxels < 10
    accumulator = roc.RocAccumulator()
    assert _peak_bytes_per_voxel(accumulator.add, scores, labels, **({"divisor": divisor} if divisor != 1 else {})
                                 ) / voxels < 10


def test_hd95_of_directed_percentiles_can_sit_just_below_the_pooled_percentile():
    """The docstring said HD95 (larger directed P95) is never below medpy's pooled P95; numpy's interpolation can put
    the pooled one above both: directed distances [0, 1] and [0, 1] mm give P95 0 + 0.95 x 1 = 0.95 mm each, while
    the pooled [0, 0, 1, 1] has its P95 at position 0.95 x 3 = 2.85, between two 1s: 1.0 mm."""
    from LiverTumorSegLib.metrics.surface import SurfaceDistances, surface_metrics_from_distances

    distances = SurfaceDistances(np.array([0.0, 1.0]), np.array([0.0, 1.0]))
    metrics = surface_metrics_from_distances(distances)
    assert metrics["hd95_mm"] == pytest.approx(0.95)
    assert np.percentile(distances.pooled, 95) == pytest.approx(1.0)                 # medpy's hd95 definition
    assert metrics["assd_mm"] == pytest.approx(0.5) and metrics["hd_mm"] == 1.0
    assert metrics["rmsd_mm"] == pytest.approx(np.sqrt(0.5))
