"""RECIST-style lesion axes and the RECIST 1.1 target-lesion choice and response category.

Input: a boolean lesion mask ``(z, y, x)`` with its :class:`~LiverTumorSegLib.volume.ImageGeometry` (any
orientation, also oblique). All lengths in mm; all points as voxel centres, in patient LPS and RAS mm.

Definitions
-----------
* Axial slice: one index of the array axis whose direction is closest to the patient S axis
  (:func:`axial_axis_zyx`). On a grid whose slices are tilted more than :data:`AXIAL_PLANES_TILT_DEGREES` from the
  axial plane, a true axial plane of the lesion sampled on a patient-aligned grid instead
  (:func:`_lesion_axes_in_axial_planes`; everything below then applies to that grid).
* ``long_axis_mm``: the largest distance between two voxel centres of the lesion in one axial slice plus one
  pixel spacing along that direction (half at each end), over all pairs and slices. With non-square pixels the
  pixel's length depends on the direction (:func:`voxel_length_along`), and the pair (and slice) is the one whose
  distance *plus* that length is largest, so the reported axis is the longest of its kind; with square pixels that
  is the farthest pair. Along a pixel row or column that is the mask's extent
  edge to edge; in other directions it is shorter than corner to corner on the displayed mask: a 45-degree line
  of 15 pixels of 1 mm measures 14 x sqrt(2) + 1 = 20.80 mm (corner to corner 15 x sqrt(2) = 21.21 mm). The
  slice where it is reached is the *measurement slice* (ties: the slice with more lesion voxels, then the one
  nearest the lesion's centre). Its end points are that pair of voxel centres, each moved outward by
  half that pixel length.
* ``short_axis_mm``: in the measurement slice, the longest extent of the lesion along a line perpendicular to the
  long axis: the in-slice voxel centres are binned by their position along the long axis (bin width = the largest
  in-plane spacing, so that with non-square pixels one bin still holds a whole row of the chord; the bins are
  centred on the long axis' end voxel centre that sorts first by its coordinates (LPS on an axis-aligned grid; on a
  turned grid along its index axes turned onto the patient axes, :func:`tie_frame`) and whole bin widths from it,
  so the result does not depend on storage order, nor, for the same voxels, on a small turn of the grid; on a long axis oblique to the pixel rows, bins of another phase
  (from the other end) can give a spread one pixel longer or shorter, which the accuracy ranges below include), the
  largest
  spread (ties: the bin nearest the long axis' middle) across the long axis within one bin is taken, plus one
  pixel length across (as for the long axis). Its end points lie on one line exactly perpendicular to the long
  axis (through the bin's centre). With non-square pixels that extent can exceed the long axis (a row of 0.6 mm
  pixels 1.5 mm tall); RECIST's short axis is never the longer one, so the two are then exchanged (the longer,
  perpendicular extent becomes the long axis). Measured on ellipsoids of axial diameters 30 x 20 mm, 12 mm head to foot (2.5 mm slices) at
  in-plane spacings 0.6..1.5 mm, square or not, random angles and sub-voxel positions (300 draws): long axis
  within -0.1..+1.3 mm of the truth, short axis -0.7..+1.5 mm (voxel-centre distances alone: -1.9..-0.1 mm). With
  bins of the smallest spacing, non-square pixels (0.6 x 1.5 mm) gave short axes down to -1.1 mm. Other shapes
  read wider: 24 mm head to foot, long -0.17..+1.10 mm and short -0.58..+1.37 mm; elliptic cylinders on 0.6 x 0.9 mm
  pixels, long axes down to -0.48 mm (test_metrics_oracles bounds it by -1..+1.5 of the larger pixel spacing).
* RECIST 1.1 (Eisenhauer et al., Eur J Cancer 2009): a lesion is *measurable* when its long axis is at least
  10 mm (at least twice the slice thickness when slices are thicker than 5 mm: the DICOM SliceThickness where the
  CT was read from DICOM, else a DICOM SEG label map's own, else the spacing between slices,
  :func:`recist_slice_thickness`; on slices tilted more than :data:`AXIAL_PLANES_TILT_DEGREES`, whose lesions are
  measured in true axial planes, the thickness those slices cover along the S axis, :func:`axial_slice_thickness_mm`);
  the target lesions of one
  organ are at most 2 measurable lesions, largest long axis first, not cut by the scan's edge and not with axial
  axes capped by thick tilted slices (RECIST asks for lesions suited to reproducible repeated measurement); the sum
  of diameters (SoD) is the sum of
  their long axes. Response vs. baseline: CR = no lesion left; PD = SoD up >= 20 % and >= 5 mm, or a new
  lesion; PR = SoD down >= 30 % from the baseline; else SD. RECIST's PD is judged from the smallest SoD on study,
  which two time points cannot know: it is the baseline's unless an earlier follow-up's smaller sum is given
  (:func:`recist_response`'s ``nadir_sum_mm``). A target still present counts its measured long
  axis, also under 5 mm (RECIST 1.1 4.3.2: actual measurements "even when very small"; :data:`RECIST_TOO_SMALL_MM`
  is the default for a lesion a reader judges too small to measure, which :mod:`~LiverTumorSegLib.followup`
  reports when it would change the category); without target lesions, persisting lesions are Non-CR/non-PD.
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError
from ..volume import ImageGeometry

RECIST_MIN_LONG_AXIS_MM = 10.0
RECIST_MAX_TARGETS_PER_ORGAN = 2
RECIST_PR_CHANGE = -0.30
RECIST_PD_CHANGE = 0.20
RECIST_PD_ABSOLUTE_MM = 5.0
RECIST_TOO_SMALL_MM = 5.0
"""RECIST 1.1's default diameter of a target lesion a reader judges present but too small to measure (a measured
lesion counts its measurement, even under 5 mm)."""
RESPONSES = ("CR", "PR", "SD", "PD", "Non-CR/non-PD", "NE")
NON_CR_NON_PD = "Non-CR/non-PD"
RECIST_NOTE = ("automatic RECIST 1.1-style measurement of the segmented liver lesions; research use, not a "
               "clinical read")
"""Said wherever a measurement or response is printed (stdout, reports, the change picture)."""
BOUNDARY_TOLERANCE = 1e-6
"""A value exactly at a rule's threshold (-30 % / +20 % / +5 mm changes, the 10 mm measurable long axis, the minimum
long axis of a new lesion, the 5 mm of a very small target) meets it despite rounding, within this fraction of the
threshold (and at least this much, in its unit): 25 voxels of 0.4 mm measure 9.999999999999995 or
10.000000000000002 mm depending on the grid's origin, and a NIfTI header stores its voxel-to-RAS matrix in float32
(about 7 digits), so on 0.625 mm pixels tilted 15 degrees 16 pixels measure 9.999999666 mm. 1e-6 is a nanometre at
1 mm, far below any diameter a CT resolves. Use :func:`at_least`, :func:`at_most` and
:func:`largest_first_ties_by_id`, not the tolerance itself."""


def _allowance(threshold: float) -> float:
    """How far a value may miss ``threshold`` by rounding only: :data:`BOUNDARY_TOLERANCE` of it, at least
    :data:`BOUNDARY_TOLERANCE` (a threshold of 0 or a fraction such as -0.3)."""
    return BOUNDARY_TOLERANCE * max(1.0, abs(float(threshold)))


def at_least(value: float, threshold: float) -> bool:
    """``value >= threshold``, where a value short of it by rounding only (:func:`_allowance`) meets it: every
    ">=" rule of RECIST 1.1 and of the follow-up statuses."""
    return bool(value >= threshold - _allowance(threshold))


def at_most(value: float, threshold: float) -> bool:
    """``value <= threshold``, where a value beyond it by rounding only (:func:`_allowance`) meets it (the -30 % of
    PR and of a shrunk lesion)."""
    return bool(value <= threshold + _allowance(threshold))


def places_short_of(value: float, minimum: float, decimals: int) -> int:
    """Decimal places to show ``value`` with: ``decimals``, or more where ``decimals`` would round a value short of
    ``minimum`` (:func:`at_least`: not met) onto it, as many as show it below (at most 6): a 9.988 mm long axis read
    'long axis 10.0 mm' beside a RECIST rule 'measurable from 10 mm' that it does not meet (the report audit)."""
    value = float(value)
    if not np.isfinite(value) or at_least(value, minimum):
        return decimals
    places = decimals
    while places < 6 and round(value, places) >= minimum:
        places += 1
    return places


def change_places(before: float, after: float, decimals: int = 1,
                  relative_rules: Sequence[float] = (RECIST_PD_CHANGE, RECIST_PR_CHANGE),
                  absolute_rise: Optional[float] = RECIST_PD_ABSOLUTE_MM) -> int:
    """Decimal places to show two sizes ``before -> after`` (mm) with: ``decimals``, or more (at most 6) where the
    rounded pair would put the change on the other side of a rule it is judged by: its relative change against each
    of ``relative_rules`` (a rise, >= one that is positive; a fall, <= one that is negative) and its rise against
    ``absolute_rise`` (mm; None: none). A sum of diameters of 20.03 -> 25.01 mm (+4.98 mm) read '20.0 -> 25.0 mm',
    +5 mm and +25 %, beside SD, and a long axis of 20.03 -> 23.99 mm (+19.8 %) '20.0 -> 24.0 mm', +20 %, beside
    'stable' (the printed-numbers audit)."""
    def sides(b: float, a: float) -> Tuple[bool, ...]:
        relative = tuple((at_least((a - b) / b, rule) if rule > 0 else at_most((a - b) / b, rule)) if b > 0
                         else False for rule in relative_rules)
        return relative + ((at_least(a - b, absolute_rise),) if absolute_rise is not None else ())

    before, after = float(before), float(after)
    if not (np.isfinite(before) and np.isfinite(after)):
        return decimals
    truth = sides(before, after)
    places = decimals
    while places < 6 and sides(round(before, places), round(after, places)) != truth:
        places += 1
    return places


def equal_within_rounding(value: float, reference: float) -> bool:
    """Whether ``value`` and ``reference`` (same unit) are apart by rounding only: within :func:`_allowance` of
    ``reference`` (1e-6 of it, at least 1e-6), the allowance :func:`at_least` gives a threshold."""
    return bool(abs(float(value) - float(reference)) <= _allowance(reference))


def largest_first_ties_by_id(items: Sequence[Dict[str, Any]], key: str) -> List[Dict[str, Any]]:
    """``items`` (dicts with ``id`` and ``key``) largest ``key`` first, where values apart by rounding only
    (:func:`equal_within_rounding` of the largest of their run) are equal and come lower id first, so a tie is
    broken by id, not by float noise. The allowance is relative, as :func:`at_least`'s: two long axes of 20 mm read
    on a tilted float32 NIfTI header are about 1e-6 mm apart, which steps of 1e-6 mm (absolute) still ordered."""
    ordered = sorted(items, key=lambda d: -float(d[key]))
    result: List[Dict[str, Any]] = []
    run: List[Dict[str, Any]] = []
    for item in ordered:
        if run and not equal_within_rounding(item[key], run[0][key]):
            result.extend(sorted(run, key=lambda d: d["id"]))
            run = []
        run.append(item)
    return result + sorted(run, key=lambda d: d["id"])


def axial_axis_zyx(geometry: ImageGeometry) -> int:
    """Array axis (0=z, 1=y, 2=x) whose index direction is closest to the patient superior-inferior axis: the one
    the network's slices are taken across (the same assignment of index axes to patient axes,
    :func:`~..orientation.plan_reorientation`'s). A grid tilted by exactly 45 degrees has two such axes; the largest
    cosine alone picked the other one, so lesions were measured in slices the network did not segment (31.5 x 27.7
    against 31.3 x 29.7 mm for the same voxels stored without the tilt)."""
    from ..orientation import _axis_assignment

    column = _axis_assignment(np.asarray(geometry.direction_matrix, dtype=float))[0][2]  # 0=i(x), 1=j(y), 2=k(z)
    return 2 - int(column)


def hull_vertices_2d(points_2d: np.ndarray) -> np.ndarray:
    """Row indices of the 2D convex-hull vertices of ``points_2d`` ``(n, 2)`` (all rows when tiny/degenerate).

    The farthest pair of a point set lies on its convex hull, and an affine map (index -> mm) keeps hull
    vertices, so the hull is taken in index space; in-slice points are coplanar, which a 3D hull rejects.
    """
    if len(points_2d) <= 64:
        return np.arange(len(points_2d))
    try:
        from scipy.spatial import ConvexHull

        return ConvexHull(points_2d).vertices
    except Exception:  # noqa: BLE001 - collinear points: their extremes along the line suffice
        order = np.lexsort(points_2d.T[::-1])
        return np.array([order[0], order[-1]])


def farthest_pair(points: np.ndarray) -> Tuple[int, int, float]:
    """``(a, b, distance)``: row indices of the two rows of ``points`` ``(n, d)`` farthest apart (n >= 1).

    Equally long pairs (common on a voxel grid: a sphere has many) are decided by the points' coordinates,
    not by their row order, and ``a`` is the end that sorts first (:func:`_point_key`): the same lesion
    stored in another axis order gives the same pair in the same order."""
    if len(points) < 2:
        return 0, 0, 0.0
    diff = points[:, None, :] - points[None, :, :]
    d2 = (diff ** 2).sum(-1)
    longest = float(d2.max())
    rows, cols = np.nonzero(np.triu(d2 >= longest - 1e-9 * max(1.0, longest), k=1))
    pairs = [tuple(sorted((int(r), int(c)), key=lambda i: _point_key(points[i]))) for r, c in zip(rows, cols)]
    a, b = min(pairs, key=lambda pair: (_point_key(points[pair[0]]), _point_key(points[pair[1]])))
    return a, b, float(np.sqrt(d2[a, b]))


def _point_key(point: np.ndarray, frame: Optional[np.ndarray] = None) -> Tuple[float, ...]:
    """Sort key of a point (LPS mm) that float noise between storage orders does not change (0.1 um): its LPS
    coordinates, or with ``frame`` (:func:`tie_frame`) its coordinates along that frame's columns."""
    point = np.asarray(point, dtype=np.float64)
    if frame is not None:
        point = frame.T @ point
    return tuple(float(x) for x in np.round(point, 4))


