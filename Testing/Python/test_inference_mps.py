"""Apple GPUs (MPS): device choice, the first-volume check against the CPU and every fallback to the CPU.

CI has no Apple GPU, so the MPS device is stood in for: the network stays a CPU module and tensors are not moved
(``engine._to_device`` / ``engine._model_on_device`` patched for ``mps`` only). Everything the engine decides
(check, keep, fall back, report) runs as on a Mac; what Metal computes does not. Where this PyTorch has no MPS,
one test also runs the real failure of moving a network to ``mps``.
"""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from LiverTumorSegLib.errors import InputError  # noqa: E402
from LiverTumorSegLib.inference import device as device_module  # noqa: E402
from LiverTumorSegLib.inference import engine as engine_module  # noqa: E402
from LiverTumorSegLib.inference.device import resolve_device  # noqa: E402
from LiverTumorSegLib.inference.engine import DEVICE_MAX_DISAGREEMENT, SliceInferenceEngine  # noqa: E402

from inference_helpers import ORIENTATIONS, corner_phantom, reoriented, tiny_unet_package  # noqa: E402


def test_auto_and_gpu_prefer_cuda_then_mps_then_cpu():
    assert resolve_device("auto", cuda_available=True, mps_available=True).device.type == "cuda"
    assert resolve_device("auto", cuda_available=False, mps_available=True).device.type == "mps"
    assert resolve_device("auto", cuda_available=False, mps_available=False).device.type == "cpu"
    assert resolve_device("gpu", cuda_available=False, mps_available=True).device.type == "mps"
    assert resolve_device("gpu", cuda_available=True, mps_available=False).device.type == "cuda"
    assert resolve_device("mps", cuda_available=True, mps_available=True).device.type == "mps"
    assert resolve_device("auto", cuda_available=False, mps_available=True).message == ""


@pytest.mark.parametrize("requested", ["mps", "gpu"])
def test_a_gpu_asked_for_but_absent_falls_back_to_cpu_with_a_message(requested, caplog):
    choice = resolve_device(requested, cuda_available=False, mps_available=False)
    assert choice.device.type == "cpu"
    # a library call is told its own argument (the command line's --device: test_cli_options)
    assert f"device='{requested}'" in choice.message and "CPU" in choice.message
    assert any("running on the CPU" in r.getMessage() for r in caplog.records)


def test_unknown_device_names_every_choice():
    with pytest.raises(InputError, match="auto, cpu, cuda, mps, gpu"):
        resolve_device("metal")


class _RolledClasses(torch.nn.Module):
    """A network whose every label is shifted by one class: a device that computes wrongly."""

    def __init__(self, base):
        super().__init__()
        self.base = base

    def forward(self, x):
        return torch.roll(self.base(x), 1, dims=1)


class _FailsAfter(torch.nn.Module):
    """A network that raises (as Metal out of memory would) from its ``calls``-th call on."""

    def __init__(self, base, calls):
        super().__init__()
        self.base, self.calls, self.seen = base, calls, 0

    def forward(self, x):
        self.seen += 1
        if self.seen >= self.calls:
            raise RuntimeError("MPS backend out of memory (stand-in)")
        return self.base(x)


class _Counting(torch.nn.Module):
    """Counts its forward calls."""

    def __init__(self, base):
        super().__init__()
        self.base, self.seen = base, 0

    def forward(self, x):
        self.seen += 1
        return self.base(x)


class _ChangesPixels(torch.nn.Module):
    """Shifts the label of the first ``fraction`` of each batch's pixels (in (n, y, x) order) by one class."""

    def __init__(self, base, fraction):
        super().__init__()
        self.base, self.fraction = base, fraction

    def forward(self, x):
        out = self.base(x)
        n, _, h, w = out.shape
        mask = torch.zeros(n * h * w, dtype=torch.bool)
        mask[:int(self.fraction * n * h * w)] = True
        return torch.where(mask.reshape(n, 1, h, w), torch.roll(out, 1, dims=1), out)


def _stand_in_mps(monkeypatch, wrap=None, moves=None):
    """Make ``mps`` resolvable and runnable here: the 'MPS network' is a CPU copy (``wrap``-ped). ``moves``
    (a list) records the device type of every tensor move the engine asks for."""
    monkeypatch.setattr(device_module, "mps_is_available", lambda: True)
    real_on_device, real_to_device = engine_module._model_on_device, engine_module._to_device
    moves = [] if moves is None else moves

    def model_on_device(model, device):
        if device.type != "mps":
            return real_on_device(model, device)
        moved = copy.deepcopy(model).eval()
        return wrap(moved) if wrap is not None else moved

    monkeypatch.setattr(engine_module, "_model_on_device", model_on_device)
    def to_device(tensor, device):
        moves.append(device.type)
        return tensor if device.type == "mps" else real_to_device(tensor, device)

    monkeypatch.setattr(engine_module, "_to_device", to_device)


