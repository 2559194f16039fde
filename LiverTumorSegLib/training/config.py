"""``TrainConfig``: every training option in one dataclass, loadable from YAML/JSON, overridable from the CLI.

Precedence: dataclass defaults < config file (``--config train.yaml``) < command-line options.
Unknown keys in a config file are an error (a typo would otherwise be silently ignored).
"""
import dataclasses
import functools
import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Union

from ..configutil import typed_scalar
from ..errors import InputError
from ..fileutil import read_text_file

FORMATS = ("auto", "lits", "msd", "ircadb", "csv")
LOSSES = ("ce", "dice", "dice_ce", "focal", "dice_focal")
LESION_AVERAGES = ("lesion", "image")
"""How the per-lesion loss term (:func:`.losses.lesion_dice_loss`) averages its lesions' Dice: ``lesion``, the mean
over the batch's lesions (a slice of 3 lesions weighs 3 times one of 1); ``image``, the mean over each sample's
(slice's) lesions, then the mean over the samples holding a scored lesion (Kofler et al. 2023, arXiv:2205.08209:
per image first, then over images)."""
OPTIMIZERS = ("adam", "adamw", "sgd", "adagrad")
SCHEDULES = ("cosine", "step", "plateau", "none")


VALID_OPTIONS_LEAD = "Valid options (as config keys):"
"""Begins the list of every option in the unknown-option refusal (the command line spells each with -- and -)."""

FREE_TEXT_FIELDS = {"name", "description"}
"""Text options where a number (YAML reads ``name: 2024`` as one) is taken as its text."""

_FREE_TYPED_FIELDS = {"preprocessing", "synthetic_lesions", "split_seed", "class_weights", "deep_supervision_weights"}
"""Fields that take more than one type (or None); validate() checks them."""


def _typed_value(name: str, value: Any, default: Any, source: str) -> Any:
    """``value`` for the option ``name`` as the type of its default (``configutil.typed_scalar``: booleans
    true/false, whole numbers whole and not text, other numbers also from numeric text, text text);
    options of more than one type pass as they are (validate() checks them), and a number for a free-text option
    is its text. InputError naming the option otherwise."""
    if name in _FREE_TYPED_FIELDS or isinstance(default, (dict, list, tuple)) or default is None:
        return value
    if isinstance(default, str) and name in FREE_TEXT_FIELDS and isinstance(value, numbers.Real) \
            and not isinstance(value, bool):
        return str(value)  # 'name: 2024' in YAML is a number: it was always stored as text
    return typed_scalar(f"Option {name} in {source}", value, default, whole_from_text=False)


_BOOKKEEPING_FIELDS = ("given",)
"""TrainConfig fields that are no option (:attr:`TrainConfig.given`)."""


MAX_PATCH_SIZE = 2048
"""The largest training patch, pixels: more than any CT slice on a training grid (512 pixels of 0.5 mm are 171 at
1.5 mm; 1024 pixels of 0.4 mm at 0.5 mm are 820)."""


MAX_NUM_WORKERS = 256
"""The most DataLoader worker processes (``num_workers``): each is a process of its own holding a copy of the
data set's index; 2-8 keep a GPU fed, and 256 is beyond what any machine runs usefully (1000000 tried to fork as
many). A fixed number, not the CPU count, so that a recipe or checkpoint written on one machine loads on another."""

MAX_BATCH_SIZE = 4096
"""The largest batch (``batch_size``, patches): 4096 patches of 160 x 160 pixels in 3 channels are 1.3 GB of
float32 input before the network's activations; the bundled models use 16."""

MAX_COUNT = 10_000_000
"""The most epochs, batches per epoch, steps or validations a whole-number count option takes: far beyond any
training (the bundled models run 84 epochs of 100 batches), finite so that a typo of many digits is refused."""


