"""A resampling's fill outside the original field of view, read as outside the scan.

A CT resampled or registered onto another grid (SimpleITK's ``ResampleImageFilter``, Slicer's resample modules) gets
the fill value, 0 HU by default, wherever the new grid reaches beyond the old one; padding an array with 0 does the
same. The network reads a large region of 0 HU as soft tissue: the shared 3 mm abdomen-pelvis CT on a grid rotated 30
degrees about the left-right axis gave liver Dice 0.92 with the fill at -1024 HU and 0.70 at 0 HU, and rotated 44
degrees in-plane its 0 HU fill (2,150 mL) was kept as the liver (Dice 0; 0.91 at -1024 HU); read as below, the 0 HU
fill gives the -1024 HU results (docs/bad_inputs.md, 29 Nov 2026).

:func:`find_resampling_fill` finds such a fill by what a measurement never holds: one bit-identical value over a large
region that reaches the edge of the slices. ``segment`` gives the network a copy with air there
(:func:`without_fill`; the user's CT and file are never changed), labels no liver or tumor there, lets the checks
after the network read it as the scanner's padding, and warns (:func:`resampling_fill_warning`); ``preprocess``
previews it as segment gives it, ``measure --ct`` and ``followup`` read it as padding. Array axes are ``(z, y, x)``; "slices" are the planes of the first array axis.
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..validation import PADDING_BELOW_HU
from ..volume import CTVolume, ImageGeometry

FILL_ABOVE_HU = -900.0
"""Only a value above this (HU) is a fill to find: air held exactly (-1024 or -1000, as int16 CTs often store it, or
a fill of -1024) is air to the network already (every window of the bundled model reads -1000 and below alike), and a
value below :data:`~LiverTumorSegLib.validation.PADDING_BELOW_HU` is the scanner's padding, which the checks already
read as outside the scan."""

OUTSIDE_SCAN_HU = -1024.0
"""What the network is given where the fill was: air, the value the preprocessing pads with (``pad_hu``) and the fill
with which the rotated CT above kept its Dice."""

READ_AS_PADDING_HU = -3024.0
"""What the checks after the network (post-processing, the lesion report, the plausibility checks) read where the fill
was: the scanner's padding value, below :data:`~LiverTumorSegLib.validation.PADDING_BELOW_HU`, so a liver or lesion
beside the fill counts as cut by the scan's edge (``touches_scan_edge``), as beside a round field of view's padding."""

MIN_PART_MM2 = 100.0
"""A region of one value in one slice counts only from this area (mm^2, 1 cm^2: 200 pixels of a 0.7 mm CT, 11 of a 3
mm one). Noise of 5-30 HU leaves patches of one whole HU value a few pixels wide; a fill covers the slice's edge
beyond the old grid, a band or corner many cm long."""

MIN_EDGE_RUN_MM = 10.0
"""A slice is searched for a value only where it holds that value along at least this much (mm, and 3 pixels) of
its edge without a break: the part of a slice beyond the old grid meets the slice's edge along its whole width, while
noise repeats a whole HU value along the edge for a pixel or two. A noisy body wider than the image (300 slices of 512
x 512) took 3.3 s when every slice whose edge held one of the three values most frequent there was labelled, 0.03 s
with this and :data:`CANDIDATE_VALUES` chosen by repeats."""

MIN_FILL_ML = 10.0
"""A fill counts from this volume (mL; a 2.15 cm cube), or from :data:`MIN_FILL_GRID_FRACTION` of a grid too small to
hold it. A smaller sliver along the grid's edge cannot pass for an organ; the fills that did (above) held hundreds to
thousands of mL."""

MIN_FILL_GRID_FRACTION = 0.05
"""The fraction of the grid's volume from which a fill counts when that is below :data:`MIN_FILL_ML` (a grid under
200 mL: a crop around a lesion)."""

MIN_DISTINCT_TISSUE_VALUES = 30
"""The CT's values above :data:`FILL_ABOVE_HU`, outside the fill, must take at least this many distinct values (in a
sample of :data:`TISSUE_SAMPLE_VOXELS`). A patient's CT holds hundreds to thousands (noise of 5-30 HU over tissue from
fat to bone; one tissue alone at 5 HU of noise spreads over some 30 whole values); a drawn phantom of a few constant
tissues holds a handful. In such an image regions of one value are what it is made of, so one that reaches the edge
(a constant body wider than the image) is no sign of a fill."""

WINDOW_CLIP_FRACTION = 0.001
"""A value with at most this fraction of the CT's other values above :data:`FILL_ABOVE_HU` (in the sample of
:data:`TISSUE_SAMPLE_VOXELS`) below it, or above it, is the bound of a window the CT was clipped to, not a fill. A CT
shared clipped to a window (liver data sets often are, e.g. to -200..250 HU) holds its lower bound exactly in all its
air, outside the body, in the lungs and in bowel gas, over regions that reach the slices' edge (in a crop around the
liver, the lung beside it); read as the scanner's padding, a liver or lesion beside the lung was cut by the scan's
edge. A fill lies among the tissue values: 41-60 % of the shared real CTs' values above -900 HU lie below 0 HU, the
rest above, and of a crop within the contrast-enhanced liver of one (median 93 HU) 0.37 % below 0 HU. The 0.1 % leaves
room for a few voxels beyond the bound (a resampling's interpolation reads the old grid's voxels only)."""

TISSUE_SAMPLE_VOXELS = 2_000_000
"""About how many voxels (evenly strided) are read to count the CT's distinct tissue values."""

