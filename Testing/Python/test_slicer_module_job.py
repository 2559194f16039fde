"""The Slicer module's child-process run (LiverTumorSegModuleLib.childprocess and .job), headless.

* the stdout protocol, line splitting, the command line and the process-tree kill (no Slicer needed);
* ``SegmentationJob`` - the Logic's exact code - with slicer-core: against a small fake child that follows the
  ``--progress json`` contract (fast: success, user error, crash, cancel, temporary files). The real child with
  the bundled model runs through the module's Logic in test_slicer_module_logic.py.
"""
import dataclasses
import json
import os
import re
import signal
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "LiverTumorSeg"))

from LiverTumorSegModuleLib import childprocess, job, panel_text  # noqa: E402
from LiverTumorSegLib.errors import InputError  # noqa: E402
from LiverTumorSegLib.processes import process_alive  # noqa: E402
from mrml_helpers import add_volume_node, read_volume_node

posix_only = pytest.mark.skipif(sys.platform.startswith("win"), reason="SubprocessRunner is POSIX only")

# ---- protocol ---------------------------------------------------------------------------------------------


def test_parse_line_reads_the_three_messages_and_tolerates_anything_else():
    p = childprocess.parse_line('{"progress": 0.42, "stage": "network"}\n')
    assert (p.kind, p.fraction, p.stage) == (childprocess.PROGRESS, 0.42, "network")
    assert childprocess.parse_line('{"progress": 1.7}').fraction == 1.0
    d = childprocess.parse_line(json.dumps({"done": True, "outputs": {"labels": "/t/l.nii.gz", "report": None},
                                            "seconds": 3.5, "device": "cpu"}))
    assert (d.kind, d.outputs, d.seconds, d.device) == (childprocess.DONE, {"labels": "/t/l.nii.gz", "report": None},
                                                         3.5, "cpu")
    e = childprocess.parse_line('{"error": "Input \'x\' does not exist; check the path."}')
    assert (e.kind, e.error) == (childprocess.ERROR, "Input 'x' does not exist; check the path.")
    # a number the child cannot have meant (another version's, a stray print) reads as 0, not as a crash of the poll
    assert childprocess.parse_line('{"progress": "half"}').fraction == 0.0
    assert childprocess.parse_line('{"done": true, "seconds": null, "outputs": {}}').seconds == 0.0
    for other in ("100%|####|", "[1, 2]", '{"done": false}', ""):
        assert childprocess.parse_line(other).kind == childprocess.OTHER


def test_line_buffer_joins_chunks_into_lines():
    buffer = childprocess.LineBuffer()
    assert buffer.feed(b'{"progress": 0.1') == []
    assert buffer.feed(b', "stage": "a"}\r\n{"progress"') == ['{"progress": 0.1, "stage": "a"}']
    assert buffer.feed(b": 0.2}\n\n") == ['{"progress": 0.2}']
    assert buffer.feed(b'{"done": true}') == [] and buffer.flush() == ['{"done": true}'] and buffer.flush() == []


