"""The panel's model list (slicer-core, the widget without Qt: a combo box and the parameter node stand in): what a
panel audit (1 Dec 2026) reproduced. Adding the model already selected switched the panel to the list's first model;
a scene naming an installed package under another folder got the default; a package the list marks unusable was
described as a model that runs, with Segment on; a model file that cannot be read raised out of the slot."""
import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "LiverTumorSeg"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

pytest.importorskip("slicer")
from LiverTumorSegModuleLib import job, panel_text  # noqa: E402
from test_slicer_module_logic import module  # noqa: E402,F401,F811


class FakeCombo:
    """QComboBox as far as the panel uses it: clear() leaves no current item, the first item added becomes current,
    setting currentIndex emits currentIndexChanged (unless signals are blocked)."""

    def __init__(self):
        self.items, self._current, self._blocked, self.slots = [], -1, False, []

    def _set(self, index):
        if index != self._current:
            self._current = index
            if not self._blocked:
                for slot in self.slots:
                    slot(index)

    def connect(self, signal, slot):
        self.slots.append(slot)

    def blockSignals(self, blocked):
        self._blocked = blocked

    def clear(self):
        self.items = []
        self._set(-1)

    def addItem(self, text, data):
        self.items.append((text, data))
        if self._current == -1:
            self._set(0)

    def findData(self, data):
        return next((i for i, (_, d) in enumerate(self.items) if d == data), -1)

    @property
    def currentIndex(self):
        return self._current

    @currentIndex.setter
    def currentIndex(self, index):
        self._set(index)

    @property
    def currentData(self):
        return self.items[self._current][1] if 0 <= self._current < len(self.items) else None

    @property
    def currentText(self):
        return self.items[self._current][0] if 0 <= self._current < len(self.items) else ""


class Params:
    """The parameter-node wrapper's str fields as Slicer's StringSerializer writes them (SetParameter on a real
    vtkMRMLScriptedModuleNode: Modified only when the value changes)."""

    def __init__(self, node):
        object.__setattr__(self, "parameterNode", node)
        object.__setattr__(self, "other", dict(
            device="auto", overrideWindow=False, inputVolume=None, outputSegmentation=None, lesionTable=None,
            changeTable=None, previousChangeReport="", minLesionProbability=0.65))

    def __getattr__(self, name):
        if name in ("modelPath", "lesionProbabilityModel"):
            return self.parameterNode.GetParameter(name)
        return self.other[name]

    def __setattr__(self, name, value):
        if name in ("modelPath", "lesionProbabilityModel"):
            self.parameterNode.SetParameter(name, str(value))
        else:
            self.other[name] = value


class Anything(types.SimpleNamespace):
    def mrmlTableNode(self):
        return None

    def setMRMLTableNode(self, node):
        pass


def _panel_with_a_user_model(module, tmp_path, monkeypatch):
    """``(widget, combo box, parameter node, user model path)``: the panel set up on a new scene (the default model
    selected) with a user model folder holding 'mymodel.safetensors' (a copy of segnet_v2), the parameter node
    observed as the widget observes it."""
    import shutil
    import vtk
    users = tmp_path / "models"
    users.mkdir()
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(users))
    mine = users / "mymodel.safetensors"
    shutil.copyfile(ROOT / "Resources" / "Models" / "segnet_v2.safetensors", mine)
    node = module.scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "LiverTumorSeg")
    w = module.m.LiverTumorSegWidget()
    w.logic = module.m.LiverTumorSegLogic()
    combo = FakeCombo()
    combo.connect("currentIndexChanged(int)", w.onModelChanged)
    w.ui = Anything(modelComboBox=combo, modelInfoLabel=Anything(text=""), preprocessingLabel=Anything(text=""),
                    deviceComboBox=Anything(currentText="Auto"), windowLevelSpinBox=Anything(),
                    windowWidthSpinBox=Anything(), lesionTableView=Anything(), resultsSummaryLabel=Anything(text=""),
                    statusLabel=Anything(text=""), segmentButton=Anything(), measureButton=Anything())
    w.compare = {"table": Anything(), "result": Anything(text=""), "previousChangeReport": Anything(currentPath="")}
    w.populateModels()  # setup
    w._parameterNode = Params(node)
    node.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda caller, event: w.updateGUI())  # _observeParameterNode
    w.updateGUI()  # a new scene: the default model
    return w, combo, node, mine


