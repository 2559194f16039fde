"""Per-slice intensity operations on HU arrays: windowing, frequency-histogram scaling, z-score, body mask.

Array axes: a single slice is ``(H, W)`` (= ``(y, x)``); a batch of slices or a volume is ``(n, H, W)``
(= ``(z, y, x)``). "Per slice" always means over the last two axes. Everything returns float32 (masks:
bool) and never makes a float64 copy of a whole volume.

Sources of the operations
-------------------------
* ``window_hu``: seed 001 section 3.3 (fastai ``windowed(w, l)``) and seed 002 (width 250, centre 0):
  clip to ``[level - width/2, level + width/2]`` and scale linearly to ``[0, 1]``.
* ``freqhist_bins`` / ``hist_scaled``: seed 001 section 3.4, which uses fastai's
  ``Tensor.freqhist_bins`` / ``Tensor.hist_scaled``: break points at the 0.1 %, 99.9 % and ``n_bins``
  evenly spaced mid-quantiles of the sorted pixel values (duplicates removed), then piecewise-linear
  interpolation of each value onto ``linspace(0, 1, n_breaks)``. Output is roughly uniform on [0, 1].
* ``zscore``: seed 000 section 3.2 (zero mean, unit variance per image), optionally inside a body mask.
* ``body_mask``: HU > -500, largest connected component, holes filled in-plane (lungs/bowel gas inside
  the body count as body).
"""
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError

# name -> (level HU, width HU). Sources:
#   liver   : level 60 / width 200, the "custom" liver window of the fastai LiTS notebook that seed 001's
#             pipeline follows (seed 001's text names windowing but gives no numbers).
#   fastai_liver : level 30 / width 150 = fastai.medical.imaging ``dicom_windows.liver``.
#   abdomen : level 40 / width 400 (-160..240 HU), the standard abdominal soft-tissue window.
#   liver_contrast : level 75 / width 250, narrower window centred on enhanced liver parenchyma.
#   wide    : level 0 / width 2000 (-1000..1000 HU): everything from air to dense bone.
#   centre0_width250 : centre 0 / width 250, the window shown by Li, Pan and Lin, "Deep Learning-Based Liver
#             Cancer Segmentation Using U-net" (Fig. 2) on 3D-IRCADb.
WINDOW_PRESETS: Dict[str, Tuple[float, float]] = {
    "liver": (60.0, 200.0),
    "fastai_liver": (30.0, 150.0),
    "abdomen": (40.0, 400.0),
    "liver_contrast": (75.0, 250.0),
    "wide": (0.0, 2000.0),
    "centre0_width250": (0.0, 250.0),
}

# Former names, still accepted (model packages and configs written with them keep loading); never listed.
WINDOW_PRESET_ALIASES: Dict[str, str] = {"seed002": "centre0_width250"}


def window_preset_name(name: str) -> str:
    """The current name of a window preset (former names map to it; unknown names are returned as given)."""
    return WINDOW_PRESET_ALIASES.get(name, name)

BODY_THRESHOLD_HU = -500.0


def window_hu(hu: np.ndarray, level: float, width: float, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Map HU to [0, 1]: ``clip((hu - (level - width/2)) / width, 0, 1)``, float32, same shape.

    ``level`` and ``width`` in HU; ``width`` must be > 0. Any array shape (e.g. ``(z, y, x)``). ``out``: a float32
    array (or view) of ``hu``'s shape to write into instead of a new one (the same numbers: ``hu`` is read as
    float32 first either way); returned.
    """
    width = float(width)
    if not np.isfinite(width) or width <= 0 or 1.0 / width > float(np.finfo(np.float32).max):
        raise InputError(f"Window width must be a positive number of HU (at least 1e-38), got {width}.")
    low = float(level) - width / 2.0
    if out is None:
        out = np.array(hu, dtype=np.float32, copy=True)
        out -= np.float32(low)
    else:
        np.subtract(np.asarray(hu, dtype=np.float32), np.float32(low), out=out)
    out *= np.float32(1.0 / width)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def resolve_window(name: Optional[str] = None, level: Optional[float] = None,
                   width: Optional[float] = None) -> Tuple[float, float]:
    """``(level, width)`` in HU from a preset name or explicit values in HU (explicit values override the
    preset)."""
    if name is not None:
        name = window_preset_name(name)
        if name not in WINDOW_PRESETS:
            raise InputError(f"Unknown window preset '{name}'; choose one of {sorted(WINDOW_PRESETS)} "
                             f"or give 'level' and 'width' in HU.")
        plevel, pwidth = WINDOW_PRESETS[name]
        level = plevel if level is None else level
        width = pwidth if width is None else width
    if level is None or width is None:
        raise InputError("A window needs 'level' and 'width' (HU) or a 'preset' name.")
    return float(level), float(width)


def slice_rows(x: np.ndarray) -> np.ndarray:
    """Slices ``(n, H, W)`` (or one ``(H, W)``) as rows ``(n, H * W)`` (``(1, H * W)``), a view where numpy can.
    Zero slices give ``(0, H * W)``: ``reshape(0, -1)`` raised numpy's "cannot reshape array of size 0"."""
    if x.ndim == 2:
        return x.reshape(1, x.size)
    return x.reshape(x.shape[0], int(np.prod(x.shape[1:], dtype=np.int64)))


