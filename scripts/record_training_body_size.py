"""Record in a model package the body sizes of the CTs it was trained on, so `segment` can scale a much smaller body
(a child) up for its network (LiverTumorSegLib/inference/body_size.py).

    python scripts/record_training_body_size.py PACKAGE [--image CASE=PATH ...]

Each training CT the package lists (``training.data_files``: case name and image path; of them, the cases in
``training.cases``, not the validation CTs; a package from before data_files were recorded names its cases only,
and ``--image`` must then give each one's file) is read and measured with
``body_diameter_mm`` (area-equivalent diameter of the body, mm); a CT whose body the image or a round field of view
cuts is recorded as null. ``--image CASE=PATH`` reads a case from another place (the data moved). A listed CT that
cannot be read stops the script with nothing written: a record of some cases only would set the scale by them.
The package's tensors and their SHA-256 stay as they are; its metadata (and its own hash) is rewritten, and a
bundled package's line in ``Resources/Models/SHA256SUMS`` follows.
"""
import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LiverTumorSegLib.errors import InputError  # noqa: E402


def training_images(metadata: dict, overrides: Dict[str, str]) -> Dict[str, str]:
    """``{case: image path}`` of the package's training CTs, ``overrides`` replacing listed paths. ``data_files``
    lists the validation CTs too: only the cases the network was trained on (``training.cases``, where the package
    lists them) are taken."""
    training = metadata.get("training") or {}
    files = training.get("data_files") or []
    images = {str(f["case"]): str(f["image"]) for f in files
              if isinstance(f, dict) and f.get("case") and f.get("image")}
    trained = training.get("cases")
    if isinstance(trained, list) and trained:
        images = {case: image for case, image in images.items() if case in {str(c) for c in trained}}
        if not files:  # a package from before data_files was recorded names its cases only: --image says where
            missing = sorted({str(c) for c in trained} - set(overrides))
            if missing:
                raise InputError(f"the package names its training cases ({', '.join(sorted(str(c) for c in trained))}) "
                                 f"but not their files (no training.data_files): give each with --image CASE=PATH; "
                                 f"missing: {', '.join(missing)}.")
            images = {str(c): overrides[str(c)] for c in trained}
    if not images:
        raise InputError("the package lists no training CTs (training.data_files): its training data is unknown, so "
                         "no body size can be recorded.")
    unknown = sorted(set(overrides) - set(images))
    if unknown:
        raise InputError(f"--image names case(s) {', '.join(unknown)} the package was not trained on; its cases: "
                         f"{', '.join(sorted(images))}.")
    images.update(overrides)
    return images


def measured_diameters(images: Dict[str, str]) -> Dict[str, Optional[float]]:
    """``{case: body diameter in mm, or None}`` of each CT."""
    from LiverTumorSegLib.inference.body_size import body_diameter_mm
    from LiverTumorSegLib.io import read_volume

    out = {}
    for case, path in sorted(images.items()):
        if not Path(path).exists():
            raise InputError(f"training CT '{path}' of case {case} is not there; give its place with --image "
                             f"{case}=PATH.")
        volume = read_volume(path)
        out[case] = body_diameter_mm(volume.array, volume.geometry)["diameter_mm"]
    return out


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("package", help="model package (.safetensors) or installed name")
    p.add_argument("--image", action="append", default=[], metavar="CASE=PATH",
                   help="read training case CASE from PATH instead of the path the package lists")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    from LiverTumorSegLib.inference.body_size import PACKAGE_KEY
    from LiverTumorSegLib.package import read_package_metadata, resolve_model, rewrite_package_metadata

    overrides = {}  # type: Dict[str, str]
    for item in args.image:
        case, sep, path = item.partition("=")
        if not sep or not case or not path:
            raise InputError(f"--image takes CASE=PATH, not '{item}'.")
        overrides[case] = path
    path = resolve_model(args.package)
    diameters = measured_diameters(training_images(read_package_metadata(path), overrides))
    lines = [f"  {case}: {'cut by the field of view (null)' if d is None else f'{d:.1f} mm'}"
             for case, d in diameters.items()]
    rewrite_package_metadata(path, lambda meta: meta.__setitem__(PACKAGE_KEY, diameters))
    print(f"recorded {PACKAGE_KEY} in {path}:\n" + "\n".join(lines))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    from LiverTumorSegLib.cli import run_script

    return run_script(lambda: run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