@dataclass
class TrainConfig:
    """All options of a training run. Units: lr per step, times in minutes, sizes in pixels.

    ``iterations_per_epoch`` batches make an epoch (sampling-based epochs, independent of data size).
    ``patch_size``: square random crop (pixels of the preprocessed grid), biased toward the liver.
    ``liver_slice_fraction``: the chance that a centre slice is drawn from the case's liver slices (else from all
    its slices, uniformly, which adds liver slices too: 0.85 gives 0.91 liver slices on a case with 40 % of them);
    it is also the chance that the patch is centred on a liver pixel of that slice (else on any pixel, on an oblique
    CT's aligned grid one inside its footprint whose patch is at least half trainable where one can be; moved inward
    where the patch would leave the image). Cases are drawn
    uniformly, whatever their slice count: a 3-slice case gets as many samples as a 300-slice one.
    ``tumor_slice_fraction``: of the liver-slice draws, fraction taken from tumor slices when any exist.
    ``synthetic_lesions``: "auto" (on when the training data has no tumor label), true or false.
    ``label_map``: remap raw label values, e.g. ``{"5": 1}``; values not listed become 0. Empty = no remap.
    ``lesion_loss_weight``: adds that times a per-lesion Dice of the tumor class to ``loss``
    (:func:`.losses.lesion_dice_loss`: every tumor of a sample weighs the same, whatever its size; 0 = off).
    ``lesion_loss_min_pixels``: that term leaves out tumor components of a sample's slice with fewer pixels (of
    the network's grid, 1.5 mm in the default recipes; 0 = every one scored), and their pixels count as no false
    positive of the slice's other lesions. ``lesion_loss_average``: "lesion" (the mean over the batch's lesions) or
    "image" (over each sample's lesions, then over the samples holding one: Kofler et al.'s). A run recorded
    before these options read their defaults (0, "lesion": the term as it was).
    ``deep_supervision_weights``: main output first, then the auxiliary outputs finest first (default 1, 1/2,
    1/4, ...; normalised to sum 1).
    ``val_fraction``: patient-level hold-out used when ``folds`` is 0; ``folds``/``fold``: k-fold split.
    ``amp``: "auto" (bf16 on a CUDA GPU computing it natively, fp16 on an older one, off on CPU), "bf16", "fp16",
    "off".
    ``init_from``: a model package (a path or an installed model's name) whose weights the network starts from
    (fine-tuning; :mod:`.init_from`): ``model``, ``model_options`` and ``preprocessing`` must be its own.
    ``resume``: continue from ``<log_dir>/checkpoints/last.pt``.
    ``allow_non_hu``: train on volumes that do not look like CT in HU (each case gets ``segment``'s checks).
    ``oblique_grid``: "aligned" (default): a CT turned more than 5 degrees against the patient's axes is trained and
    validated on the patient-aligned grid ``segment`` gives the network (:func:`.slice_cache.aligned_network_ct`);
    "stored": on its own oblique slices, as before (and ``segment --oblique-grid stored`` in the whole-volume
    validation). A ``resume`` of a checkpoint written before this option existed (its saved config has no
    ``oblique_grid``: it was trained on oblique CTs as stored) continues "stored" unless ``oblique_grid`` was given
    (:attr:`given`), which a resume with "aligned" then refuses as another setting.
    ``max_time_minutes``: stop gracefully when exceeded and still write the model package (0 = no limit).
    ``use_best_checkpoint``: package (and validate on whole volumes) the weights of the best validation epoch
    instead of the last epoch's. Chosen on the validation cases, so the validation numbers it reports are
    optimistic; the package and crossval say so. Default off: the last epoch's weights (nnU-Net's convention).

    Copies: :meth:`updated` marks the values it sets as :attr:`given` (as the user's); ``dataclasses.replace``
    does not: it keeps the source's :attr:`given`, so a value it changes still reads as a default (a resume then
    takes a replaced ``oblique_grid`` as not asked for). In the library only :meth:`from_json` calls it on a
    TrainConfig, setting :attr:`given` itself; change a value the user gave with :meth:`updated`.
    """

    data: str = ""
    format: str = "auto"
    label_map: Dict[str, int] = field(default_factory=dict)
    model: str = "unet"
    model_options: Dict[str, Any] = field(default_factory=dict)
    preprocessing: Union[str, Dict[str, Any]] = "default"
    init_from: str = ""
    augmentation: Dict[str, Any] = field(default_factory=dict)
    lesions: Dict[str, Any] = field(default_factory=dict)
    synthetic_lesions: Union[str, bool] = "auto"
    loss: str = "dice_ce"
    lesion_loss_weight: float = 0.0
    lesion_loss_min_pixels: int = 0
    lesion_loss_average: str = "lesion"
    class_weights: Optional[List[float]] = None
    deep_supervision_weights: Optional[List[float]] = None
    optimizer: str = "adamw"
    lr: float = 3e-4
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup: int = 0
    step_size: int = 30
    gamma: float = 0.1
    plateau_patience: int = 5
    plateau_factor: float = 0.5
    epochs: int = 50
    iterations_per_epoch: int = 250
    batch_size: int = 16
    patch_size: int = 160
    liver_slice_fraction: float = 0.85
    tumor_slice_fraction: float = 0.5
    every_other_slice: bool = False
    val_fraction: float = 0.2
    folds: int = 0
    fold: int = 0
    val_every: int = 1
    val_max_slices: int = 0
    seed: int = 1234
    split_seed: Optional[int] = None   # seed of the patient split; None: ``seed`` (see ``data_split_seed``)
    device: str = "auto"
    amp: str = "auto"
    channels_last: bool = False
    num_workers: int = 2
    early_stopping_patience: int = 0
    use_best_checkpoint: bool = False
    grad_clip: float = 0.0
    output: str = ""
    log_dir: str = ""
    cache_dir: str = ""
    resume: bool = False
    overwrite: bool = False
    allow_non_hu: bool = False
    oblique_grid: str = "aligned"
    max_time_minutes: float = 0.0
    checkpoint_every_steps: int = 0
    progress_bar: bool = True
    tensorboard: bool = True
    name: str = ""
    description: str = ""

    given: FrozenSet[str] = field(default=frozenset(), compare=False, repr=False)
    """The options the user set (a config file's keys, the typed options), not the defaults: those
    :meth:`from_dict`/:meth:`updated` applied, or passed by name to ``TrainConfig(...)``. Bookkeeping, not an
    option: :meth:`field_names`, :meth:`to_dict` (the checkpoint's and package's config) and the command line leave
    it out, and equality ignores it. ``dataclasses.replace`` keeps it as it was (the values it changes are not
    marked: use :meth:`updated` for values the user gave); :meth:`from_json` (a run's stored config, typed by
    nobody) starts it empty. A resume reads it to tell ``oblique_grid`` asked for from the default."""

    # ----------------------------------------------------------------- construction
    @classmethod
    def field_names(cls) -> List[str]:
        """The options (every field but :attr:`given`)."""
        return [f.name for f in dataclasses.fields(cls) if f.name not in _BOOKKEEPING_FIELDS]

    @classmethod
    def from_dict(cls, values: Dict[str, Any], source: str = "config") -> "TrainConfig":
        """Build from a mapping; unknown keys raise :class:`InputError` naming them and the valid keys."""
        return cls().updated(values, source)

    @classmethod
    def from_file(cls, path: Union[str, Path]) -> "TrainConfig":
        """Load a ``.yaml``/``.yml``/``.json`` file holding a mapping of option -> value."""
        return cls.from_dict(load_config_file(path), source=str(path))

    def updated(self, values: Dict[str, Any], source: str = "config") -> "TrainConfig":
        """A copy with ``values`` applied (``None`` values are ignored); keys may use ``-`` or ``_``."""
        known = set(self.field_names())
        current = self.to_dict()
        unknown = []
        for key, value in (values or {}).items():
            name = str(key).replace("-", "_")
            if name not in known:
                unknown.append(str(key))
                continue
            if value is not None:
                current[name] = _typed_value(name, value, current[name], source)
        if unknown:
            import difflib

            close = {key: difflib.get_close_matches(key.replace("-", "_"), sorted(known), n=1, cutoff=0.6)
                     for key in sorted(unknown)}
            hint = "; ".join(f"{key}: did you mean {found[0]}?" for key, found in close.items() if found)
            raise InputError(f"Unknown training option(s) {', '.join(sorted(unknown))} in {source}"
                             f"{f' ({hint})' if hint else ''}. {VALID_OPTIONS_LEAD} {', '.join(sorted(known))}.")
        given = frozenset(self.given) | {str(key).replace("-", "_") for key, value in (values or {}).items()
                                         if value is not None}
        cfg = TrainConfig(**current, given=given)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise :class:`InputError` for values that cannot work (bad choice names, non-positive sizes)."""
        def choice(name: str, allowed) -> None:
            value = getattr(self, name)
            if value not in allowed:
                raise InputError(f"Option {name}={value!r} is not one of {', '.join(allowed)}.")
        from ..package import MAX_TEXT_CHARS, looks_like_path

        for name in sorted(FREE_TEXT_FIELDS):  # the package refused them after the training (naming a function)
            if len(str(getattr(self, name) or "")) > MAX_TEXT_CHARS:
                raise InputError(f"Option {name} is {len(str(getattr(self, name)))} characters long; a model package "
                                 f"holds at most {MAX_TEXT_CHARS}. Shorten it (--{name}).")
        if self.name and looks_like_path(str(self.name)):  # 'segment --model NAME' would read it as a file path
            raise InputError(f"Option name {self.name!r} has a path separator or ends in a weights suffix, so "
                             f"'segment --model {self.name}' would take it for a file path and never find the "
                             f"installed model by it; choose a name without '/' or '\\' and without such an "
                             f"ending (e.g. {str(self.name).replace('/', '-').replace(chr(92), '-').rsplit('.', 1)[0]!r}).")
        choice("format", FORMATS)
        choice("loss", LOSSES)
        choice("optimizer", OPTIMIZERS)
        choice("schedule", SCHEDULES)
        choice("amp", ("auto", "bf16", "fp16", "off"))
        choice("oblique_grid", ("aligned", "stored"))
        choice("lesion_loss_average", LESION_AVERAGES)
        if str(self.synthetic_lesions).lower() not in ("auto", "true", "false"):
            raise InputError(f"Option synthetic_lesions={self.synthetic_lesions!r} must be auto, true or false.")
        for name in ("epochs", "iterations_per_epoch", "batch_size", "patch_size"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"Option {name} must be at least 1 (got {getattr(self, name)}).")
        if int(self.patch_size) > MAX_PATCH_SIZE:  # 100000 ended in a DataLoader worker's MemoryError traceback
            raise InputError(f"Option patch_size={self.patch_size} is larger than any slice: at most "
                             f"{MAX_PATCH_SIZE} pixels of the preprocessed grid (a patch as large as the slice covers "
                             f"it whole; the bundled models use 192).")
        if not 0.0 <= float(self.liver_slice_fraction) <= 1.0:
            raise InputError(f"liver_slice_fraction must be in [0, 1] (got {self.liver_slice_fraction}).")
        if self.folds == 1 or self.folds < 0:  # first: a negative count made the fold range message '0..-3'
            raise InputError(f"folds must be 0 (hold-out split) or at least 2 (got {self.folds}).")
        if not self.folds and int(self.fold) != 0:
            raise InputError(f"fold {self.fold} needs folds K (--folds K: K-fold cross-validation, fold 0..K-1); "
                             f"without it the split is a hold-out of val_fraction and a fold number means nothing.")
        if self.folds and not 0 <= int(self.fold) < int(self.folds):
            raise InputError(f"fold {self.fold} is outside 0..{int(self.folds) - 1} for folds={self.folds}.")
        if self.split_seed is not None and (isinstance(self.split_seed, bool) or not isinstance(self.split_seed, int)
                                            or self.split_seed < 0):
            raise InputError(f"split_seed must be a whole number >= 0 or left out (got {self.split_seed!r}).")
        if not self.folds and not 0.0 <= float(self.val_fraction) < 1.0:
            raise InputError(f"val_fraction must be in [0, 1) (got {self.val_fraction}).")
        for name in ("label_map", "model_options", "augmentation", "lesions"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, dict):
                raise InputError(f"Option {name} must be a JSON object like {{\"key\": value}}, got "
                                 f"{type(value).__name__} {value!r}.")
        if self.label_map:  # evaluate's rules: integer keys 0..255 ('1_0' was 10), each value once ('1' and '01')
            import json

            from ..io.labels import parse_label_map_option
            for key in self.label_map:  # text, or a YAML file's unquoted integer (5: 1)
                if isinstance(key, bool) or not isinstance(key, (str, int)):
                    raise InputError(f"label_map key {key!r} is not an integer label value.")
            pairs = ", ".join(f"{json.dumps(str(k))}: {json.dumps(v)}" for k, v in self.label_map.items())
            parse_label_map_option("{" + pairs + "}", option="label_map")  # 5 and "5" in one YAML map: refused
        for name in ("class_weights", "deep_supervision_weights"):
            _check_weights(name, getattr(self, name))
        self._check_numeric_ranges()
        self._check_option_combinations()
        self._check_nested_options()

    def _check_option_combinations(self) -> None:
        """Options that would do nothing, or fail only at the first training step after every case was cached:
        class weights of another length than the 3 classes (refused at step 1) or with the dice loss (which
        does not use them: kept in the package as if they had); a warmup with the plateau schedule (which has
        none: the run started at the full learning rate)."""
        from ..package import SEGMENTATION_CLASSES

        if self.class_weights is not None:
            if len(self.class_weights) != SEGMENTATION_CLASSES:
                raise InputError(f"Option class_weights needs one weight per class, {SEGMENTATION_CLASSES} "
                                 f"(background, liver, tumor); got {len(self.class_weights)}: "
                                 f"{list(self.class_weights)!r}.")
            if self.loss == "dice":
                raise InputError("Option class_weights weights the cross-entropy or focal part of the loss; "
                                 "loss dice has neither, so they would do nothing. Use loss dice_ce (or ce, focal, "
                                 "dice_focal), or leave class_weights out.")
        if not self.folds and float(self.val_fraction) == 0.0:
            deciding = [name for name, on in (("early_stopping_patience", int(self.early_stopping_patience) > 0),
                                              ("use_best_checkpoint", bool(self.use_best_checkpoint))) if on]
            if deciding:  # trained to the end and packaged the last weights, with no word that they did nothing
                raise InputError(f"Option {' and '.join(deciding)} decide{'s' if len(deciding) == 1 else ''} on "
                                 f"the validation cases, and val_fraction 0 leaves none: "
                                 f"{'it' if len(deciding) == 1 else 'they'} would do nothing. Give a val_fraction "
                                 f"above 0 (or folds), or leave {'it' if len(deciding) == 1 else 'them'} out.")
        lesion_options = [name for name, on in (("lesion_loss_min_pixels", int(self.lesion_loss_min_pixels) > 0),
                                                ("lesion_loss_average", self.lesion_loss_average != "lesion")) if on]
        if lesion_options and float(self.lesion_loss_weight) == 0.0:
            raise InputError(f"Option {' and '.join(lesion_options)} shape{'s' if len(lesion_options) == 1 else ''} "
                             f"the per-lesion loss term, which lesion_loss_weight 0 leaves out: "
                             f"{'it' if len(lesion_options) == 1 else 'they'} would do nothing. Give a "
                             f"lesion_loss_weight above 0, or leave {'it' if len(lesion_options) == 1 else 'them'} "
                             f"out.")
        if self.schedule == "plateau" and int(self.warmup) > 0:
            raise InputError(f"Option warmup ({self.warmup} steps) is not applied by schedule plateau, which changes "
                             f"the learning rate only after validations; use schedule cosine, step or none with a "
                             f"warmup, or set warmup to 0.")

    # (option, low, high, low inclusive, high inclusive): a value outside was an internal error after every case
    # was cached (seed -1, lr -1, plateau_factor 1.5) or trained silently (tumor_slice_fraction 7)
    _RANGES = (("lr", 0.0, 10.0, False, True),
               ("weight_decay", 0.0, 10.0, True, True), ("momentum", 0.0, 1.0, True, False),
               ("plateau_factor", 0.0, 1.0, False, False), ("gamma", 0.0, 1.0, False, True),
               ("tumor_slice_fraction", 0.0, 1.0, True, True), ("grad_clip", 0.0, math.inf, True, False),
               ("max_time_minutes", 0.0, math.inf, True, False), ("lesion_loss_weight", 0.0, 100.0, True, True))
    _NON_NEGATIVE_INTEGERS = ("warmup", "plateau_patience", "val_max_slices", "num_workers",
                              "early_stopping_patience", "checkpoint_every_steps", "lesion_loss_min_pixels")
    _POSITIVE_INTEGERS = ("step_size", "val_every")
    # (option, the most it takes, why): a whole number beyond was taken (only int64 was checked) and failed late or
    # never: num_workers 1000000 went on to fork a million DataLoader workers, batch_size 10**9 to allocate them
    _UPPER_LIMITS = (
        ("num_workers", MAX_NUM_WORKERS, "each worker is a process of its own; 2-8 feed a GPU, 0 = in the main "
                                         "process"),
        ("batch_size", MAX_BATCH_SIZE, "a batch of 4096 patches of 160 pixels is 1.3 GB of input alone; the bundled "
                                       "models use 16"),
        ("epochs", MAX_COUNT, "far more than any training needs; the bundled models train 84"),
        ("iterations_per_epoch", MAX_COUNT, "far more than any training needs; the bundled models use 100"),
        ("warmup", MAX_COUNT, "steps, far more than any training needs"),
        ("step_size", MAX_COUNT, "epochs, far more than any training needs"),
        ("plateau_patience", MAX_COUNT, "validations, far more than any training needs"),
        ("val_every", MAX_COUNT, "epochs, far more than any training needs"),
        ("val_max_slices", MAX_COUNT, "more slices than any CT holds; 0 = all slices"),
        ("early_stopping_patience", MAX_COUNT, "validations, far more than any training needs; 0 = never stop early"),
        ("checkpoint_every_steps", MAX_COUNT, "steps, far more than any training needs; 0 = at each epoch's end only"),
        ("lesion_loss_min_pixels", MAX_PATCH_SIZE ** 2, "pixels, the most a slice holds; 0 = every lesion scored"),
    )

    def _check_numeric_ranges(self) -> None:
        for name, low, high, low_in, high_in in self._RANGES:
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and \
                (low <= value if low_in else low < value) and (value <= high if high_in else value < high)
            if not ok:
                span = f"{'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"
                raise InputError(f"Option {name} must be a finite number in {span} (got {value!r}).")
        for names, minimum in ((self._NON_NEGATIVE_INTEGERS, 0), (self._POSITIVE_INTEGERS, 1)):
            for name in names:
                value = getattr(self, name)
                if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                    raise InputError(f"Option {name} must be a whole number >= {minimum} (got {value!r}).")
        for name, most, why in self._UPPER_LIMITS:
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool) and value > most:
                raise InputError(f"Option {name} must be at most {most} (got {value}): {why}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2 ** 32:
            raise InputError(f"Option seed must be a whole number from 0 to {2 ** 32 - 1} (numpy's seed range; got "
                             f"{self.seed!r}).")

    def _check_nested_options(self) -> None:
        """Build the augmentation and synthetic-lesion settings now, so a typo is refused before any case is
        cached (hours on LiTS), also when 'auto' later turns synthetic lesions off; ``enabled`` must be a real
        true/false (the text "false" turned augmentation on)."""
        from .augmentation import AugmentationConfig
        from .synthetic_lesions import LesionConfig

        augmentation = dict(self.augmentation or {})
        enabled = augmentation.pop("enabled", True)
        if not isinstance(enabled, bool):
            raise InputError(f"augmentation 'enabled' must be true or false (JSON), got {enabled!r}.")
        AugmentationConfig.from_dict(augmentation)
        LesionConfig.from_dict(dict(self.lesions or {}))

    # ----------------------------------------------------------------- derived values
    @property
    def data_split_seed(self) -> int:
        """Seed of the patient split (hold-out and k-fold): ``split_seed`` when given, else ``seed``.

        With only ``seed``, two training seeds of "fold 0" hold out different patients; runs that compare
        training seeds or recipes on the same folds must share a ``split_seed``."""
        return int(self.seed if self.split_seed is None else self.split_seed)

    @property
    def use_synthetic_lesions(self) -> Optional[bool]:
        """True/False when forced, None for "auto" (decided from the data)."""
        value = str(self.synthetic_lesions).lower()
        return None if value == "auto" else value == "true"

    def to_dict(self) -> Dict[str, Any]:
        """The options as a mapping (what a checkpoint and a package record): :attr:`given` left out."""
        values = dataclasses.asdict(self)
        for name in _BOOKKEEPING_FIELDS:
            values.pop(name, None)
        return values

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, given: Iterable[str] = ()) -> "TrainConfig":
        """The config a checkpoint's ``config`` (:meth:`to_json`) records. Its :attr:`given` is ``given`` (empty by
        default): the stored values are a run's record, typed by nobody now; from_dict marked every one of them
        given, so an ``oblique_grid`` recorded "aligned" refused a resume of a checkpoint written before the option
        as if "aligned" had been asked for. A caller passing a config on (e.g. to each process of a distributed
        run) passes its :attr:`given` along."""
        cfg = cls.from_dict(json.loads(text), source="checkpoint")
        return dataclasses.replace(cfg, given=frozenset(given))


_DATACLASS_INIT = TrainConfig.__init__


@functools.wraps(_DATACLASS_INIT)
def _init_noting_given(self, *args, **kwargs) -> None:
    """The dataclass's ``__init__``; without a ``given`` (``dataclasses.replace`` passes the source's), the options
    passed are :attr:`TrainConfig.given`: ``TrainConfig(oblique_grid="aligned")`` asks for it as the command line's
    ``--oblique-grid aligned`` does."""
    _DATACLASS_INIT(self, *args, **kwargs)
    if "given" not in kwargs and len(args) < len(dataclasses.fields(TrainConfig)):
        self.given = frozenset(TrainConfig.field_names()[:len(args)]) | frozenset(kwargs)


TrainConfig.__init__ = _init_noting_given


def _check_weights(name: str, weights: Any) -> None:
    """None, or a non-empty list of finite numbers >= 0 with at least one > 0; else InputError."""
    if weights is None:
        return
    if not isinstance(weights, (list, tuple)) or not weights or any(
            isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0 for w in weights):
        each = ("one per output: the main one first, then the auxiliary ones finest first (e.g. [1, 0.5, 0.25])"
                if name == "deep_supervision_weights" else "one per class (e.g. [1, 1, 3])")
        raise InputError(f"Option {name} must be a list of finite numbers >= 0, {each}; got {weights!r}.")
    if not any(w > 0 for w in weights):
        raise InputError(f"Option {name} must have at least one weight above 0; got {list(weights)!r}.")


def _one_line_parse_error(exc: BaseException) -> str:
    """A JSON or YAML parse error in one line: PyYAML's message spans five (problem, context, a quoted source line
    and a caret), which broke the CLI's one-line error; its problem and line/column are kept."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if problem and mark is not None:
        context = getattr(exc, "context", None)
        return f"{problem}{' ' + context if context else ''} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(exc).split())


