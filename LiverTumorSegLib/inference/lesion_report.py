"""Lesion report from a label map: per-lesion volume, RECIST-style long and short axes, centroid, mean HU
(and mean tumor probability); liver volume, tumor burden and the RECIST 1.1 target lesions. Written as JSON
or CSV.

Input: ``labels (z, y, x)`` uint8 (0 bg, 1 liver, 2 tumor) with its :class:`ImageGeometry` (any
orientation, also oblique), optionally the CT ``(z, y, x)`` in HU and a tumor probability map ``(z, y, x)``
on the same grid.

Definitions
-----------
* Lesion: a 26-connected component of label 2. Lesions are numbered 1.. by decreasing volume, equal
  volumes by position (superior first, then right, then anterior) (:func:`lesion_components`). RECIST
  targets are chosen by long axis, so the longest lesion need not be lesion 1.
* ``volume_ml``: voxel count x voxel volume.
* ``long_axis_mm`` / ``short_axis_mm`` and their end points ``long_axis`` / ``short_axis``
  (``end_points_lps_mm``, ``end_points_ras_mm``): RECIST-style axes in the axial slice where the lesion is
  longest, see :mod:`LiverTumorSegLib.metrics.recist` (the largest voxel-centre distance plus one pixel spacing
  along it, in mm). ``longest_axial_diameter_mm`` (kept for older readers) is the long axis between voxel
  centres, i.e. ``long_axis_mm`` less that pixel spacing (a sphere of radius r gives about 2r minus up to one
  voxel).
* ``recist_target``: the lesion is one of the RECIST 1.1 target lesions (at most 2 measurable lesions,
  long axis >= 10 mm or twice the slice thickness above 5 mm, largest first, none cut by the scan's edge and none
  with ``axial_axes_limited_by_slices`` (axes that move with the scan range or the reconstruction are not
  reproducible, which RECIST 1.1 asks of a target), lesions of water density only after all others); report-level
  ``recist`` holds ``target_lesion_ids``,
  ``sum_of_diameters_mm``, ``measurable_minimum_mm``, ``slice_thickness_mm``, ``slice_thickness_source``,
  ``axial_slice_thickness_mm`` (the thickness the minimum doubles: ``slice_thickness_mm``, or on slices tilted more
  than 5 degrees, whose lesions are measured in true axial planes, what they cover along S,
  :func:`~LiverTumorSegLib.metrics.recist.axial_slice_thickness_mm`) and
  ``water_density_passed_over_ids`` (the lesions that the long axis alone would have chosen, passed over as of water
  density). The slice thickness is the one the user gave (``--slice-thickness-mm``, the Slicer panel's DICOM
  SliceThickness: source ``"given"``), else the DICOM SliceThickness where the CT was read from DICOM (``"dicom"``),
  else a DICOM SEG label map's own (its Pixel Measures: ``"dicom_seg"``), else the spacing between slices (``"slice spacing"``: NIfTI and NRRD record no thickness), see
  :func:`~LiverTumorSegLib.metrics.recist.recist_slice_thickness`.
* ``centroid_lps_mm`` / ``centroid_ras_mm``: mean voxel-centre position, patient LPS (DICOM/ITK) and RAS
  (Slicer/NIfTI; x and y negated) in mm.
* ``axial_position_s_mm``: the S (superior, RAS = LPS z) coordinate of the axial slice where the long axis was
  measured, the number Slicer's axial slice slider and a PACS show for that slice, so a reader can go to it (a
  tilted slice has no single S: there, the mean S of the long axis' end points, its middle).
* ``touches_scan_edge``: the lesion reaches the first or last voxel of the scan along some axis, or, with a CT, lies on
  or beside (a face neighbour; any neighbour on a grid turned from the patient's axes) the scanner's padding outside its
  circular field of view (CT values below -1500: -3024, -2048, -2000, ...; or written with air's value, -1024) or a
  resampling's fill of air's value beyond a straight line (the body-size check's rules,
  :func:`~.body_size.outside_scan_pixels`): cut by the field of view, so its volume and axes are lower bounds. Not
  chosen as a RECIST target.
* ``axial_axes_limited_by_slices``: null, or, for a lesion on too few slices of a grid tilted from axial whose axes
  in true axial planes are capped by its slices' faces, ``slices``, ``slice_spacing_mm``, ``tilt_degrees``,
  ``limit_mm`` and its axes in the stored slices (:func:`~LiverTumorSegLib.metrics.recist.lesion_axes`). Not chosen
  as a RECIST target; the CSV's ``axial_axes_limit_mm`` holds its ``limit_mm`` (empty when null).
* ``mean_hu``: mean CT value in the lesion, the scanner's padding left out (None without a CT, or with nothing but
  padding); ``median_hu``: median CT value of the lesion's core (:mod:`.water_density`); ``water_density``: the
  lesion has the CT values of water (a simple cyst, or a necrotic or cystic tumor; None without a CT in HU);
  ``contrast_to_liver_hu``: median CT value of all the lesion's voxels minus that of the liver (label 1) more than 2
  and at most 6 mm outside it (HU; negative: darker than the liver; None without a CT in HU, or with fewer than 20
  such liver voxels: a lesion at the liver's edge or outside it), reported only, see :mod:`.water_density`;
  ``mean_tumor_probability``: mean of the
  tumor probability map in the lesion (only when a map is given; floats in [0, 1], or integers 0..255 =
  255 x probability as ``segment --probabilities`` writes), over the lesion's voxels the network labelled tumor
  when its labels are given (``segment``: a core the hole fill made tumor does not dilute it), else, and for a
  lesion without such a voxel, over the whole lesion; the post-processing's uncertain-lesion rule reads the same
  number (``postprocess.component_mean_probability``); ``peak_tumor_probability``: the largest value of the map over
  the same voxels (``postprocess.component_peak_probability``; what the rule reads for a model whose package records
  the ``peak`` statistic).
* ``liver_volume_ml``: label >= 1 (liver including tumors, LiTS convention);
  ``tumor_burden_percent`` = tumor volume / liver volume x 100.

CSV: one row per lesion, a plain header line first (no ``#`` comment lines, which many CSV readers
reject); the case-level numbers (liver volume, burden, RECIST sum of diameters) and run facts (input,
model, ...) are extra columns repeated on every row. A case without lesions gets one row whose lesion
columns are empty.
"""
import csv
import io as _io
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError
from ..fileutil import atomic_output, finite_json, full_suffix, spreadsheet_safe_text
from ..metrics.recist import (RECIST_MIN_LONG_AXIS_MM, RECIST_NOTE, axial_axis_zyx,  # noqa: F401
                              places_short_of,
                              axial_slice_thickness_mm, farthest_pair, hull_vertices_2d, lesion_axes,
                              measurable_minimum_mm, recist_slice_thickness, select_target_lesions)
