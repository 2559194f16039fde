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
report, metrics) is the script's own. Two-stage mode and a custom predictor are not patched (refused).
See docs/scale_tta_lever.md for what it measured.
"""
import argparse
import dataclasses
import runpy
import sys
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


def averaged_probabilities(engine, canonical, scales: Sequence[float]) -> np.ndarray:
    """Class probabilities ``(z, K, y, x)`` float32 on the canonical CT's grid, averaged over ``scales``."""
    from LiverTumorSegLib.preprocessing import SlicePreprocessor
    from LiverTumorSegLib.preprocessing.spatial import inverse_maps

    total = None
    for factor in scales:
        prepared = SlicePreprocessor(scaled_config(engine.preprocessing, factor)).prepare(canonical)
        n = prepared.num_slices
        for start in range(0, n, BATCH):
            indices = list(range(start, min(n, start + BATCH)))
            x = np.ascontiguousarray(prepared.batch(indices), dtype=np.float32)
            native = inverse_maps(engine.predict_batch_probabilities(x), prepared.info)  # (b, K, y, x)
            if total is None:
                total = np.zeros((n,) + native.shape[1:], dtype=np.float32)
            total[start:start + len(indices)] += native
    return total / np.float32(len(scales))


def install(scales: Sequence[float]) -> None:
    """Replace the engine's two predict methods for this process (see the module docstring)."""
    from LiverTumorSegLib.inference.engine import SliceInferenceEngine
    from LiverTumorSegLib.orientation import canonicalize

    def run(engine, volume, class_index: int):
        if getattr(engine, "_batch_predictor", None) is not None:
            raise SystemExit("scale_tta.py: a custom predictor is not patched")
        engine._offered = None  # an offered preparation is for one scale only
        engine._reset_timings()
        canonical, reorientation = canonicalize(volume)
        probs = averaged_probabilities(engine, canonical, scales)
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


def parse_scales(text: str) -> List[float]:
    scales = [float(part) for part in text.split(",") if part.strip()]
    if not scales or any(not 0.25 <= s <= 4.0 for s in scales):
        raise argparse.ArgumentTypeError(f"--scales wants factors between 0.25 and 4 separated by commas, got {text!r}")
    return scales


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", type=parse_scales, required=True, help="factors of the pixel size, e.g. 0.8,1,1.25")
    parser.add_argument("script", help="the script to run (e.g. scripts/evaluate_folds.py)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    args = parser.parse_args(argv)
    install(args.scales)
    print(f"scale_tta: network pixel size x {', '.join(f'{s:g}' for s in args.scales)}, probabilities averaged",
          file=sys.stderr)
    sys.argv = [args.script] + args.args
    sys.path.insert(0, str(Path(args.script).resolve().parent))
    runpy.run_path(args.script, run_name="__main__")


if __name__ == "__main__":
    main()
