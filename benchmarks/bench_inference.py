"""Benchmark: SliceInferenceEngine vs a naive slice loop, on the same (untrained) U-Net package.

naive  = one slice at a time, float64 numpy windowing, per-slice torch call, no batching, no preprocessing
         reuse (what a first script does);
engine = SliceInferenceEngine (float32 prepared volume, batches, inference_mode; optional ONNX Runtime;
         on CUDA: AMP, channels-last, pinned async copies).

    python benchmarks/bench_inference.py [--shape 64 256 256] [--device cpu|cuda] [--threads N] [--onnx]

Prints seconds per volume and slices per second for each variant (best of --repeats).
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from LiverTumorSegLib.inference.engine import SliceInferenceEngine
from LiverTumorSegLib.models import build_model
from LiverTumorSegLib.orientation import canonicalize
from LiverTumorSegLib.package import load_model_package, save_model_package
from LiverTumorSegLib.phantom import make_phantom
from LiverTumorSegLib.preprocessing import PreprocessingConfig


def naive_segment(package, volume):
    """One slice at a time, float64 preprocessing, no batching (the baseline)."""
    canonical, reo = canonicalize(volume)
    spec = package.preprocessing.channels[0]
    level, width = float(spec["level"]), float(spec["width"])
    model = package.model.eval()
    labels = np.zeros(canonical.shape_zyx, dtype=np.uint8)
    for z in range(canonical.shape_zyx[0]):
        hu = canonical.array[z].astype(np.float64)
        x = np.clip((hu - (level - width / 2)) / width, 0, 1)
        with torch.no_grad():
            logits = model(torch.from_numpy(x[None, None]).float())
        probs = torch.softmax(logits.double(), 1).numpy()
        labels[z] = probs[0].argmax(0)
    return reo.from_canonical(labels)


def timed(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", type=int, nargs=3, default=(48, 256, 256), help="phantom (z, y, x) voxels")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--channels", type=int, nargs="+", default=(16, 32, 64, 128))
    p.add_argument("--onnx", action="store_true", help="also time the ONNX Runtime backend")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--skip-naive", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    phantom = make_phantom(tuple(args.shape), (1.0, 1.0, 3.0))
    cfg = PreprocessingConfig(channels=[{"kind": "window", "level": 40.0, "width": 400.0}], context_slices=0,
                              target_spacing_mm=None, size_multiple=16, crop_to_body=False)
    channels = tuple(args.channels)
    model = build_model("unet", in_channels=1, num_classes=3, channels=channels, strides=(2,) * (len(channels) - 1))
    with tempfile.TemporaryDirectory() as tmp:
        package = load_model_package(save_model_package(Path(tmp) / "bench.safetensors", model, cfg))
    n = args.shape[0]
    print(f"volume {tuple(args.shape)} (z, y, x), U-Net channels {channels}, torch threads {torch.get_num_threads()}")
    results = {}
    if not args.skip_naive:
        results["naive loop (cpu)"] = timed(lambda: naive_segment(package, phantom.ct), args.repeats)
    engine = SliceInferenceEngine(package, device=args.device, threads=args.threads)
    engine.predict(phantom.ct)  # warm-up (cudnn autotune, allocator)
    results[f"engine torch ({engine.device_description}, batch {engine.batch_size})"] = timed(
        lambda: engine.predict(phantom.ct), args.repeats)
    if args.onnx:
        onnx_engine = SliceInferenceEngine(package, device="cpu", backend="onnx", threads=args.threads)
        onnx_engine.predict(phantom.ct)
        results[f"engine onnx (batch {onnx_engine.batch_size})"] = timed(lambda: onnx_engine.predict(phantom.ct),
                                                                          args.repeats)
    base = results.get("naive loop (cpu)")
    for name, seconds in results.items():
        speed = f"  {base / seconds:4.1f}x vs naive" if base else ""
        print(f"{name:<60s} {seconds:7.2f} s  {n / seconds:7.1f} slices/s{speed}")


if __name__ == "__main__":
    main()
