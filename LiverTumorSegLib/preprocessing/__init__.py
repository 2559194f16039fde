"""Preprocessing of canonical CT volumes into network input, and back (docs/ARCHITECTURE.md).

Public API::

    PreprocessingConfig, PreprocessingConfigError, available_presets
    SlicePreprocessor, PreparedVolume, SpatialInfo
    window_hu, WINDOW_PRESETS, freqhist_bins, hist_scaled, zscore, body_mask, body_bbox_yx
    equalize_histogram, clahe, median_smooth, gaussian_smooth
    render_preview (imports matplotlib when called)

Importing this package pulls in numpy only; torch/scipy/matplotlib are imported by the functions that
use them.
"""
from .config import PreprocessingConfig, PreprocessingConfigError, available_presets, channel_name
from .equalization import clahe, equalize_histogram
from .filters import gaussian_smooth, median_smooth
from .intensity import (BODY_THRESHOLD_HU, WINDOW_PRESETS, body_bbox_yx, body_mask, freqhist_bins, hist_scaled,
                        window_hu, zscore)
from .preprocessor import PreparedVolume, SlicePreprocessor
from .spatial import SpatialInfo


def render_preview(*args, **kwargs):
    """See :func:`LiverTumorSegLib.preprocessing.preview.render_preview`."""
    from .preview import render_preview as _render
    return _render(*args, **kwargs)


__all__ = ["PreprocessingConfig", "PreprocessingConfigError", "available_presets", "channel_name",
           "SlicePreprocessor", "PreparedVolume", "SpatialInfo", "window_hu", "WINDOW_PRESETS",
           "freqhist_bins", "hist_scaled", "zscore", "body_mask", "body_bbox_yx", "BODY_THRESHOLD_HU",
           "equalize_histogram", "clahe", "median_smooth", "gaussian_smooth", "render_preview"]
