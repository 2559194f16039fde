"""ResNet encoder + upsampling decoder with skip connections (seeds 001: ResNet-50 FCN, 004: ResNet-18).

Encoder = ResNet (He et al. 2016) written here (torchvision is not a dependency), attribute names as in
torchvision (``conv1, bn1, layer1..layer4``, blocks ``conv1, bn1, ..., downsample.0/1``) so a local
torchvision-style state dict can initialise it:

* stem: conv 7x7 stride 2 (64 x width ch) + BN + ReLU (H/2), max-pool 3x3 stride 2 (H/4);
* layer1..layer4 with [2, 2, 2, 2] BasicBlocks (18), [3, 4, 6, 3] BasicBlocks (34) or [3, 4, 6, 3]
  Bottlenecks (50, expansion 4); layers 2-4 stride 2 -> features at H/4, H/8, H/16, H/32.

Decoder (U-Net style): upsample x2 (bilinear) -> concat the encoder feature of that scale -> two
conv3x3+BN+ReLU, from H/32 up to H/2 (stem), then x2 to H with a conv on [features, input] and a 1x1
classifier. H, W multiple of 32 avoids the internal padding.

Where it differs from the papers: the encoder starts from random (Kaiming) weights unless
``pretrained_encoder_path`` is given; the papers' ResNet-50 (seed 001) and ResNet-18 (seed 004) encoders were
ImageNet-pretrained, and nothing is downloaded here. This decoder upsamples bilinearly and concatenates the
encoder's features (U-Net style); neither paper's ResNet decoder has such skip connections: seed 004's ResNet-18
decoder mirrors the encoder with deconvolutions, and seed 001's ResNet-50 "adds upsampling and convolutional
layers that progressively restore the spatial resolution", while the same paper credits its U-Net's lead over
the ResNet-50 to the U-Net's "skip connections that effectively preserve spatial information". Seed 001's
``include_top=False`` suggests a Keras ResNet50, which strides in the first 1x1 conv of a bottleneck; here the
3x3 conv strides (torchvision's v1.5). Seed 004 cites "Identity mappings in deep residual networks" (the
pre-activation ResNet, BN-ReLU before each conv) for its ResNet-18; these blocks are the original post-activation
ones (conv-BN-ReLU, ReLU after the addition). Default ``decoder_channels``: (256, 128, 64, 32, 16) x ``width``.

``pretrained_encoder_path``: a LOCAL file (``.safetensors`` or a plain state dict loadable with
``torch.load(weights_only=True)``; never downloaded) of ResNet weights at the same width. Keys may carry
an ``encoder.`` prefix; ``fc.*`` is ignored; a 3-channel ``conv1`` is adapted to other input channel
counts by averaging over its input channels and repeating (x 3 / C). It acts at build time only
(recorded as None in ``model_config``, since the weights then live in the state dict).
"""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .layers import ConvNormAct, check_input, crop_to_size, pad_to_multiple, scaled_channels

DEFAULT_OPTIONS = {"width": 1.0, "decoder_channels": None, "pretrained_encoder_path": None}
TRANSIENT_OPTIONS = ("pretrained_encoder_path",)

LAYER_COUNTS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}


