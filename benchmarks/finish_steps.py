"""The steps after the network (Segmenter.finish), on network outputs saved once: their report and times.

Issue 13: post-processing, the report and its checks run beside the next CT's network. To make them cheaper without
changing any result, save the network's output of each CT once, then compare ``finish``'s report and label map from
two versions of the library, and time each step alone:

    python benchmarks/finish_steps.py save CT [CT ...] --out DIR [--slices N]   # network once per CT (CPU)
    python benchmarks/finish_steps.py report DIR --out REPORTS                # finish: report JSON + label sha256
    python benchmarks/finish_steps.py diff REPORTS_A REPORTS_B                  # exit 1 when any case differs
    python benchmarks/finish_steps.py time DIR [--repeats 5]                   # each step, best of N, CPU s

``save`` pickles ``(CTVolume, NetworkOutput)`` per CT as ``DIR/NAME.pkl`` (``--slices N``: the CT stacked to N
slices by mirrored repetition, as ``bench_inference.py`` does; a pickle is for this machine and library version
only). ``report`` writes ``REPORTS/NAME.json``: the report without ``timings_s`` / ``model_load_s``, the warnings and
the label map's sha256, dtype and shape, with float values written in full (``repr``), so that ``diff`` of two
library versions (run ``report`` with each on ``PYTHONPATH``) shows any change of a number. ``time`` runs
post-processing, the lesion report and each check of ``finish`` alone on the saved output (the arguments ``finish``
gives them) and prints the minimum over ``--repeats`` of the CPU seconds (``time.process_time``) and of the wall
seconds: on a shared machine the minimum, and the CPU time, are what other processes disturb least. Run it with
``OMP_NUM_THREADS=1``.
"""
import argparse
import hashlib
import json
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def save_outputs(cts, out_dir, slices=None, segmenter=None):
    """Run the network once per CT in ``cts`` (paths) and pickle ``(volume, NetworkOutput)`` to ``out_dir``;
    returns the written paths. ``slices``: each CT stacked to that many slices first."""
    from LiverTumorSegLib.inference import Segmenter
    from LiverTumorSegLib.io import read_volume

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    segmenter = segmenter or Segmenter().load()
    written = []
    for ct in cts:
        volume = read_volume(ct)
        name = Path(ct).name.split(".")[0]
        if slices:
            from bench_inference import stacked_volume

            volume, name = stacked_volume(volume, slices), f"{name}_x{slices}"
        written.append(save_output(volume, segmenter.predict(volume), out_dir / f"{name}.pkl"))
    return written


def save_output(volume, output, path):
    """Pickle ``(volume, output)`` to ``path``; returns it."""
    with open(path, "wb") as f:
        pickle.dump((volume, output), f, protocol=4)
    return Path(path)


def load_output(path):
    """``(volume, NetworkOutput)`` of :func:`save_output`."""
    with open(path, "rb") as f:
        return pickle.load(f)


def finish_record(segmenter, volume, output):
    """What ``diff`` compares of ``segmenter.finish(volume, output)``: report (no timings), warnings, label map."""
    result = segmenter.finish(volume, output)
    report = {k: v for k, v in result.report.items() if k not in ("timings_s", "model_load_s")}
    labels = result.labels
    return {"report": report, "warnings": list(result.warnings), "labels_dtype": str(labels.dtype),
            "labels_shape": list(labels.shape), "labels_sha256": hashlib.sha256(labels.tobytes()).hexdigest()}


def write_reports(saved_dir, out_dir, segmenter=None):
    """:func:`finish_record` of every ``saved_dir/*.pkl`` as ``out_dir/NAME.json``; returns the names."""
    from LiverTumorSegLib.inference import Segmenter

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    segmenter = segmenter or Segmenter().load()
    names = []
    for path in sorted(Path(saved_dir).glob("*.pkl")):
        record = finish_record(segmenter, *load_output(path))
        (out_dir / f"{path.stem}.json").write_text(json.dumps(record, indent=1, sort_keys=True, default=str))
        names.append(path.stem)
    return names


def diff_reports(dir_a, dir_b):
    """``{name: True when identical}`` for the JSON files of either folder (a file in one only: False)."""
    a, b = Path(dir_a), Path(dir_b)
    names = sorted({p.name for p in a.glob("*.json")} | {p.name for p in b.glob("*.json")})
    return {name: (a / name).is_file() and (b / name).is_file() and
            (a / name).read_text() == (b / name).read_text() for name in names}


