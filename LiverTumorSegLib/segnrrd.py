"""Reading Slicer segmentation files (``.seg.nrrd``) as 0/1/2 label maps, without slicer-core.

A ``.seg.nrrd`` is an NRRD image (3D, or 4D with one component per *layer*) whose header describes the
segments in ``SegmentN_*`` key/value pairs: ``SegmentN_ID``, ``SegmentN_Name``, ``SegmentN_Layer`` (which
component) and ``SegmentN_LabelValue`` (which value in that component); files written before Slicer 4.11
have neither, one segment per component with value 1. SimpleITK reads the header and the voxels (a gzip
file's voxels are those its integrity check inflated, so the stream is inflated once).

Segments become labels by ID or name (case-insensitive): ``livertumorseg_liver`` / "Liver" -> 1 (liver),
``livertumorseg_tumor`` / "Liver tumor" (also "tumor", "tumour", "lesion", "liver lesion", "liver tumour")
-> 2 (tumor, drawn over the liver). What ``segment`` and the Slicer module write reads back exactly. Other
segments are left out with a warning; a file with neither raises :class:`~LiverTumorSegLib.errors.LabelError`
naming the segments it holds. A file that holds no 3D segmentation is refused saying so: 2D, floating-point values
that are no whole numbers (a probability map), or a colour axis (``RGB-color``) taken for layers.

A header describing more than :data:`MAX_SEGMENTS` segments is refused before ITK parses it
(:func:`check_segment_count`).

Slicer may save a segmentation cropped to the segments' extent; :func:`embed_in_reference` puts such a
cropped grid back into its CT's grid (same spacing and direction, whole-voxel offset): the grid the header
records (:func:`stored_reference_grid`) when the file is read alone, or the CT given with it.
"""
import logging
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import InputError, LabelError, raise_if_out_of_memory
from .volume import CTVolume, ImageGeometry

log = logging.getLogger(__name__)

SEG_NRRD_SUFFIX = ".seg.nrrd"
LIVER_NAMES = ("livertumorseg_liver", "liver")
TUMOR_NAMES = ("livertumorseg_tumor", "liver tumor", "liver tumour", "tumor", "tumour", "liver lesion", "lesion",
               "liver tumors", "liver lesions", "tumors", "lesions")
_SEGMENT_KEY = re.compile(r"^Segment(\d+)_(\w+)$")


def is_seg_nrrd(path) -> bool:
    """True when ``path``'s name ends in ``.seg.nrrd`` (any case)."""
    return str(path).lower().endswith(SEG_NRRD_SUFFIX)


def segment_table(metadata: Dict[str, str]) -> List[Dict[str, str]]:
    """The ``SegmentN_*`` header entries grouped per segment, in N order: ``[{"ID": .., "Name": .., ...}]``."""
    segments: Dict[int, Dict[str, str]] = {}
    for key, value in metadata.items():
        match = _SEGMENT_KEY.match(key)
        if match:
            segments.setdefault(int(match.group(1)), {})[match.group(2)] = value.strip()
    return [segments[i] for i in sorted(segments)]


TUMOR_WORDS = ("tumor", "tumour", "tumeur", "lesion", "läsion", "lésion", "lesión", "neopla", "metasta", "metást",
               "cancer", "carcinoma", "malignan", "hcc")
"""A segment whose name holds one of these is a liver tumor (as for DICOM SEG labels): Segment Editor's "Split
islands to segments" names the parts 'Liver tumor -_1', readers add 'Liver tumor 2', 'Metastasis' or 'HCC'; MSD's
Task03 names label 2 'cancer'; German, French and Spanish readers write 'Läsion', 'Tumeur', 'Lésion', 'Metástasis'
(a first list held English words only, and those segments were left out). "hcc" counts only where no letter
touches it ('HCC', 'HCC_1', 'hcc2'; not inside another word)."""
_WHOLE_WORDS_ONLY = ("hcc",)
_TUMOR_WORD = "(?:" + "|".join(rf"(?<![^\W\d_]){w}(?![^\W\d_])" if w in _WHOLE_WORDS_ONLY else re.escape(w)
                               for w in TUMOR_WORDS) + ")"
_NEGATED_TUMOR = re.compile(
    r"(?:\b(?:without|excluding|excl\.?|except|minus|not|no|negative[\s_-]+for|no[\s_-]+evidence[\s_-]+of)|"
    r"\bw/o)[\s_-]+(?:(?:any|an?)[\s_-]+)?"
    r"(?:liver[\s_-]+)?\w*" + _TUMOR_WORD  # 'liver without tumor', 'no evidence of tumor', 'negative for lesions'
    + r"|\bnon[\s_-]*" + _TUMOR_WORD  # 'non-tumor liver', 'nontumorous'
    + r"|" + _TUMOR_WORD + r"\w*[\s_-]*(?:free|absent|\(?none\)?)(?!\w)")
"""A negated tumor word: 'no', 'not', 'without', 'w/o', 'excluding', 'excl.', 'except', 'minus', 'negative for' or
'no evidence of' before it (one 'any', 'a', 'an' or 'liver' between allowed), 'non' joined to it, or 'free',
'absent' or 'none' after it ('tumor-free', 'Tumor (none)'; 'excluded', 'removed' or 'subtracted' only where the rest
of the name is the liver: :func:`_liver_without_taken_out_tumor`). Only the tumor word itself is negated: 'Lesion no 2' (no. 2), 'Tumor No 3' and 'Non-enhancing tumor
part' are tumors (a first rule took any 'no ' or 'non-' in the name as a negation, and those hand-drawn lesions were
left out of the lesion table). 'Liver w/o tumor', 'Liver minus tumor' or 'Liver excl. tumors' were read as tumor:
the whole liver one lesion and a RECIST target (the measure audit)."""


_NEGATED_TUMOR_WHOLE = re.compile("(?:" + _NEGATED_TUMOR.pattern + r")\w*")
""":data:`_NEGATED_TUMOR` with the rest of its last word ('without any lesion' + 's')."""

