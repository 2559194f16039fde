"""``PreprocessingConfig``: every choice that turns a canonical HU volume into network input.

It travels inside each model package (``PreprocessingConfig.to_dict()`` in the package header), so
training and inference always preprocess identically. JSON-serialisable; unknown keys or kinds raise
:class:`PreprocessingConfigError` naming the key and the allowed ones.

Channel specs (a list of dicts; order = network channel order inside one slice):

* ``{"kind": "window", "level": 40, "width": 400}`` or ``{"kind": "window", "preset": "liver"}``
  (presets: :data:`~LiverTumorSegLib.preprocessing.intensity.WINDOW_PRESETS`) -> [0, 1];
* ``{"kind": "hist_scaled", "n_bins": 100}`` (break points per slice) or with ``"bins": [...]``
  (fixed break points, e.g. from a training-set sample; seed 001's text does not say which its bins were) -> [0, 1];
* ``{"kind": "zscore", "mask": "body" | "none"}`` -> zero mean, unit variance per slice (seed 000).

Any spec may carry ``"name"`` (used in previews). Per-slice adaptive channels (hist_scaled without
fixed bins, zscore, equalization) depend on the field of view: training gives each patch its whole slice's
statistics (``SlicePreprocessor.slice_statistics``), except for CLAHE.

Settings beyond any use are refused when read (a package, a ``--config`` file, a training preprocessing file),
not found out as a hang or an out-of-memory hours later: window width 1..20000 HU and level, fixed histogram
bins, ``pad_hu`` and ``body_threshold_hu`` within +-10000 HU, ``n_bins`` <= 65536,
``median_size`` <= 15 px, ``gaussian_sigma_mm`` <= 20 mm, ``clahe_tiles`` <= 64, ``crop_margin_mm`` <= 1000 mm,
``target_spacing_mm`` >= 0.1 mm, ``target_size`` <= 4096 px a side, ``size_multiple`` <= 512 px (the ``MAX_*`` /
``MIN_*`` constants below).
"""
import copy
import json
import math
import numbers
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import InputError
from .intensity import BODY_THRESHOLD_HU, WINDOW_PRESETS, resolve_window, window_preset_name


class PreprocessingConfigError(InputError):
    """A preprocessing configuration (JSON or dict) has an unknown key, kind or an invalid value."""


CHANNEL_KEYS = {
    "window": {"kind", "preset", "level", "width", "name"},
    "hist_scaled": {"kind", "n_bins", "bins", "name"},
    "zscore": {"kind", "mask", "name"},
}
EQUALIZE_KINDS = (None, "histogram", "clahe")
ZSCORE_MASKS = ("body", "none")


def _default_channels() -> List[Dict[str, Any]]:
    return [{"kind": "window", "level": 40.0, "width": 400.0},
            {"kind": "window", "level": 75.0, "width": 250.0},
            {"kind": "window", "level": 0.0, "width": 2000.0}]


