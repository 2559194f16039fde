"""Run a network in eval mode without changing the caller's module: :func:`eval_mode` sets every submodule to eval
for a ``with`` block and puts back each one's own ``training`` flag afterwards.

A package given to the inference engine as an object (``Segmenter(package=pkg)``, ``segment_volume(ct, pkg)``)
holds the caller's network; calling ``.eval()`` on it switched a model the caller was training to eval for good.
"""
import contextlib
from typing import Any, Iterator


@contextlib.contextmanager
def eval_mode(*models: Any) -> Iterator[None]:
    """Every submodule of each of ``models`` (torch modules; None is skipped) in eval mode inside the block; each
    submodule's own ``training`` flag again afterwards, also after an error."""
    flags = [(module, module.training) for model in models if model is not None for module in model.modules()]
    for module, training in flags:
        if training:
            module.training = False
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training
