"""MRML glue: Slicer scene nodes <-> LiverTumorSeg arrays, without Slicer's GUI.

Everything here takes a scene or nodes explicitly and uses only MRML / VTK classes, so it runs inside 3D
Slicer and headless with the ``slicer-core`` wheel (``import slicer``). ``slicer`` and ``vtk`` are imported
inside the functions: ``import LiverTumorSegLib.mrml`` works without them.

Conventions
-----------
* Arrays are numpy ``(z, y, x)`` = ``[k, j, i]``, the order of Slicer's ``arrayFromVolume``.
* :class:`~LiverTumorSegLib.volume.ImageGeometry` is LPS; MRML's ``IJKToRAS`` is RAS. The conversion is
  ``ImageGeometry.from_ijk_to_ras`` / ``ImageGeometry.ijk_to_ras``.
* Segments: label 1 -> segment "Liver" (liver parenchyma **without** tumor), label 2 -> "Liver tumor".
  The two segments do not overlap, as Slicer users expect; whole-liver volume = Liver + Liver tumor.
* A volume under a *linear* parent transform is read in world coordinates (the transform is applied to
  its geometry, voxels untouched). A non-linear (warping) transform is refused: harden or remove it first.
"""
import contextlib
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import InputError, LabelError, OutputExistsError
from .io.conversions import axes_angles_deg, axes_are_orthogonal
from .fileutil import atomic_output, full_suffix
from .volume import CTVolume, ImageGeometry

log = logging.getLogger(__name__)

# --- segment definitions ----------------------------------------------------------------------------

SLICER_ANATOMY_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
DICOM_MASTER_CONTEXT = "Segmentation category and type - DICOM master list"
SLICER_ANATOMIC_REGION_CONTEXT = "Anatomic codes - DICOM master list"


@dataclass(frozen=True)
class SegmentSpec:
    """One output segment: which label value it holds and how Slicer shows and codes it.

    ``color``: RGB in 0..1. Codes are ``(scheme, value, meaning)`` triples (DICOM code sequence items).
    ``anatomic_region`` is ``None`` when the segment type is itself the anatomy. ``context``: the Slicer
    terminology context (list) that holds ``category`` / ``type``.
    """

    label: int
    segment_id: str
    name: str
    color: Tuple[float, float, float]
    category: Tuple[str, str, str]
    type: Tuple[str, str, str]
    anatomic_region: Optional[Tuple[str, str, str]] = None
    context: str = SLICER_ANATOMY_CONTEXT

    def terminology_tag(self) -> str:
        """The segment's terminology in Slicer's tag format.

        ``context~category~type~typeModifier~anatomicContext~anatomicRegion~regionModifier``; each code is
        ``scheme^value^meaning``, an absent code is ``^^``.
        """
        def code(c: Optional[Tuple[str, str, str]]) -> str:
            return "^".join(c) if c else "^^"
        return "~".join([self.context, code(self.category), code(self.type), "^^",
                         SLICER_ANATOMIC_REGION_CONTEXT, code(self.anatomic_region), "^^"])


_LIVER_CODE = ("SCT", "10200004", "Liver")
# Colors: Slicer's recommended display colors (GenericAnatomyColors "liver" 221,130,101 and "tumor"/"mass"
# 144,238,144), so the result looks like a segment picked from Slicer's terminology list.
# Terminology contexts: Liver (Anatomical Structure / Liver) is in Slicer's "3D Slicer General Anatomy list";
# the tumor type Neoplasm (SCT 108369006) is not in that list in Slicer 5.6 (its "Morphologically Altered
# Structure" category has Mass, SCT 4147007), so the tumor names the DICOM master list, which has it in every
# Slicer 5.x (SlicerTotalSegmentator codes liver tumors the same way). Anatomic region: "Anatomic codes -
# DICOM master list", SCT 10200004 Liver.
LIVER_SEGMENT = SegmentSpec(
    label=1, segment_id="livertumorseg_liver", name="Liver",
    color=(221 / 255.0, 130 / 255.0, 101 / 255.0),
    category=("SCT", "123037004", "Anatomical Structure"), type=_LIVER_CODE)
TUMOR_SEGMENT = SegmentSpec(
    label=2, segment_id="livertumorseg_tumor", name="Liver tumor",
    color=(144 / 255.0, 238 / 255.0, 144 / 255.0),
    category=("SCT", "49755003", "Morphologically Altered Structure"),
    type=("SCT", "108369006", "Neoplasm"), anatomic_region=_LIVER_CODE, context=DICOM_MASTER_CONTEXT)
SEGMENTS: Tuple[SegmentSpec, ...] = (LIVER_SEGMENT, TUMOR_SEGMENT)
_OUR_SEGMENT_IDS = tuple(spec.segment_id for spec in SEGMENTS)

# Attribute names on the lesion table node (string values) that carry the whole-liver summary.
TABLE_ATTRIBUTE_PREFIX = "LiverTumorSeg."

_SEGMENTATIONS_LOGIC = []  # the one vtkSlicerSegmentationsModuleLogic of this process (see make_headless_scene)


# --- scene set-up for headless use ------------------------------------------------------------------

_VTK_SILENCE_LOCK = threading.Lock()
_vtk_silence = {"depth": 0, "restore": None}  # type: Dict[str, Any]
"""Open :func:`_vtk_stderr_silenced` blocks (nested, or in several threads) and the stderr verbosity the last one to
close restores: an inner block that restored on its own exit made the outer one noisy again."""


@contextlib.contextmanager
def _vtk_stderr_silenced() -> Iterator[None]:
    """VTK's logger prints nothing on stderr inside the block; its stderr verbosity is restored afterwards
    (:func:`_turn_vtk_stderr_off`), when the last of the blocks open at once closes."""
    import vtk

    logger = vtk.vtkLogger
    with _VTK_SILENCE_LOCK:
        if _vtk_silence["depth"] == 0:
            _vtk_silence["restore"] = _turn_vtk_stderr_off(logger)
        _vtk_silence["depth"] += 1
    try:
        yield
    finally:
        with _VTK_SILENCE_LOCK:
            _vtk_silence["depth"] -= 1
            if _vtk_silence["depth"] == 0:
                logger.SetStderrVerbosity(_vtk_silence["restore"])


def _turn_vtk_stderr_off(logger: Any) -> Any:
    """Set ``logger``'s (``vtk.vtkLogger``) stderr verbosity to off; return the one it had, as far as VTK lets it be
    read. vtkLogger has no getter for it (vtkLogger.h declares SetStderrVerbosity alone; VTK 9.6's
    ``stderr_verbosity`` property is write-only), and ``GetCurrentVerbosityCutoff`` is the highest verbosity over
    stderr and every other output (a log file at VERBOSITY_MAX makes it 9): restoring that left stderr printing
    everything after the block. With stderr off the cutoff is that of the other outputs alone: when it drops,
    stderr's was the cutoff before; when it does not, stderr's was at most that, and VTK's default for stderr,
    VERBOSITY_INFO (0: vtkLogger.h, and a fresh VTK 9.6.2 process's cutoff), is restored, never above the cutoff
    before."""
    cutoff = logger.GetCurrentVerbosityCutoff()
    logger.SetStderrVerbosity(logger.VERBOSITY_OFF)
    if logger.GetCurrentVerbosityCutoff() < cutoff:
        return cutoff
    return min(cutoff, logger.VERBOSITY_INFO)


HEADLESS_SCENE_CLASSES = ("vtkMRMLScene", "vtkSlicerApplicationLogic", "vtkSlicerColorLogic", "vtkSlicerVolumesLogic",
                          "vtkSlicerSegmentationsModuleLogic", "vtkMRMLSegmentationStorageNode")
"""The ``slicer`` classes :func:`make_headless_scene` and :func:`write_seg_nrrd` use. slicer-core has them all, and so
has ``slicer`` inside the Slicer application. Slicer's ``PythonSlicer`` outside the application has not the module
logics: Slicer puts them into ``slicer`` when its modules load (Base/Python/slicer/modulelogic imports the running
application), and its ``import slicer`` there skipped the ``logic`` kit that holds ``vtkSlicerApplicationLogic`` in
Slicer 5.6.2 ("No module named 'logic'", Slicer forum topic 36784)."""

SEG_NRRD_ELSEWHERE = ("Write a label map instead (for example -o labels.nii.gz) and load it in Slicer, segment in "
                      "Slicer with the LiverTumorSeg module, or run this command from a Python with slicer-core "
                      "(pip install slicer-core).")
"""What to do when this Python cannot write ``.seg.nrrd`` (:func:`headless_scene_problem`)."""


def headless_scene_problem() -> str:
    """'' when this Python's ``slicer`` has every class of :data:`HEADLESS_SCENE_CLASSES`; else why a headless scene
    (and so a ``.seg.nrrd``) cannot be made here, and what to do instead."""
    try:
        import slicer
    except ImportError:
        return ("needs the slicer-core package: pip install slicer-core (or write .nii.gz / .nrrd label maps "
                "instead).")
    missing = [name for name in HEADLESS_SCENE_CLASSES if not hasattr(slicer, name)]
    if not missing:
        return ""
    return (f"needs Slicer's segmentation classes, and this Python's 'slicer' lacks {', '.join(missing)} (Slicer's "
            f"PythonSlicer outside the running application does not load them). {SEG_NRRD_ELSEWHERE}")


def make_headless_scene():
    """A new ``vtkMRMLScene`` set up as a running Slicer sets up its scene, for use without Slicer's GUI.

    An application logic with "Colors", "Volumes" and "Segmentations" module logics registered. The
    segmentations logic registers the segmentation converter rules (binary labelmap <-> closed surface)
    when it is first given a scene and again on every later ``SetMRMLScene``; the rules are global, so
    one segmentations logic is created per process and shared by later scenes.
    Not needed (and not used) inside Slicer, where ``slicer.mrmlScene`` is already set up. Raises
    :class:`InputError` saying what is missing where ``slicer`` lacks a class (:func:`headless_scene_problem`).
    """
    problem = headless_scene_problem()
    if problem:
        raise InputError(f"A Slicer scene cannot be made here: it {problem}")
    import slicer

    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    colors = slicer.vtkSlicerColorLogic()
    colors.SetMRMLApplicationLogic(app_logic)
    with _vtk_stderr_silenced():  # no Slicer home here: its "FindDefaultColorFiles failed" ERR line is noise
        colors.SetMRMLScene(scene)  # (the built-in color tables are added all the same)
    app_logic.SetModuleLogic("Colors", colors)
    volumes = slicer.vtkSlicerVolumesLogic()
    volumes.SetMRMLApplicationLogic(app_logic)
    volumes.SetMRMLScene(scene)
    app_logic.SetModuleLogic("Volumes", volumes)
    if not _SEGMENTATIONS_LOGIC:
        segmentations = slicer.vtkSlicerSegmentationsModuleLogic()
        segmentations.SetMRMLApplicationLogic(app_logic)
        segmentations.SetMRMLScene(scene)
        _SEGMENTATIONS_LOGIC.append(segmentations)
    app_logic.SetModuleLogic("Segmentations", _SEGMENTATIONS_LOGIC[0])
    # Keep the logics alive as long as the scene (VTK would otherwise free them with the Python wrappers).
    scene._livertumorseg_logics = (app_logic, colors, volumes)
    return scene


# --- volume node -> CTVolume ------------------------------------------------------------------------

