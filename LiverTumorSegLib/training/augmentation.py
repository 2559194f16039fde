"""On-the-fly augmentation of a 2.5D training sample in the HU domain.

A sample is an HU stack ``(T, H, W)`` = ``(z, y, x)`` float32 (T adjacent axial slices at the network grid)
with labels ``(T, H, W)`` or ``(H, W)`` (uint8, 0/1/2). :class:`SliceAugmenter` applies

0. optionally (``edge_context_probability``, off by default) **the scan's end** (:func:`cut_context`): the stack's
   neighbours on one side, beyond a random one of them, become air (-1000 HU, label 0; a reconstruction reaching
   beyond the body) or repeat the last kept slice (a scan's first or last slice, whose missing neighbours
   inference fills by repeating it), so a network sees a tumor on the slice next to air or at a cut as it will at
   inference (a bundled candidate trained with bright tumors called air neighbours tumor: docs/edge_context_lever.md).
1. **liver-only HU shift** (contrast-phase augmentation, on the original grid where label and image are
   exactly aligned): every voxel with label >= 1 is shifted by ``d`` HU (tumors by ``d`` times a fraction,
   as tumors enhance less than liver), the liver's outermost pixel ring by half of it; background untouched.
   ``d`` is clipped so the median liver HU stays in ``liver_target_hu_range`` (non-contrast ~40 HU to
   late-arterial ~130 HU), so a liver that is already dark is not pushed to 0 HU.
   Optionally (``liver_field_probability``, off by default) a **smooth liver HU field**: a random in-plane
   field of ``liver_field_amplitude_hu`` at most, varying over ``liver_field_scale_mm``, added to the liver
   and its tumors alike (uneven enhancement, perfusion differences, beam hardening: liver that is darker over
   a wide, soft-edged region, which a network may take for tumor). It stays liver; tumors keep their contrast
   to the liver around them.
2. **one spatial transform**, identical on all T slices and on the labels: rotation, shift, shear,
   anisotropic zoom, optional flips and an elastic displacement are composed into a single sampling grid
   and resampled **once** with ``torch.nn.functional.grid_sample`` (image bilinear, labels nearest;
   outside the image: ``fill_hu`` = -1024 HU air, label 0).
   Optionally (``metal_artifact_probability``, off by default) **metal with its streak artefacts**
   (:mod:`.metal_artifacts`: a projection-domain simulation of beam hardening and photon starvation, placed on
   bone, near the liver or anywhere in the body, on the network grid after the spatial transform); the labels
   stay as they are, so tissue under a streak keeps its class.
3. intensity ops in HU: global scale/shift, gamma inside an HU window, Gaussian blur, Gaussian noise
   (optionally, ``noise_grain_probability``, off by default, with an in-plane grain of ``noise_grain_px``:
   :func:`grained_noise`).

Flips are **off by default**: canonical slices have anatomical handedness (the liver is on the image
left); flipped samples would teach the network that a liver may lie on the patient's left, a prior it
needs to tell liver from spleen.

Why not MONAI ``RandAffined``/``Rand2DElasticd``: they draw one probability for the whole affine, uniform
(not log-uniform) zoom and elastic magnitudes in pixels; combining them resamples twice. The grid built
here is the same affine + smooth-displacement grid those transforms build, sampled with the same
``grid_sample`` call MONAI's ``Resample`` uses, with per-operation probabilities and mm units.
Randomness comes only from the ``np.random.Generator`` passed per call (reproducible per seed).
"""
from dataclasses import dataclass, fields
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from ..errors import InputError
from ..configutil import JsonDataclassMixin
from .labels import organ

RngLike = Union[np.random.Generator, int, None]


