"""Import MONAI's U-Net class, optionally without the optional packages MONAI tries while it loads.

``import monai`` runs MONAI's ``__init__``, which imports every MONAI submodule (``load_submodules``); some of
those call ``monai.utils.optional_import`` at import time for packages MONAI declares optional: matplotlib
(``monai.utils.jupyter_utils``, ``monai.visualize``) and ``scipy.signal`` / ``scipy.stats``
(``monai.data.ultrasound_confidence_map``, ``monai.transforms.signal``) and, where installed, many more
(transformers, torchvision, pandas, scikit-image, cupy, ITK, ignite, ...). Segmenting with the U-Net needs
none of them. Measured on 2 idle CPU cores (MONAI 1.6.1, torch, numpy, scipy.ndimage and nibabel already imported):
MONAI took 1.6-2.0 s with them and 0.65-0.94 s without.

A process that only segments (the ``segment`` command, which is also the Slicer module's child process) calls
:func:`hide_optional_packages_while_importing_monai` once. MONAI is then imported, on first use, while those
packages are hidden: ``sys.modules[name] = None`` makes ``import name`` raise ImportError (the import system's
documented way to block a module), which ``optional_import`` records as "not installed", the state MONAI
supports when the package is absent. They are un-hidden right after, so a later ``import matplotlib`` in the
process works. The only effect: MONAI's own features that need them (its plots, ultrasound confidence maps,
signal filters) say "not installed" in that process; the U-Net's code, weights and outputs are unchanged.
If a MONAI version ever imports one of them unconditionally, the hidden import fails, the partial import is
discarded and MONAI is imported normally. Not copying MONAI's network code was the constraint (issue 13);
importing only ``monai.networks.nets.unet`` still runs ``monai/__init__`` and ``monai.networks`` pulls in
``monai.apps``, so hiding packages is what is left.
"""
import contextlib
import importlib
import logging
import os
import sys
import threading
import time
import warnings
from typing import Iterator, Sequence

log = logging.getLogger(__name__)

OPTIONAL_PACKAGES_HIDDEN = (
    # tried on every `import monai` and found on most machines with scipy (scipy.optimize / scipy.spatial:
    # MONAI's panoptic-quality and surface-distance metrics; 0.41-0.43 s against 0.58-0.77 s with them here)
    "matplotlib", "matplotlib.pyplot", "scipy.signal", "scipy.stats", "scipy.optimize", "scipy.spatial",
    # tried on every `import monai` where installed (research and GPU images): transformers alone took 3 s and
    # pulled in torch._dynamo on an H100 machine (MONAI's TransChex network imports it at module level)
    "transformers", "huggingface_hub", "torchvision", "torchaudio", "pandas", "skimage", "sklearn", "cupy",
    "cupyx", "cucim", "itk", "ignite", "tensorboard", "tensorboardX", "torch.utils.tensorboard", "onnx",
    "tensorrt", "torch_tensorrt", "polygraphy", "zarr", "tifffile", "pywt", "nrrd", "torchio", "cv2", "mlflow",
    "clearml", "nni", "lmdb", "openslide")
"""Packages hidden while MONAI imports in a segment-only process: each is one MONAI imports through
``optional_import`` at import time, and none is used by the networks our packages build. Not pydicom or PIL:
the CT reader may import those on the other thread while MONAI loads (Segmenter.segment_file)."""

_state = {"hide": False, "import_seconds": 0.0, "hidden_import": None}
_IMPORT_LOCK = threading.Lock()
"""One thread imports MONAI at a time. A second thread (a second Segmenter loading while the first one's
background load still imports MONAI) found ``monai`` in ``sys.modules`` half-initialised and imported its
submodules beside the first: 'cannot import name VQVAE from partially initialized module monai.networks.nets'."""


def hide_optional_packages_while_importing_monai(enabled: bool = True) -> None:
    """Declare this process segment-only: MONAI, when first imported through :func:`monai_unet_class`, is
    imported with :data:`OPTIONAL_PACKAGES_HIDDEN` hidden. Does nothing if MONAI is already imported."""
    _state["hide"] = bool(enabled)


