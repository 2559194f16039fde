"""Training data sets: discovery of the public layouts, label checks, and loading of canonical cases.

Layouts (``discover_cases(root, fmt)``; ``fmt="auto"`` picks from what is on disk):

* ``lits``: ``volume-N.nii[.gz]`` + ``segmentation-N.nii[.gz]`` anywhere below ``root`` (the original
  LiTS zips and the Kaggle folders ``volume_pt1..5/`` + ``segmentations/`` both work).
* ``msd``: Medical Segmentation Decathlon Task03_Liver: ``dataset.json``, ``imagesTr/liver_N.nii.gz``,
  ``labelsTr/liver_N.nii.gz`` (macOS ``._*`` files are ignored); also an nnU-Net v2 raw data set
  (``imagesTr/CASE_0000.nii.gz``, ``labelsTr/CASE.nii.gz``), whose dataset.json ``file_ending`` may name another
  3D format the CT reader reads (``.mha``, ``.nrrd``, ...; :func:`_dataset_file_ending`).
* ``ircadb``: 3D-IRCADb-01: one folder per patient holding ``PATIENT_DICOM/`` and
  ``MASKS_DICOM/liver`` + ``MASKS_DICOM/livertumor*`` (DICOM masks merged to 0/1/2).
* ``csv``: a ``.csv`` with columns ``image``, ``label`` and optional ``patient``, ``case``
  (relative paths are relative to the CSV's folder; UTF-8, or UTF-16 with a byte-order mark, separated by comma,
  tab or semicolon, as Excel and PowerShell save it). ``root`` may be the CSV or a folder with one CSV.

``load_case(case, label_map)`` returns the canonical CT and labels ``(z, y, x)`` uint8 in {0, 1, 2},
after checking the label's shape, geometry and values against the image (a label whose header alone is flipped
against the CT, its voxels fitting only in the CT's own order, is refused; a liver on the patient's left is warned
about).
"""
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple, Union

import numpy as np

from ..asciinumbers import is_ascii_digits, is_ascii_integer
from ..errors import InputError, LabelError
from ..fileutil import is_hidden_name, read_csv_rows, read_text_file, similar_names_hint, tree_paths
from ..io.formats import _FILE_FORMATS_TEXT, ITK_SUFFIXES, NIFTI_SUFFIXES
from ..io.labels import ANY_LABEL_VALUE, label_value_counts, remap_labels
from ..resources import expand_home
from ..volume import CTVolume

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
NIFTI_RE = r"\.nii(\.gz)?$"
_LITS_NAME = re.compile(r"^(volume|segmentation)-(\d+)" + NIFTI_RE, re.IGNORECASE)
"""A LiTS file name, in any letter case (``Volume-3.nii``, ``SEGMENTATION-3.NII.GZ``: copies renamed on Windows or
macOS, whose disks ignore case, were left out without a word on Linux)."""


@dataclass(frozen=True)
class Case:
    """One training case. ``label_path`` is a file, or for IRCADb the patient's ``MASKS_DICOM`` folder."""

    case_id: str
    patient_id: str
    image_path: str
    label_path: str
    layout: str = "csv"


# --------------------------------------------------------------------------- discovery
def discover_cases(root: PathLike, fmt: str = "auto", warn_patients: bool = True) -> List[Case]:
    """List the cases of the data set at ``root`` (sorted by case id). Raises :class:`InputError` if none.
    ``warn_patients=False``: a CSV's rows without a patient id are not warned about (they matter to a training
    split, not to a benchmark that scores each case alone)."""
    root = Path(root)
    if not root.exists():
        # (it said "pass --data with a data folder or CSV" to a user who had, and to discover_cases's callers)
        raise InputError(f"Training data '{root}' does not exist; check the path (a data folder or a CSV of cases).")
    if fmt == "auto":
        fmt = detect_format(root)
    finders = {"lits": _discover_lits, "msd": _discover_msd, "ircadb": _discover_ircadb, "csv": _discover_csv}
    if fmt not in finders:
        raise InputError(f"Unknown data format '{fmt}'; use one of auto, {', '.join(finders)}.")
    cases = _discover_csv(root, warn_patients) if fmt == "csv" else finders[fmt](root)
    if not cases:
        raise InputError(f"No {fmt} cases found in '{root}'.{_lits_test_set_hint(root)} {_LAYOUT_HELP}")
    _refuse_repeated_rows(cases, root)  # before the id check, whose advice (a 'case' column) trained them twice
    ids = [c.case_id for c in cases]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise InputError(f"Case ids {duplicates} occur more than once in '{root}'; give each case a unique id "
                         f"(CSV: a 'case' column).")
    _refuse_repeated_images(cases, root)
    _refuse_crossed_pairs(cases, root)
    return sorted(cases, key=lambda c: _natural_key(c.case_id))


def _same_file_key(path: PathLike) -> str:
    """One key for the names of one file (links, ``..``, letter case where the system ignores it)."""
    return os.path.normcase(str(Path(path).resolve()))


def _shared_across_patients(cases: Sequence[Case], path_of) -> Optional[Tuple[Case, Case]]:
    """The first two cases of different patients whose ``path_of(case)`` is one file (:func:`_same_file_key`), or
    None."""
    seen: Dict[str, Case] = {}
    for case in cases:
        first = seen.setdefault(_same_file_key(path_of(case)), case)
        if first is not case and first.patient_id != case.patient_id:
            return first, case
    return None


def _image_listed_twice(root: Path, first: Case, case: Case) -> str:
    return (f"Image '{case.image_path}' is listed as case '{first.case_id}' (patient '{first.patient_id}') and as "
            f"case '{case.case_id}' (patient '{case.patient_id}') in '{root}'; list each CT under one patient (it "
            f"could otherwise be trained on and validated on at the same time). If both rows are that one "
            f"patient's (e.g. the same scan with two label files), give them the same patient id (CSV column "
            f"'patient').")


def _label_listed_twice(root: Path, first: Case, case: Case) -> str:
    return (f"Label '{case.label_path}' is listed for case '{first.case_id}' and for case '{case.case_id}' in "
            f"'{root}' (patients '{first.patient_id}' and '{case.patient_id}'); each CT needs its own label file, "
            f"so one of the two rows names the wrong file. If both CTs are phases of one patient on one grid, give "
            f"them the same patient id (CSV column 'patient').")


def _refuse_repeated_rows(cases: Sequence[Case], root: Path) -> None:
    """Refuse two cases of one patient with one image and one label file (a repeated row): the CT would be trained on
    twice as often. Asked to give the cases unique ids, a user did so (a 'case' column) and the run trained on the
    repeated CT without a word. (Of two patients: :func:`_refuse_repeated_images` names the leak.)"""
    seen: Dict[Tuple[str, str, str], Case] = {}
    for case in cases:
        key = (_same_file_key(case.image_path), _same_file_key(case.label_path), str(case.patient_id))
        first = seen.setdefault(key, case)
        if first is not case:
            raise InputError(f"Cases '{first.case_id}' and '{case.case_id}' of '{root}' are one image "
                             f"('{case.image_path}') with one label ('{case.label_path}'): a repeated row, which "
                             f"would train that CT twice as often. Remove the repeated row.")


def _refuse_repeated_images(cases: Sequence[Case], root: Path) -> None:
    """Refuse one CT listed as cases of two patients: it could be trained on and validated on at once, and the
    validation would measure a training case. One patient's rows may share an image (one scan with two readers'
    labels): they stay on one side of every split, as :func:`refuse_identical_images` allows for copies. Likewise
    one label file for two patients' CTs: a copy-paste slip that trains one CT on another's labels (phases of one
    examination on one grid share their labels; they stay in one split)."""
    for path_of, message in ((lambda case: case.image_path, _image_listed_twice),
                             (lambda case: case.label_path, _label_listed_twice)):
        pair = _shared_across_patients(cases, path_of)
        if pair:
            raise InputError(message(root, *pair))


def _refuse_crossed_pairs(cases: Sequence[Case], root: Path) -> None:
    """Refuse a case whose label is another patient's by its name or its folder (:func:`_crossed_by_name`,
    :func:`_crossed_by_folder`): a dataset.json whose "training" entries were swapped or shifted (image liver_1
    with label liver_0), or a CSV row with another row's label, trained each CT on another CT's label without a
    word wherever the two grids had one size. Rows of one patient may share a label (phases on one grid)."""
    for finder in (_crossed_by_name, _crossed_by_folder):
        crossed = finder(cases)
        if crossed:
            case, owner, whose = crossed
            raise InputError(
                f"Case '{case.case_id}' pairs image '{case.image_path}' with label '{case.label_path}', whose {whose} "
                f"is that of the image '{owner.image_path}' (case '{owner.case_id}', another patient): the images "
                f"and labels of '{root}' are probably paired crosswise (swapped or shifted entries in dataset.json's "
                f"\"training\" list or in the CSV), which would train each CT on another CT's label. Pair each image "
                f"with the label of its own case, and run again.")


