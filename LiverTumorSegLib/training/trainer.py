"""The training loop: plain PyTorch, DDP through ``torchrun``, resumable, ending with a model package.

``train(config)`` does, in order: discover cases -> patient-level split -> slice cache -> model, loss,
optimiser, schedule -> epochs of ``iterations_per_epoch`` sampled batches (AMP bf16 on CUDA) with
validation on whole cached validation slices after each epoch -> the last epoch's weights (the best validation
epoch's with ``use_best_checkpoint``) -> model package (``save_model_package``) with data summary, config,
command and validation metrics, and which weights it holds and what was decided on the validation cases
(:func:`validation_selection`).

Files in ``log_dir`` (default: ``<output without .safetensors>_train/``): ``checkpoints/last.pt`` (after
every epoch, on Ctrl-C and every ``checkpoint_every_steps``), ``checkpoints/best.pt`` (the best validation
epoch's weights, for reference; packaged only with ``use_best_checkpoint``), ``log.csv``,
``tensorboard/``, ``curves.png``, ``cache/``. Rerunning the same command with ``--resume`` continues from
``last.pt`` at the exact step it holds (batches are a pure function of seed and step).
"""
import contextlib
import functools
import hashlib
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..errors import InputError, OutputExistsError
from ..inference.body_size import PACKAGE_KEY as BODY_SIZE_KEY
from ..inference.postprocess import DEFAULT_MIN_LESION_PROBABILITY
from ..fileutil import check_can_write
from ..progress import logging_beside_bar
from .callbacks import BestTracker, EarlyStopping, validation_score, validation_selection
from .checkpoint import decode_json, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfig
from .datasets import check_dataset_labels, discover_cases, refuse_identical_images, refuse_identical_voxels
from .distributed import DistInfo, barrier, broadcast_floats, cleanup, init_distributed, all_reduce_mean
from .logs import CsvLog, TensorBoardLog, plot_curves, read_log, remove_tensorboard_events
from .labels import IGNORE_LABEL, organ
from .init_from import check_same_start, load_start_package, overlap_text, patients_seen, start_record
from .interrupts import (WorkerSetup, call_with_interrupts_held, interrupts_deferred,
                         is_worker_stopped_by_signal, stop_loader_workers)
from .losses import DeepSupervisionLoss, SegmentationLoss
from .optim import (SCHEDULES_OVER_TOTAL, build_optimizer, build_scheduler, current_lr, load_scheduler_state,
                    schedule_factor, schedule_total_steps, scheduler_state)
from .sampling import EpochSampler, PatchDataset, full_slice_inputs
from .shared_memory import batches_of, worker_context
from .slice_cache import (CachedCase, build_slice_cache, changed_files, data_fingerprint, holds_finished_entries,
                          resampling_fill_cases, aligned_grid_cases)
from .splits import select_split
from ..package import SEGMENTATION_CLASSES, package_lesion_probability_statistic, package_min_lesion_probability
from ..resources import expand_home

NUM_CLASSES = SEGMENTATION_CLASSES  # the package's classes: background, liver, tumor
LABEL_NAMES = {"0": "background", "1": "liver", "2": "tumor"}


RESUME_MAY_CHANGE = frozenset({
    "epochs", "device", "amp", "channels_last", "num_workers", "output", "log_dir", "cache_dir", "resume",
    "overwrite", "allow_non_hu", "max_time_minutes", "checkpoint_every_steps", "progress_bar", "tensorboard",
    "name", "description", "val_every", "val_max_slices", "early_stopping_patience"})
"""TrainConfig fields a resumed run may set differently from the interrupted one: where and how it runs, how
long (``epochs`` only under a schedule that does not depend on the run's total steps: :func:`check_resume_schedule`),
and how it reports. Every other field (data, split, seeds, model, loss, optimiser, schedule, sampling,
augmentation) defines the experiment: a checkpoint trained under other values is refused on resume."""


VALIDATION_SAMPLE_FIELDS = frozenset({"val_every", "val_max_slices"})
"""Fields of :data:`RESUME_MAY_CHANGE` that a resume may not change where the validation score decides something
(:func:`validation_decides`): the best epoch, early stopping's count and the plateau schedule compare scores taken on
other slices or at other steps. A resume with another --val-max-slices counted an unchanged model's score on fewer
slices as an improvement, trained on past the early stop and packaged another epoch (the training audit)."""


def _folds(config: Dict[str, Any]) -> int:
    """A TrainConfig dict's ``folds`` (0 for a hold-out split or an unreadable value)."""
    try:
        return int(config.get("folds") or 0)
    except (TypeError, ValueError):
        return 0


def validation_decides(config: Dict[str, Any]) -> bool:
    """Whether the run of ``config`` (a TrainConfig dict) lets its validation score choose: the packaged epoch
    (``use_best_checkpoint``), when to stop (``early_stopping_patience``) or the learning rate (``plateau``)."""
    try:
        patience = int(config.get("early_stopping_patience") or 0)
    except (TypeError, ValueError):
        patience = 0
    return bool(config.get("use_best_checkpoint")) or patience > 0 or config.get("schedule") == "plateau"


def _comparable(value: Any) -> Any:
    """A config value as compared on resume: mappings with their keys as text (a YAML ``label_map: {5: 1}`` is
    stored as ``{"5": 1}`` in the checkpoint's JSON)."""
    if isinstance(value, dict):
        return {str(k): _comparable(v) for k, v in value.items()}
    return value


def _same_data(saved: Any, now: Any, saved_resolved: Any = None) -> bool:
    """The same training data: the same text as given (run from the same folder), the same path resolved from
    here (an absolute path, or a relative one that still points there), or ``now`` resolving to the path the
    earlier run resolved its text to (``saved_resolved``, :func:`resolved_data_path`; a relative path given from
    another folder)."""
    if saved == now or not saved or not now:
        return saved == now
    here = expand_home(str(now)).resolve()
    if saved_resolved and here == Path(str(saved_resolved)):
        return True
    return expand_home(str(saved)).resolve() == here


def check_resume_contents(payload: Dict[str, Any], split: Dict[str, List[str]], preprocessing: Dict[str, Any],
                          source: Path, fingerprint: Optional[Dict[str, Dict[str, Any]]] = None) -> None:
    """Raise InputError when the checkpoint ``payload`` was trained on another split of the cases, with other
    preprocessing than this run resolves now, or on other case files (``fingerprint``,
    :func:`~.slice_cache.data_fingerprint`): the options' text can stay the same while the files they name
    change (an edited patient column moved cases into validation that had been trained on; an edited
    preprocessing file made the package record a window 4 of its 6 steps never saw; a label replaced while the
    run was stopped was trained on for the rest of it, and the package listed only the new file; a CT replaced
    by another of the same size went unseen while images were compared by size). Older checkpoints, which
    record none of these, are not checked."""
    saved_split = payload.get("split")
    if isinstance(saved_split, dict) and saved_split != split:
        moved = sorted(set(saved_split.get("train", [])) & set(split.get("validation", [])))
        detail = f" (now validated, trained on before: {', '.join(moved[:6])})" if moved else ""
        raise InputError(f"Checkpoint '{source}' was trained on another split of the cases{detail}: the data list "
                         f"or its patient column changed since. Resume with the data of the interrupted run, or "
                         f"pass --overwrite (without --resume) to start over.")
    saved_preprocessing = payload.get("preprocessing_resolved")
    if saved_preprocessing and json.loads(saved_preprocessing) != json.loads(json.dumps(preprocessing, sort_keys=True)):
        raise InputError(f"Checkpoint '{source}' was trained with other preprocessing (the preprocessing file or "
                         f"preset changed since; or a partial --preprocessing of a run started before 0.6.19, "
                         f"whose keys not given are now the default preset's: give its context_min_mm and "
                         f"context_max_mm as null). Resume with the interrupted run's preprocessing, or pass "
                         f"--overwrite (without --resume) to start over.")
    saved_fingerprint = payload.get("data_fingerprint")
    if isinstance(saved_fingerprint, dict) and fingerprint is not None:
        changed = []
        for case, entry in sorted(fingerprint.items()):
            files = changed_files(saved_fingerprint.get(case), entry)
            if files:
                changed.append(f"{case} ({' and '.join(files)})")
        if changed:
            raise InputError(f"Checkpoint '{source}' was trained on other files for case(s) {', '.join(changed[:6])}"
                             f"{' ...' if len(changed) > 6 else ''}: the contents of the named image or label "
                             f"changed since. Resume with the interrupted run's data, or pass --overwrite (without "
                             f"--resume) to start over on the new files.")


def resolved_data_path(data: Any) -> Optional[str]:
    """The absolute path ``data`` (the training config's text) points to from this folder, stored beside the
    config so that a resume from another folder can tell the same data from other data."""
    return str(expand_home(str(data)).resolve()) if data else None


def differing_settings(saved_config: Any, config: TrainConfig, source: Path, saved_data_path: Any = None) -> str:
    """The fields outside :data:`RESUME_MAY_CHANGE` in which the stored configuration of an earlier run
    (``saved_config``: JSON text or a dict, from a checkpoint or a package's ``training.config``) differs from
    ``config``, as text (``"lr 0.003 (now 0.001); ..."``, at most 6 named), or "" when none does or nothing usable
    is stored (older versions are not checked). ``saved_data_path``: where the earlier run's data text pointed
    (:func:`resolved_data_path`; None in older checkpoints and packages)."""
    try:
        stored = json.loads(saved_config) if isinstance(saved_config, str) else saved_config
        if not stored or not isinstance(stored, dict):
            return ""
        saved = TrainConfig.from_dict(dict(stored), source=str(source)).to_dict()
    except (InputError, ValueError, TypeError):
        return ""
    if "oblique_grid" not in stored:  # written before the option: its oblique CTs were trained as stored
        # whether or not oblique_grid was given: a resume settles an ungiven one to "stored" first
        # (Trainer._resumed_oblique_grid, crossval.resumed_oblique_grid). Compared with the ungiven "aligned", a
        # crossval --resume took such a fold package, left by the run an interrupted --overwrite run was replacing,
        # as a fold of this aligned run: one table of two grids
        saved["oblique_grid"] = "stored"
    now = config.to_dict()
    may_change = RESUME_MAY_CHANGE - (VALIDATION_SAMPLE_FIELDS if validation_decides(saved) or validation_decides(now)
                                      else frozenset())
    if _folds(saved) > 0 and _folds(now) > 0:  # a fold's patients decide validation: val_fraction is never read
        # (crossval now leaves it out, where 0.6.20 kept a given one: such a crossval --resume was refused)
        may_change = may_change | {"val_fraction"}
    differing = [name for name in sorted(now) if name not in may_change and (
        not _same_data(saved.get(name), now.get(name), saved_data_path) if name == "data"
        else not _same_data(saved.get(name), now.get(name)) if name == "init_from"  # its weights: check_same_start
        # a preprocessing file given as ./pre.json, then by its full path, is one file (its content is compared
        # by check_resume_contents); a preset name compares as text
        else not _same_data(saved.get(name), now.get(name)) if name == "preprocessing"
        and isinstance(saved.get(name), str) and isinstance(now.get(name), str)
        else _comparable(saved.get(name)) != _comparable(now.get(name)))]
    listed = "; ".join(f"{name} {saved.get(name)!r} (now {now.get(name)!r})" for name in differing[:6])
    return listed + (f" and {len(differing) - 6} more" if len(differing) > 6 else "")


def _refuse_unreadable_package(output: Path, log_dir: Path, epochs_done: int) -> None:
    """Raise OutputExistsError when the package ``output`` that a finished run (``epochs_done`` epochs, checkpoints
    in ``log_dir``) wrote cannot be read (damaged, cut short). Such a run was refused as "already finished ... wrote
    the package; nothing to resume", with advice to train longer, and ``crossval --resume`` met the same for a fold
    whose package it had found unreadable and meant to write again."""
    from ..package import ModelPackageError, read_package_metadata

    try:
        read_package_metadata(output)
    except ModelPackageError:
        raise OutputExistsError(f"The run in '{log_dir}' finished its {epochs_done} epochs, but '{output}' cannot be "
                                f"read as a model package (damaged, cut short, or another kind of file). If it is "
                                f"that run's package, delete it and run again with --resume: the package is written "
                                f"anew from the run's checkpoint; else give another -o.") from None


def check_resume_config(saved_config: Any, config: TrainConfig, source: Path, what: str = "Checkpoint",
                        saved_data_path: Any = None) -> None:
    """Raise InputError when the stored configuration of an earlier run (``saved_config``: JSON text or a dict,
    from a checkpoint or a package's ``training.config``) differs from ``config`` in a field outside
    :data:`RESUME_MAY_CHANGE` (:func:`differing_settings`): resuming fold 2 from fold 0's checkpoint would have
    trained on fold 2's validation patients, and the package would record settings that were not the ones trained
    with."""
    listed = differing_settings(saved_config, config, source, saved_data_path)
    if listed:
        raise InputError(f"{what} '{source}' is from a run with other settings: {listed}. Resume with "
                         f"the interrupted run's settings, or pass --overwrite (without --resume) to start over.")


def _saved_epochs(payload: Dict[str, Any]) -> Optional[int]:
    """The ``epochs`` of the run that wrote the checkpoint ``payload`` (its stored config), or None."""
    try:
        stored = decode_json(payload, "config")
        return int(stored["epochs"]) if isinstance(stored, dict) and "epochs" in stored else None
    except (ValueError, TypeError, KeyError):
        return None


