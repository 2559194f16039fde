"""Choosing where inference runs: device selection with CPU fallback, GPU facts, batch size from memory.

Nothing here runs a model. ``resolve_device`` turns the user's ``auto|cpu|cuda[:N]|mps|gpu`` into a
``torch.device`` (falling back to CPU with a message, never crashing, when a GPU is asked for but absent);
``choose_batch_size`` is the pure arithmetic that turns free memory into a batch size.
"""
import contextlib
import functools
import logging
import numbers
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional

from ..asciinumbers import is_ascii_digits
from ..errors import InputError, option_hint

log = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps", "gpu")
"""``mps``: Apple GPUs (Metal: Apple silicon, or an AMD GPU in an Intel Mac); ``gpu``: CUDA when present, else
MPS (the Slicer panel's "GPU")."""


@dataclass
class DeviceChoice:
    """The device inference will use and, when it differs from what was asked, why (``message``)."""

    device: "object"  # torch.device
    requested: str
    message: str = ""

    @property
    def is_cuda(self) -> bool:
        return getattr(self.device, "type", "") == "cuda"


def mps_is_available() -> bool:
    """True when this PyTorch can run on an Apple GPU (Metal Performance Shaders)."""
    import torch

    backend = getattr(getattr(torch, "backends", None), "mps", None)
    try:
        return bool(backend is not None and backend.is_available())
    except Exception:  # noqa: BLE001 - an old or odd build: no MPS
        return False


def cuda_index(text: str) -> Optional[int]:
    """The N of ``cuda:N`` written in ASCII digits ("²".isdigit() is True, and int() then fails), else None."""
    suffix = text[len("cuda:"):] if text.startswith("cuda:") else ""
    return int(suffix) if is_ascii_digits(suffix) else None


TORCH_FOR_NUMPY_2 = (2, 3)
"""The first torch built against numpy 2: an older one (2.1, 2.2, which ``torch>=2.1`` allows) beside numpy 2 printed
'Failed to initialize NumPy: _ARRAY_API not found' and ended segment with 'internal error: RuntimeError: Numpy is not
available ... please report it' (the minimum-versions audit; pip resolves exactly that for torch 2.1 with MONAI
1.3.2, and Slicer 5.10 holds numpy 2)."""


def _release(version: str) -> tuple:
    """The leading numbers of a version string: ``"2.2.2+cu118"`` -> ``(2, 2, 2)``."""
    import re

    match = re.match(r"\s*(\d+(?:\.\d+)*)", str(version))
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def check_torch_numpy(torch_version: str, numpy_version: str, torch_module: Any = None) -> None:
    """InputError when torch older than :data:`TORCH_FOR_NUMPY_2` runs beside numpy 2 or newer: such a torch cannot
    exchange arrays with it, and every run would end in torch's 'Numpy is not available'. With ``torch_module``
    (the imported torch) one array is also handed over, which catches builds the version does not tell (users report
    'Numpy is not available' for Windows wheels of torch 2.3.1 beside numpy 2 and for torch 2.4.0 beside numpy 2.1:
    pytorch/pytorch#128860, #135013)."""
    needed = ".".join(str(v) for v in TORCH_FOR_NUMPY_2)
    advice = (f"install torch>={needed} (pip install 'torch>={needed}', or the build for your GPU from pytorch.org), or "
              f"numpy 1 (pip install 'numpy<2')")
    if _release(numpy_version)[:1] >= (2,) and () < _release(torch_version)[:2] < TORCH_FOR_NUMPY_2:
        raise InputError(f"PyTorch {torch_version} was built for numpy 1 and cannot exchange arrays with the installed "
                         f"numpy {numpy_version}: {advice}.")
    if torch_module is not None:
        import numpy

        try:
            torch_module.from_numpy(numpy.zeros(1, dtype=numpy.float32))
        except RuntimeError as error:  # 'Numpy is not available'
            other = " or numpy 1 (pip install 'numpy<2')" if _release(numpy_version)[:1] >= (2,) else ""
            raise InputError(f"PyTorch {torch_version} cannot exchange arrays with the installed numpy "
                             f"{numpy_version} ({error}): install a newer torch (the build for your GPU from "
                             f"pytorch.org){other}, or reinstall the one you have.") from None


