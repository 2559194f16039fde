"""DICOM Segmentation (SEG) objects: write a liver/tumor label map as a DICOM SEG that references its source CT
series, and read a DICOM SEG back into a label map (``(z, y, x)`` uint8, 0 background, 1 liver, 2 tumor).

Written SEGs (highdicom, BINARY segmentation, one frame per source slice for each segment, empty frames kept) have two
segments, coded in SNOMED CT as Slicer's terminology codes them:

1. "Liver": category SCT 123037004 Anatomical Structure, type SCT 10200004 Liver (label 1: the liver
   parenchyma without the tumors, as in the label map);
2. "Liver tumor": category SCT 49755003 Morphologically Altered Structure, type SCT 108369006 Neoplasm,
   anatomic region SCT 10200004 Liver (label 2).

Segment algorithm type AUTOMATIC, algorithm "LiverTumorSeg" with the model name. The SEG takes the patient,
study and frame of reference of the source series (new series and instance UIDs).

Reading accepts any SEG whose segments can be told apart by their codes: type Liver -> 1 (whatever its
label; SCT 10200004, its SNOMED-RT form T-62000 of older SEGs, or SCT Entire liver), type Neoplasm (SCT or SRT
Neoplasm, primary malignant or metastatic neoplasm; or, for a segment of neither type, a label naming a tumor by
the .seg.nrrd rule: "tumor", "lesion", "metastasis", ... not negated) -> 2 unless its anatomic region is another
organ (tumor wins where they overlap); a segment of neither type labelled "Liver" -> 1; other segments are
ignored with a warning in ``volume.meta["warnings"]``. A SEG read against a DICOM series must share its frame of reference;
with a ``reference`` CT the frames are placed on its grid when the SEG's grid is part of it (SEGs that omit
empty frames are filled with 0); a SEG on another grid is refused. BINARY, LABELMAP and FRACTIONAL (read at
0.5) SEGs are read.

Needs ``highdicom`` (and ``pydicom``), Python >= 3.10: ``pip install highdicom``.
"""
import logging
import re
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import InputError, LabelError, raise_if_out_of_memory
from .fileutil import atomic_output
# one rule of liver names and tumor words for .seg.nrrd and DICOM SEG
from .segnrrd import LIVER_NAMES, names_tumor, names_tumor_of_another_organ, names_whole_liver
from .metrics.recist import SEG_SLICE_THICKNESS_META
from .volume import CTVolume, ImageGeometry

log = logging.getLogger(__name__)

SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"
LABEL_MAP_SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.7"
"""Label Map Segmentation Storage (a LABELMAP SEG): read like a Segmentation."""
DICOM_SEG_SUFFIX = ".dcm"  # `segment ... -o result.dcm` writes a DICOM SEG
LIVER_CODE = ("SCT", "10200004", "Liver")
TUMOR_TYPE_CODE = ("SCT", "108369006", "Neoplasm")
ANATOMICAL_STRUCTURE = ("SCT", "123037004", "Anatomical Structure")
MORPHOLOGICALLY_ALTERED = ("SCT", "49755003", "Morphologically Altered Structure")
LIVER_TYPE_VALUES = ("10200004", "T-62000", "181268008")
"""Code values a SEG's liver segment (and a tumor's anatomic region) may carry: SCT Liver, the same concept in the
SNOMED-RT form SEGs used before 2019 (SRT T-62000: dcmqi, older Slicer, many TCIA collections), SCT Entire liver.
Only SCT 10200004 was read: a 'Liver' coded T-62000 was left out as 'neither liver nor tumor'."""
NEOPLASM_TYPE_VALUES = ("108369006", "M-80000", "86049000", "M-80003", "14799000", "M-80006")
"""Code values of a tumor segment: SCT Neoplasm, Malignant neoplasm (primary), Neoplasm (metastatic), each also in
its SNOMED-RT form (PS3.16's SRT-to-SCT mapping)."""
MASS_TYPE_VALUES = ("4147007", "M-03000", "52988006", "M-01000")
"""Code values of a segment that is a liver tumor unless its anatomic region names another organ, as a neoplasm
is: SCT Mass (the tumor type Slicer 5.6's default terminology offers, which has no Neoplasm) and SCT Lesion, each
also in its SNOMED-RT form. A reader's tumor exported from Slicer 5.6 as 'Mass' was read as neither liver nor
tumor and scored as background by evaluate without a word (the DICOM SEG audit)."""
TUMOR_TYPE_VALUES = NEOPLASM_TYPE_VALUES + MASS_TYPE_VALUES
"""Every code value read as a liver tumor (:data:`NEOPLASM_TYPE_VALUES`, :data:`MASS_TYPE_VALUES`)."""
# display colours (sRGB, stored as CIELab): Slicer's GenericAnatomyColors liver and tumor
SEGMENT_RGB = {1: (221, 130, 101), 2: (144, 238, 144)}


HIGHDICOM_MINIMUM = (0, 28)
"""The oldest highdicom our SEG code works with (pyproject's ``highdicom>=0.28``, which needs pydicom 3.0.1 and Python
>= 3.10): 0.28 brought ``highdicom.enum.SpecificCharacterSetValues`` (writing a SEG with 0.23-0.27 ended in 'internal
error: ImportError') and 0.24 ``Segmentation.get_volume`` (reading one with 0.23 was refused as 'not a regular 3D
volume'); both found by installing each release (the minimal-install audit, 1 Dec 2026). highdicom 0.22, the last for
pydicom 2 and Python 3.9, has no ``CIELabColor.from_rgb`` and no label-map SEGs."""


def _highdicom():
    try:
        import highdicom  # noqa: F401
        import pydicom  # noqa: F401
    except ImportError:
        raise InputError("DICOM SEG needs the highdicom package (Python >= 3.10): pip install highdicom") from None
    import highdicom

    found = str(getattr(highdicom, "__version__", "") or "")
    numbers = tuple(int(part) for part in re.findall(r"\d+", found)[:2])
    if numbers and numbers < HIGHDICOM_MINIMUM:
        raise InputError(f"DICOM SEG needs highdicom {'.'.join(map(str, HIGHDICOM_MINIMUM))} or newer (with pydicom "
                         f"3, Python >= 3.10); this Python has highdicom {found}. Upgrade it (pip install -U "
                         f"highdicom) where the Python allows, or write the result as .seg.nrrd or NIfTI instead "
                         f"(e.g. -o result.seg.nrrd).")

    quiet = logging.getLogger("highdicom")
    if quiet.level == logging.NOTSET:  # its INFO lines ("copy attributes of module ...") are not for our users
        quiet.setLevel(logging.WARNING)
    return highdicom


PATIENT_STUDY_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                       "StudyDate", "StudyTime", "ReferringPhysicianName", "SliceThickness")
"""Patient, study and image-plane attributes a SEG copies from its source (DICOM Type 2: present, possibly empty).
De-identified series often drop them, and series written by SimpleITK have no SliceThickness; highdicom then fails
with an AttributeError after the whole run, so missing ones are added empty."""

REQUIRED_SOURCE_ATTRIBUTES = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID",
                              "FrameOfReferenceUID", "ImagePositionPatient", "ImageOrientationPatient",
                              "PixelSpacing", "Rows", "Columns")
"""What a SEG must reference or copy from every source image (DICOM Type 1); no empty stand-in is valid."""


SEG_DATE_TIME_ATTRIBUTES = (("PatientBirthDate", "DA"), ("StudyDate", "DA"), ("StudyTime", "TM"))
"""Dates and times a SEG copies from its source, which highdicom parses (and refuses when they do not parse)."""


