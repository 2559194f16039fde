"""``.seg.nrrd`` output where ``import slicer`` works but the segmentation classes are missing, as in Slicer's own
``PythonSlicer`` outside the application (``PythonSlicer -m LiverTumorSegLib segment ct.nii.gz -o x.seg.nrrd``).

There Slicer's ``slicer/__init__.py`` imports its library kits but not the module logics, which Slicer adds to
``slicer`` when the application loads its modules (``slicer.modulelogic`` imports the running application); in Slicer
5.6.2 the ``logic`` kit holding ``vtkSlicerApplicationLogic`` failed to import too ("No module named 'logic'", Slicer
forum topic 36784). ``import slicer`` succeeding was taken for "can write .seg.nrrd": the network ran for minutes and
the write then failed with ``AttributeError: module 'slicer' has no attribute ...``. The stand-in below is such a
``slicer``: MRML's core classes, none of the module logics.
"""
import sys
import types

import numpy as np
import pytest

from LiverTumorSegLib import mrml
from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.inference import segmenter
from LiverTumorSegLib.volume import ImageGeometry


@pytest.fixture
def pythonslicer_like(monkeypatch):
    """A ``slicer`` module with the MRML core classes and no module logic (``vtkSlicer*Logic``)."""
    standin = types.ModuleType("slicer")
    for name in ("vtkMRMLScene", "vtkMRMLScalarVolumeNode", "vtkMRMLSegmentationNode",
                 "vtkMRMLSegmentationStorageNode"):
        setattr(standin, name, type(name, (), {}))
    monkeypatch.setitem(sys.modules, "slicer", standin)
    return standin


def test_seg_nrrd_output_is_refused_before_the_work_naming_what_to_do(pythonslicer_like, tmp_path):
    with pytest.raises(InputError) as raised:
        segmenter.check_output_format(tmp_path / "x.seg.nrrd")
    message = str(raised.value)
    assert "x.seg.nrrd" in message
    assert "vtkSlicerApplicationLogic, vtkSlicerColorLogic, vtkSlicerVolumesLogic, vtkSlicerSegmentationsModuleLogic" \
        in message
    assert "PythonSlicer" in message and "-o labels.nii.gz" in message and "pip install slicer-core" in message
    assert segmenter.check_output_format(tmp_path / "x.nii.gz") == ".nii.gz"  # label maps need no slicer


def test_write_seg_nrrd_and_the_headless_scene_say_what_is_missing(pythonslicer_like, tmp_path):
    labels = np.zeros((2, 3, 4), np.uint8)
    labels[1, 1, 1] = 1
    target = tmp_path / "x.seg.nrrd"
    with pytest.raises(InputError, match="lacks vtkSlicerApplicationLogic.*labels.nii.gz"):
        mrml.write_seg_nrrd(target, labels, ImageGeometry(spacing=(1.0, 1.0, 2.0)))
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary left
    with pytest.raises(InputError, match="A Slicer scene cannot be made here: it needs Slicer's segmentation"):
        mrml.make_headless_scene()


def test_without_slicer_the_message_names_slicer_core(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "slicer", None)  # import slicer raises ImportError
    with pytest.raises(InputError, match="needs the slicer-core package: pip install slicer-core"):
        segmenter.check_output_format(tmp_path / "x.seg.nrrd")


def test_slicer_core_has_every_class():
    pytest.importorskip("slicer")
    assert mrml.headless_scene_problem() == ""
    assert segmenter.slicer_available()


def test_only_the_mrml_glue_imports_slicer():
    """The module's child processes (``segment`` to NIfTI, ``measure``, ``followup``) run under PythonSlicer, whose
    ``slicer`` lacks the module logics: the library imports ``slicer`` only in ``mrml.py`` (scenes, ``.seg.nrrd``),
    as docs/slicer.md says."""
    import ast
    from pathlib import Path
    root = Path(mrml.__file__).resolve().parent
    importing = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            if any(name == "slicer" or name.startswith("slicer.") for name in names):
                importing.add(path.relative_to(root).as_posix())
    assert importing == {"mrml.py"}
