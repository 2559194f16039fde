"""A command started by another program stops once that program has ended (LiverTumorSegLib.parent_watch): the
Slicer module's child and heldout_comparison.py's children went on for minutes after their starter was killed."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from LiverTumorSegLib import parent_watch
from LiverTumorSegLib.processes import process_alive
from process_helpers import ended_process_id

ROOT = Path(__file__).resolve().parents[2]
posix_only = pytest.mark.skipif(os.name != "posix", reason="SIGKILL and SIGTERM of POSIX")


def _environment(**extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + os.environ.get("PYTHONPATH", "").split(os.pathsep)))
    env.pop(parent_watch.PARENT_VARIABLE, None)
    env.update(extra)
    return env


def test_the_variable_names_a_process_other_than_this_one():
    assert parent_watch.watched_pid({}) is None
    assert parent_watch.watched_pid({parent_watch.PARENT_VARIABLE: ""}) is None
    assert parent_watch.watched_pid({parent_watch.PARENT_VARIABLE: "abc"}) is None
    assert parent_watch.watched_pid({parent_watch.PARENT_VARIABLE: "-4"}) is None
    assert parent_watch.watched_pid({parent_watch.PARENT_VARIABLE: str(os.getpid())}) is None  # itself: no watch
    assert parent_watch.watched_pid({parent_watch.PARENT_VARIABLE: " 12345 "}) == 12345
    env = parent_watch.parent_environment({"HOME": "/h"})
    assert env == {"HOME": "/h", parent_watch.PARENT_VARIABLE: str(os.getpid())}
    assert parent_watch.watch_parent_from_environment({}) is None


def test_the_parent_and_the_grandparent_are_ancestors_a_stranger_is_not():
    assert parent_watch.is_ancestor(os.getppid()) is True
    if not os.path.exists(f"/proc/{os.getpid()}/stat"):
        pytest.skip("ancestors beyond the parent are read from /proc (Linux)")
    code = "import os, sys; from LiverTumorSegLib.parent_watch import is_ancestor; " \
           "print(is_ancestor(int(sys.argv[1])), is_ancestor(int(sys.argv[2])))"
    sibling = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        done = subprocess.run([sys.executable, "-c", code, str(os.getpid()), str(sibling.pid)], env=_environment(),
                              capture_output=True, text=True, timeout=60)
    finally:
        sibling.kill()
        sibling.wait()
    assert done.stdout.split() == ["True", "False"], done.stderr


def test_a_watch_ends_quietly_when_stopped(monkeypatch):
    stops = []
    monkeypatch.setattr(parent_watch, "_stop_this_process", stops.append)
    watch = parent_watch.watch_parent(os.getppid(), interval_s=0.01)
    assert watch is not None and watch.thread.daemon
    watch.stop()
    watch.thread.join(60)  # a bound that only a thread that never ends reaches, even on a slow, busy machine
    assert not watch.thread.is_alive() and stops == []


def test_a_parent_that_ends_is_noticed_by_the_thread(monkeypatch):
    stops = []
    monkeypatch.setattr(parent_watch, "_stop_this_process", stops.append)
    alive = {"now": True}
    monkeypatch.setattr(parent_watch, "_still_there", lambda pid, start: alive["now"])
    watch = parent_watch.watch_parent(os.getppid(), interval_s=0.01)
    alive["now"] = False
    watch.thread.join(60)  # a bound that only a thread that never ends reaches, even on a slow, busy machine
    assert stops == [os.getppid()]


@posix_only
def test_a_command_whose_starter_has_already_ended_stops_before_any_work(tmp_path):
    out = tmp_path / "labels.nii.gz"
    done = subprocess.run([sys.executable, "-m", "LiverTumorSegLib", "segment", "--sample", "-o", str(out)],
                          env=_environment(**{parent_watch.PARENT_VARIABLE: str(ended_process_id())}),
                          capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert done.returncode == 143, done.stderr
    assert "has ended, or no longer holds this process" in done.stderr and "terminated (SIGTERM)" in done.stderr
    assert list(tmp_path.iterdir()) == []


def _sleeping_command(tmp_path):
    """A command's main with its SIGTERM handling, as Python source; its 'work' is a sleep that the SIGTERM ends, after
    it has made ``tmp_path/started``."""
    return textwrap.dedent(f"""
        import sys, time
        from LiverTumorSegLib import cli
        def run(argv):
            open({str(tmp_path / 'started')!r}, 'w').close()
            time.sleep(120)
            return 0
        cli._main = run
        sys.exit(cli.main([]))
    """)


@posix_only
def test_a_command_stops_and_cleans_up_when_its_starter_is_killed(tmp_path):
    """The starter (standing for Slicer or heldout_comparison.py) is SIGKILLed while its child runs: the child,
    in a session of its own as those starters make it, notices within seconds and ends as SIGTERM ends it."""
    starter = textwrap.dedent("""
        import subprocess, sys
        from LiverTumorSegLib.parent_watch import parent_environment
        child = [sys.executable, "-c", sys.argv[1]]
        p = subprocess.Popen(child, env=parent_environment(), start_new_session=True)
        print(p.pid, flush=True)
        p.wait()
    """)
    child = _sleeping_command(tmp_path)
    process = subprocess.Popen([sys.executable, "-c", starter, child], env=_environment(), stdout=subprocess.PIPE,
                               text=True)
    child_pid = int(process.stdout.readline())
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / "started").exists()
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    ended_at = time.monotonic() + 60  # only a child that never noticed reaches it (it would sleep 120 s)
    while time.monotonic() < ended_at:
        if not process_alive(child_pid):  # (an ended child not yet reaped by its new parent counts as ended)
            break
        time.sleep(0.05)
    else:
        os.kill(child_pid, signal.SIGKILL)
        pytest.fail("the child ran on after its starter was killed")


def test_a_watch_stops_when_this_process_leaves_its_starters_descendants(monkeypatch):
    """The starter still runs but this process is no longer its descendant (a launcher between them was killed): it
    stopped only when the starter ended, so the orphan computed to the end (the child-job audit)."""
    stops = []
    monkeypatch.setattr(parent_watch, "_stop_this_process", stops.append)
    monkeypatch.setattr(parent_watch, "_still_there", lambda pid, start: True)
    descendant = {"now": True}
    monkeypatch.setattr(parent_watch, "is_ancestor", lambda pid: True if descendant["now"] else False)
    watch = parent_watch.watch_parent(12345, interval_s=0.01)
    assert watch is not None
    try:
        descendant["now"] = False
        watch.thread.join(60)  # a bound that only a thread that never ends reaches, even on a slow, busy machine
        assert stops == [12345]
    finally:  # a watch left running would stop the test process itself once the patches are undone
        watch.stop()
        watch.thread.join(60)


@posix_only
def test_a_command_stops_when_the_launcher_between_it_and_its_starter_is_killed(tmp_path):
    """Slicer (the starter) runs PythonSlicer (a launcher) that runs Python: the launcher killed from outside left the
    command running to its end while Slicer lived on. It now stops within seconds, as SIGTERM ends it."""
    if not os.path.exists(f"/proc/{os.getpid()}/stat"):
        pytest.skip("ancestors beyond the parent are read from /proc (Linux)")
    launcher = textwrap.dedent("""
        import subprocess, sys
        p = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
        print(p.pid, flush=True)
        p.wait()
    """)
    starter = textwrap.dedent("""
        import subprocess, sys, time
        from LiverTumorSegLib.parent_watch import parent_environment
        p = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], env=parent_environment(),
                             stdout=subprocess.PIPE, text=True, start_new_session=True)
        print(p.pid, p.stdout.readline().strip(), flush=True)
        time.sleep(120)
    """)
    child = _sleeping_command(tmp_path)
    process = subprocess.Popen([sys.executable, "-c", starter, launcher, child], env=_environment(),
                               stdout=subprocess.PIPE, text=True)
    try:
        launcher_pid, child_pid = (int(n) for n in process.stdout.readline().split())
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "started").exists()
        os.kill(launcher_pid, signal.SIGKILL)
        ended_at = time.monotonic() + 60  # only a child that never noticed reaches it (it would sleep 120 s)
        while time.monotonic() < ended_at:
            if not process_alive(child_pid):
                break
            time.sleep(0.05)
        else:
            os.kill(child_pid, signal.SIGKILL)
            pytest.fail("the command ran on after the launcher between it and its starter was killed")
        assert process.poll() is None  # the starter lives on, as Slicer does
    finally:
        process.kill()
        process.wait(10)