def _matrix_to_numpy(vtk_matrix) -> np.ndarray:
    return np.array([[vtk_matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=float)


def _numpy_to_matrix(array: np.ndarray):
    import vtk
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(array[r, c]))
    return m


def world_ijk_to_ras(volume_node) -> np.ndarray:
    """4x4 IJK-to-RAS of ``volume_node`` in world coordinates (parent transforms applied).

    Raises :class:`InputError` when a parent transform is non-linear or the result is not a rotation
    times a scaling (shear): such a volume cannot be described by spacing, origin and direction.
    """
    import vtk
    m = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(m)
    own = _matrix_to_numpy(m)
    if not axes_are_orthogonal(own[:3, :3], SHEAR_TOLERANCE):  # not the transform's doing: the message said it was
        worst = max(abs(90.0 - angle) for angle in axes_angles_deg(own[:3, :3]))
        raise InputError(f"Volume '{volume_node.GetName()}' has a sheared grid: its voxel axes are up to {worst:.3g} "
                         f"degrees off a right angle (as a gantry-tilted CT kept without correction); volumes and "
                         f"positions on it would be wrong. Resample it onto a regular grid "
                         f"(Resample Scalar/Vector/DWI Volume), or load the DICOM series again with the DICOM module's "
                         f"acquisition geometry regularization, then run again.")
    ijk_to_ras = node_to_world(volume_node) @ own
    if not axes_are_orthogonal(ijk_to_ras[:3, :3], SHEAR_TOLERANCE):
        raise InputError(f"Volume '{volume_node.GetName()}' is sheared by its parent transform; its voxel "
                         f"axes are not perpendicular. Resample it (Resample Scalar/Vector/DWI Volume) first.")
    return ijk_to_ras


SHEAR_TOLERANCE = 1e-4
"""How far from right angles (``D^T D`` vs the identity) a transformed grid may be before it counts as sheared."""


def node_to_world(node) -> np.ndarray:
    """4x4 matrix from ``node``'s own (local) coordinates to world (RAS); the identity without a parent
    transform. Raises :class:`InputError` for a non-linear (warping) parent transform."""
    import vtk
    transform_node = node.GetParentTransformNode()
    if transform_node is None:
        return np.eye(4)
    if not transform_node.IsTransformToWorldLinear():
        raise InputError(f"'{node.GetName()}' is under the non-linear transform "
                         f"'{_first_non_linear(transform_node).GetName()}'. Harden the transform (Data module, "
                         f"right-click -> Harden transform) or remove it, then run again.")
    to_world = vtk.vtkMatrix4x4()
    transform_node.GetMatrixTransformToWorld(to_world)
    return _matrix_to_numpy(to_world)


def _first_non_linear(transform_node):
    """The transform node in ``transform_node``'s chain to the world (it, its parent, ...) that is itself not linear:
    the one to harden or remove (the chain's first node may be a linear one under it)."""
    node = transform_node
    while node is not None:
        if not node.IsLinear():
            return node
        node = node.GetParentTransformNode()
    return transform_node


def geometry_in_node_frame(geometry: ImageGeometry, node) -> ImageGeometry:
    """``geometry`` (a grid in world coordinates) expressed in ``node``'s own coordinates, i.e. under the
    inverse of its parent transforms: what a segmentation node under a transform must store so that the
    grid shows where it lies in the world. Raises :class:`InputError` when the transform would shear the grid
    (its voxel axes would not stay perpendicular)."""
    to_world = node_to_world(node)
    if np.allclose(to_world, np.eye(4)):
        return geometry
    local = np.linalg.inv(to_world) @ geometry.ijk_to_ras()
    if not axes_are_orthogonal(local[:3, :3], SHEAR_TOLERANCE):
        raise InputError(f"'{node.GetName()}' is under a shearing transform; the CT's voxel grid cannot be stored in "
                         f"it. Choose an output segmentation without that transform (or 'Create new').")
    return ImageGeometry.from_ijk_to_ras(local)


def ctvolume_from_volume_node(volume_node) -> CTVolume:
    """Copy a scalar volume node into a :class:`CTVolume`.

    ``array``: ``(z, y, x)`` copy of the voxels, the node's scalar type kept (HU for a CT loaded in Slicer).
    ``geometry``: LPS, from the node's IJK-to-RAS with any linear parent transform applied.
    ``meta["mrml_node_id"]``: the node's ID.
    """
    from vtk.util import numpy_support
    if volume_node is None:
        raise InputError("No input volume selected; choose a CT volume.")
    image = volume_node.GetImageData()
    if image is None or image.GetPointData() is None or image.GetPointData().GetScalars() is None:
        raise InputError(f"Volume '{volume_node.GetName()}' holds no image data; load a CT volume.")
    scalars = image.GetPointData().GetScalars()
    if scalars.GetNumberOfComponents() != 1:
        raise InputError(f"Volume '{volume_node.GetName()}' has {scalars.GetNumberOfComponents()} components "
                         f"(a color or vector image); choose a scalar CT volume.")
    nx, ny, nz = image.GetDimensions()
    array = numpy_support.vtk_to_numpy(scalars).reshape(nz, ny, nx).copy()
    return CTVolume(array=array, geometry=volume_node_world_geometry(volume_node), source=volume_node.GetName() or "",
                    meta={"mrml_node_id": volume_node.GetID()})


def volume_node_world_geometry(volume_node) -> ImageGeometry:
    """The LPS geometry of a volume node's voxel array ``(z, y, x)`` in world coordinates (its linear parent
    transform applied). The array's first voxel is IJK (extent start), not (0, 0, 0), for image data whose extent
    does not start at 0 (a script's vtkImageData, a cut-out): its IJK-to-RAS applies to that index, so the grid
    starts there (the CT was read as if its first voxel were at IJK 0, shifted by the extent's start; the module's
    own grid check did so until an audit found its hand-over 14.8 mm off the file it wrote)."""
    extent = volume_node.GetImageData().GetExtent()
    start = np.eye(4)
    start[:3, 3] = [extent[0], extent[2], extent[4]]
    return ImageGeometry.from_ijk_to_ras(world_ijk_to_ras(volume_node) @ start)


# --- labels -> segmentation node --------------------------------------------------------------------

def _check_labels(labels_zyx: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels_zyx)
    if labels.ndim != 3:
        raise LabelError(f"Label map must be 3D (z, y, x); got shape {labels.shape}.")
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise LabelError(f"Label map must hold integers 0/1/2; got dtype {labels.dtype}.")
    if labels.size == 0 or (labels.min() >= 0 and labels.max() <= 2):
        return labels
    from .io.labels import label_value_counts

    unknown = sorted(set(label_value_counts(labels)) - {0, 1, 2})
    if unknown:
        raise LabelError(f"Label map holds values {unknown[:5]}; only 0 (background), 1 (liver) and "
                         f"2 (tumor) are allowed.")
    return labels


def oriented_image_from_array(mask_zyx: np.ndarray, geometry: ImageGeometry, start_zyx: Sequence[int] = (0, 0, 0)):
    """A ``vtkOrientedImageData`` (uint8, one component) holding ``mask_zyx`` on ``geometry``'s grid, its first
    voxel at index ``start_zyx`` of that grid (a box cut out of a larger volume keeps its place)."""
    import slicer
    from vtk.util import numpy_support
    nz, ny, nx = mask_zyx.shape
    z0, y0, x0 = (int(v) for v in start_zyx)
    image = slicer.vtkOrientedImageData()
    image.SetExtent(x0, x0 + nx - 1, y0, y0 + ny - 1, z0, z0 + nz - 1)
    image.SetImageToWorldMatrix(_numpy_to_matrix(geometry.ijk_to_ras()))
    flat = np.ascontiguousarray(mask_zyx, dtype=np.uint8).ravel()
    scalars = numpy_support.numpy_to_vtk(flat, deep=True, array_type=numpy_support.get_vtk_array_type(np.uint8))
    image.GetPointData().SetScalars(scalars)
    return image


def _box_of(mask_zyx: np.ndarray) -> Tuple[slice, ...]:
    """The bounding box of a mask's voxels (one voxel at the origin when it has none)."""
    z = np.flatnonzero(mask_zyx.any(axis=(1, 2)))
    if z.size == 0:
        return (slice(0, 1),) * 3
    y = np.flatnonzero(mask_zyx[z[0]:z[-1] + 1].any(axis=(0, 2)))
    x = np.flatnonzero(mask_zyx[z[0]:z[-1] + 1].any(axis=(0, 1)))
    return slice(z[0], z[-1] + 1), slice(y[0], y[-1] + 1), slice(x[0], x[-1] + 1)


def _segment_mask_in_its_box(labels: np.ndarray, organ_box: Tuple[slice, ...], label: int, geometry: ImageGeometry):
    """The voxels of ``label`` as an oriented image of their own bounding box (inside ``organ_box``, the box of
    every non-zero voxel): Slicer stores a segment's box anyway, and a whole-volume mask per segment cost
    15 s and 0.65 GiB for a 600-slice CT."""
    region = labels[organ_box] == label
    if not region.any():  # empty (extent 0..-1), as Slicer's own AddEmptySegment makes it: a 1-voxel zero mask
        return oriented_image_from_array(np.zeros((0, 0, 0), np.uint8), geometry)  # made VTK log a 3D failure
    box = _box_of(region)
    start = [b.start + o.start for b, o in zip(box, organ_box)]
    return oriented_image_from_array(region[box].astype(np.uint8), geometry, start)


def _existing_segment_ids(segmentation, spec: "SegmentSpec") -> List[str]:
    """The IDs of the segments that are ``spec``'s in ``segmentation``: ours (``spec.segment_id``) first, then each
    one the user named like it, in any case and spacing ("Liver" drawn by hand has ID Segment_1; "liver",
    "LIVER "). Slicer's ``GetSegmentIdBySegmentName`` gives only the first: the others were left out of the
    labels (with a warning that called them neither liver nor tumor) and kept beside ours by a run."""
    found = [spec.segment_id] if segmentation.GetSegment(spec.segment_id) is not None else []
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        name = segmentation.GetSegment(segment_id).GetName() or ""
        if segment_id not in _OUR_SEGMENT_IDS and name.strip().lower() == spec.name.lower():
            found.append(segment_id)
    return found


def _measured_segment_ids(segmentation, spec: "SegmentSpec") -> List[str]:
    """:func:`_existing_segment_ids` of ``spec`` that are measured as it: this tool's own segment (fixed ID) only
    while its name still says so (:func:`~.segnrrd.label_of_segment`), as ``measure`` reads the saved ``.seg.nrrd``:
    our "Liver tumor" renamed "Simple cyst (benign)" stayed a lesion in the panel's table (left out by ``measure``),
    and our "Liver" renamed "Liver (corrected)" stayed liver (dropped by ``measure``). A renamed one is then judged
    by its new name with the other segments (:func:`_other_segments`). A re-run still replaces it by its ID
    (:func:`existing_output_segment_ids`)."""
    from .segnrrd import label_of_segment

    measured = []
    for segment_id in _existing_segment_ids(segmentation, spec):
        name = segmentation.GetSegment(segment_id).GetName() or ""
        if segment_id not in _OUR_SEGMENT_IDS or label_of_segment({"ID": segment_id, "Name": name}) == spec.label:
            measured.append(segment_id)
    return measured


def segment_names(segmentation_node, segment_ids: Sequence[str]) -> List[str]:
    """The names the segments ``segment_ids`` of ``segmentation_node`` have now (those still there, in that order)."""
    segmentation = segmentation_node.GetSegmentation() if segmentation_node is not None else None
    segments = [segmentation.GetSegment(i) for i in segment_ids] if segmentation is not None else []
    return [segment.GetName() or "" for segment in segments if segment is not None]


def existing_output_segment_ids(segmentation_node) -> List[str]:
    """IDs of the segments in ``segmentation_node`` that this tool's "Liver" and "Liver tumor" would replace:
    its own (fixed IDs), or a user's segment of the same name. A same-named segment kept beside ours gave two
    "Liver" segments, which readers that go by name merged."""
    if segmentation_node is None:
        return []
    segmentation = segmentation_node.GetSegmentation()
    return [segment_id for spec in SEGMENTS for segment_id in _existing_segment_ids(segmentation, spec)]


_SPLIT_OFF_NAME = re.compile(r"^(?P<base>.*?)(?:_(?:[2-9]|[1-9]\d+)| -_\d+)$")
"""A segment name as Segment Editor's Islands effect ("Split islands to segments") names the pieces it splits off a
segment: the segment's name, "_" and the island's number from 2 on ("Liver tumor_2", "Liver tumor_3"; the first
island stays in the segment itself, so Slicer never names a piece "_1", "_0" or "_02": a "Liver tumor_1" is the
user's own and kept); " -_1" in older Slicer releases."""


def split_off_segments(segmentation_node) -> Dict[str, str]:
    """``{segment ID: name}`` of the segments in ``segmentation_node`` named as pieces split off this tool's "Liver" or
    "Liver tumor" by Segment Editor's Islands effect (:data:`_SPLIT_OFF_NAME`, base name in any case). They are parts
    of a result that a re-run replaces: kept, the lesion table of the new result left them out while *Update lesion
    table* counted them ("Liver tumor_2" is a tumor by name) beside the new tumor."""
    if segmentation_node is None:
        return {}
    segmentation = segmentation_node.GetSegmentation()
    ours = {spec.name.lower() for spec in SEGMENTS}
    found = {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        name = segmentation.GetSegment(segment_id).GetName() or ""
        match = _SPLIT_OFF_NAME.match(name.strip())
        if segment_id not in _OUR_SEGMENT_IDS and match and match.group("base").strip().lower() in ours:
            found[segment_id] = name
    return found


def _segment_labelmap(segmentation_node, segment_id: str):
    """The segment's binary labelmap representation (shared with other segments of its layer), or None."""
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id) if segmentation_node is not None else None
    return (segment, segment.GetRepresentation(_labelmap_name())) if segment is not None else (None, None)


def segment_grid(segmentation_node, segment_id: str) -> Optional[np.ndarray]:
    """4x4 image-to-world matrix (the segmentation's own frame, RAS) of the grid a segment's labelmap is stored on;
    None for a segment that is not there or has no labelmap."""
    import vtk
    _, image = _segment_labelmap(segmentation_node, segment_id)
    if image is None:
        return None
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    return _matrix_to_numpy(matrix)


def _segment_mask_box(image, label_value: int) -> Tuple[Optional[np.ndarray], np.ndarray]:
    """``(mask, first voxel IJK (z, y, x))`` of the voxels holding ``label_value`` in an oriented image, cut to their
    bounding box; ``(None, ...)`` when there are none."""
    from vtk.util import numpy_support
    x0, x1, y0, y1, z0, z1 = image.GetExtent()
    scalars = image.GetPointData().GetScalars()
    if scalars is None or x1 < x0 or y1 < y0 or z1 < z0:
        return None, np.zeros(3, np.int64)
    mask = numpy_support.vtk_to_numpy(scalars).reshape(z1 - z0 + 1, y1 - y0 + 1, x1 - x0 + 1) == label_value
    if not mask.any():
        return None, np.zeros(3, np.int64)
    box = _box_of(mask)
    return mask[box], np.array([z0 + box[0].start, y0 + box[1].start, x0 + box[2].start], np.int64)


_VTK_EXTENT_LIMIT = 2 ** 31  # VTK image extents are C ints


def _mask_resampled(mask: np.ndarray, first_zyx: np.ndarray, matrix: np.ndarray, grid: np.ndarray):
    """``(mask, first voxel IJK (z, y, x))`` of a box mask on the grid ``matrix`` moved onto the grid ``grid`` (both
    4x4 image-to-world) by nearest neighbour, cut to its bounding box: a layer the storage node moved onto a user's
    whole-number finer grid comes back voxel for voxel."""
    import slicer
    corners = np.array([[x, y, z, 1.0] for z in (first_zyx[0] - 1, first_zyx[0] + mask.shape[0])
                        for y in (first_zyx[1] - 1, first_zyx[1] + mask.shape[1])
                        for x in (first_zyx[2] - 1, first_zyx[2] + mask.shape[2])]).T
    ijk = (np.linalg.inv(grid) @ matrix @ corners)[:3]  # (x, y, z) rows on the target grid
    if not np.isfinite(ijk).all() or np.abs(ijk).max() >= _VTK_EXTENT_LIMIT:
        # before the cast to int, which numpy does with an 'invalid value' warning and a wrong number
        raise OverflowError(f"the segment lies beyond voxel {_VTK_EXTENT_LIMIT} of the grid it is to be moved onto")
    low, high = np.floor(ijk.min(axis=1)).astype(int), np.ceil(ijk.max(axis=1)).astype(int)
    start_zyx, shape_zyx = low[::-1], (high - low + 1)[::-1]
    source = oriented_image_from_array(mask.astype(np.uint8), ImageGeometry.from_ijk_to_ras(matrix), first_zyx)
    reference = oriented_image_from_array(np.zeros(tuple(shape_zyx), np.uint8), ImageGeometry.from_ijk_to_ras(grid),
                                          start_zyx)
    resampled = slicer.vtkOrientedImageData()
    slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
        source, reference, resampled, False, False)
    moved, first = _segment_mask_box(resampled, 1)
    return moved, first


def segment_voxels_fingerprint(segmentation_node, segment_id: str, grid: Optional[np.ndarray] = None) -> str:
    """A digest of one segment's voxels (in the segmentation's own frame): the grid's image-to-world matrix, the IJK box
    of the segment's voxels and their 0/1 mask in it. Equal before and after exactly when the segment's voxels did not
    change: other segments drawn into a shared layer (another label value, a wider extent) do not change it, a Segment
    Editor edit does. ``grid`` (4x4, :func:`segment_grid`): the grid to take the voxels on; a labelmap stored on
    another grid (the .seg.nrrd storage node moves every layer onto a user's finer one) is moved onto it first, so
    that whole-number oversampling does not count as an edit; voxels that do not come back whole when moved there and
    back (part of a ``grid`` voxel drawn or erased on a finer grid: Segment Editor with oversampling) add their own
    digest, so such an edit counts (taking one sub-voxel per voxel, a tumor trimmed by 0.5 mm on a 2x grid read as
    not edited, and a later run replaced the reader's edit without a word). '' for a segment that is not there or has
    no labelmap; ``"empty"`` for one without voxels."""
    segment, image = _segment_labelmap(segmentation_node, segment_id)
    if image is None:
        return ""
    mask, first = _segment_mask_box(image, segment.GetLabelValue())
    matrix = segment_grid(segmentation_node, segment_id)
    finer = None  # the voxels on their own grid, when moving them onto ``grid`` loses part of them
    if mask is not None and grid is not None and not np.allclose(matrix, grid, atol=1e-6):
        own, own_first, own_matrix = mask, first, matrix
        mask, first = _mask_resampled(mask, first, matrix, np.asarray(grid, dtype=float))
        matrix = np.asarray(grid, dtype=float)
        back = (None, None) if mask is None else _mask_resampled(mask, first, matrix, own_matrix)
        if not _same_box_mask(back, (own, own_first)):
            finer = own_matrix, own_first, own  # not whole voxels of ``grid``: edited on a finer grid
    if mask is None:
        return "empty" if finer is None else _box_mask_digest(*finer).hexdigest()
    digest = _box_mask_digest(matrix, first, mask)
    if finer is not None:  # an edit of part of a voxel of ``grid`` (Segment Editor with oversampling) is an edit
        digest.update(_box_mask_digest(*finer).digest())
    return digest.hexdigest()


