"""livertumorseg evaluate: compare predicted label maps with reference label maps (LiTS metrics).

--pred and --ref are two files (one case) or two folders. Label maps: NIfTI, NRRD (.nrrd, or a .nhdr header
beside its data file), MetaImage, or a Slicer
segmentation (.seg.nrrd, as `segment` writes it: segments "Liver" and "Liver tumor" -> labels 1 and 2).

Pairing in folders: each file's *case name* is its file name, lower-cased (accented letters in composed form,
NFC), without the extension (.seg.nrrd, .nii.gz, .nii, .nrrd, .nhdr, .mha, .mhd), without one known prefix
(segmentation-, volume-, LiTS's test-set test-segmentation- and test-volume-, prediction-, pred-,
pred_, label-, label_, labels-, seg-, seg_, prob-, prob_, ct-, ct_) and without any number of known
suffixes at its end (_pred, _prediction, _seg, _segmentation, _label, _labels, _labelmap, _mask, _liver,
_prob, _ct, _image, _0000, removed repeatedly; nnU-Net's channel suffix _0000 only once); after a LiTS prefix a
number loses its leading zeros. So LiTS's segmentation-12.nii matches volume-12.nii, volume-012.nii and 12.nii.gz,
ct3slice_liver_seg.nii.gz matches ct3slice_ct.nii.gz, and nnU-Net's labelsTs/liver_000.nii.gz matches
imagesTs/liver_000_0000.nii.gz (and segment's prediction of the same name); a name whose one _0000 may be
either (labelsTs/liver_0000.nii.gz, case liver_0000, against liver_0000_0000.nii.gz) is paired with the other
side's name with it. One folder may hold the CT and the
label map of a case when the names say which is which (ct3slice_ct is a CT, ct3slice_liver_seg a label map:
--ref/--pred take the label map, --images the CT); two files of one case that the names do not tell apart
(case1_seg.nii.gz and case1_label.nii.gz) are ambiguous: the command stops and names both. Cases
present on one side only are listed as a warning (and in the summary JSON); the command fails if no case
matches.

Optional inputs matched the same way: --prob: a float probability map of --prob-structure (tumor by
default) per case, on the reference grid, for ROC curves and AUC (floats in [0, 1], or integers 0..255 =
255 x probability as `segment --probabilities` writes; an untagged integer map of only 0, 1 and 2 is refused as
a label map, and one of only 0 and 1 is read as 255 x probability where the set's other integer maps are, else
as probabilities 0 and 1: summary.json's probability_scale says so); --images: the CT per case, used as background of
the overlay PNGs (without it the outlines are drawn on black).

Tumor Dice of a case whose prediction and reference both hold no tumor is 1.0 (the LiTS per-case
convention; a tumor-free prediction of a tumor-free liver is right); with tumor in only one of them it is
0.0. `crossval` uses the same rule.

Tumor VOE, RVD, ASSD, HD, HD95 and RMSD (voe_tumor, rvd_tumor, assd_tumor_mm, hd_tumor_mm, hd95_tumor_mm,
rmsd_tumor_mm, and their means in summary.json) are per case, of the whole tumor mask: not LiTS's per-lesion
average. The LiTS script computes VOE, RVD, ASD, MSD and RMSD per detected lesion and averages them over all detected
lesions of all cases; only its tumor Dice per case and global Dice are whole-mask. Do not quote these columns as
LiTS's lesion numbers. The per-lesion variant is computed beside them: per detected lesion (each detected group:
its reference lesions against its predicted ones), averaged over all detected lesions of all cases
(summary.json's lesion_segmentation_lits, printed as "tumor per detected lesion"; per case in cases.csv as
lits_lesions_scored and lits_lesion_* means), with this tool's RVD sign and 6-connected surfaces (the LiTS
script's are 18-connected) and the lesions of --connectivity (LiTS: 6).

Outputs in -o OUT_DIR (a folder, created): cases.csv (one row per case, "case" first, then metric columns such as
dice_liver, assd_liver_mm), summary.json (mean/std/median per metric, with ci95_low and ci95_high: the mean's 95 %
confidence interval over cases, a percentile bootstrap of 10,000 case resamples, fixed seed, said in its "bootstrap"
key, null with fewer than 2 values; global Dice, with its interval in global_dice_ci95; lesion detection
precision/recall (also as the LiTS script counts them, and the recall by reference lesion size:
lesion_detection_by_size, bins <10, 10-20 and >=20 mm of the equivalent-sphere diameter), the per-lesion LiTS scores,
tumor burden errors, mL labelled liver outside the reference liver, settings, unmatched cases, warnings, and with
--prob the pooled ROC and, of tumor, the lesion FROC) and plots/ (box plots when there are 2 or more cases, with
--prob the ROC curve and the lesion FROC curve, overlays of the best and worst case). Every input is read and checked
before the first output is written (a case that cannot be read or scored stops the run, its message naming the case
and its place among the cases), and the outputs are written into a hidden staging folder and moved into place only
when all are done, so a failing or interrupted run leaves OUT_DIR as it was (with --overwrite: the previous results
intact); without --overwrite, a result file that appeared in OUT_DIR during the run (another run's) is not replaced:
the run stops and names it. With --overwrite, an earlier run's pictures this run did not draw (overlays of other
cases) are removed from plots/; other files there are left alone.

Memory: a case's metrics need about 3 bytes a voxel of its grid beside its label maps (and probability map), and
more in the boxes holding its liver and tumors: about 5 bytes a voxel in all for a liver box of an eighth of the
grid, 20 for one filling the grid, 32 where a tumor fills it. A case needing more than is available stops the command,
naming the case, before anything is written.
"""
import argparse
import contextlib
import logging
import math
import os
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from ..argtypes import number
from ..casenames import case_key, case_name, name_with_channel_suffix
from ..errors import InputError, OutputExistsError, ResourceError
from ..fileutil import is_dicom_file, same_file_among, similar_names_hint
from ..io.dicom import holds_dicom_images

log = logging.getLogger(__name__)

ROLE_OF_OPTION = {"--pred": "label", "--ref": "label", "--prob": "prob", "--images": "image"}
ROLE_WORDS = {"label": "label map", "image": "CT", "prob": "probability map"}


MAX_SUBFOLDER_DEPTH = 3
"""How deep :func:`_image_files` looks below a folder without label files of its own (LiTS: one level)."""


def _image_files(folder: Path) -> List[Path]:
    """The image files in ``folder`` itself; when it holds none, those in its subfolders up to
    :data:`MAX_SUBFOLDER_DEPTH` levels down (LiTS's "Training Batch 1" / "Training Batch 2"; a folder given by
    mistake, such as a home folder, is not walked whole). Hidden files and folders and ``__MACOSX`` copies are
    skipped."""
    from ..fileutil import is_hidden_name as hidden, walk_through_links

    own = [p for p in sorted(folder.iterdir()) if p.is_file() and not hidden(p.name) and case_key(p) is not None]
    if own:
        return own
    found = []
    for root, dirs, files in walk_through_links(folder):  # linked folders too (a linked 'Training Batch 2' was skipped)
        depth = len(Path(root).relative_to(folder).parts)
        dirs[:] = sorted(d for d in dirs if not hidden(d)) if depth < MAX_SUBFOLDER_DEPTH else []
        found.extend(Path(root) / f for f in files if not hidden(f) and case_key(Path(f)) is not None)
    return sorted(found)


REFERENCE_PREFIX = "segmentation-"
"""How LiTS names its reference label maps; in a --pred folder, such a file beside an unmarked one is ambiguous."""


def list_cases(folder: Path, what: str) -> "OrderedDict[str, Path]":
    """Case name -> file for the image files in ``folder`` (:func:`_image_files`: its own, or its subfolders'
    when it has none of its own; hidden files skipped).

    Two files with one case name are resolved by their names' role when exactly one of them is what ``what``
    asks for (``ct3slice_ct`` is the CT for --images, ``ct3slice_liver_seg`` the label map for --ref), or, when
    none is, by the one file whose name says nothing (``case.nii.gz`` is the CT beside ``case_liver.nii.gz``);
    otherwise the pair is ambiguous and InputError names both files. For --pred, a file named like a label map
    the way LiTS names its references (``segmentation-1``) beside an unmarked one (``1``) is ambiguous: taking the
    wrong one would score a copied reference instead of the prediction. (``case1_seg`` beside the CT
    ``case1``, what ``segment case1.nii.gz -o case1_seg.nii.gz`` makes, is the prediction.)
    """
    wanted = ROLE_OF_OPTION.get(what)
    listed = _image_files(folder)
    if wanted == "label":
        _refuse_images_of_msd_data_set(folder, what, listed)
        listed = _without_cts(folder, what, listed)
    found: "OrderedDict[str, List[Tuple[Path, Optional[str]]]]" = OrderedDict()
    for path in listed:
        key = case_key(path)
        found.setdefault(key[0], []).append((path, key[1]))
    cases: "OrderedDict[str, Path]" = OrderedDict()
    for name, files in found.items():
        if len(files) > 1:
            fitting = [p for p, role in files if role == wanted]
            unmarked = [p for p, role in files if role is None]
            by_name_alone = False  # taken only because the others' names say they are something else
            if what == "--pred" and unmarked and any(p.name.lower().startswith(REFERENCE_PREFIX) for p in fitting):
                fitting = []  # a prediction beside a file named like a LiTS reference: which is which?
            elif not fitting and len(unmarked) == 1:
                fitting, by_name_alone = unmarked, True  # the others' names say they are something else
            if len(fitting) != 1:
                shown = "', '".join(str(p.relative_to(folder)) for p, _ in files)
                if len({p.parent for p, _ in files}) == len(files):  # one file name in per-case folders
                    _refuse_msd_data_set_folder(folder, what, [p for p, _ in files])
                    raise InputError(f"{what} folder '{folder}' holds '{files[0][0].name}' in {len(files)} "
                                     f"subfolders ('{shown}'), and case names come from file names, not from "
                                     f"folders (TotalSegmentator writes CASE/liver.nii.gz): copy or link each file "
                                     f"into one folder under its case's name (e.g. CASE.nii.gz or CASE_liver.nii.gz, "
                                     f"named as the reference of that case).")
                raise InputError(f"{what} folder '{folder}' holds {len(files)} files for case '{name}' ('{shown}'), "
                                 f"and their names do not say which one is the {ROLE_WORDS.get(wanted, 'input')} "
                                 f"(case names drop "
                                 f"affixes such as _ct, _seg, _liver, _label); keep one of them in this folder, "
                                 f"or rename them so that their names say it (e.g. CASE_ct.nii.gz, CASE_seg.nii.gz).")
            left = [str(p.relative_to(folder)) for p, _ in files if p != fitting[0]]
            # said where no name says it is what the option asks for: 'n1' and 'n1_ct' in a --pred folder (two CTs'
            # predictions under one case name) kept the first and dropped the other without a word (the held-out
            # script audit); a CT beside its label map, each named for its role (LiTS' volume-N and
            # segmentation-N), is no news (one line a case was, the review)
            # (a CT named so would have been screened out by its values: a file named as a CT that is left here
            # holds labels)
            if by_name_alone and wanted == "label" and any(role == "image" for p, role in files if p != fitting[0]):
                log.warning("warning: %s folder '%s' holds %d files for case '%s': '%s' is read, and '%s' left out, "
                            "as %s, though it holds labels.", what, folder, len(files), name,
                            fitting[0].relative_to(folder), "', '".join(left),
                            "their names say they are CTs" if len(left) > 1 else "its name says it is a CT")
            files = [(fitting[0], wanted)]
        cases[name] = files[0][0]
    return cases


