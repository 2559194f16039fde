"""Reading a CT every few voxels at the same points of the patient however the CT is stored.

The image-content checks (:mod:`.metal`, :mod:`.fluid_in_liver`, :mod:`.contrast_phase`) read a CT every second or
third voxel for speed. Read from index 0 of each array axis, the voxels read depend on how the CT is stored: the
same CT stored with an axis flipped (RAS against LPS, feet first against head first) is read at other points of the
patient, and a small object (a clip, a 1 mm aorta's edge) is counted differently: the same contrast CT read
153-164 HU of aorta, and the same 0.31 mL clip 0.24-0.38 mL of metal, in its four flips (27 Nov 2026,
``example_ct_dicom20``). Here an axis that runs toward the patient's left, posterior or superior (LPS +) is read
from index 0, one that runs against it from its far end's residue, so a flipped storage reads the same voxels
(:func:`~.body_size._every_second_pixel` reads the body's planes through it too).
"""
from typing import Optional, Sequence, Tuple

import numpy as np

from ..volume import ImageGeometry


def runs_forward(geometry: ImageGeometry, axis_zyx: int) -> bool:
    """Whether array axis ``axis_zyx`` (0 = z, 1 = y, 2 = x) runs toward the patient's L, P or S (its index
    direction's largest LPS component is positive)."""
    column = geometry.direction_matrix[:, 2 - axis_zyx]  # the LPS direction of index axis 2 - axis_zyx
    return bool(column[int(np.argmax(np.abs(column)))] > 0)


def anchored_start(geometry: ImageGeometry, shape_zyx: Sequence[int], axis_zyx: int, step: int, low: int = 0) -> int:
    """The first index at or after ``low`` along array axis ``axis_zyx`` (of an array of ``shape_zyx``) of a
    reading every ``step`` voxels that reads the same voxels of the patient however the CT is stored: indices
    ``0 mod step`` on an axis that runs toward L, P or S, ``(n - 1) mod step`` (the far end's) on one that runs
    against it."""
    step = max(1, int(step))
    anchor = 0 if runs_forward(geometry, axis_zyx) else (int(shape_zyx[axis_zyx]) - 1) % step
    return int(low) + (anchor - int(low)) % step


def anchored_slices(geometry: ImageGeometry, shape_zyx: Sequence[int], steps_zyx: Sequence[int]
                    ) -> Tuple[slice, slice, slice]:
    """``(z, y, x)`` slices reading every ``steps_zyx`` voxels of the whole array from :func:`anchored_start`."""
    return tuple(slice(anchored_start(geometry, shape_zyx, axis, int(step)), None, max(1, int(step)))  # type: ignore
                 for axis, step in enumerate(steps_zyx))


def in_patient_order(indices: np.ndarray, geometry: ImageGeometry, axis_zyx: int) -> np.ndarray:
    """``indices`` along array axis ``axis_zyx`` (ascending) put in the order of the patient's L, P or S
    direction: reversed on an axis that runs against it, so that picking every so many of them picks the same
    slices of the patient however the CT is stored."""
    return indices if runs_forward(geometry, axis_zyx) else indices[::-1]


def sampled_slices_holding(labels_zyx: np.ndarray, geometry: ImageGeometry, steps_zyx: Sequence[int],
                           head_foot: int, box: Optional[Tuple[slice, ...]] = None) -> np.ndarray:
    """Indices (ascending) along array axis ``head_foot`` of the slices holding label >= 1 of ``labels_zyx``
    (``(z, y, x)`` on ``geometry``) read every ``steps_zyx`` voxels (:func:`anchored_slices`): the same indices as
    ``np.nonzero((labels[anchored_slices(...)] >= 1).any(axis=<the other two>))[0] * step + start``. ``box``: slices
    (step 1, e.g. the liver's bounding box) outside which no label is >= 1; only the anchored voxels inside it are
    read (a 300 x 512 x 512 label map every 3 pixels: 0.028 s, its liver box 0.004 s). None: the whole array."""
    labels = np.asarray(labels_zyx)
    shape = labels.shape
    box = tuple(slice(0, n) for n in shape) if box is None else box
    cut = tuple(slice(anchored_start(geometry, shape, axis, step, low=part.indices(n)[0]), part.indices(n)[1],
                      max(1, int(step)))
                for axis, (part, step, n) in enumerate(zip(box, steps_zyx, shape)))
    other = tuple(a for a in range(labels.ndim) if a != head_foot)
    found = np.nonzero((labels[cut] >= 1).any(axis=other))[0]
    return found * cut[head_foot].step + cut[head_foot].start
