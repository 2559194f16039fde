"""The Slicer module's follow-up comparison (LiverTumorSegLogic.compareWithBaseline) and its widget wiring, headless:
the Logic runs with the same stand-ins as Testing/Python/test_slicer_module_logic.py (real MRML from slicer-core)."""
import ast
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from test_slicer_module_logic import module  # noqa: F401 - the module-under-test fixture

from LiverTumorSegLib.phantom import PhantomLesion, make_phantom
from mrml_helpers import add_volume_node

MODULE_FILE = Path(__file__).resolve().parents[2] / "LiverTumorSeg" / "LiverTumorSeg.py"


def _ct_and_segmentation(scene, mrml, phantom, name):
    volume = add_volume_node(scene, phantom.ct.array, phantom.ct.geometry, name + " CT")
    return volume, mrml.labels_to_segmentation_node(scene, phantom.labels, phantom.ct.geometry)


class _CompareField(types.SimpleNamespace):
    """A stand-in for one of the compare section's widgets: a node selector, table view, button or label."""

    def currentNode(self):
        return self.node

    def setMRMLTableNode(self, table):
        self.node = table

    def mrmlTableNode(self):
        return self.node


def _compare_section_stand_in(first, second, table=None):
    """The compare section's widgets (``widget.compare``) for the ``(CT, segmentation)`` pairs ``first`` (baseline)
    and ``second`` (follow-up), with ``table`` shown."""
    f = _CompareField
    return {"baselineSegmentation": f(node=first[1]), "baselineVolume": f(node=first[0]),
            "followupSegmentation": f(node=second[1]), "followupVolume": f(node=second[0]),
            "alignOnCT": f(checked=True), "nadirSumMm": f(text=""), "afterCompleteResponse": f(checked=False),
            "previousChangeReport": f(currentPath=""), "button": f(text="Compare"),
            "save": f(enabled=True, toolTip=""), "result": f(text=""), "table": f(node=table)}


def test_logic_compare_with_baseline_fills_the_change_table(module):
    base = make_phantom((20, 64, 64), (2.0, 2.0, 4.0), lesions=[PhantomLesion((10, 22, 16), 6.0, 15.0)],
                        noise_hu=5.0, origin=(-60.0, -40.0, 90.0))
    follow = make_phantom((20, 64, 64), (2.0, 2.0, 4.0), lesions=[PhantomLesion((10, 22, 16), 9.0, 15.0),
                                                                 PhantomLesion((12, 20, 26), 5.0, 20.0)],
                          noise_hu=5.0, origin=(-52.0, -45.0, 98.0), seed=1)
    base_nodes = _ct_and_segmentation(module.scene, module.mrml, base, "baseline")
    follow_nodes = _ct_and_segmentation(module.scene, module.mrml, follow, "follow-up")
    logic = module.m.LiverTumorSegLogic(runnerFactory=module.m.childprocess.SubprocessRunner, python=sys.executable)
    change, table = logic.compareWithBaseline(
        base_nodes[1], base_nodes[0], follow_nodes[1], follow_nodes[0], alignOnCT=True)
    assert change["alignment"]["method"] == "ct"
    np.testing.assert_allclose(change["alignment"]["translation_lps_mm"], [8.0, -5.0, 8.0], atol=1.0)
    assert change["response"] == "PD" and sorted(e["status"] for e in change["lesions"]) == ["grown", "new"]
    rows = module.mrml.change_table_rows(table)
    assert sorted(r["Status"] for r in rows) == ["grown", "new"]
    again, same = logic.compareWithBaseline(
        base_nodes[1], base_nodes[0], follow_nodes[1], follow_nodes[0], alignOnCT=False, tableNode=table)
    assert same is table and again["alignment"]["method"] == "liver"
    # which table is refilled is the panel's choice, whatever the child found: the stand-in child (a bare Python
    # writing a change report without lesions) from here on, two fewer `followup` children (2-3 s each)
    logic.runnerFactory = lambda: _change_writing_runner(_CHANGE)
    # another pair (here: the follow-up against itself) with the last table passed gets its own table; the
    # earlier comparison's table keeps its rows
    rows_before = module.mrml.change_table_rows(table)
    assert len(rows_before) == 2  # the stand-in's report has none: a refill of this table would empty it
    _, other = logic.compareWithBaseline(
        follow_nodes[1], follow_nodes[0], follow_nodes[1], follow_nodes[0], alignOnCT=False, tableNode=table)
    assert other is not table and str(module.mrml.change_table_rows(table)) == str(rows_before)  # NaN-safe
    assert module.mrml.change_table_describes(other, follow_nodes[1], follow_nodes[1])
    # a saved scene loaded again: the panel holds no table, and Compare added a second table for the same pair
    tables = module.scene.GetNumberOfNodesByClass("vtkMRMLTableNode")
    _, reloaded = logic.compareWithBaseline(
        base_nodes[1], base_nodes[0], follow_nodes[1], follow_nodes[0], alignOnCT=False, tableNode=None)
    assert reloaded is table and module.scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == tables
    assert list(module.temp.iterdir()) == []  # the child's files are gone



def test_each_comparison_table_is_named_after_its_follow_up_and_joins_its_study(module):
    """Every comparison's table was 'Lesion follow-up' (its report text node 'Lesion follow-up change report') under
    the scene: baseline vs FU1 and baseline vs FU2 could not be told apart in the Data and Tables modules (the Slicer
    audit). A new table is named after its follow-up CT, uniquely, and kept in that CT's study."""
    import slicer

    phantom = make_phantom((12, 48, 48), (2.0, 2.0, 4.0), lesions=[PhantomLesion((6, 20, 16), 6.0, 15.0)],
                           noise_hu=5.0)
    scene, mrml = module.scene, module.mrml
    base, fu1, fu2 = (_ct_and_segmentation(scene, mrml, phantom, name) for name in ("baseline", "FU1", "FU2"))
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    study = hierarchy.CreateStudyItem(hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Patient"), "FU2 study")
    hierarchy.SetItemParent(hierarchy.GetItemByDataNode(fu2[0]) or hierarchy.CreateItem(study, fu2[0]), study)
    logic = module.m.LiverTumorSegLogic(runnerFactory=lambda: _change_writing_runner(_CHANGE), python=sys.executable)
    tables = [logic.compareWithBaseline(base[1], base[0], follow[1], follow[0], alignOnCT=False)[1]
              for follow in (fu1, fu2, fu1)]
    assert tables[2] is tables[0]  # the same pair's table is refilled, under its name
    assert [t.GetName() for t in tables[:2]] == ["FU1 CT lesion follow-up", "FU2 CT lesion follow-up"]
    reports = [t.GetNodeReference(mrml.CHANGE_REPORT_ROLE).GetName() for t in tables[:2]]
    assert reports == ["FU1 CT lesion follow-up change report", "FU2 CT lesion follow-up change report"]
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(tables[1])) == study
    again = logic.compareWithBaseline(fu1[1], fu1[0], fu2[1], fu2[0], alignOnCT=False)[1]  # another pair, same FU
    assert again.GetName() == "FU2 CT lesion follow-up_1"


def test_a_copy_of_a_change_table_is_never_refilled_by_a_later_comparison(module):
    """A copy of the follow-up table (the Data module's Clone copies its links to the two segmentations) was taken for
    the pair's table: Compare given it (or finding it once the original was deleted) refilled it, and the response
    the user kept in it was lost. Only the table the baseline links to is refilled."""
    base = make_phantom((12, 48, 48), (2.0, 2.0, 4.0), lesions=[PhantomLesion((6, 20, 16), 6.0, 15.0)], noise_hu=5.0)
    ct, segmentation = _ct_and_segmentation(module.scene, module.mrml, base, "baseline")
    # which table is refilled is the panel's choice, whatever the child found: the stand-in child (a bare Python)
    logic = module.m.LiverTumorSegLogic(runnerFactory=lambda: _change_writing_runner(_CHANGE), python=sys.executable)
    _, table = logic.compareWithBaseline(segmentation, ct, segmentation, ct, alignOnCT=False)
    copy = module.scene.AddNewNodeByClass("vtkMRMLTableNode")
    copy.Copy(table)
    copy.SetAttribute("LiverTumorSeg.response", "kept by the user")
    _, again = logic.compareWithBaseline(segmentation, ct, segmentation, ct, alignOnCT=False, tableNode=copy)
    assert again is table and copy.GetAttribute("LiverTumorSeg.response") == "kept by the user"
    mrml, pair = module.mrml, (segmentation, segmentation)
    assert mrml.change_table_describes(copy, *pair) and not mrml.change_table_owned_by(copy, *pair)
    module.scene.RemoveNode(table)  # the original deleted: the copy is still not the pair's table
    assert not mrml.change_table_owned_by(copy, *pair)

def test_comparison_runs_in_a_child_process_polled_from_a_timer_and_can_be_cancelled(module, tmp_path):
    """In Slicer's process the comparison froze the GUI (14 s for two 160 x 512 x 512 CTs); now the panel
    starts a child, a timer polls it, and Cancel kills it without touching the scene."""
    from test_slicer_module_logic import FakeTimer

    base = make_phantom((12, 48, 48), (2.0, 2.0, 4.0), lesions=[PhantomLesion((6, 20, 16), 6.0, 15.0)],
                        noise_hu=5.0, origin=(-40.0, -30.0, 60.0))
    base_nodes = _ct_and_segmentation(module.scene, module.mrml, base, "baseline")
    logic = module.m.LiverTumorSegLogic(runnerFactory=module.m.childprocess.SubprocessRunner, python=sys.executable)
    outcomes = []
    running = logic.compareWithBaseline(base_nodes[1], base_nodes[0], base_nodes[1], base_nodes[0],
                                        waitForCompletion=False, onFinished=outcomes.append)
    assert isinstance(running, module.m.followup_job.FollowupJob) and running.child_pid
    (timer,) = FakeTimer.instances
    tables_before = module.scene.GetNumberOfNodesByClass("vtkMRMLTableNode")
    running.cancel()
    timer.fire()
    assert [o.kind for o in outcomes] == ["cancelled"] and not timer.active
    assert module.scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == tables_before
    assert list(module.temp.iterdir()) == []
    done = logic.compareWithBaseline(base_nodes[1], base_nodes[0], base_nodes[1], base_nodes[0],
                                     waitForCompletion=False, onFinished=outcomes.append)
    timer = FakeTimer.instances[-1]
    while not outcomes[1:]:
        done._runner.wait(0.2)
        timer.fire()
    assert outcomes[1].kind == "done" and outcomes[1].change["response"] == "SD"
    assert module.mrml.change_table_rows(outcomes[1].table_node)[0]["Status"] == "stable"


