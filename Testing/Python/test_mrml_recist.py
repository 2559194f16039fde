"""MRML helpers for RECIST axes and follow-up (slicer-core): axis line markups at the report's RAS end points,
slice views centred on a lesion, the follow-up table, and a comparison of two segmentation nodes."""
import numpy as np
import pytest

from LiverTumorSegLib import mrml
from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.inference.lesion_report import lesion_report
from LiverTumorSegLib.phantom import PhantomLesion, make_phantom
from LiverTumorSegLib.volume import ImageGeometry
from mrml_helpers import add_volume_node

LESION = {"id": 3, "centroid_ras_mm": [0.0, 0.0, 0.0],
          "long_axis": {"end_points_ras_mm": [[10.0, 20.0, 30.0], [40.0, 20.0, 30.0]]},
          "short_axis": {"end_points_ras_mm": [[25.0, 10.0, 30.0], [25.0, 30.0, 30.0]]}}


def test_focus_point_is_the_long_axis_middle_without_slicer():
    assert mrml.lesion_focus_ras(LESION) == [25.0, 20.0, 30.0]
    assert mrml.lesion_focus_ras({"centroid_ras_mm": [1, 2, 3]}) == [1.0, 2.0, 3.0]
    assert set(mrml.lesion_axis_end_points_ras(LESION)) == {"long", "short"}


slicer = pytest.importorskip("slicer")


@pytest.fixture(scope="module")
def scene():
    return mrml.make_headless_scene()


def _line_points(node):
    return [list(node.GetNthControlPointPositionWorld(i)) for i in range(node.GetNumberOfControlPoints())]


def test_axes_become_locked_line_markups_and_replace_earlier_ones(scene):
    nodes = mrml.show_lesion_axes(scene, LESION)
    assert [n.GetName() for n in nodes] == ["Lesion 3 long axis", "Lesion 3 short axis"]
    assert _line_points(nodes[0]) == [[10.0, 20.0, 30.0], [40.0, 20.0, 30.0]]
    assert nodes[0].GetLineLengthWorld() == pytest.approx(30.0) and nodes[1].GetLineLengthWorld() == pytest.approx(20.0)
    assert nodes[0].GetLocked() and nodes[0].GetAttribute(mrml.LESION_AXIS_ATTRIBUTE) == "long"
    again = mrml.show_lesion_axes(scene, dict(LESION, id=4))
    assert scene.GetNumberOfNodesByClass("vtkMRMLMarkupsLineNode") == 2
    assert again[0].GetName() == "Lesion 4 long axis"
    assert mrml.remove_lesion_axis_markups(scene) == 2


def test_a_refilled_lesion_table_takes_away_the_axes_drawn_for_its_old_rows(scene):
    """A reader selects lesion 1 (its axes are drawn, with their lengths), erases it in Segment Editor and presses
    Update lesion table (or segments again): the table's lesion 1 is now another lesion, but "Lesion 1 long axis"
    stayed drawn where the erased one was. Refilling a table removes the axes drawn for it; another table's stay."""
    first = dict(LESION, id=1)
    table = mrml.create_lesion_table_node(scene, {"lesions": [first], "liver_volume_ml": 1.0})
    other_table = mrml.create_lesion_table_node(scene, {"lesions": [LESION], "liver_volume_ml": 1.0})
    drawn = mrml.focus_on_table_row(scene, table, 0)
    assert [m.GetNodeReferenceID(mrml.LESION_AXIS_TABLE_ROLE) for m in drawn] == [table.GetID()] * 2
    mrml.create_lesion_table_node(scene, {"lesions": [], "liver_volume_ml": 1.0}, table_node=other_table)
    assert scene.GetNumberOfNodesByClass("vtkMRMLMarkupsLineNode") == 2  # not that table's axes
    mrml.create_lesion_table_node(scene, {"lesions": [dict(LESION, id=1)], "liver_volume_ml": 1.0}, table_node=table)
    assert scene.GetNumberOfNodesByClass("vtkMRMLMarkupsLineNode") == 0
    mrml.focus_on_lesion(scene, {"lesions": [LESION]}, 3)  # drawn for no table: only the next selection replaces it
    mrml.create_lesion_table_node(scene, {"lesions": []}, table_node=table)
    assert mrml.remove_lesion_axis_markups(scene) == 2


