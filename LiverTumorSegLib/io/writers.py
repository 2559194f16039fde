"""Writing CT volumes and label maps (.nii, .nii.gz, .nrrd, .mha) atomically with exact geometry."""
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError
from ..fileutil import atomic_output, full_suffix, with_lower_suffix, written_suffix
from ..volume import CTVolume, ImageGeometry, checked_geometry, numeric_array
from .formats import (CONTENT_KEY, NIFTI_SUFFIXES, PROBABILITY_255_CONTENT, PROBABILITY_255_SLOPE, WRITE_SUFFIXES,
                      PathLike)
from .itk import _itk_reason, _quiet_itk, _sitk, non_ascii_path_hint


def _check_write_suffix(path: Path) -> str:
    suffix = full_suffix(path)
    if suffix == ".seg.nrrd":
        raise InputError(f"'{path}': .seg.nrrd is a Slicer segmentation file, with segment names and colours; write "
                         f"it with LiverTumorSegLib.mrml.write_seg_nrrd (needs slicer-core), or a plain label map as "
                         f".nrrd, .nii.gz or .mha.")
    if suffix not in WRITE_SUFFIXES:
        raise InputError(f"Cannot write '{path}': unknown output type '{suffix or path.name}'; use one of "
                         f"{', '.join(WRITE_SUFFIXES)}.")
    check_metaimage_name(path)
    return suffix


def check_metaimage_name(path: PathLike) -> None:
    """InputError for an output named ``.mha`` (or ``.mhd``) in other than lower case (``OUT.MHA``): ITK opens a
    MetaImage by its lower-case extension only, so 3D Slicer ('FileFormatError') and SimpleITK ('Unable to
    determine ImageIO reader') could not open the label map ``segment -o OUT.MHA`` wrote, after the whole run; and
    for a NIfTI extension in mixed case (``OUT.Nii``, ``OUT.nii.GZ``: ITK says "mixed case extension is not valid",
    and nibabel looked for ``OUT.nii``); all upper case (``OUT.NII.GZ``) is read by both. The name with the
    extension in lower case is suggested. Other names pass."""
    path = Path(path)
    suffix, written = written_suffix(path)
    if suffix in (".mha", ".mhd") and written != suffix:
        raise InputError(f"Cannot write '{path}': ITK-based programs (3D Slicer, SimpleITK) open a MetaImage file "
                         f"only by the lower-case extension {suffix}, so they could not open it as '{written}'; name "
                         f"it '{with_lower_suffix(path)}'.")
    if suffix in (".nii", ".nii.gz") and written not in (suffix, suffix.upper()):
        # ITK refuses a mixed-case NIfTI extension ('.Nii'), and nibabel opened 'X.Nii' as 'X.nii' (no such file)
        raise InputError(f"Cannot write '{path}': 3D Slicer and SimpleITK refuse a NIfTI extension in mixed case "
                         f"('{written}'); name it '{with_lower_suffix(path)}'.")


NIFTI1_MAX_DIMENSION = 32767
"""The largest voxel count along one axis that a NIfTI-1 header holds (its ``dim`` fields are int16)."""


def _nifti_image_class(shape_zyx: Tuple[int, ...], nifti_version: int) -> Any:
    """nibabel's NIfTI-2 image class when ``nifti_version`` is 2 (a NIfTI-2 input's outputs) or an axis of
    ``shape_zyx`` has more voxels than NIfTI-1 holds (:data:`NIFTI1_MAX_DIMENSION`), else its NIfTI-1 class."""
    import nibabel as nib

    if nifti_version not in (1, 2):
        raise ValueError(f"nifti_version must be 1 or 2, got {nifti_version!r}")
    if nifti_version == 2 or max(shape_zyx) > NIFTI1_MAX_DIMENSION:
        return nib.Nifti2Image
    return nib.Nifti1Image


NIFTI_LABEL_INTENT = "label"
"""nibabel's name of NIfTI intent code 1002 (NIFTI_INTENT_LABEL, "each voxel is an index into a set of labels"), which
the label maps get: viewers that read it (NiiVue, AFNI, MRIcroGL) show them as labels, not as a grey image."""


