"""The panel's binding to its parameter node (LiverTumorSegWidget.setParameterNode, enter, exit, cleanup), headless:
the module is imported with the stand-ins of Testing/Python/test_slicer_module_logic.py, the parameter node is a real
``vtkMRMLScriptedModuleNode`` (slicer-core), and the wrapper is a stand-in that behaves as Slicer 5.6-5.10's
``parameterNodeWrapper`` does where it matters: ``connectParametersToGui`` adds a ModifiedEvent observer (holding the
wrapper) that ``disconnectGui`` never removes (Slicer/Slicer#9063, 2026), and the module's logic returns a new
wrapper on every ``getParameterNode()``. The widgets are stand-ins that have only a SlicerParameterName property."""
import sys
import types

import pytest

vtk = pytest.importorskip("vtk")  # with slicer-core (Python >= 3.10) or the slicer extra

from test_slicer_module_logic import module  # noqa: F401 - the module-under-test fixture

pytestmark = pytest.mark.skipif(sys.platform.startswith("win"), reason="the module fixture is POSIX only")


class SlicerLikeWrapper:
    """What the widget uses of a ``parameterNodeWrapper`` instance, with Slicer 5.6-5.10's observer leak."""

    made = []

    def __init__(self, parameterNode):
        self.parameterNode = parameterNode
        self.inputVolume = None
        self._guis, self._nextTag, self.binds = {}, 0, 0
        SlicerLikeWrapper.made.append(self)

    def connectParametersToGui(self, mapping):
        tag, self._nextTag = self._nextTag, self._nextTag + 1
        self._guis[tag] = dict(mapping)
        self.binds += 1
        # wrapper.py's _connectParametersToGui: self.AddObserver(ModifiedEvent, lambda ...: _updateGUIFromParameterNode(self))
        self.parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda caller, event: self._updateGui())
        return tag

    def disconnectGui(self, tag):
        self._guis.pop(tag, None)  # the observer above stays

    def _updateGui(self):
        for mapping in self._guis.values():
            for widget in mapping.values():
                widget.writes += 1

    def AddObserver(self, event, callback, priority=0.0):
        return self.parameterNode.AddObserver(event, callback, priority)

    def RemoveObserver(self, tag):
        self.parameterNode.RemoveObserver(tag)

    def Modified(self):
        self.parameterNode.Modified()


class Widget:
    def __init__(self, name=None):
        self.name, self.writes = name, 0

    def property(self, key):
        assert key == "SlicerParameterName"
        return self.name


@pytest.fixture
def panel(module):
    """The module's widget (not set up: no Qt) with stand-in widgets, a logic returning a new wrapper per call, and
    updateGUI counted."""
    SlicerLikeWrapper.made.clear()
    node = module.scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "LiverTumorSeg")
    current = {"node": node}
    widget = module.m.LiverTumorSegWidget()
    widget.logic = types.SimpleNamespace(getParameterNode=lambda: SlicerLikeWrapper(current["node"]),
                                         cleanup=lambda: None)
    widget.ui = types.SimpleNamespace(inputSelector=Widget("inputVolume"), levelSpinBox=Widget("windowLevel"),
                                      statusLabel=Widget())
    widget.compare = {name: Widget() for name in module.m.COMPARE_PARAMETERS}
    widget.parent = types.SimpleNamespace(isEntered=True)
    updates = []
    widget.updateGUI = lambda caller=None, event=None: updates.append(caller)
    return types.SimpleNamespace(widget=widget, node=node, current=current, updates=updates)


def _live_bindings():
    return sum(len(w._guis) for w in SlicerLikeWrapper.made)


