"""The module's own LiverTumorSegLogic (LiverTumorSeg/LiverTumorSeg.py), run headless.

slicer-core has Slicer's MRML and logic classes but no GUI; the few GUI-side names the Logic touches are stood in
for here, and everything else is real: ``qt.QTimer`` (a stand-in whose ``timeout()`` the test fires, as Qt's event
loop would), ``slicer.app`` (temporary folder, testing flag), ``slicer.modules.colors`` (the headless scene's color
logic), ``slicer.util.setSliceViewerLayers`` (recorded; it needs Slicer's layout manager) and the
``ScriptedLoadableModule`` base classes. The Logic's ``process`` then starts the child through its runner and
loads the results into ``slicer.mrmlScene``, with the same code as in Slicer.
"""
import importlib.util
import os
import re
import sys
import time
import types
import unittest
from pathlib import Path

import numpy as np
import pytest

from LiverTumorSegLib.processes import process_alive

ROOT = Path(__file__).resolve().parents[2]
MODULE_FILE = ROOT / "LiverTumorSeg" / "LiverTumorSeg.py"
sys.path.insert(0, str(ROOT / "LiverTumorSeg"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

pytestmark = pytest.mark.skipif(sys.platform.startswith("win"), reason="SubprocessRunner is POSIX only")


class FakeTimer:
    """qt.QTimer stand-in: the test calls ``fire()`` where Qt's event loop would emit timeout()."""

    instances = []

    def __init__(self):
        self.callbacks, self.active, self.interval = [], False, None
        FakeTimer.instances.append(self)

    def setInterval(self, ms):
        self.interval = ms

    def connect(self, signal, callback):
        assert signal == "timeout()"
        self.callbacks.append(callback)

    def start(self):
        self.active = True

    def stop(self):
        self.active = False

    def fire(self):
        if self.active:
            for callback in self.callbacks:
                callback()


def _qt_module():
    qt = types.ModuleType("qt")
    qt.QTimer = FakeTimer
    qt.QUrl = types.SimpleNamespace(fromLocalFile=lambda path: types.SimpleNamespace(toString=lambda: "file://" + path))
    return qt


def _slm_module():
    slm = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            pass

    class ScriptedLoadableModuleTest(unittest.TestCase):
        """Slicer's is a unittest.TestCase whose delayDisplay shows a message (here: recorded in ``shown``)."""

        shown = []

        def delayDisplay(self, message, requestedDelay=None, msec=None):
            ScriptedLoadableModuleTest.shown.append(message)

    slm.ScriptedLoadableModuleLogic = ScriptedLoadableModuleLogic
    slm.ScriptedLoadableModuleTest = ScriptedLoadableModuleTest
    slm.ScriptedLoadableModule = slm.ScriptedLoadableModuleWidget = type(
        "Base", (), {"__init__": lambda self, *a, **k: None})
    return slm


def _pnw_module():
    pnw = types.ModuleType("slicer.parameterNodeWrapper")
    pnw.parameterNodeWrapper = lambda cls: cls
    pnw.WithinRange = lambda low, high: (low, high)
    return pnw


@pytest.fixture
def module(monkeypatch, tmp_path):
    """LiverTumorSeg.py imported with the GUI stand-ins; ``slicer.mrmlScene`` is a headless scene."""
    pytest.importorskip("slicer")
    import slicer.util  # binds slicer too
    from LiverTumorSegLib import mrml
    scene = mrml.make_headless_scene()
    temp = tmp_path / "slicer-temp"
    temp.mkdir()
    layers = []
    monkeypatch.setitem(sys.modules, "qt", _qt_module())
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", _slm_module())
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", _pnw_module())
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    environment = types.SimpleNamespace(keys=lambda: list(os.environ), value=lambda key: os.environ[key])
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(
        temporaryPath=str(temp), commandOptions=lambda: types.SimpleNamespace(testingEnabled=True),
        startupEnvironment=lambda: environment,
        processEvents=lambda: [timer.fire() for timer in list(FakeTimer.instances)]), raising=False)  # Qt's loop
    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(
        colors=types.SimpleNamespace(logic=lambda: scene._livertumorseg_logics[1])), raising=False)
    monkeypatch.setattr(slicer.util, "setSliceViewerLayers", lambda **kw: layers.append(kw))
    spec = importlib.util.spec_from_file_location("LiverTumorSeg_under_test", str(MODULE_FILE))
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    FakeTimer.instances.clear()
    return types.SimpleNamespace(m=loaded, scene=scene, temp=temp, layers=layers, mrml=mrml)


def _fire_until(timer, done, timeout_s=120.0):
    """Fire the stand-in poll ``timer`` (Qt's event loop) every 20 ms until ``done()`` or ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        timer.fire()
        time.sleep(0.02)


# how long a killed child may take to be gone: a bound that only a child left running reaches. Kill is SIGKILL and
# waits for the child, so it is gone at once; 2 s could run out on a slow, busy CI machine.
KILLED_WITHIN_S = 60.0


def _ended_within(pid, timeout_s):
    """Whether process ``pid`` has ended within ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return not process_alive(pid)


def _fake_runner_factory(tmp_path, mode):
    from test_slicer_module_job import FAKE_CHILD, FakeChildRunner
    script = tmp_path / "fake_child.py"
    script.write_text(FAKE_CHILD)
    return lambda: FakeChildRunner(script, mode)


def _ct_node(scene):
    from test_slicer_module_job import _ct_array, _volume_node
    from LiverTumorSegLib.volume import ImageGeometry
    return _volume_node(scene, _ct_array(), ImageGeometry(spacing=(0.8, 0.9, 2.5)))


def test_logic_process_waits_and_shows_segments_and_probability(module, tmp_path):
    pytest.importorskip("SimpleITK")
    logic = module.m.LiverTumorSegLogic(runnerFactory=_fake_runner_factory(tmp_path, "ok"), python=sys.executable)
    node = _ct_node(module.scene)
    views = [module.scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode") for _ in range(3)]  # Slicer's layout's
    stages = []
    options = module.m.job.SegmentationOptions(model="m.safetensors", probabilities=True)
    outcome = logic.process(node, None, "m.safetensors", "cpu", options=options,
                            progress=lambda f, s: stages.append(s), showIn3D=False)
    assert outcome.kind == "done" and stages[-2:] == ["done", module.m.job.LOADING_RESULT_STAGE]
    assert outcome.segmentation_node.GetScene() is module.scene
    # the CT was in no view: every view shows it, under the map
    assert [(v.GetBackgroundVolumeID(), v.GetForegroundVolumeID()) for v in views] == \
        [(node.GetID(), outcome.probability_node.GetID())] * 3
    assert [v.GetForegroundOpacity() for v in views] == [0.5] * 3
    assert module.layers == [] and list(module.temp.iterdir()) == []
    # a second run without the map: the first run's map no longer describes the segments and goes off the views;
    # the user's overlay stays
    overlay = module.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "user's overlay")
    views[2].SetForegroundVolumeID(overlay.GetID())
    again = logic.process(node, outcome.segmentation_node, "m.safetensors", "cpu",
                          options=module.m.job.SegmentationOptions(model="m.safetensors"), showIn3D=False)
    assert again.kind == "done" and again.probability_node is None
    assert [(v.GetBackgroundVolumeID(), v.GetForegroundVolumeID()) for v in views] == \
        [(node.GetID(), None), (node.GetID(), None), (node.GetID(), overlay.GetID())]


def test_scripted_runs_into_one_segmentation_refill_its_one_lesion_table(module, tmp_path):
    """A script that ran ``logic.process(ct, segmentation, ...)`` again and again (no ``tableNode``, as the docs'
    snippet) reused the segmentation but made a new lesion table each time: 3 runs, "CT liver lesions",
    "CT liver lesions_1", "_2", all linked to the one segmentation. The table linked to it is now refilled; a table
    passed for another segmentation is still never written into."""
    pytest.importorskip("SimpleITK")
    logic = module.m.LiverTumorSegLogic(runnerFactory=_fake_runner_factory(tmp_path, "ok"), python=sys.executable)
    node = _ct_node(module.scene)
    first = logic.process(node, None, "m.safetensors", "cpu", showIn3D=False)
    other = logic.process(_ct_node(module.scene), None, "m.safetensors", "cpu", showIn3D=False)
    for table in (None, other.table_node):
        again = logic.process(node, first.segmentation_node, "m.safetensors", "cpu", showIn3D=False, tableNode=table)
        assert again.segmentation_node is first.segmentation_node and again.table_node is first.table_node
    assert module.scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 2
    assert module.mrml.lesion_table_describes(other.table_node, other.segmentation_node)





