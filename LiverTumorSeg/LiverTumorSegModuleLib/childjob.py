"""One run of a ``LiverTumorSegLib`` command in a child process, driven from Slicer's main thread (Qt-free).

:class:`ChildJob` holds what every such run shares: a temporary folder for the child's files, starting the child
through a process runner (``childprocess.SubprocessRunner`` headless, the module's QProcess runner in Slicer),
:meth:`~ChildJob.poll` (``None`` while the child runs, then the outcome), :meth:`~ChildJob.cancel` (kills the
child and its children at once) and :meth:`~ChildJob.wait` (blocking, for scripts and tests). A subclass writes
the child's inputs and returns its arguments (:meth:`~ChildJob._prepare`), reads the child's stdout while it runs
(:meth:`~ChildJob._read_messages`) and turns the ended child into an outcome (:meth:`~ChildJob._finish`).
"""
import collections
import json
import os
import shutil
import tempfile
import time
from typing import Any, Callable, Deque, Dict, List, Optional

from . import childprocess

DONE, FAILED, CANCELLED = "done", "failed", "cancelled"  # an outcome's ``kind``


def require_scene_node(scene: Any, node: Any, class_name: str, what: str) -> None:
    """InputError, before any work, when ``node`` (None is left to the caller) is not a ``class_name`` MRML node
    (subclasses count) in ``scene``. ``what``: the argument as the message names it ("the CT", "the segmentation"). A
    script that passed its nodes in another order (``measureSegmentation(ct, segmentation)``) or a node's name instead
    of the node got "AttributeError: ... has no attribute 'GetSegmentation'" from deep inside the run; one whose node
    was never added to the scene was refused only after the whole run, as "removed from the scene while it was
    segmented"."""
    from LiverTumorSegLib.errors import InputError
    if node is None:
        return
    require_node_of_class(node, class_name, what)
    if not scene.IsNodePresent(node):
        raise InputError(f"'{node.GetName()}', given as {what}, is not in the scene (slicer.mrmlScene); add it first "
                         f"(slicer.mrmlScene.AddNode), or load it with slicer.util.loadVolume or loadSegmentation.")


def require_node_of_class(node: Any, class_name: str, what: str) -> None:
    """InputError, before any work, when ``node`` (None is left to the caller) is not a ``class_name`` MRML node
    (subclasses count), in or out of a scene; ``what`` as for :func:`require_scene_node`. A table given by its name
    (``tableNode="CT liver lesions"``) ran the whole segmentation and then failed with "TypeError: IsNodePresent
    argument 1: method requires a VTK object", the result lost."""
    from LiverTumorSegLib.errors import InputError
    if node is None:
        return
    if not callable(getattr(node, "IsA", None)) or not node.IsA("vtkMRMLNode"):  # a name, or a node's vtkImageData
        named = f" {node!r}; pass the node itself, e.g. slicer.util.getNode({node!r})" if isinstance(node, str) \
            else "; pass the node itself"  # (or vtkSegmentation), which has no GetName: that was an AttributeError
        kind = node.GetClassName() if callable(getattr(node, "GetClassName", None)) else type(node).__name__
        raise InputError(f"{what[:1].upper()}{what[1:]} must be a {class_name}, not the {kind}{named}.")
    if not node.IsA(class_name):
        raise InputError(f"'{node.GetName()}' is a {node.GetClassName()}, given as {what}, which must be a "
                         f"{class_name}; check the order of the arguments.")


def reusable_table(scene: Any, table_node: Any, describes: Any, search_scene: bool = False) -> Any:
    """``table_node`` when it is still in ``scene`` and ``describes(table_node)`` (it lists what is measured
    again); else, with ``search_scene``, the first table of the scene that ``describes`` (the panel keeps no
    reference to it after a saved scene is loaded); else None: a new table is made and the earlier one kept."""
    if table_node is not None and scene.IsNodePresent(table_node) and describes(table_node):
        return table_node
    if search_scene:
        for index in range(scene.GetNumberOfNodesByClass("vtkMRMLTableNode")):
            candidate = scene.GetNthNodeByClass(index, "vtkMRMLTableNode")
            if candidate is not None and describes(candidate):
                return candidate
    return None


