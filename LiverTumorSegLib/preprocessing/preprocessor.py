"""``SlicePreprocessor`` applies a :class:`PreprocessingConfig`; ``PreparedVolume`` serves network batches.

Order (docs/ARCHITECTURE.md "Preprocessing contract"): canonical HU ``(z, y, x)`` -> spatial forward
``(z, H, W)`` -> per-slice intensity channels ``(n, C0, H, W)`` -> 2.5D slice-major stacking
``(n, C0 * (2c + 1), H, W)`` with channel index ``offset_index * C0 + channel`` (offset_index 0 is
slice ``z - c``), edge slices replicated. Inverse: ``(n, K, H, W)`` -> ``(n, K, y, x)`` native canonical.
"""
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import InputError
from ..progress import CancellationToken, ProgressCallback, ProgressReporter
from ..volume import CTVolume
from . import spatial
from .config import PreprocessingConfig
from .equalization import apply_equalization, clahe, equalization_of, equalize_histogram
from .filters import gaussian_smooth, median_smooth
from .intensity import (apply_row_map, body_bbox_yx, body_mask, hist_scaled, hist_scaling_of, window_hu,
                        zscore_parameters)
from .spatial import SpatialInfo

ChannelSource = Union[np.ndarray, Callable[[np.ndarray], np.ndarray]]


def context_positions(centres: Any, context: int, num_slices: int, offset: float = 1.0) -> np.ndarray:
    """Slice positions ``centre + offset * (-context .. context)`` of each centre, shape ``centres.shape +
    (2 * context + 1,)``, float64, clipped to ``0 .. num_slices - 1`` (edge slices replicated). ``offset``:
    :meth:`PreprocessingConfig.context_offset` of the volume's slice spacing; a fraction gives positions between
    slices (:func:`slices_at` interpolates them)."""
    centres = np.asarray(centres, dtype=np.float64)
    steps = float(offset) * np.arange(-int(context), int(context) + 1, dtype=np.float64)
    return np.clip(centres[..., None] + steps, 0.0, float(num_slices - 1))


