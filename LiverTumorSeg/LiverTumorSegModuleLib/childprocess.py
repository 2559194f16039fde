"""The segmentation child process: its command line, its stdout protocol, and starting / killing it.

The module never computes in Slicer's process. It starts ``PythonSlicer -m LiverTumorSegLib segment INPUT
-o LABELS --report R.json [--probabilities P] [options] --progress json`` and reads its stdout, which carries
only JSON lines (the library's ``--progress json`` contract):

* ``{"progress": 0.42, "stage": "network"}`` - monotone, the last one is 1.0;
* ``{"done": true, "outputs": {"labels": path, "report": path|null, "probabilities": path|null,
  "preview": path|null}, "seconds": s, "device": "..."}`` - success, exit code 0;
* ``{"error": "one line"}`` - a user-fixable error, exit code 2.

A *process runner* starts one child and is polled without blocking (no thread anywhere):

* ``start(program, args, env)``; ``read_stdout_lines() -> list of str`` (complete lines read so far, never
  blocks); ``read_stderr() -> str``; ``is_running() -> bool``; ``exit_code() -> int or None``;
  ``kill()`` (the child and every process it started, at once); ``wait(timeout_s) -> bool``.

:class:`SubprocessRunner` implements it with :mod:`subprocess` (POSIX only: non-blocking pipes, the child in its
own session so one ``killpg`` ends its children too); the module uses a ``qt.QProcess`` runner in Slicer
(``LiverTumorSeg.QProcessRunner``, all platforms), which calls :func:`kill_process_tree` on Cancel.
Nothing here imports Qt or Slicer.
"""
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

PROGRESS, DONE, ERROR, OTHER = "progress", "done", "error", "other"


@dataclass
class ChildMessage:
    """One stdout line of the child, parsed. ``kind``: progress | done | error | other (not our JSON).

    ``fraction`` 0..1 and ``stage`` for progress; ``outputs`` (name -> path or None), ``seconds`` and
    ``device`` for done; ``error`` (one line for the user) for error; ``text`` is the raw line."""

    kind: str
    text: str = ""
    fraction: float = 0.0
    stage: str = ""
    outputs: Dict[str, Optional[str]] = field(default_factory=dict)
    seconds: float = 0.0
    device: str = ""
    error: str = ""


MAX_MESSAGE_CHARS = 1 << 20
"""The longest stdout line read as one of the child's JSON messages (a progress line is under 200 characters)."""


def parse_line(line: str) -> ChildMessage:
    """Parse one stdout line of the child. Anything that is not one of the three JSON objects is ``other``."""
    text = line.strip()
    try:  # RecursionError: a line nested thousands deep crashed the run's poll, which killed the child
        data = json.loads(text) if len(text) <= MAX_MESSAGE_CHARS else None
    except (ValueError, RecursionError):
        return ChildMessage(OTHER, text=text[:MAX_MESSAGE_CHARS])
    if data is None:  # a line longer than any message the child writes: other output, kept short
        return ChildMessage(OTHER, text=text[:MAX_MESSAGE_CHARS])
    if not isinstance(data, dict):
        return ChildMessage(OTHER, text=text)
    if "error" in data:
        return ChildMessage(ERROR, text=text, error=str(data["error"]))
    if data.get("done") is True:
        outputs = data.get("outputs") if isinstance(data.get("outputs"), dict) else {}
        return ChildMessage(DONE, text=text, outputs={str(k): (None if v is None else str(v))
                                                      for k, v in outputs.items()},
                            seconds=_number(data.get("seconds")), device=str(data.get("device") or ""))
    if "progress" in data:
        fraction = min(max(_number(data.get("progress")), 0.0), 1.0)
        return ChildMessage(PROGRESS, text=text, fraction=fraction, stage=str(data.get("stage") or ""))
    return ChildMessage(OTHER, text=text)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


