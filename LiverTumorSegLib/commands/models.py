"""``livertumorseg models``: list the network architectures and the installed trained models.

    livertumorseg models [--json]

Architectures are shown with their parameter count at default options for in_channels=3 and 3
classes (the count grows slightly with more input channels: only the first convolution changes) and
the H, W multiple that avoids internal padding. Installed models are the packages in the bundled
folder and in the user folder (``LIVERTUMORSEG_MODELS_DIR``, default ``~/.livertumorseg/models``).
"""
import argparse
import json
import math
import sys
from typing import Any, Dict, List, Optional, Sequence

COUNT_IN_CHANNELS = 3


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("models", help="list network architectures and installed trained models",
                              description="List the available network architectures (parameter counts at "
                                          f"default options, in_channels={COUNT_IN_CHANNELS}) and the "
                                          "installed trained model packages.")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of tables")
    p.add_argument("--no-progress", "--no-progress-bar", action="store_true",
                   help="with --verify, print no line per package checked on stderr (--no-progress-bar is the same)")
    p.add_argument("--verify", action="store_true",
                   help="also check every package's weights now (reads each file whole; without it the weights "
                        "are checked when a package is loaded)")
    return p


def mark_damaged_weights(installed: List[Dict[str, Any]], progress: Optional[Any] = None) -> None:
    """``--verify``: an entry whose weights fail the load's checks gets that ``error`` (listed as unusable).
    ``progress``: a ``(fraction, stage)`` callback (:mod:`~LiverTumorSegLib.progress`), told before each package is
    read, the fraction counted in the packages' bytes (each file is read whole: several seconds for a few large
    packages, which passed without a word)."""
    from pathlib import Path

    from ..package import weights_problem
    from ..progress import ProgressReporter

    report = ProgressReporter(progress)
    checked = [e for e in installed if not e.get("error")]
    sizes = [_file_size(e["path"]) for e in checked]
    total, done = float(sum(sizes)) or 1.0, 0
    for index, (entry, size) in enumerate(zip(checked, sizes)):
        report(done / total, f"verifying {index + 1}/{len(checked)}: {entry.get('name') or Path(entry['path']).stem} "
                             f"({size / 1e6:.1f} MB)")
        entry["error"] = weights_problem(entry["path"])
        done += size
    verified = {id(entry) for entry in checked}  # True only where --verify read and hashed the weights: one refused
    for entry in installed:  # before (edited metadata) was marked verified too
        entry["weights_verified"] = id(entry) in verified
    if checked:
        report(1.0, f"verified {len(checked)} package(s), {done / 1e6:.1f} MB")


def _file_size(path: Any) -> int:
    """Size of ``path`` in bytes, 0 when it cannot be read (the check then names the problem)."""
    import os

    try:
        return int(os.path.getsize(path))
    except OSError:
        return 0


def _print_progress(fraction: float, stage: str) -> None:
    """One line of ``--verify``'s progress on stderr (stdout holds the listing or the JSON)."""
    print(f"[{fraction:4.0%}] {stage}", file=sys.stderr, flush=True)


def name_notes(installed: List[Dict[str, Any]]) -> Dict[str, str]:
    """path -> a note for a usable package that ``--model NAME`` will not reach by its name: a user package
    called "default" (that name means the bundled default), a name ``--model`` reads as a file path (one holding
    a path separator or ending in a weights suffix, e.g. ``abdomen/liver``: it said "does not exist") or a name
    two usable packages share (refused as ambiguous)."""
    from ..fileutil import same_file_among
    from ..package import installed_matches, looks_like_path, reach_advice

    usable = [e for e in installed if not e.get("error")]
    notes = {}
    for entry in usable:
        if looks_like_path(entry["name"]):
            notes[entry["path"]] = (f"'--model {entry['name']}' is read as a file path, not this package's name: "
                                    f"give {reach_advice(entry['path'], usable)}")
            continue
        if entry["name"] == "default":  # the name always means the bundled default
            if entry["source"] != "bundled":
                notes[entry["path"]] = ("'--model default' means the bundled default, not this package: give "
                                        + reach_advice(entry["path"], usable))
            continue
        matches = installed_matches(usable, entry["name"])  # resolve_model's own rule
        if len(matches) > 1:
            other = next(path for path in matches if not same_file_among([path, entry["path"]]))
            notes[entry["path"]] = (f"its name is also that of {other}: '--model {entry['name']}' is "
                                    f"refused as ambiguous; give the path")
    return notes


