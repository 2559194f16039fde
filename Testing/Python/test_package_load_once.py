"""Loading a package builds its network once: the network planned on the meta device gets CPU memory and the
package's weights (no second build, no random initial weights), for every architecture, with outputs bit-identical
to a network built for real and given the same weights; tampered weights still fail the integrity check."""
import os

import pytest
import torch

import LiverTumorSegLib.models as models
from LiverTumorSegLib import package as package_module
from LiverTumorSegLib.errors import ModelPackageError
from LiverTumorSegLib.models import build_model
from LiverTumorSegLib.package import load_model_package, save_model_package

from test_models import TINY  # small widths: the whole file runs in a few seconds on one CPU core


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1") or 1)))
    yield
    torch.set_num_threads(threads)


def _preprocessing(in_channels: int):
    """The default preset with enough context slices for ``in_channels`` (1, 3, 5, ...) window channels."""
    from LiverTumorSegLib.preprocessing import PreprocessingConfig

    config = PreprocessingConfig.preset("default").to_dict()
    config["channels"] = config["channels"][:1]
    config["context_slices"] = (in_channels - 1) // 2
    return PreprocessingConfig.from_dict(config)


def _saved_tiny(tmp_path, name: str, storage: str = "float32"):
    """``(path, trained-looking network in eval mode)``: a tiny network of ``name`` whose BatchNorm statistics
    are not the defaults (else a missed buffer would not show), saved as a package."""
    in_channels = 3
    torch.manual_seed(3)
    net = build_model(name, in_channels=in_channels, num_classes=3, **TINY[name])
    with torch.no_grad():
        for buffer_name, buffer in net.named_buffers():
            if buffer.is_floating_point():
                buffer.copy_(torch.rand_like(buffer) + 0.5)
            elif buffer_name.endswith("num_batches_tracked"):
                buffer.fill_(17)
    path = save_model_package(tmp_path / f"{name}.safetensors", net, _preprocessing(in_channels),
                              weights_storage=storage)
    return path, net.eval()


def _count_builds(monkeypatch):
    calls = []
    real = models.build_model

    def counting(*args, **kwargs):
        calls.append(torch.get_default_device().type if hasattr(torch, "get_default_device") else "?")
        return real(*args, **kwargs)

    monkeypatch.setattr(models, "build_model", counting)
    return calls


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_architecture_loads_with_one_build_and_the_same_outputs(tmp_path, monkeypatch, name):
    path, _ = _saved_tiny(tmp_path, name)
    calls = _count_builds(monkeypatch)
    loaded = load_model_package(path)
    assert len(calls) == 1  # the meta-device plan only; it built the network a second time (on the CPU) before
    monkeypatch.undo()
    meta = loaded.metadata
    tensors = package_module._from_storage_dtype(package_module._load_tensors(path, None), meta)
    reference = package_module._built_network_with_weights(tensors, path, meta["architecture"]).eval()
    assert not loaded.model.training
    tensors_of = [t for t in list(loaded.model.parameters()) + list(loaded.model.buffers())]
    assert all(t.device.type == "cpu" for t in tensors_of)
    assert all(isinstance(p, torch.nn.Parameter) and p.requires_grad for p in loaded.model.parameters())
    got, want = loaded.model.state_dict(), reference.state_dict()
    assert list(got) == list(want)
    assert all(torch.equal(got[k], want[k]) and got[k].dtype == want[k].dtype for k in want)
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 48)
    with torch.no_grad():
        out, expected = loaded.model(x), reference(x)
    out = out[0] if isinstance(out, (list, tuple)) else out
    expected = expected[0] if isinstance(expected, (list, tuple)) else expected
    assert torch.equal(out, expected)


def test_a_float16_package_loads_once_into_float32_weights(tmp_path, monkeypatch):
    path, net = _saved_tiny(tmp_path, "unet", storage="float16")
    calls = _count_builds(monkeypatch)
    loaded = load_model_package(path)
    assert len(calls) == 1
    for key, value in loaded.model.state_dict().items():
        original = net.state_dict()[key]
        assert value.dtype == original.dtype
        if value.is_floating_point():
            assert torch.equal(value, original.to(torch.float16).to(torch.float32))


