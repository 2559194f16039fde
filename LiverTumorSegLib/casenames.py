"""What a file's name says about it: its case name and whether it is a CT, a label map or a probability map.

A file's *case name* is its file name, lower-cased (composed, NFC), without the extension (.seg.nrrd, .nii.gz,
.nii, .nrrd, .nhdr,
.mha, .mhd), without one known prefix (segmentation-, volume-, LiTS's test-set test-segmentation- and test-volume-,
prediction-, pred-, pred_, label-, label_, labels-, seg-, seg_, prob-, prob_, ct-, ct_) and without any number of
known suffixes at its end (_pred, _prediction, _seg, _segmentation, _label, _labels, _labelmap, _mask, _liver,
_prob, _ct, _image, _0000, removed repeatedly; nnU-Net's channel suffix _0000 at most once, so that
liver_0000_0000.nii.gz, the CT of nnU-Net's case liver_0000, is case liver_0000, not liver). So LiTS's
segmentation-12.nii matches volume-12.nii and 12.nii.gz; after a LiTS prefix a number is read without leading zeros
(volume-012.nii matches segmentation-12.nii). A name can't say whether its one _0000 is a channel suffix
(labelsTs/liver_0000.nii.gz is case liver_0000, imagesTs/liver_0000.nii.gz the CT of case liver):
:func:`name_with_channel_suffix` gives the other reading, which ``evaluate`` pairs when the plain names don't.
``evaluate`` pairs files by it; a batch ``segment`` of a folder leaves out the files named as label or probability
maps (LiTS keeps segmentation-N beside volume-N). Accented letters are compared in Unicode's composed form (NFC), so
a name macOS wrote decomposed matches the same name typed elsewhere."""
import unicodedata
from pathlib import Path
from typing import Optional, Tuple

from .asciinumbers import is_ascii_digits
from .io.formats import READ_SUFFIXES

EXTENSIONS = (".seg.nrrd",) + READ_SUFFIXES  # .seg.nrrd first: it also ends in .nrrd
# affix -> what it says the file is ("label", "image" or "prob"); used to pick one of two files of a case
CASE_PREFIXES = {"test-segmentation-": "label", "test-volume-": "image", "segmentation-": "label",
                 "volume-": "image", "prediction-": "label", "pred-": "label", "pred_": "label", "label-": "label",
                 "label_": "label", "labels-": "label", "seg-": "label", "seg_": "label", "prob-": "prob",
                 "prob_": "prob", "ct-": "image", "ct_": "image"}
LITS_PREFIXES = ("test-segmentation-", "test-volume-", "segmentation-", "volume-")
"""Prefixes of LiTS's numbered files, whose number is read without leading zeros (``volume-01`` is case ``1``)."""
CASE_SUFFIXES = {"_pred": "label", "_prediction": "label", "_seg": "label", "_segmentation": "label",
                 "_label": "label", "_labels": "label", "_labelmap": "label", "_mask": "label", "_liver": "label",
                 "_prob": "prob", "_ct": "image", "_image": "image", "_0000": "image"}
CHANNEL_SUFFIX = "_0000"
"""nnU-Net's suffix of a case's first (CT) channel, ``imagesTr/CASE_0000.nii.gz``: removed once, not repeatedly."""


def case_key(path: Path) -> Optional[Tuple[str, Optional[str]]]:
    """``(case name, role)`` of a file (see the module docstring), or None when the extension is not an image
    type. ``role`` is what the removed affixes say the file is ("label", "image", "prob"), None when they say
    nothing or disagree; a ``.seg.nrrd`` is a label map."""
    parsed = _parse_name(path)
    return None if parsed is None else parsed[:2]


def _parse_name(path: Path) -> Optional[Tuple[str, Optional[str], bool]]:
    """``(case name, role, whether a _0000 was removed)`` of a file (:func:`case_key`), or None when the extension
    is not an image type. The name is taken in Unicode's composed form (NFC): macOS writes 'café' decomposed (NFD),
    and such a reference label map (unzipped from a Mac's archive) and the prediction a case list named 'café' were
    both listed unmatched, as "prediction(s) without reference ['café']; reference(s) without prediction ['café']"."""
    lower = unicodedata.normalize("NFC", path.name).lower()
    for ext in EXTENSIONS:
        if lower.endswith(ext):
            stem = lower[: -len(ext)]
            break
    else:
        return None
    roles = {"label"} if ext == ".seg.nrrd" else set()
    for prefix, role in CASE_PREFIXES.items():
        if stem.startswith(prefix) and len(stem) > len(prefix):
            stem = stem[len(prefix):]
            roles.add(role)
            if prefix in LITS_PREFIXES and is_ascii_digits(stem):  # volume-01 and segmentation-1: one LiTS case, as
                stem = str(int(stem))  # training's LiTS reader pairs them (they were 'without a reference')
            break
    removed = True
    channel_removed = False
    while removed:  # "_liver_seg" -> "_liver" -> ""
        removed = False
        for suffix, role in CASE_SUFFIXES.items():
            if suffix == CHANNEL_SUFFIX and channel_removed:
                continue  # liver_0000_0000: the CT of case liver_0000 (the name was 'liver')
            if stem.endswith(suffix) and len(stem) > len(suffix):
                stem = stem[: -len(suffix)]
                roles.add(role)
                channel_removed = channel_removed or suffix == CHANNEL_SUFFIX
                removed = True
                break
    return stem, (roles.pop() if len(roles) == 1 else None), channel_removed


def name_with_channel_suffix(path: Path) -> Optional[str]:
    """The case name of ``path`` were its removed ``_0000`` part of the case's name, not nnU-Net's channel suffix:
    ``liver_0000`` for ``labelsTs/liver_0000.nii.gz`` (case name ``liver``), which pairs it with the prediction
    ``liver_0000_0000.nii.gz`` that ``segment`` writes for the CT ``imagesTs/liver_0000_0000.nii.gz``. None when no
    ``_0000`` was removed (or the extension is not an image type)."""
    parsed = _parse_name(path)
    return parsed[0] + CHANNEL_SUFFIX if parsed is not None and parsed[2] else None


def case_name(path: Path) -> Optional[str]:
    """Case name of a file (see module docstring), or None when the extension is not an image type."""
    key = case_key(path)
    return None if key is None else key[0]


def named_as_label_or_probability(path: Path) -> bool:
    """Whether the name of ``path`` says it is a label map or a probability map (:func:`case_key`'s role), not a
    CT: ``segmentation-3.nii``, ``case1_seg.nii.gz``, ``prob_2.nrrd``, a ``.seg.nrrd``."""
    key = case_key(path)
    return key is not None and key[1] in ("label", "prob")
