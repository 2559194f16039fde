"""Segment many CTs with one loaded model (a :class:`~.segmenter.Segmenter`): :func:`find_cases` and
:func:`segment_batch`.

Cases come from a folder (every CT file in it: .nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd; hidden files skipped;
or, in a folder without them, each subfolder holding a DICOM series, :func:`dicom_case_folders`) or a CSV (column ``image``, optional ``case_id`` or ``case``; relative paths are relative to the CSV's folder; an
``image`` may be a DICOM folder; UTF-8, or UTF-16 with a byte-order mark, separated by comma, tab or semicolon, as
Excel and PowerShell save it). Case ``c`` writes ``OUT/c.nii.gz`` (labels 0/1/2 in the input geometry) and
``OUT/reports/c.json`` (lesion report with ``timings_s`` and ``precision``) and, with a probability folder
``PROB`` (``segment ... --probabilities PROB``), ``PROB/c.nii.gz`` (uint8 255 x tumor probability, before
post-processing). The report is written first, then the probability map, and the label map last, each
atomically, so an existing label map with a readable report means a finished case: a rerun skips it (resumable)
unless ``overwrite`` (a label map without one, such as a file put there by hand, is kept and its case reported
failed); a rerun whose model or result-changing options differ from those the existing cases' reports record is
refused before any work (:func:`check_earlier_results`).

While the network runs on case ``i``, a reader thread reads and checks case ``i + 1`` and a finishing thread
post-processes, reports and writes case ``i - 1`` (gzip, file reads and most numpy/scipy work release the GIL;
the network's own threads are torch's). On the CPU the network gives one of its threads to each helper while
that helper works (:class:`~.core_share.CoreShare`), so that no core runs two threads. A failing case is
recorded with its one-line error and the others go on.
"""
import concurrent.futures
import contextlib
import contextvars
import dataclasses
import functools
import logging
import os
import re
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Dict, Iterator, List, Optional, Sequence

from ..errors import (InputError, LiverTumorSegError, out_of_memory_error,
                      submit_in_caller_context)
from ..progress import CancellationToken, raise_if_read_stopped, run_with_read_stop
from ..fileutil import (WINDOWS_RESERVED_NAMES, atomic_output, atomic_outputs, csv_cell_path, file_identities, full_suffix,
                        is_dicom_file, json_loads_noting_repeats, read_csv_rows, restore_set_aside_outputs_of,
                        same_file_among)
from ..io.dicom import dicom_images_below, holds_dicom_images
from ..io.formats import READ_SUFFIXES
from .core_share import CoreShare

log = logging.getLogger(__name__)

REPORTS_FOLDER = "reports"
STATUS_FILE = "batch_status.csv"
"""The status table a batch writes into its output folder."""


@dataclass
class BatchCase:
    """One CT to segment: ``input_path`` (file or DICOM folder) -> ``output_path`` and ``report_path``, and the
    tumor probability map to ``probability_path`` when the batch writes them (``segment ... --probabilities
    FOLDER``)."""

    case_id: str
    input_path: Path
    output_path: Path
    report_path: Path
    probability_path: Optional[Path] = None

    def outputs(self) -> List[Path]:
        """The files this case writes: report, probability map (when asked for) and label map."""
        return [self.report_path] + ([self.probability_path] if self.probability_path else []) + [self.output_path]


@dataclass
class CaseStatus:
    """What happened to one case: ``status`` is ``done``, ``skipped`` (output existed), ``failed`` or, in the table
    of an interrupted run, ``not run``. ``seconds``: the case's time after its CT was read (the read runs on the
    reader thread beside the previous case's network; the report's ``timings_s.read`` holds it), so a case that failed
    while being read shows 0.0."""

    case_id: str
    status: str
    seconds: float = 0.0
    message: str = ""
    liver_ml: Optional[float] = None
    lesion_count: Optional[int] = None
    precision: str = ""

    def as_row(self) -> Dict[str, Any]:
        return {"case_id": self.case_id, "status": self.status, "seconds": round(self.seconds, 2),
                "liver_ml": "" if self.liver_ml is None else round(self.liver_ml, 1),
                "lesions": "" if self.lesion_count is None else self.lesion_count,
                "precision": self.precision, "message": self.message}


def _report_json(text: str) -> Any:
    """The JSON of a report in the output folder; ValueError for text that is no JSON, also for JSON nested
    thousands deep (a damaged report), which was an 'internal error: RecursionError' when a batch was run again."""
    return json_loads_noting_repeats(text)[0]


