"""A command started by another program stops when that program has ended: :func:`watch_parent_from_environment`.

The Slicer module runs ``segment`` in a child process, and ``scripts/heldout_comparison.py`` runs ``segment`` and
``evaluate`` in children of their own sessions (so that a Ctrl-C reaches them once, through the script). When the
starter is killed outright (SIGKILL, the out-of-memory killer, a crash of Slicer), nothing could tell the child:
it went on for minutes with the CPU or GPU, and wrote results nobody would read. A starter now puts its own process
id in :data:`PARENT_VARIABLE` (:func:`parent_environment`); the command then checks every
:data:`CHECK_INTERVAL_S` seconds that this process still runs (:func:`~.processes.process_alive`, by id and start
time: a reused id is another process) and, once it has ended, stops itself as SIGTERM would (POSIX: it sends
itself SIGTERM; Windows: Ctrl-C's KeyboardInterrupt in the main thread), so its usual clean-up removes unfinished
outputs. The starter may be a grandparent (Slicer starts its Python through a launcher).
"""
import os
import sys
import threading
from typing import Dict, Mapping, Optional

from . import processes

PARENT_VARIABLE = "LIVERTUMORSEG_PARENT_PID"
"""The environment variable that names the process (its id) whose end stops the command."""

CHECK_INTERVAL_S = 1.0
"""Seconds between two checks of the starter."""

_MAX_ANCESTORS = 64  # generations looked through for the starter (a loop in /proc would otherwise not end)


def parent_environment(base: Optional[Mapping[str, str]] = None, pid: Optional[int] = None) -> Dict[str, str]:
    """``base`` (default: this process's environment) with :data:`PARENT_VARIABLE` set to ``pid`` (default: this
    process): the environment to start a command with that stops when this process ends."""
    env = dict(os.environ if base is None else base)
    env[PARENT_VARIABLE] = str(os.getpid() if pid is None else int(pid))
    return env


def watched_pid(env: Optional[Mapping[str, str]] = None) -> Optional[int]:
    """The process id :data:`PARENT_VARIABLE` names in ``env`` (default: this process's); None when it is unset,
    empty, not a positive whole number, or this process itself."""
    text = (os.environ if env is None else env).get(PARENT_VARIABLE, "").strip()
    try:
        pid = int(text)
    except ValueError:
        return None
    return pid if pid > 0 and pid != os.getpid() else None


def is_ancestor(pid: int) -> Optional[bool]:
    """Whether process ``pid`` is this process's parent, grandparent, ...; None where that cannot be read (not
    Linux: only the parent's id is known, ``os.getppid``; or an ancestor ended while the chain was read): only a
    False stops the command at once."""
    if pid == os.getppid():
        return True
    current = os.getppid()
    for _ in range(_MAX_ANCESTORS):
        parent = processes.proc_parent_pid(current)
        if parent is None:
            return None
        if parent == pid:
            return True
        if parent <= 1 or parent == current:
            return False
        current = parent
    return False


def _stop_this_process(pid: int) -> None:
    """Stop this process as SIGTERM would (POSIX), or as Ctrl-C would (Windows: no signal can be sent to oneself
    there), after one line on stderr that says why."""
    try:
        print(f"the program that started this command (process {pid}) has ended, or no longer holds this process "
              f"(a process between them ended); stopping", file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr closed with its reader
        pass
    if os.name == "posix":
        import signal

        os.kill(os.getpid(), signal.SIGTERM)
    else:
        import _thread

        _thread.interrupt_main()


def _still_there(pid: int, start_time: Optional[int]) -> bool:
    return processes.process_alive(pid, start_time)


class ParentWatch:
    """The daemon thread of :func:`watch_parent`; :meth:`stop` ends the watch (the command is over)."""

    def __init__(self, pid: int, start_time: Optional[int], interval_s: float) -> None:
        self.pid, self._start_time, self._interval_s = pid, start_time, interval_s
        self._stopped = threading.Event()
        self.thread = threading.Thread(target=self._check, name="parent-watch", daemon=True)

    def _check(self) -> None:
        while not self._stopped.wait(self._interval_s):
            # also when the starter runs but this process has left its descendants: the launcher between them (Slicer's
            # PythonSlicer) was killed, and the orphan computed to the end while Slicer lived on (the child-job audit)
            if not _still_there(self.pid, self._start_time) or is_ancestor(self.pid) is False:
                if not self._stopped.is_set():
                    _stop_this_process(self.pid)
                return

    def stop(self) -> None:
        self._stopped.set()


def watch_parent(pid: int, interval_s: float = CHECK_INTERVAL_S) -> Optional[ParentWatch]:
    """Stop this process (:func:`_stop_this_process`) once process ``pid`` has ended: at once when it is no longer
    running or, on Linux, is no ancestor of this one (this process was handed to another parent: its starter
    ended before the watch began), else from a daemon thread that checks every ``interval_s`` seconds. Returns that
    watch (None when it stopped at once)."""
    start_time = processes.process_start_time(pid)  # read here, in this process's own time namespace
    if not _still_there(pid, start_time) or is_ancestor(pid) is False:
        _stop_this_process(pid)
        return None
    watch = ParentWatch(pid, start_time, interval_s)
    watch.thread.start()
    return watch


def watch_parent_from_environment(env: Optional[Mapping[str, str]] = None,
                                  interval_s: float = CHECK_INTERVAL_S) -> Optional[ParentWatch]:
    """:func:`watch_parent` for the process :data:`PARENT_VARIABLE` names (:func:`watched_pid`); nothing when it
    names none. Call it from the main thread once its signal handlers are in place."""
    pid = watched_pid(env)
    return None if pid is None else watch_parent(pid, interval_s)