def _without_cts(folder: Path, what: str, listed: List[Path]) -> List[Path]:
    """``listed`` (the files of a --pred or --ref folder) without the NIfTI, NRRD and MetaImage files whose names do not
    say they are label maps and whose first slice holds CT values (:func:`~..io.reading.first_slice_shows_ct`: a few
    ms a file), named in a warning: a researcher's folder holds each CT beside its label map
    (``case.nii.gz`` and ``case_liver_tsv1.nii.gz``), and the CT, whose case name was the case's, was paired as the
    reference and stopped the whole evaluation ('Label map ... has values -1207 ...: is it the CT'). A folder of CTs
    only is kept whole, so that this error says what was given."""
    from ..io.reading import CT_FIRST_SLICE_AT_MOST_HU, first_slice_shows_ct

    cts = []
    for path in listed:
        key = case_key(path)
        if key is not None and key[1] == "label":
            continue
        if first_slice_shows_ct(path):
            cts.append(path)
    if not cts or len(cts) == len(listed):
        return listed
    names = ", ".join(str(p.relative_to(folder)) for p in cts[:5]) + (" ..." if len(cts) > 5 else "")
    log.warning("warning: %d file(s) in %s '%s' hold CT values (air below %g HU), not label maps, and are not read as "
                "cases (%s).", len(cts), what, folder, CT_FIRST_SLICE_AT_MOST_HU, names)
    return [p for p in listed if p not in cts]


MSD_FOLDER_OF_ROLE = {"label": "labelsTr", "image": "imagesTr"}
"""The subfolder of an MSD / nnU-Net data set (``Task03_Liver/``) that holds what an option takes."""


def _refuse_msd_data_set_folder(folder: Path, what: str, files: List[Path]) -> None:
    """InputError naming the subfolder to give when ``files``, one case's files of one name, lie in the imagesTr/,
    labelsTr/ (or imagesTs/, labelsTs/) folders of an MSD / nnU-Net data set below ``folder``: ``--ref Task03_Liver``
    found ``liver_0.nii.gz`` in imagesTr/ and labelsTr/ and was told to copy the files into one folder under their
    case names, where the answer is ``--ref Task03_Liver/labelsTr``. Returns when they lie elsewhere."""
    if not all(p.parent.name in ("imagesTr", "labelsTr", "imagesTs", "labelsTs") for p in files):
        return
    data_set = files[0].parent.parent
    wanted = MSD_FOLDER_OF_ROLE.get(ROLE_OF_OPTION.get(what, ""), "labelsTr")
    images = "" if wanted == "imagesTr" else " (and its imagesTr/ as --images for the overlays)"
    where = "is" if data_set.resolve() == folder.resolve() else "holds"
    raise InputError(f"{what} folder '{folder}' {where} the MSD / nnU-Net data set '{data_set}', whose subfolders hold "
                     f"files of one name ('{files[0].name}' in "
                     f"{', '.join(repr(p.parent.name + '/') for p in files)}): give its {wanted}/ folder "
                     f"'{data_set / wanted}' as {what}{images}.")


MSD_IMAGE_FOLDERS = ("imagesTr", "imagesTs")
"""An MSD / nnU-Net data set's folders of CTs."""


def _refuse_images_of_msd_data_set(folder: Path, what: str, files: List[Path]) -> None:
    """InputError naming labelsTr/ when ``files``, the label maps ``what`` (--ref, --pred) lists below ``folder``,
    include CTs of an MSD / nnU-Net data set's imagesTr/ or imagesTs/ beside its labelsTr/: ``--ref
    Dataset003_Liver`` (nnU-Net's ``imagesTr/liver_000_0000.nii.gz``, whose names differ from the labels') took
    ``imagesTs/liver_002_0000.nii.gz`` for case liver_002's reference label map, a CT, and failed on it (or
    warned of a reference without prediction) after scoring the other cases. Returns otherwise."""
    images = [p for p in files if p.parent.name in MSD_IMAGE_FOLDERS and (p.parent.parent / "labelsTr").is_dir()]
    if not images:
        return
    data_set = images[0].parent.parent
    where = "is" if data_set.resolve() == folder.resolve() else "holds"
    raise InputError(f"{what} folder '{folder}' {where} the MSD / nnU-Net data set '{data_set}', whose "
                     f"{images[0].parent.name}/ holds CTs ('{images[0].name}'), not label maps: give its labelsTr/ "
                     f"folder '{data_set / 'labelsTr'}' as {what} (and its imagesTr/ as --images for the overlays).")


_IRCADB_HINT = ("evaluate reads one label map file per case (a 3D-IRCADb-01 patient's masks "
                "are a DICOM series per structure: MASKS_DICOM/liver, MASKS_DICOM/livertumor01, ...). Convert them "
                "first, e.g. in Python: for case in discover_cases(ROOT): ct, labels = load_case(case) "
                "(LiverTumorSegLib.training.datasets), then LiverTumorSegLib.io.write_label_map("
                "f'{case.case_id}.nii.gz', labels, ct.geometry).")
"""Advice for 3D-IRCADb-01's DICOM masks given to evaluate, which reads label map files."""


def _warn_if_other_case_numbers(pred: Path, ref: Path) -> None:
    """Two files given explicitly are compared as given; when both case names carry numbers and the numbers
    differ ('volume-3' against 'segmentation-2'), a warning says so: the pair may be a slip, and its numbers
    would be another case's. Names without numbers ('pred', 'gt') say nothing either way."""
    import re

    numbers = [re.findall(r"\d+", case_name(path) or "") for path in (pred, ref)]
    if all(numbers) and [int(n) for n in numbers[0]] != [int(n) for n in numbers[1]]:
        log.warning("warning: --pred '%s' (case '%s') and --ref '%s' (case '%s') name different case numbers; they "
                    "are compared as given. Check that the prediction belongs to this reference.",
                    pred.name, case_name(pred), ref.name, case_name(ref))


def _names_text(cases: "OrderedDict[str, Path]") -> str:
    """``: case names 'volume-0' -> '0', ...`` for up to 3 of ``cases`` (case name -> file): what the names became,
    so that a mismatch of naming schemes (LiTS's volume-N against MSD's liver_N) shows; '' for none."""
    shown = [f"'{path.name}' -> '{name}'" for name, path in list(cases.items())[:3]]
    return f"; case names {', '.join(shown)}{' ...' if len(cases) > 3 else ''}" if shown else ""


def tagged_names_hint(only_pred: Sequence[str], only_ref: Sequence[str]) -> str:
    """A sentence for unpaired case names of which one side's is the other's with a tag after it ('case0' and
    'case0_liver_tsv1', 'case1' and 'case1-gt', either way round): a tag the case names do not drop, which left
    every such case unpaired with no word on why; '' for none. Only a hint: such files are not paired (a tag
    could as well name another case, 'case1' and 'case1_b')."""
    pairs = []
    for longer, shorter, longer_side in ((only_ref, only_pred, "reference"), (only_pred, only_ref, "prediction")):
        for name in longer:
            base = max((other for other in shorter if len(name) > len(other) + 1 and name.startswith(other)
                        and name[len(other)] in "_-."), key=len, default=None)
            if base is not None:
                pairs.append((longer_side, base, name))
    if not pairs:
        return ""
    shown = ", ".join(f"'{base}' -> '{name}'" for _, base, name in pairs[:3]) + (" ..." if len(pairs) > 3 else "")
    side = pairs[0][0] if len({side for side, _, _ in pairs}) == 1 else "file"
    # the example names no extension: 'case0.nii.gz' was advised for a 'case0_liver_tsv1.nrrd' too, which renamed so
    # is a NRRD file under a NIfTI name; and where both sides held such names it read 'each file file'
    return (f" {len(pairs)} {side} name(s) are another case's name with a tag after it ({shown}), which case names "
            f"do not drop: rename (or link) each such file to its case's name, keeping its extension (e.g. "
            f"'{pairs[0][2]}' as '{pairs[0][1]}'), so that prediction and reference share one.")


