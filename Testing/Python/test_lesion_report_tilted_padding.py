"""A lesion cut by a resampling's fill on a grid turned from axial: the fill beyond the old grid is a staircase of
voxels, and a lesion stopping one diagonal step short of it touched no face neighbour of it, so it was reported
whole (not ``touches_scan_edge``) and could be a RECIST target (the oblique-grid audit). On a tilted grid every
neighbour is read; an axial grid keeps the face neighbours."""
import numpy as np
import pytest

from LiverTumorSegLib.inference.lesion_report import lesion_report, padding_neighbourhood
from LiverTumorSegLib.volume import ImageGeometry


def staircase_case():
    """``(labels, hu)`` ``(z, y, x)`` (24, 40, 40): a liver with one 12 mm lesion whose voxels reach index z + y = 38,
    beside fill (-3024) from z + y = 40 on: only diagonal neighbours of the lesion lie in the fill."""
    z, y, _ = np.meshgrid(np.arange(24), np.arange(40), np.arange(40), indexing="ij")
    fill = z + y >= 40
    labels = np.zeros((24, 40, 40), np.uint8)
    labels[2:22, 4:36, 4:36] = 1
    labels[fill] = 0
    lesion = np.zeros_like(labels, dtype=bool)
    lesion[14:20, 14:20, 14:20] = True
    lesion &= (z + y <= 38)
    labels[lesion] = 2
    hu = np.where(labels == 1, 60, 40).astype(np.int16)
    hu[lesion] = 20
    hu[fill] = -3024
    return labels, hu


def turned(degrees):
    t = np.radians(degrees)
    return ImageGeometry(spacing=(2.0, 2.0, 2.0), direction=(1, 0, 0, 0, np.cos(t), -np.sin(t), 0, np.sin(t), np.cos(t)))


@pytest.mark.parametrize("degrees", [20.0, -30.0])
def test_a_lesion_one_diagonal_step_from_a_turned_grids_fill_is_cut_by_the_scans_edge(degrees):
    labels, hu = staircase_case()
    (lesion,) = lesion_report(labels, turned(degrees), hu_zyx=hu)["lesions"]
    assert lesion["touches_scan_edge"] is True
    assert lesion["recist_target"] is False


def test_an_axial_grid_reads_face_neighbours_as_before():
    labels, hu = staircase_case()
    (lesion,) = lesion_report(labels, turned(0.0), hu_zyx=hu)["lesions"]
    assert lesion["touches_scan_edge"] is False
    assert padding_neighbourhood(turned(3.0)).sum() == 7 and padding_neighbourhood(turned(10.0)).sum() == 27
    assert padding_neighbourhood(None).sum() == 7


@pytest.mark.parametrize("degrees, beside", [(20.0, True), (0.0, False)])
def test_followup_reads_the_same_neighbours_for_where_a_cut_lesion_may_go_on(degrees, beside):
    """followup's padding beyond a baseline lesion (where it may go on unseen) reads the neighbours the report's
    touches_scan_edge reads, so the two agree on a turned grid."""
    from LiverTumorSegLib.followup import _padding_beyond
    from LiverTumorSegLib.volume import CTVolume

    labels, hu = staircase_case()
    components = (labels == 2).astype(np.int32)
    where = np.argwhere(components)
    lesion = {"id": 1, "bounding_box_zyx": [[int(a), int(b) + 1] for a, b in zip(where.min(0), where.max(0))]}
    points = _padding_beyond(components, lesion, turned(degrees), CTVolume(hu, turned(degrees)), margin_mm=10.0)
    assert (len(points) > 0) is beside


def test_a_grid_turned_in_plane_reads_every_neighbour_too():
    """The review: a grid turned 30 degrees about S leaves the fill's staircase in (y, x), and a lesion one diagonal
    step from it was reported whole, a RECIST target."""
    z, y, x = np.meshgrid(np.arange(12), np.arange(48), np.arange(48), indexing="ij")
    fill = y + x >= 60
    labels = np.zeros((12, 48, 48), np.uint8)
    labels[1:11, 4:44, 4:44] = 1
    labels[fill] = 0
    lesion = np.zeros_like(labels, dtype=bool)
    lesion[3:9, 22:32, 22:32] = True
    lesion &= (y + x <= 58)
    labels[lesion] = 2
    hu = np.where(labels == 1, 60, 40).astype(np.int16)
    hu[lesion] = 20
    hu[fill] = -3024
    t = np.radians(30.0)
    about_s = ImageGeometry(spacing=(1.5, 1.5, 2.0), direction=(np.cos(t), -np.sin(t), 0, np.sin(t), np.cos(t), 0, 0, 0, 1))
    (reported,) = lesion_report(labels, about_s, hu_zyx=hu)["lesions"]
    assert reported["touches_scan_edge"] is True and reported["recist_target"] is False
