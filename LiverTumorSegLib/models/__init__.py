"""Registry of the 2D liver/tumor segmentation networks.

Every network takes ``(N, C, H, W)`` float32 and returns logits ``(N, num_classes, H, W)`` for the same
H and W (classes 0 background, 1 liver, 2 tumor). Each architecture pads its input internally (edge
replication at the bottom/right) to the multiple its pooling needs and crops the logits back, so **any
H, W works**; ``model.size_multiple`` tells which multiple avoids the padding (use it as the
preprocessing ``size_multiple`` for zero waste).

Models with deep supervision return, in training mode only, ``(logits, [aux_logits, ...])`` with every
auxiliary output already resized to (N, num_classes, H, W); in eval mode only the logits tensor.
Use :func:`split_deep_supervision` to handle both.

::

    model = build_model("unet", in_channels=9, num_classes=3, channels=(16, 32, 64))
    cfg = model_config(model)      # {"name", "in_channels", "num_classes", "options"} (JSON-able)
    same = build_model(cfg["name"], cfg["in_channels"], cfg["num_classes"], **cfg["options"])

``import LiverTumorSegLib.models`` imports no torch; torch loads when a model is built.
"""
import copy
import importlib
from typing import Any, Dict, List, Optional, Tuple

from ..errors import InputError

# name -> (module in this package, fixed keyword arguments, one-line description)
_ARCHITECTURES: Dict[str, Tuple[str, Dict[str, Any], str]] = {
    "unet": ("unet", {}, "MONAI residual U-Net (the U-Net of Dhanush et al. and of Kulkarni et al.)"),
    "segnet": ("segnet", {}, "SegNet: VGG16 encoder, decoder unpools with the encoder's max-pool indices "
                             "(as in Dhanush et al.)"),
    "resnet18_fcn": ("resnet_fcn", {"depth": 18}, "ResNet-18 encoder + U-Net-style upsampling decoder "
                                                  "(as in Elmenabawy et al.)"),
    "resnet34_fcn": ("resnet_fcn", {"depth": 34}, "ResNet-34 encoder + U-Net-style upsampling decoder"),
    "resnet50_fcn": ("resnet_fcn", {"depth": 50}, "ResNet-50 (bottleneck) encoder + upsampling decoder "
                                                  "(the ResNet-50 FCN of Kulkarni et al.)"),
    "alexnet_fcn": ("alexnet_fcn", {}, "CDNN-AlexNet: AlexNet convs, FC6/FC7 as convs, transposed-conv decoder "
                                       "(Elmenabawy et al.)"),
    "attention_unet": ("attention_unet", {}, "Attention U-Net (AU-Net), optional deep supervision (as in Li et al.)"),
    "dalunet": ("dalunet", {}, "DALU-Net: attention U-Net + deep supervision + ConvLSTM over slices (Li et al.)"),
}

_CONFIG_ATTR = "_livertumorseg_config"


def available_models() -> List[str]:
    """Names accepted by :func:`build_model`, sorted."""
    return sorted(_ARCHITECTURES)


def describe_model(name: str) -> str:
    """One-line description of architecture ``name``."""
    return _architecture(name)[2]


def _architecture(name: str) -> Tuple[str, Dict[str, Any], str]:
    if name not in _ARCHITECTURES:
        raise InputError(f"Unknown model architecture '{name}'; available: {', '.join(available_models())}.")
    return _ARCHITECTURES[name]


def _module(name: str):
    return importlib.import_module(f"{__name__}.{_architecture(name)[0]}")


def default_options(name: str) -> Dict[str, Any]:
    """The options (with their defaults) architecture ``name`` accepts."""
    return _json_able(copy.deepcopy(_module(name).DEFAULT_OPTIONS))


def training_output_count(name: str, options: Optional[Dict[str, Any]] = None) -> int:
    """Outputs architecture ``name`` gives in training mode: 1, or with ``deep_supervision`` the main output plus
    one auxiliary head per decoder level but the last (``len(channels) - 1`` in all)."""
    resolved = dict(default_options(name), **(options or {}))
    if resolved.get("deep_supervision"):
        return max(1, len(resolved.get("channels") or ()) - 1)
    return 1