_TUMOR_TAKEN_OUT = re.compile(r"(?:(?:with|all|any)[\s_]+)*" + _TUMOR_WORD
                              + r"\w*[\s_-]*(?:excluded|removed|subtracted)(?!\w)")
"""A tumor word with 'excluded', 'removed' or 'subtracted' after it ('with', 'all' or 'any' before it allowed): a
negation only where the rest of the name is the liver (:func:`_liver_without_taken_out_tumor`)."""


def _rest_beside_taken_out_tumor(name: str, joined: str) -> Optional[str]:
    """``name`` (lower case) without its tumor taken out (:data:`_TUMOR_TAKEN_OUT`), or None where it takes none out
    or the tumor word follows the end of ``before`` matched by the regular expression ``joined`` (a word joined to
    it by spaces alone: 'Liver tumor removed', that tumor, removed)."""
    found = _TUMOR_TAKEN_OUT.search(name)
    if found is None:
        return None
    before, after = name[:found.start()], name[found.end():]
    if re.search(joined, before) and re.match(_TUMOR_WORD, found.group(0)):
        return None
    return before + " " + after


def _liver_without_taken_out_tumor(name: str) -> Optional[str]:
    """``name`` (lower case) without its tumor taken out (:func:`_rest_beside_taken_out_tumor`) when that leaves the
    whole liver (:func:`names_whole_liver`): 'Liver (tumor excluded)', 'Liver parenchyma (tumor excluded)', 'Liver
    with tumors removed', 'Liver_(tumor_excluded)', 'Liver parenchyma tumor excluded' name the liver, while 'Tumor
    removed', 'Lesion excluded from RECIST' and 'Liver tumor removed' (a resected or left-out lesion) name a tumor
    (the suffix alone was read as a negation, then only right after 'liver (': both found by reviews of the
    change). None otherwise."""
    rest = _rest_beside_taken_out_tumor(name, r"(?<![^\W\d_])liver[ \t]+$")
    return rest if rest is not None and names_whole_liver(rest) else None


def _liver_part_without_taken_out_tumor(name: str) -> bool:
    """Whether ``name`` (lower case) takes its tumor out of the liver (:func:`_liver_without_taken_out_tumor`) or
    out of a named part of it, the rest naming the liver and no other tumor, the tumor word not joined to the word
    before it by spaces alone ('Liver segment 7 (tumor excluded)', 'Left liver lobe (tumors removed)'; 'Liver segment
    7 tumor removed' is that segment's tumor, removed). A part is liver tissue, though not the whole liver, so it is
    neither liver nor tumor; it was read as a tumor, one lesion the size of a Couinaud segment (stop 109's note)."""
    if _liver_without_taken_out_tumor(name) is not None:
        return True
    rest = _rest_beside_taken_out_tumor(name, r"[^\W_][ \t]+$")
    return (rest is not None and re.search(r"(?<![^\W\d_])liver(?![^\W\d_])", rest) is not None
            and re.search(_TUMOR_WORD, rest) is None)


def names_tumor(name: str) -> bool:
    """Whether a segment name or DICOM SEG label (any case) names a liver tumor by its words: one of
    :data:`TUMOR_WORDS`, not negated (:data:`_NEGATED_TUMOR`), not taken out of the liver or a part of it
    (:func:`_liver_part_without_taken_out_tumor`)."""
    name = name.strip().lower()
    return (re.search(_TUMOR_WORD, name) is not None and _NEGATED_TUMOR.search(name) is None
            and not _liver_part_without_taken_out_tumor(name))


OTHER_ORGAN_WORDS = ("kidney", "renal", "nephr", "adrenal", "pulmon", "pancrea", "spleen", "splen", "osseous",
                     "vertebra", "lymph", "nodal", "breast", "colon", "rectal", "rectum", "gastric",
                     "stomach", "bladder", "gallbladder", "prostat", "ovar", "uter", "thyro", "muscle", "peritone",
                     "bowel", "intestin")
"""Starts of words naming an organ or tissue other than the liver as a lesion's site ('Kidney tumor', 'Renal lesion',
'Pancreatic tumor'), each at the start of a word ('uter' in 'Uterine', not in 'computer')."""
OTHER_ORGAN_WHOLE_WORDS = ("lung", "lungs", "bone", "bones", "rib", "ribs", "node", "nodes", "skin", "brain")
"""...and short ones that count as whole words only ('Rib lesion', not 'Tumor ribbon')."""
_OTHER_ORGAN = re.compile(r"(?<![^\W\d_])(?:" + "|".join(OTHER_ORGAN_WORDS) + r")|(?<![^\W\d_])(?:"
                          + "|".join(OTHER_ORGAN_WHOLE_WORDS) + r")(?![^\W\d_])")
_LIVER_SITE = re.compile(r"(?<![^\W\d_])(?:liver|hepat|intrahepat|hcc|leber|foie|h[ií]gado|fegato|couinaud)")
_METASTASIS = re.compile(r"(?<![^\W\d_])(?:metasta|mets?(?![^\W\d_])|secondar)")


def names_tumor_of_another_organ(name: str) -> bool:
    """Whether a tumor's segment name or DICOM SEG label (any case) mentions another organ and not the liver:
    'Kidney tumor', 'Renal lesion' (:data:`OTHER_ORGAN_WORDS`), but also 'Lesion near gallbladder fossa' or 'Tumor
    abutting kidney', which are liver lesions: such a segment is measured as a liver lesion and said
    (:func:`other_organ_tumor_text`), never left out (a first rule left them out, and dropped liver lesions named by
    where they lie; the review). A metastasis named 'metastasis', 'mets' or 'secondary' and any name that says liver
    are not counted."""
    text = name.strip().lower()
    return (_OTHER_ORGAN.search(text) is not None and _LIVER_SITE.search(text) is None
            and _METASTASIS.search(text) is None)


