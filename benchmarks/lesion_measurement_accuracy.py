"""How exactly does ``livertumorseg segment`` report lesions of known geometry inserted into real CT?

    python benchmarks/lesion_measurement_accuracy.py --data DIR [--model default] [--seed 0]
        [--scenarios NAME,NAME] [--work DIR] [--json OUT]
        [--overwrite] [--device cpu] [--threads N]

``--data``: the folder holding TotalSegmentator's example CTs with their liver labels
(``example_ct_dicom20.nii.gz`` + ``example_ct_dicom20_liver.nii.gz``, ``example_ct_sm`` + ``_liver``,
``example_ct_full112`` + ``_liver_tsv1``: the team keeps them in its shared data folder, under ``data/totalsegmentator_examples``;
a fresh clone's ``Testing/Data`` holds the ``sm_3mm`` scenario's, so ``--data Testing/Data --scenarios sm_3mm``
runs there).

Each *scenario* takes one real CT, inserts hypodense lesions of known geometry inside its liver label and writes
the CT (same header, int16), then runs, as a user would,

    python -m LiverTumorSegLib segment CT -o seg.nii.gz --report r.json --no-progress --model M --device D
        --probabilities prob.nii.gz

and, on a label map made of the liver label (1) plus the *inserted* lesion masks (2),

    python -m LiverTumorSegLib measure truth_labels.nii.gz --ct CT -o truth_report.json

so that the measurement path is tested on a mask whose geometry is known exactly (no model in the way). Also:
the same report written as CSV (its numbers against the JSON's), ``measure`` of the written ``seg.nii.gz`` (the
segment report's numbers again: the report describes the file written), the inserted masks and the CT re-stored
flipped and transposed (``INVARIANCE_STORAGE``: every mm, RAS / LPS point, id and flag the same), and internal checks
of each report (axis end points, perpendicular axes, measurement slice -> S, LPS = RAS with x, y negated, ids by
volume, totals, RECIST targets).

Scenarios (``SCENARIOS``): the 20-slice contrast CT (0.98 x 0.98 x 2 mm, stored LPS as SimpleITK writes DICOM)
with spheres of 10-30 mm, ellipsoids of 30 x 15 x 12 mm along x, y and at 45 degrees, and lesions cut by the
first and the last slice; the same CT re-stored transposed and z-flipped, and on a grid turned 25 degrees about S;
the 3 mm CTs (stored RAS) with spheres and ellipsoids, one cut by the last slice. Every one of these patients is a
training case of the bundled model: the model error measured here is on CTs the model knows.

Lesions: spheres and ellipsoids in patient mm (RAS), axes along R, A, S or turned in the axial plane; filled with
the liver's median HU minus a contrast (40-60 HU) plus white noise of the liver's own noise level (estimated from
neighbouring-voxel differences), blended into the CT with a sigmoid edge of ``EDGE_MM`` (w = 0.5 on the ellipsoid's
surface). The *inserted mask* is the voxels whose centre lies inside the ellipsoid (w >= 0.5). Lesions are placed
(seeded) where the liver label extends at least ``MARGIN_MM`` beyond the lesion, not touching the scan's first or
last slice, except the lesions placed on purpose across the first or last slice (``edge`` = first / last).

Truth per lesion, computed here from the NIfTI affine (nibabel), not with the library:
* volume: analytic (4/3 pi a b c, or the part of the ellipsoid inside the scanned slab) and the inserted mask's
  voxel count x voxel volume;
* long / short axis: the ellipse cut by the scanned slice plane nearest the centre (``grid``: what a slice-based
  RECIST reading can see at best; the continuous 2a / 2b in brackets when they differ), and this script's own
  measurement of the inserted mask by the documented rule (largest voxel-centre distance in one axial slice plus one
  pixel length along it; short axis: widest extent across it, plus one pixel);
* centre: the ellipsoid's centre in RAS and LPS (x, y negated) mm; for a lesion cut by the scan edge, the
  analytic centroid of the part inside the slab; the inserted mask's mean voxel-centre position;
* ``touches_scan_edge``: the inserted mask reaches the array's first or last index along some axis;
* mean HU: the mean of the written CT over the inserted mask.

The predicted lesions (26-connected components of label 2 of ``seg.nii.gz``) are matched to inserted lesions by
overlap; per inserted lesion the script prints Dice (model error) and compares the report's numbers with (a) this
script's re-measurement of the same predicted component (measurement error: should agree to rounding) and (b) the
truth (both errors together). Output: tables per scenario (units in the headers), then a list of every discrepancy
beyond the tolerances printed with it, each tagged [measurement] or [model]. Run time on 2 CPU cores: about 2
minutes (6 segmentations of 10-20 s, 24 ``measure`` runs of 1-3 s).

Arrays here are nibabel's ``(x, y, z)`` = ``(i, j, k)`` order, the affine maps ``(i, j, k)`` to RAS mm.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from LiverTumorSegLib.argtypes import bounded_number  # noqa: E402
from LiverTumorSegLib.robust_stats import robust_std  # noqa: E402

EDGE_MM = 0.7
"""Sigmoid width (mm) of the lesion's soft edge: the blend weight is 1 / (1 + exp(d / EDGE_MM)), d the signed
distance (mm, > 0 outside) to the ellipsoid's surface."""
MARGIN_MM = 6.0
"""Liver (label) kept around every lesion placed inside the liver, mm."""
GAP_MM = 12.0
"""Smallest distance (mm) between two lesions' bounding spheres: apart enough that predictions do not merge."""


@dataclass
class LesionSpec:
    """One lesion to insert. ``semi_axes_mm``: (a, b, c) mm along the lesion's own axes; a, b in the axial plane,
    a along RAS +x (towards the patient's right) turned by ``angle_deg`` about S (towards +y, anterior), c along S.
    ``edge``:
    "" (inside the liver and the scan), "first" or "last" (cut by the scan's first / last slice of the stored array;
    its centre then lies ``edge_offset_slices`` slices inward from that slice's centre, negative = outside the
    scan). ``contrast_hu``: lesion HU = liver median - contrast."""

    name: str
    semi_axes_mm: Tuple[float, float, float]
    contrast_hu: float = 50.0
    angle_deg: float = 0.0
    edge: str = ""
    edge_offset_slices: float = 1.3


@dataclass
class Scenario:
    """A CT (``ct``, ``label`` file names in ``--data``) with the lesions inserted into it together."""

    name: str
    ct: str
    label: str
    lesions: List[LesionSpec] = field(default_factory=list)
    storage: Tuple[str, ...] = ()
    """Re-store CT and label (same patient-space content, other voxel order) before inserting: "flip_i", "flip_j",
    "flip_k" (reverse that index axis), "swap_ij" (transpose i and j), "rot_s_DEG" (the grid turned by DEG degrees about
    S: an in-plane rotated direction matrix); applied in order (:func:`restore_order`)."""


SCENARIOS = {
    s.name: s for s in [
        Scenario("dicom20_spheres", "example_ct_dicom20.nii.gz", "example_ct_dicom20_liver.nii.gz", [
            LesionSpec("sphere30", (15.0, 15.0, 15.0), 50.0),
            LesionSpec("sphere20", (10.0, 10.0, 10.0), 45.0),
            LesionSpec("sphere10", (5.0, 5.0, 5.0), 60.0),
            LesionSpec("sphere20_first_slice", (10.0, 10.0, 10.0), 55.0, edge="first", edge_offset_slices=1.3),
        ]),
        Scenario("dicom20_ellipsoids", "example_ct_dicom20.nii.gz", "example_ct_dicom20_liver.nii.gz", [
            LesionSpec("ellipsoid_x_30x15x12", (15.0, 7.5, 6.0), 50.0),
            LesionSpec("ellipsoid_y_15x30x12", (15.0, 7.5, 6.0), 50.0, angle_deg=90.0),
            LesionSpec("ellipsoid_45deg_30x15x12", (15.0, 7.5, 6.0), 55.0, angle_deg=45.0),
            LesionSpec("sphere16_beyond_last_slice", (8.0, 8.0, 8.0), 60.0, edge="last", edge_offset_slices=-1.0),
        ]),
        Scenario("sm_3mm", "example_ct_sm.nii.gz", "example_ct_sm_liver.nii.gz", [
            LesionSpec("sphere24", (12.0, 12.0, 12.0), 50.0),
            LesionSpec("ellipsoid_x_30x15x15", (15.0, 7.5, 7.5), 55.0),
            LesionSpec("ellipsoid_y_15x30x15", (15.0, 7.5, 7.5), 55.0, angle_deg=90.0),
            LesionSpec("sphere20_last_slice", (10.0, 10.0, 10.0), 50.0, edge="last", edge_offset_slices=1.3),
        ]),
        Scenario("dicom20_restored_swap_ij_flip_k", "example_ct_dicom20.nii.gz", "example_ct_dicom20_liver.nii.gz", [
            LesionSpec("ellipsoid_x_30x15x12", (15.0, 7.5, 6.0), 50.0),
            LesionSpec("ellipsoid_y_15x30x12", (15.0, 7.5, 6.0), 50.0, angle_deg=90.0),
            LesionSpec("sphere20_first_slice", (10.0, 10.0, 10.0), 55.0, edge="first", edge_offset_slices=1.3),
        ], storage=("swap_ij", "flip_k")),
        Scenario("dicom20_rotated_25deg", "example_ct_dicom20.nii.gz", "example_ct_dicom20_liver.nii.gz", [
            LesionSpec("ellipsoid_x_30x15x12", (15.0, 7.5, 6.0), 50.0),
            LesionSpec("ellipsoid_y_15x30x12", (15.0, 7.5, 6.0), 50.0, angle_deg=90.0),
            LesionSpec("sphere20", (10.0, 10.0, 10.0), 50.0),
        ], storage=("rot_s_25",)),
        Scenario("full112_3mm", "example_ct_full112.nii.gz", "example_ct_full112_liver_tsv1.nii.gz", [
            LesionSpec("sphere30", (15.0, 15.0, 15.0), 50.0),
            LesionSpec("sphere20", (10.0, 10.0, 10.0), 50.0),
            LesionSpec("sphere10", (5.0, 5.0, 5.0), 60.0),
        ]),
    ]
}


