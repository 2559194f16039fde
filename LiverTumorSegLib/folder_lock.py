"""One run at a time writes into a folder: :func:`folder_lock`.

A lock file in the folder holds the run's :func:`~.processes.process_mark` (process id, start time, computer) and,
on POSIX, an exclusive ``flock`` on it. A second run is refused with the error its caller builds from the mark; a
lock whose process has ended (a killed run) is taken over, by one run only where flock is available (the kernel
drops a killed process's flock). Used by batch segmentation (``segment FOLDER``: two runs with different models each
replaced the other's reports) and by training (two ``train`` runs in one training folder each resumed from and
overwrote the other's checkpoint and interleaved one ``log.csv``).
"""
import contextlib
import os
import re
import stat
from pathlib import Path
from typing import Callable, Iterator, Optional, Tuple

from .errors import InputError

BusyError = Callable[[str], BaseException]
"""Builds the refusal from the mark held in the lock file ('' when it could not be read)."""


def holder_description(held: str) -> str:
    """' (process N)' or ' (process N on another computer)' for a lock file's mark, '' for an unreadable one."""
    from .processes import PROCESS_MARK, marked_elsewhere

    match = re.fullmatch(PROCESS_MARK, held)
    if not match:
        return ""
    return f" (process {match['pid']}{' on another computer' if marked_elsewhere(match) else ''})"


MARK_MAX_BYTES = 256
"""The most bytes of a lock file read as its mark (a mark is under 40 characters)."""


