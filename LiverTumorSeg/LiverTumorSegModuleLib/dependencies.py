"""Python packages the module needs inside Slicer, and installing the missing ones after confirmation.

Nothing here imports Slicer: the caller passes the three Slicer actions (``confirm``, ``pip_install``,
``install_torch``), so tests run it with fakes and never install anything.
"""
import importlib.util
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence


@dataclass(frozen=True)
class Requirement:
    """``module``: the import name; ``pip``: the pip requirement that provides it."""

    module: str
    pip: str


# torch first: it is installed through SlicerPyTorch (matching the GPU driver), the rest with pip.
REQUIREMENTS = (
    Requirement("torch", "torch"),
    Requirement("monai", "monai>=1.3"),
    Requirement("safetensors", "safetensors>=0.4"),
    Requirement("nibabel", "nibabel>=5.0"),
    Requirement("scipy", "scipy>=1.9"),
    Requirement("SimpleITK", "SimpleITK>=2.2"),
    Requirement("yaml", "pyyaml>=6.0"),
)


class DependencyDeclinedError(Exception):
    """The user declined installing packages the segmentation needs."""


def missing_requirements(requirements: Sequence[Requirement] = REQUIREMENTS,
                         find_spec: Callable[[str], object] = importlib.util.find_spec) -> List[Requirement]:
    """The requirements whose module cannot be found (nothing is imported)."""
    missing = []
    for requirement in requirements:
        try:
            found = find_spec(requirement.module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(requirement)
    return missing


def confirmation_text(missing: Sequence[Requirement]) -> str:
    """The question shown before installing: what will be installed and how."""
    names = ", ".join(r.pip for r in missing)
    text = (f"Liver Tumor Segmentation needs these Python packages, which are not installed in Slicer: {names}.\n\n"
            f"Install them now? This downloads several hundred MB and can take minutes.")
    if any(r.module == "torch" for r in missing):
        text += ("\nPyTorch is installed by the PyTorch extension (PyTorchUtils), which picks the build that "
                 "matches your GPU driver.")
    return text


DECLINED_MESSAGE = ("Segmentation needs the packages listed before. Nothing was installed. Click Segment again "
                    "to install them, or install them from the Python console with slicer.util.pip_install().")


def ensure_requirements(confirm: Callable[[str], bool], pip_install: Callable[[str], None],
                        install_torch: Optional[Callable[[], object]],
                        requirements: Sequence[Requirement] = REQUIREMENTS,
                        find_spec: Callable[[str], object] = importlib.util.find_spec) -> List[Requirement]:
    """Install missing requirements after ``confirm(question)`` returns True; return what was installed.

    ``install_torch()`` installs torch (SlicerPyTorch's ``PyTorchUtilsLogic().installTorch``) and returns the
    module or ``None`` when it was not installed; ``None`` as the callable means the PyTorch extension is
    missing. Raises :class:`DependencyDeclinedError` (message for the user) when the user says no,
    ``RuntimeError`` when torch cannot be installed.
    """
    missing = missing_requirements(requirements, find_spec)
    if not missing:
        return []
    if not confirm(confirmation_text(missing)):
        raise DependencyDeclinedError(DECLINED_MESSAGE)
    for requirement in missing:
        if requirement.module == "torch":
            if install_torch is None:
                raise RuntimeError("PyTorch is missing and the PyTorch extension is not installed. Install the "
                                   "'PyTorch' extension from the Extensions Manager, restart Slicer and try again.")
            if install_torch() is None:
                raise RuntimeError("PyTorch was not installed. Open the PyTorch Utils module to install it, "
                                   "then try again.")
        else:
            pip_install(requirement.pip)
    return list(missing)
