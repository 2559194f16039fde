"""Test helper: one base seed for every random number generator the tests use.

``LIVERTUMORSEG_TEST_SEED`` (environment, default 0) or ``pytest --test-seed N`` sets the base seed. Tests
that train, sample or augment derive their seeds from it (``test_seed(offset)``), so running the suite under
a few base seeds checks that each assertion holds with margin and not by the luck of one seed:

    LIVERTUMORSEG_TEST_SEED=1 OMP_NUM_THREADS=2 python -m pytest Testing/Python/test_models.py

``conftest.py`` calls :func:`seed_everything` before every test (torch, numpy's global generator, random).
"""
import os
import random

import numpy as np

ENV_VAR = "LIVERTUMORSEG_TEST_SEED"
_base_seed = None


def base_seed() -> int:
    """The base seed of this test run (``--test-seed`` if given, else the environment variable, else 0)."""
    if _base_seed is not None:
        return _base_seed
    text = os.environ.get(ENV_VAR, "0").strip() or "0"
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{ENV_VAR} must be an integer, got {text!r}") from None


def set_base_seed(seed) -> None:
    """Override the base seed (``conftest.py`` does this for ``--test-seed``)."""
    global _base_seed
    _base_seed = None if seed is None else int(seed)


def test_seed(offset: int = 0) -> int:
    """``base_seed() + offset``: a seed for one generator of one test, distinct per offset."""
    return base_seed() + int(offset)


test_seed.__test__ = False  # not a test, despite its name


def rng(offset: int = 0) -> np.random.Generator:
    """A numpy Generator seeded with ``test_seed(offset)``."""
    return np.random.default_rng(test_seed(offset))


def seed_everything(offset: int = 0) -> int:
    """Seed torch (CPU and CUDA), numpy's global generator and ``random`` with ``test_seed(offset)``."""
    seed = test_seed(offset)
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    try:
        import torch
    except ImportError:  # the Slicer-free, torch-free parts of the suite still run
        return seed
    torch.manual_seed(seed)
    return seed
