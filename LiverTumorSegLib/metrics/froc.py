"""Lesion-level FROC: sensitivity against false-positive lesions per case as the lesion confidence threshold falls.

Where ROC (:mod:`.roc`) counts voxels, FROC counts lesions, as lesion-detection studies report them (LUNA16,
CAMELYON16, liver-lesion detection papers): each predicted lesion (a connected component of the predicted tumor
mask) gets a **confidence**, its mean tumor probability, computed as the lesion report's
``mean_tumor_probability`` by the same function (:func:`lesion_hits`); at a threshold ``t`` only the predicted
lesions with confidence >= ``t`` are kept, and

* a predicted lesion **hits** the reference lesion it shares the most voxels with (ties: the lowest-numbered
  reference lesion); one that shares no voxel with any reference lesion is a **false positive**;
* **sensitivity** = reference lesions hit by at least one kept predicted lesion / all reference lesions, pooled
  over cases; a second predicted lesion on a lesion already hit is neither a second hit nor a false positive;
* **false positives per case** = kept false-positive lesions of all cases / number of cases.

The hit rule is overlap (any shared voxel), the usual FROC criterion for segmentation-derived detections; for a
lesion predicted on its own it is more lenient than the IoU > 0.5 rule of :func:`~.lits.detect_lesions` (LiTS
precision and recall), so the two numbers are not comparable. It is not more lenient for lesions that one predicted
lesion merges: that prediction hits only the one reference lesion it shares most voxels with, where
:func:`~.lits.detect_lesions` counts every reference lesion of a detected merged group as detected (two lesions
covered by one prediction: detection recall 1.0, FROC sensitivity at most 0.5).
Lesions are ``connectivity``-connected components (26 by default, as the lesion report and
:func:`~.lits.detect_lesions` count them).

The summary numbers are the sensitivity at :data:`FROC_FP_RATES` false positives per case (LUNA16's seven
operating points; CAMELYON16 uses the six from 1/4) and their mean (LUNA16's competition performance metric, CPM).
The sensitivity at a rate ``r`` is the highest sensitivity of an operating point with at most ``r`` false positives
per case: a step curve, no interpolation between thresholds (an operating point that exists, never one between
two; LUNA16's script interpolates, so its CPM can be somewhat higher on the same detections).

**Which mean.** ``segment``'s report (and its uncertain-lesion rule) averages the uint8 map it writes with
``--probabilities`` over the lesion's voxels the network labelled tumor: a core that post-processing's hole fill
made tumor (background to the network, at a low probability) does not count. ``evaluate --prob`` reads the final
label map and that map, and neither file says which voxels the fill added, so its confidence is the mean over all
of the lesion's voxels: ``measure --probabilities``'s value for the same two files, and ``segment``'s for every
lesion without a filled core (all 11 lesions the bundled model found in 8 synthetic-tumor versions of
``Testing/Data/example_ct_sm``, 26 Nov 2026, agreed to 1e-16). A lesion with a filled core reads lower here: a ring
at 191/255 around a filled core at 13/255 (1162 and 257 voxels) is 0.6226 in the FROC and 0.7490 in ``segment``'s
report, on either side of the 0.65 of ``--min-lesion-probability``. A caller holding the network's labels passes
them (``network_tumor``) and gets ``segment``'s value.

Masks and probability maps are ``(z, y, x)`` arrays of one case's grid.
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

FROC_FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
"""False-positive lesions per case at which :meth:`FrocCurve.summary` gives the sensitivity (LUNA16's points)."""

HIT_RULE = ("a predicted lesion hits the reference lesion it shares the most voxels with (any shared voxel); "
            "confidence = the predicted lesion's mean tumor probability as the lesion report computes it (over all "
            "its voxels when only the final label map is known, as in evaluate: measure --probabilities's value)")


@dataclass
class CaseLesionHits:
    """One case's predicted lesions for FROC: ``confidences[i]`` (mean probability over lesion ``i``'s voxels, in
    [0, 1]) and ``hits[i]`` (the 0-based reference lesion it hits, -1: a false positive), and ``n_ref``, the
    number of reference lesions."""

    confidences: np.ndarray
    hits: np.ndarray
    n_ref: int


def lesion_hits(pred_tumor: np.ndarray, ref_tumor: np.ndarray, probability: np.ndarray, divisor: float = 1.0,
                connectivity: int = 26, network_tumor: Optional[np.ndarray] = None) -> CaseLesionHits:
    """:class:`CaseLesionHits` of one case: boolean (or nonzero = tumor) ``(z, y, x)`` masks and the tumor
    ``probability`` map on the same grid, ``probability / divisor`` in [0, 1] (``divisor`` 255 for the uint8
    maps ``segment --probabilities`` writes). Only the box holding both masks' tumor voxels is labelled.

    Each predicted lesion's confidence is the lesion report's ``mean_tumor_probability``, from the one function
    both use (:func:`~LiverTumorSegLib.inference.postprocess.component_mean_probability`, also behind the
    post-processing's uncertain-lesion rule): the mean over the lesion's voxels ``network_tumor`` marks (bool, same
    grid: the voxels the network labelled tumor before post-processing, as ``segment`` passes them), else, and
    for a lesion without such a voxel, over all its voxels (``measure --probabilities``; ``evaluate`` has only the
    final label map, so this). The map's values are taken as ``measure`` reads them
    (:func:`~LiverTumorSegLib.io.probability.read_probability_map`): uint8 with divisor 255 as they are, other
    integers divided by ``divisor`` in float32, floats divided by it; values outside 0..1 raise ValueError."""
    from scipy import ndimage

    from ..inference.postprocess import component_mean_probability
    from .lits import _first_per_key, _overlap_pairs, _structure
    from .overlap import _as_bool
    from .surface import union_bounding_box

    pred_tumor, ref_tumor = _as_bool(pred_tumor), _as_bool(ref_tumor)  # boolean masks as they are: no copy
    if pred_tumor.shape != ref_tumor.shape or np.shape(probability) != pred_tumor.shape or \
            (network_tumor is not None and np.shape(network_tumor) != pred_tumor.shape):
        raise ValueError(f"FROC needs masks and a probability map of one shape, got {pred_tumor.shape}, "
                         f"{ref_tumor.shape} and {np.shape(probability)}"
                         + ("" if network_tumor is None else f" (network tumor mask {np.shape(network_tumor)})"))
    if not divisor > 0:
        raise ValueError(f"divisor must be > 0, got {divisor}")
    box = union_bounding_box(pred_tumor, ref_tumor)
    if box is None:
        return CaseLesionHits(np.zeros(0), np.zeros(0, dtype=np.int64), 0)
    structure = _structure(connectivity, pred_tumor.ndim)
    ref_ids, n_ref = ndimage.label(ref_tumor[box], structure=structure)
    pred_ids, n_pred = ndimage.label(pred_tumor[box], structure=structure)
    if n_pred == 0:
        return CaseLesionHits(np.zeros(0), np.zeros(0, dtype=np.int64), int(n_ref))
    inside = pred_ids > 0
    values = np.asarray(probability)[box][inside]  # the lesions' voxels only: no float copy of the box
    if not np.issubdtype(values.dtype, np.integer) and not np.isfinite(values).all():
        raise ValueError("FROC needs a finite probability over every predicted lesion; the map holds NaN or Inf")
    if np.issubdtype(values.dtype, np.integer):  # as read_probability_map hands measure a map
        if not (float(divisor) == 255.0 and values.dtype == np.uint8):
            values = values.astype(np.float32) / np.float32(divisor)
    elif float(divisor) != 1.0:
        values = values.astype(np.float64) / float(divisor)
    scale = 255.0 if np.issubdtype(values.dtype, np.integer) else 1.0
    low, high = float(values.min()) / scale, float(values.max()) / scale
    if low < -1e-6 or high > 1.0 + 1e-6:  # component_mean_probability clips floats to 0..1: refused here instead
        raise ValueError(f"FROC needs probabilities in 0..1, got values from {low:g} to {high:g} in the predicted "
                         f"lesions; give the divisor of an integer map (255 for segment's uint8 maps)")
    network = None if network_tumor is None else np.asarray(network_tumor)[box][inside].astype(bool)
    confidences = component_mean_probability(pred_ids[inside], n_pred, values, None, network)[1:]
    hits = np.full(n_pred, -1, dtype=np.int64)
    pair_pred, pair_ref, pair_voxels = _overlap_pairs(pred_ids, ref_ids, n_ref)  # detect_lesions' overlap table
    if pair_pred.size:  # per predicted lesion: the reference it shares most voxels with, the lowest among ties
        pred, ref = _first_per_key(pair_pred, pair_ref, pair_voxels)
        hits[pred] = ref
    return CaseLesionHits(confidences, hits, int(n_ref))


@dataclass
class FrocCurve:
    """FROC operating points, from the highest threshold down. ``thresholds[k]``: predicted lesions with
    confidence >= it are kept (``thresholds[0] = +inf``: none kept, sensitivity 0, no false positive);
    ``sensitivity[k]`` (NaN when no case has a reference lesion) and ``fp_per_case[k]`` at it."""

    thresholds: np.ndarray
    sensitivity: np.ndarray
    fp_per_case: np.ndarray
    n_cases: int
    n_ref_lesions: int
    n_pred_lesions: int

    def sensitivity_at(self, fp_rate: float) -> float:
        """The highest sensitivity among the operating points with at most ``fp_rate`` false positives per case
        (NaN when the sensitivity is undefined)."""
        if not float(fp_rate) >= 0:
            raise ValueError(f"fp_rate must be a number >= 0 of false positives per case, got {fp_rate}")
        if self.n_ref_lesions == 0:
            return float("nan")
        allowed = self.fp_per_case <= float(fp_rate) + 1e-12
        return float(self.sensitivity[allowed].max())

    def summary(self, fp_rates: Sequence[float] = FROC_FP_RATES, max_points: int = 200) -> Dict[str, Any]:
        """JSON-friendly: counts, the sensitivity at each of ``fp_rates``, their mean (CPM) and the operating
        points (thinned to ``max_points``, end points kept; the first threshold, +inf: no lesion kept, is null)."""
        at = {f"{rate:g}": self.sensitivity_at(rate) for rate in fp_rates}
        values = list(at.values())
        n = self.thresholds.size
        keep = np.unique(np.linspace(0, n - 1, min(n, max_points)).round().astype(int))
        return {"hit_rule": HIT_RULE, "n_cases": self.n_cases, "n_ref_lesions": self.n_ref_lesions,
                "n_pred_lesions": self.n_pred_lesions, "sensitivity_at_fp_per_case": at,
                "mean_sensitivity": float(np.mean(values)) if self.n_ref_lesions else float("nan"),
                "points": {"threshold": [None if not np.isfinite(t) else float(t) for t in self.thresholds[keep]],
                           "sensitivity": self.sensitivity[keep].tolist(),
                           "fp_per_case": self.fp_per_case[keep].tolist()}}


def froc_curve(cases: Sequence[CaseLesionHits]) -> FrocCurve:
    """Pool the cases' predicted lesions and sweep the confidence threshold from the highest value down (see the
    module docstring). Raises ValueError for no cases."""
    if not cases:
        raise ValueError("FROC needs at least one case")
    n_ref = sum(int(case.n_ref) for case in cases)
    confidences = np.concatenate([np.asarray(case.confidences, dtype=np.float64) for case in cases])
    hits = np.concatenate([np.asarray(case.hits, dtype=np.int64) for case in cases])
    case_of = np.concatenate([np.full(len(case.hits), k, dtype=np.int64) for k, case in enumerate(cases)])
    order = np.argsort(-confidences, kind="stable")
    confidences, hits, case_of = confidences[order], hits[order], case_of[order]
    thresholds: List[float] = [float("inf")]
    detected_counts, fp_counts = [0], [0]
    found = set()
    false_positives = 0
    for i in range(confidences.size):
        if hits[i] < 0:
            false_positives += 1
        else:
            found.add((int(case_of[i]), int(hits[i])))
        if i + 1 == confidences.size or confidences[i + 1] != confidences[i]:  # the last lesion at this threshold
            thresholds.append(float(confidences[i]))
            detected_counts.append(len(found))
            fp_counts.append(false_positives)
    detected = np.asarray(detected_counts, dtype=np.float64)
    sensitivity = detected / n_ref if n_ref else np.full(detected.size, np.nan)
    return FrocCurve(np.asarray(thresholds), sensitivity, np.asarray(fp_counts, dtype=np.float64) / len(cases),
                     len(cases), n_ref, int(confidences.size))


def froc_line(summary: Optional[Dict[str, Any]]) -> Optional[str]:
    """One line for a terminal: the sensitivity at 1 and 4 false positives per case and the mean over
    :data:`FROC_FP_RATES` (None without a summary)."""
    if not summary:
        return None
    at = summary["sensitivity_at_fp_per_case"]

    def fmt(value: Optional[float]) -> str:
        return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"

    return (f"lesion FROC ({summary['n_ref_lesions']} reference, {summary['n_pred_lesions']} predicted lesions in "
            f"{summary['n_cases']} case(s); hit = any overlap, confidence = mean tumor probability): sensitivity "
            f"{fmt(at.get('1'))} at 1 and {fmt(at.get('4'))} at 4 false positives per case, mean over 1/8..8 "
            f"{fmt(summary['mean_sensitivity'])}")