def _pair_cases(preds: "OrderedDict[str, Path]", refs: "OrderedDict[str, Path]") -> List[Tuple[str, Path, Path]]:
    """``[(case, pred, ref)]`` in the references' order: the files of one case name, and then those whose names
    differ by nnU-Net's channel suffix ``_0000`` where one name's ``_0000`` was taken for it
    (:func:`~..casenames.name_with_channel_suffix`): ``labelsTs/liver_0000.nii.gz`` (case name ``liver``) and
    segment's ``liver_0000_0000.nii.gz`` (``liver_0000``) are case ``liver_0000``."""
    unpaired = OrderedDict((name, path) for name, path in preds.items() if name not in refs)
    matched = []
    for name, ref_path in refs.items():
        if name in preds:
            matched.append((name, preds[name], ref_path))
            continue
        other = name_with_channel_suffix(ref_path)
        if other in unpaired:
            matched.append((other, unpaired.pop(other), ref_path))
            continue
        taken = next((pred_name for pred_name, pred_path in unpaired.items()
                      if name_with_channel_suffix(pred_path) == name), None)
        if taken is not None:
            matched.append((name, unpaired.pop(taken), ref_path))
    return matched


def match_cases(pred: Path, ref: Path) -> Tuple[List[Tuple[str, Path, Path]], List[str], List[str]]:
    """Pair predictions with references. Returns ``(matched [(case, pred, ref)], only_pred, only_ref)``."""
    for path, what in ((pred, "--pred"), (ref, "--ref")):
        if not path.exists():
            raise InputError(f"{what} '{path}' does not exist{similar_names_hint(path)}; check the path.")
    if same_file_among([pred, ref]):  # a slip of the shell's completion scored a file against itself: Dice 1.0
        raise InputError(f"--pred '{pred}' and --ref '{ref}' are the same {'folder' if pred.is_dir() else 'file'}: "
                         f"the predictions would be scored against themselves (Dice 1.0). Give the segmentations "
                         f"as --pred and the expert labels as --ref.")
    if pred.is_file() and ref.is_file():
        _warn_if_other_case_numbers(pred, ref)
        name = case_name(ref) or ref.name
        with_suffix = name_with_channel_suffix(ref)  # None for most names (and for a .dcm, whose case_name is None)
        if with_suffix is not None and with_suffix == case_name(pred):  # labelsTs/liver_0000, liver_0000_0000
            name = with_suffix
        return [(name, pred, ref)], [], []
    if pred.is_dir() != ref.is_dir():
        folder = pred if pred.is_dir() else ref
        hint = ""
        if holds_dicom_images(folder, 20, is_dicom_file):
            hint = f" '{folder}' is a DICOM series folder, not a label map file: {_IRCADB_HINT}"
        elif folder.name == "MASKS_DICOM" or (folder / "MASKS_DICOM").is_dir():  # a 3D-IRCADb patient's masks
            hint = f" '{folder}' holds 3D-IRCADb's DICOM mask series, not a label map file: {_IRCADB_HINT}"
        raise InputError(f"--pred '{pred}' and --ref '{ref}' must both be files or both be folders.{hint}")
    preds, refs = list_cases(pred, "--pred"), list_cases(ref, "--ref")
    matched = _pair_cases(preds, refs)
    paired_preds = {pred_path for _, pred_path, _ in matched}
    paired_refs = {ref_path for _, _, ref_path in matched}
    only_pred = [name for name, path in preds.items() if path not in paired_preds]
    only_ref = [name for name, path in refs.items() if path not in paired_refs]
    same = [name for name, pred_path, ref_path in matched if same_file_among([pred_path, ref_path])]
    if same:  # links, or one folder holding the other's files
        raise InputError(f"{len(same)} case(s) of --pred '{pred}' are the same files as --ref '{ref}' holds "
                         f"({', '.join(same[:10])}{' ...' if len(same) > 10 else ''}): they would be scored against "
                         f"themselves (Dice 1.0). Give the segmentations as --pred and the expert labels as --ref.")
    if not matched:
        hint = ""
        if any((p / "MASKS_DICOM").is_dir() for p in (pred, ref, *pred.iterdir(), *ref.iterdir()) if p.is_dir()):
            hint = " 3D-IRCADb masks (MASKS_DICOM/ DICOM series) are not label map files: " + _IRCADB_HINT
        hint += _seg_files_hint(pred, ref)
        raise InputError(f"No case name matches between --pred '{pred}' ({len(preds)} files{_names_text(preds)}) and "
                         f"--ref '{ref}' ({len(refs)} files{_names_text(refs)}). Case names are file names without "
                         f"extension and without prefixes such as 'segmentation-' (see 'livertumorseg evaluate "
                         f"--help'): rename or link the files so that each prediction and its reference share one."
                         f"{tagged_names_hint(list(preds), list(refs))}{hint}")
    return matched, only_pred, only_ref


SEG_FILES_LOOKED_AT = 200
"""At most this many ``.dcm`` files of each folder are opened by :func:`_seg_files_hint` (a DICOM series folder
holds thousands)."""


def _seg_files_hint(*folders: Path) -> str:
    """A hint naming the DICOM SEG files (``.dcm``) in ``folders`` (their own files): folders are paired by case
    name, which a ``.dcm`` has none of (DICOM files are named by UIDs), so SEGs were left out without a word and
    the error said only "0 files"; '' when there are none."""
    from ..dicom_seg import is_dicom_seg

    found = []
    for folder in folders:
        looked = 0
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() != ".dcm" or not path.is_file():
                continue
            looked += 1
            if looked > SEG_FILES_LOOKED_AT:
                break
            if is_dicom_seg(path):
                found.append(path)
    if not found:
        return ""
    names = ", ".join(f"'{p}'" for p in found[:3]) + (" ..." if len(found) > 3 else "")
    return (f" DICOM SEG files ({len(found)}: {names}) are not paired from folders: give each as a file (--pred FILE "
            f"--ref FILE), or write the predictions as .nii.gz / .seg.nrrd named by case (segment -o case.nii.gz).")


def optional_inputs(path: Optional[str], cases: List[str], what: str,
                    other_names: Optional[Dict[str, str]] = None) -> Dict[str, Path]:
    """Case -> file for an optional per-case input (``--prob``, ``--images``): a file (only with one case)
    or a folder matched by case name; missing cases are warned about. A file named as a case's other reading of
    nnU-Net's ``_0000`` (``other_names``: case -> its name with ``_0000``, :func:`_other_case_names`; or the
    file's own, :func:`~..casenames.name_with_channel_suffix`) is that case's when no file has its name and no
    other case has the file's. An option whose role
    (:data:`ROLE_OF_OPTION`) is ``"image"`` (``--images``) may also name one DICOM series folder, the one case's
    CT, as segment reads it."""
    if not path:
        return {}
    location = Path(path)
    if not location.exists():
        raise InputError(f"{what} '{location}' does not exist{similar_names_hint(location)}; check the path.")
    if location.is_file():
        if len(cases) != 1:
            raise InputError(f"{what} '{location}' is one file but {len(cases)} cases are evaluated; give a folder.")
        return {cases[0]: location}
    found = list_cases(location, what)
    takes_a_series = ROLE_OF_OPTION.get(what) == "image"  # a CT option: one DICOM series is one CT
    if not found and takes_a_series and holds_dicom_images(location, 20, is_dicom_file):
        if len(cases) != 1:
            raise InputError(f"{what} '{location}' is a DICOM folder (one CT) but {len(cases)} cases are evaluated; "
                             f"give a folder of CT files named like the cases.")
        return {cases[0]: location}
    files = {c: _file_of_case(c, found, cases, (other_names or {}).get(c)) for c in cases}
    missing = [c for c in cases if files[c] is None]
    if missing:
        log.warning("warning: %s has no file for %d case(s): %s", what, len(missing), ", ".join(missing[:20]))
    return {c: path for c, path in files.items() if path is not None}


def _file_of_case(case: str, found: "OrderedDict[str, Path]", cases: Sequence[str],
                  other_name: Optional[str]) -> Optional[Path]:
    """The file of ``found`` (case name -> file) for ``case``: of its name, else of its ``other_name`` (its name
    with nnU-Net's ``_0000``), else one whose name with ``_0000`` is the case's; a file of another of ``cases``'
    names is not taken. None when there is none."""
    if case in found:
        return found[case]
    if other_name and other_name in found and other_name not in cases:
        return found[other_name]
    return next((path for name, path in found.items()
                 if name not in cases and name_with_channel_suffix(path) == case), None)


def _other_case_names(matched: Sequence[Tuple[str, Path, Path]]) -> Dict[str, str]:
    """Case -> its name with nnU-Net's ``_0000`` where its prediction's or reference's ``_0000`` was taken for the
    channel suffix (nnU-Net's own predictions and labels of case ``liver_0000``, named ``liver_0000.nii.gz``, are
    case ``liver``; its CT ``liver_0000_0000.nii.gz`` is ``liver_0000``)."""
    other_names = {}
    for case, pred_path, ref_path in matched:
        other = name_with_channel_suffix(pred_path) or name_with_channel_suffix(ref_path)
        if other and other != case:
            other_names[case] = other
    return other_names


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate", help="compare predicted with reference label maps (Dice, surface distances, lesions)",
        description=__doc__)
    p.add_argument("--pred", required=True, help="predicted label map file or folder (0 bg, 1 liver, 2 tumor)")
    p.add_argument("--ref", required=True, help="reference label map file or folder")
    p.add_argument("-o", "--output-dir", "--output", dest="output_dir", metavar="OUT_DIR", required=True,
                   help="folder for cases.csv, summary.json and plots/ (--output, as the other commands spell it, "
                        "is the same)")
    p.add_argument("--label-map", metavar="JSON",
                   help="map the references' raw values to 0/1/2, e.g. '{\"255\": 1}' for 0/255 masks or "
                        "'{\"1\": 1, \"2\": 2, \"5\": 1}'; values not listed become 0")
    p.add_argument("--pred-label-map", metavar="JSON",
                   help="the same for the predictions (another tool's label values)")
    p.add_argument("--prob", "--probabilities", dest="prob", metavar="PROB",
                   help="probability map file or folder (floats in [0, 1], or uint8 255 x p as segment "
                        "--probabilities writes; same grid as the reference) for ROC and, of tumor, the lesion "
                        "FROC (--probabilities, as segment and measure spell it, is the same)")
    p.add_argument("--prob-structure", choices=["tumor", "liver"], default="tumor",
                   help="what --prob is the probability of (default: tumor)")
    p.add_argument("--images", help="CT file or folder of CT files named like the cases (a DICOM series folder "
                                    "with one case), background of the overlay PNGs")
    p.add_argument("--detection-iou", type=number(float), default=0.5, metavar="IOU",
                   help="a lesion is detected when IoU > this (default 0.5, LiTS)")
    p.add_argument("--connectivity", type=number(int), choices=[6, 18, 26], default=26,
                   help="voxel connectivity of lesions (default 26, as segment's lesion report counts them; "
                        "the LiTS challenge script used 6, scipy's default: pass 6 to compare with LiTS numbers)")
    p.add_argument("--rank-metric", default="dice_liver", metavar="COLUMN",
                   help="score choosing the best and worst case overlays (default dice_liver; a volume, burden "
                        "or lesion count is no score and is refused); cases where it "
                        "is undefined (NaN, e.g. hd95_tumor_mm of a case with no predicted tumor) are not ranked, "
                        "so the 'worst' overlay is the worst case with a value")
    p.add_argument("--no-surface", action="store_true", help="skip surface distances (faster)")
    p.add_argument("--no-plots", action="store_true", help="write only cases.csv and summary.json")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs in OUT_DIR")
    p.add_argument("--no-progress", "--no-progress-bar", action="store_true",
                   help="no per-case progress lines (the summary is still printed)")
    p.refused_together = [(option, "--no-plots", f"{option} is used only for the overlay PNGs, which --no-plots "
                                                 f"leaves out; give one or the other")
                          for option in ("--images", "--rank-metric")]
    p.needs_another = [("--prob-structure", "--prob", "it says what the --prob map is the probability of, and "
                                                      "without one there is no ROC to draw; add --prob PROB, or "
                                                      "leave --prob-structure out")]
    return p


