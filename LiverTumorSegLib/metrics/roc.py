"""ROC curve and area under it from voxel probabilities, without scikit-learn.

``scores``: predicted probability (or any score; higher = more likely positive) per voxel, any shape;
``labels``: the reference mask of the same shape (nonzero = positive).

* :func:`roc_curve` is exact: one ROC point at every distinct score (tied scores move the curve diagonally, so
  ties count one half, as in the Mann-Whitney statistic). Integer scores spanning at most
  :data:`MAX_COUNTED_LEVELS` values (a uint8 ``255 x p`` map as ``segment --probabilities`` writes it) are
  counted per value, a few MiB at a time; other scores are sorted (about 60 bytes per voxel for float maps).
* :func:`roc_auc` is exact with memory bounded beside the map: integer scores as above; float scores by the
  Mann-Whitney count (the smaller class sorted, at most 2 bytes per voxel of a float32 map, the other searched
  in it piece by piece), exact in integers and rounded once at the end.
* :class:`RocAccumulator` pools many cases in fixed score bins over [0, 1] (memory independent of the
  number of voxels); its curve equals :func:`roc_curve` of the scores rounded down to the bin edges.
  :meth:`RocAccumulator.add_and_score` also returns the case's own exact AUC, from one count of an integer map.

AUC is the area under the curve; NaN when the labels hold only one class.
"""
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np


@dataclass
class RocCurve:
    """ROC points, starting at (0, 0) and ending at (1, 1). ``thresholds[k]``: a voxel is called positive
    when its score >= ``thresholds[k]`` (``thresholds[0] = +inf``, nothing positive)."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray

    @property
    def auc(self) -> float:
        """Trapezoidal area under the curve (NaN when the curve is undefined)."""
        if self.fpr.size < 2 or not np.all(np.isfinite(self.fpr)) or not np.all(np.isfinite(self.tpr)):
            return float("nan")
        return float(np.sum(np.diff(self.fpr) * (self.tpr[1:] + self.tpr[:-1]) * 0.5))

    def to_dict(self, max_points: int = 200) -> Dict[str, List[float]]:
        """JSON-friendly dict, thinned to at most ``max_points`` points (end points kept)."""
        n = self.fpr.size
        keep = np.unique(np.linspace(0, n - 1, min(n, max_points)).round().astype(int)) if n else np.zeros(0, int)
        thresholds = [float(t) if np.isfinite(t) else None for t in self.thresholds[keep]]
        return {"fpr": self.fpr[keep].tolist(), "tpr": self.tpr[keep].tolist(), "thresholds": thresholds}


def _curve_from_counts(thresholds: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> RocCurve:
    """The ROC curve of voxel counts per score, the one place a curve is made (exact sorted scores, counted
    integer levels, pooled bins): ``positives[k]`` and ``negatives[k]`` voxels score ``thresholds[k]``, given in
    decreasing order; scores no voxel has are left out."""
    present = (positives + negatives) > 0
    thresholds = np.asarray(thresholds, dtype=np.float64)[present]
    tp = np.concatenate([[0], np.cumsum(positives[present])])
    fp = np.concatenate([[0], np.cumsum(negatives[present])])
    n_pos, n_neg = tp[-1], fp[-1]
    if n_pos == 0 or n_neg == 0:
        nan = np.full(tp.shape, np.nan)
        return RocCurve(nan, nan, np.concatenate([[np.inf], thresholds]))
    return RocCurve(fp / float(n_neg), tp / float(n_pos), np.concatenate([[np.inf], thresholds]))


CHUNK_VOXELS = 1 << 20
"""Voxels handled at a time by the counting passes: their temporaries (about 17 bytes a voxel) stay a few MiB
whatever the size of the volume."""

PIECE_BYTES_PER_VOXEL = 18
"""Peak of the temporaries of :meth:`RocAccumulator.add_and_score` (and :func:`roc_auc`) in bytes a voxel of one
piece (:data:`CHUNK_VOXELS`), plus twice the map's own bytes a voxel: a piece's temporaries are still held while the
next piece is cut. Measured (tracemalloc, pieces of 1 Mi voxels, the sorted copy of the smaller class apart): 16.8
for uint8 and int16 maps, 24.6 for float32, up to 29.1 for float64."""


def scoring_memory_bytes(scores: np.ndarray, positives_at_most: int) -> int:
    """Bytes :meth:`RocAccumulator.add_and_score` (and :func:`roc_auc`) may need beside ``scores`` (any shape) and
    its labels: one piece's temporaries (:data:`PIECE_BYTES_PER_VOXEL`) and the sorted copy of the smaller class that
    ranking a map (not counting it) makes, bounded by ``positives_at_most`` positive voxels of the scores' type."""
    itemsize = scores.dtype.itemsize
    piece_voxels = min(int(scores.size), CHUNK_VOXELS)
    return (PIECE_BYTES_PER_VOXEL + 2 * itemsize) * piece_voxels + itemsize * int(positives_at_most)


