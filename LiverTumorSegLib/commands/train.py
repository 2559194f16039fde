"""``livertumorseg train``: train a liver/tumor model and write a model package.

    livertumorseg train --data DIR_OR_CSV [--format auto|lits|msd|ircadb|csv] --model ARCH -o MODEL.safetensors
                        [--folds K --fold I] [--epochs N] [--config train.yaml] [--resume] [...]

Every option of :class:`~LiverTumorSegLib.training.config.TrainConfig` is available as ``--option-name``
and in the YAML/JSON config file; command-line values override the file (``--augmentation``, ``--lesions``
and, for the file's architecture, ``--model-options`` key by key: the file's other keys stay). Dict/list options
(``--model-options``, ``--augmentation``, ``--lesions``, ``--label-map``, ``--class-weights``) take JSON,
e.g. ``--label-map '{"5": 1}'``. Multi-GPU / multi-node: launch with
``torchrun --nproc_per_node N -m LiverTumorSegLib train ...``.
"""
import argparse
import dataclasses
import logging
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..argtypes import number
from ..errors import InputError

log = logging.getLogger(__name__)

HELP = {
    "data": ("data folder (LiTS, MSD Task03_Liver or an nnU-Net v2 raw data set, 3D-IRCADb-01) or CSV with "
             "columns image,label[,patient][,case]"),
    "format": "data layout: auto, lits, msd, ircadb or csv",
    "label_map": "JSON remap of raw label values, e.g. '{\"5\": 1}' (unlisted values -> 0)",
    "model": ("architecture of the network to build (livertumorseg models lists them; default unet); a trained "
              "model package to start from goes to --init-from"),
    "model_options": ("JSON options for the architecture, e.g. '{\"channels\": [16, 32, 64, 128, 256]}' (merged "
                      "key by key into --config's while --model is the file's)"),
    "preprocessing": "preprocessing preset name, JSON file, or JSON dict (default: 'default')",
    "init_from": ("model package (file, or an installed model's name such as default) whose weights training "
                  "starts from (fine-tuning); --model, --model-options and --preprocessing default to its own"),
    "augmentation": ("JSON AugmentationConfig overrides, merged key by key into --config's; "
                     "'{\"enabled\": false}' turns augmentation off"),
    "lesions": "JSON LesionConfig overrides for synthetic lesions, merged key by key into --config's",
    "synthetic_lesions": "auto (on when the data has no tumor label), true or false",
    "loss": "ce, dice, dice_ce (default), focal or dice_focal",
    "lesion_loss_weight": ("add this times a per-lesion Dice of the tumor class to the loss (every tumor weighs "
                           "the same, whatever its size: the blob loss of Kofler et al. 2023; 0 = off)"),
    "lesion_loss_min_pixels": ("--lesion-loss-weight: leave tumor components of a patch slice with fewer than N "
                               "pixels (of the network's grid: 1.5 mm pixels unless --preprocessing sets another "
                               "spacing) out of the per-lesion term, as no lesion and as no false positive of the "
                               "slice's other ones; 0 scores every one"),
    "lesion_loss_average": ("--lesion-loss-weight: lesion, the mean of the batch's lesions' Dice; image, the mean "
                            "over each slice's lesions, then over the slices holding one (Kofler et al.'s)"),
    "class_weights": "JSON list of 3 cross-entropy/focal class weights (background, liver, tumor; default: all 1)",
    "deep_supervision_weights": ("JSON list of loss weights: the main output, then the auxiliary outputs finest "
                                 "first (default 1, 1/2, 1/4, ...; normalised to sum 1)"),
    "optimizer": "adam, adamw (default), sgd or adagrad",
    "lr": "learning rate (per optimizer step)",
    "weight_decay": "the optimizer's weight decay",
    "momentum": "SGD momentum (--optimizer sgd only; Nesterov when above 0)",
    "schedule": "cosine (default), step, plateau or none",
    "warmup": "linear learning-rate warm-up over this many steps (batches) from the start",
    "step_size": "--schedule step: multiply the learning rate by --gamma every this many epochs",
    "gamma": "--schedule step: the learning-rate factor applied every --step-size epochs",
    "plateau_patience": ("--schedule plateau: validations without a lower validation loss (epochs of training "
                         "loss when there are no validation cases) before the learning rate is cut"),
    "plateau_factor": "--schedule plateau: the learning-rate factor of each cut",
    "epochs": "number of epochs (of --iterations-per-epoch batches each)",
    "iterations_per_epoch": "batches per epoch (epochs are sampled, not passes over the data)",
    "batch_size": "patches per batch (per process under torchrun)",
    "patch_size": "square training crop in pixels of the preprocessed grid",
    "liver_slice_fraction": ("chance that a sample is drawn from the liver slices (the other draws are uniform "
                             "over all slices, liver ones included)"),
    "tumor_slice_fraction": "of the draws from liver slices, the share drawn from tumor slices (where a case has any)",
    "every_other_slice": ("sample every other slice as a centre (as Kulkarni et al. do; every other run of k slices "
                          "where the 2.5D neighbours are k slices apart, so every slice is still read)"),
    "val_fraction": "patient-level validation fraction when --folds is 0",
    "split_seed": ("seed of the patient split (validation hold-out and folds); default: --seed. Give the same "
                   "value to runs with different --seed that must hold out the same patients"),
    "folds": "k for k-fold cross-validation (0 = hold-out split)",
    "fold": "which fold to train (0-based)",
    "val_every": "validate every this many epochs (and after the last one)",
    "val_max_slices": "validate on at most this many evenly spaced slices per case (0 = all slices)",
    "seed": "random seed of the training (and of the patient split, unless --split-seed)",
    "device": "auto (CUDA when available), cpu, cuda, cuda:N, gpu (= cuda); mps (Apple GPUs) is for segment only",
    "amp": "auto (bf16 on a CUDA GPU with native bf16, fp16 on an older one, off on the CPU), bf16, fp16 or off",
    "channels_last": "channels-last memory layout (can be faster on GPUs with tensor cores)",
    "num_workers": "DataLoader worker processes (0 = in the main process)",
    "early_stopping_patience": ("stop after this many validations without improvement (0 = never); decided on the "
                                "validation cases, so their Dice is then marked optimistic"),
    "use_best_checkpoint": ("package the best validation epoch's weights instead of the last epoch's (default): "
                            "selected on the validation cases, so their Dice is marked optimistic"),
    "grad_clip": "clip the gradient norm to this value (0 = no clipping)",
    "output": "model package to write (.safetensors)",
    "log_dir": "folder for checkpoints, logs and cache (default: <output>_train/)",
    "cache_dir": "folder for the preprocessed slice cache (default: <log_dir>/cache/)",
    "resume": "continue from <log_dir>/checkpoints/last.pt",
    "overwrite": "replace an existing output / start over in a log dir holding a checkpoint",
    "allow_non_hu": "train on volumes that do not look like CT in Hounsfield units (MR, normalised data); NaN, "
                    "constant and broken volumes are refused all the same",
    "oblique_grid": ("how a CT turned more than 5 degrees against the patient's axes is trained and validated: "
                     "aligned, on the patient-aligned grid segment gives the network; stored, on its own oblique "
                     "slices, as before slice cache format 4 (default: aligned)"),
    "max_time_minutes": "stop gracefully after this many minutes and still write the package (0 = no limit)",
    "checkpoint_every_steps": ("also save <log_dir>/checkpoints/last.pt every this many steps (0 = at each epoch's "
                               "end only)"),
    "tensorboard": "TensorBoard logs in <log_dir>/tensorboard/",
    "name": "model name stored in the package, which segment --model NAME takes once it is installed (default: the "
            "output file's name without .safetensors)",
    "description": "free-text description stored in the package (default: none)",
}

