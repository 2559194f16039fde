"""Every MRML / VTK / Slicer-logic method the module and the library's MRML glue call was looked up in Slicer's
sources for Slicer 5.6 (Nov 2023); a call added later must be looked up too.

The headless tests run against slicer-core (Slicer 5.13's MRML), so a method that 5.13 has and 5.6 lacks raises
AttributeError only in a user's Slicer (as ``vtkMRMLTableNode.SetUseColumnTitleAsColumnHeader`` did). The names are
read from the sources (no Slicer needed): every attribute whose name starts with a capital letter (VTK/MRML methods,
enum values and events; ALL_CAPS constants excluded), every ``hasattr``/``getattr`` name of that form, and every
``vtk*``/``qMRML*``/``ctk*`` class named. Each name must be in :data:`CHECKED_IN_SLICER_5_6` (with where it was found),
in :data:`GUARDED` (possibly missing in some release, only called behind a ``hasattr``/``getattr`` check) or in
:data:`NOT_SLICER` (Python, Qt or this project's own names).

A name found in a version of Slicer's source from before the 5.6 release that slicer-core 5.13 also has is taken to
be in 5.6, 5.8 and 5.10 (nothing found was removed and added back). Sources, read with the stored-source search
(27 Nov 2026); a hit without a repository is dated by its content:

- ``svn``: Slicer/SlicerGitSVNArchive, Slicer's history up to its 2020 move: vtkMRMLScene.h 3101ab48 (``Clear``,
  ``AddNewNodeByClass``, ...), vtkMRMLNode.h 00926dfc (attributes, node references), vtkMRMLTransformableNode.h
  3101ab48, vtkMRMLStorableNode.h 48d0787e, vtkMRMLVolumeNode.h 3101ab48, vtkMRMLScalarVolumeDisplayNode.h 6ab5bd2c,
  vtkMRMLDisplayNode.h 06b1c5a7, vtkMRMLTableNode.h 48d0787e.
- ``fork2022``: KIC-Crack/cjyx f6f28965, a fork of Slicer from before Slicer PR 6507 (20 Aug 2022: its
  vtkSegmentation.h still takes the old ``ConversionPathType``): vtkSegmentation.h (``GetSegmentIDs()`` without
  argument included), vtkMRMLScene.h (``Clear(int removeSingletons=0)``), vtkMRMLMarkupsNode.h (``AddControlPoint``
  with a vtkVector3d, a double[3] or x, y, z), vtkMRMLColorLegendDisplayNode.h, vtkMRMLApplicationLogic.h.
- ``old``: Slicer/Slicer's stored vtkSegment.h 0290f722 (still "non-master" wording, so before the July 2023
  master-to-source rename) and vtkSegmentationConverter.h 0b8be89a (``VTK_OVERRIDE``, before 2019); headers from
  before the 2022 "master volume" rename (``GenerateEditMask(..., masterVolume)`` beside
  ``GetReferenceImageGeometryReferenceRole`` and ``CreateClosedSurfaceRepresentation``; "Master representation must be
  binary labelmap" beside ``GetSegmentBinaryLabelmapRepresentation(node, id, image, applyParentTransform)``);
  ``ResampleOrientedImageToReferenceOrientedImage(input, reference, output, linear, pad)`` in versions older than its
  transform argument; subject hierarchy headers without ``override`` (2017); vtkMRMLStorageNode with
  ``// Description:`` comments; vtkMRMLSliceCompositeNode and vtkMRMLSliceNode (``JumpSliceByCentering(r, a, s)``) in
  ``NULL``-era versions; vtkMRMLSegmentationDisplayNode's own ``Visibility3D``.
- ``issue``: ``SetCropToMinimumExtent``: Slicer/SlicerGitSVNArchive PR 1278 (Dec 2019) added it; Slicer issue 6102
  (Jan 2022, Slicer 4.13) names its option. ``AddDefaultColorLegendDisplayNode``: Slicer issue 6827 (Feb 2023) calls
  ``slicer.modules.colors.logic().AddDefaultColorLegendDisplayNode(volumeNode)``, as the library does.
- ``vtk``: VTK's own classes (vtkImageData, vtkImageCast, vtkTable, vtkVariant, arrays, vtkMatrix4x4, vtkCollection,
  vtkCommand, vtkLogger); Slicer 5.6 and 5.8 build a VTK 9.2 fork (docs/slicer.md), and these are VTK 9.0 API or older. Not
  looked up in VTK's sources.
- ``api``: MRML API that Slicer's own scripted modules have used since Slicer 4 and 5.13 has; not looked up in a
  dated header (``CreateDefaultDisplayNodes``, ``GetDisplayNode``, ``vtkOrientedImageData.SetImageToWorldMatrix``,
  scene events, the class names).
"""
import ast
import re
from pathlib import Path
from typing import Dict, Set

