"""Building blocks shared by the 2D architectures: size padding, conv blocks, attention gates, ConvLSTM.

All tensors are ``(N, C, H, W)`` float32 unless stated otherwise.
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def check_input(x: torch.Tensor, channels: int) -> None:
    """Raise ValueError unless ``x`` is an (N, ``channels``, H, W) tensor with N, H, W >= 1: torch's own errors named
    the internally padded shape, or (MONAI's U-Net on a (C, H, W) slice) 'Sizes of tensors must match', or replicate
    padding's rule for an empty slice. An empty batch (N = 0) passed the batch-norm networks and failed inside
    instance norm ('select(): index 0 out of range'; the models audit): it is refused alike for every network."""
    shape = tuple(x.shape)
    if len(shape) != 4:
        hint = " (add the batch dimension: x[None])" if len(shape) == 3 else ""
        raise ValueError(f"the network takes (N, C, H, W) = 4 dimensions, got shape {shape}{hint}")
    if shape[1] != channels:
        raise ValueError(f"the network takes {channels} input channels (dimension 1), got {shape[1]} "
                         f"(shape {shape})")
    if shape[0] < 1:
        raise ValueError(f"the batch holds no slices (N = 0, shape {shape}); give at least one")
    if shape[2] < 1 or shape[3] < 1:
        raise ValueError(f"H and W must be at least 1 pixel, got H={shape[2]}, W={shape[3]}")


def pad_to_multiple(x: torch.Tensor, multiple: int) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Pad ``x`` (N, C, H, W) at the bottom/right by edge replication so H and W are multiples of
    ``multiple``, and W to two multiples when both would be one (a 1 x 1 deepest feature map, which instance
    norm cannot normalise, nor batch norm in training with one sample: a 16 x 16 input to a 16-multiple U-Net
    failed). Returns the padded tensor and the original ``(H, W)`` for :func:`crop_to_size`."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    pad_h = (-h) % multiple
    pad_w = (-w) % multiple
    if h + pad_h == multiple and w + pad_w == multiple:
        pad_w += multiple
    if pad_h or pad_w:
        # replicate needs at least one pixel; it keeps windowed [0, 1] and z-scored inputs plausible.
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return x, (h, w)


def crop_to_size(x: torch.Tensor, size_hw: Tuple[int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`: keep the top-left ``size_hw`` = (H, W) of ``x`` (N, C, H', W')."""
    return x[..., : size_hw[0], : size_hw[1]]


def make_norm(kind: str, channels: int) -> nn.Module:
    """A 2D normalisation layer: ``"batch"``, ``"instance"`` (affine) or ``"none"``."""
    kind = kind.lower()
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm '{kind}' (use 'batch', 'instance' or 'none')")


def scaled_channels(base: int, width: float, minimum: int = 4) -> int:
    """Channel count ``base * width`` rounded, at least ``minimum`` (width multiplier of small variants)."""
    return max(minimum, int(round(base * float(width))))


class ConvNormAct(nn.Sequential):
    """conv k x k (same padding) -> norm -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, norm: str = "batch"):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=norm == "none"),
            make_norm(norm, out_ch),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    """Two :class:`ConvNormAct` 3x3 layers (the U-Net block), optional dropout at the end."""

    def __init__(self, in_ch: int, out_ch: int, norm: str = "batch", dropout: float = 0.0):
        layers: List[nn.Module] = [ConvNormAct(in_ch, out_ch, 3, norm), ConvNormAct(out_ch, out_ch, 3, norm)]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class AttentionGate(nn.Module):
    """Additive attention gate after Oktay et al. (Attention U-Net, 2018).

    ``forward(skip, gate)``: ``skip`` (N, Cs, H, W) encoder features, ``gate`` (N, Cg, H', W') coarser
    decoder features. Returns ``skip * alpha`` with ``alpha = sigmoid(psi(relu(Wx skip + up(Wg gate))))`` in
    [0, 1], shape (N, 1, H, W); ``Wx``, ``Wg``, ``psi`` are 1x1 convs, each followed by BatchNorm.

    Where it differs from Oktay et al.: they bring ``skip`` down to the gate's grid (a strided ``Wx``), compute
    alpha there and resample alpha up, then pass the gated features through a further 1x1 conv + BN; here
    ``Wg gate`` is resized bilinearly up to the skip's (H, W) and alpha is computed at full skip resolution
    with no output conv (the common re-implementation). The BatchNorm after ``Wx``, ``Wg`` and ``psi`` is
    not in the paper's formula and stays BatchNorm whatever ``norm`` the network uses elsewhere.
    """

    def __init__(self, skip_channels: int, gate_channels: int, inter_channels: int):
        super().__init__()
        self.w_x = nn.Sequential(nn.Conv2d(skip_channels, inter_channels, 1, bias=False),
                                 nn.BatchNorm2d(inter_channels))
        self.w_g = nn.Sequential(nn.Conv2d(gate_channels, inter_channels, 1, bias=True),
                                 nn.BatchNorm2d(inter_channels))
        self.psi = nn.Sequential(nn.Conv2d(inter_channels, 1, 1, bias=True), nn.BatchNorm2d(1), nn.Sigmoid())
        # True keeps each forward's alpha in last_alpha (inspection, visualisation). Off by default: every gate
        # held its latest batch's map, up to ~64 MB over the network's gates for a batch of 352 x 352 slices, on the
        # GPU between batches and for as long as the model lived.
        self.record_alpha = False
        self.last_alpha = None  # (N, 1, H, W) of the latest forward while record_alpha is True

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        g = self.w_g(gate)
        if g.shape[-2:] != skip.shape[-2:]:
            g = F.interpolate(g, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        alpha = self.psi(F.relu(self.w_x(skip) + g))
        self.last_alpha = alpha.detach() if self.record_alpha else None
        return skip * alpha


class ConvLSTMCell(nn.Module):
    """One convolutional LSTM cell (Shi et al., 2015): the four gates from a k x k conv over [x, h].
    Without Shi et al.'s peephole terms (``W_c * c`` in the gates), as Keras' ``ConvLSTM2D``.

    ``forward(x, (h, c))`` with x (N, Cin, H, W), h and c (N, Chid, H, W) -> new (h, c).
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.gates = nn.Conv2d(in_channels + hidden_channels, 4 * hidden_channels, kernel_size,
                               padding=kernel_size // 2)

    def initial_state(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = x.shape
        zeros = x.new_zeros((n, self.hidden_channels, h, w))
        return zeros, zeros.clone()

    def forward(self, x: torch.Tensor, state: Tuple[torch.Tensor, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        i, f, o, g = torch.chunk(self.gates(torch.cat([x, h], dim=1)), 4, dim=1)
        c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_next = torch.sigmoid(o) * torch.tanh(c_next)
        return h_next, c_next


def run_conv_lstm(cell: ConvLSTMCell, sequence: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """Run ``cell`` over ``sequence`` (list of (N, C, H, W), in order); return the hidden state per step."""
    state = cell.initial_state(sequence[0])
    outputs = []
    for x in sequence:
        state = cell(x, state)
        outputs.append(state[0])
    return outputs


def upsample_to(x: torch.Tensor, size_hw: Tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (N, C, h, w) logits/features to ``size_hw`` = (H, W) (no-op when equal)."""
    if tuple(x.shape[-2:]) == tuple(size_hw):
        return x
    return F.interpolate(x, size=tuple(size_hw), mode="bilinear", align_corners=False)
