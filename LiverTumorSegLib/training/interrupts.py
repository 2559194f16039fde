"""Ctrl-C (SIGINT) and SIGTERM held back for a few statements: :func:`interrupts_deferred`.

A training step changes the weights, the optimizer's moments, the AMP scaler, the scheduler and then the step
counter that the interrupt checkpoint records. On the CPU, torch's AdamW updates the parameters one by one in a
Python loop, and Python delivers a signal between any two statements: an interrupt that landed there saved
"step k done" with (part of) step k + 1's weights, and ``--resume`` then replayed step k + 1 on top of them (49 of
49 weight tensors differed from an uninterrupted run). Inside :func:`interrupts_deferred` a signal is only noted;
it is delivered, to the handler that was in place, when the block ends, so the checkpoint holds a whole step.
"""
import contextlib
import os
import re
import signal
import threading
import time
from typing import Any, Callable, Iterator, List, Optional, Tuple, TypeVar

T = TypeVar("T")

HELD_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK")
                     if hasattr(signal, name))
"""The stop signals (SIGBREAK: Ctrl-Break on Windows) :func:`interrupts_deferred` holds, where they exist."""


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the ``with`` block and deliver the first one received (to the handler in place
    before the block) when it ends normally. SIGCHLD is held the same way (then its handler is called): torch's
    DataLoader raises from that handler when a worker was killed (a SIGTERM sent to every process of a Slurm
    job), which landed inside AdamW's update. Outside the main thread (where Python runs signal handlers) it does
    nothing. A block that raises drops the held signal: its exception already ends the run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: List[Tuple[int, Any]] = []

    def hold(signum: int, frame: Any) -> None:
        received.append((signum, frame))

    children: List[Tuple[int, Any]] = []

    def hold_child(signum: int, frame: Any) -> None:
        children.append((signum, frame))

    previous = {}
    child = getattr(signal, "SIGCHLD", None)
    try:
        for signum in HELD_SIGNALS:
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, hold)
        if child is not None:  # Python runs every signal handler in the main thread: holding it here is enough
            previous[child] = signal.getsignal(child)
            signal.signal(child, hold_child)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    if received:
        signum, frame = received[0]
        handler = previous.get(signum)
        if callable(handler):
            handler(signum, frame)
        elif handler != signal.SIG_IGN:  # the default action (or a handler set outside Python): the signal again
            os.kill(os.getpid(), signum)
    if children and callable(previous.get(child)):  # torch's check of its workers, now between two whole steps
        previous[child](*children[0])


def detach_worker_from_group_signals(worker_id: int) -> None:
    """A DataLoader ``worker_init_fn``: the worker leaves the training's process group, so a SIGTERM or SIGINT sent
    to the group (``timeout``, ``kill -- -PGID``, Ctrl-C in a terminal) reaches only the main process, which
    checkpoints and then stops its workers itself. Killed with the group, a worker's death was reported by torch
    from inside a training step ("internal error: DataLoader worker ... is killed by signal: Terminated"), before
    any checkpoint was written. The workers still end with the main process (torch's watchdog; under
    forkserver :func:`end_worker_with_training`)."""
    if hasattr(os, "setpgid"):
        try:
            os.setpgid(0, 0)
        except OSError:  # a session leader (never a forked worker) cannot; nothing else to do
            pass


WORKER_WATCH_INTERVAL_S = 1.0
"""Seconds between two checks, in a DataLoader worker that torch's watchdog cannot look after, that the training
process still runs (:func:`end_worker_with_training`)."""


class WorkerSetup:
    """The DataLoader ``worker_init_fn`` of a training: :func:`detach_worker_from_group_signals`, then
    :func:`end_worker_with_training` for the training process ``training_pid`` (started at ``training_start_time``,
    :func:`~..processes.process_start_time`; None: by its id alone). Picklable: spawn and forkserver send it to each
    worker (:meth:`for_this_process` makes it in the training process)."""

    def __init__(self, training_pid: int, training_start_time: Optional[int],
                 interval_s: float = WORKER_WATCH_INTERVAL_S) -> None:
        self.training_pid = int(training_pid)
        self.training_start_time = None if training_start_time is None else int(training_start_time)
        self.interval_s = float(interval_s)

    @classmethod
    def for_this_process(cls) -> "WorkerSetup":
        """The setup of workers of this process's training."""
        from ..processes import process_start_time

        return cls(os.getpid(), process_start_time(os.getpid()))

    def __call__(self, worker_id: int) -> None:
        detach_worker_from_group_signals(worker_id)
        end_worker_with_training(self.training_pid, self.training_start_time, self.interval_s)


def end_worker_with_training(training_pid: int, training_start_time: Optional[int],
                             interval_s: float = WORKER_WATCH_INTERVAL_S) -> Optional[threading.Thread]:
    """In a DataLoader worker whose parent is not the training process ``training_pid`` (forkserver, Python 3.14's
    default start method on Linux: the workers are children of the fork server): a daemon thread that ends the worker
    (``os._exit``) once the training process has ended. torch's own watchdog only asks whether the worker's parent
    is still the one it started under, and the fork server runs on as long as any of its children does, so a training
    killed outright (SIGKILL, the out-of-memory killer, a crash) left its workers and the fork server running for
    good, each holding its memory. Under fork and spawn the training process is the parent, which torch watches:
    nothing is started there. Returns the thread, or None."""
    if os.getppid() == int(training_pid):
        return None
    thread = threading.Thread(target=_end_worker_once_gone, args=(training_pid, training_start_time, interval_s),
                              name="training-watch", daemon=True)
    thread.start()
    return thread