ROOT = Path(__file__).resolve().parents[2]
CHECKED_FILES = (sorted((ROOT / "LiverTumorSeg").glob("LiverTumorSeg.py"))
                 + sorted((ROOT / "LiverTumorSeg" / "LiverTumorSegModuleLib").glob("*.py"))
                 + [ROOT / "LiverTumorSegLib" / "mrml.py"])

CHECKED_IN_SLICER_5_6: Dict[str, str] = {
    # vtkMRMLScene
    **dict.fromkeys(("AddNode", "AddNewNodeByClass", "RemoveNode", "IsNodePresent", "GetNodeByID", "GetNodesByClass",
                     "GetNthNodeByClass", "GetNumberOfNodesByClass", "GetNumberOfNodes", "GenerateUniqueName"), "svn"),
    "Clear": "svn: Clear(int); fork2022: Clear(int removeSingletons=0), called without argument by the self-test",
    **dict.fromkeys(("StartCloseEvent", "EndCloseEvent", "EndBatchProcessEvent"), "api"),
    # vtkMRMLScene.h 3101ab48: SceneEventType's NodeRemovedEvent, IsBatchProcessing/IsClosing/IsImporting (the change
    # report clean-up, mrml.remove_orphan_change_reports)
    **dict.fromkeys(("NodeRemovedEvent", "IsBatchProcessing", "IsClosing", "IsImporting"), "svn"),
    # vtkMRMLNode and its storable / transformable / displayable subclasses
    **dict.fromkeys(("SetAttribute", "GetAttribute", "SetName", "GetName", "GetID", "SetNodeReferenceID",
                     "GetNodeReferenceID", "GetNodeReference", "RemoveNodeReferenceIDs", "Modified"), "svn"),
    **dict.fromkeys(("AddNodeReferenceID", "HasNodeReferenceID", "GetNumberOfNodeReferences", "GetNthNodeReferenceID",
                     "GetScene"), "svn"),
    **dict.fromkeys(("SetAndObserveTransformNodeID", "GetTransformNodeID", "GetParentTransformNode"), "svn"),
    **dict.fromkeys(("GetStorageNode", "SetAndObserveStorageNodeID", "GetModifiedSinceRead"), "svn"),
    **dict.fromkeys(("CreateDefaultDisplayNodes", "GetDisplayNode"), "api"),
    # vtkMRMLTextNode (the change table's report): Slicer/SlicerGitSVNArchive f3819d38 Libs/MRML/Core/vtkMRMLTextNode.h;
    # Slicer/Slicer's stored header 0c78d50f has the same SetText(const std::string&, int encoding=-1) and
    # vtkGetMacro(Text, std::string)
    **dict.fromkeys(("vtkMRMLTextNode", "SetText", "GetText"), "svn"),
    # vtkMRMLTransformNode
    **dict.fromkeys(("IsTransformToWorldLinear", "GetMatrixTransformToWorld"), "old"),
    "IsLinear": "svn: vtkMRMLTransformNode.h's 'virtual int IsLinear()', 1 if linear (Slicer 4's linear and "
                "non-linear transform node headers)",
    # vtkMRMLVolumeNode, vtkMRMLScalarVolumeDisplayNode, vtkMRMLDisplayNode
    **dict.fromkeys(("GetIJKToRASMatrix", "SetIJKToRASMatrix", "GetImageData", "SetAndObserveImageData"), "svn"),
    **dict.fromkeys(("AutoWindowLevelOff", "SetWindowLevelMinMax", "SetLowerThreshold", "SetUpperThreshold",
                     "ApplyThresholdOn"), "svn"),
    **dict.fromkeys(("SetAndObserveColorNodeID", "SetColor", "SetSelectedColor", "SetVisibility"), "svn"),
    "SetVisibility3D": "old",
    # storage nodes
    **dict.fromkeys(("SetFileName", "GetFileName", "ReadData", "WriteData", "SetUseCompression"), "old"),
    "SetCropToMinimumExtent": "issue",
    # vtkMRMLTableNode (the column-title API is in GUARDED)
    **dict.fromkeys(("SetAndObserveTable", "GetTable", "SetLocked", "GetLocked", "SetUseColumnNameAsColumnHeader",
                     "SetColumnDescription", "SetColumnUnitLabel"), "svn"),
    # vtkMRMLSegmentationNode, vtkSlicerSegmentationsModuleLogic
    **dict.fromkeys(("GetSegmentation", "GetReferenceImageGeometryReferenceRole", "CreateClosedSurfaceRepresentation",
                     "GetSegmentBinaryLabelmapRepresentation"), "old"),
    # vtkSegmentation
    **dict.fromkeys(("GetSegment", "GetSegmentIDs", "GetNumberOfSegments", "GetNthSegmentID", "AddSegment",
                     "RemoveSegment", "SeparateSegmentLabelmap", "SetConversionParameter", "GetConversionParameter"),
                  "fork2022"),
    # vtkSegment (also SetName, GetName, SetColor above)
    **dict.fromkeys(("SetTag", "GetTag", "GetTerminologyEntryTagName", "GetRepresentation", "GetColor",
                     "AddRepresentation", "SetLabelValue", "GetLabelValue"), "old"),
    # vtkSegmentationConverter, vtkOrientedImageData(Resample)
    **dict.fromkeys(("GetBinaryLabelmapRepresentationName", "GetClosedSurfaceRepresentationName",
                     "GetReferenceImageGeometryParameterName", "SerializeImageGeometry",
                     "ResampleOrientedImageToReferenceOrientedImage", "GetImageToWorldMatrix"), "old"),
    "SetImageToWorldMatrix": "api",
    # markups, colour legend, subject hierarchy, slice views
    "AddControlPoint": "fork2022: the vtkVector3d overload the library uses (also in NULL-era versions)",
    **dict.fromkeys(("AddDefaultColorLegendDisplayNode",), "issue"),
    **dict.fromkeys(("SetTitleText", "SetLabelFormat"), "fork2022"),
    **dict.fromkeys(("GetSubjectHierarchyNode", "GetSceneItemID", "GetItemByDataNode", "GetItemParent",
                     "SetItemParent", "CreateItem"), "old"),
    **dict.fromkeys(("GetForegroundVolumeID", "SetForegroundVolumeID", "GetBackgroundVolumeID", "SetBackgroundVolumeID",
                     "SetForegroundOpacity", "JumpSliceByCentering"), "old"),
    # application and module logics (headless scene only: make_headless_scene)
    **dict.fromkeys(("SetMRMLScene", "SetMRMLApplicationLogic", "SetModuleLogic"), "fork2022"),
    # VTK's own classes
    **dict.fromkeys(("GetAddressAsString", "GetMTime", "GetClassName", "IsA", "GetPointData", "GetScalars",
                     "SetScalars", "GetDimensions", "SetDimensions", "GetExtent", "SetExtent",
                     "GetNumberOfComponents", "SetNumberOfComponents", "SetNumberOfTuples", "InsertNextValue",
                     "AddColumn", "GetColumn", "GetColumnName", "GetNumberOfColumns", "GetNumberOfRows", "GetValue",
                     "GetValueByName", "ToString", "ToDouble", "ToInt", "GetElement", "SetElement",
                     "GetNumberOfItems", "GetItemAsObject", "ModifiedEvent", "GetCurrentVerbosityCutoff",
                     "SetStderrVerbosity", "GetScalarType", "GetScalarRange", "SetInputData", "SetOutputScalarType",
                     "Update", "GetOutput", "AddObserver"), "vtk"),
    # classes named
    **dict.fromkeys(("vtkMRMLScene", "vtkMRMLNode", "vtkMRMLScalarVolumeNode", "vtkMRMLLabelMapVolumeNode",
                     "vtkMRMLSegmentationNode", "vtkMRMLSegmentationStorageNode", "vtkMRMLVolumeArchetypeStorageNode", "vtkMRMLTableNode",
                     "vtkMRMLMarkupsLineNode", "vtkMRMLSliceNode", "vtkMRMLSliceCompositeNode",
                     "vtkMRMLSubjectHierarchyNode", "vtkSegment", "vtkSegmentationConverter", "vtkOrientedImageData",
                     "vtkOrientedImageDataResample", "vtkSlicerApplicationLogic", "vtkSlicerColorLogic",
                     "vtkSlicerVolumesLogic", "vtkSlicerSegmentationsModuleLogic", "qMRMLNodeComboBox",
                     "qMRMLTableView", "ctkCollapsibleButton"), "api"),
    # ctkPathLineEdit and its Filter value Files: commontk/CTK ctkPathLineEdit.h 03bf8478 (C++98, older than 5.6's
    # CTK), and Slicer's parameterNodeWrapper guiConnectors.py (5.2 and later) binds a ctkPathLineEdit (see
    # test_slicer_module_qt_api.py, source ``ctkpath``)
    **dict.fromkeys(("ctkPathLineEdit", "Files"), "ctkpath: commontk/CTK ctkPathLineEdit.h 03bf8478"),
    **dict.fromkeys(("vtkCommand", "vtkDoubleArray", "vtkFloatArray", "vtkImageCast", "vtkImageData", "vtkIntArray",
                     "vtkLogger",
                     "vtkMatrix4x4", "vtkStringArray", "vtkTable", "vtkVector3d"), "vtk"),
}
"""Name -> where it was found in a Slicer source from before 5.6 (the keys of the module docstring's list)."""