def _write_nifti(tmp: Path, array_zyx: np.ndarray, geometry: ImageGeometry, content: str = "",
                 orientation_unknown: bool = False, nifti_transforms: Optional[Dict[str, Any]] = None,
                 nifti_version: int = 1, intent: str = "") -> None:
    import nibabel as nib

    affine = geometry.ijk_to_ras()
    image_class = _nifti_image_class(array_zyx.shape, nifti_version)
    image = image_class(array_zyx.T, affine)  # (z, y, x) C-order -> (x, y, z) F-order view, no copy
    image.set_data_dtype(array_zyx.dtype)
    unit = "mm"
    if orientation_unknown:  # like the input: no sform/qform, so every tool places it as it placed the input
        image.set_sform(None, code=0)
        image.set_qform(None, code=0)
        image.header.set_zooms(tuple(float(s) for s in geometry.spacing))
    elif nifti_transforms:  # the input's two disagreeing transforms: each tool places it as it placed the input
        image.set_qform(np.asarray(nifti_transforms["qform"], dtype=np.float64), code=int(nifti_transforms["qform_code"]))
        image.set_sform(np.asarray(nifti_transforms["sform"], dtype=np.float64), code=int(nifti_transforms["sform_code"]))
        unit = str(nifti_transforms.get("unit") or "mm")
    else:
        image.set_sform(affine, code=1)  # scanner anatomical
        image.set_qform(affine, code=1)
    image.header.set_xyzt_units(unit, "sec")
    if orientation_unknown or nifti_transforms:
        _check_placed_as_given(image.header, geometry, tmp)
    if content:
        image.header["descrip"] = content.encode("ascii")[:79]
    if content == PROBABILITY_255_CONTENT:
        _scale_as_probability(image.header)
    if intent:
        image.header.set_intent(intent)
    nib.save(image, str(tmp))


PLACEMENT_TOLERANCE_MM = 1e-3
"""How far (mm, and in direction cosines) the grid a NIfTI header written with an input's own placement
(``orientation_unknown``, ``nifti_transforms``) places may lie from the geometry asked for: the header stores float32."""


class PlacementMismatch(ValueError):
    """NIfTI placement options (an input's own) given for an array on another grid (:func:`_check_placed_as_given`)."""


def _check_placed_as_given(header: Any, geometry: ImageGeometry, tmp: Path) -> None:
    """ValueError unless ``header`` (sform/qform as an input had them) places the voxels on ``geometry``, as this
    library reads NIfTI: those placement options belong to the grid the input was read on, and a volume on another
    grid (reoriented, cropped) written with them lay mirrored or shifted, while the writer promised ``geometry``."""
    from .nifti import _nifti_geometry

    placed, _ = _nifti_geometry(header, str(tmp), warn=False)
    if not placed.almost_equal(geometry, PLACEMENT_TOLERANCE_MM):
        raise PlacementMismatch(f"The NIfTI placement options (orientation_unknown / nifti_transforms, an input's own) place "
                         f"this array on spacing {placed.spacing}, origin {placed.origin}, direction "
                         f"{placed.direction}, not on the geometry given ({geometry.spacing}, {geometry.origin}, "
                         f"{geometry.direction}): they belong to the grid the input was read on. Give "
                         f"nifti_write_options of a volume on this grid, or none.")


def _scale_as_probability(header: Any) -> None:
    """Give the NIfTI ``header`` of a uint8 ``255 x p`` map ``scl_slope`` 1/255 and ``scl_inter`` 0 (the voxels
    are stored unchanged: nibabel keeps a set scale), and the display range ``cal_min`` 0 / ``cal_max`` 1, so that
    a reader that applies the NIfTI scale (nibabel's ``get_fdata``, ITK and 3D Slicer, MONAI, nnU-Net) reads
    probabilities in [0, 1]: without it they read 0..255, and only ``descrip`` said that 255 means 1.0."""
    header.set_slope_inter(PROBABILITY_255_SLOPE, 0.0)
    header["cal_min"], header["cal_max"] = 0.0, 1.0


def _write_itk(tmp: Path, array_zyx: np.ndarray, geometry: ImageGeometry, content: str = "") -> None:
    sitk = _sitk()
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_zyx))
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    if content:
        image.SetMetaData(CONTENT_KEY, content)
    with _quiet_itk():  # ITK's own lines on stderr would come before our one-line error
        sitk.WriteImage(image, str(tmp), True)