def _box_mask_digest(matrix: np.ndarray, first: np.ndarray, mask: np.ndarray):
    """SHA-1 of a box mask's grid (4x4 image-to-world, to 6 decimals), its first voxel IJK, its shape and its voxels."""
    import hashlib

    digest = hashlib.sha1(np.round(matrix, 6).tobytes())
    digest.update(np.asarray(first, np.int64).tobytes() + np.array(mask.shape, np.int64).tobytes())
    digest.update(np.packbits(mask).tobytes())
    return digest


def _same_box_mask(a: Tuple[Optional[np.ndarray], Any], b: Tuple[Optional[np.ndarray], Any]) -> bool:
    """Whether two ``(box mask, first voxel IJK)`` pairs (as :func:`_segment_mask_box` gives them) hold the same
    voxels."""
    (mask_a, first_a), (mask_b, first_b) = a, b
    if mask_a is None or mask_b is None:
        return mask_a is None and mask_b is None
    return mask_a.shape == mask_b.shape and np.array_equal(np.asarray(first_a), np.asarray(first_b)) \
        and np.array_equal(mask_a, mask_b)


RESULT_VOXELS_ATTRIBUTE = TABLE_ATTRIBUTE_PREFIX + "resultVoxels"
"""On a segmentation node: JSON ``{segment ID: [segment_voxels_fingerprint, its grid]}`` of this tool's segments as the
last run wrote them (saved with the scene), so that a later run can say which of them were edited since."""


def _record_result_voxels(segmentation_node) -> None:
    """Store the fingerprints of this tool's segments as just written, with the grid they are on
    (:data:`RESULT_VOXELS_ATTRIBUTE`: ``{segment ID: [digest, 16 matrix elements row by row]}``)."""
    import json

    recorded = {}
    for spec in SEGMENTS:
        grid = segment_grid(segmentation_node, spec.segment_id)
        if grid is not None:
            recorded[spec.segment_id] = [segment_voxels_fingerprint(segmentation_node, spec.segment_id),
                                         [float(v) for v in grid.ravel()]]
    segmentation_node.SetAttribute(RESULT_VOXELS_ATTRIBUTE, json.dumps(recorded, sort_keys=True))


def segments_edited_since_result(segmentation_node) -> List[str]:
    """Names (as they are now) of this tool's segments whose voxels differ from what the last run wrote into
    ``segmentation_node`` (:data:`RESULT_VOXELS_ATTRIBUTE`): a reader's corrections in Segment Editor, which another run
    into the node would replace. [] when the node records no run (made before this record, or not by this tool, or a
    record edited by hand that is no JSON object of such entries, or whose grids are no voxel grid the segments can be
    moved onto: :func:`_recorded_grid`) or nothing of it was edited; a segment deleted since is not listed."""
    import json

    if segmentation_node is None:
        return []
    try:
        recorded = json.loads(segmentation_node.GetAttribute(RESULT_VOXELS_ATTRIBUTE) or "{}")
        if not isinstance(recorded, dict):  # a list, number or null: 'no attribute items' ended the Segment click
            return []
        recorded = {segment_id: (digest, _recorded_grid(grid)) for segment_id, (digest, grid) in recorded.items()}
    except (ValueError, TypeError, RecursionError, InputError):  # edited by hand (nested thousands deep too)
        return []
    segmentation = segmentation_node.GetSegmentation()
    edited = []
    for segment_id, (digest, grid) in sorted(recorded.items()):
        segment = segmentation.GetSegment(segment_id)
        try:
            fingerprint = segment_voxels_fingerprint(segmentation_node, segment_id, grid) if segment is not None \
                else digest
        except (MemoryError, OverflowError) as exc:  # a grid edited to far finer voxels, or placed 1e300 mm away
            log.info("%s of %s holds a grid its segments cannot be moved onto (edited by hand?), read as no record: "
                     "%s", RESULT_VOXELS_ATTRIBUTE, segmentation_node.GetName(), type(exc).__name__)
            return []
        if fingerprint != digest:
            edited.append(segment.GetName() or segment_id)
    return edited


def _recorded_grid(values: Any) -> np.ndarray:
    """A grid of :data:`RESULT_VOXELS_ATTRIBUTE` (16 numbers, the image-to-world 4x4 row by row, mm) as a 4x4 array;
    ValueError (numpy's LinAlgError too), TypeError or InputError when it is no finite invertible voxel grid (edited
    by hand): a singular or NaN one raised from the Segment button's question and the click did nothing."""
    grid = np.asarray(values, dtype=float).reshape(4, 4)
    if not (np.all(np.isfinite(grid)) and np.all(np.isfinite(np.linalg.inv(grid)))):
        raise ValueError("no finite invertible 4x4")
    ImageGeometry.from_ijk_to_ras(grid)  # InputError or ValueError for a zero, NaN or infinite voxel size
    return grid


def require_output_segments(segmentation_node) -> None:
    """Refuse a segmentation with neither a "Liver" nor a "Liver tumor" segment (this tool's or the user's, by
    name): measured or compared, it was read as an empty map."""
    if not existing_output_segment_ids(segmentation_node):
        raise InputError(f"'{segmentation_node.GetName()}' has no Liver or Liver tumor segment; segment its CT first "
                         f"(or name its segments 'Liver' and 'Liver tumor').")


REFERENCE_GRID_TOLERANCE = 1e-3
"""Tolerance (voxels of the reference grid, and per unit of a direction cosine) of :func:`grid_holds_grid_exactly`."""


def grid_holds_grid_exactly(reference_ijk_to_ras: np.ndarray, geometry: ImageGeometry) -> bool:
    """Whether a label map on ``geometry`` keeps every voxel when resampled (nearest neighbour) onto the grid of the
    4 x 4 ``reference_ijk_to_ras``: the reference's axes are ``geometry``'s (either sign), each of its spacings is
    ``geometry``'s divided by a whole number k, and its voxel centres fall k to a voxel, none on a voxel's face (the
    same grid shifted by whole voxels; Segment Editor's oversampling)."""
    grid = np.asarray(geometry.ijk_to_ras(), dtype=np.float64)
    reference = np.asarray(reference_ijk_to_ras, dtype=np.float64)
    g_spacing, r_spacing = np.linalg.norm(grid[:3, :3], axis=0), np.linalg.norm(reference[:3, :3], axis=0)
    if np.any(r_spacing <= 0) or np.any(g_spacing <= 0):
        return False
    cosines = np.abs(np.sum((grid[:3, :3] / g_spacing) * (reference[:3, :3] / r_spacing), axis=0))
    factors = g_spacing / r_spacing
    if np.any(np.abs(cosines - 1.0) > REFERENCE_GRID_TOLERANCE) or \
            np.any(np.abs(factors - np.round(factors)) > REFERENCE_GRID_TOLERANCE) or np.any(np.round(factors) < 1):
        return False
    first = np.linalg.solve(reference, grid[:, 3])[:3]  # the first voxel's centre, in the reference's indices
    offset = first - (np.round(factors) + 1.0) / 2.0
    return bool(np.all(np.abs(offset - np.round(offset)) <= REFERENCE_GRID_TOLERANCE))


def result_resampled_on_saving(segmentation_node, geometry: ImageGeometry, replaced_ids: Sequence[str] = ()) -> bool:
    """Whether this tool's result on ``geometry`` (the CT's grid, world) written into ``segmentation_node`` would lose
    voxels when the scene is saved: the node holds segments of the user's (not this tool's, nor a same-named one it
    replaces, nor ``replaced_ids``), so :func:`labels_to_segmentation_node` keeps its reference grid, and Slicer
    resamples every segment onto that grid when it saves, ours included; where that grid does not hold the CT's
    exactly (:func:`grid_holds_grid_exactly`: another series' grid, not an oversampling of the CT's) a result lost 15
    lesions to 6 and gained 5 % liver on reload (the Slicer glue audit). A node that records no reference grid (one
    made by Slicer's label map import, ``ImportLabelmapToSegmentationNode``) is saved on a grid Slicer derives from
    its segments: it saved the result onto a user segment's grid (a 0.59 mL lesion reloaded as 0.39 mL; the Slicer
    module audit), where this once answered False. Such a node is judged by each non-empty user segment's own grid,
    conservatively: True where any does not hold the CT's, though Slicer may then save on another segment's grid
    that does (the result then goes into a new segmentation where it need not have; Slicer's
    ``DetermineCommonLabelmapGeometry`` would say which grid, but its Python form is not in every Slicer this module
    supports). False where the user's segments are empty."""
    import slicer

    from .segnrrd import reference_grid_from_text

    segmentation = segmentation_node.GetSegmentation()
    ours = set(_OUR_SEGMENT_IDS) | set(existing_output_segment_ids(segmentation_node)) | set(replaced_ids)
    users = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())
             if segmentation.GetNthSegmentID(i) not in ours]
    if not users:
        return False
    text = segmentation.GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())  # as a .seg.nrrd header holds it
    ct_grid = geometry_in_node_frame(geometry, segmentation_node)
    if not text:
        grids = [segment_grid(segmentation_node, segment_id) for segment_id in users
                 if _labelmap_has_voxels(_segment_labelmap(segmentation_node, segment_id)[1])]
        return any(grid is not None and not grid_holds_grid_exactly(grid, ct_grid) for grid in grids)
    found = reference_grid_from_text(text)
    if found is None:
        return False
    return not grid_holds_grid_exactly(found[0].ijk_to_ras(), ct_grid)


def _labelmap_has_voxels(image) -> bool:
    """Whether an oriented image (a segment's labelmap, or None) spans any voxel: an empty segment's has an empty
    extent (and a grid of no meaning, which Slicer does not save on)."""
    if image is None:
        return False
    extent = image.GetExtent()
    return all(extent[2 * axis] <= extent[2 * axis + 1] for axis in range(3))


def _set_reference_geometry(segmentation_node, geometry: ImageGeometry, shape_zyx: Sequence[int]) -> None:
    """Make ``geometry`` with extent ``shape_zyx`` the segmentation's reference grid (no voxels allocated)."""
    import slicer
    nz, ny, nx = (int(s) for s in shape_zyx)
    reference = slicer.vtkOrientedImageData()
    reference.SetExtent(0, nx - 1, 0, ny - 1, 0, nz - 1)
    reference.SetImageToWorldMatrix(_numpy_to_matrix(geometry.ijk_to_ras()))
    segmentation_node.GetSegmentation().SetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(),
        slicer.vtkSegmentationConverter.SerializeImageGeometry(reference))


def _apply_segment_spec(segment, spec: SegmentSpec) -> None:
    """Name, colour and terminology of one of our segments. Name and colour are chosen, not generated: a new
    vtkSegment says both were auto-generated (written as ``NameAutoGenerated:=1`` in a .seg.nrrd), which lets
    Slicer replace them when it updates a segment from its terminology."""
    segment.SetName(spec.name)
    segment.SetColor(*spec.color)
    segment.SetTag(segment.GetTerminologyEntryTagName(), spec.terminology_tag())
    if hasattr(segment, "SetNameAutoGenerated"):
        segment.SetNameAutoGenerated(False)
        segment.SetColorAutoGenerated(False)


def _labelmap_name() -> str:
    import slicer
    return slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()


def _source_representation(segmentation) -> str:
    """The segmentation's source representation's name (Slicer < 5.4 calls it master)."""
    if hasattr(segmentation, "GetSourceRepresentationName"):
        return segmentation.GetSourceRepresentationName()
    return segmentation.GetMasterRepresentationName()


def _make_labelmap_the_source(segmentation) -> None:
    """Make binary labelmap the source representation of a segmentation that has no segments (one made for
    surfaces, or emptied): written into as it was, its labels were stored as surfaces built from them, and a
    32-voxel tumor rebuilt from its surface had no voxel left."""
    if segmentation.GetNumberOfSegments() or _source_representation(segmentation) == _labelmap_name():
        return
    if hasattr(segmentation, "SetSourceRepresentationName"):
        segmentation.SetSourceRepresentationName(_labelmap_name())
    else:
        segmentation.SetMasterRepresentationName(_labelmap_name())


def check_labelmap_output(segmentation_node) -> None:
    """Refuse an output segmentation whose segments are stored as another representation (closed surfaces from
    an STL, planar contours): writing voxel labels into it would convert them (small lesions would be lost). The
    panel calls it before a run starts; before, the refusal came after the whole run."""
    if segmentation_node is None:
        return
    segmentation = segmentation_node.GetSegmentation()
    source_name = _source_representation(segmentation)
    if segmentation.GetNumberOfSegments() and source_name != _labelmap_name():
        raise InputError(f"Segmentation '{segmentation_node.GetName()}' stores its segments as '{source_name}', not as "
                         f"labelmaps; writing voxel labels into it would convert them (small lesions would be lost). "
                         f"Choose 'Create new' or a labelmap-based segmentation as the output.")


def labels_to_segmentation_node(scene, labels_zyx: np.ndarray, geometry: ImageGeometry,
                                segmentation_node=None, reference_volume_node=None,
                                replace_existing: bool = True, name: str = "Liver segmentation",
                                remove_segment_ids: Sequence[str] = ()):
    """Write a 0/1/2 label map into a segmentation node as the segments "Liver" and "Liver tumor".

    ``labels_zyx``: ``(z, y, x)`` integer array on ``geometry``'s grid (LPS geometry, world coordinates).
    ``segmentation_node``: ``None`` creates a new node called ``name`` with display nodes (under the
    reference volume's linear parent transform, if any, so that it follows the CT); an existing node keeps
    its other segments untouched, voxel for voxel, and only this tool's two segments (fixed IDs, see
    :data:`SEGMENTS`) are replaced; with ``replace_existing=False`` existing ones raise
    :class:`OutputExistsError`. A node under a parent transform gets the labels in its own coordinates, so
    they show where the CT is.
    ``remove_segment_ids``: segments of an existing node replaced with ours, such as the pieces Segment Editor split
    off an earlier result (:func:`split_off_segments`); those still in the node are removed (with
    ``replace_existing=False`` they raise :class:`OutputExistsError` as ours do).
    ``reference_volume_node``: recorded as the segmentation's source volume (Segment Editor uses it).
    Both segments are always created (possibly empty) with Slicer's colors and SNOMED CT terminology, each
    in its own labelmap layer: written into a layer shared with the user's segments, Slicer would resample
    that whole layer onto the CT's grid (erasing segments drawn on a finer grid).
    Returns the segmentation node.
    """
    import slicer
    labels = _check_labels(labels_zyx)
    created = segmentation_node is None
    if created:
        segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        segmentation_node.CreateDefaultDisplayNodes()
    try:
        present = existing_output_segment_ids(segmentation_node)
        doomed = [i for i in remove_segment_ids if segmentation_node.GetSegmentation().GetSegment(i) is not None
                  and i not in _OUR_SEGMENT_IDS and i not in present]
        if (present or doomed) and not replace_existing:
            raise OutputExistsError(f"Segmentation '{segmentation_node.GetName()}' already has the segments "
                                    f"{present + doomed}; allow replacing them or choose a new output segmentation.")
        if created and reference_volume_node is not None and reference_volume_node.GetParentTransformNode():
            node_to_world(reference_volume_node)  # refuses a non-linear transform
            segmentation_node.SetAndObserveTransformNodeID(reference_volume_node.GetTransformNodeID())
        local = geometry_in_node_frame(geometry, segmentation_node)
    except Exception:
        if created:  # with its display node: removing the segmentation alone left that in the scene
            display = segmentation_node.GetDisplayNode()
            scene.RemoveNode(segmentation_node)
            if display is not None and scene.IsNodePresent(display):
                scene.RemoveNode(display)
        raise
    segmentation = segmentation_node.GetSegmentation()
    check_labelmap_output(segmentation_node)
    # a given node without a display node (made by a script) gets one once the result is to be written: it was
    # written and never shown (this does nothing to a node that has one; a refused run leaves the node as it was)
    segmentation_node.CreateDefaultDisplayNodes()
    for segment_id in doomed:
        segmentation.RemoveSegment(segment_id)
    _make_labelmap_the_source(segmentation)
    labelmap_name = _labelmap_name()
    if segmentation.GetNumberOfSegments() == len(present):  # nothing of the user's: our grid is the grid
        _set_reference_geometry(segmentation_node, local, labels.shape)
    if reference_volume_node is not None:
        segmentation_node.SetNodeReferenceID(segmentation_node.GetReferenceImageGeometryReferenceRole(),
                                             reference_volume_node.GetID())
    organ_box = _box_of(labels >= 1)
    replaced = False
    for spec in SEGMENTS:
        mask = _segment_mask_in_its_box(labels, organ_box, spec.label, local)
        for existing_id in _existing_segment_ids(segmentation, spec):
            if existing_id != spec.segment_id:  # a user's "Liver": replaced by ours (the panel asked first)
                segmentation.RemoveSegment(existing_id)
        segment = segmentation.GetSegment(spec.segment_id)
        if segment is not None:
            # the segment object stays (its display settings and tags with it), moved out of any layer it shares
            # with the user's segments, and its own labelmap replaced. Its label value becomes 1, the mask's:
            # a segment read from a .seg.nrrd shares a layer, where the tumor is 2, and the separated layer kept
            # 2, so the new 0/1 mask showed no tumor at all
            segmentation.SeparateSegmentLabelmap(spec.segment_id)
            _apply_segment_spec(segment, spec)
            segment.AddRepresentation(labelmap_name, mask)
            segment.SetLabelValue(1)
            replaced = True
            continue
        segment = slicer.vtkSegment()
        _apply_segment_spec(segment, spec)
        segment.AddRepresentation(labelmap_name, mask)
        if not segmentation.AddSegment(segment, spec.segment_id):
            raise RuntimeError(f"Slicer could not store the '{spec.name}' segment.")
    if replaced:
        _invalidate_derived_representations(segmentation)
    _record_result_voxels(segmentation_node)
    return segmentation_node


