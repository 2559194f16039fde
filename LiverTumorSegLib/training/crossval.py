"""k-fold cross-validation: train every fold (patient-level folds, fixed seed) and tabulate the metrics.

Writes into ``out_dir``: ``fold_<i>.safetensors`` (+ ``fold_<i>_train/`` logs), ``crossval.csv`` (first column
``fold``: one row per fold 0..k-1 with liver/tumor Dice after ``segment``'s default post-processing (the
``postprocessing`` column names it; each package's ``validation.whole_volume.postprocessing`` lists the options),
``liver_dice_raw`` / ``tumor_dice_raw`` of the network's own labels before it, ``val_cases``, its validation case
ids joined by "; ", ``weights`` (``last_epoch``, or ``best_on_validation`` with ``use_best_checkpoint``) and
``selected_on_validation`` ("no", or what the fold decided on its validation cases: then its Dice is optimistic),
``held_out`` ("yes", or "no: ..." when the fold's ``--init-from`` package was trained on its validation patients),
then a ``mean`` row) and ``crossval.json`` (the rows and a summary over folds: ``n_folds``,
``n_validation_cases``, ``metrics_over_folds``, liver and tumor Dice as ``metrics.report.summarize_cases``
gives a metric's statistics, ``raw_network_metrics_over_folds`` the same for the raw Dice, ``postprocessing``,
``weights``, ``optimistic`` and, when so, ``note``, and ``not_held_out`` when a fold's is not; docs/report_format.md
lists every column and key, and a test holds the writer to it).
By default every fold packages and validates its last epoch's weights, so its Dice is measured on cases that
made no decision in its training; best-epoch selection (``use_best_checkpoint``), early stopping and the plateau
schedule decide on the validation cases, and the table says so.
All folds share one slice cache (``out_dir/cache``). Tumor Dice follows ``evaluate``'s (LiTS) rule: 1.0 for a
case where neither prediction nor reference holds tumor, 0.0 where only one does; ``tumor_ref_cases`` counts
the fold's validation cases whose reference has tumor: with none, tumor Dice only says whether tumor was
predicted at all, not how well it was outlined (slice-level synthetic-tumor Dice is in the training log).
"""
import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from ..errors import CancelledError, InputError, OutputExistsError
from ..fileutil import (atomic_output, check_folder_writable, check_path_encoding, nearest_existing_folder,
                        outermost_missing_folder, remove_empty_folders)
from .callbacks import BEST_ON_VALIDATION, LAST_EPOCH, OPTIMISTIC_NOTE
from ..progress import CancellationToken, ProgressCallback, ProgressReporter
from .config import TrainConfig


TABLE_NAMES = ("crossval.csv", "crossval.json")

VAL_CASES_SEPARATOR = "; "
"""Between the case ids in a fold's ``val_cases`` cell: case ids may hold spaces (file names such as 'ct 0')."""


def fold_config(config: TrainConfig, out_dir: Path, fold: int) -> TrainConfig:
    """The TrainConfig for fold ``fold``: its own package and log folder (``fold_<i>_train`` in ``config.log_dir``
    when one is given, else in ``out_dir``; a given --log-dir was ignored before), the shared cache, and a given
    ``--name`` as ``<name>_fold_<i>`` (every fold's package was named ``<name>``, so once installed ``segment --model
    <name>`` was refused as ambiguous; without --name each is ``fold_<i>``, its file's name). Its
    :attr:`~.config.TrainConfig.given` is ``config``'s: the values set here are crossval's, not the user's (``updated``
    marked ``fold``, ``output``, ``log_dir`` and ``cache_dir`` as typed)."""
    logs = Path(config.log_dir) if config.log_dir else Path(out_dir)
    named = {"name": f"{config.name}_fold_{fold}"} if config.name else {}
    folded = config.updated({"fold": fold, "output": str(out_dir / f"fold_{fold}.safetensors"),
                             "log_dir": str(logs / f"fold_{fold}_train"),
                             "cache_dir": config.cache_dir or str(out_dir / "cache"), **named})
    return dataclasses.replace(folded, given=config.given)


def fold_row(fold: int, result) -> Dict[str, Any]:
    """Table row of one fold (``fold`` = its index): the whole-volume metrics, as ``evaluate`` computes them.
    When the fold's whole-volume validation failed (e.g. out of memory on a large CT), its Dice are NaN (left
    out of the mean) and ``validation`` says so: the slice-level numbers put in their place leave tumor-free
    cases out of tumor Dice (2.8x too high in an audit) and were averaged with the other folds' without a word."""
    v = result.validation or {}
    whole = v.get("whole_volume") or {}
    cases = whole.get("cases") or []
    with_tumor = [c for c in cases if isinstance(c, dict) and "reference_has_tumor" in c]
    weights, decided = fold_selection(v, result.epochs_completed)
    raw = whole.get("raw_network") or {}
    return {"fold": fold, "liver_dice": _num(whole.get("liver_dice")), "tumor_dice": _num(whole.get("tumor_dice")),
            "liver_dice_raw": _num(raw.get("liver_dice")), "tumor_dice_raw": _num(raw.get("tumor_dice")),
            "tumor_ref_cases": sum(1 for c in with_tumor if c["reference_has_tumor"]) if with_tumor else float("nan"),
            "val_cases": VAL_CASES_SEPARATOR.join(result.val_cases), "epochs": result.epochs_completed,
            "stop_reason": str(getattr(result, "stop_reason", "") or "completed"),
            "validation": "whole volume" if whole else (
                f"whole-volume validation failed (see the fold's log); slice-level liver "
                f"{_num(v.get('liver_dice')):.3f}, tumor {_num(v.get('tumor_dice')):.3f}: not comparable"),
            "postprocessing": postprocessing_text(whole) if whole else "",
            "weights": weights,
            "selected_on_validation": f"yes, {OPTIMISTIC_NOTE}: {'; '.join(decided)}" if decided else "no",
            "held_out": held_out_text(v)}


