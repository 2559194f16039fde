"""Forward-pass speed of every architecture at default widths (inference mode, float32).

    .venv/bin/python benchmarks/bench_models.py [--models unet segnet ...] [--quick] [--in-channels 3]
                                                [--sizes 256 512] [--batches 1 8] [--repeats 3]
                                                [--devices cpu cuda] [--amp] [--threads N]

Prints, per model: parameters, then per device, size and batch the milliseconds per slice
(median of ``--repeats`` timed forwards after one warm-up). CUDA rows appear only when CUDA is
available. ``--quick``: 256 x 256, batch 1, one repeat, CPU only unless --devices says otherwise.
Not a test.
"""
import sys
import argparse
import statistics
import time
from typing import List
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's library, not an installed one


def time_forward(model, x, repeats: int, device: str, amp: bool) -> float:
    """Median seconds of ``model(x)`` over ``repeats`` runs after a warm-up run."""
    import torch

    def once() -> None:
        with torch.inference_mode(), torch.autocast(device_type=device, enabled=amp and device == "cuda"):
            model(x)
        if device == "cuda":
            torch.cuda.synchronize()

    once()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: List[str] = None) -> None:
    import torch

    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.models import available_models, build_model

    from LiverTumorSegLib.argtypes import bounded_number

    positive = bounded_number(int, 1)  # 0 repeats ended in 'no median for empty data', 0 batches in a ZeroDivisionError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=available_models(), choices=available_models())
    parser.add_argument("--quick", action="store_true", help="256 px, batch 1, one repeat, CPU only unless --devices")
    parser.add_argument("--in-channels", type=positive, default=3, help="input channels (dalunet: 3 slices x C0)")
    parser.add_argument("--sizes", nargs="+", type=positive, default=[256, 512], help="square slice sizes (px)")
    parser.add_argument("--batches", nargs="+", type=positive, default=[1, 8])
    parser.add_argument("--repeats", type=positive, default=3)
    parser.add_argument("--devices", nargs="+", default=None, choices=("cpu", "cuda"),
                        help="default: cpu, plus cuda when available")  # another name ended in torch's traceback
    parser.add_argument("--amp", action="store_true", help="float16 autocast on CUDA")
    parser.add_argument("--threads", type=positive, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.batches, args.repeats = [256], [1], 1
    if args.threads:
        torch.set_num_threads(args.threads)
    # --quick times the CPU only unless --devices names more (the docstring said so; it added CUDA when present)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() and not args.quick else ["cpu"])
    if "cuda" in devices and not torch.cuda.is_available():
        devices = [d for d in devices if d != "cuda"]
        if not devices:  # before, an empty table under the header
            raise InputError("--devices cuda, but this torch sees no CUDA GPU (torch.cuda.is_available() is "
                             "False); time on the CPU with --devices cpu, or install a CUDA build of torch.")
        print("note: no CUDA GPU visible to this torch; timing the CPU only.")
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, devices {devices}, "
          f"in_channels {args.in_channels}, float32{' (+AMP on CUDA)' if args.amp else ''}")
    if "cuda" in devices:
        print(f"CUDA device: {torch.cuda.get_device_name(0)}")
    print(f"{'model':<16} {'params':>9} {'device':<6} {'size':>5} {'batch':>5} {'ms/slice':>10}")
    for name in args.models:
        torch.manual_seed(0)
        model = build_model(name, args.in_channels, 3).eval()
        params = sum(p.numel() for p in model.parameters())
        for device in devices:
            model.to(device)
            for size in args.sizes:
                for batch in args.batches:
                    x = torch.rand(batch, args.in_channels, size, size, device=device)
                    try:
                        seconds = time_forward(model, x, args.repeats, device, args.amp)
                        result = f"{1000.0 * seconds / batch:10.1f}"
                    except RuntimeError as exc:  # out of memory on small machines
                        result = f"failed: {str(exc).splitlines()[0][:40]}"
                        if device == "cuda":
                            torch.cuda.empty_cache()
                    print(f"{name:<16} {params / 1e6:8.2f}M {device:<6} {size:>5} {batch:>5} {result}", flush=True)
            model.to("cpu")
        del model


if __name__ == "__main__":
    from LiverTumorSegLib.cli import run_script

    sys.exit(run_script(main))