def _skipped_status(case: "BatchCase") -> CaseStatus:
    """The status of a case whose output path holds a file: ``skipped`` when its report is there and readable (a run
    writes the report first and the label map last, so a finished case has both) and, where the report records it
    (0.6.21 and later), the file's SHA-256 is its ``label_map_sha256``, with its liver volume, lesion count and
    precision from that report (a resumed batch's table kept only blanks); else ``failed``: no finished run wrote
    that file (a file put there by hand, a copy of the CT, an empty file, a label map cut short by a power cut),
    which is kept. It was counted 'already segmented' and the batch ended with exit 0."""
    try:
        report = _report_json(Path(case.report_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        report = None
    if not (_is_a_report_of_this_tool(Path(case.report_path)) and isinstance(report, dict)):  # JSON of one's own
        return CaseStatus(case.case_id, "failed", message=(
            f"{case.output_path} exists but {case.report_path} is missing or unreadable, so it is no finished "
            f"result of a segment run; it was kept. Remove it, or pass --overwrite to segment this case again"))
    recorded = report.get("label_map_sha256")
    if isinstance(recorded, str) and recorded != _sha256_or_none(case.output_path):  # (reports before 0.6.21 lack it)
        return CaseStatus(case.case_id, "failed", message=(
            f"{case.output_path} is not the label map its report {case.report_path} names (another file was put "
            f"there, or it was cut short: its SHA-256 differs from the report's label_map_sha256), so it is no "
            f"finished result of a segment run; it was kept. Remove it (and the report), or pass --overwrite to "
            f"segment this case again"))
    recorded = report.get("probabilities_sha256")
    # the report already read names the map (report_names_probability_map would read it again)
    if (isinstance(recorded, str) and case.probability_path is not None
            and report.get("probabilities") == _recorded_path(case.probability_path)
            and recorded != _sha256_or_none(case.probability_path)):  # (reports before 0.6.24 lack it)
        return CaseStatus(case.case_id, "failed", message=(
            f"{case.probability_path} is not the probability map its report {case.report_path} names (another run "
            f"wrote it, or it was cut short or removed: its SHA-256 differs from the report's "
            f"probabilities_sha256), so this case is not taken as done; its files were kept: remove "
            f"{case.output_path} to segment this case again, or rerun with --overwrite, which segments every case "
            f"again"))
    status = CaseStatus(case.case_id, "skipped", message=f"{case.output_path} exists")
    try:
        status.liver_ml = float(report["liver_volume_ml"])
        status.lesion_count = int(report["lesion_count"])
        status.precision = str((report.get("precision") or {}).get("used") or "")
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return status


def statuses_before_the_run(cases: List["BatchCase"], overwrite: bool) -> Dict[str, CaseStatus]:
    """Case id -> :func:`_skipped_status` of each case whose label map is there before a run without ``overwrite``
    (which keeps it): the status table a run writes before its first case ends. Every case was 'not run' in it, so a
    rerun refused for other settings, or killed while its model loaded, left a table calling finished cases never
    run (the interruption audit)."""
    if overwrite:
        return {}
    return {case.case_id: _skipped_status(case) for case in cases if case.output_path.exists()}


RESULT_OPTIONS = ("postprocessing", "two_stage", "tta", "window_level", "window_width", "allow_non_hu",
                  "body_size_scaling", "oblique_grid")
"""The :class:`~.options.SegmentationOptions` fields that change a label map. Device, threads, batch size,
backend and precision ``auto`` do not (bf16 runs there only where its check agrees with fp32); an explicit
``--precision bf16``, which runs unchecked, counts as another setting against any other precision."""

SETTINGS_BEFORE_THEY_WERE_RECORDED = {"postprocessing": {"lesion_probability_statistic": "mean"}}
"""Settings of :data:`RESULT_OPTIONS` a later library added whose value every earlier run had without naming it: an
earlier report that lacks one is read with that value (a batch started with 0.6.14 resumes), while a setting that
added a step (``air_to_background``) still counts as changed."""


def _as_recorded_now(earlier: Dict[str, Any]) -> Dict[str, Any]:
    """An earlier report's ``options`` with :data:`SETTINGS_BEFORE_THEY_WERE_RECORDED` filled in where it lacks them."""
    filled = dict(earlier)
    for name, implied in SETTINGS_BEFORE_THEY_WERE_RECORDED.items():
        if isinstance(filled.get(name), dict):
            filled[name] = dict(implied, **filled[name])
    return filled


def _other_input_file(report: Dict[str, Any], input_path: Any) -> bool:
    """True when the report's ``input_file`` (the :func:`~..io.reading.file_fingerprint` of the CT file it
    segmented) is not of the file now at ``input_path`` (:func:`~..io.reading.same_file_content`): another CT put
    under the same name, or the CT rewritten since. A copy that did not keep the file's modification time is the
    same file (such copies were refused before 25 Nov 2026). A DICOM folder's series, and the series of a DICOM
    file listed as the case, is compared by its ``input_dicom`` (:func:`_other_dicom_series`; a file's was compared
    as a file, which DICOM reads do not record, so another patient's series under the same file names was kept as
    done: the DICOM audit). False when the report has neither (an older report) or the file cannot be looked at."""
    from ..io.reading import file_fingerprint, same_file_content

    if input_path is not None and isinstance(report.get("input_dicom"), dict):
        path = Path(input_path)
        if path.is_dir() or path.name.upper() == "DICOMDIR":
            return _other_dicom_series(report["input_dicom"], path if path.is_dir() else path.parent)
        if path.is_file():  # one file of the series (a folder of two series is listed so): the series it is in now
            from ..io.dicom import current_dicom_fingerprint_of_file

            return _differs(report["input_dicom"], current_dicom_fingerprint_of_file(path))
    recorded = report.get("input_file")
    if not isinstance(recorded, dict) or input_path is None:
        return False
    if Path(input_path).is_dir():  # a file was segmented, a DICOM folder is listed now: another CT (its
        return True  # fingerprint raised IsADirectoryError, an OSError read as 'the same file', and it was kept)
    try:
        now = file_fingerprint(input_path)
    except OSError:
        return False
    return not same_file_content(recorded, now)


def _other_dicom_series(recorded: Dict[str, Any], folder: Any) -> bool:
    """True when the DICOM series ``segment`` would read from ``folder`` now is not the one a report's
    ``input_dicom`` (:func:`~..io.dicom.dicom_series_fingerprint`) records: another series UID, other files or
    file sizes, or no single series any more. Entries ``recorded`` lacks are not compared."""
    from ..io.dicom import current_dicom_fingerprint

    return _differs(recorded, current_dicom_fingerprint(folder))


def _differs(recorded: Dict[str, Any], now: Optional[Dict[str, Any]]) -> bool:
    """Whether the DICOM series fingerprint ``now`` (None: no such series now) is not ``recorded``'s (keys
    ``recorded`` lacks are not compared)."""
    if now is None:
        return True
    return any(key in recorded and recorded[key] != now[key] for key in now)


def _earlier_run_differences(report: Any, weights_sha256: str, settings: Dict[str, Any],
                             input_path: Any = None, settings_sha256: str = "") -> List[str]:
    """What of a case's earlier ``segment`` report differs from this run: "another model" (other weights, or the
    same weights with another architecture or preprocessing: ``settings_sha256``, the package's
    :func:`~..package.network_settings_sha256`), the names of :data:`RESULT_OPTIONS` set otherwise, and "another
    CT file" when the file at ``input_path`` is not the one segmented (:func:`_other_input_file`). Entries the
    report lacks are not compared."""
    if not isinstance(report, dict):
        return []
    why = []
    if _other_input_file(report, input_path):
        why.append("another CT series: the DICOM folder's series UID, files or file sizes differ from the ones "
                   "segmented" if isinstance(report.get("input_dicom"), dict) else
                   "another CT file: its size or content differs from the one segmented")
    recorded = report.get("model_weights_sha256")
    if weights_sha256 and isinstance(recorded, str) and recorded and recorded != weights_sha256:
        why.append("another model")
    else:  # same weights, but a package re-saved with another window or spacing segments otherwise
        recorded = report.get("model_settings_sha256")
        if settings_sha256 and isinstance(recorded, str) and recorded and recorded != settings_sha256:
            why.append("another model (the same weights with other preprocessing or network settings)")
    earlier = report.get("options")
    if isinstance(earlier, dict):
        earlier = _as_recorded_now(earlier)
        changed = [_changed_option_text(name, earlier[name], settings[name]) for name in RESULT_OPTIONS
                   if name in earlier and earlier[name] != settings[name]]
        precisions = (earlier.get("precision"), settings.get("precision"))
        if "precision" in earlier and precisions[0] != precisions[1] and "bf16" in precisions:
            changed.append("precision")  # --precision bf16 runs unchecked (labels differ from fp32's a little)
        if changed:
            why.append("other " + ", ".join(changed))
    return why


def _changed_option_text(name: str, earlier: Any, now: Any) -> str:
    """An option of :data:`RESULT_OPTIONS` set otherwise in an earlier report, for the refusal: its name, and for a
    group of settings (``postprocessing``) which of them differ and which the earlier run's library did not have
    ("postprocessing (min_lesion_ml; air_to_background: a setting the earlier run's version did not have)"). The
    name alone read as if the user had changed a setting where a newer library had added a step."""
    if not (isinstance(earlier, dict) and isinstance(now, dict)):
        return name
    differing = [key for key in now if key in earlier and earlier[key] != now[key]]
    added = [key for key in now if key not in earlier]
    parts = ([", ".join(differing)] if differing else []) + (
        [f"{', '.join(added)}: {'a setting' if len(added) == 1 else 'settings'} the earlier run's version did "
         f"not have"] if added else [])
    return f"{name} ({'; '.join(parts)})" if parts else name


def check_earlier_results(cases: List["BatchCase"], weights_sha256: str, options: Any,
                          settings_sha256: str = "", model_metadata: Optional[Dict[str, Any]] = None) -> None:
    """Refuse (InputError, before any work) a run without ``--overwrite`` that would keep, as "already segmented",
    label maps an earlier run made with other weights (``weights_sha256``: this run's package's) or other
    result-changing options (:data:`RESULT_OPTIONS` of ``options``, a SegmentationOptions), or of another CT file
    than the case's input now is (its size or content, recorded as ``input_file``), as their reports
    say: the folder would mix two models' or two settings' results under one run's table, or keep a result of
    another CT. ``settings_sha256``: this run's package's architecture and preprocessing
    (:func:`segmenter_settings_sha256`). A label map without a readable report is kept as before (nothing to
    compare). ``options``' lesion confidence threshold of None (the model's) is compared as the one that runs: the
    package's whose ``model_metadata`` is given, else 0.65 (:func:`segmenter_result_options` gives it resolved)."""
    from .segmenter import model_postprocessing

    settings = dataclasses.replace(options, postprocessing=model_postprocessing(options, model_metadata)).to_dict()
    differing = []
    for case in cases:
        if not case.output_path.exists():
            continue
        try:
            report = _report_json(case.report_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        why = _earlier_run_differences(report, weights_sha256, settings, case.input_path, settings_sha256)
        if why:
            differing.append(f"{case.case_id} ({'; '.join(why)})")
    if differing:
        shown = ", ".join(differing[:5]) + (f" and {len(differing) - 5} more" if len(differing) > 5 else "")
        raise InputError(f"{len(differing)} case(s) in the output folder were segmented by an earlier run with "
                         f"another model, other settings or from another CT file: {shown}. This run would keep them "
                         f"as already segmented, mixing two runs' results. Rerun with --overwrite to segment them "
                         f"again with this model, settings and CT, or give another output folder.")


def segmenter_weights_sha256(segmenter: Any) -> str:
    """The weights SHA-256 a :class:`~.segmenter.Segmenter` runs (or will run): its package's, else read from the
    header of the package its options name (no torch import); "" when neither says."""
    package = getattr(segmenter, "package", None)
    if package is not None:
        return str((getattr(package, "metadata", None) or {}).get("weights_sha256", "") or "")
    from ..package import read_package_metadata, resolve_model

    return str(read_package_metadata(resolve_model(segmenter.options.model)).get("weights_sha256") or "")


def _segmenter_metadata(segmenter: Any) -> Dict[str, Any]:
    """The metadata of the package a :class:`~.segmenter.Segmenter` runs (or will run): its loaded package's, else
    read from the header of the package its options name (no torch import)."""
    from ..package import read_package_metadata, resolve_model

    package = getattr(segmenter, "package", None)
    if package is not None:
        return getattr(package, "metadata", None) or {}
    return read_package_metadata(resolve_model(segmenter.options.model))


def segmenter_settings_sha256(segmenter: Any) -> str:
    """The :func:`~..package.network_settings_sha256` of the package a :class:`~.segmenter.Segmenter` runs (or will
    run), read as :func:`segmenter_weights_sha256` reads the weights' hash; "" when neither says."""
    from ..package import network_settings_sha256

    metadata = _segmenter_metadata(segmenter)
    return network_settings_sha256(metadata) if metadata else ""


def segmenter_result_options(segmenter: Any) -> Any:
    """The options a :class:`~.segmenter.Segmenter` segments with, as its reports record them: the model's lesion
    confidence threshold (None in the options) filled in from its package (:func:`~.segmenter.model_postprocessing`),
    so an earlier run's report, which records the threshold that ran, compares equal when nothing changed."""
    from .segmenter import model_postprocessing

    options = segmenter.options
    return dataclasses.replace(options, postprocessing=model_postprocessing(options, _segmenter_metadata(segmenter)))


def is_batch_input(input_path: Any, output_path: Any = None) -> bool:
    """True for a ``.csv`` case list, a folder holding CT files (a DICOM folder holds none of these), or, with an
    ``output_path`` that names a folder (no file extension, or an existing folder: ``out.v2/``), a folder of DICOM
    series folders (:func:`dicom_case_folders`).

    A folder holding both CT files and DICOM files is ambiguous (a DICOM series with a stray mask beside it, or
    a batch folder with DICOM files in it) and raises InputError saying how to make it one or the other."""
    path = Path(input_path)
    if path.is_file():
        return full_suffix(path) == ".csv"
    if not path.is_dir():
        return False
    ct_files = _ct_files(path)
    if ct_files and holds_dicom_images(path, skip_suffixes=READ_SUFFIXES):
        names = ", ".join(p.name for p in ct_files[:3]) + (" ..." if len(ct_files) > 3 else "")
        raise InputError(f"Folder '{path}' holds DICOM files and also {len(ct_files)} NIfTI/NRRD/MetaImage file(s) "
                         f"({names}), so it is neither one DICOM series nor a batch folder of CT files. To segment "
                         f"the DICOM series, move the other files out (a label map an earlier run wrote into the "
                         f"series' folder counts too: write results elsewhere); for a batch, put each DICOM series "
                         f"in a subfolder and list it in a case CSV (column 'image').")
    if ct_files:
        return True
    names_a_folder = output_path is not None and (not full_suffix(output_path) or Path(output_path).is_dir())
    return names_a_folder and bool(dicom_case_folders(path))


def dicom_case_folders(folder: Path) -> List[Path]:
    """The subfolders (hidden ones left out, sorted by name) of ``folder`` that hold DICOM images, in them or below
    (searched as ``segment`` searches a DICOM folder: :func:`~..io.dicom.dicom_images_below`), where ``folder``
    holds no CT file and no DICOM image of its own: a PACS export of one folder per patient (``PATIENTS/p1/...``),
    each a case of a batch named by its folder. ``segment PATIENTS -o OUT`` was told 'Output has no file extension:
    one CT ...' (the DICOM audit). Empty for any other folder."""
    try:
        if _ct_files(folder) or holds_dicom_images(folder, is_dicom=is_dicom_file):
            return []
        subfolders = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_dir())
    except OSError:
        return []
    return [sub for sub in subfolders if sub.name not in LABEL_FOLDER_NAMES
            and (holds_dicom_images(sub, is_dicom=is_dicom_file) or dicom_images_below(sub, is_dicom=is_dicom_file))]


def check_batch_folder_has_cts(input_path: Any, output_path: Any) -> None:
    """Refuse (InputError naming the input folder) ``segment FOLDER -o OUT`` where ``OUT`` has no extension (a batch's
    output folder) and ``FOLDER`` holds no CT file, no DICOM image and no subfolder holding one (a DICOM study
    folder, which ``segment`` searches: :func:`~..io.dicom.dicom_images_below`): empty, files of other names only
    (``ct.nii.gz.bak``, notes), or subfolders without DICOM images (empty ones, notes). Such a run was told "Output
    'OUT' has no file extension", blaming the output folder, not the folder without CTs."""
    folder = Path(input_path)
    if not folder.is_dir() or full_suffix(output_path) or _ct_files(folder) or \
            holds_dicom_images(folder, is_dicom=is_dicom_file):  # also bare data sets without the preamble
        return
    try:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError:
        return
    subfolders = [entry for entry in entries if entry.is_dir()]
    if subfolders:
        _refuse_data_set_folder(folder, subfolders)
        if dicom_images_below(folder, is_dicom=is_dicom_file) is not False:
            return  # a DICOM study folder (or one searched only in part): segment_file searches it
    held = ("it is empty" if not entries else "it holds " + ", ".join(
        p.name + ("/" if p.is_dir() else "") for p in entries[:5]) + (" ..." if len(entries) > 5 else ""))
    if subfolders:
        held += "; nor do its subfolders hold a DICOM series, searched as a DICOM folder is"
    from ..io.formats import is_archive_name

    archives = [entry.name for entry in entries if is_archive_name(entry) and entry.is_file()]
    extract = (f" Its archive(s) ({', '.join(archives[:3])}{' ...' if len(archives) > 3 else ''}) are not opened: "
               f"extract them first." if archives else "")
    raise InputError(f"Folder '{folder}' holds no CT files (.nii.gz, .nii, .nrrd, .nhdr, .mha, .mhd) to segment as "
                     f"a batch, and no DICOM series ({held}). Give a folder of CT files, or a CSV listing them."
                     f"{extract}")


LABEL_FOLDER_NAMES = ("labelsTr", "labelsTs")
"""An MSD / nnU-Net data set's folders of label maps, which are not offered as CT folders."""


def _refuse_data_set_folder(folder: Path, subfolders: Sequence[Path]) -> None:
    """Refuse (InputError naming them) ``segment FOLDER -o OUT`` where ``FOLDER`` holds no CT file of its own but
    ``subfolders`` do: a data set's top folder (MSD's ``Task03_Liver/`` with ``imagesTr/``, ``imagesTs/``; an
    nnU-Net data set; LiTS's folder of ``Training Batch 1``/``2``). Such a run was told "Output 'OUT' has no file
    extension: one CT (a DICOM series folder is one) ...", blaming the output folder. Returns when no subfolder
    holds CT files (a DICOM study folder, which ``segment`` searches)."""
    holding = [(sub, len(_readable_ct_files(sub))) for sub in subfolders if sub.name not in LABEL_FOLDER_NAMES]
    holding = [(sub, count) for sub, count in holding if count]
    if not holding:
        return
    names = ", ".join(f"'{sub.name}/' ({count})" for sub, count in holding[:5]) + (" ..." if len(holding) > 5 else "")
    raise InputError(f"Folder '{folder}' holds no CT files of its own to segment as a batch, but its subfolder(s) "
                     f"{names} do: a batch takes the CT files directly in the folder it is given. Give one of them "
                     f"(for an MSD or nnU-Net data set: imagesTr/ or imagesTs/), run segment on each, or list the CTs "
                     f"in a case CSV (column 'image').")


def _ct_files(folder: Path) -> List[Path]:
    """The folder's CT files by name: every entry named like one counts, so a link whose target is gone (an
    unmounted disk) or a folder named ``case2.nii.gz`` fails as a listed case instead of vanishing from the
    batch."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and full_suffix(p) in READ_SUFFIXES)


def _warn_of_subfolders_left_out(folder: Path, own: Sequence[Path] = ()) -> None:
    """Warn of ``folder``'s subfolders (hidden ones left out) that hold DICOM files, or CT files: a folder batch takes
    the CT files directly in it, and a patient's DICOM series (or CT files in a subfolder) beside the NIfTI CTs was
    left out without a word (no row in the table). ``own``: the run's output and probability folders, not warned of
    (the label maps a run wrote into a folder inside its input folder)."""
    subfolders = _visible_subfolders(folder, own)
    if subfolders is None:
        return
    series = [p for p in subfolders if holds_dicom_images(p, is_dicom=is_dicom_file)]
    if series:
        names = ", ".join(p.name for p in series[:5]) + (" ..." if len(series) > 5 else "")
        log.warning("warning: %d subfolder(s) of '%s' hold DICOM files and are not segmented (%s): a batch of a "
                    "folder takes its CT files; to segment a DICOM series too, list its folder in a case CSV "
                    "(column 'image').", len(series), folder, names)
    _warn_of_ct_subfolders(folder, _ct_subfolders_left_out(subfolders, series),
                           "a batch of a folder takes the CT files directly in it, not in its subfolders; run segment "
                           "on each subfolder, or list the files in a case CSV (column 'image').")


def _warn_of_ct_subfolders(folder: Path, left_out: Sequence[Path], why: str) -> None:
    """The warning naming the subfolders of ``folder`` whose CT files a batch leaves out (``left_out``; none: no
    warning), with ``why`` and what to do instead."""
    if left_out:
        names = ", ".join(p.name for p in left_out[:5]) + (" ..." if len(left_out) > 5 else "")
        log.warning("warning: %d subfolder(s) of '%s' hold CT files that are not segmented (%s): %s", len(left_out),
                    folder, names, why)


def _visible_subfolders(folder: Path, own: Sequence[Optional[Path]] = ()) -> Optional[List[Path]]:
    """``folder``'s subfolders, sorted, but hidden ones, those named like a CT file ('x.nii.gz/' is a case, which
    fails as one) and ``own`` (the run's output and probability folders); None when it cannot be listed."""
    try:
        subfolders = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_dir()
                            and full_suffix(p) not in READ_SUFFIXES)
    except OSError:
        return None
    return [p for p in subfolders if not any(same_file_among([p, o]) for o in own if o is not None)]


def _ct_subfolders_left_out(subfolders: Sequence[Path], taken: Collection[Path]) -> List[Path]:
    """The ``subfolders`` holding CT files that a batch does not segment: not ``taken`` (as cases, or named
    otherwise) and no earlier batch's results (:func:`_earlier_batch_results`)."""
    results = _earlier_batch_results(subfolders)
    return [p for p in subfolders if p not in taken and p not in results and _readable_ct_files(p)]


def _earlier_batch_results(subfolders: Sequence[Path]) -> List[Path]:
    """The ``subfolders`` that hold an earlier batch's results: its output folder (it holds :data:`STATUS_FILE`)
    and the ``--probabilities`` folder its reports name. A run into another output folder warned of them as "CT
    files that are not segmented ... run segment on each subfolder", which would segment label and probability
    maps."""
    outputs = [p for p in subfolders if (p / STATUS_FILE).is_file()]
    named = {_probability_folder_named_in(folder / REPORTS_FOLDER) for folder in outputs} - {None}
    return outputs + [p for p in subfolders if p not in outputs and _recorded_path(p) in named]


def _probability_folder_named_in(reports: Path) -> Optional[str]:
    """The folder of the probability maps the first ``segment`` report in ``reports`` that names one
    (``probabilities``) names, as :func:`_recorded_path` writes it; None without one."""
    try:
        files = sorted(reports.glob("*.json"))
    except OSError:
        return None
    for path in files:
        try:
            recorded = _report_json(path.read_text(encoding="utf-8")).get("probabilities")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(recorded, str) and recorded:
            return str(Path(recorded).parent)
    return None


def _readable_ct_files(folder: Path) -> List[Path]:
    """:func:`_ct_files` of ``folder``, none when it cannot be listed."""
    try:
        return _ct_files(folder)
    except OSError:
        return []


def _ct_despite_its_name(path: Path) -> bool:
    """Whether ``path``, named as a label or probability map, holds a CT by its first slice
    (:func:`~..io.reading.first_slice_shows_ct`, a few ms); False where that slice cannot be read so (its name
    decides)."""
    from ..io.reading import first_slice_shows_ct

    return bool(first_slice_shows_ct(path))


def _cts_of_folder(folder: Path, own: Sequence[Path] = ()) -> List[Path]:
    """The folder's CT files (:func:`_ct_files`) but those named as label or probability maps
    (:func:`~..casenames.named_as_label_or_probability`: LiTS's ``segmentation-N`` beside ``volume-N``, a
    ``case_seg.nii.gz`` beside ``case.nii.gz``) whose first slice shows no CT (:func:`_ct_despite_its_name`), which
    are left out with a warning naming them; they were read as CTs, refused as not CT and the batch ended with exit
    2; and NIfTI, NRRD and MetaImage files whose content is a label map (:func:`_label_map_description_of_file`),
    left out with a warning of their own. A folder of such files only is taken whole (each case then says why it is
    no CT). CTs named so (``patient1_liver.nii.gz``) were left out on their name alone, and only where the folder
    held another file: adding one CT to a folder of them dropped them from the next run's table (the batch audit)."""
    from ..casenames import named_as_label_or_probability

    _warn_of_subfolders_left_out(folder, own)
    files = _ct_files(folder)
    named = [p for p in files if named_as_label_or_probability(p)]
    left_out = [p for p in named if not _ct_despite_its_name(p)]
    if len(left_out) < len(named):
        kept = [p.name for p in named if p not in left_out]
        from ..io.reading import CT_FIRST_SLICE_AT_MOST_HU

        log.info("%d file(s) in '%s' are named as label or probability maps but hold CTs (air at or below %g HU on "
                 "their first slice), and are segmented (%s)", len(kept), folder, CT_FIRST_SLICE_AT_MOST_HU,
                 ", ".join(kept[:5]) + (" ..." if len(kept) > 5 else ""))
    if len(left_out) == len(files):
        return files
    # a CT named as a label map read its first slice above already (a CT: no label map)
    held = [p for p in files if p not in named and _label_map_description_of_file(p) is not None]
    if len(left_out) + len(held) == len(files):
        return files  # a folder of label maps only (the labels folder given for the CTs'): each case says why
    if left_out:
        names = ", ".join(p.name for p in left_out[:5]) + (" ..." if len(left_out) > 5 else "")
        log.warning("warning: %d file(s) in '%s' are named as label or probability maps and are not segmented (%s); "
                    "to segment one, list it in a case CSV (column 'image').", len(left_out), folder, names)
    if held:
        from ..errors import option_hint

        names = ", ".join(p.name for p in held[:5]) + (" ..." if len(held) > 5 else "")
        log.warning("warning: %d file(s) in '%s' hold label maps, not CTs (a few whole values in 0..255, mostly 0, where a "
                    "CT in HU has air far below 0), and are not segmented (%s); to segment one anyway (an 8-bit export "
                    "of a narrow window), list it in a case CSV (column 'image') and pass %s.", len(held), folder,
                    names, option_hint("--allow-non-hu", "allow_non_hu=True"))
    return [p for p in files if p not in left_out and p not in held]


def _label_map_description_of_file(path: Path) -> Optional[str]:
    """What makes the NIfTI, NRRD or MetaImage file ``path`` a label map (:func:`~..validation.label_map_description`,
    the test that refuses it as a case's CT), or None: unreadable, or a CT. Names like ``case_liver_tsv1.nii.gz``,
    ``case_gt.nrrd`` or ``case-label.mha`` say nothing the name rule knows, and such label maps beside the CTs
    failed as cases ('looks like a label map') and the batch ended with exit 2; a ``case.nrrd`` label map beside the
    CT ``case.nii.gz`` stopped the batch as "Two cases are both named 'case'". Cheap for a CT: its file's first
    slice (the first bytes of its voxels: :func:`~..io.reading.first_slice_values`) nearly always holds air or padding below 0 HU, which settles it; only a file
    whose first slice is all whole values in 0..255 is read whole, as the case's read would. A file whose first slice
    cannot be read so (a DICOM folder, a NRRD stored as text, a header ITK must interpret) is left to the case's
    read."""
    import numpy as np

    from ..io.reading import first_slice_values

    first = first_slice_values(path)
    if first is None or first.size == 0 or not np.isfinite(first).all() or first.min() < 0 or first.max() > 255 \
            or np.any(first != np.round(first)):
        return None  # a CT (or no label map): the case's own read and checks decide the rest
    del first
    try:
        from ..io import read_volume
        from ..validation import label_map_description

        return label_map_description(read_volume(path).array)
    except KeyboardInterrupt:
        raise
    except Exception:  # noqa: BLE001 - an unreadable file is left to the case's read, which says what is wrong
        return None


def case_id_of(path: Path) -> str:
    """File name without its CT extension: ``a/ct_01.nii.gz`` -> ``ct_01``; a DICOM folder or file keeps its
    whole name (the series folders ``1.2.840.1136.1`` and ``1.2.840.1136.2`` were both ``1.2.840.1136``, and the
    batch was refused as two cases with one output)."""
    if path.name in ("", ".", ".."):  # a CSV's '.' or '..' (a DICOM folder): the folder's own name, not '' or '..',
        path = Path(os.path.abspath(path))  # which named hidden outputs '...nii.gz' or none at all
    name = path.name
    suffix = full_suffix(path)
    if suffix in READ_SUFFIXES and not path.is_dir():  # full_suffix is taken from the name's end
        return name[: len(name) - len(suffix)]
    return name


def _check_case_id(case_id: str, csv_path: Path, line: int, column: str = "case_id") -> str:
    """A CSV ``case_id`` names the output files ``OUT/<case_id>.nii.gz`` and ``OUT/reports/<case_id>.json``, so it
    must be a plain file name: one with a folder part ('../x', '/abs/x', 'a/b') could write outside ``OUT``.
    ``column``: the column it was read from (``case_id`` or ``case``), which the refusal names: a training CSV's
    'case' of 'lits/0' was refused as "case_id 'lits/0'" in a list without a 'case_id' column."""
    if (not case_id or case_id in (".", "..") or case_id.startswith(".") or "/" in case_id or "\\" in case_id
            or "\0" in case_id or ":" in case_id):
        raise InputError(f"Case list '{csv_path}' line {line}: {column} '{case_id}' must be a plain name (no folder, "
                         f"'/', '\\', ':' or leading '.'); each case is written as OUT/<case_id>.nii.gz.")
    # a device name (fileutil.WINDOWS_RESERVED_NAMES) fails on Windows after the case's network ran, so such a
    # case_id is refused on every system (a case list should work on each)
    if (re.search(r'[<>"|?*\x00-\x1f]', case_id) or case_id.endswith((" ", "."))
            or case_id.split(".")[0].strip().upper() in WINDOWS_RESERVED_NAMES):
        raise InputError(f"Case list '{csv_path}' line {line}: {column} '{case_id}' cannot be a file name on Windows "
                         f"(no < > \" | ? *, control characters, a trailing space or dot, or the device names CON, "
                         f"PRN, AUX, NUL, COM0-9, LPT0-9); each case is written as OUT/<case_id>.nii.gz.")
    return case_id


def _csv_case_id(csv_path: Path, line: int, row: Dict[str, str]) -> str:
    """A case list row's case name: its ``case_id`` cell, or its ``case`` cell, the column a training CSV names its
    cases in (``train``/``crossval`` read both, so one CSV serves both; here 'case' was ignored without a word, and
    ``p1/ct.nii.gz`` and ``p2/ct.nii.gz`` were refused as two cases named 'ct', "give them distinct case_id values",
    or their outputs named by their file names); '' when neither is given. Both given and different: refused."""
    case_id, case = row.get("case_id", ""), row.get("case", "")
    if case_id and case and case_id != case:
        raise InputError(f"Case list '{csv_path}' line {line}: its 'case_id' ({case_id!r}) and 'case' ({case!r}) "
                         f"cells name the case differently; keep one of the two columns, or give both the same name.")
    return case_id or case


def _cases_from_csv(csv_path: Path) -> List[tuple]:
    """``(case_id, CT path)`` per row of the case list ``csv_path`` (case_id: :func:`_csv_case_id`; read by
    :func:`~..fileutil.read_csv_rows`: UTF-8 or UTF-16 as Excel and PowerShell save it; comma, tab or semicolon;
    'Case_ID ' is 'case_id'; a path with Windows backslashes is read on Linux and macOS too:
    :func:`~..fileutil.csv_cell_path`)."""
    columns, rows = read_csv_rows(csv_path, "Case list")
    if "image" not in columns:
        raise InputError(f"Case list '{csv_path}' needs a header with an 'image' column (and optionally "
                         f"'case_id' or 'case'), one CT per row; found {columns}.")
    if not rows:  # a header alone was told it needed the header it has
        raise InputError(f"Case list '{csv_path}' lists no cases: add one row per CT under its header "
                         f"({', '.join(columns)}).")
    out = []
    from_working_folder = []  # (line, cell) of paths missing beside the list but there from the working folder
    for number, row in rows:
        image = row.get("image", "")
        if not image:
            raise InputError(f"Case list '{csv_path}' line {number} has an empty 'image'.")
        path = csv_cell_path(csv_path.parent, image)  # a list made on Windows: img\ct1.nii.gz is img/ct1.nii.gz
        if not os.path.lexists(path) and not Path(image).is_absolute() and os.path.lexists(image):
            from_working_folder.append((number, image))
        case_id = _csv_case_id(csv_path, number, row)
        column = "case_id" if row.get("case_id") else "case"
        out.append((_check_case_id(case_id, csv_path, number, column) if case_id else case_id_of(path), path))
    _warn_of_paths_from_the_working_folder(csv_path, from_working_folder)
    return out


def _check_no_ct_listed_under_two_case_ids(csv_path: Path, pairs: List[tuple]) -> None:
    """Refuse a case list that names one CT (a file, or a DICOM folder: the same real path, or the same file through
    a hard link) under two different case_ids (``pairs``: :func:`_cases_from_csv`): a row pasted twice and then
    given another case_id, or the CT listed once by each of two people. It was segmented twice without a word, the
    table listing two cases, and each model run's time spent twice. Rows with the same case_id are
    :func:`find_cases`' to refuse (with the same advice)."""
    seen = {}  # type: Dict[Any, tuple]
    series = _dicom_series_identities(pairs)
    for case_id, path in pairs:
        identities = file_identities(path) + series.get(str(path), [])
        earlier = next((seen[identity] for identity in identities if identity in seen), None)
        if earlier is not None and earlier[0] != case_id:
            other_id, other_path = earlier
            spelled = "" if Path(other_path) == Path(path) else f" (also as '{other_path}')"
            raise InputError(f"Case list '{csv_path}' lists '{path}'{spelled} twice, as case '{other_id}' and as "
                             f"case '{case_id}', so the one CT would be segmented twice; remove one of the rows.")
        for identity in identities:
            seen.setdefault(identity, (case_id, path))


def _dicom_series_identities(pairs: List[tuple]) -> Dict[str, List[tuple]]:
    """``{path: [("dicom series", real folder, series UID)]}`` for the cases (``pairs``) that read a DICOM series by a
    file of it (:func:`_read_as_its_folder`), and for a listed DICOM folder that such a file lies in (the one series
    ``read_volume`` reads there): one series listed by two of its files, or by its folder and one of its files, was
    segmented twice as two cases. Two files of two series of one folder stay two cases. Files that cannot be read
    are left to the reader."""
    from ..io.dicom import _dicom_series_of_file, _is_image_series, find_dicom_series

    found = {}  # type: Dict[str, List[tuple]]
    folders = set()
    for _, path in pairs:
        path = Path(path)
        if path.is_file() and _read_as_its_folder(path) and path.name.upper() != "DICOMDIR":
            try:
                uid = _dicom_series_of_file(path)
            except Exception:  # noqa: BLE001 - not readable as DICOM: the reader says so
                continue
            folder = os.path.realpath(path.parent)
            found[str(path)] = [("dicom series", folder, uid)]
            folders.add(folder)
    for _, path in pairs:  # a listed folder is looked into only when a listed file lies in it
        if Path(path).is_dir() and os.path.realpath(path) in folders:
            try:
                images = [info for info in find_dicom_series(path) if _is_image_series(info)]
            except Exception:  # noqa: BLE001 - the reader's to report
                continue
            if len(images) == 1:
                found[str(path)] = [("dicom series", os.path.realpath(path), images[0].uid)]
    return found


def _one_name_per_ct(pairs: List[tuple]) -> List[tuple]:
    """A folder's cases (``pairs``: case_id, path) with each CT once: a second name of one file (a symbolic link
    ``ct_link.nii.gz -> ct_0.nii.gz``, a hard link; the identity test of :func:`_check_no_ct_listed_under_two_case_ids`)
    is left out with a warning naming both. It was segmented twice, as two cases. A folder is not a deliberate list,
    so it is not refused as a case CSV listing one CT twice is. The name kept is the one that is not a symbolic link
    (of two such, or two hard links, the first in name order)."""
    order = sorted(range(len(pairs)), key=lambda i: (os.path.islink(pairs[i][1]), i))
    seen = {}  # type: Dict[Any, tuple]
    dropped = set()
    for i in order:
        case_id, path = pairs[i]
        identities = file_identities(path)
        earlier = next((seen[identity] for identity in identities if identity in seen), None)
        if earlier is not None:
            dropped.add(i)
            log.warning("warning: '%s' is another name of '%s' (a link to the same file), so that CT is segmented "
                        "once, as case '%s' (to segment it twice, copy the file).", Path(path).name, Path(earlier[1]).name, earlier[0])
            continue
        for identity in identities:
            seen.setdefault(identity, (case_id, path))
    return [pair for i, pair in enumerate(pairs) if i not in dropped]


def _warn_of_paths_from_the_working_folder(csv_path: Path, lines: List[tuple]) -> None:
    """Warn, before the run, of the case list's relative paths (``(line, cell text)``) that do not exist beside the
    list but do from the working folder: each such case failed, after the model load, as "does not exist", without
    saying that relative paths are read from the list's folder (a training CSV says so)."""
    if not lines:
        return
    shown = ", ".join(f"line {number}: '{text}'" for number, text in lines[:3]) + (" ..." if len(lines) > 3 else "")
    log.warning("warning: %d path(s) of case list '%s' (%s) do not exist relative to the list's folder ('%s'), "
                "where relative paths are read from, but do relative to the working folder: write them relative to "
                "the list's folder, or in full; those cases fail.", len(lines), csv_path, shown, csv_path.parent)


def _check_outputs_are_not_inputs(input_path: Path, output_folder: Path, cases: List["BatchCase"]) -> None:
    """Refuse, before any work, an output folder that is the input folder (label maps would replace CTs of the
    same name and be taken for CTs by the next run) and any case output that is some case's input CT."""
    identities_out = set(file_identities(output_folder))
    if input_path.is_file() and set(file_identities(input_path)) & set(file_identities(output_folder / STATUS_FILE)):
        raise InputError(f"The case list '{input_path}' is '{STATUS_FILE}' in the output folder, which the batch "
                         f"writes its status table to; rename the list or choose another output folder.")
    if input_path.is_dir() and set(file_identities(input_path)) & identities_out:
        raise InputError(f"-o '{output_folder}' is the input folder: label maps written there would replace CTs "
                         f"of the same name and be read as CTs by the next run. Choose another output folder "
                         f"(e.g. '{output_folder.name or 'out'}_seg').")
    identities_in = [set(file_identities(case.input_path)) for case in cases]  # each input's, once
    for case, identities in zip(cases, identities_in):  # a CSV case's DICOM folder as -o: mixed into the series
        if case.input_path.is_dir() and identities_out & identities:
            raise InputError(f"-o '{output_folder}' is the input folder of case '{case.case_id}' (a DICOM series): "
                             f"label maps written there would be mixed into the series. Choose another output "
                             f"folder.")
    inputs = {identity: case.input_path for case, identities in zip(cases, identities_in) for identity in identities}
    for case in cases:
        for output in case.outputs():
            for identity in file_identities(output):
                if identity in inputs:
                    folder = "--probabilities folder" if output == case.probability_path else "output folder"
                    raise InputError(f"Case '{case.case_id}' would write '{output}', which is the input CT "
                                     f"'{inputs[identity]}'; choose another {folder} or case_id.")
    _check_output_folder_holds_no_ct(output_folder, cases, identities_out)


def _check_output_folder_holds_no_ct(output_folder: Path, cases: List["BatchCase"], identities_out: set) -> None:
    """Refuse an output folder that holds a listed case's CT file (a CSV's CTs in ``-o``'s folder), as the input
    folder of a folder batch and such a ``--probabilities`` folder are refused: the label maps (``ct1.nii.gz`` beside
    the CT ``ct1.nii``, or a case_id's ``p2.nii.gz``) were written among the CTs, and a later batch of that folder
    read them as CTs."""
    for case in cases:
        if not case.input_path.is_dir() and identities_out & set(file_identities(case.input_path.parent)):
            raise InputError(f"-o '{output_folder}' holds case '{case.case_id}''s CT '{case.input_path}': the label "
                             f"maps would lie among the CTs and be read as CTs by a later batch of that folder. "
                             f"Choose another output folder (e.g. '{output_folder / 'seg'}').")


def _check_probability_folder(output_folder: Path, probability_folder: Path) -> None:
    """Refuse a probability folder that is the output folder (a case's probability map and label map would be one
    file) or names a file (the input folder: :func:`_check_probability_folder_holds_no_ct`)."""
    from ..io import WRITE_SUFFIXES

    if probability_folder.exists() and not probability_folder.is_dir():
        raise InputError(f"For a batch, --probabilities names a folder for the cases' probability maps; "
                         f"'{probability_folder}' is a file.")
    if not probability_folder.exists() and full_suffix(probability_folder) in WRITE_SUFFIXES:
        raise InputError(f"For a batch, --probabilities names a folder (each case's map is written there as "
                         f"<case>.nii.gz), not a {full_suffix(probability_folder)} file: give a folder name, e.g. "
                         f"--probabilities probabilities/.")
    same = set(file_identities(probability_folder))  # (none while it does not exist yet)
    if same & set(file_identities(output_folder)) or probability_folder.resolve() == output_folder.resolve():
        raise InputError(f"--probabilities '{probability_folder}' is the output folder: each case's probability map "
                         f"would be written over its label map. Give another folder (e.g. '{output_folder}/prob').")


def _check_probability_folder_holds_no_ct(input_path: Path, cases: List[BatchCase], probability_folder: Path) -> None:
    """Refuse a probability folder that holds a case's CT: the input folder, a folder a CSV lists a CT in, or a case's
    DICOM series folder. The maps would lie among the CTs, and a later batch of that folder would read them as CTs
    (a series folder holding one is refused as neither a series nor a batch folder)."""
    same = set(file_identities(probability_folder))
    if not same:
        return
    if input_path.is_dir() and same & set(file_identities(input_path)):
        raise InputError(f"--probabilities '{probability_folder}' is the input folder: the maps would be read as "
                         f"CTs by the next run. Give another folder.")
    for case in cases:
        if case.input_path.is_dir() and same & set(file_identities(case.input_path)):  # a DICOM series' folder
            raise InputError(f"--probabilities '{probability_folder}' is the folder of case '{case.case_id}' (a "
                             f"DICOM series): a map there makes the folder neither one series nor a folder of CT "
                             f"files, and later runs would refuse it. Give another folder.")
        if same & set(file_identities(case.input_path.parent)):
            raise InputError(f"--probabilities '{probability_folder}' holds case '{case.case_id}''s CT "
                             f"'{case.input_path}': the maps would lie among the CTs and be read as CTs by a later "
                             f"batch of that folder. Give another folder.")


def find_cases(input_path: Any, output_folder: Any, suffix: str = ".nii.gz",
               probability_folder: Any = None) -> List[BatchCase]:
    """The cases of a folder or CSV (see the module docstring), with their output paths under ``output_folder``
    and, with ``probability_folder``, their tumor probability maps there (``<case_id><suffix>``).

    Raises InputError for an empty list, duplicate case ids, a case_id with a folder part, a bad output suffix,
    an output folder that is the input folder, a file named ``reports`` in the output folder, a probability folder
    that is the output or the input folder, holds a listed CT or names a file, or an output that is an input CT;
    missing inputs are left for the run to report per case.
    """
    input_path, output_folder = Path(input_path), Path(output_folder)
    if probability_folder is not None:
        probability_folder = Path(probability_folder)
        _check_probability_folder(output_folder, probability_folder)
    if suffix not in (".nii.gz", ".nii", ".nrrd", ".mha"):
        raise InputError(f"Batch output type '{suffix}' is not supported; use .nii.gz, .nii, .nrrd or .mha.")
    folders = [] if input_path.is_file() else dicom_case_folders(input_path)  # one scan (it checks for CT files)
    if input_path.is_file():
        pairs = _cases_from_csv(input_path)
    elif folders:  # a folder per patient's DICOM
        pairs = _dicom_folder_cases(input_path, (output_folder, probability_folder), folders)
    else:
        pairs = _one_name_per_ct([(case_id_of(p), p) for p in _cts_of_folder(input_path,
                                                                              (output_folder, probability_folder))])
    if not pairs:
        raise InputError(f"No CT files (.nii.gz, .nii, .nrrd, .mha, .mhd) in '{input_path}'.")
    if input_path.is_file():
        _check_no_ct_listed_under_two_case_ids(input_path, pairs)
    seen = {}  # type: Dict[str, tuple]
    for case_id, path in pairs:
        # 'CT' and 'ct' are one file name on Windows and macOS disks, and so are 'café' composed (NFC) and decomposed
        # (NFD) on macOS; a simple lower case, not casefold: 'straße' and 'STRASSE' are two names there
        key = unicodedata.normalize("NFC", case_id).lower()
        if key in seen:
            other_id, other_path = seen[key]
            # a row pasted twice, or the one CT spelled two ways (img/ct.nii.gz and img/../img/ct.nii.gz, a link):
            # not two case_ids, which were advised and would segment it twice
            if other_id == case_id and (Path(other_path) == Path(path) or same_file_among([other_path, path])):
                spelled = "" if Path(other_path) == Path(path) else f" (also as '{other_path}')"
                raise InputError(f"Case list '{input_path}' lists '{path}'{spelled} twice (case '{case_id}'); remove "
                                 f"one of the rows.")
            if other_id == case_id:  # the letter-case reason only where the two names differ in case alone
                raise InputError(f"Two cases are both named '{case_id}' ({other_path} and {path}), so they would "
                                 f"write the same output files; give them distinct case_id values in a CSV.")
            raise InputError(f"Two cases are named '{other_id}' and '{case_id}' ({other_path} and {path}), which "
                             f"name the same output files on disks that ignore letter case or how an accented "
                             f"letter is encoded (Windows, macOS); give them distinct case_id values in a CSV.")
        seen[key] = (case_id, path)
    reports = output_folder / REPORTS_FOLDER
    if reports.exists() and not reports.is_dir():  # each case's network ran, then its write failed on it
        raise InputError(f"'{reports}' is a file, and the batch writes each case's report into a folder of that "
                         f"name; move the file, or choose another output folder.")
    if reports.is_dir():  # another user's, or a read-only mount: every case ran, then failed at its report
        from ..fileutil import check_folder_writable

        check_folder_writable(reports, "Reports folder")
    cases = [BatchCase(case_id, path, output_folder / f"{case_id}{suffix}", reports / f"{case_id}.json",
                       None if probability_folder is None else probability_folder / f"{case_id}{suffix}")
             for case_id, path in pairs]
    _check_output_names_fit(input_path, cases)
    if probability_folder is not None:  # first: the folder's own message, not one of its maps' (an input CT)
        _check_probability_folder_holds_no_ct(input_path, cases, probability_folder)
    _check_outputs_are_not_inputs(input_path, output_folder, cases)
    return cases


def _dicom_folder_cases(folder: Path, own: Sequence[Optional[Path]] = (),
                        folders: Optional[Sequence[Path]] = None) -> List[tuple]:
    """``(case_id, folder)`` per :func:`dicom_case_folders` of ``folder``, the case named by its folder; a folder
    name that is no plain file name on every system is refused as a CSV's case_id is (:func:`_check_case_id`).
    Subfolders of CT files are named in a warning as not segmented, but for ``own`` (the run's output and
    probability folders) and an earlier batch's results (:func:`_earlier_batch_results`): a rerun into
    ``PATIENTS/results`` warned of its own label maps (the review)."""
    pairs = []
    for sub in dicom_case_folders(folder) if folders is None else folders:  # (the caller's scan, where it made one)
        try:
            _check_case_id(sub.name, folder, 0)
        except InputError:
            raise InputError(f"The DICOM folder '{sub}' cannot name its case: '{sub.name}' cannot be a file name on "
                             f"Windows (no < > \" | ? *, control characters, a trailing space or dot, or the device "
                             f"names CON, PRN, AUX, NUL, COM0-9, LPT0-9), and each case is written as "
                             f"OUT/<case>.nii.gz. Rename the folder, or list the folders in a case CSV (columns "
                             f"'image' and 'case_id').") from None
        pairs.append((sub.name, sub))
    subfolders = _visible_subfolders(folder, own) or []
    taken = {sub for _, sub in pairs} | {p for p in subfolders if p.name in LABEL_FOLDER_NAMES}
    _warn_of_ct_subfolders(folder, _ct_subfolders_left_out(subfolders, taken),
                           "a batch of a folder of DICOM folders takes each DICOM folder as one case; run segment on "
                           "those subfolders, or list every CT in a case CSV (column 'image').")
    return pairs


def _check_output_names_fit(input_path: Path, cases: Sequence[BatchCase]) -> None:
    """InputError naming the first case whose output, report or probability file name is longer than its folder's
    file system takes (:func:`~..fileutil._longest_name`, bytes): a 250-character case_id stopped the whole batch
    after the model load with "File name too long", naming neither the case nor a way out, and the other cases
    were not segmented (the interruption audit)."""
    from ..fileutil import _longest_name

    limits = {}  # type: Dict[Path, int]  # folder: its longest name (three folders, however many cases)
    for case in cases:
        for path in (case.output_path, case.report_path, case.probability_path):
            if path is None:
                continue
            if path.parent not in limits:
                limits[path.parent] = _longest_name(path.parent)
            limit = limits[path.parent]
            size = len(os.fsencode(path.name))  # the bytes the file system counts (a non-UTF-8 name's too)
            if size > limit:
                where = (f"Case list '{input_path}': case_id" if input_path.is_file() else
                         f"The CT '{case.input_path}' names its case")
                raise InputError(f"{where} '{case.case_id}' makes the output file name '{path.name}' "
                                 f"{size} bytes long, over the {limit} bytes a file name may "
                                 f"have in '{path.parent}'; give it a shorter case_id"
                                 f"{' (a case list with a case_id column names it)' if not input_path.is_file() else ''}.")


def _read_case(case: BatchCase, allow_non_hu: bool, share: CoreShare, aligned_for_model: bool = True) -> tuple:
    """(volume, warnings, read seconds): read and check one CT (runs on the reader thread). ``aligned_for_model``:
    an oblique CT is segmented on a patient-aligned grid (``oblique_grid`` ``aligned``), which its warning says."""
    from ..io import read_volume
    from ..validation import check_ct

    with share.busy():
        start = time.perf_counter()
        volume = read_volume(case.input_path)
        raise_if_read_stopped()  # Ctrl-C during the read: the checks are not run
        warnings = check_ct(volume, allow_non_hu=allow_non_hu, aligned_for_model=aligned_for_model,
                            oblique_grid_stored=not aligned_for_model)  # segment's only other choice
        return volume, warnings, time.perf_counter() - start


class RunningNetworkMemory:
    """What the running case's network may still allocate, for the reader's early preparation of the next CT
    (:func:`_read_and_prepare_case`): that preparation's own memory check counted nothing for it, so the next CT's
    network-grid copy could be allocated after the running case's check had passed and take the memory its network
    was about to use. The batch loop publishes each case's estimate once its check has passed (0 once its network
    has run, or when it failed before), and the reader's preparation of case ``i`` waits until case ``i - 1`` is
    published. None: prepare nothing ahead (the running case waits for the read, as it does not fit beside it, or
    the batch is ending). The reader also says when a CT's read is done (:meth:`read_done`): its future runs on while
    it waits for the estimate, and the running case's check (:func:`_check_beside_the_next_read`) counted the whole
    CT as a read still to come, though it was in memory, so that with little memory free the case waited for that
    read and the early copy was dropped."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._published = -1
        self._bytes = 0  # type: Optional[int]
        self._finishing = None  # type: Optional[concurrent.futures.Future]
        self._finishing_bytes = 0
        self._read = -1  # the last case whose CT the reader has read (the reader reads them in order)
        self._after_finishing = False  # self._bytes is a finish that waits for the running one (publish)

    def finishing(self, future: "concurrent.futures.Future", peak_bytes: int) -> None:
        """The latest case's finish (``future``, on the finishing thread) and what it may allocate at its peak
        (:func:`finish_memory_bytes`): counted beside the running network while it has not ended, so that the
        reader's early copy of the next CT is not made in the memory that finish is about to take."""
        with self._condition:
            self._finishing, self._finishing_bytes = future, int(peak_bytes)

    def handed_to_finish(self, index: int, future: "concurrent.futures.Future", peak_bytes: int) -> None:
        """Case ``index``'s network has run and its finish (``future``, its peak ``peak_bytes``) has started: in one
        step, the finish is counted (:meth:`finishing`) and the case's reservation (its finish's bytes, published
        when its network ended) drops to 0, so that no reader's early copy is checked between the two with that
        finish counted nowhere."""
        with self._condition:  # a re-entrant lock: finishing and publish take it again
            self.finishing(future, peak_bytes)
            self.publish(index, 0)

    def read_done(self, index: int) -> None:
        """Case ``index``'s CT is read (in memory): what its read future may still allocate is its early copy only,
        which that copy's own check counts beside the running network."""
        with self._condition:
            self._read = max(self._read, index)

    def is_read(self, index: int) -> bool:
        """Whether case ``index``'s CT has been read (:meth:`read_done`)."""
        with self._condition:
            return self._read >= index

    def publish(self, index: int, reserved_bytes: Optional[int], after_finishing: bool = False) -> None:
        """Case ``index``'s estimate (None: prepare nothing ahead). One for an earlier case than one published
        already, or after :meth:`close`, is ignored: it would replace a later case's estimate (or the closing None)
        with a stale one, so that a reader counted too little beside that case's network, or prepared a CT when the
        batch was ending. ``after_finishing``: ``reserved_bytes`` is the case's finish, which runs on the one
        finishing thread after the finish running there (:meth:`finishing`) has ended, not beside it."""
        with self._condition:
            if index < self._published:
                return
            self._published = index
            self._bytes = reserved_bytes
            self._after_finishing = bool(after_finishing)
            self._condition.notify_all()

    def close(self) -> None:
        """Nothing more is published: a preparation still waiting prepares nothing (the batch is ending)."""
        self.publish(1 << 62, None)

    def __enter__(self) -> "RunningNetworkMemory":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def reserved_before(self, index: int) -> Optional[int]:
        """Bytes the running network (case ``index - 1``) may still take, once published, and the latest case's
        finish while it runs (:meth:`finishing`); None: prepare nothing. Where what is published is case
        ``index - 1``'s finish, waiting for the running finish (``publish(after_finishing=True)``), the larger of the
        two: they run one after the other on the one finishing thread, and both were counted (summed) until 30 Nov
        2026, so that an early copy that fit beside either was dropped."""
        with self._condition:
            self._condition.wait_for(lambda: self._published >= index - 1)
            if self._bytes is None:
                return None
            if self._finishing is None or self._finishing.done():
                return self._bytes
            if self._after_finishing:
                return max(self._bytes, self._finishing_bytes)
            return self._bytes + self._finishing_bytes


def _read_and_prepare_case(case: BatchCase, allow_non_hu: bool, share: CoreShare, segmenter: Any,
                           running: Optional[RunningNetworkMemory] = None, index: int = 0) -> tuple:
    """(volume, warnings, read seconds, PreparedInput or None): :func:`_read_case`, then, when the engine's
    preprocessing is known by then (:attr:`Segmenter.known_preprocessing`), the CT resampled to the network grid
    here on the reader thread, so the network thread only runs the network (on a GPU the preprocessing was most
    of a CT's time on the CPU side). Not in two-stage mode; a failure or a CT too large for the early copy only
    means the engine prepares it, as before. ``running``: the memory the previous case's network may still take
    (case ``index - 1``, :class:`RunningNetworkMemory`), counted by the early copy's check; none is made when the
    copy would not fit beside it (the engine prepares the CT when its turn comes)."""
    options = getattr(segmenter, "options", None)
    volume, warnings, seconds = _read_case(case, allow_non_hu, share,
                                           getattr(options, "oblique_grid", "aligned") == "aligned")
    from .segmenter import _prepare_while_loading_wanted

    raise_if_read_stopped()  # Ctrl-C during the read or its checks: no network-grid copy is made
    if running is not None:
        running.read_done(index)
    config = getattr(segmenter, "known_preprocessing", None)
    if config is None or options is None or not _prepare_while_loading_wanted(options, volume):
        return volume, warnings, seconds, None  # an oblique CT too: the network runs on an axis-aligned grid
    from .prepared_input import prepare_ahead

    reserved = 0 if running is None else running.reserved_before(index)
    if reserved is None:
        return volume, warnings, seconds, None
    with share.busy():
        # the object the network is given (a child's CT enlarged): the engine uses a preparation of that object only
        if hasattr(segmenter, "network_volume_ahead"):  # None: its fill's copy would not fit (the check says so)
            network_volume = segmenter.network_volume_ahead(volume, reserved_bytes=reserved)
        else:
            network_volume = segmenter.network_volume(volume)[0] if hasattr(segmenter, "network_volume") else volume
        if network_volume is None:
            return volume, warnings, seconds, None
        early = prepare_ahead(network_volume, config, getattr(options, "batch_size", None),
                              what=f"case {case.case_id}", reserved_bytes=reserved)
    return volume, warnings, seconds, early


def _finish_and_write_case(case: BatchCase, segmenter: Any, volume: Any, output: Any, warnings: List[str],
                           read_seconds: float, overwrite: bool, share: CoreShare) -> tuple:
    """Post-processing and report of a predicted case (``segmenter.finish``), then write the report, the
    probability map when asked for, and the label map (its existence marks the case done); returns
    ``(result, seconds)``. Runs on the finishing thread while the next case's network runs."""
    from ..io import nifti_write_options, write_label_map
    from .lesion_report import write_report

    with share.busy():
        start = time.perf_counter()
        result = segmenter.finish(volume, output)
        said_at_load = getattr(getattr(segmenter, "engine", None), "device_message", None)
        for message in result.warnings:  # plausibility and post-processing warnings, as a single run prints them
            if message != said_at_load:  # the device fallback ('CUDA asked for, CPU used'): said once, at the load
                log.warning("warning: %s: %s", case.case_id, message)
        result.report["warnings"] = warnings + list(result.warnings)
        result.report["timings_s"] = dict({"read": round(read_seconds, 3)}, **result.report["timings_s"])
        case.report_path.parent.mkdir(parents=True, exist_ok=True)
        targets = {"report": case.report_path, "labels": case.output_path}
        if case.probability_path is not None:
            case.probability_path.parent.mkdir(parents=True, exist_ok=True)
            targets["probabilities"] = case.probability_path
            result.report["probabilities"] = _recorded_path(case.probability_path)  # whose map it is (resume)
        # the label map is written to a temporary first and its SHA-256 recorded in the report, so that a rerun
        # takes only that file as the case's (label_map_sha256, :func:`_skipped_status`). --overwrite: all placed or
        # none (replaced one by one, a kill or a full disk between them left this run's report beside the earlier
        # run's label map); else the report first (it names the maps), then the probability map (one there is
        # replaced only when this report named it: segment_batch kept any other), the label map (which marks the
        # case done) placed last, never over one that appeared meanwhile (the report is then put back)
        from ..package import file_sha256

        earlier_report, report_written = None if overwrite else _bytes_if_there(case.report_path), False
        try:
            with atomic_outputs(targets, overwrite=True) if overwrite else contextlib.nullcontext(targets) as paths, \
                    contextlib.nullcontext(paths["labels"]) if overwrite else \
                    atomic_output(case.output_path, overwrite=False) as labels_path:
                write_label_map(labels_path, result.labels, result.geometry, overwrite=True,
                                **nifti_write_options(volume))
                result.report["label_map_sha256"] = file_sha256(labels_path)
                # the probability map to a temporary too (without --overwrite), its SHA-256 in the report, placed
                # after the report names it: a rerun took any file at that path as the case's map (another model's
                # put there with --overwrite, one cut short), as it now does for the label map alone
                with contextlib.nullcontext(paths.get("probabilities")) if overwrite or case.probability_path is None \
                        else atomic_output(case.probability_path, overwrite=True) as probabilities_path:
                    if probabilities_path is not None:
                        from ..io import write_probability_map

                        write_probability_map(probabilities_path, result.tumor_probability, volume.geometry,
                                              overwrite=True, **nifti_write_options(volume))
                        result.report["probabilities_sha256"] = file_sha256(probabilities_path)
                    write_report(result.report, paths["report"], overwrite=True)
                    report_written = True
        except BaseException:
            # the probability map or the label map was not placed (a file held open, one that appeared meanwhile):
            # the report put back, which described a result that is not there (a failed case's report read as done)
            if report_written and not overwrite:
                _put_report_back(case.report_path, earlier_report)
            raise
        return result, time.perf_counter() - start


def _sha256_or_none(path: Path) -> Optional[str]:
    """The SHA-256 of the file ``path``, None where it cannot be read; a file unchanged since it was last hashed (the
    same inode, size, modification and change times) is not read again: a resume judges each finished case twice,
    for the status table written before the run and in the run itself."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return _sha256_of_version(os.fspath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


@functools.lru_cache(maxsize=4096)
def _sha256_of_version(path: str, inode: int, size: int, mtime_ns: int, ctime_ns: int) -> Optional[str]:
    """:func:`_sha256_or_none` of one version of a file (the stat fields only key the cache)."""
    from ..package import file_sha256

    try:
        return file_sha256(path)
    except OSError:
        return None


def _bytes_if_there(path: Path) -> Optional[bytes]:
    """The bytes of the file ``path``, None where there is none (or it cannot be read)."""
    try:
        return Path(path).read_bytes() if Path(path).is_file() else None
    except OSError:
        return None


def _put_report_back(path: Path, earlier: Optional[bytes]) -> None:
    """The report at ``path`` as it was before this run wrote it (``earlier``: its bytes, None for none), where the
    case's label map could not be placed because one appeared meanwhile (copied in by hand, written by a single
    ``segment``): the batch's report was left beside a label map no run of it made, and a rerun skipped that pair as
    this batch's finished case (the interruption audit). A failure to put it back is logged, not raised over the
    case's own error."""
    try:
        if earlier is None:
            Path(path).unlink()
        else:
            with atomic_output(path, overwrite=True) as tmp:
                Path(tmp).write_bytes(earlier)
    except (OSError, LiverTumorSegError) as exc:
        log.warning("warning: the report '%s' could not be put back as it was before this run (%s); it names this "
                    "run's result, not the label map beside it", path, exc)


