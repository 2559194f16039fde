"""Metal in the slices of the segmented liver: a warning, since its streaks can make the outline and the lesions wrong
there.

Metal (a pedicle screw or rod, clips, coils, a stent, dense embolization material) throws bright and dark streaks
across the slices that hold it. The benchmark's ``metal_streaks`` row (a 3071 HU screw on the spine with streaks
across the liver's slices) took the bundled model's mean liver Dice on the four shared cases from 0.982 to 0.947 and
its synthetic-tumor Dice from 0.781 to 0.328, with 28 false lesions (v3, 27 Nov 2026, seed 0, 40 slices; v10, the
default since 28 Nov 2026: 0.981 to 0.940, 0.826 to 0.274, 28 false lesions as stored on 2 Dec 2026), and ``segment`` said nothing. Metal is found by its density, only in the slices (along the axis that runs head to foot) that hold
the segmented liver: a hip prosthesis far below the liver does not disturb it.
"""
from typing import List, Optional, Tuple

import numpy as np

from ..volume import ImageGeometry
from .sampling import anchored_slices, anchored_start, runs_forward, sampled_slices_holding
from .thresholds import threshold_for

METAL_MIN_HU = 2500.0
"""Voxels at or above this (HU) are taken as metal. Cortical bone reaches about 1000-2000 HU and contrast (oral,
IV, excreted) mostly stays below it as well: the highest value in the liver's slices of the four shared cases (one of
them a contrast CT) is 1839 HU; compact lipiodol after chemoembolisation and dense excreted contrast can pass it,
which the warning names too. Metal lies above it: steel and titanium reach the ceiling of the usual 12-bit scale
(3071 HU) or more on an extended scale; the hip prosthesis of the shared abdomen-pelvis CT (3 mm voxels) has 11.6 mL
at or above it, up to 3382 HU."""

METAL_MIN_ML = 0.2
"""Less metal than this (mL, at or above :data:`METAL_MIN_HU` in the liver's slices) gets no warning: a sharper
kernel's overshoot at bone edges (the benchmark's ``sharp_kernel`` imitation on the shared CTs of 0.8-1 mm pixels:
up to 3648 HU) put 0.010-0.023 mL there, while one pedicle screw (6.5 x 45 mm) is about 1.5 mL and the
``metal_streaks`` row's screw on the 3-slice CT of 1 mm slices 0.54 mL (found as 0.4 mL from the sample)."""

METAL_SAMPLE_MM = 0.0
"""In-plane step (mm) at which the CT is read for metal: 0, every pixel of each slice that holds liver. Read every
1.5 mm (every second pixel of a 0.8-1 mm CT), a 3 mm rod through the liver (0.34 mL) was found or missed by where
it fell on the sampling grid, and a 0.89 mL screw was reported as about 0.5 mL (the warnings audit); a contiguous
read of every pixel is no slower (13 against 17 ms for 150 slices of 512 x 512)."""

LIVER_SAMPLE_MM = 3.0
"""In-plane step (mm) at which the liver is read to find the slices that hold it (each slice is read)."""

DISTANCE_SAMPLE_MM = 5.0
"""Size (mm, along every axis) of the blocks in which the liver is first read to measure how far the metal lies from
it: about 12,000 blocks for a liver of 1.5 L (:func:`_metal_to_liver_mm` then reads every voxel near the nearest
one)."""

METAL_TOUCHING_MM = 2.0
"""Metal no farther than this (mm) from a liver voxel is called touching or inside the liver (a voxel or two)."""

MAX_METAL_POINTS = 2000
"""At most this many metal voxels (evenly picked) are measured against the liver: cheap for a long rod; its nearest
part may be missed by a few mm."""


def _steps(geometry: ImageGeometry, step_mm: float, head_foot: Optional[int] = None) -> Tuple[int, int, int]:
    """Voxel steps ``(z, y, x)`` of about ``step_mm`` along each array axis (at least 1); 1 along ``head_foot``."""
    spacing_zyx = tuple(float(s) for s in geometry.spacing[::-1])
    return tuple(1 if axis == head_foot else max(1, int(round(step_mm / spacing_zyx[axis])))  # type: ignore
                 for axis in range(3))


