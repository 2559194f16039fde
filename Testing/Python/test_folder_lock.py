"""folder_lock where flock is not available (Windows, some network shares): the lock goes by the mark in the
file alone, and that file is never read through a symbolic link, nor read when it is no plain file."""
import os
import subprocess
import sys
import threading
import time

import pytest

from LiverTumorSegLib import folder_lock as folder_lock_module
from LiverTumorSegLib.folder_lock import folder_lock, read_mark
from LiverTumorSegLib.processes import process_mark

needs_links = pytest.mark.skipif(not hasattr(os, "symlink") or os.name != "posix", reason="symbolic links, FIFOs")


class Busy(Exception):
    pass


@pytest.fixture
def without_flock(monkeypatch):
    """folder_lock as where flock is not available: by the mark alone."""
    monkeypatch.setattr(folder_lock_module, "_flocked_lock_file", lambda lock, mark, busy, *more: None)


@needs_links
def test_a_link_to_a_running_processs_mark_is_removed_not_read(tmp_path, without_flock):
    """A symbolic link at the lock's name to a file holding a running process's mark (another folder's lock, a
    file of anyone's) was read through and refused every run as busy; the link is now removed unread, the lock
    taken, and the file it named is left as it was."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        named = tmp_path / "elsewhere.lock"
        named.write_text(process_mark(other.pid), encoding="ascii")
        out = tmp_path / "out"
        out.mkdir()
        (out / ".lock").symlink_to(named)
        assert read_mark(out / ".lock") == ("", 0.0)
        with folder_lock(out, ".lock", Busy) as lock:
            assert not lock.is_symlink() and read_mark(lock)[0] == process_mark()
        assert not os.path.lexists(out / ".lock")
        assert named.read_text(encoding="ascii") == process_mark(other.pid)
    finally:
        other.kill()
        other.wait()


@needs_links
@pytest.mark.parametrize("how", ["a named pipe", "a link to a named pipe"])
def test_a_named_pipe_at_the_lock_is_not_read(tmp_path, without_flock, how):
    """Reading a named pipe waits for a writer that never comes: the run hung before taking the lock. A helper
    thread here opens the pipe for writing after 5 s to end such a wait; the lock is taken well before that."""
    pipe = tmp_path / "pipe"
    os.mkfifo(str(pipe))
    out = tmp_path / "out"
    out.mkdir()
    if how == "a named pipe":
        os.replace(str(pipe), str(out / ".lock"))
        pipe = out / ".lock"
    else:
        (out / ".lock").symlink_to(pipe)
    done = threading.Event()

    def release_a_waiting_reader():
        if done.wait(5.0):
            return
        with open(os.open(str(pipe), os.O_WRONLY | os.O_NONBLOCK), "w"):
            pass

    helper = threading.Thread(target=release_a_waiting_reader, daemon=True)
    helper.start()
    start = time.monotonic()
    try:
        with folder_lock(out, ".lock", Busy) as lock:
            assert read_mark(lock)[0] == process_mark()
    finally:
        done.set()
        helper.join()
    assert time.monotonic() - start < 4.0
    assert not os.path.lexists(out / ".lock")


@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_a_live_run_that_holds_the_lock_by_its_mark_alone_is_busy_and_its_mark_kept(tmp_path):
    """A run of a version that took no flock (or one on a share without flock) holds the lock by its mark alone:
    the flock is free, but the mark names a live process, so the run is refused as busy, and the lock file still
    names that process (it is not cut to our mark before the refusal)."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out = tmp_path / "out"
        out.mkdir()
        theirs = process_mark(other.pid)
        (out / ".lock").write_text(theirs, encoding="ascii")
        with pytest.raises(Busy) as refused:
            with folder_lock(out, ".lock", Busy):
                pytest.fail("the lock of a live run was taken")
        assert refused.value.args == (theirs,)
        assert (out / ".lock").read_text(encoding="ascii") == theirs
    finally:
        other.kill()
        other.wait()
    with folder_lock(out, ".lock", Busy) as lock:  # its process ended: taken over
        assert read_mark(lock)[0] == process_mark()
    assert not os.path.lexists(out / ".lock")


@pytest.mark.parametrize("flock", [True, False], ids=["flock", "mark_alone"])
def test_a_full_disk_while_taking_the_lock_names_the_lock_and_leaves_no_empty_lock(tmp_path, monkeypatch, flock):
    """A full disk as the lock's mark was written said 'No space left for a file' (naming nothing) and left an empty
    lock file behind (the interruption audit)."""
    import errno
    import io

    from LiverTumorSegLib.cli import file_system_error_text

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    if flock:
        monkeypatch.setattr(folder_lock_module.os, "write", full)
    else:  # where flock is not available: the mark alone, written through a stream
        monkeypatch.setattr(folder_lock_module, "_flocked_lock_file", lambda lock, mark, busy, *more: None)

        class FullStream(io.StringIO):
            write = full

        monkeypatch.setattr(folder_lock_module.os, "fdopen",
                            lambda handle, *a, **k: os.close(handle) or FullStream())
    with pytest.raises(OSError) as raised:
        with folder_lock(tmp_path, ".lock", lambda held: RuntimeError(held)):
            pass
    monkeypatch.undo()
    assert str(tmp_path / ".lock") in str(file_system_error_text(raised.value))
    assert not (tmp_path / ".lock").exists()