def segment_refusals(installed: List[Dict[str, Any]]) -> Dict[str, str]:
    """path -> why ``segment`` and ``evaluate`` refuse a package that loads (its preprocessing makes another number
    of input channels than its network takes, or slices its network does not group): it was listed as usable, also
    by ``--verify``, and only a run said otherwise. Header only, no torch."""
    from pathlib import Path

    from ..errors import ModelPackageError
    from ..package import _channels_problem, read_package_metadata

    refusals = {}
    for entry in installed:
        if entry.get("error"):
            continue
        try:
            problem = _channels_problem(read_package_metadata(entry["path"]), Path(entry["path"]))
        except ModelPackageError as exc:
            problem = str(exc)
        if problem:
            refusals[entry["path"]] = problem
    return refusals


def architecture_rows(in_channels: int = COUNT_IN_CHANNELS) -> List[Dict[str, Any]]:
    """One dict per architecture: name, description, parameters (default options, ``in_channels``,
    3 classes; counted on the meta device so nothing is allocated), size_multiple, default options."""
    import torch

    from ..models import available_models, build_model, default_options, describe_model

    rows = []
    for name in available_models():
        with torch.device("meta"):
            model = build_model(name, in_channels, 3)
        rows.append({"name": name, "description": describe_model(name), "in_channels": in_channels,
                     "parameters": int(sum(p.numel() for p in model.parameters())),
                     "size_multiple": int(model.size_multiple), "default_options": default_options(name)})
    return rows


def dice_summary(validation: Dict[str, Any]) -> str:
    """``"dice_liver=0.950 dice_tumor=0.610"`` from the numeric top-level validation keys naming Dice (slice
    level, on the network's grid, tumors synthetic). When the package holds the whole-volume validation through
    segment (the figure crossval and evaluate report), that comes first and the others are marked slice-level:
    the unlabelled slice-level 0.385 led the line, the whole-volume 0.574 came second. Its tumor Dice is shown when a
    validation case has a reference tumor (it was left out, so a package trained on real tumors showed only the
    slice-level tumor Dice on synthetic lesions)."""
    # a run validated on synthetic tumors (its validation cases had none) says so, as the bundled packages' keys do
    synthetic = validation.get("synthetic_lesions_in_validation") is True
    parts = [f"{k}{'_synthetic' if synthetic and k == 'tumor_dice' else ''}={float(v):.3f}"
             for k, v in sorted(validation.items())
             if "dice" in k.lower() and isinstance(v, (int, float)) and not isinstance(v, bool)]
    whole = validation.get("whole_volume")
    if isinstance(whole, dict) and isinstance(whole.get("liver_dice"), (int, float)):
        slice_level = f"; slice-level {' '.join(parts)}" if parts else ""
        tumor = whole.get("tumor_dice")
        cases = whole.get("cases") if isinstance(whole.get("cases"), list) else []
        measured = any(isinstance(c, dict) and c.get("reference_has_tumor") for c in cases)
        # only where a validation case has a reference tumor: without one it says only whether any was predicted
        tumor_text = f" tumor_dice={float(tumor):.3f}" if measured and _is_number(tumor) else ""
        return f"whole-volume liver_dice={float(whole['liver_dice']):.3f}{tumor_text}{slice_level}"
    return " ".join(parts) or "-"