def test_a_comparison_the_child_refuses_is_a_one_line_error(module):
    base = make_phantom((12, 48, 48), (2.0, 2.0, 4.0), lesions=[], noise_hu=5.0)
    volume, segmentation = _ct_and_segmentation(module.scene, module.mrml, base, "baseline")
    nan_ct = add_volume_node(module.scene, np.full(base.ct.array.shape, np.nan, np.float32), base.ct.geometry, "nan")
    logic = module.m.LiverTumorSegLogic(runnerFactory=module.m.childprocess.SubprocessRunner, python=sys.executable)
    with pytest.raises(module.m.followup_job.FollowupProcessError, match="NaN/Inf voxels") as refused:
        logic.compareWithBaseline(segmentation, volume, segmentation, nan_ct)
    # named as the volume, as segmenting and measuring name it, not as the temporary file it was handed over as
    assert "Volume 'nan' has" in str(refused.value) and "followup_ct.nii" not in str(refused.value)


def test_a_segmentation_compared_on_another_ct_than_its_own_is_refused(module):
    """Swapped CT selectors: each segmentation was read on the other CT's grid and HU, and the panel reported a
    response without a word (an audit saw PD where the right pairing gives SD). Measuring refused this already."""
    from LiverTumorSegLib.errors import InputError
    base = make_phantom((12, 48, 48), (2.0, 2.0, 4.0), lesions=[PhantomLesion((6, 20, 16), 6.0, 15.0)],
                        noise_hu=5.0)
    base_ct, base_seg = _ct_and_segmentation(module.scene, module.mrml, base, "baseline")
    follow_ct, follow_seg = _ct_and_segmentation(module.scene, module.mrml, base, "follow-up")
    base_seg.SetReferenceImageGeometryParameterFromVolumeNode(base_ct)
    follow_seg.SetReferenceImageGeometryParameterFromVolumeNode(follow_ct)
    logic = module.m.LiverTumorSegLogic(runnerFactory=module.m.childprocess.SubprocessRunner, python=sys.executable)
    tables = module.scene.GetNumberOfNodesByClass("vtkMRMLTableNode")
    with pytest.raises(InputError, match="was made on the CT 'baseline CT', not on 'follow-up CT'"):
        logic.compareWithBaseline(base_seg, follow_ct, follow_seg, base_ct)
    with pytest.raises(InputError, match="was made on the CT 'follow-up CT', not on 'baseline CT'"):
        logic.compareWithBaseline(base_seg, base_ct, follow_seg, base_ct)
    assert module.scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == tables
    change, _ = logic.compareWithBaseline(base_seg, base_ct, follow_seg, follow_ct, alignOnCT=False)
    assert change["response"] == "SD"


def test_a_segmentation_without_liver_segments_is_refused_before_the_comparison(module):
    """A segmentation with no Liver / Liver tumor segment was handed over as an empty label map and compared."""
    from LiverTumorSegLib.errors import InputError
    base = make_phantom((12, 48, 48), (2.0, 2.0, 4.0), lesions=[], noise_hu=5.0)
    volume, segmentation = _ct_and_segmentation(module.scene, module.mrml, base, "baseline")
    other = module.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "spleen only")
    other.GetSegmentation().AddEmptySegment("Segment_1", "Spleen", [0.5, 0.5, 0.5])
    logic = module.m.LiverTumorSegLogic(runnerFactory=module.m.childprocess.SubprocessRunner, python=sys.executable)
    with pytest.raises(InputError, match="'spleen only' has no Liver or Liver tumor segment"):
        logic.compareWithBaseline(segmentation, volume, other, volume)


@pytest.mark.parametrize("warped", [0, 1])
def test_a_node_under_a_non_linear_transform_is_refused_before_the_comparison(module, warped):
    """A segmentation or CT under a warp was compared as the warp resampled it, where a segmentation run and Update
    lesion table refuse such a node with what to do (harden the transform)."""
    from LiverTumorSegLib.errors import InputError

    from mrml_helpers import add_warp_transform_node

    base = make_phantom((12, 48, 48), (2.0, 2.0, 4.0), lesions=[PhantomLesion((6, 20, 20), 5.0, 15.0)], noise_hu=5.0)
    volume, segmentation = _ct_and_segmentation(module.scene, module.mrml, base, "baseline")
    (segmentation, volume)[warped].SetAndObserveTransformNodeID(add_warp_transform_node(module.scene, "warp").GetID())
    logic = module.m.LiverTumorSegLogic(runnerFactory=module.m.childprocess.SubprocessRunner, python=sys.executable)
    with pytest.raises(InputError, match="under the non-linear transform 'warp'.*Harden"):
        logic.compareWithBaseline(segmentation, volume, segmentation, volume)


def test_a_node_removed_while_it_was_compared_leaves_no_change_table(module):
    """The user deleted the baseline segmentation while the child ran: the comparison still ended 'done' and added
    a change table pointing at the removed node (measuring and segmenting refused this already)."""
    from test_slicer_module_logic import FakeTimer
    base = make_phantom((12, 48, 48), (2.0, 2.0, 4.0), lesions=[PhantomLesion((6, 20, 16), 6.0, 15.0)],
                        noise_hu=5.0)
    volume, segmentation = _ct_and_segmentation(module.scene, module.mrml, base, "baseline")
    other_volume, other = _ct_and_segmentation(module.scene, module.mrml, base, "follow-up")
    logic = module.m.LiverTumorSegLogic(runnerFactory=module.m.childprocess.SubprocessRunner, python=sys.executable)
    outcomes = []
    running = logic.compareWithBaseline(segmentation, volume, other, other_volume, waitForCompletion=False,
                                        onFinished=outcomes.append)
    timer = FakeTimer.instances[-1]
    module.scene.RemoveNode(segmentation)
    tables_before = module.scene.GetNumberOfNodesByClass("vtkMRMLTableNode")
    while not outcomes:
        running._runner.wait(0.2)
        timer.fire()
    assert outcomes[0].kind == "failed" and "removed from the scene" in str(outcomes[0].error)
    assert module.scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == tables_before


def test_widget_connects_the_table_selection_and_builds_the_compare_section():
    """Static: the widget's setup connects the lesion table's selection to the axis drawing and builds the
    compare section; the handlers call the tested MRML helpers (the widget itself needs a real Slicer)."""
    text = MODULE_FILE.read_text(encoding="utf-8")
    tree = ast.parse(text)
    widget = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "LiverTumorSegWidget")
    methods = {f.name: ast.get_source_segment(text, f) for f in widget.body if isinstance(f, ast.FunctionDef)}
    assert 'self.ui.lesionTableView.connect("selectionChanged()", self.onLesionSelectionChanged)' in methods["setup"]
    assert "self.setupCompareSection()" in methods["setup"]
    assert "mrml.focus_on_table_lesion(" in methods["onLesionSelectionChanged"]
    # the Lesion cell read by panel_text (None for 'inf', text, ...), not int(float(...)), which raised OverflowError
    assert "panel_text.lesion_number_of_cell(" in methods["onLesionSelectionChanged"]
    assert "int(float(" not in methods["onLesionSelectionChanged"]
    assert "self.logic.compareWithBaseline(" in methods["onCompareButton"]
    # Compare writes label maps with nibabel in Slicer's process: it checks the packages as Segment does (it
    # failed with "No module named 'nibabel'" in a fresh Slicer)
    for handler in ("onCompareButton", "onSegmentButton"):
        assert "if not self.dependenciesReady():" in methods[handler]
    assert "self.logic.ensureDependencies(" in methods["dependenciesReady"]
    assert "waitForCompletion=False" in methods["onCompareButton"]  # never blocks Slicer's main thread
    assert "onFinished=self.onCompareFinished" in methods["onCompareButton"]
    assert "panel_text.comparison_text(outcome.change)" in methods["onCompareFinished"]


