"""Liver/tumor-biased random patch sampling from the slice cache, and full-slice inputs for validation.

A training sample (see ARCHITECTURE.md, "Training contract"):
centre slice (liver/tumor favoured; else any slice where a patch can be a fair share trainable, not ``IGNORE_LABEL``:
:func:`fair_slices`) -> HU stack ``(T, H, W)``
with ``T = 2c + 1`` (neighbours as inference takes them: ``PreprocessingConfig.context_offset``) and labels
``(T, H, W)`` -> the ``P x P`` box centred on a random liver pixel (or any pixel not ``IGNORE_LABEL`` whose box is a
fair share trainable: :data:`FAIR_TRAINABLE_SHARE`), moved by a
jitter of up to ``(R - P) // 4`` and inward only as far as it takes to stay inside the image (no jitter along an axis
the box spans whole) ->
region crop ``(T, R, R)``, ``R >= 1.75 P``, around that box -> synthetic lesions (HU) -> augmentation -> the
region's centre ``(P, P)`` (the box) ->
``intensity_channels`` -> slice-major stacking -> ``x (C, P, P)`` float32, ``y (P, P)`` int64 (centre label).

Every sample is a pure function of ``(seed, rank, global index)``: the same run gives the same batches
with any number of DataLoader workers, and a resumed run continues with exactly the batches it missed.
"""
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..preprocessing.preprocessor import context_positions, slices_at
from .labels import IGNORE_LABEL, organ
from .slice_cache import CachedCase

# augmenter(hu (T, H, W), labels (T, H, W), rng) -> (hu, labels); lesion_inserter likewise + spacing
Augmenter = Callable[[np.ndarray, np.ndarray, np.random.Generator], Tuple[np.ndarray, np.ndarray]]