METAVAR = {"lr": "LR", "weight_decay": "X", "momentum": "X", "gamma": "X", "plateau_factor": "X",
           "liver_slice_fraction": "P", "tumor_slice_fraction": "P", "val_fraction": "P", "grad_clip": "NORM",
           "patch_size": "PIXELS", "max_time_minutes": "MINUTES", "output": "OUTPUT", "log_dir": "DIR",
           "cache_dir": "DIR", "data": "DIR|CSV", "name": "TEXT", "description": "TEXT",
           "init_from": "PACKAGE", "lesion_loss_weight": "W"}
"""Option metavars; other whole-number options show N: argparse's default, the option's name in capitals
(``EARLY_STOPPING_PATIENCE``), made crossval's usage lines wider than 80 columns."""


def _with_default(help_text: str, value: Any) -> str:
    """``help_text`` with the option's default appended, unless the text says it already (``dice_ce (default)``:
    the help said it twice) or the default is the empty text of an option that has none (``--data``: it said
    ``(default '')``)."""
    if "default" in help_text or value == "":
        return help_text
    if isinstance(value, bool):
        return f"{help_text} (default: {'on' if value else 'off'})"
    return f"{help_text} (default {value!r})"


def _json_value(text: str) -> Any:
    from ..fileutil import json_loads_noting_repeats

    try:  # a key written twice in one object: json keeps the last without a word ('{"1":1,"1":2}')
        value, repeated = json_loads_noting_repeats(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected JSON, got {text!r}") from None
    if repeated:
        raise argparse.ArgumentTypeError(f"{text!r} gives the key {repeated[0]!r} twice; give each key once")
    return value


def _preprocessing_value(text: str) -> Any:
    return _json_value(text) if text.strip().startswith("{") else text


def add_config_options(parser: argparse.ArgumentParser, help_for: Optional[Dict[str, str]] = None) -> None:
    """One ``--option-name`` per TrainConfig field (default None = not given, so the config file wins).
    ``help_for``: field name -> help text replacing train's (``argparse.SUPPRESS`` hides the option)."""
    from ..training.config import LESION_AVERAGES, TrainConfig

    help_for = help_for or {}

    parser.add_argument("--config", dest="config_file", default=None,
                        help="training recipe: a YAML/JSON file of the options below (command-line options override "
                             "it); a model package to start from goes to --init-from")
    for f in dataclasses.fields(TrainConfig):
        if f.name not in TrainConfig.field_names():  # TrainConfig.given: bookkeeping, not an option
            continue
        flag = "--" + f.name.replace("_", "-")
        names = [flag]
        if f.name == "output":
            names = ["-o", flag]
        default = TrainConfig.__dataclass_fields__[f.name]
        value = default.default if default.default is not dataclasses.MISSING else default.default_factory()
        help_text = help_for.get(f.name, HELP.get(f.name, f.name.replace("_", " ")))
        if f.name == "progress_bar":
            add_progress_options(parser, dest=f.name)
        elif f.name == "preprocessing":
            parser.add_argument(*names, dest=f.name, type=_preprocessing_value, default=None, help=help_text)
        elif f.name == "split_seed":
            parser.add_argument(*names, dest=f.name, type=number(int), default=None, metavar="SEED", help=help_text)
        elif isinstance(value, bool):
            shown = help_text if f.name in help_for else _with_default(help_text, value)
            parser.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                help=shown)
        elif isinstance(value, (dict, list)) or value is None:
            parser.add_argument(*names, dest=f.name, type=_json_value, default=None, metavar="JSON",
                                help=help_text)
        elif f.name == "synthetic_lesions":
            parser.add_argument(*names, dest=f.name, default=None, choices=["auto", "true", "false"],
                                help=help_text)
        elif f.name == "oblique_grid":
            parser.add_argument(*names, dest=f.name, default=None, choices=["aligned", "stored"], help=help_text)
        elif f.name == "lesion_loss_average":
            parser.add_argument(*names, dest=f.name, default=None, choices=list(LESION_AVERAGES),
                                help=help_text if f.name in help_for else _with_default(help_text, value))
        else:
            shown = help_text if f.name in help_for else _with_default(help_text, value)
            metavar = METAVAR.get(f.name, "N" if type(value) is int else None)
            kind = number(type(value)) if type(value) in (int, float) else type(value)
            parser.add_argument(*names, dest=f.name, type=kind, default=None, metavar=metavar, help=shown)