def test_a_copy_of_a_lesion_table_is_never_refilled_by_a_later_run(module, tmp_path):
    """A copy of the lesion table (the Data module's Clone copies the node with its attributes and references) links
    to the segmentation as the table does, and a later run took it for the segmentation's table: passed as
    ``tableNode``, or found in the scene once the original was deleted, the copy was refilled and what the user kept
    in it was lost. Only the table the segmentation links to is refilled; without it a new table is made."""
    pytest.importorskip("SimpleITK")
    logic = module.m.LiverTumorSegLogic(runnerFactory=_fake_runner_factory(tmp_path, "ok"), python=sys.executable)
    node = _ct_node(module.scene)
    first = logic.process(node, None, "m.safetensors", "cpu", showIn3D=False)
    segmentation, mrml = first.segmentation_node, module.mrml
    copy = module.scene.AddNewNodeByClass("vtkMRMLTableNode", "kept by the user")
    copy.Copy(first.table_node)
    copy.SetName("kept by the user")
    copy.SetAttribute(mrml.TABLE_ATTRIBUTE_PREFIX + "liver_volume_ml", "123.0")  # what the user keeps
    again = logic.process(node, segmentation, "m.safetensors", "cpu", showIn3D=False, tableNode=copy)
    assert again.table_node is first.table_node and copy.GetAttribute("LiverTumorSeg.liver_volume_ml") == "123.0"
    assert mrml.lesion_table_describes(copy, segmentation) and not mrml.lesion_table_owned_by(copy, segmentation)
    module.scene.RemoveNode(first.table_node)  # the original deleted: the copy is still not the segmentation's
    third = logic.process(node, segmentation, "m.safetensors", "cpu", showIn3D=False)
    assert third.table_node is not copy and copy.GetAttribute("LiverTumorSeg.liver_volume_ml") == "123.0"
    assert mrml.lesion_table_owned_by(third.table_node, segmentation)
    # a scene saved before segmentations linked to their table: its one table is the segmentation's, a copied one none
    segmentation.RemoveNodeReferenceIDs(mrml.OWN_LESION_TABLE_ROLE)
    segmentation.RemoveAttribute(mrml.OWN_LESION_TABLE_RECORDED_ATTRIBUTE)
    module.scene.RemoveNode(copy)
    assert mrml.lesion_table_owned_by(third.table_node, segmentation)
    module.scene.AddNewNodeByClass("vtkMRMLTableNode").Copy(third.table_node)
    assert not mrml.lesion_table_owned_by(third.table_node, segmentation)

def test_scripted_runs_that_turn_the_probability_map_off_and_on_refill_the_segmentations_one_map(module, tmp_path):
    """A script that ran ``logic.process(ct, segmentation, ...)`` with the map on, off, on, off, on added a new
    "CT tumor probability_N" volume each time the map was turned on again: the run without it unlinked the map from
    the segmentation, and the next run with it no longer found it. The segmentation's map is refilled now (as its
    lesion table is); while the map is off it stays unlinked ("Update lesion table" does not read it)."""
    pytest.importorskip("SimpleITK")
    logic = module.m.LiverTumorSegLogic(runnerFactory=_fake_runner_factory(tmp_path, "ok"), python=sys.executable)
    node = _ct_node(module.scene)
    with_map, without_map = (module.m.job.SegmentationOptions(probabilities=p) for p in (True, False))
    first = logic.process(node, None, "m.safetensors", "cpu", options=with_map, showIn3D=False)
    segmentation, volumes = first.segmentation_node, module.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    for options in (without_map, without_map, with_map):
        again = logic.process(node, segmentation, "m.safetensors", "cpu", options=options, showIn3D=False)
        linked = segmentation.GetNodeReference(module.mrml.PROBABILITY_VOLUME_ROLE)
        assert (again.probability_node, linked) == ((first.probability_node,) * 2 if options.probabilities else
                                                    (None, None))
    assert module.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == volumes
    assert first.probability_node.GetName() == "CT tumor probability"


def test_a_run_into_a_copy_of_a_segmentation_leaves_the_originals_probability_map_alone(module, tmp_path):
    """A copy of a segmentation (the Data module's Clone) keeps its link to the original's probability map, and a run
    with the map into the copy refilled that map: the original segmentation's map then showed the copy's run, and
    "Update lesion table" gave the original's lesions its probabilities. The copy gets a map of its own, and until then
    has none that "Update lesion table" would read (the original's is refilled by the original's runs)."""
    pytest.importorskip("SimpleITK")
    logic = module.m.LiverTumorSegLogic(runnerFactory=_fake_runner_factory(tmp_path, "ok"), python=sys.executable)
    node = _ct_node(module.scene)
    with_map = module.m.job.SegmentationOptions(probabilities=True)
    first = logic.process(node, None, "m.safetensors", "cpu", options=with_map, showIn3D=False)
    copy = module.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    copy.Copy(first.segmentation_node)
    assert module.mrml.probability_volume_of(copy) is None  # nor is it read as the copy's by Update lesion table
    again = logic.process(node, copy, "m.safetensors", "cpu", options=with_map, showIn3D=False)
    assert again.probability_node is not first.probability_node
    assert first.segmentation_node.GetNodeReference(module.mrml.PROBABILITY_VOLUME_ROLE) is first.probability_node
    assert copy.GetNodeReference(module.mrml.PROBABILITY_VOLUME_ROLE) is again.probability_node

def test_a_runs_warnings_are_kept_on_its_lesion_table_in_the_panels_words(module, tmp_path):
    """The table keeps the warnings the panel showed under the run (the CT named by its node, not the temporary file
    the child read), so a saved scene loaded again shows them beside the table; a scene saved and loaded again
    (.mrml with the table's .tsv) gives the same summary, warnings included."""
    pytest.importorskip("SimpleITK")
    logic = module.m.LiverTumorSegLogic(runnerFactory=_fake_runner_factory(tmp_path, "ok"), python=sys.executable)
    outcome = logic.process(_ct_node(module.scene), None, "m.safetensors", "cpu", showIn3D=False)
    assert outcome.warnings == ["Volume 'CT' has thick slices (6.5 mm); small lesions may be missed."]
    assert module.mrml.lesion_table_warnings(outcome.table_node) == outcome.warnings
    summary = module.m.panel_text.table_summary_text(outcome.table_node)
    assert summary == module.m.panel_text.summary_text(outcome.report, outcome.warnings)
    outcome.table_node.AddDefaultStorageNode()
    storage = outcome.table_node.GetStorageNode()
    storage.SetFileName(str(tmp_path / "lesions.tsv"))
    assert storage.WriteData(outcome.table_node)
    module.scene.SetURL(str(tmp_path / "scene.mrml"))
    assert module.scene.Commit()
    reloaded = module.mrml.make_headless_scene()
    reloaded.SetURL(str(tmp_path / "scene.mrml"))
    reloaded.Import()
    table = reloaded.GetFirstNodeByName(outcome.table_node.GetName())
    assert module.m.panel_text.table_summary_text(table) == summary and "Warning: Volume 'CT' has thick" in summary

def test_a_script_passing_nodes_in_another_order_or_by_name_gets_an_input_error_before_any_work(module):
    """Scripted calls with the nodes swapped (``measureSegmentation(ct, segmentation)``), a node's name instead of the
    node, or the options as a dict failed with "AttributeError: ... has no attribute 'GetSegmentation'" (or
    'GetName', 'GetImageData') and "replace() should be called on dataclass instances" from inside the run; a CT
    never added to the scene was segmented and then refused as "removed from the scene while it was segmented". They
    are now refused first, saying which argument is what and what to pass; nothing is started or added."""
    from LiverTumorSegLib.errors import InputError
    import slicer
    started = []
    runner = types.SimpleNamespace(start=lambda *args, **kwargs: started.append(args))
    logic = module.m.LiverTumorSegLogic(runnerFactory=lambda: runner, python=sys.executable)
    ct = _ct_node(module.scene)
    segmentation = module.mrml.labels_to_segmentation_node(module.scene, np.ones((4, 5, 6), np.uint8),
                                                           module.m.job.volume_grid(ct)[0])
    never_added = slicer.vtkMRMLScalarVolumeNode()  # a script's node, made but not added to the scene
    never_added.SetName("CT")
    never_added.SetAndObserveImageData(ct.GetImageData())
    nodes_before = module.scene.GetNumberOfNodes()
    swapped = "'CT' is a vtkMRMLScalarVolumeNode, given as the {}, which must be a vtkMRMLSegmentationNode; check the order"
    for call, message in [
            (lambda: logic.process(ct, ct, "m.safetensors"), swapped.format("output segmentation")),
            (lambda: logic.process(segmentation, None, "m.safetensors"), "'Liver segmentation' is a "
             "vtkMRMLSegmentationNode, given as the CT, which must be a vtkMRMLScalarVolumeNode"),
            (lambda: logic.process("CT", None, "m.safetensors"), "The CT must be a vtkMRMLScalarVolumeNode, not the "
             "str 'CT'; pass the node itself, e.g. slicer.util.getNode('CT')."),
            (lambda: logic.process(never_added, None, "m.safetensors"), "'CT', given as the CT, is not in the scene "
             "(slicer.mrmlScene); add it first"),  # was refused after the whole run, as 'removed while segmented'
            (lambda: logic.measureSegmentation(ct, segmentation), swapped.format("segmentation")),
            (lambda: logic.compareWithBaseline(ct, segmentation, segmentation, ct), swapped.format("baseline segmentation")),
            # a node's data instead of the node: the check itself failed with "... has no attribute 'GetName'"
            (lambda: logic.measureSegmentation(segmentation.GetSegmentation(), ct), "The segmentation must be a "
             "vtkMRMLSegmentationNode, not the vtkSegmentation; pass the node itself."),
            (lambda: logic.process(ct.GetImageData(), None, "m.safetensors"), "The CT must be a "
             "vtkMRMLScalarVolumeNode, not the vtkImageData; pass the node itself."),
            # a table by its name: the whole run, then "TypeError: IsNodePresent argument 1: ..." and the result lost
            (lambda: logic.process(ct, None, "m.safetensors", tableNode="CT liver lesions"), "The lesion table must "
             "be a vtkMRMLTableNode, not the str 'CT liver lesions'; pass the node itself"),
            (lambda: logic.measureSegmentation(segmentation, ct, tableNode="CT liver lesions"), "The lesion table "
             "must be a vtkMRMLTableNode, not the str"),
            (lambda: logic.compareWithBaseline(segmentation, ct, segmentation, ct, tableNode="change"), "The change "
             "table must be a vtkMRMLTableNode, not the str")]:
        with pytest.raises(InputError) as raised:
            call()
        assert message in str(raised.value)
    with pytest.raises(TypeError, match=r"options must be LiverTumorSegLib.inference.options.SegmentationOptions "
                                        r"\(got dict\)"):
        logic.process(ct, None, "m.safetensors", options={"probabilities": True})
    assert started == [] and module.scene.GetNumberOfNodes() == nodes_before and slicer.mrmlScene is module.scene


