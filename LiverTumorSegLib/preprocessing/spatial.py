"""In-plane spatial forward/inverse mapping between the native canonical grid and the network grid.

Forward (per volume, z untouched): crop ``(y0:y1, x0:x1)`` -> resample/resize to ``resampled_shape_yx``
(bilinear, ``align_corners=False``, antialiased when shrinking, for HU; nearest for labels) -> pad
``(top, bottom, left, right)`` to a multiple of ``size_multiple``. :class:`SpatialInfo` records all of
it; the inverse un-pads, resamples back to the crop size and places the result in the native ``(y, x)``
frame. Arrays: volumes ``(z, y, x)``, network slices ``(n, H, W)``, maps ``(n, K, H, W)``. float32.
"""
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError

CHUNK_SLICES = 16  # slices resampled per torch call (bounds temporary memory)


@dataclass(frozen=True)
class SpatialInfo:
    """How one volume was mapped to the network grid (all pixel counts; spacings in mm, ``(y, x)``).

    ``native_shape_yx``: canonical input slice size. ``crop_yx``: ``(y0, y1, x0, x1)`` half-open box in
    native pixels. ``resampled_shape_yx``: size after resampling the crop. ``pad_yx``:
    ``(top, bottom, left, right)`` pixels added. ``num_slices``: z (unchanged).
    """

    native_shape_yx: Tuple[int, int]
    native_spacing_yx: Tuple[float, float]
    crop_yx: Tuple[int, int, int, int]
    resampled_shape_yx: Tuple[int, int]
    pad_yx: Tuple[int, int, int, int]
    num_slices: int

    @property
    def crop_shape_yx(self) -> Tuple[int, int]:
        y0, y1, x0, x1 = self.crop_yx
        return (y1 - y0, x1 - x0)

    @property
    def net_shape_yx(self) -> Tuple[int, int]:
        """``(H, W)`` of network slices."""
        t, b, l, r = self.pad_yx
        return (self.resampled_shape_yx[0] + t + b, self.resampled_shape_yx[1] + l + r)

    @property
    def net_spacing_yx(self) -> Tuple[float, float]:
        """Pixel size (mm) on the network grid."""
        ch, cw = self.crop_shape_yx
        rh, rw = self.resampled_shape_yx
        return (self.native_spacing_yx[0] * ch / rh, self.native_spacing_yx[1] * cw / rw)

    @property
    def is_resampled(self) -> bool:
        return tuple(self.resampled_shape_yx) != tuple(self.crop_shape_yx)

    def to_dict(self) -> Dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "SpatialInfo":
        return cls(native_shape_yx=tuple(d["native_shape_yx"]), native_spacing_yx=tuple(d["native_spacing_yx"]),
                   crop_yx=tuple(d["crop_yx"]), resampled_shape_yx=tuple(d["resampled_shape_yx"]),
                   pad_yx=tuple(d["pad_yx"]), num_slices=int(d["num_slices"]))


