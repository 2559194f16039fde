"""Synthetic metal artefacts for training, simulated in the projection domain.

Metal in a CT slice (a pedicle screw, a surgical clip at the gallbladder bed, an embolisation coil, a stent)
attenuates far more than tissue. The scanner's reconstruction (filtered back-projection, FBP) assumes one
energy and enough photons, and both fail along the rays through the metal: **beam hardening** makes the measured
line integral lower than the true one, by roughly the square of the metal's path length, and **photon starvation**
makes it noisy there. FBP spreads these errors, which live only on the rays through the metal (the metal trace),
over the whole slice: dark streaks along the metal's long axis and between two pieces of metal, bright and dark
fine streaks radiating from it. A network that never saw them calls the dark bands through the liver tumor
(the ``metal_streaks`` row of ``benchmarks/robustness.py``).

This module simulates that error, not the benchmark's picture of it (the benchmark draws straight Gaussian bands
of set widths through a bar on the spine; nothing here draws a band):

1. a metal configuration, 1-3 ellipses of 0.5-10 mm semi-axes up to 50 mm apart (:func:`metal_objects_mask`);
2. its parallel-beam projection ``p(theta, s)``, the metal's path length in mm along each ray
   (:func:`metal_projection`);
3. the error sinogram ``-(p / max p)**2 + nu * (p / max p) * xi``: beam hardening plus starvation noise
   (``xi`` unit Gaussian noise, independent between views, blurred over 1.5 detector bins along each; ``nu`` the
   noise's weight, 0-0.6), zero off the metal trace;
4. its FBP (:func:`filtered_back_projection`, Ram-Lak filter), tapered to zero near the template's border and
   scaled to unit root-mean-square over the ring 15-40 mm from the metal's centre, further pieces of metal in the
   ring left out (:func:`artifact_template`). A round piece without noise streaks only where its pixel edges
   make the projections disagree (as the edge-gradient effect does on a scanner); scaled to the same strength,
   those streaks are as strong as any.

FBP is linear, so the artefact of a slice is the FBP of the error alone, whatever the anatomy: a template made once
per process (:data:`TEMPLATE_COUNT` of them, each from its own fixed seed) serves every sample, turned by one of the
square's eight symmetries (rotating or mirroring the metal turns its artefact alike) and scaled to a drawn
strength. :func:`add_metal_artifact` places one on a 2.5D training stack. Arrays are ``(y, x)`` images and
``(T, y, x)`` = ``(z, y, x)`` stacks in pixels of ``pixel_mm``; HU throughout.
"""
import collections
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..errors import InputError
from .augmentation import _log_uniform
from .labels import organ

METAL_HU = 3071.0
"""HU given to the metal's own pixels: the ceiling of a 12-bit CT (-1024..3071), where steel and titanium land."""

TEMPLATE_COUNT = 48
"""How many metal configurations (each a template) the augmentation draws from."""

TEMPLATE_SEED = 20261128
"""Template ``i`` is made from ``np.random.default_rng([TEMPLATE_SEED, i])``: the same on every machine and process."""

TEMPLATE_SIZE_PX = 448
"""Side of a template (pixels of the network grid): the metal at its centre, so it covers a 192 px patch from
metal up to 224 px away."""

PROJECTION_ANGLES = 360
"""Parallel-beam views over 180 degrees."""

RMS_RING_MM = (15.0, 40.0)
"""Ring around the metal's centre (mm) over which a template has unit root-mean-square value."""

OBJECT_COUNT_WEIGHTS = (0.5, 0.3, 0.2)
"""Probabilities of 1, 2 and 3 pieces of metal in a template."""

MAX_TEMPLATES_KEPT = 96
"""Templates kept per process (about 1.6 MB each: 150 MB), the least recently used dropped first: they are kept per
pixel size, and a preset without a fixed network spacing gives each case its own, so with about 50 spacings a
loader worker kept up to 48 x 50 templates (about 4 GB). A dropped template is made again, the same (it depends on
its index and pixel size only)."""

