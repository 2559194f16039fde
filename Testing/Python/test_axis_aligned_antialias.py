"""An oblique CT with pixels finer than the network's is filtered in-plane before it is resampled onto the
patient-aligned grid, so its noise reaches the network as an axial CT's does (``inference/axis_aligned.py``)."""
import math

import numpy as np
import pytest

from LiverTumorSegLib.inference import axis_aligned
from LiverTumorSegLib.volume import CTVolume, ImageGeometry


def _turned_geometry(degrees, spacing_xyz, shape_zyx, permute_ijk=(0, 1, 2)):
    """A grid turned ``degrees`` about left-right, centred on the LPS origin; ``permute_ijk``: which patient axis
    (0 L, 1 P, 2 S, before the turn) each index axis i, j, k runs along (a sagittally stored CT: (1, 2, 0))."""
    a = np.deg2rad(degrees)
    turn = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a), -np.sin(a)], [0.0, np.sin(a), np.cos(a)]])
    direction = turn[:, list(permute_ijk)]
    half = (np.asarray(shape_zyx[::-1], dtype=float) - 1.0) / 2.0 * np.asarray(spacing_xyz)
    origin = -direction @ half
    return ImageGeometry(spacing=spacing_xyz, origin=tuple(origin), direction=tuple(direction.ravel()))


def test_triangle_weights_are_the_triangle_at_the_offsets_it_reaches_summing_to_one():
    """Half-width 2: weights 1/2, 1, 1/2 at offsets -1, 0, 1 (offset 2 weighs 0 and is left out), divided by 2."""
    np.testing.assert_allclose(axis_aligned.triangle_weights(2.0), [0.25, 0.5, 0.25])
    # half-width 2.5: 1 - k / 2.5 at k = 0, 1, 2 -> 1, 0.6, 0.2 (sum 2.6)
    np.testing.assert_allclose(axis_aligned.triangle_weights(2.5), np.array([0.2, 0.6, 1.0, 0.6, 0.2]) / 2.6)


def test_the_in_plane_axes_are_filtered_by_how_much_the_grid_enlarges_their_pixels():
    """0.75 mm pixels onto 1.5 mm (s = 2): half-width sqrt(4 - 2/3) on both in-plane array axes (1 y, 2 x), none on
    the slices' axis; 3 mm pixels (enlarged by under 1) and 1.2 mm ones (s = 1.25: half-width 1.0, no filter) none."""
    shape = (10, 40, 40)
    geometry = _turned_geometry(10.0, (0.75, 0.75, 2.0), shape)
    widths = axis_aligned.in_plane_antialias(geometry, shape, (1.5, 1.5, 2.0))
    assert sorted(widths) == [1, 2]
    assert widths[1] == pytest.approx(math.sqrt(4.0 - 2.0 / 3.0)) and widths[2] == pytest.approx(widths[1])
    assert axis_aligned.in_plane_antialias(_turned_geometry(10.0, (3.0, 3.0, 2.0), shape), shape,
                                           (1.5, 1.5, 2.0)) == {}
    assert axis_aligned.in_plane_antialias(_turned_geometry(10.0, (1.2, 1.2, 2.0), shape), shape,
                                           (1.5, 1.5, 2.0)) == {}
    # x pixels 0.5 mm (s = 3), y pixels 1.5 mm (s = 1): only x
    assert sorted(axis_aligned.in_plane_antialias(_turned_geometry(10.0, (0.5, 1.5, 2.0), shape), shape,
                                                  (1.5, 1.5, 2.0))) == [2]


def test_a_sagittally_stored_ct_is_filtered_along_its_in_plane_axes_not_along_its_slices():
    """Index i runs P, j runs S, k runs L (storage (z, y, x) = (L, S, P)): the in-plane axes are array axes 0 (L)
    and 2 (P); array axis 1 runs along S (the slices), whose 2 mm are not enlarged by the grid's 2 mm either."""
    shape = (40, 10, 40)
    geometry = _turned_geometry(10.0, (0.75, 2.0, 0.75), shape, permute_ijk=(1, 2, 0))
    widths = axis_aligned.in_plane_antialias(geometry, shape, (1.5, 1.5, 2.0))
    assert sorted(widths) == [0, 2]


