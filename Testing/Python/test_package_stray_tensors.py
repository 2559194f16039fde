"""The one-build model load (package._fully_loadable) builds a network for real when it keeps a tensor that the
package does not fill: a plain attribute, and, since 30 Nov 2026, one held in a list, tuple or dict attribute
(left as the meta device made it, it failed with a device error at the first forward)."""
import pytest
import torch

import LiverTumorSegLib.models as models
from LiverTumorSegLib.package import _fully_loadable, _holds_tensor, load_model_package

from test_package_load_once import _saved_tiny


@pytest.mark.parametrize("holder", ["list", "tuple", "dict", "nested"])
def test_a_tensor_kept_in_a_container_attribute_makes_the_network_be_built_for_real(tmp_path, monkeypatch, holder):
    path, _ = _saved_tiny(tmp_path, "unet")
    real = models.build_model
    kept = {"list": lambda t: [t], "tuple": lambda t: (1, t), "dict": lambda t: {"scale": t},
            "nested": lambda t: {"anchors": [(0, t)]}}[holder]

    def with_constant(*args, **kwargs):
        net = real(*args, **kwargs)
        net.constants = kept(torch.full((3,), 2.5))
        return net

    monkeypatch.setattr(models, "build_model", with_constant)
    loaded = load_model_package(path)
    held = loaded.model.constants
    tensor = {"list": lambda c: c[0], "tuple": lambda c: c[1], "dict": lambda c: c["scale"],
              "nested": lambda c: c["anchors"][0][1]}[holder](held)
    assert tensor.device.type == "cpu" and torch.equal(tensor, torch.full((3,), 2.5))


def test_the_modules_own_registries_and_plain_values_are_not_stray_tensors():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    net.names = ["a", "b"]
    net.sizes = {"k": (3, 3)}
    assert _fully_loadable(net, net.state_dict())
    assert not _holds_tensor(["x", {"y": (1, 2.0)}, b"z"])
    assert _holds_tensor({"a": [(torch.zeros(1),)]}) and not _holds_tensor({"a": [[[torch.zeros(1)]]]}, depth=2)