from ..volume import ImageGeometry, checked_geometry

LESION_COLUMNS = ["id", "volume_ml", "voxel_count", "long_axis_mm", "short_axis_mm", "recist_target", "mean_hu",
                  "mean_tumor_probability", "peak_tumor_probability", "axial_position_s_mm", "touches_scan_edge",
                  "median_hu", "water_density",
                  "contrast_to_liver_hu", "axial_axes_limit_mm",
                  "centroid_lps_x_mm", "centroid_lps_y_mm", "centroid_lps_z_mm",
                  "centroid_ras_x_mm", "centroid_ras_y_mm", "centroid_ras_z_mm",
                  "long_axis_ras_a_x_mm", "long_axis_ras_a_y_mm", "long_axis_ras_a_z_mm",
                  "long_axis_ras_b_x_mm", "long_axis_ras_b_y_mm", "long_axis_ras_b_z_mm",
                  "short_axis_ras_a_x_mm", "short_axis_ras_a_y_mm", "short_axis_ras_a_z_mm",
                  "short_axis_ras_b_x_mm", "short_axis_ras_b_y_mm", "short_axis_ras_b_z_mm"]
REPORT_VERSION = 2
"""Version of the report's layout (docs/report_format.md): raised when a key changes meaning or goes away."""
CASE_COLUMNS = ["liver_volume_ml", "tumor_volume_ml", "tumor_burden_percent", "lesion_count",
                "recist_sum_of_diameters_mm"]
CSV_COLUMNS = LESION_COLUMNS + CASE_COLUMNS  # then one column per scalar run fact (input, model, ...)


def max_pairwise_distance(points: np.ndarray) -> float:
    """Largest Euclidean distance among rows of ``points`` ``(n, d)``, using the convex hull when large."""
    if len(points) < 2:
        return 0.0
    if len(points) > 64:
        try:
            from scipy.spatial import ConvexHull

            points = points[ConvexHull(points).vertices]
        except Exception:  # noqa: BLE001 - collinear/degenerate sets: all points are fine
            pass
    return farthest_pair(points)[2]


def longest_axial_diameter_mm(mask_zyx: np.ndarray, geometry: ImageGeometry) -> float:
    """Longest in-slice voxel-centre distance (mm) of a boolean lesion mask ``(z, y, x)`` over axial slices: the
    stored slices nearest to axial, or on a grid tilted more than
    :data:`~LiverTumorSegLib.metrics.recist.AXIAL_PLANES_TILT_DEGREES` from axial true axial planes, as the report's
    ``longest_axial_diameter_mm`` (:func:`~LiverTumorSegLib.metrics.recist.lesion_axes`; the tilted slices read a
    30 x 20 mm ellipsoid tilted 45 degrees about P 19.4 mm here, 30.0 mm in the report)."""
    from ..metrics.recist import AXIAL_PLANES_TILT_DEGREES
    from ..validation import slice_tilt_degrees

    if slice_tilt_degrees(geometry.direction_matrix) > AXIAL_PLANES_TILT_DEGREES and np.any(mask_zyx):
        return float(lesion_axes(np.asarray(mask_zyx, dtype=bool), geometry)["long_axis_voxel_centres_mm"])
    axis = axial_axis_zyx(geometry)
    scaled = geometry.direction_matrix @ np.diag(geometry.spacing)  # columns: mm per index step (i, j, k)
    best = 0.0
    indices = np.nonzero(mask_zyx)
    slice_values = indices[axis]
    in_plane = [a for a in range(3) if a != axis]
    for value in np.unique(slice_values):
        sel = slice_values == value
        kji = np.stack([idx[sel] for idx in indices], axis=1).astype(np.float64)  # (n, 3) as (k, j, i)
        kji = kji[hull_vertices_2d(kji[:, in_plane])]
        mm = kji[:, ::-1] @ scaled.T  # physical offsets (same slice -> in-plane distances are exact)
        best = max(best, max_pairwise_distance(mm))
    return best