CANDIDATE_VALUES = 3
"""How many values (above :data:`FILL_ABOVE_HU`) are tried as a fill: those most often equal to the next pixel along
the slices' edges (a fill repeats along the edge; noise seldom does)."""


@dataclass
class ResamplingFill:
    """A fill found by :func:`find_resampling_fill`: ``mask`` (bool, ``(z, y, x)``, the CT's grid) of the voxels
    read as outside the scan, the ``values`` (HU) they hold exactly, and their ``volume_ml``."""

    mask: np.ndarray
    values: List[float]
    volume_ml: float

    def record(self) -> Dict[str, Any]:
        """The report's ``resampling_fill``: the values (HU), their volume (mL) and what the network read there."""
        return {"values_hu": list(self.values), "volume_ml": round(self.volume_ml, 1), "read_as_hu": OUTSIDE_SCAN_HU}


def _edge_values(hu: np.ndarray) -> np.ndarray:
    """The voxels on the first and last row and column of every slice of ``hu`` (``(z, y, x)``), one row per slice:
    each side's pixels in order (first row, last row, first column, last column; the corners on the rows)."""
    rows, columns = hu[:, [0, -1], :], hu[:, 1:-1, :][:, :, [0, -1]].transpose(0, 2, 1)
    return np.concatenate([rows.reshape(hu.shape[0], -1), columns.reshape(hu.shape[0], -1)], axis=1)


def _candidate_values(edges: np.ndarray) -> List[Any]:
    """The (at most :data:`CANDIDATE_VALUES`) values above :data:`FILL_ABOVE_HU` most often equal to the next pixel
    of ``edges`` (:func:`_edge_values`), most often first, in the CT's own dtype (compared bit for bit)."""
    repeated = edges[:, 1:][edges[:, 1:] == edges[:, :-1]]  # NaN never equals itself
    values = repeated[repeated > FILL_ABOVE_HU]
    if values.size == 0:
        return []
    unique, counts = np.unique(values, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:CANDIDATE_VALUES]
    return [unique[i] for i in order]


def _slices_with_edge_run(edges: np.ndarray, value: Any, run_px: int) -> np.ndarray:
    """Indices of the slices whose ``edges`` (:func:`_edge_values`) hold ``value`` on ``run_px`` pixels in a row."""
    if run_px > edges.shape[1]:
        return np.zeros(0, dtype=int)
    counts = np.zeros((edges.shape[0], edges.shape[1] + 1), dtype=np.int32)
    np.cumsum(edges == value, axis=1, out=counts[:, 1:])
    return np.nonzero(((counts[:, run_px:] - counts[:, :-run_px]) == run_px).any(axis=1))[0]


