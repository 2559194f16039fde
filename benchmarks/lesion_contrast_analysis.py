"""How well does a predicted lesion's contrast to the liver beside it tell false lesions from true tumors?

    python benchmarks/lesion_contrast_analysis.py [--false-data CSV --fold-packages P ... [--fold0-packages P ...]
        [--held-out N=STEM ...]] [--true-data DIR|CSV [--true-model default] [--perturbations a,b] [--seeds 0,1]
        [--max-slices 40]] [--json rows.json [--overwrite]] [--from-json rows.json] [--threads 2]

``contrast_to_liver_hu`` of a lesion (the lesion report's key, :mod:`LiverTumorSegLib.inference.water_density`):
median HU of its voxels minus the median HU of the predicted liver (label 1) more than 2 and at most 6 mm outside
it; None with fewer than 20 such voxels.

False lesions: each fold package (its fold number from ``fold<N>`` in its file name; ``--fold0-packages`` for
fold-0 models named otherwise, such as fine-tunes) runs ``segment`` (CPU, a subprocess, as a user would) on its
held-out case (``--held-out N=STEM``, the CT ``STEM.nii[.gz]`` of ``--false-data``'s CSV, whose label column gives
the reference liver); every lesion of its report is false (these CTs hold no real tumor). For each: its contrast (from
the report) and the fraction of its voxels inside the reference liver.

True lesions: ``benchmarks/robustness.py``'s own cases and perturbations (synthetic tumors of known label) through
``segment_volume`` with ``--true-model``, as its ``evaluate`` runs them; a predicted lesion touching a synthetic (label
2) voxel is true, any other false.

Prints per group: count, contrast distribution, volume, and what share of lesions and mL a rule
``|contrast| < T`` (T = 5, 8, 10, 15 HU) would remove (a lesion without a contrast is never removed). Report only:
nothing here changes a segmentation.

Before the first segmentation every input is checked (each package is a model package with a held-out case that
``--false-data`` lists, ``--true-model``, the perturbations, seeds and ``--max-slices``) and ``--json`` can be
written (an existing file only with ``--overwrite``). A user error is one ``error:`` line and exit 2; a ``segment``
run that fails says segment's own error.
"""
import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
BENCHMARKS = Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from LiverTumorSegLib.errors import InputError  # noqa: E402

THRESHOLDS_HU = (5.0, 8.0, 10.0, 15.0)
"""The ``|contrast| < T`` rules tabulated (the brief's)."""
DEFAULT_HELD_OUT = {0: "example_ct_dicom20", 1: "example_ct_full112", 2: "ct3slice_ct"}
"""Held-out case (CT stem) of each leave-one-patient-out fold of the team's fold models."""


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def fold_of(package: Path) -> Optional[int]:
    """The fold number in a package's file name (``..._fold2.safetensors`` -> 2), None without one."""
    found = re.search(r"fold(\d+)", package.name)
    return int(found.group(1)) if found else None


def csv_cases(path: Path) -> Dict[str, Dict[str, Path]]:
    """CT stem -> {"image", "label"} (paths) of a CSV with columns image,label, read as ``train`` and the robustness
    benchmark read one (``training.datasets.discover_cases``)."""
    from LiverTumorSegLib.training.datasets import discover_cases

    out = {}
    for case in discover_cases(path, "csv", warn_patients=False):
        image = Path(case.image_path).resolve()  # segment runs with the repository as its working folder
        out[re.sub(r"\.nii(\.gz)?$", "", image.name)] = {"image": image, "label": Path(case.label_path).resolve()}
    return out


def lesion_liver_fractions(labels_zyx: np.ndarray, geometry: Any, reference_liver_zyx: np.ndarray) -> Dict[int, float]:
    """Lesion id (the report's numbering) -> fraction of its voxels inside the reference liver (label >= 1)."""
    from LiverTumorSegLib.inference.lesion_report import lesion_components

    ids, count = lesion_components(labels_zyx, geometry)
    inside = np.bincount(ids[reference_liver_zyx], minlength=count + 1)
    total = np.bincount(ids.ravel(), minlength=count + 1)
    return {i: float(inside[i]) / float(total[i]) for i in range(1, count + 1)}


