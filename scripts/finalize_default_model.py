"""Validate the default model's leave-one-patient-out folds and bundle the final model with those numbers.

    python scripts/finalize_default_model.py --cases CASES.csv --models DIR [-o Resources/Models/default.safetensors]
        [--config RECIPE.yaml] [--fold-steps N] [--hardware TEXT] [--fold-note TEXT] [--weights-storage float16]
        [--folds 0,1,2] [--recorded-folds FOLDS.json] [--name NAME]

``DIR`` holds what ``scripts/train_default_model.sh`` (v1) or ``scripts/gpu_training_round.sh`` (v2) wrote:
``fold0..2.safetensors`` (same recipe, one patient held out each; the split is ``kfold_splits`` with the
recipe's seed) and ``default.safetensors`` (all patients). Each fold model segments its held-out
patient's whole CT through the normal inference pipeline (post-processing on); the LiTS-style metrics
(liver = label >= 1, after the label map the fold was trained with) go into the final package's ``validation`` block, with the false tumor volume (the
reference livers have no tumor, so every predicted tumor voxel is a false positive). The weights are
copied unchanged (their SHA-256 is re-checked on load).

``--folds 0`` validates only the folds that were trained (when time allowed no more): the package then says
which folds were not run, and its mean is named ``dice_liver_mean_of_folds_run`` so that no reader takes it
for the mean over all patients.

``--recorded-folds FOLDS.json`` takes the folds' numbers as ``scripts/evaluate_folds.py`` measured them earlier, when
the fold packages are no longer kept (a new machine's empty /tmp: v10's six folds, two training seeds, were read in
stops 76-78 and only their numbers survived). ``DIR`` then needs only ``default.safetensors``. The file::

    {"source": "where and when the rows were measured (text)", "recipe": "scripts/default_model_v10.yaml",
     "fold_steps": 2700,
     "rows": [{"seed": 11, "fold": 0, "case": "example_ct_dicom20", "patient": "ts_dicom20", "dice_liver": 0.9566,
               "hd95_liver_mm": 4.4, ...}, ...]}

Each row's fold must have held out its case under ``kfold_splits`` with the recipe's split seed, every training seed
must cover the same folds once each, ``recipe`` must be ``--config`` and the final package must have been trained
with that recipe (:data:`RECIPE_KEYS`). The package's ``validation`` says the rows were recorded, not re-measured,
and from where; its mean is over all rows (each seed covers the same folds, so it is the mean of the seeds' means).
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from LiverTumorSegLib.argtypes import probability
from LiverTumorSegLib.fileutil import finite_json
from LiverTumorSegLib.inference.api import segment_volume
from LiverTumorSegLib.inference.postprocess import (DEFAULT_LESION_PROBABILITY_STATISTIC,
                                                    DEFAULT_MIN_LESION_PROBABILITY, LESION_PROBABILITY_STATISTICS,
                                                    PostprocessingOptions)
from LiverTumorSegLib.io import read_label_map, read_volume
from LiverTumorSegLib.io.labels import ANY_LABEL_VALUE, LABEL_VALUES, remap_labels
from LiverTumorSegLib.metrics.lits import evaluate_case
from LiverTumorSegLib.package import (carried_metadata, list_installed_models, load_model_package,
                                      model_postprocessing_problem, save_model_package)
from LiverTumorSegLib.resources import bundled_models_dir
from LiverTumorSegLib.training.config import TrainConfig
from LiverTumorSegLib.training.datasets import discover_cases
from LiverTumorSegLib.training.splits import kfold_splits

KEEP = ["dice_liver", "iou_liver", "assd_liver_mm", "hd95_liver_mm", "rvd_liver"]


def evaluate_fold(package_path: Path, case, min_lesion_probability=None, lesion_probability_statistic=None) -> dict:
    """One fold model on one held-out case, the whole CT through ``segment``'s pipeline on the CPU with the default
    post-processing; ``min_lesion_probability`` (0..1, None: the default 0.65) replaces that one setting, for a
    candidate read at another lesion confidence threshold (docs/default_model_v11.md), and
    ``lesion_probability_statistic`` (``"mean"`` or ``"peak"``, None: the mean) what each lesion gives to compare
    with it (docs/lesion_peak_probability.md). A row of liver metrics and false tumor (mL); with a threshold or a
    statistic given, or recorded by the package and so used, the row records the one that ran."""
    package = load_model_package(package_path)
    listed = (package.metadata.get("training") or {}).get("validation_cases")
    if isinstance(listed, list) and case.case_id not in listed:
        raise SystemExit(f"{package_path} held out {listed}, not {case.case_id}: its fold was split with another "
                         f"seed than --config's split_seed (or seed). Train the folds with that split seed.")
    ct = read_volume(case.image_path)
    # the label map the fold was trained with ({"1": 1} for a liver + spine label): every value > 0 was taken for
    # liver, so spine or other organs counted as reference liver and the Dice stored in the package were wrong
    label_map = ((package.metadata.get("training") or {}).get("config") or {}).get("label_map") or None
    ref = read_label_map(case.label_path, reference=ct, allowed_values=ANY_LABEL_VALUE if label_map else LABEL_VALUES)
    ref_labels = (remap_labels(ref.array, label_map, case.label_path) >= 1).astype(np.uint8)  # liver (0/1)
    postprocessing = None
    if min_lesion_probability is not None or lesion_probability_statistic is not None:
        postprocessing = PostprocessingOptions(
            min_lesion_probability=None if min_lesion_probability is None else float(min_lesion_probability),
            lesion_probability_statistic=lesion_probability_statistic)
    result = segment_volume(ct, package, device="cpu", postprocessing=postprocessing)
    row = evaluate_case(result.labels, ref_labels, ct.spacing_zyx, case=case.case_id)
    out = {"case": case.case_id, "patient": case.patient_id}
    out.update({k: round(float(row[k]), 4) for k in KEEP})
    out["false_tumor_ml"] = round(float((result.labels == 2).sum()) * ct.geometry.voxel_volume_ml, 2)
    # each lesion of the report, largest first (mL): a ship rule may bound the largest (v9's F4': < 5 mL)
    out["false_lesions_ml"] = sorted((round(float(lesion["volume_ml"]), 2) for lesion in
                                      result.report.get("lesions") or []), reverse=True)
    out["reference_liver_ml"] = round(float(ref_labels.sum()) * ct.geometry.voxel_volume_ml, 1)
    out["in_plane_spacing_mm"] = round(float(ct.geometry.spacing[0]), 3)
    out["slices"] = int(ct.shape_zyx[0])
    ran = result.report.get("postprocessing") or {}
    # what ran: the one given, else the package's own where it records one (a row without them reads as 0.65 and
    # the mean, and a fold package recording 0.95 was read at 0.95 without a word: the scripts' audit)
    from_package = result.report.get("min_lesion_probability_from") == "model package"
    if min_lesion_probability is not None or from_package:
        out["min_lesion_probability"] = float(ran.get("min_lesion_probability", min_lesion_probability))
    if lesion_probability_statistic is not None or ran.get("lesion_probability_statistic", "mean") != "mean":
        out["lesion_probability_statistic"] = str(ran.get("lesion_probability_statistic",
                                                          lesion_probability_statistic))
    print(json.dumps(finite_json(out)))  # NaN (a fold without liver: HD95, ASSD) is not JSON: null
    return out


def recorded_fold_steps(parser: argparse.ArgumentParser, args: argparse.Namespace, packages) -> str:
    """The fold models' training steps for the validation's ``method`` text ("2700 steps"), as the fold packages
    record them (``training.global_step``). ``--fold-steps`` names them where a package records none (older
    packages; without it the text says they were not recorded), and is refused where it differs from a recorded
    count: its old default (2500) went into the bundled package's text whatever the folds had trained, unless the
    command remembered to pass the right number."""
    from LiverTumorSegLib.package import read_package_metadata

    steps = {}
    for path in packages:
        value = (read_package_metadata(path).get("training") or {}).get("global_step")
        if isinstance(value, int) and not isinstance(value, bool):
            steps[path.stem] = value
    wrong = {name: n for name, n in steps.items() if args.fold_steps is not None and n != args.fold_steps}
    if wrong:
        parser.error(f"--fold-steps {args.fold_steps}, but the fold packages record "
                     f"{', '.join(f'{name} {n}' for name, n in sorted(wrong.items()))} steps; leave --fold-steps out "
                     f"(the recorded counts are used)")
    if len(steps) < len(packages):  # older packages
        return f"{args.fold_steps} steps" if args.fold_steps is not None else "training steps not recorded"
    counts = sorted(set(steps.values()))
    if len(counts) == 1:
        return f"{counts[0]} steps"
    return ", ".join(f"{name} {n} steps" for name, n in sorted(steps.items()))


RECIPE_KEYS = ("model", "model_options", "preprocessing", "augmentation", "lesions", "synthetic_lesions", "loss",
               "label_map")
"""The training settings that make a recipe: the folds and the final model must agree on each (the validation's
method says 'same recipe'); steps, batch and patch size may differ (the final run may train longer)."""


def final_package_problems(final: dict, folds: dict, patients: set) -> list:
    """What makes the fold numbers not describe the final package ``final`` (its metadata): it held out cases for
    validation or was trained on other patients than ``patients`` (all of --cases'), or a fold package (``folds``:
    ``{name: metadata}``) was trained with another recipe (:data:`RECIPE_KEYS`, where both record the setting).
    Each problem is one sentence; [] when none."""
    problems = []
    training = final.get("training") or {}
    held = training.get("validation_cases") or []
    if held:
        problems.append(f"default.safetensors held out {', '.join(map(str, held))} for validation; the final model "
                        f"is trained on all patients (val_fraction 0).")
    trained = training.get("patients")
    if isinstance(trained, list) and trained and set(map(str, trained)) != patients:
        problems.append(f"default.safetensors was trained on patient(s) {', '.join(sorted(map(str, trained)))}, "
                        f"not on --cases' {', '.join(sorted(patients))}.")
    final_config = training.get("config") or {}
    for name, meta in sorted(folds.items()):
        config = (meta.get("training") or {}).get("config") or {}
        differing = [key for key in RECIPE_KEYS if key in config and key in final_config
                     and config[key] != final_config[key]]
        if differing:
            problems.append(f"{name} was trained with another recipe than default.safetensors ("
                            f"{'; '.join(f'{key}: {config[key]!r} vs {final_config[key]!r}' for key in differing)}).")
    return problems


RECORDED_ROW_KEYS = {"seed", "fold", "case", "patient", "dice_liver", "iou_liver", "assd_liver_mm", "hd95_liver_mm",
                     "rvd_liver", "false_tumor_ml", "false_lesions", "largest_false_lesion_ml", "false_lesions_ml",
                     "reference_liver_ml", "in_plane_spacing_mm", "slices", "package", "min_lesion_probability",
                     "lesion_probability_statistic"}
"""What a recorded fold row may carry: a row of ``scripts/evaluate_folds.py --json`` as it is (with
``--min-lesion-probability``, the threshold it was read at), or fewer numbers (a count and the largest lesion where the
lesions' list was not kept)."""


def recorded_fold_problems(recorded: dict, config_path: str, expected: dict) -> list:
    """What makes ``recorded`` (a ``--recorded-folds`` file's content) not the leave-one-patient-out folds of
    ``--config``'s recipe: ``expected`` is ``{fold: [held-out case ids]}`` from ``kfold_splits``. Each problem is one
    sentence; [] when none."""
    problems = []
    if not isinstance(recorded, dict) or not isinstance(recorded.get("rows"), list) or not recorded["rows"]:
        return ["it holds no 'rows' list (one row per fold model and held-out case)."]
    if not isinstance(recorded.get("source"), str) or not recorded["source"].strip():
        problems.append("it does not say where and when the rows were measured ('source').")
    recipe = recorded.get("recipe")
    if not isinstance(recipe, str) or Path(recipe).resolve() != Path(config_path).resolve():
        problems.append(f"its folds were trained with recipe {recipe!r}, not --config {config_path}.")
    steps = recorded.get("fold_steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0):
        problems.append(f"fold_steps must be a whole number of steps or null, not {steps!r}.")
    seen = {}
    for k, row in enumerate(recorded["rows"]):
        if not isinstance(row, dict):
            problems.append(f"row {k} is not an object.")
            continue
        extra = sorted(set(row) - RECORDED_ROW_KEYS)
        if extra:
            problems.append(f"row {k} has unknown key(s) {', '.join(extra)}.")
        read_with = {key: row[key] for key in ("min_lesion_probability", "lesion_probability_statistic")
                     if key in row}  # the threshold and statistic it was read at: the rule a package's record obeys
        wrong = model_postprocessing_problem({"postprocessing": read_with}) if read_with else None
        if wrong:
            problems.append(f"row {k}'s {wrong}.")
        seed, fold, case, dice = row.get("seed"), row.get("fold"), row.get("case"), row.get("dice_liver")
        if isinstance(seed, bool) or not isinstance(seed, int) or fold not in expected or \
                isinstance(fold, bool) or not isinstance(case, str):
            problems.append(f"row {k} needs a whole-number 'seed', a 'fold' out of {sorted(expected)} and a 'case'.")
            continue
        if case not in expected[fold]:
            problems.append(f"row {k} (seed {seed}, fold {fold}) holds case {case}, but fold {fold} held out "
                            f"{', '.join(expected[fold])} under the recipe's split seed.")
        if isinstance(dice, bool) or not isinstance(dice, (int, float)) or not 0.0 <= float(dice) <= 1.0:
            problems.append(f"row {k} needs 'dice_liver' between 0 and 1, not {dice!r}.")
        if (seed, fold, case) in seen:
            problems.append(f"seed {seed}, fold {fold}, case {case} is recorded twice (rows {seen[(seed, fold, case)]} "
                            f"and {k}).")
        seen[(seed, fold, case)] = k
    by_seed = {}
    for seed, fold, case in seen:
        by_seed.setdefault(seed, set()).add((fold, case))
    covered = {seed: sorted(pairs) for seed, pairs in by_seed.items()}
    if len({tuple(pairs) for pairs in covered.values()}) > 1:
        problems.append("the training seeds cover different folds or cases ("
                        + "; ".join(f"seed {seed}: folds {sorted({f for f, _ in pairs})}"
                                    for seed, pairs in sorted(covered.items())) + "): their mean would mix patients.")
    return problems


def recorded_validation(recorded: dict, final_config: dict, config_path: str) -> tuple:
    """``(rows, method)`` for the final package's validation from a checked ``--recorded-folds`` file: each row as
    recorded plus ``"recorded": True``; the method text names the seeds, the steps and the file's source. Raises
    ``ValueError`` when the final package was not trained with ``config_path``'s recipe."""
    recipe = TrainConfig.from_file(config_path).to_dict()
    differing = [key for key in RECIPE_KEYS if key in final_config
                 and json.loads(json.dumps(final_config[key])) != json.loads(json.dumps(recipe.get(key)))]
    if differing:
        raise ValueError(f"default.safetensors was trained with another recipe than --config {config_path} "
                         f"({', '.join(differing)} differ), so the recorded folds do not describe it.")
    rows = [dict(row, recorded=True) for row in recorded["rows"]]
    seeds = sorted({row["seed"] for row in rows})
    folds = sorted({row["fold"] for row in rows})
    steps = recorded.get("fold_steps")
    method = (f"leave-one-patient-out over the 3 training patients at training seed(s) "
              f"{', '.join(map(str, seeds))} ({len(seeds) * len(folds)} fold models, same recipe, "
              f"{f'{steps} steps' if steps else 'training steps not recorded'}): each fold model segments its "
              f"held-out patient's whole CT; post-processing on; liver = label >= 1. Recorded, not re-measured "
              f"for this package (the fold packages were not kept): {recorded['source'].strip()}")
    return rows, method


def recorded_threshold_problem(rows: list, threshold, statistic=None) -> str:
    """Why recorded fold rows do not describe a package whose lesion confidence threshold is ``threshold`` (None:
    0.65) of each lesion's ``statistic`` (None: the mean), or "": each row read at another (``evaluate_folds.py
    --min-lesion-probability`` and ``--lesion-probability-statistic`` record them in the row; a row without them was
    read at 0.65 of the mean), so its false tumor is not the package's."""
    expected = DEFAULT_MIN_LESION_PROBABILITY if threshold is None else float(threshold)
    read_at = sorted({float(row.get("min_lesion_probability", DEFAULT_MIN_LESION_PROBABILITY)) for row in rows})
    if read_at != [expected]:
        return (f"its folds were read at lesion confidence threshold(s) {', '.join(f'{t:g}' for t in read_at)}, "
                f"the package runs at {expected:g}; read them again with scripts/evaluate_folds.py "
                f"--min-lesion-probability {expected:g}, or give finalize the threshold they were read at")
    wanted = statistic or DEFAULT_LESION_PROBABILITY_STATISTIC
    read_by = sorted({str(row.get("lesion_probability_statistic", DEFAULT_LESION_PROBABILITY_STATISTIC))
                      for row in rows})
    if read_by == [wanted]:
        return ""
    return (f"its folds were read by each lesion's {' and '.join(read_by)} tumor probability, the package reads "
            f"the {wanted}; read them again with scripts/evaluate_folds.py --lesion-probability-statistic {wanted}, "
            f"or give finalize the statistic they were read by")


def recorded_hardware(training: dict) -> str:
    """How the final model was trained, from its package's ``training`` record (device, AMP, processes, steps,
    batch and patch size; "" when it records none of them): the old ``--hardware`` default described the v1 run on
    an H100 (4000 steps) in every package finalized without that option, CPU-trained v3 included."""
    config = training.get("config") or {}
    device = str(training.get("device") or "")
    amp = training.get("amp") or config.get("amp")  # what auto resolved to, where the package records it (0.6.18)
    if amp == "auto":  # older packages: the trainer's rule then, bf16 on CUDA, none on the CPU
        amp = "bf16" if device.startswith("cuda") else "off"
    world = training.get("world_size") or 1
    steps, batch, patch = training.get("global_step"), config.get("batch_size"), config.get("patch_size")
    parts = []
    if device:
        processes = f" x {world} processes" if isinstance(world, int) and world > 1 else ""
        precision = f" (AMP {amp})" if amp in ("bf16", "fp16") else ""
        parts.append(device + processes + precision)
    if steps is not None:
        parts.append(f"{steps} steps" + (f" of batch {batch}" if batch else ""))
    if patch:
        parts.append(f"{patch}x{patch} patches")
    return ", ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", required=True, help="the CSV train_default_model.sh wrote (local paths)")
    parser.add_argument("--models", required=True, help="folder with fold0..2.safetensors and default.safetensors")
    parser.add_argument("--config", default=str(Path(__file__).with_name("default_model.yaml")))
    parser.add_argument("-o", "--output", default="Resources/Models/default.safetensors")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--fold-steps", type=int, default=None,
                        help="training steps of each fold model (default: as the fold packages record them; "
                             "needed only for packages that record none)")
    parser.add_argument("--hardware", default=None,
                        help="how the final model was trained (text; default: the device, steps, batch and patch "
                             "size its package records)")
    parser.add_argument("--fold-note", default="The held-out full abdomen-pelvis scan fails (bowel called liver) "
                        "because the other two patients' scans cover only the liver region: no training slice "
                        "showed the pelvis. The bundled model is trained on all 3 patients, that scan included.",
                        help="what the folds' numbers mean (text stored with them)")
    parser.add_argument("--weights-storage", default=None, choices=["float32", "float16"],
                        help="store the weights as this dtype (default: as the final package stores them)")
    parser.add_argument("--description", default=None, help="replace the package's description (text)")
    parser.add_argument("--name", default=None,
                        help="replace the package's name (as `livertumorseg models` and the Slicer panel list it, and "
                             "as --model NAME takes it); default: the final package's, e.g. the training run's name")
    parser.add_argument("--recorded-folds", default=None,
                        help="JSON of the folds' numbers measured earlier (scripts/evaluate_folds.py) when the fold "
                             "packages were not kept; --models then needs only default.safetensors")
    parser.add_argument("--min-lesion-probability", type=probability, default=None, metavar="P",
                        help="record P (0..1) as the package's own lesion confidence threshold, which segment and the "
                             "Slicer module use for it where none is given, and read the folds at it (v11's rule: "
                             "0.75); default: none recorded, 0.65 applies")
    parser.add_argument("--lesion-probability-statistic", choices=LESION_PROBABILITY_STATISTICS, default=None,
                        help="with --min-lesion-probability: record what each lesion gives to compare with it, its "
                             "mean or peak tumor probability, and read the folds so (docs/lesion_peak_probability.md);"
                             " default: none recorded, the mean applies")
    parser.add_argument("--folds", default="0,1,2",
                        help="comma-separated folds that were trained (default all three); the rest are recorded "
                             "as not run")
    args = parser.parse_args()
    threshold, statistic = args.min_lesion_probability, args.lesion_probability_statistic
    if statistic is not None and threshold is None:
        parser.error("--lesion-probability-statistic is recorded with the threshold it is read at: give "
                     "--min-lesion-probability too")
    from LiverTumorSegLib.errors import LiverTumorSegError, cli_wording
    from LiverTumorSegLib.fileutil import check_can_write
    try:  # before the folds' evaluations (minutes each), not after them
        with cli_wording():
            check_can_write(Path(args.output), overwrite=args.overwrite)
    except LiverTumorSegError as exc:
        parser.error(str(exc))
    from LiverTumorSegLib.fileutil import same_file_among

    into_bundled = Path(args.output).absolute().parent.resolve() == bundled_models_dir().resolve()
    other_defaults = [e["path"] for e in list_installed_models(warn=False) if e["default"]
                      and not same_file_among([e["path"], args.output])] if into_bundled else []
    if other_defaults:
        parser.error(f"{', '.join(other_defaults)} is flagged as the default already; write over it (-o that "
                     f"file --overwrite) or remove it first: two defaults are refused at --model default")
    try:
        folds = sorted({int(f) for f in args.folds.split(",") if f.strip()})
    except ValueError:
        parser.error(f"--folds takes fold numbers such as 0,1,2, not {args.folds!r}")
    if not folds or any(f not in (0, 1, 2) for f in folds):
        parser.error(f"--folds takes fold numbers out of 0, 1, 2, not {args.folds!r}")

    if not Path(args.cases).is_file():
        parser.error(f"--cases '{args.cases}' does not exist; give the CSV train_default_model.sh wrote")
    recorded = None
    if args.recorded_folds:
        if args.folds != "0,1,2" or args.fold_steps is not None:
            parser.error("--recorded-folds says which folds were run and their steps: leave --folds and "
                         "--fold-steps out")
        try:
            recorded = json.loads(Path(args.recorded_folds).read_text())
        except (OSError, ValueError) as exc:
            parser.error(f"--recorded-folds '{args.recorded_folds}' could not be read as JSON: {exc}")
        folds = []
    needed = [Path(args.models) / f"fold{fold}.safetensors" for fold in folds] + \
        [Path(args.models) / "default.safetensors"]
    missing = [str(path) for path in needed if not path.is_file()]
    if missing:  # before the folds' evaluations, not after them
        parser.error(f"missing package(s) in --models: {', '.join(missing)}")
    fold_steps = recorded_fold_steps(parser, args, [Path(args.models) / f"fold{fold}.safetensors" for fold in folds])
    seed = TrainConfig.from_file(args.config).data_split_seed
    cases = discover_cases(args.cases, "csv")
    splits = kfold_splits(cases, 3, seed)
    from LiverTumorSegLib.package import read_package_metadata
    final_metadata = read_package_metadata(Path(args.models) / "default.safetensors")
    problems = final_package_problems(
        final_metadata,
        {f"fold{fold}.safetensors": read_package_metadata(Path(args.models) / f"fold{fold}.safetensors")
         for fold in folds}, {str(case.patient_id) for case in cases})
    if problems:  # the package would carry fold numbers that do not describe it, under 'same recipe'
        parser.error("the fold numbers would not describe the final model: " + " ".join(problems))
    if recorded is not None:
        wrong = recorded_fold_problems(recorded, args.config, {fold: [case.case_id for case in held_out]
                                                               for fold, (_, held_out) in enumerate(splits)})
        if wrong:
            parser.error(f"--recorded-folds {args.recorded_folds}: " + " ".join(wrong))
        try:
            rows, method = recorded_validation(recorded, (final_metadata.get("training") or {}).get("config") or {},
                                               args.config)
        except ValueError as exc:
            parser.error(str(exc))
        folds = sorted({row["fold"] for row in rows})
        wrong = recorded_threshold_problem(rows, threshold, statistic)
        if wrong:
            parser.error(f"--recorded-folds {args.recorded_folds}: {wrong}")
    else:
        rows = []
        for fold, (_, held_out) in enumerate(splits):
            if fold not in folds:
                continue
            for case in held_out:
                row = evaluate_fold(Path(args.models) / f"fold{fold}.safetensors", case, threshold, statistic)
                row["fold"] = fold
                rows.append(row)
    final = load_model_package(Path(args.models) / "default.safetensors")
    metadata = carried_metadata(final.metadata)
    dice = [r["dice_liver"] for r in rows]
    not_run = [f for f in (0, 1, 2) if f not in folds]
    scope = "" if not not_run else f" (folds run: {', '.join(map(str, folds))}; not run: " \
                                   f"{', '.join(map(str, not_run))})"
    if recorded is None:
        method = (f"leave-one-patient-out over the 3 training patients{scope}: each fold model (same recipe, "
                  f"{fold_steps}) segments its held-out patient's whole CT; post-processing on; liver = label >= 1")
    elif scope:
        method = method.replace("training patients", "training patients" + scope, 1)
    metadata["validation"] = {
        "method": method,
        "cases": rows,
        "dice_tumor": None,
        "tumor_note": "No real tumor labels exist in the training data (tumors are synthetic), so tumor Dice "
                      "on real CT is not measured; false_tumor_ml is the tumor volume predicted in "
                      "tumor-free held-out livers.",
        "fold_note": args.fold_note,
    }
    # the median over patients: with two training seeds, each patient's mean over the seeds first
    by_patient = {}
    for row in rows:
        by_patient.setdefault(row["case"], []).append(row["dice_liver"])
    if not_run:
        metadata["validation"]["dice_liver_mean_of_folds_run"] = round(float(np.mean(dice)), 4)
        metadata["validation"]["folds_not_run"] = not_run
    else:
        metadata["validation"]["dice_liver_mean"] = round(float(np.mean(dice)), 4)
        metadata["validation"]["dice_liver_median"] = round(float(np.median(
            [np.mean(values) for values in by_patient.values()])), 4)
    seeds = sorted({row["seed"] for row in rows if "seed" in row})
    if len(seeds) > 1:
        metadata["validation"]["dice_liver_mean_per_seed"] = {
            str(s): round(float(np.mean([r["dice_liver"] for r in rows if r.get("seed") == s])), 4) for s in seeds}
    if args.description:
        metadata["description"] = args.description
    if args.name:
        metadata["name"] = args.name
    if threshold is not None:  # the model's own, which its folds were read at too (recorded ones: as recorded)
        metadata["postprocessing"] = dict(metadata.get("postprocessing") or {}, min_lesion_probability=float(threshold))
        if statistic is not None:
            metadata["postprocessing"]["lesion_probability_statistic"] = statistic
    metadata["default"] = True
    metadata["training"] = dict(metadata.get("training", {}))
    metadata["training"]["trained_at"] = final.metadata.get("created")
    hardware = args.hardware or recorded_hardware(final.metadata.get("training") or {})
    if hardware:
        metadata["training"]["hardware"] = hardware
    metadata["training"]["data_description"] = (
        "3 real abdominal CT patients with liver labels: TotalSegmentator example CTs (Apache-2.0; liver labels "
        "are TotalSegmentator predictions) 512x512x20 at 0.98 mm and 122x101x112 at 3 mm, and the dcmqi 3-slice "
        "GE CT (BSD-style) at 0.81 mm; synthetic tumors inserted on the fly.")
    storage = args.weights_storage or final.metadata.get("weights_storage", "float32")
    path = save_model_package(args.output, final.model, final.preprocessing, metadata, overwrite=args.overwrite,
                              weights_storage=storage)
    print(f"wrote {path}: LOPO liver Dice {', '.join(f'{d:.3f}' for d in dice)} (mean {np.mean(dice):.3f})")
    return 0


if __name__ == "__main__":
    from LiverTumorSegLib.cli import run_script

    sys.exit(run_script(main))
