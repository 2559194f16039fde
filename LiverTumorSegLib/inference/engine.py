"""Slice-by-slice inference over a model package: :class:`SliceInferenceEngine`.

Pipeline for one volume (array axes ``(z, y, x)`` throughout, batches ``(N, C, H, W)``):

1. ``orientation.canonicalize`` (permute/flip only) so axial slices are what the network was trained on;
2. ``SlicePreprocessor(package.preprocessing).prepare`` -> a :class:`PreparedVolume` that builds any batch of
   (2.5D) slices on demand, exactly as in training;
3. batches of slices -> softmax probabilities ``(n, K, H, W)`` float32 (optional left-right flip TTA,
   averaged in probability space) -> ``prepared.restore_argmax``: back to the canonical native grid and
   argmax, into the canonical view (``Reorientation.canonical_view``) of a uint8 label volume allocated in the
   *input* layout (slices that hold only background skip it: :func:`background_only_slices`; with a
   probability that is read only inside the labels, as ``segment`` reads it, whatever that slice's probability);
4. the labels ``(z, y, x)`` are then already in the *input* geometry, C-contiguous: no canonical copy is
   turned back.

Only the uint8 label volume is held for the whole volume; probabilities exist one batch at a time.

On CUDA: autocast (bf16 where supported, else fp16), channels-last, pinned host buffers and
non-blocking copies; for window-only preprocessing the 2.5D input is built on the GPU from the network-grid HU
(``preprocessing.device_input``: one channel travels instead of nine), otherwise batch ``i+1`` is prepared on
the CPU while the GPU computes batch ``i``. The batch
size comes from free GPU memory and halves on out-of-memory. On CPU: all cores, optional ONNX Runtime (fp32),
and with ``precision="auto"`` bf16 autocast (channels-last) on CPUs that compute bf16 natively
(AVX512-BF16 / AMX-BF16): verified on the :data:`CHECK_SLICES` middle slices of the engine's first volume against
fp32, whatever the batch size (see :data:`BF16_MAX_DISAGREEMENT`); whether bf16 suits a network is a property of
the network and the CPU, so later volumes (batch runs) reuse that verdict instead of paying an fp32 batch each.
On an Apple GPU (MPS): fp32, checked in the same way on those slices of the first volume against the CPU (see
:data:`DEVICE_MAX_DISAGREEMENT`); an error or a disagreement there, or an error on a later batch, moves the
engine to the CPU for good, with a warning (``device_message``) that the report carries.

``engine.last_timings`` holds the seconds spent per stage of the last ``predict*`` call and
``engine.last_precision`` what precision ran (and the check's numbers).
"""
import collections
import concurrent.futures
import contextlib
import logging
import numbers
import threading
import time
from typing import Callable, Iterator, List, Optional, Tuple

import numpy as np

from ..errors import InputError, ResourceError, option_hint, out_of_memory_error
from ..progress import CancellationToken, ProgressCallback, ProgressReporter
from ..volume import CTVolume
from .thresholds import threshold_for
from .device import (DEFAULT_CPU_BATCH, MAX_BATCH_SIZE, MAX_THREADS, bytes_per_slice, check_count, check_precision,
                     choose_batch_size, cpu_has_native_bf16, default_inference_threads, gpu_info, resolve_device,
                     torch_threads)

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")
# A per-batch predictor: (n, C, H, W) float32 -> softmax probabilities (n, K, H, W) float32.
BatchPredictor = Callable[[np.ndarray], np.ndarray]

BF16_MAX_DISAGREEMENT = 0.001
"""Largest fraction of the check's voxels (network grid) whose bf16 label may differ from the fp32 label
before ``precision="auto"`` falls back to fp32. Why 0.1 %: the liver fills roughly 5-15 % of an abdominal
slice, so 0.1 % of all voxels is at most ~1-2 % of the liver's voxels in those slices; the bundled model's
bf16-vs-fp32 difference on real CT slices measured 0.002-0.003 % (boundary voxels), far below it, while a
network that bf16 actually breaks (overflow, saturated activations) disagrees on whole regions, far above."""

CHECK_SLICES = DEFAULT_CPU_BATCH
"""Slices the bf16 check and the Apple GPU check judge, whatever the batch size (they run in batches of it): the
``CHECK_SLICES``-slice block in the middle of the slices the network runs. The check used to judge one batch, so
``--batch-size 1`` rested the verdict on one slice and ``--batch-size 16`` on sixteen: the batch size could change
whether bf16 ran, and so the labels."""

DEVICE_MAX_DISAGREEMENT = BF16_MAX_DISAGREEMENT
"""Largest fraction of the check's voxels whose label on an Apple GPU (MPS, fp32) may differ from the CPU's
before the engine moves to the CPU. Both compute fp32, so a working device differs only where rounding order
tips a boundary voxel; an operator Metal computes wrongly differs on whole regions."""


