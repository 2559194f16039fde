"""Process ids for tests of what a killed run leaves behind (names carrying their writer's process id)."""
import subprocess
import sys


def ended_process_id() -> int:
    """The id of a process that has exited (and been reaped): a killed run's, for the names it left."""
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    return int(ended.stdout)


def mark_of_an_earlier_holder_of_this_process_id(monkeypatch) -> str:
    """The process mark (``{pid}-{start time}``, as names carry it) of a process that had this test process's id
    before it (ended, e.g. before a reboot): this id with another start time. Another start time counts only for
    what was last changed before the id's holder started (``processes.process_alive``), and what a test makes now
    is changed after this process started (a change time cannot be set back): this process is made to count as
    started a minute from now. Skips the test where no start time can be read."""
    import os
    import time

    import pytest

    from LiverTumorSegLib import processes

    started = processes.process_start_time(os.getpid())
    if started is None:
        pytest.skip("no process start time can be read on this system: names are judged by process id alone")
    real_started_at, later = processes.process_started_at, time.time() + 60
    monkeypatch.setattr(processes, "process_started_at",
                        lambda pid: later if int(pid) == os.getpid() else real_started_at(pid))
    return processes.process_mark_of(os.getpid(), started - 1)


def read_in_another_time_namespace(monkeypatch) -> None:
    """Make this process's start time read as a run in another Linux time namespace (``unshare --time``) reads it:
    ``/proc/PID/stat`` is shifted by the reader's boot-time offset, so it differs from the one in this process's
    names (taken before this is called). Its start in seconds since 1970 (``processes.process_started_at``) is the
    same in every namespace and stays as it is. Skips the test where no start time can be read."""
    import os

    import pytest

    from LiverTumorSegLib import processes

    read_here = processes.process_start_time
    if read_here(os.getpid()) is None:
        pytest.skip("no process start time can be read on this system: names are judged by process id alone")
    offset = 100 * 1000  # 1000 s of boot-time offset, in clock ticks of 10 ms
    monkeypatch.setattr(processes, "process_start_time",
                        lambda pid: read_here(pid) + offset if int(pid) == os.getpid() else read_here(pid))
