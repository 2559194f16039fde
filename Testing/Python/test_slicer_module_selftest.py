"""The module's own self-test class (``LiverTumorSegTest`` in LiverTumorSeg/LiverTumorSeg.py), run headless with the
stand-ins of Testing/Python/test_slicer_module_logic.py (its ``ScriptedLoadableModuleTest`` is a
``unittest.TestCase``, as Slicer's is): how it is run under ctest (``slicer.testing.runUnitTest``: unittest's loader
and runner, where a skip counts as success) and by *Reload and Test* (``runTest``), when the Python packages the
child process needs are missing. The tests' bodies need a real Slicer; the ones that would start a child are only
checked to skip before doing anything."""
import ast
import io
import sys
import time
import unittest
from pathlib import Path

import pytest

from test_slicer_module_logic import _ct_node, _fake_runner_factory, module  # noqa: F401 - module: the fixture

from LiverTumorSegLib.processes import process_alive

MODULE_FILE = Path(__file__).resolve().parents[2] / "LiverTumorSeg" / "LiverTumorSeg.py"
CHILD_TESTS = ("test_SegmentSampleCT", "test_Cancel", "test_UpdateLesionTable")  # they start a child process
NO_CHILD_TESTS = ("test_CompareSectionSavedWithScene",)  # MRML calls and scene I/O only

pytestmark = pytest.mark.skipif(sys.platform.startswith("win"), reason="the module fixture is POSIX only")


def _test_class_without_packages(module, ran):
    """The module's test class with the packages reported missing (as under ctest on a machine without torch) and
    the tests that need Slicer's GUI replaced by recorders (``ran`` gets their names; each registers a clean-up)."""
    asked = []

    class WithoutPackages(module.m.LiverTumorSegTest):
        @staticmethod
        def dependencyProblem():
            asked.append(1)
            return "LiverTumorSeg self-test skipped: Python packages not ready (torch>=2.1 (not installed))."

        def test_CompareSectionSavedWithScene(self):  # the real one needs the module's widget
            ran.append("test_CompareSectionSavedWithScene")
            self.addCleanup(ran.append, "cleanup")

    return WithoutPackages, asked


def test_under_ctest_only_the_tests_that_start_a_child_are_skipped_without_the_packages(module):
    """slicer.testing.runUnitTest loads the module's TestCase with unittest and counts a skip as success: setUp
    skipped every test, so the ctest passed without checking anything on a machine without torch, the compare test
    (no torch, no child) included."""
    ran = []
    cls, _asked = _test_class_without_packages(module, ran)
    result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(
        unittest.TestLoader().loadTestsFromTestCase(cls))
    assert result.testsRun == 4 and not result.errors and not result.failures
    assert sorted(test._testMethodName for test, _ in result.skipped) == sorted(CHILD_TESTS)
    assert all("torch>=2.1 (not installed)" in reason for _, reason in result.skipped)
    assert ran == ["test_CompareSectionSavedWithScene", "cleanup"]


def test_run_test_runs_every_test_and_reports_the_skipped_ones(module):
    """Reload and Test calls runTest: one skipped test returned from it, silently dropping the tests after it."""
    ran = []
    cls, asked = _test_class_without_packages(module, ran)
    shown = module.m.ScriptedLoadableModuleTest.shown
    shown.clear()
    cls().runTest()
    assert ran == ["test_CompareSectionSavedWithScene", "cleanup"]  # ran, after the skipped ones, cleaned up
    assert len(asked) == 1  # a person who declined the install is asked once per run, not once per test
    for name in CHILD_TESTS:
        assert any(message.startswith(f"{name} skipped: ") for message in shown), name
    assert shown[-1] == "Self-test done; skipped: test_SegmentSampleCT, test_Cancel, test_UpdateLesionTable"


def test_run_test_fails_when_a_clean_up_fails_and_keeps_a_tests_own_error(module):
    """Reload and Test calls runTest outside a unittest runner, where doCleanups drops a clean-up's error: a test
    whose clean-up failed (the child process not killed) passed. The error is raised now, after the other clean-ups
    ran; a test that failed itself keeps its own error (the clean-up's is logged)."""
    ran = []
    cls, _asked = _test_class_without_packages(module, ran)

    class CleanupFails(cls):
        def test_CompareSectionSavedWithScene(self):
            ran.append("test")
            self.addCleanup(ran.append, "first registered, run last")
            self.addCleanup(lambda: 1 / 0)

    with pytest.raises(ZeroDivisionError):
        CleanupFails().runTest()
    assert ran == ["test", "first registered, run last"]

    class TestAndCleanupFail(CleanupFails):
        def test_CompareSectionSavedWithScene(self):
            super().test_CompareSectionSavedWithScene()
            raise AssertionError("the test's own failure")

    ran.clear()
    with pytest.raises(AssertionError, match="the test's own failure"):
        TestAndCleanupFail().runTest()
    assert ran == ["test", "first registered, run last"]
    # under a runner (ctest) the clean-up's error is the test's error, as unittest records it
    result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(
        CleanupFails("test_CompareSectionSavedWithScene"))
    assert len(result.errors) == 1 and "ZeroDivisionError" in result.errors[0][1]


