"""SliceInferenceEngine: geometry round trip (oracle predictor), progress, cancellation, batching, TTA,
real tiny U-Net package, ONNX backend."""
import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from LiverTumorSegLib.errors import CancelledError, InputError  # noqa: E402
from LiverTumorSegLib.inference import engine as engine_module  # noqa: E402
from LiverTumorSegLib.inference.engine import SliceInferenceEngine, _batches, softmax_channels  # noqa: E402
from LiverTumorSegLib.progress import CancellationToken  # noqa: E402

from inference_helpers import (ORIENTATIONS, corner_phantom, oracle_package, oracle_predictor,  # noqa: E402
                               reoriented, tiny_unet_package)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def oracle_engine(**kw):
    kw.setdefault("device", "cpu")
    kw.setdefault("threads", 1)
    return SliceInferenceEngine(oracle_package(), batch_predictor=oracle_predictor, **kw)


def test_softmax_channels_known_values():
    logits = np.zeros((1, 3, 1, 1), dtype=np.float32)
    logits[0, :, 0, 0] = [0.0, np.log(2.0), np.log(5.0)]
    np.testing.assert_allclose(softmax_channels(logits)[0, :, 0, 0], [1 / 8, 2 / 8, 5 / 8], rtol=1e-6)


def test_batches_cover_range_and_follow_size_changes():
    sizes = [4]
    seen = []
    for idx in _batches(10, lambda: sizes[0]):
        seen.append(idx)
        sizes[0] = 2
    assert seen == [[0, 1, 2, 3], [4, 5], [6, 7], [8, 9]]


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_labels_land_in_input_geometry(orientation):
    ph = corner_phantom()
    volume, expected = reoriented(ph.ct, ph.labels, *ORIENTATIONS[orientation])
    labels = oracle_engine(batch_size=5).predict(volume)
    assert labels.dtype == np.uint8 and labels.shape == volume.shape_zyx
    np.testing.assert_array_equal(labels, expected)
    # the lesion comes back at the same physical place (LPS mm) as planted
    kji = np.argwhere(labels == 2).mean(axis=0)
    centre_lps = volume.geometry.index_to_lps(kji[::-1])
    kji0 = np.argwhere(ph.labels == 2).mean(axis=0)
    np.testing.assert_allclose(centre_lps, ph.ct.geometry.index_to_lps(kji0[::-1]), atol=1e-6)


def test_progress_monotone_and_ends_at_one():
    ph = corner_phantom()
    seen = []
    oracle_engine(batch_size=3).predict(ph.ct, progress=lambda f, s: seen.append(f))
    assert len(seen) >= 4
    assert all(b >= a for a, b in zip(seen, seen[1:]))
    assert seen[-1] == 1.0


def test_cancellation_stops_within_one_batch():
    ph = corner_phantom()
    token = CancellationToken()
    calls = []

    def predictor(x):
        calls.append(len(x))
        token.cancel()  # the user presses cancel while the first batch runs
        return oracle_predictor(x)

    engine = SliceInferenceEngine(oracle_package(), device="cpu", batch_size=2, threads=1, batch_predictor=predictor)
    with pytest.raises(CancelledError):
        engine.predict(ph.ct, cancel=token)
    assert calls == [2]


def test_tta_flip_averages_flipped_prediction():
    """A predictor that is not flip-symmetric: TTA result = mean of p(x) and flip(p(flip(x)))."""
    def asymmetric(x):
        n, _, h, w = x.shape
        probs = np.zeros((n, 3, h, w), dtype=np.float32)
        probs[:, 1, :, : w // 2] = 1.0  # "liver" on the image left half only
        probs[:, 0, :, w // 2:] = 1.0
        return probs

    engine = SliceInferenceEngine(oracle_package(), device="cpu", tta_flip=True, threads=1, batch_predictor=asymmetric)
    x = np.zeros((1, 1, 2, 4), dtype=np.float32)
    probs = engine.predict_batch_probabilities(x)
    np.testing.assert_allclose(probs[0, 1], 0.5)
    np.testing.assert_allclose(probs[0, 0], 0.5)


def test_bad_backend_and_batch_size_are_input_errors():
    with pytest.raises(InputError, match="backend"):
        SliceInferenceEngine(oracle_package(), device="cpu", backend="tensorrt", batch_predictor=oracle_predictor)
    with pytest.raises(InputError, match="batch-size"):
        SliceInferenceEngine(oracle_package(), device="cpu", batch_size=0, batch_predictor=oracle_predictor)


def test_real_tiny_unet_package_runs_with_context_and_tta(tmp_path):
    ph = corner_phantom()
    package = tiny_unet_package(tmp_path, context_slices=1)
    volume, _ = reoriented(ph.ct, ph.labels, *ORIENTATIONS["RAS"])
    engine = SliceInferenceEngine(package, device="cpu", batch_size=4, threads=1, tta_flip=True)
    labels = engine.predict(volume)
    assert labels.shape == volume.shape_zyx and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1, 2}
    # same answer as running the network by hand on one prepared batch
    from LiverTumorSegLib.orientation import canonicalize
    from LiverTumorSegLib.preprocessing import SlicePreprocessor

    canonical, reo = canonicalize(volume)
    prepared = SlicePreprocessor(package.preprocessing).prepare(canonical)
    x = torch.from_numpy(prepared.batch([5]))
    with torch.no_grad():
        p = torch.softmax(package.model(x), 1) + torch.flip(torch.softmax(package.model(torch.flip(x, [3])), 1), [3])
    expected_slice = np.argmax(prepared.restore(p.numpy() / 2), axis=1)[0]
    np.testing.assert_array_equal(reo.to_canonical(labels)[5], expected_slice)


def test_onnx_backend_matches_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    package = tiny_unet_package(tmp_path)
    rng = np.random.default_rng(0)
    x = rng.random((2, 1, 22, 30), dtype=np.float32)  # not a multiple of 4: the net pads internally
    torch_probs = SliceInferenceEngine(package, device="cpu", threads=1,
                                       precision="fp32").predict_batch_probabilities(x)
    onnx_probs = SliceInferenceEngine(package, device="cpu", threads=1, backend="onnx").predict_batch_probabilities(x)
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-4)


def test_onnx_backend_keeps_a_bounded_number_of_sessions(tmp_path, monkeypatch):
    """Every CT has its own network slice size; one engine serving a batch kept a session per CT (8 CTs: 8
    sessions, memory rising with every case). The last MAX_SESSIONS sizes are kept, and each still answers."""
    pytest.importorskip("onnxruntime")
    from LiverTumorSegLib.inference import onnx_backend

    package = tiny_unet_package(tmp_path)
    engine = SliceInferenceEngine(package, device="cpu", threads=1, backend="onnx")
    exports = []
    real_export = onnx_backend.export_onnx_bytes
    monkeypatch.setattr(onnx_backend, "export_onnx_bytes", lambda *a, **k: exports.append(a[1]) or real_export(*a, **k))
    rng = np.random.default_rng(2)
    sizes = [(16, 20), (18, 20), (16, 20), (20, 24), (22, 26), (16, 20)]
    for h, w in sizes:
        x = rng.random((1, 1, h, w), dtype=np.float32)
        reference = SliceInferenceEngine(package, device="cpu", threads=1,
                                         precision="fp32").predict_batch_probabilities(x)
        np.testing.assert_allclose(engine.predict_batch_probabilities(x), reference, atol=1e-4)
    predictor = next(v for v in vars(engine).values() if isinstance(v, onnx_backend.OnnxSlicePredictor))
    assert len(predictor._sessions) == onnx_backend.MAX_SESSIONS == 2
    assert list(predictor._sessions) == [(1, 22, 26), (1, 16, 20)]
    # the third (16, 20) came after two other sizes: exported again; the second one was still kept
    assert [tuple(s[1:]) for s in exports] == [(16, 20), (18, 20), (20, 24), (22, 26), (16, 20)]


