"""CPU precision choice (``precision=auto|fp32|bf16``): bf16 flag detection, the run-time bf16-vs-fp32 check with
its fallback, reuse of the checked batch, and per-stage timings of the engine."""
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from LiverTumorSegLib.errors import InputError  # noqa: E402
from LiverTumorSegLib.inference import device as device_module  # noqa: E402
from LiverTumorSegLib.inference import engine as engine_module  # noqa: E402
from LiverTumorSegLib.inference.engine import SliceInferenceEngine  # noqa: E402

from inference_helpers import corner_phantom, oracle_config, tiny_unet_package  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    torch.manual_seed(0)
    torch.set_num_threads(1)


class MarginNet(torch.nn.Module):
    """1x1 convolution with large class margins on the windowed input (window 0..100 HU -> [0, 1]):
    background below ~0.05, tumor in between, liver above ~0.49. bf16 rounding (~0.4 %) cannot flip a label
    on the noise-free phantom, whose windowed values are 0, 0.15, 0.45 and 0.6. Counts its forward calls."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 3, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([0.0, 40.0, 20.0]).view(3, 1, 1, 1))
            self.conv.bias.copy_(torch.tensor([0.0, -10.5, -1.0]))
        self.calls = []  # dtype of every forward

    def forward(self, x):
        y = self.conv(x)
        self.calls.append(y.dtype)
        return y


class BrokenUnderBf16Net(MarginNet):
    """Same as MarginNet in fp32; under bf16 autocast it returns the classes in reverse order (a network that
    bf16 breaks), so bf16 and fp32 labels disagree almost everywhere."""

    def forward(self, x):
        y = super().forward(x)
        return torch.flip(y, dims=[1]) if y.dtype == torch.bfloat16 else y


def package_with(net):
    return types.SimpleNamespace(preprocessing=oracle_config(), model=net, name="margin")


def fp32_labels(volume, net):
    return SliceInferenceEngine(package_with(net), device="cpu", threads=1, batch_size=4,
                                precision="fp32").predict(volume)


def test_cpu_bf16_flags_known_cpuinfo_texts():
    xeon = "processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_bf16 amx_tile\n"
    epyc_zen3 = "flags\t\t: fpu sse avx2 avx512f\n"
    graviton3 = "Features\t: fp asimd bf16 i8mm\n"
    assert device_module.cpu_bf16_flags(xeon) == ["amx_bf16", "avx512_bf16"]
    assert device_module.cpu_bf16_flags(epyc_zen3) == [] and not device_module.cpu_has_native_bf16(epyc_zen3)
    assert device_module.cpu_has_native_bf16(graviton3)
    assert device_module.check_precision(" BF16 ") == "bf16"
    with pytest.raises(InputError, match="precision"):
        device_module.check_precision("fp8")


def test_auto_keeps_fp32_on_a_cpu_without_bf16(monkeypatch):
    monkeypatch.setattr(engine_module, "cpu_has_native_bf16", lambda: False)
    engine = SliceInferenceEngine(package_with(MarginNet()), device="cpu", threads=1)
    engine.predict(corner_phantom().ct)
    assert engine.precision_used == "fp32" and engine.last_precision["check"] is None
    assert set(engine.model.calls) == {torch.float32}
    # the report says why auto chose fp32 here ("requested auto, used fp32" alone did not)
    assert "no native bf16" in engine.last_precision["note"]
    fp32 = SliceInferenceEngine(package_with(MarginNet()), device="cpu", threads=1, precision="fp32")
    fp32.predict(corner_phantom().ct)
    assert "note" not in fp32.last_precision  # fp32 was asked for: nothing to explain


def test_asked_for_bf16_on_a_cpu_without_it_warns_into_the_report(monkeypatch):
    """The 'runs emulated' note was only logged, without the 'warning:' prefix and not in the report."""
    monkeypatch.setattr(engine_module, "cpu_has_native_bf16", lambda: False)
    engine = SliceInferenceEngine(package_with(MarginNet()), device="cpu", threads=1, precision="bf16")
    assert "no native bf16" in engine.device_message and "emulated" in engine.device_message
    monkeypatch.setattr(engine_module, "cpu_has_native_bf16", lambda: True)
    assert not SliceInferenceEngine(package_with(MarginNet()), device="cpu", threads=1,
                                    precision="bf16").device_message


def test_auto_uses_bf16_when_the_check_passes_and_reuses_the_checked_batch(monkeypatch):
    monkeypatch.setattr(engine_module, "cpu_has_native_bf16", lambda: True)
    ph = corner_phantom()  # 12 slices -> batches of 4: [0-3], [4-7], [8-11]; the check judges the 8-slice block 0-7
    expected = fp32_labels(ph.ct, MarginNet())
    net = MarginNet()
    engine = SliceInferenceEngine(package_with(net), device="cpu", threads=1, batch_size=4)
    labels = engine.predict(ph.ct)
    np.testing.assert_array_equal(labels, expected)
    check = engine.last_precision["check"]
    assert engine.last_precision["used"] == "bf16" and check["passed"] and check["differing_voxels"] == 0
    assert check["slices"] == [0, 7] and check["this_volume"]
    assert engine.model.calls.count(torch.float32) == 2  # the check's fp32 pass, in two batches of 4
    assert engine.model.calls.count(torch.bfloat16) == 3  # the check's two, then [8-11]: [0-3], [4-7] not run again
    assert net.calls == []  # the package's own network was copied (channels-last), not changed
    engine.model.calls.clear()
    engine.predict(ph.ct)  # the next volume reuses the verdict: no fp32 pass
    assert set(engine.model.calls) == {torch.bfloat16} and len(engine.model.calls) == 3
    assert engine.last_precision["check"]["passed"] and not engine.last_precision["check"]["this_volume"]


@pytest.mark.parametrize("batch_size, fp32_passes, bf16_passes", [
    (1, 8, 8 + 4),   # the check's 8 slices one by one; the loop runs slices 8-11 only
    (3, 3, 3 + 2),   # check in batches 0-2, 3-5, 6-7; loop: 0-2, 3-5 taken from it, 6-8 and 9-11 run
    (8, 1, 1 + 1),   # the check is the loop's first batch
    (16, 1, 1 + 1),  # one loop batch of 12 holds the block but runs (the block is part of it)
])
def test_the_bf16_check_judges_the_same_slices_whatever_the_batch_size(monkeypatch, batch_size, fp32_passes,
                                                                      bf16_passes):
    """The check judged one batch of the loop, so --batch-size 1 rested auto's verdict on one slice (slice 5 of
    12) and --batch-size 16 on all twelve: the batch size decided what bf16 had to pass, and so could change the
    labels. It judges the same 8-slice block now, run in batches of at most the batch size (its memory bound), and
    the loop takes the batches within that block from the check."""
    monkeypatch.setattr(engine_module, "cpu_has_native_bf16", lambda: True)
    ph = corner_phantom()
    engine = SliceInferenceEngine(package_with(MarginNet()), device="cpu", threads=1, batch_size=batch_size)
    labels = engine.predict(ph.ct)
    np.testing.assert_array_equal(labels, fp32_labels(ph.ct, MarginNet()))
    check = engine.last_precision["check"]
    assert check["slices"] == [0, 7] and check["voxels"] % 8 == 0 and check["passed"]
    assert check["voxels"] == check_voxels_at_batch_8(ph.ct)
    assert engine.model.calls.count(torch.float32) == fp32_passes
    assert engine.model.calls.count(torch.bfloat16) == bf16_passes
    assert engine._cached is None  # the check's result is not held once the loop is past it


def test_the_checks_result_is_let_go_when_the_loop_passes_the_block_in_a_batch_that_reaches_beyond_it(monkeypatch):
    """Batch size 3 on 12 slices: the loop's batch 6-8 holds the block's last slice (7) and reaches past it, so it
    runs; the check's 8 rows were held until the volume ended (a review found it), though no later batch takes
    them. They are let go there now."""
    monkeypatch.setattr(engine_module, "cpu_has_native_bf16", lambda: True)
    engine = SliceInferenceEngine(package_with(MarginNet()), device="cpu", threads=1, batch_size=3)
    held = []
    real = engine._take_checked

    def recording(indices):
        out = real(indices)
        held.append((list(indices), engine._cached is not None))
        return out

    monkeypatch.setattr(engine, "_take_checked", recording)
    engine.predict(corner_phantom().ct)
    assert held == [([0, 1, 2], True), ([3, 4, 5], True), ([6, 7, 8], False), ([9, 10, 11], False)]


def check_voxels_at_batch_8(volume):
    """Voxels of the 8-slice block on the network grid, from a batch-size-8 engine's check record."""
    engine = SliceInferenceEngine(package_with(MarginNet()), device="cpu", threads=1, batch_size=8)
    engine.predict(volume)
    return engine.last_precision["check"]["voxels"]