def tie_frame(geometry: ImageGeometry) -> np.ndarray:
    """3x3 rotation whose columns are the grid's index directions turned onto the patient axes each is nearest
    to: ``R P^T`` for the direction matrix ``R`` and the signed permutation ``P`` nearest to it (the identity on
    an axis-aligned grid, or where two index axes are nearest to one patient axis). Equally long axes are decided
    by the points' coordinates in this frame (:func:`_point_key`): the same as LPS on an axis-aligned grid, the
    same for any storage order (a flip or an axis swap changes ``R`` and ``P`` alike), and, unlike LPS, the same
    voxels give the same choice when the grid is turned a little (``R`` -> ``T R``: the coordinates of voxel
    ``x`` become ``P x`` plus one offset for all). In LPS a grid turned by 3 degrees picked the mirror image of
    a tied long axis, whose short axis was 0.04 mm shorter (a property test's seed, 30 Nov 2026)."""
    direction = geometry.direction_matrix
    rows = np.argmax(np.abs(direction), axis=0)  # the patient axis each index axis (column) is nearest to
    if len(set(rows.tolist())) < 3:
        return np.eye(3)
    nearest = np.zeros((3, 3))
    nearest[rows, np.arange(3)] = np.sign(direction[rows, np.arange(3)])
    return direction @ nearest.T


