"""An oblique CT segmented on a grid whose axes are the patient's axes.

The network is 2.5D and was trained on axial slices. :mod:`..orientation` only permutes and flips a CT's axes, so
a CT whose grid is turned against the patient's axes (a gantry tilt, a registration's or a resample module's output
grid) reaches the network as oblique slices. Here such a CT is resampled (trilinear) onto an axis-aligned grid (LPS
identity direction) that covers every voxel centre of the CT (beyond the CT's grid: its nearest edge voxel), the
network runs on that grid, and its labels and
tumor probability are brought back onto the CT's own grid (labels: the label with the largest share under the same
trilinear interpolation of each label's indicator; probability: trilinear). Every voxel keeps its physical place.

Arrays are ``(z, y, x)``; geometry vectors ``(x, y, z)``, LPS, mm.
"""
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..volume import CTVolume, ImageGeometry, meta_for_another_grid

OBLIQUE_THRESHOLD_DEGREES = 5.0
"""A CT whose grid is turned more than this against the patient's axes (:func:`..orientation.obliquity_degrees`) is
segmented on the aligned grid; an axis-aligned CT (0 degrees, also flipped or permuted) and one turned less take the
usual path, unchanged. Measured (29 Nov 2026, v10, fp32, seed 0, 40 slices; benchmarks/robustness.py's regrid rows
turned 5-30 degrees about left-right, the three shared CTs, README): at 5 degrees the aligned grid gains at most
0.014 tumor Dice, loses 0.005-0.006 liver Dice on each and 0.08 of one CT's tumor Dice (the interpolation is not
worth it); at 7.5 it is mixed; from 10 degrees it gains tumor Dice on all three (the 3 mm abdomen-pelvis CT: 0.61 ->
0.70 at 10, 0.34 -> 0.62 at 20, 0.12 -> 0.55 at 30)."""

EDGE_MODE = "nearest"
"""What the aligned grid holds where it reaches beyond the CT's grid: each voxel the CT's nearest edge voxel's value
(``scipy.ndimage`` mode), as the network's 2.5D context repeats a CT's first and last slices. Air there (a constant
-1024 HU) cut every aligned slice of a thin tilted slab to a band: liver Dice 0.968 -> 0.935 on the 20-slice CT turned
5 degrees, 0.961 with the nearest edge voxel."""

BACK_MODE = "nearest"
"""How the way back (labels and probability onto the CT's grid) reads beyond the aligned grid: the nearest edge
voxel's value (``scipy.ndimage`` mode). The aligned grid covers every voxel centre of the CT, but float rounding puts
the CT's outermost centres up to about 1e-13 voxel beyond its edge, and ``constant`` mode (0 there) gave them
background and probability 0: a whole face of a CT tilted about one axis (39 of 10296 voxels of an 8 x 33 x 39 CT
turned 28.8 degrees; 97 of 200 random tilted grids lost some)."""


@dataclass(frozen=True)
class AlignedGrid:
    """An axis-aligned grid (identity direction, LPS) ``shape_zyx`` with ``geometry``, covering a CT's voxels."""

    geometry: ImageGeometry
    shape_zyx: Tuple[int, int, int]

    def record(self) -> Dict[str, Any]:
        """The grid for a report: shape ``(z, y, x)``, spacing ``(x, y, z)`` mm, origin ``(x, y, z)`` LPS mm."""
        return {"kind": "axis_aligned", "shape_zyx": [int(s) for s in self.shape_zyx],
                "spacing_mm": [round(float(s), 4) for s in self.geometry.spacing],
                "origin_lps_mm": [round(float(o), 3) for o in self.geometry.origin]}