def test_a_users_clone_of_a_drawn_axis_stays_when_another_row_is_selected_or_the_table_refilled(scene):
    """The Data module's Clone copies attributes and node references, so a copy of a drawn axis the user made to keep
    (a measurement to show a colleague) was taken for ours and removed on the next row selected, or when the table
    was refilled. Drawn axes record the ID they were made as; a copy's is another."""
    report = {"lesions": [dict(LESION, id=1), dict(LESION, id=2)], "liver_volume_ml": 1.0}
    table = mrml.create_lesion_table_node(scene, report)

    def clone(node):  # what Clone does: CreateNodeByClass, AddNode, Copy
        copy = scene.AddNewNodeByClass(node.GetClassName())
        copy.Copy(node)
        copy.SetName(node.GetName() + " (kept)")
        return copy

    kept = clone(mrml.focus_on_table_lesion(scene, table, 1)[0])
    assert kept.GetAttribute(mrml.LESION_AXIS_ATTRIBUTE) == "long" and not mrml.made_here(kept)
    drawn = mrml.focus_on_table_lesion(scene, table, 2)  # another row: lesion 1's two axes go, the copy stays
    assert scene.IsNodePresent(kept) and scene.GetNumberOfNodesByClass("vtkMRMLMarkupsLineNode") == 3
    kept_too = clone(drawn[1])
    mrml.create_lesion_table_node(scene, report, table_node=table)  # a re-run / Update lesion table
    assert scene.IsNodePresent(kept) and scene.IsNodePresent(kept_too)
    assert not any(scene.IsNodePresent(node) for node in drawn)
    assert mrml.remove_lesion_axis_markups(scene) == 0  # only ours, and none is left
    for node in (kept, kept_too):
        scene.RemoveNode(node)


