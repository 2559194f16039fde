"""Process ids for tests of what a killed run leaves behind (names carrying their writer's process id)."""
import subprocess
import sys


def ended_process_id() -> int:
    """The id of a process that has exited (and been reaped): a killed run's, for the names it left."""
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    return int(ended.stdout)