def aligned_grid(geometry: ImageGeometry, shape_zyx: Sequence[int], spacing_xyz: Sequence[float]) -> AlignedGrid:
    """The smallest axis-aligned grid with ``spacing_xyz`` (mm) whose box holds every voxel centre of a grid
    ``shape_zyx`` with ``geometry``: its first voxel at the lowest L, P, S corner of the CT's voxel-centre box."""
    spacing = np.asarray(spacing_xyz, dtype=float)
    last_xyz = np.asarray([int(s) for s in shape_zyx][::-1], dtype=float) - 1.0
    corners = np.array([[i, j, k] for i in (0.0, last_xyz[0]) for j in (0.0, last_xyz[1])
                        for k in (0.0, last_xyz[2])])
    points = np.array([geometry.index_to_lps(c) for c in corners])
    low, high = points.min(axis=0), points.max(axis=0)
    counts_xyz = np.ceil((high - low) / spacing - 1e-6).astype(int) + 1
    grid = ImageGeometry(spacing=tuple(float(s) for s in spacing), origin=tuple(float(v) for v in low))
    return AlignedGrid(geometry=grid, shape_zyx=tuple(int(c) for c in counts_xyz[::-1]))  # type: ignore[arg-type]


def _index_map_zyx(target: ImageGeometry, source: ImageGeometry) -> Tuple[np.ndarray, np.ndarray]:
    """``(matrix, offset)`` taking a ``target`` array index ``(z, y, x)`` to the ``source`` array index of the
    same physical point (``scipy.ndimage.affine_transform``'s convention)."""
    src = source.direction_matrix @ np.diag(source.spacing)
    tgt = target.direction_matrix @ np.diag(target.spacing)
    inverse = np.linalg.inv(src)
    matrix_xyz = inverse @ tgt
    offset_xyz = inverse @ (np.asarray(target.origin, dtype=float) - np.asarray(source.origin, dtype=float))
    return matrix_xyz[::-1, ::-1].copy(), offset_xyz[::-1].copy()


SLAB_SLICES = 16
"""Target slices resampled at a time: the interpolation's work arrays stay a slab's, not a volume's (the memory
check counts them: :data:`~LiverTumorSegLib.validation.ALIGNED_SLAB_SLICES`)."""

SlabDone = Callable[[int, int], None]
"""``slab_done(done, total)``: called after each slab with the target slices done and in all (progress; it may
raise to stop, e.g. :meth:`~LiverTumorSegLib.progress.CancellationToken.raise_if_cancelled`)."""


def resample(array_zyx: np.ndarray, source: ImageGeometry, target: ImageGeometry, target_shape_zyx: Sequence[int],
             fill: float = 0.0, mode: str = "constant", slab_done: Optional[SlabDone] = None) -> np.ndarray:
    """``array_zyx`` (on ``source``'s grid) resampled trilinearly onto ``target``'s grid ``target_shape_zyx``,
    float32, in slabs of :data:`SLAB_SLICES` target slices (``slab_done`` after each). Beyond the source grid:
    ``fill`` (``mode`` ``"constant"``) or the nearest edge voxel's value (``"nearest"``). A float16 array is read as
    float32 (``scipy.ndimage`` has no float16: an oblique float16 CT failed with 'data type not supported')."""
    from scipy import ndimage

    if array_zyx.dtype == np.float16:
        array_zyx = array_zyx.astype(np.float32)
    matrix, offset = _index_map_zyx(target, source)
    shape = tuple(int(s) for s in target_shape_zyx)
    out = np.empty(shape, dtype=np.float32)
    for z0 in range(0, shape[0], SLAB_SLICES):
        z1 = min(shape[0], z0 + SLAB_SLICES)
        ndimage.affine_transform(array_zyx, matrix, offset + matrix[:, 0] * z0, output_shape=(z1 - z0,) + shape[1:],
                                 output=out[z0:z1], order=1, mode=mode, cval=float(fill), prefilter=False)
        if slab_done is not None:
            slab_done(z1, shape[0])
    return out