MAX_COUNTED_LEVELS = 1 << 16
"""Integer (and bool) scores spanning at most this many values are counted per value (two int64 counts a value)
instead of sorted."""


def _check_same_shape(scores: np.ndarray, labels: np.ndarray, name: str = "scores") -> None:
    if scores.shape != labels.shape:  # before flattening: a transposed map has the same size, not the same shape
        raise ValueError(f"{name} has shape {scores.shape}, labels {labels.shape}; give them on one grid")


def _flat_chunks(scores: np.ndarray, labels: np.ndarray) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """``(scores, labels != 0)`` in C order as 1-D pieces of at most about :data:`CHUNK_VOXELS` voxels (whole
    slabs along the first axis); only a piece is ever copied, also of a non-contiguous (reoriented) view."""
    if scores.ndim <= 1:
        flat_scores, flat_labels = scores.reshape(-1), labels.reshape(-1)
        for start in range(0, flat_scores.size, CHUNK_VOXELS):
            yield flat_scores[start:start + CHUNK_VOXELS], flat_labels[start:start + CHUNK_VOXELS] != 0
        return
    per_slab = int(np.prod(scores.shape[1:], dtype=np.int64))
    if per_slab > CHUNK_VOXELS:
        for index in range(scores.shape[0]):
            yield from _flat_chunks(scores[index], labels[index])
        return
    step = max(1, CHUNK_VOXELS // max(1, per_slab))
    for start in range(0, scores.shape[0], step):
        yield scores[start:start + step].ravel(), labels[start:start + step].ravel() != 0


def _counted_range(scores: np.ndarray) -> Optional[Tuple[int, int]]:
    """``(lowest, highest)`` value of integer or bool ``scores`` spanning at most :data:`MAX_COUNTED_LEVELS`
    values; None for float scores, wider integers, or no scores."""
    if scores.size == 0 or not (np.issubdtype(scores.dtype, np.integer) or scores.dtype == np.bool_):
        return None
    low, high = int(scores.min()), int(scores.max())
    if high - low >= MAX_COUNTED_LEVELS or high > np.iinfo(np.intp).max:
        return None
    return low, high


@dataclass
class LevelCounts:
    """Voxel counts per value of integer scores: ``positives[v]`` and ``negatives[v]`` voxels (labels nonzero and
    zero) score ``low + v`` (int64 counts, one per value from the lowest to the highest score)."""

    low: int
    positives: np.ndarray
    negatives: np.ndarray

    @property
    def high(self) -> int:
        """The highest score counted."""
        return self.low + self.positives.size - 1

    def curve(self) -> RocCurve:
        """The exact ROC curve of the counted scores (one point per value present)."""
        descending = np.arange(self.high, self.low - 1, -1, dtype=np.float64)
        return _curve_from_counts(descending, self.positives[::-1], self.negatives[::-1])


def count_levels(scores: np.ndarray, labels: np.ndarray) -> Optional[LevelCounts]:
    """:class:`LevelCounts` of integer or bool ``scores`` (any shape; ``labels`` of the same shape) spanning at most
    :data:`MAX_COUNTED_LEVELS` values, counted in pieces (one pass over the map, a few MiB at a time); None for
    float scores, wider integers or no scores (those are sorted or ranked instead)."""
    counted = _counted_range(scores)
    if counted is None:
        return None
    positives, negatives = _level_counts(scores, labels, *counted)
    return LevelCounts(counted[0], positives, negatives)


def _level_counts(scores: np.ndarray, labels: np.ndarray, low: int, high: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(positives, negatives)``: int64 voxel counts of each score value ``low .. high`` (integer ``scores``); the
    pass over the whole map that :func:`count_levels` makes."""
    levels = high - low + 1
    counts = np.zeros(2 * levels, dtype=np.int64)  # [2 v] negatives, [2 v + 1] positives of value low + v
    for part, positive in _flat_chunks(scores, labels):
        index = part.astype(np.intp)
        index -= low
        index *= 2
        index += positive
        counts += np.bincount(index, minlength=2 * levels)
    return counts[1::2], counts[0::2]


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> RocCurve:
    """Exact ROC curve: one point per distinct score value, in order of decreasing threshold. Integer scores
    (:data:`MAX_COUNTED_LEVELS`) are counted per value in pieces; other scores are sorted whole."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    _check_same_shape(scores, labels)
    levels = count_levels(scores, labels)
    if levels is not None:
        return levels.curve()
    scores = scores.ravel()
    if not np.issubdtype(scores.dtype, np.floating):  # -scores wraps for uint8/uint16 (and int8 -128), fails for bool
        scores = scores.astype(np.float64)
    labels = labels.ravel() != 0
    if scores.size and not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or infinite values")
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    sorted_labels = labels[order]
    # last index of each run of equal scores
    if sorted_scores.size:
        ends = np.flatnonzero(np.diff(sorted_scores)) if sorted_scores.size > 1 else np.zeros(0, int)
        ends = np.concatenate([ends, [sorted_scores.size - 1]])
    else:
        ends = np.zeros(0, int)
    cum_pos = np.cumsum(sorted_labels)
    tp = cum_pos[ends]
    fp = (ends + 1) - tp
    pos_at = np.diff(np.concatenate([[0], tp]))
    neg_at = np.diff(np.concatenate([[0], fp]))
    return _curve_from_counts(sorted_scores[ends], pos_at, neg_at)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the exact ROC curve (ties count one half); NaN with only one class. Integer scores (a uint8
    ``255 x p`` map): :func:`roc_curve`'s trapezoidal area, counted per value. Other scores: the Mann-Whitney
    count (:func:`_rank_count_auc`), exact in integers and rounded once, so it may differ from
    ``roc_curve(...).auc``'s sum of float trapezoids in the last digits (1e-15), without a sorted copy of the
    whole map. Raises ValueError for NaN/Inf scores or shapes that differ."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    _check_same_shape(scores, labels)
    levels = count_levels(scores, labels)
    return levels.curve().auc if levels is not None else _rank_count_auc(scores, labels)


def _rank_count_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUC = (2 x the positive-negative pairs the scores rank right + the tied pairs) / (2 x positives x
    negatives), counted exactly: the smaller class's scores are sorted (one copy of that class), the other
    class's are searched in them a piece at a time (:func:`_flat_chunks`)."""
    float_scores = np.issubdtype(scores.dtype, np.floating)
    n_pos = n_all = 0
    for part, positive in _flat_chunks(scores, labels):
        if float_scores and not np.all(np.isfinite(part)):
            raise ValueError("scores contain NaN or infinite values")
        n_pos += int(np.count_nonzero(positive))
        n_all += int(part.size)
    n_neg = n_all - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    sort_positives = n_pos <= n_neg
    smaller = np.empty(min(n_pos, n_neg), dtype=scores.dtype)
    filled = 0
    for part, positive in _flat_chunks(scores, labels):
        chosen = part[positive] if sort_positives else part[~positive]
        smaller[filled:filled + chosen.size] = chosen
        filled += chosen.size
    smaller.sort()
    twice_right = 0  # 2 per pair ranked right, 1 per tie (Python int: no overflow)
    for part, positive in _flat_chunks(scores, labels):
        other = np.sort(part[~positive] if sort_positives else part[positive])  # sorted keys search faster
        below = int(np.searchsorted(smaller, other, side="left").sum())
        up_to = int(np.searchsorted(smaller, other, side="right").sum())
        ties = up_to - below
        if sort_positives:  # other = negatives: the positives above each
            twice_right += 2 * (n_pos * other.size - up_to) + ties
        else:  # other = positives: the negatives below each
            twice_right += 2 * below + ties
    return twice_right / (2 * n_pos * n_neg)  # true division of ints: correctly rounded


class RocAccumulator:
    """Pools ROC statistics over cases in ``n_bins`` equal score bins over [0, 1].

    ``add(probabilities, labels)`` per case; ``curve()`` gives the pooled curve. Scores outside [0, 1]
    are clipped. Bin ``b`` holds scores in ``[b / n_bins, (b + 1) / n_bins)`` (the last bin includes 1), as
    computed in float32 (maps are binned in float32 pieces): a float64 score exactly on an edge may fall one bin low
    (0.251, 0.253, 0.502, 0.506 and 0.511 of the 1001 values k / 1000 do), a shift of at most 1 / n_bins in the
    threshold a point of the curve is drawn at; uint8 levels (255 x p) are binned exactly.
    """

    def __init__(self, n_bins: int = 1000) -> None:
        if n_bins < 1:
            raise ValueError("n_bins must be >= 1")
        self.n_bins = int(n_bins)
        self.positives = np.zeros(self.n_bins, dtype=np.int64)
        self.negatives = np.zeros(self.n_bins, dtype=np.int64)

    def add(self, probabilities: np.ndarray, labels: np.ndarray, divisor: float = 1.0) -> None:
        """Add one case (any shape, same shape for both); probabilities in 0..1 (values outside are clipped, but an
        integer map with values above 1, such as a uint8 map where 255 = 1.0, is refused unless ``divisor`` says
        so: clipped, every nonzero voxel would fall in the top bin).

        ``divisor``: integer maps hold ``divisor x p`` (255 for the maps ``segment --probabilities`` writes); each
        value is divided in float32, as :func:`~LiverTumorSegLib.io.probability.probability_scores` does, so the
        bins are those of the float map, which is never made: integer maps are counted per value, float maps a
        piece at a time (memory beside the map: a few MiB). A ValueError leaves the accumulator as it was."""
        raw, y = np.asarray(probabilities), np.asarray(labels)
        self._add_binned(raw, y, divisor, self._checked_levels(raw, y, divisor))

    def add_and_score(self, probabilities: np.ndarray, labels: np.ndarray, divisor: float = 1.0) -> float:
        """:meth:`add` one case and return its own exact AUC, :func:`roc_auc` of ``probabilities`` (which depends
        only on the order of the scores: the divisor does not change it). An integer map (``segment
        --probabilities``' uint8 map) is counted per value once for both; a float map is ranked for the AUC
        (:func:`_rank_count_auc`: exact, where bins are not) and binned for the pool."""
        raw, y = np.asarray(probabilities), np.asarray(labels)
        levels = self._checked_levels(raw, y, divisor)
        auc = levels.curve().auc if levels is not None else _rank_count_auc(raw, y)
        self._add_binned(raw, y, divisor, levels)
        return auc

    def score_levels(self, probabilities: np.ndarray, labels: np.ndarray) -> Tuple[float, LevelCounts]:
        """One integer map's own exact AUC and its :class:`LevelCounts`, *not* added to the pool: for a map whose
        divisor is not known yet (:meth:`add_levels` adds it once it is). ValueError for a map that is not of
        integers."""
        raw, y = np.asarray(probabilities), np.asarray(labels)
        _check_same_shape(raw, y, "probabilities")
        levels = count_levels(raw, y)
        if levels is None:
            raise ValueError(f"score_levels takes a map of integers, got {raw.dtype}")
        return levels.curve().auc, levels

    def add_levels(self, levels: LevelCounts, divisor: float) -> None:
        """Add a map counted by :meth:`score_levels` to the pool, its values divided by ``divisor`` (> 0)."""
        if not divisor > 0:
            raise ValueError(f"divisor must be > 0, got {divisor}")
        self._add_binned(np.zeros(0), np.zeros(0), divisor, levels)

    @staticmethod
    def _checked_levels(raw: np.ndarray, labels: np.ndarray, divisor: float) -> Optional[LevelCounts]:
        """Refuse (ValueError) what :meth:`add` does not take; the map's :func:`count_levels` (None for floats)."""
        floating = np.issubdtype(raw.dtype, np.floating)
        if not divisor > 0:
            raise ValueError(f"divisor must be > 0, got {divisor}")
        if floating and divisor != 1.0:  # they were binned as they are, clipped
            raise ValueError(f"divisor {divisor} is for integer maps (divisor x p); float probabilities are in 0..1")
        _check_same_shape(raw, labels, "probabilities")
        levels = count_levels(raw, labels)
        if not floating and divisor == 1.0 and raw.size:
            highest = levels.high if levels is not None else raw.max()
            if highest > 1:
                raise ValueError(f"probabilities are {raw.dtype} with values up to {highest}; give them in 0..1 "
                                 f"(a uint8 map where 255 = 1.0: divide by 255)")
        return levels

    def _add_binned(self, raw: np.ndarray, labels: np.ndarray, divisor: float, levels: Optional[LevelCounts]) -> None:
        """Add a map's voxels to the bins: from its ``levels`` when counted, else binned a piece at a time."""
        if levels is not None:
            values = np.arange(levels.low, levels.high + 1).astype(np.float32) / np.float32(divisor)
            bins = self._bins(values)
            positives = np.zeros(self.n_bins, dtype=np.int64)
            negatives = np.zeros(self.n_bins, dtype=np.int64)
            np.add.at(positives, bins, levels.positives)
            np.add.at(negatives, bins, levels.negatives)
        else:
            positives, negatives = self._float_counts(raw, labels, divisor)
        self.positives += positives
        self.negatives += negatives

    def _bins(self, probabilities: np.ndarray) -> np.ndarray:
        """The bin of each probability (float32; clipped to 0..1)."""
        return np.clip((np.clip(probabilities, 0.0, 1.0) * self.n_bins).astype(np.int64), 0, self.n_bins - 1)

    def _float_counts(self, probabilities: np.ndarray, labels: np.ndarray,
                      divisor: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
        """``(positives, negatives)`` per bin of a float (or wide integer) map, in pieces of float32 (integers
        divided by ``divisor`` in float32, as the counted levels are)."""
        positives = np.zeros(self.n_bins, dtype=np.int64)
        negatives = np.zeros(self.n_bins, dtype=np.int64)
        for part, positive in _flat_chunks(probabilities, labels):
            p = part.astype(np.float32, copy=False)
            if divisor != 1.0:
                p = p / np.float32(divisor)
            if not np.isfinite(p).all():  # NaN was binned as p = 0 (roc_auc refuses it)
                raise ValueError("probabilities contain NaN or Inf; give finite values in 0..1")
            bins = self._bins(p)
            positives += np.bincount(bins[positive], minlength=self.n_bins)
            negatives += np.bincount(bins[~positive], minlength=self.n_bins)
        return positives, negatives

    def curve(self) -> RocCurve:
        """Pooled ROC curve; thresholds are the lower bin edges, decreasing."""
        lower_edges = np.arange(self.n_bins - 1, -1, -1, dtype=np.float64) / self.n_bins
        return _curve_from_counts(lower_edges, self.positives[::-1], self.negatives[::-1])
