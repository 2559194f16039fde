"""One segmentation run of the Slicer module: the CT goes to a child process, the results come back into MRML.

:class:`SegmentationJob` is the Logic's run, Qt-free so the headless tests run exactly this code:

1. ``start()`` (main thread): hands the CT to the child - the node's own file when the node is unchanged since
   it was read, has no parent transform and is a format the library reads; otherwise a temporary NIfTI written
   from the node (world geometry) - and starts ``python -m LiverTumorSegLib segment ... --progress json``
   with a process runner (:mod:`.childprocess`).
   The settings are the library's own :class:`~LiverTumorSegLib.inference.options.SegmentationOptions` (the
   panel builds one; ``to_cli_args`` makes the child's arguments).
2. ``poll()`` (main thread; in Slicer from a ``qt.QTimer``): forwards progress; when the child has ended, loads
   the labels, the lesion report and (optionally) the tumor probability map into the scene and returns a
   :class:`SegmentationOutcome`. Returns ``None`` while running.
3. ``cancel()``: kills the child and its children at once; the scene is left as it was.

Temporary files (input copy, outputs) live in one folder that is removed in every outcome. Nothing runs in a
Python thread: Slicer's main thread holds the GIL while Qt idles, which starves Python worker threads.
"""
import collections
import os
import sys
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence

import numpy as np

from LiverTumorSegLib import mrml
from LiverTumorSegLib.errors import InputError, LiverTumorSegError, OutputExistsError
from LiverTumorSegLib.io import GEOMETRY_TOLERANCE

from . import childprocess, panel_text
from .childjob import CANCELLED, DONE, FAILED, ChildJob, ChildResultError, ended_text  # noqa: F401 - re-exported
from .childjob import check_shown_in_scratch_scene, read_result_json, require_node_of_class, require_scene_node
from .childjob import last_error_line, reusable_table
from .childjob import unusable_result

from LiverTumorSegLib.inference.device import DEVICE_CHOICES as DEVICES  # noqa: F401 - one list for all callers
from LiverTumorSegLib.inference.options import SegmentationOptions, segment_command_args
from LiverTumorSegLib.inference.options import override_window  # noqa: F401 - re-exported for scripts

OTHER_OUTPUT_LINES = 200
"""How many of the child's stray stdout lines (not its JSON messages) a run keeps; its error details show the last
20."""



CHILD_CANCELLED_ERROR = "cancelled"
"""The ``--progress json`` error line of a child that a SIGINT, SIGTERM or SIGHUP stopped (``segment``'s
``_SignalsCancel``); the panel's Cancel kills the child instead, so this one came from elsewhere."""


def stopped_from_outside_text(code: Optional[int]) -> str:
    """What the panel says of a child that ended with :data:`CHILD_CANCELLED_ERROR`: 'Failed: cancelled' read as if
    the user had pressed Cancel, and said neither who stopped the run nor what to do."""
    return (f"The segmentation process was stopped by a signal from outside this panel (exit code {code}: a SIGINT, "
            f"SIGTERM or SIGHUP, e.g. from a task manager, 'kill' or the session ending) before it finished; the "
            f"scene was not changed. Segment again.")


class SegmentationProcessError(LiverTumorSegError):
    """The segmentation process reported an error the user can fix (its one-line message)."""


def child_arguments(input_path: str, labels_path: str, report_path: str, probability_path: str,
                    options: SegmentationOptions, slice_thickness_mm: Optional[float] = None) -> List[str]:
    """Arguments after the Python executable: ``-m LiverTumorSegLib`` + the library's own
    ``segment_command_args`` (``segment INPUT -o LABELS [--slice-thickness-mm MM] --report R [settings from
    options.to_cli_args] [--probabilities P when options.probabilities] --progress json``): one definition of every
    flag. ``slice_thickness_mm``: :func:`slice_thickness_for_child`'s (the DICOM SliceThickness, which the
    handed-over NIfTI does not carry)."""
    return ["-m", "LiverTumorSegLib"] + segment_command_args(
        input_path, labels_path, options, report_path=report_path,
        probability_path=probability_path if options.probabilities else None, progress="json",
        slice_thickness_mm=slice_thickness_mm)


class SegmentationOutcome:
    """How a run ended: ``kind`` (DONE | CANCELLED | FAILED), the nodes written (segmentation, lesion table,
    tumor probability volume or None), the lesion report, the error (failed) with details (the child's
    stderr tail or a traceback), the wall time in seconds, the device the child used and the report's warnings
    (the input volume named by its node name, :func:`panel_text.result_warnings`)."""

    def __init__(self, kind: str, segmentation_node: Any = None, table_node: Any = None,
                 report: Optional[Dict[str, Any]] = None, error: Optional[BaseException] = None,
                 details: str = "", seconds: float = 0.0, probability_node: Any = None, device: str = "",
                 warnings: Optional[List[str]] = None) -> None:
        self.kind = kind
        self.segmentation_node = segmentation_node
        self.table_node = table_node
        self.report = report or {}
        self.error = error
        self.details = details
        self.seconds = seconds
        self.probability_node = probability_node
        self.device = device
        self.warnings = list(warnings or [])


# --- handing the CT to the child ---------------------------------------------------------------------

