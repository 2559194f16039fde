"""Where bundled resources (models, sample CT) live.

The ``Resources/`` folder sits beside the ``LiverTumorSegLib`` package both in a source checkout and in
an installed Slicer extension (the CMake build installs them side by side). ``LIVERTUMORSEG_RESOURCES``
overrides the location. User-installed models go to ``LIVERTUMORSEG_MODELS_DIR`` (default
``~/.livertumorseg/models``).
"""
import os
from pathlib import Path

from .errors import InputError


def expand_home(text: str) -> Path:
    """``text`` with a leading ``~`` (or ``~user``) taken as the home folder (``Path.expanduser``). InputError when
    there is none to take (a container run as a user id without a passwd entry and without HOME, or a ``~user`` with
    no account here): ``Path.expanduser``
    raised "RuntimeError: Could not determine home directory.", an internal error of ``segment '~/ct.nii.gz'``, and,
    for ``LIVERTUMORSEG_CACHE_DIR='~/cache'``, "its network cannot process 1-channel slices" of every package."""
    try:
        return Path(text).expanduser()
    except (RuntimeError, KeyError):  # Python 3.9's pathlib lets the passwd lookup's KeyError through (3.10+:
        # RuntimeError), as home_folder takes both
        user = Path(text).parts[0]
        if user != "~":  # '~name': an account this computer does not have
            raise InputError(f"'{text}' begins with '{user}', the home folder of user '{user[1:]}', who has no "
                             f"account here: write the path in full.") from None
        raise InputError(f"'{text}' begins with '~', the home folder, but this process has none (HOME is not set and "
                         f"its user id has no account entry): write the path in full, or set HOME.") from None


def resources_dir() -> Path:
    env = os.environ.get("LIVERTUMORSEG_RESOURCES")
    if env:
        return expand_home(env)  # '~/clone/Resources' was read as ./~/clone/Resources
    return Path(__file__).resolve().parent.parent / "Resources"


MISSING_RESOURCES_HINT = ("A non-editable install (pip install . or a wheel) copies only the Python code: install "
                          "from a clone with 'pip install -e .', or set LIVERTUMORSEG_RESOURCES to a clone's "
                          "Resources/ folder (it holds Models/ and Sample/).")
"""What to do when the bundled models or sample are not beside the package (said wherever they are missing)."""


def bundled_models_dir() -> Path:
    return resources_dir() / "Models"


def home_folder() -> Path:
    """The user's home folder, or, where there is none (a container run as a user id without a passwd entry and
    without HOME: ``Path.home()`` raises), a per-user folder in the temporary directory."""
    try:
        return Path.home()
    except (RuntimeError, KeyError):
        import tempfile

        return Path(tempfile.gettempdir()) / f"livertumorseg-home-{os.getuid() if hasattr(os, 'getuid') else 0}"


def user_models_dir() -> Path:
    """``LIVERTUMORSEG_MODELS_DIR``, else ``~/.livertumorseg/models`` (the environment is read first: without a
    home folder the default was computed, and failed, even when the variable was set)."""
    folder = os.environ.get("LIVERTUMORSEG_MODELS_DIR")
    return expand_home(folder) if folder else home_folder() / ".livertumorseg" / "models"


def sample_ct_path() -> Path:
    """The bundled sample CT (NIfTI, RAS, 3 mm, (x, y, z) = 122 x 101 x 112 voxels)."""
    path = resources_dir() / "Sample" / "sample_ct.nii.gz"
    if not path.exists():
        raise InputError(f"The bundled sample CT is missing at '{path}'. {MISSING_RESOURCES_HINT}")
    return path


def sample_reference_path() -> Path:
    """The sample's reference liver label (0/1), same grid as :func:`sample_ct_path`."""
    return resources_dir() / "Sample" / "sample_liver_reference.nii.gz"