def test_the_compare_section_is_saved_with_the_scene():
    """Static (the widget needs a real Slicer): the compare section's selectors, its alignment choice and its last
    table are parameter-node fields, so a saved scene reopens with them (they were widget state only). The
    widgets, made in code, are bound by name with connectParametersToGui (Slicer's parameterNodeWrapper API)
    and unbound with the .ui's; the table comes back from the parameter node in updateGUI."""
    text = MODULE_FILE.read_text(encoding="utf-8")
    tree = ast.parse(text)
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    fields = {s.target.id: ast.unparse(s.annotation) for s in classes["LiverTumorSegParameterNode"].body
              if isinstance(s, ast.AnnAssign)}
    names = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                 and [ast.unparse(t) for t in n.targets] == ["COMPARE_PARAMETERS"])
    assert {name: fields.get(name) for name in names + ("changeTable",)} == {
        "baselineSegmentation": "vtkMRMLSegmentationNode", "baselineVolume": "vtkMRMLScalarVolumeNode",
        "followupSegmentation": "vtkMRMLSegmentationNode", "followupVolume": "vtkMRMLScalarVolumeNode",
        "alignOnCT": "bool", "nadirSumMm": "str", "afterCompleteResponse": "bool", "changeTable": "vtkMRMLTableNode"}
    methods = {f.name: ast.get_source_segment(text, f) for f in classes["LiverTumorSegWidget"].body
               if isinstance(f, ast.FunctionDef)}
    made = set(re.findall(r'\("(\w+)", "[^"]*:", "vtkMRML\w+"\)', methods["setupCompareSection"])
               + re.findall(r'self\.compare\["(\w+)"\] = qt\.', methods["setupCompareSection"]))
    assert made >= set(names)  # each bound name is a widget of the section
    # the previous follow-up report is saved with the scene too, copied both ways by the widget (not bound by name:
    # parameterNodeWrapper has no str connector for its ctkPathLineEdit)
    assert fields.get("previousChangeReport") == "str" and "previousChangeReport" not in names
    assert "self._parameterNode.previousChangeReport = path" in methods["onPreviousChangeReportChanged"]
    assert 'self.compare["previousChangeReport"].currentPath = p.previousChangeReport' in methods["updateGUI"]
    assert re.search(r"widgets\.update\(\{name: self\.compare\[name\] for name in COMPARE_PARAMETERS\}\)",
                     methods["setParameterNode"])
    assert "self._parameterNodeGuiTag = self._parameterNode.connectParametersToGui(widgets)" in methods["setParameterNode"]
    assert all("self._disconnectParameterNode()" in methods[name] for name in ("setParameterNode", "cleanup"))
    # leaving the module keeps the binding (re-binding on every entry leaked a wrapper: test_slicer_module_widget.py)
    assert "self._disconnectParameterNode()" not in methods["exit"]
    # a scene import sets the parameter node's references after its one Modified: the cached node fields are
    # read again with another Modified once the import's batch has ended (references resolved then: slicer-core)
    assert "self._parameterNode.Modified()" in methods["onSceneEndBatchProcess"]
    # the result text follows the shown table (a stale run summary stood beside another scene's table)
    assert "table is not self._summaryTable and self._comparison is None" in methods["showChangeTable"]
    assert "self._parameterNode.disconnectGui(self._parameterNodeGuiTag)" in methods["_disconnectParameterNode"]
    assert "self.showChangeTable(p.changeTable)" in methods["updateGUI"]
    assert "self._parameterNode.changeTable = outcome.table_node" in methods["onCompareFinished"]
    assert "_changeTable" not in text  # one place holds the table: the parameter node


