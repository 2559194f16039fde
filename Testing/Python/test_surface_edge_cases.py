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