def _freqhist_positions(n_values: int, n_bins: int) -> np.ndarray:
    """Indices into sorted values used as break points (fastai): 0.1 %, mid-quantiles, 99.9 %."""
    t = np.concatenate([[0.001], np.arange(n_bins, dtype=np.float64) / n_bins + 0.5 / n_bins, [0.999]])
    return np.minimum((n_values * t).astype(np.int64), n_values - 1)


def freqhist_bins(x: np.ndarray, n_bins: int = 100) -> np.ndarray:
    """Break points holding ~equal pixel counts between them (seed 001 / fastai), 1-D float32, sorted unique.

    ``x``: any array (all values pooled, e.g. one slice ``(H, W)`` or a sample of a dataset).
    Returns at most ``n_bins + 2`` values: the 0.1 % and 99.9 % quantiles and ``n_bins`` mid-quantiles.
    """
    if n_bins < 1:
        raise InputError(f"n_bins must be >= 1, got {n_bins}.")
    flat = np.sort(np.asarray(x, dtype=np.float32).ravel())
    if flat.size == 0:
        raise InputError("Cannot compute histogram bins of an empty array.")
    return np.unique(flat[_freqhist_positions(flat.size, n_bins)])


def _batched_breaks(x_n: "object", n_bins: int):
    """Per-row break points (not de-duplicated) and their target values, torch tensors ``(n, m)``.

    Duplicated break points get the same target value, so interpolation equals fastai's (which drops
    duplicates and uses ``linspace(0, 1, n_unique)``).
    """
    import torch
    sorted_vals = torch.sort(x_n, dim=1).values
    pos = torch.from_numpy(_freqhist_positions(x_n.shape[1], n_bins))
    breaks = sorted_vals[:, pos]
    is_new = torch.ones_like(breaks, dtype=torch.bool)
    is_new[:, 1:] = breaks[:, 1:] > breaks[:, :-1]
    rank = torch.cumsum(is_new.to(torch.int64), dim=1) - 1
    n_unique = rank[:, -1:] + 1
    targets = rank.to(torch.float32) / torch.clamp(n_unique - 1, min=1).to(torch.float32)
    return breaks, targets


def _interp_rows(x_n, breaks, targets):
    """Row-wise ``np.interp``: ``x_n (n, P)``, ``breaks``/``targets`` ``(n, m)`` -> ``(n, P)`` in [0, 1]."""
    import torch
    m = breaks.shape[1]
    if m == 1:
        return torch.zeros_like(x_n)
    idx = torch.searchsorted(breaks.contiguous(), x_n.contiguous(), right=True).clamp_(1, m - 1)
    x0 = torch.gather(breaks, 1, idx - 1)
    x1 = torch.gather(breaks, 1, idx)
    y0 = torch.gather(targets, 1, idx - 1)
    y1 = torch.gather(targets, 1, idx)
    span = x1 - x0
    t = torch.where(span > 0, (x_n - x0) / torch.where(span > 0, span, torch.ones_like(span)),
                    torch.ones_like(span))
    out = y0 + t.clamp_(0.0, 1.0) * (y1 - y0)
    return out.clamp_(0.0, 1.0)


