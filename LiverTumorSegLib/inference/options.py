"""Segmentation settings in one place: :class:`SegmentationOptions` (frozen, validated, JSON- and CLI-able).

The same object flows CLI -> library -> engine -> the Slicer module's child process (nnU-Net's predictor
settings and SlicerNNUnet's ``Parameter`` were the models): ``to_dict``/``from_dict`` for JSON and parameter
nodes, ``to_cli_args()`` for ``livertumorseg segment`` arguments that parse back to an equal object
(:func:`add_segmentation_arguments` + :func:`options_from_args` are that parser's half).

Also the one definition of the choices and suffixes several callers need: :data:`DEVICE_CHOICES`,
:data:`BACKENDS`, :data:`LABEL_MAP_SUFFIXES`, :data:`SEG_NRRD_SUFFIX`, :data:`PROBABILITY_SUFFIXES`,
:data:`PREVIEW_SUFFIX`, the post-processing switches (:data:`POSTPROCESSING_SWITCHES`) and
:func:`override_window`.

```python
options = SegmentationOptions(model="default", device="cpu", two_stage=True)
options.to_dict(); SegmentationOptions.from_dict(d); options.to_cli_args()   # ["--device", "cpu", "--two-stage"]
dataclasses.replace(options, tta=True)                                      # validated again
```
"""
import copy
import dataclasses
import json
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..argtypes import number
from ..errors import InputError, option_hint
from .device import DEVICE_CHOICES, MAX_BATCH_SIZE, MAX_THREADS, PRECISIONS, check_count, check_precision, cuda_index
from .engine import BACKENDS
from .postprocess import DEFAULT_MIN_LESION_PROBABILITY, LESION_PROBABILITY_STATISTICS, PostprocessingOptions

__all__ = ["SegmentationOptions", "DEVICE_CHOICES", "BACKENDS", "LABEL_MAP_SUFFIXES", "SEG_NRRD_SUFFIX",
           "OUTPUT_SUFFIXES", "PROBABILITY_SUFFIXES", "PREVIEW_SUFFIX", "POSTPROCESSING_SWITCHES",
           "add_segmentation_arguments", "options_from_args", "override_window", "check_device_name",
           "segment_command_args"]

LABEL_MAP_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha")  # label maps written by io.write_label_map
SEG_NRRD_SUFFIX = ".seg.nrrd"  # Slicer segmentation (needs slicer-core)
OUTPUT_SUFFIXES = LABEL_MAP_SUFFIXES + (SEG_NRRD_SUFFIX,)
PROBABILITY_SUFFIXES = LABEL_MAP_SUFFIXES  # the uint8 tumor probability map
PREVIEW_SUFFIX = ".png"
OBLIQUE_GRIDS = ("aligned", "stored")
"""Where the network runs for a CT turned more than 5 degrees against the patient's axes (``--oblique-grid``):
``aligned``, a patient-aligned grid (:mod:`.axis_aligned`), or ``stored``, the CT's own oblique slices."""


@dataclass(frozen=True)
class PostprocessingSwitch:
    """How one :class:`PostprocessingOptions` field appears on the command line.

    ``kind``: ``"off"`` = a flag that sets the (default True) field to False; ``"value"`` = a number option;
    ``"choice"`` = one word of ``choices``.
    """

    field: str
    flag: str
    kind: str
    help: str
    choices: Tuple[str, ...] = ()


