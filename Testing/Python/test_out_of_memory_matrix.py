"""Out of memory at every stage of every command, as a user sees it: a MemoryError injected into one function at a
time (the reader, the network, post-processing, the lesion report, each writer) ends the command with exit 2 and ONE
line on stderr, 'error: Ran out of memory ...', saying what to do; no traceback, no temporary file left in the output
folder, and with --overwrite the user's existing output is left as it was (same bytes). In a batch the case that ran
out is marked failed in batch_status.csv and the other cases still finish."""
import importlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from LiverTumorSegLib import cli  # noqa: E402
from LiverTumorSegLib.io import write_label_map, write_volume  # noqa: E402
from LiverTumorSegLib.phantom import PhantomLesion, make_phantom  # noqa: E402

from inference_helpers import tiny_unet_package  # noqa: E402

NUMPY_MEMORY_ERROR = "Unable to allocate 150. MiB for an array with shape (600, 512, 512) and data type float32"


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(1)


def _phantom(i=0):
    lesion = PhantomLesion(center_zyx=(4.0 + i, 14.0, 12.0), radius_mm=5.0 + i, hu=15.0)
    return make_phantom((10 + 2 * i, 36, 40), (2.0, 2.0, 4.0), lesions=[lesion], noise_hu=0.0)


def _raise_memory_error(*args, **kwargs):
    raise MemoryError(NUMPY_MEMORY_ERROR)


def _inject(monkeypatch, target):
    """Patch ``module:attribute`` (attribute may be ``Class.method``) to raise MemoryError."""
    module_name, attribute = target.split(":")
    owner = importlib.import_module(module_name)
    *path, name = attribute.split(".")
    for part in path:
        owner = getattr(owner, part)
    assert hasattr(owner, name), target
    monkeypatch.setattr(owner, name, _raise_memory_error)


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _assert_one_line_out_of_memory(code, err):
    assert code == 2, err
    assert "Traceback" not in err and "internal error" not in err, err
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, err
    line = error_lines[0]
    assert line.startswith("error: Ran out of memory") and "Close other programs to free memory" in line, err


SEGMENT_STAGES = [
    "LiverTumorSegLib.io:read_volume",
    "LiverTumorSegLib.inference.engine:SliceInferenceEngine._forward_logits",
    "LiverTumorSegLib.inference.postprocess:postprocess_labels",
    "LiverTumorSegLib.inference.lesion_report:lesion_report",
    "LiverTumorSegLib.io:write_label_map",
    "LiverTumorSegLib.io:write_probability_map",
    "LiverTumorSegLib.inference.lesion_report:write_report",
    "LiverTumorSegLib.inference.preview:save_overlay_preview",
]


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return tiny_unet_package(tmp_path_factory.mktemp("model"))


@pytest.mark.parametrize("stage", SEGMENT_STAGES)
def test_segment_one_ct_running_out_of_memory_is_one_line_and_keeps_the_users_files(tmp_path, package, monkeypatch,
                                                                                     capsys, stage):
    ct = write_volume(tmp_path / "ct.nii.gz", _phantom().ct)
    out = tmp_path / "out"
    out.mkdir()
    previous = {"seg.nii.gz": b"an earlier labels file", "seg.json": b"{\"earlier\": 1}",
                "seg.png": b"an earlier preview", "prob.nii.gz": b"an earlier probability map"}
    for name, data in previous.items():
        (out / name).write_bytes(data)
    _inject(monkeypatch, stage)
    code = cli.main(["segment", str(ct), "-o", str(out / "seg.nii.gz"), "--report", str(out / "seg.json"),
                     "--preview", str(out / "seg.png"), "--probabilities", str(out / "prob.nii.gz"),
                     "--model", str(package.path), "--device", "cpu", "--precision", "fp32", "--overwrite",
                     "--no-progress"])
    _assert_one_line_out_of_memory(code, capsys.readouterr().err)
    assert _snapshot(out) == previous  # nothing new, nothing hidden, nothing replaced