def _output_paths(out_dir: Path) -> Dict[str, Path]:
    return {"table": out_dir / "cases.csv", "summary": out_dir / "summary.json", "plots": out_dir / "plots"}


def _check_output_kinds(paths: Dict[str, Path]) -> None:
    """Refuse an ``-o`` (or its ``plots``) that is a file, or that begins with a '~' the shell left as it was."""
    from ..fileutil import refuse_unexpanded_home

    out_dir = paths["table"].parent
    refuse_unexpanded_home(out_dir, "-o")  # --output=~/ev wrote ./~/ev and said 'wrote ~/ev/summary.json'
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"-o '{out_dir}' is a file; evaluate writes a folder (cases.csv, summary.json, plots/): "
                         f"name a new or existing folder.")
    from ..fileutil import full_suffix
    # a new -o named like one of its own result files (`-o results.csv`, `-o summary.json`) was made a folder of that
    # name holding cases.csv, as the batch form of segment refuses `-o seg.nii.gz`; a folder named after an input
    # (`-o eval_case1.nii.gz`, as scripts name them) is still taken
    if not out_dir.exists() and full_suffix(out_dir) in (".csv", ".json"):
        raise InputError(f"-o '{out_dir}' names a {full_suffix(out_dir)} file, but evaluate writes a folder "
                         f"(cases.csv, summary.json, plots/): give a folder name (e.g. -o eval/).")
    if paths["plots"].exists() and not paths["plots"].is_dir():
        raise InputError(f"'{paths['plots']}' is a file, but evaluate writes its plots into a folder of that name; "
                         f"move it or choose another -o folder.")


def _check_outputs(paths: Dict[str, Path], overwrite: bool, cases: Sequence[str] = ()) -> None:
    """Put back what a killed --overwrite run left hidden, then refuse outputs in the way (without ``overwrite``).
    ``cases``: this run's case names, whose overlays' hidden names are looked for too (:func:`_plot_names`). The
    caller has run :func:`_check_output_kinds` first (before pairing the cases)."""
    from ..fileutil import restore_set_aside_outputs_of, through_link

    # written through a symbolic link, as segment's outputs are (fileutil.through_link): where a killed run set
    # the earlier version aside, beside the file the link names
    files = {key: through_link(paths[key]) for key in ("table", "summary")}
    # results a killed --overwrite run left hidden (.cases.csv.<pid>.old) are back before they are judged, all of
    # one run together
    restore_set_aside_outputs_of([files["table"], files["summary"]] + _plot_names(paths["plots"], cases),
                                 [(paths["plots"], is_evaluate_plot_name)])
    for key, path in files.items():
        if path.is_dir():  # --overwrite, which the advice below names, cannot replace a folder
            raise InputError(f"'{path}' is a folder, but evaluate writes a file of that name; move it or choose "
                             f"another -o folder.")
        if path.is_symlink() and not path.exists() and not overwrite:  # a link to nothing is the user's too
            raise OutputExistsError(f"'{path}' is a symbolic link (to the missing '{os.readlink(path)}'); pass "
                                    f"--overwrite to replace the link or choose another -o folder.")
        if path.exists() and not overwrite:
            raise OutputExistsError(f"'{paths[key]}' already exists; pass --overwrite or choose another -o folder.")
    if paths["plots"].is_dir() and any(paths["plots"].iterdir()) and not overwrite:
        raise OutputExistsError(f"'{paths['plots']}' already holds plots; pass --overwrite or choose another "
                                f"-o folder.")


def _read_labels(pred_path: Path, ref_path: Path, label_maps: Tuple[Optional[dict], Optional[dict]]):
    """``(prediction, reference)`` label maps (0/1/2 uint8 on the reference's grid; on the prediction's where the
    reference is a DICOM SEG, placed there), each remapped by its ``--pred-label-map`` / ``--label-map`` when
    given."""
    from ..dicom_seg import is_dicom_seg
    from ..io import read_label_map
    from ..io.labels import ANY_LABEL_VALUE, remap_labels

    pred_map, ref_map = label_maps
    pred = None
    if is_dicom_seg(ref_path) and not is_dicom_seg(pred_path):
        # a reference SEG that leaves out empty frames (dcmqi's, OHIF's default) is read as the slices it holds:
        # placed on the prediction's grid (that of the CT the SEG references), as a --pred SEG is on the reference's;
        # the prediction was refused as "made for another image" (112 slices vs the SEG's 42)
        pred = read_label_map(pred_path, allowed_values=ANY_LABEL_VALUE)
        ref = read_label_map(ref_path, reference=pred, allowed_values=ANY_LABEL_VALUE)
    else:
        ref = read_label_map(ref_path, allowed_values=ANY_LABEL_VALUE)
    # what a map sends to background is also among the case's warnings in summary.json, not only on stderr
    ref.array = remap_labels(ref.array, ref_map, str(ref_path), option="--label-map",
                             warnings=ref.meta.setdefault("warnings", []))
    reoriented = pred is None
    if pred is None:
        pred = read_label_map(pred_path, reference=ref, allowed_values=ANY_LABEL_VALUE)
    pred.array = remap_labels(pred.array, pred_map, str(pred_path), option="--pred-label-map",
                              warnings=pred.meta.setdefault("warnings", []))
    if reoriented:
        _warn_of_a_header_that_mirrors(pred, ref, pred_path, pred_map)
    return pred, ref


def _warn_of_a_header_that_mirrors(pred, ref, pred_path: Path, pred_map: Optional[dict]) -> None:
    """A warning (logged, and among the prediction's warnings for summary.json) when the prediction, stored in another
    axis order than its reference and reoriented onto it by its header, overlaps the reference's liver far less than
    its voxels as stored would (:data:`HEADER_MIRROR_DICE_GAIN`): one of the two headers is probably flipped (a
    conversion), and the case's Dice says so only as a low number (0.23 for a prediction equal to its reference but
    for a header flipped in x, with the note 'reoriented' in summary.json alone: the data-side audit)."""
    from ..io import read_label_map
    from ..io.labels import ANY_LABEL_VALUE, REORIENTED_NOTE, remap_labels
    from ..metrics.overlap import dice

    if REORIENTED_NOTE not in pred.meta.get("warnings", []):
        return
    placed_dice = dice(pred.array >= 1, ref.array >= 1)
    if HEADER_MIRROR_DICE_GAIN * placed_dice + 0.2 > 1.0:  # no Dice as stored could be that much higher: no re-read
        return
    stored = read_label_map(pred_path, allowed_values=ANY_LABEL_VALUE).array
    if stored.shape != ref.array.shape:  # a transposed grid: the reference's voxel order cannot be meant
        return
    stored = remap_labels(stored, pred_map, str(pred_path), option="--pred-label-map", warnings=[])
    stored_dice = dice(stored >= 1, ref.array >= 1)
    if not stored_dice >= HEADER_MIRROR_DICE_GAIN * placed_dice + 0.2:
        return
    text = (f"'{pred_path}' is stored in another axis order than its reference and was reoriented onto it by its "
            f"header, which gives liver Dice {placed_dice:.4f}; read in the reference's own voxel order it would be "
            f"{stored_dice:.4f}: one of the two headers is probably wrong (flipped by a conversion). Give the "
            f"prediction its CT's header (as segment writes it) and evaluate again")
    pred.meta.setdefault("warnings", []).append(text)
    log.warning("warning: %s", text)


HEADER_MIRROR_DICE_GAIN = 2.0
"""How many times (plus 0.2) a prediction's liver Dice read in its reference's voxel order must exceed its Dice as
its header places it before evaluate says a header probably mirrors it."""


def _scale_undecided(prob, divisor: float) -> bool:
    """Whether a probability map read with ``divisor`` (:func:`~..io.probability.probability_divisor`) holds
    integers whose scale its file does not settle: untagged integers of only 0 and 1, a hard 0/1 map or a confident
    255 x p map (tumor-free: its highest value 1 = 1/255). An all-zero map is 0 in any scale (it was named as read
    in 255ths); a map stored as floats is probabilities (the reader keeps it float)."""
    import numpy as np

    array = np.asarray(prob)
    return bool(np.issubdtype(array.dtype, np.integer)) and divisor == 1.0 and bool(array.size) and array.max() == 1


