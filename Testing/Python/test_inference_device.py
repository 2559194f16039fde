"""Device selection (CPU fallback with a message), batch size arithmetic."""
import pytest

torch = pytest.importorskip("torch")

from LiverTumorSegLib.errors import InputError  # noqa: E402
from LiverTumorSegLib.inference.device import (bytes_per_slice, choose_batch_size, cpu_thread_count,  # noqa: E402
                                               gpu_info, resolve_device)


def test_cuda_requested_but_absent_falls_back_with_message(caplog):
    choice = resolve_device("cuda", cuda_available=False)
    assert choice.device.type == "cpu" and not choice.is_cuda
    assert "not available" in choice.message and "CPU" in choice.message
    assert any("not available" in r.getMessage() for r in caplog.records)


def test_auto_and_cpu():
    assert resolve_device("auto", cuda_available=False).device.type == "cpu"
    assert resolve_device("cpu", cuda_available=True).device.type == "cpu"
    assert resolve_device("CPU").message == ""


def test_unknown_device_is_input_error():
    with pytest.raises(InputError, match="auto, cpu, cuda"):
        resolve_device("tpu")


def test_choose_batch_size_known_numbers():
    assert choose_batch_size(1000, 100, fraction=0.5) == 5
    assert choose_batch_size(10, 100) == 1            # never below 1
    assert choose_batch_size(10 ** 12, 100) == 64     # capped
    with pytest.raises(ValueError, match="per_slice_bytes must be positive"):
        choose_batch_size(100, 0)


def test_bytes_per_slice_formula():
    # 64 feature maps x 2 bytes + (C + 2K) x 4 bytes, per pixel
    assert bytes_per_slice(3, 3, 10, 10, feature_factor=64, element_bytes=2) == 100 * (128 + 9 * 4)


def test_cpu_info():
    assert cpu_thread_count() >= 1
    assert gpu_info(torch.device("cpu")) == {}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_info_on_cuda():
    info = gpu_info(torch.device("cuda"))
    assert info["total_bytes"] >= info["free_bytes"] > 0 and info["name"]
    assert resolve_device("cuda").is_cuda and resolve_device("auto").is_cuda


def test_a_device_that_falls_back_is_named_as_the_caller_gave_it():
    """A library call (segment_file(device='gpu')) was told '(--device gpu)', a flag it has no use for; the
    command line (and the Slicer panel, which words the child's flag as its Device choice) keeps the flag."""
    from LiverTumorSegLib.errors import cli_wording

    assert "requested (device='gpu')" in resolve_device("gpu", cuda_available=False, mps_available=False).message
    assert "requested (device='cuda')" in resolve_device("cuda", cuda_available=False).message
    with cli_wording():
        assert "requested (--device gpu)" in resolve_device("gpu", cuda_available=False, mps_available=False).message
        assert "requested (--device cuda:1)" in resolve_device("cuda:1", cuda_available=False).message


@pytest.mark.parametrize("value, expected", [("1", 1), (" 2 ", 2), ("0", None), ("-3", None), ("four", None),
                                             ("", None), ("100000", None)])
def test_default_inference_threads_follow_omp_num_threads(monkeypatch, value, expected):
    """segment took every core whatever OMP_NUM_THREADS said (a shared server's limit, which train and torch follow);
    now the variable gives the default where it is a whole number >= 1, at most the cores this process may use."""
    from LiverTumorSegLib.inference.device import default_inference_threads

    monkeypatch.setattr("LiverTumorSegLib.inference.device.cpu_thread_count", lambda: 4)
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert default_inference_threads() == (4 if expected is None else expected)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_inference_threads() == 4


def test_engine_without_threads_takes_omp_num_threads(monkeypatch):
    """The engine's own thread count when none is given is the OMP_NUM_THREADS one (1 here, on any machine)."""
    from inference_helpers import oracle_package, oracle_predictor

    from LiverTumorSegLib.inference.engine import SliceInferenceEngine

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    engine = SliceInferenceEngine(oracle_package(), device="cpu", batch_predictor=oracle_predictor)
    assert engine.threads == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")  # not a number: every core, as before
    assert SliceInferenceEngine(oracle_package(), device="cpu", batch_predictor=oracle_predictor).threads >= 1
