"""A DataLoader whose worker processes run out of shared memory: said as what to do, not as an internal error.

The training's worker processes (``--num-workers``, 2 by default) hand each batch to the main process through
shared memory (``/dev/shm`` on Linux), and their queues' locks live there too. A Docker container has 64 MB of it
unless started with ``--shm-size``, and a few batches in flight fill that: the run ended with "internal error:
RuntimeError: Caught RuntimeError in DataLoader worker process 0 ... unable to allocate shared memory(shm)" and a
traceback, or, where not even the locks fit, with "No space left for a file ...; free disk space or choose another
output location", though no file and no disk was concerned.
"""
import errno
import os
import re
from typing import Any, Callable, Iterable, Iterator

from ..errors import InputError, option_hint

SHARED_MEMORY_FOLDER = "/dev/shm"
"""Where POSIX shared memory lives on Linux (what a container's ``--shm-size`` sets)."""

_SHARED_MEMORY_TEXT = re.compile(r"shared memory|/torch_\d+|Bus error", re.IGNORECASE)
"""What torch's messages about a worker's shared memory say: "unable to allocate shared memory(shm) for file
</torch_...>", older torch's "unable to write to file </torch_...>", and a worker killed by SIGBUS ("... is killed by
signal: Bus error. It is possible that dataloader's workers are out of shared memory")."""


def is_shared_memory_shortage(exc: BaseException) -> bool:
    """Whether ``exc``, raised while a loader with worker processes gave its next batch, says shared memory ran out:
    a torch message about it (:data:`_SHARED_MEMORY_TEXT`), or a disk-full error naming no file (a lock of the
    workers' queues, which names none; every file the training writes is named in its errors)."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC and exc.filename is None:
        return True
    return isinstance(exc, RuntimeError) and bool(_SHARED_MEMORY_TEXT.search(str(exc)))


def shared_memory_size_text() -> str:
    """' (/dev/shm: 64 MB here)', or '' where it cannot be asked (no /dev/shm: macOS, Windows)."""
    try:
        status = os.statvfs(SHARED_MEMORY_FOLDER)
    except (OSError, AttributeError):
        return ""
    size = status.f_blocks * status.f_frsize
    amount = f"{size / 2 ** 20:.0f} MB" if size >= 2 ** 20 else f"{size / 2 ** 10:.0f} kB"
    return f" ({SHARED_MEMORY_FOLDER}: {amount} here)"


def shared_memory_error(exc: BaseException, workers: int) -> InputError:
    """The error that says the ``workers`` worker processes ran out of shared memory (``exc``: torch's report), and
    what to do."""
    reason = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__
    return InputError(f"The {workers} data-loading worker process(es) of the training ran out of shared "
                      f"memory{shared_memory_size_text()}, where they hand the batches over ({reason}). Pass "
                      f"{option_hint('--num-workers 0', 'num_workers=0')} (batches made in the training process, "
                      f"slower), or give the machine more shared memory (a Docker container has 64 MB unless "
                      f"started with --shm-size, e.g. docker run --shm-size=2g), and run again.")


def batches_of(loader: Iterable[Any], workers: int) -> Iterator[Any]:
    """The batches of ``loader``; with worker processes (``workers`` > 0), a shortage of shared memory while one is
    made or handed over (:func:`is_shared_memory_shortage`) raises :func:`shared_memory_error` instead. Errors of
    the caller's own work on a batch are not looked at (they are raised at its ``yield``, not here)."""
    if workers > 0:  # before torch's iterator: one that fails half-built prints a traceback when it is collected
        _raising_named(lambda: _make_the_workers_locks(workers), workers)
    iterator = _raising_named(lambda: iter(loader), workers)
    while True:
        try:
            batch = _raising_named(lambda: next(iterator), workers)
        except StopIteration:
            return
        yield batch


def worker_context() -> Any:
    """The multiprocessing context the training's worker processes start from: the start method the caller chose
    (``multiprocessing.set_start_method``), else the platform's default (the first of
    ``multiprocessing.get_all_start_methods()``), taken without choosing it for the whole process. A DataLoader
    without a context, or ``multiprocessing.Queue()``, fixed the process-wide method, so a caller's
    ``multiprocessing.set_start_method('spawn')`` after a training raised "context has already been set"."""
    import multiprocessing

    method = multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]
    return multiprocessing.get_context(method)


def _make_the_workers_locks(workers: int) -> None:
    """Make, all at once, and drop the event and queues a DataLoader iterator with ``workers`` workers makes first
    (one queue per worker and one for the results): their locks and semaphores live in shared memory."""
    context = worker_context()
    queues = [context.Queue() for _ in range(workers + 1)]
    context.Event()
    for queue in queues:
        queue.close()


def _raising_named(action: Callable[[], Any], workers: int) -> Any:
    """``action()``, a shared-memory shortage of the loader's workers raised as :func:`shared_memory_error`."""
    try:
        return action()
    except (OSError, RuntimeError) as exc:
        if workers <= 0 or not is_shared_memory_shortage(exc):
            raise
        raise shared_memory_error(exc, workers) from exc