def test_a_scene_import_resolves_the_parameter_nodes_references_only_after_its_modified(tmp_path):
    """What the widget's onSceneEndBatchProcess relies on (real MRML, slicer-core): importing a saved scene copies
    its parameter node into the singleton that survived Clear with one Modified, before the nodes it refers to are
    added, so a wrapper that caches node fields on Modified read None; at the end of the import's batch the
    references are there."""
    pytest.importorskip("slicer")
    import slicer
    import vtk
    from LiverTumorSegLib import mrml

    scene = mrml.make_headless_scene()
    node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
    node.SetSingletonTag("LiverTumorSeg")
    node.SetModuleName("LiverTumorSeg")  # as ScriptedLoadableModuleLogic makes it
    scene.AddNode(node)
    node.SetNodeReferenceID("baselineSegmentation", scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Base").GetID())
    node.SetNodeReferenceID("changeTable", scene.AddNewNodeByClass("vtkMRMLTableNode", "Lesion follow-up").GetID())
    scene.SetURL(str(tmp_path / "scene.mrml"))
    assert scene.Commit()
    scene.Clear(0)
    assert scene.GetSingletonNode("LiverTumorSeg", "vtkMRMLScriptedModuleNode") is node  # kept, emptied
    seen = []

    def record(kind):
        return lambda caller, event: seen.append((kind, node.GetNodeReference("baselineSegmentation") is not None,
                                                  node.GetNodeReference("changeTable") is not None))

    node.AddObserver(vtk.vtkCommand.ModifiedEvent, record("Modified"))
    scene.AddObserver(slicer.vtkMRMLScene.EndBatchProcessEvent, record("EndBatchProcess"))
    scene.SetURL(str(tmp_path / "scene.mrml"))
    scene.Import()
    assert seen == [("Modified", False, False), ("EndBatchProcess", True, True)]
    assert node.GetNodeReference("changeTable").GetName() == "Lesion follow-up"


def test_no_table_view_of_the_module_is_given_the_scene():
    """A qMRMLTableView given the scene but no table view node empties itself at the end of every scene batch (a scene
    import, a DICOM load; Slicer's qMRMLTableView.cxx: endProcessing -> updateWidgetFromViewNode), which left the
    change table blank; the module's batch observer put the tables back only if VTK called it after the views. The
    views now get no scene (they use it for nothing else but the Tables module's Plot action), so the observer's
    order no longer matters: it only re-reads the parameter node's references."""
    text = MODULE_FILE.read_text(encoding="utf-8")
    assert "qMRMLTableView()" in text
    assert not re.search(r'compare\["table"\]\.setMRMLScene', text)
    assert not re.search(r"lesionTableView\.setMRMLScene", text)
    widget = next(n for n in ast.parse(text).body if isinstance(n, ast.ClassDef) and n.name == "LiverTumorSegWidget")
    setup = next(ast.get_source_segment(text, f) for f in widget.body
                 if isinstance(f, ast.FunctionDef) and f.name == "setup")
    assert "EndBatchProcessEvent, self.onSceneEndBatchProcess)" in setup

_CHANGE = {"response": "SD", "response_reason": "sum of diameters +0.0 %", "lesions": [], "warnings": [],
           "sum_of_diameters": {"baseline_mm": 40.0, "followup_mm": 40.0, "change_percent": 0.0},
           "alignment": {"method": "ct", "translation_lps_mm": [0.0, 0.0, 0.0], "liver_dice_after_alignment": 1.0}}
"""A change report as ``followup`` writes it (no lesions), for the stand-in child."""


def _change_writing_runner(change):
    """A stand-in ``followup`` child (a bare Python, fast) that writes ``change`` as its change.json and exits 0."""
    import json
    from LiverTumorSegModuleLib.childprocess import SubprocessRunner

    class ChangeWritingRunner(SubprocessRunner):
        def start(self, program, args, env=None):
            out = args[args.index("-o") + 1]
            super().start(sys.executable, ["-c", "import sys; open(sys.argv[1], 'w').write(sys.argv[2])", out,
                                           json.dumps(change)], env)
    return ChangeWritingRunner()


def test_segments_edited_while_they_are_compared_get_a_warning_that_the_table_compares_them_as_they_were(module):
    """The comparison hands both segmentations over when Compare is clicked; a tumor corrected in Segment Editor while
    the child registered the CTs was not in the change table, and nothing said so. The outcome's warnings (shown
    under the response) now name the changed segments; a comparison without edits names none."""
    import slicer

    base = make_phantom((12, 48, 48), (2.0, 2.0, 4.0), lesions=[PhantomLesion((6, 20, 16), 6.0, 15.0)],
                        noise_hu=5.0)
    volume, segmentation = _ct_and_segmentation(module.scene, module.mrml, base, "baseline")
    other_volume, other = _ct_and_segmentation(module.scene, module.mrml, base, "follow-up")
    other.SetName("Follow-up segmentation")
    logic = module.m.LiverTumorSegLogic(runnerFactory=lambda: _change_writing_runner(_CHANGE), python=sys.executable)
    untouched, _ = logic.compareWithBaseline(segmentation, volume, other, other_volume)
    assert not [w for w in untouched["warnings"] if "while they were compared" in w]
    running = logic.compareWithBaseline(segmentation, volume, other, other_volume, waitForCompletion=False)
    painted = np.zeros(base.labels.shape, np.uint8)
    painted[6, 30:32, 30:32] = 1  # four voxels added to the follow-up's tumor, as Segment Editor's Paint writes them
    segments = slicer.vtkSlicerSegmentationsModuleLogic
    segments.SetBinaryLabelmapToSegment(module.mrml.oriented_image_from_array(painted, base.ct.geometry), other,
                                        module.mrml.TUMOR_SEGMENT.segment_id, segments.MODE_MERGE_MAX)
    outcome = running.wait(timeout_s=60)
    assert outcome.kind == "done" and outcome.change["warnings"][0] == (
        "The segment(s) ['Liver tumor'] of 'Follow-up segmentation' were edited, added, removed or renamed while they "
        "were compared; the change table compares the segments as they were when 'Compare' was clicked. Compare "
        "again to compare them as they are now.")
    assert "Warning: The segment(s) ['Liver tumor']" in module.m.panel_text.comparison_text(outcome.change)


def test_a_ct_changed_while_it_is_compared_gets_a_warning_that_the_table_compares_it_as_it_was(module):
    """Segmenting and 'Update lesion table' warn when the CT's voxels change while the child runs, and refuse a CT
    moved meanwhile; a comparison said nothing of a CT whose voxels were replaced or whose spacing was edited (Volume
    Information) while it ran: the change table's mm and mL were silently those of the CT as it was."""
    import slicer

    base = make_phantom((12, 48, 48), (2.0, 2.0, 4.0), lesions=[PhantomLesion((6, 20, 16), 6.0, 15.0)],
                        noise_hu=5.0)
    volume, segmentation = _ct_and_segmentation(module.scene, module.mrml, base, "baseline")
    other_volume, other = _ct_and_segmentation(module.scene, module.mrml, base, "follow-up")
    logic = module.m.LiverTumorSegLogic(runnerFactory=lambda: _change_writing_runner(_CHANGE), python=sys.executable)
    untouched, _ = logic.compareWithBaseline(segmentation, volume, other, other_volume)
    assert not [w for w in untouched["warnings"] if "while it was compared" in w]
    running = logic.compareWithBaseline(segmentation, volume, other, other_volume, waitForCompletion=False)
    slicer.util.arrayFromVolume(volume)[:] += 10  # the voxels edited in place ...
    volume.GetImageData().Modified()
    other_volume.SetSpacing(1.0, 1.0, 4.0)  # ... and the other CT's spacing edited
    outcome = running.wait(timeout_s=60)
    assert outcome.kind == "done" and outcome.change["warnings"][:2] == [
        f"The CT '{name}' was changed (its voxels, or its transform, origin, spacing or size) while it was compared; "
        f"the change table compares the CTs as they were when 'Compare' was clicked. Compare again to compare them as "
        f"they are now." for name in ("baseline CT", "follow-up CT")]


def test_a_change_report_that_cannot_be_shown_is_refused_before_a_table_is_made(module):
    """A change.json without its alignment (a child of another library version) made a change table and ended
    'done'; the panel's response text then raised KeyError in the timer's slot, a traceback in Slicer's console and
    the compare section stuck on "Comparing in a separate process...". It is now refused, saying so, before any
    table is made."""
    base = make_phantom((12, 48, 48), (2.0, 2.0, 4.0), lesions=[PhantomLesion((6, 20, 16), 6.0, 15.0)],
                        noise_hu=5.0)
    volume, segmentation = _ct_and_segmentation(module.scene, module.mrml, base, "baseline")
    broken = {key: value for key, value in _CHANGE.items() if key != "alignment"}
    logic = module.m.LiverTumorSegLogic(runnerFactory=lambda: _change_writing_runner(broken), python=sys.executable)
    tables = module.scene.GetNumberOfNodesByClass("vtkMRMLTableNode")
    with pytest.raises(module.m.job.ChildResultError, match=r"The follow-up process ended without an error, but its "
                       r"result could not be used \(change.json: KeyError: 'alignment'\). The scene was not changed"):
        logic.compareWithBaseline(segmentation, volume, segmentation, volume)
    assert module.scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == tables
    assert list(module.temp.iterdir()) == []


@pytest.mark.parametrize("typed, nadir", [("", None), ("   ", None), ("45.5", 45.5), (" 45,5 mm ", 45.5), ("0", 0.0),
                                          ("30mm", 30.0)])
def test_the_nadir_field_reads_a_sum_of_diameters_in_mm(module, typed, nadir):
    """The compare section's RECIST nadir field (``followup --nadir-sum-mm``): empty = none (the baseline is the
    reference); a decimal comma and a trailing 'mm' are taken."""
    assert module.m.followup_job.nadir_sum_from_text(typed) == nadir


@pytest.mark.parametrize("typed, readings", [("1,000", "('1,000' = 1000 mm) or be a decimal comma ('1,000' = 1 mm)"),
                                             (" 12,500 mm", "('12,500' = 12500 mm) or be a decimal comma ('12,500' = "
                                                            "12.5 mm)"),
                                             ("1,000,000", "('1,000' = 1000 mm) or be a decimal comma ('1,000' = 1 mm)")])
def test_a_nadir_with_a_comma_before_three_digits_is_refused_as_ambiguous(module, typed, readings):
    """'1,000' in the nadir field was read as 1.0 mm (a decimal comma), where a thousands separator makes it 1000 mm:
    a nadir 1000 times too small judged progression from it. A comma before exactly three digits is refused, saying
    both readings and what to type; a decimal comma before one, two or four digits is still taken."""
    from LiverTumorSegLib.errors import InputError
    with pytest.raises(InputError) as refused:
        module.m.followup_job.nadir_sum_from_text(typed)
    assert str(refused.value) == (
        f"Nadir sum of diameters (mm): '{typed.strip()}' is ambiguous: a comma before three digits may separate "
        f"thousands {readings}. Type the sum in mm without a thousands separator, with a decimal point if it has "
        f"decimals (e.g. 1000 or 1.0).")
    assert [module.m.followup_job.nadir_sum_from_text(t) for t in ("12,5", "12,50", "1,0000")] == [12.5, 12.5, 1.0]


@pytest.mark.parametrize("typed", ["-3", "abc", "nan", "inf", "1,234.5", "45 cm", "1.000,5"])
def test_a_nadir_that_is_no_sum_of_diameters_is_refused_saying_what_to_type(module, typed):
    from LiverTumorSegLib.errors import InputError
    with pytest.raises(InputError, match=r"Nadir sum of diameters \(mm\): '.*' is not a sum of diameters in mm\. "
                                         r"Type the smallest sum .* or leave the field empty"):
        module.m.followup_job.nadir_sum_from_text(typed)


def test_the_nadir_reaches_the_child_and_judges_progression_from_it(module):
    """The panel's Compare had no way to give the RECIST nadir, which the CLI takes (``--nadir-sum-mm``): a follow-up
    as large as its baseline read SD though it had grown from a smaller earlier follow-up. ``compareWithBaseline``
    now passes ``nadirSumMm`` to the child: the same pair is SD without it and PD from a 5 mm nadir."""
    base = make_phantom((12, 48, 48), (2.0, 2.0, 4.0), lesions=[PhantomLesion((6, 20, 16), 6.0, 15.0)],
                        noise_hu=5.0, origin=(-40.0, -30.0, 60.0))
    volume, segmentation = _ct_and_segmentation(module.scene, module.mrml, base, "baseline")
    logic = module.m.LiverTumorSegLogic(runnerFactory=module.m.childprocess.SubprocessRunner, python=sys.executable)
    without, _ = logic.compareWithBaseline(segmentation, volume, segmentation, volume, alignOnCT=False)
    assert without["response"] == "SD" and without["sum_of_diameters"]["nadir_mm"] is None
    change, table = logic.compareWithBaseline(segmentation, volume, segmentation, volume, alignOnCT=False,
                                              nadirSumMm=5.0)
    assert change["sum_of_diameters"]["nadir_mm"] == 5.0
    assert change["response"] == "PD" and "nadir 5.0 mm" in change["response_reason"]
    assert module.mrml.change_table_describes(table, segmentation, segmentation)
    from LiverTumorSegLib.errors import InputError
    with pytest.raises(InputError, match="nadir sum of diameters must be a sum of diameters in mm"):
        logic.compareWithBaseline(segmentation, volume, segmentation, volume, nadirSumMm=-1.0)



def test_a_complete_response_before_reaches_the_child_and_a_nadir_above_0_with_it_is_refused(module):
    """The panel had no way to say that the previous assessment was a complete response (``followup
    --after-complete-response``): ``compareWithBaseline(afterCompleteResponse=True)`` passes it on (the report
    records it, with a nadir of 0 mm), and with a nadir above 0 mm it is refused before anything starts."""
    base = make_phantom((12, 48, 48), (2.0, 2.0, 4.0), lesions=[PhantomLesion((6, 20, 16), 6.0, 15.0)],
                        noise_hu=5.0, origin=(-40.0, -30.0, 60.0))
    volume, segmentation = _ct_and_segmentation(module.scene, module.mrml, base, "baseline")
    logic = module.m.LiverTumorSegLogic(runnerFactory=module.m.childprocess.SubprocessRunner, python=sys.executable)
    change, _ = logic.compareWithBaseline(segmentation, volume, segmentation, volume, alignOnCT=False,
                                          afterCompleteResponse=True)
    assert change["after_complete_response"] is True and change["sum_of_diameters"]["nadir_mm"] == 0.0
    assert change["response"] == "PD" and "after the complete response given" in change["response_criteria"]
    assert all(row.get("reappeared_after_complete_response") for row in change["lesions"])
    from LiverTumorSegLib.errors import InputError
    with pytest.raises(InputError, match="the nadir sum of diameters gives 5 mm"):
        logic.compareWithBaseline(segmentation, volume, segmentation, volume, nadirSumMm=5.0,
                                  afterCompleteResponse=True)

def test_compare_reads_the_nadir_field_and_refuses_a_wrong_one_before_anything_starts(module, monkeypatch):
    """The widget's Compare: the typed nadir goes to ``compareWithBaseline`` as mm (empty: None); text that is no
    sum of diameters is shown with what to type, and neither an install nor a comparison is started."""
    import slicer.util

    m = module.m
    widget = m.LiverTumorSegWidget()
    chosen = types.SimpleNamespace(checked=True, text="Compare", currentNode=lambda: "node")
    nadir = types.SimpleNamespace(text="12,5")
    widget.compare = dict({key: chosen for key in ("baselineSegmentation", "baselineVolume", "followupSegmentation",
                                                    "followupVolume", "alignOnCT", "button")},
                          nadirSumMm=nadir, afterCompleteResponse=types.SimpleNamespace(checked=False),
                          previousChangeReport=types.SimpleNamespace(currentPath=""),
                          result=types.SimpleNamespace(text=""), save=types.SimpleNamespace(enabled=True, toolTip=""))
    widget._parameterNode = None
    calls, errors = [], []
    widget.dependenciesReady = lambda: calls.append("dependencies") or True
    widget.logic = types.SimpleNamespace(compareWithBaseline=lambda *a, **k: calls.append(k["nadirSumMm"]) or "job")
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kw: errors.append(text))
    widget.onCompareButton()
    assert calls == ["dependencies", 12.5] and errors == []
    widget._comparison, calls[:] = None, []
    nadir.text = ""
    widget.onCompareButton()
    assert calls == ["dependencies", None]
    widget._comparison, calls[:] = None, []
    nadir.text = "twelve"
    widget.onCompareButton()
    assert calls == [] and len(errors) == 1 and "'twelve' is not a sum of diameters in mm" in errors[0]
    assert widget.compare["result"].text == errors[0]


def test_a_comparison_whose_pair_was_changed_while_it_ran_says_whose_response_it_is(module, monkeypatch):
    """The reader chose the next patient's segmentations in the compare section while a comparison ran: its response
    ("RECIST 1.1 response: PD ...") then stood under the newly chosen pair as if it were theirs. It now begins by naming
    the pair it compares (as a segment run whose CT is no longer the input does); a pair left as it was reads as
    before."""
    from test_slicer_module_logic import FakeTimer

    base = make_phantom((12, 48, 48), (2.0, 2.0, 4.0), lesions=[PhantomLesion((6, 20, 16), 6.0, 15.0)],
                        noise_hu=5.0)
    first = _ct_and_segmentation(module.scene, module.mrml, base, "baseline")
    second = _ct_and_segmentation(module.scene, module.mrml, base, "follow-up")
    first[1].SetName("Baseline segmentation")
    second[1].SetName("Follow-up segmentation")
    widget = module.m.LiverTumorSegWidget()

    widget.compare = _compare_section_stand_in(first, second)
    widget._parameterNode = None
    widget.dependenciesReady = lambda: True
    widget.logic = module.m.LiverTumorSegLogic(runnerFactory=lambda: _change_writing_runner(_CHANGE),
                                               python=sys.executable)
    for choose_another_pair in (False, True):
        widget.onCompareButton()
        running = widget._comparison
        if choose_another_pair:  # the next patient's pair, chosen while the child runs
            widget.compare["baselineSegmentation"].node, widget.compare["followupSegmentation"].node = second[1], first[1]
        while widget._comparison is not None:
            running._runner.wait(0.2)
            FakeTimer.instances[-1].fire()
        lines = widget.compare["result"].text.splitlines()
        if not choose_another_pair:
            assert lines[0].startswith("RECIST 1.1 response: SD")
    assert lines[0] == ("Comparison of 'Baseline segmentation' (on 'baseline CT') with 'Follow-up segmentation' (on "
                        "'follow-up CT'), which are no longer the selected segmentations and CTs: see the table "
                        "'follow-up CT lesion follow-up'.")
    assert lines[1].startswith("RECIST 1.1 response: SD")


