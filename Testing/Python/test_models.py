"""Every registered architecture: shapes on odd sizes, gradients, determinism, parameter counts, config
round trip, architecture-specific behaviour (SegNet pool indices, deep supervision, ConvLSTM), and a
learning test (each network overfits one phantom slice)."""
import json
import os
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from LiverTumorSegLib.errors import InputError, ModelPackageError
from LiverTumorSegLib.models import (
    available_models,
    build_model,
    default_options,
    describe_model,
    model_config,
    split_deep_supervision,
    unwrap_model,
)
from LiverTumorSegLib.models.layers import AttentionGate, ConvLSTMCell, crop_to_size, pad_to_multiple, run_conv_lstm
from seeding import seed_everything

PICKLE_LOADER_REFUSED = pytest.mark.skipif(
    tuple(int(n) for n in re.match(r"(\d+)\.(\d+)", torch.__version__).groups()) < (2, 6),
    reason="torch < 2.6: .pth weights are refused (CVE-2025-32434), which other tests check")


ALL = ["alexnet_fcn", "attention_unet", "dalunet", "resnet18_fcn", "resnet34_fcn", "resnet50_fcn", "segnet", "unet"]

# small widths so the whole file runs in well under two minutes on one CPU core
TINY = {
    "unet": dict(channels=(8, 16, 32), num_res_units=1),
    "segnet": dict(width=0.125),
    "resnet18_fcn": dict(width=0.125, decoder_channels=(32, 16, 16, 16, 16)),
    "resnet34_fcn": dict(width=0.125, decoder_channels=(32, 16, 16, 16, 16)),
    "resnet50_fcn": dict(width=0.125, decoder_channels=(32, 16, 16, 16, 16)),
    "alexnet_fcn": dict(width=0.125, fc_channels=512, dropout=0.0),
    "attention_unet": dict(channels=(8, 16, 32), deep_supervision=True),
    "dalunet": dict(channels=(8, 16, 32)),
}
DEEP_SUPERVISION = {"attention_unet", "dalunet"}


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread (fast on shared CPUs), or OMP_NUM_THREADS when set, so the file can be checked
    under other thread counts (float sums then round differently)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1") or 1)))
    yield
    torch.set_num_threads(threads)


def _tiny(name, in_channels=3, seed=0):
    torch.manual_seed(seed)
    return build_model(name, in_channels=in_channels, num_classes=3, **TINY[name])


def _n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_registry_lists_every_architecture():
    assert available_models() == ALL
    for name in ALL:
        assert describe_model(name)
        assert isinstance(default_options(name), dict)
    with pytest.raises(InputError, match="Unknown model architecture 'vit'"):
        build_model("vit")
    with pytest.raises(InputError, match="Unknown option"):
        build_model("unet", 1, 3, chanels=(8, 16))
    with pytest.raises(InputError, match="in_channels"):
        build_model("unet", 0, 3)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("size", [(67, 45), (96, 80)])
def test_output_shape_and_dtype_for_odd_sizes(name, size):
    model = _tiny(name).eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 3) + size and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert isinstance(model.size_multiple, int) and model.size_multiple >= 2


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_every_parameter_and_the_input(name):
    model = _tiny(name).train()
    x = torch.rand(2, 3, 40, 36, requires_grad=True)
    target = torch.randint(0, 3, (2, 40, 36))
    logits, aux = split_deep_supervision(model(x))
    loss = F.cross_entropy(logits, target) + sum(F.cross_entropy(a, target) for a in aux)
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == []


@pytest.mark.parametrize("name", ALL)
def test_eval_forward_is_deterministic(name):
    model = _tiny(name).eval()
    x = torch.rand(1, 3, 48, 40)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("name", ALL)
def test_model_config_rebuilds_identical_architecture(name):
    model = _tiny(name)
    cfg = model_config(model)
    assert set(cfg) == {"name", "in_channels", "num_classes", "options"}
    assert cfg["name"] == name and cfg["in_channels"] == 3 and cfg["num_classes"] == 3
    cfg = json.loads(json.dumps(cfg))  # survives a JSON round trip (as in a package)
    for rebuilt in (build_model(cfg["name"], cfg["in_channels"], cfg["num_classes"], **cfg["options"]),
                    build_model(**cfg)):
        a, b = model.state_dict(), rebuilt.state_dict()
        assert list(a) == list(b)
        assert all(a[k].shape == b[k].shape for k in a)
        assert model_config(rebuilt) == cfg
    wrapped = torch.nn.DataParallel(model)
    assert unwrap_model(wrapped) is model and model_config(wrapped) == model_config(model)


