"""ROC curve and area under it from voxel probabilities, without scikit-learn.

``scores``: predicted probability (or any score; higher = more likely positive) per voxel, any shape;
``labels``: the reference mask of the same shape (nonzero = positive).

* :func:`roc_curve` is exact: it sorts the scores once and puts one ROC point at every distinct score
  (tied scores move the curve diagonally, so ties count one half, as in the Mann-Whitney statistic).
* :class:`RocAccumulator` pools many cases in fixed score bins over [0, 1] (memory independent of the
  number of voxels); its curve equals :func:`roc_curve` of the scores rounded down to the bin edges.

AUC is the trapezoidal area under the curve; NaN when the labels hold only one class.
"""
from dataclasses import dataclass
from typing import Dict, List

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


def _curve_from_counts(thresholds: np.ndarray, pos_at: np.ndarray, neg_at: np.ndarray) -> RocCurve:
    """Curve from per-threshold counts given in descending threshold order."""
    tp = np.concatenate([[0], np.cumsum(pos_at)])
    fp = np.concatenate([[0], np.cumsum(neg_at)])
    n_pos, n_neg = tp[-1], fp[-1]
    if n_pos == 0 or n_neg == 0:
        nan = np.full(tp.shape, np.nan)
        return RocCurve(nan, nan, np.concatenate([[np.inf], thresholds]))
    return RocCurve(fp / float(n_neg), tp / float(n_pos), np.concatenate([[np.inf], thresholds]))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> RocCurve:
    """Exact ROC curve: one point per distinct score value, in order of decreasing threshold."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.shape != labels.shape:  # before flattening: a transposed map has the same size, not the same shape
        raise ValueError(f"scores has shape {scores.shape}, labels {labels.shape}; give them on one grid")
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
    return _curve_from_counts(sorted_scores[ends].astype(np.float64), pos_at, neg_at)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the exact ROC curve (ties count one half); NaN with only one class."""
    return roc_curve(scores, labels).auc


class RocAccumulator:
    """Pools ROC statistics over cases in ``n_bins`` equal score bins over [0, 1].

    ``add(probabilities, labels)`` per case; ``curve()`` gives the pooled curve. Scores outside [0, 1]
    are clipped. Bin ``b`` holds scores in ``[b / n_bins, (b + 1) / n_bins)`` (the last bin includes 1).
    """

    def __init__(self, n_bins: int = 1000) -> None:
        if n_bins < 1:
            raise ValueError("n_bins must be >= 1")
        self.n_bins = int(n_bins)
        self.positives = np.zeros(self.n_bins, dtype=np.int64)
        self.negatives = np.zeros(self.n_bins, dtype=np.int64)

    def add(self, probabilities: np.ndarray, labels: np.ndarray) -> None:
        """Add one case (any shape, same shape for both); probabilities in 0..1 (values outside are clipped, but an
        integer map with values above 1, such as a uint8 map where 255 = 1.0, is refused: clipped, every nonzero
        voxel would fall in the top bin)."""
        raw = np.asarray(probabilities)
        if not np.issubdtype(raw.dtype, np.floating) and raw.size and raw.max() > 1:
            raise ValueError(f"probabilities are {raw.dtype} with values up to {raw.max()}; give them in 0..1 "
                             f"(a uint8 map where 255 = 1.0: divide by 255)")
        p, y = raw.astype(np.float32, copy=False), np.asarray(labels)
        if p.shape != y.shape:  # before flattening: a transposed map has the same size, not the same shape
            raise ValueError(f"probabilities has shape {p.shape}, labels {y.shape}; give them on one grid")
        p = p.ravel()
        if p.size and not np.isfinite(p).all():  # NaN was binned as p = 0 (roc_auc refuses it)
            raise ValueError("probabilities contain NaN or Inf; give finite values in 0..1")
        y = y.ravel() != 0
        bins = np.clip((np.clip(p, 0.0, 1.0) * self.n_bins).astype(np.int64), 0, self.n_bins - 1)
        self.positives += np.bincount(bins[y], minlength=self.n_bins)
        self.negatives += np.bincount(bins[~y], minlength=self.n_bins)

    def curve(self) -> RocCurve:
        """Pooled ROC curve; thresholds are the lower bin edges, decreasing."""
        used = np.flatnonzero((self.positives + self.negatives) > 0)[::-1]
        thresholds = used.astype(np.float64) / self.n_bins
        return _curve_from_counts(thresholds, self.positives[used], self.negatives[used])
