"""In-plane smoothing of slices (noise reduction before the intensity channels).

Seeds: median filtering (seed 004, "median filter smoothing"; seed 003 "Gaussian smoothing or median
filtering"). Both act within each axial slice only, never across z, so training on single slices and
inference on volumes see the same operation.

Array axes: ``(H, W)`` or ``(n, H, W)``; output float32, same shape.
"""
from typing import Sequence

import numpy as np

from ..errors import InputError


def median_smooth(x: np.ndarray, size: int = 3) -> np.ndarray:
    """In-plane ``size x size`` median filter (scipy ``median_filter``, edges reflected), float32, same shape:
    over the last two axes ``(y, x)`` of a slice ``(H, W)`` or slices ``(n, H, W)``.

    ``size`` (pixels) must be an odd integer >= 1; 1 returns a float32 copy.
    """
    from scipy import ndimage
    size = int(size)
    if size < 1 or size % 2 == 0:
        raise InputError(f"Median filter size must be an odd number of pixels >= 1, got {size}.")
    x = np.asarray(x, dtype=np.float32)
    if size == 1:
        return x.copy()
    footprint = (size, size) if x.ndim == 2 else (1,) * (x.ndim - 2) + (size, size)
    return ndimage.median_filter(x, size=footprint, mode="reflect")


def gaussian_smooth(x: np.ndarray, sigma_mm: float, spacing_yx: Sequence[float]) -> np.ndarray:
    """In-plane Gaussian filter with standard deviation ``sigma_mm`` (mm), float32.

    ``spacing_yx``: pixel size ``(y, x)`` in mm, so the kernel is ``sigma_mm / spacing`` pixels per axis.
    Normalised kernel (the mean intensity is preserved away from edges). ``sigma_mm = 0`` returns a copy.
    """
    from scipy import ndimage
    sigma_mm = float(sigma_mm)
    if not np.isfinite(sigma_mm) or sigma_mm < 0:
        raise InputError(f"Gaussian sigma must be >= 0 mm, got {sigma_mm}.")
    from ..volume import checked_spacing
    sy, sx = checked_spacing(spacing_yx, 2, "Pixel spacing (y, x)")  # NaN skipped the smoothing silently
    x = np.asarray(x, dtype=np.float32)
    if sigma_mm == 0:
        return x.copy()
    sigma = (sigma_mm / sy, sigma_mm / sx)
    sigma_all = sigma if x.ndim == 2 else (0.0,) * (x.ndim - 2) + sigma
    return ndimage.gaussian_filter(x, sigma=sigma_all, mode="reflect", output=np.float32)