def _crossed_by_name(cases: Sequence[Case]) -> Optional[Tuple[Case, Case, str]]:
    """``(case, the other patient's case, "name")`` for the first case whose label file is named as another
    patient's image and not as its own (names compared as ``evaluate`` pairs files,
    :func:`~..casenames.case_name`: ``liver_3`` in imagesTr/ and labelsTr/, ``volume-3`` and ``segmentation-3``,
    ``p3_ct`` and ``p3_seg``); None when there is none. Labels named otherwise (``seg.nii.gz``) are not judged."""
    from ..casenames import case_name, name_with_channel_suffix

    images_named: Dict[str, List[Case]] = {}
    for case in cases:
        images_named.setdefault(case_name(Path(case.image_path)) or "", []).append(case)
    for case in cases:
        label_name = case_name(Path(case.label_path))  # None for a folder (3D-IRCADb's MASKS_DICOM)
        # labelsTr/liver_0000.nii.gz is named 'liver' and, with its _0000, 'liver_0000' as its CT liver_0000_0000
        label_names = [name for name in (label_name, name_with_channel_suffix(Path(case.label_path))) if name]
        if not label_names or case_name(Path(case.image_path)) in label_names:
            continue
        owners = [owner for name in label_names for owner in images_named.get(name, [])]
        if owners and all(owner.patient_id != case.patient_id for owner in owners):
            return case, owners[0], "name"
    return None


def _crossed_by_folder(cases: Sequence[Case]) -> Optional[Tuple[Case, Case, str]]:
    """``(case, the other patient's case, "folder")`` for the first case whose label lies in the folder of another
    patient's image and not in its own image's, while that patient's case takes its label from outside its folder
    too (one folder per scan, ``P0/ct.nii.gz`` + ``P0/seg.nii.gz``, where names cannot tell); None when there is none.
    Layouts that keep labels apart from their images (imagesTr/ + labelsTr/, images/ + labels/) hold no image in a
    label's folder, so none of their cases is judged. A CT kept elsewhere whose label was saved beside another
    patient's correctly paired scan is not judged. Judged only where most cases kept image and label together, a
    label column shifted by one row (every row crossed) or two rows swapped passed (the preprocessing audit)."""
    def folder(path: str) -> str:
        return _same_file_key(Path(path).parent)

    apart = [case for case in cases if folder(case.label_path) != folder(case.image_path)]
    if not apart:
        return None
    images_in: Dict[str, List[Case]] = {}
    for case in cases:
        images_in.setdefault(folder(case.image_path), []).append(case)
    for case in apart:
        owners = images_in.get(folder(case.label_path), [])
        if owners and all(owner.patient_id != case.patient_id and owner in apart for owner in owners):
            return case, owners[0], "folder"  # its folder's own case took a label from elsewhere too: crossed
    return None


_LAYOUT_HELP = ("Expected one of: LiTS (volume-N.nii + segmentation-N.nii), MSD Task03_Liver (dataset.json, "
                "imagesTr/, labelsTr/), an nnU-Net v2 raw data set (imagesTr/CASE_0000.nii.gz, labelsTr/CASE.nii.gz), "
                "3D-IRCADb-01 (<patient>/PATIENT_DICOM + <patient>/MASKS_DICOM/liver), "
                "or a CSV with columns image,label[,patient][,case].")


LAYOUT_NAMES = {"msd": "MSD / nnU-Net (dataset.json, imagesTr/)", "lits": "LiTS (volume-N, segmentation-N)",
                "ircadb": "3D-IRCADb (PATIENT_DICOM folders)"}
"""The folder layouts :func:`detect_format` recognises, as a warning names them."""


def _layouts_found(root: Path) -> List[str]:
    """The folder layouts ``root`` holds data of, in the order :func:`detect_format` prefers them (msd, lits,
    ircadb). Files in an MSD data set's own subfolders (imagesTr/ holding LiTS names) are its data, not LiTS's."""
    found = []
    if (root / "dataset.json").is_file() or (root / "imagesTr").is_dir():
        found.append("msd")
    paths = [p for p in tree_paths(root)
             if not (found and p.relative_to(root).parts[:1] and p.relative_to(root).parts[0] in _MSD_SUBFOLDERS)]
    if any(_LITS_NAME.match(p.name) and p.name[:1] in "vV" and _in_visible_tree(p, root)
           for p in paths):  # Volume-N.NII too: the glob 'volume-*.nii*' is case-sensitive on Linux
        found.append("lits")
    if any(p.name == "PATIENT_DICOM" and p.is_dir() and _in_visible_tree(p, root) for p in paths):
        found.append("ircadb")
    return found


def detect_format(root: PathLike) -> str:
    """Guess the layout of ``root``: csv, msd, lits or ircadb. Raises :class:`InputError` if none fits."""
    root = Path(root)
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return "csv"
        raise InputError(f"Training data '{root}' is a file but not a .csv. {_LAYOUT_HELP}")
    layouts = _layouts_found(root)
    found = layouts[0] if layouts else None
    if found:
        _warn_unread_csvs(root, found)
        if len(layouts) > 1:  # 3D-IRCADb patients beside LiTS volumes were left out without a word (the audit);
            # said once a run (crossval lists the cases for every fold)
            _warn_once(str(root), f"'{root}' holds data of the "
                       f"{' and '.join(LAYOUT_NAMES[name] for name in layouts[1:])} layout(s) too, which are not read: "
                       f"only its {LAYOUT_NAMES[found]} data is (one layout per --data). Train on each data set's "
                       f"folder apart, or list every case in a CSV (columns image,label[,patient]) to train on them "
                       f"together.")
        return found
    if any(p.name == "PATIENT_DICOM.zip" and _in_visible_tree(p, root) for p in tree_paths(root)):
        raise InputError(f"'{root}' holds zipped 3D-IRCADb folders (PATIENT_DICOM.zip); unzip PATIENT_DICOM.zip "
                         f"and MASKS_DICOM.zip in each patient folder first.")
    csvs = [p for p in root.glob("*.csv") if _visible(p)]
    if len(csvs) == 1:
        return "csv"
    if len(csvs) > 1:
        raise InputError(f"'{root}' holds several CSV files ({', '.join(p.name for p in csvs)}); pass the one "
                         f"to use as --data.")
    raise InputError(f"Cannot tell the layout of '{root}'.{_msd_folder_hint(root) or _lits_test_set_hint(root)} "
                     f"{_LAYOUT_HELP}")


_LITS_TEST_NAME = re.compile(r"^test-volume-\d+" + NIFTI_RE, re.IGNORECASE)


def _lits_test_set_hint(root: Path) -> str:
    """A note when ``root`` holds LiTS test-set volumes (``test-volume-N.nii``), which come without labels (the
    challenge kept them): given as training data, they were answered with the list of layouts only. '' otherwise."""
    if not root.is_dir():
        return ""
    found = sorted(p.name for p in tree_paths(root) if _LITS_TEST_NAME.match(p.name) and _in_visible_tree(p, root))
    if not found:
        return ""
    shown = ", ".join(found[:3]) + (" ..." if len(found) > 3 else "")
    return (f" It holds {len(found)} LiTS test-set volume(s) ({shown}), which come without labels: training needs "
            f"LiTS's training volumes (volume-N.nii with segmentation-N.nii, 'Training Batch 1' and '2').")


_MSD_SUBFOLDERS = ("imagesTr", "labelsTr", "imagesTs", "labelsTs")


def _msd_folder_hint(root: Path) -> str:
    """Where the MSD / nnU-Net data set is when ``root`` is one of its subfolders (``imagesTr/``) or the folder
    that holds it (the folder ``Task03_Liver.tar`` was unpacked into, ``nnUNet_raw/``): '' when neither. Such a
    folder was answered with the list of layouts only, though LiTS and 3D-IRCADb-01 are found below the folder
    given and the data set was one level away."""
    if root.name in _MSD_SUBFOLDERS and (root.parent / "imagesTr").is_dir():
        return (f" It is the {root.name}/ folder of an MSD / nnU-Net data set: pass that data set's folder "
                f"'{root.parent}' as --data.")
    try:
        below = sorted(p for p in root.iterdir() if _visible(p) and (p / "imagesTr").is_dir())
    except OSError:
        return ""
    if not below:
        return ""
    names = ", ".join(f"'{p.name}'" for p in below[:5]) + (" ..." if len(below) > 5 else "")
    return (f" It holds the MSD / nnU-Net data set folder(s) {names}: pass one of them as --data (e.g. "
            f"'{below[0]}'), the folder holding imagesTr/ and labelsTr/.")