def test_focus_on_lesion_centres_every_slice_view(scene):
    views = []
    for name, orientation in (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal")):
        node = scene.AddNewNodeByClass("vtkMRMLSliceNode")
        node.SetLayoutName(name)
        node.SetOrientation(orientation)
        views.append(node)
    report = {"lesions": [LESION]}
    markups = mrml.focus_on_lesion(scene, report, 3)
    assert len(markups) == 2
    for node in views:  # the slice plane passes through the focus point
        slice_to_ras = node.GetSliceToRAS()
        centre = [slice_to_ras.GetElement(r, 3) for r in range(3)]
        np.testing.assert_allclose(centre, [25.0, 20.0, 30.0], atol=1e-6)
    with pytest.raises(InputError, match="no lesion 9"):
        mrml.focus_on_lesion(scene, report, 9)
    mrml.remove_lesion_axis_markups(scene)


def test_selecting_a_table_row_draws_that_lesions_axes(scene):
    other = dict(LESION, id=1, long_axis={"end_points_ras_mm": [[0.0, 0.0, 5.0], [12.0, 0.0, 5.0]]},
                 short_axis={"end_points_ras_mm": [[6.0, -4.0, 5.0], [6.0, 4.0, 5.0]]})
    table = mrml.create_lesion_table_node(scene, {"lesions": [other, LESION], "liver_volume_ml": 1.0})
    markups = mrml.focus_on_table_row(scene, table, 1)  # second row = lesion 3
    assert [m.GetName() for m in markups] == ["Lesion 3 long axis", "Lesion 3 short axis"]
    markups = mrml.focus_on_table_row(scene, table, 0)
    assert markups[0].GetLineLengthWorld() == pytest.approx(12.0)
    assert mrml.focus_on_table_row(scene, table, 5) == []
    assert mrml.focus_on_table_lesion(scene, table, 1)[0].GetName() == "Lesion 1 long axis"
    with pytest.raises(InputError, match="no lesion 7"):
        mrml.focus_on_table_lesion(scene, table, 7)
    assert mrml.remove_lesion_axis_markups(scene) == 2


def test_report_axes_drawn_in_scene_have_the_report_lengths(scene):
    g = ImageGeometry(spacing=(0.8, 0.8, 2.0), origin=(-30.0, 10.0, 50.0))
    k, j, i = np.indices((12, 60, 60)).astype(float)
    labels = np.ones((12, 60, 60), np.uint8)
    labels[((i - 30) * 0.8 / 15) ** 2 + ((j - 30) * 0.8 / 10) ** 2 + ((k - 6) * 2.0 / 8) ** 2 <= 1] = 2
    lesion = lesion_report(labels, g)["lesions"][0]
    long_node, short_node = mrml.show_lesion_axes(scene, lesion)
    assert long_node.GetLineLengthWorld() == pytest.approx(lesion["long_axis_mm"], abs=1e-6)
    assert long_node.GetLineLengthWorld() == pytest.approx(30.0, abs=1.6)
    assert short_node.GetLineLengthWorld() == pytest.approx(20.0, abs=1.6)
    mrml.remove_lesion_axis_markups(scene)


def _add_ct_and_segmentation(scene, phantom, name):
    volume = add_volume_node(scene, phantom.ct.array, phantom.ct.geometry, name + " CT")
    segmentation = mrml.labels_to_segmentation_node(scene, phantom.labels, phantom.ct.geometry)
    segmentation.SetName(name + " segmentation")
    return volume, segmentation


def test_compare_two_segmentations_in_the_scene_and_fill_the_change_table(scene):
    base = make_phantom((20, 64, 64), (2.0, 2.0, 4.0), lesions=[PhantomLesion((10, 22, 16), 6.0, 15.0),
                                                               PhantomLesion((8, 34, 24), 7.0, 20.0)],
                        noise_hu=5.0, origin=(-60.0, -40.0, 90.0))
    follow = make_phantom((20, 64, 64), (2.0, 2.0, 4.0), lesions=[PhantomLesion((10, 22, 16), 9.0, 15.0)],
                          noise_hu=5.0, origin=(-52.0, -45.0, 98.0), seed=1)
    base_volume, base_seg = _add_ct_and_segmentation(scene, base, "baseline")
    follow_volume, follow_seg = _add_ct_and_segmentation(scene, follow, "follow-up")
    change = mrml.compare_segmentations(base_seg, base_volume, follow_seg, follow_volume, use_ct=False)
    np.testing.assert_allclose(change["alignment"]["translation_lps_mm"], [8.0, -5.0, 8.0], atol=1.0)
    assert sorted(e["status"] for e in change["lesions"]) == ["disappeared", "grown"]
    table = mrml.create_change_table_node(scene, change)
    rows = mrml.change_table_rows(table)
    assert [r["Status"] for r in rows] == [e["status"] for e in change["lesions"]]
    grown = next(r for r in rows if r["Status"] == "grown")
    assert grown["Baseline lesions"] and grown["Follow-up lesions"] == "1"
    assert grown["Follow-up long axis"] > grown["Baseline long axis"] and grown["Long axis change"] > 20
    entry = next(e for e in change["lesions"] if e["status"] == "grown")  # shown to the digits a reader uses
    assert grown["Long axis change"] == round(entry["long_axis_change_percent"], 1)
    assert grown["Follow-up volume"] == round(entry["followup_volume_ml"], 2)
    assert table.GetAttribute("LiverTumorSeg.response") == change["response"]
    assert table.GetColumnUnitLabel("Baseline volume") == "mL"
    same = mrml.create_change_table_node(scene, {"lesions": [], "response": "NE"}, table_node=table)
    assert same is table and mrml.change_table_rows(table) == []


def _translation(scene, name, shift_ras):
    import vtk
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    matrix = vtk.vtkMatrix4x4()
    for axis, value in enumerate(shift_ras):
        matrix.SetElement(axis, 3, float(value))
    node.SetMatrixTransformToParent(matrix)
    return node


def test_a_table_row_shows_the_lesion_where_its_segmentation_is_now_after_a_transform_change(scene):
    """The table keeps the report's world points of the run. After the CT (and its segmentation) were moved by a
    registration, selecting a row centred the views and drew the axes 40 mm from the lesion."""
    transform = _translation(scene, "registration", (10.0, 0.0, 0.0))
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "moved segmentation")
    segmentation.SetAndObserveTransformNodeID(transform.GetID())
    table = mrml.create_lesion_table_node(scene, {"lesions": [LESION], "liver_volume_ml": 1.0})
    mrml.link_lesion_table(table, segmentation)          # LESION's points: world RAS with the 10 mm shift
    view = scene.AddNewNodeByClass("vtkMRMLSliceNode")
    view.SetLayoutName("Red")
    view.SetOrientation("Axial")

    def centre():
        slice_to_ras = view.GetSliceToRAS()
        return [slice_to_ras.GetElement(r, 3) for r in range(3)]

    long_axis, _ = mrml.focus_on_table_lesion(scene, table, 3)   # unchanged: exactly the report's points
    np.testing.assert_allclose(_line_points(long_axis), [[10.0, 20.0, 30.0], [40.0, 20.0, 30.0]], atol=1e-9)
    np.testing.assert_allclose(centre(), [25.0, 20.0, 30.0], atol=1e-6)

    import vtk
    moved = vtk.vtkMatrix4x4()
    moved.SetElement(0, 3, 50.0)                              # the registration is redone: 40 mm further right
    transform.SetMatrixTransformToParent(moved)
    long_axis, short_axis = mrml.focus_on_table_lesion(scene, table, 3)
    np.testing.assert_allclose(_line_points(long_axis), [[50.0, 20.0, 30.0], [80.0, 20.0, 30.0]], atol=1e-9)
    np.testing.assert_allclose(centre(), [65.0, 20.0, 30.0], atol=1e-6)
    assert long_axis.GetLineLengthWorld() == pytest.approx(30.0)
    moved.SetElement(1, 3, -5.0)                              # the axes drawn follow later changes too
    transform.SetMatrixTransformToParent(moved)
    np.testing.assert_allclose(_line_points(short_axis), [[65.0, 5.0, 30.0], [65.0, 25.0, 30.0]], atol=1e-9)
    mrml.remove_lesion_axis_markups(scene)


