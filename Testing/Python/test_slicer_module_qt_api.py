"""Every Qt, CTK and qMRML member, every ``slicer.app`` / ``slicer.modules`` member and every ``slicer.util`` function
that the module (LiverTumorSeg.py) and scripts/slicer_selfcheck.py use was looked up in sources of Slicer 5.6's time,
with how PythonQt exposes it. Nothing here needs Slicer: the files are parsed.

PythonQt makes a ``Q_PROPERTY`` an attribute and a slot, ``Q_INVOKABLE`` or wrapped public method a callable, and looks
a name up among the properties first (``PythonQtClassInfo::member``: ``lookForPropertyAndCache`` before
``lookForMethodAndCache``, in every MeVisLab/pythonqt version read). So where a class has both a property and a method
of one name, the attribute is the property's value and calling it raises TypeError in a real Slicer, while the
headless tests' stand-ins accept either: ``QItemSelectionModel.selectedIndexes`` is such a name since Qt 5.5, and
``view.selectionModel().selectedIndexes()`` was called on every click in the lesion table. Each use is checked here
against its kind: a property is read or assigned, never called; a method, slot or static function is called.

Sources, read with the stored-source search (27 Nov 2026); a hit without a repository is dated by its content:

- ``svn``: Slicer/SlicerGitSVNArchive (Slicer's history to 2020): qMRMLTableView.h 67feff08 (``Q_INVOKABLE``
  ``mrmlTableNode()``; slots ``setMRMLTableNode(vtkMRMLTableNode*)`` and ``(vtkMRMLNode*)``, ``setMRMLScene``; signal
  ``selectionChanged()``), qMRMLNodeComboBox.h 1658fedc (``Q_PROPERTY`` nodeTypes, showChildNodeTypes, noneEnabled,
  addEnabled, removeEnabled, renameEnabled, noneDisplay; ``Q_INVOKABLE currentNode()``; slots ``setMRMLScene``,
  ``setCurrentNode(vtkMRMLNode*)``). The same members are in Slicer/Slicer's stored qMRMLTableView.h 11a1fae3 and
  qMRMLNodeComboBox.h 06536db4 (``nullptr`` era), so none was removed since.
- ``ctk``: commontk/CTK ctkCollapsibleButton.h 0d0ec63a (C++98 ``virtual`` era): ``Q_PROPERTY collapsed``; ``text``
  is QAbstractButton's.
- ``app``: qSlicerCoreApplication.h, every version found (Slicer 4 without ``CONSTANT`` to one with ``cachePath``):
  ``Q_PROPERTY`` temporaryPath and repositoryRevision; qSlicerApplication.h (Slicer 4 versions and Slicer/Slicer
  0017d7a8, which has 2023's ``loadFiles(..., vtkMRMLMessageCollection*)``): ``Q_INVOKABLE commandOptions()``;
  qSlicerCoreCommandOptions.h, three versions: ``Q_PROPERTY testingEnabled``; qSlicerAbstractCoreModule.h, two versions
  (the newer with 2021's ``defaultDocumentationLink``): ``Q_INVOKABLE logic()``, ``Q_PROPERTY path``;
  qSlicerAbstractModuleWidget.h (``nullptr`` era, and the 2022 Cjyx fork): ``Q_PROPERTY isEntered``.
- ``template``: how every scripted module since Slicer 4 uses its parent: ``parent.title`` ... ``acknowledgementText``
  assigned, ``self.layout = self.parent.layout()`` (a QVBoxLayout), ``setMRMLScene`` on a ``qMRMLWidget`` (many
  modules in the stored sources).
- ``ctkpath``: commontk/CTK Libs/Widgets/ctkPathLineEdit.h 03bf8478 (C++98 ``0`` defaults, so older than 5.6's
  CTK): ``Q_PROPERTY`` currentPath (``USER``), filters (``Filters``, enum value ``Files``) and nameFilters; signal
  ``currentPathChanged(const QString&)``. The same members used in a Slicer of the ``parameterNodeWrapper`` era (5.2
  and later): its guiConnectors.py ``ctkPathLineEditToPathConnector`` reads and assigns ``currentPath`` and connects
  ``currentPathChanged``, and scripted modules in the stored sources set ``filters = ctk.ctkPathLineEdit.Files`` and
  ``nameFilters = [...]`` as this module does (read 29 Nov 2026).
- ``qt``: Qt 5's own API (PythonQt wraps QObject subclasses' public methods through its generated wrappers; the Qt 5
  wrappers of QProcess, hits with ``qint64 processId(QProcess* theWrappedObject)``, list every QProcess method used
  here, with the enums SeparateChannels, NotRunning, CrashExit). The ``Q_PROPERTY``s of Qt's widgets used here
  (``enabled``, ``toolTip``, ``text``, ``checked``, ``wordWrap``, ``value``, QComboBox's ``currentIndex``,
  ``currentText`` and, since Qt 5.2, ``currentData``) are Qt's documented properties; not each read in a header.
- ``qt55``: QItemSelectionModel's ``Q_PROPERTY(QModelIndexList selectedIndexes ...)`` in Qt 5's qitemselectionmodel.h
  (the hit with ``model ... NOTIFY modelChanged``, no Qt 6 ``BINDABLE``; Qt's documentation: since Qt 5.5).
- ``pythonqt``: PythonQt itself: ``connect(signal, callable)`` on every QObject; property lookup before methods.

``slicer.util`` (:data:`SLICER_UTIL`): ``util2021`` is Slicer's Base/Python/slicer/util.py in a stored version
from before Slicer PR 5451 (merged Feb 2021, which added ``getModuleWidget``): two-space indents,
``mainWindow(verbose=True)``, ``pip_install(requirements)`` splitting a string. A name found there and in slicer-core
5.13's util.py is taken to be in 5.6. ``PR 5451`` and ``PR 5716`` (July 2021: ``tryWithErrorDisplay``) are Slicer
pull requests, merged, read in the stored issue threads. ``util2022`` is util.py in the lassoan/Slicer fork at
1a9b9fdb (read 29 Nov 2026), dated by its content between late 2021 and Slicer's 2022 switch to four-space indents,
so before 5.6 (Nov 2023): two-space indents, ``mainWindow()`` without ``verbose``, the ``chdir`` helper that cites
Python 3.11's ``contextlib.chdir`` (CPython PR 28271, autumn 2021) and a list-based ``VTKObservationMixin``. It has
``tryWithErrorDisplay(message=None, show=True, waitCursor=False)``; ``errorDisplay(text, windowTitle=None,
parent=None, standardButtons=None, **kwargs)``, whose ``messageBox`` sets each keyword the ``ctkMessageBox`` has as an
attribute (``detailedText``, QMessageBox's property); and ``pip_install(requirements)`` taking a ``str``
(shlex-split) or a ``list`` (``args = 'install', *requirements``), ``ValueError`` otherwise. Slicer 5.8's util.py,
quoted in a Feb 2025 Slicer forum traceback, and Slicer/Slicer's Base/Python/slicer/pydeps.py 2412a9d6 (main, 2026:
``requirements: str | list[str]``, which ``slicer.util.pip_install`` re-exports) take a string or a list too.
"""
import ast
import re
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import pytest