def test_environment_of_the_child():
    env = childprocess.child_environment("/lib", {"PYTHONPATH": os.pathsep.join(["/x", "/lib"]), "HOME": "/h"})
    assert env["PYTHONPATH"] == os.pathsep.join(["/lib", "/x"]) and env["HOME"] == "/h"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONIOENCODING"] == "utf-8" and env["PYTHONUTF8"] == "1"


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX segmentation fault")
def test_a_child_that_crashes_in_native_code_leaves_its_python_stack_on_stderr():
    """A segmentation fault in the child gave the panel empty details; the fault handler writes where it was."""
    import subprocess
    code = "import ctypes\ndef crash_here():\n    ctypes.string_at(0)\ncrash_here()\n"
    done = subprocess.run([sys.executable, "-c", code], env=childprocess.child_environment(str(ROOT)),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "Segmentation fault" in done.stderr and "crash_here" in done.stderr


def test_child_prints_a_non_ascii_path_in_utf8_whatever_the_consoles_code_page(tmp_path):
    """On Windows a redirected stream is in the ANSI code page (cp1252 stands in for it here): a path with
    '肝' or 'Jürgen' in it made the child fail after writing (UnicodeEncodeError) or came back garbled. The
    command: ``measure`` of a 3-slice label map, which prints the path it wrote as ``segment`` does, in 1 s
    (``preprocess`` of the sample CT imported torch: 4-5 s a run)."""
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    folder = tmp_path / "肝 Jürgen"
    folder.mkdir()
    base = dict(os.environ, PYTHONIOENCODING="cp1252")
    base.pop("PYTHONUTF8", None)
    labels = repo / "Testing" / "Data" / "ct3slice_liver_seg.nii.gz"
    argv = [sys.executable, "-m", "LiverTumorSegLib", "measure", str(labels), "-o", str(folder / "p.json")]
    proc = subprocess.run(argv, env=childprocess.child_environment(str(repo), base), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"report: {folder / 'p.json'}" in proc.stdout.decode("utf-8")
    # run as a console program with that code page: the line is escaped instead of ending the run
    argv[-1] = str(folder / "q.json")
    proc = subprocess.run(argv, env=dict(base, PYTHONPATH=str(repo)), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert b"\\u809d J" in proc.stdout


def test_panel_options_are_the_librarys_options_and_parse_back_identically():
    """The panel's choices go to the child as the library's SegmentationOptions.to_cli_args; the real segment
    parser reads them back into equal options (window override, post-processing, probabilities included)."""
    from LiverTumorSegLib.cli import build_parser
    from LiverTumorSegLib.inference.options import SegmentationOptions, options_from_args
    assert job.SegmentationOptions is SegmentationOptions
    options = job.SegmentationOptions(model="m.safetensors", device="cuda", probabilities=True, window_level=50.0,
                                      window_width=350.0,
                                      postprocessing={"largest_liver_component": False, "fill_liver_holes": True,
                                                      "tumor_inside_liver": False, "min_lesion_ml": 0.5})
    args = job.child_arguments("ct.nii.gz", "l.nii.gz", "r.json", "/t/p.nii.gz", options)
    assert args[:4] == ["-m", "LiverTumorSegLib", "segment", "ct.nii.gz"] and args[-2:] == ["--progress", "json"]
    assert args[args.index("--probabilities") + 1] == "/t/p.nii.gz"
    parsed = build_parser().parse_args(args[2:])
    assert parsed.progress == "json" and parsed.input == "ct.nii.gz" and parsed.report == "r.json"
    assert parsed.output == "l.nii.gz" and options_from_args(parsed) == options
    no_probability = job.child_arguments("ct", "l", "r", "/t/p.nii.gz", dataclasses.replace(options, probabilities=False))
    assert "--probabilities" not in no_probability
    from LiverTumorSegLib.errors import InputError
    with pytest.raises(InputError, match="window"):
        job.SegmentationOptions(model="m", window_level=40.0)
    with pytest.raises(InputError, match="device"):
        job.SegmentationOptions(model="m", device="tpu")


# ---- the process runner -----------------------------------------------------------------------------------

@posix_only
def test_subprocess_runner_reads_lines_without_blocking_and_reports_the_exit_code():
    runner = childprocess.SubprocessRunner()
    code = "import sys, time; print('a', flush=True); time.sleep(0.5); print('b'); sys.stderr.write('oops'); sys.exit(3)"
    runner.start(sys.executable, ["-c", code])
    lines, started = [], time.monotonic()
    while runner.is_running() or not lines or lines[-1] != "b":
        lines += runner.read_stdout_lines()
        assert time.monotonic() - started < 60  # a hang guard: a child python starts slowly on a busy CI machine
        time.sleep(0.01)
    assert lines == ["a", "b"] and runner.exit_code() == 3 and runner.read_stderr() == "oops"


@posix_only
def test_subprocess_runner_drains_stderr_so_a_chatty_child_never_blocks():
    runner = childprocess.SubprocessRunner()
    runner.start(sys.executable, ["-c", "import sys; sys.stderr.write('x' * 1000000); print('end')"])
    lines, started = [], time.monotonic()
    while runner.is_running() or not lines:
        lines += runner.read_stdout_lines()
        assert time.monotonic() - started < 60, "the child blocked on a full stderr pipe"  # only a hang reaches 60 s
        time.sleep(0.01)
    assert lines == ["end"] and runner.exit_code() == 0 and len(runner.read_stderr()) == 65536  # tail kept


@posix_only
def test_kill_ends_the_child_and_the_processes_it_started(tmp_path):
    """Like PythonSlicer (a launcher) starting the real Python: killing only the direct child is not enough."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print(child.pid, flush=True)
        time.sleep(60)
    """))
    runner = childprocess.SubprocessRunner()
    runner.start(sys.executable, [str(script)])
    deadline = time.monotonic() + 120  # a child python starts slowly on a busy machine: only a hang reaches it
    lines = []
    while not lines and time.monotonic() < deadline:
        lines = runner.read_stdout_lines()
        time.sleep(0.02)
    grandchild = int(lines[0])
    assert process_alive(grandchild) and grandchild in childprocess.descendant_pids(runner.pid)
    runner.kill()
    assert runner.exit_code() == -signal.SIGKILL  # killed at once: not asked to stop (SIGTERM) and waited for
    # the grandchild is SIGKILLed too, but reaped by init: a generous bound that only a survivor reaches (a wall-clock
    # bound of 2 s here could fail on a slow, busy CI machine; the exit code above says how the child was ended)
    deadline = time.monotonic() + 60
    while process_alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not runner.is_running() and not process_alive(grandchild)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/PID/stat is Linux's")
def test_on_linux_the_process_tree_is_read_from_proc_without_starting_ps(monkeypatch):
    """Cancel listed the launcher's descendants with ``ps`` (a process started for what ``/proc`` holds: most of
    Cancel's time) and read ``/proc`` only where ``ps`` was missing or failed (a minimal Linux or container
    without procps). On Linux the tree is read from ``/proc`` first; ``ps`` is not started."""
    import select
    import signal
    import subprocess

    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print(child.pid, flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    grandchild = None
    try:
        assert select.select([parent.stdout], [], [], 30)[0], "the child printed no process id"
        grandchild = int(parent.stdout.readline())
        started = []

        def no_ps(args, **kwargs):  # as on a Linux without procps
            started.append(args)
            raise FileNotFoundError(2, "No such file or directory", args[0])

        monkeypatch.setattr(childprocess.subprocess, "run", no_ps)
        assert childprocess.descendant_pids(parent.pid) == [grandchild]
        assert parent.pid in childprocess.descendant_pids(os.getpid())
        childprocess.kill_process_tree(parent.pid)  # what Cancel does to the launcher
        deadline = time.monotonic() + 60  # SIGKILLed, reaped by init: only a survivor reaches this
        while process_alive(grandchild) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not process_alive(grandchild)
        assert started == []
    finally:
        for pid in (grandchild, parent.pid):
            try:
                if pid:
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        parent.wait(timeout=10)
        parent.stdout.close()


@pytest.mark.parametrize("platform", ["darwin", "freebsd13", "linux"])
def test_elsewhere_or_without_proc_the_process_tree_is_listed_with_ps(monkeypatch, platform):
    """macOS and BSD have no Linux ``/proc``: ``ps -A -o pid=,ppid=`` lists the tree (on Linux too where ``/proc``
    gives nothing); a failing ``ps`` leaves only the process itself to kill."""
    import subprocess

    monkeypatch.setattr(childprocess.sys, "platform", platform)
    monkeypatch.setattr(childprocess, "_children_from_proc", lambda: {})  # a Linux whose /proc gives nothing
    listing = "    1     0\n   10     1\n   11    10\n   12    11\n   13     1\n   14    10\n"
    asked = []

    def ps(args, **kwargs):
        asked.append(args)
        return subprocess.CompletedProcess(args, 0, stdout=listing, stderr="")

    monkeypatch.setattr(childprocess.subprocess, "run", ps)
    assert childprocess.descendant_pids(10) == [11, 14, 12]  # children first, level by level
    assert asked == [["ps", "-A", "-o", "pid=,ppid="]]
    monkeypatch.setattr(childprocess.subprocess, "run",
                        lambda args, **kwargs: subprocess.CompletedProcess(args, 1, stdout="", stderr="ps: error"))
    assert childprocess.descendant_pids(10) == []


# ---- SegmentationJob with a fake child (slicer-core) --------------------------------------------------------

FAKE_CHILD = textwrap.dedent('''
    """Follows the --progress json contract. Behaviour from LTS_FAKE: ok | error | crash | killed | hang | stopped."""
    import json, os, signal, sys, time
    args = sys.argv[1:]
    mode = os.environ.get("LTS_FAKE", "ok")
    say = lambda obj: print(json.dumps(obj), flush=True)
    say({"progress": 0.0, "stage": "reading"})
    if mode == "error":
        say({"error": "'" + args[0] + "' does not look like CT in Hounsfield units "
                      "(values lie within 0..255: 0..255); provide the original HU CT, or pass --allow-non-hu to "
                      "proceed."})
        sys.exit(2)
    if mode == "crash":
        sys.stderr.write("Traceback ...\\nMemoryError: out of memory\\n")
        sys.exit(1)
    if mode == "internal":  # the command line's internal error under --progress json: an error line, exit 1
        say({"error": "internal error: ValueError: operands could not be broadcast together"})
        sys.stderr.write("error: internal error: ValueError: operands could not be broadcast together (rerun with "
                         "--debug for the traceback; please report it)\\n")
        sys.exit(1)
    if mode == "segfault":  # a launcher's view of a native crash: the fault handler's lines, then its own, exit 1
        sys.stderr.write("Fatal Python error: Segmentation fault\\n\\nCurrent thread 0x1 (most recent call first):\\n"
                         "  File \\"x.py\\", line 4 in <module>\\n[/opt/Slicer/bin/python-real] exit abnormally - "
                         "Report the problem.\\n")
        sys.exit(1)
    say({"progress": 0.2, "stage": "network"})
    if mode == "killed":  # as the system's out-of-memory killer does it: no message
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "hang":
        time.sleep(120)
    if mode == "stopped":  # as the child ends when a SIGINT, SIGTERM or SIGHUP reaches it from elsewhere
        say({"error": "cancelled"})
        sys.stderr.write("cancelled; no output was written\\n")
        sys.exit(130)
    import SimpleITK as sitk  # only where an image is read: its import is most of this child's 0.4-0.6 s
    image = sitk.ReadImage(args[0])
    labels = sitk.Cast(image > 0, sitk.sitkUInt8) + sitk.Cast(image > 100, sitk.sitkUInt8)
    out = args[args.index("-o") + 1]
    sitk.WriteImage(labels, out)
    report = args[args.index("--report") + 1]
    json.dump({"liver_volume_ml": 1.5, "tumor_volume_ml": 0.5, "tumor_burden_percent": 33.3, "lesions": [],
               "warnings": [f"'{args[0]}' has thick slices (6.5 mm); small lesions may be missed."]},
              open(report, "w"))
    outputs = {"labels": out, "report": report, "probabilities": None, "preview": None}
    if "--probabilities" in args:
        outputs["probabilities"] = args[args.index("--probabilities") + 1]
        sitk.WriteImage(sitk.Cast(sitk.Clamp(image, lowerBound=0, upperBound=255), sitk.sitkUInt8),
                        outputs["probabilities"])
    say({"progress": 1.0, "stage": "done"})
    print("a stray line that is not JSON", flush=True)
    say({"done": True, "outputs": outputs, "seconds": 0.1, "device": "cpu"})
''')


class FakeChildRunner(childprocess.SubprocessRunner):
    """Runs FAKE_CHILD with the job's arguments in place of ``-m LiverTumorSegLib segment``."""

    def __init__(self, script, mode):
        super().__init__()
        self.script, self.mode, self.args = script, mode, None

    def start(self, program, args, env=None):
        self.args = list(args)
        assert args[:3] == ["-m", "LiverTumorSegLib", "segment"] and args[-2:] == ["--progress", "json"]
        env = dict(env or os.environ, LTS_FAKE=self.mode)
        super().start(sys.executable, [str(self.script)] + list(args[3:]), env)


def _ct_array():
    array = np.full((4, 5, 6), -100, np.int16)
    array[1:3, 1:4, 1:5] = 50
    array[2, 2, 2] = 200
    return array


@pytest.fixture
def fake(tmp_path):
    pytest.importorskip("slicer")
    pytest.importorskip("SimpleITK")
    from LiverTumorSegLib import mrml
    from LiverTumorSegLib.volume import ImageGeometry
    script = tmp_path / "fake_child.py"
    script.write_text(FAKE_CHILD)
    temp_root = tmp_path / "temp"
    temp_root.mkdir()
    scene = mrml.make_headless_scene()
    geometry = ImageGeometry(spacing=(0.8, 0.9, 2.5), origin=(10.0, -5.0, 3.0))
    node = _volume_node(scene, _ct_array(), geometry)
    runners = []  # each job's runner, in the order made

    def make_job(mode="ok", node=node, **kwargs):
        runner = FakeChildRunner(script, mode)
        runners.append(runner)
        return job.SegmentationJob(scene, node, kwargs.pop("options", job.SegmentationOptions(model="m.safetensors")),
                                   runner, sys.executable, str(ROOT), temp_root=str(temp_root),
                                   show_3d=kwargs.pop("show_3d", False), colors_logic=scene._livertumorseg_logics[1],
                                   **kwargs)

    return type("Fake", (), {"scene": scene, "node": node, "geometry": geometry, "job": staticmethod(make_job),
                             "temp_root": temp_root, "mrml": mrml,
                             "runners": runners})


def _volume_node(scene, array, geometry, name="CT"):
    return add_volume_node(scene, array, geometry, name)


def _scene_counts(scene):
    return {cls: scene.GetNumberOfNodesByClass(cls) for cls in
            ("vtkMRMLSegmentationNode", "vtkMRMLTableNode", "vtkMRMLScalarVolumeNode")} | {"all": scene.GetNumberOfNodes()}


def test_job_success_loads_labels_report_and_probability_and_leaves_no_file(fake):
    stages = []
    segmentation_job = fake.job(options=job.SegmentationOptions(model="m.safetensors", probabilities=True),
                                progress=lambda f, s: stages.append((f, s))).start()
    assert not segmentation_job.used_storage_file and segmentation_job.input_path.endswith("ct.nii")
    outcome = segmentation_job.wait(timeout_s=60)
    assert outcome.kind == job.DONE, outcome.details
    assert stages == [(0.0, "reading"), (0.2, "network"), (1.0, "done"), (1.0, job.LOADING_RESULT_STAGE)]
    assert outcome.device == "cpu"
    expected = (_ct_array() > 0).astype(np.uint8) + (_ct_array() > 100)
    labels = fake.mrml.segmentation_to_labels(outcome.segmentation_node, fake.geometry, expected.shape)
    np.testing.assert_array_equal(labels, expected)
    assert outcome.report["tumor_volume_ml"] == 0.5 and outcome.table_node.GetName() == "CT liver lesions"
    # the child's input is a temporary NIfTI: its warnings name the volume instead
    assert outcome.warnings == ["Volume 'CT' has thick slices (6.5 mm); small lesions may be missed."]
    import slicer
    probability = slicer.util.arrayFromVolume(outcome.probability_node)
    np.testing.assert_allclose(probability, np.clip(_ct_array(), 0, 255) / 255.0, atol=1e-6)
    assert outcome.probability_node.GetName() == "CT tumor probability"
    assert list(segmentation_job.other_output) == ["a stray line that is not JSON"]
    assert list(fake.temp_root.iterdir()) == []
    segmentation_job.cancel()  # a Cancel click that comes after the result was loaded: the result stays
    assert segmentation_job.poll() is outcome and outcome.kind == job.DONE
    assert fake.scene.IsNodePresent(outcome.segmentation_node)


def test_show_in_3d_gives_the_result_a_closed_surface_and_a_run_without_it_none(fake):
    """The panel's *Show 3D* option: the segments get their closed-surface representation (what the 3D view draws),
    made of the result's labels (a surface with points for both segments); without the option none is made."""
    closed_surface = "Closed surface"
    plain = fake.job().start().wait(timeout_s=60)
    assert plain.kind == job.DONE, plain.details
    assert not plain.segmentation_node.GetSegmentation().ContainsRepresentation(closed_surface)
    shown = fake.job(show_3d=True).start().wait(timeout_s=60)
    assert shown.kind == job.DONE, shown.details
    segmentation = shown.segmentation_node.GetSegmentation()
    assert segmentation.ContainsRepresentation(closed_surface)
    for segment_id in ("livertumorseg_liver", "livertumorseg_tumor"):
        surface = segmentation.GetSegment(segment_id).GetRepresentation(closed_surface)
        assert surface is not None and surface.GetNumberOfPoints() > 0, segment_id


def test_a_ct_node_whose_image_extent_does_not_start_at_0_is_segmented_on_its_own_grid(fake):
    """The job's grid ignored the image data's extent start (a script's vtkImageData, a cut-out) while the CT file
    it handed over did not: 14.8 mm apart on an audit's oblique CT, so a finished run was refused as 'a label map
    on another grid', and 'Update lesion table' as labels off their CT."""
    node = _volume_node(fake.scene, _ct_array(), fake.geometry, name="cut-out")
    image = node.GetImageData()
    nz, ny, nx = _ct_array().shape
    image.SetExtent(5, 5 + nx - 1, 3, 3 + ny - 1, 2, 2 + nz - 1)
    world = fake.mrml.volume_node_world_geometry(node)
    assert np.allclose(world.origin, np.asarray(fake.geometry.origin) + [5 * 0.8, 3 * 0.9, 2 * 2.5])
    assert job.volume_grid(node)[0].almost_equal(fake.mrml.ctvolume_from_volume_node(node).geometry)
    outcome = fake.job(node=node).start().wait(timeout_s=60)
    assert outcome.kind == job.DONE, outcome.details
    expected = (_ct_array() > 0).astype(np.uint8) + (_ct_array() > 100)
    np.testing.assert_array_equal(
        fake.mrml.segmentation_to_labels(outcome.segmentation_node, world, expected.shape), expected)


def test_results_are_loaded_without_whole_volume_int16_or_float_copies(fake, monkeypatch):
    """The child's uint8 labels and probability map were read as int16 and the map turned into float32 twice
    (astype, then / 255) before VTK copied it a third time: 12 bytes a voxel at the peak, 2.7 GiB for a 512 x 512
    x 900 CT. Now both stay uint8 and the map is divided by 255 straight into the volume node's float32 voxels,
    which are the same numbers as before, bit for bit."""
    import functools
    import tracemalloc

    import slicer
    ct = np.full((12, 96, 128), -100, np.int16)
    ct[2:10, 10:80, 20:110] = np.arange(90, dtype=np.int16)[None, None, :] * 3  # 0..267: every probability value
    ct[6, 40:50, 40:50] = 150
    node = _volume_node(fake.scene, ct, fake.geometry, name="CT big")
    peaks = []
    load_results = job.SegmentationJob._load_results

    def traced(self, seconds):
        if not peaks:  # the first run imports the readers: not counted
            peaks.append(None)
            return load_results(self, seconds)
        tracemalloc.start()
        try:
            return load_results(self, seconds)
        finally:
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()

    monkeypatch.setattr(job.SegmentationJob, "_load_results", traced)
    from LiverTumorSegLib.io import gzip_inflate  # its 16 MiB file read buffer would be most of this small peak
    monkeypatch.setattr(gzip_inflate, "inflate_to_end", functools.partial(gzip_inflate.inflate_to_end,
                                                                          read_step=1 << 16))
    options = job.SegmentationOptions(model="m.safetensors", probabilities=True)
    for _ in range(2):
        outcome = fake.job(node=node, options=options).start().wait(timeout_s=60)
        assert outcome.kind == job.DONE, outcome.details
    expected = np.clip(ct, 0, 255).astype(np.uint8).astype(np.float32) / 255.0
    probability = slicer.util.arrayFromVolume(outcome.probability_node)
    assert probability.dtype == np.float32 and probability.tobytes() == expected.tobytes()
    labels = fake.mrml.segmentation_to_labels(outcome.segmentation_node, fake.geometry, ct.shape)
    np.testing.assert_array_equal(labels, (ct > 0).astype(np.uint8) + (ct > 100))
    # uint8 labels and map (1 byte a voxel each) and the reader's inflate buffer (the whole small map): 4.4; before 12.1
    assert peaks[1] / ct.size < 6.0, f"{peaks[1] / ct.size:.1f} bytes of numpy arrays a voxel"


def test_a_new_segmentation_gets_a_new_lesion_table_and_the_old_one_is_kept(fake):
    """The panel passes its last lesion table; segmenting another CT into a new segmentation refilled (and
    mislabelled) the first CT's table."""
    first = fake.job().start().wait(timeout_s=60)
    assert first.kind == job.DONE, first.details
    rows_before = first.table_node.GetNumberOfRows()
    second = fake.job(table_node=first.table_node).start().wait(timeout_s=60)
    assert second.kind == job.DONE, second.details
    assert second.segmentation_node is not first.segmentation_node
    assert second.table_node is not first.table_node and first.table_node.GetScene() is fake.scene
    assert first.table_node.GetNumberOfRows() == rows_before
    again = fake.job(segmentation_node=second.segmentation_node, table_node=second.table_node).start().wait(60)
    assert again.kind == job.DONE and again.table_node is second.table_node  # same segmentation: same table
    # another existing segmentation (another CT's) with the last table passed: that table is not refilled
    other = fake.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "CT2 segmentation")
    third = fake.job(segmentation_node=other, table_node=again.table_node).start().wait(60)
    assert third.kind == job.DONE and third.segmentation_node is other
    assert third.table_node is not again.table_node and again.table_node.GetNumberOfRows() == rows_before
    assert fake.mrml.lesion_table_describes(third.table_node, other)
    assert not fake.mrml.lesion_table_describes(again.table_node, other)


def test_a_second_result_of_one_ct_gets_names_no_other_node_has(fake):
    """Two runs of one CT into new segmentations (other settings compared) both gave "CT liver segmentation", "CT
    liver lesions" and "CT tumor probability": the node lists and the Compare selectors could not tell them apart. New
    nodes are named as Slicer names new nodes; a re-run into a segmentation refills its table and map, names kept."""
    options = job.SegmentationOptions(model="m.safetensors", probabilities=True)
    first = fake.job(options=options).start().wait(timeout_s=60)
    second = fake.job(options=options).start().wait(timeout_s=60)
    assert first.kind == second.kind == job.DONE, second.details
    names = [(o.segmentation_node.GetName(), o.table_node.GetName(), o.probability_node.GetName())
             for o in (first, second)]
    assert names == [("CT liver segmentation", "CT liver lesions", "CT tumor probability"),
                     ("CT liver segmentation_1", "CT liver lesions_1", "CT tumor probability_1")]
    again = fake.job(options=options, segmentation_node=second.segmentation_node,
                     table_node=second.table_node).start().wait(timeout_s=60)
    assert again.kind == job.DONE and again.table_node is second.table_node
    assert again.probability_node is second.probability_node
    assert (again.segmentation_node.GetName(), again.table_node.GetName(), again.probability_node.GetName()) == names[1]


def test_results_join_the_cts_study_and_a_rerun_refills_its_probability_volume(fake):
    """New nodes go into the CT's subject hierarchy study (where Data module and DICOM SEG export look); a re-run
    with 'Show tumor probability' refills its volume instead of adding one per run."""
    import slicer
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(fake.scene)
    patient = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Patient")
    study = hierarchy.CreateStudyItem(patient, "CT study")
    ct_item = hierarchy.GetItemByDataNode(fake.node) or hierarchy.CreateItem(study, fake.node)
    hierarchy.SetItemParent(ct_item, study)
    options = job.SegmentationOptions(model="m.safetensors", probabilities=True)
    first = fake.job(options=options).start().wait(timeout_s=60)
    assert first.kind == job.DONE, first.details
    for node in (first.segmentation_node, first.table_node, first.probability_node):
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == study, node.GetName()
    volumes = fake.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    again = fake.job(options=options, segmentation_node=first.segmentation_node,
                     table_node=first.table_node).start().wait(timeout_s=60)
    assert again.kind == job.DONE, again.details
    assert again.probability_node is first.probability_node
    assert fake.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == volumes


def test_nodes_deleted_while_the_child_runs_are_not_written_into(fake):
    """The result was written into a segmentation (and table) the user deleted during the run: 'Done', and
    nothing in the scene. A deleted output now means a new one; a deleted CT means no result, said plainly."""
    first = fake.job().start().wait(timeout_s=60)
    assert first.kind == job.DONE, first.details
    running = fake.job(segmentation_node=first.segmentation_node, table_node=first.table_node).start()
    fake.scene.RemoveNode(first.segmentation_node)
    fake.scene.RemoveNode(first.table_node)
    outcome = running.wait(timeout_s=60)
    assert outcome.kind == job.DONE, outcome.details
    assert fake.scene.IsNodePresent(outcome.segmentation_node) and fake.scene.IsNodePresent(outcome.table_node)
    assert fake.mrml.lesion_table_describes(outcome.table_node, outcome.segmentation_node)
    doomed = _volume_node(fake.scene, _ct_array(), fake.geometry, name="CT to delete")
    running = fake.job(node=doomed).start()
    before = _scene_counts(fake.scene)
    fake.scene.RemoveNode(doomed)
    outcome = running.wait(timeout_s=60)
    assert outcome.kind == job.FAILED and "was removed from the scene while it was segmented" in str(outcome.error)
    assert fake.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == before["vtkMRMLSegmentationNode"]


def test_a_ct_moved_while_it_is_segmented_gets_no_result_placed_where_it_was(fake):
    """A registration applied to the CT during the run: the result, made on the grid of the run's start, was
    placed under the CT's new transform, so the segments lay 40 mm from the CT. It is now refused, plainly,
    and the scene gets no new node; the same CT segmented again (under its transform) lines up."""
    import vtk
    ct = _volume_node(fake.scene, _ct_array(), fake.geometry, name="CT to move")
    running = fake.job(node=ct).start()
    before = _scene_counts(fake.scene)
    shift = fake.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 40.0)
    shift.SetMatrixTransformToParent(matrix)
    ct.SetAndObserveTransformNodeID(shift.GetID())
    outcome = running.wait(timeout_s=60)
    assert outcome.kind == job.FAILED and "was moved or changed while it was segmented" in str(outcome.error)
    after = _scene_counts(fake.scene)
    assert after["vtkMRMLSegmentationNode"] == before["vtkMRMLSegmentationNode"]
    assert after["vtkMRMLTableNode"] == before["vtkMRMLTableNode"]
    again = fake.job(node=ct).start().wait(timeout_s=60)
    assert again.kind == job.DONE, again.details
    world, _ = job.volume_grid(ct)  # the CT's grid where it is now, 40 mm to the right (RAS x)
    assert world.ijk_to_ras()[0, 3] == pytest.approx(fake.geometry.ijk_to_ras()[0, 3] + 40.0)
    labels = fake.mrml.segmentation_to_labels(again.segmentation_node, world, _ct_array().shape)
    np.testing.assert_array_equal(labels, (_ct_array() > 0).astype(np.uint8) + (_ct_array() > 100))