def monai_import_facts() -> dict:
    """``{"seconds": time spent importing MONAI here, "optional_packages_hidden": True/False/None}`` (None: MONAI
    was not imported by this module, e.g. already imported by the caller)."""
    return {"seconds": round(float(_state["import_seconds"]), 3), "optional_packages_hidden": _state["hidden_import"]}


def monai_unet_class():
    """``monai.networks.nets.UNet``; imports MONAI first (see the module docstring) when it is not loaded yet."""
    with _IMPORT_LOCK:
        if "monai" not in sys.modules:
            give_monai_a_user_name()  # every import path, not only segment's hidden one (train, evaluate, API)
            start = time.perf_counter()
            with process_settings_kept():
                if _state["hide"]:
                    _state["hidden_import"] = import_monai_hiding(OPTIONAL_PACKAGES_HIDDEN)
                else:
                    importlib.import_module("monai")
                    _state["hidden_import"] = False
            _state["import_seconds"] = time.perf_counter() - start
        from monai.networks.nets import UNet

    return UNet


MONAI_ENVIRONMENT_SETTINGS = ("CUBLAS_WORKSPACE_CONFIG",)
"""Environment variables ``import monai`` sets for the whole process (``monai.utils.misc``: ``:4096:8``, the
cuBLAS workspace its ``set_determinism`` needs); our networks need none of them."""


@contextlib.contextmanager
def process_settings_kept() -> Iterator[None]:
    """Around ``import monai``: the process-wide settings its ``__init__`` changes are put back afterwards, for a
    caller that imported this library in a notebook, a training script or Slicer's Python. MONAI replaces
    ``warnings.showwarning`` (its handler hides ignite's warnings), adds a filter to the ``py.warnings`` logger
    (hiding warnings that mention ``np.bool8``, ``pkg_resources`` and the like from ``logging.captureWarnings``) and
    sets :data:`MONAI_ENVIRONMENT_SETTINGS` in ``os.environ`` (inherited by every child process). Settings the
    caller had made before are kept as they were."""
    showwarning = warnings.showwarning
    warnings_logger = logging.getLogger("py.warnings")
    logger_filters = list(warnings_logger.filters)
    environment = {name: os.environ.get(name) for name in MONAI_ENVIRONMENT_SETTINGS}
    try:
        yield
    finally:
        warnings.showwarning = showwarning
        warnings_logger.filters[:] = logger_filters
        for name, value in environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def give_monai_a_user_name() -> None:
    """MONAI's import calls ``getpass.getuser()``, which raises KeyError for a user id without a passwd entry and
    without LOGNAME/USER (``docker run --user 54321``): every model then failed to build. Such a process gets
    ``USER=uid<N>``; nothing else in it reads the name. On Windows, before Python 3.13, the same lookup imports the
    POSIX module ``pwd`` (ModuleNotFoundError) when none of LOGNAME, USER, LNAME and USERNAME is set (a service
    account, an emptied environment): the CLI then asked to 'pip install pwd'. Called before any import of MONAI by
    this library."""
    import getpass

    try:
        getpass.getuser()
    except (KeyError, OSError, ImportError):
        os.environ.setdefault("USER", f"uid{os.getuid() if hasattr(os, 'getuid') else 0}")


def import_monai_hiding(names: Sequence[str]) -> bool:
    """Import ``monai`` while the modules ``names`` that are not imported yet are hidden; returns True, or False
    when that import failed and MONAI was imported normally instead (after discarding the partial import)."""
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` now raises ImportError
    try:
        importlib.import_module("monai")
        importlib.import_module("monai.networks.nets")
        return True
    except Exception as exc:  # noqa: BLE001 - any failure: start again with nothing hidden (a real error recurs)
        log.debug("MONAI did not import with %s hidden (%s); importing it normally", ", ".join(hidden), exc)
        for name in [n for n in sys.modules if n == "monai" or n.startswith("monai.")]:
            del sys.modules[name]
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    importlib.import_module("monai")
    return False