def test_model_config_refuses_foreign_modules():
    with pytest.raises(InputError, match="build_model"):
        model_config(torch.nn.Conv2d(1, 1, 1))


# default-width parameter counts (in_channels = 3, 3 classes; dalunet 3 slices x 3 channels = 9);
# built on the meta device so no memory is allocated.
DEFAULT_PARAM_RANGES = {
    "unet": (1.0e6, 2.5e6),
    "segnet": (2.8e7, 3.1e7),          # SegNet paper: 29.5 M
    "resnet18_fcn": (1.2e7, 1.7e7),
    "resnet34_fcn": (2.2e7, 2.7e7),
    "resnet50_fcn": (2.8e7, 3.6e7),
    "alexnet_fcn": (5.5e7, 6.2e7),     # AlexNet: ~57-61 M
    "attention_unet": (6e6, 1e7),
    "dalunet": (1e7, 2e7),
}


@pytest.mark.parametrize("name", ALL)
def test_parameter_counts_default_and_tiny(name):
    with torch.device("meta"):
        default = build_model(name, 9 if name == "dalunet" else 3, 3)
    lo, hi = DEFAULT_PARAM_RANGES[name]
    assert lo <= _n_params(default) <= hi
    assert 5e3 <= _n_params(_tiny(name)) <= 1e6


@pytest.mark.parametrize("depth, expected", [(18, 11_176_512), (34, 21_284_672), (50, 23_508_032)])
def test_resnet_encoder_matches_reference_parameter_count(depth, expected):
    """torchvision's resnet18/34/50 minus the fc layer have exactly these many parameters."""
    with torch.device("meta"):
        model = build_model(f"resnet{depth}_fcn", 3, 3)
    assert _n_params(model.encoder) == expected