GUARDED: Dict[str, str] = {
    # Slicer PR 7283 (reviewed 25 Oct 2023; whether 5.6 has it was not read)
    "SetUseColumnTitleAsColumnHeader": "SetUseColumnTitleAsColumnHeader",
    "GetColumnTitle": "SetUseColumnTitleAsColumnHeader",
    "SetColumnTitle": "SetColumnTitle",
    # master -> source rename (Slicer Preview, July 2023); the Master names are the fallback for earlier releases
    "GetSourceRepresentationName": "GetSourceRepresentationName",
    "GetMasterRepresentationName": "GetSourceRepresentationName",
    "SetSourceRepresentationName": "SetSourceRepresentationName",
    "SetMasterRepresentationName": "SetSourceRepresentationName",
    "InvalidateNonSourceRepresentations": "InvalidateNonSourceRepresentations",
    "InvalidateNonMasterRepresentations": "InvalidateNonSourceRepresentations",
    # vtkSegment (present in the 'old' vtkSegment.h too)
    "SetNameAutoGenerated": "SetNameAutoGenerated",
    "SetColorAutoGenerated": "SetNameAutoGenerated",
    # vtkMRMLVolumeArchetypeStorageNode
    "GetCenterImage": "GetCenterImage",
    "GetUseOrientationFromFile": "GetUseOrientationFromFile",
}
"""Name -> the name whose ``hasattr``/``getattr`` check guards the call, in the same file."""

