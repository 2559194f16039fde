"""Whether a process is still running, by its process id, on POSIX and on Windows: :func:`process_alive`.

Files and folders that a run leaves behind when it is killed (SIGKILL, the out-of-memory killer, a crash of
Slicer) carry their writer's :func:`process_mark` in their names: its process id and, where it can be read, its
start time (:func:`process_start_time`). A later run removes or restores them only when that process has ended.
A process id alone is not enough: ids are reused (after a reboot, or soon on a busy machine), and a left-over
folder whose id now belongs to an unrelated process was kept for good. ``os.kill(pid, 0)`` is no such test on
Windows (there ``os.kill`` terminates the process).
"""
import calendar
import contextlib
import functools
import os
import re
import subprocess
import sys
from typing import Iterator, Optional

_WINDOWS_STILL_ACTIVE = 259  # GetExitCodeProcess's code of a process that has not exited
_WINDOWS_ACCESS_DENIED = 5  # OpenProcess on another user's (or a protected) process that exists
_WINDOWS_QUERY_LIMITED_INFORMATION = 0x1000
_PROC_STAT_START_TIME = 19  # /proc/PID/stat field 22 (starttime), counted from field 3 (the one after the name)
_PS_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_BASE_36_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"

PROCESS_MARK = r"(?P<pid>\d+)(?:-(?P<start>[0-9a-z]+))?"
"""A regular expression matching :func:`process_mark`'s text: groups ``pid`` and ``start`` (the start time in
base 36; no ``start`` in the names that versions before start times were recorded wrote, and where no start time
can be read)."""


def process_alive(pid: int, start_time: Optional[int] = None) -> bool:
    """True while a process with id ``pid`` exists and has not exited (a zombie, ended but not yet reaped by its
    parent, counts as ended). With ``start_time`` (what :func:`process_start_time` said when the process was
    recorded), only while the process now holding ``pid`` started then: one started later with the same id is
    another process, and ``pid``'s has ended. Where no start time can be read now, the id alone decides. When it
    cannot be told (another user's process, an unknown error) the answer is True, so that callers keep what such a
    process may still use. ``pid`` <= 0 names no process: False."""
    pid = int(pid)
    if not _process_id_alive(pid):
        return False
    if start_time is None:
        return True
    started = process_start_time(pid)
    return started is None or started == int(start_time)


def marked_process_alive(match: "re.Match") -> bool:
    """:func:`process_alive` for the process that a match of :data:`PROCESS_MARK` names."""
    start = match["start"]
    return process_alive(int(match["pid"]), None if start is None else int(start, 36))


def process_mark(pid: Optional[int] = None) -> str:
    """:func:`process_mark_of` process ``pid`` (default: this one) and its :func:`process_start_time`: the names of
    the files and folders a run may leave behind carry it, and :func:`marked_process_alive` tells from it whether
    their writer still runs."""
    pid = os.getpid() if pid is None else int(pid)
    return process_mark_of(pid, process_start_time(pid))


def process_mark_of(pid: int, start_time: Optional[int]) -> str:
    """``{pid}-{start_time}``, the start time in base 36 (lower-case letters: 12 characters for a Windows
    FILETIME until the year 16600, where 18 decimal digits made names in deep folders exceed Windows' path
    limit), or ``{pid}`` alone where ``start_time`` is None: the text :data:`PROCESS_MARK` matches."""
    return str(int(pid)) if start_time is None else f"{int(pid)}-{_in_base_36(int(start_time))}"


def _in_base_36(number: int) -> str:
    """``number`` (>= 0) in base 36, lower case (``int(text, 36)`` reads it back)."""
    digits = ""
    while True:
        number, digit = divmod(number, 36)
        digits = _BASE_36_DIGITS[digit] + digits
        if not number:
            return digits


def process_start_time(pid: int) -> Optional[int]:
    """When process ``pid`` started, as a whole number that stays the same while it runs and differs for a later
    process given the same id. Its unit depends on the platform (values are only compared with values of the
    same computer): Linux: clock ticks after boot (``/proc/PID/stat`` field 22); Windows: 100 ns units since
    1601 (``GetProcessTimes``' creation time); macOS and other POSIX systems: seconds since 1970, UTC, whole
    seconds (``ps -o lstart``, one short subprocess; psutil is not a dependency). None when it cannot be read
    (no such process, no ``/proc`` or ``ps``, not allowed): callers then go by the process id alone.
    This process's own is read once."""
    pid = int(pid)
    if pid <= 0:
        return None
    if pid == os.getpid():
        return _start_time_of_this_process(pid)
    return _read_start_time(pid)


@functools.lru_cache(maxsize=None)
def _start_time_of_this_process(pid: int) -> Optional[int]:
    """:func:`_read_start_time` of this process, ``pid`` (the key: a forked child has its own)."""
    return _read_start_time(pid)


def _read_start_time(pid: int) -> Optional[int]:
    """:func:`process_start_time` as this platform tells it."""
    if sys.platform.startswith("win"):
        try:
            return _windows_start_time(pid)
        except (OSError, AttributeError, ValueError):  # ctypes could not ask
            return None
    if sys.platform.startswith("linux"):
        return _linux_start_time(pid)
    return _ps_start_time(pid)


