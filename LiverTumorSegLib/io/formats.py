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
PROBABILITY_255_SLOPE = 1.0 / 255.0
"""NIfTI ``scl_slope`` of a ``segment --probabilities`` map (``scl_inter`` 0): nibabel's ``get_fdata``, ITK,
3D Slicer, MONAI and nnU-Net's readers then read its stored uint8 ``255 x p`` as the probability ``p``."""
_FILE_FORMATS_TEXT = "NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr) or MetaImage (.mha, .mhd)"
_SUPPORTED_TEXT = "NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) or a DICOM series folder"
_LABEL_MAP_FORMATS_TEXT = "NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) or a Slicer .seg.nrrd"
"""The label map files every command reads (evaluate and train read no DICOM series folder as a label map)."""


def may_be_dicom_file(path: "Union[str, os.PathLike]") -> bool:
    """Whether the file ``path`` may be DICOM: a name of a NIfTI, NRRD or MetaImage format is read as that format,
    never sniffed (pydicom's forced read walks a whole uncompressed NIfTI: seconds, 7.7 s for a 52 MB one); any
    other name is asked of :func:`~LiverTumorSegLib.fileutil.is_dicom_file` (IM000016 on a DICOMDIR medium)."""
    from .. import fileutil

    return fileutil.full_suffix(path) not in READ_SUFFIXES and fileutil.is_dicom_file(path)


def content_format(path: PathLike) -> "Union[tuple, None]":
    """What the first bytes of the file ``path`` say it holds, whatever its name: ``(description, suffix)``, e.g.
    ``("a gzip-compressed NIfTI image", ".nii.gz")``, ``("an NRRD image", ".nrrd")``, ``("a PNG picture",
    ".png")``; None when they match none of the formats known here. For messages about a file whose name says
    another format (an NRRD saved as .nii.gz was 'not complete'; a NIfTI renamed .png was '2D')."""
    import gzip
    import struct

    try:
        with open(path, "rb") as handle:
            head = handle.read(544)
        compressed = head[:2] == b"\x1f\x8b"
        if compressed:
            with gzip.open(path, "rb") as handle:
                head = handle.read(544)
    except Exception:  # noqa: BLE001 - a damaged gzip stream (zlib.error, EOFError, BadGzipFile): nothing to say
        return None
    packed = "gzip-compressed " if compressed else ""
    nifti_suffix = ".nii.gz" if compressed else ".nii"
    for order in "<>":
        if len(head) >= 348 and struct.unpack(order + "i", head[:4])[0] == 348 and head[344:347] in (b"n+1", b"ni1"):
            return f"a {packed}NIfTI image", nifti_suffix
        if len(head) >= 12 and struct.unpack(order + "i", head[:4])[0] == 540 and head[4:7] in (b"n+2", b"ni2"):
            return f"a {packed}NIfTI image", nifti_suffix
    if head.startswith(b"NRRD000"):
        return f"{'a ' + packed if packed else 'an '}NRRD image", ".nrrd"
    if head.lstrip().startswith((b"ObjectType", b"NDims")):
        return f"a {packed}MetaImage", ".mha"
    if head[128:132] == b"DICM":
        return "a DICOM file", ".dcm"
    if head.startswith(b"\x89PNG"):
        return "a PNG picture", ".png"
    if head.startswith(b"\xff\xd8\xff"):
        return "a JPEG picture", ".jpg"
    return None


ARCHIVE_NAME_ENDINGS = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".7z", ".rar")
"""Names of archives (a PACS or web export of a study, a data set's download), which no reader opens."""


def is_archive_name(path: PathLike) -> bool:
    """Whether ``path``'s name ends like an archive's (:data:`ARCHIVE_NAME_ENDINGS`, any letter case)."""
    return os.path.basename(str(path)).lower().endswith(ARCHIVE_NAME_ENDINGS)


def archive_text(path: PathLike) -> str:
    """The sentence for an archive given where an image belongs: what to do instead (the DICOM audit: 'study.zip' was
    an 'Unknown file type' to give NIfTI, NRRD, MetaImage or a DICOM folder, without a word about extracting it)."""
    return (f"'{path}' is an archive; this tool reads no archives: extract it (e.g. unzip, tar -xf, 7-Zip) and give "
            f"the extracted CT file or DICOM series folder.")


APPLE_DOUBLE_MAGIC = b"\x00\x05\x16\x07"
"""The first bytes of a macOS AppleDouble file: the ``._NAME`` that macOS writes beside ``NAME`` on a non-Mac disk
or in a zip or tar (MSD's Task03_Liver.tar holds ``._liver_N.nii.gz`` beside every ``liver_N.nii.gz``)."""


def renamed_hint(path: PathLike, suffix: str) -> str:
    """``" (its content is an NRRD image: rename it to .nrrd)"`` when the file's first bytes say a format other than
    its name's ``suffix`` (:func:`content_format`); a note naming the image beside it for a macOS AppleDouble
    ``._NAME`` file (a CSV of a folder's ``*.nii.gz``, as pathlib's glob lists them, holds them, and they were
    'not a gzip file ... Check that the file is complete'); else ''."""
    name = os.path.basename(str(path))
    try:
        with open(path, "rb") as handle:
            apple_double = handle.read(4) == APPLE_DOUBLE_MAGIC
    except OSError:
        apple_double = False
    image = name[2:] if name.startswith("._") else name
    if apple_double or (image != name and os.path.isfile(os.path.join(os.path.dirname(str(path)), image))):
        return (f": it is a macOS resource file (AppleDouble), not an image; macOS writes such '._NAME' files beside "
                f"'NAME' when copying to other disks or into archives. Use '{image}' and leave the '._' files out "
                f"(e.g. of a case list made with a file search)")
    if name.lower().endswith(".seg.nrrd"):  # renamed to .nrrd, it was refused next as a label map: a dead end
        return (": it is a Slicer segmentation (a label map), not an image volume such as a CT (measure, evaluate "
                "and followup read it where labels are asked for)")
    found = content_format(path)
    if found is None or found[1] == suffix or (found[1] == ".mha" and suffix == ".mhd"):
        return ""
    description, right = found
    return f" (its content is {description}: rename it to {right})"