def _warn_unread_csvs(root: Path, layout: str) -> None:
    """Warn when the data folder ``root``, read as ``layout``, also holds CSV files: a list of the cases with their
    patient ids kept beside the images was left unread without a word, and scans of one patient that it grouped
    could be split between training and validation."""
    csvs = sorted(p.name for p in root.glob("*.csv") if _visible(p) and p.is_file())
    key = (os.path.normcase(str(root.resolve())), "unread: " + "|".join(csvs))
    if csvs and key not in _WARNED_CSVS:  # said once per process: crossval lists the cases again for each fold
        _WARNED_CSVS.add(key)
        log.warning("warning: '%s' is read as the %s layout; its CSV file(s) %s are not read (nor their patient "
                    "ids). To train on a CSV's pairs and patient ids, pass the CSV itself as --data.", root, layout,
                    ", ".join(csvs[:5]) + (" ..." if len(csvs) > 5 else ""))


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _in_visible_tree(path: Path, root: Path) -> bool:
    """False for a path below ``root`` inside a hidden folder or a ``__MACOSX`` copy (macOS zip archives carry
    one: the same tree again, holding ``._*`` resource files)."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        parts = path.parts
    return not any(is_hidden_name(part) for part in parts)


def _natural_key(text: str):
    """``text`` split into runs of ASCII digits (compared as numbers: case2 before case10) and the rest. ASCII only:
    ``str.isdigit`` is also true of '²', which ``int`` refuses (a file named 'x1²' stopped the listing)."""
    return [int(t) if is_ascii_digits(t) else t for t in re.split(r"([0-9]+)", text)]


def _discover_lits(root: Path) -> List[Case]:
    volumes: Dict[str, Path] = {}
    labels: Dict[str, Path] = {}
    for path in tree_paths(root):  # any letter case (_LITS_NAME)
        if not _in_visible_tree(path, root):
            continue
        m = _LITS_NAME.match(path.name)
        if not m:
            continue
        target = volumes if m.group(1).lower() == "volume" else labels
        number = str(int(m.group(2)))  # volume-1 and volume-01 are one case number
        if number in target:
            raise InputError(f"LiTS case {number} appears twice: '{target[number]}' and '{path}'. "
                             f"Remove the duplicate.")
        target[number] = path
    missing = sorted(set(volumes) - set(labels), key=int)
    if missing:
        raise InputError(f"LiTS volumes without a segmentation-N.nii: cases {missing[:10]} in '{root}'. "
                         f"Add the segmentation files (Kaggle: the 'segmentations' folder) or remove those volumes.")
    orphans = sorted(set(labels) - set(volumes), key=int)
    if orphans:
        raise InputError(f"LiTS segmentations without a volume-N.nii: cases {orphans[:10]} in '{root}'.")
    return [Case(f"lits-{n}", f"lits-{n}", str(volumes[n]), str(labels[n]), "lits") for n in volumes]


@dataclass(frozen=True)
class _FileEnding:
    """How the image and label files of an MSD / nnU-Net data set end (:func:`_dataset_file_ending`): ``pattern``,
    a regular expression without ``$``; ``text``, the ending as messages name it."""

    pattern: str
    text: str

    @property
    def name_re(self) -> str:
        """A file name of the data set: ``liver_3.nii.gz``, ``case_0000.mha``."""
        return self.pattern + "$"

    @property
    def channel_re(self) -> str:
        """An nnU-Net image name ``CASE_XXXX<ending>``: group 1 the channel, group 2 the ending
        (:data:`NNUNET_CHANNEL_RE` for NIfTI)."""
        return r"_(\d{4})(" + self.pattern + r")$"


_NIFTI_ENDING = _FileEnding(r"\.nii(?:\.gz)?", ".nii.gz")
"""NIfTI, compressed or not: MSD's files, and nnU-Net's when dataset.json gives no other ``file_ending``."""
NNUNET_CHANNEL_RE = _NIFTI_ENDING.channel_re
"""nnU-Net v2's image naming in imagesTr: ``CASE_XXXX.nii.gz`` with XXXX the channel (0000 for CT)."""


def _dataset_file_ending(root: Path, info: Dict[str, Any]) -> _FileEnding:
    """The file ending of the MSD / nnU-Net data set ``root`` whose dataset.json is ``info``: its ``file_ending``
    (nnU-Net v2) where that is a 3D format the CT reader reads (NIfTI, NRRD, MetaImage), else NIfTI when it gives
    none (MSD). A data set with ``"file_ending": ".mha"`` was refused as holding "no .nii/.nii.gz image" though
    its images are read like any ``.mha``. An ending the reader cannot read (nnU-Net's ``.png``, ``.tif``) is an
    InputError naming it and what to do."""
    ending = info.get("file_ending")
    if ending is None or ending in NIFTI_SUFFIXES:
        return _NIFTI_ENDING if ending is None else _FileEnding(_NIFTI_ENDING.pattern, ending)
    if isinstance(ending, str) and ending in ITK_SUFFIXES:
        return _FileEnding(re.escape(ending), ending)
    raise InputError(f"'{root / 'dataset.json'}' gives \"file_ending\": {json.dumps(ending)}; the images and "
                     f"labels of a data set are read as 3D {_FILE_FORMATS_TEXT} files (\"file_ending\" one of "
                     f"{', '.join(NIFTI_SUFFIXES + ITK_SUFFIXES)}). Convert the cases to 3D volumes in one of "
                     f"those formats, with their spacing and orientation, and set \"file_ending\" to match.")


def _read_dataset_json(root: Path) -> Dict[str, Any]:
    """The MSD / nnU-Net ``dataset.json`` of ``root`` as a dict ({} when there is none; read by
    :func:`~..fileutil.read_text_file`, so also UTF-16 or with a byte-order mark, as an editor on Windows may save
    it); InputError when it is not a JSON object."""
    manifest = root / "dataset.json"
    if not manifest.is_file():
        return {}
    from ..fileutil import json_loads_noting_repeats

    try:  # (JSON nested thousands deep was an "internal error: RecursionError" with json.loads)
        info = json_loads_noting_repeats(read_text_file(manifest, "Data set manifest"))[0]
    except ValueError as exc:
        raise InputError(f"'{manifest}' is not valid JSON: {exc}") from None
    if not isinstance(info, dict):
        raise InputError(f"'{manifest}' must hold a JSON object (MSD / nnU-Net dataset.json).")
    return info


def _discover_msd(root: Path) -> List[Case]:
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    if not images_dir.is_dir() or not labels_dir.is_dir():
        raise InputError(f"MSD data set '{root}' needs both imagesTr/ and labelsTr/ folders "
                         f"(found imagesTr: {images_dir.is_dir()}, labelsTr: {labels_dir.is_dir()})."
                         f"{_msd_folder_hint(root)}")
    pairs: List[Tuple[Path, Path]] = []
    manifest = root / "dataset.json"
    info = _read_dataset_json(root)
    ending = _dataset_file_ending(root, info)
    if "training" in info:  # MSD: the manifest lists the pairs (nnU-Net v2's dataset.json has no such list)
        training = info.get("training")
        if not isinstance(training, list):
            raise InputError(f"'{manifest}': \"training\" must be a list of {{\"image\": ..., \"label\": ...}} "
                             f"entries (MSD dataset.json); delete dataset.json to pair imagesTr/ with labelsTr/ by "
                             f"file name.")
        for number, item in enumerate(training, start=1):
            if not (isinstance(item, dict) and isinstance(item.get("image"), str)
                    and isinstance(item.get("label"), str)):
                raise InputError(f"'{manifest}': entry {number} of \"training\" must be an object with the strings "
                                 f"\"image\" and \"label\" (paths relative to the data set), got {str(item)[:120]}.")
            pairs.append((_listed_nifti(root, item["image"]), _listed_nifti(root, item["label"])))
        _refuse_nnunet_v1_naming(pairs, ending, manifest)  # before the unlisted warning: its CASE_0000 files
        listed = {image for image, _ in pairs}
        unlisted = sorted(p.name for p in images_dir.iterdir()
                          if _visible(p) and re.search(ending.name_re, p.name) and p.resolve() not in listed)
        if unlisted:
            log.warning("warning: %d image(s) in '%s' are not listed in dataset.json's \"training\" entries and are "
                        "not used: %s%s. Add them to dataset.json (or delete dataset.json to use every "
                        "imagesTr/labelsTr pair).", len(unlisted), images_dir, ", ".join(unlisted[:10]),
                        " ..." if len(unlisted) > 10 else "")
    else:
        other_channels = []
        for image in sorted(images_dir.iterdir()):
            if not (_visible(image) and re.search(ending.name_re, image.name)):
                continue
            channel = re.search(ending.channel_re, image.name)
            if channel is None or (labels_dir / image.name).is_file():  # MSD: the label has the image's name
                pairs.append((image, labels_dir / image.name))
            elif channel.group(1) == "0000":  # nnU-Net v2: CASE_0000.nii.gz -> labelsTr/CASE.nii.gz
                pairs.append((image, labels_dir / re.sub(ending.channel_re, r"\2", image.name)))
            else:
                other_channels.append(image.name)
        if other_channels:
            log.warning("warning: %d nnU-Net channel file(s) other than _0000 in '%s' are not used (the networks "
                        "take one CT channel): %s%s", len(other_channels), images_dir, ", ".join(other_channels[:5]),
                        " ..." if len(other_channels) > 5 else "")
    if not pairs:
        others = sorted(p.name for p in images_dir.iterdir() if _visible(p) and p.is_file()
                        and not re.search(ending.name_re, p.name))
        if others:
            raise InputError(_no_image_of_ending_text(images_dir, others, ending, "file_ending" in info))
    # the data audit: 'case_002_0000.NII.GZ' was dropped without a word (LiTS names are read in any case), and a
    # dataset.json naming 5 training cases with 2 pairs there was taken as it was (nnU-Net's own check refuses it)
    cased = sorted(p.name for p in images_dir.iterdir() if _visible(p) and not re.search(ending.name_re, p.name)
                   and re.search(ending.name_re, p.name, flags=re.IGNORECASE))
    if cased:
        log.warning("warning: %d file(s) in '%s' end in %s in other letter case and are not used: %s%s. Rename them "
                    "with the lower-case ending.", len(cased), images_dir, ending.text, ", ".join(cased[:5]),
                    " ..." if len(cased) > 5 else "")
    stated = info.get("numTraining")
    if isinstance(stated, int) and not isinstance(stated, bool) and stated != len(pairs):
        log.warning("warning: '%s' says numTraining %d, but %d image/label pair(s) were found in '%s': a copy that "
                    "was cut short, or files left out (see the warnings above); check the data set.", manifest,
                    stated, len(pairs), images_dir)
    _check_labels_without_image(labels_dir, pairs, listed_in_manifest="training" in info, ending=ending)
    cases = []
    for image, label in pairs:
        if not image.is_file():
            raise InputError(f"MSD image '{image}' listed in dataset.json is missing. Restore it, or remove its "
                             f"entry from dataset.json's \"training\" list.")
        if not label.is_file():
            raise InputError(f"MSD label '{label}' for image '{image.name}' is missing in labelsTr/ (MSD: the "
                             f"image's own name; nnU-Net v2: CASE{ending.text} for CASE_0000{ending.text}).")
        case_id = re.sub(ending.name_re, "", label.name)  # MSD: the image's name; nnU-Net v2: without _0000
        cases.append(Case(case_id, case_id, str(image), str(label), "msd"))
    return cases