def add_progress_options(parser: argparse.ArgumentParser, dest: str = "progress_bar") -> None:
    """``--no-progress`` (the spelling of every command), the older ``--no-progress-bar`` and
    ``--progress-bar``; all set ``dest`` (None when not given, so a config file can decide)."""
    parser.add_argument("--no-progress", "--no-progress-bar", dest=dest, action="store_false", default=None,
                        help="no progress bar (--no-progress-bar is the same)")
    parser.add_argument("--progress-bar", dest=dest, action="store_true", default=None,
                        help="show the progress bar (the default)")


MERGED_OPTIONS = ("augmentation", "lesions", "model_options")
"""Dict options that the command line merges key by key into the ``--config`` file's (the command line's keys
win; ``model_options`` only while the architecture stays the file's). Other options, ``label_map`` included,
replace the file's value whole."""


def merge_options(file_values: Dict[str, Any], cli: Dict[str, Any]) -> Dict[str, Any]:
    """``--config`` values updated by command-line values; see :data:`MERGED_OPTIONS`.

    ``train --config v2.yaml --augmentation '{"liver_field_probability": 0.5}'`` keeps every other augmentation
    setting of the file: replacing the whole dict dropped them for the library defaults without a word."""
    from ..training.config import TrainConfig

    values = dict(file_values)
    default_model = next(f.default for f in dataclasses.fields(TrainConfig) if f.name == "model")
    file_model = values.get("model", default_model)
    same_model = cli.get("model", file_model) == file_model
    file_options = [key for key in values if str(key).replace("-", "_") == "model_options" and values[key]]
    if not same_model and file_options and "model_options" not in cli:
        # the file's options are its architecture's: given to another, they were refused as options the user never
        # typed ('--config default_model_v3.yaml --model attention_unet': unknown strides) or, where the names
        # happened to exist, trained that network with the other one's channels without a word
        log.warning("warning: the config file's model_options are for its model %s, not for --model %s, which "
                    "gets its own defaults; pass --model-options to set them.", file_model, cli["model"])
        for key in file_options:
            values.pop(key)
    for key, value in cli.items():
        base = values.get(key)
        mergeable = key in MERGED_OPTIONS and (key != "model_options" or same_model)
        values[key] = {**base, **value} if mergeable and isinstance(base, dict) and isinstance(value, dict) else value
    return values


