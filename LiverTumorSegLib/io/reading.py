"""The public CT read: :func:`read_volume` picks the reader (DICOM folder or file, NIfTI, NRRD/MetaImage)."""
from typing import Optional

from ..errors import InputError
from ..fileutil import check_path_encoding, full_suffix
from ..volume import CTVolume
from .dicom import _dicom_series_of_file, _read_dicom_folder
from .formats import _SUPPORTED_TEXT, DICOM_FILE_SUFFIXES, IMAGE_2D_SUFFIXES, ITK_SUFFIXES, NIFTI_SUFFIXES, PathLike
from .itk import _read_itk_file
from .nifti import _read_nifti


def read_volume(path: PathLike, series: Optional[str] = None) -> CTVolume:
    """Read a CT volume: NIfTI, NRRD, MetaImage file, a DICOM series folder, or one file of a DICOM series.

    ``series`` picks one series in a DICOM folder holding several (UID, list number, unique UID prefix
    or description). Returns a :class:`CTVolume` with a ``(z, y, x)`` array in HU (int16 when integral,
    else float32) and LPS geometry. Raises InputError with a one-line reason for anything unreadable.
    """
    path = check_path_encoding(path, "Input")
    if not path.exists():
        parent_hint = "" if path.parent.exists() else f" (its folder '{path.parent}' does not exist either)"
        raise InputError(f"Input '{path}' does not exist{parent_hint}; check the path.")
    if path.is_dir():
        return _read_dicom_folder(path, series)
    if path.name.upper() == "DICOMDIR":  # a DICOM medium's index: its series lie in the folders beside it
        return _read_dicom_folder(path.parent, series)
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