def _seg_ready_header(ds: Any) -> List[str]:
    """Make the patient and study values a SEG copies from source dataset ``ds`` ones highdicom takes, in memory
    (the source files are not changed); returns a note per value left out. highdicom refused, after the whole run,
    Japanese and Korean series (Specific Character Set ``\\ISO 2022 IR 87``: an empty first value, the default
    repertoire), an empty one, PatientSex 'U' and dates such as '19700101000000' (the DICOM audit).

    * A character set highdicom does not list: the text values are decoded with the series' own one and the SEG
      gets them in UTF-8 (``ISO_IR 192``), or, where the set named only the default repertoire, none: no text
      changes.
    * PatientSex: lower case is raised (m -> M); a value other than M, F, O is left empty (Type 2: unknown).
    * A date or time that does not parse is left empty."""
    from highdicom.enum import SpecificCharacterSetValues
    from pydicom.valuerep import DA, TM

    notes = []
    charset = ds.get("SpecificCharacterSet")
    if charset is not None:
        values = [charset] if isinstance(charset, str) else [str(v) for v in charset]
        try:
            for value in values:
                SpecificCharacterSetValues(value)
        except ValueError:
            ds.decode()  # every text value to str with the series' own character set
            if all(value.strip() in ("", "ISO_IR 6") for value in values):
                del ds.SpecificCharacterSet
            else:
                ds.SpecificCharacterSet = "ISO_IR 192"
    sex = str(ds.get("PatientSex", "") or "").strip()
    if sex.upper() in ("M", "F", "O"):
        ds.PatientSex = sex.upper()
    elif sex:
        ds.PatientSex = ""
        notes.append(f"PatientSex {sex!r} (not M, F or O)")
    for attribute, vr in SEG_DATE_TIME_ATTRIBUTES:
        text = str(ds.get(attribute, "") or "").strip()
        if not text:
            continue
        try:
            (DA if vr == "DA" else TM)(text)
        except ValueError:
            setattr(ds, attribute, "")
            notes.append(f"{attribute} {text!r} (not a DICOM {'date' if vr == 'DA' else 'time'})")
    return notes


def _prepare_source_datasets(datasets: Sequence[Any], files: Sequence[Any]) -> List[str]:
    """Check that every source dataset has :data:`REQUIRED_SOURCE_ATTRIBUTES` (else InputError naming the first
    file and attribute), add any missing :data:`PATIENT_STUDY_TYPE2` attribute as empty and make the values a SEG
    copies ones highdicom takes (:func:`_seg_ready_header`), in memory only (the source files are not changed).
    Returns one warning naming the values left out of the SEG, or none."""
    left_out = []  # type: List[str]
    for ds, name in zip(datasets, files):
        if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
            raise InputError(f"{name} is a multi-frame (enhanced) image; DICOM SEG output is written for series of "
                             f"single-frame slices only. Write the result as NIfTI, NRRD or .seg.nrrd instead (e.g. "
                             f"-o result.seg.nrrd).")
        missing = [a for a in REQUIRED_SOURCE_ATTRIBUTES if not str(getattr(ds, a, "") or "").strip()]
        if missing:
            raise InputError(f"{name} lacks {', '.join(missing)}, which a DICOM SEG must reference; write the "
                             f"result as NIfTI, NRRD or .seg.nrrd instead (e.g. -o result.seg.nrrd).")
        for attribute in PATIENT_STUDY_TYPE2:
            if attribute not in ds:
                setattr(ds, attribute, "")
        left_out += [note for note in _seg_ready_header(ds) if note not in left_out]
    _share_orientation(datasets, files)
    for attribute in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        # one SEG references one series in one frame of reference (highdicom refuses otherwise, after the network)
        first = str(getattr(datasets[0], attribute, ""))
        odd = next((name for ds, name in zip(datasets, files) if str(getattr(ds, attribute, "")) != first), None)
        if odd is not None:
            raise InputError(f"The DICOM series' files differ in {attribute} ({files[0]} and {odd}); a DICOM SEG "
                             f"references one series of one frame of reference. Write the result as NIfTI, NRRD or "
                             f".seg.nrrd instead (e.g. -o result.seg.nrrd), or fix the series.")
    if not left_out:
        return []
    return [f"The DICOM SEG leaves out (empty) what the source series holds as {', '.join(left_out)}: values a "
            f"DICOM SEG may not hold. The source series is not changed."]


def _share_orientation(datasets: Sequence[Any], files: Sequence[Any]) -> None:
    """Give every source dataset the first file's ImageOrientationPatient when all agree within
    the CT reader's ``io.dicom.SERIES_HEADER_TOLERANCE`` (in memory only; highdicom requires them equal, and refused a series the
    CT reader reads after the whole network run); InputError naming the file when one differs more."""
    from .io.dicom import SERIES_HEADER_TOLERANCE

    def cosines(ds: Any, name: Any) -> np.ndarray:
        try:
            values = np.asarray([float(v) for v in ds.ImageOrientationPatient], dtype=float)
        except (TypeError, ValueError):
            values = np.zeros(0)
        if values.shape != (6,) or not np.isfinite(values).all():
            raise InputError(f"{name} has an unreadable ImageOrientationPatient; write the result as NIfTI, NRRD or "
                             f".seg.nrrd instead (e.g. -o result.seg.nrrd).")
        return values

    first = cosines(datasets[0], files[0])
    for ds, name in zip(datasets[1:], files[1:]):
        if np.abs(cosines(ds, name) - first).max() > SERIES_HEADER_TOLERANCE:
            raise InputError(f"The DICOM series' files differ in ImageOrientationPatient ({files[0]} and {name}); a "
                             f"DICOM SEG references slices of one orientation. Write the result as NIfTI, NRRD or "
                             f".seg.nrrd instead (e.g. -o result.seg.nrrd).")
        ds.ImageOrientationPatient = datasets[0].ImageOrientationPatient


def is_dicom_seg(path: Any) -> bool:
    """True when ``path`` is a file holding a DICOM Segmentation (SOP Class 1.2.840.10008.5.1.4.1.1.66.4, or
    66.7, a label map segmentation), told by the MediaStorageSOPClassUID of its file meta header, or where that is
    missing by pydicom's read of its SOPClassUID. Without pydicom (an environment without it; the package installed
    none on Python 3.9 before) the meta header is all: every '.dcm' file used to count as a SEG there, so a folder
    of CT slices named '*.dcm' held "no DICOM images" (the held-out script did not name such a folder among the
    CTs)."""
    from .fileutil import has_dicom_preamble, media_storage_sop_class
    path = Path(path)
    if not path.is_file() or not has_dicom_preamble(path):
        return False
    sop_class = media_storage_sop_class(path)
    if sop_class is not None:
        return sop_class in (SEG_SOP_CLASS_UID, LABEL_MAP_SEG_SOP_CLASS_UID)
    try:
        import pydicom
    except ImportError:  # a Part 10 file without (0002,0002): not known to be a SEG; the image reader judges it
        return False
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # noqa: BLE001 - unreadable: not a SEG we can use
        return False
    return str(getattr(ds, "SOPClassUID", "")) in (SEG_SOP_CLASS_UID, LABEL_MAP_SEG_SOP_CLASS_UID)


def dicom_series_files(folder: Any, series: Optional[str] = None) -> List[str]:
    """The files of the DICOM series in ``folder`` that :func:`io.read_volume` reads (same ``series`` rules)."""
    from .io import select_dicom_series
    from .io.dicom import find_dicom_series

    all_series = find_dicom_series(folder)
    if not all_series:
        raise InputError(f"Folder '{folder}' holds no DICOM series; a DICOM SEG needs the source DICOM series.")
    if series is not None:
        return list(select_dicom_series(all_series, series, folder).files)
    if len(all_series) > 1:
        raise InputError(f"Folder '{folder}' holds {len(all_series)} DICOM series; choose one with --series.")
    return list(all_series[0].files)


