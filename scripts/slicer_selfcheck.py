"""Run the LiverTumorSeg module's self-test inside a real 3D Slicer and write what happened to a JSON file.

The module has been tested headless against slicer-core's MRML classes only; this script is the one command that
checks it in a real Slicer (its Qt, PythonQt, VTK and Python), without building the extension::

    Slicer --no-splash --ignore-slicerrc --additional-module-paths CHECKOUT/LiverTumorSeg \\
        --python-script CHECKOUT/scripts/slicer_selfcheck.py --out selfcheck.json [--install-dependencies]

(``--additional-module-paths`` is not needed where the extension is installed from the Extensions Manager.) In order,
and each step recorded in the JSON file whatever the next one does (the file is rewritten after every step and before
and after every test, ``"complete": false`` until the end, so a Slicer that crashes or hangs in a test leaves the
steps done and that test, ``"outcome": "running"``):

1. the Slicer and Python versions, the platform;
2. whether Slicer loaded the module (``slicer.modules.livertumorseg``), and from where, and whether it imports;
3. whether its panel opens (``slicer.util.getModuleWidget``: the parameter-node binding of every widget);
4. the Python packages the segmentation's child process needs (torch, monai, ...): installed and recent enough?
   With ``--install-dependencies`` missing ones are installed as the panel's Segment button would (torch through
   the PyTorch extension), without a question;
5. every test of the module's ``LiverTumorSegTest`` (segment the sample CT with the bundled model and check the
   outline against the reference, Cancel, *Update lesion table*, the compare section saved with the scene), each
   with its outcome (``passed``, ``failed``, ``error`` or ``skipped``), seconds, message and the log lines it wrote
   (the sample's liver Dice and mL among them).

No dialog is shown: a test that needs packages that are not ready is skipped with the reason, as under ctest, and
``slicer.util``'s message boxes (which outside testing mode wait for a click) log their text and answer no while the
check runs (their texts in ``dialogs_not_shown``).

Exit status (also ``exit_code`` in the file): 0 every step worked and every test passed; 1 a test failed or
raised, the module was not loaded or did not import, or its panel did not open (nothing of the segmentation was
checked then); 3 nothing failed but tests were skipped (packages missing: the segmentation was not checked); 2 not
run inside Slicer (a plain Python: it says so with the command above, and writes no file; ``--help`` works there).
Slicer exits when the script ends. On Windows run it with ``start "" /wait`` (README) and read the file: the prompt
may neither wait for ``Slicer.exe`` nor show what is printed. Research use; Python 3.9 syntax (Slicer 5.6 and 5.8
run Python 3.9).
This file stays ASCII: Slicer runs it as ``exec(open(path).read(), globals())`` (CTK's ``executeFile``), in the
locale's encoding, cp1252 on most Windows.
"""
import argparse
import contextlib
import json
import logging
import os
import platform
import sys
import tempfile
import time
import traceback
import unittest
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_SKIPPED = 3
MODULE_NAME = "LiverTumorSeg"
"""The module's name as Slicer knows it (``slicer.modules.livertumorseg``, ``getModuleWidget("LiverTumorSeg")``)."""
MESSAGE_BOXES = ("messageBox", "infoDisplay", "warningDisplay", "errorDisplay", "confirmOkCancelDisplay",
                 "confirmYesNoDisplay", "confirmRetryCloseDisplay")
"""``slicer.util``'s modal message boxes (Base/Python/slicer/util.py): outside testing mode, with a main window, each
runs ``ctkMessageBox.exec_()`` and waits for a click, which nobody gives in an unattended run."""


EXIT_NOT_IN_SLICER = 2
SLICER_COMMAND = ("Slicer --no-splash --ignore-slicerrc --additional-module-paths CHECKOUT/LiverTumorSeg "
                  "--python-script CHECKOUT/scripts/slicer_selfcheck.py --out selfcheck.json [--install-dependencies]")