def lesion_components(labels_zyx: np.ndarray, geometry: Optional[ImageGeometry] = None) -> Tuple[np.ndarray, int]:
    """``(ids (z, y, x) int32, count)``: 26-connected components of label 2 numbered 1..count by decreasing
    voxel count, 0 elsewhere. Equal sizes: with ``geometry``, by position (superior first, then patient right
    first, then anterior first), so the numbers do not depend on how the file is stored; without it, scan
    order. The report's lesion ``id`` is this number (:func:`lesion_report` passes its geometry)."""
    from ..io.labels import as_label_array
    labels_zyx = as_label_array(labels_zyx, "labels_zyx given to lesion_components")
    ids = np.zeros(np.shape(labels_zyx), dtype=np.int32)
    box_ids, count, box = _lesion_components_in_box(labels_zyx, geometry)
    if box is not None:
        ids[box] = box_ids
    return ids, count


def _lesion_components_in_box(labels_zyx: np.ndarray, geometry: Optional[ImageGeometry] = None
                              ) -> Tuple[Optional[np.ndarray], int, Optional[Tuple[slice, ...]]]:
    """:func:`lesion_components` inside the tumors' bounding box only: ``(ids of the box, count, box)``, or
    ``(None, 0, None)`` without tumor. The same components, numbered in the same order (a constant offset
    keeps (z, y, x) order), without a pass over a whole 500 x 512 x 512 volume."""
    from scipy import ndimage

    from ..metrics.surface import value_bounding_box

    labels_zyx = np.asarray(labels_zyx)
    box = value_bounding_box(labels_zyx, 2)  # no whole-volume mask labels == 2 beside the map
    if box is None:
        return None, 0, None
    from .postprocess import label_counts

    components, count = ndimage.label(labels_zyx[box] == 2, structure=np.ones((3, 3, 3), dtype=bool))
    sizes = label_counts(components, count)[1:]  # in slabs: np.bincount's int64 copy of a liver-wide box (the memory audit)
    if geometry is None or count < 2:
        order = np.argsort(-sizes, kind="stable")  # old number order[n] becomes n + 1
    else:
        where = np.nonzero(components)  # the tumor voxels only (center_of_mass walked the whole box: 1.8 s)
        ids = components[where]
        centres = np.stack([np.bincount(ids, weights=w.astype(np.float64), minlength=count + 1)[1:] for w in where],
                           axis=1) / np.maximum(sizes, 1)[:, None] + [b.start for b in box]
        lps = np.round(np.asarray([geometry.index_to_lps(c[::-1]) for c in centres]), 3)
        # last key first: size, then superior (S = LPS z, larger first), right (L smaller), anterior (P smaller)
        order = np.lexsort((lps[:, 1], lps[:, 0], -lps[:, 2], -sizes))
    relabel = np.zeros(count + 1, dtype=np.int32)
    relabel[order + 1] = np.arange(1, count + 1, dtype=np.int32)
    return relabel[components], int(count), box


def _check_probability_range(probability: Optional[np.ndarray]) -> None:
    """Refuse a float map outside 0..1 (+-1e-6, as ``io.probability.probability_scores`` reads maps) or with
    NaN/Inf, and an integer map outside 0..255, once for the whole map: a float copy of the 0..255 map reported a
    mean probability of 255.0, an int16 map of 600 one of 2.35."""
    if probability is None or not np.size(probability) or np.asarray(probability).dtype == np.uint8:
        return  # uint8 (segment's own map) is 0..255 by its type: no pass over the volume
    low, high = float(np.min(probability)), float(np.max(probability))
    if np.issubdtype(np.asarray(probability).dtype, np.integer):
        if low < 0 or high > 255:
            raise InputError(f"An integer tumor probability map must hold 0..255 (255 x probability, as segment "
                             f"--probabilities writes it; got {low:g}..{high:g}); give floats in 0..1 otherwise.")
        return
    if not (np.isfinite(low) and np.isfinite(high)) or low < -1e-6 or high > 1.0 + 1e-6:
        raise InputError(f"A float tumor probability map must hold finite values in 0..1 (got {low:g}..{high:g}); "
                         f"give the uint8 map (255 = 1.0) as it is, or divide it by 255.")


def _check_same_shape(array: Optional[np.ndarray], labels_zyx: np.ndarray, what: str) -> None:
    if array is not None and tuple(array.shape) != tuple(labels_zyx.shape):
        raise InputError(f"{what} shape {tuple(array.shape)} does not match the label map's "
                         f"{tuple(labels_zyx.shape)} (z, y, x); give it on the label map's grid.")


def _mean_hu(values: np.ndarray) -> Optional[float]:
    """Mean CT value (HU) of a lesion's voxels, the scanner's padding outside its field of view (below
    :data:`~LiverTumorSegLib.validation.PADDING_BELOW_HU`) left out: no tissue lies there, and a hand-drawn lesion
    reaching it read -471 HU for a 40 HU lesion. None when every voxel is padding."""
    from ..validation import PADDING_BELOW_HU

    tissue = values[values >= PADDING_BELOW_HU]
    return float(tissue.astype(np.float64).mean()) if tissue.size else None