def test_output_segmentation_is_reset_when_the_input_ct_changes(fake):
    """The panel keeps the last result selected as the output; choosing another CT must not make the first
    CT's segmentation the default target of the next run."""
    first = fake.job().start().wait(timeout_s=60)
    assert first.kind == job.DONE, first.details
    seg = first.segmentation_node
    assert job.output_for_input(fake.node, seg) is seg
    other_ct = _volume_node(fake.scene, _ct_array(), fake.geometry, name="CT2")
    assert job.output_for_input(other_ct, seg) is None
    user_made = fake.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty, no source volume")
    assert job.output_for_input(other_ct, user_made) is user_made
    assert job.output_for_input(other_ct, None) is None and job.output_for_input(None, seg) is seg


def test_the_default_input_is_a_volume_the_input_selector_can_show(fake):
    """The selector lists only plain scalar volumes (showChildNodeTypes off); label maps were skipped, but a
    vector (colour) volume loaded first became the hidden default input."""
    scene = fake.scene
    nodes = [scene.AddNewNodeByClass(name) for name in ("vtkMRMLVectorVolumeNode", "vtkMRMLLabelMapVolumeNode",
                                                         "vtkMRMLDiffusionWeightedVolumeNode")]
    assert job.first_plain_scalar_volume(nodes) is None
    ct = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    assert job.first_plain_scalar_volume(nodes + [ct]) is ct


def test_a_label_map_or_this_modules_probability_map_as_the_ct_is_refused_before_any_work(fake):
    """The input selector lists the module's own "CT tumor probability" beside the CTs (a plain scalar volume), and a
    script may pass a label map volume: either went to the child, which refused it as "not CT in Hounsfield units"
    only after its start, and measured on it a lesion's "Mean HU" was the map's value. Both are refused at once, no
    child started, no folder made; the panel's default input skips the map."""
    from LiverTumorSegModuleLib import measure_job

    options = job.SegmentationOptions(model="m.safetensors", probabilities=True)
    first = fake.job(options=options).start().wait(timeout_s=60)
    assert first.kind == job.DONE, first.details
    labelmap = fake.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "CT-label")
    labelmap.SetAndObserveImageData(fake.node.GetImageData())
    before = _scene_counts(fake.scene)
    for node, words in ((first.probability_node, "'CT tumor probability' is a tumor probability map made by this "
                                                 "module, not a CT; select the CT volume it was made from."),
                        (labelmap, "'CT-label' is a label map volume, not a CT; select the CT volume")):
        runner = FakeChildRunner(Path("never-run.py"), "ok")
        with pytest.raises(InputError, match=re.escape(words)):
            job.SegmentationJob(fake.scene, node, options, runner, sys.executable, str(ROOT),
                                temp_root=str(fake.temp_root))
        assert runner.args is None
        with pytest.raises(InputError, match="not a CT"):
            measure_job.MeasureJob(fake.scene, first.segmentation_node, node, FakeChildRunner(Path("x"), "ok"),
                                   sys.executable, str(ROOT), temp_root=str(fake.temp_root))
    assert _scene_counts(fake.scene) == before and list(fake.temp_root.iterdir()) == []
    assert job.first_plain_scalar_volume([first.probability_node, labelmap, fake.node]) is fake.node
    assert job.not_a_ct_reason(fake.node) == ""


def test_a_temporary_directory_that_cannot_be_written_is_named_with_what_to_do(fake, tmp_path):
    """Slicer's temporary directory (``temp_root``) set to a folder that is gone or cannot be written (a network share
    no longer mounted, a read-only disk) stopped Segment with "[Errno 2] No such file or directory:
    '.../LiverTumorSeg.1234-...tmp'" and a traceback. Now an InputError (shown as it is) names the folder, why, and
    the setting to change; no child is started. A folder below a file stands for an unwritable one (root ignores
    permissions)."""
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for root in (tmp_path / "gone" / "Slicer-user", a_file / "Slicer-user"):
        runner = FakeChildRunner(Path("never-run.py"), "ok")
        segmentation_job = job.SegmentationJob(
            fake.scene, fake.node, job.SegmentationOptions(model="m.safetensors"), runner, sys.executable, str(ROOT),
            temp_root=str(root), show_3d=False, colors_logic=fake.scene._livertumorseg_logics[1])
        with pytest.raises(InputError, match=re.escape(f"Cannot create a temporary folder in '{root}' (")) as caught:
            segmentation_job.start()
        assert "Slicer's temporary directory (Edit > Application Settings > General)" in str(caught.value)
        assert runner.args is None and not root.exists()


class _StubDicomDatabase:
    """``slicer.dicomDatabase`` as far as the module asks it: ``instanceValue(uid, tag)``, '' for what it lacks."""

    def __init__(self, values, fails=False):
        self.values, self.fails, self.asked = values, fails, []

    def instanceValue(self, uid, tag):
        self.asked.append((uid, tag))
        if self.fails:
            raise RuntimeError("database closed")
        return self.values.get((uid, tag), "")


