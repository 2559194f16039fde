"""A package given as an object holds the caller's network: the engine runs it in eval mode without switching the
caller's module to eval for good (an audit found a model being trained left in eval mode after segment_volume)."""
import copy
import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from LiverTumorSegLib.inference import SegmentationOptions, Segmenter, segment_volume  # noqa: E402
from LiverTumorSegLib.inference.engine import SliceInferenceEngine  # noqa: E402
from LiverTumorSegLib.models.eval_mode import eval_mode  # noqa: E402

from inference_helpers import corner_phantom, tiny_unet_package  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    np.random.seed(0)


def test_eval_mode_gives_each_submodule_its_own_flag_back_also_after_an_error():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5), torch.nn.BatchNorm1d(2))
    net.train()
    net[2].eval()  # a caller's mixed state: a frozen batch norm in a training network
    with eval_mode(net, None):
        assert not any(m.training for m in net.modules())
    assert [m.training for m in net.modules()] == [True, True, True, False]
    with pytest.raises(RuntimeError):
        with eval_mode(net):
            raise RuntimeError("a failed batch")
    assert [m.training for m in net.modules()] == [True, True, True, False]


def test_a_callers_network_in_training_mode_is_run_in_eval_mode_and_left_in_training_mode(tmp_path):
    package = tiny_unet_package(tmp_path)
    ct = corner_phantom().ct
    package.model.eval()
    expected = segment_volume(ct, package, device="cpu", threads=1).labels
    package.model.train()
    dropout_or_norm = [m for m in package.model.modules() if m.training]
    result = Segmenter(SegmentationOptions(device="cpu", threads=1), package=package).segment_volume(ct)
    np.testing.assert_array_equal(result.labels, expected)  # eval-mode arithmetic (batch statistics would differ)
    assert package.model.training and all(m.training for m in dropout_or_norm)
    np.testing.assert_array_equal(segment_volume(ct, package, device="cpu", threads=1).labels, expected)
    assert package.model.training

    package.model.eval()
    raw = SliceInferenceEngine(package, device="cpu", threads=1).predict(ct)  # the network's own labels
    package.model.train()
    engine = SliceInferenceEngine(package, device="cpu", threads=1, backend="onnx")
    assert package.model.training  # the ONNX export, too, leaves the caller's module as it was
    assert np.mean(engine.predict(ct) == raw) > 0.999  # ONNX Runtime's float arithmetic: a near-tie may flip


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_callers_half_or_bf16_network_runs_as_float32_and_keeps_its_dtype_device_and_mode(tmp_path, dtype):
    """A caller's network in half or bf16 met the float32 input with torch's "Input type (float) and bias type
    (c10::Half) should be the same" traceback (and, on ONNX, advice to use --backend torch, which failed alike):
    the engine now runs a float32 copy, which gives the labels of the same weights in float32."""
    package = tiny_unet_package(tmp_path, context_slices=1)
    ct = corner_phantom().ct
    package.model.to(dtype).train()
    same_weights = dataclasses.replace(package, model=copy.deepcopy(package.model).float())
    expected = SliceInferenceEngine(same_weights, device="cpu", threads=1, precision="fp32").predict(ct)
    before = {name: (t.dtype, t.device) for name, t in package.model.state_dict().items()}
    for backend, precision in (("torch", "fp32"), ("torch", "auto"), ("onnx", "fp32")):
        if backend == "onnx":
            pytest.importorskip("onnxruntime")
            pytest.importorskip("onnx")
        engine = SliceInferenceEngine(package, device="cpu", threads=1, backend=backend, precision=precision)
        labels = engine.predict(ct)
        assert np.mean(labels == expected) > 0.999, (backend, precision)  # ONNX Runtime: a near-tie may flip
        assert {name: (t.dtype, t.device) for name, t in package.model.state_dict().items()} == before
        assert package.model.training and all(m.training for m in package.model.modules())
    bf16 = SliceInferenceEngine(package, device="cpu", threads=1, precision="bf16").predict(ct)
    assert np.mean(bf16 == expected) > 0.99  # bf16 arithmetic, as for any package
    assert next(package.model.parameters()).dtype == dtype
