"""LiTS-style evaluation of 0/1/2 label maps: liver and tumor metrics per case, lesion detection and
tumor burden.

Label maps are ``(z, y, x)`` uint8 arrays with 0 background, 1 liver, 2 tumor. As in LiTS,
**liver = label >= 1** (the liver including its tumors) and **tumor = label == 2**.

Lesion detection (:func:`detect_lesions`), after the LiTS evaluation code (Bilic et al. 2023):

1. lesions are the connected components of each tumor mask (26-connectivity by default:
   voxels touching by a face, edge or corner belong to one lesion, as the lesion report counts them;
   ``connectivity=6`` for faces only, which is what the LiTS challenge script used: ``scipy.ndimage.label``'s
   default. Compare lesion counts with LiTS numbers only at 6);
2. every reference lesion overlapped by a predicted lesion is grouped with the predicted lesion that
   overlaps it most; reference lesions sharing that predicted lesion form one group (a prediction
   spanning two reference lesions); then every overlapping predicted lesion joins the group it overlaps
   most, its voxels in the group's reference lesions summed (a reference lesion split into several
   predictions), as the LiTS script matches each prediction to one merged reference lesion;
3. a group is **detected** when the IoU of the union of its reference lesions and the union of its
   predicted lesions is > ``iou_threshold`` (0.5 by default, LiTS);
4. counts: ``detected`` (true positives) = reference lesions in detected groups; ``missed`` (false
   negatives) = the other reference lesions; ``false_positive`` = predicted lesions that are not in a
   detected group (touching no reference lesion, or only in a group that failed the IoU test).
   Lesion precision = TP / (TP + FP), recall = TP / (TP + FN); both are pooled over cases in the
   summary (sum the counts, then divide);
5. ``pred_no_overlap``: predicted lesions that share no voxel with any reference lesion, the plainest count
   of false lesions (those overlapping a reference lesion with IoU <= 0.5 are LiTS false positives, but not
   these);
6. ``detected_groups``: the detected groups, each counted once. The LiTS challenge script counts detection this
   way: true positives = detected groups, false positives = predicted lesions - true positives, false negatives
   = reference lesions - true positives. So where a prediction merges two reference lesions it counts one hit
   and one miss (step 4 counts two hits), and a detected lesion predicted in two pieces gives it one hit and
   one false positive (step 4: one hit, no false positive). With one predicted and one reference lesion per
   group the two countings agree. (The script also takes k hits off for an undetected group of k merged
   reference lesions, which it had counted as one; that slip is not copied here: such a group counts 0. Nor is a
   second one: its IoU test looks a predicted lesion up by its own number, ``d == p_id``, in the array it has just
   relabelled with reference numbers, so where a case's predicted and reference lesions are numbered differently
   it measures the union with another lesion's voxels: a lesion found with IoU 0.6 counted as missed, or a poor
   one as found. ``lits_script`` is the count the script means; on cases with several lesions its published
   numbers can differ from it either way, and so can the set of lesions it scores per lesion.)
   :func:`~.report.summarize` pools both countings; quote ``lits_script`` precision and recall, at
   ``connectivity=6``, beside LiTS numbers.

Detection by lesion size (``spacing_zyx`` given; :func:`evaluate_case` always gives it): each reference lesion's size
is its **equivalent-sphere diameter** ``(6 V / pi) ** (1/3)`` mm, ``V`` = its voxels x the voxel volume (the product of
``spacing_zyx``, so anisotropic voxels count as they are), in ``LesionDetection.lesions`` as ``diameter_mm`` and
``size_bin``. The bins (:data:`LESION_SIZE_BINS`) are ``< 10 mm``, ``10-20 mm`` (10 <= d < 20) and ``>= 20 mm``: a
diameter on an edge goes to the larger bin, also where rounding left it short of the edge by no more than
:data:`~.recist.BOUNDARY_TOLERANCE` of it (:func:`~.recist.at_least`). The LiTS paper (Bilic et al. 2023) analyses
detection by lesion size, but its bins and diameter were not found in the text available when this was written: these
are this tool's, not a LiTS definition. The equivalent-sphere diameter, not RECIST's longest axial diameter, because it
needs only the voxel count (the axial long axis of every reference lesion would need its slices' hulls); for a ball it
is the ball's diameter, for an elongated lesion it is shorter than the long axis. :func:`evaluate_case` counts per bin
``lesions_size_<bin>_ref`` and ``lesions_size_<bin>_detected`` (detected as step 4 counts, so the bins' detected sum
to ``lesions_detected`` and their references to ``lesions_ref``; each reference lesion of a merged group in its own
bin); :func:`~.report.summarize_cases` pools them (``lesion_detection_by_size``: recall = sum detected / sum
reference, per bin). Predicted lesions are not binned: a false positive has no reference size.

Each structure also gets ``volume_outside_ref_<s>_ml``: predicted voxels outside the reference structure
(false-positive volume, mL), e.g. "liver" labelled outside the real liver.

Tumor segmentation metrics are **per case, of the whole tumor mask** (all of the case's label 2 voxels against all of
the reference's), averaged over cases in the summary: ``voe_tumor``, ``rvd_tumor``, ``assd_tumor_mm``,
``hd_tumor_mm``, ``hd95_tumor_mm``, ``rmsd_tumor_mm`` (and ``dice_tumor``, LiTS's "Dice per case"). That is **not**
how LiTS reports VOE, RVD, ASD, MSD and RMSD for tumors: its evaluation script computes them per detected lesion
(each detected group of step 3 above, its reference lesions against its predicted ones) and averages them over all
detected lesions of all cases; only its tumor Dice per case and global Dice are whole-mask. Whole-mask numbers of a
case with one well-segmented and one missed lesion count the miss in every metric (a large ASSD from the missed
lesion's surface), where LiTS's leave the miss to the detection counts. Do not quote these columns as LiTS's lesion
VOE/RVD/ASD/MSD/RMSD.

LiTS's per-lesion variant (:func:`detect_lesions` with ``spacing_zyx``, ``LesionDetection.detected_scores``): each
detected group of step 3, its reference lesions against its predicted lesions alone, in the box holding them, scored
as the LiTS script scores a detected lesion: :data:`LITS_LESION_KEYS`, Dice, VOE, RVD, ASSD, HD (LiTS's MSD), RMSD.
:func:`evaluate_case` writes per case ``lits_lesions_scored`` (its detected groups) and ``lits_lesion_<key>`` (their
mean); :func:`~.report.summarize_cases` averages over all detected lesions of all cases (``lesion_segmentation_lits``),
as LiTS does. Differences from the script's numbers that remain: our RVD sign and denominator (:mod:`.overlap`; the
script's depends on its medpy), our 6-connected surfaces (LiTS's are 18-connected, :mod:`.surface`), and the
lesions: 26-connected by default (step 1; LiTS: 6). Missed lesions are not scored (the LiTS script does not score
them either: it scores the lesions of its detected mask).

Tumor burden = tumor volume / liver volume (label 2 voxels / label >= 1 voxels, LiTS); the row's
``tumor_burden_error`` = predicted - reference burden (signed, positive = overestimate). A map without
liver has burden 0 (it has no tumor: label 2 is part of the liver), as in the lesion report, so a prediction
that finds no liver counts in the burden RMSE with its full error instead of dropping out of it.
"""
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import LabelError
from .overlap import _as_bool, confusion_counts, mask_array, overlap_metrics_from_counts
from .roc import roc_auc, scoring_memory_bytes
from .surface import box_voxels, surface_memory_bytes, surface_metrics, union_bounding_box

