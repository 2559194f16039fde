"""Issue 11's held-out table for several models side by side, in one command.

    python scripts/heldout_comparison.py CTS --ref LABELS -o OUT [--models v10,v3] [--model NAME=PACKAGE ...]
                                         [--device auto|cpu|cuda] [--label-map JSON] [--no-probabilities]
                                         [--overwrite]

``CTS``: a folder (or CSV) of CTs, as ``livertumorseg segment`` takes it; ``LABELS``: the reference label maps
(0 background, 1 liver, 2 tumor), paired with the predictions by case name as ``livertumorseg evaluate`` pairs
them. For each model, in its own process each, exactly as one would type them:

    livertumorseg segment CTS -o OUT/NAME/pred --model PACKAGE --device DEVICE --no-progress
                          --probabilities OUT/NAME/prob
    livertumorseg evaluate --pred OUT/NAME/pred --ref LABELS -o OUT/NAME/eval --no-plots --no-progress
                           --prob OUT/NAME/prob
                           [--label-map JSON]     (the references' other label values, as evaluate takes them)

(``--no-probabilities`` leaves out ``--probabilities`` and ``--prob``: no maps are written, 1 byte a voxel of each
CT, gzipped, and the table has no lesion FROC.)

then one table (printed, and written to ``OUT/comparison.md`` and ``OUT/comparison.json``) with issue 11's rows:
liver Dice mean / worst case, tumor Dice mean, predicted lesions that touch no reference lesion (total), liver
labelled outside the reference liver (total mL), and beside them the reference cases without a prediction (a case
``segment`` failed on: **a failure**, and outside every number above it), the cases whose report says "Implausible
result", and whether the model meets the issue's targets (never when a case has no prediction; when no reference
case has a tumor, the tumor Dice is shown as not measured and the verdict is "no" if another target is missed, else
not judged; when only some have one, the cell says how many, and gives the mean over those cases beside LiTS's mean
over every case, in which a tumor-free case counts 1 with no tumor predicted and 0 with any: both must meet the
target for a "yes"). Each number is shown
with as many digits as it takes to be on the side of its target it is on (a worst liver Dice of 0.9196 is not shown
as 0.920 beside ">= 0.92"), and a cell that misses its target ends in "(misses)". With the probability maps, a row
(no target) gives evaluate's lesion FROC: the tumor lesion sensitivity at 1 false lesion per case, and the mean
sensitivity at 1/8, 1/4, 1/2, 1, 2, 4 and 8 false lesions per case (CPM), over the cases pooled, each predicted lesion
ranked by its mean tumor probability (``comparison.json`` holds evaluate's whole ``lesion_froc``, with its curve): it
shows at what confidence a model's false lesions sit, beside the "<= 10 false lesions" target.
``OUT/per_case.csv`` puts each reference case's numbers side by side, a column per model and number (liver Dice,
tumor Dice, predicted lesions touching no reference lesion, mL liver outside the reference liver, the
"Implausible result" flag; empty where that model has no prediction of the case): the per-patient differences
between two models, which a mean hides. Its first columns say what each case is like, from its CT and reference
(numbers only, nothing that names a patient; also ``comparison.json``'s ``cases``): pixel size and slice spacing
(mm), slices, how far the scan reaches above and below the reference liver (mm: chest and pelvis in the field of
view), the reference liver's volume (mL) and the mean HU of its parenchyma (contrast phase), and the reference tumor
volume (mL), so a failure can be read against scale, slice thickness, field of view and phase.

With few patients two means say little; the rows after the verdict (they change no verdict) say how sure a
difference is. "liver Dice mean: 95 % interval" is evaluate's (summary.json's ``ci95_low`` and ``ci95_high`` of
``dice_liver``, with its n; "no interval from 1 case" with fewer than 2 cases; empty from a summary.json written
before evaluate gave them). The "paired with FIRST"
rows compare each model after the first with the first model (``--models v10,v3``: v3 minus v10), case by case on
per_case.csv's liver and tumor Dice (a case without reference tumor: 1 or 0 for no tumor predicted or some, as in
LiTS's mean), over the cases both have a number of: the mean of the per-case differences (this model minus the
first: positive is better), its 95 % paired interval (the cases resampled with both models' values of a case kept
together: the per-case differences bootstrapped by evaluate's method, resamples and seed,
``LiverTumorSegLib.metrics.bootstrap.mean_intervals``, cases in per_case.csv's order; none from 1 case), on how many
cases this model is better, worse, tied (equal), and the reference cases left out (no prediction from one of the
two, or an undefined value). An interval that excludes 0 says the difference is more than the cases' scatter; a
percentile interval from 3-10 cases is a rough one, narrower than it should be (n is shown): read it with the better
/ worse counts. ``comparison.json`` holds each later model's ``paired_vs_first`` (``first``, then per metric ``n``,
``mean_difference``, ``ci95_low``, ``ci95_high``, ``better``, ``worse``, ``tied``, ``cases_left_out``; ``error``
when the first model did not run), the rows' ``dice_liver_ci95_low``, ``dice_liver_ci95_high`` and ``dice_liver_n``,
and ``paired_bootstrap``: how the paired intervals were taken.

Models: ``--models`` names built-in ones (default ``v10,v3``), ``--model NAME=PACKAGE`` adds any package (a file
or an installed model's name). Built-in:

- ``v10``: the bundled default since 28 Nov 2026 (used as installed when its weights are v10's; else taken from git
  history, commit 142c637);
- ``v3``: the default from 23 to 28 Nov 2026, from git history as it was last bundled (commit 3faa2c5: its weights
  of 758666e with the 2.5D neighbour bounds and training body sizes added since);
- ``v2``: the default before v3, from this repository's git history (commit 013a56e);
- ``v4``: the candidate that lost to v3 by the two-seed rule (docs/default_model_v4.md), from git history
  (commit 4614857).
- ``v11``: the candidate that lost to v10 (docs/default_model_v11.md: more small lesions found, more false lesions on
  the robustness rows), from git history (commit 782f880); it records its own lesion confidence threshold, 0.75,
  which ``segment`` uses for it.
- ``v11peak``: the same file with 0.99 of each lesion's peak tumor probability recorded as its rule instead
  (docs/lesion_peak_probability.md: fewer false lesions than v10 on the robustness rows with v11's small-lesion
  gain, more water beside the liver called tumor); written into ``OUT/models`` once, weights checked.

The bundled packages keep their 2.5D neighbour slices 1-3 mm from the centre (``context_min_mm`` 1.0 and
``context_max_mm`` 3.0, set on 25 Nov 2026: on a CT with slices under 1 mm they take every second or third slice,
on slices over 3 mm HU interpolated 3 mm from the centre; v10 and v3 record it too); v2 and v4 from git history
predate it and stack adjacent slices. To compare them alike on such CT, give copies of v2 and v4 the same setting
(``python scripts/set_context_spacing.py COPY --min-mm 1.0 --max-mm 3.0``) and pass them with ``--model``.

A model from git history is written to ``OUT/models/NAME.safetensors`` and used only when its weights' SHA-256 is
the one pinned here (a clone without that commit, a shallow one, says how to get it). v2 was saved before packages
recorded a metadata hash, so loading it prints a warning that says so.

Resumable: a rerun of the same command after an interruption goes on where it stopped. ``segment`` skips the cases
it has already written (delete ``OUT/NAME/pred`` and ``OUT/NAME/prob`` to segment again); an ``OUT/NAME/eval`` this script's ``evaluate``
wrote is kept when the predictions, the references and ``--label-map`` are those it evaluated, and evaluated again
(replaced without ``--overwrite``) when they changed; the script records what it wrote and read in
``OUT/NAME/.heldout_comparison.json`` and its comparison files in ``OUT/.heldout_comparison.json``. Before any CT is
segmented, every model's package is loaded,
and a ``OUT/NAME/pred`` is refused when it holds a label map segmented without its probability map (by this script
before it asked for them: delete the folder, or pass ``--no-probabilities``), when ``OUT/NAME/prob`` holds a map its
case's report does not name, or when it holds a label map that NAME's package did not write (its report names
other weights, or none), a case that is not in CTS, or a label map that ``segment`` itself would refuse to resume
(``batch.check_earlier_results``: made with other result-changing settings than this script's segment command,
such as ``--no-postprocess``, or of another CT file than the case's now): each would be evaluated as NAME's, or
stop NAME's segment after hours of the models before it. ``OUT`` must not lie
inside ``LABELS`` (``evaluate`` would find the predictions among the references). A CT in a folder CTS that is
named as a label map (``p1_liver.nii``: segment leaves such files out of a folder, as LiTS keeps segmentation-N
beside volume-N) is refused when its case has a reference and no other CT: rename it, or list the CTs in a CSV.
The references are checked then too, each as ``evaluate`` reads it (values 0/1/2, or those ``--label-map`` maps:
a 0/255 reference stops the script with the ``--label-map`` that maps it, and so does a value other than 0 that
``--label-map`` does not list, which evaluate would score as background: map it to 0 to drop it on purpose) and its
grid against its CT's header (segment writes each prediction on its CT's grid, and evaluate refuses a prediction off
its reference's grid): such a reference used to stop evaluate once per model, after every model had segmented every
CT. A reference whose case has no CT in CTS stops the script too (it was counted as a failure of every model): put
its CT in CTS under its case's name, or move it out of ``LABELS``; a DICOM series is no case of a folder CTS
(``segment`` takes a folder's CT files only): list the CTs in a case CSV (columns ``image``, ``case_id``) instead.
An ``evaluate`` folder that this script did not write (or one changed since), and comparison files of another
command (other models, CTS, references or ``--label-map``) or not written by this script, are replaced only with
``--overwrite``, which also evaluates every model again; a model taken from git history that is already in
``OUT/models`` is used when its weights are the pinned ones, and never replaced.

Exit status 0 when every model was segmented and evaluated (failed cases are counted in the table, not here);
1 when a model's ``segment`` or ``evaluate`` could not run at all (a ``segment`` that exits with an error before its
status table, such as a refusal before any work, is such a model: label maps an earlier run left in its folder are
not evaluated as its); 2 for a usage or input error. Stopped by SIGINT (Ctrl-C), SIGTERM or SIGHUP, also when only
the script's own process gets it: the running ``segment`` or ``evaluate`` (in a session of its own, so that it gets
each signal once) is stopped with the same signal and waited for, which removes its unfinished files, then one line
says so and the exit status is 128 + the signal's number (130, 143, 129); rerun the same command to go on. Killed
outright (SIGKILL, which no program can pass on), the script leaves its ``segment`` or ``evaluate`` to notice within
seconds (a check each second, then its next cancellation point) that the script has ended, and stop as SIGTERM
stops it.
"""
import argparse
import contextlib
import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LiverTumorSegLib.errors import InputError  # noqa: E402
from LiverTumorSegLib.fileutil import spreadsheet_cell_text, spreadsheet_safe_text  # noqa: E402
from LiverTumorSegLib.inference.batch import STATUS_FILE  # noqa: E402
from LiverTumorSegLib.parent_watch import parent_environment  # noqa: E402
from LiverTumorSegLib.package import read_package_metadata, resolve_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class BuiltinModel:
    """A model kept in this repository: the file ``commit:path`` of git history (its SHA-256 ``file_sha256``), whose
    weights' SHA-256 is ``weights_sha256`` (``LiverTumorSegLib.package.weights_sha256``: a later metadata-only update
    of the bundled file changes the file's hash, not this one)."""
    description: str
    commit: str
    path: str
    file_sha256: str
    weights_sha256: str
    bundled_name: Optional[str] = None  # an installed model that holds these weights while it is the default
    # (threshold, statistic) recorded in the file from history before it runs (set_package_min_lesion_probability):
    # the same network with its lesions read otherwise
    lesion_rule: Optional[Tuple[float, str]] = None


