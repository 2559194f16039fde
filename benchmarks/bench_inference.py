"""Benchmark: SliceInferenceEngine vs a naive slice loop, on the same (untrained) U-Net package.

naive  = one slice at a time, float64 numpy windowing, per-slice torch call, no batching, no preprocessing
         reuse (what a first script does);
engine = SliceInferenceEngine (float32 prepared volume, batches, inference_mode; optional ONNX Runtime;
         on CUDA: AMP, channels-last, pinned async copies);
monai  = MONAI sliding_window_inference with the same network: the windowed volume as a batch of slices
         (N = z, C = 1, H, W), roi = the whole slice, sw_batch_size 8 (how MONAI tutorials run 2D nets).

    python benchmarks/bench_inference.py [--shape 64 256 256] [--device cpu|cuda] [--threads N] [--onnx]
                                         [--monai] [--json out.json]

Prints seconds per volume, slices per second and peak memory for each variant (best of --repeats): on
CUDA the peak GPU memory of that variant; on CPU the process's peak resident memory so far (ru_maxrss,
monotone: it can only grow from one variant to the next, so read it as an upper bound).
"""
import json
import resource
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


def monai_sliding_window_segment(package, volume, device):
    """MONAI sliding_window_inference over the whole volume as a batch of 2D slices, float32 windowing."""
    from monai.inferers import sliding_window_inference

    canonical, reo = canonicalize(volume)
    spec = package.preprocessing.channels[0]
    level, width = float(spec["level"]), float(spec["width"])
    x = np.clip((canonical.array.astype(np.float32) - (level - width / 2)) / width, 0, 1)[:, None]
    model = package.model.eval().to(device)
    with torch.inference_mode():
        logits = sliding_window_inference(torch.from_numpy(x).to(device), roi_size=x.shape[2:], sw_batch_size=8,
                                          predictor=model)
        labels = torch.softmax(logits, 1).argmax(1).to(torch.uint8).cpu().numpy()
    return reo.from_canonical(labels)


def peak_memory_mib(device):
    """Peak GPU memory of the last variant (CUDA) or the process's peak RSS so far (CPU), MiB."""
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def measured(fn, repeats, device):
    """(best seconds, peak memory MiB) of ``fn``."""
    if str(device).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    seconds = timed(fn, repeats)
    return seconds, peak_memory_mib(device)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", type=int, nargs=3, default=(48, 256, 256), help="phantom (z, y, x) voxels")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--channels", type=int, nargs="+", default=(16, 32, 64, 128))
    p.add_argument("--onnx", action="store_true", help="also time the ONNX Runtime backend")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--skip-naive", action="store_true")
    p.add_argument("--monai", action="store_true", help="also time MONAI sliding_window_inference")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
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
        results["naive loop (cpu)"] = measured(lambda: naive_segment(package, phantom.ct), args.repeats, "cpu")
    engine = SliceInferenceEngine(package, device=args.device, threads=args.threads)
    engine.predict(phantom.ct)  # warm-up (cudnn autotune, allocator)
    results[f"engine torch ({engine.device_description}, batch {engine.batch_size})"] = measured(
        lambda: engine.predict(phantom.ct), args.repeats, engine.device)
    if args.onnx:
        onnx_engine = SliceInferenceEngine(package, device="cpu", backend="onnx", threads=args.threads)
        onnx_engine.predict(phantom.ct)
        results[f"engine onnx (batch {onnx_engine.batch_size})"] = measured(
            lambda: onnx_engine.predict(phantom.ct), args.repeats, "cpu")
    if args.monai:
        device = engine.device
        monai_sliding_window_segment(package, phantom.ct, device)  # warm-up
        results[f"monai sliding_window_inference ({device})"] = measured(
            lambda: monai_sliding_window_segment(package, phantom.ct, device), args.repeats, device)
    base = results.get("naive loop (cpu)", (None, None))[0]
    rows = []
    for name, (seconds, peak) in results.items():
        speed = f"  {base / seconds:4.1f}x vs naive" if base else ""
        print(f"{name:<60s} {seconds:7.2f} s  {n / seconds:7.1f} slices/s  peak {peak:7.0f} MiB{speed}")
        rows.append({"variant": name, "seconds_per_volume": seconds, "slices_per_second": n / seconds,
                     "peak_memory_mib": peak, "speedup_vs_naive": (base / seconds) if base else None})
    if args.json:
        Path(args.json).write_text(json.dumps({"shape_zyx": list(args.shape), "unet_channels": list(channels),
                                               "torch_threads": torch.get_num_threads(), "results": rows},
                                              indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