def held_out_text(validation: Dict[str, Any]) -> str:
    """A fold's ``held_out`` column: "yes", or "no: ..." when the package the fold started from (``--init-from``)
    was trained on its validation patients (``validation.init_trained_on_validation_patients``): a
    leave-one-patient-out fold fine-tuned from the bundled default, which saw every shared patient, measures
    nothing held out."""
    seen = validation.get("init_trained_on_validation_patients")
    if not seen:
        return "yes"
    return f"no: the --init-from package was trained on {', '.join(str(p) for p in seen)}"


def postprocessing_text(whole: Dict[str, Any]) -> str:
    """The post-processing a fold's whole-volume Dice were measured after, for its table row, as the package
    recorded it when it was written (``postprocessing_label``; the options are in ``postprocessing``, which
    crossval.json's summary lists): nothing is compared with today's defaults, which may have changed since.
    Packages of older versions ran segment's defaults of their version. ``liver_dice_raw`` / ``tumor_dice_raw``
    are the same network output before post-processing."""
    label = whole.get("postprocessing_label")
    if isinstance(label, str) and label:
        return label
    if isinstance(whole.get("postprocessing"), dict):
        return "segment's defaults of its version (options recorded)"
    return "not recorded (an older package: segment's defaults of its version)"


def recorded_postprocessing(result) -> Optional[Dict[str, Any]]:
    """The post-processing options a fold's package recorded for its whole-volume validation, or None."""
    options = ((result.validation or {}).get("whole_volume") or {}).get("postprocessing")
    return options if isinstance(options, dict) else None


def fold_selection(validation: Dict[str, Any], epochs_completed: Optional[int] = None) -> Tuple[str, List[str]]:
    """``(weights, decisions)`` of a fold's package ``validation`` metadata (``callbacks.validation_selection``):
    which weights it holds and what its training decided on the validation cases. Packages of older versions
    record neither: they held the best validation epoch's weights whenever a validation had found one
    (``best_epoch`` >= 1), so they are read as that, unless that epoch is the last one trained
    (``epochs_completed``, e.g. a recipe validating only after its last epoch): those are the last epoch's
    weights, chosen by nothing."""
    weights = validation.get("weights")
    if isinstance(weights, str):
        decided = validation.get("decided_on_validation")
        return weights, [str(d) for d in decided] if isinstance(decided, list) else []
    best_epoch = validation.get("best_epoch")
    if isinstance(best_epoch, int) and not isinstance(best_epoch, bool) and best_epoch >= 1:
        if epochs_completed is not None and best_epoch == int(epochs_completed):
            return LAST_EPOCH, []
        return BEST_ON_VALIDATION, [f"packaged weights: the best validation epoch ({best_epoch}"
                                    f"{'' if epochs_completed is None else f' of {int(epochs_completed)}'}; a "
                                    f"package of an older version, which always packaged that epoch)"]
    return LAST_EPOCH, []


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


DICE_COLUMNS = ("liver_dice", "tumor_dice", "liver_dice_raw", "tumor_dice_raw")
"""The Dice columns :func:`fold_row` gives every fold (NaN where unknown), averaged by :func:`mean_row`."""