def test_a_cuda_engine_keeps_the_callers_cudnn_autotuning_setting(tmp_path, monkeypatch):
    """Making a CUDA engine set torch.backends.cudnn.benchmark = False for the whole process: a notebook that had
    turned autotuning on for its own training lost it after one segmentation. The engine's forward passes turn it
    off only while they run. Runs without a GPU: the engine is made on a stand-in CUDA choice."""
    from LiverTumorSegLib.inference.device import DeviceChoice

    package = tiny_unet_package(tmp_path)
    monkeypatch.setattr(engine_module, "resolve_device", lambda device: DeviceChoice(torch.device("cuda"), device))
    monkeypatch.setattr(engine_module, "_model_on_device", lambda model, device: model)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)  # the caller's setting (restored after the test)
    engine = SliceInferenceEngine(package, device="cuda", amp=False)
    assert engine.device.type == "cuda" and torch.backends.cudnn.benchmark is True
    with engine_module.cudnn_autotuning_off():
        assert torch.backends.cudnn.benchmark is False
    assert torch.backends.cudnn.benchmark is True


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_segmentation_keeps_the_callers_cudnn_autotuning_setting(tmp_path, monkeypatch):
    ph = corner_phantom()
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    SliceInferenceEngine(tiny_unet_package(tmp_path), device="cuda", amp=False).predict(ph.ct)
    assert torch.backends.cudnn.benchmark is True


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_engine_matches_cpu(tmp_path):
    ph = corner_phantom()
    package = tiny_unet_package(tmp_path)
    # fp32 on the CPU too: "auto" would pick bf16 on a host CPU with AVX512-BF16/AMX (H100 machines have one)
    cpu = SliceInferenceEngine(package, device="cpu", threads=1, batch_size=4, precision="fp32")
    gpu = SliceInferenceEngine(package, device="cuda", amp=False)
    x = np.random.default_rng(1).random((3, 1, 32, 40), dtype=np.float32)
    # cuDNN may use TF32 for float32 convolutions on Ampere+: agreement to ~1e-3, not 1e-6
    np.testing.assert_allclose(gpu.predict_batch_probabilities(x), cpu.predict_batch_probabilities(x), atol=5e-3)
    labels = gpu.predict(ph.ct)
    assert labels.shape == ph.ct.shape_zyx and gpu.batch_size >= 1
    amp = SliceInferenceEngine(package, device="cuda", amp=True)
    assert amp.amp_dtype in (torch.bfloat16, torch.float16)
    np.testing.assert_allclose(amp.predict_batch_probabilities(x), cpu.predict_batch_probabilities(x), atol=3e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_out_of_memory_backs_off(tmp_path, monkeypatch):
    package = tiny_unet_package(tmp_path)
    engine = SliceInferenceEngine(package, device="cuda", batch_size=8)
    original = engine._submit_cuda

    def flaky(indices, x, prepared=None):
        if len(indices) > 2:
            raise torch.cuda.OutOfMemoryError("fake OOM")
        return original(indices, x, prepared)

    monkeypatch.setattr(engine, "_submit_cuda", flaky)
    x = np.random.default_rng(2).random((8, 1, 16, 16), dtype=np.float32)
    probs = engine.predict_batch_probabilities(x)
    assert probs.shape == (8, 3, 16, 16) and engine.batch_size == 2
    # a whole volume: the pieces come back restored on the GPU and are joined (labels and probability)
    ph = corner_phantom()
    engine.batch_size = 8
    labels, probability = engine.predict_with_probability(ph.ct)
    reference, reference_probability = SliceInferenceEngine(package, device="cuda", batch_size=2).predict_with_probability(ph.ct)
    assert engine.batch_size == 2
    np.testing.assert_array_equal(labels, reference)
    np.testing.assert_array_equal(probability, reference_probability)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_restore_on_the_gpu_matches_the_cpu_restore(tmp_path):
    """The CUDA path restores labels and probability on the GPU; the same network outputs restored on the CPU
    give the same maps but for float32 last-bit ties (a few voxels at most)."""
    package = tiny_unet_package(tmp_path)
    ph = corner_phantom()
    engine = SliceInferenceEngine(package, device="cuda", amp=False, batch_size=4)
    labels, probability = engine.predict_with_probability(ph.ct)
    cpu_restore = SliceInferenceEngine(package, device="cuda", amp=False, batch_size=4)
    submit_without_restore = cpu_restore._submit_cuda
    cpu_restore._submit_cuda = lambda indices, x, prepared=None: submit_without_restore(indices, x, None)
    labels_cpu, probability_cpu = cpu_restore.predict_with_probability(ph.ct)
    assert labels.shape == ph.ct.shape_zyx and probability.dtype == np.uint8
    assert (labels != labels_cpu).mean() < 1e-4
    assert np.abs(probability.astype(int) - probability_cpu.astype(int)).max() <= 1
    assert engine.last_timings["restore"] >= 0


def _nan_rows_forward(engine, rows):
    """Wrap ``engine._forward_logits`` so that the first ``rows`` network-grid rows of every slice are NaN."""
    original = engine._forward_logits

    def forward(xt, model=None):
        logits = original(xt, model).clone()
        logits[:, :, :rows] = float("nan")
        return logits

    engine._forward_logits = forward


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", [False, True])
def test_cuda_non_finite_probabilities_are_refused_not_read_as_background(tmp_path, amp):
    """The CUDA path restores on the GPU, where the argmax made NaN probabilities background without a word (the
    host check saw only uint8 labels): the GPU counts them per slice and the batch is refused like on the CPU."""
    from LiverTumorSegLib.errors import ModelPackageError

    package = tiny_unet_package(tmp_path)
    ph = corner_phantom()
    engine = SliceInferenceEngine(package, device="cuda", amp=amp, batch_size=4)
    clean = engine.predict(ph.ct)  # the same engine, unbroken, runs
    assert clean.shape == ph.ct.shape_zyx
    _nan_rows_forward(engine, 3)
    with pytest.raises(ModelPackageError, match=r"non-finite \(NaN or Inf\) probabilities on \d+ of \d+ network-grid"):
        engine.predict_with_probability(ph.ct)


def test_restored_batch_with_non_finite_counts_is_refused():
    """The host side of the GPU's count (CPU-runnable): a restored batch whose per-slice non-finite counts are not
    all zero is refused, naming the pixels and the slices; all zeros pass and the labels land."""
    from LiverTumorSegLib.errors import ModelPackageError

    engine = oracle_engine(batch_size=4)
    labels = np.zeros((6, 5, 5), dtype=np.uint8)
    restored = (np.full((2, 5, 5), 1, dtype=np.uint8), None)
    ok = engine_module._Pending([2, 3], restored, restored=True, non_finite=np.zeros(2, np.int64), grid_pixels=30)
    assert engine._finish(None, ok, labels) == 2 and labels[2:4].min() == 1 and labels[:2].max() == 0
    bad = engine_module._Pending([4, 5], restored, restored=True, non_finite=np.array([0, 7]), grid_pixels=30)
    with pytest.raises(ModelPackageError, match=r"on 7 of 60 network-grid pixels of slices 5\.\.5"):
        engine._finish(None, bad, labels)
    joined = engine_module._concatenate_pending([2, 3, 4, 5], [ok, bad])
    assert joined.non_finite_per_slice().tolist() == [0, 0, 0, 7] and joined.grid_pixels == 30


def test_engine_does_not_move_a_shared_package_model(tmp_path):
    package = tiny_unet_package(tmp_path)
    engine = SliceInferenceEngine(package, device="cpu", threads=1, precision="fp32")
    assert next(package.model.parameters()).device.type == "cpu"
    assert engine.model is package.model  # already on the CPU: no copy needed
    bf16 = SliceInferenceEngine(package, device="cpu", threads=1, precision="bf16")
    weight = next(p for p in package.model.parameters() if p.dim() == 4)
    assert bf16.model is not package.model and weight.is_contiguous()  # channels-last went to a copy


def test_argmax_channels_matches_numpy_including_ties():
    from LiverTumorSegLib.inference.engine import argmax_channels

    rng = np.random.default_rng(3)
    probs = rng.integers(0, 3, size=(4, 3, 5, 6)).astype(np.float32)  # many ties
    out = argmax_channels(probs)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.argmax(probs, axis=1))


