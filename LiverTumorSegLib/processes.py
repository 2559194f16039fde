"""Whether a process is still running, by its process id, on POSIX and on Windows: :func:`process_alive`.

Files and folders that a run leaves behind when it is killed (SIGKILL, the out-of-memory killer, a crash of
Slicer) carry their writer's :func:`process_mark` in their names: its process id and, where it can be read, its
start time (:func:`process_start_time`). A later run removes or restores them only when that process has ended.
A process id alone is not enough: ids are reused (after a reboot, or soon on a busy machine), and a left-over
folder whose id now belongs to an unrelated process was kept for good. A start time alone is not enough either:
Linux shifts ``/proc/PID/stat``'s by the reader's time-namespace offset (``unshare --time``), so a running writer
in another time namespace reads as another process; a differing start time counts only for what was last changed
before the process now holding the id started (:func:`process_alive`). ``os.kill(pid, 0)`` is no such test on
Windows (there ``os.kill`` terminates the process). A process id means something only on the computer (and, on
Linux, in the process-id namespace: a container) that gave it out, and a folder on a network drive or mounted
into a container is written from several: the mark ends in :func:`host_tag`, and a mark of another computer is
never judged ended here (:func:`marked_process_alive`).
"""
import calendar
import contextlib
import functools
import hashlib
import os
import re
import socket
import subprocess
import sys
import time
from typing import Iterator, Optional

_WINDOWS_STILL_ACTIVE = 259  # GetExitCodeProcess's code of a process that has not exited
_WINDOWS_ACCESS_DENIED = 5  # OpenProcess on another user's (or a protected) process that exists
_WINDOWS_QUERY_LIMITED_INFORMATION = 0x1000
_PROC_STAT_PARENT = 1  # /proc/PID/stat field 4 (ppid), counted from field 3 (the one after the name)
_PROC_STAT_START_TIME = 19  # /proc/PID/stat field 22 (starttime), counted from field 3 (the one after the name)
_WINDOWS_FILETIME_PER_SECOND = 10 ** 7  # FILETIME counts 100 ns units
_WINDOWS_FILETIME_OF_1970 = 116444736000000000  # 1970-01-01 (UTC) as a FILETIME (100 ns units since 1601)
_PS_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_BASE_36_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"

PROCESS_MARK = r"(?P<pid>\d+)(?:-(?P<start>[0-9a-z]+))?(?:@(?P<host>[0-9a-z]+))?"
"""A regular expression matching :func:`process_mark`'s text: groups ``pid``, ``start`` (the start time in
base 36; no ``start`` in the names that versions before start times were recorded wrote, and where no start time
can be read) and ``host`` (:func:`host_tag`; none in the names of versions up to 0.2.0)."""

HOST_TAG_CHARACTERS = 4
"""Base-36 characters of :func:`host_tag`: 36**4 = 1679616 values, so two given computers share one with a chance
of about 6e-7 (and then only the 10-minute age of ``fileutil.STALE_TEMPORARY_SECONDS`` guards their files), while
each temporary name grows by only 5 characters, which Windows' 260-character path limit takes from the deepest
output folder (``fileutil.temporary_stem``)."""

START_TIME_SLACK_SECONDS = 2.0
"""How much earlier than the start of the process now holding an id a file or folder must have been last changed
for a start time that differs from its name's to count (:func:`process_alive`): clocks are read at slightly
different moments, and ``ps`` tells whole seconds."""


ID_ALONE_SLACK_SECONDS = 600.0
"""How much earlier than the start of the process now holding an id a file or folder named by that id alone (no
start time: versions before start times were recorded) must have been last changed for the holder to count as
another process (:func:`process_alive`). Wider than :data:`START_TIME_SLACK_SECONDS`, as only the clock tells the
two apart here: a step of the wall clock (NTP, a clock set by hand) must not make a running writer count as ended.
Without it a set-aside output named by an id that a process started later holds (a container gives each run the
same few ids: the run itself, as process 1) stayed hidden for as long as that process ran."""


