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


def test_a_turned_fine_ct_reaches_the_aligned_grid_with_the_noise_an_axial_one_reaches_the_network_with():
    """White noise (std 100 HU) on 0.75 mm pixels, turned 10 degrees: on the 1.5 mm aligned grid its std is within 15 %
    of what the axial path leaves (``preprocessing.spatial.resample_slices``, torch's antialiased bilinear, on the
    same noise as an axial CT). Trilinear sampling alone left 2.1x it (66 against 31 HU; the liver's fine noise on the shared
    20-slice CT: 8.2 HU where the axial path leaves 5.4)."""
    from LiverTumorSegLib.preprocessing.spatial import resample_slices

    rng = np.random.default_rng(3)
    shape = (12, 128, 128)
    noise = rng.normal(0.0, 100.0, shape).astype(np.float32)
    axial = resample_slices(noise, (64, 64))
    axial_std = float(axial[:, 4:-4, 4:-4].std())
    volume = CTVolume(noise, _turned_geometry(10.0, (0.75, 0.75, 2.0), shape))
    grid = axis_aligned.aligned_grid(volume.geometry, shape, (1.5, 1.5, 2.0))
    on_grid = axis_aligned.resampled_onto(volume, grid).array
    inside = axis_aligned.footprint(grid.geometry, grid.shape_zyx, volume.geometry, shape)
    from scipy import ndimage

    inside = ndimage.binary_erosion(inside, iterations=3)  # away from the edge, where values repeat
    assert inside.sum() > 10000
    aligned_std = float(on_grid[inside].std())
    assert 0.85 * axial_std < aligned_std < 1.15 * axial_std, (aligned_std, axial_std)


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
        told.append(args[-1])
        return estimate(*args)

    monkeypatch.setattr(validation, "estimate_aligned_grid_memory_bytes", recording)
    preprocessing = {"target_spacing_mm": 1.6, "window": [-200.0, 250.0], "context_slices": 1}
    for spacing in (grid.geometry.spacing, volume.geometry.spacing):
        validation.check_network_memory(volume, preprocessing, batch_size=1, available_bytes=1 << 50,
                                        aligned_shape_zyx=grid.shape_zyx, aligned_spacing_xyz=spacing)
    assert told[0] is True and told[-1] is False