def _edge_regions(plane: np.ndarray, pixel_mm2: float) -> Optional[np.ndarray]:
    """The pixels of ``plane`` (bool, one slice) in its parts of at least :data:`MIN_PART_MM2` that reach the slice's
    edge (4-neighbour parts), or None when there are none."""
    from scipy import ndimage

    parts, count = ndimage.label(plane)
    if count == 0:
        return None
    on_edge = np.unique(np.concatenate([parts[0], parts[-1], parts[:, 0], parts[:, -1]]))
    on_edge = on_edge[on_edge > 0]
    sizes = np.bincount(parts.ravel(), minlength=count + 1)
    large = on_edge[sizes[on_edge] * pixel_mm2 >= MIN_PART_MM2]
    return np.isin(parts, large) if large.size else None


def _value_fill(hu: np.ndarray, value: Any, slices: np.ndarray, pixel_mm2: float) -> Dict[int, np.ndarray]:
    """Slice index -> pixels of that slice holding exactly ``value`` in large parts that reach its edge, for the
    slices listed in ``slices`` (those whose edge holds a run of the value)."""
    found = {}
    for z in slices:
        region = _edge_regions(hu[z] == value, pixel_mm2)
        if region is not None:
            found[int(z)] = region
    return found


def _tissue_sample(hu: np.ndarray) -> np.ndarray:
    """``hu``'s values above :data:`FILL_ABOVE_HU` in an evenly strided sample of about :data:`TISSUE_SAMPLE_VOXELS`
    voxels (1-D; NaN left out)."""
    step = max(1, int(np.ceil((hu.size / TISSUE_SAMPLE_VOXELS) ** (1.0 / 3.0))))
    sample = hu[::step, ::step, ::step].ravel()
    return sample[sample > FILL_ABOVE_HU]


def _is_window_clip(tissue: np.ndarray, value: Any) -> bool:
    """True when at most :data:`WINDOW_CLIP_FRACTION` of the ``tissue`` values (:func:`_tissue_sample`) other than
    ``value`` lie below ``value``, or above it: the bound of a window the CT was clipped to."""
    others = tissue[tissue != value]
    below = int(np.count_nonzero(others < value))
    return others.size > 0 and min(below, others.size - below) <= WINDOW_CLIP_FRACTION * others.size


def _is_measured(tissue: np.ndarray, fill_values: List[Any]) -> bool:
    """True when the ``tissue`` values (:func:`_tissue_sample`) other than ``fill_values`` take at least
    :data:`MIN_DISTINCT_TISSUE_VALUES` distinct values: a measured CT, not a drawn one."""
    return np.unique(tissue[~np.isin(tissue, fill_values)]).size >= MIN_DISTINCT_TISSUE_VALUES


def find_resampling_fill(hu_zyx: np.ndarray, geometry: ImageGeometry) -> Optional[ResamplingFill]:
    """The fill a resampling left outside the original field of view of a CT ``hu_zyx`` (``(z, y, x)`` HU on
    ``geometry``), or None.

    A fill is a value above :data:`FILL_ABOVE_HU` (air and the scanner's padding are read as outside the body
    already) held bit for bit by parts of slices of at least :data:`MIN_PART_MM2` that reach the slice's edge, in all
    at least :data:`MIN_FILL_ML` (or :data:`MIN_FILL_GRID_FRACTION` of a small grid; searched in the slices whose edge
    holds a run of the value, :data:`MIN_EDGE_RUN_MM`), in a CT whose other tissue values are those of a measurement
    (:data:`MIN_DISTINCT_TISSUE_VALUES`), and which lies among them, not at their bottom or top (the bound of a window
    the CT was clipped to, :data:`WINDOW_CLIP_FRACTION`). The part of a slice beyond the old grid reaches the slice's edge wherever
    the slice crosses the old grid's box (what lies outside a convex region reaches the edge), so the slices are
    searched one by one. A few ms for a CT without a fill; 0.8-1.7 s for 300 slices of 512 x 512 with one in each slice
    (measured on one core).

    The slices searched are the CT's axial ones, whatever its storage order: a coronally stored CT was searched along
    its stored slices, which found 560 fill voxels fewer than the canonical search the training cache makes, so
    segment and training gave the network different values there, up to 1024 HU (the train/infer audit). The mask
    is on the CT's own grid."""
    hu = np.asarray(hu_zyx)
    if hu.ndim != 3 or min(hu.shape) < 1 or hu.dtype.kind not in "iuf":
        return None
    from ..orientation import plan_reorientation

    plan = plan_reorientation(geometry, hu.shape)
    if plan.source_axis[0] == 0:  # the stored slices are the axial ones (flipped or turned in-plane: the same
        return _find_in_axial_slices(hu, geometry)  # slices, searched one by one; a strided view was 5x slower)
    found = _find_in_axial_slices(plan.canonical_view(hu), plan.canonical_geometry)
    return None if found is None else ResamplingFill(mask=plan.from_canonical(found.mask), values=found.values,
                                                     volume_ml=found.volume_ml)


