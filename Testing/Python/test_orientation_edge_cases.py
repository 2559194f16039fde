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
