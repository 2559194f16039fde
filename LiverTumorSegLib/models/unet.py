"""U-Net (seeds 000, 001): MONAI's residual U-Net, 2D, with internal padding to any H, W.

Default: channels (16, 32, 64, 128, 256), strides None = (2, 2, 2, 2) (2 per level) -> H, W multiple of 16 avoids padding.
``num_res_units=0`` gives plain (non-residual) blocks; either way MONAI's U-Net downsamples with strided
convolutions (no max-pooling) and has no extra convolution at full resolution, unlike the original U-Net and
the seeds' U-Nets (seed 000: "convolutional and pooling layers"; seed 001: "reduces spatial dimensions with
max-pooling").
"""
from typing import Optional, Sequence

import torch
from torch import nn

from .layers import check_input, crop_to_size, pad_to_multiple

DEFAULT_OPTIONS = {
    "channels": (16, 32, 64, 128, 256),
    "strides": None,  # None: 2 per level, (2,) * (len(channels) - 1)
    "num_res_units": 2,
    "dropout": 0.0,
    "norm": "instance",
    "act": "PRELU",
}


ELEMENTWISE_ACTIVATIONS = ("PRELU", "RELU", "LEAKYRELU", "ELU", "SELU", "CELU", "GELU", "SWISH", "MEMSWISH", "MISH",
                           "RELU6", "TANH", "SIGMOID")
"""MONAI activation names the U-Net's ``act`` takes: each acts on every value alone. MONAI's factory also has GEGLU
(halves the last axis: the first forward failed, reported as an internal error), SOFTMAX and LOGSOFTMAX (normalise
across an axis: no hidden-layer activation)."""


class PaddedUNet(nn.Module):
    """MONAI ``UNet(spatial_dims=2)`` wrapped so any (H, W) works: (N, C, H, W) -> (N, K, H, W) logits."""

    def __init__(self, in_channels: int, num_classes: int, channels: Sequence[int], strides: Optional[Sequence[int]],
                 num_res_units: int, dropout: float, norm: str, act: str):
        super().__init__()
        from .monai_import import monai_unet_class

        UNet = monai_unet_class()

        if strides is None:
            strides = (2,) * (len(channels) - 1)
        if len(channels) < 2 or len(strides) != len(channels) - 1:
            raise ValueError(f"need len(strides) == len(channels) - 1 >= 1, got channels={list(channels)}, "
                             f"strides={list(strides)}")
        if str(norm).lower() not in ("instance", "batch"):
            raise ValueError(f"norm must be 'instance' or 'batch' for MONAI's U-Net, got {norm!r} (MONAI's group, "
                             f"layer and local-response norms need arguments this option cannot pass)")
        if str(act).upper() not in ELEMENTWISE_ACTIVATIONS:
            raise ValueError(f"act must be one of {', '.join(ELEMENTWISE_ACTIVATIONS)} (MONAI's activations that act "
                             f"on each value alone), got {act!r}")
        self.in_channels = int(in_channels)
        self.size_multiple = 1
        for s in strides:
            self.size_multiple *= int(s)
        self.net = UNet(spatial_dims=2, in_channels=in_channels, out_channels=num_classes,
                        channels=tuple(int(c) for c in channels), strides=tuple(int(s) for s in strides),
                        num_res_units=int(num_res_units), dropout=float(dropout), norm=str(norm).upper(),
                        act=str(act).upper())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels)
        x, size = pad_to_multiple(x, self.size_multiple)
        return crop_to_size(self.net(x), size)


def build(in_channels: int, num_classes: int, **options) -> nn.Module:
    return PaddedUNet(in_channels, num_classes, **options)