def _density(hu_zyx: Optional[np.ndarray], labels_zyx: np.ndarray, mask: np.ndarray, box: Tuple[slice, ...],
             geometry: ImageGeometry, in_hu: bool) -> Dict[str, Any]:
    """``median_hu`` (None without a CT), ``water_density`` and ``contrast_to_liver_hu`` (both None without a CT in
    HU) of one lesion (``mask`` within ``box``), see :mod:`.water_density`."""
    if hu_zyx is None:
        return {"median_hu": None, "water_density": None, "contrast_to_liver_hu": None}
    from .water_density import lesion_water_density

    density = lesion_water_density(hu_zyx, labels_zyx, mask, box, tuple(geometry.spacing)[::-1])
    return {"median_hu": density["median_hu"], "water_density": density["water_density"] if in_hu else None,
            "contrast_to_liver_hu": density["contrast_to_liver_hu"] if in_hu else None}


def padding_neighbourhood(geometry: Optional[ImageGeometry]) -> np.ndarray:
    """The ``(3, 3, 3)`` structure of the voxels beside a lesion that are read for padding: the face neighbours, or,
    on a grid turned more than :data:`~LiverTumorSegLib.metrics.recist.AXIAL_PLANES_TILT_DEGREES` against the
    patient's axes (:func:`~LiverTumorSegLib.orientation.obliquity_degrees`: tilted, or turned in-plane), every
    neighbour. A resampling's fill beyond the old grid is a staircase of voxels on a turned grid, and the network's
    lesion stops one diagonal step short of it: a lesion the scan's top cut, on a CT turned 20 degrees with a -3024
    fill, was reported whole (4.6 of 5.3 mL) and chosen as a RECIST target, where the same scan axial flagged it (the
    oblique-grid audit; a grid turned about S leaves the staircase in-plane, the review)."""
    from scipy import ndimage

    from ..metrics.recist import AXIAL_PLANES_TILT_DEGREES
    from ..orientation import obliquity_degrees

    turned = geometry is not None and obliquity_degrees(geometry.direction_matrix) > AXIAL_PLANES_TILT_DEGREES
    return ndimage.generate_binary_structure(3, 3 if turned else 1)


def _borders_scanner_padding(mask: np.ndarray, box: Tuple[slice, ...], hu_zyx: Optional[np.ndarray],
                             geometry: Optional[ImageGeometry] = None,
                             fill_by_slice: Optional[Dict[int, np.ndarray]] = None) -> bool:
    """True when the lesion ``mask`` (``(z, y, x)``, the part of the volume in ``box``) lies on or beside (a face
    neighbour; any neighbour on a grid turned against the patient's axes, :func:`padding_neighbourhood`) a CT voxel below
    :data:`~LiverTumorSegLib.validation.PADDING_BELOW_HU`: the scanner's padding outside its circular field of view
    (-3024, -2048, -2000, ...), which cuts the lesion as the array's edge would; or, with ``geometry``, beside such
    padding written with air's value (-1024): a round field of view's, or a resampling's fill beyond a straight line
    (:func:`_borders_air_valued_padding`). False without a CT."""
    if hu_zyx is None:
        return False
    from scipy import ndimage

    from ..validation import PADDING_BELOW_HU
    grown = tuple(slice(max(b.start - 1, 0), min(b.stop + 1, n)) for b, n in zip(box, np.shape(hu_zyx)))
    placed = np.zeros(tuple(g.stop - g.start for g in grown), dtype=bool)
    placed[tuple(slice(b.start - g.start, b.stop - g.start) for b, g in zip(box, grown))] = mask
    beside = ndimage.binary_dilation(placed, structure=padding_neighbourhood(geometry))
    values = np.asarray(hu_zyx)[grown]
    if (values[beside] < PADDING_BELOW_HU).any():
        return True
    if geometry is None:
        return False
    return _borders_air_valued_padding(beside, grown, hu_zyx, geometry,
                                      {} if fill_by_slice is None else fill_by_slice)


