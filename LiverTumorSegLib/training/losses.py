"""Segmentation losses on logits ``(N, K, H, W)`` and integer targets ``(N, H, W)`` (values 0..K-1).

* ``ce``: cross-entropy, optionally class-weighted (``class_weights`` length K);
* ``dice``: soft Dice over the foreground classes (1..K-1), computed over the whole batch;
* ``dice_ce``: ``dice + ce``; ``focal``: focal loss (gamma 2), class weights as MONAI's FocalLoss applies them
  (the mean of weight x loss, not CE's weighted mean); ``dice_focal``.
* ``lesion_weight`` (any of them, default 0): adds that times :func:`lesion_dice_loss`, a per-lesion Dice of the
  tumor class ("blob loss", Kofler et al. 2023) that weighs every tumor as much as any other, whatever its size;
  ``lesion_min_pixels`` leaves its slivers (components of fewer pixels) out of it, ``lesion_average`` chooses the
  mean over the batch's lesions or over each slice's first (:data:`LESION_AVERAGES`).
:class:`DeepSupervisionLoss` applies a loss to the main output and to auxiliary outputs (upsampled to the
target size), with weights halving per level by default.

Target pixels of :data:`~.labels.IGNORE_LABEL` (an oblique CT's aligned grid outside its footprint) count in no
loss: CE and focal average over the other pixels, Dice sums over them; a batch without any other pixel gives 0
(zero gradient). A target without it scores as the plain losses do, value for value. :class:`SegmentationLoss` reads
(without ``lesion_weight``) no tensor's value on the host (on CUDA each such read waits for the GPU): it checked for ignored pixels with
``bool(...)`` and copied the class weights to the GPU on every call.
"""
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .config import LESION_AVERAGES
from .labels import IGNORE_LABEL


def _ce_with_zero_weights(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                          valid: torch.Tensor) -> torch.Tensor:
    """Weighted cross-entropy (the weighted mean F.cross_entropy gives: sum of w[t] x nll over the valid pixels
    divided by the sum of their w[t]) for class weights of which some are 0: a batch whose valid pixels all belong to
    classes of weight 0 (a patch of background with ``class_weights: [0, 1, 1]``) gave 0/0, NaN, and ended the run as
    "diverged", and NaN gradients even where masked. Such a batch gives 0 here, with zero gradients."""
    nll = F.cross_entropy(logits.float(), target.long(), reduction="none", ignore_index=IGNORE_LABEL)
    pixel_weights = weights[torch.where(valid, target, torch.zeros_like(target)).long()] * valid
    return (pixel_weights * nll).sum() / pixel_weights.sum().clamp_min(torch.finfo(torch.float32).tiny)