def _pool_undecided(roc, froc_cases: list, undecided: list, integer_255: bool) -> Optional[str]:
    """Add the maps of undecided scale (:func:`_scale_undecided`; ``(case, levels, hits)``, their FROC hits
    computed as 0/1) to the pooled ROC and the FROC in the scale of the set's other integer maps: 255 x p where one
    was read so (``integer_255``), else 0/1. Each case was read on its own, so a tumor-free 255 x p map of another
    tool whose background is 1 counted as probability 1.0, above every other case's tumors in the pooled ROC
    (0.799 instead of 0.946: the evaluate audit). Returns what was decided, for the log and summary.json, where
    it was 255 x p."""
    divisor = 255.0 if integer_255 else 1.0
    for _, levels, hits in undecided:
        roc.add_levels(levels, divisor)
        if hits is not None:
            hits.confidences = hits.confidences / divisor
            froc_cases.append(hits)
    if not undecided or not integer_255:
        return None
    names = ", ".join(case for case, _, _ in undecided[:10]) + (" ..." if len(undecided) > 10 else "")
    return (f"the probability maps of {len(undecided)} case(s) ({names}) hold only the integers 0 and 1 and no "
            f"tag saying their scale; as the set's other integer maps are 255 x probability, they were read so "
            f"too (0 and 1/255) in the pooled ROC and FROC, not as probabilities 0 and 1. Store probabilities as "
            f"floats in [0, 1] (or as segment --probabilities writes them) to leave no doubt.")


def _read_case(case: str, pred_path: Path, ref_path: Path, prob_path: Optional[Path],
               label_maps: Tuple[Optional[dict], Optional[dict]] = (None, None)):
    """``(pred, ref, prob, divisor)``: the case's label maps and its probability map as stored (None without
    one; a uint8 ``255 x p`` map stays integers, no float copy) with the divisor making it probabilities
    (:func:`~..io.probability.read_probability_levels`)."""
    from ..metrics.lits import check_same_grid

    pred, ref = _read_labels(pred_path, ref_path, label_maps)
    check_same_grid(pred, ref, case)
    prob, divisor = None, 1.0
    if prob_path is not None:  # the prediction's grid in another axis order is fine
        from ..errors import LabelError
        from ..io.probability import read_probability_levels

        prob, divisor = read_probability_levels(prob_path, ref, f"case '{case}': probability map '{prob_path}' is "
                                                                f"not on the reference's grid", LabelError)
    return pred, ref, prob, divisor


def _check_case_memory(case: str, pred, ref, prob, surface: bool, prob_structure: str) -> None:
    """Refuse (ResourceError) a case whose metrics need more memory than is available, estimated from the boxes
    holding its liver and tumors (:func:`~..metrics.lits.evaluate_case_memory_bytes`; ``pred`` and ``ref``: its label
    maps as read, ``prob``: its probability map or None), checked once its maps are read (each read is checked from
    its header) and before the metrics: a large pair of volumes ended in a MemoryError or the out-of-memory killer."""
    from ..metrics.lits import EVALUATE_GRID_BYTES_PER_VOXEL, evaluate_case_memory_bytes
    from ..validation import check_memory

    def needed(exact_surface: bool) -> int:
        return evaluate_case_memory_bytes(pred.array, ref.array, surface=surface, probabilities=prob,
                                          prob_structure=prob_structure, exact_surface=exact_surface)

    what = f"case '{case}' ((z, y, x) {tuple(ref.shape_zyx)} voxels)"
    advice = (f"its metrics need {EVALUATE_GRID_BYTES_PER_VOXEL} bytes a voxel of its grid beside the label maps and "
              f"more in the boxes holding its liver and tumors (surface distances, lesion labelling). Close other "
              f"programs, evaluate this case on a machine with more memory, or move it out of the --pred/--ref "
              f"folders to evaluate the others")
    try:  # an upper bound without the surfaces' erosions (they cost ~18 % of a case's metrics) settles most cases
        check_memory(needed(exact_surface=False), what=what, advice=advice)
    except ResourceError:  # only the exact estimate refuses a case
        check_memory(needed(exact_surface=True), what=what, advice=advice)


def _prepare_overlays(rows, matched, images: Dict[str, Path], metric: str,
                      label_maps: Tuple[Optional[dict], Optional[dict]] = (None, None)) -> List[Dict[str, object]]:
    """Read everything the best/worst overlays need (label maps, CTs from --images) *before* any output is
    written, so an unreadable CT stops the run with nothing left behind. Returns one dict per overlay:
    ``tag, case, pred, ref, image, spacing_zyx, title`` (canonical ``(z, y, x)`` arrays)."""
    from . import read_one_series
    from ..io.labels import onto_reference_grid
    from ..volume import sides_unknown
    from ..metrics.report import rank_cases
    from ..orientation import canonicalize
    from ..validation import label_map_description
    import numpy as np

    known = {key for row in rows for key in row}
    if rows and metric not in known:  # a misspelt metric drew no overlays with a warning and exit 0
        numeric = sorted({key for row in rows for key, value in row.items()
                          if isinstance(value, (int, float)) and not isinstance(value, bool)})
        raise InputError(f"--rank-metric {metric} is not a column of this evaluation's cases.csv; choose one of: "
                         f"{', '.join(numeric)}.")
    best, worst = rank_cases(rows, metric)
    if best is None:
        log.warning("warning: no case has a value for --rank-metric %s; no overlays drawn", metric)
        return []
    from ..metrics.report import metric_values
    has_value = ~np.isnan(metric_values(rows, metric))
    ranked = int(np.count_nonzero(has_value))
    if ranked < len(rows):  # a missed tumor (HD95 undefined) was left out of 'worst' without a word
        unranked = [str(row["case"]) for row, has in zip(rows, has_value) if not has]
        shown = ", ".join(repr(name) for name in unranked[:5]) + (f" and {len(unranked) - 5} more"
                                                                  if len(unranked) > 5 else "")
        why = ("a surface distance is undefined where one side has no such structure" if metric in surface_columns()
               else "undefined where neither side has that structure")
        log.warning("warning: %d of %d cases have no value of --rank-metric %s (%s; %s): the best/worst overlays rank "
                    "only the others", len(unranked), len(rows), metric, shown, why)
    if best == worst and ranked > 1:  # one overlay and no word: read as a missing 'worst' picture
        log.warning("warning: all %d cases with a value have the same --rank-metric %s; one overlay drawn (case "
                    "'%s')", ranked, metric, best)
    paths = {name: (p, r) for name, p, r in matched}
    row_of = {row["case"]: row for row in rows}
    overlays = []
    for tag, case in (("best", best), ("worst", worst)):
        pred_path, ref_path = paths[case]
        pred, ref = _read_labels(pred_path, ref_path, label_maps)
        ref_c, reorientation = canonicalize(ref)
        image = None
        if case in images:
            ct = onto_reference_grid(read_one_series(images[case], "evaluate"), ref, 1e-3)  # or another axis order
            bad = 0 if ct is None else int(ct.array.size - np.count_nonzero(np.isfinite(ct.array)))
            label_map = None if ct is None or bad else label_map_description(ct.array)
            if bad:  # an all-NaN CT drew a blank overlay without a word
                log.warning("warning: CT '%s' of case '%s' has %d NaN/Inf voxels; overlay without CT",
                            images[case], case, bad)
            elif label_map is not None:  # a label map given as --images drew a black overlay without a word
                log.warning("warning: '%s', given with --images as the CT of case '%s', looks like a label map, not a "
                            "CT (%s); overlay without CT: give the CTs' folder", images[case], case, label_map)
            elif ct is not None:
                image = reorientation.to_canonical(ct.array)
            else:
                log.warning("warning: CT '%s' is not on the label grid of case '%s'; overlay without CT",
                            images[case], case)
        row = row_of[case]
        title = (f"{tag} case '{case}': liver Dice {row.get('dice_liver', float('nan')):.3f}, "
                 f"tumor Dice {row.get('dice_tumor', float('nan')):.3f}")
        overlays.append({"tag": tag, "case": case, "pred": reorientation.to_canonical(pred.array),
                         "ref": ref_c.array, "image": image, "spacing_zyx": ref_c.spacing_zyx, "title": title,
                         "slice_s_mm": [ref_c.geometry.slice_centre_s_mm(k, ref_c.shape_zyx)
                                        for k in range(ref_c.shape_zyx[0])],
                         # a NIfTI without sform and qform, a NRRD without space: its sides are a guess, not
                         # marked R/L/A/P
                         "orientation_known": not sides_unknown(ref)})
        if best == worst:
            break
    return overlays


def _write_overlays(overlays: List[Dict[str, object]], plots_dir: Path, overwrite: bool) -> List[Path]:
    from ..metrics.report import plot_case_overlay

    return [plot_case_overlay(o["pred"], o["ref"], plots_dir / overlay_plot_name(o["tag"], o["case"], plots_dir),
                              image=o["image"], spacing_zyx=o["spacing_zyx"], title=o["title"], overwrite=overwrite,
                              slice_s_mm=o["slice_s_mm"], orientation_known=o.get("orientation_known", True))
            for o in overlays]


BOXPLOT_NAME = "boxplots.png"
ROC_PLOT_NAME = "roc_{structure}.png"             # structure: tumor or liver (--prob-structure)
FROC_PLOT_NAME = "froc_tumor.png"                 # lesion FROC, with a tumor probability map
OVERLAY_PLOT_NAME = "overlay_{tag}_{case}.png"    # tag: best or worst
"""The names of the pictures evaluate draws in ``OUT_DIR/plots``; :data:`PLOT_NAME_PATTERNS` matches them."""
PLOT_NAME_PATTERNS = (BOXPLOT_NAME, ROC_PLOT_NAME.format(structure="tumor"), ROC_PLOT_NAME.format(structure="liver"),
                      FROC_PLOT_NAME,
                      OVERLAY_PLOT_NAME.format(tag="best", case="*"), OVERLAY_PLOT_NAME.format(tag="worst", case="*"))


