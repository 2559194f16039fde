"""Edge cases of ImageGeometry.almost_equal: spacing, origin and direction must all agree. The earlier tests let each
of them through: every test here fails when one operator or constant of the code it covers is changed (checked by
mutation in stop 26). Known inputs, known answers."""
import numpy as np
import pytest

from LiverTumorSegLib.volume import ImageGeometry

BASE = ImageGeometry(spacing=(0.8, 0.8, 2.5), origin=(-120.0, 40.0, 300.0))


@pytest.mark.parametrize("other, equal", [
    (ImageGeometry(spacing=(0.8, 0.8, 2.5), origin=(-120.0, 40.0, 300.0)), True),
    (ImageGeometry(spacing=(0.8, 0.8, 2.5), origin=(-120.0, 40.0, 300.00005)), True),   # within 1e-4 mm
    (ImageGeometry(spacing=(0.8, 0.8, 2.5), origin=(-120.0, 40.0, 301.0)), False),      # origin 1 mm off only
    (ImageGeometry(spacing=(0.8, 0.8, 5.0), origin=(-120.0, 40.0, 300.0)), False),      # spacing only
    (ImageGeometry(spacing=(0.8, 0.8, 2.5), origin=(-120.0, 40.0, 300.0),
                   direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1)), False),                     # direction only
])
def test_almost_equal_needs_spacing_origin_and_direction_to_agree(other, equal):
    assert BASE.almost_equal(other, tol=1e-4) is equal
    assert other.almost_equal(BASE, tol=1e-4) is equal


def test_ct_volume_turns_array_likes_into_numpy_and_refuses_a_geometry_that_is_not_one():
    from LiverTumorSegLib.volume import CTVolume

    volume = CTVolume([[[0, 40], [60, -1000]]], ImageGeometry((0.8, 0.8, 2.0)))  # a nested list, (z, y, x)
    assert isinstance(volume.array, np.ndarray)
    assert volume.shape_zyx == (1, 2, 2)
    assert volume.array[0, 1, 1] == -1000
    with pytest.raises(TypeError, match="must be an ImageGeometry"):
        CTVolume(np.zeros((2, 2, 2)), (1.0, 1.0, 1.0))
