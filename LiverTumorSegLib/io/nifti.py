"""Reading NIfTI (``.nii``, ``.nii.gz``) with nibabel: geometry from sform/qform exactly as nibabel's affine,
scl_slope/scl_inter applied in float32."""
import io
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from ..errors import CancelledError, InputError, raise_if_out_of_memory
from ..fileutil import full_suffix, with_lower_suffix, written_suffix
from ..volume import PLACEMENT_META_KEYS, CTVolume, ImageGeometry
from .conversions import (_check_3d_shape, _check_header_spacing, axes_are_orthogonal, check_geometry_values,
                          check_data_fits_file, hu_copy_itemsize, check_memory_for_read, data_after_voxels_warning, to_hu_dtype,
                          STORED_FLOATING_KEY)
from .formats import _SUPPORTED_TEXT


def _qform_problem_of_file(path: Path) -> Optional[str]:
    """:func:`_quaternion_problem` of the file's header when only its qform places it (qform code > 0, sform code
    0), read without nibabel's image loading (which computes that qform's affine and fails on it); else None."""
    import gzip

    import nibabel as nib

    from ..thread_warnings import warnings_hidden_in_this_thread

    try:
        opener = gzip.open if full_suffix(path) == ".nii.gz" else open
        with opener(str(path), "rb") as fh:
            head = fh.read(540)
        for kind in (nib.Nifti1Header, nib.Nifti2Header):
            try:
                with warnings_hidden_in_this_thread():  # a probe: its header's oddities are the caller's to report
                    header = kind.from_fileobj(io.BytesIO(head), check=False)
            except Exception:  # noqa: BLE001 - not this kind of header
                continue
            if int(header["qform_code"]) > 0 and int(header["sform_code"]) <= 0:
                return _quaternion_problem(header)
            return None
    except Exception:  # noqa: BLE001 - an unreadable head (a damaged gzip stream too): the caller's own message
        return None
    return None


def _raw_nifti_head(path: Path) -> Optional[Tuple[str, bool, bytes]]:
    """``(byte order, NIfTI-2?, header bytes)`` as stored in the file; None when unreadable or not NIfTI."""
    import gzip
    import struct

    try:
        opener = gzip.open if full_suffix(path) == ".nii.gz" else open
        with opener(str(path), "rb") as fh:
            head = fh.read(540)
    except (OSError, EOFError):
        return None
    for order in ("<", ">"):
        size = struct.unpack(order + "i", head[:4])[0] if len(head) >= 4 else None
        if len(head) >= 348 and size == 348:
            return order, False, head
        # a NIfTI-1 header (its magic at byte 344) whose sizeof_hdr was damaged to 540 is read by nibabel as the
        # NIfTI-1 it is: reading it as NIfTI-2 here warned of a pixdim of 5e-315 mm that the file does not hold
        if len(head) >= 540 and size == 540 and head[4:7] in (b"n+2", b"ni2"):
            return order, True, head
        if len(head) >= 348 and size == 540 and head[344:347] in (b"n+1", b"ni1"):
            return order, False, head
    return None


def _raw_nifti_pixdim(path: Path) -> Optional[Tuple[float, float, float]]:
    """pixdim[1:4] as stored in the file (nibabel replaces 0 by 1 when loading); None when unreadable."""
    import struct

    raw = _raw_nifti_head(path)
    if raw is None:
        return None
    order, nifti2, head = raw
    return struct.unpack(order + "3d", head[112:136]) if nifti2 else struct.unpack(order + "3f", head[80:92])


def _raw_nifti_slope_inter(path: Path) -> Optional[Tuple[float, float]]:
    """(scl_slope, scl_inter) as stored in the file (nibabel's loaded header has NaN); None when unreadable."""
    import struct

    raw = _raw_nifti_head(path)
    if raw is None:
        return None
    order, nifti2, head = raw
    return struct.unpack(order + "2d", head[176:192]) if nifti2 else struct.unpack(order + "2f", head[112:120])


def _unused_intercept_warnings(path: Path) -> List[str]:
    """A note when the header's scl_slope is 0 (or not finite) while its scl_inter is a number other than 0: by
    the NIfTI standard no scaling applies (nibabel, so this reader, reads the values as stored), while ITK (3D
    Slicer, SimpleITK) takes the slope as 1 and adds the intercept; a CT stored with slope 0 and intercept -1024 was
    read here in HU and shown 1024 HU lower in Slicer, without a word from either."""
    raw = _raw_nifti_slope_inter(path)
    if raw is None:
        return []
    slope, inter = raw
    if (np.isfinite(slope) and slope != 0) or not np.isfinite(inter) or inter == 0:
        return []
    return [f"'{path}': its header's scl_slope is {slope:g} with scl_inter {inter:g}. By the NIfTI standard a slope "
            f"of {slope:g} means no scaling, so its values were read as stored (intercept not added); ITK-based "
            f"programs (3D Slicer, SimpleITK) add the intercept and show every value {inter:+g} off. Check that "
            f"air reads about -1000 HU, and fix the header (scl_slope 1 with the intercept the values need, or "
            f"scl_inter 0) or export the file again."]