def with_start_package_settings(values: Dict[str, Any]) -> Dict[str, Any]:
    """``values`` (the ``--config`` file's and the command line's) with, when ``init_from`` names a package, its
    architecture, options and preprocessing where they are not given (options only while the architecture is the
    package's): a fine-tuning run needs the package's own network and input, which the user should not have to
    copy out of its metadata. Given and different, the trainer refuses them (``init_from.load_start_package``)."""
    from ..training.init_from import check_start_given, package_settings

    for key in ("init_from", "init-from"):
        if key in values:
            check_start_given(values[key], "--init-from (or init_from in the config file)")
    start = values.get("init_from") or values.get("init-from")
    if not start:
        return values

    check_start_is_a_package(str(start))
    settings = package_settings(str(start))
    given = {str(key).replace("-", "_") for key in values}
    filled = dict(values)
    if "model" not in given:
        filled["model"] = settings["model"]
    if "model_options" not in given and filled.get("model") == settings["model"]:
        filled["model_options"] = settings["model_options"]
    if "preprocessing" not in given:
        filled["preprocessing"] = settings["preprocessing"]
    return filled


def _readable_package(text: str) -> Optional[Dict[str, Any]]:
    """The header settings (:func:`~..training.init_from.package_settings`: model, model_options, preprocessing) of
    the model package ``text`` names (a path, or an installed model's name such as default); None when it names
    none that can be read. Reads the header alone (no torch)."""
    from ..errors import LiverTumorSegError
    from ..training.init_from import package_settings

    try:
        return package_settings(text)
    except (LiverTumorSegError, OSError, ValueError, KeyError, TypeError):
        return None


