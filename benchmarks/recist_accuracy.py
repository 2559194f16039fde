"""How far the RECIST-style axes are from the truth on digital ellipsoids (the numbers README quotes).

    python benchmarks/recist_accuracy.py [--draws 300] [--seed 1] [--pixel-mm 0.6 1.5]

Each draw: an ellipsoid with axial diameters 30 x 20 mm (12 mm in z) at a random in-plane angle and sub-voxel
position, on 2.5 mm slices with in-plane spacing drawn from 0.6..1.5 mm (``--pixel-mm MIN MAX``: another range,
e.g. ``3 3`` for the 3 mm pixels of a low-dose or downsampled CT); every other draw has square pixels,
the rest independent x and y spacings. Prints the range of (measured - true) in mm for the long and the short
axis, for square and non-square pixels (with MIN = MAX every pixel is square, and the two lines are two halves of
the draws).
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LiverTumorSegLib.argtypes import bounded_number  # noqa: E402
from LiverTumorSegLib.metrics.recist import lesion_axes  # noqa: E402
from LiverTumorSegLib.volume import ImageGeometry  # noqa: E402

SEMI_AXES_MM = (15.0, 10.0, 6.0)
SLICE_MM = 2.5


def ellipse_mask(spacing_xy, angle_deg, offset_xy) -> np.ndarray:
    """Boolean ``(z, y, x)`` mask of the voxel centres inside the ellipsoid."""
    sx, sy = spacing_xy
    nx, ny, nz = int(44 / sx), int(44 / sy), 7
    zz, yy, xx = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    x = (xx - nx / 2 + offset_xy[0]) * sx
    y = (yy - ny / 2 + offset_xy[1]) * sy
    z = (zz - nz // 2) * SLICE_MM
    t = np.deg2rad(angle_deg)
    u, v = x * np.cos(t) + y * np.sin(t), -x * np.sin(t) + y * np.cos(t)
    a, b, c = SEMI_AXES_MM
    return (u / a) ** 2 + (v / b) ** 2 + (z / c) ** 2 <= 1


draws_count = bounded_number(int, 2, note=" (every other draw has square pixels)")
"""``--draws``: 2 or more (one square and one non-square ellipsoid at least); 0 or 1 ended in an IndexError."""

def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=draws_count, default=300, help="ellipsoids, 2 or more (default 300)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pixel-mm", type=float, nargs=2, default=(0.6, 1.5), metavar=("MIN", "MAX"),
                        help="range of the in-plane pixel spacing drawn, mm (default 0.6 1.5)")
    args = parser.parse_args(argv)
    low, high = args.pixel_mm
    if not 0.1 <= low <= high <= 10.0:
        parser.error(f"--pixel-mm {low:g} {high:g}: give MIN <= MAX, each 0.1..10 mm")
    rng = np.random.default_rng(args.seed)
    # with MIN = MAX every pixel is square: the two lines are then the even and the odd draws
    kinds = ("square pixels", "non-square pixels") if low < high else ("square pixels, even draws",
                                                                        "square pixels, odd draws")
    errors = {kind: [] for kind in kinds}
    for draw in range(args.draws):
        square = draw % 2 == 0
        sx = rng.uniform(low, high)
        sy = sx if square else rng.uniform(low, high)
        angle, offset = rng.uniform(0, 180), rng.uniform(-0.5, 0.5, 2)
        axes = lesion_axes(ellipse_mask((sx, sy), angle, offset), ImageGeometry(spacing=(sx, sy, SLICE_MM)))
        errors[kinds[0] if square else kinds[1]].append(
            (axes["long_axis_mm"] - 2 * SEMI_AXES_MM[0], axes["short_axis_mm"] - 2 * SEMI_AXES_MM[1]))
    for kind, values in errors.items():
        e = np.asarray(values)
        print(f"{kind} ({len(e)} draws): long axis {e[:, 0].min():+.2f}..{e[:, 0].max():+.2f} mm (mean "
              f"{e[:, 0].mean():+.2f}), short axis {e[:, 1].min():+.2f}..{e[:, 1].max():+.2f} mm (mean "
              f"{e[:, 1].mean():+.2f})")


if __name__ == "__main__":
    from LiverTumorSegLib.cli import run_script

    sys.exit(run_script(main))
