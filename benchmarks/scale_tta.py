"""Run one of the project's scripts with test-time scale averaging in the inference engine (an experiment's tool).

    python benchmarks/scale_tta.py --scales 0.8,1,1.25 scripts/evaluate_folds.py --cases cases.csv F0 F1 F2
    python benchmarks/scale_tta.py --scales 1 benchmarks/robustness.py default --data DIR --max-slices 40 ...

For the run of SCRIPT (executed as ``__main__`` with the arguments that follow it), every
``SliceInferenceEngine.predict`` and ``predict_with_probability`` resamples the canonical CT in-plane to the
package's pixel size times each scale (``--scales 0.8,1,1.25``: 1.2, 1.5 and 1.875 mm for the 1.5 mm packages),
runs the network on each, restores every class's probability to the CT's grid (bilinear, as the engine's own
restore), averages them and takes the argmax (first maximum wins); the tumor probability the post-processing and
the report read is ``round(255 p)`` of the average. ``--scales 1`` is the same code with one scale: the baseline
to compare with, so that a difference is the averaging, not this path. Everything after the network (post-processing,
report, metrics) is the script's own. On the CPU, precision ``auto`` runs the network in fp32 on this path (it
calls the network batch by batch, past the engine's bf16 check; the report's ``precision`` says so). A custom
predictor (no network to resample for) is refused; in two-stage mode
both passes would be averaged, which nothing here measured.

``--lesion-check`` instead leaves the engine alone and checks each lesion of ``segment_volume``'s result (after the
default post-processing): the network runs at the ``--scales`` on the slabs of the canonical CT that hold tumor
(plus a margin of :func:`context_margin` slices each side, so the 2.5D neighbours are the scan's own), the
averaged argmax is taken, and a tumor component (26-connected) that it calls tumor on fewer than half of its
voxels becomes liver. Only ``labels`` change (the result's report still lists the lesions as post-processing
left them). At exit it prints the slices checked and the lesions turned into liver.
See docs/scale_tta_lever.md for what both measured.
"""
import argparse
import dataclasses
import runpy
import sys
import time
from pathlib import Path
from typing import List, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH = 8


def scaled_config(config, factor: float):
    """The engine's preprocessing config with its in-plane pixel size times ``factor`` (mm)."""
    if config.target_spacing_mm is None:
        raise SystemExit("this package's preprocessing keeps the CT's pixel size (target_spacing_mm None): "
                         "there is no scale to vary")
    return dataclasses.replace(config, target_spacing_mm=float(config.target_spacing_mm) * factor)


def averaged_probabilities(engine, canonical, scales: Sequence[float], add_time=None) -> np.ndarray:
    """Class probabilities ``(z, K, y, x)`` float32 on the canonical CT's grid, averaged over ``scales``.
    ``add_time(stage, seconds)``, when given, is told the ``preprocess`` and ``network`` seconds (the engine's
    ``_add_time``: the report's ``timings_s`` were empty of them on the patched path)."""
    def timed(stage: str, began: float) -> None:
        if add_time is not None:
            add_time(stage, time.perf_counter() - began)

    from LiverTumorSegLib.preprocessing import SlicePreprocessor
    from LiverTumorSegLib.preprocessing.spatial import inverse_maps

    total = None
    for factor in scales:
        began = time.perf_counter()
        prepared = SlicePreprocessor(scaled_config(engine.preprocessing, factor)).prepare(canonical)
        timed("preprocess", began)
        n = prepared.num_slices
        for start in range(0, n, BATCH):
            indices = list(range(start, min(n, start + BATCH)))
            x = np.ascontiguousarray(prepared.batch(indices), dtype=np.float32)
            began = time.perf_counter()
            probabilities = engine.predict_batch_probabilities(x)
            timed("network", began)
            native = inverse_maps(probabilities, prepared.info)  # (b, K, y, x)
            if total is None:
                total = np.zeros((n,) + native.shape[1:], dtype=np.float32)
            total[start:start + len(indices)] += native
    return total / np.float32(len(scales))


