"""scripts/slicer_selfcheck.py, the one command that runs the module's self-test in a real Slicer: what it records
per step and per test, its exit status, that it never shows a dialog, and its JSON file. Here with stand-ins for
Slicer (and the module's own test class under the Logic tests' stand-ins); in a real Slicer it has not been run."""
import json
import logging
import sys
import types
import unittest

import pytest

from script_helpers import load_script
from test_slicer_module_logic import module  # noqa: F401 - the fixture

selfcheck = load_script("scripts/slicer_selfcheck.py", "slicer_selfcheck")


class _Mixed(unittest.TestCase):
    """One test of each outcome (run by the script's runner, not collected by pytest)."""

    __test__ = False

    def test_a_passes(self):
        logging.getLogger("LiverTumorSeg").info("Sample CT: liver 1147 mL (reference 1123 mL), Dice 0.981")

    def test_b_fails(self):
        self.assertEqual(1, 2)

    def test_c_raises(self):
        raise RuntimeError("no segmentation node")

    def test_d_skips(self):
        self.skipTest("Python packages not ready (torch>=2.1 (not installed))")

    def test_e_cleanup_fails(self):
        self.addCleanup(lambda: 1 / 0)


def test_each_test_gets_its_outcome_seconds_message_and_log_lines():
    records = {r["test"]: r for r in selfcheck.run_tests(_Mixed)}
    assert [records[n]["outcome"] for n in sorted(records)] == ["passed", "failed", "error", "skipped", "error"]
    assert records["test_a_passes"]["log"] == ["INFO: Sample CT: liver 1147 mL (reference 1123 mL), Dice 0.981"]
    assert "AssertionError: 1 != 2" in records["test_b_fails"]["message"]
    assert "RuntimeError: no segmentation node" in records["test_c_raises"]["message"]
    assert records["test_d_skips"]["message"] == "Python packages not ready (torch>=2.1 (not installed))"
    assert "ZeroDivisionError" in records["test_e_cleanup_fails"]["message"]  # a clean-up's failure is the test's
    assert all(isinstance(r["seconds"], float) and r["seconds"] >= 0 for r in records.values())
    assert logging.getLogger().handlers == [h for h in logging.getLogger().handlers
                                            if not isinstance(h, selfcheck._LogLines)]  # the capture is removed


def test_only_the_named_tests_run_in_that_order_and_an_unknown_name_is_refused():
    assert [r["test"] for r in selfcheck.run_tests(_Mixed, ["test_d_skips", "test_a_passes"])] == [
        "test_d_skips", "test_a_passes"]
    with pytest.raises(ValueError, match="has no test test_nope; its tests: test_a_passes"):
        selfcheck.run_tests(_Mixed, ["test_nope"])


@pytest.mark.parametrize("steps, outcomes, code", [
    ({"module_loaded": {"ok": True}}, ["passed", "passed"], 0),
    ({"module_loaded": {"ok": True}}, ["passed", "skipped"], 3),  # the segmentation was not checked
    ({"module_loaded": {"ok": True}}, [], 3),
    ({"module_loaded": {"ok": True}}, ["skipped", "failed"], 1),
    ({"module_loaded": {"ok": True}}, ["error"], 1),
    ({"module_loaded": {"ok": True}, "panel_opens": {"ok": False}}, ["passed"], 1),
    ({"module_loaded": {"ok": False}}, [], 1),
])
def test_exit_status(steps, outcomes, code):
    result = {"steps": steps, "tests": [{"test": f"t{i}", "outcome": o} for i, o in enumerate(outcomes)]}
    assert selfcheck.exit_code(result) == code


def _slicer(loaded=True, widget=object(), testing=False):
    def get_widget(name):
        assert name == "LiverTumorSeg"
        if isinstance(widget, Exception):
            raise widget
        return widget
    modules = types.SimpleNamespace()
    if loaded:
        modules.livertumorseg = types.SimpleNamespace(path="/checkout/LiverTumorSeg/LiverTumorSeg.py")
    return types.SimpleNamespace(
        app=types.SimpleNamespace(applicationVersion="5.8.1", repositoryRevision="33241",
                                  commandOptions=lambda: types.SimpleNamespace(testingEnabled=testing)),
        modules=modules, util=types.SimpleNamespace(getModuleWidget=get_widget))


def _missing_torch(deps):
    return [deps.RequirementStatus(deps.TORCH, deps.MISSING)] + [
        deps.RequirementStatus(r, deps.OK, "9.9") for r in deps.REQUIREMENTS[1:]]


