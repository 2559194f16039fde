"""Time preprocessing of a synthetic CT: ``prepare`` (spatial forward) + every network batch.

    .venv/bin/python benchmarks/bench_preprocessing.py [--shape 200 512 512] [--spacing 0.75] [--batch 16]
                                                       [--configs default two_windows_histscaled] [--threads N]

Prints seconds per stage for each config, after the same stages once untimed on a tiny phantom. The phantom is built with ``phantom.make_phantom`` at the
requested shape (x/y spacing ``--spacing`` mm, 1.5 mm slices). Not a test.
"""
import sys
import argparse
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's library, not an installed one

import numpy as np


def bench(config_name: str, ct, batch_size: int, warm_ct=None) -> None:
    """Print the stage times of ``config_name`` on ``ct``; first, untimed, the same stages on ``warm_ct`` (a tiny
    phantom), so that the first config's ``prepare`` does not carry the lazy imports and first-call costs (it read
    0.36-0.46 s on a 4-slice phantom, 0.00 s when the same config ran again)."""
    from LiverTumorSegLib.preprocessing import PreprocessingConfig, SlicePreprocessor
    cfg = PreprocessingConfig.preset(config_name)
    pre = SlicePreprocessor(cfg)
    if warm_ct is not None:
        warm = pre.prepare(warm_ct)
        warm.batch(np.arange(warm.num_slices))
        probs = np.zeros((warm.num_slices, 3) + warm.net_shape_yx, np.float32)
        probs[:, 0] = 1
        warm.restore(probs)
    t0 = time.perf_counter()
    prepared = pre.prepare(ct)
    t1 = time.perf_counter()
    n = prepared.num_slices
    checksum = 0.0
    for a in range(0, n, batch_size):
        x = prepared.batch(np.arange(a, min(n, a + batch_size)))
        checksum += float(x[:, :, ::64, ::64].sum())
    t2 = time.perf_counter()
    k = 3
    probs = np.zeros((batch_size, k) + prepared.net_shape_yx, np.float32)
    probs[:, 0] = 1
    for a in range(0, n, batch_size):
        prepared.restore(probs[: min(n, a + batch_size) - a])
    t3 = time.perf_counter()
    h, w = prepared.net_shape_yx
    print(f"{config_name:9s} in {ct.array.shape} -> net ({n}, {cfg.in_channels}, {h}, {w}): "
          f"prepare {t1 - t0:6.2f} s, batches {t2 - t1:6.2f} s ({1000 * (t2 - t1) / n:5.1f} ms/slice), "
          f"restore {t3 - t2:6.2f} s, total {t3 - t0:6.2f} s  [checksum {checksum:.1f}]")


def positive(kind):
    """argparse type: a ``kind`` (int or float) above 0 (a batch of 0 ended in range()'s 'arg 3 must not be zero'
    traceback, a negative shape in numpy's 'negative dimensions are not allowed')."""
    from LiverTumorSegLib.argtypes import bounded_number

    return bounded_number(kind, 0, exclusive=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=positive(int), nargs=3, default=[200, 512, 512], metavar=("Z", "Y", "X"),
                        help="phantom voxels (z, y, x), each 1 or more (default 200 512 512)")
    parser.add_argument("--spacing", type=positive(float), default=0.75, help="in-plane pixel size, mm")
    parser.add_argument("--batch", type=positive(int), default=16, help="slices per network batch (default 16)")
    parser.add_argument("--configs", nargs="+", default=["default", "two_windows_histscaled"])
    parser.add_argument("--threads", type=positive(int), default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    import torch
    from LiverTumorSegLib.phantom import make_phantom
    if args.threads:
        torch.set_num_threads(args.threads)
    t = time.perf_counter()
    ct = make_phantom(tuple(args.shape), spacing_xyz=(args.spacing, args.spacing, 1.5)).ct
    print(f"phantom {tuple(args.shape)} built in {time.perf_counter() - t:.1f} s; torch threads {torch.get_num_threads()}")
    warm_ct = make_phantom((2, 32, 32), spacing_xyz=(args.spacing, args.spacing, 1.5)).ct
    for name in args.configs:
        bench(name, ct, args.batch, warm_ct)


if __name__ == "__main__":
    from LiverTumorSegLib.cli import run_script

    sys.exit(run_script(main))