def metal_in_liver_slices(hu_zyx: np.ndarray, labels_zyx: np.ndarray, geometry: ImageGeometry,
                          liver_box: Optional[Tuple[slice, ...]] = None) -> Optional[dict]:
    """Metal (at or above :data:`METAL_MIN_HU`) in the slices that hold liver (label >= 1 of ``labels_zyx``), as
    ``{"volume_ml", "slices", "liver_slices", "s_range_mm", "distance_mm"}``: the metal's volume (mL, from a sample
    of the CT every :data:`METAL_SAMPLE_MM` in-plane), how many of the liver's slices hold it out of how many, the
    RAS S range (mm, superior +) of the metal in them, and the distance (mm, :func:`_metal_to_liver_mm`) from the metal to
    the nearest liver voxel (0: metal inside the liver). None with less than :data:`METAL_MIN_ML`. The samples are
    the same voxels of the patient however the CT is stored (:mod:`.sampling`). ``hu_zyx`` (HU) and ``labels_zyx``
    are ``(z, y, x)`` on ``geometry``; slices are taken along the array axis that runs head to foot
    (:func:`~..metrics.recist.axial_axis_zyx`). ``liver_box``: slices (``(z, y, x)``) holding all the liver (its
    bounding box) when the caller has it: the liver's slices are then found by reading only it."""
    from ..metrics.recist import axial_axis_zyx

    head_foot = axial_axis_zyx(geometry)
    labels = np.asarray(labels_zyx)
    liver_step = _steps(geometry, LIVER_SAMPLE_MM, head_foot)
    liver_slices = sampled_slices_holding(labels, geometry, liver_step, head_foot, liver_box)
    if liver_slices.size == 0:
        return None
    first, last = int(liver_slices[0]), int(liver_slices[-1])
    step = _steps(geometry, METAL_SAMPLE_MM, head_foot)
    block = list(anchored_slices(geometry, labels.shape, step))  # the same voxels of the patient in any storage
    block[head_foot] = slice(first, last + 1)
    metal_block = np.asarray(hu_zyx)[tuple(block)]
    if metal_block.dtype.kind in "iu" and (metal_block.size == 0 or metal_block.max() < METAL_MIN_HU):
        return None  # no metal at all, the usual case: one max (0.017 s) instead of a mask and its count (0.043 s)
    metal = metal_block >= threshold_for(metal_block, METAL_MIN_HU)
    count = int(np.count_nonzero(metal))
    voxel_ml = float(np.prod(geometry.spacing)) / 1000.0 * float(np.prod(step))
    if count * voxel_ml < METAL_MIN_ML:
        return None
    # the metal's bounding box first: the coordinates of a mask of the whole liver's slices took 0.04 s
    along = [np.nonzero(metal.any(axis=tuple(a for a in range(3) if a != axis)))[0] for axis in range(3)]
    box = tuple(slice(int(found[0]), int(found[-1]) + 1) for found in along)
    origin = np.array([int(found[0]) for found in along])
    start = np.array([int(b.start) for b in block])
    metal_zyx = (np.stack(np.nonzero(metal[box])) + origin[:, None]) * np.array(step)[:, None] + start[:, None]
    metal_slices = along[head_foot] + first
    return {"volume_ml": count * voxel_ml, "slices": int(metal_slices.size),
            "liver_slices": last - first + 1, "s_range_mm": _s_range(metal_zyx, geometry),
            "distance_mm": _metal_to_liver_mm(metal_zyx, labels, geometry)}


def _ras(indices_zyx: np.ndarray, geometry: ImageGeometry) -> np.ndarray:
    """RAS (mm, ``(3, n)``) of voxel indices ``(z, y, x)`` given as ``(3, n)``."""
    ijk_to_ras = geometry.ijk_to_ras()
    return ijk_to_ras[:3, :3] @ indices_zyx[::-1].astype(np.float64) + ijk_to_ras[:3, 3:]


