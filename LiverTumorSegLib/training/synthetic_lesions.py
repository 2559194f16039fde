"""Synthetic liver tumors inserted into HU stacks, for training without tumor labels.

A training sample is an HU stack ``(T, H, W)`` = ``(z, y, x)`` float32 (T adjacent axial slices of a
canonical CT at the network grid) plus labels of the same shape (uint8, 0 background, 1 liver, 2 tumor).
:func:`insert_lesions` adds 3D lesions (ellipsoids in millimetres, so the slice spacing matters and the
lesion is consistent across the T slices) **in the HU domain, before intensity preprocessing**:

* size: diameter log-uniform in ``diameter_range_mm``; radii anisotropic and randomly rotated;
  outline perturbed by a smooth low-frequency radial function (``irregularity``);
* intensity: relative to the **local** liver HU (median of liver voxels near the lesion), hypodense
  (``hypo_contrast_hu`` below) or hyperdense (``hyper_contrast_hu`` above); soft sigmoid margin
  (``margin_softness_mm``); optional darker necrotic centre and enhancing rim; texture = grain noise
  with the std and lag-1 correlation measured in the surrounding liver plus a smooth heterogeneity;
* the intensity change and the label are confined to the liver (``labels >= 1``); a lesion may reach
  the liver edge (a fraction of centres is drawn near the edge), where it is clipped;
* except an **exophytic** lesion (``exophytic_probability``, off by default: the chance that a lesion whose centre
  was drawn near the edge is one): its centre is put at the depth below (or above) the liver's surface that would
  leave a share drawn from ``exophytic_outside_fraction`` (30-70 %) of a ball beyond a flat surface, where the
  surface faces fat or soft tissue, and outside the liver its intensity and label take background of
  :data:`EXOPHYTIC_ROOM_HU` (-250..150 HU, label 0) connected to the liver: never air, lung, bone or the padding.
  Its HU there is the lesion's own (local liver HU plus contrast, texture, soft margin). A tumor bulging out of the
  capsule (HCC, metastases) was found only inside the liver by a network that never saw one (issue 11).

Label 2 is written where the lesion blend weight is > 0.5 and the voxel is liver (or, for an exophytic lesion,
that background).

**Synthetic vessels (negatives)**: with ``vessel_probability``, :func:`insert_vessels` first draws
``vessel_count_range`` tubes through the liver (a random 3D direction through a liver point, slightly
curved, radius ``vessel_radius_mm``, length ``vessel_length_mm``), brighter than the local liver by
``vessel_contrast_hu`` (portal-venous vessels; a fraction ``vessel_hypodense_probability`` darker, as
unenhanced or arterial-phase veins), only on tumor-free liver (label 1). They stay **liver** (label 1): in a 2.5D view a bright vessel's
cross-section is a bright round spot, and the network must learn it is not a tumor (issue 11: bright
vessels called tumors). Vessels are inserted before the lesions, so a lesion drawn over a vessel covers it.
Pure numpy/scipy; all per-lesion work happens in the lesion's bounding box.

**Synthetic fluid beside the liver (negatives)**: with ``perihepatic_fluid_probability``,
:func:`~.synthetic_fluid.insert_perihepatic_fluid` first lays water-density fluid against the liver's outer surface
(ascites, a perihepatic collection, a pleural effusion); it stays **background** (label 0).
"""
import functools
import numbers
from dataclasses import dataclass, fields
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import InputError
from ..configutil import JsonDataclassMixin
from ..robust_stats import robust_std
from .labels import organ

RngLike = Union[np.random.Generator, int, None]