def _number(value: Any, what: str) -> float:
    """``value`` as a float; a bool, a non-number, NaN or +-Inf is refused (a NaN window level once gave an
    all-background result, a NaN crop margin an internal error)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):  # numpy's numbers too
        raise PreprocessingConfigError(f"{what} must be a number, got {value!r}.")
    if not math.isfinite(value):
        raise PreprocessingConfigError(f"{what} must be a finite number, got {value!r}.")
    return float(value)


def _in_range(value: float, what: str, low: float, high: float, unit: str, low_text: str = "") -> float:
    """``value`` when ``low <= value <= high``; else a :class:`PreprocessingConfigError` saying the range in
    ``unit`` (``low_text``: how to write ``low``, e.g. "0 (off)")."""
    if not low <= value <= high:
        raise PreprocessingConfigError(f"{what} must be from {low_text or format(low, 'g')} to {high:g} {unit}, "
                                       f"got {value}.")
    return value


def _integer(value: Any, what: str, minimum: int, maximum: Optional[int] = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < minimum \
            or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise PreprocessingConfigError(f"{what} must be an integer {bound}, got {value!r}.")
    return int(value)


MAX_HIST_BINS = 65536          # more bins than one slice has distinct HU values add nothing
MAX_MEDIAN_SIZE = 15           # pixels; the papers give no size (presets: 3); 1001 took ~2 h per 512 x 512 slice
MAX_GAUSSIAN_SIGMA_MM = 20.0   # beyond this the channel is flat (sigma 1e6 mm: days per CT, a constant channel)
MAX_CLAHE_TILES = 64           # per side; equalization.clahe also keeps each tile >= CLAHE_MIN_TILE_PX pixels
MIN_WINDOW_WIDTH_HU = 1.0      # a narrower window's scale overflows float32 (NaN at the window's lower edge)
MAX_CROP_MARGIN_MM = 1000.0
MIN_TARGET_SPACING_MM = 0.1    # CT pixels are >= ~0.2 mm; 0.001 mm asked for a (z, 366000, 305000) grid
MAX_TARGET_SIZE_PX = 4096      # per side; 8x a 512 x 512 CT slice
MAX_SIZE_MULTIPLE = 512        # 2 ** 9: a 9-level encoder; 4096 padded a 101 x 122 slice to 4096 x 4096 (56 GiB)
MAX_CONTEXT_MM = 50.0         # context_min/max_mm: a CT's slices are at most a few mm apart; 50 mm skips organs
CONTEXT_TOLERANCE = 1e-3      # relative: slice spacings this close to a context bound count as on it
HU_SETTING_RANGE = (-10000.0, 10000.0)  # window level, histogram bins, pad_hu, body_threshold_hu: beyond any CT
# value, and float32-safe
MAX_WINDOW_WIDTH_HU = HU_SETTING_RANGE[1] - HU_SETTING_RANGE[0]  # a width of 1e39 overflowed float32 (a constant
# channel, NaN at 1e300)


def normalize_channel(spec: Any, index: int = 0) -> Dict[str, Any]:
    """Validated copy of one channel spec with defaults filled in (window level/width resolved)."""
    where = f"channels[{index}]"
    if not isinstance(spec, dict):
        raise PreprocessingConfigError(f"{where} must be an object like {{\"kind\": \"window\", ...}}, got {spec!r}.")
    kind = spec.get("kind")
    if not isinstance(kind, str) or kind not in CHANNEL_KEYS:
        raise PreprocessingConfigError(f"{where} has unknown kind {kind!r}; use one of {sorted(CHANNEL_KEYS)}.")
    unknown = set(spec) - CHANNEL_KEYS[kind]
    if unknown:
        raise PreprocessingConfigError(f"{where} ({kind}) has unknown key(s) {sorted(unknown)}; "
                                       f"allowed: {sorted(CHANNEL_KEYS[kind])}.")
    out: Dict[str, Any] = {"kind": kind}
    if "name" in spec:
        if not isinstance(spec["name"], str):
            raise PreprocessingConfigError(f"{where} name must be a string.")
        out["name"] = spec["name"]
    if kind == "window":
        preset = spec.get("preset")
        if isinstance(preset, str):
            preset = window_preset_name(preset)
        if preset is not None and (not isinstance(preset, str) or preset not in WINDOW_PRESETS):
            raise PreprocessingConfigError(f"{where} has unknown window preset {preset!r}; "
                                           f"use one of {sorted(WINDOW_PRESETS)}.")
        level = None if spec.get("level") is None else _number(spec["level"], f"{where} level")
        width = None if spec.get("width") is None else _number(spec["width"], f"{where} width")
        try:
            level, width = resolve_window(preset, level, width)
        except InputError as exc:
            raise PreprocessingConfigError(f"{where}: {exc}") from None
        _in_range(width, f"{where} width", MIN_WINDOW_WIDTH_HU, MAX_WINDOW_WIDTH_HU, "HU")
        _in_range(level, f"{where} level", *HU_SETTING_RANGE, "HU")
        if preset is not None:
            out["preset"] = preset
        out["level"], out["width"] = level, width
    elif kind == "hist_scaled":
        out["n_bins"] = _integer(spec.get("n_bins", 100), f"{where} n_bins", 1, MAX_HIST_BINS)
        if spec.get("bins") is not None:
            bins = spec["bins"]
            if not isinstance(bins, (list, tuple)) or not bins:
                raise PreprocessingConfigError(f"{where} bins must be a non-empty list of HU values.")
            bins = [_number(b, f"{where} bins value") for b in bins]
            if not all(HU_SETTING_RANGE[0] <= b <= HU_SETTING_RANGE[1] for b in bins):
                raise PreprocessingConfigError(f"{where} bins must lie from {HU_SETTING_RANGE[0]:g} to "
                                               f"{HU_SETTING_RANGE[1]:g} HU (beyond any CT value), got "
                                               f"{min(bins):g}..{max(bins):g}.")
            if any(b2 < b1 for b1, b2 in zip(bins, bins[1:])):
                raise PreprocessingConfigError(f"{where} bins must be sorted ascending.")
            out["bins"] = bins
    elif kind == "zscore":
        mask = spec.get("mask", "body")
        if mask not in ZSCORE_MASKS:
            raise PreprocessingConfigError(f"{where} mask must be one of {list(ZSCORE_MASKS)}, got {mask!r}.")
        out["mask"] = mask
    return out


def channel_name(spec: Dict[str, Any]) -> str:
    """Short human-readable name of a (normalised) channel spec, for previews and logs."""
    if spec.get("name"):
        return str(spec["name"])
    if spec["kind"] == "window":
        lw = f"L{spec['level']:g} W{spec['width']:g}"
        return f"window {spec['preset']} ({lw})" if spec.get("preset") else f"window {lw}"
    if spec["kind"] == "hist_scaled":
        return "hist_scaled (fixed bins)" if spec.get("bins") else f"hist_scaled ({spec['n_bins']} bins/slice)"
    return f"zscore ({spec['mask']})"


CLAHE_PATCH_STEP = "clahe equalization"
"""The name :meth:`PreprocessingConfig.patch_computed_steps` gives CLAHE (the trainer tells it from the filters)."""


@dataclass
class PreprocessingConfig:
    """All preprocessing choices (see module docstring and docs/ARCHITECTURE.md "Preprocessing contract").

    Spatial (in-plane only; z is never resampled):
      ``crop_to_body`` (crop to the body bounding box over all slices, grown by ``crop_margin_mm``,
      body = HU > ``body_threshold_hu``); then ``target_spacing_mm`` (resample pixels to this size, mm)
      **or** ``target_size`` ``(H, W)`` (resize to exactly this many pixels) or neither (native pixels);
      then pad (with ``pad_hu``, default air) so H and W are multiples of ``size_multiple``.
    Intensity (per slice): ``median_size`` (odd pixels, 0 = off), ``gaussian_sigma_mm`` (0 = off),
      then ``channels``, then ``equalize`` (None, "histogram", "clahe") applied to window channels.
    Context: ``context_slices = c`` -> ``in_channels = len(channels) * (2c + 1)``, slice-major. The neighbours
      are :meth:`context_offset` slices apart: adjacent, unless the slices are thinner than ``context_min_mm``
      (then the fewest whole slices at least that many mm apart: 0.5 mm slices with 1.0 mm, every second slice)
      or thicker than ``context_max_mm`` (then HU interpolated between adjacent slices that many mm from the
      centre: 5 mm slices with 3.0 mm, 0.6 of the way to each neighbour). So the network sees neighbours as far
      apart as the slices it was trained on, whatever the CT's slice spacing. ``None``: no bound on that side.
    """

    channels: List[Dict[str, Any]] = field(default_factory=_default_channels)
    context_slices: int = 1
    context_min_mm: Optional[float] = None
    context_max_mm: Optional[float] = None
    target_spacing_mm: Optional[float] = 1.5
    target_size: Optional[Tuple[int, int]] = None
    size_multiple: int = 32
    crop_to_body: bool = True
    crop_margin_mm: float = 10.0
    body_threshold_hu: float = BODY_THRESHOLD_HU
    pad_hu: float = -1024.0
    median_size: int = 0
    gaussian_sigma_mm: float = 0.0
    equalize: Optional[str] = None
    clahe_clip_limit: float = 0.01
    clahe_tiles: int = 8

    def __post_init__(self) -> None:
        if not isinstance(self.channels, (list, tuple)) or not self.channels:
            raise PreprocessingConfigError("channels must be a non-empty list of channel specs.")
        self.channels = [normalize_channel(c, i) for i, c in enumerate(self.channels)]
        self.context_slices = _integer(self.context_slices, "context_slices", 0)
        for name in ("context_min_mm", "context_max_mm"):
            value = getattr(self, name)
            if value is not None:
                value = _number(value, name)
                if not 0 < value < MAX_CONTEXT_MM:
                    raise PreprocessingConfigError(f"{name} must be in (0, {MAX_CONTEXT_MM:g}) mm or null (no bound), "
                                                   f"got {value}.")
                setattr(self, name, value)
        if None not in (self.context_min_mm, self.context_max_mm) and self.context_min_mm > self.context_max_mm:
            raise PreprocessingConfigError(f"context_min_mm ({self.context_min_mm:g} mm) must not exceed "
                                           f"context_max_mm ({self.context_max_mm:g} mm).")
        if self.target_spacing_mm is not None:
            self.target_spacing_mm = _number(self.target_spacing_mm, "target_spacing_mm")
            if not MIN_TARGET_SPACING_MM <= self.target_spacing_mm < 100:
                raise PreprocessingConfigError(f"target_spacing_mm must be from {MIN_TARGET_SPACING_MM:g} to under 100 mm "
                                               f"(or null: native pixels), got {self.target_spacing_mm}.")
        if self.target_size is not None:
            ts = self.target_size
            if not isinstance(ts, (list, tuple)) or len(ts) != 2:
                raise PreprocessingConfigError(f"target_size must be [H, W] in pixels, got {ts!r}.")
            self.target_size = (_integer(ts[0], "target_size H", 1, MAX_TARGET_SIZE_PX),
                                _integer(ts[1], "target_size W", 1, MAX_TARGET_SIZE_PX))
        if self.target_spacing_mm is not None and self.target_size is not None:
            raise PreprocessingConfigError("Give either target_spacing_mm or target_size, not both "
                                           "(set the other to null).")
        self.size_multiple = _integer(self.size_multiple, "size_multiple", 1, MAX_SIZE_MULTIPLE)
        if not isinstance(self.crop_to_body, bool):
            raise PreprocessingConfigError(f"crop_to_body must be true or false, got {self.crop_to_body!r}.")
        self.crop_margin_mm = _in_range(_number(self.crop_margin_mm, "crop_margin_mm"), "crop_margin_mm",
                                        0.0, MAX_CROP_MARGIN_MM, "mm")
        for name in ("body_threshold_hu", "pad_hu"):
            setattr(self, name, _in_range(_number(getattr(self, name), name), name, *HU_SETTING_RANGE, "HU"))
        self.median_size = _integer(self.median_size, "median_size", 0, MAX_MEDIAN_SIZE)
        if self.median_size > 1 and self.median_size % 2 == 0:
            raise PreprocessingConfigError(f"median_size must be odd (3, 5, ...) or 0 for off, got {self.median_size}.")
        self.gaussian_sigma_mm = _in_range(_number(self.gaussian_sigma_mm, "gaussian_sigma_mm"), "gaussian_sigma_mm",
                                           0.0, MAX_GAUSSIAN_SIGMA_MM, "mm", low_text="0 (off)")
        if self.equalize not in EQUALIZE_KINDS:
            raise PreprocessingConfigError(f"equalize must be null, \"histogram\" or \"clahe\", got {self.equalize!r}.")
        if self.equalize is not None and not any(c["kind"] == "window" for c in self.channels):
            raise PreprocessingConfigError(f"equalize {self.equalize!r} applies to window channels, and this config has "
                                           f"none (only {sorted(set(c['kind'] for c in self.channels))}); add a "
                                           f"window channel or set equalize to null.")
        self.clahe_clip_limit = _number(self.clahe_clip_limit, "clahe_clip_limit")
        if not self.clahe_clip_limit > 0:
            raise PreprocessingConfigError("clahe_clip_limit must be > 0.")
        self.clahe_tiles = _integer(self.clahe_tiles, "clahe_tiles", 1, MAX_CLAHE_TILES)

    # ---- derived -----------------------------------------------------------------------------
    @property
    def channels_per_slice(self) -> int:
        """C0: channels computed from one slice."""
        return len(self.channels)

    def context_offset(self, slice_spacing_mm: float) -> float:
        """Slices between the 2.5D neighbours of a CT whose slices are ``slice_spacing_mm`` apart: 1.0 (adjacent)
        when the spacing lies within ``context_min_mm`` .. ``context_max_mm`` (a missing bound does not bound);
        below ``context_min_mm``, the smallest whole number of slices spanning at least that many mm (real slices);
        above ``context_max_mm``, ``context_max_mm / slice_spacing_mm`` (< 1: HU interpolated between adjacent
        slices). A whole number means real slices, a fraction interpolated ones."""
        if self.context_slices == 0 or (self.context_min_mm is None and self.context_max_mm is None):
            return 1.0
        spacing = float(slice_spacing_mm)
        if not np.isfinite(spacing) or spacing <= 0:
            raise PreprocessingConfigError(f"The slice spacing must be a positive number of mm, got {slice_spacing_mm}.")
        # a spacing within CONTEXT_TOLERANCE of a bound (or of a whole multiple of its slices) counts as on it: the
        # spacing a header states is rounded (0.99999 or 3.00001 mm), and 0.99999 mm made every second slice
        tolerance = CONTEXT_TOLERANCE
        if self.context_min_mm is not None and spacing < self.context_min_mm * (1 - tolerance):
            return float(max(1, int(np.ceil(self.context_min_mm / spacing - tolerance))))
        if self.context_max_mm is not None and spacing > self.context_max_mm * (1 + tolerance):
            return self.context_max_mm / spacing
        return 1.0

    def context_text(self, slice_spacing_mm: float) -> str:
        """How :meth:`context_offset` takes the neighbours on slices ``slice_spacing_mm`` apart, in words; "" when
        they are the adjacent slices."""
        offset = self.context_offset(slice_spacing_mm)
        if offset == 1.0:
            return ""
        if offset.is_integer():
            return (f"neighbours {int(offset)} slices ({offset * float(slice_spacing_mm):g} mm) apart on this CT's "
                    f"{float(slice_spacing_mm):g} mm slices (context_min_mm={self.context_min_mm:g})")
        return (f"neighbours interpolated {self.context_max_mm:g} mm from the centre on this CT's "
                f"{float(slice_spacing_mm):g} mm slices (context_max_mm={self.context_max_mm:g})")

    @property
    def num_context(self) -> int:
        """Slices per network input: ``2 * context_slices + 1``."""
        return 2 * self.context_slices + 1

    @property
    def patch_computed_steps(self) -> List[str]:
        """The steps depending on the whole slice that training still computes on each patch, while inference
        computes them on the whole slice: CLAHE (its tiles lie where the patch is) and the median and Gaussian
        filters (different only at the patch's edges). The pointwise ones (histogram scaling, z-score, global
        equalization) take their whole slice's statistics in training (``SlicePreprocessor.slice_statistics``),
        as inference does."""
        steps = [CLAHE_PATCH_STEP] if self.equalize == "clahe" else []
        if self.median_size > 1:
            steps.append("median filter (at the patch's edges)")
        if self.gaussian_sigma_mm > 0:
            steps.append("Gaussian filter (at the patch's edges)")
        return steps

    @property
    def in_channels(self) -> int:
        """Network input channels ``C = C0 * (2c + 1)``."""
        return self.channels_per_slice * self.num_context

    @property
    def channel_names(self) -> List[str]:
        """Names of the C0 per-slice channels (spec order)."""
        return [channel_name(c) for c in self.channels]

    @property
    def channel_descriptions(self) -> List[str]:
        """:attr:`channel_names` with the per-slice steps each channel passes through, in their order: the median
        and Gaussian filters (before every channel) and the equalization (after a window channel), e.g.
        ``"window wide (L0 W2000), after a 3x3 median filter, histogram-equalized"``. The preview named the window
        only, while its pictures showed the equalization and the filter too."""
        before = []
        if self.median_size > 1:
            before.append(f"after a {self.median_size}x{self.median_size} median filter")
        if self.gaussian_sigma_mm > 0:
            before.append(f"after a Gaussian filter (sigma {self.gaussian_sigma_mm:g} mm)")
        equalized = {"histogram": "histogram-equalized", "clahe": "CLAHE-equalized"}.get(self.equalize or "")
        out = []
        for spec in self.channels:
            steps = before + ([equalized] if equalized and spec["kind"] == "window" else [])
            out.append(", ".join([channel_name(spec)] + steps))
        return out

    @property
    def input_channel_names(self) -> List[str]:
        """Names of all C network channels in slice-major order, e.g. ``"z-1: window L40 W400"``."""
        names = []
        for off in range(-self.context_slices, self.context_slices + 1):
            prefix = "z" if off == 0 else f"z{off:+d}"
            names.extend(f"{prefix}: {n}" for n in self.channel_names)
        return names

    # ---- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-compatible dict (lists, not tuples)."""
        d = asdict(self)
        d["channels"] = copy.deepcopy(self.channels)
        if self.target_size is not None:
            d["target_size"] = list(self.target_size)
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "PreprocessingConfig":
        """Validated config from a dict; missing keys take defaults, unknown keys raise."""
        if not isinstance(d, dict):
            raise PreprocessingConfigError(f"A preprocessing config must be a JSON object, got {type(d).__name__}.")
        allowed = {f.name for f in fields(cls)}
        unknown = set(d) - allowed
        if unknown:
            from ..configutil import close_key_hint

            raise PreprocessingConfigError(f"Unknown preprocessing config key(s) {sorted(unknown)}"
                                           f"{close_key_hint(unknown, allowed)}; allowed: {sorted(allowed)}.")
        return cls(**copy.deepcopy(d))

    def to_json(self, indent: Optional[int] = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_given_dict(cls, d: Dict[str, Any]) -> "PreprocessingConfig":
        """A configuration a user gives (``train``/``crossval`` ``--preprocessing`` as JSON or a file, a recipe's
        ``preprocessing:`` mapping, ``preprocess --config``): the keys not given are the ``default`` preset's, as the
        help says ("default: 'default'"). :meth:`from_dict` fills them from the dataclass, whose 2.5D context bounds
        are None (what a package from before those bounds was trained with), so changing only the pixel size also
        dropped the 1-3 mm neighbour spacing without a word (the researcher-journey audit). The two context bounds
        go together: given one, the other is the given one's or none (a minimum of 6 mm would not fit under the
        preset's maximum of 3); give ``context_min_mm``/``context_max_mm`` null for no bound."""
        if not isinstance(d, dict):
            return cls.from_dict(d)  # (its refusal)
        base = copy.deepcopy(PRESETS["default"])
        if "context_min_mm" in d or "context_max_mm" in d:
            base["context_min_mm"] = base["context_max_mm"] = None
        return cls.from_dict(dict(base, **d))

    @classmethod
    def from_json(cls, text: str, given: bool = False) -> "PreprocessingConfig":
        """From JSON text; ``given``: a user's (:meth:`from_given_dict`), else :meth:`from_dict`."""
        from ..fileutil import json_loads_noting_repeats

        try:
            d, repeated = json_loads_noting_repeats(text)
        except json.JSONDecodeError as exc:
            raise PreprocessingConfigError(f"Preprocessing config is not valid JSON: {exc}.") from None
        if repeated:  # json keeps the last value without a word
            raise PreprocessingConfigError(f"Preprocessing config gives the key(s) "
                                           f"{', '.join(repr(k) for k in dict.fromkeys(repeated))} more than once; "
                                           f"give each key once.")
        return cls.from_given_dict(d) if given else cls.from_dict(d)

    @classmethod
    def from_file(cls, path: Any, given: bool = False) -> "PreprocessingConfig":
        """Read a JSON config file (``given``: a user's, :meth:`from_given_dict`); missing/unreadable files raise
        :class:`InputError`."""
        from pathlib import Path
        p = Path(path)
        if p.is_dir():  # was "does not exist; check the path", of a folder that does
            raise InputError(f"Preprocessing config '{p}' is a folder, not a JSON file; give the path of the "
                             f"JSON file.")
        if not p.is_file():
            raise InputError(f"Preprocessing config file '{p}' does not exist; check the path.")
        from ..fileutil import read_text_file
        try:
            text = read_text_file(p, "Preprocessing config")
        except OSError as exc:
            raise InputError(f"Cannot read preprocessing config '{p}': {exc}.") from None
        try:
            return cls.from_json(text, given=given)
        except PreprocessingConfigError as exc:
            raise PreprocessingConfigError(f"{p}: {exc}") from None

    # ---- presets -----------------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str) -> "PreprocessingConfig":
        """A named configuration; see :data:`PRESETS` and :func:`available_presets` (former names are accepted,
        see :data:`PRESET_ALIASES`)."""
        name = preset_name(name)
        if name not in PRESETS:
            raise PreprocessingConfigError(f"Unknown preprocessing preset '{name}'; choose one of {sorted(PRESETS)}.")
        return cls.from_dict(PRESETS[name])


# name -> config dict. Why each:
#   default : the bundled model's input. Three windows (abdomen -160..240 HU, liver-contrast 75/250,
#             wide -1000..1000) x 2.5D context of 1 slice each side, the neighbours 1-3 mm from the centre
#             (the bundled models' training slices were 1, 2 and 3 mm apart): every second slice of a
#             0.5-0.99 mm CT (with adjacent 0.5 mm slices they found 4-6 false lesions where the same CT at its
#             own spacing had none, 1-2 with every second slice), HU interpolated 3 mm from the centre on thicker
#             slices (on 5 mm slabs +0.03 to
#             +0.05 synthetic-tumor Dice; benchmarks/robustness.py thin and thick rows); pixels resampled to
#             1.5 mm (a prototype held its accuracy at 1.25-2.5 mm pixels and lost it at <= 1.0 mm), cropped
#             to the body and padded to a multiple of 32 for 5-level encoders.
#   two_windows_histscaled : Kulkarni, Vasistha and Roy, "Liver Tumor Segmentation using Image Segmentation
#             Techniques" (fastai LiTS notebook): two windows (fastai liver 30/150, "custom" 60/200; the paper
#             names windowing but no level or width) plus a per-slice frequency-histogram-scaled channel, in
#             the paper's to_nchan order (windows, then the scaled channel), single slices, resized to 256x256
#             (half of LiTS' 512x512; the paper does not state its size), no crop. Unlike the paper, the HU
#             slice is resized before it is windowed and scaled, in float32; the paper scales the full slices,
#             saves them as 8-bit JPEGs and resizes those. Its "every alternate slice" is a training choice,
#             not part of this preset.
#   window250_equalized : Li, Pan and Lin, "Deep Learning-Based Liver Cancer Segmentation Using U-net":
#             window centre 0 / width 250 followed by histogram equalization (the paper's order), 512 native
#             (the paper's U-Net takes 572 x 572 with valid padding).
#   wide_equalized_median : Elmenabawy, Elnakib and Moustafa, "Deep joint segmentation of liver and
#             cancerous nodules from CT images": histogram equalization + median filter, joint 3-label;
#             native 512x512 slices. The paper gives neither a window nor a filter size: the wide window
#             (-1000..1000 HU) before equalizing and the 3x3 median are this preset's choices. The paper lists
#             equalization first, then the median; here the median (like every filter) comes first, so the
#             equalization map is the filtered slice's histogram (the median commutes with the map itself, not
#             with the histogram it comes from): on a noisy 256 x 256 body phantom the two orders differ by up
#             to 0.14 (mean 0.06 inside the body) on the [0, 1] scale.
#   zscore_body : Dhanush et al., "Medical Image Analysis for Liver Tumor Localization and Segmentation
#             using Deep Learning": zero-mean unit-variance slices, native size. The paper normalises "every
#             image" as a whole; here mean and standard deviation come from inside the body, so the body has
#             mean 0 and variance 1 and the whole slice does not (on the same phantom: whole-slice mean -4.1,
#             the air near -11); {"kind": "zscore", "mask": "none"} takes the paper's whole-slice statistics.
PRESETS: Dict[str, Dict[str, Any]] = {
    "default": {"channels": _default_channels(), "context_slices": 1, "context_min_mm": 1.0,
                "context_max_mm": 3.0, "target_spacing_mm": 1.5, "size_multiple": 32, "crop_to_body": True},
    "two_windows_histscaled": {"channels": [{"kind": "window", "preset": "fastai_liver"},
                                            {"kind": "window", "preset": "liver"},
                             {"kind": "hist_scaled", "n_bins": 100}],
                "context_slices": 0, "target_spacing_mm": None, "target_size": [256, 256],
                "size_multiple": 32, "crop_to_body": False},
    "window250_equalized": {"channels": [{"kind": "window", "preset": "centre0_width250"}], "context_slices": 0,
                "target_spacing_mm": None, "size_multiple": 32, "crop_to_body": False, "equalize": "histogram"},
    "wide_equalized_median": {"channels": [{"kind": "window", "preset": "wide"}], "context_slices": 0,
                "target_spacing_mm": None, "size_multiple": 32, "crop_to_body": False,
                "equalize": "histogram", "median_size": 3},
    "zscore_body": {"channels": [{"kind": "zscore", "mask": "body"}], "context_slices": 0,
                "target_spacing_mm": None, "size_multiple": 32, "crop_to_body": False},
}


# Former names, still accepted (configs and model packages' training records written with them keep working);
# never listed in help texts.
PRESET_ALIASES: Dict[str, str] = {"seed000": "zscore_body", "seed001": "two_windows_histscaled",
                                  "seed002": "window250_equalized", "seed004": "wide_equalized_median"}


def preset_name(name: str) -> str:
    """The current name of a preprocessing preset (former names map to it; others are returned as given)."""
    return PRESET_ALIASES.get(name, name)


def available_presets() -> List[str]:
    """Names accepted by :meth:`PreprocessingConfig.preset` (former names are accepted too but not listed)."""
    return sorted(PRESETS)
