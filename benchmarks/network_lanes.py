"""Does the network leave CPU time unused? One lane of ``threads`` threads against ``threads`` lanes of one thread.

A batch run on the CPU does its per-case work (reading, preprocessing, restoring, post-processing, writing) on
helper threads beside the network, which gives each helper one of its threads while it works
(``inference.core_share``). That is free only if the network does not use its threads fully: then two CTs at
once, each on one thread, would also get through more slices per second than one CT on two threads. This times
the package's network on random batches (``(batch, C, H, W)``: the package's channel count, ``--height`` x
``--width`` pixels, batch 8 by default) both ways, in this process, under the precision ``segment`` would use on this
CPU (bf16 autocast where the CPU has it, else fp32), and prints seconds per batch for each, repeated
``--repeats`` times in alternation (a shared machine's speed drifts).

    python benchmarks/network_lanes.py [--model default] [--threads 2] [--batches 10] [--repeats 2]
                                       [--height 192] [--width 352] [--precision auto|fp32|bf16]
"""
import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _forward_batches(forward, x, batches, threads):
    """Run ``forward`` (the engine's CPU path: network input ``(n, C, H, W)`` float32 -> probabilities, in the
    precision ``segment`` uses) ``batches`` times on ``x`` with ``threads`` intra-op threads (set for the calling
    thread)."""
    import torch

    torch.set_num_threads(threads)
    for _ in range(batches):
        forward(x)


def time_lanes(forward, inputs, batches, threads):
    """Seconds per batch: ``(one lane of threads threads, threads lanes of one thread)``; each way runs
    ``batches * threads`` batches in all. ``inputs``: one input array per lane."""
    start = time.perf_counter()
    _forward_batches(forward, inputs[0], batches * threads, threads)
    one_lane = (time.perf_counter() - start) / (batches * threads)
    workers = [threading.Thread(target=_forward_batches, args=(forward, inputs[i], batches, 1))
               for i in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return one_lane, (time.perf_counter() - start) / (batches * threads)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default", help="model package path or installed name")
    p.add_argument("--threads", type=int, default=2, help="threads of the one lane, and number of one-thread lanes")
    p.add_argument("--batches", type=int, default=10, help="batches per lane per timing")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batch", type=int, default=8, help="slices per batch")
    p.add_argument("--height", type=int, default=192, help="slice height in pixels (the real CT of bench_inference.py "
                                                           "--ct: 192 x 352 on the network grid)")
    p.add_argument("--width", type=int, default=352, help="slice width in pixels")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    args = p.parse_args(argv)
    from LiverTumorSegLib.errors import InputError

    if min(args.threads, args.batches, args.repeats, args.batch, args.height, args.width) < 1:
        raise InputError("--threads, --batches, --repeats, --batch, --height and --width must be at least 1.")
    import numpy as np

    from LiverTumorSegLib.inference import SegmentationOptions, Segmenter

    rng = np.random.default_rng(0)
    engine = Segmenter(SegmentationOptions(model=args.model, device="cpu", precision=args.precision)).load().engine
    channels = int(engine.package.architecture["in_channels"])
    inputs = [rng.random((args.batch, channels, args.height, args.width), dtype=np.float32)
              for _ in range(args.threads)]
    forward = engine._torch_probabilities
    time_lanes(forward, inputs, 1, args.threads)  # first-call costs out of the timings, both ways
    print(f"network of '{args.model}', {'bf16 autocast' if engine.cpu_dtype is not None else 'fp32'}, batches of "
          f"{args.batch} x {channels} x {args.height} x {args.width}, {args.batches * args.threads} batches per way")
    for repeat in range(args.repeats):
        one_lane, lanes = time_lanes(forward, inputs, args.batches, args.threads)
        print(f"[{repeat}] one lane of {args.threads} threads {one_lane:.3f} s/batch, {args.threads} lanes of 1 "
              f"thread {lanes:.3f} s/batch (lanes / one lane = {lanes / one_lane:.2f})")
    return 0


if __name__ == "__main__":
    from LiverTumorSegLib.cli import run_script

    sys.exit(run_script(main))
