"""Set ``context_min_mm`` in the preprocessing of trained model packages (weights unchanged).

    python scripts/set_context_min_mm.py PACKAGE [PACKAGE ...] --mm 1.0

``context_min_mm`` (``PreprocessingConfig``) keeps a 2.5D network's neighbouring input slices at least that many
mm apart: on a CT with thinner slices, every k-th slice becomes the neighbour. Set it to the **thinnest slice
spacing the package was trained on** (or less): on its training scans nothing then changes, and a thinner CT is
shown neighbours as far apart as the training slices were. A larger value would show the network neighbours
further apart than it ever saw on its own training data. The bundled packages (the default v3 and the family
packages) were trained on the three shared patients, whose slices are 1.0, 2.0 and 3.0 mm apart: ``--mm 1.0``.

The package's tensors and their SHA-256 stay as they are; its metadata (and its own hash) is rewritten, and a
bundled package's line in ``Resources/Models/SHA256SUMS`` follows. A package with ``context_slices`` 0 (single
slices) is left unchanged. Each package is loaded once more afterwards.
"""
import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LiverTumorSegLib.errors import LiverTumorSegError  # noqa: E402


def set_context_min_mm(package: Any, mm: float) -> str:
    """Write ``context_min_mm = mm`` into the package's preprocessing; what was done, as one line."""
    from LiverTumorSegLib.package import read_package_metadata, resolve_model, rewrite_package_metadata
    from LiverTumorSegLib.preprocessing.config import PreprocessingConfig

    path = resolve_model(package)
    before = read_package_metadata(path)["preprocessing"]
    if int(before.get("context_slices", 0) or 0) == 0:
        return f"{path.name}: single-slice input (context_slices 0), left unchanged"
    PreprocessingConfig.from_dict(dict(before, context_min_mm=mm))  # the value is checked before the file is touched
    if before.get("context_min_mm") == mm:
        return f"{path.name}: context_min_mm is {mm:g} mm already"

    def change(meta: Dict[str, Any]) -> None:
        meta["preprocessing"] = dict(meta["preprocessing"], context_min_mm=mm)

    rewrite_package_metadata(path, change)
    return f"{path.name}: context_min_mm {before.get('context_min_mm')} -> {mm:g} mm"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("packages", nargs="+", help="package files or installed model names")
    parser.add_argument("--mm", type=float, required=True,
                        help="the thinnest slice spacing (mm) the packages were trained on")
    args = parser.parse_args(argv)
    lines: List[str] = []
    try:
        for package in args.packages:
            lines.append(set_context_min_mm(package, args.mm))
    except LiverTumorSegError as exc:
        print("\n".join(lines + [f"error: {exc}"]), file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
