"""`livertumorseg segment --progress json`: the machine-readable protocol the Slicer module's child process
reads. stdout carries only JSON lines: progress (non-decreasing, last exactly 1.0), then one final object
(``done`` with the outputs, or ``error``); human text goes to stderr; SIGTERM cancels with nothing written."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from LiverTumorSegLib import resources  # noqa: E402
from LiverTumorSegLib.cli import main  # noqa: E402
from LiverTumorSegLib.commands.segment import JsonLines  # noqa: E402
from LiverTumorSegLib.io import read_label_map, read_volume, write_volume  # noqa: E402
from LiverTumorSegLib.phantom import make_phantom  # noqa: E402

from inference_helpers import corner_phantom, tiny_unet_package  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
STAGES = {"reading", "loading model", "preprocessing", "network", "post-processing", "lesion report", "writing",
          "done"}


def child_env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return env


def parse_protocol(stdout: str):
    """(progress objects, final object); fails if any stdout line is not a JSON object."""
    objects = [json.loads(line) for line in stdout.splitlines()]
    assert objects and all(isinstance(o, dict) for o in objects)
    return objects[:-1], objects[-1]


def check_progress(lines):
    assert lines and all(set(o) == {"progress", "stage"} for o in lines)
    fractions = [o["progress"] for o in lines]
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert all(b >= a for a, b in zip(fractions, fractions[1:])), fractions
    assert fractions[-1] == 1.0 and fractions[:-1] == [f for f in fractions[:-1] if f < 1.0]
    assert {o["stage"] for o in lines} <= STAGES
    assert [o["stage"] for o in lines if o["stage"] == "done"] == ["done"]  # "done" only once, at 1.0


@pytest.fixture(scope="module")
def tiny_package(tmp_path_factory):
    return tiny_unet_package(tmp_path_factory.mktemp("pkg")).path


def test_sample_run_prints_only_json_lines_ending_at_one(tmp_path):
    """The contract on the bundled sample CT and model, as the Slicer module runs it (a child process)."""
    from bundled_model_helpers import bundled_default_model_or_skip

    bundled_default_model_or_skip()  # a damaged bundled package fails, not skips
    out, report = tmp_path / "seg.nii.gz", tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "LiverTumorSegLib", "segment", "--sample", "-o", str(out),
                           "--report", str(report), "--progress", "json"],
                          capture_output=True, text=True, env=child_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr
    progress, final = parse_protocol(proc.stdout)
    check_progress(progress)
    assert "network" in {o["stage"] for o in progress}
    assert final["done"] is True and set(final) == {"done", "outputs", "seconds", "device"}
    assert final["outputs"] == {"labels": str(out), "report": str(report), "probabilities": None, "preview": None}
    assert final["seconds"] > 0 and final["device"].startswith(("cpu", "cuda"))
    labels = read_label_map(out, reference=read_volume(resources.sample_ct_path())).array
    assert labels.max() >= 1 and json.loads(report.read_text())["liver_volume_ml"] > 0
    assert "wrote" in proc.stderr and "liver Dice" in proc.stderr  # human text on stderr only


def test_outputs_listed_and_human_text_on_stderr(tmp_path, tiny_package, capsys):
    ct = write_volume(tmp_path / "ct.nii.gz", corner_phantom().ct)
    paths = {k: tmp_path / n for k, n in [("labels", "seg.nrrd"), ("report", "r.csv"), ("preview", "p.png"),
                                           ("probabilities", "prob.nii.gz")]}
    code = main(["segment", str(ct), "-o", str(paths["labels"]), "--model", str(tiny_package), "--report",
                 str(paths["report"]), "--preview", str(paths["preview"]), "--probabilities",
                 str(paths["probabilities"]), "--progress", "json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    progress, final = parse_protocol(captured.out)
    check_progress(progress)
    assert final["outputs"] == {k: str(v) for k, v in paths.items()}
    assert all(p.exists() for p in paths.values())
    assert "wrote" in captured.err and "wrote" not in captured.out


def test_user_error_is_a_json_line_and_exit_2(tmp_path, tiny_package, capsys):
    ct = write_volume(tmp_path / "ct.nii.gz", corner_phantom().ct)
    out = tmp_path / "seg.nii.gz"
    out.write_bytes(b"previous")
    code = main(["segment", str(ct), "-o", str(out), "--model", str(tiny_package), "--progress", "json"])
    captured = capsys.readouterr()
    assert code == 2
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert set(lines[-1]) == {"error"} and "already exists" in lines[-1]["error"]
    assert "--overwrite" in lines[-1]["error"]  # CLI wording from the CLI
    assert captured.err.startswith("error:") and out.read_bytes() == b"previous"


def test_usage_error_answers_in_json_too(capsys):
    with pytest.raises(SystemExit) as info:
        main(["segment", "--progress", "json", "--no-such-option"])
    assert info.value.code == 2
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["error"].startswith("invalid")


def test_no_progress_alias_still_works(tmp_path, tiny_package, capsys):
    ct = write_volume(tmp_path / "ct.nii.gz", corner_phantom().ct)
    assert main(["segment", str(ct), "-o", str(tmp_path / "a.nii.gz"), "--model", str(tiny_package),
                 "--no-progress"]) == 0
    assert main(["segment", str(ct), "-o", str(tmp_path / "b.nii.gz"), "--model", str(tiny_package),
                 "--progress", "none"]) == 0
    captured = capsys.readouterr()
    assert "%|" not in captured.err and "wrote" in captured.out  # no bar; summary on stdout as before


def test_json_lines_skips_tiny_steps_and_finishes_at_one():
    import io

    stream = io.StringIO()
    lines = JsonLines(stream)
    for f in np.linspace(0.0, 0.5, 1001):
        lines(f, "network")
    lines(0.3, "post-processing")  # a late, smaller fraction is lifted, never reported lower
    lines.finish()
    objects = [json.loads(x) for x in stream.getvalue().splitlines()]
    fractions = [o["progress"] for o in objects]
    assert len(objects) < 120 and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert objects[-2] == {"progress": 0.5, "stage": "post-processing"}


def test_sigterm_cancels_with_json_error_and_writes_nothing(tmp_path, tiny_package):
    # 240 slices at batch size 1: the network stage takes long enough for the signal to land in it
    phantom = make_phantom((240, 40, 44), (2.0, 2.5, 1.0), lesions=[], noise_hu=0.0)
    ct = write_volume(tmp_path / "long_ct.nii.gz", phantom.ct)
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = subprocess.Popen([sys.executable, "-m", "LiverTumorSegLib", "segment", str(ct), "-o",
                             str(tmp_path / "seg.nii.gz"), "--model", str(tiny_package), "--batch-size", "1",
                             "--report", str(tmp_path / "r.json"), "--progress", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    lines = []
    try:
        for line in proc.stdout:
            lines.append(json.loads(line))
            if lines[-1].get("stage") == "network":
                proc.send_signal(signal.SIGTERM)
                break
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines += [json.loads(x) for x in rest.splitlines()]
    assert lines[-1] == {"error": "cancelled"}, err
    assert proc.returncode == 130
    fractions = [o["progress"] for o in lines[:-1]]
    assert fractions == sorted(fractions) and fractions[-1] < 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temporary file


def test_a_cancel_while_the_model_loads_does_not_wait_for_the_load(tmp_path, tiny_package, monkeypatch):
    """The protocol's SIGINT/SIGTERM sets the cancel token; one set while the model still loaded (the imports, the
    package, CUDA: tens of seconds from a cold disk, or for ever when the load hangs) was acted on only once the
    load had ended. The wait for the load stops at the token (the command then ends without waiting for the load
    thread: cli.console_main)."""
    import threading

    from LiverTumorSegLib.errors import CancelledError
    from LiverTumorSegLib.inference.options import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import Segmenter
    from LiverTumorSegLib.progress import CancellationToken

    ct = write_volume(tmp_path / "ct.nii.gz", corner_phantom().ct)
    released = threading.Event()

    def load_until_released(self, progress=None):
        self._preprocessing_known.set()  # no config known early: nothing is prepared while it loads
        released.wait(600)  # longer than the test waits below: a wait for the load is seen, not outlasted
        return self

    monkeypatch.setattr(Segmenter, "load", load_until_released)
    token = CancellationToken()
    ended = []  # (the exception, whether the load had been released by then)

    def cancel_while_loading(fraction, stage):
        if stage == "loading model":
            token.cancel()

    def run():
        try:
            Segmenter(SegmentationOptions(model=str(tiny_package))).segment_file(
                ct, tmp_path / "seg.nii.gz", progress=cancel_while_loading, cancel=token)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            ended.append((exc, released.is_set()))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(120)  # only a run that waits for the load reaches it (15 s could run out on a slow, busy machine)
    released.set()
    thread.join(30)
    assert ended and isinstance(ended[0][0], CancelledError) and not ended[0][1], ended
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT]
                         + [getattr(signal, "SIGHUP")] * hasattr(signal, "SIGHUP"))
def test_a_signal_after_the_outputs_are_written_ends_with_done(tmp_path, tiny_package, capsys, monkeypatch, signum):
    """A signal between writing the files and the 'done' line gave {"error": "cancelled"}, 'no output was
    written' and exit 130, with the files written (and, with --overwrite, older results replaced). Also SIGHUP
    (a closed terminal or ssh session), which the command line raises as an exception where SIGINT and SIGTERM
    only set the cancel token."""
    ct = write_volume(tmp_path / "ct.nii.gz", corner_phantom().ct)
    real_finish = JsonLines.finish

    def finish_with_a_signal(self):
        os.kill(os.getpid(), signum)  # delivered here, in the main thread, before finish goes on
        return real_finish(self)

    monkeypatch.setattr(JsonLines, "finish", finish_with_a_signal)
    code = main(["segment", str(ct), "-o", str(tmp_path / "seg.nii.gz"), "--model", str(tiny_package),
                 "--progress", "json"])
    captured = capsys.readouterr()
    _, final = parse_protocol(captured.out)
    assert code == 0 and final["done"] is True, captured.err
    assert "no output was written" not in captured.err and (tmp_path / "seg.nii.gz").exists()


def test_a_file_system_error_the_user_can_fix_is_not_called_internal_on_the_json_line(tmp_path, tiny_package,
                                                                                        capsys):
    """A name too long for the disk: exit 2 and a user's 'error:' on stderr, but the JSON line, which the Slicer
    panel shows, said 'internal error: OSError ...'."""
    ct = write_volume(tmp_path / "ct.nii.gz", corner_phantom().ct)
    code = main(["segment", str(ct), "-o", str(tmp_path / ("a" * 300 + ".nii.gz")), "--model", str(tiny_package),
                 "--device", "cpu", "--progress", "json"])
    captured = capsys.readouterr()
    final = json.loads(captured.out.strip().splitlines()[-1])
    assert code == 2 and not final["error"].startswith("internal error")
    assert "check the path" in final["error"]


def test_series_given_for_a_single_volume_file_is_refused(tmp_path, tiny_package, capsys):
    """--series picks a series in a DICOM folder; for a NIfTI file it was dropped without a word."""
    ct = write_volume(tmp_path / "ct.nii.gz", corner_phantom().ct)
    code = main(["segment", str(ct), "-o", str(tmp_path / "seg.nii.gz"), "--model", str(tiny_package),
                 "--series", "7", "--no-progress"])
    assert code == 2 and "--series picks a series in a DICOM folder" in capsys.readouterr().err
    assert not (tmp_path / "seg.nii.gz").exists()


def test_a_signal_ignored_when_the_run_started_stays_ignored():
    """A background job of a script (`segment ... --progress json &`) starts with SIGINT ignored: --progress bar
    and none keep it so, but json's cancel handler took it over, so a Ctrl-C meant for the script cancelled the
    run ({"error": "cancelled"}, exit 130, nothing written)."""
    from LiverTumorSegLib.commands.segment import _SignalsCancel
    from LiverTumorSegLib.progress import CancellationToken

    token = CancellationToken()
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with _SignalsCancel(token):
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            assert not token.is_cancelled
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with _SignalsCancel(token):  # a SIGINT that was not ignored still cancels
            os.kill(os.getpid(), signal.SIGINT)
            assert token.is_cancelled
    finally:
        signal.signal(signal.SIGINT, before)


class _ReaderGoneAfter:
    """A text stream whose reader goes away after ``lines`` writes (a pipe into `head`): BrokenPipeError after."""

    def __init__(self, lines):
        self.lines, self.written = lines, []

    def write(self, text):
        if len(self.written) >= self.lines:
            raise BrokenPipeError(32, "Broken pipe")
        self.written.append(text)
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False


@pytest.mark.parametrize("mode", ["json", "bar"])
def test_a_progress_reader_that_goes_away_does_not_stop_the_run(tmp_path, tiny_package, monkeypatch, mode):
    """`segment ... --progress json | head -1` (or the bar's `2>&1 | head`): the progress write's broken pipe
    stopped the run before any output was written, and the command line, taking a broken pipe for the reader's
    choice, exited 0. The progress is dropped now and the run ends with its outputs written."""
    import LiverTumorSegLib.commands.segment as segment_command

    ct = write_volume(tmp_path / "ct.nii.gz", corner_phantom().ct)
    out = tmp_path / "seg.nii.gz"
    reader = _ReaderGoneAfter(1)
    monkeypatch.setattr(sys, "stdout" if mode == "json" else "stderr", reader)
    monkeypatch.setattr(segment_command, "BAR_DELAY_S", 0)  # the bar writes from its first step
    code = main(["segment", str(ct), "-o", str(out), "--model", str(tiny_package), "--progress", mode])
    assert code == 0 and out.exists()
    assert len(reader.written) == 1


@pytest.mark.parametrize("mode, closed", [("json", "stdout"), ("bar", "stderr")])
def test_a_stream_closed_at_the_start_does_not_stop_the_run(tmp_path, tiny_package, monkeypatch, mode, closed):
    """`segment ... 2>&-` (or `--progress json >&-`; Python then has sys.stderr / sys.stdout None): the first
    progress write failed with "internal error: AttributeError: 'NoneType' object has no attribute 'write'", exit 1,
    nothing written."""
    import LiverTumorSegLib.commands.segment as segment_command

    ct = write_volume(tmp_path / "ct.nii.gz", corner_phantom().ct)
    out = tmp_path / "seg.nii.gz"
    monkeypatch.setattr(sys, closed, None)
    monkeypatch.setattr(segment_command, "BAR_DELAY_S", 0)  # the bar writes from its first step
    code = main(["segment", str(ct), "-o", str(out), "--model", str(tiny_package), "--progress", mode])
    assert code == 0 and out.exists()


def test_a_signal_while_the_ct_is_read_cancels_at_once(tmp_path, tiny_package, capsys, monkeypatch):
    """The protocol's first signal only set the cancel token, which nothing checked until the read had ended: a
    600-slice .nii.gz said {"error": "cancelled"} 7.5 s after SIGTERM (and a CT found not in HU meanwhile ended
    with that error, exit 2). Nothing is written while the CT is read, so the signal now stops the run at once."""
    import time

    import LiverTumorSegLib.io as io

    ct = write_volume(tmp_path / "ct.nii.gz", corner_phantom().ct)
    real_read = io.read_volume
    read_to_the_end = []

    def slow_read(path, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the CT is read
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # a large CT or a slow disk
            time.sleep(0.01)
        read_to_the_end.append(True)
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(io, "read_volume", slow_read)
    code = main(["segment", str(ct), "-o", str(tmp_path / "seg.nii.gz"), "--model", str(tiny_package),
                 "--progress", "json"])
    captured = capsys.readouterr()
    _, final = parse_protocol(captured.out)
    assert code == 130 and final == {"error": "cancelled"}, captured.err
    assert not read_to_the_end  # the wait in slow_read (10 s) was cut short
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz"]


def test_a_json_error_line_is_the_first_line_of_a_longer_message_with_the_whole_text_beside_it():
    """The Slicer module reads ``error`` (one line); a message of several lines keeps its whole text in ``details``,
    and an exception without a message is named by its type."""
    import io

    from LiverTumorSegLib.errors import InputError

    stream = io.StringIO()
    lines = JsonLines(stream)
    lines.error(InputError("Two CT series in the folder.\n  1.2.3 (40 slices)\n  1.2.4 (12 slices)"))
    lines.error(InputError("One line."))
    lines.error(RuntimeError())
    assert [json.loads(x) for x in stream.getvalue().splitlines()] == [
        {"error": "Two CT series in the folder.",
         "details": "Two CT series in the folder.\n  1.2.3 (40 slices)\n  1.2.4 (12 slices)"},
        {"error": "One line."}, {"error": "RuntimeError"}]


def test_the_summary_lists_ten_lesions_and_counts_the_rest():
    """A CT with 12 lesions: the printed summary lists the first 10 and says '... 2 more in the report'."""
    import types

    from LiverTumorSegLib.commands.segment import format_summary
    from LiverTumorSegLib.inference.lesion_report import LISTED_LESIONS_MAX, lesion_report
    from LiverTumorSegLib.volume import ImageGeometry

    labels = np.zeros((6, 40, 64), np.uint8)
    labels[:, 2:38, 2:62] = 1
    for i in range(12):  # 12 separate 3 x 4 x 4-voxel lesions
        row, column = divmod(i, 6)
        labels[1:4, 5 + 16 * row:9 + 16 * row, 5 + 10 * column:9 + 10 * column] = 2
    report = lesion_report(labels, ImageGeometry(spacing=(1.0, 1.0, 2.0)))
    assert report["lesion_count"] == 12
    result = types.SimpleNamespace(output_path="seg.nii.gz", seconds=1.0, device="cpu", report=report,
                                   report_path="seg.json", preview_path=None, probability_path=None)
    text = format_summary(result).splitlines()
    assert LISTED_LESIONS_MAX == 10 and len([line for line in text if line.startswith("  ") and "mL" in line]) == 10
    assert "  ... 2 more in the report" in text and text[-1] == "report: seg.json"
    assert not [line for line in text if "edge" in line]  # away from the scan's edges


def test_json_progress_runs_from_a_thread_that_cannot_take_the_signals(tmp_path, tiny_package, capsys):
    """``main([... '--progress', 'json'])`` called from a worker thread (a GUI or notebook running the command):
    only the main thread may install signal handlers, so cancel-by-signal is left out and the run ends with its
    'done' line; the process's own handlers stay as they were."""
    import signal
    import threading

    ct = write_volume(tmp_path / "ct.nii.gz", corner_phantom().ct)
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    codes = []
    worker = threading.Thread(target=lambda: codes.append(main(
        ["segment", str(ct), "-o", str(tmp_path / "seg.nii.gz"), "--model", str(tiny_package), "--device", "cpu",
         "--progress", "json"])))
    worker.start()
    worker.join(60)
    assert codes == [0]
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["done"] is True and last["outputs"]["labels"] == str(tmp_path / "seg.nii.gz")
    assert {signum: signal.getsignal(signum) for signum in handlers} == handlers


def test_json_lines_say_1_0_once_whatever_stage_reports_it_again():
    """After a stage reached 1.0, a later stage reporting 1.0 (writing, then finish's 'done') writes no second 1.0
    line: the protocol's last progress line is 1.0, once."""
    import io

    stream = io.StringIO()
    lines = JsonLines(stream)
    lines(0.5, "network")
    lines(1.0, "post-processing")
    lines(1.0, "writing")
    lines.finish()
    assert [json.loads(x) for x in stream.getvalue().splitlines()] == [
        {"progress": 0.5, "stage": "network"}, {"progress": 1.0, "stage": "post-processing"}]