def check_written(tmp: Path, path: PathLike) -> None:
    """InputError naming ``path`` when the NRRD / MetaImage just written to ``tmp`` (before it replaces ``path``)
    is incomplete (:func:`~.itk.check_written_image`): the earlier file at ``path`` is then kept."""
    from .itk import check_written_image

    try:
        check_written_image(tmp)
    except InputError as exc:
        reason = str(exc).replace(f"'{tmp}'", "the written file")
        raise InputError(f"Cannot write '{path}': {reason} (is the disk full?); nothing was replaced.") from None


def _checked_map(array: Any, caller: str, what: str, reader: str) -> np.ndarray:
    """``array`` (a label or probability map) as a numeric numpy array, else TypeError naming ``caller``, what was
    passed and how to get the ``(z, y, x)`` array (:func:`~..volume.numeric_array`): a nibabel image failed with
    "'<' not supported between instances of 'Nifti1Image' and 'int'"."""
    return numeric_array(array, f"{caller} needs the {what} as a numpy array in (z, y, x) order", reader)


def _write_array(path: PathLike, array_zyx: np.ndarray, geometry: ImageGeometry, overwrite: bool,
                 content: str = "", orientation_unknown: bool = False,
                 nifti_transforms: Optional[Dict[str, Any]] = None, nifti_version: int = 1,
                 nifti_intent: str = "", shape_zyx: Optional[Sequence[int]] = None) -> Path:
    """``content``: the tag (:data:`~.formats.CONTENT_KEY`) saying what the voxels hold, or "" for none.
    ``shape_zyx``: the ``(z, y, x)`` shape of the volume whose geometry is written (:func:`~.nifti.nifti_write_options`
    gives the CT's), refused when the array's differs (:func:`_check_shape_of_geometry`); None: not checked.
    ``nifti_intent``: a NIfTI output's intent (nibabel's name, e.g. :data:`NIFTI_LABEL_INTENT`), "" for none.
    ``orientation_unknown``: a NIfTI output gets no sform/qform, like an input that had none (``geometry`` must
    then be that input's nibabel base affine); ``nifti_version``: 2 writes a NIfTI output as NIfTI-2
    (:func:`_nifti_image_class`); other formats ignore both."""
    path = Path(path)
    suffix = _check_write_suffix(path)
    if array_zyx.ndim != 3:
        raise ValueError(f"expected a 3D (z, y, x) array, got shape {array_zyx.shape}")
    _check_shape_of_geometry(array_zyx.shape, shape_zyx)
    from ..validation import check_direction_axes

    # an ImageGeometry with the spacing folded into its direction was written with other voxel sizes than its
    # spacing (and a sheared one as a file the readers refuse): the rule check_ct and lesion_report apply
    check_direction_axes(geometry.direction_matrix, f"geometry for {path}")
    with atomic_output(path, overwrite) as tmp:
        try:
            if suffix in NIFTI_SUFFIXES:
                _write_nifti(tmp, array_zyx, geometry, content, orientation_unknown, nifti_transforms, nifti_version,
                             nifti_intent)
            else:
                _write_itk(tmp, array_zyx, geometry, content)
            written = tmp.stat().st_size
        except (RuntimeError, OSError) as exc:
            reason = _itk_reason(exc).replace(str(tmp), "the file")  # ITK names its hidden temporary file
            raise InputError(f"Cannot write '{path}': {reason} ({_likely_write_cause(exc)})"
                             f"{non_ascii_path_hint(path)}.") from None
        if written == 0:  # ITK wrote under another name (or nothing): the empty placeholder must not become the output
            raise InputError(f"Cannot write '{path}': the writer produced an empty file{non_ascii_path_hint(path)}.")
        if suffix not in NIFTI_SUFFIXES:  # nibabel raises on a failed write; ITK's NRRD writer does not
            check_written(tmp, path)
    return path


def _check_shape_of_geometry(shape: Sequence[int], shape_zyx: Optional[Sequence[int]]) -> None:
    """ValueError when an array of ``shape`` is written with the geometry of a volume of another ``shape_zyx``: a
    label map in nibabel's (x, y, z) order, 20 x 320 x 320 for a 320 x 320 x 20 CT, was written with the CT's
    geometry, a file of another grid that only a later read against the CT refused (the library API audit)."""
    if shape_zyx is None or tuple(int(n) for n in shape) == tuple(int(n) for n in shape_zyx):
        return
    hint = ""
    if tuple(int(n) for n in shape)[::-1] == tuple(int(n) for n in shape_zyx):
        hint = " It is the CT's shape reversed: an (x, y, z) array (nibabel's order)? Pass array.T."
    raise ValueError(f"the array to write is (z, y, x) {tuple(int(n) for n in shape)}, while the geometry given is "
                     f"that of a volume of {tuple(int(n) for n in shape_zyx)}: written so, it would lie on another "
                     f"grid than that volume.{hint}")