def step_calls(volume, output, options=None):
    """``[(step name, call)]``: post-processing, the lesion report and each check of ``finish``, with the arguments
    ``finish`` gives them (a CT in HU; the post-processed labels for the report and the checks)."""
    from LiverTumorSegLib.inference import plausibility
    from LiverTumorSegLib.inference.contrast_phase import estimate_contrast_phase
    from LiverTumorSegLib.inference.fluid_in_liver import fluid_in_liver_warnings
    from LiverTumorSegLib.inference.lesion_report import lesion_report
    from LiverTumorSegLib.inference.metal import metal_warnings
    from LiverTumorSegLib.inference.options import SegmentationOptions
    from LiverTumorSegLib.inference.postprocess import postprocess_labels
    from LiverTumorSegLib.inference.segmenter import _outside_scan_cleared
    from LiverTumorSegLib.metrics.surface import bounding_box

    options = options or SegmentationOptions()
    geometry = volume.geometry
    network_labels, probability, hu = _outside_scan_cleared(volume, output)

    def postprocess():
        return postprocess_labels(network_labels, volume.spacing_zyx, options.postprocessing, hu_zyx=hu,
                                  geometry=geometry, tumor_probability_zyx=probability, changes={})

    labels = postprocess()
    liver_box = bounding_box(labels, 1)  # read once by finish and handed to the checks that read the liver
    liver_xz = plausibility.liver_ras_xz(labels, geometry, liver_box)
    spine = plausibility.spine_sample(hu, geometry)
    midline = plausibility.spine_midline_x_mm(hu, geometry, liver_xz, spine)
    return [
        ("postprocess_labels", postprocess),
        ("lesion_report", lambda: lesion_report(labels, geometry, hu, extra={}, tumor_probability_zyx=probability,
                                                network_labels_zyx=network_labels, in_hu=True)),
        ("liver_box", lambda: bounding_box(labels, 1)),
        ("liver_cut_by_scan_end", lambda: plausibility.liver_cut_by_scan_end(labels, geometry)),
        ("liver_cut_by_image_side",
         lambda: plausibility.liver_cut_by_image_side(labels, geometry, hu, liver_box=liver_box)),
        ("liver_ras_xz", lambda: plausibility.liver_ras_xz(labels, geometry, liver_box)),
        ("spine_sample", lambda: plausibility.spine_sample(hu, geometry)),
        ("spine_front_back_warnings",
         lambda: plausibility.spine_front_back_warnings(hu, geometry, spine, liver_xz[1])),
        ("spine_midline_x_mm", lambda: plausibility.spine_midline_x_mm(hu, geometry, liver_xz, spine)),
        ("liver_side_warnings", lambda: plausibility.liver_side_warnings(liver_xz, hu, geometry, midline)),
        ("fluid_in_liver", lambda: fluid_in_liver_warnings(labels, hu, geometry, liver_box)),
        ("metal", lambda: metal_warnings(hu, labels, geometry, liver_box)),
        ("contrast_phase", lambda: estimate_contrast_phase(hu, labels, geometry, midline, liver_box)),
    ]


def best_seconds(call, repeats):
    """``(CPU s, wall s)``: the minimum of each over ``repeats`` calls of ``call``."""
    cpu, wall = [], []
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        call()
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    return min(cpu), min(wall)


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    save = sub.add_parser("save", help="run the network once per CT and pickle its output")
    save.add_argument("cts", nargs="+")
    save.add_argument("--out", required=True)
    save.add_argument("--slices", type=positive_int, default=None)
    report = sub.add_parser("report", help="finish's report and label map of every saved output")
    report.add_argument("saved")
    report.add_argument("--out", required=True)
    diff = sub.add_parser("diff", help="compare two report folders")
    diff.add_argument("a")
    diff.add_argument("b")
    timed = sub.add_parser("time", help="each step of finish alone, best of --repeats")
    timed.add_argument("saved")
    timed.add_argument("--repeats", type=positive_int, default=5)
    args = p.parse_args(argv)
    if args.command == "save":
        for path in save_outputs(args.cts, args.out, args.slices):
            print(path)
    elif args.command == "report":
        for name in write_reports(args.saved, args.out):
            print(name)
    elif args.command == "diff":
        same = diff_reports(args.a, args.b)
        for name, identical in same.items():
            print(f"{name}: {'identical' if identical else 'DIFFERENT'}")
        return 0 if same and all(same.values()) else 1
    else:
        for path in sorted(Path(args.saved).glob("*.pkl")):
            volume, output = load_output(path)
            print(f"{path.stem} {tuple(volume.shape_zyx)} (z, y, x)")
            total = 0.0
            for name, call in step_calls(volume, output):
                cpu, wall = best_seconds(call, args.repeats)
                total += cpu
                print(f"  {name:26s} cpu {cpu:7.3f} s  wall {wall:7.3f} s")
            print(f"  {'sum':26s} cpu {total:7.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