def validation_caveats(validation: Dict[str, Any]) -> List[str]:
    """Why a package's validation Dice (:func:`dice_summary`) is not a held-out measure, as its training's ``done:``
    line and crossval's table say it: its ``--init-from`` package was trained on the validation patients
    (``init_trained_on_validation_patients``), or the run decided something on the validation cases
    (``optimistic``: best epoch, early stopping, plateau schedule). ``models`` listed such a package's Dice
    without a word, beside held-out ones. Empty for packages that record neither."""
    caveats = []
    seen = validation.get("init_trained_on_validation_patients")
    if isinstance(seen, list) and seen:
        caveats.append(f"validation not held out: the --init-from package was trained on validation patient(s) "
                       f"{', '.join(str(p) for p in seen)}")
    if validation.get("optimistic") is True:
        from ..training.callbacks import OPTIMISTIC_NOTE

        decided = validation.get("decided_on_validation")
        what = f": {'; '.join(str(d) for d in decided)}" if isinstance(decided, list) and decided else ""
        caveats.append(f"validation {OPTIMISTIC_NOTE}{what}")
    return caveats


def _is_number(value: Any) -> bool:
    """A finite int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def robustness_means(rows: Any) -> List[Dict[str, Any]]:
    """Per perturbation (in first-seen order): number of cases, mean liver / tumor Dice of the
    ``robustness`` rows stored by ``benchmarks/robustness.py`` (None where no case has a value) and the number of
    cases with a tumor Dice (``tumor_cases``: a case where no tumor was inserted has none)."""
    if not isinstance(rows, list):
        return []
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for row in rows:
        if isinstance(row, dict) and "perturbation" in row:
            groups.setdefault(str(row["perturbation"]), []).append(row)

    def mean(values: List[Any]) -> Any:
        numbers = [float(v) for v in values if is_dice(v)]
        return sum(numbers) / len(numbers) if numbers else None  # rounded once, where printed (0.78655 was 0.786)

    def measured(values: List[Any]) -> int:
        return sum(1 for v in values if is_dice(v))

    def not_dice(values: List[Any]) -> int:  # a value there that no Dice is (text, 7.5, NaN): left out, and said
        return sum(1 for v in values if v is not None and not is_dice(v))

    return [{"perturbation": name, "cases": len(group),
             "liver_dice": mean([r.get("liver_dice") for r in group]),
             "tumor_dice": mean([r.get("tumor_dice") for r in group]),
             "liver_cases": measured([r.get("liver_dice") for r in group]),
             "tumor_cases": measured([r.get("tumor_dice") for r in group]),
             "not_dice": not_dice([r.get(key) for r in group for key in ("liver_dice", "tumor_dice")])}
            for name, group in groups.items()]


def is_dice(value: Any) -> bool:
    """Whether ``value`` (a stored table's cell) is a Dice: a number within 0..1 (not a bool, not NaN). A table
    re-sealed with a Dice of 7.5 printed 'baseline 4.236/0.875', and a Dice stored as text was dropped from its mean
    without a word (the robustness audit)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= float(value) <= 1.0


def robustness_weights_status(metadata: Dict[str, Any]) -> str:
    """Whether a package's stored robustness table was measured on its weights: ``"these weights"`` (its
    ``robustness_settings`` record the package's weights SHA-256), ``"other weights"`` (they record another:
    the package was re-saved with other weights, e.g. through ``carried_metadata``), ``"not recorded"``
    (stored before the settings recorded it) or ``""`` (no table)."""
    if not metadata.get("robustness"):
        return ""
    settings = metadata.get("robustness_settings")
    measured = settings.get("weights_sha256") if isinstance(settings, dict) else None
    if not measured:
        return "not recorded"
    return "these weights" if measured == metadata.get("weights_sha256") else "other weights"


def robustness_threshold_note(settings: Any, threshold: Optional[float], statistic: Optional[str]) -> str:
    """A note where a stored table (its ``robustness_settings``) was measured at another lesion confidence threshold
    or statistic than the package now records as its own (``threshold``, ``statistic``: None for none, the library's
    0.65 of the mean); '' where they agree or the settings record none. A package given a new threshold
    (``set_package_min_lesion_probability``) kept printing the old table as its own, without a word: its false
    lesions and tumor Dice were counted at the old threshold (the package audit)."""
    from ..inference.postprocess import DEFAULT_LESION_PROBABILITY_STATISTIC, DEFAULT_MIN_LESION_PROBABILITY

    post = settings.get("postprocessing") if isinstance(settings, dict) else None
    measured = post.get("min_lesion_probability") if isinstance(post, dict) else None
    if not is_dice(measured):
        return ""
    measured_statistic = str(post.get("lesion_probability_statistic") or DEFAULT_LESION_PROBABILITY_STATISTIC)
    now = DEFAULT_MIN_LESION_PROBABILITY if threshold is None else float(threshold)
    now_statistic = statistic or DEFAULT_LESION_PROBABILITY_STATISTIC
    if abs(float(measured) - now) < 1e-9 and measured_statistic == now_statistic:
        return ""
    return (f"measured at the lesion confidence threshold {float(measured):g} of the {measured_statistic}; this "
            f"package now records {now:g} of the {now_statistic}, so its tumor Dice and false lesions differ from "
            f"what segment gives: run benchmarks/robustness.py on it again")


def missing_perturbations(rows: Any, settings: Any) -> List[str]:
    """The perturbations a stored table's settings asked for that gave no row on any case (e.g. the field-of-view
    crops when the run kept only slices around the liver)."""
    asked = settings.get("perturbations") if isinstance(settings, dict) else None
    if not isinstance(asked, list):
        return []
    present = {str(r.get("perturbation")) for r in rows if isinstance(r, dict)} if isinstance(rows, list) else set()
    return [str(name) for name in asked if str(name) not in present]


def modified_code_commit(settings: Any) -> str:
    """The git commit a stored table's ``robustness_settings`` record when they also record that the code differed
    from it (``code.git_modified``: uncommitted edits when the benchmark ran), "" otherwise."""
    code = settings.get("code") if isinstance(settings, dict) else None
    if not isinstance(code, dict) or code.get("git_modified") is not True:
        return ""
    return str(code.get("git_commit") or "unknown")


def measured_with_text(settings: Any) -> str:
    """``measured 2026-12-02 with library 0.6.20 (code 970f033d)``: when and with which code a stored table was
    made (its ``robustness_settings``), '' where they record neither. The bundled families' tables of 24 Nov were
    printed beside the default's of 2 Dec as if comparable, though the benchmark's 5 mm slab labels had changed
    between (one thick5mm tumor Dice 0.810 then, 0.870 now, same weights; the robustness audit)."""
    if not isinstance(settings, dict):
        return ""
    code = settings.get("code") if isinstance(settings.get("code"), dict) else {}
    parts = [f"measured {settings['date']}" if settings.get("date") else "",
             f"with library {settings['library_version']}" if settings.get("library_version") else "",
             f"(code {str(code['git_commit'])[:8]})" if code.get("git_commit") else ""]
    text = " ".join(part for part in parts if part)
    return text + (": compare tables measured with the same code" if text else "")


def robustness_lines(rows: Any, per_line: int = 4, weights: str = "", missing: Sequence[str] = (),
                     settings: Any = None, threshold_note: str = "") -> List[str]:
    """Text lines ``name liver/tumor`` (mean Dice over the benchmark's cases), ``per_line`` per line; then what
    :func:`robustness_weights_status` (``weights``), :func:`missing_perturbations` (``missing``) and
    :func:`robustness_threshold_note` (``threshold_note``) found, and whether ``settings`` (the table's
    ``robustness_settings``) record code edited after its commit."""
    means = robustness_means(rows)
    if not means:
        return []

    cases = max(m["cases"] for m in means)

    def cell(m: Dict[str, Any]) -> str:
        liver = "-" if m["liver_dice"] is None else f"{m['liver_dice']:.3f}"
        tumor = "-" if m["tumor_dice"] is None else f"{m['tumor_dice']:.3f}"
        fewer = f" ({m['cases']} case{'s' if m['cases'] != 1 else ''})" if m["cases"] < cases else ""
        # a case without tumor (none inserted) has no tumor Dice: that mean is over fewer cases than the liver's
        for key, what in (("liver", "liver"), ("tumor", "tumor")):
            counted = m.get(f"{key}_cases", m["cases"])
            if m[f"{key}_dice"] is not None and counted < m["cases"]:
                fewer += f" ({what}: {counted} case{'s' if counted != 1 else ''})"
        if m.get("not_dice"):
            fewer += f" ({m['not_dice']} stored value(s) no Dice in 0..1, left out)"
        return f"{m['perturbation']} {liver}/{tumor}{fewer}"  # a mean over fewer cases: not comparable
    trained = any(isinstance(r, dict) and r.get("training_case") for r in rows)
    lines = [f"robustness (benchmarks/robustness.py; mean liver/synthetic-tumor Dice over {cases} case(s)"
             + ("; includes training cases: invariance, not generalization" if trained else "") + "):"]
    for start in range(0, len(means), per_line):
        lines.append("  " + ", ".join(cell(m) for m in means[start:start + per_line]))
    if missing:
        lines.append(f"  no row (skipped on every case): {', '.join(missing)}")
    if weights == "other weights":
        lines.append("  STALE: measured on other weights than this file holds (the package was re-saved); run "
                     "benchmarks/robustness.py on it again")
    elif weights == "not recorded":
        lines.append("  (the table does not record the weights it was measured on: stored before tables did)")
    if threshold_note:
        lines.append(f"  STALE for lesions: {threshold_note}")
    measured = measured_with_text(settings)
    if measured:
        lines.append(f"  {measured}")
    commit = modified_code_commit(settings)
    if commit:  # the table was said nowhere to come from edited code: only robustness_settings held git_modified
        lines.append(f"  measured with uncommitted code changes on commit {commit[:12]}: that commit's code may give "
                     f"other numbers")
    return lines


def with_robustness(installed: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """``installed`` entries with ``robustness`` (the package's stored rows, [] when none),
    ``robustness_settings`` (how they were made, {} when not recorded) and ``robustness_weights``
    (:func:`robustness_weights_status`) added."""
    from ..errors import ModelPackageError
    from ..package import read_package_metadata

    for entry in installed:
        metadata: Dict[str, Any] = {}
        if not entry.get("error"):
            try:
                metadata = read_package_metadata(entry["path"])
            except ModelPackageError:
                metadata = {}
        rows = metadata.get("robustness") or []
        settings = metadata.get("robustness_settings")
        entry["robustness"] = rows if isinstance(rows, list) else []
        entry["robustness_settings"] = settings if isinstance(settings, dict) else {}
        entry["robustness_weights"] = robustness_weights_status(metadata) if entry["robustness"] else ""
    return installed


def with_resampling_fill_cases(installed: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """``installed`` entries with ``training_cases_with_resampling_fill``: the package's
    ``training.cases_with_resampling_fill`` (per case id whose CT held a resampling's fill, given to the network as
    -1024 HU: ``values_hu``, ``volume_ml``, ``read_as_hu``, ``used_for``; ``{}`` for none), or None where the package
    does not record it (older versions, a package not trained here, an unusable file)."""
    from ..errors import ModelPackageError
    from ..package import read_package_metadata

    for entry in installed:
        recorded = None
        if not entry.get("error"):
            try:
                training = read_package_metadata(entry["path"]).get("training")
            except ModelPackageError:
                training = None
            if isinstance(training, dict) and isinstance(training.get("cases_with_resampling_fill"), dict):
                recorded = training["cases_with_resampling_fill"]
        entry["training_cases_with_resampling_fill"] = recorded
    return installed


def resampling_fill_line(cases: Any) -> str:
    """The listing's note on the cases a package was trained or validated on whose CT held a resampling's fill
    (:func:`with_resampling_fill_cases`), "" when none is recorded."""
    if not isinstance(cases, dict) or not cases:
        return ""
    shown = ", ".join(f"{case} ({_volume_text(record)})" for case, record in list(cases.items())[:4])
    more = f" and {len(cases) - 4} more" if len(cases) > 4 else ""
    return (f"{len(cases)} training/validation case(s) held a resampling's fill outside their original field of "
            f"view, given to the network as -1024 HU (air): {shown}{more}")


def _volume_text(record: Any) -> str:
    volume = record.get("volume_ml") if isinstance(record, dict) else None
    used_for = record.get("used_for") if isinstance(record, dict) else None
    parts = ([f"{float(volume):g} mL"] if isinstance(volume, (int, float)) else []) + \
        ([str(used_for)] if used_for else [])
    return ", ".join(parts) or "recorded"


def _folder_state(folder: Any) -> str:
    """' (not a folder)' / ' (does not exist yet)' for a models folder that cannot hold packages, else '': a
    LIVERTUMORSEG_MODELS_DIR naming a file, or mistyped, listed no user model without a word."""
    from pathlib import Path

    folder = Path(folder)
    if folder.is_dir():
        return ""
    return " (not a folder)" if folder.exists() else " (does not exist yet)"


def shown_text(text: Any) -> str:
    """``text`` with each non-printable character (newline, tab, ESC, BEL, ...) written as its Python escape
    (``\\n``, ``\\x1b``): a package's name, validation keys and error texts come from its metadata, and a name
    holding a newline or a terminal escape sequence printed fake lines into the listing or cleared the screen."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _say(line: str) -> None:
    """Print one line of the installed-models listing (:func:`shown_text`)."""
    print(shown_text(line))


def _format_params(count: int) -> str:
    return f"{count / 1e6:.2f} M"


def run(args: argparse.Namespace) -> int:
    from ..inference.postprocess import DEFAULT_MIN_LESION_PROBABILITY
    from ..package import list_installed_models, other_weight_files, skipped_weight_entries
    from ..resources import bundled_models_dir, user_models_dir

    rows = architecture_rows()
    # unusable ones are shown below with the reason
    installed = with_resampling_fill_cases(with_robustness(list_installed_models(warn=False)))
    verify = bool(getattr(args, "verify", False))  # a Namespace built by a script may lack it
    if verify:
        mark_damaged_weights(installed, None if getattr(args, "no_progress", False) else _print_progress)
    notes = name_notes(installed)
    refusals = segment_refusals(installed)
    for entry in installed:
        if entry["path"] in notes:
            entry["name_note"] = notes[entry["path"]]
        if entry["path"] in refusals:
            entry["segment_refusal"] = refusals[entry["path"]]
    code = verify_exit_code(installed, verify)
    if args.json:
        from ..fileutil import finite_json  # strict JSON: a non-finite number becomes null
        print(json.dumps(finite_json({"architectures": rows, "installed": installed,
                                      "bundled_models_dir": str(bundled_models_dir()),
                                      # False for a non-editable install without Resources/ (the text says so too)
                                      "bundled_models_dir_exists": bundled_models_dir().is_dir(),
                                      "user_models_dir": str(user_models_dir()),
                                      "user_models_dir_exists": user_models_dir().is_dir(),
                                      "user_models_dir_skipped": [{"path": str(entry), "reason": why} for entry, why
                                                                  in skipped_weight_entries(user_models_dir())],
                                      # weights that are no package (.pt, .onnx, .zip): the text names them, the JSON
                                      # left them out
                                      "user_models_dir_other_weight_files": [
                                          str(p) for p in other_weight_files(user_models_dir())]}),
                         indent=2,
                         allow_nan=False))
        return code
    print(f"Architectures (parameters at default options, in_channels={COUNT_IN_CHANNELS}, 3 classes):")
    print(f"  {'name':<16} {'parameters':>11} {'HxW multiple':>12}  description")
    for row in rows:
        print(f"  {row['name']:<16} {_format_params(row['parameters']):>11} {row['size_multiple']:>12}  "
              f"{row['description']}")
    print("  (any H, W of 1 or more works: inputs are padded internally to the multiple and the output cropped back)")
    print()
    print(f"Installed models (bundled: {bundled_models_dir()}; user: {user_models_dir()}"
          f"{_folder_state(user_models_dir())}):")
    others = other_weight_files(user_models_dir())
    if others:
        print(f"  not listed, no model package (.safetensors): {', '.join(p.name for p in others)} in the user folder; "
              f"unzip a zipped package, or convert trusted weights with LiverTumorSegLib.package.save_model_package")
    skipped = skipped_weight_entries(user_models_dir())
    if skipped:
        shown = ", ".join(f"'{shown_text(entry.name)}' ({why})" for entry, why in skipped)
        print(f"  skipped in the user folder: {shown}; a model package is one .safetensors file: move the package "
              f"file out of such a folder into the user folder (or give its path to --model)")
    if not installed:
        from ..resources import MISSING_RESOURCES_HINT
        print("  none. Train one with 'livertumorseg train' or copy a .safetensors package into the user folder.")
        if not bundled_models_dir().is_dir():
            import os

            chosen = os.environ.get("LIVERTUMORSEG_RESOURCES")  # the cause when set: not the install's
            print(f"  (no bundled models folder: '{bundled_models_dir()}' does not exist; chosen by "
                  f"LIVERTUMORSEG_RESOURCES={chosen}, which should name a folder holding Models/ and Sample/)"
                  if chosen else f"  (no bundled models folder: {MISSING_RESOURCES_HINT})")
        return 0
    _say(f"  {'name':<24} {'architecture':<16} {'source':<8} {'validation':<32} file")
    for entry in installed:
        if entry["error"]:
            _say(f"  {entry['name']:<24} {'UNUSABLE':<16} {entry['source']:<8} {'-':<32} {entry['path']}")
            _say(f"      {entry['error']}")
            continue
        name = entry["name"] + (" (default)" if entry["default"] else "")
        _say(f"  {name:<24} {entry['architecture']:<16} {entry['source']:<8} "
             f"{dice_summary(entry['validation']):<32} {entry['path']}")
        for caveat in validation_caveats(entry["validation"]):
            _say(f"      note: {caveat}")
        if entry.get("min_lesion_probability") is not None:
            statistic = entry.get("lesion_probability_statistic") or "mean"
            _say(f"      lesion confidence threshold {entry['min_lesion_probability']:g} of each lesion's {statistic} "
                 f"tumor probability (this model's own, used where --min-lesion-probability is not given; other "
                 f"models: {DEFAULT_MIN_LESION_PROBABILITY:g} of the mean)")
        if entry.get("name_note"):
            _say(f"      note: {entry['name_note']}")
        if entry.get("segment_refusal"):
            _say(f"      note: segment and evaluate refuse it: {entry['segment_refusal']}")
        if resampling_fill_line(entry.get("training_cases_with_resampling_fill")):
            _say(f"      note: {resampling_fill_line(entry['training_cases_with_resampling_fill'])}")
        for line in robustness_lines(entry.get("robustness"), weights=entry.get("robustness_weights", ""),
                                     missing=missing_perturbations(entry.get("robustness"),
                                                                   entry.get("robustness_settings")),
                                     settings=entry.get("robustness_settings"),
                                     threshold_note=robustness_threshold_note(
                                         entry.get("robustness_settings"), entry.get("min_lesion_probability"),
                                         entry.get("lesion_probability_statistic"))):
            _say("      " + line)
    if not verify:
        print("  (weights are checked when a package is loaded; 'livertumorseg models --verify' checks them all now)")
    elif code:  # counted as verify_exit_code counts: it said '0 failed' for a package segment refuses
        unusable = sum(1 for e in installed if e["error"])
        refused = sum(1 for e in installed if not e["error"] and e.get("segment_refusal"))
        parts = [f"{unusable} listed as UNUSABLE"] * bool(unusable) + \
            [f"{refused} noted as refused by segment and evaluate"] * bool(refused)
        print(f"error: {unusable + refused} installed package(s) failed verification ({', '.join(parts)} above)",
              file=sys.stderr)
    return code


def verify_exit_code(installed: List[Dict[str, Any]], verify: bool) -> int:
    """``--verify``: 2 when any installed package is unusable (a script's check step must see it), else 0; a
    plain listing is 0 whatever it shows. Unusable: it does not load (``error``), or it loads and ``segment`` and
    ``evaluate`` refuse it (``segment_refusal``: 0 with the note only before, while README said 2)."""
    return 2 if verify and any(e["error"] or e.get("segment_refusal") for e in installed) else 0