def _no_image_of_ending_text(images_dir: Path, others: Sequence[str], ending: _FileEnding, given: bool) -> str:
    """The refusal of an imagesTr/ holding no image of the data set's file ending but the files ``others``;
    ``given``: whether dataset.json names the ending (``file_ending``), else NIfTI was assumed."""
    shown = f"{', '.join(others[:3])}{' ...' if len(others) > 3 else ''}"
    if given:
        return (f"'{images_dir}' holds no {ending.text} image (dataset.json's \"file_ending\") but {len(others)} "
                f"other file(s) ({shown}). Set \"file_ending\" to the images' ending, or convert them to it.")
    return (f"'{images_dir}' holds no .nii/.nii.gz image but {len(others)} other file(s) ({shown}); an MSD / "
            f"nnU-Net folder whose dataset.json gives no \"file_ending\" is read as NIfTI. For images in another 3D "
            f"format the reader reads (.nrrd, .nhdr, .mha, .mhd), give dataset.json the nnU-Net v2 key "
            f"\"file_ending\" (e.g. \".mha\"); otherwise list the pairs in a CSV (columns image,label) and pass it "
            f"as --data.")


def _refuse_nnunet_v1_naming(pairs: Sequence[Tuple[Path, Path]], ending: "_FileEnding", manifest: Path) -> None:
    """InputError when dataset.json lists an image ``CASE`` that is missing while imagesTr/ holds ``CASE_0000``
    (nnU-Net v1's naming), before any other word about the listing: every such file was first called 'not listed in
    dataset.json and not used' in a warning, then the error said why (the data-side audit)."""
    for image, _ in pairs:
        if image.is_file():
            continue
        channel_file = image.with_name(re.sub(ending.name_re, r"_0000\g<0>", image.name))
        if channel_file.is_file():  # nnU-Net v1: dataset.json names CASE, the file is CASE_0000
            raise InputError(f"dataset.json lists '{image.name}', but imagesTr/ holds '{channel_file.name}': "
                             f"nnU-Net v1 naming. Rename or delete '{manifest}' so that CASE_0000 images pair with "
                             f"labelsTr/CASE labels by file name.")


def _listed_nifti(root: Path, listed: str) -> Path:
    """The file a dataset.json entry names (``listed``, relative to ``root``), resolved; where it is missing but the
    same name with the other NIfTI compression exists (``liver_0.nii`` for ``liver_0.nii.gz``: a data set
    decompressed with gunzip, as some users do for faster reading), that file. Every listed case of a gunzipped
    MSD Task03 was refused as missing and named as unlisted at once."""
    path = (root / listed).resolve()
    if path.exists():
        return path
    other = re.sub(r"\.nii$", ".nii.gz", path.name) if path.name.endswith(".nii") else \
        re.sub(r"\.nii\.gz$", ".nii", path.name)
    return path.with_name(other) if path.with_name(other).is_file() else path


def _check_labels_without_image(labels_dir: Path, pairs: Sequence[Tuple[Path, Path]],
                                listed_in_manifest: bool, ending: _FileEnding = _NIFTI_ENDING) -> None:
    """Label files in ``labelsTr/`` that no pair uses: their CTs are missing (an interrupted copy or extraction),
    and training would quietly use fewer cases. Paired by file name (no ``training`` list), that is an
    InputError naming them, as LiTS's segmentations without a volume are; with dataset.json's ``training`` list,
    which chooses the cases, a warning (a label whose image is unlisted is named by the unlisted-image warning).
    ``ending``: how the data set's files end (:func:`_dataset_file_ending`)."""
    used = {_same_file_key(label) for _, label in pairs}
    images_dir = labels_dir.parent / "imagesTr"
    orphans = []
    for label in sorted(labels_dir.iterdir()):
        if not (_visible(label) and re.search(ending.name_re, label.name)) or _same_file_key(label) in used:
            continue
        nnunet_image = re.sub(ending.name_re, r"_0000\g<0>", label.name)
        if listed_in_manifest and ((images_dir / label.name).is_file() or (images_dir / nnunet_image).is_file()):
            continue  # its image is there, only not listed: named by the unlisted-image warning
        orphans.append(label.name)
    if not orphans:
        return
    shown = ", ".join(orphans[:10]) + (" ..." if len(orphans) > 10 else "")
    if listed_in_manifest:
        log.warning("warning: %d label(s) in '%s' have no image in imagesTr/ and are not listed in dataset.json's "
                    "\"training\" entries, so they are not used: %s. Restore their images (and list them) if those "
                    "cases belong to the data set.", len(orphans), labels_dir, shown)
        return
    raise InputError(f"{len(orphans)} label(s) in '{labels_dir}' have no image in imagesTr/ (MSD: the same file "
                     f"name; nnU-Net v2: CASE_0000{ending.text} for labelsTr/CASE{ending.text}): {shown}. Restore "
                     f"the missing images, or remove those labels.")


def check_dataset_labels(root: PathLike, fmt: str = "auto", label_map: Optional[Dict[Any, Any]] = None) -> None:
    """Refuse an MSD / nnU-Net data set whose ``dataset.json`` says its label values mean something other than
    0 background, 1 liver, 2 liver tumor (e.g. nnU-Net's ``{"tumor": 1, "liver": 2}``, or MSD Task08's
    ``{"1": "Vessel", "2": "Tumour"}``): trained as they are, a swapped data set teaches the liver as tumor
    without any other check noticing. A ``label_map`` (``--label-map``) is the user's own reading and is not
    second-guessed; a dataset.json without ``labels`` is not judged. Both MSD (``{"1": "liver"}``) and nnU-Net
    v2 (``{"liver": 1}``, regions ``{"liver": [1, 2]}``) forms are read, and a list of names (``["background",
    "liver", "tumor"]``) as names of the values 0, 1, 2 (:func:`_labels_of_a_list`)."""
    root = Path(root)
    if label_map or not root.is_dir() or (fmt not in ("auto", "msd")) or not (root / "dataset.json").is_file():
        return
    labels = _read_dataset_json(root).get("labels")
    if isinstance(labels, list):
        labels = _labels_of_a_list(root / "dataset.json", labels)
    if not isinstance(labels, dict) or not labels:
        return
    names: Dict[int, List[str]] = {}
    for key, value in labels.items():
        if isinstance(value, (str,)) and is_ascii_integer(str(key).strip()):  # MSD: {"1": "liver"}
            names.setdefault(int(key), []).append(value)
        else:  # nnU-Net v2: {"liver": 1} or a region {"liver": [1, 2]}
            for number in (value if isinstance(value, list) else [value]):
                if isinstance(number, int) and not isinstance(number, bool):
                    names.setdefault(number, []).append(str(key))
    from ..segnrrd import names_liver, names_tumor

    def said(number: int) -> str:
        return " / ".join(names.get(number, [])) or "nothing"

    liver_ok = all(names_liver(n) for n in names.get(1, ["liver"]))
    tumor_ok = any(names_tumor(n) for n in names.get(2, ["tumor"]))
    extra = sorted(n for n in names if n not in (0, 1, 2))
    if liver_ok and tumor_ok and not extra:
        return
    meaning = ", ".join(f"{number} = {said(number)}" for number in sorted(names))
    suggested = _label_map_from_names(names)
    example = (f"here '{json.dumps(suggested)}', as its \"labels\" name them" if suggested else
               "e.g. '{\"1\": 2, \"2\": 1}' for a data set with 1 = tumor and 2 = liver")
    ignored = sorted(number for number, said_as in names.items() if any(n.strip().lower() == "ignore" for n in said_as))
    note = (f" Its 'ignore' value ({', '.join(map(str, ignored))}) marks voxels left unannotated (nnU-Net); training "
            f"has no such value, so they would be trained as background: use this data set only if they are "
            f"background." if ignored else "")
    raise InputError(f"'{root / 'dataset.json'}' says its label values mean {meaning}; training needs 1 = liver "
                     f"and 2 = liver tumor. Pass --label-map to say which values are liver and tumor ({example}; "
                     f"values left out become background), or fix dataset.json's \"labels\" if they are wrong.{note}")


