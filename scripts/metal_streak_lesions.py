"""What the bundled model's lesions on the robustness benchmark's ``metal_streaks`` row are, and whether a shape rule
would tell the streaks' false lesions from the true ones.

    python scripts/metal_streak_lesions.py --data DIR|CSV [--model default] [--seeds 0,1,2] [--max-slices 40]
        [--json OUT.json [--overwrite]]

``--data``: the cases as ``benchmarks/robustness.py --data`` takes them (the team's shared cases were used).

Each case gets the benchmark's synthetic tumors and its ``metal_streaks`` perturbation (a pedicle screw on
the spine with straight streaks through it, ``benchmarks/robustness.py``), exactly as the benchmark makes them for
that seed, and is segmented with the default post-processing. Every predicted tumor component (26-connected) is then
described: volume (mL), slices, median HU less the median of the predicted liver, whether it touches a true
(synthetic) tumor, its in-plane elongation on its middle slice (square root of the ratio of the principal
variances, ``(y, x)`` in mm) and ``radial_cos``: the absolute cosine between its long axis and the direction from
the metal's centre to the component's centre (1: it points at the metal, as a streak does). Streaks run along
straight lines through the metal, so a lesion made by one is elongated and points at it; the question is whether
true tumors under the streaks are not. Prints one JSON line per component and, per seed and in all, how many
components a rule "elongation >= 1.5 and radial_cos >= 0.95" would take, false and true. Measures only: nothing in
the library uses it (docs/metal_streak_lesions.md).

The options, the cases of ``--data``, the model and ``--json`` (an existing file replaced only with ``--overwrite``)
are checked before the first case is segmented; a user error is one ``error:`` line and exit 2.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import robustness as bench  # noqa: E402

from LiverTumorSegLib.errors import InputError  # noqa: E402
from LiverTumorSegLib.inference.api import segment_volume  # noqa: E402
from LiverTumorSegLib.package import load_model_package, resolve_model  # noqa: E402

ELONGATION_MIN = 1.5
RADIAL_COS_MIN = 0.95


def describe(component_zyx: np.ndarray, hu_zyx: np.ndarray, metal_zyx: np.ndarray, spacing_zyx, liver_hu: float,
             true_tumor_zyx: np.ndarray, voxel_ml: float) -> Dict[str, Any]:
    """One predicted tumor component's numbers (see the module's docstring); ``*_zyx`` arrays share one grid."""
    zz = np.nonzero(component_zyx.any(axis=(1, 2)))[0]
    z = int(zz[len(zz) // 2])
    py, px = np.nonzero(component_zyx[z])
    sy, sx = float(spacing_zyx[1]), float(spacing_zyx[2])
    points = np.stack([(py - py.mean()) * sy, (px - px.mean()) * sx], axis=1)
    variances, axes = np.linalg.eigh(np.cov(points.T) + 1e-6 * np.eye(2)) if len(py) >= 3 else \
        (np.array([1.0, 1.0]), np.eye(2))
    elongation = float(np.sqrt(variances[1] / max(variances[0], 1e-6)))
    my, mx = np.nonzero(metal_zyx[z])
    to_metal = np.array([(py.mean() - my.mean()) * sy, (px.mean() - mx.mean()) * sx]) if my.size else None
    distance = float(np.linalg.norm(to_metal)) if to_metal is not None else None
    radial = abs(float(axes[:, 1] @ to_metal)) / distance if distance else None
    return {"ml": round(float(component_zyx.sum()) * voxel_ml, 2), "slices": int(len(zz)),
            "median_hu_minus_liver": round(float(np.median(hu_zyx[component_zyx])) - liver_hu, 1),
            "touches_true_tumor": bool((component_zyx & true_tumor_zyx).any()),
            "elongation": round(elongation, 2), "radial_cos": None if radial is None else round(radial, 3),
            "distance_to_metal_mm": None if distance is None else round(distance, 1)}


def caught(row: Dict[str, Any]) -> bool:
    return row["radial_cos"] is not None and row["elongation"] >= ELONGATION_MIN and \
        row["radial_cos"] >= RADIAL_COS_MIN


def parse_seeds(text: str) -> List[int]:
    """``--seeds`` (:func:`LiverTumorSegLib.argtypes.seed_list`): a word was a ValueError traceback."""
    from LiverTumorSegLib.argtypes import seed_list

    return seed_list(text)


def check_json_output(path, overwrite: bool, data) -> None:
    """Before any work: ``--json`` ends in .json, can be written (an existing file only with --overwrite) and is not
    ``--data``'s CSV. It was written after every case, over any file."""
    from LiverTumorSegLib.fileutil import check_json_output as check_output

    check_output(path, overwrite, [data], inputs_named="--data's files")


