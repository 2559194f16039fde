"""Voxel-overlap metrics of two binary masks: Dice, IoU (Jaccard), VOE, RVD, precision, sensitivity,
specificity, accuracy, F1.

Masks are boolean (or 0/1) numpy arrays of any shape, usually ``(z, y, x)``; ``pred`` is the
segmentation being judged and ``ref`` the reference (ground truth). Overlap metrics count voxels, so
they do not need the voxel spacing (volumes in mL do; see :func:`volume_ml`).

Definitions (TP, FP, FN, TN are voxel counts)::

    Dice        = 2 TP / (2 TP + FP + FN)      (= F1 for binary masks)
    IoU         = TP / (TP + FP + FN)          (Jaccard index)
    VOE         = 1 - IoU                      (volumetric overlap error, LiTS)
    RVD         = (|pred| - |ref|) / |ref|     (relative volume difference, signed)
    precision   = TP / (TP + FP)
    sensitivity = TP / (TP + FN)               (recall, true-positive rate)
    specificity = TN / (TN + FP)
    accuracy    = (TP + TN) / (TP + FP + FN + TN)

RVD sign convention: **positive = over-segmentation** (the prediction is larger than the reference),
negative = under-segmentation. This is the formula of the LiTS benchmark paper (Bilic et al., Medical
Image Analysis 2023, RVD(A, B) = (|B| - |A|) / |A| with A the reference). The LiTS evaluation script calls
``medpy.metric.ravd(label, pred)`` (per lesion ``ravd(r, p)``), reference first, and what that gives depends on the
medpy version it runs with. In medpy's 2014 source (Python 2; ``binary.py`` r0.1.1) the signature is
``ravd(input1, input2)`` with the reference first, ``(|input2| - |input1|) / |input1|``: that call is our RVD, sign
and denominator. medpy 0.5.2's source has ``ravd(result, reference)`` = ``(|result| - |reference|) / |reference|``,
so there the same call gives ``(|ref| - |pred|) / |pred|``: the opposite sign and another denominator. Compare our
RVD with numbers from that script only knowing which medpy produced them.

Empty-mask conventions (chosen so that "nothing to find, nothing found" is a perfect score):

* both masks empty: Dice = IoU = F1 = precision = sensitivity = 1, VOE = RVD = 0;
* ``ref`` empty, ``pred`` not: Dice = IoU = F1 = precision = 0, VOE = 1, sensitivity and RVD = NaN
  (undefined: there is nothing to recall and no reference volume to divide by);
* ``pred`` empty, ``ref`` not: Dice = IoU = F1 = sensitivity = 0, VOE = 1, RVD = -1, precision = NaN
  (undefined: no positive predictions).
* specificity is NaN when there is no background voxel in ``ref``; accuracy is always defined.

For two empty masks medpy's ``dc`` returns 0.0 in its 2014 source (the ZeroDivisionError it catches) and 1.0 in
0.5.2's source. Under NumPy 2.3 or later 0.5.2 gives NaN with a RuntimeWarning instead (measured with NumPy 2.4.6):
``numpy.count_nonzero`` there returns a NumPy integer, so ``2.0 * intersection / 0.0`` is a NumPy division, which
does not raise. We return 1 (the convention of the LiTS per-case tumor Dice for tumor-free cases, which the LiTS
script sets itself without calling ``dc``, and of MONAI's ``DiceMetric(ignore_empty=False)``). nnU-Net v2's
``evaluate_predictions.compute_metrics`` gives Dice and IoU NaN there instead (``tp + fp + fn == 0``), and its means
leave such cases out: a tumor Dice mean over a data set with tumor-free cases the model left empty reads higher here
(each adds 1.0) than in nnU-Net's ``summary.json``; compare with it over the cases with tumor only.
NaN values are reported as such and left out of means (the summary counts them); see
:mod:`LiverTumorSegLib.metrics.report`.
"""
from dataclasses import dataclass
from typing import Any, Dict

