"""Registry of the 2D liver/tumor segmentation networks.

Every network takes ``(N, C, H, W)`` float32 and returns logits ``(N, num_classes, H, W)`` for the same
H and W (classes 0 background, 1 liver, 2 tumor). Each architecture pads its input internally (edge
replication at the bottom/right) to the multiple its pooling needs and crops the logits back, so **any
H, W >= 1 works** (another shape or channel count raises ValueError naming the rule); ``model.size_multiple`` tells which multiple avoids the padding (use it as the
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
import math
import numbers
import os
from typing import Any, Dict, List, Optional, Tuple

from ..configutil import short_repr
from ..errors import InputError

# name -> (module in this package, fixed keyword arguments, one-line description)
_ARCHITECTURES: Dict[str, Tuple[str, Dict[str, Any], str]] = {
    "unet": ("unet", {}, "MONAI residual U-Net, strided-conv downsampling (stands in for the max-pool "
                        "U-Nets of Dhanush et al. and Kulkarni et al.)"),
    "segnet": ("segnet", {}, "SegNet: VGG16 encoder, decoder unpools with the encoder's max-pool indices "
                             "(as in Dhanush et al.)"),
    "resnet18_fcn": ("resnet_fcn", {"depth": 18}, "ResNet-18 encoder (random init) + U-Net-style upsampling "
                                                  "decoder (the ResNet-18 of Elmenabawy et al., whose decoder "
                                                  "mirrors the encoder with deconvolutions)"),
    "resnet34_fcn": ("resnet_fcn", {"depth": 34}, "ResNet-34 encoder (random init) + U-Net-style upsampling "
                                                  "decoder"),
    "resnet50_fcn": ("resnet_fcn", {"depth": 50}, "ResNet-50 (bottleneck) encoder (random init) + U-Net-style "
                                                  "upsampling decoder (the ResNet-50 FCN of Kulkarni et al., whose "
                                                  "decoder is upsampling + convs with no skips)"),
    "alexnet_fcn": ("alexnet_fcn", {}, "CDNN-AlexNet: AlexNet convs (random init), FC6/FC7 as convs, "
                                       "transposed-conv decoder with FCN skips (Elmenabawy et al.'s upsamples "
                                       "FC7 once, 8x)"),
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
    wanted = _whole((options or {}).get("num_slices", _module(name).DEFAULT_OPTIONS["num_slices"]))
    if wanted is None or wanted == int(slices_per_input):
        return ""  # not a whole number: build_model refuses it, naming the rule
    return (f"{name} runs over num_slices={wanted} neighbouring slices, but the preprocessing stacks "
            f"{slices_per_input} (context_slices {(slices_per_input - 1) // 2}); set the model option num_slices to "
            f"{slices_per_input} or context_slices to {(wanted - 1) // 2}.")


def _whole(value: Any) -> Optional[int]:
    """``value`` as an int when it is a whole number (an int, or a float such as 16.0; never a bool or a
    string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _real(value: Any) -> Optional[float]:
    """``value`` as a float when it is a finite real number (not a bool, not a string), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _count(key: str, minimum: int = 1, odd: bool = False):
    def check(value: Any) -> int:
        whole = _whole(value)
        if whole is None or whole < minimum or (odd and whole % 2 == 0):
            raise InputError(f"'{key}' must be {'an odd' if odd else 'a whole'} number >= {minimum}, got {value!r}.")
        return whole
    return check


def _counts(key: str, optional: bool = False, minimum_length: int = 1):
    def check(value: Any) -> Any:
        if value is None and optional:
            return None
        items = list(value) if isinstance(value, (list, tuple)) else None
        wholes = [_whole(v) for v in items] if items is not None else []
        if items is None or len(items) < minimum_length or any(w is None or w < 1 for w in wholes):
            raise InputError(f"'{key}' must be a list of at least {minimum_length} whole numbers >= 1"
                             f"{' (or null)' if optional else ''}, got {short_repr(value)}.")
        return wholes
    return check


def _flag(key: str):
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise InputError(f"'{key}' must be true or false (a JSON/YAML boolean, not a string or number), "
                             f"got {value!r}.")
        return value
    return check


def _fraction(key: str):
    def check(value: Any) -> float:
        real = _real(value)
        if real is None or not 0.0 <= real < 1.0:
            raise InputError(f"'{key}' must be a probability in [0, 1), got {value!r}.")
        return real
    return check


def _positive(key: str):
    def check(value: Any) -> float:
        real = _real(value)
        if real is None or real <= 0:
            raise InputError(f"'{key}' must be a number > 0, got {value!r}.")
        return real
    return check


def _text(key: str, optional: bool = False):
    def check(value: Any) -> Any:
        if value is None and optional:
            return None
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or not value:
            raise InputError(f"'{key}' must be a non-empty string{' (or null)' if optional else ''}, got {value!r}.")
        return value
    return check


# option name -> check returning the canonical value (ints as int, so the recorded options reload in a package)
_OPTION_CHECKS = {
    "channels": _counts("channels", minimum_length=2),
    "strides": _counts("strides", optional=True),
    "num_res_units": _count("num_res_units", minimum=0),
    "dropout": _fraction("dropout"),
    "norm": _text("norm"),
    "act": _text("act"),
    "width": _positive("width"),
    "decoder_channels": _counts("decoder_channels", optional=True),
    "pretrained_encoder_path": _text("pretrained_encoder_path", optional=True),
    "fc_channels": _count("fc_channels"),
    "batch_norm": _flag("batch_norm"),
    "deep_supervision": _flag("deep_supervision"),
    "bidirectional": _flag("bidirectional"),
    "num_slices": _count("num_slices", odd=True),
    "lstm_kernel": _count("lstm_kernel", odd=True),
    "lstm_hidden": lambda v: None if v is None else _count("lstm_hidden")(v),
}


def _checked_options(name: str, resolved: Dict[str, Any]) -> Dict[str, Any]:
    """``resolved`` with every value checked (type and range) and made canonical; InputError naming the option,
    the model and the rule. Without this, ``"deep_supervision": "false"`` (a string) switched deep supervision
    ON, ``"batch_norm": "no"`` kept BatchNorm, ``"channels": [16.7, ...]`` built 16 channels while recording
    16.7, and ``fc_channels 0`` built 4 channels; such packages were then refused at load."""
    checked = {}
    for key, value in resolved.items():
        check = _OPTION_CHECKS.get(key)
        try:
            checked[key] = check(value) if check is not None else value
        except InputError as exc:
            raise InputError(f"Invalid options for model '{name}': {exc}") from None
    return checked


def build_model(name: str, in_channels: int = 1, num_classes: int = 3, **options: Any):
    """Build architecture ``name`` for ``in_channels`` input channels and ``num_classes`` output classes.

    ``build_model(**model_config(model))`` (options nested under ``options=``) works too.
    Unknown option names raise :class:`~LiverTumorSegLib.errors.InputError` listing the valid ones; so does a
    value of the wrong type or range (``channels`` whole numbers >= 1, ``dropout`` in [0, 1), flags true/false
    booleans, ``width`` > 0, ``num_slices``/``lstm_kernel`` odd), naming the option and the rule.
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
        from ..configutil import close_key_hint

        raise InputError(f"Unknown option(s) {unknown} for model '{name}'"
                         f"{close_key_hint(unknown, module.DEFAULT_OPTIONS)}; valid options: "
                         f"{sorted(module.DEFAULT_OPTIONS)}.")
    sizes = (_whole(in_channels), _whole(num_classes))
    if sizes[0] is None or sizes[1] is None or min(sizes) < 1:
        raise InputError(f"in_channels ({in_channels!r}) and num_classes ({num_classes!r}) must be whole numbers "
                         f">= 1.")
    in_channels, num_classes = sizes
    resolved = copy.deepcopy(module.DEFAULT_OPTIONS)
    resolved.update(options)
    resolved = _checked_options(name, resolved)
    try:
        model = module.build(in_channels, num_classes, **fixed, **resolved)
    except (ValueError, TypeError) as exc:
        raise InputError(f"Invalid options for model '{name}': {exc}") from exc
    recorded = dict(resolved)
    for key in getattr(module, "TRANSIENT_OPTIONS", ()):
        recorded[key] = module.DEFAULT_OPTIONS[key]
    setattr(model, _CONFIG_ATTR, {"name": name, "in_channels": in_channels,
                                  "num_classes": num_classes, "options": _json_able(recorded)})
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


def build_on_meta(name: str, in_channels: int = 1, num_classes: int = 3, **options: Any):
    """:func:`build_model` on PyTorch's meta device: shapes only, no memory, no weights (for the package limits and
    option checks before any data is read). Pretrained-weight loads into meta tensors warn "no-op"; those warnings
    are dropped (this thread's only: the package load runs beside a batch's CT reader)."""
    import torch

    from ..thread_warnings import warnings_hidden_in_this_thread

    with torch.device("meta"), warnings_hidden_in_this_thread():
        return build_model(name, in_channels, num_classes, **options)


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