def test_a_volume_loaded_from_an_mr_or_pet_dicom_series_is_refused_before_any_child(fake, monkeypatch):
    """The CLI refuses a DICOM series of Modality MR or PT; through Slicer's DICOM module the child got a temporary
    ct.nii without the Modality and judged the values alone: an MR whose values passed (cubic-interpolated, a few
    negatives) was segmented into a 3601 mL 'liver' with exit 0. The node's DICOM.instanceUIDs and the DICOM
    database now say what it is, and it is refused before any child starts, naming the Modality and what to select."""
    import slicer
    mr = fake.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "3: T1 VIBE")
    mr.SetAndObserveImageData(fake.node.GetImageData())
    mr.SetAttribute(job.DICOM_INSTANCE_UIDS_ATTRIBUTE, "1.2.3.1 1.2.3.2")
    database = _StubDicomDatabase({("1.2.3.1", "0008,0060"): "MR", ("9.1", "0008,0060"): "CT",
                                   ("7.2", "0008,0060"): "pt "})
    monkeypatch.setattr(slicer, "dicomDatabase", database, raising=False)
    words = ("'3: T1 VIBE' was loaded from a DICOM series of Modality MR, not CT: the models are trained on CT in "
             "Hounsfield units only; select a CT volume (a series of Modality CT).")
    assert job.not_a_ct_reason(mr) == words
    runner = FakeChildRunner(Path("never-run.py"), "ok")
    with pytest.raises(InputError, match=re.escape(words)):
        job.SegmentationJob(fake.scene, mr, job.SegmentationOptions(model="m.safetensors"), runner, sys.executable,
                            str(ROOT), temp_root=str(fake.temp_root))
    assert runner.args is None and list(fake.temp_root.iterdir()) == []
    assert job.first_plain_scalar_volume([mr, fake.node]) is fake.node
    mr.SetAttribute(job.DICOM_INSTANCE_UIDS_ATTRIBUTE, "7.1 7.2")  # the first instance is not in the database
    assert "Modality PT, not CT" in job.not_a_ct_reason(mr)
    for uids in ("9.1", "5.5 5.6", ""):  # a CT series; instances the database does not know; no DICOM origin
        mr.SetAttribute(job.DICOM_INSTANCE_UIDS_ATTRIBUTE, uids)
        assert job.not_a_ct_reason(mr) == "", uids
    mr.SetAttribute(job.DICOM_INSTANCE_UIDS_ATTRIBUTE, "1.2.3.1")
    monkeypatch.setattr(slicer, "dicomDatabase", _StubDicomDatabase({}, fails=True))
    assert job.not_a_ct_reason(mr) == ""  # a database that raises: judged by its values, as before
    monkeypatch.setattr(slicer, "dicomDatabase", None)  # the DICOM module not loaded
    assert job.not_a_ct_reason(mr) == ""
    monkeypatch.delattr(slicer, "dicomDatabase")
    assert job.not_a_ct_reason(mr) == "" and job.not_a_ct_reason(fake.node) == ""


def test_dicom_slice_thickness_asks_at_most_eight_instances_spread_over_the_series(fake, monkeypatch):
    """A tag the database has not cached is read from the file on Slicer's main thread: a 500-slice series is asked
    for 8 instances, the first and the last among them, not 500."""
    import slicer

    uids = [f"1.{i}" for i in range(500)]
    fake.node.SetAttribute(job.DICOM_INSTANCE_UIDS_ATTRIBUTE, " ".join(uids))
    database = _StubDicomDatabase({(uid, "0018,0050"): "5" for uid in uids})
    monkeypatch.setattr(slicer, "dicomDatabase", database, raising=False)
    assert job.dicom_slice_thickness_mm(fake.node) == 5.0
    asked = [uid for uid, tag in database.asked if tag == "0018,0050"]
    assert len(asked) == 8 and asked[0] == "1.0" and asked[-1] == "1.499" and len(set(asked)) == 8
    assert job.spread_instance_uids(["a", "b"], 8) == ["a", "b"]


def test_dicom_slice_thickness_is_read_from_the_database_for_every_instance(fake, monkeypatch):
    """SliceThickness (0018,0050) of the node's instances, the largest positive one (as the command line's DICOM
    reader keeps it); None without DICOM origin, a database, or a usable value."""
    import slicer

    node = fake.node
    assert job.dicom_slice_thickness_mm(node) is None  # no DICOM.instanceUIDs
    node.SetAttribute(job.DICOM_INSTANCE_UIDS_ATTRIBUTE, "1.1 1.2 1.3 1.4")
    database = _StubDicomDatabase({("1.1", "0018,0050"): "5", ("1.2", "0018,0050"): " 7.0 ",
                                   ("1.3", "0018,0050"): "abc", ("1.4", "0018,0050"): "-2"})
    monkeypatch.setattr(slicer, "dicomDatabase", database, raising=False)
    assert job.dicom_slice_thickness_mm(node) == 7.0
    assert [uid for uid, tag in database.asked if tag == "0018,0050"] == ["1.1", "1.2", "1.3", "1.4"]
    monkeypatch.setattr(slicer, "dicomDatabase", _StubDicomDatabase({("1.1", "0018,0050"): "0"}))
    assert job.dicom_slice_thickness_mm(node) is None
    monkeypatch.setattr(slicer, "dicomDatabase", _StubDicomDatabase({}, fails=True))
    assert job.dicom_slice_thickness_mm(node) is None
    monkeypatch.setattr(slicer, "dicomDatabase", None)
    assert job.dicom_slice_thickness_mm(node) is None


class _StubDicomDatabaseWithFiles(_StubDicomDatabase):
    """A stand-in database that also names each instance's file (``fileForInstance``), as ctkDICOMDatabase does."""

    def __init__(self, values, files):
        super().__init__(values)
        self.files, self.files_asked = files, []

    def fileForInstance(self, uid):
        self.files_asked.append(uid)
        return self.files.get(uid, "")


def test_dicom_slice_thickness_of_an_enhanced_ct_is_read_from_its_functional_groups(fake, monkeypatch, tmp_path):
    """An enhanced multi-frame CT keeps SliceThickness in its Pixel Measures functional groups, not at the top level
    the database's instanceValue reads: the panel took the 5 mm spacing for 7 mm frames (measurable from 10 mm,
    where ``livertumorseg segment`` on the file says 14 mm). Now the instance's file is read for them, one file
    header at most; a classic series with a top-level value reads no file; a file without functional groups, a
    missing file or a database without fileForInstance leave it unknown (the spacing is taken)."""
    import pydicom
    import slicer
    from dicom_helpers import write_ct_series, write_enhanced_ct
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    ct = CTVolume(np.zeros((4, 8, 8), np.int16), ImageGeometry(spacing=(1.0, 1.0, 5.0)), source="phantom")
    enhanced = write_enhanced_ct(tmp_path / "enhanced.dcm", ct, slice_thickness_mm=7.0)
    reads = []
    real_dcmread = pydicom.dcmread
    monkeypatch.setattr(pydicom, "dcmread", lambda *a, **k: reads.append(a[0]) or real_dcmread(*a, **k))
    fake.node.SetAttribute(job.DICOM_INSTANCE_UIDS_ATTRIBUTE, "3.1")
    database = _StubDicomDatabaseWithFiles({}, {"3.1": str(enhanced)})
    monkeypatch.setattr(slicer, "dicomDatabase", database, raising=False)
    assert job.dicom_slice_thickness_mm(fake.node) == 7.0
    assert database.files_asked == ["3.1"] and reads == [str(enhanced)]
    assert job.slice_thickness_for_child(fake.node, fake.geometry) == 7.0  # handed to the child

    classic = write_ct_series(tmp_path / "classic", ct, slice_thickness_mm=7.0)
    reads.clear()
    monkeypatch.setattr(slicer, "dicomDatabase", _StubDicomDatabaseWithFiles({}, {"3.1": str(classic[0])}))
    assert job.dicom_slice_thickness_mm(fake.node) is None and len(reads) == 1  # no functional groups: unknown
    database = _StubDicomDatabaseWithFiles({("3.1", "0018,0050"): "7"}, {"3.1": str(enhanced)})
    monkeypatch.setattr(slicer, "dicomDatabase", database)
    reads.clear()
    assert job.dicom_slice_thickness_mm(fake.node) == 7.0 and database.files_asked == [] and reads == []
    for stand_in in (_StubDicomDatabaseWithFiles({}, {"3.1": str(tmp_path / "gone.dcm")}), _StubDicomDatabase({})):
        monkeypatch.setattr(slicer, "dicomDatabase", stand_in)
        assert job.dicom_slice_thickness_mm(fake.node) is None


def test_segment_run_hands_the_dicom_slice_thickness_to_the_child(fake, monkeypatch):
    """The child reads a NIfTI copy (no thickness): a volume loaded from DICOM 7 mm slices every 2.5 mm was judged
    by the spacing. The job gives the child --slice-thickness-mm 7.0; a thickness the command line would not take
    for the series itself (thinner than the 2.5 mm spacing: gapped) is not given, nor one the database lacks."""
    import slicer

    fake.node.SetAttribute(job.DICOM_INSTANCE_UIDS_ATTRIBUTE, "2.1 2.2")
    monkeypatch.setattr(slicer, "dicomDatabase", _StubDicomDatabase(
        {("2.1", "0018,0050"): "7", ("2.2", "0018,0050"): "7"}), raising=False)
    assert job.slice_thickness_for_child(fake.node, fake.geometry) == 7.0
    segmentation_job = fake.job().start()
    args = fake.runners[-1].args
    assert args[args.index("--slice-thickness-mm") + 1] == "7.0"
    assert segmentation_job.wait(timeout_s=60).kind == job.DONE
    monkeypatch.setattr(slicer, "dicomDatabase", _StubDicomDatabase({("2.1", "0018,0050"): "1.0"}))
    assert job.slice_thickness_for_child(fake.node, fake.geometry) is None
    fake.job().start().wait(timeout_s=60)
    assert "--slice-thickness-mm" not in fake.runners[-1].args


def test_panel_shows_a_lesion_table_only_beside_the_segmentation_it_lists(fake):
    """After a switch to another CT the output becomes "Create new" (None); the lesion table of the first CT's
    result must then leave the panel, and it must not appear beside another segmentation either."""
    first = fake.job().start().wait(timeout_s=60)
    assert first.kind == job.DONE, first.details
    table, seg = first.table_node, first.segmentation_node
    assert job.lesion_table_to_show(table, seg) is table
    assert job.lesion_table_to_show(table, None) is None
    other = fake.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "another CT's result")
    assert job.lesion_table_to_show(table, other) is None
    assert job.lesion_table_to_show(None, seg) is None
    unlinked = fake.scene.AddNewNodeByClass("vtkMRMLTableNode", "table from a scene saved before tables were linked")
    assert job.lesion_table_to_show(unlinked, other) is unlinked


def test_on_windows_a_non_ascii_path_is_handed_over_only_as_nifti(fake, tmp_path, monkeypatch):
    """The child reads NRRD/MetaImage with SimpleITK, which cannot open a non-ASCII path on Windows; NIfTI it
    reads with nibabel. So there a node's own .nrrd under such a path is copied (to a NIfTI), its .nii.gz is not."""
    import slicer

    folder = tmp_path / "J\u00fcrgen"
    folder.mkdir()
    nodes = {}
    for suffix in (".nrrd", ".nii.gz"):
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
        fake.scene.AddNode(storage)
        storage.SetFileName(str(folder / f"ct{suffix}"))
        assert storage.WriteData(fake.node)
        nodes[suffix] = read_volume_node(fake.scene, folder / f"ct{suffix}", f"n{suffix}")
    assert job.usable_storage_file(nodes[".nrrd"]) == str(folder / "ct.nrrd")  # elsewhere SimpleITK reads it
    import types

    monkeypatch.setattr(job, "sys", types.SimpleNamespace(platform="win32"))  # this module's view only
    assert job.usable_storage_file(nodes[".nrrd"]) is None
    assert job.usable_storage_file(nodes[".nii.gz"]) == str(folder / "ct.nii.gz")
    segmentation_job = fake.job(node=nodes[".nrrd"]).start()
    assert segmentation_job.input_path.endswith(job.HANDOVER_CT_NAME)
    assert segmentation_job.wait(timeout_s=60).kind == job.DONE


def test_job_hands_over_the_nodes_own_file_when_unchanged(fake, tmp_path):
    import slicer
    path = tmp_path / "ct.nii.gz"
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    fake.scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.WriteData(fake.node)
    node = read_volume_node(fake.scene, path, "fromfile")
    assert job.usable_storage_file(node) == str(path)
    segmentation_job = fake.job(node=node).start()
    assert segmentation_job.used_storage_file and segmentation_job.input_path == str(path)
    outcome = segmentation_job.wait(timeout_s=60)
    assert outcome.kind == job.DONE, outcome.details
    assert path.exists()  # the user's file is never removed
    transform = fake.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    node.SetAndObserveTransformNodeID(transform.GetID())
    assert job.usable_storage_file(node) is None  # world geometry differs from the file: a copy is written
    centered = read_volume_node(fake.scene, path, "centered", center=True)  # Add Data's "Center volume"
    assert not np.allclose(fake.mrml.world_ijk_to_ras(centered), fake.mrml.world_ijk_to_ras(node))
    assert not centered.GetModifiedSinceRead() and job.usable_storage_file(centered) is None
    # a NIfTI without orientation codes: Slicer (ITK) reads an LPS identity grid, the child (nibabel) the base
    # affine with y flipped; the file is not the node's grid, so a copy is written
    nib = pytest.importorskip("nibabel")
    bare = nib.Nifti1Image(_ct_array().transpose(2, 1, 0), np.diag([0.8, 0.9, 2.5, 1.0]))
    bare.set_qform(None, code=0)
    bare.set_sform(None, code=0)
    nib.save(bare, str(tmp_path / "no_orientation.nii.gz"))
    unoriented = read_volume_node(fake.scene, tmp_path / "no_orientation.nii.gz", "unoriented")
    assert not unoriented.GetModifiedSinceRead() and job.usable_storage_file(unoriented) is None