def check_dicom_seg_input(input_path: Any) -> None:
    """Before any work: a DICOM SEG output needs highdicom and a DICOM input (folder or file); else InputError."""
    _highdicom()
    path = Path(input_path)
    from .fileutil import has_dicom_preamble
    if path.is_dir() or has_dicom_preamble(path):
        return
    raise InputError(f"A DICOM SEG output (.dcm) references the source DICOM series, but the input '{path}' is "
                     f"not DICOM; segment the DICOM folder, or write .nii.gz / .nrrd / .seg.nrrd instead.")


def _code(hd, triple: Tuple[str, str, str]):
    scheme, value, meaning = triple
    return hd.sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


DICOM_LO_CHARS = 64
"""Long String (LO) values, PS3.5 Table 6.2-1: at most 64 characters, no backslash (the value separator)."""


def long_string(text: str, limit: int = DICOM_LO_CHARS) -> str:
    """``text`` as a DICOM LO value of the default character set: ASCII (accents dropped: 'für' -> 'fur'), no
    backslash or control character, at most ``limit`` characters ('...' marks a cut). A model's name goes into
    such fields: a 67-character name failed after the network, 'für' was written as a Latin-1 byte the SEG's
    character set does not hold."""
    import unicodedata

    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    clean = "".join(c for c in ascii_text if c.isprintable() and c != "\\").strip()
    return clean if len(clean) <= limit else clean[:limit - 3].rstrip() + "..."


def algorithm_name(model_name: str = "") -> str:
    """The SEG's AlgorithmName: ``LiverTumorSeg (MODEL)``, fitted into one LO value."""
    prefix, model = "LiverTumorSeg", long_string(model_name, DICOM_LO_CHARS - len("LiverTumorSeg ()"))
    return f"{prefix} ({model})" if model else prefix


def segment_descriptions(model_name: str = "", version: str = "") -> List[Any]:
    """highdicom SegmentDescriptions of segment 1 "Liver" and 2 "Liver tumor" (see module doc)."""
    hd = _highdicom()
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name=algorithm_name(model_name), version=long_string(version) or "0",
        family=codes.cid7162.ArtificialIntelligence)
    liver = hd.seg.SegmentDescription(
        segment_number=1, segment_label="Liver", segmented_property_category=_code(hd, ANATOMICAL_STRUCTURE),
        segmented_property_type=_code(hd, LIVER_CODE), algorithm_type="AUTOMATIC",
        algorithm_identification=algorithm,
        display_color=hd.color.CIELabColor.from_rgb(*SEGMENT_RGB[1]))
    tumor = hd.seg.SegmentDescription(
        segment_number=2, segment_label="Liver tumor", segmented_property_category=_code(hd, MORPHOLOGICALLY_ALTERED),
        segmented_property_type=_code(hd, TUMOR_TYPE_CODE), algorithm_type="AUTOMATIC",
        algorithm_identification=algorithm, anatomic_regions=[_code(hd, LIVER_CODE)],
        display_color=hd.color.CIELabColor.from_rgb(*SEGMENT_RGB[2]))
    return [liver, tumor]


def _slice_index_of(dataset: Any, geometry: ImageGeometry, shape_zyx: Sequence[int], source: str) -> int:
    """Array slice index ``k`` of a source image from its ImagePositionPatient (must be voxel (0, 0, k))."""
    rows, cols = int(dataset.Rows), int(dataset.Columns)
    if (rows, cols) != (int(shape_zyx[1]), int(shape_zyx[2])):
        raise InputError(f"DICOM file '{source}' has {rows} x {cols} pixels but the label map's slices are "
                         f"{shape_zyx[1]} x {shape_zyx[2]}; give the series the label map was made from.")
    _check_plane_matches(dataset, geometry, source)
    position = np.asarray([float(v) for v in dataset.ImagePositionPatient])
    ijk = np.linalg.solve(geometry.ijk_to_lps()[:3, :3], position - np.asarray(geometry.origin))
    k = int(round(ijk[2]))
    # in-plane within the reader's tolerance (header rounding of an oblique series: up to half the smaller pixel,
    # io.dicom._check_no_gantry_tilt); along z the nearest slice: the reader puts a series with slightly uneven
    # gaps (<= 20 %) on its mean spacing, slice k holding file k's pixels, and the SEG frame keeps that file's own
    # position
    in_plane_mm = np.abs(ijk[:2] * np.asarray(geometry.spacing[:2], dtype=float)).max()
    if in_plane_mm > 0.5 * min(geometry.spacing[:2]) or abs(ijk[2] - k) >= 0.5 or not 0 <= k < int(shape_zyx[0]):
        raise InputError(f"DICOM file '{source}' lies outside the label map's grid (index {np.round(ijk, 2)}); give "
                         f"the series the label map was made from.")
    return k


SEG_ORIENTATION_TOLERANCE = 2e-3
"""How far (each direction cosine) a source image's ImageOrientationPatient may be from the label map's row and
column directions: header rounding, not a grid of other axes."""


def _check_plane_matches(dataset: Any, geometry: ImageGeometry, source: str) -> None:
    """InputError where a source image's rows and columns do not run along the label map's i and j axes
    (ImageOrientationPatient) or its pixels are of another size (PixelSpacing): a square label map stored with i and
    j swapped, or one of 0.8 mm pixels on a series of 0.977 mm, passed the size and first-pixel checks and its frames
    were written transposed or misplaced (the DICOM SEG audit). Attributes a file lacks are not judged here."""
    direction = geometry.direction_matrix
    orientation = getattr(dataset, "ImageOrientationPatient", None)
    if orientation is not None and len(orientation) == 6:
        cosines = np.asarray([float(v) for v in orientation])
        # as the reader takes them (unit vectors; ITK then makes them orthogonal): header rounding within the
        # reader's tolerance put a series' own grid 1.05e-3 off and refused it (the review)
        row, column = (vector / max(float(np.linalg.norm(vector)), 1e-12) for vector in (cosines[:3], cosines[3:]))
        off = max(float(np.abs(row - direction[:, 0]).max()), float(np.abs(column - direction[:, 1]).max()))
        if off > SEG_ORIENTATION_TOLERANCE:
            raise InputError(f"DICOM file '{source}' has rows and columns along {_format_cosines(cosines)} "
                             f"(ImageOrientationPatient), but the label map's i and j axes run along "
                             f"{_format_cosines(np.concatenate([direction[:, 0], direction[:, 1]]))}: it is not on the "
                             f"series' grid (another axis order or orientation). Give the label map on the series' own "
                             f"grid, as segment writes it for that series.")
    spacing = getattr(dataset, "PixelSpacing", None)
    if spacing is not None and len(spacing) == 2:
        row_mm, column_mm = (float(v) for v in spacing)  # between rows (along j), between columns (along i)
        if abs(column_mm - float(geometry.spacing[0])) > SEG_GRID_TOLERANCE or \
                abs(row_mm - float(geometry.spacing[1])) > SEG_GRID_TOLERANCE:
            raise InputError(f"DICOM file '{source}' has pixels of {column_mm:g} x {row_mm:g} mm (PixelSpacing), but "
                             f"the label map's are {geometry.spacing[0]:g} x {geometry.spacing[1]:g} mm: it is not on "
                             f"the series' grid. Give the label map on the series' own grid, as segment writes it.")


def _format_cosines(values: Sequence[float]) -> str:
    return "\\".join(f"{float(v):.4g}" for v in values)


PERSON_NAME_WARNING = r"The string .* is unlikely to represent the intended person name"
"""The start of highdicom's UserWarning on a source PatientName of one component (de-identified series: "ANONYMOUS",
a study ID), which the SEG copies unchanged: not for our users."""
MAX_IS_VALUE = 2 ** 31 - 1  # the largest Integer String (IS) value, PS3.5 Table 6.2-1