# One row per PostprocessingOptions field (a test checks that every field has one).
POSTPROCESSING_SWITCHES = (
    PostprocessingSwitch("largest_liver_component", "--keep-all-liver-components", "off",
                         "do not reduce the liver to its largest connected component"),
    PostprocessingSwitch("fill_liver_holes", "--no-fill-holes", "off", "do not fill holes inside the liver"),
    PostprocessingSwitch("tumor_inside_liver", "--allow-tumor-outside-liver", "off",
                         "keep tumor voxels far from the liver"),
    PostprocessingSwitch("liver_dilation_mm", "--tumor-liver-margin-mm", "value",
                         "tumor components with no voxel within this distance (mm) of the liver are removed "
                         "(0: only those not touching it)"),
    PostprocessingSwitch("min_lesion_ml", "--min-lesion-ml", "value",
                         "lesions smaller than this (mL) become liver (0 keeps all)"),
    PostprocessingSwitch("below_lungs", "--keep-liver-above-lungs", "off",
                         "keep liver labels above the lung bases and in the heart (found from the CT's own lungs)"),
    PostprocessingSwitch("tubular_lesions_to_liver", "--keep-tubular-lesions", "off",
                         "keep tube-shaped tumor components as tumor (by default those no more than 15 HU darker "
                         "than the liver, i.e. vessels, become liver; clearly darker tubes stay tumor)"),
    PostprocessingSwitch("min_lesion_probability", "--min-lesion-probability", "value",
                         "lesions smaller than --uncertain-lesion-max-ml whose tumor probability (their mean, or "
                         "peak: --lesion-probability-statistic) is below this (0..1) become liver (0 keeps all)"),
    PostprocessingSwitch("lesion_probability_statistic", "--lesion-probability-statistic", "choice",
                         "what --min-lesion-probability compares, per lesion: the mean or the peak (largest) tumor "
                         "probability of its voxels (default: the model's, mean unless its package records peak)",
                         LESION_PROBABILITY_STATISTICS),
    PostprocessingSwitch("uncertain_lesion_max_ml", "--uncertain-lesion-max-ml", "value",
                         "larger lesions (mL) are never removed for a low tumor probability"),
    PostprocessingSwitch("air_to_background", "--keep-liver-in-air", "off",
                         "keep liver and tumor labels on voxels below -800 HU (air, gas, lung); by default they "
                         "become background"),
)
SWITCH_BY_FIELD = {switch.field: switch for switch in POSTPROCESSING_SWITCHES}
"""PostprocessingOptions field -> its command-line switch."""


def check_device_name(device: Any) -> str:
    """One of :data:`DEVICE_CHOICES` or ``cuda:N`` (lower-cased, stripped), else InputError."""
    text = str(device if device is not None else "auto").strip().lower()
    if text in DEVICE_CHOICES or cuda_index(text) is not None:
        return text
    raise InputError(f"device (--device): unknown device '{device}'; use one of {', '.join(DEVICE_CHOICES)} "
                     f"(or cuda:N).")