def test_a_ct_edited_or_whose_file_is_gone_since_it_was_loaded_is_handed_over_as_a_copy(fake, tmp_path):
    """The node's own file is handed over only while it holds the node's voxels: after an edit in Slicer (a
    threshold, a mask) the file would give the child the voxels as loaded, and a file moved or deleted since
    loading cannot be read at all; either way the node is written to a temporary copy and segmented as it is."""
    import slicer
    path = tmp_path / "ct.nrrd"
    storage = fake.scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    assert storage.WriteData(fake.node)
    edited = read_volume_node(fake.scene, path, "edited")
    voxels = slicer.util.arrayFromVolume(edited)
    voxels[2, 2, 2] = 50  # the tumor-bright voxel (200 HU) toned down: label 1 instead of 2 there
    slicer.util.arrayFromVolumeModified(edited)
    assert edited.GetModifiedSinceRead() and job.usable_storage_file(edited) is None
    outcome = fake.job(node=edited).start().wait(timeout_s=60)
    assert outcome.kind == job.DONE, outcome.details
    labels = fake.mrml.segmentation_to_labels(outcome.segmentation_node, fake.geometry, _ct_array().shape)
    np.testing.assert_array_equal(labels, (_ct_array() > 0).astype(np.uint8))  # the edited voxels were segmented
    moved = read_volume_node(fake.scene, path, "moved")
    path.rename(tmp_path / "elsewhere.nrrd")
    assert not moved.GetModifiedSinceRead() and job.usable_storage_file(moved) is None
    segmentation_job = fake.job(node=moved).start()
    assert not segmentation_job.used_storage_file
    assert segmentation_job.wait(timeout_s=60).kind == job.DONE
    assert list(fake.temp_root.iterdir()) == [] and (tmp_path / "elsewhere.nrrd").exists()


def test_a_colour_image_or_a_volume_without_voxels_as_the_ct_is_refused_before_any_child(fake):
    """The input selector lists every scalar volume, and Slicer's RGB volume (a photo, a colour DICOM secondary
    capture) is one; a scene whose CT file was missing at load has a node without image data. Each is refused
    saying what is wrong and what to choose, before a child or a temporary folder, and the scene keeps no node."""
    import vtk
    rgb = fake.scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "photo")
    image = vtk.vtkImageData()
    image.SetDimensions(6, 5, 4)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 3)
    rgb.SetAndObserveImageData(image)
    empty = fake.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "missing file")
    # allocated scalars of a size 0 reached the hand-over's writer, and the user was told to check free disk space
    no_voxels = fake.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "no voxels")
    zero = vtk.vtkImageData()
    zero.SetDimensions(17, 20, 0)
    zero.AllocateScalars(vtk.VTK_SHORT, 1)
    no_voxels.SetAndObserveImageData(zero)
    before = _scene_counts(fake.scene)
    for node, message in ((rgb, "Volume 'photo' is a color or vector image; choose a scalar CT volume."),
                          (empty, "Volume 'missing file' holds no image data; load a CT volume."),
                          (no_voxels, "Volume 'no voxels' holds no voxels (size 17 x 20 x 0); load a CT volume.")):
        with pytest.raises(InputError) as refused:
            fake.job(node=node).start()
        assert str(refused.value) == message
        assert fake.runners[-1].args is None  # no child was started
    assert _scene_counts(fake.scene) == before and list(fake.temp_root.iterdir()) == []


def test_job_reports_a_user_error_and_a_crash_and_changes_nothing(fake):
    before = _scene_counts(fake.scene)
    outcome = fake.job("error").start().wait(timeout_s=60)
    assert outcome.kind == job.FAILED and isinstance(outcome.error, job.SegmentationProcessError)
    # named as the volume, not the temporary file it was handed over as; no switch the panel does not have
    assert str(outcome.error) == ("Volume 'CT' does not look like CT in Hounsfield units (values lie within 0..255: "
                                  "0..255); provide the original HU CT.")
    outcome = fake.job("crash").start().wait(timeout_s=60)
    assert outcome.kind == job.FAILED and "exit code 1 (MemoryError: out of memory)" in str(outcome.error)
    assert "Traceback" in outcome.details
    assert _scene_counts(fake.scene) == before and list(fake.temp_root.iterdir()) == []


def test_an_internal_error_of_the_child_is_no_users_error_and_keeps_its_details(fake):
    """The child's internal error (a bug, exit 1) came with an error line, and was shown as a user's error without
    details: the 'please report it' line and the exit code were hidden (the child-job audit)."""
    outcome = fake.job("internal").start().wait(timeout_s=60)
    assert outcome.kind == job.FAILED and not isinstance(outcome.error, job.SegmentationProcessError)
    assert str(outcome.error) == ("The segmentation process ended with exit code 1 (internal error: ValueError: "
                                  "operands could not be broadcast together).")
    assert "please report it" in outcome.details and list(fake.temp_root.iterdir()) == []


def test_a_native_crash_behind_the_launcher_is_named_a_crash_not_a_lack_of_memory(fake):
    """Behind Slicer's launcher a segfault reached the panel as exit 1 and 'exit abnormally', and was called 'most
    likely ran out of memory', though the fault handler had said what happened (the child-job audit)."""
    from LiverTumorSegModuleLib.childjob import ended_text

    outcome = fake.job("segfault").start().wait(timeout_s=60)
    assert outcome.kind == job.FAILED
    assert str(outcome.error).startswith("The segmentation process crashed (Segmentation fault; exit code 1): a fault "
                                         "in compiled code, not a lack of memory")
    assert "memory" not in str(outcome.error).split("not a lack of memory")[1]
    assert "Fatal Python error" in outcome.details
    launcher = "[/opt/Slicer/bin/python-real] exit abnormally - Report the problem."
    assert "most likely ran out of memory" in ended_text(1, "X", launcher, "no fault handler line")
    aborted = ended_text(-6, "X", "", "Fatal Python error: Aborted\n")  # OpenMP's or std::bad_alloc's abort: maybe memory
    assert aborted.startswith("X crashed (Aborted; exit code -6): a library stopped it, as some do when they cannot "
                              "get memory or threads") and "not a lack of memory" not in aborted
    assert ended_text(-9, "X", "", "").startswith("X was killed (signal 9, SIGKILL)")


def test_a_surface_segmentation_as_the_output_is_refused_before_the_child_starts(fake):
    """A segmentation stored as closed surfaces (built from an STL) was refused only after the whole run (minutes
    of network on a CPU); the job now refuses it when it is made, with nothing started or changed."""
    import slicer
    import vtk
    surfaces = fake.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Organs from STL")
    surfaces.GetSegmentation().SetSourceRepresentationName(
        slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName())
    sphere = vtk.vtkSphereSource()
    sphere.Update()
    surfaces.AddSegmentFromClosedSurfaceRepresentation(sphere.GetOutput(), "Gallbladder", [1.0, 0.0, 0.0])
    before = _scene_counts(fake.scene)
    with pytest.raises(InputError, match="stores its segments as 'Closed surface'.*Create new"):
        fake.job(segmentation_node=surfaces)
    assert _scene_counts(fake.scene) == before and list(fake.temp_root.iterdir()) == []


def test_the_gpu_out_of_memory_advice_names_the_panels_device_choice():
    """The child's 'use --device cpu' reached the panel, which has no such flag but a Device list."""
    text = panel_text.error_text("The GPU ran out of memory even with one slice per batch; use --device cpu or free "
                                 "GPU memory (close other GPU programs).")
    assert "--device" not in text and 'choose "CPU" as the Device' in text


@pytest.mark.skipif(sys.platform.startswith("win"), reason="POSIX signals")
def test_a_child_killed_without_a_word_is_reported_with_the_likely_reason(fake):
    """It read 'ended with exit code -9 (no message)'; a kill nobody asked for is usually out of memory."""
    from LiverTumorSegModuleLib.childjob import ended_text

    outcome = fake.job("killed").start().wait(timeout_s=60)
    assert outcome.kind == job.FAILED
    assert str(outcome.error).startswith("The segmentation process was killed (signal 9, SIGKILL) before it "
                                         "finished; when nobody stopped it, the system most likely ran out of memory")
    assert list(fake.temp_root.iterdir()) == []
    assert "was killed (signal 9" in ended_text(137, "X", "")        # a launcher's 128 + 9
    assert "crashed or was killed (no message); when nobody" in ended_text(-1, "X", "")  # Qt's CrashExit
    assert ended_text(-15, "X", "") == "X was stopped by SIGTERM (exit code -15; no message)."
    assert ended_text(1, "X", "boom") == "X ended with exit code 1 (boom)."
    # a real-time signal (SIGRTMIN + 6 on Linux) has no name of its own: said by its number
    assert ended_text(-40, "X", "") == "X was stopped by signal 40 (exit code -40; no message)."
    # Slicer's PythonSlicer launcher reports a crashed or killed python-real this way and exits 1 (Slicer forum
    # logs, 5.6.2 and 5.8.1): the panel said "exit code 1 (... Report the problem.)" without the likely reason
    launcher = "[/opt/Slicer-5.6.2-linux-amd64/bin/python-real] exit abnormally - Report the problem."
    assert ended_text(1, "X", launcher).startswith(f"X crashed or was killed ({launcher}); when nobody stopped it")


def test_a_child_stopped_by_a_signal_from_elsewhere_says_so(fake):
    """A child that a SIGINT, SIGTERM or SIGHUP from outside the panel stopped (a task manager's kill, a closed
    session) ends its protocol with 'cancelled': the panel said 'Failed: cancelled', which reads as if the user
    had pressed Cancel, and nothing said who stopped the run or what to do."""
    before = _scene_counts(fake.scene)
    outcome = fake.job("stopped").start().wait(timeout_s=60)
    assert outcome.kind == job.FAILED
    assert str(outcome.error).startswith("The segmentation process was stopped by a signal from outside this panel")
    assert "Segment again" in str(outcome.error) and "cancelled; no output was written" in outcome.details
    assert _scene_counts(fake.scene) == before and list(fake.temp_root.iterdir()) == []


def test_job_cancel_kills_the_child_at_once_and_changes_nothing(fake):
    before = _scene_counts(fake.scene)
    stages = []
    segmentation_job = fake.job("hang", progress=lambda f, s: stages.append(s)).start()
    deadline = time.monotonic() + 120  # only a hang reaches it, even on a slow, busy machine
    while "network" not in stages and time.monotonic() < deadline:
        assert segmentation_job.poll() is None
        time.sleep(0.02)
    pid = segmentation_job.child_pid
    started = time.monotonic()
    segmentation_job.cancel()
    outcome = segmentation_job.poll()
    assert outcome.kind == job.CANCELLED and not process_alive(pid)  # ended when cancel() returned
    assert fake.runners[-1].exit_code() == -signal.SIGKILL  # killed, not asked to stop and waited for
    # only a hang reaches this (cancel() took ~0.1 s; a bound of 2 s could fail on a slow, busy CI machine)
    assert time.monotonic() - started < 30
    assert _scene_counts(fake.scene) == before and list(fake.temp_root.iterdir()) == []


def test_a_wait_that_runs_out_of_time_kills_the_child_and_changes_nothing(fake):
    """``wait(timeout_s=...)`` (a script's bound on a run): once the time is up the child is killed, the outcome is
    cancelled, and neither the scene nor the temporary folder keeps anything of the run."""
    before = _scene_counts(fake.scene)
    segmentation_job = fake.job("hang").start()
    started = time.monotonic()
    outcome = segmentation_job.wait(timeout_s=0.5, poll_interval_s=0.05)
    assert outcome.kind == job.CANCELLED and segmentation_job.poll() is outcome
    assert 0.45 <= time.monotonic() - started < 30  # the child sleeps 120 s: only a wait that never ends
    assert not process_alive(segmentation_job.child_pid)
    assert _scene_counts(fake.scene) == before and list(fake.temp_root.iterdir()) == []