def _argmax_by_numpy_comparisons(probs):
    """The numpy version argmax_channels replaced (the reference: same ties, same NaN handling)."""
    best = probs[:, 0].copy()
    labels = np.zeros(best.shape, dtype=np.uint8)
    for k in range(1, probs.shape[1]):
        better = probs[:, k] > best
        labels[better] = k
        np.maximum(best, probs[:, k], out=best)
    return labels


def test_argmax_channels_on_views_half_precision_and_nan():
    from LiverTumorSegLib.inference.engine import argmax_channels

    rng = np.random.default_rng(4)
    probs = rng.random((6, 4, 7, 9, 5)).astype(np.float32)
    probs[0, 1, 0, 0, 0] = np.nan
    probs[1, :, 2, 2, 2] = 0.25  # a four-way tie
    view = probs[::2, :, :, ::-1]  # neither contiguous nor positively strided
    for case in (view, view.astype(np.float16), probs[:, :1]):
        np.testing.assert_array_equal(argmax_channels(case), _argmax_by_numpy_comparisons(case))
    assert argmax_channels(probs)[1, 2, 2, 2] == 0
    assert not argmax_channels(probs[:, :1]).any()  # one class: all 0


def test_auto_backend_resolution(monkeypatch):
    from LiverTumorSegLib.inference import onnx_backend
    from LiverTumorSegLib.inference.engine import resolve_backend

    monkeypatch.setattr(onnx_backend, "onnx_available", lambda: True)
    monkeypatch.setattr(engine_module, "cpu_has_native_bf16", lambda: False)
    assert resolve_backend("auto", "cpu") == "onnx"
    # a CPU with native bf16: torch's bf16 beats ONNX Runtime's fp32 (1.8x the time per batch), unless fp32 is asked
    monkeypatch.setattr(engine_module, "cpu_has_native_bf16", lambda: True)
    assert resolve_backend("auto", "cpu") == "torch" and resolve_backend("auto", "cpu", precision="fp32") == "onnx"
    monkeypatch.setattr(engine_module, "cpu_has_native_bf16", lambda: False)
    assert resolve_backend("auto", "cuda") == "torch"
    assert resolve_backend("auto", "cpu", custom_predictor=True) == "torch"
    assert resolve_backend("torch", "cpu") == "torch" and resolve_backend("onnx", "cpu") == "onnx"
    monkeypatch.setattr(onnx_backend, "onnx_available", lambda: False)
    assert resolve_backend("auto", "cpu") == "torch"


def test_auto_backend_uses_onnx_and_falls_back_to_torch_when_export_fails(tmp_path, monkeypatch, caplog):
    pytest.importorskip("onnxruntime")
    from LiverTumorSegLib.inference import onnx_backend

    package = tiny_unet_package(tmp_path)
    rng = np.random.default_rng(1)
    x = rng.random((2, 1, 16, 20), dtype=np.float32)
    torch_probs = SliceInferenceEngine(package, device="cpu", threads=1,
                                       precision="fp32").predict_batch_probabilities(x)
    monkeypatch.setattr(engine_module, "cpu_has_native_bf16", lambda: False)  # else auto keeps torch's bf16
    auto = SliceInferenceEngine(package, device="cpu", threads=1, backend="auto")
    assert auto.backend == "onnx"
    np.testing.assert_allclose(auto.predict_batch_probabilities(x), torch_probs, atol=1e-4)

    def broken_export(*args, **kwargs):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(onnx_backend, "export_onnx_bytes", broken_export)
    auto = SliceInferenceEngine(package, device="cpu", threads=1, backend="auto")
    with caplog.at_level("WARNING"):
        probs = auto.predict_batch_probabilities(x)
    np.testing.assert_allclose(probs, torch_probs, atol=1e-6)
    assert auto.backend == "torch" and "using torch" in caplog.text
    assert "using torch on the CPU (fp32)" in auto.device_message
    assert auto.last_precision.get("note") == "torch fp32 after ONNX Runtime failed"
    # asked for by name: the user's to change (one line, exit 2), not an internal error
    explicit = SliceInferenceEngine(package, device="cpu", threads=1, backend="onnx")
    with pytest.raises(InputError, match="unsupported operator.*run it with --backend torch"):
        explicit.predict_batch_probabilities(x)
    # bf16 asked for: auto means torch (ONNX Runtime runs fp32), and onnx + bf16 is refused before any work
    assert SliceInferenceEngine(package, device="cpu", threads=1, backend="auto", precision="bf16").backend == "torch"


def test_an_automatic_onnx_backend_gives_way_to_torch_for_a_ct_run_in_boxes_of_several_sizes(tmp_path, monkeypatch):
    """An oblique CT's footprint runs give the network boxes of their own sizes, and ONNX exports the network once
    per size: a 20-slice CT tilted 20 degrees was exported 6 times, 2-3.5 x slower than torch (the inference audit).
    An automatically chosen ONNX backend gives way to torch there, said in the device message; asked for by name,
    ONNX is kept; one box changes nothing."""
    pytest.importorskip("onnxruntime")
    package = tiny_unet_package(tmp_path)
    monkeypatch.setattr(engine_module, "cpu_has_native_bf16", lambda: False)  # else auto keeps torch's bf16
    auto = SliceInferenceEngine(package, device="cpu", threads=1, backend="auto")
    assert auto.backend == "onnx"
    assert auto.use_torch_for_several_slice_sizes(1) is None and auto.backend == "onnx"
    before = auto.use_torch_for_several_slice_sizes(6)
    assert auto.backend == "torch" and "boxes of 6 sizes" in auto.device_message
    x = np.random.default_rng(0).random((2, 1, 16, 20), dtype=np.float32)
    assert auto.predict_batch_probabilities(x).shape == (2, 3, 16, 20)
    auto.restore_backend(before)  # the CT is done: a batch's next CT runs ONNX again, without that CT's message
    assert auto.backend == "onnx" and auto.device_message == before[1]
    explicit = SliceInferenceEngine(package, device="cpu", threads=1, backend="onnx")
    assert explicit.use_torch_for_several_slice_sizes(6) is None and explicit.backend == "onnx"