def prepare_seg_sources(source_files: Sequence[Any], geometry: ImageGeometry,
                        shape_zyx: Sequence[int], notes: Optional[List[str]] = None) -> Tuple[List[Any], List[int]]:
    """``(datasets, slice index of each)`` of the series a SEG of a ``shape_zyx`` label map on ``geometry`` will
    reference (headers only; missing Type 2 attributes filled, values the SEG may not hold left out:
    :func:`_seg_ready_header`, with a warning appended to ``notes`` when given). Raises InputError when the series
    cannot be referenced (no frame of reference, other pixel size, files off the grid): ``segment`` calls it right
    after reading, before the network, so such a series is refused at once instead of after the whole run."""
    import pydicom

    datasets = []
    for name in source_files:
        try:  # force: files without the Part 10 preamble ("DICM"), which the series reader accepts too
            datasets.append(pydicom.dcmread(str(name), stop_before_pixels=True, force=True))
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types for damaged files
            raise_if_out_of_memory(exc, str(name))
            raise InputError(f"Cannot read the DICOM header of '{name}' for the SEG's references "
                             f"({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}); write the "
                             f"result as NIfTI, NRRD or .seg.nrrd instead (e.g. -o result.seg.nrrd).") from None
    left_out = _prepare_source_datasets(datasets, source_files)
    if notes is not None:
        notes.extend(left_out)
    if len(datasets) != int(shape_zyx[0]):
        raise InputError(f"The DICOM series has {len(datasets)} files but the label map {shape_zyx[0]} slices; "
                         f"give the series the label map was made from.")
    slices = [_slice_index_of(ds, geometry, shape_zyx, str(f)) for ds, f in zip(datasets, source_files)]
    if sorted(slices) != list(range(int(shape_zyx[0]))):
        raise InputError("The DICOM series' slice positions do not match the label map's slices one to one.")
    return datasets, slices


def _check_seg_labels(labels_zyx: np.ndarray) -> None:
    """LabelError naming the first value that is not a label 0, 1 or 2: a float map of 0.5 / 1.7 was cast to
    uint8 and written as 0 / 1, -1 failed inside highdicom, NaN with "cannot convert float NaN to integer".
    Whole-number floats are taken, as :func:`~.io.write_label_map` takes them."""
    if labels_zyx.dtype.kind not in "biuf":
        raise LabelError(f"Label map must hold integers 0/1/2; got dtype {labels_zyx.dtype}.")
    if not labels_zyx.size:
        return
    if labels_zyx.dtype.kind == "f":
        fractional = labels_zyx != np.rint(labels_zyx)  # NaN too (NaN != NaN)
        if fractional.any():
            raise LabelError(f"Label map has non-integer value {float(labels_zyx[fractional].flat[0]):g}; a DICOM SEG "
                             f"is written from labels 0 (background), 1 (liver) and 2 (tumor).")
    low, high = labels_zyx.min(), labels_zyx.max()
    if low < 0 or high > 2:
        raise LabelError(f"Label map has value {int(low if low < 0 else high)}; a DICOM SEG is written from labels "
                         f"0 (background), 1 (liver) and 2 (tumor).")


def write_dicom_seg(path: Any, labels_zyx: np.ndarray, geometry: ImageGeometry, source_files: Sequence[Any],
                    overwrite: bool = False, model_name: str = "",
                    series_description: str = "LiverTumorSeg liver and tumor",
                    sources: Optional[Tuple[List[Any], List[int]]] = None) -> Path:
    """Write ``labels_zyx`` (0/1/2 on the grid of the source series, as :func:`io.read_volume` reads it) as a
    DICOM SEG referencing ``source_files`` (the series' files, any order). ``sources``: what
    :func:`prepare_seg_sources` returned for them, when already checked. Atomic; returns the path."""
    hd = _highdicom()
    labels_zyx = np.asarray(labels_zyx)
    if labels_zyx.ndim != 3:
        raise ValueError(f"expected a (z, y, x) label map, got shape {labels_zyx.shape}")
    _check_seg_labels(labels_zyx)
    if sources is None:
        sources = prepare_seg_sources(source_files, geometry, labels_zyx.shape)
    datasets, slices = sources
    pixel_array = np.ascontiguousarray(labels_zyx[slices].astype(np.uint8))
    first = datasets[0]
    with warnings.catch_warnings():
        # the SEG copies the source's PatientName as it is; highdicom's advice on a one-part name ("ANONYMOUS", an
        # ID) was printed to the user as a Python UserWarning about pydicom's API
        warnings.filterwarnings("ignore", message=PERSON_NAME_WARNING, category=UserWarning)
        try:
            seg = _segmentation(hd, datasets, pixel_array, model_name, series_description, first)
        except ValueError as exc:  # a source value highdicom refuses that _seg_ready_header does not know of
            raise InputError(f"The DICOM SEG cannot be written from this series' header: {_first_line(exc, 200)}. Write the "
                             f"result as NIfTI, NRRD or .seg.nrrd instead (e.g. -o result.seg.nrrd).") from None
    if "ContentCreatorName" not in seg:  # Type 2 in the Content Identification Macro; highdicom omits it unless given
        seg.ContentCreatorName = ""
    if len(datasets) == 1:  # highdicom writes 1.0 mm between the slices of one slice: measure then read a 4 mm
        _set_single_slice_spacing(seg, geometry)  # slice as 1 mm, a quarter of its volume
    else:
        _fill_missing_slice_thickness(seg, float(geometry.spacing[2]))
        _set_slice_spacing(seg, geometry)
    path = Path(path)
    with atomic_output(path, overwrite) as tmp:
        try:
            seg.save_as(str(tmp))
        except OSError as exc:  # pydicom: "With tag (7FE0,0010) got exception: [Errno 28] No space left ..."
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split("got exception: ")[-1]
            raise InputError(f"Cannot write '{path}': {reason} (is the disk full or read-only?); nothing was "
                             f"replaced.") from None
    return path


def _segmentation(hd: Any, datasets: Sequence[Any], pixel_array: np.ndarray, model_name: str,
                  series_description: str, first: Any) -> Any:
    """highdicom's BINARY Segmentation of ``pixel_array`` (frames, rows, columns) referencing ``datasets``."""
    from . import __version__

    return hd.seg.Segmentation(
        source_images=datasets, pixel_array=pixel_array, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(model_name, __version__), series_instance_uid=hd.UID(),
        series_number=min(int(getattr(first, "SeriesNumber", 0) or 0) + 1000, MAX_IS_VALUE),
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="LiverTumorSeg",
        manufacturer_model_name=long_string(model_name) or "LiverTumorSeg",
        software_versions=str(__version__), device_serial_number="none", omit_empty_frames=False,
        series_description=long_string(series_description), content_label="LIVERTUMORSEG",
        content_description="Liver and liver tumor; research use, not a medical device")


def _set_single_slice_spacing(seg: Any, geometry: ImageGeometry) -> None:
    """The SEG's SpacingBetweenSlices for a one-slice source: the grid's z spacing, which the CT reader took from the
    slice's own thickness (SliceThickness, else SpacingBetweenSlices)."""
    thickness = float(geometry.spacing[2])  # the reader took it from the slice (io.dicom._single_slice_thickness)
    for groups in (getattr(seg, "SharedFunctionalGroupsSequence", None) or []):
        for measures in (getattr(groups, "PixelMeasuresSequence", None) or []):
            measures.SpacingBetweenSlices = f"{thickness:.6g}"
            measures.SliceThickness = f"{thickness:.6g}"