@dataclass
class AugmentationConfig(JsonDataclassMixin):
    """Probabilities and ranges of each transform; ranges are ``(low, high)``. JSON via ``to_dict``/``from_dict``."""

    # spatial (one resampling for all of them)
    rotation_probability: float = 0.5
    rotation_range_deg: Tuple[float, float] = (-15.0, 15.0)   # + = counter-clockwise as displayed (np.rot90)
    shift_probability: float = 0.3
    shift_range_fraction: Tuple[float, float] = (-0.05, 0.05)  # of H and of W
    shear_probability: float = 0.2
    shear_range: Tuple[float, float] = (-0.08, 0.08)
    zoom_probability: float = 0.4
    zoom_range: Tuple[float, float] = (0.85, 1.2)              # log-uniform; > 1 magnifies; the geometric mean of
    # the y and x zooms: each axis alone reaches up to sqrt(zoom_anisotropy) beyond the range (1.6 with a = 1.2: 1.75)
    zoom_anisotropy: float = 1.05                              # y and x zoom differ by log-uniform [1/a, a]
    elastic_probability: float = 0.2
    elastic_magnitude_mm: Tuple[float, float] = (1.0, 4.0)     # displacement std at the control points
    elastic_grid_mm: float = 40.0                              # control point spacing
    flip_lr_probability: float = 0.0                           # off: anatomy has handedness
    flip_ud_probability: float = 0.0
    # intensity, HU
    liver_shift_probability: float = 0.5
    liver_shift_range_hu: Tuple[float, float] = (-40.0, 60.0)
    liver_target_hu_range: Optional[Tuple[float, float]] = (35.0, 135.0)  # None: no clipping
    tumor_shift_fraction: Tuple[float, float] = (0.5, 1.0)
    liver_field_probability: float = 0.0                       # off: existing recipes draw the same numbers
    liver_field_amplitude_hu: Tuple[float, float] = (10.0, 30.0)   # largest |field| in the liver, HU
    liver_field_scale_mm: Tuple[float, float] = (40.0, 100.0)      # control-point spacing of the field
    hu_scale_probability: float = 0.3
    hu_scale_range: Tuple[float, float] = (0.95, 1.05)
    hu_shift_probability: float = 0.3
    hu_shift_range: Tuple[float, float] = (-15.0, 15.0)
    gamma_probability: float = 0.2
    gamma_range: Tuple[float, float] = (0.8, 1.25)             # log-uniform
    gamma_window_hu: Tuple[float, float] = (-200.0, 300.0)
    blur_probability: float = 0.15
    blur_sigma_px: Tuple[float, float] = (0.3, 1.0)
    noise_probability: float = 0.3
    noise_std_hu: Tuple[float, float] = (2.0, 12.0)
    noise_grain_probability: float = 0.0                       # off by default; the v7, v10 and v11 recipes: 0.5
    noise_grain_px: Tuple[float, float] = (0.5, 1.5)           # in-plane Gaussian sigma of the noise's grain, px
    # the 2.5D stack at a scan's end (off: existing recipes draw the same numbers): the neighbours on one side,
    # beyond a random one of them, replaced by air or by the last kept slice (cut_context)
    edge_context_probability: float = 0.0
    edge_context_air_fraction: float = 0.5                     # of the cut stacks, the fraction given air
    # metal and its streaks (metal_artifacts.py; off: existing recipes draw the same numbers)
    metal_artifact_probability: float = 0.0
    metal_artifact_rms_hu: Tuple[float, float] = (20.0, 200.0)  # log-uniform; RMS over 15-40 mm from the metal
    fill_hu: float = -1024.0

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first field that is out of range."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_probability") and not 0.0 <= float(value) <= 1.0:
                raise InputError("AugmentationConfig.%s = %r must be a probability in [0, 1]." % (f.name, value))
            if isinstance(value, tuple) and (len(value) != 2 or not np.all(np.isfinite(np.asarray(value, float)))
                                             or float(value[0]) > float(value[1])):
                raise InputError("AugmentationConfig.%s = %r must be a (low, high) pair of finite numbers with "
                                 "low <= high." % (f.name, value))
        if self.liver_field_amplitude_hu[0] < 0:
            raise InputError("AugmentationConfig.liver_field_amplitude_hu = %r: the largest change is a size in HU, "
                             ">= 0 (the field takes both signs)." % (self.liver_field_amplitude_hu,))
        for name in ("elastic_magnitude_mm", "tumor_shift_fraction", "blur_sigma_px", "noise_std_hu"):
            if getattr(self, name)[0] < 0:  # a negative noise std failed inside the DataLoader; a negative
                # blur sigma silently meant no blur
                raise InputError("AugmentationConfig.%s = %r must be >= 0 (a size, not a signed change)."
                                 % (name, getattr(self, name)))
        for name in ("zoom_range", "gamma_range", "hu_scale_range", "liver_field_scale_mm", "noise_grain_px",
                     "metal_artifact_rms_hu"):
            if getattr(self, name)[0] <= 0:
                raise InputError("AugmentationConfig.%s = %r must be > 0." % (name, getattr(self, name)))
        if not 0.0 <= float(self.edge_context_air_fraction) <= 1.0:
            raise InputError("AugmentationConfig.edge_context_air_fraction = %r must be a fraction in [0, 1] (of the "
                             "cut stacks, those given air rather than the last kept slice)."
                             % (self.edge_context_air_fraction,))
        if self.zoom_anisotropy < 1.0:
            raise InputError("AugmentationConfig.zoom_anisotropy = %r must be >= 1 (1: the same zoom along y and x)."
                             % (self.zoom_anisotropy,))
        if self.elastic_grid_mm <= 0:
            raise InputError("AugmentationConfig.elastic_grid_mm = %r must be > 0 mm." % (self.elastic_grid_mm,))
        if self.gamma_window_hu[0] >= self.gamma_window_hu[1]:  # an empty window made gamma a silent no-op
            raise InputError("AugmentationConfig.gamma_window_hu = %r must be an HU window (low, high) with low < high."
                             % (self.gamma_window_hu,))

    @classmethod
    def disabled(cls) -> "AugmentationConfig":
        """All probabilities 0: the augmenter returns exact copies."""
        return cls(**{f.name: 0.0 for f in fields(cls) if f.name.endswith("_probability")})