"""How to run the check (the module text's command), printed where it is run outside Slicer."""


def running_in_slicer() -> bool:
    """Whether this Python is 3D Slicer's: its ``slicer`` package has the application, ``slicer.app``. A plain
    Python may hold a ``slicer`` package too (slicer-core's MRML classes, without ``app``)."""
    try:
        import slicer
    except ImportError:
        return False
    return getattr(slicer, "app", None) is not None


def not_in_slicer_text() -> str:
    return ("slicer_selfcheck.py checks the module inside 3D Slicer and runs only there (this Python has no "
            "slicer.app). Run it as:\n    " + SLICER_COMMAND)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Runs inside 3D Slicer only:\n    " + SLICER_COMMAND,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # the command unbroken
    parser.add_argument("--out", default="livertumorseg_selfcheck.json",
                        help="JSON file the result is written to (default: %(default)s in the current folder)")
    parser.add_argument("--install-dependencies", action="store_true",
                        help="install missing Python packages (torch, monai, ...) without asking, as the panel's "
                             "Segment button would; without it, tests that need them are skipped")
    parser.add_argument("--tests", nargs="*", default=None, metavar="NAME",
                        help="run only these tests of LiverTumorSegTest (default: all)")
    args, ignored = parser.parse_known_args(argv)
    args.ignored_arguments = ignored  # Slicer's own options, should any reach sys.argv, are not ours to refuse
    return args


class _LogLines(logging.Handler):
    """Keeps the text of every log record at INFO or above while a test runs."""

    def __init__(self):
        super().__init__(level=logging.INFO)
        self.lines = []  # type: List[str]

    def emit(self, record):
        try:
            self.lines.append(f"{record.levelname}: {record.getMessage()}")
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is not the test's outcome
            self.lines.append(f"{record.levelname}: (unformattable log record)")


