"""``livertumorseg segment``: segment liver and liver tumors in a CT (file or DICOM folder).

    livertumorseg segment INPUT -o OUTPUT [--model NAME|PATH] [--device auto|cpu|cuda|mps|gpu] [--report r.json]
    livertumorseg segment --sample -o out.nii.gz     # bundled sample CT + bundled model, prints liver Dice
    livertumorseg segment CT_FOLDER_OR_LIST.csv -o OUT_FOLDER   # many CTs, one model load, resumable

OUTPUT's extension picks the format (.nii.gz, .nii, .nrrd, .mha; .seg.nrrd with slicer-core; .dcm = DICOM
SEG referencing the input DICOM series, needs highdicom). Labels
0 background, 1 liver, 2 tumor, in the input's own geometry.

``--progress json`` (for programs that run this command, e.g. the Slicer module's child process): stdout
carries only JSON lines. Progress lines ``{"progress": 0.42, "stage": "network"}`` (fraction non-decreasing
in [0, 1]; the last one is exactly 1.0), then one final line, either
``{"done": true, "outputs": {"labels", "report", "probabilities", "preview"}, "seconds", "device"}`` (exit 0)
or ``{"error": "<first line of the message>"}`` (exit 2 for user errors, 1 for internal errors; a
multi-line message adds ``"details"``). SIGINT/SIGTERM (also SIGHUP, and Ctrl-Break on Windows) cancel at the
next checkpoint: ``{"error": "cancelled"}``, exit 130, nothing written. Human text (warnings, summary) goes to stderr.
"""
import argparse
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set, TextIO

import numpy as np

from ..argtypes import number
from ..errors import CancelledError, InputError, LiverTumorSegError, out_of_memory_error
from ..inference.options import add_segmentation_arguments, options_from_args, postprocessing_from_args  # noqa: F401
from ..inference.options import PROBABILITY_SUFFIXES
from ..io.formats import READ_SUFFIXES
from ..progress import logging_beside_bar

log = logging.getLogger(__name__)

