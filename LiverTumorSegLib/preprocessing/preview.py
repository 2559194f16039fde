"""Preview PNG of what the network sees: a grid of axial slices x (original HU + each channel).

Rows: ``n_slices`` axial slices (through the liver when a label map is given, else evenly spaced
through the slices that contain the body). Columns: the native slice in the abdomen window
(W400 L40), then each per-slice channel of the config on the network grid (after crop/resample/pad).
matplotlib is imported here; a bare ``Figure`` renders with Agg (no display, pyplot's backend untouched,
so it is safe inside Slicer).
"""
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np

from ..errors import InputError
from ..fileutil import atomic_output, picture_text_as_given
from ..volume import CTVolume
from .config import PreprocessingConfig
from .intensity import WINDOW_PRESETS, window_hu
from .preprocessor import SlicePreprocessor


def choose_preview_slices(hu_zyx: np.ndarray, n_slices: int, labels_zyx: Optional[np.ndarray] = None,
                          body_threshold_hu: float = -500.0) -> List[int]:
    """``n_slices`` axial indices, evenly spaced inside the liver's z range (labels >= 1) if given,
    else inside the range of slices where > 5 % of pixels are body (HU > threshold), else the volume; every
    slice of that range when it holds no more than ``n_slices``."""
    nz = hu_zyx.shape[0]
    lo, hi = 0, nz - 1
    zs = np.array([], dtype=np.int64)
    if labels_zyx is not None:
        zs = np.flatnonzero(np.asarray(labels_zyx >= 1).any(axis=(1, 2)))
    if zs.size == 0:
        frac = np.array([np.mean(hu_zyx[z] > body_threshold_hu) for z in range(nz)])
        zs = np.flatnonzero(frac > 0.05)
    if zs.size:
        lo, hi = int(zs[0]), int(zs[-1])
    n = max(1, int(n_slices))
    if n >= hi - lo + 1:  # as many as the range holds, or more: all of them
        return list(range(lo, hi + 1))
    picks = np.rint(lo + (hi - lo) * (np.arange(n) + 1) / (n + 1)).astype(int)  # away from the range's ends
    if len(set(picks.tolist())) < n:  # too close together to stay apart: spread over the whole range instead
        picks = np.rint(np.linspace(lo, hi, n)).astype(int)
    return sorted(set(int(p) for p in picks))


@picture_text_as_given()
def render_preview(volume: CTVolume, config: Union[PreprocessingConfig, str, None], out_png: Union[str, Path],
                   n_slices: int = 3, labels: Optional[np.ndarray] = None, overwrite: bool = False,
                   slices: Optional[Sequence[int]] = None, first_column: str = "original HU") -> Path:
    """Write the preview PNG for a **canonical** CT ``volume`` and return its path.

    ``config``: a :class:`PreprocessingConfig`, a preset name, or None (= "default"). ``labels``:
    optional ``(z, y, x)`` label map used to pick slices through the liver. ``slices``: explicit axial
    indices (overrides the choice). ``first_column``: the first column's title, before its window and pixel size
    (``preprocess`` names an oblique CT's resampling there). Written atomically; an existing file needs
    ``overwrite=True``.
    """
    from matplotlib.figure import Figure  # a bare Figure renders with Agg; never touches pyplot's backend

    if isinstance(config, str) or config is None:
        config = PreprocessingConfig.preset(config or "default")
    out_png = Path(out_png)
    if out_png.suffix.lower() != ".png":
        raise InputError(f"Preview output '{out_png}' must end in .png.")
    hu = np.asarray(volume.array)
    if hu.ndim != 3:
        raise InputError(f"Preview needs a 3D CT (z, y, x); got shape {hu.shape}.")
    pre = SlicePreprocessor(config)
    prepared = pre.prepare(volume)
    if slices is None:
        picks = choose_preview_slices(hu, n_slices, labels, config.body_threshold_hu)
    else:
        picks = [int(s) for s in slices]
        if any(s < 0 or s >= hu.shape[0] for s in picks):
            raise InputError(f"Preview slices must be in 0..{hu.shape[0] - 1}, got {picks}.")
    chans = prepared.channels(picks)  # (n, C0, H, W)
    names = config.channel_descriptions
    level, width = WINDOW_PRESETS["abdomen"]
    sy, sx = volume.spacing_zyx[1:]
    ny_, nx_ = prepared.info.net_spacing_yx

    rows, cols = len(picks), 1 + len(names)
    fig = Figure(figsize=(2.6 * cols, 2.7 * rows + 0.6), dpi=100)
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, z in enumerate(picks):
        ax = axes[r, 0]
        ax.imshow(window_hu(hu[z], level, width), cmap="gray", vmin=0, vmax=1, aspect=sy / sx,
                  interpolation="nearest")
        # the slice's S position: ``volume`` is often a reoriented copy, whose index is no slice of the user's file
        s_mm = volume.geometry.slice_centre_s_mm(z, volume.shape_zyx)
        ax.set_ylabel(f"axial at S {s_mm:.1f} mm", fontsize=8)
        for c, spec in enumerate(config.channels):
            img = chans[r, c]
            vmin, vmax = (-3.0, 3.0) if spec["kind"] == "zscore" else (0.0, 1.0)
            axes[r, c + 1].imshow(img, cmap="gray", vmin=vmin, vmax=vmax, aspect=ny_ / nx_, interpolation="nearest")
    def pixel(x_mm: float, y_mm: float) -> str:  # "1.50 mm", or "1.50 x 2.00 mm" for non-square pixels (x by y)
        return f"{x_mm:.2f} mm" if abs(x_mm - y_mm) < 5e-3 else f"{x_mm:.2f} x {y_mm:.2f} mm"

    axes[0, 0].set_title(f"{first_column} (W{width:g} L{level:g})\n{hu.shape[2]}x{hu.shape[1]} px, {pixel(sx, sy)}",
                         fontsize=8)
    h, w = prepared.net_shape_yx
    for c, name in enumerate(names):
        axes[0, c + 1].set_title(f"{name.replace(', ', chr(10))}\n{w}x{h} px, {pixel(nx_, ny_)}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{Path(volume.source).name or 'volume'}: {config.channels_per_slice} channel(s)/slice x "
                 f"{config.num_context} slice(s) = {config.in_channels} network channels", fontsize=9)
    fig.tight_layout()
    with atomic_output(out_png, overwrite) as tmp:
        fig.savefig(str(tmp), format="png")
    return out_png