NAN = float("nan")
STRUCTURES = ("liver", "tumor")
OVERLAP_KEYS = ("dice", "iou", "voe", "rvd", "precision", "sensitivity", "specificity", "accuracy", "f1")
SURFACE_KEYS = ("assd", "hd", "hd95", "rmsd")
UNDEFINED_WHEN_ABSENT_KEYS = ("voe", "rvd", "iou", "precision", "sensitivity")
"""Overlap metrics :func:`evaluate_case` gives as NaN (0 / 0, not defined) for a structure on neither side (no tumor,
or no liver, in both maps); Dice and F1 stay LiTS's 1.0, specificity and accuracy are defined."""


def structure_mask(labels: np.ndarray, structure: str) -> np.ndarray:
    """Boolean mask of ``structure`` in a 0/1/2 label map: "liver" = label >= 1, "tumor" = label == 2."""
    labels = mask_array(labels, "structure_mask")
    if structure == "liver":
        return labels >= 1
    if structure == "tumor":
        return labels == 2
    raise ValueError(f"unknown structure '{structure}'; use one of {STRUCTURES}")


def check_label_values(labels: np.ndarray, name: str) -> None:
    """Raise :class:`LabelError` if the label map holds values other than 0, 1, 2 (a float map's 0.4 counted
    as background and 1.5 as liver)."""
    if labels.dtype == bool:
        return
    fractional = np.issubdtype(labels.dtype, np.floating) and labels.size and \
        bool(np.any(labels != np.round(labels)))
    if labels.size and (fractional or labels.min() < 0 or labels.max() > 2):
        values = np.unique(labels)
        raise LabelError(f"{name} holds label values {values[:10].tolist()}; expected 0 (background), "
                         f"1 (liver), 2 (tumor). Convert the labels first.")


# ------------------------------------------------------------------------------------------------ lesions
LESION_SIZE_BINS = (("lt10mm", "<10 mm", None, 10.0), ("10to20mm", "10-20 mm", 10.0, 20.0),
                    ("ge20mm", ">=20 mm", 20.0, None))
"""``(key, label, low_mm, high_mm)`` of each lesion size bin, of the equivalent-sphere diameter: ``low_mm <= d <
high_mm`` (None: open); a diameter on an edge is in the larger bin (module docstring)."""
LESION_SIZE_DEFINITION = (
    "reference lesions binned by their equivalent-sphere diameter (6 V / pi)^(1/3), V = voxels x voxel volume (mm^3): "
    "< 10 mm, 10 mm <= d < 20 mm, >= 20 mm (an edge goes to the larger bin); detected as lesion_detection counts "
    "(IoU of the lesion's group > the detection IoU); recall = detected / reference lesions, pooled over cases; "
    "predicted lesions are not binned (a false positive has no reference size)")


def equivalent_diameter_mm(voxels: int, spacing_zyx: Sequence[float]) -> float:
    """Diameter (mm) of the sphere of a lesion's volume: ``(6 V / pi) ** (1/3)``, ``V`` = ``voxels`` x the voxel
    volume (mm^3, the product of ``spacing_zyx``). Two spacings (a 2-D ``(y, x)`` mask, which
    :func:`detect_lesions` takes): the diameter of the circle of the lesion's area ``A`` (mm^2), ``(4 A / pi) **
    (1/2)`` (the sphere's formula took the area for a volume: a 20 mm disc read 8.5 mm, in the smallest bin)."""
    from .surface import _check_spacing

    spacing = _check_spacing(spacing_zyx, len(spacing_zyx)) if len(spacing_zyx) in (2, 3) else None
    if spacing is None:
        raise ValueError(f"spacing_zyx must be 2 (y, x) or 3 (z, y, x) voxel sizes in mm, got {spacing_zyx!r}")
    size = float(voxels) * float(np.prod(spacing))
    if len(spacing) == 2:
        return float((4.0 * size / np.pi) ** 0.5)
    return float((6.0 * size / np.pi) ** (1.0 / 3.0))


