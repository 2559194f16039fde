"""Reading and writing CT volumes and label maps with exact geometry.

Formats: NIfTI (``.nii``, ``.nii.gz``; read and written with nibabel so the affine round-trips
bit-exactly, also for oblique directions), NRRD (``.nrrd``, ``.nhdr``), MetaImage (``.mha``, ``.mhd``)
and DICOM series folders (SimpleITK/GDCM; rescale slope/intercept applied, values are HU).

Every returned :class:`~LiverTumorSegLib.volume.CTVolume` holds a ``(z, y, x)`` array and an
:class:`~LiverTumorSegLib.volume.ImageGeometry` in ``(x, y, z)`` order, LPS, mm. CT values are int16
when they are integers that fit, else float32. Problems the user can fix raise
:class:`~LiverTumorSegLib.errors.InputError` (or :class:`~LiverTumorSegLib.errors.LabelError`) with a
one-line message; SimpleITK/nibabel tracebacks never reach the user.

One idea per module: :mod:`.formats` (accepted file types), :mod:`.conversions` (HU dtype, header and memory
checks), :mod:`.itk` (SimpleITK helpers, NRRD/MetaImage reading), :mod:`.dicom` (series discovery, selection,
reading), :mod:`.nifti` (NIfTI reading), :mod:`.reading` (:func:`read_volume`), :mod:`.labels` (label maps:
reading, value and grid checks), :mod:`.writers`. This package re-exports the public names; private helpers
(``_name``) live in, and are imported and patched from, the submodule that holds them.
"""
from .conversions import check_geometry_values, check_memory_for_read, to_hu_dtype
from .dicom import SERIES_CHOICES_TEXT, DicomSeriesInfo, list_dicom_series, select_dicom_series
from .formats import (DICOM_FILE_SUFFIXES, IMAGE_2D_SUFFIXES, ITK_SUFFIXES, NIFTI_SUFFIXES, READ_SUFFIXES,
                      WRITE_SUFFIXES, PathLike)
from .labels import GEOMETRY_TOLERANCE, LABEL_VALUES, check_label_values, read_label_map
from .nifti import has_unknown_orientation, nifti_write_options
from .reading import read_header_geometry, read_volume
from .writers import write_label_map, write_probability_map, write_volume

__all__ = [
    "DICOM_FILE_SUFFIXES", "GEOMETRY_TOLERANCE", "IMAGE_2D_SUFFIXES", "ITK_SUFFIXES", "LABEL_VALUES",
    "NIFTI_SUFFIXES", "READ_SUFFIXES", "SERIES_CHOICES_TEXT", "WRITE_SUFFIXES", "DicomSeriesInfo", "PathLike",
    "check_geometry_values", "check_label_values", "check_memory_for_read", "list_dicom_series",
    "read_header_geometry", "read_label_map", "read_volume", "select_dicom_series", "to_hu_dtype",
    "write_label_map", "write_probability_map", "write_volume", "has_unknown_orientation", "nifti_write_options",
]