NIFTI_UNIT_TO_MM = {"meter": 1000.0, "mm": 1.0, "micron": 0.001, "unknown": 1.0}
"""The header's spatial unit (``xyzt_units``) in mm; unknown is taken as mm, as ITK and Slicer do."""

SPATIAL_UNIT_KEY = "nifti_spatial_unit"
""":attr:`CTVolume.meta` key of a NIfTI whose header is in another unit than mm (``{"unit": "meter",
"mm_per_unit": 1000.0}``): its spacing and origin were converted, as ITK and 3D Slicer convert them."""


def _unit_scale(header) -> Tuple[float, List[str]]:
    """``(mm per header unit, notes)``: ITK (so Slicer) reads a NIfTI in metres or microns in mm; nibabel does
    not convert, so a metre-valued affine read as mm gave 0.003 mm voxels and a 0 mL liver."""
    try:
        unit = header.get_xyzt_units()[0]
    except Exception:  # noqa: BLE001 - a unit code nibabel does not know: take mm, as for 'unknown'
        return 1.0, []
    scale = NIFTI_UNIT_TO_MM.get(unit, 1.0)
    if scale == 1.0:
        return 1.0, []
    return scale, [f"NIfTI spatial unit is {unit}s; spacing and origin were converted to mm (as ITK and 3D Slicer "
                   f"read it)"]


def _scaled_affine(affine: np.ndarray, scale: float) -> np.ndarray:
    """``affine`` with its linear part and translation in mm (``scale`` mm per header unit)."""
    out = np.array(affine, dtype=np.float64, copy=True)
    out[:3, :] *= scale
    return out


def _transforms_disagree(header: Any, scale: float) -> bool:
    """Whether the header sets both sform and qform and they are more than 1e-3 (mm, or a direction cosine) apart:
    nibabel and this tool place such a file by the sform, ITK and 3D Slicer by the qform unless the sform code
    is 1."""
    if int(header["sform_code"]) <= 0 or int(header["qform_code"]) <= 0:
        return False
    if _quaternion_problem(header):  # no qform to compare: the caller's own warning says so
        return False
    return not np.allclose(_scaled_affine(header.get_sform(), scale), _scaled_affine(header.get_qform(), scale),
                           atol=1e-3)


def _nifti_geometry(header, source: str, warn: bool = True) -> Tuple[ImageGeometry, List[str]]:
    """Geometry from a NIfTI header, following nibabel (sform if set, else qform) = ``img.affine``, in mm (a
    header in metres or microns is converted, :func:`_unit_scale`; a refusal of the converted spacing or origin
    names the unit: pixdim 3 in metres was refused as '3000 mm' voxels without a word of why)."""
    scale, _ = _unit_scale(header)
    try:
        return _nifti_geometry_in_mm(header, source, warn)
    except InputError as exc:
        if scale == 1.0:
            raise
        raise InputError(f"{exc}{unit_conversion_text(str(header.get_xyzt_units()[0]), scale)}") from None


def unit_conversion_text(unit: str, mm_per_unit: float) -> str:
    """The sentence a refusal or warning of a converted NIfTI spacing ends with (a leading space)."""
    return (f" The NIfTI header gives its spatial unit as {unit}s, so its numbers were multiplied by {mm_per_unit:g} "
            f"to mm, as ITK and 3D Slicer read them; if they are mm, set the header's xyzt_units to mm.")


