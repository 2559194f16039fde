"""Lesion confidence: how the mean tumor probability of predicted lesions separates true from false lesions.

    python benchmarks/lesion_confidence.py --data DIR|CSV --pair PACKAGE=CASE [--pair ...] [--all-cases PACKAGE]
        [--perturbations baseline,spacing-30,...] [--thresholds 0.5,0.6,0.65,0.7] [--max-ml 5]
        [--seed N] [--max-slices N] [--precision auto|fp32|bf16] [--json out.json [--overwrite]]

``--pair PACKAGE=CASE`` runs one package on one case of ``--data`` (e.g. a leave-one-patient-out fold model on
its held-out patient: ``--pair fold0.safetensors=example_ct_dicom20``); ``--all-cases PACKAGE`` runs it on every
case. Cases, synthetic tumors and perturbations are those of ``benchmarks/robustness.py`` (same seeds). Each run
uses the default post-processing **without** the lesion-confidence step (``min_lesion_probability = 0``), so
every lesion the step would judge is seen. For each predicted tumor component (26-connectivity): volume (mL),
mean, 90th-percentile and max tumor probability, the volume at a tumor probability of at least 0.9 (``core_ml``),
how many axial slices it spans, and whether it touches a (synthetic) true tumor. ``--seed`` and ``--max-slices``
draw the cases, tumors and perturbations as ``robustness.py`` with the same options does, so its rows can be read
lesion by lesion.

Printed per group (the pairs; the ``--all-cases`` runs): for each threshold t, how many true and false lesions
smaller than ``--max-ml`` have a mean probability below t (the ones the step turns into liver), and the true
tumor volume that would go. ``docs/lesion_confidence.md`` holds the run that chose the default (0.65, 5 mL).
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import robustness  # noqa: E402

DEFAULT_PERTURBATIONS = "baseline,spacing-30,spacing+30,liver_hu+40,liver_hu-40,noise25,original"


CORE_PROBABILITY = 0.9
"""``core_ml`` of a lesion: its volume at a tumor probability of at least this."""


def component_percentile(components: np.ndarray, count: int, probability_u8: np.ndarray,
                         fraction: float) -> np.ndarray:
    """Per component ``1..count`` of ``components`` (int, ``(z, y, x)``): the value of ``probability_u8`` (uint8,
    ``round(255 p)``) at rank ``floor(fraction * (n - 1))`` of its ``n`` voxels sorted ascending (the lower
    percentile, no interpolation), as p in 0..1."""
    inside = components > 0
    ids, values = components[inside], probability_u8[inside]
    order = np.lexsort((values, ids))
    counts = np.bincount(ids, minlength=count + 1)[1:]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return values[order][starts + np.floor(fraction * (counts - 1)).astype(np.int64)] / 255.0


def lesions_of(labels: np.ndarray, probability_u8: np.ndarray, truth_tumor: np.ndarray,
               voxel_ml: float) -> List[Dict[str, Any]]:
    """One dict per tumor component of ``labels`` (``(z, y, x)``, 26-connectivity): ml, mean_p (over the whole
    component, as the post-processing step computed it when docs/lesion_confidence.md calibrated the 0.65
    threshold; the step now reads only the voxels the network labelled tumor, so a lesion with a filled core reads
    higher there), p90 (:func:`component_percentile` at 0.9), max_p, core_ml (mL at p >= :data:`CORE_PROBABILITY`),
    slices (the axial slices it spans), true (it touches ``truth_tumor``)."""
    from scipy import ndimage

    from LiverTumorSegLib.inference.postprocess import (CONNECTIVITY_26, component_mean_probability,
                                                        component_peak_probability)

    components, count = ndimage.label(labels == 2, structure=CONNECTIVITY_26)
    if count == 0:
        return []
    index = np.arange(1, count + 1)
    voxels = np.bincount(components.ravel(), minlength=count + 1)
    mean = component_mean_probability(components, count, probability_u8, voxels)[1:]
    voxels = voxels[1:]
    top = component_peak_probability(components, count, probability_u8)[1:]
    p90 = component_percentile(components, count, probability_u8, 0.9)
    core = np.bincount(components[probability_u8 >= round(255 * CORE_PROBABILITY)], minlength=count + 1)[1:]
    spans = [s[0].stop - s[0].start for s in ndimage.find_objects(components)]
    touched = set(np.unique(components[truth_tumor & (components > 0)]).tolist())
    return [{"ml": round(float(v) * voxel_ml, 4), "mean_p": round(float(m), 4), "p90": round(float(q), 4),
             "max_p": round(float(t), 4), "core_ml": round(float(c) * voxel_ml, 4), "slices": int(n),
             "true": int(k) in touched} for k, v, m, q, t, c, n in zip(index, voxels, mean, p90, top, core, spans)]


def run_package(path: str, cases: Sequence[Any], perturbations: Sequence[str], device: str,
                seed: int = 0, precision: str = "auto") -> List[Dict[str, Any]]:
    """The lesions (:func:`lesions_of`) of package ``path`` on every perturbation of every case, drawn with
    ``seed`` as ``robustness.py --seed`` draws them, the network run at ``precision`` (segment's
    ``--precision``); each row names its package, case, perturbation and seed."""
    from LiverTumorSegLib.inference import SegmentationOptions, Segmenter
    from LiverTumorSegLib.inference.api import make_engine
    from LiverTumorSegLib.inference.postprocess import PostprocessingOptions
    from LiverTumorSegLib.package import load_model_package

    package = load_model_package(path)
    options = SegmentationOptions(model=str(path), device=device, probabilities=True, precision=precision,
                                  postprocessing=PostprocessingOptions(min_lesion_probability=0.0))
    segmenter = Segmenter(options, engine=make_engine(package, device, precision=precision))
    rows = []
    for case in cases:
        for name in perturbations:
            _, make = robustness.PERTURBATIONS[name]
            sample = make(case, robustness.case_seed(case.case_id + name, seed))
            if sample is None:
                continue
            result = segmenter.segment_volume(sample.volume(case.case_id))
            voxel_ml = float(np.prod(sample.true_spacing_zyx)) / 1000.0
            found = lesions_of(result.labels, result.tumor_probability, sample.labels == 2, voxel_ml)
            print(f"  {Path(path).name} {case.case_id} {name}: {len(found)} lesions, "
                  f"{sum(not f['true'] for f in found)} false", file=sys.stderr, flush=True)
            rows += [dict(f, package=str(path), case=case.case_id, perturbation=name, seed=seed) for f in found]
    return rows


def threshold_table(rows: Sequence[Dict[str, Any]], thresholds: Sequence[float], max_ml: float) -> str:
    true = [r for r in rows if r["true"]]
    false = [r for r in rows if not r["true"]]
    lines = [f"  {len(true)} true and {len(false)} false lesions; lowest true mean p: "
             f"{min((r['mean_p'] for r in true), default=float('nan')):.3f}",
             "  threshold  false removed  true removed  true mL removed"]
    for t in thresholds:
        gone = [r for r in rows if r["mean_p"] < t and r["ml"] < max_ml]
        lost = [r for r in gone if r["true"]]
        lines.append(f"  {t:9.2f}  {len(gone) - len(lost):6d} of {len(false):<4d} {len(lost):5d} of {len(true):<4d}"
                     f" {sum(r['ml'] for r in lost):10.2f}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--pair", action="append", default=[], help="PACKAGE=CASE (repeatable)")
    parser.add_argument("--all-cases", action="append", default=[], help="PACKAGE: run on every case")
    parser.add_argument("--perturbations", default=DEFAULT_PERTURBATIONS)
    parser.add_argument("--thresholds", default="0.5,0.55,0.6,0.65,0.7,0.75,0.8")
    parser.add_argument("--max-ml", type=float, default=5.0, help="only lesions smaller than this can be removed")
    parser.add_argument("--seed", type=int, default=0, help="draw tumors and perturbations as robustness.py --seed")
    parser.add_argument("--max-slices", type=int, default=0,
                        help="keep N slices around the liver, as robustness.py --max-slices (0: all)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="network precision, as segment's --precision")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="write the rows to this JSON file (checked before the run)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    args = parser.parse_args(argv)
    if not args.pair and not args.all_cases:
        parser.error("give --pair PACKAGE=CASE or --all-cases PACKAGE (nothing to run)")
    from LiverTumorSegLib.cli import run_script

    return run_script(run, args)


def run(args: argparse.Namespace) -> int:
    """Check every input before any inference, then run the packages and print the threshold tables."""
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.package import read_package_metadata, resolve_model

    perturbations = [p.strip() for p in args.perturbations.split(",") if p.strip()]
    unknown = [p for p in perturbations if p not in robustness.PERTURBATIONS]
    if unknown or not perturbations:
        raise InputError(f"--perturbations {unknown or args.perturbations!r}: choose from "
                         f"{', '.join(robustness.PERTURBATIONS)}.")
    try:
        thresholds = [float(t) for t in args.thresholds.split(",")]
    except ValueError:
        raise InputError(f"--thresholds '{args.thresholds}': comma-separated numbers, e.g. 0.5,0.65.") from None
    pairs = [(resolve_model(pair.partition("=")[0]), pair.partition("=")[2]) for pair in args.pair]
    every = [(name, resolve_model(name)) for name in args.all_cases]  # 'default' or a path
    packages = [p for p, _ in pairs] + [p for _, p in every]
    for path in packages:
        read_package_metadata(path)  # a missing or broken package: one line naming it, not a traceback
    found = robustness.find_cases(args.data)
    robustness.check_json_output(args.json, args.overwrite, args.data, packages, found)
    cases = {c.case_id: c for c in (robustness.load_bench_case(c, args.seed, args.max_slices or None, digest=False)
                                    for c in found)}
    for (_, case_id), pair in zip(pairs, args.pair):
        if case_id not in cases:
            raise InputError(f"--pair {pair}: no case '{case_id}' in {args.data} (have {', '.join(cases)})")
    groups = {}  # type: Dict[str, List[Dict[str, Any]]]
    for path, case_id in pairs:
        groups.setdefault("pairs", []).extend(run_package(path, [cases[case_id]], perturbations, args.device,
                                                            args.seed, args.precision))
    for name, path in every:
        groups.setdefault(f"{name} on every case", []).extend(
            run_package(path, list(cases.values()), perturbations, args.device, args.seed,
                                     args.precision))
    for name, rows in groups.items():
        print(f"{name} (lesions smaller than {args.max_ml:g} mL with mean tumor probability < threshold):")
        print(threshold_table(rows, thresholds, args.max_ml))
    if args.json:
        from LiverTumorSegLib.fileutil import atomic_output

        with atomic_output(args.json, overwrite=args.overwrite) as tmp:
            Path(tmp).write_text(json.dumps({"perturbations": perturbations, "groups": groups}, indent=1),
                                 encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())  # main enters through LiverTumorSegLib.cli.run_script