@pytest.mark.parametrize("pixel_mm", [0.5, 0.75, 0.9, 1.0])
def test_a_turned_fine_ct_reaches_the_aligned_grid_with_about_the_noise_an_axial_one_reaches_the_network_with(
        pixel_mm):
    """White noise (std 100 HU) on fine pixels, turned 10 degrees: on the 1.5 mm aligned grid its std is 0.7-1.1 times
    what the axial path leaves (``preprocessing.spatial.resample_slices``, torch's antialiased bilinear, on the same
    noise as an axial CT; measured 0.77-0.94 for these pixels, of which about 0.82 is the interpolation between
    slices that the axial path does not do). Trilinear sampling alone left 1.3-2.8 times it (0.5 mm: 2.82, 0.75:
    2.10, 0.9: 1.37, 1.0: 1.32; the liver's fine noise on the shared 20-slice CT: 8.2 HU where the axial path
    leaves 5.4)."""
    from scipy import ndimage

    from LiverTumorSegLib.preprocessing.spatial import resample_slices

    rng = np.random.default_rng(3)
    side = int(round(72.0 / pixel_mm))
    shape = (12, side, side)
    noise = rng.normal(0.0, 100.0, shape).astype(np.float32)
    shrunk = int(round(side * pixel_mm / 1.5))
    axial_std = float(resample_slices(noise, (shrunk, shrunk))[:, 4:-4, 4:-4].std())
    volume = CTVolume(noise, _turned_geometry(10.0, (pixel_mm, pixel_mm, 2.0), shape))
    grid = axis_aligned.aligned_grid(volume.geometry, shape, (1.5, 1.5, 2.0))
    on_grid = axis_aligned.resampled_onto(volume, grid).array
    inside = axis_aligned.footprint(grid.geometry, grid.shape_zyx, volume.geometry, shape)
    inside = ndimage.binary_erosion(inside, iterations=3)  # away from the edge, where values repeat
    assert inside.sum() > 10000
    aligned_std = float(on_grid[inside].std())
    assert 0.7 * axial_std < aligned_std < 1.1 * axial_std, (aligned_std, axial_std)


def test_the_ct_given_is_not_changed_and_a_coarse_ct_is_resampled_as_before():
    """The filter works on a float32 copy: the CT's own array is the same after; a 3 mm CT (nothing to filter) gives
    exactly the plain trilinear resampling."""
    rng = np.random.default_rng(4)
    shape = (8, 40, 40)
    fine = rng.normal(0.0, 100.0, shape).astype(np.float32)
    kept = fine.copy()
    volume = CTVolume(fine, _turned_geometry(12.0, (0.75, 0.75, 2.0), shape))
    axis_aligned.resampled_onto(volume, axis_aligned.aligned_grid(volume.geometry, shape, (1.5, 1.5, 2.0)))
    np.testing.assert_array_equal(fine, kept)
    coarse = CTVolume(fine, _turned_geometry(12.0, (3.0, 3.0, 2.0), shape))
    grid = axis_aligned.aligned_grid(coarse.geometry, shape, (1.5, 1.5, 2.0))
    plain = axis_aligned.resample(fine, coarse.geometry, grid.geometry, grid.shape_zyx, 0.0, axis_aligned.EDGE_MODE)
    np.testing.assert_array_equal(axis_aligned.resampled_onto(coarse, grid).array, plain)


def test_the_memory_check_counts_the_filtered_float32_copy_of_a_fine_int16_ct():
    """An int16 CT with 0.4 mm pixels onto 1.6 mm: the filter's float32 copy (4 bytes per CT voxel, more than the
    aligned grid's CT) is counted in the phase ``onto`` when the check is told the CT is filtered, and the bytes
    ``tracemalloc`` measures stay within that count but not within the count without it; the check itself tells it
    (``check_network_memory`` asks ``in_plane_antialias``)."""
    from test_axis_aligned import PYTHON_OBJECTS_BYTES, _fine_thin_tilted_ct, _traced_peak_bytes

    from LiverTumorSegLib import validation

    volume, grid = _fine_thin_tilted_ct(np.int16)
    assert axis_aligned.in_plane_antialias(volume.geometry, volume.shape_zyx, grid.geometry.spacing)
    plain = validation.aligned_grid_phase_bytes(volume.shape_zyx, np.int16, grid.shape_zyx, 0)
    filtered = validation.aligned_grid_phase_bytes(volume.shape_zyx, np.int16, grid.shape_zyx, 0, antialiased=True)
    voxels = int(np.prod(volume.shape_zyx))
    assert filtered["onto"] - plain["onto"] == 4 * voxels
    axis_aligned.resampled_onto(volume, grid)  # untraced first: the first call's imports are not the run's bytes
    _, measured = _traced_peak_bytes(lambda: axis_aligned.resampled_onto(volume, grid))
    overhead = validation.RUNTIME_OVERHEAD_BYTES
    assert plain["onto"] - overhead < measured <= filtered["onto"] - overhead + PYTHON_OBJECTS_BYTES