def _likely_write_cause(exc: BaseException) -> str:
    """What most likely made a write fail, as a question for the user: a file larger than allowed (EFBIG) was
    asked 'is the disk full or read-only?'."""
    import errno

    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return ("it would be larger than allowed here: is there a file-size limit (ulimit -f), or is the disk "
                "FAT32, whose files end at 4 GiB?")
    return "is the disk full or read-only?"


def write_label_map(path: PathLike, labels_zyx: np.ndarray, geometry: ImageGeometry,
                    overwrite: bool = False, orientation_unknown: bool = False,
                    nifti_transforms: Optional[Dict[str, Any]] = None, nifti_version: int = 1,
                    shape_zyx: Optional[Sequence[int]] = None) -> Path:
    """Write a ``(z, y, x)`` label map (integers 0..255; floats within 1e-3 of one rounded to it, as
    :func:`~.labels.read_label_map` rounds them) as uint8 to .nii/.nii.gz/.nrrd/.mha; returns the path.

    The file's geometry equals ``geometry`` exactly (NIfTI: sform = qform = ``geometry.ijk_to_ras()``,
    codes 1; intent code 1002, NIFTI_INTENT_LABEL; no scl_slope/scl_inter). Written atomically; an existing file is
    kept unless ``overwrite``. ``orientation_unknown``: for the label map of a NIfTI CT without orientation (:func:`~.nifti.has_unknown_orientation`), a NIfTI output
    keeps sform and qform codes 0, so that ITK and 3D Slicer place it as they place that CT.
    ``nifti_transforms``: for a NIfTI CT whose sform and qform disagree (:func:`~.nifti.nifti_write_options`), a
    NIfTI output gets the same two, with their codes and unit, for the same reason. ``nifti_version``: 2 for the
    label map of a NIfTI-2 CT (:func:`~.nifti.nifti_write_options`), whose NIfTI output is then NIfTI-2 as well
    (tools expect the format they gave back); a map with more than 32767 voxels along an axis, which NIfTI-1
    cannot describe, is written as NIfTI-2 whatever is given. ``shape_zyx``: the shape of the CT whose geometry is
    given (:func:`~.nifti.nifti_write_options` gives it), when given a label map of another shape is refused
    (ValueError; an (x, y, z) array was written on another grid than its CT's).
    """
    labels_zyx = _checked_map(labels_zyx, "write_label_map", "label map",
                              "LiverTumorSegLib.io.read_label_map(path) (its .array)")
    geometry = checked_geometry(geometry, "write_label_map")
    if labels_zyx.dtype != np.uint8:
        if np.issubdtype(labels_zyx.dtype, np.floating):
            labels_zyx = _whole_label_values(labels_zyx)
        if labels_zyx.size and (labels_zyx.min() < 0 or labels_zyx.max() > 255):
            raise ValueError(f"label values {labels_zyx.min()}..{labels_zyx.max()} do not fit uint8 (0..255)")
        labels_zyx = labels_zyx.astype(np.uint8)
    return _write_array(path, labels_zyx, geometry, overwrite, orientation_unknown=orientation_unknown,
                        nifti_transforms=nifti_transforms, nifti_version=nifti_version,
                        nifti_intent=NIFTI_LABEL_INTENT, shape_zyx=shape_zyx)


def _whole_label_values(labels_zyx: np.ndarray) -> np.ndarray:
    """A float label map's values rounded to the whole numbers they stand for, as :func:`~.labels.read_label_map`
    rounds them: within :data:`~.labels.NEAR_INTEGER_TOLERANCE` of one (a map saved as float32 by a scaling step,
    1.9999 for tumor). ValueError for any other value (NaN, 0.5: a probability map, not labels). The writer
    refused 1.9999 that the reader took as 2, and a cast without rounding would have made it 1 (liver)."""
    from .labels import NEAR_INTEGER_TOLERANCE, near_integers_rounded

    rounded, off = near_integers_rounded(labels_zyx)  # off: True for NaN and inf too
    if off.any():
        examples = ", ".join(f"{v:g}" for v in np.unique(labels_zyx[off])[:5])
        raise ValueError(f"label map has non-integer values ({examples}): a label map holds whole numbers "
                         f"(0 background, 1 liver, 2 tumor; values within {NEAR_INTEGER_TOLERANCE:g} of one are "
                         f"rounded to it); round or threshold it first, or write a tumor probability map with "
                         f"write_probability_map")
    return rounded


def write_probability_map(path: PathLike, probability_zyx: np.ndarray, geometry: ImageGeometry,
                          overwrite: bool = False, orientation_unknown: bool = False,
                          nifti_transforms: Optional[Dict[str, Any]] = None, nifti_version: int = 1,
                          shape_zyx: Optional[Sequence[int]] = None) -> Path:
    """Write a tumor probability map ``(z, y, x)`` uint8 ``round(255 p)`` (``segment --probabilities``) to
    .nii/.nii.gz/.nrrd/.mha, tagged :data:`~.formats.PROBABILITY_255_CONTENT` so that readers take its values as
    255 x p even when the largest is 0 or 1 (a confident tumor-free case; untagged, that reads as a hard 0/1 map).
    A NIfTI map also gets ``scl_slope`` 1/255 (:data:`~.formats.PROBABILITY_255_SLOPE`), so that other tools read
    it as probabilities in [0, 1]; this library's readers keep its stored uint8.
    ``orientation_unknown``, ``nifti_transforms``, ``nifti_version`` and ``shape_zyx`` as in :func:`write_label_map`."""
    probability_zyx = _checked_map(probability_zyx, "write_probability_map", "probability map",
                                   "LiverTumorSegLib.io.read_volume(path) (its .array)")
    geometry = checked_geometry(geometry, "write_probability_map")
    if probability_zyx.dtype != np.uint8:
        raise ValueError(f"a probability map is written as uint8 255 x p, got {probability_zyx.dtype}; pass "
                         f"np.round(255 * p).astype(np.uint8) for probabilities p in 0..1")
    return _write_array(path, probability_zyx, geometry, overwrite, PROBABILITY_255_CONTENT, orientation_unknown,
                        nifti_transforms, nifti_version, shape_zyx=shape_zyx)


def storable_array(array: np.ndarray) -> np.ndarray:
    """``array`` in a dtype every output format stores: bool -> uint8, float16/float64 -> float32, 64-bit
    integers -> int32/uint32 when their values fit (else float64); complex data is refused (InputError); a
    big-endian array -> native byte order (SimpleITK, which writes NRRD and MetaImage, refused ``>i2``).
    nibabel refused bool and float16 and wanted an explicit header for 64-bit integers."""
    array = np.asarray(array)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    kind = array.dtype
    if np.issubdtype(kind, np.complexfloating):
        raise InputError(f"Cannot write a {kind} (complex) volume; CT and label maps are real-valued.")
    if kind == np.bool_:
        return array.astype(np.uint8)
    if kind in (np.float16, np.float64):
        return array.astype(np.float32)
    if kind in (np.int64, np.uint64):
        for target in (np.int32, np.uint32):
            info = np.iinfo(target)
            if array.size == 0 or (array.min() >= info.min and array.max() <= info.max):
                return array.astype(target)
        return array.astype(np.float64)
    return array


def write_volume(path: PathLike, volume: CTVolume, overwrite: bool = False) -> Path:
    """Write ``volume`` (``(z, y, x)``; dtype kept where every format stores it, see :func:`storable_array`)
    to .nii/.nii.gz/.nrrd/.mha with exact geometry. A NIfTI volume read from NIfTI keeps that file's own placement
    (no orientation, or its two disagreeing transforms with their codes: ``nifti_write_options``) and version, so every
    tool places the copy where it places the original (ITK and 3D Slicer put a copy with sform = qform 48 mm off, or
    mirrored front-back for a file without orientation), where it still places it on ``volume.geometry``."""
    from .nifti import nifti_write_options

    array = storable_array(volume.array)
    if full_suffix(Path(path)) in NIFTI_SUFFIXES:
        try:
            return _write_array(path, array, volume.geometry, overwrite, **nifti_write_options(volume))
        except PlacementMismatch:  # meta of another grid than this one: written with its own geometry
            pass
    return _write_array(path, array, volume.geometry, overwrite)