def soft_oracle_predictor(x_nchw):
    """Oracle with a known non-binary tumor probability: 0.6 on tumor voxels, 0.2 elsewhere."""
    probs = oracle_predictor(x_nchw)
    tumor = probs[:, 2] > 0
    out = np.empty_like(probs)
    out[:, 2] = np.where(tumor, 0.6, 0.2)
    out[:, 1] = np.where(tumor, 0.3, probs[:, 1] * 0.7)
    out[:, 0] = 1.0 - out[:, 1] - out[:, 2]
    return out


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_tumor_probability_lands_in_input_geometry_as_uint8(orientation):
    ph = corner_phantom()
    volume, expected = reoriented(ph.ct, ph.labels, *ORIENTATIONS[orientation])
    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=5,
                                  batch_predictor=soft_oracle_predictor)
    labels, probability = engine.predict_with_probability(volume)
    np.testing.assert_array_equal(labels, expected)
    assert probability.dtype == np.uint8 and probability.shape == volume.shape_zyx
    np.testing.assert_array_equal(probability, np.where(expected == 2, 153, 51))  # round(255 * 0.6), 255 * 0.2
    assert engine._probability_out is None  # the engine holds no CT's probability volume between CTs
    np.testing.assert_array_equal(engine.predict(volume), expected)  # plain predict unaffected afterwards
    with pytest.raises(InputError, match="no class 5"):
        engine.predict_with_probability(volume, class_index=5)


@pytest.mark.parametrize("class_index", [0, -1])
def test_the_background_class_probability_is_refused(class_index):
    """The map is 0 outside the network's crop (never run there): class 0's map said "background probability 0" in
    the air around the body, without a word (stop 76). -1 was refused already, as "no class -1", after the first
    batch; both are now refused before the network runs."""
    ph = corner_phantom()
    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=5,
                                  batch_predictor=soft_oracle_predictor)
    with pytest.raises(InputError, match=f"class_index {class_index} is not a foreground class"):
        engine.predict_with_probability(ph.ct, class_index=class_index)
    assert engine._probability_out is None
    np.testing.assert_array_equal(engine.predict_with_probability(ph.ct, class_index=1)[0], ph.labels)


def test_out_of_memory_back_off_logic_without_a_gpu(tmp_path, monkeypatch):
    """The CUDA back-off path driven with a fake submit on the CPU: batches above 2 slices 'run out of memory';
    the batch is split, results keep their order, and the engine remembers the smaller size."""
    from LiverTumorSegLib.errors import ResourceError
    from LiverTumorSegLib.inference.engine import _Pending

    package = tiny_unet_package(tmp_path)
    engine = SliceInferenceEngine(package, device="cpu", threads=1, batch_size=8)
    sizes = []

    def fake_submit_cuda(indices, x, prepared=None):
        sizes.append(len(indices))
        if len(indices) > 2:
            raise torch.cuda.OutOfMemoryError("fake OOM")
        return _Pending(indices, engine._torch_probabilities(x).numpy())

    monkeypatch.setattr(engine, "_submit_cuda", fake_submit_cuda)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    x = np.random.default_rng(3).random((8, 1, 16, 16), dtype=np.float32)
    probs = engine._submit_cuda_with_backoff(list(range(8)), x).get()
    np.testing.assert_allclose(probs, engine._torch_probabilities(x).numpy(), atol=1e-6)
    assert engine.batch_size == 2 and sizes == [8, 4, 2, 2, 4, 2, 2]

    def always_oom(indices, x, prepared=None):
        raise torch.cuda.OutOfMemoryError("fake OOM")

    monkeypatch.setattr(engine, "_submit_cuda", always_oom)
    with pytest.raises(ResourceError, match="device='cpu'"):
        engine._submit_cuda_with_backoff([0, 1], x[:2])


def test_flip_tta_refused_for_a_model_trained_without_flips():
    """The bundled-style metadata (training config without flips) makes --tta an error, not a silent loss."""
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.inference.engine import check_flip_tta_allowed, trained_with_lr_flips

    no_flips = {"training": {"config": {"augmentation": {"liver_shift_probability": 0.8}}}}
    with_flips = {"training": {"config": {"augmentation": {"flip_lr_probability": 0.5}}}}
    disabled = {"training": {"config": {"augmentation": {"enabled": False}}}}
    assert trained_with_lr_flips(no_flips) is False
    assert trained_with_lr_flips(with_flips) is True
    assert trained_with_lr_flips(disabled) is False
    assert trained_with_lr_flips({"training": {}}) is None
    assert trained_with_lr_flips(None) is None
    with pytest.raises(InputError, match="trained without mirroring") as refused:
        check_flip_tta_allowed(no_flips)
    # a library call names segment_file's and the engine's argument (it named tta=True, which they do not take)
    assert str(refused.value).startswith("tta_flip=True (SegmentationOptions: tta=True) averages")
    assert "Run without it," in str(refused.value)
    check_flip_tta_allowed(with_flips)   # allowed
    check_flip_tta_allowed({})           # unknown: allowed with a warning


def test_background_only_slices_by_hand():
    from LiverTumorSegLib.inference.engine import background_only_slices

    probs = np.zeros((4, 3, 2, 2), dtype=np.float32)
    probs[:, 0] = 0.99
    probs[:, 1] = 0.01
    probs[1, 1, 0, 1], probs[1, 0, 0, 1] = 0.6, 0.4            # slice 1: one liver pixel
    probs[2, 2, 1, 1] = 0.5 / 255.0                             # slice 2: tumor p rounds to 1 on a 0..255 scale
    probs[3, 0, 0, 0] = probs[3, 1, 0, 0] = 0.5                  # slice 3: a tie (kept: no margin)
    np.testing.assert_array_equal(background_only_slices(probs), [True, False, True, False])
    np.testing.assert_array_equal(background_only_slices(probs, class_index=2), [True, False, False, False])
    probs[0, 2, 0, 1] = 0.44 / 255.0                            # below 0.45/255: restores to round(255 p) = 0
    assert background_only_slices(probs, class_index=2)[0]
    probs[0, 2, 0, 1] = 0.46 / 255.0                            # not below it: restored
    assert not background_only_slices(probs, class_index=2)[0]
    assert background_only_slices(probs)[0]                     # labels only: the probability does not count
    probs[0, 2, 0, 0] = np.nan
    assert not background_only_slices(probs)[0]  # NaN: restore as before
    assert background_only_slices(probs[:, :1]).all()  # one class: always background


def test_probability_read_inside_labels_skips_background_slices_whatever_their_probability():
    """A network whose every class keeps a 1 % floor (tumor p = 0.01 -> round(2.55) = 3 everywhere): the exact
    run restores every slice; ``probability_everywhere=False`` leaves the two slices without liver (z 0 and 15
    of this phantom) at 0 and matches the exact run in every other slice, labels included."""
    ph = corner_phantom(shape_zyx=(16, 40, 44))

    def floored(x_nchw):
        return oracle_predictor(x_nchw) * np.float32(0.97) + np.float32(0.01)

    def engine():
        return SliceInferenceEngine(oracle_package(), batch_predictor=floored, device="cpu", threads=1, batch_size=4)

    labels, probability = engine().predict_with_probability(ph.ct)
    labels_inside, probability_inside = engine().predict_with_probability(ph.ct, probability_everywhere=False)
    empty = ~(ph.labels > 0).reshape(16, -1).any(axis=1)
    assert empty.tolist() == [True] + [False] * 14 + [True]  # the phantom this test reads
    np.testing.assert_array_equal(labels, labels_inside)
    np.testing.assert_array_equal(labels > 0, ph.labels > 0)  # the oracle is right, floor or not
    assert (probability[empty] == 3).all() and not probability_inside[empty].any()
    np.testing.assert_array_equal(probability_inside[~empty], probability[~empty])
    assert (probability[ph.labels == 2] >= 250).all()