def labels_back(labels_zyx: np.ndarray, source: ImageGeometry, target: ImageGeometry,
                target_shape_zyx: Sequence[int], values: Sequence[int] = (1, 2),
                slab_done: Optional[SlabDone] = None) -> np.ndarray:
    """Label map ``labels_zyx`` (uint8 on ``source``'s grid) onto ``target``'s grid: in each voxel the label with
    the largest share under trilinear interpolation of each label's indicator (ties: the lower label; beyond the
    source grid: its nearest edge voxel's label, :data:`BACK_MODE`, as the source covers every target voxel centre
    but for rounding), the indicators filtered in-plane first where the target's pixels are coarser
    (:func:`back_antialias`). uint8; float32 work arrays of a slab of :data:`SLAB_SLICES` target slices
    (``slab_done`` after each)."""
    from scipy import ndimage

    matrix, offset = _index_map_zyx(target, source)
    shape = tuple(int(s) for s in target_shape_zyx)
    out = np.zeros(shape, dtype=np.uint8)
    widths = back_antialias(source, labels_zyx.shape, target, shape)
    indicators = [filter_in_place((labels_zyx == value).astype(np.float32), widths)  # on the (smaller) source grid
                  for value in values]
    for z0 in range(0, shape[0], SLAB_SLICES):
        z1 = min(shape[0], z0 + SLAB_SLICES)
        slab_shape = (z1 - z0,) + shape[1:]
        best = np.zeros(slab_shape, dtype=np.float32)
        background = np.ones(slab_shape, dtype=np.float32)  # 1 minus the labels' shares
        slab = out[z0:z1]
        for value, indicator in zip(values, indicators):
            share = ndimage.affine_transform(indicator, matrix, offset + matrix[:, 0] * z0, output_shape=slab_shape,
                                             output=np.float32, order=1, mode=BACK_MODE, prefilter=False)
            background -= share
            better = share > best
            slab[better], best[better] = np.uint8(value), share[better]
        slab[background >= best] = 0
        if slab_done is not None:
            slab_done(z1, shape[0])
    return out


def probability_back(probability_zyx: np.ndarray, source: ImageGeometry, target: ImageGeometry,
                     target_shape_zyx: Sequence[int], slab_done: Optional[SlabDone] = None) -> np.ndarray:
    """Tumor probability ``probability_zyx`` (uint8, 0-255, on ``source``'s grid) onto ``target``'s grid
    ``target_shape_zyx``: trilinear (beyond the source grid: :data:`BACK_MODE`), rounded, uint8. The source is read
    as it is (``scipy.ndimage`` interpolates uint8 in double, as a float32 copy: no float32 copy of the aligned grid)
    and the float32 result is rounded and clipped in place: one float32 array of the target grid, where a float32
    copy of the source and two more of the target (``rint``, ``clip``) were live (12 bytes per target voxel, the
    peak of the way back when the CT's grid is not smaller than the aligned one). Not filtered where the target's
    pixels are coarser, as the labels' shares are (:func:`back_antialias`): the lesion-confidence step reads each
    lesion's probability at the voxels its labels give, and the filtered probability, spread beyond them, lowered it
    until lesions went: synthetic-tumor Dice of the 3 mm abdomen-pelvis CT turned 10 / 20 degrees 0.698 / 0.622 ->
    0.615 / 0.529 (the labels' filter alone: 0.692 / 0.623, liver Dice +0.001 to +0.003; 2 Dec 2026, v10)."""
    restored = resample(probability_zyx, source, target, target_shape_zyx, 0.0, BACK_MODE, slab_done)
    np.rint(restored, out=restored)
    np.clip(restored, 0, 255, out=restored)
    return restored.astype(np.uint8)


def footprint(geometry: ImageGeometry, shape_zyx: Sequence[int], source: ImageGeometry,
              source_shape_zyx: Sequence[int]) -> np.ndarray:
    """Which voxels of a grid ``shape_zyx`` with ``geometry`` lie within the CT grid ``source``
    ``source_shape_zyx``: bool ``(z, y, x)``, True where the voxel centre falls inside a CT voxel (index within
    half a voxel of the CT's first and last voxel centres on every axis). The other voxels of an aligned grid hold
    no anatomy, only :data:`EDGE_MODE`'s repeated edge voxels. Computed a slice at a time (float64 work arrays of
    a slice)."""
    matrix, offset = _index_map_zyx(geometry, source)
    shape = tuple(int(s) for s in shape_zyx)
    limits = [float(n) - 0.5 for n in source_shape_zyx]
    y = np.arange(shape[1], dtype=float)[:, None]
    x = np.arange(shape[2], dtype=float)[None, :]
    inside = np.zeros(shape, dtype=bool)
    for z in range(shape[0]):
        plane = inside[z]
        plane[...] = True
        for axis in range(3):
            index = matrix[axis, 1] * y + matrix[axis, 2] * x + (matrix[axis, 0] * z + offset[axis])
            plane &= (index >= -0.5 - 1e-6) & (index <= limits[axis] + 1e-6)
    return inside