def _invalidate_derived_representations(segmentation) -> None:
    """Drop representations converted from the labelmaps (closed surfaces), so that they are made again from the
    new labels: replacing a segment's labelmap object left the previous run's 3D surface on show."""
    invalidate = getattr(segmentation, "InvalidateNonSourceRepresentations", None) or \
        getattr(segmentation, "InvalidateNonMasterRepresentations")  # Slicer < 5.4 calls it master
    invalidate()
    segmentation.Modified()


def segment_mask(segmentation_node, segment_id: str, geometry: ImageGeometry,
                 shape_zyx: Tuple[int, int, int]) -> np.ndarray:
    """A segment's voxels resampled (nearest neighbour) onto a grid: ``(z, y, x)`` uint8 0/1.

    ``geometry`` (LPS, world coordinates) and ``shape_zyx`` describe the grid; a segmentation under a linear
    parent transform is read where it shows in the world. An empty segment gives all zeros.
    """
    import slicer
    from vtk.util import numpy_support
    grid = oriented_image_from_array(np.zeros(shape_zyx, np.uint8), geometry)
    out = slicer.vtkOrientedImageData()
    ok = slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
        segmentation_node, segment_id, out, True)  # True: in world coordinates (parent transforms applied)
    if not ok:
        raise KeyError(f"segment '{segment_id}' has no binary labelmap")
    resampled = slicer.vtkOrientedImageData()
    # nearest neighbour; padImage=False: the output takes the reference grid's extent (with True it is the union of
    # both extents, so a segment under a transform that moved it partly off the grid could not be reshaped)
    slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
        out, grid, resampled, False, False)
    scalars = resampled.GetPointData().GetScalars()
    if scalars is None:  # nothing of the segment on the grid
        return np.zeros(shape_zyx, np.uint8)
    arr = numpy_support.vtk_to_numpy(scalars).reshape(shape_zyx)
    # shared labelmaps hold the segment's label value, not 1: compare against it
    label_value = segmentation_node.GetSegmentation().GetSegment(segment_id).GetLabelValue()
    return (arr == label_value).astype(np.uint8)


def segmentation_to_labels(segmentation_node, geometry: ImageGeometry,
                           shape_zyx: Tuple[int, int, int]) -> np.ndarray:
    """Inverse of :func:`labels_to_segmentation_node`: a ``(z, y, x)`` uint8 0/1/2 map on the given grid. A
    segment is ours by its fixed ID or, as :func:`existing_output_segment_ids` and the ``.seg.nrrd`` reader take
    it, by its name ("Liver" drawn in the Segment Editor has ID Segment_1: it was accepted for measuring, then
    read as empty)."""
    labels = np.zeros(shape_zyx, np.uint8)
    segmentation = segmentation_node.GetSegmentation()
    # ours and the same-named ones (every 'Liver' in any case), then more segments named as the .seg.nrrd reader
    # takes them ('Liver tumor -_1' from Split islands, 'Metastasis'): the panel's lesion table and follow-up
    # count what measure counts; liver first, tumor over it
    others = _other_segments(segmentation)
    for spec in SEGMENTS:
        segment_ids = _measured_segment_ids(segmentation, spec) + [
            segment_id for segment_id, _, label in others if label == spec.label]
        for segment_id in segment_ids:
            labels[segment_mask(segmentation_node, segment_id, geometry, shape_zyx) > 0] = spec.label
    return labels


def _other_segments(segmentation) -> List[Tuple[str, str, Optional[int]]]:
    """``(segment ID, name, label by name)`` of each segment that is not this tool's "Liver" / "Liver tumor" (by ID
    or name); the label (1 liver, 2 tumor, None neither) is :func:`~.segnrrd.label_of_segment`'s (by the segment's
    terminology where its name says nothing, as a saved ``.seg.nrrd`` reads)."""
    from .segnrrd import label_of_segment

    ours = {segment_id for spec in SEGMENTS for segment_id in _measured_segment_ids(segmentation, spec)}
    found = []
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        if segment_id not in ours:
            segment = segmentation.GetSegment(segment_id)
            name = segment.GetName() or ""
            # its terminology as a .seg.nrrd stores it, read where the name says nothing ('Segment_1')
            tags = f"TerminologyEntry:{segment_terminology_tag(segment)}|"
            found.append((segment_id, name, label_of_segment({"ID": segment_id, "Name": name, "Tags": tags})))
    return found


def touching_tumor_segments_warning(segmentation_node, geometry: ImageGeometry,
                                    shape_zyx: Tuple[int, int, int]) -> str:
    """The warning naming the tumor segments of ``segmentation_node`` (this tool's and those named as tumors) whose
    voxels touch on the CT grid (``geometry``, ``shape_zyx``), as ``measure`` names them in a ``.seg.nrrd``; ''
    when fewer than two or none touch. The panel hands the segments over as one label map, so its child never saw
    them apart: a tumor split into two touching segments was one lesion in the table without a word."""
    from .segnrrd import touching_segments_text

    segmentation = segmentation_node.GetSegmentation()
    tumor_ids = _tumor_segment_ids(segmentation)
    if len(tumor_ids) < 2:
        return ""
    # one int16 map of which segment holds each voxel (a voxel two segments share: the later one's), not a mask per
    # segment: 50 split islands on a 600-slice CT held 50 full-volume masks at once
    owner = np.zeros(shape_zyx, np.int16)
    for number, segment_id in enumerate(tumor_ids, start=1):
        owner[segment_mask(segmentation_node, segment_id, geometry, shape_zyx) > 0] = number
    names = [segmentation.GetSegment(segment_id).GetName() or segment_id for segment_id in tumor_ids]
    return touching_segments_text(f"'{segmentation_node.GetName()}'", owner > 0,
                                  ((name, lambda n=number: owner == n) for number, name in enumerate(names, start=1)))


def _tumor_segment_ids(segmentation) -> List[str]:
    """The IDs of the segments measured as tumor: this tool's and those named as tumors (as the hand-over to the
    measuring child labels them 2)."""
    tumor_spec = next(spec for spec in SEGMENTS if spec.label == 2)
    return _measured_segment_ids(segmentation, tumor_spec) + [
        segment_id for segment_id, _, label in _other_segments(segmentation) if label == 2]


def other_organ_tumor_warning(segmentation_node) -> str:
    """The warning naming the tumor segments of ``segmentation_node`` (this tool's and those named as tumors) whose
    names mention another organ (``segnrrd.names_tumor_of_another_organ``: 'Kidney tumor'), as ``measure`` names
    them in a ``.seg.nrrd``; '' when none does. The panel hands the segments over as one label map, whose child
    never saw their names: such a segment became a liver lesion in the lesion table without the word the command
    line gives."""
    from .segnrrd import names_tumor_of_another_organ, other_organ_tumor_text

    segmentation = segmentation_node.GetSegmentation()
    names = [segmentation.GetSegment(segment_id).GetName() or segment_id for segment_id in _tumor_segment_ids(segmentation)]
    return other_organ_tumor_text([name for name in names if names_tumor_of_another_organ(name)],
                                  f"'{segmentation_node.GetName()}'")


def left_out_warning(segmentation_node) -> str:
    """The panel's warning naming the segments of ``segmentation_node`` that measuring and comparing leave out
    (:func:`segments_left_out`; '' when there are none), in the ``.seg.nrrd`` reader's words."""
    from .segnrrd import left_out_text

    return left_out_text(segments_left_out(segmentation_node), f"'{segmentation_node.GetName()}'")


def segments_left_out(segmentation_node) -> List[str]:
    """Names of the segments :func:`segmentation_to_labels` leaves out: neither this tool's "Liver" / "Liver tumor"
    nor a tumor by name (:func:`~.segnrrd.names_tumor`). The panel warns with them: a hand-drawn lesion its reader
    named 'HCC' or 'Lesion no 2' was left out of the lesion table without a word."""
    return [name or segment_id for segment_id, name, label in _other_segments(segmentation_node.GetSegmentation())
            if label is None]


def show_segmentation_in_3d(segmentation_node) -> None:
    """Create the closed-surface representation so the segments also show in 3D views."""
    segmentation_node.CreateClosedSurfaceRepresentation()


def parse_terminology_tag(tag: str) -> Dict[str, Any]:
    """Split a Slicer terminology tag (see :meth:`SegmentSpec.terminology_tag`) into its parts.

    Returns ``{"context", "category", "type", "type_modifier", "anatomic_context", "anatomic_region",
    "anatomic_region_modifier"}``; codes are ``(scheme, value, meaning)`` triples or ``None`` when empty.
    Raises ``ValueError`` when the tag does not have the seven ``~``-separated fields."""
    fields = tag.split("~")
    if len(fields) != 7:
        raise ValueError(f"a terminology tag has 7 '~'-separated fields; got {len(fields)} in {tag!r}")

    def code(text: str) -> Optional[Tuple[str, str, str]]:
        parts = text.split("^")
        if len(parts) != 3:
            raise ValueError(f"a terminology code is 'scheme^value^meaning'; got {text!r}")
        return None if not parts[0] and not parts[1] else (parts[0], parts[1], parts[2])

    return {"context": fields[0], "category": code(fields[1]), "type": code(fields[2]),
            "type_modifier": code(fields[3]), "anatomic_context": fields[4], "anatomic_region": code(fields[5]),
            "anatomic_region_modifier": code(fields[6])}


def segment_terminology_tag(segment) -> str:
    """The terminology tag string stored on a ``vtkSegment`` ('' when there is none)."""
    import vtk
    value = vtk.reference("")
    if not segment.GetTag(segment.GetTerminologyEntryTagName(), value):
        return ""
    return str(value)


# --- the tumor probability volume ---------------------------------------------------------------------

PROBABILITY_COLOR_NODE_ID = "vtkMRMLPETProceduralColorNodePET-Heat"
PROBABILITY_MAP_ATTRIBUTE = "LiverTumorSeg.TumorProbability"
"""Node attribute (value "1") that marks a volume :func:`probability_volume_node` made, so that a later result
without a map can take an earlier map off the slice views (:func:`hide_probability_maps`)."""


def probability_volume_node(scene, probability_zyx: np.ndarray, geometry: ImageGeometry,
                            name: str = "Tumor probability", colors_logic=None, threshold: float = 0.05,
                            node=None, follow=None):
    """A scalar volume node showing a tumor probability map (0..1) as a heat map.

    ``probability_zyx``: ``(z, y, x)`` on ``geometry``'s grid (LPS, world): floats in 0..1, or uint8 255 x p as
    ``segment --probabilities`` writes it; the node holds float32 0..1 either way (:func:`_probability_scalars`).
    Display: colour table :data:`PROBABILITY_COLOR_NODE_ID`, window 0..1, voxels below ``threshold`` transparent
    in slice views.
    ``colors_logic`` (Slicer's color logic): adds a colour bar ("color legend") titled ``name``.
    ``node``: an earlier probability volume to refill (voxels, geometry, name) instead of adding one.
    ``follow``: the CT node; the map goes under the CT's linear parent transform (its grid stored in the
    transform's frame), so that it moves with the CT, as the segmentation does (it stayed behind, 50 mm off after
    the CT's transform changed). Returns the node."""
    import vtk
    array = _checked_probability_map(probability_zyx)
    if node is not None and node.GetClassName() != "vtkMRMLScalarVolumeNode":  # before anything of it is changed
        raise InputError(f"node '{node.GetName()}' is a {node.GetClassName()}; a probability map is refilled only "
                         f"into a scalar volume node (an earlier one this function made), so the label map or "
                         f"other volume stays as it is.")
    nz, ny, nx = array.shape
    image = vtk.vtkImageData()
    image.SetDimensions(nx, ny, nz)
    image.GetPointData().SetScalars(_probability_scalars(array))
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    else:
        node.SetName(name)
    transform_id = None
    if follow is not None and follow.GetParentTransformNode() is not None:
        node_to_world(follow)  # refuses a non-linear transform
        transform_id = follow.GetTransformNodeID()
    node.SetAndObserveTransformNodeID(transform_id)
    node.SetAndObserveImageData(image)
    node.SetIJKToRASMatrix(_numpy_to_matrix(geometry_in_node_frame(geometry, node).ijk_to_ras()))
    node.SetAttribute(PROBABILITY_MAP_ATTRIBUTE, "1")
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    if scene.GetNodeByID(PROBABILITY_COLOR_NODE_ID) is not None:
        display.SetAndObserveColorNodeID(PROBABILITY_COLOR_NODE_ID)
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 1.0)
    display.SetLowerThreshold(float(threshold))
    display.SetUpperThreshold(1.0)
    display.ApplyThresholdOn()
    if colors_logic is not None:
        legend = colors_logic.AddDefaultColorLegendDisplayNode(node)
        if legend is not None:
            legend.SetTitleText(name)
            legend.SetLabelFormat("%.1f")
    return node


PROBABILITY_FOREGROUND_OPACITY = 0.5
"""Foreground opacity of a tumor probability map over its CT in the slice views."""