def usable_storage_file(volume_node: Any) -> Optional[str]:
    """The node's own file when the child may read it instead of a copy, else ``None``.

    Usable: a single file the library reads (NIfTI, NRRD, MetaImage), the node not modified since it was
    read, no parent transform, read with the file's own origin and orientation (not "Center volume", not
    orientation ignored), and the file's header, read as the child will read it, giving the node's grid: then
    the file holds the node's voxels in the node's own world frame. Otherwise the
    labels would still map back voxel for voxel, but the report's RAS points (lesion centroids, axes, the
    view jump) would be in the file's frame, once 300 mm off for a centered volume."""
    from LiverTumorSegLib.fileutil import full_suffix
    from LiverTumorSegLib.io import READ_SUFFIXES
    storage = volume_node.GetStorageNode()
    if storage is None or volume_node.GetParentTransformNode() is not None:
        return None
    if getattr(storage, "GetCenterImage", lambda: 0)() or not getattr(storage, "GetUseOrientationFromFile",
                                                                        lambda: 1)():
        return None
    path = storage.GetFileName()
    if not path or not os.path.isfile(path) or full_suffix(path).lower() not in READ_SUFFIXES:
        return None
    if sys.platform == "win32" and not path.isascii() and full_suffix(path).lower() not in (".nii", ".nii.gz"):
        return None  # the child would read it with SimpleITK, which cannot open such a path on Windows
    if volume_node.GetModifiedSinceRead():
        return None
    # a geometry changed from Python (SetIJKToRASDirectionMatrix, ...) does not count as modified, and Slicer
    # (ITK) and the child (nibabel) may read a NIfTI whose sform and qform disagree differently: hand over the
    # file only when the child will read the node's own grid from it
    from LiverTumorSegLib.errors import LiverTumorSegError
    from LiverTumorSegLib.io import read_header_geometry
    try:
        file_geometry, file_shape = read_header_geometry(path)
        node_geometry, node_shape = volume_grid(volume_node)
    except (LiverTumorSegError, ImportError):
        return None
    if not same_grid(file_geometry, file_shape, node_geometry, node_shape):
        return None
    return str(path)


LOADING_RESULT_STAGE = "Loading the result into the scene..."
"""The progress stage reported when the child has ended well and its result is read into the scene (on the main
thread, which then handles no events: a large CT's segments and 3D surface take seconds)."""

HANDOVER_CT_NAME = "ct.nii"
"""The child's copy of a CT: uncompressed NIfTI, read in the child by nibabel (Python's own file calls). SimpleITK,
which reads NRRD, cannot open a path with non-ASCII characters on Windows unless the process runs in a UTF-8
code page (SimpleITK issues 795, 1255; its FAQ), and the temporary folder lies under the user's profile
(C:\\Users\\<a name with an accent>\\...): every segmentation of such a user would fail with 'file does
not exist'."""


def writable_image(image: Any) -> Any:
    """``image`` (vtkImageData) itself when Slicer's volume writer takes its voxel type, else a copy in the narrowest
    type that holds its values (int16, int32, else float64). The writer knows no 64-bit or signed 8-bit integers: a
    CT made by a script with numpy's default int64 (``slicer.util.addVolumeFromArray(a.astype(int))``) failed with
    'check free disk space' (vtkITKImageWriter: Unknown output ScalarType)."""
    import vtk

    if image is None or image.GetScalarType() in (vtk.VTK_UNSIGNED_CHAR, vtk.VTK_SHORT, vtk.VTK_UNSIGNED_SHORT,
                                                  vtk.VTK_INT, vtk.VTK_UNSIGNED_INT, vtk.VTK_FLOAT, vtk.VTK_DOUBLE):
        return image
    low, high = image.GetScalarRange()
    cast = vtk.vtkImageCast()
    cast.SetInputData(image)
    cast.SetOutputScalarType(vtk.VTK_SHORT if -32768 <= low and high <= 32767 else
                             vtk.VTK_INT if -2 ** 31 <= low and high < 2 ** 31 else vtk.VTK_DOUBLE)
    cast.Update()
    return cast.GetOutput()


def write_temporary_ct(volume_node: Any, path: str) -> str:
    """Write the node's voxels with its world geometry (parent transforms applied) to an uncompressed file
    (``path``'s extension picks the format: NIfTI for the child, :data:`HANDOVER_CT_NAME`), through a private
    scene (the user's scene is not touched). Returns ``path``."""
    import slicer
    ijk_to_ras = mrml.world_ijk_to_ras(volume_node)  # refuses non-linear transforms with a message
    scene = slicer.vtkMRMLScene()
    copy = slicer.vtkMRMLScalarVolumeNode()
    scene.AddNode(copy)
    copy.SetAndObserveImageData(writable_image(volume_node.GetImageData()))  # shared, not copied, where writable
    copy.SetIJKToRASMatrix(mrml._numpy_to_matrix(ijk_to_ras))
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    storage.SetUseCompression(False)
    storage.SetFileName(str(path))
    try:
        if not storage.WriteData(copy):
            raise InputError(f"Could not write the CT to the temporary file '{path}'; check free disk space.")
    finally:
        copy.SetAndObserveImageData(None)
        scene.Clear(1)
    return str(path)


def hand_over_segmentation(segmentation_node: Any, volume_node: Any, labels_path: str, ct_path: str) -> List[str]:
    """Main thread: ``[labels path, CT path]`` for a child that reads a segmentation with its CT. The Liver / Liver
    tumor segments become a 0/1/2 label map on the CT node's grid (world geometry; tumor over liver where they
    overlap) written to ``labels_path``; the CT is the node's own file when usable, else written to ``ct_path``."""
    from LiverTumorSegLib.io import write_label_map

    geometry, shape_zyx = volume_grid(volume_node)
    labels = mrml.segmentation_to_labels(segmentation_node, geometry, shape_zyx)
    written = write_label_map(labels_path, labels, geometry)
    return [str(written), usable_storage_file(volume_node) or write_temporary_ct(volume_node, ct_path)]


LESION_REPORT_KEYS = ("liver_volume_ml", "tumor_volume_ml", "tumor_burden_percent", "lesions")
"""The keys of a lesion report (docs/report_format.md) that the lesion table and the panel's summary are made of:
``segment`` and ``measure`` always write them."""