def test_save_change_report_is_greyed_out_and_refused_while_a_comparison_runs(module, monkeypatch, tmp_path):
    """*Save change report...* could be clicked while a comparison ran: it saved the report of the table shown before
    that run (not the running one's) and appended its 'saved' line to 'Comparing...', which the run's end then
    replaced. The button is now greyed out while a comparison runs (its tooltip says why) and a click that still
    arrives is refused with a line saying so; after the run it saves the new comparison's report."""
    import slicer.util

    from test_slicer_module_logic import FakeTimer

    from LiverTumorSegLib.followup import read_previous_change

    m, mrml = module.m, module.mrml
    base = make_phantom((12, 48, 48), (2.0, 2.0, 4.0), lesions=[PhantomLesion((6, 20, 16), 6.0, 15.0)],
                        noise_hu=5.0)
    first = _ct_and_segmentation(module.scene, mrml, base, "baseline")
    second = _ct_and_segmentation(module.scene, mrml, base, "follow-up")
    earlier = mrml.create_change_table_node(module.scene, {"response": "PR", "lesions": [], "sum_of_diameters": {
        "target_lesion_ids": [1], "baseline_mm": 40.0, "followup_mm": 20.0, "nadir_mm": None}})
    widget = m.LiverTumorSegWidget()

    widget.compare = _compare_section_stand_in(first, second, earlier)  # the earlier comparison's table
    widget._parameterNode = None
    widget.dependenciesReady = lambda: True
    widget.logic = m.LiverTumorSegLogic(runnerFactory=lambda: _change_writing_runner(dict(_CHANGE, response="PD")),
                                        python=sys.executable)
    errors, dialogs, saved_to = [], [], str(tmp_path / "change.json")
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kw: errors.append(text))
    monkeypatch.setattr(m.qt, "QFileDialog", types.SimpleNamespace(
        getSaveFileName=lambda *a: dialogs.append(a) or saved_to), raising=False)
    monkeypatch.setattr(slicer.util, "mainWindow", lambda *a, **k: None, raising=False)
    widget.onCompareButton()
    running, save = widget._comparison, widget.compare["save"]
    assert running is not None
    assert (save.enabled, save.toolTip) == (False, m.panel_text.SAVE_CHANGE_REPORT_WAIT_TOOLTIP)
    comparing = widget.compare["result"].text
    widget.onSaveChangeReport()  # a click that arrives all the same
    assert (errors, dialogs) == ([m.panel_text.COMPARISON_RUNNING_NOTHING_SAVED], [])
    assert not (tmp_path / "change.json").exists() and widget.compare["result"].text == comparing
    while widget._comparison is not None:
        running._runner.wait(0.2)
        FakeTimer.instances[-1].fire()
    assert (save.enabled, save.toolTip) == (True, m.panel_text.SAVE_CHANGE_REPORT_TOOLTIP)
    errors[:] = []
    widget.onSaveChangeReport()
    assert errors == [] and len(dialogs) == 1 and read_previous_change(saved_to)["response"] == "PD"
    assert widget.compare["result"].text.splitlines()[-1] == m.panel_text.change_report_saved_text(saved_to)


def test_an_empty_segmentation_compared_is_refused_in_the_panels_words(module):
    """Erased segments were refused as 'The follow-up label map holds no liver and no tumor (every voxel 0): a failed
    segmentation or the wrong file', a file the panel user never chose; the panel names the segments."""
    base = make_phantom((12, 48, 48), (2.0, 2.0, 4.0), lesions=[PhantomLesion((6, 22, 16), 6.0, 15.0)], noise_hu=5.0)
    volume, segmentation = _ct_and_segmentation(module.scene, module.mrml, base, "baseline")
    follow_volume, follow = _ct_and_segmentation(module.scene, module.mrml, base, "follow-up")
    module.mrml.labels_to_segmentation_node(module.scene, np.zeros_like(base.labels), base.ct.geometry,
                                            segmentation_node=follow)
    logic = module.m.LiverTumorSegLogic(runnerFactory=module.m.childprocess.SubprocessRunner, python=sys.executable)
    with pytest.raises(module.m.followup_job.FollowupProcessError) as refused:
        logic.compareWithBaseline(segmentation, volume, follow, follow_volume, alignOnCT=False)
    assert str(refused.value).startswith("The follow-up segmentation's Liver and Liver tumor segments are empty (a "
                                         "failed segmentation, or segments erased); compared, it would read as every "
                                         "lesion gone")
    assert "file" not in str(refused.value)


def test_compare_hands_each_cts_dicom_slice_thickness_to_the_child(module, monkeypatch):
    """The child compares NIfTI copies of the CTs, which record no thickness: a baseline that Slicer's DICOM module
    loaded from 9 mm slices (every 4 mm) was judged by the 4 mm spacing (measurable from 10 mm), so its 14 mm lesion
    was a target. Compare now reads each CT's SliceThickness from the DICOM database by its instance UIDs, as Segment
    and Update lesion table do, and gives it as --baseline-slice-thickness-mm (minimum 18 mm, no target, source
    'given'); a CT not loaded from DICOM gets no option (the spacing, as before)."""
    import slicer
    from LiverTumorSegModuleLib.childprocess import SubprocessRunner
    from test_slicer_module_job import _StubDicomDatabase

    phantom = make_phantom((12, 48, 48), (2.0, 2.0, 4.0), lesions=[PhantomLesion((6, 20, 16), 7.0, 15.0)],
                           noise_hu=5.0, origin=(-40.0, -30.0, 60.0))
    base_volume, base_segmentation = _ct_and_segmentation(module.scene, module.mrml, phantom, "baseline")
    follow_volume, follow_segmentation = _ct_and_segmentation(module.scene, module.mrml, phantom, "follow-up")
    base_volume.SetAttribute("DICOM.instanceUIDs", "1.2.1 1.2.2")
    monkeypatch.setattr(slicer, "dicomDatabase", _StubDicomDatabase(
        {("1.2.1", "0018,0050"): "9", ("1.2.2", "0018,0050"): "9.0"}), raising=False)
    children = []

    class RecordingRunner(SubprocessRunner):
        def start(self, program, args, env=None):
            children.append(list(args))
            super().start(program, args, env)

    logic = module.m.LiverTumorSegLogic(runnerFactory=RecordingRunner, python=sys.executable)
    change, _ = logic.compareWithBaseline(base_segmentation, base_volume, follow_segmentation, follow_volume,
                                          alignOnCT=False)
    args = children[-1]
    assert args[args.index("--baseline-slice-thickness-mm") + 1] == "9.0"
    assert "--followup-slice-thickness-mm" not in args
    base, follow = change["baseline"]["recist"], change["followup"]["recist"]
    assert (base["slice_thickness_mm"], base["slice_thickness_source"]) == (9.0, "given")
    assert base["measurable_minimum_mm"] == pytest.approx(18.0)
    assert 10.0 <= change["baseline"]["lesions"][0]["long_axis_mm"] < 18.0 and base["target_lesion_ids"] == []
    assert (follow["slice_thickness_mm"], follow["slice_thickness_source"]) == (4.0, "slice spacing")
    assert follow["target_lesion_ids"] == [1]
    monkeypatch.setattr(slicer, "dicomDatabase", None)  # no DICOM module: both take the spacing, as before
    stand_in = _change_writing_runner(_CHANGE)  # (a bare Python: only the arguments are looked at)
    recorded = stand_in.start
    stand_in.start = lambda program, args, env=None: (children.append(list(args)), recorded(program, args, env))
    logic = module.m.LiverTumorSegLogic(runnerFactory=lambda: stand_in, python=sys.executable)
    logic.compareWithBaseline(base_segmentation, base_volume, follow_segmentation, follow_volume, alignOnCT=False)
    assert len(children) == 2 and not [a for a in children[-1] if a.endswith("-slice-thickness-mm")]