def test_segment_with_json_progress_running_out_of_memory_ends_on_the_memory_line(tmp_path, package, monkeypatch,
                                                                                   capsys):
    """``--progress json`` (the Slicer module's child): the network running out of memory ends the JSON lines on
    the same 'Ran out of memory ...' words (not 'internal error'), exit 2, and the user's earlier output is kept."""
    import json

    ct = write_volume(tmp_path / "ct.nii.gz", _phantom().ct)
    out = tmp_path / "out"
    out.mkdir()
    (out / "seg.nii.gz").write_bytes(b"an earlier labels file")
    _inject(monkeypatch, "LiverTumorSegLib.inference.engine:SliceInferenceEngine._forward_logits")
    code = cli.main(["segment", str(ct), "-o", str(out / "seg.nii.gz"), "--model", str(package.path),
                     "--device", "cpu", "--precision", "fp32", "--overwrite", "--progress", "json"])
    captured = capsys.readouterr()
    _assert_one_line_out_of_memory(code, captured.err)
    last = json.loads(captured.out.strip().splitlines()[-1])
    assert set(last) == {"error"}, last  # one line: no "details" beside it
    assert last["error"].startswith("Ran out of memory") and "--batch-size" in last["error"], last
    assert _snapshot(out) == {"seg.nii.gz": b"an earlier labels file"}


BATCH_STAGES = SEGMENT_STAGES[:-1]  # a batch writes no preview


