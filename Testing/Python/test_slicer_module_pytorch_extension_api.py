"""The module's calls into the PyTorch extension (SlicerPyTorch), checked against that extension's source. Nothing here
needs Slicer: LiverTumorSeg.py and the top CMakeLists.txt are parsed.

A keyword that ``PyTorchUtilsLogic.installTorch`` does not take raises TypeError only in a user's Slicer, after the
user agreed to install PyTorch, and the headless tests replace ``installTorch`` with a fake. Sources, read with the
stored-source search (29 Nov 2026), repository fepegar/SlicerPyTorch:

- PyTorchUtils/PyTorchUtils.py 067a0e9d (2-space indents, ``cu116``/``cu117`` in its docstring: 2022-2023):
  ``class PyTorchUtilsLogic(ScriptedLoadableModuleLogic)`` with
  ``def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None)``; it
  runs ``light_the_torch install torch<torchVersionRequirement> torchvision`` and returns the imported ``torch``
  (``None`` when the user declines its own question).
- A later version of the same file (stored file 42493325489) adds ``torchvisionVersionRequirement=None`` after them.
- CMakeLists.txt 1c8e1ead: ``project(PyTorch)``: the extension's name, which ``EXTENSION_DEPENDS`` must give.
"""
import ast
from pathlib import Path
from typing import List

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE_FILE = ROOT / "LiverTumorSeg" / "LiverTumorSeg.py"
TOP_CMAKE = ROOT / "CMakeLists.txt"

INSTALL_TORCH_KEYWORDS = {"askConfirmation", "forceComputationBackend", "torchVersionRequirement"}
"""``installTorch``'s keywords in every SlicerPyTorch version read (the later ``torchvisionVersionRequirement`` is
left out: an older PyTorch extension would refuse it)."""
SLICER_PYTORCH_EXTENSION_NAME = "PyTorch"


def install_torch_problems(source: str) -> List[str]:
    """What in ``source``'s ``PyTorchUtils.PyTorchUtilsLogic().installTorch(...)`` calls SlicerPyTorch would refuse."""
    calls = [node for node in ast.walk(ast.parse(source))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "installTorch"]
    if not calls:
        return ["no installTorch call found"]
    problems = []
    for call in calls:
        owner = ast.unparse(call.func.value)
        if owner != "PyTorchUtils.PyTorchUtilsLogic()":
            problems.append(f"line {call.lineno}: installTorch called on {owner}, not PyTorchUtils.PyTorchUtilsLogic()")
        if call.args:  # positional: askConfirmation first, then the backend: easy to shift
            problems.append(f"line {call.lineno}: installTorch given {len(call.args)} positional argument(s)")
        unknown = sorted({k.arg for k in call.keywords} - INSTALL_TORCH_KEYWORDS)
        if unknown:
            problems.append(f"line {call.lineno}: installTorch has no keyword {', '.join(unknown)}")
        confirmation = next((k.value for k in call.keywords if k.arg == "askConfirmation"), None)
        if not (isinstance(confirmation, ast.Constant) and confirmation.value is False):
            # the module asks first (one question for every package); the extension's own question would come second
            problems.append(f"line {call.lineno}: installTorch must be given askConfirmation=False")
    return problems


def test_the_pytorch_extension_is_called_as_its_source_defines_it():
    assert install_torch_problems(MODULE_FILE.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("old, new, expected", [
    ("torchVersionRequirement=versionRequirement", "torchRequirement=versionRequirement",
     "installTorch has no keyword torchRequirement"),
    ("installTorch(askConfirmation=False,", "installTorch(None, askConfirmation=False,",
     "installTorch given 1 positional argument(s)"),
    ("installTorch(askConfirmation=False,", "installTorch(askConfirmation=True,",
     "installTorch must be given askConfirmation=False"),
])
def test_the_check_reports_a_call_the_extension_would_refuse(old, new, expected):
    text = MODULE_FILE.read_text(encoding="utf-8")
    assert old in text, old
    problems = install_torch_problems(text.replace(old, new, 1))
    assert len(problems) == 1 and problems[0].endswith(expected), problems


def test_the_extension_depends_on_the_pytorch_extension_by_its_name():
    """``EXTENSION_DEPENDS`` names extensions by their CMake project name (SlicerPyTorch: ``project(PyTorch)``); the
    Extensions Manager installs it with this one, so ``import PyTorchUtils`` works."""
    text = TOP_CMAKE.read_text(encoding="utf-8")
    depends = next(line for line in text.splitlines() if line.startswith("set(EXTENSION_DEPENDS "))
    assert depends.split('"')[1].split(";") == [SLICER_PYTORCH_EXTENSION_NAME]
    assert "import PyTorchUtils" in MODULE_FILE.read_text(encoding="utf-8")