def _liver_blocks(labels_zyx: np.ndarray, geometry: ImageGeometry, step: np.ndarray) -> np.ndarray:
    """Index centres ``(3, n)`` (float, ``(z, y, x)``) of the blocks of ``step`` voxels (``(z, y, x)``) that hold
    liver (label >= 1 of ``labels_zyx``): every liver voxel lies within half a block of its block's centre, however
    thin the liver is there (a 3 mm plate of liver between the points of a 5 mm reading was missed, and metal 2 mm
    from it was measured 47 mm away). The blocks lie on the same voxels of the patient however the CT is stored
    (:mod:`.sampling`); only the liver's bounding box is read at full resolution."""
    labels = np.asarray(labels_zyx)
    z = np.flatnonzero(labels.any(axis=(1, 2)))  # labels 0/1/2: any label is liver
    if z.size == 0:
        return np.zeros((3, 0))
    slab = labels[z[0]:z[-1] + 1]
    found = [z, np.flatnonzero(slab.any(axis=(0, 2))), np.flatnonzero(slab.any(axis=(0, 1)))]
    starts, stops = [], []
    for axis, (indices, size) in enumerate(zip(found, (int(k) for k in step))):
        edge = anchored_start(geometry, labels.shape, axis, size)  # a forward axis's blocks start on the reading
        edge = edge if runs_forward(geometry, axis) else (edge + 1) % size  # ... a reversed one's mirror them
        start = int(indices[0]) - (int(indices[0]) - edge) % size
        stop = int(indices[-1]) + 1
        starts.append(start)
        stops.append(stop + (start - stop) % size)  # whole blocks
    crop = np.zeros([b - a for a, b in zip(starts, stops)], dtype=bool)
    inside = tuple(slice(max(a, 0), min(b, n)) for a, b, n in zip(starts, stops, labels.shape))
    crop[tuple(slice(i.start - a, i.stop - a) for i, a in zip(inside, starts))] = labels[inside] >= 1
    counts = [n // int(k) for n, k in zip(crop.shape, step)]
    blocks = crop.reshape(counts[0], int(step[0]), counts[1], int(step[1]), counts[2], int(step[2])).any(axis=(1, 3, 5))
    centre_offset = np.asarray(starts, dtype=float) + (np.asarray(step, dtype=float) - 1.0) / 2.0
    return np.stack(np.nonzero(blocks)).astype(float) * np.asarray(step)[:, None] + centre_offset[:, None]


def _metal_to_liver_mm(metal_zyx: np.ndarray, labels_zyx: np.ndarray, geometry: ImageGeometry) -> float:
    """Smallest distance (mm) from the metal voxels ``metal_zyx`` (indices ``(3, n)``; at most
    :data:`MAX_METAL_POINTS` of them, evenly picked in the patient's S, A, R order, are measured) to a liver voxel
    (label >= 1 of ``labels_zyx``): first to the centres of the blocks of :data:`DISTANCE_SAMPLE_MM` that hold liver
    (:func:`_liver_blocks`), then to every liver voxel within 2.5 blocks of the nearest centre. That is the true
    distance unless another part of the liver lies nearly as close in another direction, and then at most a block's
    diagonal (8.7 mm) more."""
    from scipy.spatial import cKDTree

    metal_ras = _ras(metal_zyx, geometry)
    order = np.lexsort(np.round(metal_ras, 2))  # by S, then A, then R: the same points picked in any storage
    pick = order[np.linspace(0, order.size - 1, min(order.size, MAX_METAL_POINTS)).astype(int)]
    metal_ras = metal_ras[:, pick].T
    step = np.array(_steps(geometry, DISTANCE_SAMPLE_MM))
    centres = _liver_blocks(labels_zyx, geometry, step)
    distances, nearest = cKDTree(_ras(centres, geometry).T).query(metal_ras, k=1)
    centre = centres[:, nearest[int(np.argmin(distances))]]
    low = np.maximum(np.floor(centre - 2.5 * step).astype(int), 0)
    near = tuple(slice(int(a), int(b) + 1) for a, b in zip(low, np.ceil(centre + 2.5 * step).astype(int)))
    fine_zyx = np.stack(np.nonzero(np.asarray(labels_zyx)[near] >= 1)) + low[:, None]
    fine, _ = cKDTree(_ras(fine_zyx, geometry).T).query(metal_ras, k=1)
    return float(np.min(fine))


def _s_range(metal_zyx: np.ndarray, geometry: ImageGeometry) -> Tuple[float, float]:
    """RAS S (mm) of the lowest and highest metal voxel (indices ``(3, n)``, ``(z, y, x)``): on an axial scan the S of
    their slices. The S of a slice's corner voxel was given, which on a grid tilted 20-30 degrees lay 70-100 mm from
    the metal (a rod at S -15..35 mm read 'from S -87 to -42 mm', the oblique-grid audit)."""
    s = _ras(metal_zyx, geometry)[2]
    return float(s.min()), float(s.max())


def metal_warnings(hu_zyx: np.ndarray, labels_zyx: np.ndarray, geometry: ImageGeometry,
                   liver_box: Optional[Tuple[slice, ...]] = None) -> List[str]:
    """A warning when :func:`metal_in_liver_slices` finds metal in the slices of the segmented liver; none
    otherwise. Arguments as there (a CT in HU)."""
    found = metal_in_liver_slices(hu_zyx, labels_zyx, geometry, liver_box)
    if found is None:
        return []
    low, high = found["s_range_mm"]
    where = f"at S {low:.0f} mm" if round(low) == round(high) else f"from S {low:.0f} to {high:.0f} mm"
    distance = found["distance_mm"]
    near = ("touching or inside the segmented liver" if distance <= METAL_TOUCHING_MM else
            f"its nearest part about {distance:.0f} mm from the segmented liver")
    return [f"Metal in the liver's slices: about {found['volume_ml']:.1f} mL at or above {METAL_MIN_HU:.0f} HU (a "
            f"screw, rod, clip, coil or stent, or compact lipiodol or excreted contrast; bone stays below) in "
            f"{found['slices']} of the "
            f"{found['liver_slices']} slices that hold liver (the metal {where}), {near}. Streaks from metal can make "
            f"the liver's outline and the lesions wrong in those slices: check them in the images; a lesion near the "
            f"streaks may be an artefact (beside lipiodol, a treated tumor), and one there may be missed."]
