"""Robust estimates of spread: the standard deviation of normal noise read from the median absolute deviation
(MAD), which a few outliers (a vessel in the liver, a lesion's edge) do not move.
"""
import numpy as np

MAD_TO_SD = 1.4826
"""The standard deviation of normal noise per unit of its median absolute deviation (1 / 0.6745)."""


def robust_std(values: np.ndarray) -> float:
    """Gaussian-equivalent standard deviation of ``values`` (any shape, read flat; same units):
    :data:`MAD_TO_SD` times the median absolute deviation from their median; 0.0 for fewer than 2 values."""
    values = np.asarray(values).ravel()  # in its own dtype: training's synthetic lesions read the same numbers
    if values.size < 2:
        return 0.0
    return float(MAD_TO_SD * np.median(np.abs(values - np.median(values))))