def hist_scaled(x: np.ndarray, bins: Optional[np.ndarray] = None, n_bins: int = 100) -> np.ndarray:
    """Piecewise-linear map through frequency-histogram break points onto [0, 1] (seed 001), float32.

    * ``bins=None``: break points are computed **per slice** (``x`` is ``(H, W)`` or ``(n, H, W)``;
      each ``[i]`` gets its own, vectorised over the batch).
    * ``bins`` 1-D (sorted, e.g. :func:`freqhist_bins` of a dataset sample): the same break points for every
      value of ``x`` (any shape). Seed 001's text does not say whether its bins were per slice or fixed.
    Values below the first break map to 0, above the last to 1; a constant slice maps to 0.
    """
    import torch
    x = np.asarray(x)
    if bins is not None:
        b = np.asarray(bins, dtype=np.float32).ravel()
        if b.size == 0 or np.any(np.diff(b) < 0):
            raise InputError("hist_scaled bins must be a non-empty, sorted 1-D list of values.")
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32).reshape(1, -1))
        bt = torch.from_numpy(b).reshape(1, -1)
        # duplicated break points share one target value, as if np.unique had dropped them
        is_new = torch.ones_like(bt, dtype=torch.bool)
        is_new[:, 1:] = bt[:, 1:] > bt[:, :-1]
        rank = torch.cumsum(is_new.to(torch.int64), dim=1) - 1
        nu = int(rank[0, -1]) + 1
        targets = rank.to(torch.float32) / max(nu - 1, 1)
        return _interp_rows(xt, bt, targets).numpy().reshape(x.shape)
    if x.ndim not in (2, 3):
        raise InputError(f"hist_scaled without bins needs a slice (H, W) or slices (n, H, W); got shape {x.shape}.")
    shape = x.shape
    rows = slice_rows(x)
    if rows.shape[1] == 0:
        return np.zeros(shape, dtype=np.float32)
    return apply_row_map(x, hist_scaling_of(x, n_bins))


def hist_scaling_of(x: np.ndarray, n_bins: int = 100) -> Tuple[np.ndarray, np.ndarray]:
    """The per-slice map of :func:`hist_scaled` (``bins=None``) of slices ``x`` ``(n, H, W)`` (or one ``(H, W)``):
    ``(break points, target values)``, float32 ``(n, m)``. :func:`apply_row_map` applies it to other pixels,
    e.g. a training patch scaled by its whole slice's histogram, as inference scales it."""
    x = np.asarray(x, dtype=np.float32)
    rows = slice_rows(x)
    breaks, targets = _batched_breaks(torch_from(rows), n_bins)
    return breaks.numpy(), targets.numpy()