def test_alexnet_layers_match_reference_parameter_counts():
    """AlexNet (single tower, no BN): conv1-5, FC6 (as 6x6 conv), FC7 (as 1x1 conv)."""
    with torch.device("meta"):
        model = build_model("alexnet_fcn", 3, 3, batch_norm=False)
    counts = [_n_params(getattr(model, k)) for k in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")]
    assert counts == [34_944, 614_656, 885_120, 1_327_488, 884_992, 37_752_832, 16_781_312]
    x = torch.rand(1, 3, 64, 96)
    tiny = _tiny("alexnet_fcn").eval()
    f1 = tiny.conv1(x)
    assert f1.shape[-2:] == (16, 24)  # 11x11 stride 4 -> H/4
    assert tiny.pool5(tiny.conv5(tiny.conv4(tiny.conv3(tiny.pool2(tiny.conv2(tiny.pool1(f1))))))).shape[-2:] == (2, 3)
    assert tiny.fc6(torch.rand(1, tiny.conv5[0].out_channels, 2, 3)).shape[-2:] == (2, 3)  # 6x6 "same"


def test_segnet_encoder_is_vgg16():
    model = _tiny("segnet")
    convs = [len([m for m in block.modules() if isinstance(m, torch.nn.Conv2d)]) for block in model.encoder]
    assert convs == [2, 2, 3, 3, 3]
    assert any(isinstance(m, torch.nn.MaxUnpool2d) for m in model.modules())
    with torch.device("meta"):
        full = build_model("segnet", 3, 3)
    widths = [block[0][0].out_channels for block in full.encoder]
    assert widths == [64, 128, 256, 512, 512]


def test_segnet_unpools_with_the_encoder_pool_indices():
    model = _tiny("segnet").train()  # batch statistics: an untrained net in eval mode is near-constant
    x = torch.rand(2, 3, 64, 64)
    pooled, received = [], []
    h1 = model.pool.register_forward_hook(lambda m, inp, out: pooled.append(out[1].clone()))
    h2 = model.unpool.register_forward_pre_hook(lambda m, args: received.append(args[1].clone()))
    with torch.no_grad():
        reference = model(x)
    h1.remove()
    h2.remove()
    assert len(pooled) == len(received) == 5
    for got, sent in zip(received, reversed(pooled)):
        assert torch.equal(got, sent)

    def scramble(module, args):
        inp, idx = args[0], args[1]
        return (inp, idx.flip(-1)) + tuple(args[2:])

    handle = model.unpool.register_forward_pre_hook(scramble)
    with torch.no_grad():
        scrambled = model(x)
    handle.remove()
    assert not torch.allclose(reference, scrambled)


def test_segnet_index_unpool_equals_torch_max_unpool():
    from LiverTumorSegLib.models.segnet import IndexUnpool2d

    x = torch.randn(2, 3, 8, 6)
    pooled, idx = F.max_pool2d(x, 2, 2, return_indices=True)
    src = pooled.clone().requires_grad_(True)
    got = IndexUnpool2d()(src, idx)
    assert torch.equal(got, F.max_unpool2d(pooled, idx, 2, 2))
    assert torch.equal(got != 0, x == F.max_pool2d(x, 2, 2).repeat_interleave(2, -1).repeat_interleave(2, -2))
    got.sum().backward()
    assert torch.equal(src.grad, torch.ones_like(pooled))


def test_segnet_exports_to_onnx_with_identical_output():
    """torch's MaxUnpool2d cannot be traced to ONNX; SegNet's scatter unpool can (the inference fast path)."""
    ort = pytest.importorskip("onnxruntime")
    from LiverTumorSegLib.inference.onnx_backend import export_onnx_bytes

    model = _tiny("segnet").eval()
    x = torch.rand(2, 3, 64, 64)
    session = ort.InferenceSession(export_onnx_bytes(model, (3, 64, 64)), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(x).numpy()
    got = session.run(None, {"slices": x.numpy()})[0]
    assert got.shape == (2, 3, 64, 64)
    assert np.allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("name", sorted(DEEP_SUPERVISION))
def test_deep_supervision_only_in_training_mode(name):
    model = _tiny(name).train()
    out = model(torch.rand(2, 3, 35, 50))
    assert isinstance(out, tuple) and len(out) == 2
    logits, aux = split_deep_supervision(out)
    assert logits.shape == (2, 3, 35, 50)
    assert len(aux) == 1 and all(a.shape == (2, 3, 35, 50) for a in aux)  # 3 levels -> 1 aux head
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 35, 50))
    assert isinstance(out, torch.Tensor)
    assert split_deep_supervision(out)[1] == []
    plain = build_model("attention_unet", 3, 3, channels=(8, 16, 32)).train()
    assert isinstance(plain(torch.rand(1, 3, 16, 16)), torch.Tensor)
    with torch.device("meta"):
        default_ds = build_model(name, 3, 3, deep_supervision=True)
    assert len(default_ds.decoder.aux_heads) == 3  # 5 levels: aux at H/8, H/4, H/2


def test_split_deep_supervision():
    t = torch.zeros(1)
    assert split_deep_supervision(t) == (t, [])
    logits, aux = split_deep_supervision((t, (t, t)))
    assert logits is t and aux == [t, t]
    with pytest.raises(ValueError, match="a sequence of length 3"):
        split_deep_supervision((t, t, t))


def test_dalunet_reads_slice_major_and_predicts_the_centre_slice():
    with pytest.raises(InputError, match="divisible"):
        build_model("dalunet", 4, 3, channels=(8, 16), num_slices=3)
    with pytest.raises(InputError, match="odd"):
        build_model("dalunet", 4, 3, channels=(8, 16), num_slices=2)
    torch.manual_seed(0)
    model = build_model("dalunet", 6, 3, channels=(8, 16), num_slices=3).eval()  # 2 channels per slice
    assert model.slice_channels == 2
    x = torch.rand(1, 6, 32, 32)
    with torch.no_grad():
        ref = model(x)
        # changing a neighbour slice changes the output (the ConvLSTM carries context) ...
        y = x.clone()
        y[:, 0:2] = torch.rand(1, 2, 32, 32)
        assert not torch.allclose(ref, model(y))
        # ... and so does changing the centre slice
        y = x.clone()
        y[:, 2:4] = torch.rand(1, 2, 32, 32)
        assert not torch.allclose(ref, model(y))