def _labels_of_a_list(manifest: Path, labels: List[Any]) -> Dict[str, Any]:
    """dataset.json's ``"labels"`` given as a list of names, read as MSD's ``{"0": name, "1": name, ...}`` (the
    list's index is the label value). It was not checked at all, so ``["background", "tumor", "liver"]`` trained
    the liver as tumor without a word. A list holding anything but names (numbers, lists) says no value's meaning
    and is refused (InputError), naming the forms that do."""
    if all(isinstance(name, str) for name in labels):
        return {str(value): name for value, name in enumerate(labels)}
    raise InputError(f"'{manifest}' gives \"labels\" as a list that is not a list of names "
                     f"({json.dumps(labels)[:80]}), so it does not say which value is the liver and which the "
                     f"tumor. Give them as {{\"0\": \"background\", \"1\": \"liver\", \"2\": \"tumor\"}} (MSD) "
                     f"or {{\"background\": 0, \"liver\": 1, \"tumor\": 2}} (nnU-Net v2), or pass --label-map.")


def _label_map_from_names(names: Dict[int, List[str]]) -> Dict[str, int]:
    """The ``--label-map`` that a dataset.json's label names (value -> its names, :func:`check_dataset_labels`)
    call for: each value named a tumor -> 2 (an nnU-Net region holding the tumor value too), each value named
    only the liver -> 1; {} when no value names the liver (nothing to suggest: a data set of other organs)."""
    from ..segnrrd import names_liver, names_tumor

    suggested = {}
    for number in sorted(n for n in names if n > 0):
        if any(names_tumor(name) for name in names[number]):
            suggested[str(number)] = 2
        elif all(names_liver(name) for name in names[number]):
            suggested[str(number)] = 1
    return suggested if 1 in suggested.values() else {}


def _discover_ircadb(root: Path) -> List[Case]:
    zipped = sorted(str(z.parent) for z in (p for p in tree_paths(root) if p.name == "PATIENT_DICOM.zip")
                    if _in_visible_tree(z, root) and not (z.parent / "PATIENT_DICOM").is_dir())
    if zipped:
        raise InputError(f"3D-IRCADb patient folder(s) {', '.join(repr(z) for z in zipped[:5])} still hold "
                         f"PATIENT_DICOM.zip without a PATIENT_DICOM/ folder; unzip PATIENT_DICOM.zip and "
                         f"MASKS_DICOM.zip there first (or remove those patients), so that no patient is left out.")
    cases = []
    for patient_dicom in sorted(p for p in tree_paths(root) if p.name == "PATIENT_DICOM"):
        if not patient_dicom.is_dir() or not _in_visible_tree(patient_dicom, root) \
                or patient_dicom.parent.name == "PATIENT_DICOM":  # the inner folder of a wrapped one
            continue
        patient = patient_dicom.parent
        patient_dicom = _unwrapped(patient_dicom)
        masks = _unwrapped(patient / "MASKS_DICOM")
        if not masks.is_dir():
            if (patient / "MASKS_DICOM.zip").exists():
                raise InputError(f"'{patient}' holds MASKS_DICOM.zip; unzip it first.")
            raise InputError(f"3D-IRCADb patient '{patient}' has PATIENT_DICOM/ but no MASKS_DICOM/ folder.")
        if not (masks / "liver").is_dir():
            raise InputError(f"3D-IRCADb patient '{patient}' has no MASKS_DICOM/liver mask series.")
        cases.append(Case(patient.name, patient.name, str(patient_dicom), str(masks), "ircadb"))
    return cases


def _unwrapped(folder: Path) -> Path:
    """``folder``'s namesake inside it (``MASKS_DICOM/MASKS_DICOM/liver``) when ``folder`` holds nothing else that
    is visible: a zip unpacked into a folder named after it (as some unzip tools do with 3D-IRCADb's
    MASKS_DICOM.zip) was refused for having no MASKS_DICOM/liver, and its wrapped PATIENT_DICOM taken for a
    patient of its own; else ``folder``."""
    inner = folder / folder.name
    if inner.is_dir() and all(p == inner or is_hidden_name(p.name) for p in folder.iterdir()):
        return inner
    return folder


def _discover_csv(root: Path, warn_patients: bool = True) -> List[Case]:
    """The cases of the CSV ``root`` (or of the one CSV in the folder ``root``), read by
    :func:`~..fileutil.read_csv_rows`; errors name the file's line."""
    if root.is_dir():
        csvs = [p for p in root.glob("*.csv") if _visible(p)]
        if len(csvs) != 1:
            raise InputError(f"Expected exactly one CSV in '{root}', found {len(csvs)}; pass the CSV file as --data.")
        root = csvs[0]
    columns, rows = read_csv_rows(root, "CSV")
    if "image" not in columns or "label" not in columns:
        raise InputError(f"CSV '{root}' needs a header with columns 'image' and 'label' (optional "
                         f"'patient', 'case' or 'case_id'); found {columns}.")
    cases = []
    unnamed = []  # lines without a patient id
    named_patients: List[str] = []  # the 'patient' cells given
    for index, (number, row) in enumerate(rows, start=1):
        if not row.get("image") or not row.get("label"):
            raise InputError(f"CSV '{root}' line {number}: empty image or label path.")
        image, label = (_csv_path(root, number, kind, row[kind]) for kind in ("image", "label"))
        case_id = _csv_case_name(root, number, row) or re.sub(NIFTI_RE, "", image.name) or f"case{index}"
        patient = row.get("patient") or case_id
        if not row.get("patient"):
            unnamed.append(number)
        else:
            named_patients.append(patient)
        cases.append(Case(case_id, patient, str(image), str(label), "csv"))
    _refuse_patient_ids_differing_in_case(root, named_patients)
    if warn_patients:
        _warn_cases_as_own_patients(root, "patient" in columns, unnamed, len(cases), columns)
    return cases


def _refuse_patient_ids_differing_in_case(root: Path, patients: Sequence[str]) -> None:
    """InputError for two patient ids of a CSV's 'patient' cells (``patients``) that differ only in letter case
    ('P07' and 'p07'): read as two patients, one patient's scans were split between training and validation (and
    its validation measured a patient the network was trained on); which spelling is meant is the user's to say."""
    import unicodedata

    first: Dict[str, str] = {}
    for patient in patients:
        # and in Unicode form: 'José' composed (NFC) and decomposed (NFD, as macOS writes names) were two patients,
        # one patient's arterial scan trained on and its venous scan validated (the data audit)
        seen = first.setdefault(unicodedata.normalize("NFC", patient).casefold(), patient)
        if seen != patient:
            how = ("letter case" if unicodedata.normalize("NFC", seen) != unicodedata.normalize("NFC", patient)
                   else "Unicode form (composed and decomposed accents, which look the same)")
            raise InputError(f"CSV '{root}' names patients {seen!r} and {patient!r}, which differ only in "
                             f"{how}; they would be taken as two patients, and one patient's scans could be "
                             f"split between training and validation. Spell each patient's id one way (or make "
                             f"two patients' ids differ by more than that).")


def _csv_case_name(root: Path, number: int, row: Dict[str, str]) -> str:
    """A CSV row's case name: its 'case' cell, or its 'case_id' cell, the column ``segment LIST.csv`` reads (one CSV
    can serve both; 'case_id' was ignored without a word, and two CTs named ct.nii.gz were then refused as one case
    id); '' when neither is given. Both given and different: refused, naming the line."""
    case, case_id = (row.get("case") or "").strip(), (row.get("case_id") or "").strip()
    if case and case_id and case != case_id:
        raise InputError(f"CSV '{root}' line {number}: its 'case' ({case!r}) and 'case_id' ({case_id!r}) cells name "
                         f"the case differently; keep one of the two columns, or give both the same name.")
    return case or case_id


# (CSV, what was said) pairs already warned about in this process: crossval lists the cases again for each fold
_WARNED_CSVS: Set[Tuple[str, str]] = set()