def other_organ_tumor_text(names: Sequence[str], where: str) -> str:
    """The warning for tumor segments of ``where`` (a file or node, quoted) whose names mention another organ
    (:func:`names_tumor_of_another_organ`): they are measured as liver lesions, and a 'Kidney tumor' 63 mm from the
    liver became a RECIST target without a word (the measure audit); '' when there are none."""
    if not names:
        return ""
    return (f"tumor segment(s) {', '.join(repr(n) for n in names)} of {where} mention another organ and are measured "
            f"as liver lesions: if one is not a liver lesion (a kidney's, a lung's), remove it or name it without a "
            f"tumor word before measuring")


def names_liver(name: str) -> bool:
    """Whether a class or segment name (any case) names the liver itself: it says liver and names no tumor
    (:func:`names_tumor`). "Liver tumour" is a tumor, "Liver" and "liver parenchyma" are liver."""
    return "liver" in name.lower() and not names_tumor(name)


def left_out_text(names: Sequence[str], where: str) -> str:
    """The warning for segments of ``where`` (a file or node, quoted) that are neither liver nor tumor by name and
    are left out of what is measured ('' when there are none)."""
    if not names:
        return ""
    return (f"segment(s) {', '.join(repr(n) for n in names)} of {where} are neither liver nor tumor by name and are "
            f"left out (name a tumor segment so that it holds 'tumor' or 'lesion')")


def label_of_segment(segment: Dict[str, str]) -> Optional[int]:
    """1 (liver), 2 (tumor) or None (some other structure) from the segment's name, or its ID where it has no name:
    the exact names first (:data:`LIVER_NAMES`, :data:`TUMOR_NAMES`), then a name holding a :data:`TUMOR_WORDS`
    word that is not negated (:func:`names_tumor`), then the liver with words a reader adds (:data:`LIVER_QUALIFIERS`:
    'Liver (corrected)'). 'Liver segment 7' or 'Portal vein' is neither. The name is what
    a reader sees and edits: a segment with the ID 'tumor' (a label-map import, another tool's file) that the
    reader renamed 'Simple cyst (benign)' was still measured as a lesion by its ID (the panel audit)."""
    text = (segment.get("Name", "") or segment.get("ID", "")).strip().lower()
    if text in LIVER_NAMES:
        return 1
    if text in TUMOR_NAMES:
        return 2
    if names_tumor(text):
        return 2
    if names_whole_liver(text):
        return 1
    return label_of_terminology(segment.get("Tags", "")) if _GENERIC_NAME.match(text) else None


_GENERIC_NAME = re.compile(r"^(?:segment)?[\s_-]*\d*$")
"""A segment name that says nothing of what it holds: '' or Slicer's default 'Segment_1' ('Segment 2', '3')."""


def label_of_terminology(tags: str) -> Optional[int]:
    """1 (liver), 2 (liver tumor) or None from a ``.seg.nrrd`` segment's ``Tags`` (``TerminologyEntry:...|...``, the
    terminology Slicer records: :func:`~.mrml.parse_terminology_tag`), by its type code as the DICOM SEG reader reads
    one (:data:`~.dicom_seg.LIVER_TYPE_VALUES`, :data:`~.dicom_seg.NEOPLASM_TYPE_VALUES`; a neoplasm whose anatomic
    region is another organ is none). Asked only for a segment whose name says nothing (:data:`_GENERIC_NAME`): a
    name the reader gave decides, as it is what they see. 'Segment_1' with the terminology Liver and 'Segment_2'
    with Neoplasm were left out, and the file was refused as holding neither (the measure audit)."""
    from .dicom_seg import LIVER_TYPE_VALUES, TUMOR_TYPE_VALUES
    from .mrml import parse_terminology_tag

    entry = next((part.split(":", 1)[1] for part in str(tags).split("|") if part.startswith("TerminologyEntry:")), "")
    try:
        terminology = parse_terminology_tag(entry) if entry else None
    except ValueError:  # a tag of another format: the name alone decides
        return None
    if terminology is None or terminology["type"] is None:
        return None
    value = terminology["type"][1]
    region = terminology["anatomic_region"]
    if value in LIVER_TYPE_VALUES:
        return 1
    if value in TUMOR_TYPE_VALUES:  # Neoplasm, and Mass or Lesion (Slicer 5.6's tumor type)
        return None if region is not None and region[1] not in LIVER_TYPE_VALUES else 2
    return None


LIVER_QUALIFIERS = ("corrected", "edited", "reviewed", "final", "manual", "whole", "entire", "total", "parenchyma",
                    "mask", "segmentation", "label")
"""Words a reader adds to a liver segment's name that keep it the whole liver: 'Liver (corrected)', 'Whole liver',
'Liver parenchyma', 'Liver_2'. A renamed 'Liver' was left out (liver 0 mL, burden 100 %); 'Liver segment 7' or
'Liver vein' names a part or another structure and stays neither."""


def names_whole_liver(text: str) -> bool:
    """Whether the segment name or label ``text`` (any case) is 'liver' with only :data:`LIVER_QUALIFIERS`, numbers,
    punctuation and a negated tumor beside it: the one rule for .seg.nrrd names and DICOM SEG labels."""
    text = text.strip().lower()
    # a negated tumor ('Liver without tumor', 'tumor-free liver') is taken out first; a negated liver ('Non-liver',
    # 'No liver', 'Liver-free') keeps its negation and is no liver
    if _TUMOR_TAKEN_OUT.search(text):  # 'liver (tumor excluded)': the liver's words stay, the negated tumor goes
        rest = _liver_without_taken_out_tumor(text)
        if rest is None:
            return False
        text = rest
    words = [w for w in re.split(r"[\s_()\[\],.:;/\u2013\u2014-]+", _NEGATED_TUMOR_WHOLE.sub(" ", text)) if w]
    return "liver" in words and all(w == "liver" or w in LIVER_QUALIFIERS or w.isdigit() for w in words)