def test_dalunet_centre_skips_come_from_the_centre_slice():
    torch.manual_seed(1)
    model = build_model("dalunet", 6, 3, channels=(8, 16), num_slices=3, bidirectional=True).eval()
    x = torch.rand(1, 6, 16, 16)  # slice-major: slice s = channels (2s, 2s + 1)
    captured = []
    handle = model.decoder.gates[0].register_forward_hook(lambda m, inp, out: captured.append(inp[0]))
    with torch.no_grad():
        model(x)
        centre_features = model.encoder(x[:, 2:4])[0]
    handle.remove()
    assert torch.allclose(captured[0], centre_features, atol=1e-6)


def test_pad_and_crop_helpers():
    x = torch.arange(2 * 5 * 7, dtype=torch.float32).reshape(1, 2, 5, 7)
    padded, size = pad_to_multiple(x, 4)
    assert padded.shape == (1, 2, 8, 8) and size == (5, 7)
    assert torch.equal(padded[..., 5:, :7], x[..., 4:5, :].expand(1, 2, 3, 7))  # edge replicated
    assert torch.equal(crop_to_size(padded, size), x)
    same, _ = pad_to_multiple(torch.zeros(1, 1, 8, 16), 8)
    assert same.shape == (1, 1, 8, 16)
    # one multiple each way would leave a 1 x 1 deepest map: W gets a second multiple
    assert pad_to_multiple(torch.zeros(1, 1, 3, 4), 4)[0].shape == (1, 1, 4, 8)
    assert pad_to_multiple(torch.zeros(1, 1, 8, 8), 8)[0].shape == (1, 1, 8, 16)
    assert pad_to_multiple(torch.zeros(1, 1, 5, 4), 4)[0].shape == (1, 1, 8, 4)


@pytest.mark.parametrize("name", ALL)
def test_inputs_no_larger_than_one_multiple_run_in_eval_and_in_training_with_one_sample(name):
    """'Any H, W works' (models/__init__): a 1 x 1 or one-multiple square slice gave the deepest layers a 1 x 1
    map, which instance norm (the U-Net's default) refused in eval too, and batch norm in training with batch 1
    (`train --patch-size 16` with the 16-multiple U-Net ended in an internal error)."""
    model = _tiny(name)
    for size in ((1, 1), (model.size_multiple, model.size_multiple), (model.size_multiple - 1, 3)):
        x = torch.rand(1, 3, *size)
        model.eval()
        with torch.no_grad():
            assert model(x).shape == (1, 3) + size, size
        model.train()
        logits, _ = split_deep_supervision(model(x))
        assert logits.shape == (1, 3) + size, size


def test_conv_lstm_cell_known_values():
    cell = ConvLSTMCell(1, 1, kernel_size=3)
    with torch.no_grad():
        cell.gates.weight.zero_()
        cell.gates.bias.copy_(torch.tensor([100.0, 100.0, 100.0, 0.5]))  # i, f, o saturated to 1; g = 0.5
    outs = run_conv_lstm(cell, [torch.zeros(1, 1, 2, 2)] * 2)
    c1 = np.tanh(0.5)
    assert torch.allclose(outs[0], torch.full((1, 1, 2, 2), float(np.tanh(c1))), atol=1e-6)
    assert torch.allclose(outs[1], torch.full((1, 1, 2, 2), float(np.tanh(2 * c1))), atol=1e-6)


def test_attention_gate_weights_skip_between_zero_and_one():
    torch.manual_seed(0)
    gate = AttentionGate(4, 8, 2).eval()
    skip = torch.rand(2, 4, 16, 16)
    out = gate(skip, torch.rand(2, 8, 8, 8))
    assert gate.last_alpha is None  # not kept unless asked for (it held up to ~64 MB per network)
    gate.record_alpha = True
    out = gate(skip, torch.rand(2, 8, 8, 8))
    alpha = gate.last_alpha
    assert out.shape == skip.shape and alpha.shape == (2, 1, 16, 16)
    assert (alpha >= 0).all() and (alpha <= 1).all()
    assert torch.allclose(out, skip * alpha)