def test_a_network_the_package_does_not_fill_is_built_for_real(tmp_path, monkeypatch):
    """A non-persistent buffer (not in the state dict) would stay uninitialised memory after ``to_empty``: such a
    network is built on the CPU as before, and keeps the buffer its constructor made."""
    path, _ = _saved_tiny(tmp_path, "unet")
    real = models.build_model

    def with_constant(*args, **kwargs):
        net = real(*args, **kwargs)
        net.register_buffer("constant", torch.full((3,), 2.5), persistent=False)
        return net

    monkeypatch.setattr(models, "build_model", with_constant)
    loaded = load_model_package(path)
    assert torch.equal(loaded.model.constant, torch.full((3,), 2.5))


def test_tampered_weights_still_fail_the_integrity_check(tmp_path):
    path, _ = _saved_tiny(tmp_path, "segnet")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40  # a bit of the last tensor's data
    tampered = tmp_path / "tampered.safetensors"
    tampered.write_bytes(bytes(data))
    with pytest.raises(ModelPackageError, match="failed its integrity check: the weights' SHA-256"):
        load_model_package(tampered)


def test_loading_leaves_the_callers_random_state_as_it_was(tmp_path):
    path, _ = _saved_tiny(tmp_path, "resnet18_fcn")
    torch.manual_seed(11)
    expected = torch.rand(4)
    torch.manual_seed(11)
    load_model_package(path)
    assert torch.equal(torch.rand(4), expected)


def test_a_fresh_process_s_load_imports_no_symbolic_shapes(tmp_path, monkeypatch):
    """``Module.to_empty`` on the meta device goes through ``torch._refs.empty_like``, which imports torch's symbolic
    shapes and sympy (0.9 s of a fresh process's load on a 2-core CPU). With the plan cache warm, a load in a fresh
    process imports neither. This process warms the cache (its key is the same: the same library, torch and model
    source), so one fresh process, not two, pays for importing torch and MONAI."""
    import subprocess
    import sys

    from LiverTumorSegLib import plan_cache

    path, _ = _saved_tiny(tmp_path, "unet")
    cache = tmp_path / "cache"
    monkeypatch.setenv("LIVERTUMORSEG_CACHE_DIR", str(cache))
    load_model_package(path)  # fills the plan cache (its meta forward may import sympy)
    assert (cache / plan_cache.CACHE_FILE).is_file()
    env = dict(os.environ, LIVERTUMORSEG_CACHE_DIR=str(cache), OMP_NUM_THREADS="1")
    script = ("import sys; from LiverTumorSegLib.package import load_model_package; "
              f"load_model_package({str(path)!r}); print('sympy' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("name", sorted(TINY))
def test_the_planning_build_skips_only_the_random_init_of_meta_tensors(name):
    """torch 2.8's meta-device ``uniform_`` imports sympy (0.7 s of a fresh load in Slicer's Python 3.9): the
    planning build skips the initialisation of meta tensors. The network it plans must be the same one: the same
    tensor names, shapes, dtypes and ``requires_grad``; a real tensor is still initialised under the mode."""
    def described(net):
        return {k: (tuple(v.shape), v.dtype, v.requires_grad) for k, v in net.state_dict(keep_vars=True).items()}

    with torch.device("meta"):
        plain = build_model(name, 3, 3, **TINY[name])
    with torch.device("meta"), package_module._meta_init_skipped():
        skipped = build_model(name, 3, 3, **TINY[name])
    assert described(skipped) == described(plain)
    assert all(v.is_meta for v in skipped.state_dict().values())
    real = torch.zeros(64)
    with package_module._meta_init_skipped():
        torch.nn.init.uniform_(real, 1.0, 2.0)
        mean = torch.zeros(8).normal_(5.0, 0.01).mean()
    assert bool((real >= 1.0).all()) and float(mean) == pytest.approx(5.0, abs=0.1)