def _int_field(segment: Dict[str, str], key: str, default: int, path: Path) -> int:
    text = segment.get(key, "")
    if not text:
        return default
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not (np.isfinite(number) and number.is_integer()):
        raise LabelError(f"'{path}': segment '{segment.get('Name', '?')}' has {key} '{text}', not a whole number; "
                         f"the file is damaged (re-save it from Slicer).")
    return int(number)


MAX_SEGMENTS = 2000
"""The most segments a ``.seg.nrrd`` header may describe (distinct ``SegmentN_`` numbers): well above real use (a
TotalSegmentator segmentation in Slicer has 117), far below what makes ITK's header parser crawl (100,000 segments
took over 5 minutes before any check; :data:`~LiverTumorSegLib.io.itk.MAX_NRRD_KEY_VALUES`)."""


def check_segment_count(path: Path) -> None:
    """Refuse, before ITK parses its header, a ``.seg.nrrd`` whose header describes more than :data:`MAX_SEGMENTS`
    segments (InputError saying the limit). The header text is read only as far as it takes to know."""
    from .io.itk import nrrd_header_keys

    numbers = set()
    for key in nrrd_header_keys(path):
        match = _SEGMENT_KEY.match(key)
        if match:
            numbers.add(match.group(1))
            if len(numbers) > MAX_SEGMENTS:
                raise InputError(f"Cannot read '{path}' as a Slicer segmentation (.seg.nrrd): its header describes "
                                 f"more than {MAX_SEGMENTS} segments (SegmentN_ entries), the most this tool reads "
                                 f"(a TotalSegmentator segmentation has 117); ITK would take minutes to parse such "
                                 f"a header. The header is damaged or the file is not a liver segmentation: re-save "
                                 f"it from 3D Slicer, or give the liver and tumor as a label map (.nii.gz, .nrrd).")


def check_segment_fields(path: Path, metadata: Dict[str, str], size_xyz: Sequence[int], layers: int,
                         max_label: int) -> None:
    """Refuse segment entries that no reader can take as they are: a ``LayerN`` outside the file's ``layers``, a
    ``LabelValue`` that is not a whole number in 1..``max_label`` (the voxel type's largest value; 0 is the layer's
    background), or an ``Extent`` (``i0 i1 j0 j1 k0 k1``, voxels of the file's ``size_xyz`` grid; empty when an upper
    bound is below its lower one) that is not six whole numbers or reaches outside the grid. The MRML storage node
    took a text LabelValue as 0 (every background voxel became the segment), dropped a segment of a missing layer
    with only a log line, and ended the process on an extent of -2e9 (``std::bad_alloc``) or grew to tens of GB on
    one of 2e9. LabelError naming the segment and the field."""
    layer_count = int(layers)
    owner = {}  # type: Dict[Tuple[int, int], str]
    for index, segment in enumerate(segment_table(metadata)):
        name = segment.get("Name") or segment.get("ID") or f"Segment{index}"
        layer = _int_field(segment, "Layer", index if layer_count > 1 else 0, path)
        if not 0 <= layer < layer_count:
            raise LabelError(f"'{path}': segment '{name}' is in layer {layer}, but the file has {layer_count} "
                             f"layer(s); the file is damaged (re-save it from Slicer).")
        value = _int_field(segment, "LabelValue", 1, path)
        if not 1 <= value <= int(max_label):
            raise LabelError(f"'{path}': segment '{name}' has LabelValue {segment.get('LabelValue', '').strip()}, but "
                             f"its voxels hold 1..{max_label} "
                             f"(0 is the background of its layer); the file is damaged (re-save it from Slicer).")
        if (layer, value) in owner:  # one set of voxels would be two segments: the tumor read as the whole liver
            raise LabelError(f"'{path}': segments '{owner[(layer, value)]}' and '{name}' both have LabelValue {value} "
                             f"in layer {layer}, so their voxels cannot be told apart; the file is damaged (re-save "
                             f"it from Slicer).")
        owner[(layer, value)] = name
        text = segment.get("Extent", "")
        if not text:
            continue
        try:
            numbers = [float(v) for v in text.split()]
        except ValueError:
            numbers = []
        if len(numbers) != 6 or not all(np.isfinite(v) and float(v).is_integer() for v in numbers):
            raise LabelError(f"'{path}': segment '{name}' has Extent '{text}', not six whole numbers "
                             f"(i0 i1 j0 j1 k0 k1); the file is damaged (re-save it from Slicer).")
        extent = [int(v) for v in numbers]
        if any(extent[2 * a + 1] < extent[2 * a] for a in range(3)):
            continue  # an empty segment, as Slicer writes one without a voxel
        sizes = [int(n) for n in tuple(size_xyz)[:3]]
        if any(extent[2 * a] < 0 or extent[2 * a + 1] >= sizes[a] for a in range(3)):
            raise LabelError(f"'{path}': segment '{name}' has Extent '{text}', which reaches outside the file's "
                             f"{' x '.join(str(n) for n in sizes)} voxels; the file is damaged (re-save it from "
                             f"Slicer).")


SEG_NRRD_BUILT_BYTES_PER_VOXEL = 4
"""Bytes a voxel a ``.seg.nrrd`` read builds beside its stored voxels, whatever their layers: the uint8 label map,
its two boolean masks and one layer's comparison (:func:`read_seg_nrrd_labels`)."""