def _volume():
    ph = corner_phantom()  # 12 slices: 3 batches of 4; the check judges the 8-slice block 0-7 (two of them)
    volume, _ = reoriented(ph.ct, ph.labels, *ORIENTATIONS["LPS"])
    return volume


def _cpu_labels(package, volume):
    return SliceInferenceEngine(package, device="cpu", batch_size=4, threads=1, precision="fp32").predict(volume)


def test_mps_that_agrees_with_the_cpu_is_kept_and_gives_the_cpu_labels(tmp_path, monkeypatch):
    package = tiny_unet_package(tmp_path, context_slices=1)
    volume = _volume()
    expected = _cpu_labels(package, volume)
    moves = []
    _stand_in_mps(monkeypatch, wrap=_Counting, moves=moves)
    engine = SliceInferenceEngine(package, device="auto", batch_size=4, threads=1)
    assert engine.device.type == "mps" and engine.device_description.startswith("mps (Apple GPU")
    np.testing.assert_array_equal(engine.predict(volume), expected)
    # 3 batches on MPS: the check's two (0-3, 4-7; their results reused by the loop, not computed twice), then 8-11;
    # each input moved to MPS and each result back to the CPU, plus the CPU reference's two inputs and results
    # (no-op moves on the CPU)
    assert engine.model.seen == 3
    assert moves.count("mps") == 3 and moves.count("cpu") == 3 + 2 * 2
    check = engine.last_precision["device_check"]
    assert check["passed"] and check["this_volume"] and check["slices"] == [0, 7]
    assert check["differing_voxels"] == 0 and check["error"] == ""
    assert engine.device.type == "mps" and engine.device_message == ""
    assert engine.last_precision["used"] == "fp32"
    np.testing.assert_array_equal(engine.predict(volume), expected)  # the verdict is kept, not re-checked
    assert engine.last_precision["device_check"]["this_volume"] is False
    assert next(package.model.parameters()).device.type == "cpu"  # the shared package stays on the CPU


