"""Reading and writing CT volumes and label maps with exact geometry.

Formats: NIfTI (``.nii``, ``.nii.gz``; read and written with nibabel so the affine round-trips
bit-exactly, also for oblique directions), NRRD (``.nrrd``, ``.nhdr``), MetaImage (``.mha``, ``.mhd``)
and DICOM series folders (SimpleITK/GDCM; rescale slope/intercept applied, values are HU).

Every returned :class:`~LiverTumorSegLib.volume.CTVolume` holds a ``(z, y, x)`` array and an
:class:`~LiverTumorSegLib.volume.ImageGeometry` in ``(x, y, z)`` order, LPS, mm. CT values are int16
when they are integers that fit, else float32. Problems the user can fix raise
:class:`~LiverTumorSegLib.errors.InputError` (or :class:`~LiverTumorSegLib.errors.LabelError`) with a
one-line message; SimpleITK/nibabel tracebacks never reach the user.
"""
import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import InputError, LabelError, option_hint
from .fileutil import atomic_output, full_suffix
from .volume import CTVolume, ImageGeometry

PathLike = Union[str, "os.PathLike[str]"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
READ_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES
WRITE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha")
IMAGE_2D_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
DICOM_FILE_SUFFIXES = (".dcm", ".dicom", ".ima")
LABEL_VALUES = (0, 1, 2)
GEOMETRY_TOLERANCE = 1e-3  # mm for spacing and origin, unitless for direction cosines

_FILE_FORMATS_TEXT = "NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr) or MetaImage (.mha, .mhd)"
_SUPPORTED_TEXT = "NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) or a DICOM series folder"
_INT16_MIN, _INT16_MAX = -32768, 32767


# --------------------------------------------------------------------------------------------- DICOM
@dataclass
class DicomSeriesInfo:
    """One DICOM series found in a folder. ``files`` are sorted by slice position (GDCM order)."""

    uid: str
    description: str = ""
    modality: str = ""
    series_number: str = ""
    files: List[str] = field(default_factory=list)

    @property
    def num_files(self) -> int:
        return len(self.files)

    def summary(self) -> str:
        """One line: ``UID 'description' (CT, 120 files)``."""
        what = ", ".join(x for x in (self.modality, f"{self.num_files} files") if x)
        desc = f" '{self.description}'" if self.description else ""
        return f"{self.uid}{desc} ({what})"


def _sitk():
    import SimpleITK as sitk  # noqa: N813 - the usual alias
    return sitk


@contextlib.contextmanager
def _quiet_itk() -> Iterator[None]:
    """Silence ITK's stderr warnings (we report problems ourselves); restores the previous setting."""
    process_object = _sitk().ProcessObject
    previous = process_object.GetGlobalWarningDisplay()
    process_object.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        process_object.SetGlobalWarningDisplay(previous)


def _dicom_tag(reader, tag: str) -> str:
    return reader.GetMetaData(tag).strip() if reader.HasMetaDataKey(tag) else ""


def list_dicom_series(folder: PathLike) -> List[DicomSeriesInfo]:
    """All DICOM series directly inside ``folder`` (not its subfolders), in GDCM's order.

    Raises InputError if ``folder`` is not a folder. Returns ``[]`` when it holds no DICOM series.
    """
    sitk = _sitk()
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"'{folder}' is not a folder; give the folder that holds the DICOM files.")
    series = []
    with _quiet_itk():
        uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    for uid in uids:
        files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
        info = DicomSeriesInfo(uid=uid, files=files)
        if files:
            reader = sitk.ImageFileReader()
            reader.SetFileName(files[0])
            try:
                reader.ReadImageInformation()
                info.description = _dicom_tag(reader, "0008|103e")
                info.modality = _dicom_tag(reader, "0008|0060")
                info.series_number = _dicom_tag(reader, "0020|0011")
            except RuntimeError:
                pass  # the listing still helps without the description
        series.append(info)
    return series