def _set_slice_spacing(seg: Any, geometry: ImageGeometry) -> None:
    """The SEG's SpacingBetweenSlices: the grid's slice spacing, which the CT reader took from the slices' positions
    (its SliceThickness, the reconstruction's, is left as the source gave it). highdicom copied the source's own
    SpacingBetweenSlices, which a series may hold wrong (GDCM wrote 1 into slices 3 mm apart): the SEG was read back
    on that spacing, 88 slices of 1 mm, a third of the liver's volume (the invariance audit)."""
    spacing = f"{float(geometry.spacing[2]):.6g}"
    for groups in (getattr(seg, "SharedFunctionalGroupsSequence", None) or []):
        for measures in (getattr(groups, "PixelMeasuresSequence", None) or []):
            measures.SpacingBetweenSlices = spacing


def _fill_missing_slice_thickness(seg: Any, thickness_mm: Optional[float] = None) -> bool:
    """Give the SEG dataset ``seg`` a SliceThickness in its shared Pixel Measures where it has none or an empty one
    (in memory; True when one was given): ``thickness_mm``, else the item's own SpacingBetweenSlices. A source series
    without a SliceThickness value (de-identified, or written by SimpleITK) gave a SEG without one, which the
    Segmentation IOD requires: highdicom's reader, and so measure, evaluate and followup, refused that SEG ("Sequence
    does not have the required attributes for a Pixel Measures Sequence"). The slice spacing stands in for the
    unknown reconstruction thickness (contiguous slices), as the CT reader takes it; reading the SEG back, a
    thickness equal to the spacing is taken as that stand-in (:func:`_is_the_slice_spacing`)."""
    filled = False
    for groups in (getattr(seg, "SharedFunctionalGroupsSequence", None) or []):
        for measures in (getattr(groups, "PixelMeasuresSequence", None) or []):
            if str(getattr(measures, "SliceThickness", "") or "").strip():
                continue
            value = thickness_mm
            if value is None:
                try:
                    value = float(getattr(measures, "SpacingBetweenSlices", "") or "nan")
                except (TypeError, ValueError):
                    continue
            if np.isfinite(value) and value > 0:
                measures.SliceThickness = f"{value:.6g}"
                filled = True
    return filled


def _label_of_segment(description: Any) -> Optional[int]:
    """1 (liver), 2 (tumor) or None for a highdicom SegmentDescription (see module doc). The type code decides
    first (:data:`LIVER_TYPE_VALUES`, :data:`NEOPLASM_TYPE_VALUES`): Liver is liver whatever the label says ("Liver
    without tumor" was read as tumor); Neoplasm is liver tumor unless its anatomic region names another organ (a
    renal tumor was merged into the liver tumors). Label words (:func:`~.segnrrd.names_tumor`, negations
    included, as for .seg.nrrd names; then the liver names :data:`~.segnrrd.LIVER_NAMES`) decide only for
    segments of neither code, with the same region rule for tumors."""
    value = str(description.segmented_property_type.value)
    label = str(getattr(description, "SegmentLabel", ""))
    regions = [str(getattr(code, "value", "")) for code in (getattr(description, "anatomic_regions", None) or [])]
    elsewhere = bool(regions) and not set(LIVER_TYPE_VALUES) & set(regions)
    if value in LIVER_TYPE_VALUES:
        return 1
    if value in MASS_TYPE_VALUES and names_tumor_of_another_organ(label):
        return None  # a generic code labelled as another organ's ('Kidney mass', 'Lung nodule' lesion): the review
    if value in TUMOR_TYPE_VALUES or names_tumor(label):
        return None if elsewhere else 2
    if label.strip().lower() in LIVER_NAMES or names_whole_liver(label):  # a segment of another code labelled
        return 1  # 'Liver' (or 'Liver (corrected)'), as .seg.nrrd names read
    return None


def _geometry_from_hd_volume(volume: Any, frame_positions: Sequence[Sequence[float]] = ()
                             ) -> Tuple[np.ndarray, ImageGeometry]:
    """``(array (z, y, x), geometry)`` of a highdicom Volume (axes: slices, rows, columns; affine to LPS), with
    the slices ordered along row direction x column direction (right-handed, as ITK/SimpleITK read a series).
    ``frame_positions``: the SEG's frames' ImagePositionPatient (mm, LPS); where the slices are reversed, the new
    first slice's origin is the frame position at it (:func:`_recorded_position_near`), not one extrapolated over
    the whole stack along the slice normal that the rounded ImageOrientationPatient gives."""
    affine = np.asarray(volume.affine, dtype=float)  # maps (slice, row, column, 1) to LPS mm
    array = np.asarray(volume.array)
    columns = affine[:3, [2, 1, 0]]  # index axes (i = column, j = row, k = slice)
    origin = affine[:3, 3]
    if np.dot(np.cross(columns[:, 0], columns[:, 1]), columns[:, 2]) < 0:  # slices stacked against row x column:
        origin = origin + columns[:, 2] * (array.shape[0] - 1)             # reverse them, as ITK reads a series
        origin = _recorded_position_near(origin, frame_positions, 0.25 * float(np.linalg.norm(columns[:, 2])))
        columns = columns * [1.0, 1.0, -1.0]
        array = array[::-1]
    spacing = np.linalg.norm(columns, axis=0)
    direction = columns / spacing
    return np.ascontiguousarray(array), ImageGeometry(spacing=tuple(spacing), origin=tuple(origin),
                                                      direction=tuple(direction.ravel()))


def _recorded_position_near(point: np.ndarray, frame_positions: Sequence[Sequence[float]],
                            within_mm: float) -> np.ndarray:
    """The frame position (mm, LPS) nearest ``point`` when one lies within ``within_mm`` of it, else ``point``.
    highdicom's volume starts at the last slice of an ITK-ordered series; its other end, extrapolated over 111 slices
    along a normal from ImageOrientationPatient written to 4 decimals (an oblique series), lay 0.013 mm from the
    recorded position, beyond :data:`SEG_GRID_TOLERANCE`, and our own SEG was refused against its CT series ("made
    for another image")."""
    positions = np.asarray(frame_positions, dtype=float).reshape(-1, 3)
    if not positions.size:
        return point
    distances = np.linalg.norm(positions - np.asarray(point, dtype=float), axis=1)
    nearest = int(np.argmin(distances))
    return positions[nearest] if distances[nearest] <= within_mm else point


