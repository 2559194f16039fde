"""CDNN-AlexNet (seed 004): AlexNet as a fully convolutional network (Long et al. FCN style).

Encoder (channels x ``width``): conv1 11x11 stride 4 (96) -> max-pool 3x3 s2 -> conv2 5x5 (256) ->
max-pool -> conv3, conv4, conv5 3x3 (384, 384, 256) -> max-pool -> FC6 as a 6x6 conv (4096) -> FC7 as
a 1x1 conv (4096) -> 1x1 class scores. Each conv is followed by ReLU (and BatchNorm when
``batch_norm=True``, the default, which trains from scratch far more reliably than AlexNet's LRN).
Padding is chosen so the feature maps are exactly H/4, H/8, H/16, H/32 (conv1 pad 4, pools pad 1, FC6
"same" padding).

Decoder: FCN skip fusion: scores at H/32 -> transposed conv x2 + scores of pool2 (H/16) -> transposed
conv x2 + scores of pool1 (H/8) -> transposed conv x2 + scores of conv1 (H/4) -> transposed conv x4 to H.
H, W multiple of 32 avoids the internal padding.

Where it differs from seed 004's CDNN-Alex: it trains from random weights (the paper inherited ImageNet
AlexNet weights; nothing is downloaded here), uses BatchNorm instead of LRN, pads its pools, and its decoder
fuses three skip streams (finer than FCN-8s) where the paper describes one transposed convolution that
upsamples the FC7 features 8 x. The transposed convolutions start as bilinear interpolation and are learned.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .layers import check_input, crop_to_size, pad_to_multiple, scaled_channels

DEFAULT_OPTIONS = {"width": 1.0, "fc_channels": 4096, "batch_norm": True, "dropout": 0.5}


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int, padding, batch_norm: bool) -> nn.Sequential:
    layers = []
    if isinstance(padding, tuple):  # asymmetric (left, right, top, bottom) for even kernels
        layers.append(nn.ZeroPad2d(padding))
        padding = 0
    layers.append(nn.Conv2d(in_ch, out_ch, kernel, stride, padding, bias=not batch_norm))
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_ch))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _upsampler(channels: int, factor: int) -> nn.ConvTranspose2d:
    """Transposed conv that upsamples exactly x ``factor``, initialised to bilinear interpolation."""
    kernel = 2 * factor
    layer = nn.ConvTranspose2d(channels, channels, kernel, stride=factor, padding=factor // 2, bias=False)
    center = (kernel - 1) / 2.0
    og = torch.arange(kernel, dtype=torch.float32)
    filt1d = 1 - (og - center).abs() / factor
    filt = filt1d[:, None] * filt1d[None, :]
    with torch.no_grad():
        layer.weight.zero_()
        for c in range(channels):
            layer.weight[c, c] = filt
    return layer


class AlexNetFCN(nn.Module):
    """(N, C, H, W) -> (N, K, H, W) logits; any H, W (padded internally to a multiple of 32). ``width``
    scales every layer, the FC layers too: they get ``fc_channels * width`` channels (4096 at width 1)."""

    size_multiple = 32

    def __init__(self, in_channels: int, num_classes: int, width: float = 1.0, fc_channels: int = 4096,
                 batch_norm: bool = True, dropout: float = 0.5):
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        self.in_channels = int(in_channels)
        c1, c2, c3, c4, c5 = (scaled_channels(c, width) for c in (96, 256, 384, 384, 256))
        fc = scaled_channels(int(fc_channels), width)
        self.conv1 = _conv(in_channels, c1, 11, 4, 4, batch_norm)           # H/4
        self.pool1 = nn.MaxPool2d(3, 2, 1)                                  # H/8
        self.conv2 = _conv(c1, c2, 5, 1, 2, batch_norm)
        self.pool2 = nn.MaxPool2d(3, 2, 1)                                  # H/16
        self.conv3 = _conv(c2, c3, 3, 1, 1, batch_norm)
        self.conv4 = _conv(c3, c4, 3, 1, 1, batch_norm)
        self.conv5 = _conv(c4, c5, 3, 1, 1, batch_norm)
        self.pool5 = nn.MaxPool2d(3, 2, 1)                                  # H/32
        self.fc6 = _conv(c5, fc, 6, 1, (2, 3, 2, 3), batch_norm)            # 6x6 "same"
        self.fc7 = _conv(fc, fc, 1, 1, 0, batch_norm)
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.score_fc7 = nn.Conv2d(fc, num_classes, 1)
        self.score_pool2 = nn.Conv2d(c2, num_classes, 1)
        self.score_pool1 = nn.Conv2d(c1, num_classes, 1)
        self.score_conv1 = nn.Conv2d(c1, num_classes, 1)
        self.up32 = _upsampler(num_classes, 2)
        self.up16 = _upsampler(num_classes, 2)
        self.up8 = _upsampler(num_classes, 2)
        self.up4 = _upsampler(num_classes, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels)
        x, size = pad_to_multiple(x, self.size_multiple)
        f1 = self.conv1(x)
        p1 = self.pool1(f1)
        p2 = self.pool2(self.conv2(p1))
        p5 = self.pool5(self.conv5(self.conv4(self.conv3(p2))))
        s = self.score_fc7(self.drop(self.fc7(self.drop(self.fc6(p5)))))
        s = self.up32(s) + self.score_pool2(p2)
        s = self.up16(s) + self.score_pool1(p1)
        s = self.up8(s) + self.score_conv1(f1)
        s = self.up4(s)
        if s.shape[-2:] != x.shape[-2:]:  # safety net; exact for multiples of 32
            s = F.interpolate(s, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return crop_to_size(s, size)


def build(in_channels: int, num_classes: int, **options) -> nn.Module:
    return AlexNetFCN(in_channels, num_classes, **options)