def false_rows_of_package(package: Path, case: Dict[str, Path], stem: str, threads: int, work: Path
                          ) -> List[Dict[str, Any]]:
    """``segment`` with ``package`` on the case's CT (CPU); one row per lesion of its report."""
    from LiverTumorSegLib.io.labels import read_label_map
    from LiverTumorSegLib.io.reading import read_volume

    out, report_path = work / f"{package.stem}_{stem}.nii.gz", work / f"{package.stem}_{stem}.json"
    command = [sys.executable, "-m", "LiverTumorSegLib", "segment", str(case["image"]), "-o", str(out), "--report",
               str(report_path), "--overwrite", "--model", str(package), "--device", "cpu", "--threads", str(threads)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          universal_newlines=True, errors="replace")
    if done.returncode != 0:  # was CalledProcessError with no reason: segment's stderr went to DEVNULL
        lines = [line.strip() for line in (done.stderr or "").splitlines() if line.strip()]
        said = [line for line in lines if line.startswith("error:")] or lines[-1:] or ["(nothing on stderr)"]
        raise InputError(f"segment with {package} on {stem} failed (exit {done.returncode}): {said[-1]}")
    say(f"  {package.name} on {stem}: {time.perf_counter() - start:.1f} s")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    ct = read_volume(case["image"])
    labels = read_label_map(out, reference=ct)
    reference = read_label_map(case["label"], reference=ct)
    fractions = lesion_liver_fractions(labels.array, labels.geometry, reference.array >= 1)
    return [{"source": "fold_heldout", "package": str(package), "case": stem, "truth": "false",
             "lesion_id": d["id"], "volume_ml": d["volume_ml"], "contrast_to_liver_hu": d.get("contrast_to_liver_hu"),
             "median_hu": d.get("median_hu"), "inside_reference_liver_fraction": round(fractions[d["id"]], 4),
             "mostly_outside_reference_liver": fractions[d["id"]] < 0.5} for d in report["lesions"]]


def held_out_stems(items: Optional[Sequence[str]]) -> Dict[int, str]:
    """Fold -> held-out CT stem: the defaults, then each ``--held-out N=STEM``."""
    held_out = dict(DEFAULT_HELD_OUT)
    for item in items or []:
        fold, sep, stem = item.partition("=")
        if not sep or not fold.strip().isdigit() or not stem.strip():
            raise InputError(f"--held-out '{item}': expected N=STEM (a fold number and a CT's name without "
                             f".nii.gz), such as 0=example_ct_dicom20.")
        held_out[int(fold)] = stem.strip()
    return held_out


def false_plan(args: argparse.Namespace) -> List[Any]:
    """(package, case, stem) of every ``segment`` run, each checked before the first runs (minutes each): the
    package is a model package whose fold has a held-out CT that ``--false-data`` lists. A missing package failed
    after fold 0 had been segmented, and an unknown stem was a KeyError."""
    from LiverTumorSegLib.package import read_package_metadata

    cases = csv_cases(Path(args.false_data))
    held_out = held_out_stems(args.held_out)
    jobs = [(Path(p), fold_of(Path(p))) for p in args.fold_packages or []] + \
        [(Path(p), 0) for p in args.fold0_packages or []]
    if not jobs:
        raise InputError("--false-data needs the packages to run on it: --fold-packages and/or --fold0-packages.")
    plan = []
    for package, fold in jobs:
        if not package.is_file():
            raise InputError(f"Package '{package}' {'is a folder' if package.is_dir() else 'does not exist'}.")
        read_package_metadata(package)  # not a model package: its own one-line error, now rather than in segment
        if fold is None or fold not in held_out:
            raise InputError(f"{package}: no fold number in its name (or no --held-out for it); "
                             f"give it under --fold0-packages or name its fold.")
        stem = held_out[fold]
        if stem not in cases:
            raise InputError(f"{package}: fold {fold}'s held-out CT '{stem}' is not in --false-data "
                             f"'{args.false_data}' (its CTs: {', '.join(sorted(cases)) or 'none'}); give "
                             f"--held-out {fold}=STEM with one of them.")
        plan.append((package, cases[stem], stem))
    return plan


def false_rows(args: argparse.Namespace, plan: Optional[List[Any]] = None) -> List[Dict[str, Any]]:
    rows = []  # type: List[Dict[str, Any]]
    with tempfile.TemporaryDirectory(prefix="lesion_contrast_") as work:
        for package, case, stem in (false_plan(args) if plan is None else plan):
            rows += false_rows_of_package(package, case, stem, args.threads, Path(work))
    return rows