def test_entering_the_module_again_binds_no_new_wrapper(panel):
    """setup and every enter() wrapped the same MRML node again and bound the new wrapper: each entry left one more
    wrapper (and its observers) alive on the node, and every parameter change rewrote the widgets once per entry
    before this one."""
    w = panel.widget
    w.initializeParameterNode()  # setup
    w.enter()  # Slicer enters the module right after setup
    for _ in range(5):
        w.exit()
        panel.updates.clear()
        panel.node.Modified()
        assert panel.updates == []  # a hidden panel does not follow the node ...
        w.enter()
        assert panel.updates  # ... and is brought up to date on entry
    bound = w._parameterNode
    assert [x.binds for x in SlicerLikeWrapper.made if x.binds] == [1] and bound is SlicerLikeWrapper.made[0]
    assert w._parameterNodeGuiTag is not None
    level = w.ui.levelSpinBox
    level.writes, panel.updates[:] = 0, []
    panel.node.Modified()
    assert level.writes == 1  # one binding writes the widget once per change
    assert len(panel.updates) == 1  # one updateGUI per change


def test_a_new_parameter_node_is_bound_and_the_old_one_unbound(panel, module):
    w = panel.widget
    w.initializeParameterNode()
    first = w._parameterNode
    panel.current["node"] = module.scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "LiverTumorSeg 2")
    w.enter()
    assert w._parameterNode is not first and w._parameterNode.parameterNode is panel.current["node"]
    assert first._guis == {} and _live_bindings() == 1
    panel.updates.clear()
    panel.node.Modified()  # the old node no longer updates the panel
    assert panel.updates == []
    panel.current["node"].Modified()
    assert len(panel.updates) == 1


def test_a_scene_close_unbinds_and_the_end_of_the_close_binds_again(panel):
    """onSceneStartClose calls setParameterNode(None), onSceneEndClose initializeParameterNode: one binding after."""
    w = panel.widget
    w.initializeParameterNode()
    w.setParameterNode(None)
    assert w._parameterNode is None and w._parameterNodeGuiTag is None and _live_bindings() == 0
    panel.updates.clear()
    panel.node.Modified()
    assert panel.updates == []
    w.initializeParameterNode()
    assert _live_bindings() == 1 and w._parameterNodeGuiTag is not None
    panel.updates.clear()
    panel.node.Modified()
    assert len(panel.updates) == 1


def test_cleanup_unbinds_and_stops_observing(panel):
    w = panel.widget
    w.initializeParameterNode()
    w.exit()
    w.cleanup()  # Reload or application exit, also after the module was left
    assert _live_bindings() == 0 and w._parameterNodeGuiTag is None
    panel.updates.clear()
    panel.node.Modified()
    assert panel.updates == [] and w.Observations == []


class TableViewStandIn(Widget):
    """What the widget uses of a qMRMLTableView without a scene: it shows the table node it was last given."""

    def __init__(self, node):
        super().__init__()
        self.node = node

    def setMRMLTableNode(self, node):
        self.node = node

    def mrmlTableNode(self):
        return self.node


def test_a_scene_close_empties_both_table_views(panel, module):
    """The table views get no scene (a qMRMLTableView with one empties itself at every scene batch's end), so nothing
    empties them when the scene closes: onSceneStartClose does, or the closed scene's lesion and change tables stayed
    in the panel (and their nodes alive) until the module was entered again."""
    w = panel.widget
    lesions = module.scene.AddNewNodeByClass("vtkMRMLTableNode", "Lesions")
    changes = module.scene.AddNewNodeByClass("vtkMRMLTableNode", "Lesion follow-up")
    w.ui.lesionTableView = TableViewStandIn(lesions)
    w.ui.resultsSummaryLabel = Widget()
    w.compare["table"] = TableViewStandIn(changes)
    w.compare["result"] = Widget()
    w._task = w._comparison = w._measuring = None
    w.initializeParameterNode()
    w.onSceneStartClose(None, None)
    assert w.ui.lesionTableView.mrmlTableNode() is None and w.compare["table"].mrmlTableNode() is None
    assert w._parameterNode is None


class Label:
    """A QLabel / QPushButton / QProgressBar stand-in: ``text`` and ``value`` attributes, setVisible."""

    def __init__(self, text=""):
        self.text, self.value, self.visible = text, 0, True

    def setVisible(self, visible):
        self.visible = visible

    def repaint(self):
        self.repaints = getattr(self, "repaints", 0) + 1

    def property(self, key):
        return None  # bound to no parameter