def test_logic_raises_the_childs_error_and_cancel_without_waiting(module, tmp_path):
    pytest.importorskip("SimpleITK")
    node = _ct_node(module.scene)
    failing = module.m.LiverTumorSegLogic(runnerFactory=_fake_runner_factory(tmp_path, "error"), python=sys.executable)
    with pytest.raises(module.m.job.SegmentationProcessError, match="Hounsfield"):
        failing.process(node, None, "m.safetensors", "cpu")
    before = module.scene.GetNumberOfNodes()
    logic = module.m.LiverTumorSegLogic(runnerFactory=_fake_runner_factory(tmp_path, "hang"), python=sys.executable)
    stages, outcomes = [], []
    running = logic.process(node, None, "m.safetensors", "cpu", progress=lambda f, s: stages.append(s),
                            waitForCompletion=False, onFinished=outcomes.append)
    (timer,) = FakeTimer.instances
    assert timer.active and timer.interval == module.m.POLL_INTERVAL_MS
    deadline = time.monotonic() + 120  # only a hang reaches it, even on a slow, busy machine
    while "network" not in stages and time.monotonic() < deadline:
        timer.fire()
        time.sleep(0.02)
    pid = running.child_pid
    running.cancel()  # the panel's Cancel button
    timer.fire()
    assert [o.kind for o in outcomes] == ["cancelled"] and not timer.active
    # the run ended inside the timer's own timeout(): the logic still holds the timer, so PythonQt does not
    # delete the QTimer while its slot runs
    assert logic._stoppedTimers["segment"] is timer
    assert not process_alive(pid)
    assert module.scene.GetNumberOfNodes() == before and list(module.temp.iterdir()) == []


def test_logic_cleanup_stops_the_timer_and_kills_the_child(module, tmp_path):
    logic = module.m.LiverTumorSegLogic(runnerFactory=_fake_runner_factory(tmp_path, "hang"), python=sys.executable)
    running = logic.process(_ct_node(module.scene), None, "m.safetensors", "cpu", waitForCompletion=False)
    (timer,) = FakeTimer.instances
    pid = running.child_pid
    logic.cleanup()  # what the widget's cleanup() and Reload call
    assert not timer.active and running.finished is False and running.poll().kind == "cancelled"
    assert _ended_within(pid, KILLED_WITHIN_S) and list(module.temp.iterdir()) == []


@pytest.mark.parametrize("kind", ["segment", "measure", "compare"])
def test_a_reload_during_a_run_says_in_the_log_that_the_run_was_stopped(module, tmp_path, caplog, kind):
    """Slicer's Reload (and closing Slicer) calls cleanup(), which kills a running child and tells no callback (the
    panel is going away): the run's result never came and nothing said so. The log now names the run that was
    stopped, once (Reload calls cleanup twice: onReload and the widget's cleanup), and a cleanup with no run running
    logs nothing."""
    idle = module.m.LiverTumorSegLogic(runnerFactory=_sleeping_runner, python=sys.executable)
    with caplog.at_level("WARNING"):
        idle.cleanup()
    assert caplog.records == []
    ct, segmentation = _phantom_ct_and_segmentation(module, "CT")
    outcomes = []
    logic, running = _start_long_run(module, tmp_path, kind, ct, segmentation, outcomes)
    pid = running.child_pid
    with caplog.at_level("WARNING"):
        logic.cleanup()
        logic.cleanup()
    said = [r.getMessage() for r in caplog.records]
    assert said == [module.m.RUN_STOPPED_BY_CLEANUP.format(what=module.m.RUN_NAMES[kind])], said
    assert "was stopped because the module was reloaded" in said[0] and "Run it again" in said[0]
    assert outcomes == [] and _ended_within(pid, KILLED_WITHIN_S)


def _phantom_ct_and_segmentation(module, name):
    """A small phantom CT volume node named ``name`` in the module's scene and a segmentation node of its labels."""
    from LiverTumorSegLib.phantom import make_phantom
    from mrml_helpers import add_volume_node

    phantom = make_phantom((6, 24, 24), (2.0, 2.0, 4.0))
    ct = add_volume_node(module.scene, phantom.ct.array, phantom.ct.geometry, name)
    segmentation = module.mrml.labels_to_segmentation_node(module.scene, phantom.labels, phantom.ct.geometry,
                                                           reference_volume_node=ct)
    return ct, segmentation


def _start_long_run(module, tmp_path, kind, ct, segmentation, outcomes):
    """``(logic, running job)`` of a ``kind`` run (segment, measure or compare) on ``ct`` / ``segmentation`` whose
    child does not end by itself, started without waiting (its outcome appended to ``outcomes``)."""
    if kind == "segment":
        logic = module.m.LiverTumorSegLogic(runnerFactory=_fake_runner_factory(tmp_path, "hang"), python=sys.executable)
        return logic, logic.process(ct, None, "m.safetensors", "cpu", waitForCompletion=False,
                                    onFinished=outcomes.append, showIn3D=False)
    logic = module.m.LiverTumorSegLogic(runnerFactory=_sleeping_runner, python=sys.executable)
    running = (logic.measureSegmentation(segmentation, ct, waitForCompletion=False, onFinished=outcomes.append)
               if kind == "measure" else
               logic.compareWithBaseline(segmentation, ct, segmentation, ct, waitForCompletion=False,
                                         onFinished=outcomes.append))
    return logic, running


def _sleeping_runner():
    """A process runner whose child never ends by itself (``time.sleep``), for the measure and compare runs: what a
    long run is while the user goes on working in the scene."""
    from LiverTumorSegModuleLib import childprocess

    runner = childprocess.SubprocessRunner()
    start = runner.start
    runner.start = lambda program, args, env=None: start(sys.executable, ["-c", "import time; time.sleep(120)"], env)
    return runner


@pytest.mark.parametrize("kind", ["segment", "measure", "compare"])
def test_a_run_whose_ct_is_removed_stops_its_child_at_once_and_says_so(module, tmp_path, kind):
    """The user deleted the CT (Data module) while its run went on: the child ran on to its end (minutes of CPU or GPU
    for a segmentation, the panel reading "Cancel" all that time), and only then was its result refused. It is now
    stopped at the next poll, and the outcome says why; the scene gets no node."""
    ct, segmentation = _phantom_ct_and_segmentation(module, "doomed CT")
    outcomes = []
    logic, running = _start_long_run(module, tmp_path, kind, ct, segmentation, outcomes)
    timer, pid = FakeTimer.instances[-1], running.child_pid
    timer.fire()
    assert outcomes == [] and process_alive(pid)  # running
    module.scene.RemoveNode(ct)
    before = module.scene.GetNumberOfNodes()
    timer.fire()
    assert [o.kind for o in outcomes] == ["failed"] and not timer.active
    what = {"segment": "segmentation", "measure": "measuring", "compare": "follow-up"}[kind]
    assert str(outcomes[0].error).startswith(f"The {what} process was stopped: ")
    assert "removed from the scene while it was" in str(outcomes[0].error)
    assert _ended_within(pid, 2.0) and list(module.temp.iterdir()) == []
    assert module.scene.GetNumberOfNodes() == before