NOT_SLICER = {
    "CalledProcessError", "ChildMessage", "CrashExit", "DependencyDeclinedError", "DependencyError", "FollowupJob",
    "Handler", "LineBuffer", "Lock", "LogRecord",
    "MeasureJob", "NotRunning", "PackageNotFoundError", "Parameter", "Popen", "PyTorchUtilsLogic", "QCheckBox",
    "QFileDialog",
    "QFormLayout", "QLineEdit", "QLabel", "QProcess", "QPushButton", "QTimer", "SegmentationJob", "SegmentationOptions",
    "SegmentationOutcome", "SeparateChannels", "Signals", "SkipTest", "SubprocessError", "TemporaryDirectory",
    "TimeoutExpired",
}
"""Python, Qt and this project's names that the rule below also picks up."""

_CLASS_NAME = re.compile(r"(vtk|qMRML|ctk)[A-Z]\w*")


def slicer_api_names(source: str) -> Dict[str, Set[str]]:
    """``{name: names whose hasattr/getattr check appears}`` of every MRML/VTK-like name in Python ``source``: capital-
    initial attributes (not ALL_CAPS), ``hasattr``/``getattr`` names of that form, ``vtk*``/``qMRML*``/``ctk*``
    classes and ``"vtkMRML..."`` class-name strings. The value set (same for every name) lists the guard names."""
    names, guards = set(), set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            if (node.attr[:1].isupper() and not node.attr.isupper()) or _CLASS_NAME.fullmatch(node.attr):
                names.add(node.attr)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("hasattr", "getattr"):
            if len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
                name = node.args[1].value
                if name[:1].isupper() and not name.isupper():
                    names.add(name)
                    guards.add(name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"vtkMRML\w+", node.value):
            names.add(node.value)
    return {name: guards for name in names}