def read_mark(lock: Path) -> Tuple[str, float]:
    """The process mark in ``lock`` and the file's last change (seconds); ``("", 0.0)`` when it cannot be read, and
    for anything but a plain file of its own: a symbolic link is never followed (``O_NOFOLLOW``; where there is
    none, as on Windows, a link is looked for first), and a named pipe or device is never read. Read through a link
    where flock is not available (Windows, some network shares), a link to a named pipe hung the run, one to
    ``/dev/zero`` filled the memory, and one to a file holding a running process's mark refused every run as busy;
    such an unreadable lock is taken over, the link removed (the file it names untouched)."""
    try:
        if not stat.S_ISREG(os.lstat(str(lock)).st_mode):
            return "", 0.0
        handle = os.open(str(lock), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return "", 0.0
    try:
        status = os.fstat(handle)  # the file opened: one swapped in after the look is judged by itself
        if not stat.S_ISREG(status.st_mode):
            return "", 0.0
        return os.read(handle, MARK_MAX_BYTES).decode("ascii").strip(), max(status.st_mtime, status.st_ctime)
    except (OSError, UnicodeDecodeError):
        return "", 0.0
    finally:
        os.close(handle)


def held_by_a_live_process(held: str, changed: float) -> bool:
    from .processes import PROCESS_MARK, marked_process_alive

    match = re.fullmatch(PROCESS_MARK, held)
    return bool(match) and marked_process_alive(match, changed)


LEFTOVER_WAIT_S = 15.0
"""Seconds a run waits for a flock still held after the run named in the lock file has ended: its forked children
(a training's DataLoader workers) share the lock's open file, and outlive a killed run for up to torch's watchdog
interval (5 s; measured 5.0 s after a SIGKILL of a 2-worker training)."""


def _flock_left_by_an_ended_run(lock: Path, handle: int, wait_s: Optional[float] = None) -> bool:
    """Whether the flock on ``handle`` was taken after waiting up to ``wait_s`` (:data:`LEFTOVER_WAIT_S`), tried only
    while the lock file names a process of this computer that has ended. A ``train --resume`` started right after
    the run was killed (SIGKILL, the out-of-memory killer, a job's requeue) was refused as 'Another training
    (process N) is running', N the killed run, because its DataLoader workers still held the flock they inherited."""
    import fcntl
    import time

    from .processes import PROCESS_MARK, marked_process_alive

    deadline = time.monotonic() + (LEFTOVER_WAIT_S if wait_s is None else float(wait_s))
    while True:
        held, changed = read_mark(lock)
        match = re.fullmatch(PROCESS_MARK, held)
        if not match or marked_process_alive(match, changed):  # a live run (or one starting): busy
            return False
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        except OSError:
            return False


def _flocked_lock_file(lock: Path, mark: str, busy: BusyError) -> Optional[int]:
    """POSIX: a descriptor of ``lock`` holding an exclusive ``flock`` with ``mark`` written in it, or None where
    flock is not available (Windows, some network file systems: :func:`folder_lock` then goes by the mark alone).
    A symbolic link at ``lock`` is removed, never followed: opened through it, the file it named (anyone's, e.g. a
    link put into a shared output folder) was truncated and given the mark.
    ``busy(held)`` is raised when another process holds it. Going by the mark alone, two runs both judged a killed
    run's lock stale (or one run's lock not yet written, empty, unreadable) and each removed the other's and wrote
    on."""
    if os.name != "posix":
        return None
    import fcntl

    for _ in range(3):
        try:  # never through a symbolic link: the file it names (a user's, in a shared folder) was cut to our mark
            handle = os.open(str(lock), os.O_CREAT | os.O_RDWR | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError:  # another user's lock file, not ours to open: the mark decides (_marked_lock_file)
            if os.path.islink(lock):  # no lock of ours: the link goes, the file it names is never opened
                with contextlib.suppress(OSError):
                    lock.unlink()
                continue
            return None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not _flock_left_by_an_ended_run(lock, handle):
                os.close(handle)
                raise busy(read_mark(lock)[0]) from None
        except OSError:
            os.close(handle)
            return None
        try:
            same = os.stat(str(lock)).st_ino == os.fstat(handle).st_ino
        except OSError:
            same = False
        if not same:  # removed by the run that held it, between our open and our flock: try the new file
            os.close(handle)
            continue
        held, changed = read_mark(lock)
        if held != mark and held_by_a_live_process(held, changed):  # a run of a version that took no flock
            os.close(handle)
            raise busy(held)
        os.ftruncate(handle, 0)
        os.write(handle, mark.encode("ascii"))
        return handle
    raise InputError(f"Could not take the lock '{lock}'; remove it if no run is writing there.")


def _marked_lock_file(lock: Path, mark: str, busy: BusyError) -> None:
    """Where flock is not available: create ``lock`` holding ``mark``, taking over one whose process has ended."""
    for _ in range(3):
        try:
            handle = os.open(str(lock), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            held, changed = read_mark(lock)  # removed meanwhile, or not ours to read: tried again below
            if held_by_a_live_process(held, changed):
                raise busy(held) from None
            with contextlib.suppress(OSError):
                lock.unlink()  # a killed run's (or an unreadable one's): taken over
            continue
        with os.fdopen(handle, "w", encoding="ascii") as stream:
            stream.write(mark)
        return
    raise InputError(f"Could not take the lock '{lock}'; remove it if no run is writing there.")


@contextlib.contextmanager
def folder_lock(folder: Path, lock_name: str, busy: BusyError) -> Iterator[Path]:
    """Hold the lock file ``folder / lock_name`` (``folder`` exists) for the ``with`` block, which gets its path.
    Raises ``busy(held_mark)`` when a live process holds it; takes over one whose process has ended. On leaving,
    the file is removed (while its flock is held: a run waiting on it finds it gone and tries anew); a block that
    removed the folder itself is fine."""
    from .processes import process_mark

    lock, mark = Path(folder) / lock_name, process_mark()
    handle = _flocked_lock_file(lock, mark, busy)
    if handle is None:
        _marked_lock_file(lock, mark, busy)
    try:
        yield lock
    finally:
        with contextlib.suppress(OSError):
            if read_mark(lock)[0] == mark:  # ours: not a link put in its place (never read through)
                lock.unlink()
        if handle is not None:
            os.close(handle)