def check_model_is_an_architecture(model: Any, command: str = "train", config_file: Any = None) -> None:
    """Refuse a model *package* given where ``train`` (``command``: or ``crossval``) takes an architecture name:
    ``--model default`` or ``--model Resources/Models/default.safetensors`` (``segment``'s meaning of --model) got
    "Unknown model architecture", which did not say that a package to start from goes to --init-from.
    ``config_file``: the file the value came from (None: the command line). An unknown name that is no package
    keeps that message."""
    from ..models import available_models
    from ..package import looks_like_path

    text = str(model)
    if text in available_models():
        return
    option = "model" if config_file is not None else "--model"
    given = f"model: {text} in '{config_file}'" if config_file is not None else f"--model {text}"
    meaning = (f"{given}: in {command}, {option} is the architecture of the network to build "
               f"({', '.join(available_models())})")
    settings = _readable_package(text) if text.strip() else None
    if settings is not None:
        arch = settings["model"]
        new = f"set model: {arch} in the file" if config_file is not None else f"give --model {arch}"
        raise InputError(f"{meaning}, and '{text}' is a trained model package (architecture {arch}). To start "
                         f"training from its weights (fine-tuning), give --init-from {text} instead (it takes the "
                         f"package's architecture); to train a new {arch} from random weights, {new}.")
    if looks_like_path(text):
        raise InputError(f"{meaning}, and '{text}' is a file path. A model package (.safetensors) to start from "
                         f"goes to --init-from; an interrupted run is continued with --resume.")


def check_config_is_a_recipe(config_file: Any, command: str = "train") -> None:
    """Refuse a model package or weights file given to ``--config``, which in ``train`` and ``crossval``
    (``command``) is a training recipe (YAML/JSON): ``--config default.safetensors`` got "Training config ... is not
    UTF-8 text; save it as UTF-8", and ``--config default`` (an installed model's name) "does not exist"."""
    from ..package import PACKAGE_SUFFIX, PATH_SUFFIXES

    text = str(config_file)
    meaning = f"--config {text}: in {command}, --config is a training recipe (a YAML or JSON file of training options)"
    suffix = Path(text).suffix.lower()
    if suffix == PACKAGE_SUFFIX:
        raise InputError(f"{meaning}, and '{text}' is a model package. To start training from its weights "
                         f"(fine-tuning), give --init-from {text} instead.")
    if suffix in PATH_SUFFIXES:
        raise InputError(f"{meaning}, and '{text}' is a weights or checkpoint file. A model package (.safetensors) "
                         f"to start from goes to --init-from; an interrupted run is continued with --resume (from its "
                         f"--log-dir).")
    if not Path(text).exists() and "/" not in text and "\\" not in text and _readable_package(text) is not None:
        raise InputError(f"{meaning}; there is no file '{text}', but an installed model package has that name. To "
                         f"start training from its weights (fine-tuning), give --init-from {text} instead.")


def check_start_is_a_package(start: str) -> None:
    """Refuse an architecture name given to ``--init-from`` (a package to start from): ``--init-from unet`` got
    "No installed model named 'unet'", which did not say that an architecture goes to --model. A name that is
    also an installed package's, or a file, is taken as the package."""
    from ..models import available_models

    if start not in available_models() or Path(start).exists() or _readable_package(start) is not None:
        return
    from ..package import list_installed_models

    same = sorted({e["name"] for e in list_installed_models(warn=False)
                   if e["error"] is None and e["architecture"] == start})
    installed = (f"installed packages of that architecture, to start from: {', '.join(same)}" if same
                 else f"no installed package is a {start}")
    raise InputError(f"--init-from {start}: --init-from is a trained model package to start from (a .safetensors "
                     f"file or an installed model's name), and '{start}' is an architecture. To train a {start} from "
                     f"random weights, give --model {start} instead ({installed}).")