def show_result_in_slice_views(scene, ct_node, probability_node=None) -> List[Any]:
    """Show a result on its CT ``ct_node`` in the slice views of ``scene`` without taking a view from the user: the
    CT becomes the background only when no slice view shows it (then in every view, as Slicer's
    ``setSliceViewerLayers(background=...)``); views that show another volume keep it, and its foreground, when one
    already shows the CT. ``probability_node``: put as the foreground (opacity :data:`PROBABILITY_FOREGROUND_OPACITY`)
    of the views that show the CT; None: tumor probability maps taken off their foreground
    (:func:`hide_probability_maps`). Returns the slice composite nodes that show the CT.

    A result used to set the CT as background of every view, so a layout with the baseline CT in one view and the
    follow-up in the others showed the follow-up everywhere after segmenting it (and the map over the baseline)."""
    ct_id = ct_node.GetID()
    views = _slice_composites(scene)
    showing = [view for view in views if view.GetBackgroundVolumeID() == ct_id]
    if not showing:
        for view in views:
            view.SetBackgroundVolumeID(ct_id)
        showing = views
    if probability_node is None:
        hide_probability_maps(scene, views=showing)
        return showing
    for view in showing:
        view.SetForegroundVolumeID(probability_node.GetID())
        view.SetForegroundOpacity(PROBABILITY_FOREGROUND_OPACITY)
    return showing


def _slice_composites(scene) -> List[Any]:
    """The slice composite nodes (one per slice view: its background and foreground volumes) of ``scene``."""
    composites = scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    return [composites.GetItemAsObject(index) for index in range(composites.GetNumberOfItems())]


def hide_probability_maps(scene, keep=None, views=None) -> int:
    """Take every tumor probability map (:data:`PROBABILITY_MAP_ATTRIBUTE`) other than ``keep`` out of the slice
    views' foreground layer (``views``: those slice composite nodes only; default all of ``scene``'s); other
    foreground volumes (the user's own overlays) stay. A result without a map left the previous run's map shown over
    it (Slicer keeps the current foreground when none is given), on the same CT or another one. The map nodes
    themselves stay in the scene. Returns how many views changed."""
    changed = 0
    for composite in (_slice_composites(scene) if views is None else views):
        volume_id = composite.GetForegroundVolumeID()
        volume = scene.GetNodeByID(volume_id) if volume_id else None
        if volume is None or volume is keep or volume.GetAttribute(PROBABILITY_MAP_ATTRIBUTE) != "1":
            continue
        composite.SetForegroundVolumeID(None)
        changed += 1
    return changed


def _checked_probability_map(probability_zyx: Any) -> np.ndarray:
    """``probability_zyx`` as an array, refused (InputError, before any node is made or refilled) unless it is a
    3-D ``(z, y, x)`` map of uint8 levels (255 x p) or of real numbers in 0..1: a 0/1/2 label map, a 2-D slice or a
    map with NaN was shown as a heat map of wrong values (or failed inside VTK)."""
    array = np.asarray(probability_zyx)
    if array.ndim != 3 or 0 in array.shape:
        raise InputError(f"A probability map must be a 3-D (z, y, x) array with voxels, got shape {array.shape}.")
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind not in "fiu" or array.dtype == np.bool_:
        raise InputError(f"A probability map holds numbers (uint8 255 x p, or 0..1), not {array.dtype}.")
    low, high = float(np.min(array)), float(np.max(array))
    if not (np.isfinite(low) and np.isfinite(high)):
        raise InputError("The probability map holds NaN or infinite values; it is not a probability map.")
    if low < -PROBABILITY_TOLERANCE or high > 1.0 + PROBABILITY_TOLERANCE:
        raise InputError(f"The probability map's values run from {low:.9g} to {high:.9g}; probabilities lie in 0..1 "
                         f"(uint8 maps as 255 x p). Is it a label map?")
    return array


PROBABILITY_TOLERANCE = 1e-6
"""How far past 0..1 a float probability map may reach and still be shown (clipped to 0..1): a float64 softmax
can give 1 + 2**-52, which was refused with 'values run from 0 to 1; probabilities lie in 0..1'."""


def _probability_scalars(probability_zyx: np.ndarray):
    """A ``vtkFloatArray`` of the probabilities (0..1) of a ``(z, y, x)`` map in VTK's voxel order (x fastest),
    written straight into it: a uint8 map (255 x p) is divided by 255 in float32 (``float32(v) / 255``, as
    ``astype(np.float32) / 255.0`` gives it), other maps are cast to float32. No whole-volume float copy is made
    beside the array VTK keeps (the module made two, 8 bytes a voxel, on top of an int16 read of the map)."""
    import vtk
    from vtk.util import numpy_support
    scalars = vtk.vtkFloatArray()
    scalars.SetNumberOfComponents(1)
    scalars.SetNumberOfTuples(probability_zyx.size)
    voxels = numpy_support.vtk_to_numpy(scalars).reshape(probability_zyx.shape)  # a view of VTK's memory
    if probability_zyx.dtype == np.uint8:
        np.divide(probability_zyx, np.float32(255.0), out=voxels, dtype=np.float32)
    else:
        np.copyto(voxels, probability_zyx, casting="unsafe")
        np.clip(voxels, 0.0, 1.0, out=voxels)  # rounding past 0..1 (PROBABILITY_TOLERANCE), shown as 0 and 1
    return scalars


# --- lesion table -----------------------------------------------------------------------------------

LESION_TABLE_COLUMNS = (
    # (column name, report key, unit, description)
    ("Lesion", "id", "", "Lesion number, largest first"),
    ("Volume", "volume_ml", "mL", "Lesion volume"),
    ("Long axis", "long_axis_mm", "mm",
     "RECIST long axis: longest diameter in the axial slice where the lesion is longest (voxel centres plus one "
     "pixel)"),
    ("Short axis", "short_axis_mm", "mm", "Longest diameter perpendicular to the long axis, same slice"),
    ("RECIST target", "recist_target", "", "1 = one of the (at most 2) RECIST 1.1 target lesions of the liver"),
    ("Mean HU", "mean_hu", "HU", "Mean CT value inside the lesion"),
    ("Contrast to liver", "contrast_to_liver_hu", "HU",
     "Lesion's median CT value minus that of the liver 2-6 mm around it: negative when darker. A lesion within "
     "about 10 HU of the liver beside it is more often a false one (docs/lesion_confidence.md). nan without a CT in "
     "HU or with too little liver beside it (a number column, so the table sorts by it)"),
    ("Tumor probability", "mean_tumor_probability", "",
     "Mean tumor probability the network gave the lesion's voxels (0-1, before post-processing): low values are "
     "the least certain lesions; not a calibrated likelihood of malignancy. Empty when the report has none"),
    ("Peak tumor probability", "peak_tumor_probability", "",
     "Highest tumor probability the network gave any voxel of the lesion (0-1, before post-processing): what the "
     "lesion-confidence step reads for a model that records the peak statistic (docs/lesion_peak_probability.md); "
     "4 decimals, as near 1 the digits that tell lesions apart are the last ones. Empty when the report has none"),
    ("Centroid R", "centroid_ras_mm", "mm", "Centroid, RAS right coordinate"),
    ("Centroid A", "centroid_ras_mm", "mm", "Centroid, RAS anterior coordinate"),
    ("Centroid S", "centroid_ras_mm", "mm", "Centroid, RAS superior coordinate"),
    ("Location", "location", "",
     "Axial slice of the long axis (S in mm, as on the axial slice slider); flags a lesion cut by the scan's "
     "edge, whose size is then a lower bound, and one of water density (a simple cyst is possible, or a necrotic "
     "or cystic tumor)"),
)


# Displayed digits per numeric column (the report keeps full precision): no false precision in the panel
TABLE_DECIMALS = {"Volume": 2, "Long axis": 1, "Short axis": 1, "Mean HU": 1, "Contrast to liver": 1,
                  "Tumor probability": 2, "Peak tumor probability": 4, "Centroid R": 1, "Centroid A": 1,
                  "Centroid S": 1}
TEXT_COLUMNS = ("Location", "Tumor probability", "Peak tumor probability")  # an absent value is empty, not "nan"


def lesion_location_text(lesion: Dict[str, Any]) -> str:
    """Where to find the lesion: the report's ``location`` if given, else the axial slice of its long axis
    (``axial S ... mm``: where the views centre when the row is selected; older reports: the long axis' middle,
    else the centroid's S), a note when the scan's edge or post-processing cuts it (its size is then a lower
    bound) or when thick tilted slices cap its axial axes (``axial_axes_limited_by_slices``: no RECIST target), and
    one when it has the CT values of water (``water_density``: a simple cyst is possible, or a necrotic or
    cystic tumor)."""
    if lesion.get("location"):
        return str(lesion["location"])
    s_mm = lesion.get("axial_position_s_mm")
    if s_mm is None and (lesion_axis_end_points_ras(lesion).get("long") or lesion.get("centroid_ras_mm") is not None):
        s_mm = lesion_focus_ras(lesion)[2]
    text = "" if s_mm is None else "axial S {:.1f} mm".format(float(s_mm))
    if lesion.get("touches_scan_edge"):
        text += (", " if text else "") + "cut by scan edge"
    if lesion.get("axial_axes_limited_by_slices"):  # thick tilted slices cap its axial axes: no RECIST target
        text += (", " if text else "") + "axes limited by tilted slices"
    if lesion.get("cut_by_postprocessing"):  # its size is that of the part post-processing left
        text += (", " if text else "") + "cut by post-processing"
    if lesion.get("water_density"):  # a simple cyst is possible (inference.water_density): the warning says more
        text += (", " if text else "") + "water density: cyst?"
    return text


def _column_value(lesion: Dict[str, Any], name: str, key: str, minimum_mm: float = 10.0) -> Any:
    """One cell of the lesion table; ``minimum_mm``: the report's RECIST measurable minimum, which a long axis
    short of it is not rounded onto (:func:`~LiverTumorSegLib.inference.lesion_report.places_short_of`)."""
    if name == "Location":
        return lesion_location_text(lesion)
    value = lesion.get(key)
    if name.startswith("Centroid "):
        value = None if value is None else value["RAS".index(name[-1])]
    if name in ("Lesion", "RECIST target"):
        return int(value or 0)
    if name in TEXT_COLUMNS:
        return "" if value is None else "{:.{}f}".format(float(value), TABLE_DECIMALS[name])
    if value is None:
        return float("nan")
    decimals = TABLE_DECIMALS.get(name, 3)
    if name == "Volume":  # a 0.0025 mL lesion read 0 mL: 2 significant digits where 2 places show 0
        from .inference.lesion_report import places_keeping_nonzero
        decimals = places_keeping_nonzero(value, decimals)
    if name == "Long axis":  # a 9.988 mm lesion read 10.0 beside 'RECIST target 0'
        from .inference.lesion_report import places_short_of
        decimals = places_short_of(value, minimum_mm, decimals)
    return round(float(value), decimals)


PROBABILITY_VOLUME_ROLE = "LiverTumorSegProbability"
"""Node reference role from a segmentation to the tumor probability volume of its last run."""

EARLIER_PROBABILITY_VOLUME_ROLE = "LiverTumorSegEarlierProbability"
"""Node reference role from a segmentation to the probability volume an earlier run made for it, kept when a later run
without the map unlinked it (:data:`PROBABILITY_VOLUME_ROLE`: it no longer describes the segments), so that a run with
the map again refills it instead of adding one more volume for each time the option is turned on again."""


PROBABILITY_SEGMENTATION_ROLE = "LiverTumorSegProbabilitySegmentation"
"""Node reference role from a tumor probability volume to the segmentation it was made for. A copy of the segmentation
(the Data module's Clone) keeps the link to the map: without the map's own link back, a run into the copy refilled the
original segmentation's map, which then no longer described the original's segments."""


def _made_for(probability_node, segmentation_node) -> bool:
    """Whether ``probability_node`` was made for ``segmentation_node`` (:data:`PROBABILITY_SEGMENTATION_ROLE`; a map of
    an older scene, without that link, is taken as made for the segmentation that links to it)."""
    return probability_node.GetNodeReferenceID(PROBABILITY_SEGMENTATION_ROLE) in (None, segmentation_node.GetID())


def probability_volume_of(segmentation_node):
    """The tumor probability volume of ``segmentation_node``'s last run (what *Update lesion table* reads), or None: none,
    or the map a copy of the segmentation still links to, made for the original (whose later runs refill it)."""
    node = segmentation_node.GetNodeReference(PROBABILITY_VOLUME_ROLE)
    return node if node is not None and _made_for(node, segmentation_node) else None


def probability_volume_to_refill(segmentation_node):
    """The tumor probability volume a run with the map refills for ``segmentation_node``: the one of its last run, else
    the one an earlier run made for it (:data:`EARLIER_PROBABILITY_VOLUME_ROLE`) while it is still a scalar volume this
    module made (:data:`PROBABILITY_MAP_ATTRIBUTE`); either only when it was made for this segmentation
    (:data:`PROBABILITY_SEGMENTATION_ROLE`; a map of an older scene, without that link, too). None: a new one is made."""
    for role in (PROBABILITY_VOLUME_ROLE, EARLIER_PROBABILITY_VOLUME_ROLE):
        node = segmentation_node.GetNodeReference(role)
        if node is None or not _made_for(node, segmentation_node):
            continue  # another segmentation's map: this one is a copy of that segmentation
        if role == PROBABILITY_VOLUME_ROLE or (node.GetClassName() == "vtkMRMLScalarVolumeNode"
                                               and node.GetAttribute(PROBABILITY_MAP_ATTRIBUTE) == "1"):
            return node
    return None


def unlink_probability_volume(segmentation_node) -> None:
    """A run without the map: its last map no longer describes the segments (*Update lesion table* would read it as
    theirs), so it is unlinked, and remembered as the one to refill (:func:`probability_volume_to_refill`)."""
    earlier = segmentation_node.GetNodeReferenceID(PROBABILITY_VOLUME_ROLE)
    segmentation_node.RemoveNodeReferenceIDs(PROBABILITY_VOLUME_ROLE)
    if earlier:
        segmentation_node.SetNodeReferenceID(EARLIER_PROBABILITY_VOLUME_ROLE, earlier)


def link_probability_volume(segmentation_node, probability_node) -> None:
    """Record ``probability_node`` as the tumor probability volume of ``segmentation_node``'s last run."""
    segmentation_node.RemoveNodeReferenceIDs(EARLIER_PROBABILITY_VOLUME_ROLE)
    segmentation_node.SetNodeReferenceID(PROBABILITY_VOLUME_ROLE, probability_node.GetID())
    probability_node.SetNodeReferenceID(PROBABILITY_SEGMENTATION_ROLE, segmentation_node.GetID())


def place_beside(scene, node, reference_node) -> None:
    """Put ``node`` in the subject hierarchy folder (study) that holds ``reference_node`` (its CT), so that Data
    module and DICOM export (a DICOM SEG belongs to its CT's study) find them together. Nothing happens when
    there is no subject hierarchy or the CT lies directly under the scene."""
    import slicer
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if hierarchy is None or node is None or reference_node is None:
        return
    reference_item = hierarchy.GetItemByDataNode(reference_node)
    if not reference_item:
        return
    parent = hierarchy.GetItemParent(reference_item)
    if not parent or parent == hierarchy.GetSceneItemID():
        return
    item = hierarchy.GetItemByDataNode(node)
    if item:
        hierarchy.SetItemParent(item, parent)
    else:
        hierarchy.CreateItem(parent, node)


LESION_TABLE_SEGMENTATION_ROLE = "LiverTumorSegSegmentation"
"""Node reference role from a lesion table to the segmentation node whose lesions it lists."""

CHANGE_TABLE_SEGMENTATION_ROLES = ("LiverTumorSegBaselineSegmentation", "LiverTumorSegFollowupSegmentation")
"""Node reference roles from a follow-up change table to the two segmentations it compares."""