def _find_in_axial_slices(hu: np.ndarray, geometry: ImageGeometry) -> Optional[ResamplingFill]:
    """:func:`find_resampling_fill` of a CT laid out canonically (``(z, y, x)``, z the slices nearest axial)."""
    if hu.shape[1] < 3 or hu.shape[2] < 3:
        return None
    sx, sy, sz = (float(s) for s in geometry.spacing)
    pixel_mm2, voxel_ml = sx * sy, sx * sy * sz / 1000.0
    needed_ml = min(MIN_FILL_ML, MIN_FILL_GRID_FRACTION * hu.size * voxel_ml)
    run_px = max(3, int(np.ceil(MIN_EDGE_RUN_MM / max(sx, sy))))
    edges = _edge_values(hu)
    found = {}  # type: Dict[Any, Dict[int, np.ndarray]]
    for value in _candidate_values(edges):
        slices = _slices_with_edge_run(edges, value, run_px)
        regions = _value_fill(hu, value, slices, pixel_mm2)
        if sum(int(region.sum()) for region in regions.values()) * voxel_ml >= needed_ml:
            found[value] = regions
    if not found:
        return None
    tissue = _tissue_sample(hu)
    found = {value: regions for value, regions in found.items() if not _is_window_clip(tissue, value)}
    if not found or not _is_measured(tissue, list(found)):
        return None
    mask = np.zeros(hu.shape, dtype=bool)
    for regions in found.values():
        for z, region in regions.items():
            mask[z] |= region
    values = sorted(float(value) for value in found)
    return ResamplingFill(mask=mask, values=values, volume_ml=float(mask.sum()) * voxel_ml)


def fill_replaced(volume: CTVolume, hu: float = OUTSIDE_SCAN_HU) -> Tuple[CTVolume, Optional[ResamplingFill]]:
    """``(volume with hu in its resampling's fill, the fill)``: :func:`find_resampling_fill` of ``volume`` (a CT in HU,
    ``(z, y, x)``) and, where one is found, :func:`without_fill` (a copy; ``volume`` untouched) with ``hu``
    (:data:`OUTSIDE_SCAN_HU` for the network, :data:`READ_AS_PADDING_HU` for the checks); ``(volume, None)`` where
    none is."""
    fill = find_resampling_fill(volume.array, volume.geometry)
    return (volume, None) if fill is None else (without_fill(volume, fill.mask, hu), fill)