def mean_row(rows: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Mean over folds of liver and tumor Dice, after and before post-processing (NaN folds left out; NaN when
    none is finite), and the folds' weights and selection (:func:`selection_summary`)."""
    out: Dict[str, Any] = {"fold": "mean"}
    for key in DICE_COLUMNS:
        values = [r[key] for r in rows if not math.isnan(r[key])]
        out[key] = sum(values) / len(values) if values else float("nan")
    counts = [r.get("tumor_ref_cases", float("nan")) for r in rows]
    out["tumor_ref_cases"] = sum(counts) if counts and not any(math.isnan(c) for c in counts) else float("nan")
    summary = selection_summary(rows)
    weights = summary["weights"]
    if weights:
        out["weights"] = weights if isinstance(weights, str) else "mixed: " + ", ".join(weights)
    out["selected_on_validation"] = f"yes, {OPTIMISTIC_NOTE} (see the folds)" if summary["optimistic"] else "no"
    seen = [str(r["fold"]) for r in rows if str(r.get("held_out", "yes")) != "yes"]
    out["held_out"] = "yes" if not seen else f"no for fold(s) {', '.join(seen)} (see the folds)"
    unfinished = summary.get("unfinished_folds") or []
    out["stop_reason"] = "finished" if not unfinished else \
        f"not finished: fold(s) {', '.join(str(f) for f in unfinished)} (see the folds)"
    return out


FINISHED_STOP_REASONS = ("completed", "early_stopping")


def finished_fold(fold_cfg: TrainConfig, cases: Optional[Sequence[Any]] = None):
    """The result of a fold whose package an earlier run wrote after finishing its training (completed or
    early-stopped: not a time-limited stop, which --resume continues), read from the package's metadata; None
    when the fold still has to be trained (also when it was trained for another number of epochs: its
    checkpoint then continues or the fold is refused as finished). A package trained under other settings
    (data, split, seeds, model, ...: :func:`~.trainer.check_resume_config`) raises InputError."""
    from ..package import readable_package_metadata
    from .trainer import TrainResult, check_resume_config

    path = Path(fold_cfg.output)
    meta = readable_package_metadata(path)
    if meta is None:  # none, or unreadable: the fold is trained again (with --resume from its checkpoint; one of a
        return None  # finished training refuses an unreadable package, saying to delete it: trainer's refusal)
    training = meta.get("training") or {}
    if training.get("stop_reason") not in FINISHED_STOP_REASONS:
        return None
    saved = training.get("config") or {}
    check_resume_config(saved, fold_cfg, path, what=f"Fold {fold_cfg.fold}'s package",
                        saved_data_path=training.get("data_path"))
    if saved and int(saved.get("epochs", fold_cfg.epochs)) != int(fold_cfg.epochs):
        return None
    if cases is None:
        from .datasets import discover_cases

        cases = discover_cases(fold_cfg.data, fold_cfg.format)
    _check_same_validation_cases(fold_cfg, training, path, cases)
    _check_same_files(fold_cfg, training, path, cases)
    _check_same_start(fold_cfg, training, path)
    return TrainResult(package_path=path, log_dir=Path(fold_cfg.log_dir),
                       epochs_completed=int(training.get("epochs_completed", 0)),
                       global_step=int(training.get("global_step", 0)), validation=meta.get("validation") or {},
                       stop_reason=str(training["stop_reason"]), train_cases=list(training.get("cases", [])),
                       val_cases=list(training.get("validation_cases", [])))


def _check_same_start(fold_cfg: TrainConfig, training: Dict[str, Any], path: Path) -> None:
    """Refuse a finished fold fine-tuned from other weights than ``--init-from`` holds now (the package replaced
    between the runs): the table mixed folds started from two packages (``train --resume`` refuses the same)."""
    if not fold_cfg.init_from:
        return
    from ..package import load_model_package

    start = training.get("init_from")
    recorded = start.get("weights_sha256") if isinstance(start, dict) else None
    now = load_model_package(fold_cfg.init_from).sha256  # verified, as the folds' training loads it
    if recorded != now:
        raise InputError(f"Fold {fold_cfg.fold}'s package '{path}' was fine-tuned from weights {recorded or 'none'}; "
                         f"--init-from '{fold_cfg.init_from}' now holds {now}. Resume with the package the folds "
                         f"started from, or pass --overwrite (without --resume) to train every fold again.")


def _check_same_validation_cases(fold_cfg: TrainConfig, training: Dict[str, Any], path: Path,
                                 cases: Optional[Sequence[Any]] = None) -> None:
    """Refuse a finished fold whose package was validated on other cases than this split gives that fold: the
    data list or its patient column changed between the runs, and the table would validate some cases twice
    and others never (the options' text alone cannot show it). ``cases``: the data's cases, when the caller has
    listed them already (else they are listed here)."""
    recorded = training.get("validation_cases")
    if not isinstance(recorded, list):
        return  # older packages do not record them
    from .splits import select_split

    if cases is None:
        from .datasets import discover_cases

        cases = discover_cases(fold_cfg.data, fold_cfg.format)
    _, validation = select_split(cases, fold_cfg.val_fraction, fold_cfg.folds, fold_cfg.fold,
                                 fold_cfg.data_split_seed)
    now = sorted(c.case_id for c in validation)
    if sorted(str(c) for c in recorded) != now:
        raise InputError(f"Fold {fold_cfg.fold}'s package '{path}' was validated on {', '.join(sorted(recorded))}, "
                         f"but this split gives the fold {', '.join(now)}: the data list or its patient column "
                         f"changed since. Resume with the data of the interrupted run, or start the "
                         f"cross-validation over in a new folder.")


def _check_same_files(fold_cfg: TrainConfig, training: Dict[str, Any], path: Path, cases: Sequence[Any]) -> None:
    """Refuse a finished fold whose package was trained on files whose contents changed since (a label or CT
    replaced under the same name): taken as it was, the table mixed folds of the old files with folds trained on
    the new ones, as ``train --resume`` refuses for a checkpoint (:func:`~.trainer.check_resume_contents`). The
    SHA-256 hashes the package's ``data_files`` record are compared with this data's, taken as a training start
    takes them (kept in the fold's slice cache folder: files unchanged since are not read again). Packages of
    older versions record no hashes and are not checked."""
    from .slice_cache import changed_files, data_fingerprint

    recorded = {str(f.get("case")): f for f in training.get("data_files") or []
                if isinstance(f, dict) and isinstance(f.get("image_sha256"), str)
                and isinstance(f.get("label_sha256"), str)}
    listed = [c for c in cases if c.case_id in recorded]
    if not listed:
        return
    fingerprint = data_fingerprint(listed, fold_cfg.cache_dir or None)
    changed = []
    for case in listed:
        saved = {key: recorded[case.case_id][key] for key in ("image_sha256", "label_sha256")}
        files = changed_files(saved, fingerprint[case.case_id])
        if files:
            changed.append(f"{case.case_id} ({' and '.join(files)})")
    if changed:
        raise InputError(f"Fold {fold_cfg.fold}'s package '{path}' was trained on other files for case(s) "
                         f"{', '.join(changed[:6])}{' ...' if len(changed) > 6 else ''}: the contents of the named "
                         f"image or label changed since. Start the cross-validation over on the new files "
                         f"(--overwrite instead of --resume, or a new -o folder), or restore the earlier files "
                         f"to finish that run.")


def fold_leftover(fold_cfg: TrainConfig) -> Optional[Path]:
    """A fold's package or interrupt checkpoint that an earlier run left, or None."""
    for path in (Path(fold_cfg.output), Path(fold_cfg.log_dir) / "checkpoints" / "last.pt"):
        if path.exists():
            return path
    return None


def fold_other_settings(fold_cfg: TrainConfig) -> Tuple[bool, str, bool]:
    """``(holds_any, differing, package_matches)`` for the package and the checkpoint
    (``fold_<i>_train/checkpoints/last.pt``) an earlier run left for a fold: ``holds_any`` says there is one of
    them; ``differing`` is "" when one was trained under ``fold_cfg``'s settings (outside
    :data:`~.trainer.RESUME_MAY_CHANGE`: epochs, device, ... may differ), else what differs
    (:func:`~.trainer.differing_settings`, the package's first), naming the file; ``package_matches`` says the
    package is one of those settings (a checkpoint of them beside a package of others: the package is of the run an
    interrupted ``--overwrite`` run was replacing, and the checkpoint continues). An unreadable
    package counts as none (the fold is trained again), as :func:`finished_fold` reads it; an unreadable checkpoint
    is left to the fold's training, which refuses it."""
    from ..package import readable_package_metadata
    from .checkpoint import load_checkpoint
    from .trainer import differing_settings

    differences = []
    meta = readable_package_metadata(fold_cfg.output)
    if meta is not None:
        training = meta.get("training") or {}
        listed = differing_settings(training.get("config") or {}, fold_cfg, Path(fold_cfg.output),
                                    training.get("data_path"))
        if not listed:
            return True, "", True
        differences.append(f"'{fold_cfg.output}' is from a run with other settings: {listed}")
    last = Path(fold_cfg.log_dir) / "checkpoints" / "last.pt"
    if last.is_file():  # read only when the package is not of these settings (a checkpoint holds the weights too)
        try:
            payload = load_checkpoint(last, map_location="cpu")
        except InputError:
            return True, "", False
        listed = differing_settings(payload.get("config"), fold_cfg, last, payload.get("data_path"))
        if not listed:
            return True, "", False
        differences.append(f"'{last}' is from a run with other settings: {listed}")
    return bool(differences), (differences[0] if differences else ""), False


def _recorded_oblique_grids(config: TrainConfig, out_dir: Path) -> Tuple[List[Path], Set[str]]:
    """``(before, recorded)`` over the fold packages and interrupt checkpoints an earlier run left in ``out_dir``:
    the files whose saved config has no ``oblique_grid`` (written before the option existed: their runs trained
    oblique CTs on their stored slices), and the ``oblique_grid`` values the other saved configs hold. Unreadable
    files are left to the folds, which refuse or retrain them."""
    from ..package import readable_package_metadata
    from .checkpoint import load_checkpoint

    before, recorded = [], set()
    for fold in range(config.folds):
        fold_cfg = fold_config(config, out_dir, fold)
        saved = []
        meta = readable_package_metadata(fold_cfg.output)
        if meta is not None:
            saved.append((Path(fold_cfg.output), (meta.get("training") or {}).get("config")))
        last = Path(fold_cfg.log_dir) / "checkpoints" / "last.pt"
        if last.is_file():
            try:
                saved.append((last, load_checkpoint(last, map_location="cpu").get("config")))
            except InputError:
                pass
        for path, stored in saved:
            try:
                stored = json.loads(stored) if isinstance(stored, str) else stored
            except ValueError:
                continue
            if not isinstance(stored, dict) or not stored:
                continue
            if "oblique_grid" in stored:
                recorded.add(str(stored["oblique_grid"]))
            else:
                before.append(path)
    return before, recorded


def resumed_oblique_grid(config: TrainConfig, out_dir: Path, log: Callable[[str], None]) -> TrainConfig:
    """The config a ``crossval --resume`` trains its remaining folds with: when the folder's fold packages or
    interrupt checkpoints were written before ``oblique_grid`` existed (their saved configs lack it, and any other
    holds "stored": a fold an earlier such resume trained or interrupted) the run trained oblique CTs on their stored slices, so every remaining fold trains ``stored`` too (said in
    one line) unless ``oblique_grid`` was given (:attr:`TrainConfig.given`): a given "stored" resumes, a given
    "aligned" is refused as another setting, as ``train --resume`` refuses it
    (:meth:`~.trainer.Trainer._resumed_oblique_grid`). Before, the interrupted fold continued stored while the folds
    not started yet trained aligned: one cross-validation mixed two grids."""
    before, recorded = _recorded_oblique_grids(config, out_dir)
    # a fold that an earlier resume of such a run trained (or interrupted) records "stored": still the same run. Its
    # second resume trained the remaining folds aligned (retraining that fold from scratch, 'left by the run that an
    # interrupted --overwrite run ... was replacing'), mixing grids again
    if not before or recorded - {"stored"}:
        return config
    if "oblique_grid" in config.given:
        if config.oblique_grid != "stored":
            raise InputError(f"'{before[0]}' is from a run with other settings: oblique_grid 'stored' (now "
                             f"{config.oblique_grid!r}): it was written before --oblique-grid existed, and its run "
                             f"trained oblique CTs on their stored slices. Resume with the interrupted run's "
                             f"settings, or pass --overwrite (without --resume) to start over.")
        return config
    log(f"Resuming the cross-validation in '{out_dir}' with oblique_grid stored: '{before[0]}' was written before "
        f"the option existed, and its run trained oblique CTs on their stored slices, so every remaining fold does "
        f"too (pass --oblique-grid stored to say so; --oblique-grid aligned is refused, as another setting).")
    return config.updated({"oblique_grid": "stored"})


def _refuse_used_fold_folders(config: TrainConfig, out_dir: Path) -> None:
    """Refuse, before any fold trains, a fold's training folder that already holds a user's files (a fold refuses
    it when its turn comes, and a user's folder 'fold_1_train' was found only after fold 0 had trained; the advice
    then, --overwrite, would train the finished fold again)."""
    from .trainer import TRAIN_LOCK_FILE, holds_only_slice_cache

    for fold in range(config.folds):
        folder = Path(fold_config(config, out_dir, fold).log_dir)
        if not folder.is_dir() or holds_only_slice_cache(folder):
            continue
        entries = sorted(p.name for p in folder.iterdir() if p.name != TRAIN_LOCK_FILE)
        if entries:
            raise OutputExistsError(f"Fold {fold}'s training folder '{folder}' already exists and holds "
                                    f"{len(entries)} item(s) (e.g. '{entries[0]}'); each fold writes its log, "
                                    f"checkpoints and cache there. Move that folder, choose another -o"
                                    f"{' or --log-dir' if config.log_dir else ''}, or pass --overwrite to write "
                                    f"into it.")


def run_crossval(config: TrainConfig, out_dir, command: str = "", train_fn: Callable = None,
                 log: Callable[[str], None] = print, progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancellationToken] = None) -> List[Dict[str, Any]]:
    """Train folds ``0 .. config.folds - 1`` and write the tables; returns the per-fold rows + mean row. With
    ``config.resume`` a fold whose package an earlier run finished is taken as it is (:func:`finished_fold`)
    and an interrupted fold continues from its checkpoint.

    ``progress``: ``callback(fraction, stage)`` (:mod:`~..progress`), the fraction 0..1 over all folds (each fold
    an equal share: its training steps fill the first :data:`FOLD_TRAINING_SHARE` of it, its whole-volume
    validation and package the rest), the stage naming the fold and epoch; 1.0 once the tables are written.
    ``cancel``: a :class:`~..progress.CancellationToken`, checked before each fold and after each training step:
    a fold in training is stopped as Ctrl-C stops it (its interrupt checkpoint saved), and CancelledError is raised
    saying which folds are finished. The finished folds' packages stay, no table is written, and the same call
    with ``config.resume`` (``crossval --resume``) trains only the rest. One process only: under ``torchrun`` a
    token set in one rank would stop that rank alone."""
    from .trainer import train

    train_fn = train_fn or train
    if config.folds < 2:
        raise InputError("crossval needs --folds K with K >= 2 (4 is usual, as in Elmenabawy et al.).")
    if config.resume and config.overwrite:
        # train reads the pair as 'resume, and replace -o'; here --overwrite removes the earlier run's folds first,
        # so the pair deleted hours of finished folds with --resume ignored (the command-line audit)
        raise InputError("crossval --resume continues the earlier run's folds and --overwrite removes them to train "
                         "every fold again: give one of the two.")
    out_dir = check_path_encoding(out_dir, "Output folder")
    check_folder_writable(nearest_existing_folder(out_dir))  # before any fold trains
    tables = [out_dir / name for name in TABLE_NAMES if (out_dir / name).exists()]
    if tables and not (config.overwrite or config.resume):
        raise OutputExistsError(f"'{tables[0]}' already exists; pass --overwrite (or --resume to finish that "
                                f"run) or choose another -o folder.")
    if not (config.overwrite or config.resume):
        # a run stopped before its table: fold 1 refused the rerun with train's advice, 'Output fold_0.safetensors
        # already exists; pass --overwrite', which would have trained the finished folds again
        left = [path for path in (fold_leftover(fold_config(config, out_dir, fold)) for fold in range(config.folds))
                if path is not None]
        if left:
            raise OutputExistsError(f"'{left[0]}' is left from an earlier crossval run in '{out_dir}' that stopped "
                                    f"before its table; pass --resume to finish that run (finished folds are kept, "
                                    f"an interrupted one continues), --overwrite to start over, or choose another -o "
                                    f"folder.")
        _refuse_used_fold_folders(config, out_dir)
    # what this run makes, and removes when it fails: the output folder, and the folds' --log-dir when given
    # (folder, the outermost folder this run makes for it): a missing parent of -o (crossval -o new/cv) is removed
    # only while empty, never with what another run or the user put into it meanwhile
    made = [(Path(folder), outermost_missing_folder(folder)) for folder in (out_dir, config.log_dir) if folder]
    # under torchrun: one process group for all folds. Each fold's train() made and destroyed its own on the
    # same store, and a rank sometimes hung in the next fold's init (seen with gloo on CPU)
    from .distributed import cleanup, init_distributed
    from .trainer import resolve_device

    dist_info = init_distributed(resolve_device(config.device).type)
    if not dist_info.is_main:
        log = lambda text: None  # noqa: E731 - rank 0 says it once
    try:
        return _run_folds(config, out_dir, command, train_fn, log, made, dist_info.is_main,
                          ProgressReporter(progress), cancel)
    finally:
        cleanup(dist_info)