def _link_table(table_node, roles: Sequence[str], nodes: Sequence[Any]) -> None:
    """Record on ``table_node``, one node reference per role, the nodes its rows were made from."""
    for role, node in zip(roles, nodes):
        table_node.SetNodeReferenceID(role, node.GetID())


def _table_describes(table_node, roles: Sequence[str], nodes: Sequence[Any]) -> bool:
    """True when ``table_node`` was made from exactly these nodes (see :func:`_link_table`): only then may a new
    result for them refill it."""
    if table_node is None or any(node is None for node in nodes):
        return False
    return all(table_node.GetNodeReferenceID(role) == node.GetID() for role, node in zip(roles, nodes))


LESION_FRAME_ATTRIBUTE = TABLE_ATTRIBUTE_PREFIX + "lesionFrameToWorld"
"""On a lesion table: JSON 4x4 (row-major) from the segmentation's own coordinates to world RAS when its lesions
were measured. The report's points are world RAS of that moment; with it, a row selected after the CT's
transform changed (a registration) is shown where the lesion now is, not where it was."""


def link_lesion_table(table_node, segmentation_node) -> None:
    """Record on ``table_node`` that it lists the lesions of ``segmentation_node``, and the segmentation's frame
    (:data:`LESION_FRAME_ATTRIBUTE`) the report's world points were measured in."""
    import json

    _link_table(table_node, (LESION_TABLE_SEGMENTATION_ROLE,), (segmentation_node,))
    try:
        frame = node_to_world(segmentation_node)
    except InputError:  # a non-linear transform: the points stay world points (the run refused such nodes)
        frame = None
    table_node.SetAttribute(LESION_FRAME_ATTRIBUTE,
                            json.dumps([float(v) for v in frame.ravel()]) if frame is not None else "")
    segmentation_node.SetNodeReferenceID(OWN_LESION_TABLE_ROLE, table_node.GetID())
    segmentation_node.SetAttribute(OWN_LESION_TABLE_RECORDED_ATTRIBUTE, "1")


def lesion_table_describes(table_node, segmentation_node) -> bool:
    """True when ``table_node`` lists the lesions of ``segmentation_node`` (it, or a copy of it: see
    :func:`lesion_table_owned_by` for the one a run refills)."""
    return _table_describes(table_node, (LESION_TABLE_SEGMENTATION_ROLE,), (segmentation_node,))


OWN_LESION_TABLE_ROLE = "LiverTumorSegOwnLesionTable"
"""Node reference role from a segmentation to its own lesion table, the one a run or *Update lesion table* made for it
and refills. A copy of that table (the Data module's Clone, a script's ``Copy``) keeps the table's link to the
segmentation, so the table's link alone took the copy for the segmentation's table and refilled it, overwriting
what the user kept; the segmentation links to its own table only."""

OWN_LESION_TABLE_RECORDED_ATTRIBUTE = TABLE_ATTRIBUTE_PREFIX + "ownLesionTableRecorded"
"""On a segmentation: "1" once it links to its own lesion table (:data:`OWN_LESION_TABLE_ROLE`). Deleting that table
drops the reference; this attribute then says the segmentation has no own table any more (a copy left behind is not
taken for it), where a segmentation of a scene saved before the link existed has neither."""


def lesion_table_owned_by(table_node, segmentation_node) -> bool:
    """True when ``table_node`` is ``segmentation_node``'s own lesion table, the one a new result refills: the two link
    to each other (:func:`link_lesion_table`). A copy of the table links to the segmentation, but the segmentation not
    to it. A segmentation of a scene saved before segmentations linked to their table owns the one table that lists
    its lesions; when there are several (a copy was made), none, and a new table is made."""
    if segmentation_node is None or not lesion_table_describes(table_node, segmentation_node):
        return False
    return _owned_table(table_node, segmentation_node, OWN_LESION_TABLE_ROLE, OWN_LESION_TABLE_RECORDED_ATTRIBUTE,
                        lambda table: lesion_table_describes(table, segmentation_node))


def _owned_table(table_node, owner, role: str, recorded_attribute: str, describes: Any) -> bool:
    """Whether ``owner`` (a segmentation) links to ``table_node`` under ``role`` (one or several references); when it
    records none and never did (``recorded_attribute``: a scene saved before such links), whether ``table_node`` is
    the scene's one table that ``describes``."""
    own_ids = [owner.GetNthNodeReferenceID(role, i) for i in range(owner.GetNumberOfNodeReferences(role))]
    if own_ids or owner.GetAttribute(recorded_attribute) == "1":
        return table_node.GetID() in own_ids
    scene = table_node.GetScene()
    if scene is None:
        return False
    listing = [scene.GetNthNodeByClass(i, "vtkMRMLTableNode")
               for i in range(scene.GetNumberOfNodesByClass("vtkMRMLTableNode"))]
    return [table for table in listing if describes(table)] == [table_node]


OWN_CHANGE_TABLES_ROLE = "LiverTumorSegOwnChangeTable"
"""Node reference role (one reference per follow-up) from a baseline segmentation to the change tables *Compare* made
for it and refills; a copy of such a table (the Data module's Clone) is not among them, so it is never refilled."""

OWN_CHANGE_TABLES_RECORDED_ATTRIBUTE = TABLE_ATTRIBUTE_PREFIX + "ownChangeTablesRecorded"
"""On a baseline segmentation: "1" once it links to a change table of its own (:data:`OWN_CHANGE_TABLES_ROLE`)."""


def link_change_table(table_node, baseline_segmentation, followup_segmentation) -> None:
    """Record on ``table_node`` which baseline and follow-up segmentations it compares, and on the baseline that the
    table is its own (:func:`change_table_owned_by`)."""
    _link_table(table_node, CHANGE_TABLE_SEGMENTATION_ROLES, (baseline_segmentation, followup_segmentation))
    if not baseline_segmentation.HasNodeReferenceID(OWN_CHANGE_TABLES_ROLE, table_node.GetID()):
        baseline_segmentation.AddNodeReferenceID(OWN_CHANGE_TABLES_ROLE, table_node.GetID())
    baseline_segmentation.SetAttribute(OWN_CHANGE_TABLES_RECORDED_ATTRIBUTE, "1")


def change_table_describes(table_node, baseline_segmentation, followup_segmentation) -> bool:
    """True when ``table_node`` lists the comparison of this baseline / follow-up pair (it, or a copy of it: see
    :func:`change_table_owned_by` for the one a comparison refills)."""
    return _table_describes(table_node, CHANGE_TABLE_SEGMENTATION_ROLES, (baseline_segmentation, followup_segmentation))


def change_table_owned_by(table_node, baseline_segmentation, followup_segmentation) -> bool:
    """True when ``table_node`` is the change table *Compare* made for this pair and refills: it describes the pair and
    the baseline links to it (:func:`link_change_table`); a copy of it is not linked from the baseline."""
    if not change_table_describes(table_node, baseline_segmentation, followup_segmentation):
        return False
    return _owned_table(table_node, baseline_segmentation, OWN_CHANGE_TABLES_ROLE, OWN_CHANGE_TABLES_RECORDED_ATTRIBUTE,
                        lambda table: change_table_describes(table, baseline_segmentation, followup_segmentation))


def _set_column_title(table_node, name: str, unit: str) -> None:
    """The header a Slicer table view shows for column ``name``: the name with its unit, ``Volume (mL)``. Slicer's
    view shows the unit label only in a tooltip, so the headers read 'Volume' and 'Long axis' without mL or mm.
    The column keeps its name (what code and saved scenes read it by); releases before column titles show the
    name alone."""
    if hasattr(table_node, "SetColumnTitle"):
        table_node.SetColumnTitle(name, f"{name} ({unit})" if unit else name)


def show_column_names_as_headers(table_node) -> None:
    """Make a table view show each column's name as its header (not A, B, C with the names in a bold first row).

    Slicer releases from late 2023 on (Slicer PR 7283) show a column's *title* when
    ``UseColumnTitleAsColumnHeader`` is on, so each column gets its name as title; earlier ones have only
    ``SetUseColumnNameAsColumnHeader``, which the newer ones keep as a deprecated alias that logs a warning."""
    if hasattr(table_node, "SetUseColumnTitleAsColumnHeader"):
        table = table_node.GetTable()
        for index in range(table.GetNumberOfColumns()):
            name = table.GetColumnName(index)
            if name and not table_node.GetColumnTitle(name):
                table_node.SetColumnTitle(name, name)
        table_node.SetUseColumnTitleAsColumnHeader(True)
    else:
        table_node.SetUseColumnNameAsColumnHeader(True)


def create_lesion_table_node(scene, report: Dict[str, Any], table_node=None, name: str = "Liver lesions"):
    """A ``vtkMRMLTableNode`` with one row per lesion of a lesion ``report`` (see the inference contract).

    Columns: see :data:`LESION_TABLE_COLUMNS` (units in the column's unit label). The whole-liver summary
    (``liver_volume_ml``, ``tumor_volume_ml``, ``tumor_burden_percent``, lesion count) is stored as node
    attributes ``LiverTumorSeg.<key>`` (strings). ``table_node``: reuse (cleared, the axis markups drawn for its rows
    removed) instead of creating one.
    """
    import vtk
    if table_node is None:
        table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    else:  # its rows change: axes drawn for its old rows ("Lesion 1 long axis", 23.4 mm) would stay on show
        remove_lesion_axis_markups(scene, table_node)
    table = vtk.vtkTable()
    lesions = list(report.get("lesions", []))
    minimum_mm = float((report.get("recist") or {}).get("measurable_minimum_mm", 10.0))
    for col_name, key, unit, description in LESION_TABLE_COLUMNS:
        if col_name in ("Lesion", "RECIST target"):
            column = vtk.vtkIntArray()
        elif col_name in TEXT_COLUMNS:
            column = vtk.vtkStringArray()
        else:
            column = vtk.vtkDoubleArray()
        column.SetName(col_name)
        for lesion in lesions:
            value = _column_value(lesion, col_name, key, minimum_mm)
            column.InsertNextValue(value)
        table.AddColumn(column)
    table_node.SetAndObserveTable(table)
    for col_name, key, unit, description in LESION_TABLE_COLUMNS:
        if unit:
            table_node.SetColumnUnitLabel(col_name, unit)
        table_node.SetColumnDescription(col_name, description)
        _set_column_title(table_node, col_name, unit)
    show_column_names_as_headers(table_node)
    table_node.SetLocked(True)  # read-only cells: an edited "Lesion" number would break row selection
    summary = report_summary(report)
    for key, value in summary.items():
        table_node.SetAttribute(TABLE_ATTRIBUTE_PREFIX + key, repr(value))
    table_node.SetAttribute(LESION_AXES_ATTRIBUTE, lesion_axes_json(report))
    set_lesion_table_warnings(table_node, report.get("warnings"))
    return table_node


LESION_TABLE_WARNINGS_ATTRIBUTE = TABLE_ATTRIBUTE_PREFIX + "warnings"
"""On a lesion table: JSON list of the warnings of the run that filled it (a liver-only model, water-density
lesions, thick slices...). Node attributes are written to the scene file, so a saved scene loaded again still has
them; they were shown only under the run's summary and were gone after a reload."""


def set_lesion_table_warnings(table_node, warnings: Any) -> None:
    """Keep ``warnings`` (texts; None: none) on ``table_node`` (:data:`LESION_TABLE_WARNINGS_ATTRIBUTE`), replacing
    those of an earlier run."""
    import json

    if warnings is None:
        warnings = []
    elif isinstance(warnings, str) or not isinstance(warnings, (list, tuple)):
        warnings = [warnings]
    table_node.SetAttribute(LESION_TABLE_WARNINGS_ATTRIBUTE, json.dumps([str(w) for w in warnings]))


def lesion_table_warnings(table_node) -> List[str]:
    """The warnings kept on a lesion table (:func:`set_lesion_table_warnings`); [] for none, a table without them
    (made before they were kept) or an attribute that is no JSON list (edited by hand, or nested too deep for Python
    to read: :func:`_json_attribute`)."""
    warnings = _json_attribute(table_node, LESION_TABLE_WARNINGS_ATTRIBUTE) if table_node is not None else None
    return [str(w) for w in warnings] if isinstance(warnings, list) else []


def report_summary(report: Dict[str, Any]) -> Dict[str, Any]:
    """The whole-organ numbers of a lesion report: liver/tumor volume (mL), tumor burden (%), lesion count (an
    int: its attribute reads "2", which ``int()`` takes, not "2.0"), RECIST sum of diameters (mm)."""
    return {"liver_volume_ml": float(report.get("liver_volume_ml", float("nan"))),
            "tumor_volume_ml": float(report.get("tumor_volume_ml", float("nan"))),
            "tumor_burden_percent": float(report.get("tumor_burden_percent", float("nan"))),
            "lesion_count": int(len(report.get("lesions", []))),
            "recist_sum_of_diameters_mm": float((report.get("recist") or {}).get("sum_of_diameters_mm", 0.0))}


def lesion_table_rows(table_node) -> List[Dict[str, Any]]:
    """Read a lesion table node back as a list of ``{column name: value}`` (for tests and scripting)."""
    table = table_node.GetTable()
    rows = []
    for r in range(table.GetNumberOfRows()):
        rows.append({table.GetColumn(c).GetName(): table.GetValue(r, c).ToString()
                     if table.GetColumn(c).GetName() in TEXT_COLUMNS else table.GetValue(r, c).ToDouble()
                     for c in range(table.GetNumberOfColumns())})
    return rows


# --- .seg.nrrd writing ------------------------------------------------------------------------------

def write_seg_nrrd(path: Union[str, Path], labels_zyx: np.ndarray, geometry: ImageGeometry,
                   overwrite: bool = False) -> Path:
    """Write a 0/1/2 label map as a Slicer segmentation file (``.seg.nrrd``) with names, colors, terminology.

    ``labels_zyx``: ``(z, y, x)`` on ``geometry``'s grid (LPS). The file keeps the full grid (not cropped to
    the segments), so it overlays the CT voxel for voxel; segments "Liver" (label 1) and "Liver tumor"
    (label 2) as in :func:`labels_to_segmentation_node`. Builds a private scene; needs ``slicer-core`` (or
    Slicer's Python). Written atomically; an existing file raises :class:`OutputExistsError` unless
    ``overwrite``. Returns the path.

    An all-background map (no liver found) is written with "Liver" as an all-zero mask of the whole grid:
    with only empty segments Slicer writes one voxel at the origin, a file that carries no grid.
    """
    path = Path(path)
    if full_suffix(path) != ".seg.nrrd":
        raise InputError(f"'{path}' does not end in .seg.nrrd; Slicer segmentation files need that extension.")
    problem = headless_scene_problem()
    if problem:
        raise InputError(f"Writing '{path}' (.seg.nrrd) {problem}")
    import slicer as _slicer
    scene = make_headless_scene()
    node = labels_to_segmentation_node(scene, labels_zyx, geometry)
    if not np.any(labels_zyx):
        _hold_the_whole_grid(node, LIVER_SEGMENT, np.shape(labels_zyx), geometry)
    with atomic_output(path, overwrite) as tmp:
        storage = _slicer.vtkMRMLSegmentationStorageNode()
        scene.AddNode(storage)
        storage.SetCropToMinimumExtent(False)
        storage.SetFileName(str(tmp))
        if not storage.WriteData(node):
            raise InputError(f"Could not write segmentation to '{path}'; check the folder is writable and the disk "
                             f"has space.")
        from .io.writers import check_written
        check_written(Path(tmp), path)  # the storage node reports no failed write on a full disk
    scene.Clear(1)
    return path


