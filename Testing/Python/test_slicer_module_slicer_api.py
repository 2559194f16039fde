"""Static checks of the module against Slicer / PythonQt behaviour the headless tests cannot exercise (they use
stand-ins for the parameter-node wrapper, the widgets and ``connect``). Nothing here needs Slicer: the module file
and the .ui are parsed.

1. Widget <-> parameter bindings. Slicer's ``parameterNodeWrapper`` binds a widget to a parameter only where a GUI
   connector's ``canRepresent(widget, datatype)`` is true, and ``connectParametersToGui`` raises
   ``RuntimeError("Unable to create GUI connector ...")`` otherwise, so the panel would not open. Every connector
   compares ``type(widget)`` exactly (a ``ctkCheckBox`` is not a ``QCheckBox``). ``SUPPORTED_BINDINGS`` is the part
   of the connector table present in every ``Base/Python/slicer/parameterNodeWrapper/guiConnectors.py`` read for
   this (Slicer/Slicer 0e31bd8c, no ``qMRMLSliderWidget`` yet; the RyanZurrin/Slicer fork at 4035ce30, newer):
   QCheckBoxToBoolConnector, QSliderOrSpinBoxToIntConnector, QDoubleSpinBoxCtkSliderWidgetToFloatConnector,
   QLineEditToStrConnector, QTextEditPlainTextToStrConnector and qMRMLNodeComboBoxToNodeConnector. Connectors the
   newer files add (ctkCheckBox, ctkDoubleSpinBox, QLabel, qMRMLSliderWidget, ranges) are left out on purpose: a
   Slicer 5.6 without them would refuse the binding.
2. The QDoubleSpinBox connector sets the spin box's minimum and maximum from ``WithinRange`` when it binds, so the
   .ui's own range is replaced; they must agree, and the default must lie in the range and be shown exactly with
   the .ui's decimals (Qt's default: 2).
3. ``obj.connect("signal(args)", slot)`` in PythonQt only prints a warning for a signal the class lacks (the button
   then does nothing). Each signal used must be in ``VERIFIED_SIGNALS`` for the receiver's class. PythonQt calls a
   Python slot with as many of the signal's arguments as the function takes (PythonQtSignalReceiver.cpp,
   ``PythonQtSignalTarget::call``: ``numPythonArgs = code->co_argcount``), so a slot may take fewer, but one
   without defaults for more arguments than the signal has fails when the signal fires.
"""
import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE_FILE = ROOT / "LiverTumorSeg" / "LiverTumorSeg.py"
UI_FILE = ROOT / "LiverTumorSeg" / "Resources" / "UI" / "LiverTumorSeg.ui"

# widget class (exact, as in the connectors' ``type(widget) == ...``) -> parameter kinds it binds in Slicer 5.6-5.10
SUPPORTED_BINDINGS = {
    "QCheckBox": {"bool"},
    "QPushButton": {"bool"},  # made checkable by the connector
    "QSpinBox": {"int"},
    "QSlider": {"int"},  # bounded only
    "QDoubleSpinBox": {"float"},
    "ctkSliderWidget": {"float"},  # bounded only
    "QLineEdit": {"str"},
    "QTextEdit": {"str"},
    "qMRMLNodeComboBox": {"node"},
}

# Signals checked in the sources: qMRMLTableView.h (Slicer/Slicer 11a1fae3: ``void selectionChanged();``); Qt 5's
# QAbstractButton ``clicked(bool checked = false)`` (moc also registers ``clicked()``), QComboBox
# ``currentIndexChanged(int)`` (also in Qt 6), QTimer ``timeout()``; commontk/CTK ctkPathLineEdit.h 03bf8478
# ``void currentPathChanged(const QString& path);`` (moc normalises it to ``currentPathChanged(QString)``; Slicer's
# guiConnectors.py connects the same signal).
VERIFIED_SIGNALS = {
    "ctkPathLineEdit": {"currentPathChanged(QString)": 1},
    "QPushButton": {"clicked()": 0, "clicked(bool)": 1, "toggled(bool)": 1},
    "QComboBox": {"currentIndexChanged(int)": 1},
    "qMRMLTableView": {"selectionChanged()": 0},
    "QTimer": {"timeout()": 0},
}


