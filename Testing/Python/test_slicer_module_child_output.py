"""The Slicer module's child-process plumbing, from a panel audit (1 Dec 2026): a stdout line nested thousands deep
crashed the run's poll (RecursionError), a chatty child's stray stdout was kept whole, and the Qt runner decoded each
stderr read on its own (a character split between reads came out garbled)."""
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "LiverTumorSeg"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from LiverTumorSegModuleLib import childprocess, job  # noqa: E402
from test_slicer_module_logic import module  # noqa: E402,F401,F811


def test_a_line_nested_thousands_deep_or_over_a_megabyte_is_other_output():
    for line in ("[" * 200000 + "]" * 200000, '{"progress": 0.5, "stage": "' + "x" * (2 << 20) + '"}'):
        message = childprocess.parse_line(line)  # RecursionError escaped; the second was parsed whole
        assert message.kind == childprocess.OTHER and len(message.text) <= childprocess.MAX_MESSAGE_CHARS


CHATTY = textwrap.dedent('''
    import json, sys
    print(json.dumps({"progress": 0.0, "stage": "reading"}), flush=True)
    for i in range(300000):
        sys.stdout.write("noise line %d from a library that prints to stdout\\n" % i)
    sys.stdout.flush()
    sys.exit(1)
''')


def test_a_chatty_childs_stray_stdout_is_kept_to_its_last_lines(tmp_path):
    pytest.importorskip("slicer")
    from LiverTumorSegLib import mrml
    from LiverTumorSegLib.volume import ImageGeometry
    from mrml_helpers import add_volume_node

    script = tmp_path / "chatty.py"
    script.write_text(CHATTY)

    class Runner(childprocess.SubprocessRunner):
        def start(self, program, args, env=None):
            super().start(sys.executable, [str(script)], env)

    scene = mrml.make_headless_scene()
    node = add_volume_node(scene, np.full((4, 5, 6), 40, np.int16), ImageGeometry(spacing=(1.0, 1.0, 1.0)))
    temp = tmp_path / "t"
    temp.mkdir()
    j = job.SegmentationJob(scene, node, job.SegmentationOptions(model="m.safetensors"), Runner(), sys.executable,
                            str(ROOT), temp_root=str(temp), show_3d=False)
    outcome = j.start().wait(timeout_s=120)
    assert outcome.kind == job.FAILED
    assert len(j.other_output) == job.OTHER_OUTPUT_LINES  # the last ones: 300,000 were kept (20 are shown)
    assert list(j.other_output)[-1] == "noise line 299999 from a library that prints to stdout"


class _FakeArray:
    def __init__(self, data):
        self._data = data

    def data(self):
        return self._data


class _FakeQProcess:
    SeparateChannels, NotRunning, Running, CrashExit = 0, 0, 2, 1
    chunks = []

    def setProcessChannelMode(self, mode):
        pass

    def readAllStandardError(self):
        return _FakeArray(_FakeQProcess.chunks.pop(0) if _FakeQProcess.chunks else b"")

    def readAllStandardOutput(self):
        return _FakeArray(b"")

    def state(self):
        return self.Running


def test_the_qt_runner_decodes_a_character_split_between_two_reads(module, monkeypatch):
    monkeypatch.setattr(sys.modules["qt"], "QProcess", _FakeQProcess, raising=False)
    text = "error: Volume '/home/\u0141ukasz/ct.nii' does not look like CT\n".encode("utf-8")
    cut = text.index(b"\xc5") + 1  # between the two bytes of 'Ł'
    _FakeQProcess.chunks = [text[:cut], text[cut:]]
    runner = module.m.QProcessRunner()
    runner.read_stdout_lines()  # a poll drains stderr (first half)
    stderr = runner.read_stderr()  # the next drain (second half)
    assert "\u0141ukasz" in stderr




CHATTY_MEASURE = textwrap.dedent('''
    import json, sys
    args = sys.argv[1:]
    for i in range(4000):  # e.g. a library warning repeated per slice or per lesion
        sys.stderr.write("RuntimeWarning: invalid value encountered in divide (slice %d)\\n" % i)
    out = args[args.index("-o") + 1]
    json.dump({"liver_volume_ml": 1.5, "tumor_volume_ml": 0.0, "tumor_burden_percent": 0.0, "lesions": []},
              open(out, "w"))
''')


def test_a_measure_child_that_writes_much_to_stderr_ends(module, tmp_path):
    import time
    import test_slicer_module_measure as tm
    from LiverTumorSegModuleLib import measure_job
    script = tmp_path / "chatty_measure.py"
    script.write_text(CHATTY_MEASURE)

    class Runner(childprocess.SubprocessRunner):
        def start(self, program, args, env=None):
            super().start(sys.executable, [str(script)] + list(args[3:]), env)

    phantom, volume, segmentation = tm._scene_with_result(module)
    j = measure_job.MeasureJob(module.scene, segmentation, volume, Runner(), sys.executable, str(ROOT),
                               temp_root=str(module.temp))
    began = time.monotonic()
    outcome = j.start().wait(timeout_s=20)
    assert outcome.kind == "done" and time.monotonic() - began < 20  # it blocked on a full stderr pipe, and ended
    # 'cancelled' at the wait's timeout (a wait without one never returned)