def _checked_indices(indices: Sequence[int], num_slices: int) -> np.ndarray:
    """``indices`` as a flat int64 array, refused (InputError) when one lies outside ``0 .. num_slices - 1``."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= num_slices):
        raise InputError(f"Slice indices must be in 0..{num_slices - 1}, got {idx.min()}..{idx.max()}.")
    return idx


def slices_at(volume_zhw: Any, positions: np.ndarray) -> np.ndarray:
    """Slices of ``volume_zhw`` ``(z, H, W)`` (an array or memory map) at float ``positions`` (any shape, within
    ``0 .. z - 1``), linearly interpolated in value between the two nearest slices: ``positions.shape + (H, W)``
    float32. Whole-number positions are the slices themselves, read without arithmetic."""
    positions = np.asarray(positions, dtype=np.float64)
    below = np.floor(positions).astype(np.int64)
    weight = (positions - below).astype(np.float32)
    if not weight.any():
        return np.asarray(volume_zhw[below.ravel()], dtype=np.float32).reshape(positions.shape + volume_zhw.shape[1:])
    above = np.minimum(below + 1, volume_zhw.shape[0] - 1)
    needed, inverse = np.unique(np.concatenate([below.ravel(), above.ravel()]), return_inverse=True)
    data = np.asarray(volume_zhw[needed], dtype=np.float32)  # each slice read once
    w = weight.reshape(-1, 1, 1)
    out = data[inverse[:below.size]]  # a copy: the lower slices, weighted in place
    out *= 1.0 - w
    out += data[inverse[below.size:]] * w
    return out.reshape(positions.shape + volume_zhw.shape[1:])


class SlicePreprocessor:
    """Stateless (apart from its config) implementation of the preprocessing contract."""

    def __init__(self, config: Optional[PreprocessingConfig] = None) -> None:
        self.config = config if config is not None else PreprocessingConfig()

    # ---- spatial -----------------------------------------------------------------------------
    def plan(self, hu_zyx: np.ndarray, spacing_zyx: Sequence[float]) -> SpatialInfo:
        """The :class:`SpatialInfo` :meth:`spatial_forward` would use (body crop found from ``hu_zyx``)."""
        cfg = self.config
        hu_zyx = np.asarray(hu_zyx)
        if hu_zyx.ndim != 3 or min(hu_zyx.shape) < 1:
            raise InputError(f"Expected a CT volume (z, y, x) with at least one voxel per axis, got shape {hu_zyx.shape}.")
        from ..volume import checked_spacing
        _, sy, sx = checked_spacing(spacing_zyx, 3)
        crop = None
        if cfg.crop_to_body:
            margin = (int(np.ceil(cfg.crop_margin_mm / sy)), int(np.ceil(cfg.crop_margin_mm / sx)))
            crop = body_bbox_yx(hu_zyx, cfg.body_threshold_hu, margin)
        return spatial.plan_spatial(hu_zyx.shape, (sy, sx), crop, cfg.target_spacing_mm, cfg.target_size,
                                    cfg.size_multiple)

    def spatial_forward(self, hu_zyx: np.ndarray, spacing_zyx: Sequence[float]) -> Tuple[np.ndarray, SpatialInfo]:
        """Canonical HU ``(z, y, x)`` with spacing ``(z, y, x)`` mm -> ``hu_net (z, H, W)`` float32, info."""
        info = self.plan(hu_zyx, spacing_zyx)
        return spatial.forward_image(hu_zyx, info, self.config.pad_hu), info

    def labels_forward(self, labels_zyx: np.ndarray, info: SpatialInfo) -> np.ndarray:
        """Label map ``(z, y, x)`` -> ``(z, H, W)`` uint8 on the grid of ``info`` (:func:`~.spatial.forward_labels`:
        the nearest label where slices are enlarged, the largest share where shrunk). Its slices must be the CT's: a
        label map of another slice count was mapped, and its slices no longer lined up with the CT's (the
        preprocessing audit)."""
        labels_zyx = np.asarray(labels_zyx)
        if labels_zyx.shape[-2:] != tuple(info.native_shape_yx):
            raise InputError(f"Label slices {labels_zyx.shape[-2:]} do not match the CT slices {info.native_shape_yx}.")
        if labels_zyx.ndim == 3 and labels_zyx.shape[0] != int(info.num_slices):
            raise InputError(f"The label map has {labels_zyx.shape[0]} slices, the CT {info.num_slices}; give the label "
                             f"map of this CT's grid (z, y, x).")
        return spatial.forward_labels(labels_zyx, info)

    def spatial_inverse(self, probs_nkhw: np.ndarray, info: SpatialInfo,
                        outside: Optional[Sequence[float]] = None) -> np.ndarray:
        """Maps ``(n, K, H, W)`` -> ``(n, K, y, x)`` float32 native canonical grid (see spatial.inverse_maps)."""
        return spatial.inverse_maps(probs_nkhw, info, outside)

    def labels_inverse(self, labels_nhw: np.ndarray, info: SpatialInfo) -> np.ndarray:
        """Label slices ``(n, H, W)`` -> ``(n, y, x)`` uint8 native canonical grid (nearest, 0 outside crop)."""
        return spatial.inverse_labels(labels_nhw, info)

    # ---- intensity ---------------------------------------------------------------------------
    def _net_spacing(self, info: Optional[SpatialInfo],
                     spacing_yx: Optional[Tuple[float, float]] = None) -> Tuple[float, float]:
        if info is not None:
            return info.net_spacing_yx
        if spacing_yx is not None:
            return (float(spacing_yx[0]), float(spacing_yx[1]))
        if self.config.target_spacing_mm is not None:
            return (self.config.target_spacing_mm, self.config.target_spacing_mm)
        return (1.0, 1.0)

    def _filtered(self, hu_slices: np.ndarray, info: Optional[SpatialInfo],
                  spacing_yx: Optional[Tuple[float, float]]) -> np.ndarray:
        """HU slices ``(n, H, W)`` float32 after the configured median and Gaussian filters."""
        cfg = self.config
        x = np.asarray(hu_slices, dtype=np.float32)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3:
            raise InputError(f"intensity_channels expects HU slices (n, H, W), got shape {x.shape}.")
        if cfg.median_size > 1:
            x = median_smooth(x, cfg.median_size)
        if cfg.gaussian_sigma_mm > 0:
            x = gaussian_smooth(x, cfg.gaussian_sigma_mm, self._net_spacing(info, spacing_yx))
        return x

    def slice_statistics(self, hu_slices: np.ndarray, spacing_yx: Optional[Tuple[float, float]] = None
                         ) -> Optional[Dict[int, Any]]:
        """What the pointwise whole-slice steps take from each of the slices ``(n, H, W)`` (network grid, HU):
        per channel index, the histogram scaling's break points, the z-score's mean and scale, or the
        equalization's map (see :meth:`intensity_channels`). None when the preprocessing has no such step.

        Training cuts patches from slices, and these steps computed on a patch differ from the same steps on the
        whole slice, which inference uses (up to 8.7 apart for zscore_body): a patch given its whole slices'
        statistics gets inference's values wherever augmentation left its pixels unchanged. CLAHE (local tiles)
        and the filters are computed on the patch still (see ``PreprocessingConfig.patch_computed_steps``)."""
        if not self._pointwise_channels():
            return None
        return self._statistics_of(self._filtered(hu_slices, None, spacing_yx))

    def _pointwise_channels(self) -> List[int]:
        """Indices of the channels made by a pointwise map whose parameters come from the whole slice: globally
        equalized windows, histogram scaling without fixed bins, z-scores."""
        cfg = self.config
        return [c for c, spec in enumerate(cfg.channels)
                if (spec["kind"] == "window" and cfg.equalize == "histogram")
                or (spec["kind"] == "hist_scaled" and spec.get("bins") is None) or spec["kind"] == "zscore"]

    def _statistics_of(self, x: np.ndarray, windows: bool = True) -> Dict[int, Any]:
        """:meth:`slice_statistics` of filtered slices ``x`` ``(n, H, W)``; ``windows=False`` leaves out the
        equalized windows (:meth:`intensity_channels` maps those from the window it makes anyway)."""
        cfg = self.config
        statistics: Dict[int, Any] = {}
        mask = None
        for c in self._pointwise_channels():
            spec = cfg.channels[c]
            if spec["kind"] == "window" and not windows:
                continue
            if spec["kind"] == "window":
                statistics[c] = equalization_of(window_hu(x, spec["level"], spec["width"]), value_range=(0.0, 1.0))
            elif spec["kind"] == "hist_scaled":
                statistics[c] = hist_scaling_of(x, spec["n_bins"])
            else:
                if spec["mask"] == "body" and mask is None:
                    mask = body_mask(x, cfg.body_threshold_hu, per_slice=True)
                statistics[c] = zscore_parameters(x, mask if spec["mask"] == "body" else None, axes=(-2, -1))
        return statistics

    def intensity_channels(self, hu_slices: np.ndarray, info: Optional[SpatialInfo] = None,
                           spacing_yx: Optional[Tuple[float, float]] = None,
                           statistics: Optional[Dict[int, Any]] = None) -> np.ndarray:
        """HU slices ``(n, H, W)`` (network grid) -> ``(n, C0, H, W)`` float32.

        ``info`` (inference) or ``spacing_yx`` (mm; training: the cached case's network-grid spacing) gives the
        pixel size for ``gaussian_sigma_mm``; without either ``target_spacing_mm`` (or 1 mm) is assumed, which
        is wrong for ``target_size`` or native-resolution configs. A single slice ``(H, W)`` gives
        ``(1, C0, H, W)``. ``statistics`` (:meth:`slice_statistics` of the whole slices these are cut from, one
        per slice): the pointwise whole-slice steps use them instead of these pixels' own histogram and mean.
        """
        cfg = self.config
        x = self._filtered(hu_slices, info, spacing_yx)
        statistics = statistics or self._statistics_of(x, windows=False)  # the slices' own, as at inference
        out = np.empty((x.shape[0], len(cfg.channels)) + x.shape[1:], dtype=np.float32)
        for c, spec in enumerate(cfg.channels):
            kind, given = spec["kind"], statistics.get(c)
            if kind == "window" and cfg.equalize not in ("histogram", "clahe"):
                window_hu(x, spec["level"], spec["width"], out=out[:, c])  # written in place: no copy to assign
                continue
            if kind == "window":
                ch = window_hu(x, spec["level"], spec["width"])
                if cfg.equalize == "histogram":  # the whole slices' map, else this window's own
                    ch = apply_equalization(ch, given) if given is not None else \
                        equalize_histogram(ch, value_range=(0.0, 1.0))
                elif cfg.equalize == "clahe":
                    ch = clahe(ch, cfg.clahe_clip_limit, cfg.clahe_tiles, value_range=(0.0, 1.0))
            elif kind == "hist_scaled":  # fixed bins: the same map for every slice
                ch = apply_row_map(x, given) if given is not None else hist_scaled(x, bins=spec["bins"])
            else:  # zscore
                ch = (x - given[0]) * given[1]
            out[:, c] = ch
        return out

    # ---- 2.5D context ------------------------------------------------------------------------
    def context_indices(self, indices: Sequence[int], num_slices: int, step: int = 1) -> np.ndarray:
        """``(n, 2c + 1)`` source slice of each stacked position: ``index + step * (-c .. c)`` (``step``: the
        config's :meth:`~PreprocessingConfig.context_offset` for the volume's slice spacing, when it is a whole
        number), edges replicated by clipping."""
        idx = _checked_indices(indices, num_slices)
        if float(step) != int(step) or int(step) < 1:
            raise InputError(f"context_indices takes a whole number of slices >= 1 as its step, got {step}.")
        return context_positions(idx, self.config.context_slices, num_slices, int(step)).astype(np.int64)

    def stack_context(self, chans_or_callable: ChannelSource, indices: Sequence[int],
                      num_slices: Optional[int] = None, step: int = 1) -> np.ndarray:
        """2.5D network input ``(n, C0 * (2c + 1), H, W)`` float32 for centre slices ``indices``, neighbours
        ``step`` slices apart (:meth:`context_indices`).

        ``chans_or_callable``: per-slice channels of the whole volume ``(z, C0, H, W)``, or a function
        taking an int array of slice indices (sorted, unique) and returning ``(m, C0, H, W)`` for them
        (then ``num_slices`` = z is required). Channel index = ``offset_index * C0 + channel``.
        """
        if callable(chans_or_callable):
            if num_slices is None:
                raise InputError("stack_context with a function needs num_slices (the volume's z size).")
            src = self.context_indices(indices, int(num_slices), step)
            needed = np.unique(src)
            data = np.asarray(chans_or_callable(needed), dtype=np.float32)
            pos = np.searchsorted(needed, src)
        else:
            data = np.asarray(chans_or_callable, dtype=np.float32)
            if data.ndim != 4:
                raise InputError(f"stack_context expects channels (z, C0, H, W), got shape {data.shape}.")
            src = self.context_indices(indices, data.shape[0] if num_slices is None else int(num_slices), step)
            pos = src
        stacked = data[pos]  # (n, S, C0, H, W)
        n, s, c0, h, w = stacked.shape
        return np.ascontiguousarray(stacked.reshape(n, s * c0, h, w))

    def stack_volume(self, hu_zhw: Any, indices: Sequence[int], offset: float = 1.0,
                     info: Optional[SpatialInfo] = None, spacing_yx: Optional[Tuple[float, float]] = None
                     ) -> np.ndarray:
        """2.5D network input ``(n, C, H, W)`` float32 for centre slices ``indices`` of a network-grid HU volume
        ``hu_zhw`` ``(z, H, W)`` (an array or memory map), the neighbours ``offset`` slices away
        (:meth:`PreprocessingConfig.context_offset`): a whole number takes real slices, each slice's channels
        computed once (:meth:`stack_context`); a fraction interpolates the neighbours' HU first (:func:`slices_at`,
        :meth:`stack_input`). ``info`` / ``spacing_yx`` as in :meth:`intensity_channels`. Inference
        (:meth:`PreparedVolume.batch`) and training's whole-slice inputs both take this path."""
        num_slices = int(hu_zhw.shape[0])
        idx = _checked_indices(indices, num_slices)
        if float(offset).is_integer():
            def channels(needed: np.ndarray) -> np.ndarray:
                return self.intensity_channels(np.asarray(hu_zhw[needed], dtype=np.float32), info, spacing_yx)

            return self.stack_context(channels, idx, num_slices, int(offset))
        positions = context_positions(idx, self.config.context_slices, num_slices, offset)
        return self.stack_input(slices_at(hu_zhw, positions), info, spacing_yx)

    def stack_input(self, hu_stack: np.ndarray, info: Optional[SpatialInfo] = None,
                    spacing_yx: Optional[Tuple[float, float]] = None,
                    statistics: Optional[Dict[int, Any]] = None) -> np.ndarray:
        """HU context stack(s) ``(2c + 1, H, W)`` or ``(n, 2c + 1, H, W)`` -> ``(C, H, W)`` / ``(n, C, H, W)``.

        For training: the stack (slices ``z - c .. z + c``, already augmented) becomes one network
        input with exactly the channel layout of :meth:`stack_context`; ``info`` / ``spacing_yx`` /
        ``statistics`` (one per slice of the stack(s), in order) as in :meth:`intensity_channels`.
        """
        x = np.asarray(hu_stack, dtype=np.float32)
        single = x.ndim == 3
        if single:
            x = x[None]
        s = self.config.num_context
        if x.ndim != 4 or x.shape[1] != s:
            raise InputError(f"Expected HU stacks (n, {s}, H, W) for context_slices={self.config.context_slices}, "
                             f"got shape {np.asarray(hu_stack).shape}.")
        n, _, h, w = x.shape
        chans = self.intensity_channels(x.reshape(n * s, h, w), info, spacing_yx, statistics)  # (n*S, C0, H, W)
        out = chans.reshape(n, s * chans.shape[1], h, w)
        return out[0] if single else out

    # ---- whole volume ------------------------------------------------------------------------
    def prepare(self, volume: CTVolume, progress: Optional[ProgressCallback] = None,
                cancel: Optional[CancellationToken] = None) -> "PreparedVolume":
        """Spatial forward of a **canonical** CT volume; batches are computed lazily by the result (2.5D
        neighbours :meth:`~PreprocessingConfig.context_offset` slices apart for the volume's slice spacing)."""
        report = ProgressReporter(progress)
        if cancel is not None:
            cancel.raise_if_cancelled()
        report(0.0, "preprocessing")
        hu_net, info = self.spatial_forward(volume.array, volume.spacing_zyx)
        report(1.0, "preprocessing")
        return PreparedVolume(self, hu_net, info, self.config.context_offset(volume.spacing_zyx[0]))