def no_unchecked_bf16(engine) -> None:
    """Make a CPU ``engine`` whose bf16 awaits its check (``--precision auto`` on a bf16 CPU) run its network in
    fp32 from now on, and record the precision in ``last_precision``: this path calls the network batch by batch,
    past the engine's bf16 check (its 0.1 % label agreement with fp32 on the middle slices), so the network ran bf16
    unchecked (an untrained package that fails the check differed from fp32 on 1 % of the voxels) and the report's
    precision said only 'auto'. bf16 asked for (``--precision bf16``, never checked) stays."""
    if engine.device.type == "cpu" and engine.cpu_dtype is not None and engine._verify_cpu_dtype:
        engine.cpu_dtype = None
        engine._verify_cpu_dtype = False
        # the engine's own note, which every later volume's record copies (set in last_precision alone, it was in
        # the first volume's report only: robustness.py and evaluate_folds reuse one engine)
        engine._precision_note = "benchmarks/scale_tta.py runs the CPU network in fp32 where bf16 awaits its check"
    engine._start_precision_record()  # the engine's own record: requested, used, an earlier check's numbers


def install(scales: Sequence[float]) -> None:
    """Replace the engine's two predict methods for this process (see the module docstring)."""
    from LiverTumorSegLib.inference.engine import SliceInferenceEngine
    from LiverTumorSegLib.orientation import canonicalize

    def run(engine, volume, class_index: int):
        if getattr(engine, "_batch_predictor", None) is not None:
            raise SystemExit("scale_tta.py: a custom predictor is not patched")
        engine._offered = None  # an offered preparation is for one scale only
        engine._reset_timings()
        no_unchecked_bf16(engine)
        canonical, reorientation = canonicalize(volume)
        probs = averaged_probabilities(engine, canonical, scales, engine._add_time)
        labels = np.argmax(probs, axis=1).astype(np.uint8)
        probability = np.round(np.clip(probs[:, class_index], 0.0, 1.0) * 255.0).astype(np.uint8)
        return (np.ascontiguousarray(reorientation.from_canonical(labels)),
                np.ascontiguousarray(reorientation.from_canonical(probability)))

    def predict(self, volume, progress=None, cancel=None):
        return run(self, volume, 2)[0]

    def predict_with_probability(self, volume, progress=None, cancel=None, class_index=2,
                                 probability_everywhere=True):
        return run(self, volume, class_index)

    SliceInferenceEngine.predict = predict
    SliceInferenceEngine.predict_with_probability = predict_with_probability


CHECK_COUNTS = {"scans": 0, "slices": 0, "slices_checked": 0, "lesions": 0, "lesions_to_liver": 0}


def context_margin(spacing_z_mm: float, config=None) -> int:
    """Slices each side of a checked slab: 3 mm (the bundled packages' widest 2.5D reach) and one slice more, at
    least 4, and with ``config`` (the package's preprocessing) at least its own 2.5D reach on these slices
    (``context_slices x context_offset``) plus one, for a package that reaches further."""
    margin = max(4, int(np.ceil(3.0 / float(spacing_z_mm))) + 1)
    if config is not None and config.context_slices:
        margin = max(margin, int(np.ceil(config.context_slices * config.context_offset(spacing_z_mm))) + 1)
    return margin


def tumor_slabs(tumor_z: Sequence[int], num_slices: int, margin: int) -> List[tuple]:
    """Half-open ``(z0, z1)`` slabs covering the slices in ``tumor_z`` +- ``margin``, overlapping ones merged."""
    slabs = []  # type: List[list]
    for z in sorted(int(v) for v in tumor_z):
        z0, z1 = max(0, z - margin), min(num_slices, z + margin + 1)
        if slabs and z0 <= slabs[-1][1]:
            slabs[-1][1] = max(slabs[-1][1], z1)
        else:
            slabs.append([z0, z1])
    return [tuple(s) for s in slabs]