BUILTIN_MODELS = {
    "v10": BuiltinModel("bundled default since 28 Nov 2026 (docs/default_model_v10.md)", "142c637",
                        "Resources/Models/default.safetensors",
                        "795279efb795f9133a8ec74c6c8b5b31e6af2676ead34cd0d8825cd25b78f75d",
                        "aec4712901953b6cc5abab0d9270dec5ae3f9b3b6ec0c45c968e3a77170b33ee", bundled_name="default"),
    # v3 as it was last bundled (3faa2c5): its weights of 758666e with the metadata added since (2.5D neighbour
    # bounds, training body sizes, the stored robustness table), so it runs as it did while it was the default
    "v3": BuiltinModel("bundled default from 23 to 28 Nov 2026", "3faa2c5", "Resources/Models/default.safetensors",
                       "1670517f0a12bca9fd73cb5f6bc321c2a03d435fa59f43bbfe7650eb556e7b5b",
                       "39135919f0d70b2820761d28e035c13d29081525adb14697fda0218f6c626307", bundled_name="default"),
    "v2": BuiltinModel("default before v3", "013a56e", "Resources/Models/default.safetensors",
                       "dbe4e960200498115d4bae703f298b48880d62f65312626b796c1aab945c47f2",
                       "0f8e4401978ef5103123402434c0eb1fb01ae6dafa5a45cd27a8727fc9f1d605"),
    "v4": BuiltinModel("candidate that lost to v3 (docs/default_model_v4.md)", "4614857",
                       "docs/candidates/default_v4.safetensors",
                       "a41ba2b24a24470f0e718c833eff1a9f6f1e5682d0aa10249f502229885051b9",
                       "28978b94a32b07f8ac574cc969222304ba4816665611a4a500652f5ac22b9026"),
    # v11 failed its default's clauses against v10 (more small lesions found, more false lesions elsewhere); kept
    # so the held-out CT can say which of the two trades is the better one there
    "v11": BuiltinModel("candidate that lost to v10 (docs/default_model_v11.md)", "782f880",
                        "docs/candidates/default_v11.safetensors",
                        "f7d5407ff8e7a90ba163f62cc46e3c25ae85a0d61b19439c390c540101086abc",
                        "9b703a9c5e7d08baa0555f391e26fdd0bc2c4fec0fa71e50ffb7a1974bf97216"),
    # v11's network read by each lesion's peak tumor probability (docs/lesion_peak_probability.md): fewer false
    # lesions than v10 on the robustness rows with v11's small-lesion gain, more perihepatic water called tumor
    "v11peak": BuiltinModel("v11 read by its lesions' peak tumor probability, 0.99 (docs/lesion_peak_probability.md)",
                            "782f880", "docs/candidates/default_v11.safetensors",
                            "f7d5407ff8e7a90ba163f62cc46e3c25ae85a0d61b19439c390c540101086abc",
                            "9b703a9c5e7d08baa0555f391e26fdd0bc2c4fec0fa71e50ffb7a1974bf97216",
                            lesion_rule=(0.99, "peak")),
}

RESERVED_NAMES = ("models", "comparison.md", "comparison.json", "per_case.csv")
"""What OUT holds beside the models' folders: no model may be named so (on any disk's letter case)."""

TARGETS = {"dice_liver_mean": 0.945, "dice_liver_worst": 0.92, "dice_tumor_mean": 0.70, "false_lesions": 10,
           "liver_outside_ml": 80.0}
"""Issue 11's 'done when' on the held-out CTs: liver Dice mean >= 0.945 and every case >= 0.92, tumor Dice mean
>= 0.70, <= 10 predicted lesions touching no real lesion, <= 80 mL liver outside the true liver."""

IMPLAUSIBLE = "Implausible result"

Runner = Callable[[List[str]], int]


class Stopped(Exception):
    """This script was stopped by the signal ``signum``; ``child``: the command that ran then and was stopped too
    (:func:`run_child`; "" when none ran), ``child_code`` its exit status. ``exit_code``: 128 + the signal's number,
    as a shell reports a process the signal ended (130 SIGINT, 143 SIGTERM, 129 SIGHUP)."""

    def __init__(self, signum: int, child: str = "", child_code: Optional[int] = None) -> None:
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + int(signum)
        self.child, self.child_code = child, child_code
        ran = (f"; the running '{child}' was stopped too (it removes its unfinished files; exit {child_code})"
               if child else "")
        super().__init__(f"stopped by {self.signal_name}{ran}; rerun the same command to go on where it stopped")


class _Child:
    """The command :func:`run_child` runs now, the stop signals this script got meanwhile, and whether a Ctrl-Z came
    while it was being started (``pause_pending``: it is paused with this script once it exists)."""
    process = None  # type: Optional[subprocess.Popen]
    starting = False
    received = []  # type: List[int]
    pause_pending = False


def stop_signals() -> List[int]:
    """The signals that stop this script (:func:`stops_forwarded`): SIGINT, SIGTERM and SIGHUP where it exists, each
    unless ignored (nohup ignores SIGHUP, a shell's background job SIGINT), and then left ignored."""
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    found = [getattr(signal, name) for name in names if hasattr(signal, name)]
    return [signum for signum in found if signal.getsignal(signum) is not signal.SIG_IGN]


def _on_stop_signal(signum: int, frame: Any) -> None:
    if _Child.process is None and not _Child.starting:
        raise Stopped(signum)
    _Child.received.append(signum)
    if _Child.process is not None:
        with contextlib.suppress(OSError, ValueError):  # ended meanwhile; Windows sends no SIGINT (it had Ctrl-C)
            _Child.process.send_signal(signum)


def _on_pause_signal(signum: int, frame: Any) -> None:
    """Ctrl-Z (SIGTSTP): the running command lives in a session of its own (:func:`run_child`), so the terminal's
    Ctrl-Z paused this script alone and the command wrote on. It is paused (SIGSTOP) with this script, and goes on
    (SIGCONT) when this script is continued (``fg``, ``bg``, SIGCONT). A Ctrl-Z while the command is being started
    (it may run already, and ``subprocess.Popen`` has not returned it) is acted on once it has
    (:func:`run_child`): this script had paused alone then, and the command wrote on (seen in a test, 1 Dec 2026)."""
    child = _Child.process
    if child is None and _Child.starting:
        _Child.pause_pending = True
        return
    if child is not None:
        with contextlib.suppress(OSError):
            os.kill(child.pid, signal.SIGSTOP)
    # SIGSTOP, not SIGTSTP: a process group without a controlling shell (orphaned) ignores SIGTSTP, and this script
    # would then wait for ever on the paused command
    os.kill(os.getpid(), signal.SIGSTOP)
    if child is not None:  # continued
        with contextlib.suppress(OSError):
            os.kill(child.pid, signal.SIGCONT)