def _borders_air_valued_padding(beside: np.ndarray, grown: Tuple[slice, ...], hu_zyx: np.ndarray,
                                geometry: ImageGeometry, fill_by_slice: Dict[int, np.ndarray]) -> bool:
    """True when a voxel ``beside`` a lesion (``(z, y, x)`` mask of the part ``grown`` of ``hu_zyx``) lies outside the
    scan where that is written with air's value: in its axial slice, a region of the slice's lowest value (below
    :data:`~.body_size.BODY_HU`; in a slice holding the scanner's padding, -1024: :func:`~.body_size.straight_fill_value`)
    that is a round field of view's padding or a resampling's fill beyond a straight line
    (:func:`~.body_size.outside_scan_pixels`, the body-size check's rule, here on every pixel). A round field of view
    padded with -1024 (many scanners' exports, and any CT clipped at -1024 as LiTS and nnU-Net pipelines do) cut a
    lesion that was reported whole and chosen as a RECIST target (the lesion audit); a CT resampled onto a turned grid
    with a -1024 fill (no fill :mod:`.resampling_fill` looks for, since int16 CTs hold real air at -1024) cuts one as
    the array's edge would. Only the slices where an air voxel beside the lesion holds the value that rule reads are
    read (whole slices, cached in ``fill_by_slice`` by slice index: lesions share them)."""
    from .body_size import BODY_HU, outside_scan_pixels, straight_fill_value

    hu = np.asarray(hu_zyx)
    values = hu[grown]
    axis = axial_axis_zyx(geometry)
    pixel_spacing_mm = tuple(geometry.spacing[2 - a] for a in range(3) if a != axis)  # (rows, columns)
    for local in np.unique(np.nonzero(beside & (values < BODY_HU))[axis]):
        k = int(local) + grown[axis].start
        plane = np.take(hu, k, axis=axis)
        beside_here = np.take(beside, int(local), axis=axis)
        in_plane = tuple(g for a, g in enumerate(grown) if a != axis)
        fill_value = straight_fill_value(plane)
        if fill_value is None or not (np.take(values, int(local), axis=axis)[beside_here] == fill_value).any():
            continue
        if k not in fill_by_slice:
            fill_by_slice[k] = outside_scan_pixels(plane, pixel_spacing_mm)
        if fill_by_slice[k][in_plane][beside_here].any():
            return True
    return False


def grid_record(shape_zyx: Sequence[int], geometry: ImageGeometry) -> Dict[str, Any]:
    """The measured grid as the report states it: ``size_xyz`` (voxels), ``spacing_mm`` (x, y, z), ``origin_lps_mm``
    (the first voxel's centre) and ``direction`` (the 3 x 3 direction cosines, row-major, LPS, as ITK and DICOM
    give them): a report then says on what pixel size and slice spacing its volumes and axes were measured, which
    the label map alone would have to be opened for."""
    def tidy(values: Sequence[float]) -> List[float]:  # 2.9999999999999996 -> 3.0 and -0.0 -> 0.0 (DICOM inputs)
        return [round(float(v), 9) + 0.0 for v in values]

    return {"size_xyz": [int(n) for n in reversed(tuple(shape_zyx))],
            "spacing_mm": tidy(geometry.spacing), "origin_lps_mm": tidy(geometry.origin),
            "direction": tidy(geometry.direction)}