def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


# ----------------------------------------------------------------------------------------------------------
# intensity ops (HU)

def liver_hu_shift(hu: np.ndarray, labels: np.ndarray, shift_hu: float, tumor_fraction: float = 1.0) -> np.ndarray:
    """Add ``shift_hu`` to liver voxels (label 1), ``shift_hu * tumor_fraction`` to tumor (label 2).

    ``hu`` ``(T, H, W)``; ``labels`` ``(T, H, W)`` or ``(H, W)`` (then used for every slice). The outermost
    in-plane ring of the liver (label >= 1) gets half the shift (partial-volume edge); label 0 is never
    changed. Returns a new float32 array.
    """
    lab = np.broadcast_to(labels, hu.shape)
    weight = _organ_weight(organ(lab))
    per_voxel = np.where(lab == 2, np.float32(shift_hu * tumor_fraction), np.float32(shift_hu))
    return (np.asarray(hu, dtype=np.float32) + weight * per_voxel).astype(np.float32)


def smooth_liver_field(hu: np.ndarray, labels: np.ndarray, amplitude_hu: float, scale_px: float,
                       rng: np.random.Generator) -> np.ndarray:
    """Add a smooth random in-plane field to the liver and its tumors (label >= 1), the same on every slice.

    ``hu`` ``(T, H, W)``; ``labels`` ``(T, H, W)`` or ``(H, W)``. The field is Gaussian control points every
    ``scale_px`` pixels, interpolated bicubically; the liver's outermost in-plane ring gets half of it (as
    :func:`liver_hu_shift`), and it is scaled so the largest change of any voxel is ``amplitude_hu``.
    Background (label 0) is never changed. Returns a new float32 array."""
    lab = np.broadcast_to(labels, hu.shape)
    liver = organ(lab)
    out = np.asarray(hu, dtype=np.float32).copy()
    if not liver.any():
        return out
    field = smooth_displacement(hu.shape[1:], 1.0, max(2.0, float(scale_px)), rng)[0]
    change = _organ_weight(liver) * field[None]
    peak = float(np.abs(change).max())
    return out + change * np.float32(amplitude_hu / peak) if peak > 0 else out


