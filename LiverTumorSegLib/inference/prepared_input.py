"""A CT resampled to the network grid before the engine asks for it: ``segment`` prepares it while the model
finishes loading (MONAI's import, about 1 s on 2 cores), so the preprocessing no longer waits for the load.

:func:`prepare_input` does what :class:`~.engine.SliceInferenceEngine` does first for a CT: reorient it to the
canonical frame and run ``SlicePreprocessor(config).prepare`` on it. The engine takes the result
(:meth:`~.engine.SliceInferenceEngine.offer_prepared`) only for the same CT object and an equal preprocessing
config, so the labels are those it would have computed itself; anything else is ignored and it prepares the CT
again.
"""
import logging
import time
from dataclasses import dataclass
from typing import Any, Optional

from ..volume import CTVolume

log = logging.getLogger(__name__)


@dataclass
class PreparedInput:
    """``volume`` (the CT as given, ``(z, y, x)``), ``canonical`` (the same CT in the canonical frame: a view of
    ``volume``'s voxels, no copy), ``reorientation`` (the way back), ``prepared`` (a ``PreparedVolume``: the canonical
    CT on the network grid), ``config`` (the ``PreprocessingConfig`` it was prepared with) and ``seconds`` (wall time
    spent)."""

    volume: CTVolume
    canonical: CTVolume
    reorientation: Any
    prepared: Any
    config: Any
    seconds: float

    def serves(self, volume: CTVolume, config: Any) -> bool:
        """True when this preparation is the one an engine with ``config`` would make of ``volume``: the very
        same CT object (not an equal copy: an array changed in place since would go unnoticed by a comparison of
        shapes) and an equal config."""
        return volume is self.volume and config == self.config


def prepare_input(volume: CTVolume, config: Any) -> PreparedInput:
    """Reorient ``volume`` to the canonical frame and resample it to the network grid of ``config`` (a
    ``PreprocessingConfig``), as the engine would."""
    from ..orientation import canonicalize
    from ..preprocessing import SlicePreprocessor

    start = time.perf_counter()
    canonical, reorientation = canonicalize(volume, copy=False)  # a view: no second CT held beside the grid
    prepared = SlicePreprocessor(config).prepare(canonical)
    return PreparedInput(volume=volume, canonical=canonical, reorientation=reorientation, prepared=prepared,
                         config=config, seconds=time.perf_counter() - start)


def prepare_if_it_fits(volume: CTVolume, config: Any, batch_size: Optional[int] = None,
                       threads: Optional[int] = None, reserved_bytes: int = 0) -> Optional[PreparedInput]:
    """:func:`prepare_input`, or None when the network-grid copy would not fit in memory
    (``validation.check_network_memory``): the caller's own memory check, after the model has loaded, then
    refuses the CT with the full message, and nothing was allocated for it before. ``threads``: torch's CPU
    threads for the resampling (``--threads``; the caller's count again afterwards), None = as they are.
    ``reserved_bytes``: memory other work may still take meanwhile (a batch's running network, while its reader
    prepares the next CT), asked for too: the copy is made only when it fits beside that."""
    from ..errors import ResourceError
    from ..validation import check_network_memory

    try:
        check_network_memory(volume, config, None, 3, batch_size, 0.0, pending_bytes=int(reserved_bytes))
    except ResourceError:
        return None
    from .device import torch_threads

    with torch_threads(threads):
        return prepare_input(volume, config)


def prepare_ahead(volume: CTVolume, config: Any, batch_size: Optional[int] = None, threads: Optional[int] = None,
                  what: str = "the CT", reserved_bytes: int = 0) -> Optional[PreparedInput]:
    """:func:`prepare_if_it_fits`, or None when that fails for any reason (logged at debug level, naming ``what``):
    a preparation made ahead is only an offer, so the engine then prepares the CT itself and a real problem with it
    is reported there, as it is without this step."""
    try:
        return prepare_if_it_fits(volume, config, batch_size, threads, reserved_bytes)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.debug("preparing %s ahead of the engine failed (%s); the engine prepares it", what, exc)
        return None