def test_mps_that_disagrees_with_the_cpu_is_dropped_for_the_cpu(tmp_path, monkeypatch, caplog):
    package = tiny_unet_package(tmp_path, context_slices=1)
    volume = _volume()
    expected = _cpu_labels(package, volume)
    _stand_in_mps(monkeypatch, wrap=_RolledClasses)
    engine = SliceInferenceEngine(package, device="mps", batch_size=4, threads=1)
    labels = engine.predict(volume)
    np.testing.assert_array_equal(labels, expected)  # every batch, the check batch included, is the CPU's
    check = engine.last_precision["device_check"]
    assert not check["passed"] and check["differing_fraction"] == pytest.approx(1.0)
    assert check["max_fraction"] == DEVICE_MAX_DISAGREEMENT
    assert engine.device.type == "cpu" and engine.device_description.startswith("cpu (")
    assert "differ from the CPU's on 100.000 %" in engine.device_message
    assert "running on the CPU instead" in engine.device_message
    assert any("Apple GPU (MPS)" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("fraction,kept", [(DEVICE_MAX_DISAGREEMENT / 2, True), (DEVICE_MAX_DISAGREEMENT * 2, False)])
def test_the_disagreement_limit_decides(fraction, kept, tmp_path, monkeypatch):
    package = tiny_unet_package(tmp_path, context_slices=1)
    _stand_in_mps(monkeypatch, wrap=lambda model: _ChangesPixels(model, fraction))
    # batch size 8: the check's block is one batch, so the stand-in's per-batch share is the check's
    engine = SliceInferenceEngine(package, device="mps", batch_size=8, threads=1)
    engine.predict(_volume())
    check = engine.last_precision["device_check"]
    expected = int(fraction * check["voxels"]) / check["voxels"]
    assert check["differing_fraction"] == pytest.approx(expected) and check["differing_voxels"] > 0
    assert check["passed"] is kept and (engine.device.type == "mps") is kept


def test_a_check_that_could_not_finish_runs_again_on_the_next_ct(tmp_path, monkeypatch):
    package = tiny_unet_package(tmp_path, context_slices=1)
    volume = _volume()
    _stand_in_mps(monkeypatch, wrap=_RolledClasses)
    engine = SliceInferenceEngine(package, device="mps", batch_size=4, threads=1)
    real = engine._torch_probabilities
    failures = [MemoryError("the CPU reference ran out of memory (stand-in)")]

    def cpu_reference_fails_once(x, on_cpu=False):
        if on_cpu and failures:
            raise failures.pop()
        return real(x, on_cpu=on_cpu)

    monkeypatch.setattr(engine, "_torch_probabilities", cpu_reference_fails_once)
    with pytest.raises(MemoryError):
        engine.predict(volume)
    assert engine.device.type == "mps"  # no verdict yet
    engine.predict(volume)  # the wrongly computing device is caught on the next CT, not trusted unchecked
    assert engine.last_precision["device_check"]["this_volume"] and engine.device.type == "cpu"


def test_mps_that_fails_on_a_later_batch_hands_the_rest_to_the_cpu(tmp_path, monkeypatch):
    package = tiny_unet_package(tmp_path, context_slices=1)
    volume = _volume()
    expected = _cpu_labels(package, volume)
    _stand_in_mps(monkeypatch, wrap=lambda model: _FailsAfter(model, calls=3))  # the check's 2 batches run, then fails
    engine = SliceInferenceEngine(package, device="mps", batch_size=4, threads=1)
    np.testing.assert_array_equal(engine.predict(volume), expected)
    assert engine.last_precision["device_check"]["passed"]
    assert engine.device.type == "cpu" and "failed on a batch (RuntimeError: MPS backend out of memory" in \
        engine.device_message


def test_mps_that_fails_in_the_check_falls_back_before_any_label(tmp_path, monkeypatch):
    package = tiny_unet_package(tmp_path, context_slices=1)
    volume = _volume()
    expected = _cpu_labels(package, volume)
    _stand_in_mps(monkeypatch, wrap=lambda model: _FailsAfter(model, calls=1))
    engine = SliceInferenceEngine(package, device="mps", batch_size=4, threads=1)
    np.testing.assert_array_equal(engine.predict(volume), expected)
    check = engine.last_precision["device_check"]
    assert not check["passed"] and check["error"].startswith("RuntimeError")
    assert "failed its check against the CPU" in engine.device_message


def test_bf16_is_refused_on_mps(tmp_path, monkeypatch):
    _stand_in_mps(monkeypatch)
    with pytest.raises(InputError, match="bf16 is not offered on an Apple GPU"):
        SliceInferenceEngine(tiny_unet_package(tmp_path), device="mps", precision="bf16")


@pytest.mark.skipif(device_module.mps_is_available(), reason="this PyTorch has MPS: the move would succeed")
def test_a_pytorch_without_mps_falls_back_when_the_network_cannot_move(tmp_path, monkeypatch):
    """Real: this PyTorch is not linked with MPS, so moving the network raises; the engine runs on the CPU."""
    package = tiny_unet_package(tmp_path, context_slices=1)
    volume = _volume()
    expected = _cpu_labels(package, volume)
    monkeypatch.setattr(device_module, "mps_is_available", lambda: True)  # as if the build claimed it
    engine = SliceInferenceEngine(package, device="mps", batch_size=4, threads=1)
    assert engine.device.type == "cpu" and "could not take the network" in engine.device_message
    np.testing.assert_array_equal(engine.predict(volume), expected)
    assert "device_check" not in engine.last_precision


def test_training_refuses_apple_gpus_in_its_own_words(monkeypatch):
    from LiverTumorSegLib.training import trainer

    with pytest.raises(InputError, match="--device mps .*not supported for training.*--device cpu"):
        trainer.resolve_device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="device 'gpu' requested but this torch has no usable CUDA GPU"):
        trainer.resolve_device("gpu")


def test_training_gpu_means_cuda_when_there_is_one(monkeypatch):
    from LiverTumorSegLib.training import trainer

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert trainer.resolve_device("gpu") == torch.device("cuda")


def test_the_cpu_reference_runs_in_eval_mode_for_a_package_built_in_training_mode(tmp_path, monkeypatch):
    # a network with batch norm left in training mode (a package built in memory) gave the check a reference that
    # normalised by the batch: 7 % of voxels 'differed' from a faithful MPS, which was dropped for nothing
    package = tiny_unet_package(tmp_path, context_slices=1)
    torch.manual_seed(0)
    package.model = torch.nn.Sequential(package.model, torch.nn.BatchNorm2d(3)).train()
    _stand_in_mps(monkeypatch)
    engine = SliceInferenceEngine(package, device="mps", batch_size=4, threads=1)
    engine.predict(_volume())
    assert engine.last_precision["device_check"]["passed"] and engine.device.type == "mps"
    assert package.model.training  # run in eval mode, and the caller's network keeps its own flag