def _series_listing(series: Sequence[DicomSeriesInfo]) -> str:
    return "\n".join(f"  {n}. {s.summary()}" for n, s in enumerate(series, start=1))


SERIES_CHOICES_TEXT = "SeriesInstanceUID, a unique UID prefix, the series description, or its number in this list"


def _series_option(wanted: str = "...") -> str:
    """``--series 'x'`` under the command line, ``series='x'`` from Python."""
    return option_hint(f"--series '{wanted}'", f"series='{wanted}'")


def select_dicom_series(series: Sequence[DicomSeriesInfo], wanted: str, folder: PathLike = "") -> DicomSeriesInfo:
    """Pick one series by exact UID, list number (1-based), unique UID prefix, or description.

    Descriptions match case-insensitively, exactly first, then as a unique substring. Raises InputError
    naming the candidates when nothing or more than one series matches.
    """
    wanted = str(wanted).strip()
    exact = [s for s in series if s.uid == wanted]
    if exact:
        return exact[0]
    if wanted.isdigit() and 1 <= int(wanted) <= len(series) and "." not in wanted:
        return series[int(wanted) - 1]
    low = wanted.lower()
    for matches in ([s for s in series if s.uid.startswith(wanted)],
                    [s for s in series if s.description.lower() == low],
                    [s for s in series if low and low in s.description.lower()]):
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InputError(f"{_series_option(wanted)} matches {len(matches)} series in '{folder}'; give more "
                             f"of the UID, or the number from this list:\n{_series_listing(matches)}")
    raise InputError(f"No DICOM series matching {_series_option(wanted)} in '{folder}'; give its "
                     f"{SERIES_CHOICES_TEXT}. It holds:\n{_series_listing(series)}")


def _dicom_in_subfolders(folder: Path) -> List[str]:
    sitk = _sitk()
    found = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        with _quiet_itk():
            has_series = bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(sub)))
        if has_series:
            found.append(sub.name)
    return found


def _read_dicom_folder(folder: Path, series: Optional[str]) -> CTVolume:
    all_series = list_dicom_series(folder)
    if not all_series:
        subs = _dicom_in_subfolders(folder)
        hint = (f" DICOM series were found in its subfolders {', '.join(subs[:5])}; give one of those folders."
                if subs else f" Give a folder of DICOM files, or a {_FILE_FORMATS_TEXT} file.")
        raise InputError(f"Folder '{folder}' holds no DICOM series.{hint}")
    if series is not None:
        chosen = select_dicom_series(all_series, series, folder)
    elif len(all_series) == 1:
        chosen = all_series[0]
    else:
        raise InputError(f"Folder '{folder}' holds {len(all_series)} DICOM series; choose one with "
                         f"{option_hint('--series', 'series=')} ({SERIES_CHOICES_TEXT}):\n"
                         f"{_series_listing(all_series)}")
    _check_dicom_series_memory(chosen, folder)
    sitk = _sitk()
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(chosen.files)
    try:
        with _quiet_itk():
            image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"Cannot read DICOM series {chosen.uid} in '{folder}': {_itk_reason(exc)}. "
                         f"Check that all its files are complete.") from None
    notes = []
    if image.GetDimension() == 3 and image.GetSize()[2] == 1:
        thickness = _single_slice_thickness(chosen.files[0])
        if thickness:
            image.SetSpacing(tuple(image.GetSpacing()[:2]) + (thickness,))
    if image.HasMetaDataKey("ITK_non_uniform_sampling_deviation"):
        notes.append(_check_slice_positions(chosen, image, folder))
    volume = _volume_from_sitk(image, f"{folder} (series {chosen.uid})")
    if notes:
        volume.meta.setdefault("warnings", []).extend(notes)
    volume.meta.update({"format": "dicom", "series_uid": chosen.uid, "series_description": chosen.description,
                        "modality": chosen.modality, "num_files": chosen.num_files})
    if len(chosen.files) > 1 and volume.shape_zyx[0] != len(chosen.files):
        volume.meta.setdefault("warnings", []).append(
            f"series has {len(chosen.files)} files but {volume.shape_zyx[0]} slices were read")
    return volume


