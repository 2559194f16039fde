"""Set the 2.5D neighbour distance bounds (``context_min_mm``, ``context_max_mm``) in trained model packages.

    python scripts/set_context_spacing.py PACKAGE [PACKAGE ...] [--min-mm MM|none] [--max-mm MM|none]

The two ``PreprocessingConfig`` settings keep a 2.5D network's neighbouring input slices ``context_min_mm`` to
``context_max_mm`` from the centre slice, whatever the CT's slice spacing: on thinner slices every k-th slice is
taken, on thicker ones the neighbours' HU is interpolated between adjacent slices. Set them to the **thinnest and
thickest slice spacing the package was trained on**: on its training scans nothing then changes, and any other CT
is shown neighbours as far apart as the training slices were. Bounds outside that range would show the network
neighbour distances it never saw. The bundled packages (the default v3 and the family packages) were trained on
the three shared patients, whose slices are 1.0, 2.0 and 3.0 mm apart: ``--min-mm 1.0 --max-mm 3.0``.

A bound that is not given is kept as the package has it; ``none`` removes one (no bound on that side). The
package's tensors and their SHA-256 stay as they are; its metadata (and its own hash) is rewritten, and a
bundled package's line in ``Resources/Models/SHA256SUMS`` follows. A package with ``context_slices`` 0 (single
slices) is left unchanged. Each package is loaded once more afterwards.
"""
import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LiverTumorSegLib.errors import LiverTumorSegError  # noqa: E402

BOUNDS = ("context_min_mm", "context_max_mm")
KEEP = object()
"""A bound not given: the package's own is kept."""


def bound(text: str) -> Optional[float]:
    """``--min-mm`` / ``--max-mm``: a number of mm, or ``none`` (no bound)."""
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"give a number of mm or 'none', not '{text}'") from None


def set_context_spacing(package: Any, min_mm: Any = KEEP, max_mm: Any = KEEP) -> str:
    """Write the bounds into the package's preprocessing (None: no bound on that side; :data:`KEEP`: as the package
    has it); what was done, as one line."""
    from LiverTumorSegLib.package import read_package_metadata, resolve_model, rewrite_package_metadata
    from LiverTumorSegLib.preprocessing.config import PreprocessingConfig

    path = resolve_model(package)
    before = read_package_metadata(path)["preprocessing"]
    if int(before.get("context_slices", 0) or 0) == 0:
        return f"{path.name}: single-slice input (context_slices 0), left unchanged"
    old = {name: before.get(name) for name in BOUNDS}
    wanted = {name: old[name] if value is KEEP else value for name, value in zip(BOUNDS, (min_mm, max_mm))}
    PreprocessingConfig.from_dict(dict(before, **wanted))  # the values are checked before the file is touched
    if old == wanted:
        return f"{path.name}: the bounds are {_bounds_text(old)} already"

    def change(meta: Dict[str, Any]) -> None:
        meta["preprocessing"] = dict(meta["preprocessing"], **wanted)

    rewrite_package_metadata(path, change)
    return f"{path.name}: neighbours {_bounds_text(old)} -> {_bounds_text(wanted)} from the centre"


def _bounds_text(bounds: Dict[str, Any]) -> str:
    """``0.8 - 2.5 mm``, ``at least 0.8 mm``, ``at most 2.5 mm`` or ``unbounded``: 'None - None mm' before."""
    low, high = bounds["context_min_mm"], bounds["context_max_mm"]
    if low is not None and high is not None:
        return f"{low} - {high} mm"
    if low is not None:
        return f"at least {low} mm"
    return f"at most {high} mm" if high is not None else "unbounded"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("packages", nargs="+", help="package files or installed model names")
    parser.add_argument("--min-mm", type=bound, default=KEEP,
                        help="the thinnest slice spacing (mm) the packages were trained on, or 'none' (default: keep)")
    parser.add_argument("--max-mm", type=bound, default=KEEP,
                        help="the thickest slice spacing (mm) the packages were trained on, or 'none' (default: keep)")
    args = parser.parse_args(argv)
    if args.min_mm is KEEP and args.max_mm is KEEP:
        parser.error("give --min-mm, --max-mm or both (a number of mm, or 'none' to remove that bound)")
    lines: List[str] = []
    try:
        for package in args.packages:
            lines.append(set_context_spacing(package, args.min_mm, args.max_mm))
    except LiverTumorSegError as exc:
        print("\n".join(lines + [f"error: {exc}"]), file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
