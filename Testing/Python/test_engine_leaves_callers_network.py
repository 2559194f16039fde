"""A package given as an object holds the caller's network: the engine runs it in eval mode without switching the
caller's module to eval for good (an audit found a model being trained left in eval mode after segment_volume)."""
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
