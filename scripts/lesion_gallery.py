"""Gallery PNG of synthetic liver lesions on real CT, for a radiologist to judge plausibility.

For each CT + liver label pair given on the command line, picks liver slices, builds a sample like
training's (canonical orientation, in-plane resampling to the network's pixel size, a stack of 2c+1
adjacent slices; resampled with scipy's ``zoom``, bilinear HU and nearest labels, not the library's
preprocessor, whose interpolation, crop and padding differ slightly), inserts lesions with
``insert_lesions`` (the training generator itself) and shows the middle slice
in an abdomen window (W 400 / L 40) next to the same slice with the tumor (red) and liver (green)
outlines. Usage::

    python scripts/lesion_gallery.py CT1.nii.gz LIVER1.nii.gz [CT2 LIVER2 ...] -o gallery.png
"""
import argparse
import sys
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np


def load_canonical(ct_path: str, label_path: str) -> Tuple[np.ndarray, np.ndarray, Tuple[float, float, float]]:
    """Canonical HU ``(z, y, x)`` float32, liver label ``(z, y, x)`` uint8 (0/1) and spacing (z, y, x) mm."""
    from LiverTumorSegLib.io import read_label_map, read_volume
    from LiverTumorSegLib.orientation import canonicalize

    ct = read_volume(ct_path)
    label = read_label_map(label_path, reference=ct)
    canonical, reorientation = canonicalize(ct)
    labels = (reorientation.to_canonical(np.asarray(label.array)) > 0).astype(np.uint8)
    sx, sy, sz = canonical.geometry.spacing
    return np.asarray(canonical.array, dtype=np.float32), labels, (sz, sy, sx)


def to_network_grid(hu: np.ndarray, labels: np.ndarray, spacing_zyx: Sequence[float],
                    pixel_mm: float) -> Tuple[np.ndarray, np.ndarray, Tuple[float, float, float]]:
    """Resample in-plane to ``pixel_mm`` (bilinear HU, nearest labels); z untouched."""
    from scipy.ndimage import zoom

    fy, fx = spacing_zyx[1] / pixel_mm, spacing_zyx[2] / pixel_mm
    hu_net = zoom(hu, (1.0, fy, fx), order=1, mode="nearest").astype(np.float32)
    lab_net = zoom(labels, (1.0, fy, fx), order=0, mode="nearest").astype(np.uint8)
    return hu_net, lab_net, (float(spacing_zyx[0]), pixel_mm, pixel_mm)


def liver_slices(labels: np.ndarray, count: int, rng: np.random.Generator) -> List[int]:
    """``count`` slice indices among the slices whose liver area is at least 30 % of the largest."""
    area = labels.reshape(labels.shape[0], -1).sum(axis=1)
    good = np.flatnonzero(area >= 0.3 * area.max())
    good = good[(good >= 1) & (good < labels.shape[0] - 1)] if good.size > 2 else good
    picks = np.linspace(0, good.size - 1, count).round().astype(int)
    return [int(good[i]) for i in picks]


def crop_box(labels2d: np.ndarray, margin: int = 25) -> Tuple[slice, slice]:
    ys, xs = np.nonzero(labels2d)
    return (slice(max(0, ys.min() - margin), ys.max() + margin + 1),
            slice(max(0, xs.min() - margin), xs.max() + margin + 1))


def at_least(kind, low, exclusive: bool = False):
    """argparse type: a ``kind`` number >= ``low`` (> with ``exclusive``). --panels 0 or -1, --pixel-mm 0 or -1
    and --context -1 ended in tracebacks (matplotlib's 'Number of rows', ZeroDivisionError, IndexError)."""
    from LiverTumorSegLib.argtypes import bounded_number

    return bounded_number(kind, low, exclusive=exclusive, at_least=True)