def test_a_cancel_during_the_bf16_check_is_seen_between_its_passes_and_the_check_runs_again(monkeypatch):
    """The check runs two whole batches before the batch loop first looks at the cancel token: with --progress
    json (the Slicer module's child) a cancel took 2.5-5 s on 2 cores (the batch audit). It is now looked at
    before the check and between its passes, and leaves this engine's precision as it was."""
    from LiverTumorSegLib.errors import CancelledError
    from LiverTumorSegLib.progress import CancellationToken

    monkeypatch.setattr(engine_module, "cpu_has_native_bf16", lambda: True)
    ph = corner_phantom()

    class CancelOnFirstPass(MarginNet):
        def forward(self, x):
            token.cancel()  # the user cancels while the check's first (bf16) pass runs
            return super().forward(x)

    token = CancellationToken()
    engine = SliceInferenceEngine(package_with(CancelOnFirstPass()), device="cpu", threads=1, batch_size=4)
    with pytest.raises(CancelledError):
        engine.predict(ph.ct, cancel=token)
    assert engine.model.calls == [torch.bfloat16]           # the fp32 pass never ran
    assert engine.cpu_dtype == torch.bfloat16 and engine._verify_cpu_dtype  # untouched: checked again next time
    engine.model.forward = types.MethodType(MarginNet.forward, engine.model)
    engine.model.calls.clear()
    np.testing.assert_array_equal(engine.predict(ph.ct), fp32_labels(ph.ct, MarginNet()))
    assert engine.last_precision["check"]["this_volume"] and engine.last_precision["used"] == "bf16"
    cancelled_first = CancellationToken()
    cancelled_first.cancel()
    engine.model.calls.clear()
    with pytest.raises(CancelledError):                      # a cancel before the work: no network at all
        SliceInferenceEngine(package_with(MarginNet()), device="cpu", threads=1, batch_size=4).predict(
            ph.ct, cancel=cancelled_first)