def test_a_second_run_of_one_kind_tells_the_first_runs_callback_it_was_cancelled(module, tmp_path):
    """A script that started a run with onFinished and then another (another CT) before the first ended: the first
    child was killed, but its onFinished was never called, so the script waited for it for ever. The first run's
    callback now gets its cancelled outcome at once; the second runs on; cleanup tells no one."""
    logic = module.m.LiverTumorSegLogic(runnerFactory=_fake_runner_factory(tmp_path, "hang"), python=sys.executable)
    first, second = [], []
    running = logic.process(_ct_node(module.scene), None, "m.safetensors", "cpu", waitForCompletion=False,
                            onFinished=first.append, showIn3D=False)
    pid = running.child_pid
    logic.process(_ct_node(module.scene), None, "m.safetensors", "cpu", waitForCompletion=False,
                  onFinished=second.append, showIn3D=False)
    assert [o.kind for o in first] == ["cancelled"] and second == []
    assert _ended_within(pid, KILLED_WITHIN_S)
    logic.cleanup()
    for timer in FakeTimer.instances:
        timer.fire()
    assert len(first) == 1 and second == []


def test_a_run_started_while_a_waited_run_delivers_progress_stays_the_logics_run(module, tmp_path):
    """A script's waited run whose progress callback processes events (to keep Slicer responsive), in which the panel
    starts a run of the same kind on the shared Logic (``slicer.util.getModuleLogic``): the new run cancelled the
    waited one, whose ``finally`` then dropped the new run from the Logic. Its poll timer lost its last holder (PythonQt
    deletes the QTimer: the panel waited for ever) and cleanup (Reload, closing Slicer) did not kill its child."""
    logic = module.m.LiverTumorSegLogic(runnerFactory=_fake_runner_factory(tmp_path, "hang"), python=sys.executable)
    started = {}

    def progress(fraction, stage):  # what a click on Segment during processEvents does
        if stage == "network" and not started:
            started["run"] = logic.process(_ct_node(module.scene), None, "m.safetensors", "cpu",
                                           waitForCompletion=False, showIn3D=False)

    with pytest.raises(module.m.CancelledError):
        logic.process(_ct_node(module.scene), None, "m.safetensors", "cpu", progress=progress, showIn3D=False)
    run = started["run"]
    job_, timer = logic._runs["segment"]
    assert job_ is run and timer is FakeTimer.instances[-1] and timer.active
    pid = run.child_pid
    logic.cleanup()  # Reload or closing Slicer
    assert _ended_within(pid, KILLED_WITHIN_S) and list(module.temp.iterdir()) == []


def test_a_run_started_while_a_polled_run_delivers_progress_stays_the_logics_run(module, tmp_path):
    """As above, for a run that is polled (``waitForCompletion=False``): a new run of the same kind started in events
    its progress callback processed cancelled it, and the old run's poll slot, on getting that cancelled outcome,
    then stopped the kind's run, which was by then the new one (its child killed, its timer stopped, its onFinished
    never called), and told the old run's onFinished a second time."""
    logic = module.m.LiverTumorSegLogic(runnerFactory=_fake_runner_factory(tmp_path, "hang"), python=sys.executable)
    first, second, started = [], [], {}

    def progress(fraction, stage):  # what a click on Segment during processEvents does
        if stage == "network" and not started:
            started["run"] = logic.process(_ct_node(module.scene), None, "m.safetensors", "cpu",
                                           waitForCompletion=False, onFinished=second.append, showIn3D=False)

    logic.process(_ct_node(module.scene), None, "m.safetensors", "cpu", progress=progress, waitForCompletion=False,
                  onFinished=first.append, showIn3D=False)
    timer = FakeTimer.instances[-1]
    _fire_until(timer, lambda: started)
    run = started["run"]
    assert [o.kind for o in first] == ["cancelled"] and second == []
    job_, new_timer = logic._runs["segment"]
    assert job_ is run and new_timer is FakeTimer.instances[-1] and new_timer.active
    assert process_alive(run.child_pid) and not run.finished
    pid = run.child_pid
    logic.cleanup()
    assert _ended_within(pid, KILLED_WITHIN_S) and len(first) == 1 and second == []


def test_a_cleanup_while_a_polled_run_delivers_progress_tells_no_one(module, tmp_path):
    """A Reload (the Logic's cleanup) in events a polled run's progress callback processed: cleanup tells no one (the
    panel is going away), but the run's poll slot went on with the cancelled outcome and called the torn-down panel's
    onFinished."""
    logic = module.m.LiverTumorSegLogic(runnerFactory=_fake_runner_factory(tmp_path, "hang"), python=sys.executable)
    outcomes, cleaned = [], []

    def progress(fraction, stage):  # a Reload during processEvents
        if stage == "network" and not cleaned:
            logic.cleanup()
            cleaned.append(True)

    running = logic.process(_ct_node(module.scene), None, "m.safetensors", "cpu", progress=progress,
                            waitForCompletion=False, onFinished=outcomes.append, showIn3D=False)
    timer = FakeTimer.instances[-1]
    pid = running.child_pid
    _fire_until(timer, lambda: cleaned)
    assert cleaned and outcomes == [] and not timer.active and logic._runs == {}
    assert _ended_within(pid, KILLED_WITHIN_S)


def test_a_run_that_ended_leaves_nothing_of_its_ct_held_by_the_logic(module, tmp_path):
    """The Logic keeps a stopped poll timer until its kind's next run (PythonQt must not delete it inside its own slot),
    and that timer's slot held the job: its CT node with the voxels (hundreds of MB for a big CT), segmentation and
    table stayed in memory after the scene was closed and another patient loaded. Also after a cleanup (Reload)."""
    import gc
    import weakref

    logic = module.m.LiverTumorSegLogic(runnerFactory=_fake_runner_factory(tmp_path, "ok"), python=sys.executable)
    outcomes = []
    running = logic.process(_ct_node(module.scene), None, "m.safetensors", "cpu", waitForCompletion=False,
                            onFinished=outcomes.append, showIn3D=False)
    timer = FakeTimer.instances[-1]
    _fire_until(timer, lambda: outcomes)
    assert [o.kind for o in outcomes] == ["done"] and logic._stoppedTimers["segment"] is timer
    ended = weakref.ref(running)
    del running, outcomes[:]
    module.scene.Clear()  # the user closes the scene
    gc.collect()
    assert ended() is None
    hang = module.m.LiverTumorSegLogic(runnerFactory=_fake_runner_factory(tmp_path, "hang"), python=sys.executable)
    stopped = weakref.ref(hang.process(_ct_node(module.scene), None, "m.safetensors", "cpu", waitForCompletion=False,
                                       showIn3D=False))
    hang.cleanup()
    gc.collect()
    assert stopped() is None and list(module.temp.iterdir()) == []


def test_reload_forgets_the_helper_packages(module):
    import LiverTumorSegModuleLib.job  # noqa: F401
    before = dict(sys.modules)  # put the original modules back afterwards: later tests hold their classes
    try:
        forgotten = module.m.forgetLibraryModules()
        assert "LiverTumorSegModuleLib.job" in forgotten and "LiverTumorSegLib.mrml" in forgotten
        assert not any(name.split(".")[0] in module.m.RELOADED_PACKAGES for name in sys.modules)
        import LiverTumorSegLib.mrml  # noqa: F401 - importable again afterwards
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] in module.m.RELOADED_PACKAGES]:
            del sys.modules[name]
        sys.modules.update(before)


@pytest.fixture
def sample(module, tmp_path):
    """24 slices of the sample CT through the liver (slices 76..99 of 112; the liver lies in 70..111), read into a
    volume node by a storage node as Slicer reads a file, and the bundled model."""
    from test_slicer_module_job import _segment_has_json_progress
    pytest.importorskip("torch")
    nib = pytest.importorskip("nibabel")
    # issue 12 is done: a 'segment' without --progress json is a regression, not a reason to skip
    assert _segment_has_json_progress(), "`segment --progress json` is gone from the library"
    from mrml_helpers import read_volume_node

    from LiverTumorSegLib import resources
    from bundled_model_helpers import bundled_default_model_or_skip
    model = str(bundled_default_model_or_skip())  # a damaged bundled package fails, not skips
    ct_path = tmp_path / "ct.nii.gz"
    nib.save(nib.load(str(resources.sample_ct_path())).slicer[:, :, 76:100], str(ct_path))
    node = read_volume_node(module.scene, ct_path, "sample")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the child's environment (Slicer's startup environment here)
    yield types.SimpleNamespace(node=node, model=model)
    monkeypatch.undo()