def _check_dicom_series_memory(series: DicomSeriesInfo, folder: Path) -> None:
    """Memory check from the first file's header (columns x rows, pixel type) times the number of files."""
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(series.files[0])
    try:
        with _quiet_itk():
            reader.ReadImageInformation()
    except RuntimeError:
        return  # the series read below reports the unreadable file
    size = tuple(reader.GetSize())
    shape_xyz = (size[0], size[1], max(len(series.files), size[2] if len(size) > 2 else 1))
    check_memory_for_read(shape_xyz, _itk_itemsize(reader.GetPixelID()), f"{folder} (series {series.uid})")


def _single_slice_thickness(file_name: str) -> Optional[float]:
    """SliceThickness, else SpacingBetweenSlices (mm) of a DICOM file; None when absent or invalid."""
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(file_name)
    with _quiet_itk():
        reader.ReadImageInformation()
    for tag in ("0018|0050", "0018|0088"):
        try:
            value = float(_dicom_tag(reader, tag))
        except ValueError:
            continue
        if value > 0:
            return value
    return None


def _check_slice_positions(series: DicomSeriesInfo, image, folder: Path) -> str:
    """Measure the slice gaps of a series ITK flagged as non-uniform; raise when slices are missing.

    Returns a warning text for small irregularities (the grid then uses the mean slice spacing).
    """
    sitk = _sitk()
    normal = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)[:, 2]
    positions = []
    reader = sitk.ImageFileReader()
    with _quiet_itk():
        for name in series.files:
            reader.SetFileName(name)
            reader.ReadImageInformation()
            positions.append(float(np.dot(reader.GetOrigin(), normal)))
    gaps = np.diff(np.sort(positions))
    median = float(np.median(gaps)) if gaps.size else 0.0
    worst = float(np.max(np.abs(gaps - median))) if gaps.size else 0.0
    if median <= 0 or worst > 0.2 * median:
        raise InputError(f"DICOM series {series.uid} in '{folder}' has missing slices or uneven slice spacing "
                         f"(gaps {gaps.min():.3g}..{gaps.max():.3g} mm, typical {median:.3g} mm); a regular 3D grid "
                         f"cannot be built. Export the complete series (or resample it to even spacing) first.")
    return (f"slice spacing varies by up to {worst:.3g} mm around {median:.3g} mm; the mean spacing "
            f"{image.GetSpacing()[2]:.4g} mm was used")


def _dicom_series_of_file(path: Path) -> str:
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise InputError(f"'{path}' is not a readable DICOM file; give the folder holding the DICOM series.") from None
    uid = _dicom_tag(reader, "0020|000e")
    if not uid:
        raise InputError(f"DICOM file '{path}' has no SeriesInstanceUID; give its folder instead.")
    return uid


# --------------------------------------------------------------------------------------- conversions
def _itk_reason(exc: BaseException) -> str:
    """The most specific single line of a SimpleITK/ITK exception text, without source paths or pointers.

    ITK texts look like ``Exception thrown in ...cxx:935:`` / ``ITK ERROR: NrrdImageIO(0x..): Read: ...:`` /
    ``[nrrd] _nrrdEncodingRaw_read: fread got only 5284 ...``; the last teem line is the most specific.
    """
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("Exception thrown in")
             and not ln.startswith("Reason: No such file")]  # MetaImage's misleading errno text
    teem = [ln for ln in lines if ln.startswith("[nrrd]") and not ln.rstrip().endswith((":", "trouble"))]
    if teem:
        text = re.sub(r"^\[nrrd\]\s*\w+:\s*", "", teem[-1])
    else:
        text = next((ln for ln in lines if "ERROR" in ln), lines[-1] if lines else type(exc).__name__)
        for prefix in ("Description:", "ITK ERROR:", "sitk::ERROR:"):
            if prefix in text:
                text = text.split(prefix, 1)[1]
        text = re.sub(r"^\s*\w+\(0x[0-9a-fA-F]+\):\s*", "", text)
    return text.strip().rstrip(":.")[:200]