def true_perturbations(text: str) -> List[str]:
    """``--perturbations``' names, each one of robustness.py's (an unknown one was a KeyError mid-run)."""
    import robustness as bench

    names = list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [p for p in names if p not in bench.PERTURBATIONS]
    if not names or unknown:
        raise InputError(f"--perturbations: {'unknown ' + ', '.join(unknown) if unknown else 'none named'}; choose "
                         f"from {', '.join(bench.PERTURBATIONS)}.")
    return names


def true_seeds(text: str) -> List[int]:
    """``--seeds`` (:func:`LiverTumorSegLib.argtypes.seed_list`)."""
    from LiverTumorSegLib.argtypes import seed_list

    return seed_list(text, example="0,1")


def true_rows(args: argparse.Namespace) -> List[Dict[str, Any]]:
    """Lesions of ``--true-model`` on the robustness benchmark's synthetic-tumor samples, each true or false."""
    import robustness as bench
    from LiverTumorSegLib.inference.api import make_engine, segment_volume
    from LiverTumorSegLib.inference.lesion_report import lesion_components, lesion_report
    from LiverTumorSegLib.package import load_model_package, resolve_model

    package = load_model_package(resolve_model(args.true_model))
    engine = make_engine(package, "cpu", threads=args.threads)
    found = bench.find_cases(args.true_data, say)
    perturbations = true_perturbations(args.perturbations)
    rows = []  # type: List[Dict[str, Any]]
    for seed in true_seeds(args.seeds):
        for source in found:
            case = bench.load_bench_case(source, seed, args.max_slices or None, digest=False)
            for name in perturbations:
                sample = bench.PERTURBATIONS[name][1](case, bench.case_seed(case.case_id + name, seed))
                if sample is None:
                    continue
                start = time.perf_counter()
                volume = sample.volume(case.case_id)
                out = segment_volume(volume, engine.package, engine=engine)
                report = lesion_report(out.labels, volume.geometry, sample.hu)
                ids, count = lesion_components(out.labels, volume.geometry)
                truth = sample.labels == 2
                on_truth = np.bincount(ids[truth], minlength=count + 1)
                in_liver = np.bincount(ids[sample.labels >= 1], minlength=count + 1)
                size = np.bincount(ids.ravel(), minlength=count + 1)
                for d in report["lesions"]:
                    i = d["id"]
                    rows.append({"source": "benchmark", "package": str(args.true_model), "case": case.case_id,
                                 "perturbation": name, "seed": seed, "truth": "true" if on_truth[i] else "false",
                                 "lesion_id": i, "volume_ml": d["volume_ml"],
                                 "contrast_to_liver_hu": d.get("contrast_to_liver_hu"), "median_hu": d.get("median_hu"),
                                 "on_synthetic_tumor_fraction": round(float(on_truth[i]) / float(size[i]), 4),
                                 "inside_reference_liver_fraction": round(float(in_liver[i]) / float(size[i]), 4)})
                say(f"  {case.case_id} {name} seed {seed}: {len(report['lesions'])} lesions, "
                    f"{time.perf_counter() - start:.1f} s")
    return rows


