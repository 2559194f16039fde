"""Leave-one-patient-out fold models on their held-out patients, as the default model's ship rules read them.

    python scripts/evaluate_folds.py --cases CASES.csv FOLD.safetensors [FOLD.safetensors ...] [--json OUT.json]
        [--overwrite] [--min-lesion-probability P] [--lesion-probability-statistic mean|peak]

Each fold package records the cases it held out (``training.validation_cases``); each such case's whole CT is
segmented through the normal pipeline with the default post-processing on the CPU, exactly as
``scripts/finalize_default_model.py`` validates the folds of a final package (its ``evaluate_fold``), but without
needing the final model or writing a package: for folds trained before the final model, or with a second training
seed. Prints one JSON line per case (liver Dice and surface distances, false tumor in mL and each false lesion's mL,
largest first: the shared cases' references have no tumor), then the mean liver Dice and the total false tumor.
``--min-lesion-probability P`` reads every fold with the post-processing's lesion confidence threshold at P instead
of the default 0.65 (``segment --min-lesion-probability``; v11's rule reads its folds at 0.75), and
``--lesion-probability-statistic peak`` compares each lesion's peak tumor probability with it instead of its mean
(``docs/lesion_peak_probability.md``); the rows and the summary record what was given.
Each row also names the fold package's training ``seed`` and ``fold`` (as its training record gives them): the
``--json`` rows of every seed, put together under ``rows`` with a ``source`` and the ``recipe``, are what
``finalize_default_model.py --recorded-folds`` takes when the fold packages will not be kept.

Every input (the CSV, each package and the cases it held out) and ``--json`` (replaced only with ``--overwrite``)
are checked before the first fold is segmented; a user error is one ``error:`` line and exit 2.
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from finalize_default_model import evaluate_fold  # noqa: E402

from LiverTumorSegLib.argtypes import probability  # noqa: E402
from LiverTumorSegLib.errors import InputError  # noqa: E402
from LiverTumorSegLib.inference.postprocess import LESION_PROBABILITY_STATISTICS  # noqa: E402
from LiverTumorSegLib.package import read_package_metadata  # noqa: E402
from LiverTumorSegLib.training.datasets import discover_cases  # noqa: E402


def held_out_cases(package_path: Path) -> list:
    """The case ids a fold package records as held out (its validation cases); refused if it records none."""
    if not package_path.is_file():  # read_package_metadata's ModelPackageError was a traceback
        raise InputError(f"Fold package '{package_path}' {'is a folder' if package_path.is_dir() else 'does not exist'}"
                         f"; give the .safetensors files of `livertumorseg train --folds N --fold K`.")
    listed = ((read_package_metadata(package_path) or {}).get("training") or {}).get("validation_cases")
    if not isinstance(listed, list) or not listed:
        raise InputError(f"{package_path} records no held-out (validation) case: it is not a fold model of "
                         f"`livertumorseg train --folds N --fold K`.")
    return [str(case) for case in listed]


def check_json_output(path, overwrite: bool, inputs) -> None:
    """Before any fold is segmented: ``--json`` ends in .json, can be written (an existing file only with
    --overwrite) and is none of the inputs. It was written after every fold had run, over any file, and a bad path
    lost the results with a traceback."""
    from LiverTumorSegLib.fileutil import check_json_output as check_output

    check_output(path, overwrite, inputs)


def main(argv=None) -> int:
    """The evaluation; a user error is one ``error:`` line and exit 2 (:func:`LiverTumorSegLib.cli.run_script`,
    as the other scripts)."""
    from LiverTumorSegLib.cli import run_script

    return run_script(run, argv)


def run(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packages", nargs="+", help="fold model packages")
    parser.add_argument("--cases", required=True, help="the CSV (image,label,patient) the folds were trained from")
    parser.add_argument("--json", default=None, help="also write every row, the mean and the total here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    parser.add_argument("--min-lesion-probability", type=probability, default=None, metavar="P",
                        help="the post-processing's lesion confidence threshold, 0..1 (default: segment's, 0.65)")
    parser.add_argument("--lesion-probability-statistic", choices=LESION_PROBABILITY_STATISTICS, default=None,
                        help="what each lesion gives to compare with the threshold: its mean or peak tumor "
                             "probability (default: segment's, the mean)")
    args = parser.parse_args(argv)
    if not Path(args.cases).is_file():
        parser.error(f"--cases '{args.cases}' does not exist")
    check_json_output(args.json, args.overwrite, [args.cases] + list(args.packages))
    cases = {case.case_id: case for case in discover_cases(args.cases, "csv")}
    from LiverTumorSegLib.fileutil import same_file_among

    for i, package in enumerate(args.packages):  # one package twice counted its cases twice in the mean and total
        if same_file_among([package] + list(args.packages[:i])):
            parser.error(f"'{package}' is given twice (or is the same file as an earlier one); give each fold "
                         f"package once")
    plan = []
    for package in args.packages:  # every package's cases are checked before the first (minutes-long) evaluation
        for case_id in held_out_cases(Path(package)):
            if case_id not in cases:
                parser.error(f"{package} held out '{case_id}', which {args.cases} does not list")
            plan.append((Path(package), cases[case_id]))
    rows = []
    for package, case in plan:
        row = evaluate_fold(package, case, args.min_lesion_probability, args.lesion_probability_statistic)
        row["package"] = str(package)
        config = ((read_package_metadata(package) or {}).get("training") or {}).get("config") or {}
        row.update({key: config[key] for key in ("seed", "fold") if isinstance(config.get(key), int)})
        rows.append(row)
    summary = {"rows": rows, "dice_liver_mean": round(statistics.mean(r["dice_liver"] for r in rows), 4),
               "false_tumor_ml_total": round(sum(r["false_tumor_ml"] for r in rows), 2)}
    if args.min_lesion_probability is not None:
        summary["min_lesion_probability"] = float(args.min_lesion_probability)
    if args.lesion_probability_statistic is not None:
        summary["lesion_probability_statistic"] = args.lesion_probability_statistic
    print(f"mean liver Dice {summary['dice_liver_mean']:.4f} over {len(rows)} held-out case(s); false tumor "
          f"{summary['false_tumor_ml_total']:.1f} mL in all")
    if args.json:
        from LiverTumorSegLib.fileutil import atomic_output

        with atomic_output(args.json, overwrite=args.overwrite) as tmp:
            Path(tmp).write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())  # main enters through LiverTumorSegLib.cli.run_script
