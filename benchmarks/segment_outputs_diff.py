"""Compare two folders of ``segment`` outputs written by two versions of the library: exit 1 when any differs.

Issue 13: the stages of ``segment`` before and after the network (read, checks, preprocess, restore) are made
cheaper without changing any result. ``benchmarks/finish_steps.py diff`` compares ``Segmenter.finish`` on saved
network outputs, which skips those stages; this compares what whole runs wrote. Run ``segment`` with each version on
``PYTHONPATH`` into its own folder, the same file names in both (e.g. ``-o A/ct.nii.gz --report A/ct.json
--probabilities A/ct_p.nii.gz``), then:

    python benchmarks/segment_outputs_diff.py A B

Images (``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``) must have the same voxel type, voxel values (``(z, y, x)``) and
geometry (spacing mm, origin mm, direction, all (x, y, z)); reports (``.json``) the same content apart from the run's
``timings_s`` and ``model_load_s``. File names starting with a dot are compared too.
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
RUN_KEYS = ("timings_s", "model_load_s")
"""Report keys that describe the run (seconds), not the result: left out of the comparison."""


def without_run_keys(report):
    """``report`` (a parsed JSON value) without :data:`RUN_KEYS` at any depth."""
    if isinstance(report, dict):
        return {k: without_run_keys(v) for k, v in report.items() if k not in RUN_KEYS}
    if isinstance(report, list):
        return [without_run_keys(v) for v in report]
    return report


def same_image(path_a, path_b):
    """Whether two image files hold the same voxel type, values and geometry."""
    from LiverTumorSegLib.io import read_volume

    a, b = read_volume(path_a), read_volume(path_b)
    return (a.array.dtype == b.array.dtype and a.array.shape == b.array.shape
            and np.array_equal(a.array, b.array) and tuple(a.geometry.spacing) == tuple(b.geometry.spacing)
            and tuple(a.geometry.origin) == tuple(b.geometry.origin)
            and np.array_equal(np.asarray(a.geometry.direction), np.asarray(b.geometry.direction)))


def same_report(path_a, path_b):
    """Whether two JSON reports are equal apart from :data:`RUN_KEYS`."""
    a = without_run_keys(json.loads(Path(path_a).read_text()))
    b = without_run_keys(json.loads(Path(path_b).read_text()))
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


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
        print(f"{name}: {'identical' if identical else 'DIFFERENT'}")
    return 0 if same and all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