def last_error_line(stderr: str) -> str:
    """The child's one-line ``error: ...`` message without the prefix, else its last stderr line, else ''."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    if errors:
        return errors[-1][len("error: "):]
    return lines[-1] if lines else ""


class ChildResultError(RuntimeError):
    """The child ended without an error, but a file it wrote cannot be used (truncated, not JSON, not the report the
    module reads: a full disk, a virus scanner, a child of another library version); raised before the scene is
    changed."""


def unusable_result(what: str, name: str, problem: Any) -> ChildResultError:
    """The :class:`ChildResultError` for ``what`` ("The segmentation process") whose file ``name`` (or report key)
    cannot be used because of ``problem`` (an exception or a text)."""
    return ChildResultError(f"{what} ended without an error, but its result could not be used ({name}: "
                            f"{str(problem).rstrip('.')}). "
                            f"The scene was not changed; run it again, and if this happens again, report it with "
                            f"the details.")


def check_shown_in_scratch_scene(what: str, name: str, make_table: Callable[[Any], Any],
                                  make_text: Callable[[], Any]) -> None:
    """Raise :func:`unusable_result` (``what``'s file ``name``) unless ``make_table(scene)`` works in an MRML scene of
    its own and ``make_text()`` works: the child's report is tried before the user's scene is changed (a report the
    table or the panel's text cannot take failed after the user's segments had been replaced)."""
    try:
        import slicer
        scratch = slicer.vtkMRMLScene()
        try:
            make_table(scratch)
        finally:
            scratch.Clear(1)
        make_text()
    except Exception as exc:  # noqa: BLE001 - whatever the report holds that the table or the text cannot
        raise unusable_result(what, name, f"{type(exc).__name__}: {exc}") from exc


def read_result_json(path: str, what: str) -> Dict[str, Any]:
    """The JSON object in the child's file ``path``; :class:`ChildResultError` (see :func:`unusable_result`) when
    it cannot be read or is no JSON object: a truncated file failed with "Expecting value: line 1 column 21"."""
    name = os.path.basename(path)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise unusable_result(what, name, exc) from exc
    if not isinstance(data, dict):
        raise unusable_result(what, name, f"a JSON {type(data).__name__}, not an object")
    return data


TEMP_FOLDER_PREFIX = "LiverTumorSeg."
"""A job's temporary folder is ``{temp_root}/LiverTumorSeg.{pid}-{start time}@{host}-{random}.tmp`` (Slicer's
process id and start time and this computer's tag: ``LiverTumorSegLib.fileutil.temporary_prefix``; without
``-{start time}`` where no start time can be read, and from earlier versions also without ``@{host}``). It holds
a copy of the CT (patient data): one that Slicer left behind when it crashed or was killed while a job ran is
removed when a later job starts, once that process has ended (:func:`remove_stale_job_folders`)."""

REMOVE_RETRY_SECONDS = (0.1, 0.2, 0.3, 0.4)
SIGKILL_NUMBER = 9  # on every POSIX system
_MEMORY_HINT = ("; when nobody stopped it, the system most likely ran out of memory and killed it: close other "
                "programs, or crop the CT to the abdomen, and try again")


LAUNCHER_CRASH_TEXT = "exit abnormally"
"""What Slicer's launcher (CTK AppLauncher: ``PythonSlicer`` starts ``python-real``) prints, as
``error: [.../python-real] exit abnormally - Report the problem.``, and then exits with code 1, when the Python it
started crashed or was killed: the signal never reaches the module as an exit code."""


def ended_text(code: Optional[int], what: str, last_line: str, stderr: str = "") -> str:
    """How a child that ended without its result is reported: ``what`` ("The segmentation process") and how it
    ended. A child killed by a signal (``code`` -N from subprocess, 128 + N from a shell-like launcher), one
    that Qt saw crash (-1) or one whose launcher says it ended abnormally (:data:`LAUNCHER_CRASH_TEXT`) gets the
    likely reason: a kill nobody asked for is usually the system's out-of-memory killer, which leaves no
    message; a crash whose ``stderr`` holds Python's fault handler's line (``Fatal Python error: Segmentation
    fault``, which the module turns on) is named as that crash instead (behind the launcher a segfault or an
    OpenMP abort was called 'most likely out of memory')."""
    import signal

    number = None
    if code is not None and code < -1:
        number = -code
    elif code is not None and 128 < code < 160:
        number = code - 128
    fault = fatal_python_error(stderr)
    if fault and (code == -1 or LAUNCHER_CRASH_TEXT in last_line or number is not None):
        if "abort" in fault.lower():  # a library that stops the process: some do so when memory or threads run out
            return (f"{what} crashed ({fault}; exit code {code}): a library stopped it, as some do when they cannot "
                    f"get memory or threads (close other programs, or crop the CT) or on an error of their own. The "
                    f"details hold where it happened; if it happens again, please report it with them.")
        return (f"{what} crashed ({fault}; exit code {code}): a fault in compiled code, not a lack of memory. The "
                f"details hold where it happened; please report it with them.")
    if code == -1 or LAUNCHER_CRASH_TEXT in last_line:
        return f"{what} crashed or was killed ({last_line or 'no message'}){_MEMORY_HINT}."
    if number == SIGKILL_NUMBER:
        return f"{what} was killed (signal 9, SIGKILL) before it finished{_MEMORY_HINT}."
    if number is not None:
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"{what} was stopped by {name} (exit code {code}; {last_line or 'no message'})."
    return f"{what} ended with exit code {code} ({last_line or 'no message'})."


def fatal_python_error(stderr: str) -> str:
    """What Python's fault handler said ended the child (``Fatal Python error: Segmentation fault`` gives
    'Segmentation fault'; on Windows ``Windows fatal exception: access violation`` gives 'access violation'), from its
    ``stderr``; '' when it said nothing (a kill by a signal leaves no such line)."""
    import re

    found = re.findall(r"(?:Fatal Python error|Windows fatal exception): ([^\r\n]+)", stderr or "")
    return found[-1].strip() if found else ""


def remove_stale_job_folders(temp_root: Optional[str] = None) -> None:
    """Remove the temporary folders (:data:`TEMP_FOLDER_PREFIX`) in ``temp_root`` (default: the system's) whose
    Slicer process has ended, at once: they are this computer's own, so a process id that is not running, or that
    a process started at another time holds now (ids are reused after a reboot), and started after the folder was
    last changed (a Slicer in another Linux time namespace reads its own start time shifted), means a Slicer that
    died with its job running (the folder of a running one is never touched). Never raises."""
    from LiverTumorSegLib.fileutil import remove_stale_temporaries

    remove_stale_temporaries(temp_root or tempfile.gettempdir(), TEMP_FOLDER_PREFIX, ".tmp", min_age_seconds=0)


def make_job_folder(temp_root: Optional[str] = None) -> str:
    """A new job folder (:data:`TEMP_FOLDER_PREFIX`) in ``temp_root`` (default: the system's temporary folder); its
    path. InputError naming ``temp_root`` and what to do when it cannot be made there: a temporary directory set in
    Slicer's settings that does not exist or cannot be written (a network share gone, a read-only or full disk)
    stopped every Segment, Update lesion table and Compare with "[Errno 2] No such file or directory:
    '.../LiverTumorSeg.1234-...tmp'" and a traceback."""
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.fileutil import temporary_prefix

    root = temp_root or tempfile.gettempdir()
    try:
        return tempfile.mkdtemp(prefix=temporary_prefix(TEMP_FOLDER_PREFIX), suffix=".tmp", dir=root)
    except OSError as exc:
        raise InputError(f"Cannot create a temporary folder in '{root}' ({exc.strerror or exc}), where the CT and the "
                         f"results are handed between Slicer and the process that does the work. Set Slicer's "
                         f"temporary directory (Edit > Application Settings > General) to a folder you can write to "
                         f"that has free space, or free space there, and try again.") from None



KEPT_STDOUT_LINES = 200
"""How many stdout lines of a measure or compare child :meth:`ChildJob._read_messages` keeps (for a failure's
details; those children write their results to files)."""

class ChildJob:
    """Base of the module's child-process runs (see the module docstring).

    ``runner``: a process runner. ``python``: the Python to run (``PythonSlicer`` in Slicer). ``library_root``:
    the folder holding ``LiverTumorSegLib`` (put first on the child's PYTHONPATH). ``temp_root``: where the
    temporary folder is made (default: the system's). ``env``: the child's base environment (Slicer's startup
    environment)."""

    def __init__(self, runner: Any, python: str, library_root: str, temp_root: Optional[str] = None,
                 env: Optional[Dict[str, str]] = None) -> None:
        self._runner = runner
        self._python = python
        self._library_root = library_root
        self._env = env
        self._temp_root = temp_root
        self.temp_dir: Optional[str] = None
        self.stdout_lines: Deque[str] = collections.deque(maxlen=KEPT_STDOUT_LINES)  # see _read_messages
        self._cancelled = False
        self._outcome: Any = None
        self._start_time = time.time()

    # -- what a subclass provides --
    def _prepare(self) -> List[str]:
        """Write the child's inputs into :attr:`temp_dir` (main thread); return its arguments after ``python``."""
        raise NotImplementedError

    def _read_messages(self) -> None:
        """Read what the child printed so far (called while it runs and once after it ended). Here: drain both
        pipes (the runner keeps stderr's last 64 KiB; stdout lines are not messages of these children, the last
        :data:`KEPT_STDOUT_LINES` are kept): undrained, a child writing more than a pipe holds blocked, and a
        headless run (SubprocessRunner; Slicer's QProcess buffers) never ended (the panel audit)."""
        if self._runner is not None:
            self.stdout_lines.extend(self._runner.read_stdout_lines())

    def _finish(self) -> Any:
        """The outcome of the ended child (its exit code, stderr and files are there to read)."""
        raise NotImplementedError

    outcome_class: Any = None
    """The subclass's outcome type, called as ``outcome_class(kind, ..., error=, details=, seconds=)``."""

    WHAT = "The child process"
    """How the subclass's messages name its child ("The segmentation process")."""

    def _removed_input_text(self) -> str:
        """'' while every node the child's result is for is in the scene; else what the outcome says of the one the
        user removed (its result can no longer be used: :meth:`poll` then stops the child at once)."""
        return ""

    # -- shared --
    def _cancelled_outcome(self) -> Any:
        return self.outcome_class(CANCELLED, seconds=self.elapsed_seconds())

    def failed_outcome(self, error: BaseException, details: str = "") -> Any:
        """The outcome reporting ``error`` (used by the caller when polling itself raised)."""
        return self.outcome_class(FAILED, error=error, details=details, seconds=self.elapsed_seconds())

    def _result_json(self, code: Optional[int], name: str, what: str) -> Optional[Dict[str, Any]]:
        """The JSON object in the file ``name`` the child (``what``: "The measuring process") wrote into
        :attr:`temp_dir`, when it exited 0 and wrote it; else None (then :meth:`_exit_failure` says why).
        :class:`ChildResultError` when the file cannot be read (:func:`read_result_json`)."""
        path = self._path(name)
        if code != 0 or not os.path.isfile(path):
            return None
        return read_result_json(path, what)

    def _exit_failure(self, code: Optional[int], stderr: str, error_class: type, what: str,
                      message: Optional[str] = None) -> Any:
        """The failed outcome of a child that ended without its result: its one-line message (``message``, else
        its last ``error:`` line) as ``error_class`` when it exited 2 (an error the user can fix), else what
        ended it (:func:`ended_text`), with the stderr tail as details."""
        message = last_error_line(stderr) if message is None else message
        error = error_class(message or "no message") if code == 2 else RuntimeError(ended_text(code, what, message,
                                                                                                stderr))
        return self.failed_outcome(error, stderr[-4000:])

    def _path(self, name: str) -> str:
        return os.path.join(self.temp_dir, name)

    @property
    def finished(self) -> bool:
        return self._outcome is not None

    @property
    def child_pid(self) -> Optional[int]:
        return getattr(self._runner, "pid", None)

    def elapsed_seconds(self) -> float:
        return time.time() - self._start_time

    def start(self) -> "ChildJob":
        """Prepare the inputs and start the child (main thread); on any failure the temporary folder is removed.
        Folders that earlier Slicer processes left behind are removed first (:func:`remove_stale_job_folders`)."""
        self._start_time = time.time()
        remove_stale_job_folders(self._temp_root)
        self.temp_dir = make_job_folder(self._temp_root)
        try:
            args = self._prepare()
            self._runner.start(self._python, args, childprocess.child_environment(self._library_root, self._env))
        except BaseException:
            self._remove_temporary_files()
            raise
        return self

    def cancel(self) -> None:
        """Kill the child (and its children) now; the next :meth:`poll` returns the cancelled outcome."""
        if self._outcome is not None:
            return
        self._cancelled = True
        self._runner.kill()
        self._remove_temporary_files()

    def _remove_temporary_files(self) -> None:
        """Remove the temporary folder. Tried again for up to ~1 s while it is still there: on Windows a killed
        child's files stay open until the system has ended it (TerminateProcess returns before that), and a
        file open there cannot be deleted."""
        for wait in (0.0,) + REMOVE_RETRY_SECONDS:
            if not (self.temp_dir and os.path.isdir(self.temp_dir)):
                break
            time.sleep(wait)
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        close = getattr(self._runner, "close", None)
        if close is not None and not self._runner.is_running():
            close()

    def poll(self) -> Any:
        """Main thread: read the child's output; once it has ended, its outcome (kept). ``None`` while running. A
        :meth:`cancel` while the output is read (from a progress callback) gives the cancelled outcome: the child it
        killed is not read as one that ended by itself."""
        if self._outcome is not None:
            return self._outcome
        if self._cancelled:
            self._outcome = self._cancelled_outcome()
            return self._outcome
        self._read_messages()
        if self._cancelled:  # by a progress callback (or in events it processed): the child was killed, not ended
            return self.poll()
        if self._runner.is_running():
            removed = self._removed_input_text()
            return self._stopped_for_removed_input(removed) if removed else None
        self._read_messages()
        if self._cancelled:
            return self.poll()
        try:
            self._outcome = self._finish()
        finally:
            self._remove_temporary_files()
        return self._outcome

    def _stopped_for_removed_input(self, removed: str) -> Any:
        """Kill the running child whose CT or segmentation the user removed (``removed``: what to say of it) and return
        the failed outcome: the child ran on for minutes, its result then refused, while the panel still read
        "Cancel" and the GPU or CPU stayed busy for nothing."""
        from LiverTumorSegLib.errors import InputError

        self._runner.kill()
        self._remove_temporary_files()
        self._outcome = self.failed_outcome(InputError(f"{self.WHAT} was stopped: {removed[:1].lower()}{removed[1:]}"))
        return self._outcome

    def wait(self, timeout_s: Optional[float] = None, poll_interval_s: float = 0.1) -> Any:
        """Poll until the outcome (blocks; for scripts and tests). ``timeout_s``: then cancel, outcome cancelled.
        When polling raises (a caller's progress callback, Ctrl-C in a script), the child is killed and its
        temporary folder removed before the exception goes on: they outlived the wait."""
        deadline = None if timeout_s is None else time.time() + timeout_s
        try:
            while True:
                outcome = self.poll()
                if outcome is not None:
                    return outcome
                if deadline is not None and time.time() > deadline:
                    self.cancel()
                    return self.poll()
                self._runner.wait(poll_interval_s)
        except BaseException:
            self.cancel()
            raise