def _run_folds(config: TrainConfig, out_dir: Path, command: str, train_fn: Callable, log: Callable[[str], None],
               made: List[Any], is_main: bool, progress: Optional[ProgressReporter] = None,
               cancel: Optional[CancellationToken] = None) -> List[Dict[str, Any]]:
    """The folds of :func:`run_crossval`, and the tables (written by rank 0 alone: the other ranks' results
    hold no validation, so their tables were all NaN, and whichever rank renamed its file last won)."""
    progress = progress or ProgressReporter()
    from .datasets import discover_cases
    from .splits import kfold_splits
    from .trainer import build_preprocessing, check_model_spec, remove_if_no_checkpoint

    out_dir.mkdir(parents=True, exist_ok=True)
    rows, options = [], []
    resuming = config.resume and not config.overwrite
    try:
        # checked before the first fold's banner, in train's order (the network, then the data): an unknown
        # architecture and missing or empty data were refused under '=== fold 0 ... ==='; the finished folds'
        # splits of a resumed run come from the list too
        preprocessing = build_preprocessing(config.preprocessing)
        check_model_spec(config.model, preprocessing.in_channels, config.model_options, preprocessing.num_context)
        listed = discover_cases(config.data, config.format)
        kfold_splits(listed, config.folds, config.data_split_seed)  # too few patients: refused before any banner
        if resuming:
            config = resumed_oblique_grid(config, out_dir, log)
        this_run_found = False  # a fold before holds a package or checkpoint of this run's settings
        for fold in range(config.folds):
            # numbered from 0, as fold_K.safetensors, the table and train --fold K are ("fold 2/2" beside the
            # trainer's "(fold 1 of 2)" named one fold two ways in one log)
            _raise_if_cancelled(cancel, fold, config.folds, out_dir)
            log(f"=== fold {fold} (folds 0-{config.folds - 1}) ===")
            fold_progress = progress.sub(fold / config.folds, (fold + 1) / config.folds)
            fold_progress(0.0, f"fold {fold} (folds 0-{config.folds - 1}): starting")
            fold_cfg = fold_config(config, out_dir, fold)
            result = None
            if resuming:
                fold_cfg, this_run_found, take_package = _fold_to_resume(fold_cfg, this_run_found, log)
                result = finished_fold(fold_cfg, listed) if take_package else None
                fold_cfg = _killed_before_a_checkpoint(fold_cfg, log)
            if result is not None:
                log(f"fold {fold} already finished ({result.epochs_completed} epochs, {result.stop_reason}): "
                    f"taking {fold_cfg.output} as it is")
            else:
                earlier_tables = {}  # type: Dict[str, bytes]
                if is_main:
                    earlier_tables = _remove_earlier_tables(out_dir, log)
                    if config.overwrite and fold == 0:
                        _remove_replaced_folds(config, out_dir, log)
                result = _train_fold_keeping_tables(train_fn, fold_cfg, command, log, fold_progress, cancel, out_dir,
                                                    {} if config.overwrite else earlier_tables)
            fold_progress(1.0, f"fold {fold} (folds 0-{config.folds - 1}): finished")
            rows.append(fold_row(fold, result))
            options.append(recorded_postprocessing(result))
    except Exception:
        if is_main:
            for folder, outermost in made:  # a failed crossval leaves no empty (or cache-only) folder of its own
                if outermost is None or not remove_if_no_checkpoint(folder):
                    continue
                if folder != outermost and not folder.exists():  # its missing parents, each only while empty
                    remove_empty_folders(folder.parent, outermost)
        raise
    table = rows + [mean_row(rows)]
    if is_main:
        write_table(table, out_dir, options)
        progress(1.0, f"{config.folds} folds: tables written")
        stale = folds_beyond(out_dir, config.folds)
        if stale:
            one = len(stale) == 1
            folders = ", ".join(name.replace(".safetensors", "_train") for name in stale)
            log(f"warning: {', '.join(stale)} in '{out_dir}' {'is' if one else 'are'} left from an earlier run with "
                f"more folds and {'is' if one else 'are'} no part of this {config.folds}-fold table; move or delete "
                f"{'it' if one else 'them'} (and {folders}), so that the folder's fold packages are this run's.")
    return table