def process_alive(pid: int, start_time: Optional[int] = None, changed_at: Optional[float] = None) -> bool:
    """True while a process with id ``pid`` exists and has not exited (a zombie, ended but not yet reaped by its
    parent, counts as ended). With ``start_time`` (what :func:`process_start_time` said when the process was
    recorded), only while the process now holding ``pid`` started then: one started at another time is another
    process, and ``pid``'s has ended. With ``changed_at`` too (seconds since 1970: when the file or folder that
    recorded ``start_time`` was last changed), another start time counts only when ``changed_at`` is more than
    :data:`START_TIME_SLACK_SECONDS` before the holder started (:func:`process_started_at`): Linux shifts start
    times by the reader's time-namespace offset, so a writer inside ``unshare --time`` recorded another one than
    this process reads for it, and what changed after the holder started may be the holder's own; where the
    holder's start cannot be told, the holder counts as the writer. Without ``changed_at`` another start time
    always counts (for start times read in this process's time namespace). Without ``start_time`` but with
    ``changed_at`` (a name of an earlier version, which holds the id alone), the holder counts as another process
    when it started more than :data:`ID_ALONE_SLACK_SECONDS` after ``changed_at`` (not on Windows, where a rename
    changes neither of a file's times: a set-aside file's tell nothing of its writer). Where no start time can be
    read now, the id alone decides. When it cannot be told (another user's process, an unknown error) the answer
    is True, so that callers keep what such a process may still use. ``pid`` <= 0 names no process: False."""
    pid = int(pid)
    if not _process_id_alive(pid):
        return False
    if start_time is None:
        return changed_at is None or sys.platform.startswith("win") or not _changed_before_start_of(
            pid, changed_at, ID_ALONE_SLACK_SECONDS)
    started = process_start_time(pid)
    if started is None or started == int(start_time):
        return True
    return changed_at is not None and not _changed_before_start_of(pid, changed_at)


def _changed_before_start_of(pid: int, changed_at: float, slack: float = START_TIME_SLACK_SECONDS) -> bool:
    """Whether ``changed_at`` (seconds since 1970) is more than ``slack`` seconds before process ``pid`` started
    (:func:`process_started_at`); False where that cannot be told."""
    started_at = process_started_at(pid)
    return started_at is not None and changed_at < started_at - slack


def marked_process_alive(match: "re.Match", changed_at: float) -> bool:
    """:func:`process_alive` for the process that a match of :data:`PROCESS_MARK` names, in the name of a file or
    folder last changed at ``changed_at`` (seconds since 1970: the later of its ``st_mtime`` and ``st_ctime``).
    True for a process of another computer or container (:func:`marked_elsewhere`): its id means nothing here."""
    if marked_elsewhere(match):
        return True
    start = match["start"]
    return process_alive(int(match["pid"]), None if start is None else int(start, 36), changed_at)


def process_mark(pid: Optional[int] = None) -> str:
    """:func:`process_mark_of` process ``pid`` (default: this one, which must run on this computer), its
    :func:`process_start_time` and this computer's :func:`host_tag`: the names of the files and folders a run may
    leave behind carry it, and :func:`marked_process_alive` tells from it whether their writer still runs."""
    pid = os.getpid() if pid is None else int(pid)
    return process_mark_of(pid, process_start_time(pid), host_tag())


def process_mark_of(pid: int, start_time: Optional[int], host: Optional[str] = None) -> str:
    """``{pid}-{start_time}@{host}``, the start time in base 36 (lower-case letters: 12 characters for a Windows
    FILETIME until the year 16600, where 18 decimal digits made names in deep folders exceed Windows' path
    limit), without ``-{start_time}`` where ``start_time`` is None and without ``@{host}`` where ``host`` is None
    (the names of versions up to 0.2.0): the text :data:`PROCESS_MARK` matches."""
    mark = str(int(pid)) if start_time is None else f"{int(pid)}-{_in_base_36(int(start_time))}"
    return mark if host is None else f"{mark}@{host}"


def stable_machine_id(platform: Optional[str] = None) -> str:
    """A Mac's own id, which the network it joins does not change (IOPlatformUUID, from ``ioreg``); '' elsewhere or
    where it cannot be read (Linux and Windows keep the computer's name: a container's own name tells it apart on
    Linux, and a Windows PC's name does not change with its network)."""
    platform = sys.platform if platform is None else platform
    if platform != "darwin":
        return ""
    try:
        text = subprocess.run(["ioreg", "-rd1", "-c", "IOPlatformExpertDevice"], capture_output=True, text=True,
                              timeout=10).stdout
    except Exception:  # noqa: BLE001 - no ioreg: the computer's name stands for it
        return ""
    found = re.search(r'"IOPlatformUUID"\s*=\s*"([^"]+)"', text or "")
    return found.group(1) if found else ""


def _tag_of(name: str, namespace: str) -> str:
    digest = hashlib.sha256(f"{name}\0{namespace}".encode("utf-8", "surrogateescape")).digest()
    return _in_base_36(int.from_bytes(digest[:8], "big") % 36 ** HOST_TAG_CHARACTERS).rjust(HOST_TAG_CHARACTERS, "0")


def _computer_name() -> str:
    try:
        return socket.gethostname()
    except OSError:
        return ""