def test_the_change_table_shows_a_long_axis_change_next_to_a_threshold_as_the_summary_does(scene):
    """A lesion's long axis -29.98 % (stable) read -30.0 in the change table, the shrunk threshold it does not meet,
    while the printed summary says -29.98 %: such a change now shows two decimals; one that meets it, or lies
    elsewhere, one decimal."""
    lesions = [{"number": n, "status": status, "baseline_ids": [n], "followup_ids": [n], "recist_target": False,
                "long_axis_change_percent": percent}
               for n, (status, percent) in enumerate((("stable", -29.98), ("shrunk", -30.0), ("stable", 19.97),
                                                      ("grown", 20.0), ("stable", -12.345)), start=1)]
    table = mrml.create_change_table_node(scene, {"lesions": lesions, "response": "SD"})
    shown = [r["Long axis change"] for r in mrml.change_table_rows(table)]
    assert shown == [-29.98, -30.0, 19.97, 20.0, -12.3]


def test_the_change_tables_long_axes_are_not_rounded_onto_a_rule_they_miss(scene):
    """A new lesion of 4.98 mm read 5.0 beside its 'equivocal' note (under 5 mm), and 20.03 -> 23.99 mm (+19.8 %,
    stable) read 20.0 -> 24.0 (+20 %): the digits the printed summary gives (the printed-numbers audit)."""
    lesions = [{"number": 1, "status": "stable", "baseline_ids": [1], "followup_ids": [1], "recist_target": False,
                "baseline_long_axis_mm": 20.03, "followup_long_axis_mm": 23.99, "long_axis_change_percent": 19.77},
               {"number": 2, "status": "new", "baseline_ids": [], "followup_ids": [2], "recist_target": False,
                "baseline_long_axis_mm": 0.0, "followup_long_axis_mm": 4.98, "unequivocal": False},
               {"number": 3, "status": "grown", "baseline_ids": [3], "followup_ids": [3], "recist_target": False,
                "baseline_long_axis_mm": 20.04, "followup_long_axis_mm": 30.04, "long_axis_change_percent": 49.9}]
    table = mrml.create_change_table_node(scene, {"lesions": lesions, "response": "SD", "min_new_lesion_mm": 5.0})
    rows = mrml.change_table_rows(table)
    assert [(r["Baseline long axis"], r["Follow-up long axis"]) for r in rows] == [(20.03, 23.99), (0.0, 4.98),
                                                                                  (20.0, 30.0)]
    lesions[1]["followup_long_axis_mm"] = 6.04   # at or above the minimum: a tenth of a millimetre
    assert mrml.change_table_rows(mrml.create_change_table_node(
        scene, {"lesions": lesions, "response": "PD"}))[1]["Follow-up long axis"] == 6.0