def test_a_cancel_while_progress_is_delivered_is_a_cancel_not_a_kill_by_the_system(fake):
    """A progress callback that cancels the run (a script's, or one that processes events, where a Cancel click or a
    new run of the Logic lands) killed the child inside ``poll``, which then read the killed child as ended: "killed
    (signal 9) ... the system most likely ran out of memory", a failure, instead of cancelled."""
    before = _scene_counts(fake.scene)
    running = {}

    def progress(fraction, stage):
        if stage == "network":
            running["job"].cancel()

    running["job"] = fake.job("hang", progress=progress)
    pid = running["job"].start().child_pid
    outcome = running["job"].wait(timeout_s=30)
    assert outcome.kind == job.CANCELLED and outcome.error is None
    assert not process_alive(pid)
    assert _scene_counts(fake.scene) == before and list(fake.temp_root.iterdir()) == []


def test_a_cancel_when_the_result_is_about_to_load_changes_nothing(fake):
    """The panel paints "Loading the result..." before the result is read into the scene on the main thread; a
    cancel arriving with that stage (the child has ended well, its temporary files are removed by the cancel) is a
    cancel: no node is added or changed and nothing is left behind."""
    before = _scene_counts(fake.scene)
    running, stages = {}, []

    def progress(fraction, stage):
        stages.append(stage)
        if stage == job.LOADING_RESULT_STAGE:
            running["job"].cancel()

    running["job"] = fake.job(progress=progress)
    running["job"].start()
    outcome = running["job"].wait(timeout_s=60)
    assert stages[-2:] == ["done", job.LOADING_RESULT_STAGE]
    assert outcome.kind == job.CANCELLED and outcome.error is None and outcome.segmentation_node is None
    assert _scene_counts(fake.scene) == before and list(fake.temp_root.iterdir()) == []


def test_job_refuses_missing_input_and_cleans_up_when_the_start_fails(fake):
    from LiverTumorSegLib.errors import InputError
    with pytest.raises(InputError, match="No input volume"):
        fake.job(node=None)

    class Broken(FakeChildRunner):
        def start(self, program, args, env=None):
            raise FileNotFoundError("PythonSlicer")

    segmentation_job = job.SegmentationJob(fake.scene, fake.node, job.SegmentationOptions(model="m"), Broken(None, "ok"),
                                           "PythonSlicer", str(ROOT), temp_root=str(fake.temp_root))
    with pytest.raises(FileNotFoundError):
        segmentation_job.start()
    assert list(fake.temp_root.iterdir()) == []


def _segment_has_json_progress() -> bool:
    from LiverTumorSegLib.cli import build_parser
    segment = build_parser()._subparsers._group_actions[0].choices["segment"]
    return "--progress" in {o for action in segment._actions for o in action.option_strings}


class KeepLabelsRunner(childprocess.SubprocessRunner):
    """A SubprocessRunner that copies the label map the child (the ``segment`` CLI) wrote before the job removes
    its temporary folder, so a test can compare the scene with the CLI's own output file."""

    def __init__(self, keep_as):
        super().__init__()
        self.keep_as = keep_as

    def start(self, program, args, env=None):
        self.labels_path = args[args.index("-o") + 1]
        super().start(program, args, env)

    def is_running(self):
        running = super().is_running()
        if not running and os.path.exists(self.labels_path) and not os.path.exists(self.keep_as):
            import shutil
            shutil.copy(self.labels_path, self.keep_as)
        return running


def test_temporary_folder_removal_is_retried_while_a_killed_child_still_holds_a_file(fake, monkeypatch):
    """Windows: taskkill returns before the child is gone, and its open files cannot be deleted until then."""
    import shutil

    from LiverTumorSegModuleLib import childjob

    segmentation_job = fake.job("hang").start()
    real_rmtree, calls = shutil.rmtree, []

    def held_once(path, ignore_errors=False):
        calls.append(path)
        if len(calls) > 1:
            real_rmtree(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(childjob.shutil, "rmtree", held_once)
    monkeypatch.setattr(childjob, "REMOVE_RETRY_SECONDS", (0.0, 0.0))
    segmentation_job.cancel()
    assert len(calls) == 2 and not os.path.isdir(segmentation_job.temp_dir)
    assert segmentation_job.poll().kind == job.CANCELLED


def test_a_left_handed_ct_gets_its_segments_in_the_right_slices(fake):
    """The module read the child's labels with Slicer's storage node, which reverses the k axis of a left-handed
    file (a CT with descending slices, or under a mirroring transform), and placed them on the CT's grid: the
    tumor landed in the mirrored slice. The library's reader (the child's writer) reads them as written."""
    from LiverTumorSegLib.volume import ImageGeometry
    flipped = ImageGeometry(spacing=(0.8, 0.9, 2.5), origin=(10.0, -5.0, 3.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, -1))
    node = _volume_node(fake.scene, _ct_array(), flipped, name="CT descending")
    outcome = fake.job(node=node, options=job.SegmentationOptions(model="m.safetensors",
                                                                  probabilities=True)).start().wait(timeout_s=60)
    assert outcome.kind == job.DONE, outcome.details
    expected = (_ct_array() > 0).astype(np.uint8) + (_ct_array() > 100)   # the tumor in slice 2 of 4: not symmetric
    labels = fake.mrml.segmentation_to_labels(outcome.segmentation_node, flipped, expected.shape)
    np.testing.assert_array_equal(labels, expected)
    import slicer
    np.testing.assert_allclose(slicer.util.arrayFromVolume(outcome.probability_node),
                               np.clip(_ct_array(), 0, 255) / 255.0, atol=1e-6)


def test_a_rerun_without_probabilities_unlinks_the_earlier_map(fake):
    """Re-running without 'Show tumor probability' left the segmentation pointing at the earlier run's map, and
    'Update lesion table' then gave the new lesions the old run's probabilities."""
    first = fake.job(options=job.SegmentationOptions(model="m.safetensors", probabilities=True)).start().wait(60)
    assert first.kind == job.DONE and first.segmentation_node.GetNodeReference(fake.mrml.PROBABILITY_VOLUME_ROLE)
    again = fake.job(segmentation_node=first.segmentation_node, table_node=first.table_node).start().wait(60)
    assert again.kind == job.DONE, again.details
    assert again.segmentation_node.GetNodeReference(fake.mrml.PROBABILITY_VOLUME_ROLE) is None
    assert first.probability_node.GetScene() is fake.scene  # the earlier map itself is left to the user


def test_segments_named_liver_by_the_user_are_read_and_a_refused_segmentation_leaves_no_node(fake):
    """Segments named "Liver" / "Liver tumor" with Segment Editor IDs were accepted for measuring and comparing,
    then read as empty (liver 0.0 mL, no lesion). A new segmentation refused (a CT under a non-linear transform)
    left its display node in the scene."""
    import slicer
    expected = (_ct_array() > 0).astype(np.uint8) + (_ct_array() > 100)
    drawn = fake.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "drawn by hand")
    for segment_id, name, value in (("Segment_1", "Liver", 1), ("Segment_2", "Liver tumor", 2)):
        drawn.GetSegmentation().AddEmptySegment(segment_id, name, [1.0, 0.0, 0.0])
        slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            fake.mrml.oriented_image_from_array((expected == value).astype(np.uint8), fake.geometry), drawn,
            segment_id, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    np.testing.assert_array_equal(fake.mrml.segmentation_to_labels(drawn, fake.geometry, expected.shape), expected)

    from LiverTumorSegLib.errors import InputError
    warped = _volume_node(fake.scene, _ct_array(), fake.geometry, name="CT warped")
    warped.SetAndObserveTransformNodeID(fake.scene.AddNewNodeByClass("vtkMRMLGridTransformNode").GetID())
    before = _scene_counts(fake.scene)
    with pytest.raises(InputError, match="non-linear"):
        fake.mrml.labels_to_segmentation_node(fake.scene, expected, fake.geometry, reference_volume_node=warped)
    assert _scene_counts(fake.scene) == before


def test_a_wait_that_raises_kills_the_child_and_removes_its_files(fake):
    """Logic.process(waitForCompletion=True) with a progress callback that raised: the caller got the error while
    the child ran on and its temporary folder stayed (ChildJob promises its removal in every outcome)."""
    def progress(fraction, stage):
        if stage == "network":
            raise ValueError("the caller's progress bar broke")

    running = fake.job(mode="hang", progress=progress).start()
    with pytest.raises(ValueError, match="progress bar broke"):
        running.wait(timeout_s=60)
    assert not running._runner.is_running()
    assert list(fake.temp_root.iterdir()) == []
    assert running.poll().kind == job.CANCELLED


@posix_only
def test_a_job_folder_left_by_a_slicer_that_died_is_removed_when_the_next_job_starts(fake):
    """Slicer killed (or crashed) while a job ran left its temporary folder, with the copy of the CT (patient
    data), in the temporary folder for good. The folder names Slicer's process now; the next job removes those of
    processes that have ended, never one of a Slicer still running."""
    import signal
    import subprocess

    slicer_dies_during_a_job = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT / "LiverTumorSeg")!r})
        from LiverTumorSegModuleLib import childjob

        class Job(childjob.ChildJob):
            def _prepare(self):
                with open(self._path("ct.nii"), "wb") as handle:
                    handle.write(b"the patient's CT")
                return []

        class Runner:
            def start(self, program, args, env):
                pass

        Job(Runner(), sys.executable, {str(ROOT)!r}, temp_root=sys.argv[1]).start()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    slicer = subprocess.run([sys.executable, "-c", slicer_dies_during_a_job, str(fake.temp_root)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert slicer.returncode == -signal.SIGKILL, slicer.stderr
    left = list(fake.temp_root.iterdir())
    assert len(left) == 1 and (left[0] / "ct.nii").is_file()  # what the crash leaves
    other = os.getppid() if os.getppid() > 0 else os.getpid()  # (pid 0: pytest is a container's first process)
    running = fake.temp_root / f"LiverTumorSeg.{other}-q1w2e3r4.tmp"  # another Slicer, still running
    running.mkdir()
    (running / "ct.nii").write_bytes(b"in use")
    segmentation_job = fake.job().start()
    assert os.path.basename(segmentation_job.temp_dir).startswith(f"LiverTumorSeg.{os.getpid()}-")
    assert segmentation_job.wait(timeout_s=60).kind == job.DONE
    assert list(fake.temp_root.iterdir()) == [running] and (running / "ct.nii").is_file()


def test_a_job_folder_whose_process_id_a_later_process_holds_is_removed(tmp_path, monkeypatch):
    """Process ids are reused (after a reboot, or soon on a busy machine): the folder, with its copy of the CT, of
    a Slicer that died was kept for good when its id belonged to a running process again. Folders carry
    Slicer's id and start time: one with this process's id but another start time is left over; one with both,
    and one an earlier version named by id alone, are a running Slicer's."""
    from LiverTumorSegModuleLib import childjob
    from LiverTumorSegLib.processes import process_mark
    from process_helpers import mark_of_an_earlier_holder_of_this_process_id

    left_over = tmp_path / f"LiverTumorSeg.{mark_of_an_earlier_holder_of_this_process_id(monkeypatch)}-q1w2e3r4.tmp"
    running = tmp_path / f"LiverTumorSeg.{process_mark()}-a1s2d3f4.tmp"
    running_older_naming = tmp_path / f"LiverTumorSeg.{os.getpid()}-z1x2c3v4.tmp"
    for folder in (left_over, running, running_older_naming):
        folder.mkdir()
        (folder / "ct.nii").write_bytes(b"a CT")
    childjob.remove_stale_job_folders(str(tmp_path))
    assert sorted(tmp_path.iterdir()) == sorted([running, running_older_naming])


def test_a_running_slicers_job_folder_is_kept_when_its_start_time_reads_differently_here(tmp_path, monkeypatch):
    """Linux shifts /proc/PID/stat's start time by the reader's time-namespace offset: the job folder (a copy of
    the CT) of a Slicer running inside ``unshare --time`` was removed under it by a Slicer outside, which read
    another start time for its id. A folder changed after the id's holder started is kept."""
    from LiverTumorSegModuleLib import childjob
    from LiverTumorSegLib.processes import process_mark
    from process_helpers import read_in_another_time_namespace

    running = tmp_path / f"LiverTumorSeg.{process_mark()}-a1s2d3f4.tmp"
    running.mkdir()
    (running / "ct.nii").write_bytes(b"in use")
    read_in_another_time_namespace(monkeypatch)
    childjob.remove_stale_job_folders(str(tmp_path))
    assert list(tmp_path.iterdir()) == [running] and (running / "ct.nii").is_file()


def test_an_empty_surface_segmentation_as_the_output_gets_its_labels_as_labelmaps(fake):
    """An empty segmentation made for surfaces passed the output check (it has no segments to convert) and kept
    'Closed surface' as its source: the labels were stored as surfaces built from them, and a small tumor rebuilt
    from its surface had no voxel left. Its source is now the labelmap, and the segments are the labels exactly."""
    import slicer
    surfaces = fake.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty, for surfaces")
    closed = slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName()
    surfaces.GetSegmentation().SetSourceRepresentationName(closed)
    outcome = fake.job(segmentation_node=surfaces).start().wait(timeout_s=60)
    assert outcome.kind == job.DONE, outcome.details
    assert outcome.segmentation_node is surfaces
    assert surfaces.GetSegmentation().GetSourceRepresentationName() == \
        slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    labels = fake.mrml.segmentation_to_labels(surfaces, fake.geometry, _ct_array().shape)
    np.testing.assert_array_equal(labels, (_ct_array() > 0).astype(np.uint8) + (_ct_array() > 100))
    assert (labels == 2).sum() == 1  # the one-voxel tumor of the fake child


def test_an_output_segmentation_under_a_shearing_transform_is_refused_before_the_child_starts(fake):
    """The grid cannot be stored in a segmentation under a shearing (or warping) transform: that was found only
    after the whole run, when the result was written. The job now refuses it when it is made."""
    import vtk
    shear = fake.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shear")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 1, 0.4)
    shear.SetMatrixTransformToParent(matrix)
    output = fake.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "sheared output")
    output.SetAndObserveTransformNodeID(shear.GetID())
    before = _scene_counts(fake.scene)
    with pytest.raises(InputError, match="shearing transform.*Create new"):
        fake.job(segmentation_node=output)
    assert _scene_counts(fake.scene) == before and list(fake.temp_root.iterdir()) == []


def test_a_liver_segment_drawn_during_the_run_is_kept_and_the_result_goes_into_a_new_segmentation(fake):
    """The panel asks before replacing a "Liver" segment that is there when Segment is clicked; a reader's
    "Liver" drawn in the output segmentation while the child ran was deleted without that question. It is kept
    now, the result goes into a new segmentation, and the outcome says so."""
    output = fake.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "reader's work")
    output.GetSegmentation().AddEmptySegment("spleen", "Spleen")
    running = fake.job(segmentation_node=output).start()
    drawn = output.GetSegmentation().AddEmptySegment("", "Liver")
    outcome = running.wait(timeout_s=60)
    assert outcome.kind == job.DONE, outcome.details
    assert outcome.segmentation_node is not output
    assert output.GetSegmentation().GetSegment(drawn) is not None and output.GetSegmentation().GetNumberOfSegments() == 2
    assert "'reader's work' was given the segment(s) ['Liver']" in outcome.warnings[0]
    labels = fake.mrml.segmentation_to_labels(outcome.segmentation_node, fake.geometry, _ct_array().shape)
    np.testing.assert_array_equal(labels, (_ct_array() > 0).astype(np.uint8) + (_ct_array() > 100))
    # segments the user agreed to replace (there when the job was made) are replaced in place, as before
    again = fake.job(segmentation_node=output).start().wait(timeout_s=60)
    assert again.kind == job.DONE and again.segmentation_node is output
    assert not any("was given the segment" in w for w in again.warnings)