def lesion_size_bin(diameter_mm: float) -> str:
    """Key of the :data:`LESION_SIZE_BINS` bin holding ``diameter_mm``: the largest bin whose ``low_mm`` the diameter
    reaches (:func:`~.recist.at_least`: a diameter short of an edge by rounding only is on it, so in the larger bin).
    ValueError for a diameter that is not a finite number >= 0 (NaN fell into the smallest bin)."""
    from .recist import at_least

    if not (np.isfinite(diameter_mm) and diameter_mm >= 0):
        raise ValueError(f"a lesion's diameter must be a finite number of mm >= 0, got {diameter_mm!r}")
    key = LESION_SIZE_BINS[0][0]
    for bin_key, _label, low, _high in LESION_SIZE_BINS[1:]:
        if at_least(diameter_mm, low):
            key = bin_key
    return key


@dataclass
class LesionDetection:
    """Lesion detection counts of one case (see module docstring)."""

    ref_lesions: int
    pred_lesions: int
    detected: int
    missed: int
    false_positive: int
    # per reference lesion: id, voxels, iou, detected; with spacing_zyx also diameter_mm (equivalent sphere), size_bin
    lesions: List[Dict[str, Any]] = field(default_factory=list)
    pred_no_overlap: int = 0  # predicted lesions sharing no voxel with any reference lesion
    detected_groups: int = 0  # detected groups, each counted once (the LiTS script's true positives)
    # per detected group, with spacing_zyx: its segmentation scores (LITS_LESION_KEYS), as the LiTS script scores one
    detected_scores: List[Dict[str, float]] = field(default_factory=list)

    @property
    def precision(self) -> float:
        """TP / (TP + FP) of this case; 1.0 when there is no reference and no predicted lesion. Detection over several
        cases pools the counts (:func:`~.report.summarize_cases`), never averages this."""
        denominator = self.detected + self.false_positive
        return (1.0 if self.ref_lesions == 0 else NAN) if denominator == 0 else self.detected / denominator

    @property
    def recall(self) -> float:
        """TP / (TP + FN); 1.0 when there is no reference lesion and none predicted, else NaN without
        reference lesions."""
        if self.ref_lesions == 0:
            return 1.0 if self.pred_lesions == 0 else NAN
        return self.detected / self.ref_lesions


def _structure(connectivity: int, ndim: int) -> np.ndarray:
    """The neighbourhood of ``connectivity`` for ``ndim``-D masks: 6, 18 or 26 in 3-D; 4 or 8 in 2-D, where the 3-D
    values mean their 2-D counterparts (6: faces, 4; 18 and 26, the default of :func:`detect_lesions` and
    :func:`~.froc.lesion_hits`: 8), so a 2-D mask works with the default (it was refused, 'connectivity must be one
    of [4, 8]')."""
    from scipy import ndimage

    if ndim not in (2, 3):
        raise ValueError(f"lesion masks must be 2-D or 3-D (z, y, x), got {ndim}-D")
    rank = {6: 1, 18: 2, 26: 3} if ndim == 3 else {4: 1, 8: 2, 6: 1, 18: 2, 26: 2}
    if connectivity not in rank:
        raise ValueError(f"connectivity must be one of {sorted(rank)} for {ndim}-D masks, got {connectivity}")
    return ndimage.generate_binary_structure(ndim, rank[connectivity])