def _nifti_geometry_in_mm(header, source: str, warn: bool = True) -> Tuple[ImageGeometry, List[str]]:
    """:func:`_nifti_geometry` without naming the unit in its refusals."""
    scale, warnings = _unit_scale(header)
    sform_code, qform_code = int(header["sform_code"]), int(header["qform_code"])
    if sform_code <= 0:
        _check_pixdim_and_quatern(header, source, qform_code)
    if sform_code > 0:
        affine = _scaled_affine(header.get_sform(), scale)
        if not np.all(np.isfinite(affine)):
            raise InputError(f"'{source}' has non-finite values (NaN/Inf) in its voxel-to-world affine (sform: "
                             f"origin, spacing or direction); fix the header (e.g. re-export from the scanner/PACS).")
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        _check_header_spacing(spacing, source)
        if qform_code > 0 and not axes_are_orthogonal(affine[:3, :3], 1e-4):
            # the qform's spacing is pixdim, checked as for a qform-only file (a pixdim of 0 became 1 mm); the
            # sform's warnings ('this tool follows the sform') would say the opposite of what is done
            _check_qform_standing_in_for_sheared_sform(header, source, qform_code)
            warnings.append("NIfTI sform is sheared (its voxel axes are not at right angles), so the qform was used "
                            "instead; nibabel-based tools place this CT by the sheared sform. NIfTI outputs keep both "
                            "transforms and their codes, so each tool lays them over this file; other output formats "
                            "get the qform's geometry")
            geometry = ImageGeometry.from_ijk_to_ras(_scaled_affine(header.get_qform(), scale))
        else:
            if warn:  # re-opens the file for the raw pixdim: not for a caller that drops the warnings
                warnings += _pixdim_against_sform(Path(source), spacing, scale)
            damaged_qform = _quaternion_problem(header) if qform_code > 0 else None
            if damaged_qform:
                warnings.append(f"NIfTI qform is damaged ({damaged_qform}); the sform was used (as "
                                f"nibabel does), while ITK and 3D Slicer, which read the qform unless the sform code "
                                f"is 1, may refuse or misplace this CT. Re-export it to be sure")
            elif _transforms_disagree(header, scale):
                warnings.append("NIfTI sform and qform disagree; the sform was used (as nibabel does), while ITK and "
                                "3D Slicer use the qform unless the sform code is 1, so tools may place this CT "
                                "differently. NIfTI outputs keep both transforms and their codes, so each tool lays "
                                "them over this file; other output formats get the sform's geometry")
            geometry = ImageGeometry.from_ijk_to_ras(affine[:, :])
    elif qform_code > 0:
        geometry = ImageGeometry.from_ijk_to_ras(_scaled_affine(header.get_qform(), scale))
    else:
        warnings.append("NIfTI file has no sform/qform orientation, so tools place it differently (nibabel and this "
                        "tool: its base affine; ITK and 3D Slicer: identity directions at origin 0). NIfTI outputs "
                        "keep the missing orientation, so each tool lays them over this file; other output formats "
                        "get the base affine. Re-export the CT with its orientation to be sure of left and right")
        geometry = ImageGeometry.from_ijk_to_ras(_scaled_affine(header.get_base_affine(), scale))
    check_geometry_values(geometry.spacing, geometry.origin, geometry.direction, source)  # refuses a sheared grid
    return geometry, warnings


def _check_pixdim_and_quatern(header: Any, source: str, qform_code: int) -> None:
    """Refuse what the qform (or the base affine) of a NIfTI header would silently get wrong: pixdim[1:4] of 0,
    negative or not finite (nibabel turns 0 into 1 mm), and, with a qform, a non-finite quaternion or offset."""
    raw = _raw_nifti_pixdim(Path(source))
    _check_header_spacing(raw if raw is not None else [float(v) for v in header["pixdim"][1:4]], source)
    quatern = [float(header[k]) for k in ("quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y",
                                          "qoffset_z")]
    if qform_code > 0 and not all(np.isfinite(v) for v in quatern):
        raise InputError(f"'{source}' has non-finite values (NaN/Inf) in its qform orientation or origin; fix the "
                         f"header (e.g. re-export from the scanner/PACS).")
    problem = _quaternion_problem(header) if qform_code > 0 else None
    if problem:  # nibabel's get_qform raised 'w2 should be positive', an internal error
        raise InputError(f"'{source}' has a damaged qform orientation ({problem}); fix the header (e.g. re-export "
                         f"from the scanner/PACS).")


def _check_qform_standing_in_for_sheared_sform(header: Any, source: str, qform_code: int) -> None:
    """:func:`_check_pixdim_and_quatern` of the qform that places a file whose sform is sheared, its refusal saying
    why the sform cannot be used instead: 'a damaged qform' alone left a reader asking why the sform was not."""
    try:
        _check_pixdim_and_quatern(header, source, qform_code)
    except InputError as exc:
        raise InputError(f"{exc} Its sform cannot place it instead: the sform is sheared (its voxel axes are not at "
                         f"right angles).") from None


QUATERNION_TOLERANCE = 3 * float(np.finfo(np.float32).eps)
"""How far b^2 + c^2 + d^2 of a qform quaternion may exceed 1 (float32 rounding; nibabel's own threshold)."""