def _one_line(exc: BaseException) -> str:
    from ..io.dicom import SeveralSeriesError

    exc = out_of_memory_error(exc, batch_size_option=True) or exc
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, SeveralSeriesError):  # batch has no --series: its listing was cut off too
        text = (exc.headline + "; a batch reads one series per case: list each series' own folder (or a file of "
                "it) as a case in a CSV")
    if isinstance(exc, LiverTumorSegError):
        return text
    from ..cli import file_system_error_text

    said = file_system_error_text(exc)  # a full disk, no permission: in the words a single run gives them
    return said if said else f"{type(exc).__name__}: {text}"


BATCH_LOCK_FILE = ".livertumorseg-batch.lock"
"""Held in a batch's output folder while a run writes there; it holds the run's :func:`~..processes.process_mark`."""


def _busy_error(folder: Path, lock: Path, held: str, what: str = "output folder") -> InputError:
    """The refusal of a batch run into ``folder`` while another run holds its ``lock``; ``what``: the folder's role
    (the ``--probabilities folder``), so the advice names the option to change."""
    from ..folder_lock import holder_description

    return InputError(f"Another batch run{holder_description(held)} is writing into '{folder}'; wait for it to end, "
                      f"or choose another {what}. (If no such run is going on, remove '{lock}'.)")