def main(argv: Sequence[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="+", help="CT and liver label paths, alternating")
    parser.add_argument("-o", "--output", required=True,
                        help="PNG to write (docs/images/synthetic_lesions_gallery.png is the committed picture)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument("--panels", type=at_least(int, 1), default=8,
                        help="image pairs in total, 1 or more (default 8 -> 4x4 grid)")
    parser.add_argument("--pixel-mm", type=at_least(float, 0.0, exclusive=True), default=1.5,
                        help="network grid pixel size in mm, above 0 (default 1.5)")
    parser.add_argument("--context", type=at_least(int, 0), default=1,
                        help="c: stack of 2c+1 slices, 0 or more (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if len(args.pairs) % 2:
        parser.error("give CT and liver label paths in pairs")
    from LiverTumorSegLib.fileutil import check_can_write

    check_can_write(args.output, overwrite=args.overwrite)  # it replaced the committed picture without a word

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from LiverTumorSegLib.training.synthetic_lesions import LesionConfig, insert_lesions

    rng = np.random.default_rng(args.seed)
    config = LesionConfig(probability=1.0)
    cases = [(args.pairs[i], args.pairs[i + 1]) for i in range(0, len(args.pairs), 2)]
    per_case = [args.panels // len(cases) + (1 if i < args.panels % len(cases) else 0) for i in range(len(cases))]
    tiles = []
    for (ct_path, label_path), n in zip(cases, per_case):
        hu, labels, spacing = load_canonical(ct_path, label_path)
        if not (labels >= 1).any():  # crop_box failed on an empty mask ("zero-size array")
            from LiverTumorSegLib.errors import InputError
            raise InputError(f"Label '{label_path}' has no liver voxel; the gallery inserts tumors into the liver. "
                             f"Give the CT's liver label.")
        hu, labels, spacing = to_network_grid(hu, labels, spacing, args.pixel_mm)
        c = args.context
        for z in liver_slices(labels, n, rng):
            idx = np.clip(np.arange(z - c, z + c + 1), 0, hu.shape[0] - 1)
            hu_new, lab_new, infos = insert_lesions(hu[idx], labels[idx], spacing, rng, config)
            mid = c
            shown = [i for i in infos if abs(i["center_zyx"][0] - c) * spacing[0] < 0.5 * i["diameter_mm"]]
            title = "%s network-grid slice %d: %d lesions in stack\n%s" % (
                Path(ct_path).name.split(".")[0].replace("example_ct_", ""), z, len(infos),
                ", ".join("%.0fmm %+.0fHU" % (i["diameter_mm"], i["contrast_hu"]) for i in shown[:4]))
            tiles.append((hu_new[mid], lab_new[mid], title))

    cols = 4
    rows = int(np.ceil(2 * len(tiles) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), dpi=60)
    axes = np.atleast_2d(axes)
    for ax in axes.ravel():
        ax.axis("off")
    for k, (img, lab, title) in enumerate(tiles):
        box = crop_box(lab >= 1)
        shown = np.clip((img[box] - (40 - 200)) / 400.0, 0, 1)
        a1, a2 = axes.ravel()[2 * k], axes.ravel()[2 * k + 1]
        a1.imshow(shown, cmap="gray", vmin=0, vmax=1, interpolation="bilinear")
        a1.set_title(title, fontsize=8)
        a2.imshow(shown, cmap="gray", vmin=0, vmax=1, interpolation="bilinear")
        a2.contour(lab[box] >= 1, levels=[0.5], colors="lime", linewidths=0.7)
        if (lab[box] == 2).any():
            a2.contour(lab[box] == 2, levels=[0.5], colors="red", linewidths=0.9)
        a2.set_title("liver (green), synthetic tumor (red)\nW 400 / L 40", fontsize=8)
    fig.tight_layout()
    from LiverTumorSegLib.fileutil import atomic_output

    with atomic_output(args.output, overwrite=args.overwrite) as tmp:
        fig.savefig(str(tmp), format="png")
    print("wrote %s (%d panels)" % (args.output, len(tiles)))
    return 0


if __name__ == "__main__":
    from LiverTumorSegLib.cli import run_script

    sys.exit(run_script(main))