from test_slicer_module_logic import module  # noqa: F401 - the module-under-test fixture (GUI stand-ins)

ROOT = Path(__file__).resolve().parents[2]
MODULE_FILE = ROOT / "LiverTumorSeg" / "LiverTumorSeg.py"
SELFCHECK_FILE = ROOT / "scripts" / "slicer_selfcheck.py"
UI_FILE = ROOT / "LiverTumorSeg" / "Resources" / "UI" / "LiverTumorSeg.ui"

PROPERTY = "property"
"""Read or assigned as an attribute; calling it calls the property's value."""
CALL = "call"
"""A slot, ``Q_INVOKABLE``, wrapped public or static method: called."""
ENUM = "enum"
"""An enum value, read."""

QT_MEMBERS: Dict[str, Dict[str, Tuple[str, str]]] = {
    "qMRMLNodeComboBox": {
        **dict.fromkeys(("nodeTypes", "noneEnabled", "addEnabled", "removeEnabled", "renameEnabled",
                         "showChildNodeTypes"), (PROPERTY, "svn")),
        "toolTip": (PROPERTY, "qt"),
        **dict.fromkeys(("setMRMLScene", "currentNode", "setCurrentNode"), (CALL, "svn")),
    },
    "qMRMLTableView": {
        **dict.fromkeys(("mrmlTableNode", "setMRMLTableNode"), (CALL, "svn")),
        "selectionModel": (CALL, "qt"),  # QAbstractItemView's; no property of that name
        "setMinimumHeight": (CALL, "qt"),
        "connect": (CALL, "pythonqt"),
    },
    "QItemSelectionModel": {"selectedIndexes": (PROPERTY, "qt55")},
    "QModelIndex": {**dict.fromkeys(("sibling", "row", "data"), (CALL, "qt"))},
    "ctkCollapsibleButton": {"collapsed": (PROPERTY, "ctk"), "text": (PROPERTY, "qt")},
    "ctkPathLineEdit": {
        **dict.fromkeys(("currentPath", "filters", "nameFilters"), (PROPERTY, "ctkpath")),
        "toolTip": (PROPERTY, "qt"), "Files": (ENUM, "ctkpath"), "connect": (CALL, "pythonqt"),
    },
    "qMRMLWidget": {"setMRMLScene": (CALL, "template")},
    "QVBoxLayout": {**dict.fromkeys(("addWidget", "addStretch"), (CALL, "template"))},
    "QFormLayout": {"addRow": (CALL, "qt")},
    "QObject": {"property": (CALL, "qt")},
    "QPushButton": {**dict.fromkeys(("enabled", "toolTip", "text"), (PROPERTY, "qt")), "connect": (CALL, "pythonqt")},
    "QCheckBox": {**dict.fromkeys(("checked", "toolTip"), (PROPERTY, "qt"))},
    "QLineEdit": {**dict.fromkeys(("text", "placeholderText", "toolTip"), (PROPERTY, "qt"))},
    "QLabel": {**dict.fromkeys(("text", "wordWrap"), (PROPERTY, "qt")), "repaint": (CALL, "qt")},  # QWidget slot
    "QDoubleSpinBox": {"enabled": (PROPERTY, "qt")},
    "QProgressBar": {"value": (PROPERTY, "qt"), **dict.fromkeys(("setVisible", "repaint"), (CALL, "qt"))},
    "QComboBox": {
        **dict.fromkeys(("currentIndex", "currentText", "currentData"), (PROPERTY, "qt")),
        **dict.fromkeys(("findData", "blockSignals", "clear", "addItem"), (CALL, "qt")),
        "connect": (CALL, "pythonqt"),
    },
    "QTimer": {**dict.fromkeys(("setInterval", "start", "stop"), (CALL, "qt")), "connect": (CALL, "pythonqt")},
    "QProcess": {
        **dict.fromkeys(("setProcessChannelMode", "processId", "setEnvironment", "start", "waitForStarted",
                         "errorString", "readAllStandardOutput", "readAllStandardError", "state", "exitStatus",
                         "exitCode", "waitForReadyRead", "kill", "waitForFinished", "close"), (CALL, "qt")),
        **dict.fromkeys(("SeparateChannels", "NotRunning", "CrashExit"), (ENUM, "qt")),
    },
    "QFileDialog": {**dict.fromkeys(("getOpenFileName", "getSaveFileName"), (CALL, "qt"))},
    "qSlicerApplication": {
        "temporaryPath": (PROPERTY, "app"), "repositoryRevision": (PROPERTY, "app"),
        "applicationVersion": (PROPERTY, "qt"),  # QCoreApplication's
        "commandOptions": (CALL, "app"), "processEvents": (CALL, "qt"),
    },
    "qSlicerCommandOptions": {"testingEnabled": (PROPERTY, "app")},
    "qSlicerAbstractCoreModule": {"logic": (CALL, "app"), "path": (PROPERTY, "app")},
    "module parent": {  # qSlicerScriptedLoadableModule (module class) / qSlicerAbstractModuleWidget (widget class)
        **dict.fromkeys(("title", "categories", "dependencies", "contributors", "helpText", "acknowledgementText"),
                        (PROPERTY, "template")),
        "isEntered": (PROPERTY, "app"),
    },
}
"""Qt class -> {member: (kind, where it was found)} (the keys of the module docstring's list)."""