def test_logic_runs_the_real_child_and_matches_the_cli_voxel_for_voxel(module, sample, tmp_path):
    """The Logic, unchanged, with the real child (``python -m LiverTumorSegLib segment ... --progress json``) on
    the sample CT: progress rises to 1.0, and the segmentation node holds exactly the label map the ``segment``
    command wrote (read back by Slicer's own reader)."""
    from test_slicer_module_job import KeepLabelsRunner
    cli_labels = tmp_path / "cli_labels.nii.gz"
    logic = module.m.LiverTumorSegLogic(runnerFactory=lambda: KeepLabelsRunner(str(cli_labels)),
                                        python=sys.executable)
    progress = []
    outcome = logic.process(sample.node, None, sample.model, "cpu", showIn3D=False,
                            progress=lambda f, s: progress.append((f, s)))
    fractions = [f for f, _ in progress]
    assert outcome.kind == "done" and len(fractions) >= 3 and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert "network" in [s for _, s in progress]
    geometry = module.mrml.ctvolume_from_volume_node(sample.node).geometry
    import slicer
    labels = module.mrml.segmentation_to_labels(outcome.segmentation_node, geometry,
                                                slicer.util.arrayFromVolume(sample.node).shape)
    from LiverTumorSegLib.io import read_label_map
    expected = read_label_map(cli_labels).array
    assert (labels >= 1).sum() > 5000  # a liver, not an empty map (17925 voxels measured)
    np.testing.assert_array_equal(labels, expected)
    assert abs(outcome.report["liver_volume_ml"] - (labels >= 1).sum() * geometry.voxel_volume_ml) < 1
    assert outcome.table_node.GetTable().GetNumberOfRows() == len(outcome.report["lesions"])
    assert list(module.temp.iterdir()) == []


def test_logic_cancel_in_the_network_stage_ends_the_real_child_at_once(module, sample):
    import signal

    from LiverTumorSegModuleLib import childprocess
    before = module.scene.GetNumberOfNodes()
    runners = []

    def runner_factory():
        runners.append(childprocess.SubprocessRunner())
        return runners[-1]

    logic = module.m.LiverTumorSegLogic(runnerFactory=runner_factory, python=sys.executable)
    stages, outcomes = [], []
    running = logic.process(sample.node, None, sample.model, "cpu", progress=lambda f, s: stages.append(s),
                            waitForCompletion=False, onFinished=outcomes.append)
    (timer,) = FakeTimer.instances
    deadline = time.monotonic() + 180
    while "network" not in stages and not outcomes and time.monotonic() < deadline:
        timer.fire()
        time.sleep(0.02)
    assert "network" in stages and not outcomes
    pid = running.child_pid
    running.cancel()
    timer.fire()
    # killed at once (SIGKILL), not asked to stop and left to end its network stage (a bound of 2 s on the cancel
    # could fail on a slow, busy CI machine)
    assert _ended_within(pid, KILLED_WITHIN_S) and [r.exit_code() for r in runners] == [-signal.SIGKILL]
    assert [o.kind for o in outcomes] == ["cancelled"]
    assert module.scene.GetNumberOfNodes() == before and list(module.temp.iterdir()) == []


def test_add_model_never_replaces_another_installed_file_of_the_same_name(module, tmp_path, monkeypatch):
    """'Add model file...' copied over a different user package with the same file name without a word."""
    import shutil as shutil_module
    from LiverTumorSegLib.resources import bundled_models_dir
    users = tmp_path / "user models"
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(users))
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    shutil_module.copy(bundled_models_dir() / "unet16_widezoom_cpu.safetensors", a / "mine.safetensors")
    shutil_module.copy(bundled_models_dir() / "alexnet_fcn_v2.safetensors", b / "mine.safetensors")
    logic = module.m.LiverTumorSegLogic
    target = logic.addUserModel(str(a / "mine.safetensors"))
    assert logic.addUserModel(str(a / "mine.safetensors")) == target  # the same file again: fine
    with pytest.raises(module.m.LiverTumorSegError, match="Another model file named 'mine.safetensors'"):
        logic.addUserModel(str(b / "mine.safetensors"))
    assert (users / "mine.safetensors").read_bytes() == (a / "mine.safetensors").read_bytes()


def test_add_model_of_the_installed_file_under_another_spelling_keeps_it(module, tmp_path, monkeypatch):
    """The installed package chosen again through a symlinked folder (or in another letter case on Windows and
    macOS) was copied onto itself: shutil.SameFileError instead of 'already installed'."""
    import shutil as shutil_module
    from LiverTumorSegLib.resources import bundled_models_dir
    users = tmp_path / "user models"
    users.mkdir()
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(users))
    shutil_module.copy(bundled_models_dir() / "unet16_widezoom_cpu.safetensors", users / "mine.safetensors")
    before = (users / "mine.safetensors").read_bytes()
    (tmp_path / "link").symlink_to(users, target_is_directory=True)
    target = module.m.LiverTumorSegLogic.addUserModel(str(tmp_path / "link" / "mine.safetensors"))
    assert target == str(users / "mine.safetensors") and (users / "mine.safetensors").read_bytes() == before


def test_add_model_into_a_folder_whose_file_system_refuses_chmod_installs_it(module, tmp_path, monkeypatch):
    """A user models folder on a USB stick (FAT, exFAT) or a Windows share (CIFS) mounted for another owner
    refuses chmod (EPERM): outputs are written there (test_output_permissions), but 'Add model file...' copied
    with shutil.copy2, whose chmod raised "[Errno 1] Operation not permitted" and installed nothing. chmod is made
    to refuse (this runs as any user, root included)."""
    import errno
    import shutil as shutil_module
    from LiverTumorSegLib.resources import bundled_models_dir
    users = tmp_path / "user models"
    users.mkdir()
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(users))
    source = tmp_path / "mine.safetensors"
    shutil_module.copy(bundled_models_dir() / "unet16_widezoom_cpu.safetensors", source)

    def refused(path, mode, *args, **kwargs):
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), str(path))

    monkeypatch.setattr(os, "chmod", refused)
    target = module.m.LiverTumorSegLogic.addUserModel(str(source))
    assert target == str(users / "mine.safetensors") and (users / "mine.safetensors").read_bytes() == \
        source.read_bytes()
    assert sorted(p.name for p in users.iterdir()) == ["mine.safetensors"]


def test_add_model_into_a_user_models_folder_that_cannot_be_written_says_what_to_set(module, tmp_path, monkeypatch):
    """A home folder that cannot be written (a managed profile, a read-only home on a cluster) made 'Add model
    file...' say only "[Errno 13] Permission denied: '/home/u/.livertumorseg'". Now the error names the user models
    folder and LIVERTUMORSEG_MODELS_DIR, and nothing is written; the installed file chosen again still needs no
    writing. A folder below a file stands for one that cannot be written (root ignores permissions)."""
    import shutil as shutil_module
    from LiverTumorSegLib.resources import bundled_models_dir
    a_file = tmp_path / "home_file"
    a_file.write_text("x")
    users = a_file / ".livertumorseg" / "models"
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(users))
    source = tmp_path / "mine.safetensors"
    shutil_module.copy(bundled_models_dir() / "unet16_widezoom_cpu.safetensors", source)
    words = (f"Cannot add the model: the user models folder '{users}' cannot be written (Not a directory). Set the "
             f"environment variable LIVERTUMORSEG_MODELS_DIR to a folder you can write to")
    with pytest.raises(module.m.LiverTumorSegError, match=re.escape(words)):
        module.m.LiverTumorSegLogic.addUserModel(str(source))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home_file", "mine.safetensors", "slicer-temp"]


def _add_model_button_panel(module, monkeypatch, picked):
    """The module's widget (no Qt) whose 'Add model file...' dialog answers ``picked`` (\"\" = cancelled), with the
    module's own Logic: ``(widget, events)``, ``events`` listing in order each warning and error shown, each file
    dialog opened and each model selected in the refilled list."""
    import contextlib
    import slicer.util

    m = module.m
    events = []

    @contextlib.contextmanager
    def shown_errors(message=None, show=True, waitCursor=False):
        try:
            yield
        except Exception as exc:
            events.append(("error", f"{message} {exc}"))
            raise

    monkeypatch.setattr(slicer.util, "tryWithErrorDisplay", shown_errors)
    monkeypatch.setattr(slicer.util, "warningDisplay", lambda text, **kw: events.append(("warning", text)))
    monkeypatch.setattr(slicer.util, "mainWindow", lambda *a, **k: None, raising=False)
    monkeypatch.setattr(m.qt, "QFileDialog", types.SimpleNamespace(
        getOpenFileName=lambda *a: events.append(("dialog", a[1])) or picked), raising=False)
    widget = m.LiverTumorSegWidget()
    widget.logic = m.LiverTumorSegLogic  # the methods the button uses are static
    widget.populateModels = lambda selectPath=None: events.append(("selected", selectPath))
    return widget, events