def config_from_args(args: argparse.Namespace):
    """TrainConfig = defaults < ``--config`` file < command-line options (:func:`merge_options`). ``crossval``
    (``args.command``) has its folds and no ``val_fraction`` (:func:`crossval_values`): it says an ignored
    --val-fraction its own way."""
    from ..training.config import TrainConfig, load_config_file

    command = getattr(args, "command", None) or "train"
    if getattr(args, "config_file", None):
        check_config_is_a_recipe(args.config_file, command)
    file_values = load_config_file(args.config_file) if getattr(args, "config_file", None) else {}
    cli = {f: getattr(args, f) for f in TrainConfig.field_names() if getattr(args, f, None) is not None}
    _refuse_unexpanded_home_folders(cli, command)
    merged = merge_options(file_values, cli)
    if merged.get("model") is not None:
        check_model_is_an_architecture(merged["model"], command, None if "model" in cli else args.config_file)
    values = with_start_package_settings(merged)
    if command == "crossval":  # its folds decide validation: checked as folds, not as train's hold-out split
        values = crossval_values(values)
    try:
        config = TrainConfig.from_dict(values, source=args.config_file or "command line")
    except InputError as exc:  # a typed option is named as typed: 'Option batch_size must ...' read as a file key
        raise InputError(_as_typed(str(exc), cli)) from None
    if config.folds and "val_fraction" in values:  # the fold decides validation
        where = "--val-fraction" if "val_fraction" in cli else f"val_fraction in '{args.config_file}'"
        log.warning("warning: %s is not used with folds %d: fold %d holds out its own share (1/%d) of the patients.",
                    where, int(config.folds), int(config.fold), int(config.folds))
    if not config.data:
        raise InputError("No training data given: pass --data (folder or CSV) or set 'data' in the config file.")
    _refuse_data_beside_the_config_only(config.data, "data" in cli, getattr(args, "config_file", None))
    for text in unused_typed_options(config, cli):
        log.warning("warning: %s", text)
    if command == "train":
        text = recipe_name_notice(file_values, cli, args.config_file)
        if text:
            log.warning("warning: %s", text)
    return config


def _refuse_unexpanded_home_folders(cli: Dict[str, Any], command: str) -> None:
    """Refuse the typed folders a run creates (``--log-dir``, ``--cache-dir``; ``crossval -o``) that begin with a '~'
    the shell left as it was (``--log-dir=~/tl`` made ./~/tl); a recipe's are taken as the home folder
    (:func:`~..training.config.load_config_file`), having no shell."""
    from ..fileutil import refuse_unexpanded_home

    folders = ("log_dir", "cache_dir") + (("output",) if command == "crossval" else ())
    for name in folders:
        if cli.get(name):
            refuse_unexpanded_home(cli[name], "-o" if name == "output" else "--" + name.replace("_", "-"))


CROSSVAL_FOLDS = 4
"""The folds ``crossval`` makes when neither ``--folds`` nor the config file asks for 2 or more."""


def crossval_values(values: Dict[str, Any]) -> Dict[str, Any]:
    """``crossval``'s training values: ``val_fraction`` and ``fold`` (train's hold-out share and single fold, which
    crossval ignores with a warning) left out and ``folds`` :data:`CROSSVAL_FOLDS` where it is absent or 0, before
    the options are checked. They were checked as a hold-out run first: '--val-fraction 0
    --early-stopping-patience 5', or a recipe with 'val_fraction: 0' and 'use_best_checkpoint: true' (an all-data
    train run's), was refused because no validation cases would be left, right after the warning that
    --val-fraction is ignored; a recipe's 'fold: 2' was refused as 'fold 2 needs folds K' (the training audit)."""
    values = {key: value for key, value in values.items() if key not in ("val_fraction", "fold")}
    if not values.get("folds"):
        values["folds"] = CROSSVAL_FOLDS
    return values


def recipe_name_notice(file_values: Dict[str, Any], typed: Dict[str, Any], config_file: Optional[str]) -> str:
    """The warning when the package takes the name ``default`` from the config file (the bundled models' recipes in
    ``scripts/`` set it, with the bundled model's description): such a package is what ``--model default`` never
    loads (that name means the bundled default), and it was written with no word at run time, so that a researcher
    training on a copy of a recipe had a second package called 'default' describing the bundled model. The
    bundled model's own rebuild (scripts/train_default_model.sh) still gets the recipe's name and description; only
    the run says so. "" when ``--name`` is given or the file names the package otherwise."""
    if "name" in typed or str(file_values.get("name") or "") != "default":
        return ""
    described = bool(file_values.get("description")) and "description" not in typed
    carries = " and its description" if described else ""
    flags = "--name and --description" if described else "--name"
    return (f"the package will be called 'default'{carries}, from name in '{config_file}' (the bundled models' "
            f"recipes set the bundled model's): '--model default' loads the bundled default, not this package. Give "
            f"{flags} to name your own model (the bundled model's rebuild keeps the recipe's).")


