"""The fluid-rim lever (docs/fluid_rim_lever.md): a prototype post-processing step, measured, not shipped.

A tumor component (26-connected) of water density (median -10..25 HU) with more than half of its voxels outside the
convex hull of the liver (label 1) in their own axial slice becomes background: fluid lying against the liver's outer
surface (ascites, an effusion) that the network called tumor.

    python scripts/fluid_rim_lever.py robustness [robustness.py arguments]   # the benchmark, step on if FLUID_RIM=1
    python scripts/fluid_rim_lever.py segment CT LABEL PACKAGE [PACKAGE ...]  # each lesion and the step's verdict

``robustness`` runs ``benchmarks/robustness.py`` with the step added after the default post-processing when the
environment variable ``FLUID_RIM`` is 1 (the first arm) or 2 (the second: a layer's shape too; the same run
otherwise; ``segment`` takes the same variable, 1 unless set). ``segment`` segments CT with each package (default
post-processing) and prints every lesion: volume, median HU, share outside the liver's hull, share outside the
reference liver, and whether the step removes it. Arrays are ``(z, y, x)`` with z the axial index.
"""
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from LiverTumorSegLib.inference.fluid_in_liver import FLUID_MAX_HU, FLUID_MIN_HU  # noqa: E402

WATER_HU = (FLUID_MIN_HU, FLUID_MAX_HU)
"""Median CT value (HU) of a water-density component: the range ``inference.fluid_in_liver`` uses for fluid."""
OUTSIDE_SHARE = 0.5
"""A component with more than this share of its voxels outside the liver's per-slice convex hull lies beside it."""
LAYER_SHAPE = 3.0
"""Second arm: area / thickness**2 of the component's largest axial cut at least this (a disc about 0.8)."""


def layer_shape(component_zyx: np.ndarray, spacing_yx=(1.0, 1.0)) -> float:
    """In the axial slice where ``component_zyx`` has the largest area: that area (mm^2) divided by the square of
    its thickness (twice the largest in-plane distance, mm, from one of its pixels to the nearest pixel outside it;
    pixel centres, so a one-pixel line is one pixel thick)."""
    from scipy.ndimage import distance_transform_edt

    areas = component_zyx.sum(axis=(1, 2))
    plane = np.pad(component_zyx[int(np.argmax(areas))], 1)
    thickness = 2.0 * float(distance_transform_edt(plane, sampling=spacing_yx).max())
    return float(areas.max()) * float(spacing_yx[0]) * float(spacing_yx[1]) / max(thickness, 1e-6) ** 2


def outside_hull_share(component_zyx: np.ndarray, liver_zyx: np.ndarray) -> float:
    """Share (0..1) of ``component_zyx``'s voxels outside the convex hull of ``liver_zyx`` in their own axial slice
    (a slice without at least 3 non-collinear liver voxels: all outside)."""
    from scipy.ndimage import binary_erosion
    from scipy.spatial import Delaunay, QhullError

    total = int(component_zyx.sum())
    outside = 0
    for z in np.flatnonzero(component_zyx.any(axis=(1, 2))):
        points = np.argwhere(component_zyx[z])
        liver = liver_zyx[z]
        edge = np.argwhere(liver & ~binary_erosion(liver))
        if len(edge) < 3:
            outside += len(points)
            continue
        try:
            hull = Delaunay(edge.astype(np.float64))
        except QhullError:  # collinear: no area
            outside += len(points)
            continue
        outside += int((hull.find_simplex(points.astype(np.float64)) < 0).sum())
    return outside / max(total, 1)


def fluid_rim_components(labels_zyx: np.ndarray, hu_zyx: np.ndarray, spacing_yx=(1.0, 1.0),
                         arm: int = 1) -> Tuple[List[Dict[str, Any]], np.ndarray]:
    """``(rows, components)``: one row per tumor component (its id in ``components``, the 26-connected labelling;
    median HU, share outside the liver's hull, layer shape (:func:`layer_shape`) and whether the step removes it,
    ``remove``; ``arm`` 2 also asks the shape)."""
    from scipy.ndimage import find_objects, label

    components, count = label(labels_zyx == 2, structure=np.ones((3, 3, 3), bool))
    rows = []
    for i, box in enumerate(find_objects(components), start=1):
        if box is None:
            continue
        grown = tuple(slice(max(0, s.start - 40), s.stop + 40) if k else s for k, s in enumerate(box))
        mask = components[grown] == i
        median = float(np.median(hu_zyx[grown][mask]))
        share = outside_hull_share(mask, labels_zyx[grown] == 1)
        shape = layer_shape(mask, spacing_yx)
        remove = WATER_HU[0] <= median <= WATER_HU[1] and share > OUTSIDE_SHARE
        if arm == 2:
            remove = remove and shape >= LAYER_SHAPE
        rows.append({"id": i, "median_hu": median, "outside_hull": share, "layer_shape": shape,
                     "remove": bool(remove)})
    return rows, components


def apply_fluid_rim_step(labels_zyx: np.ndarray, hu_zyx: np.ndarray, spacing_yx=(1.0, 1.0),
                         arm: int = 1) -> np.ndarray:
    """``labels_zyx`` with the step's components made background (a copy)."""
    rows, components = fluid_rim_components(labels_zyx, hu_zyx, spacing_yx, arm)
    out = labels_zyx.copy()
    for row in rows:
        if row["remove"]:
            out[components == row["id"]] = 0
    return out