def test_add_model_button_warns_before_its_dialog_that_the_user_models_folder_cannot_be_written(
        module, tmp_path, monkeypatch):
    """With a user models folder that cannot be written, 'Add model file...' opened its file dialog and only after a
    file was picked said "Cannot add the model: ... cannot be written". A warning now comes before the dialog, saying
    that only a model already installed there can be chosen and what to set; the dialog still opens, since the
    installed file chosen again needs no writing. A writable folder shows no warning."""
    import errno
    import shutil as shutil_module
    import tempfile
    from LiverTumorSegLib.resources import bundled_models_dir
    source = tmp_path / "mine.safetensors"
    shutil_module.copy(bundled_models_dir() / "unet16_widezoom_cpu.safetensors", source)
    dialog = ("dialog", "Add a LiverTumorSeg model package")
    advice = ("Set the environment variable LIVERTUMORSEG_MODELS_DIR to a folder you can write to and start Slicer "
              "again, or fix that folder's permissions.")

    # a folder below a file cannot be written (root ignores permissions): warned before the dialog, refused after
    a_file = tmp_path / "home_file"
    a_file.write_text("x")
    blocked = a_file / ".livertumorseg" / "models"
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(blocked))
    warning = ("warning", f"The user models folder '{blocked}' cannot be written (Not a directory), so only a model "
                          f"already installed there can be chosen; any other file cannot be added. {advice}")
    widget, events = _add_model_button_panel(module, monkeypatch, "")
    widget.onAddModel()
    assert events == [warning, dialog]  # cancelled: nothing more
    widget, events = _add_model_button_panel(module, monkeypatch, str(source))
    with pytest.raises(module.m.LiverTumorSegError):
        widget.onAddModel()
    assert events == [warning, dialog, ("error", f"Could not add the model. Cannot add the model: the user models "
                                                 f"folder '{blocked}' cannot be written (Not a directory). {advice}")]
    assert "\n" not in warning[1]

    # a writable folder: no warning, the file is installed and selected
    users = tmp_path / "user models"
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(users))
    widget, events = _add_model_button_panel(module, monkeypatch, str(source))
    widget.onAddModel()
    assert events == [dialog, ("selected", str(users / "mine.safetensors"))]
    assert sorted(p.name for p in users.iterdir()) == ["mine.safetensors"]

    # that folder made read-only (creating a file in it is refused): warned, yet the installed file chosen again
    # is selected, as before
    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    widget, events = _add_model_button_panel(module, monkeypatch, str(users / "mine.safetensors"))
    widget.onAddModel()
    assert events == [("warning", f"The user models folder '{users}' cannot be written (Permission denied), so only "
                                  f"a model already installed there can be chosen; any other file cannot be added. "
                                  f"{advice}"), dialog, ("selected", str(users / "mine.safetensors"))]
    assert sorted(p.name for p in users.iterdir()) == ["mine.safetensors"]


def test_add_model_button_without_any_user_models_folder_says_so_before_its_dialog(module, monkeypatch):
    """Without a home folder (and LIVERTUMORSEG_MODELS_DIR unset) there is no user models folder, so no file can be
    added: the error is shown and no file dialog opens."""
    from LiverTumorSegLib import resources
    from LiverTumorSegLib.errors import InputError

    def no_home():
        raise InputError("this process has no home folder (HOME is not set); set HOME")

    monkeypatch.delenv("LIVERTUMORSEG_MODELS_DIR", raising=False)
    monkeypatch.setattr(resources, "home_folder", no_home)
    widget, events = _add_model_button_panel(module, monkeypatch, "never asked")
    with pytest.raises(InputError):
        widget.onAddModel()
    assert events == [("error", "Could not add the model. this process has no home folder (HOME is not set); set "
                                "HOME")]


def test_add_model_button_cancelled_leaves_no_user_models_folder_behind(module, tmp_path, monkeypatch):
    """'Add model file...' made the user models folder (and its parents, e.g. ``~/.livertumorseg/models``) when it was
    clicked, to check it could be written before its dialog, and left it, empty, when the dialog was cancelled. The
    check now takes away what it made; the folder is made only when a file is actually added. A folder that was there
    before stays."""
    import shutil as shutil_module
    from LiverTumorSegLib.resources import bundled_models_dir
    home = tmp_path / "home"
    home.mkdir()
    users = home / ".livertumorseg" / "models"
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(users))
    dialog = ("dialog", "Add a LiverTumorSeg model package")

    widget, events = _add_model_button_panel(module, monkeypatch, "")  # cancelled
    widget.onAddModel()
    assert events == [dialog]  # writable: no warning
    assert list(home.iterdir()) == []

    source = tmp_path / "mine.safetensors"
    shutil_module.copy(bundled_models_dir() / "unet16_widezoom_cpu.safetensors", source)
    widget, events = _add_model_button_panel(module, monkeypatch, str(source))  # a file added: the folder is made
    widget.onAddModel()
    assert events == [dialog, ("selected", str(users / "mine.safetensors"))]
    assert sorted(p.name for p in users.iterdir()) == ["mine.safetensors"]

    widget, events = _add_model_button_panel(module, monkeypatch, "")  # an existing folder stays, cancelled or not
    widget.onAddModel()
    assert sorted(p.name for p in users.iterdir()) == ["mine.safetensors"]
    empty = tmp_path / "empty models"
    empty.mkdir()
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(empty))
    widget, events = _add_model_button_panel(module, monkeypatch, "")
    widget.onAddModel()
    assert empty.is_dir() and list(empty.iterdir()) == []


def _segment_button_panel(module, monkeypatch, segmentation, input_volume):
    """The module's widget (no Qt) with ``segmentation`` as its output and ``input_volume`` as its CT, whose Segment
    button records each run it starts in ``starts`` and each question it asks in ``confirmations`` (answered No):
    ``(widget, starts, confirmations)``."""
    import slicer.util

    widget = module.m.LiverTumorSegWidget()
    widget.ui = types.SimpleNamespace(statusLabel=types.SimpleNamespace(text="", repaint=lambda: None),
                                      progressBar=types.SimpleNamespace(setVisible=lambda visible: None, value=0, repaint=lambda: None))
    widget._parameterNode = types.SimpleNamespace(outputSegmentation=segmentation, inputVolume=input_volume,
                                                  modelPath="m.safetensors", device="auto", lesionTable=None)
    widget.dependenciesReady = lambda: True
    widget.updateGUI = lambda *args: None
    starts, confirmations = [], []
    widget.logic = types.SimpleNamespace(process=lambda *args, **kwargs: starts.append(1) or None)
    monkeypatch.setattr(module.m, "segmentationOptionsFromParameters", lambda p: None)
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda text, **kw: confirmations.append(text) or False)
    return widget, starts, confirmations


def test_a_click_queued_while_a_run_starts_does_not_cancel_it_a_later_one_does(module, monkeypatch):
    """The start of a run (the replace question, writing the CT for the child) runs on the main thread; a click made
    meanwhile, the second of a double click on Segment, is delivered by Qt when the slot returns, to the button that
    then reads "Cancel": the run just started was cancelled (the Slicer module audit). A click within
    CANCEL_IGNORED_AFTER_START_S of the start is ignored; a later one cancels, for Segment and Update lesion table."""
    from LiverTumorSegLib import mrml
    from LiverTumorSegLib.volume import ImageGeometry

    labels = np.zeros((3, 8, 8), np.uint8)
    seg = mrml.labels_to_segmentation_node(module.scene, labels, ImageGeometry(spacing=(1.0, 1.0, 2.0)),
                                           name="Empty")
    widget, starts, _ = _segment_button_panel(module, monkeypatch, seg, "CT")
    cancels = []
    task = types.SimpleNamespace(cancel=lambda: cancels.append("segment"))
    widget.logic = types.SimpleNamespace(process=lambda *args, **kwargs: starts.append(1) or task,
                                         measureSegmentation=lambda *args, **kwargs: starts.append(2) or types.
                                         SimpleNamespace(cancel=lambda: cancels.append("measure")))
    import slicer.util
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda text, **kw: True)  # replace the empty result
    now = [1000.0]
    monkeypatch.setattr(module.m.time, "monotonic", lambda: now[0])
    widget.onSegmentButton()
    widget.onSegmentButton()  # the double click's second, delivered at once
    assert starts == [1] and cancels == [] and widget._task is task
    assert widget.ui.statusLabel.text == module.m.CANCEL_IGNORED_TEXT  # a Cancel meant then is made again
    now[0] += module.m.CANCEL_IGNORED_AFTER_START_S + 0.01
    widget.onSegmentButton()
    assert cancels == ["segment"] and widget.ui.statusLabel.text == "Cancelling..."
    widget.ui.resultsSummaryLabel = types.SimpleNamespace(text="")
    widget.onMeasureButton()
    widget.onMeasureButton()
    assert starts == [1, 2] and cancels == ["segment"]
    now[0] += module.m.CANCEL_IGNORED_AFTER_START_S + 0.01
    widget.onMeasureButton()
    assert cancels == ["segment", "measure"]
    # Compare: the same (its button's text is the compare section's result line)
    chosen = types.SimpleNamespace(checked=False, text="Compare", currentNode=lambda: "node", toolTip="")
    widget.compare = dict({key: chosen for key in ("baselineSegmentation", "baselineVolume", "followupSegmentation",
                                                    "followupVolume", "alignOnCT", "button")},
                          nadirSumMm=types.SimpleNamespace(text=""), afterCompleteResponse=types.SimpleNamespace(
                              checked=False), previousChangeReport=types.SimpleNamespace(currentPath=""),
                          result=types.SimpleNamespace(text=""), save=types.SimpleNamespace(enabled=True, toolTip=""))
    widget._parameterNode = None
    widget.logic.compareWithBaseline = lambda *a, **k: types.SimpleNamespace(cancel=lambda: cancels.append("compare"))
    widget.onCompareButton()
    widget.onCompareButton()
    assert cancels == ["segment", "measure"] and widget.compare["result"].text == module.m.CANCEL_IGNORED_TEXT
    now[0] += module.m.CANCEL_IGNORED_AFTER_START_S + 0.01
    widget.onCompareButton()
    assert cancels == ["segment", "measure", "compare"]


