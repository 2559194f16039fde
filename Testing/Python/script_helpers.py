"""Load a repository script (``benchmarks/*.py``, ``scripts/*.py``) as a module, so tests can call its functions."""
import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_script(relative_path: str, module_name: str) -> ModuleType:
    """The module of ``ROOT / relative_path`` (executed once per call), named ``module_name``."""
    spec = importlib.util.spec_from_file_location(module_name, ROOT / relative_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