def test_a_previous_follow_up_report_carries_its_nadir_to_the_next_comparison(module, tmp_path):
    """The CLI's ``followup --previous CHANGE_JSON`` carries a chain's nadir and CR; the panel's Compare had no way to
    give it, so a third scan read in Slicer was judged from the baseline alone (SD) unless the nadir was typed by hand.
    ``compareWithBaseline(previousReport=...)`` hands the saved report to the child: the same pair is PD from the
    nadir the previous report carries, and the panel's text says where the nadir came from."""
    from LiverTumorSegLib.errors import InputError

    base = make_phantom((12, 48, 48), (2.0, 2.0, 4.0), lesions=[PhantomLesion((6, 20, 16), 6.0, 15.0)],
                        noise_hu=5.0, origin=(-40.0, -30.0, 60.0))
    volume, segmentation = _ct_and_segmentation(module.scene, module.mrml, base, "baseline")
    logic = module.m.LiverTumorSegLogic(runnerFactory=module.m.childprocess.SubprocessRunner, python=sys.executable)
    fj = module.m.followup_job
    first, _ = logic.compareWithBaseline(segmentation, volume, segmentation, volume, alignOnCT=False, nadirSumMm=5.0)
    saved = fj.save_change_report(first, str(tmp_path / "followup1"))  # .json added
    assert saved == str(tmp_path / "followup1.json")
    change, _ = logic.compareWithBaseline(segmentation, volume, segmentation, volume, alignOnCT=False,
                                          previousReport=saved)
    assert change["response"] == "PD" and change["sum_of_diameters"]["nadir_mm"] == 5.0
    assert change["previous"]["nadir_mm"] == 5.0 and "nadir from the previous change report" in change[
        "response_criteria"]
    reference = module.m.panel_text.reference_line(change)
    assert reference.startswith("Reference: partial response from the baseline, progression from the smaller of the "
                                "baseline's sum and the nadir from the previous change report (nadir 5.0 mm); "
                                "previous follow-up report: response ")
    assert "its nadir 5.0 mm" in reference and reference in module.m.panel_text.comparison_text(change)
    without, _ = logic.compareWithBaseline(segmentation, volume, segmentation, volume, alignOnCT=False)
    assert without["response"] == "SD"
    assert module.m.panel_text.reference_line(without) == \
        "Reference: the baseline is the reference (no nadir given)"
    # refused before anything starts: with a nadir or the CR box, a missing file, a file that is no change report
    with pytest.raises(InputError, match=r"Previous follow-up report \(change.json\) gives the nadir .* clear "
                                         r"'Nadir sum of diameters \(mm\)'"):
        logic.compareWithBaseline(segmentation, volume, segmentation, volume, nadirSumMm=5.0, previousReport=saved)
    with pytest.raises(InputError, match="clear 'Previous assessment was a complete response'"):
        logic.compareWithBaseline(segmentation, volume, segmentation, volume, afterCompleteResponse=True,
                                  previousReport=saved)
    with pytest.raises(InputError, match=r"^Previous follow-up report \(change.json\): '.*gone.json' does not exist"):
        logic.compareWithBaseline(segmentation, volume, segmentation, volume, previousReport=str(tmp_path / "gone.json"))
    (tmp_path / "other.json").write_text('{"response": "SD"}', encoding="utf-8")
    with pytest.raises(InputError, match="is not a followup change report"):
        logic.compareWithBaseline(segmentation, volume, segmentation, volume,
                                  previousReport=str(tmp_path / "other.json"))
    assert list(module.temp.iterdir()) == []


def test_the_previous_report_field_reads_a_path_and_the_change_report_is_saved_where_the_user_finds_it(
        module, tmp_path):
    """The path field: empty is none, quotes (Windows' Copy as path) are taken off. The panel's change.json was in a
    temporary folder deleted after the run, so there was nothing to give as the next follow-up's previous report:
    save_change_report writes it, refusing the previous report's own path (that follow-up's report would be lost)."""
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.followup import read_previous_change

    fj = module.m.followup_job
    assert fj.previous_report_from_text("") is None and fj.previous_report_from_text("  ") is None
    change = {"response": "PR", "response_reason": "x", "lesions": [], "warnings": [],
              "sum_of_diameters": {"target_lesion_ids": [1], "baseline_mm": 20.0, "followup_mm": 12.0, "nadir_mm": None}}
    path = fj.save_change_report(change, str(tmp_path / "fu1.json"))
    assert read_previous_change(path)["sum_of_diameters"]["followup_mm"] == 12.0
    assert fj.previous_report_from_text(f' "{path}" ') == path
    with pytest.raises(InputError, match="would replace the previous follow-up's report"):
        fj.save_change_report(change, path, previous_report=path)
    with pytest.raises(InputError, match="No comparison to save"):
        fj.save_change_report({}, str(tmp_path / "x.json"))
    with pytest.raises(InputError, match="must end in .json"):
        fj.save_change_report(change, str(tmp_path / "x.txt"))
    for no_name in ("", "   ", None):  # the save dialog's field left empty: said so, nothing written anywhere
        with pytest.raises(InputError, match=r"^Give a file name for the change report \(e.g. change_followup2.json\)"):
            fj.save_change_report(change, no_name)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["fu1.json"]
    # a name typed with a trailing dot gets .json in its place ('fu2.' was saved as 'fu2..json')
    assert fj.save_change_report(change, str(tmp_path / "fu2.")) == str(tmp_path / "fu2.json")
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["fu1.json", "fu2.json"]
    with pytest.raises(InputError, match="is no file name"):
        fj.save_change_report(change, str(tmp_path / ".."))


def test_a_comparison_without_all_four_nodes_is_refused_saying_which_to_select(module):
    """A script's compareWithBaseline (or the panel) with a segmentation or CT not chosen: one message naming the four
    selections, before any child or temporary folder."""
    from LiverTumorSegLib.errors import InputError

    logic = module.m.LiverTumorSegLogic(runnerFactory=module.m.childprocess.SubprocessRunner, python=sys.executable)
    with pytest.raises(InputError, match="^Select the baseline and follow-up segmentations and their CTs.$"):
        logic.compareWithBaseline(None, None, None, None)
    with pytest.raises(InputError, match="^Select the CT and its liver segmentation to measure.$"):
        logic.measureSegmentation(None, None)
    assert list(module.temp.iterdir()) == []


def test_the_panels_compare_passes_the_previous_report_and_save_writes_the_last_change(module, monkeypatch, tmp_path):
    """The widget: the *Previous follow-up report* field goes to ``compareWithBaseline(previousReport=...)``; given
    with a nadir it is refused in the panel before anything starts; the field is kept in the parameter node and
    shown again from it; *Save change report...* writes the last comparison's report where the dialog says."""
    import slicer.util

    from LiverTumorSegLib.followup import read_previous_change

    m = module.m
    fj = m.followup_job
    previous = fj.save_change_report({"response": "SD", "lesions": [], "sum_of_diameters": {
        "target_lesion_ids": [1], "baseline_mm": 20.0, "followup_mm": 18.0, "nadir_mm": None}},
        str(tmp_path / "fu1.json"))
    widget = m.LiverTumorSegWidget()
    chosen = types.SimpleNamespace(checked=True, text="Compare", currentNode=lambda: "node")
    nadir, field = types.SimpleNamespace(text=""), types.SimpleNamespace(currentPath=previous)
    widget.compare = dict({key: chosen for key in ("baselineSegmentation", "baselineVolume", "followupSegmentation",
                                                    "followupVolume", "alignOnCT", "button")},
                          nadirSumMm=nadir, afterCompleteResponse=types.SimpleNamespace(checked=False),
                          previousChangeReport=field, result=types.SimpleNamespace(text=""),
                          save=types.SimpleNamespace(enabled=True, toolTip=""))
    widget._parameterNode = None
    calls, errors = [], []
    widget.dependenciesReady = lambda: True
    widget.logic = types.SimpleNamespace(compareWithBaseline=lambda *a, **k: calls.append(k["previousReport"]) or "job")
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kw: errors.append(text))
    widget.onCompareButton()
    assert calls == [previous] and errors == []
    widget._comparison, calls[:] = None, []
    nadir.text = "12"
    widget.onCompareButton()
    assert calls == [] and len(errors) == 1 and "clear 'Nadir sum of diameters (mm)'" in errors[0]
    # kept in the parameter node both ways
    widget._parameterNode = types.SimpleNamespace(previousChangeReport="")
    widget.onPreviousChangeReportChanged(previous)
    assert widget._parameterNode.previousChangeReport == previous
    # Save change report: nothing compared yet, then the last comparison's report
    errors[:] = []
    saved_to = str(tmp_path / "fu2.json")
    monkeypatch.setattr(m.qt, "QFileDialog", types.SimpleNamespace(getSaveFileName=lambda *a: saved_to),
                        raising=False)
    monkeypatch.setattr(slicer.util, "mainWindow", lambda *a, **k: None, raising=False)
    shown = types.SimpleNamespace(table=None)
    widget.compare["table"] = types.SimpleNamespace(mrmlTableNode=lambda: shown.table)
    widget.onSaveChangeReport()
    assert errors == [m.panel_text.NO_CHANGE_REPORT_TO_SAVE]
    shown.table = module.mrml.create_change_table_node(module.scene, {"response": "PD", "lesions": [],
                                                                      "sum_of_diameters": {
        "target_lesion_ids": [1], "baseline_mm": 20.0, "followup_mm": 30.0, "nadir_mm": 18.0}})
    widget.compare["result"].text = "RECIST 1.1 response: PD"
    widget.onSaveChangeReport()
    assert read_previous_change(saved_to)["response"] == "PD"
    assert widget.compare["result"].text.splitlines()[-1] == m.panel_text.change_report_saved_text(saved_to)
    saved_to = previous  # the dialog pointed at the previous report in the field: refused, it is kept
    widget.onSaveChangeReport()
    assert "would replace the previous follow-up's report" in errors[-1]
    assert read_previous_change(previous)["response"] == "SD"
    # a previous report named in the field that is gone since does not stop saving this one
    field.currentPath, saved_to = str(tmp_path / "moved_away.json"), str(tmp_path / "fu2b.json")
    errors[:] = []
    widget.onSaveChangeReport()
    assert errors == [] and read_previous_change(saved_to)["response"] == "PD"