def _ui_widgets(ui_text: str) -> Dict[str, Tuple[str, Dict[str, str]]]:
    """name -> (class, {property name: text}) of every widget in a .ui file's text."""
    widgets = {}
    for element in ET.fromstring(ui_text).iter("widget"):
        props = {prop.get("name"): "".join(t.strip() for t in prop.itertext()) for prop in element.findall("property")}
        widgets[element.get("name")] = (element.get("class"), props)
    return widgets


def _class(tree: ast.Module, name: str) -> ast.ClassDef:
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)


def _method(cls: ast.ClassDef, name: str) -> ast.FunctionDef:
    return next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == name)


def _parameter_fields(tree: ast.Module) -> Dict[str, dict]:
    """The parameter node's fields: name -> {"kind": bool/int/float/str/node/other, "range": (lo, hi) or None,
    "default": literal or None}."""
    fields = {}
    for statement in _class(tree, "LiverTumorSegParameterNode").body:
        if not isinstance(statement, ast.AnnAssign):
            continue
        annotation, bounds = statement.annotation, None
        if isinstance(annotation, ast.Subscript) and ast.unparse(annotation.value) == "Annotated":
            parts = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
            annotation = parts[0]
            for extra in parts[1:]:
                if isinstance(extra, ast.Call) and ast.unparse(extra.func) == "WithinRange":
                    bounds = tuple(float(ast.literal_eval(a)) for a in extra.args)
        text = ast.unparse(annotation)
        kind = text if text in ("bool", "int", "float", "str") else (
            "node" if re.fullmatch(r"vtkMRML\w*Node", text) else "other")
        default = ast.literal_eval(statement.value) if statement.value is not None else None
        fields[statement.target.id] = {"kind": kind, "range": bounds, "default": default, "annotation": text}
    return fields


def _compare_widget_classes(tree: ast.Module) -> Dict[str, str]:
    """The compare section's parameter widgets (built in setupCompareSection): name -> widget class."""
    setup = _method(_class(tree, "LiverTumorSegWidget"), "setupCompareSection")
    classes = {}
    for node in ast.walk(setup):
        if isinstance(node, ast.For) and isinstance(node.iter, ast.Tuple):
            made = {ast.unparse(c.func) for c in ast.walk(node) if isinstance(c, ast.Call)}
            widget_class = "qMRMLNodeComboBox" if "slicer.qMRMLNodeComboBox" in made else "?"
            for row in node.iter.elts:
                classes[ast.literal_eval(row.elts[0])] = widget_class
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and ast.unparse(node.targets[0]).startswith("self.compare[")):
            key = ast.literal_eval(node.targets[0].slice)
            func = ast.unparse(node.value.func)
            if func.startswith(("qt.", "slicer.", "ctk.")):
                classes[key] = func.split(".", 1)[1]
    return classes


def _compare_parameter_names(tree: ast.Module) -> List[str]:
    assign = next(n for n in tree.body if isinstance(n, ast.Assign)
                  and ast.unparse(n.targets[0]) == "COMPARE_PARAMETERS")
    return list(ast.literal_eval(assign.value))


def binding_problems(ui_text: str, module_text: str) -> List[str]:
    """What Slicer's parameterNodeWrapper would refuse or silently change when the panel binds its widgets."""
    tree = ast.parse(module_text)
    fields = _parameter_fields(tree)
    bound = {props["SlicerParameterName"]: (cls, props) for cls, props in _ui_widgets(ui_text).values()
             if props.get("SlicerParameterName")}
    compare = _compare_widget_classes(tree)
    for name in _compare_parameter_names(tree):
        bound[name] = (compare.get(name, "?"), {})
    problems = []
    for name, (widget_class, props) in sorted(bound.items()):
        field = fields.get(name)
        if field is None:
            problems.append(f"{name}: bound to a {widget_class} but the parameter node has no such field")
            continue
        if field["kind"] not in SUPPORTED_BINDINGS.get(widget_class, set()):
            problems.append(f"{name}: Slicer 5.6-5.10 have no GUI connector from a {widget_class} to "
                            f"'{field['annotation']}' (connectParametersToGui raises; the panel would not open)")
            continue
        if widget_class in ("QSlider", "ctkSliderWidget") and field["range"] is None:
            problems.append(f"{name}: a {widget_class} needs a bounded type (WithinRange)")
        if widget_class == "QDoubleSpinBox" and props:
            low, high = field["range"] if field["range"] else (float("-inf"), float("inf"))
            ui_range = (float(props.get("minimum", "0")), float(props.get("maximum", "99.99")))
            if field["range"] and ui_range != field["range"]:
                problems.append(f"{name}: the .ui range {ui_range} differs from WithinRange{field['range']}, "
                                "which the connector sets when it binds")
            default, decimals = field["default"], int(props.get("decimals", "2"))
            if default is not None and not low <= default <= high:
                problems.append(f"{name}: default {default} outside WithinRange({low}, {high})")
            if default is not None and round(default, decimals) != default:
                problems.append(f"{name}: default {default} is shown as {round(default, decimals)} with "
                                f"{decimals} decimals (the spin box would write that back)")
    return problems