def find_straight_air_fill(hu_zyx: np.ndarray, geometry: ImageGeometry) -> Optional[np.ndarray]:
    """The voxels (bool, ``(z, y, x)``) of a resampling's fill written with air's value (-1024) beyond a straight
    line, or None where no axial slice of ``hu_zyx`` (HU on ``geometry``) holds one: in each axial slice, the regions
    of its lowest value (below :data:`~.body_size.BODY_HU`; in a slice holding the scanner's padding, below
    :data:`~LiverTumorSegLib.validation.PADDING_BELOW_HU`, -1024 exactly: :func:`~.body_size.straight_fill_value`)
    that reach its edge and border the rest along a straight
    line (:func:`~.body_size.straight_air_fill`, the rule by which the lesion report reads a lesion beside such a
    fill as cut by the scan's edge), at least :data:`MIN_PART_MM2` in a slice and :data:`MIN_FILL_ML` in all
    (or :data:`MIN_FILL_GRID_FRACTION` of a small grid), as a fill :func:`find_resampling_fill` finds: the rule alone
    took edge slivers of real air clipped at -1024 (0.11 mL in one slice of the shared 20-slice CT, 0.03 mL of the
    3-slice CT clipped at -1024). :func:`find_resampling_fill` leaves such a fill alone (int16 CTs hold real air
    at -1024, and the network reads it as air already); ``followup`` reads it as outside the scan. 0.3 s for the
    shared 20-slice CT of 512 x 512, as stored or clipped at -1024 (16 ms a slice, about 5 s for 300; one core, 29 Nov
    2026); a slice whose edge does not hold the value the rule reads is skipped
    (:func:`_slices_with_fill_value_at_edge`)."""
    from ..metrics.recist import axial_axis_zyx
    from .body_size import straight_air_fill

    hu = np.asarray(hu_zyx)
    if hu.ndim != 3 or hu.dtype.kind not in "iuf" or min(hu.shape) < 1:
        return None
    axis = axial_axis_zyx(geometry)
    pixel_spacing_mm = tuple(float(geometry.spacing[2 - a]) for a in range(3) if a != axis)  # (rows, columns)
    pixel_mm2, voxel_ml = pixel_spacing_mm[0] * pixel_spacing_mm[1], float(np.prod(geometry.spacing)) / 1000.0
    mask = np.zeros(hu.shape, dtype=bool)
    for k in _slices_with_fill_value_at_edge(np.moveaxis(hu, axis, 0), pixel_spacing_mm):
        index = tuple(int(k) if a == axis else slice(None) for a in range(3))
        found = straight_air_fill(hu[index], pixel_spacing_mm)
        if found.sum() * pixel_mm2 >= MIN_PART_MM2:
            mask[index] = found
    needed_ml = min(MIN_FILL_ML, MIN_FILL_GRID_FRACTION * hu.size * voxel_ml)
    return mask if mask.any() and mask.sum() * voxel_ml >= needed_ml else None


def _slices_with_fill_value_at_edge(hu_planes: np.ndarray, pixel_spacing_mm: Tuple[float, float]) -> np.ndarray:
    """Indices of the planes of ``hu_planes`` (HU, planes along the first axis; ``pixel_spacing_mm`` their (row,
    column) pixel size) whose edge holds the value the straight-fill rule reads
    (:func:`~.body_size.straight_fill_value`), as the rule reads only the regions of that value that reach the edge:
    a plane's lowest value, held by a pixel of its edge; in a plane holding the scanner's padding (below
    :data:`~LiverTumorSegLib.validation.PADDING_BELOW_HU`), -1024 (:data:`~.body_size.AIR_FILL_HU`) along
    :data:`MIN_EDGE_RUN_MM` of its edge without a break (a fill beyond the old grid covers the edge beyond it; noisy
    air inside a round field of view that reaches the edge holds -1024 on a pixel or two). The other planes hold no
    fill."""
    from .body_size import AIR_FILL_HU

    lowest = hu_planes.min(axis=(1, 2))
    edge_lowest = np.minimum(np.minimum(hu_planes[:, 0, :].min(axis=1), hu_planes[:, -1, :].min(axis=1)),
                             np.minimum(hu_planes[:, :, 0].min(axis=1), hu_planes[:, :, -1].min(axis=1)))
    unpadded = (lowest >= PADDING_BELOW_HU) & (edge_lowest == lowest)
    padded = np.nonzero(lowest < PADDING_BELOW_HU)[0]
    if padded.size == 0:
        return np.nonzero(unpadded)[0]
    run_px = max(3, int(np.ceil(MIN_EDGE_RUN_MM / max(pixel_spacing_mm))))
    with_run = padded[_slices_with_edge_run(_edge_values(hu_planes)[padded], AIR_FILL_HU, run_px)]
    unpadded[with_run] = True
    return np.nonzero(unpadded)[0]