def _fits_int16(lo: float, hi: float) -> bool:
    return _INT16_MIN <= lo and hi <= _INT16_MAX


def to_hu_dtype(array: np.ndarray) -> np.ndarray:
    """Return ``array`` as int16 when every value is an integer in the int16 range, else as float32.

    Works slice by slice along axis 0 to avoid full-size temporaries. Any shape.
    """
    if array.size == 0:
        return array.astype(np.int16)
    if array.dtype == np.int16:
        return array
    if np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        lo, hi = int(array.min()), int(array.max())
        return array.astype(np.int16 if _fits_int16(lo, hi) else np.float32, copy=False)
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"Voxel type {array.dtype} is not a scalar number; a scalar CT volume is needed.")
    integral = True
    chunks = array.reshape((array.shape[0], -1)) if array.ndim > 1 else array.reshape((1, -1))
    step = max(1, (1 << 22) // max(1, chunks.shape[1]))
    for start in range(0, chunks.shape[0], step):
        part = chunks[start:start + step]
        if not (np.all(np.isfinite(part)) and np.array_equal(part, np.rint(part))
                and _fits_int16(float(part.min()), float(part.max()))):
            integral = False
            break
    return array.astype(np.int16 if integral else np.float32, copy=False)


def _check_3d_shape(shape_xyz: Tuple[int, ...], source: str) -> Tuple[int, int, int]:
    """Validate an (x, y, z, ...) shape: drop trailing singleton dims, refuse 2D / 4D / empty."""
    shape = tuple(int(s) for s in shape_xyz)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    dims = " x ".join(str(s) for s in shape)
    if len(shape) < 3:
        raise InputError(f"'{source}' is 2D ({dims} pixels); a 3D CT volume is needed ({_SUPPORTED_TEXT}).")
    if len(shape) > 3:
        raise InputError(f"'{source}' is {len(shape)}D ({dims} voxels, e.g. several time points or channels); "
                         f"a single 3D CT volume is needed: extract one volume first.")
    if 0 in shape:
        raise InputError(f"'{source}' has zero size ({dims} voxels); the file holds no image data.")
    return shape  # type: ignore[return-value]


def _volume_from_sitk(image, source: str) -> CTVolume:
    sitk = _sitk()
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"'{source}' has {image.GetNumberOfComponentsPerPixel()} components per voxel (RGB or "
                         f"vector image); a scalar 3D CT volume is needed.")
    size = tuple(image.GetSize())
    shape = _check_3d_shape(size, source)
    if image.GetDimension() != 3:  # e.g. 4D with a single time point: keep the first 3 axes
        index = [0] * image.GetDimension()
        extract = list(shape) + [0] * (image.GetDimension() - 3)
        image = sitk.Extract(image, extract, index)
    array = to_hu_dtype(sitk.GetArrayFromImage(image))
    geometry = ImageGeometry(spacing=image.GetSpacing(), origin=image.GetOrigin(), direction=image.GetDirection())
    return CTVolume(array=array, geometry=geometry, source=source)


def _check_header_spacing(spacing_xyz: Sequence[float], source: str) -> None:
    """Refuse zero, negative or non-finite voxel spacing (x, y, z) mm read from a header."""
    spacing = [float(s) for s in spacing_xyz[:3]]
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        shown = ", ".join(f"{s:g}" for s in spacing)
        raise InputError(f"'{source}' has invalid voxel spacing ({shown}) mm in its header; fix the spacing in the "
                         f"header (e.g. re-export from the scanner/PACS).")


def check_memory_for_read(shape_xyz: Sequence[int], itemsize: int, source: str) -> None:
    """Estimate from the header, before any voxel is loaded, the memory needed to process a volume of
    ``shape_xyz`` (x, y, z) voxels of ``itemsize`` bytes (:func:`validation.estimate_memory_bytes`) and raise
    ResourceError saying how much is needed when it exceeds the available memory."""
    from .validation import check_memory, estimate_memory_bytes

    shape_zyx = tuple(int(s) for s in tuple(shape_xyz)[:3][::-1])
    required = estimate_memory_bytes(shape_zyx, input_itemsize=int(itemsize))
    check_memory(required, what=f"'{source}' (z, y, x) {shape_zyx}")


