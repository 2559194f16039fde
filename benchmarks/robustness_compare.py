"""Two packages' robustness tables side by side: the quantities the default model's ship rules read.

    python benchmarks/robustness_compare.py SEED0.json SEED1.json ... --base default --candidate v5 [--out S.json]
        [--overwrite]

Each JSON is one ``benchmarks/robustness.py ... --json`` run that holds both packages (the rules compare
packages run together, with the same code and seed). ``--base`` and ``--candidate`` pick each package by, in
this order: its name, the argument as given to robustness.py (in JSONs that record it), its file's stem
(``default`` for ``.../default.safetensors``), and only then a part of its path that matches one package alone.
``--out`` is checked before any JSON is read and replaces an existing file only with ``--overwrite``.
For each package, over every JSON (seed), case and perturbation:

- mean liver Dice (every row with a reference liver);
- false lesions (predicted lesions that touch no reference or synthetic tumor), all rows and on ``original``
  alone (the real CTs without synthetic tumors);
- mean tumor Dice over the rows that have tumors;
- each perturbation's mean liver Dice, mean tumor Dice and false lesions (so ``hyperdense`` or ``air_pad15``
  can be read as a rule names them);
- on the rows that put water in (``fluid_region``, ``perihepatic_fluid``), the water's mL summed over cases and
  seeds, and how much of it was called liver and tumor (mL): v10's rule D1 read ``perihepatic_fluid``'s sums, which
  this printed nothing of until then (a throwaway script summed them);
- on the ``exophytic`` row, the tumor put outside the liver (mL, summed the same way) and how much of it was called
  liver and tumor (the exophytic lever's rule, docs/exophytic_lever.md);
- on every row with true tumors, the true lesions and those the prediction touched (``detected_lesions``), summed
  over cases and seeds: the ``small_lesions`` row's question is how many it misses, which a Dice hides.

Dice are means of the per-case values (cases weighted alike). Nothing is decided here: the rule is written in
the docs before the run, and this prints what it reads.
"""
import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the repository's LiverTumorSegLib when run as a script
    sys.path.insert(0, str(ROOT))
from LiverTumorSegLib.errors import InputError  # noqa: E402


def _stem(package: object) -> str:
    """The file name of a package path without ``.safetensors`` (``default`` for ``.../default.safetensors``)."""
    name = Path(str(package or "")).name
    return name[:-len(".safetensors")] if name.lower().endswith(".safetensors") else name


def pick_package(doc: dict, which: str, source: str) -> dict:
    """The package entry of one robustness JSON named ``which``: by its name, the argument as given to
    robustness.py (``given``), its file's stem, and only then a part of its path; each way in turn, the first
    that matches. A part of a path came first when nothing was named exactly: ``--base default`` matched both
    ``.../default.safetensors`` and ``/tmp/v10/default_model_v10_all.safetensors`` and was refused."""
    packages = doc["packages"]
    ways = (("name", lambda p: p.get("name") == which),
            ("argument given to robustness.py", lambda p: p.get("given") == which),
            ("file stem", lambda p: _stem(p.get("package")) == which),
            ("part of the path", lambda p: which in str(p.get("package", ""))))
    listed = ", ".join(f"{p.get('name')} ({p.get('package')})" for p in packages)
    for how, matches in ways:
        found = [p for p in packages if matches(p)]
        if len(found) == 1:
            return found[0]
        if found:
            raise InputError(f"{source}: '{which}' matches {len(found)} of its packages by {how} ({listed}); give a "
                             f"name, a file stem or a part of a path that matches exactly one.")
    raise InputError(f"{source}: '{which}' matches none of its packages ({listed}); give a name, a file stem or a "
                     f"part of a path that matches exactly one.")