# ------------------------------------------------------------------------------------------ geometry helpers
def restore_order(data: np.ndarray, affine: np.ndarray, storage: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
    """``(data, affine)`` stored in another voxel order with the same patient-space content: each step of
    ``storage`` ("flip_i", "flip_j", "flip_k", "swap_ij") reorders the ``(i, j, k)`` array and changes the 4x4
    voxel-to-RAS ``affine`` so that every voxel keeps its RAS position; "rot_s_DEG" keeps the voxels and turns the
    grid by DEG degrees about S through the volume's centre (the patient turned in the scanner's frame)."""
    data, affine = np.asarray(data), np.array(affine, dtype=np.float64, copy=True)
    for step in storage:
        if step.startswith("flip_"):
            axis = "ijk".index(step[-1])
            n = data.shape[axis]
            data = np.flip(data, axis=axis)
            affine[:3, 3] = affine[:3, 3] + affine[:3, axis] * (n - 1)
            affine[:3, axis] = -affine[:3, axis]
        elif step == "swap_ij":
            data = np.swapaxes(data, 0, 1)
            affine[:, [0, 1]] = affine[:, [1, 0]]
        elif step.startswith("rot_s_"):  # the grid turned about S through the volume's centre (voxels unchanged)
            t = math.radians(float(step[len("rot_s_"):]))
            rot = np.array([[math.cos(t), -math.sin(t), 0.0], [math.sin(t), math.cos(t), 0.0], [0.0, 0.0, 1.0]])
            centre = affine[:3, :3] @ ((np.array(data.shape[:3], dtype=np.float64) - 1) / 2) + affine[:3, 3]
            affine[:3, :3] = rot @ affine[:3, :3]
            affine[:3, 3] = rot @ (affine[:3, 3] - centre) + centre
        else:
            raise ValueError(f"unknown storage step {step!r}")
    return np.ascontiguousarray(data), affine
def voxel_centres_ras(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    """RAS mm of voxel indices ``ijk`` ``(n, 3)`` (nibabel order i, j, k) under the 4x4 ``affine``."""
    ijk = np.asarray(ijk, dtype=np.float64).reshape(-1, 3)
    return ijk @ np.asarray(affine, dtype=np.float64)[:3, :3].T + np.asarray(affine, dtype=np.float64)[:3, 3]


def ras_to_lps(ras: Sequence[float]) -> np.ndarray:
    """LPS mm of a RAS point (x and y negated)."""
    ras = np.asarray(ras, dtype=np.float64)
    return ras * np.array([-1.0, -1.0, 1.0])


def axial_axis(affine: np.ndarray) -> int:
    """Index axis (0 = i, 1 = j, 2 = k) whose direction is closest to the S axis."""
    m = np.asarray(affine, dtype=np.float64)[:3, :3]
    return int(np.argmax(np.abs(m[2, :]) / np.linalg.norm(m, axis=0)))


def lesion_frame(angle_deg: float) -> np.ndarray:
    """3x3 matrix whose rows are the lesion's unit axes (a, b, c) in RAS: a = +x turned by ``angle_deg`` about S."""
    t = math.radians(angle_deg)
    return np.array([[math.cos(t), math.sin(t), 0.0], [-math.sin(t), math.cos(t), 0.0], [0.0, 0.0, 1.0]])


def ellipsoid_signed_distance(points_ras: np.ndarray, centre_ras: Sequence[float], semi_axes: Sequence[float],
                              angle_deg: float = 0.0) -> Tuple[np.ndarray, np.ndarray]:
    """``(rho, d)`` per point ``(n, 3)`` RAS mm: ``rho`` the normalised radius (<= 1 inside the ellipsoid) and ``d``
    a first-order signed distance to its surface (mm, exact for a sphere, > 0 outside)."""
    local = (np.asarray(points_ras, dtype=np.float64) - np.asarray(centre_ras, dtype=np.float64)) @ \
        lesion_frame(angle_deg).T
    axes = np.asarray(semi_axes, dtype=np.float64)
    q = local / axes
    rho = np.sqrt((q ** 2).sum(axis=1))
    grad = np.linalg.norm(local / axes ** 2, axis=1)  # |grad rho^2| / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(grad > 0, (rho - 1.0) * rho / np.maximum(grad, 1e-12), -float(axes.min()))
    return rho, d


def truncated_ellipsoid(semi_axes: Sequence[float], z_lo: float, z_hi: float) -> Tuple[float, float]:
    """``(volume mm^3, z of its centroid)`` of the axis-aligned ellipsoid (a, b, c) centred at 0 between the planes
    ``z_lo <= z <= z_hi`` (mm along c); (0, nan) when they miss it."""
    a, b, c = (float(v) for v in semi_axes)
    lo, hi = max(-c, float(z_lo)), min(c, float(z_hi))
    if hi <= lo:
        return 0.0, float("nan")
    area = math.pi * a * b

    def v(z: float) -> float:
        return z - z ** 3 / (3 * c * c)

    def m(z: float) -> float:
        return z * z / 2 - z ** 4 / (4 * c * c)
    volume = area * (v(hi) - v(lo))
    return volume, area * (m(hi) - m(lo)) / volume


def true_axes_on_slices(semi_axes: Sequence[float], centre_s: float, slice_s: Sequence[float]
                        ) -> Tuple[float, float, int]:
    """``(long mm, short mm, slice index)``: the ellipse the scanned slice plane nearest the centre (S, mm) cuts from
    the ellipsoid (a, b in plane, c along S): ``2 max(a, b) f`` and ``2 min(a, b) f``, f = sqrt(1 - (dz / c)^2);
    (0, 0, index) when no slice plane cuts it."""
    a, b, c = (float(v) for v in semi_axes)
    slice_s = np.asarray(slice_s, dtype=np.float64)
    index = int(np.argmin(np.abs(slice_s - centre_s)))
    dz = abs(float(slice_s[index]) - centre_s)
    if dz >= c:
        return 0.0, 0.0, index
    f = math.sqrt(1.0 - (dz / c) ** 2)
    return 2 * max(a, b) * f, 2 * min(a, b) * f, index


def pixel_length_along(direction_ras: np.ndarray, affine: np.ndarray, axis: int) -> float:
    """Length (mm) of one pixel step along the in-plane unit vector ``direction_ras``: sqrt of the sum over the two
    in-plane index axes of (component along the axis x its spacing)^2 (the documented RECIST rule)."""
    m = np.asarray(affine, dtype=np.float64)[:3, :3]
    total = 0.0
    for col in range(3):
        if col == axis:
            continue
        spacing = float(np.linalg.norm(m[:, col]))
        total += (float(np.dot(direction_ras, m[:, col] / spacing)) * spacing) ** 2
    return math.sqrt(total)


def _farthest(points: np.ndarray) -> Tuple[int, int, float]:
    """Brute force (hull first when large): indices and distance of the two rows farthest apart."""
    if len(points) < 2:
        return 0, 0, 0.0
    idx = np.arange(len(points))
    if len(points) > 50:
        try:
            from scipy.spatial import ConvexHull

            idx = ConvexHull(points[:, :2] if np.ptp(points[:, 2]) < 1e-9 else points).vertices
        except Exception:  # noqa: BLE001 - collinear: all points
            idx = np.arange(len(points))
    p = points[idx]
    d2 = ((p[:, None, :] - p[None, :, :]) ** 2).sum(-1)
    a, b = np.unravel_index(int(np.argmax(d2)), d2.shape)
    return int(idx[a]), int(idx[b]), float(math.sqrt(d2[a, b]))


def measure_mask(mask_xyz: np.ndarray, affine: np.ndarray, hu_xyz: Optional[np.ndarray] = None,
                 long_axis_ras: Optional[Sequence[Sequence[float]]] = None) -> Dict[str, Any]:
    """This script's own measurement of one boolean lesion mask ``(x, y, z)`` (nibabel order) under ``affine``:
    ``volume_ml``, ``voxels``, ``centroid_ras_mm`` / ``centroid_lps_mm`` (mean voxel centre), ``long_axis_mm`` /
    ``short_axis_mm`` (documented rule: in the axial slice with the largest voxel-centre distance, that distance plus
    one pixel length along it; short: widest extent across the long axis within bins of the largest in-plane
    spacing along it, plus one pixel length across), ``long_dir_ras`` (unit vector), ``slice_s_mm`` (S of the
    measurement slice), ``touches_scan_edge`` and ``mean_hu``.

    ``long_axis_ras``: a report's long-axis end points (RAS mm): the short axis is then taken across *that*
    direction in *that* slice (a sphere has many equally long diameters; the report picks one by its own tie rule),
    so the two short axes measure the same chord."""
    mask = np.asarray(mask_xyz, dtype=bool)
    affine = np.asarray(affine, dtype=np.float64)
    ijk = np.argwhere(mask)
    if len(ijk) == 0:
        raise ValueError("empty mask")
    ras = voxel_centres_ras(affine, ijk)
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    axis = axial_axis(affine)
    best = None
    per_slice = {}
    for value in np.unique(ijk[:, axis]):
        sel = ijk[:, axis] == value
        pts = ras[sel]
        a, b, dist = _farthest(pts)
        per_slice[round(float(pts[0][2]), 3)] = dist
        key = (round(dist, 6), int(sel.sum()))
        if best is None or key > best[0]:
            best = (key, value, pts, a, b, dist)
    _, value, pts, a, b, dist = best
    in_plane_spacings = [float(np.linalg.norm(affine[:3, c])) for c in range(3) if c != axis]
    if dist == 0.0:
        u = affine[:3, [c for c in range(3) if c != axis][0]]
        u = u / np.linalg.norm(u)
        long_mm = pixel_length_along(u, affine, axis)
    else:
        u = (pts[b] - pts[a]) / dist
        long_mm = dist + pixel_length_along(u, affine, axis)
    origin, short_u, short_pts = pts[a], u, pts
    if long_axis_ras is not None:
        p, q = (np.asarray(x, dtype=np.float64) for x in long_axis_ras)
        if np.linalg.norm(q - p) > 0:
            short_u = (q - p) / np.linalg.norm(q - p)
            k = np.rint(np.linalg.solve(affine[:3, :3], 0.5 * (p + q) - affine[:3, 3]))[axis]
            short_pts = ras[ijk[:, axis] == k]
            origin = p + 0.5 * pixel_length_along(short_u, affine, axis) * short_u  # the voxel centre at that end
    normal = affine[:3, axis] / np.linalg.norm(affine[:3, axis])
    v = np.cross(normal, short_u)
    v /= np.linalg.norm(v)
    rel = short_pts - origin
    s_bins = np.rint((rel @ short_u) / max(in_plane_spacings)).astype(int)
    t = rel @ v
    short_c = max(float(t[s_bins == s].max() - t[s_bins == s].min()) for s in np.unique(s_bins))
    short_mm = (short_c if len(short_pts) > 1 else 0.0) + pixel_length_along(v, affine, axis)
    centroid = ras.mean(axis=0)
    return {
        "voxels": int(len(ijk)), "volume_ml": len(ijk) * voxel_ml,
        "centroid_ras_mm": centroid.tolist(), "centroid_lps_mm": ras_to_lps(centroid).tolist(),
        "long_axis_mm": long_mm, "long_axis_voxel_centres_mm": dist, "short_axis_mm": short_mm,
        "long_dir_ras": u.tolist(), "slice_s_mm": float(pts[0][2]), "slice_longest_mm": per_slice,
        "touches_scan_edge": bool((ijk.min(axis=0) == 0).any() or (ijk.max(axis=0) == np.array(mask.shape) - 1).any()),
        "mean_hu": None if hu_xyz is None else float(np.asarray(hu_xyz)[mask].astype(np.float64).mean()),
    }


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks (1.0 when both are empty)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def liver_noise_hu(hu: np.ndarray, liver: np.ndarray) -> float:
    """White-noise std (HU) of the CT inside the liver: robust std (1.4826 MAD) of the differences of neighbouring
    voxels along the first and the second axis within the liver, / sqrt(2) (the mean of the two axes: the same
    number whichever in-plane axis is stored first)."""
    values = []
    for axis in (0, 1):
        a, b = (np.moveaxis(x, axis, 0) for x in (hu, liver))
        both = b[1:] & b[:-1]
        diff = (a[1:].astype(np.float64) - a[:-1].astype(np.float64))[both]
        values.append(robust_std(diff) / math.sqrt(2.0))
    return float(np.mean(values))


# ------------------------------------------------------------------------------------------ placement, insertion
@dataclass
class Inserted:
    """One inserted lesion: its spec, centre (RAS mm), mask (x, y, z) and truth numbers."""

    spec: LesionSpec
    centre_ras: np.ndarray
    mask: np.ndarray
    target_hu: float
    truth: Dict[str, Any] = field(default_factory=dict)


def slice_positions_s(affine: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """S (mm) of every slice plane along the axial index axis (the voxel centres' S, axis-aligned grids)."""
    axis = axial_axis(affine)
    idx = np.zeros((shape[axis], 3))
    idx[:, axis] = np.arange(shape[axis])
    return voxel_centres_ras(affine, idx)[:, 2]


def place_lesions(liver: np.ndarray, affine: np.ndarray, specs: Sequence[LesionSpec], rng: np.random.Generator
                  ) -> List[np.ndarray]:
    """Centres (RAS mm) for ``specs`` inside the liver mask ``(x, y, z)``: the liver label reaches at least the lesion's
    largest semi-axis + ``MARGIN_MM`` around the centre (the scan's first/last slices do not count as liver edge:
    the mask is extended beyond them), lesions ``GAP_MM`` apart; an inside lesion keeps at least one free slice
    to the scan's first/last slice, an edge lesion's centre lies ``edge_offset_slices`` inward from that slice."""
    from scipy import ndimage

    axis = axial_axis(affine)
    if axis != 2:
        raise ValueError("this benchmark expects axial slices along the third (k) axis")
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    pad = int(math.ceil(40.0 / spacing[2]))
    ext = np.pad(liver, ((0, 0), (0, 0), (pad, pad)), mode="edge")
    box = ndimage.find_objects(ext.astype(np.uint8))[0]
    box = tuple(slice(max(0, b.start - 3), min(n, b.stop + 3)) for b, n in zip(box, ext.shape))
    edt = np.zeros(ext.shape, dtype=np.float32)
    edt[box] = ndimage.distance_transform_edt(ext[box], sampling=spacing)
    edt = edt[:, :, pad:pad + liver.shape[2]]
    nz = liver.shape[2]
    centres: List[np.ndarray] = []
    radii: List[float] = []
    for spec in specs:
        r = max(spec.semi_axes_mm)
        c = spec.semi_axes_mm[2]
        ok = edt >= r + MARGIN_MM
        k = np.arange(nz)
        if spec.edge == "":
            k_ok = (k * spacing[2] - c >= spacing[2]) & ((nz - 1 - k) * spacing[2] - c >= spacing[2])
        else:
            k_target = spec.edge_offset_slices if spec.edge == "first" else nz - 1 - spec.edge_offset_slices
            k_ok = k == int(np.clip(round(k_target), 0, nz - 1))
        ok &= k_ok[None, None, :]
        cand = np.argwhere(ok)
        if len(cand):
            pts = voxel_centres_ras(affine, cand)
            far = np.ones(len(cand), dtype=bool)
            for centre, radius in zip(centres, radii):
                far &= np.linalg.norm(pts - centre, axis=1) >= r + radius + GAP_MM
            cand = cand[far]
        if not len(cand):
            raise RuntimeError(f"no room for lesion {spec.name} ({r:g} mm + {MARGIN_MM:g} mm margin) in this liver")
        ijk = cand[int(rng.integers(len(cand)))].astype(np.float64)
        ijk[:2] += rng.uniform(-0.5, 0.5, 2)
        if spec.edge == "":
            ijk[2] += rng.uniform(-0.5, 0.5)
        else:
            ijk[2] = spec.edge_offset_slices if spec.edge == "first" else nz - 1 - spec.edge_offset_slices
        centres.append(voxel_centres_ras(affine, ijk[None])[0])
        radii.append(r)
    return centres


def insert_lesions(hu: np.ndarray, liver: np.ndarray, affine: np.ndarray, specs: Sequence[LesionSpec],
                   rng: np.random.Generator) -> Tuple[np.ndarray, List[Inserted], Dict[str, float]]:
    """``(new HU int16 (x, y, z), inserted lesions, facts)``: the lesions of ``specs`` blended into ``hu``."""
    centres = place_lesions(liver, affine, specs, rng)
    median = float(np.median(hu[liver]))
    noise = liver_noise_hu(hu, liver)
    out = hu.astype(np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    inserted = []
    for spec, centre in zip(specs, centres):
        reach = max(spec.semi_axes_mm) + 6 * EDGE_MM + 2 * float(spacing.max())
        lo = np.floor(np.linalg.solve(affine[:3, :3], centre - affine[:3, 3]) - reach / spacing).astype(int)
        hi = np.ceil(np.linalg.solve(affine[:3, :3], centre - affine[:3, 3]) + reach / spacing).astype(int) + 1
        lo, hi = np.maximum(lo, 0), np.minimum(hi, hu.shape)
        grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), axis=-1).reshape(-1, 3)
        rho, d = ellipsoid_signed_distance(voxel_centres_ras(affine, grid), centre, spec.semi_axes_mm, spec.angle_deg)
        w = 1.0 / (1.0 + np.exp(np.clip(d / EDGE_MM, -50, 50)))
        target = median - spec.contrast_hu
        fill = target + rng.normal(0.0, noise, len(grid))
        sub = tuple(slice(a, b) for a, b in zip(lo, hi))
        shape = tuple(b - a for a, b in zip(lo, hi))
        out[sub] = (1 - w.reshape(shape)) * out[sub] + w.reshape(shape) * fill.reshape(shape)
        mask = np.zeros(hu.shape, dtype=bool)
        mask[sub] = (rho <= 1.0).reshape(shape)
        inserted.append(Inserted(spec, centre, mask, target))
    for i, a in enumerate(inserted):
        for b in inserted[i + 1:]:
            if (a.mask & b.mask).any():
                raise RuntimeError(f"lesions {a.spec.name} and {b.spec.name} overlap")
    new_hu = np.clip(np.rint(out), -32768, 32767).astype(np.int16)
    return new_hu, inserted, {"liver_median_hu": median, "liver_noise_hu": noise}


def truth_of(les: Inserted, affine: np.ndarray, shape: Sequence[int], hu: np.ndarray) -> Dict[str, Any]:
    """Truth numbers of one inserted lesion (see module doc)."""
    spacing = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    s_planes = slice_positions_s(affine, shape)
    half = 0.5 * spacing[2]
    slab_lo, slab_hi = float(s_planes.min()) - half, float(s_planes.max()) + half
    a, b, c = les.spec.semi_axes_mm
    volume, z_centroid = truncated_ellipsoid((a, b, c), slab_lo - les.centre_ras[2], slab_hi - les.centre_ras[2])
    long_grid, short_grid, slice_index = true_axes_on_slices((a, b, c), float(les.centre_ras[2]), s_planes)
    frame = lesion_frame(les.spec.angle_deg)
    long_dir = frame[0] if a >= b else frame[1]
    centroid_true = np.array(les.centre_ras, dtype=np.float64)
    centroid_true[2] += z_centroid
    mine = measure_mask(les.mask, affine, hu)
    cut = slab_lo > les.centre_ras[2] - c or slab_hi < les.centre_ras[2] + c
    return {
        "volume_analytic_ml": volume / 1000.0, "volume_full_ellipsoid_ml": 4 / 3 * math.pi * a * b * c / 1000.0,
        "volume_mask_ml": mine["volume_ml"], "voxels_mask": mine["voxels"],
        "pv_shell_ml": (truncated_ellipsoid((a + half, b + half, c + half), slab_lo - les.centre_ras[2],
                                            slab_hi - les.centre_ras[2])[0] - volume) / 1000.0,
        "long_grid_mm": long_grid, "short_grid_mm": short_grid, "long_continuous_mm": 2 * max(a, b),
        "short_continuous_mm": 2 * min(a, b), "nearest_slice_s_mm": float(s_planes[slice_index]),
        "long_dir_ras": long_dir.tolist(),
        "centre_ras_mm": [float(x) for x in les.centre_ras], "centre_lps_mm": ras_to_lps(les.centre_ras).tolist(),
        "centroid_analytic_ras_mm": centroid_true.tolist(), "cut_by_scan": bool(cut),
        "mask": mine, "target_hu": les.target_hu,
    }


# ------------------------------------------------------------------------------------------ running the tool
def run_tool(args: Sequence[str], log: Path) -> None:
    """``python -m LiverTumorSegLib ARGS`` in a child process; RuntimeError with its output when it fails."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run([sys.executable, "-m", "LiverTumorSegLib"] + list(args), cwd=str(ROOT), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    log.write_text(proc.stdout, encoding="utf-8")
    if proc.returncode != 0:
        raise RuntimeError(f"livertumorseg {' '.join(args[:1])} failed (exit {proc.returncode}):\n{proc.stdout}")


def components(mask: np.ndarray) -> Tuple[np.ndarray, int]:
    """26-connected components of a boolean ``(x, y, z)`` mask (scipy)."""
    from scipy import ndimage

    return ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))


def report_lesion_for(comp_mask: np.ndarray, report: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The report's lesion whose ``bounding_box_zyx`` (stored (z, y, x) = (k, j, i) order) and voxel count are those of
    ``comp_mask`` ``(x, y, z)``; None when none is."""
    ijk = np.argwhere(comp_mask)
    box_kji = [[int(ijk[:, c].min()), int(ijk[:, c].max()) + 1] for c in (2, 1, 0)]
    for lesion in report.get("lesions", []):
        if lesion["bounding_box_zyx"] == box_kji and lesion["voxel_count"] == len(ijk):
            return lesion
    return None


def evaluate_scenario(scenario: Scenario, data: Path, work: Path, model: str, device: str, threads: Optional[int],
                      rng: np.random.Generator) -> Dict[str, Any]:
    """Insert, segment, measure and compare one scenario; returns all numbers (JSON-ready)."""
    import nibabel as nib

    ct_img = nib.load(str(data / scenario.ct))
    lab_img = nib.load(str(data / scenario.label))
    if not np.allclose(ct_img.affine, lab_img.affine, atol=1e-3) or ct_img.shape != lab_img.shape:
        raise RuntimeError(f"{scenario.label} is not on the grid of {scenario.ct}")
    affine = np.asarray(ct_img.affine, dtype=np.float64)
    hu = np.asarray(ct_img.dataobj)
    liver = np.asarray(lab_img.dataobj) > 0
    if scenario.storage:
        hu, new_affine = restore_order(hu, affine, scenario.storage)
        liver, _ = restore_order(liver, affine, scenario.storage)
        affine = new_affine
    new_hu, inserted, facts = insert_lesions(hu, liver, affine, scenario.lesions, rng)
    folder = work / scenario.name
    folder.mkdir(parents=True, exist_ok=False)
    header = ct_img.header.copy()
    header.set_data_dtype(np.int16)
    ct_path = folder / "ct.nii.gz"
    out_img = nib.Nifti1Image(new_hu, affine, header)
    out_img.header.set_data_shape(new_hu.shape)
    out_img.set_sform(affine, int(ct_img.header["sform_code"]))
    out_img.set_qform(affine, int(ct_img.header["qform_code"]))
    nib.save(out_img, str(ct_path))
    # measure on the grid as written (float32 header fields): a turned grid's float64 affine differed from it by
    # 1e-7 of a voxel's volume
    affine = np.asarray(nib.load(str(ct_path)).affine, dtype=np.float64)
    truth_labels = liver.astype(np.uint8)
    for les in inserted:
        truth_labels[les.mask] = 2
        les.truth = truth_of(les, affine, hu.shape, new_hu)
    truth_path = folder / "truth_labels.nii.gz"
    nib.save(nib.Nifti1Image(truth_labels, affine, header.copy()), str(truth_path))
    seg_path, report_path, truth_report_path = folder / "seg.nii.gz", folder / "r.json", folder / "truth_report.json"
    prob_path = folder / "prob.nii.gz"
    seg_args = ["segment", str(ct_path), "-o", str(seg_path), "--report", str(report_path), "--no-progress",
                "--model", model, "--device", device, "--probabilities", str(prob_path)]
    if threads:
        seg_args += ["--threads", str(threads)]
    run_tool(seg_args, folder / "segment.log")
    run_tool(["measure", str(truth_path), "--ct", str(ct_path), "-o", str(truth_report_path)], folder / "measure.log")
    run_tool(["measure", str(truth_path), "--ct", str(ct_path), "-o", str(folder / "truth_report.csv")],
             folder / "measure_csv.log")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    truth_report = json.loads(truth_report_path.read_text(encoding="utf-8"))
    csv_problems = compare_csv(truth_report, folder / "truth_report.csv")
    # the written label map measured again (`measure` reads seg.nii.gz): the segment report's numbers
    run_tool(["measure", str(seg_path), "--ct", str(ct_path), "-o", str(folder / "seg_measure.json")],
             folder / "measure_seg.log")
    seg_measure_problems = compare_reports(report, json.loads((folder / "seg_measure.json").read_text("utf-8")),
                                           same_grid=True)
    # the inserted masks and the CT stored in another voxel order: the same report (ids, mm, RAS/LPS, HU)
    other = folder / "restored"
    other.mkdir()
    other_affine = None
    for name, array in (("ct.nii.gz", new_hu), ("truth_labels.nii.gz", truth_labels)):
        data, other_affine = restore_order(array, affine, INVARIANCE_STORAGE)
        img = nib.Nifti1Image(data, other_affine)
        img.set_sform(other_affine, 1)
        img.set_qform(other_affine, 1)
        nib.save(img, str(other / name))
    run_tool(["measure", str(other / "truth_labels.nii.gz"), "--ct", str(other / "ct.nii.gz"), "-o",
              str(other / "truth_report.json")], other / "measure.log")
    restored_report = json.loads((other / "truth_report.json").read_text("utf-8"))
    storage_problems = compare_reports(truth_report, restored_report, same_grid=False)
    seg_img = nib.load(str(seg_path))
    if not np.allclose(seg_img.affine, affine, atol=1e-4):
        raise RuntimeError(f"seg.nii.gz affine {seg_img.affine.tolist()} differs from the CT's {affine.tolist()}")
    seg = np.asarray(seg_img.dataobj)
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    pred_comp, pred_count = components(seg == 2)
    truth_comp, _ = components(truth_labels == 2)
    rows = []
    used = set()
    for les in inserted:
        t = les.truth
        # measure on the inserted mask: the truth report's lesion of that component
        m = report_lesion_for(les.mask, truth_report)
        if m is not None:  # the short axis across the report's own long axis (module doc of measure_mask)
            t["mask_short_across_report_long_mm"] = measure_mask(
                les.mask, affine, None, m["long_axis"]["end_points_ras_mm"])["short_axis_mm"]
        hits = sorted(set(np.unique(pred_comp[les.mask])) - {0})
        used.update(hits)
        pred_mask = np.isin(pred_comp, hits) if hits else np.zeros_like(les.mask)
        row: Dict[str, Any] = {"scenario": scenario.name, "lesion": les.spec.name, "spec": asdict(les.spec),
                               "truth": t, "measure_on_truth_mask": m, "predicted_components": len(hits),
                               "dice": dice(pred_mask, les.mask)}
        if len(hits) >= 1:
            biggest = max(hits, key=lambda h: int((pred_comp == h).sum()))
            comp = pred_comp == biggest
            row["segment_report"] = report_lesion_for(comp, report)
            row["remeasured_prediction"] = measure_mask(comp, affine, new_hu)
            if row["segment_report"] is not None:
                row["remeasured_prediction"]["short_axis_across_report_long_mm"] = measure_mask(
                    comp, affine, None, row["segment_report"]["long_axis"]["end_points_ras_mm"])["short_axis_mm"]
            row["predicted_union_ml"] = float(pred_mask.sum()) * voxel_ml
            # the predicted voxels within the lesion's soft edge: where do they lie relative to the truth?
            row["predicted_outside_truth_ml"] = float((pred_mask & ~les.mask).sum()) * voxel_ml
            row["truth_not_predicted_ml"] = float((les.mask & ~pred_mask).sum()) * voxel_ml
        rows.append(row)
    false = [h for h in range(1, pred_count + 1) if h not in used]
    liver_label_ml = float(liver.sum()) * voxel_ml
    sweep = tumor_threshold_sweep(read_probability_u8(prob_path), truth_labels == 2)
    return {
        "scenario": scenario.name, "ct": scenario.ct, "affine": affine.tolist(), "shape_xyz": list(hu.shape),
        "orientation": "".join(nib.aff2axcodes(affine)), **facts, "rows": rows,
        "lesion_count_inserted": len(inserted), "lesion_count_reported": report.get("lesion_count"),
        "lesion_count_measure_on_truth": truth_report.get("lesion_count"),
        "false_lesions": [{"voxels": int((pred_comp == h).sum()), "volume_ml": float((pred_comp == h).sum()) * voxel_ml}
                          for h in false],
        "liver_label_ml": liver_label_ml, "liver_label_plus_lesions_ml": float((truth_labels >= 1).sum()) * voxel_ml,
        "liver_report_ml": report.get("liver_volume_ml"), "liver_seg_count_ml": float((seg >= 1).sum()) * voxel_ml,
        "liver_measure_on_truth_ml": truth_report.get("liver_volume_ml"),
        "liver_dice_vs_label": dice(seg >= 1, truth_labels >= 1),
        "tumor_threshold_sweep": sweep, "segment_tumor_dice": dice(seg == 2, truth_labels == 2),
        "segment_tumor_volume_ratio": float((seg == 2).sum()) / max(1, int((truth_labels == 2).sum())),
        "recist": report.get("recist"), "truth_recist": truth_report.get("recist"),
        "postprocessing_changes": report.get("postprocessing_changes"), "precision": report.get("precision"),
        "warnings": report.get("warnings"), "work": str(folder), "storage": list(scenario.storage),
        "consistency_problems": [f"segment report: {p}" for p in report_consistency(report, affine, seg.shape)]
        + [f"measure report: {p}" for p in report_consistency(truth_report, affine, seg.shape)]
        + [f"measure CSV vs JSON: {p}" for p in csv_problems]
        + [f"segment report vs `measure` of its seg.nii.gz: {p}" for p in seg_measure_problems]
        + [f"`measure` of the inserted masks vs the same re-stored {'+'.join(INVARIANCE_STORAGE)}: {p}"
           for p in storage_problems],
    }


def read_probability_u8(path: Path) -> np.ndarray:
    """``segment --probabilities``' NIfTI map as stored, uint8 255 x p (its voxel array, axis order as nibabel gives
    it). The map carries scl_slope 1/255 since 27 Nov 2026, so nibabel's scaled ``dataobj`` reads 0..1, which the
    sweep's division by 255 took to 0..0.004: no voxel above any threshold."""
    import nibabel as nib

    return np.asarray(nib.load(str(path)).dataobj.get_unscaled())


SWEEP_THRESHOLDS = (0.5, 0.6, 0.7, 0.8)
"""Tumor probability thresholds of :func:`tumor_threshold_sweep`."""


def tumor_threshold_sweep(probability_u8: np.ndarray, truth_tumor: np.ndarray,
                          thresholds: Sequence[float] = SWEEP_THRESHOLDS) -> List[Dict[str, float]]:
    """Where the network's tumor boundary lies against the inserted lesions: for each threshold ``t``, the voxels
    whose tumor probability (``segment --probabilities``' uint8 map, 255 = 1.0, same grid and axis order as
    ``truth_tumor``) is above ``t``, as ``{"threshold", "volume_ratio" (their count / the inserted tumor voxels),
    "dice"}``. ``segment`` itself labels tumor by the argmax over background, liver and tumor, close to t = 0.5."""
    truth = np.asarray(truth_tumor, dtype=bool)
    rows = []
    for t in thresholds:
        above = np.asarray(probability_u8, dtype=np.float64) / 255.0 > t
        rows.append({"threshold": float(t), "volume_ratio": float(above.sum()) / max(1, int(truth.sum())),
                     "dice": dice(above, truth)})
    return rows


INVARIANCE_STORAGE = ("flip_i", "swap_ij", "flip_k")
"""The voxel order the storage-invariance check re-stores a scenario's CT and inserted masks in."""


def compare_reports(a: Dict[str, Any], b: Dict[str, Any], same_grid: bool) -> List[str]:
    """Differences between two reports of the same lesions (ids, volumes, axes with their RAS / LPS end points,
    centroids, axial S, edge flags, mean HU, liver volume, RECIST); with ``same_grid`` also the array-index keys
    (``bounding_box_zyx``, ``measurement_slice``)."""
    out = []
    if len(a["lesions"]) != len(b["lesions"]):
        return [f"{len(a['lesions'])} vs {len(b['lesions'])} lesions"]
    for key in ("liver_volume_ml", "tumor_volume_ml"):
        if abs(a[key] - b[key]) > 1e-9 * max(1.0, abs(a[key])):
            out.append(f"{key} {a[key]} vs {b[key]}")
    if a["recist"]["target_lesion_ids"] != b["recist"]["target_lesion_ids"]:
        out.append(f"RECIST targets {a['recist']['target_lesion_ids']} vs {b['recist']['target_lesion_ids']}")
    scalar = ["volume_ml", "voxel_count", "long_axis_mm", "short_axis_mm", "longest_axial_diameter_mm",
              "axial_position_s_mm", "mean_hu", "touches_scan_edge", "recist_target"]
    points = ["centroid_ras_mm", "centroid_lps_mm"]
    for x, y in zip(a["lesions"], b["lesions"]):
        tag = f"lesion {x['id']}"
        for key in scalar:
            u, v = x.get(key), y.get(key)
            if isinstance(u, bool) or isinstance(v, bool) or u is None or v is None:
                if u != v:
                    out.append(f"{tag}: {key} {u} vs {v}")
            elif abs(float(u) - float(v)) > 1e-6:
                out.append(f"{tag}: {key} {u} vs {v}")
        for key in points:
            if _dist(x[key], y[key]) > 1e-4:
                out.append(f"{tag}: {key} {np.round(x[key], 4).tolist()} vs {np.round(y[key], 4).tolist()}")
        for name in ("long_axis", "short_axis"):
            for frame in ("end_points_ras_mm", "end_points_lps_mm"):
                if not np.allclose(x[name][frame], y[name][frame], atol=1e-4):
                    out.append(f"{tag}: {name} {frame} {np.round(x[name][frame], 3).tolist()} vs "
                               f"{np.round(y[name][frame], 3).tolist()}")
        if same_grid:
            for key in ("bounding_box_zyx", "measurement_slice"):
                if x[key] != y[key]:
                    out.append(f"{tag}: {key} {x[key]} vs {y[key]}")
    return out


def compare_csv(report: Dict[str, Any], csv_path: Path) -> List[str]:
    """Differences between a JSON report's lesions and the same report written as CSV (numbers to the CSV's
    rounding)."""
    import csv

    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    out = []
    by_id = {str(d["id"]): d for d in report["lesions"]}
    for row in rows:
        d = by_id.get(row["id"])
        if d is None:
            out.append(f"CSV lesion id {row['id']!r} not in the JSON report")
            continue
        pairs = [("volume_ml", d["volume_ml"], 5e-5), ("long_axis_mm", d["long_axis_mm"], 5e-3),
                 ("short_axis_mm", d["short_axis_mm"], 5e-3), ("mean_hu", d["mean_hu"], 0.05),
                 ("axial_position_s_mm", d["axial_position_s_mm"], 0.05)]
        for i, axis in enumerate("xyz"):
            pairs.append((f"centroid_lps_{axis}_mm", d["centroid_lps_mm"][i], 5e-3))
            pairs.append((f"centroid_ras_{axis}_mm", d["centroid_ras_mm"][i], 5e-3))
            for name in ("long_axis", "short_axis"):
                for end, letter in enumerate("ab"):
                    pairs.append((f"{name}_ras_{letter}_{axis}_mm", d[name]["end_points_ras_mm"][end][i], 5e-3))
        for column, value, tol in pairs:
            try:
                cell = float(row[column])
            except (KeyError, ValueError):
                out.append(f"lesion {row['id']}: CSV column {column!r} missing or not a number ({row.get(column)!r})")
                continue
            if abs(cell - float(value)) > tol:
                out.append(f"lesion {row['id']}: CSV {column} {cell} vs JSON {value}")
        if row.get("touches_scan_edge") != ("1" if d["touches_scan_edge"] else "0"):
            out.append(f"lesion {row['id']}: CSV touches_scan_edge {row.get('touches_scan_edge')!r} vs JSON "
                       f"{d['touches_scan_edge']}")
    if len(rows) != max(1, len(report["lesions"])):
        out.append(f"CSV has {len(rows)} rows for {len(report['lesions'])} lesions")
    return out


def report_consistency(report: Dict[str, Any], affine: np.ndarray, shape_xyz: Sequence[int]) -> List[str]:
    """Internal checks of one report (no truth needed): axis end points (length, slice, perpendicularity, LPS =
    RAS with x, y negated), measurement slice index -> S through the affine, ids by decreasing volume, totals and
    burden, RECIST targets (the <= 2 longest measurable lesions not cut by the scan's edge, a lesion of water density
    after the others)."""
    out = []
    lesions = report.get("lesions", [])
    axis_k = axial_axis(affine)
    for d in lesions:
        tag = f"lesion {d['id']}"
        for name, key in (("long_axis", "long_axis_mm"), ("short_axis", "short_axis_mm")):
            ras = np.asarray(d[name]["end_points_ras_mm"], dtype=np.float64)
            lps = np.asarray(d[name]["end_points_lps_mm"], dtype=np.float64)
            if not np.allclose(lps, ras * [-1, -1, 1], atol=1e-6):
                out.append(f"{tag}: {name} LPS end points {lps.tolist()} are not RAS {ras.tolist()} with x, y negated")
            if abs(float(np.linalg.norm(ras[1] - ras[0])) - d[key]) > 1e-6 or abs(d[name]["length_mm"] - d[key]) > 1e-9:
                out.append(f"{tag}: {name} end points {np.linalg.norm(ras[1] - ras[0]):.4f} mm apart, {key} "
                           f"{d[key]:.4f}")
            if np.abs(ras[:, 2] - d["axial_position_s_mm"]).max() > 1e-6:
                out.append(f"{tag}: {name} end points at S {ras[:, 2].tolist()}, axial_position_s_mm "
                           f"{d['axial_position_s_mm']}")
        la = np.asarray(d["long_axis"]["end_points_ras_mm"])
        sa = np.asarray(d["short_axis"]["end_points_ras_mm"])
        if d["long_axis_mm"] > 0 and d["short_axis_mm"] > 0:
            cos = abs(float(np.dot(la[1] - la[0], sa[1] - sa[0]))) / (d["long_axis_mm"] * d["short_axis_mm"])
            if cos > 1e-6:
                out.append(f"{tag}: short axis not perpendicular to the long axis (|cos| {cos:.2e})")
        if not np.allclose(d["centroid_lps_mm"], np.asarray(d["centroid_ras_mm"]) * [-1, -1, 1], atol=1e-6):
            out.append(f"{tag}: centroid LPS {d['centroid_lps_mm']} is not RAS {d['centroid_ras_mm']} with x, y "
                       f"negated")
        ms = d["measurement_slice"]
        idx = np.zeros(3)
        idx[2 - int(ms["axis_zyx"])] = ms["index"]  # (z, y, x) array axis -> (i, j, k) index
        if int(ms["axis_zyx"]) != 2 - axis_k or abs(float(voxel_centres_ras(affine, idx[None])[0][2])
                                                    - d["axial_position_s_mm"]) > 1e-6:
            out.append(f"{tag}: measurement_slice {ms} is at S {voxel_centres_ras(affine, idx[None])[0][2]:.3f} mm, "
                       f"axial_position_s_mm {d['axial_position_s_mm']}")
        box = d["bounding_box_zyx"]
        reaches = any(lo == 0 or hi == n for (lo, hi), n in zip(box, list(shape_xyz)[::-1]))
        if reaches != bool(d["touches_scan_edge"]):
            out.append(f"{tag}: bounding_box_zyx {box} {'reaches' if reaches else 'does not reach'} the array's edge, "
                       f"touches_scan_edge {d['touches_scan_edge']}")
    volumes = [d["volume_ml"] for d in lesions]
    if volumes != sorted(volumes, reverse=True) or [d["id"] for d in lesions] != list(range(1, len(lesions) + 1)):
        out.append(f"ids are not 1.. by decreasing volume: {[(d['id'], round(d['volume_ml'], 4)) for d in lesions]}")
    if abs(sum(volumes) - report["tumor_volume_ml"]) > 1e-9 or report["lesion_count"] != len(lesions):
        out.append(f"tumor_volume_ml {report['tumor_volume_ml']} / lesion_count {report['lesion_count']} vs lesions "
                   f"{sum(volumes)} / {len(lesions)}")
    if report["liver_volume_ml"] > 0 and abs(report["tumor_burden_percent"]
                                             - 100 * report["tumor_volume_ml"] / report["liver_volume_ml"]) > 1e-9:
        out.append(f"tumor_burden_percent {report['tumor_burden_percent']} != 100 x tumor / liver")
    rec = report.get("recist") or {}
    measurable = [d for d in lesions if d["long_axis_mm"] >= rec.get("measurable_minimum_mm", 10.0) - 1e-9
                  and not d["touches_scan_edge"] and not d.get("axial_axes_limited_by_slices")]
    # a lesion of water density (a simple cyst is possible) comes after every other measurable lesion (0.2.0)
    expected = [d["id"] for d in sorted(measurable, key=lambda d: (bool(d.get("water_density")),
                                                                   -round(d["long_axis_mm"], 9), d["id"]))[:2]]
    if rec.get("target_lesion_ids") != expected:
        out.append(f"RECIST targets {rec.get('target_lesion_ids')}, expected {expected} (<= 2 longest measurable, "
                   f"none cut by the scan's edge or capped by tilted slices, water density last)")
    elif abs(rec.get("sum_of_diameters_mm", 0.0)
             - sum(d["long_axis_mm"] for d in lesions if d["id"] in expected)) > 1e-9:
        out.append(f"RECIST sum {rec.get('sum_of_diameters_mm')} != the targets' long axes")
    for d in lesions:
        if bool(d.get("recist_target")) != (d["id"] in expected):
            out.append(f"lesion {d['id']}: recist_target {d.get('recist_target')}")
    return out


# ------------------------------------------------------------------------------------------ comparison, printing
def _dist(p: Optional[Sequence[float]], q: Optional[Sequence[float]]) -> float:
    if p is None or q is None:
        return float("nan")
    return float(np.linalg.norm(np.asarray(p, dtype=np.float64) - np.asarray(q, dtype=np.float64)))


def _dir_error_deg(report_lesion: Dict[str, Any], expected_dir: Sequence[float]) -> float:
    """Angle (deg, 0..90) between the report's long axis (RAS end points) and ``expected_dir``."""
    a, b = (np.asarray(p, dtype=np.float64) for p in report_lesion["long_axis"]["end_points_ras_mm"])
    u = (b - a) / max(np.linalg.norm(b - a), 1e-12)
    return math.degrees(math.acos(min(1.0, abs(float(np.dot(u, expected_dir))))))


def discrepancies(result: Dict[str, Any]) -> List[str]:
    """Every number of ``result`` beyond its tolerance, one line each (tolerances in the text)."""
    out = []
    affine = np.asarray(result["affine"])
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    pix = float(spacing[:2].max())
    for row in result["rows"]:
        name = f"{result['scenario']}/{row['lesion']}"
        t = row["truth"]
        tm = t["mask"]
        m = row["measure_on_truth_mask"]
        if m is None:
            out.append(f"{name}: `measure` on the inserted mask reported no lesion with its voxels [measurement]")
        else:
            _compare_measured(out, name + " (measure, inserted mask)", m, tm, t, pix, spacing)
        if row["predicted_components"] == 0:
            out.append(f"{name}: not segmented (no predicted tumor voxel in the inserted mask) [model]")
            continue
        s, rm = row.get("segment_report"), row.get("remeasured_prediction")
        if s is None:
            out.append(f"{name}: the report has no lesion matching the predicted component in seg.nii.gz "
                       f"[measurement]")
            continue
        _compare_measured(out, name + " (segment report vs its own seg.nii.gz)", s, rm, t, pix, spacing)
        if row["predicted_components"] > 1:
            out.append(f"{name}: predicted as {row['predicted_components']} separate lesions [model]")
        if row["dice"] < 0.8:
            out.append(f"{name}: Dice {row['dice']:.3f} of the predicted lesion against the inserted mask "
                       f"(predicted {row['predicted_union_ml']:.3f} mL, inserted {tm['volume_ml']:.3f} mL; "
                       f"{row['truth_not_predicted_ml']:.3f} mL missed, {row['predicted_outside_truth_ml']:.3f} mL "
                       f"outside) [model]")
        dl = s["long_axis_mm"] - t["long_grid_mm"]
        if abs(dl) > 2 * pix:
            out.append(f"{name}: reported long axis {s['long_axis_mm']:.2f} mm vs true {t['long_grid_mm']:.2f} mm "
                       f"({dl:+.2f} mm; mask-measured {tm['long_axis_mm']:.2f} mm, predicted mask re-measured "
                       f"{rm['long_axis_mm']:.2f} mm) [model: segmentation size]")
        dv = (s["volume_ml"] - tm["volume_ml"]) / tm["volume_ml"]
        if abs(s["volume_ml"] - tm["volume_ml"]) > t["pv_shell_ml"]:
            out.append(f"{name}: reported volume {s['volume_ml']:.3f} mL vs inserted mask {tm['volume_ml']:.3f} mL "
                       f"({100 * dv:+.1f} %; beyond the half-voxel shell {t['pv_shell_ml']:.3f} mL) [model]")
    out += [f"{result['scenario']}: {p} [measurement]" for p in result["consistency_problems"]]
    n_in, n_rep = result["lesion_count_inserted"], result["lesion_count_reported"]
    if n_in != n_rep:
        out.append(f"{result['scenario']}: {n_rep} lesions reported, {n_in} inserted "
                   f"({len(result['false_lesions'])} predicted lesions touch no inserted one: "
                   + ", ".join(f"{f['volume_ml']:.3f} mL" for f in result["false_lesions"]) + ") [model]")
    if result["lesion_count_measure_on_truth"] != n_in:
        out.append(f"{result['scenario']}: `measure` on the inserted masks counts "
                   f"{result['lesion_count_measure_on_truth']} "
                   f"lesions, {n_in} inserted [measurement]")
    if abs(result["liver_report_ml"] - result["liver_seg_count_ml"]) > 1e-9 * max(1.0, result["liver_seg_count_ml"]):
        out.append(f"{result['scenario']}: report liver {result['liver_report_ml']:.3f} mL != label>=1 of seg.nii.gz "
                   f"{result['liver_seg_count_ml']:.3f} mL [measurement]")
    if abs(result["liver_measure_on_truth_ml"] - result["liver_label_plus_lesions_ml"]) > \
            1e-9 * max(1.0, result["liver_label_plus_lesions_ml"]):
        out.append(f"{result['scenario']}: `measure` liver {result['liver_measure_on_truth_ml']:.3f} mL != the truth "
                   f"label map's {result['liver_label_plus_lesions_ml']:.3f} mL [measurement]")
    return out


def _compare_measured(out: List[str], name: str, rep: Dict[str, Any], mine: Dict[str, Any], t: Dict[str, Any],
                      pix: float, spacing: np.ndarray) -> None:
    """Report ``rep`` (a report's lesion) against this script's ``mine`` of the same mask, and the truth ``t``."""
    tag = "[measurement]"
    if abs(rep["volume_ml"] - mine["volume_ml"]) > 1e-9 * max(1.0, mine["volume_ml"]):
        out.append(f"{name}: volume {rep['volume_ml']:.4f} mL, re-measured {mine['volume_ml']:.4f} mL {tag}")
    if abs(rep["long_axis_mm"] - mine["long_axis_mm"]) > 0.01:
        out.append(f"{name}: long_axis_mm {rep['long_axis_mm']:.3f}, re-measured by the documented rule "
                   f"{mine['long_axis_mm']:.3f} {tag}")
    across = mine.get("short_axis_across_report_long_mm", t.get("mask_short_across_report_long_mm"))
    if across is not None and abs(rep["short_axis_mm"] - across) > 0.01:
        out.append(f"{name}: short_axis_mm {rep['short_axis_mm']:.3f}, re-measured by the documented rule across the "
                   f"report's own long axis {across:.3f} {tag}")
    if _dist(rep["centroid_ras_mm"], mine["centroid_ras_mm"]) > 0.01:
        out.append(f"{name}: centroid RAS {np.round(rep['centroid_ras_mm'], 2).tolist()}, re-measured "
                   f"{np.round(mine['centroid_ras_mm'], 2).tolist()} {tag}")
    if _dist(rep["centroid_lps_mm"], mine["centroid_lps_mm"]) > 0.01:
        out.append(f"{name}: centroid LPS {np.round(rep['centroid_lps_mm'], 2).tolist()}, re-measured "
                   f"{np.round(mine['centroid_lps_mm'], 2).tolist()} {tag}")
    if bool(rep["touches_scan_edge"]) != bool(mine["touches_scan_edge"]):
        out.append(f"{name}: touches_scan_edge {rep['touches_scan_edge']}, mask reaches the edge: "
                   f"{mine['touches_scan_edge']} {tag}")
    if rep.get("mean_hu") is not None and mine.get("mean_hu") is not None and \
            abs(rep["mean_hu"] - mine["mean_hu"]) > 0.05:
        out.append(f"{name}: mean HU {rep['mean_hu']:.2f}, re-measured {mine['mean_hu']:.2f} {tag}")
    at_slice = mine["slice_longest_mm"].get(round(float(rep["axial_position_s_mm"]), 3))
    if at_slice is None or abs(at_slice - rep["longest_axial_diameter_mm"]) > 1e-6:
        out.append(f"{name}: axial_position_s_mm {rep['axial_position_s_mm']:.2f}: the mask's longest voxel-centre "
                   f"distance in that slice is {_f(at_slice, '.3f')} mm, not the reported "
                   f"{rep['longest_axial_diameter_mm']:.3f} mm {tag}")
    if "inserted mask" in name:  # truth checks only where the mask is the inserted one
        d = np.abs(np.asarray(rep["centroid_ras_mm"]) - np.asarray(t["centroid_analytic_ras_mm"]))
        if (d > spacing).any():
            out.append(f"{name}: centroid RAS {np.round(rep['centroid_ras_mm'], 2).tolist()} vs true "
                       f"{np.round(t['centroid_analytic_ras_mm'], 2).tolist()}: more than one voxel off {tag}")
        if abs(rep["long_axis_mm"] - t["long_grid_mm"]) > pix:
            out.append(f"{name}: long axis {rep['long_axis_mm']:.2f} mm vs true {t['long_grid_mm']:.2f} mm in the "
                       f"slice plane nearest the centre: more than one pixel ({pix:.2f} mm) off {tag}")
        if abs(rep["short_axis_mm"] - t["short_grid_mm"]) > pix:
            out.append(f"{name}: short axis {rep['short_axis_mm']:.2f} mm vs true {t['short_grid_mm']:.2f} mm: more "
                       f"than one pixel ({pix:.2f} mm) off {tag}")
        if abs(rep["volume_ml"] - t["volume_analytic_ml"]) > t["pv_shell_ml"]:
            out.append(f"{name}: volume {rep['volume_ml']:.3f} mL vs analytic {t['volume_analytic_ml']:.3f} mL, beyond "
                       f"the half-voxel shell {t['pv_shell_ml']:.3f} mL {tag}")
        if bool(rep["touches_scan_edge"]) != bool(t["cut_by_scan"]):
            out.append(f"{name}: touches_scan_edge {rep['touches_scan_edge']} but the lesion is "
                       f"{'' if t['cut_by_scan'] else 'not '}cut by the scan {tag}")
        # each end may lie one pixel off the true axis: up to atan(2 pixels / (length - 2 pixels)), at least 10 deg
        allowed = max(10.0, math.degrees(math.atan2(2 * pix, max(t["long_grid_mm"] - 2 * pix, pix))))
        if _dir_error_deg(rep, t["long_dir_ras"]) > allowed and t["long_continuous_mm"] > t["short_continuous_mm"] + 2:
            out.append(f"{name}: long axis {_dir_error_deg(rep, t['long_dir_ras']):.0f} deg off the ellipsoid's long "
                       f"direction {np.round(t['long_dir_ras'], 3).tolist()} (RAS; {allowed:.0f} deg allowed) {tag}")


def _f(value: Any, fmt: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def _views(row: Dict[str, Any]) -> Tuple[Any, Any, Any, Any]:
    """(truth, measure on the inserted mask, segment report, re-measured prediction) of one table row."""
    return row["truth"], row["measure_on_truth_mask"], row.get("segment_report"), row.get("remeasured_prediction")


def remeasured_short_axis(rm: Optional[Dict[str, Any]]) -> Optional[float]:
    """The re-measured prediction's short axis that the discrepancy check compares with the report's
    (:func:`_compare_measured`): across the segment report's own long axis, where the report has the lesion; else
    this script's own (across its own long axis)."""
    if not rm:
        return None
    return rm.get("short_axis_across_report_long_mm", rm.get("short_axis_mm"))


def axis_table(rows: Sequence[Dict[str, Any]]) -> List[str]:
    """The long / short axis table of one scenario. Its re-measured short axis is the value the discrepancy check
    compares (across the report's long axis): it printed this script's own short axis, across its own long axis
    (15.37 mm for sm_3mm's ellipsoid_x_30x15x15, whose report reads 18.28 mm), while the check compared the report
    with 18.28 mm, unprinted, and found no discrepancy."""
    lines = ["  long / short axis, mm: true on the nearest slice plane [continuous] | measure(mask) | segment report | "
             "re-measured prediction (short 'remeas x seg': across the segment report's own long axis, the value "
             "the discrepancy check compares); long-axis direction error (deg) of segment report",
             f"  {'lesion':30s} {'long true':>16s} {'meas':>6s} {'seg':>6s} {'remeas':>6s} | {'short true':>16s} "
             f"{'meas':>6s} {'seg':>6s} {'remeas x seg':>12s} | {'dir err':>7s}"]
    for row in rows:
        t, m, s, rm = _views(row)
        lt = f"{t['long_grid_mm']:.2f} [{t['long_continuous_mm']:.1f}]"
        st = f"{t['short_grid_mm']:.2f} [{t['short_continuous_mm']:.1f}]"
        direction = _dir_error_deg(s, t["long_dir_ras"]) if s else None
        lines.append(f"  {row['lesion']:30s} {lt:>16s} {_f(m and m['long_axis_mm'], '6.2f'):>6s} "
                     f"{_f(s and s['long_axis_mm'], '6.2f'):>6s} {_f(rm and rm['long_axis_mm'], '6.2f'):>6s} | "
                     f"{st:>16s} {_f(m and m['short_axis_mm'], '6.2f'):>6s} "
                     f"{_f(s and s['short_axis_mm'], '6.2f'):>6s} {_f(remeasured_short_axis(rm), '12.2f'):>12s} | "
                     f"{_f(direction, '7.1f'):>7s}")
    return lines


def print_scenario(result: Dict[str, Any]) -> None:
    """Tables of one scenario (units in the headers)."""
    restored = " re-stored " + "+".join(result["storage"]) if result["storage"] else ""
    print(f"\n=== {result['scenario']}: {result['ct']}{restored}"
          f" {result['shape_xyz']} voxels, stored {result['orientation']}, "
          f"spacing {np.round(np.linalg.norm(np.asarray(result['affine'])[:3, :3], axis=0), 4).tolist()} mm; "
          f"liver median {result['liver_median_hu']:.1f} HU, noise {result['liver_noise_hu']:.1f} HU; "
          f"precision {json.dumps(result['precision'])}")
    print("  V: volume mL (analytic | inserted mask | measure(mask) | segment report | re-measured prediction); "
          "Dice of the prediction")
    print(f"  {'lesion':30s} {'V true':>8s} {'V mask':>8s} {'V meas':>8s} {'V seg':>8s} {'V remeas':>8s} "
          f"{'Dice':>6s} {'n pred':>6s}")
    for row in result["rows"]:
        t, m, s, rm = _views(row)
        print(f"  {row['lesion']:30s} {t['volume_analytic_ml']:8.3f} {t['volume_mask_ml']:8.3f} "
              f"{_f(m and m['volume_ml'], '8.3f'):>8s} {_f(s and s['volume_ml'], '8.3f'):>8s} "
              f"{_f(rm and rm['volume_ml'], '8.3f'):>8s} {row['dice']:6.3f} {row['predicted_components']:6d}")
    for line in axis_table(result["rows"]):
        print(line)
    print("  centre, mm: true centre RAS (analytic centroid of the scanned part); report centroid RAS and LPS "
          "(segment); |report - truth| mm for measure(mask) and segment; expected LPS = (-x, -y, z) of RAS")
    for row in result["rows"]:
        t, m, s = row["truth"], row["measure_on_truth_mask"], row.get("segment_report")
        true = t["centroid_analytic_ras_mm"]
        seg_ras = s["centroid_ras_mm"] if s else None
        seg_lps = s["centroid_lps_mm"] if s else None
        lps_ok = (seg_lps is not None and np.allclose(seg_lps, ras_to_lps(seg_ras), atol=1e-6))
        print(f"  {row['lesion']:30s} true RAS {np.round(true, 2).tolist()}  seg RAS "
              f"{np.round(seg_ras, 2).tolist() if seg_ras else '-'} "
              f"LPS {np.round(seg_lps, 2).tolist() if seg_lps else '-'}"
              f" (LPS = RAS with x,y negated: {lps_ok})  |d| meas {_dist(m and m['centroid_ras_mm'], true):.2f} "
              f"seg {_dist(seg_ras, true):.2f}")
    print("  edge flag (inserted mask reaches the scan edge | measure | segment); mean HU (design target | inserted "
          "mask | measure | segment | re-measured prediction); axial S mm (nearest slice | measure | segment)")
    for row in result["rows"]:
        t, m, s, rm = _views(row)
        print(f"  {row['lesion']:30s} edge {t['cut_by_scan']!s:5s} {_f(m and m['touches_scan_edge'], ''):5s} "
              f"{_f(s and s['touches_scan_edge'], ''):5s} | HU {t['target_hu']:6.1f} {t['mask']['mean_hu']:6.1f} "
              f"{_f(m and m['mean_hu'], '6.1f')} {_f(s and s['mean_hu'], '6.1f')} {_f(rm and rm['mean_hu'], '6.1f')} | "
              f"S {t['nearest_slice_s_mm']:7.1f} {_f(m and m['axial_position_s_mm'], '7.1f')} "
              f"{_f(s and s['axial_position_s_mm'], '7.1f')}")
    print(f"  lesions: inserted {result['lesion_count_inserted']}, reported {result['lesion_count_reported']}, "
          f"measure(mask) {result['lesion_count_measure_on_truth']}; false predicted lesions: "
          f"{[round(f['volume_ml'], 3) for f in result['false_lesions']]} mL")
    print(f"  liver mL: label {result['liver_label_ml']:.1f} "
          f"(label + lesions {result['liver_label_plus_lesions_ml']:.1f}); "
          f"measure(truth) {result['liver_measure_on_truth_ml']:.1f}; segment report {result['liver_report_ml']:.1f} "
          f"(its seg.nii.gz label>=1: {result['liver_seg_count_ml']:.1f}); liver Dice vs label "
          f"{result['liver_dice_vs_label']:.3f}")
    rec, trec = result["recist"] or {}, result["truth_recist"] or {}
    print(f"  RECIST targets: segment {rec.get('target_lesion_ids')} "
          f"sum {_f(rec.get('sum_of_diameters_mm'), '.2f')} mm; "
          f"measure(mask) {trec.get('target_lesion_ids')} sum {_f(trec.get('sum_of_diameters_mm'), '.2f')} mm")
    changes = result.get("postprocessing_changes") or {}
    if changes.get("tumor_components"):
        print(f"  post-processing changed tumor components: {changes['tumor_components']}")


def summary_rows(results: Sequence[Dict[str, Any]]) -> Dict[str, Dict[str, List[float]]]:
    """Per source (``measure(mask)``: the inserted masks; ``segment``: the predictions) lists of errors against the
    truth over all lesions: ``volume_pct`` (vs the inserted mask's voxel volume), ``volume_vs_analytic_pct``,
    ``long_mm`` / ``short_mm`` (vs the ellipse in the slice plane nearest the centre), ``centroid_mm`` (distance to
    the analytic centroid), ``dice`` (segment only)."""
    out: Dict[str, Dict[str, List[float]]] = {"measure(mask)": {}, "segment": {}}
    for result in results:
        for row in result["rows"]:
            t = row["truth"]
            for source, lesion in (("measure(mask)", row["measure_on_truth_mask"]),
                                   ("segment", row.get("segment_report"))):
                if lesion is None:
                    continue
                values = {"volume_pct": 100 * (lesion["volume_ml"] / t["volume_mask_ml"] - 1),
                          "volume_vs_analytic_pct": 100 * (lesion["volume_ml"] / t["volume_analytic_ml"] - 1),
                          "long_mm": lesion["long_axis_mm"] - t["long_grid_mm"],
                          "short_mm": lesion["short_axis_mm"] - t["short_grid_mm"],
                          "centroid_mm": _dist(lesion["centroid_ras_mm"], t["centroid_analytic_ras_mm"])}
                if source == "segment":
                    values["dice"] = row["dice"]
                for key, value in values.items():
                    out[source].setdefault(key, []).append(float(value))
    return out


def summary_lines(results: Sequence[Dict[str, Any]]) -> List[str]:
    """Mean [min..max] of every error of :func:`summary_rows`, and of segment's Dice under its own heading: it was
    printed as '+0.85' among the (reported - truth) differences, though it is no difference."""
    lines = ["\n=== summary over all lesions: mean [min..max] of (reported - truth); every CT here is a training case "
             "of the bundled model"]
    dice_values = []
    for source, values in summary_rows(results).items():
        for key, v in values.items():
            a = np.asarray(v)
            if key == "dice":
                dice_values.append((source, a))
                continue
            lines.append(f"  {source:14s} {key:24s} {a.mean():+8.2f} [{a.min():+.2f}..{a.max():+.2f}]  (n={a.size})")
    for source, a in dice_values:
        lines.append(f"  {source:14s} {'Dice vs inserted mask':24s} {a.mean():8.3f} [{a.min():.3f}..{a.max():.3f}]  "
                     f"(n={a.size}; a Dice, not reported - truth)")
    return lines


def print_summary(results: Sequence[Dict[str, Any]]) -> None:
    """Mean [min..max] of every error of :func:`summary_rows` (:func:`summary_lines`), then the tumor-threshold sweep
    per scenario."""
    for line in summary_lines(results):
        print(line)
    print("\n=== tumor voxels of each scenario against the inserted ones: segment's labels, and tumor probability "
          "above t (volume ratio, Dice)")
    for result in results:
        cells = [f"t {row['threshold']:.1f}: {row['volume_ratio']:.2f} {row['dice']:.3f}"
                 for row in result["tumor_threshold_sweep"]]
        print(f"  {result['scenario']:34s} segment: {result['segment_tumor_volume_ratio']:.2f} "
              f"{result['segment_tumor_dice']:.3f} | " + " | ".join(cells))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="folder of the TotalSegmentator example CTs and their liver "
                        "labels (Testing/Data holds the sm_3mm scenario's)")
    parser.add_argument("--model", default="default", help="installed model name or package path (default default)")
    parser.add_argument("--seed", type=int, default=0, help="placement and noise seed (default 0)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated: " + ", ".join(SCENARIOS))
    parser.add_argument("--work", default=None, help="folder (new or empty) to keep the CTs, label maps and reports "
                        "in; default: a temporary folder, removed at the end")
    parser.add_argument("--json", default=None, help="write every number to this JSON file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    parser.add_argument("--device", default="cpu", help="segment --device (default cpu)")
    parser.add_argument("--threads", type=bounded_number(int, 1), default=None, help="segment --threads")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        parser.error(f"--scenarios: unknown {unknown or args.scenarios!r}; choose from {', '.join(SCENARIOS)}")
    if args.json and Path(args.json).exists() and not args.overwrite:
        parser.error(f"--json {args.json} exists; add --overwrite to replace it")
    data = Path(args.data).resolve()  # the tools run with the checkout as their folder: no relative paths
    for name in names:
        for f in (SCENARIOS[name].ct, SCENARIOS[name].label):
            if not (data / f).is_file():
                parser.error(f"--data {data}: {f} is missing")
    if args.work:
        work = Path(args.work).resolve()
        if work.exists() and any(work.iterdir()):
            parser.error(f"--work {work} is not empty; give a new or empty folder")
        work.mkdir(parents=True, exist_ok=True)
        return _run(args, names, data, work)
    with tempfile.TemporaryDirectory(prefix="lesion_measurement_") as tmp:
        return _run(args, names, data, Path(tmp))


def _run(args: argparse.Namespace, names: Sequence[str], data: Path, work: Path) -> int:
    results, problems = [], []
    for name in names:
        rng = np.random.default_rng([args.seed, zlib.crc32(name.encode("utf-8"))])  # the same draw in any order
        result = evaluate_scenario(SCENARIOS[name], data, work, args.model, args.device, args.threads, rng)
        print_scenario(result)
        results.append(result)
        problems += discrepancies(result)
    print_summary(results)
    print("\n=== discrepancies beyond tolerance (measurement: report vs re-measure of the same mask 1e-6 mL, "
          "0.01 mm, 0.05 HU; against truth: 1 voxel per centroid axis, 1 pixel per axis length, the half-voxel "
          "shell for volume; model: Dice < 0.8, size beyond the shell, long axis > 2 pixels)")
    for line in problems or ["none"]:
        print("  " + line)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    from LiverTumorSegLib.cli import run_script

    sys.exit(run_script(main))