@pytest.mark.parametrize("stage", BATCH_STAGES)
def test_a_batch_case_running_out_of_memory_fails_alone(tmp_path, package, monkeypatch, capsys, stage):
    cts = tmp_path / "cts"
    cts.mkdir()
    for i in range(3):
        write_volume(cts / f"ct_{i}.nii.gz", _phantom(i).ct)
    module_name, attribute = stage.split(":")
    owner = importlib.import_module(module_name)
    *path, name = attribute.split(".")
    for part in path:
        owner = getattr(owner, part)
    real = getattr(owner, name)
    calls = []

    def fail_the_second_case(*args, **kwargs):  # ct_1's arrays are 12 slices deep
        calls.append(1)
        shapes = [getattr(a, "shape", None) for a in list(args) + list(kwargs.values())]
        shapes += [getattr(a, "shape_zyx", None) for a in list(args) + list(kwargs.values())]
        paths = [str(a) for a in list(args) + list(kwargs.values()) if isinstance(a, (str, type(tmp_path)))]
        if any(p and "ct_1" in p for p in paths) or any(s is not None and len(s) >= 3 and s[0] == 12 for s in shapes
                                                         if s is not None):
            raise MemoryError(NUMPY_MEMORY_ERROR)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, fail_the_second_case)
    if name == "_forward_logits":  # its batches are (n, C, H, W): the case is the one Segmenter.predict runs
        from LiverTumorSegLib.inference.segmenter import Segmenter

        real_predict, running = Segmenter.predict, []

        def predict(self, volume, *args, **kwargs):
            running[:] = [volume.shape_zyx[0]]
            return real_predict(self, volume, *args, **kwargs)

        def forward(*args, **kwargs):
            if running == [12]:
                raise MemoryError(NUMPY_MEMORY_ERROR)
            return real(*args, **kwargs)

        monkeypatch.setattr(Segmenter, "predict", predict)
        monkeypatch.setattr(owner, name, forward)
    out = tmp_path / "out"
    code = cli.main(["segment", str(cts), "-o", str(out), "--model", str(package.path), "--device", "cpu",
                     "--precision", "fp32", "--probabilities", str(tmp_path / "prob"), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert "Traceback" not in captured.err and "internal error" not in captured.err + captured.out
    rows = [line.split(",", 2) for line in (out / "batch_status.csv").read_text().splitlines()[1:]]
    assert [r[:2] for r in rows] == [["ct_0", "done"], ["ct_1", "failed"], ["ct_2", "done"]], rows
    assert "Ran out of memory" in rows[1][2], rows
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["ct_0.nii.gz", "ct_2.nii.gz"]
    leftovers = [p.name for p in out.rglob("*") if p.is_file() and p.name.startswith(".")]
    assert not leftovers, leftovers


def _labels_and_ct(tmp_path, name="labels", i=0):
    phantom = _phantom(i)
    ct = write_volume(tmp_path / f"{name}_ct.nii.gz", phantom.ct)
    labels = write_label_map(tmp_path / f"{name}.nii.gz", phantom.labels, phantom.ct.geometry)
    return labels, ct


MEASURE_STAGES = [
    "LiverTumorSegLib.io:read_label_map",
    "LiverTumorSegLib.commands:read_checked_ct",
    "LiverTumorSegLib.inference.lesion_report:lesion_report",
    "LiverTumorSegLib.inference.lesion_report:finite_json",
    "LiverTumorSegLib.inference.lesion_report:write_report",
]


@pytest.mark.parametrize("stage", MEASURE_STAGES)
def test_measure_running_out_of_memory_is_one_line_and_keeps_the_report(tmp_path, monkeypatch, capsys, stage):
    labels, ct = _labels_and_ct(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_bytes(b"{\"earlier\": 1}")
    before = _snapshot(out)
    _inject(monkeypatch, stage)
    code = cli.main(["measure", str(labels), "--ct", str(ct), "-o", str(out / "report.json"), "--overwrite",
                     "--no-progress"])
    _assert_one_line_out_of_memory(code, capsys.readouterr().err)
    assert _snapshot(out) == before


FOLLOWUP_STAGES = [
    "LiverTumorSegLib.io:read_label_map",
    "LiverTumorSegLib.followup:compare_followup",
    "LiverTumorSegLib.followup:write_change_report",
    "LiverTumorSegLib.followup:save_change_picture",
]


@pytest.mark.parametrize("stage", FOLLOWUP_STAGES)
def test_followup_running_out_of_memory_is_one_line_and_keeps_its_outputs(tmp_path, monkeypatch, capsys, stage):
    base, base_ct = _labels_and_ct(tmp_path, "base", 0)
    follow, follow_ct = _labels_and_ct(tmp_path, "follow", 1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "change.json").write_bytes(b"{\"earlier\": 1}")
    (out / "change.png").write_bytes(b"an earlier picture")
    before = _snapshot(out)
    _inject(monkeypatch, stage)
    code = cli.main(["followup", "--baseline", str(base), "--followup", str(follow), "-o", str(out / "change.json"),
                     "--picture", str(out / "change.png"), "--overwrite", "--no-progress"])
    _assert_one_line_out_of_memory(code, capsys.readouterr().err)
    assert _snapshot(out) == before


EVALUATE_STAGES = [
    "LiverTumorSegLib.io:read_label_map",
    "LiverTumorSegLib.metrics.lits:evaluate_case",
    "LiverTumorSegLib.metrics.report:write_case_table",
    "LiverTumorSegLib.metrics.report:write_json",
    "LiverTumorSegLib.metrics.report:plot_case_overlay",
]


@pytest.mark.parametrize("stage", EVALUATE_STAGES)
def test_evaluate_running_out_of_memory_is_one_line_and_keeps_its_outputs(tmp_path, monkeypatch, capsys, stage):
    for folder in ("pred", "ref", "images"):
        (tmp_path / folder).mkdir()
    for i in range(2):
        phantom = _phantom(i)
        write_label_map(tmp_path / "pred" / f"case{i}.nii.gz", phantom.labels, phantom.ct.geometry)
        write_label_map(tmp_path / "ref" / f"case{i}.nii.gz", phantom.labels, phantom.ct.geometry)
        write_volume(tmp_path / "images" / f"case{i}.nii.gz", phantom.ct)
    out = tmp_path / "ev"
    assert cli.main(["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "--images",
                     str(tmp_path / "images"), "-o", str(out), "--no-surface"]) == 0
    capsys.readouterr()
    before = _snapshot(out)
    _inject(monkeypatch, stage)
    code = cli.main(["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "--images",
                     str(tmp_path / "images"), "-o", str(out), "--no-surface", "--overwrite"])
    _assert_one_line_out_of_memory(code, capsys.readouterr().err)
    assert _snapshot(out) == before


PREPROCESS_STAGES = [
    "LiverTumorSegLib.commands:read_checked_ct",
    "LiverTumorSegLib.preprocessing:render_preview",
]


@pytest.mark.parametrize("stage", PREPROCESS_STAGES)
def test_preprocess_running_out_of_memory_is_one_line_and_keeps_the_picture(tmp_path, monkeypatch, capsys, stage):
    ct = write_volume(tmp_path / "ct.nii.gz", _phantom().ct)
    out = tmp_path / "out"
    out.mkdir()
    (out / "p.png").write_bytes(b"an earlier picture")
    before = _snapshot(out)
    _inject(monkeypatch, stage)
    code = cli.main(["preprocess", str(ct), "-o", str(out / "p.png"), "--overwrite", "--no-progress"])
    _assert_one_line_out_of_memory(code, capsys.readouterr().err)
    assert _snapshot(out) == before


def test_running_out_of_memory_looking_for_a_resampling_fill_stops_segment_instead_of_skipping_the_fill(
        tmp_path, package, monkeypatch, capsys):
    """The fill search (resampling_fill.find_resampling_fill) caught every Exception: a MemoryError there was logged
    as a warning and the CT was segmented with its fill given to the network as CT values (exit 0). It is an
    out-of-memory error now, and the user's earlier outputs are kept; any other failure of the search still only
    warns."""
    from LiverTumorSegLib.inference import resampling_fill

    ct = write_volume(tmp_path / "ct.nii.gz", _phantom().ct)
    out = tmp_path / "out"
    out.mkdir()
    (out / "seg.nii.gz").write_bytes(b"an earlier labels file")
    before = _snapshot(out)
    args = ["segment", str(ct), "-o", str(out / "seg.nii.gz"), "--model", str(package.path), "--device", "cpu",
            "--precision", "fp32", "--overwrite", "--no-progress"]
    monkeypatch.setattr(resampling_fill, "find_resampling_fill", _raise_memory_error)
    _assert_one_line_out_of_memory(cli.main(args), capsys.readouterr().err)
    assert _snapshot(out) == before

    def broken(*a, **k):
        raise ValueError("a bug in the fill search")

    monkeypatch.setattr(resampling_fill, "find_resampling_fill", broken)
    assert cli.main(args) == 0
    assert (out / "seg.nii.gz").read_bytes() != b"an earlier labels file"


def test_a_batch_cases_memory_check_counts_the_next_ct_being_read_and_waits_for_it(tmp_path, monkeypatch):
    """The batch starts reading case i+1 before case i's memory check: the check saw the memory the read was about
    to take as free, and the network could run out of it. The check counts the unfinished read now (its header's
    voxels, as ``io.reading.read_peak_bytes`` counts them); a case that fits alone but not beside it waits for the read and is checked again (done,
    not refused)."""
    import threading

    from LiverTumorSegLib import validation
    from LiverTumorSegLib.inference import batch as batch_module
    from LiverTumorSegLib.inference.batch import find_cases, segment_batch
    from LiverTumorSegLib.inference.engine import SliceInferenceEngine
    from LiverTumorSegLib.inference.segmenter import Segmenter

    from inference_helpers import oracle_package, oracle_predictor

    cts = tmp_path / "cts"
    cts.mkdir()
    for i in range(2):
        write_volume(cts / f"ct_{i}.nii.gz", _phantom(i).ct)
    from LiverTumorSegLib.io.reading import read_peak_bytes

    # ct_1's read as counted: its int16 voxels and their HU copy, or the .nii.gz's inflating peak where higher
    next_ct_bytes = read_peak_bytes(cts / "ct_1.nii.gz")
    assert next_ct_bytes >= 12 * 36 * 40 * 4
    release_read, read_done = threading.Event(), threading.Event()
    real_read = batch_module._read_and_prepare_case

    def read(case, *args):
        if case.case_id == "ct_1":
            assert release_read.wait(timeout=30.0)
            try:
                return real_read(case, *args)
            finally:
                read_done.set()
        return real_read(case, *args)

    checks = []  # (case's slices, pending bytes, whether ct_1's read had finished)
    real_check = validation.check_network_memory

    def check(volume, *args, **kwargs):
        kwargs.pop("available_bytes", None)
        required = real_check(volume, *args, available_bytes=1 << 50, **kwargs)
        pending = int(kwargs.get("pending_bytes", 0))
        alone = required - volume.array.nbytes - int(kwargs.get("held_bytes", 0))
        if threading.current_thread() is threading.main_thread():  # not the reader's own check of its early copy
            checks.append((volume.shape_zyx[0], pending, read_done.is_set()))
            release_read.set()  # ct_1 is read from here on: while ct_0's network would run
        return real_check(volume, *args, available_bytes=alone + next_ct_bytes // 2, **kwargs)

    monkeypatch.setattr(batch_module, "_read_and_prepare_case", read)
    monkeypatch.setattr(validation, "check_network_memory", check)
    segmenter = Segmenter(engine=SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=4,
                                                      batch_predictor=oracle_predictor))
    statuses = segment_batch(find_cases(cts, tmp_path / "out"), segmenter)
    assert [s.status for s in statuses] == ["done", "done"], [s.message for s in statuses]
    ct_0_checks = [c for c in checks if c[0] == 10]
    assert ct_0_checks[0] == (10, next_ct_bytes, False)  # counted the read still running: refused beside it
    assert ct_0_checks[-1] == (10, 0, True)  # so it waited for the read, and was checked again with the CT held


def test_a_batch_readers_early_copy_counts_the_running_cases_network(tmp_path, monkeypatch):
    """The reader resamples case i+1 to the network grid while case i's network runs; that early copy's memory
    check counted nothing for the running network, so the copy could take the memory case i's check had seen free
    for its network. It counts that network's estimate now: a copy that fits alone but not beside it is not made
    early (the engine prepares the CT in its turn), and both cases are done."""
    import threading

    from LiverTumorSegLib import validation
    from LiverTumorSegLib.inference import prepared_input
    from LiverTumorSegLib.inference.batch import find_cases, segment_batch
    from LiverTumorSegLib.inference.engine import SliceInferenceEngine
    from LiverTumorSegLib.inference.segmenter import Segmenter

    from inference_helpers import oracle_package, oracle_predictor

    cts = tmp_path / "cts"
    cts.mkdir()
    for i in range(2):
        write_volume(cts / f"ct_{i}.nii.gz", _phantom(i).ct)
    real_check = validation.check_network_memory
    early_checks = []  # (slices, bytes asked beside the copy's own need) of the reader's checks

    def check(volume, *args, **kwargs):
        kwargs.pop("available_bytes", None)
        if threading.current_thread() is threading.main_thread():
            return real_check(volume, *args, available_bytes=1 << 50, **kwargs)
        alone = real_check(volume, *args, **dict(kwargs, pending_bytes=0), available_bytes=1 << 50) \
            - volume.array.nbytes - int(kwargs.get("held_bytes", 0))
        early_checks.append((volume.shape_zyx[0], int(kwargs.get("pending_bytes", 0))))
        if volume.shape_zyx[0] == 12:
            early_checked.set()
        return real_check(volume, *args, available_bytes=alone + 1024, **kwargs)  # fits alone, by 1 KiB

    early_checked = threading.Event()

    made_early = []
    real_prepare = prepared_input.prepare_input

    def prepare(volume, config):
        if threading.current_thread() is not threading.main_thread():
            made_early.append(volume.shape_zyx[0])
        return real_prepare(volume, config)

    monkeypatch.setattr(validation, "check_network_memory", check)
    monkeypatch.setattr(prepared_input, "prepare_input", prepare)
    segmenter = Segmenter(engine=SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=4,
                                                      batch_predictor=oracle_predictor))
    real_predict = segmenter.predict

    def predict(volume):
        if volume.shape_zyx[0] == 10:  # ct_0's network runs until the reader has checked ct_1's early copy
            assert early_checked.wait(timeout=30.0)
        return real_predict(volume)

    monkeypatch.setattr(segmenter, "predict", predict)
    statuses = segment_batch(find_cases(cts, tmp_path / "out"), segmenter)
    assert [s.status for s in statuses] == ["done", "done"], [s.message for s in statuses]
    ct_1 = [asked for slices, asked in early_checks if slices == 12]
    assert ct_1 and ct_1[0] > 0  # ct_0's network estimate was asked for beside ct_1's early copy
    assert 12 not in made_early  # so ct_1 was not resampled on the reader thread while ct_0's network could run


def test_a_batch_publishes_what_the_running_network_may_still_take_without_its_early_copy(tmp_path, monkeypatch):
    """The running case's estimate the reader's early copy of the next CT counts (``RunningNetworkMemory``) was the
    estimate less the CT only: the network-grid copy the reader had prepared for this case, held already and so
    out of the available memory the next copy's check reads, was counted again, and the next CT's early copy was
    refused beside a network that had room for it. It is the estimate less the CT and that held copy now."""
    import threading

    from LiverTumorSegLib import validation
    from LiverTumorSegLib.inference.batch import RunningNetworkMemory, find_cases, segment_batch
    from LiverTumorSegLib.inference.engine import SliceInferenceEngine
    from LiverTumorSegLib.inference.segmenter import Segmenter

    from inference_helpers import oracle_package, oracle_predictor

    cts = tmp_path / "cts"
    cts.mkdir()
    for i in range(3):
        write_volume(cts / f"ct_{i}.nii.gz", _phantom(i).ct)
    real_check = validation.check_network_memory
    checks = {}  # slices -> (estimate, CT bytes, held bytes) of the running case's check

    def check(volume, *args, **kwargs):
        kwargs.pop("available_bytes", None)
        required = real_check(volume, *args, available_bytes=1 << 50, **kwargs)
        if threading.current_thread() is threading.main_thread():
            checks[volume.shape_zyx[0]] = (required, int(volume.array.nbytes), int(kwargs.get("held_bytes", 0)))
        return required

    published = {}
    real_publish = RunningNetworkMemory.publish

    def publish(self, index, reserved_bytes, **kwargs):
        if reserved_bytes:  # the first: the estimate before the network (then its finish's bytes, once it has run)
            published.setdefault(index, reserved_bytes)
        return real_publish(self, index, reserved_bytes, **kwargs)

    monkeypatch.setattr(validation, "check_network_memory", check)
    monkeypatch.setattr(RunningNetworkMemory, "publish", publish)
    segmenter = Segmenter(engine=SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=4,
                                                      batch_predictor=oracle_predictor))
    statuses = segment_batch(find_cases(cts, tmp_path / "out"), segmenter)
    assert [s.status for s in statuses] == ["done"] * 3, [s.message for s in statuses]
    required, ct_bytes, held = checks[12]  # ct_1: its network-grid copy was prepared by the reader
    assert held > 0
    assert published[1] == required - ct_bytes - held
    assert published[1] >= 0


TRAIN_STAGES = [
    "LiverTumorSegLib.training.trainer:Trainer._build_caches",
    "LiverTumorSegLib.training.trainer:Trainer._loss_and_gradients",
    "LiverTumorSegLib.training.trainer:Trainer._validate",
    "LiverTumorSegLib.package:save_model_package",
]


@pytest.mark.parametrize("stage", TRAIN_STAGES)
def test_train_running_out_of_memory_is_one_line_and_keeps_the_earlier_package(tmp_path, monkeypatch, capsys, stage):
    from test_training_folder_lock import _train_argv
    from training_helpers import write_phantom_cases

    data = tmp_path / "data"
    data.mkdir()
    cases = write_phantom_cases(data, 2, (6, 40, 40))
    out = tmp_path / "out"
    out.mkdir()
    (out / "m.safetensors").write_bytes(b"an earlier model package")
    _inject(monkeypatch, stage)
    code = cli.main(_train_argv(cases, out / "m.safetensors", "--overwrite"))
    _assert_one_line_out_of_memory(code, capsys.readouterr().err)
    assert (out / "m.safetensors").read_bytes() == b"an earlier model package"
    leftovers = [p.name for p in out.iterdir() if p.is_file() and p.name != "m.safetensors"]
    assert not leftovers, leftovers
