"""Compare training recipes on leave-one-patient-out fold models, with the training seed's noise beside them.

    python benchmarks/compare_recipes.py --arm v2=RUNS/v2 --arm field=RUNS/field --data CASES.csv
        [--seeds 0,1,2] [--perturbations baseline,liver_hu-40] [--max-slices N] [--device cpu] [--json out.json [--overwrite]]

``--arm NAME=WHERE`` (two or more): WHERE is a folder of ``.safetensors`` packages, a glob, or a comma-separated
list of packages; every package is a fold model trained by one recipe (``train --folds K --fold I``, or
``crossval``). Its held-out case is what its metadata lists as a validation case and not as a training case or
patient (``robustness.validation_only_names``); a package with no such case among ``--data`` is refused.

Each package's held-out CT goes once, as it is, through the normal inference path (network + default
post-processing; robustness row ``original``), and once per ``--seeds`` value per perturbation with the robustness
benchmark's synthetic tumors (row ``baseline``: tumors only; ``liver_hu-40``: and a darker liver). Per package:

- ``liver``: whole-CT liver Dice (label >= 1) of the real CT;
- ``outside_ml``: liver predicted outside the true liver (mL);
- ``false_ml`` / ``false_n``: tumor predicted outside the real CT's labelled tumor (mL), and predicted tumor
  components touching no labelled tumor (on the team's tumor-free cases: all predicted tumor);
- per perturbation, synthetic-tumor Dice: the mean over the benchmark seeds (with min..max).

Packages pair across arms by (held-out cases, training seed, ``train --seed``): the same fold and draw. The
summary gives each arm's means and, against the first arm, the paired differences (mean, min..max, how many
pairs improved). **It also gives the spread that the training seed alone causes** within the first arm (the
range over training seeds of one fold, averaged over folds): an arm difference smaller than that spread is not
evidence. On issue 11's fold 0 (docs/synthetic_lesions.md) the training seed alone moved the false tumor by 12 mL
(81 vs 93 mL) while the liver field moved it by 71-80 mL; with one seed per arm a difference of that seed's size
could not have been told from the lever.

Tumor Dice here is on synthetic tumors and liver Dice on the team's few patients: the table ranks recipes on
those cases; it does not predict a held-out hospital's numbers.
"""
import argparse
import glob
import json
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import robustness as rb  # noqa: E402  (the benchmark's cases, perturbations and scores)

from LiverTumorSegLib.errors import InputError  # noqa: E402

SCALAR_KEYS = ("liver", "outside_ml", "false_ml", "false_n")
HIGHER_IS_BETTER = {"liver": True, "outside_ml": False, "false_ml": False, "false_n": False}


def parse_arm(text: str) -> Tuple[str, List[Path]]:
    """``NAME=WHERE`` -> (name, sorted package paths); WHERE: folder, glob or comma-separated list."""
    name, sep, where = text.partition("=")
    if not sep or not name.strip() or not where.strip():
        raise InputError(f"--arm '{text}': write NAME=FOLDER (or NAME=GLOB, NAME=A.safetensors,B.safetensors).")
    paths: List[Path] = []
    for part in where.split(","):
        part = part.strip()
        if Path(part).is_dir():
            paths.extend(sorted(Path(part).glob("*.safetensors")))
        elif any(ch in part for ch in "*?["):
            paths.extend(sorted(Path(p) for p in glob.glob(part)))
        elif part:
            paths.append(Path(part))
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"--arm {name}: no such package file(s): {', '.join(missing)}.")
    if not paths:
        raise InputError(f"--arm {name}: '{where}' holds no .safetensors package.")
    return name.strip(), paths


def held_out_cases(metadata: Dict[str, Any], cases: Sequence[Any]) -> List[Any]:
    """The cases of ``cases`` (training.datasets.Case) that ``metadata`` lists as validation only."""
    patient_of = {c.case_id: c.patient_id for c in cases}
    names = rb.validation_only_names(metadata, patient_of)
    return [c for c in cases if c.case_id in names]


def training_seed(metadata: Dict[str, Any]) -> Optional[int]:
    config = (metadata.get("training") or {}).get("config") if isinstance(metadata, dict) else None
    seed = config.get("seed") if isinstance(config, dict) else None
    return int(seed) if isinstance(seed, (int, float)) and not isinstance(seed, bool) else None