def test_set_up_clears_the_scene_and_skips_nothing(module):
    module.scene.AddNewNodeByClass("vtkMRMLTableNode")
    ran = []
    cls, asked = _test_class_without_packages(module, ran)
    try:
        cls("test_CompareSectionSavedWithScene").setUp()
    except unittest.SkipTest as skip:  # pytest would report it as a skip, not a failure
        pytest.fail(f"setUp skipped the test: {skip}")
    assert asked == [] and module.scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 0


@pytest.mark.parametrize("name", CHILD_TESTS)
def test_a_test_that_starts_a_child_skips_before_it_does_anything(module, name):
    ran = []
    cls, asked = _test_class_without_packages(module, ran)
    case = cls(name)
    with pytest.raises(unittest.SkipTest, match="torch>=2.1"):
        getattr(case, name)()  # the real test body: it would load the sample CT first (no GUI here)
    assert len(asked) == 1


def test_the_dependency_check_sits_in_the_tests_that_start_a_child_only():
    """Static: which real tests check the packages (their bodies need Slicer's GUI)."""
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    test_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "LiverTumorSegTest")
    methods = {f.name: f for f in test_class.body if isinstance(f, ast.FunctionDef)}
    assert set(CHILD_TESTS + NO_CHILD_TESTS) == {name for name in methods if name.startswith("test_")}

    def calls(function):
        return {ast.unparse(n.func) for n in ast.walk(function) if isinstance(n, ast.Call)}

    for name in CHILD_TESTS:
        body = [s for s in methods[name].body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
        assert ast.unparse(body[0]) == "self.requireDependencies()", name  # first, before loading anything
    for name in NO_CHILD_TESTS + ("setUp",):
        assert not calls(methods[name]) & {"self.requireDependencies", "self.skipTest", "self.dependencyProblem"}


def test_a_wait_of_the_self_test_past_its_deadline_fails_saying_so_and_kills_the_child(module, tmp_path):
    """test_SegmentSampleCT and test_UpdateLesionTable waited with ChildJob.wait: no deadline and no Qt events, so
    a hung child hung the test, and Slicer, for good. Now they wait for the run's outcome with a deadline while Qt
    events are processed (here: the stand-in timer fires)."""
    pytest.importorskip("SimpleITK")
    case = module.m.LiverTumorSegTest("test_SegmentSampleCT")
    logic = case._startedLogic()  # as the tests make theirs: killed by the test's clean-up
    logic.runnerFactory = _fake_runner_factory(tmp_path, "hang")
    logic.python = sys.executable
    outcomes = []
    running = logic.process(_ct_node(module.scene), None, "m.safetensors", "cpu", waitForCompletion=False,
                            onFinished=outcomes.append)
    pid = running.child_pid
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"Segmenting the sample CT did not finish within 2 s; its child "
                                             r"process was killed\."):
        case._waitForOutcome(outcomes, 2.0, "Segmenting the sample CT")
    assert time.monotonic() - started < 60  # the 2-s wait gave up: only a hang reaches 60 s on a slow, busy machine
    case.doCleanups()  # what unittest (and runTest) do after the failed test, before the failure is reported
    deadline = time.monotonic() + 60  # a generous bound: the child is killed, a survivor alone reaches it
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not process_alive(pid) and list(module.temp.iterdir()) == []


def test_a_wait_of_the_self_test_returns_the_outcome_its_timer_delivers(module, tmp_path):
    pytest.importorskip("SimpleITK")
    logic = module.m.LiverTumorSegLogic(runnerFactory=_fake_runner_factory(tmp_path, "ok"), python=sys.executable)
    outcomes, stages = [], []
    logic.process(_ct_node(module.scene), None, "m.safetensors", "cpu", progress=lambda f, s: stages.append(s),
                  waitForCompletion=False, onFinished=outcomes.append, showIn3D=False)
    outcome = module.m.LiverTumorSegTest("test_SegmentSampleCT")._waitForOutcome(outcomes, 60, "Segmenting")
    assert outcome.kind == "done" and stages[-2:] == ["done", module.m.job.LOADING_RESULT_STAGE]
    assert outcome is outcomes[0]