def _ordered_ends(a: np.ndarray, b: np.ndarray, frame: Optional[np.ndarray] = None
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """The two end points of an axis in :func:`_point_key` order (independent of how the array is stored)."""
    return (a, b) if _point_key(a, frame) <= _point_key(b, frame) else (b, a)


def _scaled_axes(geometry: ImageGeometry) -> np.ndarray:
    """3x3 matrix; column c = LPS mm vector of one index step along index axis c (i, j, k)."""
    return geometry.direction_matrix @ np.diag(geometry.spacing)


def voxel_centres_lps(kji: np.ndarray, geometry: ImageGeometry) -> np.ndarray:
    """LPS mm of voxel centres given as ``(n, 3)`` rows of (k, j, i) indices."""
    return kji[:, ::-1] @ _scaled_axes(geometry).T + np.asarray(geometry.origin)


def voxel_length_along(direction_lps: np.ndarray, geometry: ImageGeometry, axis: int) -> float:
    """Length (mm) of one voxel step along the in-slice unit vector ``direction_lps``: the norm of its
    components on the two in-plane index axes, each scaled by that axis' spacing (``axis``: the axial array
    axis). Equals the spacing for a direction along an index axis, and for any direction in square pixels."""
    total = 0.0
    for array_axis in range(3):
        if array_axis == axis:
            continue
        column = 2 - array_axis
        component = float(np.dot(direction_lps, geometry.direction_matrix[:, column]))
        total += (component * geometry.spacing[column]) ** 2
    return float(np.sqrt(total))


def _extend(a: np.ndarray, b: np.ndarray, geometry: ImageGeometry, axis: int
            ) -> Tuple[float, np.ndarray, np.ndarray]:
    """Voxel-centre segment ``a -> b`` grown by half a voxel length at each end: (length mm, a', b')."""
    vec = b - a
    norm = float(np.linalg.norm(vec))
    unit = vec / norm
    half = 0.5 * voxel_length_along(unit, geometry, axis)
    return norm + 2.0 * half, a - half * unit, b + half * unit


def _extended_lengths(points: np.ndarray, geometry: ImageGeometry, axis: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(centre, extended)``, each ``(n, n)`` mm, for every pair of in-slice points ``points`` ``(n, 3)`` (LPS):
    the distance between the voxel centres, and that distance plus one voxel length along the pair's direction
    (:func:`voxel_length_along`; 0 on the diagonal)."""
    diff = points[None, :, :] - points[:, None, :]
    centre = np.sqrt((diff ** 2).sum(-1))
    across = np.zeros_like(centre)
    for array_axis in range(3):
        if array_axis == axis:
            continue
        column = 2 - array_axis
        across += ((diff @ geometry.direction_matrix[:, column]) * geometry.spacing[column]) ** 2
    step = np.sqrt(across) / np.where(centre > 0, centre, 1.0)
    return centre, centre + step


def _long_axis_in_slice(kji: np.ndarray, geometry: ImageGeometry, axis: int
                        ) -> Tuple[float, float, np.ndarray, np.ndarray]:
    """Long axis of the in-slice voxels ``kji`` ``(n, 3)`` (one slice): the pair of voxel centres whose distance
    plus one voxel length along it is largest (with square pixels: the farthest pair). Returns (that extended
    length mm, the centre distance mm, LPS end a, LPS end b); equally long pairs are decided by the points'
    coordinates (as :func:`farthest_pair`), not by the storage order."""
    in_plane = [a for a in range(3) if a != axis]
    hull = kji[hull_vertices_2d(kji[:, in_plane])]
    lps = voxel_centres_lps(hull, geometry)
    if len(lps) == 1:  # one voxel: its longer in-plane side (as lesion_axes reports it)
        return max(geometry.spacing[2 - a] for a in in_plane), 0.0, lps[0], lps[0]
    centre, extended = _extended_lengths(lps, geometry, axis)
    longest = float(extended.max())
    rows, cols = np.nonzero(np.triu(extended >= longest - 1e-9 * max(1.0, longest), k=1))
    frame = tie_frame(geometry)
    keys = [_point_key(point, frame) for point in lps]
    pairs = [tuple(sorted((int(r), int(c)), key=lambda i: keys[i])) for r, c in zip(rows, cols)]
    a, b = min(pairs, key=lambda pair: (keys[pair[0]], keys[pair[1]]))
    return float(extended[a, b]), float(centre[a, b]), lps[a], lps[b]


def _short_axis_in_slice(kji: np.ndarray, geometry: ImageGeometry, axis: int, end_a: np.ndarray,
                         end_b: np.ndarray) -> Tuple[float, np.ndarray, np.ndarray]:
    """Longest extent perpendicular to the long axis ``end_a -> end_b`` in one slice (see module doc)."""
    long_vec = end_b - end_a
    length = float(np.linalg.norm(long_vec))
    if length == 0.0:
        return 0.0, end_a.copy(), end_a.copy()
    u = long_vec / length
    scaled = _scaled_axes(geometry)
    normal = scaled[:, 2 - axis] / np.linalg.norm(scaled[:, 2 - axis])  # the slice normal (index axis of `axis`)
    v = np.cross(normal, u)
    v /= np.linalg.norm(v)
    in_plane_spacing = [geometry.spacing[2 - a] for a in range(3) if a != axis]
    width = float(max(in_plane_spacing))
    rel = voxel_centres_lps(kji, geometry) - end_a
    s, t = rel @ u, rel @ v
    bins = np.rint(s / width).astype(np.int64)
    order = np.argsort(bins, kind="stable")
    bins_sorted, t_sorted = bins[order], t[order]
    starts = np.flatnonzero(np.r_[True, bins_sorted[1:] != bins_sorted[:-1]])
    t_min = np.minimum.reduceat(t_sorted, starts)
    t_max = np.maximum.reduceat(t_sorted, starts)
    spread = t_max - t_min
    centres = bins_sorted[starts].astype(np.float64) * width
    ties = np.flatnonzero(spread >= spread.max() - 1e-6)
    # ties: nearest the long axis' middle, then nearer end_a (end_a is fixed by position, not storage order)
    best = int(ties[np.lexsort((centres[ties], np.round(np.abs(centres[ties] - 0.5 * length), 6)))[0]])
    s_mid = float(bins_sorted[starts[best]]) * width
    s_mid = min(max(s_mid, 0.0), length)  # keep the short axis across the long one
    p_min = end_a + s_mid * u + float(t_min[best]) * v
    p_max = end_a + s_mid * u + float(t_max[best]) * v
    return (float(t_max[best] - t_min[best]),) + _ordered_ends(p_min, p_max, tie_frame(geometry))


def _to_ras(lps: np.ndarray) -> List[float]:
    """LPS -> RAS mm (x and y negated; ``0.0 - v``, not ``-v``, so that 0 stays 0.0 and is not written -0.0)."""
    return [0.0 - float(lps[0]), 0.0 - float(lps[1]), float(lps[2])]


def _segment_dict(length: float, a: np.ndarray, b: np.ndarray) -> Dict[str, Any]:
    return {"length_mm": float(length),
            "end_points_lps_mm": [[float(x) for x in a], [float(x) for x in b]],
            "end_points_ras_mm": [_to_ras(a), _to_ras(b)]}


def lesion_axes(mask_zyx: np.ndarray, geometry: ImageGeometry, offset_zyx: Sequence[int] = (0, 0, 0)
                ) -> Dict[str, Any]:
    """RECIST-style axes of one boolean lesion mask ``(z, y, x)`` (see module doc).

    ``offset_zyx``: index of ``mask_zyx[0, 0, 0]`` in the full volume whose ``geometry`` is given (so a
    cropped mask gives full-volume positions). Returns ``long_axis_mm``, ``short_axis_mm``, ``long_axis`` and
    ``short_axis`` (each ``{"length_mm", "end_points_lps_mm", "end_points_ras_mm"}``, two points of 3 mm
    values), ``measurement_slice`` (``{"axis_zyx", "index"}``, full-volume array index) and
    ``long_axis_voxel_centres_mm`` (the long axis between voxel centres, without the voxel length).
    """
    from ..validation import slice_tilt_degrees

    if not np.any(mask_zyx):
        raise ValueError("empty lesion mask")
    if slice_tilt_degrees(geometry.direction_matrix) > AXIAL_PLANES_TILT_DEGREES:  # see AXIAL_PLANES_TILT_DEGREES
        return _lesion_axes_in_axial_planes(np.asarray(mask_zyx, dtype=bool), geometry, offset_zyx,
                                            axial_axis_zyx(geometry))
    return _lesion_axes_in_stored_slices(mask_zyx, geometry, offset_zyx)


def _lesion_axes_in_stored_slices(mask_zyx: np.ndarray, geometry: ImageGeometry,
                                  offset_zyx: Sequence[int] = (0, 0, 0)) -> Dict[str, Any]:
    """:func:`lesion_axes` measured in the stored grid's slices nearest to axial (true axial planes on a grid that
    is not tilted)."""
    axis = axial_axis_zyx(geometry)
    in_plane = [a for a in range(3) if a != axis]
    indices = np.nonzero(mask_zyx)
    kji_all = np.stack(indices, axis=1).astype(np.float64) + np.asarray(offset_zyx, dtype=np.float64)
    slice_values = kji_all[:, axis]
    centre = float(slice_values.mean())
    superior = float(_scaled_axes(geometry)[2, 2 - axis])  # LPS S mm per index step along the axial axis
    best_key, best = None, None
    for value, kji in _voxels_by_slice(kji_all, axis):
        length, centre_length, a, b = _long_axis_in_slice(kji, geometry, axis)
        # ties (equal length and area, as far from the centre): the more superior slice, whatever the storage
        key = (round(length, 6), len(kji), round(-abs(value - centre), 6), round(value * superior, 6))
        if best_key is None or key > best_key:
            best_key, best = key, (value, kji, centre_length, a, b)
    value, kji, centre_distance, a, b = best
    short_centres_mm, c, d = _short_axis_in_slice(kji, geometry, axis, a, b)
    if np.allclose(a, b):  # one voxel in the measurement slice: its in-plane sides are the axes
        # longer side first; square pixels: the side whose end points come first (not the storage order)
        frame = tie_frame(geometry)
        sides = sorted((_voxel_side(a, geometry, x) for x in in_plane),
                       key=lambda side: (-round(side[0], 6), _point_key(side[1], frame), _point_key(side[2], frame)))
        (long_mm, a, b), (short_mm, c, d) = sides
    else:
        if np.allclose(c, d):  # one voxel wide: one voxel across
            short_mm, c, d = _perpendicular_voxel(c, a, b, geometry, axis)
        else:
            short_mm, c, d = _extend(c, d, geometry, axis)
        long_mm, a, b = _extend(a, b, geometry, axis)
        if short_mm > long_mm + 1e-9:  # non-square pixels: the lesion is longer across (RECIST: short <= long)
            (long_mm, a, b), (short_mm, c, d) = (short_mm, c, d), (long_mm, a, b)
            centre_distance = short_centres_mm
    return {"long_axis_mm": long_mm, "short_axis_mm": short_mm, "long_axis_voxel_centres_mm": centre_distance,
            "long_axis": _segment_dict(long_mm, a, b), "short_axis": _segment_dict(short_mm, c, d),
            "measurement_slice": {"axis_zyx": int(axis), "index": int(value)}}


AXIAL_PLANES_TILT_DEGREES = 5.0
"""On a grid whose slices nearest to axial are tilted more than this from the axial plane
(:func:`~LiverTumorSegLib.validation.slice_tilt_degrees`), :func:`lesion_axes` measures in true axial planes
(:func:`_lesion_axes_in_axial_planes`), not in the stored slices: a 30 x 20 mm ellipsoid (1 mm voxels) stored tilted
45 degrees about L measured 27.7 x 17.5 mm in the tilted slices and 23.1 x 18.1 mm tilted about P (30.2 x 20.3 mm
stored axial); the report depended on how the same lesion was stored. Under 5 degrees a tilted slice shortens a
diameter by at most 0.4 % (1 - cos 5 degrees), and the stored slices are kept (the same as segment's
``OBLIQUE_THRESHOLD_DEGREES``)."""
AXIAL_PLANES_MAX_POINTS = 20_000_000
"""The most points of the patient-aligned grid :func:`_lesion_axes_in_axial_planes` samples a lesion on; a larger
lesion is sampled with a proportionally coarser spacing."""


def _lesion_axes_in_axial_planes(mask_zyx: np.ndarray, geometry: ImageGeometry, offset_zyx: Sequence[int],
                                 axis: int) -> Dict[str, Any]:
    """:func:`lesion_axes` of a lesion on a grid tilted more than :data:`AXIAL_PLANES_TILT_DEGREES`: the mask is
    sampled (each point: the label of the stored voxel it lies in, nearest-neighbour) on a patient-aligned grid
    (identity direction) of the smallest stored spacing in every direction, covering the lesion's voxels whole, its
    points on the lattice of that spacing through the lesion's own first voxel centre (:func:`first_voxel_centre`:
    not the mask's crop, so a full-volume mask and a tight crop with ``offset_zyx`` measure the same, nor the
    volume's first voxel or a fixed point, so a scan stored flipped or permuted, or moved, measures the same), and
    measured there in true axial planes. The end points
    are physical (LPS/RAS), so they need no mapping back; ``measurement_slice`` is the stored slice (``axis``) through the middle of the long axis. The stored voxels'
    staircase, sampled at most one aligned voxel off, keeps the axes within about a voxel of those of the same
    lesion stored axial, somewhat more for a tilt that makes a voxel's corners reach along the long axis: a 30 x 20
    mm ellipsoid on 1 mm voxels tilted 45 degrees about P read +0.81..+1.72 mm long and -0.93..+0.41 mm short over
    40 phases of the lattice (tilted 45 degrees about L, 30 or 10: long +0.00..+0.86 mm, short -0.53..+0.94 mm)."""
    from scipy import ndimage

    from ..inference.axis_aligned import _index_map_zyx, aligned_grid

    # the lesion's own box, whatever crop the caller gave: a full-volume mask and a tight crop (with its offset)
    # sample the same points (the grid was anchored at the given crop's corner: 30.27 x 20.23 vs 30.27 x 21.22 mm)
    box = ndimage.find_objects(mask_zyx.astype(np.uint8))[0]
    mask_zyx = mask_zyx[box]
    offset = np.asarray(offset_zyx, dtype=np.int64) + [b.start for b in box]
    padded = np.pad(mask_zyx, 1).astype(np.uint8)  # a voxel's half beyond its centre lies inside the aligned box
    crop_geometry = ImageGeometry(spacing=geometry.spacing,
                                  origin=tuple(geometry.index_to_lps((offset - 1)[::-1].astype(np.float64))),
                                  direction=geometry.direction)
    spacing = float(min(geometry.spacing))
    extent = np.abs(_scaled_axes(geometry)) @ (np.asarray(padded.shape[::-1], dtype=np.float64))  # box, LPS mm
    points = float(np.prod(extent / spacing + 1.0))
    if points > AXIAL_PLANES_MAX_POINTS:
        spacing *= (points / AXIAL_PLANES_MAX_POINTS) ** (1.0 / 3.0)
    # the lattice through the lesion's own first voxel centre (tie_frame order): through the volume's first voxel, a
    # scan stored flipped or in another axis order (another corner first) was sampled at another phase (a 16.82 x
    # 12.74 mm lesion read 16.82 x 13.32 mm: the lesion-report audit); through the voxel centre nearest the LPS
    # origin, a scan moved 1.5 mm read 33.89 x 25.73 mm as 32.55 x 28.59 mm (the invariance audit)
    grid = _lattice_grid(aligned_grid(crop_geometry, padded.shape, (spacing, spacing, spacing)),
                         first_voxel_centre(mask_zyx, geometry, offset))
    matrix, shift = _index_map_zyx(grid.geometry, crop_geometry)
    aligned = ndimage.affine_transform(padded, matrix, offset=shift, output_shape=grid.shape_zyx, order=0,
                                       mode="constant", cval=0) > 0
    if not aligned.any():  # a lesion thinner than the sampling (cannot be at the smallest spacing): the stored slices
        return _lesion_axes_in_stored_slices(mask_zyx, geometry, offset)
    axes = _lesion_axes_in_stored_slices(aligned, grid.geometry)
    limited = _slices_limit(aligned, grid.geometry, geometry, axis, offset[axis],
                            offset[axis] + mask_zyx.shape[axis] - 1)
    if limited is not None:  # the stored slices' own axes, for the reader to compare
        stored = _lesion_axes_in_stored_slices(mask_zyx, geometry, offset)
        limited.update(long_axis_in_stored_slices_mm=stored["long_axis_mm"],
                       short_axis_in_stored_slices_mm=stored["short_axis_mm"])
    middle = 0.5 * np.sum(np.asarray(axes["long_axis"]["end_points_lps_mm"], dtype=np.float64), axis=0)
    index_ijk = np.linalg.solve(_scaled_axes(geometry), middle - np.asarray(geometry.origin, dtype=np.float64))
    index_kji = np.rint(index_ijk[::-1]).astype(np.int64)
    axes["measurement_slice"] = {"axis_zyx": int(axis), "index": int(index_kji[axis])}
    axes["axial_axes_limited_by_slices"] = limited
    return axes


def _slices_limit(aligned_zyx: np.ndarray, aligned: ImageGeometry, geometry: ImageGeometry, axis: int,
                  first: int, last: int) -> Optional[Dict[str, Any]]:
    """Whether a lesion's axes in true axial planes are limited by its stored slices rather than by the lesion: None
    when not, else ``{"slices", "slice_spacing_mm", "tilt_degrees", "limit_mm"}``.

    A lesion on the stored slices ``first..last`` (index along ``axis``, each ``t`` mm apart, tilted by ``a`` from the
    axial plane) lies, in any axial plane, in the strip where that plane crosses those slices: ``n t / sin a`` mm wide
    along the tilt (``limit_mm``; one 5 mm slice tilted 25 degrees: 11.8 mm). A lesion whose cross-section in some
    axial plane (``aligned_zyx``: the lesion sampled on the patient-aligned grid ``aligned``, one axial plane per
    index z) reaches both edges of that strip (the outer faces of its first and its last slice, within one sampling
    step) is cut there by the slices, not by its own edge: its axial axes can be shorter than the lesion (an ellipse
    of 30 x 12 mm in one 5 mm slice tilted 25 degrees measured 16.1 x 15.5 mm in true axial planes, 29.8 x 12.1 mm
    in the stored slice). A lesion that spans more slices than it is flat (a ball on n slices: n t across, under the
    strip's n t / sin a) never reaches both."""
    from ..validation import slice_tilt_degrees

    tilt = slice_tilt_degrees(geometry.direction_matrix)
    if tilt <= 0.0:
        return None
    thickness = float(geometry.spacing[2 - axis])
    slices = int(last - first + 1)
    limit = float(slices * thickness / np.sin(np.radians(tilt)))
    zyx = np.argwhere(aligned_zyx)
    points = voxel_centres_lps(zyx.astype(np.float64), aligned)
    normal = geometry.direction_matrix[:, 2 - axis]
    k = np.linalg.solve(_scaled_axes(geometry), (points - np.asarray(geometry.origin, dtype=np.float64)).T)[2 - axis]
    reach = max(aligned.spacing) * (abs(normal[0]) + abs(normal[1])) / thickness + 1e-6  # one sampling step, in k
    planes = zyx[:, 0]
    at_first = np.unique(planes[k <= first - 0.5 + reach])  # the axial planes reaching the first slice's outer face
    at_last = np.unique(planes[k >= last + 0.5 - reach])
    if not np.intersect1d(at_first, at_last).size:
        return None
    return {"slices": slices, "slice_spacing_mm": thickness, "tilt_degrees": float(tilt), "limit_mm": limit}


def first_voxel_centre(mask_zyx: np.ndarray, geometry: ImageGeometry, offset_zyx: Sequence[int]) -> np.ndarray:
    """The LPS position (mm) of the lesion's voxel centre that comes first in :func:`_point_key` order along
    :func:`tie_frame`'s axes (``mask_zyx``: the lesion, cropped, its first voxel at ``offset_zyx`` of the volume): a
    point of the lesion itself, so the same however the scan is stored (flipped, permuted), cropped or moved. A voxel
    centre: sampling points through a point on a voxel face fall on faces along whole lines, where nearest-neighbour
    sampling splits ties one way."""
    kji = np.argwhere(mask_zyx) + np.asarray(offset_zyx, dtype=np.int64)
    points = voxel_centres_lps(kji.astype(np.float64), geometry)
    keys = np.round(points @ tie_frame(geometry), 4)  # frame.T @ point per row, as _point_key
    first = np.lexsort((keys[:, 2], keys[:, 1], keys[:, 0]))[0]
    return points[first]


def _lattice_grid(grid: Any, anchor_lps: np.ndarray) -> Any:
    """``grid`` (an :class:`~LiverTumorSegLib.inference.axis_aligned.AlignedGrid`) moved onto the lattice of its
    spacing through ``anchor_lps`` (:func:`first_voxel_centre`) and grown to cover the same box: its points no longer
    depend on where the box starts (so on neither the crop of the mask, the storage order nor where the scan lies)."""
    from ..inference.axis_aligned import AlignedGrid

    spacing = np.asarray(grid.geometry.spacing, dtype=np.float64)
    low = np.asarray(grid.geometry.origin, dtype=np.float64)
    high = low + spacing * (np.asarray(grid.shape_zyx[::-1], dtype=np.float64) - 1.0)
    start = anchor_lps + np.floor((low - anchor_lps) / spacing + 1e-6) * spacing
    counts_xyz = np.ceil((high - start) / spacing - 1e-6).astype(int) + 1
    lattice = ImageGeometry(spacing=tuple(float(s) for s in spacing), origin=tuple(float(v) for v in start))
    return AlignedGrid(geometry=lattice, shape_zyx=tuple(int(c) for c in counts_xyz[::-1]))


def _voxels_by_slice(kji: np.ndarray, axis: int) -> List[Tuple[float, np.ndarray]]:
    """``[(slice index, rows of kji in it)]`` of voxel indices ``kji`` ``(n, 3)`` (k, j, i), slices ascending, each
    slice's rows in their order in ``kji``: one stable sort. A boolean selection per slice read every voxel of the
    lesion once per slice: a confluent mass of 10 million voxels over 100 slices took 4.7 s to measure."""
    order = np.argsort(kji[:, axis], kind="stable")
    ordered = kji[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:, axis] != ordered[:-1, axis]])
    return [(ordered[start, axis], part) for start, part in zip(starts, np.split(ordered, starts[1:]))]