def _weights_tensor(class_weights: Optional[Sequence[float]], logits: torch.Tensor) -> Optional[torch.Tensor]:
    """``class_weights`` (a sequence, or a tensor: used as it is when already on the logits' device) as a float32
    tensor on the logits' device. From a sequence that is a blocking copy to the GPU (a host sync on CUDA):
    :class:`SegmentationLoss` makes it once per device."""
    if class_weights is None:
        return None
    if isinstance(class_weights, torch.Tensor):
        w = class_weights.to(device=logits.device, dtype=torch.float32)
    else:
        w = torch.as_tensor(list(class_weights), dtype=torch.float32, device=logits.device)
    if w.numel() != logits.shape[1]:
        raise InputError(f"class_weights has {w.numel()} values but the model predicts {logits.shape[1]} classes.")
    return w


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5,
                   include_background: bool = False, valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``1 - mean_k dice_k`` of softmax probabilities, summed over batch and pixels per class (MONAI's DiceLoss
    with ``batch=True``, ``smooth_nr = smooth_dr = smooth``).

    A class absent from the target scores Dice near 1 only while its probability, summed over the whole batch,
    stays well below ``smooth``; any real prediction gives it about 0 (a perfect prediction of a tumor-free
    batch at logit margin 10: loss 0.5, at 30: 0). So in a tumor-free batch this term pushes the tumor
    probability towards 0 everywhere.

    ``valid`` (bool ``(N, H, W)``): only those pixels count (the others' target may be any value).
    """
    num_classes = logits.shape[1]
    probs = torch.softmax(logits.float(), dim=1)
    if valid is not None:
        target = torch.where(valid, target.long(), torch.zeros_like(target, dtype=torch.long))
    onehot = F.one_hot(target.long(), num_classes).permute(0, 3, 1, 2).float()
    if valid is not None:
        keep = valid.unsqueeze(1).float()
        probs, onehot = probs * keep, onehot * keep
    start = 0 if include_background else 1
    probs, onehot = probs[:, start:], onehot[:, start:]
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2.0 * inter + smooth) / (denom + smooth)
    return 1.0 - dice.mean()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               class_weights: Optional[Sequence[float]] = None, valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean over pixels (``valid``, bool ``(N, H, W)``: over those; none: 0) of ``-w_t (1 - p_t)^gamma log p_t``.
    ``class_weights``: a sequence or a tensor."""
    if valid is not None:
        target = torch.where(valid, target.long(), torch.zeros_like(target, dtype=torch.long))
    logp = F.log_softmax(logits.float(), dim=1)
    logp_t = logp.gather(1, target.long().unsqueeze(1)).squeeze(1)
    loss = -((1.0 - logp_t.exp()) ** gamma) * logp_t
    w = _weights_tensor(class_weights, logits)
    if w is not None:
        loss = loss * w[target.long()]
    if valid is None:
        return loss.mean()
    # the mean over the valid pixels without a host sync (boolean indexing waits for the GPU to count them): the
    # mean over all pixels of the loss zeroed where not valid, scaled by all / valid (exactly 1 when every pixel is
    # valid: the plain mean, value for value); none valid: 0
    return torch.where(valid, loss, loss.new_zeros(())).mean() * (loss.numel() / valid.sum().clamp_min(1).float())


TUMOR_CLASS = 2
"""The tumor's label (and class channel) in this library's targets: background 0, liver 1, tumor 2."""


def tumor_components(target: torch.Tensor, tumor_class: int = TUMOR_CLASS) -> np.ndarray:
    """The tumor's connected components of each slice of ``target`` ``(N, H, W)``, 8-connected in-plane (the
    samples are 2-D): an int32 ``(N, H, W)`` array numbering the components 1..M over the whole batch (0 elsewhere).
    Read on the host (scipy), a copy of the target's bytes: on CUDA one wait for the GPU per call."""
    from scipy import ndimage

    tumor = (target == tumor_class).cpu().numpy()
    components = np.zeros(tumor.shape, dtype=np.int32)
    count = 0
    for n in range(tumor.shape[0]):
        if tumor[n].any():
            labelled, found = ndimage.label(tumor[n], structure=np.ones((3, 3), dtype=bool))
            components[n] = np.where(labelled > 0, labelled + count, 0)
            count += int(found)
    return components


def scored_lesions(components: np.ndarray, min_pixels: int = 0) -> np.ndarray:
    """The components of :func:`tumor_components` (int ``(N, H, W)``, 1..M, 0 elsewhere) that the per-lesion term
    scores, renumbered 1..K (int64, same shape): those of at least ``min_pixels`` pixels (pixels of the grid the
    components are on, the network's). A smaller one (a lesion's top or bottom slice, a patch edge cutting one)
    becomes -1: scored as no lesion, and no false positive of its slice's other lesions either. ``min_pixels`` 0
    or 1 keeps every component, numbered as they were."""
    labels = components.astype(np.int64)
    count = int(labels.max()) if labels.size else 0
    if min_pixels <= 1 or count == 0:
        return labels
    sizes = np.bincount(labels.reshape(-1), minlength=count + 1)
    kept = sizes >= min_pixels
    kept[0] = False
    renumber = np.full(count + 1, -1, dtype=np.int64)  # a component too small: -1
    renumber[0] = 0
    renumber[kept] = np.arange(1, int(kept.sum()) + 1)
    return renumber[labels]


def _lesion_weights(slice_of: np.ndarray, average: str) -> np.ndarray:
    """float32 ``(K,)`` weights, summing to 1, of the K scored lesions' Dice (``slice_of``: each lesion's sample
    index in the batch, int ``(K,)``) in the mean ``average`` (:data:`LESION_AVERAGES`) takes: ``lesion``, 1/K
    each; ``image``, 1 / (the lesion's slice's lesion count x the number of slices holding one)."""
    if average == "lesion":
        return np.full(slice_of.shape, 1.0 / slice_of.size, dtype=np.float32)
    per_slice = np.bincount(slice_of)
    slices = np.count_nonzero(per_slice)
    return (1.0 / (per_slice[slice_of] * slices)).astype(np.float32)


def lesion_dice_loss(logits: torch.Tensor, target: torch.Tensor, valid: Optional[torch.Tensor] = None,
                     smooth: float = 1e-5, tumor_class: int = TUMOR_CLASS,
                     components: Optional[np.ndarray] = None, min_pixels: int = 0,
                     average: str = "lesion") -> torch.Tensor:
    """``1 - mean_i dice_i`` over the target's tumor components ``i`` (:func:`tumor_components`, each slice's own):
    ``dice_i`` is the soft Dice of the softmax tumor probability against component ``i`` on its slice with the other
    tumor components of that slice left out, so a lesion is scored alone (the "blob loss" of Kofler et al., 2023,
    arXiv:2205.08209, with a Dice term). Every lesion weighs the same: a 5 mm lesion of 10 pixels moves this term as
    much as a 60 mm one of 1,200, where the whole-batch Dice of :func:`soft_dice_loss` weighs it by its pixels.
    Probability outside every lesion on the slice counts as a false positive of each of its lesions.

    ``min_pixels``: a component of fewer pixels (of the ``(H, W)`` grid: the network's) is not scored, and its
    pixels are no false positive of its slice's other lesions (:func:`scored_lesions`); 0 scores every one.
    ``average`` (:data:`LESION_AVERAGES`): ``lesion``, the mean over the batch's scored lesions; ``image``, the mean
    over each slice's, then over the slices holding one.

    ``valid`` (bool ``(N, H, W)``): only those pixels count. A batch without a scored lesion gives 0 (with the
    logits' graph and a zero gradient). Values in 0..1. ``components``: :func:`tumor_components` of ``target`` when
    the caller has them (:class:`DeepSupervisionLoss` finds them once for all its outputs); else found here."""
    if average not in LESION_AVERAGES:
        raise InputError(f"Unknown lesion average '{average}'; use {' or '.join(LESION_AVERAGES)}.")
    if components is None:
        components = tumor_components(target, tumor_class)
    labels = scored_lesions(components, int(min_pixels))  # (N, H, W): 1..K scored, -1 left out, 0 elsewhere
    count = int(labels.max()) if labels.size else 0
    if count == 0:
        return logits.sum() * 0.0
    # Per-lesion sums over the batch's pixels, without an (M, H, W) copy per lesion (that took 1.5 GB for a
    # validation batch of 16 whole 512 x 512 slices with 20 lesions each): the pixels each lesion's Dice counts
    # are its own (all valid: tumor is no ignored label) and its slice's valid pixels outside every lesion.
    flat = labels.reshape(-1)
    if labels.min() < 0:  # left-out pixels go to bin 0 of the per-lesion sums, the one dropped
        flat = np.maximum(flat, 0)
    comp = torch.from_numpy(flat).to(logits.device)  # (N*H*W,)
    # the slice each scored lesion lies on, read on the host array (no device sync)
    first = np.zeros(count + 1, dtype=np.int64)
    first[labels[labels > 0]] = np.nonzero(labels > 0)[0]
    slice_of = first[1:]  # (K,)
    tumor_p = torch.softmax(logits.float(), dim=1)[:, tumor_class]  # (N, H, W)
    background = tumor_p * torch.from_numpy(labels == 0).to(logits.device)  # outside every lesion, scored or not
    if valid is not None:
        background = background * valid
    background_sum = background.sum((1, 2))  # (N,)
    inter = tumor_p.new_zeros(count + 1).index_add(0, comp, tumor_p.reshape(-1))[1:]  # (K,)
    size = torch.from_numpy(np.bincount(flat, minlength=count + 1)[1:].astype(np.float32))
    denom = background_sum[torch.from_numpy(slice_of).to(logits.device)] + inter + size.to(logits.device)
    dice = (2.0 * inter + smooth) / (denom + smooth)
    if average == "lesion":
        return 1.0 - dice.mean()  # the mean as before the option, value for value
    weights = torch.from_numpy(_lesion_weights(slice_of, average)).to(logits.device)
    return 1.0 - (dice * weights).sum()


class SegmentationLoss(nn.Module):
    """One of ``ce``, ``dice``, ``dice_ce``, ``focal``, ``dice_focal`` (see module docstring), plus
    ``lesion_weight`` times :func:`lesion_dice_loss` when that is above 0 (0: the loss alone, as before), with its
    ``min_pixels`` = ``lesion_min_pixels`` (network-grid pixels) and ``average`` = ``lesion_average``."""

    def __init__(self, name: str = "dice_ce", class_weights: Optional[Sequence[float]] = None,
                 lesion_weight: float = 0.0, lesion_min_pixels: int = 0, lesion_average: str = "lesion") -> None:
        super().__init__()
        if name not in ("ce", "dice", "dice_ce", "focal", "dice_focal"):
            raise InputError(f"Unknown loss '{name}'; use ce, dice, dice_ce, focal or dice_focal.")
        if lesion_average not in LESION_AVERAGES:
            raise InputError(f"Unknown lesion average '{lesion_average}'; use {' or '.join(LESION_AVERAGES)}.")
        self.name = name
        self.lesion_weight = float(lesion_weight)
        self.lesion_min_pixels = int(lesion_min_pixels)
        self.lesion_average = lesion_average
        self.class_weights = list(class_weights) if class_weights is not None else None
        self._weights_on: Dict[str, torch.Tensor] = {}  # class_weights per device, copied there once

    def _weights(self, logits: torch.Tensor) -> Optional[torch.Tensor]:
        """:attr:`class_weights` on the logits' device: copied there on the first call (a blocking copy to the GPU
        on every call was a host sync per step)."""
        if self.class_weights is None:
            return None
        key = str(logits.device)
        if key not in self._weights_on:
            self._weights_on[key] = _weights_tensor(self.class_weights, logits)
        return self._weights_on[key]

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                components: Optional[np.ndarray] = None) -> torch.Tensor:
        """The loss of ``logits`` against ``target``, its :data:`~.labels.IGNORE_LABEL` pixels left out, in one
        computation whatever the target holds: no host sync (it asked the GPU whether any pixel was ignored, and
        whether any was not, on every call: two waits per step on CUDA). A target without ignored pixels gives the
        value the plain losses give; one wholly ignored gives 0, with the logits' graph and a zero gradient (every
        rank's backward still runs). ``components``: the target's :func:`tumor_components` for the lesion term, when
        the caller has them."""
        valid = target != IGNORE_LABEL
        total = logits.new_zeros((), dtype=torch.float32)
        if self.name in ("ce", "dice_ce"):
            weights = self._weights(logits)
            if self.class_weights is not None and min(float(w) for w in self.class_weights) == 0.0:
                total = total + _ce_with_zero_weights(logits, target, weights, valid)
            else:
                ce = F.cross_entropy(logits.float(), target.long(), weight=weights, ignore_index=IGNORE_LABEL)
                # wholly ignored: 0/0 in the mean; where() takes 0 and passes no gradient back to it
                total = total + torch.where(valid.any(), ce, ce.new_zeros(()))
        if self.name in ("focal", "dice_focal"):
            total = total + focal_loss(logits, target, class_weights=self._weights(logits), valid=valid)
        if self.name in ("dice", "dice_ce", "dice_focal"):
            total = total + soft_dice_loss(logits, target, valid=valid)  # wholly ignored: (0 + s) / (0 + s), 0
        if self.lesion_weight > 0:  # reads the target on the host (its components): one wait per call on CUDA
            total = total + self.lesion_weight * lesion_dice_loss(
                logits, target, valid=valid, components=components, min_pixels=self.lesion_min_pixels,
                average=self.lesion_average)
        return total