FOOTPRINT_RUN_SLICES = 16
"""Aligned slices the network is given at a time when it runs only over the CT's footprint
(:func:`footprint_runs`): each run cropped in-plane to its own slices' footprint."""

FOOTPRINT_MARGIN_PIXELS = 64
"""Aligned pixels (at the network's in-plane spacing) added on every side of a run's footprint box
(:func:`footprint_runs`), so the network sees the body around the slab's band as it does on whole slices."""


@dataclass(frozen=True)
class FootprintRun:
    """A run of aligned slices the network is given, cropped in-plane: the labels of slices ``slices``
    ``[z0, z1)`` are kept; the network reads ``read_slices`` ``[r0, r1)`` (those with their 2.5D context slices,
    within the grid), rows ``rows`` ``[y0, y1)`` and columns ``columns`` ``[x0, x1)`` (aligned grid indices)."""

    slices: Tuple[int, int]
    read_slices: Tuple[int, int]
    rows: Tuple[int, int]
    columns: Tuple[int, int]

    @property
    def read_box(self) -> Tuple[slice, slice, slice]:
        """The ``(z, y, x)`` index of the aligned grid the network reads."""
        return slice(*self.read_slices), slice(*self.rows), slice(*self.columns)

    @property
    def kept_box(self) -> Tuple[slice, slice, slice]:
        """The ``(z, y, x)`` index of the aligned grid whose labels this run gives."""
        return slice(*self.slices), slice(*self.rows), slice(*self.columns)

    @property
    def kept_in_read(self) -> slice:
        """The kept slices within the slices read (z index of the run's own arrays)."""
        return slice(self.slices[0] - self.read_slices[0], self.slices[1] - self.read_slices[0])

    @property
    def read_voxels(self) -> int:
        """Voxels the network reads (its share of the work)."""
        return ((self.read_slices[1] - self.read_slices[0]) * (self.rows[1] - self.rows[0])
                * (self.columns[1] - self.columns[0]))


def footprint_runs(inside_zyx: np.ndarray, run_slices: int = FOOTPRINT_RUN_SLICES,
                   margin_pixels: int = FOOTPRINT_MARGIN_PIXELS, context_slices: int = 1) -> List[FootprintRun]:
    """The runs of aligned slices the network is given for an aligned grid whose :func:`footprint` is
    ``inside_zyx`` (bool ``(z, y, x)``): consecutive runs of ``run_slices`` slices, each cropped in-plane to the box
    of its slices' footprint grown by ``margin_pixels`` on every side (within the grid), read with
    ``context_slices`` more slices either side (within the grid) for the network's 2.5D context. A run whose slices
    hold no footprint is left out (the network runs nowhere there: background, probability 0)."""
    if run_slices < 1 or margin_pixels < 0 or context_slices < 0:
        raise ValueError(f"run_slices must be >= 1, margin_pixels and context_slices >= 0; got {run_slices}, "
                         f"{margin_pixels}, {context_slices}.")
    nz, ny, nx = inside_zyx.shape
    rows_inside, columns_inside = inside_zyx.any(axis=2), inside_zyx.any(axis=1)  # (z, y), (z, x)
    runs = []  # type: List[FootprintRun]
    for z0 in range(0, nz, run_slices):
        z1 = min(nz, z0 + run_slices)
        ys, xs = np.flatnonzero(rows_inside[z0:z1].any(axis=0)), np.flatnonzero(columns_inside[z0:z1].any(axis=0))
        if ys.size == 0:
            continue
        runs.append(FootprintRun(
            slices=(z0, z1), read_slices=(max(0, z0 - context_slices), min(nz, z1 + context_slices)),
            rows=(max(0, int(ys[0]) - margin_pixels), min(ny, int(ys[-1]) + 1 + margin_pixels)),
            columns=(max(0, int(xs[0]) - margin_pixels), min(nx, int(xs[-1]) + 1 + margin_pixels))))
    return runs


