"""The process's place under ``torchrun``, read from the environment it sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``) without importing torch, so the command line can word its messages without loading it.
Outside torchrun: rank 0 of 1."""
import os


def env_world_size() -> int:
    """The number of processes torchrun started (``WORLD_SIZE``; 1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def env_rank() -> int:
    """This process's rank under torchrun (``RANK``; 0 outside torchrun)."""
    return int(os.environ.get("RANK", "0") or 0)


def env_local_rank() -> int:
    """This process's rank on its machine under torchrun (``LOCAL_RANK``; 0 outside torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0)