def _voxel_side(centre: np.ndarray, geometry: ImageGeometry, array_axis: int) -> Tuple[float, np.ndarray, np.ndarray]:
    """The side of the voxel at ``centre`` along ``array_axis``: (spacing mm, LPS start, LPS end)."""
    column = 2 - array_axis
    half = 0.5 * geometry.spacing[column] * geometry.direction_matrix[:, column]
    return (float(geometry.spacing[column]),) + _ordered_ends(centre - half, centre + half, tie_frame(geometry))


def _perpendicular_voxel(point: np.ndarray, a: np.ndarray, b: np.ndarray, geometry: ImageGeometry, axis: int
                         ) -> Tuple[float, np.ndarray, np.ndarray]:
    """One voxel across the long axis ``a -> b`` at ``point`` (a one-voxel-wide lesion)."""
    scaled = _scaled_axes(geometry)
    normal = scaled[:, 2 - axis] / np.linalg.norm(scaled[:, 2 - axis])
    v = np.cross(normal, (b - a) / np.linalg.norm(b - a))
    half = 0.5 * voxel_length_along(v, geometry, axis)
    return (2.0 * half,) + _ordered_ends(point - half * v, point + half * v, tie_frame(geometry))


def measurable_minimum_mm(slice_thickness_mm: float) -> float:
    """Smallest measurable long axis (mm) by RECIST 1.1: 10 mm, or twice the slice thickness above 5 mm (the
    thickness across the planes the lesions are measured in: :func:`axial_slice_thickness_mm`)."""
    return max(RECIST_MIN_LONG_AXIS_MM, 2.0 * float(slice_thickness_mm))