def choose_slice(case: CachedCase, rng: np.random.Generator, liver_fraction: float, tumor_fraction: float,
                 every_other_slice: bool = False, neighbour_step: int = 1,
                 trainable: Optional[Sequence[int]] = None) -> int:
    """Centre slice index: from liver slices with probability ``liver_fraction`` (of those, tumor slices with
    probability ``tumor_fraction`` when the case has any), else uniform over all slices, or over ``trainable``
    (the slices holding any pixel that is not :data:`~.labels.IGNORE_LABEL`, :func:`trainable_slices`) where given
    and not empty: an oblique CT's aligned grid may hold slices wholly outside its footprint, whose patch no loss
    counts.
    ``every_other_slice`` keeps every other run of ``neighbour_step`` slices (the case's 2.5D neighbour distance in
    slices; 1: the even indices), so fewer centres share neighbours and every slice is still read as a centre or a
    neighbour. Keeping the even indices alone never read the odd slices of a case whose neighbours are 2 slices
    away (thin slices under ``context_min_mm``)."""
    step = max(1, int(neighbour_step))

    def keep(indices: Sequence[int]) -> List[int]:
        if not every_other_slice:
            return list(indices)
        kept = [i for i in indices if (i // step) % 2 == 0]
        return kept or list(indices)

    liver, tumor = keep(case.liver_slices), keep(case.tumor_slices)
    if liver and rng.random() < liver_fraction:
        if tumor and rng.random() < tumor_fraction:
            return int(tumor[rng.integers(len(tumor))])
        return int(liver[rng.integers(len(liver))])
    candidates = keep(trainable if trainable else range(case.num_slices))
    return int(candidates[rng.integers(len(candidates))])


def trainable_slices(labels_zhw: np.ndarray, chunk: int = 16) -> List[int]:
    """Indices of the slices of a ``(z, H, W)`` label stack holding any pixel that is not
    :data:`~.labels.IGNORE_LABEL` (read ``chunk`` slices at a time: the stack may be a large memory map)."""
    out: List[int] = []
    for start in range(0, labels_zhw.shape[0], chunk):
        block = np.asarray(labels_zhw[start:start + chunk])
        out.extend(start + int(i) for i in np.flatnonzero((block != IGNORE_LABEL).reshape(block.shape[0], -1)
                                                          .any(axis=1)))
    return out


FAIR_TRAINABLE_SHARE = 0.5
"""The share of a patch's pixels that should be trainable (not :data:`~.labels.IGNORE_LABEL`) for its random
centre to be drawn (:func:`crop_box`): half the patch, or half the best share a patch of the case can have where no
patch reaches that (a slab thinner than the patch)."""


def _box_starts(n: int, patch: int) -> np.ndarray:
    """:func:`crop_box`'s first pixel along an axis of ``n`` pixels for a centre at each pixel ``0 .. n-1``."""
    if n < patch:
        return np.full(n, -((patch - n) // 2), dtype=np.int64)
    return np.clip(np.arange(n, dtype=np.int64) - patch // 2, 0, n - patch)


def trainable_share(trainable_hw: np.ndarray, patch: int) -> np.ndarray:
    """``(H, W)``: the share of trainable pixels (``trainable_hw`` bool ``(H, W)``) in the ``patch x patch`` box
    :func:`crop_box` places for a centre at each pixel; the box's part beyond the image counts as not trainable (it
    is padded with ignored labels)."""
    return _trainable_counts(trainable_hw, patch) / float(patch * patch)


def _trainable_counts(trainable_hw: np.ndarray, patch: int) -> np.ndarray:
    """:func:`trainable_share` times ``patch * patch`` (integers): a box filter by an integral image."""
    h, w = trainable_hw.shape
    integral = np.zeros((h + 1, w + 1), dtype=np.int32 if (h + 1) * (w + 1) < 2 ** 31 else np.int64)
    integral[1:, 1:] = trainable_hw
    np.cumsum(integral, axis=1, out=integral)
    np.cumsum(integral, axis=0, out=integral)
    y0, x0 = _box_starts(h, patch), _box_starts(w, patch)
    rows = np.take(integral, np.clip(y0 + patch, 0, h), axis=0) - np.take(integral, np.clip(y0, 0, h), axis=0)
    return np.take(rows, np.clip(x0 + patch, 0, w), axis=1) - np.take(rows, np.clip(x0, 0, w), axis=1)


def best_trainable_share(labels_hw: np.ndarray, patch: int) -> float:
    """The largest :func:`trainable_share` of a patch centred on a trainable pixel of a slice (0: none)."""
    trainable = np.asarray(labels_hw) != IGNORE_LABEL
    return float(trainable_share(trainable, patch)[trainable].max()) if trainable.any() else 0.0


def fair_slices(labels_zhw: np.ndarray, patch: int, chunk: int = 16) -> Tuple[List[int], float]:
    """``(slices, min_share)`` of a ``(z, H, W)`` label stack: ``min_share`` is :data:`FAIR_TRAINABLE_SHARE`, or half
    the best :func:`best_trainable_share` of its slices where that is below it, and ``slices`` those whose best
    patch reaches ``min_share``. A slice holding a thin band of trainable pixels (the edge of an oblique slab's
    footprint) gave patches ignored but for that band (12 % of the random-centre 32 px patches of a 4-slice
    40 x 40 phantom turned 40 degrees were at least 90 % ignored). ``([], 0.0)`` when no pixel is trainable."""
    best: List[float] = []
    for start in range(0, labels_zhw.shape[0], chunk):
        best.extend(best_trainable_share(labels, patch) for labels in np.asarray(labels_zhw[start:start + chunk]))
    top = max(best, default=0.0)
    if top <= 0.0:
        return [], 0.0
    min_share = min(FAIR_TRAINABLE_SHARE, 0.5 * top)
    return [i for i, share in enumerate(best) if share >= min_share], min_share


def crop_box(labels_hw: np.ndarray, patch: int, rng: np.random.Generator, liver_bias: float,
             min_share: Optional[float] = None) -> Tuple[int, int]:
    """Top-left corner ``(y0, x0)`` of a ``patch x patch`` crop (may be negative / past the edge when the
    image is smaller; :func:`crop_with_padding` pads). With probability ``liver_bias`` and liver present,
    the crop is centred on a random liver pixel; else on a random pixel, one that is not
    :data:`~.labels.IGNORE_LABEL` where the slice holds any (on an oblique CT's aligned grid up to 89 % of a thin
    slab's slice lies outside its footprint: a patch centred there was mostly or wholly ignored, trained on
    nothing), and of those one whose patch is at least ``min_share`` trainable (:func:`trainable_share`; default:
    :data:`FAIR_TRAINABLE_SHARE`, or half the slice's best share where that is below it; any trainable pixel where
    none reaches it): a centre at the footprint's edge gave a patch mostly ignored. A slice without ignored pixels
    draws exactly as before."""
    h, w = labels_hw.shape
    ys, xs = np.nonzero(organ(labels_hw))
    if ys.size and rng.random() < liver_bias:
        k = rng.integers(ys.size)
        cy, cx = int(ys[k]), int(xs[k])
    else:
        trainable = labels_hw != IGNORE_LABEL
        if not trainable.all() and trainable.any():
            counts = _trainable_counts(trainable, patch)  # the share times patch * patch
            least = (min(FAIR_TRAINABLE_SHARE * patch * patch, 0.5 * float(counts[trainable].max()))
                     if min_share is None else float(min_share) * patch * patch)
            fair = trainable & (counts >= least)
            ty, tx = np.nonzero(fair if fair.any() else trainable)
            k = rng.integers(ty.size)
            cy, cx = int(ty[k]), int(tx[k])
        else:
            cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0 = min(max(cy - patch // 2, min(0, h - patch)), max(0, h - patch))
    x0 = min(max(cx - patch // 2, min(0, w - patch)), max(0, w - patch))
    if h < patch:
        y0 = -((patch - h) // 2)
    if w < patch:
        x0 = -((patch - w) // 2)
    return y0, x0


def jittered_start(start: int, size: int, patch: int, jitter: int, rng: np.random.Generator) -> int:
    """``start`` (a patch's first pixel along an axis of ``size`` pixels) moved by a random ``-jitter..jitter``
    pixels and kept inside the image when the patch fits in it; unchanged when the patch spans the whole axis
    (shifted, it cut off part of the slice for fill)."""
    if patch >= size or jitter <= 0:
        return start
    return min(max(start + int(rng.integers(-jitter, jitter + 1)), 0), size - patch)


def crop_with_padding(arr: np.ndarray, y0: int, x0: int, patch: int, fill: float) -> np.ndarray:
    """``arr[..., y0:y0+patch, x0:x0+patch]`` with out-of-range pixels set to ``fill``."""
    h, w = arr.shape[-2:]
    out = np.full(arr.shape[:-2] + (patch, patch), fill, dtype=arr.dtype)
    sy0, sy1 = max(y0, 0), min(y0 + patch, h)
    sx0, sx1 = max(x0, 0), min(x0 + patch, w)
    if sy1 > sy0 and sx1 > sx0:
        out[..., sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = arr[..., sy0:sy1, sx0:sx1]
    return out


STATISTICS_MEMO_ENTRIES = 2048  # slice stacks whose whole-slice statistics a PatchDataset keeps


class PatchDataset:
    """Map-style dataset over *global sample indices* (see :class:`EpochSampler`); item ->
    ``(x (C, P, P) float32, y (P, P) int64)``. Pickles cheaply (memory maps reopen in workers).

    ``lesion_inserter(hu (T,H,W), labels (T,H,W), spacing_zyx, rng) -> (hu, labels)`` and
    ``augmenter(hu, labels, rng) -> (hu, labels)`` are optional callables.
    """

    def __init__(self, cases: Sequence[CachedCase], preprocessor, patch_size: int, seed: int, rank: int = 0,
                 liver_slice_fraction: float = 0.85, tumor_slice_fraction: float = 0.5,
                 every_other_slice: bool = False, lesion_inserter=None, augmenter=None,
                 pad_hu: float = -1024.0) -> None:
        if not cases:
            raise ValueError("PatchDataset needs at least one cached case")
        self.cases = list(cases)
        self.preprocessor = preprocessor
        self.context = int(preprocessor.config.context_slices)
        self.patch_size = int(patch_size)
        self.seed, self.rank = int(seed), int(rank)
        self.liver_slice_fraction = float(liver_slice_fraction)
        self.tumor_slice_fraction = float(tumor_slice_fraction)
        self.every_other_slice = bool(every_other_slice)
        self.lesion_inserter = lesion_inserter
        self.augmenter = augmenter
        self.pad_hu = float(pad_hu)
        self._statistics_memo: Dict[Tuple[str, Tuple[int, ...]], Any] = {}
        self._trainable_memo: Dict[int, Tuple[Optional[List[int]], Optional[float]]] = {}

    def __len__(self) -> int:
        return 2 ** 62  # indices come from EpochSampler; the dataset itself is unbounded

    def rng_for(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.rank, int(index)])

    def sample_arrays(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """HU patch stack ``(T, P, P)`` float32 and centre label ``(P, P)`` uint8 for global ``index``."""
        hu, label, _, _ = self._sample(index)
        return hu, label

    def _trainable_slices(self, position: int, case: CachedCase) -> Tuple[Optional[List[int]], Optional[float]]:
        """``(slices, min_share)``: :func:`fair_slices` of a case cached on a patient-aligned grid (``network_grid``;
        read once per process; :func:`trainable_slices` where it finds none), ``(None, None)`` for any other (its
        labels hold no :data:`~.labels.IGNORE_LABEL`: every slice, as before)."""
        if position not in self._trainable_memo:
            found = (None, None)  # type: Tuple[Optional[List[int]], Optional[float]]
            if getattr(case, "network_grid", None):
                slices, min_share = fair_slices(case.labels, self.patch_size)
                found = (slices, min_share) if slices else (trainable_slices(case.labels), None)
            self._trainable_memo[position] = found
        return self._trainable_memo[position]

    def _slice_statistics(self, case: CachedCase, idx: Any, hu: np.ndarray) -> Any:
        """``preprocessor.slice_statistics`` of the un-augmented slices at positions ``idx`` of ``case``: a function of the
        case and the slices alone, so it is computed once per stack (a review timed it at 6-17 ms per sample for the
        z-score and histogram-scaled presets on 2 cores, more than the patch's own preprocessing); at most
        ``STATISTICS_MEMO_ENTRIES`` stacks are kept (a few kB to about 20 kB each)."""
        key = (case.case_id, tuple(float(i) for i in np.asarray(idx).ravel()))
        memo = self._statistics_memo
        if key not in memo:
            if len(memo) >= STATISTICS_MEMO_ENTRIES:
                memo.clear()
            memo[key] = self.preprocessor.slice_statistics(hu, case.spacing_zyx[1:])
        return memo[key]

    def _sample(self, index: int) -> Tuple[np.ndarray, np.ndarray, CachedCase, Any]:
        """:meth:`sample_arrays`, the case the patch came from and the whole slices' statistics for the
        preprocessing's pointwise whole-slice steps (``SlicePreprocessor.slice_statistics``; None without)."""
        rng = self.rng_for(index)
        position = int(rng.integers(len(self.cases)))
        case = self.cases[position]
        # the 2.5D neighbours as inference takes them for this case's slice spacing: every k-th slice, or HU
        # interpolated between adjacent slices (PreprocessingConfig.context_offset); a neighbour's label is the
        # nearest slice's (only the centre's is learned; the others place the synthetic lesions)
        offset = self.preprocessor.config.context_offset(case.spacing_zyx[0])
        trainable, min_share = self._trainable_slices(position, case)
        center = choose_slice(case, rng, self.liver_slice_fraction, self.tumor_slice_fraction,
                              self.every_other_slice, int(round(offset)) if offset >= 1 else 1, trainable)
        positions = context_positions(center, self.context, case.num_slices, offset)
        # nearest slice, a tie rounded away from the centre (np.rint's half-to-even made the two sides of one
        # stack unequal at offset 0.5)
        idx = np.where(positions >= center, np.floor(positions + 0.5), np.ceil(positions - 0.5)).astype(np.int64)
        hu = slices_at(case.hu, positions)
        labels = np.asarray(case.labels[idx], dtype=np.uint8)
        # histogram scaling, z-score and equalization from the whole slices, as inference computes them: on the
        # patch alone the network saw inputs up to 8.7 apart from inference's (zscore_body)
        statistics = self._slice_statistics(case, positions, hu)
        # work region around the patch (the patch is cut from its centre): lesions and augmentation only touch
        # it. At least 1.75 x the patch, and large enough that the drawn rotation/zoom/shift read only real pixels for the final patch
        # (a zoom of 0.6 with rotation reads up to ~1.8 x as far out: with a fixed 1.75 x region about 22 % of the
        # v2 recipe's draws read past it, into the region's -1024 HU fill)
        base = int(np.ceil(1.75 * self.patch_size))
        jitter = (base - self.patch_size) // 4
        region, spatial = base, None
        # mm-valued augmentation (elastic warp, liver field) in this case's pixels: without a fixed network
        # spacing every case has its own, and the first case's was used for all
        pixel_mm = float(np.mean(case.spacing_zyx[1:]))
        if self.augmenter is not None and hasattr(self.augmenter, "draw_spatial"):
            spatial = self.augmenter.draw_spatial(rng, (base, base))
            reach = self.augmenter.source_reach_px(spatial, 0.5 * self.patch_size, pixel_spacing_mm=pixel_mm)
            region = max(base, 2 * int(np.ceil(reach)) + 3)
        # the patch's own box (centred on the drawn pixel, kept inside the image when it fits), then the region
        # around it: the region's box was drawn before, and keeping the 1.75 P region inside the image held every
        # patch centre 0.875 P from the edges (on a 224 x 256 px slice every 160 px patch sat at the image centre,
        # wherever the liver was); the region may now reach past the image, into pad_hu
        y0, x0 = crop_box(labels[self.context], self.patch_size, rng, self.liver_slice_fraction, min_share)
        # a small jitter, within the image where the patch fits; none along an axis the patch spans whole: there
        # the patch is the slice along it, as inference sees it (the filters' edges included; CLAHE only where the
        # patch is the slice along both axes: a narrower axis is padded, and CLAHE's tiles then cover the padding)
        y0, x0 = (jittered_start(start, n, self.patch_size, jitter, rng) for start, n in zip((y0, x0), hu.shape[1:]))
        y0, x0 = y0 - (region - self.patch_size) // 2, x0 - (region - self.patch_size) // 2
        hu = crop_with_padding(hu, y0, x0, region, self.pad_hu)
        # beyond an aligned-grid case's slices: outside its CT's footprint too (ignored, as inside them)
        labels = crop_with_padding(labels, y0, x0, region, IGNORE_LABEL if getattr(case, "network_grid", None) else 0)
        if self.lesion_inserter is not None:  # its 3D lesions span the stack's own slice distance
            stack_spacing = (float(case.spacing_zyx[0]) * offset,) + tuple(case.spacing_zyx[1:])
            hu, labels = self.lesion_inserter(hu, labels, stack_spacing, rng)
        if self.augmenter is not None:
            hu, labels = self.augmenter(hu, labels, rng, spatial=spatial, pixel_spacing_mm=pixel_mm) \
                if spatial is not None else self.augmenter(hu, labels, rng)
        # at a scan's first or last slice the clipped neighbours are exact copies of the slice they repeat, as at
        # inference: the lesion inserter (which takes the stack as evenly spaced) and the noise had made them differ
        # by tens of HU, an input inference never gives (the preprocessing audit)
        hu, labels = copies_at_clipped_positions(hu, labels, positions, self.context)
        oy = ox = (region - self.patch_size) // 2
        hu = np.ascontiguousarray(hu[:, oy:oy + self.patch_size, ox:ox + self.patch_size], dtype=np.float32)
        label = np.ascontiguousarray(labels[self.context, oy:oy + self.patch_size, ox:ox + self.patch_size],
                                     dtype=np.uint8)
        return hu, label, case, statistics

    def __getitem__(self, index: int):
        import torch

        hu, label, case, statistics = self._sample(index)
        x = self.preprocessor.stack_input(hu, spacing_yx=case.spacing_zyx[1:],  # (C, P, P), slice-major channels
                                          statistics=statistics)
        return torch.from_numpy(x), torch.from_numpy(label.astype(np.int64))


def copies_at_clipped_positions(hu: np.ndarray, labels: np.ndarray, positions: np.ndarray, center: int
                                ) -> Tuple[np.ndarray, np.ndarray]:
    """``hu`` and ``labels`` ``(T, H, W)`` of a 2.5D stack whose members at the same slice ``positions`` (clipped at
    the scan's ends by :func:`~..preprocessing.preprocessor.context_positions`) are made copies of the one of them
    nearest the centre (index ``center``). Unchanged (the same arrays) where no position repeats."""
    positions = np.asarray(positions, dtype=np.float64).reshape(-1)
    sources = np.arange(positions.size)
    for j in range(positions.size):
        if j < center:  # the member of this position nearest the centre: the highest index up to the centre
            sources[j] = max(k for k in range(j, center + 1) if positions[k] == positions[j])
        elif j > center:
            sources[j] = min(k for k in range(center, j + 1) if positions[k] == positions[j])
    if np.array_equal(sources, np.arange(positions.size)):
        return hu, labels
    return hu[sources], (labels[sources] if labels.ndim == 3 and labels.shape[0] == positions.size else labels)


class EpochSampler:
    """Yields global indices ``epoch * samples_per_epoch + i`` for ``i`` in ``start .. samples_per_epoch-1``.

    Set ``epoch``/``start`` with :meth:`set_epoch` before iterating (works with persistent workers, since the
    sampler runs in the main process). ``start`` lets a resumed run skip the samples already trained on.
    """

    def __init__(self, samples_per_epoch: int) -> None:
        self.samples_per_epoch = int(samples_per_epoch)
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = int(epoch), int(start)

    def __iter__(self):
        base = self.epoch * self.samples_per_epoch
        return iter(range(base + self.start, base + self.samples_per_epoch))

    def __len__(self) -> int:
        return self.samples_per_epoch - self.start


def full_slice_inputs(case: CachedCase, preprocessor, indices: Sequence[int]) -> np.ndarray:
    """Network inputs ``(n, C, H, W)`` float32 for whole slices ``indices`` of a cached case (validation)."""
    return preprocessor.stack_volume(case.hu, indices, preprocessor.config.context_offset(case.spacing_zyx[0]),
                                     spacing_yx=case.spacing_zyx[1:])