# slices 40-87 of the bundled sample's 112 (3 mm): 28 slices without liver (where the restore-skip acts; the exact
# test skips some of them and not others) next to the liver's first 20 slices
SAMPLE_SLAB_Z = slice(40, 88)


def _sample_slab(z_range: slice):
    """The bundled sample CT's slices ``z_range`` (array axis 0 of ``(z, y, x)``), its origin moved to the first."""
    import dataclasses

    from LiverTumorSegLib import resources
    from LiverTumorSegLib.io import read_volume
    from LiverTumorSegLib.volume import CTVolume

    full = read_volume(resources.sample_ct_path())
    origin = full.geometry.index_to_lps([0, 0, z_range.start])  # (i, j, k) = (x, y, z)
    return CTVolume(full.array[z_range].copy(), dataclasses.replace(full.geometry, origin=tuple(origin)))


def test_skipping_background_slices_changes_no_voxel(monkeypatch):
    """The bundled model on a slab of the bundled abdomen-pelvis sample (most slices hold no liver): labels and
    tumor probability are identical with and without skipping the restore of background-only slices; with
    ``probability_everywhere=False`` (how ``segment`` reads it: inside the labels only) the labels and the
    probability wherever a label is not background are identical too. The slab (48 of the 112 slices) runs the
    three predictions in a third of the whole CT's time; the skip works slice by slice, so it is the same test."""
    from LiverTumorSegLib.package import load_model_package

    volume = _sample_slab(SAMPLE_SLAB_Z)
    engine = SliceInferenceEngine(load_model_package("default"), device="cpu", precision="fp32")
    real = engine_module.background_only_slices

    def run_counting(**kwargs):
        skipped = []

        def counting(probs, class_index=None):
            out = real(probs, class_index)
            skipped.append(int(out.sum()))
            return out

        monkeypatch.setattr(engine_module, "background_only_slices", counting)
        return engine.predict_with_probability(volume, **kwargs) + (sum(skipped),)

    labels, probability, skipped = run_counting()
    labels_inside, probability_inside, skipped_inside = run_counting(probability_everywhere=False)
    monkeypatch.setattr(engine_module, "background_only_slices",
                        lambda probs, class_index=None: np.zeros(len(probs), dtype=bool))
    labels_all, probability_all = engine.predict_with_probability(volume)
    # not vacuous: 48 slices, the liver on the last 20 (5,088 voxels, default v3); measured 20 skipped by the exact
    # test, which depends on the model's probability floor outside the body (default v3: 0.0011-0.0019, against
    # 0.0018), and 28 (every slice without liver) by the labels-only test
    assert skipped >= 10 and skipped_inside >= 25 and skipped_inside >= skipped
    assert (labels == 1).sum() > 4000 and probability.max() > 0  # and the liver is there
    np.testing.assert_array_equal(labels, labels_all)
    np.testing.assert_array_equal(probability, probability_all)
    np.testing.assert_array_equal(labels_inside, labels_all)
    inside = labels_all > 0
    np.testing.assert_array_equal(probability_inside[inside], probability_all[inside])
    outside_inside_run, outside_all = probability_inside[~inside], probability_all[~inside]
    assert ((outside_inside_run == 0) | (outside_inside_run == outside_all)).all()  # skipped: 0; else exact


def test_pieces_of_a_restored_batch_are_joined_in_order():
    """After a GPU out-of-memory split, restored pieces (labels, probability) are concatenated slice-wise."""
    from LiverTumorSegLib.inference.engine import _concatenate_pending, _Pending

    a = _Pending([0, 1], (np.full((2, 3, 4), 1, np.uint8), np.full((2, 3, 4), 10, np.uint8)), restored=True)
    b = _Pending([2], (np.full((1, 3, 4), 2, np.uint8), np.full((1, 3, 4), 20, np.uint8)), restored=True)
    joined = _concatenate_pending([0, 1, 2], [a, b])
    labels, probability = joined.get()
    assert joined.restored and labels.shape == (3, 3, 4)
    assert labels[:, 0, 0].tolist() == [1, 1, 2] and probability[:, 0, 0].tolist() == [10, 10, 20]
    without = _concatenate_pending([0, 1, 2], [_Pending([0, 1], (labels[:2], None), restored=True),
                                               _Pending([2], (labels[2:], None), restored=True)])
    assert without.get()[1] is None
    probs = _concatenate_pending([0, 1], [_Pending([0], np.zeros((1, 3, 2, 2))), _Pending([1], np.ones((1, 3, 2, 2)))])
    assert not probs.restored and probs.get()[:, 0, 0, 0].tolist() == [0.0, 1.0]


def test_onnx_running_out_of_memory_says_so_and_keeps_onnx(tmp_path, monkeypatch):
    """ONNX Runtime's 'Failed to allocate memory' was reported as 'ONNX Runtime could not run this network ...;
    run it with --backend torch' (torch needs as much), and auto switched to torch for good."""
    pytest.importorskip("onnxruntime")
    from LiverTumorSegLib.errors import ResourceError
    from LiverTumorSegLib.inference import onnx_backend

    Fail = type("Fail", (Exception,), {"__module__": "onnxruntime.capi.onnxruntime_pybind11_state"})

    def out_of_memory(self, x):
        raise Fail("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running ReorderOutput node. "
                   "Name:'ReorderOutput_token_77' Status Message: bfc_arena.cc:360 Failed to allocate memory for "
                   "requested buffer of size 154140672")

    monkeypatch.setattr(onnx_backend.OnnxSlicePredictor, "__call__", out_of_memory)
    monkeypatch.setattr(engine_module, "cpu_has_native_bf16", lambda: False)
    package = tiny_unet_package(tmp_path)
    x = np.zeros((2, 1, 16, 20), np.float32)
    for backend in ("onnx", "auto"):
        engine = SliceInferenceEngine(package, device="cpu", threads=1, backend=backend)
        with pytest.raises(ResourceError, match="Ran out of memory \\(Failed to allocate memory for requested "
                                                "buffer.*lowers what the network needs"):
            engine.predict_batch_probabilities(x)
        assert engine.backend == "onnx"


def test_two_engines_export_onnx_at_the_same_time(tmp_path):
    """torch.onnx.export is not thread-safe: two engines exporting at once in one process failed
    ('GLOBALS.in_onnx_export must be False')."""
    pytest.importorskip("onnxruntime")
    import threading

    package = tiny_unet_package(tmp_path)
    x = np.random.default_rng(3).random((2, 1, 16, 20), dtype=np.float32)
    reference = SliceInferenceEngine(package, device="cpu", threads=1, precision="fp32").predict_batch_probabilities(x)
    results, errors = {}, []

    def work(index):
        try:
            engine = SliceInferenceEngine(package, device="cpu", threads=1, backend="onnx")
            results[index] = engine.predict_batch_probabilities(x)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for index in range(3):
        np.testing.assert_allclose(results[index], reference, atol=1e-4)


