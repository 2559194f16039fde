"""Model packages: one ``.safetensors`` file holding a trained network and everything needed to run it.

Layout (safetensors, https://github.com/huggingface/safetensors): an 8-byte little-endian header
length, a JSON header (tensor names -> dtype, shape, data offsets; plus ``__metadata__``), then raw
tensor bytes. Tensors = the model's ``state_dict``; ``__metadata__["livertumorseg"]`` = a JSON string::

    {"format_version": 1, "name", "description",
     "architecture": model_config(model),            # {"name", "in_channels", "num_classes", "options"}
     "preprocessing": PreprocessingConfig.to_dict(),
     "labels": {"0": "background", "1": "liver", "2": "tumor"},
     "training": {...}, "validation": {...},        # free-form summaries (data, command, metrics)
     "library_version", "created" (ISO 8601 UTC), "default" (optional bool),
     "weights_sha256",                               # see weights_sha256()
     "metadata_sha256"}                             # see metadata_sha256(); absent in packages written
                                                    # before it existed (the bundled ones: see SHA256SUMS)

Security: loading never unpickles anything. The header is parsed and size-checked by hand before any
tensor is read; the weights' SHA-256 must match the header, and so must the metadata's own SHA-256 where the
package records one (an edited window level would otherwise load as valid); the architecture is rebuilt from the
registry and the state dict must match it key for key and shape for shape. Any problem raises
:class:`~LiverTumorSegLib.errors.ModelPackageError`.
"""
import contextlib
import datetime
import hashlib
import json
import logging
import math
from types import SimpleNamespace
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from . import __version__, plan_cache
from .errors import InputError, ModelPackageError, ResourceError, raise_if_out_of_memory
from .fileutil import (atomic_output, chmod_where_allowed, finite_json, same_file_among, shell_word,
                       unexpanded_home_hint)
from .resources import bundled_models_dir, user_models_dir

FORMAT_VERSION = 1
METADATA_KEY = "livertumorseg"
PACKAGE_SUFFIX = ".safetensors"
DEFAULT_LABELS = {"0": "background", "1": "liver", "2": "tumor"}
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit
# Limits on what a package's metadata may ask for, checked before anything is built (issue 15). The largest
# built-in architecture at default options has 58 M parameters (alexnet_fcn) and the largest activation sum
# for one 256 x 256 slice is 0.42 GiB (dalunet); the limits leave 3-5x headroom for wider trained variants.
MAX_METADATA_BYTES = 4 * 1024 * 1024  # the whole metadata JSON; the bundled v3 model's is about 22 KB
MAX_METADATA_DEPTH = 32               # nesting of JSON objects/lists (a robustness table needs 3-4)
# the whole safetensors header a package may have: its metadata (escaped as a JSON string: at most twice its bytes)
# and 8 MiB of tensor entries (about 100 bytes each; a bundled package has 63-300 tensors). A file in the models
# folder with a 99 MB header of 1.7 million empty tensors took 9.5 s and 1.2 GB on every listing (every segment run,
# every panel refresh) before it was refused (the package audit)
MAX_PACKAGE_HEADER_BYTES = 2 * MAX_METADATA_BYTES + 8 * 1024 * 1024
MAX_PARAMETERS = 200_000_000          # 0.8 GB of float32 weights
MAX_ACTIVATION_BYTES = 2 * 1024 ** 3  # sum of all layer outputs for one 256 x 256 slice, float32
ACTIVATION_PROBE_HW = 256
MAX_IN_CHANNELS = 256
MAX_NUM_CLASSES = 32
SEGMENTATION_CLASSES = 3
"""Output classes of every usable package: 0 background, 1 liver, 2 tumor (a 4-class network wrote label 3)."""
MAX_OPTION_INT = 65536                # channel counts and the like; keeps meta-device shapes far from int64 overflow
MAX_OPTION_LIST = 16
MAX_TEXT_CHARS = 65536

# metadata keys that save_model_package itself writes and a caller's metadata may not set ("created" is
# written too, but a caller may pass its own)
RESERVED_METADATA_KEYS = ("format_version", "architecture", "preprocessing", "weights_sha256", "library_version",
                          "weights_storage", "metadata_sha256")

# how floating-point weights are stored: float32 as trained, or float16 (half the file; loaded back as float32)
WEIGHT_STORAGE_DTYPES = ("float32", "float16")
FLOAT16_MAX = 65504.0

# safetensors dtype code -> bytes per element
_DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2,
                "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}

PathLike = Union[str, "os.PathLike[str]"]
log = logging.getLogger(__name__)


@dataclass
class ModelPackage:
    """A loaded package. ``model`` is in eval mode on the requested device; ``preprocessing`` is a
    ``PreprocessingConfig`` (a plain dict if the preprocessing module is unavailable); ``metadata`` is
    the full ``livertumorseg`` header dict; ``sha256`` the verified weights hash."""

    model: Any
    preprocessing: Any
    metadata: Dict[str, Any]
    path: Path
    name: str
    sha256: str
    activation_bytes_per_pixel: float = 0.0  # float32 layer outputs per input pixel (measured on the meta device)

    @property
    def architecture(self) -> Dict[str, Any]:
        return self.metadata["architecture"]

    @property
    def labels(self) -> Dict[str, str]:
        """Class number -> name (``{"0": "background", "1": "liver", "2": "tumor"}``): the package's own wording,
        or those defaults where it records none (absent, null or empty: an older package, or ``labels=None`` given
        to :func:`save_model_package`, which gave None here); every output means 1 = liver, 2 = tumor."""
        return dict(self.metadata.get("labels") or DEFAULT_LABELS)


# ---------------------------------------------------------------------------------------------------
# hashing

def _safetensors_dtype(tensor) -> str:
    import torch

    codes = {torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16", torch.int32: "I32",
             torch.int64: "I64", torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32",
             torch.float64: "F64"}
    if tensor.dtype not in codes:
        raise ModelPackageError(f"Tensor dtype {tensor.dtype} is not supported in model packages.")
    return codes[tensor.dtype]