def _itk_itemsize(pixel_id: int) -> int:
    """Bytes per voxel component of a SimpleITK pixel type (a 1-voxel probe image, no data read)."""
    return int(_sitk().Image([1, 1, 1], pixel_id).GetSizeOfPixelComponent())


def _read_itk_file(path: Path) -> CTVolume:
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with _quiet_itk():
            reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(f"Cannot read '{path}': not a valid {full_suffix(path)} file ({_itk_reason(exc)}).") from None
    if reader.GetNumberOfComponents() != 1:
        raise InputError(f"'{path}' has {reader.GetNumberOfComponents()} components per voxel (RGB or vector "
                         f"image); a scalar 3D CT volume is needed.")
    shape = _check_3d_shape(tuple(reader.GetSize()), str(path))
    _check_header_spacing(reader.GetSpacing(), str(path))
    check_memory_for_read(shape, _itk_itemsize(reader.GetPixelID()), str(path))
    try:
        with _quiet_itk():
            image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"Cannot read '{path}': the file is truncated or corrupt ({_itk_reason(exc)}).") from None
    volume = _volume_from_sitk(image, str(path))
    volume.meta["format"] = full_suffix(path).lstrip(".")
    return volume


# --------------------------------------------------------------------------------------------- NIfTI
def _orthonormal(direction: np.ndarray, tol: float = 1e-4) -> bool:
    return bool(np.allclose(direction.T @ direction, np.eye(3), atol=tol))


def _nifti_geometry(header, source: str) -> Tuple[ImageGeometry, List[str]]:
    """Geometry from a NIfTI header, following nibabel (sform if set, else qform) = ``img.affine``."""
    warnings = []
    sform_code, qform_code = int(header["sform_code"]), int(header["qform_code"])
    if sform_code > 0:
        affine = header.get_sform()
        if qform_code > 0 and not np.allclose(affine, header.get_qform(), atol=1e-3):
            warnings.append("NIfTI sform and qform disagree; the sform was used (as nibabel does)")
        geometry = ImageGeometry.from_ijk_to_ras(affine[:, :])
        if not _orthonormal(geometry.direction_matrix) and qform_code > 0:
            warnings.append("NIfTI sform is sheared; the qform was used instead")
            geometry = ImageGeometry.from_ijk_to_ras(header.get_qform())
    elif qform_code > 0:
        geometry = ImageGeometry.from_ijk_to_ras(header.get_qform())
    else:
        warnings.append("NIfTI file has no sform/qform orientation; the default (nibabel base) affine was used")
        geometry = ImageGeometry.from_ijk_to_ras(header.get_base_affine())
    if not _orthonormal(geometry.direction_matrix):
        raise InputError(f"'{source}' has a sheared (non-orthogonal) voxel-to-world affine; CT volumes have "
                         f"orthogonal axes. Resample it to an orthogonal grid first.")
    return geometry, warnings