def lesion_check(engine, volume, labels: np.ndarray, scales: Sequence[float]) -> np.ndarray:
    """``labels`` (``volume``'s grid, after post-processing) with each tumor component that the ``scales``'
    averaged argmax calls tumor on fewer than half of its voxels made liver (label 1). A copy."""
    from scipy import ndimage

    from LiverTumorSegLib.inference.postprocess import CONNECTIVITY_26
    from LiverTumorSegLib.orientation import canonicalize
    from LiverTumorSegLib.volume import CTVolume

    CHECK_COUNTS["scans"] += 1
    CHECK_COUNTS["slices"] += int(labels.shape[0])
    if not (labels == 2).any():
        return labels
    canonical, reorientation = canonicalize(volume)
    canon = np.array(reorientation.to_canonical(labels), dtype=np.uint8, copy=True)
    n = canon.shape[0]
    agrees = np.zeros(canon.shape, dtype=bool)  # averaged argmax == tumor, on the checked slabs
    margin = context_margin(canonical.spacing_zyx[0], engine.preprocessing)
    for z0, z1 in tumor_slabs(np.nonzero((canon == 2).any(axis=(1, 2)))[0], n, margin):
        slab = CTVolume(np.ascontiguousarray(canonical.array[z0:z1]), canonical.geometry, source="lesion check slab")
        agrees[z0:z1] = np.argmax(averaged_probabilities(engine, slab, scales), axis=1) == 2
        CHECK_COUNTS["slices_checked"] += z1 - z0
    components, count = ndimage.label(canon == 2, structure=CONNECTIVITY_26)
    voxels = np.bincount(components.ravel(), minlength=count + 1)
    tumor_votes = np.bincount(components[agrees], minlength=count + 1)
    drop = np.zeros(count + 1, dtype=bool)
    drop[1:] = 2 * tumor_votes[1:] < voxels[1:]
    canon[drop[components]] = 1
    CHECK_COUNTS["lesions"] += int(count)
    CHECK_COUNTS["lesions_to_liver"] += int(drop.sum())
    return np.ascontiguousarray(reorientation.from_canonical(canon))


def install_lesion_check(scales: Sequence[float]) -> None:
    """Wrap ``Segmenter.segment_volume`` so its result's labels go through :func:`lesion_check`."""
    import atexit

    from LiverTumorSegLib.inference.segmenter import Segmenter

    original = Segmenter.segment_volume

    def segment_volume(self, volume, *args, **kwargs):
        result = original(self, volume, *args, **kwargs)
        if getattr(self.engine, "_batch_predictor", None) is not None:
            raise SystemExit("scale_tta.py: a custom predictor is not patched")
        result.labels = lesion_check(self.engine, volume, result.labels, scales)
        return result

    Segmenter.segment_volume = segment_volume
    atexit.register(lambda: print(f"scale_tta lesion check: {CHECK_COUNTS}", file=sys.stderr))


def parse_scales(text: str) -> List[float]:
    scales = [float(part) for part in text.split(",") if part.strip()]
    if not scales or any(not 0.25 <= s <= 4.0 for s in scales):
        raise argparse.ArgumentTypeError(f"--scales wants factors between 0.25 and 4 separated by commas, got {text!r}")
    return scales


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", type=parse_scales, required=True, help="factors of the pixel size, e.g. 0.8,1,1.25")
    parser.add_argument("--lesion-check", action="store_true",
                        help="keep the one-scale result and check each lesion at --scales (see above)")
    parser.add_argument("script", help="the script to run (e.g. scripts/evaluate_folds.py)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    args = parser.parse_args(argv)
    script = Path(args.script)
    if not script.is_file():  # runpy's FileNotFoundError was a traceback, after the engine had been patched
        parser.error(f"script '{args.script}' {'is a folder' if script.is_dir() else 'does not exist'}; give the "
                     f"Python script to run, e.g. scripts/evaluate_folds.py")
    # robustness.py would store the patched engine's table as the package's own; '--store' (argparse's abbreviation,
    # which robustness.py no longer takes) stored it past this check
    if any(len(a) > 4 and "--store-in-package".startswith(a.split("=")[0]) for a in args.args):
        parser.error("--store-in-package is refused under scale_tta: the table would be stored in the package as "
                     "its plain robustness, though the engine ran patched; write it with --json instead")
    scales = ", ".join(f"{s:g}" for s in args.scales)
    if args.lesion_check:
        install_lesion_check(args.scales)
        print(f"scale_tta: lesions checked at network pixel size x {scales}", file=sys.stderr)
    else:
        install(args.scales)
        print(f"scale_tta: network pixel size x {scales}, probabilities averaged", file=sys.stderr)
    sys.argv = [args.script] + args.args
    sys.path.insert(0, str(Path(args.script).resolve().parent))
    runpy.run_path(args.script, run_name="__main__")


if __name__ == "__main__":
    main()