def run_volume(grid_ct: CTVolume, run: FootprintRun) -> CTVolume:
    """The part of ``grid_ct`` (on an axis-aligned grid) that the network reads for ``run``: a view of its array,
    its origin moved to the box's first voxel (same spacing, identity direction)."""
    first_zyx = np.asarray([run.read_slices[0], run.rows[0], run.columns[0]], dtype=float)
    origin = np.asarray(grid_ct.geometry.origin, dtype=float) + first_zyx[::-1] * np.asarray(grid_ct.geometry.spacing)
    geometry = ImageGeometry(spacing=tuple(float(s) for s in grid_ct.geometry.spacing),
                             origin=tuple(float(v) for v in origin))
    return CTVolume(array=grid_ct.array[run.read_box], geometry=geometry, source=grid_ct.source,
                    meta=meta_for_another_grid(grid_ct.meta))


ANTIALIAS_SUBTRACTED_PX2 = 2.0 / 3.0
"""A CT whose in-plane pixels the aligned grid enlarges by ``s`` (aligned spacing over the CT's along that axis) has
each in-plane axis filtered first with a triangle of half-width ``sqrt(s**2 - ANTIALIAS_SUBTRACTED_PX2)`` CT pixels
(:func:`in_plane_antialias`), so that its noise reaches the network as an axial CT's does: the axial path shrinks
pixels with torch's antialiased bilinear (a triangle of half-width ``s``, ``preprocessing.spatial``), trilinear
sampling alone does not filter, and the filter before the sampling adds to the sampling's own smoothing: the
subtracted 2/3 px^2 makes the two together leave white noise the variance torch's filter leaves, within 0.95-1.09
of it for ``s`` from 1.35 to 5.5 (1-D, random phase, measured 2 Dec 2026); below ``s`` 1.29 the half-width is at
most one pixel, no filter, which leaves 1.05-1.21 of it. A turned CT's aligned grid also interpolates between its
slices, which the axial path does not do (about 0.82 of the std of white noise): white noise on 0.5-1.3 mm pixels
turned 10-20 degrees reaches the aligned grid with 0.77-1.04 times the axial path's std (trilinear sampling alone:
1.04-2.86 times). Measured on the 20-slice shared CT (0.98 mm pixels onto 1.5 mm): the liver's fine noise (HU minus
its 3 x 3 median, eroded liver) 5.4 HU on the axial path, 8.2 on the aligned one without the filter, 5.1 with it
(the grid forced through the aligned path untilted)."""


def triangle_weights(half_width_px: float) -> np.ndarray:
    """Weights of a triangle filter of ``half_width_px`` (pixels) at the integer offsets it reaches, summing to 1."""
    reach = int(np.ceil(half_width_px)) - 1  # the offsets closer than the half-width: the others weigh 0
    offsets = np.arange(-reach, reach + 1, dtype=float)
    weights = np.clip(1.0 - np.abs(offsets) / float(half_width_px), 0.0, None)
    return weights / weights.sum()


def in_plane_antialias(geometry: ImageGeometry, shape_zyx: Sequence[int],
                       spacing_xyz: Sequence[float]) -> Dict[int, float]:
    """``{array axis: triangle half-width in pixels}`` of the in-plane axes of a CT ``shape_zyx`` with ``geometry``
    that are filtered before it is resampled onto an aligned grid of ``spacing_xyz`` (mm): those whose pixels the
    grid enlarges enough that the half-width (:data:`ANTIALIAS_SUBTRACTED_PX2`) exceeds one pixel. Array axes: 0 z,
    1 y, 2 x of the CT as stored; in-plane: the two that are not nearest the patient's superior axis."""
    import math

    from ..orientation import plan_reorientation

    plan = plan_reorientation(geometry, shape_zyx)
    widths = {}
    for canonical_axis in (1, 2):  # canonical y (P) and x (L); spacing_xyz holds x first
        axis = int(plan.source_axis[canonical_axis])
        enlarged = float(spacing_xyz[2 - canonical_axis]) / float(geometry.spacing[2 - axis])
        half_width = math.sqrt(max(0.0, enlarged * enlarged - ANTIALIAS_SUBTRACTED_PX2))
        if half_width > 1.0:
            widths[axis] = half_width
    return widths


