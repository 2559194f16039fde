"""Lesion report from a label map: per-lesion volume, longest axial diameter, centroid, mean HU; liver
volume and tumor burden. Written as JSON or CSV.

Input: ``labels (z, y, x)`` uint8 (0 bg, 1 liver, 2 tumor) with its :class:`ImageGeometry` (any
orientation, also oblique) and optionally the CT ``(z, y, x)`` in HU on the same grid.

Definitions
-----------
* Lesion: a 26-connected component of label 2. Lesions are numbered 1.. by decreasing volume.
* ``volume_ml``: voxel count x voxel volume.
* ``longest_axial_diameter_mm``: the longest distance between two voxel centres of the lesion lying in the
  same axial slice (the index axis closest to the patient S direction), measured in mm in that plane, over
  all slices (RECIST-like longest diameter; a sphere of radius r gives about 2r minus up to one voxel).
* ``centroid_lps_mm`` / ``centroid_ras_mm``: mean voxel-centre position, patient LPS (DICOM/ITK) and RAS
  (Slicer/NIfTI; x and y negated) in mm.
* ``liver_volume_ml``: label >= 1 (liver including tumors, LiTS convention);
  ``tumor_burden_percent`` = tumor volume / liver volume x 100.
"""
import csv
import io as _io
import json
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from ..errors import InputError
from ..fileutil import atomic_output, finite_json, full_suffix
from ..volume import ImageGeometry

CSV_COLUMNS = ["id", "volume_ml", "voxel_count", "longest_axial_diameter_mm", "mean_hu",
               "centroid_lps_x_mm", "centroid_lps_y_mm", "centroid_lps_z_mm",
               "centroid_ras_x_mm", "centroid_ras_y_mm", "centroid_ras_z_mm"]


def axial_axis_zyx(geometry: ImageGeometry) -> int:
    """Array axis (0=z, 1=y, 2=x) whose index direction is closest to the patient superior-inferior axis."""
    column = int(np.argmax(np.abs(geometry.direction_matrix[2, :])))  # 0=i(x), 1=j(y), 2=k(z)
    return 2 - column


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
    diff = points[:, None, :] - points[None, :, :]
    return float(np.sqrt((diff ** 2).sum(-1)).max())


def _hull_vertices_2d(points_2d: np.ndarray) -> np.ndarray:
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


def longest_axial_diameter_mm(mask_zyx: np.ndarray, geometry: ImageGeometry) -> float:
    """Longest in-slice voxel-centre distance (mm) of a boolean lesion mask ``(z, y, x)`` over axial slices."""
    axis = axial_axis_zyx(geometry)
    scaled = geometry.direction_matrix @ np.diag(geometry.spacing)  # columns: mm per index step (i, j, k)
    best = 0.0
    indices = np.nonzero(mask_zyx)
    slice_values = indices[axis]
    in_plane = [a for a in range(3) if a != axis]
    for value in np.unique(slice_values):
        sel = slice_values == value
        kji = np.stack([idx[sel] for idx in indices], axis=1).astype(np.float64)  # (n, 3) as (k, j, i)
        kji = kji[_hull_vertices_2d(kji[:, in_plane])]
        mm = kji[:, ::-1] @ scaled.T  # physical offsets (same slice -> in-plane distances are exact)
        best = max(best, max_pairwise_distance(mm))
    return best


def lesion_report(labels_zyx: np.ndarray, geometry: ImageGeometry, hu_zyx: Optional[np.ndarray] = None,
                  extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Report dict: ``liver_volume_ml``, ``tumor_volume_ml``, ``tumor_burden_percent``, ``lesion_count``,
    ``lesions`` (list of dicts, see module doc), ``voxel_volume_ml``; ``extra`` is merged in."""
    from scipy import ndimage

    labels_zyx = np.asarray(labels_zyx)
    if hu_zyx is not None and tuple(hu_zyx.shape) != tuple(labels_zyx.shape):
        raise InputError(f"CT shape {hu_zyx.shape} does not match the label map's {labels_zyx.shape} (z, y, x).")
    voxel_ml = geometry.voxel_volume_ml
    liver_voxels = int(np.count_nonzero(labels_zyx >= 1))
    components, count = ndimage.label(labels_zyx == 2, structure=np.ones((3, 3, 3), dtype=bool))
    lesions = []  # type: List[Dict[str, Any]]
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        mask = components[box] == index
        kji = np.stack(np.nonzero(mask), axis=1).astype(np.float64) + [b.start for b in box]
        centroid_ijk = kji.mean(axis=0)[::-1]
        lps = geometry.index_to_lps(centroid_ijk)
        ras = geometry.index_to_ras(centroid_ijk)
        voxels = int(mask.sum())
        lesion = {
            "volume_ml": voxels * voxel_ml,
            "voxel_count": voxels,
            "longest_axial_diameter_mm": longest_axial_diameter_mm(mask, geometry),
            "centroid_lps_mm": [float(v) for v in lps],
            "centroid_ras_mm": [float(v) for v in ras],
            "mean_hu": float(hu_zyx[box][mask].astype(np.float64).mean()) if hu_zyx is not None else None,
            "bounding_box_zyx": [[int(b.start), int(b.stop)] for b in box],
        }
        lesions.append(lesion)
    lesions.sort(key=lambda d: -d["volume_ml"])
    for number, lesion in enumerate(lesions, start=1):
        lesion["id"] = number
    tumor_ml = float(sum(d["volume_ml"] for d in lesions))
    liver_ml = liver_voxels * voxel_ml
    report = {
        "liver_volume_ml": liver_ml,
        "tumor_volume_ml": tumor_ml,
        "tumor_burden_percent": 100.0 * tumor_ml / liver_ml if liver_ml > 0 else 0.0,
        "lesion_count": len(lesions),
        "voxel_volume_ml": voxel_ml,
        "lesions": [dict(sorted(d.items(), key=lambda kv: kv[0] != "id")) for d in lesions],
    }
    if extra:
        report.update(extra)
    return report


def report_to_csv_text(report: Dict[str, Any]) -> str:
    """One row per lesion (columns :data:`CSV_COLUMNS`); liver volume and burden as ``#`` comment lines."""
    out = _io.StringIO()
    out.write(f"# liver_volume_ml,{report['liver_volume_ml']:.3f}\n")
    out.write(f"# tumor_volume_ml,{report['tumor_volume_ml']:.3f}\n")
    out.write(f"# tumor_burden_percent,{report['tumor_burden_percent']:.3f}\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for d in report["lesions"]:
        mean_hu = "" if d.get("mean_hu") is None else f"{d['mean_hu']:.1f}"
        writer.writerow([d["id"], f"{d['volume_ml']:.4f}", d["voxel_count"], f"{d['longest_axial_diameter_mm']:.2f}",
                         mean_hu] + [f"{v:.2f}" for v in d["centroid_lps_mm"]] + [f"{v:.2f}" for v in d["centroid_ras_mm"]])
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
