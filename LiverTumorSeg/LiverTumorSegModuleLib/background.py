"""Run a function in a worker thread and hand its progress and outcome back through a queue.

Slicer rule: MRML and Qt objects are touched only on the main thread. The worker gets a ``progress``
callback and a :class:`~LiverTumorSegLib.progress.CancellationToken`; it only computes. The main thread
calls :meth:`BackgroundTask.poll` (e.g. from a ``qt.QTimer``) and applies the result itself.
"""
import queue
import threading
import traceback
from dataclasses import dataclass
from typing import Any, Callable, List, Optional

from LiverTumorSegLib.errors import CancelledError
from LiverTumorSegLib.progress import CancellationToken

PROGRESS, DONE, FAILED, CANCELLED = "progress", "done", "failed", "cancelled"


@dataclass
class TaskEvent:
    """``kind``: progress | done | failed | cancelled. ``fraction`` 0..1 and ``stage`` for progress;
    ``result`` for done; ``error`` (the exception) and ``details`` (traceback text) for failed."""

    kind: str
    fraction: float = 0.0
    stage: str = ""
    result: Any = None
    error: Optional[BaseException] = None
    details: str = ""


class BackgroundTask:
    """``function(progress, cancel) -> result`` run once, in a thread (:meth:`start`) or here (:meth:`run_here`)."""

    def __init__(self, function: Callable[[Callable[[float, str], None], CancellationToken], Any]) -> None:
        self._function = function
        self._events: "queue.Queue[TaskEvent]" = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self.cancel_token = CancellationToken()
        self.finished = threading.Event()

    def _progress(self, fraction: float, stage: str = "") -> None:
        self._events.put(TaskEvent(PROGRESS, fraction=float(fraction), stage=stage))

    def run_here(self) -> None:
        """Run in the calling thread; the outcome is queued like in a thread."""
        try:
            result = self._function(self._progress, self.cancel_token)
        except CancelledError:
            self._events.put(TaskEvent(CANCELLED))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which reports it
            self._events.put(TaskEvent(FAILED, error=exc, details=traceback.format_exc()))
        else:
            self._events.put(TaskEvent(DONE, result=result))
        finally:
            self.finished.set()

    def start(self) -> "BackgroundTask":
        """Run in a daemon worker thread (Slicer can quit while it runs)."""
        self._thread = threading.Thread(target=self.run_here, name="LiverTumorSeg worker", daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the function to stop at its next check; a ``cancelled`` event follows."""
        self.cancel_token.cancel()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until finished (True) or ``timeout`` seconds passed (False)."""
        return self.finished.wait(timeout)

    def poll(self) -> List[TaskEvent]:
        """All events queued since the last poll, oldest first (never blocks)."""
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events
