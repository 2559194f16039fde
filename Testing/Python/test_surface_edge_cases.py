"""Edge cases of LiverTumorSegLib.metrics.surface with integer masks. The earlier tests let each of them through: every
test here fails when one operator or constant of the code it covers is changed (checked by mutation in stop 26).
Known inputs, known answers."""
import numpy as np

from LiverTumorSegLib.metrics import surface


def test_surface_voxels_of_integer_mask_equal_those_of_the_boolean_mask():
    mask = np.zeros((8, 8, 8), np.uint8)
    mask[2:6, 2:6, 2:6] = 1                          # 4^3 cube: 64 voxels, 8 inner, 56 on the surface
    s = surface.surface_voxels(mask)
    assert s.dtype == bool and np.count_nonzero(s) == 56
    np.testing.assert_array_equal(s, surface.surface_voxels(mask.astype(bool)))
    np.testing.assert_array_equal(surface.surface_voxels(mask * 2), s)     # any nonzero label is foreground


def test_surface_metrics_of_integer_masks_match_the_hand_computed_boolean_case():
    # 4^3 cubes offset by one z voxel, spacing (2.0, 1.0, 0.5): ASSD 68/112 mm, HD 2.0 mm (see test_metrics.py)
    a = np.zeros((10, 10, 10), np.uint8)
    a[2:6, 2:6, 2:6] = 1
    b = np.zeros_like(a)
    b[3:7, 2:6, 2:6] = 2                             # label 2: nonzero = foreground
    m = surface.surface_metrics(b, a, (2.0, 1.0, 0.5))
    assert abs(m["assd_mm"] - 68 / 112) < 1e-9 and abs(m["hd_mm"] - 2.0) < 1e-9
    assert m == surface.surface_metrics(b.astype(bool), a.astype(bool), (2.0, 1.0, 0.5))


def test_surfaces_are_6_connected_and_the_lits_scripts_18_connected_ones_give_a_lower_assd():
    """The docstring's numbers: our surface is the 6-connected one of MONAI and medpy; the LiTS script's Surface class
    erodes with generate_binary_structure(3, 2), a thicker surface whose ASSD and RMSD are lower on the same masks
    (1.36 against 1.56 mm for two liver-like ellipsoids) while the maximum is the same."""
    from scipy import ndimage

    shape, spacing = (40, 120, 120), (5.0, 0.7, 0.7)
    grid = np.indices(shape).astype(float)

    def ellipsoid(centre, radii_mm):
        return sum(((grid[i] - centre[i]) * spacing[i] / radii_mm[i]) ** 2 for i in range(3)) <= 1

    ref, pred = ellipsoid((20, 60, 60), (80, 30, 35)), ellipsoid((20.4, 62, 58), (76, 33, 33))

    def lits_script_surface(mask):  # the LiTS script's Surface.compute_contour
        return mask ^ ndimage.binary_erosion(mask, ndimage.generate_binary_structure(3, 2))

    np.testing.assert_array_equal(surface.surface_voxels(ref), ref & ~ndimage.binary_erosion(ref))
    assert (np.count_nonzero(surface.surface_voxels(ref)), np.count_nonzero(lits_script_surface(ref))) == \
        (14490, 19598)
    s_pred, s_ref = lits_script_surface(pred), lits_script_surface(ref)
    pooled = np.concatenate([ndimage.distance_transform_edt(~s_ref, sampling=spacing)[s_pred],
                             ndimage.distance_transform_edt(~s_pred, sampling=spacing)[s_ref]])
    ours = surface.surface_metrics(pred, ref, spacing)
    assert round(ours["assd_mm"], 2) == 1.56 and round(float(pooled.mean()), 2) == 1.36
    assert round(ours["rmsd_mm"], 2) == 2.18 and round(float(np.sqrt(np.mean(pooled ** 2))), 2) == 1.99
    assert ours["hd_mm"] == float(pooled.max())


def test_bounding_box_is_the_box_of_every_nonzero_voxel_whatever_the_dimensions():
    """bounding_box finds the first axis's extent, then the others from that slab: the same box as reducing over
    each pair of axes, with margins clipped, on 1-D to 4-D masks, a uint8 label map, a flipped view, and None for
    an empty mask."""
    from LiverTumorSegLib.metrics.surface import bounding_box

    def by_each_axis(mask, margin):
        slices = []
        for axis in range(mask.ndim):
            present = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis)))
            slices.append(slice(max(int(present[0]) - margin, 0), min(int(present[-1]) + 1 + margin, mask.shape[axis])))
        return tuple(slices)

    rng = np.random.default_rng(9)
    for shape in ((17,), (6, 9), (5, 8, 7), (3, 4, 5, 6)):
        for _ in range(5):
            mask = (rng.random(shape) > 0.93).astype(np.uint8) * 2
            if not mask.any():
                mask[(0,) * len(shape)] = 1
            for margin in (0, 1, 3):
                assert bounding_box(mask, margin) == by_each_axis(mask, margin)
    labels = np.zeros((6, 10, 12), np.uint8)
    labels[2:4, 3, 5:9] = 1
    flipped = labels[::-1, :, ::-1]
    assert bounding_box(flipped) == (slice(2, 4), slice(3, 4), slice(3, 7))
    assert bounding_box(labels, (1, 0, 2)) == (slice(1, 5), slice(3, 4), slice(3, 11))
    assert bounding_box(np.zeros((4, 5, 6), bool)) is None
    assert bounding_box(np.zeros((0, 5, 6), bool)) is None
    assert bounding_box(np.zeros((3, 0, 6), bool)) is None
    assert bounding_box(np.ones((), bool)) == () and bounding_box(np.zeros((), bool)) == ()  # no axis, as before