def _finished_run(loaded, ct_name="CT A"):
    """A run's DONE outcome for a new CT (its segmentation records it as its CT) and the node of that CT."""
    import numpy as np
    from mrml_helpers import add_volume_node
    from LiverTumorSegLib.volume import ImageGeometry

    geometry = ImageGeometry(spacing=(0.8, 0.8, 2.0))
    labels = np.zeros((4, 8, 8), np.uint8)
    labels[1:3, 2:6, 2:6] = 1
    labels[2, 3, 3] = 2
    ct = add_volume_node(loaded.scene, np.zeros((4, 8, 8), np.int16), geometry, ct_name)
    segmentation = loaded.mrml.labels_to_segmentation_node(loaded.scene, labels, geometry, reference_volume_node=ct)
    segmentation.SetName(ct_name + " segmentation")
    report = {"liver_volume_ml": 41.0, "tumor_volume_ml": 1.28, "tumor_burden_percent": 3.12, "lesions": [{}]}
    table = loaded.mrml.create_lesion_table_node(loaded.scene, report, name=ct_name + " liver lesions")
    outcome = loaded.m.job.SegmentationOutcome(loaded.m.job.DONE, segmentation, table, report, seconds=3.0)
    return ct, outcome


def _results_panel(loaded, input_volume):
    widget = loaded.m.LiverTumorSegWidget()
    widget.ui = types.SimpleNamespace(resultsSummaryLabel=Label(), statusLabel=Label(), progressBar=Label(),
                                      gpuInfoLabel=Label())
    widget._parameterNode = types.SimpleNamespace(inputVolume=input_volume, outputSegmentation=None,
                                                  lesionTable=None)
    widget.updateGUI = lambda caller=None, event=None: None
    return widget


@pytest.mark.parametrize("handler", ["onFinished", "onMeasureFinished"])
def test_a_result_for_a_ct_that_is_no_longer_the_input_says_whose_it_is(module, handler):
    """The input CT changed while the run went on: the result is not selected (nor its table shown), and its
    summary stood alone under the other CT, beside that CT's empty lesion table, as if those were its numbers."""
    ct, outcome = _finished_run(module)
    other = module.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT B")
    widget = _results_panel(module, other)
    getattr(widget, handler)(outcome)
    lines = widget.ui.resultsSummaryLabel.text.splitlines()
    assert lines[0] == ("Result of the CT 'CT A', which is no longer the selected input: see the segmentation "
                        "'CT A segmentation' and the table 'CT A liver lesions'.")
    assert lines[1] == "Liver 41.0 mL (tumors included), tumor 1.28 mL (burden 3.12 %), 1 lesion"
    assert widget._parameterNode.outputSegmentation is None and widget._parameterNode.lesionTable is None
    # the CT still selected: its result is selected and summarised alone
    widget = _results_panel(module, ct)
    widget._parameterNode.outputSegmentation = outcome.segmentation_node
    getattr(widget, handler)(outcome)
    assert widget.ui.resultsSummaryLabel.text == "Liver 41.0 mL (tumors included), tumor 1.28 mL (burden 3.12 %), 1 lesion"
    assert widget._parameterNode.lesionTable is outcome.table_node


def test_each_progress_stage_is_painted_at_once(module):
    """The last stage ("Loading the result into the scene...") is followed by work on the main thread, during which
    no paint event is handled: the status line and the bar are repainted when they are set, or the panel froze on the
    stage before it (and on "Starting..." while the CT was written for the child)."""
    widget = _results_panel(module, None)
    widget.onProgress(0.5, "network")
    assert (widget.ui.statusLabel.text, widget.ui.progressBar.value) == ("network", 50)
    widget.onProgress(1.0, module.m.job.LOADING_RESULT_STAGE)
    assert widget.ui.statusLabel.text == module.m.job.LOADING_RESULT_STAGE and widget.ui.progressBar.value == 100
    assert widget.ui.statusLabel.repaints == 2 and widget.ui.progressBar.repaints == 2