def _quaternion_problem(header: Any) -> Optional[str]:
    """Why the header's qform quaternion ``(b, c, d)`` is no rotation (not finite, or b^2 + c^2 + d^2 > 1, which
    leaves no real a), or None."""
    bcd = np.array([float(header[k]) for k in ("quatern_b", "quatern_c", "quatern_d")], dtype=np.float64)
    if not np.all(np.isfinite(bcd)):
        return "its quaternion is not finite"
    with np.errstate(over="ignore"):
        norm = float(np.sum(bcd * bcd))
    if not norm <= 1.0 + QUATERNION_TOLERANCE:
        return f"quaternion b, c, d = {bcd[0]:.4g}, {bcd[1]:.4g}, {bcd[2]:.4g} is no rotation: b^2 + c^2 + d^2 > 1"
    return None


def _pixdim_against_sform(path: Path, sform_spacing_mm: np.ndarray, scale: float) -> List[str]:
    """A warning when the stored pixdim[1:4] are not the sform's voxel sizes (zero, negative or other values):
    this tool, like nibabel, follows the sform, while ITK (3D Slicer's reader) takes its spacing from pixdim, so
    there the CT lands elsewhere (a negative pixdim mirrors it) and the label map written here does not overlay
    it. Nothing is changed: the sform is the NIfTI standard's answer."""
    raw = _raw_nifti_pixdim(path)
    if raw is None:
        return []
    stored = np.asarray(raw, dtype=np.float64) * scale
    if np.all(stored > 0) and np.allclose(stored, sform_spacing_mm, rtol=1e-3, atol=1e-4):
        return []
    shown = ", ".join(f"{v:g}" for v in raw)
    sizes = ", ".join(f"{v:.4g}" for v in sform_spacing_mm)
    return [f"NIfTI pixdim ({shown}) is not the sform's voxel size ({sizes} mm): this tool follows the sform (as "
            f"nibabel does), but ITK-based programs such as 3D Slicer take the spacing from pixdim and place this "
            f"CT differently (mirrored where pixdim is negative), so the label map written here will not overlay "
            f"it there. Fix the header: pixdim[1:4] = the sform's voxel sizes"]


def _check_data_fits_file(path: Path, shape_xyz: tuple, header: Any, data_offset: int) -> List[str]:
    """Refuse a header whose voxels cannot be in the file (:func:`~.conversions.check_data_fits_file`); a warning
    when an uncompressed file holds a slice or more beyond them (a header edited to fewer slices: the rest of
    the scan is not read). ``data_offset``: where the voxels start (the loaded image's ``dataobj.offset``; a
    loaded header's own vox_offset reads 0)."""
    header_bytes = int(header["sizeof_hdr"]) if "sizeof_hdr" in header else 348
    if int(data_offset) < header_bytes:  # nibabel takes vox_offset 0 as it stands: the header read as voxels
        raise InputError(f"Cannot read '{path}': its header puts the voxels at byte {int(data_offset)} (vox_offset), "
                         f"inside the {header_bytes}-byte header itself; the header is damaged (a single-file NIfTI "
                         f"stores them from byte {header_bytes + 4} on). Export the CT again.")
    size = path.stat().st_size
    deflated = full_suffix(path) == ".nii.gz"
    itemsize = header.get_data_dtype().itemsize
    available = size if deflated else size - int(data_offset)
    stored = check_data_fits_file(path, shape_xyz, itemsize, available, deflated)
    return [] if deflated else data_after_voxels_warning(shape_xyz, itemsize, available - stored)


def _read_as_scaled(image: Any, slope: float, inter: float) -> bool:
    """Whether :func:`_read_nifti` scales the stored values of the loaded NIfTI ``image`` (``slope``, ``inter``:
    :func:`_nifti_scaling`) into a float32 copy: a scale other than (1, 0), unless it is a probability map as written
    (:func:`_stored_as_probability_255`)."""
    header = image.header
    return (slope, inter) != (1.0, 0.0) and \
        not _stored_as_probability_255(_nifti_content(header), header, slope, inter)


def nifti_read_itemsizes(image: Any) -> Tuple[int, int]:
    """``(read, copy)`` bytes a voxel that :func:`_read_nifti` of the loaded (header only) NIfTI ``image`` holds at
    its peak: the stored voxels it read (as float32 at least when scaled) and the HU copy beside them
    (:func:`hu_copy_itemsize`). Its own memory check counts them, and so does a batch's count of a read ahead
    (:func:`~LiverTumorSegLib.io.reading.read_peak_bytes`)."""
    slope, inter = _nifti_scaling(image)
    scaled = _read_as_scaled(image, slope, inter)
    stored = image.header.get_data_dtype()
    stored_itemsize = int(stored.itemsize)
    return (max(4, stored_itemsize) if scaled else stored_itemsize), \
        hu_copy_itemsize(stored_itemsize, scaled, unsigned=stored.kind == "u", floating=stored.kind == "f")