def _read_nifti(path: Path) -> CTVolume:
    import nibabel as nib

    try:
        image = nib.load(str(path))
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types for bad files
        raise InputError(f"Cannot read '{path}' as NIfTI: {_short(exc)}. Check that the file is complete.") from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"'{path}' is not a NIfTI-1/2 image; give {_SUPPORTED_TEXT}.")
    header = image.header
    if header.get_data_dtype().names is not None or header.get_data_dtype().kind == "c":
        raise InputError(f"'{path}' has RGB, vector or complex voxels; a scalar 3D CT volume is needed.")
    shape = _check_3d_shape(tuple(image.shape), str(path))
    geometry, warnings = _nifti_geometry(header, str(path))
    _check_header_spacing(geometry.spacing, str(path))
    slope, inter = _nifti_scaling(image)
    scaled = (slope, inter) != (1.0, 0.0)
    check_memory_for_read(shape, 4 if scaled else header.get_data_dtype().itemsize, str(path))
    try:
        proxy = image.dataobj
        data = np.asanyarray(proxy.get_unscaled() if hasattr(proxy, "get_unscaled") else proxy)
    except Exception as exc:  # noqa: BLE001 - EOFError, zlib.error, ValueError ...
        raise InputError(f"Cannot read '{path}': the file is truncated or corrupt ({_short(exc)}).") from None
    data = data.reshape(shape, order="F") if data.shape != shape else data
    # NIfTI stores x fastest: nibabel's (x, y, z) array is Fortran-ordered, so .T is a C-ordered (z, y, x) view.
    data = np.ascontiguousarray(data.T)
    if scaled:  # scl_slope/scl_inter in float32 (nibabel would make a float64 copy of the whole CT)
        data = data.astype(np.float32)
        data *= np.float32(slope)
        data += np.float32(inter)
    array = to_hu_dtype(data)
    volume = CTVolume(array=array, geometry=geometry, source=str(path), meta={"format": "nifti"})
    if warnings:
        volume.meta["warnings"] = warnings
    return volume


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


# ----------------------------------------------------------------------------------------- public read
def read_volume(path: PathLike, series: Optional[str] = None) -> CTVolume:
    """Read a CT volume: NIfTI, NRRD, MetaImage file, a DICOM series folder, or one file of a DICOM series.

    ``series`` picks one series in a DICOM folder holding several (UID, list number, unique UID prefix
    or description). Returns a :class:`CTVolume` with a ``(z, y, x)`` array in HU (int16 when integral,
    else float32) and LPS geometry. Raises InputError with a one-line reason for anything unreadable.
    """
    path = Path(path)
    if not path.exists():
        parent_hint = "" if path.parent.exists() else f" (its folder '{path.parent}' does not exist either)"
        raise InputError(f"Input '{path}' does not exist{parent_hint}; check the path.")
    if path.is_dir():
        return _read_dicom_folder(path, series)
    suffix = full_suffix(path)
    if path.stat().st_size == 0:
        raise InputError(f"Input '{path}' is an empty file (0 bytes); it was probably not copied completely.")
    if suffix in IMAGE_2D_SUFFIXES:
        raise InputError(f"'{path}' is 2D (a {suffix} picture); a 3D CT volume is needed ({_SUPPORTED_TEXT}).")
    if suffix in DICOM_FILE_SUFFIXES:
        uid = _dicom_series_of_file(path)
        return _read_dicom_folder(path.parent, series if series is not None else uid)
    if suffix in NIFTI_SUFFIXES:
        return _read_nifti(path)
    if suffix in ITK_SUFFIXES:
        return _read_itk_file(path)
    raise InputError(f"Unknown file type '{suffix or path.name}' for '{path}'; give {_SUPPORTED_TEXT}.")


def _describe_mismatch(label: CTVolume, reference: CTVolume, tolerance: float,
                       compare_shape: bool = True) -> List[str]:
    problems = []
    lx = tuple(reversed(label.shape_zyx))
    rx = tuple(reversed(reference.shape_zyx))
    if compare_shape and lx != rx:
        problems.append(f"size (x, y, z) {lx} vs the reference's {rx} voxels")
    lg, rg = label.geometry, reference.geometry
    d_spacing = np.abs(np.subtract(lg.spacing, rg.spacing)).max()
    if d_spacing > tolerance:
        problems.append(f"spacing (x, y, z) {_fmt(lg.spacing)} mm vs the reference's {_fmt(rg.spacing)} mm")
    d_origin = float(np.abs(np.subtract(lg.origin, rg.origin)).max())
    if d_origin > tolerance:
        problems.append(f"origin (LPS) {_fmt(lg.origin)} vs the reference's {_fmt(rg.origin)} (off by up to "
                        f"{d_origin:.4g} mm)")
    d_dir = float(np.abs(np.subtract(lg.direction, rg.direction)).max())
    if d_dir > tolerance:
        problems.append(f"direction {_fmt(lg.direction)} vs the reference's {_fmt(rg.direction)} (cosines differ "
                        f"by up to {d_dir:.3g})")
    return problems