def _read_image(path: Path, warnings: Optional[List[str]] = None) -> Tuple[np.ndarray, Any, Dict[str, str]]:
    """``(voxels, grid, metadata)`` of a ``.seg.nrrd``: the voxels ``(z, y, x, layers)`` (one layer: a last axis
    of 1), the ITK reader of the header or the image ITK read (``GetSize``, ``GetSpacing``, ``GetOrigin``, ``GetDirection``: ``(x, y,
    z)``, mm) and the header's key/value pairs. A gzip file's stream is checked whole (ITK's gzip NRRD reader may
    return damaged voxels without a word) and inflated once: the check's bytes are the voxels
    (:func:`~.io.itk.inflated_voxels`) unless the header needs ITK's own read. ``warnings``: the notes the NRRD
    reader gives a plain label map are added to it (no spacing, so 1 mm voxels assumed; raw or compressed data
    holding a slice or more after the voxels the header describes)."""
    from .io.itk import (_itk_numpy_dtype, _itk_reason, _quiet_itk, _sitk, check_header_dimension,
                         checked_before_voxels, inflated_voxels)

    check_segment_count(path)  # before ITK parses the header: 100,000 segments took it over 5 minutes
    check_header_dimension(path)
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with _quiet_itk():
            reader.ReadImageInformation()
    except RuntimeError as exc:
        raise_if_out_of_memory(exc, str(path))
        raise InputError(f"Cannot read '{path}' as a Slicer segmentation (.seg.nrrd): {_itk_reason(exc)}.") from None
    # the checks the CT reader makes, before any voxel is read (a 4 KB file claiming 4 GiB was allocated first; a
    # 'data file: /dev/stdin' waited for input forever), then the segment fields the MRML storage node trusts
    # held at the peak: the stored voxels (all layers), the uint8 label map, its two masks and one layer's comparison
    # (4 bytes a voxel, whatever the layers; a gzip file's inflating buffers are counted by the check's compressed
    # term). It counted two copies of the stored voxels (2 bytes a voxel for one uint8 layer, where a read allocated
    # 5.0, tracemalloc), then, until 30 Nov 2026, twice the stored bytes where more than 4: 2 per layer, where each
    # layer adds its 1 stored byte (a 4-layer 60 x 256 x 256 file was counted at 4 + 8 and peaked at 8.0, RSS)
    check_seg_nrrd_is_3d(path, tuple(reader.GetSize()))  # the CT reader's check said 'a 3D CT volume is needed'
    shape, header, stored, notes = checked_before_voxels(path, reader, copy_itemsize=SEG_NRRD_BUILT_BYTES_PER_VOXEL)
    check_not_a_colour_image(path, header.fields.get("kinds", "") if header is not None else "")
    layers = int(reader.GetNumberOfComponents())
    metadata = {key: reader.GetMetaData(key) for key in reader.GetMetaDataKeys()}
    dtype = _itk_numpy_dtype(reader.GetPixelID())
    max_label = int(np.iinfo(dtype).max) if dtype.kind in "ui" else 255
    check_segment_fields(path, metadata, shape, layers, max_label)
    try:
        with _quiet_itk():
            voxels = inflated_voxels(path, reader, header, stored, notes)
            grid = reader
            if voxels is None:  # ITK reads the voxels: a view of its image, which is returned to stay alive
                grid = reader.Execute()
                voxels = sitk.GetArrayViewFromImage(grid)
    except RuntimeError as exc:
        raise_if_out_of_memory(exc, str(path))
        raise InputError(f"Cannot read '{path}' as a Slicer segmentation (.seg.nrrd): {_itk_reason(exc)}.") from None
    if reader.GetNumberOfComponents() == 1:
        voxels = voxels[..., None]
    if dtype.kind == "f":
        check_whole_label_values(path, voxels)
    if warnings is not None:  # as a plain .nrrd label map gets them (they were dropped: a header edited to fewer
        warnings.extend(notes)  # slices, or without spacings, was read without a word)
    return voxels, grid, metadata


_WHAT_A_SEG_NRRD_HOLDS = ("a .seg.nrrd holds whole-number label values (SegmentN_LabelValue), one 3D layer per "
                          "entry of its first ('list') axis")


def check_seg_nrrd_is_3d(path: Path, size_xyz: Sequence[int]) -> None:
    """Refuse (InputError) a ``.seg.nrrd`` whose image is not 3D (``size_xyz``: the ITK reader's size, (x, y, z, ...),
    layers not counted; trailing axes of 1 dropped), in a segmentation's words: the CT reader's own check refused a
    2D one as 'a 3D CT volume is needed (NIfTI ...)'."""
    shape = [int(s) for s in size_xyz]
    while len(shape) > 3 and shape[-1] == 1:
        shape.pop()
    if len(shape) == 3:
        return
    dims = " x ".join(str(s) for s in shape)
    raise InputError(f"'{path}' is a {len(shape)}D segmentation ({dims} voxels); a segmentation of a 3D CT is "
                     f"needed: {_WHAT_A_SEG_NRRD_HOLDS}. Save the segmentation from Slicer on its 3D CT (Segmentations "
                     f"module: Export to files), or give a 3D label map (.nii.gz, .nrrd: 0 background, 1 liver, "
                     f"2 tumor).")


_COLOUR_KINDS = ("rgb-color", "rgba-color", "hsv-color", "xyz-color", "3-color", "4-color")
"""NRRD axis kinds of a colour image: ITK reads the axis as components, as a ``.seg.nrrd``'s ``list`` of layers, and
a colour image with segment fields read as all background (no segment value among its colours) without a word."""


def check_not_a_colour_image(path: Path, kinds: str) -> None:
    """Refuse (LabelError) a ``.seg.nrrd`` whose NRRD ``kinds`` field (as written, e.g. ``"RGB-color domain domain
    domain"``) names a colour axis (:data:`_COLOUR_KINDS`): a colour image (a screenshot or a coloured export), not
    segment layers. Slicer writes layers as ``list`` (a multi-layer file); ``vector`` and other kinds pass."""
    colour = [kind for kind in kinds.split() if kind.lower() in _COLOUR_KINDS]
    if colour:
        raise LabelError(f"'{path}' stores a colour image (its header's kinds: {kinds.strip()}), not segments: "
                         f"{_WHAT_A_SEG_NRRD_HOLDS}, which a colour axis is not. Save the segmentation from Slicer "
                         f"(Segmentations module: Export to files), or give a label map (0 background, 1 liver, "
                         f"2 tumor).")