FOLD_TRAINING_SHARE = 0.9
"""The part of a fold's share of ``run_crossval``'s progress its training steps fill; the rest covers its
whole-volume validation and package, which report no steps of their own."""


class CrossvalCancelled(KeyboardInterrupt):
    """Raised by :class:`FoldProgress` after a training step when the crossval's token is cancelled: a
    KeyboardInterrupt, so the trainer saves its interrupt checkpoint as for Ctrl-C (``--resume`` continues the fold
    from that step); :func:`_train_fold` turns it into CancelledError."""


class FoldProgress:
    """A training callback (:class:`~.trainer.Trainer`'s ``on_step_end``) of one crossval fold: reports the fold's
    steps to ``progress`` (0..:data:`FOLD_TRAINING_SHARE` of the fold's share, by epochs and steps done) and stops
    the fold (:class:`CrossvalCancelled`) once ``cancel`` is cancelled."""

    def __init__(self, fold: int, folds: int, progress: ProgressReporter,
                 cancel: Optional[CancellationToken] = None) -> None:
        self.fold, self.folds, self.progress, self.cancel = fold, folds, progress, cancel

    def on_step_end(self, info: Dict[str, Any]) -> None:
        epochs, steps = max(1, int(info["epochs"])), max(1, int(info["steps_per_epoch"]))
        done = (int(info["epoch"]) + int(info["step_in_epoch"]) / steps) / epochs
        self.progress(FOLD_TRAINING_SHARE * min(done, 1.0),
                      f"fold {self.fold} (folds 0-{self.folds - 1}): epoch {int(info['epoch']) + 1}/{epochs}, "
                      f"step {int(info['step_in_epoch'])}/{steps}")
        if self.cancel is not None and self.cancel.is_cancelled:
            raise CrossvalCancelled()