def _warn_cases_as_own_patients(root: Path, has_column: bool, lines: Sequence[int], total: int,
                                columns: Sequence[str] = ()) -> None:
    """Warn (once per CSV and process) that rows without a patient id are each taken as a patient of their own:
    two phases or scans of one patient listed so can land on both sides of a split, and their validation then
    measures a patient the network was trained on. ``lines``: the CSV's line numbers without a patient id;
    ``columns``: the CSV's column names, of which one named like a patient id ('patient_id', 'PatientID',
    'subject') is named in the warning: it is not read."""
    if not lines:
        return
    if not has_column:
        alike = [c for c in columns if re.search(r"patient|subject", str(c), re.IGNORECASE)]
        hint = (f"its column {', '.join(repr(c) for c in alike)} is not read as the patient id (only a column "
                f"named 'patient' is): rename it 'patient'" if alike else
                "if some rows are scans of one patient (phases, follow-ups), add a 'patient' column naming it")
        text = (f"CSV '{root}' has no 'patient' column, so each of its {total} rows is taken as a patient of its own; "
                f"{hint}, or scans of one patient can be split between training and validation")
    else:
        shown = ", ".join(str(n) for n in list(lines)[:10]) + (" ..." if len(lines) > 10 else "")
        text = (f"CSV '{root}': {len(lines)} of its {total} rows have an empty 'patient' cell (lines {shown}) and are "
                f"each taken as a patient of their own; fill in the patient id where a row is another scan of a "
                f"listed patient, or those scans can be split between training and validation")
    key = (os.path.normcase(str(Path(root).resolve())), text)
    if key not in _WARNED_CSVS:
        _WARNED_CSVS.add(key)
        log.warning("warning: %s.", text)


def refuse_identical_images(cases: Sequence[Case], fingerprint: Dict[str, Dict[str, Any]]) -> None:
    """Refuse two cases of different patients whose image files have identical contents (``fingerprint``:
    :func:`~.slice_cache.data_fingerprint`, whose SHA-256 hashes are reused here: nothing is read again). A CT
    copied under another name or patient id passed the check by path (:func:`_refuse_repeated_images`) and could
    be trained on in one split and validated on in the other. One patient's rows may share an image (one scan
    with two readers' labels): they stay on one side of every split."""
    digests = {case_id: entry.get("image_sha256") for case_id, entry in fingerprint.items() if entry}
    _refuse_shared_digest(cases, digests, "have identical contents", "")


def refuse_identical_voxels(cases: Sequence[Case], voxel_digests: Dict[str, Optional[str]]) -> None:
    """Refuse two cases of different patients whose CTs hold the same voxels after canonical reorientation
    (``voxel_digests``: case id -> :func:`voxel_digest`, taken when the slice cache was built): one scan saved
    twice as different files (another format, compression, data type or storage order; MSD Task03 holds the LiTS
    training CTs under other names) passes :func:`refuse_identical_images`, which compares the files' bytes."""
    _refuse_shared_digest(cases, voxel_digests, "hold the same voxels",
                          " (one scan saved as two files: another format, compression, data type or storage order)")


def _refuse_shared_digest(cases: Sequence[Case], digests: Dict[str, Optional[str]], verb: str, why: str) -> None:
    """The refusal of :func:`refuse_identical_images` and :func:`refuse_identical_voxels`. The cases are taken in
    case-id order, so the message names the pair the same way whatever split (training seed) listed them."""
    first: Dict[str, Case] = {}
    for case in sorted(cases, key=lambda c: _natural_key(c.case_id)):
        digest = digests.get(case.case_id)
        if not isinstance(digest, str):
            continue
        seen = first.setdefault(digest, case)
        if seen is not case and seen.patient_id != case.patient_id:
            raise InputError(f"The images of case '{seen.case_id}' (patient '{seen.patient_id}', '{seen.image_path}') "
                             f"and case '{case.case_id}' (patient '{case.patient_id}', '{case.image_path}') {verb}"
                             f"{why} (SHA-256 {digest[:16]}...): one CT under two patients could be "
                             f"trained on and validated on at once. If both rows are that one patient's (e.g. the "
                             f"same scan with two label files), give them the same patient id (CSV column "
                             f"'patient'); otherwise remove the copy from the data.")


def voxel_digest(array_zyx: np.ndarray) -> str:
    """SHA-256 (hex) of a CT's voxel values with its shape: the array ``(z, y, x)`` read as little-endian float32,
    one slice at a time (no whole-volume copy). Equal for one scan stored in another file format, compression or
    integer/float type, and (given the canonical array) in another storage order; any changed voxel changes it."""
    digest = hashlib.sha256(repr(tuple(int(n) for n in array_zyx.shape)).encode("ascii"))
    for plane in array_zyx:
        digest.update(np.ascontiguousarray(plane, dtype="<f4").tobytes())
    return digest.hexdigest()


def _csv_path(csv: Path, number: int, kind: str, text: str) -> Path:
    """The existing file or folder a training CSV's cell names (relative to the CSV's folder), else InputError
    naming the line. A path written with Windows backslashes (``img\\case1.nii.gz``, a CSV made on Windows) is
    read with ``/`` where the system takes ``\\`` as a letter of the name and only that spelling exists (it was
    reported missing without saying why)."""
    path = _resolve(csv.parent, text)
    if path.exists():
        return path
    if "\\" in text and os.sep == "/":
        slashed = _resolve(csv.parent, text.replace("\\", "/"))
        if slashed.exists():
            return slashed
        raise InputError(f"CSV '{csv}' line {number}: {kind} '{path}' does not exist (nor with '/' for its '\\'); "
                         f"a path written on Windows (C:\\...) must name the file as this computer sees it.")
    hint = ""
    if not Path(text).is_absolute() and Path(text).exists():  # written relative to the working folder
        hint = (f" A relative path in a training CSV is read from the CSV's folder ('{csv.parent}'), not from the "
                f"working folder, where '{text}' exists: write it relative to the CSV's folder, or as an absolute "
                f"path.")
    raise InputError(f"CSV '{csv}' line {number}: {kind} '{path}' does not exist{similar_names_hint(path)}.{hint}")


def _resolve(base: Path, text: str) -> Path:
    path = expand_home(text)
    return path if path.is_absolute() else (base / path)


# --------------------------------------------------------------------------- reading


def read_case_labels(case: Case, image: CTVolume, label_map: Optional[Dict] = None,
                     content_warnings: bool = True, allow_non_hu: bool = False) -> np.ndarray:
    """The case's label map as ``(z, y, x)`` uint8 in {0, 1, 2} on ``image``'s grid.

    ``label_map`` maps raw values to 0/1/2 (keys may be strings); unlisted values become 0.
    Raises :class:`LabelError` for a shape/geometry mismatch or values outside {0, 1, 2} (without a map), and for
    a label whose header stores the CT's grid in another axis order while its voxels fit the CT only in the CT's
    own voxel order (:func:`_refuse_label_fitting_only_as_stored`), and for a label on the CT's own grid whose
    voxels fit the CT only mirrored along one axis (:func:`_refuse_label_fitting_only_mirrored`); neither with
    ``allow_non_hu``, whose CT values are not HU. Logs a warning when the label was stored in another axis order than the CT (it is reoriented)
    and for content that would teach the network something wrong (:func:`label_content_warnings`; not with
    ``content_warnings=False``, for a caller that checks the labels its own way).
    """
    stored = None
    if case.layout == "ircadb":
        raw = _merge_ircadb_masks(Path(case.label_path), image)
    else:
        volume, stored = _read_label_onto(case.label_path, image)
        for note in volume.meta.get("warnings", []):
            _warn_once(case.label_path, f"case {case.case_id}: {note} ('{case.label_path}').")
        raw = volume.array
    # values a map drops are dropped on purpose here (multi-organ labels); label_content_warnings names them when
    # no liver is left, the one case where that is a mistake
    labels = remap_labels(raw, label_map, case.label_path, log_dropped=False)
    if stored is not None and not allow_non_hu:
        _refuse_label_fitting_only_as_stored(case, image, labels, stored, label_map)
    elif not allow_non_hu:
        _refuse_label_fitting_only_mirrored(case, image, labels)
    for warning in label_content_warnings(labels, raw if label_map else None, label_map,
                                          image.spacing_zyx) if content_warnings else []:
        _warn_once(case.label_path, f"case {case.case_id}: {warning}")
    return labels


def _warn_once(path: str, text: str) -> None:
    """Log ``warning: text`` once per process for the file ``path``: training reads a validation case for its slice
    cache and again for the whole-volume validation at the end, and each label warning was printed twice."""
    key = (str(path), text)
    if key not in _WARNED_CASES:
        _WARNED_CASES.add(key)
        log.warning("warning: %s", text)