def _frame_positions(dataset: Any) -> List[List[float]]:
    """The ImagePositionPatient (mm, LPS) of each frame of a SEG dataset (per-frame Plane Position); [] where any
    frame lacks a readable one."""
    positions = []
    for item in dataset.get("PerFrameFunctionalGroupsSequence") or []:
        try:
            positions.append([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
        except (AttributeError, IndexError, TypeError, ValueError):
            return []
    return [p for p in positions if len(p) == 3]


SEG_GRID_TOLERANCE = 1e-2
"""mm (spacing, origin offset) and direction cosines: how far a SEG's grid, computed by highdicom from its frames'
positions, may be from its CT series' grid, computed by SimpleITK from the slices' (positions rounded in the
files, e.g. of an oblique series), and still be that grid."""


def _onto_reference(array: np.ndarray, geometry: ImageGeometry, reference: CTVolume, path: Any) -> np.ndarray:
    """A SEG volume placed on the reference CT grid (0 where the SEG has no frame): allowed only when its grid is
    part of the reference's (:func:`~LiverTumorSegLib.io.labels.place_on_reference_grid`: the same voxel centres,
    also in another axis order, inside it), as for a SEG that omits empty frames or a reference stored with its
    rows reversed. Any other grid is a SEG made for another image: refused like a label map on another grid,
    not resampled."""
    from .io.labels import place_on_reference_grid

    placed = place_on_reference_grid(CTVolume(array=array, geometry=geometry, source=str(path)), reference,
                                     SEG_GRID_TOLERANCE)
    if placed is not None:
        return placed.array
    ref = reference.geometry
    raise LabelError(f"DICOM SEG '{path}' does not match its reference '{reference.source}': its grid (spacing "
                     f"{tuple(round(float(v), 3) for v in geometry.spacing)} mm, origin "
                     f"{tuple(round(float(v), 1) for v in geometry.origin)}) is not the reference's (spacing "
                     f"{tuple(round(float(v), 3) for v in ref.spacing)} mm, origin "
                     f"{tuple(round(float(v), 1) for v in ref.origin)}){_grid_differences_text(geometry, ref)}. "
                     f"Use the SEG made for this image.")


def _grid_differences_text(geometry: ImageGeometry, reference: ImageGeometry) -> str:
    """How far two grids differ, for the refusal of a SEG on another grid: "; they differ by up to 0.013 mm in
    spacing, 0.02 mm in origin and 0.05 in direction cosines". The rounded spacing and origin the message shows were
    the same for grids that differ by less, or in direction alone (not shown), and read as a contradiction."""
    spacing, origin, direction = (round(float(np.abs(np.subtract(ours, theirs)).max()), 5) for ours, theirs in (
        (geometry.spacing, reference.spacing), (geometry.origin, reference.origin),
        (geometry.direction, reference.direction)))  # to 0.00001: not float noise (7.11e-15 mm)
    return (f"; they differ by up to {spacing:.3g} mm in spacing, {origin:.3g} mm in origin and {direction:.3g} in "
            f"direction cosines (allowed: {SEG_GRID_TOLERANCE:g})")


def _check_frame_of_reference(seg: Any, reference: Optional[CTVolume], path: Any) -> None:
    """A SEG read against a DICOM series must share its FrameOfReferenceUID (the same patient position in the
    same scanner session); a SEG of another series was placed on it without a word."""
    files = (reference.meta or {}).get("files") if reference is not None else None
    theirs = str(getattr(seg, "FrameOfReferenceUID", "") or "")
    if not files or not theirs:
        return
    import pydicom

    try:
        ours = str(getattr(pydicom.dcmread(str(files[0]), stop_before_pixels=True, force=True,
                                           specific_tags=["FrameOfReferenceUID"]), "FrameOfReferenceUID", "") or "")
    except Exception:  # noqa: BLE001 - unreadable header: the grid check still applies
        return
    if ours and ours != theirs:
        raise LabelError(f"DICOM SEG '{path}' was made for another scan (its FrameOfReferenceUID {theirs} is not the "
                         f"series' {ours}); use the SEG made for this series.")


def _frames_by_source_slice(seg: Any, numbers: Sequence[int], reference: CTVolume, path: Any,
                            dtype: Any = np.uint8) -> np.ndarray:
    """``(z, y, x, segments)`` of a SEG whose frames are not evenly spaced (a series with slightly uneven gaps, read
    on its mean spacing): each frame placed on the reference CT's slice it was derived from (by SOP Instance
    UID), as the writer placed it."""
    datasets, slices = prepare_seg_sources(reference.meta["files"], reference.geometry, reference.shape_zyx)
    order = np.argsort(slices)
    uids = [str(datasets[i].SOPInstanceUID) for i in order]
    try:
        pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=list(numbers), combine_segments=False,
                                                   dtype=dtype)
    except Exception as exc:  # noqa: BLE001 - a SEG of another series
        raise_if_out_of_memory(exc, str(path))
        raise InputError(f"DICOM SEG '{path}' does not fit the reference series "
                         f"({_first_line(exc)}).") from None
    return np.asarray(pixels)


def _check_seg_frames(path: Any) -> None:
    """Before highdicom reads a SEG's pixels: its frame count must be the per-frame sequence's length and its pixel
    data must fit the file (uncompressed), and the frames as one uint8 byte a pixel must fit in memory. A header
    saying 2**31 - 1 frames grew the process to 24 GB until the kernel killed it; one saying fewer frames than it
    holds was read as a smaller label map without a word (the fuzzing audit). InputError / ResourceError."""
    import os

    import pydicom

    from .io.conversions import check_memory_for_read
    from .io.dicom import pixel_data_sizes

    try:
        ds = pydicom.dcmread(str(path), defer_size=1024, force=True)  # the pixel data's length, not its bytes
        stated = getattr(ds, "NumberOfFrames", None)
        frames = 1 if stated is None or str(stated).strip() == "" else int(stated)
        rows, columns = int(ds.Rows), int(ds.Columns)
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    except Exception:  # noqa: BLE001 - what highdicom cannot read either: its own message says so
        return
    if frames < 1 or rows < 1 or columns < 1:
        raise InputError(f"DICOM SEG '{path}' says it has {frames} frame(s) of {rows} x {columns} pixels; the file "
                         f"is damaged.")
    if per_frame is not None and len(per_frame) != frames:
        raise InputError(f"DICOM SEG '{path}' says it has {frames} frames (NumberOfFrames) but describes "
                         f"{len(per_frame)} (PerFrameFunctionalGroupsSequence); the file is damaged: export the "
                         f"segmentation again.")
    sizes = pixel_data_sizes(ds)
    if sizes is not None and sizes[0] not in (sizes[1], sizes[1] + 1):  # one byte pads to an even length
        raise InputError(f"DICOM SEG '{path}' says it has {frames} frames of {rows} x {columns} pixels, {sizes[1]} "
                         f"bytes of pixel data, but holds {sizes[0]} (of {os.path.getsize(str(path))} bytes in the "
                         f"file); it is truncated or its header is wrong. Export the segmentation again.")
    check_memory_for_read((columns, rows, frames), 1, str(path))
    _check_segment_references(path, ds)


def _referenced_segment(item: Any) -> Optional[int]:
    """The ReferencedSegmentNumber of a functional groups item (per-frame or shared), None when it names none."""
    identification = item.get("SegmentIdentificationSequence") if item is not None else None
    if not identification:
        return None
    try:
        return int(identification[0].ReferencedSegmentNumber)
    except (AttributeError, TypeError, ValueError):
        return None


def _check_segment_references(path: Any, ds: Any) -> None:
    """Refuse a SEG whose frames reference a segment that its SegmentSequence does not define (InputError naming
    the frame, 1-based as DICOM counts them, and the segment number): highdicom reads only the frames of the
    defined segments, so a tumor whose frames said segment 3 where 2 was defined was left out of the label map
    without a word (52 tumor voxels read as 0; the fuzzing audit). A BINARY or FRACTIONAL SEG says which segment
    each frame holds in its functional groups; a LABELMAP SEG holds segment numbers as pixel values, read frame by
    frame here (0 is the background)."""
    try:
        defined = {int(item.SegmentNumber) for item in ds.SegmentSequence}
    except (AttributeError, TypeError, ValueError):
        return  # no readable SegmentSequence: highdicom's own message says what is wrong
    shown = ", ".join(str(n) for n in sorted(defined)) or "none"
    if str(getattr(ds, "SegmentationType", "")).upper() == "LABELMAP":
        frame, value = _undefined_label_value(path, defined | {0})
        if value is not None:
            raise InputError(f"DICOM SEG '{path}': frame {frame} holds pixel value {value}, but its SegmentSequence "
                             f"defines no segment {value} (it defines segments {shown}); those voxels would be left "
                             f"out of the label map. The file is damaged: export the segmentation again.")
        return
    shared = ds.get("SharedFunctionalGroupsSequence")
    number = _referenced_segment(shared[0] if shared else None)
    if number is not None and number not in defined:
        raise InputError(f"DICOM SEG '{path}': its frames (SharedFunctionalGroupsSequence) reference segment {number}, "
                         f"which its SegmentSequence does not define (it defines segments {shown}); their voxels "
                         f"would be left out of the label map. The file is damaged: export the segmentation again.")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    undefined = [(index, number) for index, number in enumerate(_referenced_segment(item) for item in per_frame)
                 if number is not None and number not in defined]
    if undefined:
        index, number = undefined[0]
        count = f"; {len(undefined)} of its {len(per_frame)} frames reference undefined segments" \
            if len(undefined) > 1 else ""
        raise InputError(f"DICOM SEG '{path}': frame {index + 1} references segment {number}, which its "
                         f"SegmentSequence does not define (it defines segments {shown}{count}); those voxels would "
                         f"be left out of the label map. The file is damaged: export the segmentation again.")


def _undefined_label_value(path: Any, allowed: set) -> Tuple[Optional[int], Optional[int]]:
    """``(frame, value)``: the first frame (1-based) of a LABELMAP SEG holding a pixel value outside ``allowed``
    and the smallest such value, or ``(None, None)`` when every value is allowed or the pixels cannot be decoded
    here (highdicom's read then says why). One frame is decoded at a time. When ``allowed`` is every number from
    0 to its largest (segments 1..n, as SEGs number them), a frame of unsigned values is judged by its maximum
    alone: sorting every frame's values (np.unique) added 0.09 s to the 0.54 s read of a 120-frame 512 x 512 SEG."""
    try:
        from pydicom.pixels import iter_pixels
    except ImportError:  # pydicom < 3
        return None, None
    allowed_values = np.asarray(sorted(allowed))
    top = int(allowed_values[-1]) if allowed_values.size else -1
    contiguous = allowed_values.size == top + 1 and int(allowed_values[0]) == 0  # 0, 1, ..., top
    try:
        for index, frame in enumerate(iter_pixels(str(path))):
            if contiguous and frame.dtype.kind == "u" and (frame.size == 0 or int(frame.max()) <= top):
                continue
            values = np.unique(frame)
            odd = values[~np.isin(values, allowed_values)]
            if odd.size:
                return index + 1, int(odd[0])
    except Exception:  # noqa: BLE001 - a transfer syntax pydicom cannot decode alone: highdicom's read decides
        return None, None
    return None, None


SEG_ATTRIBUTES_READ = ("SegmentationType", "SegmentSequence", "SharedFunctionalGroupsSequence",
                      "PerFrameFunctionalGroupsSequence", "DimensionIndexSequence")
"""Attributes a DICOM SEG must hold (Type 1 or 2) without which highdicom cannot place or name its frames."""


def _check_seg_attributes_present(dataset: Any, path: Any) -> None:
    """InputError when ``dataset`` (read from ``path``) is no SEG by its SOP class (a CT slice was 'Cannot read DICOM
    SEG: Dataset is not a Segmentation..'), or naming the :data:`SEG_ATTRIBUTES_READ` it lacks: without
    SegmentationType or DimensionIndexSequence the read failed inside highdicom ("no such column:
    FrameLUT.ReferencedSegmentNumber") and was blamed on 'slightly uneven slice gaps'; without a sequence it said
    "'Segmentation' object has no attribute ..." and nothing of what to do."""
    sop_class = str(dataset.get("SOPClassUID", ""))
    if sop_class not in (SEG_SOP_CLASS_UID, LABEL_MAP_SEG_SOP_CLASS_UID):
        raise InputError(f"'{path}' is not a DICOM SEG (its SOPClassUID is {sop_class or 'missing'}); give the "
                         f"segmentation's own file.")
    missing = [name for name in SEG_ATTRIBUTES_READ if name not in dataset]
    if missing:
        raise InputError(f"DICOM SEG '{path}' lacks {', '.join(missing)}, which every DICOM SEG holds; the file is "
                         f"damaged or was written incompletely: export the segmentation again.")


def _first_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of ``exc``'s message (its type's name when it has none), at most ``limit`` characters,
    without a closing full stop (the messages that quote it add their own: 'Dataset is not a Segmentation..')."""
    lines = str(exc).strip().splitlines()
    return (lines[0][:limit] if lines else type(exc).__name__).rstrip(". ")


def read_dicom_seg(path: Any, reference: Optional[CTVolume] = None) -> CTVolume:
    """Label map ``(z, y, x)`` uint8 (0/1/2) from a DICOM SEG file (see module doc); ``meta["format"]`` is
    ``"dicom-seg"`` and ``meta["segments"]`` lists ``{number, label, value}``."""
    hd = _highdicom()
    _check_seg_frames(path)
    try:
        import pydicom

        dataset = pydicom.dcmread(str(path))
        _check_seg_attributes_present(dataset, path)
        stated_thickness_mm = _seg_slice_thickness_mm(dataset)  # before a missing one is filled from the spacing
        _fill_missing_slice_thickness(dataset)  # a SEG written without it (by versions before 27 Nov 2026, too)
        seg = hd.seg.Segmentation.from_dataset(dataset, copy=False)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom/highdicom raise many types for bad files
        raise_if_out_of_memory(exc, str(path))
        raise InputError(f"Cannot read DICOM SEG '{path}': {_first_line(exc)}; the file is damaged or no complete "
                         f"DICOM SEG: export the segmentation again.") from None
    mapping = {}  # type: dict
    warnings = []
    segments = []
    left_out = []  # type: List[str]
    for number in seg.segment_numbers:
        description = seg.get_segment_description(number)
        value = _label_of_segment(description)
        segments.append({"number": int(number), "label": str(description.SegmentLabel), "value": value})
        if value is None:
            left_out.append(f"segment {number} '{description.SegmentLabel}' is neither liver nor tumor; ignored")
            warnings.append(left_out[-1])
        else:
            mapping[int(number)] = value
    if not mapping:
        names = ", ".join(f"'{s['label']}'" for s in segments)
        raise LabelError(f"DICOM SEG '{path}' has no liver or liver-tumor segment (segments: {names}); its segment "
                         f"types must be SNOMED CT Liver (10200004), or Neoplasm (108369006), Mass (4147007) or "
                         f"Lesion (52988006), or its labels must say liver or tumor.")
    numbers = sorted(mapping)
    _check_frame_of_reference(seg, reference, path)
    # FRACTIONAL: probability or occupancy per voxel (highdicom refuses uint8 for it); a voxel belongs at >= 0.5
    dtype = np.float32 if str(getattr(seg, "SegmentationType", "")).upper() == "FRACTIONAL" else np.uint8
    try:
        volume = seg.get_volume(segment_numbers=numbers, combine_segments=False, dtype=dtype)
        stacked, geometry = _geometry_from_hd_volume(volume, _frame_positions(dataset))
        seg_slice_axis = geometry.direction_matrix[:, 2]
    except Exception as exc:  # noqa: BLE001 - irregular frames and the like
        raise_if_out_of_memory(exc, str(path))  # not an irregular SEG: reading it frame by frame needs as much
        if reference is None or not reference.meta.get("files"):
            raise InputError(f"DICOM SEG '{path}' is not a regular 3D volume ({_first_line(exc)}), "
                             f"e.g. made from a series with slightly uneven slice gaps; it can be read only with its "
                             f"CT series as the reference (measure SEG --ct DICOM_FOLDER). To evaluate it, segment "
                             f"the series to .nii.gz (or .seg.nrrd) and compare that file.") from None
        stacked, geometry = _frames_by_source_slice(seg, numbers, reference, path, dtype), reference.geometry
        seg_slice_axis = geometry.direction_matrix[:, 2]  # its frames are the reference's slices
    inside = 0.5 if dtype == np.float32 else 0
    labels = np.zeros(stacked.shape[:3], dtype=np.uint8)
    for channel, number in sorted(enumerate(numbers), key=lambda cn: mapping[cn[1]]):  # tumor last: it wins
        labels[(stacked[..., channel] >= inside) if inside else (stacked[..., channel] > 0)] = mapping[number]
    touching = _touching_tumor_segments_text(stacked, inside, labels == 2, numbers, mapping, segments, path)
    if touching:  # one segment per lesion (as OHIF writes them) merged into one lesion without a word (.seg.nrrd said)
        warnings.append(touching)
    if reference is not None and labels.shape[0] == 1 == reference.shape_zyx[0]:
        # one slice: its thickness is not a position (SEGs written before 24 Nov 2026 said 1 mm): the reference's
        geometry = ImageGeometry(spacing=tuple(geometry.spacing[:2]) + (float(reference.geometry.spacing[2]),),
                                 origin=geometry.origin, direction=geometry.direction)
    if reference is not None and not (tuple(labels.shape) == tuple(reference.shape_zyx)
                                      and geometry.almost_equal(reference.geometry, tol=1e-3)):
        labels = _onto_reference(labels, geometry, reference, path)
        geometry = reference.geometry
    if reference is None:
        # which end is frame k depends on the slices' order: either end holding segments (frame 1's is the scan's
        # own edge, so at worst a warning too many)
        warnings += _frames_left_out_warning(seg, labels.shape[0], bool(labels[0].any() or labels[-1].any()))
    out = CTVolume(array=labels, geometry=geometry, source=str(path),
                   meta={"format": "dicom-seg", "segments": segments})
    if stated_thickness_mm is not None and abs(float(np.dot(seg_slice_axis, geometry.direction_matrix[:, 2]))) > 0.999 \
            and not _is_the_slice_spacing(stated_thickness_mm, float(geometry.spacing[2])):
        # the thickness of the SEG's slices, kept while they stay the grid's slices (not on a reference in another
        # axis order): RECIST's measurable minimum of 'measure seg.dcm' without --ct (it took the spacing)
        out.meta[SEG_SLICE_THICKNESS_META] = stated_thickness_mm
    if left_out:  # said on stderr as the .seg.nrrd reader says it (evaluate printed nothing)
        for text in left_out:
            log.warning("warning: %s", text)
        out.meta["logged_warnings"] = left_out
    if warnings:
        out.meta["warnings"] = warnings
    return out


def _touching_tumor_segments_text(stacked: np.ndarray, inside: float, tumor: np.ndarray, numbers: List[int],
                                  mapping: Dict[int, int], segments: List[Dict[str, Any]], path: Path) -> str:
    """The warning naming the SEG's tumor segments that touch (:func:`~.segnrrd.touching_segments_text`), '' when
    none do: ``stacked`` the segments' frames ``(z, y, x, segment)`` in the order of ``numbers``, a voxel in a
    segment at ``> 0`` (``inside`` 0) or ``>= inside`` (FRACTIONAL); ``tumor`` their tumor union."""
    from .segnrrd import touching_segments_text

    label_of = {s["number"]: s["label"] for s in segments}
    tumors = [(channel, number) for channel, number in enumerate(numbers) if mapping[number] == 2]
    if len(tumors) < 2:
        return ""

    def mask_of(channel: int) -> np.ndarray:
        return (stacked[..., channel] >= inside) if inside else (stacked[..., channel] > 0)

    return touching_segments_text(f"'{Path(path).name}'", tumor,
                                  ((f"{label_of[number]} (segment {number})", lambda c=channel: mask_of(c))
                                   for channel, number in tumors))


def _is_the_slice_spacing(thickness_mm: float, spacing_mm: float) -> bool:
    """Whether a SEG's SliceThickness is its slice spacing (to the 6 significant digits the writer gives): this
    project's writer (and others) fills the spacing in where the source series states no thickness
    (:func:`_fill_missing_slice_thickness`), so such a value is no measured thickness, and the reader cannot tell it
    from a contiguous series' own. Not kept as the SEG's thickness: RECIST's minimum is the same either way (the
    spacing), and the report names its source 'slice spacing' instead of 'dicom_seg'."""
    return abs(float(thickness_mm) - float(spacing_mm)) <= 1e-5 * max(abs(float(spacing_mm)), 1.0)


def _seg_slice_thickness_mm(dataset: Any) -> Optional[float]:
    """The SliceThickness (mm) a DICOM SEG ``dataset`` states in its Pixel Measures functional groups (shared, or
    per frame: the largest; :func:`~.io.dicom.functional_groups_slice_thickness_mm`), which highdicom and this
    project's writer copy from the CT slices the SEG was made on; None where it states none (filled in for reading
    from its SpacingBetweenSlices by :func:`_fill_missing_slice_thickness`, which is no thickness)."""
    from .io.dicom import functional_groups_slice_thickness_mm

    try:
        return functional_groups_slice_thickness_mm(dataset)
    except Exception:  # noqa: BLE001 - a damaged item: the spacing is taken, as for a SEG without one
        return None


def _frames_left_out_warning(seg: Any, slices: int, last_slice_has_segments: bool = True) -> List[str]:
    """A warning when a SEG read without its CT references more source images than the slices its frames cover:
    its empty frames were left out (highdicom's and dcmqi's default), so its grid covers only the slices with
    segments. A lesion on its first or last frame was then called cut by the scan's edge and left out of the RECIST
    targets (64.3 mm of target diameters read 44.6 mm), without a word (the output-format audit). A SEG of a
    multi-frame (Enhanced) CT references one instance: its frames' source frame numbers tell instead (not from 1, or
    with gaps: frames left out; 1 to k: the CT's own count is not in the SEG, so it is said only when segments lie
    on an end slice, ``last_slice_has_segments``, where a lesion would be taken as cut)."""
    consequence = ("so without its CT its grid holds only the slices with segments, and a lesion on its first or "
                   "last slice is taken as cut by the scan's edge (and left out of the RECIST targets). Give the CT "
                   "series (--ct) to measure on the whole scan")
    referenced = 0
    for series in getattr(seg, "ReferencedSeriesSequence", None) or []:
        referenced += len(getattr(series, "ReferencedInstanceSequence", None) or [])
    frames = _referenced_source_frames(seg) if referenced == 1 else []
    if frames:  # an Enhanced (multi-frame) CT: one referenced instance, so the count below said nothing
        first, last = min(frames), max(frames)
        if first > 1 or last - first + 1 > len(frames):
            return [f"the DICOM SEG's frames reference frames {first}-{last} of a multi-frame CT"
                    f"{' with gaps' if last - first + 1 > len(frames) else ''}: its empty frames were left out, "
                    + consequence]
        if not last_slice_has_segments:  # a complete SEG (ours) and one cut short read alike: said only if it matters
            return []
        return [f"the DICOM SEG's frames reference frames 1-{last} of a multi-frame CT, whose number of frames the "
                f"SEG does not record: if the CT has more, its empty frames were left out, " + consequence]
    if referenced <= slices:
        return []
    return [f"the DICOM SEG covers {slices} slice(s) but references {referenced} source images: its empty frames "
            f"were left out, " + consequence]


def _referenced_source_frames(seg: Any) -> List[int]:
    """The source frame numbers (``ReferencedFrameNumber`` of each frame's derivation source) a SEG of a multi-frame
    (Enhanced) CT references; [] for a SEG of single-frame images or one that does not say."""
    frames = set()
    for group in getattr(seg, "PerFrameFunctionalGroupsSequence", None) or []:
        for derivation in getattr(group, "DerivationImageSequence", None) or []:
            for source in getattr(derivation, "SourceImageSequence", None) or []:
                numbers = getattr(source, "ReferencedFrameNumber", None)
                if numbers is None:
                    continue
                for number in (numbers if hasattr(numbers, "__iter__") and not isinstance(numbers, (str, bytes))
                               else [numbers]):
                    try:
                        frames.add(int(number))
                    except (TypeError, ValueError):
                        continue
    return sorted(frames)