def _train_fold(train_fn: Callable, fold_cfg: TrainConfig, command: str, log: Callable[[str], None],
                progress: ProgressReporter, cancel: Optional[CancellationToken], out_dir: Path):
    """``train_fn`` of one fold, with a :class:`FoldProgress` callback when the caller follows progress or may
    cancel (a ``train_fn`` without ``callbacks`` is called as before); a cancel inside the fold raises
    CancelledError naming its checkpoint."""
    if progress.has_callback or cancel is not None:
        try:
            return train_fn(fold_cfg, command=command, log=log,
                            callbacks=[FoldProgress(int(fold_cfg.fold), int(fold_cfg.folds), progress, cancel)])
        except CrossvalCancelled:
            raise CancelledError(
                f"Cross-validation cancelled in fold {fold_cfg.fold}: its training stopped with a checkpoint in "
                f"'{Path(fold_cfg.log_dir) / 'checkpoints'}'{_finished_text(int(fold_cfg.fold), out_dir)}. Run it "
                f"again with --resume (config.resume) to continue from there and write the tables.") from None
    return train_fn(fold_cfg, command=command, log=log)


def _finished_text(fold: int, out_dir: Path) -> str:
    """``; folds 0-<fold-1> are finished (their packages are in '<out_dir>')`` (nothing for fold 0)."""
    if fold == 0:
        return ""
    folds = "fold 0 is" if fold == 1 else f"folds 0-{fold - 1} are"
    return f"; {folds} finished (their packages are in '{out_dir}')"


def _raise_if_cancelled(cancel: Optional[CancellationToken], fold: int, folds: int, out_dir: Path) -> None:
    """CancelledError before fold ``fold`` is started when ``cancel`` is cancelled, naming the finished folds."""
    if cancel is None or not cancel.is_cancelled:
        return
    raise CancelledError(f"Cross-validation cancelled before fold {fold} of 0-{folds - 1}"
                         f"{_finished_text(fold, out_dir)}; no table was written. Run it again with --resume "
                         f"(config.resume) to train the remaining folds and write the tables.")


def folds_beyond(out_dir: Path, folds: int) -> List[str]:
    """The names of the fold packages ``fold_<i>.safetensors`` in ``out_dir`` with ``i >= folds``: an earlier run's
    with more folds, which a run of ``folds`` folds (``--overwrite``) neither replaces nor tabulates. They were left
    beside the new table without a word, to be installed or ensembled with this run's folds."""
    import re

    found = []
    for path in Path(out_dir).glob("fold_*.safetensors"):
        match = re.fullmatch(r"fold_(\d+)\.safetensors", path.name)
        if match and int(match.group(1)) >= folds:
            found.append((int(match.group(1)), path.name))
    return [name for _, name in sorted(found)]