@contextlib.contextmanager
def batch_folder_lock(folder: Path, what: str = "output folder") -> Iterator[None]:
    """Hold :data:`BATCH_LOCK_FILE` in ``folder`` (which exists) for the ``with`` block
    (:func:`~..folder_lock.folder_lock`). A second batch run into a folder in use is refused (InputError naming the
    process): two runs with different models each replaced the other's reports and left every case with one run's
    label map beside the other's report. A lock whose process has ended (a killed run) is taken over, by one run
    only where flock is available."""
    from ..folder_lock import folder_lock

    lock = folder / BATCH_LOCK_FILE
    with folder_lock(folder, BATCH_LOCK_FILE, lambda held: _busy_error(folder, lock, held, what), what="batch run"):
        yield


def _is_a_report_of_this_tool(path: Path) -> bool:
    """Whether ``path`` holds a ``segment`` report (a JSON object with its liver volume and lesion list): a batch
    replaces such a leftover of a killed run (the report is written before the label map that marks a case done),
    and keeps any other file there. A symbolic link is none (no run makes one): written through, the file it named,
    outside the batch's folder (another run's report), was replaced without --overwrite."""
    if path.is_symlink():
        return False
    try:
        report = _report_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and "liver_volume_ml" in report and "lesions" in report


def _recorded_path(path: Path) -> str:
    """How a case's report names its probability map (``probabilities``): the absolute path, links resolved."""
    return str(Path(path).resolve())


