"""preprocessing.device_input: the 2.5D network input built with torch (on the GPU in the engine) equals the
host's PreparedVolume.batch bit for bit, and configs it cannot build keep the host path."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from LiverTumorSegLib.preprocessing.config import PreprocessingConfig  # noqa: E402
from LiverTumorSegLib.preprocessing.device_input import device_batch_builder  # noqa: E402
from LiverTumorSegLib.preprocessing.preprocessor import PreparedVolume, SlicePreprocessor  # noqa: E402


def prepared_volume(config=None, offset=1.0, slices=11, seed=5):
    """Network-grid HU ``(z, H, W)`` float32 with values across and beyond every window (air to metal, and
    non-integer HU as resampling gives), prepared with ``config`` (the default 3-window 2.5D one)."""
    rng = np.random.default_rng(seed)
    hu = rng.uniform(-1200.0, 2200.0, size=(slices, 24, 20)).astype(np.float32)
    hu[:, :4] = np.float32(-1024.0)  # padding rows
    hu[0, 5, 5], hu[1, 5, 5] = np.float32(-180.0), np.float32(1000.0)  # exactly a window's low / high edge
    preprocessor = SlicePreprocessor(config or PreprocessingConfig())
    return PreparedVolume(preprocessor, hu, None, offset)


@pytest.mark.parametrize("offset", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("indices", [[0], [0, 1, 2], [4, 5, 6, 7], [9, 10], [10], list(range(11))])
def test_torch_input_is_bit_identical_to_the_host_batch(indices, offset):
    prepared = prepared_volume(offset=offset)
    builder = device_batch_builder(prepared)
    assert builder is not None
    built = builder.batch(indices, torch.device("cpu"))
    expected = prepared.batch(indices)
    assert built.dtype == torch.float32 and tuple(built.shape) == expected.shape == (len(indices), 9, 24, 20)
    np.testing.assert_array_equal(built.numpy(), expected)
    assert builder.take_host_seconds() > 0 and builder.take_host_seconds() == 0.0


def test_channel_order_is_neighbour_major_with_edges_replicated():
    """Channel ``offset_index * 3 + window``: channels 0-2 are the slice below (the first slice itself at the
    bottom edge), 3-5 the centre, 6-8 the slice above; window 2 (level 0, width 2000) of -1024 HU is 0.0 exactly
    below -1000 HU and 1.0 at or above +1000 HU."""
    prepared = prepared_volume()
    built = device_batch_builder(prepared).batch([0], torch.device("cpu")).numpy()[0]
    hu = prepared.hu_net
    np.testing.assert_array_equal(built[0:3], built[3:6])  # below slice 0 is slice 0
    np.testing.assert_array_equal(built[6], np.clip((hu[1] - np.float32(-160.0)) * np.float32(1 / 400.0), 0, 1))
    assert built[2, 0, 0] == 0.0 and built[8, 5, 5] == 1.0


@pytest.mark.parametrize("change", [
    {"channels": [{"kind": "window", "level": 40, "width": 400}, {"kind": "zscore"}]},
    {"equalize": "histogram"},
    {"gaussian_sigma_mm": 1.0},
    {"median_size": 3},
])
def test_preprocessing_other_than_plain_windows_keeps_the_host_path(change):
    config = PreprocessingConfig(**change)
    assert device_batch_builder(prepared_volume(config)) is None


def test_interpolated_neighbours_and_other_objects_keep_the_host_path():
    assert device_batch_builder(prepared_volume(offset=0.6)) is None  # thick slices: HU interpolated
    assert device_batch_builder(object()) is None


def test_indices_outside_the_volume_are_refused():
    from LiverTumorSegLib.errors import InputError

    with pytest.raises(InputError, match="Slice indices must be in 0..10"):
        device_batch_builder(prepared_volume()).batch([3, 11], torch.device("cpu"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("offset", [1.0, 2.0])
def test_cuda_input_is_bit_identical_to_the_host_batch(offset):
    prepared = prepared_volume(offset=offset, slices=40)
    builder = device_batch_builder(prepared)
    for indices in ([0, 1, 2, 3], list(range(17, 40))):
        built = builder.batch(indices, torch.device("cuda"))
        assert built.device.type == "cuda"
        np.testing.assert_array_equal(built.cpu().numpy(), prepared.batch(indices))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_engine_labels_are_the_same_with_the_input_built_on_the_gpu(tmp_path):
    """The engine on CUDA builds window-only input on the GPU; forcing the host path gives the same labels and
    probability (the same network input, the same batches)."""
    from LiverTumorSegLib.inference.engine import SliceInferenceEngine
    from LiverTumorSegLib.orientation import canonicalize

    from inference_helpers import corner_phantom, tiny_unet_package

    package = tiny_unet_package(tmp_path, context_slices=1)  # 2.5D: the neighbour stacking runs too
    ph = corner_phantom()
    on_gpu = SliceInferenceEngine(package, device="cuda", amp=False, batch_size=4)
    canonical = canonicalize(ph.ct)[0]
    assert on_gpu._device_batch_builder(SlicePreprocessor(on_gpu.preprocessing).prepare(canonical)) is not None
    labels, probability = on_gpu.predict_with_probability(ph.ct)
    host = SliceInferenceEngine(package, device="cuda", amp=False, batch_size=4)
    host._device_batch_builder = lambda prepared: None
    labels_host, probability_host = host.predict_with_probability(ph.ct)
    np.testing.assert_array_equal(labels, labels_host)
    np.testing.assert_array_equal(probability, probability_host)
    assert on_gpu.last_timings["preprocess"] > 0
    assert on_gpu._device_batches is None  # the builder (it holds the network-grid CT) is let go after the volume


def test_a_torch_built_for_numpy_1_is_refused_beside_numpy_2_before_it_fails_inside():
    """torch 2.1/2.2 beside numpy 2 printed 'Failed to initialize NumPy' and ended segment with 'internal error:
    RuntimeError: Numpy is not available ... please report it' (the minimum-versions audit): one error naming both
    versions and what to install, from the device choice every run makes."""
    import pytest

    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.inference import device

    with pytest.raises(InputError, match=r"PyTorch 2\.2\.2\+cu118 was built for numpy 1 .* numpy 2\.0\.2: install "
                                         r"torch>=2\.3"):
        device.check_torch_numpy("2.2.2+cu118", "2.0.2")
    for torch_version, numpy_version in (("2.2.2", "1.26.4"), ("2.3.0", "2.0.2"), ("2.13.0+cpu", "2.4.6"),
                                         ("2.1.0", "1.22.4")):
        device.check_torch_numpy(torch_version, numpy_version)
    import numpy
    import torch

    class NoNumpy:  # a torch whose build cannot hand arrays over, whatever its version says
        @staticmethod
        def from_numpy(array):
            raise RuntimeError("Numpy is not available")

    with pytest.raises(InputError, match=r"PyTorch 2\.4\.0 cannot exchange arrays with the installed numpy 2\.0\.2 "
                                         r"\(Numpy is not available\)"):
        device.check_torch_numpy("2.4.0", "2.0.2", NoNumpy())
    device.check_torch_numpy(torch.__version__, numpy.__version__, torch)   # this one can
    real = torch.__version__
    try:
        torch.__version__ = "2.1.0"
        if numpy.__version__.startswith("1."):
            pytest.skip("numpy 1 here: no refusal to see")
        with pytest.raises(InputError, match="built for numpy 1"):
            device.resolve_device("cpu")
    finally:
        torch.__version__ = real