def _read_label_onto(path: str, image: CTVolume) -> Tuple[CTVolume, Optional[np.ndarray]]:
    """``(label map on image's grid, its voxels (z, y, x) in the file's own order)`` of a training label; the
    second is None unless the file (NIfTI, NRRD or MetaImage) stores the CT's grid in another axis order and was
    reoriented onto it. Other labels (a ``.seg.nrrd``, a DICOM SEG or series) are read by
    :func:`~..io.read_label_map` with the CT as reference, as before."""
    from ..fileutil import full_suffix
    from ..io import read_label_map
    from ..io.formats import READ_SUFFIXES
    from ..io.labels import GEOMETRY_TOLERANCE, label_on_reference_grid

    if full_suffix(path) not in READ_SUFFIXES:  # .seg.nrrd is '.seg.nrrd' here
        return read_label_map(path, reference=image, allowed_values=ANY_LABEL_VALUE), None
    stored = read_label_map(path, allowed_values=ANY_LABEL_VALUE)  # read_label_map(reference=image) in 2 steps
    volume = label_on_reference_grid(stored, image, GEOMETRY_TOLERANCE)
    return volume, (None if volume is stored else stored.array)


def _refuse_label_fitting_only_as_stored(case: Case, image: CTVolume, labels: np.ndarray, stored: np.ndarray,
                                         label_map: Optional[Dict]) -> None:
    """LabelError when the label's header stores the CT's grid in another axis order (it was reoriented onto the
    CT: ``labels``, ``(z, y, x)`` on the CT's layout) but it fits the CT only read in the CT's own voxel order
    (``stored``, the file's voxels): a header flipped by a conversion tool while the voxels were drawn on the CT.
    Placed by such a header, a label was trained mirrored (a real 3 mm CT, header flipped in x: liver mean HU 44 ->
    -65, 37 % of its voxels outside :data:`LABEL_HU_RANGE` against 0.2 %) with only the note 'reoriented to the
    CT'."""
    from ..io.labels import LABEL_HU_RANGE, header_misfits

    if tuple(stored.shape) != tuple(image.shape_zyx):
        return  # a permuted grid of another shape: the CT's voxel order cannot be meant
    misfits = header_misfits(image.array, labels,
                             lambda: remap_labels(stored, label_map, case.label_path, log_dropped=False))
    if misfits is None:
        return
    placed, as_stored = misfits
    low, high = LABEL_HU_RANGE
    raise LabelError(
        f"Case {case.case_id}: label map '{case.label_path}' does not fit its CT '{case.image_path}' where its "
        f"header places it. Its header stores the CT's grid in another axis order (mirrored or transposed), and "
        f"placed so, {placed:.0%} of its liver and tumor voxels lie outside {low:g}..{high:g} HU (fat, air or bone), "
        f"while read in the CT's own voxel order only {as_stored:.0%} do: its header is probably wrong (flipped by a "
        f"conversion), and training would learn a mirrored label. Give the label map the CT's header (e.g. nibabel: "
        f"Nifti1Image(label voxels, ct.affine, ct.header)) and run again; if the label really is mirrored, fix or "
        f"remove this case.")


def _refuse_label_fitting_only_mirrored(case: Case, image: CTVolume, labels: np.ndarray) -> None:
    """LabelError when the label, on the CT's own grid (``labels``, ``(z, y, x)``), fits the CT badly while its voxels
    mirrored along one axis fit it (:func:`~..io.labels.mirrored_misfits`): voxels flipped against the CT under the
    CT's own header (slice order reversed by a conversion, an array flipped in a script) passed every check and
    trained a mirrored label (a real 3 mm CT, slices reversed: 42 % of the label outside the liver's HU against 0 %;
    mirrored in x, only the liver-side warning, which blamed the CT's header)."""
    from ..io.labels import LABEL_HU_RANGE, MIRROR_AXIS_WORDS, mirrored_misfits

    misfits = mirrored_misfits(image.array, labels)
    if misfits is None:
        return
    given, mirrored, axis = misfits
    low, high = LABEL_HU_RANGE
    raise LabelError(
        f"Case {case.case_id}: label map '{case.label_path}' does not fit its CT '{case.image_path}': {given:.0%} of "
        f"its liver and tumor voxels lie outside {low:g}..{high:g} HU (fat, air or bone), while mirrored along "
        f"{MIRROR_AXIS_WORDS[axis]} only {mirrored:.0%} would: its voxels are probably flipped against the CT's (by "
        f"a conversion or a script), and training would learn a mirrored label. Flip the label's voxels back along "
        f"that axis, keeping the CT's header, or remove this case.")


def liver_side_warning(ct: CTVolume, labels_zyx: np.ndarray) -> Optional[str]:
    """A warning when the liver label's centre lies to the patient's left of the body's centre (``ct``: HU,
    ``(z, y, x)``, any orientation; ``labels_zyx`` on its grid), measured as ``segment``'s plausibility check
    measures it (:func:`~..inference.plausibility.liver_side_mm`; scans cropped to the liver are not judged). A
    CT whose header mirrors left and right (an identity or sign-flipped affine on voxels stored in DICOM order;
    CT and label alike, so no grid check sees it) trained mirrored anatomy without a word, where every other
    case has the liver on the right (augmentation never mirrors, for that reason). Real cases: 51-73 mm to the
    right; the same cases with a mirrored header (or an identity affine on DICOM-ordered voxels), 51-75 mm to the
    left. None when right of the centre, or no liver."""
    from ..inference.plausibility import BODY_WIDER_THAN_LIVER, liver_ras_xz, liver_side_mm

    measured = liver_side_mm(liver_ras_xz(labels_zyx, ct.geometry), ct.array, ct.geometry)
    if measured is None:
        return None
    offset, body_width, liver_width = measured
    if offset >= 0 or body_width < BODY_WIDER_THAN_LIVER * liver_width:
        return None
    return (f"its liver label's centre lies {-offset:.0f} mm to the patient's left of the body's centre, as the "
            f"CT's header orients it, where a liver lies well to the right: the header of the CT (and its label) is "
            f"probably mirrored left-right (e.g. an identity or sign-flipped affine), and training would learn "
            f"mirrored anatomy. Check the case in a viewer (e.g. 3D Slicer) and fix its header, or leave it out "
            f"(unless the patient has situs inversus).")


def label_content_warnings(labels: np.ndarray, raw: Optional[np.ndarray] = None,
                           label_map: Optional[Dict] = None,
                           spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0)) -> List[str]:
    """What in a training label ``(z, y, x)`` uint8 {0, 1, 2} is probably a mistake: no liver at all (with a
    ``label_map``, the raw values it dropped are named), tumor without any liver, or tumor components that touch
    no liver (LiTS-style labels mark the liver around every tumor)."""
    from scipy import ndimage

    present = label_value_counts(labels)
    counts = [present.get(v, 0) for v in (0, 1, 2)]
    warnings = []
    dropped_text = ""
    if label_map and raw is not None:
        dropped = [v for v in sorted(label_value_counts(raw)) if v != 0 and str(v) not in {str(k) for k in label_map}]
        if dropped:
            dropped_text = (f"; its values {dropped[:8]} are not in the label map {json.dumps(label_map)} and became 0 "
                            f"(list every value you mean to keep, e.g. \"1\": 1, \"2\": 2)")
    if counts[1] == 0 and counts[2] == 0:
        # the same reader loads validation cases: there an empty reference scores any liver found 0 (Dice)
        return ["its label has no liver or tumor voxel: as a training case it teaches the network to call its whole "
                "CT background, and as a validation case it gives liver Dice 0 to any liver a model finds there"
                + dropped_text + "."]
    if counts[2] and counts[1] == 0:
        return ["its label has tumor (2) but no liver (1) voxel; liver labels mark the liver around each tumor"
                + (dropped_text + "." if dropped_text else ". Check the label values (--label-map).")]
    if dropped_text:
        inside = _dropped_inside_liver(labels, raw, label_map, spacing_zyx)
        if inside:
            shown = ", ".join(f"{value} ({count} voxels)" for value, count in sorted(inside.items())[:8])
            warnings.append(
                f"value(s) {shown} of its label, which the label map {json.dumps(label_map)} does not list, lie inside "
                f"the liver and became 0: holes in the liver that the network learns as background (with synthetic "
                f"tumors on, it learns pasted tumors as tumor and these as background). If they are tumors (LiTS's and "
                f"MSD's 2), map them to 2; if they are liver (vessels), or to train the liver alone, map them to 1 "
                f"(e.g. '{{\"1\": 1, \"2\": 1}}'); if they are another organ in a groove of the liver (the "
                f"gallbladder, the vena cava), leaving them out is right.")
    if counts[2]:
        from ..metrics.surface import bounding_box

        box = bounding_box(labels == 2, 1)  # the tumors' box (+1 voxel): labelled there, not in the whole CT
        region = labels[box]
        tumors, n = ndimage.label(region == 2)
        near_liver = ndimage.binary_dilation(region == 1)
        touching = np.unique(tumors[near_liver & (tumors > 0)])
        apart = n - int(np.count_nonzero(touching))
        if apart:
            warnings.append(f"{apart} of its {n} tumor components touch no liver voxel (tumor outside the liver); "
                            f"check the label.")
        swapped = _liver_inside_tumor_fraction(labels) if counts[2] > counts[1] else None
        if swapped is not None and swapped >= SWAPPED_LIVER_BORDER_FRACTION:
            warnings.append(f"its tumor (2) holds more voxels ({counts[2]}) than its liver (1, {counts[1]}), and "
                            f"{swapped:.0%} of the liver's border faces tumor: are 1 and 2 swapped (1 tumor, 2 liver)? "
                            f"This tool reads 0 background, 1 liver, 2 tumor (LiTS); if so, train with --label-map "
                            f"'{{\"0\": 0, \"1\": 2, \"2\": 1}}'.")
    return warnings