def overlay_plot_name(tag: str, case: str, plots: Path) -> str:
    """:data:`OVERLAY_PLOT_NAME` of ``case``, its case part cut and ended with a digest (``fileutil.name_within``)
    where the whole name would pass the file system's limit on a name: a case named with 238-251 bytes, as its
    label maps could be, failed the whole evaluation after every case was scored ('File name too long'), with
    nothing written. (Set-aside and temporary names of long outputs are cut by fileutil itself.)"""
    from ..fileutil import longest_name, name_within

    room = longest_name(plots) - len(OVERLAY_PLOT_NAME.format(tag=tag, case="").encode("utf-8"))
    return OVERLAY_PLOT_NAME.format(tag=tag, case=name_within(case, room))


def _plot_names(plots: Path, cases: Sequence[str]) -> List[Path]:
    """The plots of ``plots`` by name: those there now and the overlays of ``cases``. A plot named with more than
    222 characters (a long case name) is set aside under a cut name ending in a digest (fileutil.set_aside_name),
    which is found only from its own name: :func:`is_evaluate_plot_name` on the cut name left it hidden."""
    there = [p for p in (plots.glob("*.png") if plots.is_dir() else []) if is_evaluate_plot_name(p.name)]
    overlays = [plots / overlay_plot_name(tag, case, plots) for case in cases for tag in ("best", "worst")]
    return there + overlays


def is_evaluate_plot_name(name: str) -> bool:
    """Whether ``name`` is one evaluate gives a picture (:data:`PLOT_NAME_PATTERNS`): only those are removed as
    an earlier run's stale plots."""
    import fnmatch

    return any(fnmatch.fnmatchcase(name, pattern) for pattern in PLOT_NAME_PATTERNS)


STAGE_PREFIX = ".evaluate."
"""The start of the name of the hidden folder in ``OUT_DIR`` where evaluate writes its results before moving them
into place (then this process's id and start time, ``-``, a random part and ``.tmp``:
``fileutil.temporary_prefix``)."""


@contextlib.contextmanager
def _staged_outputs(out_dir: Path, overwrite: bool) -> Iterator[Dict[str, Path]]:
    """Output paths (:func:`_output_paths`) inside a hidden staging folder in ``out_dir``; when the block ends
    normally every staged file is moved to its place in ``out_dir`` (replacing the previous run's with
    ``overwrite``, --overwrite; without it a file that appeared there during the run, after
    :func:`_check_outputs` found none, is not replaced: OutputExistsError, and none of this run's files stay),
    else the staging folder is removed. A failed or interrupted run (error, Ctrl-C) therefore
    leaves ``out_dir`` as it was: nothing new, and the previous results intact. The staging folder is named
    ``.evaluate.{pid}-{start time}@{host}-{random}.tmp`` (``fileutil.temporary_prefix``): one that a killed run
    (SIGKILL, the out-of-memory killer) left behind is removed by a later run into ``out_dir`` once its process
    has ended (``remove_stale_temporaries``), never when ``{host}`` is another computer's (``OUT_DIR`` on a network
    drive: a run there may still be writing into its staging folder)."""
    import shutil
    import tempfile

    from ..fileutil import (outermost_missing_folder, remove_empty_folders, remove_stale_temporaries,
                            stop_signals_held, temporary_prefix)

    created = outermost_missing_folder(out_dir)  # -o a/b/c with only a/ there: b is made, and removed on failure
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir, STAGE_PREFIX, ".tmp")
    stage = None  # type: Optional[Path]  # the staging folder, once made (a stop as mkdtemp returned left it behind)
    plots_made = None
    try:
        with stop_signals_held():
            stage = Path(tempfile.mkdtemp(prefix=temporary_prefix(STAGE_PREFIX), suffix=".tmp", dir=str(out_dir)))
        staged = _output_paths(stage)
        staged["plots"].mkdir()
        yield staged
        from ..fileutil import folders_locked
        # two runs into one OUT_DIR at once place their results one after the other: interleaved, one run's
        # rollback met the other's set-aside files ('internal error: FileNotFoundError: ... .cases.csv...old')
        with folders_locked([out_dir]):
            plots_made = outermost_missing_folder(out_dir / "plots")  # removed again, while empty, if the moves fail
            _place_staged(stage, out_dir, overwrite)
    except BaseException as exc:
        stage_removed = stage is not None and not stage.is_dir()
        if stage is not None:  # (not made where a stop came before the staging folder was)
            _name_outside_stage(exc, stage, out_dir)
            shutil.rmtree(stage, ignore_errors=True)
        if plots_made is not None:
            remove_empty_folders(plots_made, plots_made)
        if created is not None:  # made by this run, and removed only while empty (another run may share it)
            remove_empty_folders(out_dir, created)
        if stage_removed and isinstance(exc, (OSError, InputError)):  # it said "Output folder
            # 'OUT/.evaluate.<pid>-...tmp/plots' does not exist; create it first"
            raise InputError(f"The output folder '{out_dir}' (or the hidden folder {STAGE_PREFIX}...tmp in it, "
                             f"where evaluate writes its results first) was removed or moved while evaluate ran; "
                             f"nothing was written. Run evaluate again.") from None
        raise
    shutil.rmtree(stage, ignore_errors=True)


def _place_staged(stage: Path, out_dir: Path, overwrite: bool) -> None:
    """Move every file of the staging folder ``stage`` to its place in ``out_dir`` (all or none), then remove an
    earlier run's plots this run did not draw."""
    from ..fileutil import move_all_or_none, sources_beside_targets, through_link

    names = [out_dir / source.relative_to(stage) for source in sorted(p for p in stage.rglob("*") if p.is_file())]
    for name in names:
        name.parent.mkdir(exist_ok=True)
    # an output that is a symbolic link is written to the file it names, the link kept (as segment, measure and
    # followup write); the link was replaced by a plain file, and the file it named kept the old results
    moves = [(stage / name.relative_to(out_dir), through_link(name)) for name in names]
    # all of this run's results or, when a move fails halfway, all of the previous run's, never a mix
    with sources_beside_targets(moves) as near:  # a link's file elsewhere, maybe on another file system
        move_all_or_none(near, overwrite=overwrite)
    placed = set(names)
    plots = out_dir / "plots"  # an earlier run's plots this run did not draw (other cases) would pass for its
    for old in (plots.glob("*.png") if plots.is_dir() else []):
        if old not in placed and is_evaluate_plot_name(old.name):  # a user's own pictures stay
            old.unlink()


def _name_outside_stage(exc: BaseException, stage: Path, out_dir: Path) -> None:
    """A file-system error naming a file in the hidden staging folder ``stage`` names it where it was going, in
    ``out_dir``: a full disk said "Cannot write 'OUT/.evaluate.28980-33sh7@host-5mx_5tvw.tmp/summary.json'"."""
    if not isinstance(exc, OSError):
        return
    for attribute in ("filename", "filename2"):
        name = getattr(exc, attribute)
        if isinstance(name, str) and Path(name).is_relative_to(stage):
            setattr(exc, attribute, str(out_dir / Path(name).relative_to(stage)))


def _holds_value(labels_zyx, value: int, chunk_slices: int = 16) -> bool:
    """Whether any voxel of ``labels_zyx`` ``(z, y, x)`` is ``value``: a few slices at a time, stopping at the first
    hit, so no whole-volume temporary (``labels == 1`` of a 512 x 512 x 1000 map is 260 MB beside the case's own
    arrays) and usually one chunk's look."""
    import numpy as np

    return any(np.any(labels_zyx[start:start + chunk_slices] == value)
               for start in range(0, labels_zyx.shape[0], chunk_slices))


def _empty_reference_warnings(case: str, ref_zyx) -> List[str]:
    """A warning (printed and in the summary's ``warnings``) when a reference label map ``(z, y, x)`` holds neither
    liver nor tumor: its liver Dice is 1.0 for an empty prediction and 0.0 for any other, which says nothing about
    the segmentation (a wrong file, or label values that --label-map should map); or tumor without liver (a
    tumor-only annotation): its liver Dice compares the predicted liver with the tumors alone (0.02 on a real CT,
    printed without a word before)."""
    import numpy as np

    if not np.any(ref_zyx):
        text = ("reference: it holds no liver or tumor (every voxel background): its liver Dice is 1.0 for an empty "
                "prediction and 0.0 for any other. Check that it is the right file, and its label values "
                "(--label-map).")
    elif not _holds_value(ref_zyx, 1):
        text = ("reference: it holds tumor (2) but no liver (1) (an annotation of the tumors only, or an empty Liver "
                "segment): its liver (label >= 1) is the tumors alone, so the liver numbers (dice_liver, "
                "volume_outside_ref_liver_ml, tumor_burden_ref, ...) do not measure the liver; its tumor Dice and "
                "lesion counts do. Check its label values (--label-map).")
    else:
        return []
    log.warning("warning: case %s: %s", case, text)
    return [text]


def _stopped_at_case(exc: InputError, case: str, index: int, n_cases: int) -> InputError:
    """A copy of ``exc`` (a case's unreadable file, other grid, bad label values; ``n_cases`` >= 2 cases evaluated)
    saying which case of how many stopped the run and what to do: in a folder of 100 cases the message named only a
    file, not that the cases before it had been scored in vain, that nothing was written and that those after it
    were never read. ``index``: the case's 0-based place among the ``n_cases`` paired cases."""
    return type(exc)(f"{exc} (case '{case}', {index + 1} of {n_cases}: evaluate stops at the first case it cannot "
                     f"score and writes nothing, no cases.csv or summary.json; fix this case's files, or move them "
                     f"out of the --pred/--ref folders to evaluate the other {n_cases - 1}.)")


def surface_columns() -> List[str]:
    """The cases.csv columns that are surface distances (mm), which ``--no-surface`` leaves out."""
    from ..metrics.lits import LITS_LESION_SURFACE_KEYS, SURFACE_KEYS

    return ([f"{key}_{structure}_mm" for structure in ("liver", "tumor") for key in SURFACE_KEYS]
            + [f"lits_lesion_{key}" for key in LITS_LESION_SURFACE_KEYS])