def check_lesion_report(report: Dict[str, Any], what: str, name: str = "report.json") -> Dict[str, Any]:
    """``report`` (the child's lesion report, file ``name``) when the lesion table, the panel's summary and its
    warnings can be made from it; else :class:`~.childjob.ChildResultError`, raised before the scene is changed. A
    report without its liver volume was "done" with "No result yet." in the panel, and one with a lesion volume as
    text failed after the user's segments had been replaced. The table is made in a scene of its own to find out."""
    missing = [key for key in LESION_REPORT_KEYS if key not in report]
    if missing:
        raise unusable_result(what, name, f"no {', '.join(missing)}")
    check_shown_in_scratch_scene(what, name, lambda scene: mrml.create_lesion_table_node(scene, report),
                                 lambda: panel_text.summary_text(report, panel_text.result_warnings(report)))
    return report


def apply_result(scene: Any, labels: np.ndarray, report: Dict[str, Any], geometry: Any,
                 input_volume_node: Any = None, segmentation_node: Any = None, table_node: Any = None,
                 replace_existing: bool = True, show_3d: bool = True, name: str = "",
                 remove_segment_ids: Sequence[str] = ()) -> Any:
    """Main thread: write ``labels`` ((z, y, x) 0/1/2 on ``geometry``, LPS world) into a segmentation node and
    ``report`` into a lesion table node. Returns ``(segmentation_node, table_node)``. ``remove_segment_ids``: segments
    of ``segmentation_node`` replaced with the result (pieces split off an earlier result; see
    ``LiverTumorSegLib.mrml.labels_to_segmentation_node``).

    ``table_node`` is refilled only when it is the table made for ``segmentation_node``
    (:func:`LiverTumorSegLib.mrml.lesion_table_owned_by`); otherwise the scene's table made for it is refilled, and
    only without one is a new table made, so another segmentation's (another CT's) lesion table, and a copy the user
    made of this one's, is never overwritten.
    A script's run into the same segmentation without ``table_node`` made a new table each time (30 runs, 30 tables
    linked to the one segmentation). New nodes get names no other node has ("CT liver
    segmentation_1" for a second result of the CT), as Slicer names new nodes: two results of one CT (a run into a
    new segmentation with other settings) were both "CT liver segmentation", with two "CT liver lesions" tables, which
    the node lists and the Compare selectors could not tell apart."""
    base = name or (input_volume_node.GetName() if input_volume_node is not None else "CT")
    table_node = reusable_table(scene, table_node, lambda table: mrml.lesion_table_owned_by(table, segmentation_node),
                                search_scene=segmentation_node is not None)
    new_segmentation, new_table = segmentation_node is None, table_node is None
    segmentation_node = mrml.labels_to_segmentation_node(
        scene, labels, geometry, segmentation_node=segmentation_node, reference_volume_node=input_volume_node,
        replace_existing=replace_existing, name=scene.GenerateUniqueName(f"{base} liver segmentation"),
        remove_segment_ids=remove_segment_ids)
    table_node = mrml.create_lesion_table_node(scene, report, table_node=table_node,
                                               name=scene.GenerateUniqueName(f"{base} liver lesions"))
    mrml.link_lesion_table(table_node, segmentation_node)
    for node, new in ((segmentation_node, new_segmentation), (table_node, new_table)):
        if new:  # a node the user chose stays where the user keeps it
            mrml.place_beside(scene, node, input_volume_node)
    if show_3d:
        mrml.show_segmentation_in_3d(segmentation_node)
    return segmentation_node, table_node


def source_volume(segmentation_node: Any) -> Any:
    """The volume a segmentation was made on (its reference-geometry node), or None when it records none."""
    return segmentation_node.GetNodeReference(segmentation_node.GetReferenceImageGeometryReferenceRole())


def output_for_input(input_volume_node: Any, segmentation_node: Any) -> Any:
    """The output segmentation to keep selected when the panel's input CT becomes ``input_volume_node``:
    ``segmentation_node`` if it was made from (or has no recorded source volume other than) that CT, else None
    ("Create new"), so that a second CT does not by default overwrite the first CT's result."""
    if segmentation_node is None or input_volume_node is None:
        return segmentation_node
    source = source_volume(segmentation_node)
    if source is None or source.GetID() == input_volume_node.GetID():
        return segmentation_node
    return None


def other_source_volume_name(segmentation_node: Any, volume_node: Any) -> str:
    """The name of the CT ``segmentation_node`` records as the one it was made on when that is not ``volume_node``;
    '' when it is, when it records none, or when either is missing."""
    if segmentation_node is None or volume_node is None or source_volume(segmentation_node) is None:
        return ""
    if output_for_input(volume_node, segmentation_node) is segmentation_node:
        return ""
    return source_volume(segmentation_node).GetName() or ""


def require_made_on(segmentation_node: Any, volume_node: Any, purpose: str) -> None:
    """InputError when ``segmentation_node`` records another CT than ``volume_node`` as the one it was made on
    (``purpose``: what reading it on the wrong CT would spoil, e.g. "to measure it"). A segmentation that records
    no CT is taken as made on any."""
    if output_for_input(volume_node, segmentation_node) is segmentation_node:
        return
    source = source_volume(segmentation_node)
    raise InputError(f"'{segmentation_node.GetName()}' was made on the CT '{source.GetName()}', not on "
                     f"'{volume_node.GetName()}'. Select '{source.GetName()}' as its CT {purpose}: on another CT its "
                     "lesions would get that CT's HU, or not fit its grid.")


def first_plain_scalar_volume(volume_nodes: Any) -> Any:
    """The first node of ``volume_nodes`` whose class is exactly vtkMRMLScalarVolumeNode (what the input selector
    lists: its showChildNodeTypes is off), not a label map, vector, DTI or DWI volume, nor a tumor probability map this
    module made (:func:`not_a_ct_reason`); None if there is none."""
    return next((node for node in volume_nodes if node.GetClassName() == "vtkMRMLScalarVolumeNode"
                 and not not_a_ct_reason(node)), None)


DICOM_INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"
"""The attribute Slicer's DICOM module gives a volume it loaded: the SOP Instance UIDs of its files, space-separated."""
DICOM_MODALITY_TAG = "0008,0060"
DICOM_MODALITY_LOOKUPS = 3
"""How many of a volume's instance UIDs are asked for their Modality before it is taken as unknown (every file of a
series has the same; the first may be missing from the database)."""


