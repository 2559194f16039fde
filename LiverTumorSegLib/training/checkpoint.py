"""Training checkpoints: plain tensors and dicts only, written atomically, loaded with ``weights_only=True``.

A checkpoint holds ``model``, ``optimizer``, ``scheduler``, ``scaler`` state dicts, ``rng`` (torch CPU and
CUDA generator states as uint8 tensors), ``epoch`` (epochs completed, or the epoch in progress when
``step_in_epoch > 0``), ``step_in_epoch``, ``global_step``, ``config`` (TrainConfig JSON string) and
``state`` (JSON string: history, best metric, early-stopping counters). Nothing is pickled, so loading
cannot run code.
"""
import json
import os
from pathlib import Path
from typing import Any, Dict, Sequence, Union

import torch

from ..configutil import short_repr
from ..errors import InputError, raise_if_out_of_memory
from ..fileutil import apply_default_permissions, make_temporary_file, replace_file, write_errors_naming
from ..package import refusal_reason

PathLike = Union[str, Path]


def rng_state() -> Dict[str, torch.Tensor]:
    """Current torch RNG states as tensors (CPU, plus every CUDA device when CUDA is initialised)."""
    state = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            state[f"torch_cuda_{i}"] = s
    return state


def set_rng_state(state: Dict[str, torch.Tensor]) -> None:
    """Restore what :func:`rng_state` saved (CUDA states only for devices that exist)."""
    if "torch_cpu" in state:
        torch.set_rng_state(state["torch_cpu"].to(torch.uint8).cpu())
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            key = f"torch_cuda_{i}"
            if key in state:
                torch.cuda.set_rng_state(state[key].to(torch.uint8).cpu(), i)


def save_checkpoint(path: PathLike, payload: Dict[str, Any]) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then atomic rename onto ``path``
    (permissions ``0666 & ~umask`` like every other output)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(make_temporary_file(path.parent, path.name, ""))  # also removes those a killed run left
    try:
        with write_errors_naming(path), open(tmp, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        apply_default_permissions(tmp)  # mkstemp made it 0600; other outputs are 0666 & ~umask
        replace_file(tmp, str(path))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


CHECKPOINT_KEYS = ("model", "optimizer", "epoch", "global_step", "config")


def load_checkpoint(path: PathLike, map_location: Any = "cpu", required: Sequence[str] = CHECKPOINT_KEYS
                    ) -> Dict[str, Any]:
    """Load with ``weights_only=True``. Raises :class:`InputError` for a missing or unreadable file, or one
    without the ``required`` keys (a training checkpoint's by default)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"No checkpoint at '{path}' to resume from; start without --resume, or point "
                         f"--log-dir at the interrupted run's folder.")
    try:
        payload = torch.load(str(path), map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt / foreign file
        raise_if_out_of_memory(exc, str(path))  # the advice was to delete the checkpoint
        raise InputError(f"Checkpoint '{path}' cannot be read and was refused: {refusal_reason(exc, path)}; delete it "
                         f"(or its run folder) to start over.") from None
    if not isinstance(payload, dict):
        raise InputError(f"Checkpoint '{path}' holds a {type(payload).__name__}, not a training checkpoint; it was "
                         f"not written by livertumorseg train. Delete it to start over.")
    for key in required:
        if key not in payload:
            raise InputError(f"Checkpoint '{path}' lacks '{key}'; it was not written by livertumorseg train. Delete "
                             f"it (or its run folder) to start over.")
    wrong = malformed_entry(payload)
    if wrong:
        raise InputError(f"Checkpoint '{path}' holds {wrong}; it is damaged or was not written by livertumorseg "
                         f"train. Delete it (or its run folder) to start over.")
    return payload


COUNT_KEYS = ("epoch", "step_in_epoch", "global_step")
JSON_OBJECT_KEYS = ("config", "state")


def malformed_entry(payload: Dict[str, Any]) -> str:
    """What of a loaded checkpoint ``payload`` is not as :func:`save_checkpoint`'s callers write it, in words ("" when
    nothing): a count (:data:`COUNT_KEYS`) that is no whole number >= 0, a JSON object (:data:`JSON_OBJECT_KEYS`) that
    is not one, or a torch CPU random state (``rng``) of another size than this torch's. Each ended a --resume in an
    "internal error" (JSONDecodeError, ValueError, AttributeError, RuntimeError). Only the keys present are checked."""
    for key in COUNT_KEYS:
        value = payload.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"{key} = {short_repr(value, 40)}, not a whole number >= 0"  # repr() built it whole first
    for key in JSON_OBJECT_KEYS:
        try:
            value = decode_json(payload, key)
        except (ValueError, RecursionError):  # RecursionError: nested thousands deep
            return f"a '{key}' that is not valid JSON"
        if value is not None and not isinstance(value, dict):
            return f"a '{key}' that is a {type(value).__name__}, not a JSON object"
    rng = payload.get("rng", {})
    cpu = rng.get("torch_cpu") if isinstance(rng, dict) else None
    if not isinstance(rng, dict) or (cpu is not None and (not isinstance(cpu, torch.Tensor)
                                                          or cpu.numel() != torch.get_rng_state().numel())):
        return "a random state ('rng') of another form than this PyTorch's"
    return ""


def decode_json(payload: Dict[str, Any], key: str) -> Any:
    value = payload.get(key)
    return json.loads(value) if isinstance(value, str) else value