COMPARE_WIDGETS = {"baselineSegmentation": "qMRMLNodeComboBox", "baselineVolume": "qMRMLNodeComboBox",
                   "followupSegmentation": "qMRMLNodeComboBox", "followupVolume": "qMRMLNodeComboBox",
                   "alignOnCT": "QCheckBox", "nadirSumMm": "QLineEdit", "afterCompleteResponse": "QCheckBox",
                   "previousChangeReport": "ctkPathLineEdit", "button": "QPushButton", "save": "QPushButton",
                   "result": "QLabel",
                   "table": "qMRMLTableView"}
"""The compare section's widgets (setupCompareSection) by key."""

MODULE_RECEIVERS: List[Tuple[str, str]] = [
    (r"self\.compare\[\w+\]|c\[\w+\]|widget\.compare\[\w+\]", "qMRMLNodeComboBox"),  # loops over the node selectors
    (r"selector", "qMRMLNodeComboBox"), (r"section", "ctkCollapsibleButton"), (r"form", "QFormLayout"),
    (r"timer", "QTimer"), (r"self\._process", "QProcess"), (r"view", "qMRMLTableView"),
    (r"model|view\.selectionModel\(\)", "QItemSelectionModel"),
    (r"indexes\[0\]|indexes\[0\]\.sibling\(.*\)", "QModelIndex"),
    (r"self\.layout", "QVBoxLayout"), (r"uiWidget", "qMRMLWidget"), (r"label", "QLabel"), (r"w", "QObject"),
    (r"self\.parent", "module parent"), (r"qt\.QProcess", "QProcess"),
    (r"qt\.QFileDialog", "QFileDialog"), (r"ctk\.ctkPathLineEdit", "ctkPathLineEdit"),
    (r"slicer\.app", "qSlicerApplication"), (r"slicer\.app\.commandOptions\(\)", "qSlicerCommandOptions"),
    (r"slicer\.modules\.colors", "qSlicerAbstractCoreModule"),
]
"""Receiver expression in LiverTumorSeg.py (as ``ast.unparse`` writes it) -> its Qt class; ``self.ui.NAME`` takes the
class from the .ui file and ``self.compare['key']`` (also ``c`` and ``widget.compare``) from :data:`COMPARE_WIDGETS`."""