def _json_able(value: Any) -> Any:
    """Tuples -> lists recursively, so options survive a JSON round trip unchanged."""
    if isinstance(value, (list, tuple)):
        return [_json_able(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_able(v) for k, v in value.items()}
    return value


def slice_grouping_problem(name: str, options: Dict[str, Any], slices_per_input: int) -> str:
    """Why a network that splits its input channels into slices (DALU-Net's ``num_slices``: a ConvLSTM over
    neighbouring slices) cannot take what the preprocessing stacks (``2 * context_slices + 1`` slices), or
    "" when it can or the network takes its channels flat. Without this check, ``context_slices 0`` made the
    ConvLSTM run over the three HU windows of one slice and ``2`` cut five slices into three groups."""
    if name not in _ARCHITECTURES or "num_slices" not in _module(name).DEFAULT_OPTIONS:
        return ""
    wanted = int((options or {}).get("num_slices", _module(name).DEFAULT_OPTIONS["num_slices"]))
    if wanted == int(slices_per_input):
        return ""
    return (f"{name} runs over num_slices={wanted} neighbouring slices, but the preprocessing stacks "
            f"{slices_per_input} (context_slices {(slices_per_input - 1) // 2}); set the model option num_slices to "
            f"{slices_per_input} or context_slices to {(wanted - 1) // 2}.")


def build_model(name: str, in_channels: int = 1, num_classes: int = 3, **options: Any):
    """Build architecture ``name`` for ``in_channels`` input channels and ``num_classes`` output classes.

    ``build_model(**model_config(model))`` (options nested under ``options=``) works too.
    Unknown option names raise :class:`~LiverTumorSegLib.errors.InputError` listing the valid ones.
    The resolved options (defaults filled in) are recorded for :func:`model_config`; options listed
    in the architecture's ``TRANSIENT_OPTIONS`` (e.g. ``pretrained_encoder_path``) act at build time
    only and are recorded as their default, since the weights then live in the state dict.
    """
    module = _module(name)
    fixed = _architecture(name)[1]
    if isinstance(options.get("options"), dict) and "options" not in module.DEFAULT_OPTIONS:
        # build_model(**model_config(m)) form: options nested under "options"
        nested = options.pop("options")
        options = dict(nested, **options)
    unknown = sorted(set(options) - set(module.DEFAULT_OPTIONS))
    if unknown:
        raise InputError(f"Unknown option(s) {unknown} for model '{name}'; valid options: "
                         f"{sorted(module.DEFAULT_OPTIONS)}.")
    if int(in_channels) < 1 or int(num_classes) < 1:
        raise InputError(f"in_channels ({in_channels}) and num_classes ({num_classes}) must be >= 1.")
    resolved = copy.deepcopy(module.DEFAULT_OPTIONS)
    resolved.update(options)
    try:
        model = module.build(int(in_channels), int(num_classes), **fixed, **resolved)
    except (ValueError, TypeError) as exc:
        raise InputError(f"Invalid options for model '{name}': {exc}") from exc
    recorded = dict(resolved)
    for key in getattr(module, "TRANSIENT_OPTIONS", ()):
        recorded[key] = module.DEFAULT_OPTIONS[key]
    setattr(model, _CONFIG_ATTR, {"name": name, "in_channels": int(in_channels),
                                  "num_classes": int(num_classes), "options": _json_able(recorded)})
    return model


def unwrap_model(model):
    """The plain module inside DistributedDataParallel / DataParallel (``.module``) or
    ``torch.compile`` (``._orig_mod``) wrappers."""
    seen = 0
    while seen < 8:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif hasattr(model, "module") and not hasattr(model, _CONFIG_ATTR):
            model = model.module
        else:
            break
        seen += 1
    return model


def model_config(model) -> Dict[str, Any]:
    """``{"name", "in_channels", "num_classes", "options"}`` of a model made by :func:`build_model`
    (wrappers are unwrapped). JSON-serialisable; ``build_model(**cfg)`` rebuilds the same architecture."""
    plain = unwrap_model(model)
    cfg = getattr(plain, _CONFIG_ATTR, None)
    if cfg is None:
        raise InputError(f"{type(plain).__name__} was not built by LiverTumorSegLib.models.build_model, "
                         f"so its configuration is unknown; build it with build_model().")
    return copy.deepcopy(cfg)


def split_deep_supervision(output) -> Tuple[Any, List[Any]]:
    """``(logits, aux_list)`` from a model output: a tensor gives ``(tensor, [])``; a deep-supervision
    ``(logits, [aux, ...])`` tuple gives it back with the aux outputs as a list."""
    if isinstance(output, (tuple, list)):
        if len(output) != 2:
            raise ValueError(f"expected (logits, [aux, ...]), got a sequence of length {len(output)}")
        logits, aux = output
        return logits, list(aux)
    return output, []