_TEMPLATES = collections.OrderedDict()  # type: collections.OrderedDict


def metal_objects_mask(shape_yx: Tuple[int, int], pixel_mm: float, ellipses: Any, supersample: int = 1) -> np.ndarray:
    """Fraction of each pixel covered by metal, ``(y, x)`` float32 in [0, 1], for ``ellipses``: rows of
    ``(centre_y_mm, centre_x_mm, semi_axis_a_mm, semi_axis_b_mm, angle_rad)``, centres relative to the image's
    centre pixel (``(n - 1) / 2``), axis ``a`` turned by ``angle`` from the +y axis towards +x. With
    ``supersample`` k, each pixel is sampled k x k times. Each ellipse is tested only on the samples of the square
    around it (its longer semi-axis and a pixel more each way): samples outside it are outside the ellipse."""
    ny, nx = int(shape_yx[0]), int(shape_yx[1])
    k = max(1, int(supersample))
    sub = (np.arange(k, dtype=np.float64) + 0.5) / k - 0.5
    ys = ((np.arange(ny, dtype=np.float64) - 0.5 * (ny - 1))[:, None] + sub[None, :]).ravel() * pixel_mm
    xs = ((np.arange(nx, dtype=np.float64) - 0.5 * (nx - 1))[:, None] + sub[None, :]).ravel() * pixel_mm
    inside = np.zeros((ys.size, xs.size), dtype=bool)
    for cy, cx, a, b, angle in np.asarray(ellipses, dtype=np.float64).reshape(-1, 5):
        reach = max(a, b) + pixel_mm
        y0, y1 = np.searchsorted(ys, [cy - reach, cy + reach])  # ys and xs ascend
        x0, x1 = np.searchsorted(xs, [cx - reach, cx + reach])
        dy, dx = ys[y0:y1, None] - cy, xs[None, x0:x1] - cx
        along = dy * np.cos(angle) + dx * np.sin(angle)
        across = -dy * np.sin(angle) + dx * np.cos(angle)
        inside[y0:y1, x0:x1] |= (along / a) ** 2 + (across / b) ** 2 <= 1.0
    return inside.reshape(ny, k, nx, k).mean(axis=(1, 3)).astype(np.float32)


def _detector_bins(size_px: int) -> int:
    """Detector bins (1 px apart, centred on the rotation axis) that see every pixel of a square image."""
    return int(np.ceil(size_px * np.sqrt(2.0))) + 3


def metal_projection(coverage_yx: np.ndarray, pixel_mm: float, angles: np.ndarray) -> np.ndarray:
    """Parallel-beam projection of a metal coverage map ``(y, x)`` (fraction of each pixel, as
    :func:`metal_objects_mask`): ``(angles, bins)`` float64, the path length through metal in mm along each ray
    (bins 1 px apart, centred on the image's centre; ray coordinate ``s = x cos(theta) + y sin(theta)`` in pixels).
    Each covered pixel is split linearly between its two nearest bins."""
    ny, nx = coverage_yx.shape
    nbins = _detector_bins(max(ny, nx))
    py, px = np.nonzero(coverage_yx > 0)
    weight = coverage_yx[py, px].astype(np.float64) * pixel_mm  # mm of path per bin of 1 px width
    y = py - 0.5 * (ny - 1)
    x = px - 0.5 * (nx - 1)
    sino = np.zeros((angles.size, nbins), dtype=np.float64)
    for i, theta in enumerate(angles):
        s = x * np.cos(theta) + y * np.sin(theta) + 0.5 * (nbins - 1)
        lo = np.floor(s).astype(np.int64)
        frac = s - lo
        np.add.at(sino[i], lo, weight * (1.0 - frac))
        np.add.at(sino[i], lo + 1, weight * frac)
    return sino


