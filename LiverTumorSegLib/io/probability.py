"""Tumor probability maps as read from files: floats in [0, 1], or integers 255 x p as ``segment --probabilities``
writes them (:func:`probability_scores`). :func:`read_probability_levels` keeps a map as stored (a uint8 map stays
uint8) beside the divisor that makes it probabilities: ``evaluate --prob`` scores its ROC from it without a float
copy of the map."""
from typing import Tuple

from ..errors import InputError


def probability_divisor(array, path, content: str = "") -> float:
    """What the values of probability map ``array`` are divided by to be probabilities in [0, 1]: 255.0 for
    integer maps tagged as ``segment --probabilities`` writes them (``content`` = the file's ``meta["content"]``,
    :data:`~.formats.PROBABILITY_255_CONTENT`) and for untagged integer maps with values above 1 (``255 * p``);
    1.0 for floats and for untagged integer maps of 0 and 1 (a hard map, or a float map of whole numbers that the
    reader stored as integers). A tagged map whose largest value is 1 (a confident tumor-free case) was read as
    probability 1.0 there, which put its background above every tumor of the other cases in a pooled ROC. Values
    outside those ranges, NaN or Inf raise InputError, as does an untagged integer map of only 0, 1 and 2 (a label
    map given as probabilities). No copy of the map is made."""
    import numpy as np

    from .formats import PROBABILITY_255_CONTENT

    array = np.asarray(array)
    if array.size == 0:
        return 1.0
    low, high = float(array.min()), float(array.max())
    if np.issubdtype(array.dtype, np.integer):
        if low < 0 or high > 255:
            raise InputError(f"Probability map '{path}' holds integers {low:g}..{high:g}; expected 0..1 floats "
                             f"or 0..255 (255 x probability, as `segment --probabilities` writes).")
        tagged = content == PROBABILITY_255_CONTENT
        if not tagged and high == 2:  # values 0..2 only
            raise InputError(f"Probability map '{path}' holds only the integers 0, 1 and 2 and no tag saying it is "
                             f"255 x probability (segment --probabilities writes that tag): it looks like a label "
                             f"map (0 background, 1 liver, 2 tumor), whose ROC would say nothing. Give the "
                             f"probability map written with the prediction (segment --probabilities); a map of "
                             f"another tool whose probabilities are all below 1 %, stored as 255 x p, must be "
                             f"stored as floats in [0, 1].")
        return 255.0 if high > 1 or tagged else 1.0
    if not (np.isfinite(low) and np.isfinite(high)):  # min/max of an array holding NaN is NaN: count them
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise InputError(f"Probability map '{path}' holds {bad} NaN/Inf voxel(s) of {array.size}; probabilities "
                         f"must be finite numbers in [0, 1]. Write the map again (segment --probabilities).")
    if low < -1e-6 or high > 1.0 + 1e-6:
        raise InputError(f"Probability map '{path}' holds values {low:g}..{high:g}; probabilities must lie in "
                         f"[0, 1] (a softmax output, not logits or a label map).")
    return 1.0


def _as_probabilities(array, divisor: float) -> "object":
    """float32 probabilities of a map and its :func:`probability_divisor`: integers divided in float32 (as
    :meth:`~LiverTumorSegLib.metrics.roc.RocAccumulator.add` divides them), floats as they are."""
    import numpy as np

    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / np.float32(divisor)
    return array.astype(np.float32, copy=False)


def probability_scores(array, path, content: str = "") -> "object":
    """Probabilities in [0, 1] as float32 from a probability map array (library API; the commands read files with
    :func:`read_probability_levels` / :func:`read_probability_map`): integers divided by their
    :func:`probability_divisor` (which says which maps are refused), floats taken as they are."""
    import numpy as np

    array = np.asarray(array)
    return _as_probabilities(array, probability_divisor(array, path, content))


def read_probability_levels(path, reference, not_on_grid: str,
                            error_class: type = InputError) -> Tuple["object", float]:
    """``(map, divisor)``: the probability map file ``path`` as read (``(z, y, x)`` on ``reference``'s grid;
    integers stay integers: uint8 for 0..255) and its :func:`probability_divisor` (``map / divisor`` are the
    probabilities); a map of the same grid in another axis order is reoriented. Off the grid: ``error_class``
    with ``not_on_grid`` (what the caller calls the map and the grid), the mismatch and what to give instead."""
    from .labels import GEOMETRY_TOLERANCE, describe_grid_mismatch, onto_reference_grid
    from .reading import read_volume

    import numpy as np

    from .conversions import STORED_FLOATING_KEY

    read = read_volume(path, uint8_if_fits=True)  # an integer map of 0..255 as uint8: no int16 copy
    placed = onto_reference_grid(read, reference, GEOMETRY_TOLERANCE)
    if placed is None:
        raise error_class(f"{not_on_grid}: {'; '.join(describe_grid_mismatch(read, reference, GEOMETRY_TOLERANCE))}. Give the map "
                          f"written with this segmentation (segment --probabilities).")
    if read.meta.get(STORED_FLOATING_KEY) and np.issubdtype(placed.array.dtype, np.integer) \
            and placed.array.size and int(placed.array.max()) <= 1 and int(placed.array.min()) >= 0:
        # floats of 0.0 and 1.0 only (a hard map), made integers by the reader: floats again, so that they are
        # probabilities 0 and 1, not integers of unknown scale (read as 0 and 1/255 beside 255 x p maps); whole
        # floats above 1 (255 x p, or a label map stored as floats) keep the integer path and its checks
        return placed.array.astype(np.float32), 1.0
    return placed.array, probability_divisor(placed.array, path, read.meta.get("content", ""))


def read_probability_map(path, reference, not_on_grid: str, error_class: type = InputError) -> "object":
    """The probability map file ``path`` on ``reference``'s grid ``(z, y, x)`` (:func:`read_probability_levels`):
    a uint8 ``255 x p`` map as it is (as segment hands its own map to :func:`~LiverTumorSegLib.inference.
    lesion_report.lesion_report`; no float32 copy 4 times its size), any other as float32 probabilities in [0, 1]
    (integers divided by their divisor in float32)."""
    import numpy as np

    levels, divisor = read_probability_levels(path, reference, not_on_grid, error_class)
    if divisor == 255.0 and levels.dtype == np.uint8:
        return levels
    return _as_probabilities(levels, divisor)