def _overlap_pairs(pred_ids: np.ndarray, ref_ids: np.ndarray, n_ref: int
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(pred, ref, voxels)``: the 0-based indices of every predicted and reference lesion that overlap (labels
    ``pred_ids``, ``ref_ids`` of one box) and their shared voxel count, sorted by ``pred`` then ``ref``; the
    nonzero entries of the ``predicted x reference`` intersection table, whose dense form held 8 bytes a pair of
    lesions (it would take 800 MB for 100,000 speckles of an untrained model against 1,000 lesions)."""
    both = (ref_ids > 0) & (pred_ids > 0)
    if n_ref == 0 or not both.any():
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    keys = (pred_ids[both].astype(np.int64) - 1) * n_ref + (ref_ids[both].astype(np.int64) - 1)
    keys, counts = np.unique(keys, return_counts=True)
    return keys // n_ref, keys % n_ref, counts.astype(np.int64)


def _first_per_key(key: np.ndarray, other: np.ndarray, voxels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """For each distinct ``key`` (ascending): the ``other`` index of its pair with the most ``voxels``, the lowest
    ``other`` among ties (a dense table's ``argmax``, whose first maximum wins)."""
    order = np.lexsort((other, -voxels, key))
    key, other = key[order], other[order]
    first = np.ones(key.size, dtype=bool)
    first[1:] = key[1:] != key[:-1]
    return key[first], other[first]


def _group_lesions(pred: np.ndarray, ref: np.ndarray, voxels: np.ndarray, n_pred: int, n_ref: int
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """Group reference and predicted lesions from their overlapping pairs (:func:`_overlap_pairs`).

    Returns ``(ref_group, pred_group)``: group id per reference lesion (every reference lesion has one)
    and per predicted lesion (-1 = overlaps no reference lesion). Each overlapped reference lesion joins the
    group of the predicted lesion it shares most voxels with (a prediction covering several references merges
    them); then every overlapping prediction joins the group it shares most voxels with, summed over the group's
    reference lesions (ties: the group holding the lowest-numbered reference lesion), as the LiTS script matches
    each prediction to a single merged reference lesion. (It took the group of the one reference lesion it shared
    most voxels with, and a prediction stayed in the group it had merged: the groups and counts then differed from
    the script's where a prediction touched several groups.) A group may so end up without a prediction: missed.
    """
    ref_group = np.arange(n_ref)  # default: own group (unmatched reference lesion)
    pred_group = np.full(n_pred, -1)
    if pred.size == 0:
        return ref_group, pred_group
    for j, i in zip(*(a.tolist() for a in _first_per_key(ref, pred, voxels))):  # references in ascending order
        ref_group[j] = n_ref + i  # group id of refs merged under prediction i
    # each group is named here by its lowest-numbered reference lesion (the LiTS script's merged column keeps that
    # one's place, which breaks its ties); voxels of a prediction summed per group
    first_ref = np.full(n_ref + n_pred, n_ref, dtype=np.int64)
    np.minimum.at(first_ref, ref_group, np.arange(n_ref))
    keys = pred.astype(np.int64) * n_ref + first_ref[ref_group[ref]]
    keys, inverse = np.unique(keys, return_inverse=True)
    sums = np.bincount(inverse.ravel(), weights=voxels, minlength=keys.size).astype(np.int64)
    for i, j in zip(*(a.tolist() for a in _first_per_key(keys // n_ref, keys % n_ref, sums))):
        pred_group[i] = ref_group[j]
    return ref_group, pred_group


LITS_LESION_OVERLAP_KEYS = ("dice", "voe", "rvd")
LITS_LESION_SURFACE_KEYS = ("assd_mm", "hd_mm", "rmsd_mm")
LITS_LESION_KEYS = LITS_LESION_OVERLAP_KEYS + LITS_LESION_SURFACE_KEYS
"""The segmentation scores of a detected lesion (:func:`detect_lesions` with ``spacing_zyx``): the LiTS script's
per-lesion dice, voe, rvd, assd, msd (our ``hd_mm``) and rmsd, with our definitions (:mod:`.overlap`,
:mod:`.surface`)."""


def _group_mask(ids: np.ndarray, members: np.ndarray, box: Tuple[slice, ...]) -> np.ndarray:
    """Boolean mask, within ``box``, of the labels ``members`` (1-based) of the label array ``ids``: one comparison a
    member, no copy of the labels."""
    crop = ids[box]
    mask = crop == members[0]
    for member in members[1:]:
        mask |= crop == member
    return mask


def _score_detected_groups(ref_ids: np.ndarray, pred_ids: np.ndarray, ref_group: np.ndarray, pred_group: np.ndarray,
                           detected: Sequence[int], spacing_zyx: Sequence[float],
                           surface: bool) -> List[Dict[str, float]]:
    """:data:`LITS_LESION_KEYS` (without the surface ones unless ``surface``) of each detected group, in the order of
    ``detected``: its reference lesions against its predicted lesions, alone (the case's other lesions are not part of
    either mask), in the box holding the group, as the LiTS script scores a detected lesion (``detected_mask ==
    id`` against ``mod_reference_mask == id``)."""
    from scipy import ndimage

    ref_boxes, pred_boxes = ndimage.find_objects(ref_ids), ndimage.find_objects(pred_ids)
    scores = []
    for group in detected:
        refs, preds = np.flatnonzero(ref_group == group) + 1, np.flatnonzero(pred_group == group) + 1
        boxes = [ref_boxes[j - 1] for j in refs] + [pred_boxes[i - 1] for i in preds]
        box = tuple(slice(min(b[axis].start for b in boxes), max(b[axis].stop for b in boxes))
                    for axis in range(ref_ids.ndim))
        ref_mask, pred_mask = _group_mask(ref_ids, refs, box), _group_mask(pred_ids, preds, box)
        counts = confusion_counts(pred_mask, ref_mask)
        overlap = overlap_metrics_from_counts(counts)
        score = {key: overlap[key] for key in LITS_LESION_OVERLAP_KEYS}
        if surface:
            distances = surface_metrics(pred_mask, ref_mask, spacing_zyx)
            score.update((key, distances[key]) for key in LITS_LESION_SURFACE_KEYS)
        scores.append(score)
        del ref_mask, pred_mask  # else held while the next group's two masks are made (both sides are evaluated first)
    return scores


def detect_lesions(pred_tumor: np.ndarray, ref_tumor: np.ndarray, iou_threshold: float = 0.5,
                   connectivity: int = 26, spacing_zyx: Optional[Sequence[float]] = None,
                   surface: bool = True, whole_mask_scores: Optional[Dict[str, float]] = None) -> LesionDetection:
    """Match connected tumor components of ``pred_tumor`` to those of ``ref_tumor`` (boolean ``(z, y, x)``
    masks; other dtypes: nonzero = tumor) and count detected, missed and false-positive lesions (see module
    docstring). Only the box holding both masks' tumor voxels is labelled; beside it no whole-volume array is made
    for boolean masks.

    With ``spacing_zyx`` (mm, one a mask axis) each reference lesion of ``lesions`` also gets ``diameter_mm`` (its
    equivalent-sphere diameter) and ``size_bin`` (:data:`LESION_SIZE_BINS`), and each detected group is also scored
    as the LiTS script scores a detected lesion (``detected_scores``, one dict a detected group:
    :data:`LITS_LESION_KEYS`, the surface distances only with ``surface``). ``whole_mask_scores``: those scores of
    ``pred_tumor`` against ``ref_tumor`` whole, where the caller has them (:func:`evaluate_case`: the tumor's
    :func:`structure_row`); a sole detected group holding every lesion of both masks (none missed, no false positive:
    the common one-lesion case) is those masks, and takes them instead of being scored again."""
    from scipy import ndimage

    if not 0.0 <= iou_threshold < 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1), got {iou_threshold}")
    pred_tumor = _as_bool(pred_tumor)  # boolean masks as they are: no whole-volume copy
    ref_tumor = _as_bool(ref_tumor)
    if pred_tumor.shape != ref_tumor.shape:
        raise ValueError(f"pred shape {pred_tumor.shape} differs from ref shape {ref_tumor.shape}")
    if spacing_zyx is not None:  # one positive, finite mm a mask axis: 2 for 3-D masks made a sphere of an area, a
        from .surface import _check_spacing  # negative one a complex diameter (TypeError)
        spacing_zyx = _check_spacing(spacing_zyx, pred_tumor.ndim)
    structure = _structure(connectivity, pred_tumor.ndim)
    box = union_bounding_box(pred_tumor, ref_tumor)  # only the box's voxels are labelled
    if box is None:
        return LesionDetection(0, 0, 0, 0, 0, [])
    ref_ids, n_ref = ndimage.label(ref_tumor[box], structure=structure)
    pred_ids, n_pred = ndimage.label(pred_tumor[box], structure=structure)
    ref_sizes = np.bincount(ref_ids.ravel(), minlength=n_ref + 1)[1:]
    pred_sizes = np.bincount(pred_ids.ravel(), minlength=n_pred + 1)[1:]
    pair_pred, pair_ref, pair_voxels = _overlap_pairs(pred_ids, ref_ids, n_ref)
    ref_group, pred_group = _group_lesions(pair_pred, pair_ref, pair_voxels, n_pred, n_ref)
    no_overlap = int(n_pred) - int(np.unique(pair_pred).size)  # predictions sharing no voxel with a reference
    # per group (ids below n_ref + n_pred): its reference and predicted voxels and the voxels they share; summed
    # with bincount, not a loop over groups x lesions (whose time grew with their product)
    size = int(n_ref) + int(n_pred)
    ref_voxels = np.bincount(ref_group, weights=ref_sizes, minlength=size)
    matched = pred_group >= 0  # every prediction's group is a reference's (_group_lesions)
    pred_voxels = np.bincount(pred_group[matched], weights=pred_sizes[matched], minlength=size)
    same = pred_group[pair_pred] == ref_group[pair_ref]
    shared = np.bincount(ref_group[pair_ref[same]], weights=pair_voxels[same], minlength=size)
    detected_groups = set()
    group_iou = {}
    for g in np.unique(ref_group).tolist():
        intersection = int(shared[g])
        union = int(ref_voxels[g] + pred_voxels[g]) - intersection
        group_iou[g] = intersection / union if union else 0.0
        if group_iou[g] > iou_threshold:
            detected_groups.add(g)
    scores = []
    if spacing_zyx is not None and whole_mask_scores is not None and len(detected_groups) == 1 and \
            set(ref_group.tolist()) | set(pred_group.tolist()) == detected_groups:  # the group is the whole masks
        scores = [dict(whole_mask_scores)]
    elif spacing_zyx is not None and detected_groups:
        del pair_pred, pair_ref, pair_voxels, same  # only the two label arrays are held while groups are scored
        scores = _score_detected_groups(ref_ids, pred_ids, ref_group, pred_group, sorted(detected_groups),
                                        spacing_zyx, surface)
    lesions = [{"id": j + 1, "voxels": int(ref_sizes[j]), "iou": group_iou[int(ref_group[j])],
                "detected": int(ref_group[j]) in detected_groups} for j in range(n_ref)]
    if spacing_zyx is not None:  # each reference lesion's size (module docstring): for the recall by size
        for lesion in lesions:
            lesion["diameter_mm"] = equivalent_diameter_mm(lesion["voxels"], spacing_zyx)
            lesion["size_bin"] = lesion_size_bin(lesion["diameter_mm"])
    detected = sum(1 for lesion in lesions if lesion["detected"])
    false_positive = int(sum(1 for g in pred_group if int(g) not in detected_groups))
    return LesionDetection(ref_lesions=int(n_ref), pred_lesions=int(n_pred), detected=detected,
                           missed=int(n_ref) - detected, false_positive=false_positive, lesions=lesions,
                           pred_no_overlap=no_overlap, detected_groups=len(detected_groups), detected_scores=scores)


def tumor_burden(labels: np.ndarray) -> float:
    """Tumor voxels / liver voxels (label 2 / label >= 1) of a 0/1/2 map (a fraction, 0-1); 0.0 without
    liver (no tumor either), as the lesion report's ``tumor_burden_percent``."""
    labels = mask_array(labels, "tumor_burden")
    liver = int(np.count_nonzero(labels >= 1))
    return 0.0 if liver == 0 else int(np.count_nonzero(labels == 2)) / liver


# ------------------------------------------------------------------------------------------------ cases
def structure_row(pred: np.ndarray, ref: np.ndarray, spacing_zyx: Sequence[float], structure: str,
                  surface: bool = True) -> "OrderedDict[str, float]":
    """Metrics of one structure's binary masks, keyed ``<metric>_<structure>[_unit]``:
    overlap metrics, ``assd/hd/hd95/rmsd_<s>_mm``, ``volume_pred/ref_<s>_ml``, ``volume_outside_ref_<s>_ml``
    (predicted outside the reference) and the voxel counts
    ``voxels_tp/pred/ref_<s>`` that global (pooled) Dice needs. Each is of the masks as given: for the tumor, the
    case's whole tumor mask, not LiTS's per-lesion average (module docstring)."""
    from .surface import _check_spacing

    counts = confusion_counts(pred, ref)
    spacing_zyx = _check_spacing(spacing_zyx, np.ndim(pred))  # also without the surface metrics, which check it
    row: "OrderedDict[str, float]" = OrderedDict()
    for key, value in overlap_metrics_from_counts(counts).items():
        row[f"{key}_{structure}"] = value
    if surface:
        for key, value in surface_metrics(pred, ref, spacing_zyx).items():
            row[f"{key[:-3]}_{structure}_mm"] = value
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    row[f"volume_pred_{structure}_ml"] = counts.pred_count * voxel_ml
    row[f"volume_ref_{structure}_ml"] = counts.ref_count * voxel_ml
    row[f"volume_outside_ref_{structure}_ml"] = (counts.pred_count - counts.tp) * voxel_ml
    row[f"voxels_tp_{structure}"] = counts.tp
    row[f"voxels_pred_{structure}"] = counts.pred_count
    row[f"voxels_ref_{structure}"] = counts.ref_count
    return row


EVALUATE_GRID_BYTES_PER_VOXEL = 3
"""Memory :func:`evaluate_case` needs beside its label maps in bytes a voxel of their grid, whatever the boxes: a
structure's two masks and their intersection (Dice). Measured (tracemalloc): 3.0."""

LESION_BYTES_PER_BOX_VOXEL = 16
"""Memory of the lesion labelling in bytes a voxel of the box holding both tumor masks (:func:`detect_lesions`: two
int32 label arrays and bincount's int64 copy of one), beside :data:`EVALUATE_GRID_BYTES_PER_VOXEL`; plus
:data:`LESION_BYTES_PER_OVERLAP_VOXEL`. Measured (tracemalloc): 16.0 for tumors in opposite corners of the box. The
lesions' intersection table holds only the overlapping pairs (:func:`_overlap_pairs`), no more than the overlapping
voxels that :data:`LESION_BYTES_PER_OVERLAP_VOXEL` counts."""

LESION_BYTES_PER_OVERLAP_VOXEL = 13
"""Memory of the lesion labelling in bytes a voxel that is tumor in both maps (the overlapping voxels' int64 pair
keys and their sorting), beside :data:`LESION_BYTES_PER_BOX_VOXEL`. Measured (tracemalloc): 29.0 bytes a box voxel
in all for one tumor filling its box in both maps."""

LESION_SCORING_BYTES_PER_BOX_VOXEL = 10
"""Memory of the LiTS per-lesion scores (:func:`detect_lesions` with ``spacing_zyx``) in bytes a voxel of the box
holding both tumor masks, beside :data:`EVALUATE_GRID_BYTES_PER_VOXEL`: the two int32 label arrays held while each
detected group is scored and the group's two masks in its box; plus, with surface distances, those of a group, which
:func:`~.surface.surface_memory_bytes` of the whole tumor masks bounds (a group's box lies in theirs and its surface
voxels are theirs). Measured (tracemalloc): 8.3-8.5 beside that bound for one group filling the box."""

EVALUATE_CASE_FIXED_BYTES = 16 << 20
"""Memory of :func:`evaluate_case` beside its arrays: the modules the first case imports (scipy.ndimage; measured
9.3 MiB traced) and the row."""


def _lesion_labelling_bytes(pred_labels: np.ndarray, ref_labels: np.ndarray,
                            tumor_box: Optional[Tuple[slice, ...]]) -> int:
    """Bytes :func:`detect_lesions` needs beside the two tumor masks: :data:`LESION_BYTES_PER_BOX_VOXEL` a voxel of
    ``tumor_box`` (the box holding both maps' tumor; None: neither has any) and :data:`LESION_BYTES_PER_OVERLAP_VOXEL`
    a voxel that is tumor in both maps."""
    if tumor_box is None:
        return 0
    overlap = np.count_nonzero(structure_mask(pred_labels[tumor_box], "tumor") &
                               structure_mask(ref_labels[tumor_box], "tumor"))
    return LESION_BYTES_PER_BOX_VOXEL * box_voxels(tumor_box) + LESION_BYTES_PER_OVERLAP_VOXEL * int(overlap)


def evaluate_case_memory_bytes(pred_labels: np.ndarray, ref_labels: np.ndarray, surface: bool = True,
                               probabilities: Optional[np.ndarray] = None, prob_structure: str = "tumor",
                               exact_surface: bool = True) -> int:
    """Bytes :func:`evaluate_case` may need beside its two ``(z, y, x)`` integer label maps (and ``probabilities``),
    called with the same ``surface``, ``probabilities`` and ``prob_structure``; also one case of ``evaluate`` (the
    metrics, then :meth:`~.roc.RocAccumulator.add_and_score`). Estimated from the boxes the work is done in:
    :data:`EVALUATE_CASE_FIXED_BYTES` plus the larger of

    * the metrics: :data:`EVALUATE_GRID_BYTES_PER_VOXEL` a grid voxel plus the largest (they run one after the other)
      of each structure's surface distances (with ``surface``; :func:`~.surface.surface_memory_bytes`: its masks'
      box and surface voxels), the lesion labelling (:data:`LESION_BYTES_PER_BOX_VOXEL` a voxel of the tumor
      masks' box, :data:`LESION_BYTES_PER_OVERLAP_VOXEL` a voxel that is tumor in both maps) and, when both maps hold
      tumor, the LiTS per-lesion scores (:data:`LESION_SCORING_BYTES_PER_BOX_VOXEL` a voxel of that box plus, with
      ``surface``, the tumor's surface distances);
    * the ROC (with ``probabilities``): ``prob_structure``'s reference mask, 1 byte a grid voxel, and
      :func:`~.roc.scoring_memory_bytes` (the positives lie in ``prob_structure``'s box).

    ``exact_surface=False`` counts every mask voxel as a surface voxel (:func:`~.surface.surface_memory_bytes`): an
    upper bound without the surfaces' erosions, which are most of this estimate's own time.

    A liver box of an eighth of the grid needs about 5 bytes a grid voxel, one as large as the grid 20, and a tumor
    filling the grid in both maps 32 (200 x 256 x 256 maps; peak RSS measured 4.6, 18.4 and 31.0)."""
    pred_labels, ref_labels = np.asarray(pred_labels), np.asarray(ref_labels)
    boxes, box_work = {}, 0
    for structure in STRUCTURES:
        pred_mask, ref_mask = structure_mask(pred_labels, structure), structure_mask(ref_labels, structure)
        box = boxes[structure] = union_bounding_box(pred_mask, ref_mask)
        surface_work = surface_memory_bytes(pred_mask, ref_mask, box, exact_surface) if surface else 0
        box_work = max(box_work, surface_work)
        if structure == "tumor" and box is not None and pred_mask[box].any() and ref_mask[box].any():
            # a lesion can be detected and scored only when both maps hold tumor
            box_work = max(box_work, LESION_SCORING_BYTES_PER_BOX_VOXEL * box_voxels(box) + surface_work)
        del pred_mask, ref_mask  # not held beside the next structure's
    box_work = max(box_work, _lesion_labelling_bytes(pred_labels, ref_labels, boxes["tumor"]))
    need = EVALUATE_GRID_BYTES_PER_VOXEL * int(ref_labels.size) + box_work
    if probabilities is not None:
        scoring = scoring_memory_bytes(np.asarray(probabilities), box_voxels(boxes[prob_structure]))
        need = max(need, int(ref_labels.size) + scoring)
    return EVALUATE_CASE_FIXED_BYTES + need


def evaluate_case(pred_labels: np.ndarray, ref_labels: np.ndarray, spacing_zyx: Sequence[float],
                  case: str = "", surface: bool = True, iou_threshold: float = 0.5, connectivity: int = 26,
                  probabilities: Optional[np.ndarray] = None,
                  prob_structure: str = "tumor") -> "OrderedDict[str, Any]":
    """Evaluate one case: two ``(z, y, x)`` 0/1/2 label maps on the same grid, spacing in mm ``(z, y, x)``.

    Returns one table row: ``case``, then per structure (liver, tumor) the keys of :func:`structure_row` (the tumor's
    of the case's whole tumor mask, not LiTS's per-lesion average),
    then lesion detection (``lesions_ref``, ``lesions_pred``, ``lesions_detected``, ``lesions_missed``,
    ``lesions_false_positive``, ``lesions_pred_no_overlap``, ``lesions_detected_groups``, and the case's own
    ``lesion_precision`` and ``lesion_recall``, 1.0 for a case without reference and predicted lesions: the summary
    pools the counts instead of averaging these, :func:`~.report.summarize_cases`; per size bin of
    :data:`LESION_SIZE_BINS`, ``lesions_size_<bin>_ref`` and ``lesions_size_<bin>_detected``: reference lesions by
    equivalent-sphere diameter, module docstring), LiTS's per-lesion scores
    (``lits_lesions_scored``, the case's detected groups, and ``lits_lesion_<key>`` for :data:`LITS_LESION_KEYS`, the
    surface ones only with ``surface``: the mean over those groups, NaN without one; module docstring), tumor burden
    (``tumor_burden_pred``, ``tumor_burden_ref``, ``tumor_burden_error``) and, when ``probabilities``
    (``(z, y, x)`` probability of ``prob_structure``: floats, or a ``255 x p`` integer map as stored, which gives
    the same AUC since it depends only on the scores' order; :func:`~.roc.roc_auc`) are given,
    ``roc_auc_<prob_structure>``.
    ``surface=False`` skips the surface distances (faster). A case with tumor on neither side has ``voe_tumor``,
    ``rvd_tumor``, ``iou_tumor``, ``precision_tumor``, ``sensitivity_tumor`` and the tumor surface distances NaN (not
    defined), ``dice_tumor`` and ``f1_tumor`` 1.0 (LiTS's Dice of such a case); so has the liver's a case with liver
    on neither side (:data:`UNDEFINED_WHEN_ABSENT_KEYS`).
    """
    pred_labels = mask_array(pred_labels, "evaluate_case")
    ref_labels = mask_array(ref_labels, "evaluate_case")
    if pred_labels.ndim != 3:
        raise LabelError(f"case '{case}': label maps must be 3-D (z, y, x); the prediction has "
                         f"{pred_labels.ndim} axes {tuple(pred_labels.shape)}.")
    if pred_labels.shape != ref_labels.shape:
        raise LabelError(f"case '{case}': prediction shape {pred_labels.shape} differs from reference shape "
                         f"{ref_labels.shape} (z, y, x); both must be on the same voxel grid.")
    if pred_labels.size == 0:  # scored Dice 1.0 for everything, inflating a summary
        raise LabelError(f"case '{case}': the label maps hold no voxels (shape {pred_labels.shape}); give the "
                         f"case's label maps.")
    check_label_values(pred_labels, f"case '{case}' prediction")
    check_label_values(ref_labels, f"case '{case}' reference")
    from .surface import _check_spacing

    try:
        spacing_zyx = _check_spacing(spacing_zyx, 3)  # (np.asarray(.., float) of an ImageGeometry: "float() argument")
    except (TypeError, ValueError) as exc:
        raise LabelError(f"case '{case}': {str(exc).rstrip('.')} (three positive numbers, (z, y, x) mm).") from None
    row: "OrderedDict[str, Any]" = OrderedDict(case=case)
    for structure in STRUCTURES:
        row.update(structure_row(structure_mask(pred_labels, structure), structure_mask(ref_labels, structure),
                                 spacing_zyx, structure, surface=surface))
    for structure in STRUCTURES:
        if row[f"voxels_pred_{structure}"] == 0 and row[f"voxels_ref_{structure}"] == 0:
            # the structure on neither side: VOE and RVD are not defined (as the surface distances), not perfect.
            # Counted as 0 they made the tumor means of a data set with tumor-free cases look better than its tumors
            # were segmented (the evaluate audit); Dice keeps LiTS's 1.0 for such a case. IoU goes with VOE (VOE = 1 -
            # IoU in every row and in the means), and precision and sensitivity are 0 / 0 (MONAI: NaN): at 1.0 they
            # lifted their means as a tumor-free case's lesion recall did (the metrics audit). The liver's too: a
            # reference without liver and an empty prediction scored liver VOE 0, RVD 0 and IoU 1 beside NaN surface
            # distances, where the same case's tumor columns were NaN (the metricsx audit)
            for key in UNDEFINED_WHEN_ABSENT_KEYS:
                row[f"{key}_{structure}"] = NAN
    # the whole tumor masks' scores, which a detected group holding every lesion takes instead of scoring them again
    whole_mask_scores = {key: row[f"{key}_tumor"] for key in LITS_LESION_OVERLAP_KEYS}
    if surface:
        whole_mask_scores.update((key, row[f"{key[:-len('_mm')]}_tumor_mm"]) for key in LITS_LESION_SURFACE_KEYS)
    detection = detect_lesions(pred_labels == 2, ref_labels == 2, iou_threshold, connectivity, spacing_zyx, surface,
                               whole_mask_scores)
    row["lesions_ref"] = detection.ref_lesions
    row["lesions_pred"] = detection.pred_lesions
    row["lesions_detected"] = detection.detected
    row["lesions_missed"] = detection.missed
    row["lesions_false_positive"] = detection.false_positive
    row["lesions_pred_no_overlap"] = detection.pred_no_overlap
    row["lesions_detected_groups"] = detection.detected_groups
    row["lesion_precision"] = detection.precision
    row["lesion_recall"] = detection.recall
    for key, _label, _low, _high in LESION_SIZE_BINS:  # reference lesions and those detected, per size bin
        binned = [lesion for lesion in detection.lesions if lesion["size_bin"] == key]
        row[f"lesions_size_{key}_ref"] = len(binned)
        row[f"lesions_size_{key}_detected"] = sum(1 for lesion in binned if lesion["detected"])
    row["lits_lesions_scored"] = len(detection.detected_scores)
    for key in LITS_LESION_KEYS if surface else LITS_LESION_OVERLAP_KEYS:  # mean over the case's detected lesions
        values = [score[key] for score in detection.detected_scores]
        row[f"lits_lesion_{key}"] = float(np.mean(values)) if values else NAN
    burden_pred, burden_ref = tumor_burden(pred_labels), tumor_burden(ref_labels)
    row["tumor_burden_pred"] = burden_pred
    row["tumor_burden_ref"] = burden_ref
    row["tumor_burden_error"] = burden_pred - burden_ref
    if probabilities is not None:
        probabilities = np.asarray(probabilities)
        if probabilities.shape != ref_labels.shape:
            raise LabelError(f"case '{case}': probability map shape {probabilities.shape} differs from the "
                             f"label map shape {ref_labels.shape} (z, y, x).")
        row[f"roc_auc_{prob_structure}"] = roc_auc(probabilities, structure_mask(ref_labels, prob_structure))
    return row


def check_same_grid(pred, ref, case: str = "", tol: float = 1e-3) -> None:
    """Raise :class:`LabelError` unless two ``CTVolume`` label maps share shape and geometry."""
    if pred.shape_zyx != ref.shape_zyx:
        raise LabelError(f"case '{case}': prediction {pred.source or ''} has shape {pred.shape_zyx} but the "
                         f"reference {ref.source or ''} has {ref.shape_zyx} (z, y, x); resample the prediction "
                         f"onto the reference grid first.")
    if not pred.geometry.almost_equal(ref.geometry, tol=tol):
        from ..io.labels import header_rounding_advice

        raise LabelError(f"case '{case}': prediction and reference geometries differ (prediction "
                         f"{pred.geometry.to_dict()}, reference {ref.geometry.to_dict()}); they must share "
                         f"spacing, origin and direction." + header_rounding_advice(pred, ref, "prediction"))


def global_dice(rows: Sequence[Dict[str, Any]], structure: str) -> float:
    """Dice of all cases pooled (sum of 2 TP over sum of |pred| + |ref| voxels), from rows made by
    :func:`evaluate_case`; NaN without rows, 1.0 if the structure is empty everywhere."""
    tp = pred = ref = 0
    n = 0
    for row in rows:
        key = f"voxels_tp_{structure}"
        if key not in row or row[key] in (None, ""):
            continue
        tp += int(float(row[key]))
        pred += int(float(row[f"voxels_pred_{structure}"]))
        ref += int(float(row[f"voxels_ref_{structure}"]))
        n += 1
    if n == 0:
        return NAN
    return 1.0 if pred + ref == 0 else 2.0 * tp / (pred + ref)