def filter_in_place(array: np.ndarray, widths: Dict[int, float]) -> np.ndarray:
    """``array`` (float32) with each axis in ``widths`` (:func:`in_plane_antialias`) filtered with its triangle, in
    place (beyond the array: its edge voxel repeated, as :data:`EDGE_MODE` and :data:`BACK_MODE`); returned."""
    from scipy import ndimage

    for axis, half_width in sorted(widths.items()):
        ndimage.convolve1d(array, triangle_weights(half_width), axis=axis, output=array, mode="nearest")
    return array


def back_antialias(source: ImageGeometry, source_shape_zyx: Sequence[int], target: ImageGeometry,
                   target_shape_zyx: Sequence[int]) -> Dict[int, float]:
    """:func:`in_plane_antialias` of a ``source`` grid resampled onto a ``target`` grid of any direction: the
    target's spacing along the patient's axes is its canonical one (:func:`..orientation.plan_reorientation`). Labels
    brought back from the aligned grid onto a CT with coarser pixels (3 mm against 1.5 mm) are filtered so: each CT
    voxel takes its labels' shares over the area it covers, as the axial path's restore shrinks with antialiasing,
    where trilinear sampling read one point of it (the probability is not: :func:`probability_back`); training's
    labels onto the aligned grid are filtered as its HU are."""
    from ..orientation import plan_reorientation

    spacing_xyz = plan_reorientation(target, target_shape_zyx).canonical_geometry.spacing
    return in_plane_antialias(source, source_shape_zyx, spacing_xyz)


def onto_aligned_grid(volume: CTVolume, spacing_xyz: Sequence[float]) -> Tuple[CTVolume, AlignedGrid]:
    """``volume`` resampled onto :func:`aligned_grid` (float32 HU; beyond its grid: :data:`EDGE_MODE`)."""
    grid = aligned_grid(volume.geometry, volume.shape_zyx, spacing_xyz)
    return resampled_onto(volume, grid), grid


def resampled_onto(volume: CTVolume, grid: AlignedGrid, slab_done: Optional[SlabDone] = None) -> CTVolume:
    """``volume`` resampled onto ``grid`` (float32 HU; beyond its grid: :data:`EDGE_MODE`; ``slab_done`` after each
    slab), its in-plane axes filtered first where the grid's pixels are coarser (:func:`in_plane_antialias`: a
    float32 copy of the CT while it resamples)."""
    widths = in_plane_antialias(volume.geometry, volume.shape_zyx, grid.geometry.spacing)
    source = filter_in_place(np.array(volume.array, dtype=np.float32), widths) if widths else volume.array  # a copy
    array = resample(source, volume.geometry, grid.geometry, grid.shape_zyx, 0.0, EDGE_MODE, slab_done)
    return CTVolume(array=array, geometry=grid.geometry, source=volume.source, meta=meta_for_another_grid(volume.meta))


def aligned_spacing_xyz(volume: CTVolume, target_spacing_mm: Optional[float]) -> Tuple[float, float, float]:
    """The aligned grid's spacing ``(x, y, z)`` mm: in-plane the network's ``target_spacing_mm`` (so the in-plane
    resampling to the network grid is the identity: two interpolations in all, not three), else the CT's finest
    in-plane spacing; along z the CT's slice spacing (the spacing of the index axis nearest superior)."""
    from ..orientation import plan_reorientation

    canonical = plan_reorientation(volume.geometry, volume.shape_zyx).canonical_geometry
    sx, sy, sz = (float(s) for s in canonical.spacing)
    in_plane = float(target_spacing_mm) if target_spacing_mm else min(sx, sy)
    return in_plane, in_plane, sz