DROPPED_INSIDE_LIVER_RIM_FRACTION = 0.65
"""A part of a training label's values that ``--label-map`` does not list (made 0) lies inside the liver when at least
this share of its outer rim (26-connected) is liver or tumor after the map: a real tumor under ``{"1": 1}`` (MSD's
2 dropped; 0.70-1.0 of its rim on liver in phantoms, also at the dome, a lobe's tip or a third outside the surface),
where other organs touch the liver with less (a kidney, the stomach, the vena cava through the whole scan; a
gallbladder deep in its fossa 0.55, a retrohepatic vena cava in a scan cropped to the liver 0.58: the review)."""

DROPPED_PART_REACH_MM = 20.0
"""The margin (mm) around the organ's box within which a dropped part is judged: one reaching beyond it (the face of
the grown box, not the array's own edge) goes on as another organ does, and is not named."""


def _dropped_inside_liver(labels: np.ndarray, raw: np.ndarray, label_map: Dict,
                          spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0)) -> Dict[int, int]:
    """Raw value -> voxels, of the values ``label_map`` does not list, in parts lying inside the liver
    (:data:`DROPPED_INSIDE_LIVER_RIM_FRACTION`) of the training label ``labels`` (``(z, y, x)`` 0/1/2 after the map;
    ``raw`` before it; ``spacing_zyx`` mm); {} when none. Each value's parts are labelled apart (a tumor touching the
    vena cava's label is still a tumor) within the organ's box grown by :data:`DROPPED_PART_REACH_MM`. The training
    audit: MSD's tumors dropped by '{"1": 1}' became holes in the liver without a word, while synthetic tumors were
    trained as tumor."""
    from scipy import ndimage

    from ..metrics.surface import bounding_box

    box = bounding_box(labels >= 1, [int(np.ceil(DROPPED_PART_REACH_MM / max(float(s), 1e-6))) for s in spacing_zyx])
    if box is None:
        return {}
    region_raw, organ = raw[box], labels[box] >= 1
    listed = {int(key) for key in label_map}
    candidates = [int(v) for v in np.unique(region_raw[ndimage.binary_dilation(organ)])
                  if int(v) != 0 and int(v) not in listed]
    structure = np.ones((3, 3, 3), dtype=bool)
    found = {}  # type: Dict[int, int]
    for value in candidates:
        part_mask = (region_raw == value) & ~organ
        parts, count = ndimage.label(part_mask, structure=structure)
        if not count:
            continue
        rim = ndimage.binary_dilation(part_mask, structure=structure) & ~part_mask
        owner = ndimage.grey_dilation(parts, footprint=structure)[rim]  # the part each rim voxel borders
        rim_all = np.bincount(owner, minlength=count + 1)
        rim_organ = np.bincount(owner[organ[rim]], minlength=count + 1)
        inside = rim_organ >= DROPPED_INSIDE_LIVER_RIM_FRACTION * np.maximum(rim_all, 1)
        for axis, (grown, size) in enumerate(zip(box, raw.shape)):
            for face, edge in ((0, grown.start == 0), (-1, grown.stop == size)):
                if not edge:  # beyond the grown box: another organ going on, not a part inside the liver
                    inside[np.unique(np.take(parts, face, axis=axis))] = False
        inside[0] = False
        voxels = int(np.count_nonzero(inside[parts]))
        if voxels:
            found[value] = voxels
    return found


SWAPPED_LIVER_BORDER_FRACTION = 0.9
"""Share of the liver label's border (its 6-connected outer rim) lying in tumor above which a label whose tumor
outnumbers its liver is asked whether 1 and 2 are swapped: a liver's border faces the outside of the organ, so in a
right label most of it is background whatever the tumor burden; a label with 1 and 2 swapped has its 'liver' (the
tumors) inside its 'tumor' (the liver)."""


def _liver_inside_tumor_fraction(labels: np.ndarray) -> Optional[float]:
    """The fraction of the liver label's (1) 6-connected outer rim that is tumor (2), in ``labels`` (``(z, y, x)``
    0/1/2); None without liver."""
    from scipy import ndimage

    from ..metrics.surface import bounding_box

    box = bounding_box(labels > 0, 1)
    if box is None:
        return None
    region = labels[box]
    liver = region == 1
    rim = ndimage.binary_dilation(liver) & ~liver
    border = int(np.count_nonzero(rim))
    return float(np.count_nonzero(rim & (region == 2))) / border if border else None


def _merge_ircadb_masks(masks_dir: Path, image: CTVolume) -> np.ndarray:
    """Merge MASKS_DICOM/liver (-> 1) and every MASKS_DICOM/livertumor* (-> 2, in any letter case) into one
    (z, y, x) map.

    IRCADb masks are DICOM series holding 0 and 255 (any non-zero value counts as inside). A copy whose tumor folders
    were named 'LiverTumor01' had them left out without a word (the glob's case on Linux): their tumors trained as
    liver (the training data audit).
    """
    from ..io import read_label_map

    liver = read_label_map(masks_dir / "liver", reference=image, allowed_values=ANY_LABEL_VALUE)
    labels = (liver.array > 0).astype(np.uint8)
    for tumor_dir in sorted(p for p in masks_dir.iterdir() if p.name.lower().startswith("livertumor")):
        if tumor_dir.is_dir():
            tumor = read_label_map(tumor_dir, reference=image, allowed_values=ANY_LABEL_VALUE)
            labels[tumor.array > 0] = 2
    return labels


# (image path, warning) pairs already logged by load_case in this process: each is printed once
_WARNED_CASES: Set[Tuple[str, str]] = set()


def _read_case_image(case: Case) -> CTVolume:
    """``read_volume`` of the case's CT; a DICOM folder of several series is refused naming the case and saying how
    to choose one here: its message said to choose one with --series, which train and crossval do not have (a CSV
    has no series column either)."""
    from ..io import read_volume
    from ..io.dicom import SeveralSeriesError

    try:
        return read_volume(case.image_path)
    except SeveralSeriesError as exc:
        listing = str(exc).split("\n", 1)[1] if "\n" in str(exc) else ""
        raise InputError(f"Case {case.case_id}: {exc.headline}; training reads one series per case: give the case a "
                         f"folder that holds only the series you want, or in a CSV's image cell one file of it (its "
                         f"whole series is read):\n{listing}".rstrip()) from None


def load_case(case: Case, label_map: Optional[Dict] = None, allow_non_hu: bool = False,
              content_warnings: bool = True, aligned_for_model: bool = False) -> Tuple[CTVolume, np.ndarray]:
    """Read, check and canonicalize one case -> (canonical CTVolume (z, y, x) HU, labels (z, y, x) uint8).
    Each CT warning is logged once per process and image, however often the case is read.

    The CT gets the checks ``segment`` makes (:func:`validation.check_ct`: NaN/Inf, constant, not HU, ...), so a
    model is never trained on a volume it would refuse to segment; ``allow_non_hu`` as there.
    ``content_warnings``: as :func:`read_case_labels`'s. ``aligned_for_model``: the network is given an oblique CT
    on a patient-aligned grid (training's ``oblique_grid`` ``aligned``: the slice cache and the whole-volume
    validation), so the warning that the model reads the grid's oblique slices as axial ones (and advice to resample
    the CT first) is left out; the slice cache's log names such a case with its angle."""
    from ..orientation import canonicalize
    from ..validation import check_ct, model_obliquity_warnings

    image = _read_case_image(case)
    warnings = check_ct(image, allow_non_hu=allow_non_hu, aligned_for_model=aligned_for_model)
    if aligned_for_model:  # segment's words for it ('segment gave the model ...'): the cache log says it instead
        said = set(model_obliquity_warnings(image.geometry.direction_matrix, image.source or "the volume", True))
        warnings = [warning for warning in warnings if warning not in said]
    for warning in warnings:
        key = (str(case.image_path), warning)
        if key not in _WARNED_CASES:  # a validation case is read for the slice cache and again at the end
            _WARNED_CASES.add(key)
            log.warning("warning: %s", warning)
    labels = read_case_labels(case, image, label_map, content_warnings, allow_non_hu)
    canonical, reorientation = canonicalize(image)
    labels = reorientation.to_canonical(labels)
    side = liver_side_warning(canonical, labels) if content_warnings and not allow_non_hu else None
    if side and (str(case.image_path), side) not in _WARNED_CASES:  # once, as the CT's warnings
        _WARNED_CASES.add((str(case.image_path), side))
        log.warning("warning: case %s: %s", case.case_id, side)
    return canonical, labels