def test_the_compare_section_shows_every_warning_and_the_sum_of_diameters(module):
    """The compare section showed the first three summary lines, in which the warnings come right after the response:
    with two warnings the sum of diameters and the alignment were not shown, and a third warning was dropped."""
    widget = module.m.LiverTumorSegWidget()
    widget.compare = {"button": Label("Cancel"), "save": Label(), "result": Label(), "table": TableViewStandIn(None)}
    widget._comparison, widget._summaryTable, widget._parameterNode = object(), None, None
    change = {"response": "PR", "response_reason": "sum of diameters -40.0 %", "lesions": [],
              "warnings": ["first", "second", "third"],
              "sum_of_diameters": {"target_lesion_ids": [1], "baseline_mm": 50.0, "followup_mm": 30.0,
                                   "change_mm": -20.0, "change_percent": -40.0},
              "alignment": {"method": "ct", "translation_lps_mm": [1.0, 2.0, 3.0], "liver_dice_after_alignment": 0.9}}
    outcome = module.m.followup_job.FollowupOutcome(module.m.job.DONE, change, None)
    widget.onCompareFinished(outcome)
    lines = widget.compare["result"].text.splitlines()
    assert lines[0].startswith("RECIST 1.1 response: PR (sum of diameters -40.0 %)")
    assert lines[1:] == ["target lesions [1]: sum of diameters 50.0 -> 30.0 mm (-40.0 %)",
                         "alignment: ct, translation LPS (1.0, 2.0, 3.0) mm, liver Dice after alignment 0.900",
                         "Warning: first", "Warning: second", "Warning: third"]
    assert widget.compare["button"].text == "Compare"


class CancellableJob:
    def __init__(self):
        self.cancelled = False

    def cancel(self):
        self.cancelled = True


def test_a_measure_or_comparison_cancelled_by_a_scene_close_says_nothing_in_the_next_scene(panel, module):
    """Closing the scene cancels a running Update lesion table and comparison; their outcome came on the next poll
    and wrote "Cancelled; the lesion table was not changed." / "... the scene was not changed." into the panel of
    the next scene (a segmentation cancelled by the close already said nothing). One the user cancels still says so."""
    w = panel.widget
    w.ui.lesionTableView = TableViewStandIn(None)
    w.ui.resultsSummaryLabel, w.ui.statusLabel = Label(), Label()
    w.compare.update(table=TableViewStandIn(None), result=Label(), button=Label("Cancel"), save=Label())
    measuring, comparing = CancellableJob(), CancellableJob()
    w._task, w._measuring, w._comparison = None, measuring, comparing
    w.initializeParameterNode()
    w.onSceneStartClose(None, None)
    assert measuring.cancelled and comparing.cancelled
    cancelled = module.m.job.SegmentationOutcome(module.m.job.CANCELLED)
    w.onMeasureFinished(cancelled)
    w.onCompareFinished(module.m.followup_job.FollowupOutcome(module.m.job.CANCELLED))
    assert w.ui.statusLabel.text == "" and w.compare["result"].text == ""
    # in the next scene, a run the user cancels
    w._measuring, w._comparison = CancellableJob(), CancellableJob()
    w.onMeasureFinished(cancelled)
    w.onCompareFinished(module.m.followup_job.FollowupOutcome(module.m.job.CANCELLED))
    assert w.ui.statusLabel.text == "Cancelled; the lesion table was not changed."
    assert w.compare["result"].text == "Cancelled; the scene was not changed."


def test_a_measure_or_comparison_cancelled_by_a_scene_close_is_let_go_once_its_outcome_came(panel, module):
    """The panel remembered the jobs a scene close cancelled (so that their outcome says nothing in the next scene)
    until the next close: each holds the closed scene's segmentation and CT nodes, with the CT's voxels, which stayed
    in memory while the reader went on with the next patient."""
    import gc
    import weakref

    w = panel.widget
    w.ui.lesionTableView = TableViewStandIn(None)
    w.ui.resultsSummaryLabel, w.ui.statusLabel = Label(), Label()
    w.compare.update(table=TableViewStandIn(None), result=Label(), button=Label("Cancel"), save=Label())
    w._task, w._measuring, w._comparison = None, CancellableJob(), CancellableJob()
    jobs = [weakref.ref(w._measuring), weakref.ref(w._comparison)]
    w.initializeParameterNode()
    w.onSceneStartClose(None, None)
    w.onMeasureFinished(module.m.job.SegmentationOutcome(module.m.job.CANCELLED))
    w.onCompareFinished(module.m.followup_job.FollowupOutcome(module.m.job.CANCELLED))
    assert w.ui.statusLabel.text == "" and w.compare["result"].text == ""  # still nothing said in the next scene
    gc.collect()
    assert [job() for job in jobs] == [None, None]