def unchecked_names(found: Dict[str, Set[str]]) -> Set[str]:
    """The names of ``found`` (see :func:`slicer_api_names`) nobody looked up for Slicer 5.6."""
    return set(found) - set(CHECKED_IN_SLICER_5_6) - set(GUARDED) - NOT_SLICER


def unguarded_names(found: Dict[str, Set[str]]) -> Set[str]:
    """The :data:`GUARDED` names of ``found`` whose guard check is not in the same source."""
    return {name for name, guards in found.items() if name in GUARDED and GUARDED[name] not in guards}


def _found_per_file() -> Dict[Path, Dict[str, Set[str]]]:
    return {path: slicer_api_names(path.read_text(encoding="utf-8")) for path in CHECKED_FILES}


def test_every_mrml_name_the_module_uses_was_looked_up_for_slicer_5_6():
    assert len(CHECKED_FILES) >= 8 and all(path.is_file() for path in CHECKED_FILES)
    found = _found_per_file()
    unchecked = {path.name: sorted(unchecked_names(names)) for path, names in found.items() if unchecked_names(names)}
    assert not unchecked, (f"not yet looked up in Slicer 5.6's sources (then add to CHECKED_IN_SLICER_5_6, or guard it "
                           f"with hasattr and add to GUARDED): {unchecked}")
    unguarded = {path.name: sorted(unguarded_names(names)) for path, names in found.items() if unguarded_names(names)}
    assert not unguarded, f"called without its hasattr/getattr check in the same file: {unguarded}"


def test_the_lists_name_only_what_is_used():
    """A name no longer called comes off the lists, so that they stay the record of what the code relies on."""
    used = set().union(*(set(names) for names in _found_per_file().values()))
    assert {"AddControlPoint", "GetSegmentIDs", "Clear", "SetUseColumnTitleAsColumnHeader"} <= used
    stale = (set(CHECKED_IN_SLICER_5_6) | set(GUARDED) | NOT_SLICER) - used
    assert not stale, f"listed but no longer used: {sorted(stale)}"
    assert not set(CHECKED_IN_SLICER_5_6) & set(GUARDED), "a name is either looked up for 5.6 or guarded"


def test_a_new_call_and_a_dropped_guard_are_reported():
    new_call = "node.SetBrandNewThing(1)\nimage = slicer.vtkMRMLBrandNewNode()\nscene.AddNode(node)\n"
    assert unchecked_names(slicer_api_names(new_call)) == {"SetBrandNewThing", "vtkMRMLBrandNewNode"}
    assert unchecked_names(slicer_api_names("x = SIGINT\ny = module.CONSTANT_NAME\n")) == set()
    guarded = ("if hasattr(node, 'SetUseColumnTitleAsColumnHeader'):\n"
               "    node.SetUseColumnTitleAsColumnHeader(True)\n    node.GetColumnTitle('a')\n")
    assert unguarded_names(slicer_api_names(guarded)) == set()
    assert unguarded_names(slicer_api_names("node.SetUseColumnTitleAsColumnHeader(True)\n")) == \
        {"SetUseColumnTitleAsColumnHeader"}