def axial_slice_thickness_mm(slice_thickness_mm: float, geometry: ImageGeometry) -> float:
    """The thickness (mm) RECIST 1.1's measurable minimum doubles (:func:`measurable_minimum_mm`): that of the
    slices across the planes the lesion is measured in, from ``slice_thickness_mm`` (:func:`recist_slice_thickness`,
    which applies across the stored slices).

    RECIST's rule is about the images the diameter is measured on: on slices thicker than 5 mm a lesion under two
    slices is too coarsely sampled across its measurement plane to be measured reliably. On a grid whose slices are
    tilted more than :data:`AXIAL_PLANES_TILT_DEGREES` from the axial plane the lesions are measured in true axial
    planes (:func:`lesion_axes`), each point of which takes the label of the stored slice it lies in: across those
    planes (along the patient's S axis) one stored slice of thickness t tilted by a covers t / cos(a), 5 mm slices
    tilted 30 degrees 5.773503 mm, so the minimum is 11.55 mm, where the stored 5 mm gave 10 mm. On a grid tilted
    less the lesions are measured in the stored slices, and the thickness is ``slice_thickness_mm``. Rounded to
    :data:`SLICE_THICKNESS_DECIMALS` places (a float32 NIfTI header's rounding left out)."""
    from ..validation import slice_tilt_degrees

    tilt = slice_tilt_degrees(geometry.direction_matrix)
    thickness = float(slice_thickness_mm)
    if tilt > AXIAL_PLANES_TILT_DEGREES:
        thickness /= float(np.cos(np.radians(tilt)))
    return round(thickness, SLICE_THICKNESS_DECIMALS)