def package_summary(rows: Sequence[Dict[str, Any]], perturbations: Sequence[str]) -> Dict[str, Any]:
    """Per-package numbers from robustness rows (``original`` once, each perturbation once per seed, each row
    tagged with ``bench_seed``): the real-CT scalars averaged over held-out cases, and per perturbation the
    synthetic-tumor Dice averaged over cases for each seed, then over seeds (with min and max)."""
    original = [r for r in rows if r["perturbation"] == "original"]
    if not original:
        raise InputError("no 'original' row: the held-out CT was not run.")
    out: Dict[str, Any] = {
        "liver": _mean(r["liver_dice"] for r in original),
        "outside_ml": _mean(r["liver_outside_ml"] for r in original),
        "false_ml": _mean(r["tumor_outside_ml"] for r in original),
        "false_n": _mean(r["false_lesions"] for r in original),
        "tumor": {},
    }
    for name in perturbations:
        per_seed = {}
        for r in rows:
            if r["perturbation"] == name and r.get("tumor_dice") is not None:
                per_seed.setdefault(r["bench_seed"], []).append(r["tumor_dice"])
        values = [float(np.mean(v)) for _, v in sorted(per_seed.items())]
        out["tumor"][name] = {"mean": _mean(values), "min": min(values) if values else None,
                              "max": max(values) if values else None, "per_seed": values}
    return out


def _mean(values) -> Optional[float]:
    values = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(values)) if values else None


def metric_values(summary: Dict[str, Any], perturbations: Sequence[str]) -> Dict[str, Optional[float]]:
    """Flat metric name -> value: the scalars and ``tumor:<perturbation>`` (mean over seeds)."""
    flat = {k: summary[k] for k in SCALAR_KEYS}
    flat.update({f"tumor:{p}": summary["tumor"][p]["mean"] for p in perturbations})
    return flat


def seed_spread(entries: Sequence[Dict[str, Any]], metric: str) -> Optional[float]:
    """Mean over folds (held-out keys) with >= 2 different known training seeds of the metric's range
    (max - min) over those seeds. Packages of one seed (or of an unrecorded one) are not a seed's spread."""
    by_fold: Dict[Any, Dict[int, float]] = {}
    for e in entries:
        v = e["metrics"].get(metric)
        if v is not None and e.get("training_seed") is not None:
            by_fold.setdefault(e["held_out"], {}).setdefault(e["training_seed"], v)
    ranges = [max(v.values()) - min(v.values()) for v in by_fold.values() if len(v) >= 2]
    return float(np.mean(ranges)) if ranges else None


def check_unique_pair_keys(name: str, keyed: Sequence[Tuple[Any, Any]]) -> None:
    """InputError when two packages of arm ``name`` share a pairing key (held-out cases, training seed): only
    one of them could be paired, and the other was dropped without a word (two checkpoints of one fold, a
    package listed twice, packages without a recorded seed). ``keyed``: ``(package path, key)``."""
    seen: Dict[Any, Any] = {}
    for path, key in keyed:
        if not key[0]:
            continue  # no held-out case: evaluate_package refuses it with its own message
        if key in seen:
            raise InputError(f"--arm {name}: '{seen[key]}' and '{path}' are both fold {', '.join(key[0])} with "
                             f"training seed {key[1]}; an arm holds one package per fold and seed. Leave one out "
                             f"(or give them different --seed when training).")
        seen[key] = path


def common_pair_keys(arms: Sequence[Tuple[str, List[Dict[str, Any]]]]) -> set:
    """The pairing keys every arm has: the arms' means are taken over these, so they compare like with like."""
    keys = [{e["pair_key"] for e in entries} for _, entries in arms]
    return set.intersection(*keys) if keys else set()


def training_differences(base: Sequence[Dict[str, Any]], other: Sequence[Dict[str, Any]]) -> List[str]:
    """Lines naming paired packages trained for other step counts or on other cases than their partner: their
    difference is not the recipe's alone."""
    base_by_key = {e["pair_key"]: e for e in base}
    lines = []
    for e in other:
        partner = base_by_key.get(e["pair_key"])
        if partner is None:
            continue
        for key, what in (("training_steps", "steps"), ("training_cases", "training cases")):
            if e.get(key) != partner.get(key):
                names = package_names(e["package"], partner["package"])
                lines.append(f"  note: {names[0]} and {names[1]} were trained "
                             f"with other {what} ({e.get(key)} vs {partner.get(key)})")
    return lines


def package_names(first: str, second: str) -> Tuple[str, str]:
    """Two packages' file names, or their paths where the names are one (crossval names every arm's folds
    fold_<i>.safetensors: 'fold_0.safetensors and fold_0.safetensors were trained with other steps')."""
    names = (Path(first).name, Path(second).name)
    return (str(first), str(second)) if names[0] == names[1] else names


def not_held_out_lines(arms: Sequence[Tuple[str, List[Dict[str, Any]]]]) -> List[str]:
    """Lines naming packages whose ``--init-from`` start was trained on their held-out patients (their package's
    ``validation.init_trained_on_validation_patients``): their numbers are no held-out measure, though each is
    listed as 'held out' on its validation case (a crossval fine-tuned from the bundled default, which saw every
    shared patient, compared with one trained from scratch as if both were held out)."""
    lines = []
    for name, entries in arms:
        for e in entries:
            if e.get("not_held_out"):
                lines.append(f"  note: {name}'s {e['package']} started (--init-from) from a package trained on "
                             f"{', '.join(e['not_held_out'])}: its numbers on them are not held out")
    return lines