def _hold_the_whole_grid(segmentation_node, spec: SegmentSpec, shape_zyx: Sequence[int],
                         geometry: ImageGeometry) -> None:
    """Give ``spec``'s (empty) segment an all-zero mask of the whole ``geometry`` grid: the storage node writes
    the segments' common extent, which for empty segments only is a 1-voxel image at the origin in RAS (the
    grid then only in the conversion parameters; read back, a 1x1x1 map that the CT's grid refused). Name,
    colour and terminology stay; the segment still has no voxel."""
    import slicer
    segment = segmentation_node.GetSegmentation().GetSegment(spec.segment_id)
    segment.AddRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName(),
                              oriented_image_from_array(np.zeros(tuple(shape_zyx), np.uint8), geometry))


def read_seg_nrrd(scene, path: Union[str, Path]):
    """Load a ``.seg.nrrd`` into ``scene`` with a segmentation storage node; returns the segmentation node.

    The file is first read as :mod:`.segnrrd` reads it (SimpleITK, the gzip stream checked whole): a damaged header
    made the storage node's ITK reader throw a C++ exception that no caller could catch, which ended the process
    (headless slicer-core: "terminate called after throwing an instance of itk::ExceptionObject"). A file the storage
    node still cannot read leaves no node in ``scene``. Raises :class:`InputError` for a missing or unreadable file."""
    import slicer

    from .segnrrd import _read_image
    path = Path(path)
    if not path.exists():
        raise InputError(f"Segmentation file '{path}' does not exist.")
    _read_image(path)  # InputError naming what is wrong, before ITK inside MRML sees the file
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", path.name.split(".")[0])
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        scene.RemoveNode(storage)
        raise InputError(f"Could not read '{path}' as a Slicer segmentation (.seg.nrrd).")
    node.SetAndObserveStorageNodeID(storage.GetID())
    return node


# --- RECIST axes as line markups, views centred on a lesion ----------------------------------------------

LESION_AXIS_ATTRIBUTE = "LiverTumorSeg.lesionAxis"  # "long" / "short" on the line markups made here
MADE_AS_ATTRIBUTE = TABLE_ATTRIBUTE_PREFIX + "madeAsNodeID"
"""On a node this module made and removes again by itself (lesion axis markups, change reports): the node's own ID
when it was made. The Data module's Clone copies attributes and node references, so a copy the user made to keep
carried every mark of ours and was removed with ours (an axis when another row was selected, a change report when any
node was deleted); a copy's ID is not the one it was made as. Nodes of scenes saved before this attribute have none
and count as ours, as before; a scene imported into one whose node IDs clash gets new IDs, and its nodes then count as
the user's and are left in place (never the other way round)."""


def made_here(node) -> bool:
    """Whether ``node`` is one this module made (:data:`MADE_AS_ATTRIBUTE` is its own ID, or absent: made before the
    attribute), not a copy of one."""
    made_as = node.GetAttribute(MADE_AS_ATTRIBUTE)
    return made_as is None or made_as == node.GetID()


def _mark_made_here(node) -> None:
    node.SetAttribute(MADE_AS_ATTRIBUTE, node.GetID())


LESION_AXIS_TABLE_ROLE = "LiverTumorSegLesionTable"
"""Node reference role from an axis line markup to the lesion table whose row it was drawn for: when that table is
refilled (a re-run, *Update lesion table*), its drawn axes are taken away with the rows they belonged to."""
AXIS_COLORS = {"long": (1.0, 0.85, 0.1), "short": (0.1, 0.8, 1.0)}


def lesion_axis_end_points_ras(lesion: Dict[str, Any]) -> Dict[str, List[List[float]]]:
    """``{"long": [p, q], "short": [p, q]}``: a report lesion's axis end points in RAS mm (missing axes left out)."""
    points = {}
    for which in ("long", "short"):
        axis = lesion.get(f"{which}_axis") or {}
        ends = axis.get("end_points_ras_mm")
        if ends and len(ends) == 2:
            points[which] = [[float(v) for v in ends[0]], [float(v) for v in ends[1]]]
    return points


def lesion_focus_ras(lesion: Dict[str, Any]) -> List[float]:
    """RAS mm point to centre the views on: the long axis' middle (in its measurement slice), else the centroid."""
    ends = lesion_axis_end_points_ras(lesion).get("long")
    if ends:
        return [0.5 * (a + b) for a, b in zip(*ends)]
    return [float(v) for v in lesion["centroid_ras_mm"]]


LESION_AXES_ATTRIBUTE = TABLE_ATTRIBUTE_PREFIX + "lesionAxes"  # on the lesion table: JSON, see lesion_axes_json


def lesion_axes_json(report: Dict[str, Any]) -> str:
    """JSON list of ``{"id", "centroid_ras_mm", "long_axis", "short_axis"}`` per lesion: what the lesion table
    node keeps so a selected row can be shown (:func:`focus_on_table_row`) without the report file."""
    import json

    keep = ("id", "centroid_ras_mm", "long_axis", "short_axis")
    return json.dumps([{k: d[k] for k in keep if k in d} for d in report.get("lesions", [])])


def focus_on_table_lesion(scene, table_node, lesion_id: int) -> List[Any]:
    """Centre the slice views on lesion ``lesion_id`` of a lesion table made by :func:`create_lesion_table_node`
    (its "Lesion" number) and draw its axes; returns the line markups. InputError for an unknown lesion.

    A table linked to its segmentation (:func:`link_lesion_table`) shows the lesion where the segmentation is
    now: the axes go under the segmentation's parent transform, in its own coordinates, so they also follow
    later changes of that transform. The table's Centroid R/A/S columns stay the world points of the run.

    Both attributes are saved with the scene and can be edited by hand: an axes record that is no JSON list reads as
    none and an entry of it that is no showable lesion as absent (InputError: no such lesion); a frame that is no
    finite invertible 4x4 as none (the run's world points are shown). Each is logged."""
    lesions = _table_lesions(table_node)
    segmentation = table_node.GetNodeReference(LESION_TABLE_SEGMENTATION_ROLE)
    measured_to_world = _lesion_frame_of(table_node)
    if segmentation is None or not scene.IsNodePresent(segmentation) or measured_to_world is None:
        return focus_on_lesion(scene, {"lesions": lesions}, int(lesion_id), table_node=table_node)
    lesion = _lesion_of(lesions, lesion_id)
    local = _lesion_points_mapped(lesion, np.linalg.inv(measured_to_world))
    center_slice_views_on(scene, _mapped_point(node_to_world(segmentation), lesion_focus_ras(local)))
    return show_lesion_axes(scene, local, transform_node_id=segmentation.GetTransformNodeID(), table_node=table_node)


def _json_attribute(node, attribute: str) -> Any:
    """``attribute`` of ``node`` read as JSON; None when it is empty or no JSON (edited by hand, or nested too deep
    for Python to read: RecursionError), the latter logged."""
    import json

    text = node.GetAttribute(attribute)
    if not text:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        log.info("%s of %s is no readable JSON (edited by hand?), read as none: %s", attribute, node.GetName(),
                 type(exc).__name__)
        return None


def _table_lesions(table_node) -> List[Dict[str, Any]]:
    """The lesions a lesion table keeps for showing its rows (:data:`LESION_AXES_ATTRIBUTE`, see
    :func:`lesion_axes_json`): ``id``, centroid and axis end points in world RAS mm. A record edited by hand that is
    no JSON list reads as none; an entry of it that is no showable lesion (:func:`_showable_lesion`) is left out.
    Both logged."""
    lesions = _json_attribute(table_node, LESION_AXES_ATTRIBUTE)
    if lesions is None:
        return []
    if not isinstance(lesions, list):
        log.info("%s of %s is no JSON list (edited by hand?), read as none", LESION_AXES_ATTRIBUTE,
                 table_node.GetName())
        return []
    showable = [_showable_lesion(entry) for entry in lesions]
    if None in showable:
        log.info("%s of %s: %d of its %d lesions are unreadable (edited by hand?) and left out", LESION_AXES_ATTRIBUTE,
                 table_node.GetName(), showable.count(None), len(showable))
    return [lesion for lesion in showable if lesion is not None]


def _ras_point(value: Any) -> List[float]:
    """``value`` as 3 finite floats (RAS mm); ValueError or TypeError otherwise."""
    point = [float(v) for v in value]
    if len(point) != 3 or not np.all(np.isfinite(point)):
        raise ValueError(f"no RAS point: {value!r}")
    return point


def _showable_lesion(entry: Any) -> Optional[Dict[str, Any]]:
    """A copy of a kept lesion (:func:`lesion_axes_json`) with an integer id, finite RAS points (mm) for its centroid
    and axis end points, and a centroid or long axis to centre on; None for any other entry."""
    if not isinstance(entry, dict):
        return None
    try:
        lesion = dict(entry, id=int(entry["id"]))
        if entry.get("centroid_ras_mm") is not None:
            lesion["centroid_ras_mm"] = _ras_point(entry["centroid_ras_mm"])
        for which in ("long", "short"):
            axis = entry.get(f"{which}_axis") or {}
            ends = axis.get("end_points_ras_mm")
            if ends and len(ends) == 2:
                lesion[f"{which}_axis"] = dict(axis, end_points_ras_mm=[_ras_point(ends[0]), _ras_point(ends[1])])
        lesion_focus_ras(lesion)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        return None
    return lesion


def _lesion_frame_of(table_node) -> Optional[np.ndarray]:
    """The 4x4 from the segmentation's own coordinates to world RAS kept on a lesion table
    (:data:`LESION_FRAME_ATTRIBUTE`); None when there is none (a non-linear transform, a table made before it was
    kept) or it is no finite invertible 4x4 (edited by hand: logged)."""
    frame = _json_attribute(table_node, LESION_FRAME_ATTRIBUTE)
    if frame is None:
        return None
    try:
        matrix = np.asarray(frame, dtype=np.float64).reshape(4, 4)
        if np.all(np.isfinite(matrix)) and np.all(np.isfinite(np.linalg.inv(matrix))):
            return matrix
    except (TypeError, ValueError):  # numpy's LinAlgError (a singular matrix) is a ValueError
        pass
    log.info("%s of %s is no finite invertible 4x4 (edited by hand?): its lesions are shown at the run's world points",
             LESION_FRAME_ATTRIBUTE, table_node.GetName())
    return None


def _lesion_of(lesions: Sequence[Dict[str, Any]], lesion_id: int) -> Dict[str, Any]:
    lesion = next((d for d in lesions if int(d.get("id", -1)) == int(lesion_id)), None)
    if lesion is None:
        raise InputError(f"The lesion report has no lesion {lesion_id}.")
    return lesion


def _mapped_point(matrix: np.ndarray, point: Sequence[float]) -> List[float]:
    return [float(v) for v in (matrix @ np.append(np.asarray(point, dtype=np.float64), 1.0))[:3]]


def _lesion_points_mapped(lesion: Dict[str, Any], matrix: np.ndarray) -> Dict[str, Any]:
    """A copy of a report lesion with its centroid and axis end points mapped by the 4x4 ``matrix`` (RAS mm)."""
    out = dict(lesion)
    if "centroid_ras_mm" in lesion:
        out["centroid_ras_mm"] = _mapped_point(matrix, lesion["centroid_ras_mm"])
    for which, (p, q) in lesion_axis_end_points_ras(lesion).items():
        out[f"{which}_axis"] = dict(lesion.get(f"{which}_axis") or {},
                                    end_points_ras_mm=[_mapped_point(matrix, p), _mapped_point(matrix, q)])
    return out


def focus_on_table_row(scene, table_node, row: int) -> List[Any]:
    """As :func:`focus_on_table_lesion` for the lesion in row ``row`` (0-based) of the table node; [] for a
    row that does not exist."""
    table = table_node.GetTable()
    if table is None or not 0 <= int(row) < table.GetNumberOfRows():
        return []
    return focus_on_table_lesion(scene, table_node, int(table.GetValueByName(int(row), "Lesion").ToInt()))


def remove_lesion_axis_markups(scene, table_node=None) -> int:
    """Remove the axis line markups made by :func:`show_lesion_axes` (``table_node``: only those drawn for a row of
    that lesion table); returns how many were removed."""
    nodes = [scene.GetNthNodeByClass(i, "vtkMRMLMarkupsLineNode")
             for i in range(scene.GetNumberOfNodesByClass("vtkMRMLMarkupsLineNode"))]
    ours = [n for n in nodes if n is not None and n.GetAttribute(LESION_AXIS_ATTRIBUTE) and made_here(n)
            and (table_node is None or n.GetNodeReferenceID(LESION_AXIS_TABLE_ROLE) == table_node.GetID())]
    for node in ours:
        scene.RemoveNode(node)
    return len(ours)


def show_lesion_axes(scene, lesion: Dict[str, Any], transform_node_id: Optional[str] = None,
                     table_node=None) -> List[Any]:
    """Replace any previous axis markups by two locked ``vtkMRMLMarkupsLineNode`` (long, short) drawn from the
    lesion's RAS end points, named "Lesion N long axis" / "Lesion N short axis"; returns the new nodes.
    ``transform_node_id``: the points are in that transform's local frame and the markups go under it.
    ``table_node``: the lesion table the lesion is a row of (:data:`LESION_AXIS_TABLE_ROLE`)."""
    import vtk

    remove_lesion_axis_markups(scene)
    nodes = []
    for which, (p, q) in lesion_axis_end_points_ras(lesion).items():
        node = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", f"Lesion {lesion.get('id', '')} {which} axis")
        node.SetAndObserveTransformNodeID(transform_node_id)
        node.AddControlPoint(vtk.vtkVector3d(*p))  # the overload every Slicer 5.x declares (not x, y, z)
        node.AddControlPoint(vtk.vtkVector3d(*q))
        node.SetLocked(True)
        node.SetAttribute(LESION_AXIS_ATTRIBUTE, which)
        _mark_made_here(node)  # a copy the user keeps (Clone) is not removed with ours
        if table_node is not None:
            node.SetNodeReferenceID(LESION_AXIS_TABLE_ROLE, table_node.GetID())
        node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
        if display is not None:
            display.SetSelectedColor(*AXIS_COLORS[which])
            display.SetColor(*AXIS_COLORS[which])
        nodes.append(node)
    return nodes


def center_slice_views_on(scene, ras: Sequence[float]) -> int:
    """Centre every slice view of ``scene`` on the RAS point (mm), as clicking a point does; returns the count."""
    count = 0
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLSliceNode")
        node.JumpSliceByCentering(float(ras[0]), float(ras[1]), float(ras[2]))
        count += 1
    return count


def focus_on_lesion(scene, report: Dict[str, Any], lesion_id: int, table_node=None) -> List[Any]:
    """Centre the slice views on lesion ``lesion_id`` of ``report`` and draw its two axes; returns the markups.
    ``table_node``: the lesion table listing the report (see :func:`show_lesion_axes`). Raises InputError when the
    report has no such lesion."""
    lesion = _lesion_of(report.get("lesions", []), lesion_id)
    center_slice_views_on(scene, lesion_focus_ras(lesion))
    return show_lesion_axes(scene, lesion, table_node=table_node)


# --- follow-up comparison of two segmentations in the scene ---------------------------------------------