SELFCHECK_RECEIVERS: List[Tuple[str, str]] = [
    (r"app", "qSlicerApplication"), (r"app\.commandOptions\(\)", "qSlicerCommandOptions"),
    (r"module", "qSlicerAbstractCoreModule"),
]
"""The same for scripts/slicer_selfcheck.py (``app = slicer.app``; ``module`` = ``slicer.modules.livertumorseg`` where
read with ``getattr``)."""

UI_PROPERTIES: Dict[str, Dict[str, str]] = {
    "qMRMLNodeComboBox": {**dict.fromkeys(("nodeTypes", "showChildNodeTypes", "noneEnabled", "addEnabled",
                                           "removeEnabled", "noneDisplay"), "svn"),
                          "toolTip": "qt", "SlicerParameterName": "dynamic property (parameterNodeWrapper reads it)"},
    "ctkCollapsibleButton": {"collapsed": "ctk", "text": "qt"},
    "qMRMLTableView": {"minimumSize": "qt"},
    "qMRMLWidget": {"geometry": "qt"},
}
"""Properties the .ui file sets on Slicer's and CTK's widgets (Qt's own widgets' .ui properties are Qt Designer's) ->
where they were found. Qt's ``QUiLoader`` only warns about a property a class lacks, and the setting is lost."""

SLICER_UTIL: Dict[str, Tuple[Set[str], str]] = {
    **{name: (set(), "util2021") for name in (
        "exit", "startupEnvironment", "mainWindow", "loadUI", "childWidgetVariables", "loadVolume", "loadLabelVolume",
        "loadScene", "saveScene", "selectModule", "getNodesByClass", "arrayFromVolume", "confirmOkCancelDisplay",
        "VTKObservationMixin")},
    "warningDisplay": ({"windowTitle"}, "util2021"),
    "errorDisplay": ({"detailedText"}, "util2021: **kwargs set on the message box when it has that attribute "
                                       "(QMessageBox's detailedText property)"),
    "getModuleWidget": (set(), "PR 5451 (Feb 2021)"),
    "tryWithErrorDisplay": ({"waitCursor"}, "PR 5716 (July 2021); util2022: (message=None, show=True, "
                                            "waitCursor=False)"),
    "pip_install": (set(), "util2022 (before 5.6), 5.8 and main: a str or a list (as passed); util2021: a str"),
}
"""``slicer.util`` name -> (keywords used, where it was found for Slicer 5.6)."""


def _ui_classes() -> Dict[str, str]:
    return {w.get("name"): w.get("class") for w in ET.parse(UI_FILE).getroot().iter("widget")}