def _end_worker_once_gone(training_pid: int, training_start_time: Optional[int], interval_s: float) -> None:
    """Check every ``interval_s`` seconds that the training process runs (by its id and start time: a reused id is
    another process); end this worker at once when it does not (nothing is left to hand its batches to)."""
    from ..processes import process_alive

    while process_alive(training_pid, training_start_time):
        time.sleep(interval_s)
    os._exit(0)


WORKER_STOPPED_PATTERN = re.compile(r"DataLoader worker \(pid[^)]*\) is killed by signal: (Terminated|Interrupt|Hangup)")
"""torch's report (from its SIGCHLD handler) of a worker that a stop signal ended."""


def _is_worker_stopped_message(exc: BaseException) -> bool:
    """Whether ``exc`` is torch's SIGCHLD report of a worker ended by a stop signal."""
    return isinstance(exc, RuntimeError) and WORKER_STOPPED_PATTERN.search(str(exc)) is not None


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGBREAK")
                     if hasattr(signal, name))


def is_worker_stopped_by_signal(exc: BaseException, loader: Any = None) -> bool:
    """Whether ``exc`` comes from a DataLoader worker ended by SIGTERM, SIGINT or SIGHUP (the signal that stops the
    run, sent to each process): the run was interrupted, not broken. torch reports it from its SIGCHLD handler
    with the signal's name; from the data queue it raises "exited unexpectedly", or an EOFError / OSError when the
    worker died while sending: then the exit codes of ``loader``'s workers (persistent workers) tell."""
    if _is_worker_stopped_message(exc):
        return True
    if not isinstance(exc, (RuntimeError, EOFError, OSError)):
        return False
    stopped = [-number for number in STOP_SIGNALS]
    workers = list(getattr(getattr(loader, "_iterator", None), "_workers", None) or [])
    # wait for exit codes only when the error points at a worker: a real failure (CUDA out of memory, a full
    # disk) has every worker alive, and waiting a second for each delayed its message by seconds
    points_at_worker = (isinstance(exc, (EOFError, ConnectionError)) or "DataLoader worker" in str(exc)
                        or any(getattr(worker, "exitcode", None) is not None for worker in workers))
    for worker in workers:
        if points_at_worker and getattr(worker, "exitcode", None) is None and hasattr(worker, "join"):
            worker.join(timeout=1.0)  # one being killed right now: its exit code in a moment
        if getattr(worker, "exitcode", None) in stopped:
            return True
    return False


def stop_loader_workers(loader: Any) -> None:
    """Stop an interrupted run's DataLoader workers now (torch's iterator shutdown, which also stops watching them),
    and drop what their ending raises: torch's SIGCHLD handler otherwise reported a worker that the stop signal had
    ended ("internal error ... killed by signal: Terminated") while the interrupted run was cleaning up."""
    shutdown = getattr(getattr(loader, "_iterator", None), "_shutdown_workers", None)
    if callable(shutdown):
        try:
            shutdown()
        except Exception:  # noqa: BLE001 - a worker's death reported while stopping it: the run is ending anyway
            pass


def is_stop_report(exc: BaseException) -> bool:
    """Whether ``exc`` is a stop signal itself (KeyboardInterrupt: Ctrl-C, or SIGTERM as the CLI raises it) or
    torch's report that a stop signal ended a DataLoader worker."""
    return isinstance(exc, KeyboardInterrupt) or _is_worker_stopped_message(exc)


def call_with_interrupts_held(action: Callable[[], T], attempts: int = 8) -> T:
    """``action()`` inside :func:`interrupts_deferred`, also when a stop signal lands just before the hold begins.

    Signals that arrive together are handled in signal-number order: SIGTERM's KeyboardInterrupt (15) first, and
    torch's SIGCHLD handler (17), still pending, at the next statement, which is inside the caller's ``except``
    clause, before any hold. Its "DataLoader worker ... killed by signal: Terminated" then replaced the interrupt,
    and the run ended with "internal error" and no checkpoint (seen when a Slurm job's end sent SIGTERM to the
    workers and then to the main process during a long forward pass). Such a late stop report that arrives before
    ``action`` starts is dropped and the hold entered again; one that arrives after ``action`` finished (a held
    signal delivered as the block ends) propagates if it is an interrupt and is dropped if it is torch's report
    (the interrupt it reports is the one being handled)."""
    for attempt in range(attempts):
        started = finished = False
        try:
            with interrupts_deferred():
                started = True
                result = action()
                finished = True
            return result
        except (KeyboardInterrupt, RuntimeError) as late:
            if started and not finished:
                raise  # ``action`` itself failed
            if not is_stop_report(late):
                raise
            if finished:
                if isinstance(late, KeyboardInterrupt):
                    raise
                return result
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
