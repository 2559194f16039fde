"""SegNet (Badrinarayanan et al. 2017; seed 000): VGG16 encoder, decoder upsampling with max-pool indices.

Encoder: 13 conv3x3 + BN + ReLU in 5 blocks of (2, 2, 3, 3, 3) convs with 64, 128, 256, 512, 512
channels (x ``width``), each block followed by ``MaxPool2d(2, 2, return_indices=True)``. Decoder: the
mirror image; each block starts with ``MaxUnpool2d`` fed the indices of the matching encoder pool (no
learned upsampling, no skip features), then its convs; a final 1x1 conv gives the class logits.
Five pools -> H, W multiple of 32 avoids the internal padding.

Seed 000 describes both "non-linear upsampling using pooling indices that are calculated during the max-pooling
stage of the matching encoder" and "skip connections between corresponding encoder and decoder layers"; here the
pooling indices are the only encoder-to-decoder link (the original SegNet's design), no encoder features are passed.
"""
from typing import List

import torch
from torch import nn

from .layers import ConvNormAct, check_input, crop_to_size, pad_to_multiple, scaled_channels

DEFAULT_OPTIONS = {"width": 1.0, "norm": "batch", "dropout": 0.0}

VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


class IndexUnpool2d(nn.MaxUnpool2d):
    """``MaxUnpool2d(2, 2)`` for inputs whose pooled size is exactly half (H, W even): each value of
    ``x (N, C, h, w)`` goes to the flat position ``indices`` (as returned by ``MaxPool2d(return_indices=True)``)
    of a zero ``(N, C, 2h, 2w)`` output. Same result as ``F.max_unpool2d``, written as a scatter so that it
    traces to ONNX (torch's unpool checks its output size with traced tensors and fails to export)."""

    def __init__(self) -> None:
        super().__init__(2, 2)

    def forward(self, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        n, c, h, w = x.shape
        out = x.new_zeros((n, c, 4 * h * w))
        out = out.scatter(2, indices.reshape(n, c, h * w), x.reshape(n, c, h * w))
        return out.reshape(n, c, 2 * h, 2 * w)


class SegNet(nn.Module):
    """(N, C, H, W) -> (N, K, H, W) logits; any H, W (padded internally to a multiple of 32)."""

    size_multiple = 32

    def __init__(self, in_channels: int, num_classes: int, width: float = 1.0, norm: str = "batch",
                 dropout: float = 0.0):
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        self.in_channels = int(in_channels)
        widths = [scaled_channels(c, width) for c, _ in VGG16_BLOCKS]
        self.encoder = nn.ModuleList()
        prev = in_channels
        for out, (_, n_convs) in zip(widths, VGG16_BLOCKS):
            layers = [ConvNormAct(prev if i == 0 else out, out, 3, norm) for i in range(n_convs)]
            self.encoder.append(nn.Sequential(*layers))
            prev = out
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = IndexUnpool2d()
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        # decoder block i mirrors encoder block (4 - i): same conv count; channels go back down the ladder
        self.decoder = nn.ModuleList()
        for level in reversed(range(len(VGG16_BLOCKS))):
            n_convs = VGG16_BLOCKS[level][1]
            ch = widths[level]
            out_last = widths[level - 1] if level > 0 else widths[0]
            layers = [ConvNormAct(ch, ch if i < n_convs - 1 else out_last, 3, norm) for i in range(n_convs)]
            self.decoder.append(nn.Sequential(*layers))
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels)
        x, size = pad_to_multiple(x, self.size_multiple)
        indices: List[torch.Tensor] = []
        for block in self.encoder:
            x = block(x)
            x, idx = self.pool(x)
            indices.append(idx)
        x = self.dropout(x)
        # H, W are multiples of 32, so each unpool's output (2x its input) is exactly the size its pool saw
        for block, idx in zip(self.decoder, reversed(indices)):
            x = self.unpool(x, idx)
            x = block(x)
        return crop_to_size(self.classifier(x), size)


def build(in_channels: int, num_classes: int, **options) -> nn.Module:
    return SegNet(in_channels, num_classes, **options)
