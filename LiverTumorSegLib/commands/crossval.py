"""``livertumorseg crossval``: k-fold cross-validation (patient-level folds, fixed seed).

    livertumorseg crossval --data DIR_OR_CSV --folds 4 -o OUT_DIR [any train option] [--config train.yaml]

Trains every fold into ``OUT_DIR/fold_<i>.safetensors`` and writes ``OUT_DIR/crossval.csv`` (per-fold and
mean liver/tumor Dice) and ``OUT_DIR/crossval.json``. Here ``-o`` is a folder. Each fold is validated with its
last epoch's weights; ``--use-best-checkpoint``, ``--early-stopping-patience`` and ``--schedule plateau`` decide
on the validation cases, and the table then marks those folds' Dice as optimistic.
"""
import argparse
import logging
from pathlib import Path
from typing import Any, Dict, List, Sequence

from ..errors import InputError
from .train import add_config_options, command_line, config_from_args

log = logging.getLogger(__name__)


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("crossval", help="k-fold cross-validation: train all folds, write a metrics table",
                              description="Train all folds of a patient-level k-fold split and write per-fold "
                                          "and mean Dice tables. -o names the output folder.")
    # train's help for these does not fit crossval (0 = hold-out; one fold; a file)
    add_config_options(p, help_for={
        "folds": "number of patient-level folds, 2 or more (default 4)",
        "fold": argparse.SUPPRESS,  # crossval trains every fold
        "val_fraction": argparse.SUPPRESS,  # each fold's held-out patients are its validation
        "output": "output folder: fold_<i>.safetensors, crossval.csv and crossval.json",
        "log_dir": "folder for each fold's checkpoints and logs, fold_<i>_train/ in it (default: the output "
                   "folder; the slice cache stays in --cache-dir)",
        "cache_dir": "folder for the preprocessed slice cache, shared by the folds (default: <output folder>/cache/)",
        "resume": "continue each unfinished fold from its fold_<i>_train/checkpoints/last.pt (default: off)",
        "overwrite": "train every fold again in the folder of an earlier run, removing that run's fold packages and "
                     "checkpoints first (default: off; not with --resume)",
        "max_time_minutes": "stop each fold gracefully after this many minutes and still write its package (0 = no "
                            "limit) (default 0.0)",
        "name": "model name stored in each fold's package as NAME_fold_<i>, which segment --model takes once it is "
                "installed (default: the file's name, fold_<i>)"})
    return p


def tumor_dice_notes(table: Sequence[Dict[str, Any]]) -> List[str]:
    """What the printed tumor Dice means where validation cases hold no reference tumor (``tumor_ref_cases`` 0):
    there it only says whether tumor was predicted (LiTS's 1.0 for none). With no fold holding one, the whole
    column; with some folds only, those folds, which the mean counts (a table of 0.951 and two such 1.000 read
    mean 0.984 without a word)."""
    folds = [row for row in table if row.get("fold") != "mean"]
    tumor_free = [str(row["fold"]) for row in folds if row.get("tumor_ref_cases") == 0]
    if not tumor_free:
        return []
    if len(tumor_free) == len(folds):
        return ["no validation case has a reference tumor: 'tumor Dice' only says whether tumor was predicted "
                "(1 = none, 0 = some), not how well it was outlined"]
    return [f"note: the validation cases of fold(s) {', '.join(tumor_free)} hold no reference tumor: their 'tumor "
            f"Dice' only says whether tumor was predicted (1 = none, 0 = some), and the mean counts them (column "
            f"tumor_ref_cases)"]