def check_whole_label_values(path: Path, voxels: np.ndarray, slab: int = 16) -> None:
    """Refuse (LabelError) a floating-point ``.seg.nrrd`` (``voxels``: (z, y, x, layers)) holding a value that is not a
    whole number (or NaN): a probability map or an interpolated segmentation, whose segments matched no voxel (0.9 is
    no LabelValue 1) and read as empty without a word. Whole-number floats read as their integers (as Slicer reads
    them, by truncation), so they pass. Checked ``slab`` slices at a time (a float copy of the whole file is not
    made)."""
    for start in range(0, voxels.shape[0], slab):
        part = np.asarray(voxels[start:start + slab])
        off = part[~(part == np.floor(part))]  # a NaN too (NaN == NaN is False); infinity by the finite check
        if off.size or not np.all(np.isfinite(part)):
            example = off.flat[0] if off.size else part[~np.isfinite(part)].flat[0]
            raise LabelError(f"'{path}' holds voxel values that are not whole numbers (e.g. {float(example):g}): "
                             f"{_WHAT_A_SEG_NRRD_HOLDS}, so no segment's voxels can be told. A probability map or an "
                             f"interpolated (resampled) segmentation is no segmentation: threshold it into a label map "
                             f"(0 background, 1 liver, 2 tumor), or save the segmentation from Slicer again.")


REFERENCE_GEOMETRY_PARAMETER = "Reference image geometry"
"""Slicer's conversion parameter holding the grid a segmentation was made on (``Segmentation_ConversionParameters``
in the header): the 16 row-major IJK-to-RAS values, then the extent ``i0 i1 j0 j1 k0 k1``, ';'-separated."""


def stored_reference_grid(metadata: Dict[str, str]) -> Optional[Tuple[ImageGeometry, Tuple[int, int, int]]]:
    """``(geometry, shape_zyx)`` of the full grid a ``.seg.nrrd`` was made on (its source CT's, as Slicer and
    ``segment`` record it in :data:`REFERENCE_GEOMETRY_PARAMETER`), or None when absent or unreadable."""
    for item in metadata.get("Segmentation_ConversionParameters", "").split("&"):
        parts = item.split("|")
        if parts[0].strip() != REFERENCE_GEOMETRY_PARAMETER or len(parts) < 2:
            continue
        return reference_grid_from_text(parts[1])
    return None


def reference_grid_from_text(value: str) -> Optional[Tuple[ImageGeometry, Tuple[int, int, int]]]:
    """``(geometry, shape_zyx)`` of a :data:`REFERENCE_GEOMETRY_PARAMETER` value (the 16 row-major IJK-to-RAS values
    and the extent, ';'-separated: a ``.seg.nrrd`` header's, or a segmentation node's conversion parameter), the
    geometry's origin at the extent's first voxel; None when unreadable."""
    try:
        numbers = [float(v) for v in str(value).split(";") if v.strip()]
    except ValueError:
        return None
    if len(numbers) != 22 or not np.all(np.isfinite(numbers)):
        return None
    matrix = np.asarray(numbers[:16]).reshape(4, 4)
    i0, i1, j0, j1, k0, k1 = (int(round(v)) for v in numbers[16:])
    shape_zyx = (k1 - k0 + 1, j1 - j0 + 1, i1 - i0 + 1)
    if min(shape_zyx) < 1 or abs(np.linalg.det(matrix[:3, :3])) < 1e-9:
        return None
    matrix[:3, 3] = matrix[:3, :3] @ np.array([i0, j0, k0], dtype=float) + matrix[:3, 3]
    return ImageGeometry.from_ijk_to_ras(matrix), shape_zyx


def _all_segments_empty(segments: List[Dict[str, str]]) -> bool:
    """True when every segment's ``Extent`` (``i0 i1 j0 j1 k0 k1``) is recorded and empty (an upper bound below
    its lower one), as Slicer writes segments without a voxel; False when one is missing or unreadable."""
    for segment in segments:
        try:
            extent = [int(float(v)) for v in segment.get("Extent", "").split()]
        except ValueError:
            return False
        if len(extent) != 6 or all(extent[2 * a + 1] >= extent[2 * a] for a in range(3)):
            return False
    return bool(segments)


def _refuse_unclaimed_values(array: np.ndarray, claimed: Dict[int, List[int]], path: Path) -> None:
    """LabelError naming the voxel values of a layer of ``array`` ``(z, y, x, layers)`` that no segment claims (its
    LabelValue in that layer; ``claimed``): they were read as background without a word (a tumor stored as 3 with
    the segments at 1 and 2 measured no tumor)."""
    for layer in range(array.shape[-1]):
        voxels = array[..., layer]
        unclaimed = voxels != 0  # one byte a voxel, and one for each comparison (np.unique sorted a copy)
        for value in claimed.get(layer, []):
            unclaimed &= voxels != value
        if not unclaimed.any():
            continue
        values, counts = np.unique(voxels[unclaimed], return_counts=True)  # the stray voxels only
        listed = ", ".join(f"{int(v)} ({int(n)} voxels)" for v, n in list(zip(values, counts))[:10])
        raise LabelError(f"'{path}' has voxels of value {listed} in layer {layer}, which no segment of its header "
                         f"claims (its segments there have LabelValue {sorted(claimed.get(layer, []))}); the "
                         f"file's header and voxels disagree. Save the segmentation again from 3D Slicer, or give "
                         f"a plain label map (0 background, 1 liver, 2 tumor).")