MAX_NIFTI_EXTENSION_BYTES = 64 << 20
"""The most bytes of header extensions (between the 348/540-byte header and the voxels, ``vox_offset``) a NIfTI may
hold: scanners' and converters' extensions (DICOM tags, AFNI, JSON sidecars) take kilobytes; nibabel reads them all
into memory before anything else, so a 6 MB .nii.gz whose header claimed six 1 GiB extensions took 6.6 GB (the
file-safety audit)."""


def check_nifti_extensions(path: Union[str, Path]) -> None:
    """InputError, before nibabel reads ``path``, when its header puts the voxels more than
    :data:`MAX_NIFTI_EXTENSION_BYTES` after the header (``vox_offset``); nothing for a file whose first bytes are no
    NIfTI-1/2 header (nibabel's own read says what is wrong). Reads the first 544 bytes only (decompressed for .gz)."""
    import gzip
    import struct

    try:
        opener = gzip.open if str(path).lower().endswith(".gz") else open
        with opener(str(path), "rb") as handle:
            head = handle.read(544)
    except Exception:  # noqa: BLE001 - OSError, EOFError, zlib.error of a damaged stream: nibabel's read names it
        return
    if len(head) < 348:
        return
    for order in ("<", ">"):
        size = struct.unpack(order + "i", head[:4])[0]
        if size == 348:
            offset, header_bytes = float(struct.unpack(order + "f", head[108:112])[0]), 348
        elif size == 540 and len(head) >= 540:
            offset, header_bytes = float(struct.unpack(order + "q", head[168:176])[0]), 540
        else:
            continue
        if offset - header_bytes > MAX_NIFTI_EXTENSION_BYTES:  # NaN passes: nibabel's own checks say so
            raise InputError(f"Cannot read '{path}': its NIfTI header puts the voxels {offset:.0f} bytes into the "
                             f"file (vox_offset), after {offset - header_bytes:.0f} bytes of header extensions, more "
                             f"than any image needs (at most {MAX_NIFTI_EXTENSION_BYTES // 2 ** 20} MiB here); the "
                             f"header is damaged. Export the volume again.")
        return