def _unnamed_probability_map_text(case: BatchCase) -> str:
    """Why a segmented case is failed when its report does not name the probability map asked for: made without
    ``--probabilities``, into another folder, or (its report naming a map of that name at a path that no longer
    exists) in a results folder moved since, which was told it was 'segmented without writing' the map beside it."""
    recorded = _recorded_probability_map(case)
    again = (f"remove {case.output_path} to segment this case again, or rerun with --overwrite, which segments every "
             f"case again")
    if recorded is not None and Path(recorded).name == case.probability_path.name and not Path(recorded).exists():
        return (f"the report of {case.output_path} names its probability map at '{recorded}', which no longer exists "
                f"(a results folder moved or copied since?); whether {case.probability_path} is that map cannot be "
                f"told, so it is not taken as this case's: {again}")
    return (f"{case.output_path} was segmented without writing {case.probability_path} (by a run without "
            f"--probabilities, or with another folder); {again}")


def _recorded_probability_map(case: BatchCase) -> Optional[str]:
    """The probability map path (``probabilities``) the case's report in the output folder names, None without one
    (no report, or one that cannot be read)."""
    try:
        report = _report_json(case.report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    recorded = report.get("probabilities") if isinstance(report, dict) else None
    return recorded if isinstance(recorded, str) else None


def report_names_probability_map(case: BatchCase) -> bool:
    """Whether the case's report in the output folder names its probability map path (``probabilities``): the report
    is written before the map, so a map there that the report does not name is not this case's (a user's file, or
    another run's map, into another output folder or without ``--probabilities``)."""
    return case.probability_path is not None and \
        _recorded_probability_map(case) == _recorded_path(case.probability_path)


def segment_batch(cases: List[BatchCase], segmenter: Any, overwrite: bool = False,
                  on_case: Optional[Callable[[CaseStatus], None]] = None,
                  on_loaded: Optional[Callable[[], None]] = None, share_cores: bool = True) -> List[CaseStatus]:
    """Segment ``cases`` in order with one :class:`~.segmenter.Segmenter` (model loaded once, its options
    apply to every case); returns one :class:`CaseStatus` per case, in order. ``on_case`` is called as each
    case finishes (written or failed). A segmenter not loaded yet is loaded on a thread of its own while the
    first two CTs are read (an interruption meanwhile does not wait for the load: the ``livertumorseg``
    command then ends at once, see ``cli.console_main``); ``on_loaded`` is called once it is (a load error is
    raised, not recorded as a case's failure).
    ``share_cores=False`` lets the CPU network keep all its threads while the helpers work (for comparison)."""
    allow_non_hu = bool(getattr(getattr(segmenter, "options", None), "allow_non_hu", False))
    share = CoreShare()

    statuses = {}  # type: Dict[str, CaseStatus]
    todo = []
    # a label map a killed --overwrite run left hidden is back before "already segmented" is judged by it
    restore_set_aside_outputs_of([path for case in cases for path in case.outputs()])
    if not overwrite and any(case.output_path.exists() for case in cases):
        check_earlier_results(cases, segmenter_weights_sha256(segmenter), segmenter_result_options(segmenter),
                              segmenter_settings_sha256(segmenter))
    for case in cases:
        probability = case.probability_path
        if case.output_path.exists() and not overwrite:
            statuses[case.case_id] = _skipped_status(case)
            if probability is not None and statuses[case.case_id].status == "skipped" and \
                    not (probability.exists() and report_names_probability_map(case)):
                statuses[case.case_id] = CaseStatus(  # a map from another run would pass for this label map's
                    case.case_id, "failed", message=_unnamed_probability_map_text(case))
        elif not overwrite and case.report_path.exists() and not _is_a_report_of_this_tool(case.report_path):
            statuses[case.case_id] = CaseStatus(  # a user's file where the report goes: kept, not replaced
                case.case_id, "failed", message=f"'{case.report_path}' exists and is "
                f"{'a symbolic link' if case.report_path.is_symlink() else 'no segment report'}; it was kept: move "
                f"it, or pass --overwrite to replace it")
        elif not overwrite and probability is not None and probability.exists() and \
                not report_names_probability_map(case):
            statuses[case.case_id] = CaseStatus(  # a user's file, or another run's map: kept, not replaced
                case.case_id, "failed", message=f"'{probability}' exists and was not written for this case's report "
                f"in {case.report_path.parent.parent} (a file of its own, or a map another run wrote); it was kept: "
                f"move it, or pass --overwrite to replace it")
        else:
            todo.append(case)
            continue
        if on_case:
            on_case(statuses[case.case_id])
    if todo:
        todo[0].output_path.parent.mkdir(parents=True, exist_ok=True)

    def finished(status: CaseStatus) -> None:
        statuses[status.case_id] = status
        if on_case:
            on_case(status)

    def finish_done(case: BatchCase, status: CaseStatus, future: "concurrent.futures.Future") -> None:
        try:
            result, seconds = future.result()
            status.seconds += seconds
            status.liver_ml = float(result.report.get("liver_volume_ml", 0.0))
            status.lesion_count = int(result.report.get("lesion_count", 0))
            count = len(result.report.get("warnings") or [])  # the input checks' and the result's
            if count:
                status.message = f"{count} warning(s); see its report"
        except BaseException as exc:  # noqa: BLE001 - one case's failure must not stop the batch
            # BaseException too: this runs on the finishing thread as a callback, where an exception that is no
            # Exception (SystemExit, a KeyboardInterrupt raised by code, never by a signal) ended the thread, and the
            # batch then waited for its next case's finish for ever
            status.status, status.message = "failed", f"post-processing or writing: {_one_line(exc)}" + \
                _earlier_result_kept_text(case)
        finished(status)

    from .segmenter import _estimate_and_check_memory, _load_in_background, wait_for_load

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ct-reader") as reader, \
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="case-finisher") as finisher, \
            RunningNetworkMemory() as running:  # closed first: a read waiting for it ends before the executors
        reads = {}  # type: Dict[int, concurrent.futures.Future]
        # Ctrl-C is raised in the main thread only, which then waits (leaving the executors) for the read under way:
        # the reader stops at its next step instead (a .nii.gz inflate step), where a 512 x 512 x 300 read was
        # waited for to its end (2-3 s measured, more for larger CTs)
        stop_reads = CancellationToken()

        def start_read(index: int) -> None:
            if index < len(todo) and index not in reads:
                reads[index] = submit_in_caller_context(reader, run_with_read_stop, stop_reads, _read_and_prepare_case,
                                                        todo[index], allow_non_hu, share, segmenter, running, index)

        # the first two CTs are read while the model loads: the load (imports, mostly one thread) leaves a core
        # free for longer than one read takes; later on, one CT is read ahead, so no more CTs are held than before.
        # The load runs on a thread of its own (does nothing when already loaded) and the main thread only waits
        # for it: Ctrl-C is raised in the main thread, and one that landed inside the import system while the
        # main thread imported torch and MONAI could leave Python's import lock held for good, so that the
        # reader's next import (it imports lazily) never returned and the run hung instead of stopping
        loading = _load_in_background(segmenter) if todo else None  # every case done: nothing to load for
        start_read(0)
        start_read(1)
        read_during_load = loading is not None and not loading.done()
        if loading is not None:
            try:
                wait_for_load(loading)  # Ctrl-C is not delayed by the load (Windows)
            except BaseException:
                stop_reads.cancel()
                for future in reads.values():
                    future.cancel()
                raise
            # the first case's report says so (model_load_s.during_read), as segment_file's does: it said false,
            # and its read and model_load seconds looked like one after the other
            segmenter._load_overlapped_read = read_during_load
            if on_loaded:
                on_loaded()
        with _cores_shared(segmenter, share if share_cores else None):
            finishing = None  # type: Optional[concurrent.futures.Future]
            finishing_id = ""  # the case that finish is of
            finishing_bytes = 0  # what that finish may allocate at its peak (finish_memory_bytes)
            try:
                for index, case in enumerate(todo):
                    current = reads.pop(index)
                    start_read(index + 1)  # read the next CT while the network runs on this one
                    start = time.perf_counter()
                    ran = False
                    try:
                        volume, warnings, read_seconds, early = current.result()
                        for message in warnings:
                            log.warning("warning: %s: %s", case.case_id, message)
                        if early is not None and hasattr(segmenter.engine, "offer_prepared"):
                            segmenter.engine.offer_prepared(early)  # used when it is this CT and the engine's config
                        early = None  # the network loop lets go of it (not held while the case is finished)
                        # at the network's grid and the model's channels (the model is loaded by now); after the offer,
                        # so that the check does not ask again for the network-grid CT the reader has made already
                        if hasattr(segmenter, "check_network_memory"):  # a child's CT: the enlarged grid it is given
                            required = _check_beside_the_next_read(segmenter, volume, reads.get(index + 1),
                                                                   todo[index + 1] if index + 1 < len(todo) else None,
                                                                   running, index, finishing, finishing_bytes)
                        else:
                            required = _estimate_and_check_memory(volume, segmenter.package,
                                                                  segmenter.options.batch_size)
                        # the next CT's early copy counts what this network may still take: beyond the CT and a
                        # network-grid copy prepared ahead, held already (and so out of the memory its check reads)
                        if hasattr(segmenter, "network_memory_to_come"):
                            to_come = segmenter.network_memory_to_come(volume, required)
                        else:
                            to_come = max(0, int(required or 0) - int(volume.array.nbytes))
                        running.publish(index, to_come)
                        output = segmenter.predict(volume)
                        ran = True
                    except KeyboardInterrupt:  # Ctrl-C, SIGTERM: closed before 'finally' publishes 0, so that a read
                        running.close()  # waiting for this case's estimate prepares nothing
                        raise
                    except Exception as exc:  # noqa: BLE001 - one case's failure must not stop the batch
                        finished(CaseStatus(case.case_id, "failed", time.perf_counter() - start,
                                            _one_line(exc) + _earlier_result_kept_text(case)))
                        continue
                    finally:
                        # this network has run (or never will): what stays reserved is its finish, which follows it
                        # (until handed_to_finish counts that finish itself); a read ending in between made its early
                        # copy with 0 reserved and that finish counted nowhere
                        running.publish(index, finish_memory_bytes(volume) if ran else 0, after_finishing=True)
                    status = CaseStatus(case.case_id, "done", time.perf_counter() - start,
                                        precision=str(output.facts.get("precision", {}).get("used", "")))
                    # post-processing, report and writing overlap the next case's network; at most one case waits to
                    # be finished, so a fast GPU cannot pile up CTs in memory behind a slower finishing thread
                    if finishing is not None:
                        concurrent.futures.wait([finishing])
                    future = submit_in_caller_context(finisher, _finish_and_write_case, case, segmenter, volume, output,
                                                      warnings, read_seconds, overwrite, share)
                    # the callback runs on the finishing thread once the case is done there: in the caller's context,
                    # so a case failing there is worded for the command line too ('--batch-size 1', not 'batch_size=1')
                    caller_context = contextvars.copy_context()
                    future.add_done_callback(lambda f, c=case, s=status, context=caller_context:
                                             context.run(finish_done, c, s, f))
                    # only this one is kept: a list of every finished future held each case's label map (and CT) to
                    # the end of the batch, about 50 MB per 512 x 512 x 200 case
                    finishing, finishing_bytes, finishing_id = future, finish_memory_bytes(volume), case.case_id
                    # the next CT's early copy counts it too; this case's reservation is dropped in the same step
                    running.handed_to_finish(index, finishing, finishing_bytes)
                    del volume, output, current, early
            except BaseException:  # Ctrl-C, SIGTERM anywhere in the loop: the batch ends without the next CT's
                running.close()  # read (when not started yet) and without an early copy of it
                stop_reads.cancel()  # a read under way stops at its next step
                if finishing is not None and not finishing.done():  # its network has run: its finish (seconds) is
                    # waited for, so that its outputs are whole, which the run said nothing of for those seconds
                    log.warning("stopping: case %s is finished first (its post-processing, then its report and label "
                                "map written: seconds), then the run ends", finishing_id)
                for future in reads.values():
                    future.cancel()
                raise
            if finishing is not None:
                concurrent.futures.wait([finishing])
    return [statuses[case.case_id] for case in cases]


def next_read_bytes(read: Optional["concurrent.futures.Future"], case: Optional[BatchCase]) -> int:
    """Bytes the read of the next ``case`` (its future ``read``) may still allocate: 0 when it has finished (its
    arrays are in memory, and counted so in the available memory) or was never started; else the voxels its header
    gives at the bytes a voxel its read holds at its peak, the stored voxels and their HU copy, as the reader's own
    check counts them (:func:`~LiverTumorSegLib.io.reading.read_peak_bytes`: 8 for a float32 NIfTI, whose read
    peaked at 7.6 bytes a voxel where every file was counted at 4 before; 4 for an int16 one), or for
    a DICOM folder the peak its read may hold from the headers of the files it may read, its subfolders' included
    (:func:`~LiverTumorSegLib.io.dicom.dicom_folder_read_bytes`: the files' bytes counted an int16 series at a third
    of that peak, a JPEG/RLE-compressed one at a seventh; a series in subfolders, a PACS export's
    PATIENT/STUDY/SERIES, was counted 0 before that); a DICOMDIR or a file of a DICOM series is read as its folder,
    and counted so."""
    if read is None or case is None or read.done():
        return 0
    path = Path(case.input_path)
    try:
        from ..io.dicom import dicom_folder_read_bytes

        if path.is_dir():
            return dicom_folder_read_bytes(path)
        if _read_as_its_folder(path):
            return dicom_folder_read_bytes(path.parent)
        from ..io.reading import read_peak_bytes

        return read_peak_bytes(path)
    except Exception:  # noqa: BLE001 - an unreadable header: that read fails on its own; nothing counted here
        return 0


def _read_as_its_folder(path: Path) -> bool:
    """Whether ``read_volume(path)`` reads ``path``'s folder: a DICOMDIR, or a file of a DICOM series."""
    from ..fileutil import full_suffix
    from ..io.formats import DICOM_FILE_SUFFIXES, may_be_dicom_file

    return path.name.upper() == "DICOMDIR" or full_suffix(path) in DICOM_FILE_SUFFIXES or may_be_dicom_file(path)


FINISH_BYTES_PER_VOXEL = 12
FINISH_FIXED_BYTES = 96 << 20
"""What a case's finish (``segmenter.finish``: post-processing, the lesion report and plausibility checks, then the
writing) may allocate at its peak beside the CT and the network's labels it is given: voxels of the CT x
:data:`FINISH_BYTES_PER_VOXEL` + :data:`FINISH_FIXED_BYTES`. Measured (30 Nov 2026, stand-in network, second finish in
one process, peak RSS rise): 11.3 bytes a voxel of a 512 x 512 x 100 CT (295 MiB), 16.5 of 512 x 512 x 20 (86 MiB),
71 of 122 x 101 x 112 (99 MiB)."""


def finish_memory_bytes(volume: Any) -> int:
    """Bytes the finish of ``volume``'s case may allocate at its peak (:data:`FINISH_BYTES_PER_VOXEL`)."""
    return int(volume.array.size) * FINISH_BYTES_PER_VOXEL + FINISH_FIXED_BYTES


def _check_beside_the_next_read(segmenter: Any, volume: Any, read: Optional["concurrent.futures.Future"],
                                case: Optional[BatchCase], running: Optional[RunningNetworkMemory] = None,
                                index: int = 0, finishing: Optional["concurrent.futures.Future"] = None,
                                finishing_bytes: int = 0) -> Optional[int]:
    """``segmenter.check_network_memory(volume)`` counting the next CT's read, which runs on the reader thread
    while this case's network runs: checked without it, the next CT was allocated after the check had passed and
    the network ran out of memory that the check had seen free. When the case fits alone but not beside the read,
    the read is waited for and the case checked again (the next CT then held, in the available memory): a case is
    never refused for the read ahead, which only loses its overlap with this network; that read then makes no
    early network-grid copy (``running``, this case's ``index``: it would not fit beside this network either, and
    the read would wait for this case's estimate). The previous case's finish (``finishing``, its peak
    ``finishing_bytes``: :func:`finish_memory_bytes`), which runs on the finishing thread beside this network, is
    counted so too while it has not ended, and waited for alike: it was counted by no check, so a case was let in
    while the previous one's post-processing was still to allocate its arrays. A next CT already read
    (:meth:`RunningNetworkMemory.is_read`), its future waiting for this case's estimate before its early copy, is
    in memory and counted nothing more: it was counted whole as still to come, which, with little memory free, made
    the case wait for that read and drop the early copy. Returns the estimate (bytes)."""
    from ..errors import ResourceError

    read_in_memory = running is not None and running.is_read(index + 1)
    read_bytes = 0 if read_in_memory else next_read_bytes(read, case)
    finish_bytes = int(finishing_bytes) if finishing is not None and not finishing.done() else 0
    pending = read_bytes + finish_bytes
    if pending <= 0:
        return segmenter.check_network_memory(volume)
    try:
        return segmenter.check_network_memory(volume, pending_bytes=pending)
    except ResourceError:
        if running is not None:
            running.publish(index, None)
        concurrent.futures.wait([future for future in (read, finishing) if future is not None])
        # it said 'the next CT's read and the previous case's finish' also when only one of them was counted
        waited = [name for name, counted in (("the next CT's read", read_bytes), ("the previous case's finish",
                                                                                 finish_bytes)) if counted > 0]
        log.debug("waited for %s before the network: %.0f MiB would not fit beside %s", " and ".join(waited),
                  pending / 2 ** 20, "them" if len(waited) > 1 else "it")
        return segmenter.check_network_memory(volume)


def _earlier_result_kept_text(case: BatchCase) -> str:
    """What a failed case's message adds when its label map is there still (an ``--overwrite`` run keeps an earlier
    run's outputs of a case it fails on): the table said only why it failed, and ``evaluate OUT`` took the earlier
    run's label map (of another model, or of the CT before it was replaced) for this run's."""
    if not case.output_path.exists():
        return ""
    return f" ({case.output_path} is an earlier run's label map, kept: not this run's result)"


@contextlib.contextmanager
def _cores_shared(segmenter: Any, share: Optional[CoreShare]) -> Iterator[None]:
    """The segmenter's engine shares the CPU's cores with the helpers (``share``; None: it does not) for the
    ``with`` block, and has all its threads again afterwards, also after an error."""
    engine = getattr(segmenter, "engine", None)
    if share is None or not hasattr(engine, "use_core_share"):
        yield
        return
    engine.use_core_share(share)
    try:
        yield
    finally:
        engine.use_core_share(None)


RESUME_AFTER_OVERWRITE = ("rerun with --overwrite to redo them: without it, a case not run keeps an earlier run's "
                          "label map, if it had one, as 'already segmented'")


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal: wide characters (Chinese, Japanese, Korean: East Asian width W or F) two,
    combining marks none, others one. Padded by characters, a case named '患者 2' pushed its row's columns out of line."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
               for c in text)