def axial_slice_thickness_text(recist: Dict[str, Any]) -> str:
    """'' where a lesion report's ``recist`` has ``axial_slice_thickness_mm`` equal to ``slice_thickness_mm`` (or
    lacks it: older reports); else ', tilted 30 degrees from the axial plane: 5.774 mm along the
    head-foot axis, across the axial planes the lesions are measured in' (the tilt from the two thicknesses,
    :func:`axial_slice_thickness_mm`), to follow the words that name ``slice_thickness_mm``."""
    stored, axial = recist.get("slice_thickness_mm"), recist.get("axial_slice_thickness_mm")
    if stored is None or axial is None or equal_within_rounding(float(axial), float(stored)):
        return ""
    tilt = float(np.degrees(np.arccos(min(1.0, float(stored) / float(axial)))))
    return (f", tilted {tilt:.0f} degrees from the axial plane: {float(axial):.4g} mm along the head-foot axis, "
            f"across the axial planes the lesions are measured in")


SLICE_THICKNESS_DECIMALS = 6
"""Decimal places (mm) to which :func:`slice_thickness_mm` is given: a NIfTI header holds its voxel-to-world matrix in
float32 (about 7 significant digits), so the 5 mm slices of a grid tilted 5 degrees read 5.000000229 mm, and twice
that, 10.0000005 mm, put a lesion of 10.0 mm below the measurable minimum (not a target, while the report said
'measurable from 10 mm'); the same lesion on the untilted grid was one."""


def slice_thickness_mm(geometry: ImageGeometry) -> float:
    """Spacing (mm) along the axial array axis (the reconstructed slice distance), to
    :data:`SLICE_THICKNESS_DECIMALS` places (the float32 rounding of a NIfTI header's tilted axes left out)."""
    return round(float(geometry.spacing[2 - axial_axis_zyx(geometry)]), SLICE_THICKNESS_DECIMALS)


SLICE_THICKNESS_FROM_DICOM = "dicom"
SLICE_THICKNESS_FROM_DICOM_SEG = "dicom_seg"
SLICE_THICKNESS_FROM_SPACING = "slice spacing"
SLICE_THICKNESS_GIVEN = "given"
"""Where :func:`recist_slice_thickness` took the slice thickness from (the report's ``slice_thickness_source``):
the DICOM SliceThickness of the CT, that of a DICOM SEG label map (its Pixel Measures functional groups, when no
DICOM CT gives one: ``measure seg.dcm`` without ``--ct``), the spacing between slices, or the value the user gave
(``--slice-thickness-mm``; the Slicer panel gives the SliceThickness of the DICOM series a volume was loaded from)."""
SLICE_THICKNESS_SOURCE_WORDS = {SLICE_THICKNESS_FROM_DICOM: "DICOM SliceThickness",
                                SLICE_THICKNESS_FROM_DICOM_SEG: "DICOM SEG SliceThickness",
                                SLICE_THICKNESS_GIVEN: "given"}
"""How a summary line names a ``slice_thickness_source`` (others are named as they are, e.g. 'slice spacing')."""
SEG_SLICE_THICKNESS_META = "seg_slice_thickness_mm"
"""The key under which :func:`~LiverTumorSegLib.dicom_seg.read_dicom_seg` keeps a DICOM SEG's own SliceThickness
(mm) in the label map's ``meta``."""


def dicom_slice_thickness_of(ct: Optional[Any], labels: Optional[Any] = None) -> Tuple[Optional[float], str]:
    """``(thickness mm or None, source)`` for :func:`recist_slice_thickness`'s DICOM value of one scan: the CT's
    SliceThickness where the CT was read from DICOM (``ct.meta["dicom_slice_thickness_mm"]``, source
    :data:`SLICE_THICKNESS_FROM_DICOM`), else the label map's own where it is a DICOM SEG that gives one
    (``labels.meta[SEG_SLICE_THICKNESS_META]``, source :data:`SLICE_THICKNESS_FROM_DICOM_SEG`: a SEG records the
    thickness of the CT slices it was made on in its Pixel Measures); ``(None, "dicom")`` when neither does."""
    for volume, key, source in ((ct, "dicom_slice_thickness_mm", SLICE_THICKNESS_FROM_DICOM),
                                (labels, SEG_SLICE_THICKNESS_META, SLICE_THICKNESS_FROM_DICOM_SEG)):
        value = (getattr(volume, "meta", None) or {}).get(key) if volume is not None else None
        if value is not None:
            return float(value), source
    return None, SLICE_THICKNESS_FROM_DICOM
SLICE_THICKNESS_MAX_MM = 50.0
"""A given slice thickness must be below this (mm): no CT reconstruction is 5 cm thick; a value in cm or a slice
count typed by mistake is refused instead of lifting every lesion under 10 cm out of the measurable ones."""


def check_given_slice_thickness(value_mm: Optional[float], option: str = "--slice-thickness-mm") -> Optional[float]:
    """``value_mm`` as a float (mm) when it is a usable reconstruction thickness (finite, > 0, below
    :data:`SLICE_THICKNESS_MAX_MM`), None for None; else InputError naming ``option`` and what to give."""
    if value_mm is None:
        return None
    try:
        value = float(value_mm)
    except (TypeError, ValueError):
        value = float("nan")
    if not (np.isfinite(value) and 0.0 < value < SLICE_THICKNESS_MAX_MM):
        raise InputError(f"{option} must be the slice (reconstruction) thickness in mm, a number above 0 and below "
                         f"{SLICE_THICKNESS_MAX_MM:g} mm (got {value_mm!r}); e.g. {option} 5 for 5 mm slices, or "
                         f"leave it out to take the DICOM SliceThickness or the slice spacing.")
    return value