def resolve_device(requested: str = "auto", cuda_available: Optional[bool] = None,
                   mps_available: Optional[bool] = None) -> DeviceChoice:
    """Map ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` / ``mps`` / ``gpu`` to a torch device.

    ``auto`` and ``gpu`` pick CUDA when available, else an Apple GPU (MPS), else the CPU (``gpu``
    with a message). ``cuda`` or ``mps`` that is not there falls back to CPU (as TotalSegmentator does) and sets
    ``message`` (logged as a warning; ``segment`` puts it into the report's ``warnings``). An MPS choice is
    checked against the CPU on the first batch by the engine, which falls back to the CPU when they disagree.
    ``cuda_available`` / ``mps_available`` override detection (tests). A torch too old for the installed numpy is
    refused first (:func:`check_torch_numpy`).
    """
    import numpy
    import torch

    check_torch_numpy(torch.__version__, numpy.__version__, torch)

    text = str(requested or "auto").strip().lower()
    if text not in DEVICE_CHOICES and not text.startswith("cuda:"):
        raise InputError(f"Unknown device '{requested}'; use one of {', '.join(DEVICE_CHOICES)} (or cuda:N).")
    has_cuda = torch.cuda.is_available() if cuda_available is None else bool(cuda_available)
    has_mps = mps_is_available() if mps_available is None else bool(mps_available)
    if text == "cpu":
        return DeviceChoice(torch.device("cpu"), text)
    if text in ("auto", "gpu") and (has_cuda or has_mps):
        return DeviceChoice(torch.device("cuda" if has_cuda else "mps"), text)
    if text == "auto":
        return DeviceChoice(torch.device("cpu"), text)
    if text == "mps" and has_mps:
        return DeviceChoice(torch.device("mps"), text)
    if text in ("gpu", "mps"):
        what = "A GPU (CUDA or Apple MPS)" if text == "gpu" else "An Apple GPU (MPS)"
        message = (f"{what} was requested ({_device_option(text)}) but this PyTorch (torch {torch.__version__}) sees "
                   f"none; running on the CPU instead (slower).")
        log.warning("warning: %s", message)
        return DeviceChoice(torch.device("cpu"), text, message)
    if not has_cuda:
        message = (f"CUDA was requested ({_device_option(text)}) but is not available in this PyTorch "
                   f"(torch {torch.__version__}); running on the CPU instead (slower).")
        log.warning("warning: %s", message)
        return DeviceChoice(torch.device("cpu"), text, message)
    if text.startswith("cuda:"):
        index = cuda_index(text)
        if index is None or not 0 <= index < torch.cuda.device_count():
            raise InputError(f"CUDA device '{requested}' does not exist; this machine has "
                             f"{torch.cuda.device_count()} GPU(s) (cuda:0 ..).")
    return DeviceChoice(torch.device(text), text)


def _device_option(text: str) -> str:
    """The device request as the caller gave it: ``--device gpu`` on the command line (the Slicer panel shows its
    Device choice for those words), ``device='gpu'`` from Python, which was told the command-line flag."""
    return option_hint(f"--device {text}", f"device='{text}'")


CUDA_NATIVE_BF16_CAPABILITY = (8, 0)
"""The compute capability from which an NVIDIA GPU computes bf16 natively (Ampere: A100, RTX 30xx, and newer)."""


def cuda_native_bf16(device: "object" = None) -> bool:
    """Whether the CUDA ``device`` (None: the current one) computes bf16 natively, by its compute capability (from
    :data:`CUDA_NATIVE_BF16_CAPABILITY`): ``torch.cuda.is_bf16_supported()`` answers True on a T4 or V100 from torch
    2.3 on (it counts emulation), and judges the current device, not ``cuda:1`` (the GPU code audit); on those GPUs
    bf16 convolutions are emulated, slow, or refused by cuDNN."""
    import torch

    index = getattr(device, "index", None) if device is not None and not isinstance(device, int) else device
    if index is None:
        index = torch.cuda.current_device()
    return tuple(torch.cuda.get_device_capability(index)) >= CUDA_NATIVE_BF16_CAPABILITY


def gpu_info(device: "object") -> Dict[str, object]:
    """Name, total and free memory (bytes) of a CUDA device; ``{}`` for CPU."""
    import torch

    if getattr(device, "type", "") != "cuda":
        return {}
    index = device.index if device.index is not None else torch.cuda.current_device()
    free, total = torch.cuda.mem_get_info(index)
    return {"name": torch.cuda.get_device_name(index), "total_bytes": int(total), "free_bytes": int(free),
            "bf16": cuda_native_bf16(index)}


MAX_BATCH_SIZE = 4096
"""The largest inference batch (``--batch-size``, slices), as training's: 10,000,000 allocated 115 GiB of scratch
for a 112-slice CT and failed on memory, and a 23-digit number ended in an internal error (the command-line audit);
a batch of 4096 slices of 512 x 512 in 3 channels is 12 GiB of input alone."""

MAX_THREADS = 1024
"""The most CPU threads ``--threads`` takes: torch refused 3,000,000,000 with an internal OverflowError, and a
count far above the cores only slows the network (2,000 on 2 cores: 7x slower)."""


