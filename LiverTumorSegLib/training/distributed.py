"""torch.distributed setup from the torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``): NCCL on CUDA, Gloo on CPU. Without those variables training runs as a
single process (rank 0 of 1). No process management here: launch with ``torchrun``.
"""
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

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
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank, world, local, True)


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
