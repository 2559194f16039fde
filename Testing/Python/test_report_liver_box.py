"""The report stage reads the liver's bounding box once and hands it to its checks (fluid in the liver, metal, the
contrast phase, the liver cut by the image's side): each must answer exactly as it did reading the whole label map."""
import numpy as np
import pytest

from LiverTumorSegLib.inference.contrast_phase import estimate_contrast_phase
from LiverTumorSegLib.inference.fluid_in_liver import fluid_regions_in_liver
from LiverTumorSegLib.inference.metal import metal_in_liver_slices
from LiverTumorSegLib.inference.plausibility import liver_cut_by_image_side
from LiverTumorSegLib.inference.sampling import anchored_slices, sampled_slices_holding
from LiverTumorSegLib.metrics.surface import bounding_box
from LiverTumorSegLib.volume import ImageGeometry

# direction columns (x, y, z index axes in LPS): identity, and each index axis running against L, P, S
DIRECTIONS = [np.eye(3), np.diag([-1.0, -1.0, 1.0]), np.diag([1.0, 1.0, -1.0]), np.diag([-1.0, 1.0, -1.0])]


def _old_sampled_slices(labels, geometry, steps, head_foot):
    """The formula metal and contrast_phase used before the box: the whole map read every ``steps``."""
    cut = anchored_slices(geometry, labels.shape, steps)
    other = tuple(a for a in range(3) if a != head_foot)
    found = np.nonzero((labels[cut] >= 1).any(axis=other))[0]
    return found * cut[head_foot].step + cut[head_foot].start


def labels_in_a_random_box(rng, size_range, end_gap, fraction):
    """A uint8 ``(z, y, x)`` map of a random shape (each side in ``size_range``, end exclusive) holding labels 1/2 on
    about ``fraction`` of the voxels of a random box (its start at least ``end_gap`` voxels before each end), 0
    elsewhere; returns ``(labels, the box as slices)``."""
    shape = tuple(int(n) for n in rng.integers(*size_range, size=3))
    labels = np.zeros(shape, dtype=np.uint8)
    low = [int(rng.integers(0, n - end_gap)) for n in shape]
    high = [int(rng.integers(lo + 1, n + 1)) for lo, n in zip(low, shape)]
    inside = tuple(slice(lo, hi) for lo, hi in zip(low, high))
    labels[inside] = (rng.random(labels[inside].shape) < fraction) * rng.integers(1, 3, size=labels[inside].shape)
    return labels, inside


@pytest.mark.parametrize("seed", range(12))
def test_sampled_slices_in_the_liver_box_equal_those_of_the_whole_map(seed):
    rng = np.random.default_rng(seed)
    labels, inside = labels_in_a_random_box(rng, (5, 30), 1, 0.15)
    geometry = ImageGeometry(spacing=(0.8, 0.9, 2.5), direction=DIRECTIONS[seed % len(DIRECTIONS)])
    head_foot = seed % 3
    steps = [int(s) for s in rng.integers(1, 4, size=3)]
    steps[head_foot] = 1 + seed % 2  # 1 as the checks read; 2 to check the general case
    old = _old_sampled_slices(labels, geometry, steps, head_foot)
    for box in (None, bounding_box(labels, 1), bounding_box(labels, 0)):
        np.testing.assert_array_equal(sampled_slices_holding(labels, geometry, steps, head_foot, box), old)


def _trunk_case(metal_hu):
    """A 40 x 60 x 60 CT (int16 HU, 1 x 1 x 2 mm) of a body, a spine, an aorta and a liver with a cyst; one metal
    voxel column of ``metal_hu`` in the liver's slices; its labels (liver 1, a lesion 2)."""
    hu = np.full((40, 60, 60), -1000, dtype=np.int16)
    hu[:, 8:52, 6:54] = 40
    hu[:, 40:48, 26:34] = 700  # spine (behind: larger y is posterior in LPS)
    hu[:, 32:37, 28:33] = 180  # aorta in front of it
    labels = np.zeros(hu.shape, dtype=np.uint8)
    labels[8:34, 14:36, 8:28] = 1  # liver on the patient's right (small x: LPS x grows to the left)
    labels[14:20, 20:26, 12:18] = 2
    hu[labels == 1] = 100
    hu[labels == 2] = 60
    hu[18:26, 16:24, 18:26] = 5  # water in label 1
    hu[10:30, 30:32, 40:44] = metal_hu
    return hu, labels


@pytest.mark.parametrize("metal_hu", [100, 3071])
def test_checks_answer_the_same_with_the_liver_box_given(metal_hu):
    hu, labels = _trunk_case(metal_hu)
    geometry = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    box = bounding_box(labels, 1)
    assert fluid_regions_in_liver(labels, hu, geometry, box) == fluid_regions_in_liver(labels, hu, geometry)
    metal = metal_in_liver_slices(hu, labels, geometry)
    assert (metal is None) == (metal_hu < 2500)
    assert metal_in_liver_slices(hu, labels, geometry, box) == metal
    assert estimate_contrast_phase(hu, labels, geometry, None, box) == estimate_contrast_phase(hu, labels, geometry)
    padded = hu.copy()
    padded[:, :, 27:] = -3024  # a field of view's padding next to the liver's left edge
    for ct in (hu, padded):
        assert liver_cut_by_image_side(labels, geometry, ct, liver_box=box) == \
            liver_cut_by_image_side(labels, geometry, ct)
    assert liver_cut_by_image_side(labels, geometry, padded, liver_box=box)


def test_metal_below_the_threshold_everywhere_is_none_without_a_mask():
    hu, labels = _trunk_case(2499)  # one HU short of metal: the max shortcut answers
    assert metal_in_liver_slices(hu, labels, ImageGeometry(spacing=(1.0, 1.0, 2.0))) is None
    hu_float = hu.astype(np.float32)
    hu_float[0, 0, 0] = np.nan  # a float CT: no shortcut (its max would be NaN)
    hu_float[10:30, 30:32, 40:44] = 3071
    assert metal_in_liver_slices(hu_float, labels, ImageGeometry(spacing=(1.0, 1.0, 2.0))) is not None


@pytest.mark.parametrize("seed", range(16))
def test_liver_ras_xz_in_the_liver_box_is_the_whole_maps_to_the_bit(seed):
    """Any storage order (a signed permutation as direction), odd and even box starts: the same coordinates, in the
    same order, as the whole map's reading."""
    from LiverTumorSegLib.inference.plausibility import liver_ras_xz

    rng = np.random.default_rng(100 + seed)
    labels, inside = labels_in_a_random_box(rng, (6, 25), 2, 0.4)
    direction = np.eye(3)[:, rng.permutation(3)] * rng.choice([-1.0, 1.0], size=3)
    geometry = ImageGeometry(spacing=(0.7, 0.8, 3.0), origin=(-12.5, 30.25, 100.0), direction=direction)
    whole = liver_ras_xz(labels, geometry)
    for margin in (0, 1, 2):
        box = bounding_box(labels, margin)
        if box is None:
            continue
        in_box = liver_ras_xz(labels, geometry, box)
        assert in_box.shape == whole.shape and in_box.tobytes() == whole.tobytes()