def _refuse_data_beside_the_config_only(data: str, typed: bool, config_file: Optional[str]) -> None:
    """A config file's relative ``data`` is read from the working folder (docs/cli.md); where it exists only beside
    the config file, say so (it was 'Training data 'ok.csv' does not exist', naming neither the file nor the rule)."""
    if typed or not config_file or Path(data).is_absolute() or Path(data).exists():
        return
    beside = Path(config_file).parent / data
    if beside.exists():
        raise InputError(f"Training data '{data}' (data in '{config_file}') does not exist in the working folder; a "
                         f"config file's relative paths are read from the working folder, not from the file's "
                         f"folder, where '{beside}' exists. Run from that folder, write its path in the file, or pass "
                         f"--data.")


UNUSED_UNLESS = {"momentum": ("optimizer", ("sgd",)), "step_size": ("schedule", ("step",)),
                 "gamma": ("schedule", ("step",)), "plateau_patience": ("schedule", ("plateau",)),
                 "plateau_factor": ("schedule", ("plateau",))}
"""Options that only one optimizer or schedule reads: ``option -> (the choosing option, the choices that read it)``."""


def unused_typed_options(config: Any, typed: Dict[str, Any]) -> List[str]:
    """Warnings for options typed on the command line (``typed``) that the run does not read: --momentum with adamw,
    --step-size under cosine (:data:`UNUSED_UNLESS`), --tumor-slice-fraction with --liver-slice-fraction 0,
    --lesions with --synthetic-lesions false, --val-every, --val-max-slices or --split-seed with no validation
    cases, and --schedule step with no more epochs than --step-size (it never cut the rate) were ignored without a
    word (the package records them as given). (A config file's keys are not named: the recipes list every option.)
    ``crossval``'s config always has folds (:func:`crossval_values`): it validates each fold."""
    said = []
    for name, (chooser, readers) in UNUSED_UNLESS.items():
        if name in typed and getattr(config, chooser) not in readers:
            said.append(f"--{name.replace('_', '-')} is read only by {chooser} {' or '.join(readers)}; with "
                        f"{chooser} {getattr(config, chooser)} it is ignored.")
    if "tumor_slice_fraction" in typed and float(config.liver_slice_fraction) == 0.0:
        said.append("--tumor-slice-fraction is the share of the draws from liver slices, and liver_slice_fraction 0 "
                    "makes none; it is ignored.")
    if "lesions" in typed and str(config.synthetic_lesions).lower() == "false":
        said.append("--lesions sets the synthetic lesions, which synthetic_lesions false turns off; it is ignored.")
    if config.schedule == "step" and int(config.step_size) >= int(config.epochs) and \
            any(name in typed for name in ("schedule", "step_size", "gamma")):
        said.append(f"schedule step cuts the learning rate after every {config.step_size} epochs (step_size), and "
                    f"this run has {config.epochs}: it trains at lr {config.lr:g} throughout, and gamma is never "
                    f"applied. Give a step_size below epochs.")
    if not config.folds and float(config.val_fraction) == 0.0:
        unread = [f"--{name.replace('_', '-')}" for name in ("val_every", "val_max_slices", "split_seed")
                  if name in typed]
        if unread:
            said.append(f"{', '.join(unread)} {'is' if len(unread) == 1 else 'are'} ignored: val_fraction 0 (and no "
                        f"folds) holds out no validation cases.")
    return said