def _refuse_a_surface_rank_metric_without_surfaces(metric: str, no_surface: bool) -> None:
    """InputError before any case is read when ``--rank-metric`` names a surface distance that ``--no-surface``
    leaves out: after reading every case, it was refused as 'not a column', naming neither --no-surface nor why."""
    if no_surface and metric in surface_columns():
        raise InputError(f"--rank-metric {metric} is a surface distance, which --no-surface leaves out; give "
                         f"--rank-metric an overlap column (e.g. dice_liver), or leave --no-surface out.")


RANK_METRIC_PROBE_CASE = "<rank-metric probe>"
"""The case name of the tiny pair :func:`_refuse_an_unknown_rank_metric` scores to learn cases.csv's columns (no
file's name: it is never read, written or listed)."""


def _refuse_an_unknown_rank_metric(metric: str, no_surface: bool, prob_structure: Optional[str]) -> None:
    """InputError before any case is read when ``--rank-metric`` names no column cases.csv will have: a misspelt
    metric (``dice_livr``) was refused only after every case had been read and scored (minutes on a data set, with
    surface distances), and nothing was written. The columns are those of :func:`evaluate_case` on a 4 x 6 x 6 pair
    (milliseconds; its keys depend only on ``surface``), and ``roc_auc_<structure>`` with ``--prob``."""
    import numpy as np

    from ..metrics.lits import evaluate_case
    from ..metrics.report import is_measurement_column

    labels = np.zeros((4, 6, 6), np.uint8)
    labels[1:3, 1:5, 1:5] = 1
    labels[2, 2:4, 2:4] = 2
    row = dict(evaluate_case(labels.copy(), labels, (1.0, 1.0, 1.0), case=RANK_METRIC_PROBE_CASE,
                                   surface=not no_surface))
    if prob_structure is not None:
        row[f"roc_auc_{prob_structure}"] = 0.5
    numeric = sorted(key for key, value in row.items()
                     if isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
                     and not is_measurement_column(key))
    if metric not in row:
        raise InputError(f"--rank-metric {metric} is not a column of this evaluation's cases.csv; choose one of: "
                         f"{', '.join(numeric)}.")
    value = row[metric]
    if not isinstance(value, (int, float, np.number)) or isinstance(value, bool):  # 'case' read every case first
        raise InputError(f"--rank-metric {metric} is not a number in cases.csv, so it ranks no case; choose one of: "
                         f"{', '.join(numeric)}.")
    if is_measurement_column(metric):  # the largest liver volume was drawn as the 'best' case
        raise InputError(f"--rank-metric {metric} measures a case (a volume, burden or count), it does not score the "
                         f"prediction: no value of it is better than another, so it picks no best and worst case. "
                         f"Choose a score: {', '.join(numeric)}.")


def _say_surfaces_were_not_computed(settings: Dict[str, object]) -> None:
    """Make summary.json's ``settings`` (changed in place) say that ``--no-surface`` left the surface distances out:
    it described how they are computed, and listed assd_tumor_mm ... among the tumor columns, as if they were."""
    settings["surface"] = "not computed (--no-surface): cases.csv has no surface-distance columns"
    settings.pop("surface_distances_if_a_mask_is_empty", None)
    tumor = settings["tumor_voe_rvd_surface_distances"]
    tumor["columns"] = [column for column in tumor["columns"] if column not in surface_columns()]


def evaluate_folders(args) -> Dict[str, object]:
    """The work of the command; returns ``{"rows", "summary", "written", "notes"}`` (paths written, lines
    saying what was not drawn and why). Reads and checks every input before writing the first output."""
    from ..metrics.lits import evaluate_case, structure_mask
    from ..metrics.report import (MIN_BOXPLOT_CASES, WHOLE_TUMOR_MASK_COLUMNS, WHOLE_TUMOR_MASK_NOTE,
                                  plot_froc_curve, plot_metric_boxplots, plot_roc_curve, summarize_cases, write_case_table,
                                  write_json)
    import numpy as np

    from ..metrics.froc import froc_curve, lesion_hits
    from ..metrics.roc import RocAccumulator

    if not 0.0 <= args.detection_iou < 1.0:
        raise InputError(f"--detection-iou must be in [0, 1), got {args.detection_iou}.")
    _refuse_a_surface_rank_metric_without_surfaces(args.rank_metric, args.no_surface)
    _refuse_an_unknown_rank_metric(args.rank_metric, args.no_surface,
                                   args.prob_structure if getattr(args, "prob", None) else None)
    out_dir = Path(args.output_dir)
    for folder, option in ((args.pred, "--pred"), (args.ref, "--ref"), (args.images, "--images"),
                           (args.prob, "--prob")):
        if folder and Path(folder).is_dir() and same_file_among([out_dir, folder]):  # as segment refuses its input
            raise InputError(f"-o '{out_dir}' is the {option} folder: the results (cases.csv, summary.json, plots/) "
                             f"would lie among its files. Choose another output folder.")
    paths = _output_paths(out_dir)
    _check_output_kinds(paths)
    matched, only_pred, only_ref = match_cases(Path(args.pred), Path(args.ref))
    _check_outputs(paths, args.overwrite, [name for name, _, _ in matched])  # their overlays' hidden names too
    from ..fileutil import check_folder_writable, nearest_existing_folder
    # before the work: a read-only -o was found only when the results were written (naming a hidden stage folder)
    existing = nearest_existing_folder(out_dir)
    if not existing.is_dir():  # -o FILE/eval: was found only when the results were written, after every case
        blocker = next((p for p in out_dir.parents if p.exists()), existing)  # as the user wrote it
        raise InputError(f"-o '{out_dir}' lies inside '{blocker}', which is a file, not a folder; check the path.")
    check_folder_writable(existing)
    from ..io.labels import parse_label_map_option

    label_maps = tuple(parse_label_map_option(text, option) if text else None
                       for text, option in ((getattr(args, "pred_label_map", None), "--pred-label-map"),
                                            (getattr(args, "label_map", None), "--label-map")))
    if only_pred or only_ref:
        log.warning("warning: unmatched cases: %d prediction(s) without reference %s; %d reference(s) without "
                    "prediction %s.%s", len(only_pred), only_pred[:20], len(only_ref), only_ref[:20],
                    tagged_names_hint(only_pred, only_ref))
    cases = [name for name, _, _ in matched]
    other_names = _other_case_names(matched)
    probs = optional_inputs(args.prob, cases, "--prob", other_names)
    images = optional_inputs(args.images, cases, "--images", other_names)

    rows = []
    roc = RocAccumulator() if probs else None
    roc_cases = len(probs)  # cases with a probability map: those the pooled ROC holds (each matched case's)
    froc_cases = []  # per case with a tumor probability map: its predicted lesions' confidences and hits (FROC)
    undecided = []  # (case, levels, hits) of untagged integer maps of only 0 and 1: 0/1 or 0 and 1/255?
    integer_255 = False  # whether an integer map of this set was read as 255 x probability
    read_warnings = {}  # case -> what reading its maps left out (a .seg.nrrd segment neither liver nor tumor)
    for index, (case, pred_path, ref_path) in enumerate(matched):
        try:
            pred, ref, prob, divisor = _read_case(case, pred_path, ref_path, probs.get(case), label_maps)
            _check_case_memory(case, pred, ref, prob, not args.no_surface, args.prob_structure)
            said = [f"prediction: {w}" for w in pred.meta.get("warnings", [])] + \
                [f"reference: {w}" for w in ref.meta.get("warnings", [])] + _empty_reference_warnings(case, ref.array)
            row = evaluate_case(pred.array, ref.array, ref.spacing_zyx, case=case, surface=not args.no_surface,
                                iou_threshold=args.detection_iou, connectivity=args.connectivity)
        except InputError as exc:
            if len(matched) < 2:
                raise
            raise _stopped_at_case(exc, case, index, len(matched)) from exc
        if said:
            read_warnings[case] = said
        if prob is not None:
            # the map as stored, counted once for the case's AUC (which depends only on the order of the scores: a
            # 255 x p map's levels give its probabilities' AUC) and the pooled bins (which divide each level).
            # Memory: the map as read, which the reader's check_memory_for_read counts, and a few MiB (metrics.roc)
            mask = structure_mask(ref.array, args.prob_structure)
            hits = lesion_hits(structure_mask(pred.array, "tumor"), structure_mask(ref.array, "tumor"), prob,
                               divisor=divisor, connectivity=args.connectivity) \
                if args.prob_structure == "tumor" else None  # each predicted lesion's mean probability: the FROC
            if _scale_undecided(prob, divisor):  # 0/1 integers, untagged: the set's other maps decide (below)
                row[f"roc_auc_{args.prob_structure}"], levels = roc.score_levels(prob, mask)
                undecided.append((case, levels, hits))
            else:
                integer_255 = integer_255 or bool(np.issubdtype(prob.dtype, np.integer))
                row[f"roc_auc_{args.prob_structure}"] = roc.add_and_score(prob, mask, divisor=divisor)
                if hits is not None:
                    froc_cases.append(hits)
        del pred, ref, prob  # not held while the next case is read
        rows.append(row)
        if not getattr(args, "no_progress", False):
            log.info("[%d/%d] %s: liver Dice %.4f, tumor Dice %.4f", index + 1, len(matched), case,
                     row["dice_liver"], row["dice_tumor"])
    probability_note = _pool_undecided(roc, froc_cases, undecided, integer_255)
    if probability_note:
        log.warning("warning: %s", probability_note)
    overlays = [] if args.no_plots else _prepare_overlays(rows, matched, images, args.rank_metric, label_maps)

    summary = summarize_cases(rows)
    summary["settings"] = {"detection_iou": args.detection_iou, "lesion_connectivity": args.connectivity,
                           "surface": "6-connected boundary voxels (as MONAI and medpy; the LiTS script's surfaces "
                                      "are 18-connected, which gives somewhat lower ASSD and RMSD), Euclidean mm, "
                                      "hd95 = max of directed P95",
                           "liver": "label >= 1", "tumor": "label == 2",
                           "tumor_dice_both_empty": "1.0 (LiTS per-case convention)",
                           "tumor_voe_rvd_surface_distances": {"columns": list(WHOLE_TUMOR_MASK_COLUMNS),
                                                               "computed_on": WHOLE_TUMOR_MASK_NOTE},
                           "surface_distances_if_a_mask_is_empty": "NaN, left out of means (n_nan counts them)"}
    if args.no_surface:  # the settings described surfaces and listed their columns that cases.csv did not hold
        _say_surfaces_were_not_computed(summary["settings"])
    summary["settings"]["label_maps"] = {"reference": label_maps[1], "prediction": label_maps[0]}
    summary["unmatched"] = {"predictions_without_reference": only_pred, "references_without_prediction": only_ref}
    summary["warnings"] = read_warnings  # README: the report's warnings say which segments were left out
    if probability_note:
        summary["probability_scale"] = probability_note
    curve = roc.curve() if roc is not None else None
    if curve is not None:
        summary["roc_pooled"] = dict(structure=args.prob_structure, auc=curve.auc, n_cases=roc_cases,
                                     **curve.to_dict())
    froc = froc_curve(froc_cases) if froc_cases else None
    if froc is not None:
        summary["lesion_froc"] = froc.summary()
    notes = []
    with _staged_outputs(out_dir, args.overwrite) as staged:
        written = [write_case_table(rows, staged["table"], overwrite=True),
                   write_json(summary, staged["summary"], overwrite=True)]
        if not args.no_plots:
            if len(rows) < MIN_BOXPLOT_CASES:
                notes.append(f"no box plots: {len(rows)} case (box plots need {MIN_BOXPLOT_CASES} or more; "
                             f"cases.csv holds its values)")
            else:
                boxplots = plot_metric_boxplots(rows, staged["plots"] / BOXPLOT_NAME, overwrite=True)
                if boxplots is not None:
                    written.append(boxplots)
            if curve is not None and not math.isfinite(curve.auc):  # AUC is NaN when one class is absent
                log.warning("warning: no ROC curve: the references hold no %s voxels (or nothing else), so the "
                            "false- or true-positive rate is undefined.", args.prob_structure)
            if curve is not None and math.isfinite(curve.auc):
                roc_plot = staged["plots"] / ROC_PLOT_NAME.format(structure=args.prob_structure)
                written.append(plot_roc_curve(curve, roc_plot, overwrite=True,
                                              title=f"ROC, {args.prob_structure} voxels, {roc_cases} case(s)"))
            if froc is not None and froc.n_ref_lesions:
                written.append(plot_froc_curve(froc, staged["plots"] / FROC_PLOT_NAME, overwrite=True,
                                               title=f"Lesion FROC, {froc.n_ref_lesions} reference lesion(s), "
                                                     f"{froc.n_cases} case(s)"))
            elif froc is not None:
                notes.append("no FROC plot: the references hold no tumor, so the lesion sensitivity is undefined")
            written.extend(_write_overlays(overlays, staged["plots"], True))
        written = [out_dir / Path(p).relative_to(staged["table"].parent) for p in written]
    return {"rows": rows, "summary": summary, "written": list(written), "notes": notes}