def test_a_model_file_named_as_the_list_skips_it_is_installed_under_a_name_it_shows(module, tmp_path, monkeypatch):
    """Add model file... copied '.clinic.safetensors' (hidden) and 'clinic_model' (no suffix) under their own names,
    which the model list skips: the panel then selected the default and said the model was not installed, add its
    file with 'Add model file...' (the package audit). They are installed as 'clinic.safetensors' and
    'clinic_model.safetensors', listed and selected."""
    import shutil
    w, combo, node, mine = _panel_with_a_user_model(module, tmp_path, monkeypatch)
    w._parameterNode.modelPath = str(mine)
    for given, installed in ((".clinic.safetensors", "clinic.safetensors"), ("clinic_model", "clinic_model.safetensors"),
                             ("Clinic.SAFETENSORS", "Clinic.SAFETENSORS")):
        source = tmp_path / "downloads" / given
        source.parent.mkdir(exist_ok=True)
        shutil.copyfile(mine, source)
        target = w.logic.addUserModel(str(source))
        assert Path(target) == mine.parent / installed
        w.ui.statusLabel.text = ""
        w.populateModels(selectPath=str(target))
        assert combo.currentData == str(target) and w._parameterNode.modelPath == str(target), given
        assert "not installed here" not in w.ui.statusLabel.text


def test_adding_the_selected_model_again_keeps_it_selected(module, tmp_path, monkeypatch):
    w, combo, node, mine = _panel_with_a_user_model(module, tmp_path, monkeypatch)
    w._parameterNode.modelPath = str(mine)  # the user picks the own model in the list
    assert combo.currentData == str(mine) and w._parameterNode.modelPath == str(mine)
    # Add model file... with that same installed file (onAddModel's two calls)
    target = w.logic.addUserModel(str(mine))
    w.populateModels(selectPath=str(target))
    assert w._parameterNode.modelPath == str(mine)


def test_a_scene_naming_an_installed_model_by_another_folder_selects_it(module, tmp_path, monkeypatch):
    w, combo, node, mine = _panel_with_a_user_model(module, tmp_path, monkeypatch)
    # a scene saved on another computer (or before Slicer / the extension was updated) names the same packages
    # under other folders: the user's own model and a bundled one
    for saved in ("/home/alice/.livertumorseg/models/mymodel.safetensors",
                  "/opt/Slicer-5.8.0/lib/Slicer-5.8/qt-scripted-modules/Resources/Models/segnet_v2.safetensors"):
        w.ui.statusLabel.text = ""
        # the lesion threshold the scene was saved with, set for that package (helper-406's audit: it was reset to
        # the package's own 0.65 without a word)
        modifying = node.StartModify()  # a scene's parameters arrive together, then one update
        w._parameterNode.lesionProbabilityModel = saved
        w._parameterNode.minLesionProbability = 0.40
        w._parameterNode.modelPath = saved
        node.EndModify(modifying)
        assert os.path.basename(w._parameterNode.modelPath) == os.path.basename(saved)
        assert "was saved from another folder" in w.ui.statusLabel.text
        w.updateGUI()  # as the parameter node's observer calls it again
        w.onModelChanged()
        assert w._parameterNode.lesionProbabilityModel == w._parameterNode.modelPath
        assert w._parameterNode.minLesionProbability == pytest.approx(0.40), saved


def _package_with(tmp_path, change):
    """A copy of a bundled package whose metadata ``change(meta)`` altered, sealed again (a newer version's package)."""
    import struct
    from LiverTumorSegLib.package import METADATA_KEY, sealed_metadata_json
    source = ROOT / "Resources" / "Models" / "unet16_widezoom_cpu.safetensors"
    raw = source.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = json.loads(header["__metadata__"][METADATA_KEY])
    change(meta)
    meta.pop("metadata_sha256", None)
    header["__metadata__"][METADATA_KEY] = sealed_metadata_json(meta)
    text = json.dumps(header).encode()
    target = tmp_path / "newer_model.safetensors"
    target.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])
    return target



def _model_panel(module, path, error=None):
    w = module.m.LiverTumorSegWidget()
    w.ui = types.SimpleNamespace(modelComboBox=types.SimpleNamespace(currentData=str(path)),
                                 modelInfoLabel=types.SimpleNamespace(text="(previous model's description)"),
                                 preprocessingLabel=types.SimpleNamespace(text="(previous model's preprocessing)"))
    w._parameterNode = None  # updateGUI has nothing to do
    w._modelItems = panel_text.model_choices([{"name": "newer", "path": str(path), "error": error}])
    return w


def test_a_model_the_list_marks_unusable_is_said_so_and_not_described_as_one_that_runs(module, tmp_path):
    from LiverTumorSegLib.package import _unusable_reason

    path = _package_with(tmp_path, lambda meta: meta["architecture"].update(name="futurenet"))
    reason = _unusable_reason(path)[1]
    assert reason
    w = _model_panel(module, path, reason)
    w.onModelChanged()
    assert w.ui.modelInfoLabel.text.startswith("This model cannot be used: ") and "futurenet" in w.ui.modelInfoLabel.text
    assert not w._modelUsable(str(path)) and w._modelUsable("/elsewhere/other.safetensors")