def test_segments_edited_or_renamed_during_the_run_are_kept_and_the_result_goes_into_a_new_segmentation(fake):
    """The panel asks before a run replaces the earlier Liver / Liver tumor; a reader who went on correcting that
    tumor in Segment Editor while the child ran (minutes on a CPU) lost the correction without a word. Segments
    edited or renamed during the run are kept as they are now, the result goes into a new segmentation and the
    outcome says so; segments left alone are replaced in place, and another segment drawn into their layer meanwhile
    is no edit of them."""
    import slicer
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    first = fake.job().start().wait(timeout_s=60)
    assert first.kind == job.DONE, first.details
    seg = first.segmentation_node
    shape = _ct_array().shape
    painted = np.zeros(shape, np.uint8)
    painted[0, 0, 0:3] = 1  # three voxels added to the tumor, as Segment Editor's Paint writes them
    running = fake.job(segmentation_node=seg, table_node=first.table_node).start()
    logic.SetBinaryLabelmapToSegment(fake.mrml.oriented_image_from_array(painted, fake.geometry), seg,
                                     "livertumorseg_tumor", logic.MODE_MERGE_MAX)
    outcome = running.wait(timeout_s=60)
    assert outcome.kind == job.DONE, outcome.details
    assert outcome.segmentation_node is not seg and outcome.table_node is not first.table_node
    assert outcome.warnings[0] == (f"The segment(s) ['Liver tumor'] of 'CT liver segmentation' were edited or renamed "
                                   f"while the CT was segmented; they are kept as edited, and the result went into "
                                   f"the new segmentation '{outcome.segmentation_node.GetName()}'.")
    expected = (_ct_array() > 0).astype(np.uint8) + (_ct_array() > 100)
    assert fake.mrml.segment_mask(seg, "livertumorseg_tumor", fake.geometry, shape).sum() == (expected == 2).sum() + 3
    np.testing.assert_array_equal(fake.mrml.segmentation_to_labels(outcome.segmentation_node, fake.geometry, shape),
                                  expected)
    # renamed during the run: the reader's now, kept as well
    running = fake.job(segmentation_node=seg).start()
    seg.GetSegmentation().GetSegment("livertumorseg_liver").SetName("Liver (reviewed)")
    renamed = running.wait(timeout_s=60)
    assert renamed.kind == job.DONE and renamed.segmentation_node is not seg
    assert "['Liver (reviewed)']" in renamed.warnings[0]
    assert seg.GetSegmentation().GetSegment("livertumorseg_liver").GetName() == "Liver (reviewed)"
    # the tumor segment deleted during the run: nothing of the reader's is lost, so the result goes in place
    restoring = fake.job(segmentation_node=outcome.segmentation_node).start()
    outcome.segmentation_node.GetSegmentation().RemoveSegment("livertumorseg_tumor")
    restored = restoring.wait(timeout_s=60)
    assert restored.kind == job.DONE and restored.segmentation_node is outcome.segmentation_node
    assert not any("edited or renamed" in w for w in restored.warnings)
    np.testing.assert_array_equal(fake.mrml.segmentation_to_labels(outcome.segmentation_node, fake.geometry, shape),
                                  expected)
    # left alone (another segment added to the node meanwhile): replaced in place, as agreed
    again = fake.job(segmentation_node=outcome.segmentation_node).start()
    other = outcome.segmentation_node.GetSegmentation().AddEmptySegment("", "Spleen")
    logic.SetBinaryLabelmapToSegment(fake.mrml.oriented_image_from_array(painted, fake.geometry),
                                     outcome.segmentation_node, other, logic.MODE_REPLACE)
    done = again.wait(timeout_s=60)
    assert done.kind == job.DONE and done.segmentation_node is outcome.segmentation_node
    assert not any("edited or renamed" in w for w in done.warnings)


def test_a_segments_colour_or_terminology_set_during_the_run_is_kept_and_the_result_goes_into_a_new_segmentation(fake):
    """A reader who typed the tumor as "Hepatocellular carcinoma" (Segment Editor's terminology) or recoloured it while
    the re-run went on had it reset to the module's "Neoplasm" and colour without a word, though voxel edits and
    renames made then are kept. Such a segment is now kept as it is too, and the result goes into a new
    segmentation."""
    first = fake.job().start().wait(timeout_s=60)
    assert first.kind == job.DONE, first.details
    seg = first.segmentation_node
    tumor = seg.GetSegmentation().GetSegment("livertumorseg_tumor")
    hcc = ("Segmentation category and type - DICOM master list~SCT^49755003^Morphologically Altered Structure~"
           "SCT^25370001^Hepatocellular carcinoma~^^~Anatomic codes - DICOM master list~SCT^10200004^Liver~^^")
    for edit in (lambda: tumor.SetTag(tumor.GetTerminologyEntryTagName(), hcc), lambda: tumor.SetColor(1.0, 0.0, 0.0)):
        running = fake.job(segmentation_node=seg, table_node=first.table_node).start()
        edit()
        outcome = running.wait(timeout_s=60)
        assert outcome.kind == job.DONE and outcome.segmentation_node is not seg
        assert outcome.warnings[0].startswith("The segment(s) ['Liver tumor'] of 'CT liver segmentation' were edited")
        assert fake.mrml.segment_terminology_tag(tumor) == hcc  # the reader's, kept
    assert tumor.GetColor() == (1.0, 0.0, 0.0)
    # left alone: replaced in place, as agreed before the run
    again = fake.job(segmentation_node=outcome.segmentation_node).start().wait(timeout_s=60)
    assert again.kind == job.DONE and again.segmentation_node is outcome.segmentation_node


def test_the_child_stops_when_slicer_has_ended():
    """A crash of Slicer left its child segmenting for minutes: the child watches this process (parent_watch)."""
    from LiverTumorSegLib.parent_watch import PARENT_VARIABLE

    env = childprocess.child_environment("/lib", {PARENT_VARIABLE: "1", "HOME": "/h"})
    assert env[PARENT_VARIABLE] == str(os.getpid())


def test_ct_voxels_edited_during_the_run_get_a_warning_and_an_untouched_ct_none(fake):
    """Known limit until 25 Nov 2026: voxels of the CT changed in place while it was segmented (a Segment Editor
    mask, a script's arrayFromVolume edit) went unnoticed, and the outline of the old voxels was loaded as the
    CT's. The grid is the same, so the result still lines up: it is loaded, with a warning that says so."""
    import slicer
    ct = _volume_node(fake.scene, _ct_array(), fake.geometry, name="CT to edit")
    untouched = fake.job(node=ct).start().wait(timeout_s=60)
    assert untouched.kind == job.DONE, untouched.details
    assert not any("were changed while it was segmented" in w for w in untouched.warnings)
    running = fake.job(node=ct).start()
    voxels = slicer.util.arrayFromVolume(ct)
    voxels[0] = -1000  # masked, in place
    slicer.util.arrayFromVolumeModified(ct)
    outcome = running.wait(timeout_s=60)
    assert outcome.kind == job.DONE, outcome.details
    assert outcome.warnings[0].startswith("The voxels of the CT 'CT to edit' were changed while it was segmented")


def _add_piece(scene_mrml, seg, segment_id, name, geometry, shape_zyx):
    import slicer
    mask = np.zeros(shape_zyx, np.uint8)
    mask[0, 0:2, 0:2] = 1
    seg.GetSegmentation().AddEmptySegment(segment_id, name, [0, 0, 1])
    slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        scene_mrml.oriented_image_from_array(mask, geometry), seg, segment_id,
        slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)


def test_a_rerun_removes_the_pieces_split_off_the_earlier_result_but_not_one_renamed_during_the_run(fake):
    """The panel names the pieces Segment Editor split off the earlier "Liver tumor" ("Liver tumor_2"...) in its
    confirmation, and the run replaces them with the result; kept, "Update lesion table" counted them as tumor beside
    the new result. A piece the user renamed while the child ran is no longer such a piece and is kept."""
    first = fake.job().start().wait(timeout_s=60)
    assert first.kind == job.DONE, first.details
    seg = first.segmentation_node
    shape = _ct_array().shape
    for segment_id, name in [("p2", "Liver tumor_2"), ("p3", "Liver tumor_3"), ("mine", "Metastasis")]:
        _add_piece(fake.mrml, seg, segment_id, name, fake.geometry, shape)
    running = fake.job(segmentation_node=seg, table_node=first.table_node).start()
    seg.GetSegmentation().GetSegment("p3").SetName("Lesion I keep")  # renamed during the run
    outcome = running.wait(timeout_s=60)
    assert outcome.kind == job.DONE, outcome.details
    assert outcome.segmentation_node is seg
    segmentation = seg.GetSegmentation()
    kept = sorted(segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments()))
    assert kept == ["livertumorseg_liver", "livertumorseg_tumor", "mine", "p3"]
    # a job told not to replace (the library's replace_existing=False) removes nothing: refused before it runs
    from LiverTumorSegLib.errors import OutputExistsError
    with pytest.raises(OutputExistsError, match="already has the segments"):
        fake.job(segmentation_node=seg, replace_existing=False)


