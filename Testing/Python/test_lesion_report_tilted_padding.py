"""A lesion cut by a resampling's fill on a grid turned from axial: the fill beyond the old grid is a staircase of
voxels, and a lesion stopping one diagonal step short of it touched no face neighbour of it, so it was reported
whole (not ``touches_scan_edge``) and could be a RECIST target (the oblique-grid audit). On a tilted grid every
neighbour is read; an axial grid keeps the face neighbours."""
import numpy as np
import pytest

from LiverTumorSegLib.inference.lesion_report import lesion_report, padding_neighbourhood
from LiverTumorSegLib.volume import ImageGeometry


def staircase_case(axes=(0, 1), shape=(24, 40, 40), fill_from=40, lesion_box=(slice(14, 20),) * 3):
    """``(labels, hu)`` ``(z, y, x)``: a liver with one lesion whose voxels reach index sum ``fill_from - 2`` along the
    two array ``axes``, beside fill (-3024) from ``fill_from`` on: only diagonal neighbours of the lesion lie in the
    fill (``axes`` (0, 1): a staircase across slices, as a grid tilted about L leaves it; (1, 2): in-plane)."""
    index = np.indices(shape)
    along = index[axes[0]] + index[axes[1]]
    fill = along >= fill_from
    labels = np.zeros(shape, np.uint8)
    labels[tuple(slice(1, n - 1) if a == 0 else slice(4, n - 4) for a, n in enumerate(shape))] = 1
    labels[fill] = 0
    lesion = np.zeros(shape, dtype=bool)
    lesion[lesion_box] = True
    lesion &= along <= fill_from - 2
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
    labels, hu = staircase_case(axes=(1, 2), shape=(12, 48, 48), fill_from=60,
                                lesion_box=(slice(3, 9), slice(22, 32), slice(22, 32)))
    t = np.radians(30.0)
    about_s = ImageGeometry(spacing=(1.5, 1.5, 2.0),
                            direction=(np.cos(t), -np.sin(t), 0, np.sin(t), np.cos(t), 0, 0, 0, 1))
    (reported,) = lesion_report(labels, about_s, hu_zyx=hu)["lesions"]
    assert reported["touches_scan_edge"] is True and reported["recist_target"] is False
