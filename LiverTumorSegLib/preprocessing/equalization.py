"""Histogram equalization of slices: global (seed 002, seed 004) and contrast-limited adaptive (CLAHE).

Both are per slice, vectorised over a batch ``(n, H, W)`` (a single ``(H, W)`` slice also works), return
float32 in [0, 1] and are monotone (order-preserving) within a slice (CLAHE only within a tile
neighbourhood). CLAHE is implemented here with numpy (tile histograms, clipping, bilinear interpolation
of the tile mappings, as Zuiderveld 1994 / skimage ``equalize_adapthist``) because scikit-image is not a
dependency; SimpleITK's adaptive filter is far slower on 512x512 slices.
"""
from typing import Optional, Tuple

import numpy as np

from ..errors import InputError
from .intensity import slice_rows


def _as_rows(x: np.ndarray) -> Tuple[np.ndarray, Tuple[int, ...]]:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim not in (2, 3):
        raise InputError(f"Equalization needs a slice (H, W) or slices (n, H, W); got shape {x.shape}.")
    return slice_rows(x), x.shape


def _row_range(rows: np.ndarray, value_range: Optional[Tuple[float, float]]) -> Tuple[np.ndarray, np.ndarray]:
    if value_range is not None:
        lo, hi = float(value_range[0]), float(value_range[1])
        if not hi > lo:
            raise InputError(f"value_range must be (low, high) with high > low, got {value_range}.")
        n = rows.shape[0]
        return np.full((n, 1), lo, np.float32), np.full((n, 1), hi, np.float32)
    return rows.min(axis=1, keepdims=True), rows.max(axis=1, keepdims=True)


def _bin_index(rows: np.ndarray, lo: np.ndarray, hi: np.ndarray, n_bins: int) -> np.ndarray:
    span = np.where(hi > lo, hi - lo, np.float32(1.0))
    idx = ((rows - lo) * (n_bins / span)).astype(np.int32)
    np.clip(idx, 0, n_bins - 1, out=idx)
    return idx


def equalize_histogram(x: np.ndarray, n_bins: int = 256,
                       value_range: Optional[Tuple[float, float]] = None) -> np.ndarray:
    """Global histogram equalization per slice of ``x`` (``(H, W)`` or ``(n, H, W)``) -> [0, 1] float32, same
    shape as ``x``.

    The mapping is the slice's cumulative histogram (``n_bins`` bins over ``value_range``, default the
    slice's own min..max), interpolated linearly between bin centres and rescaled so the darkest
    occupied bin maps to 0 and the brightest to 1 (OpenCV's normalisation). A constant slice maps to 0.
    """
    rows, shape = _as_rows(x)
    if rows.shape[1] == 0:
        if n_bins < 2:
            raise InputError(f"n_bins must be >= 2, got {n_bins}.")
        return np.zeros(shape, np.float32)
    return apply_equalization(x, equalization_of(x, n_bins, value_range))