class _RecordingResult(unittest.TestResult):
    """A unittest result that keeps, per test, its outcome, seconds, message and log lines."""

    def __init__(self, on_change: Optional[Callable[[List[Dict[str, Any]]], None]] = None):
        super().__init__()
        self.records = []  # type: List[Dict[str, Any]]
        self._on_change = on_change or (lambda _records: None)
        self._started = 0.0
        self._log = None  # type: Optional[_LogLines]
        self._root_level = logging.WARNING

    def startTest(self, test):
        super().startTest(test)
        self._started = time.monotonic()
        self._log = _LogLines()
        root = logging.getLogger()
        self._root_level = root.level
        root.addHandler(self._log)
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
        self.records.append({"test": getattr(test, "_testMethodName", str(test)), "outcome": "running",
                             "seconds": None, "message": "", "log": []})
        self._on_change(self.records)

    def stopTest(self, test):
        record = self.records[-1]
        record["seconds"] = round(time.monotonic() - self._started, 2)
        root = logging.getLogger()
        root.removeHandler(self._log)
        root.setLevel(self._root_level)
        record["log"] = list(self._log.lines)
        if record["outcome"] == "running":  # neither failed, raised nor skipped
            record["outcome"] = "passed"
        super().stopTest(test)
        self._on_change(self.records)

    def _set(self, outcome: str, message: str) -> None:
        record = self.records[-1]
        if record["outcome"] in ("failed", "error") and outcome != record["outcome"]:
            # a failing clean-up after a failed test: keep the test's own outcome, add the clean-up's message
            record["message"] += "\n" + message
            return
        record["outcome"], record["message"] = outcome, message

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._set("failed", self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        self._set("error", self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._set("skipped", str(reason))


def run_tests(test_class: type, names: Optional[Sequence[str]] = None,
              on_change: Optional[Callable[[List[Dict[str, Any]]], None]] = None) -> List[Dict[str, Any]]:
    """Run the ``test*`` methods of ``test_class`` (only ``names``, in that order, when given) with unittest, as
    ctest's ``slicer.testing.runUnitTest`` does (``setUp``, the test, its clean-ups); one dict per test: ``test``,
    ``outcome`` (passed / failed / error / skipped), ``seconds``, ``message`` (traceback or skip reason) and
    ``log`` (the INFO-or-above log lines written meanwhile). ``on_change(records)`` is called as each test starts
    (its outcome ``running``) and ends. Raises ValueError naming a test the class lacks."""
    loader = unittest.TestLoader()
    if names:
        unknown = [n for n in names if not callable(getattr(test_class, n, None))]
        if unknown:
            known = ", ".join(loader.getTestCaseNames(test_class))
            raise ValueError(f"{test_class.__name__} has no test {', '.join(unknown)}; its tests: {known}")
        suite = unittest.TestSuite(test_class(n) for n in names)
    else:
        suite = loader.loadTestsFromTestCase(test_class)
    result = _RecordingResult(on_change)
    suite.run(result)
    return result.records


def exit_code(result: Dict[str, Any]) -> int:
    """0 passed, 1 failed (a step or a test), 3 nothing failed but a test was skipped or none ran."""
    steps = result.get("steps", {})
    if any(step.get("ok") is False for step in steps.values()):
        return EXIT_FAILED
    tests = result.get("tests") or []
    if any(t["outcome"] in ("failed", "error") for t in tests):
        return EXIT_FAILED
    if not tests or any(t["outcome"] == "skipped" for t in tests):
        return EXIT_SKIPPED
    return EXIT_PASSED


def summary_lines(result: Dict[str, Any]) -> List[str]:
    """What the console shows at the end: each step, each test, and what the exit status means."""
    lines = [f"LiverTumorSeg self-check in Slicer {result.get('slicer', {}).get('version', '?')}"]
    for name, step in result.get("steps", {}).items():
        lines.append(f"  {name}: {'ok' if step.get('ok') else 'FAILED'}"
                     + (f" - {step['message'].splitlines()[-1]}" if not step.get("ok") and step.get("message")
                        else ""))
    for test in result.get("tests") or []:
        why = test["message"].strip().splitlines()[-1] if test["message"].strip() else ""
        lines.append(f"  {test['test']}: {test['outcome']} ({test['seconds']} s)" + (f" - {why}" if why else ""))
    if result.get("dialogs_not_shown"):
        lines.append(f"  message boxes not shown (answered no): {len(result['dialogs_not_shown'])}, "
                     "see dialogs_not_shown in the file")
    meaning = {EXIT_PASSED: "every test passed", EXIT_FAILED: "something FAILED (see the file for tracebacks)",
               EXIT_SKIPPED: "nothing failed, but tests were skipped: the segmentation was not checked"}
    lines.append(f"Exit status {result['exit_code']}: {meaning[result['exit_code']]}.")
    return lines


def write_result(result: Dict[str, Any], path: str) -> None:
    """Write ``result`` as JSON to ``path`` through a temporary file in the same folder (no half-written file)."""
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".selfcheck-", suffix=".json", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(result, stream, indent=2, default=str)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _not_shown_answer(name: str) -> Any:
    """What a message box that was not shown returns: no (``False`` for a question, ``0``, no button, for
    ``messageBox``), nothing for a message."""
    if name.startswith("confirm"):
        return False
    return 0 if name == "messageBox" else None


@contextlib.contextmanager
def message_boxes_not_shown(util: Any, texts: List[str]) -> Iterator[None]:
    """While the block runs, each of ``util``'s :data:`MESSAGE_BOXES` it has logs its text (WARNING, so a test's log
    lines show it), appends ``"name: text"`` to ``texts`` and answers no instead of waiting for a click; Slicer's
    own functions are put back afterwards."""
    originals = {name: getattr(util, name) for name in MESSAGE_BOXES if hasattr(util, name)}

    def not_shown(name: str) -> Callable[..., Any]:
        def replacement(text: Any = "", *_args: Any, **_kwargs: Any) -> Any:
            texts.append(f"{name}: {text}")
            logging.warning(f"Message box not shown (unattended self-check), answered no - {name}: {text}")
            return _not_shown_answer(name)
        return replacement

    for name in originals:
        setattr(util, name, not_shown(name))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(util, name, original)


def _step(steps: Dict[str, Dict[str, Any]], name: str, action: Callable[[], Dict[str, Any]]) -> bool:
    """Run one step, recording ``ok`` and what it returned, or the traceback; whether it worked."""
    try:
        steps[name] = dict(action(), ok=True)
    except Exception:  # noqa: BLE001 - recorded: the file says what failed and where
        steps[name] = {"ok": False, "message": traceback.format_exc()}
    return steps[name]["ok"]


def slicer_facts(slicer: Any) -> Dict[str, Any]:
    """Slicer's version and revision, Python's, and the platform."""
    app = slicer.app
    return {"version": str(getattr(app, "applicationVersion", "?")),
            "revision": str(getattr(app, "repositoryRevision", "?")),
            "python": sys.version.split()[0], "python_executable": sys.executable, "platform": platform.platform(),
            "testing_mode": bool(app.commandOptions().testingEnabled)}


def _module_loaded(slicer: Any) -> Dict[str, Any]:
    module = getattr(slicer.modules, MODULE_NAME.lower(), None)
    if module is None:
        raise RuntimeError(f"Slicer did not load the {MODULE_NAME} module: start Slicer with "
                           f"--additional-module-paths CHECKOUT/{MODULE_NAME} (the folder that holds "
                           f"{MODULE_NAME}.py), or install the extension.")
    return {"path": str(getattr(module, "path", ""))}


def _panel_opens(slicer: Any) -> Dict[str, Any]:
    widget = slicer.util.getModuleWidget(MODULE_NAME)
    if widget is None:
        raise RuntimeError(f"slicer.util.getModuleWidget('{MODULE_NAME}') gave no panel.")
    return {"widget": type(widget).__name__}


def _packages(dependencies: Any, install: Optional[Callable[[], object]]) -> Dict[str, Any]:
    """The packages' state (after installing them when ``install`` is given and something is wrong)."""
    installed_now = False
    if install is not None and dependencies.problems(dependencies.check_requirements()):
        install()
        installed_now = True
    statuses = dependencies.check_requirements()
    return {"installed_now": installed_now, "ready": not dependencies.problems(statuses),
            "packages": [{"name": s.requirement.distribution, "required": s.requirement.pip, "version": s.version,
                          "state": s.state} for s in statuses]}


def non_interactive_test_class(test_class: type, dependencies: Any) -> type:
    """``test_class`` whose dependency check never shows a dialog: the tests that need packages that are not
    ready are skipped with the reason, as in testing mode (the install, if wanted, happened in step 4)."""

    class NonInteractive(test_class):
        @staticmethod
        def dependencyProblem() -> str:
            return dependencies.self_test_skip_reason(dependencies.check_requirements(), True, lambda: None)

    NonInteractive.__name__ = test_class.__name__
    NonInteractive.__qualname__ = test_class.__qualname__
    return NonInteractive


def check(slicer: Any, module: Any, args: argparse.Namespace,
          save: Optional[Callable[[Dict[str, Any]], None]] = None) -> Dict[str, Any]:
    """Steps 1-5 of the module docstring in ``slicer`` (the ``slicer`` package) with ``module`` (a callable
    returning the imported ``LiverTumorSeg`` module, called once the module is known to be loaded); the result
    with ``exit_code`` and ``complete`` true. ``save(result)`` is called after every step and as every test starts
    and ends, the result then ``complete`` false and ``exit_code`` None. Never raises for a failed step: it is
    recorded."""
    save = save or (lambda _result: None)
    result = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "complete": False, "exit_code": None, "steps": {},
              "tests": [], "dialogs_not_shown": [],
              "ignored_arguments": list(getattr(args, "ignored_arguments", []))}  # type: Dict[str, Any]
    try:
        result["slicer"] = slicer_facts(slicer)
    except Exception:  # noqa: BLE001
        result["slicer"] = {"error": traceback.format_exc()}
    steps = result["steps"]

    def tests_changed(records: List[Dict[str, Any]]) -> None:
        result["tests"] = records
        save(result)

    loaded_ok = _step(steps, "module_loaded", lambda: _module_loaded(slicer))
    save(result)
    imported = []  # type: List[Any]
    if loaded_ok and _step(steps, "module_imports", lambda: _imported(module, imported)):
        save(result)
        with message_boxes_not_shown(slicer.util, result["dialogs_not_shown"]):
            _checks_of_the_loaded_module(slicer, imported[0], args, result, save, tests_changed)
    else:
        save(result)
    result["exit_code"] = exit_code(result)
    result["complete"] = True
    return result


def _imported(module: Callable[[], Any], into: List[Any]) -> Dict[str, Any]:
    """``module()`` (``import LiverTumorSeg``) appended to ``into``: a module Slicer loaded may still fail to import
    here (a library file missing beside it); the step records its traceback in the file."""
    into.append(module())
    return {}


def _checks_of_the_loaded_module(slicer: Any, loaded: Any, args: argparse.Namespace, result: Dict[str, Any],
                                 save: Callable[[Dict[str, Any]], None],
                                 tests_changed: Callable[[List[Dict[str, Any]]], None]) -> None:
    """Steps 3-5 (panel, packages, tests) into ``result``, saved after each."""
    steps = result["steps"]
    _step(steps, "panel_opens", lambda: _panel_opens(slicer))
    save(result)
    deps = loaded.dependencies
    install = None
    if args.install_dependencies:
        def install():
            return loaded.LiverTumorSegLogic.ensureDependencies(confirm=lambda _text: True)
    packages_ok = _step(steps, "packages", lambda: _packages(deps, install))
    save(result)
    if packages_ok:
        try:
            result["tests"] = run_tests(non_interactive_test_class(loaded.LiverTumorSegTest, deps), args.tests,
                                        tests_changed)
        except Exception:  # noqa: BLE001 - e.g. an unknown test name
            steps["tests"] = {"ok": False, "message": traceback.format_exc()}


def main(argv: Optional[Sequence[str]] = None, slicer: Any = None, module: Optional[Callable[[], Any]] = None) -> int:
    """Check, write the JSON file, print the summary; the exit status. Outside Slicer (no ``slicer`` given and
    this Python has no ``slicer.app``): says so with the command, writes nothing, exit 2. It wrote a JSON file that
    called the module not loaded."""
    args = parse_args(argv)
    if slicer is None:
        if not running_in_slicer():
            print(f"error: {not_in_slicer_text()}", file=sys.stderr)
            return EXIT_NOT_IN_SLICER
        import slicer  # noqa: F811 - Slicer's own package
    if module is None:
        def module():
            import LiverTumorSeg  # the scripted module, on sys.path once Slicer loaded it
            return LiverTumorSeg
    result = check(slicer, module, args, save=lambda partial: write_result(partial, args.out))
    write_result(result, args.out)
    for line in summary_lines(result):
        print(line)
    print(f"Written: {os.path.abspath(args.out)}")
    return result["exit_code"]


if __name__ == "__main__" and not running_in_slicer():  # a plain Python: --help, or say where to run it
    sys.exit(main(sys.argv[1:]))  # (slicer.util.exit below needs slicer.app: an ImportError after the help)
elif __name__ == "__main__":  # Slicer's --python-script runs the file in __main__'s namespace
    _status = EXIT_FAILED
    try:
        _status = main(sys.argv[1:])
    finally:
        import slicer as _slicer
        _slicer.util.exit(_status)