def lesion_report(labels_zyx: np.ndarray, geometry: ImageGeometry, hu_zyx: Optional[np.ndarray] = None,
                  extra: Optional[Dict[str, Any]] = None,
                  tumor_probability_zyx: Optional[np.ndarray] = None,
                  network_labels_zyx: Optional[np.ndarray] = None, in_hu: bool = True,
                  dicom_slice_thickness_mm: Optional[float] = None,
                  given_slice_thickness_mm: Optional[float] = None,
                  dicom_slice_thickness_source: str = "dicom") -> Dict[str, Any]:
    """Report dict: ``liver_volume_ml``, ``tumor_volume_ml``, ``tumor_burden_percent``, ``lesion_count``,
    ``lesions`` (list of dicts, see module doc), ``recist``, ``voxel_volume_ml``, ``grid``
    (:func:`grid_record`); ``extra`` is merged in. Volumes in mL, lengths and positions in mm (LPS and RAS).

    ``labels_zyx``: 0/1/2 map ``(z, y, x)``; ``geometry``: its :class:`ImageGeometry` (``(x, y, z)``, LPS, mm);
    ``hu_zyx``: the CT in HU on the same grid (mean HU, water density, scan-edge padding), or None.

    ``tumor_probability_zyx``: optional tumor probability map on the label grid; adds
    ``mean_tumor_probability`` and ``peak_tumor_probability`` to every lesion, taken over the voxels
    ``network_labels_zyx`` (the network's labels before post-processing, same grid; optional) labels tumor (module
    doc). ``in_hu``: the CT's values are
    Hounsfield units (False: ``water_density`` is None, as without a CT; ``segment --allow-non-hu``).

    ``dicom_slice_thickness_mm``: the SliceThickness (mm) of the DICOM series ``geometry`` is the grid of, as read
    (``CTVolume.meta["dicom_slice_thickness_mm"]``), or None: RECIST's measurable minimum is twice it above 5 mm
    (:func:`~LiverTumorSegLib.metrics.recist.recist_slice_thickness`). ``given_slice_thickness_mm``: a thickness
    (mm) the user gave for the same slices (``--slice-thickness-mm``; the Slicer panel's DICOM SliceThickness), which
    wins over the DICOM one (``slice_thickness_source`` "given"). ``dicom_slice_thickness_source``: the source a
    used ``dicom_slice_thickness_mm`` is named by ("dicom_seg" for a DICOM SEG label map's own,
    :func:`~LiverTumorSegLib.metrics.recist.dicom_slice_thickness_of`)."""
    from scipy import ndimage

    geometry = checked_geometry(geometry, "lesion_report")  # a spacing tuple failed deep inside, on .direction_matrix
    labels_zyx = np.asarray(labels_zyx)
    if labels_zyx.ndim != 3:
        raise InputError(f"The label map must be 3D (z, y, x); got shape {labels_zyx.shape}.")
    from ..io.labels import as_label_array
    labels_zyx = as_label_array(labels_zyx, "labels_zyx given to lesion_report")  # raises LabelError naming the values
    _check_same_shape(hu_zyx, labels_zyx, "CT")
    _check_same_shape(tumor_probability_zyx, labels_zyx, "Tumor probability map")
    _check_probability_range(tumor_probability_zyx)
    _check_same_shape(network_labels_zyx, labels_zyx, "Network label map")
    from ..validation import check_direction_axes
    # a sheared grid built in memory (the readers refuse one) measured 1/cos(tilt) too much volume per voxel
    check_direction_axes(geometry.direction_matrix, "label map geometry")
    voxel_ml = geometry.voxel_volume_ml
    liver_voxels = int(np.count_nonzero(labels_zyx))  # uint8 0/1/2 (checked above): labels >= 1, without its mask
    components, _, tumor_box = _lesion_components_in_box(labels_zyx, geometry)
    lesions = []  # type: List[Dict[str, Any]]
    inner_boxes = [] if components is None else ndimage.find_objects(components)
    mean_probability = peak_probability = None
    fill_by_slice = {}  # type: Dict[int, np.ndarray]
    if tumor_probability_zyx is not None and components is not None:
        from .postprocess import component_mean_probability, component_peak_probability
        network = None if network_labels_zyx is None else np.asarray(network_labels_zyx)[tumor_box] == 2
        in_box = np.asarray(tumor_probability_zyx)[tumor_box]
        mean_probability = component_mean_probability(components, len(inner_boxes), in_box, None, network)
        peak_probability = component_peak_probability(components, len(inner_boxes), in_box, network)
    for index, inner in enumerate(inner_boxes, start=1):
        if inner is None:
            continue
        mask = components[inner] == index
        box = tuple(slice(t.start + i.start, t.start + i.stop) for t, i in zip(tumor_box, inner))  # whole volume
        offset = [b.start for b in box]
        kji = np.stack(np.nonzero(mask), axis=1).astype(np.float64) + offset
        centroid_ijk = kji.mean(axis=0)[::-1]
        voxels = int(mask.sum())
        axes = lesion_axes(mask, geometry, offset_zyx=offset)
        lesion = {
            "id": index,
            "volume_ml": voxels * voxel_ml,
            "voxel_count": voxels,
            "long_axis_mm": axes["long_axis_mm"],
            "short_axis_mm": axes["short_axis_mm"],
            "longest_axial_diameter_mm": axes["long_axis_voxel_centres_mm"],
            "long_axis": axes["long_axis"],
            "short_axis": axes["short_axis"],
            "measurement_slice": axes["measurement_slice"],
            "axial_axes_limited_by_slices": axes.get("axial_axes_limited_by_slices"),
            "centroid_lps_mm": [float(v) for v in geometry.index_to_lps(centroid_ijk)],
            "centroid_ras_mm": [float(v) for v in geometry.index_to_ras(centroid_ijk)],
            "mean_hu": _mean_hu(hu_zyx[box][mask]) if hu_zyx is not None else None,
            "bounding_box_zyx": [[int(b.start), int(b.stop)] for b in box],
            "axial_position_s_mm": float(np.mean([p[2] for p in axes["long_axis"]["end_points_ras_mm"]])),
            "touches_scan_edge": (any(b.start == 0 or b.stop == n for b, n in zip(box, labels_zyx.shape))
                                  or _borders_scanner_padding(mask, box, hu_zyx, geometry, fill_by_slice)),
        }
        lesion.update(_density(hu_zyx, labels_zyx, mask, box, geometry, in_hu))
        if mean_probability is not None:
            lesion["mean_tumor_probability"] = float(mean_probability[index])
            lesion["peak_tumor_probability"] = float(peak_probability[index])
        lesions.append(lesion)
    thickness, thickness_source = recist_slice_thickness(geometry, dicom_slice_thickness_mm, given_slice_thickness_mm,
                                                         dicom_slice_thickness_source)
    axial_thickness = axial_slice_thickness_mm(thickness, geometry)  # along S on a tilted grid
    minimum = measurable_minimum_mm(axial_thickness)
    targets = select_target_lesions(lesions, minimum)
    by_long_axis_alone = select_target_lesions([dict(d, water_density=False) for d in lesions], minimum)
    for lesion in lesions:
        lesion["recist_target"] = lesion["id"] in targets
    by_id = {d["id"]: d for d in lesions}
    tumor_ml = float(sum(d["volume_ml"] for d in lesions))
    liver_ml = liver_voxels * voxel_ml
    report = {
        "report_version": REPORT_VERSION,
        "liver_volume_ml": liver_ml,
        "tumor_volume_ml": tumor_ml,
        "tumor_burden_percent": 100.0 * tumor_ml / liver_ml if liver_ml > 0 else 0.0,
        "lesion_count": len(lesions),
        "voxel_volume_ml": voxel_ml,
        "grid": grid_record(labels_zyx.shape, geometry),
        "recist": {"note": RECIST_NOTE, "target_lesion_ids": targets,
                   "sum_of_diameters_mm": float(sum(by_id[i]["long_axis_mm"] for i in targets)),
                   "measurable_minimum_mm": minimum, "slice_thickness_mm": thickness,
                   "slice_thickness_source": thickness_source, "axial_slice_thickness_mm": axial_thickness,
                   "water_density_passed_over_ids": [i for i in by_long_axis_alone if i not in targets]},
        "lesions": lesions,
    }
    if extra:
        report.update(extra)
    return report