def recist_slice_thickness(geometry: ImageGeometry, dicom_slice_thickness_mm: Optional[float] = None,
                           given_slice_thickness_mm: Optional[float] = None,
                           dicom_source: str = SLICE_THICKNESS_FROM_DICOM) -> Tuple[float, str]:
    """``(thickness mm, source)`` of the axial slices for RECIST 1.1's measurable minimum
    (:func:`measurable_minimum_mm`), which speaks of the slice *thickness*, not the spacing between slices.

    ``dicom_slice_thickness_mm``: the SliceThickness (0018,0050) of the DICOM series ``geometry`` was read from, which
    applies along its slice axis, the array's first axis ``k`` (``(z, y, x)`` order). It is used (source
    :data:`SLICE_THICKNESS_FROM_DICOM`) when that axis is the axial one (:func:`axial_axis_zyx`); overlapping
    reconstructions (7 mm slices every 5 mm) are thicker than their spacing, and their minimum is 14 mm, not 10 mm.
    ``given_slice_thickness_mm``: a thickness the user gave for the same axis (``--slice-thickness-mm``, or the
    Slicer panel's DICOM SliceThickness); it wins over ``dicom_slice_thickness_mm`` (source
    :data:`SLICE_THICKNESS_GIVEN`) under the same rules. ``dicom_source``: the source named for a used
    ``dicom_slice_thickness_mm`` (:data:`SLICE_THICKNESS_FROM_DICOM_SEG` for a DICOM SEG's own,
    :func:`dicom_slice_thickness_of`).
    Otherwise (no value: NIfTI, NRRD, a label map alone; or sagittal/coronal slices, whose thickness is not
    the axial slices') the spacing along the axial axis (:func:`slice_thickness_mm`, source
    :data:`SLICE_THICKNESS_FROM_SPACING`). A gapped series, slices thinner than the spacing between them (1 mm
    slices every 7 mm), keeps the spacing (source :data:`SLICE_THICKNESS_FROM_SPACING`): RECIST's rule assumes
    contiguous slices, and a lesion between two thin slices is no better measured than on thick ones, so the
    minimum is never below what the spacing gives. Rounded to :data:`SLICE_THICKNESS_DECIMALS` places."""
    spacing_mm = slice_thickness_mm(geometry)
    stated_mm, source = ((given_slice_thickness_mm, SLICE_THICKNESS_GIVEN) if given_slice_thickness_mm is not None
                         else (dicom_slice_thickness_mm, dicom_source))
    if stated_mm is not None and np.isfinite(float(stated_mm)) and float(stated_mm) > 0 \
            and axial_axis_zyx(geometry) == 0:
        rounded_mm = round(float(stated_mm), SLICE_THICKNESS_DECIMALS)
        if rounded_mm >= spacing_mm:
            return rounded_mm, source
    return spacing_mm, SLICE_THICKNESS_FROM_SPACING


def given_slice_thickness_warning(geometry: ImageGeometry, given_slice_thickness_mm: Optional[float],
                                  option: str = "--slice-thickness-mm") -> str:
    """Why a given slice thickness (mm) was not used for RECIST's measurable minimum
    (:func:`recist_slice_thickness` took the slice spacing instead), '' when it was used or none was given. On slices
    tilted more than :data:`AXIAL_PLANES_TILT_DEGREES` from axial it names the thickness the minimum doubles, what a
    slice covers along S (:func:`axial_slice_thickness_mm`), and that minimum: it said 'judged from the 5 mm slice
    spacing' of 5 mm slices tilted 30 degrees, whose minimum is 11.547 mm, not 10 mm."""
    if given_slice_thickness_mm is None:
        return ""
    thickness, source = recist_slice_thickness(geometry, given_slice_thickness_mm=given_slice_thickness_mm)
    if source == SLICE_THICKNESS_GIVEN:
        return ""
    if axial_axis_zyx(geometry) != 0:
        why = ("the image's slices (its third voxel axis, k) are not axial, and RECIST's slice thickness is the "
               "axial slices'")
    else:
        why = (f"it is thinner than the {thickness:g} mm spacing between the slices (a gapped series: the minimum is "
               f"never below what the spacing gives)")
    # on slices tilted from axial the minimum doubles what a slice covers along S, not the stored spacing: name it
    axial = axial_slice_thickness_mm(thickness, geometry)
    tilted = axial_slice_thickness_text({"slice_thickness_mm": thickness, "axial_slice_thickness_mm": axial})
    if tilted:
        tilted += f" (measurable from {measurable_minimum_mm(axial):g} mm)"
    return (f"{option} {float(given_slice_thickness_mm):g} mm was not used: {why}; RECIST's measurable minimum was "
            f"judged from the {thickness:g} mm slice spacing{tilted}")


def select_target_lesions(lesions: Sequence[Dict[str, Any]], minimum_mm: float = RECIST_MIN_LONG_AXIS_MM,
                          max_targets: int = RECIST_MAX_TARGETS_PER_ORGAN) -> List[int]:
    """Ids of the RECIST 1.1 target lesions of one organ: up to ``max_targets`` lesions (dicts with ``id`` and
    ``long_axis_mm``) with long axis >= ``minimum_mm``, largest long axis first (ties: lower id). A lesion cut
    by the scan's edge (``touches_scan_edge``) is not chosen: its axes are lower bounds that move with the scan
    range, and RECIST 1.1 asks for target lesions suited to reproducible repeated measurement. Nor is a lesion whose
    axes in true axial planes are capped by a few thick slices of a grid tilted from axial
    (``axial_axes_limited_by_slices``, :func:`_slices_limit`), for the same reason: its axes are limited by slice
    thickness and tilt, not by the lesion (a 30 x 12 mm ellipse on one 5 mm slice tilted 25 degrees measured 16.1 x
    15.5 mm), and move with the reconstruction; it stays a non-target lesion. A lesion of water
    density (``water_density``, :mod:`~LiverTumorSegLib.inference.water_density`) comes after every other
    measurable lesion: RECIST 1.1 counts a simple cyst as neither target nor non-target, and prefers non-cystic
    lesions to cystic metastases as targets; it is chosen only where no other measurable lesion fills the place.
    A long axis of exactly ``minimum_mm`` is measurable, and long axes apart by float rounding only are equal (the
    lower id first), whatever the rounding (:data:`BOUNDARY_TOLERANCE`)."""
    measurable = [d for d in lesions if at_least(d["long_axis_mm"], minimum_mm) and not d.get("touches_scan_edge")
                  and not d.get("axial_axes_limited_by_slices")]
    solid = [d for d in measurable if not d.get("water_density")]
    water = [d for d in measurable if d.get("water_density")]
    ordered = largest_first_ties_by_id(solid, "long_axis_mm") + largest_first_ties_by_id(water, "long_axis_mm")
    return [int(d["id"]) for d in ordered[:max_targets]]


def meets_progression(baseline_mm: float, followup_mm: float) -> bool:
    """RECIST 1.1's progression rule for a size that grew from ``baseline_mm`` (> 0) to ``followup_mm``: at least
    +20 % and at least +5 mm, a change of exactly +20 % / +5 mm meeting it despite float rounding."""
    change = followup_mm - baseline_mm
    return at_least(change / baseline_mm, RECIST_PD_CHANGE) and at_least(change, RECIST_PD_ABSOLUTE_MM)