def read_robustness_json(path: str) -> dict:
    """One ``robustness.py --json`` output; InputError (one line) for a missing file, one that is not JSON, or
    JSON that is not a robustness output (these were tracebacks: FileNotFoundError, JSONDecodeError, KeyError)."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"'{path}' {'is a folder' if file.is_dir() else 'does not exist'}; give the JSON files "
                         f"benchmarks/robustness.py wrote with --json.")
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"'{path}' is not JSON ({exc}); give the JSON files benchmarks/robustness.py wrote with "
                         f"--json.") from None
    packages = doc.get("packages") if isinstance(doc, dict) else None
    if not isinstance(packages, list) or not all(isinstance(p, dict) and isinstance(p.get("rows"), list)
                                                 for p in packages):
        raise InputError(f"'{path}' is not a benchmarks/robustness.py --json output (it has no list of packages "
                         f"with their rows).")
    return doc


def _mean(values: List[float]) -> Optional[float]:
    return statistics.mean(values) if values else None


FLUID_KEYS = ("fluid_ml", "fluid_as_liver_ml", "fluid_as_tumor_ml")
"""What robustness.py's water rows add (mL): the water put in, and the parts of it predicted liver and tumor."""

OUTSIDE_PART_KEYS = ("outside_part_ml", "outside_part_as_liver_ml", "outside_part_as_tumor_ml")
"""What robustness.py's ``exophytic`` row adds (mL): the tumor put outside the liver, and the parts of it predicted
liver and tumor."""

SUMMED_ML_KEYS = (FLUID_KEYS, OUTSIDE_PART_KEYS)
"""Row keys summed over cases and seeds per perturbation (each group's first key: the mL put in)."""

LESION_KEYS = ("true_lesions", "detected_lesions")
"""Lesion counts summed over cases and seeds per perturbation, on rows whose truth holds tumors."""


def summarize(rows: List[dict]) -> Dict[str, object]:
    """What the ship rules read, over ``rows`` (robustness rows of one package, any number of seeds)."""
    perturbations: List[str] = []
    for row in rows:
        if row["perturbation"] not in perturbations:
            perturbations.append(row["perturbation"])

    def of(subset: List[dict]) -> Dict[str, object]:
        out = {"liver_dice": _mean([r["liver_dice"] for r in subset if r.get("liver_dice") is not None]),
               "tumor_dice": _mean([r["tumor_dice"] for r in subset if r.get("tumor_dice") is not None]),
               "false_lesions": sum(int(r.get("false_lesions") or 0) for r in subset),
               "rows": len(subset)}
        for keys in SUMMED_ML_KEYS:  # mL summed over cases and seeds: how much of what was put in was called what
            with_keys = [r for r in subset if r.get(keys[0]) is not None]
            if with_keys:
                for key in keys:
                    out[key] = round(sum(float(r.get(key) or 0.0) for r in with_keys), 2)
        with_lesions = [r for r in subset if r.get("true_lesions")]  # older JSONs' rows may lack the keys
        if with_lesions:
            for key in LESION_KEYS:
                out[key] = sum(int(r.get(key) or 0) for r in with_lesions)
        return out

    summed = {key for keys in SUMMED_ML_KEYS + (LESION_KEYS,) for key in keys}
    out = {key: value for key, value in of(rows).items() if key not in summed}  # per row only
    out["false_lesions_original"] = of([r for r in rows if r["perturbation"] == "original"])["false_lesions"]
    out["per_perturbation"] = {p: of([r for r in rows if r["perturbation"] == p]) for p in perturbations}
    return out


def _fmt(value: Optional[float], digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: Optional[List[str]] = None) -> int:
    """The comparison; a user error is one ``error:`` line and exit 2 (:func:`LiverTumorSegLib.cli.run_script`,
    as the other scripts)."""
    from LiverTumorSegLib.cli import run_script

    return run_script(run, argv)


def print_summed_ml(summary: Dict[str, dict], keys: Tuple[str, ...], what: str) -> None:
    """The rows carrying ``keys`` (:data:`SUMMED_ML_KEYS`): mL put in / called liver / called tumor, base | candidate."""
    names = [name for name, row in summary["base"]["per_perturbation"].items() if keys[0] in row]
    if names:
        print(f"\n{what}, mL summed over cases and seeds: put in / called liver / called tumor (base | candidate)")
    for name in names:
        cells = []
        for row in (summary["base"]["per_perturbation"][name], summary["candidate"]["per_perturbation"].get(name)):
            cells.append(" / ".join(f"{row[key]:.1f}" for key in keys) if row and keys[0] in row else "absent")
        print(f"  {name:16s} {cells[0]:>24s} | {cells[1]}")