def paired_differences(base: Sequence[Dict[str, Any]], other: Sequence[Dict[str, Any]], metric: str
                       ) -> List[float]:
    """``other - base`` of the metric for every pair with the same (held-out cases, training seed)."""
    base_by_key = {e["pair_key"]: e["metrics"].get(metric) for e in base}
    diffs = []
    for e in other:
        a, b = base_by_key.get(e["pair_key"]), e["metrics"].get(metric)
        if a is not None and b is not None:
            diffs.append(b - a)
    return diffs


def improved(diff: float, metric: str) -> bool:
    higher = HIGHER_IS_BETTER.get(metric, True)
    return diff > 0 if higher else diff < 0


def summary_lines(arms: Sequence[Tuple[str, List[Dict[str, Any]]]], perturbations: Sequence[str]) -> List[str]:
    """The printed comparison: one line per metric with each arm's mean, the first arm's seed spread and, for
    every other arm, the paired change against the first."""
    metrics = list(SCALAR_KEYS) + [f"tumor:{p}" for p in perturbations]
    base_name, base = arms[0]
    common = common_pair_keys(arms)
    head = f"  {'metric':<22}" + "".join(f" {name[:14]:>14}" for name, _ in arms) + f"  {'seed spread':>11}"
    head += "".join(f"  {name[:10] + ' - ' + base_name[:10]:>36}" for name, _ in arms[1:])
    lines = [head, "  " + "-" * (len(head) - 2)]
    for metric in metrics:
        cells = []
        for _, entries in arms:  # over the folds and seeds every arm has: other folds are not comparable
            m = _mean(e["metrics"].get(metric) for e in entries if e["pair_key"] in common)
            cells.append(f" {_fmt(m):>14}")
        spread = seed_spread(base, metric)
        line = f"  {metric:<22}" + "".join(cells) + f"  {_fmt(spread):>11}"
        for _, entries in arms[1:]:
            diffs = paired_differences(base, entries, metric)
            if diffs:
                wins = sum(1 for d in diffs if improved(d, metric))
                text = f"{np.mean(diffs):+.3f} [{min(diffs):+.3f}..{max(diffs):+.3f}] {wins}/{len(diffs)} better"
            else:
                text = "no pairs"
            line += f"  {text:>36}"
        lines.append(line)
    left_out = {name: sum(1 for e in entries if e["pair_key"] not in common) for name, entries in arms}
    lines.append(f"  arm means over the {len(common)} fold/seed pair(s) every arm has"
                 + ("" if not any(left_out.values()) else "; left out of them (no partner in some arm): "
                    + ", ".join(f"{name} {n}" for name, n in left_out.items() if n)))
    for _, entries in arms[1:]:
        lines.extend(training_differences(base, entries))
    lines.extend(not_held_out_lines(arms))
    return lines


def _fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def package_line(arm: str, entry: Dict[str, Any], perturbations: Sequence[str]) -> str:
    s = entry["summary"]
    tumors = "  ".join(f"{p} {_fmt(s['tumor'][p]['mean'])} [{_fmt(s['tumor'][p]['min'])}..{_fmt(s['tumor'][p]['max'])}]"
                       for p in perturbations)
    seen = entry.get("not_held_out")
    caveat = f"  (not held out: its --init-from package was trained on {', '.join(seen)})" if seen else ""
    return (f"  {arm:<10} {Path(entry['package']).name:<28} held out {','.join(entry['held_out']):<20} "
            f"seed {entry['training_seed']!s:<6} liver {_fmt(s['liver'])}  outside {s['outside_ml']:.1f} mL  "
            f"false tumor {s['false_ml']:.1f} mL ({s['false_n']:.0f})  {tumors}{caveat}")


