"""DALU-Net (seed 002): attention U-Net + deep supervision + ConvLSTM over adjacent slices.

Input ``(N, C0 * num_slices, H, W)`` read **slice-major** (channel index = slice_index * C0 + c, the
preprocessing 2.5D layout); the output is the logits of the **centre** slice, ``(N, K, H, W)``.

* A shared 2D encoder (:class:`~LiverTumorSegLib.models.attention_unet.UNetEncoder`) runs on every
  slice (as a batch of N * num_slices images).
* At the bottleneck a ConvLSTM (``lstm_hidden`` channels, default bottleneck / 4) (:class:`~LiverTumorSegLib.models.layers.ConvLSTMCell`) runs over the
  slice sequence; with ``bidirectional=True`` (default) a second cell runs from the last slice back,
  so the centre's state has seen both neighbours. [centre bottleneck, forward h, backward h] at the
  centre index are fused by a 1x1 conv + BN + ReLU.
* The attention-gated decoder uses the centre slice's skip features; deep supervision as in
  ``attention_unet`` (training mode returns ``(logits, [aux, ...])``).

H, W multiple of ``2 ** (len(channels) - 1)`` avoids the internal padding.

Seed 002 names DALU-Net's parts (attention, deep supervision, ConvLSTM over image sequences) but not where the
ConvLSTM sits nor how many slices it sees; the bottleneck placement, the bidirectional cells and the
centre-slice skips are this implementation's choices, and it has no dense connections (the seed credits part of
DALU-Net's gain to "dense connectivity"). Attention gates and ConvLSTM as documented in
:class:`~LiverTumorSegLib.models.layers.AttentionGate` and :class:`~LiverTumorSegLib.models.layers.ConvLSTMCell`.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .attention_unet import AttentionDecoder, UNetEncoder, _check_channels
from .layers import ConvLSTMCell, ConvNormAct, check_input, crop_to_size, pad_to_multiple, run_conv_lstm, upsample_to

DEFAULT_OPTIONS = {"channels": (32, 64, 128, 256, 512), "num_slices": 3, "deep_supervision": True,
                   "bidirectional": True, "lstm_kernel": 3, "lstm_hidden": None, "dropout": 0.0, "norm": "batch"}


class DALUNet(nn.Module):
    """(N, C0 * S, H, W) slice-major -> (N, K, H, W) centre-slice logits (+ aux in DS training mode)."""

    def __init__(self, in_channels: int, num_classes: int, channels: Sequence[int], num_slices: int = 3,
                 deep_supervision: bool = True, bidirectional: bool = True, lstm_kernel: int = 3,
                 lstm_hidden: Optional[int] = None, dropout: float = 0.0, norm: str = "batch"):
        super().__init__()
        channels = _check_channels(channels)
        num_slices = int(num_slices)
        if num_slices < 1 or num_slices % 2 == 0:
            raise ValueError(f"num_slices must be odd and >= 1 (a centre slice), got {num_slices}")
        if in_channels % num_slices:
            raise ValueError(f"in_channels ({in_channels}) must be num_slices ({num_slices}) x channels per "
                             f"slice; it is not divisible")
        self.num_slices = num_slices
        self.slice_channels = in_channels // num_slices
        self.size_multiple = 2 ** (len(channels) - 1)
        self.deep_supervision = bool(deep_supervision)
        self.bidirectional = bool(bidirectional)
        self.encoder = UNetEncoder(self.slice_channels, channels, norm, dropout)
        bottleneck = channels[-1]
        hidden = int(lstm_hidden) if lstm_hidden else max(1, bottleneck // 4)
        self.lstm_forward = ConvLSTMCell(bottleneck, hidden, int(lstm_kernel))
        self.lstm_backward = ConvLSTMCell(bottleneck, hidden, int(lstm_kernel)) if self.bidirectional else None
        fused_in = bottleneck + hidden * (2 if self.bidirectional else 1)
        self.fuse = ConvNormAct(fused_in, bottleneck, 1, norm)
        self.decoder = AttentionDecoder(channels, num_classes, norm, self.deep_supervision)

    def _bottleneck(self, deepest: torch.Tensor, n: int) -> torch.Tensor:
        """``deepest`` (N * S, c, h, w) -> fused centre-slice bottleneck (N, c, h, w)."""
        seq = deepest.reshape(n, self.num_slices, *deepest.shape[1:])
        steps = [seq[:, s] for s in range(self.num_slices)]
        centre = self.num_slices // 2
        parts = [steps[centre], run_conv_lstm(self.lstm_forward, steps)[centre]]
        if self.lstm_backward is not None:
            backward = run_conv_lstm(self.lstm_backward, steps[::-1])
            parts.append(backward[self.num_slices - 1 - centre])
        return self.fuse(torch.cat(parts, dim=1))

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, Tuple[torch.Tensor, List[torch.Tensor]]]:
        check_input(x, self.num_slices * self.slice_channels)
        x, size = pad_to_multiple(x, self.size_multiple)
        n, _, h, w = x.shape
        slices = x.reshape(n * self.num_slices, self.slice_channels, h, w)  # slice-major channels
        feats = self.encoder(slices)
        centre = self.num_slices // 2
        skips = [f.reshape(n, self.num_slices, *f.shape[1:])[:, centre] for f in feats[:-1]]
        logits, aux = self.decoder(skips + [self._bottleneck(feats[-1], n)])
        logits = crop_to_size(logits, size)
        if self.training and self.deep_supervision:
            return logits, [crop_to_size(upsample_to(a, (h, w)), size) for a in aux]
        return logits


def build(in_channels: int, num_classes: int, **options) -> nn.Module:
    return DALUNet(in_channels, num_classes, **options)