@PICKLE_LOADER_REFUSED
def test_resnet_pretrained_encoder_from_local_files(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(3)
    source = build_model("resnet18_fcn", 3, 3, width=0.125).encoder
    weights = {k: v.clone() for k, v in source.state_dict().items()}
    weights["fc.weight"] = torch.zeros(10, 64)  # classifier head, ignored
    st = tmp_path / "resnet18.safetensors"
    save_file(weights, str(st))
    pth = tmp_path / "resnet18.pth"
    torch.save({"state_dict": {"encoder." + k: v for k, v in weights.items()}}, pth)
    for path in (st, pth):
        model = build_model("resnet18_fcn", 1, 3, width=0.125, pretrained_encoder_path=str(path))
        got = model.encoder.state_dict()
        assert torch.equal(got["layer3.1.conv2.weight"], weights["layer3.1.conv2.weight"])
        # 3-channel conv1 adapted to 1 channel: mean over input channels x 3
        expected = weights["conv1.weight"].mean(dim=1, keepdim=True) * 3
        assert torch.allclose(got["conv1.weight"], expected)
        assert model_config(model)["options"]["pretrained_encoder_path"] is None
    with pytest.raises(InputError, match="does not fit"):
        build_model("resnet34_fcn", 3, 3, width=0.125, pretrained_encoder_path=str(st))
    with pytest.raises(ModelPackageError):
        build_model("resnet18_fcn", 3, 3, width=0.125, pretrained_encoder_path=str(tmp_path / "none.pth"))


def _phantom_slice():
    """One 64 x 64 phantom slice with liver (+ its two neighbours), HU windowed to [0, 1] by a clip."""
    from LiverTumorSegLib.phantom import make_phantom

    phantom = make_phantom((8, 64, 64), seed=0)
    z = 4
    hu = phantom.ct.array[z - 1: z + 2].astype(np.float32)
    x = torch.from_numpy(np.clip((hu + 160.0) / 400.0, 0.0, 1.0))[None]  # (1, 3, 64, 64): window 40/400
    y = torch.from_numpy(phantom.labels[z].astype(np.int64))[None]        # (1, 64, 64)
    assert (y >= 1).float().mean() > 0.05
    return x, y


def _liver_dice(logits, y) -> float:
    pred, truth = logits.argmax(1) >= 1, y >= 1
    return 2.0 * float((pred & truth).sum()) / float(pred.sum() + truth.sum())


def _recalibrate_batchnorm(model, x) -> int:
    """Set every BatchNorm's running mean and variance to the statistics of batch ``x``; returns their number.

    With one training slice (batch 1) and Adam moving the weights fast, the running averages (momentum 0.1)
    trail the statistics the weights were trained with, most in deep stacks (ResNet-50), so the eval-mode
    output can stay wrong (Dice 0) while the training loss falls; how far behind they trail depends on the
    CPU's float rounding. Recomputing them from ``x`` ("precise BN") makes eval mode normalise exactly as
    the training forward pass did: the biased variance, as used in the forward pass, not the unbiased one
    PyTorch stores, so that eval output equals train-mode output on ``x``.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    counts = {}

    def remember_count(module, inputs):
        counts[module] = inputs[0].numel() // inputs[0].shape[1]  # values per channel: N * H * W

    hooks = [m.register_forward_pre_hook(remember_count) for m in norms]
    momenta = [m.momentum for m in norms]
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average: after one batch, exactly that batch's statistics
        model.train()
        with torch.no_grad():
            model(x)
            for m in norms:
                n = counts[m]
                m.running_var.mul_((n - 1) / n if n > 1 else 1.0)
    finally:
        for hook in hooks:
            hook.remove()
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
    return len(norms)


def test_recalibrated_batchnorm_makes_eval_output_equal_training_output():
    model = _tiny("resnet50_fcn")
    x = torch.rand(1, 3, 64, 64) * 4.0 + 2.0  # far from the initial running stats (mean 0, variance 1)
    model.train()
    with torch.no_grad():
        train_mode = model(x)
    model.eval()
    with torch.no_grad():
        stale = model(x)
    assert _recalibrate_batchnorm(model, x) > 50
    model.eval()
    with torch.no_grad():
        eval_mode = model(x)
    # equal up to float rounding (BN over 2 x 2 pixels in the deepest layers amplifies it to ~1e-3)
    assert (eval_mode - train_mode).abs().max() < 0.02 < (stale - train_mode).abs().max()


@pytest.mark.parametrize("name", ALL)
def test_each_model_overfits_one_phantom_slice(name):
    """Every architecture can learn: 300 Adam steps on one slice reach liver Dice > 0.9 (eval mode, after BN
    recalibration). Seeded from the test seed; about 10-100 steps are needed on the seeds tried."""
    seed = seed_everything(ALL.index(name))
    x, y = _phantom_slice()
    model = _tiny(name, seed=seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    best = 0.0
    for step in range(1, 301):
        model.train()
        logits, aux = split_deep_supervision(model(x))
        loss = F.cross_entropy(logits, y) + sum(F.cross_entropy(a, y) for a in aux)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0:
            _recalibrate_batchnorm(model, x)
            model.eval()
            with torch.no_grad():
                best = max(best, _liver_dice(model(x), y))
            if best > 0.9:
                break
    assert best > 0.9, f"{name} reached liver Dice {best:.3f} only (seed {seed}, loss {float(loss):.3f})"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ALL)
def test_cuda_forward_matches_cpu(name):
    model = _tiny(name).eval()
    x = torch.rand(2, 3, 67, 45)
    with torch.no_grad():
        cpu = model(x)
        gpu = model.to("cuda")(x.to("cuda")).cpu()
    assert gpu.shape == cpu.shape
    assert torch.allclose(cpu, gpu, atol=1e-3, rtol=1e-3)


def test_deep_supervision_outputs_come_finest_first():
    """The loss halves the weight per auxiliary output in the order given; the decoder gave the deepest (8 px of a
    32 px input) first, so it weighed more than the 16 px one: the reverse of nnU-Net's weighting."""
    from LiverTumorSegLib.models.attention_unet import AttentionDecoder, UNetEncoder

    torch.manual_seed(0)
    channels = (4, 8, 16, 32)
    encoder, decoder = UNetEncoder(3, channels), AttentionDecoder(channels, 3, deep_supervision=True)
    logits, aux = decoder(encoder(torch.rand(1, 3, 32, 32)))
    assert logits.shape[-1] == 32 and [a.shape[-1] for a in aux] == [16, 8]


@pytest.mark.parametrize("name, options, rule", [
    ("attention_unet", {"deep_supervision": "false"}, "'deep_supervision' must be true or false"),
    ("dalunet", {"bidirectional": "no"}, "'bidirectional' must be true or false"),
    ("alexnet_fcn", {"batch_norm": "no"}, "'batch_norm' must be true or false"),
    ("attention_unet", {"channels": [16.5, 32]}, "'channels' must be a list of at least 2 whole numbers >= 1"),
    ("unet", {"channels": [0, 8, 16]}, "'channels' must be a list"),
    ("unet", {"channels": [8, -16, 32]}, "'channels' must be a list"),
    ("unet", {"channels": 16}, "'channels' must be a list"),
    ("unet", {"strides": [2, -2], "channels": [4, 8, 16]}, "'strides'"),
    ("unet", {"num_res_units": -1}, "'num_res_units' must be a whole number >= 0"),
    ("segnet", {"dropout": -0.5}, r"'dropout' must be a probability in \[0, 1\)"),
    ("alexnet_fcn", {"dropout": 1.0}, r"'dropout' must be a probability in \[0, 1\)"),
    ("segnet", {"width": "wide"}, "'width' must be a number > 0"),
    ("segnet", {"norm": None}, "'norm' must be a non-empty string"),
    ("alexnet_fcn", {"fc_channels": 0}, "'fc_channels' must be a whole number >= 1"),
    ("resnet18_fcn", {"decoder_channels": [0, 0, 0, 0, 0]}, "'decoder_channels'"),
    ("dalunet", {"lstm_kernel": 2}, "'lstm_kernel' must be an odd number >= 1"),
    ("dalunet", {"lstm_hidden": 0}, "'lstm_hidden' must be a whole number >= 1"),
    ("dalunet", {"num_slices": 3.5}, "'num_slices' must be an odd number >= 1"),
])
def test_option_values_of_the_wrong_type_or_range_are_refused_naming_the_rule(name, options, rule):
    """A string "false" switched deep supervision ON (truthy), "no" kept BatchNorm, 16.5 channels built 16 while
    recording 16.5, fc_channels 0 built 4 channels, negative channels or kernels died in torch with a traceback."""
    with torch.device("meta"), pytest.raises(InputError, match=f"model '{name}': {rule}"):
        build_model(name, 9 if name == "dalunet" else 3, 3, **options)


@pytest.mark.parametrize("in_channels, num_classes", [(3.7, 3), (None, 3), ("3", 3), (3, 0), (True, 3)])
def test_channel_counts_must_be_whole_numbers(in_channels, num_classes):
    """3.7 input channels built a 3-channel network (int() cut it) and None died with a TypeError."""
    with pytest.raises(InputError, match="must be whole numbers >= 1"):
        build_model("unet", in_channels, num_classes, channels=(4, 8))


def test_whole_float_options_are_recorded_as_ints_so_the_package_reloads():
    with torch.device("meta"):
        model = build_model("unet", 3.0, 3, channels=[4.0, 8.0], num_res_units=1.0)
    cfg = model_config(model)
    assert cfg["in_channels"] == 3 and type(cfg["in_channels"]) is int
    assert cfg["options"]["channels"] == [4, 8] and all(type(c) is int for c in cfg["options"]["channels"])
    assert type(cfg["options"]["num_res_units"]) is int


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("shape, message", [
    ((3, 16, 16), r"4 dimensions, got shape \(3, 16, 16\) \(add the batch dimension"),
    ((1, 4, 16, 16), r"takes 3 input channels \(dimension 1\), got 4"),
    ((1, 3, 0, 5), "H and W must be at least 1 pixel, got H=0, W=5"),
    ((0, 3, 16, 16), r"the batch holds no slices \(N = 0"),   # instance norm failed inside; batch norm passed
])
def test_wrong_input_shapes_get_an_error_naming_the_rule(name, shape, message):
    """torch's errors named the internally padded shape ('expected input[1, 4, 32, 64] to have 3 channels' for a
    32 x 32 input), or for MONAI's U-Net on an unbatched slice 'Sizes of tensors must match'."""
    model = build_model(name, 3, 3, **TINY[name]).eval()
    with pytest.raises(ValueError, match=message), torch.no_grad():
        model(torch.zeros(shape))


@pytest.mark.parametrize("value", ["abc", None, [3], True, 3.5])
def test_slice_grouping_check_leaves_a_non_number_to_build_models_rule(value):
    """slice_grouping_problem ran int() on num_slices first: 'abc' gave 'invalid literal for int()', None and [3]
    a TypeError, True counted as 1 slice, before build_model could name the rule."""
    from LiverTumorSegLib.training.trainer import check_model_spec

    with pytest.raises(InputError, match="'num_slices' must be an odd number >= 1"):
        check_model_spec("dalunet", 9, {"num_slices": value, "channels": [4, 8]}, slices_per_input=3)


@pytest.mark.parametrize("norm", ["group", "layer", "none", "localresponse"])
def test_unet_norm_names_its_choices(norm):
    """'group' and 'layer' died in MONAI with 'GroupNorm.__init__() missing 1 required positional argument'."""
    with pytest.raises(InputError, match="norm must be 'instance' or 'batch' for MONAI's U-Net"):
        build_model("unet", 3, 3, channels=(4, 8), norm=norm)


@pytest.mark.parametrize("act", ["geglu", "softmax", "LOGSOFTMAX"])
def test_unet_act_takes_only_activations_that_act_on_each_value(act):
    """MONAI's GEGLU halves the last axis: the U-Net built and its first forward failed, which train reported as an
    internal error; SOFTMAX and LOGSOFTMAX normalise across an axis (the architecture audit)."""
    with pytest.raises(InputError, match=r"act must be one of PRELU, RELU, .*, got '" + act + "'"):
        build_model("unet", 3, 3, channels=(4, 8), act=act)
    model = build_model("unet", 3, 3, channels=(4, 8), act="gelu")  # an elementwise one builds and runs
    assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 3, 16, 16)