def softmax_channels(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over axis 1 of ``(n, K, H, W)``; float32 in and out."""
    z = logits.astype(np.float32, copy=False)
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def argmax_channels(probs: np.ndarray) -> np.ndarray:
    """Argmax over axis 1 of ``(n, K, ...)`` as uint8 (first maximum wins, like ``np.argmax``), computed by
    :func:`~LiverTumorSegLib.preprocessing.spatial.argmax_classes` in torch (several times faster than
    ``np.argmax(axis=1)``, whose strided reduction dominated GPU runs)."""
    import torch

    from ..preprocessing.spatial import argmax_classes

    return argmax_classes(torch.from_numpy(np.ascontiguousarray(probs))).numpy()


RESTORE_SKIP_MARGIN = 1e-4
"""A slice skips the restore when background beats every other class by this much at every pixel (float32
rounding of the interpolation is far smaller), and, where the probability is kept everywhere, the kept class's
probability stays below :data:`RESTORE_SKIP_PROBABILITY`."""

RESTORE_SKIP_PROBABILITY = 0.45 / 255.0
"""A probability below this stays below ``0.5 / 255`` through the restore's convex interpolation (float32 error
is about 1e-7 relative, far under the 10 % margin), so ``round(255 * p)`` is 0 there. A bundled model's
floor outside the body is about 0.9-1.9e-3 (v2, v3 on the sample), close to this; hence the labels-only skip."""


def background_only_slices(probs_nkhw: np.ndarray, class_index: Optional[int] = None) -> np.ndarray:
    """Boolean ``(n,)``: network-grid slices ``(n, K, H, W)`` whose restored labels are all background and, with
    ``class_index``, whose restored probability of that class is 0 after ``round(255 * p)``; such slices need
    no restore (their native-grid result is the zeros already there).

    Why it is exact: the restore interpolates (bilinear, or antialiased bilinear when shrinking) with
    non-negative weights that sum to 1, so every restored pixel is a convex combination of network pixels. If
    ``p0 > pk`` at each of them, the combination keeps ``p0 > pk`` (label 0), and values below
    :data:`RESTORE_SKIP_PROBABILITY` stay below ``0.5 / 255`` (round to 0). Without ``class_index`` only the
    labels are tested. NaN anywhere fails the test (the slice is restored as before).
    """
    probs = np.asarray(probs_nkhw)
    n, k = probs.shape[:2]
    skip = np.ones(n, dtype=bool)
    if k > 1:
        others = probs[:, 1:].max(axis=1)
        skip &= (others < probs[:, 0] - RESTORE_SKIP_MARGIN).reshape(n, -1).all(axis=1)
    if class_index is not None:
        skip &= (probs[:, class_index] < RESTORE_SKIP_PROBABILITY).reshape(n, -1).all(axis=1)
    return skip


def restore_targets(labels: np.ndarray, probability: Optional[np.ndarray], indices: np.ndarray
                    ) -> Optional[Tuple[np.ndarray, Optional[np.ndarray]]]:
    """Views ``(labels[i0:i1], probability[i0:i1] or None)`` of the volumes ``(z, y, x)`` for a restore to
    write into, when ``indices`` are consecutive increasing slices and both arrays are uint8 with no negative
    stride (what ``torch.from_numpy`` takes: a flipped canonical view of the caller's array is not); else None
    (the restore returns new arrays, copied in)."""
    idx = np.asarray(indices)
    if idx.size == 0 or (idx.size > 1 and not np.all(np.diff(idx) == 1)):
        return None
    window = slice(int(idx[0]), int(idx[-1]) + 1)
    views = [labels[window]] + ([] if probability is None else [probability[window]])
    if any(view.dtype != np.uint8 or any(step < 0 for step in view.strides) for view in views):
        return None
    return views[0], None if probability is None else views[1]


def _slice_count_and_order(count: object) -> Tuple[int, object]:
    """``(number of slices, what :func:`_batches` walks)`` for a batch loop's ``count``: a slice count, or the list of
    slices to run (air stacks left out)."""
    if isinstance(count, numbers.Integral):
        return int(count), count
    return len(count), count


def default_cpu_streams(threads: int) -> int:
    """Batches the torch CPU network runs at once by default for ``threads`` threads: 2 for an even count of 2 or
    more (each on half the threads), else 1. Measured on 2 cores only (30 Nov 2026, AVX2 fp32:
    :meth:`SliceInferenceEngine._run_streamed_batches`; 1 Dec 2026, bf16 on AMX, where two bare one-thread lanes are
    slower than one two-thread lane but the engine's two streams still beat one: docs/speed.md)."""
    return 2 if threads >= 2 and threads % 2 == 0 else 1


def load_package(package_or_name: object, preprocessing_ready: Optional[Callable[[object], None]] = None) -> object:
    """Accept a loaded ``ModelPackage`` (anything with ``.preprocessing``) or a name/path to load.
    ``preprocessing_ready``: called with the package's preprocessing config once its metadata is validated,
    before the network is planned and built (``package.load_model_package``), at once for a loaded package."""
    if hasattr(package_or_name, "preprocessing"):
        if preprocessing_ready is not None:
            preprocessing_ready(package_or_name.preprocessing)
        return package_or_name
    from ..package import load_model_package

    # as given: a Path is always a file, while the text 'default' names the bundled model
    return load_model_package(package_or_name, device="cpu", preprocessing_ready=preprocessing_ready)


def preprocessing_config(package: object) -> object:
    """The package's ``PreprocessingConfig`` (converting a plain dict if needed)."""
    cfg = package.preprocessing
    if isinstance(cfg, dict):
        from ..preprocessing import PreprocessingConfig

        cfg = PreprocessingConfig.from_dict(cfg)
    return cfg


def resolve_backend(requested: str, device_type: str, custom_predictor: bool = False, precision: str = "auto") -> str:
    """The backend that will run: ``auto`` -> ``onnx`` on the CPU when onnx + onnxruntime import (and no custom
    batch predictor replaces the network), unless torch would run bf16 there (``--precision bf16``, or ``auto``
    on a CPU with native bf16): ONNX Runtime runs fp32 here, about 1.2x faster than torch fp32 but slower than
    torch bf16 (1.8x the time per batch on the bundled model); else ``torch``. ``torch``/``onnx`` are kept."""
    if requested != "auto":
        return requested
    torch_bf16 = precision == "bf16" or (precision == "auto" and device_type == "cpu" and cpu_has_native_bf16())
    if device_type == "cpu" and not custom_predictor and not torch_bf16:
        from .onnx_backend import onnx_available

        if onnx_available():
            return "onnx"
    return "torch"


def _batches(count: object, size_getter: Callable[[], int]) -> Iterator[List[int]]:
    """Consecutive index lists covering ``range(count)`` (or the list of slice indices ``count``, in order); the
    size is re-read each time (OOM back-off)."""
    indices = list(range(count)) if isinstance(count, numbers.Integral) else [int(i) for i in count]
    start = 0
    while start < len(indices):
        size = max(1, int(size_getter()))
        yield indices[start:start + size]
        start += size


def air_stack_slices(hu_zyx: object, threshold_hu: float, context: int, offset: float = 1.0,
                     chunk: int = 16) -> np.ndarray:
    """``(z,)`` bool: the slices whose whole 2.5D input stack (the slice and its ``context`` neighbours ``offset``
    slices away either side, edges replicated; both slices around a fractional position) lies below
    ``threshold_hu`` at every voxel. Given nothing but air, the bundled v3 network labels most of the slice liver
    (all its window channels 0: p(liver) 0.61 on average over a 352 x 352 grid), which the post-processing's air
    step then removes whole. ``hu_zyx``: a canonical CT ``(z, y, x)`` (an array or memory map), read ``chunk``
    slices at a time; a NaN makes a slice not air."""
    from ..preprocessing.preprocessor import context_positions

    count = int(hu_zyx.shape[0])
    air = np.zeros(count, dtype=bool)
    for start in range(0, count, chunk):
        block = np.asarray(hu_zyx[start:start + chunk])
        below = block < threshold_for(block, threshold_hu)
        air[start:start + block.shape[0]] = below.reshape(block.shape[0], -1).all(axis=1)
    if not air.any():
        return air
    positions = context_positions(np.arange(count), int(context), count, float(offset))
    return air[np.floor(positions).astype(np.int64)].all(axis=1) & air[np.ceil(positions).astype(np.int64)].all(axis=1)


def _short_error(exc: BaseException) -> str:
    """``Type: message`` of an exception, at most about 200 characters (for a warning line)."""
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _label_disagreement(reference: np.ndarray, candidate: np.ndarray) -> Tuple[int, float]:
    """Voxels (and their fraction of one class map's voxels) whose argmax label differs between two
    probability batches ``(n, K, H, W)``."""
    differing = int(np.count_nonzero(argmax_channels(reference) != argmax_channels(candidate)))
    return differing, differing / float(max(1, reference[:, 0].size))


def _to_device(tensor: "object", device: "object") -> "object":
    """``tensor`` on ``device`` (no copy when it is there already); one place, so tests can stand in for MPS."""
    return tensor if tensor.device == device else tensor.to(device)


def _float32_network(model: "object") -> "object":
    """``model`` itself when its floating-point parameters and buffers are float32, else a float32 copy (the caller's
    module keeps its dtype). A caller's network in half or bf16 (``model.half()``) met the engine's float32 input
    with torch's ``Input type (float) and bias type (c10::Half) should be the same`` traceback, or, on the ONNX
    backend, with advice to use ``--backend torch``, which failed the same way. fp16/bf16 -> fp32 is exact, and
    ``precision`` then decides the arithmetic as for any package."""
    import copy

    import torch

    tensors = list(model.parameters()) + list(model.buffers())
    if all(t.dtype == torch.float32 for t in tensors if t.is_floating_point()):
        return model
    return copy.deepcopy(model).float()


def _model_on_device(model: "object", device: "object") -> "object":
    """``model`` on ``device``: a copy in eval mode when it must move, so a shared package stays where it is; else
    the same module, untouched (the engine runs it in eval mode, :func:`~..models.eval_mode.eval_mode`)."""
    import copy

    params = list(model.parameters())
    current = params[0].device if params else device
    if current != device or device.type == "cuda":  # .to() and channels-last act in place: copy first
        return copy.deepcopy(model).eval().to(device)
    return model


class _Pending:
    """A batch whose result may still be in flight on the GPU (``event`` not yet reached). The result is the
    network-grid probabilities ``(n, K, H, W)``, or, when ``restored`` (the CUDA path restores on the GPU), the
    native-grid ``(labels, probability or None)``, each ``(n, y, x)`` uint8."""

    def __init__(self, indices: List[int], result: object, event: object = None, restored: bool = False,
                 non_finite: object = None, grid_pixels: int = 0) -> None:
        self.indices = indices
        self.result = result
        self.event = event
        self.restored = restored
        self.non_finite = non_finite  # restored only: per slice, network-grid pixels with a NaN/Inf probability
        self.grid_pixels = grid_pixels  # network-grid pixels per slice (H * W), for the non-finite message

    def non_finite_per_slice(self) -> Optional[np.ndarray]:
        """``(n,)`` int64 counts of network-grid pixels whose probabilities held NaN or Inf, per slice, for a
        batch restored on the GPU (counted there, copied back with the labels); None for other batches, whose
        probabilities are checked on the host. Call after :meth:`get`."""
        return None if self.non_finite is None else np.asarray(_as_numpy(self.non_finite), dtype=np.int64)

    def get(self) -> object:
        if isinstance(self.result, concurrent.futures.Future):  # a CPU stream's batch (_run_streamed_batches)
            self.result = self.result.result()
        if self.event is not None:
            self.event.synchronize()
        if self.restored:
            return tuple(None if part is None else _as_numpy(part) for part in self.result)  # type: ignore[union-attr]
        return _as_numpy(self.result)


def _as_numpy(result: object) -> np.ndarray:
    return result.numpy() if hasattr(result, "numpy") else result  # type: ignore[return-value]


def _concatenate_pending(indices: List[int], parts: List[_Pending]) -> _Pending:
    """One finished :class:`_Pending` from the pieces of a batch split after an out-of-memory error."""
    results = [part.get() for part in parts]
    if not parts[0].restored:
        return _Pending(indices, np.concatenate(results, axis=0))
    labels = np.concatenate([r[0] for r in results], axis=0)
    probability = None if results[0][1] is None else np.concatenate([r[1] for r in results], axis=0)
    counts = [part.non_finite_per_slice() for part in parts]
    non_finite = np.concatenate([np.zeros(len(part.indices), np.int64) if count is None else count
                                 for part, count in zip(parts, counts)], axis=0)
    return _Pending(indices, (labels, probability), restored=True, non_finite=non_finite,
                    grid_pixels=parts[0].grid_pixels)


def _to_pinned_host(tensor: "object") -> "object":
    """An asynchronous copy of a CUDA tensor into new pinned host memory (complete once an event recorded
    after it is reached)."""
    import torch

    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    return host


def trained_with_lr_flips(metadata: Optional[dict]) -> Optional[bool]:
    """Whether a package's training used left-right flip augmentation; None when the package does not say.

    Reads ``metadata["training"]["config"]["augmentation"]`` as written by ``livertumorseg train``; a missing
    ``flip_lr_probability`` means the library default, 0 (anatomy has handedness, so flips are off).
    """
    config = ((metadata or {}).get("training") or {}).get("config")
    if not isinstance(config, dict):
        return None
    augmentation = config.get("augmentation") or {}
    if augmentation.get("enabled", True) is False:
        return False
    return float(augmentation.get("flip_lr_probability", 0.0)) > 0.0


def check_flip_tta_allowed(metadata: Optional[dict]) -> None:
    """Refuse left-right flip TTA for a model trained without flips.

    A mirrored abdomen puts the liver on the patient's left, which such a model never saw: averaging in
    its prediction lowers accuracy (the sample CT's liver Dice: 0.980 -> 0.932 with the bundled model of 23 Nov
    2026; 0.979 -> 0.892 with v10, 2 Dec 2026, measured by an audit on a copy whose metadata claimed flips).
    """
    flips = trained_with_lr_flips(metadata)
    if flips is False:
        # segment_file, segment_volume and the engine take tta_flip=True; only SegmentationOptions takes tta=True
        tta = option_hint("--tta", "tta_flip=True (SegmentationOptions: tta=True)")
        raise InputError(f"{tta} averages in the prediction of the left-right mirrored CT, but this model was "
                         f"trained without mirroring (the liver is on the patient's right), so mirrored slices "
                         f"are unlike anything it saw and TTA would lower accuracy. Run without "
                         f"{option_hint('--tta', 'it')}, or use a model trained with augmentation "
                         f"flip_lr_probability > 0.")
    if flips is None:
        log.warning("warning: the model package does not say whether it was trained with left-right flips; flip TTA "
                    "only helps models that were.")


@contextlib.contextmanager
def cudnn_autotuning_off() -> Iterator[None]:
    """No cuDNN autotuning (``torch.backends.cudnn.benchmark``) inside, the caller's setting back after: each CT has
    its own network grid and a last, shorter batch, so the tuning is paid per CT; on an H100 it made the first
    500-slice CT's network 1.5 s against 0.7-0.96 s without, and a tuned second pass was no faster (0.14 s both).
    The engine set the flag to False for the whole process, so a notebook that had turned it on for its own
    training lost it after one segmentation. The flag is the process's: blocks overlapping on several threads (two
    engines' networks) turn it off at the first one's start and give the caller's setting back at the last one's end;
    each putting back what it found left it off for good when they ended in the order they started."""
    import torch

    with _AUTOTUNING_OFF_LOCK:
        if _autotuning_off["blocks"] == 0:
            _autotuning_off["callers"] = torch.backends.cudnn.benchmark
            torch.backends.cudnn.benchmark = False
        _autotuning_off["blocks"] += 1
    try:
        yield
    finally:
        with _AUTOTUNING_OFF_LOCK:
            _autotuning_off["blocks"] -= 1
            if _autotuning_off["blocks"] == 0:
                torch.backends.cudnn.benchmark = _autotuning_off["callers"]


_AUTOTUNING_OFF_LOCK = threading.Lock()
_autotuning_off = {"blocks": 0, "callers": False}
""":func:`cudnn_autotuning_off`'s blocks running now, on every thread, and the caller's setting they put back."""


def _cuda_amp_dtype(precision: str, amp: bool, device: "object" = None) -> "object":
    """CUDA autocast dtype on ``device``: ``fp32`` -> None; ``bf16`` -> bf16 (InputError if the GPU lacks it);
    ``auto`` -> bf16 where the GPU computes it natively (:func:`~.device.cuda_native_bf16`) else fp16, or None when
    ``amp`` is off."""
    import torch

    from .device import cuda_native_bf16

    if precision == "fp32" or (precision == "auto" and not amp):
        return None
    if precision == "bf16":
        if not cuda_native_bf16(device):
            raise InputError("This GPU has no native bf16 (compute capability below 8.0: before Ampere); use "
                             "--precision auto (fp16) or fp32.")
        return torch.bfloat16
    return torch.bfloat16 if cuda_native_bf16(device) else torch.float16


class SliceInferenceEngine:
    """Runs a model package slice by slice over CT volumes.

    ``package``: a loaded model package (``.model``, ``.preprocessing``) or a name/path for
    ``package.load_model_package``. ``device``: ``auto|cpu|cuda[:N]|mps|gpu`` (a GPU requested but absent -> CPU
    with a logged message, kept in ``device_message``; :func:`~.device.resolve_device`). ``batch_size``: slices per
    batch (None = from free GPU memory, or 8 on CPU). ``amp``: mixed precision on CUDA. ``tta_flip``: average
    softmax with the left-right flipped slice. ``backend``: ``torch``, ``onnx`` (ONNX Runtime, CPU) or ``auto``
    (ONNX Runtime on the CPU when onnx + onnxruntime are installed and torch would run fp32 there: about 1.2x faster
    than torch fp32, slower than torch bf16 (:func:`resolve_backend`); torch otherwise, and torch again with a
    logged message if the network cannot be exported). ``threads``: CPU threads (None = all cores).
    ``batch_predictor``: replaces the network with a function ``(n, C, H, W) -> probabilities (n, K, H, W)`` (tests,
    custom runtimes). ``precision``: ``auto`` (CUDA: bf16/fp16 autocast as ``amp`` says; CPU torch: bf16 autocast
    when the CPU computes bf16 natively, checked on the :data:`CHECK_SLICES` middle slices of the first volume
    against fp32 and dropped for fp32 when labels differ on more than :data:`BF16_MAX_DISAGREEMENT` of their voxels;
    ONNX Runtime: fp32), ``fp32``, or ``bf16`` (no check).
    """

    def __init__(self, package: object, device: str = "auto", batch_size: Optional[int] = None, amp: bool = True,
                 tta_flip: bool = False, backend: str = "torch", threads: Optional[int] = None,
                 batch_predictor: Optional[BatchPredictor] = None, precision: str = "auto",
                 cpu_streams: Optional[int] = None) -> None:
        import torch

        precision = check_precision(precision)
        if backend not in BACKENDS:
            raise InputError(f"Unknown backend '{backend}'; use one of {', '.join(BACKENDS)}.")
        batch_size = check_count("batch_size", "--batch-size", batch_size, MAX_BATCH_SIZE)
        threads = check_count("threads", "--threads", threads, MAX_THREADS)
        self.package = load_package(package)
        self.preprocessing = preprocessing_config(self.package)
        choice = resolve_device(device)
        if backend == "onnx" and choice.device.type != "cpu":
            choice.message = f"The ONNX backend runs on the CPU here; ignoring the {choice.device.type.upper()} device."
            choice.device = torch.device("cpu")
            log.warning("warning: %s", choice.message)
        self.device = choice.device
        self.device_message = choice.message
        # the failed bf16 check's warning (auto precision fell back to fp32), for the report of the volume it ran on
        self.precision_message = None  # type: Optional[str]
        self.backend = resolve_backend(backend, self.device.type, batch_predictor is not None, precision)
        self._backend_auto = backend == "auto"
        self.tta_flip = bool(tta_flip)
        if self.tta_flip:
            check_flip_tta_allowed(getattr(self.package, "metadata", None))
        self.batch_size = int(batch_size) if batch_size else None
        # the size before an out-of-memory back-off halved it: given back at the next CT (:meth:`_restore_batch_size`)
        self._batch_size_before_back_off = None  # type: Optional[int]
        self.threads = int(threads) if threads else default_inference_threads()
        streams = check_count("cpu_streams", "cpu_streams", cpu_streams, MAX_THREADS)
        self.cpu_streams = int(streams) if streams else default_cpu_streams(self.threads)
        if self.cpu_streams > self.threads:
            raise InputError(f"cpu_streams ({self.cpu_streams}) must be at most the threads ({self.threads}): each "
                             f"stream runs its batches on threads // cpu_streams threads.")
        self._batch_predictor = batch_predictor
        self._probability_out = None  # type: Optional[np.ndarray]
        self._scratch = None  # type: Optional[Tuple[np.ndarray, Optional[np.ndarray]]]  # (_restore_scratch)
        self._probability_everywhere = True
        self._class_index = 2
        self._onnx = None
        self.amp_dtype = None
        self.precision = precision
        self.cpu_dtype = None  # torch.bfloat16 while CPU bf16 autocast is on
        self._verify_cpu_dtype = False
        self._precision_check = None  # type: Optional[Dict[str, object]]
        self._precision_note = ""  # why precision="auto" runs fp32 on this CPU, for last_precision["note"]
        self._verify_device = False  # MPS: check the first volume's middle slices against the CPU
        self._device_check = None  # type: Optional[Dict[str, object]]
        self._cpu_model = None  # type: Optional[object]  # MPS: the CPU network to check against and fall back to
        self._cached = None  # type: Optional[Tuple[List[int], np.ndarray]]
        self._offered = None  # type: Optional[object]  # a PreparedInput for the next predict call (offer_prepared)
        # HU below which a slice whose whole 2.5D stack lies is not given to the network (labels 0, probability 0);
        # None runs every slice. The Segmenter sets it to the post-processing's air threshold while that step runs
        self.skip_air_below_hu = None  # type: Optional[float]
        # how many slices the last predict* call left out so (added up while accumulate_timings): the report's
        # air_slices_skipped
        self.last_air_slices_skipped = 0
        self._active = None  # type: Optional[List[int]]  # the slices this volume's network runs on
        self._device_batches = None  # type: Optional[object]  # a DeviceBatchBuilder during a CUDA volume
        self.used_offered = False  # whether the last predict call used the offered preparation
        self._working = 0  # calls under way (_own_threads)
        self.last_timings = {}  # type: Dict[str, float]
        self.last_precision = {}  # type: Dict[str, object]
        self.core_share = None  # type: Optional[object]  # a CoreShare while a batch run's helpers work beside us
        self.model = getattr(self.package, "model", None)
        if batch_predictor is None:
            if self.model is None:
                raise InputError("The model package has no network to run.")
            self.model = _float32_network(self.model)
            self._cpu_model = self.model if self.device.type == "mps" else None
            try:
                self.model = _model_on_device(self.model, self.device)
            except Exception as exc:  # noqa: BLE001 - MPS: a PyTorch without Metal, or a network it cannot hold
                if self.device.type != "mps":
                    raise
                self._fall_back_to_cpu(f"The Apple GPU (MPS) could not take the network ({_short_error(exc)})")
            if self.device.type == "cuda":
                self.model = self.model.to(memory_format=torch.channels_last)
                self.amp_dtype = _cuda_amp_dtype(precision, amp, self.device)
            elif self.device.type == "mps":
                if precision == "bf16":
                    raise InputError("--precision bf16 is not offered on an Apple GPU (MPS), which runs fp32 here; "
                                     "use --precision auto or fp32 (or --device cpu for bf16 on the CPU).")
                self._verify_device = True
            else:
                self._choose_cpu_precision(precision)
            if self.backend == "onnx":
                from .onnx_backend import OnnxSlicePredictor

                self._onnx = OnnxSlicePredictor(self.model, int(self.preprocessing.in_channels),
                                                threads=self.threads)

    # ------------------------------------------------------------------ public
    @property
    def device_description(self) -> str:
        """E.g. ``cuda (NVIDIA H100, 79.1 GiB free)`` or ``cpu (16 threads, onnx)``."""
        if self.device.type == "cuda":
            info = gpu_info(self.device)
            return f"cuda ({info['name']}, {info['free_bytes'] / 2 ** 30:.1f} GiB free)"
        if self.device.type == "mps":
            return "mps (Apple GPU, torch, fp32)"
        # before the first volume's check, "bf16" is only the plan (a batch run's first line said bf16, and its
        # cases then ran fp32 after the check)
        pending = " if it passes its check on the first CT" if self._verify_cpu_dtype and self.cpu_dtype else ""
        threads = f"{self.threads} thread{'' if self.threads == 1 else 's'}"
        streams = self._streams_for_this_run()
        if streams > 1:
            threads += f" as {streams} streams"
        return f"cpu ({threads}, {self.backend}, {self.precision_used}{pending})"

    @property
    def precision_used(self) -> str:
        """``fp32``, ``bf16`` or ``fp16``: what the network runs in now."""
        dtype = self.amp_dtype if self.device.type == "cuda" else self.cpu_dtype
        return {None: "fp32"}.get(dtype, str(dtype).replace("torch.", "").replace("bfloat16", "bf16")
                                   .replace("float16", "fp16"))

    def _choose_cpu_precision(self, precision: str) -> None:
        """Set ``cpu_dtype`` for the torch CPU path (see the class docstring for ``precision``)."""
        import torch

        if precision == "bf16" and self.backend == "onnx":
            bf16, fix = (option_hint("--precision bf16", "precision='bf16'"),  # a library call was told flags
                         option_hint("--backend torch or --precision fp32", "backend='torch' or precision='fp32'"))
            raise InputError(f"{bf16} runs on the torch backend only (ONNX Runtime runs fp32 here); use {fix}.")
        if self.backend == "onnx" or precision == "fp32":
            return
        if precision == "auto" and not cpu_has_native_bf16():
            # said in the report: "requested auto, used fp32" alone did not tell that bf16 was never considered
            self._precision_note = "fp32: this CPU has no native bf16 (AVX512-BF16 / AMX-BF16), where bf16 is slower"
            return
        if precision == "bf16" and not cpu_has_native_bf16():
            message = ("This CPU has no native bf16 (AVX512-BF16 / AMX-BF16); bf16 runs emulated and is slower than "
                       "fp32 (--precision auto or fp32 avoids it).")
            self.device_message = f"{self.device_message} {message}".strip() if self.device_message else message
            log.warning("warning: %s", message)
        import copy

        # channels-last lets oneDNN's bf16 convolutions skip reorders (measured 1.2x); copy, never change the package
        self.model = copy.deepcopy(self.model).to(memory_format=torch.channels_last)
        self.cpu_dtype = torch.bfloat16
        self._verify_cpu_dtype = precision == "auto"

    def offer_prepared(self, prepared_input: object) -> None:
        """Offer the next :meth:`predict` or :meth:`predict_with_probability` call a CT already reoriented and
        resampled (a :class:`~.prepared_input.PreparedInput`). That call uses it only when it is for the same CT
        object and this engine's preprocessing config (``PreparedInput.serves``), else it prepares the CT
        itself; either way the offer is gone after that call. Its seconds count as ``preprocess``."""
        self._offered = prepared_input

    def _canonical_of(self, volume: CTVolume) -> Tuple[CTVolume, object, object]:
        """``(canonical CT, reorientation, PreparedVolume or None)`` of ``volume``: the offered preparation when
        it serves this CT (:meth:`offer_prepared`), else a fresh canonical CT (prepared later); times them."""
        from ..orientation import canonicalize

        offered, self._offered = self._offered, None
        self.used_offered = offered is not None and offered.serves(volume, self.preprocessing)
        if self.used_offered:
            self._add_time("preprocess", offered.seconds)
            prepared, offered.prepared = offered.prepared, None  # freed with the network loop, not held beyond
            return offered.canonical, offered.reorientation, prepared
        start = time.perf_counter()
        canonical, reorientation = canonicalize(volume, copy=False)  # read once, by the preprocessing: a view
        self._add_time("reorient", time.perf_counter() - start)
        return canonical, reorientation, None

    def predict(self, volume: CTVolume, progress: Optional[ProgressCallback] = None,
                cancel: Optional[CancellationToken] = None) -> np.ndarray:
        """Labels ``(z, y, x)`` uint8 (0 bg, 1 liver, 2 tumor) on ``volume``'s own grid and orientation."""
        reporter = ProgressReporter(progress)
        reporter(0.0, "reorienting")
        self._reset_timings()
        canonical, reorientation, prepared = self._canonical_of(volume)
        start = time.perf_counter()  # the labels in the CT's own layout, filled through their canonical view
        result = np.zeros(reorientation.original_shape, dtype=np.uint8)
        labels_out = reorientation.canonical_view(result)
        self._add_time("reorient", time.perf_counter() - start)
        self._predict_canonical(canonical, reporter.sub(0.0, 0.98), cancel, prepared=prepared, labels_out=labels_out)
        if cancel is not None:
            cancel.raise_if_cancelled()
        reporter(1.0, "done")
        return result

    def predict_with_probability(self, volume: CTVolume, progress: Optional[ProgressCallback] = None,
                                 cancel: Optional[CancellationToken] = None, class_index: int = 2,
                                 probability_everywhere: bool = True) -> Tuple[np.ndarray, np.ndarray]:
        """``(labels, probability)``, both ``(z, y, x)`` uint8 on ``volume``'s grid and orientation.

        ``probability`` is the network's softmax probability of class ``class_index`` (2 = tumor, 1 = liver; 0,
        background, is refused: the map is 0 where the network does not run, outside its in-plane crop), before
        post-processing, scaled to 0..255 (``round(255 * p)``): one byte per voxel instead of a float copy.
        ``probability_everywhere=False``: the caller reads the probability only where ``labels`` is not
        background (post-processing and the lesion report read it inside tumor labels), so a slice whose
        labels are all background gets probability 0 without a restore, whatever its network probability
        (exact elsewhere); for a CT stored in another orientation it is then a view of the canonical map, not a
        contiguous copy (the copy made the zeros of every slice resident: 1 byte a voxel more at the peak).
        ``True`` (a probability map that is written out): exact in every voxel, C-contiguous.
        """
        reporter = ProgressReporter(progress)
        reporter(0.0, "reorienting")
        self._reset_timings()
        canonical, reorientation, prepared = self._canonical_of(volume)
        start = time.perf_counter()  # the labels in the CT's own layout, filled through their canonical view
        labels = np.zeros(reorientation.original_shape, dtype=np.uint8)
        if probability_everywhere:  # a map to write out: contiguous in the CT's own layout, filled the same way
            probability = np.zeros(reorientation.original_shape, dtype=np.uint8)
            probability_out = reorientation.canonical_view(probability)
        else:  # read inside the labels only: a view of the canonical map, whose slices never restored stay unallocated
            probability_out = np.zeros(canonical.shape_zyx, dtype=np.uint8)
            probability = reorientation.original_view(probability_out)
        labels_out = reorientation.canonical_view(labels)
        self._add_time("reorient", time.perf_counter() - start)
        self._predict_canonical(canonical, reporter.sub(0.0, 0.98), cancel, probability_out=probability_out,
                                class_index=class_index, probability_everywhere=probability_everywhere,
                                prepared=prepared, labels_out=labels_out)
        if cancel is not None:
            cancel.raise_if_cancelled()
        reporter(1.0, "done")
        return labels, probability

    def predict_canonical(self, canonical: CTVolume, progress: Optional[ProgressCallback] = None,
                          cancel: Optional[CancellationToken] = None, probability_out: Optional[np.ndarray] = None,
                          class_index: int = 2) -> np.ndarray:
        """Labels ``(z, y, x)`` uint8 for a volume already in canonical orientation.

        ``probability_out``: optional uint8 ``(z, y, x)`` array (canonical grid) that receives
        ``round(255 * p)`` of class ``class_index``, batch by batch.
        """
        self._reset_timings()
        return self._predict_canonical(canonical, progress, cancel, probability_out, class_index)

    def _predict_canonical(self, canonical: CTVolume, progress: Optional[ProgressCallback],
                           cancel: Optional[CancellationToken], probability_out: Optional[np.ndarray] = None,
                           class_index: int = 2, probability_everywhere: bool = True,
                           prepared: object = None, labels_out: Optional[np.ndarray] = None) -> np.ndarray:
        """:meth:`predict_canonical` adding to ``last_timings`` (not reset here). The engine lets go of
        ``probability_out`` when it returns (it kept the last CT's probability volume alive until the next).
        ``prepared``: ``canonical`` already on the network grid (a ``PreparedVolume``), or None. ``labels_out``:
        a zeroed uint8 array of the canonical shape that receives the labels and is returned (the canonical view of
        a map in the CT's own layout: no canonical copy to turn back, 1 byte a voxel less at the network's end);
        None: a new one."""
        try:
            with self._own_threads():
                return self._predict_canonical_into(canonical, progress, cancel, probability_out, class_index,
                                                    probability_everywhere, prepared, labels_out)
        finally:
            self._probability_out = None
            self._scratch = None

    def _restore_scratch(self, count: int, shape_yx: Tuple[int, ...], with_probability: bool
                         ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """uint8 ``(count, y, x)`` labels (and probability) slices a restore writes into where it cannot write into
        the volume (:func:`restore_targets`), kept for the CT's later batches: a new zeroed pair per batch
        (fresh pages each time) was 0.14-0.16 s CPU of a 300-slice CT's restore. Let go when the CT ends."""
        scratch = self._scratch
        if scratch is None or scratch[0].shape[0] < count or scratch[0].shape[1:] != tuple(shape_yx) \
                or (with_probability and scratch[1] is None):
            shape = (count,) + tuple(shape_yx)  # a batch: the later ones of the CT are no larger
            probability = np.empty(shape, np.uint8) if with_probability else None
            scratch = self._scratch = (np.empty(shape, np.uint8), probability)
        return scratch[0][:count], scratch[1][:count] if with_probability else None

    def _predict_canonical_into(self, canonical: CTVolume, progress: Optional[ProgressCallback],
                                cancel: Optional[CancellationToken], probability_out: Optional[np.ndarray],
                                class_index: int, probability_everywhere: bool = True,
                                prepared: object = None, labels_out: Optional[np.ndarray] = None) -> np.ndarray:
        from ..preprocessing import SlicePreprocessor

        reporter = progress if isinstance(progress, ProgressReporter) else ProgressReporter(progress)
        reporter(0.0, "preprocessing")
        if prepared is None:
            start = time.perf_counter()
            prepared = SlicePreprocessor(self.preprocessing).prepare(canonical)
            self._add_time("preprocess", time.perf_counter() - start)
        count = int(prepared.num_slices)
        if probability_out is not None and probability_out.shape != tuple(canonical.shape_zyx):
            raise ValueError(f"probability_out has shape {probability_out.shape}, expected {canonical.shape_zyx}")
        if isinstance(class_index, bool) or not isinstance(class_index, numbers.Integral):  # int(1.5): liver's
            raise InputError(f"class_index must be a whole number (a class of the network: 1 liver, 2 tumor), got "
                             f"{class_index!r}.")
        if probability_out is not None and int(class_index) < 1:
            # outside the network's in-plane crop (air around the body), and on all-background slices where the map
            # is read inside the labels only, it is 0 without a restore: right for liver and tumor, not background
            raise InputError(f"class_index {int(class_index)} is not a foreground class: the probability map is "
                             f"kept for 1 (liver) or 2 (tumor) only, and is 0 where the network did not run. For "
                             f"the background's probability use 1 - p(liver) - p(tumor) inside the network's field.")
        self._probability_out, self._class_index = probability_out, int(class_index)
        self._probability_everywhere = bool(probability_everywhere)
        labels = np.zeros(canonical.shape_zyx, dtype=np.uint8) if labels_out is None else labels_out
        if labels.shape != tuple(canonical.shape_zyx):
            raise ValueError(f"labels_out has shape {labels.shape}, expected {canonical.shape_zyx}")
        if count == 0:
            reporter(1.0, "segmenting")
            return labels
        self._active = None
        if not self.accumulate_timings:  # several passes (two-stage, footprint runs) add up, as last_timings do
            self.last_air_slices_skipped = 0
        if self.skip_air_below_hu is not None:
            start = time.perf_counter()
            air = air_stack_slices(canonical.array, float(self.skip_air_below_hu),
                                   int(self.preprocessing.context_slices), float(getattr(prepared, "context_offset", 1.0)))
            self._add_time("preprocess", time.perf_counter() - start)
            if air.any():
                labels[air] = 0
                if probability_out is not None:
                    probability_out[air] = 0
                self._active = [int(i) for i in np.flatnonzero(~air)]
                self.last_air_slices_skipped += int(np.count_nonzero(air))
                if not self._active:  # nothing but air: no network, no precision check (a later CT gets it)
                    self._active = None
                    self._start_precision_record()
                    self.last_precision["used"] = self.precision_used
                    reporter(1.0, "segmenting")
                    return labels
        self._restore_batch_size()
        if self.batch_size is None:
            self.batch_size = self._auto_batch_size(prepared)
        self._start_precision_record()
        self._cached = None  # never a stale batch from a cancelled or failed earlier volume
        if cancel is not None:  # the checks below run whole network batches before the batch loop's first look
            cancel.raise_if_cancelled()
        if self._verify_device and self.device.type == "mps":
            self._check_device_against_cpu(prepared, count)
        if self._verify_cpu_dtype and self.cpu_dtype is not None:
            self._check_cpu_precision(prepared, count, cancel)
        self._device_batches = self._device_batch_builder(prepared)
        try:
            self._run_batches(prepared, count if self._active is None else self._active, labels, reporter, cancel)
        finally:
            self._device_batches = None  # holds the prepared volume: not kept past it, also after an error
            self._active = None
        self._cached = None
        self.last_precision["used"] = self.precision_used
        reporter(1.0, "segmenting")
        return labels

    def _run_batches(self, prepared: object, count: object, labels: np.ndarray, reporter: "ProgressReporter",
                     cancel: Optional[CancellationToken]) -> None:
        """The batch loop of :meth:`_predict_canonical`: each batch's input (on the host, or on the GPU through
        :attr:`_device_batches`), the network, and the previous batch finished into ``labels`` while it runs."""
        if self._streams_for_this_run() > 1:
            self._run_streamed_batches(prepared, count, labels, reporter, cancel)
            return
        done = 0
        pending = None  # type: Optional[_Pending]
        count, order = _slice_count_and_order(count)
        for indices in _batches(order, lambda: self.batch_size):
            if cancel is not None:
                cancel.raise_if_cancelled()
            self._share_cores()
            checked = self._take_checked(indices)  # slices the precision or device check ran already
            if checked is not None:
                submitted = _Pending(indices, checked)
            else:
                x = None  # built on the GPU inside _submit_cuda (device_input); its host part counted below
                start = time.perf_counter()
                if self._device_batches is None:
                    x = np.ascontiguousarray(prepared.batch(indices), dtype=np.float32)
                self._add_time("preprocess", time.perf_counter() - start)
                start = time.perf_counter()
                submitted = self._submit(indices, x, prepared)
                built = 0.0 if self._device_batches is None else self._device_batches.take_host_seconds()
                self._add_time("preprocess", built)
                self._add_time("network", time.perf_counter() - start - built)
            if pending is not None:  # finish the previous batch while this one runs on the GPU
                done += self._finish(prepared, pending, labels)
                reporter(0.02 + 0.98 * done / count, "segmenting")
            pending = submitted
        if pending is not None:
            if cancel is not None:
                cancel.raise_if_cancelled()
            done += self._finish(prepared, pending, labels)

    def _streams_for_this_run(self) -> int:
        """How many batches the network runs at once in this volume's loop: :attr:`cpu_streams` on the torch CPU
        path (not ONNX Runtime, a batch predictor, a GPU), at most the batch size (so that the slices in flight
        stay within it), else 1."""
        if not self._uses_cpu_threads() or self.device.type != "cpu":
            return 1
        return max(1, min(int(self.cpu_streams), int(self.batch_size or DEFAULT_CPU_BATCH)))

    def _run_streamed_batches(self, prepared: object, count: object, labels: np.ndarray,
                              reporter: "ProgressReporter", cancel: Optional[CancellationToken]) -> None:
        """:meth:`_run_batches` with the network on ``S`` = :meth:`_streams_for_this_run` worker threads: up to S
        batches of ``batch_size // S`` slices run at once, each on ``threads // S`` torch threads (the slices in
        flight stay the batch size, so the memory check holds), while this thread builds the next batch's input
        and restores the finished ones in order. On 2 cores two one-thread streams ran the bundled network's 96
        slices in 4.3-4.9 s against 5.7-6.8 s for one two-thread network (30 Nov 2026, AMD EPYC Zen 3): torch's
        intra-op threads scale poorly on this small network (1.5-1.6x from one thread to two), batches side by
        side fully. This thread restores on one thread. With a core share (a batch run's helpers), only as many
        streams run as the network's threads allow (:meth:`_streams_allowed`). ``cancel`` is looked at before
        each batch; batches in flight finish first (at most S)."""
        streams = self._streams_for_this_run()
        per_stream = max(1, self.threads // streams)
        done = 0
        count, order = _slice_count_and_order(count)
        in_flight = collections.deque()  # type: collections.deque
        with torch_threads(1), concurrent.futures.ThreadPoolExecutor(streams, "network-stream") as pool:
            for indices in _batches(order, lambda: max(1, int(self.batch_size) // streams)):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                while in_flight and len(in_flight) >= self._streams_allowed(streams, per_stream):
                    done += self._finish(prepared, in_flight.popleft(), labels)
                    reporter(0.02 + 0.98 * done / count, "segmenting")
                checked = self._take_checked(indices)  # slices the precision check ran already
                if checked is not None:
                    in_flight.append(_Pending(indices, checked))
                    continue
                start = time.perf_counter()
                x = np.ascontiguousarray(prepared.batch(indices), dtype=np.float32)
                self._add_time("preprocess", time.perf_counter() - start)
                in_flight.append(_Pending(indices, pool.submit(self._stream_probabilities, x, per_stream)))
            while in_flight:
                done += self._finish(prepared, in_flight.popleft(), labels)
                reporter(0.02 + 0.98 * done / count, "segmenting")

    def _streams_allowed(self, streams: int, per_stream: int) -> int:
        """Batches that may run at once now: all ``streams``, or with a :attr:`core_share` as many as the threads
        it leaves the network hold streams of ``per_stream`` threads (at least one)."""
        if self.core_share is None:
            return streams
        return max(1, min(streams, self.core_share.network_threads(self.threads) // per_stream))

    def _stream_probabilities(self, x: np.ndarray, threads: int) -> np.ndarray:
        """One batch on a network stream's thread: :meth:`_torch_probabilities` on ``threads`` torch threads (a
        thread keeps the OpenMP count it first got, so each batch sets its own)."""
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        return self._torch_probabilities(x).numpy()

    def use_torch_for_several_slice_sizes(self, sizes: int) -> Optional[Tuple[str, Optional[str]]]:
        """Run torch, not an automatically chosen ONNX backend (``--backend auto``), for a CT given to the network in
        boxes of ``sizes`` (> 1) different sizes (an oblique CT's footprint runs): ONNX exports the network once per
        slice size, so a 20-slice CT tilted 20 degrees was exported 6 times and ran 2-3.5 x slower than torch (the
        inference audit). Said in ``device_message`` (that CT's report warning). Returns ``(backend, device
        message)`` to put back when the CT is done (:meth:`restore_backend`: a batch's later CTs run ONNX again),
        or None when nothing changed (``--backend onnx`` asked for by name, one size, torch already)."""
        if self.backend != "onnx" or not self._backend_auto or sizes <= 1:
            return None
        before = (self.backend, self.device_message)
        self.backend = "torch"  # the ONNX sessions are kept for the next CT
        self.device_message = (f"this CT's network runs in boxes of {sizes} sizes (an oblique CT's footprint), each "
                               f"needing its own ONNX export; torch ran on the CPU instead of ONNX Runtime")
        log.info("%s", self.device_message)
        return before

    def restore_backend(self, before: Optional[Tuple[str, Optional[str]]]) -> None:
        """Put back what :meth:`use_torch_for_several_slice_sizes` returned (nothing for None)."""
        if before is not None and self.backend == "torch" and self._onnx is not None:
            self.backend, self.device_message = before

    def predict_batch_probabilities(self, x_nchw: np.ndarray) -> np.ndarray:
        """Softmax probabilities ``(n, K, H, W)`` float32 for one preprocessed batch ``(n, C, H, W)``."""
        with self._own_threads():
            return self._submit(list(range(len(x_nchw))), np.ascontiguousarray(x_nchw, dtype=np.float32)).get()

    @contextlib.contextmanager
    def _own_threads(self) -> Iterator[None]:
        """While the engine works: on the CPU, torch's thread count (process-wide) is this engine's ``threads``,
        and the caller's again afterwards (an engine set it once, when built, and never gave it back, so a library
        caller's own ``torch.set_num_threads`` was lost, and a second engine's count replaced the first's for its
        runs); the network is in eval mode, and a caller's network (a package given as an object) gets its own
        train/eval flags back afterwards (:func:`~..models.eval_mode.eval_mode`)."""
        from ..models.eval_mode import eval_mode

        self._working += 1
        try:
            with torch_threads(self.threads if self.device.type == "cpu" else None), \
                    eval_mode(self.model, self._cpu_model):
                yield
        finally:
            self._working -= 1

    def use_core_share(self, share: Optional[object]) -> None:
        """Share the CPU's cores with helper threads (a :class:`~.core_share.CoreShare`, or None to stop): before
        each batch the torch CPU network takes ``share.network_threads(self.threads)`` threads. Stopping gives it
        all ``threads`` again (from its next call on; between calls torch has the caller's count)."""
        self.core_share = share

    # ------------------------------------------------------------------ internals
    accumulate_timings = False
    """When True, ``predict*`` add to ``last_timings`` instead of starting afresh (several passes, e.g. two-stage)."""

    def _uses_cpu_threads(self) -> bool:
        return self.device.type == "cpu" and self._onnx is None and self._batch_predictor is None

    def _share_cores(self) -> None:
        """With a :attr:`core_share` on the torch CPU path: set the network's threads for the next batch."""
        if self.core_share is None or not self._uses_cpu_threads():
            return
        import torch

        wanted = self.core_share.network_threads(self.threads)
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)

    def _reset_timings(self) -> None:
        if not self.accumulate_timings:
            self.last_timings = {}

    def _add_time(self, stage: str, seconds: float) -> None:
        self.last_timings[stage] = self.last_timings.get(stage, 0.0) + float(seconds)

    def _start_precision_record(self) -> None:
        check = None if self._precision_check is None else dict(self._precision_check, this_volume=False)
        self.last_precision = {"requested": self.precision, "used": self.precision_used, "check": check}
        if self._device_check is not None:
            self.last_precision["device_check"] = dict(self._device_check, this_volume=False)
        if self.backend == "onnx" or self._batch_predictor is not None:
            self.last_precision["note"] = ("custom batch predictor" if self._batch_predictor is not None
                                           else "ONNX Runtime runs fp32")
        elif self._precision_note and self.device.type == "cpu":
            self.last_precision["note"] = self._precision_note

    def _check_batch(self, prepared: object, count: int) -> Tuple[List[int], np.ndarray]:
        """The slices and input ``(n, C, H, W)`` the checks judge: the :data:`CHECK_SLICES`-slice block, aligned to
        multiples of it, nearest the middle of the slices the network runs (likely abdomen, not an empty end slice;
        on a scan of 16 slices or fewer, the first block), whatever the batch size. With the
        default CPU batch size it is one batch of the loop; its result is kept for the loop's batches within it
        (:meth:`_take_checked`)."""
        size = CHECK_SLICES
        active = list(range(count)) if self._active is None else self._active
        first = ((len(active) - 1) // size // 2) * size
        indices = active[first:first + size]
        start = time.perf_counter()
        x = np.ascontiguousarray(prepared.batch(indices), dtype=np.float32)
        self._add_time("preprocess", time.perf_counter() - start)
        return indices, x

    def _check_probabilities(self, x: np.ndarray, on_cpu: bool = False,
                             cancel: Optional[CancellationToken] = None) -> np.ndarray:
        """:meth:`_torch_probabilities` of the check's slices ``x`` ``(n, C, H, W)``, in batches of at most the batch
        size (which may have been set low for memory), ``cancel`` looked at between them; float32 ``(n, K, H, W)``."""
        step = max(1, int(self.batch_size))
        parts = []
        for i in range(0, len(x), step):
            if i and cancel is not None:
                cancel.raise_if_cancelled()
            parts.append(self._torch_probabilities(x[i:i + step], on_cpu).numpy())
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _take_checked(self, indices: List[int]) -> Optional[np.ndarray]:
        """The check's kept probabilities ``(n, K, H, W)`` for the loop's batch ``indices`` when the check ran every
        one of its slices (the batch is the check's block or lies within it), else None (the batch runs). The kept
        result is let go once the loop reaches the block's last slice (the loop runs the slices in order), also where
        that batch reaches past the block and so runs."""
        if self._cached is None:
            return None
        checked, probs = self._cached
        if checked[-1] in indices:
            self._cached = None
        row = {index: i for i, index in enumerate(checked)}
        if not all(index in row for index in indices):
            return None
        rows = [row[index] for index in indices]
        if rows == list(range(rows[0], rows[0] + len(rows))):
            return probs[rows[0]:rows[0] + len(rows)]  # a view: the default batch is the check's block itself
        return probs[rows]

    def _check_device_against_cpu(self, prepared: object, count: int) -> None:
        """Run the check batch on the Apple GPU (MPS) and on the CPU, both fp32; keep MPS when it ran and the
        labels differ on at most :data:`DEVICE_MAX_DISAGREEMENT` of the voxels, else move this engine to the CPU
        for good. Once per engine. The kept result is reused for that batch (nothing is computed twice)."""
        indices, x = self._check_batch(prepared, count)
        start = time.perf_counter()
        try:
            on_device, error = self._check_probabilities(x), ""
        except Exception as exc:  # noqa: BLE001 - an operator Metal lacks, or its memory: the CPU takes over
            on_device, error = None, _short_error(exc)
        seconds_device = time.perf_counter() - start
        start = time.perf_counter()
        on_cpu = self._check_probabilities(x, on_cpu=True)
        seconds_cpu = time.perf_counter() - start
        self._add_time("network", seconds_device + seconds_cpu)
        differing, fraction = (-1, 1.0) if on_device is None else _label_disagreement(on_cpu, on_device)
        passed = on_device is not None and fraction <= DEVICE_MAX_DISAGREEMENT
        self._verify_device = False  # only now: a check that could not finish (the CPU failing too) runs again
        self._device_check = {
            "device": "mps", "slices": [indices[0], indices[-1]], "voxels": int(on_cpu[:, 0].size),
            "differing_voxels": differing, "differing_fraction": fraction, "max_fraction": DEVICE_MAX_DISAGREEMENT,
            "error": error, "passed": passed, "device_seconds": round(seconds_device, 4),
            "cpu_seconds": round(seconds_cpu, 4)}
        self.last_precision["device_check"] = dict(self._device_check, this_volume=True)
        if passed:
            self._cached = (indices, on_device)
            return
        self._cached = (indices, on_cpu)
        self._fall_back_to_cpu(f"The Apple GPU (MPS) failed its check against the CPU ({error})" if error else
                               f"The Apple GPU (MPS) gave labels that differ from the CPU's on {100 * fraction:.3f} % "
                               f"of the check slices' voxels (more than {100 * DEVICE_MAX_DISAGREEMENT:.1f} %)")

    def _fall_back_to_cpu(self, reason: str) -> None:
        """Run the rest on the CPU (fp32, all threads) because of ``reason``, which becomes ``device_message``."""
        import torch

        self.device = torch.device("cpu")
        if self._cpu_model is not None:
            self.model = _model_on_device(self._cpu_model, self.device)
        self._verify_device = False
        if self._working:  # the rest of this call runs on the CPU, with this engine's threads (given back after)
            torch.set_num_threads(self.threads)
        self.device_message = f"{reason}; running on the CPU instead (slower)."
        log.warning("warning: %s", self.device_message)

    def _check_cpu_precision(self, prepared: object, count: int, cancel: Optional[CancellationToken] = None
                             ) -> None:
        """Run the check batch (:meth:`_check_batch`) in fp32 and bf16; keep bf16 when their labels differ on at
        most :data:`BF16_MAX_DISAGREEMENT` of the voxels, else switch this engine to fp32 for good. Once per
        engine. The kept result is reused for the loop's batches within the checked block (:meth:`_take_checked`;
        with the default batch size nothing is computed twice). ``cancel`` is looked at
        between the two passes and between their batches (a cancel took 2.5-5 s to be seen on 2 cores), before this
        engine's precision is touched, so a cancelled check runs again on the next volume."""
        indices, x = self._check_batch(prepared, count)
        start = time.perf_counter()
        reduced = self._check_probabilities(x, cancel=cancel)
        seconds_reduced = time.perf_counter() - start
        if cancel is not None:
            cancel.raise_if_cancelled()
        dtype, self.cpu_dtype = self.cpu_dtype, None
        start = time.perf_counter()
        try:
            full = self._check_probabilities(x, cancel=cancel)
            seconds_full = time.perf_counter() - start
            differing, fraction = _label_disagreement(full, reduced)
        except BaseException:
            # the fp32 pass or the comparison failed (out of memory on a large first CT, Ctrl-C): bf16 stays planned
            # and the check runs on the next volume; the engine ran every later CT of a batch in fp32, unchecked and
            # without a word
            self.cpu_dtype = dtype
            raise
        self._add_time("network", seconds_reduced + seconds_full)
        passed = fraction <= BF16_MAX_DISAGREEMENT
        self._verify_cpu_dtype = False
        self._precision_check = {
            "slices": [indices[0], indices[-1]], "voxels": int(full[:, 0].size), "differing_voxels": differing,
            "differing_fraction": fraction, "max_fraction": BF16_MAX_DISAGREEMENT, "passed": passed,
            "bf16_seconds": round(seconds_reduced, 4), "fp32_seconds": round(seconds_full, 4)}
        self.last_precision["check"] = dict(self._precision_check, this_volume=True)
        if passed:
            self.cpu_dtype = dtype
            self._cached = (indices, reduced)
            log.debug("bf16 check passed: %d of %d voxels differ from fp32 (%.4f %%)", differing,
                      full[:, 0].size, 100 * fraction)
        else:
            self._cached = (indices, full)
            # also the report's warning, as the other fallbacks (it was printed, and the report's "every warning of
            # the run" lacked it): of the volume checked only (the segmenter adds it where the record says
            # this_volume), as its numbers are that volume's; later volumes' records say fp32 ran, and why
            message = (f"bf16 labels differ from fp32 on {100 * fraction:.3f} % of the check slices' voxels (more than "
                       f"{100 * BF16_MAX_DISAGREEMENT:.1f} %); running this model in fp32.")
            self.precision_message = message
            log.warning("warning: %s", message)

    def _restore_batch_size(self) -> None:
        """Give back the batch size an out-of-memory back-off halved on an earlier CT: the smaller size lasts for
        the CT that ran out only (a transient shortage, another program briefly on the GPU, slowed every later CT
        of a batch run). A shortage that lasts costs one failed batch per CT."""
        if self._batch_size_before_back_off is not None:
            self.batch_size, self._batch_size_before_back_off = self._batch_size_before_back_off, None

    def _auto_batch_size(self, prepared: object) -> int:
        if self.device.type != "cuda":
            return DEFAULT_CPU_BATCH
        sample = prepared.batch([0])
        _, channels, height, width = sample.shape
        per_slice = bytes_per_slice(channels, 3, height, width, element_bytes=2 if self.amp_dtype else 4)
        if self.tta_flip:
            per_slice *= 2
        size = choose_batch_size(gpu_info(self.device)["free_bytes"], per_slice)
        log.debug("batch size %d from free GPU memory (%d bytes/slice)", size, per_slice)
        return size

    def _finish(self, prepared: object, pending: _Pending, labels: np.ndarray) -> int:
        start = time.perf_counter()
        result = pending.get()
        self._add_time("network", time.perf_counter() - start)  # waiting for the GPU; ~0 on the CPU
        start = time.perf_counter()
        with_probability = self._probability_out is not None
        if pending.restored:  # restored on the GPU (_submit_cuda): native-grid uint8 labels and probability
            native_labels, native_probability = result  # type: ignore[misc]
            non_finite = pending.non_finite_per_slice()
            if non_finite is not None and non_finite.any():  # counted on the GPU before its argmax
                self._raise_non_finite(pending.indices, non_finite, pending.grid_pixels)
            labels[pending.indices] = native_labels
            if with_probability:
                self._probability_out[pending.indices] = native_probability
            self._add_time("restore", time.perf_counter() - start)
            return len(pending.indices)
        probs = result  # type: np.ndarray  # type: ignore[assignment]
        if not np.isfinite(probs).all():  # argmax made NaN background: a failed network read as "no liver"
            bad = ~np.isfinite(probs).all(axis=1)  # (n, H, W)
            self._raise_non_finite(pending.indices, bad.reshape(len(bad), -1).sum(axis=1), bad[0].size)
        class_index = self._kept_probability_class(probs.shape[1])
        # slices with nothing but background (above and below the liver) are zeros without a restore; their
        # probability counts only when it is kept everywhere (a written map), not when read inside the labels
        skip = background_only_slices(probs, class_index if self._probability_everywhere else None)
        all_indices = np.asarray(pending.indices)
        indices = all_indices[~skip]
        if skip.any():
            labels[all_indices[skip]] = 0
            if with_probability:
                self._probability_out[all_indices[skip]] = 0
        if indices.size:  # native-grid labels (and round(255 p) of the class), (n, y, x) uint8
            kept = probs[~skip] if skip.any() else probs
            out = restore_targets(labels, self._probability_out if with_probability else None, indices)
            if out is not None:  # restored straight into the volume's slices (no batch-sized copies)
                prepared.restore_argmax(kept, class_index, out=out)
            else:  # a flipped view or slices apart: into the CT's reused scratch slices, then copied
                native_labels, native_probability = prepared.restore_argmax(
                    kept, class_index, out=self._restore_scratch(indices.size, labels.shape[1:], with_probability))
                labels[indices] = native_labels
                if with_probability:
                    self._probability_out[indices] = native_probability
        self._add_time("restore", time.perf_counter() - start)
        return len(pending.indices)

    def _raise_non_finite(self, indices: List[int], bad_per_slice: np.ndarray, grid_pixels: int) -> None:
        """Refuse a batch whose probabilities hold NaN or Inf (network grid): they became background (label 0,
        probability 0) without a word, so a network that overflowed or a faulty package read as "no liver".
        ``bad_per_slice``: ``(n,)`` counts of such pixels per slice of the batch; ``grid_pixels``: H * W."""
        from ..errors import ModelPackageError

        bad_per_slice = np.asarray(bad_per_slice, dtype=np.int64)
        slices = [indices[i] for i in np.flatnonzero(bad_per_slice)]
        fp32 = option_hint("--precision fp32", "precision='fp32'")
        hint = (f"Run it with {fp32}" if self.precision_used != "fp32" else
                "The model package is faulty (or its network overflows on this CT)")
        raise ModelPackageError(f"The network gave non-finite (NaN or Inf) probabilities on "
                                f"{int(bad_per_slice.sum())} of {len(indices) * int(grid_pixels)} network-grid pixels "
                                f"of slices {slices[0]}..{slices[-1]} (running {self.precision_used}), which the "
                                f"argmax would have made background. {hint}.")

    def _device_batch_builder(self, prepared: object) -> Optional[object]:
        """On the CUDA torch path, a :class:`~..preprocessing.device_input.DeviceBatchBuilder` that builds each
        batch's input on the GPU from the network-grid HU (None where the preprocessing needs the host path)."""
        if self.device.type != "cuda" or self._batch_predictor is not None or self._onnx is not None:
            return None
        from ..preprocessing.device_input import device_batch_builder

        return device_batch_builder(prepared)

    def _submit(self, indices: List[int], x: Optional[np.ndarray], prepared: object = None) -> _Pending:
        """Start the network on one batch. On CUDA with ``prepared`` (a PreparedVolume), the restore to the
        native grid runs on the GPU too and the pending result is already restored (:class:`_Pending`); ``x``
        None: the input is built on the GPU (:meth:`_device_batch_builder`)."""
        if self._batch_predictor is not None:
            return _Pending(indices, self._probabilities_numpy(self._batch_predictor, x, already_softmax=True))
        if self._onnx is not None:
            try:
                return _Pending(indices, self._probabilities_numpy(self._onnx, x, already_softmax=False))
            except InputError:
                raise
            except Exception as exc:  # noqa: BLE001 - export/runtime failure of an automatically chosen ONNX
                memory = out_of_memory_error(exc, batch_size_option=True)
                if memory is not None:  # torch needs as much: not a reason to blame the network or switch
                    raise memory from exc
                from .onnx_backend import OnnxExportError

                reason = str(exc) if isinstance(exc, OnnxExportError) else \
                    f"ONNX Runtime could not run this network ({type(exc).__name__}: {str(exc)[:200]})"
                if not self._backend_auto:
                    raise InputError(f"{reason}; run it with --backend torch.") from exc
                self._onnx, self.backend = None, "torch"
                self.device_message = f"{reason}; using torch on the CPU (fp32) instead."
                self.last_precision["note"] = "torch fp32 after ONNX Runtime failed"
                log.warning("warning: %s", self.device_message)
        if self.device.type == "cuda":
            return self._submit_cuda_with_backoff(indices, x, prepared)
        if self.device.type == "mps":
            try:
                return _Pending(indices, self._torch_probabilities(x).numpy())
            except Exception as exc:  # noqa: BLE001 - e.g. Metal out of memory on a larger CT: the CPU takes over
                self._fall_back_to_cpu(f"The Apple GPU (MPS) failed on a batch ({_short_error(exc)})")
        return _Pending(indices, self._torch_probabilities(x).numpy())

    def _probabilities_numpy(self, fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                             already_softmax: bool) -> np.ndarray:
        def run(batch: np.ndarray) -> np.ndarray:
            out = np.asarray(fn(batch), dtype=np.float32)
            n, _, h, w = batch.shape
            if out.ndim != 4 or out.shape[0] != n or out.shape[2:] != (h, w):
                # a custom predictor's wrong shape failed later with "IndexError: boolean index did not match"
                what = "batch predictor" if already_softmax else "network"
                raise InputError(f"The {what} returned shape {out.shape} for a batch of shape {batch.shape}; it "
                                 f"must return ({n}, K, {h}, {w}): one map per class for each input slice.")
            return out if already_softmax else softmax_channels(out)

        probs = run(x)
        if self.tta_flip:
            flipped = run(np.ascontiguousarray(x[..., ::-1]))
            probs = 0.5 * (probs + flipped[..., ::-1])
        return np.ascontiguousarray(probs, dtype=np.float32)

    def _forward_logits(self, xt: "object", model: "object" = None) -> "object":
        out = (model if model is not None else self.model)(xt)
        if isinstance(out, (tuple, list)):  # deep supervision outputs: main logits first
            out = out[0]
        return out

    def _torch_probabilities(self, x: np.ndarray, on_cpu: bool = False) -> "object":
        """CPU or MPS torch path: float32 probabilities tensor ``(n, K, H, W)`` on the CPU. ``on_cpu``: the CPU
        network in fp32 (the MPS check's reference)."""
        import torch

        model = self._cpu_model if on_cpu else self.model
        device = torch.device("cpu") if on_cpu else self.device
        dtype = None if on_cpu else self.cpu_dtype
        with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            xt = _to_device(torch.from_numpy(x), device)
            if dtype is not None:
                xt = xt.contiguous(memory_format=torch.channels_last)
            probs = torch.softmax(self._forward_logits(xt, model).float(), dim=1)
            if self.tta_flip:
                flipped = torch.softmax(self._forward_logits(torch.flip(xt, dims=[3]), model).float(), dim=1)
                probs = 0.5 * (probs + torch.flip(flipped, dims=[3]))
        return _to_device(probs, torch.device("cpu")).contiguous()

    def _submit_cuda(self, indices: List[int], x: Optional[np.ndarray], prepared: object = None) -> _Pending:
        """Queue one batch on the GPU. With ``prepared``, the probabilities are also restored to the native grid
        there (``prepared.restore_argmax_tensor``), so uint8 labels (and probability), not float32 maps of every
        class, are copied back to pinned host memory."""
        import torch

        # on the engine's GPU: the event below is recorded on the current device's stream, and pinned memory makes
        # its context there; with --device cuda:1 both were cuda:0's, so the wait returned before cuda:1's copies
        # to the host had arrived
        with torch.cuda.device(self.device), torch.inference_mode():
            if x is None:  # windows and 2.5D stacking on the GPU (bit-identical to prepared.batch)
                xt = self._device_batches.batch(indices, self.device)
            else:
                xt = torch.from_numpy(x).pin_memory().to(self.device, non_blocking=True)
            xt = xt.contiguous(memory_format=torch.channels_last)
            with cudnn_autotuning_off():
                with (torch.autocast("cuda", dtype=self.amp_dtype) if self.amp_dtype is not None
                      else contextlib.nullcontext()):  # no float32 placeholder (torch 2.1 refused one on the CPU)
                    logits = self._forward_logits(xt)
                    flipped_logits = self._forward_logits(torch.flip(xt, dims=[3])) if self.tta_flip else None
            probs = torch.softmax(logits.float(), dim=1)
            if flipped_logits is not None:
                probs = 0.5 * (probs + torch.flip(torch.softmax(flipped_logits.float(), dim=1), dims=[3]))
            non_finite = None
            if prepared is not None:
                # counted before the argmax makes NaN background; copied back with the labels (no extra sync)
                non_finite = _to_pinned_host((~torch.isfinite(probs)).any(dim=1).sum(dim=(1, 2)))
                restored = prepared.restore_argmax_tensor(probs, self._kept_probability_class(probs.shape[1]))
                host = tuple(None if part is None else _to_pinned_host(part) for part in restored)
            else:
                host = _to_pinned_host(probs)
            event = torch.cuda.Event()
            event.record()
        return _Pending(indices, host, event, restored=prepared is not None, non_finite=non_finite,
                        grid_pixels=int(probs.shape[2] * probs.shape[3]))

    def _kept_probability_class(self, num_classes: int) -> Optional[int]:
        """The class whose probability is kept (None when no probability is wanted); checked against the
        network's class count."""
        if self._probability_out is None:
            return None
        if not 0 <= self._class_index < num_classes:
            raise InputError(f"The network has {num_classes} classes; there is no class {self._class_index} "
                             f"to write probabilities for.")
        return self._class_index

    def _submit_cuda_with_backoff(self, indices: List[int], x: Optional[np.ndarray], prepared: object = None
                                  ) -> _Pending:
        """Submit; on CUDA out-of-memory halve ``batch_size`` (for the rest of this CT: :meth:`_restore_batch_size`)
        and run this batch in smaller pieces."""
        import torch

        try:
            return self._submit_cuda(indices, x, prepared)
        except torch.cuda.OutOfMemoryError:
            pass  # retried below, outside this block: inside it, the error's traceback held the failed batch's
            # tensors (input, activations, logits), which no empty_cache frees, so every smaller batch ran out too
        torch.cuda.empty_cache()
        if len(indices) <= 1:
            cpu = option_hint("--device cpu", "device='cpu'")
            raise ResourceError(f"The GPU ran out of memory even with one slice per batch; use {cpu} or free "
                                f"GPU memory (close other GPU programs).")
        step = max(1, len(indices) // 2)
        if self._batch_size_before_back_off is None:
            self._batch_size_before_back_off = self.batch_size
        self.batch_size = step
        log.warning("warning: GPU out of memory; retrying with batch size %d", step)
        parts = [self._submit_cuda_with_backoff(indices[s:s + step], None if x is None else x[s:s + step],
                                                prepared) for s in range(0, len(indices), step)]
        return _concatenate_pending(indices, parts)