def test_the_change_report_is_saved_with_the_scene_and_save_change_report_works_after_loading_it(module, monkeypatch,
                                                                                                   tmp_path):
    """A scene saved (.mrb) and loaded again had its change table back but not its report, so *Save change report...*
    said 'No comparison to save: press Compare first' and the next follow-up could not be chained without comparing
    again. The report is kept in a text node the table references (a file of its own in the .mrb): after the round
    trip through a real Slicer data bundle (slicer-core's application logic) Save writes the same report. A copy of
    the table (the Data module's Clone) keeps its report when the original is refilled."""
    import json
    import zipfile

    import slicer
    import slicer.util

    from LiverTumorSegLib.followup import change_to_json, read_previous_change

    m, mrml = module.m, module.mrml
    change = {"response": "PR", "response_reason": "sum of diameters -40.0 % (a:b; \"quoted\" & <tag> 50 \u00b5m)",
              "lesions": [{"number": i, "status": "shrunk"} for i in range(1, 31)], "warnings": ["one; two: three"],
              "sum_of_diameters": {"target_lesion_ids": [1, 2], "baseline_mm": 50.0, "followup_mm": 30.0,
                                   "nadir_mm": None, "change_percent": -40.0}}
    scene = mrml.make_headless_scene()
    table = mrml.create_change_table_node(scene, change)
    assert mrml.change_report_of(table) == json.loads(change_to_json(change))
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    assert app.SaveSceneToSlicerDataBundleDirectory(str(bundle), None)
    assert len(change_to_json(change)) > 256 and (bundle / "Data" / "Lesion follow-up change report.txt").is_file()
    mrb = tmp_path / "compare.mrb"
    assert app.Zip(str(mrb), str(bundle))
    assert zipfile.is_zipfile(mrb)
    loaded_scene = mrml.make_headless_scene()
    loader = slicer.vtkSlicerApplicationLogic()
    loader.SetMRMLScene(loaded_scene)
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    assert loader.OpenSlicerDataBundle(str(mrb), str(unpacked))  # as Slicer's File > Add Data of an .mrb
    loaded = loaded_scene.GetFirstNodeByClass("vtkMRMLTableNode")
    assert loaded is not None and mrml.change_report_of(loaded) == mrml.change_report_of(table)
    # the panel's Save on the loaded table: the same report, ready to be the next follow-up's previous report
    widget = m.LiverTumorSegWidget()
    widget.compare = {"table": types.SimpleNamespace(mrmlTableNode=lambda: loaded),
                      "previousChangeReport": types.SimpleNamespace(currentPath=""),
                      "result": types.SimpleNamespace(text="RECIST 1.1 response: PR")}
    errors, saved_to = [], str(tmp_path / "fu1.json")
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kw: errors.append(text))
    monkeypatch.setattr(m.qt, "QFileDialog", types.SimpleNamespace(getSaveFileName=lambda *a: saved_to), raising=False)
    monkeypatch.setattr(slicer.util, "mainWindow", lambda *a, **k: None, raising=False)
    widget.onSaveChangeReport()
    assert errors == []
    assert read_previous_change(saved_to) == mrml.change_report_of(table)
    assert (tmp_path / "fu1.json").read_text(encoding="utf-8") == change_to_json(change)
    # a copy keeps the report it was copied with when the original is refilled by a later comparison
    copy = loaded_scene.AddNewNodeByClass("vtkMRMLTableNode")
    copy.Copy(loaded)
    mrml.create_change_table_node(loaded_scene, dict(change, response="PD"), table_node=loaded)
    assert mrml.change_report_of(loaded)["response"] == "PD" and mrml.change_report_of(copy)["response"] == "PR"
    # no report (an older scene's table, its text node deleted, a text edited by hand): nothing to save
    loaded_scene.RemoveNode(loaded.GetNodeReference(mrml.CHANGE_REPORT_ROLE))
    assert mrml.change_report_of(loaded) is None
    copy.GetNodeReference(mrml.CHANGE_REPORT_ROLE).SetText("not JSON")
    assert mrml.change_report_of(copy) is None and mrml.change_report_of(None) is None
    widget.onSaveChangeReport()
    assert errors == [m.panel_text.NO_CHANGE_REPORT_TO_SAVE]
    # the message names each cause a table without a report has (it named no edited text, the cause here)
    assert all(cause in errors[0] for cause in ("earlier version", "deleted", "text edited"))


def test_save_change_report_refuses_a_hand_edited_report_before_its_dialog_opens(module, monkeypatch, tmp_path):
    """A change table whose kept report text is JSON but no change report (edited by hand to {"foo": 1}) was saved
    by *Save change report...* as if it were one, and refused only later when named as the next follow-up's
    *Previous follow-up report* (or ``followup --previous``); an emptied one ('{}') was refused only after the save
    dialog. Both are refused now before any dialog opens, with the panel's message naming what is wrong; the library
    call ``save_change_report`` refuses such a report too, and a real report is still saved."""
    import slicer.util

    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.followup import read_previous_change

    m, mrml = module.m, module.mrml
    table = mrml.create_change_table_node(module.scene, {"response": "SD", "lesions": [], "sum_of_diameters": {
        "target_lesion_ids": [1], "baseline_mm": 20.0, "followup_mm": 19.0, "nadir_mm": None}})
    text_node = table.GetNodeReference(mrml.CHANGE_REPORT_ROLE)
    widget = m.LiverTumorSegWidget()
    widget.compare = {"table": types.SimpleNamespace(mrmlTableNode=lambda: table),
                      "previousChangeReport": types.SimpleNamespace(currentPath=""),
                      "result": types.SimpleNamespace(text="RECIST 1.1 response: SD")}
    errors, dialogs, saved_to = [], [], str(tmp_path / "fu1.json")
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kw: errors.append(text))
    monkeypatch.setattr(m.qt, "QFileDialog", types.SimpleNamespace(
        getSaveFileName=lambda *a: dialogs.append(a) or saved_to), raising=False)
    monkeypatch.setattr(slicer.util, "mainWindow", lambda *a, **k: None, raising=False)
    for edited, expected in (('{"foo": 1}', m.panel_text.NOT_A_CHANGE_REPORT_TO_SAVE),
                             ('{"response": "SD"}', m.panel_text.NOT_A_CHANGE_REPORT_TO_SAVE),
                             ('{"response": "SD", "sum_of_diameters": {}}', m.panel_text.NOT_A_CHANGE_REPORT_TO_SAVE),
                             ("{}", m.panel_text.NO_CHANGE_REPORT_TO_SAVE)):
        text_node.SetText(edited)
        errors[:] = []
        widget.onSaveChangeReport()
        assert (errors, dialogs) == ([expected], []), edited
        assert not (tmp_path / "fu1.json").exists() and widget.compare["result"].text == "RECIST 1.1 response: SD"
    assert "no response and sum_of_diameters" in m.panel_text.NOT_A_CHANGE_REPORT_TO_SAVE
    with pytest.raises(InputError, match="is not a followup change report"):
        m.followup_job.save_change_report({"foo": 1}, saved_to)
    assert not (tmp_path / "fu1.json").exists()
    # the report as Compare kept it: the dialog opens and the file is one the previous-report field takes
    mrml.create_change_table_node(module.scene, {"response": "PR", "lesions": [], "sum_of_diameters": {
        "target_lesion_ids": [1], "baseline_mm": 20.0, "followup_mm": 12.0, "nadir_mm": None}}, table_node=table)
    errors[:] = []
    widget.onSaveChangeReport()
    assert errors == [] and len(dialogs) == 1
    assert read_previous_change(saved_to)["response"] == "PR"
    assert m.followup_job.previous_report_from_text(saved_to) == saved_to


def test_errors_about_the_previous_report_name_the_panels_field_and_what_to_do_there(module, tmp_path):
    """Shown in the panel, the errors about the previous follow-up report ended in the command line's words ('give the
    change.json that followup wrote ...'), and the child's 'another baseline' error named no field: they now name the
    *Previous follow-up report* field and say what to choose there; the command line's messages are unchanged."""
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.followup import previous_assessment, read_previous_change

    fj, panel_text = module.m.followup_job, module.m.panel_text
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "other.json").write_text('{"response": "SD"}', encoding="utf-8")
    for name in ("gone.json", "bad.json", "other.json"):
        path = str(tmp_path / name)
        with pytest.raises(InputError) as panel:
            fj.previous_report_from_text(path)
        message = str(panel.value)
        assert message.startswith(f"{fj.PREVIOUS_FIELD_NAME}: '{path}' ")
        assert message.endswith(f"; {fj.PREVIOUS_REPORT_ADVICE}.") and "followup wrote" not in message
        assert "--previous" not in message
        with pytest.raises(InputError) as cli:
            read_previous_change(path)
        assert str(cli.value).startswith(f"--previous '{path}' ")
        assert str(cli.value).endswith("; give the change.json that followup wrote for the previous follow-up.")
    previous = {"response": "SD", "sum_of_diameters": {"target_lesion_ids": [1], "baseline_mm": 20.0}}
    with pytest.raises(InputError) as child:
        previous_assessment(previous, [1, 2], 35.0, 2)
    shown = panel_text.followup_text(str(child.value))
    assert shown.startswith(f"The {fj.PREVIOUS_FIELD_NAME} was made against another baseline: ")
    assert shown.endswith("Choose in that field the change report of a follow-up compared with this baseline, or "
                          "clear the field.")


def test_deleting_a_change_table_removes_its_change_report_text_node(module):
    """The change report lives in a text node the change table references. Deleting the table (Data module, Tables
    module, a script) left that text node behind in the scene, belonging to nothing and saved with the scene; now a
    scene observer the module class adds when Slicer loads the module removes a report no table references any more,
    also before the panel was ever opened (no widget here: the observer was the widget's, so a table deleted right
    after loading an .mrb left its report). A report a clone still references stays, and so does a text node of the
    user's; during a batch (a scene import) it waits for the batch's end."""
    m, mrml, scene = module.m, module.mrml, module.scene
    loaded = m.LiverTumorSeg.__new__(m.LiverTumorSeg)
    loaded.parent = types.SimpleNamespace()  # what Slicer's ScriptedLoadableModule.__init__ sets
    loaded.__init__(loaded.parent)  # what Slicer does at start-up; no widget is made
    users = scene.AddNewNodeByClass("vtkMRMLTextNode", "my notes")
    table = mrml.create_change_table_node(scene, {"lesions": [], "response": "SD"})
    report = table.GetNodeReference(mrml.CHANGE_REPORT_ROLE)
    clone = scene.AddNewNodeByClass("vtkMRMLTableNode")
    clone.Copy(table)
    scene.RemoveNode(table)
    assert scene.IsNodePresent(report) and mrml.change_report_of(clone)["response"] == "SD"
    scene.RemoveNode(clone)
    assert not scene.IsNodePresent(report)
    assert scene.IsNodePresent(users)
    other = mrml.create_change_table_node(scene, {"lesions": [], "response": "PD"})
    other_report = other.GetNodeReference(mrml.CHANGE_REPORT_ROLE)
    scene.StartState(scene.BatchProcessState)
    scene.RemoveNode(other)
    assert scene.IsNodePresent(other_report)
    scene.EndState(scene.BatchProcessState)
    assert not scene.IsNodePresent(other_report) and scene.IsNodePresent(users)
    assert scene.GetNumberOfNodesByClass("vtkMRMLTextNode") == 1


