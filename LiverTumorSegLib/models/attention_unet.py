"""Attention U-Net (Oktay et al. 2018; seed 002 "AU-Net"), optional deep supervision ("AU-Net w/ DS").

Encoder: per level a double conv3x3+BN+ReLU block (``channels`` per level, default 32..512), 2x2
max-pool between levels. Decoder, deepest first: 2x2 transposed conv up -> an additive attention gate
(:class:`~LiverTumorSegLib.models.layers.AttentionGate`) weights the skip features using the coarser
decoder features as gating signal -> concat [gated skip, upsampled] -> double conv. 1x1 classifier.

The gate follows Oktay et al.'s additive formula with two differences (alpha computed at the skip's
resolution, BatchNorm inside the gate): see :class:`~LiverTumorSegLib.models.layers.AttentionGate`. All
convolutions use same padding (the output has the input's H, W), unlike seed 002's valid-padding U-Net.

``deep_supervision=True`` adds a 1x1 conv head on every decoder level except the last; in **training
mode** the forward returns ``(logits, [aux, ...])`` (aux finest first, each bilinearly resized to
(N, K, H, W)); in eval mode only ``logits``. ``len(channels) - 1`` pools -> H, W multiple of
``2 ** (len(channels) - 1)`` (16 by default) avoids the internal padding.
"""
from typing import List, Sequence, Tuple, Union

import torch
from torch import nn

from .layers import AttentionGate, DoubleConv, check_input, crop_to_size, pad_to_multiple, upsample_to

DEFAULT_OPTIONS = {"channels": (32, 64, 128, 256, 512), "deep_supervision": False, "dropout": 0.0,
                   "norm": "batch"}


def _check_channels(channels: Sequence[int]) -> List[int]:
    channels = [int(c) for c in channels]
    if len(channels) < 2 or min(channels) < 1:
        raise ValueError(f"channels needs at least 2 positive entries, got {channels}")
    return channels


class UNetEncoder(nn.Module):
    """Double-conv blocks with max-pools; ``forward`` returns the features of every level, finest first."""

    def __init__(self, in_channels: int, channels: Sequence[int], norm: str = "batch", dropout: float = 0.0):
        super().__init__()
        self.blocks = nn.ModuleList()
        prev = in_channels
        for i, ch in enumerate(channels):
            last = i == len(channels) - 1
            self.blocks.append(DoubleConv(prev, ch, norm, dropout if last else 0.0))
            prev = ch
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x if i == 0 else self.pool(x))
            feats.append(x)
        return feats


class AttentionDecoder(nn.Module):
    """Attention-gated U-Net decoder with optional deep-supervision heads.

    ``forward(feats)`` with ``feats`` finest first (as :class:`UNetEncoder` returns) -> ``(logits, aux)``,
    ``aux`` = per-level logits of the coarser decoder levels (finest first, at their own resolution, so that
    :class:`~LiverTumorSegLib.training.losses.DeepSupervisionLoss`'s halving weights fall with resolution as in
    nnU-Net; empty without deep supervision).
    """

    def __init__(self, channels: Sequence[int], num_classes: int, norm: str = "batch",
                 deep_supervision: bool = False):
        super().__init__()
        self.ups = nn.ModuleList()
        self.gates = nn.ModuleList()
        self.blocks = nn.ModuleList()
        self.aux_heads = nn.ModuleList()
        for level in reversed(range(len(channels) - 1)):
            coarse, fine = channels[level + 1], channels[level]
            self.ups.append(nn.ConvTranspose2d(coarse, fine, 2, 2))
            self.gates.append(AttentionGate(fine, coarse, max(1, fine // 2)))
            self.blocks.append(DoubleConv(2 * fine, fine, norm))
            if deep_supervision and level > 0:
                self.aux_heads.append(nn.Conv2d(fine, num_classes, 1))
        self.classifier = nn.Conv2d(channels[0], num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        y = feats[-1]
        aux = []
        skips = list(reversed(feats[:-1]))
        for i, (up, gate, block, skip) in enumerate(zip(self.ups, self.gates, self.blocks, skips)):
            gated = gate(skip, y)
            y = block(torch.cat([gated, up(y)], dim=1))
            if i < len(self.aux_heads):
                aux.append(self.aux_heads[i](y))
        return self.classifier(y), aux[::-1]  # finest first: the loss weights halve with each level down


class AttentionUNet(nn.Module):
    """(N, C, H, W) -> (N, K, H, W) logits (training with deep supervision: ``(logits, [aux...])``)."""

    def __init__(self, in_channels: int, num_classes: int, channels: Sequence[int], deep_supervision: bool = False,
                 dropout: float = 0.0, norm: str = "batch"):
        super().__init__()
        channels = _check_channels(channels)
        self.in_channels = int(in_channels)
        self.size_multiple = 2 ** (len(channels) - 1)
        self.deep_supervision = bool(deep_supervision)
        self.encoder = UNetEncoder(in_channels, channels, norm, dropout)
        self.decoder = AttentionDecoder(channels, num_classes, norm, self.deep_supervision)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, Tuple[torch.Tensor, List[torch.Tensor]]]:
        check_input(x, self.in_channels)
        x, size = pad_to_multiple(x, self.size_multiple)
        logits, aux = self.decoder(self.encoder(x))
        logits = crop_to_size(logits, size)
        if self.training and self.deep_supervision:
            return logits, [crop_to_size(upsample_to(a, x.shape[-2:]), size) for a in aux]
        return logits


def build(in_channels: int, num_classes: int, **options) -> nn.Module:
    return AttentionUNet(in_channels, num_classes, **options)