def _receiver_class(receiver: str, rules: List[Tuple[str, str]], ui: Dict[str, str]) -> Optional[str]:
    match = re.fullmatch(r"self\.ui\.(\w+)", receiver)
    if match:
        return ui.get(match.group(1), "?")
    match = re.fullmatch(r"(?:self\.compare|c|widget\.compare)\['(\w+)'\]", receiver)
    if match:
        return COMPARE_WIDGETS.get(match.group(1), "?")
    return next((cls for pattern, cls in rules if re.fullmatch(pattern, receiver)), None)


def qt_uses(source: str, rules: List[Tuple[str, str]], ui: Dict[str, str]) -> List[Tuple[str, str, str, int]]:
    """``(class, member, use, line)`` of every member read (``read``), assigned (``write``) or called (``call``) on a
    receiver ``rules`` (or ``self.ui`` / the compare section) name; ``getattr(receiver, "member", ...)`` is a read."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            cls = _receiver_class(ast.unparse(node.value), rules, ui)
            if cls is None:
                continue
            parent = parents.get(node)
            use = ("call" if isinstance(parent, ast.Call) and parent.func is node
                   else "write" if isinstance(node.ctx, ast.Store) else "read")
            uses.append((cls, node.attr, use, node.lineno))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)):
            cls = _receiver_class(ast.unparse(node.args[0]), rules, ui)
            if cls is not None:
                uses.append((cls, node.args[1].value, "read", node.lineno))
    return uses


def qt_use_problems(uses: List[Tuple[str, str, str, int]]) -> List[str]:
    """Members not looked up, properties called and methods not called."""
    problems = []
    for cls, member, use, line in uses:
        kind = QT_MEMBERS.get(cls, {}).get(member, (None, ""))[0]
        if kind is None:
            problems.append(f"line {line}: {cls}.{member} was not looked up for Slicer 5.6 (add it to QT_MEMBERS)")
        elif kind in (PROPERTY, ENUM) and use == "call":
            problems.append(f"line {line}: {cls}.{member} is a {kind} in PythonQt (an attribute): calling it raises")
        elif kind == CALL and use != "call":
            problems.append(f"line {line}: {cls}.{member} is a method: used as an attribute it is a bound method")
    return problems


def _module_uses() -> List[Tuple[str, str, str, int]]:
    return qt_uses(MODULE_FILE.read_text(encoding="utf-8"), MODULE_RECEIVERS, _ui_classes())


def _selfcheck_uses() -> List[Tuple[str, str, str, int]]:
    return qt_uses(SELFCHECK_FILE.read_text(encoding="utf-8"), SELFCHECK_RECEIVERS, {})


def test_every_qt_member_the_module_uses_was_looked_up_and_is_used_as_pythonqt_exposes_it():
    module_uses, selfcheck_uses = _module_uses(), _selfcheck_uses()
    assert len(module_uses) > 100 and len(selfcheck_uses) >= 4
    assert qt_use_problems(module_uses) == []
    assert qt_use_problems(selfcheck_uses) == []


def test_the_table_names_only_what_is_used():
    used = {(cls, member) for cls, member, _use, _line in _module_uses() + _selfcheck_uses()}
    listed = {(cls, member) for cls, members in QT_MEMBERS.items() for member in members}
    assert not listed - used, f"listed but no longer used: {sorted(listed - used)}"
    for pattern, cls in MODULE_RECEIVERS:  # each receiver rule still names something
        assert any(c == cls for c, _m, _u, _l in _module_uses()), (pattern, cls)


@pytest.mark.parametrize("old, new, expected", [
    # the call this check was written for: Qt 5.5's selectedIndexes property, called
    ("    selected = model.selectedIndexes\n", "    selected = model.selectedIndexes()\n",
     "QItemSelectionModel.selectedIndexes is a property in PythonQt (an attribute): calling it raises"),
    ('self.ui.deviceComboBox.currentText != deviceText', 'self.ui.deviceComboBox.currentText() != deviceText',
     "QComboBox.currentText is a property in PythonQt (an attribute): calling it raises"),
    ("table = view.mrmlTableNode()", "table = view.mrmlTableNode",
     "qMRMLTableView.mrmlTableNode is a method: used as an attribute it is a bound method"),
    ("selector.noneEnabled = True", "selector.noneEnabled = True\n            selector.hideChildNodes = True",
     "qMRMLNodeComboBox.hideChildNodes was not looked up for Slicer 5.6"),
])
def test_the_check_reports_a_member_used_against_its_kind(old, new, expected):
    text = MODULE_FILE.read_text(encoding="utf-8")
    assert old in text, old
    problems = qt_use_problems(qt_uses(text.replace(old, new, 1), MODULE_RECEIVERS, _ui_classes()))
    assert len(problems) == 1 and expected in problems[0], problems


def test_the_ui_sets_only_properties_slicers_widgets_have():
    unknown = []
    for element in ET.parse(UI_FILE).getroot().iter("widget"):
        known = UI_PROPERTIES.get(element.get("class"))
        if known is None:
            continue
        unknown += [f"{element.get('name')}.{p.get('name')}" for p in element.findall("property")
                    if p.get("name") not in known]
    assert unknown == []


def _util_calls(path: Path) -> Dict[str, Set[str]]:
    """``slicer.util`` names used in ``path`` (called, passed on or subclassed) -> keyword arguments given."""
    found: Dict[str, Set[str]] = {}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and ast.unparse(node.value) in ("slicer.util", "_slicer.util"):
            found.setdefault(node.attr, set())
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and ast.unparse(node.func.value) in ("slicer.util", "_slicer.util"):
            found.setdefault(node.func.attr, set()).update(k.arg for k in node.keywords if k.arg)
        if isinstance(node, ast.ImportFrom) and node.module == "slicer.util":
            for alias in node.names:
                found.setdefault(alias.name, set())
    return found


def test_every_slicer_util_name_and_keyword_was_looked_up_for_slicer_5_6():
    """The module's and the self-check script's ``slicer.util`` names (``exit`` included), with their keywords."""
    used: Dict[str, Set[str]] = {}
    for path in (MODULE_FILE, SELFCHECK_FILE):
        for name, keywords in _util_calls(path).items():
            used.setdefault(name, set()).update(keywords)
    assert {"exit", "getModuleWidget", "pip_install", "tryWithErrorDisplay"} <= set(used)
    unchecked = {name: sorted(keywords - SLICER_UTIL[name][0]) if name in SLICER_UTIL else "not looked up"
                 for name, keywords in used.items() if name not in SLICER_UTIL or keywords - SLICER_UTIL[name][0]}
    assert not unchecked, f"slicer.util names or keywords not looked up for Slicer 5.6: {unchecked}"
    assert not set(SLICER_UTIL) - set(used), f"listed but no longer used: {sorted(set(SLICER_UTIL) - set(used))}"


class _SelectionModelAsInSlicer:
    """What PythonQt gives for Qt 5.5+'s QItemSelectionModel: ``selectedIndexes`` is the property's value (a list)."""

    def __init__(self, indexes):
        self.selectedIndexes = list(indexes)


class _Index:
    def __init__(self, row, column, text):
        self._row, self._column, self._text = row, column, text

    def row(self):
        return self._row

    def sibling(self, row, column):
        return _Index(row, column, self._text if column == 0 else "?")

    def data(self):
        return self._text


@pytest.mark.skipif(sys.platform.startswith("win"), reason="the module fixture is POSIX only")
def test_a_click_in_the_lesion_table_focuses_the_lesion_with_slicers_selection_model(module, monkeypatch):
    """``onLesionSelectionChanged`` with a selection model whose ``selectedIndexes`` is a list attribute, as PythonQt
    gives it in Slicer: the clicked row's lesion (column 0 of that row) is focused. Calling ``selectedIndexes()`` had
    raised TypeError there."""
    loaded = module.m
    focused = []
    monkeypatch.setattr(loaded.mrml, "focus_on_table_lesion", lambda scene, table, lesion: focused.append(lesion))
    table = object()
    model = _SelectionModelAsInSlicer([_Index(2, 3, "3")])
    view = types.SimpleNamespace(mrmlTableNode=lambda: table, selectionModel=lambda: model)
    widget = loaded.LiverTumorSegWidget.__new__(loaded.LiverTumorSegWidget)
    widget.ui = types.SimpleNamespace(lesionTableView=view)
    widget.onLesionSelectionChanged()
    assert focused == [3]
    model.selectedIndexes = []  # no selection: nothing focused
    widget.onLesionSelectionChanged()
    assert focused == [3]
    assert loaded.selectedIndexes(types.SimpleNamespace(selectionModel=lambda: None)) == []
    method_model = types.SimpleNamespace(selectedIndexes=lambda: ["a"])  # a binding that gives the method
    assert loaded.selectedIndexes(types.SimpleNamespace(selectionModel=lambda: method_model)) == ["a"]
