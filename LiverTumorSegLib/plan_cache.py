"""A small on-disk cache of network plans: the activation estimate of an architecture, keyed by its options.

Loading a package plans its network on the meta device before any weight is read (``package._plan_network``).
The first meta-device forward in a process imports about 800 modules (torch's meta kernels, sympy) and costs
1-1.5 s of every ``segment`` run and every Slicer segmentation, while the answer depends only on the
architecture (name, channels, options) and the library and torch versions. This cache keeps that answer in
``LIVERTUMORSEG_CACHE_DIR`` (default ``~/.livertumorseg/cache``), file ``activation_bytes.json``.

The cache holds numbers this library computed itself, never anything read from a package; the limits are
applied to the cached number exactly as to a fresh one. A missing, unreadable, corrupt or unwritable cache
only means the estimate is computed again.
"""
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

CACHE_FILE = "activation_bytes.json"
MAX_CACHE_BYTES = 1 << 20  # a larger file is not ours: ignored (the estimate is computed again)
MAX_ENTRIES = 256


def cache_dir() -> Path:
    """``LIVERTUMORSEG_CACHE_DIR`` (a leading ``~`` expanded, as for ``LIVERTUMORSEG_MODELS_DIR``), else
    ``~/.livertumorseg/cache`` (see :func:`resources.home_folder`). A quoted ``export
    LIVERTUMORSEG_CACHE_DIR="~/cache"`` made every load create a folder literally named '~' in the working folder."""
    from .resources import expand_home, home_folder

    folder = os.environ.get("LIVERTUMORSEG_CACHE_DIR")
    if folder:
        return expand_home(folder)

    return home_folder() / ".livertumorseg" / "cache"


_MODELS_SOURCE_HASH: Optional[str] = None


def models_source_hash() -> str:
    """SHA-256 of the source of ``LiverTumorSegLib/models/*.py`` (computed once per process). The library's
    version string does not change between commits of a clone, while an edited layer changes the estimate."""
    global _MODELS_SOURCE_HASH
    if _MODELS_SOURCE_HASH is None:
        digest = hashlib.sha256()
        for path in sorted((Path(__file__).parent / "models").glob("*.py")):
            digest.update(path.name.encode("utf-8") + b"\0")
            try:
                digest.update(path.read_bytes())
            except OSError:
                digest.update(b"unreadable")
        _MODELS_SOURCE_HASH = digest.hexdigest()
    return _MODELS_SOURCE_HASH


def plan_key(architecture: Mapping[str, Any], probe_hw: int) -> str:
    """SHA-256 of everything the estimate depends on: the architecture block, the probe size, the library and
    torch versions, and the model source (:func:`models_source_hash`: a new layer implementation may change the
    layer outputs)."""
    import torch

    from . import __version__

    text = json.dumps({"architecture": architecture, "probe_hw": int(probe_hw), "library": __version__,
                       "models_source": models_source_hash(), "torch": torch.__version__},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read() -> Dict[str, int]:
    from .errors import InputError

    try:
        path = cache_dir() / CACHE_FILE
        if path.stat().st_size > MAX_CACHE_BYTES:  # ours holds one small number per architecture
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError, MemoryError, InputError):  # deeply nested JSON: RecursionError;
        return {}  # a '~' with no home folder to take it as: InputError (resources.expand_home)
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
            and v >= 0}


def cached_activation_bytes(key: str) -> Optional[int]:
    """The cached estimate for ``key``, or None."""
    return _read().get(key)


def store_activation_bytes(key: str, value: int) -> None:
    """Add ``key -> value`` (atomically: a temporary file renamed over the cache); errors are ignored."""
    entries = _read()
    entries.pop(key, None)
    entries[key] = int(value)
    while len(entries) > MAX_ENTRIES:          # oldest first (dicts keep insertion order)
        entries.pop(next(iter(entries)))
    from .errors import LiverTumorSegError
    from .fileutil import atomic_output

    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        with atomic_output(cache_dir() / CACHE_FILE, overwrite=True) as tmp:
            tmp.write_text(json.dumps(entries), encoding="utf-8")
    except (OSError, LiverTumorSegError):
        pass