def _receiver_class(receiver: str, ui: Dict[str, Tuple[str, Dict[str, str]]], tree: ast.Module) -> Optional[str]:
    """The Qt class of a ``connect`` receiver expression in the module."""
    match = re.fullmatch(r"self\.ui\.(\w+)", receiver)
    if match:
        return ui.get(match.group(1), (None,))[0]
    match = re.fullmatch(r"self\.compare\['(\w+)'\]", receiver)
    if match:
        return _compare_widget_classes(tree).get(match.group(1))
    for node in ast.walk(tree):  # a local variable: its assignment from a qt.* constructor
        if (isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == receiver
                and isinstance(node.value, ast.Call) and ast.unparse(node.value.func).startswith("qt.")):
            return ast.unparse(node.value.func)[3:]
    return None


def _required_slot_args(tree: ast.Module, slot: str, scope: ast.AST) -> Optional[int]:
    """Positional arguments without defaults of the slot (``self.name`` method or local function), self excluded."""
    if slot.startswith("self."):
        candidates = [_method(_class(tree, "LiverTumorSegWidget"), slot[5:])]
    else:
        candidates = [n for n in ast.walk(scope) if isinstance(n, ast.FunctionDef) and n.name == slot]
    if not candidates:
        return None
    args = candidates[0].args
    positional = [a.arg for a in args.posonlyargs + args.args if a.arg != "self"]
    return len(positional) - len(args.defaults)


def signal_problems(ui_text: str, module_text: str) -> List[str]:
    """Signals connected by string that the receiver's class lacks (or that were never checked), and slots that
    need more arguments than their signal gives."""
    tree = ast.parse(module_text)
    ui = _ui_widgets(ui_text)
    problems, seen = [], 0
    for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        for call in (n for n in ast.walk(function) if isinstance(n, ast.Call)):
            if not (isinstance(call.func, ast.Attribute) and call.func.attr == "connect" and len(call.args) == 2
                    and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)):
                continue
            seen += 1
            receiver, signal = ast.unparse(call.func.value).replace('"', "'"), call.args[0].value
            widget_class = _receiver_class(receiver, ui, tree)
            signals = VERIFIED_SIGNALS.get(widget_class or "", {})
            if signal not in signals:
                problems.append(f"{receiver} ({widget_class}): signal '{signal}' not among the verified "
                                f"{sorted(signals)}")
                continue
            required = _required_slot_args(tree, ast.unparse(call.args[1]), function)
            if required is None or required > signals[signal]:
                problems.append(f"{receiver}.{signal}: slot {ast.unparse(call.args[1])} needs {required} "
                                f"arguments, the signal gives {signals[signal]}")
    if not seen:
        problems.append("no connect('signal(...)', slot) call found")
    return problems


def test_every_bound_widget_has_a_connector_in_slicer_5_6_to_5_10():
    ui_text, module_text = UI_FILE.read_text(encoding="utf-8"), MODULE_FILE.read_text(encoding="utf-8")
    assert binding_problems(ui_text, module_text) == []
    # what is bound, by class: a change of any of them must pass through the table above
    tree = ast.parse(module_text)
    compare = _compare_widget_classes(tree)
    classes = sorted({cls for cls, props in _ui_widgets(ui_text).values() if props.get("SlicerParameterName")}
                     | {compare[name] for name in _compare_parameter_names(tree)})
    assert classes == ["QCheckBox", "QDoubleSpinBox", "QLineEdit", "qMRMLNodeComboBox"]