def test_a_users_clone_of_a_change_report_is_not_taken_for_an_orphan(module):
    """The Data module's Clone of a change report copies its attributes, so the copy the user made to keep was marked
    as ours and, referenced by no table, removed at the next deletion of any node. A report made here records the ID
    it was made as; the copy's ID is another, and it stays. The report itself still goes with its table."""
    mrml, scene = module.mrml, module.scene
    mrml.observe_change_reports(scene)
    table = mrml.create_change_table_node(scene, {"lesions": [], "response": "SD"})
    report = table.GetNodeReference(mrml.CHANGE_REPORT_ROLE)
    kept = scene.AddNewNodeByClass("vtkMRMLTextNode")
    kept.Copy(report)  # what Clone does (CreateNodeByClass, AddNode, Copy: attributes and references too)
    kept.SetName("my kept change report")
    assert kept.GetAttribute(mrml.CHANGE_REPORT_ATTRIBUTE) == "1" and not mrml.made_here(kept)
    scene.RemoveNode(scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "unrelated"))
    assert scene.IsNodePresent(kept) and scene.IsNodePresent(report)
    scene.RemoveNode(table)
    assert not scene.IsNodePresent(report) and scene.IsNodePresent(kept)
    assert '"response": "SD"' in kept.GetText()


def test_change_report_observers_are_added_once_and_orphans_already_there_are_removed(module):
    """``mrml.observe_change_reports`` (the module class at Slicer's start, the widget's setup again): a report already
    left without its table (a scene whose table was removed before anything observed it) is removed when it is
    called, and a second call adds no second pair of observers."""
    import inspect

    m, mrml, scene = module.m, module.mrml, module.scene
    table = mrml.create_change_table_node(scene, {"lesions": [], "response": "SD"})
    report = table.GetNodeReference(mrml.CHANGE_REPORT_ROLE)
    scene.RemoveNode(table)  # nothing observes the scene yet: the report stays, an orphan
    assert scene.IsNodePresent(report)
    assert mrml.observe_change_reports(scene) == 1 and not scene.IsNodePresent(report)
    tags = list(getattr(scene, mrml.CHANGE_REPORT_OBSERVERS))
    assert len(tags) == 2 and mrml.observe_change_reports(scene) == 0
    assert getattr(scene, mrml.CHANGE_REPORT_OBSERVERS) == tags
    assert mrml.observe_change_reports(None) == 0
    assert "mrml.observe_change_reports(slicer.mrmlScene)" in inspect.getsource(m.LiverTumorSegWidget.setup)


def test_removing_orphan_change_reports_is_reentrancy_safe():
    """Each RemoveNode of remove_orphan_change_reports fires NodeRemovedEvent, whose observer called it again: the
    nested call removed the next orphans itself (one call deeper per orphan) and the outer call then removed them
    again from a scene that no longer held them (3 orphans: 6 RemoveNode calls, 3 on absent nodes)."""
    pytest.importorskip("slicer")
    from LiverTumorSegLib import mrml

    scene = mrml.make_headless_scene()
    users = scene.AddNewNodeByClass("vtkMRMLTextNode", "my notes")
    tables = [mrml.create_change_table_node(scene, {"lesions": [], "response": r}) for r in ("SD", "PD", "PR")]
    reports = [table.GetNodeReference(mrml.CHANGE_REPORT_ROLE) for table in tables]
    for table in tables:
        scene.RemoveNode(table)  # nothing observes the scene yet: three orphans
    assert all(scene.IsNodePresent(report) for report in reports)
    calls, real_remove = [], scene.RemoveNode

    def remove(node):
        calls.append((node.GetID(), bool(scene.IsNodePresent(node))))
        return real_remove(node)

    scene.RemoveNode = remove  # the same Python object is the observer's caller
    assert mrml.observe_change_reports(scene) == 3
    assert sorted(calls) == sorted((report.GetID(), True) for report in reports)
    assert not any(scene.IsNodePresent(report) for report in reports) and scene.IsNodePresent(users)
    assert not getattr(scene, mrml._REMOVING_CHANGE_REPORTS)  # the guard is down again: later removals are seen
    table = mrml.create_change_table_node(scene, {"lesions": [], "response": "SD"})
    report = table.GetNodeReference(mrml.CHANGE_REPORT_ROLE)
    scene.RemoveNode(table)
    assert not scene.IsNodePresent(report) and scene.IsNodePresent(users)


def test_a_change_table_deleted_right_after_loading_an_mrb_takes_its_report_along_without_the_panel(module, tmp_path):
    """The case users met: an .mrb with a change table loaded (File > Add Data, slicer-core's application logic here)
    and the table deleted before the module's panel was opened; its report text node stayed. The module class's
    observers (added when Slicer loads the module) remove it; the import itself keeps the report its table
    references."""
    import slicer

    m, mrml, scene = module.m, module.mrml, module.scene
    loaded = m.LiverTumorSeg.__new__(m.LiverTumorSeg)
    loaded.parent = types.SimpleNamespace()
    loaded.__init__(loaded.parent)
    source = mrml.make_headless_scene()
    mrml.create_change_table_node(source, {"lesions": [], "response": "SD", "sum_of_diameters": {"baseline_mm": 1.0}})
    saver = slicer.vtkSlicerApplicationLogic()
    saver.SetMRMLScene(source)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    assert saver.SaveSceneToSlicerDataBundleDirectory(str(bundle), None)
    assert saver.Zip(str(tmp_path / "compare.mrb"), str(bundle))
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    assert scene._livertumorseg_logics[0].OpenSlicerDataBundle(str(tmp_path / "compare.mrb"), str(unpacked))
    table = scene.GetFirstNodeByClass("vtkMRMLTableNode")
    report = table.GetNodeReference(mrml.CHANGE_REPORT_ROLE)
    assert report is not None and mrml.change_report_of(table)["response"] == "SD"
    scene.RemoveNode(table)
    assert not scene.IsNodePresent(report)


def _warnings_of_a_comparison_with_a_segment_added(module, which, segment_id, name):
    """The warnings of comparing two copies of one phantom (segmentations 'Baseline segmentation' and 'Follow-up
    segmentation') after an empty segment ``segment_id`` named ``name`` was added to the ``which`` one."""
    base = make_phantom((12, 48, 48), (2.0, 2.0, 4.0), lesions=[PhantomLesion((6, 20, 16), 6.0, 15.0)],
                        noise_hu=5.0)
    volume, segmentation = _ct_and_segmentation(module.scene, module.mrml, base, "baseline")
    other_volume, other = _ct_and_segmentation(module.scene, module.mrml, base, "follow-up")
    segmentation.SetName("Baseline segmentation")
    other.SetName("Follow-up segmentation")
    (segmentation if which == "baseline" else other).GetSegmentation().AddEmptySegment(segment_id, name)
    logic = module.m.LiverTumorSegLogic(runnerFactory=lambda: _change_writing_runner(_CHANGE), python=sys.executable)
    change, _ = logic.compareWithBaseline(segmentation, volume, other, other_volume)
    return change["warnings"]


def test_a_segment_that_is_neither_liver_nor_tumor_is_named_as_left_out_of_the_comparison(module):
    """A segment the reader added beside the module's two (a vessel, a lesion named without 'tumor' or 'lesion') is
    not compared: the comparison's warnings name it and say how to name a tumor, as the measuring's do."""
    warnings = _warnings_of_a_comparison_with_a_segment_added(module, "baseline", "vein", "Portal vein")
    left_out = [w for w in warnings if "left out" in w]
    assert left_out == ["segment(s) 'Portal vein' of 'Baseline segmentation' are neither liver nor tumor by name and "
                        "are left out (name a tumor segment so that it holds 'tumor' or 'lesion')"]


def test_tumor_segments_that_touch_are_named_in_the_comparison(module):
    """A baseline tumor split into two touching segments was compared as one lesion without a word (handed over as
    one label map); the comparison's warnings name them, as measure and the panel's lesion table do."""
    base = make_phantom((12, 48, 48), (2.0, 2.0, 4.0), lesions=[PhantomLesion((6, 20, 16), 6.0, 15.0)],
                        noise_hu=5.0)
    volume, segmentation = _ct_and_segmentation(module.scene, module.mrml, base, "baseline")
    other_volume, other = _ct_and_segmentation(module.scene, module.mrml, base, "follow-up")
    segmentation.SetName("Baseline segmentation")
    tumor = (base.labels == 2)
    half = np.zeros(tumor.shape, bool)
    half[:, :, 16:] = tumor[:, :, 16:]  # the lesion's right half, a segment of its own touching the left half
    scratch = module.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "scratch")
    segments = segmentation.GetSegmentation()
    tumor_id = module.mrml.SEGMENTS[1].segment_id
    for mask, segment_id in ((tumor & ~half, tumor_id), (half, "split_2")):
        module.mrml.labels_to_segmentation_node(module.scene, mask.astype(np.uint8), base.ct.geometry,
                                                segmentation_node=scratch)
        if segments.GetSegment(segment_id) is None:
            segments.AddEmptySegment(segment_id, "Liver tumor_2")
        segments.GetSegment(segment_id).DeepCopy(
            scratch.GetSegmentation().GetSegment(module.mrml.SEGMENTS[0].segment_id))
    segments.GetSegment(tumor_id).SetName("Liver tumor")
    segments.GetSegment("split_2").SetName("Liver tumor_2")
    logic = module.m.LiverTumorSegLogic(runnerFactory=lambda: _change_writing_runner(_CHANGE), python=sys.executable)
    change, _ = logic.compareWithBaseline(segmentation, volume, other, other_volume)
    said = [w for w in change["warnings"] if "touch" in w]
    assert said and "'Baseline segmentation' has tumor segments that touch ('Liver tumor' and 'Liver tumor_2')" in \
        said[0]


def test_a_tumor_segment_named_after_another_organ_is_named_in_the_comparison(module):
    """A follow-up segment 'Kidney tumor' became a new liver lesion (a false PD) without a word in the panel's
    comparison, while the panel's lesion table and the command line's followup named it (helper-403's audit)."""
    warnings = _warnings_of_a_comparison_with_a_segment_added(module, "follow-up", "kidney", "Kidney tumor")
    said = [w for w in warnings if "another organ" in w]
    assert len(said) == 1 and "'Kidney tumor' of 'Follow-up segmentation'" in said[0]
