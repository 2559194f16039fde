"""One run at a time writes into a folder: :func:`folder_lock`.

A lock file in the folder holds the run's :func:`~.processes.process_mark` (process id, start time, computer) and,
on POSIX, an exclusive ``flock`` on it. A second run is refused with the error its caller builds from the mark; a
lock whose process has ended (a killed run) is taken over, by one run only where flock is available (the kernel
drops a killed process's flock). Used by batch segmentation (``segment FOLDER``: two runs with different models each
replaced the other's reports) and by training (two ``train`` runs in one training folder each resumed from and
overwrote the other's checkpoint and interleaved one ``log.csv``).
"""
import contextlib
import logging
import os
import re
import stat
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

from .asciinumbers import is_ascii_digits
from .errors import InputError
from .fileutil import write_errors_naming

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


TAKEN, BUSY, LEFT_OVER = "taken", "busy", "left over"
"""What :func:`_flock_left_by_an_ended_run` found."""


def _flock_left_by_an_ended_run(lock: Path, handle: int, wait_s: Optional[float] = None,
                                waiting: Optional[Callable[[str], None]] = None) -> str:
    """:data:`TAKEN` when the flock on ``handle`` was taken after waiting up to ``wait_s`` (:data:`LEFTOVER_WAIT_S`),
    tried only while the lock file names a process of this computer that has ended; :data:`BUSY` when it names a
    live process (or none); :data:`LEFT_OVER` when the named process has ended and the flock is still held after
    the wait. ``waiting(held)`` is called once, when the wait starts (the run said nothing for up to 15 s). A
    ``train --resume`` started right after the run was killed (SIGKILL, the out-of-memory killer, a job's requeue)
    was refused as 'Another training (process N) is running', N the killed run, because its DataLoader workers
    still held the flock they inherited."""
    import fcntl
    import time

    from .processes import PROCESS_MARK, marked_process_alive

    deadline = time.monotonic() + (LEFTOVER_WAIT_S if wait_s is None else float(wait_s))
    said = False
    while True:
        held, changed = read_mark(lock)
        match = re.fullmatch(PROCESS_MARK, held)
        if not match or marked_process_alive(match, changed):  # a live run (or one starting): busy
            return BUSY
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return TAKEN
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return LEFT_OVER
            if not said and waiting is not None:
                said = True
                waiting(held)
            time.sleep(0.1)
        except OSError:
            return BUSY


PROC_FOLDER = "/proc"
"""Linux's process folder, where :func:`processes_holding` looks for the processes holding a lock."""

HOLDERS_SHOWN = 3
"""The most processes named as still holding a lock (:func:`processes_holding`)."""


def processes_holding(handle: int, lock: Path) -> List[str]:
    """The processes other than this one that have the lock file open (the flock follows the open file, so a
    killed run's leftover children hold it), as 'process 123 (python3)', at most :data:`HOLDERS_SHOWN` plus
    'more' when there are more; [] where none can be found (not Linux, another user's processes). Cheap (5 ms on a
    machine of a few hundred processes): the names of the open descriptors under /proc are read (never the files
    they name), and only the matching ones are stat-ed."""
    proc = Path(PROC_FOLDER)
    try:
        wanted = os.fstat(handle)
        target = os.path.realpath(str(lock))
        pids = [name for name in os.listdir(str(proc)) if is_ascii_digits(name) and int(name) != os.getpid()]
    except OSError:
        return []
    found = []
    for pid in pids:
        try:
            descriptors = os.listdir(str(proc / pid / "fd"))
        except OSError:  # ended meanwhile, or another user's
            continue
        for fd in descriptors:
            link = proc / pid / "fd" / fd
            try:
                if os.readlink(str(link)) != target:
                    continue
                status = os.stat(str(link))
            except OSError:
                continue
            if (status.st_dev, status.st_ino) == (wanted.st_dev, wanted.st_ino):
                found.append(int(pid))
                break
        if len(found) > HOLDERS_SHOWN:
            break
    named = []
    for pid in sorted(found)[:HOLDERS_SHOWN]:
        try:
            command = (proc / str(pid) / "comm").read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            command = ""
        named.append(f"process {pid}{f' ({command})' if command else ''}")
    return named + (["more"] if len(found) > HOLDERS_SHOWN else [])


