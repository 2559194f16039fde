"""Whether a process is still running, by its process id, on POSIX and on Windows: :func:`process_alive`.

Files and folders that a run leaves behind when it is killed (SIGKILL, the out-of-memory killer, a crash of
Slicer) carry their writer's process id in their names; a later run removes or restores them only when that
process has ended. ``os.kill(pid, 0)`` is no such test on Windows (there ``os.kill`` terminates the process).
"""
import os
import sys

_WINDOWS_STILL_ACTIVE = 259  # GetExitCodeProcess's code of a process that has not exited
_WINDOWS_ACCESS_DENIED = 5  # OpenProcess on another user's (or a protected) process that exists
_WINDOWS_QUERY_LIMITED_INFORMATION = 0x1000


def process_alive(pid: int) -> bool:
    """True while a process with id ``pid`` exists and has not exited (a zombie, ended but not yet reaped by its
    parent, counts as ended). When it cannot be told (another user's process, an unknown error) the answer is
    True, so that callers keep what such a process may still use. ``pid`` <= 0 names no process: False."""
    pid = int(pid)
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


def _is_zombie(pid: int) -> bool:
    """Whether ``pid`` has ended but is not reaped yet (Linux ``/proc``; elsewhere False)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _windows_process_alive(pid: int) -> bool:
    """``OpenProcess`` + ``GetExitCodeProcess`` (no console window, no ``tasklist`` to parse)."""
    import ctypes
    from ctypes import wintypes

    if pid > 0xFFFFFFFF:
        return False
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.OpenProcess.restype = wintypes.HANDLE
    kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
    kernel32.GetExitCodeProcess.argtypes = (wintypes.HANDLE, ctypes.POINTER(wintypes.DWORD))
    kernel32.CloseHandle.argtypes = (wintypes.HANDLE,)
    handle = kernel32.OpenProcess(_WINDOWS_QUERY_LIMITED_INFORMATION, False, pid)
    if not handle:  # no such process (ERROR_INVALID_PARAMETER), or one this user may not look at
        return ctypes.get_last_error() == _WINDOWS_ACCESS_DENIED
    try:
        code = wintypes.DWORD()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == _WINDOWS_STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)