def dicom_modality(volume_node: Any) -> str:
    """The DICOM Modality (0008,0060; upper case: 'CT', 'MR', 'PT', ...) of the series ``volume_node`` was loaded from
    by Slicer's DICOM module, from ``slicer.dicomDatabase`` by the node's :data:`DICOM_INSTANCE_UIDS_ATTRIBUTE`; ''
    when unknown: a volume not loaded from DICOM, no DICOM database (the DICOM module not loaded), an instance not in
    it, or any error asking it. The child reads the temporary file written from the node, which has no Modality."""
    uids = str(volume_node.GetAttribute(DICOM_INSTANCE_UIDS_ATTRIBUTE) or "").split()
    if not uids:
        return ""
    try:
        import slicer
        database = getattr(slicer, "dicomDatabase", None)
        if database is None:
            return ""
        for uid in uids[:DICOM_MODALITY_LOOKUPS]:
            modality = str(database.instanceValue(uid, DICOM_MODALITY_TAG) or "").strip().upper()
            if modality:
                return modality
    except Exception:  # a database closed or a stand-in without instanceValue: the values are judged instead
        return ""
    return ""


DICOM_SLICE_THICKNESS_TAG = "0018,0050"
DICOM_SLICE_THICKNESS_LOOKUPS = 8
"""How many of a volume's instances, evenly spread from the first to the last, are asked for their SliceThickness:
a tag the database has not cached is read from the instance's file on Slicer's main thread, and a 500-slice series
asked instance by instance would read 500 headers there for a value a series nearly always holds once."""


def spread_instance_uids(uids: List[str], count: int) -> List[str]:
    """At most ``count`` of ``uids``, evenly spread, the first and the last among them (all of them when fewer)."""
    if len(uids) <= count:
        return list(uids)
    picks = sorted({round(i * (len(uids) - 1) / (count - 1)) for i in range(count)})
    return [uids[i] for i in picks]


def dicom_slice_thickness_mm(volume_node: Any) -> Optional[float]:
    """The SliceThickness (0018,0050, mm) of the DICOM series ``volume_node`` was loaded from by Slicer's DICOM module,
    from ``slicer.dicomDatabase`` by the node's :data:`DICOM_INSTANCE_UIDS_ATTRIBUTE` (at most
    :data:`DICOM_SLICE_THICKNESS_LOOKUPS` instances asked, evenly spread over the series, the largest positive value
    kept, as the command line's DICOM reader keeps the largest of all), for RECIST's measurable minimum (twice
    it above 5 mm: 7 mm slices every 5 mm ask 14 mm, not the spacing's 10 mm). Where no instance gives one at the
    top level, an enhanced multi-frame file keeps it in its Pixel Measures functional groups, which the database's
    lookup does not read: then the first instance's file (``fileForInstance``) is read, its header only, for them
    (:func:`functional_groups_slice_thickness_mm`; one file at most, on the main thread). None when unknown: a
    volume not loaded from DICOM, no DICOM database, no positive finite value, or any error asking it. The child
    reads the temporary NIfTI written from the node, which records no thickness: the job hands it over as
    ``--slice-thickness-mm`` (:func:`slice_thickness_for_child`)."""
    uids = str(volume_node.GetAttribute(DICOM_INSTANCE_UIDS_ATTRIBUTE) or "").split()
    if not uids:
        return None
    values = []
    try:
        import slicer
        database = getattr(slicer, "dicomDatabase", None)
        if database is None:
            return None
        for uid in spread_instance_uids(uids, DICOM_SLICE_THICKNESS_LOOKUPS):
            text = str(database.instanceValue(uid, DICOM_SLICE_THICKNESS_TAG) or "").strip()
            try:
                value = float(text.split("\\")[0]) if text else float("nan")
            except ValueError:
                continue
            if np.isfinite(value) and value > 0:
                values.append(value)
    except Exception:  # a database closed or a stand-in without instanceValue: the slice spacing is taken instead
        return None
    if values:
        return max(values)
    # an enhanced CT: the panel took the spacing (7 mm frames every 5 mm measurable from 10 mm, the CLI's 14 mm)
    return functional_groups_slice_thickness_mm(database, uids[0])


def functional_groups_slice_thickness_mm(database: Any, uid: str) -> Optional[float]:
    """The SliceThickness (mm) in the Pixel Measures functional groups of the DICOM file of instance ``uid`` (an
    enhanced multi-frame CT keeps it there, none at the top level), the largest positive one, as the command line
    reads it (:func:`LiverTumorSegLib.io.dicom.functional_groups_slice_thickness_mm`): the file ``database`` (the
    DICOM database) names for it (``fileForInstance``) is read once, without its pixels. None for a file without
    functional groups or a value there, no file, or any error reading it."""
    try:
        path = str(database.fileForInstance(uid) or "")
        if not path or not os.path.isfile(path):
            return None
        import pydicom

        from LiverTumorSegLib.io.dicom import functional_groups_slice_thickness_mm as from_dataset

        dataset = pydicom.dcmread(path, stop_before_pixels=True, force=True,
                                  specific_tags=["NumberOfFrames", "SharedFunctionalGroupsSequence",
                                                 "PerFrameFunctionalGroupsSequence"])
        return from_dataset(dataset)
    except Exception:  # a stand-in without fileForInstance, no pydicom, a damaged file: the spacing is taken
        return None