def format_status_table(statuses: List[CaseStatus], overwrite: bool = False) -> str:
    """A plain-text table: case, status, seconds, liver mL, lesions, precision, message. ``overwrite``: the run
    replaced earlier outputs, so its cases not run still hold an earlier run's label maps, which a plain rerun
    would keep as 'already segmented'."""
    header = ["case", "status", "seconds", "liver_mL", "lesions", "precision", "message"]
    rows = [[s.case_id, s.status, f"{s.seconds:.1f}", "" if s.liver_ml is None else f"{s.liver_ml:.1f}",
             "" if s.lesion_count is None else str(s.lesion_count), s.precision, s.message] for s in statuses]
    widths = [max(display_width(str(r[i])) for r in [header] + rows) for i in range(len(header) - 1)]
    lines = []
    for row in [header] + rows:
        cells = [str(c) + " " * (w - display_width(str(c))) for c, w in zip(row[:-1], widths)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    counts = {k: sum(1 for s in statuses if s.status == k) for k in ("done", "skipped", "failed", "not run")}
    resume = RESUME_AFTER_OVERWRITE if overwrite else "rerun to resume"
    lines.append(f"{counts['done']} done, {counts['skipped']} skipped (already segmented), {counts['failed']} failed"
                 + (f", {counts['not run']} not run (interrupted; {resume})" if counts["not run"] else ""))
    return "\n".join(lines)


def check_status_file_is_a_table(output_folder: Any, overwrite: bool = False) -> None:
    """Refuse (InputError, before any work) a file at ``OUT/batch_status.csv`` that is no batch's status table (its
    first line is not the table's header, ``case_id,status,...``): a user's own file of that name was replaced by the
    run's table without ``--overwrite``. An earlier batch's table is replaced, as each run writes its own. A folder
    of that name is refused with ``overwrite`` too: the run was told to pass --overwrite, then segmented every case,
    wrote no table and ended with exit 0 (a warning per case that the table was not written)."""
    path = Path(output_folder) / STATUS_FILE
    if path.is_dir():
        raise InputError(f"'{path}' is a folder, but the batch writes its status table as a file of that name "
                         f"(--overwrite does not replace a folder); move or rename that folder, or choose another "
                         f"output folder.")
    if overwrite or not path.exists():
        return
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as stream:
            first_line = stream.readline(4096)
    except OSError:
        first_line = ""
    if not first_line.startswith("case_id,status,"):
        raise InputError(f"'{path}' exists and is no batch status table (the file each batch writes there); it was "
                         f"kept: move it, choose another output folder, or pass --overwrite to replace it.")


def write_status_csv(statuses: List[CaseStatus], path: Any) -> Path:
    """The per-case table as CSV (atomically; metrics.report.write_case_table, as evaluate's cases.csv)."""
    from ..metrics.report import write_case_table

    return write_case_table([status.as_row() for status in statuses], path, overwrite=True, first_column="case_id")