def straight_air_fill_warning(hu_zyx: np.ndarray, mask: np.ndarray, geometry: ImageGeometry) -> str:
    """The warning for a fill :func:`find_straight_air_fill` found (``mask``) in ``hu_zyx``, read as outside the
    scan by a command without a network (``followup``)."""
    values = np.unique(np.asarray(hu_zyx)[mask])
    shown = " and ".join(f"{float(v):g}" for v in values[:3]) + (" ..." if values.size > 3 else "")
    volume_ml = float(mask.sum()) * float(np.prod(geometry.spacing)) / 1000.0
    return (f"{volume_ml:.0f} mL of the CT hold exactly {shown} HU (the lowest value of their slices but for the "
            f"scanner's padding) beyond a straight line that reaches the edge of its slices: a resampling's fill "
            f"outside the original field of view. They were read as outside the scan, as the scanner's padding (a lesion beside them is cut by the "
            f"scan's edge, as segment's lesion report reads it). Give the CT as scanned, or resample it with a fill "
            f"below {PADDING_BELOW_HU:g} HU (the scanner's padding value), which reads the same way without a guess.")


def _outside_scan_value(dtype: np.dtype, hu: float) -> Any:
    """``hu`` in ``dtype`` when it holds it, else None (the copy is then made float32)."""
    if dtype.kind == "f":
        return dtype.type(hu)
    info = np.iinfo(dtype)
    return dtype.type(hu) if info.min <= hu <= info.max else None


def fill_copy_bytes(array: np.ndarray, hu: float = OUTSIDE_SCAN_HU) -> int:
    """Bytes of the copy :func:`without_fill` makes of a CT ``array`` (float32 for a dtype that cannot hold ``hu``)."""
    array = np.asarray(array)
    return int(array.nbytes) if _outside_scan_value(array.dtype, hu) is not None else int(array.size) * 4


def without_fill(volume: CTVolume, mask: np.ndarray, hu: float = OUTSIDE_SCAN_HU) -> CTVolume:
    """A copy of ``volume`` (same geometry, source and meta; ``volume`` itself untouched) with ``hu`` where ``mask``
    (a :class:`ResamplingFill`'s, bool ``(z, y, x)``) is set: :data:`OUTSIDE_SCAN_HU` for the network,
    :data:`READ_AS_PADDING_HU` for the checks after it. A dtype that cannot hold it (unsigned) is copied as float32."""
    array = np.asarray(volume.array)
    value = _outside_scan_value(array.dtype, hu)
    cleaned = array.copy() if value is not None else array.astype(np.float32)
    cleaned[mask] = hu if value is None else value
    return CTVolume(cleaned, volume.geometry, source=volume.source, meta=volume.meta)


def resampling_fill_warning(record: Optional[Dict[str, Any]], for_network: bool = True) -> Optional[str]:
    """The warning for the report's ``resampling_fill`` record (:meth:`ResamplingFill.record`), or None for none.
    ``for_network``: ``segment``'s words (the network got air there); False: a CT read without a network
    (``measure --ct``, ``followup``), where the fill was read as the scanner's padding."""
    if not record:
        return None
    values = " and ".join(f"{value:g}" for value in record["values_hu"])
    found = (f"{record['volume_ml']:.0f} mL of the CT hold exactly {values} HU in regions that reach the edge of its "
             f"slices: a fill, as a resampling puts outside the original field of view (SimpleITK's and Slicer's "
             f"default fill is 0 HU) or a mask outside the body")
    if not for_network:
        return (f"{found}. They were read as outside the scan, as the scanner's padding (a lesion beside them is cut "
                f"by the scan's edge). Give the CT as scanned, or resample it with a fill below {PADDING_BELOW_HU:g} HU "
                f"(the scanner's padding value), which reads the same way.")
    return (f"{found}, which the network would read as tissue. They were read as outside the scan (air, "
            f"{OUTSIDE_SCAN_HU:g} HU, to the network; no liver or tumor labelled there). Resample (or mask) with a fill "
            f"of {OUTSIDE_SCAN_HU:g} HU (or the scanner's padding value, below {PADDING_BELOW_HU:g} HU) to avoid this.")