def _fold_to_resume(fold_cfg: TrainConfig, this_run_found: bool,
                    log: Callable[[str], None]) -> Tuple[TrainConfig, bool, bool]:
    """The config a resumed crossval trains fold ``fold_cfg.fold`` with, whether this run's settings have been
    found in the folder by now, and whether the fold's package is of them (taken when finished:
    :func:`finished_fold`). A fold whose package and checkpoint are both of other settings is what an earlier
    run left which an interrupted ``--overwrite`` run (these settings) had not reached yet: when an earlier fold
    holds this run's settings it is trained again from scratch (``overwrite``), else the run is refused naming the
    settings that differ (nothing in the folder was trained with them). Before, such a fold refused the resume with
    'Resume with the interrupted run's settings' although those were given (the overwrite run's first folds held
    them), and a fold's package of the replaced run beside a checkpoint of this one was refused the same way."""
    holds_any, differing, package_matches = fold_other_settings(fold_cfg)
    if not differing:
        return fold_cfg, this_run_found or holds_any, package_matches
    if not this_run_found:
        raise InputError(f"Fold {fold_cfg.fold}: {differing}, and no earlier fold holds a run of this run's "
                         f"settings. Resume with the settings the folder's folds were trained with, or pass "
                         f"--overwrite (without --resume) to start over with these.")
    log(f"fold {fold_cfg.fold}: {differing}; left by the run that an interrupted --overwrite run of these settings "
        f"was replacing, which had not reached this fold: training it again from scratch")
    return fold_cfg.updated({"overwrite": True, "resume": False}), this_run_found, False


def _killed_before_a_checkpoint(fold_cfg: TrainConfig, log: Callable[[str], None]) -> TrainConfig:
    """``fold_cfg`` to train from scratch (``overwrite``) when the fold's folder holds only what a run killed
    before the fold's first checkpoint left (:func:`~.trainer.holds_only_an_unsaved_run`: a SIGKILL, the
    out-of-memory killer, a power cut) and it has no package; else ``fold_cfg`` as it is. The resume was refused
    ('Training folder ... holds 2 item(s) (e.g. 'checkpoints') ... pass --overwrite'), and crossval --overwrite trains
    every finished fold again."""
    from .trainer import holds_only_an_unsaved_run

    if not fold_cfg.resume or Path(fold_cfg.output).exists() or not holds_only_an_unsaved_run(Path(fold_cfg.log_dir)):
        return fold_cfg
    log(f"fold {fold_cfg.fold}: '{fold_cfg.log_dir}' holds no checkpoint (its run was stopped before the first one): "
        f"training the fold from its start")
    return fold_cfg.updated({"overwrite": True, "resume": False})


def _remove_earlier_tables(out_dir: Path, log: Callable[[str], None]) -> Dict[str, bytes]:
    """Remove an earlier run's ``crossval.csv`` and ``crossval.json`` (``--overwrite``, or ``--resume`` after an
    interrupted ``--overwrite`` run) before a fold is trained: its packages are replaced from here on, and an
    interrupted run left the earlier run's tables, which look finished, beside this run's fold_0.safetensors and the
    earlier run's other folds (their Dice and validation cases not those of the packages beside them). Returns the
    removed tables' contents by name, for :func:`_train_fold_keeping_tables` to put back."""
    removed = {name: (out_dir / name).read_bytes() for name in TABLE_NAMES if (out_dir / name).is_file()}
    for name in removed:
        (out_dir / name).unlink()
    if removed:
        log(f"removed the earlier run's {' and '.join(removed)} from '{out_dir}': this run replaces its fold "
            f"packages and writes new tables once every fold is trained")
    return removed


def _train_fold_keeping_tables(train_fn: Callable, fold_cfg: TrainConfig, command: str, log: Callable[[str], None],
                               progress: ProgressReporter, cancel: Optional[CancellationToken], out_dir: Path,
                               earlier_tables: Dict[str, bytes]):
    """:func:`_train_fold`, putting ``earlier_tables`` (:func:`_remove_earlier_tables`; empty under --overwrite,
    whose packages are replaced) back when the fold fails or is stopped with its package unchanged: they still
    describe the packages beside them. A finished crossval's tables were lost to a --resume whose fold was then
    refused (another --epochs under a cosine schedule, a damaged fold package)."""
    from .trainer import _file_identity

    package_before = _file_identity(Path(fold_cfg.output))
    try:
        return _train_fold(train_fn, fold_cfg, command, log, progress, cancel, out_dir)
    except BaseException:
        if earlier_tables and _file_identity(Path(fold_cfg.output)) == package_before:
            _put_back_tables(out_dir, earlier_tables, log)
        raise


def _put_back_tables(out_dir: Path, tables: Dict[str, bytes], log: Callable[[str], None]) -> None:
    """Write the tables :func:`_remove_earlier_tables` removed back in place (each one no other file took since)."""
    back = []
    for name, data in tables.items():
        try:
            with atomic_output(out_dir / name) as tmp:  # refuses (InputError) a file written there meanwhile
                tmp.write_bytes(data)
            back.append(name)
        except (OSError, InputError, OutputExistsError):
            pass
    if back:
        log(f"put the earlier run's {' and '.join(back)} back in '{out_dir}': no fold package was replaced")


REPLACED_CHECKPOINTS = ("last.pt", "best.pt", "last_rng_rank*.pt")
"""The checkpoints (in a fold's ``fold_<i>_train/checkpoints/``) :func:`_remove_replaced_folds` removes: those a
fold's training writes (``Trainer._clear_earlier_run`` removes the same when the fold starts over)."""