PROGRESS_MODES = ("bar", "none", "json")
CANCEL_EXIT_CODE = 130  # like a shell's Ctrl-C


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("segment", help="segment liver and liver tumors in a CT",
                              description="Segment liver (1) and liver tumors (2) in an abdominal CT; "
                                          "labels are written in the input's geometry.")
    p.add_argument("input", nargs="?", help=f"CT file ({', '.join(READ_SUFFIXES)}) or DICOM folder; or, for a "
                                            "batch, a folder of CT files or a .csv with an 'image' column "
                                            "(optional 'case_id' or 'case'): then -o is an output folder")
    p.add_argument("-o", "--output", required=True,
                   help="label map to write; extension picks the format (.nii.gz, .nii, .nrrd, .mha, .seg.nrrd; "
                        ".dcm = DICOM SEG of a DICOM input)")
    p.add_argument("--sample", action="store_true",
                   help="segment the bundled sample CT and print the liver Dice against its reference")
    p.add_argument("--series", default=None,
                   help="which series of a DICOM folder holding several: its SeriesInstanceUID, a unique UID "
                        "prefix, its series description, or its number in the listing the error shows (1, 2, ...)")
    p.add_argument("--slice-thickness-mm", type=number(float, "mm"), default=None, metavar="MM",
                   help="the reconstruction thickness of the CT's slices in mm, for RECIST's measurable minimum "
                        "(twice it above 5 mm); wins over a DICOM SliceThickness (report: slice_thickness_source "
                        "'given'); default: the DICOM SliceThickness, else the slice spacing; one CT only")
    p.add_argument("--report", default=None, help="lesion report to write (.json or .csv); one CT only (a batch "
                                                  "writes OUT/reports/<case>.json)")
    p.add_argument("--preview", default=None, help="preview PNG with liver/tumor overlays; one CT only")
    p.add_argument("--probabilities", default=None, metavar="PROB",
                   help="also write the tumor probability map (uint8 0..255 = 255 x p, before post-processing, "
                        f"input geometry; {'/'.join(PROBABILITY_SUFFIXES)}), e.g. for `evaluate --prob`; for a "
                        "batch, a folder (PROB/<case>.nii.gz)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    add_segmentation_arguments(p)  # model, device, backend, batch size, threads, TTA, two-stage, post-processing ...
    p.add_argument("--progress", choices=PROGRESS_MODES, default="bar",
                   help="bar (default): progress bar on stderr; none; json: stdout carries only JSON lines "
                        "(progress, then the outputs or the error) for programs that run this command")
    p.add_argument("--no-progress", "--no-progress-bar", dest="progress", action="store_const", const="none",
                   help="same as --progress none (--no-progress-bar is the same)")
    p.misplaced_options = MISPLACED_OPTIONS  # the cli's answer to train's --config and --init-from given here
    return p


def _package_goes_to_model(option: str, value: str) -> str:
    return (f"segment has no {option}: the trained model package to segment with goes to --model NAME|PATH (an "
            f"installed model's name or a .safetensors file; it carries its own preprocessing and architecture)"
            + (f", e.g. --model {value}" if value.lower().endswith(".safetensors") else "")
            + ("; a training recipe is for train --config" if option == "--config" else ""))


MISPLACED_OPTIONS = {"--config": _package_goes_to_model, "--init-from": _package_goes_to_model}
"""Options of ``train`` that ``segment`` has not, each with its hint for the unknown-option error (a function of the
option and the value typed after it, '' if none): ``segment --config recipe.yaml`` was answered with
'unrecognized arguments' alone."""


def check_model_is_a_package(model: str) -> None:
    """Refuse an architecture name (unet, segnet, ...: what ``train --model`` takes) as ``--model``, which in
    ``segment`` is a trained model package, before the CT is read: ``segment --model unet`` read the CT, then said
    "No installed model named 'unet'" without saying that an architecture cannot segment, nor which installed
    packages are of that architecture. A package installed under that name, or a file of that name here (which the
    package lookup's own message explains), is left to the lookup."""
    from ..models import available_models

    if model not in available_models() or Path(model).exists():
        return
    from ..package import list_installed_models

    entries = list_installed_models(warn=False)
    if any(e["name"] == model or Path(e["path"]).stem == model for e in entries):  # usable or not: the lookup's
        return
    same = sorted({e["name"] for e in entries if e["error"] is None and e["architecture"] == model})
    installed = (f"installed packages of that architecture: {', '.join(same)}" if same
                 else f"no installed package is a {model}")
    raise InputError(f"--model {model}: in segment, --model is a trained model package (an installed model's name or "
                     f"a .safetensors file), and '{model}' is an architecture, which has no trained weights (train "
                     f"--model takes it to train one). Leave --model out for the bundled default model, or give a "
                     f"package ({installed}; livertumorseg models lists them all).")


def check_model_resolves(model: str, tta: bool = False) -> None:
    """Refuse a ``--model`` that names no package (a mistyped path or name, a damaged installed package), and
    ``--tta`` for a package whose metadata says it was trained without left-right flips (the bundled one), before
    the CT is read: the model loads beside the read, and its error came only once the whole CT (a DICOM series over
    a network share: a minute) had been read. The lookup and the package's header alone, no load (milliseconds);
    a header that cannot be read is left to the load, which says why."""
    from ..package import read_package_metadata, resolve_model

    path = resolve_model(model, warn=False)
    if not tta:
        return
    from ..inference.engine import check_flip_tta_allowed, trained_with_lr_flips

    try:
        metadata = read_package_metadata(path)
    except LiverTumorSegError:
        return
    if trained_with_lr_flips(metadata) is False:
        check_flip_tta_allowed(metadata)


def liver_dice(labels_zyx: np.ndarray, reference_zyx: np.ndarray) -> float:
    """Dice of liver (label >= 1) between two ``(z, y, x)`` label maps; 1.0 when both are empty."""
    from ..metrics.overlap import dice

    return dice(np.asarray(labels_zyx) >= 1, np.asarray(reference_zyx) >= 1)


BAR_DELAY_S = 0.5
"""Seconds before ``segment``'s progress bar first appears (tqdm's ``delay``)."""


class _TqdmProgress:
    """Progress callback driving a tqdm bar (0..100 %) with the stage as description. A stderr whose reader has
    gone (``2>&1 | head``) or that was closed at the start is the command line's to handle
    (:func:`~..cli.main` sends its writes to the null device), so the run goes on."""

    def __init__(self, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            # shown from half a second on: an error found at once (a missing input or model) came after two empty
            # 0 % bars
            self.bar = tqdm(total=100, unit="%", bar_format="{desc:<16}{percentage:3.0f}%|{bar}| {elapsed}",
                            delay=BAR_DELAY_S)

    def __call__(self, fraction: float, stage: str) -> None:
        if self.bar is None:
            return
        target = int(round(100 * fraction))
        if target > self.bar.n:
            self.bar.update(target - self.bar.n)
        self.bar.set_description_str(stage, refresh=False)

    def logging_beside_bar(self) -> Any:
        """A context in which the run's warnings are logged each on a line of their own (see
        :func:`~..progress.logging_beside_bar`)."""
        return logging_beside_bar(self.bar)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class JsonLines:
    """The ``--progress json`` protocol on ``stream`` (the real stdout): one JSON object per line, flushed.

    A stdout whose reader has gone (``| head -1``) or that was closed at the start is the command line's to handle
    (:func:`~..cli.main` sends its writes to the null device), so the run goes on.
    As a progress callback it writes ``{"progress": f, "stage": s}`` with ``f`` non-decreasing and rounded to
    4 digits, skipping repeats that moved less than 0.5 % within one stage (a slice-by-slice engine calls
    hundreds of times). :meth:`finish` makes sure the last progress line is exactly 1.0.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.last = -1.0  # last fraction written
        self.highest = 0.0  # highest fraction seen (also the skipped ones)
        self.last_stage = None  # type: Optional[str]

    def emit(self, obj: Dict[str, Any]) -> None:
        """One line, flushed."""
        self.stream.write(json.dumps(obj) + "\n")
        self.stream.flush()

    def __call__(self, fraction: float, stage: str) -> None:
        self.highest = min(max(float(fraction), self.highest), 1.0)
        fraction = round(self.highest, 4)
        if stage == self.last_stage and fraction - self.last < 0.005 and fraction < 1.0:
            return
        if fraction == self.last == 1.0:
            return
        self.last, self.last_stage = fraction, stage
        self.emit({"progress": fraction, "stage": stage})

    def finish(self) -> None:
        if self.last < 1.0:
            self(1.0, "done")

    def error(self, exc: BaseException) -> None:
        """Final line for a failure: the message's first line, the whole text in ``details`` if longer."""
        text = str(exc).strip() or type(exc).__name__
        first = text.splitlines()[0]
        obj = {"error": first}  # type: Dict[str, Any]
        if first != text:
            obj["details"] = text
        self.emit(obj)


CANCEL_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK")
"""The signals that cancel a ``--progress json`` run (:class:`_SignalsCancel`), those this platform has: the
command line's stop signals (``cli._stop_signals``) and Ctrl-C."""


class _SignalsCancel:
    """While active, SIGINT, SIGTERM and (where they exist) SIGHUP and SIGBREAK set ``token`` (the run stops at
    its next checkpoint and writes nothing); a second signal interrupts at once, and so does the first while
    ``at_once`` is set (the CT is read: no checkpoint until the read ends, and nothing is written yet; a 600-slice
    .nii.gz took 11 s to say "cancelled"). Only possible in the main thread
    (else a no-op). A signal this process was started with ignored (SIGINT of a background job of a script:
    ``segment ... &``; SIGHUP under ``nohup``) stays ignored, as it does with ``--progress bar`` or ``none``: a
    Ctrl-C meant for the script cancelled the json run alone. SIGHUP, left to the command line, was raised at
    once, also after the outputs were written: 'cancelled; no output was written' beside the files."""

    def __init__(self, token: Any) -> None:
        self.token = token
        self.previous = {}  # type: Dict[int, Any]
        self.committed = False  # set once the outputs are in place: a signal then changes nothing
        self.at_once = False  # set while the CT is read (:meth:`progress`): a signal stops the run at once

    def _handle(self, signum: int, frame: Any) -> None:
        if self.committed:  # the run is done and its files written: it ends with "done", not "cancelled"
            return
        if self.token.is_cancelled or self.at_once:
            self.token.cancel()
            raise KeyboardInterrupt  # no Exception: a reader's 'except Exception' would call it a bad file
        self.token.cancel()

    def progress(self, lines: Callable[[float, str], None]) -> Callable[[float, str], None]:
        """``lines``, the progress callback, that also sets :attr:`at_once` while the stage is ``reading``
        (``Segmenter.segment_file`` reads and checks the CT in it, and writes nothing before a later stage)."""
        def callback(fraction: float, stage: str) -> None:
            self.at_once = stage == "reading"
            lines(fraction, stage)

        return callback

    def __enter__(self) -> "_SignalsCancel":
        for signum in (getattr(signal, name) for name in CANCEL_SIGNALS if hasattr(signal, name)):
            if signal.getsignal(signum) == signal.SIG_IGN:
                continue
            try:
                self.previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def format_summary(result: Any) -> str:
    """Human-readable summary lines of a SegmentationResult."""
    from ..inference.lesion_report import LISTED_LESIONS_MAX, RECIST_MIN_LONG_AXIS_MM, lesion_summary_line, number_text

    r = result.report
    lines = [f"wrote {result.output_path} ({result.seconds:.1f} s on {result.device})",
             f"liver volume: {number_text(r['liver_volume_ml'], 1)} mL; tumors: {r['lesion_count']} "
             f"({number_text(r['tumor_volume_ml'], 2)} mL, burden {number_text(r['tumor_burden_percent'], 2)} %)"]

    minimum_mm = (r.get("recist") or {}).get("measurable_minimum_mm", RECIST_MIN_LONG_AXIS_MM)
    for lesion in r["lesions"][:LISTED_LESIONS_MAX]:
        lines.append("  " + lesion_summary_line(lesion, centroid=True, minimum_mm=minimum_mm))
    if len(r["lesions"]) > LISTED_LESIONS_MAX:
        lines.append(f"  ... {len(r['lesions']) - LISTED_LESIONS_MAX} more in the report")
    if result.report_path:
        lines.append(f"report: {result.report_path}")
    if result.preview_path:
        lines.append(f"preview: {result.preview_path}")
    if getattr(result, "probability_path", None):
        lines.append(f"tumor probability (uint8, 255 = 1.0): {result.probability_path}")
    return "\n".join(lines)


def _input_path(args: argparse.Namespace) -> Path:
    from .. import resources

    if args.sample:
        if args.input:
            raise InputError("Give either an INPUT or --sample, not both.")
        return resources.sample_ct_path()
    if not args.input:
        raise InputError("Give an INPUT CT file or DICOM folder (or --sample for the bundled sample CT).")
    input_path = Path(args.input)
    if not input_path.exists():
        from ..fileutil import similar_names_hint, unexpanded_home_hint

        # the words read_volume uses (preprocess, measure --ct): the missing folder and a quoted '~' are named
        parent_hint = "" if input_path.parent.exists() else f" (its folder '{input_path.parent}' does not exist either)"
        raise InputError(f"Input '{input_path}' does not exist{parent_hint}{similar_names_hint(input_path)}; check the "
                         f"path{unexpanded_home_hint(input_path)}.")
    return input_path


def _refuse_writing_the_sample_reference(args: argparse.Namespace) -> None:
    """InputError when an output of ``segment --sample`` is the bundled sample's reference label map (any spelling,
    link or hard link): with --overwrite it was replaced by the result, which was then compared with itself
    ('liver Dice vs bundled reference: 1.000'), and the bundled reference was lost."""
    from .. import resources
    from ..fileutil import same_file_among

    reference = resources.sample_reference_path()
    for option, path in (("-o", args.output), ("--probabilities", args.probabilities)):
        if path is not None and reference.exists() and same_file_among([reference, Path(path)]):
            raise InputError(f"{option} '{path}' is the bundled sample's reference label map ('{reference}'), which "
                             f"--sample compares the result with; choose another output path.")


def _segment(args: argparse.Namespace, progress: Any, cancel: Any = None) -> Any:
    """Segment the input of the parsed arguments with a :class:`Segmenter`; returns its SegmentationResult."""
    from ..inference.segmenter import Segmenter

    if args.batch_size is not None and args.batch_size < 1:  # before reading the CT and loading the model
        raise InputError(f"--batch-size must be at least 1 (got {args.batch_size}).")
    options = options_from_args(args)  # every setting checked first
    from ..metrics.recist import check_given_slice_thickness

    check_given_slice_thickness(args.slice_thickness_mm)  # before reading the CT and loading the model
    input_path = _input_path(args)
    if args.sample:
        _refuse_writing_the_sample_reference(args)
    return Segmenter(options).segment_file(input_path, args.output, report_path=args.report,
                                           preview_path=args.preview, probability_path=args.probabilities,
                                           overwrite=args.overwrite, series=args.series, progress=progress,
                                           cancel=cancel, slice_thickness_mm=args.slice_thickness_mm)


def _print_summary(args: argparse.Namespace, result: Any, stream: TextIO) -> None:
    from .. import resources

    print(format_summary(result), file=stream)
    if args.sample:
        reference_path = resources.sample_reference_path()
        if reference_path.exists():
            from ..io import read_label_map, read_volume

            reference = read_label_map(reference_path, reference=read_volume(resources.sample_ct_path()))
            print(f"liver Dice vs bundled reference: {liver_dice(result.labels, reference.array):.3f}", file=stream)


def _optional_path(path: Any) -> Optional[str]:
    return None if path is None else str(path)


def _run_json(args: argparse.Namespace) -> int:
    """``--progress json``: JSON lines on the real stdout, everything printed for humans to stderr."""
    from ..progress import CancellationToken

    real_stdout = sys.stdout
    lines = JsonLines(real_stdout)
    token = CancellationToken()
    sys.stdout = sys.stderr  # any stray print of a library goes to stderr, never into the protocol
    try:
        with _SignalsCancel(token) as signals:
            result = _segment(args, progress=signals.progress(lines), cancel=token)
            # the outputs are written: a signal from here on was reported as "cancelled; no output was written"
            # (exit 130) beside the files it had just written
            signals.committed = True
            _print_summary(args, result, sys.stderr)
            lines.finish()
            lines.emit({"done": True,
                        "outputs": {"labels": str(result.output_path), "report": _optional_path(result.report_path),
                                    "probabilities": _optional_path(result.probability_path),
                                    "preview": _optional_path(result.preview_path)},
                        "seconds": round(float(result.seconds), 3), "device": str(result.device)})
        return 0
    except (CancelledError, KeyboardInterrupt):
        lines.emit({"error": "cancelled"})
        print("cancelled; no output was written", file=sys.stderr)
        return CANCEL_EXIT_CODE
    except LiverTumorSegError as exc:
        lines.error(exc)
        raise  # the CLI prints "error: ..." on stderr and exits 2
    except Exception as exc:  # noqa: BLE001 - the CLI reports it as an internal error (exit 1)
        memory = out_of_memory_error(exc, batch_size_option=True)
        if memory is not None:  # the user's to fix: a one-line error, exit 2
            lines.error(memory)
            raise memory from exc
        from ..cli import file_system_error_text, missing_package_text

        # the CLI's other exit-2 words (user_error_text, whose memory check ran just above): the same here
        users = file_system_error_text(exc) or missing_package_text(exc)
        lines.error(RuntimeError(users) if users else RuntimeError(f"internal error: {type(exc).__name__}: {exc}"))
        raise
    finally:
        sys.stdout = real_stdout


def _make_output_folder(folder: Path, what: str = "Output folder") -> None:
    """Create a batch's output folder (or ``what``: its probability folder) and its parents and check it is
    writable, before any work."""
    from ..fileutil import check_folder_writable, check_path_encoding, refuse_unexpanded_home

    check_path_encoding(folder, what)
    refuse_unexpanded_home(folder, what)  # --output=~/bo made ./~/bo
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{what} '{folder}' cannot be created ({exc.strerror or exc}); choose another "
                         f"location or fix its permissions.") from None
    check_folder_writable(folder)


def _run_batch(args: argparse.Namespace) -> int:
    """Batch mode: every CT of a folder/CSV into ``args.output`` (a folder), model loaded once; prints the
    per-case status table (also ``OUT/batch_status.csv``). Exit 0 when no case failed, else 2."""
    from ..inference.batch import batch_folder_lock, check_status_file_is_a_table, find_cases

    # what to do instead, per option: "a batch writes OUT/reports/<case>.json" told a --series or
    # --slice-thickness-mm user nothing they could do (the fresh-user audit)
    one_ct_only = {"--report": "a batch writes OUT/<case>.nii.gz and OUT/reports/<case>.json",
                   "--preview": "a batch writes OUT/<case>.nii.gz and OUT/reports/<case>.json",
                   "--series": "segment that DICOM folder alone with --series, or list a folder holding only that "
                               "series in a case CSV (column 'image')",
                   "--slice-thickness-mm": "a batch's CTs may differ in thickness: segment that CT alone with it, "
                                           "or give it to measure on the case's label map (measure LABELS --ct CT "
                                           "--slice-thickness-mm MM)"}
    for flag, value in (("--report", args.report), ("--preview", args.preview), ("--series", args.series),
                        ("--slice-thickness-mm", args.slice_thickness_mm)):
        if value is not None:
            raise InputError(f"{flag} is for one CT; {one_ct_only[flag]}.")
    if args.batch_size is not None and args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1 (got {args.batch_size}).")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"For a folder or list of CTs, -o must be an output folder; '{out}' is a file.")
    from ..fileutil import full_suffix, outermost_missing_folder, remove_empty_folders
    from ..io import WRITE_SUFFIXES
    if not out.exists() and (full_suffix(out) in WRITE_SUFFIXES + (".dcm",) or out.name.endswith(".seg.nrrd")):
        raise InputError(f"'{args.input}' is a folder or list of CTs (a batch), which writes an output folder, but -o "
                         f"'{out}' names a {full_suffix(out)} file; give a folder name (e.g. -o preds/).")
    options = options_from_args(args)  # every setting checked first
    if args.probabilities is not None:  # a folder: PROB/<case>.nii.gz, the tumor probability before post-processing
        import dataclasses

        options = dataclasses.replace(options, probabilities=True)
    cases = find_cases(args.input, out, probability_folder=args.probabilities)
    check_status_file_is_a_table(out, overwrite=args.overwrite)
    made = []  # (folder, its outermost part this run created): removed again while empty after a failure
    try:
        for folder, what in [(out, "Output folder")] + ([(Path(args.probabilities), "Probability folder")]
                                                        if args.probabilities is not None else []):
            made.append((folder, outermost_missing_folder(folder)))
            _make_output_folder(folder, what)  # an unwritable one is refused before any CT is segmented
        with contextlib.ExitStack() as locks:  # one batch run at a time writes into a folder
            locks.enter_context(batch_folder_lock(out))
            if args.probabilities is not None:  # two runs sharing it (other -o) each replaced the other's maps,
                # which both reports named ('choose another output folder' named the wrong option to change)
                locks.enter_context(batch_folder_lock(Path(args.probabilities), "--probabilities folder"))
            return _run_batch_cases(args, options, cases, out)
    except BaseException:
        # a run refused once the model loads (--model misspelt or damaged, --tta for a model trained without
        # flips) left the empty output folder, and its parents, behind
        for folder, created in reversed(made):
            if created is not None:
                remove_empty_folders(folder, created)
        raise


NOT_REACHED = "not reached (this run was going on, or was killed, when the table was written)"
"""A case's message in batch_status.csv while the run that wrote it had not reached it."""


def _run_batch_cases(args: argparse.Namespace, options: Any, cases: List[Any], out: Path) -> int:
    """The batch's ``cases`` into the output folder ``out`` (made and locked by :func:`_run_batch`) with the
    segmentation ``options``."""
    from ..inference.batch import (STATUS_FILE, format_status_table, segment_batch, statuses_before_the_run,
                                   write_status_csv)
    from ..inference.segmenter import Segmenter

    segmenter = Segmenter(options)  # loaded by segment_batch while it reads the first two CTs

    def on_loaded() -> None:
        print(f"{len(cases)} case(s) -> {out} on {segmenter.device_description}", file=sys.stderr)
        # once before any case is segmented, after the checks of earlier results and the model load: a run killed
        # before its first case ended left the previous run's table, which called a case done whose label map had
        # since been removed to redo it (the batch audit); written before segment_batch, a run those checks or the
        # load refused replaced the previous table with one of a run that did nothing, and a new output folder was
        # left holding it (the next batch audit)
        write_table(so_far(NOT_REACHED))

    import threading

    from ..inference.batch import CaseStatus

    finished = statuses_before_the_run(cases, bool(args.overwrite))  # type: Dict[str, Any]  # then as cases end
    table_lock = threading.Lock()  # cases end on the finishing thread and on this one

    def so_far(message: str) -> List[Any]:  # every case: its status, or 'not run' with ``message``
        return [finished.get(c.case_id) or CaseStatus(c.case_id, "not run", message=message) for c in cases]

    causes_said: Set[str] = set()

    def write_table(statuses: List[Any]) -> None:
        try:
            out.mkdir(parents=True, exist_ok=True)
            write_status_csv(statuses, out / STATUS_FILE)
        except (OSError, LiverTumorSegError) as exc:  # a full disk, an output folder gone read-only
            from ..cli import file_system_error_text
            cause = str(file_system_error_text(exc) or exc)
            if cause not in causes_said:  # the table is tried as each case ends: a full disk said it for every case
                causes_said.add(cause)
                log.warning("warning: %s was not written: %s (it is tried again as each case ends and at the "
                            "batch's end; this warning is not repeated for the same cause)", out / STATUS_FILE, cause)

    def on_case(status: Any) -> None:
        with table_lock:
            finished[status.case_id] = status
            if args.progress == "bar":
                print(f"{status.case_id}: {status.status} ({status.seconds:.1f} s) {status.message}".rstrip(),
                      file=sys.stderr)
            # as each case is segmented or fails: a run killed without a word (SIGKILL, out of memory) left the
            # previous run's table, calling done cases it had redone; a case failed before the load (a user's file
            # where its report goes) waits for it: the load may still refuse the run, which then leaves the previous
            # table (the engine is set only by a load that succeeded)
            if status.status != "skipped" and segmenter.loaded:
                write_table(so_far(NOT_REACHED))

    interrupted = None  # type: Optional[BaseException]
    try:
        statuses = segment_batch(cases, segmenter, overwrite=args.overwrite, on_case=on_case, on_loaded=on_loaded)
    except (KeyboardInterrupt, CancelledError) as exc:
        # the cases finished so far are on disk: say so in the table and batch_status.csv, as after a full run
        # (before, an interrupted batch left no table and kept an earlier run's batch_status.csv)
        statuses = so_far("interrupted")
        interrupted = exc
    # first: a full disk must not hide it
    print(format_status_table(statuses, overwrite=bool(args.overwrite)))
    write_table(statuses)
    if interrupted is not None:
        raise interrupted
    return 2 if any(s.status == "failed" for s in statuses) else 0


def run(args: argparse.Namespace) -> int:
    from ..inference.batch import check_batch_folder_has_cts, is_batch_input
    from ..models.monai_import import hide_optional_packages_while_importing_monai

    hide_optional_packages_while_importing_monai()  # this process only segments: about 1 s less to load MONAI

    if args.progress == "json":
        try:  # a refusal before the run (a folder of CTs, a folder mixing DICOM and CT files) ends the protocol too
            check_model_is_a_package(args.model)
            check_model_resolves(args.model, tta=bool(args.tta))
            if args.input and not args.sample and is_batch_input(args.input, args.output):
                raise InputError("--progress json is for one CT; run a batch with --progress bar or none.")
        except LiverTumorSegError as exc:
            JsonLines(sys.stdout).error(exc)
            raise
        return _run_json(args)
    check_model_is_a_package(args.model)
    check_model_resolves(args.model, tta=bool(args.tta))
    if args.input and not args.sample and is_batch_input(args.input, args.output):
        return _run_batch(args)
    if args.input and not args.sample and args.output:
        check_batch_folder_has_cts(args.input, args.output)
    progress = _TqdmProgress(enabled=args.progress == "bar")
    try:
        with progress.logging_beside_bar():
            result = _segment(args, progress=progress)
    finally:
        progress.close()
    _print_summary(args, result, sys.stdout)
    return 0