def test_segment_asks_before_replacing_pieces_split_off_an_earlier_result_naming_them(module, monkeypatch):
    """With the Liver / Liver tumor segments deleted and only a piece split off them left ("Liver tumor_2"), the
    panel asked "... already has Liver / Liver tumor segments and 1 piece(s) split off them"; it now says what is
    there. A user's "Liver tumor_1" (Slicer never names a piece so) is no piece and asks nothing."""
    from LiverTumorSegLib import mrml
    from LiverTumorSegLib.volume import ImageGeometry

    geometry = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    labels = np.zeros((3, 8, 8), np.uint8)
    labels[1, 2:6, 2:6] = 1
    seg = mrml.labels_to_segmentation_node(module.scene, labels, geometry, name="Old result")
    for spec in mrml.SEGMENTS:
        seg.GetSegmentation().RemoveSegment(spec.segment_id)
    seg.GetSegmentation().AddEmptySegment("mine", "Liver tumor_1", [0, 0, 1])
    widget, starts, confirmations = _segment_button_panel(module, monkeypatch, seg, "CT")
    widget.onSegmentButton()
    assert confirmations == [] and starts == [1]  # "Liver tumor_1" alone: nothing is replaced, nothing asked
    widget._task = None
    seg.GetSegmentation().AddEmptySegment("piece", "Liver tumor_2", [0, 0, 1])
    widget.onSegmentButton()
    assert starts == [1]  # declined: no run
    assert confirmations == [
        "'Old result' has 1 piece(s) split off an earlier result ('Liver tumor_2'), which are removed and replaced "
        "with the new result so that it is not counted with pieces of the old one. Replace them? This cannot be "
        "undone; its other segments are kept. (To keep them, choose 'Create new segmentation' as the output.)"]


def test_segment_asks_before_replacing_this_modules_segments_naming_those_the_user_renamed(module, monkeypatch):
    """A run replaces this module's Liver / Liver tumor by their IDs, also after the reader renamed them (to
    "Metastasis 4 (confirmed)"); the question spoke of "Liver / Liver tumor segments" and said "its other segments are
    kept", so the renamed segments read as kept. It now names them."""
    from LiverTumorSegLib import mrml
    from LiverTumorSegLib.volume import ImageGeometry

    labels = np.zeros((3, 8, 8), np.uint8)
    labels[1, 2:6, 2:6] = 1
    labels[1, 3, 3] = 2
    seg = mrml.labels_to_segmentation_node(module.scene, labels, ImageGeometry(spacing=(1.0, 1.0, 2.0)),
                                           name="Old result")
    seg.GetSegmentation().GetSegment(mrml.TUMOR_SEGMENT.segment_id).SetName("Metastasis 4 (confirmed)")
    widget, starts, confirmations = _segment_button_panel(module, monkeypatch, seg, "CT")
    widget.onSegmentButton()
    assert starts == []  # declined: no run
    assert confirmations == [
        "'Old result' already has Liver / Liver tumor segments (among them 'Metastasis 4 (confirmed)', renamed). "
        "Replace them? This cannot be undone; its other segments are kept. (To keep them, choose 'Create new "
        "segmentation' as the output.)"]
    assert mrml.segment_names(seg, ["livertumorseg_liver", "gone", "livertumorseg_tumor"]) == [
        "Liver", "Metastasis 4 (confirmed)"]
    assert mrml.segment_names(None, ["livertumorseg_liver"]) == []
    seg.GetSegmentation().GetSegment(mrml.TUMOR_SEGMENT.segment_id).SetName("Liver tumor")
    widget.onSegmentButton()
    assert confirmations[-1].startswith("'Old result' already has Liver / Liver tumor segments. Replace them?")
    # corrected in Segment Editor after the run: the question says those edits are lost
    import slicer
    edit = np.zeros(labels.shape, np.uint8)
    edit[0, 0, 0] = 1
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    logic.SetBinaryLabelmapToSegment(mrml.oriented_image_from_array(edit, ImageGeometry(spacing=(1.0, 1.0, 2.0))), seg,
                                     mrml.TUMOR_SEGMENT.segment_id, logic.MODE_MERGE_MAX)
    widget.onSegmentButton()
    assert starts == []
    assert confirmations[-1] == (
        "'Old result' already has Liver / Liver tumor segments. 'Liver tumor' was edited after the run that made it: "
        "replacing it loses those edits. Replace them? This cannot be undone; its other segments are kept. (To keep "
        "them, choose 'Create new segmentation' as the output.)")


def test_segment_into_a_segmentation_made_on_another_ct_asks_first_naming_both_cts(module, monkeypatch):
    """Choosing another input CT sets the output back to 'Create new', but a reader may then pick the first CT's
    segmentation by hand: its Liver / Liver tumor (the first CT's result) were replaced after the plain "Replace
    them?", and a segmentation of the first CT without them was taken over (its CT changed) without a question."""
    from LiverTumorSegLib import mrml
    from LiverTumorSegLib.volume import ImageGeometry
    from mrml_helpers import add_volume_node

    geometry = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    labels = np.zeros((3, 8, 8), np.uint8)
    labels[1, 2:6, 2:6] = 1
    first_ct = add_volume_node(module.scene, labels.astype(np.int16), geometry, "Baseline CT")
    second_ct = add_volume_node(module.scene, labels.astype(np.int16), geometry, "Follow-up CT")
    seg = mrml.labels_to_segmentation_node(module.scene, labels, geometry, name="Baseline result",
                                           reference_volume_node=first_ct)
    widget, starts, confirmations = _segment_button_panel(module, monkeypatch, seg, second_ct)
    widget.onSegmentButton()
    assert starts == [] and confirmations == [
        "'Baseline result' was made on the CT 'Baseline CT', not on 'Follow-up CT', the CT to segment. 'Baseline "
        "result' already has Liver / Liver tumor segments. Replace them? This cannot be undone; its other segments are "
        "kept. (To keep them, choose 'Create new segmentation' as the output.)"]
    for spec in mrml.SEGMENTS:  # none of this module's segments left: the run would take it over
        seg.GetSegmentation().RemoveSegment(spec.segment_id)
    widget.onSegmentButton()
    assert starts == [] and confirmations[-1] == (
        "'Baseline result' was made on the CT 'Baseline CT', not on 'Follow-up CT', the CT to segment. Segment "
        "'Follow-up CT' into it? Its segments are kept, and it records 'Follow-up CT' as its CT from then on. (To "
        "leave it as it is, choose 'Create new segmentation' as the output.)")
    widget._parameterNode.inputVolume = first_ct  # its own CT, nothing to replace: no question
    widget.onSegmentButton()
    assert starts == [1] and len(confirmations) == 2


def test_a_click_while_packages_install_starts_no_second_install_or_run(module, monkeypatch):
    """Slicer's pip_install processes events for every line pip prints, so a second click on Segment during the
    minutes-long install re-entered onSegmentButton: a second confirmation, a second pip on the same packages at
    once, and two runs (the second cancelling the first). The panel said nothing meanwhile."""
    import slicer.util
    from LiverTumorSegModuleLib import dependencies

    m = module.m
    widget = m.LiverTumorSegWidget()
    status = types.SimpleNamespace(text="", repaint=lambda: None)
    widget.ui = types.SimpleNamespace(statusLabel=status,
                                      progressBar=types.SimpleNamespace(setVisible=lambda visible: None, value=0, repaint=lambda: None))
    widget._parameterNode = types.SimpleNamespace(outputSegmentation=None, inputVolume="CT", modelPath="m.safetensors",
                                                  device="auto", lesionTable=None)
    shown_during_install = []
    widget.updateGUI = lambda *args: shown_during_install.append((widget._installingPackages, status.text))
    starts, confirmations, pips = [], [], []
    widget.logic = types.SimpleNamespace(process=lambda *args, **kwargs: starts.append(1) or object())
    monkeypatch.setattr(m, "segmentationOptionsFromParameters", lambda p: None)
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda text, **kw: confirmations.append(text) or True)

    def ensure(confirm):  # what the logic does when a package is missing: ask, then pip_install (which lets a
        if confirm("Install monai?"):  # click in: the user clicks Segment again)
            pips.append("running")
            widget.onSegmentButton()
            assert status.text == widget.INSTALLING_TEXT
            pips.remove("running")
        return []

    widget.logic.ensureDependencies = ensure
    monkeypatch.setattr(dependencies, "ensure_requirements", None)  # never reached: ensure is the stand-in
    widget.onSegmentButton()
    assert len(confirmations) == 1 and starts == [1]
    assert (True, widget.INSTALLING_TEXT) in shown_during_install  # the panel showed it (buttons off meanwhile)
    assert widget._installingPackages is False and status.text != widget.INSTALLING_TEXT


