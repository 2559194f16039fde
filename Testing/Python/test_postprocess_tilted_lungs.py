"""The lung-base rule on a grid tilted from axial (gantry tilt, an oblique reformat): a column is a vertical line of
the patient, not an index column. An analytic chest (liver under a domed right lung whose recess reaches 40 mm
below the dome beside the liver, the heart over the liver's medial part, called liver by the network) is sampled
on grids tilted 20 and 30 degrees about the left-right and the front-back axes. On the axial grid the rule removes
no liver and most of the heart; index columns of the tilted grids crossed from the dome into the recess below the
liver's side and removed 17-87 mL of liver (version 0.6.19)."""
import numpy as np
import pytest

from LiverTumorSegLib.inference.postprocess import (LEVEL_GRID_MAX_TILT_DEGREES, PostprocessingOptions,
                                                    postprocess_labels, superior_tilt_degrees)
from LiverTumorSegLib.volume import ImageGeometry

SPACING_XYZ = (4.0, 4.0, 5.0)       # mm
SHAPE_ZYX = (52, 72, 72)
CENTRE_LPS = (128.0, 128.0, 115.0)  # mm: the grid's centre, the chest's middle


def analytic_chest(lps_mm):
    """``(n, 3)`` LPS mm -> ``(hu, liver, heart)`` of an analytic chest, S (z) up: a body ellipse; a right liver
    from S 30 mm up to a dome at 120 mm (lower toward its rim); a right lung over the dome (4 mm above it) whose
    rim reaches down to 50 mm beside the liver; a left lung; the heart (45 HU) above the liver's medial part."""
    x, y, z = lps_mm[:, 0], lps_mm[:, 1], lps_mm[:, 2]
    body = ((x - 128) / 120) ** 2 + ((y - 128) / 100) ** 2 <= 1
    r2 = ((x - 80) / 56) ** 2 + ((y - 128) / 72) ** 2
    dome = 120 - 30 * r2
    liver = (r2 <= 1) & (z >= 30) & (z <= dome)
    heart = (((x - 140) / 30) ** 2 + ((y - 100) / 36) ** 2 + ((z - 130) / 36) ** 2 <= 1) & ~liver
    right_lung = ((((x - 82) / 60) ** 2 + ((y - 128) / 74) ** 2 <= 1) & (z >= 50) & (z <= 200)
                  & ((z > dome + 4) | (r2 > 1.0)) & ~liver & ~heart)
    left_lung = (((x - 188) / 36) ** 2 + ((y - 128) / 70) ** 2 <= 1) & (z >= 90) & (z <= 200) & ~heart
    hu = np.where(body, 40.0, -1000.0)
    hu[liver] = 60.0
    hu[right_lung | left_lung] = -850.0
    hu[heart] = 45.0
    return hu.astype(np.float32), liver, heart


def tilted_grid(axis: str, degrees: float) -> ImageGeometry:
    """A grid of ``SHAPE_ZYX`` centred on the chest, turned ``degrees`` about the L (``"x"``) or P (``"y"``) axis."""
    t = np.radians(degrees)
    c, s = np.cos(t), np.sin(t)
    turn = (np.array([[1, 0, 0], [0, c, -s], [0, s, c]]) if axis == "x"
            else np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]))
    half = (np.asarray(SHAPE_ZYX[::-1], dtype=float) - 1) / 2 * np.asarray(SPACING_XYZ)
    return ImageGeometry(spacing=SPACING_XYZ, origin=tuple(np.asarray(CENTRE_LPS) - turn @ half),
                         direction=tuple(turn.ravel()))


def chest_on(geometry: ImageGeometry):
    """The analytic chest sampled at the voxel centres of ``geometry``: ``(hu, liver, heart)``, ``(z, y, x)``."""
    k, j, i = np.meshgrid(*(np.arange(n) for n in SHAPE_ZYX), indexing="ij")
    ijk = np.stack([i, j, k], axis=-1).reshape(-1, 3).astype(float)
    hu, liver, heart = analytic_chest(ijk @ geometry.ijk_to_lps()[:3, :3].T + np.asarray(geometry.origin))
    return hu.reshape(SHAPE_ZYX), liver.reshape(SHAPE_ZYX), heart.reshape(SHAPE_ZYX)


def lung_rule(axis: str, degrees: float):
    """``(liver removed mL, heart removed share, liver mL)`` after post-processing the network's error (heart =
    liver) on the chest sampled on the tilted grid."""
    geometry = tilted_grid(axis, degrees)
    hu, liver, heart = chest_on(geometry)
    changes = {}
    out = postprocess_labels((liver | heart).astype(np.uint8), geometry.spacing[::-1],
                             PostprocessingOptions(min_lesion_ml=0), hu_zyx=hu, geometry=geometry, changes=changes)
    voxel_ml = float(np.prod(SPACING_XYZ)) / 1000.0
    assert changes["head_foot_order"]["judged"] and not changes["head_foot_order"]["lungs_below_liver"]
    return (float(np.count_nonzero(liver & (out == 0))) * voxel_ml,
            float(np.count_nonzero(heart & (out == 0))) / float(np.count_nonzero(heart)),
            float(np.count_nonzero(liver)) * voxel_ml)


def test_the_axial_chest_loses_no_liver_and_most_of_the_heart():
    lost_ml, heart_share, liver_ml = lung_rule("x", 0.0)
    assert liver_ml > 900.0
    assert lost_ml == 0.0
    assert heart_share > 0.75


@pytest.mark.parametrize("axis", ["x", "y"])
@pytest.mark.parametrize("degrees", [20.0, -20.0, 30.0, -30.0])
def test_a_tilted_grid_keeps_the_dome_liver_and_removes_the_heart(axis, degrees):
    lost_ml, heart_share, liver_ml = lung_rule(axis, degrees)
    assert liver_ml > 900.0
    # vertical columns binned on 4 mm cells: a few voxels at the liver's steep rim beside the deep recess (< 1 mL;
    # index columns removed 17-87 mL here)
    assert lost_ml < 1.0
    assert heart_share > 0.5


def test_the_tilt_is_read_from_the_slice_axis():
    assert superior_tilt_degrees(np.eye(3)) == pytest.approx(0.0)
    assert superior_tilt_degrees(np.asarray(tilted_grid("y", -25.0).direction_matrix)) == pytest.approx(25.0)
    assert superior_tilt_degrees(np.asarray(tilted_grid("x", 0.5).direction_matrix)) < LEVEL_GRID_MAX_TILT_DEGREES