def main(argv=None) -> int:
    """The measurement; a user error is one ``error:`` line and exit 2 (:func:`LiverTumorSegLib.cli.run_script`,
    as the other scripts)."""
    from LiverTumorSegLib.cli import run_script

    return run_script(run, argv)


def run(argv=None) -> int:
    from scipy import ndimage

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="cases as benchmarks/robustness.py --data takes them")
    parser.add_argument("--model", default="default")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--max-slices", type=int, default=40, help="at most N slices around the liver per case "
                        "(0 = all)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    args = parser.parse_args(argv)
    if args.max_slices < 0:  # as robustness.py: a negative count kept no slice, and the result was empty with exit 0
        raise InputError("--max-slices must be >= 0 (0 = all slices).")
    seeds = parse_seeds(args.seeds)
    if not Path(args.data).exists():
        raise InputError(f"--data '{args.data}' does not exist; give the cases as benchmarks/robustness.py --data "
                         f"takes them (a CSV or a folder).")
    check_json_output(args.json, args.overwrite, args.data)
    found = bench.find_cases(args.data)
    package = load_model_package(resolve_model(args.model))
    rows: List[Dict[str, Any]] = []
    for seed in seeds:
        for case in found:
            bench_case = bench.load_bench_case(case, seed=seed, max_slices=args.max_slices)
            sample = bench.metal_streaks(bench_case.sample, bench.case_seed(bench_case.case_id + "metal_streaks",
                                                                                seed))
            if sample is None:
                continue
            labels = segment_volume(sample.volume(bench_case.case_id), package, device="cpu").labels
            components, count = ndimage.label(labels == 2, structure=np.ones((3, 3, 3), dtype=bool))
            liver_hu = float(np.median(sample.hu[labels == 1]))
            metal = sample.hu >= bench.METAL_HU - 1.0
            voxel_ml = float(np.prod(sample.true_spacing_zyx)) / 1000.0
            for k in range(1, count + 1):
                row = {"seed": seed, "case": bench_case.case_id}
                row.update(describe(components == k, sample.hu, metal, sample.spacing_zyx, liver_hu,
                                    sample.labels == 2, voxel_ml))
                row["caught"] = caught(row)
                rows.append(row)
                print(json.dumps(row))
    for seed in sorted({r["seed"] for r in rows}) + [None]:
        subset = [r for r in rows if seed is None or r["seed"] == seed]
        false = [r for r in subset if not r["touches_true_tumor"]]
        true = [r for r in subset if r["touches_true_tumor"]]
        print(f"{'all seeds' if seed is None else f'seed {seed}'}: false lesions {len(false)} "
              f"({sum(r['ml'] for r in false):.1f} mL), the rule takes {sum(map(caught, false))} "
              f"({sum(r['ml'] for r in false if caught(r)):.1f} mL); lesions touching a true tumor {len(true)}, "
              f"the rule takes {sum(map(caught, true))} ({sum(r['ml'] for r in true if caught(r)):.1f} mL)")
    if args.json:
        from LiverTumorSegLib.fileutil import atomic_output

        with atomic_output(args.json, overwrite=args.overwrite) as tmp:
            Path(tmp).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())  # main enters through LiverTumorSegLib.cli.run_script