def plan_spatial(shape_zyx: Sequence[int], spacing_yx: Sequence[float], crop_yx: Optional[Tuple[int, int, int, int]],
                 target_spacing_mm: Optional[float], target_size: Optional[Tuple[int, int]],
                 size_multiple: int) -> SpatialInfo:
    """Compute the :class:`SpatialInfo` for a volume ``shape_zyx`` with pixel size ``spacing_yx`` (mm).

    ``crop_yx=None`` keeps the whole slice. The resampled size is ``round(crop * spacing / target)``
    (at least 1 pixel); padding is split evenly (extra pixel at the bottom/right).
    """
    nz, ny, nx = (int(s) for s in shape_zyx)
    sy, sx = (float(s) for s in spacing_yx)
    if ny < 1 or nx < 1:
        raise InputError(f"Cannot preprocess slices of size {ny}x{nx} pixels.")
    if not (sy > 0 and sx > 0):
        raise InputError(f"Pixel spacing must be positive, got (y, x) = {(sy, sx)} mm; fix the image header.")
    crop = (0, ny, 0, nx) if crop_yx is None else tuple(int(c) for c in crop_yx)
    ch, cw = crop[1] - crop[0], crop[3] - crop[2]
    if target_size is not None:
        rh, rw = int(target_size[0]), int(target_size[1])
    elif target_spacing_mm is not None:
        rh = max(1, int(round(ch * sy / target_spacing_mm)))
        rw = max(1, int(round(cw * sx / target_spacing_mm)))
    else:
        rh, rw = ch, cw
    m = int(size_multiple)
    ph, pw = (-rh) % m, (-rw) % m
    return SpatialInfo(native_shape_yx=(ny, nx), native_spacing_yx=(sy, sx), crop_yx=crop,  # type: ignore[arg-type]
                       resampled_shape_yx=(rh, rw), pad_yx=(ph // 2, ph - ph // 2, pw // 2, pw - pw // 2),
                       num_slices=nz)


def resample_slices(x_nhw: np.ndarray, out_hw: Tuple[int, int], mode: str = "bilinear",
                    out: Optional[np.ndarray] = None) -> np.ndarray:
    """Resize every ``(H, W)`` slice of ``x`` (``(z, H, W)``, or ``(..., H, W)`` without ``out``) to ``out_hw``,
    float32.

    ``mode``: "bilinear" (``align_corners=False``; antialiased when shrinking) or "nearest"
    (``nearest-exact``: pixel centres map to pixel centres, exact for labels). Chunked, torch CPU/any.
    ``out``: a float32 ``(z, oh, ow)`` array (or a view, e.g. the interior of a padded volume) to write into
    instead of a new one; returned.
    """
    import torch
    x = np.asarray(x_nhw)
    lead = x.shape[:-2]
    h, w = x.shape[-2:]
    oh, ow = int(out_hw[0]), int(out_hw[1])
    flat = x.reshape((-1, h, w))
    if out is not None:
        if out.shape != (flat.shape[0], oh, ow) or out.dtype != np.float32 or x.ndim != 3:
            raise ValueError(f"out must be float32 {(flat.shape[0], oh, ow)} for a (z, H, W) input, got "
                             f"{out.dtype} {out.shape}")
        target = out
    else:
        target = np.empty((flat.shape[0], oh, ow), dtype=np.float32)
    antialias = mode == "bilinear" and (oh < h or ow < w)
    tmode = "nearest-exact" if mode == "nearest" else "bilinear"
    kwargs = {"align_corners": False, "antialias": antialias} if tmode == "bilinear" else {}
    with torch.no_grad():
        for a in range(0, flat.shape[0], CHUNK_SLICES):
            chunk = torch.from_numpy(np.ascontiguousarray(flat[a:a + CHUNK_SLICES], dtype=np.float32))
            res = torch.nn.functional.interpolate(chunk[:, None], size=(oh, ow), mode=tmode, **kwargs)
            target[a:a + CHUNK_SLICES] = res[:, 0].numpy()
    return target if out is not None else target.reshape(lead + (oh, ow))


def _pad(x: np.ndarray, pad_yx: Tuple[int, int, int, int], value: float) -> np.ndarray:
    t, b, l, r = pad_yx
    if not any(pad_yx):
        return x
    widths = [(0, 0)] * (x.ndim - 2) + [(t, b), (l, r)]
    return np.pad(x, widths, mode="constant", constant_values=value)


def forward_image(hu_zyx: np.ndarray, info: SpatialInfo, pad_value: float = -1024.0) -> np.ndarray:
    """HU volume ``(z, y, x)`` -> network grid ``(z, H, W)`` float32 (crop, bilinear resample, pad)."""
    y0, y1, x0, x1 = info.crop_yx
    crop = np.asarray(hu_zyx)[..., y0:y1, x0:x1]
    if crop.ndim == 3:  # the padded volume made once, its interior filled in place (no second float32 copy)
        t, b, l, r = info.pad_yx
        rh, rw = (int(v) for v in info.resampled_shape_yx) if info.is_resampled else crop.shape[-2:]
        padded = np.full((crop.shape[0], rh + t + b, rw + l + r), pad_value, dtype=np.float32)
        interior = padded[:, t:t + rh, l:l + rw]
        if info.is_resampled:
            resample_slices(crop, (rh, rw), "bilinear", out=interior)
        else:
            interior[...] = crop
        return padded
    if info.is_resampled:
        out = resample_slices(crop, info.resampled_shape_yx, "bilinear")
    else:
        out = np.array(crop, dtype=np.float32, copy=True)
    return _pad(out, info.pad_yx, pad_value)


def forward_labels(labels_zyx: np.ndarray, info: SpatialInfo) -> np.ndarray:
    """Label volume ``(z, y, x)`` -> network grid ``(z, H, W)`` uint8 (crop, resample, pad 0).

    Enlarged slices take the nearest label (pixel centre to pixel centre, exact). Shrunk slices take, per pixel,
    the label with the largest share under the same antialiased bilinear filter the HU get (exact ties, where
    a boundary passes through a pixel's centre, split evenly in a checkerboard), so labels and HU stay registered:
    the nearest label of an exact 2:1 shrink came always from the second of the two pixels each network pixel
    covers, half a native pixel off the HU in y and x."""
    y0, y1, x0, x1 = info.crop_yx
    labels_zyx = np.asarray(labels_zyx)
    _check_label_values(labels_zyx)
    crop = labels_zyx[..., y0:y1, x0:x1]
    if not info.is_resampled:
        out = np.array(crop, dtype=np.uint8, copy=True)
    elif all(int(o) >= int(n) for o, n in zip(info.resampled_shape_yx, crop.shape[-2:])):
        out = np.rint(resample_slices(crop, info.resampled_shape_yx, "nearest")).astype(np.uint8)
    else:
        out = _label_with_largest_share(crop, info.resampled_shape_yx)
    return _pad(out, info.pad_yx, 0)


def _check_label_values(labels: np.ndarray) -> None:
    """Refuse (InputError) a label map the uint8 network grid cannot hold: a value outside 0..255 or not a whole
    number (the cast wrapped 258 to 2, a tumor, and -1 to 255, and truncated 1.5 to 1, without a word)."""
    if labels.dtype == np.uint8 or labels.dtype == np.bool_ or labels.size == 0:
        return
    if labels.dtype.kind not in "uif":
        raise InputError(f"A label map must hold whole numbers 0..255, got dtype {labels.dtype}.")
    low, high = labels.min(), labels.max()
    if not (low >= 0 and high <= 255):  # NaN fails too
        raise InputError(f"A label map must hold whole numbers 0..255 (0 background, 1 liver, 2 tumor), got values "
                         f"{low}..{high}; map the labels to these values first.")
    if labels.dtype.kind == "f" and not np.array_equal(labels, np.rint(labels)):
        raise InputError("A label map must hold whole numbers 0..255 (0 background, 1 liver, 2 tumor), got "
                         "fractional values; threshold or round the label map first.")


def _label_with_largest_share(labels: np.ndarray, out_hw: Tuple[int, int]) -> np.ndarray:
    """``(z, h, w)`` labels -> ``(z, oh, ow)`` uint8: per output pixel the label whose indicator, resampled
    bilinearly (antialiased, as :func:`resample_slices` shrinks HU), is largest; exact ties go to either label
    on alternate pixels (always the lower one eroded every object by half a pixel on one side: 8 % of a
    21 x 31 pixel box at 2:1)."""
    values = np.unique(labels)
    best = np.zeros(labels.shape[:-2] + tuple(int(v) for v in out_hw), dtype=np.uint8)
    if values.size == 1:
        best[...] = values[0]
        return best
    share = np.full(best.shape, -1.0, dtype=np.float32)
    oh, ow = best.shape[-2:]
    checker = ((np.arange(oh)[:, None] + np.arange(ow)[None, :]) % 2).astype(bool)  # (oh, ow)
    for value in values:
        fraction = resample_slices((labels == value).astype(np.float32), out_hw, "bilinear")
        tie = np.abs(fraction - share) <= 1e-5
        larger = (fraction > share) & ~tie | (tie & checker)  # exact ties split evenly between the two labels
        best[larger] = value
        share[larger] = fraction[larger]
    return best


def _unpad(x: np.ndarray, info: SpatialInfo) -> np.ndarray:
    t, b, l, r = info.pad_yx
    h, w = x.shape[-2:]
    if (h, w) != tuple(info.net_shape_yx):
        raise InputError(f"Slices of size {h}x{w} do not match the network grid {info.net_shape_yx}; "
                         f"pass maps produced from this volume's preprocessing.")
    return x[..., t:h - b, l:w - r]


def inverse_maps(maps_nkhw: np.ndarray, info: SpatialInfo, outside: Optional[Sequence[float]] = None) -> np.ndarray:
    """Per-class maps ``(n, K, H, W)`` on the network grid -> ``(n, K, y, x)`` float32 on the native grid.

    Bilinear (``align_corners=False``) back to the crop size; outside the crop each class gets
    ``outside[k]`` (default: background one-hot, i.e. 1 for class 0 and 0 for others; 0 when K == 1).
    """
    maps = np.asarray(maps_nkhw)
    if maps.ndim != 4:
        raise InputError(f"Expected maps (n, K, H, W), got shape {maps.shape}.")
    n, k = maps.shape[:2]
    core = _unpad(maps, info)
    if info.is_resampled:
        core = resample_slices(core, info.crop_shape_yx, "bilinear")
    ny, nx = info.native_shape_yx
    if tuple(info.crop_yx) == (0, ny, 0, nx):  # resampling made a new array; an unresampled core is a view
        return core if info.is_resampled else np.array(core, dtype=np.float32, copy=True)
    if outside is None:
        outside = [1.0] + [0.0] * (k - 1) if k > 1 else [0.0]
    if len(outside) != k:
        raise InputError(f"'outside' needs one value per class ({k}), got {len(outside)}.")
    out = np.empty((n, k, ny, nx), dtype=np.float32)
    out[...] = np.asarray(outside, dtype=np.float32)[None, :, None, None]
    y0, y1, x0, x1 = info.crop_yx
    out[:, :, y0:y1, x0:x1] = core
    return out


def argmax_classes(values: "Any") -> "Any":
    """Argmax over axis 1 of a torch tensor ``(n, K, ...)`` as uint8 on the tensor's device (first maximum wins,
    like ``np.argmax``; a NaN neither wins nor lets a later class win).

    K contiguous comparisons, which use every intra-op thread: 0.020 s per 8 x 3 x 512 x 512 batch on 2 cores,
    against 0.040 s for the same comparisons in numpy; ``torch.argmax(dim=1)`` was 20x slower than either. Class 1's
    comparison is the first labels, each later winner is written in place (``masked_fill_``), and the running
    maximum is not kept past the last class: 0.031 -> 0.013 s CPU per 16 x 3 x 295 x 512 chunk on one thread
    (no ``clone``, ``zeros`` or ``torch.where`` copies), the same labels."""
    import torch

    classes = int(values.shape[1])
    if classes < 2:
        return torch.zeros(values[:, 0].shape, dtype=torch.uint8, device=values.device)
    best = values[:, 0]
    labels = (values[:, 1] > best).to(torch.uint8)
    for k in range(2, classes):
        best = torch.maximum(best, values[:, k - 1])  # NaN propagates: nothing after it wins
        labels.masked_fill_(values[:, k] > best, k)
    return labels


def _check_inverse_argmax_input(shape: Sequence[int], class_index: Optional[int]) -> None:
    if len(shape) != 4:
        raise InputError(f"Expected maps (n, K, H, W), got shape {tuple(shape)}.")
    if class_index is not None and not 0 <= int(class_index) < shape[1]:
        raise InputError(f"The maps have {shape[1]} classes; there is no class {class_index}.")


CHANNELS_LAST_MAX_CLASSES = 3
"""Most classes for which the CPU restore upsamples channels-last (:func:`restore_layout`). Up to 3 channels
PyTorch's channels-last bilinear kernel computes each pixel with the same scalar arithmetic as the contiguous one
(bit for bit on torch 2.8 and 2.13, ``test_restore_layout_*``); with 4 classes the last bit differed on an AVX2
CPU (0.96 M of 2.1 M pixels of a 4-class map), so more classes stay contiguous."""


def restore_layout(chunk: "Any", info: SpatialInfo) -> "Any":
    """The float32 tensor ``(m, K, h, w)`` laid out for the restore's interpolation: channels-last
    (``(m, h, w, K)`` in memory) on the CPU at one torch thread when the crop is upsampled (no antialias) and ``K``
    <= :data:`CHANNELS_LAST_MAX_CLASSES`, else contiguous. Same numbers either way (see
    :data:`CHANNELS_LAST_MAX_CLASSES`). On one thread (how the engine's calling thread restores beside its network
    streams) channels-last upsampled 16 x 3 x 184 x 333 -> 283 x 512 in 0.05-0.10 s CPU against 0.21-0.35 s
    contiguous, and a 300-slice CT's whole restore took 1.11-1.38 against 1.26-1.93 s; on two threads the contiguous
    kernel shares its planes out well and channels-last did not (0.46-0.68 against 0.82-1.04 s: 30 Nov 2026, AMD
    EPYC Zen 3). Shrinking (antialiased) channels-last was slower (0.046 against 0.025 s), so it stays contiguous."""
    import torch

    oh, ow = info.crop_shape_yx
    h, w = chunk.shape[-2:]
    upsampled = info.is_resampled and oh >= h and ow >= w
    if chunk.device.type == "cpu" and upsampled and chunk.shape[1] <= CHANNELS_LAST_MAX_CLASSES \
            and torch.get_num_threads() == 1:
        return chunk.contiguous(memory_format=torch.channels_last)
    return chunk.contiguous()


def _restore_chunk(chunk: "Any", info: SpatialInfo, class_index: Optional[int]) -> Tuple["Any", "Any"]:
    """Unpadded network-grid probabilities, a float32 torch tensor ``(m, K, h, w)`` on any device -> crop-sized
    ``(labels, probability or None)``, uint8 tensors ``(m, oh, ow)`` on the same device (bilinear,
    ``align_corners=False``, antialiased when shrinking, as :func:`inverse_maps`)."""
    import torch

    oh, ow = info.crop_shape_yx
    h, w = chunk.shape[-2:]
    if info.is_resampled:
        chunk = torch.nn.functional.interpolate(chunk, size=(oh, ow), mode="bilinear", align_corners=False,
                                                antialias=oh < h or ow < w)
    probability = None
    if class_index is not None:
        probability = (chunk[:, int(class_index)] * 255.0).round_().clamp_(0, 255).to(torch.uint8)
    return argmax_classes(chunk), probability


def inverse_argmax(probs_nkhw: np.ndarray, info: SpatialInfo, class_index: Optional[int] = None,
                   out: Optional[Tuple[np.ndarray, Optional[np.ndarray]]] = None
                   ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Probabilities ``(n, K, H, W)`` on the network grid -> ``(labels, probability)`` on the native grid:
    ``labels`` ``(n, y, x)`` uint8 = argmax over classes of :func:`inverse_maps` (first maximum wins) and, with
    ``class_index``, ``probability`` ``(n, y, x)`` uint8 = ``round(255 * p)`` of that class (else None).

    The same numbers as :func:`inverse_maps` followed by an argmax (outside the crop: background, probability
    0), computed in torch (:func:`inverse_argmax_tensor` on the CPU) on :data:`CHUNK_SLICES` slices at a time,
    without the float32 ``(n, K, y, x)`` copy: 1.8x faster on 2 cores (8 slices, 192 x 352 -> 295 x 512:
    44 -> 24 ms).

    ``out``: ``(labels, probability)`` uint8 arrays ``(n, y, x)`` (probability None without ``class_index``) to
    write into and return, e.g. the slices' views of a whole volume's labels: no new arrays, no copy (two zeroed
    8 x 512 x 512 arrays a batch were 0.14-0.16 s CPU of a 300-slice CT's restore).
    """
    import torch

    maps = np.asarray(probs_nkhw)
    if not (maps.flags.c_contiguous and maps.dtype.isnative and maps.dtype.kind == "f"):
        maps = np.ascontiguousarray(maps, dtype=np.float32)  # what torch.from_numpy takes without a copy
    out_tensors = None if out is None else _out_tensors(out, (maps.shape[0],) + tuple(info.native_shape_yx),
                                                        class_index)
    labels, probability = inverse_argmax_tensor(torch.from_numpy(maps), info, class_index, CHUNK_SLICES,
                                                out=out_tensors)
    if out is not None:
        return out[0], out[1] if class_index is not None else None
    return labels.numpy(), None if probability is None else probability.numpy()


def _out_tensors(out: Tuple[np.ndarray, Optional[np.ndarray]], shape: Tuple[int, ...],
                 class_index: Optional[int]) -> Tuple["Any", "Any"]:
    """torch views of :func:`inverse_argmax`'s ``out`` arrays, checked: uint8, ``shape`` ``(n, y, x)``, and a
    probability array exactly when ``class_index`` is given."""
    import torch

    arrays = [out[0]] + ([out[1]] if class_index is not None else [])
    if class_index is not None and out[1] is None:
        raise InputError("inverse_argmax: a class_index needs a probability array in 'out'.")
    for array in arrays:
        if not (isinstance(array, np.ndarray) and array.dtype == np.uint8 and array.shape == shape):
            raise InputError(f"inverse_argmax: 'out' needs uint8 arrays of shape {shape}, got "
                             f"{getattr(array, 'dtype', type(array))} {getattr(array, 'shape', '')}.")
    views = [torch.from_numpy(array) for array in arrays]
    return views[0], views[1] if class_index is not None else None


DEVICE_CHUNK_SLICES = 64
"""Slices restored per call by :func:`inverse_argmax_tensor` on a GPU (its float32 temporaries: about
64 x K x y x x)."""


def inverse_argmax_tensor(probs_nkhw: "Any", info: SpatialInfo, class_index: Optional[int] = None,
                          chunk_slices: int = DEVICE_CHUNK_SLICES, out: Optional[Tuple["Any", "Any"]] = None
                          ) -> Tuple["Any", "Any"]:
    """:func:`inverse_argmax` for a torch tensor ``(n, K, H, W)`` where it lies (a GPU): returns uint8
    tensors ``(n, y, x)`` on the same device, so only labels (1 byte per voxel), not K float32 maps, travel back
    to the host. Same interpolation, argmax and rounding as :func:`inverse_argmax` (which calls this on the
    CPU); on a GPU the float32 arithmetic may differ from the CPU's in the last bit, which can flip a pixel where
    two classes tie. ``chunk_slices`` slices are restored per call (in float32). ``out``: ``(labels,
    probability)`` uint8 tensors ``(n, y, x)`` on that device to fill (every pixel) and return instead of new
    ones (:func:`inverse_argmax`)."""
    import torch

    _check_inverse_argmax_input(tuple(probs_nkhw.shape), class_index)
    n = int(probs_nkhw.shape[0])
    ny, nx = info.native_shape_yx
    y0, y1, x0, x1 = info.crop_yx
    device = probs_nkhw.device
    if out is not None:
        labels, probability = out[0], out[1] if class_index is not None else None
        for target in (labels, probability):
            if target is not None:
                _zero_outside_crop(target, info)
    else:
        labels = torch.zeros((n, ny, nx), dtype=torch.uint8, device=device)
        probability = None if class_index is None else torch.zeros((n, ny, nx), dtype=torch.uint8, device=device)
    core = _unpad(probs_nkhw, info)
    with torch.no_grad():
        for a in range(0, n, chunk_slices):
            chunk = restore_layout(core[a:a + chunk_slices].float(), info)
            chunk_labels, chunk_probability = _restore_chunk(chunk, info, class_index)
            labels[a:a + chunk_slices, y0:y1, x0:x1] = chunk_labels
            if probability is not None:
                probability[a:a + chunk_slices, y0:y1, x0:x1] = chunk_probability
    return labels, probability


def _zero_outside_crop(target: "Any", info: SpatialInfo) -> None:
    """Zero the pixels of ``target`` ``(n, y, x)`` outside the crop box (background, probability 0)."""
    y0, y1, x0, x1 = info.crop_yx
    target[:, :y0] = 0
    target[:, y1:] = 0
    target[:, y0:y1, :x0] = 0
    target[:, y0:y1, x1:] = 0


def inverse_labels(labels_nhw: np.ndarray, info: SpatialInfo) -> np.ndarray:
    """Label slices ``(n, H, W)`` on the network grid -> ``(n, y, x)`` uint8 native (0 outside crop): enlarged
    slices take the nearest label, shrunk ones (native pixels coarser than the network's) the label with the largest
    share, as :func:`forward_labels` does. The nearest label of a 2:1 shrink came always from the second of the two
    network pixels each native pixel covers: objects restored half a native pixel toward lower indices (1 mm on 3 mm
    pixels; :func:`inverse_argmax`, the engine's path, kept them in place) (the numerics audit)."""
    lab = np.asarray(labels_nhw)
    if lab.ndim != 3:
        raise InputError(f"Expected label slices (n, H, W), got shape {lab.shape}.")
    core = _unpad(lab, info)
    if info.is_resampled and all(int(o) >= int(n) for o, n in zip(info.crop_shape_yx, core.shape[-2:])):
        core = np.rint(resample_slices(core, info.crop_shape_yx, "nearest")).astype(np.uint8)
    elif info.is_resampled:
        core = _label_with_largest_share(core, info.crop_shape_yx)
    ny, nx = info.native_shape_yx
    out = np.zeros((lab.shape[0], ny, nx), dtype=np.uint8)
    y0, y1, x0, x1 = info.crop_yx
    out[:, y0:y1, x0:x1] = core
    return out
