"""Progress reporting and cooperative cancellation for long work (inference, training, evaluation).

A progress callback has the signature ``callback(fraction: float, stage: str) -> None`` where
``fraction`` is in [0, 1] and never decreases within one operation.
"""
import contextlib
import contextvars
import threading
from typing import Any, Callable, Optional

from .errors import CancelledError

ProgressCallback = Callable[[float, str], None]


class CancellationToken:
    """Thread-safe flag the caller sets to ask a running operation to stop.

    Workers call :meth:`raise_if_cancelled` between units of work (e.g. between inference batches).
    """

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def is_cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise CancelledError("Cancelled by the user; no output was written.")


def logging_beside_bar(bar: Any) -> Any:
    """A context in which log lines (warnings) go through tqdm while the tqdm ``bar`` is shown, each on a line of its
    own with the bar redrawn below it: logged while a bar was open, a warning began in the middle of the bar's line
    ('network 69%|...| 00:04warning: ...'), on a terminal and in a log file alike. Nothing changes when ``bar`` is
    None or disabled."""
    if bar is None or bar.disable:
        return contextlib.nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()


_READ_STOP = contextvars.ContextVar("livertumorseg_read_stop", default=None)  # type: contextvars.ContextVar


def run_with_read_stop(token: CancellationToken, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` with ``token`` as the read stop that :func:`raise_if_read_stopped` checks,
    for work on a helper thread (a batch's reader), where Ctrl-C is never raised: Python raises it in the main
    thread only, which then waited for the read under way to end (seconds for a large ``.nii.gz``). The setting
    ends with the call."""
    reset = _READ_STOP.set(token)
    try:
        return function(*args, **kwargs)
    finally:
        _READ_STOP.reset(reset)


def raise_if_read_stopped() -> None:
    """Raise :class:`CancelledError` when the read stop of this context (:func:`run_with_read_stop`) was
    cancelled; nothing when none was set (a read on the main thread is stopped by Ctrl-C itself). Called by long
    reads between their steps (each ``.nii.gz`` inflate step)."""
    token = _READ_STOP.get()
    if token is not None and token.is_cancelled:
        raise CancelledError("Cancelled: the CT read was stopped.")


def current_read_stop() -> "Optional[CancellationToken]":
    """The read stop of this context (:func:`run_with_read_stop`), None when none is set: for a read made of one
    long call (a DICOM series read by ITK) that can be told to stop from a callback it makes between its files."""
    return _READ_STOP.get()


def execute_with_read_stop(reader: Any) -> Any:
    """``reader.Execute()`` of a SimpleITK filter (a DICOM series reader) that is aborted at its next progress
    event (between two of its files) once the read stop of this context (:func:`run_with_read_stop`) is cancelled,
    raising :class:`CancelledError` then. The batch's reader thread waited for a 300-file series read to end
    (0.8-1.1 s measured after Ctrl-C). On the main thread without a read stop (a single CT's read) the call runs on
    a helper thread that Ctrl-C stops so (:func:`_execute_beside_the_main_thread`): Ctrl-C is raised in the main
    thread only once a call into C returns, and a callback of ITK's that Python raised it in printed a traceback
    and failed the read as a damaged series. Elsewhere without one, a plain ``reader.Execute()``."""
    token = _READ_STOP.get()
    if token is None:
        if threading.current_thread() is threading.main_thread():
            return _execute_beside_the_main_thread(reader)
        return reader.Execute()
    import SimpleITK as sitk

    def on_progress() -> None:
        if token.is_cancelled:
            reader.Abort()

    reader.AddCommand(sitk.sitkProgressEvent, on_progress)
    try:
        return reader.Execute()
    except RuntimeError:
        raise_if_read_stopped()  # ITK's "AbortGenerateDataOn" of the abort above: the stop, not a damaged file
        raise
    finally:
        reader.RemoveAllCommands()  # the command holds the reader: a cycle kept its image alive until collected


def _execute_beside_the_main_thread(reader: Any) -> Any:
    """:func:`execute_with_read_stop` of ``reader`` on a helper thread under a read stop of its own, the main
    thread waiting for it in steps that Ctrl-C (or SIGTERM, raised as an exception) ends: the stop is then
    cancelled, the read ends at its next file, and the interrupt goes on. Errors of the read are raised here.
    The wait is for an event the read sets as it ends, not ``Thread.join``: a Ctrl-C inside ``Thread.start`` (the
    read can be under way by then) made a later ``join`` return at once (Python 3.11), the read running on."""
    token = CancellationToken()
    outcome = {}  # type: dict
    ended = threading.Event()

    def read() -> None:
        try:
            outcome["image"] = run_with_read_stop(token, execute_with_read_stop, reader)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            outcome["error"] = exc
        finally:
            ended.set()

    thread = threading.Thread(target=read, name="series-read", daemon=True)
    try:
        thread.start()  # inside: a Ctrl-C in start()'s own wait left the read running on unstopped
        while not ended.wait(0.1):  # a wait Ctrl-C ends (on Windows too, between the steps)
            pass
    except BaseException:
        token.cancel()  # the read ends at its next file
        if thread.ident is not None:  # it runs, or has run, read(), which sets ended
            ended.wait()  # at most one file more
        raise
    if "error" in outcome:
        error = outcome.pop("error")
        try:
            raise error
        finally:
            error = None
    return outcome.pop("image")


class ProgressReporter:
    """Wraps an optional callback; clamps to [0, 1] and keeps the reported fraction monotone.

    ``sub(start, end)`` returns a reporter mapping a sub-task's 0..1 onto ``start..end`` of this one.
    """

    def __init__(self, callback: Optional[ProgressCallback] = None, start: float = 0.0, end: float = 1.0,
                 _shared: Optional[list] = None) -> None:
        self._callback = callback
        self._start = start
        self._end = end
        self._last = _shared if _shared is not None else [0.0]

    def __call__(self, fraction: float, stage: str = "") -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        value = self._start + (self._end - self._start) * fraction
        value = max(value, self._last[0])
        self._last[0] = value
        if self._callback is not None:
            self._callback(value, stage)

    @property
    def has_callback(self) -> bool:
        """Whether anyone follows this reporter (a callback was given)."""
        return self._callback is not None

    def sub(self, start: float, end: float) -> "ProgressReporter":
        a = self._start + (self._end - self._start) * start
        b = self._start + (self._end - self._start) * end
        return ProgressReporter(self._callback, a, b, self._last)
