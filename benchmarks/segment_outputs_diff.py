"""Compare two folders of ``segment`` outputs written by two versions of the library: exit 1 when any differs.

Issue 13: the stages of ``segment`` before and after the network (read, checks, preprocess, restore) are made
cheaper without changing any result. ``benchmarks/finish_steps.py diff`` compares ``Segmenter.finish`` on saved
network outputs, which skips those stages; this compares what whole runs wrote. Run ``segment`` with each version on
``PYTHONPATH`` into its own folder, the same file names in both (e.g. ``-o A/ct.nii.gz --report A/ct.json
--probabilities A/ct_p.nii.gz``), then:

    python benchmarks/segment_outputs_diff.py A B

Images (``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``) must have the same voxel type, voxel values (``(z, y, x)``) and
geometry (spacing mm, origin mm, direction, all (x, y, z)); reports (``.json``) the same content apart from what
describes the run, not the result: its seconds (``timings_s``, ``model_load_s``, and every key ending in ``_seconds``,
such as the bf16 check's ``precision.check.bf16_seconds``), the library's ``library_version`` and the package's
``model_path`` and ``options.model`` (each checkout's own; the package's content is ``model_weights_sha256`` and
``model_settings_sha256``, compared). A differing report names the keys that differ. File names starting with a dot
are compared too.
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
RUN_KEYS = ("timings_s", "model_load_s", "library_version", "model_path")
"""Report keys that describe the run (seconds, the library's version, the package file's path), not the result:
left out of the comparison at any depth, with every key ending in ``_seconds`` (:func:`is_run_key`). Two identical
runs on a bf16 CPU were 'DIFFERENT' by the bf16 check's seconds, and two checkouts by their paths and versions."""
RUN_PATHS = ("options.model",)
"""Dotted report paths that describe the run: ``--model PATH`` as given (each checkout's own path to the same
package; its content is compared through ``model_weights_sha256`` and ``model_settings_sha256``)."""


def is_run_key(key, path=""):
    """Whether a report key (at dotted ``path``) describes the run, not the result (:data:`RUN_KEYS`,
    ``*_seconds``, :data:`RUN_PATHS`)."""
    return key in RUN_KEYS or str(key).endswith("_seconds") or path in RUN_PATHS


def differing_keys(a, b, where=""):
    """Dotted paths (``lesions[0].volume_ml``) at which two parsed JSON values differ, run keys left out."""
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for k in sorted(set(a) | set(b), key=str):
            path = f"{where}.{k}" if where else str(k)
            if is_run_key(k, path):
                continue
            found.extend(differing_keys(a[k], b[k], path) if k in a and k in b else [path])
        return found
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [path for i, (x, y) in enumerate(zip(a, b)) for path in differing_keys(x, y, f"{where}[{i}]")]
    same = json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    return [] if same else [where or "(the whole report)"]


def report_differences(path_a, path_b):
    """The keys at which two JSON reports differ apart from the run keys (:func:`is_run_key`); [] when equal."""
    return differing_keys(json.loads(Path(path_a).read_text()), json.loads(Path(path_b).read_text()))


def same_report(path_a, path_b):
    """Whether two JSON reports are equal apart from the run keys (:func:`is_run_key`)."""
    return not report_differences(path_a, path_b)


def same_image(path_a, path_b):
    """Whether two image files hold the same voxel type, values and geometry."""
    from LiverTumorSegLib.io import read_volume

    a, b = read_volume(path_a), read_volume(path_b)
    return (a.array.dtype == b.array.dtype and a.array.shape == b.array.shape
            and np.array_equal(a.array, b.array) and tuple(a.geometry.spacing) == tuple(b.geometry.spacing)
            and tuple(a.geometry.origin) == tuple(b.geometry.origin)
            and np.array_equal(np.asarray(a.geometry.direction), np.asarray(b.geometry.direction)))


def compare_folders(dir_a, dir_b):
    """``{file name: True when identical}`` for every image and report in either folder (in one only: False)."""
    a, b = Path(dir_a), Path(dir_b)
    names = sorted({p.name for folder in (a, b) for p in folder.iterdir()
                    if p.name.endswith(IMAGE_SUFFIXES + (".json",))})
    result = {}
    for name in names:
        if not ((a / name).is_file() and (b / name).is_file()):
            result[name] = False
        elif name.endswith(".json"):
            result[name] = same_report(a / name, b / name)
        else:
            result[name] = same_image(a / name, b / name)
    return result


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__.splitlines()[0] + "\nusage: segment_outputs_diff.py FOLDER_A FOLDER_B", file=sys.stderr)
        return 2
    same = compare_folders(*args)
    for name, identical in same.items():
        keys = [] if identical or not name.endswith(".json") or not all(
            (Path(folder) / name).is_file() for folder in args) else report_differences(*(Path(f) / name for f in args))
        shown = f" ({', '.join(keys[:8])}{' and more' if len(keys) > 8 else ''})" if keys else ""
        print(f"{name}: {'identical' if identical else 'DIFFERENT'}{shown}")
    return 0 if same and all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