@pytest.mark.parametrize("broken", [lambda p: p[:-1], lambda p: p[:, 0], lambda p: p[..., :-1, :], lambda p: None])
def test_a_batch_predictor_of_the_wrong_shape_gets_a_clear_error(broken):
    """One slice too few (or None) failed deep in the restore with "IndexError: boolean index did not match"."""
    engine = SliceInferenceEngine(oracle_package(), device="cpu", batch_size=4, threads=1,
                                  batch_predictor=lambda x: broken(oracle_predictor(x)))
    with pytest.raises(InputError, match=r"batch predictor returned shape .* must return \(4, K, 40, 44\)"):
        engine.predict(corner_phantom().ct)


@pytest.mark.parametrize("rows", [10, 40])
def test_non_finite_network_probabilities_are_refused_not_read_as_background(rows):
    """NaN probabilities became label 0 and probability 0 without a word: a network that overflowed on some rows
    (or all: "no liver found") gave a plausible-looking label map."""
    from LiverTumorSegLib.errors import ModelPackageError

    def nan_rows(x):
        probs = oracle_predictor(x)
        probs[:, :, :rows] = np.nan
        return probs

    engine = SliceInferenceEngine(oracle_package(), device="cpu", batch_size=4, threads=1, batch_predictor=nan_rows)
    with pytest.raises(ModelPackageError, match=rf"non-finite .* on {4 * rows * 44} of 7040 network-grid pixels"):
        engine.predict_with_probability(corner_phantom().ct)


@pytest.mark.parametrize("class_index", [1.5, True, "2"])
def test_a_class_index_that_is_not_a_whole_number_is_refused(class_index):
    """int(1.5) and int(True) wrote the liver's probability where a caller asked for something else."""
    engine = SliceInferenceEngine(oracle_package(), device="cpu", batch_size=4, threads=1,
                                  batch_predictor=oracle_predictor)
    with pytest.raises(InputError, match="class_index must be a whole number"):
        engine.predict_with_probability(corner_phantom().ct, class_index=class_index)
    assert engine.predict_with_probability(corner_phantom().ct, class_index=np.int64(2))[1].max() == 255


@pytest.mark.parametrize("prepared_ahead", [False, True])
def test_a_reoriented_ct_is_resampled_from_its_own_voxels_without_a_canonical_copy(monkeypatch, prepared_ahead):
    """A CT stored in another orientation (RAS, as most NIfTI files) was copied whole into the canonical layout and
    that copy held through the network loop: a second CT (2 bytes a voxel of int16) at the loop's peak. The
    preprocessing now reads a view of the CT's own voxels; the labels and probabilities are those of a contiguous
    canonical copy, voxel for voxel."""
    from LiverTumorSegLib.inference.prepared_input import prepare_input
    from LiverTumorSegLib.orientation import canonicalize
    from LiverTumorSegLib.preprocessing import SlicePreprocessor

    ph = corner_phantom()
    volume, _ = reoriented(ph.ct, ph.labels, *ORIENTATIONS["RAS"])
    assert not canonicalize(volume)[1].is_identity
    read_arrays = []
    prepare = SlicePreprocessor.prepare

    def recording_prepare(self, canonical, *args, **kwargs):
        read_arrays.append(canonical.array)
        return prepare(self, canonical, *args, **kwargs)

    monkeypatch.setattr(SlicePreprocessor, "prepare", recording_prepare)
    engine = oracle_engine(batch_size=5)
    if prepared_ahead:  # as segment does while the model loads
        engine.offer_prepared(prepare_input(volume, engine.preprocessing))
    labels, probability = engine.predict_with_probability(volume)
    assert len(read_arrays) == 1 and np.shares_memory(read_arrays[0], volume.array)
    monkeypatch.setattr(SlicePreprocessor, "prepare", prepare)
    # the network grid from the view is the one from a contiguous canonical copy, as the engine made before
    from_view = SlicePreprocessor(engine.preprocessing).prepare(canonicalize(volume, copy=False)[0]).hu_net
    from_copy = SlicePreprocessor(engine.preprocessing).prepare(canonicalize(volume)[0]).hu_net
    np.testing.assert_array_equal(from_view, from_copy)
    monkeypatch.setattr("LiverTumorSegLib.orientation.canonicalize", lambda vol, copy=True: canonicalize(vol))
    ref_labels, ref_probability = oracle_engine(batch_size=5).predict_with_probability(volume)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_array_equal(probability, ref_probability)


@pytest.mark.parametrize("orientation", ["RAS", "permuted"])
def test_a_probability_read_inside_the_labels_only_is_a_view_not_a_copy(orientation):
    """predict_with_probability(probability_everywhere=False) (segment without --probabilities: the map is read
    inside the labels only) copied the canonical map whole into a CT stored in another orientation: the copy made
    the zeros of every slice resident, 1 byte a voxel more from the network's end through post-processing and the
    report. It is now a view of the canonical map (owns no data), equal voxel for voxel to that copy; the map
    that is written out (probability_everywhere=True) stays a C-contiguous array of its own."""
    ph = corner_phantom()
    volume, _ = reoriented(ph.ct, ph.labels, *ORIENTATIONS[orientation])
    labels, probability = oracle_engine(batch_size=5).predict_with_probability(volume, probability_everywhere=False)
    assert probability.shape == volume.shape_zyx and probability.dtype == np.uint8
    assert not probability.flags.owndata
    everywhere_labels, everywhere = oracle_engine(batch_size=5).predict_with_probability(volume)
    assert everywhere.flags.c_contiguous and everywhere.flags.owndata
    np.testing.assert_array_equal(labels, everywhere_labels)
    from LiverTumorSegLib.orientation import plan_reorientation

    reorientation = plan_reorientation(volume.geometry, volume.shape_zyx)
    canonical_labels = reorientation.to_canonical(labels)
    restored = canonical_labels.any(axis=(1, 2))  # canonical slices with labels: restored; the others stay 0
    expected = reorientation.to_canonical(everywhere)
    expected[~restored] = 0
    np.testing.assert_array_equal(reorientation.to_canonical(probability), expected)
    assert probability[labels > 0].any()  # the lesion's own probability is there


def test_an_onnx_export_file_a_killed_run_left_is_removed_by_the_next_export(tmp_path, monkeypatch):
    """The ONNX export went to ``tmp{random}.onnx`` in the system's temporary folder: a run killed while exporting
    (SIGKILL, the out-of-memory killer) left the graph there (14.7 MB for the bundled model) with no sign of whose
    it was, for good. It was then named ``livertumorseg-onnx.{mark}-{random}.tmp.onnx``, and the next export removes
    those of this computer's ended processes; a running process's and other programs' files stay. The export is now
    made in memory: it writes no file there at all."""
    import functools
    import os
    import tempfile
    import time

    pytest.importorskip("onnx")
    from process_helpers import ended_process_id

    from LiverTumorSegLib import fileutil
    from LiverTumorSegLib.inference import onnx_backend
    from LiverTumorSegLib.processes import process_mark

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    mark = process_mark()
    dead_mark = mark.replace(mark.split("@")[0], f"{ended_process_id()}-2zqda")
    old = time.time() - 2 * fileutil.STALE_TEMPORARY_SECONDS
    names = {"killed": f"livertumorseg-onnx.{dead_mark}-k2c9x0ab.tmp.onnx",
             "running": f"livertumorseg-onnx.{mark}-q1w2e3r4.tmp.onnx", "other_program": "tmpk2c9x0ab.onnx"}
    for name in names.values():
        (tmp_path / name).write_bytes(b"partial")
        os.utime(tmp_path / name, (old, old))
    exported_to = []
    real_export = torch.onnx.export

    @functools.wraps(real_export)
    def recording_export(*args, **kwargs):
        exported_to.append(args[2])
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", recording_export)
    assert onnx_backend.export_onnx_bytes(torch.nn.Conv2d(1, 2, 3, padding=1), (1, 8, 8))
    assert len(exported_to) == 1 and isinstance(exported_to[0], io.BytesIO)  # no file
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([names["running"], names["other_program"]])