class LineBuffer:
    """Splits a byte stream that arrives in arbitrary chunks into complete text lines (UTF-8)."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> List[str]:
        """Add ``data``; return the lines completed by it (without line ends, empty lines dropped)."""
        self._pending += data
        *complete, self._pending = self._pending.split(b"\n")
        return [c.decode("utf-8", "replace").rstrip("\r") for c in complete if c.strip()]

    def flush(self) -> List[str]:
        """The last line when the stream ended without a line end."""
        rest, self._pending = self._pending, b""
        text = rest.decode("utf-8", "replace").strip()
        return [text] if text else []


# --- environment ------------------------------------------------------------------------------------

def child_environment(library_root: str, base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """Environment of the child: ``base`` (default: this process's) with ``library_root`` (the folder that
    holds ``LiverTumorSegLib``) first on PYTHONPATH, unbuffered output (progress arrives as it is made) and
    UTF-8 on its standard streams and in ``open()`` (``PYTHONIOENCODING``, ``PYTHONUTF8``): this module decodes
    the child's output as UTF-8, and on Windows a redirected stream is otherwise in the ANSI code page, so a
    user name such as 'Łukasz' in a path failed to print (UnicodeEncodeError) or came back garbled. Python's fault
    handler is on (``PYTHONFAULTHANDLER``): a child that crashes in native code (a segmentation fault in a
    library) writes the Python stack it crashed in to stderr, which the panel shows as the details (they were
    empty). ``LIVERTUMORSEG_PARENT_PID`` names this process, whose end (a crash of Slicer) stops the child."""
    env = dict(os.environ if base is None else base)
    paths = [library_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != library_root]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONUTF8"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"
    # the child stops itself once this process has ended (Slicer crashed or was killed): it went on with the CPU or
    # GPU for minutes, for results nobody would load (LiverTumorSegLib.parent_watch)
    from LiverTumorSegLib.parent_watch import parent_environment  # beside this package in Slicer

    return parent_environment(env)


# --- killing a process tree --------------------------------------------------------------------------

def descendant_pids(pid: int) -> List[int]:
    """Process IDs of every descendant of ``pid`` (children first level first). On Linux from ``/proc`` (each
    ``/proc/PID/stat``, which is what ``ps`` reads there: no process is started, and a minimal Linux or container
    without procps is covered); elsewhere (macOS, BSD), or where ``/proc`` gives nothing, from ``ps``. Without
    either: [] (then only ``pid`` itself can be killed: the launcher, not the Python it started)."""
    children = _children_from_proc() if sys.platform.startswith("linux") else {}
    if not children:
        children = _children_from_ps() or {}
    found, frontier = [], [pid]
    while frontier:
        nxt = []
        for parent in frontier:
            for child in children.get(parent, []):
                if child not in found and child != pid:
                    found.append(child)
                    nxt.append(child)
        frontier = nxt
    return found


def _children_from_ps() -> Optional[Dict[int, List[int]]]:
    """parent id -> ids of its children, as ``ps`` lists them; None when ``ps`` is missing, fails or lists nothing
    (it lists at least this process)."""
    try:
        listed = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    children: Dict[int, List[int]] = {}
    for line in (listed.stdout or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            children.setdefault(int(parts[1]), []).append(int(parts[0]))
    return children if listed.returncode == 0 and children else None


def _children_from_proc() -> Dict[int, List[int]]:
    """parent id -> ids of its children, from each ``/proc/PID/stat`` (Linux); {} without ``/proc`` (or without
    ``LiverTumorSegLib``, which the module finds beside this package)."""
    try:
        from LiverTumorSegLib.processes import proc_parent_pid  # beside this package in Slicer, as childjob uses it
        entries = os.listdir("/proc")
    except (ImportError, OSError):
        return {}
    children: Dict[int, List[int]] = {}
    for entry in entries:
        if entry.isdigit():
            parent = proc_parent_pid(int(entry))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    return children


_NO_CONSOLE_WINDOW = {"creationflags": getattr(subprocess, "CREATE_NO_WINDOW", 0)} if sys.platform.startswith("win") \
    else {}
"""On Windows, taskkill started from Slicer (a GUI program) would flash a console window."""


def kill_process_tree(pid: int) -> None:
    """Kill ``pid`` and all its descendants now (SIGKILL; ``taskkill /T /F`` on Windows). Gone ones are fine.

    ``PythonSlicer`` is a launcher that starts the real Python as its child, so killing only ``pid`` would
    leave the network running."""
    if pid is None or pid <= 0:
        return
    if sys.platform.startswith("win"):
        try:  # a taskkill that hangs froze Slicer's main thread with it
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(pid)], capture_output=True, timeout=30,
                           **_NO_CONSOLE_WINDOW)
        except (subprocess.TimeoutExpired, OSError):
            pass
        return
    victims = descendant_pids(pid)
    for target in [pid] + victims:
        try:
            os.kill(target, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# --- subprocess runner (headless tests, POSIX) ----------------------------------------------------------

class SubprocessRunner:
    """The process-runner protocol with :mod:`subprocess`, for headless use on POSIX.

    The child runs in its own session (process group), so :meth:`kill` ends it and everything it started
    with one ``killpg`` (plus :func:`kill_process_tree` for anything that left the group). Pipes are
    non-blocking: reads return what is there."""

    def __init__(self) -> None:
        if sys.platform.startswith("win"):
            raise RuntimeError("SubprocessRunner is POSIX only; use the module's QProcess runner on Windows.")
        self._process: Optional[subprocess.Popen] = None
        self._stdout = LineBuffer()
        self._stderr = b""

    @property
    def pid(self) -> Optional[int]:
        return None if self._process is None else self._process.pid

    def start(self, program: str, args: Sequence[str], env: Optional[Mapping[str, str]] = None) -> None:
        self._process = subprocess.Popen([program] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, env=None if env is None else dict(env),
                                         start_new_session=True)
        os.set_blocking(self._process.stdout.fileno(), False)
        os.set_blocking(self._process.stderr.fileno(), False)

    @staticmethod
    def _read_available(stream) -> bytes:
        chunks = []
        while True:
            try:
                chunk = os.read(stream.fileno(), 65536)
            except BlockingIOError:
                break
            except (OSError, ValueError):  # closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def read_stdout_lines(self) -> List[str]:
        if self._process is None:
            return []
        self.read_stderr()  # drain stderr too: a full pipe would block the child
        lines = self._stdout.feed(self._read_available(self._process.stdout))
        if not self.is_running():
            lines += self._stdout.feed(self._read_available(self._process.stdout)) + self._stdout.flush()
        return lines

    def read_stderr(self) -> str:
        if self._process is not None:
            self._stderr = (self._stderr + self._read_available(self._process.stderr))[-65536:]
        return self._stderr.decode("utf-8", "replace")

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def exit_code(self) -> Optional[int]:
        return None if self._process is None else self._process.poll()

    def wait(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s`` seconds for new output or the end; True when the child has ended."""
        deadline = time.monotonic() + timeout_s
        while self.is_running() and time.monotonic() < deadline:
            time.sleep(min(0.02, max(deadline - time.monotonic(), 0.0)))
        return not self.is_running()

    def kill(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        pid = self._process.pid
        kill_process_tree(pid)  # descendants first listed while the parent still exists
        try:
            os.killpg(pid, signal.SIGKILL)  # the session: everything that stayed in it
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        """Release the pipes (after the child ended)."""
        if self._process is not None:
            for stream in (self._process.stdout, self._process.stderr):
                try:
                    stream.close()
                except OSError:
                    pass


def qbytearray_bytes(array: Any) -> bytes:
    """The bytes of a ``qt.QByteArray`` (e.g. ``QProcess.readAllStandardOutput()``). PythonQt's ``data()`` is not
    documented to return ``bytes`` rather than ``str`` in every Slicer version (other modules handle both), and
    ``bytes(str)`` raises TypeError, which would have turned every run into a failure: both are taken. A ``str``
    is either the raw bytes one character each (latin-1) or text already decoded; the first gives UTF-8 when encoded
    back as latin-1 (the child writes UTF-8), the second is encoded as UTF-8 again (latin-1 garbled its non-ASCII
    characters, such as an accented folder name in an error message)."""
    raw = array.data()
    if not isinstance(raw, str):
        return bytes(raw)
    try:
        as_bytes = raw.encode("latin-1")
        as_bytes.decode("utf-8")
        return as_bytes
    except UnicodeError:  # characters beyond latin-1, or bytes that are no UTF-8: decoded text
        return raw.encode("utf-8", "surrogateescape")