def test_a_scenes_model_not_installed_here_is_said_in_the_panel_when_the_default_is_selected(module):
    """A scene saved with a model this computer lacks (another installation's package path): the panel selects the
    default model, as before, and now says so in its status line; the switch was written to the Python console only,
    so the next Segment ran another model than the scene's without a word in the panel."""
    widget = module.m.LiverTumorSegWidget()
    combo = types.SimpleNamespace(findData=lambda path: -1)  # the list lacks the scene's model
    widget.ui = types.SimpleNamespace(modelComboBox=combo, statusLabel=Label())
    widget._defaultModelPath = "/install/Resources/Models/default_v10.safetensors"
    widget._parameterNode = types.SimpleNamespace(modelPath="/other/computer/models/my_segnet.safetensors")
    widget.updateGUI()
    assert widget._parameterNode.modelPath == widget._defaultModelPath
    assert widget.ui.statusLabel.text == ("The scene's model 'my_segnet.safetensors' is not installed here, so the "
                                          "default model is selected. To use that model, add its file with 'Add "
                                          "model file...' and pick it in the list.")
    # a new scene (no model yet) takes the default without a note
    widget.ui.statusLabel.text = ""
    widget._parameterNode = types.SimpleNamespace(modelPath="")
    widget.updateGUI()
    assert widget._parameterNode.modelPath == widget._defaultModelPath and widget.ui.statusLabel.text == ""


def test_the_update_lesion_table_button_says_why_it_is_off(module):
    """updateGUI (the real one, stand-in widgets): the button was greyed out for another CT's segmentation with its
    tooltip saying only what it does when clicked; now the tooltip says why, and for the CT's own result it is on with
    the .ui's tooltip. While measuring it reads Cancel and says what Cancel does."""
    ct, outcome = _finished_run(module)
    other = module.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT B")
    widget = module.m.LiverTumorSegWidget()
    combo = types.SimpleNamespace(findData=lambda path: 0, currentIndex=0, currentText="Auto")
    widget.ui = types.SimpleNamespace(
        modelComboBox=combo, deviceComboBox=combo, windowLevelSpinBox=Label(), windowWidthSpinBox=Label(),
        lesionTableView=TableViewStandIn(None), resultsSummaryLabel=Label(), segmentButton=Label(),
        measureButton=Label())
    widget.compare = {"table": TableViewStandIn(None), "result": Label(),
                      "previousChangeReport": types.SimpleNamespace(currentPath="")}
    widget._parameterNode = types.SimpleNamespace(
        modelPath="default.safetensors", lesionProbabilityModel="default.safetensors", device="auto",
        overrideWindow=False, inputVolume=ct, outputSegmentation=outcome.segmentation_node,
        lesionTable=outcome.table_node, changeTable=None, previousChangeReport="")
    widget._lastInputVolume = ct
    widget.updateGUI()
    button = widget.ui.measureButton
    assert (button.enabled, button.toolTip, button.text) == (True, module.m.panel_text.MEASURE_TOOLTIP,
                                                             "Update lesion table from segments")
    widget._parameterNode.inputVolume = widget._lastInputVolume = other  # chosen by hand for another CT
    widget.updateGUI()
    assert button.enabled is False and "made on another CT" in button.toolTip
    widget._measuring = object()
    widget.updateGUI()
    assert (button.enabled, button.text) == (True, "Cancel") and button.toolTip.startswith("Stop updating")
    # the previous follow-up report's field (not bound by the wrapper: no str connector for a ctkPathLineEdit) shows
    # the parameter node's path, e.g. of a scene loaded from disk
    widget._parameterNode.previousChangeReport = "/reports/followup1.json"
    widget.updateGUI()
    assert widget.compare["previousChangeReport"].currentPath == "/reports/followup1.json"