def _fmt(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _interval_text(low=None, high=None) -> str:
    """`` (95 % CI 0.9310 to 0.9680)`` of a bootstrap interval; ``""`` where there is none (fewer than 2 values)."""
    if low is None or high is None:
        return ""
    return f" (95 % CI {_fmt(low)} to {_fmt(high)})"


def held_out_lines(summary: Dict[str, object]) -> List[str]:
    """Two lines with the numbers a held-out test of a model quotes: liver Dice mean and worst case, tumor Dice
    mean; predicted lesions sharing no voxel with a reference lesion and mL labelled liver (label >= 1) outside
    the reference liver, both summed over cases. Empty when the summary lacks them."""
    metrics = summary.get("metrics") or {}
    liver, tumor = metrics.get("dice_liver"), metrics.get("dice_tumor")
    detection = summary.get("lesion_detection") or {}
    outside = (summary.get("volume_outside_ref_total_ml") or {}).get("liver")
    if not liver or outside is None:
        return []
    tumor_text = f"tumor Dice mean {_fmt(tumor['mean'])}" if tumor else "no tumor Dice"
    return [f"over all cases: liver Dice mean {_fmt(liver['mean'])}, worst case {_fmt(liver['min'])}; {tumor_text}",
            f"summed over cases: {detection.get('pred_no_overlap', 0)} predicted lesion(s) sharing no voxel with a "
            f"reference lesion; {outside:.1f} mL labelled liver outside the reference liver"]


TUMOR_SEGMENTATION_METRICS = (("VOE", "voe_tumor", "voe", ""), ("RVD", "rvd_tumor", "rvd", ""),
                              ("ASSD", "assd_tumor_mm", "assd_mm", " mm"), ("HD", "hd_tumor_mm", "hd_mm", " mm"),
                              ("RMSD", "rmsd_tumor_mm", "rmsd_mm", " mm"))
"""``(label, whole-mask case column, key of summary.json's lesion_segmentation_lits, unit)`` of the tumor metrics
:func:`tumor_segmentation_lines` prints."""


def tumor_segmentation_lines(summary: Dict[str, object]) -> List[str]:
    """Tumor VOE, RVD and surface distances the two ways they are taken: per case on the whole tumor mask (the means
    of the case columns) and per detected lesion, pooled over all cases, as LiTS averages them
    (``lesion_segmentation_lits``; left out when no lesion was detected); each line says which. Each whole-mask mean
    gives its case count: VOE is defined where the reference or the prediction has tumor, RVD where the reference
    has, the surface distances only where both have (one line read 'VOE 0.5000, ... HD 0.0000 mm' where the VOE
    was a mean over four cases and the HD over the one case whose tumor was found). Empty when the summary has
    neither."""
    from ..metrics.report import WHOLE_TUMOR_MASK_NOTE

    metrics = summary.get("metrics") or {}
    lines = []
    whole = [f"{label} {_fmt(metrics[column]['mean'])}{unit} (n={metrics[column]['n']})"
             for label, column, _, unit in TUMOR_SEGMENTATION_METRICS if column in metrics]
    if whole:
        lines.append(f"tumor {WHOLE_TUMOR_MASK_NOTE}, means over the cases where each is defined: {', '.join(whole)}")
    lits = summary.get("lesion_segmentation_lits")
    if lits and lits.get("n_lesions"):
        scored = [f"{'HD (LiTS MSD)' if key == 'hd_mm' else label} {_fmt(lits[key])}{unit}" for label, _, key, unit in
                  (("Dice", "", "dice", ""),) + TUMOR_SEGMENTATION_METRICS if key in lits]
        surfaces = "; 6-connected surfaces, LiTS's are 18-connected" if "assd_mm" in lits else ""  # not --no-surface
        lines.append(f"tumor per detected lesion, averaged over all {lits['n_lesions']} detected lesion(s) of all "
                     f"cases as LiTS averages them (RVD (pred - ref) / ref{surfaces}): {', '.join(scored)}")
    return lines


def run(args) -> int:
    from ..metrics.froc import froc_line
    from ..metrics.report import lesion_size_line

    result = evaluate_folders(args)
    summary = result["summary"]
    metrics = summary["metrics"]
    print(f"evaluated {summary['n_cases']} case(s)")
    missing = (summary.get("unmatched") or {}).get("references_without_prediction") or []
    if missing:  # a failed or misnamed case must not vanish from a held-out result
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        print(f"  NOT IN THESE NUMBERS: {len(missing)} reference case(s) without a prediction ({shown}); count them as "
              f"failures when quoting a result")
    for key in ("dice_liver", "dice_tumor", "assd_liver_mm", "hd95_liver_mm"):
        if key in metrics:
            m = metrics[key]
            print(f"  {key}: mean {_fmt(m['mean'])}{_interval_text(m.get('ci95_low'), m.get('ci95_high'))} "
                  f"+- {_fmt(m['std'])}, median {_fmt(m['median'])} (n={m['n']}, undefined={m['n_nan']})")
    pooled = {structure: interval or {} for structure, interval in (summary.get("global_dice_ci95") or {}).items()}
    print("  global Dice: " + ", ".join(
        f"{structure} {_fmt(summary['global_dice'][structure])}"
        f"{_interval_text(pooled.get(structure, {}).get('low'), pooled.get(structure, {}).get('high'))}"
        for structure in ("liver", "tumor")))
    if "bootstrap" in summary:
        print(f"  95 % CI: {summary['bootstrap']['method']} bootstrap over cases, "
              f"{summary['bootstrap']['resamples']} resamples, seed {summary['bootstrap']['seed']}")
    detection = summary.get("lesion_detection")
    if detection:
        connectivity = summary["settings"]["lesion_connectivity"]
        print(f"  lesions ({connectivity}-connected): {detection['detected']}/{detection['ref_lesions']} detected, "
              f"{detection['false_positive']} false positive(s); precision {_fmt(detection['precision'])}, "
              f"recall {_fmt(detection['recall'])} (pooled over cases)")
        lits = detection.get("lits_script")
        if lits:  # split and merged lesions counted as the LiTS challenge script counts them
            labelled = ("6-connected lesions, as the LiTS script labels them" if connectivity == 6 else
                        f"{connectivity}-connected lesions; the LiTS script used 6: --connectivity 6")
            print(f"  lesions as the LiTS script counts them (one hit per detected group; {labelled}): precision "
                  f"{_fmt(lits['precision'])}, recall {_fmt(lits['recall'])}")
        by_size = lesion_size_line(summary.get("lesion_detection_by_size"))
        if by_size:  # does it find the small ones? the pooled recall does not say
            print(f"  {by_size}")
    for line in tumor_segmentation_lines(summary):
        print(f"  {line}")
    for line in held_out_lines(summary):
        print(f"  {line}")
    roc = summary.get("roc_pooled")
    if roc:
        print(f"  pooled ROC AUC ({roc['structure']} voxels): {_fmt(roc['auc'])}")
    froc = froc_line(summary.get("lesion_froc"))
    if froc:
        print(f"  {froc}")
    for note in result.get("notes", []):
        print(f"  {note}")
    for path in result["written"]:
        print(f"wrote {path}")
    return 0