def weights_sha256(tensors: Mapping[str, Any]) -> str:
    """SHA-256 (hex) over the tensors in sorted-name order; per tensor it hashes the UTF-8 name, the
    safetensors dtype code (e.g. ``F32``), the shape as ``[d0,d1,...]`` (each field NUL-terminated)
    and then the raw little-endian bytes of the C-contiguous data."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        shape = "[" + ",".join(str(int(d)) for d in tensor.shape) + "]"
        digest.update(name.encode("utf-8") + b"\0")
        digest.update(_safetensors_dtype(tensor).encode("ascii") + b"\0")
        digest.update(shape.encode("ascii") + b"\0")
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------
# header parsing (no torch)

def metadata_sha256(meta: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of a package's metadata without its own ``metadata_sha256`` entry, over the canonical
    JSON text (keys sorted, ASCII, Python's shortest float repr). Parsing a stored metadata and dumping it again
    gives the same text, so the loader can recompute it from the parsed dict."""
    rest = {k: v for k, v in meta.items() if k != "metadata_sha256"}
    text = json.dumps(rest, allow_nan=False, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def network_settings_sha256(meta: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of what in a package's metadata, beside its weights, decides its labels: the
    ``architecture`` and ``preprocessing`` entries (canonical JSON, keys sorted). Two packages with the same
    ``weights_sha256`` (one re-saved by :func:`rewrite_package_metadata` with another window, say) differ here.
    So do two whose smallest recorded training body differs (``training_body_diameter_mm``: it decides which CTs
    segment enlarges, :mod:`~.inference.body_size`); a package that records none hashes as before it was recorded."""
    from .inference.body_size import training_body_diameter_mm

    settings = {"architecture": meta.get("architecture"), "preprocessing": meta.get("preprocessing")}
    smallest_body = training_body_diameter_mm(dict(meta))
    if smallest_body is not None:
        settings["smallest_training_body_mm"] = smallest_body
    text = json.dumps(finite_json(settings), allow_nan=False, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sealed_metadata_json(meta: Mapping[str, Any]) -> str:
    """The JSON text to store for ``meta``: its finite, JSON-typed form with ``metadata_sha256`` set. Raises
    ``TypeError``/``ValueError`` for metadata that is not JSON-serialisable."""
    plain = json.loads(json.dumps(finite_json(dict(meta)), allow_nan=False))  # tuples -> lists, keys -> str
    plain["metadata_sha256"] = metadata_sha256(plain)
    return json.dumps(plain, allow_nan=False, sort_keys=True)


def _is_sha256_hex(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _missing_package_error(path: Path, named_like_path: str = "") -> ModelPackageError:
    """The error for a package path that names nothing: a symbolic link whose target is gone (or a loop of links) is
    called one, as 'ls' shows the link itself and 'does not exist' contradicted it. ``named_like_path``: the
    ``--model`` text, when an installed package may carry it as its name ('abdomen/liver', read as a path)."""
    if path.is_symlink():
        try:
            target = f" to '{os.readlink(path)}'"
        except OSError:
            target = ""
        return ModelPackageError(f"Model package '{path}' is a symbolic link{target} that leads to no file (its target "
                                 f"was moved or deleted, or the links form a loop). Point the link at the package "
                                 f"file, or give the package's own path.")
    installed = [e for e in (list_installed_models(warn=False) if named_like_path else []) if e["error"] is None]
    named = [e for e in installed if e["name"] == named_like_path]
    if named:  # a name holding '/' or ending in '.pt' is read as a path: 'does not exist' hid the package
        return ModelPackageError(f"Model package '{path}' does not exist as a file; an installed package is named "
                                 f"'{named_like_path}', but --model reads a name with a path separator or a weights "
                                 f"suffix as a file path: give "
                                 + reach_advice(named[0]["path"], installed) + f" '{named[0]['path']}'.")
    filed = [e for e in installed if Path(e["path"]).name == named_like_path]
    if filed:  # '--model segnet_v2.safetensors', the file name 'models' lists: a path, missing in the working folder
        stem = stem_reaching(filed[0]["path"], installed)
        return ModelPackageError(f"Model package '{path}' does not exist in the working folder; an installed "
                                 f"package has that file name ('{filed[0]['path']}'), but --model reads a name ending "
                                 f"in {PACKAGE_SUFFIX} as a file path: give "
                                 + (f"--model {shell_word(stem)} (without the suffix) or " if stem else "")
                                 + "its full path.")
    return ModelPackageError(f"Model package '{path}' does not exist{unexpanded_home_hint(path)}. Check the path, or "
                             f"run 'livertumorseg models' to list installed models.")


def stem_reaching(path: str, installed: Sequence[Dict[str, Any]]) -> Optional[str]:
    """The file stem of the installed package at ``path`` where ``--model STEM`` loads that file (``installed``: the
    usable entries of :func:`list_installed_models`), else None (its path is what reaches it): "default" only for
    the bundled default's own file (the name means it), a stem ``--model`` reads as a path ('x.pt') never, any other
    stem where it matches that file alone. The one rule of every "give --model ..." advice: two copies of it differed
    (one offered a stem that matched another package as well)."""
    stem = Path(path).stem
    if looks_like_path(stem):
        return None
    if stem == "default":
        try:
            return stem if same_file_among([str(resolve_model("default", warn=False)), path]) else None
        except ModelPackageError:
            return None
    return stem if installed_matches(installed, stem) == [path] else None


def reach_advice(path: str, installed: Sequence[Dict[str, Any]]) -> str:
    """``--model STEM (its file name) or its path`` where the stem reaches the package (:func:`stem_reaching`), else
    ``its path``."""
    stem = stem_reaching(path, installed)
    return f"--model {shell_word(stem)} (its file name) or its path" if stem else "its path"


def _folder_names(folder: Path) -> List[str]:
    """The entry names of ``folder``; [] when it is missing or unreadable."""
    try:
        return [entry.name for entry in folder.iterdir()] if folder.is_dir() else []
    except OSError:
        return []


_COPY_AGAIN = "Download or copy it again."
"""What to do about a package file damaged in transit: the advice of every header and tensor-data refusal (a header
that is not JSON, a malformed tensor entry, overlapping data said 'the file is corrupt' and nothing to do)."""


def _shown(name: str, limit: int = 80) -> str:
    """A tensor name as an error message shows it: at most ``limit`` characters (a header may name a tensor with
    100 MB of text; a 5,000-character name made a 5,300-character message)."""
    return name if len(name) <= limit else name[:limit - 3] + "..."


def read_safetensors_header(path: PathLike) -> Dict[str, Any]:
    """Parse and validate a safetensors header without reading tensor data.

    Checks: the 8-byte length fits in the file, the header is a JSON object, every tensor has a known
    dtype, a shape and data offsets inside the file whose span equals ``prod(shape) * itemsize``, and
    the tensors exactly fill the data section (catches truncation). Raises ModelPackageError.
    """
    path = Path(path)
    if not path.exists():
        raise _missing_package_error(path)
    if path.is_dir():  # said only 'is not a file', without what to give instead
        try:
            found = sorted(p.name for p in path.iterdir() if p.suffix.lower() == PACKAGE_SUFFIX)
        except OSError:
            found = []
        inside = f" (it holds {', '.join(found[:3])}{', ...' if len(found) > 3 else ''})" if found else ""
        if not found and _looks_like_monai_bundle([f"configs/{name}" for name in _folder_names(path / "configs")]):
            raise ModelPackageError(f"Model package '{path}' is a folder holding a MONAI bundle. "
                                    f"{MONAI_BUNDLE_REFUSAL}.")
        raise ModelPackageError(f"Model package '{path}' is a folder{inside}; a model package is one "
                                f"{PACKAGE_SUFFIX} file: give the path of such a file.")
    if not path.is_file():
        raise ModelPackageError(f"Model package '{path}' is not a regular file (a device, pipe or socket); give the "
                                f"path of a {PACKAGE_SUFFIX} model package file.")
    size = path.stat().st_size
    not_package = (f"'{path}' is not a LiverTumorSeg model package (a .safetensors file)")
    if size < 8:
        raise ModelPackageError(f"{not_package}: the file is only {size} bytes (truncated or empty). {_COPY_AGAIN}")
    with open(path, "rb") as fh:
        first = fh.read(8)
        (header_len,) = struct.unpack("<Q", first)
        if header_len == 0 or header_len > MAX_HEADER_BYTES or header_len > size - 8:
            # (only now: a valid length's low bytes may happen to equal these magic bytes)
            what = _foreign_file_kind(path, first + fh.read(4088))
            raise ModelPackageError(f"{not_package}: " + (what or f"its header length ({header_len} bytes) does not "
                                                                  f"fit the file size ({size} bytes); the file is "
                                                                  f"truncated or of another type: give a "
                                                                  f"{PACKAGE_SUFFIX} model package, or download or "
                                                                  f"copy this one again."))
        if header_len > MAX_PACKAGE_HEADER_BYTES:  # not parsed: a valid safetensors file, but no package of ours
            raise ModelPackageError(f"{not_package}: its header is {header_len:,} bytes, more than a model package's "
                                    f"can be ({MAX_PACKAGE_HEADER_BYTES:,}: its metadata and tensor list); it is "
                                    f"another kind of safetensors file, or corrupt or hostile. Remove it from the "
                                    f"models folder, or give a LiverTumorSeg model package.")
        raw = fh.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelPackageError(f"{not_package}: its header is not valid JSON ({exc}); the file is corrupt. "
                                f"{_COPY_AGAIN}")
    except RecursionError:
        raise ModelPackageError(f"{not_package}: its header nests JSON too deeply; the file is corrupt or "
                                f"hostile. {_COPY_AGAIN}") from None
    if not isinstance(header, dict):
        raise ModelPackageError(f"{not_package}: its header is not a JSON object; the file is corrupt. {_COPY_AGAIN}")
    data_len = size - 8 - header_len
    end_max = 0
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise ModelPackageError(f"{not_package}: '__metadata__' must map strings to strings; the file is "
                                        f"corrupt. {_COPY_AGAIN}")
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            count = 1
            for d in shape:
                if not _is_int(d) or d < 0:  # (true passed as 1, and safetensors then refused it in its words)
                    raise ValueError(f"bad dimension {d!r}")
                count *= d
            itemsize = _DTYPE_SIZES[dtype]
            if not (_is_int(begin) and _is_int(end) and 0 <= begin <= end):
                raise ValueError("bad data_offsets")
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelPackageError(f"{not_package}: tensor entry '{_shown(name)}' is malformed "
                                    f"({str(exc)[:120]}); the file is corrupt. {_COPY_AGAIN}")
        if end - begin != count * itemsize:
            raise ModelPackageError(f"Model package '{path}' is corrupt: tensor '{_shown(name)}' spans "
                                    f"{end - begin} bytes but its shape {str(shape)[:80]} x {dtype} needs "
                                    f"{count * itemsize}. {_COPY_AGAIN}")
        if end > data_len:
            raise ModelPackageError(f"Model package '{path}' is truncated: tensor '{_shown(name)}' ends at byte "
                                    f"{end} of a {data_len}-byte data section. {_COPY_AGAIN}")
        spans.append((begin, end))
        end_max = max(end_max, end)
    spans.sort()
    position = 0
    for begin, end in spans:
        if begin != position:
            raise ModelPackageError(f"Model package '{path}' is corrupt: tensor data overlap or leave gaps. "
                                    f"{_COPY_AGAIN}")
        position = end
    if end_max > data_len:  # (a file cut short is refused before, naming the tensor that ends past it)
        raise ModelPackageError(f"Model package '{path}' is corrupt or truncated: the tensors fill "
                                f"{end_max} bytes but the data section has {data_len}. Download or copy it again.")
    if end_max < data_len:  # bytes appended: an interrupted or doubled copy, or something hidden behind the weights
        raise ModelPackageError(f"Model package '{path}' is corrupt: {data_len - end_max} byte(s) follow the tensors' "
                                f"{end_max} bytes of data (a safetensors file ends with its last tensor). Download or "
                                f"copy it again.")
    return header


class _DamagedMetadata(ModelPackageError):
    """A package metadata refusal that names what is wrong but not what to do: loading adds that (obtain a fresh copy,
    or restore a bundled one); :func:`save_model_package` and :func:`rewrite_package_metadata`, which check the
    metadata they are about to write, add their own."""


def _json_depth(value: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0); stops counting past ``limit``."""
    if limit < 0 or not isinstance(value, (dict, list)):
        return 0
    children = value.values() if isinstance(value, dict) else value
    return 1 + max((_json_depth(v, limit - 1) for v in children), default=0)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _check_option_value(key: str, value: Any, where: str) -> None:
    """An architecture option may be null, a bool, a bounded int, a finite float, a short string, or a short
    list of those (no nesting). Options naming a file (``*_path``, ``*_file``, ``*_dir``) must be null: a
    package is self-contained and loading it never reads another file."""
    if key.endswith(("_path", "_file", "_dir", "_url")) and value not in (None, ""):
        raise ModelPackageError(f"{where}: architecture option '{key}' names a file ({str(value)[:80]!r}); a model "
                                f"package must be self-contained, so it is refused. Re-export the package.")
    items = value if isinstance(value, list) else [value]
    if isinstance(value, list) and len(value) > MAX_OPTION_LIST:
        raise _DamagedMetadata(f"{where}: architecture option '{key}' has {len(value)} entries (at most "
                                f"{MAX_OPTION_LIST}).")
    for item in items:
        ok = (item is None or isinstance(item, bool) or (_is_int(item) and abs(item) <= MAX_OPTION_INT)
              or (isinstance(item, float) and math.isfinite(item) and abs(item) <= MAX_OPTION_INT)
              or (isinstance(item, str) and len(item) <= 256))
        if not ok:
            raise _DamagedMetadata(f"{where}: architecture option '{key}' has an invalid value {repr(value)[:80]}; "
                                    f"options are numbers up to {MAX_OPTION_INT}, booleans, short strings or short "
                                    f"lists of those.")


def _validate_architecture(arch: Any, where: str) -> None:
    """Types and ranges of the ``architecture`` entry (no torch; see :func:`_plan_network` for the rest)."""
    if not isinstance(arch, dict) or not {"name", "in_channels", "num_classes", "options"} <= set(arch):
        raise _DamagedMetadata(f"{where} has an invalid 'architecture' entry (it needs name, in_channels, "
                                f"num_classes and options): {str(arch)[:120]}.")
    if not isinstance(arch["name"], str) or not arch["name"]:
        raise _DamagedMetadata(f"{where}: architecture name must be a string, got {repr(arch['name'])[:80]}.")
    for key, top in (("in_channels", MAX_IN_CHANNELS), ("num_classes", MAX_NUM_CLASSES)):
        if not _is_int(arch[key]) or not 1 <= arch[key] <= top:
            raise _DamagedMetadata(f"{where}: architecture {key} must be an integer 1..{top}, got "
                                    f"{repr(arch[key])[:80]}.")
    if arch["num_classes"] != SEGMENTATION_CLASSES:
        raise ModelPackageError(f"{where}: its network has {arch['num_classes']} output classes; LiverTumorSeg "
                                f"models have {SEGMENTATION_CLASSES} (0 background, 1 liver, 2 tumor), and another "
                                f"count would write labels the outputs do not define. Train it with livertumorseg "
                                f"train, or export a 3-class network.")
    if not isinstance(arch["options"], dict):
        raise _DamagedMetadata(f"{where}: architecture options must be a JSON object, got "
                                f"{type(arch['options']).__name__}.")
    for key, value in arch["options"].items():
        _check_option_value(str(key), value, where)


_TEXT_FIELDS = ("name", "description", "created", "library_version")
_OBJECT_FIELDS = ("training", "validation", "labels", "preprocessing")


def labels_problem(labels: Mapping[str, str]) -> Optional[str]:
    """Why a package's ``labels`` ({"0": "background", "1": "liver", "2": "tumor"}: class number -> name) do not
    mean what every output writes (1 = liver, 2 = liver tumor), or None. Names may differ in wording ("Liver
    tumour", "lesion"); empty labels (an old package) say nothing. A package that said 1 = tumor, 2 = liver
    still wrote class 1 as the Liver segment."""
    from .segnrrd import names_liver, names_tumor

    if not labels:
        return None
    if sorted(labels) != sorted(DEFAULT_LABELS):
        return f"name the classes {sorted(labels)[:8]}, not 0, 1 and 2"
    liver, tumor = str(labels["1"]), str(labels["2"])
    if not names_liver(liver):
        return f"call class 1 {liver[:40]!r}, not the liver"
    if not names_tumor(tumor):
        return f"call class 2 {tumor[:40]!r}, not a (liver) tumor"
    return None


def validate_package_metadata(meta: Any, path: PathLike = "package") -> Dict[str, Any]:
    """Check every field of a package's parsed ``livertumorseg`` metadata (types, ranges, nesting depth);
    returns it, or raises ModelPackageError naming the field. Extra keys (e.g. a ``robustness`` table) may be
    any JSON within the overall size and depth limits."""
    where = f"Model package '{path}'"
    if not isinstance(meta, dict):
        raise _DamagedMetadata(f"{where} has corrupt metadata (not a JSON object).")
    depth = _json_depth(meta, MAX_METADATA_DEPTH + 1)
    if depth > MAX_METADATA_DEPTH:
        raise _DamagedMetadata(f"{where} has metadata nested more than {MAX_METADATA_DEPTH} levels deep; the file "
                                f"is corrupt or hostile.")
    version = meta.get("format_version")
    if not _is_int(version):  # '1' as text said 'has format_version 1; this library reads version 1. Update'
        raise _DamagedMetadata(f"{where} has format_version {str(version)[:40]!r}, which must be a whole number "
                               f"(this library reads version {FORMAT_VERSION}); the file is corrupt or was edited.")
    if version != FORMAT_VERSION:
        raise ModelPackageError(f"{where} has format_version {str(version)[:40]}; this library "
                                f"({__version__}) reads version {FORMAT_VERSION}. Update LiverTumorSeg.")
    for key in ("name", "architecture", "weights_sha256"):
        if key not in meta:
            raise _DamagedMetadata(f"{where} metadata lacks '{key}'; the file is corrupt.")
    for key in _TEXT_FIELDS:
        if key in meta and (not isinstance(meta[key], str) or len(meta[key]) > MAX_TEXT_CHARS):
            raise _DamagedMetadata(f"{where}: metadata '{key}' must be a text of at most {MAX_TEXT_CHARS} "
                                    f"characters, got {type(meta[key]).__name__}.")
    for key in _OBJECT_FIELDS:
        if key in meta and meta[key] is not None and not isinstance(meta[key], dict):
            raise _DamagedMetadata(f"{where}: metadata '{key}' must be a JSON object, got "
                                    f"{type(meta[key]).__name__}.")
    labels = meta.get("labels") or {}
    if not all(isinstance(v, str) and len(v) <= 256 for v in labels.values()) or len(labels) > MAX_NUM_CLASSES:
        raise _DamagedMetadata(f"{where}: metadata 'labels' must map class numbers to short names.")
    problem = labels_problem(labels)
    if problem:
        raise _DamagedMetadata(f"{where}: metadata 'labels' {problem}; LiverTumorSeg writes class 1 as the "
                                f"'Liver' segment and 2 as 'Liver tumor', so a package must mean those.")
    if "default" in meta and not isinstance(meta["default"], bool):
        raise _DamagedMetadata(f"{where}: metadata 'default' must be true or false.")
    if meta.get("weights_storage", "float32") not in WEIGHT_STORAGE_DTYPES:
        raise ModelPackageError(f"{where}: metadata 'weights_storage' must be one of "
                                f"{', '.join(WEIGHT_STORAGE_DTYPES)}, got {str(meta['weights_storage'])[:40]!r}. "
                                f"{unknown_setting_advice(meta)}")
    for key in ("weights_sha256", "metadata_sha256"):
        if (key in meta or key == "weights_sha256") and not _is_sha256_hex(meta[key]):
            raise _DamagedMetadata(f"{where}: metadata '{key}' is not a SHA-256 hex digest; the file is corrupt.")
    problem = model_postprocessing_problem(meta)
    if problem:
        raise ModelPackageError(f"{where}: metadata 'postprocessing' {problem}. {unknown_setting_advice(meta)}")
    _validate_architecture(meta["architecture"], where)
    return meta


MODEL_POSTPROCESSING_SETTINGS = ("min_lesion_probability", "lesion_probability_statistic")
"""The post-processing settings a package may record as its own (metadata ``postprocessing``, an object): those
that belong to the network, not to anatomy. ``min_lesion_probability`` (0..1) is a threshold on the network's own
tumor probability, which another network calibrates otherwise (v11's candidate was chosen at 0.75, every model
before it at 0.65), and ``lesion_probability_statistic`` (``"mean"`` or ``"peak"``) what of a lesion's
probabilities it is compared with (a network trained with the per-lesion loss term separates its false lesions
by their peak, ``docs/lesion_peak_probability.md``); ``segment`` uses them where the user sets none."""


def model_postprocessing_problem(meta: Mapping[str, Any]) -> Optional[str]:
    """What is wrong with a package's recorded ``postprocessing`` (None: nothing, or none recorded): not an object,
    a setting not in :data:`MODEL_POSTPROCESSING_SETTINGS`, or a threshold that is no number in 0..1."""
    if "postprocessing" not in meta:
        return None
    recorded = meta["postprocessing"]
    if not isinstance(recorded, dict):
        return f"must be a JSON object, got {type(recorded).__name__}"
    unknown = sorted(str(key)[:40] for key in recorded if key not in MODEL_POSTPROCESSING_SETTINGS)
    if unknown:
        return (f"holds {', '.join(unknown)}, which this version does not know (a package may record "
                f"{', '.join(MODEL_POSTPROCESSING_SETTINGS)})")
    value = recorded.get("min_lesion_probability")
    if "min_lesion_probability" in recorded and not (_is_number(value) and 0 <= value <= 1):
        return f"min_lesion_probability must be a number from 0 to 1, got {str(value)[:40]}"
    if "lesion_probability_statistic" in recorded:  # the names are post-processing's (imported only here)
        from .inference.postprocess import LESION_PROBABILITY_STATISTICS

        statistic = recorded["lesion_probability_statistic"]
        if statistic not in LESION_PROBABILITY_STATISTICS:
            return (f"lesion_probability_statistic must be one of {', '.join(LESION_PROBABILITY_STATISTICS)}, got "
                    f"{str(statistic)[:40]}")
        if recorded.get("min_lesion_probability") is None:  # as set_package_min_lesion_probability refuses to
            # write it: the statistic belongs to a threshold, and alone it made segment compare each lesion's peak
            # with the default 0.65 while 'models' showed nothing (the models audit)
            return "records lesion_probability_statistic without min_lesion_probability, the threshold it is read at"
    return None


def _recorded_model_setting(meta: Optional[Mapping[str, Any]], key: str) -> Any:
    """What a package's metadata records under ``postprocessing``'s ``key`` (one of
    :data:`MODEL_POSTPROCESSING_SETTINGS`), None where it records none. Metadata is validated when read; a record
    that is wrong here (metadata built by hand) raises ModelPackageError (:func:`model_postprocessing_problem`)."""
    if not meta:
        return None
    problem = model_postprocessing_problem(meta)
    if problem:
        raise ModelPackageError(f"Model package metadata 'postprocessing' {problem}.")
    return (meta.get("postprocessing") or {}).get(key)


def package_min_lesion_probability(meta: Optional[Mapping[str, Any]]) -> Optional[float]:
    """The lesion confidence threshold (0..1) a package's metadata records as its own (``postprocessing``'s
    ``min_lesion_probability``), or None where it records none (the library's default then applies:
    :data:`~LiverTumorSegLib.inference.postprocess.DEFAULT_MIN_LESION_PROBABILITY`); a value that is not a number in
    0..1 raises ModelPackageError."""
    value = _recorded_model_setting(meta, "min_lesion_probability")
    return None if value is None else float(value)


def package_lesion_probability_statistic(meta: Optional[Mapping[str, Any]]) -> Optional[str]:
    """The statistic (``"mean"`` or ``"peak"``) a package's metadata records for its lesion confidence threshold
    (``postprocessing``'s ``lesion_probability_statistic``), or None where it records none (the mean then applies:
    :data:`~LiverTumorSegLib.inference.postprocess.DEFAULT_LESION_PROBABILITY_STATISTIC`); a value it does not know
    raises ModelPackageError."""
    value = _recorded_model_setting(meta, "lesion_probability_statistic")
    return None if value is None else str(value)


def set_package_min_lesion_probability(path: PathLike, value: Optional[float], statistic: Optional[str] = None
                                       ) -> Path:
    """Record ``value`` (0..1) as the package's own lesion confidence threshold, which ``segment`` and the Slicer
    module use for it where the user sets none, and ``statistic`` (``"mean"`` or ``"peak"``; None records none, the
    mean) as what a lesion's probabilities give to compare with it; ``value`` None removes both records (0.65 of
    the mean applies again). The package is rewritten with :func:`rewrite_package_metadata` (weights unchanged,
    metadata sealed again). Returns its path."""
    if value is not None and not (_is_number(value) and 0 <= float(value) <= 1):
        raise InputError(f"A lesion confidence threshold is a probability from 0 to 1 (got {value!r}).")
    if statistic is not None:
        from .inference.postprocess import LESION_PROBABILITY_STATISTICS

        if statistic not in LESION_PROBABILITY_STATISTICS:
            raise InputError(f"A lesion probability statistic is one of {', '.join(LESION_PROBABILITY_STATISTICS)} "
                             f"(got {statistic!r}).")
    if value is None and statistic is not None:
        raise InputError("A lesion probability statistic is recorded with the threshold it is read at: give the "
                         "threshold too.")

    def change(meta: Dict[str, Any]) -> None:
        recorded = dict(meta.get("postprocessing") or {})
        recorded.pop("lesion_probability_statistic", None)
        if value is None:
            recorded.pop("min_lesion_probability", None)
        else:
            recorded["min_lesion_probability"] = float(value)
            if statistic is not None:
                recorded["lesion_probability_statistic"] = str(statistic)
        if recorded:
            meta["postprocessing"] = recorded
        else:
            meta.pop("postprocessing", None)

    return rewrite_package_metadata(path, change)


def _foreign_safetensors_message(path: PathLike, header: Mapping[str, Any]) -> str:
    """Why a safetensors file without LiverTumorSeg metadata (another project's weights, such as a Hugging Face
    model) is refused and what to give instead. It said 'Create packages with save_model_package', which cannot turn
    another project's network into a LiverTumorSeg one."""
    tensors = sum(1 for name in header if name != "__metadata__")
    return (f"'{path}' is a safetensors file but not a LiverTumorSeg model package: it holds {tensors} tensor(s) "
            f"and no '{METADATA_KEY}' record of the network and preprocessing LiverTumorSeg needs (the "
            f"weights of another program, such as a Hugging Face model, cannot be run here). Give a LiverTumorSeg "
            f"model package ('livertumorseg models' lists the installed ones; 'livertumorseg train' makes one).")


def _read_header_and_metadata(path: PathLike):
    """``(safetensors header, validated livertumorseg metadata)`` of a package file."""
    header = read_safetensors_header(path)
    meta_strings = header.get("__metadata__", {})
    if METADATA_KEY not in meta_strings:
        raise ModelPackageError(_foreign_safetensors_message(path, header))
    try:
        meta = parse_package_metadata(meta_strings[METADATA_KEY], path)
    except _DamagedMetadata as exc:  # said what was wrong and nothing to do
        raise ModelPackageError(f"{exc} The package was damaged or edited: {_fresh_copy_advice(Path(path))}") \
            from None
    _check_metadata_hash(meta, path)
    return header, meta


def parse_package_metadata(text: str, path: PathLike = "package") -> Dict[str, Any]:
    """The ``livertumorseg`` metadata JSON text of a package, parsed and checked as loading checks it (size, finite
    numbers, bounded integers, nesting, every field: :func:`validate_package_metadata`); ModelPackageError names
    what is wrong."""
    if len(text) > MAX_METADATA_BYTES:
        # an exact count: one character over read '4.0 MiB of metadata (at most 4 MiB)', a size within the limit
        raise _DamagedMetadata(f"Model package '{path}' has {len(text):,} characters of metadata (at most "
                                f"{MAX_METADATA_BYTES:,}: {MAX_METADATA_BYTES / 2 ** 20:g} MiB); the file is corrupt "
                                f"or hostile.")
    try:
        meta = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except ValueError as exc:
        raise _DamagedMetadata(f"Model package '{path}' has corrupt metadata JSON ({exc}).")
    except RecursionError:
        raise _DamagedMetadata(f"Model package '{path}' has metadata nested too deeply; the file is corrupt or "
                                f"hostile.") from None
    return validate_package_metadata(meta, path)


MAX_METADATA_INT = 2 ** 64
"""Largest integer accepted in package metadata: any 64-bit value (a training seed may be one); counts and
sizes are far below."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows (save_model_package writes none)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > 21 or abs(int(text)) > MAX_METADATA_INT:
        raise ValueError(f"integer {text[:20]}... is out of range")
    return int(text)


_WARNED_UNSEALED = set()  # type: set


SEALED_SINCE_VERSION = (0, 2, 0)
"""Every package saved by this library version or later records ``metadata_sha256`` (added during 0.1.0, so a 0.1.0
package may lack it)."""


def _check_metadata_hash(meta: Dict[str, Any], path: PathLike) -> None:
    """Refuse metadata that differs from the ``metadata_sha256`` it was saved with. Packages without one, written
    before it existed, are left to the weights' hash and, when bundled, to :data:`BUNDLED_CHECKSUMS`, with a warning
    once per file (an edited window level with the hash key deleted loaded without a word); one whose
    ``library_version`` is :data:`SEALED_SINCE_VERSION` or later was saved with it, so its record was removed: refused
    (a window level edited from 40 to 300 with the record deleted ran with a warning and labelled 240 mL of tumor);
    so is one whose ``library_version`` is missing or unreadable ('0.6.17-dev'), which loaded with the warning alone
    (the file-safety audit). The hashes are not signatures: they find damage and hand edits; anyone who edits a
    package can also compute them again (check a downloaded package's file SHA-256 against its publisher's)."""
    written = _version_tuple(meta.get("library_version"))
    if "metadata_sha256" not in meta and written is None:  # only a package dated before the record may lack it
        raise ModelPackageError(f"Model package '{path}' failed its integrity check: it records no metadata SHA-256 "
                                f"and no library version that dates it before that record existed (library_version "
                                f"{str(meta.get('library_version'))[:40]!r}): the record was removed and the version "
                                f"changed or deleted, so its preprocessing, labels or architecture may have been "
                                f"changed. A package runs only as trained; {_fresh_copy_advice(Path(path))}")
    if "metadata_sha256" not in meta and written >= SEALED_SINCE_VERSION:
        raise ModelPackageError(f"Model package '{path}' failed its integrity check: it was written by LiverTumorSeg "
                                f"{meta.get('library_version')}, which records every package's metadata SHA-256, but "
                                f"this one records none: the record was removed, so its preprocessing, labels or "
                                f"architecture may have been changed. A package runs only as trained; "
                                f"{_fresh_copy_advice(Path(path))}")
    if "metadata_sha256" not in meta:
        if str(path) not in _WARNED_UNSEALED:
            _WARNED_UNSEALED.add(str(path))
            log.warning("warning: model package '%s' records no metadata SHA-256 (saved by an earlier version of "
                        "LiverTumorSeg, or the record was removed): a changed window, spacing or label map cannot be "
                        "detected. Re-save it with LiverTumorSegLib.package.save_model_package, or use a fresh "
                        "copy.", path)
        return
    found = metadata_sha256(meta)
    if found != meta["metadata_sha256"]:
        raise ModelPackageError(f"Model package '{path}' failed its integrity check: its metadata (preprocessing, "
                                f"labels, architecture or descriptions) was changed after the package was saved "
                                f"(metadata SHA-256 {found[:16]}... but the package records "
                                f"{meta['metadata_sha256'][:16]}...). A package runs only as trained; "
                                f"{_fresh_copy_advice(Path(path))}")


def readable_package_metadata(path: Optional[PathLike]) -> Optional[Dict[str, Any]]:
    """:func:`read_package_metadata` of ``path``, or None when there is no such file or it cannot be used (a run's
    earlier output, read to see how far that run got: unreadable means start again)."""
    if path is None or not Path(path).is_file():
        return None
    try:
        return read_package_metadata(path)
    except ModelPackageError:
        return None


def read_package_metadata(path: PathLike) -> Dict[str, Any]:
    """The ``livertumorseg`` metadata dict of a package, from its header only (fast; no torch import).

    Raises ModelPackageError for a missing / wrong-type / truncated / corrupt file, a safetensors file
    without LiverTumorSeg metadata, an unsupported ``format_version``, or any metadata field of the wrong
    type, range, size or nesting depth (:func:`validate_package_metadata`).
    """
    return _read_header_and_metadata(path)[1]


# ---------------------------------------------------------------------------------------------------
# saving

def _preprocessing_to_dict(preprocessing: Any) -> Dict[str, Any]:
    if preprocessing is None:
        raise InputError("A model package needs the preprocessing configuration used in training.")
    if hasattr(preprocessing, "to_dict"):
        return preprocessing.to_dict()
    if isinstance(preprocessing, Mapping):
        return dict(preprocessing)
    raise InputError(f"preprocessing must be a PreprocessingConfig or a dict, got {type(preprocessing).__name__}.")


def save_model_package(path: PathLike, model, preprocessing, metadata: Optional[Mapping[str, Any]] = None,
                       overwrite: bool = False, weights_storage: str = "float32") -> Path:
    """Write ``model`` (built by ``models.build_model``; DDP / compiled wrappers are unwrapped) and its
    ``preprocessing`` (PreprocessingConfig or dict) to one ``.safetensors`` package at ``path``, atomically.

    ``metadata`` may set ``name`` (default: file stem), ``description``, ``training``, ``validation``,
    ``labels``, ``default`` (bool) and any extra JSON-able keys. Returns the written path.

    ``weights_storage="float16"`` stores the float32 tensors as float16 (half the file; the loader casts them
    back to float32, so inference runs as before up to float16 rounding: relative error <= 2**-11 per weight
    of magnitude >= 2**-14 (6.1e-5), absolute error <= 2**-25 below that, where float16 is subnormal); a weight
    outside float16's range (|w| > 65504) is refused rather than stored as infinity. A float16 or bfloat16 network
    (``model.half()``) is stored from its exact float32 values; a float64 one is refused (it would be rounded), as
    are NaN or infinite weights.
    """
    import torch
    from safetensors.torch import save_file

    from .models import model_config, unwrap_model

    path = Path(path)
    if path.suffix.lower() != PACKAGE_SUFFIX:
        raise InputError(f"Model packages are .safetensors files; got '{path.name}'. Use a name ending "
                         f"in {PACKAGE_SUFFIX}.")
    plain = unwrap_model(model)
    architecture = model_config(plain)
    parameters = int(sum(p.numel() for p in plain.parameters()))
    problem = network_size_problem(parameters)  # written, and every load refused it as 'corrupt or hostile'
    if problem is None:
        problem = network_size_problem(parameters, network_activation_bytes(architecture))
    if problem:
        raise InputError(f"Not saved: {problem}, and loading refuses such a package (a guard against corrupt or "
                         f"hostile files). Use a smaller network (fewer channels, a smaller width).")
    tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in plain.state_dict().items()}
    # the network loading builds holds float32 weights: a model.half() / .bfloat16() network was written and every
    # load refused it ('F16 but must be F32'); those cast to float32 exactly, a float64 one would be rounded
    other = sorted(name for name, t in tensors.items() if t.is_floating_point()
                   and t.dtype not in (torch.float32, torch.float16, torch.bfloat16))
    if other:
        found = str(tensors[other[0]].dtype).replace("torch.", "")
        raise InputError(f"Not saved: {len(other)} weight tensor(s) are {found} (e.g. '{other[0]}'), but a package "
                         f"holds the float32 network that loading builds, and {found} would be rounded to it. Call "
                         f"model.float() first if that is meant.")
    tensors = {name: (t.float() if t.dtype in (torch.float16, torch.bfloat16) else t) for name, t in tensors.items()}
    problem = _non_finite_weights(tensors)
    if problem:  # float16 storage said 'reaches nan, outside float16's range; store it as float32'
        raise InputError(f"Not saved: {problem}; the network would segment nothing. Retrain it (a lower learning "
                         f"rate) or save the weights of an earlier epoch.")
    tensors = _to_storage_dtype(tensors, weights_storage)
    extra = dict(metadata or {})
    meta: Dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "name": str(extra.pop("name", None) or path.stem),  # None or "" was stored as the text 'None' / nothing
        "description": str(extra.pop("description", "")),
        "architecture": architecture,
        "preprocessing": _preprocessing_to_dict(preprocessing),
        "labels": extra.pop("labels", DEFAULT_LABELS),
        "training": extra.pop("training", {}),
        "validation": extra.pop("validation", {}),
        "library_version": __version__,
        "weights_storage": weights_storage,
        "created": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
    }
    for key, value in extra.items():
        if key in RESERVED_METADATA_KEYS:
            raise InputError(f"metadata key '{key}' is set by save_model_package; remove it.")
        meta[key] = value
    try:  # every setting recorded, defaults included: a package saved with {} took whatever the defaults were at
        # each later load, so a change of default would have changed its preprocessing without a word
        resolved = _preprocessing_from_dict(meta["preprocessing"], path)
    except ModelPackageError as exc:
        raise InputError(f"Not saved: loading would refuse this package: {exc} Fix the metadata or preprocessing "
                         f"passed to save_model_package.") from exc
    if hasattr(resolved, "to_dict"):
        meta["preprocessing"] = resolved.to_dict()
    for key in ("architecture", "preprocessing"):  # numbers the network computes with: null would not load
        if not _all_finite(meta[key]):
            raise InputError(f"The package's {key} holds a non-finite number (NaN or infinity); it could never be "
                             f"loaded. Fix the {key} before saving.")
    meta["weights_sha256"] = weights_sha256(tensors)
    try:
        meta_json = sealed_metadata_json(meta)
    except (TypeError, ValueError) as exc:
        raise InputError(f"Package metadata must be JSON-serialisable: {exc}") from exc
    try:  # what loading would refuse is refused now, before a training run's result is written unloadable
        parse_package_metadata(meta_json, path)
        preprocessing_config = _preprocessing_from_dict(meta["preprocessing"], Path(path))  # unknown keys, ranges
    except ModelPackageError as exc:
        raise InputError(f"Not saved: loading would refuse this package: {exc} Fix the metadata or preprocessing "
                         f"passed to save_model_package.") from exc
    try:  # loads (a package is also a weights container), but segment refuses it: said now, not at inference
        check_input_channels(SimpleNamespace(preprocessing=preprocessing_config, architecture=architecture,
                                             path=path))
    except ModelPackageError as exc:
        log.warning("warning: %s segment and evaluate will refuse it.", exc)
    with atomic_output(path, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: meta_json, "format": "pt"})
    record_bundled_checksum(path)
    return path


PICKLE_REFUSAL = ("it looks like a PyTorch pickle (.pt/.pth), which is never loaded because unpickling can run "
                  "arbitrary code. Convert trusted weights with 'save_model_package' first.")
MONAI_BUNDLE_REFUSAL = ("LiverTumorSeg does not run MONAI bundles (their networks are built from the bundle's own "
                        "configs and code, and their weights are pickles): give a LiverTumorSeg .safetensors model "
                        "package ('livertumorseg models' lists the installed ones)")


def _zip_member_names(path: Path) -> List[str]:
    """The member names of the zip archive ``path``; [] when it is no readable zip."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return []


def _looks_like_monai_bundle(names: Sequence[str]) -> bool:
    """Whether the paths ``names`` (of a folder or a zip, '/'-separated) hold a MONAI bundle's
    ``configs/metadata.json`` or ``configs/inference.json``."""
    markers = (["configs", "metadata.json"], ["configs", "inference.json"])
    return any(name.replace("\\", "/").split("/")[-2:] in markers for name in names)


def _foreign_file_kind(path: Path, head: bytes) -> Optional[str]:
    """What the file ``path`` (whose first bytes are ``head``) is instead of a package, and what to give, or None
    when it is not recognised: a zipped or gzipped package, a MONAI bundle zip, a PyTorch pickle or TorchScript file,
    an ONNX file. A MONAI bundle zip and any other zip were called a PyTorch pickle, an ONNX file a truncated file
    with a header length of 8031177557570357256 bytes."""
    if head[8:9] == b"{":  # a package's header JSON opens there: a package cut short, whatever its length's bytes
        return None
    if head[:2] == b"PK":
        names = _zip_member_names(path)
        packages = [name for name in names if name.lower().endswith(PACKAGE_SUFFIX)]
        if packages:
            return f"it is a zip archive holding {', '.join(packages[:3])}; unzip it and give the .safetensors file."
        if _looks_like_monai_bundle(names):
            return f"it is a zipped MONAI bundle. {MONAI_BUNDLE_REFUSAL}."
        if names and not any(name.endswith(".pkl") or "/code/" in name for name in names):
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            return (f"it is a zip archive ({shown}) holding no .safetensors model package; give the package "
                    f"itself.")
        return PICKLE_REFUSAL
    if head[:1] == b"\x80":
        return PICKLE_REFUSAL
    if head[:2] == b"\x1f\x8b":  # a package gzipped for download
        return ("it is gzip-compressed; decompress it (gunzip, or tar -xzf for a .tar.gz) and give the .safetensors "
                "file.")
    # ONNX: a protobuf ModelProto opening with ir_version (tag 0x08)
    if path.suffix.lower() == ".onnx" or (head[:1] == b"\x08" and b"onnx" in head.lower()):
        return ("it is an ONNX model file, which LiverTumorSeg does not run: give the .safetensors model package it "
                "was exported from (with --backend onnx, segment runs a package's network on ONNX Runtime itself).")
    return None


def rewrite_package_metadata(path: PathLike, change: Callable[[Dict[str, Any]], None]) -> Path:
    """Rewrite the package at ``path`` (through a link: the file it names) with its metadata changed in place by
    ``change(meta)``, its tensors and their SHA-256 unchanged, its file mode kept and the metadata's own hash sealed
    again; a bundled package's entry in ``SHA256SUMS`` follows (also under a link's own name there). Refused before
    the file is touched (ModelPackageError / InputError): a package that does not load as it is (damaged weights, a
    bundled file that is not the listed one: its damage would be sealed in), and changed metadata that loading or
    segmenting would refuse (its form, an unknown or out-of-range preprocessing setting, input channels the network
    does not take). The result is loaded once more. Returns the rewritten file's path.

    Not atomic with the checksum list: a crash between the package's rename and the list's leaves a bundled package
    that loading refuses until it is restored (``git checkout``), as :func:`save_model_package` would."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    given = Path(path)
    path = given.resolve()  # through a link: the package it names (the link would be replaced by a copy)
    load_model_package(given)  # weights hash, metadata hash, the bundled list: what is rewritten is intact
    mode = path.stat().st_mode & 0o7777
    meta = read_package_metadata(path)
    with safe_open(str(path), framework="pt") as handle:
        header = dict(handle.metadata() or {})
        # copies: safetensors' tensors are views of a memory map of the file, and Windows cannot replace a mapped
        # file (the rename below failed there as 'open in another program', every time)
        tensors = {name: handle.get_tensor(name).clone() for name in handle.keys()}
    meta_weights_sha256 = weights_sha256(tensors)
    if meta_weights_sha256 != meta.get("weights_sha256"):  # replaced since the check above
        raise ModelPackageError(f"'{path}' changed while it was read; nothing was rewritten. Try again.")
    segmentable = _channels_problem(meta, path) is None  # one segment refuses already is not refused again here
    change(meta)
    try:
        header[METADATA_KEY] = sealed_metadata_json(meta)
        changed = parse_package_metadata(header[METADATA_KEY], path)
        problem = _channels_problem(meta, path)
        if segmentable and problem:
            raise ModelPackageError(problem)
        # the network and weights checks of the load below, made before the file is replaced: a changed
        # architecture, weights_storage or weights_sha256 was written, and only then refused, leaving the package
        # unloadable
        _plan_network(changed, {name: {"shape": list(t.shape), "dtype": _safetensors_dtype(t)}
                                for name, t in tensors.items()}, path, advice="")  # the change asked is at fault
        if changed["weights_sha256"] != meta_weights_sha256:
            raise ModelPackageError(f"its weights_sha256 would no longer be the weights' ({meta_weights_sha256[:16]}"
                                    f"...); the weights are not changed here")
    except (TypeError, ValueError, ModelPackageError) as exc:
        raise InputError(f"'{path}' was not changed: loading or segmenting would refuse the changed metadata "
                         f"({exc}).") from exc
    with atomic_output(path, overwrite=True) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    chmod_where_allowed(path, mode)  # a read-only package stays read-only
    record_bundled_checksum(path)
    if given != path:  # a link in the bundled folder is listed under its own name there
        record_bundled_checksum(given)
    load_model_package(given)
    return path


def _channels_problem(meta: Mapping[str, Any], path: Path) -> Optional[str]:
    """Why :func:`check_input_channels` refuses the package described by ``meta`` (None: it does not); a
    preprocessing configuration that does not parse raises ModelPackageError."""
    config = _recorded_preprocessing(meta, path)  # absent: the defaults, as a load takes
    try:
        check_input_channels(SimpleNamespace(preprocessing=config, architecture=meta["architecture"], path=path))
    except ModelPackageError as exc:
        return str(exc)
    return None


def _non_finite_weights(tensors: Mapping[str, Any]) -> Optional[str]:
    """What in ``tensors`` is NaN or infinite (``"2 weight tensor(s) hold NaN or infinite values (e.g. 'x': 3 of
    16)"``), or None: such a network's output is NaN, which segmented nothing ('0.0 mL', exit 0)."""
    import torch

    bad = {}
    for name in sorted(tensors):
        tensor = tensors[name]
        if tensor.is_floating_point() and tensor.numel():
            count = int((~torch.isfinite(tensor)).sum())
            if count:
                bad[name] = (count, int(tensor.numel()))
    if not bad:
        return None
    name, (count, total) = next(iter(bad.items()))
    return (f"{len(bad)} weight tensor(s) hold NaN or infinite values (e.g. '{name}': {count} of {total}; a "
            f"diverged training leaves such weights)")


def _all_finite(value: Any) -> bool:
    """No NaN or infinity anywhere in a JSON-like value (dicts, lists, numbers, strings)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_all_finite(v) for v in value)
    return True


BUNDLED_CHECKSUMS = "SHA256SUMS"
"""The bundled models folder's list of each package's whole-file SHA-256 (``sha256sum`` format). The weights'
hash inside a package cannot catch an edited metadata (a window level changed from 40 to 300 loads as valid
and segments a 9 mL liver); this list does, for the packages every clinician gets."""


def file_sha256(path: PathLike) -> str:
    """SHA-256 hex digest of a whole file (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _in_bundled_folder(path: Path) -> bool:
    """Whether ``path`` lies in the bundled folder (:func:`_bundled_name`)."""
    return _bundled_name(path) is not None


def _bundled_name(path: Path) -> Optional[str]:
    """The name under which the bundled folder's :data:`BUNDLED_CHECKSUMS` lists ``path``, or None for a file outside
    that folder: ``path``'s own name where it lies there, also as a symbolic link placed there (resolving the link
    first would take a link to an edited file outside the folder past the list); its target's name for a link from
    elsewhere to a file there (looked up under the link's own name, a user folder's link to a bundled package was
    called an unlisted bundled file, its release check skipped, and a rewrite through it listed a name the folder
    does not hold: the package audit)."""
    folder = bundled_models_dir().resolve()
    if Path(path).absolute().parent.resolve() == folder:
        return Path(path).name
    try:
        target = Path(path).resolve()
    except (OSError, RuntimeError):  # a loop of links (RuntimeError before Python 3.13): weights_problem raised it
        return None
    return target.name if target.parent == folder else None


def read_bundled_checksums() -> Dict[str, str]:
    """``{file name: SHA-256}`` from the bundled folder's :data:`BUNDLED_CHECKSUMS` (empty when it is missing)."""
    return _read_checksum_file(bundled_models_dir() / BUNDLED_CHECKSUMS)


def _read_checksum_file(listing: Path) -> Dict[str, str]:
    """``{file name: SHA-256}`` of a ``sha256sum``-format list (empty when it is missing)."""
    if not listing.is_file():
        return {}
    sums = {}
    for line in listing.read_text(encoding="utf-8").splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def record_bundled_checksum(path: PathLike) -> None:
    """After a package is written into the bundled folder, or into another ``Resources/Models`` folder holding a
    :data:`BUNDLED_CHECKSUMS` list (a clone's, written while LIVERTUMORSEG_RESOURCES points elsewhere), put its
    SHA-256 into that list (under :func:`_bundled_name`): a stale list made every later load from that folder fail
    its integrity check. Any other folder's list (a publisher's beside a download) is left as it is, with a
    warning where it lists the file: rewriting it made 'sha256sum -c' vouch for the changed file (the package
    audit)."""
    path = Path(path)
    name = _bundled_name(path)
    if name is not None:
        listing = bundled_models_dir() / BUNDLED_CHECKSUMS
    else:
        listing = path.absolute().parent / BUNDLED_CHECKSUMS
        if not listing.is_file():
            return
        name = path.name
        folder = path.absolute().parent
        if not (folder.name == "Models" and folder.parent.name == "Resources"):
            try:
                listed = _read_checksum_file(listing).get(name)
            except (OSError, UnicodeDecodeError):  # a list this reader cannot read: nothing to say of it
                listed = None
            if listed is not None and listed.lower() != file_sha256(path):  # said only where it no longer matches
                log.warning("warning: '%s' no longer matches its line in '%s' (written by whoever made that list, "
                            "e.g. its publisher); the list was left as it is", path, listing)
            return
    entry = f"{file_sha256(path)}  {name}"
    lines = listing.read_text(encoding="utf-8").splitlines() if listing.is_file() else []
    kept = [line for line in lines if _checksum_line_name(line) != name]
    at = next((i for i, line in enumerate(lines) if _checksum_line_name(line) == name), len(lines))
    kept.insert(min(at, len(kept)), entry)  # its old place; every other line as it was (it was rewritten sorted,
    # in GNU form: a folder's own list, with comments or 'SHA256 (name) = ...' lines, was mangled)
    with atomic_output(listing, overwrite=True) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def _checksum_line_name(line: str) -> Optional[str]:
    """The file name a ``sha256sum`` list line is for (``HASH  NAME``, ``HASH *NAME`` or the ``--tag`` form
    ``SHA256 (NAME) = HASH``), or None for any other line (a comment, a blank line)."""
    text = line.strip()
    if text.startswith("SHA256 (") and ") = " in text:
        return text[len("SHA256 ("):text.rindex(") = ")]
    parts = text.split(None, 1)
    if len(parts) == 2 and not text.startswith("#"):  # (a damaged hash still names its file, as the loader reads it)
        return parts[1].lstrip("*")
    return None


def _no_default_model_message(listed: Sequence[Dict[str, Any]]) -> str:
    """Why ``"default"`` names no package: the bundled folder is missing (a non-editable install, or
    LIVERTUMORSEG_RESOURCES pointing elsewhere) or holds no default package (its ``default.safetensors`` deleted).
    ``listed``: the bundled folder's packages (:func:`list_installed_models`). The install advice was given in both
    cases, also to a clone whose folder held five usable models."""
    import os

    from .resources import MISSING_RESOURCES_HINT

    folder = bundled_models_dir()
    chosen = os.environ.get("LIVERTUMORSEG_RESOURCES")
    where = f" (chosen by LIVERTUMORSEG_RESOURCES={chosen}, which should name a folder holding Models/ and Sample/)" \
        if chosen else ""
    other = " Or pass a model package path or an installed model's name with --model."
    if not folder.is_dir():
        return f"No default model is installed: the bundled models folder '{folder}' does not exist{where}. " \
               f"{MISSING_RESOURCES_HINT}{other}"
    unusable = [e for e in listed if e["error"] is not None]
    names = ", ".join(Path(e["path"]).name for e in listed if e["error"] is None) or "no usable package"
    said = " (a package there that cannot be used is named in a warning above)" if unusable else ""
    return (f"No default model is installed in the bundled models folder '{folder}'{where}: it holds {names}, but no "
            f"default.safetensors{said}. Restore it {_from_the_release('default.safetensors')}.{other}")


def _from_the_release(*names: str) -> str:
    """``from the release (in a clone: git checkout -- Resources/Models/NAME ...)``: how bundled files (``names``;
    none: the whole folder) are restored; the one wording of every message that says so."""
    import os

    from .resources import bundled_models_dir

    paths = " ".join(f"Resources/Models/{name}" for name in names) or "Resources/Models"
    if os.environ.get("LIVERTUMORSEG_RESOURCES"):  # the folder is named: it may be no clone's, or another clone's
        return (f"from the release into '{bundled_models_dir()}' (LIVERTUMORSEG_RESOURCES; if that is a clone's "
                f"Resources/ folder: git checkout -- {paths} there)")
    return f"from the release (in a clone: git checkout -- {paths})"


def _fresh_copy_advice(path: Path) -> str:
    """What to do about a changed package: a bundled one is restored, any other re-obtained. Re-saving it would
    seal the unknown edit (in the bundled folder also record it in SHA256SUMS), and needs the network, which a
    package that does not load cannot give: that advice was unusable."""
    if _in_bundled_folder(path):
        return f"restore it {_from_the_release(_bundled_name(path) or path.name)}."
    return ("obtain a fresh copy (to change a package's metadata on purpose, use "
            "LiverTumorSegLib.package.rewrite_package_metadata on the unchanged original).")


def _bundled_checksum_error(path: Path, found: str, expected: str) -> ModelPackageError:
    """A package of the bundled folder (its caller knows it is) whose file hash is not the one SHA256SUMS lists."""
    return ModelPackageError(f"Bundled model package '{path}' failed its integrity check: its SHA-256 is "
                             f"{found[:16]}... but {BUNDLED_CHECKSUMS} beside it records {expected[:16]}...; the "
                             f"file (metadata or weights) or {BUNDLED_CHECKSUMS} was modified or damaged. Restore "
                             f"both {_from_the_release(_bundled_name(path) or path.name, BUNDLED_CHECKSUMS)}.")


def _warn_unlisted_bundled(path: Path, listed: bool = True) -> None:
    """Warn (once per file and process) that ``path``, in the bundled folder, is not in its
    :data:`BUNDLED_CHECKSUMS` list, or that the folder has no such list (``listed`` False): the release's whole-file
    check cannot vouch for it (before, it loaded without a word; only its own weights and metadata hashes were
    checked; a deleted list switched the check off for every bundled package)."""
    key = str(Path(path).absolute())
    if key in _UNLISTED_WARNED:
        return
    _UNLISTED_WARNED.add(key)
    if not listed:
        log.warning("warning: the bundled models folder (%s) has no %s, so the release's integrity check cannot "
                    "vouch for model package '%s'. Restore the folder %s.", bundled_models_dir(), BUNDLED_CHECKSUMS,
                    path.name, _from_the_release())
        return
    log.warning("warning: model package '%s' lies in the bundled models folder but %s there does not list it, so "
                "the release's integrity check cannot vouch for it. If you added it yourself, install it in the "
                "user model folder (%s) instead; otherwise restore the folder from the release.", path,
                BUNDLED_CHECKSUMS, user_models_dir())


_UNLISTED_WARNED = set()  # type: set


def _verified_bundled_bytes(path: Path) -> Optional[bytes]:
    """A listed bundled package's bytes, checked against :data:`BUNDLED_CHECKSUMS` (read once: the tensors
    are parsed from these same bytes); None for any other package. A package in the bundled folder that the list
    does not name gets a warning (:func:`_warn_unlisted_bundled`)."""
    if not _in_bundled_folder(path):
        return None
    sums = read_bundled_checksums()  # {} when the folder has no list
    expected = sums.get(_bundled_name(path) or path.name)
    if expected is None:
        _warn_unlisted_bundled(path, listed=(bundled_models_dir() / BUNDLED_CHECKSUMS).is_file())
        return None
    data = path.read_bytes()
    found = hashlib.sha256(data).hexdigest()
    if found != expected:
        raise _bundled_checksum_error(path, found, expected)
    return data


def _load_tensors(path: Path, data: Optional[bytes]) -> Dict[str, Any]:
    """The package's tensors (safetensors, no pickle), from ``data`` when the file was already read."""
    from safetensors import SafetensorError
    from safetensors.torch import load, load_file

    try:
        return load_file(str(path), device="cpu") if data is None else load(data)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelPackageError(f"Model package '{path}' could not be read ({str(exc)[:200]}); the file is corrupt. "
                                f"{_COPY_AGAIN}")


def carried_metadata(meta: Mapping[str, Any]) -> Dict[str, Any]:
    """A loaded package's metadata without the keys :func:`save_model_package` writes itself: what to pass as
    ``metadata`` when re-saving a package (e.g. with new validation numbers or another weight storage)."""
    return {k: v for k, v in meta.items() if k not in RESERVED_METADATA_KEYS + ("created",)}


def _to_storage_dtype(tensors: Dict[str, Any], weights_storage: str) -> Dict[str, Any]:
    """float32 tensors cast to the storage dtype (other dtypes, e.g. BatchNorm's int64 counters, unchanged)."""
    import torch

    if weights_storage not in WEIGHT_STORAGE_DTYPES:
        raise InputError(f"weights_storage must be one of {', '.join(WEIGHT_STORAGE_DTYPES)}; got "
                         f"{weights_storage!r}.")
    if weights_storage == "float32":
        return tensors
    out = {}
    for name, tensor in tensors.items():
        if tensor.dtype == torch.float32:
            peak = float(tensor.abs().max()) if tensor.numel() else 0.0
            if not peak <= FLOAT16_MAX:
                raise InputError(f"Weight '{name}' reaches {peak:.4g}, outside float16's range (+-{FLOAT16_MAX:g});"
                                 f" store this model with weights_storage='float32'.")
            tensor = tensor.to(torch.float16)
        out[name] = tensor
    return out


def _storage_code(network_code: str, meta: Mapping[str, Any]) -> str:
    """The safetensors dtype code a network tensor of ``network_code`` has in a package with ``meta``."""
    if network_code == "F32" and meta.get("weights_storage") == "float16":
        return "F16"
    return network_code


def _from_storage_dtype(tensors: Dict[str, Any], meta: Mapping[str, Any]) -> Dict[str, Any]:
    """float16-stored weights back to the network's float32 (a float32 package is returned as it is)."""
    import torch

    if meta.get("weights_storage") != "float16":
        return tensors
    return {k: (v.to(torch.float32) if v.dtype == torch.float16 else v) for k, v in tensors.items()}


# ---------------------------------------------------------------------------------------------------
# loading

def _preprocessing_from_dict(data: Dict[str, Any], path: Path):
    try:
        from .preprocessing import PreprocessingConfig
    except ImportError:
        return dict(data)
    try:
        return PreprocessingConfig.from_dict(data)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a package problem
        raise ModelPackageError(f"Model package '{path}' has an invalid preprocessing configuration: {exc}")


def _version_tuple(text: Any) -> Optional[Tuple[int, ...]]:
    """``"0.12.3"`` -> ``(0, 12, 3)``; None for a text that is not dot-separated whole numbers in ASCII digits
    (``"0.2.0rc1"``). A superscript two (``"0.\u00b2"``: ``str.isdigit`` accepts it, ``int`` refuses it) or a part of
    5,000 digits (past Python's int-from-text limit) made every load of a package recording it an 'internal error:
    ValueError' (exit 1)."""
    parts = str(text).split(".")
    ok = len(parts) <= 4 and all(p.isascii() and p.isdigit() and len(p) <= 20 for p in parts)
    return tuple(int(p) for p in parts) if ok else None


def _newer_version_advice(meta: Mapping[str, Any]) -> str:
    """:func:`unknown_setting_advice` for a package a newer LiverTumorSeg wrote (update to use it), else '': a value
    this library refuses in a package of its own or an older version is damage, said as such by the caller."""
    theirs, ours = _version_tuple(meta.get("library_version")), _version_tuple(__version__)
    return unknown_setting_advice(meta) if theirs is not None and ours is not None and theirs > ours else ""


def unknown_setting_advice(meta: Mapping[str, Any]) -> str:
    """What to do about a package recording a setting this library does not know (a preprocessing key or channel
    kind, an architecture option): update LiverTumorSeg when the package's ``library_version`` is newer than this
    library, a fresh copy when this version wrote it (every setting this version writes is known here), else
    either (an older version's package: 0.1.0 was recorded by every version before 27 Nov 2026). Those refusals named the setting but said nothing to do."""
    written = meta.get("library_version")
    theirs, ours = _version_tuple(written), _version_tuple(__version__)
    if theirs is not None and ours is not None and theirs > ours:
        return (f"The package was written by LiverTumorSeg {written}, newer than this one ({__version__}): update "
                f"LiverTumorSeg to use it.")
    if theirs is not None and theirs == ours:  # this version wrote it: every setting it writes is known here
        return (f"It records this version, {__version__}, whose packages hold no such setting: it was damaged or "
                f"edited; obtain a fresh copy.")
    return (f"Update LiverTumorSeg if the package comes from a newer version (it records library_version "
            f"{str(written)[:40]!r}; this is {__version__}); otherwise it was damaged or edited: obtain a fresh copy.")


def _recorded_preprocessing(meta: Mapping[str, Any], path: Path) -> Any:
    """:func:`_preprocessing_from_dict` of a package's recorded preprocessing (absent: the defaults), its refusal
    ending in :func:`unknown_setting_advice`."""
    try:
        config = _preprocessing_from_dict(meta.get("preprocessing") or {}, path)
    except ModelPackageError as exc:
        raise ModelPackageError(f"{exc} {unknown_setting_advice(meta)}") from None
    recorded = meta.get("preprocessing") if isinstance(meta.get("preprocessing"), dict) else {}
    if hasattr(config, "to_dict") and _created_since(meta, EVERY_SETTING_RECORDED_SINCE):
        missing = sorted(setting for setting in set(config.to_dict()) - set(recorded)
                         if _setting_existed_when_created(setting, meta))
        if missing:  # a package of a version that writes every setting: its channels (or all) taken away
            raise ModelPackageError(
                f"Model package '{path}' does not record the preprocessing setting(s) {', '.join(missing)}, which "
                f"every package saved since {EVERY_SETTING_RECORDED_SINCE[:10]} records: it was damaged or edited "
                f"(run, it was given this library's defaults: a 15,302 mL 'liver', Dice 0.09, in the models "
                f"audit); obtain a fresh copy.")
    return config


EVERY_SETTING_RECORDED_SINCE = "2026-11-26T00:00:00+00:00"
"""From this time (UTC) every saved package records every preprocessing setting (``save_model_package`` fills in
each one since 25 Nov 2026); an earlier package lacking some was saved from a partial dict and gets the defaults with
a warning (:func:`_warn_unrecorded_preprocessing`), a later one lacking some was edited and is refused."""


def _created_since(meta: Mapping[str, Any], moment: str) -> bool:
    """Whether the package's ``created`` time (ISO 8601, with a zone) is at or after ``moment``; False when it
    cannot be read or has no zone."""
    import datetime

    created = _created_time(meta)
    return created is not None and created.tzinfo is not None and created >= datetime.datetime.fromisoformat(moment)


PREPROCESSING_SETTINGS_ADDED = {"context_min_mm": "2026-11-25T08:40:04+00:00",
                                "context_max_mm": "2026-11-25T09:05:06+00:00"}
"""Preprocessing settings added after packages were first saved, with the moment (UTC) each was added. Their default
(None: no bound) is what every earlier version did, so a package ``created`` before a setting existed lacks it only
because it was trained without it: loading it with the default preprocesses it as trained (the v1, v2 and v4 default
models README names were warned 'may not be what its network was trained with')."""


def _setting_existed_when_created(setting: str, meta: Mapping[str, Any]) -> bool:
    """False when the package (its ``created`` time, ISO 8601) was saved before ``setting`` was added
    (:data:`PREPROCESSING_SETTINGS_ADDED`); True otherwise, and when either time cannot be read."""
    import datetime

    added = PREPROCESSING_SETTINGS_ADDED.get(setting)
    created = _created_time(meta)
    return added is None or created is None or created.tzinfo is None or \
        created >= datetime.datetime.fromisoformat(added)


def _created_time(meta: Mapping[str, Any]) -> Any:
    """The package's ``created`` time (``datetime``, ISO 8601), None when it cannot be read."""
    import datetime

    try:
        return datetime.datetime.fromisoformat(str(meta.get("created")))
    except ValueError:
        return None


def _warn_unrecorded_preprocessing(recorded: Mapping[str, Any], preprocessing: Any, path: Path,
                                   meta: Optional[Mapping[str, Any]] = None) -> None:
    """Warn when a package records only part of its preprocessing (packages saved before 25 Nov 2026 from a partial
    dict; save_model_package now records every setting): the rest are this library's current defaults, which
    need not be the ones the network was trained with. A setting added after the package was ``created`` (``meta``;
    :data:`PREPROCESSING_SETTINGS_ADDED`) is not warned of: its default is what the package was trained with."""
    if not hasattr(preprocessing, "to_dict"):
        return
    missing = sorted(setting for setting in set(preprocessing.to_dict()) - set(recorded)
                     if _setting_existed_when_created(setting, meta or {}))
    if missing:
        log.warning("warning: model package '%s' does not record the preprocessing setting(s) %s; this library's "
                    "current defaults are used for them, which may not be what its network was trained with.",
                    path, ", ".join(missing))


def _network_with_weights(planned: Any, tensors: Dict[str, Any], path: Path, arch: Dict[str, Any]) -> Any:
    """The network of ``arch`` on the CPU holding ``tensors`` (the package's weights, float32 where the network is).
    ``planned``: that network as :func:`_planned_network` built it on the meta device; it gets uninitialised CPU
    memory (:func:`_give_cpu_memory`) and then every tensor through the strict ``load_state_dict`` (names, shapes,
    dtypes checked first, :func:`_check_state_dict_matches`). Building a second network drew random initial weights
    (kaiming/uniform: 0.05 s for the bundled UNet on a 2-core CPU), all of which the package's replaced, and its
    construction cost as much again. A network with a parameter or buffer the package does not fill (a
    non-persistent buffer), or a plain tensor attribute, would keep uninitialised or meta tensors that way: it is
    built for real instead (:func:`_built_network_with_weights`), as before."""
    if not _fully_loadable(planned, tensors):
        return _built_network_with_weights(tensors, path, arch)
    _check_state_dict_matches(planned, tensors, path, arch)
    _give_cpu_memory(planned)
    planned.load_state_dict(tensors, strict=True)
    return planned


def _give_cpu_memory(net: Any) -> None:
    """Replace every parameter and buffer of ``net`` (on the meta device) by an uninitialised CPU tensor of its shape
    and dtype, in place: a parameter stays a ``Parameter`` with its ``requires_grad``, one shared by two modules
    stays shared. ``Module.to_empty`` does the same through ``torch.empty_like``, whose meta-device implementation
    imports torch's symbolic shapes and sympy on first use (0.9 s of a fresh process's load on a 2-core CPU)."""
    import torch

    made = {}  # type: Dict[int, Any]
    for module in net.modules():
        for table in (module._parameters, module._buffers):
            for name, tensor in table.items():
                if tensor is None:
                    continue
                if id(tensor) not in made:
                    fresh = torch.empty(tuple(tensor.shape), dtype=tensor.dtype, device="cpu")
                    if isinstance(tensor, torch.nn.Parameter):
                        fresh = torch.nn.Parameter(fresh, requires_grad=tensor.requires_grad)
                    made[id(tensor)] = fresh
                table[name] = made[id(tensor)]


def _fully_loadable(net: Any, tensors: Mapping[str, Any]) -> bool:
    """Whether loading ``tensors`` (a state dict) fills every parameter and buffer of ``net`` and ``net`` keeps no
    other tensor in a module attribute, so nothing of it is left as the meta device or ``to_empty`` made it."""
    import torch

    if any(type(p) is not torch.nn.Parameter for p in net.parameters()):  # e.g. a lazy module's
        return False
    names = {name for name, _ in net.named_parameters(remove_duplicate=False)}
    names.update(name for name, _ in net.named_buffers(remove_duplicate=False))
    if not names <= set(tensors):
        return False
    return not any(_holds_tensor(value) for module in net.modules() for key, value in vars(module).items()
                   if key not in _MODULE_REGISTRIES)


_MODULE_REGISTRIES = frozenset({"_parameters", "_buffers", "_modules"})
"""A module's own dicts of its parameters, buffers and submodules: checked above by name, not as stray tensors."""


def _holds_tensor(value: Any, depth: int = 3) -> bool:
    """Whether ``value`` is a tensor or a list, tuple, set or dict holding one (``depth`` levels down): a module
    keeping a tensor that is not a parameter or buffer in a container attribute (a list of anchors, a dict of
    constants) would be left on the meta device or as ``to_empty`` made it, unseen by a check of plain
    attributes only."""
    import torch

    if isinstance(value, torch.Tensor):
        return True
    if depth <= 0 or isinstance(value, (str, bytes, torch.nn.Module)):  # a module's own tensors are checked as one
        return False
    if isinstance(value, dict):
        return any(_holds_tensor(item, depth - 1) for item in value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_holds_tensor(item, depth - 1) for item in value)
    return False


@contextlib.contextmanager
def float32_default_dtype() -> Iterator[None]:
    """torch's default floating dtype float32 for the ``with`` block, the caller's again after it: a package's
    network is float32 by contract, and under a notebook's ``torch.set_default_dtype(torch.float64)`` it was built
    in float64, so every package was refused as damaged ("63 tensor(s) have another type than the network's ...
    F16 but must be F64. Re-export the package") (the API audit)."""
    import torch

    caller = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(caller)


def _built_network_with_weights(tensors: Dict[str, Any], path: Path, arch: Dict[str, Any]) -> Any:
    """The network of ``arch`` built on the CPU (random initial weights drawn on a copy of torch's generator, so
    the caller's random state is left as it was), then given ``tensors`` by the strict ``load_state_dict``."""
    import torch

    from .models import build_model

    try:
        with torch.random.fork_rng(devices=[]), float32_default_dtype():  # initial weights drawn on a copy
            model = build_model(arch["name"], arch["in_channels"], arch["num_classes"], **arch["options"])
    except InputError as exc:
        raise _unbuildable(f"Model package '{path}'", exc)
    _check_state_dict_matches(model, tensors, path, arch)
    model.load_state_dict(tensors, strict=True)
    return model


def _check_state_dict_matches(model, tensors: Mapping[str, Any], path: Path, arch: Dict[str, Any]) -> None:
    """The real network against the loaded tensors (names, shapes, dtypes): the same rules and messages as the
    header check in :func:`_plan_network`."""
    expected = {k: (tuple(int(d) for d in v.shape), _safetensors_dtype(v)) for k, v in model.state_dict().items()}
    found = {k: (tuple(int(d) for d in v.shape), _safetensors_dtype(v)) for k, v in tensors.items()}
    _compare_tensor_entries(expected, found, f"Model package '{path}'", arch)


def _unbuildable(where: str, exc: BaseException, advice: str = "") -> ModelPackageError:
    """The error for a package (``where``) naming an architecture this library does not have (``exc``: the models
    registry's error, which lists the ones it has), or options its network refuses (build_model's option checks).
    ``advice`` (:func:`unknown_setting_advice` of its metadata) ends the latter where given: an option value a newer
    version takes (``norm: group`` of a package from 9.0.0) was called damage, while an unknown option name of the
    same package was told to update LiverTumorSeg (the package audit); without it, a damaged or hand-edited
    package."""
    if str(exc).startswith("Invalid options for model"):
        return ModelPackageError(f"{where} records architecture options this library refuses: {exc} " + (
            advice or "The package is damaged or was edited by hand; get a fresh copy of it (or retrain it)."))
    return ModelPackageError(f"{where} needs an architecture this library cannot build: {exc} Update LiverTumorSeg "
                             f"or use another package.")


def _check_option_types(name: str, options: Dict[str, Any], where: str, advice: str = "") -> None:
    """Option names must be the architecture's and each value of its default's type; options that load a
    file at build time (``TRANSIENT_OPTIONS``, e.g. ``pretrained_encoder_path``) must keep their default.
    ``advice``: what to do about an unknown option (:func:`unknown_setting_advice`)."""
    from .models import _module, default_options

    try:
        defaults = default_options(name)
    except InputError as exc:
        raise _unbuildable(where, exc, advice)
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ModelPackageError(f"{where}: unknown option(s) {unknown[:5]} for architecture '{name}'; valid "
                                f"options: {sorted(defaults)}. {advice}".rstrip())
    for key in getattr(_module(name), "TRANSIENT_OPTIONS", ()):
        if options.get(key, defaults[key]) != defaults[key]:
            raise ModelPackageError(f"{where}: architecture option '{key}' would make the loader read another "
                                    f"file; a model package must be self-contained, so it is refused. "
                                    f"{advice}".rstrip())
    for key, value in options.items():
        default = defaults[key]
        if default is None or value is None:
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, (int, float)):
            ok = _is_number(value) and (isinstance(default, float) or _is_int(value))
        elif isinstance(default, str):
            ok = isinstance(value, str)
        elif isinstance(default, list):
            ok = isinstance(value, list) and all(_is_number(v) for v in value)
        else:
            ok = True
        if not ok:
            # said what was wrong and nothing to do (a package whose metadata was edited and re-sealed)
            raise ModelPackageError(f"{where}: architecture option '{key}' must be like its default "
                                    f"{default!r}, got {repr(value)[:80]}. {advice}".rstrip())


def network_size_problem(parameters: int, activations: Optional[int] = None) -> Optional[str]:
    """What a network is over of the package limits, in words (``"the network has 250 M parameters, more than the
    200 M a model package may hold"``), or None: :data:`MAX_PARAMETERS` parameters and, when ``activations`` is
    given (:func:`network_activation_bytes`), :data:`MAX_ACTIVATION_BYTES` of float32 layer outputs per
    :data:`ACTIVATION_PROBE_HW` x :data:`ACTIVATION_PROBE_HW` slice. The one rule that training (before any data is
    read), :func:`save_model_package` and every load apply."""
    if parameters > MAX_PARAMETERS:
        return (f"the network has {parameters / 1e6:,.0f} M parameters, more than the {MAX_PARAMETERS / 1e6:.0f} M "
                f"a model package may hold")
    if activations is not None and activations > MAX_ACTIVATION_BYTES:
        return (f"the network's layer outputs for one {ACTIVATION_PROBE_HW} x {ACTIVATION_PROBE_HW} slice take "
                f"{activations / 2 ** 30:.1f} GiB, more than the {MAX_ACTIVATION_BYTES / 2 ** 30:.0f} GiB a model "
                f"package may need")
    return None


def network_activation_bytes(architecture: Dict[str, Any], net: Any = None) -> int:
    """:func:`_activation_bytes` of the network ``architecture`` describes (``models.model_config``'s dict), from
    the plan cache (:mod:`.plan_cache`) when this library and torch computed it before, else measured on the meta
    device (``net``: that network already built there; else it is built) and cached."""
    from .models import build_on_meta

    key = plan_cache.plan_key(architecture, ACTIVATION_PROBE_HW)
    activations = plan_cache.cached_activation_bytes(key)   # the meta forward's imports cost 1-1.5 s
    if activations is None:
        if net is None:
            net = build_on_meta(architecture["name"], architecture["in_channels"], architecture["num_classes"],
                                **architecture["options"])
        activations = _activation_bytes(net, architecture["in_channels"])
        plan_cache.store_activation_bytes(key, activations)
    return activations


def _activation_bytes(net, in_channels: int) -> int:
    """Sum of every layer's output size (float32 bytes) for one ``(1, C, 256, 256)`` slice, computed on the
    meta device (shapes only, nothing allocated)."""
    import torch

    total = [0]

    def count(_module, _inputs, output):
        if isinstance(output, torch.Tensor):
            total[0] += int(output.numel()) * 4

    leaves = [m for m in net.modules() if next(iter(m.children()), None) is None]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        net.eval()
        with torch.no_grad():
            net(torch.empty(1, in_channels, ACTIVATION_PROBE_HW, ACTIVATION_PROBE_HW, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return total[0]


def _compare_tensor_entries(expected: Dict[str, Any], found: Dict[str, Any], where: str,
                            arch: Dict[str, Any]) -> None:
    """``{name: (shape, dtype code)}`` of the network vs the file: same names, shapes and dtypes."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k][0] != found[k][0])
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"{len(missing)} missing (e.g. {[_shown(k) for k in missing[:3]]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected (e.g. {[_shown(k) for k in unexpected[:3]]})")
        if wrong:
            k = wrong[0]
            details.append(f"{len(wrong)} with other shapes (e.g. '{_shown(k)}' {str(found[k][0])[:80]} vs "
                           f"{expected[k][0]})")
        raise ModelPackageError(f"{where}: its weights do not match architecture '{arch['name']}' with options "
                                f"{str(arch['options'])[:200]}: " + "; ".join(details)
                                + ". The package metadata and weights are inconsistent; re-export it.")
    other = sorted(k for k in expected if expected[k][1] != found[k][1])
    if other:
        k = other[0]
        raise ModelPackageError(f"{where}: {len(other)} tensor(s) have another type than the network's (e.g. "
                                f"'{_shown(k)}' is {found[k][1]} but must be {expected[k][1]}); the weights are not "
                                f"usable as they are. Re-export the package from the trained model.")


def _plan_network(meta: Dict[str, Any], header: Dict[str, Any], path: Path, advice: Optional[str] = None) -> int:
    """Before any weight is read or any real network built: check the options against the architecture,
    build it on the meta device (no memory), and refuse more than MAX_PARAMETERS parameters, more than
    MAX_ACTIVATION_BYTES of layer outputs per 256 x 256 slice, or tensors whose names, shapes or dtypes differ
    from the network's. ``advice``: what a refusal of the recorded network (too large, not buildable) says to do;
    None, as loading has it: the package was damaged or edited, obtain a fresh copy (:func:`_fresh_copy_advice`).
    Those refusals said what was wrong and nothing to do; :func:`rewrite_package_metadata`, refusing a change it
    was asked to make, gives ''. Returns the layer outputs' bytes per 256 x 256 slice."""
    return _planned_network(meta, header, path, advice)[0]


META_INIT_METHODS = frozenset({"uniform_", "normal_", "fill_", "zero_"})
"""In-place tensor methods the layers' random initialisation calls (``reset_parameters``), besides the
``torch.nn.init`` functions: on a meta tensor they hold no data to fill, so the planning build skips them."""


def _meta_init_skipped() -> Any:
    """A torch function mode under which ``torch.nn.init`` functions and :data:`META_INIT_METHODS` called on a meta
    tensor return it untouched: the planned network (:func:`_planned_network`) has no values to initialise (the
    package's weights fill it). On torch 2.8 (the newest for Python 3.9, Slicer's) a meta tensor's ``uniform_`` runs
    through torch's decompositions, which import its symbolic shapes and sympy: 0.7 s of every fresh process's
    first load. Every other call, and any call on a real tensor, runs as it would."""
    import torch
    from torch.overrides import TorchFunctionMode

    class MetaInitSkipped(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if getattr(func, "__module__", None) == "torch.nn.init" or \
                    getattr(func, "__name__", None) in META_INIT_METHODS:
                first = args[0] if args else kwargs.get("tensor")
                if isinstance(first, torch.Tensor) and first.is_meta:
                    return first
            return func(*args, **kwargs)

    return MetaInitSkipped()


def _planned_network(meta: Dict[str, Any], header: Dict[str, Any], path: Path,
                     advice: Optional[str] = None) -> Tuple[int, Any]:
    """:func:`_plan_network`'s checks; returns ``(activation bytes per 256 x 256 slice, the network built on the
    meta device)``, so that loading gives that network its weights (:func:`_network_with_weights`) instead of
    building it a second time."""
    import torch

    from .models import build_model

    where = f"Model package '{path}'"
    if advice is None:
        advice = f"The package was damaged or edited: {_fresh_copy_advice(path)}"
    arch = meta["architecture"]
    _check_option_types(arch["name"], arch["options"], where, unknown_setting_advice(meta))
    try:
        with torch.device("meta"), _meta_init_skipped(), float32_default_dtype():
            net = build_model(arch["name"], arch["in_channels"], arch["num_classes"], **arch["options"])
    except InputError as exc:
        raise _unbuildable(where, exc, _newer_version_advice(meta))
    except Exception as exc:  # noqa: BLE001 - hostile option values may fail anywhere in a constructor
        # the machine's or the installation's failure, not the file's: 'the package is corrupt, restore it' was said
        # of the bundled model under a memory limit (the memory audit)
        raise_if_out_of_memory(exc, str(path))
        if isinstance(exc, (ImportError, OSError)):
            raise ResourceError(f"{where}: its network could not be built because a library failed to load "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}): the "
                                f"installation or the machine, not the package. Check the Python environment "
                                f"(reinstall numpy and torch), and the memory limits (ulimit -v).") from exc
        raise ModelPackageError(f"{where}: its architecture options cannot be built ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:120] if str(exc) else ''}); the package is corrupt. "
                                f"{advice}".rstrip())
    parameters = int(sum(p.numel() for p in net.parameters()))
    problem = network_size_problem(parameters)
    if problem:
        raise ModelPackageError(f"{where}: {problem}; the package is corrupt or hostile (save_model_package refuses "
                                f"such a network). {advice}".rstrip())
    expected = {k: (tuple(int(d) for d in v.shape), _storage_code(_safetensors_dtype(v), meta))
                for k, v in net.state_dict().items()}
    found = {k: (tuple(v["shape"]), v["dtype"]) for k, v in header.items() if k != "__metadata__"}
    _compare_tensor_entries(expected, found, where, arch)
    try:
        activations = network_activation_bytes(arch, net)
    except Exception as exc:  # noqa: BLE001 - a network that cannot run on its own input size is unusable
        raise ModelPackageError(f"{where}: its network cannot process {arch['in_channels']}-channel slices "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}).")
    problem = network_size_problem(parameters, activations)
    if problem:
        raise ModelPackageError(f"{where}: {problem}; the package is corrupt or hostile (save_model_package refuses "
                                f"such a network). {advice}".rstrip())
    return activations, net


def weights_problem(path: PathLike) -> Optional[str]:
    """Why the package at ``path`` fails the checks :func:`load_model_package` makes on its preprocessing settings,
    its network (the architecture's options, names and types this library knows; the tensors' names, shapes and
    dtypes against it; the size limits: :func:`_plan_network`) and weights (a bundled file against SHA256SUMS, the
    tensors against the recorded ``weights_sha256``, all finite), or None when it passes. Reads the whole file;
    builds the network on the meta device only (``models --verify``). A wrong tensor shape or dtype, an unknown
    preprocessing key or a window width of 0 passed ``--verify`` (exit 0) while every load refused the package."""
    path = Path(path)
    try:
        bundled_bytes = _verified_bundled_bytes(path)
        header, meta = _read_header_and_metadata(path)
        _recorded_preprocessing(meta, path)
        _plan_network(meta, header, path)  # options a newer version wrote, weights another network's
        _verified_tensors(path, meta, bundled_bytes)
    except ModelPackageError as exc:
        return str(exc)
    return None


def _verified_tensors(path: Path, meta: Mapping[str, Any], bundled_bytes: Optional[bytes]
                      ) -> Tuple[Dict[str, Any], str]:
    """The package's tensors (from ``bundled_bytes`` when the file was read already) and their SHA-256, which must
    be the one the metadata records; ModelPackageError otherwise."""
    tensors = _load_tensors(path, bundled_bytes)
    digest = weights_sha256(tensors)
    if digest != meta["weights_sha256"]:
        raise ModelPackageError(f"Model package '{path}' failed its integrity check: the weights' SHA-256 is "
                                f"{digest[:16]}... but the package records {str(meta['weights_sha256'])[:16]}...; "
                                f"the file was modified or damaged. Obtain a fresh copy.")
    problem = _non_finite_weights(tensors)
    if problem:  # loaded, and segment wrote 'liver volume: 0.0 mL' with exit 0
        raise ModelPackageError(f"Model package '{path}' cannot segment: {problem}, which turn the network's "
                                f"output into NaN. Use another package, or retrain this one.")
    return tensors, digest


def _check_load_device(device: Any) -> None:
    """Refuse, before anything is read, a ``device`` that torch does not know or a CUDA device this machine lacks:
    after the whole load, torch said 'AssertionError: Torch not compiled with CUDA enabled' or listed 20 device
    types. ``resolve_device`` (LiverTumorSegLib.inference.device) is what falls back to the CPU."""
    import torch

    if device is None:  # model.to(None) leaves it where it was built: the CPU
        return
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InputError(f"load_model_package: device {str(device)[:60]!r} is not a device torch knows; use 'cpu', "
                         f"'cuda', 'cuda:N' or 'mps'.") from exc
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (chosen.index is not None and chosen.index >= count):
            raise InputError(f"load_model_package: device '{chosen}' is not available here (this PyTorch, torch "
                             f"{torch.__version__}, sees {count} CUDA GPU(s)); use device='cpu', or pick one with "
                             f"LiverTumorSegLib.inference.device.resolve_device('auto').device.")
    elif chosen.type == "mps":  # 'PyTorch is not linked with support for mps devices' came after the whole load
        backend = getattr(torch.backends, "mps", None)
        if backend is None or not backend.is_available():
            raise InputError(f"load_model_package: device '{chosen}' is not available here (this PyTorch, torch "
                             f"{torch.__version__}, has no usable Apple MPS device); use device='cpu', or pick one "
                             f"with LiverTumorSegLib.inference.device.resolve_device('auto').device.")
    elif chosen.type != "cpu":
        raise InputError(f"load_model_package: device '{chosen}' is not one this library runs on; use 'cpu', 'cuda', "
                         f"'cuda:N' or 'mps'.")


def load_model_package(path_or_name: PathLike, device: Any = "cpu",
                       preprocessing_ready: Optional[Callable[[Any], None]] = None) -> ModelPackage:
    """Load and verify a package (a path, an installed model name, or ``"default"``).

    Steps: header and metadata validation -> preprocessing config -> the network planned on the meta
    device (option types, parameter and activation limits, tensor names/shapes/dtypes against the header;
    :func:`_plan_network`) -> safetensors tensor load (no pickle) -> SHA-256 check (of the stored tensors; a
    bundled package's whole file also against :data:`BUNDLED_CHECKSUMS`) ->
    float16-stored weights cast to float32 -> the planned network given CPU memory (no random initial weights;
    built for real when the package would not fill all of it: :func:`_network_with_weights`)
    -> strict key/shape check -> ``load_state_dict`` -> ``.to(device).eval()``. Nothing in a package makes
    the loader read another file. The caller's random state is left as it was: a network built for real draws its
    random initial weights, which the package's replace, on a copy of torch's global generator (they were drawn
    from it, so loading a model between a notebook's ``torch.manual_seed`` and its own draws changed them).

    ``preprocessing_ready``: called with the package's preprocessing config as soon as its metadata has passed
    validation (types, ranges, sizes), before the tensors' hashes are checked and before the network is planned
    and built, which imports MONAI on first use (about 1 s): ``segment`` resamples the CT meanwhile
    (:class:`~.inference.segmenter.Segmenter`). The load may still refuse the package after this call, so a
    caller may only start work it throws away when the load fails (the engine also uses such work only for an
    equal config).
    """
    _check_load_device(device)
    path = resolve_model(path_or_name)
    bundled_bytes = _verified_bundled_bytes(path)  # first: a bundled file's own check names SHA256SUMS and restoring
    header, meta = _read_header_and_metadata(path)
    preprocessing = _recorded_preprocessing(meta, path)
    _warn_unrecorded_preprocessing(meta.get("preprocessing") or {}, preprocessing, path, meta)
    if preprocessing_ready is not None:
        preprocessing_ready(preprocessing)
    activations, planned = _planned_network(meta, header, path)
    tensors, digest = _verified_tensors(path, meta, bundled_bytes)
    del bundled_bytes
    tensors = _from_storage_dtype(tensors, meta)
    model = _network_with_weights(planned, tensors, path, meta["architecture"])
    model.to(device)
    model.eval()
    return ModelPackage(model=model, preprocessing=preprocessing, metadata=meta, path=path,
                        name=str(meta["name"]), sha256=digest,
                        activation_bytes_per_pixel=activations / float(ACTIVATION_PROBE_HW ** 2))


def check_input_channels(package: Any) -> None:
    """Refuse a package whose preprocessing makes another number of input channels than its network takes
    (``channels x (2 * context_slices + 1)`` vs ``architecture.in_channels``): it would fail inside the network."""
    preprocessing = getattr(package, "preprocessing", None)
    made = getattr(preprocessing, "in_channels", None)
    architecture = getattr(package, "architecture", None) or {}
    wanted = architecture.get("in_channels")
    if made is not None and wanted is not None and int(made) != int(wanted):
        raise ModelPackageError(f"Model package '{getattr(package, 'path', '?')}' is inconsistent: its preprocessing "
                                f"makes {made} input channels in all but its network takes {wanted}; re-export it.")
    slices = getattr(preprocessing, "num_context", None)
    if slices is not None and architecture.get("name"):
        from .models import slice_grouping_problem

        problem = slice_grouping_problem(str(architecture["name"]), architecture.get("options") or {}, int(slices))
        if problem:
            raise ModelPackageError(f"Model package '{getattr(package, 'path', '?')}' is inconsistent: {problem}")


TORCH_FILE_STARTS = (b"PK\x03\x04", b"\x80")
"""First bytes of a file ``torch.save`` writes: a zip archive (since torch 1.6), or a pickle (protocol 2 or later)."""


def refusal_reason(exc: BaseException, path: Optional[PathLike] = None) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in our words and one line (torch's own text is
    six lines and suggests ``weights_only=False``, which would let the file run code). ``path``: the file, whose first
    bytes tell a damaged or foreign file from a pickle (random bytes were called 'a pickle that could run code')."""
    import pickle

    name = type(exc).__name__
    if path is not None and not _starts_like_torch_file(path):
        return f"it is truncated or not a PyTorch file (it does not begin as one: {name})"
    if isinstance(exc, pickle.UnpicklingError) or "weights only" in str(exc).lower() or "weights_only" in str(exc):
        return ("it holds Python objects other than tensors and plain numbers/strings (a pickle that could run code "
                "when loaded)")
    if isinstance(exc, (EOFError, RuntimeError, ValueError, OSError)):
        return f"it is truncated or not a PyTorch file ({name})"
    return f"it cannot be read ({name})"


def _starts_like_torch_file(path: PathLike) -> bool:
    """Whether the file at ``path`` begins as ``torch.save`` writes files (:data:`TORCH_FILE_STARTS`); True when it
    cannot be read (the caller's error says why)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError:
        return True
    return any(head.startswith(start) for start in TORCH_FILE_STARTS)


def _not_a_weights_file(path: Path) -> str:
    """Why ``path``, not a regular file, cannot be a weights file, and what to give (a folder or a named pipe was
    said not to exist)."""
    if path.is_dir():
        return (f"Weights file '{path}' is a folder, not a weights file; give the path of the weights file (.pt, .pth "
                f"or .safetensors) in it.")
    if path.exists():
        return (f"Weights file '{path}' is not a regular file (a device, pipe or socket); give the path of a weights "
                f"file (.pt, .pth or .safetensors).")
    return f"Weights file '{path}' does not exist. Check the path."


SAFE_WEIGHTS_ONLY_TORCH = (2, 6)
"""The torch release from which ``torch.load(weights_only=True)`` has no known way to run code from a crafted file
(CVE-2025-32434, GHSA-53q9-r3pm-6pq6, fixed in 2.6.0; torch 2.1-2.5, which this package otherwise accepts, were
affected)."""


def refuse_pickle_loader_with_known_flaws(path: PathLike, torch_version: str) -> None:
    """ModelPackageError before a pickle-based weights file (``.pth``/``.pt``, e.g. ``pretrained_encoder_path``) at
    ``path`` is read with a torch older than :data:`SAFE_WEIGHTS_ONLY_TORCH` (``torch_version``, e.g. '2.5.1+cu121'),
    whose restricted loader a crafted file can get past: reading a downloaded file is then not safe, and the message
    says how to read it safely. Nothing for an unreadable version string (a build's own)."""
    import re

    found = re.match(r"(\d+)\.(\d+)", str(torch_version))
    if not found or (int(found.group(1)), int(found.group(2))) >= SAFE_WEIGHTS_ONLY_TORCH:
        return
    wanted = ".".join(str(n) for n in SAFE_WEIGHTS_ONLY_TORCH)
    raise ModelPackageError(f"Refused to read '{path}' with torch {torch_version}: its restricted loader "
                            f"(weights_only) can be made to run code by a crafted file (CVE-2025-32434, fixed in "
                            f"torch {wanted}). Install torch {wanted} or newer, or give the weights as a .safetensors "
                            f"file (e.g. converted with safetensors.torch.save_file on a machine with torch {wanted}+).")


def load_torch_state_dict_safely(path: PathLike) -> Dict[str, Any]:
    """A ``{name: tensor}`` state dict from a local file, never executing code from it.

    ``.safetensors`` files are read as such; other files go through ``torch.load(weights_only=True)``,
    whose restricted unpickler refuses anything but tensors and plain containers (a pickle with code
    in ``__reduce__`` raises ModelPackageError without running), and only with a torch whose restricted loader has no
    known flaw (:func:`refuse_pickle_loader_with_known_flaws`). A checkpoint dict holding the weights
    under ``state_dict`` or ``model`` is unwrapped.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelPackageError(_not_a_weights_file(path))
    with open(path, "rb") as fh:
        head = fh.read(9)
    if path.suffix.lower() == PACKAGE_SUFFIX or (len(head) == 9 and head[8:9] == b"{"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        read_safetensors_header(path)
        try:
            return dict(load_file(str(path), device="cpu"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelPackageError(f"Weights file '{path}' could not be read: {exc}")
    refuse_pickle_loader_with_known_flaws(path, torch.__version__)
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError, ...
        raise_if_out_of_memory(exc, str(path))
        raise ModelPackageError(f"Refused to load weights '{path}': {refusal_reason(exc, path)}. Save the weights as "
                                f"a plain state dict or .safetensors file.")
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelPackageError(f"Weights file '{path}' does not hold a {{name: tensor}} state dict.")
    return dict(obj)


# ---------------------------------------------------------------------------------------------------
# discovery

def _package_files(folder: Path) -> List[Path]:
    try:
        if not folder.is_dir():
            return []
        # any case: save_model_package writes 'Clinic.SAFETENSORS' and --model takes it, but a case-sensitive glob
        # left it out of the listing and of --model NAME without a word
        # (a link whose target is gone is listed as unusable, saying so, not left out without a word)
        return sorted(p for p in folder.iterdir() if p.suffix.lower() == PACKAGE_SUFFIX and not _hidden(p)
                      and (p.is_file() or (p.is_symlink() and not p.exists())))
    except OSError as exc:  # an unreadable models folder must not break the default path
        log.warning("warning: cannot list model folder '%s' (%s); its models are skipped.", folder, exc)
        return []


def installed_package_name(path: str) -> str:
    """The file name a package file ``path`` gets in a models folder, one the listing shows (:func:`_package_files`):
    its own name without leading dots and with the :data:`PACKAGE_SUFFIX` (added where it has another or none). The
    Slicer panel's *Add model file...* copied '.clinic.safetensors' and 'clinic_model' under their own names, which the
    list skips: the panel then switched to the default model and told the user to add the file again (the package
    audit)."""
    name = os.path.basename(str(path)).lstrip(".")
    if not name or name.lower() == PACKAGE_SUFFIX.lstrip("."):  # '...', '.safetensors': no name left (the review)
        return "model" + PACKAGE_SUFFIX
    return name if Path(name).suffix.lower() == PACKAGE_SUFFIX else name + PACKAGE_SUFFIX


def _hidden(path: Path) -> bool:
    """A hidden file (its name begins with a dot): a package being written (save_model_package's temporary
    ``.NAME.*.tmp.safetensors``, also one a killed run left), or the ``._NAME.safetensors`` AppleDouble file macOS
    writes beside a package copied to a USB stick or network share. They were listed as packages: the temporary as a
    second package of the same name, which made ``--model NAME`` ambiguous, the AppleDouble file as unusable, with
    a warning on every ``--model NAME``."""
    return path.name.startswith(".")


def _hidden_package_hint(name: str) -> str:
    """A hint for ``--model NAME`` when a models folder holds ``NAME.safetensors`` as a hidden file (its name
    begins with a dot: ``.mine.safetensors``), which listing skips (:func:`_hidden`): 'No installed model named
    .mine' named no reason; '' otherwise."""
    from .resources import bundled_models_dir, user_models_dir

    wanted = name if name.endswith(PACKAGE_SUFFIX) else name + PACKAGE_SUFFIX
    for folder in (user_models_dir(), bundled_models_dir()):
        candidate = folder / wanted
        try:
            found = _hidden(candidate) and candidate.is_file()
        except OSError:
            found = False
        if found:
            return (f" (the file '{candidate}' is there, but names that begin with a dot are skipped as hidden files: "
                    f"temporaries and macOS's '._' copies; rename it without the dot, or give its path)")
    return ""


def other_weight_files(folder: Path) -> List[Path]:
    """The files in ``folder`` that look like weights but are no package (.pt, .pth, .ckpt, .bin, .onnx, .zip):
    dropped into the user models folder, they were left out of ``livertumorseg models`` without a word. [] for a
    missing or unreadable folder."""
    try:
        suffixes = set(PATH_SUFFIXES) - {PACKAGE_SUFFIX} | {".zip"}
        return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in suffixes
                      and not _hidden(p))
    except OSError:
        return []


def skipped_weight_entries(folder: Path) -> List[Tuple[Path, str]]:
    """``(entry, why)`` for each entry of ``folder`` named like a package or weights (.safetensors, .pt, .pth,
    .ckpt, .bin, .onnx, .zip; not hidden) that is neither listed as a package nor by :func:`other_weight_files`:
    a folder (an unzipped package or a training run's output named 'x.safetensors'), a link whose target is gone
    (other than a package's, which is listed as unusable) or another kind of file. ``livertumorseg models`` left
    them out without a word. [] for a missing or unreadable folder."""
    suffixes = set(PATH_SUFFIXES) | {".zip"}
    skipped = []
    try:
        entries = sorted(Path(folder).iterdir())
    except OSError:
        return []
    for entry in entries:
        if entry.suffix.lower() not in suffixes or _hidden(entry):
            continue
        try:
            if entry.is_file() or (entry.is_symlink() and not entry.exists()
                                   and entry.suffix.lower() == PACKAGE_SUFFIX):
                continue  # listed: a package (a broken link to one as unusable), or other weights
            if entry.is_dir():
                why = "a folder, not a file"
            elif entry.is_symlink():
                why = "a link whose target is gone"
            else:
                why = "not a regular file"
        except OSError as exc:
            why = f"cannot be read ({exc.strerror or exc})"
        skipped.append((entry, why))
    return skipped


def _unusable_reason(file: Path) -> Any:
    """``(metadata, None)`` for a usable package file, ``(None, reason)`` otherwise; never raises. Without
    importing torch (the Slicer panel lists packages in Slicer's process): the header, the metadata, the
    preprocessing settings (numpy only) and the architecture's name; its options are checked by
    ``models --verify`` and by every load."""
    from .models import available_models  # no torch

    try:
        meta = read_package_metadata(file)
        name = meta["architecture"]["name"]
        if name not in available_models():  # a newer version's network: every load refused it; the list offered it
            return None, (f"Model package '{file}' needs the architecture '{str(name)[:60]}', which this version "
                          f"cannot build (it has {', '.join(available_models())}). Update LiverTumorSeg or use "
                          f"another package.")
        # a setting a newer version writes: every load refused it; the list offered it as usable
        _recorded_preprocessing(meta, file)
        return meta, None
    except ModelPackageError as exc:
        return None, str(exc)
    except (OSError, ValueError, RecursionError, MemoryError) as exc:
        return None, f"Model package '{file}' cannot be read ({type(exc).__name__}: {exc})."


_WARNED_UNUSABLE = set()  # type: set
"""``(path, reason)`` of the unusable packages already warned of in this process: a run resolves its model more than
once (segment warned of each unusable user package twice)."""


def list_installed_models(warn: bool = True) -> List[Dict[str, Any]]:
    """Packages in the bundled folder (``resources.bundled_models_dir()``) then the user folder
    (``resources.user_models_dir()``). Each entry: ``name, path, source ("bundled"|"user"), default,
    architecture, in_channels, description, validation, min_lesion_probability, lesion_probability_statistic,
    weights_sha256, error`` (``weights_sha256``: the SHA-256 over the package's tensors its metadata records, which
    a segment report's ``model_weights_sha256`` names, None for an unusable file; ``min_lesion_probability``: the
    lesion confidence threshold the package records as its own, None where it records none and 0.65 applies; ``lesion_probability_statistic``: what it is compared with, ``"peak"`` or
    ``"mean"`` where recorded, else None and the mean applies;
    ``error`` is None for readable
    packages, else the reason it cannot be used). A file that is not a usable package never raises: it
    gets an ``error`` and, with ``warn``, a logged ``warning: ... skipped`` line (once per file and reason in a
    process)."""
    entries = []
    folders = [("bundled", bundled_models_dir())]
    if not same_file_among([user_models_dir(), bundled_models_dir()]):  # listed once, not twice
        folders.append(("user", user_models_dir()))
    for source, folder in folders:
        for file in _package_files(Path(folder)):
            entry: Dict[str, Any] = {"name": file.stem, "path": str(file), "source": source, "default": False,
                                     "architecture": None, "in_channels": None, "description": "",
                                     "validation": {}, "min_lesion_probability": None,
                                     "lesion_probability_statistic": None, "weights_sha256": None, "error": None}
            meta, reason = _unusable_reason(file)
            if reason is not None:
                entry["error"] = reason
                if warn and (str(file), reason) not in _WARNED_UNUSABLE:
                    _WARNED_UNUSABLE.add((str(file), reason))
                    log.warning("warning: skipping unusable model package '%s': %s", file, reason)
            else:
                # only a bundled package can be what --model default runs (a re-saved copy keeps the flag)
                entry.update(name=str(meta["name"]), default=source == "bundled" and bool(meta.get("default", False)),
                             architecture=meta["architecture"]["name"],
                             in_channels=meta["architecture"]["in_channels"],
                             description=str(meta.get("description", "")),
                             validation=meta.get("validation", {}) or {},
                             min_lesion_probability=package_min_lesion_probability(meta),
                             lesion_probability_statistic=package_lesion_probability_statistic(meta),
                             weights_sha256=str(meta["weights_sha256"]))
            entries.append(entry)
    return entries


# Suffixes that make a --model value a file path even without a folder part; anything else without a path
# separator is an installed model's name (a file called "default" in the working folder never replaces the
# bundled model).
PATH_SUFFIXES = (PACKAGE_SUFFIX, ".pt", ".pth", ".ckpt", ".bin", ".onnx")


def looks_like_path(name_or_path: PathLike) -> bool:
    """True when ``name_or_path`` is meant as a file: it contains a path separator or ends in a weights
    suffix (.safetensors, .pt, .pth, .ckpt, .bin, .onnx), or is a ``Path`` object."""
    if isinstance(name_or_path, os.PathLike):  # a Path object is always meant as a file
        return True
    text = os.fspath(name_or_path)
    separators = [os.sep] + ([os.altsep] if os.altsep else [])
    return any(sep in text for sep in separators) or text.lower().endswith(PATH_SUFFIXES)


def installed_matches(usable: Sequence[Dict[str, Any]], text: str) -> List[str]:
    """Paths of the :func:`list_installed_models` entries ``usable`` that ``--model text`` names (metadata name or
    file stem), one per file: more than one is refused as ambiguous by :func:`resolve_model`."""
    matches = []  # type: List[str]
    for entry in usable:
        if names_model(entry, text) and not same_file_among(matches + [entry["path"]]):
            matches.append(entry["path"])
    return matches


def names_model(entry: Dict[str, Any], text: str) -> bool:
    """Whether ``--model text`` names the :func:`list_installed_models` ``entry``: its metadata name or its file
    stem, compared in Unicode's composed form (NFC): a name typed or stored decomposed (macOS file names, 'u' and a
    combining diaeresis for 'ü') was 'No installed model named ... (did you mean ...?)' naming the same-looking
    name (the package audit)."""
    import unicodedata

    wanted = unicodedata.normalize("NFC", text)
    return any(unicodedata.normalize("NFC", str(name)) == wanted for name in (entry["name"], Path(entry["path"]).stem))


def resolve_model(name_or_path: PathLike, warn: bool = True) -> Path:
    """Path of a package given a file path (see :func:`looks_like_path`), an installed model name (metadata
    name or file stem), or ``"default"`` (the bundled package flagged ``"default": true``, else the bundled
    ``default*.safetensors``). Names are looked up only among installed models, never in the working folder.
    ``warn``: :func:`list_installed_models`'s (False: unusable packages are skipped without a logged line)."""
    text = os.fspath(name_or_path)
    if looks_like_path(name_or_path):
        candidate = Path(text)
        if not candidate.exists():
            raise _missing_package_error(candidate, named_like_path=text)
        kind = _other_file_kind(candidate)
        if kind:  # './ct.nii.gz' was told to be gunzipped, a JSON report that its header length was 8e18 bytes
            raise ModelPackageError(f"'{text}' is {kind}, not a model package: --model takes a .safetensors package "
                                    f"(its path) or an installed model's name (livertumorseg models lists them).")
        return candidate
    if text == "default":
        listed = [e for e in list_installed_models(warn) if e["source"] == "bundled"]
        bundled = [e for e in listed if e["error"] is None]
        flagged = [e for e in bundled if e["default"]]
        if len(flagged) > 1:  # e.g. a new default finalized beside the old one: never pick one silently
            raise ModelPackageError(f"{len(flagged)} bundled packages are flagged as the default "
                                    f"({'; '.join(e['path'] for e in flagged)}); remove or replace the old one, or "
                                    f"give the package's path with --model.")
        default_named = [e for e in listed if Path(e["path"]).name.lower().startswith("default")]
        named = [e for e in default_named if e["error"] is None]
        for group in (flagged, named):
            if group:
                return Path(group[0]["path"])
        broken = [e for e in default_named if e["error"]]
        if broken:  # there, but damaged: not the missing-install advice
            raise ModelPackageError(f"The bundled default '{broken[0]['path']}' cannot be used: {broken[0]['error']}")
        raise ModelPackageError(_no_default_model_message(listed))
    entries = list_installed_models(warn)
    broken = [e for e in entries if e["error"] is not None and names_model(e, text)]
    if broken:  # a damaged user package must not quietly give way to a bundled one of the same name
        raise ModelPackageError(f"The installed package '{broken[0]['path']}' named '{text}' cannot be used "
                                f"({broken[0]['error']}); replace or remove it, or give another package's path "
                                f"with --model.")
    usable = [e for e in entries if e["error"] is None]
    matches = installed_matches(usable, text)
    if len(matches) > 1:  # e.g. a user package named like a bundled one: never pick one silently
        raise ModelPackageError(f"The model name '{text}' matches {len(matches)} installed packages "
                                f"({'; '.join(matches)}); {_ambiguous_model_advice(matches, usable)}")
    if matches:
        return Path(matches[0])
    names = sorted({e["name"] for e in usable})
    hint = ""
    if Path(text).is_dir():
        hint = f" (a folder '{text}' exists here; a model is one .safetensors file: give its path)"
    elif Path(text).exists():
        kind = _other_file_kind(Path(text))
        hint = (f" (a file '{text}' exists here, but it is {kind}, not a package)" if kind else
                f" (a file '{text}' exists here: to use it as a package, write './{text}')")
    else:
        hint = _hidden_package_hint(text) or _misspelt_model_hint(text, names)
    raise ModelPackageError(f"No installed model named '{text}'{hint}. Installed: {', '.join(names) or 'none'}. "
                            f"Give a path to a .safetensors package, or copy one into '{user_models_dir()}'.")


def _ambiguous_model_advice(matches: Sequence[str], usable: Sequence[Dict[str, Any]]) -> str:
    """What to give ``--model`` for each of the package files ``matches`` that one name matched: its file stem where
    that reaches it (:func:`stem_reaching`), else its path; quoted for the user's shell. 'rename one' was the advice, and renaming a file changes nothing where
    the packages' metadata names are what matched (the package audit); a stem another package's name also matches
    was offered and refused again (the review)."""
    choices = [stem_reaching(path, usable) or path for path in matches]
    return "give one of them: " + " or ".join(f"--model {shell_word(choice)}" for choice in choices)


def _other_file_kind(path: Path) -> str:
    """What ``path`` is when its name says it is no model package: an image volume (NIfTI, NRRD, MetaImage, DICOM),
    a report or table (JSON, CSV) or a picture; '' otherwise (a package's own checks judge it)."""
    from .fileutil import full_suffix
    from .io.formats import DICOM_FILE_SUFFIXES, IMAGE_2D_SUFFIXES, READ_SUFFIXES

    suffix = full_suffix(path)  # lower case; '.seg.nrrd' whole
    if suffix in READ_SUFFIXES + DICOM_FILE_SUFFIXES or suffix == ".seg.nrrd":
        return f"an image volume ({suffix})"
    if suffix in (".json", ".csv", ".txt", ".yaml", ".yml"):
        return f"a text file ({suffix}: a report, table or recipe)"
    if suffix in IMAGE_2D_SUFFIXES:
        return f"a picture ({suffix})"
    return ""


def _misspelt_model_hint(text: str, names: Sequence[str]) -> str:
    """A hint for ``--model TEXT`` that names no installed model but is spelt like one: ``(did you mean
    'default'?)`` for ``defualt``, whose listing names the bundled default only as ``default_v10``; "" when nothing
    is close (difflib's ratio >= 0.75, case ignored)."""
    import difflib

    candidates = {"default": "default"}
    candidates.update((name.lower(), name) for name in names)
    close = difflib.get_close_matches(text.lower(), list(candidates), n=1, cutoff=0.75)
    return f" (did you mean '{candidates[close[0]]}'?)" if close else ""


def is_bundled_default(metadata: Optional[Mapping[str, Any]]) -> bool:
    """Whether the package whose metadata is ``metadata`` is the bundled default model, however it was named
    (``--model default``, its path, a copy): it has the weights (``weights_sha256``) and the network settings
    (:func:`network_settings_sha256`) of the package ``--model default`` loads. False without metadata or without a
    usable bundled default; a re-saved default with another window (the ``"default"`` flag kept) is another model."""
    weights = (metadata or {}).get("weights_sha256")
    if not weights:
        return False
    try:
        default = read_package_metadata(resolve_model("default", warn=False))
    except (ModelPackageError, OSError, ValueError):
        return False
    return default.get("weights_sha256") == weights \
        and network_settings_sha256(default) == network_settings_sha256(dict(metadata or {}))
