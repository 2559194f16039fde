"""The 2.5D network input built where the network runs (a GPU): HU windows and neighbour stacking in torch.

On the GPU machine the host's batch building was a second network's worth of time: for a 512 x 512 x 500 CT
(1.5 mm grid, 352 x 352 px) each batch of 64 slices windowed every needed slice three times in numpy, stacked
its neighbours into 9 float32 channels (285 MB a batch) and pinned them for the copy: 0.96-0.98 s of
"preprocess" and 0.26 s of ``pin_memory`` in a 5.6 s run whose network took 0.7-0.8 s (H200, 26 Nov 2026).
Here only the needed network-grid HU slices travel (one float32 channel: a ninth of the bytes) and the windows
and the stacking run on the device.

The input is bit-identical to :meth:`~.preprocessor.PreparedVolume.batch`: each window is the float32
subtraction of ``level - width / 2`` and multiplication by ``1 / width`` (both rounded to float32 as in
:func:`~.intensity.window_hu`), then a clip to [0, 1], each an exactly rounded float32 operation on any device;
the neighbours are the same slice indices (:func:`~.preprocessor.context_positions`), channel index
``offset_index * C0 + channel``.

Only for what the default models use: every channel a plain HU window, no median or Gaussian filter, no
equalization, and neighbours a whole number of slices apart. Anything else (z-score or histogram channels,
CLAHE, interpolated neighbours on thick slices) returns no builder and keeps the host path.
"""
import time
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .preprocessor import PreparedVolume, _checked_indices, context_positions


class DeviceBatchBuilder:
    """Builds ``(n, C0 * (2c + 1), H, W)`` float32 network input on a torch device from a
    :class:`~.preprocessor.PreparedVolume`'s network-grid HU ``(z, H, W)``. ``host_seconds`` accumulates the
    host's part (gathering the slices, queueing the copy); the device's part runs asynchronously."""

    def __init__(self, prepared: PreparedVolume, windows: List[Tuple[float, float]], context: int, step: int) -> None:
        self.prepared = prepared
        self.windows = windows  # (low, 1 / width), each a float32 value held as a Python float
        self.context = int(context)
        self.step = int(step)
        self.host_seconds = 0.0

    def batch(self, indices: Sequence[int], device: object) -> "object":
        """Network input for centre slices ``indices`` on ``device`` (a torch.device), float32."""
        import torch

        start = time.perf_counter()
        num_slices = self.prepared.num_slices
        idx = _checked_indices(indices, num_slices)
        src = context_positions(idx, self.context, num_slices, self.step).astype(np.int64)  # (n, S)
        needed = np.unique(src)
        hu = np.ascontiguousarray(self.prepared.hu_net[needed], dtype=np.float32)  # (m, H, W)
        host = torch.from_numpy(hu)
        on_device = device.type == "cuda"  # type: ignore[attr-defined]
        if on_device:
            host = host.pin_memory()
        x = host.to(device, non_blocking=on_device)
        positions = torch.from_numpy(np.searchsorted(needed, src)).to(device, non_blocking=False)
        self.host_seconds += time.perf_counter() - start
        m, h, w = x.shape
        channels = torch.empty((m, len(self.windows), h, w), dtype=torch.float32, device=x.device)
        for c, (low, inverse_width) in enumerate(self.windows):
            channel = channels[:, c]
            torch.sub(x, low, out=channel)  # float32, as window_hu's `out -= np.float32(low)`
            channel.mul_(inverse_width)  # `out *= np.float32(1.0 / width)`
            channel.clamp_(0.0, 1.0)
        stacked = channels[positions]  # (n, S, C0, H, W)
        n, s, c0 = stacked.shape[:3]
        return stacked.reshape(n, s * c0, h, w)

    def take_host_seconds(self) -> float:
        """The host seconds accumulated since the last call (then zero)."""
        seconds, self.host_seconds = self.host_seconds, 0.0
        return seconds


def device_batch_builder(prepared: object) -> Optional[DeviceBatchBuilder]:
    """A :class:`DeviceBatchBuilder` for ``prepared`` when its preprocessing is windows only (see the module
    docstring), else None (the host builds the batches)."""
    if not isinstance(prepared, PreparedVolume):
        return None
    offset = float(prepared.context_offset)
    if not offset.is_integer() or offset < 1:
        return None
    config = prepared.preprocessor.config
    if config.median_size > 1 or config.gaussian_sigma_mm > 0 or config.equalize is not None:
        return None
    windows = []
    for spec in config.channels:
        if spec.get("kind") != "window":
            return None
        width = float(spec["width"])
        low = float(spec["level"]) - width / 2.0
        windows.append((float(np.float32(low)), float(np.float32(1.0 / width))))
    return DeviceBatchBuilder(prepared, windows, config.context_slices, int(offset))