def _edited(path: Path, old: str, new: str) -> str:
    """The text of ``path`` with its first ``old`` replaced by ``new`` (``old`` must be there: an edit that finds
    nothing would test the unedited file)."""
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    return text.replace(old, new, 1)


@pytest.mark.parametrize("old, new, expected", [
    # a ctkCheckBox has a connector only in newer Slicer versions (docs list it; guiConnectors 0e31bd8c does not)
    ('<widget class="QCheckBox" name="fillHolesCheckBox">', '<widget class="ctkCheckBox" name="fillHolesCheckBox">',
     "fillLiverHoles: Slicer 5.6-5.10 have no GUI connector from a ctkCheckBox to 'bool'"),
    # a string parameter on a combo box needs a Choice annotation; a float on a line edit has no connector at all
    ('<widget class="QDoubleSpinBox" name="minLesionSpinBox">', '<widget class="QLineEdit" name="minLesionSpinBox">',
     "minLesionMl: Slicer 5.6-5.10 have no GUI connector from a QLineEdit to 'float'"),
    ("<double>3000.000000000000000</double>", "<double>2000.000000000000000</double>",
     "windowLevel: the .ui range (-1024.0, 2000.0) differs from WithinRange(-1024.0, 3000.0)"),
])
def test_binding_check_reports_what_slicer_would_refuse(old, new, expected):
    problems = binding_problems(_edited(UI_FILE, old, new), MODULE_FILE.read_text(encoding="utf-8"))
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_binding_check_reports_a_default_the_spin_box_cannot_show():
    old = "minLesionProbability: Annotated[float, WithinRange(0, 1)] = 0.65"
    problems = binding_problems(UI_FILE.read_text(encoding="utf-8"), _edited(MODULE_FILE, old, old[:-4] + "0.655"))
    assert problems == ["minLesionProbability: default 0.655 is shown as 0.66 with 2 decimals (the spin box "
                        "would write that back)"]


def test_compare_section_widgets_are_bound_by_class():
    """Built in code, so not covered by the .ui: four node selectors and one check box."""
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    classes = _compare_widget_classes(tree)
    assert {name: classes[name] for name in _compare_parameter_names(tree)} == {
        "baselineSegmentation": "qMRMLNodeComboBox", "baselineVolume": "qMRMLNodeComboBox",
        "followupSegmentation": "qMRMLNodeComboBox", "followupVolume": "qMRMLNodeComboBox",
        "alignOnCT": "QCheckBox", "nadirSumMm": "QLineEdit", "afterCompleteResponse": "QCheckBox"}


def test_connected_signals_exist_on_their_classes_and_slots_take_their_arguments():
    assert signal_problems(UI_FILE.read_text(encoding="utf-8"), MODULE_FILE.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("old, new, expected", [
    ('self.ui.lesionTableView.connect("selectionChanged()"', 'self.ui.lesionTableView.connect("clicked()"',
     "self.ui.lesionTableView (qMRMLTableView): signal 'clicked()' not among the verified ['selectionChanged()']"),
    ('timer.connect("timeout()"', 'timer.connect("timeout(int)"',
     "timer (QTimer): signal 'timeout(int)' not among the verified ['timeout()']"),
    ("def onMeasureButton(self) -> None:", "def onMeasureButton(self, a, b) -> None:",
     "self.ui.measureButton.clicked(bool): slot self.onMeasureButton needs 2 arguments, the signal gives 1"),
])
def test_signal_check_reports_a_wrong_signature(old, new, expected):
    problems = signal_problems(UI_FILE.read_text(encoding="utf-8"), _edited(MODULE_FILE, old, new))
    assert problems == [expected]


def test_docs_state_the_self_tests_cancel_bound():
    """docs/slicer.md describes the in-Slicer self-test's Cancel check; it said 2 s while the test allows 5 s (kill,
    wait and the temporary-folder retries; about 1 s on Windows)."""
    bound = re.search(r"self\.assertLess\(time\.monotonic\(\) - cancelled, ([\d.]+)\)",
                      MODULE_FILE.read_text(encoding="utf-8")).group(1)
    docs = (ROOT / "docs" / "slicer.md").read_text(encoding="utf-8")
    stated = re.search(r"Cancel in the network stage \(outcome cancelled within (\d+) s", docs).group(1)
    assert float(stated) == float(bound) == 5.0
