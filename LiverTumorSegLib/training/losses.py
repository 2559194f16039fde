"""Segmentation losses on logits ``(N, K, H, W)`` and integer targets ``(N, H, W)`` (values 0..K-1).

* ``ce``: cross-entropy, optionally class-weighted (``class_weights`` length K);
* ``dice``: soft Dice over the foreground classes (1..K-1), computed over the whole batch;
* ``dice_ce``: ``dice + ce``; ``focal``: focal loss (gamma 2), class weights as MONAI's FocalLoss applies them
  (the mean of weight x loss, not CE's weighted mean); ``dice_focal``.
:class:`DeepSupervisionLoss` applies a loss to the main output and to auxiliary outputs (upsampled to the
target size), with weights halving per level by default.

Target pixels of :data:`~.labels.IGNORE_LABEL` (an oblique CT's aligned grid outside its footprint) count in no
loss: CE and focal average over the other pixels, Dice sums over them; a batch without any other pixel gives 0. A
target without it takes the same computation as before, value for value.
"""
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .labels import IGNORE_LABEL


def _weights_tensor(class_weights: Optional[Sequence[float]], logits: torch.Tensor) -> Optional[torch.Tensor]:
    if class_weights is None:
        return None
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
    """Mean over pixels (``valid``, bool ``(N, H, W)``: over those) of ``-w_t (1 - p_t)^gamma log p_t``."""
    if valid is not None:
        target = torch.where(valid, target.long(), torch.zeros_like(target, dtype=torch.long))
    logp = F.log_softmax(logits.float(), dim=1)
    logp_t = logp.gather(1, target.long().unsqueeze(1)).squeeze(1)
    loss = -((1.0 - logp_t.exp()) ** gamma) * logp_t
    w = _weights_tensor(class_weights, logits)
    if w is not None:
        loss = loss * w[target.long()]
    return loss.mean() if valid is None else loss[valid].mean()


class SegmentationLoss(nn.Module):
    """One of ``ce``, ``dice``, ``dice_ce``, ``focal``, ``dice_focal`` (see module docstring)."""

    def __init__(self, name: str = "dice_ce", class_weights: Optional[Sequence[float]] = None) -> None:
        super().__init__()
        if name not in ("ce", "dice", "dice_ce", "focal", "dice_focal"):
            raise InputError(f"Unknown loss '{name}'; use ce, dice, dice_ce, focal or dice_focal.")
        self.name = name
        self.class_weights = list(class_weights) if class_weights is not None else None

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ignored = target == IGNORE_LABEL
        if bool(ignored.any()):
            return self._with_ignored(logits, target, ~ignored)
        total = logits.new_zeros((), dtype=torch.float32)
        if self.name in ("ce", "dice_ce"):
            total = total + F.cross_entropy(logits.float(), target.long(),
                                            weight=_weights_tensor(self.class_weights, logits))
        if self.name in ("focal", "dice_focal"):
            total = total + focal_loss(logits, target, class_weights=self.class_weights)
        if self.name in ("dice", "dice_ce", "dice_focal"):
            total = total + soft_dice_loss(logits, target)
        return total

    def _with_ignored(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` of a target holding :data:`~.labels.IGNORE_LABEL`: only ``valid`` pixels count; none
        valid: 0 (with the logits' graph, so that every rank's backward still runs)."""
        if not bool(valid.any()):
            return logits.float().sum() * 0.0
        total = logits.new_zeros((), dtype=torch.float32)
        if self.name in ("ce", "dice_ce"):
            total = total + F.cross_entropy(logits.float(), target.long(),
                                            weight=_weights_tensor(self.class_weights, logits),
                                            ignore_index=IGNORE_LABEL)
        if self.name in ("focal", "dice_focal"):
            total = total + focal_loss(logits, target, class_weights=self.class_weights, valid=valid)
        if self.name in ("dice", "dice_ce", "dice_focal"):
            total = total + soft_dice_loss(logits, target, valid=valid)
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
        total = logits.new_zeros((), dtype=torch.float32)
        for w, out in zip(weights, outputs):
            if w == 0:
                continue
            if out.shape[-2:] != target.shape[-2:]:
                out = F.interpolate(out.float(), size=tuple(target.shape[-2:]), mode="bilinear", align_corners=False)
            total = total + w * self.base(out, target)
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