@dataclass
class LesionConfig(JsonDataclassMixin):
    """How synthetic lesions are drawn. Ranges are ``(low, high)``; all lengths in mm, intensities in HU.

    JSON-serialisable through :meth:`to_dict` / :meth:`from_dict`.
    """

    probability: float = 0.8                     # chance a sample gets any lesions
    count_range: Tuple[int, int] = (1, 6)         # number of lesions (inclusive)
    diameter_range_mm: Tuple[float, float] = (3.0, 60.0)   # log-uniform
    anisotropy: float = 1.3                      # each radius scaled by log-uniform [1/a, a] (volume kept)
    irregularity_range: Tuple[float, float] = (0.0, 0.3)   # relative amplitude of the radial perturbation
    hypodense_probability: float = 0.85
    hypo_contrast_hu: Tuple[float, float] = (15.0, 80.0)   # HU below local liver
    hyper_contrast_hu: Tuple[float, float] = (15.0, 60.0)  # HU above local liver
    min_lesion_hu: float = -10.0                 # a hypodense lesion's base HU never darker than this (cyst/fat
    # floor); a necrotic centre is darker still by necrosis_extra_hu
    margin_softness_mm: Tuple[float, float] = (0.5, 2.5)   # sigmoid width of the edge
    necrosis_probability: float = 0.3            # only lesions >= necrosis_min_diameter_mm
    necrosis_min_diameter_mm: float = 20.0
    necrosis_extra_hu: Tuple[float, float] = (15.0, 50.0)  # centre this much darker than the lesion
    necrosis_fraction: Tuple[float, float] = (0.3, 0.6)    # necrotic radius / lesion radius
    rim_probability: float = 0.15                # enhancing rim (brighter ring just inside the edge)
    rim_contrast_hu: Tuple[float, float] = (15.0, 45.0)
    rim_width_mm: Tuple[float, float] = (1.5, 4.0)
    texture_noise_factor: Tuple[float, float] = (0.8, 1.2)  # grain std / local liver noise std
    heterogeneity_hu: Tuple[float, float] = (0.0, 8.0)      # std of smooth texture inside the lesion
    heterogeneity_scale_mm: Tuple[float, float] = (2.0, 5.0)
    edge_probability: float = 0.3                # centre drawn within one radius of the liver edge
    cluster_probability: float = 0.2             # all lesions of the sample touch the first: confluent mass
    allow_boundary_touching: bool = True         # False: centre and base radius chosen to stay inside the liver
    # on the anchor slice (stretched or irregular outlines and other slices can still reach the edge)
    anchor: str = "middle_slice"                 # "middle_slice": centre (y, x) on the middle slice; "any"
    z_offset_fraction: float = 0.6               # centre z moved by U(-f, f) * z radius (anchor middle_slice)
    local_radius_mm: float = 25.0                # neighbourhood for local liver HU / noise
    min_liver_voxels: int = 30                   # fewer liver voxels in the stack -> no lesion
    vessel_probability: float = 0.0              # chance a sample gets synthetic vessels (label stays liver)
    vessel_count_range: Tuple[int, int] = (1, 4)
    vessel_radius_mm: Tuple[float, float] = (1.5, 6.0)
    vessel_length_mm: Tuple[float, float] = (30.0, 120.0)
    vessel_contrast_hu: Tuple[float, float] = (30.0, 120.0)   # above local liver (portal-venous)
    vessel_hypodense_probability: float = 0.2                 # then (contrast / 3) below local liver
    perihepatic_fluid_probability: float = 0.0   # chance a sample gets fluid outside the liver (label stays 0)
    perihepatic_fluid_thickness_mm: Tuple[float, float] = (3.0, 15.0)   # from the liver's surface
    perihepatic_fluid_sector_deg: Tuple[float, float] = (90.0, 240.0)   # in-plane arc around the liver's centre
    perihepatic_fluid_hu: Tuple[float, float] = (0.0, 20.0)             # water, bile, ascites, effusion
    perihepatic_fluid_reach_deg: float = 180.0   # the arc within this angle of the patient's right (180: anywhere)
    exophytic_probability: float = 0.0           # chance a lesion drawn at the edge (edge_probability) is exophytic
    exophytic_outside_fraction: Tuple[float, float] = (0.3, 0.7)   # its aimed share of volume outside the liver

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first field that is out of range."""
        for name in ("probability", "hypodense_probability", "necrosis_probability", "rim_probability",
                     "edge_probability", "cluster_probability", "vessel_probability",
                     "vessel_hypodense_probability", "perihepatic_fluid_probability", "exophytic_probability"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise InputError("LesionConfig.%s = %r must be a probability in [0, 1]." % (name, getattr(self, name)))
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                if len(value) != 2 or float(value[0]) > float(value[1]):
                    raise InputError("LesionConfig.%s = %r must be a (low, high) pair with low <= high."
                                     % (f.name, value))
        if self.count_range[0] < 0:
            raise InputError("LesionConfig.count_range = %r must be >= 0 lesions." % (self.count_range,))
        if self.diameter_range_mm[0] <= 0:
            raise InputError("LesionConfig.diameter_range_mm = %r must be > 0 mm." % (self.diameter_range_mm,))
        for name in ("margin_softness_mm", "rim_width_mm", "heterogeneity_scale_mm", "vessel_radius_mm",
                     "vessel_length_mm", "perihepatic_fluid_thickness_mm"):
            if getattr(self, name)[0] <= 0:  # a negative edge width turned the lesion inside out
                raise InputError("LesionConfig.%s = %r must be > 0 mm." % (name, getattr(self, name)))
        for name in ("irregularity_range", "hypo_contrast_hu", "hyper_contrast_hu", "necrosis_extra_hu",
                     "necrosis_fraction", "rim_contrast_hu", "texture_noise_factor", "heterogeneity_hu",
                     "vessel_count_range", "vessel_contrast_hu"):
            if getattr(self, name)[0] < 0:  # contrasts are sizes: hypo- and hyperdense say the sign
                raise InputError("LesionConfig.%s = %r must be >= 0." % (name, getattr(self, name)))
        if not 0.0 < self.perihepatic_fluid_sector_deg[0] <= self.perihepatic_fluid_sector_deg[1] <= 360.0:
            raise InputError("LesionConfig.perihepatic_fluid_sector_deg = %r: an arc around the liver's centre, "
                             "more than 0 and at most 360 degrees." % (self.perihepatic_fluid_sector_deg,))
        if not 0.0 < float(self.perihepatic_fluid_reach_deg) <= 180.0:
            raise InputError("LesionConfig.perihepatic_fluid_reach_deg = %r: the angle (degrees) from the patient's "
                             "right the fluid's arc may reach, more than 0 and at most 180 (anywhere)."
                             % (self.perihepatic_fluid_reach_deg,))
        if not 0.0 <= self.exophytic_outside_fraction[0] <= self.exophytic_outside_fraction[1] <= 1.0:
            raise InputError("LesionConfig.exophytic_outside_fraction = %r: the share of an exophytic lesion's volume "
                             "outside the liver, two fractions in [0, 1], low <= high."
                             % (self.exophytic_outside_fraction,))
        if self.necrosis_fraction[1] > 1.0:
            raise InputError("LesionConfig.necrosis_fraction = %r: the necrotic radius is a fraction of the "
                             "lesion's, at most 1." % (self.necrosis_fraction,))
        for name in ("local_radius_mm", "necrosis_min_diameter_mm", "z_offset_fraction", "min_liver_voxels"):
            if getattr(self, name) < 0:
                raise InputError("LesionConfig.%s = %r must be >= 0." % (name, getattr(self, name)))
        if self.z_offset_fraction > 1.0:  # 2 left the middle slice without tumor in 45 % of samples, 5 in 75 %
            raise InputError("LesionConfig.z_offset_fraction = %r must be in [0, 1]: a fraction of the lesion's z "
                             "radius; a centre moved further misses the middle slice, whose label is learned."
                             % (self.z_offset_fraction,))
        if self.anisotropy < 1.0:
            raise InputError("LesionConfig.anisotropy = %r must be >= 1 (1 = sphere)." % self.anisotropy)
        if self.anchor not in ("middle_slice", "any"):
            raise InputError("LesionConfig.anchor = %r must be 'middle_slice' or 'any'." % self.anchor)



# ----------------------------------------------------------------------------------------------------------
# local image statistics

def local_liver_stats(hu: np.ndarray, liver: np.ndarray, center_zyx: Sequence[float],
                      spacing_zyx: Sequence[float], radius_mm: float) -> Tuple[float, float, Tuple[float, float, float]]:
    """Median HU, grain noise std (HU) and per-axis lag-1 noise correlation of the liver near a point.

    ``hu``, ``liver``: ``(z, y, x)``; ``liver`` is the tumor-free liver mask. Uses the box of half-size
    ``radius_mm`` around ``center_zyx`` (voxel index); falls back to the whole array when the box holds
    fewer than 50 liver voxels. Noise std comes from differences of neighbouring liver voxels (robust to
    vessels); the correlation ``rho = 1 - var(diff) / (2 var)``, per axis (z, y, x), clipped to [0, 0.9]
    (:data:`MAX_TEXTURE_LAG1`).
    Returns ``(nan, 0, (0, 0, 0))`` when there is no liver at all.
    """
    lo = [max(0, int(np.floor(c - radius_mm / s))) for c, s in zip(center_zyx, spacing_zyx)]
    hi = [min(n, int(np.ceil(c + radius_mm / s)) + 1) for c, n, s in zip(center_zyx, hu.shape, spacing_zyx)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    h, m = hu[box], liver[box]
    if np.count_nonzero(m) < 50:
        h, m = hu, liver
    if not m.any():
        return float("nan"), 0.0, (0.0, 0.0, 0.0)
    values = h[m]
    median = float(np.median(values))
    spread = robust_std(values)
    diff_stds = []
    for axis in range(3):
        if h.shape[axis] < 2:
            diff_stds.append(None)
            continue
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[axis], b[axis] = slice(1, None), slice(None, -1)
        both = m[tuple(a)] & m[tuple(b)]
        d = (h[tuple(a)] - h[tuple(b)])[both]
        diff_stds.append(robust_std(d) / np.sqrt(2.0) if d.size >= 20 else None)
    in_plane = [s for s in diff_stds[1:] if s is not None]
    if in_plane:
        # grain std: the larger of the spread and the difference-based estimate (differences of noise with
        # lag-1 correlation rho give std * sqrt(1 - rho)), the spread trusted up to the largest rho measured:
        # capped at 2x the difference estimate, rho could not exceed 0.75 and a rho-0.9 liver's noise read
        # 6.3 HU instead of 10 (lesions smoother than the liver around them)
        noise = float(max(np.mean(in_plane), min(spread, np.mean(in_plane) / np.sqrt(1.0 - MAX_TEXTURE_LAG1))))
    else:
        noise = spread
    rhos = []
    for s in diff_stds:
        if s is None or noise <= 0:
            rhos.append(0.0)
        else:
            rhos.append(float(np.clip(1.0 - (s / noise) ** 2, 0.0, MAX_TEXTURE_LAG1)))
    return median, noise, (rhos[0], rhos[1], rhos[2])


MAX_TEXTURE_LAG1 = 0.9
"""Largest lag-1 correlation of liver noise :func:`liver_texture_stats` reports (per axis)."""


def _gaussian_kernel(sigma: float) -> np.ndarray:
    """The discrete kernel ``scipy.ndimage.gaussian_filter1d`` applies for ``sigma`` (pixels; truncate 4)."""
    from scipy.ndimage import gaussian_filter1d

    radius = int(np.ceil(4.0 * sigma))
    delta = np.zeros(2 * radius + 1, dtype=np.float64)
    delta[radius] = 1.0
    return gaussian_filter1d(delta, sigma, mode="constant")


def _kernel_lag1(kernel: np.ndarray) -> float:
    """Lag-1 correlation of white noise filtered with ``kernel``."""
    return float(np.sum(kernel[1:] * kernel[:-1]) / np.sum(kernel ** 2))


MAX_NOISE_SIGMA_PX = 2.0
"""Widest filter :func:`correlated_noise` uses (lag-1 correlation about 0.94)."""


def noise_sigma_for_lag1(rho: float) -> float:
    """The Gaussian width (pixels) whose discrete kernel gives white noise a lag-1 correlation of ``rho``.
    The continuous formula ``sqrt(-1 / (4 ln rho))`` holds only for wide kernels: the sampled kernel of a narrow
    one is nearly a delta, and asked for 0.2 or 0.3 it gave 0.08 or 0.18 (texture whiter than the liver's)."""
    return _sigma_for_lag1_milli(int(round(1000.0 * float(rho))))


@functools.lru_cache(maxsize=1024)
def _sigma_for_lag1_milli(rho_milli: int) -> float:
    target = rho_milli / 1000.0
    low, high = 0.05, MAX_NOISE_SIGMA_PX
    if _kernel_lag1(_gaussian_kernel(high)) <= target:
        return high
    for _ in range(40):  # the lag-1 correlation grows with the width
        middle = 0.5 * (low + high)
        if _kernel_lag1(_gaussian_kernel(middle)) < target:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def correlated_noise(shape: Sequence[int], rho_zyx: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Unit-variance Gaussian noise ``shape`` (z, y, x) with lag-1 correlation ``rho`` per axis (up to about
    0.94; at most 0.02 means white along that axis).

    Each axis is filtered with the Gaussian whose discrete kernel gives that correlation
    (:func:`noise_sigma_for_lag1`) and renormalised by the kernel's energy. The noise is drawn with the kernel's
    radius of margin on each filtered axis and the margin cut off, so every voxel is a full kernel's sum of
    independent draws: unit variance also on axes shorter than the kernel (reflecting at the edges of a
    3-slice stack gave its outer slices std 1.34). float32.
    """
    from scipy.ndimage import gaussian_filter1d

    shape = tuple(int(n) for n in shape)
    filters = [(axis, noise_sigma_for_lag1(rho)) for axis, rho in enumerate(rho_zyx)
               if rho > 0.02 and shape[axis] >= 2]
    margins = [0] * len(shape)
    for axis, sigma in filters:
        margins[axis] = (len(_gaussian_kernel(sigma)) - 1) // 2
    noise = rng.standard_normal(tuple(n + 2 * m for n, m in zip(shape, margins))).astype(np.float32)
    for axis, sigma in filters:
        noise = gaussian_filter1d(noise, sigma, axis=axis, mode="constant")
        noise /= np.float32(np.sqrt(np.sum(_gaussian_kernel(sigma) ** 2)))
    return np.ascontiguousarray(noise[tuple(slice(m, m + n) for n, m in zip(shape, margins))])


# ----------------------------------------------------------------------------------------------------------
# geometry

def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniform random 3x3 rotation matrix (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


@dataclass
class _Shape:
    """Ellipsoid in mm: centre (z, y, x) mm, radii mm, rotation (columns = lesion axes in zyx), outline terms."""

    center_mm: np.ndarray
    radii_mm: np.ndarray
    rotation: np.ndarray
    wave_dirs: np.ndarray      # (K, 3) unit vectors
    wave_freqs: np.ndarray     # (K,)
    wave_phases: np.ndarray    # (K,)
    wave_amps: np.ndarray      # (K,) relative radius perturbation

    @property
    def max_extent_mm(self) -> float:
        return float(self.radii_mm.max() * (1.0 + np.abs(self.wave_amps).sum()))


MIN_VISIBLE_CONTRAST_HU = 5.0
"""A hypodense lesion whose contrast the ``min_lesion_hu`` floor cuts below this (HU) is not inserted: in a liver
already at or near the floor (very fatty) it would get (almost) no contrast, i.e. a tumor label on tissue that
looks like liver. A contrast the user's ``hypo_contrast_hu`` asks for is kept however small."""


def _draw_shape(center_mm: np.ndarray, diameter_mm: float, config: LesionConfig,
                rng: np.random.Generator, sphere: bool) -> _Shape:
    r = 0.5 * diameter_mm
    if sphere:
        radii = np.full(3, r)
        rotation = np.eye(3)
    else:
        log_a = np.log(config.anisotropy)
        factors = np.exp(rng.uniform(-log_a, log_a, size=3))
        factors /= np.prod(factors) ** (1.0 / 3.0)       # keep the volume of the base sphere
        radii = r * factors
        rotation = _random_rotation(rng)
    irregularity = rng.uniform(*config.irregularity_range)
    k = 4
    dirs = rng.standard_normal((k, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    freqs = rng.uniform(1.0, 3.0, size=k)
    phases = rng.uniform(0, 2 * np.pi, size=k)
    amps = irregularity * rng.uniform(0.5, 1.0, size=k) / np.sqrt(k)
    if sphere:  # drawn all the same, so that a sphere call consumes the random numbers it always did
        amps = np.zeros_like(amps)
    return _Shape(center_mm=np.asarray(center_mm, dtype=float), radii_mm=radii, rotation=rotation,
                  wave_dirs=dirs, wave_freqs=freqs, wave_phases=phases, wave_amps=amps)


def _signed_distance_mm(shape: _Shape, box: Tuple[slice, slice, slice],
                        spacing_zyx: Sequence[float]) -> np.ndarray:
    """Approximate signed distance (mm, negative inside) to the perturbed ellipsoid surface, on a box.

    The normalised radius ``rho = |R^T (p - c) / radii|`` is compared with the outline
    ``1 + sum_k a_k cos(f_k pi (u . d_k) + phi_k)`` (``u`` the unit direction in lesion space) and the
    ratio is scaled by the direction's radius, which is exact for a sphere.
    """
    axes = [((np.arange(s.start, s.stop) + 0.5) * sp - c).astype(np.float32)
            for s, sp, c in zip(box, spacing_zyx, shape.center_mm)]
    dz, dy, dx = np.meshgrid(*axes, indexing="ij", sparse=True)
    rot = shape.rotation.astype(np.float32)
    # lesion-frame coordinates (mm): q = R^T d
    q = [rot[0, i] * dz + rot[1, i] * dy + rot[2, i] * dx for i in range(3)]
    n = [q[i] / np.float32(shape.radii_mm[i]) for i in range(3)]
    rho = np.sqrt(n[0] ** 2 + n[1] ** 2 + n[2] ** 2) + np.float32(1e-6)
    outline = np.ones_like(rho)
    for d, f, ph, a in zip(shape.wave_dirs, shape.wave_freqs, shape.wave_phases, shape.wave_amps):
        proj = (n[0] * np.float32(d[0]) + n[1] * np.float32(d[1]) + n[2] * np.float32(d[2])) / rho
        outline += np.float32(a) * np.cos(np.float32(f * np.pi) * proj + np.float32(ph))
    # radius of the ellipsoid along this direction, mm: 1 / |u / radii| with u = q / |q|
    qn = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2) + np.float32(1e-6)
    dir_radius = qn / rho
    return (rho - outline) * dir_radius


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# placement

def _as_rng(rng: RngLike) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _edge_distance_mm(liver: np.ndarray, spacing_zyx: Sequence[float], anchor_slice: Optional[int]) -> np.ndarray:
    """Distance (mm) from each liver voxel to the nearest non-liver voxel: 2D on the anchor slice, else 3D."""
    from scipy.ndimage import distance_transform_edt

    if anchor_slice is not None:
        mask, sampling = liver[anchor_slice], tuple(spacing_zyx[1:])
    else:
        # the stack's first/last slices are not a liver edge: replicate them before the transform
        mask, sampling = np.pad(liver, ((1, 1), (0, 0), (0, 0)), mode="edge"), tuple(spacing_zyx)
    out = np.zeros(mask.shape, dtype=np.float32)
    nonzero = np.nonzero(mask)
    if nonzero[0].size:
        # transform only the mask's bounding box (+1 voxel): same result, a fraction of the time
        box = tuple(slice(max(0, int(i.min()) - 1), int(i.max()) + 2) for i in nonzero)
        out[box] = distance_transform_edt(mask[box], sampling=sampling)
    return out if anchor_slice is not None else out[1:-1]


def _pick_center(liver: np.ndarray, edge_mm: Optional[np.ndarray], radius_mm: float, anchor_slice: Optional[int],
                 config: LesionConfig, rng: np.random.Generator, places: Optional["_ExophyticPlaces"] = None,
                 ) -> Optional[Tuple[np.ndarray, float, bool]]:
    """Voxel index (z, y, x) of a lesion centre, the (possibly reduced) radius and whether the lesion is exophytic
    (a centre at the liver's surface, :func:`_pick_exophytic`), or None."""
    region = liver[anchor_slice] if anchor_slice is not None else liver
    candidates = region
    if edge_mm is not None:
        if not config.allow_boundary_touching:
            if edge_mm.max() < 0.5 * config.diameter_range_mm[0]:
                return None
            radius_mm = min(radius_mm, 0.9 * float(edge_mm.max()))
            candidates = region & (edge_mm >= radius_mm)
        elif rng.random() < config.edge_probability:
            near = region & (edge_mm <= max(radius_mm, 2.0))
            if near.any():
                candidates = near
                # drawn only when switched on, so recipes without it keep their random stream (and weights)
                if config.exophytic_probability > 0 and places is not None \
                        and rng.random() < config.exophytic_probability:
                    center = _pick_exophytic(places, radius_mm, config, rng)
                    if center is not None:
                        return center, radius_mm, True
    index = np.flatnonzero(candidates)
    if index.size == 0:
        return None
    flat = int(index[rng.integers(index.size)])
    if anchor_slice is not None:
        y, x = np.unravel_index(flat, region.shape)
        z = float(anchor_slice)
        return np.array([z, y, x], dtype=float), radius_mm, False
    return np.array(np.unravel_index(flat, region.shape), dtype=float), radius_mm, False


EXOPHYTIC_ROOM_HU = (-250.0, 150.0)
"""CT values (HU) of the background an exophytic lesion may grow into: fat (about -100) and soft tissue, muscle,
bowel wall, kidney (30-80), enhancing bowel up to about 150; the same range as the fluid layer's
(:data:`~.synthetic_fluid.DISPLACEABLE_HU`). Never air or lung (below), bone or contrast-filled bowel (above), the
padding outside the scan, or a voxel another label (a tumor) holds."""


def _exophytic_room(hu: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Where an exophytic lesion may grow outside the liver: background (label 0) of :data:`EXOPHYTIC_ROOM_HU`;
    ``hu`` and ``labels`` of one shape, ``(z, y, x)`` or a box of it."""
    return (labels == 0) & (hu >= EXOPHYTIC_ROOM_HU[0]) & (hu <= EXOPHYTIC_ROOM_HU[1])


def _outside_depth(fraction: float) -> float:
    """Signed depth ``t`` (in radii, positive inside the liver) of a ball's centre below a flat surface such that
    ``fraction`` of its volume lies beyond it: the cap beyond a plane ``t r`` from the centre holds
    ``(1 - t)^2 (2 + t) / 4`` of the ball (0.3 -> +0.26, 0.5 -> 0, 0.7 -> -0.26)."""
    t = np.linspace(-1.0, 1.0, 2001)
    share = (1.0 - t) ** 2 * (2.0 + t) / 4.0   # falls from 1 to 0
    return float(np.interp(float(fraction), share[::-1], t[::-1]))


class _ExophyticPlaces:
    """Maps for placing exophytic lesions, computed on first use (only when a lesion is drawn exophytic): on the
    anchor slice (2D) or the whole stack (3D, its first and last slices replicated as for the edge distance)."""

    def __init__(self, hu: np.ndarray, labels: np.ndarray, liver: np.ndarray, spacing_zyx: Sequence[float],
                 anchor_slice: Optional[int]) -> None:
        self.hu, self.labels, self.liver = hu, labels, liver
        self.spacing = tuple(float(s) for s in spacing_zyx)
        self.anchor_slice = anchor_slice
        self._maps: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None

    def maps(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(depth_mm, room_distance_mm, room)``: signed distance to the liver's surface (positive inside, negative
        outside), distance to the nearest background of :data:`EXOPHYTIC_ROOM_HU`, and that background."""
        if self._maps is None:
            from scipy.ndimage import distance_transform_edt

            room = _exophytic_room(self.hu, self.labels)
            if self.anchor_slice is not None:
                liver, room, sampling = self.liver[self.anchor_slice], room[self.anchor_slice], self.spacing[1:]
                cut = (slice(None), slice(None))
            else:
                pad = ((1, 1), (0, 0), (0, 0))
                liver, room = np.pad(self.liver, pad, mode="edge"), np.pad(room, pad, mode="edge")
                sampling = self.spacing
                cut = (slice(1, -1), slice(None), slice(None))
            depth = distance_transform_edt(liver, sampling=sampling) - distance_transform_edt(~liver, sampling=sampling)
            room_distance = distance_transform_edt(~room, sampling=sampling) if room.any() \
                else np.full(room.shape, np.inf)
            self._maps = (depth[cut].astype(np.float32), room_distance[cut].astype(np.float32), room[cut])
        return self._maps


def _pick_exophytic(places: _ExophyticPlaces, radius_mm: float, config: LesionConfig,
                    rng: np.random.Generator) -> Optional[np.ndarray]:
    """Centre (voxel index z, y, x) of an exophytic lesion: at the signed depth below (or above) the liver's surface
    that would put a share drawn from ``exophytic_outside_fraction`` of a ball of ``radius_mm`` beyond a flat
    surface (:func:`_outside_depth`; 30-70 %: within 0.26 radii of it), on liver or on the background it may grow
    into, with that background (:data:`EXOPHYTIC_ROOM_HU`) within reach across the surface: a surface against fat,
    muscle, kidney or bowel, not lung, air or bone. None when no voxel qualifies (the caller then uses a plain
    edge centre)."""
    target = _outside_depth(rng.uniform(*config.exophytic_outside_fraction)) * radius_mm
    depth, room_distance, room = places.maps()
    region = places.liver[places.anchor_slice] if places.anchor_slice is not None else places.liver
    tolerance = max(min(places.spacing[1:]), 1.0)
    candidates = (np.abs(depth - np.float32(target)) <= tolerance) & (region | room) \
        & (room_distance <= max(target, 0.0) + tolerance + 0.25 * radius_mm)
    index = np.flatnonzero(candidates)
    if index.size == 0:
        return None
    flat = int(index[rng.integers(index.size)])
    if places.anchor_slice is not None:
        y, x = np.unravel_index(flat, region.shape)
        return np.array([float(places.anchor_slice), y, x], dtype=float)
    return np.array(np.unravel_index(flat, region.shape), dtype=float)


def _pick_next_to(first: Dict[str, Any], liver: np.ndarray, radius_mm: float, spacing_zyx: Sequence[float],
                  in_plane: bool, rng: np.random.Generator) -> Optional[Tuple[np.ndarray, float]]:
    """A centre overlapping lesion ``first`` (distance 0.4-0.9 x the sum of radii) on liver, or None.

    Several such lesions form one lobulated, confluent mass. ``in_plane``: offset only in y and x. Eight random
    directions at the drawn distance are tried first; when none lands on liver (a mass beside the liver's edge),
    a liver voxel at 0.4-0.9 x the sum of radii from the first centre is drawn (:func:`_liver_voxel_in_reach`):
    before, the lesion was placed anywhere in the liver, and the benchmark's "one confluent mass" came out as two
    (2 of 48 case-seed draws on the shared CTs). None only when no liver voxel lies in that reach.
    """
    spacing = np.asarray(spacing_zyx, dtype=float)
    first_center = np.asarray(first["center_zyx"], dtype=float)
    reach = rng.uniform(0.4, 0.9) * (0.5 * first["diameter_mm"] + radius_mm)
    for _ in range(8):
        direction = rng.standard_normal(3)
        if in_plane:
            direction[0] = 0.0
        direction /= np.linalg.norm(direction) + 1e-12
        center = first_center + direction * reach / spacing
        index = np.rint(center).astype(int)
        # the first lesion's centre may lie above or below the stack (its z offset): judge the liver on the
        # stack's nearest slice, where the two lesions show (the centre itself was refused, and a quarter of
        # the 'confluent' lesions of a 3-slice stack were placed anywhere)
        index[0] = min(max(index[0], 0), liver.shape[0] - 1)
        if np.all(index >= 0) and np.all(index < liver.shape) and liver[tuple(index)]:
            return center, radius_mm
    sum_of_radii = 0.5 * first["diameter_mm"] + radius_mm
    center = _liver_voxel_in_reach(first_center, liver, (0.4 * sum_of_radii, 0.9 * sum_of_radii), spacing,
                                   in_plane, rng)
    return None if center is None else (center, radius_mm)


def _liver_voxel_in_reach(first_center: np.ndarray, liver: np.ndarray, reach_mm: Tuple[float, float],
                          spacing: np.ndarray, in_plane: bool, rng: np.random.Generator) -> Optional[np.ndarray]:
    """Voxel index ``(z, y, x)`` (float) of a liver voxel whose distance from ``first_center`` (voxel index, may lie
    above or below the stack) is within ``reach_mm`` (mm, lo..hi), drawn uniformly by ``rng``; None when there is
    none. ``in_plane``: only on the stack slice nearest the first centre, at the first centre's own z (distance in
    y and x), as the random directions of :func:`_pick_next_to` are then."""
    lo_mm, hi_mm = reach_mm
    z_near = int(min(max(int(np.rint(first_center[0])), 0), liver.shape[0] - 1))
    if in_plane:
        zs = slice(z_near, z_near + 1)
    else:
        half = int(np.ceil(hi_mm / spacing[0]))
        zs = slice(max(z_near - half, 0), min(z_near + half + 1, liver.shape[0]))
    box = [zs]
    for axis in (1, 2):
        half = int(np.ceil(hi_mm / spacing[axis]))
        centre = int(np.rint(first_center[axis]))
        box.append(slice(max(centre - half, 0), min(centre + half + 1, liver.shape[axis])))
    found = np.argwhere(liver[tuple(box)])
    if found.size == 0:
        return None
    points = found.astype(float) + np.array([b.start for b in box], dtype=float)
    if in_plane:
        points[:, 0] = first_center[0]
    distance_mm = np.sqrt((((points - first_center) * spacing) ** 2).sum(axis=1))
    points = points[(distance_mm >= lo_mm) & (distance_mm <= hi_mm)]
    if points.shape[0] == 0:
        return None
    return points[int(rng.integers(points.shape[0]))].copy()


# ----------------------------------------------------------------------------------------------------------
# insertion

def _insert_one(hu: np.ndarray, labels: np.ndarray, liver: np.ndarray, center_vox: np.ndarray,
                diameter_mm: float, spacing_zyx: Sequence[float], config: LesionConfig,
                rng: np.random.Generator, sphere: bool, exophytic: bool = False) -> Optional[Dict[str, Any]]:
    """Blend one lesion into ``hu`` / ``labels`` in place (they are the caller's copies). ``exophytic``: the lesion
    also takes the background of soft tissue or fat (:data:`EXOPHYTIC_ROOM_HU`, label 0) that touches the liver in its
    box, intensity and label alike; otherwise it is confined to the liver."""
    spacing = np.asarray(spacing_zyx, dtype=float)
    center_mm = (center_vox + 0.5) * spacing
    shape = _draw_shape(center_mm, diameter_mm, config, rng, sphere)
    softness = float(rng.uniform(*config.margin_softness_mm))
    reach = shape.max_extent_mm + 4.0 * softness + 2.0 * spacing.max()
    lo = np.maximum(0, np.floor((center_mm - reach) / spacing)).astype(int)
    hi = np.minimum(hu.shape, np.ceil((center_mm + reach) / spacing) + 1).astype(int)
    if np.any(hi <= lo):
        return None
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    liver_box = liver[box]
    if not liver_box.any():
        return None
    clean_liver = liver & (labels == 1)
    local_hu, noise_std, rho = local_liver_stats(hu, clean_liver if clean_liver.any() else liver, center_vox,
                                                 spacing, max(config.local_radius_mm, 0.5 * diameter_mm + 10.0))
    if not np.isfinite(local_hu):
        return None

    hypodense = rng.random() < config.hypodense_probability
    if hypodense:
        drawn = -float(rng.uniform(*config.hypo_contrast_hu))
        contrast = max(drawn, min(0.0, config.min_lesion_hu - local_hu))
        if contrast != drawn and abs(contrast) < MIN_VISIBLE_CONTRAST_HU:  # the floor left a liver-looking 'tumor'
            return None
    else:
        contrast = float(rng.uniform(*config.hyper_contrast_hu))

    sd = _signed_distance_mm(shape, box, spacing)                    # mm, negative inside
    allowed = liver_box
    if exophytic:  # the background beside the liver the lesion grows into (connected to the liver in the box)
        from .synthetic_fluid import _touching

        room = _exophytic_room(hu[box], labels[box]) & ~liver_box
        allowed = liver_box | _touching(room, liver_box)
    weight = _sigmoid(-sd / np.float32(softness / 4.0)) * allowed     # 10-90 % over ~softness mm
    inside = (weight > 0.5)
    if not inside.any():
        return None

    profile = np.full(sd.shape, np.float32(local_hu + contrast), dtype=np.float32)
    radius_mean = float(np.exp(np.mean(np.log(shape.radii_mm))))
    necrotic = bool(hypodense and diameter_mm >= config.necrosis_min_diameter_mm
                    and rng.random() < config.necrosis_probability)
    if necrotic:
        frac = rng.uniform(*config.necrosis_fraction)
        depth = np.float32(-sd - (1.0 - frac) * radius_mean)          # > 0 inside the necrotic core
        profile -= np.float32(rng.uniform(*config.necrosis_extra_hu)) * _sigmoid(depth / np.float32(1.0 + softness))
    rim = bool(rng.random() < config.rim_probability)
    if rim:
        width = np.float32(rng.uniform(*config.rim_width_mm))
        profile += np.float32(rng.uniform(*config.rim_contrast_hu)) * np.exp(-((sd + width) / width) ** 2)
    grain_std = noise_std * float(rng.uniform(*config.texture_noise_factor))
    profile += np.float32(grain_std) * correlated_noise(sd.shape, rho, rng)
    hetero = float(rng.uniform(*config.heterogeneity_hu))
    if hetero > 0:
        from scipy.ndimage import gaussian_filter

        scale_mm = rng.uniform(*config.heterogeneity_scale_mm)
        sigma = tuple(float(scale_mm / s) for s in spacing)
        smooth = gaussian_filter(rng.standard_normal(sd.shape).astype(np.float32), sigma, mode="reflect")
        std = float(smooth.std())
        if std > 0:
            profile += np.float32(hetero / std) * smooth

    region = hu[box]
    hu[box] = region + weight * (profile - region)
    lab = labels[box]
    lab[inside] = 2
    voxel_ml = float(np.prod(spacing)) / 1000.0
    count = int(np.count_nonzero(inside))
    info = {
        "center_zyx": [float(c) for c in center_vox],
        "diameter_mm": float(diameter_mm),
        "radii_mm": [float(r) for r in shape.radii_mm],
        "contrast_hu": float(contrast),
        "local_liver_hu": float(local_hu),
        "noise_std_hu": float(noise_std),
        "kind": "hypodense" if hypodense else "hyperdense",
        "necrotic": necrotic,
        "rim": rim,
        "margin_softness_mm": softness,
        "voxel_count": count,
        "volume_ml": count * voxel_ml,
        "ellipsoid_volume_ml": float(4.0 / 3.0 * np.pi * np.prod(shape.radii_mm)) / 1000.0,
    }
    if exophytic:  # only then, so that the infos of other lesions are as before
        info["exophytic"] = True
        info["outside_fraction"] = float(np.count_nonzero(inside & ~liver_box)) / count
    return info


def _tube_distance_mm(points_mm: Sequence[np.ndarray], start_mm: np.ndarray, direction: np.ndarray,
                      length_mm: float, bend: np.ndarray) -> np.ndarray:
    """Distance (mm) from grid points (z, y, x broadcastable arrays, mm) to a gently curved segment:
    ``start + t d + 4 t (1 - t / L) / L * bend`` for ``t`` in [0, L] (a parabola of peak offset ``|bend|``)."""
    rel = [p - np.float32(s) for p, s in zip(points_mm, start_mm)]
    t = np.clip(sum(r * np.float32(d) for r, d in zip(rel, direction)), 0.0, length_mm)
    offset = np.float32(4.0) * t * (np.float32(1.0) - t / np.float32(length_mm)) / np.float32(length_mm)
    d2 = sum((r - t * np.float32(d) - offset * np.float32(b)) ** 2 for r, d, b in zip(rel, direction, bend))
    return np.sqrt(d2)


def insert_vessels(hu: np.ndarray, labels: np.ndarray, spacing_zyx: Sequence[float], rng: np.random.Generator,
                   config: LesionConfig) -> List[Dict[str, Any]]:
    """Blend synthetic tube-shaped vessels into the liver of ``hu`` ``(z, y, x)`` in place; labels unchanged.

    Each vessel passes through a random liver voxel along a random 3D direction (centred there), radius
    and length from the config, soft edge (~0.7 mm), intensity ``local liver + contrast`` with the local
    grain noise; only tumor-free liver voxels (``labels == 1``) change: a vessel drawn through a labelled tumor was
    a bright tube labelled tumor, the opposite of what vessels are for. Returns one info dict per vessel.
    """
    liver = labels == 1
    index = np.flatnonzero(liver)
    if index.size < config.min_liver_voxels:
        return []
    spacing = np.asarray(spacing_zyx, dtype=float)
    infos: List[Dict[str, Any]] = []
    count = int(rng.integers(config.vessel_count_range[0], config.vessel_count_range[1] + 1))
    for _ in range(count):
        centre = np.array(np.unravel_index(int(index[rng.integers(index.size)]), hu.shape), dtype=float)
        radius = float(rng.uniform(*config.vessel_radius_mm))
        length = float(rng.uniform(*config.vessel_length_mm))
        direction = rng.standard_normal(3)
        direction /= np.linalg.norm(direction) + 1e-12
        bend = rng.standard_normal(3)
        bend -= direction * float(bend @ direction)
        bend *= rng.uniform(0.0, 0.15) * length / (np.linalg.norm(bend) + 1e-12)
        centre_mm = (centre + 0.5) * spacing
        start_mm = centre_mm - 0.5 * length * direction
        reach = 0.5 * length + np.linalg.norm(bend) + radius + 2.0
        lo = np.maximum(0, np.floor((centre_mm - reach) / spacing)).astype(int)
        hi = np.minimum(hu.shape, np.ceil((centre_mm + reach) / spacing) + 1).astype(int)
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        liver_box = liver[box]
        points = np.meshgrid(*[((np.arange(s.start, s.stop) + 0.5) * sp).astype(np.float32)
                               for s, sp in zip(box, spacing)], indexing="ij", sparse=True)
        distance = _tube_distance_mm(points, start_mm, direction, length, bend)
        weight = _sigmoid((np.float32(radius) - distance) / np.float32(0.35)) * liver_box
        if not (weight > 0.5).any():
            continue
        local_hu, noise_std, rho = local_liver_stats(hu, liver, centre, spacing, 25.0)
        if not np.isfinite(local_hu):
            continue
        contrast = float(rng.uniform(*config.vessel_contrast_hu))
        if rng.random() < config.vessel_hypodense_probability:
            contrast = -contrast / 3.0
        profile = np.float32(local_hu + contrast) + np.float32(noise_std) * correlated_noise(distance.shape, rho, rng)
        region = hu[box]
        hu[box] = region + weight * (profile - region)
        infos.append({"center_zyx": [float(c) for c in centre], "radius_mm": radius, "length_mm": length,
                      "contrast_hu": contrast, "voxel_count": int(np.count_nonzero(weight > 0.5))})
    return infos


def insert_lesions(hu: np.ndarray, labels: np.ndarray, spacing_zyx: Sequence[float], rng: RngLike = None,
                   config: Optional[LesionConfig] = None, sphere: bool = False,
                   anchor_slice: Optional[int] = None,
                   ) -> Tuple[np.ndarray, np.ndarray, List[Dict[str, Any]]]:
    """Insert synthetic 3D lesions into a liver; returns ``(hu_new, labels_new, infos)``.

    ``hu``: ``(T, H, W)`` = ``(z, y, x)`` HU (any float/int dtype; returned float32). ``labels``: the same
    shape uint8 (0/1/2), or ``(H, W)`` = the label of the **middle** slice only (then that liver mask is
    used for all T slices and an ``(H, W)`` label is returned). ``spacing_zyx``: voxel size in mm, (z, y, x).
    ``rng``: ``np.random.Generator`` or seed. ``sphere=True`` forces round lesions with no outline noise
    and no anisotropy (used by tests and calibration). ``anchor_slice``: a z index whose liver the lesion
    centres are drawn on (then moved in z as for ``anchor="middle_slice"``), instead of ``config.anchor``'s
    slice; for placing lesions at a chosen height, such as under the dome (a slice without liver is refused).

    Each info dict: ``center_zyx`` (voxel index), ``diameter_mm``, ``radii_mm``, ``contrast_hu`` (signed,
    relative to ``local_liver_hu``), ``kind``, ``necrotic``, ``rim``, ``voxel_count``, ``volume_ml``
    (labelled voxels inside this array, mL) and ``ellipsoid_volume_ml`` (the whole ellipsoid).
    Inputs are never modified. No liver (fewer than ``config.min_liver_voxels``) -> unchanged copies.
    """
    if config is not None and not isinstance(config, LesionConfig):
        raise InputError("insert_lesions needs a LesionConfig, got %s; build one from a dict with "
                         "LesionConfig.from_dict(options)." % type(config).__name__)
    config = config or LesionConfig()
    rng = _as_rng(rng)
    hu_arr = np.asarray(hu)
    lab_arr = np.asarray(labels)
    if hu_arr.ndim != 3:
        raise InputError("insert_lesions needs an HU stack (z, y, x); got shape %s." % (hu_arr.shape,))
    single_label = lab_arr.ndim == 2
    if single_label:
        if lab_arr.shape != hu_arr.shape[1:]:
            raise InputError("Label (H, W) %s does not match the HU stack's slices %s." % (lab_arr.shape, hu_arr.shape[1:]))
        lab3 = np.repeat(lab_arr[None], hu_arr.shape[0], axis=0).astype(np.uint8)
    elif lab_arr.shape == hu_arr.shape:
        lab3 = lab_arr.astype(np.uint8, copy=True)
    else:
        raise InputError("Labels %s must have the HU stack's shape %s or be one (H, W) slice."
                         % (lab_arr.shape, hu_arr.shape))
    # NaN or infinity gave no lesion at all without a word (NaN boxes, RuntimeWarnings); text was read digit by digit
    if isinstance(spacing_zyx, (str, bytes)) or len(spacing_zyx) != 3 \
            or not all(isinstance(s, numbers.Real) and not isinstance(s, (bool, np.bool_)) for s in spacing_zyx) \
            or not all(np.isfinite(float(s)) and float(s) > 0 for s in spacing_zyx):
        raise InputError("spacing_zyx must be three finite positive mm values (z, y, x); got %r." % (spacing_zyx,))
    spacing = tuple(float(s) for s in spacing_zyx)
    hu_new = hu_arr.astype(np.float32, copy=True)

    def finish(infos: List[Dict[str, Any]]) -> Tuple[np.ndarray, np.ndarray, List[Dict[str, Any]]]:
        out_labels = lab3[hu_arr.shape[0] // 2].copy() if single_label else lab3
        return hu_new, out_labels, infos

    liver = organ(lab3)
    if anchor_slice is not None:  # checked before any draw: a wrong index fails every time, not by chance
        if isinstance(anchor_slice, (bool, np.bool_)) or not isinstance(anchor_slice, numbers.Integral) \
                or not 0 <= int(anchor_slice) < hu_arr.shape[0] or not liver[int(anchor_slice)].any():
            raise InputError("anchor_slice = %r must be the z index of a slice holding liver (0..%d)."
                             % (anchor_slice, hu_arr.shape[0] - 1))
        anchor_slice = int(anchor_slice)
    # drawn only when switched on, so recipes without it keep their random stream (and weights)
    if config.perihepatic_fluid_probability > 0 and np.count_nonzero(liver) >= config.min_liver_voxels \
            and rng.random() < config.perihepatic_fluid_probability:
        from .synthetic_fluid import insert_perihepatic_fluid

        insert_perihepatic_fluid(hu_new, lab3, spacing, rng, config)
    if config.vessel_probability > 0 and np.count_nonzero(liver) >= config.min_liver_voxels \
            and rng.random() < config.vessel_probability:
        insert_vessels(hu_new, lab3, spacing, rng, config)
    if np.count_nonzero(liver) < config.min_liver_voxels or rng.random() >= config.probability:
        return finish([])
    if anchor_slice is None and config.anchor == "middle_slice":
        anchor_slice = hu_arr.shape[0] // 2
        if not liver[anchor_slice].any():
            anchor_slice = None
    need_edges = (not config.allow_boundary_touching) or config.edge_probability > 0
    edge_mm = _edge_distance_mm(liver, spacing, anchor_slice) if need_edges else None
    places = _ExophyticPlaces(hu_new, lab3, liver, spacing, anchor_slice) if config.exophytic_probability > 0 else None

    n = int(rng.integers(config.count_range[0], config.count_range[1] + 1))
    cluster = n > 1 and rng.random() < config.cluster_probability
    lo_d, hi_d = config.diameter_range_mm
    infos: List[Dict[str, Any]] = []
    for _ in range(n):
        diameter = float(np.exp(rng.uniform(np.log(lo_d), np.log(hi_d))))
        picked = None
        if cluster and infos:
            near_first = _pick_next_to(infos[0], liver, 0.5 * diameter, spacing, anchor_slice is not None, rng)
            picked = None if near_first is None else (near_first[0], near_first[1], False)
        if picked is None:
            picked = _pick_center(liver, edge_mm, 0.5 * diameter, anchor_slice, config, rng, places)
        if picked is None:
            continue
        center, radius, exophytic = picked
        diameter = 2.0 * radius
        if anchor_slice is not None and config.z_offset_fraction > 0:
            center[0] += rng.uniform(-1.0, 1.0) * config.z_offset_fraction * radius / spacing[0]
        info = _insert_one(hu_new, lab3, liver, center, diameter, spacing, config, rng, sphere, exophytic)
        if info is not None:
            infos.append(info)
    return finish(infos)