@pytest.mark.parametrize("net_class, used", [(MarginNet, "bf16"), (BrokenUnderBf16Net, "fp32")])
def test_the_bf16_check_with_two_cpu_streams_gives_one_streams_labels_and_runs_no_slice_twice(monkeypatch, net_class,
                                                                                              used):
    """On a bf16 CPU with 2 threads, two network streams are the default: the streamed loop takes the check's slices
    from it as the one-stream loop does. 12 slices, batch size 8 -> stream batches of 4: [0-3] and [4-7] come from
    the check (its pass in the precision it chose: bf16, or fp32 after a failed check of a network bf16 breaks),
    only [8-11] runs. Labels and probability equal a one-stream run's, bit for bit."""
    monkeypatch.setattr(engine_module, "cpu_has_native_bf16", lambda: True)
    ph = corner_phantom()
    streamed = SliceInferenceEngine(package_with(net_class()), device="cpu", threads=2, cpu_streams=2, batch_size=8)
    single = SliceInferenceEngine(package_with(net_class()), device="cpu", threads=1, batch_size=4)
    assert streamed._streams_for_this_run() == 2
    labels, probability = streamed.predict_with_probability(ph.ct)
    labels_1, probability_1 = single.predict_with_probability(ph.ct)
    np.testing.assert_array_equal(labels, fp32_labels(ph.ct, MarginNet()))
    np.testing.assert_array_equal(labels, labels_1)
    np.testing.assert_array_equal(probability, probability_1)
    assert streamed.last_precision["used"] == used and streamed.last_precision["check"]["slices"] == [0, 7]
    loop_pass = {"bf16": torch.bfloat16, "fp32": torch.float32}[used]  # [8-11] only
    assert sorted(map(str, streamed.model.calls)) == sorted(map(str, [torch.bfloat16, torch.float32, loop_pass]))
    assert streamed._cached is None


