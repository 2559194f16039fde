"""How many CPU threads the network may use while helper threads work beside it: :class:`CoreShare`.

A batch run (:func:`~.batch.segment_batch`) reads the next CT and post-processes, reports and writes the
previous one on two helper threads while the network runs on the current one. torch runs the network on one
OpenMP thread per core; a helper doing numpy, scipy or zlib work at the same time makes one runnable thread
more than there are cores, and every parallel region of the network then waits for its descheduled thread.
On 2 cores, 64 slices of the bundled network beside six post-processings took 3.5-4.9 s with 2 network
threads and 3.1-3.3 s with 1 (and each post-processing 0.49-0.60 s against 0.33-0.35 s).

So while ``k`` helpers are busy a network of ``threads`` threads gets ``threads - k`` (at least one), and all of
them again when the helpers are idle. The engine asks :meth:`CoreShare.network_threads` before each batch
(``SliceInferenceEngine.use_core_share``); helpers wrap their work in ``with share.busy():``. Only the torch CPU
path uses it: on a GPU the network does not run on the CPU's cores.
"""
import contextlib
import threading
from typing import Iterator


class CoreShare:
    """Counts the helper threads that are busy beside the network (see the module docstring)."""

    def __init__(self) -> None:
        self._busy = 0
        self._lock = threading.Lock()

    @property
    def busy_helpers(self) -> int:
        """How many helpers are inside :meth:`busy` now."""
        return self._busy

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Mark one helper thread busy for the duration of the ``with`` block."""
        with self._lock:
            self._busy += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1

    def network_threads(self, threads: int) -> int:
        """Threads for the network's next batch out of ``threads`` (the engine's): minus busy helpers, at least
        1."""
        return max(1, int(threads) - self._busy)