class DeepSupervisionLoss(nn.Module):
    """``w0 * loss(main) + sum_i w_i * loss(upsample(aux_i))``, weights normalised to sum 1.

    Default weights: ``1, 1/2, 1/4, ...`` for the main output and then the auxiliary ones in the order the model
    gives them: finest first for this library's models (nnU-Net's weighting: the coarser, the less). Auxiliary
    logits are bilinearly upsampled to the target size.
    """

    def __init__(self, base: nn.Module, weights: Optional[Sequence[float]] = None) -> None:
        super().__init__()
        self.base = base
        self.weights = list(weights) if weights is not None else None

    def level_weights(self, levels: int) -> List[float]:
        w = list(self.weights) if self.weights is not None else [0.5 ** i for i in range(levels)]  # forward checked
        s = sum(w)
        return [v / s for v in w] if s > 0 else [1.0] + [0.0] * (levels - 1)

    def forward(self, logits: torch.Tensor, aux: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        outputs = [logits] + list(aux)
        if self.weights is not None and len(self.weights) != len(outputs):
            # [0, 1] for a network without auxiliary heads trained the main output with weight 1; extra weights
            # were dropped without a word
            raise InputError(f"deep_supervision_weights has {len(self.weights)} value(s) but the network gives "
                             f"{len(outputs)} output(s) (the main one first, then its auxiliary heads); give one "
                             f"weight per output, or leave it out for the default 1, 1/2, 1/4, ...")
        weights = self.level_weights(len(outputs))
        # every output is scored against the same target: its tumor components (the lesion term's, read on the
        # host) are found once, not once per output (each a label pass and, on CUDA, a wait for the GPU)
        shared: Dict[str, Any] = {}
        if getattr(self.base, "lesion_weight", 0) > 0 and sum(1 for w in weights if w != 0) > 1:
            shared["components"] = tumor_components(target)
        total = logits.new_zeros((), dtype=torch.float32)
        for w, out in zip(weights, outputs):
            if w == 0:
                continue
            if out.shape[-2:] != target.shape[-2:]:
                out = F.interpolate(out.float(), size=tuple(target.shape[-2:]), mode="bilinear", align_corners=False)
            total = total + w * self.base(out, target, **shared)
        return total


def dice_per_class(pred: torch.Tensor, target: torch.Tensor) -> dict:
    """Hard liver (label 1 or 2) and tumor (label == 2) Dice counts of integer maps: intersections and sums,
    for accumulating over a whole volume (a target pixel of :data:`~.labels.IGNORE_LABEL` counts in neither map).
    Returns ``{"liver": (inter, sum), "tumor": (inter, sum)}``."""
    out = {}
    valid = target != IGNORE_LABEL
    for name, fn in (("liver", lambda t: (t == 1) | (t == 2)), ("tumor", lambda t: t == 2)):
        a, b = fn(pred) & valid, fn(target)
        out[name] = (float((a & b).sum()), float(a.sum() + b.sum()))
    return out