def test_a_cancel_during_a_one_batch_bf16_check_is_seen_before_its_fp32_pass(monkeypatch):
    """Batch size 8: the check's bf16 pass is one batch, so no cancel is looked at inside it; the cancel that came
    while it ran is seen before the fp32 pass, and the engine stays bf16, unchecked, for the next volume."""
    from LiverTumorSegLib.errors import CancelledError
    from LiverTumorSegLib.progress import CancellationToken

    monkeypatch.setattr(engine_module, "cpu_has_native_bf16", lambda: True)
    token = CancellationToken()

    class CancelOnFirstPass(MarginNet):
        def forward(self, x):
            token.cancel()
            return super().forward(x)

    engine = SliceInferenceEngine(package_with(CancelOnFirstPass()), device="cpu", threads=1, batch_size=8)
    with pytest.raises(CancelledError):
        engine.predict(corner_phantom().ct, cancel=token)
    assert engine.model.calls == [torch.bfloat16]  # one bf16 batch of 8, no fp32 pass
    assert engine.cpu_dtype == torch.bfloat16 and engine._verify_cpu_dtype


def test_a_failure_in_the_fp32_pass_of_the_bf16_check_leaves_the_check_to_the_next_volume(monkeypatch):
    """A first CT whose check failed in its fp32 pass (out of memory, Ctrl-C) left the engine in fp32 for good: every
    later CT of the batch (or of a notebook's Segmenter) ran fp32, unchecked ('check': None) and without a word. bf16
    stays planned now, and the next volume is checked."""
    monkeypatch.setattr(engine_module, "cpu_has_native_bf16", lambda: True)
    ph = corner_phantom()

    class OutOfMemoryInFp32Once(MarginNet):
        failed = False

        def forward(self, x):
            y = super().forward(x)
            if y.dtype == torch.float32 and not self.failed:
                self.failed = True
                raise MemoryError("Unable to allocate 2.00 GiB")
            return y

    engine = SliceInferenceEngine(package_with(OutOfMemoryInFp32Once()), device="cpu", threads=1, batch_size=4)
    with pytest.raises(MemoryError):
        engine.predict(ph.ct)
    assert engine.cpu_dtype == torch.bfloat16 and engine._verify_cpu_dtype
    np.testing.assert_array_equal(engine.predict(ph.ct), fp32_labels(ph.ct, MarginNet()))
    check = engine.last_precision["check"]
    assert engine.last_precision["used"] == "bf16" and check["passed"] and check["this_volume"]


def test_a_failure_while_the_bf16_check_compares_its_passes_leaves_the_check_to_the_next_volume(monkeypatch):
    """A Ctrl-C (or out of memory) after the check's fp32 pass, while its labels were compared with bf16's, still left
    the engine in fp32 for good, unchecked ('check': None) and without a word."""
    monkeypatch.setattr(engine_module, "cpu_has_native_bf16", lambda: True)
    ph = corner_phantom()
    real_disagreement = engine_module._label_disagreement
    calls = []

    def interrupted_once(full, reduced):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real_disagreement(full, reduced)

    monkeypatch.setattr(engine_module, "_label_disagreement", interrupted_once)
    engine = SliceInferenceEngine(package_with(MarginNet()), device="cpu", threads=1, batch_size=4)
    with pytest.raises(KeyboardInterrupt):
        engine.predict(ph.ct)
    assert engine.cpu_dtype == torch.bfloat16 and engine._verify_cpu_dtype
    engine.predict(ph.ct)
    check = engine.last_precision["check"]
    assert engine.last_precision["used"] == "bf16" and check["passed"] and check["this_volume"]


def test_auto_falls_back_to_fp32_when_bf16_labels_disagree(monkeypatch, caplog):
    monkeypatch.setattr(engine_module, "cpu_has_native_bf16", lambda: True)
    ph = corner_phantom()
    expected = fp32_labels(ph.ct, MarginNet())
    engine = SliceInferenceEngine(package_with(BrokenUnderBf16Net()), device="cpu", threads=1, batch_size=4)
    # a batch run prints this before its first CT: bf16 is only the plan until the check (it said plain "bf16")
    assert engine.device_description.endswith("bf16 if it passes its check on the first CT)")
    with caplog.at_level("WARNING"):
        labels = engine.predict(ph.ct)
    assert engine.device_description.endswith(", fp32)")
    np.testing.assert_array_equal(labels, expected)
    check = engine.last_precision["check"]
    assert not check["passed"] and check["differing_fraction"] > engine_module.BF16_MAX_DISAGREEMENT
    assert engine.last_precision["used"] == "fp32" and "running this model in fp32" in caplog.text
    assert "running this model in fp32" in engine.precision_message  # the report's warnings (only printed before)
    engine.model.calls.clear()
    engine.predict(ph.ct)  # the next volume: fp32 straight away, no second check
    assert set(engine.model.calls) == {torch.float32} and len(engine.model.calls) == 3
    assert engine.last_precision["used"] == "fp32" and not engine.last_precision["check"]["this_volume"]