def groups(rows: Sequence[Dict[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    out = {}  # type: Dict[str, List[Dict[str, Any]]]

    def add(name: str, row: Dict[str, Any]) -> None:
        out.setdefault(name, []).append(row)

    for row in rows:
        if row["source"] == "benchmark":
            add(f"benchmark {row['truth']} (all perturbations)", row)
            add(f"benchmark {row['truth']} {row['perturbation']}", row)
            if row["truth"] == "true" and row["on_synthetic_tumor_fraction"] >= 0.5:
                add("benchmark true, >= half on the tumor (all)", row)
        else:
            add(f"fold false {row['case']}", row)
            if row["case"] != "example_ct_full112":
                add("fold false all but example_ct_full112", row)
            if not row["mostly_outside_reference_liver"]:
                add("fold false mostly in ref. liver (all cases)", row)
    return dict(sorted(out.items()))


def fmt(value: Optional[float], digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def group_line(name: str, rows: Sequence[Dict[str, Any]]) -> str:
    contrasts = np.array([r["contrast_to_liver_hu"] for r in rows if r["contrast_to_liver_hu"] is not None])
    volumes = np.array([r["volume_ml"] for r in rows])
    quantiles = (np.percentile(contrasts, [0, 10, 50, 90, 100]) if contrasts.size else [None] * 5)
    removed = []
    for threshold in THRESHOLDS_HU:
        gone = [r for r in rows if r["contrast_to_liver_hu"] is not None and abs(r["contrast_to_liver_hu"]) < threshold]
        count_share = 100.0 * len(gone) / len(rows)
        ml_share = 100.0 * sum(r["volume_ml"] for r in gone) / max(volumes.sum(), 1e-12)
        removed.append(f"{count_share:5.1f}/{ml_share:5.1f}")
    return (f"{name:<46} {len(rows):>4} {len(rows) - contrasts.size:>4} "
            + " ".join(f"{fmt(q):>6}" for q in quantiles)
            + f" {np.median(volumes):>7.2f} {volumes.sum():>8.1f}  " + "  ".join(removed))


def table(rows: Sequence[Dict[str, Any]]) -> str:
    head = (f"{'group':<46} {'n':>4} {'None':>4} {'min':>6} {'p10':>6} {'median':>6} {'p90':>6} {'max':>6} "
            f"{'med mL':>7} {'sum mL':>8}  " + "  ".join(f"|c|<{t:g}: n%/mL%".rjust(11) for t in THRESHOLDS_HU))
    lines = [head, "-" * len(head)] + [group_line(name, group) for name, group in groups(rows).items()]
    lines.append("contrast: lesion median HU minus the median of the predicted liver 2-6 mm outside it (HU); None: "
                 "fewer than 20 such voxels (never removed); |c|<T: share of the group's lesions / of its mL removed "
                 "by a rule |contrast| < T HU.")
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--false-data", help="CSV image,label of the fold models' held-out cases")
    parser.add_argument("--fold-packages", nargs="*", help="fold packages (fold<N> in the file name)")
    parser.add_argument("--fold0-packages", nargs="*", help="packages whose held-out case is fold 0's")
    parser.add_argument("--held-out", action="append", help="N=STEM: fold N's held-out CT stem (defaults: "
                        + ", ".join(f"{k}={v}" for k, v in DEFAULT_HELD_OUT.items()) + ")")
    parser.add_argument("--true-data", help="robustness.py --data: cases to insert synthetic tumors into")
    parser.add_argument("--true-model", default="default")
    parser.add_argument("--perturbations", default="baseline,noise25,liver_hu-40,hyperdense")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--max-slices", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the per-lesion rows here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    parser.add_argument("--from-json", nargs="+", help="print the table of the rows of these --json files, "
                        "together (no segmentation)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The analysis; a user error is one ``error:`` line and exit 2 (:func:`LiverTumorSegLib.cli.run_script`, as
    the other scripts)."""
    from LiverTumorSegLib.cli import run_script

    return run_script(run, argv)


def check_json_output(args: argparse.Namespace) -> None:
    """Before any work: ``--json`` ends in .json, can be written (an existing file only with --overwrite) and is
    none of the --from-json inputs. It was written after all the runs, over any file."""
    from LiverTumorSegLib.fileutil import check_json_output as check_output

    check_output(args.json, args.overwrite, args.from_json or [], inputs_named="the --from-json files")


def run(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.max_slices < 0:  # as robustness.py: a negative count kept no slice
        raise InputError("--max-slices must be >= 0 (0 = all slices).")
    if args.threads < 1:
        raise InputError("--threads must be >= 1.")
    check_json_output(args)
    if args.from_json:
        rows = []
        for path in args.from_json:
            try:
                document = json.loads(Path(path).read_text(encoding="utf-8"))
            except ValueError as exc:
                raise InputError(f"'{path}' is not JSON ({exc}).") from None
            if not isinstance(document, dict) or not isinstance(document.get("rows"), list):
                raise InputError(f"'{path}' is not a --json output of this script (no list of rows).")
            rows += document["rows"]
    else:
        if not (args.false_data or args.true_data):
            raise InputError("Give --false-data with packages, --true-data, or --from-json.")
        plan = false_plan(args) if args.false_data else None
        if args.true_data:  # checked before the (minutes-long) false runs
            import robustness as bench
            from LiverTumorSegLib.package import resolve_model

            true_perturbations(args.perturbations)
            true_seeds(args.seeds)
            resolve_model(args.true_model)
            bench.find_cases(args.true_data)
        rows = []
        if plan is not None:
            rows += false_rows(args, plan)
        if args.true_data:
            rows += true_rows(args)
    if args.json:
        from LiverTumorSegLib.fileutil import atomic_output

        with atomic_output(args.json, overwrite=args.overwrite) as tmp:
            Path(tmp).write_text(json.dumps({"argv": list(sys.argv[1:] if argv is None else argv), "rows": rows},
                                            indent=1) + "\n", encoding="utf-8")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
