"""Benchmark and helper scripts: a bad argument is one argparse line (exit 2), not a traceback or a table of
'inf s'; an existing --json / picture is kept unless --overwrite; warm-ups stay out of the timings."""
import sys
import types

import pytest

from script_helpers import ROOT, load_script


def _argparse_error(capsys, function, argv, words):
    with pytest.raises(SystemExit) as exc:
        function(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err, err


@pytest.mark.parametrize("argv, words", [
    (["--shape", "-3", "64", "64"], "argument --shape: must be 1 or more voxels, got -3"),
    (["--shape", "0", "64", "64"], "argument --shape: must be 1 or more voxels, got 0"),
])
def test_bench_metrics_refuses_empty_or_negative_shapes(capsys, argv, words):
    script = load_script("benchmarks/bench_metrics.py", "bench_metrics_args")
    _argparse_error(capsys, script.main, argv, words)


@pytest.mark.parametrize("argv, words", [
    (["--batch", "0"], "argument --batch: must be above 0, got 0"),
    (["--shape", "4", "-1", "64"], "argument --shape: must be above 0, got -1"),
    (["--spacing", "0"], "argument --spacing: must be above 0, got 0"),
])
def test_bench_preprocessing_refuses_bad_numbers(capsys, argv, words):
    script = load_script("benchmarks/bench_preprocessing.py", "bench_preprocessing_args")
    _argparse_error(capsys, script.main, argv, words)


def test_bench_preprocessing_warms_each_config_before_its_clock(capsys, monkeypatch):
    """The first config's 'prepare' carried the first call's costs (0.36-0.46 s on 4 slices, then 0.00 s)."""
    pytest.importorskip("torch")
    script = load_script("benchmarks/bench_preprocessing.py", "bench_preprocessing_warm")
    from LiverTumorSegLib.preprocessing import SlicePreprocessor

    prepared = []
    original = SlicePreprocessor.prepare
    monkeypatch.setattr(SlicePreprocessor, "prepare",
                        lambda self, ct: (prepared.append(tuple(ct.array.shape)), original(self, ct))[1])
    script.main(["--shape", "3", "40", "40", "--batch", "2", "--configs", "default", "default"])
    assert prepared == [(2, 32, 32), (3, 40, 40)] * 2  # the tiny warm-up, then the timed volume, per config
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all("ms/slice" in line for line in lines[1:])


def test_bench_models_refuses_an_unknown_device(capsys):
    pytest.importorskip("torch")
    script = load_script("benchmarks/bench_models.py", "bench_models_args")
    _argparse_error(capsys, script.main, ["--devices", "tpu"], "invalid choice: 'tpu' (choose from 'cpu', 'cuda')")


@pytest.mark.parametrize("argv, words", [
    (["--repeats", "0"], "argument --repeats: must be 1 or more, got 0"),   # printed 'inf s', '0.0 slices/s'
    (["--slices", "-3"], "argument --slices: must be 1 or more, got -3"),
    (["--shape", "0", "8", "8"], "argument --shape: must be 1 or more, got 0"),
    (["--batch-slices", "4"], "--batch-slices needs --batch-cases"),
])
def test_bench_inference_refuses_bad_numbers(capsys, argv, words):
    pytest.importorskip("torch")
    script = load_script("benchmarks/bench_inference.py", "bench_inference_args")
    _argparse_error(capsys, script.main, argv, words)


def test_bench_inference_keeps_an_existing_json_and_warms_the_naive_loop(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    from LiverTumorSegLib.errors import InputError, LiverTumorSegError

    script = load_script("benchmarks/bench_inference.py", "bench_inference_json")
    out = tmp_path / "results.json"
    out.write_text("user's file")
    monkeypatch.setattr(script, "make_phantom", lambda *a, **k: pytest.fail("timed before the --json check"))
    with pytest.raises(LiverTumorSegError, match="already exists; pass"):
        script.main(["--shape", "2", "32", "32", "--json", str(out)])
    assert out.read_text() == "user's file"
    with pytest.raises(InputError, match="must end in .json"):
        script.main(["--json", str(tmp_path / "results.txt")])

    monkeypatch.undo()
    calls = []
    naive = script.naive_segment
    monkeypatch.setattr(script, "naive_segment", lambda *a: (calls.append(1), naive(*a))[1])
    script.main(["--shape", "2", "32", "32", "--channels", "4", "8", "--repeats", "1", "--threads", "1",
                 "--json", str(out), "--overwrite"])
    assert len(calls) == 2  # one untimed warm-up (the engine had one, the naive loop none), one timed run
    import json

    rows = json.loads(out.read_text())["results"]
    assert [r["variant"][:12] for r in rows] == ["naive loop (", "engine torch"]
    assert all(r["slices_per_second"] == pytest.approx(2 / r["seconds_per_volume"]) for r in rows)


def test_batch_timeline_keeps_an_existing_json_unless_overwrite(tmp_path, monkeypatch):
    from LiverTumorSegLib.errors import LiverTumorSegError

    script = load_script("benchmarks/batch_timeline.py", "batch_timeline_json")
    out = tmp_path / "timeline.json"
    out.write_text("user's file")
    monkeypatch.setattr(script, "batch_timeline", lambda *a, **k: pytest.fail("ran before the --json check"))
    with pytest.raises(LiverTumorSegError, match="already exists; pass"):
        script.main([str(tmp_path), "--json", str(out)])
    assert out.read_text() == "user's file"
    result = {"events": [], "wall_s": 2.0, "cpu_s": 1.0, "cases": 2}
    monkeypatch.setattr(script, "batch_timeline", lambda *a, **k: result)
    assert script.main([str(tmp_path), "--json", str(out), "--overwrite"]) == 0
    import json

    assert json.loads(out.read_text()) == result


def test_recist_accuracy_needs_two_draws(capsys):
    script = load_script("benchmarks/recist_accuracy.py", "recist_accuracy_args")
    _argparse_error(capsys, script.main, ["--draws", "1"], "argument --draws: must be 2 or more")
    script.main(["--draws", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[0] for line in lines] == ["square pixels", "non-square pixels"]
    assert all("(1 draws)" in line and line.endswith(")") and " mm (mean " in line for line in lines)


def test_recist_accuracy_takes_a_pixel_range(capsys):
    """--pixel-mm (added with the lesion measurement audit, which found the long axis reading about 1 mm high on
    3 mm pixels): a reversed or absurd range is a usage error; 3 mm pixels read high by more than 0.6-1.5 mm ones."""
    script = load_script("benchmarks/recist_accuracy.py", "recist_accuracy_pixels")
    _argparse_error(capsys, script.main, ["--pixel-mm", "3", "2"], "--pixel-mm 3 2: give MIN <= MAX")
    _argparse_error(capsys, script.main, ["--pixel-mm", "0", "1"], "each 0.1..10 mm")

    def mean_long(argv):
        script.main(argv)
        square = capsys.readouterr().out.splitlines()[0]
        return float(square.split("(mean ")[1].split(")")[0])

    fine, coarse = mean_long(["--draws", "40"]), mean_long(["--draws", "40", "--pixel-mm", "3", "3"])
    assert 0.3 < fine < 0.8 and coarse > fine + 0.3, (fine, coarse)


@pytest.mark.parametrize("option, words", [
    (["--panels", "0"], "argument --panels: must be at least 1, got 0"),
    (["--pixel-mm", "0"], "argument --pixel-mm: must be above 0, got 0"),
    (["--context", "-1"], "argument --context: must be at least 0, got -1"),
])
def test_lesion_gallery_refuses_bad_numbers(tmp_path, capsys, option, words):
    script = load_script("scripts/lesion_gallery.py", "lesion_gallery_args")
    _argparse_error(capsys, script.main, ["ct.nii.gz", "liver.nii.gz", "-o", str(tmp_path / "g.png")] + option,
                    words)


def _fake_pyside6(monkeypatch):
    """Stand-in PySide6 modules: enough for the script to import (its rendering is not run here)."""
    names = {"QtCore": ["QFile", "Qt"], "QtGui": ["QFont"], "QtUiTools": ["QUiLoader"],
             "QtWidgets": ["QApplication", "QComboBox", "QFrame", "QGroupBox", "QLabel", "QProgressBar",
                           "QVBoxLayout", "QWidget"]}
    monkeypatch.setitem(sys.modules, "PySide6", types.ModuleType("PySide6"))
    for module, classes in names.items():
        fake = types.ModuleType("PySide6." + module)
        for name in classes:
            setattr(fake, name, type(name, (), {}))
        monkeypatch.setitem(sys.modules, "PySide6." + module, fake)


def test_render_panel_layout_keeps_an_existing_picture_unless_overwrite(tmp_path, capsys, monkeypatch):
    _fake_pyside6(monkeypatch)
    script = load_script("scripts/render_panel_layout.py", "render_panel_layout_args")
    picture = tmp_path / "panel_layout.png"
    picture.write_bytes(b"committed picture")
    monkeypatch.setattr(script, "panel_texts", lambda *a: pytest.fail("ran before the output check"))
    _argparse_error(capsys, script.main, [str(picture)], "already exists; pass --overwrite")
    _argparse_error(capsys, script.main, [str(tmp_path / "panel.jpg")], "must end in .png")
    _argparse_error(capsys, script.main, [str(tmp_path / "new.png"), "--width", "0"], "--width must be 1 pixel")
    assert picture.read_bytes() == b"committed picture"
    rendered = []
    monkeypatch.setattr(script, "panel_texts", lambda *a: {})
    monkeypatch.setattr(script, "render", lambda ui, texts, out, width: rendered.append(out))
    script.main([str(picture), "--overwrite"])
    assert rendered == [str(picture)]


def test_render_panel_layout_without_pyside6_is_one_line(tmp_path):
    import subprocess

    done = subprocess.run([sys.executable, "-c", "import sys; sys.modules['PySide6'] = None; "
                           f"sys.argv = ['render_panel_layout.py', '--help']; "
                           f"exec(compile(open({str(ROOT / 'scripts' / 'render_panel_layout.py')!r}).read(), "
                           f"'render_panel_layout.py', 'exec'), {{'__name__': '__main__'}})"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "error: render_panel_layout.py needs PySide6" in done.stderr and "Traceback" not in done.stderr



def test_bounded_number_is_the_one_rule_of_the_scripts_numeric_options():
    """LiverTumorSegLib.argtypes.bounded_number replaced five near-copies in the scripts; its bounds and words."""
    import argparse

    from LiverTumorSegLib.argtypes import bounded_number

    assert bounded_number()("3") == 3 and bounded_number(float, 0, exclusive=True)("0.5") == 0.5
    for parse, text, words in ((bounded_number(), "x", "must be a whole number, got 'x'"),
                               (bounded_number(int, 1, unit="voxels"), "0", "must be 1 or more voxels, got 0"),
                               (bounded_number(float, 0, exclusive=True), "nan", "must be above 0, got nan"),
                               (bounded_number(float, 0, exclusive=True), "inf", "must be above 0, got inf"),
                               (bounded_number(int, 0, at_least=True), "-1", "must be at least 0, got -1")):
        with pytest.raises(argparse.ArgumentTypeError, match=words):
            parse(text)


def test_probability_is_the_scripts_one_lesion_threshold_rule():
    """evaluate_folds.py, finalize_default_model.py and robustness.py each checked --min-lesion-probability's range
    their own way (robustness.py only when the post-processing options were built); argtypes.probability now does."""
    import argparse

    from LiverTumorSegLib.argtypes import probability

    assert probability("0") == 0.0 and probability("0.75") == 0.75 and probability("1") == 1.0
    for text, words in (("1.5", "must be a probability, from 0 to 1, got 1.5"), ("-0.1", "from 0 to 1, got -0.1"),
                        ("nan", "got nan"), ("inf", "got inf"), ("0,75", "write decimals with a point, e.g. 0.75"),
                        ("", "got an empty value")):
        with pytest.raises(argparse.ArgumentTypeError, match=words):
            probability(text)


def test_bench_inference_imports_without_resource_and_reads_peak_memory_in_each_platforms_unit(monkeypatch):
    """bench_inference.py imported the POSIX-only module ``resource`` at the top (it failed to start on Windows),
    called os.sched_getaffinity (missing on macOS and Windows) for its default thread count, and divided ru_maxrss
    by 1024 everywhere: macOS counts it in bytes, so its peak memory was printed 1024 times too large."""
    pytest.importorskip("torch")
    import math
    import resource

    monkeypatch.setitem(sys.modules, "resource", None)  # as on Windows: `import resource` raises ImportError
    script = load_script("benchmarks/bench_inference.py", "bench_inference_windows")
    assert script.children_cpu_seconds() >= 0.0
    assert math.isnan(script.peak_rss_mib("win32")) or script.peak_rss_mib("win32") > 0  # no kernel32 here: NaN
    monkeypatch.setitem(sys.modules, "resource", resource)
    monkeypatch.setattr(resource, "getrusage", lambda who: types.SimpleNamespace(ru_maxrss=3 * 2 ** 30))
    assert script.peak_rss_mib("darwin") == 3 * 1024.0  # bytes there: 3 GiB
    assert script.peak_rss_mib("linux") == 3 * 2 ** 20  # KiB there: 3 TiB of the same number
    monkeypatch.delattr(script.os, "sched_getaffinity", raising=False)  # macOS: the thread default still works
    assert script.cpu_thread_count() >= 1


@pytest.mark.parametrize("argv, words", [
    (["--shape", "2", "32", "32", "--sample-dice", "--batch-cases", "3"],
     "--batch-cases, --sample-dice only apply to the real-CT benchmark (--ct FILE)"),
    (["--model", "default"], "--model only applies to the real-CT benchmark"),
    (["--slices", "4"], "--slices only applies to the real-CT benchmark"),
    (["--ct", "ct.nii.gz", "--monai", "--shape", "2", "32", "32"],
     "--shape, --monai only apply to the phantom benchmark (without --ct)"),
    (["--ct", "ct.nii.gz", "--device", "cuda"], "--ct times the CPU only"),
])
def test_bench_inference_refuses_options_of_the_other_mode(capsys, monkeypatch, argv, words):
    """They were taken and did nothing: the phantom ran alone, or --ct timed the CPU under --device cuda."""
    pytest.importorskip("torch")
    script = load_script("benchmarks/bench_inference.py", "bench_inference_modes")
    monkeypatch.setattr(script, "make_phantom", lambda *a, **k: pytest.fail("the phantom ran"))
    monkeypatch.setattr(script, "real_ct_benchmark", lambda *a, **k: pytest.fail("the CT ran"))
    _argparse_error(capsys, script.main, argv, words)


def test_bench_inference_runs_every_phantom_variant_at_one_thread_count(capsys, monkeypatch):
    """The engine took cpu_thread_count() threads (all logical cores) inside its calls while the naive loop and MONAI
    ran at torch's count: 'torch threads 1' above an engine row of '2 threads' under OMP_NUM_THREADS=1."""
    torch = pytest.importorskip("torch")
    import LiverTumorSegLib.inference.engine as engine_module

    script = load_script("benchmarks/bench_inference.py", "bench_inference_threads")
    monkeypatch.setattr(engine_module, "default_inference_threads", lambda: 2)  # an SMT machine's logical cores
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        script.main(["--shape", "2", "32", "32", "--channels", "4", "8", "--repeats", "1"])
    finally:
        torch.set_num_threads(before)
    lines = capsys.readouterr().out.splitlines()
    assert "1 CPU thread in every variant" in lines[0], lines[0]
    engine_row = next(line for line in lines if line.startswith("engine torch"))
    assert "(1 thread," in engine_row, engine_row


def test_bench_inference_gives_its_timed_commands_a_bytecode_cache(tmp_path, monkeypatch):
    """On a machine that sets PYTHONDONTWRITEBYTECODE, every timed ``segment`` of bench_inference.py compiled the
    whole package again (0.64 s of CPU on the 2-core test machine), which the batch budget's parts, timed inside
    one process, did not pay: the timed commands now share a bytecode cache that a warm-up fills."""
    import os
    import subprocess
    import sys

    pytest.importorskip("torch")
    script = load_script("benchmarks/bench_inference.py", "bench_inference_bytecode")
    (tmp_path / "probe_module.py").write_text("VALUE = 1\n")
    caller = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(tmp_path), KEEP="this")
    env = script.with_bytecode_cache(caller, tmp_path / "cache")
    assert "PYTHONDONTWRITEBYTECODE" not in env and env["KEEP"] == "this"
    assert caller["PYTHONDONTWRITEBYTECODE"] == "1"  # the caller's dict is left as it was
    subprocess.run([sys.executable, "-c", "import probe_module"], env=env, check=True)
    assert list((tmp_path / "cache").rglob("probe_module*.pyc")), "no bytecode written to the cache"
    assert not (tmp_path / "__pycache__").exists()  # beside the source: nothing


@pytest.mark.parametrize("script", ["bench_inference", "bench_preprocessing", "bench_metrics", "bench_models"])
def test_a_benchmark_times_its_own_checkouts_library(tmp_path, script):
    """bench_inference gave its timed `segment` children this checkout on PYTHONPATH but timed the network with
    whatever LiverTumorSegLib was installed (another clone's, with a shared editable venv), so one checkout's run was
    divided by another's network time (helper-402's audit). Another LiverTumorSegLib first on PYTHONPATH: the
    script's run still imports this checkout's."""
    import os
    import subprocess

    other = tmp_path / "other" / "LiverTumorSegLib"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("")
    path = ROOT / "benchmarks" / f"{script}.py"
    code = ("import runpy, sys\n"
            f"sys.argv = [{str(path)!r}, '--help']\n"
            "try:\n"
            f"    runpy.run_path({str(path)!r}, run_name='__main__')\n"
            "except SystemExit:\n"
            "    pass\n"
            "import LiverTumorSegLib\n"
            "print('LIBRARY', LiverTumorSegLib.__file__)\n")
    env = dict(os.environ, PYTHONPATH=str(other.parent))
    run = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    library = run.stdout.strip().splitlines()[-1]
    assert library == f"LIBRARY {ROOT / 'LiverTumorSegLib' / '__init__.py'}", run.stdout[-2000:]