def test_explicit_bf16_runs_unchecked_and_fp32_never_autocasts():
    ph = corner_phantom()
    bf16 = SliceInferenceEngine(package_with(BrokenUnderBf16Net()), device="cpu", threads=1, batch_size=4,
                                precision="bf16")
    bf16.predict(ph.ct)
    assert set(bf16.model.calls) == {torch.bfloat16} and bf16.last_precision["check"] is None
    fp32 = SliceInferenceEngine(package_with(MarginNet()), device="cpu", threads=1, precision="fp32")
    fp32.predict(ph.ct)
    assert set(fp32.model.calls) == {torch.float32} and fp32.precision_used == "fp32"


def test_onnx_backend_stays_fp32(tmp_path):
    pytest.importorskip("onnxruntime")
    package = tiny_unet_package(tmp_path)
    with pytest.raises(InputError, match="torch backend") as refused:
        SliceInferenceEngine(package, device="cpu", threads=1, backend="onnx", precision="bf16")
    assert "use backend='torch' or precision='fp32'" in str(refused.value)  # the engine's arguments, not flags
    engine = SliceInferenceEngine(package, device="cpu", threads=1, backend="onnx")
    assert engine.precision_used == "fp32"


def test_engine_reports_per_stage_seconds():
    ph = corner_phantom()
    engine = SliceInferenceEngine(package_with(MarginNet()), device="cpu", threads=1, batch_size=4,
                                  precision="fp32")
    engine.predict(ph.ct)
    timings = engine.last_timings
    assert set(timings) == {"reorient", "preprocess", "network", "restore"}
    assert all(0.0 <= v < 30.0 for v in timings.values()) and timings["network"] > 0.0
    engine.predict(ph.ct)  # reset per call, not accumulated over calls
    assert set(engine.last_timings) == set(timings)


def test_two_stage_report_times_both_network_passes():
    import time

    from LiverTumorSegLib.inference.api import segment_volume

    from inference_helpers import oracle_package, oracle_predictor

    calls = []

    def slow_predictor(x):
        calls.append(len(x))
        time.sleep(0.05)
        return oracle_predictor(x)

    ph = corner_phantom(shape_zyx=(12, 60, 64))
    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=4,
                                  batch_predictor=slow_predictor)
    result = segment_volume(ph.ct, None, engine=engine, two_stage=True)
    fine_batches = 3  # the fine pass alone: 12 slices in batches of 4
    assert len(calls) > fine_batches  # the coarse pass ran too
    assert result.report["timings_s"]["network"] >= 0.05 * len(calls) - 0.01
    assert not engine.accumulate_timings


def test_precision_is_a_segmentation_option_and_cli_flag():
    from LiverTumorSegLib import cli
    from LiverTumorSegLib.inference.options import SegmentationOptions, options_from_args

    options = SegmentationOptions(precision="BF16")
    assert options.precision == "bf16" and options.to_cli_args() == ["--precision", "bf16"]
    assert SegmentationOptions.from_dict(options.to_dict()) == options
    assert SegmentationOptions().to_cli_args() == []  # auto is the default
    with pytest.raises(InputError, match="--precision"):
        SegmentationOptions(precision="fp8")
    args = cli.build_parser().parse_args(["segment", "ct.nii.gz", "-o", "seg.nii.gz", "--precision", "fp32"])
    assert options_from_args(args).precision == "fp32"