def slice_thickness_for_child(volume_node: Any, geometry: Any) -> Optional[float]:
    """The ``--slice-thickness-mm`` (mm) of the child that segments or measures ``volume_node`` (world ``geometry``,
    as handed over): its DICOM SliceThickness (:func:`dicom_slice_thickness_mm`) where the command line would take it
    for the DICOM series read itself: the slices (voxel axis k, kept in the handed-over file) axial and not thinner
    than their spacing (:func:`~LiverTumorSegLib.metrics.recist.recist_slice_thickness`); else None (the child takes
    the spacing, and says nothing of a value the user never gave)."""
    from LiverTumorSegLib.metrics.recist import (SLICE_THICKNESS_FROM_DICOM, SLICE_THICKNESS_MAX_MM,
                                                 recist_slice_thickness)

    thickness_mm = dicom_slice_thickness_mm(volume_node)
    if thickness_mm is None or thickness_mm >= SLICE_THICKNESS_MAX_MM:
        return None
    if recist_slice_thickness(geometry, thickness_mm)[1] != SLICE_THICKNESS_FROM_DICOM:
        return None
    return thickness_mm


def not_a_ct_reason(volume_node: Any) -> str:
    """Why ``volume_node`` is no CT to segment or measure on, known from the node alone ('' when nothing says so): a
    label map volume, a tumor probability map this module made (the input selector lists it beside the CTs), or a
    volume loaded from a DICOM series whose Modality is not CT (:func:`dicom_modality`: MR, PET, ...). Given as the
    CT, a map went to the child process, which refused it as 'not CT in Hounsfield units' only after its start (a
    minute and more on a busy machine), or, measured, gave each lesion the map's values as its 'Mean HU'; an MR or
    PET series reached the child as a temporary file without its Modality, judged by its values alone (an MR whose
    values happened to pass was segmented into nonsense), while the command line refuses any Modality but CT."""
    name = volume_node.GetName()
    if volume_node.IsA("vtkMRMLLabelMapVolumeNode"):
        return (f"'{name}' is a label map volume, not a CT; select the CT volume (a label map holds label values, not "
                f"Hounsfield units).")
    if volume_node.GetAttribute(mrml.PROBABILITY_MAP_ATTRIBUTE) == "1":
        return (f"'{name}' is a tumor probability map made by this module, not a CT; select the CT volume it was made "
                f"from.")
    modality = dicom_modality(volume_node)
    if modality and modality != "CT":
        return (f"'{name}' was loaded from a DICOM series of Modality {modality}, not CT: the models are trained on CT "
                f"in Hounsfield units only; select a CT volume (a series of Modality CT).")
    return ""


def require_ct_volume(volume_node: Any) -> None:
    """InputError, before any work, when :func:`not_a_ct_reason` knows ``volume_node`` is no CT."""
    reason = not_a_ct_reason(volume_node)
    if reason:
        raise InputError(reason)


def lesion_table_to_show(table_node: Any, segmentation_node: Any) -> Any:
    """The lesion table the panel shows beside the selected output ``segmentation_node``: ``table_node`` when
    it lists that segmentation's lesions (or records no segmentation, a table made before tables were linked),
    else None, so that after a switch to another CT the panel does not show the previous CT's lesions."""
    if table_node is None or segmentation_node is None:
        return None
    if table_node.GetNodeReferenceID(mrml.LESION_TABLE_SEGMENTATION_ROLE) is None:
        return table_node
    return table_node if mrml.lesion_table_describes(table_node, segmentation_node) else None


# --- the job -----------------------------------------------------------------------------------------

def volume_grid(node: Any) -> tuple:
    """``(ImageGeometry, (z, y, x) shape)`` of a scalar volume node in world coordinates (its parent transform
    applied); InputError for a node without image data, with no voxels (a size of 0) or with colour/vector voxels."""
    image = node.GetImageData()
    if image is None or image.GetPointData() is None or image.GetPointData().GetScalars() is None:
        raise InputError(f"Volume '{node.GetName()}' holds no image data; load a CT volume.")
    if image.GetPointData().GetScalars().GetNumberOfComponents() != 1:
        raise InputError(f"Volume '{node.GetName()}' is a color or vector image; choose a scalar CT volume.")
    nx, ny, nz = image.GetDimensions()
    if min(nx, ny, nz) < 1:  # it reached the hand-over's writer, whose failure was told as a full disk
        raise InputError(f"Volume '{node.GetName()}' holds no voxels (size {nx} x {ny} x {nz}); load a CT volume.")
    return mrml.volume_node_world_geometry(node), (nz, ny, nx)


def voxels_state(volume_node: Any) -> Any:
    """The volume node's image data object and its modification time (None without image data): an edit of the
    voxels in place (a Segment Editor mask, ``arrayFromVolumeModified``) raises the time, new image data changes the
    object. Taken when a child job hands the CT over and again when it finishes, to warn of a CT changed meanwhile."""
    image = volume_node.GetImageData()
    return None if image is None else (image.GetAddressAsString("vtkImageData"), image.GetMTime())


def segment_look(segment: Any) -> tuple:
    """A ``vtkSegment``'s colour ((r, g, b), 0..1) and terminology tag: what a reader sets in Segment Editor besides
    its voxels and name (a tumor typed as "Hepatocellular carcinoma"), and what a run resets to its own."""
    return tuple(round(float(c), 6) for c in segment.GetColor()), mrml.segment_terminology_tag(segment)


def _grid_text(geometry: Any, shape_zyx: Any, with_direction: bool = False) -> str:
    """``(z, y, x) shape (4, 5, 6), spacing (0.8, 0.9, 2.5) mm, origin (10, -5, 3) mm`` (spacing and origin in the
    library's (x, y, z) LPS order) of a grid, for a message; ``with_direction``: its 3x3 direction cosines too
    (row-major), for grids that differ in them."""
    def numbers(values: Any) -> str:
        return "(" + ", ".join(f"{float(value):.6g}" for value in values) + ")"

    text = (f"(z, y, x) shape {tuple(int(n) for n in shape_zyx)}, spacing {numbers(geometry.spacing)} mm, "
            f"origin {numbers(geometry.origin)} mm")
    return text + (f", direction {numbers(geometry.direction)}" if with_direction else "")


def same_grid(geometry: Any, shape_zyx: Any, other_geometry: Any, other_shape_zyx: Any) -> bool:
    """Whether two ``(geometry, (z, y, x) shape)`` grids are one (within ``LiverTumorSegLib.io.GEOMETRY_TOLERANCE``);
    a missing geometry (None) is no grid."""
    return (geometry is not None and other_geometry is not None and shape_zyx is not None
            and tuple(shape_zyx) == tuple(other_shape_zyx)
            and geometry.almost_equal(other_geometry, tol=GEOMETRY_TOLERANCE))


class SegmentationJob(ChildJob):
    """One run of the child process for one CT node (see the module docstring; the run itself:
    :class:`~.childjob.ChildJob`).

    ``runner``: a process runner (``childprocess.SubprocessRunner`` headless, the module's QProcess runner in
    Slicer). ``python``: the Python to run (``PythonSlicer`` in Slicer). ``library_root``: the folder holding
    ``LiverTumorSegLib`` (put on the child's PYTHONPATH). ``temp_root``: where the job's temporary folder is
    made (default: the system's). ``progress(fraction, stage)`` is called from :meth:`poll`.
    ``colors_logic``: Slicer's color logic, for the probability map's colour bar (optional).
    """

    outcome_class = SegmentationOutcome
    WHAT = "The segmentation process"  # how its messages name the child

    def __init__(self, scene: Any, input_volume_node: Any, options: SegmentationOptions, runner: Any,
                 python: str, library_root: str, temp_root: Optional[str] = None, segmentation_node: Any = None,
                 table_node: Any = None, replace_existing: bool = True, show_3d: bool = True,
                 progress: Optional[Callable[[float, str], None]] = None, colors_logic: Any = None,
                 env: Optional[Dict[str, str]] = None) -> None:
        if input_volume_node is None:
            raise InputError("No input volume selected; choose a CT volume.")
        require_scene_node(scene, input_volume_node, "vtkMRMLScalarVolumeNode", "the CT")
        require_scene_node(scene, segmentation_node, "vtkMRMLSegmentationNode", "the output segmentation")
        require_node_of_class(table_node, "vtkMRMLTableNode", "the lesion table")  # one not in the scene: a new one
        require_ct_volume(input_volume_node)
        if not isinstance(options, SegmentationOptions):
            raise TypeError("options must be LiverTumorSegLib.inference.options.SegmentationOptions")
        mrml.check_labelmap_output(segmentation_node)  # before the run, not after it
        super().__init__(runner, python, library_root, temp_root, env)
        self.options = options  # validated when it was made (frozen)
        self._scene = scene
        self._input = input_volume_node
        self._segmentation_node = segmentation_node
        self._table_node = table_node
        self._replace_existing = replace_existing
        self._show_3d = show_3d
        self._progress = progress
        self._colors_logic = colors_logic
        self.geometry, self.shape_zyx = volume_grid(input_volume_node)
        if segmentation_node is not None:  # a warping or shearing transform on it: refused now, not after the run
            mrml.geometry_in_node_frame(self.geometry, segmentation_node)
        # the Liver / Liver tumor segments the user agreed to replace (the panel asked about these when clicked), and
        # the pieces Segment Editor split off them, replaced with them (the panel named these too)
        self._replaceable = set(mrml.existing_output_segment_ids(segmentation_node))
        # (with replace_existing=False they are refused as ours are: kept, they were counted beside the new result)
        self._split_offs = mrml.split_off_segments(segmentation_node)
        # what the user agreed to replace, as it was: an edit of these segments during the run is the user's work
        self._names_at_start = {i: segmentation_node.GetSegmentation().GetSegment(i).GetName()
                                for i in self._replaceable}
        self._looks_at_start = {i: segment_look(segmentation_node.GetSegmentation().GetSegment(i))
                                for i in self._replaceable}
        self._voxels_of_segments = {i: (mrml.segment_voxels_fingerprint(segmentation_node, i),
                                        mrml.segment_grid(segmentation_node, i))
                                    for i in sorted(self._replaceable | set(self._split_offs))}
        if not replace_existing and (self._replaceable or self._split_offs):  # now, not after minutes of work
            raise OutputExistsError(
                f"Segmentation '{segmentation_node.GetName()}' already has the segments "
                f"{mrml.existing_output_segment_ids(segmentation_node) + list(self._split_offs)}; allow replacing "
                f"them or choose a new output segmentation.")
        self.input_path: Optional[str] = None
        self.used_storage_file = False
        self.stages: List[str] = []
        # the last lines only (20 go into the details): a child printing 300,000 stray lines kept them all
        self.other_output: Deque[str] = collections.deque(maxlen=OTHER_OUTPUT_LINES)
        self._last_fraction = 0.0
        self._done: Optional[childprocess.ChildMessage] = None
        self._error: Optional[childprocess.ChildMessage] = None
        self._voxels_at_start: Any = None

    def _check_grid_unchanged(self) -> None:
        """InputError when the CT's world grid changed while it was segmented (a transform applied or edited, the
        volume's origin, spacing or voxels replaced): the labels, the probability map and the lesions' world
        positions were all made on the grid of the run's start, and placed under the CT's new transform they lay
        where the CT had been (37,426 voxels off after a 40 mm registration was applied during a run)."""
        try:
            geometry, shape_zyx = volume_grid(self._input)
        except InputError:  # its image data was taken away
            geometry, shape_zyx = None, None
        if not same_grid(geometry, shape_zyx, self.geometry, self.shape_zyx):
            raise InputError(f"The CT '{self._input.GetName()}' was moved or changed while it was segmented (its "
                             f"transform, origin, spacing or size); the result was not loaded, since it lies where "
                             f"the CT was. Segment it again.")

    def _voxels_changed_warning(self) -> List[str]:
        """A warning when the CT's voxels were changed while it was segmented (its grid unchanged: that is
        refused, :meth:`_check_grid_unchanged`): the outline fits the CT as it was when Segment was clicked."""
        if self._voxels_at_start is None or voxels_state(self._input) == self._voxels_at_start:
            return []
        return [f"The voxels of the CT '{self._input.GetName()}' were changed while it was segmented; the outline "
                f"and the lesion table are of the CT as it was when Segment was clicked. Segment it again to "
                f"outline the CT as it is now."]

    def _prepare(self) -> List[str]:
        storage_file = usable_storage_file(self._input)
        self.used_storage_file = storage_file is not None
        self.input_path = storage_file or write_temporary_ct(self._input, self._path(HANDOVER_CT_NAME))
        self._voxels_at_start = voxels_state(self._input)  # after the hand-over, which reads them
        return child_arguments(self.input_path, self._path("labels.nii.gz"), self._path("report.json"),
                               self._path("probabilities.nii.gz"), self.options,
                               slice_thickness_mm=slice_thickness_for_child(self._input, self.geometry))

    def _read_messages(self) -> None:
        for line in self._runner.read_stdout_lines():
            message = childprocess.parse_line(line)
            if message.kind == childprocess.PROGRESS:
                self._last_fraction = max(self._last_fraction, message.fraction)
                if message.stage and (not self.stages or self.stages[-1] != message.stage):
                    self.stages.append(message.stage)
                if self._progress:
                    self._progress(self._last_fraction, message.stage)
            elif message.kind == childprocess.DONE:
                self._done = message
            elif message.kind == childprocess.ERROR:
                self._error = message
            else:
                self.other_output.append(message.text)

    def _finish(self) -> SegmentationOutcome:
        seconds = self.elapsed_seconds()
        code = self._runner.exit_code()
        stderr = self._runner.read_stderr()
        details = "\n".join(list(self.other_output)[-20:] + ([stderr[-4000:]] if stderr else []))
        if self._error is not None and self._error.error == CHILD_CANCELLED_ERROR:  # the panel's Cancel kills it
            return SegmentationOutcome(FAILED, error=RuntimeError(stopped_from_outside_text(code)), details=details,
                                       seconds=seconds)
        if self._error is not None and code == 2:  # an error the user can fix (the command line's exit 2)
            message = panel_text.error_text(self._error.error, self.input_path or "", self._input.GetName())
            return SegmentationOutcome(FAILED, error=SegmentationProcessError(message), details=details,
                                       seconds=seconds)
        if self._error is not None or code != 0 or self._done is None:
            # an internal error (exit 1: a bug, 'please report it') was shown as a user's error, without details
            last = self._error.error if self._error is not None else last_error_line(stderr)
            return SegmentationOutcome(FAILED, error=RuntimeError(ended_text(code, self.WHAT, last, stderr)),
                                       details=details, seconds=seconds)
        if self._progress:  # loading blocks the main thread: the panel says so before it starts
            self._progress(1.0, LOADING_RESULT_STAGE)
        if self._cancelled:  # by that callback (its temporary files are gone): nothing is loaded
            return self._cancelled_outcome()
        try:
            return self._load_results(seconds)
        except Exception as exc:  # noqa: BLE001 - reported to the user by the caller
            import traceback
            return SegmentationOutcome(FAILED, error=exc, details=traceback.format_exc(), seconds=seconds)

    def _output_path(self, name: str, default: str) -> Optional[str]:
        outputs = self._done.outputs if self._done is not None else {}
        path = outputs.get(name) or default
        return path if path and os.path.isfile(path) else None

    def _read_child_volume(self, path: str, what: str) -> np.ndarray:
        """``(z, y, x)`` voxels of a file the child wrote, read by the library's reader (the one that wrote it) and
        checked to lie on the CT's grid. Slicer's storage node reverses the k axis of a left-handed file (a CT
        with descending slices, or under a mirroring transform), so its array, placed on the CT's grid, put the
        tumor in the mirrored slices. The child's label and probability maps are uint8 and stay uint8 (read as
        int16 they cost twice their size, 0.9 GiB each for a 900-slice CT)."""
        from LiverTumorSegLib.io import read_volume

        try:
            volume = read_volume(path, uint8_if_fits=True)
        except LiverTumorSegError as exc:  # a truncated or damaged file: "Check that the file is complete"
            raise unusable_result(self.WHAT, os.path.basename(path), exc) from exc
        if not same_grid(volume.geometry, volume.shape_zyx, self.geometry, self.shape_zyx):
            # a ChildResultError as for a damaged file: it says that the scene was not changed and what to do
            turned = not np.allclose(volume.geometry.direction, self.geometry.direction, atol=GEOMETRY_TOLERANCE)
            raise unusable_result(self.WHAT, os.path.basename(path),
                                  f"the {what} is on another grid than the CT's: "
                                  f"{_grid_text(volume.geometry, volume.shape_zyx, turned)} instead of "
                                  f"{_grid_text(self.geometry, self.shape_zyx, turned)}")
        return volume.array

    def _load_results(self, seconds: float) -> SegmentationOutcome:
        labels_path = self._output_path("labels", self._path("labels.nii.gz"))
        if labels_path is None:  # said as for a missing report: the scene was not changed, and what to do
            raise unusable_result(self.WHAT, "labels.nii.gz", "no such file")
        labels = self._read_child_volume(labels_path, "label map")
        report_path = self._output_path("report", self._path("report.json"))
        if report_path is None:  # asked for with --report: the table and the summary are made of it
            raise unusable_result(self.WHAT, "report.json", "no such file")
        report = check_lesion_report(read_result_json(report_path, self.WHAT), self.WHAT, os.path.basename(report_path))
        probabilities = None
        probability_path = self._output_path("probabilities", self._path("probabilities.nii.gz"))
        if self.options.probabilities and probability_path:
            probabilities = self._read_child_volume(probability_path, "tumor probability map")
        # Everything is read and checked: only now is the user's scene changed. Nodes deleted while the child ran
        # are not written into (a result put in a node outside the scene would be lost without a word).
        removed = self._removed_input_text()
        if removed:
            raise InputError(removed)
        self._check_grid_unchanged()
        present = [node if node is not None and self._scene.IsNodePresent(node) else None
                   for node in (self._segmentation_node, self._table_node)]
        redirected = self._segments_added_during_run(present[0])
        edited = self._segments_edited_during_run(present[0])
        # the user's segments on another series' grid: written there, the result would be resampled onto that grid
        # when the scene is saved (the Slicer glue audit); it goes into a new segmentation instead
        split_offs = self._split_offs_still_there(present[0])
        other_grid = not (redirected or edited) and present[0] is not None and mrml.result_resampled_on_saving(
            present[0], self.geometry, split_offs)
        chosen_name = present[0].GetName() if other_grid else ""
        if redirected or edited or other_grid:
            present, split_offs = [None, None], []  # a new segmentation: no piece of the old result in it
        segmentation_node, table_node = apply_result(
            self._scene, labels.astype(np.uint8, copy=False), report, self.geometry, self._input, present[0],
            present[1], self._replace_existing, self._show_3d, remove_segment_ids=split_offs)
        probability_node = None
        if probabilities is None:  # an earlier run's map no longer describes these segments ("Update lesion
            mrml.unlink_probability_volume(segmentation_node)  # table" read it as theirs); a later map refills it
        else:
            # a re-run refills it, also after runs without the map (each run with it had added one more volume)
            earlier = mrml.probability_volume_to_refill(segmentation_node)
            # a refilled map keeps its name, as the segmentation and its table do (renamed, "CT tumor probability_1"
            # would take the name of another result's map)
            name = earlier.GetName() if earlier is not None else \
                self._scene.GenerateUniqueName(f"{self._input.GetName()} tumor probability")
            probability_node = mrml.probability_volume_node(
                self._scene, probabilities, self.geometry,  # uint8 255 x p: shown as float32 0..1
                name=name,
                colors_logic=self._colors_logic if earlier is None else None, node=earlier, follow=self._input)
            mrml.link_probability_volume(segmentation_node, probability_node)
            if earlier is None:
                mrml.place_beside(self._scene, probability_node, self._input)
        warnings = self._voxels_changed_warning() + panel_text.result_warnings(report, self.input_path or "",
                                                                                self._input.GetName())
        if redirected:
            warnings.insert(0, f"'{self._segmentation_node.GetName()}' was given the segment(s) {redirected} while "
                               f"the CT was segmented; they are kept, and the result went into the new segmentation "
                               f"'{segmentation_node.GetName()}'.")
        if other_grid:
            warnings.insert(0, f"'{chosen_name}' holds segments on a grid that does not hold this CT's voxels "
                               f"(another series'); "
                               f"written there, the result would be resampled onto that grid when the scene is saved "
                               f"(lesions merged or lost, volumes changed), so it went into the new segmentation "
                               f"'{segmentation_node.GetName()}'. Its segments are kept as they were.")
        if edited:
            warnings.insert(0, f"The segment(s) {edited} of '{self._segmentation_node.GetName()}' were edited or "
                               f"renamed while the CT was segmented; they are kept as edited, and the result went into "
                               f"the new segmentation '{segmentation_node.GetName()}'.")
        mrml.set_lesion_table_warnings(table_node, warnings)  # in the panel's words, shown again after a reload
        return SegmentationOutcome(DONE, segmentation_node, table_node, report, seconds=seconds,
                                   probability_node=probability_node, device=self._done.device, warnings=warnings)

    def _removed_input_text(self) -> str:
        """What the outcome says when the CT was removed from the scene during the run ('' while it is there); an
        output segmentation, table or map removed then is no reason to stop: the result goes into new ones."""
        if self._scene.IsNodePresent(self._input):
            return ""
        return (f"The CT '{self._input.GetName()}' was removed from the scene while it was segmented; the result was "
                f"not loaded. Load the CT and segment it again.")

    def _split_offs_still_there(self, segmentation_node: Any) -> List[str]:
        """The pieces split off the earlier result that were in the node when the run started (and the panel named)
        and are still there under the same name: a segment renamed during the run (so no longer such a piece) is
        kept."""
        if segmentation_node is None:
            return []
        now = mrml.split_off_segments(segmentation_node)
        return [segment_id for segment_id, name in self._split_offs.items() if now.get(segment_id) == name]

    def _segments_edited_during_run(self, segmentation_node: Any) -> List[str]:
        """Names of the segments the run would replace (the Liver / Liver tumor segments and the pieces split off
        them, as they were when Segment was clicked) whose voxels were edited while the child ran, or which were
        renamed or given another colour or terminology then (:func:`segment_look`; a split-off piece renamed is the
        user's and kept anyway): the question before the run did not cover those edits, and replacing the segments
        lost them without a word. The result then goes into a new
        segmentation."""
        if segmentation_node is None:
            return []
        segmentation = segmentation_node.GetSegmentation()
        edited = []
        for segment_id, (voxels, grid) in self._voxels_of_segments.items():
            segment = segmentation.GetSegment(segment_id)
            if segment is None:  # deleted meanwhile: nothing of it is lost
                continue
            renamed = segment_id in self._names_at_start and segment.GetName() != self._names_at_start[segment_id]
            restyled = segment_id in self._looks_at_start and segment_look(segment) != self._looks_at_start[segment_id]
            if renamed or restyled or mrml.segment_voxels_fingerprint(segmentation_node, segment_id, grid) != voxels:
                edited.append(segment.GetName())
        return edited

    def _segments_added_during_run(self, segmentation_node: Any) -> List[str]:
        """Names of the Liver / Liver tumor segments (by name) that ``segmentation_node`` gained while the child ran,
        which the user was never asked to replace: a reader's "Liver" drawn meanwhile was deleted without a word.
        The result then goes into a new segmentation."""
        if segmentation_node is None:
            return []
        segmentation = segmentation_node.GetSegmentation()
        added = [i for i in mrml.existing_output_segment_ids(segmentation_node) if i not in self._replaceable]
        return [segmentation.GetSegment(i).GetName() for i in added]