@pytest.mark.skipif(sys.platform.startswith("win"), reason="the module fixture is POSIX only")
def test_the_modules_own_tests_skip_without_packages_and_no_dialog_is_shown(module, monkeypatch):
    """The real LiverTumorSegTest (the Logic tests' stand-ins): with torch missing and no --install-dependencies,
    the three tests that start a child are skipped with the reason, nothing is offered or installed (run by a
    person, not in testing mode, the module's own check would show the install dialog), exit status 3."""
    deps = module.m.dependencies
    monkeypatch.setattr(deps, "check_requirements", lambda *a, **k: _missing_torch(deps))

    def no_dialog(*_args, **_kwargs):
        raise AssertionError("the self-check showed the install dialog")
    monkeypatch.setattr(module.m.LiverTumorSegLogic, "ensureDependencies", classmethod(no_dialog))
    ran = []

    class WithoutWidget(module.m.LiverTumorSegTest):
        def test_CompareSectionSavedWithScene(self):  # the real one needs the module's panel in a real Slicer
            ran.append("compare")

    loaded = types.SimpleNamespace(dependencies=deps, LiverTumorSegTest=WithoutWidget,
                                   LiverTumorSegLogic=module.m.LiverTumorSegLogic)
    result = selfcheck.check(_slicer(testing=False), lambda: loaded, selfcheck.parse_args([]))
    outcomes = {t["test"]: t["outcome"] for t in result["tests"]}
    assert outcomes == {"test_Cancel": "skipped", "test_CompareSectionSavedWithScene": "passed",
                        "test_SegmentSampleCT": "skipped", "test_UpdateLesionTable": "skipped"}
    assert all("torch>=2.1 (not installed)" in t["message"] for t in result["tests"] if t["outcome"] == "skipped")
    assert ran == ["compare"]
    packages = result["steps"]["packages"]
    assert packages["ok"] and not packages["ready"] and not packages["installed_now"]
    assert packages["packages"][0] == {"name": "torch", "required": "torch>=2.1", "version": None, "state": "missing"}
    assert result["steps"]["module_loaded"]["path"].endswith("LiverTumorSeg.py")
    assert result["slicer"]["version"] == "5.8.1" and result["exit_code"] == 3


def _fake_module(install_log):
    """A LiverTumorSeg stand-in: packages missing until its Logic's install runs; one passing test."""
    state = {"installed": False}

    class Deps:
        @staticmethod
        def check_requirements():
            ready = state["installed"]
            torch = types.SimpleNamespace(distribution="torch", pip="torch>=2.1")
            return [types.SimpleNamespace(requirement=torch, version="2.8.0" if ready else None,
                                          state="ok" if ready else "missing")]

        @staticmethod
        def problems(statuses):
            return [s for s in statuses if s.state != "ok"]

        @staticmethod
        def self_test_skip_reason(statuses, testing_mode, install):
            assert testing_mode  # never the dialog
            return "" if not Deps.problems(statuses) else "packages not ready"

    class Logic:
        @classmethod
        def ensureDependencies(cls, confirm):
            install_log.append(confirm("Install torch?"))
            state["installed"] = True

    class SelfTest(unittest.TestCase):
        def dependencyProblem(self):  # overridden by the self-check
            raise AssertionError("the module's own, interactive check ran")

        def test_SegmentSampleCT(self):
            reason = self.dependencyProblem()
            if reason:
                self.skipTest(reason)

    return types.SimpleNamespace(dependencies=Deps, LiverTumorSegTest=SelfTest, LiverTumorSegLogic=Logic)


def test_install_dependencies_installs_without_asking_then_runs_the_tests():
    installs = []
    fake = _fake_module(installs)
    result = selfcheck.check(_slicer(), lambda: fake, selfcheck.parse_args(["--install-dependencies"]))
    assert installs == [True]  # confirmed by the script, no dialog
    assert result["steps"]["packages"]["installed_now"] and result["steps"]["packages"]["ready"]
    assert [t["outcome"] for t in result["tests"]] == ["passed"] and result["exit_code"] == 0


def test_a_module_slicer_did_not_load_is_a_failure_that_says_how_to_load_it():
    result = selfcheck.check(_slicer(loaded=False), lambda: pytest.fail("imported"), selfcheck.parse_args([]))
    assert result["exit_code"] == 1 and result["tests"] == [] and set(result["steps"]) == {"module_loaded"}
    assert "--additional-module-paths CHECKOUT/LiverTumorSeg" in result["steps"]["module_loaded"]["message"]


def test_a_panel_that_does_not_open_fails_the_check_and_the_tests_still_run():
    fake = _fake_module([])
    result = selfcheck.check(_slicer(widget=AttributeError("no connector for qMRMLSpinBox")), lambda: fake,
                             selfcheck.parse_args([]))
    assert not result["steps"]["panel_opens"]["ok"]
    assert "AttributeError: no connector for qMRMLSpinBox" in result["steps"]["panel_opens"]["message"]
    assert [t["outcome"] for t in result["tests"]] == ["skipped"] and result["exit_code"] == 1


def test_main_writes_the_json_file_and_prints_what_the_status_means(tmp_path, capsys):
    out = tmp_path / "check.json"
    code = selfcheck.main(["--out", str(out), "--no-main-window"], slicer=_slicer(),
                          module=lambda: _fake_module([]))
    assert code == 3
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["exit_code"] == 3 and written["tests"][0]["outcome"] == "skipped"
    assert written["ignored_arguments"] == ["--no-main-window"]
    printed = capsys.readouterr().out
    assert "test_SegmentSampleCT: skipped" in printed and "the segmentation was not checked" in printed
    assert [p.name for p in tmp_path.iterdir()] == ["check.json"]  # no temporary file left