@pytest.mark.parametrize("backend", ["onnx", "auto"])
def test_a_failed_onnx_export_is_named_as_the_export_not_as_onnx_runtime(tmp_path, monkeypatch, backend):
    """PyTorch's TorchScript ONNX exporter warns that it will be removed; with warnings made errors (as many test
    setups do) the export raised, and the run said "ONNX Runtime could not run this network (DeprecationWarning:
    ...)". The export is named as the step that failed; --backend auto still continues on torch."""
    pytest.importorskip("onnxruntime")
    from LiverTumorSegLib.inference import onnx_backend

    def deprecated_export(*args, **kwargs):
        raise DeprecationWarning("You are using the legacy TorchScript-based ONNX export")

    monkeypatch.setattr(onnx_backend, "export_onnx_bytes", deprecated_export)
    monkeypatch.setattr(onnx_backend, "onnx_available", lambda: True)
    package = tiny_unet_package(tmp_path)
    engine = SliceInferenceEngine(package, device="cpu", threads=1, backend=backend, precision="fp32")
    if engine.backend != "onnx":
        pytest.skip("--backend auto chose torch on this machine")
    x = np.random.default_rng(0).random((1, 1, 16, 20), dtype=np.float32)
    if backend == "onnx":
        with pytest.raises(InputError) as refused:
            engine.predict_batch_probabilities(x)
        text = str(refused.value)
        assert text.startswith("PyTorch could not export this network to ONNX (DeprecationWarning: You are using")
        assert "ONNX Runtime could not run" not in text and text.endswith("; run it with --backend torch.")
    else:
        assert engine.predict_batch_probabilities(x).shape == (1, 3, 16, 20)
        assert engine.device_message.startswith("PyTorch could not export this network to ONNX")


def test_the_onnx_backend_runs_where_the_temporary_folder_cannot_be_written(tmp_path, monkeypatch):
    """The ONNX export was written to a file in the system's temporary folder and read back: a full one (a small
    /tmp on a cluster node) stopped ``segment --backend onnx`` with "ONNX Runtime could not run this network
    (OSError: [Errno 28] No space left on device); run it with --backend torch", naming neither the folder nor
    TMPDIR. The graph is exported in memory now, and runs as torch does. A temporary folder below a file stands
    for one that cannot be written (root ignores permissions)."""
    import tempfile

    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from LiverTumorSegLib.inference import onnx_backend

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    monkeypatch.setattr(tempfile, "tempdir", str(a_file / "tmp"))
    network = torch.nn.Conv2d(1, 2, 3, padding=1).eval()
    session = ort.InferenceSession(onnx_backend.export_onnx_bytes(network, (1, 8, 8)),
                                   providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(2, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = network(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(None, {"slices": x})[0], expected, atol=1e-5)


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_labels_and_a_written_probability_are_filled_in_the_cts_layout_without_a_copy_back(orientation,
                                                                                          monkeypatch):
    """The labels (and a probability map kept everywhere, to be written) were restored into a canonical array and
    then copied into the CT's own layout (from_canonical): 1 byte a voxel more at the network's end, 250 MiB of a
    512 x 512 x 1000 CT beside its labels. They are now written through the canonical view of an array in the CT's
    layout: the same voxels, C-contiguous, no copy back."""
    from LiverTumorSegLib.orientation import Reorientation

    ph = corner_phantom()
    volume, expected = reoriented(ph.ct, ph.labels, *ORIENTATIONS[orientation])

    def no_copy_back(self, arr):
        raise AssertionError("a canonical map was copied back into the CT's layout")

    monkeypatch.setattr(Reorientation, "from_canonical", no_copy_back)
    labels = oracle_engine(batch_size=5).predict(volume)
    assert labels.flags["C_CONTIGUOUS"] and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, expected)
    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=5,
                                  batch_predictor=soft_oracle_predictor)
    labels, probability = engine.predict_with_probability(volume)
    assert labels.flags["C_CONTIGUOUS"] and probability.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(probability, np.where(expected == 2, 153, 51))


def test_overlapping_autotuning_off_blocks_on_two_threads_give_the_callers_setting_back(monkeypatch):
    """Two engines' networks on two threads: each block put back the flag it found, so when they ended in the order
    they started (A in, B in, A out, B out) the second put back the first one's False, and the caller's autotuning
    stayed off for good. The flag is put back when the last block ends."""
    import threading

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)  # the caller's setting (restored after the test)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    during_b = []

    def engine_b():
        a_in.wait(60)
        with engine_module.cudnn_autotuning_off():
            b_in.set()
            a_out.wait(60)
            during_b.append(torch.backends.cudnn.benchmark)  # A's end left B's network untuned

    thread = threading.Thread(target=engine_b)
    thread.start()
    with engine_module.cudnn_autotuning_off():
        a_in.set()
        assert b_in.wait(60)
    a_out.set()
    thread.join(60)
    assert during_b == [False] and torch.backends.cudnn.benchmark is True


def test_out_of_memory_back_off_lasts_for_one_ct_only(tmp_path, monkeypatch):
    """One transient out-of-memory (another program briefly on the GPU) halves the batch for the CT it hit; the
    next CT of a batch run starts again at the chosen size (it kept the halved size for the rest of the dataset).
    The CUDA path is driven on the CPU with a fake submit."""
    from LiverTumorSegLib.inference.engine import _Pending

    package = tiny_unet_package(tmp_path)
    network = SliceInferenceEngine(package, device="cpu", threads=1, precision="fp32")
    engine = SliceInferenceEngine(package, device="cpu", threads=1, batch_size=8, precision="fp32")
    monkeypatch.setattr(engine, "device", torch.device("cuda"))
    monkeypatch.setattr(engine, "_device_batch_builder", lambda prepared: None)  # inputs built on the host
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    sizes, calls = [], []

    def oom_once(indices, x, prepared=None):
        sizes.append(len(indices))
        calls.append(len(indices))
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("fake transient OOM")
        return _Pending(indices, network.predict_batch_probabilities(x))

    monkeypatch.setattr(engine, "_submit_cuda", oom_once)
    ph = corner_phantom()
    first = engine.predict(ph.ct)
    assert sizes[:3] == [8, 4, 4] and engine.batch_size == 4  # the CT that hit it runs on at half size
    del sizes[:]
    second = engine.predict(ph.ct)
    assert sizes[0] == 8 and engine.batch_size == 8  # the next CT: the chosen size again
    np.testing.assert_array_equal(first, second)


class _DeepSupervisionNet(torch.nn.Module):
    """A network whose forward returns ``(main logits, coarser auxiliary logits)`` (deep supervision), or a list of
    them: the main logits are those of ``inner``, the auxiliary ones disagree with them everywhere."""

    def __init__(self, inner, as_list=False):
        super().__init__()
        self.inner, self.as_list = inner, as_list

    def forward(self, x):
        logits = self.inner(x)
        outputs = (logits, -logits[:, :, ::2, ::2])
        return list(outputs) if self.as_list else outputs