def _read_nifti(path: Path, uint8_if_fits: bool = False) -> CTVolume:
    """A NIfTI file as a :class:`CTVolume` (``uint8_if_fits``: see :func:`~.conversions.to_hu_dtype`)."""
    import nibabel as nib

    check_nifti_extensions(path)
    try:
        image = nib.load(str(path), mmap=False)  # a .nii stays unmapped: Windows cannot replace a mapped file
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types for bad files
        raise_if_out_of_memory(exc, str(path))
        from .formats import renamed_hint
        hint = renamed_hint(path, full_suffix(path))  # first: a gzip stream read as a header often looks like a
        problem = None if hint else _qform_problem_of_file(path)  # damaged qform (5 of 12 such files said so)
        if problem:  # nibabel computes the affine from a qform-only header while loading ('w2 should be positive')
            raise InputError(f"'{path}' has a damaged qform orientation ({problem}) and no sform; fix the header (e.g. "
                             f"re-export from the scanner/PACS).") from None
        suffix, written = written_suffix(path)
        if not hint and written not in (suffix, suffix.upper()):  # nibabel looked for 'X.nii' ('No such file')
            hint = (f" (its extension '{written}' is in mixed case, which nibabel and ITK do not open: rename it "
                    f"to '{with_lower_suffix(path).name}')")
        raise InputError(f"Cannot read '{path}' as NIfTI: {_short(exc)}"
                         f"{hint or '. Check that the file is complete'}.") from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"'{path}' is not a NIfTI-1/2 image; give {_SUPPORTED_TEXT}.")
    header = image.header
    if header.get_data_dtype().names is not None or header.get_data_dtype().kind == "c":
        raise InputError(f"'{path}' has RGB, vector or complex voxels; a scalar 3D CT volume is needed.")
    shape = _check_3d_shape(tuple(image.shape), str(path))
    geometry, warnings = _nifti_geometry(header, str(path))
    slope, inter = _nifti_scaling(image)
    if slope < 0:  # the values come out mirrored: it was told its values look shifted by +1024 or are not HU
        raise InputError(f"'{path}': its header's scl_slope is negative ({slope:g}), which turns every value around "
                         f"(air bright, bone dark); a CT, label map or probability map is stored with a positive "
                         f"slope (1 for Hounsfield units). Fix scl_slope in the header, or export the file again.")
    warnings += _unused_intercept_warnings(path)
    content = _nifti_content(header)
    scaled = _read_as_scaled(image, slope, inter)
    warnings += _check_data_fits_file(path, shape, header, int(getattr(image.dataobj, "offset", 0) or 0))
    read_itemsize, copy_itemsize = nifti_read_itemsizes(image)
    check_memory_for_read(shape, read_itemsize, str(path), copy_itemsize=copy_itemsize,  # and the inflating buffers
                          compressed_bytes=path.stat().st_size if full_suffix(path) == ".nii.gz" else None)
    try:
        if full_suffix(path) == ".nii.gz":  # few, large zlib calls (io.gzip_inflate) instead of nibabel's gzip
            data = _gzip_voxels(path, image, shape, warnings)
        elif _plain_proxy(image):  # read in steps that a Ctrl-C (a batch reader's read stop) can stop between
            data = _raw_voxels(path, image, shape)
        else:
            proxy = image.dataobj
            data = np.asanyarray(proxy.get_unscaled() if hasattr(proxy, "get_unscaled") else proxy)
    except (InputError, CancelledError):  # a batch reader's read stop (Ctrl-C) is no corrupt file
        raise
    except Exception as exc:  # noqa: BLE001 - EOFError, zlib.error, ValueError ...
        raise_if_out_of_memory(exc, str(path))  # decoding a large CT: not a corrupt file
        raise InputError(f"Cannot read '{path}': the file is truncated or corrupt ({_short(exc)}).") from None
    data = data.reshape(shape, order="F") if data.shape != shape else data
    # NIfTI stores x fastest: nibabel's (x, y, z) array is Fortran-ordered, so .T is a C-ordered (z, y, x) view.
    data = np.ascontiguousarray(data.T)
    if scaled:  # scl_slope/scl_inter in float32 (nibabel would make a float64 copy of the whole CT)
        # integers are finite before scaling, so an infinity after it is the scale's; only a scale that can take
        # the stored type's range past float32 needs the pass over the volume that finds one
        can_overflow = np.issubdtype(data.dtype, np.integer) and (
            abs(slope) * float(max(-np.iinfo(data.dtype).min, np.iinfo(data.dtype).max)) + abs(inter)
            >= float(np.finfo(np.float32).max))
        data = data.astype(np.float32)
        with np.errstate(over="ignore", invalid="ignore"):  # said below, with its cause (numpy printed a warning)
            data *= np.float32(slope)
            data += np.float32(inter)
        if can_overflow:
            _check_scaling_kept_values_finite(data, slope, inter, path)
    stored_floating = header.get_data_dtype().kind == "f"
    array = to_hu_dtype(data, uint8_if_fits)
    volume = CTVolume(array=array, geometry=geometry, source=str(path), meta={"format": "nifti"})
    if stored_floating:
        volume.meta[STORED_FLOATING_KEY] = True
    unit_scale = _unit_scale(header)[0]
    if unit_scale != 1.0:  # named where a spacing is refused (validation.converted_unit_hint): '3000 mm' said nothing
        volume.meta[SPATIAL_UNIT_KEY] = {"unit": str(header.get_xyzt_units()[0]), "mm_per_unit": unit_scale}
    if int(header["sform_code"]) <= 0 and int(header["qform_code"]) <= 0:
        volume.meta[NIFTI_ORIENTATION_UNKNOWN_KEY] = True  # the writers keep it so (orientation_unknown)
    elif _transforms_disagree(header, unit_scale):
        volume.meta[NIFTI_TRANSFORMS_KEY] = _header_transforms(header)  # the writers keep them (nifti_transforms)
    if scaled:
        volume.meta[NIFTI_SCALING_KEY] = (float(slope), float(inter))  # a label map or CT check names the header
    if isinstance(image, nib.Nifti2Image):
        volume.meta[NIFTI_VERSION_KEY] = 2  # the writers keep it (nifti_version)
    if content:
        volume.meta["content"] = content
    if warnings:
        volume.meta["warnings"] = warnings
    return volume


def _check_scaling_kept_values_finite(data: np.ndarray, slope: float, inter: float, path: Path) -> None:
    """InputError when the header's ``scl_slope``/``scl_inter`` made stored values overflow float32 (a slope of
    1e38 turned 777,943 finite voxels into infinities, which the CT check then blamed on the file's values)."""
    if np.isfinite(data).all():
        return
    raise InputError(f"'{path}': its header's scale factors (scl_slope {slope:g}, scl_inter {inter:g}) turn stored "
                     f"values into numbers beyond float32 (infinite): the header is damaged. CT values are HU = "
                     f"stored x slope + intercept with a slope near 1; fix scl_slope/scl_inter or export the file "
                     f"again.")


