"""Time the LiTS metrics on a CT-sized label-map pair (default 300 x 512 x 512 voxels, z x y x x).

    python benchmarks/bench_metrics.py [--shape 300 512 512] [--roc]

Builds a liver ellipsoid with a few spherical tumors (reference) and a prediction that is shifted by a
few voxels, with one missed and one extra tumor, then prints the time of each step and of the whole
``evaluate_case`` (overlap + surface distances + lesion detection), after one untimed warm-up call on a tiny
pair. ``--roc`` also times the exact
sort-based ROC AUC over all voxels. Prints numbers; asserts nothing (not a test).
"""
import sys
import argparse
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's library, not an installed one

import numpy as np

from LiverTumorSegLib.argtypes import bounded_number


def ellipsoid(shape, center, radii):
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    return (((z - center[0]) / radii[0]) ** 2 + ((y - center[1]) / radii[1]) ** 2
            + ((x - center[2]) / radii[2]) ** 2) <= 1.0


def make_pair(shape):
    nz, ny, nx = shape
    ref = np.zeros(shape, np.uint8)
    ref[ellipsoid(shape, (nz * 0.5, ny * 0.45, nx * 0.35), (nz * 0.3, ny * 0.22, nx * 0.2))] = 1
    pred = np.zeros(shape, np.uint8)
    pred[ellipsoid(shape, (nz * 0.5 + 2, ny * 0.45 + 3, nx * 0.35 - 2), (nz * 0.3, ny * 0.21, nx * 0.21))] = 1
    tumors = [(0.5, 0.45, 0.35, 0.04), (0.4, 0.40, 0.30, 0.02), (0.6, 0.5, 0.4, 0.015), (0.55, 0.38, 0.42, 0.01)]
    for k, (cz, cy, cx, r) in enumerate(tumors):
        center, radii = (nz * cz, ny * cy, nx * cx), (ny * r * 0.5, ny * r, ny * r)
        ref[ellipsoid(shape, center, radii) & (ref == 1)] = 2
        if k != 3:                      # tumor 3 is missed
            pred[ellipsoid(shape, (center[0], center[1] + 1, center[2]), radii) & (pred == 1)] = 2
    pred[ellipsoid(shape, (nz * 0.45, ny * 0.52, nx * 0.28), (3, 5, 5)) & (pred == 1)] = 2   # false positive
    return pred, ref


def timed(label, fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    print(f"{label:<38s} {time.perf_counter() - start:7.2f} s")
    return value


positive_int = bounded_number(int, 1, unit="voxels")
"""``--shape``: 1 or more voxels (0 printed half the table, then an error; a negative one ended in numpy's
'negative dimensions are not allowed' traceback)."""

def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=positive_int, nargs=3, default=[300, 512, 512], metavar=("Z", "Y", "X"),
                        help="voxels (z, y, x), each 1 or more (default 300 512 512)")
    parser.add_argument("--spacing", type=float, nargs=3, default=[1.5, 0.78, 0.78], metavar=("SZ", "SY", "SX"),
                        help="voxel size (z, y, x) in mm (default 1.5 0.78 0.78)")
    parser.add_argument("--roc", action="store_true", help="also time the exact ROC AUC over all voxels")
    args = parser.parse_args(argv)

    from LiverTumorSegLib.metrics import detect_lesions, evaluate_case, overlap_metrics, roc_auc, surface_metrics

    shape, spacing = tuple(args.shape), tuple(args.spacing)
    evaluate_case(*make_pair((16, 32, 32)), spacing)  # warm-up: the first call's imports and allocations stay
    # out of the first timed step (the liver's surface metrics took 0.29 s cold, 0.18 s warm on 100 x 256 x 256)
    pred, ref = timed("build synthetic pair", make_pair, shape)
    print(f"shape (z, y, x) {shape}, spacing {spacing} mm, liver {np.count_nonzero(ref >= 1)} voxels, "
          f"tumor {np.count_nonzero(ref == 2)} voxels")
    timed("overlap metrics, liver", overlap_metrics, pred >= 1, ref >= 1)
    liver = timed("surface metrics, liver", surface_metrics, pred >= 1, ref >= 1, spacing)
    timed("surface metrics, tumor", surface_metrics, pred == 2, ref == 2, spacing)
    detection = timed("lesion detection", detect_lesions, pred == 2, ref == 2)
    row = timed("evaluate_case (everything)", evaluate_case, pred, ref, spacing)
    print(f"liver Dice {row['dice_liver']:.4f}, ASSD {liver['assd_mm']:.3f} mm, HD95 {liver['hd95_mm']:.3f} mm; "
          f"lesions {detection.detected}/{detection.ref_lesions} detected, {detection.false_positive} FP")
    if args.roc:
        rng = np.random.default_rng(0)
        prob = np.clip((ref == 2) * 0.6 + rng.random(shape, dtype=np.float32) * 0.5, 0, 1).astype(np.float32)
        timed("roc_auc (exact, all voxels)", roc_auc, prob, ref == 2)


if __name__ == "__main__":
    from LiverTumorSegLib.cli import run_script

    sys.exit(run_script(main))