def test_a_job_told_not_to_replace_refuses_pieces_split_off_an_earlier_result_as_it_refuses_ours(fake):
    """With the Liver / Liver tumor segments deleted and only a piece split off them left ("Liver tumor_2"), a job
    with replace_existing=False wrote the new result beside the piece without a word, so that "Update lesion table"
    counted the old piece with the new tumor; now it is refused as our own segments are, and nothing is changed."""
    from LiverTumorSegLib import mrml
    first = fake.job().start().wait(timeout_s=60)
    assert first.kind == job.DONE, first.details
    seg = first.segmentation_node
    _add_piece(fake.mrml, seg, "p2", "Liver tumor_2", fake.geometry, _ct_array().shape)
    for spec in mrml.SEGMENTS:
        seg.GetSegmentation().RemoveSegment(spec.segment_id)
    from LiverTumorSegLib.errors import OutputExistsError
    with pytest.raises(OutputExistsError, match=r"already has the segments \['p2'\]; allow replacing them"):
        fake.job(segmentation_node=seg, replace_existing=False)  # before the child runs, not after its work
    segmentation = seg.GetSegmentation()
    assert [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())] == ["p2"]


def test_the_replace_question_names_the_split_off_pieces():
    plain = panel_text.replace_question("CT liver segmentation")
    assert plain.startswith("'CT liver segmentation' already has Liver / Liver tumor segments. Replace them?")
    assert "its other segments are kept" in plain and "piece" not in plain
    pieces = panel_text.replace_question("S", ["Liver tumor_2", "Liver tumor_3"])
    assert "and 2 piece(s) split off them ('Liver tumor_2', 'Liver tumor_3'), which are removed with them" in pieces
    many = panel_text.replace_question("S", [f"Liver tumor_{i}" for i in range(2, 14)])
    assert "12 piece(s)" in many and "'Liver tumor_9' ..." in many and "Liver tumor_10" not in many


def test_the_replace_question_with_only_pieces_left_does_not_say_the_segments_are_there():
    """With the Liver / Liver tumor segments deleted and only "Liver tumor_2" left, the question said "already has
    Liver / Liver tumor segments and 1 piece(s) split off them"."""
    alone = panel_text.replace_question("S", ["Liver tumor_2"], has_segments=False)
    assert alone == ("'S' has 1 piece(s) split off an earlier result ('Liver tumor_2'), which are removed and "
                     "replaced with the new result so that it is not counted with pieces of the old one. Replace "
                     "them? This cannot be undone; its other segments are kept. (To keep them, choose 'Create new "
                     "segmentation' as the output.)")
    assert "already has" not in alone
    assert panel_text.replace_question("S", has_segments=True) == panel_text.replace_question("S")


class _SpoilingRunner(FakeChildRunner):
    """The fake child (success); once it has ended, ``spoil(labels path, report path)`` damages what it wrote, as a
    full disk, a virus scanner or a child of another library version can leave it."""

    def __init__(self, script, spoil):
        super().__init__(script, "ok")
        self.spoil, self.spoiled = spoil, False

    def is_running(self):
        running = super().is_running()
        if not running and not self.spoiled:
            self.spoiled = True
            self.spoil(self.args[self.args.index("-o") + 1], self.args[self.args.index("--report") + 1])
        return running


def _truncate(path):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:len(data) // 2])


def _edit_report(change):
    def spoil(labels_path, report_path):
        report = json.loads(Path(report_path).read_text())
        Path(report_path).write_text(json.dumps(change(report)))
    return spoil


def _move_labels(labels_path, report_path):
    """The label map written again 1 mm further along x (voxels unchanged): on another grid than the CT's."""
    import SimpleITK as sitk
    image = sitk.ReadImage(labels_path)
    image.SetOrigin(tuple(np.add(image.GetOrigin(), (1.0, 0.0, 0.0))))
    sitk.WriteImage(image, labels_path)


@pytest.mark.parametrize("spoil, named", [
    (lambda labels, report: _truncate(labels), "labels.nii.gz"),
    (lambda labels, report: os.remove(labels), "labels.nii.gz: no such file"),
    (lambda labels, report: os.remove(report), "report.json: no such file"),
    (_move_labels, "labels.nii.gz: the label map is on another grid than the CT's: (z, y, x) shape (4, 5, 6), "
                   "spacing (0.8, 0.9, 2.5) mm, origin (11, -5, 3) mm instead of (z, y, x) shape (4, 5, 6), "
                   "spacing (0.8, 0.9, 2.5) mm, origin (10, -5, 3) mm"),
    (lambda labels, report: _truncate(report), "report.json"),
    (_edit_report(lambda r: [r]), "report.json: a JSON list, not an object"),
    (_edit_report(lambda r: dict(r, lesions=[{"id": 1, "volume_ml": "12 mL"}])), "report.json"),
    (_edit_report(lambda r: {k: v for k, v in r.items() if k != "liver_volume_ml"}), "liver_volume_ml"),
], ids=["truncated labels", "no labels", "no report", "labels off the CT's grid", "truncated report",
        "report a list", "lesion volume not a number", "no liver volume"])
def test_a_result_that_cannot_be_read_is_refused_saying_so_and_the_users_nodes_stay_as_they_were(fake, spoil, named):
    """A report that was JSON but not a lesion report (a lesion volume as text) failed with "could not convert string
    to float" after the user's Liver / Liver tumor segments had already been replaced; one without its liver volume was
    "done" and the panel read "No result yet."; a truncated report failed with "Expecting value: line 1 column 21"."""
    labels = np.ones(_ct_array().shape, np.uint8)
    labels[0] = 2
    mine = fake.mrml.labels_to_segmentation_node(fake.scene, labels, fake.geometry, reference_volume_node=fake.node)
    table = fake.mrml.create_lesion_table_node(fake.scene, {"lesions": [{"id": 7, "volume_ml": 3.0}]})
    fake.mrml.link_lesion_table(table, mine)
    before = (_scene_counts(fake.scene), mine.GetMTime(), table.GetMTime())
    running = fake.job(segmentation_node=mine, table_node=table)
    running._runner = _SpoilingRunner(running._runner.script, spoil)
    outcome = running.start().wait(timeout_s=60)
    assert outcome.kind == job.FAILED
    assert str(outcome.error).startswith("The segmentation process ended without an error, but its result could not "
                                         "be used") and named in str(outcome.error)
    assert "The scene was not changed" in str(outcome.error)
    assert (_scene_counts(fake.scene), mine.GetMTime(), table.GetMTime()) == before
    np.testing.assert_array_equal(fake.mrml.segmentation_to_labels(mine, fake.geometry, labels.shape), labels)
    assert [row["Lesion"] for row in fake.mrml.lesion_table_rows(table)] == [7]
    assert list(fake.temp_root.iterdir()) == []


@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.uint64, np.int16, np.float32])
def test_a_ct_of_any_integer_or_float_voxel_type_is_handed_over_with_its_values(fake, tmp_path, dtype):
    """Slicer's volume writer knows no 64-bit or signed 8-bit integers: a CT made by a script with numpy's default
    int64 failed with 'check free disk space'. Such voxels are written in the narrowest type that holds them, with
    their values and the node's world grid; the node's own image data is not changed."""
    import slicer

    from LiverTumorSegLib.io import read_volume

    values = np.clip(_ct_array(), 0 if dtype == np.uint64 else -128, 127).astype(dtype)
    node = _volume_node(fake.scene, values, fake.geometry, f"CT {np.dtype(dtype).name}")
    scalar_type = node.GetImageData().GetScalarType()
    path = job.write_temporary_ct(node, str(tmp_path / job.HANDOVER_CT_NAME))
    written = read_volume(path)
    np.testing.assert_array_equal(written.array, values.astype(np.float64))
    assert written.geometry.almost_equal(fake.geometry)
    assert node.GetImageData().GetScalarType() == scalar_type
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), values)


def test_no_non_hu_refusal_reaches_the_panel_naming_allow_non_hu():
    """The panel has no --allow-non-hu. The refusal of a volume of air alone ends '; if its values are not HU, pass
    --allow-non-hu to proceed.', which the panel showed as it was: only ', or pass --allow-non-hu to proceed' was
    taken out. Each of check_ct's non-HU refusals, worded as the child words them, reaches the panel without it."""
    from LiverTumorSegLib.errors import cli_wording
    from LiverTumorSegLib.validation import check_ct
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    rng = np.random.default_rng(0)
    air = rng.integers(-1000, -990, (8, 32, 32)).astype(np.int16)
    body = air.copy()
    body[:, 8:24, 8:24] = rng.integers(-100, 1200, (8, 16, 16))
    arrays = {"air alone": air, "0..255": rng.integers(0, 256, (8, 32, 32)).astype(np.int16),
              "shifted +1024": (body + 1024).astype(np.int16)}
    for what, array in arrays.items():
        volume = CTVolume(array=array, geometry=ImageGeometry(spacing=(1.0, 1.0, 2.0)), source="/t/ct.nii")
        with cli_wording(), pytest.raises(InputError) as refused:
            check_ct(volume)
        assert "--allow-non-hu" in str(refused.value), what  # the child's words
        text = panel_text.error_text(str(refused.value), "/t/ct.nii", "CT")
        assert "--allow-non-hu" not in text and "allow" not in text and text.endswith("."), (what, text)


def test_a_native_crash_on_windows_is_named_a_crash_too():
    """Python's fault handler words a crash on Windows 'Windows fatal exception: access violation', which was not
    read, so a Windows user was told the system most likely ran out of memory (the portability audit)."""
    from LiverTumorSegModuleLib.childjob import ended_text, fatal_python_error

    stderr = ("Windows fatal exception: access violation\n\nCurrent thread 0x00001a2c (most recent call first):\n"
              "[C:/Slicer/bin/python-real.exe] exit abnormally - Report the problem.\n")
    assert fatal_python_error(stderr) == "access violation"
    assert ended_text(1, "X", "[C:/Slicer/bin/python-real.exe] exit abnormally - Report the problem.",
                      stderr).startswith("X crashed (access violation; exit code 1): a fault in compiled code")
    assert ended_text(-1, "X", "", stderr).startswith("X crashed (access violation; exit code -1)")


def test_a_segmentation_on_another_series_grid_gets_the_result_in_a_new_segmentation(fake):
    """The chosen segmentation held the user's segments on another series' grid: the result was written into it on
    the CT's grid while the node kept the other grid as its reference, and saving the scene resampled the result
    onto it (15 lesions reloaded as 6; the Slicer glue audit). The result goes into a new segmentation, said in the
    outcome; the user's node keeps its segments as they were."""
    import slicer
    from LiverTumorSegLib.volume import ImageGeometry

    other = ImageGeometry(spacing=(0.7, 0.7, 5.0), origin=(-3.0, -3.0, -2.0))
    user = fake.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Other series")
    user.CreateDefaultDisplayNodes()
    fake.mrml._set_reference_geometry(user, other, (10, 40, 40))
    user.GetSegmentation().AddEmptySegment("vessel", "Vessel", [1, 0, 0])
    slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        fake.mrml.oriented_image_from_array(np.ones((2, 3, 3), np.uint8), other), user, "vessel",
        slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    outcome = fake.job(segmentation_node=user).start().wait(timeout_s=60)
    assert outcome.kind == job.DONE, outcome.details
    assert outcome.segmentation_node is not user
    assert list(user.GetSegmentation().GetSegmentIDs()) == ["vessel"]
    assert outcome.warnings[0].startswith("'Other series' holds segments on a grid that does not hold this CT's "
                                          "voxels") and outcome.segmentation_node.GetName() in outcome.warnings[0]
    expected = (_ct_array() > 0).astype(np.uint8) + (_ct_array() > 100)
    np.testing.assert_array_equal(
        fake.mrml.segmentation_to_labels(outcome.segmentation_node, fake.geometry, expected.shape), expected)
    same_grid = fake.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "This CT's grid")   # no redirect there
    fake.mrml._set_reference_geometry(same_grid, fake.geometry, expected.shape)
    same_grid.GetSegmentation().AddEmptySegment("vessel", "Vessel", [1, 0, 0])
    assert fake.job(segmentation_node=same_grid).start().wait(timeout_s=60).segmentation_node is same_grid