def _pid_namespace() -> str:
    if sys.platform.startswith("linux"):
        try:
            return os.readlink("/proc/self/ns/pid")
        except OSError:
            pass
    return ""


@functools.lru_cache(maxsize=None)
def host_tag() -> str:
    """:data:`HOST_TAG_CHARACTERS` base-36 characters of a SHA-256 of this computer's id (a Mac's
    :func:`stable_machine_id`, else its name, ``socket.gethostname()``) and, on Linux, this process's process-id
    namespace (``/proc/self/ns/pid``: a container sharing the computer's name, such as a Kubernetes pod on the host
    network, has its own process ids). Process ids in names carrying another tag are not this computer's to judge
    (:func:`marked_elsewhere`, which also takes a Mac's name-based tag of earlier versions as its own). A Mac's name
    changes with the network it joins, and with it the tag did: a killed run's lock then blocked later runs as
    'another computer's', and the CT copies a crashed Slicer job left were never removed (the portability audit)."""
    return _tag_of(stable_machine_id() or _computer_name(), _pid_namespace())


@functools.lru_cache(maxsize=None)
def _name_tag() -> str:
    """The tag of this computer's name (:func:`host_tag`'s up to 0.6.17, on a Mac too)."""
    return _tag_of(_computer_name(), _pid_namespace())


def marked_elsewhere(match: "re.Match") -> bool:
    """Whether a match of :data:`PROCESS_MARK` names a process of another computer or container (its ``host`` is
    neither this :func:`host_tag` nor the tag of this computer's present name, which a Mac's files of 0.6.17 and
    earlier carry); False for marks without a host (versions up to 0.2.0)."""
    host = match.groupdict().get("host")
    return host is not None and host not in (host_tag(), _name_tag())  # a Mac's files of earlier versions: its own


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


def process_started_at(pid: int) -> Optional[float]:
    """When process ``pid`` started, in seconds since 1970 (UTC) by this computer's clock, the same whatever time
    namespace this process runs in: Linux: now - (``/proc/uptime`` - :func:`process_start_time` in seconds), both
    shifted by this process's boot-time offset, which cancels; Windows: the FILETIME in seconds; macOS and other
    POSIX systems: :func:`process_start_time` itself. None when it cannot be read."""
    pid = int(pid)
    started = _read_start_time(pid) if pid > 0 else None
    if started is None:
        return None
    if sys.platform.startswith("win"):
        return (started - _WINDOWS_FILETIME_OF_1970) / _WINDOWS_FILETIME_PER_SECOND
    if sys.platform.startswith("linux"):
        return _linux_seconds_since_1970(started)
    return float(started)


def _linux_seconds_since_1970(ticks_after_boot: int) -> Optional[float]:
    """Seconds since 1970 (UTC) of the moment ``ticks_after_boot`` clock ticks after boot, the boot as this
    process's time namespace tells it (``/proc/uptime``); None without ``/proc``."""
    try:
        with open("/proc/uptime", encoding="ascii") as handle:
            uptime_seconds = float(handle.read().split()[0])
        ticks_per_second = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return time.time() - (uptime_seconds - ticks_after_boot / ticks_per_second)


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


def _proc_stat_int(pid: int, index: int) -> Optional[int]:
    """The whole number at ``index`` of :func:`_proc_stat_fields` of ``pid``; None without it (not Linux, no such
    process, not a number)."""
    fields = _proc_stat_fields(pid)
    try:
        return int(fields[index])
    except (TypeError, IndexError, ValueError):
        return None


def proc_parent_pid(pid: int) -> Optional[int]:
    """The parent's process id of ``pid`` from ``/proc/PID/stat`` (its 4th field, ppid); None without it (not Linux,
    no such process)."""
    return _proc_stat_int(pid, _PROC_STAT_PARENT)


def _is_zombie(pid: int) -> bool:
    """Whether ``pid`` has ended but is not reaped yet (Linux ``/proc``; elsewhere False)."""
    fields = _proc_stat_fields(pid)
    return bool(fields) and fields[0] == "Z"


def _linux_start_time(pid: int) -> Optional[int]:
    """``/proc/PID/stat`` field 22: the clock ticks after boot at which ``pid`` started."""
    return _proc_stat_int(pid, _PROC_STAT_START_TIME)


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


@functools.lru_cache(maxsize=None)
def _windows_kernel32():
    """kernel32 through ctypes, with the signatures of the functions used here; loaded once and kept (each process
    check asked for it: a new WinDLL and the signatures set again every time). ``_windows_kernel32.cache_clear()``
    forgets it."""
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
