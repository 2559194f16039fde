"""Process ids for tests of what a killed run leaves behind (names carrying their writer's process id)."""
import subprocess
import sys


def ended_process_id() -> int:
    """The id of a process that has exited (and been reaped): a killed run's, for the names it left."""
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    return int(ended.stdout)


def mark_of_an_earlier_holder_of_this_process_id() -> str:
    """The process mark (``{pid}-{start time}``, as names carry it) of a process that had this test process's id
    before it (ended, e.g. before a reboot): this id with another start time. Skips the test where no start time
    can be read."""
    import os

    import pytest

    from LiverTumorSegLib.processes import process_mark_of, process_start_time

    started = process_start_time(os.getpid())
    if started is None:
        pytest.skip("no process start time can be read on this system: names are judged by process id alone")
    return process_mark_of(os.getpid(), started - 1)