def _remove_replaced_folds(config: TrainConfig, out_dir: Path, log: Callable[[str], None]) -> None:
    """``--overwrite``: remove the fold packages ``fold_<i>.safetensors`` (``i < folds``) and their folds'
    checkpoints an earlier run left, before this run trains its first fold. Each fold removed its own only when its
    turn came, so a run interrupted after fold 0 left the earlier run's later folds, which a ``--resume`` then took
    as this run's whenever their recorded settings differed only where a resume may differ (another ``--epochs``:
    the earlier fold's checkpoint was continued; another ``--early-stopping-patience``) or not at all as recorded
    (a package from before ``oblique_grid``): one table of two runs. Only what this run writes and replaces goes:
    the folds' logs stay (each fold replaces them when it trains), and so do fold packages beyond ``folds``
    (:func:`folds_beyond`) and anything else in the folder."""
    removed = []
    for fold in range(config.folds):
        fold_cfg = fold_config(config, out_dir, fold)
        checkpoints = Path(fold_cfg.log_dir) / "checkpoints"
        paths = [Path(fold_cfg.output)] + sorted(path for pattern in REPLACED_CHECKPOINTS
                                                 for path in checkpoints.glob(pattern))
        for path in paths:
            if path.is_file() or path.is_symlink():  # a link: the link goes, not what it points to
                path.unlink()
                removed.append(path)
    if removed:
        packages = sum(1 for path in removed if path.suffix == ".safetensors")
        # the checkpoints lie in the folds' training folders: under --log-dir when one is given (fold_config); the
        # line said they were removed from the output folder
        logs = Path(config.log_dir) if config.log_dir else Path(out_dir)
        where = (f"{packages} fold package(s) and {len(removed) - packages} checkpoint(s) from '{out_dir}'"
                 if logs == Path(out_dir) else
                 f"{packages} fold package(s) from '{out_dir}' and {len(removed) - packages} checkpoint(s) from "
                 f"'{logs}'")
        log(f"--overwrite: removed the earlier run's {where} before training fold 0, so that no fold of that run is "
            f"taken as this run's by a later --resume")


def selection_summary(folds: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """crossval.json's ``weights`` (each fold's, one value when all agree), ``optimistic`` (a fold decided
    something on its validation cases) and, when so, ``note``: a reader of the summary alone sees it too;
    ``unfinished_folds`` (the folds whose training stopped before its end: a time limit) and, when any, ``unfinished``,
    the note saying so."""
    weights = sorted({str(r.get("weights")) for r in folds if r.get("weights")})
    selected = [r["fold"] for r in folds if str(r.get("selected_on_validation") or "no") != "no"]
    summary = {"weights": weights[0] if len(weights) == 1 else weights, "optimistic": bool(selected)}
    unfinished = [r["fold"] for r in folds if str(r.get("stop_reason") or "completed") not in FINISHED_STOP_REASONS]
    summary["unfinished_folds"] = unfinished
    if unfinished:  # a time-limited fold was averaged with finished ones without a word (the crossval audit)
        summary["unfinished"] = (f"fold(s) {', '.join(str(f) for f in unfinished)} stopped before the end of their "
                                 f"training (see each fold's stop_reason, e.g. time_limit for --max-time-minutes): "
                                 f"their Dice measure partly trained networks, and the mean mixes them with the "
                                 f"others. Run crossval again with --resume (in place of --overwrite, if it was given) "
                                 f"to finish them.")
    seen = [r["fold"] for r in folds if str(r.get("held_out", "yes")) != "yes"]
    if seen:
        summary["not_held_out"] = (f"fold(s) {', '.join(str(f) for f in seen)} started (--init-from) from a package "
                                   f"trained on their validation patients: their Dice is not a held-out measure "
                                   f"(see each fold's held_out)")
    if selected:
        summary["note"] = (f"the Dice of fold(s) {', '.join(str(f) for f in selected)} is {OPTIMISTIC_NOTE}: "
                           f"see each fold's selected_on_validation. Without use_best_checkpoint, early stopping "
                           f"and the plateau schedule every fold is measured on cases that made no decision in "
                           f"its training.")
    return summary


def write_table(table: List[Dict[str, Any]], out_dir: Path,
                postprocessing_options: Optional[Sequence[Any]] = None) -> Path:
    """``crossval.csv`` via ``metrics.report.write_case_table`` and ``crossval.json`` with its summary.
    ``postprocessing_options``: each fold's recorded post-processing options (:func:`recorded_postprocessing`),
    listed in the summary."""
    from ..metrics.report import summarize_cases, write_case_table

    path = write_case_table(table, out_dir / "crossval.csv", overwrite=True, first_column="fold")
    folds = [r for r in table if r["fold"] != "mean"]
    # over folds, not cases: summarize_cases' own keys (n_cases, pooled global Dice) and the bookkeeping columns
    # (epochs, tumor_ref_cases) said other things than they are; no bootstrap intervals, which resample cases
    over_folds = summarize_cases([{"liver_dice": r["liver_dice"], "tumor_dice": r["tumor_dice"]} for r in folds],
                                 confidence_intervals=False)
    summary = {"n_folds": len(folds),
               "n_validation_cases": sum(len([c for c in str(r.get("val_cases") or "").split(VAL_CASES_SEPARATOR) if c])
                                         for r in folds),
               "metrics_over_folds": over_folds["metrics"]}
    # the network's own labels, before segment's post-processing (the Dice above are after it)
    raw = summarize_cases([{"liver_dice": r["liver_dice_raw"], "tumor_dice": r["tumor_dice_raw"]} for r in folds],
                          confidence_intervals=False)
    summary["raw_network_metrics_over_folds"] = raw["metrics"]
    described = sorted({str(r.get("postprocessing")) for r in folds if r.get("postprocessing")})
    if described:
        summary["postprocessing"] = described[0] if len(described) == 1 else described
    # the options as the packages recorded them (one dict when all folds agree)
    recorded = [o for o in (postprocessing_options or []) if isinstance(o, dict)]
    distinct = [json.loads(text) for text in sorted({json.dumps(o, sort_keys=True) for o in recorded})]
    if distinct:
        summary["postprocessing_options"] = distinct[0] if len(distinct) == 1 else distinct
    summary.update(selection_summary(folds))
    clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in table]
    with atomic_output(out_dir / "crossval.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps({"folds": clean, "summary": summary}, indent=2), encoding="utf-8")
    return path