def _as_typed(message: str, typed: Dict[str, Any]) -> str:
    """``message`` with each setting given on the command line (``typed``: field name -> value) spelt as its option
    (``Option batch_size must`` -> ``Option --batch-size must``): a name with an underscore wherever it stands (no
    English word has one), a one-word name ('model', 'data', 'lr') only as the subject ("Option NAME", "NAME
    must"), so such words elsewhere in a message are left alone. A config file's settings keep their key, and so does
    the whole unknown-option refusal, which is about a config file's keys (its list of every option read '...,
    --batch-size, ..., lr, ...': the typed ones spelt as options among the others as keys)."""
    from ..training.config import VALID_OPTIONS_LEAD

    if VALID_OPTIONS_LEAD in message:
        return message
    for name in sorted(typed, key=len, reverse=True):  # val_max_slices before a shorter name inside it
        key = re.escape(name)
        if "_" in name:
            pattern = r"(?<![\w-])" + key + r"(?![\w-])"
        else:
            pattern = r"(?<=Option )" + key + r"(?![\w-])|(?<![\w-])" + key + r"(?= must\b)"
        message = re.sub(pattern, "--" + name.replace("_", "-"), message)
    return message


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in ["livertumorseg"] + sys.argv[1:])


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train a liver/tumor segmentation model (writes a model package)",
                              description=__doc__.split("\n\n")[0].replace("``", "")
                              + " Launch with torchrun for multi-GPU.")
    add_config_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..training.trainer import train

    config = config_from_args(args)
    if not config.output:
        raise InputError("No output given: pass -o MODEL.safetensors or set 'output' in the config file.")
    result = train(config, command=command_line())
    if result.package_path is not None:
        print(f"done: {result.epochs_completed} epochs, {result.global_step} steps ({result.stop_reason}); "
              f"{validation_summary(result.validation)}; package {result.package_path}")
    return 0


def validation_summary(validation: Any) -> str:
    """The validation numbers the run ends with: whole-volume Dice on the CT grid (as ``evaluate`` and ``crossval``
    compute them) when the run measured them, else the slice-level Dice on the network grid, said so. The
    slice-level number was printed alone before (0.152 where evaluate gave the same model 0.164)."""
    v = validation or {}
    if not v:  # --val-fraction 0 (e.g. the final model on all patients): 'liver Dice n/a' read as a failed validation
        return "no validation (no validation cases)"
    whole = v.get("whole_volume") or {}
    if whole.get("liver_dice") is not None:
        cases = [c for c in whole.get("cases") or [] if isinstance(c, dict) and "reference_has_tumor" in c]
        note = (" (no validation case has a reference tumor: tumor Dice only says whether tumor was predicted, "
                "1.000 none, 0.000 some)"
                if cases and not any(c["reference_has_tumor"] for c in cases) else "")
        raw = whole.get("raw_network") or {}
        before = (f"; before segment's post-processing liver Dice {_fmt(raw.get('liver_dice'))}, tumor Dice "
                  f"{_fmt(raw.get('tumor_dice'))}" if raw else "")
        return (f"validation (whole volumes, CT grid) liver Dice {_fmt(whole.get('liver_dice'))}, tumor Dice "
                f"{_fmt(whole.get('tumor_dice'))}{note}{before}{_optimistic(v)}{_not_held_out(v)}")
    return (f"validation (slices on the network grid) liver Dice {_fmt(v.get('liver_dice'))}, tumor Dice "
            f"{_fmt(v.get('tumor_dice'))}{_optimistic(v)}{_not_held_out(v)}")


def _not_held_out(validation: Dict[str, Any]) -> str:
    """`` - not held out: ...`` when the package the run started from (--init-from) was trained on validation
    patients (``validation.init_trained_on_validation_patients``), else ""."""
    seen = validation.get("init_trained_on_validation_patients")
    if not seen:
        return ""
    return (f" - not held out: the --init-from package was trained on validation patient(s) "
            f"{', '.join(str(p) for p in seen)}")


def _optimistic(validation: Dict[str, Any]) -> str:
    """`` - selected on these validation cases (optimistic)`` when the run decided something on its validation
    cases (``validation.optimistic``: the best epoch's weights, early stopping, the plateau schedule), else ""."""
    from ..training.callbacks import OPTIMISTIC_NOTE

    return f" - {OPTIMISTIC_NOTE}" if validation.get("optimistic") else ""


def _fmt(value: Any) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if value != value else f"{value:.3f}"