NIFTI_TRANSFORMS_KEY, NIFTI_ORIENTATION_UNKNOWN_KEY = PLACEMENT_META_KEYS  # meta of the grid read only
NIFTI_SCALING_KEY = "nifti_scaling"
"""``CTVolume.meta`` key: ``(scl_slope, scl_inter)`` of a NIfTI file whose header scaled its stored values (absent
when the header has none, slope 1 and intercept 0, or for a ``segment --probabilities`` map read as stored), so that
a check that refuses the values can name the header fields that made them."""
NIFTI_VERSION_KEY = "nifti_version"
"""``CTVolume.meta`` key: 2 for a volume read from a NIfTI-2 file (absent for NIfTI-1 and other formats)."""


def _header_transforms(header: Any) -> Dict[str, Any]:
    """The header's sform and qform (4 x 4, in its own unit), their codes and the spatial unit, as written; "mm" for
    a unit code nibabel cannot read (xyzt_units 130: its get_xyzt_units raised KeyError, an internal error, where
    :func:`_unit_scale` reads such a header in mm, as ITK does: the reader fuzzing audit)."""
    try:
        unit = str(header.get_xyzt_units()[0])
    except Exception:  # noqa: BLE001 - KeyError for unit bits nibabel knows no name for
        unit = "mm"
    return {"sform": np.asarray(header.get_sform(), dtype=np.float64).tolist(), "sform_code": int(header["sform_code"]),
            "qform": np.asarray(header.get_qform(), dtype=np.float64).tolist(), "qform_code": int(header["qform_code"]),
            "unit": unit}


def nifti_write_options(volume: CTVolume) -> Dict[str, Any]:
    """The NIfTI writers' keywords that keep ``volume``'s own way of being placed in its outputs (a NIfTI CT's
    label and probability maps): ``orientation_unknown`` (:func:`has_unknown_orientation`), ``nifti_transforms``,
    the sform and qform (with codes and unit) of a CT whose two transforms disagree (else None), and
    ``nifti_version``, 2 for a NIfTI-2 CT (else 1), so that its outputs are NIfTI-2 as well. nibabel and this
    tool place a CT with disagreeing transforms by its sform, ITK and 3D Slicer by its qform unless the sform code
    is 1; a label map written with sform = qform = the sform's geometry lay 48 mm off the CT in Slicer (sform code
    2, qform moved 48 mm). Other output formats ignore all three. Also ``shape_zyx``, the CT's ``(z, y, x)`` shape,
    which every format's writer checks the map's against (an (x, y, z) array was written on another grid)."""
    meta = getattr(volume, "meta", {})
    return {"orientation_unknown": has_unknown_orientation(volume), "nifti_transforms": meta.get(NIFTI_TRANSFORMS_KEY),
            "nifti_version": int(meta.get(NIFTI_VERSION_KEY, 1)),
            "shape_zyx": tuple(int(n) for n in volume.shape_zyx)}


def has_unknown_orientation(volume: CTVolume) -> bool:
    """Whether ``volume`` was read from a NIfTI without orientation (sform and qform codes 0): its NIfTI outputs
    are then written without one too (``orientation_unknown=`` of the writers), so every tool places them as it
    places the CT."""
    return bool(getattr(volume, "meta", {}).get(NIFTI_ORIENTATION_UNKNOWN_KEY))


def _nifti_content(header: object) -> str:
    """This library's content tag (:data:`~.formats.PROBABILITY_255_CONTENT`) when the header's ``descrip``
    holds it, else ""."""
    from .formats import PROBABILITY_255_CONTENT

    try:
        text = bytes(header["descrip"].item()).split(b"\0")[0].decode("ascii", "replace").strip()
    except (KeyError, ValueError, AttributeError):
        return ""
    return text if text == PROBABILITY_255_CONTENT else ""


def _stored_as_probability_255(content: str, header: Any, slope: float, inter: float) -> bool:
    """Whether a NIfTI is a ``segment --probabilities`` map as written (:data:`~.formats.PROBABILITY_255_CONTENT`
    tag, uint8, ``scl_slope`` 1/255, ``scl_inter`` 0): it is then read as stored, uint8 ``255 x p`` (the tag tells
    the probability readers to divide by 255), not as a float32 copy 4 times its size."""
    from .formats import PROBABILITY_255_CONTENT, PROBABILITY_255_SLOPE

    return (content == PROBABILITY_255_CONTENT and header.get_data_dtype() == np.uint8 and inter == 0.0
            and abs(slope - PROBABILITY_255_SLOPE) <= 1e-6 * PROBABILITY_255_SLOPE)