def equalization_of(x: np.ndarray, n_bins: int = 256, value_range: Optional[Tuple[float, float]] = None
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """The per-slice map of :func:`equalize_histogram` of slices ``x`` ``(n, H, W)`` (or one ``(H, W)``):
    ``(bin centres, mapped values)``, float32 ``(n, n_bins)``. :func:`apply_equalization` applies it to other
    pixels, e.g. a training patch equalized by its whole slice's histogram, as inference equalizes it."""
    if n_bins < 2:
        raise InputError(f"n_bins must be >= 2, got {n_bins}.")
    rows, _ = _as_rows(x)
    n, p = rows.shape
    lo, hi = _row_range(rows, value_range)
    idx = _bin_index(rows, lo, hi, n_bins)
    idx += (np.arange(n, dtype=np.int32) * n_bins)[:, None]
    counts = np.bincount(idx.ravel(), minlength=n * n_bins).reshape(n, n_bins).astype(np.float64)
    cdf = np.cumsum(counts, axis=1) / max(p, 1)
    first = np.argmax(counts > 0, axis=1)
    cdf_min = cdf[np.arange(n), first][:, None]
    denom = 1.0 - cdf_min
    mapped = np.where(denom > 0, (cdf - cdf_min) / np.where(denom > 0, denom, 1.0), 0.0).astype(np.float32)
    span = np.where(hi > lo, hi - lo, np.float32(1.0))
    centres = lo + (np.arange(n_bins, dtype=np.float32) + 0.5)[None, :] * (span / n_bins)
    return centres.astype(np.float32), mapped


def apply_equalization(x: np.ndarray, equalization: Tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Slices ``x`` ``(n, H, W)`` (or ``(H, W)``) through the per-slice map of :func:`equalization_of` (one row
    per slice), float32 in [0, 1], same shape (``intensity.apply_row_map``)."""
    from .intensity import apply_row_map
    _as_rows(x)  # the shape check: a slice or slices
    return apply_row_map(x, equalization)


CLAHE_MIN_TILE_PX = 8
"""Fewer pixels per tile side than this and the tile count is lowered: a tile of a pixel or two has a histogram of
one or two counts, which maps every pixel to 1.0 (a constant, white channel)."""


def clahe(x: np.ndarray, clip_limit: float = 0.01, tiles: int = 8, n_bins: int = 256,
          value_range: Optional[Tuple[float, float]] = (0.0, 1.0)) -> np.ndarray:
    """Contrast-limited adaptive histogram equalization per slice of ``x`` (``(H, W)`` or ``(n, H, W)``) ->
    [0, 1] float32, same shape.

    ``tiles``: the slice is split into ``tiles x tiles`` regions (fewer when a tile side would be under
    :data:`CLAHE_MIN_TILE_PX` pixels); each gets its own equalization mapping
    whose histogram is clipped at ``clip_limit`` (fraction of the tile's pixels per bin, like skimage;
    larger = more contrast) with the excess spread evenly over all bins. Each pixel's output is the
    bilinear blend of the mappings of the four nearest tile centres (no tile seams).
    ``value_range``: values are clipped to it before binning; ``None`` = each slice's min..max.
    """
    if tiles < 1 or n_bins < 2 or not clip_limit > 0:
        raise InputError(f"CLAHE needs tiles >= 1, n_bins >= 2 and clip_limit > 0; got {tiles}, {n_bins}, {clip_limit}.")
    xf = np.asarray(x, dtype=np.float32)
    rows, shape = _as_rows(xf)
    n = rows.shape[0]
    h, w = shape[-2:]
    if h == 0 or w == 0:
        return np.zeros(shape, np.float32)
    lo, hi = _row_range(rows, value_range)
    idx = _bin_index(rows, lo, hi, n_bins).reshape(n, h, w)
    tiles = max(1, min(tiles, min(h, w) // CLAHE_MIN_TILE_PX))  # 1-pixel tiles equalize every pixel to 1.0
    th, tw = -(-h // tiles), -(-w // tiles)
    ty, tx = -(-h // th), -(-w // tw)
    padded = np.pad(idx, ((0, 0), (0, ty * th - h), (0, tx * tw - w)), mode="edge")
    tile_of_row = (np.arange(ty * th) // th).astype(np.int64)
    tile_of_col = (np.arange(tx * tw) // tw).astype(np.int64)
    key = ((np.arange(n, dtype=np.int64)[:, None, None] * ty + tile_of_row[None, :, None]) * tx
           + tile_of_col[None, None, :]) * n_bins + padded
    hist = np.bincount(key.ravel(), minlength=n * ty * tx * n_bins).reshape(n, ty, tx, n_bins).astype(np.float32)
    del key, padded
    limit = max(1.0, clip_limit * th * tw)
    excess = np.maximum(hist - limit, 0.0).sum(axis=-1, keepdims=True)
    hist = np.minimum(hist, limit) + excess / n_bins
    mapping = np.cumsum(hist, axis=-1)
    mapping /= mapping[..., -1:]
    mapping = mapping.reshape(-1)

    def axis_weights(size: int, tile: int, count: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(size, dtype=np.float32) + 0.5) / tile - 0.5, 0, count - 1)
        i0 = np.minimum(np.floor(pos).astype(np.int64), max(count - 2, 0))
        i1 = np.minimum(i0 + 1, count - 1)
        return i0, i1, (pos - i0).astype(np.float32)

    y0, y1, wy = axis_weights(h, th, ty)
    x0, x1, wx = axis_weights(w, tw, tx)
    base = np.arange(n, dtype=np.int64)[:, None, None] * ty
    out = np.zeros((n, h, w), np.float32)
    for yi, fy in ((y0, 1.0 - wy), (y1, wy)):
        for xi, fx in ((x0, 1.0 - wx), (x1, wx)):
            flat = ((base + yi[None, :, None]) * tx + xi[None, None, :]) * n_bins + idx
            out += mapping[flat] * (fy[None, :, None] * fx[None, None, :])
    np.clip(out, 0.0, 1.0, out=out)
    return out.reshape(shape)