class _QtWidgetStandIn:
    """A label, button or progress bar whose C++ object Reload deletes: any use after ``destroy()`` raises as
    PythonQt does ("Trying to call ... on a destroyed ... object")."""

    def __init__(self):
        object.__setattr__(self, "_destroyed", False)
        object.__setattr__(self, "text", "")

    def destroy(self):
        object.__setattr__(self, "_destroyed", True)

    def _check(self):
        if object.__getattribute__(self, "_destroyed"):
            raise RuntimeError("Trying to use a destroyed QWidget object")

    def __getattribute__(self, name):
        if name not in ("destroy", "_check") and not name.startswith("__"):
            object.__getattribute__(self, "_check")()
        return object.__getattribute__(self, name)

    def __setattr__(self, name, value):
        self._check()
        object.__setattr__(self, name, value)

    def setVisible(self, visible):
        pass

    def repaint(self):
        pass


@pytest.mark.parametrize("button", ["onSegmentButton", "onMeasureButton"])
def test_a_reload_while_packages_install_starts_nothing_and_touches_no_deleted_widget(module, monkeypatch, button):
    """Slicer's pip_install processes events for every line pip prints, so the Reload button can be clicked during the
    minutes-long install. The old panel's cleanup ran, its widgets were deleted, and then the click handler went on:
    it wrote its status into a deleted label (a traceback in Slicer's console) and would have started a run whose
    outcome went to the dead panel. Now nothing is started and no widget of the old panel is touched."""
    import slicer.util

    m = module.m
    widget = m.LiverTumorSegWidget()
    status, progress = _QtWidgetStandIn(), _QtWidgetStandIn()
    widget.ui = types.SimpleNamespace(statusLabel=status, progressBar=progress)
    widget._parameterNode = types.SimpleNamespace(outputSegmentation=None, inputVolume="CT", modelPath="m.safetensors",
                                                  device="auto", lesionTable=None, parameterNode=None,
                                                  disconnectGui=lambda tag: None)
    widget.updateGUI = lambda *args: status.text  # reads the panel's widgets, as the real one does
    starts = []

    def ensure(confirm):  # the packages are installed; meanwhile the user clicks Reload
        confirm("Install monai?")
        widget.cleanup()
        status.destroy()
        progress.destroy()
        return []

    widget.logic = types.SimpleNamespace(process=lambda *a, **k: starts.append("segment"),
                                         measureSegmentation=lambda *a, **k: starts.append("measure"),
                                         ensureDependencies=ensure, cleanup=lambda: None)
    monkeypatch.setattr(m, "segmentationOptionsFromParameters", lambda p: None)
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda text, **kw: True)
    getattr(widget, button)()
    assert starts == []


class _TableViewStandIn:
    def setMRMLTableNode(self, table):
        pass


@pytest.mark.parametrize("button", ["onSegmentButton", "onMeasureButton", "onCompareButton"])
def test_a_scene_closed_while_packages_install_starts_nothing_and_says_so(module, monkeypatch, button):
    """Slicer's pip_install processes events for every line pip prints, so File > Close Scene can be clicked during
    the minutes-long install. The click that asked for the install then went on with the closed scene's nodes: Segment
    ended with "Could not start: No input volume selected" (the closed scene's parameter node has no CT any more),
    Compare with the removed CTs. Now nothing is started and the panel says the scene was closed meanwhile."""
    import slicer.util

    m = module.m
    widget = m.LiverTumorSegWidget()
    widget.ui = types.SimpleNamespace(statusLabel=types.SimpleNamespace(text="", repaint=lambda: None),
                                      resultsSummaryLabel=types.SimpleNamespace(text=""),
                                      progressBar=types.SimpleNamespace(value=0, setVisible=lambda visible: None, repaint=lambda: None),
                                      lesionTableView=_TableViewStandIn())
    chosen = types.SimpleNamespace(checked=True, text="Compare", currentNode=lambda: "node of the closed scene")
    widget.compare = dict({key: chosen for key in ("baselineSegmentation", "baselineVolume", "followupSegmentation",
                                                    "followupVolume", "alignOnCT", "button")},
                          nadirSumMm=types.SimpleNamespace(text=""), result=types.SimpleNamespace(text=""),
                          afterCompleteResponse=types.SimpleNamespace(checked=False),
                          previousChangeReport=types.SimpleNamespace(currentPath=""), table=_TableViewStandIn())
    closedScenes = types.SimpleNamespace(outputSegmentation=None, inputVolume="CT", modelPath="m.safetensors",
                                         device="auto", lesionTable=None, changeTable=None, parameterNode=None,
                                         disconnectGui=lambda tag: None)
    widget._parameterNode = closedScenes
    widget.updateGUI = lambda *args: None
    starts = []

    def ensure(confirm):  # the packages are installed; meanwhile the user closes the scene
        confirm("Install monai?")
        widget.onSceneStartClose(None, None)
        closedScenes.inputVolume = None  # the scene's Clear took the CT away; EndClose binds the panel to a new node
        widget._parameterNode = types.SimpleNamespace(**vars(closedScenes))
        return []

    widget.logic = types.SimpleNamespace(process=lambda *a, **k: starts.append("segment"),
                                         measureSegmentation=lambda *a, **k: starts.append("measure"),
                                         compareWithBaseline=lambda *a, **k: starts.append("compare"),
                                         ensureDependencies=ensure, cleanup=lambda: None)
    monkeypatch.setattr(m, "segmentationOptionsFromParameters", lambda p: None)
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda text, **kw: True)
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kw: starts.append(f"error: {text}"))
    getattr(widget, button)()
    assert starts == []
    assert widget.ui.statusLabel.text == ("The scene was closed while the Python packages were installed; nothing "
                                          "was started. Click again to run it in the new scene.")
    assert widget._installingPackages is False


def test_add_model_copy_that_fails_halfway_leaves_no_partial_package(module, tmp_path, monkeypatch):
    """'Add model file...' copied straight onto the installed name: a copy interrupted by a full disk left a partial
    package there (listed as unusable); it now copies under a hidden temporary name and renames the whole file."""
    import shutil as shutil_module
    from LiverTumorSegLib.resources import bundled_models_dir
    users = tmp_path / "user models"
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(users))
    source = tmp_path / "mine.safetensors"
    shutil_module.copy(bundled_models_dir() / "unet16_widezoom_cpu.safetensors", source)
    real_copy = shutil_module.copyfile

    def copy_then_fail(src, dst, *args, **kwargs):
        with open(dst, "wb") as out:
            out.write(open(src, "rb").read(1000))     # part of the file, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module.m.shutil, "copyfile", copy_then_fail)
    with pytest.raises(OSError, match="No space left"):
        module.m.LiverTumorSegLogic.addUserModel(str(source))
    assert sorted(p.name for p in users.iterdir()) == []
    monkeypatch.setattr(module.m.shutil, "copyfile", real_copy)
    target = module.m.LiverTumorSegLogic.addUserModel(str(source))
    assert open(target, "rb").read() == source.read_bytes()


@pytest.mark.parametrize("kind", ["foreign safetensors", "onnx", "monai bundle"])
def test_add_model_refusal_speaks_of_the_panel_not_the_command_line(module, tmp_path, monkeypatch, kind):
    """'Add model file...' showed the library's refusal as is: "'livertumorseg models' lists the installed ones" and
    "with --backend onnx, segment runs ..." to a user who has the Model list and no backend setting."""
    import zipfile
    from safetensors.numpy import save_file
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(tmp_path / "user models"))
    if kind == "foreign safetensors":  # another project's weights (a Hugging Face model): no LiverTumorSeg record
        path = tmp_path / "model.safetensors"
        save_file({"weight": np.zeros((2, 2), np.float32)}, str(path))
    elif kind == "onnx":  # a protobuf ModelProto: ir_version first
        path = tmp_path / "model.onnx"
        path.write_bytes(b"\x08\x07\x12\x07pytorch onnx model")
    else:
        path = tmp_path / "bundle.zip"
        with zipfile.ZipFile(path, "w") as bundle:
            bundle.writestr("spleen/configs/metadata.json", "{}")
            bundle.writestr("spleen/models/model.pt", b"\x80\x02")
    with pytest.raises(module.m.LiverTumorSegError) as refused:
        module.m.LiverTumorSegLogic.addUserModel(str(path))
    text = str(refused.value)
    assert "not" in text  # still why it is refused
    assert "'livertumorseg models'" not in text and "with --backend onnx" not in text
    if kind != "onnx":
        assert "the Model list shows the installed ones" in text
        assert ("MONAI bundles" in text) == (kind == "monai bundle")
    else:
        assert "the panel runs it on PyTorch" in text
    assert not (tmp_path / "user models" / path.name).exists()