def _is_number(value: Any) -> bool:
    """A real number, numpy's too (np.float32 was refused as a window level while np.float64 passed); not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _check_bool(name: str, flag: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{name} ({flag}) must be true or false (got {value!r}).")
    return value


def _postprocessing_from_dict(data: Dict[str, Any]) -> PostprocessingOptions:
    known = {f.name for f in dataclasses.fields(PostprocessingOptions)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"postprocessing: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
    return PostprocessingOptions(**data)


def _checked_postprocessing(value: Any) -> PostprocessingOptions:
    """A private copy of ``value`` (PostprocessingOptions or dict) with every field checked."""
    if isinstance(value, dict):
        value = _postprocessing_from_dict(value)
    if not isinstance(value, PostprocessingOptions):
        raise InputError(f"postprocessing must be PostprocessingOptions or a dict (got {type(value).__name__}).")
    defaults = PostprocessingOptions()
    values = {}
    for f in dataclasses.fields(PostprocessingOptions):
        got, default = getattr(value, f.name), getattr(defaults, f.name)
        switch = SWITCH_BY_FIELD.get(f.name)
        where = f"postprocessing.{f.name} ({switch.flag if switch else 'no CLI flag'})"
        if isinstance(default, bool):
            if not isinstance(got, bool):
                raise InputError(f"{where} must be true or false (got {got!r}).")
        elif f.name == "min_lesion_probability" and got is None:
            continue  # the model's threshold (its package's, else DEFAULT_MIN_LESION_PROBABILITY), set at the load
        elif f.name == "lesion_probability_statistic":
            if got is not None and got not in LESION_PROBABILITY_STATISTICS:  # None: the model's, set at the load
                raise InputError(f"{where} must be one of {', '.join(LESION_PROBABILITY_STATISTICS)} (got {got!r}).")
        elif _is_number(default) or f.name == "min_lesion_probability":
            if not _is_number(got) or got != got or got < 0:
                raise InputError(f"{where} must be a number >= 0 (got {got!r}).")
            if f.name == "min_lesion_probability" and got > 1:
                raise InputError(f"{where} is a probability: between 0 and 1 (got {got!r}).")
            if f.name == "liver_dilation_mm" and got > MAX_TUMOR_LIVER_MARGIN_MM:
                raise InputError(f"{where} must be at most {MAX_TUMOR_LIVER_MARGIN_MM:g} mm (got {got!r}): the margin "
                                 f"is a distance around the liver, and larger ones would only cost memory.")
            if not math.isfinite(got):  # infinity was written null in the strict-JSON report, which then did not load
                raise InputError(f"{where} must be a finite number >= 0 (got {got!r}); a large number does the same.")
            values[f.name] = float(got)
    return dataclasses.replace(value, **values)


WINDOW_LEVEL_RANGE_HU = (-1500.0, 3000.0)
WINDOW_WIDTH_RANGE_HU = (1.0, 10000.0)
"""Accepted --window-level / --window-width (HU): anything a CT can show; huge values overflowed float32 and
gave NaN network input (a run that 'found no liver'), a width of 1e-300 divided by zero."""

MAX_TUMOR_LIVER_MARGIN_MM = 100.0
"""Largest --tumor-liver-margin-mm: 1e9 mm made a dilation that took 24 GB before the kernel killed it."""


def override_window(preprocessing: Dict[str, Any], level: float, width: float) -> Dict[str, Any]:
    """Copy of a preprocessing dict whose first ``window`` channel uses ``level`` / ``width`` HU."""
    if width <= 0:
        raise InputError(f"Window width must be positive (got {width} HU).")
    result = copy.deepcopy(preprocessing)
    for channel in result.get("channels", []):
        if channel.get("kind") == "window":
            channel.pop("preset", None)
            channel["level"] = float(level)
            channel["width"] = float(width)
            return result
    kinds = ", ".join(str(channel.get("kind")) for channel in result.get("channels", [])) or "none"
    fix = option_hint("run without --window-level and --window-width", "leave window_level and window_width unset")
    raise InputError(f"This model's preprocessing has no intensity window to override (its channels: {kinds}); "
                     f"{fix}.")


@dataclass(frozen=True)
class SegmentationOptions:
    """Everything that decides how a CT is segmented (not which files: inputs and outputs are per call).

    * ``model``: installed model name (``"default"`` = the bundled one) or ``.safetensors`` package path.
    * ``device``: ``auto|cpu|cuda|cuda:N|mps|gpu`` (a GPU that is not there: the CPU, with a warning);
      ``backend``: ``torch|onnx|auto`` (CPU runtime).
    * ``batch_size``: slices per batch (None = from free GPU memory, or 8 on the CPU); ``threads``: CPU threads
      (None = all cores).
    * ``tta``: left-right flip test-time augmentation; ``two_stage``: coarse liver pass, then full-res crop.
    * ``postprocessing``: :class:`PostprocessingOptions` (a dict is accepted and converted; min lesion size
      is ``postprocessing.min_lesion_ml``).
    * ``probabilities``: keep the network's tumor probability (uint8 ``round(255 p)``) in the result.
    * ``allow_non_hu``: accept intensities that do not look like Hounsfield units.
    * ``precision``: ``auto|fp32|bf16`` network arithmetic (auto: on an NVIDIA GPU bf16 autocast, fp16 on one
      without native bf16 (compute capability below 8.0), not checked; on a CPU with native bf16, bf16 after a check against fp32 on the first CT's 8
      middle slices; see :class:`~.engine.SliceInferenceEngine`).
    * ``body_size_scaling``: a body much narrower than the training adults' (a child) is given to the network
      enlarged in-plane (:mod:`~LiverTumorSegLib.inference.body_size`); False gives every CT as it is.
    * ``oblique_grid``: ``aligned`` (default): a CT turned more than 5 degrees against the patient's axes is
      segmented on a patient-aligned grid, its labels brought back (:mod:`~LiverTumorSegLib.inference.axis_aligned`);
      ``stored``: the network reads the CT's stored (oblique) slices as they are, as before 29 Nov 2026.
    * ``window_level`` / ``window_width`` (HU): both or neither; replace the model's first window channel
      (expert override: the model was trained with its own window).

    Frozen: change with ``dataclasses.replace(options, ...)``, which validates again. Errors name the field
    and its command-line flag (:class:`~LiverTumorSegLib.errors.InputError`).
    """

    model: str = "default"
    device: str = "auto"
    backend: str = "torch"
    batch_size: Optional[int] = None
    threads: Optional[int] = None
    tta: bool = False
    two_stage: bool = False
    postprocessing: PostprocessingOptions = field(default_factory=PostprocessingOptions)
    probabilities: bool = False
    allow_non_hu: bool = False
    window_level: Optional[float] = None
    window_width: Optional[float] = None
    precision: str = "auto"
    body_size_scaling: bool = True
    oblique_grid: str = "aligned"
    # New settings go here: add the field, its check in __post_init__ and its row in _FLAGS;
    # to_dict/from_dict/to_cli_args/the CLI then carry it.

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - frozen dataclass
        model = os.fspath(self.model) if isinstance(self.model, os.PathLike) else self.model
        if not isinstance(model, str) or not model.strip():
            raise InputError(f"model (--model) must be an installed model name or a package path (got {self.model!r}).")
        set_("model", model)
        set_("device", check_device_name(self.device))
        if self.backend not in BACKENDS:
            raise InputError(f"backend (--backend): unknown backend {self.backend!r}; use one of "
                             f"{', '.join(BACKENDS)}.")
        set_("batch_size", check_count("batch_size", "--batch-size", self.batch_size, MAX_BATCH_SIZE))
        set_("threads", check_count("threads", "--threads", self.threads, MAX_THREADS))
        for name in ("tta", "two_stage", "probabilities", "allow_non_hu", "body_size_scaling"):
            _check_bool(name, _FLAGS[name], getattr(self, name))
        set_("postprocessing", _checked_postprocessing(self.postprocessing))
        try:
            set_("precision", check_precision(self.precision))
        except InputError:
            raise InputError(f"precision (--precision): unknown precision {self.precision!r}; use one of "
                             f"{', '.join(PRECISIONS)}.") from None
        if self.backend == "onnx" and self.precision == "bf16":
            fix = option_hint("--backend torch or auto, or --precision fp32",  # a library call was told flags
                              "backend='torch' or 'auto', or precision='fp32'")
            raise InputError(f"precision bf16 (--precision bf16) runs on the torch backend only (ONNX Runtime runs "
                             f"fp32 here); use {fix}.")
        if self.oblique_grid not in OBLIQUE_GRIDS:
            raise InputError(f"oblique_grid (--oblique-grid): unknown grid {self.oblique_grid!r}; use one of "
                             f"{', '.join(OBLIQUE_GRIDS)}.")
        self._check_window()

    def _check_window(self) -> None:
        level, width = self.window_level, self.window_width
        if (level is None) != (width is None):
            raise InputError("window_level and window_width (--window-level, --window-width) go together: give "
                             "both or neither.")
        if level is None:
            return
        if not _is_number(level) or not _is_number(width) or not math.isfinite(level) or not math.isfinite(width):
            raise InputError(f"window_level / window_width (--window-level, --window-width) must be finite numbers "
                             f"in HU (got {level!r}, {width!r}).")
        if width <= 0:
            raise InputError(f"window_width (--window-width) must be positive (got {width} HU).")
        low, high = WINDOW_LEVEL_RANGE_HU
        if not low <= level <= high or not WINDOW_WIDTH_RANGE_HU[0] <= width <= WINDOW_WIDTH_RANGE_HU[1]:
            raise InputError(f"window_level / window_width (--window-level, --window-width) must lie in "
                             f"{low:g}..{high:g} HU and {WINDOW_WIDTH_RANGE_HU[0]:g}..{WINDOW_WIDTH_RANGE_HU[1]:g} HU "
                             f"(CT values span about -1024..3071; got level {level:g}, width {width:g}). The bundled "
                             f"model reads level 40 / width 400.")
        object.__setattr__(self, "window_level", float(level))
        object.__setattr__(self, "window_width", float(width))

    def __hash__(self) -> int:  # PostprocessingOptions is not hashable; the JSON text is
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    # ------------------------------------------------------------------ conversions
    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dict; ``from_dict`` of it gives an equal object."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["postprocessing"] = self.postprocessing.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "SegmentationOptions":
        """Missing keys keep their defaults; unknown keys and bad values raise InputError naming them."""
        if not isinstance(data, dict):
            raise InputError(f"Segmentation options must be a dict (got {type(data).__name__}).")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"Unknown segmentation option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
        return cls(**data)

    def to_cli_args(self, probabilities_path: Any = None) -> List[str]:
        """``livertumorseg segment`` arguments for these settings (only those that differ from the defaults).

        Inputs and outputs are not settings: add INPUT, ``-o``, ``--report`` ... yourself. ``probabilities``
        is expressed by the ``--probabilities PATH`` output, so it needs ``probabilities_path``.
        """
        defaults = SegmentationOptions()
        args = []  # type: List[str]
        for name in ("model", "device", "backend", "batch_size", "threads", "window_level", "window_width",
                     "precision", "oblique_grid"):
            value = getattr(self, name)
            if value != getattr(defaults, name):
                args += [_FLAGS[name], _number_text(value)]
        for name in ("tta", "two_stage", "allow_non_hu"):
            if getattr(self, name):
                args.append(_FLAGS[name])
        if not self.body_size_scaling:
            args.append(_FLAGS["body_size_scaling"])
        args += _postprocessing_cli_args(self.postprocessing)
        if self.probabilities:
            if probabilities_path is None:
                raise InputError("probabilities=True is written with --probabilities PATH: give "
                                 "to_cli_args(probabilities_path=...).")
            args += ["--probabilities", os.fspath(probabilities_path)]
        return args


def segment_command_args(input_path: Any, output_path: Any, options: SegmentationOptions, report_path: Any = None,
                         preview_path: Any = None, probability_path: Any = None, series: Optional[str] = None,
                         overwrite: bool = False, progress: str = "json",
                         slice_thickness_mm: Optional[float] = None) -> List[str]:
    """The whole argument list after ``livertumorseg`` (or ``python -m LiverTumorSegLib``) for one run, e.g. for a
    child process: ``["segment", INPUT, "-o", OUTPUT, ..., *options.to_cli_args(...), "--progress", "json"]``.
    ``slice_thickness_mm``: ``--slice-thickness-mm`` (the input's reconstruction thickness, mm), e.g. the DICOM
    SliceThickness of a volume that reaches the child as a NIfTI file."""
    args = ["segment", os.fspath(input_path), "-o", os.fspath(output_path)]
    if slice_thickness_mm is not None:
        args += ["--slice-thickness-mm", repr(float(slice_thickness_mm))]
    for flag, path in (("--report", report_path), ("--preview", preview_path)):
        if path is not None:
            args += [flag, os.fspath(path)]
    if series is not None:
        args += ["--series", str(series)]
    if overwrite:
        args.append("--overwrite")
    if probability_path is not None and not options.probabilities:
        options = dataclasses.replace(options, probabilities=True)
    return args + options.to_cli_args(probabilities_path=probability_path) + ["--progress", progress]


# Command-line flag of each SegmentationOptions field (the parser below and to_cli_args use it).
_FLAGS = {"model": "--model", "device": "--device", "backend": "--backend", "batch_size": "--batch-size",
          "threads": "--threads", "tta": "--tta", "two_stage": "--two-stage", "allow_non_hu": "--allow-non-hu",
          "probabilities": "--probabilities", "window_level": "--window-level", "window_width": "--window-width",
          "postprocessing": "post-processing switches", "precision": "--precision",
          "body_size_scaling": "--no-body-size-scaling", "oblique_grid": "--oblique-grid"}


def _number_text(value: Any) -> str:
    """``repr`` for floats (parses back exactly), ``str`` otherwise."""
    return repr(value) if isinstance(value, float) else str(value)


def _postprocessing_cli_args(options: PostprocessingOptions) -> List[str]:
    defaults = PostprocessingOptions()
    args = []  # type: List[str]
    for f in dataclasses.fields(PostprocessingOptions):
        value = getattr(options, f.name)
        if value == getattr(defaults, f.name) or _has_no_effect(options, f.name):
            continue  # a value whose step is off would be refused by the command line (NO_EFFECT_PAIRS)
        switch = SWITCH_BY_FIELD.get(f.name)
        if switch is None:
            raise InputError(f"postprocessing.{f.name} has no command-line switch; it cannot be passed to "
                             f"`livertumorseg segment`.")
        args += [switch.flag] if switch.kind == "off" else [switch.flag, _number_text(value)]  # a choice: its word
    return args


NO_EFFECT_PAIRS = (("tumor_inside_liver", "liver_dilation_mm"),
                   ("min_lesion_probability", "uncertain_lesion_max_ml"),
                   ("min_lesion_probability", "lesion_probability_statistic"))
"""``(field, dependent)``: when ``field`` is off (False, or 0) its step does not run, and ``dependent``, which only
that step reads, has no effect. The command line refuses both typed together, as for --no-postprocess (the
report recorded a margin or a size cap that never applied); child arguments leave such a value out."""


def _has_no_effect(options: PostprocessingOptions, field: str) -> bool:
    """Whether ``field``'s value is read by no step of ``options`` (:data:`NO_EFFECT_PAIRS`), or is a
    ``min_lesion_probability`` above 0 that no lesion can meet (:func:`_probability_rule_has_no_lesions`)."""
    if field == "min_lesion_probability" and (options.min_lesion_probability is None
                                              or options.min_lesion_probability > 0):  # None: the model's, > 0
        return _probability_rule_has_no_lesions(options)
    # a step's value of None (min_lesion_probability: the model's threshold, above 0) keeps the step on
    return any(field == dependent and getattr(options, step) is not None and not getattr(options, step)
               for step, dependent in NO_EFFECT_PAIRS)


def _probability_rule_has_no_lesions(options: PostprocessingOptions) -> bool:
    """True when the low-probability rule can turn no lesion into liver: it acts on lesions smaller than
    ``uncertain_lesion_max_ml``, and that cap is 0, or at most ``min_lesion_ml``, whose step already made each of
    them liver. ``segment --min-lesion-probability 0.8 --uncertain-lesion-max-ml 0`` ran with 0.8 recorded."""
    return options.uncertain_lesion_max_ml <= options.min_lesion_ml or options.uncertain_lesion_max_ml == 0


def _refuse_a_probability_rule_without_lesions(chosen: PostprocessingOptions, set_explicitly: List[str]) -> None:
    """InputError when ``--min-lesion-probability`` was typed and other values leave it no lesion to act on."""
    flag, cap = SWITCH_BY_FIELD["min_lesion_probability"].flag, SWITCH_BY_FIELD["uncertain_lesion_max_ml"].flag
    if flag not in set_explicitly or not _has_no_effect(chosen, "min_lesion_probability"):
        return
    if chosen.uncertain_lesion_max_ml == 0:
        why = f"{cap} 0 leaves {flag} no lesion to act on (it acts only on lesions smaller than that many mL)"
        fix = f"give {cap} above 0 mL, or {flag} 0 alone to keep every lesion"
    else:
        minimum = SWITCH_BY_FIELD["min_lesion_ml"].flag
        why = (f"{minimum} {chosen.min_lesion_ml:g} already makes every lesion smaller than {cap} "
               f"({chosen.uncertain_lesion_max_ml:g} mL) liver")
        fix = f"give {cap} above {chosen.min_lesion_ml:g} mL, or leave {flag} out"
    raise InputError(f"{why}, so {flag} would have no effect; {fix}.")


# ------------------------------------------------------------------ the command line's half
def add_segmentation_arguments(parser: Any) -> None:
    """Add every setting of :class:`SegmentationOptions` to an argparse parser (``segment``'s options)."""
    defaults = SegmentationOptions()
    post = defaults.postprocessing
    parser.add_argument("--model", default=defaults.model,
                        help=f"installed model name or .safetensors package path (default: the bundled model, "
                             f"named {defaults.model!r}; 'livertumorseg models' lists them)")
    parser.add_argument("--device", default=defaults.device,
                        help=f"{', '.join(DEVICE_CHOICES)} or cuda:N (default {defaults.device})")
    parser.add_argument("--no-postprocess", action="store_true", help="raw network labels (no clean-up)")
    for switch in POSTPROCESSING_SWITCHES:
        if switch.kind == "off":
            parser.add_argument(switch.flag, action="store_true", help=switch.help)
        elif switch.kind == "choice":  # default None: the model's
            parser.add_argument(switch.flag, choices=list(switch.choices), default=None, help=switch.help)
        else:
            default = getattr(post, switch.field)
            shown = (f"default: the model's, {DEFAULT_MIN_LESION_PROBABILITY:g} unless its package records another"
                     if default is None else f"default {default:g}")
            last = switch.field.rsplit("_", 1)[-1]
            unit = "P" if last == "probability" else last.upper()  # MM, ML, P
            # default None: a value typed at its default is still "given" (refused beside --no-postprocess)
            parser.add_argument(switch.flag, type=number(float, {"MM": "mm", "ML": "mL"}.get(unit, "")), default=None, metavar=unit,
                                help=f"{switch.help} ({shown})")
    parser.add_argument("--tta", action="store_true", help="test-time left-right flip augmentation (slower)")
    parser.add_argument("--two-stage", action="store_true", help="coarse liver localisation, then full-res crop")
    parser.add_argument("--backend", choices=list(BACKENDS), default=defaults.backend,
                        help="CPU runtime (default torch). onnx = ONNX Runtime (needs onnx + onnxruntime; exported "
                             "per run, so it only pays off on long volumes: on 2 idle cores both ran a 32-slice "
                             "256x256 CT in 1.1 s); auto = onnx when installed and torch would run fp32 on this "
                             "CPU (ONNX Runtime runs fp32 only, slower than torch's bf16), else torch")
    parser.add_argument("--batch-size", type=number(int), default=None, metavar="N",
                        help="slices per batch, 1-4096 (default: from free GPU memory on a GPU, 8 on the CPU)")
    parser.add_argument("--threads", type=number(int), default=None, metavar="N", help="CPU threads (default: OMP_NUM_THREADS where set, else all cores)")
    parser.add_argument("--precision", choices=list(PRECISIONS), default=defaults.precision,
                        help="network arithmetic. auto (default): on an NVIDIA GPU bf16 autocast (fp16 on one "
                             "without native bf16: before Ampere), not checked; on a CPU with native bf16 (AVX512-BF16/AMX) bf16, "
                             "checked on the 8 middle slices of the first CT against fp32, "
                             "whatever --batch-size (fp32 when labels differ on > 0.1 %% of their voxels); fp32; "
                             "bf16 (unchecked). ONNX runs fp32")
    parser.add_argument("--window-level", type=number(float, "HU"), default=None, metavar="HU",
                        help="with --window-width: replace the model's first intensity window (expert override; "
                             "the model was trained with its own)")
    parser.add_argument("--window-width", type=number(float, "HU"), default=None, metavar="HU", help="see --window-level")
    parser.add_argument("--allow-non-hu", action="store_true",
                        help="accept intensities that do not look like Hounsfield units")
    parser.add_argument("--no-body-size-scaling", action="store_true",
                        help="give a body much smaller than the package's training bodies (a child) to the network "
                             "as it is; by default one under 0.75 x the smallest (243 mm across for the bundled model) "
                             "is given enlarged in-plane, with a warning (the report's body_size says what was "
                             "measured and done)")
    parser.add_argument("--oblique-grid", choices=list(OBLIQUE_GRIDS), default=defaults.oblique_grid,
                        help="a CT turned more than 5 degrees against the patient's axes: aligned (default) runs "
                             "the network on a patient-aligned grid and brings the labels back onto the CT's grid "
                             "(the report's network_grid); stored runs it on the CT's own oblique slices")


def postprocessing_from_args(args: Any) -> PostprocessingOptions:
    """PostprocessingOptions from the parsed switches (``--no-postprocess`` turns everything off). A value
    switch counts as given when it was typed, also at its default value; a value switch of None (not typed, or
    a parser without it) keeps the default."""
    values = {}  # type: Dict[str, Any]
    set_explicitly = []
    for switch in POSTPROCESSING_SWITCHES:
        attr = switch.flag.lstrip("-").replace("-", "_")
        given = getattr(args, attr, None)
        if given is None or (switch.kind == "off" and not given):
            continue
        if switch.kind == "off":
            values[switch.field] = False
        else:  # a choice is its word
            values[switch.field] = given if switch.kind == "choice" else float(given)
        set_explicitly.append(switch.flag)
    chosen = _checked_postprocessing(PostprocessingOptions(**values))  # checked also when all is switched off
    if args.no_postprocess and set_explicitly:  # the value was dropped without a word, and recorded as 0
        raise InputError(f"--no-postprocess turns every post-processing step off, so {', '.join(set_explicitly)} "
                         f"would have no effect; give one or the other.")
    for step, dependent in NO_EFFECT_PAIRS:  # the defaults keep every step on: only a typed flag turns one off
        off, needed = SWITCH_BY_FIELD[step], SWITCH_BY_FIELD[dependent]
        if needed.flag in set_explicitly and _has_no_effect(chosen, dependent):
            said = off.flag if off.kind == "off" else f"{off.flag} 0"
            raise InputError(f"{said} turns off the step that {needed.flag} sets, so {needed.flag} would have no "
                             f"effect; give one or the other.")
    _refuse_a_probability_rule_without_lesions(chosen, set_explicitly)
    return PostprocessingOptions.disabled() if args.no_postprocess else chosen


def options_from_args(args: Any) -> SegmentationOptions:
    """SegmentationOptions from ``segment``'s parsed arguments (InputError naming the flag when invalid)."""
    return SegmentationOptions(
        model=args.model, device=args.device, backend=args.backend, batch_size=args.batch_size,
        threads=getattr(args, "threads", None), tta=bool(args.tta), two_stage=bool(args.two_stage),
        postprocessing=postprocessing_from_args(args), probabilities=getattr(args, "probabilities", None) is not None,
        allow_non_hu=bool(args.allow_non_hu), window_level=getattr(args, "window_level", None),
        window_width=getattr(args, "window_width", None), precision=getattr(args, "precision", "auto"),
        body_size_scaling=not getattr(args, "no_body_size_scaling", False),
        oblique_grid=getattr(args, "oblique_grid", "aligned"))