def test_the_file_is_written_before_each_test_so_a_crash_leaves_what_ran(tmp_path):
    """Slicer can crash inside a test (the launcher then exits 1, like a failed test): the file already holds the
    steps, the tests done and the one that was running, marked incomplete; a stale file of an earlier run is gone."""
    out = tmp_path / "check.json"
    out.write_text('{"exit_code": 0, "complete": true}', encoding="utf-8")  # an earlier run's file
    seen_while_running = []

    class TwoTests(unittest.TestCase):
        def test_a_first(self):
            pass

        def test_b_reads_the_file(self):
            seen_while_running.append(json.loads(out.read_text(encoding="utf-8")))

    fake = types.SimpleNamespace(dependencies=_fake_module([]).dependencies, LiverTumorSegTest=TwoTests,
                                 LiverTumorSegLogic=None)
    code = selfcheck.main(["--out", str(out)], slicer=_slicer(), module=lambda: fake)
    during = seen_while_running[0]
    assert during["complete"] is False and during["exit_code"] is None
    assert during["steps"]["module_loaded"]["ok"] and "packages" in during["steps"]
    assert [(t["test"], t["outcome"]) for t in during["tests"]] == [("test_a_first", "passed"),
                                                                    ("test_b_reads_the_file", "running")]
    final = json.loads(out.read_text(encoding="utf-8"))
    assert final["complete"] is True and final["exit_code"] == code == 0
    assert [t["outcome"] for t in final["tests"]] == ["passed", "passed"]


def test_no_message_box_can_wait_for_a_click(tmp_path):
    """Outside testing mode slicer.util's message boxes wait for a click (the main window is shown): during the
    self-check they log their text and answer no instead, and are Slicer's own again afterwards."""
    def shown(*_args, **_kwargs):
        raise AssertionError("a message box waited for a click")
    stand_in = _slicer()
    stand_in.util.confirmOkCancelDisplay = shown
    stand_in.util.errorDisplay = shown
    answers = []

    class AsksAndFails(unittest.TestCase):
        def test_asks(self):
            answers.append(stand_in.util.confirmOkCancelDisplay("Install torch?"))
            answers.append(stand_in.util.errorDisplay("Segmentation could not start", windowTitle="x"))

    fake = types.SimpleNamespace(dependencies=_fake_module([]).dependencies, LiverTumorSegTest=AsksAndFails,
                                 LiverTumorSegLogic=None)
    result = selfcheck.check(stand_in, lambda: fake, selfcheck.parse_args([]))
    assert answers == [False, None] and result["tests"][0]["outcome"] == "passed"
    assert result["dialogs_not_shown"] == ["confirmOkCancelDisplay: Install torch?",
                                           "errorDisplay: Segmentation could not start"]
    assert any("Install torch?" in line for line in result["tests"][0]["log"])
    assert stand_in.util.confirmOkCancelDisplay is shown and stand_in.util.errorDisplay is shown  # restored


def test_the_script_is_ascii_because_slicer_reads_it_in_the_locale_encoding():
    """CTK's executeFile runs ``exec(open(path).read(), globals())``: no encoding given, so cp1252 on most Windows;
    a UTF-8 character there could stop the script before it starts, with Slicer left open."""
    with open(selfcheck.__file__, "rb") as script:
        source = script.read()
    assert source.decode("ascii")  # raises UnicodeDecodeError naming the offending byte


def test_a_module_that_slicer_loaded_but_that_fails_to_import_is_recorded_in_the_file(tmp_path):
    """``import LiverTumorSeg`` ran outside any step: an ImportError there ended the script with no file written."""
    def broken():
        raise ImportError("No module named 'LiverTumorSegLib.inference.sampling'")
    out = tmp_path / "check.json"
    assert selfcheck.main(["--out", str(out)], slicer=_slicer(), module=broken) == 1
    written = json.loads(out.read_text(encoding="utf-8"))
    assert not written["steps"]["module_imports"]["ok"] and written["tests"] == [] and written["complete"]
    assert "No module named 'LiverTumorSegLib.inference.sampling'" in written["steps"]["module_imports"]["message"]


def test_outside_slicer_it_says_where_to_run_it_and_writes_nothing(tmp_path):
    """A plain Python: --help printed the help and then an ImportError (slicer.util.exit needs slicer.app), and a
    run wrote a JSON file that called the module not loaded."""
    import subprocess

    from script_helpers import ROOT

    script = str(ROOT / "scripts" / "slicer_selfcheck.py")
    shown = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, cwd=str(tmp_path))
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    assert "Runs inside 3D Slicer only" in shown.stdout and selfcheck.SLICER_COMMAND in shown.stdout
    out = tmp_path / "selfcheck.json"
    run = subprocess.run([sys.executable, script, "--out", str(out)], capture_output=True, text=True,
                         cwd=str(tmp_path))
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith("error: ") and "runs only there" in run.stderr
    assert selfcheck.SLICER_COMMAND in run.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []
