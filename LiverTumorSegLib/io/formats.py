"""File types the readers and writers accept, and the texts that name them in error messages."""
import os
from typing import Union


PathLike = Union[str, "os.PathLike[str]"]
NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
READ_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES
WRITE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha")
IMAGE_2D_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
DICOM_FILE_SUFFIXES = (".dcm", ".dicom", ".ima")
CONTENT_KEY = "LiverTumorSeg_content"
"""Header field (NRRD/MetaImage key; NIfTI: ``descrip``) in which a file written by this library says what its
voxels hold, when that cannot be told from the values (:data:`PROBABILITY_255_CONTENT`). Readers put it in
``CTVolume.meta["content"]``."""
PROBABILITY_255_CONTENT = "LiverTumorSeg tumor probability, uint8, 255 = 1.0"
"""The content tag of ``segment --probabilities`` maps: a map whose largest value is 1 is 1/255, not 1.0."""
_FILE_FORMATS_TEXT = "NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr) or MetaImage (.mha, .mhd)"
_SUPPORTED_TEXT = "NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) or a DICOM series folder"


def may_be_dicom_file(path: "Union[str, os.PathLike]") -> bool:
    """Whether the file ``path`` may be DICOM: a name of a NIfTI, NRRD or MetaImage format is read as that format,
    never sniffed (pydicom's forced read walks a whole uncompressed NIfTI: seconds, 7.7 s for a 52 MB one); any
    other name is asked of :func:`~LiverTumorSegLib.fileutil.is_dicom_file` (IM000016 on a DICOMDIR medium)."""
    from .. import fileutil

    return fileutil.full_suffix(path) not in READ_SUFFIXES and fileutil.is_dicom_file(path)