LISTED_LESIONS_MAX = 10
"""Most lesions a warning or a console summary (``segment``, ``measure``) names (the first, in the report's order: the
largest); the rest are counted: a polycystic liver of 454 cysts gave an 8,100-character warning line."""


def listed_lesions_text(items: Sequence[str], more_in: str) -> str:
    """``items`` (one text per lesion) joined by ', ', at most :data:`LISTED_LESIONS_MAX` of them, then ``and N more
    (<more_in>)`` (``more_in``: where the rest are, e.g. 'water_density in the report')."""
    text = ", ".join(items[:LISTED_LESIONS_MAX])
    if len(items) > LISTED_LESIONS_MAX:
        text += f" and {len(items) - LISTED_LESIONS_MAX} more ({more_in})"
    return text


def slice_limited_axes_warnings(lesions: Sequence[Dict[str, Any]], says_no_target: bool = True) -> List[str]:
    """A warning naming the lesions whose axes in true axial planes are limited by their slices
    (``axial_axes_limited_by_slices``, :func:`~LiverTumorSegLib.metrics.recist.lesion_axes`: on a few slices of a grid
    tilted from axial, each axial plane crosses them in a strip at most slices x spacing / sin(tilt) wide), with each
    one's numbers and its axes in the stored slices, and that they are no RECIST targets
    (:func:`~LiverTumorSegLib.metrics.recist.select_target_lesions`); none when no lesion is. An ellipse of 30 x 12 mm
    in one 5 mm slice tilted 25 degrees was reported 16.1 x 15.5 mm without a word. ``says_no_target`` False leaves
    out that they are no targets: a follow-up scan's lesions, whose targets are the baseline's (``followup``)."""
    items = []
    for d in lesions:
        limit = d.get("axial_axes_limited_by_slices")
        if not limit:
            continue
        text = (f"{d['id']} ({limit['slices']} slice(s) of {limit['slice_spacing_mm']:g} mm tilted "
                f"{limit['tilt_degrees']:.0f} degrees: at most {limit['limit_mm']:.1f} mm along the tilt; "
                f"{d['long_axis_mm']:.1f} x {d['short_axis_mm']:.1f} mm in true axial planes")
        if limit.get("long_axis_in_stored_slices_mm") is not None:
            text += (f", {limit['long_axis_in_stored_slices_mm']:.1f} x {limit['short_axis_in_stored_slices_mm']:.1f}"
                     f" mm in its stored slices")
        items.append(text + ")")
    if not items:
        return []
    return [f"lesion(s) {listed_lesions_text(items, 'axial_axes_limited_by_slices in the report')} lie on too few "
            f"slices of a grid tilted from the axial plane: in true axial planes, where RECIST's axes are measured, "
            f"they are cut by the faces of their slices (at most slices x slice spacing / sin(tilt) along the tilt), "
            f"not by their own edges, so their long and short axes are limited by slice thickness and tilt and can be "
            f"shorter than the lesion{NOT_TARGETS_TEXT if says_no_target else ''}; check each in the images, or use "
            f"a CT reconstructed in axial or thinner slices"]


NOT_TARGETS_TEXT = (", and they are not chosen as RECIST targets (not reproducibly measurable, as a lesion cut by the "
                    "scan's edge is not)")
"""What :func:`slice_limited_axes_warnings` says of the lesions it names in a scan whose targets are chosen."""


def _number(value: Any, digits: int) -> str:
    """A CSV cell: empty for a missing or non-finite number (the JSON report has null there)."""
    return "" if value is None or not np.isfinite(float(value)) else f"{float(value):.{digits}f}"


def _lesion_cells(d: Dict[str, Any], minimum_mm: float = RECIST_MIN_LONG_AXIS_MM) -> List[str]:
    axes = []  # type: List[str]
    for name in ("long_axis", "short_axis"):
        for point in d[name]["end_points_ras_mm"]:
            axes += [f"{v:.2f}" for v in point]
    long_axis = f"{d['long_axis_mm']:.{places_short_of(d['long_axis_mm'], minimum_mm, 2)}f}"
    return ([str(d["id"]), number_text(d["volume_ml"], 4), str(d["voxel_count"]), long_axis,
             f"{d['short_axis_mm']:.2f}", "1" if d.get("recist_target") else "0", _number(d.get("mean_hu"), 1),
             _number(d.get("mean_tumor_probability"), 4), _number(d.get("peak_tumor_probability"), 4),
             _number(d.get("axial_position_s_mm"), 1),
             "1" if d.get("touches_scan_edge") else "0", _number(d.get("median_hu"), 1),
             "" if d.get("water_density") is None else ("1" if d["water_density"] else "0"),
             _number(d.get("contrast_to_liver_hu"), 1),
             _number((d.get("axial_axes_limited_by_slices") or {}).get("limit_mm"), 2)]
            + [f"{v:.2f}" for v in d["centroid_lps_mm"]] + [f"{v:.2f}" for v in d["centroid_ras_mm"]] + axes)