def _patch_postprocessing(arm: int) -> None:
    """Add the step after ``postprocess_labels`` (canonical orientation: z axial), as segment's finish calls it."""
    from LiverTumorSegLib.inference import postprocess

    original = postprocess.postprocess_labels

    def with_step(labels_zyx, spacing_zyx, options=postprocess.PostprocessingOptions(), hu_zyx=None, geometry=None,
                  tumor_probability_zyx=None, changes=None):
        labels = original(labels_zyx, spacing_zyx, options, hu_zyx, geometry, tumor_probability_zyx, changes)
        if hu_zyx is None:
            return labels
        spacing_yx = (float(spacing_zyx[1]), float(spacing_zyx[2]))
        if geometry is not None:
            from LiverTumorSegLib.orientation import plan_reorientation

            plan = plan_reorientation(geometry, labels.shape)
            if not plan.is_identity:
                canonical_yx = tuple(float(v) for v in plan.canonical_geometry.spacing[::-1][1:])
                return plan.from_canonical(apply_fluid_rim_step(plan.to_canonical(labels),
                                                                plan.to_canonical(np.asarray(hu_zyx)),
                                                                canonical_yx, arm))
        return apply_fluid_rim_step(labels, np.asarray(hu_zyx), spacing_yx, arm)

    postprocess.postprocess_labels = with_step


def _segment(args: List[str]) -> None:
    import nibabel as nib

    ct, reference = args[0], args[1]
    for what, path in (("CT", ct), ("LABEL", reference)):  # nibabel's FileNotFoundError names no file to run_script
        if not Path(path).is_file():
            from LiverTumorSegLib.errors import InputError

            raise InputError(f"{what} '{path}' {'is a folder' if Path(path).is_dir() else 'does not exist'}.")
    hu_xyz = np.asanyarray(nib.load(ct).dataobj).astype(np.float32)
    ref_xyz = np.asanyarray(nib.load(reference).dataobj) > 0
    import tempfile

    from LiverTumorSegLib.inference.api import segment_file

    for package in args[2:]:
        with tempfile.TemporaryDirectory() as tmp:
            segment_file(ct, Path(tmp) / "seg.nii.gz", model=package)  # segment's defaults
            labels_xyz = np.asanyarray(nib.load(str(Path(tmp) / "seg.nii.gz")).dataobj).astype(np.uint8)
        hu, labels, ref = (np.transpose(a, (2, 1, 0)) for a in (hu_xyz, labels_xyz, ref_xyz))
        zooms = nib.load(ct).header.get_zooms()
        rows, components = fluid_rim_components(labels, hu, (float(zooms[1]), float(zooms[0])),
                                                int(os.environ.get("FLUID_RIM", "1")))
        voxel_ml = float(np.prod(zooms[:3])) / 1000.0
        for row in rows:
            mask = components == row["id"]
            print(f"{Path(package).stem:32s} lesion {row['id']}: {mask.sum() * voxel_ml:6.2f} mL, median "
                  f"{row['median_hu']:6.1f} HU, outside the liver's hull {row['outside_hull']:.2f}, layer shape "
                  f"{row['layer_shape']:.1f}, outside the "
                  f"reference liver {float((mask & ~ref).sum()) / mask.sum():.2f} -> "
                  f"{'REMOVED' if row['remove'] else 'kept'}")
        if not rows:
            print(f"{Path(package).stem:32s} no lesion")


USAGE = ("usage: fluid_rim_lever.py robustness [robustness.py arguments]\n"
         "       fluid_rim_lever.py segment CT LABEL PACKAGE [PACKAGE ...]\n"
         "       fluid_rim_lever.py --help")


def _usage_error(message: str) -> int:
    print(f"{USAGE}\nfluid_rim_lever.py: error: {message}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    """The two commands; ``--help`` prints the module's text (exit 0; it exited 1), a missing or unknown command or
    too few ``segment`` arguments the usage (exit 2; ``segment CT`` was an IndexError), and a user error of
    ``segment`` is one ``error:`` line (:func:`LiverTumorSegLib.cli.run_script`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]) or (len(args) >= 2 and args[0] == "segment" and args[1] in ("-h", "--help")):
        print(__doc__)
        return 0
    if not args or args[0] not in ("robustness", "segment"):
        return _usage_error(f"unknown command '{args[0]}'" if args else "give a command: robustness or segment")
    if args[0] == "robustness":
        if os.environ.get("FLUID_RIM") in ("1", "2") and "--store-in-package" in args:
            # robustness.py would store the patched post-processing's table as the package's own
            return _usage_error("--store-in-package is refused with FLUID_RIM set: the table would be stored in the "
                                "package as its plain robustness, though post-processing ran with the step added; "
                                "write it with --json instead")
        if os.environ.get("FLUID_RIM") in ("1", "2"):
            _patch_postprocessing(int(os.environ["FLUID_RIM"]))
        import runpy

        sys.argv = [str(ROOT / "benchmarks" / "robustness.py")] + args[1:]
        runpy.run_path(sys.argv[0], run_name="__main__")
        return 0
    if len(args) < 4:
        return _usage_error("segment needs a CT, its reference LABEL map and at least one PACKAGE")
    from LiverTumorSegLib.cli import run_script

    return run_script(_segment, args[1:])


if __name__ == "__main__":
    sys.exit(main())
