"""Post-processing switches on hand-made label maps with known answers."""
import numpy as np
import pytest

from LiverTumorSegLib.inference.postprocess import (PostprocessingOptions, ellipsoid_structure, largest_component,
                                                    postprocess_labels, remove_small_lesions,
                                                    restrict_tumor_to_liver)

SPACING = (2.0, 1.0, 1.0)  # (z, y, x) mm


def liver_block():
    labels = np.zeros((10, 30, 30), dtype=np.uint8)
    labels[2:8, 5:20, 5:20] = 1
    return labels


def test_largest_component_keeps_biggest():
    mask = np.zeros((5, 10, 10), bool)
    mask[0:3, 0:3, 0:3] = True
    mask[1:5, 5:10, 5:10] = True
    out = largest_component(mask)
    assert out.sum() == 4 * 25 and not out[0, 0, 0]


def test_far_blob_removed_and_holes_filled():
    labels = liver_block()
    labels[4, 10, 10] = 0                 # enclosed hole
    labels[2:4, 25:28, 25:28] = 1         # planted far-away blob
    labels[6, 26, 5] = 2                  # far-away "tumor" speck
    out = postprocess_labels(labels, SPACING, PostprocessingOptions(min_lesion_ml=0))
    expected = liver_block()
    np.testing.assert_array_equal(out, expected)


def test_each_switch_can_be_turned_off():
    labels = liver_block()
    labels[4, 10, 10] = 0
    labels[2:4, 25:28, 25:28] = 1
    out = postprocess_labels(labels, SPACING, PostprocessingOptions.disabled())
    np.testing.assert_array_equal(out, labels)
    out = postprocess_labels(labels, SPACING, PostprocessingOptions(largest_liver_component=False, min_lesion_ml=0))
    assert out[2, 26, 26] == 1 and out[4, 10, 10] == 1


def test_tumor_near_liver_kept_far_removed():
    labels = np.zeros((5, 40, 40), dtype=np.uint8)
    labels[:, 5:15, 5:15] = 1
    labels[2, 10, 17] = 2   # 3 mm from the liver edge (x=14) -> kept with a 5 mm dilation
    labels[2, 10, 30] = 2   # 16 mm away -> removed
    out = restrict_tumor_to_liver(labels.copy(), (2.0, 1.0, 1.0), 5.0)
    assert out[2, 10, 17] == 2 and out[2, 10, 30] == 0


def test_small_lesions_become_liver():
    labels = liver_block()
    labels[3:5, 6:8, 6:8] = 2          # 8 voxels x 2 mm^3 = 0.016 mL
    labels[3:7, 10:18, 10:18] = 2      # 256 voxels x 2 mm^3 = 0.512 mL
    out = remove_small_lesions(labels.copy(), SPACING, 0.1)
    assert (out[3:5, 6:8, 6:8] == 1).all()
    assert (out[3:7, 10:18, 10:18] == 2).all()


def test_ellipsoid_structure_respects_spacing():
    s = ellipsoid_structure(2.0, (2.0, 1.0, 1.0))
    assert s.shape == (3, 5, 5)
    assert s[1, 2, 4] and s[0, 2, 2] and not s[0, 2, 4]


def test_empty_labels_pass_through():
    labels = np.zeros((3, 4, 5), np.uint8)
    assert postprocess_labels(labels, SPACING).sum() == 0


def test_lesion_on_liver_edge_is_kept_whole():
    labels = np.zeros((5, 40, 40), dtype=np.uint8)
    labels[:, 5:15, 5:15] = 1
    labels[1:4, 8:12, 12:25] = 2   # reaches 10 mm beyond the liver but touches it
    out = restrict_tumor_to_liver(labels.copy(), (2.0, 1.0, 1.0), 2.0)
    np.testing.assert_array_equal(out, labels)