def apply_row_map(x: np.ndarray, row_map: Tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Slices ``x`` ``(n, H, W)`` (or ``(H, W)``) through a per-slice piecewise-linear map ``(knots, values)``, one
    row per slice (:func:`hist_scaling_of`, ``equalization.equalization_of``), float32, same shape: a training
    patch mapped by its whole slice's statistics, as inference maps it."""
    x = np.asarray(x, dtype=np.float32)
    rows = slice_rows(x)
    knots, values = (torch_from(a) for a in row_map)
    return _interp_rows(torch_from(rows), knots, values).numpy().reshape(x.shape)




def torch_from(array: np.ndarray) -> "object":
    """A CPU torch tensor sharing a contiguous float32 copy of ``array``."""
    import torch
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def zscore(x: np.ndarray, mask: Optional[np.ndarray] = None,
           axes: Optional[Sequence[int]] = None, eps: float = 1e-6) -> np.ndarray:
    """Zero mean, unit variance (seed 000), float32, same shape.

    Mean and standard deviation are taken over ``axes`` (``None`` = the whole array; ``(-2, -1)`` = per
    slice of an ``(n, H, W)`` batch) and, if ``mask`` (bool, same shape) is given, only over voxels inside
    it; the transform is applied to every voxel. Where the mask is empty the whole slice is used.
    """
    xf = np.asarray(x, dtype=np.float32)
    mean, scale = zscore_parameters(xf, mask, axes, eps)
    centred = xf - mean
    centred *= scale
    return centred


def zscore_parameters(x: np.ndarray, mask: Optional[np.ndarray] = None, axes: Optional[Sequence[int]] = None,
                      eps: float = 1e-6) -> Tuple[np.ndarray, np.ndarray]:
    """``(mean, 1 / std)`` of :func:`zscore` (float32, ``x``'s shape with ``axes`` of size 1), so that the same
    transform ``(v - mean) * scale`` can be applied to other pixels: a training patch normalised by its whole
    slice's statistics, as inference normalises it."""
    xf = np.asarray(x, dtype=np.float32)
    ax = tuple(range(xf.ndim)) if axes is None else tuple(int(a) % xf.ndim for a in axes)
    if mask is None:
        w = None
    else:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != xf.shape:
            raise InputError(f"zscore mask shape {mask.shape} differs from the image's {xf.shape}.")
        w = mask
    if w is not None:
        count = np.sum(w, axis=ax, keepdims=True, dtype=np.float64)
        empty = count == 0
        if np.any(empty):
            w = w | np.broadcast_to(empty, w.shape)
            count = np.sum(w, axis=ax, keepdims=True, dtype=np.float64)
        mean = np.sum(xf, axis=ax, keepdims=True, dtype=np.float64, where=w) / count
        centred = xf - mean.astype(np.float32)
        var = np.sum(centred * centred, axis=ax, keepdims=True, dtype=np.float64, where=w) / count
    else:
        mean = np.mean(xf, axis=ax, keepdims=True, dtype=np.float64)
        centred = xf - mean.astype(np.float32)
        var = np.mean(centred * centred, axis=ax, keepdims=True, dtype=np.float64)
    return mean.astype(np.float32), (1.0 / np.sqrt(var + eps * eps)).astype(np.float32)


def _inplane_structure(ndim: int) -> np.ndarray:
    """Connectivity structure that links neighbours within a slice only (8-connected in-plane)."""
    if ndim == 2:
        return np.ones((3, 3), dtype=bool)
    s = np.zeros((3, 3, 3), dtype=bool)
    s[1] = True
    return s


def body_mask(hu: np.ndarray, threshold_hu: float = BODY_THRESHOLD_HU, per_slice: bool = True) -> np.ndarray:
    """Patient body mask, bool, same shape as ``hu`` (``(H, W)`` or ``(z, y, x)``).

    ``hu > threshold_hu``, then the largest connected component (per slice if ``per_slice``, else in 3D;
    drops the table and noise), then holes filled in-plane (lungs and bowel gas inside the body count).
    A slice without any voxel above the threshold gives an all-False slice.
    """
    from scipy import ndimage
    hu = np.asarray(hu)
    if hu.ndim not in (2, 3):
        raise InputError(f"body_mask needs a slice (H, W) or a volume (z, y, x); got shape {hu.shape}.")
    fg = hu > threshold_hu
    if not fg.any():
        return fg
    if per_slice or hu.ndim == 2:
        lab, n = ndimage.label(fg, structure=_inplane_structure(hu.ndim))
    else:
        lab, n = ndimage.label(fg)
    counts = np.bincount(lab.ravel(), minlength=n + 1)
    counts[0] = 0
    if per_slice and hu.ndim == 3:
        objects = ndimage.find_objects(lab)
        label_z = np.array([sl[0].start for sl in objects], dtype=np.int64)  # each label lives in one slice
        keep = np.zeros(n + 1, dtype=bool)
        order = np.lexsort((-counts[1:], label_z))  # by slice, then largest first
        first = np.ones(order.size, dtype=bool)
        first[1:] = label_z[order][1:] != label_z[order][:-1]
        keep[order[first] + 1] = True
        mask = keep[lab]
    else:
        mask = lab == int(np.argmax(counts))
    return ndimage.binary_fill_holes(mask, structure=_inplane_structure(hu.ndim))


def body_bbox_yx(hu_zyx: np.ndarray, threshold_hu: float = BODY_THRESHOLD_HU,
                 margin_px: Tuple[int, int] = (0, 0)) -> Optional[Tuple[int, int, int, int]]:
    """In-plane bounding box ``(y0, y1, x0, x1)`` (half-open) of the body over all slices, or None.

    Fast: thresholds, projects along z, keeps the largest 2D component of the projection (drops the
    table when it does not touch the body), grows by ``margin_px = (my, mx)`` and clips to the image.
    """
    from scipy import ndimage

    from ..inference.thresholds import threshold_for

    hu_zyx = np.asarray(hu_zyx)
    threshold = threshold_for(hu_zyx, threshold_hu)  # an int16 CT compared in int16, not float64 (0.03 -> 0.01 s)
    proj = np.zeros(hu_zyx.shape[-2:], dtype=bool)
    for z in range(0, hu_zyx.shape[0] if hu_zyx.ndim == 3 else 1, 32):  # chunks bound the bool temp
        chunk = hu_zyx[z:z + 32] if hu_zyx.ndim == 3 else hu_zyx[None]
        proj |= np.any(chunk > threshold, axis=0)
    if not proj.any():
        return None
    lab, n = ndimage.label(proj, structure=np.ones((3, 3), dtype=bool))
    counts = np.bincount(lab.ravel())
    counts[0] = 0
    keep = lab == int(np.argmax(counts))
    ys = np.flatnonzero(keep.any(axis=1))
    xs = np.flatnonzero(keep.any(axis=0))
    my, mx = (int(m) for m in margin_px)
    h, w = proj.shape
    return (max(0, int(ys[0]) - my), min(h, int(ys[-1]) + 1 + my),
            max(0, int(xs[0]) - mx), min(w, int(xs[-1]) + 1 + mx))