def _organ_weight(organ: np.ndarray) -> np.ndarray:
    """1 inside the organ mask ``(T, H, W)``, 0.5 on its outermost in-plane ring, 0 outside (float32)."""
    from scipy.ndimage import binary_erosion

    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]      # in-plane 4-neighbourhood
    core = binary_erosion(organ, structure=structure, border_value=1)
    return 0.5 * organ.astype(np.float32) + 0.5 * core.astype(np.float32)


EDGE_AIR_HU = -1000.0
"""HU of the air :func:`cut_context` puts beside a cut stack (a value, as ``air_pad15`` pads with; not
``inference.postprocess.AIR_HU``, the -400 HU threshold that finds lungs)."""


def cut_context(hu: np.ndarray, labels: np.ndarray, side: int, keep: int, air: bool) -> Tuple[np.ndarray, np.ndarray]:
    """A 2.5D stack ``(T, H, W)`` (``T = 2c + 1`` slices along z, the centre at index ``c``) as it looks at the end of
    a scan: the slices on ``side`` (-1: lower indices, +1: higher) more than ``keep`` (0 .. c - 1) slices from the
    centre are replaced, with ``air`` by air (:data:`EDGE_AIR_HU`, label 0: a reconstruction reaching beyond the
    body), else by the slice ``keep`` from the centre, the scan's last slice, which inference's neighbour clipping
    repeats (``preprocessor.context_positions``). ``labels`` ``(T, H, W)`` are replaced alike; a single centre
    label ``(H, W)`` comes back unchanged (a copy). Returns new arrays; the centre slice is never changed."""
    t = hu.shape[0]
    c = t // 2
    if t % 2 != 1 or c < 1:
        raise InputError("cut_context needs a 2.5D stack of 2c + 1 >= 3 slices, got shape %s." % (hu.shape,))
    if side not in (-1, 1) or not 0 <= int(keep) < c:
        raise InputError("cut_context: side must be -1 or +1 and keep in 0 .. %d, got side=%r, keep=%r."
                         % (c - 1, side, keep))
    last = c + side * int(keep)
    cut = slice(last + 1, t) if side > 0 else slice(0, last)
    out_hu, out_lab = hu.copy(), labels.copy()
    out_hu[cut] = EDGE_AIR_HU if air else hu[last]
    if labels.ndim == 3:
        out_lab[cut] = 0 if air else labels[last]
    return out_hu, out_lab


def gamma_in_window(hu: np.ndarray, gamma: float, window_hu: Tuple[float, float]) -> np.ndarray:
    """Apply ``x ** gamma`` to HU inside ``window_hu`` (mapped to [0, 1] and back); outside unchanged."""
    lo, hi = float(window_hu[0]), float(window_hu[1])
    out = np.asarray(hu, dtype=np.float32).copy()
    inside = (out > lo) & (out < hi)
    x = (out[inside] - lo) / (hi - lo)
    out[inside] = lo + (hi - lo) * np.power(x, gamma)
    return out