def check_count(name: str, flag: str, value: Any, maximum: Optional[int] = None) -> Optional[int]:
    """``value`` as an int: None (the default) or a whole number from 1 to ``maximum``; InputError naming ``name``
    and ``flag`` otherwise (bools, floats, text, 0, negatives)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1 or (
            maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise InputError(f"{name} ({flag}) must be a whole number of at least 1{upper}, or unset (got {value!r}).")
    return int(value)  # numpy integers too


def cpu_thread_count() -> int:
    """CPU cores this process may use (respects affinity masks / container limits where visible)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_inference_threads() -> int:
    """The CPU threads the network uses when none is given (``--threads``): ``OMP_NUM_THREADS`` where it is set to a
    whole number of 1 or more (a shared server's or a job scheduler's limit, which torch itself and ``train``
    follow; at most :func:`cpu_thread_count`), else every core this process may use. Before, segment took every
    core whatever the variable said."""
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    try:
        wanted = int(text)
    except ValueError:
        return cpu_thread_count()
    return min(wanted, cpu_thread_count()) if wanted >= 1 else cpu_thread_count()


@contextlib.contextmanager
def torch_threads(count: Optional[int]) -> Iterator[None]:
    """torch's CPU thread count (process-wide) is ``count`` inside the ``with`` block (None: left as it is) and
    what it was before afterwards, also after an error or when the block changed it."""
    import torch

    before = torch.get_num_threads()
    if count and int(count) != before:
        torch.set_num_threads(int(count))
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def bytes_per_slice(in_channels: int, num_classes: int, height: int, width: int, feature_factor: float = 64.0,
                    element_bytes: int = 2) -> int:
    """Rough device memory of one slice through a 2D segmentation net, bytes.

    Activations dominate: about ``feature_factor`` feature maps of size ``height x width`` at
    ``element_bytes`` (2 for fp16/bf16 autocast, 4 for fp32), plus input and float32 output/softmax.
    """
    hw = int(height) * int(width)
    activations = feature_factor * hw * element_bytes
    io = (in_channels + 2 * num_classes) * hw * 4
    return int(activations + io)


def choose_batch_size(free_bytes: int, per_slice_bytes: int, fraction: float = 0.6, minimum: int = 1,
                      maximum: int = 64) -> int:
    """Largest batch that fits in ``fraction`` of ``free_bytes``, clamped to ``[minimum, maximum]``."""
    if per_slice_bytes <= 0:
        raise ValueError("per_slice_bytes must be positive")
    fit = int((float(free_bytes) * fraction) // per_slice_bytes)
    return int(min(max(fit, minimum), maximum))


DEFAULT_CPU_BATCH = 8

PRECISIONS = ("auto", "fp32", "bf16")

# /proc/cpuinfo flags of CPUs that compute bf16 natively: x86 AVX512-BF16 / AMX-BF16, Arm "bf16" (FEAT_BF16).
# Without them PyTorch emulates bf16 on the CPU, which is slower than fp32.
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


@functools.lru_cache(maxsize=1)
def _proc_cpuinfo() -> Optional[str]:
    """``/proc/cpuinfo`` read once per process (the backend choice and the engine's precision both ask; on a
    many-core machine the file is a few hundred KB), or None where it does not exist."""
    try:
        with open("/proc/cpuinfo", "r", encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def cpu_bf16_flags(cpuinfo_text: Optional[str] = None) -> List[str]:
    """The native-bf16 flags this CPU reports (``/proc/cpuinfo`` ``flags`` / ``Features`` lines), sorted.

    ``cpuinfo_text`` overrides reading the file (tests). Empty where the file does not exist (macOS, Windows):
    there ``--precision auto`` keeps fp32 on the CPU.
    """
    if cpuinfo_text is None:
        cpuinfo_text = _proc_cpuinfo()
        if cpuinfo_text is None:
            return []
    found = set()
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            found.update(flag for flag in value.split() if flag in _BF16_CPU_FLAGS)
    return sorted(found)


def cpu_has_native_bf16(cpuinfo_text: Optional[str] = None) -> bool:
    """True when the CPU computes bf16 natively (see :func:`cpu_bf16_flags`), so bf16 autocast is faster."""
    return bool(cpu_bf16_flags(cpuinfo_text))


def check_precision(precision: str) -> str:
    """``precision`` lower-cased if it is one of :data:`PRECISIONS`, else InputError."""
    text = str(precision or "auto").strip().lower()
    if text not in PRECISIONS:
        raise InputError(f"Unknown precision '{precision}'; use one of {', '.join(PRECISIONS)}.")
    return text