def _fmt(values: Iterable[float]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def _match_reference(label: CTVolume, reference: CTVolume, tolerance: float) -> CTVolume:
    """Return ``label`` on the reference's grid; same grid in another axis order is reoriented."""
    problems = _describe_mismatch(label, reference, tolerance)
    if not problems:
        return label
    from .orientation import plan_reorientation

    lab_reo = plan_reorientation(label.geometry, label.shape_zyx)
    ref_reo = plan_reorientation(reference.geometry, reference.shape_zyx)
    lab_canon = CTVolume(array=lab_reo.to_canonical(label.array), geometry=lab_reo.canonical_geometry,
                         source=label.source)
    ref_canon = CTVolume(array=np.zeros((1, 1, 1), np.uint8), geometry=ref_reo.canonical_geometry,
                         source=reference.source)
    if tuple(lab_canon.shape_zyx) == tuple(ref_reo.canonical_shape) and \
            not _describe_mismatch(lab_canon, ref_canon, tolerance, compare_shape=False):
        arr = ref_reo.from_canonical(lab_canon.array)
        out = CTVolume(array=arr, geometry=reference.geometry, source=label.source, meta=dict(label.meta))
        out.meta.setdefault("warnings", []).append("label map stored in another axis order; reoriented to the CT")
        return out
    raise LabelError(f"Label map '{label.source}' does not match its reference '{reference.source}': "
                     + "; ".join(problems) + ". Use the label map made for this image (same grid), or resample it "
                     "onto the reference grid first.")


def check_label_values(array: np.ndarray, source: str = "label map",
                       allowed_values: Sequence[int] = LABEL_VALUES) -> np.ndarray:
    """Return ``array`` as uint8 after checking it holds only integers in ``allowed_values``. Any shape.

    Raises LabelError naming the offending values (at most 10) and the allowed set.
    """
    allowed = sorted(int(v) for v in allowed_values)
    if allowed and (allowed[0] < 0 or allowed[-1] > 255):
        raise ValueError("allowed label values must lie in 0..255 (uint8)")
    allowed_txt = ", ".join(str(v) for v in allowed)
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.all():
            raise LabelError(f"Label map '{source}' contains NaN/Inf values; it must hold the integers {allowed_txt}.")
        frac = array != np.rint(array)
        if frac.any():
            examples = ", ".join(f"{v:g}" for v in np.unique(array[frac])[:5])
            raise LabelError(f"Label map '{source}' has non-integer values ({examples}); it must hold the integers "
                             f"{allowed_txt}. Is this a probability map or a CT instead of a label map?")
    outside = ~np.isin(array, allowed)  # bool mask; avoids sorting the whole volume
    bad = np.unique(array[outside]).tolist() if outside.any() else []
    if bad:
        shown = ", ".join(f"{int(v)}" for v in bad[:10]) + (" ..." if len(bad) > 10 else "")
        raise LabelError(f"Label map '{source}' has values {shown} outside the allowed {allowed_txt} "
                         f"(0 background, 1 liver, 2 tumor); remap them first.")
    return array.astype(np.uint8, copy=False)


def read_label_map(path: PathLike, reference: Optional[CTVolume] = None,
                   allowed_values: Sequence[int] = LABEL_VALUES,
                   tolerance: float = GEOMETRY_TOLERANCE, series: Optional[str] = None) -> CTVolume:
    """Read a label map as a uint8 ``(z, y, x)`` :class:`CTVolume`.

    Values must be integers in ``allowed_values`` (default 0 background, 1 liver, 2 tumor), else
    LabelError naming the bad values. With ``reference`` (the CT), the size and geometry must match
    within ``tolerance`` (mm for spacing/origin, cosine units for direction); a label map holding the
    same grid in another axis order (e.g. LPS vs RAS) is reoriented onto the reference's layout; any other
    difference raises LabelError saying what differs and by how much.
    """
    volume = read_volume(path, series=series)
    volume.array = check_label_values(volume.array, volume.source, allowed_values)
    if reference is not None:
        volume = _match_reference(volume, reference, tolerance)
    return volume


# ----------------------------------------------------------------------------------------------- write
def _check_write_suffix(path: Path) -> str:
    suffix = full_suffix(path)
    if suffix == ".seg.nrrd":
        raise InputError(f"'{path}': .seg.nrrd is a Slicer segmentation file; write a plain label map as .nrrd, "
                         f".nii.gz or .mha (the Slicer module saves .seg.nrrd itself).")
    if suffix not in WRITE_SUFFIXES:
        raise InputError(f"Cannot write '{path}': unknown output type '{suffix or path.name}'; use one of "
                         f"{', '.join(WRITE_SUFFIXES)}.")
    return suffix


def _write_nifti(tmp: Path, array_zyx: np.ndarray, geometry: ImageGeometry) -> None:
    import nibabel as nib

    affine = geometry.ijk_to_ras()
    image = nib.Nifti1Image(array_zyx.T, affine)  # (z, y, x) C-order -> (x, y, z) F-order view, no copy
    image.set_data_dtype(array_zyx.dtype)
    image.set_sform(affine, code=1)  # scanner anatomical
    image.set_qform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    nib.save(image, str(tmp))


def _write_itk(tmp: Path, array_zyx: np.ndarray, geometry: ImageGeometry) -> None:
    sitk = _sitk()
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_zyx))
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    sitk.WriteImage(image, str(tmp), True)