def _say_ignored_file_options(args: argparse.Namespace) -> None:
    """Warn of the ``--config`` file's train-only options that crossval ignores (the command line's are refused or
    warned of in :func:`run`): ``val_fraction``; ``fold``, one fold for train (crossval trains every fold); ``folds``
    0, train's hold-out split, under which crossval makes 4 folds. The last two passed without a word: a recipe
    shared with train holding ``folds: 0`` ran '4-fold cross-validation needs at least 4 patients' on 2 patients
    that nothing had asked for."""
    from ..training.config import load_config_file

    values = load_config_file(args.config_file)
    name = args.config_file
    if getattr(args, "val_fraction", None) is None and "val_fraction" in values:  # was ignored without a word
        log.warning("warning: val_fraction in '%s' does not apply to crossval, which validates each fold on the "
                    "patients it holds out; it is ignored.", name)
    if getattr(args, "fold", None) is None and values.get("fold") not in (None, 0):
        log.warning("warning: fold: %s in '%s' picks one fold for 'livertumorseg train'; crossval trains every fold, "
                    "so it is ignored.", values.get("fold"), name)
    if getattr(args, "folds", None) is None and values.get("folds") == 0:
        log.warning("warning: folds: 0 in '%s' is train's hold-out split; crossval makes 4 folds (give --folds K to "
                    "choose).", name)


def run(args: argparse.Namespace) -> int:
    from ..training.crossval import run_crossval, selection_summary
    from ..training.launch_env import env_rank

    if getattr(args, "fold", None) is not None:
        # --fold 0 passed without a word and trained every fold: 'crossval --folds 5 --fold 0', meant as one fold,
        # ran five (the researcher-journey audit)
        raise InputError(f"crossval trains every fold; --fold picks one fold for 'livertumorseg train' (train "
                         f"--folds K --fold {args.fold} trains fold {args.fold} alone): leave --fold out here.")
    if getattr(args, "val_fraction", None) is not None:  # an option list shared with train: said, not refused
        log.warning("warning: --val-fraction does not apply to crossval, which validates each fold on the patients "
                    "it holds out; it is ignored.")
    if getattr(args, "folds", None) is not None and args.folds < 2:
        # before the training options are checked, whose message speaks of a hold-out split crossval never makes;
        # an explicit --folds 0 (train's hold-out) ran 4 folds without a word (a config file's folds: 0 still does)
        raise InputError(f"crossval needs --folds 2 or more (got {args.folds}); without --folds it makes 4.")
    config = config_from_args(args)
    if getattr(args, "config_file", None):
        _say_ignored_file_options(args)
    if not config.output:
        raise InputError("No output folder given: pass -o OUT_DIR.")
    from ..fileutil import full_suffix
    if not Path(config.output).exists() and full_suffix(config.output) in (".csv", ".json", ".safetensors"):
        # -o cv.csv trained every fold into a folder named cv.csv (as evaluate -o results.csv made one)
        raise InputError(f"-o '{config.output}' names a {full_suffix(config.output)} file, but crossval writes a "
                         f"folder (fold_<i>.safetensors, crossval.csv, crossval.json): give a folder name "
                         f"(e.g. -o cv/).")
    out_dir = config.output
    table = run_crossval(config.updated({"output": ""}), out_dir, command=command_line())
    if env_rank() != 0:  # under torchrun: rank 0 prints (and wrote) the table
        return 0
    print(f"{'fold':<8} {'liver Dice':>10} {'tumor Dice':>10}")
    for row in table:
        print(f"{row['fold']!s:<8} {row['liver_dice']:>10.3f} {row['tumor_dice']:>10.3f}")
    for note in tumor_dice_notes(table):
        print(note)
    mean = table[-1] if table else {}
    if mean.get("liver_dice_raw") is not None and mean["liver_dice_raw"] == mean["liver_dice_raw"]:
        print(f"Dice of the whole volumes after segment's post-processing (column postprocessing); the network's "
              f"own labels before it: mean liver Dice {mean['liver_dice_raw']:.3f}, tumor Dice "
              f"{mean.get('tumor_dice_raw', float('nan')):.3f} (columns liver_dice_raw, tumor_dice_raw)")
    summary = selection_summary(table[:-1])  # crossval.json's notes
    for key in ("not_held_out", "note", "unfinished"):
        if summary.get(key):
            print(f"note: {summary[key]}")
    print(f"table written to {Path(out_dir) / 'crossval.csv'}")
    return 0