def test_the_logic_of_a_test_is_cleaned_up_when_the_test_ends(module, tmp_path):
    """test_Cancel's child kept running when one of its assertions failed: each test's Logic is cleaned up."""
    pytest.importorskip("SimpleITK")
    case = module.m.LiverTumorSegTest("test_Cancel")
    logic = case._startedLogic()
    logic.runnerFactory = _fake_runner_factory(tmp_path, "hang")
    logic.python = sys.executable
    running = logic.process(_ct_node(module.scene), None, "m.safetensors", "cpu", waitForCompletion=False)
    pid = running.child_pid
    assert process_alive(pid)
    case.doCleanups()  # what unittest (and runTest) do after each test, failed or not
    deadline = time.monotonic() + 60  # a generous bound: the child is killed, a survivor alone reaches it
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not process_alive(pid) and running.poll().kind == "cancelled"


def test_the_self_tests_wait_with_deadlines_clean_up_and_get_the_widget_as_slicer_says():
    """Static (the bodies need a real Slicer): no blocking wait without deadline, a cleaned-up Logic in each test
    that starts a child, and slicer.util.getModuleWidget for the panel."""
    text = MODULE_FILE.read_text(encoding="utf-8")
    tree = ast.parse(text)
    test_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "LiverTumorSegTest")
    source = {f.name: ast.get_source_segment(text, f) for f in test_class.body if isinstance(f, ast.FunctionDef)}
    for name in CHILD_TESTS:
        body = source[name]
        assert "self._startedLogic()" in body and "LiverTumorSegLogic()" not in body, name
        assert "waitForCompletion=False" in body and "waitForCompletion=True" not in body, name
    assert "self._waitForOutcome(outcomes, self.SEGMENT_TIMEOUT_S," in source["test_SegmentSampleCT"]
    assert "self._waitForOutcome(outcomes, self.MEASURE_TIMEOUT_S," in source["test_UpdateLesionTable"]
    # every wait processes Qt events through one helper, on the monotonic clock
    assert source["test_Cancel"].count("self._processEventsUntil(") == 2
    assert "time.time()" not in ast.get_source_segment(text, test_class)
    assert "self.addCleanup(logic.cleanup)" in source["_startedLogic"]
    assert "slicer.mrmlScene.Clear()" in source["setUp"]
    assert "widgetRepresentation()" not in text
    assert 'slicer.util.getModuleWidget("LiverTumorSeg")' in source["test_CompareSectionSavedWithScene"]
    constants = {n.targets[0].id: eval(compile(ast.Expression(n.value), "<constant>", "eval"), {})
                 for n in test_class.body if isinstance(n, ast.Assign)}
    assert constants["SEGMENT_TIMEOUT_S"] == 15 * 60 and constants["MEASURE_TIMEOUT_S"] > 0


@pytest.mark.parametrize("kill_reaches_the_worker", [True, False])
def test_the_cancel_self_test_fails_when_the_worker_below_the_launcher_survives(module, tmp_path,
                                                                               kill_reaches_the_worker):
    """test_Cancel checked only the launcher's pid (PythonSlicer, which starts python-real as its child): with a kill
    that ended the launcher alone, the worker ran on and the test passed (helper-406's audit). Run headless with a
    shell as the launcher of the fake child: it passes where the kill reaches the worker and fails where it does not."""
    import os
    import shlex
    import signal

    pytest.importorskip("SimpleITK")
    from test_slicer_module_job import FAKE_CHILD, FakeChildRunner

    script = tmp_path / "fake_child.py"
    script.write_text(FAKE_CHILD)
    workers = []

    class LauncherRunner(FakeChildRunner):
        def start(self, program, args, env=None):
            self.args = list(args)
            command = " ".join(shlex.quote(a) for a in [sys.executable, str(script)] + list(args[3:]))
            # '; exit $?' keeps the shell as the python's parent, as the launcher is python-real's
            super(FakeChildRunner, self).start("/bin/sh", ["-c", command + "; exit $?"],
                                               dict(env or os.environ, LTS_FAKE="hang"))

        def kill(self):
            if kill_reaches_the_worker:
                super().kill()
                return
            workers.extend(module.m.childprocess.descendant_pids(self._process.pid))
            os.kill(self._process.pid, signal.SIGKILL)  # the launcher alone, as QProcess.kill() does
            self._process.wait()

    class Case(module.m.LiverTumorSegTest):
        def requireDependencies(self):
            pass

        def _loadSample(self):
            return _ct_node(module.scene)

        def _startedLogic(self):
            logic = super()._startedLogic()
            logic.runnerFactory = lambda: LauncherRunner(script, "hang")
            logic.python = sys.executable
            return logic

        def delayDisplay(self, *args, **kwargs):
            pass

    try:
        result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(Case("test_Cancel"))
        assert result.testsRun == 1 and not result.errors, result.errors
        if kill_reaches_the_worker:
            assert not result.failures
        else:
            # the surviving worker named where none was expected
            assert workers and len(result.failures) == 1
            assert f"Lists differ: [{workers[0]}] != []" in result.failures[0][1], result.failures[0][1]
    finally:
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