def check_resume_schedule(payload: Dict[str, Any], config: TrainConfig, source: Path) -> None:
    """Raise InputError when ``config`` would resume the checkpoint ``payload`` under a schedule laid over the
    run's total steps (cosine: :data:`~.optim.SCHEDULES_OVER_TOTAL`) with another total, i.e. another
    ``--epochs``: the schedule was rebuilt over the new total, so the learning rate jumped at the resume
    (unet16_widezoom_cpu's run: 6 epochs of a cosine over one length, the rest over another) and the package
    recorded a schedule that never ran. The checkpoint's ``schedule_total_steps`` holds the total it was trained
    under (older checkpoints: their config's epochs x iterations per epoch)."""
    if config.schedule not in SCHEDULES_OVER_TOTAL:
        return
    steps_per_epoch = int(config.iterations_per_epoch)
    total_now = schedule_total_steps(config.schedule, config.epochs, steps_per_epoch)
    saved_total = payload.get("schedule_total_steps")
    epochs_before = _saved_epochs(payload)
    if saved_total is None and epochs_before is not None:
        saved_total = schedule_total_steps(config.schedule, epochs_before, steps_per_epoch)
    if saved_total is None or int(saved_total) == total_now:
        return
    step = int(payload.get("global_step", 0))
    rates = [float(config.lr) * schedule_factor(config.schedule, total, step, config.warmup, steps_per_epoch,
                                                config.step_size, config.gamma) for total in (saved_total, total_now)]
    before = f"{epochs_before} epochs, " if epochs_before is not None else ""
    raise InputError(f"Checkpoint '{source}' was trained under the {config.schedule} schedule laid over {before}"
                     f"{int(saved_total)} steps; --epochs {config.epochs} would lay it over {total_now}, and the "
                     f"learning rate would jump from {rates[0]:.3g} to {rates[1]:.3g} at step {step} (the package "
                     f"would record a schedule that never ran). Resume with --epochs {epochs_before or '(as before)'}; "
                     f"to train longer, start over with --overwrite and the new --epochs. The step, plateau and none "
                     f"schedules do not depend on the total: runs under them may resume with another --epochs.")


def check_resume_epochs(epochs_done: int, step_in_epoch: int, epochs: int, source: Path) -> None:
    """Raise InputError when a checkpoint saved ``step_in_epoch`` steps into epoch ``epochs_done + 1`` is resumed
    with ``epochs`` (--epochs) that ends before that epoch: its weights hold those steps, and the package recorded
    'all 2 epochs were trained (7 steps)' of 3-step epochs, and a time limit that was never set as the reason for
    the extra step (the training audit)."""
    if step_in_epoch <= 0 or epochs > epochs_done:
        return
    raise InputError(f"Checkpoint '{source}' was saved {step_in_epoch} step(s) into epoch {epochs_done + 1}; --epochs "
                     f"{epochs} ends before that epoch, and its weights hold those steps. Resume with --epochs "
                     f"{epochs_done + 1} or more, or start over with --overwrite and --epochs {epochs}.")


def check_resume_world_size(payload: Dict[str, Any], world_size: int, batch_size: int, source: Path) -> None:
    """Raise InputError when the checkpoint ``payload`` was trained by another number of processes (``torchrun
    --nproc_per_node``) than this run's ``world_size``: each step averages ``batch_size`` patches of every process,
    so the run would go on with another batch per step (and other ranks' samples) while the package recorded
    one ``batch_size`` (a 2-process run resumed in one process trained 4, then 2 patches per step, without a
    word). Older checkpoints, which record no process count, are not checked."""
    saved = payload.get("world_size")
    if saved is None or int(saved) == int(world_size):
        return
    saved, world_size = int(saved), int(world_size)

    def launch(count: int) -> str:
        return "one process" if count == 1 else f"{count} processes (torchrun --nproc_per_node {count})"

    raise InputError(f"Checkpoint '{source}' was trained by {launch(saved)}, {saved * batch_size} patches per step "
                     f"(--batch-size {batch_size} per process); this run has {launch(world_size)}, which would "
                     f"train {world_size * batch_size} per step from here on. Resume with {launch(saved)}, or pass "
                     f"--overwrite (without --resume) to start over.")