def places_keeping_nonzero(value: float, decimals: int) -> int:
    """Decimal places to show ``value`` with: ``decimals``, or, where that would show a value that is not zero as 0,
    as many as give it 2 significant digits (a one-voxel lesion of 0.00245 mL: 4 places, 0.0025 (0.0024 as the
    float rounds), not 0.00)."""
    value = abs(float(value))
    if value == 0.0 or not np.isfinite(value) or round(value, decimals) != 0.0:
        return decimals
    return max(decimals, 1 - int(np.floor(np.log10(value))))


def number_text(value: float, decimals: int) -> str:
    """``value`` as text to :func:`places_keeping_nonzero` places: the console said '0.00 mL' and 'burden 0.00 %'
    of a lesion the report holds."""
    return f"{float(value):.{places_keeping_nonzero(value, decimals)}f}"


def long_axis_text(long_axis_mm: float, minimum_mm: float = RECIST_MIN_LONG_AXIS_MM) -> str:
    """A long axis (mm) as text to 0.1 mm, or to as many places as keep one short of the measurable minimum
    (``minimum_mm``, the report's ``recist.measurable_minimum_mm``) below it (:func:`places_short_of`)."""
    from ..metrics.recist import text_short_of

    return text_short_of(long_axis_mm, minimum_mm)


def lesion_summary_line(lesion: Dict[str, Any], centroid: bool = False,
                        minimum_mm: float = RECIST_MIN_LONG_AXIS_MM) -> str:
    """``lesion 1: 5.73 mL, long axis 26.6 mm, short axis 24.7 mm, axial S -770.5 mm (target; cut by the
    scan's edge: a lower bound; water density: a cyst?)`` for the console (``centroid``: also the RAS centroid).
    ``minimum_mm``: the report's measurable minimum, which the long axis is not shown rounded onto
    (:func:`long_axis_text`)."""
    text = (f"lesion {lesion['id']}: {number_text(lesion['volume_ml'], 2)} mL, "
            f"long axis {long_axis_text(lesion['long_axis_mm'], minimum_mm)} mm, "
            f"short axis {lesion['short_axis_mm']:.1f} mm")
    if lesion.get("axial_position_s_mm") is not None:
        text += f", axial S {lesion['axial_position_s_mm']:.1f} mm"
    if centroid:
        text += ", centroid RAS ({}) mm".format(", ".join(f"{v:.1f}" for v in lesion["centroid_ras_mm"]))
    notes = (["target"] if lesion.get("recist_target") else []) + \
        (["cut by the scan's edge: a lower bound"] if lesion.get("touches_scan_edge") else []) + \
        ([f"axial axes limited by its tilted slices (at most {lesion['axial_axes_limited_by_slices']['limit_mm']:.1f}"
          f" mm): not a target"] if lesion.get("axial_axes_limited_by_slices") else []) + \
        (["water density: a cyst?"] if lesion.get("water_density") else [])
    return text + (f" ({'; '.join(notes)})" if notes else "")


def _run_fact_columns(report: Dict[str, Any]) -> List[Tuple[str, str]]:
    """(column, text) for the report's extra facts (input, model, ...): scalars as text, others as JSON."""
    known = set(CASE_COLUMNS) | {"lesions", "voxel_volume_ml", "recist", "grid"}
    facts = []
    note = (report.get("recist") or {}).get("note")
    if note:  # the JSON's disclaimer travels with the spreadsheet too
        facts.append(("note", spreadsheet_safe_text(str(note))))
    for key, value in report.items():
        if key in known:
            continue
        if isinstance(value, str):  # an input named '=1+2.nii.gz' opened as a formula in Excel (CSV injection)
            facts.append((key, spreadsheet_safe_text(value)))
        elif value is None or isinstance(value, (int, float, bool)):
            facts.append((key, "" if value is None else str(value)))
        else:
            facts.append((key, json.dumps(value, sort_keys=True)))
    return facts


def report_to_csv_text(report: Dict[str, Any]) -> str:
    """One row per lesion (columns :data:`CSV_COLUMNS`, then run facts); see the module doc. No comment lines."""
    facts = _run_fact_columns(report)
    case = [number_text(report["liver_volume_ml"], 3), number_text(report["tumor_volume_ml"], 4),
            number_text(report["tumor_burden_percent"], 3), str(report["lesion_count"]),
            _number(report.get("recist", {}).get("sum_of_diameters_mm"), 2)]
    out = _io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS + [name for name, _ in facts])
    minimum_mm = float(report.get("recist", {}).get("measurable_minimum_mm", RECIST_MIN_LONG_AXIS_MM))
    rows = [_lesion_cells(d, minimum_mm) for d in report["lesions"]] or [[""] * len(LESION_COLUMNS)]
    for row in rows:
        writer.writerow(row + case + [text for _, text in facts])
    return out.getvalue()


def check_report_path(path: Any) -> Path:
    """Raise InputError unless ``path`` ends in .json or .csv."""
    path = Path(path)
    if full_suffix(path) not in (".json", ".csv"):
        raise InputError(f"Report '{path}' must end in .json or .csv.")
    return path


def write_report(report: Dict[str, Any], path: Any, overwrite: bool = False) -> Path:
    """Write ``report`` as JSON (``.json``) or CSV (``.csv``) atomically; returns the path."""
    path = check_report_path(path)
    text = report_to_csv_text(report) if full_suffix(path) == ".csv" else json.dumps(finite_json(report), indent=2, allow_nan=False) + "\n"
    with atomic_output(path, overwrite) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return path