def gaussian_blur_in_plane(hu: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur of each slice of ``(T, H, W)`` with ``sigma_px`` pixels (no blur across slices)."""
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(np.asarray(hu, dtype=np.float32), (0.0, sigma_px, sigma_px), mode="nearest")


def grain_gain(sigma_px: float) -> float:
    """Standard deviation of unit white noise after :func:`gaussian_blur_in_plane` with ``sigma_px`` pixels: the
    L2 norm of that filter's own impulse response (so it follows the filter's kernel and truncation). About
    ``1 / (2 * sqrt(pi) * sigma)`` for sigma >= 1 px."""
    size = 2 * int(4.0 * float(sigma_px) + 2.0) + 1  # wider than scipy's kernel (radius int(4 sigma + 0.5))
    impulse = np.zeros((1, size, size), dtype=np.float32)
    impulse[0, size // 2, size // 2] = 1.0
    return float(np.sqrt(np.sum(gaussian_blur_in_plane(impulse, sigma_px).astype(np.float64) ** 2)))


def grained_noise(white: np.ndarray, grain_px: float) -> np.ndarray:
    """Noise ``(T, H, W)`` with CT-like grain: ``white`` (Gaussian, any std) filtered in-plane by a Gaussian of
    ``grain_px`` pixels, slice by slice (no correlation across slices), and rescaled by the filter's exact gain
    (:func:`grain_gain`) so its standard deviation stays that of ``white``. Real CT noise is correlated over
    about a millimetre (the reconstruction kernel), and on the network grid more so where a coarse CT
    (3 mm voxels) is upsampled to 1.5 mm pixels; white noise alone never shows a model that texture."""
    return gaussian_blur_in_plane(white, grain_px) * np.float32(1.0 / grain_gain(grain_px))


# ----------------------------------------------------------------------------------------------------------
# spatial

def affine_source_matrix(rotation_deg: float = 0.0, shear: float = 0.0, zoom_yx: Tuple[float, float] = (1.0, 1.0),
                         flip_lr: bool = False, flip_ud: bool = False) -> np.ndarray:
    """2x2 matrix mapping an output offset ``(dy, dx)`` from the image centre to the source offset.

    The forward (content) transform is flip, then zoom (``> 1`` magnifies), then shear, then rotation by
    ``rotation_deg`` counter-clockwise as displayed (rows down, columns right): +90 deg equals
    ``np.rot90(image)``. Returned is its inverse, which is what sampling needs.
    """
    t = np.deg2rad(rotation_deg)
    rotation = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])  # (dy, dx) content -> output
    shear_m = np.array([[1.0, shear], [0.0, 1.0]])
    zoom_m = np.diag([zoom_yx[0], zoom_yx[1]])
    flip_m = np.diag([-1.0 if flip_ud else 1.0, -1.0 if flip_lr else 1.0])
    forward = rotation @ shear_m @ zoom_m @ flip_m
    return np.linalg.inv(forward)


def smooth_displacement(shape_hw: Tuple[int, int], magnitude_px: float, grid_px: float,
                        rng: np.random.Generator) -> np.ndarray:
    """Smooth random displacement ``(2, H, W)`` (dy, dx) in pixels: Gaussian control points every ``grid_px``
    pixels with std ``magnitude_px``, interpolated bicubically. float32."""
    import torch

    h, w = int(shape_hw[0]), int(shape_hw[1])
    ny = max(2, int(np.ceil((h - 1) / grid_px)) + 1)
    nx = max(2, int(np.ceil((w - 1) / grid_px)) + 1)
    control = rng.standard_normal((1, 2, ny, nx)).astype(np.float32) * np.float32(magnitude_px)
    field = torch.nn.functional.interpolate(torch.from_numpy(control), size=(h, w), mode="bicubic",
                                            align_corners=True)
    return field[0].numpy()


def resample_slices(arrays: np.ndarray, source_yx: np.ndarray, mode: str, fill: float) -> np.ndarray:
    """Sample ``arrays`` ``(C, H, W)`` at pixel coordinates ``source_yx`` ``(2, H_out, W_out)``.

    ``mode``: ``"bilinear"`` or ``"nearest"``; outside the input: ``fill``. One ``grid_sample`` call for
    all channels. Returns float32 ``(C, H_out, W_out)``.
    """
    import torch

    c, h, w = arrays.shape
    grid = np.empty(source_yx.shape[1:] + (2,), dtype=np.float32)
    grid[..., 0] = 2.0 * source_yx[1] / max(w - 1, 1) - 1.0      # x
    grid[..., 1] = 2.0 * source_yx[0] / max(h - 1, 1) - 1.0      # y
    data = torch.from_numpy(np.ascontiguousarray(arrays, dtype=np.float32) - np.float32(fill))[None]
    out = torch.nn.functional.grid_sample(data, torch.from_numpy(grid)[None], mode=mode, padding_mode="zeros",
                                          align_corners=True)
    return out[0].numpy() + np.float32(fill)


def _checked_pixel_mm(value: Any) -> float:
    """``value`` as an in-plane pixel size in mm: a finite number > 0. NaN, infinity or text failed later, inside
    the DataLoader, with "cannot convert float NaN to integer" or a division by zero."""
    import numbers

    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
            or not (np.isfinite(float(value)) and float(value) > 0):
        raise InputError("pixel_spacing_mm must be a finite number of mm > 0 (the in-plane pixel size of the "
                         "network grid, e.g. 1.5); got %r." % (value,))
    return float(value)


class SliceAugmenter:
    """Random augmentation of one 2.5D sample; ``__call__(hu, labels, rng) -> (hu, labels)``.

    ``hu``: ``(T, H, W)`` HU; ``labels``: ``(T, H, W)`` or ``(H, W)`` uint8 (0/1/2), returned in the same
    shape. ``pixel_spacing_mm``: in-plane pixel size of the network grid (for mm-valued ranges); a call may give
    its own sample's (``pixel_spacing_mm=`` of :meth:`__call__` and :meth:`source_reach_px`), which matters for
    configs without a fixed network spacing, where every case has its own.
    ``last_params`` holds what was drawn in the latest call (for logging and tests).
    """

    def __init__(self, config: Optional[AugmentationConfig] = None, pixel_spacing_mm: float = 1.5) -> None:
        if config is not None and not isinstance(config, AugmentationConfig):
            raise InputError("SliceAugmenter needs an AugmentationConfig, got %s; build one from a dict with "
                             "AugmentationConfig.from_dict(options)." % type(config).__name__)
        self.config = config or AugmentationConfig()
        self.pixel_spacing_mm = _checked_pixel_mm(pixel_spacing_mm)
        self.last_params: Dict[str, Any] = {}

    def draw_spatial(self, rng: np.random.Generator, shape_hw: Tuple[int, int]) -> Dict[str, Any]:
        """The spatial parameters of one call (rotation, shift in pixels of ``shape_hw``, shear, zoom, flips,
        elastic magnitude); pass them to :meth:`__call__` as ``spatial`` to draw them before the call."""
        cfg, p = self.config, {}
        if rng.random() < cfg.rotation_probability:
            p["rotation_deg"] = float(rng.uniform(*cfg.rotation_range_deg))
        if rng.random() < cfg.shift_probability:
            p["shift_yx_px"] = (float(rng.uniform(*cfg.shift_range_fraction)) * shape_hw[0],
                                float(rng.uniform(*cfg.shift_range_fraction)) * shape_hw[1])
        if rng.random() < cfg.shear_probability:
            p["shear"] = float(rng.uniform(*cfg.shear_range))
        if rng.random() < cfg.zoom_probability:
            zoom = _log_uniform(rng, *cfg.zoom_range)
            aniso = _log_uniform(rng, 1.0 / cfg.zoom_anisotropy, cfg.zoom_anisotropy)
            p["zoom_yx"] = (float(zoom * np.sqrt(aniso)), float(zoom / np.sqrt(aniso)))
        if rng.random() < cfg.flip_lr_probability:
            p["flip_lr"] = True
        if rng.random() < cfg.flip_ud_probability:
            p["flip_ud"] = True
        if rng.random() < cfg.elastic_probability:
            p["elastic_magnitude_mm"] = float(rng.uniform(*cfg.elastic_magnitude_mm))
        return p

    def _pixel_mm(self, pixel_spacing_mm: Optional[float]) -> float:
        """This call's in-plane pixel size (mm): the given one, else the augmenter's."""
        if pixel_spacing_mm is None:
            return self.pixel_spacing_mm
        return _checked_pixel_mm(pixel_spacing_mm)

    def source_reach_px(self, params: Dict[str, Any], half_extent_px: float,
                        pixel_spacing_mm: Optional[float] = None) -> float:
        """How far (pixels, per axis) from the image centre the sampling of output pixels within
        ``half_extent_px`` of the centre reads, for ``params`` from :meth:`draw_spatial`: the affine part exactly
        (corners of the output square), plus four standard deviations of the elastic displacement."""
        matrix = affine_source_matrix(params.get("rotation_deg", 0.0), params.get("shear", 0.0),
                                      params.get("zoom_yx", (1.0, 1.0)), params.get("flip_lr", False),
                                      params.get("flip_ud", False))
        shift = np.asarray(params.get("shift_yx_px", (0.0, 0.0)), dtype=float)
        corners = np.array([[sy, sx] for sy in (-1.0, 1.0) for sx in (-1.0, 1.0)]) * float(half_extent_px)
        reach = float(np.abs((corners - shift) @ matrix.T).max())
        if "elastic_magnitude_mm" in params:
            reach += 4.0 * params["elastic_magnitude_mm"] / self._pixel_mm(pixel_spacing_mm)
        return reach

    def _source_grid(self, params: Dict[str, Any], shape_hw: Tuple[int, int],
                     rng: np.random.Generator, pixel_mm: float) -> np.ndarray:
        """Pixel coordinates ``(2, H, W)`` to sample for each output pixel: affine then elastic, composed."""
        h, w = shape_hw
        matrix = affine_source_matrix(params.get("rotation_deg", 0.0), params.get("shear", 0.0),
                                      params.get("zoom_yx", (1.0, 1.0)), params.get("flip_lr", False),
                                      params.get("flip_ud", False)).astype(np.float32)
        shift = params.get("shift_yx_px", (0.0, 0.0))
        cy, cx = 0.5 * (h - 1), 0.5 * (w - 1)
        dy = (np.arange(h, dtype=np.float32) - np.float32(cy + shift[0]))[:, None]
        dx = (np.arange(w, dtype=np.float32) - np.float32(cx + shift[1]))[None, :]
        source = np.empty((2, h, w), dtype=np.float32)
        source[0] = matrix[0, 0] * dy + matrix[0, 1] * dx + np.float32(cy)
        source[1] = matrix[1, 0] * dy + matrix[1, 1] * dx + np.float32(cx)
        if "elastic_magnitude_mm" in params:
            source += smooth_displacement((h, w), params["elastic_magnitude_mm"] / pixel_mm,
                                          self.config.elastic_grid_mm / pixel_mm, rng)
        return source

    def __call__(self, hu: np.ndarray, labels: np.ndarray, rng: RngLike = None,
                 spatial: Optional[Dict[str, Any]] = None, pixel_spacing_mm: Optional[float] = None
                 ) -> Tuple[np.ndarray, np.ndarray]:
        """``spatial``: parameters drawn beforehand by :meth:`draw_spatial` (else drawn here);
        ``pixel_spacing_mm``: this sample's in-plane pixel size (else the augmenter's)."""
        cfg = self.config
        pixel_mm = self._pixel_mm(pixel_spacing_mm)
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        hu_arr = np.asarray(hu, dtype=np.float32)
        lab_arr = np.asarray(labels)
        if hu_arr.ndim != 3:
            raise InputError("SliceAugmenter needs an HU stack (T, H, W); got shape %s." % (hu_arr.shape,))
        if lab_arr.shape != hu_arr.shape and lab_arr.shape != hu_arr.shape[1:]:
            raise InputError("Labels %s must have the HU stack's shape %s or be one (H, W) slice."
                             % (lab_arr.shape, hu_arr.shape))
        out_hu = hu_arr.copy()
        out_lab = lab_arr.astype(np.uint8, copy=True)
        params: Dict[str, Any] = {}

        # first, so that the later HU operations (noise included) act on the new slices as on a scan's own;
        # drawn only when switched on, so recipes without it keep their random stream (and weights)
        if cfg.edge_context_probability > 0 and out_hu.shape[0] >= 3 and out_hu.shape[0] % 2 == 1 \
                and rng.random() < cfg.edge_context_probability:
            side = -1 if rng.random() < 0.5 else 1
            keep = int(rng.integers(out_hu.shape[0] // 2))
            air = bool(rng.random() < cfg.edge_context_air_fraction)
            out_hu, out_lab = cut_context(out_hu, out_lab, side, keep, air)
            params["edge_context"] = {"side": side, "keep": keep, "air": air}
        if rng.random() < cfg.liver_shift_probability and organ(out_lab).any():
            shift = float(rng.uniform(*cfg.liver_shift_range_hu))
            liver_values = out_hu[np.broadcast_to(out_lab, out_hu.shape) == 1]
            if cfg.liver_target_hu_range is not None and liver_values.size:
                liver_hu = float(np.median(liver_values))
                lo, hi = cfg.liver_target_hu_range
                shift = float(np.clip(shift, min(0.0, lo - liver_hu), max(0.0, hi - liver_hu)))
            fraction = float(rng.uniform(*cfg.tumor_shift_fraction))
            out_hu = liver_hu_shift(out_hu, out_lab, shift, fraction)
            params["liver_shift_hu"], params["tumor_shift_fraction"] = shift, fraction
        # drawn only when switched on, so recipes without it keep their random stream (and weights)
        if cfg.liver_field_probability > 0 and rng.random() < cfg.liver_field_probability and organ(out_lab).any():
            amplitude = float(rng.uniform(*cfg.liver_field_amplitude_hu))
            scale_mm = float(rng.uniform(*cfg.liver_field_scale_mm))
            out_hu = smooth_liver_field(out_hu, out_lab, amplitude, scale_mm / pixel_mm, rng)
            params["liver_field_amplitude_hu"], params["liver_field_scale_mm"] = amplitude, scale_mm

        if spatial is None:
            spatial = self.draw_spatial(rng, out_hu.shape[1:])
        if spatial:
            source = self._source_grid(spatial, out_hu.shape[1:], rng, pixel_mm)
            out_hu = resample_slices(out_hu, source, "bilinear", cfg.fill_hu)
            lab3 = out_lab if out_lab.ndim == 3 else out_lab[None]
            out_lab = np.rint(resample_slices(lab3.astype(np.float32), source, "nearest", 0.0)).astype(np.uint8)
            if lab_arr.ndim == 2:
                out_lab = out_lab[0]
            params.update(spatial)
        # drawn only when switched on, so recipes without it keep their random stream (and weights)
        if cfg.metal_artifact_probability > 0 and rng.random() < cfg.metal_artifact_probability:
            from .metal_artifacts import add_metal_artifact

            out_hu, params["metal_artifact"] = add_metal_artifact(out_hu, out_lab, rng, pixel_mm,
                                                                  cfg.metal_artifact_rms_hu)

        if rng.random() < cfg.hu_scale_probability:
            params["hu_scale"] = float(rng.uniform(*cfg.hu_scale_range))
            out_hu *= np.float32(params["hu_scale"])
        if rng.random() < cfg.hu_shift_probability:
            params["hu_shift"] = float(rng.uniform(*cfg.hu_shift_range))
            out_hu += np.float32(params["hu_shift"])
        if rng.random() < cfg.gamma_probability:
            params["gamma"] = _log_uniform(rng, *cfg.gamma_range)
            out_hu = gamma_in_window(out_hu, params["gamma"], cfg.gamma_window_hu)
        if rng.random() < cfg.blur_probability:
            params["blur_sigma_px"] = float(rng.uniform(*cfg.blur_sigma_px))
            out_hu = gaussian_blur_in_plane(out_hu, params["blur_sigma_px"])
        if rng.random() < cfg.noise_probability:
            params["noise_std_hu"] = float(rng.uniform(*cfg.noise_std_hu))
            grain_px = None
            if cfg.noise_grain_probability > 0 and rng.random() < cfg.noise_grain_probability:
                grain_px = params["noise_grain_px"] = float(rng.uniform(*cfg.noise_grain_px))
            noise = rng.normal(0.0, params["noise_std_hu"], size=out_hu.shape).astype(np.float32)
            if grain_px is not None:
                noise = grained_noise(noise, grain_px)
            out_hu = out_hu + noise
        edge = params.get("edge_context")
        if edge is not None and not edge["air"]:
            # a repeated last slice is an exact copy at inference (the clipped neighbour): one drawn with noise (or
            # metal streaks) of its own was an input inference never gives
            out_hu = cut_context(out_hu, out_lab, edge["side"], edge["keep"], air=False)[0]
        self.last_params = params
        return out_hu.astype(np.float32, copy=False), out_lab