def ramp_filter(sinogram: np.ndarray) -> np.ndarray:
    """Each row of ``(angles, bins)`` filtered with the Ram-Lak (ramp) filter, bins 1 px apart: the spatial-domain
    kernel of Kak and Slaney (1/4 at 0, -1/(pi n)^2 at odd n), applied by FFT with zero padding (no wrap-around)."""
    nbins = sinogram.shape[1]
    size = int(2 ** np.ceil(np.log2(2 * nbins)))
    n = np.concatenate([np.arange(0, size // 2 + 1), np.arange(-(size // 2) + 1, 0)])
    kernel = np.zeros(size, dtype=np.float64)
    kernel[0] = 0.25
    odd = n % 2 == 1
    kernel[odd] = -1.0 / (np.pi * n[odd]) ** 2
    spectrum = np.fft.rfft(sinogram, n=size, axis=1) * np.fft.rfft(kernel)[None, :]
    return np.fft.irfft(spectrum, n=size, axis=1)[:, :nbins]


_FBP_CHUNK = 8
"""Views back-projected per step of :func:`filtered_back_projection` (a (views, y, x) temporary of each kind)."""


def _linear_pieces(filtered: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """A filtered ``(angles, bins)`` sinogram as the value and the slope (per bin) of each bin's linear piece,
    both flat float32: between bins ``i`` and ``i + 1`` of a view the profile is ``value[i] + slope[i] * frac``."""
    value = np.ascontiguousarray(filtered, dtype=np.float32)
    slope = np.zeros_like(value)
    slope[:, :-1] = value[:, 1:] - value[:, :-1]
    return value.reshape(-1), slope.reshape(-1)


def filtered_back_projection(sinogram: np.ndarray, angles: np.ndarray, size_px: int) -> np.ndarray:
    """FBP of a parallel-beam ``(angles, bins)`` sinogram (angles spread evenly over 180 degrees, bins as
    :func:`metal_projection`'s) onto a ``(size_px, size_px)`` ``(y, x)`` float32 image: the inverse of the
    projection up to the discretisation (a projected disk of value 1 comes back about 1 inside and 0 outside).
    Each pixel takes each filtered view linearly interpolated at its ray coordinate, as value plus slope times
    fraction with two flat gathers (numpy's take): torch's advanced indexing made a 448 px template's FBP (360
    views) take 1.8-2.3 s on one thread of a 2-core AVX2 CPU, this 0.6-0.8 s, the same to float32 rounding."""
    value, slope = _linear_pieces(ramp_filter(sinogram))
    nbins = sinogram.shape[1]
    axis = np.arange(size_px, dtype=np.float32) - np.float32(0.5 * (size_px - 1))
    cos = np.cos(angles).astype(np.float32)
    sin = np.sin(angles).astype(np.float32)
    centre = np.float32(0.5 * (nbins - 1))
    image = np.zeros((size_px, size_px), dtype=np.float32)
    for a in range(0, angles.size, _FBP_CHUNK):  # a few views at a time: (views, y, x) temporaries
        b = min(angles.size, a + _FBP_CHUNK)
        s = axis[None, None, :] * cos[a:b, None, None] + (axis[None, :, None] * sin[a:b, None, None] + centre)
        np.clip(s, 0.0, nbins - 1.001, out=s)
        lo = s.astype(np.intp)  # truncation: the floor, s >= 0
        s -= lo  # the fraction of the way to the next bin
        lo += (np.arange(a, b) * nbins)[:, None, None]  # into the flat sinogram
        piece = np.take(slope, lo)
        piece *= s
        piece += np.take(value, lo)
        image += piece.sum(axis=0)
    return image * np.float32(np.pi / angles.size)


def _draw_ellipses(rng: np.random.Generator) -> np.ndarray:
    """1-3 ellipses (rows as :func:`metal_objects_mask` takes), the first at the centre, the others 5-50 mm from it."""
    count = int(rng.choice(len(OBJECT_COUNT_WEIGHTS), p=OBJECT_COUNT_WEIGHTS)) + 1
    rows = []
    for j in range(count):
        a = rng.uniform(1.5, 10.0)
        b = rng.uniform(0.5, min(a, 3.0))
        if j == 0:
            cy = cx = 0.0
        else:
            distance, direction = rng.uniform(5.0, 50.0), rng.uniform(0.0, 2.0 * np.pi)
            cy, cx = distance * np.sin(direction), distance * np.cos(direction)
        rows.append((cy, cx, a, b, rng.uniform(0.0, np.pi)))
    return np.asarray(rows, dtype=np.float64)


def _border_taper(size_px: int) -> np.ndarray:
    """``(size, size)`` weight: 1 within 0.6 of the half-side from the centre (Chebyshev), falling to 0 at the
    border along a raised cosine, so a template leaves no edge where it ends."""
    r = np.abs(np.arange(size_px, dtype=np.float64) - 0.5 * (size_px - 1)) / (0.5 * size_px)
    ramp = np.clip((r - 0.6) / 0.4, 0.0, 1.0)
    one_axis = 0.5 * (1.0 + np.cos(np.pi * ramp))
    return np.outer(one_axis, one_axis)


def ring_rms(image_yx: np.ndarray, pixel_mm: float, ring_mm: Tuple[float, float] = RMS_RING_MM,
             exclude_yx: Optional[np.ndarray] = None) -> float:
    """Root-mean-square of ``image_yx`` over the ring ``ring_mm`` (mm) around its centre (``(n - 1) / 2``),
    leaving out the pixels where ``exclude_yx`` (same shape) is true."""
    ny, nx = image_yx.shape
    y = (np.arange(ny) - 0.5 * (ny - 1))[:, None] * pixel_mm
    x = (np.arange(nx) - 0.5 * (nx - 1))[None, :] * pixel_mm
    r = np.hypot(y, x)
    ring = (r >= ring_mm[0]) & (r <= ring_mm[1])
    if exclude_yx is not None:
        ring &= ~np.asarray(exclude_yx, dtype=bool)
    return float(np.sqrt(np.mean(np.asarray(image_yx, dtype=np.float64)[ring] ** 2)))


NOISE_BLUR_BINS = 1.5
"""Gaussian sigma (detector bins) of the starvation noise along each view: the detector's and the reconstruction
kernel's blur, which makes real streaks a few pixels wide rather than one."""


def _detector_noise(rng: np.random.Generator, shape: Tuple[int, int]) -> np.ndarray:
    """Unit-variance Gaussian noise ``(angles, bins)``, independent between views and blurred along each view by
    :data:`NOISE_BLUR_BINS` (then rescaled to unit standard deviation)."""
    from scipy.ndimage import gaussian_filter1d

    white = rng.standard_normal(shape)
    impulse = np.zeros(64)
    impulse[32] = 1.0
    gain = float(np.sqrt(np.sum(gaussian_filter1d(impulse, NOISE_BLUR_BINS) ** 2)))
    return gaussian_filter1d(white, NOISE_BLUR_BINS, axis=1) / gain


def artifact_from_ellipses(ellipses: Any, pixel_mm: float, noise_weight: float, rng: np.random.Generator,
                           size_px: int = TEMPLATE_SIZE_PX, angles: int = PROJECTION_ANGLES
                           ) -> Tuple[np.ndarray, np.ndarray]:
    """``(artefact, coverage)``, both ``(size_px, size_px)`` float32: the FBP of the error sinogram of the metal
    ``ellipses`` (beam hardening ``-(p / max p)**2`` plus ``noise_weight`` x ``(p / max p)`` x unit Gaussian noise,
    ``rng``'s, blurred along each view: :func:`_detector_noise`), tapered at the border and scaled to unit RMS
    over :data:`RMS_RING_MM` (the metal's own pixels and those beside them left out); and the metal's pixel
    coverage (:func:`metal_objects_mask`, 4 x 4 supersampled)."""
    theta = np.arange(int(angles), dtype=np.float64) * np.pi / int(angles)
    coverage = metal_objects_mask((size_px, size_px), pixel_mm, ellipses, supersample=4)
    p = metal_projection(coverage, pixel_mm, theta)
    if p.max() <= 0:
        raise InputError("The metal configuration covers no pixel of the %d px template at %.3g mm pixels."
                         % (size_px, pixel_mm))
    pn = p / p.max()
    error = -pn ** 2 + float(noise_weight) * pn * _detector_noise(rng, pn.shape)
    artefact = filtered_back_projection(error, theta, size_px) * _border_taper(size_px)
    # a further piece of metal in the ring is no artefact: its own pixels (and the one beside them, where the
    # back-projection still peaks) are left out of the scale
    from scipy.ndimage import binary_dilation

    rms = ring_rms(artefact, pixel_mm, exclude_yx=binary_dilation(coverage > 0, iterations=1))
    return (artefact / rms).astype(np.float32), coverage


def artifact_template(index: int, pixel_mm: float) -> Tuple[np.ndarray, np.ndarray]:
    """Template ``index`` (0 .. :data:`TEMPLATE_COUNT` - 1) for pixels of ``pixel_mm``: ``(artefact, coverage)``
    as :func:`artifact_from_ellipses` returns them, its configuration and noise weight (0-0.6) drawn from
    :data:`TEMPLATE_SEED` and ``index`` only. Made once per process and kept (about 1.6 MB each), at most
    :data:`MAX_TEMPLATES_KEPT` of them."""
    key = (int(index), round(float(pixel_mm), 3))
    if key in _TEMPLATES:
        _TEMPLATES.move_to_end(key)
        return _TEMPLATES[key]
    rng = np.random.default_rng([TEMPLATE_SEED, int(index)])
    ellipses = _draw_ellipses(rng)
    _TEMPLATES[key] = artifact_from_ellipses(ellipses, key[1], rng.uniform(0.0, 0.6), rng)
    while len(_TEMPLATES) > MAX_TEMPLATES_KEPT:
        _TEMPLATES.popitem(last=False)
    return _TEMPLATES[key]


def _symmetry(image: np.ndarray, k: int) -> np.ndarray:
    """One of the square's eight symmetries (``k`` 0-7): a quarter turn ``k % 4`` times, then transposed if k >= 4."""
    out = np.rot90(image, k % 4)
    return out.T if k >= 4 else out


def _pick_metal_centre(hu_yx: np.ndarray, labels_yx: np.ndarray, rng: np.random.Generator, pixel_mm: float,
                       focus: Tuple[int, int, int, int]) -> Tuple[int, int, str]:
    """Where the metal goes on the centre slice ``(y, x)``, within ``focus`` (y0, y1, x0, x1): bone (above 300 HU:
    a spine screw, a rib) with probability 0.4, the liver's surroundings (a liver pixel moved by 10 mm Gaussian:
    a clip, coil or stent) 0.35, any pixel of the body (above -200 HU) otherwise; any pixel of ``focus`` where the
    chosen kind has none."""
    y0, y1, x0, x1 = focus
    hu = hu_yx[y0:y1, x0:x1]
    u = rng.random()
    kind = "bone" if u < 0.4 else ("liver" if u < 0.75 else "body")
    candidates = {"bone": hu > 300.0, "liver": organ(labels_yx[y0:y1, x0:x1]), "body": hu > -200.0}[kind]
    ys, xs = np.nonzero(candidates)
    if ys.size == 0:
        ys, xs = np.nonzero(hu > -200.0)
        kind = "body"
    if ys.size == 0:
        return int(rng.integers(y0, y1)), int(rng.integers(x0, x1)), "anywhere"
    i = int(rng.integers(ys.size))
    cy, cx = float(ys[i] + y0), float(xs[i] + x0)
    if kind == "liver":
        cy, cx = (c + rng.normal(0.0, 10.0 / pixel_mm) for c in (cy, cx))
    return (int(np.clip(round(cy), y0, y1 - 1)), int(np.clip(round(cx), x0, x1 - 1)), kind)


def _paste(canvas: np.ndarray, template: np.ndarray, cy: int, cx: int) -> None:
    """Add ``template`` (centred on its centre pixel) to ``canvas`` with that pixel at ``(cy, cx)``, clipped."""
    th, tw = template.shape
    oy, ox = cy - (th - 1) // 2, cx - (tw - 1) // 2
    ya, yb = max(0, oy), min(canvas.shape[0], oy + th)
    xa, xb = max(0, ox), min(canvas.shape[1], ox + tw)
    if ya < yb and xa < xb:
        canvas[ya:yb, xa:xb] += template[ya - oy:yb - oy, xa - ox:xb - ox]


def add_metal_artifact(hu: np.ndarray, labels: np.ndarray, rng: np.random.Generator, pixel_mm: float,
                       rms_range_hu: Tuple[float, float], padding_below_hu: float = -1500.0
                       ) -> Tuple[np.ndarray, Dict[str, Any]]:
    """Metal with its artefact on a 2.5D stack ``hu`` ``(T, H, W)`` (labels ``(T, H, W)`` or ``(H, W)``, read only
    to place the metal; they stay as they are: tissue under a streak is still what it was).

    A template (:func:`artifact_template`, one drawn of :data:`TEMPLATE_COUNT`, in one of eight orientations)
    is centred on a metal position (:func:`_pick_metal_centre`) within the stack's central 60 % along each axis
    (where :class:`~.sampling.PatchDataset` cuts the patch from), scaled to a root-mean-square strength
    log-uniform in ``rms_range_hu`` over the ring 15-40 mm around the metal, and added to the centre slice, whose
    metal pixels become :data:`METAL_HU` (more than half covered). Each other slice gets the same metal and
    artefact at 0.5-1 of the strength with probability 0.5 (a screw or stent through several slices), else none
    (a clip in one slice). Pixels of padding (below ``padding_below_hu``) are left alone; values are clipped to
    -1024..:data:`METAL_HU`. Returns the new stack (float32) and what was drawn."""
    if hu.ndim != 3:
        raise InputError("add_metal_artifact needs an HU stack (T, H, W); got shape %s." % (hu.shape,))
    t, h, w = hu.shape
    c = t // 2
    centre_labels = labels if labels.ndim == 2 else labels[c]
    focus = (int(0.2 * h), max(int(0.2 * h) + 1, int(np.ceil(0.8 * h))),
             int(0.2 * w), max(int(0.2 * w) + 1, int(np.ceil(0.8 * w))))
    cy, cx, kind = _pick_metal_centre(hu[c], centre_labels, rng, pixel_mm, focus)
    index = int(rng.integers(TEMPLATE_COUNT))
    symmetry = int(rng.integers(8))
    rms_hu = _log_uniform(rng, float(rms_range_hu[0]), float(rms_range_hu[1]))
    artefact, coverage = artifact_template(index, pixel_mm)
    artefact, coverage = _symmetry(artefact, symmetry), _symmetry(coverage, symmetry)
    field = np.zeros((h, w), dtype=np.float32)
    metal = np.zeros((h, w), dtype=np.float32)
    _paste(field, artefact * np.float32(rms_hu), cy, cx)
    _paste(metal, coverage, cy, cx)
    out = np.asarray(hu, dtype=np.float32).copy()
    strengths = [1.0 if z == c else (float(rng.uniform(0.5, 1.0)) if rng.random() < 0.5 else 0.0) for z in range(t)]
    for z, strength in enumerate(strengths):
        if strength == 0.0:
            continue
        scanned = out[z] >= padding_below_hu
        changed = np.clip(out[z] + np.float32(strength) * field, -1024.0, METAL_HU)
        changed[metal > 0.5] = METAL_HU
        out[z] = np.where(scanned, changed, out[z])
    drawn = {"centre_yx": (cy, cx), "placed_at": kind, "template": index, "symmetry": symmetry,
             "rms_hu": rms_hu, "slice_strengths": strengths}
    return out, drawn