import numpy as np

NAN = float("nan")


@dataclass(frozen=True)
class ConfusionCounts:
    """Voxel counts of a binary comparison: true/false positives/negatives (``int``)."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def pred_count(self) -> int:
        """Voxels in the prediction (TP + FP)."""
        return self.tp + self.fp

    @property
    def ref_count(self) -> int:
        """Voxels in the reference (TP + FN)."""
        return self.tp + self.fn

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    def __add__(self, other: "ConfusionCounts") -> "ConfusionCounts":
        """Pooled counts of two comparisons (used for global Dice over cases)."""
        return ConfusionCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)


MASK_READER = "LiverTumorSegLib.io.read_label_map(path).array"
"""How to get a mask array from a file, named where an image object was given instead."""


def mask_array(mask: Any, function: str = "the metrics") -> np.ndarray:
    """``mask`` as a numeric numpy array (a numpy array as it is), else TypeError naming ``function`` and saying
    how to get the array: numpy made a nibabel image a 0-D object array counted as one foreground voxel (Dice of any
    two images 1.0, a volume of one voxel) and a SimpleITK image a flat 1-D array."""
    from ..volume import numeric_array

    return numeric_array(mask, f"{function}: a mask must be a numpy array in (z, y, x) order", MASK_READER)


def _as_bool(mask: np.ndarray) -> np.ndarray:
    mask = mask_array(mask, "the overlap metrics")
    return mask if mask.dtype == bool else mask != 0


def confusion_counts(pred: np.ndarray, ref: np.ndarray) -> ConfusionCounts:
    """Count TP, FP, FN, TN voxels of two masks of the same shape (nonzero = foreground)."""
    pred = _as_bool(pred)
    ref = _as_bool(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"pred shape {pred.shape} differs from ref shape {ref.shape}")
    n_pred = int(np.count_nonzero(pred))
    n_ref = int(np.count_nonzero(ref))
    tp = int(np.count_nonzero(pred & ref)) if n_pred and n_ref else 0
    fp = n_pred - tp
    fn = n_ref - tp
    tn = int(pred.size) - tp - fp - fn
    return ConfusionCounts(tp=tp, fp=fp, fn=fn, tn=tn)


def dice_from_counts(c: ConfusionCounts) -> float:
    """Dice = 2TP / (2TP + FP + FN); 1.0 when both masks are empty."""
    denominator = 2 * c.tp + c.fp + c.fn
    return 1.0 if denominator == 0 else 2.0 * c.tp / denominator


def iou_from_counts(c: ConfusionCounts) -> float:
    """IoU (Jaccard) = TP / (TP + FP + FN); 1.0 when both masks are empty."""
    denominator = c.tp + c.fp + c.fn
    return 1.0 if denominator == 0 else c.tp / denominator


def voe_from_counts(c: ConfusionCounts) -> float:
    """Volumetric overlap error = 1 - IoU; 0.0 when both masks are empty."""
    return 1.0 - iou_from_counts(c)


def rvd_from_counts(c: ConfusionCounts) -> float:
    """Relative volume difference (|pred| - |ref|) / |ref| (positive = over-segmentation).

    0.0 when both masks are empty; NaN when only the reference is empty.
    """
    if c.ref_count == 0:
        return 0.0 if c.pred_count == 0 else NAN
    return (c.pred_count - c.ref_count) / c.ref_count


def precision_from_counts(c: ConfusionCounts) -> float:
    """TP / (TP + FP); 1.0 when both masks are empty, NaN when only the prediction is empty."""
    if c.pred_count == 0:
        return 1.0 if c.ref_count == 0 else NAN
    return c.tp / c.pred_count


def sensitivity_from_counts(c: ConfusionCounts) -> float:
    """Recall TP / (TP + FN); 1.0 when both masks are empty, NaN when only the reference is empty."""
    if c.ref_count == 0:
        return 1.0 if c.pred_count == 0 else NAN
    return c.tp / c.ref_count


def specificity_from_counts(c: ConfusionCounts) -> float:
    """TN / (TN + FP); NaN when the reference has no background voxel."""
    negatives = c.tn + c.fp
    return NAN if negatives == 0 else c.tn / negatives


def accuracy_from_counts(c: ConfusionCounts) -> float:
    """(TP + TN) / all voxels; NaN only for zero-size masks."""
    return NAN if c.total == 0 else (c.tp + c.tn) / c.total


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice coefficient of two masks (see module docstring for empty masks)."""
    return dice_from_counts(confusion_counts(pred, ref))