def _gzip_voxels(path: Path, image: object, shape: Tuple[int, ...], warnings: List[str]) -> np.ndarray:
    """The stored (unscaled) voxels of a ``.nii.gz`` exactly where and as nibabel's array proxy would read them
    (its ``offset``, ``dtype`` in the file's byte order and ``order``), shaped ``(x, y, z)``. The stream is read
    to its end (a file cut off after the voxels, its gzip trailer missing, is refused as truncated), and a slice
    or more of data after the voxels adds the warning an uncompressed file gets (a header edited to fewer slices:
    a 30-slice CT whose header said 15 was read as half a liver without a word). Data after the voxels is
    inflated only as far as :func:`~.gzip_inflate.after_range_count_limit` (48 GiB of zeros appended as a second
    gzip member took over 2 minutes to be counted): past that the stream's end is not read, and the warning says
    "more than"."""
    from .gzip_inflate import after_range_count_limit, inflate_to_end

    proxy = image.dataobj
    dtype = np.dtype(proxy.dtype)
    count = int(np.prod(shape, dtype=np.int64))
    limit = after_range_count_limit(count * dtype.itemsize)
    raw, after = inflate_to_end(path, int(proxy.offset), count * dtype.itemsize, max_after=limit)
    warnings += data_after_voxels_warning(shape, dtype.itemsize, after, counted_up_to=limit)
    return raw.view(dtype).reshape(shape, order=getattr(proxy, "order", "F"))


def _plain_proxy(image: Any) -> bool:
    """Whether the voxels of the ``.nii`` ``image`` lie in its own file as nibabel's array proxy reads them: one
    block at its ``offset``, of its ``dtype`` (byte order included), in its ``order``, unmapped."""
    proxy = image.dataobj
    return all(hasattr(proxy, name) for name in ("offset", "dtype", "order", "file_like")) \
        and isinstance(proxy.file_like, str) and getattr(proxy, "_mmap", False) is False


def _raw_voxels(path: Path, image: Any, shape: Tuple[int, ...]) -> np.ndarray:
    """The stored (unscaled) voxels of an uncompressed ``.nii`` where and as nibabel's array proxy reads them,
    shaped ``(x, y, z)``, read in steps (:func:`~.gzip_inflate.read_range`): nibabel read them in one call, so
    Ctrl-C waited for the whole read."""
    from .gzip_inflate import read_range

    proxy = image.dataobj
    dtype = np.dtype(proxy.dtype)
    count = int(np.prod(shape, dtype=np.int64))
    raw = read_range(path, int(proxy.offset), count * dtype.itemsize)
    return raw.view(dtype).reshape(shape, order=getattr(proxy, "order", "F"))


def _nifti_scaling(image) -> Tuple[float, float]:
    """(slope, intercept) nibabel applies to the stored values; (1, 0) when unscaled or unset (NaN/0 slope)."""
    proxy = image.dataobj
    slope = getattr(proxy, "slope", 1.0)
    inter = getattr(proxy, "inter", 0.0)
    try:
        slope, inter = float(np.asarray(slope)), float(np.asarray(inter))
    except (TypeError, ValueError):
        return 1.0, 0.0
    if not np.isfinite(slope) or slope == 0:
        slope = 1.0
    if not np.isfinite(inter):
        inter = 0.0
    return slope, inter


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def first_slice_values(path: Path) -> Optional[np.ndarray]:
    """The voxel values (scaled as the header says) of the NIfTI file ``path``'s first slice, the first bytes of its
    voxels, read without the rest (a few ms for a 512 x 512 CT, where reading it whole takes tens); None for a file
    that is no 3D (or 4D) scalar NIfTI or cannot be read (its full read then says what is wrong). What a folder's
    file most likely is, cheaply: a CT's first slice nearly always holds air or padding far below 0 HU, a label
    map's never a value below 0."""
    if full_suffix(path) not in (".nii", ".nii.gz") or not Path(path).is_file():
        return None
    try:
        import nibabel as nib

        check_nifti_extensions(path)  # (refused here as None: the full read says why)
        image = nib.load(str(path), mmap=False)  # the header; voxels are read on slicing, the needed bytes only
        if len(image.shape) < 3 or image.get_data_dtype().names is not None or image.get_data_dtype().kind == "c":
            return None
        return np.asanyarray(image.dataobj[:, :, 0])
    except KeyboardInterrupt:
        raise
    except Exception:  # noqa: BLE001 - nibabel raises many types for bad files; the full read names the problem
        return None