def _write_array(path: PathLike, array_zyx: np.ndarray, geometry: ImageGeometry, overwrite: bool) -> Path:
    path = Path(path)
    suffix = _check_write_suffix(path)
    if array_zyx.ndim != 3:
        raise ValueError(f"expected a 3D (z, y, x) array, got shape {array_zyx.shape}")
    with atomic_output(path, overwrite) as tmp:
        try:
            if suffix in NIFTI_SUFFIXES:
                _write_nifti(tmp, array_zyx, geometry)
            else:
                _write_itk(tmp, array_zyx, geometry)
        except (RuntimeError, OSError) as exc:
            raise InputError(f"Cannot write '{path}': {_itk_reason(exc)} (is the disk full or read-only?).") from None
    return path


def write_label_map(path: PathLike, labels_zyx: np.ndarray, geometry: ImageGeometry,
                    overwrite: bool = False) -> Path:
    """Write a ``(z, y, x)`` label map (integers 0..255) as uint8 to .nii/.nii.gz/.nrrd/.mha; returns the path.

    The file's geometry equals ``geometry`` exactly (NIfTI: sform = qform = ``geometry.ijk_to_ras()``,
    codes 1). Written atomically; an existing file is kept unless ``overwrite``.
    """
    labels_zyx = np.asarray(labels_zyx)
    if labels_zyx.dtype != np.uint8:
        if labels_zyx.size and (np.issubdtype(labels_zyx.dtype, np.floating)
                                and not np.array_equal(labels_zyx, np.rint(labels_zyx))):
            raise ValueError("label map has non-integer values")
        if labels_zyx.size and (labels_zyx.min() < 0 or labels_zyx.max() > 255):
            raise ValueError(f"label values {labels_zyx.min()}..{labels_zyx.max()} do not fit uint8 (0..255)")
        labels_zyx = labels_zyx.astype(np.uint8)
    return _write_array(path, labels_zyx, geometry, overwrite)


def write_volume(path: PathLike, volume: CTVolume, overwrite: bool = False) -> Path:
    """Write ``volume`` (its dtype kept, ``(z, y, x)``) to .nii/.nii.gz/.nrrd/.mha with exact geometry."""
    array = volume.array
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    return _write_array(path, array, volume.geometry, overwrite)