def load_config_file(path: Union[str, Path]) -> Dict[str, Any]:
    """Read a YAML or JSON mapping. Raises :class:`InputError` for a missing file or a non-mapping."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Training config file '{path}' does not exist.")
    text = read_text_file(path, "Training config")
    from ..fileutil import json_loads_noting_repeats, yaml_loads_noting_repeats

    try:
        if path.suffix.lower() == ".json":
            values, repeated = json_loads_noting_repeats(text)
        else:
            values, repeated = yaml_loads_noting_repeats(text)
    except Exception as exc:  # noqa: BLE001 - parse errors of either library
        raise InputError(f"Cannot parse training config '{path}': {_one_line_parse_error(exc)}") from None
    if repeated:  # the last value was taken without a word ('epochs: 2' ... 'epochs: 1'), as the command line refuses
        named = ", ".join(repr(key) for key in dict.fromkeys(repeated))
        raise InputError(f"Training config '{path}' gives the key(s) {named} more than once; give each key once.")
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise InputError(f"Training config '{path}' must hold a mapping of option: value, "
                         f"not a {type(values).__name__}.")
    return with_home_expanded(values)


RECIPE_PATH_KEYS = ("data", "output", "log_dir", "cache_dir", "init_from", "preprocessing")
"""The recipe keys whose value may be a path: a leading '~' there is the home folder (a file has no shell to expand
it; 'log_dir: ~/trlogs' made ./~/trlogs and 'data: ~/d/list.csv' was called missing)."""


def with_home_expanded(values: Dict[str, Any]) -> Dict[str, Any]:
    """``values`` (a recipe's mapping) with a leading '~' of each :data:`RECIPE_PATH_KEYS` value taken as the home
    folder where a shell would take it (``fileutil.unexpanded_home_prefix``: '~', '~/...', '~name' of an account
    here; not '~runs' of none), as :func:`~..resources.expand_home` does, also where a folder named '~' is in the
    working folder (no shell reads a file: the user meant the home folder); keys spelt with '-' too."""
    from ..fileutil import unexpanded_home_prefix
    from ..resources import expand_home

    def expanded(key: Any, value: Any) -> Any:
        is_path = str(key).replace("-", "_") in RECIPE_PATH_KEYS and isinstance(value, str)
        if is_path and unexpanded_home_prefix(value, folder_here_counts=False):
            try:
                return str(expand_home(value))
            except InputError as exc:  # no home folder to take it as: the key named
                raise InputError(f"Training config key '{key}': {exc}") from None
        return value

    return {key: expanded(key, value) for key, value in values.items()}