def test_segment_help_says_the_bf16_check_judges_the_middle_slices_whatever_the_batch_size(capsys):
    # 0.6.10 made the check judge CHECK_SLICES middle slices; --help still said "one batch of the first CT"
    from LiverTumorSegLib import cli

    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["segment", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "one batch" not in text
    assert f"checked on the {engine_module.CHECK_SLICES} middle slices of the first CT against fp32, whatever " \
           "--batch-size" in text


def test_file_report_holds_precision_and_every_stage_time(tmp_path):
    import json

    from LiverTumorSegLib.inference.segmenter import Segmenter
    from LiverTumorSegLib.io import write_volume

    ct = write_volume(tmp_path / "ct.nii.gz", corner_phantom().ct)
    engine = SliceInferenceEngine(package_with(MarginNet()), device="cpu", threads=1, batch_size=4,
                                  precision="fp32")
    result = Segmenter(engine=engine).segment_file(ct, tmp_path / "seg.nii.gz", report_path=tmp_path / "r.json")
    written = json.loads((tmp_path / "r.json").read_text())
    assert written["precision"]["requested"] == "fp32" and written["precision"]["used"] == "fp32"
    assert set(written["postprocessing_changes"]) == {"liver_in_air_ml", "tumor_in_air_ml",
                                                      "liver_in_air_outside_body_ml", "tumor_in_air_outside_body_ml",
                                                      "air_slices_without_body", "tumor_in_air_components",
                                                      "liver_above_lungs_ml", "tumor_above_lungs_ml",
                                                      "tumor_above_lungs_components", "liver_components_removed",
                                                      "tumor_components", "head_foot_order",
                                                      "tumor_in_air_components_not_listed",
                                                      "tumor_above_lungs_components_not_listed",
                                                      "liver_components_removed_not_listed",
                                                      "tumor_components_not_listed", "holes_filled_liver_ml",
                                                      "holes_filled_tumor_ml"}
    stages = {"read", "checks", "reorient", "preprocess", "network", "restore", "postprocess", "report", "write",
              "total"}
    assert stages <= set(written["timings_s"]) and written["timings_s"] == result.report["timings_s"]
    parts = sum(v for k, v in written["timings_s"].items() if k != "total")
    assert 0.0 < parts <= written["timings_s"]["total"] + 0.01  # stages do not overlap and fit in the total


def test_model_load_parts_are_reported_once_and_add_up(tmp_path):
    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import Segmenter

    package = tiny_unet_package(tmp_path)
    segmenter = Segmenter(SegmentationOptions(model=str(package.path), device="cpu", precision="fp32", threads=1))
    first = segmenter.segment_volume(corner_phantom().ct).report
    second = segmenter.segment_volume(corner_phantom().ct).report
    parts = first["model_load_s"]
    assert set(parts) == {"import_torch", "import_monai", "read_verify_build", "engine",
                          "monai_optional_packages_hidden", "during_read", "during_preprocess"}
    assert parts["during_read"] is False  # segment_volume loads before it segments; segment_file while it reads
    assert parts["during_preprocess"] is False  # ... and resamples the CT while the network is built
    seconds = [parts[k] for k in ("import_torch", "import_monai", "read_verify_build", "engine")]
    assert min(seconds) >= 0.0
    assert abs(sum(seconds) - first["timings_s"]["model_load"]) <= 0.01  # the parts are the whole load
    # a library caller's process never hides packages from MONAI (None: MONAI was already imported before)
    assert parts["monai_optional_packages_hidden"] in (None, False)
    assert "model_load_s" not in second and "model_load" not in second["timings_s"]  # reported by the first only


def documented_precision_keys() -> set:
    """The names docs/report_format.md gives in backticks in its ``precision`` row and in the subsection whose
    heading names `precision` (the report's ``precision`` object and its checks' keys, moved there out of the
    table's row on 29 Nov 2026)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "report_format.md").read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `device`, `backend`, `precision`"))
    details = re.search(r"\n### [^\n]*`precision`[^\n]*\n(.*?)(?=\n#|\Z)", text, flags=re.DOTALL)
    return set(re.findall(r"`([a-z_0-9]+)`", row.split("|")[2] + (details.group(1) if details else "")))


def test_every_key_of_the_precision_record_is_documented(monkeypatch):
    """The report's ``precision`` held ``note`` (why auto ran fp32 on this CPU) and its check ``this_volume`` (false
    for a CT after the checked one), and on a Mac's GPU ``device_check``, which docs/report_format.md did not name:
    it listed requested, used and check alone. Every key an engine records is now named there."""
    documented = documented_precision_keys()
    monkeypatch.setattr(engine_module, "cpu_has_native_bf16", lambda: False)
    no_bf16 = SliceInferenceEngine(package_with(MarginNet()), device="cpu", threads=1)
    no_bf16.predict(corner_phantom().ct)
    monkeypatch.setattr(engine_module, "cpu_has_native_bf16", lambda: True)
    checked = SliceInferenceEngine(package_with(MarginNet()), device="cpu", threads=1, batch_size=4)
    checked.predict(corner_phantom().ct)
    records = [no_bf16.last_precision, checked.last_precision]
    assert "note" in records[0] and records[1]["check"] is not None
    for record in records:
        assert set(record) <= documented, set(record) - documented
    assert set(records[1]["check"]) <= documented, set(records[1]["check"]) - documented