def test_a_model_file_that_cannot_be_read_is_said_so_not_raised(module, monkeypatch):
    import LiverTumorSegLib.package as package

    path = ROOT / "Resources" / "Models" / "unet16_widezoom_cpu.safetensors"

    def denied(p):
        raise PermissionError(13, "Permission denied", str(p))
    monkeypatch.setattr(package, "read_safetensors_header", denied)
    w = _model_panel(module, path)
    w.onModelChanged()
    assert w.ui.modelInfoLabel.text.startswith("This model cannot be used: ") and "Permission denied" in \
        w.ui.modelInfoLabel.text and w.ui.preprocessingLabel.text == ""


class TableView(Anything):
    def __init__(self):
        super().__init__()
        self.node = None

    def mrmlTableNode(self):
        return self.node

    def setMRMLTableNode(self, node):
        self.node = node


def test_another_output_of_the_same_ct_shows_its_own_table_and_summary(module):
    from test_slicer_module_job import _ct_array
    from LiverTumorSegLib.volume import ImageGeometry
    from mrml_helpers import add_volume_node
    geometry = ImageGeometry(spacing=(0.8, 0.9, 2.5))
    ct = add_volume_node(module.scene, _ct_array(), geometry, "CT")
    labels = (_ct_array() > 0).astype(np.uint8) + (_ct_array() > 100)
    report_a = {"liver_volume_ml": 900.0, "tumor_volume_ml": 0.0, "tumor_burden_percent": 0.0, "lesions": []}
    report_b = {"liver_volume_ml": 1520.0, "tumor_volume_ml": 12.5, "tumor_burden_percent": 0.82, "lesions": []}
    seg_a, table_a = job.apply_result(module.scene, labels, report_a, geometry, ct, show_3d=False)
    seg_b, table_b = job.apply_result(module.scene, labels, report_b, geometry, ct, show_3d=False)
    w = module.m.LiverTumorSegWidget()
    w._defaultModelPath = "m.safetensors"
    combo = FakeCombo()
    combo.addItem("m", "m.safetensors")
    w.ui = Anything(modelComboBox=combo, deviceComboBox=Anything(currentText="Auto"), windowLevelSpinBox=Anything(),
                    windowWidthSpinBox=Anything(), lesionTableView=TableView(),
                    resultsSummaryLabel=Anything(text=""), statusLabel=Anything(text=""),
                    segmentButton=Anything(), measureButton=Anything())
    w.compare = {"table": TableView(), "result": Anything(text=""), "previousChangeReport": Anything(currentPath="")}
    p = types.SimpleNamespace(modelPath="m.safetensors", lesionProbabilityModel="m.safetensors", device="auto",
                              overrideWindow=False, inputVolume=ct,
                              outputSegmentation=seg_b, lesionTable=table_b, changeTable=None, previousChangeReport="")
    w._parameterNode = p
    w.updateGUI()
    w.ui.resultsSummaryLabel.text = panel_text.summary_text(report_b)  # what onFinished wrote after run B
    # the reader chooses the first result (same CT) as the output segmentation
    p.outputSegmentation = seg_a
    w.updateGUI()  # finds A's own table and makes it the panel's table ...
    assert p.lesionTable is table_a
    w.updateGUI()  # ... which the parameter node's observer shows
    assert w.ui.lesionTableView.node is table_a
    assert "1520" not in w.ui.resultsSummaryLabel.text and "900" in w.ui.resultsSummaryLabel.text  # B's numbers stayed




def test_an_older_scenes_threshold_is_set_to_its_models_once(module, tmp_path, monkeypatch):
    w, combo, node, mine = _panel_with_a_user_model(module, tmp_path, monkeypatch)
    default = w._defaultModelPath
    assert combo.currentData == default and w._parameterNode.lesionProbabilityModel == default
    # an older scene (saved before 0.6.14: no lesionProbabilityModel) with the default model and a threshold of 0.5
    # is loaded: the import copies its parameters into the panel's node (one Modified)
    node.DisableModifiedEventOn()
    node.UnsetParameter("lesionProbabilityModel")
    w._parameterNode.other["minLesionProbability"] = 0.5
    node.SetParameter("modelPath", default)
    node.DisableModifiedEventOff()
    node.Modified()
    assert w._parameterNode.minLesionProbability == 0.65  # docs/slicer.md: "an older scene's value is set to its model's once"