def test_readme_architecture_table_matches_the_parameter_counts():
    """The README's architecture table (parameters at default widths, 3 input channels) against build_model."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    rows = {}
    for line in readme.splitlines():
        match = re.match(r"\| (`[a-z0-9_]+`(?:, `[a-z0-9_]+`)*) \| ([0-9.]+(?: / [0-9.]+)*) M \|", line)
        if match:
            names = re.findall(r"`([a-z0-9_]+)`", match.group(1))
            rows.update(zip(names, match.group(2).split(" / ")))
    assert sorted(rows) == sorted(ALL)
    for name, text in rows.items():
        with torch.device("meta"):
            count = _n_params(build_model(name, 3, 3))
        assert f"{count / 1e6:.{len(text.split('.')[1])}f}" == text, name


@PICKLE_LOADER_REFUSED
def test_resnet_pretrained_encoder_without_batchnorm_step_counters_loads_as_torch_loads_it(tmp_path):
    """torchvision's ImageNet ResNet files predate BatchNorm's num_batches_tracked counters; torch's own loader fills
    them, while ours called them missing keys and said 'use weights of the same depth and width', which they were
    (the architecture audit). A file whose names are not torchvision's still says what is wrong."""
    torch.manual_seed(4)
    source = build_model("resnet18_fcn", 3, 3, width=0.125).encoder
    weights = {k: v.clone() for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old_resnet18.pth"
    torch.save(weights, path)
    model = build_model("resnet18_fcn", 3, 3, width=0.125, pretrained_encoder_path=str(path))
    got = model.encoder.state_dict()
    assert all(torch.equal(got[k], weights[k]) for k in weights)
    assert all(int(got[k]) == 0 for k in got if k.endswith("num_batches_tracked"))
    torch.save({"features." + k: v for k, v in weights.items()}, tmp_path / "other_names.pth")
    with pytest.raises(InputError, match=r"does not fit this ResNet: \d+ missing keys .* key names must be "
                                         r"torchvision's") as raised:
        build_model("resnet18_fcn", 3, 3, width=0.125, pretrained_encoder_path=str(tmp_path / "other_names.pth"))
    assert "same depth" not in str(raised.value)


def test_a_pickle_weights_file_is_not_read_with_a_torch_whose_restricted_loader_has_a_known_flaw(tmp_path):
    """torch 2.1-2.5, which the package accepts, let a crafted file run code through torch.load(weights_only=True)
    (CVE-2025-32434, fixed in 2.6): a downloaded pretrained_encoder_path .pth is refused there, with what to do; a
    .safetensors file is read with any torch (the file-safety audit)."""
    from LiverTumorSegLib.errors import ModelPackageError
    from LiverTumorSegLib.package import refuse_pickle_loader_with_known_flaws

    for old in ("2.5.1+cu121", "2.1.0", "1.13.1"):
        with pytest.raises(ModelPackageError, match=r"CVE-2025-32434, fixed in torch 2\.6.*\.safetensors"):
            refuse_pickle_loader_with_known_flaws(tmp_path / "r.pth", old)
    for fine in ("2.6.0", "2.13.0+cpu", "3.0.0", "unknown"):
        refuse_pickle_loader_with_known_flaws(tmp_path / "r.pth", fine)


def test_readme_family_table_gives_the_bundled_packages_file_sizes():
    """The family table's 'file' column and its 'at most N MB each' against the bundled files (MB = 10^6 bytes):
    the families' re-stored robustness tables grew each file by 28 KB and the table kept the old sizes (8.5 for
    8.55 MB, 7.2 for 7.27; the docs audit)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text(encoding="utf-8")
    models = root / "Resources" / "Models"
    sizes = {}
    for line in readme.splitlines():
        match = re.match(r"\| `([a-z0-9_]+)`(?: \(v\d+\))? \| [^|]+ \| [0-9.]+ M \| ([0-9.]+) MB \|", line)
        if match:
            sizes[match.group(1)] = float(match.group(2))
    files = {path.stem: path.stat().st_size / 1e6 for path in models.glob("*.safetensors")}
    assert sorted(sizes) == sorted(files)
    for name, megabytes in sizes.items():
        assert f"{files[name]:.1f}" == f"{megabytes:.1f}", name
    most = float(re.search(r"at most ([0-9.]+) MB each", readme).group(1))
    families = [size for name, size in files.items() if name != "default"]
    assert max(families) <= most < max(families) + 0.02