def recist_response(baseline_sum_mm: Optional[float], followup_sum_mm: Optional[float], new_lesion: bool,
                    followup_lesion_count: int, baseline_lesion_count: int,
                    nadir_sum_mm: Optional[float] = None,
                    nadir_complete_response: Optional[bool] = None) -> Tuple[str, str]:
    """RECIST 1.1 category and a one-line reason (see module doc).

    ``nadir_sum_mm``: the smallest sum of diameters of the same target lesions at an earlier follow-up (mm; None:
    none given). RECIST 1.1 measures progression from the smallest sum on study, the baseline's included, and
    partial response from the baseline: PD is then judged from the smaller of the two (a sum of 50 -> 30 -> 40 mm
    is PD at the second follow-up, +33 % and +10 mm from the nadir, where from the baseline alone it read SD). After
    a nadir of 0 (every target gone at an earlier follow-up) any rise is over +20 %, so targets measured again are PD
    from 5 mm by the sum rule; under 5 mm they are PD only when that follow-up was a complete response
    (``nadir_complete_response`` True: every lesion, targets and non-targets, had disappeared), after which any
    lesion that reappears is PD (the RECIST working group's FAQ, recist.eortc.org: lesions that disappear and
    reappear do not automatically result in PD unless the sum rule is met or CR was assigned at the previous
    assessment). Otherwise (None: not known; False: lesions remained) the sum rule decides, and a rise under 5 mm is
    PR or SD from the baseline; with None the reason says that it is PD if that follow-up was a CR.
    ``nadir_complete_response`` True also means: the targets' sum was 0 mm then (``nadir_sum_mm`` None is taken as
    0; above 0 is a ValueError), and any baseline lesion present again, a non-target too (``followup_lesion_count``
    > 0 with every target still gone, or without targets at baseline), is PD. A new lesion is judged by the new
    lesion rule also after a CR: the caller counts it in ``new_lesion`` when unequivocal, and an equivocal one
    (left out of ``followup_lesion_count``) is no reappearance: the CR stands until a later scan confirms it.

    ``baseline_sum_mm`` is None when the baseline has no target lesion; then the answer is PD (new lesion),
    CR (baseline lesions all gone), Non-CR/non-PD (non-target lesions persist, RECIST 1.1 Table 2) or NE (no
    lesion at either time point). ``followup_lesion_count`` counts the follow-up's lesions without the equivocal
    new ones (which neither make PD nor prevent CR). Changes of exactly -30 %, +20 % and +5 mm meet their rules.
    """
    if nadir_complete_response and nadir_sum_mm is not None and not at_most(nadir_sum_mm, 0.0):
        raise ValueError(f"a complete response leaves no target lesion, so its sum of diameters is 0 mm, not the "
                         f"nadir of {nadir_sum_mm:g} mm given with it")
    if new_lesion:
        return "PD", "new lesion"
    if followup_lesion_count == 0 and baseline_lesion_count > 0:
        return "CR", "all lesions disappeared"
    if baseline_sum_mm is None or baseline_sum_mm <= 0 or followup_sum_mm is None:
        without_targets = baseline_sum_mm is None or baseline_sum_mm <= 0
        if baseline_lesion_count > 0 and nadir_complete_response and without_targets:
            return "PD", "no measurable target lesion at baseline; " + REAPPEARED_AFTER_CR_TEXT
        if baseline_lesion_count > 0:
            return NON_CR_NON_PD, "no measurable target lesion at baseline; non-target lesions persist"
        return "NE", "no lesion at baseline"
    if nadir_complete_response and nadir_sum_mm is None:
        nadir_sum_mm = 0.0
    relative = (followup_sum_mm - baseline_sum_mm) / baseline_sum_mm
    places = change_places(baseline_sum_mm, followup_sum_mm)
    if nadir_sum_mm is not None and 0 < nadir_sum_mm < baseline_sum_mm:  # the nadir's pair is read too
        places = max(places, change_places(nadir_sum_mm, followup_sum_mm))
    text = (f"sum of diameters {baseline_sum_mm:.{places}f} -> {followup_sum_mm:.{places}f} mm "
            f"({percent_change_text(relative)})")
    if nadir_sum_mm is not None and nadir_sum_mm < baseline_sum_mm:  # PD from the nadir, PR from the baseline
        if nadir_sum_mm <= 0:
            if followup_sum_mm > 0:
                text += "; target lesion(s) measured again after a nadir of 0 mm"
                if at_least(followup_sum_mm, RECIST_PD_ABSOLUTE_MM) or nadir_complete_response:
                    return "PD", text + _reappearance_text(followup_sum_mm, nadir_complete_response)
                text += _reappearance_text(followup_sum_mm, nadir_complete_response)
            else:
                text += "; nadir 0 mm"
                if nadir_complete_response and followup_lesion_count > 0:  # every target still gone, others back
                    return "PD", text + "; target lesions still gone, but non-target " + REAPPEARED_AFTER_CR_TEXT
        else:
            from_nadir = (followup_sum_mm - nadir_sum_mm) / nadir_sum_mm
            text += f"; nadir {nadir_sum_mm:.{places}f} mm ({percent_change_text(from_nadir)} from it)"
            if meets_progression(nadir_sum_mm, followup_sum_mm):
                return "PD", text
            if at_least(from_nadir, RECIST_PD_CHANGE) and not at_most(relative, RECIST_PR_CHANGE):
                return "SD", text + (f"; up by {rise_text(followup_sum_mm - nadir_sum_mm)} mm from the nadir, under "
                                     f"the {RECIST_PD_ABSOLUTE_MM:g} mm PD needs")
    elif meets_progression(baseline_sum_mm, followup_sum_mm):
        return "PD", text
    if at_most(relative, RECIST_PR_CHANGE):
        return "PR", text
    if at_least(relative, RECIST_PD_CHANGE):  # up 20 % or more, but by under 5 mm: said, as it is not PD
        text += (f"; up by {rise_text(followup_sum_mm - baseline_sum_mm)} mm, under the {RECIST_PD_ABSOLUTE_MM:g} mm "
                 f"PD needs")
    return "SD", text


REAPPEARED_AFTER_CR_TEXT = ("lesion(s) of the baseline present again after the complete response given (every "
                            "lesion had disappeared): after a CR the reappearance of any lesion is PD (RECIST working "
                            "group FAQ)")
"""What :func:`recist_response`'s reason says of a baseline lesion, not a target, seen again after a complete
response (and, without targets at baseline, of any baseline lesion seen again)."""


def _reappearance_text(followup_sum_mm: float, nadir_complete_response: Optional[bool]) -> str:
    """What :func:`recist_response` adds to its reason for targets measured again (their sum ``followup_sum_mm``, mm)
    after a nadir of 0 mm. From :data:`RECIST_PD_ABSOLUTE_MM` on, the sum rule makes PD (from 0 mm any rise is over
    +20 %): nothing. Under it: PD as after a complete response (``nadir_complete_response`` True), else the rise
    missing the 5 mm PD needs, and (None: not known) that a CR at that follow-up would make it PD. A target back at
    4.0 mm read PD whether or not that follow-up was a CR, where RECIST 1.1 then applies the sum rule (the RECIST
    audit)."""
    if at_least(followup_sum_mm, RECIST_PD_ABSOLUTE_MM):
        return ""
    if nadir_complete_response:
        return (f" ({rise_text(followup_sum_mm)} mm, under the {RECIST_PD_ABSOLUTE_MM:g} mm the sum rule needs, but "
                f"every lesion had disappeared at that follow-up (CR), and after a CR any lesion that reappears is PD)")
    text = f"; up by {rise_text(followup_sum_mm)} mm from the nadir, under the {RECIST_PD_ABSOLUTE_MM:g} mm PD needs"
    if nadir_complete_response is None:
        text += (" (PD if that follow-up was a complete response, every lesion gone: after a CR any lesion that "
                 "reappears is PD)")
    return text


def text_short_of(value: float, minimum: float, decimals: int = 1) -> str:
    """``value`` as text to ``decimals`` places, or to as many as keep a value short of ``minimum`` below it
    (:func:`places_short_of`)."""
    return f"{float(value):.{places_short_of(value, minimum, decimals)}f}"


def rise_text(rise_mm: float) -> str:
    """A rise of a sum of diameters (mm) as text to 0.1 mm, or to as many places as keep a rise short of the
    :data:`RECIST_PD_ABSOLUTE_MM` PD needs below it (:func:`text_short_of`): +4.98 mm read 'up by 5.0 mm, under the
    5 mm PD needs'."""
    return text_short_of(rise_mm, RECIST_PD_ABSOLUTE_MM)


def percent_change_text(relative: float) -> str:
    """``relative`` (a fraction) as a signed percentage to 0.1 %, or to 0.01 % where 0.1 % would round it onto a
    rule's threshold it does not meet: +19.97 % read '+20.0 %' beside SD, -29.96 % '-30.0 %' beside SD (the
    follow-up audit)."""
    percent = 100.0 * relative
    text = f"{percent:+.1f} %"
    for threshold, met in ((100.0 * RECIST_PD_CHANGE, at_least(relative, RECIST_PD_CHANGE)),
                           (100.0 * RECIST_PR_CHANGE, at_most(relative, RECIST_PR_CHANGE))):
        if round(percent, 1) == round(threshold, 1) and not met:
            return f"{percent:+.2f} %"
    return text