def print_lesions_found(summary: Dict[str, dict]) -> None:
    """Per perturbation with true lesions: detected / true lesions summed over cases and seeds, base | candidate."""
    names = [name for name, row in summary["base"]["per_perturbation"].items() if row.get("true_lesions")]
    if names:
        print("\ntrue lesions touched by the prediction, summed over cases and seeds: detected / true (base | candidate)")
    for name in names:
        cells = []
        for row in (summary["base"]["per_perturbation"][name], summary["candidate"]["per_perturbation"].get(name)):
            cells.append(f"{row['detected_lesions']} / {row['true_lesions']}" if row and row.get("true_lesions")
                         else "absent")
        print(f"  {name:16s} {cells[0]:>24s} | {cells[1]}")


def check_out(path: Optional[str], overwrite: bool, inputs: List[str]) -> None:
    """Before any JSON is read: ``--out`` ends in .json, can be written (an existing file only with --overwrite)
    and is none of the input JSONs. It was written at the end, over any file, and a missing folder was a
    traceback."""
    from LiverTumorSegLib.fileutil import check_json_output

    check_json_output(path, overwrite, inputs, option="--out", inputs_named="the input JSON files")


def run(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", nargs="+", help="robustness.py --json files, one per seed, each with both packages")
    parser.add_argument("--base", required=True,
                        help="the shipped package: its name, its file stem, or a part of its path")
    parser.add_argument("--candidate", required=True,
                        help="the candidate: its name, its file stem, or a part of its path")
    parser.add_argument("--out", default=None, help="also write the summaries to this JSON file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(argv)
    check_out(args.out, args.overwrite, args.json)
    rows: Dict[str, List[dict]] = {"base": [], "candidate": []}
    seeds = []
    for path in args.json:
        doc = read_robustness_json(path)
        seeds.append(doc.get("seed"))
        base, cand = pick_package(doc, args.base, path), pick_package(doc, args.candidate, path)
        if base is cand:
            raise InputError(f"{path}: --base and --candidate pick the same package ({base.get('package')}).")
        for key, package in (("base", base), ("candidate", cand)):
            rows[key].extend(package["rows"])
    if len(set(seeds)) != len(seeds):
        print(f"warning: the JSON files repeat a seed ({seeds}): each seed's rows count once per file",
              file=sys.stderr)
    summary = {key: summarize(value) for key, value in rows.items()}
    print(f"seeds {seeds}; base '{args.base}', candidate '{args.candidate}'")
    print(f"{'':26s} {'base':>10s} {'candidate':>10s} {'difference':>11s}")
    for label, key, digits in (("mean liver Dice", "liver_dice", 4), ("mean tumor Dice", "tumor_dice", 3)):
        b, c = summary["base"][key], summary["candidate"][key]
        diff = None if b is None or c is None else c - b
        print(f"{label:26s} {_fmt(b, digits):>10s} {_fmt(c, digits):>10s} {_fmt(diff, digits):>11s}")
    for label, key in (("false lesions, all rows", "false_lesions"), ("false lesions, original", "false_lesions_original")):
        b, c = summary["base"][key], summary["candidate"][key]
        print(f"{label:26s} {b:>10d} {c:>10d} {c - b:>+11d}")
    print("\nper perturbation: liver Dice / tumor Dice / false lesions (base | candidate)")
    for name, base_row in summary["base"]["per_perturbation"].items():
        cand_row = summary["candidate"]["per_perturbation"].get(name)
        cells = [f"{_fmt(r['liver_dice'], 4)} / {_fmt(r['tumor_dice'])} / {r['false_lesions']}" if r else "absent"
                 for r in (base_row, cand_row)]
        print(f"  {name:16s} {cells[0]:>24s} | {cells[1]}")
    for keys, what in ((FLUID_KEYS, "water put in"), (OUTSIDE_PART_KEYS, "tumor put outside the liver")):
        print_summed_ml(summary, keys, what)
    print_lesions_found(summary)
    if args.out:
        from LiverTumorSegLib.fileutil import atomic_output

        with atomic_output(args.out, overwrite=args.overwrite) as tmp:
            Path(tmp).write_text(json.dumps({"seeds": seeds, **summary}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