class BasicBlock(nn.Module):
    """Two 3x3 convs with identity (or 1x1 projection) shortcut; expansion 1."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection(in_ch, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride here, as torchvision "ResNet v1.5") -> 1x1 expand (x4), with shortcut."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1):
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _projection(in_ch: int, out_ch: int, stride: int) -> Optional[nn.Module]:
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


class ResNetEncoder(nn.Module):
    """ResNet-18/34/50 trunk without pooling/fc. ``forward`` returns the features
    [stem (H/2), layer1 (H/4), layer2 (H/8), layer3 (H/16), layer4 (H/32)]."""

    def __init__(self, in_channels: int, depth: int, width: float):
        super().__init__()
        if depth not in LAYER_COUNTS:
            raise ValueError(f"ResNet depth must be one of {sorted(LAYER_COUNTS)}, got {depth}")
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        block = Bottleneck if depth >= 50 else BasicBlock
        base = scaled_channels(64, width)
        self.conv1 = nn.Conv2d(in_channels, base, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.out_channels: List[int] = [base]
        in_ch = base
        layers = []
        for i, count in enumerate(LAYER_COUNTS[depth]):
            planes = scaled_channels(64 * 2 ** i, width)
            blocks = []
            for j in range(count):
                blocks.append(block(in_ch, planes, 2 if (j == 0 and i > 0) else 1))
                in_ch = planes * block.expansion
            layers.append(nn.Sequential(*blocks))
            self.out_channels.append(in_ch)
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(stem))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [stem, f1, f2, f3, f4]


class ResNetFCN(nn.Module):
    """(N, C, H, W) -> (N, K, H, W) logits; any H, W (padded internally to a multiple of 32)."""

    size_multiple = 32

    def __init__(self, in_channels: int, num_classes: int, depth: int, width: float = 1.0,
                 decoder_channels: Optional[Sequence[int]] = None):
        super().__init__()
        self.in_channels = int(in_channels)
        self.encoder = ResNetEncoder(in_channels, depth, width)
        enc = self.encoder.out_channels  # [stem, l1, l2, l3, l4]
        if decoder_channels is None:
            decoder_channels = [scaled_channels(c, width) for c in (256, 128, 64, 32, 16)]
        decoder_channels = [int(c) for c in decoder_channels]
        if len(decoder_channels) != 5:
            raise ValueError(f"decoder_channels needs 5 entries (H/16, H/8, H/4, H/2, H), got {decoder_channels}")
        self.decoder = nn.ModuleList()
        prev = enc[4]
        for skip, out in zip((enc[3], enc[2], enc[1], enc[0]), decoder_channels[:4]):
            self.decoder.append(nn.Sequential(ConvNormAct(prev + skip, out), ConvNormAct(out, out)))
            prev = out
        self.full_res = nn.Sequential(ConvNormAct(prev + in_channels, decoder_channels[4]),
                                      ConvNormAct(decoder_channels[4], decoder_channels[4]))
        self.classifier = nn.Conv2d(decoder_channels[4], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels)
        x, size = pad_to_multiple(x, self.size_multiple)
        feats = self.encoder(x)
        y = feats[4]
        for block, skip in zip(self.decoder, (feats[3], feats[2], feats[1], feats[0])):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], dim=1))
        y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        y = self.full_res(torch.cat([y, x], dim=1))
        return crop_to_size(self.classifier(y), size)


def load_pretrained_encoder(encoder: ResNetEncoder, path: str) -> None:
    """Copy ResNet weights from a local file into ``encoder`` (see module doc). Raises InputError
    (or ModelPackageError for an unsafe/unreadable file) naming the mismatching keys."""
    from ..package import load_torch_state_dict_safely

    source = load_torch_state_dict_safely(path)
    stripped: Dict[str, torch.Tensor] = {}
    for key, value in source.items():
        for prefix in ("module.", "encoder.", "backbone."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        if not key.startswith("fc."):
            stripped[key] = value
    target = encoder.state_dict()
    conv1 = stripped.get("conv1.weight")
    if conv1 is not None and conv1.ndim == 4 and conv1.shape[1] != target["conv1.weight"].shape[1]:
        c = target["conv1.weight"].shape[1]
        stripped["conv1.weight"] = conv1.mean(dim=1, keepdim=True).repeat(1, c, 1, 1) * (conv1.shape[1] / c)
    for key in target:  # BatchNorm's step counters, which checkpoints from before PyTorch 0.4.1 (torchvision's
        if key.endswith(".num_batches_tracked") and key not in stripped:  # ImageNet ResNets) lack: torch fills them
            stripped[key] = target[key]                                   # too, and they were called missing keys
    missing = sorted(set(target) - set(stripped))
    wrong = sorted(k for k in set(target) & set(stripped) if tuple(target[k].shape) != tuple(stripped[k].shape))
    if missing or wrong:
        advice = []
        if missing:
            advice.append("its key names must be torchvision's (conv1, bn1, layer1..layer4; a prefix module., "
                          "encoder. or backbone. is taken off)")
        if wrong:
            advice.append("use weights of the same depth and width=1.0")
        raise InputError(f"Pretrained encoder '{path}' does not fit this ResNet: "
                         f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(wrong)} with other shapes "
                         f"(e.g. {wrong[:3]}); {' and '.join(advice)}.")
    encoder.load_state_dict({k: stripped[k] for k in target}, strict=True)


def build(in_channels: int, num_classes: int, depth: int, width: float = 1.0,
          decoder_channels: Optional[Sequence[int]] = None, pretrained_encoder_path: Optional[str] = None) -> nn.Module:
    model = ResNetFCN(in_channels, num_classes, depth, width, decoder_channels)
    if pretrained_encoder_path:
        load_pretrained_encoder(model.encoder, str(pretrained_encoder_path))
    return model