def _left_over_error(lock: Path, held: str, holders: List[str], what: str, leftovers: str,
                     wait_s: float) -> InputError:
    """The refusal when the ``what`` named in ``lock`` (mark ``held``) has ended and ``holders``
    (:func:`processes_holding`; [] when none were found) still have the lock open after ``wait_s`` seconds; it was
    'Another training (process N) is running', N the ended run."""
    from .processes import PROCESS_MARK

    match = re.fullmatch(PROCESS_MARK, held)
    ended = f" (process {match['pid']})" if match else ""
    who = (", ".join(holders[:-1]) + " and " + holders[-1] if len(holders) > 1 else
           holders[0] if holders else "a leftover child process")
    remove = "" if holders else f" (If no such process is going on, remove '{lock}'.)"
    return InputError(f"The {what} that held '{lock.parent}'{ended} has ended, but {who} still "
                      f"{'have' if len(holders) > 1 else 'has'} its lock '{lock.name}' open after {wait_s:g} s of "
                      f"waiting (a killed {what}'s {leftovers} keep it after it ended). Wait for it to end, or end "
                      f"it, then run again.{remove}")


def _flocked_lock_file(lock: Path, mark: str, busy: BusyError, what: str = "run",
                       leftovers: str = "leftover child processes",
                       waiting: Optional[Callable[[str], None]] = None) -> Optional[int]:
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
            found = _flock_left_by_an_ended_run(lock, handle, waiting=waiting)
            if found != TAKEN:
                held = read_mark(lock)[0]
                error = _left_over_error(lock, held, processes_holding(handle, lock), what, leftovers,
                                         LEFTOVER_WAIT_S) \
                    if found == LEFT_OVER else busy(held)
                os.close(handle)
                raise error from None
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
        try:
            with write_errors_naming(lock):  # a full disk said 'No space left for a file', naming nothing
                os.ftruncate(handle, 0)
                os.write(handle, mark.encode("ascii"))
        except OSError:
            os.close(handle)
            with contextlib.suppress(OSError):  # an empty lock file was left (taken over later: cosmetic)
                lock.unlink()
            raise
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
        try:
            with write_errors_naming(lock), os.fdopen(handle, "w", encoding="ascii") as stream:
                stream.write(mark)
        except OSError:
            with contextlib.suppress(OSError):
                lock.unlink()
            raise
        return
    raise InputError(f"Could not take the lock '{lock}'; remove it if no run is writing there.")


@contextlib.contextmanager
def folder_lock(folder: Path, lock_name: str, busy: BusyError, what: str = "run",
                leftovers: str = "leftover child processes",
                say: Optional[Callable[[str], None]] = None) -> Iterator[Path]:
    """Hold the lock file ``folder / lock_name`` (``folder`` exists) for the ``with`` block, which gets its path.
    Raises ``busy(held_mark)`` when a live process holds it; takes over one whose process has ended. On leaving,
    the file is removed (while its flock is held: a run waiting on it finds it gone and tries anew); a block that
    removed the folder itself is fine.

    Where the lock names an ended run whose children (``leftovers``, e.g. a killed training's DataLoader workers)
    still hold its flock, the run waits up to :data:`LEFTOVER_WAIT_S` and says so first in one line through ``say``
    (default: this module's logger, which the command line prints on stderr): the wait was silent. When they hold
    it longer, the refusal says that the ``what`` (``run``, ``training``) named has ended and which process still
    has the lock open (:func:`processes_holding`)."""
    from .processes import process_mark

    def waiting(held: str) -> None:
        text = (f"waiting for the ended {what}'s{holder_description(held)} {leftovers} to release '{folder}' (up to "
                f"{LEFTOVER_WAIT_S:g} s)")
        (say or logging.getLogger(__name__).info)(text)

    lock, mark = Path(folder) / lock_name, process_mark()
    handle = _flocked_lock_file(lock, mark, busy, what, leftovers, waiting)
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
