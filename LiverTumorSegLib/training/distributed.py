"""torch.distributed setup from the torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``): NCCL on CUDA, Gloo on CPU. Without those variables training runs as a
single process (rank 0 of 1). No process management here: launch with ``torchrun``.
"""
import datetime
import os
from dataclasses import dataclass
from typing import Dict, Optional

import torch
import torch.distributed as dist

from ..errors import InputError
from .launch_env import env_local_rank, env_rank, env_world_size


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group described by the environment (no-op for a single process)."""
    world = env_world_size()
    rank = env_rank()
    local = env_local_rank()
    if world <= 1:
        return DistInfo()
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local, False)
    # NCCL for CUDA where PyTorch has it; Windows builds have none (gloo also moves CUDA tensors, more slowly)
    backend = "nccl" if device_type == "cuda" and dist.is_nccl_available() else "gloo"
    if device_type == "cuda":
        if local >= torch.cuda.device_count():  # failed in set_device as an internal error
            raise InputError(f"torchrun started process {local} of this node, but it has {torch.cuda.device_count()} "
                             f"GPU(s): give --nproc_per_node at most the number of GPUs.")
        torch.cuda.set_device(local)
    # the others wait in a barrier while process 0 hashes the data and builds the slice cache (tens of minutes for a
    # LiTS-sized set), longer than NCCL's default 10 minutes, after which its watchdog stopped them
    dist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=process_group_timeout())
    return DistInfo(rank, world, local, True)


DDP_TIMEOUT_VARIABLE = "LIVERTUMORSEG_DDP_TIMEOUT_MINUTES"
"""Environment variable: minutes a process of a torchrun training waits for the others in one collective call
(default :data:`DDP_TIMEOUT_MINUTES`)."""
DDP_TIMEOUT_MINUTES = 180.0


def process_group_timeout(env: Optional[Dict[str, str]] = None) -> datetime.timedelta:
    """How long a collective call waits (:data:`DDP_TIMEOUT_VARIABLE`, else :data:`DDP_TIMEOUT_MINUTES`): long enough
    for process 0 to cache a large data set while the others wait. InputError for a value that is no positive number
    of minutes."""
    text = (os.environ if env is None else env).get(DDP_TIMEOUT_VARIABLE, "").strip()
    if not text:
        return datetime.timedelta(minutes=DDP_TIMEOUT_MINUTES)
    try:
        minutes = float(text)
    except ValueError:
        minutes = float("nan")
    if not (minutes > 0 and minutes < 1e6):
        raise InputError(f"{DDP_TIMEOUT_VARIABLE}={text!r} must be a positive number of minutes.")
    return datetime.timedelta(minutes=minutes)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_floats(values, info: DistInfo, device: Optional[torch.device] = None):
    """Rank 0's list of floats on every rank."""
    if not info.enabled:
        return list(values)
    t = torch.tensor([float(v) for v in values], dtype=torch.float64,
                     device=device if device is not None else "cpu")
    dist.broadcast(t, src=0)
    return t.cpu().tolist()


def all_reduce_mean(value: float, info: DistInfo, device: Optional[torch.device] = None) -> float:
    if not info.enabled:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=device if device is not None else "cpu")
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def cleanup(info: DistInfo) -> None:
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()
