"""Edge cases of LiverTumorSegLib.orientation: unnormalised directions, an exact 45 degree tie, -0.0. The earlier tests
let each of them through: every test here fails when one operator or constant of the code it covers is changed
(checked by mutation in stop 26). Known inputs, known answers."""
import numpy as np
import pytest

from LiverTumorSegLib.orientation import canonicalize, obliquity_degrees, plan_reorientation
from LiverTumorSegLib.volume import CTVolume, ImageGeometry


def _rot_x(deg):
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def test_obliquity_of_a_non_unit_direction_matrix_uses_the_cosine():
    """Columns scaled by 2 (a header with unnormalised directions): the angle is still 30 degrees, because the
    cosine is the entry divided by the column's length."""
    assert obliquity_degrees(2.0 * _rot_x(30.0)) == pytest.approx(30.0, abs=1e-6)
    assert obliquity_degrees(0.5 * _rot_x(30.0)) == pytest.approx(30.0, abs=1e-6)


def test_exact_45_degree_tie_keeps_the_original_slice_axis():
    """Tilted exactly 45 degrees about x: j and k are equally close to P and S. The tie keeps the stored layout
    (first permutation, identity), so the slice axis stays k and nothing is permuted."""
    c = np.sqrt(0.5)
    d = np.array([[1.0, 0.0, 0.0], [0.0, c, -c], [0.0, c, c]])
    reo = plan_reorientation(ImageGeometry(spacing=(1.0, 2.0, 3.0), direction=tuple(d.ravel())), (4, 5, 6))
    assert reo.source_axis == (0, 1, 2) and reo.flip == (False, False, False) and reo.is_identity
    assert reo.canonical_shape == (4, 5, 6) and reo.canonical_geometry.spacing == (1.0, 2.0, 3.0)


def test_canonical_direction_of_a_flipped_volume_has_no_negative_zeros():
    """RAS-stored volume (i -> -L, j -> -P): the canonical direction is the identity with +0.0 off the diagonal
    (no -0.0 that would print as '-0' in headers and JSON)."""
    vol = CTVolume(array=np.zeros((2, 3, 4), np.int16),
                   geometry=ImageGeometry(spacing=(1.0, 1.0, 1.0), direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1)))
    canon, reo = canonicalize(vol)
    d = canon.geometry.direction_matrix
    np.testing.assert_array_equal(d, np.eye(3))
    assert not np.any(np.signbit(d)), d
    assert reo.flip == (False, True, True)


def _tilted_45_grid_and_swapped_storage():
    """A (z, y, x) = (4, 5, 6) grid tilted exactly 45 degrees about x, labelled with distinct values, and the same
    grid stored with its j and k axes swapped (array axes y and z transposed, direction columns and spacing
    swapped): one grid, two storages."""
    from LiverTumorSegLib.volume import CTVolume as _CT
    c = np.sqrt(0.5)
    d = np.array([[1.0, 0.0, 0.0], [0.0, c, -c], [0.0, c, c]])
    ref = _CT(array=np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6),
              geometry=ImageGeometry(spacing=(1.0, 2.0, 3.0), origin=(5.0, -7.0, 11.0), direction=tuple(d.ravel())))
    swapped_direction = d[:, [0, 2, 1]]
    swapped = _CT(array=np.ascontiguousarray(ref.array.transpose(1, 0, 2)),
                  geometry=ImageGeometry(spacing=(1.0, 3.0, 2.0), origin=(5.0, -7.0, 11.0),
                                         direction=tuple(swapped_direction.ravel())))
    return ref, swapped


def test_exact_45_degree_grid_stored_with_two_axes_swapped_is_reoriented_onto_its_ct():
    """The canonical layouts of the two storages of one 45-degree grid tie-break differently (each keeps its own
    stored layout), so a label map stored with j and k swapped against its CT was refused as 'does not match its
    reference' (direction cosines differ by up to 1.41). Laid out along the CT's own axes there is no tie: the label
    map is reoriented onto the CT voxel for voxel, also when it is a part of the CT's grid."""
    from LiverTumorSegLib.io.labels import REORIENTED_NOTE, label_on_reference_grid, place_on_reference_grid
    ref, swapped = _tilted_45_grid_and_swapped_storage()
    placed = label_on_reference_grid(swapped, ref, 1e-3)
    np.testing.assert_array_equal(placed.array, ref.array)
    assert placed.geometry == ref.geometry and REORIENTED_NOTE in placed.meta["warnings"]
    # a part of the grid (the swapped storage's first slice dropped: ref's j from 1 on), padded with zeros
    part_origin = tuple(np.add(swapped.geometry.origin, 2.0 * swapped.geometry.direction_matrix[:, 2]))
    part = CTVolume(array=swapped.array[1:], geometry=ImageGeometry(
        spacing=swapped.geometry.spacing, origin=part_origin, direction=swapped.geometry.direction))
    padded = place_on_reference_grid(part, ref, 1e-3)
    expected = ref.array.copy()
    expected[:, 0, :] = 0
    np.testing.assert_array_equal(padded.array, expected)


def test_reorientation_onto_another_grids_axes_has_no_tie_at_45_degrees():
    """``target_direction``: the swapped storage laid out along the original's axes is the original, exactly."""
    ref, swapped = _tilted_45_grid_and_swapped_storage()
    reo = plan_reorientation(swapped.geometry, swapped.shape_zyx, ref.geometry.direction_matrix)
    assert reo.source_axis == (1, 0, 2) and reo.flip == (False, False, False)
    assert reo.canonical_geometry.spacing == ref.geometry.spacing
    np.testing.assert_allclose(reo.canonical_geometry.direction_matrix, ref.geometry.direction_matrix, atol=1e-15)
    np.testing.assert_array_equal(reo.to_canonical(swapped.array), ref.array)