def test_the_memory_check_tells_the_estimate_whether_the_ct_is_filtered(monkeypatch):
    """``check_network_memory`` asks :func:`in_plane_antialias` with the aligned grid's spacing: filtered for the
    0.4 mm CT onto 1.6 mm, not for the same CT onto a grid of its own spacing."""
    from test_axis_aligned import _fine_thin_tilted_ct

    from LiverTumorSegLib import validation

    volume, grid = _fine_thin_tilted_ct(np.int16)
    told = []
    estimate = validation.estimate_aligned_grid_memory_bytes

    def recording(*args):
        told.append(args[-1])  # antialiased
        return estimate(*args)

    monkeypatch.setattr(validation, "estimate_aligned_grid_memory_bytes", recording)
    preprocessing = {"target_spacing_mm": 1.6, "window": [-200.0, 250.0], "context_slices": 1}
    for spacing in (grid.geometry.spacing, volume.geometry.spacing):
        validation.check_network_memory(volume, preprocessing, batch_size=1, available_bytes=1 << 50,
                                        aligned_shape_zyx=grid.shape_zyx, aligned_spacing_xyz=spacing)
    assert told == [True, False]


def _aligned_and_coarse_ct(degrees=12.0):
    """A 1.5 mm aligned grid (identity direction) covering a CT of 3 mm pixels turned ``degrees`` about left-right:
    ``(aligned geometry, aligned shape, CT geometry, CT shape)``."""
    ct_shape = (10, 30, 30)
    ct_geometry = _turned_geometry(degrees, (3.0, 3.0, 2.0), ct_shape)
    grid = axis_aligned.aligned_grid(ct_geometry, ct_shape, (1.5, 1.5, 2.0))
    return grid.geometry, grid.shape_zyx, ct_geometry, ct_shape


def test_the_way_back_onto_coarser_pixels_is_filtered_along_the_aligned_grids_in_plane_axes():
    """From the 1.5 mm aligned grid onto 3 mm pixels (s = 2): its axes 1 (y) and 2 (x), half-width sqrt(4 - 2/3);
    onto 0.75 mm pixels none (the way back enlarges nothing)."""
    geometry, shape, ct_geometry, ct_shape = _aligned_and_coarse_ct()
    widths = axis_aligned.back_antialias(geometry, shape, ct_geometry, ct_shape)
    assert sorted(widths) == [1, 2] and widths[1] == pytest.approx(math.sqrt(4.0 - 2.0 / 3.0))
    fine = _turned_geometry(12.0, (0.75, 0.75, 2.0), ct_shape)
    assert axis_aligned.back_antialias(geometry, shape, fine, ct_shape) == {}


def test_labels_brought_back_onto_coarser_pixels_take_the_share_of_the_area_each_covers():
    """Liver in one aligned pixel of every 2 x 2 (a quarter of the area) brought back onto 3 mm pixels: each CT
    pixel covers a quarter liver, so background wins everywhere. Read at one point per CT pixel (trilinear alone),
    53 % of them were liver, by the phase each happened to fall on."""
    geometry, shape, ct_geometry, ct_shape = _aligned_and_coarse_ct()
    labels = np.zeros(shape, np.uint8)
    labels[:, ::2, ::2] = 1
    back = axis_aligned.labels_back(labels, geometry, ct_geometry, ct_shape)
    assert np.count_nonzero(back[:, 1:-1, 1:-1] == 1) == 0  # (the grid's corners repeat their edge voxels)
    whole = np.ones(shape, np.uint8)  # liver everywhere stays liver everywhere
    assert np.all(axis_aligned.labels_back(whole, geometry, ct_geometry, ct_shape) == 1)


def test_probability_brought_back_onto_coarser_pixels_is_not_filtered():
    """The probability is read at the CT's voxel centres as before (trilinear alone), while the labels' shares are
    filtered: filtered too, it lowered small lesions' probability below the lesion-confidence threshold
    (synthetic-tumor Dice of the 3 mm CT turned 20 degrees 0.622 -> 0.529; axis_aligned.probability_back)."""
    geometry, shape, ct_geometry, ct_shape = _aligned_and_coarse_ct()
    probability = np.random.default_rng(6).integers(0, 256, shape).astype(np.uint8)
    back = axis_aligned.probability_back(probability, geometry, ct_geometry, ct_shape)
    plain = axis_aligned.resample(probability, geometry, ct_geometry, ct_shape, 0.0, axis_aligned.BACK_MODE)
    np.testing.assert_array_equal(back, np.clip(np.rint(plain), 0, 255).astype(np.uint8))
