"""Safe output writing: temp file in the destination folder, then an atomic rename.

A cancelled or failed write never leaves a half-written file that looks complete, and an existing
output is kept unless ``overwrite=True``.
"""
import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union

from .errors import OutputExistsError, InputError, option_hint

PathLike = Union[str, "os.PathLike[str]"]


def full_suffix(path: PathLike) -> str:
    """Lower-case extension including compound ones: ``a.nii.gz`` -> ``.nii.gz``, ``b.seg.nrrd`` -> ``.seg.nrrd``."""
    name = Path(path).name.lower()
    for compound in (".nii.gz", ".seg.nrrd", ".tar.gz"):
        if name.endswith(compound):
            return compound
    return Path(name).suffix


def check_can_write(path: PathLike, overwrite: bool = False) -> Path:
    """Raise a clear error if ``path`` exists (and not ``overwrite``) or its folder is missing."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"Output '{path}' already exists; pass {option_hint('--overwrite', 'overwrite=True')} "
                                f"to replace it or choose another output path.")
    if path.exists() and path.is_dir():
        raise InputError(f"Output '{path}' is a folder; give a file name.")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise InputError(f"Output folder '{parent}' does not exist; create it first.")
    return path


def _apply_default_permissions(path: Path) -> None:
    """mkstemp creates 0600 files; give the output the usual ``0666 & ~umask`` like a plain ``open``."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextlib.contextmanager
def atomic_output(path: PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Context manager yielding a temporary path next to ``path``; renamed onto ``path`` on success.

    The temporary name keeps the full extension so writers that pick the format by extension work.
    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = check_can_write(path, overwrite)
    suffix = full_suffix(path)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name[: max(1, len(path.name) - len(suffix))] + ".",
                               suffix=".tmp" + suffix, dir=str(path.parent if str(path.parent) else "."))
    os.close(fd)
    tmp_path = Path(tmp)
    _apply_default_permissions(tmp_path)
    try:
        yield tmp_path
        if not overwrite and path.exists():
            raise OutputExistsError(f"Output '{path}' appeared while writing; not overwriting it.")
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