def iou(pred: np.ndarray, ref: np.ndarray) -> float:
    """Intersection over union (Jaccard index) of two masks."""
    return iou_from_counts(confusion_counts(pred, ref))


jaccard = iou


def voe(pred: np.ndarray, ref: np.ndarray) -> float:
    """Volumetric overlap error 1 - IoU."""
    return voe_from_counts(confusion_counts(pred, ref))


def rvd(pred: np.ndarray, ref: np.ndarray) -> float:
    """Signed relative volume difference (|pred| - |ref|) / |ref|; positive = over-segmentation."""
    return rvd_from_counts(confusion_counts(pred, ref))


def precision(pred: np.ndarray, ref: np.ndarray) -> float:
    """Positive predictive value TP / (TP + FP)."""
    return precision_from_counts(confusion_counts(pred, ref))


def sensitivity(pred: np.ndarray, ref: np.ndarray) -> float:
    """Sensitivity (recall) TP / (TP + FN)."""
    return sensitivity_from_counts(confusion_counts(pred, ref))


recall = sensitivity


def specificity(pred: np.ndarray, ref: np.ndarray) -> float:
    """Specificity TN / (TN + FP)."""
    return specificity_from_counts(confusion_counts(pred, ref))


def accuracy(pred: np.ndarray, ref: np.ndarray) -> float:
    """Voxel accuracy (TP + TN) / N."""
    return accuracy_from_counts(confusion_counts(pred, ref))


def f1(pred: np.ndarray, ref: np.ndarray) -> float:
    """F1 score = harmonic mean of precision and recall = Dice for binary masks."""
    return dice_from_counts(confusion_counts(pred, ref))


def overlap_metrics_from_counts(c: ConfusionCounts) -> Dict[str, float]:
    """All overlap metrics from counts: keys dice, iou, voe, rvd, precision, sensitivity, specificity,
    accuracy, f1 (floats, NaN where undefined)."""
    return {
        "dice": dice_from_counts(c),
        "iou": iou_from_counts(c),
        "voe": voe_from_counts(c),
        "rvd": rvd_from_counts(c),
        "precision": precision_from_counts(c),
        "sensitivity": sensitivity_from_counts(c),
        "specificity": specificity_from_counts(c),
        "accuracy": accuracy_from_counts(c),
        "f1": dice_from_counts(c),
    }


def overlap_metrics(pred: np.ndarray, ref: np.ndarray) -> Dict[str, float]:
    """All overlap metrics of two masks in one pass over the voxels (see
    :func:`overlap_metrics_from_counts` for the keys)."""
    return overlap_metrics_from_counts(confusion_counts(pred, ref))


def volume_ml(mask: np.ndarray, spacing_zyx) -> float:
    """Volume of a mask in millilitres; ``spacing_zyx`` in mm, one positive size per axis of ``mask`` (any axis
    order works: only the product). A negative spacing gave -1.0 mL, a 2-value one half the volume."""
    from .surface import _check_spacing
    mask = mask_array(mask, "volume_ml")
    return float(np.count_nonzero(mask)) * float(np.prod(_check_spacing(spacing_zyx, mask.ndim))) / 1000.0