@dataclass
class TrainResult:
    """What a finished (or time-limited / early-stopped) run produced."""

    package_path: Optional[Path]
    log_dir: Path
    epochs_completed: int
    global_step: int
    history: List[Dict[str, Any]] = field(default_factory=list)
    validation: Dict[str, Any] = field(default_factory=dict)
    stop_reason: str = "completed"
    train_cases: List[str] = field(default_factory=list)
    val_cases: List[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------- setup helpers
def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``gpu`` -> CUDA. Raises :class:`InputError` for CUDA without a
    GPU, and for Apple GPUs (MPS), which inference uses but training has not been tested on. Letter case and
    surrounding spaces are ignored, as segment's --device ignores them ('CPU' was refused here, taken there)."""
    requested, name = name, str(name if name is not None else "auto").strip().lower()
    if name == "mps":
        raise InputError("Training runs on a CUDA GPU or the CPU; --device mps (an Apple GPU) is not supported for "
                         "training (segment uses it). Use --device cpu.")
    name = "cuda" if name == "gpu" else name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and re.fullmatch(r"cuda(:[0-9]+)?", str(name)) is None:  # 'tpu' ended as an internal error
        raise InputError(f"Unknown device '{requested}'; training runs on auto, cpu, cuda, cuda:N or gpu (= cuda).")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device '{requested}' requested but this torch has no usable CUDA GPU; use --device cpu.")
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        # it was taken, every case hashed and cached, then the first use of the GPU ended as an internal error
        raise InputError(f"device '{requested}' requested, but this computer has {torch.cuda.device_count()} GPU(s) "
                         f"(cuda:0 ..); choose one of them.")
    return device


def resolve_amp(amp: str, device: torch.device) -> Optional[torch.dtype]:
    """Autocast dtype: ``auto`` = bf16 on a CUDA GPU that computes it natively, else fp16 there (with the gradient
    scaler), none on the CPU; ``fp16``/``bf16`` forced (``bf16`` refused on a CUDA GPU without native bf16: a T4 or
    V100, where ``auto`` took bf16 too and cuDNN emulated or refused it); ``off`` none."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "fp16":
        return torch.float16
    if device.type == "cuda":
        from ..inference.device import cuda_native_bf16

        if not cuda_native_bf16(device):
            if amp == "bf16":
                raise InputError(f"{device} has no native bf16 (compute capability below 8.0: before Ampere); use "
                                 f"--amp fp16 (or auto, which takes fp16 there) or --amp off.")
            return torch.float16
    return torch.bfloat16


def amp_name(amp_dtype: Optional[torch.dtype]) -> str:
    """``bf16``, ``fp16`` or ``off``: the autocast a training ran with, as its package records it (``training.amp``)."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(amp_dtype, "off")


def emulated_cpu_autocast_warning(device: torch.device, amp_dtype: Optional[torch.dtype],
                                  cpuinfo_text: Optional[str] = None) -> Optional[str]:
    """A warning when bf16 autocast would run on a CPU without native bf16 (AVX512-BF16 / AMX-BF16,
    :func:`~LiverTumorSegLib.inference.device.cpu_has_native_bf16`; ``cpuinfo_text`` overrides ``/proc/cpuinfo``
    for tests), else None. On a 2-core AMD EPYC with AVX2 only (30 Nov 2026) ``train --amp bf16`` had not finished
    one 100-step epoch of the v10 fine-tune recipe in 13 minutes, where a 2-core CPU with AVX512-BF16 took 99-108 s;
    inference there measured emulated bf16 at 8-9x the fp32 time. fp16 on the CPU was not measured: no warning."""
    if device.type != "cpu" or amp_dtype != torch.bfloat16:
        return None
    from ..inference.device import cpu_has_native_bf16

    if cpu_has_native_bf16(cpuinfo_text):
        return None
    return ("warning: --amp bf16 on this CPU, which reports no native bf16 (no AVX512-BF16 / AMX-BF16 flag; none "
            "can be read where /proc/cpuinfo does not exist): bf16 runs emulated, several times slower than fp32 "
            "here; --amp off trains in fp32.")


def default_log_dir(config: TrainConfig) -> Path:
    if config.log_dir:
        return Path(config.log_dir)
    if not config.output:
        raise InputError("No output given: pass -o MODEL.safetensors (or log_dir in the config).")
    out = Path(config.output)
    stem = out.name[:-len(".safetensors")] if out.name.endswith(".safetensors") else out.name
    return out.parent / f"{stem}_train"


def build_preprocessing(spec):
    """``PreprocessingConfig`` from a preset name, a dict, or a path to a JSON file; a dict or file gives only the
    keys it changes from the ``default`` preset (:meth:`~..preprocessing.PreprocessingConfig.from_given_dict`)."""
    from ..preprocessing import PreprocessingConfig

    if isinstance(spec, dict):
        return PreprocessingConfig.from_given_dict(spec)
    text = str(spec)
    # a package or a recipe given here was 'Unknown preprocessing preset', 'not UTF-8 text' or 'not valid JSON'
    # (the training audit)
    if text.lower().endswith(".safetensors"):
        raise InputError(f"--preprocessing '{text}' is a model package, not a preprocessing preset or config JSON "
                         f"file: to train from its weights with its preprocessing, give --init-from {text} (and "
                         f"leave --preprocessing out); to use its preprocessing alone, copy the package's "
                         f"'preprocessing' (livertumorseg models --json) into a JSON file.")
    if text.lower().endswith((".yaml", ".yml")):
        raise InputError(f"--preprocessing '{text}' is a YAML file, such as a training recipe, not a preprocessing "
                         f"preset or config JSON file: give a recipe as --config {text} (its 'preprocessing' value "
                         f"is then used).")
    if names_a_preprocessing_file(text):
        return PreprocessingConfig.from_file(text, given=True)
    return PreprocessingConfig.preset(text)


def names_a_preprocessing_file(text: str, separators: Sequence[Optional[str]] = (os.path.sep, os.path.altsep)) -> bool:
    """Whether ``--preprocessing`` ``text`` names a JSON file rather than a preset: its suffix in any case
    ('PRE.JSON', as preprocess --config reads it) or a folder part, with ``separators`` (this system's) or '/'
    (taken on Windows too): both were taken as an unknown preset's name."""
    return text.lower().endswith(".json") or any(sep in text for sep in tuple(separators) + ("/",) if sep)


class LesionInserter:
    """Picklable ``(hu, labels, spacing_zyx, rng) -> (hu, labels)`` around ``synthetic_lesions.insert_lesions``."""

    def __init__(self, options: Dict[str, Any]) -> None:
        from .synthetic_lesions import LesionConfig

        self.config = LesionConfig.from_dict(dict(options or {}))

    def __call__(self, hu, labels, spacing_zyx, rng):
        from .synthetic_lesions import insert_lesions

        hu_new, labels_new, _ = insert_lesions(hu, labels, spacing_zyx, rng, self.config)
        return hu_new, labels_new


def build_augmenter(options: Dict[str, Any], pixel_spacing_mm: float):
    """``SliceAugmenter`` from the config dict; ``{"enabled": false}`` turns augmentation off (None)."""
    options = dict(options or {})
    if not options.pop("enabled", True):
        return None
    from .augmentation import AugmentationConfig, SliceAugmenter

    return SliceAugmenter(AugmentationConfig.from_dict(options), pixel_spacing_mm=pixel_spacing_mm)


def data_files(cases: Sequence[Any], voxel_sha256: Optional[Dict[str, str]] = None,
               fingerprint: Optional[Dict[str, Dict[str, Any]]] = None) -> List[Dict[str, Any]]:
    """Per case: id, the image and label file as absolute paths, their sizes in bytes (a changed file is
    seen without hashing gigabytes; None where a path is a folder or gone) and, where ``voxel_sha256`` (case id
    -> :func:`~.datasets.voxel_digest` of its canonical CT, from the slice cache) has it, that digest: a copy of a
    training scan under another name or in another file format is then known by its content
    (``benchmarks/robustness.py`` flags it). Where ``fingerprint`` (:func:`~.slice_cache.data_fingerprint`, the
    hashes the run took at its start) has them, the files' SHA-256 (``image_sha256``, ``label_sha256``):
    ``crossval --resume`` compares them before it takes a finished fold's package as it is."""
    digests = voxel_sha256 or {}
    hashes = fingerprint or {}

    def file_hashes(case_id: str) -> Dict[str, str]:
        entry = hashes.get(case_id) or {}
        return {key: entry[key] for key in ("image_sha256", "label_sha256") if isinstance(entry.get(key), str)}

    def size(path: str) -> Optional[int]:
        try:
            return int(os.path.getsize(path)) if os.path.isfile(path) else None
        except OSError:
            return None

    return [{"case": c.case_id, "image": os.path.abspath(c.image_path), "image_bytes": size(c.image_path),
             "label": os.path.abspath(c.label_path), "label_bytes": size(c.label_path),
             **({"voxel_sha256": digests[c.case_id]} if digests.get(c.case_id) else {}),
             **file_hashes(c.case_id)} for c in cases]


def software_environment() -> Dict[str, Any]:
    """Python, numpy, torch and MONAI versions and, in a git checkout, the library's commit (read from the
    files under .git: no process is started; None elsewhere): library_version alone names no code state."""
    import platform

    from importlib import metadata

    versions = {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__}
    try:  # the installed distribution's version: importing MONAI (about 2 s) only to read it is not needed
        versions["monai"] = metadata.version("monai")
    except metadata.PackageNotFoundError:
        versions["monai"] = None
    versions["git_commit"] = _git_commit(Path(__file__).resolve().parents[2])
    versions["library_sha256"] = library_source_sha256()
    return versions


def library_source_sha256(root: Optional[Path] = None) -> str:
    """SHA-256 of the library's Python source as it ran: each ``.py`` file under ``root`` (default: this
    ``LiverTumorSegLib``) in sorted POSIX relative-path order, its path and its bytes. ``git_commit`` names the
    commit checked out, not uncommitted edits; a package trained from edited code recorded only the commit. Compare
    this value with ``library_source_sha256()`` of a checkout to tell whether it is the code that trained. Line ends are
    read as ``\n``: a Windows checkout (Git's autocrlf writes ``\r\n``) of the same commit gave another value, so the
    comparison called unedited code edited (the portability audit)."""
    root = Path(__file__).resolve().parents[1] if root is None else Path(root)
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
        relative = path.relative_to(root).as_posix()
        if "__pycache__" in relative:
            continue
        digest.update(relative.encode("utf-8") + b"\0")
        digest.update(path.read_bytes().replace(b"\r\n", b"\n") + b"\0")
    return digest.hexdigest()


def _git_commit(root: Path) -> Optional[str]:
    """The commit checked out in ``root`` (HEAD, following one ref), or None when it is not a git checkout.
    A linked worktree (``git worktree add``) or a submodule has a ``.git`` *file* naming its git directory;
    branch refs then live in the shared directory that its ``commondir`` names."""
    try:
        git_dir = _git_dir(root)
        if git_dir is None:
            return None
        head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
        if not head.startswith("ref: "):
            return head or None
        ref = head[5:].strip()
        common_dir = _git_common_dir(git_dir)
        for directory in dict.fromkeys((git_dir, common_dir)):  # the same directory once in a plain checkout
            path = directory / ref
            if path.is_file():
                return path.read_text(encoding="utf-8").strip()
        packed = common_dir / "packed-refs"
        if not packed.is_file():
            return None
        lines = packed.read_text(encoding="utf-8").splitlines()
        return next((line.split()[0] for line in lines if line.endswith(" " + ref)), None)
    except OSError:
        return None


def _git_dir(root: Path) -> Optional[Path]:
    """``root/.git`` when it is a directory; the directory a ``.git`` file's ``gitdir:`` line names (relative
    to ``root``); else None."""
    dot_git = root / ".git"
    if dot_git.is_dir():
        return dot_git
    if not dot_git.is_file():
        return None
    text = dot_git.read_text(encoding="utf-8").strip()
    if not text.startswith("gitdir:"):
        return None
    return _resolved(text[len("gitdir:"):].strip(), root)


def _git_common_dir(git_dir: Path) -> Path:
    """The directory that holds the shared refs: the one ``git_dir/commondir`` names (relative to
    ``git_dir``), else ``git_dir`` itself."""
    common = git_dir / "commondir"
    if not common.is_file():
        return git_dir
    return _resolved(common.read_text(encoding="utf-8").strip(), git_dir)


def _resolved(named: str, base: Path) -> Path:
    """A path that git wrote in a file: absolute as it is, else relative to ``base``."""
    path = Path(named)
    return path if path.is_absolute() else (base / path).resolve()


def check_model_spec(name: str, in_channels: int, options: Dict[str, Any], slices_per_input: int = 0) -> None:
    """Build the architecture on the meta device (no memory, no weights) so an unknown model name or option
    fails in a second, before any data is read or cached; ``slices_per_input`` (the preprocessing's
    ``num_context``) must match a slice-grouping network's. Raises :class:`InputError`."""
    import warnings

    from ..models import build_on_meta, slice_grouping_problem

    problem = slice_grouping_problem(name, options, slices_per_input) if slices_per_input else ""
    if problem:
        raise InputError(problem)

    net = build_on_meta(name, in_channels=in_channels, num_classes=NUM_CLASSES, **dict(options or {}))
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # as before: the meta forward of the activation probe, quietly
        _check_package_limits(net)


def _check_package_limits(net: Any) -> None:
    """InputError when the network (on the meta device) is over what a model package may hold
    (``package.MAX_PARAMETERS`` parameters, ``package.MAX_ACTIVATION_BYTES`` of layer outputs per 256 x 256 slice):
    such a run trained for hours and then its package was refused at the save (or, before, at every load)."""
    from ..models import model_config
    from ..package import network_activation_bytes, network_size_problem

    parameters = int(sum(p.numel() for p in net.parameters()))
    problem = network_size_problem(parameters)
    if problem is None:
        problem = network_size_problem(parameters, network_activation_bytes(model_config(net), net))
    if problem:
        raise InputError(f"{problem[0].upper()}{problem[1:]}, so this run's result could not be saved. Use a smaller "
                         f"network (fewer channels, a smaller width).")


def training_body_diameters(cached: Sequence[CachedCase]) -> Dict[str, Optional[float]]:
    """Case id -> the body's area-equivalent diameter (mm, :func:`~..inference.body_size.body_diameter_mm`) of each
    cached training CT, measured when it was cached on the CT as read (not on the network grid, whose body crop and
    padding hid where the image cut the body), or None where the image or a round field of view cuts the body."""
    return {case.case_id: case.body_diameter_mm for case in cached}


def spacing_summary(cached: Sequence[CachedCase], prefix: str = "") -> Dict[str, Any]:
    """Min and max native voxel spacing (z, y, x) in mm over the cases, under ``prefix`` + ``spacing_zyx_min_mm``
    and ``..._max_mm``; {} without cases."""
    if not cached:
        return {}
    arr = np.array([c.native_spacing_zyx for c in cached], dtype=float)
    return {f"{prefix}spacing_zyx_min_mm": arr.min(axis=0).round(4).tolist(),
            f"{prefix}spacing_zyx_max_mm": arr.max(axis=0).round(4).tolist()}


def recorded_recipe(config: Any) -> Dict[str, Any]:
    """The run's options as a package records them (``training.config``): :meth:`TrainConfig.to_dict`, with
    ``init_from`` null where the run started from random weights. Its empty text was refused when the recorded
    recipe was given back as ``--config`` ('--init-from ... is empty'), where it should rerun the run as recorded
    (the training audit)."""
    values = config.to_dict()
    if not values.get("init_from"):
        values["init_from"] = None
    return values


# ----------------------------------------------------------------------------------------- validation
def slice_validation_method(max_slices: int) -> str:
    """The package's ``validation.method`` for :func:`validate_slices` over at most ``max_slices`` slices a case (0:
    all): with --val-max-slices it said 'on the cached validation volumes' of a Dice taken on that many slices."""
    method = "slice-level on the cached validation volumes (network grid)"
    if max_slices:
        method += (f", at most {int(max_slices)} evenly spaced slices per case, the first and last included "
                   f"(val_max_slices)")
    return method


@torch.no_grad()
def validate_slices(model, cases: Sequence[Any], preprocessor, device: torch.device, batch_size: int,
                    loss_fn=None, autocast_dtype: Optional[torch.dtype] = None,
                    max_slices: int = 0) -> Dict[str, Any]:
    """Slice-level validation on cached (network-grid) volumes.

    Every case (``.hu``, ``.labels`` ``(z, H, W)``, ``.num_slices``, ``.case_id``) is predicted slice by slice
    on whole slices; liver (label 1 or 2) and tumor (label 2) Dice are computed per case over the whole
    volume (without the pixels of :data:`~.labels.IGNORE_LABEL`) (or ``max_slices`` evenly spaced slices) and averaged over cases. Tumor Dice is NaN for a case
    without reference tumor (so tumor-free validation data does not reward predicting nothing). ``loss``: the mean
    of ``loss_fn`` over the batches holding a pixel not :data:`~.labels.IGNORE_LABEL` (NaN: none, or no ``loss_fn``).
    Returns ``{"loss", "liver_dice", "tumor_dice", "cases": [{"case", "liver_dice", "tumor_dice"}]}``.
    """
    was_training = model.training
    model.eval()
    rows, losses = [], []
    for case in cases:
        indices = np.arange(case.num_slices)
        if max_slices and case.num_slices > max_slices:
            indices = np.unique(np.linspace(0, case.num_slices - 1, max_slices).round().astype(int))
        counts = {"liver": [0.0, 0.0], "tumor": [0.0, 0.0]}
        has_tumor = False
        for start in range(0, len(indices), batch_size):
            idx = indices[start:start + batch_size]
            x = torch.from_numpy(full_slice_inputs(case, preprocessor, idx)).to(device)
            y = torch.from_numpy(np.asarray(case.labels[idx], dtype=np.int64)).to(device)
            with autocast_or_not(device.type, autocast_dtype):
                out = model(x)
            logits = out[0] if isinstance(out, (tuple, list)) else out
            logits = logits.float()
            valid = y != IGNORE_LABEL  # an aligned grid outside its CT's footprint: segment labels nothing there
            if loss_fn is not None and bool(valid.any()):
                # a batch wholly outside the footprint has no loss (the loss gives it 0, for training's backward):
                # counted as 0 it pulled the validation loss down, which the plateau scheduler follows
                losses.append(float(loss_fn(logits, y)))
            pred = logits.argmax(1)
            for name, sel in (("liver", organ), ("tumor", lambda t: t == 2)):
                a, b = sel(pred) & valid, sel(y)
                counts[name][0] += float((a & b).sum())
                counts[name][1] += float(a.sum() + b.sum())
            has_tumor = has_tumor or bool((y == 2).any())
        liver = 2 * counts["liver"][0] / counts["liver"][1] if counts["liver"][1] else 1.0
        tumor = (2 * counts["tumor"][0] / counts["tumor"][1]) if has_tumor else float("nan")
        rows.append({"case": case.case_id, "liver_dice": liver, "tumor_dice": tumor})
    model.train(was_training)
    tumor_values = [r["tumor_dice"] for r in rows if not math.isnan(r["tumor_dice"])]
    return {"loss": float(np.mean(losses)) if losses else float("nan"),
            "liver_dice": float(np.mean([r["liver_dice"] for r in rows])) if rows else float("nan"),
            "tumor_dice": float(np.mean(tumor_values)) if tumor_values else float("nan"),
            "cases": rows}


class SyntheticValidationCase:
    """An in-memory validation volume with synthetic lesions inserted (deterministic per seed), used when
    training uses synthetic lesions, so tumor Dice can be measured on data without tumor labels.
    Lesions are inserted per block of ``block`` slices so they spread along z."""

    def __init__(self, case: CachedCase, inserter: "LesionInserter", seed: int, block: int = 24) -> None:
        self.case_id = case.case_id + "+synthetic"
        hu = np.array(case.hu, dtype=np.float32)
        labels = np.array(case.labels, dtype=np.uint8)
        rng = np.random.default_rng([int(seed), 7919])
        for z0 in range(0, hu.shape[0], block):
            z1 = min(hu.shape[0], z0 + block)
            hu[z0:z1], labels[z0:z1] = inserter(hu[z0:z1], labels[z0:z1], case.spacing_zyx, rng)
        self.hu, self.labels, self.num_slices = hu, labels, hu.shape[0]
        self.spacing_zyx = case.spacing_zyx  # network-grid voxel size (mm), as CachedCase's


# ----------------------------------------------------------------------------------------- the trainer
class Trainer:
    """One training run. Use :func:`train`; the class exists so tests can reach the pieces.

    ``callbacks``: objects with an optional ``on_step_end(info: dict)`` (keys ``epoch`` (from 0), ``step_in_epoch``
    (steps done in it), ``global_step``, ``loss``, ``steps_per_epoch`` and ``epochs``, the run's total) and
    ``on_epoch_end(row: dict)``; an exception raised there aborts the run as a crash would (tests use it to simulate
    a kill), a ``KeyboardInterrupt`` (or a subclass) as Ctrl-C does: the interrupt checkpoint is saved first, so
    ``--resume`` continues from that step (``crossval``'s ``cancel`` stops a fold so).
    """

    def __init__(self, config: TrainConfig, callbacks: Sequence[Any] = (), command: str = "",
                 log: Callable[[str], None] = print) -> None:
        self.config = config
        self.callbacks = list(callbacks)
        self.command = command
        self._log = log
        self.t0 = time.time()
        # the software this run started with, recorded in its package: read when the package was written, a commit
        # made (or a file edited) while it trained was recorded as the code that trained (a 17-minute fine-tune
        # named the version bump committed 2 minutes in, and its source hash was of the files then)
        self.environment = software_environment()
        # the epoch in progress: when it started here, and how long it ran before a resume
        self.epoch_t0, self.epoch_elapsed_before = self.t0, 0.0

    # -- small helpers
    def log(self, text: str) -> None:
        if self.dist.is_main:
            self._log(text)

    def _callback(self, method: str, payload: Dict[str, Any]) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, method, None)
            if fn is not None:
                fn(payload)

    # -- setup
    def setup(self) -> None:
        cfg = self.config
        self.device = resolve_device(cfg.device)
        self.dist: DistInfo = init_distributed(self.device.type)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank if self.dist.enabled else
                                       (self.device.index or 0))
        self.amp_dtype = resolve_amp(cfg.amp, self.device)
        self.log_dir = default_log_dir(cfg)
        self.ckpt_dir = self.log_dir / "checkpoints"
        self.last_path, self.best_path = self.ckpt_dir / "last.pt", self.ckpt_dir / "best.pt"
        self.output = Path(cfg.output) if cfg.output else None
        self._check_outputs()
        cfg = self.config  # a resume may have settled oblique_grid (_resumed_oblique_grid)
        # every rank has judged the folders before rank 0 makes anything in them (the slice cache, checkpoints/):
        # a rank that came to its check later found rank 0's 'checkpoints' there and refused the run as a folder
        # of the user's (seen with crossval under torchrun, whose ranks reach each fold at their own pace)
        barrier(self.dist)
        self.pre_config = build_preprocessing(cfg.preprocessing)
        check_model_spec(cfg.model, self.pre_config.in_channels, cfg.model_options, self.pre_config.num_context)
        _check_deep_supervision_weights(cfg)
        self.init_package = None  # the package whose weights the network starts from (fine-tuning)
        if cfg.init_from:
            self.init_package = load_start_package(cfg.init_from, cfg.model, cfg.model_options,
                                                   self.pre_config.to_dict(), self.pre_config.in_channels,
                                                   NUM_CLASSES)
            if self.output is not None and self.output.exists() and \
                    self.output.resolve() == Path(self.init_package.path).resolve():
                raise InputError(f"-o '{self.output}' is the --init-from package: the run would replace the weights it "
                                 f"starts from (and a --resume could no longer find them). Give another -o.")
        cases = discover_cases(cfg.data, cfg.format)  # data and split errors before any folder is made
        check_dataset_labels(cfg.data, cfg.format, cfg.label_map)  # a dataset.json saying 1 = tumor, 2 = liver
        self.train_cases, self.val_cases = select_split(cases, cfg.val_fraction, cfg.folds, cfg.fold,
                                                        cfg.data_split_seed)
        self.init_overlap = {}  # type: Dict[str, str]  # validation patients the start trained on (after caching)
        self.init_record = None  # type: Optional[Dict[str, Any]]
        if self.init_package is not None:
            self.init_record = start_record(self.init_package, cfg.init_from)
        cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else self.log_dir / CACHE_FOLDER
        # rank 0 records it in its checkpoints; every rank checks a resume with it, so that all refuse alike.
        # Files hashed before are not read again: the cache folder (made here on a fresh run) keeps their hashes
        self._data_fingerprint = {}  # type: Dict[str, Dict[str, Any]]
        self._source_signatures = {}  # type: Dict[str, Any]  # the files' stat signatures, for the slice cache
        if self.dist.is_main or self._resume_payload is not None:
            self._data_fingerprint = data_fingerprint(self.train_cases + self.val_cases, cache_dir,
                                                      self._source_signatures)
            # the same CT under two patients (a copy under another name): its hashes are these, taken anyway
            refuse_identical_images(self.train_cases + self.val_cases, self._data_fingerprint)
        if self._resume_payload is not None:  # what the options name may have changed under the same text
            check_resume_contents(self._resume_payload, self._split_record(), self.pre_config.to_dict(),
                                  self.last_path, self._data_fingerprint)
            if self.init_record is not None:
                check_same_start(self._resume_payload.get("init_from"), self.init_record, self.last_path)
        if self.dist.is_main:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        barrier(self.dist)
        torch.manual_seed(cfg.seed)
        self.layout = cases[0].layout
        self.log(f"data: {len(cases)} cases ({len({c.patient_id for c in cases})} patients, {self.layout} layout) "
                 f"from {cfg.data}; "
                 f"train {len(self.train_cases)}, validation {len(self.val_cases)}"
                 + (f" (fold {cfg.fold} of folds 0-{cfg.folds - 1})" if cfg.folds else "")
                 + (f"; validation patients: {', '.join(sorted({c.patient_id for c in self.val_cases}))}"
                    f" (split seed {cfg.data_split_seed})" if self.val_cases else ""))
        if self.init_package is not None:
            self.log(f"starting from the weights of {self.init_package.path} ({self.init_package.name}, weights "
                     f"{self.init_package.sha256[:12]})")

        from ..preprocessing import SlicePreprocessor

        self.preprocessor = SlicePreprocessor(self.pre_config)
        # rank 0 builds the cache; the others wait and then only read the finished entries
        if self.dist.is_main:
            self._build_caches(cache_dir)
        barrier(self.dist)
        if not self.dist.is_main:
            self._build_caches(cache_dir)

        if self.init_package is not None:  # by name, or by content now that the voxels' digests are known
            self.init_overlap = patients_seen(self.init_record["trained_on"], self.val_cases, self._voxel_digests(),
                                              self._data_fingerprint)
            if self.init_overlap:
                self.log(f"warning: the package this run starts from (or one it was fine-tuned from) was trained on "
                         f"validation patient(s) {overlap_text(self.init_overlap)}, so they are not held out and this "
                         f"run's validation Dice "
                         f"is optimistic (the package records it)")
            start_threshold = package_min_lesion_probability(self.init_package.metadata)
            if start_threshold is not None:  # calibrated for the start's weights, not for the fine-tuned ones
                statistic = package_lesion_probability_statistic(self.init_package.metadata) or "mean"
                self.log(f"note: the package this run starts from records its own lesion confidence threshold "
                         f"({start_threshold:g} of each lesion's {statistic} tumor probability); this run's package "
                         f"records none, so segment reads it at {DEFAULT_MIN_LESION_PROBABILITY:g} of the mean until "
                         f"one measured for it is recorded "
                         f"(LiverTumorSegLib.package.set_package_min_lesion_probability)")
        if not any(c.liver_slices for c in self.train_cached):  # each case warned; all of them is no task at all
            raise InputError(f"No training case's label holds any liver or tumor voxel ({len(self.train_cached)} "
                             f"training cases), so the network would only learn to call every CT background. Check "
                             f"--label-map (values not in it become 0) and that the label files belong to the CTs.")
        use_lesions = cfg.use_synthetic_lesions
        if use_lesions is None:
            use_lesions = not any(c.tumor_slices for c in self.train_cached)
        self.synthetic_lesions = bool(use_lesions)
        self.lesion_inserter = LesionInserter(cfg.lesions) if self.synthetic_lesions else None
        if not self.synthetic_lesions and not any(c.tumor_slices for c in self.train_cached):
            self.log("warning: no training case's label holds tumor (2) and synthetic lesions are off, so the network "
                     "learns to label no tumor: segment with this package warns that it does not segment tumors "
                     "(its lesion count 0 would not mean no tumor). For a model that finds tumors, train with "
                     "tumor labels or --synthetic-lesions auto.")
        # the augmenter's default pixel size; PatchDataset gives each sample its own case's
        pixel_mm = float(np.mean(self.train_cached[0].spacing_zyx[1:]))
        self.augmenter = build_augmenter(cfg.augmentation, pixel_mm)
        self.log(f"synthetic lesions: {'on' if self.synthetic_lesions else 'off'}; augmentation: "
                 f"{'on' if self.augmenter is not None else 'off'}; device {self.device}"
                 f"{' x ' + str(self.dist.world_size) + ' processes' if self.dist.enabled else ''}; "
                 f"AMP {self.amp_dtype if self.amp_dtype is not None else 'off'}")
        self._warn_patch_adaptive_preprocessing()
        emulated = emulated_cpu_autocast_warning(self.device, self.amp_dtype)
        if emulated:
            self.log(emulated)
        self.val_eval_cases: List[Any] = list(self.val_cached)
        if self.synthetic_lesions and self.dist.is_main:
            # the split's seed, not the training seed: runs that compare training seeds on one split (a shared
            # --split-seed) were validated on other synthetic tumors each (the training audit)
            self.val_eval_cases = [c if c.tumor_slices else
                                   SyntheticValidationCase(c, self.lesion_inserter, cfg.data_split_seed)
                                   for c in self.val_cached]

        self._build_model()
        self._build_data()

    def _warn_patch_adaptive_preprocessing(self) -> None:
        """Say so when the preprocessing has whole-slice steps that training still computes on each patch (CLAHE,
        the filters' edges: ``PreprocessingConfig.patch_computed_steps``) and the patches are not the slices:
        the filters differ where a patch cuts into a slice (patch smaller than the slice); CLAHE differs whenever
        a patch is not exactly its slice, since a slice narrower than the square patch is padded and CLAHE's tiles
        then lie over the padded square (on the 192 x 352 px body-cropped contrast CT with 352 px patches, 33 % of
        the pixels moved by more than 0.01 against inference's). Histogram scaling, z-score and global
        equalization take their whole slice's statistics in training too (``SlicePreprocessor.slice_statistics``;
        computed on the patch, zscore_body inputs were up to 8.7 apart from inference's)."""
        from ..preprocessing.config import CLAHE_PATCH_STEP

        steps = self.pre_config.patch_computed_steps
        sizes = {tuple(int(n) for n in c.hu.shape[1:]) for c in self.train_cached}  # (z, H, W) memory maps
        largest = max((max(size) for size in sizes), default=0)
        patch = int(self.config.patch_size)
        cut = patch < largest
        steps = [step for step in steps if cut or (step == CLAHE_PATCH_STEP and sizes - {(patch, patch)})]
        if not steps:
            return
        where = (f"on {patch}-pixel patches, inference on whole slices (up to {largest} pixels across here)" if cut
                 else f"on {patch} x {patch}-pixel patches, padded where a slice is narrower, inference on the "
                      f"slices as they are ({', '.join(f'{h} x {w}' for h, w in sorted(sizes)[:4])}"
                      f"{' ...' if len(sizes) > 4 else ''} here)")
        advice = ("Set --patch-size to the slice size (or use a window-only preset) for a model you will deploy."
                  if cut else "Use global equalization or a window-only preset for a model you will deploy (CLAHE "
                              "matches inference only where every slice is exactly the patch).")
        self.log(f"warning: the preprocessing's {', '.join(steps)} depend(s) on the whole slice; training computes "
                 f"them {where}, so the network is trained on other inputs than it will see. {advice}")

    def _resumed_oblique_grid(self, payload: Dict[str, Any]) -> TrainConfig:
        """The config to resume the checkpoint ``payload`` with: a checkpoint written before ``oblique_grid``
        existed (its saved config has no such key) trained its oblique CTs as stored, so the run continues
        ``stored`` (said in the log) unless ``oblique_grid`` was given (:attr:`TrainConfig.given`); a given
        "aligned" is then refused by :func:`check_resume_config` as another setting. Before, such a resume went on,
        without a word, on the aligned grid. The checkpoints of such a run record it
        (``oblique_grid_before_option``), so that its next resume, the same command, continues ``stored`` too: it
        was refused as a run of other settings ('oblique_grid 'stored' (now 'aligned')')."""
        cfg = self.config
        try:
            saved_config = payload.get("config")
            stored = json.loads(saved_config) if isinstance(saved_config, str) else saved_config
        except ValueError:
            return cfg
        if not isinstance(stored, dict) or not stored:
            return cfg
        before_option = "oblique_grid" not in stored or (bool(payload.get("oblique_grid_before_option"))
                                                         and stored.get("oblique_grid") == "stored")
        self._oblique_grid_before_option = before_option
        if not before_option or "oblique_grid" in cfg.given or cfg.oblique_grid == "stored":
            return cfg
        self.config = cfg.updated({"oblique_grid": "stored"})
        self.log(f"Resuming '{self.last_path}' with oblique_grid stored: the checkpoint's run began before the "
                 f"option existed, and trained oblique CTs on their stored slices (pass --oblique-grid "
                 f"stored to say so; --oblique-grid aligned is refused, as another setting).")
        return self.config

    def _refuse_replacing_another_runs_package(self, cfg: TrainConfig, finished: bool) -> None:
        """OutputExistsError when ``--resume`` (without ``--overwrite``) would replace a file at ``-o`` that no run of
        this training folder wrote (:func:`_package_of_run`): the check of an existing output was skipped whenever a
        checkpoint was found, and ``-o`` may change on resume, so ``--resume -o precious.safetensors`` replaced
        another model package without a word (the file-safety audit). A file that is no readable package is left to
        :func:`_refuse_unreadable_package` when the run has ``finished`` its epochs (which names that case), and is
        refused as unreadable otherwise (its owner cannot be told). ``cfg``: the resumed run's settings (an older
        checkpoint's ``oblique_grid`` settled)."""
        from ..package import readable_package_metadata

        if self.output is None or cfg.overwrite or not self.output.exists():
            return
        if _package_of_run(self.output, self.log_dir, cfg):
            return  # this run's own package (a time limit's, or one an --overwrite restart is replacing)
        if readable_package_metadata(self.output) is None:
            if finished:
                return
            raise OutputExistsError(f"Output '{self.output}' already exists and cannot be read as a model package "
                                    f"(damaged, cut short, or another kind of file), so whose it is cannot be told: "
                                    f"--resume would replace it. If it is this run's package, delete it and run "
                                    f"again with --resume; else choose another -o.")
        raise OutputExistsError(f"Output '{self.output}' already exists and is not a package of the run in "
                                f"'{self.log_dir}', which --resume continues (another training folder and other "
                                f"settings): finishing it would replace that file. Choose another -o, or pass "
                                f"--overwrite with --resume to replace it.")

    def _check_outputs(self) -> None:
        cfg = self.config
        if self.output is not None:
            if not self.output.name.endswith(".safetensors"):
                raise InputError(f"Output '{self.output}' must end in .safetensors (a model package).")
            if self.output.exists() and not cfg.overwrite and not (cfg.resume and self.last_path.is_file()):
                hint = (f" (--resume found no checkpoint of an interrupted run in '{self.ckpt_dir}', so it would "
                        f"train from scratch and replace it)" if cfg.resume else "")
                if not cfg.resume and self.last_path.is_file() and _package_stop_reason(self.output) in (
                        "time_limit", VALIDATING):
                    # the time limit's package: rerunning the command (a scheduler's next slot) was told
                    # --overwrite, which starts over and deletes the checkpoint that would continue it
                    raise OutputExistsError(f"Output '{self.output}' already exists: the package of a run the time "
                                            f"limit stopped, whose checkpoint is in '{self.ckpt_dir}'. Pass --resume "
                                            f"to continue that run, --overwrite to start over, or choose another -o.")
                raise OutputExistsError(f"Output '{self.output}' already exists{hint}; pass --overwrite or choose "
                                        f"another -o.")
            if not self.output.parent.exists():
                raise InputError(f"Output folder '{self.output.parent}' does not exist; create it first.")
            check_can_write(self.output, overwrite=True)  # UTF-8 name, writable folder: before any work
            # the file this run may replace (one --overwrite or --resume allowed), or None: a file put at -o
            # while the run trains is another's and is kept (_package_target)
            self._output_identity = _file_identity(self.output)
        self._resume_payload = None  # type: Optional[Dict[str, Any]]
        self._oblique_grid_before_option = False  # _resumed_oblique_grid
        self._finish_only = None  # type: Optional[str]
        if cfg.resume and self.last_path.is_file():  # a refused checkpoint fails here, before any work
            payload = load_checkpoint(self.last_path, map_location="cpu")
            self._resume_payload = payload  # restore() continues from it: the file is read once
            cfg = self._resumed_oblique_grid(payload)
            check_resume_config(payload.get("config"), cfg, self.last_path, saved_data_path=payload.get("data_path"))
            check_resume_schedule(payload, cfg, self.last_path)
            check_resume_world_size(payload, self.dist.world_size, int(cfg.batch_size), self.last_path)
            self._refuse_replacing_another_runs_package(cfg, finished=int(payload["epoch"]) >= int(cfg.epochs))
            self._note_other_thread_count(payload.get("cpu_threads"))
            done = int(payload["epoch"])
            check_resume_epochs(done, int(payload.get("step_in_epoch", 0) or 0), int(cfg.epochs), self.last_path)
            payload["state"] = decode_json(payload, "state") or {}  # decoded once: restore() reads this dict
            early = EarlyStopping(cfg.early_stopping_patience)
            early.load(payload["state"].get("early") or {})
            # stopped in its final validation, with nothing left to train (not a time limit, not more --epochs, not a
            # larger --early-stopping-patience): only that validation is done again
            final = pending_validation(self.output)
            if (final == "completed" and done >= cfg.epochs) or (final == "early_stopping" and early.stopped):
                self._finish_only = final
                return
            if done >= cfg.epochs and not cfg.overwrite and self.output is not None and self.output.exists():
                _refuse_unreadable_package(self.output, self.log_dir, done)
                longer = ("Pass a larger --epochs to train on, or --overwrite to write the package again"
                          if cfg.schedule not in SCHEDULES_OVER_TOTAL else
                          f"Its {cfg.schedule} schedule has ended (it is laid over the run's epochs); to train "
                          f"longer, start over with --overwrite and a larger --epochs")
                raise OutputExistsError(f"The run in '{self.log_dir}' already finished its {done} epochs and wrote "
                                        f"'{self.output}'; nothing to resume. {longer}.")
            bad = early.bad_epochs
            # stopped early, but interrupted (or out of memory, a full disk) before its package was written: --resume
            # writes it (fit), as it does for a run that trained all its epochs; it was refused as 'nothing to
            # resume', and --overwrite trained another epoch (the training run-time audit)
            if early.stopped and not cfg.overwrite and (self.output is None or (
                    self.output.exists() and not _earlier_package_of_this_run(self.output, self.log_dir, cfg,
                                                                              int(payload["global_step"])))):
                # as crossval --resume treats it: finished. Before, --resume trained on and replaced the package.
                raise OutputExistsError(f"The run in '{self.log_dir}' stopped early after {done} epochs ({bad} "
                                        f"validation(s) without improvement, patience "
                                        f"{cfg.early_stopping_patience}); nothing to resume. Pass a larger "
                                        f"--early-stopping-patience to train on, or --overwrite to start over.")
        if self.last_path.exists() and not cfg.resume and not cfg.overwrite:
            raise OutputExistsError(f"'{self.log_dir}' holds a checkpoint of an earlier run; pass --resume to "
                                    f"continue it or --overwrite to start over.")
        # --resume without a checkpoint starts a new run, so it is held to a new run's check: a job script that always
        # passes --resume emptied the user's tensorboard/ and log.csv in a folder holding no run of ours
        resuming = cfg.resume and self.last_path.exists()
        if not (resuming or cfg.overwrite) and self.log_dir.is_dir():
            entries = sorted(p.name for p in self.log_dir.iterdir() if p.name != TRAIN_LOCK_FILE)  # this run's
            if holds_only_slice_cache(self.log_dir):  # a failed run's
                self.log(f"reusing the slice cache an earlier run left in '{self.log_dir / CACHE_FOLDER}' (cases "
                         f"whose files changed are cached again)")
            elif entries and cfg.resume and holds_only_an_unsaved_run(self.log_dir):
                # a run killed before its first checkpoint: the message spoke of a folder of the user's
                raise OutputExistsError(f"--resume found no checkpoint in '{self.ckpt_dir}': the run in "
                                        f"'{self.log_dir}' was stopped (kill -9, out of memory, power cut) before "
                                        f"its first one, so there is nothing to continue. Pass --overwrite (without "
                                        f"--resume) to start it over; --checkpoint-every-steps N saves checkpoints "
                                        f"within an epoch.")
            elif entries:  # a folder of the user's: the run would replace its log.csv and add its own files
                raise OutputExistsError(f"Training folder '{self.log_dir}' already exists and holds {len(entries)} "
                                        f"item(s) (e.g. '{entries[0]}'); train writes log.csv, checkpoints and a "
                                        f"cache there. Choose another {'--log-dir' if cfg.log_dir else '-o'}, move "
                                        f"that folder, or pass --overwrite to write into it.")

    def _build_caches(self, cache_dir: Path) -> None:
        label_map = self.config.label_map or None
        log = self.log if self.dist.is_main else None
        allow = bool(self.config.allow_non_hu)
        # the signatures data_fingerprint took just before (ranks that took none stat the files here)
        signatures = self._source_signatures
        grid = str(self.config.oblique_grid)  # an oblique CT on segment's patient-aligned grid, or as stored
        self.train_cached = build_slice_cache(self.train_cases, self.preprocessor, cache_dir, label_map, log=log,
                                              allow_non_hu=allow, signatures=signatures, oblique_grid=grid)
        self.val_cached = build_slice_cache(self.val_cases, self.preprocessor, cache_dir, label_map, log=log,
                                            allow_non_hu=allow, signatures=signatures, oblique_grid=grid)
        # one scan saved as two files (another format or compression) under two patients: the byte hashes at the
        # start differ, the voxels read for the cache do not
        refuse_identical_voxels(self.train_cases + self.val_cases, self._voxel_digests())

    def _voxel_digests(self) -> Dict[str, str]:
        """Case id -> the canonical CT's voxel digest, as the slice cache recorded it (every cached case)."""
        return {c.case_id: c.voxel_sha256 for c in self.train_cached + self.val_cached}

    def _build_model(self) -> None:
        from ..models import build_model

        cfg = self.config
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, in_channels=self.pre_config.in_channels, num_classes=NUM_CLASSES,
                            **dict(cfg.model_options or {}))
        if getattr(self, "init_package", None) is not None:  # fine-tuning: the package's weights, checked alike
            model.load_state_dict(self.init_package.model.state_dict())
            self.init_package.model = None  # its copy is not held through training
        model = model.to(self.device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.net = model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(model, device_ids=ids)
        torch.manual_seed(cfg.seed + 1000 * self.dist.rank)  # dropout etc. differ per rank
        base = SegmentationLoss(cfg.loss, cfg.class_weights, lesion_weight=cfg.lesion_loss_weight,
                                lesion_min_pixels=cfg.lesion_loss_min_pixels, lesion_average=cfg.lesion_loss_average)
        self.base_loss = base
        self.loss_fn = DeepSupervisionLoss(base, cfg.deep_supervision_weights)
        self.optimizer = build_optimizer(cfg.optimizer, self.model.parameters(), cfg.lr, cfg.weight_decay,
                                         cfg.momentum)
        self.steps_per_epoch = int(cfg.iterations_per_epoch)
        # recorded in every checkpoint: a resume under a schedule laid over it must keep it (check_resume_schedule)
        self.schedule_total_steps = schedule_total_steps(cfg.schedule, cfg.epochs, self.steps_per_epoch)
        self.scheduler = build_scheduler(cfg.schedule, self.optimizer, cfg.epochs * self.steps_per_epoch,
                                         self.steps_per_epoch, cfg.warmup, cfg.step_size, cfg.gamma,
                                         cfg.plateau_patience, cfg.plateau_factor)
        if int(cfg.warmup) >= cfg.epochs * self.steps_per_epoch > 0 and cfg.schedule != "plateau":
            # said, not refused: short trial runs of a recipe (its warmup for the full run) are a use of their own
            self.log(f"warning: warmup ({cfg.warmup} steps) is as long as the whole run or longer ({cfg.epochs} x "
                     f"{self.steps_per_epoch} = {cfg.epochs * self.steps_per_epoch} steps): the learning rate never "
                     f"reaches lr ({cfg.lr:g}) and the {cfg.schedule} schedule never starts (the rate "
                     f"rises linearly through the whole run, a fraction of lr); give --warmup 0 or a shorter one for "
                     f"a run this short")
        self.scaler = grad_scaler(self.device.type, enabled=self.amp_dtype == torch.float16)

    def _build_data(self) -> None:
        cfg = self.config
        self.dataset = PatchDataset(self.train_cached, self.preprocessor, cfg.patch_size, cfg.seed, self.dist.rank,
                                    cfg.liver_slice_fraction, cfg.tumor_slice_fraction, cfg.every_other_slice,
                                    self.lesion_inserter, self.augmenter, pad_hu=self.pre_config.pad_hu)
        self.sampler = EpochSampler(self.steps_per_epoch * cfg.batch_size)
        workers = max(0, int(cfg.num_workers))
        # its own generator: starting an iterator (each epoch) then takes no number from torch's global one, so a
        # run resumed mid-epoch draws the same dropout masks as the uninterrupted run (the samples themselves
        # come from PatchDataset's per-index generators)
        self.loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=cfg.batch_size, sampler=self.sampler, num_workers=workers,
            pin_memory=self.device.type == "cuda", drop_last=False, persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None, generator=torch.Generator().manual_seed(int(cfg.seed)),
            worker_init_fn=WorkerSetup.for_this_process() if workers > 0 else None,
            multiprocessing_context=worker_context() if workers > 0 else None)  # the caller's start method stays free

    # -- state
    def _state_json(self) -> str:
        return json.dumps({"history": self.history, "best": self.best.state(), "early": self.early.state(),
                           "resumes": self.resumes,
                           "loss_sum": self.loss_sum, "loss_count": self.loss_count,
                           "elapsed_s": self.elapsed_before + (time.time() - self.t0),
                           "epoch_elapsed_s": self.epoch_elapsed_before + (time.time() - self.epoch_t0)})

    def _rank_rng_path(self) -> Path:
        """Where a rank > 0 keeps its random state beside ``last.pt`` (rank 0's is in ``last.pt``)."""
        return self.ckpt_dir / f"last_rng_rank{self.dist.rank}.pt"

    def save_last(self, epoch: int, step_in_epoch: int, rng: Optional[Dict[str, torch.Tensor]] = None) -> None:
        """Checkpoint (rank 0): ``epoch`` = epochs completed when ``step_in_epoch == 0``, else the one in progress.
        Every other rank saves its own random state (no collective call: a rank may be interrupted alone): it
        draws its own dropout masks, and a resumed DDP run with dropout was not bit for bit without them.
        ``rng``: the random state to record (:func:`rng_state` at that position), else the current one."""
        rng = rng_state() if rng is None else rng
        if not self.dist.is_main:  # and its own running loss of the epoch (rank 0's is in last.pt)
            save_checkpoint(self._rank_rng_path(), {"rng": rng, "global_step": int(self.global_step),
                                                    "loss_sum": float(self.loss_sum),
                                                    "loss_count": int(self.loss_count)})
            return
        save_checkpoint(self.last_path, {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": scheduler_state(self.scheduler), "scaler": self.scaler.state_dict(),
            "rng": rng, "epoch": int(epoch), "step_in_epoch": int(step_in_epoch),
            "global_step": int(self.global_step), "config": self.config.to_json(), "state": self._state_json(),
            "data_path": resolved_data_path(self.config.data), "split": self._split_record(),
            "preprocessing_resolved": json.dumps(self.pre_config.to_dict(), sort_keys=True),
            "data_fingerprint": self._data_fingerprint, "schedule_total_steps": self.schedule_total_steps,
            "init_from": getattr(self, "init_record", None), "world_size": int(self.dist.world_size),
            "cpu_threads": int(torch.get_num_threads()),
            # a run from before oblique_grid (resumed stored): its next resume continues stored without the option
            "oblique_grid_before_option": bool(self._oblique_grid_before_option
                                               and self.config.oblique_grid == "stored")})

    def _note_other_thread_count(self, saved: Any) -> None:
        """Say so when a CPU run resumes with another torch thread count than its checkpoint was saved with
        (``saved``; None in older checkpoints): the CPU kernels then sum in another order, so the run is not bit
        for bit the uninterrupted one (1 against 2 threads: weights 5e-4 apart after 4 steps of a small U-Net),
        which the README promised without that condition."""
        now = int(torch.get_num_threads())
        if saved is None or self.device.type != "cpu" or int(saved) == now:
            return
        self.log(f"note: the checkpoint was saved by a run with {int(saved)} CPU thread(s) and this one has {now}; "
                 f"the resumed run is then close to, but not bit for bit, the uninterrupted one. For that, give it "
                 f"OMP_NUM_THREADS={int(saved)}.")

    def _split_record(self) -> Dict[str, List[str]]:
        """The case ids this run trains and validates on (checked on resume)."""
        return {"train": sorted(c.case_id for c in self.train_cases),
                "validation": sorted(c.case_id for c in self.val_cases)}

    def restore(self) -> Tuple[int, int]:
        """Load ``last.pt`` (all ranks; the payload the constructor checked, when it read one) -> (epoch,
        step_in_epoch) to continue from."""
        payload, self._resume_payload = self._resume_payload, None
        if payload is None:
            payload = load_checkpoint(self.last_path, map_location="cpu")
        try:
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"Checkpoint '{self.last_path}' does not fit this run's model/optimizer "
                             f"({type(exc).__name__}); resume with the same --model, --model-options and "
                             f"--optimizer as the interrupted run, or delete '{self.log_dir}' to start over.") from None
        load_scheduler_state(self.scheduler, payload.get("scheduler"))
        if payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        set_rng_state(payload.get("rng", {}))
        state = decode_json(payload, "state") or {}
        self.loss_sum, self.loss_count = float(state.get("loss_sum", 0.0)), int(state.get("loss_count", 0))
        if self.dist.rank:
            own = self._rank_rng_path()
            saved = load_checkpoint(own, map_location="cpu", required=("rng", "global_step")) if own.is_file() else {}
            if int(saved.get("global_step", -1)) == int(payload["global_step"]):  # saved at the same step
                set_rng_state(saved["rng"])
                # this rank's own losses of the interrupted epoch: rank 0's (in last.pt) were counted twice in the
                # epoch's mean over ranks
                self.loss_sum = float(saved.get("loss_sum", self.loss_sum))
                self.loss_count = int(saved.get("loss_count", self.loss_count))
            else:  # a checkpoint from before ranks saved theirs, or one rank stopped elsewhere: not bit for bit
                torch.manual_seed(self.config.seed + 1000 * self.dist.rank + int(payload["global_step"]))
        self.history = list(state.get("history", []))
        # each resume, with the epochs asked for before and after it (a step or plateau run may train longer)
        self.resumes = list(state.get("resumes", []))
        self.resumes.append({"at_epoch": int(payload["epoch"]),
                             "at_step_in_epoch": int(payload.get("step_in_epoch", 0)),
                             "global_step": int(payload["global_step"]), "epochs_before": _saved_epochs(payload),
                             "epochs_after": int(self.config.epochs)})
        self.best.load(state.get("best", {}))
        self.early.load(state.get("early", {}))
        self.elapsed_before = float(state.get("elapsed_s", 0.0))
        if int(payload.get("step_in_epoch", 0)):  # the interrupted epoch's time so far counts in its epoch_time_s
            self.epoch_elapsed_before = float(state.get("epoch_elapsed_s", 0.0))
        self.global_step = int(payload["global_step"])
        self.best_state = self._restored_best_state() if self.config.use_best_checkpoint else None
        return int(payload["epoch"]), int(payload.get("step_in_epoch", 0))

    def _restored_best_state(self) -> Optional[Dict[str, torch.Tensor]]:
        """The weights of this run's best validation, from best.pt: only when the restored tracker found a best
        and best.pt records that epoch. A run restarted with --overwrite (e.g. the recipe's final run on all
        data, without validation) found the earlier run's best.pt and packaged those weights instead of its
        own."""
        if self.best.best_epoch < 1 or not self.best_path.is_file():
            return None
        saved = load_checkpoint(self.best_path, map_location="cpu", required=("model", "epoch"))
        if int(saved["epoch"]) != self.best.best_epoch:
            self.log(f"warning: '{self.best_path}' holds epoch {saved['epoch']}, not this run's best epoch "
                     f"{self.best.best_epoch}; it is not used")
            return None
        return saved["model"]

    def _clear_earlier_run(self) -> None:
        """A fresh start (no --resume) in a folder of an earlier run: remove that run's checkpoints, so neither a
        later --resume nor the package can pick them up."""
        if not self.dist.is_main:
            return
        for path in [self.last_path, self.best_path] + sorted(self.ckpt_dir.glob("last_rng_rank*.pt")):
            path.unlink(missing_ok=True)

    # -- the loop
    def fit(self) -> TrainResult:
        cfg = self.config
        self.history: List[Dict[str, Any]] = []
        self.resumes: List[Dict[str, Any]] = []
        self.best, self.early = BestTracker(), EarlyStopping(cfg.early_stopping_patience)
        self.best_state: Optional[Dict[str, torch.Tensor]] = None
        # (global step, result) of this process's last slice-level validation: _finish reuses it for the same weights
        self._last_validation: Optional[Tuple[int, Dict[str, Any]]] = None
        self.loss_sum, self.loss_count, self.global_step, self.elapsed_before = 0.0, 0, 0, 0.0
        start_epoch, start_step = 0, 0
        if cfg.resume and self.last_path.is_file():
            start_epoch, start_step = self.restore()
            if start_step and self.history and int(self.history[-1]["epoch"]) >= start_epoch + 1:
                start_epoch, start_step = int(self.history[-1]["epoch"]), 0  # checkpoints of older versions
                self.loss_sum, self.loss_count = 0.0, 0
            if self._finish_only:
                self.log(f"the run in '{self.log_dir}' was stopped in its final whole-volume validation; "
                         f"validating again")
                return self._finish(self._finish_only)
            if self.early.stopped and not start_step:  # stopped early, its package not written yet (__init__); a
                # mid-epoch checkpoint resumed with a smaller patience finishes its epoch first
                self.log(f"resuming from {self.last_path}: the run stopped early after {start_epoch} epochs "
                         f"({self.early.bad_epochs} validation(s) without improvement); writing the package")
                return self._finish("early_stopping")
            if start_epoch >= cfg.epochs:  # 'epoch 4' of a 3-epoch run read as if a fourth were to come
                self.log(f"resuming from {self.last_path}: all {cfg.epochs} epochs were trained ({self.global_step} "
                         f"steps); writing the package")
            else:
                self.log(f"resuming from {self.last_path}: epoch {start_epoch + 1} of {cfg.epochs}, global step "
                         f"{self.global_step}")
        else:
            if cfg.resume:
                self.log(f"no checkpoint in {self.ckpt_dir}; starting a new run")
            self._clear_earlier_run()
        csv_log = CsvLog(self.log_dir / "log.csv", notice=self.log)
        if self.dist.is_main:
            if start_epoch == 0 and start_step == 0:  # a fresh start: no earlier run's rows, events or curves
                (self.log_dir / "log.csv").unlink(missing_ok=True)
                # drawn only when a run ends: a new run stopped before then showed the earlier run's curves
                (self.log_dir / "curves.png").unlink(missing_ok=True)
                # TensorBoard showed an overwritten run's loss beside the new one's (the training audit); only its
                # event files go: other runs' logs the user keeps in that folder stay
                remove_tensorboard_events(self.log_dir / "tensorboard")
            csv_log.truncate_after(start_epoch)
            if start_epoch and len(read_log(self.log_dir / "log.csv")) < len(self.history):
                (self.log_dir / "log.csv").unlink(missing_ok=True)  # an interrupt cut the last row: rewrite
                for row in self.history:
                    csv_log.append(row)
        tb = TensorBoardLog(self.log_dir / "tensorboard", enabled=cfg.tensorboard and self.dist.is_main,
                            notice=self.log, purge_step=int(self.global_step) if (start_epoch or start_step) else None)
        stop_reason = "completed"
        try:
            for epoch in range(start_epoch, cfg.epochs):
                first_step = start_step if epoch == start_epoch else 0
                if first_step == 0:
                    self.loss_sum, self.loss_count = 0.0, 0
                    self.epoch_elapsed_before = 0.0
                self.epoch_t0 = time.time()
                if self._train_epoch(epoch, first_step) == "time_limit_mid_epoch":
                    stop_reason = "time_limit"
                    self._log_stopped_epoch(epoch, self.epoch_elapsed_before + time.time() - self.epoch_t0, csv_log)
                    break
                row = self._end_epoch(epoch, self.epoch_elapsed_before + time.time() - self.epoch_t0, csv_log, tb)
                if row.get("stop"):
                    stop_reason = "early_stopping"
                    self.log(f"early stopping: no validation improvement in {cfg.early_stopping_patience} "
                             f"validation(s) (every {cfg.val_every} epoch(s))")
                    break
                # only with epochs left: a run whose last epoch ended on the limit was recorded "time_limit", told
                # to --resume, and --resume then said it had finished (the training audit)
                if epoch + 1 < cfg.epochs and self._time_up():
                    stop_reason = "time_limit"
                    break
        except (KeyboardInterrupt, RuntimeError, EOFError, OSError) as exc:  # the last three: a killed worker
            # held from the first statement: a second signal, or torch's report of the workers' deaths (pending
            # beside the first signal), must neither replace the interrupt nor cut the checkpoint short
            if not call_with_interrupts_held(functools.partial(self._checkpoint_if_interrupted, exc, tb)):
                raise
            # leave no gloo process group to the interpreter's exit: its threads, destroyed there while the other
            # rank was ending too, aborted a rank now and then ("terminate called without an active exception",
            # SIGABRT, seen once in the suite's two-process resume test)
            cleanup(self.dist)
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise KeyboardInterrupt from exc  # the signal that stopped the workers is on its way to this process
        tb.close()
        if self.dist.is_main and not csv_log.flush():
            self.log(f"warning: {csv_log.path} lacks the last {len(csv_log.unwritten)} epoch row(s): it could not be "
                     f"written (is it open in another program?); curves.png lacks them too.")
        if stop_reason == "time_limit":
            advice = self._rerun_with_resume()
            self.log(f"time limit of {cfg.max_time_minutes:g} min reached; writing the model package "
                     f"({advice[:1].lower()}{advice[1:]} to continue the run)")
        return self._finish(stop_reason)

    def _rerun_with_resume(self) -> str:
        """How to continue this run: 'Rerun the same command with --resume', and for a fold of ``crossval
        --overwrite`` '... in place of --overwrite': crossval refuses the pair (its --overwrite removes the finished
        folds), so the advice as it was led to an error (the training run-time audit)."""
        import shlex

        try:
            words = shlex.split(str(self.command or ""))
        except ValueError:  # a command line that is no shell words
            words = []
        command = next((word for word in words[1:] if not word.startswith("-")), "")  # after --debug too
        if command == "crossval" and "--overwrite" in words:  # as typed (crossval may overwrite a fold itself)
            return "Rerun the same command with --resume in place of --overwrite (crossval takes one of the two)"
        return "Rerun the same command with --resume"

    def _checkpoint_if_interrupted(self, exc: BaseException, tb: TensorBoardLog) -> bool:
        """If ``exc`` is an interrupt (Ctrl-C, SIGTERM, or a DataLoader worker ended by one), save the interrupt
        checkpoint, stop the workers and return True; else False (a real failure, raised by the caller)."""
        if not isinstance(exc, KeyboardInterrupt) and not is_worker_stopped_by_signal(exc, self.loader):
            return False
        epoch, step = self._interrupt_position()
        # the random state where that position was recorded: an interrupt inside a step's forward or backward
        # pass has drawn that step's dropout masks, which the resumed run draws again (with dropout, a resumed
        # run was not bit for bit: the training audit)
        mid_epoch = (epoch, step) == (getattr(self, "_interrupt_epoch", None), getattr(self, "_interrupt_step", None))
        self.save_last(epoch, step, rng=getattr(self, "_interrupt_rng", None) if mid_epoch else None)
        # said once saved: a save that failed (a full disk) was announced as done before its error
        self.log(f"interrupted; checkpoint saved to {self.last_path}. {self._rerun_with_resume()} to continue.")
        tb.close()
        stop_loader_workers(self.loader)
        return True

    def _interrupt_position(self) -> Tuple[int, int]:
        """(epoch, step_in_epoch) to checkpoint on Ctrl-C/SIGTERM. An interrupt during the end-of-epoch work,
        after the epoch's row was recorded, counts as the next epoch's start: saving the old position would
        make --resume log that epoch a second time (with loss 0 once its loss sums were reset)."""
        epoch, step = self._interrupt_epoch, self._interrupt_step
        if self.history and int(self.history[-1]["epoch"]) >= epoch + 1:
            epoch, step = int(self.history[-1]["epoch"]), 0
            self.loss_sum, self.loss_count = 0.0, 0
        return epoch, step

    def _time_up(self) -> bool:
        limit = float(self.config.max_time_minutes or 0)
        flag = 1.0 if limit > 0 and (time.time() - self.t0) > limit * 60.0 else 0.0
        return bool(broadcast_floats([flag], self.dist, self._comm_device())[0])

    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def _train_epoch(self, epoch: int, first_step: int) -> str:
        cfg = self.config
        self.sampler.set_epoch(epoch, first_step * cfg.batch_size)
        self.net.train()
        self._interrupt_epoch, self._interrupt_step = epoch, first_step
        self._interrupt_rng = rng_state()
        from tqdm import tqdm

        bar = tqdm(total=self.steps_per_epoch, initial=first_step, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not (self.dist.is_main and cfg.progress_bar), leave=False, dynamic_ncols=True)
        try:
            # log lines of the epoch (a case's warning, a callback's) go through the bar, each on a line of its own,
            # as segment's do: they began in the middle of the bar's line
            with logging_beside_bar(bar):
                return self._train_steps(epoch, first_step, bar)
        finally:
            bar.close()

    def _train_steps(self, epoch: int, step: int, bar: Any) -> str:
        """The steps of one epoch from ``step`` on (see :meth:`_train_epoch`); "ok" or "time_limit_mid_epoch"."""
        cfg = self.config
        for x, y in batches_of(self.loader, self.loader.num_workers):
            loss = self._loss_and_gradients(x, y)
            with interrupts_deferred():  # the update and the position the interrupt checkpoint records: whole
                self._update_weights()
                step += 1
                self.global_step += 1
                self.loss_sum += loss
                self.loss_count += 1
                self._interrupt_epoch, self._interrupt_step = epoch, step
                self._interrupt_rng = rng_state()
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            self._callback("on_step_end", {"epoch": epoch, "step_in_epoch": step,
                                           "global_step": self.global_step, "loss": loss,
                                           "steps_per_epoch": self.steps_per_epoch, "epochs": cfg.epochs})
            if cfg.checkpoint_every_steps and self.global_step % cfg.checkpoint_every_steps == 0 \
                    and step < self.steps_per_epoch:
                self.save_last(epoch, step)
            if step < self.steps_per_epoch and self._time_up():
                self.save_last(epoch, step)
                return "time_limit_mid_epoch"
        return "ok"

    def _loss_and_gradients(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Forward, loss and backward of one batch (gradients clipped when set); the weights are not changed
        yet (:meth:`_update_weights`), so an interrupt here leaves the last completed step's state."""
        from ..models import split_deep_supervision

        cfg = self.config
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast_or_not(self.device.type, self.amp_dtype):
            out = self.net(x)
        logits, aux = split_deep_supervision(out)
        loss = self.loss_fn(logits.float(), [a.float() for a in aux], y)
        if not torch.isfinite(loss):  # diverged: the user's settings, not a bug (was 'internal error', exit 1)
            amp = " or train without mixed precision (--amp off)" if self.amp_dtype is not None else ""
            raise InputError(f"The training loss became {float(loss.detach())} at step {self.global_step + 1}: the "
                             f"run diverged. Lower the learning rate (--lr){amp}, or add gradient clipping "
                             f"(--grad-clip 1).")
        self.scaler.scale(loss).backward()
        if cfg.grad_clip and cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        return float(loss.detach())

    def _update_weights(self) -> None:
        """The optimizer, AMP scaler and per-step scheduler steps of the batch whose gradients are in place."""
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if getattr(self.scheduler, "per_step", False):
            self.scheduler.step()

    def _validate(self) -> Dict[str, Any]:
        return validate_slices(self.model, self.val_eval_cases, self.preprocessor, self.device,
                               max(1, self.config.batch_size), self.base_loss, self.amp_dtype,
                               self.config.val_max_slices)

    def _end_epoch(self, epoch: int, seconds: float, csv_log: CsvLog, tb: TensorBoardLog) -> Dict[str, Any]:
        cfg = self.config
        train_loss = all_reduce_mean(self.loss_sum / max(1, self.loss_count), self.dist, self._comm_device())
        do_val = bool(self.val_cached) and ((epoch + 1) % max(1, cfg.val_every) == 0 or epoch + 1 == cfg.epochs)
        values = [float("nan")] * 3
        if do_val and self.dist.is_main:
            val = self._validate()
            self._last_validation = (self.global_step, val)
            values = [val["loss"], val["liver_dice"], val["tumor_dice"]]
        val_loss, liver, tumor = broadcast_floats(values, self.dist, self._comm_device())
        with interrupts_deferred():  # the epoch's bookkeeping and its row, whole (see _record_epoch)
            row, stop = self._record_epoch(epoch, seconds, train_loss, do_val, val_loss, liver, tumor)
            if self.dist.is_main:
                csv_log.append(row)
        if self.dist.is_main:
            tb.scalars({"loss/train": train_loss, "loss/val": val_loss, "dice/val_liver": liver,
                        "dice/val_tumor": tumor, "lr": row["lr"]}, self.global_step)
            self.log(f"epoch {epoch + 1}/{cfg.epochs}  train loss {train_loss:.4f}  val liver Dice "
                     f"{_f(liver)}  val tumor Dice {_f(tumor)}  lr {row['lr']:.2e}  time {seconds:.1f}s")
        self.loss_sum, self.loss_count = 0.0, 0
        self.save_last(epoch + 1, 0)
        self._callback("on_epoch_end", dict(row))
        return dict(row, stop=stop)

    def _record_epoch(self, epoch: int, seconds: float, train_loss: float, do_val: bool, val_loss: float,
                      liver: float, tumor: float) -> Tuple[Dict[str, Any], bool]:
        """The best score (and ``best.pt``), early stopping and a plateau schedule updated from the epoch's
        validation, and its row added to the history: ``(row, stop)``. Run with interrupts held: an interrupt
        between the best-score update and the row left a checkpoint that redid the epoch's validation with the new
        best already recorded, so on resume the epoch did not count as improved (early stopping counted one more,
        the plateau schedule stepped twice, best.pt stayed on the epoch before: the training audit)."""
        cfg = self.config
        stop = False
        if do_val:
            score = validation_score(liver, tumor)
            improved = self.best.update(score, epoch + 1)
            if improved and self.dist.is_main:
                best_state = {k: v.detach().to("cpu").clone() for k, v in self.model.state_dict().items()}
                save_checkpoint(self.best_path, {"model": best_state, "epoch": epoch + 1,
                                                 "global_step": self.global_step, "config": cfg.to_json(),
                                                 "optimizer": {}})
                # kept for the package only when asked for: chosen on the validation cases, it makes their Dice
                # optimistic (the package held it by default before, and crossval reported that Dice)
                self.best_state = best_state if cfg.use_best_checkpoint else None
            stop = self.early.update(improved)
            if not getattr(self.scheduler, "per_step", True) and not math.isnan(val_loss):
                self.scheduler.step(val_loss)
        elif not getattr(self.scheduler, "per_step", True) and not self.val_cases:
            # plateau without any validation data: on the training loss. With validation it follows the
            # validation loss only; stepping on the training loss between validations made a training loss
            # its "best" and halved the rate although the validation loss fell.
            self.scheduler.step(train_loss)
        row = {"epoch": epoch + 1, "global_step": self.global_step, "train_loss": train_loss,
               "val_loss": val_loss, "val_liver_dice": liver, "val_tumor_dice": tumor,
               "lr": current_lr(self.optimizer), "epoch_time_s": seconds, "epoch_steps": self.steps_per_epoch}
        self.history.append(row)
        return row, stop

    def _log_stopped_epoch(self, epoch: int, seconds: float, csv_log: CsvLog) -> None:
        """The log.csv row of the epoch ``epoch`` (0-based) that the time limit stopped after
        ``self._interrupt_step`` of its steps: its training loss so far, no validation, ``epoch_steps`` below
        ``iterations_per_epoch``. A run stopped in its first epoch left no log.csv at all (nor curves.png), so
        nothing in its folder said what it had done. The row is not in the history (not a finished epoch), and
        ``--resume`` drops it (:meth:`CsvLog.truncate_after`) before that epoch's own row is logged."""
        train_loss = all_reduce_mean(self.loss_sum / max(1, self.loss_count), self.dist, self._comm_device())
        if not self.dist.is_main:
            return
        nan = float("nan")
        csv_log.append({"epoch": epoch + 1, "global_step": self.global_step, "train_loss": train_loss,
                        "val_loss": nan, "val_liver_dice": nan, "val_tumor_dice": nan,
                        "lr": current_lr(self.optimizer), "epoch_time_s": seconds,
                        "epoch_steps": int(self._interrupt_step)})

    # -- the end
    def _finish(self, stop_reason: str) -> TrainResult:
        """Validate the packaged weights (the last step's: the last epoch's, unless the time limit stopped the run
        mid-epoch; the best validation epoch's with ``use_best_checkpoint``), write the package (its whole-volume validation on the validation CTs included)
        and end the process group."""
        epochs_done = len(self.history)
        validation: Dict[str, Any] = {}
        package_path = None
        if self.dist.is_main:
            try:  # the curves and (with --use-best-checkpoint) a validation of the best weights: minutes
                plot_curves(self.log_dir / "log.csv", self.log_dir / "curves.png")
                best_used = self.config.use_best_checkpoint and self.best_state is not None
                if best_used:
                    self.model.load_state_dict(self.best_state)
                weights_step = self._packaged_weights_step(best_used)
                epoch_end_step = int(self.history[-1].get("global_step", 0)) if self.history else 0
                self._selection = validation_selection(self.config, bool(self.val_cases), best_used,
                                                       self.best.best_epoch, epochs_done, self.early.stopped,
                                                       weights_step, max(0, int(self.global_step) - epoch_end_step))
                if self.val_cached:
                    val = self._validate_packaged_weights(weights_step)
                    validation = {"method": slice_validation_method(self.config.val_max_slices),
                                  "liver_dice": val["liver_dice"], "tumor_dice": val["tumor_dice"],
                                  "cases": val["cases"], "best_epoch": self.best.best_epoch,
                                  "synthetic_lesions_in_validation": any(
                                      isinstance(c, SyntheticValidationCase) for c in self.val_eval_cases),
                                  "synthetic_lesions_seed": self.config.data_split_seed,
                                  **self._selection}
                if validation and getattr(self, "init_overlap", None):  # not held out: the start had seen them
                    validation["init_trained_on_validation_patients"] = sorted(self.init_overlap)
            except KeyboardInterrupt:  # said only 'interrupted' (the training run-time audit)
                self.log(f"interrupted before the model package was written; the run's checkpoint is kept. "
                         f"{self._rerun_with_resume()} to write the package.")
                raise
            if self.output is not None:
                # the whole-volume validation loads the package from its file; until it is done the package says
                # so (an interrupt there left a 'completed' package without it, which resume took as finished)
                pending = bool(self.val_cases)
                package_path = self._write_package(validation, VALIDATING if pending else stop_reason,
                                                   final_stop_reason=stop_reason if pending else None)
                try:
                    whole = self._whole_volume_validation(package_path)
                except KeyboardInterrupt:  # said only 'interrupted': no word of the package or of --resume
                    self.log(f"interrupted in the final whole-volume validation; the model package {package_path} "
                             f"is written but its validation is unfinished (training.stop_reason "
                             f"'{VALIDATING}'). {self._rerun_with_resume()} to finish the validation.")
                    raise
                if whole:
                    validation = dict(validation, whole_volume=whole)
                if pending:
                    package_path = self._write_package(validation, stop_reason)
                self.log(f"model package written to {package_path}")
            if validation.get("note"):
                self.log(f"note: the validation Dice of this run is {validation['note']}")
        barrier(self.dist)
        cleanup(self.dist)
        return TrainResult(package_path, self.log_dir, epochs_done, self.global_step, list(self.history),
                           validation, stop_reason, [c.case_id for c in self.train_cases],
                           [c.case_id for c in self.val_cases])

    def _packaged_weights_step(self, best_used: bool) -> Optional[int]:
        """The global step after which the packaged weights were taken: the run's last step, or with the best
        validation epoch's weights (``best_used``) that epoch's last step (None when its row is not in the
        history)."""
        if not best_used:
            return int(self.global_step)
        rows = [r for r in self.history if int(r.get("epoch", -1)) == int(self.best.best_epoch)]
        return int(rows[-1]["global_step"]) if rows and "global_step" in rows[-1] else None

    def _validate_packaged_weights(self, weights_step: Optional[int]) -> Dict[str, Any]:
        """The slice-level validation of the weights taken after global step ``weights_step``: the last epoch's
        validation when it validated these very weights (the last epoch always validates, and early stopping
        follows a validation: the same numbers were computed again), else a new one."""
        last = self._last_validation
        if last is not None and weights_step is not None and last[0] == weights_step:
            return last[1]
        return self._validate()

    def _write_package(self, validation: Dict[str, Any], stop_reason: str,
                       final_stop_reason: Optional[str] = None) -> Path:
        """The model package; ``stop_reason`` :data:`VALIDATING` with the run's own ``final_stop_reason`` while
        the whole-volume validation runs."""
        from ..package import save_model_package

        cfg = self.config
        training = {"cases": [c.case_id for c in self.train_cases],
                    "patients": sorted({c.patient_id for c in self.train_cases}),
                    "validation_cases": [c.case_id for c in self.val_cases],
                    # the held-out patients, which the log named and the package did not (the training audit)
                    "validation_patients": sorted({c.patient_id for c in self.val_cases}),
                    "num_train_cases": len(self.train_cases), "num_val_cases": len(self.val_cases),
                    "data": str(cfg.data), "data_path": resolved_data_path(cfg.data), "format": self.layout,
                    # the training CTs' spacings (with the validation CTs' they named spacings no training CT had)
                    **spacing_summary(self.train_cached),
                    **spacing_summary(self.val_cached, "validation_"),
                    "synthetic_lesions": self.synthetic_lesions, "command": self.command,
                    # how many training cases' labels hold tumor: none, with synthetic lesions off, is a network that
                    # never saw a tumor, which segment says (inference.segmenter.untrained_tumor_warnings)
                    "tumor_label_cases": sum(1 for c in self.train_cached if c.tumor_slices),
                    # the cases whose CT held a resampling's fill, cached as -1024 HU (the log named them only)
                    "cases_with_resampling_fill": resampling_fill_cases(self.train_cached, self.val_cached),
                    # the oblique CTs trained and validated on segment's patient-aligned grid (config.oblique_grid)
                    "cases_on_aligned_grid": aligned_grid_cases(self.train_cached, self.val_cached),
                    "config": recorded_recipe(cfg), "epochs_completed": len(self.history),
                    # the weights in this package (validation_selection): the last step's (the last epoch's,
                    # or some steps into the next after a time-limit stop: weights_note), or the best validation
                    # epoch's (use_best_checkpoint), and the global step they were taken after
                    **{k: self._selection[k] for k in ("weights", "weights_epoch", "weights_global_step",
                                                        "weights_note") if k in self._selection},
                    "global_step": self.global_step, "stop_reason": stop_reason,
                    # the schedule's total steps where it depends on them (cosine), and each --resume of the run
                    "schedule_total_steps": self.schedule_total_steps, "resumes": list(self.resumes),
                    **({"final_stop_reason": final_stop_reason} if final_stop_reason else {}),
                    "seconds": round(self.elapsed_before + time.time() - self.t0, 1),
                    "world_size": self.dist.world_size, "device": str(self.device),
                    "amp": amp_name(self.amp_dtype),  # what config.amp resolved to (auto: bf16 or fp16 by the GPU)
                    # each step's batch: batch_size patches in each process (config.batch_size is per process)
                    "patches_per_step": int(cfg.batch_size) * int(self.dist.world_size),
                    # what config.augmentation / config.lesions (user overrides only) resolved to, the files read
                    # and the software: a later change of defaults or data stays visible
                    "augmentation_resolved": None if self.augmenter is None else self.augmenter.config.to_dict(),
                    "lesions_resolved": None if self.lesion_inserter is None else self.lesion_inserter.config.to_dict(),
                    "data_files": data_files(list(self.train_cases) + list(self.val_cases), self._voxel_digests(),
                                             self._data_fingerprint),
                    "environment": dict(self.environment)}
        if getattr(self, "init_record", None) is not None:
            training["init_from"] = dict(self.init_record, validation_patients_it_trained_on=sorted(self.init_overlap),
                                         matched_by=dict(self.init_overlap))
        meta = {"training": training, "validation": validation, "labels": dict(LABEL_NAMES),
                # segment gives a body much smaller than these to the network enlarged (inference/body_size.py)
                BODY_SIZE_KEY: training_body_diameters(self.train_cached)}
        if cfg.name:
            meta["name"] = cfg.name
        if cfg.description:
            meta["description"] = cfg.description
        written = save_model_package(self._package_target(), self.model, self.pre_config, meta, overwrite=True)
        self._output_identity = _file_identity(written)
        return written

    def _package_target(self) -> Path:
        """Where the package goes: ``-o``, unless a file was created or replaced there while the run trained (not
        by this run: a user's copy, another run's package). That file is kept, and the package (and any later
        write of this run) goes to a free name beside it, said in the log. It used to be replaced."""
        now = _file_identity(self.output)
        if now is None or now == getattr(self, "_output_identity", None):
            return self.output
        stamp = time.strftime("%Y%m%d-%H%M%S")
        stem = self.output.name[:-len(".safetensors")]
        target = self.output.with_name(f"{stem}.{stamp}.safetensors")
        number = 1
        while target.exists():
            number += 1
            target = self.output.with_name(f"{stem}.{stamp}-{number}.safetensors")
        self.log(f"warning: '{self.output}' was created or replaced by another program while this run trained; it is "
                 f"kept, and this run's package is written to '{target}' instead.")
        self.output = target
        return target

    def _whole_volume_validation(self, package_path: Path) -> Dict[str, Any]:
        """Liver/tumor Dice on whole native-resolution validation volumes through the inference pipeline
        (one ``LiverTumorSegLib.inference.Segmenter`` for all cases, ``segment``'s default options), when that
        module is available. Empty dict otherwise. Same rules as ``evaluate``: tumor Dice 1.0 for a case where
        neither map holds tumor (LiTS per case), so the crossval table and ``evaluate`` agree; slice-level
        validation leaves such cases out.

        The Dice are those of the post-processed labels ``segment`` writes (largest liver component, small and
        uncertain lesions, the tube and lung-base rules: ``postprocessing`` records the options); ``raw_network``
        and each case's ``*_raw`` give the network's own labels before post-processing (the same network pass:
        :meth:`Segmenter.predict`, then :meth:`Segmenter.finish`).
        """
        if not self.val_cases:
            return {}
        try:
            from ..inference import SegmentationOptions, Segmenter  # type: ignore
        except ImportError:
            return {}
        from .datasets import load_case

        threads = torch.get_num_threads()  # the inference engine sets its own CPU thread count
        # fp32 on the CPU, the arithmetic training used there (segment's automatic bf16 would check itself and
        # print its verdict here, and could make the stored numbers depend on the CPU model)
        precision = "fp32" if self.device.type == "cpu" else "auto"
        try:
            segmenter = Segmenter(SegmentationOptions(model=str(package_path), device=str(self.device),
                                                      precision=precision,
                                                      allow_non_hu=bool(self.config.allow_non_hu),
                                                      oblique_grid=str(self.config.oblique_grid))).load()
            rows = []
            for case in self.val_cases:  # the package is loaded and the engine built once for all cases
                # content_warnings off: the slice cache said them (and repeats them when reused); judging the
                # labels again cost a dropped-values rule's pass per case (the whole-diff read)
                volume, labels = load_case(case, self.config.label_map or None, bool(self.config.allow_non_hu),
                                           content_warnings=False,
                                           aligned_for_model=str(self.config.oblique_grid) == "aligned")
                # segment_volume(volume, checked=True) in its two parts (load_case checked the CT), so that the
                # network's own labels are scored too
                output = segmenter.predict(volume)
                reference = reference_masks(labels)  # once for both rows
                raw = whole_volume_row(case.case_id, output.labels, reference)
                pred = segmenter.finish(volume, output).labels
                rows.append(dict(whole_volume_row(case.case_id, pred, reference),
                                 liver_dice_raw=raw["liver_dice"], tumor_dice_raw=raw["tumor_dice"]))
        except Exception as exc:  # noqa: BLE001 - the package is already written; keep slice-level metrics
            self.log(f"whole-volume validation skipped ({type(exc).__name__}: {exc})")
            return {}
        finally:
            torch.set_num_threads(threads)
        options = segmenter.options

        def means(suffix: str) -> Dict[str, float]:
            tumor = [r["tumor_dice" + suffix] for r in rows if not math.isnan(r["tumor_dice" + suffix])]
            return {"liver_dice": float(np.mean([r["liver_dice" + suffix] for r in rows])),
                    "tumor_dice": float(np.mean(tumor)) if tumor else float("nan")}

        return {"method": f"whole validation volumes through inference.Segmenter with {WHOLE_VOLUME_POSTPROCESSING} "
                          f"(postprocessing); raw_network: the same network output before post-processing",
                "precision": precision, **means(""),
                # named when written (crossval shows the name and the options as recorded: a later change of
                # segment's defaults must not relabel this package)
                "postprocessing_label": WHOLE_VOLUME_POSTPROCESSING,
                "postprocessing": segmenter.postprocessing.to_dict(), "tta": bool(options.tta),  # the threshold run
                "two_stage": bool(options.two_stage), "raw_network": means("_raw"), "cases": rows}


WHOLE_VOLUME_POSTPROCESSING = "segment's default post-processing"
"""How the whole-volume validation's post-processing is named in its ``method``, its ``postprocessing_label``
(recorded in the package) and so in crossval's table."""


class ReferenceMasks(NamedTuple):
    """A reference label map's liver (label >= 1) and tumor (label 2) masks, and whether it holds tumor."""

    liver: np.ndarray
    tumor: np.ndarray
    has_tumor: bool


def reference_masks(labels: np.ndarray) -> ReferenceMasks:
    """:class:`ReferenceMasks` of the label map ``labels`` ``(z, y, x)``: built once per case, for the rows of its
    raw and its post-processed prediction."""
    tumor = labels == 2
    return ReferenceMasks(labels >= 1, tumor, bool(tumor.any()))


def whole_volume_row(case_id: str, pred: np.ndarray, labels: Union[np.ndarray, ReferenceMasks]) -> Dict[str, Any]:
    """``{"case", "liver_dice", "tumor_dice", "reference_has_tumor"}`` of one validation volume (label maps
    ``(z, y, x)``; ``labels`` may be its :func:`reference_masks`), with ``evaluate``'s rules (LiTS per case):
    liver = label >= 1, tumor = label 2; Dice 1.0 when neither map holds the structure, 0.0 when only one does.
    Without a reference tumor the tumor Dice only says whether any tumor was predicted, which
    ``reference_has_tumor`` makes visible."""
    reference = labels if isinstance(labels, ReferenceMasks) else reference_masks(labels)
    return {"case": case_id, "liver_dice": _dice(pred >= 1, reference.liver),
            "tumor_dice": _dice(pred == 2, reference.tumor), "reference_has_tumor": reference.has_tumor}


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    from ..metrics.overlap import dice  # the one Dice definition (1.0 when both masks are empty)

    return dice(a, b)


def _f(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def _check_deep_supervision_weights(cfg: TrainConfig) -> None:
    """One weight per training output, refused before any case is cached (the loss checks it again per step)."""
    if cfg.deep_supervision_weights is None:
        return
    from ..models import training_output_count

    count = training_output_count(cfg.model, cfg.model_options)
    if len(cfg.deep_supervision_weights) != count:
        hint = (" (it has no auxiliary heads: model_options deep_supervision is off)" if count == 1 else "")
        raise InputError(f"deep_supervision_weights has {len(cfg.deep_supervision_weights)} value(s) but model "
                         f"'{cfg.model}' gives {count} output(s) in training{hint}; give one weight per output "
                         f"(main first), or leave it out.")


def autocast_or_not(device_type: str, dtype: Optional["torch.dtype"]) -> Any:
    """``torch.autocast(device_type, dtype=dtype)``, or no autocast at all when ``dtype`` is None (fp32 training):
    a disabled autocast with a float32 placeholder dtype, ``torch.autocast("cpu", dtype=torch.float32,
    enabled=False)``, raised "Currently, AutocastCPU only support Bfloat16" on torch 2.1, which the package allows,
    so every CPU training step failed there."""
    import contextlib

    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type, dtype=dtype)


def grad_scaler(device_type: str, enabled: bool) -> "torch.amp.GradScaler":
    """fp16's gradient scaler: ``torch.amp.GradScaler`` (torch >= 2.3), else ``torch.cuda.amp.GradScaler`` (2.1
    and 2.2, where only CUDA had one; the package allows torch>=2.1, and every Trainer made one)."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device_type, enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled and device_type == "cuda")


def train(config: TrainConfig, callbacks: Sequence[Any] = (), command: str = "",
          log: Callable[[str], None] = print) -> TrainResult:
    """Run one training as described by ``config`` (see :class:`TrainConfig`); returns a :class:`TrainResult`.

    Under ``torchrun`` every process calls this; rank 0 writes logs, checkpoints and the package.

    The training seeds torch's generators with ``config.seed`` (default 1234); the caller's random state is put
    back when it returns or raises (torch's CPU generator, and the CUDA ones that were in use before), so a
    notebook's or script's own draws after it are the ones its own seeding gives.
    """
    callers_random_state = rng_state()
    try:
        return _train(config, callbacks, command, log)
    finally:
        set_rng_state(callers_random_state)


def _train(config: TrainConfig, callbacks: Sequence[Any], command: str, log: Callable[[str], None]) -> TrainResult:
    trainer = Trainer(config, callbacks, command, log)
    log_dir = default_log_dir(config)
    created = not log_dir.exists() or holds_only_slice_cache(log_dir)  # a failed run's cache: cleared again
    with training_folder_lock(log_dir, config.output, say=log):
        try:
            trainer.setup()
            return trainer.fit()
        except BaseException:  # also Ctrl-C/SIGTERM before the first checkpoint: nothing there to resume
            # workers stopped before torch can report their deaths over this cleanup (or over the error being raised)
            call_with_interrupts_held(lambda: stop_loader_workers(getattr(trainer, "loader", None)))
            dist = getattr(trainer, "dist", None)
            if created and (dist is None or dist.is_main):
                remove_if_no_checkpoint(log_dir)
            raise


TRAIN_LOCK_FILE = ".livertumorseg-train.lock"
"""Held in a training folder while a run trains there; it holds the run's :func:`~..processes.process_mark`."""


def _busy_training_folder(log_dir: Path, held: str) -> InputError:
    from ..folder_lock import holder_description

    return InputError(f"Another training{holder_description(held)} is running in '{log_dir}'; wait for it to end, "
                      f"or give this run another -o (or --log-dir). Two runs there would each resume from and "
                      f"overwrite the other's checkpoint. (If no such run is going on, remove "
                      f"'{log_dir / TRAIN_LOCK_FILE}'.)")


@contextlib.contextmanager
def training_folder_lock(log_dir: Path, output: Optional[str],
                         say: Optional[Callable[[str], None]] = None) -> Iterator[None]:
    """Hold :data:`TRAIN_LOCK_FILE` in the training folder ``log_dir`` (made here when missing) for the ``with``
    block: a second run into a folder in use is refused (InputError naming the process) before it reads a
    checkpoint or caches a slice. Two runs in one folder had each resumed from the other's ``last.pt``, replaced it
    every epoch and written their epochs into one ``log.csv``. Under ``torchrun`` only rank 0 takes it (the other
    ranks write nothing there). Nothing is held where the folder cannot be made (an -o whose folder does not exist,
    a read-only place): the run's own checks then refuse it with their message. ``say``: where the line saying
    that the run waits for a killed run's leftover DataLoader workers goes (the training's own log)."""
    from ..folder_lock import folder_lock

    if os.environ.get("RANK", "0") != "0" or (output and not Path(output).parent.is_dir()):
        yield
        return
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        yield
        return
    with folder_lock(log_dir, TRAIN_LOCK_FILE, lambda held: _busy_training_folder(log_dir, held), what="training",
                     leftovers="leftover DataLoader workers", say=say):
        yield


VALIDATING = "validating"
"""A package's ``training.stop_reason`` while its whole-volume validation runs (``final_stop_reason`` holds the
run's own): a package an interrupt left like that is not finished, and ``--resume`` validates it again."""


def _file_identity(path: Optional[Path]) -> Optional[tuple]:
    """``(device, inode, size, modification time in ns)`` of the file at ``path``, None when there is none: two
    equal identities are one unchanged file."""
    try:
        status = os.stat(str(path))
    except (OSError, TypeError):
        return None
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


def _earlier_package_of_this_run(package: Path, log_dir: Path, config: TrainConfig, global_step: int) -> bool:
    """Whether ``package`` is this run's (:func:`_package_of_run`) but written before the checkpoint at
    ``global_step`` ended it (a time-limit stop's, or an unfinished validation's), so that --resume of the run, which
    stopped early since, still writes its package: such a file was taken as that package ('stopped early ...;
    nothing to resume', the review)."""
    from ..package import readable_package_metadata

    if not _package_of_run(package, log_dir, config):
        return False
    training = (readable_package_metadata(package) or {}).get("training") or {}
    finished = training.get("stop_reason") in ("completed", "early_stopping")
    return not (finished and int(training.get("global_step", -1) or -1) == int(global_step))


def _package_of_run(package: Path, log_dir: Path, config: TrainConfig) -> bool:
    """Whether the model package at ``package`` is one the run ``config`` (training folder ``log_dir``) may replace:
    written by a run whose training folder is ``log_dir`` (the folder its ``training.config`` names: ``log_dir``, or
    the default beside its ``output``, :func:`default_log_dir`; relative paths are read from the current folder),
    or by a run of the same experiment (:func:`differing_settings` finds no difference: a training folder moved or
    copied with its package, whose recorded folder is the old one). False for an unreadable file, one without a
    recorded training configuration, or another experiment's package."""
    from ..package import readable_package_metadata

    training = (readable_package_metadata(package) or {}).get("training") or {}
    saved = training.get("config")
    try:
        saved = json.loads(saved) if isinstance(saved, str) else saved
        if not isinstance(saved, dict) or not (saved.get("log_dir") or saved.get("output")):
            return False
        folder = default_log_dir(TrainConfig(log_dir=str(saved.get("log_dir") or ""),
                                             output=str(saved.get("output") or "")))
        if folder.resolve() == Path(log_dir).resolve():
            return True
        TrainConfig.from_dict(dict(saved))  # a configuration this library cannot read (a newer version's) is no
        # run's own: differing_settings says "" of it (a review found such a package replaced)
        return differing_settings(saved, config, package, saved_data_path=training.get("data_path")) == ""
    except (ValueError, TypeError, OSError, RuntimeError, InputError):
        return False


def _package_stop_reason(package: Optional[Path]) -> Optional[str]:
    """``training.stop_reason`` of the package at ``package`` (None for a missing or unreadable file)."""
    from ..package import readable_package_metadata

    reason = ((readable_package_metadata(package) or {}).get("training") or {}).get("stop_reason")
    return reason if isinstance(reason, str) else None


def pending_validation(package: Optional[Path]) -> Optional[str]:
    """The run's own stop reason when ``package`` was left in its final validation (:data:`VALIDATING`), else
    None (also for a missing or unreadable file)."""
    from ..package import readable_package_metadata

    training = (readable_package_metadata(package) or {}).get("training") or {}
    if training.get("stop_reason") != VALIDATING:
        return None
    return str(training.get("final_stop_reason") or "completed")


CACHE_FOLDER = "cache"
"""The default slice cache's folder name inside a training folder (``<log_dir>/cache``)."""


def remove_if_no_checkpoint(folder: Path) -> bool:
    """Clear ``folder`` (made by a run that then failed) unless it holds a checkpoint or package worth keeping
    for --resume; returns True when it was cleared. Only its default slice cache stays, when it holds cached
    cases: a data error found late (case 120 of 131) cost the caching of every case before it again. The next
    run reuses the entries whose source files are unchanged (:func:`holds_only_slice_cache`)."""
    folder = Path(folder)
    if not folder.is_dir() or any(folder.rglob("*.pt")) or any(folder.rglob("*.safetensors")):
        return False
    if not holds_finished_entries(folder / CACHE_FOLDER):
        shutil.rmtree(folder, ignore_errors=True)
        return True
    for entry in folder.iterdir():
        if entry.name == CACHE_FOLDER:
            continue
        if entry.is_dir() and not entry.is_symlink():  # e.g. a crossval fold's folder (the folds share this cache)
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    return True


RUN_MADE_NAMES = frozenset({CACHE_FOLDER, "checkpoints", "tensorboard", "log.csv", "curves.png", TRAIN_LOCK_FILE})
"""The entries a training run makes in its training folder."""


def holds_only_an_unsaved_run(folder: Path) -> bool:
    """Whether ``folder`` holds only entries a training run makes (:data:`RUN_MADE_NAMES`), its ``checkpoints/``
    folder among them (a run makes it when it starts) holding no checkpoint (``*.pt``): what a run killed (SIGKILL,
    out of memory, power cut) before its first checkpoint leaves, with nothing to continue from. A user's folder of
    ``tensorboard/`` and ``log.csv`` alone is not taken for one."""
    folder = Path(folder)
    if not (folder / "checkpoints").is_dir():
        return False
    names = {p.name for p in folder.iterdir()}
    return names <= RUN_MADE_NAMES and not any((folder / "checkpoints").glob("*.pt"))


def holds_only_slice_cache(folder: Path) -> bool:
    """Whether ``folder`` holds nothing but the slice cache a failed run left (:func:`remove_if_no_checkpoint`),
    which a new run may use without --overwrite."""
    if not Path(folder).is_dir():
        return False
    names = [p.name for p in Path(folder).iterdir() if p.name != TRAIN_LOCK_FILE]  # a running or killed run's lock
    return names == [CACHE_FOLDER] and holds_finished_entries(
        Path(folder) / CACHE_FOLDER)