CHANGE_TABLE_COLUMNS = (
    # (column name, change-entry key, unit, description)
    ("Lesion", "number", "", "Number of the lesion (group) in the follow-up comparison"),
    ("Status", "status", "", "new, disappeared, grown, shrunk, stable, present (cut by the baseline scan's edge, "
                             "seen at follow-up: change not measured; or its baseline axes limited by tilted "
                             "slices: long axis change not measured), merged, split or not_assessed (not wholly "
                             "shown by the follow-up scan)"),
    ("Baseline lesions", "baseline_ids", "", "Lesion numbers in the baseline lesion table"),
    ("Follow-up lesions", "followup_ids", "", "Lesion numbers in the follow-up lesion table"),
    ("Baseline long axis", "baseline_long_axis_mm", "mm", "Long axis at baseline (sum when several)"),
    ("Follow-up long axis", "followup_long_axis_mm", "mm", "Long axis at follow-up (sum when several)"),
    ("Long axis change", "long_axis_change_percent", "%", "Relative change of the long axis"),
    ("Baseline volume", "baseline_volume_ml", "mL", "Volume at baseline"),
    ("Follow-up volume", "followup_volume_ml", "mL", "Volume at follow-up"),
    ("Volume change", "volume_change_percent", "%", "Relative change of the volume"),
    ("RECIST target", "recist_target", "", "1 = contains a RECIST 1.1 target lesion of the baseline"),
    ("Notes", "", "", "A lesion of the row cut by a scan's edge (its size there a lower bound) or on too few of its "
                      "scan's tilted slices (its axial axes limited by the slices: the size there may be cut short; "
                      "axial_axes_limited_by_slices)"),
)
_CHANGE_TEXT_COLUMNS = ("Status", "Baseline lesions", "Follow-up lesions", "Notes")
CHANGE_ROW_NOTES = (("baseline_cut_by_scan_edge", "cut by the baseline scan's edge"),
                    ("followup_cut_by_scan_edge", "cut by the follow-up scan's edge"),
                    ("baseline_axial_axes_limited_by_slices", "axes limited by the baseline's tilted slices"),
                    ("followup_axial_axes_limited_by_slices", "axes limited by the follow-up's tilted slices"))
"""The change table's *Notes*: a row's flags of the change report (key, words): the table showed none, so a row
read 'shrunk' in the panel where the printed summary said its follow-up lesion was cut short."""
_UNIT_DECIMALS = {"mm": 1, "mL": 2, "%": 1}
CHANGE_TABLE_DECIMALS = {col_name: _UNIT_DECIMALS[unit] for col_name, _, unit, _ in CHANGE_TABLE_COLUMNS
                         if unit in _UNIT_DECIMALS}
"""Displayed digits per numeric column of the change table (the change report keeps full precision)."""


def _change_value(entry: Dict[str, Any], name: str, key: str, min_new_lesion_mm: float) -> Any:
    """One cell of the change table; ``min_new_lesion_mm``: the change report's, which a new lesion's long axis
    short of it is not rounded onto."""
    if name == "Notes":
        return ", ".join(words for flag, words in CHANGE_ROW_NOTES if entry.get(flag))
    value = entry.get(key)
    if name in ("Baseline lesions", "Follow-up lesions"):
        return ", ".join(str(v) for v in value or [])
    if name == "Status":
        return str(value)
    if name in ("Lesion", "RECIST target"):
        return int(value or 0)
    # as the lesion table: the digits a reader can use (a saved scene keeps about 6 significant digits, so
    # unrounded values read 42.06102919801046 before and 42.061 after a reload)
    if value is None:
        return float("nan")
    if name == "Long axis change":
        return _long_axis_change_shown(float(value))
    if name in ("Baseline long axis", "Follow-up long axis"):
        return round(float(value), _long_axis_places(entry, name, min_new_lesion_mm))
    return round(float(value), CHANGE_TABLE_DECIMALS.get(name, 3))


def _long_axis_places(entry: Dict[str, Any], name: str, min_new_lesion_mm: float) -> int:
    """Decimal places of a change row's long axis, as the printed summary gives them
    (:func:`~.followup.long_axes_places`): a new lesion of 4.98 mm read 5.0 beside 'equivocal', and 20.03 -> 23.99 mm
    (+19.8 %) 20.0 -> 24.0 beside 'stable'."""
    from .followup import long_axes_places

    before_places, after_places = long_axes_places(entry, min_new_lesion_mm, CHANGE_TABLE_DECIMALS.get(name, 1))
    return after_places if name == "Follow-up long axis" else before_places


def _long_axis_change_shown(percent: float) -> float:
    """A lesion's long-axis change (%) as the change table shows it: to 0.1 %, or to 0.01 % where 0.1 % would round
    it onto the grown (+20 %) or shrunk (-30 %) threshold it does not meet (-29.98 % read -30.0 beside 'stable'), as
    the printed summary words it (:func:`~.metrics.recist.percent_change_text`)."""
    from .followup import GROWN_CHANGE, SHRUNK_CHANGE
    from .metrics.recist import at_least, at_most

    shown = round(percent, CHANGE_TABLE_DECIMALS["Long axis change"])
    for threshold, met in ((GROWN_CHANGE, at_least(percent / 100.0, GROWN_CHANGE)),
                           (SHRUNK_CHANGE, at_most(percent / 100.0, SHRUNK_CHANGE))):
        if shown == round(100.0 * threshold, 1) and not met:
            return round(percent, 2)
    return shown


def create_change_table_node(scene, change: Dict[str, Any], table_node=None, name: str = "Lesion follow-up"):
    """A ``vtkMRMLTableNode`` with one row per lesion group of a follow-up ``change`` report
    (:func:`LiverTumorSegLib.followup.compare_followup`), columns :data:`CHANGE_TABLE_COLUMNS`. The response,
    its reason and the sums of diameters are node attributes ``LiverTumorSeg.<key>`` (strings)."""
    import vtk

    from .followup import DEFAULT_MIN_NEW_LESION_MM
    if table_node is None:
        table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table = vtk.vtkTable()
    min_new_lesion_mm = float(change.get("min_new_lesion_mm", DEFAULT_MIN_NEW_LESION_MM))
    for col_name, key, unit, description in CHANGE_TABLE_COLUMNS:
        if col_name in _CHANGE_TEXT_COLUMNS:
            column = vtk.vtkStringArray()
        elif col_name in ("Lesion", "RECIST target"):
            column = vtk.vtkIntArray()
        else:
            column = vtk.vtkDoubleArray()
        column.SetName(col_name)
        for entry in change.get("lesions", []):
            column.InsertNextValue(_change_value(entry, col_name, key, min_new_lesion_mm))
        table.AddColumn(column)
    table_node.SetAndObserveTable(table)
    for col_name, key, unit, description in CHANGE_TABLE_COLUMNS:
        if unit:
            table_node.SetColumnUnitLabel(col_name, unit)
        table_node.SetColumnDescription(col_name, description)
        _set_column_title(table_node, col_name, unit)
    show_column_names_as_headers(table_node)
    sod = change.get("sum_of_diameters", {})
    facts = {"response": change.get("response"), "response_reason": change.get("response_reason"),
             "sum_of_diameters_baseline_mm": sod.get("baseline_mm"),
             "sum_of_diameters_followup_mm": sod.get("followup_mm"),
             "sum_of_diameters_change_percent": sod.get("change_percent")}
    for key, value in facts.items():
        table_node.SetAttribute(TABLE_ATTRIBUTE_PREFIX + key, "" if value is None else str(value))
    set_change_report(table_node, change)
    return table_node


CHANGE_REPORT_ROLE = "LiverTumorSegChangeReport"
"""Node reference role from a follow-up change table to the ``vtkMRMLTextNode`` holding its change report (the
``followup`` command's change.json text), so that the report is saved with the scene (in an .mrb its own ``.txt``
file) and *Save change report...* works on a table of a scene loaded from disk."""


def set_change_report(table_node, change: Dict[str, Any]) -> Any:
    """Keep ``change`` (the change report the table was made from) as JSON text (:func:`~.followup.change_to_json`,
    as *Save change report...* writes it) in a ``vtkMRMLTextNode`` that ``table_node`` references
    (:data:`CHANGE_REPORT_ROLE`); the table's text node is refilled, unless another node also references it (a copy of
    the table made with the Data module's Clone keeps the report it was copied with): then a new one. Returns the text
    node."""
    from .followup import change_to_json

    scene = table_node.GetScene()
    text_node = table_node.GetNodeReference(CHANGE_REPORT_ROLE)
    if text_node is None or _referenced_by_another(scene, text_node, table_node):
        text_node = scene.AddNewNodeByClass("vtkMRMLTextNode", f"{table_node.GetName()} change report")
        text_node.SetAttribute(CHANGE_REPORT_ATTRIBUTE, "1")
        _mark_made_here(text_node)  # a copy the user keeps (Clone) is not taken for an orphan of ours
        table_node.SetNodeReferenceID(CHANGE_REPORT_ROLE, text_node.GetID())
    text_node.SetText(change_to_json(change))
    return text_node


CHANGE_REPORT_ATTRIBUTE = TABLE_ATTRIBUTE_PREFIX + "ChangeReport"
"""Attribute (``"1"``) marking a ``vtkMRMLTextNode`` made by :func:`set_change_report`, so that
:func:`remove_orphan_change_reports` removes only the reports this module made, never a text node of the user's."""


def remove_orphan_change_reports(scene) -> int:
    """Remove the change report text nodes (:data:`CHANGE_REPORT_ATTRIBUTE`) no node of ``scene`` references any
    more (:data:`CHANGE_REPORT_ROLE`): their change table was deleted (the Data module's Delete, the Tables module,
    ``slicer.mrmlScene.RemoveNode``), which leaves the report a node of its own in the Data module that is saved with
    the scene but belongs to nothing. A report another table (a clone) still references is kept. Nothing is done
    while the scene closes, imports or batch-processes (the module calls this again at the batch's end). Returns how
    many text nodes were removed.

    Re-entrancy safe: each removal fires ``NodeRemovedEvent``, whose observer (:func:`observe_change_reports`) calls
    this again; that nested call does nothing while this one runs (it removed the next orphans itself, one call
    deeper per orphan, and the outer call then removed them again from a scene that no longer held them)."""
    if scene is None or scene.IsClosing() or scene.IsImporting() or scene.IsBatchProcessing():
        return 0
    if getattr(scene, _REMOVING_CHANGE_REPORTS, False):
        return 0
    setattr(scene, _REMOVING_CHANGE_REPORTS, True)
    try:
        return _remove_orphan_change_reports(scene)
    finally:
        setattr(scene, _REMOVING_CHANGE_REPORTS, False)


_REMOVING_CHANGE_REPORTS = "_livertumorseg_removing_change_reports"
"""Python attribute of a scene, true while :func:`remove_orphan_change_reports` removes reports from it."""


def _remove_orphan_change_reports(scene) -> int:
    """:func:`remove_orphan_change_reports`'s work, with its guard set: the orphans, each removed if still there."""
    reports = [node for node in _nodes_of_class(scene, "vtkMRMLTextNode")
               if node.GetAttribute(CHANGE_REPORT_ATTRIBUTE) == "1" and made_here(node)]
    if not reports:
        return 0
    referenced = set()
    for node in _nodes_of_class(scene, "vtkMRMLNode"):
        for i in range(node.GetNumberOfNodeReferences(CHANGE_REPORT_ROLE)):
            referenced.add(node.GetNthNodeReferenceID(CHANGE_REPORT_ROLE, i))
    removed = 0
    for node in [node for node in reports if node.GetID() not in referenced]:
        if scene.IsNodePresent(node):  # another observer of a removal may have taken it already
            scene.RemoveNode(node)
            removed += 1
    return removed


CHANGE_REPORT_OBSERVERS = "_livertumorseg_change_report_observers"
"""Python attribute of a scene holding the observer tags :func:`observe_change_reports` added (added once)."""


def observe_change_reports(scene) -> int:
    """Remove the change reports left without a table (:func:`remove_orphan_change_reports`) now, and from now on
    whenever a node of ``scene`` is removed or a batch (a scene import) ends: observers added once per scene, however
    often this is called. The module class calls it when Slicer loads the module, so a change table deleted before the
    module's panel was first opened (e.g. right after loading an .mrb) takes its report with it; the widget's observer
    alone left that report behind, belonging to nothing and saved with the scene. Returns how many reports were removed
    now (0 for no scene)."""
    if scene is None:
        return 0
    if not getattr(scene, CHANGE_REPORT_OBSERVERS, None):
        def removed(caller, event) -> None:
            remove_orphan_change_reports(caller)

        setattr(scene, CHANGE_REPORT_OBSERVERS, [scene.AddObserver(event, removed)
                                                 for event in (scene.NodeRemovedEvent, scene.EndBatchProcessEvent)])
    return remove_orphan_change_reports(scene)


def _nodes_of_class(scene, class_name: str) -> List[Any]:
    return [scene.GetNthNodeByClass(i, class_name) for i in range(scene.GetNumberOfNodesByClass(class_name))]


def _referenced_by_another(scene, text_node, table_node) -> bool:
    """Whether a table of ``scene`` other than ``table_node`` references ``text_node`` as its change report (only
    tables get the role: a change table and its copies)."""
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLTableNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLTableNode")
        if node is not table_node and node.GetNodeReferenceID(CHANGE_REPORT_ROLE) == text_node.GetID():
            return True
    return False


def change_report_of(table_node) -> Optional[Dict[str, Any]]:
    """The change report kept with a follow-up change table (:func:`set_change_report`): None for no table, a table
    without one (made before reports were kept, or its text node deleted) or a text that is no JSON object (edited
    by hand, or nested too deep for Python to read)."""
    import json

    text_node = table_node.GetNodeReference(CHANGE_REPORT_ROLE) if table_node is not None else None
    text = text_node.GetText() if text_node is not None and hasattr(text_node, "GetText") else None
    try:
        change = json.loads(text) if text else None
    except (ValueError, RecursionError):  # edited by hand (nested thousands deep too): no report
        return None
    return change if isinstance(change, dict) else None


def change_table_rows(table_node) -> List[Dict[str, Any]]:
    """Read a follow-up table node back as ``{column name: value}`` rows (text columns as str)."""
    table = table_node.GetTable()
    rows = []
    for r in range(table.GetNumberOfRows()):
        row = {}
        for c in range(table.GetNumberOfColumns()):
            col = table.GetColumn(c).GetName()
            value = table.GetValue(r, c)
            row[col] = value.ToString() if col in _CHANGE_TEXT_COLUMNS else value.ToDouble()
        rows.append(row)
    return rows


def labels_from_segmentation(segmentation_node, volume_node) -> Tuple[CTVolume, CTVolume]:
    """``(labels, ct)``: the segmentation's Liver / Liver tumor segments as a 0/1/2 label map on the grid of
    ``volume_node`` (its CT), both as :class:`CTVolume`."""
    ct = ctvolume_from_volume_node(volume_node)
    labels = segmentation_to_labels(segmentation_node, ct.geometry, ct.shape_zyx)
    return CTVolume(array=labels, geometry=ct.geometry, source=segmentation_node.GetName()), ct


def compare_segmentations(baseline_segmentation, baseline_volume, followup_segmentation, followup_volume,
                          use_ct: bool = True, **options: Any) -> Dict[str, Any]:
    """Follow-up comparison (:func:`LiverTumorSegLib.followup.compare_followup`) of two segmentation nodes, each
    on the grid of its CT volume node; ``use_ct``: align on the CTs (else on the liver masks)."""
    from .followup import compare_followup

    base_labels, base_ct = labels_from_segmentation(baseline_segmentation, baseline_volume)
    follow_labels, follow_ct = labels_from_segmentation(followup_segmentation, followup_volume)
    return compare_followup(base_labels, follow_labels, base_ct, follow_ct,
                            alignment="ct" if use_ct else "liver", **options)