def _process_id_alive(pid: int) -> bool:
    """:func:`process_alive` by the process id alone."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    if sys.platform.startswith("win"):
        try:
            return _windows_process_alive(pid)
        except (OSError, AttributeError, ValueError):  # ctypes could not ask: cannot tell
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OverflowError:  # larger than any process id
        return False
    except OSError:  # PermissionError: exists (another user's); anything else: cannot tell
        return True
    return not _is_zombie(pid)


def _proc_stat_fields(pid: int) -> Optional[list]:
    """The fields of ``/proc/PID/stat`` after the process name (field 3, the state, first); None without it
    (not Linux, no such process)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _is_zombie(pid: int) -> bool:
    """Whether ``pid`` has ended but is not reaped yet (Linux ``/proc``; elsewhere False)."""
    fields = _proc_stat_fields(pid)
    return bool(fields) and fields[0] == "Z"


def _linux_start_time(pid: int) -> Optional[int]:
    """``/proc/PID/stat`` field 22: the clock ticks after boot at which ``pid`` started."""
    fields = _proc_stat_fields(pid)
    try:
        return int(fields[_PROC_STAT_START_TIME])
    except (TypeError, IndexError, ValueError):
        return None


def _ps_start_time(pid: int) -> Optional[int]:
    """Seconds since 1970 (UTC) at which ``pid`` started, from ``ps -o lstart=`` ("Mon Nov 24 19:55:01 2025" in
    the C locale, on macOS as on Linux), asked in UTC so that a changed time zone gives the same number."""
    env = {"LC_ALL": "C", "TZ": "UTC0", "PATH": os.environ.get("PATH") or os.defpath}
    try:
        listed = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, timeout=5,
                                env=env)
        _weekday, month, day, clock, year = listed.stdout.split()
        hour, minute, second = (int(part) for part in clock.split(":"))
        return calendar.timegm((int(year), _PS_MONTHS.index(month) + 1, int(day), hour, minute, second))
    except (OSError, subprocess.SubprocessError, ValueError):  # no ps, no such process, another format
        return None


def _windows_kernel32():
    """kernel32 through ctypes, with the signatures of the functions used here."""
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.OpenProcess.restype = wintypes.HANDLE
    kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
    kernel32.GetExitCodeProcess.argtypes = (wintypes.HANDLE, ctypes.POINTER(wintypes.DWORD))
    kernel32.GetProcessTimes.argtypes = (wintypes.HANDLE,) + (ctypes.POINTER(wintypes.FILETIME),) * 4
    kernel32.CloseHandle.argtypes = (wintypes.HANDLE,)
    return kernel32


@contextlib.contextmanager
def _windows_process_handle(kernel32, pid: int) -> Iterator[Optional[int]]:
    """A handle of ``pid`` that may query it (None when it cannot be opened: see ``ctypes.get_last_error``)."""
    handle = kernel32.OpenProcess(_WINDOWS_QUERY_LIMITED_INFORMATION, False, pid) if pid <= 0xFFFFFFFF else None
    try:
        yield handle or None
    finally:
        if handle:
            kernel32.CloseHandle(handle)


def _windows_process_alive(pid: int) -> bool:
    """``OpenProcess`` + ``GetExitCodeProcess`` (no console window, no ``tasklist`` to parse)."""
    import ctypes

    if pid > 0xFFFFFFFF:
        return False
    kernel32 = _windows_kernel32()
    with _windows_process_handle(kernel32, pid) as handle:
        if handle is None:  # no such process (ERROR_INVALID_PARAMETER), or one this user may not look at
            return ctypes.get_last_error() == _WINDOWS_ACCESS_DENIED
        code = _windows_exit_code(kernel32, handle)
        return code is None or code == _WINDOWS_STILL_ACTIVE


def _windows_exit_code(kernel32, handle: int) -> Optional[int]:
    """``GetExitCodeProcess`` of the process ``handle`` opens: :data:`_WINDOWS_STILL_ACTIVE` while it runs; None
    when it cannot be read."""
    import ctypes
    from ctypes import wintypes

    code = wintypes.DWORD()
    if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
        return None
    return code.value


def _windows_start_time(pid: int) -> Optional[int]:
    """``GetProcessTimes``' creation time of ``pid``, 100 ns units since 1601-01-01 (UTC), while it runs: None
    once it has exited, although a handle someone still holds (``subprocess.Popen`` keeps its child's) keeps its
    times readable."""
    import ctypes
    from ctypes import wintypes

    kernel32 = _windows_kernel32()
    with _windows_process_handle(kernel32, pid) as handle:
        if handle is None or _windows_exit_code(kernel32, handle) != _WINDOWS_STILL_ACTIVE:
            return None
        times = [wintypes.FILETIME() for _ in range(4)]  # creation, exit, kernel, user
        if not kernel32.GetProcessTimes(handle, *(ctypes.byref(value) for value in times)):
            return None
        return (times[0].dwHighDateTime << 32) | times[0].dwLowDateTime