def read_seg_nrrd_labels(path, embed_in_stored_reference: bool = True,
                         reference: Optional[CTVolume] = None) -> CTVolume:
    """Read a ``.seg.nrrd`` as a uint8 ``(z, y, x)`` label map (0 background, 1 liver, 2 tumor).

    A file cropped to its segments' extent (as Slicer may save it) is put back into the full grid it was made
    on, when ``embed_in_stored_reference`` and the header records that grid (:func:`stored_reference_grid`) on
    the same voxel lattice; else the label map is on the file's own grid. Without this, a cropped file's edge
    would pass for the scan's edge (lesions "cut by the scan's edge") and could not be compared with a
    full-size label map.

    A file whose segments are all empty (every ``SegmentN_Extent`` empty, no voxel set) has no grid of its own:
    Slicer stores it as one voxel at the origin. It reads as zeros on the grid its header records (whatever
    ``embed_in_stored_reference``), else on ``reference``'s grid (the CT it goes with); with neither, LabelError.

    ``volume.meta["warnings"]`` holds what a plain ``.nrrd`` label map's would (the header gives no spacing, so
    1 mm voxels were assumed; the file holds a slice or more after the voxels its header describes, which are not
    read), then the segments left out (also logged); ``volume.meta["segments_left_out"]`` maps each left-out
    segment's name to its voxel count.

    Raises InputError for a missing or unreadable file and LabelError when no segment is liver or tumor.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Segmentation file '{path}' does not exist; check the path.")
    notes: List[str] = []  # the NRRD reader's warnings, in the volume's as a plain label map's
    array, reader, metadata = _read_image(path, notes)  # (z, y, x, layers)
    segments = segment_table(metadata)
    if not segments:
        raise LabelError(f"'{path}' has no SegmentN_ entries in its header, so it is not a Slicer segmentation; "
                         f"give a plain label map (.nrrd, .nii.gz) instead.")
    layers = array.shape[-1]  # its shape, geometry and segment fields were checked by _read_image
    claimed = {}  # type: Dict[int, List[int]]  # layer: the LabelValues its segments give
    for index, segment in enumerate(segments):
        layer = _int_field(segment, "Layer", index if layers > 1 else 0, path)  # in range: check_segment_fields
        claimed.setdefault(layer, []).append(_int_field(segment, "LabelValue", 1, path))
    _refuse_unclaimed_values(array, claimed, path)  # before the label map and masks: at most 2 bytes a voxel more
    labels = np.zeros(array.shape[:3], dtype=np.uint8)
    masks: Dict[int, np.ndarray] = {1: np.zeros(labels.shape, bool), 2: np.zeros(labels.shape, bool)}
    ignored = []
    ignored_voxels = {}  # type: Dict[str, int]
    tumor_segments = []  # type: List[Tuple[str, int, int]]  # (name, layer, value) of each tumor segment
    elsewhere = []  # type: List[str]  # tumor segments whose names mention another organ
    for index, segment in enumerate(segments):
        label = label_of_segment(segment)
        layer = _int_field(segment, "Layer", index if layers > 1 else 0, path)  # in range: check_segment_fields
        value = _int_field(segment, "LabelValue", 1, path)
        if label is None:
            name = segment.get("Name") or segment.get("ID") or f"Segment{index}"
            ignored.append(name)
            ignored_voxels[name] = ignored_voxels.get(name, 0) + int(np.count_nonzero(array[..., layer] == value))
            continue
        masks[label] |= array[..., layer] == value
        if label == 2:
            tumor_segments.append((segment.get("Name") or segment.get("ID") or f"Segment{index}", layer, value))
            if names_tumor_of_another_organ(str(segment.get("Name") or "")):
                elsewhere.append(str(segment.get("Name")))
    from .io.itk import nrrd_space_names_patient_sides, nrrd_without_space_text

    # sides unknown, as for a plain NRRD without 'space' or with 'space: scanner-xyz' (io.itk)
    no_space = not nrrd_space_names_patient_sides(metadata.get("NRRD_space"))
    if no_space:
        notes.append(nrrd_without_space_text(path, metadata.get("NRRD_space")))
    joined = _touching_tumor_segments_text(array, masks[2], tumor_segments, path)
    if joined:
        notes.append(joined)
    if len(ignored) == len(segments):
        raise LabelError(f"'{path}' holds the segments {', '.join(repr(n) for n in ignored)}, none of them liver or "
                         f"tumor; name them 'Liver' and 'Liver tumor' (as segment writes them).")
    left_out = left_out_text(ignored, f"'{Path(path).name}'")
    if left_out:  # in the report too, not only on stderr
        log.warning("warning: %s", left_out)
    other_organ = other_organ_tumor_text(elsewhere, f"'{Path(path).name}'")
    if other_organ:  # said as the other notes are (measure prints them, evaluate records them)
        notes.append(other_organ)
    labels[masks[1]] = 1
    labels[masks[2]] = 2
    geometry = ImageGeometry(spacing=reader.GetSpacing(), origin=reader.GetOrigin(), direction=reader.GetDirection())
    volume = CTVolume(array=labels, geometry=geometry, source=str(path))
    volume.meta["format"] = "seg.nrrd"
    volume.meta["segments"] = [s.get("Name", "") for s in segments]
    if no_space:
        from .volume import ORIENTATION_ASSUMED_KEY

        volume.meta[ORIENTATION_ASSUMED_KEY] = True
    stand_in = _all_segments_empty(segments) and not labels.any()
    if stand_in:  # the grid of its one stand-in voxel is not used, so what the reader says of it does not matter
        notes = []
    if notes or left_out:
        volume.meta["warnings"] = notes + ([left_out] if left_out else [])
    if left_out:  # already on stderr: a caller that prints meta["warnings"] leaves it out (measure said it twice)
        volume.meta["logged_warnings"] = [left_out]
        # name -> voxels of each segment left out: a reference's tumor segment named 'Mass' was scored as background
        # by the held-out comparison, which read only the warning's words (its audit)
        volume.meta["segments_left_out"] = ignored_voxels
    if stand_in:
        return _empty_on_its_grid(volume, metadata, reference, path)
    grid = stored_reference_grid(metadata) if embed_in_stored_reference else None
    if grid is not None:
        from .io.conversions import check_memory_for_read

        # the header's grid, not the file's voxels, sizes this map: a 3.5 KB file naming a 2000 x 2000 x 1000 grid
        # took 4 GB before anything was checked
        check_memory_for_read(tuple(grid[1])[::-1], 1, f"{path} (its recorded reference grid)")
        full_grid = CTVolume(array=np.broadcast_to(np.uint8(0), grid[1]), geometry=grid[0], source=str(path))
        volume = embed_in_reference(volume, full_grid)
    if embed_in_stored_reference and (grid is None or tuple(volume.shape_zyx) != tuple(grid[1])) \
            and fills_its_grid(volume.array):
        volume.meta.setdefault("warnings", []).append(_cropped_grid_text(path))
    return volume


def fills_its_grid(labels_zyx: np.ndarray, margin: int = 1) -> bool:
    """Whether the labelled voxels of ``labels_zyx`` come within ``margin`` voxels of every one of its six faces, as
    in a segmentation stored cropped to its segments' extent (Slicer's default; a segmentation on a finer grid than
    its CT was stored with a voxel to spare on three faces), and as a liver and its tumors on a CT's whole grid do
    not."""
    from .metrics.surface import bounding_box

    labels = np.asarray(labels_zyx)
    box = bounding_box(labels)  # the labels' extent, without a copy of the volume (a read's memory peak is counted)
    return box is not None and all(part.start <= margin and part.stop >= size - margin
                                   for part, size in zip(box, labels.shape))


def _cropped_grid_text(path: Path) -> str:
    """The warning for a ``.seg.nrrd`` read on its own cropped grid (:func:`fills_its_grid`) because its header
    records no reference grid it can be put back into: its box's faces were taken for the scan's edges (lesions on
    them 'cut by the scan's edge', left out of the RECIST targets) without a word (the measure audit)."""
    return (f"'{path.name}' looks stored cropped to its segments' extent (they reach every face of its grid) and "
            f"records no reference grid it can be put back into (Slicer's reference image geometry), so it is read "
            f"on that crop: lesions and liver at its faces count as cut by the scan's edge. Give the CT it was made "
            f"on (measure --ct) to measure it on the scan's grid")


def _touching_tumor_segments_text(array: np.ndarray, tumor: np.ndarray, tumor_segments: List[Tuple[str, int, int]],
                                  path: Path) -> str:
    """A warning naming tumor segments whose voxels touch (26-connected, the lesions' own rule) and so read as one
    lesion; '' when there are fewer than two tumor segments or none touch. Segments a reader drew apart (Slicer's
    'Split islands to segments', 'Liver tumor -_1', 'Liver tumor -_2') became one lesion, one RECIST target,
    without a word (the lesion-report audit). ``array``: the file's ``(z, y, x, layers)`` voxels; ``tumor``: their
    union."""
    if len(tumor_segments) < 2:
        return ""
    return touching_segments_text(f"'{path.name}'", tumor, ((name, lambda l=layer, v=value: array[..., l] == v)
                                                           for name, layer, value in tumor_segments))


def touching_segments_text(where: str, tumor: np.ndarray, named_masks: Any) -> str:
    """The warning naming tumor segments of ``where`` (a quoted file or node name) that touch, '' when none do:
    ``tumor`` the ``(z, y, x)`` union of the tumor segments, ``named_masks`` ``(name, function giving the segment's
    boolean mask on that grid)`` per segment (made one at a time). Shared by the ``.seg.nrrd`` reader and the
    Slicer panel (:func:`~.mrml.touching_tumor_segments_warning`)."""
    if not tumor.any():
        return ""
    from scipy import ndimage

    parts, _ = ndimage.label(tumor, structure=np.ones((3, 3, 3), bool))
    owners = {}  # type: Dict[int, List[str]]  # part: the segments in it
    for name, mask_of in named_masks:
        for part in np.unique(parts[mask_of()]):
            if part and name not in owners.setdefault(int(part), []):
                owners[int(part)].append(name)
    groups = [names for names in owners.values() if len(names) > 1]
    if not groups:
        return ""
    shown = "; ".join(" and ".join(repr(n) for n in names[:5]) + (" ..." if len(names) > 5 else "")
                      for names in groups[:5]) + (" ..." if len(groups) > 5 else "")
    return (f"{where} has tumor segments that touch ({shown}): lesions are the connected parts of the tumor "
            f"label (26-connected), so each group is measured as one lesion. If they are separate lesions, leave "
            f"a voxel between them, or measure each segment alone")


def _empty_on_its_grid(volume: CTVolume, metadata: Dict[str, str], reference: Optional[CTVolume],
                       path: Path) -> CTVolume:
    """All-background labels for a ``.seg.nrrd`` with no voxel (``volume``: its 1-voxel stand-in grid) on the
    grid the header records, else on ``reference``'s: read as the stand-in, an empty result of ``segment`` or
    one saved by Slicer was a 1x1x1 map at the origin that measure, evaluate and followup refused."""
    grid = stored_reference_grid(metadata)
    if grid is not None:
        geometry, shape_zyx = grid
    elif reference is not None:
        geometry, shape_zyx = reference.geometry, tuple(reference.shape_zyx)
    else:
        raise LabelError(f"'{path}' holds no voxels (every segment is empty) and records no reference grid "
                         f"(Segmentation_ConversionParameters), so the grid it belongs to is unknown; give the CT it "
                         f"was made on as the reference, or re-save it from Slicer with its source volume set.")
    empty = CTVolume(array=np.zeros(shape_zyx, np.uint8), geometry=geometry, source=str(path))
    empty.meta.update(volume.meta)
    return empty


def embed_in_reference(label: CTVolume, reference: CTVolume, tolerance: float = 1e-3) -> CTVolume:
    """``label`` (a cropped segmentation) padded with background onto ``reference``'s grid when its grid is a part
    of the reference's (:func:`~LiverTumorSegLib.io.labels.place_on_reference_grid`: same voxel centres, any axis
    order, inside it); else ``label`` unchanged (the caller's geometry check then says what differs)."""
    if tuple(label.shape_zyx) == tuple(reference.shape_zyx):
        return label
    from .io.labels import place_on_reference_grid

    placed = place_on_reference_grid(label, reference, tolerance,
                                     "cropped segmentation placed into the reference grid")
    return label if placed is None else placed