def evaluate_package(path: Path, cases: Sequence[Any], perturbations: Sequence[str], seeds: Sequence[int],
                     max_slices: Optional[int], device: str, threads: Optional[int]) -> Dict[str, Any]:
    """Run one fold package on its held-out cases: the real CT once, the perturbations once per seed."""
    from LiverTumorSegLib.inference.api import make_engine
    from LiverTumorSegLib.package import load_model_package

    package = load_model_package(path)
    held = held_out_cases(package.metadata, cases)
    if not held:
        raise InputError(f"{path}: its metadata lists no validation-only case among --data "
                         f"({', '.join(c.case_id for c in cases)}); compare_recipes compares leave-one-patient-out "
                         f"fold models (train --folds K --fold I, or crossval).")
    engine = make_engine(package, device, threads=threads)
    rows: List[Dict[str, Any]] = []
    for k, seed in enumerate(seeds):
        loaded = [rb.load_bench_case(c, seed, max_slices, digest=False) for c in held]  # held-out: no digest match
        names = (["original"] if k == 0 else []) + list(perturbations)
        for row in rb.evaluate(engine, loaded, names, seed):
            row["bench_seed"] = int(seed)
            rows.append(row)
    held_ids, seed = pair_key(package.metadata, cases)
    summary = package_summary(rows, perturbations)
    training = package.metadata.get("training") or {}
    seen = (package.metadata.get("validation") or {}).get("init_trained_on_validation_patients")
    return {"package": str(path), "held_out": held_ids, "training_seed": seed, "pair_key": (held_ids, seed),
            "not_held_out": [str(p) for p in seen] if isinstance(seen, list) else [],
            "training_steps": training.get("global_step"), "training_cases": sorted(training.get("cases") or []),
            "rows": rows, "summary": summary, "metrics": metric_values(summary, perturbations)}


def pair_key(metadata: Dict[str, Any], cases: Sequence[Any]) -> Tuple[Tuple[str, ...], Optional[int]]:
    """``(held-out case ids, training seed)``: what pairs a package with its partner in another arm."""
    return tuple(sorted(c.case_id for c in held_out_cases(metadata, cases))), training_seed(metadata)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arm", action="append", required=True, metavar="NAME=WHERE",
                   help="a recipe's fold packages: folder, glob or comma-separated list (give two or more)")
    p.add_argument("--data", required=True, help="CSV (image,label[,patient]) or folder of cases")
    p.add_argument("--seeds", default="0,1,2", help="benchmark seeds of the synthetic tumors (default 0,1,2)")
    p.add_argument("--perturbations", default="baseline,liver_hu-40",
                   help="robustness perturbations with synthetic tumors (default baseline,liver_hu-40)")
    p.add_argument("--max-slices", type=int, default=0, help="at most N slices around the liver per case")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the network")
    p.add_argument("--json", help="write every row and summary to this JSON file (checked before the run)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    arms = [parse_arm(a) for a in args.arm]
    if len(arms) < 2 or len({name for name, _ in arms}) != len(arms):
        raise InputError("Give two or more --arm options with different names (the first is the reference).")
    try:
        # each once, in the order given: a repeat ran the same rows again and printed its metric twice
        seeds = list(dict.fromkeys(int(s) for s in args.seeds.split(",") if s.strip()))
    except ValueError:
        raise InputError(f"--seeds '{args.seeds}': comma-separated integers, e.g. 0,1,2.") from None
    perturbations = list(dict.fromkeys(p.strip() for p in args.perturbations.split(",") if p.strip()))
    allowed = [k for k in rb.PERTURBATIONS if k != "original"]   # the real CT always runs once
    bad = [p for p in perturbations if p not in allowed]
    if bad:
        raise InputError(f"--perturbations {bad}: choose from {', '.join(allowed)}.")
    if not seeds:
        raise InputError("--seeds: give at least one seed.")
    if args.max_slices < 0:
        raise InputError("--max-slices must be >= 0 (0 = all slices).")
    cases = rb.find_cases(args.data)
    rb.check_json_output(args.json, args.overwrite, args.data, [path for _, paths in arms for path in paths], cases)
    from LiverTumorSegLib.package import read_package_metadata

    for name, paths in arms:  # before any inference
        check_unique_pair_keys(name, [(path, pair_key(read_package_metadata(path), cases)) for path in paths])
    results = []
    for name, paths in arms:
        entries = []
        for path in paths:
            print(f"{name}: {path}", file=sys.stderr, flush=True)
            entry = evaluate_package(path, cases, perturbations, seeds, args.max_slices or None, args.device,
                                     args.threads)
            entries.append(entry)
            print(package_line(name, entry, perturbations), flush=True)
        results.append((name, entries))
    print(f"\nHeld-out cases through the normal pipeline; synthetic-tumor Dice averaged over benchmark seeds "
          f"{','.join(map(str, seeds))}. Paired by (held-out case, training seed); 'seed spread' = mean over folds "
          f"of the range that the training seed alone gives in '{results[0][0]}':")
    for line in summary_lines(results, perturbations):
        print(line)
    if args.json:
        from LiverTumorSegLib.fileutil import atomic_output

        document = {"data": str(args.data), "seeds": seeds, "perturbations": perturbations,
                    "arms": {name: [{k: v for k, v in e.items() if k != "pair_key"} for e in entries]
                             for name, entries in results}}
        with atomic_output(args.json, overwrite=args.overwrite) as tmp:
            Path(tmp).write_text(json.dumps(document, indent=1), encoding="utf-8")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    from LiverTumorSegLib.cli import run_script

    return run_script(lambda: run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())  # main enters through LiverTumorSegLib.cli.run_script