def test_the_change_table_notes_a_rows_lesions_cut_by_a_scans_edge_or_capped_by_tilted_slices(scene):
    """The change table showed neither a row's scan-edge flags nor its tilted-slice flags: a follow-up lesion capped
    at 16.1 mm (30 mm in its stored slice) read 'shrunk' with no word in the panel. *Notes* now names them."""
    flags = ({}, {"followup_axial_axes_limited_by_slices": True},
             {"baseline_axial_axes_limited_by_slices": True, "followup_cut_by_scan_edge": True},
             {"baseline_cut_by_scan_edge": True})
    lesions = [dict({"number": n, "status": "shrunk", "baseline_ids": [n], "followup_ids": [n],
                     "recist_target": False}, **f) for n, f in enumerate(flags, start=1)]
    table = mrml.create_change_table_node(scene, {"lesions": lesions, "response": "SD"})
    assert [r["Notes"] for r in mrml.change_table_rows(table)] == [
        "", "axes limited by the follow-up's tilted slices",
        "cut by the follow-up scan's edge, axes limited by the baseline's tilted slices",
        "cut by the baseline scan's edge"]


DEEP_JSON = "[" * 5000 + "]" * 5000  # json.loads raises RecursionError, not ValueError


@pytest.mark.parametrize("axes", [DEEP_JSON, "{bad", "null", "5", '{"id": 3}', "[5]", '[{"id": "x"}]', '[{"id": 3}]',
                                  '[{"id": 3, "long_axis": 5}]', '[{"id": 3, "centroid_ras_mm": "abc"}]',
                                  '[{"id": 3, "long_axis": {"end_points_ras_mm": [[1, 2], [3, 4]]}}]',
                                  '[{"id": 3, "centroid_ras_mm": [NaN, 0, 0]}]'])
def test_a_lesion_axes_record_edited_by_hand_reads_as_no_such_lesion(scene, axes):
    """The table's axes record lies in the scene file: edited by hand (no JSON, no list, nested thousands deep, an
    entry without a readable id or points), selecting a row raised RecursionError, KeyError, AttributeError or a VTK
    TypeError, which the panel did not catch; the lesion now reads as absent (InputError, which the panel logs)."""
    table = mrml.create_lesion_table_node(scene, {"lesions": [LESION], "liver_volume_ml": 1.0})
    table.SetAttribute(mrml.LESION_AXES_ATTRIBUTE, axes)
    with pytest.raises(InputError, match="no lesion 3"):
        mrml.focus_on_table_lesion(scene, table, 3)
    assert scene.GetNumberOfNodesByClass("vtkMRMLMarkupsLineNode") == 0
    scene.RemoveNode(table)


def test_an_unreadable_entry_of_the_lesion_axes_record_leaves_the_others_showable(scene):
    table = mrml.create_lesion_table_node(scene, {"lesions": [LESION], "liver_volume_ml": 1.0})
    table.SetAttribute(mrml.LESION_AXES_ATTRIBUTE, '[5, {"id": 1, "long_axis": 2}, %s]' % mrml.lesion_axes_json(
        {"lesions": [LESION]})[1:-1])
    long_axis, _ = mrml.focus_on_table_lesion(scene, table, 3)
    np.testing.assert_allclose(_line_points(long_axis), [[10.0, 20.0, 30.0], [40.0, 20.0, 30.0]], atol=1e-9)
    with pytest.raises(InputError, match="no lesion 1"):
        mrml.focus_on_table_lesion(scene, table, 1)
    assert mrml.remove_lesion_axis_markups(scene) == 2
    scene.RemoveNode(table)


SINGULAR_FRAME = str([0.0] * 16)


@pytest.mark.parametrize("frame", [DEEP_JSON, "{bad", "null", "[1, 2]", '"text"', '{"a": 1}', SINGULAR_FRAME])
def test_a_lesion_frame_edited_by_hand_reads_as_none_and_the_run_points_are_shown(scene, frame):
    """The segmentation's frame of the run, hand-edited into no finite invertible 4x4, raised ValueError,
    LinAlgError or RecursionError (the last not caught by the panel); it now reads as none: the run's world points
    are drawn, as for a table without a frame."""
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "framed segmentation")
    table = mrml.create_lesion_table_node(scene, {"lesions": [LESION], "liver_volume_ml": 1.0})
    mrml.link_lesion_table(table, segmentation)
    table.SetAttribute(mrml.LESION_FRAME_ATTRIBUTE, frame)
    long_axis, _ = mrml.focus_on_table_lesion(scene, table, 3)
    np.testing.assert_allclose(_line_points(long_axis), [[10.0, 20.0, 30.0], [40.0, 20.0, 30.0]], atol=1e-9)
    assert mrml.remove_lesion_axis_markups(scene) == 2
    scene.RemoveNode(table)
    scene.RemoveNode(segmentation)