@pytest.mark.parametrize("backend", ["torch", "onnx"])
@pytest.mark.parametrize("as_list", [False, True])
def test_a_deep_supervision_network_is_read_by_its_main_output(tmp_path, backend, as_list):
    """A package whose network returns several outputs (deep supervision) segments with the first, main one: the
    same labels and probability as the plain network, with flip TTA too."""
    if backend == "onnx":
        pytest.importorskip("onnxruntime")
    import types

    package = tiny_unet_package(tmp_path)
    deep = types.SimpleNamespace(preprocessing=package.preprocessing, name="deep",
                                 model=_DeepSupervisionNet(package.model, as_list=as_list))
    volume = corner_phantom().ct
    kwargs = dict(device="cpu", threads=1, precision="fp32", backend=backend, tta_flip=True)
    labels, probability = SliceInferenceEngine(deep, **kwargs).predict_with_probability(volume)
    labels_plain, probability_plain = SliceInferenceEngine(package, **kwargs).predict_with_probability(volume)
    np.testing.assert_array_equal(labels, labels_plain)
    np.testing.assert_array_equal(probability, probability_plain)
    assert labels.max() >= 1


@pytest.mark.parametrize("method", ["predict", "predict_with_probability"])
def test_a_cancel_after_the_last_batch_is_honoured_and_progress_never_says_done(method):
    """The cancel comes after the network's last batch, while its labels are put in place (here: at the last
    progress report before 'done'): the call still ends cancelled, and the progress never reached 1.0 'done'."""
    token = CancellationToken()
    seen = []

    def progress(fraction, stage):
        seen.append((fraction, stage))
        if fraction >= 0.9:
            token.cancel()

    engine = oracle_engine(batch_size=64)
    with pytest.raises(CancelledError):
        getattr(engine, method)(corner_phantom().ct, progress=progress, cancel=token)
    assert seen and (1.0, "done") not in seen and max(f for f, _ in seen) >= 0.9


def test_predict_canonical_matches_predict_and_refuses_output_arrays_of_the_wrong_shape():
    """``predict_canonical`` on the canonical copy of a CT gives the labels ``predict`` gives, seen through the same
    canonical view; a probability or labels array of another shape than the CT's (z, y, x) is refused, naming both."""
    volume = corner_phantom().ct
    engine = oracle_engine(batch_size=3)
    labels = engine.predict(volume)
    canonical, reorientation, _ = engine._canonical_of(volume)
    probability = np.zeros(canonical.shape_zyx, dtype=np.uint8)
    np.testing.assert_array_equal(engine.predict_canonical(canonical, probability_out=probability),
                                  reorientation.canonical_view(labels))
    assert probability.max() == 255 and np.array_equal(probability == 255, reorientation.canonical_view(labels) == 2)
    with pytest.raises(ValueError, match=r"probability_out has shape \(1, 2, 3\), expected \(12, 40, 44\)"):
        engine.predict_canonical(canonical, probability_out=np.zeros((1, 2, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"labels_out has shape \(12, 40, 43\), expected \(12, 40, 44\)"):
        engine._predict_canonical(canonical, None, None, labels_out=np.zeros((12, 40, 43), dtype=np.uint8))


def test_a_package_with_a_dict_preprocessing_runs_and_one_without_a_network_is_refused():
    """A package object given by a caller with its preprocessing as a plain dict (as stored in the file's metadata)
    segments as with the config object; one without a network, and no batch predictor, is an InputError."""
    import types

    volume = corner_phantom().ct
    as_dict = types.SimpleNamespace(preprocessing=oracle_package().preprocessing.to_dict(), model=None, name="dict")
    engine = SliceInferenceEngine(as_dict, device="cpu", threads=1, batch_predictor=oracle_predictor)
    np.testing.assert_array_equal(engine.predict(volume), oracle_engine().predict(volume))
    with pytest.raises(InputError, match="no network to run"):
        SliceInferenceEngine(as_dict, device="cpu", threads=1)


def test_out_of_memory_back_off_retries_after_the_failed_batch_is_released(tmp_path, monkeypatch):
    """The back-off retried inside the except block, where the error's traceback held the failed batch's tensors:
    each smaller batch found the memory still taken and failed too, down to 'even with one slice per batch' (the
    GPU code audit). The real _submit_cuda runs on the CPU here with a fake GPU of 10 units (3 a slice)."""
    import contextlib
    import weakref

    from LiverTumorSegLib.inference import engine as engine_module

    budget, held, on_entry = 10, {"units": 0}, []

    def alloc(n):
        if held["units"] + n > budget:
            raise torch.cuda.OutOfMemoryError(f"fake: want {n}, {held['units']} of {budget} in use")
        t = torch.zeros(n)
        held["units"] += n
        weakref.finalize(t, lambda: held.__setitem__("units", held["units"] - n))
        return t

    class FakeGpuNet(torch.nn.Module):
        def forward(self, x):  # activations the forward holds in its locals (as a network's frames do)
            encoder = alloc(x.shape[0])
            decoder = alloc(x.shape[0])
            head = alloc(x.shape[0])
            return torch.zeros(x.shape[0], 3, x.shape[2], x.shape[3]) + 0 * (encoder.sum() + decoder.sum() + head.sum())

    class Event:
        def record(self, stream=None):
            pass

        def synchronize(self):
            pass

    package = engine_module.load_package(tiny_unet_package(tmp_path))
    package.model = FakeGpuNet()
    engine = SliceInferenceEngine(package, device="cpu", batch_size=8, precision="fp32", backend="torch")
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: self)
    monkeypatch.setattr(engine_module, "_to_pinned_host", lambda t: t.clone())
    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    real_submit = engine._submit_cuda

    def traced(indices, x, prepared=None):
        on_entry.append((len(indices), held["units"]))
        return real_submit(indices, x, prepared)

    monkeypatch.setattr(engine, "_submit_cuda", traced)
    x = np.zeros((8, 1, 16, 16), np.float32)
    probs = engine._submit_cuda_with_backoff(list(range(8)), x).get()
    assert probs.shape == (8, 3, 16, 16) and engine.batch_size == 2
    assert [units for _, units in on_entry] == [0] * len(on_entry)  # nothing of a failed batch held at a retry
    assert [size for size, _ in on_entry] == [8, 4, 2, 2, 4, 2, 2]


def test_cuda_precision_is_chosen_by_the_engines_own_gpu_and_its_native_bf16(monkeypatch):
    """torch.cuda.is_bf16_supported() answers True on a T4 or V100 from torch 2.3 on (it counts emulation) and judges
    the current device, not cuda:1: auto took bf16 there and --precision bf16 was never refused (the GPU audit)."""
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.inference.engine import _cuda_amp_dtype

    capabilities = {0: (8, 0), 1: (7, 0)}  # an A100 as cuda:0, a V100 as cuda:1
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: capabilities[index])
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert _cuda_amp_dtype("auto", True, torch.device("cuda:0")) is torch.bfloat16
    assert _cuda_amp_dtype("auto", True, torch.device("cuda:1")) is torch.float16
    assert _cuda_amp_dtype("auto", True, torch.device("cuda")) is torch.bfloat16  # the current device, cuda:0
    with pytest.raises(InputError, match="no native bf16"):
        _cuda_amp_dtype("bf16", True, torch.device("cuda:1"))
    assert _cuda_amp_dtype("fp32", True, torch.device("cuda:1")) is None