@contextlib.contextmanager
def stops_forwarded() -> Iterator[None]:
    """For the ``with`` block (in the main thread; elsewhere it does nothing): a stop signal (:func:`stop_signals`)
    is handed on to the command :func:`run_child` runs, which is waited for before :class:`Stopped` is raised; with
    none running, Stopped is raised at once. Ctrl-Z pauses that command with this script (:func:`_on_pause_signal`).
    Killing only this script (SIGTERM to its process, not its process
    group) ended it silently and left the running ``segment`` orphaned, writing on."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _on_stop_signal) for signum in stop_signals()}
    if hasattr(signal, "SIGTSTP") and signal.getsignal(signal.SIGTSTP) is not signal.SIG_IGN:
        previous[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, _on_pause_signal)  # Ctrl-Z pauses the command too
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


CHILD_WAIT_STEP_SECONDS = 0.25
"""How long one wait for :func:`run_child`'s command lasts before this script's signal handlers get their turn."""


def wait_for_child(process: "subprocess.Popen") -> int:
    """``process.wait()`` in steps of :data:`CHILD_WAIT_STEP_SECONDS`. Python runs a signal handler in the main
    thread, at its next bytecode; the kernel may hand a signal sent to this process to any thread that does not
    block it (torch's, when the main thread already has one pending), and then a wait without a timeout is not
    interrupted: a SIGTERM or Ctrl-Z was acted on only when the command ended by itself, minutes later."""
    while True:
        try:
            return process.wait(timeout=CHILD_WAIT_STEP_SECONDS)
        except subprocess.TimeoutExpired:
            continue


def child_environment() -> Dict[str, str]:
    """The environment segment and evaluate run in: this checkout first on ``PYTHONPATH`` (run from another folder,
    they imported whatever LiverTumorSegLib was installed, so the script's checks and the table's numbers could come
    from two versions of the code: the held-out script audit), and the parent watch
    (:func:`~LiverTumorSegLib.parent_watch.parent_environment`)."""
    env = parent_environment()
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [part for part in env.get("PYTHONPATH", "").split(os.pathsep)
                                                       if part])
    return env


def run_child(command: List[str], what: str = "") -> int:
    """Exit status of ``command``, run in a session of its own (POSIX): a Ctrl-C in the terminal reaches only this
    script, which hands it on once (:func:`stops_forwarded`) instead of the child getting two. After a stop signal
    the child is waited for and :class:`Stopped` raised (``what`` names the child in its message)."""
    _Child.received = []
    _Child.pause_pending = False
    _Child.starting = True  # a signal from here on is handed on once the child exists
    try:
        # the child stops itself once this script has ended, also when it was killed outright (SIGKILL): no
        # handler here can pass that on (LiverTumorSegLib.parent_watch)
        process = subprocess.Popen(command, env=child_environment(),
                                   **({"start_new_session": True} if os.name == "posix" else {}))
        _Child.process = process
    finally:
        _Child.starting = False
    try:
        if _Child.received:  # came while the child started
            with contextlib.suppress(OSError, ValueError):
                process.send_signal(_Child.received[0])
        if _Child.pause_pending:  # a Ctrl-Z came while the child started: both pause now
            _Child.pause_pending = False
            _on_pause_signal(signal.SIGTSTP, None)
        code = wait_for_child(process)  # a stop signal's handler runs within one step
    finally:
        _Child.process = None
    if _Child.received:
        raise Stopped(_Child.received[0], what or " ".join(command[:3]), code)
    return code


def run_cli(argv: List[str]) -> int:
    """Exit status of ``python -m LiverTumorSegLib ARGV`` in its own process (its output goes to this console), run
    by :func:`run_child`."""
    return run_child([sys.executable, "-m", "LiverTumorSegLib"] + [str(a) for a in argv],
                     what=f"livertumorseg {argv[0]}" if argv else "")


def _weights_sha256(package_path: Any) -> str:
    from LiverTumorSegLib.package import load_model_package

    return load_model_package(package_path).sha256


def _git_blob(commit: str, path: str, repo: Path = ROOT) -> bytes:
    """The bytes of ``commit:path`` in ``repo``'s git history; InputError naming the way out when it is not there."""
    try:
        done = subprocess.run(["git", "-C", str(repo), "show", f"{commit}:{path}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    except OSError as exc:
        raise InputError(f"git could not run ({exc}), and {path} of commit {commit} is read from git history: "
                         f"install git, or give the package with --model NAME=PACKAGE.") from exc
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        why = lines[0] if lines else f"git exit {done.returncode}"
        raise InputError(f"{path} of commit {commit} is not in the git history of {repo} ({why}); in a shallow "
                         f"clone run 'git fetch --unshallow', or give the package with --model NAME=PACKAGE.")
    return done.stdout


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def builtin_package(name: str, models_dir: Path, repo: Path = ROOT) -> str:
    """A package file (or installed model name) holding built-in model ``name``: the bundled default while its
    weights are ``name``'s, else ``models_dir/NAME.safetensors`` from git history (kept for a rerun), checked by
    the file's SHA-256. An existing ``models_dir/NAME.safetensors`` that is not that file is refused, not
    replaced. A model with a ``lesion_rule`` is that file with the rule recorded (:func:`_with_lesion_rule`), and an
    existing file is taken when it holds those weights with that rule."""
    model = BUILTIN_MODELS[name]
    if model.bundled_name is not None:
        try:
            if _weights_sha256(model.bundled_name) == model.weights_sha256:
                return model.bundled_name
        except Exception:  # noqa: BLE001 - not installed, or another default: take it from history
            pass
    target = models_dir / f"{name}.safetensors"
    if target.exists() and model.lesion_rule is not None:
        if _lesion_rule_of(target) != (model.weights_sha256,) + tuple(model.lesion_rule):
            raise InputError(f"{target} exists and is not {name} (not {name}'s weights with its lesion rule "
                             f"{model.lesion_rule[0]:g} of the {model.lesion_rule[1]}): remove it (this script "
                             f"takes {name} from git history again), or give another -o.")
        return str(target)
    if target.exists():
        found = _file_sha256(target)
        if found != model.file_sha256:
            raise InputError(f"{target} exists and is not {name} (its SHA-256 is {found}, {name}'s file is "
                             f"{model.file_sha256}): remove it (this script takes {name} from git history again), "
                             f"or give another -o.")
        return str(target)
    blob = _git_blob(model.commit, model.path, repo)
    found = hashlib.sha256(blob).hexdigest()
    if found != model.file_sha256:
        raise InputError(f"{model.path} of commit {model.commit} has SHA-256 {found}, not {name}'s "
                         f"{model.file_sha256}: the history was rewritten or the file damaged; give {name} with "
                         f"--model {name}=PACKAGE.")
    models_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{name}.partial.safetensors")
    try:
        partial.write_bytes(blob)
        if model.lesion_rule is not None:
            _with_lesion_rule(partial, model.lesion_rule)
        partial.replace(target)  # a killed run leaves no half-written NAME.safetensors
    finally:
        if partial.exists():
            partial.unlink()
    return str(target)


def _with_lesion_rule(path: Path, rule: Tuple[float, str]) -> None:
    """Record ``rule`` (threshold, statistic) as the package's own lesion confidence rule, weights unchanged."""
    from LiverTumorSegLib.package import set_package_min_lesion_probability

    set_package_min_lesion_probability(path, rule[0], rule[1])


def _lesion_rule_of(path: Path) -> Tuple[Any, ...]:
    """``(weights SHA-256, threshold, statistic)`` the package at ``path`` records (None where it records none);
    ``()`` for a file that is no readable package."""
    from LiverTumorSegLib.package import package_lesion_probability_statistic, package_min_lesion_probability

    try:
        meta = read_package_metadata(path)
        return (_weights_sha256(path), package_min_lesion_probability(meta),
                package_lesion_probability_statistic(meta))
    except Exception:  # noqa: BLE001 - any file that is not such a package is simply not the model
        return ()


def parse_models(builtin: str, extra: Sequence[str]) -> Dict[str, Optional[str]]:
    """``{name: package or None (built-in)}`` in the order given: ``--models`` names, then ``--model NAME=PACKAGE``."""
    models = {}  # type: Dict[str, Optional[str]]
    for name in [n.strip() for n in builtin.split(",") if n.strip()]:
        if name not in BUILTIN_MODELS:
            raise InputError(f"--models: no built-in model '{name}' (built-in: {', '.join(BUILTIN_MODELS)}); give "
                             f"another package with --model NAME=PACKAGE.")
        models[name] = None
    for item in extra:
        name, sep, package = item.partition("=")
        name = name.strip()
        if not sep or not name or not package.strip():
            raise InputError(f"--model '{item}': expected NAME=PACKAGE (a .safetensors file or an installed model).")
        if not all(ch.isalnum() or ch in "-_." for ch in name) or name.startswith("."):
            raise InputError(f"--model '{item}': NAME names a folder of OUT, so letters, digits, '-', '_' and '.' "
                             f"only (not first).")
        taken = [n.casefold() for n in list(models) + list(RESERVED_NAMES)]  # one folder on case-blind disks
        if name.casefold() in taken:
            raise InputError(f"--model '{item}': the name '{name}' is taken (a model's, or a file of OUT: "
                             f"{', '.join(RESERVED_NAMES)}); choose another.")
        models[name] = package.strip()
    if not models:
        raise InputError("No model to compare: give --models and/or --model NAME=PACKAGE.")
    return models


def evaluate_name(case_id: str) -> str:
    """The name ``evaluate`` gives the case of ``segment``'s label map ``CASE_ID.nii.gz`` (``Patient_07_0000`` ->
    ``patient_07``): the name the references are paired by."""
    from LiverTumorSegLib.commands.evaluate import case_name

    return case_name(Path(case_id + ".nii.gz")) or case_id


def implausible_cases(pred_dir: Path, evaluated: Optional[Sequence[str]] = None) -> List[str]:
    """Cases whose ``segment`` report (``pred_dir/reports/*.json``) carries an "Implausible result" warning, under
    :func:`evaluate_name`; with ``evaluated`` (evaluate's case names) only those: a prediction without a reference
    is in no number of the table."""
    found = []
    for report in sorted((pred_dir / "reports").glob("*.json")):
        try:
            warnings = json.loads(report.read_text(encoding="utf-8")).get("warnings") or []
        except (OSError, ValueError):
            continue
        if any(str(w).startswith(IMPLAUSIBLE) for w in warnings):
            found.append(evaluate_name(report.name[:-len(".json")]))
    return [case for case in found if evaluated is None or case in evaluated]


def failed_segment_cases(pred_dir: Path) -> List[str]:
    """Cases ``segment``'s batch status file lists as failed (under :func:`evaluate_name`)."""
    status = pred_dir / "batch_status.csv"
    if not status.exists():
        return []
    with status.open(newline="", encoding="utf-8") as handle:
        return [evaluate_name(spreadsheet_cell_text(row["case_id"])) for row in csv.DictReader(handle)
                if row.get("status") == "failed"]


def model_row(summary: Dict[str, Any], pred_dir: Path, evaluated: Optional[Sequence[str]] = None,
              reference_tumor_cases: Optional[int] = None,
              tumor_dice_with_tumor: Optional[float] = None) -> Dict[str, Any]:
    """Issue 11's numbers of one model from ``evaluate``'s summary.json and ``segment``'s outputs; ``evaluated``:
    evaluate's case names (cases.csv), to which the "Implausible result" count is limited; ``reference_tumor_cases``:
    how many of them have a reference tumor (cases.csv's ``voxels_ref_tumor`` above 0; None: not known). With none,
    the tumor Dice mean (1 for every case without predicted tumor, 0 for one with) measures no tumor, so the row
    shows it as not measured and the verdict is not judged (``meets_targets`` None) unless a case failed or another
    target is missed, which makes it "no" (False) whatever the tumor. Last, after the verdict they do not change:
    ``dice_liver_ci95_low``, ``dice_liver_ci95_high`` (the 95 % bootstrap interval of the liver Dice mean, as the
    summary gives it; None from a summary.json without it) and ``dice_liver_n`` (the cases in that mean)."""
    metrics = summary.get("metrics") or {}
    liver, tumor = metrics.get("dice_liver") or {}, metrics.get("dice_tumor") or {}
    unmatched = summary.get("unmatched") or {}
    missing = list(unmatched.get("references_without_prediction") or [])
    row = {
        "cases_evaluated": int(summary.get("n_cases", 0)),
        "dice_liver_mean": liver.get("mean"),
        "dice_liver_worst": liver.get("min"),
        "dice_tumor_mean": tumor.get("mean"),
        "false_lesions": (summary.get("lesion_detection") or {}).get("pred_no_overlap"),
        "liver_outside_ml": (summary.get("volume_outside_ref_total_ml") or {}).get("liver"),
        "cases_without_prediction": missing,
        "predictions_without_reference": list(unmatched.get("predictions_without_reference") or []),
        "segment_failed_cases": failed_segment_cases(pred_dir),
        "implausible_cases": implausible_cases(pred_dir, evaluated),
        "lesion_froc": summary.get("lesion_froc"),  # evaluate's, with the probability maps (else None)
        "reference_tumor_cases": reference_tumor_cases,
        # the tumor Dice mean over the cases with a reference tumor only (tumor_dice_over_reference_tumors)
        "dice_tumor_mean_cases_with_tumor": tumor_dice_with_tumor,
    }
    row["meets_targets"] = meets_targets(row, judge_tumor=reference_tumor_cases != 0)
    # evaluate's 95 % bootstrap interval of the liver Dice mean over its n cases (None from an older summary.json
    # without it); after the verdict, which it does not change
    row.update(dice_liver_ci95_low=liver.get("ci95_low"), dice_liver_ci95_high=liver.get("ci95_high"),
               dice_liver_n=liver.get("n"))
    return row


def _has_reference_tumor(case: Dict[str, str]) -> bool:
    try:
        return float(case.get("voxels_ref_tumor") or 0) > 0
    except ValueError:
        return False


def reference_tumor_count(cases: Sequence[Dict[str, str]]) -> int:
    """How many of evaluate's cases.csv rows have a reference tumor (``voxels_ref_tumor`` above 0)."""
    return sum(_has_reference_tumor(case) for case in cases)


def tumor_dice_over_reference_tumors(cases: Sequence[Dict[str, str]]) -> Optional[float]:
    """The mean ``dice_tumor`` of evaluate's cases.csv rows that have a reference tumor (None when none has, or no
    such row has a number): beside the mean over every case (LiTS's, where a case without reference tumor counts 1
    with no predicted tumor and 0 with any), the tumor segmentation's own quality."""
    values = []
    for case in cases:
        if _has_reference_tumor(case):
            try:
                value = float(case.get("dice_tumor") or "nan")
            except ValueError:
                continue
            if value == value:
                values.append(value)
    return sum(values) / len(values) if values else None


TARGET_SIDES = {"dice_liver_mean": "min", "dice_liver_worst": "min", "dice_tumor_mean": "min", "false_lesions": "max",
                "liver_outside_ml": "max"}
"""Whether each of :data:`TARGETS` is a least ("min": at or above) or a most ("max": at or below) value."""


def meets_target(key: str, value: float) -> bool:
    """Whether ``value`` meets issue 11's target ``key`` (:data:`TARGETS`, :data:`TARGET_SIDES`)."""
    if TARGET_SIDES[key] == "min":
        return value >= TARGETS[key]
    return value <= TARGETS[key]


def meets_targets(row: Dict[str, Any], judge_tumor: bool = True) -> Optional[bool]:
    """Issue 11's targets, with no reference case left without a prediction (a failure is not a pass).
    ``judge_tumor=False`` (no reference case has a tumor, so the tumor Dice measures nothing): False when a case
    failed or another target is missed (no tumor Dice could make that a pass), else None (not judged)."""
    keys = [key for key in TARGETS if judge_tumor or key != "dice_tumor_mean"]
    values = [row.get(key) for key in keys]
    if row.get("cases_without_prediction") or any(v is None for v in values):
        return False
    if not all(meets_target(key, row[key]) for key in keys):
        return False
    # where some cases have no reference tumor, LiTS's all-case mean counts each of them 1 (no tumor predicted): it
    # said "yes" with the one tumor case at 0.625 (the script's audit). The mean over the tumor cases must meet it too
    with_tumor = row.get("dice_tumor_mean_cases_with_tumor")
    if judge_tumor and with_tumor is not None and not meets_target("dice_tumor_mean", float(with_tumor)):
        return False
    return True if judge_tumor else None


MISSES = " (misses)"
"""Added to a table cell whose number misses its target: the row that makes a model's verdict "no" is marked."""


def _num(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def _target_cell(row: Dict[str, Any], key: str, digits: int = 3) -> str:
    """A number of :data:`TARGETS` as the table shows it: ``digits`` decimals, or as many more as it takes for the
    shown value to be on the same side of its target as the value itself (a worst liver Dice of 0.9196 is 0.9196, not
    0.920 beside the target 0.92), and :data:`MISSES` after it when it misses the target."""
    value = row.get(key)
    if value is None:
        return "n/a"
    value = float(value)
    met = meets_target(key, value)
    text = f"{value:.{digits}f}"
    while meets_target(key, float(text)) != met and digits < 12:
        digits += 1
        text = f"{value:.{digits}f}"
    return text + ("" if met else MISSES)


def _names(items: Sequence[str]) -> str:
    return str(len(items)) + (f" ({', '.join(items[:5])}{' ...' if len(items) > 5 else ''})" if items else "")


def _froc_number(row: Dict[str, Any], fp_per_case: Optional[str]) -> str:
    """The row's lesion FROC sensitivity at ``fp_per_case`` false lesions per case (a key of evaluate's
    ``sensitivity_at_fp_per_case``), or with None its mean over them (CPM); "n/a" without probability maps or
    reference lesions."""
    froc = row.get("lesion_froc") or {}
    value = froc.get("mean_sensitivity") if fp_per_case is None else \
        (froc.get("sensitivity_at_fp_per_case") or {}).get(fp_per_case)
    if value is None or value != value:  # absent, or NaN (no reference lesion)
        return "n/a"
    return f"{float(value):.3f}"


def _tumor_dice_cell(row: Dict[str, Any]) -> str:
    """The tumor Dice mean's cell: "not measured" when no evaluated case has a reference tumor (the mean is then 1 or 0
    per case only for whether tumor was predicted), and how many cases have one when some lack it (LiTS's per-case
    mean counts a case without reference tumor as 1 with no predicted tumor, 0 with any)."""
    with_tumor, cases = row.get("reference_tumor_cases"), row.get("cases_evaluated")
    if with_tumor == 0 and cases:
        return "not measured: no reference tumor"
    cell = _target_cell(row, "dice_tumor_mean")
    if with_tumor is not None and cases and with_tumor < cases:
        over_those = row.get("dice_tumor_mean_cases_with_tumor")
        missed = over_those is not None and not meets_target("dice_tumor_mean", float(over_those))
        cell += f" ({with_tumor} of {cases} cases with a reference tumor" + (
            f"; over those {float(over_those):.3f}{MISSES if missed else ''})" if over_those is not None else ")")
    return cell


def _signed(value: float) -> str:
    return f"{float(value):+.4f}"


def _liver_interval_cell(row: Dict[str, Any]) -> str:
    """The liver Dice mean's 95 % interval from evaluate's summary.json, with its n; "no interval from 1 case" where
    the mean has fewer than 2 cases (evaluate gives none); empty where that summary.json has none otherwise (written
    before evaluate gave intervals)."""
    low, high = row.get("dice_liver_ci95_low"), row.get("dice_liver_ci95_high")
    n = row.get("dice_liver_n")
    if (low is None or high is None) and n is not None and n < 2:
        return f"no interval from {n} case{'' if n == 1 else 's'}"
    if low is None or high is None:
        return ""
    return f"[{float(low):.4f}, {float(high):.4f}] (n {row.get('dice_liver_n', row.get('cases_evaluated'))})"


def _paired(row: Dict[str, Any], metric: str) -> Optional[Dict[str, Any]]:
    """The row's paired comparison of ``metric`` with the first model; None in the first model's row, and where the
    first model did not run or no case has a number of both models."""
    paired = row.get("paired_vs_first") or {}
    found = paired.get(metric)
    return found if found and found.get("n") else None


def _paired_difference_cell(row: Dict[str, Any], metric: str) -> str:
    """``+0.0123 [-0.0040, +0.0310] (n 5)``: the mean per-case difference from the first model and its paired 95 %
    interval; "n/a: ..." where the first model did not run; empty without a case in common."""
    error = (row.get("paired_vs_first") or {}).get("error")
    if error:
        return f"n/a: {error}"
    paired = _paired(row, metric)
    if paired is None:
        return ""
    low, high = paired["ci95_low"], paired["ci95_high"]
    interval = f"[{_signed(low)}, {_signed(high)}]" if low is not None and high is not None else \
        "[no interval from 1 case]"
    return f"{_signed(paired['mean_difference'])} {interval} (n {paired['n']})"


def _paired_counts_cell(row: Dict[str, Any], metric: str) -> str:
    paired = _paired(row, metric)
    return "" if paired is None else f"{paired['better']} / {paired['worse']} / {paired['tied']}"


def _paired_left_out_cell(row: Dict[str, Any]) -> str:
    """The reference cases left out of the paired comparison of any of :data:`PAIRED_METRICS`."""
    paired = row.get("paired_vs_first") or {}
    if not paired or paired.get("error"):
        return ""
    left_out = sorted({case for metric in PAIRED_METRICS for case in paired[metric]["cases_left_out"]})
    return _names(left_out)


TABLE_ROWS = (
    ("liver Dice, mean / worst case",
     lambda r: f"{_target_cell(r, 'dice_liver_mean')} / {_target_cell(r, 'dice_liver_worst')}", ">= 0.945 / >= 0.92"),
    ("tumor Dice, mean", lambda r: _tumor_dice_cell(r), ">= 0.70"),
    ("predicted lesions touching no reference lesion (total)",
     lambda r: "n/a" if r["false_lesions"] is None else
     str(int(r["false_lesions"])) + ("" if meets_target("false_lesions", r["false_lesions"]) else MISSES), "<= 10"),
    ("liver labelled outside the reference liver (total mL)", lambda r: _target_cell(r, "liver_outside_ml", 1),
     "<= 80"),
    ("lesion FROC: tumor sensitivity at 1 false lesion per case / mean at 1/8-8 (CPM)",
     lambda r: f"{_froc_number(r, '1')} / {_froc_number(r, None)}", ""),
    ("cases evaluated", lambda r: str(r["cases_evaluated"]), ""),
    ("reference cases without a prediction (failures, not in the numbers above)",
     lambda r: _names(r["cases_without_prediction"]) + (MISSES if r["cases_without_prediction"] else ""), "0"),
    ("predictions without a reference (not evaluated)", lambda r: _names(r["predictions_without_reference"]), ""),
    ("evaluated cases with an \"Implausible result\" warning", lambda r: _names(r["implausible_cases"]), ""),
    ("meets issue 11's targets", lambda r: {True: "yes", False: "no"}.get(
        r["meets_targets"], "not judged: no reference case has a tumor (the other targets are met)"), ""),
    ("liver Dice mean: 95 % interval over cases (evaluate's bootstrap; n cases)", lambda r: _liver_interval_cell(r),
     ""),
    ("paired with {first}: liver Dice, this model minus {first}: mean [95 % interval] (n cases both predicted)",
     lambda r: _paired_difference_cell(r, "dice_liver"), ""),
    ("paired with {first}: cases with a better / worse / tied liver Dice",
     lambda r: _paired_counts_cell(r, "dice_liver"), ""),
    ("paired with {first}: tumor Dice, this model minus {first}: mean [95 % interval] (n cases both predicted)",
     lambda r: _paired_difference_cell(r, "dice_tumor"), ""),
    ("paired with {first}: cases with a better / worse / tied tumor Dice",
     lambda r: _paired_counts_cell(r, "dice_tumor"), ""),
    ("paired with {first}: reference cases left out (no number from this model or {first})",
     lambda r: _paired_left_out_cell(r), ""),
)
"""``(label, cell of a model's row, target)``: a number is shown on the side of its target it is on, and a cell that
misses its target says so (rounding showed a tumor Dice of 0.6996 as 0.700 beside ">= 0.70", 80.04 mL as 80.0
beside "<= 80", and then the verdict "no" with no row that explained it). ``{first}`` in a label: the first model's
name. The rows after the verdict judge nothing: the liver Dice mean's interval, and each later model's paired
comparison with the first (:func:`paired_comparison`; empty in the first model's column, left out with one model)."""


def comparison_table(rows: Dict[str, Dict[str, Any]]) -> str:
    """A Markdown table: one column per model (its error in place of numbers when it could not run), issue 11's
    targets last."""
    names = list(rows)
    lines = ["| | " + " | ".join(names) + " | target |", "|---|" + "---|" * (len(names) + 1)]
    for label, cell, target in TABLE_ROWS:
        cells = [cell(rows[n]) if "error" not in rows[n] else "-" for n in names]
        if "{first}" in label:  # a paired row: none with one model
            if len(names) < 2:
                continue
            label = label.replace("{first}", names[0])
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {target} |")
    for name in names:
        if "error" in rows[name]:
            lines.append(f"\n{name}: {rows[name]['error']}")
    # which weights made which numbers: the table named the models only, and comparison.json gave 'default' or a
    # path (the audit of this script)
    weights = [f"{n} {rows[n]['weights_sha256']}" for n in names if rows[n].get("weights_sha256")]
    if weights:
        lines.append("\nweights SHA-256: " + "; ".join(weights))
    return "\n".join(lines)


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies below it (links resolved)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


def segment_argv(cts: str, pred: Path, package: str, device: str, probabilities: Optional[Path] = None
                 ) -> List[str]:
    """The ``livertumorseg`` arguments this script segments CTS into ``pred`` with (and, with ``probabilities``,
    each case's tumor probability map into that folder)."""
    argv = ["segment", cts, "-o", str(pred), "--model", package, "--device", device, "--no-progress"]
    return argv + (["--probabilities", str(probabilities)] if probabilities is not None else [])


def segment_options(argv: List[str]) -> Any:
    """The SegmentationOptions ``livertumorseg ARGV`` (:func:`segment_argv`) segments with: segment's own parser and
    ``options_from_args`` (an invalid setting, such as an unknown --device, is refused here, before any work)."""
    import argparse

    from LiverTumorSegLib.commands import segment

    parser = argparse.ArgumentParser(prog="livertumorseg")
    segment.register(parser.add_subparsers(dest="command"))
    return segment.options_from_args(parser.parse_args([str(a) for a in argv]))


def check_probability_map(case: Any, pred: Path, name: str) -> None:
    """Refuse, before any work, a case (``batch.BatchCase`` with a ``probability_path``) that ``segment
    --probabilities`` would fail: its label map was written without its probability map (by this script before it
    asked for maps, or by a run with ``--no-probabilities``), or a file lies where its map goes that its report does
    not name (a user's, or another run's); the first would count as a failure of NAME, the second too, and the lesion
    FROC would pool fewer cases than the Dice."""
    from LiverTumorSegLib.inference.batch import report_names_probability_map

    probability = case.probability_path
    named = report_names_probability_map(case)
    if case.output_path.exists() and not (probability.exists() and named):
        raise InputError(f"{case.output_path} was segmented without its tumor probability map {probability} (by "
                         f"this script before it asked segment for the maps, or with --no-probabilities), which "
                         f"the lesion FROC needs: delete {pred} to segment again with {name}, or rerun with "
                         f"--no-probabilities to compare without the FROC.")
    if probability.exists() and not named:
        raise InputError(f"{probability} exists and was not written for {name}'s segmentation of case "
                         f"'{case.case_id}' in {pred} (no report there names it), so segment would keep it and fail "
                         f"the case: left from a segmentation whose label map was deleted, delete it too; a file of "
                         f"your own, move it away; or give another -o.")


def check_predictions(cases: List[Any], pred: Path, name: str, weights_sha256: str,
                      options: Optional[Any] = None, model_metadata: Optional[Dict[str, Any]] = None) -> None:
    """Refuse a ``pred`` folder whose label maps ``segment`` would keep as already done but that are not NAME's as
    this script segments it: one whose report names other weights than ``weights_sha256`` (or none), one of a
    case not in ``cases`` (``batch.find_cases`` of CTS), or, with ``options`` (:func:`segment_options` of this
    script's segment command), one that ``batch.check_earlier_results`` finds made otherwise (other result-changing
    settings, such as ``--no-postprocess``): segment itself refuses those, after the models before NAME ran, and
    each of the others would be evaluated as NAME's. ``model_metadata``: NAME's package's, whose own lesion
    confidence threshold segment runs at (a package recording none: 0.65)."""
    if not pred.is_dir():
        for case in cases:  # a map left in OUT/NAME/prob without its folder of label maps and reports
            if case.probability_path is not None:
                check_probability_map(case, pred, name)
        return
    expected = {case.output_path.name for case in cases}
    strays = sorted(p.name for p in pred.iterdir()
                    if p.is_file() and p.name not in expected and p.name != "batch_status.csv"
                    and not p.name.startswith("."))
    if strays:
        raise InputError(f"{pred} holds {len(strays)} file(s) of cases not in CTS ({', '.join(strays[:5])}): evaluate "
                         f"would count them as {name}'s. Remove them, or give another -o.")
    for case in cases:
        if not case.output_path.exists():
            continue
        try:
            recorded = json.loads(case.report_path.read_text(encoding="utf-8")).get("model_weights_sha256")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if recorded != weights_sha256:
            raise InputError(f"{case.output_path} was not segmented with {name}'s package (its report names weights "
                             f"{recorded or 'none'}; {name}'s are {weights_sha256}), and segment would keep it as "
                             f"already done. Delete {pred} to segment again with {name}, or give another -o.")
    if options is not None:
        from LiverTumorSegLib.inference.batch import check_earlier_results

        try:
            check_earlier_results(cases, weights_sha256, options, model_metadata=model_metadata)
        except InputError as exc:
            said = str(exc)
            cut = said.find(" Rerun with --overwrite")  # segment's own way out: this script never passes it on
            prob = next((case.probability_path.parent for case in cases if case.probability_path is not None), None)
            raise InputError(f"{name}: {said[:cut] if cut > 0 else said} This script runs segment as 'livertumorseg "
                             f"{' '.join(segment_argv('CTS', pred, 'PACKAGE', options.device, prob))}' and never with "
                             f"--overwrite: delete {pred} to segment again with {name}'s package and these settings, "
                             f"or give another -o.") from None
    for case in cases:  # last: a label map made otherwise is not mended by --no-probabilities
        if case.probability_path is not None:
            check_probability_map(case, pred, name)


def _stat_key(path: Path) -> Optional[tuple]:
    """What tells one version of a file from another (inode, modification time, size); None when it is absent."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def reference_cases(ref: str) -> Dict[str, Path]:
    """``{case name: reference file}`` as ``evaluate`` pairs the references (``evaluate.list_cases`` of ``--ref``):
    an ambiguous pair of files of one case is refused here, before any work, as evaluate would refuse it after."""
    from LiverTumorSegLib.commands.evaluate import list_cases

    if not Path(ref).is_dir():
        raise InputError(f"--ref '{ref}' is not a folder: evaluate pairs the folder of predictions with a folder of "
                         f"reference label maps; put the reference(s) in a folder.")
    refuse_references_in_subfolders_beside_files(Path(ref))
    cases = dict(list_cases(Path(ref), "--ref"))
    refuse_two_label_maps_of_one_case(Path(ref))
    return cases


def refuse_two_label_maps_of_one_case(folder: Path) -> None:
    """Refuse a --ref folder holding two label maps of one case (not CTs by name or by their first slice): evaluate
    reads the one whose name says 'label' (``case_012_liver`` beside ``case_012``; ``case_010_seg``, a model's own
    prediction saved beside the references), and the comparison scored against it without a word: a liver-only mask
    made a tumor case tumor-free, a prediction scored itself Dice 1.0 (the held-out script audit). Which one is the
    expert's is for the user to say."""
    from LiverTumorSegLib.casenames import case_key
    from LiverTumorSegLib.commands.evaluate import _image_files
    from LiverTumorSegLib.io.reading import first_slice_shows_ct

    grouped = {}  # type: Dict[str, List[Path]]
    for path in _image_files(folder):
        key = case_key(path)
        if key is not None and key[1] != "image":
            grouped.setdefault(key[0], []).append(path)
    several = {}  # type: Dict[str, List[Path]]
    for name, paths in grouped.items():
        if len(paths) > 1:
            labels = [path for path in paths if not first_slice_shows_ct(path)]
            if len(labels) > 1:
                several[name] = labels
    if several:
        shown = "; ".join(f"case '{name}': " + ", ".join(f"'{path.relative_to(folder)}'" for path in paths)
                          for name, paths in list(several.items())[:5]) + (" ..." if len(several) > 5 else "")
        raise InputError(f"--ref '{folder}' holds more than one label map for {len(several)} case(s) ({shown}): "
                         f"evaluate would read the one whose name says 'label' and leave the others out, whichever is "
                         f"the expert's. Keep only each case's expert reference in --ref.")


def refuse_references_in_subfolders_beside_files(folder: Path) -> None:
    """Refuse a --ref folder holding label maps both itself and in subfolders: evaluate reads a folder's subfolders
    only when it holds no image file of its own, so the references in ``labels/hospB/`` were left out, and their
    cases' predictions counted only as 'without a reference' (the verdict then judged on fewer cases: the held-out
    script audit)."""
    from LiverTumorSegLib.casenames import case_key
    from LiverTumorSegLib.fileutil import is_hidden_name

    own = [p for p in folder.iterdir() if p.is_file() and not is_hidden_name(p.name) and case_key(p) is not None]
    if not own:
        return
    nested = []  # type: List[Path]
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not is_hidden_name(p.name)):
        for root, folders, files in os.walk(sub):
            folders[:] = [f for f in folders if not is_hidden_name(f)]
            nested += [Path(root) / f for f in files if not is_hidden_name(f) and case_key(Path(root) / f) is not None]
    if nested:
        shown = ", ".join(f"'{path.relative_to(folder)}'" for path in nested[:5]) + (" ..." if len(nested) > 5 else "")
        raise InputError(f"--ref '{folder}' holds label maps of its own and {len(nested)} more in subfolders "
                         f"({shown}); evaluate reads the subfolders only of a folder with no file of its own, so "
                         f"those would be left out. Put every reference in one folder.")


def check_label_named_cts(cts: str, cases: List[Any], references: Dict[str, Path]) -> None:
    """Refuse a folder CTS holding a file named as a label or probability map (``p1_liver.nii``,
    ``casenames.named_as_label_or_probability``) that segment leaves out (no CT on its first slice, or one that
    cannot be read so) whose case has a reference and no other CT in CTS: segment leaves such files out of a folder
    (LiTS keeps segmentation-N beside volume-N) with one warning, and the case was then counted as a reference
    without a prediction, a failure of every model. ``cases``: ``batch.find_cases`` of CTS (which keeps a CT so
    named)."""
    from LiverTumorSegLib.casenames import case_name, named_as_label_or_probability
    from LiverTumorSegLib.fileutil import full_suffix

    folder = Path(cts)
    if not folder.is_dir():  # a case CSV names its CTs: segment segments each one, whatever its name
        return
    kept = {Path(case.input_path) for case in cases}
    segmented = {evaluate_name(case.case_id) for case in cases}
    left_out = [path for path in sorted(folder.iterdir())
                if not path.name.startswith(".") and path not in kept and named_as_label_or_probability(path)]
    orphans = [path for path in left_out if case_name(path) not in segmented and case_name(path) in references]
    if orphans:
        shown = ", ".join(path.name for path in orphans[:5]) + (" ..." if len(orphans) > 5 else "")
        renamed = f"{case_name(orphans[0])}{full_suffix(orphans[0])}"
        raise InputError(f"{len(orphans)} file(s) in CTS '{cts}' are named as label maps ({shown}) and show no CT on "
                         f"their first slice, so segment leaves them out of the folder, and their case(s) have a "
                         f"reference and no other CT: each would "
                         f"count as a failure of every model. If they are CTs, rename them without the affix (e.g. "
                         f"'{orphans[0].name}' -> '{renamed}'; affixes such as _liver, _seg, _label, _mask, _pred or "
                         f"segmentation- mark a label map) or list the CTs in a case CSV (column 'image'); if they "
                         f"are label maps, move them out of CTS.")


def dicom_series_folders(cts: str) -> List[Path]:
    """The subfolders of a folder CTS that hold DICOM images (``io.dicom.holds_dicom_images``) beside its CT files:
    segment takes no DICOM series from a folder of CT files (only those files), so each is no case of it; a folder
    of DICOM folders alone is a batch of one case per folder (``batch.dicom_case_folders``), and a CSV CTS names its
    series itself."""
    from LiverTumorSegLib.inference.batch import dicom_case_folders
    from LiverTumorSegLib.io.dicom import holds_dicom_images

    folder = Path(cts)
    if not folder.is_dir() or dicom_case_folders(folder):  # its DICOM folders are its cases
        return []
    return [path for path in sorted(folder.iterdir())
            if path.is_dir() and not path.name.startswith(".") and holds_dicom_images(path)]


def _dicom_series_advice(series: Sequence[Path]) -> str:
    shown = ", ".join(path.name for path in series[:5]) + (" ..." if len(series) > 5 else "")
    return (f"CTS holds {len(series)} DICOM series folder(s) ({shown}), and segment takes only the CT files of a "
            f"folder: list the CTs in a case CSV (columns image and case_id: image the series folder or the CT file, "
            f"case_id the name of its reference, e.g. '{series[0].name}' for {series[0].name}.nii.gz in --ref) and "
            f"give the CSV as CTS.")


def check_case_names_unique(cases: List[Any]) -> None:
    """Refuse CTs of CTS (``cases``: ``batch.find_cases`` of CTS) whose label maps ``evaluate`` would pair under one
    case name (:func:`evaluate_name`: ``n1`` and ``n1_ct``, ``volume-1`` and ``volume-01``), before any work: evaluate
    kept one of them without a word (the other's prediction was dropped, not even counted as without a reference),
    or refused the folder as ambiguous after every model had segmented every CT (the held-out script audit)."""
    named = {}  # type: Dict[str, List[Any]]
    for case in cases:
        named.setdefault(evaluate_name(case.case_id), []).append(case)
    shared = {name: group for name, group in named.items() if len(group) > 1}
    if not shared:
        return
    shown = "; ".join(f"case '{name}': " + ", ".join(f"'{case.case_id}' ({case.input_path})" for case in group)
                      for name, group in list(shared.items())[:5]) + (" ..." if len(shared) > 5 else "")
    raise InputError(f"{len(shared)} case name(s) of CTS would each name more than one CT once evaluate pairs the "
                     f"label maps with the references ({shown}): evaluate reads a case name from the file name "
                     f"without extension and without affixes such as _0000, _ct, volume- and leading zeros, and would "
                     f"keep one prediction of each and drop the others. Rename those CTs (or, in a case CSV, their "
                     f"case_id) so that each keeps a case name of its own, as its reference is named.")


def check_references_have_cts(cts: str, cases: List[Any], references: Dict[str, Path]) -> None:
    """Refuse references whose case has no CT in CTS (``cases``: ``batch.find_cases`` of CTS), before any work: each
    was counted as a reference without a prediction, a failure of every model that no model made (a CT not copied,
    named otherwise than its reference, or a DICOM series in a folder CTS, which segment does not take), and no model
    could then meet issue 11's targets. With no case in common, :func:`check_references` says so."""
    segmented = {evaluate_name(case.case_id) for case in cases}
    if not segmented & set(references):
        return
    missing = [name for name in references if name not in segmented]
    if not missing:
        return
    shown = ", ".join(f"'{references[name].name}' (case '{name}')" for name in missing[:5]) \
        + (" ..." if len(missing) > 5 else "")
    series = dicom_series_folders(cts)
    raise InputError(f"{len(missing)} of the {len(references)} reference(s) in --ref have no CT in CTS: {shown}. "
                     f"Each would count as a failure of every model (a reference without a prediction), and no model "
                     f"could meet issue 11's targets. Put each one's CT in CTS under a name of that case (the file "
                     f"name without extension and without affixes such as _0000, volume-, _ct: see 'livertumorseg "
                     f"evaluate --help'), or move those references out of --ref if their CTs are not part of this "
                     f"comparison." + (f" {_dicom_series_advice(series)}" if series else ""))


def _ct_grid(path: Path) -> Optional[Any]:
    """The grid of the CT ``path`` as a CTVolume without voxels (a read-only zero-stride array of its shape): from the
    header alone for NIfTI, NRRD and MetaImage files, else (a DICOM series) from the CT read whole; None when it
    cannot be read (segment reports that case as failed)."""
    import numpy as np

    from LiverTumorSegLib.errors import LiverTumorSegError
    from LiverTumorSegLib.io import read_header_geometry, read_volume
    from LiverTumorSegLib.volume import CTVolume

    try:
        try:
            geometry, shape = read_header_geometry(path)
        except LiverTumorSegError:  # not a file with a header of its own (a DICOM series), or an unreadable one
            volume = read_volume(path)
            geometry, shape = volume.geometry, volume.shape_zyx
            del volume
    except Exception:  # noqa: BLE001 - an unreadable CT is segment's to report (that case fails), not this check's
        return None
    return CTVolume(array=np.broadcast_to(np.zeros((), np.uint8), tuple(shape)), geometry=geometry, source=str(path))


def check_references(cases: List[Any], references: Dict[str, Path], label_map: Optional[str]) -> None:
    """Refuse, before any CT is segmented, references that would stop ``evaluate`` for every model after every model
    has segmented every CT (hours on a real cohort): each reference of a case of CTS read as evaluate reads it
    (label values 0..255 mapped by ``label_map``, ``--label-map``, else 0/1/2 only: its message names the
    ``--label-map`` that maps them; a value other than 0 that ``label_map`` does not list is refused too, which
    evaluate only warns of and scores as background: a 0/1/2 reference under '{"255": 1}' lost its whole liver)
    and its grid compared with its CT's (read from the header where it has one),
    on which segment writes the prediction that evaluate compares with it. Also a ``--label-map`` evaluate would
    refuse, and CTS and references without a case name in common. ``cases``: ``batch.find_cases`` of CTS;
    ``references``: :func:`reference_cases`."""
    from LiverTumorSegLib.errors import LiverTumorSegError
    from LiverTumorSegLib.io import read_label_map
    from LiverTumorSegLib.io.labels import (ANY_LABEL_VALUE, GEOMETRY_TOLERANCE, describe_grid_mismatch,
                                            onto_reference_grid, parse_label_map_option, remap_labels)

    mapping = parse_label_map_option(label_map) if label_map else None
    paired = [(case, evaluate_name(case.case_id)) for case in cases if evaluate_name(case.case_id) in references]
    if not paired:
        raise InputError(f"No case name of CTS matches one of the {len(references)} reference file(s) in --ref, so "
                         f"evaluate would pair no prediction with a reference. Case names are file names without "
                         f"extension and without prefixes such as 'segmentation-' (see 'livertumorseg evaluate "
                         f"--help').")
    problems = []
    for case, name in paired:
        path = references[name]
        dropped = []  # type: List[str]
        try:  # as evaluate reads a reference (commands.evaluate._read_labels)
            reference = read_label_map(path, allowed_values=ANY_LABEL_VALUE)
            reference.array = remap_labels(reference.array, mapping, str(path), option="--label-map",
                                           warnings=dropped, log_dropped=False)
        except LiverTumorSegError as exc:
            problems.append(str(exc))
            continue
        if dropped:  # evaluate only warns, and scores them as background for every model
            problems.append(f"{dropped[0][:1].upper()}{dropped[0][1:]} The evaluation would score them as background "
                            f"for every model, so this script stops here.")
        # a Slicer segmentation's segments named neither liver nor tumor ('Mass', 'Segment_2') were left out with a
        # warning only, and their tumor voxels scored as background for every model (this script's audit)
        left_out = {n: v for n, v in (reference.meta.get("segments_left_out") or {}).items() if v}
        if left_out:
            names = ", ".join(f"'{n}' ({v} voxels)" for n, v in left_out.items())
            problems.append(f"Reference '{path}' (a Slicer segmentation) holds segment(s) {names} named neither liver "
                            f"nor tumor: the evaluation would score their voxels as background for every model. Name "
                            f"each tumor segment so that it holds 'tumor' or 'lesion' (and the liver's 'liver'), and "
                            f"remove segments of other organs from the file (or export the liver and tumor segments "
                            f"alone).")
        ct = _ct_grid(Path(case.input_path))
        if ct is not None and onto_reference_grid(ct, reference, GEOMETRY_TOLERANCE) is None:
            differences = "; ".join(describe_grid_mismatch(ct, reference, GEOMETRY_TOLERANCE))
            problems.append(f"Reference '{path}' is not on the grid of its CT '{case.input_path}' (case '{name}'): "
                            f"{differences}. segment writes each prediction on its CT's grid, and evaluate refuses a "
                            f"prediction that does not match its reference: use the reference made for this CT (same "
                            f"grid), or resample it onto the CT's grid first.")
        del reference
    if problems:
        more = f" ... and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise InputError(f"{len(problems)} of the {len(paired)} reference(s) of CTS's cases would stop evaluate, or "
                         f"lose liver or tumor voxels in it, for every model and after all of them had segmented: "
                         + " ".join(problems[:5]) + more)


RECORD = ".heldout_comparison.json"
"""This script's record of what it wrote: ``OUT/NAME/RECORD`` of NAME's evaluation (what evaluate read: the files of
the predictions and of the references, its settings and ``--label-map``; what it wrote: the SHA-256 of cases.csv and
summary.json), ``OUT/RECORD`` of the comparison files (the command they are of and their SHA-256). A rerun keeps or
redoes what a record vouches for without --overwrite, and refuses anything else there (a user's file)."""

EVALUATE_SETTINGS = ["--no-plots", "--no-progress"]
"""The options this script gives ``evaluate`` beside the folders and ``--label-map``."""

EVALUATE_OUTPUTS = ("cases.csv", "summary.json")


def _files_state(folder: Path, recursive: bool, skip: Sequence[str] = ()) -> List[List[Any]]:
    """``[relative path, size, modification time (ns)]`` of each file of ``folder`` whose name starts with no '.' and
    is not in ``skip`` (with ``recursive``, in its subfolders too): a file changed, added or removed changes it."""
    if not folder.is_dir():
        return []
    state = []
    for path in sorted(folder.rglob("*") if recursive else folder.iterdir()):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or path.name in skip or not path.is_file():
            continue
        stat = path.stat()
        state.append([relative.as_posix(), stat.st_size, stat.st_mtime_ns])
    return state


def _canonical_label_map(label_map: Optional[str]) -> Optional[Dict[str, int]]:
    """``--label-map`` as evaluate reads it, in one spelling ('{"255":1}' and '{"255": 1}' are one map)."""
    from LiverTumorSegLib.io.labels import parse_label_map_option

    if not label_map:
        return None
    return {str(int(key)): int(value) for key, value in sorted(parse_label_map_option(label_map).items(),
                                                                 key=lambda item: int(item[0]))}


def evaluation_inputs(pred: Path, ref: str, label_map: Optional[str], prob: Optional[Path] = None
                      ) -> Dict[str, Any]:
    """What an evaluation of ``pred`` against ``ref`` reads and how: the prediction files (segment's status table
    aside, which each segment run rewrites), the reference folder and its files, evaluate's settings and the
    ``--label-map``, and with ``prob`` the probability maps given as ``--prob``."""
    inputs = {"predictions": _files_state(pred, recursive=False, skip=[STATUS_FILE]),
              "references": {"folder": str(Path(ref).resolve()), "files": _files_state(Path(ref), recursive=True)},
              "settings": EVALUATE_SETTINGS, "label_map": _canonical_label_map(label_map)}
    if prob is not None:
        inputs["probabilities"] = _files_state(prob, recursive=False)
    return inputs


def _sha256_of(folder: Path, names: Sequence[str]) -> Dict[str, Optional[str]]:
    return {name: _file_sha256(folder / name) if (folder / name).is_file() else None for name in names}


def _read_record(path: Path) -> Dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _write_record(path: Path, record: Dict[str, Any]) -> None:
    """``record`` as ``path``, atomically (a killed run leaves the earlier record or this one;
    ``fileutil.atomic_output``)."""
    from LiverTumorSegLib.fileutil import atomic_output

    with atomic_output(path, overwrite=True) as partial:
        partial.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def evaluation_state(evaluation: Path) -> str:
    """``"none"`` when ``evaluation`` holds no result of evaluate (cases.csv, summary.json, plots), ``"ours"`` when its
    results are the ones this script's evaluate wrote there (:data:`RECORD` of its model folder), unchanged since,
    or the record says this script's evaluate was running there (``pending``: it replaces all or nothing, so the
    folder holds its results or the earlier ones it was allowed to replace), else ``"other"`` (another run's or a
    user's: replaced only with --overwrite)."""
    plots = evaluation / "plots"
    drawn = plots.is_dir() and any(plots.iterdir())  # this script's evaluate draws none (--no-plots)
    if not drawn and not any((evaluation / name).exists() for name in EVALUATE_OUTPUTS):
        return "none"
    record = _read_record(evaluation.parent / RECORD)
    if drawn or not (record.get("pending") or record.get("outputs") == _sha256_of(evaluation, EVALUATE_OUTPUTS)):
        return "other"
    return "ours"  # as recorded, or left by this script's evaluate, stopped before its record: the earlier or its own


COMPARISON_FILES = RESERVED_NAMES[1:]


def comparison_command(cts: str, ref: str, models: Dict[str, Optional[str]], label_map: Optional[str],
                       probabilities: bool = True) -> Dict[str, Any]:
    """What the comparison files are of: CTS, the references, the models (as given, in order), ``--label-map``
    and whether the probability maps (the lesion FROC) were asked for (not --device: a rerun on another device
    resumes)."""
    return {"cts": str(Path(cts).resolve()), "ref": str(Path(ref).resolve()),
            "models": [[name, package] for name, package in models.items()],
            "label_map": _canonical_label_map(label_map), "probabilities": bool(probabilities)}


def foreign_comparison_file(out: Path, command: Dict[str, Any]) -> Optional[Path]:
    """The first comparison file in OUT that this script did not write (:data:`RECORD` of OUT) for ``command``
    (:func:`comparison_command`), or changed since; None when each is absent or such a file (after a stop while
    the script wrote them, each the new or the one it replaced)."""
    present = [name for name in COMPARISON_FILES if (out / name).exists()]
    if not present:
        return None
    record = _read_record(out / RECORD)
    if record.get("command") != command:
        return out / present[0]
    vouched = [(record.get(key) or {}) for key in ("files", "previous")]
    for name, sha256 in _sha256_of(out, present).items():
        if sha256 not in [files.get(name) for files in vouched]:
            return out / name
    return None


def prob_folder(out: Path, name: str, probabilities: bool = True) -> Optional[Path]:
    """Where NAME's tumor probability maps go (``OUT/NAME/prob``), or None with ``--no-probabilities``."""
    return out / name / "prob" if probabilities else None


def compare(cts: str, ref: str, out: Path, models: Dict[str, Optional[str]], device: str = "auto",
            overwrite: bool = False, runner: Runner = run_cli, repo: Path = ROOT,
            label_map: Optional[str] = None, probabilities: bool = True) -> Dict[str, Dict[str, Any]]:
    """Segment and evaluate with each model (see the module docstring); returns ``{name: row}``, a row holding
    ``error`` (and no numbers) for a model whose ``segment`` or ``evaluate`` could not run. ``probabilities``:
    segment writes each case's tumor probability map and evaluate gets them (the lesion FROC)."""
    from LiverTumorSegLib.inference.batch import find_cases

    if _inside(out, Path(ref)):
        raise InputError(f"-o {out} lies inside --ref {ref}: evaluate would find the predictions among the reference "
                         f"label maps. Give an output folder outside it.")
    if not overwrite:  # this script's own results of the same command are resumed; anything else needs --overwrite
        taken = foreign_comparison_file(out, comparison_command(cts, ref, models, label_map, probabilities))
        if taken is not None:
            raise InputError(f"{taken} exists (a comparison of other models, CTs, references or --label-map, or a "
                             f"file this script did not write): rerun with --overwrite to replace the comparison and "
                             f"the evaluations (the predictions are kept and resumed either way), or give another -o.")
        for name in models:
            if evaluation_state(out / name / "eval") == "other":
                raise InputError(f"{out / name / 'eval'} holds an evaluation this script did not write, or one "
                                 f"changed since: rerun with --overwrite to replace it and the comparison (the "
                                 f"predictions are kept and resumed either way), or give another -o.")
    # before the first CT is segmented: every model is found and loaded (a clone without v4's commit or a mistyped
    # package fails in seconds, not after hours of v3 and v2), and no earlier prediction would pass as another's
    packages = {name: package if package is not None else builtin_package(name, out / "models", repo)
                for name, package in models.items()}
    try:
        cases = {name: find_cases(cts, out / name / "pred", probability_folder=prob_folder(out, name, probabilities))
                 for name in packages}
    except InputError as exc:  # "No CT files in CTS": a folder of DICOM series says how to give them
        series = dicom_series_folders(cts) if str(exc).startswith("No CT files") else []
        if not series:
            raise
        raise InputError(f"{exc} {_dicom_series_advice(series)}") from None
    references = reference_cases(ref)
    check_label_named_cts(cts, next(iter(cases.values())), references)
    weights = {}  # type: Dict[str, str]  # name -> the SHA-256 of its package's weights
    for name, package in packages.items():
        options = segment_options(segment_argv(cts, out / name / "pred", package, device,
                                               prob_folder(out, name, probabilities)))
        weights[name] = _weights_sha256(package)
        # an installed name ('default', as v10 is while bundled) resolved first: the metadata reader takes files
        # only, and the script's default --models v10,v3 stopped here before any work
        check_predictions(cases[name], out / name / "pred", name, weights[name], options,
                          read_package_metadata(resolve_model(package)))
    check_case_names_unique(next(iter(cases.values())))
    check_references_have_cts(cts, next(iter(cases.values())), references)
    check_references(next(iter(cases.values())), references, label_map)
    rows = {}  # type: Dict[str, Dict[str, Any]]
    for name, package in packages.items():
        pred, evaluation, prob = out / name / "pred", out / name / "eval", prob_folder(out, name, probabilities)
        print(f"== {name}: {package}", flush=True)
        status = pred / STATUS_FILE
        before = _stat_key(status)
        code = runner(segment_argv(cts, pred, package, device, prob))
        # exit 2 with the status table of this run: some cases failed, counted below as failures, not hidden; any
        # other exit but 0 (a refusal before any work, such as another run writing into the folder, or a crash):
        # segment could not run, and label maps an earlier run left are not evaluated as this one's
        finished = code == 0 or (code == 2 and _stat_key(status) not in (None, before))
        if not any(case.output_path.exists() for case in cases[name]):
            rows[name] = {"package": package, "error": f"segment wrote no label map (exit {code}); see its output "
                                                       f"above"}
            continue
        if not finished:
            rows[name] = {"package": package, "error": f"segment could not run (exit {code}; see its output above), "
                                                       f"so the label maps in {pred} were not evaluated"}
            continue
        inputs = evaluation_inputs(pred, ref, label_map, prob)  # what evaluate reads (the predictions are complete)
        state = evaluation_state(evaluation)
        if not overwrite and state == "ours" and _read_record(out / name / RECORD).get("inputs") == inputs:
            print(f"== {name}: {evaluation} is this script's evaluation of these predictions and references: kept",
                  flush=True)
        elif not overwrite and state == "other":  # appeared since the check before the work
            rows[name] = {"package": package, "error": f"{evaluation} holds an evaluation this script did not write; "
                                                       f"it was not replaced (rerun with --overwrite)"}
            continue
        else:  # a new evaluation, or this script's own of other predictions (more cases done since): redone
            (out / name).mkdir(parents=True, exist_ok=True)
            _write_record(out / name / RECORD, {"pending": True})  # a stop from here on leaves a folder still ours
            args = ["evaluate", "--pred", str(pred), "--ref", ref, "-o", str(evaluation)] + EVALUATE_SETTINGS \
                + (["--prob", str(prob)] if prob is not None else [])
            code = runner(args + (["--label-map", label_map] if label_map else [])
                          + (["--overwrite"] if overwrite or state == "ours" else []))
            if code != 0 or any(not (evaluation / n).exists() for n in EVALUATE_OUTPUTS):
                rows[name] = {"package": package, "error": f"evaluate failed (exit {code}); see its output above"}
                continue
            _write_record(out / name / RECORD, {"inputs": inputs,
                                                "outputs": _sha256_of(evaluation, EVALUATE_OUTPUTS)})
        summary_path, cases_path = evaluation / "summary.json", evaluation / "cases.csv"
        with cases_path.open(newline="", encoding="utf-8") as handle:
            case_rows = list(csv.DictReader(handle))
        evaluated = [spreadsheet_cell_text(row["case"]) for row in case_rows]
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        rows[name] = dict(model_row(summary, pred, evaluated, reference_tumor_count(case_rows),
                                    tumor_dice_over_reference_tumors(case_rows)), package=package)
    for name, row in rows.items():  # failed or not: which weights each column is of
        row["weights_sha256"] = weights[name]
    return rows


PER_CASE_COLUMNS = (("dice_liver", "dice_liver"), ("dice_tumor", "dice_tumor"),
                    ("false_lesions", "lesions_pred_no_overlap"), ("liver_outside_ml", "volume_outside_ref_liver_ml"))
"""``(per_case.csv column suffix, evaluate's cases.csv column)``."""


def per_case_rows(rows: Dict[str, Dict[str, Any]], out: Path,
                  descriptors: Optional[Dict[str, Dict[str, str]]] = None) -> List[Dict[str, str]]:
    """One dict per reference case (evaluated by any model, or without a prediction), columns ``NAME_<number>``
    and ``NAME_implausible`` per model that ran; empty where that model has no prediction of the case. With
    ``descriptors`` (:func:`case_descriptors`), the :data:`CASE_DESCRIPTORS` columns follow the case name."""
    per_case = {}  # type: Dict[str, Dict[str, str]]
    ran = [name for name in rows if "error" not in rows[name]]
    for name in ran:
        with (out / name / "eval" / "cases.csv").open(newline="", encoding="utf-8") as handle:
            for case in csv.DictReader(handle):
                case["case"] = spreadsheet_cell_text(case["case"])  # '=x' is written "'=x" (not a formula)
                cells = per_case.setdefault(case["case"], {})
                for column, source in PER_CASE_COLUMNS:
                    cells[f"{name}_{column}"] = case.get(source, "")
                cells[f"{name}_implausible"] = "yes" if case["case"] in rows[name]["implausible_cases"] else "no"
        for case in rows[name]["cases_without_prediction"]:
            per_case.setdefault(case, {})
    described = list(CASE_DESCRIPTORS) if descriptors is not None else []
    header = ["case"] + described + [f"{n}_{c}" for n in ran
                                      for c in [c for c, _ in PER_CASE_COLUMNS] + ["implausible"]]
    return [dict({h: "" for h in header}, case=case, **dict((descriptors or {}).get(case, {}), **cells))
            for case, cells in sorted(per_case.items())]


PAIRED_METRICS = ("dice_liver", "dice_tumor")
"""per_case.csv's numbers (the :data:`PER_CASE_COLUMNS` suffixes) on which each model after the first is compared,
case by case, with the first model (:func:`paired_comparison`)."""


def _case_number(text: Optional[str]) -> Optional[float]:
    """A per_case.csv cell as a number: None when empty (no prediction of the case), not a number, or NaN
    (evaluate's ``nan``: undefined)."""
    try:
        value = float(text or "")
    except ValueError:
        return None
    return value if value == value else None


def paired_comparison(cases: Sequence[Dict[str, str]], first: str, name: str) -> Dict[str, Any]:
    """Model ``name`` against model ``first``, case by case, on each of :data:`PAIRED_METRICS`, from
    :func:`per_case_rows`' ``cases`` (one dict per reference case, in per_case.csv's order: by case name). Per
    metric: ``n`` (cases both models have a number of), ``mean_difference`` (the mean over those cases of ``name``'s
    value minus ``first``'s; Dice: positive where ``name`` is better), ``ci95_low`` and ``ci95_high`` (the 95 %
    percentile bootstrap interval of that mean, the cases resampled with both models' values of each kept together:
    :func:`LiverTumorSegLib.metrics.bootstrap.mean_intervals` of the per-case differences, evaluate's method and
    seed; None with fewer than 2 cases), ``better``, ``worse`` and ``tied`` (how many of the n cases ``name``'s value
    is above, below or equal to ``first``'s) and ``cases_left_out`` (the reference cases either model has no number
    of: no prediction, or NaN). No case in common: n 0 and None for the numbers."""
    from LiverTumorSegLib.metrics.bootstrap import mean_intervals

    differences, left_out = {}, {}  # type: Dict[str, List[float]], Dict[str, List[str]]
    for metric in PAIRED_METRICS:
        differences[metric], left_out[metric] = [], []
        for case in cases:
            base, other = (_case_number(case.get(f"{model}_{metric}")) for model in (first, name))
            if base is None or other is None:
                left_out[metric].append(case["case"])
            else:
                differences[metric].append(other - base)
    intervals = mean_intervals({metric: differences[metric] for metric in PAIRED_METRICS})
    result = {"first": first}  # type: Dict[str, Any]
    for metric in PAIRED_METRICS:
        values = differences[metric]
        low, high = intervals[metric]
        result[metric] = {"n": len(values), "mean_difference": sum(values) / len(values) if values else None,
                          "ci95_low": low, "ci95_high": high, "better": sum(v > 0 for v in values),
                          "worse": sum(v < 0 for v in values), "tied": sum(v == 0 for v in values),
                          "cases_left_out": left_out[metric]}
    return result


def paired_bootstrap_description() -> Dict[str, Any]:
    """How :func:`paired_comparison`'s intervals are taken (comparison.json's ``paired_bootstrap``), in the keys of
    evaluate's summary.json ``bootstrap``."""
    from LiverTumorSegLib.metrics.bootstrap import (BOOTSTRAP_DESCRIPTION, BOOTSTRAP_METHOD, BOOTSTRAP_RESAMPLES,
                                                    BOOTSTRAP_SEED, CONFIDENCE_LEVEL)

    return {"method": BOOTSTRAP_METHOD, "confidence_level": CONFIDENCE_LEVEL, "resamples": BOOTSTRAP_RESAMPLES,
            "seed": BOOTSTRAP_SEED, "resampled_unit": "case (a case's values of both models together)",
            "definition": "paired: the per-case differences (this model minus the first) over the cases both have a "
                          "number of, cases in per_case.csv order (by name), bootstrapped as evaluate's summary.json "
                          "bootstraps a metric's values: " + BOOTSTRAP_DESCRIPTION}


def with_paired_comparisons(rows: Dict[str, Dict[str, Any]], cases: Sequence[Dict[str, str]]
                            ) -> Dict[str, Dict[str, Any]]:
    """``rows`` with ``paired_vs_first`` added to each model after the first that ran (:func:`paired_comparison`
    with the first model of ``rows``, from :func:`per_case_rows`' ``cases``); where the first model did not run,
    ``{"first": ..., "error": ...}`` instead. The first model's row and the rows of models that did not run are
    unchanged."""
    names = list(rows)
    paired = {}  # type: Dict[str, Dict[str, Any]]
    for name in names[1:]:
        if "error" in rows[name]:
            paired[name] = rows[name]
        elif "error" in rows[names[0]]:
            paired[name] = dict(rows[name], paired_vs_first={
                "first": names[0], "error": f"the first model, {names[0]}, was not evaluated"})
        else:
            paired[name] = dict(rows[name], paired_vs_first=paired_comparison(cases, names[0], name))
    return {name: paired.get(name, rows[name]) for name in names}


CASE_DESCRIPTORS = ("ct_pixel_mm", "ct_slice_mm", "ct_slices", "scan_above_liver_mm", "scan_below_liver_mm",
                    "ref_liver_ml", "ref_liver_mean_hu", "ref_tumor_ml", "ref_tumor_vs_liver_hu",
                    "ref_lesions_brighter")
"""per_case.csv's columns that say what each case's CT and reference are like: numbers only (nothing that names a
patient), for reading a model's failures against scale, slice thickness, field of view, contrast phase and whether
the tumors are darker or brighter than the liver (the bundled v3 misses bright ones: README, *Known weaknesses*;
docs/bundled_model.md, *Hyperdense tumors*)."""

BRIGHTER_LESION_HU = 10.0
"""A reference lesion counts in ``ref_lesions_brighter`` when its mean HU is at least this much above the mean HU of
the liver parenchyma (label 1) of its case."""


def describe_case(ct_path: Any, reference_path: Path, label_map: Optional[str] = None) -> Dict[str, str]:
    """:data:`CASE_DESCRIPTORS` of one case: the CT's in-plane pixel size and slice spacing (mm), its slices, how far
    the scan reaches above and below the reference liver (mm along the patient's head-foot axis: 0 = a liver-only
    scan), the reference liver's volume (mL, tumor included) and the mean HU of its parenchyma (label 1: roughly
    45-65 HU unenhanced, 90-130 HU portal venous), the reference tumor volume (mL), the tumor's mean HU less the
    parenchyma's (``ref_tumor_vs_liver_hu``: negative for darker tumors, empty without tumor) and how many reference
    lesions (26-connected components of label 2, as the lesion report counts them) are :data:`BRIGHTER_LESION_HU`
    or more brighter than the parenchyma (``ref_lesions_brighter``, "k of n"; hypervascular tumors in an arterial
    phase). The CT (a file or
    a DICOM folder) and the reference (on its grid, or the same grid in another axis order; ``label_map`` as
    ``--label-map``) are read as ``evaluate --images`` and ``evaluate`` read them."""
    import numpy as np
    from scipy import ndimage

    from LiverTumorSegLib.commands import read_one_series
    from LiverTumorSegLib.inference.lesion_report import lesion_components
    from LiverTumorSegLib.io import read_label_map
    from LiverTumorSegLib.io.labels import ANY_LABEL_VALUE, parse_label_map_option, remap_labels
    from LiverTumorSegLib.orientation import canonicalize

    volume = read_one_series(str(ct_path), "heldout_comparison")
    reference = read_label_map(reference_path, reference=volume, allowed_values=ANY_LABEL_VALUE)  # on its grid
    mapping = parse_label_map_option(label_map) if label_map else None
    labels = remap_labels(reference.array, mapping, str(reference_path), log_dropped=False)
    ct, reorientation = canonicalize(volume)  # identity direction (LPS): z runs towards the head
    labels = reorientation.to_canonical(labels)
    spacing_x, spacing_y, spacing_z = (float(v) for v in ct.geometry.spacing)
    voxel_ml = spacing_x * spacing_y * spacing_z / 1000.0
    liver = labels >= 1
    slices = np.nonzero(liver.any(axis=(1, 2)))[0]
    parenchyma = ct.array[labels == 1]
    liver_hu = float(parenchyma.mean()) if parenchyma.size else None
    tumor = labels == 2
    lesions, count = lesion_components(labels)  # the reports' lesions: 26-connected components of label 2
    lesion_hu = np.asarray(ndimage.mean(ct.array, lesions, index=np.arange(1, count + 1)) if count else [])
    brighter = int(np.count_nonzero(lesion_hu >= liver_hu + BRIGHTER_LESION_HU)) if liver_hu is not None else 0
    return {"ct_pixel_mm": f"{spacing_x:.3g} x {spacing_y:.3g}", "ct_slice_mm": f"{spacing_z:.3g}",
            "ct_slices": str(int(ct.shape_zyx[0])),
            "scan_above_liver_mm": f"{(ct.shape_zyx[0] - 1 - slices[-1]) * spacing_z:.0f}" if slices.size else "",
            "scan_below_liver_mm": f"{slices[0] * spacing_z:.0f}" if slices.size else "",
            "ref_liver_ml": f"{np.count_nonzero(liver) * voxel_ml:.1f}",
            "ref_liver_mean_hu": f"{liver_hu:.0f}" if liver_hu is not None else "",
            "ref_tumor_ml": f"{np.count_nonzero(tumor) * voxel_ml:.1f}",
            "ref_tumor_vs_liver_hu": (f"{float(ct.array[tumor].mean()) - liver_hu:.0f}"
                                      if count and liver_hu is not None else ""),
            "ref_lesions_brighter": f"{brighter} of {count}" if liver_hu is not None else ""}


def case_descriptors(cts: str, ref: str, out: Path, model: str, label_map: Optional[str] = None
                     ) -> Dict[str, Dict[str, str]]:
    """``{evaluate's case name: describe_case(...)}`` for every case of CTS that has a reference (``model``: the name
    of a model folder under ``out``, which only places find_cases' outputs). A case whose CT or reference cannot be
    read, or whose reference is on another grid, gets empty cells and one line on stderr: these columns describe the
    cases, they judge no model (the table's numbers come from evaluate alone)."""
    from LiverTumorSegLib.errors import LiverTumorSegError
    from LiverTumorSegLib.inference.batch import find_cases

    references = reference_cases(ref)
    described = {}  # type: Dict[str, Dict[str, str]]
    for case in find_cases(cts, out / model / "pred"):
        name = evaluate_name(case.case_id)
        if name not in references:
            continue
        try:
            described[name] = describe_case(case.input_path, references[name], label_map)
        except (LiverTumorSegError, OSError, ValueError) as exc:
            print(f"note: per_case.csv does not describe case '{name}': {exc}", file=sys.stderr, flush=True)
            described[name] = {column: "" for column in CASE_DESCRIPTORS}
    return described


def write_comparison(rows: Dict[str, Dict[str, Any]], out: Path, command: Optional[Dict[str, Any]] = None,
                     descriptors: Optional[Dict[str, Dict[str, str]]] = None) -> str:
    """Write ``out/comparison.md``, ``out/comparison.json`` and ``out/per_case.csv`` (with ``descriptors``, each
    case's :data:`CASE_DESCRIPTORS` in both), and with ``command`` (:func:`comparison_command`) this script's record
    of them (:data:`RECORD`); returns the table."""
    import io

    out.mkdir(parents=True, exist_ok=True)
    cases = per_case_rows(rows, out, descriptors)
    rows = with_paired_comparisons(rows, cases)
    table = comparison_table(rows)
    per_case = io.StringIO(newline="")
    writer = csv.DictWriter(per_case, fieldnames=list(cases[0]) if cases else ["case"])
    writer.writeheader()
    writer.writerows([dict(case, case=spreadsheet_safe_text(case["case"])) for case in cases])
    document = {"targets": TARGETS, "models": rows}  # type: Dict[str, Any]
    if descriptors is not None:
        document["cases"] = descriptors
    if len(rows) > 1:  # how the models' paired_vs_first intervals were taken
        document["paired_bootstrap"] = paired_bootstrap_description()
    contents = {"comparison.md": table + "\n", "comparison.json": json.dumps(document, indent=1) + "\n",
                "per_case.csv": per_case.getvalue()}
    if command is not None:  # first, naming the files' new contents and the ones they replace
        _write_record(out / RECORD, {"command": command, "previous": _sha256_of(out, COMPARISON_FILES),
                                     "files": {name: hashlib.sha256(text.encode("utf-8")).hexdigest()
                                               for name, text in contents.items()}})
    for name, text in contents.items():
        with (out / name).open("w", newline="", encoding="utf-8") as handle:
            handle.write(text)
    return table


def main(argv: Optional[List[str]] = None, runner: Runner = run_cli) -> int:
    """The script (see the module docstring); a stop signal ends it, after the command it runs, with one line on
    stderr and exit 128 + the signal's number (:class:`Stopped`)."""
    with stops_forwarded():
        try:
            return _main(argv, runner)
        except Stopped as stop:
            print(f"error: {stop}", file=sys.stderr, flush=True)
            return stop.exit_code


def _main(argv: Optional[List[str]], runner: Runner) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cts", help="folder or CSV of CTs (as `livertumorseg segment` takes it)")
    p.add_argument("--ref", required=True, help="folder of reference label maps (0/1/2)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--models", default="v10,v3",
                   help=f"built-in models, comma-separated ({', '.join(BUILTIN_MODELS)}; '' for none)")
    p.add_argument("--model", action="append", default=[], metavar="NAME=PACKAGE", help="another model (repeatable)")
    p.add_argument("--device", default="auto", help="as segment --device")
    p.add_argument("--label-map", default=None, metavar="JSON",
                   help="the references' label values, as evaluate --label-map takes them (e.g. '{\"255\": 1}')")
    p.add_argument("--no-probabilities", action="store_true",
                   help="do not write tumor probability maps (OUT/NAME/prob): no lesion FROC in the table")
    p.add_argument("--overwrite", action="store_true",
                   help="evaluate every model again, and replace evaluations and comparison files this script did not "
                        "write for this command (a plain rerun of the same command resumes)")
    args = p.parse_args(argv)
    models = parse_models(args.models, args.model)
    for what, path in (("CTS", args.cts), ("--ref", args.ref)):
        if not Path(path).exists():
            raise InputError(f"{what} '{path}' does not exist.")
    out = Path(args.output)
    probabilities = not args.no_probabilities
    rows = compare(args.cts, args.ref, out, models, device=args.device, overwrite=args.overwrite, runner=runner,
                   label_map=args.label_map, probabilities=probabilities)
    descriptors = case_descriptors(args.cts, args.ref, out, next(iter(models)), args.label_map) if models else None
    print(write_comparison(rows, out, comparison_command(args.cts, args.ref, models, args.label_map,
                                                         probabilities), descriptors))
    print(f"wrote {out / 'comparison.md'}, {out / 'comparison.json'} and {out / 'per_case.csv'} (per case, side by "
          f"side)")
    return 1 if any("error" in row for row in rows.values()) else 0


if __name__ == "__main__":
    from LiverTumorSegLib.cli import run_script

    sys.exit(run_script(main))