class PreparedVolume:
    """A volume on the network grid: ``hu_net (z, H, W)`` float32, its :class:`SpatialInfo`, and
    ``context_offset``: the slices between the 2.5D neighbours of a network input (a fraction: interpolated)."""

    def __init__(self, preprocessor: SlicePreprocessor, hu_net: np.ndarray, info: SpatialInfo,
                 context_offset: float = 1.0) -> None:
        self.preprocessor = preprocessor
        self.hu_net = hu_net
        self.info = info
        self.context_offset = float(context_offset)

    @property
    def num_slices(self) -> int:
        return int(self.hu_net.shape[0])

    @property
    def net_shape_yx(self) -> Tuple[int, int]:
        return tuple(self.hu_net.shape[1:])  # type: ignore[return-value]

    def channels(self, indices: Sequence[int]) -> np.ndarray:
        """Per-slice channels ``(n, C0, H, W)`` of the given slices (no context)."""
        return self.preprocessor.intensity_channels(self.hu_net[np.asarray(indices, dtype=np.int64)], self.info)

    def batch(self, indices: Sequence[int]) -> np.ndarray:
        """Network input ``(n, C, H, W)`` float32 for centre slices ``indices``."""
        return self.preprocessor.stack_volume(self.hu_net, indices, self.context_offset, info=self.info)

    def restore(self, probs_nkhw: np.ndarray, outside: Optional[Sequence[float]] = None) -> np.ndarray:
        """``(n, K, H, W)`` network-grid maps -> ``(n, K, y, x)`` on the native canonical grid."""
        return self.preprocessor.spatial_inverse(probs_nkhw, self.info, outside)

    def restore_argmax(self, probs_nkhw: np.ndarray, class_index: Optional[int] = None,
                       out: Optional[Tuple[np.ndarray, Optional[np.ndarray]]] = None
                       ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """``(n, K, H, W)`` network-grid probabilities -> native canonical ``(labels, probability)``, both
        ``(n, y, x)`` uint8: the argmax of :meth:`restore` and, with ``class_index``, ``round(255 * p)`` of that
        class (spatial.inverse_argmax); written into ``out``'s arrays when given."""
        return spatial.inverse_argmax(probs_nkhw, self.info, class_index, out=out)

    def restore_argmax_tensor(self, probs_nkhw: "object", class_index: Optional[int] = None
                              ) -> Tuple["object", "object"]:
        """:meth:`restore_argmax` for a float32 torch tensor where it lies (a GPU): uint8 tensors ``(n, y, x)`` on
        the same device (spatial.inverse_argmax_tensor)."""
        return spatial.inverse_argmax_tensor(probs_nkhw, self.info, class_index)

    def restore_labels(self, labels_nhw: np.ndarray) -> np.ndarray:
        """``(n, H, W)`` network-grid labels -> ``(n, y, x)`` uint8 native canonical grid."""
        return self.preprocessor.labels_inverse(labels_nhw, self.info)
