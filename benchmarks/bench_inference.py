"""Inference benchmarks. Two modes:

**Real CT** (``--ct FILE --model default``): the bundled (or any) model on a real CT.

    python benchmarks/bench_inference.py --ct CT.nii.gz --model default [--slices 300] [--repeats 2]
                                         [--batch-cases 5] [--batch-slices N] [--sample-dice]
                                         [--json out.json [--overwrite]]

Prints, per repeat (variants interleaved so that load from other processes hits them alike): the network
time alone in fp32 and in bf16 (every preprocessed batch of the volume through the network + softmax, ms per
slice), their label agreement (network grid), and the wall time of the whole CLI command
``livertumorseg segment CT -o out.nii.gz --report r.json`` in a fresh process (imports, model load, read,
preprocess, network with ``--precision auto``, post-processing, report, write) with its per-stage
``timings_s``; then end to end / fp32 network. On a CPU without native bf16 the bf16 network is not timed
(emulated bf16 took 8-9x the fp32 time there). ``--onnx`` also times the network on ONNX Runtime (fp32, export
left out) and the whole command with ``--backend onnx``, each against the same torch fp32 network time.
``--slices N`` makes an N-slice volume out of a shorter CT by
mirrored repetition of its real slices (0..z-1, z-1..0, ...), stated in the output (of a longer CT: its first N). ``--batch-cases K``:
K copies of the CT (unstacked, or stacked to ``--batch-slices``) in a folder, one ``segment FOLDER -o OUT``
command, against K times one CT's read + network + write plus one model load (one pair per ``--repeats``,
median ratio). ``--sample-dice``: the bundled sample's liver Dice in fp32 and with ``--precision auto``.
Every command runs with a bytecode cache of its own, filled by an untimed warm-up (:func:`with_bytecode_cache`:
a machine without bytecode for this checkout compiled the package again in each timed process).

**Phantom** (no ``--ct``): SliceInferenceEngine vs a naive slice loop, on the same (untrained) U-Net package.

naive  = one slice at a time, float64 numpy windowing, per-slice torch call, no batching, no preprocessing
         reuse (what a first script does);
engine = SliceInferenceEngine (float32 prepared volume, batches, inference_mode; optional ONNX Runtime;
         on CUDA: AMP, channels-last, pinned async copies);
monai  = MONAI sliding_window_inference with the same network: the windowed volume as a batch of slices
         (N = z, C = 1, H, W), roi = the whole slice, sw_batch_size 8 (how MONAI tutorials run 2D nets).

    python benchmarks/bench_inference.py [--shape 48 256 256] [--device cpu|cuda] [--threads N] [--onnx]
                                         [--monai] [--json out.json [--overwrite]]

Every variant runs at one CPU thread count, printed: ``--threads``, else torch's (``OMP_NUM_THREADS``, or its
default). The engine used to take all logical cores while the naive loop and MONAI ran at torch's count, so on an SMT
machine "x vs naive" compared two thread counts.

Options of one mode are refused in the other (they did nothing there): ``--shape``, ``--channels``,
``--skip-naive``, ``--monai`` and a ``--device`` other than cpu are the phantom's (``--ct`` times the CPU only);
``--model``, ``--slices``, ``--batch-cases``, ``--batch-slices`` and ``--sample-dice`` are ``--ct``'s.

Prints seconds per volume, slices per second and peak memory for each variant (best of --repeats, after one
untimed warm-up run of each): on
CUDA the peak GPU memory of that variant; on CPU the process's peak resident memory so far (ru_maxrss on Linux
and macOS, the peak working set on Windows; monotone: it can only grow from one variant to the next, so read it
as an upper bound).
"""
import json
import os
import platform
import re
import shutil
import statistics
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# the timed `segment` children get this checkout on PYTHONPATH; the in-process timing imported whatever
# LiverTumorSegLib was installed (another clone's, with a shared editable venv)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's library, not an installed one

import numpy as np  # noqa: E402
import torch  # noqa: E402

from LiverTumorSegLib.argtypes import bounded_number
from LiverTumorSegLib.inference.device import cpu_has_native_bf16, cpu_thread_count
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
        return torch.cuda.max_memory_allocated(torch.device(str(device))) / 2 ** 20  # --device cuda:1's own
    return peak_rss_mib()


def peak_rss_mib(platform_name=None):
    """This process's peak resident memory so far, MiB: ``ru_maxrss``, which Linux counts in KiB and macOS in
    bytes (read as KiB there, macOS's peak was printed 1024 times too large); on Windows, which has no
    ``resource`` module (the script failed to import), the peak working set (``GetProcessMemoryInfo``); NaN
    where it cannot be read."""
    platform_name = sys.platform if platform_name is None else platform_name
    if platform_name == "win32":
        return _windows_peak_working_set_mib()
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if platform_name == "darwin" else peak / 1024.0


def _windows_peak_working_set_mib():
    import ctypes
    from ctypes import wintypes

    class Counters(ctypes.Structure):
        _fields_ = [("cb", wintypes.DWORD), ("PageFaultCount", wintypes.DWORD)] + [
            (name, ctypes.c_size_t) for name in ("PeakWorkingSetSize", "WorkingSetSize", "QuotaPeakPagedPoolUsage",
                                                 "QuotaPagedPoolUsage", "QuotaPeakNonPagedPoolUsage",
                                                 "QuotaNonPagedPoolUsage", "PagefileUsage", "PeakPagefileUsage")]

    try:
        counters = Counters()
        counters.cb = ctypes.sizeof(Counters)
        process = ctypes.windll.kernel32.GetCurrentProcess()
        if not ctypes.windll.psapi.GetProcessMemoryInfo(process, ctypes.byref(counters), counters.cb):
            return float("nan")
        return counters.PeakWorkingSetSize / 2 ** 20
    except (AttributeError, OSError):
        return float("nan")


def timed(fn, repeats, device=None):
    """Best of ``repeats`` wall times (s) of ``fn``, each after the GPU's work ended (``device``'s, cuda:1 too)."""
    best = float("inf")
    cuda = torch.device(str(device)) if str(device).startswith("cuda") else None
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize(cuda)
        best = min(best, time.perf_counter() - start)
    return best


def measured(fn, repeats, device):
    """(best seconds, peak memory MiB) of ``fn``."""
    if str(device).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats(torch.device(str(device)))
    seconds = timed(fn, repeats, device)
    return seconds, peak_memory_mib(device)


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def stacked_volume(volume, slices):
    """``volume`` with ``slices`` axial slices made by mirrored repetition of its own (0..z-1, z-1..0, ...),
    so neighbouring slices stay neighbours (2.5D context sees real anatomy, not a jump)."""
    from LiverTumorSegLib.volume import CTVolume

    z = volume.shape_zyx[0]
    period = list(range(z)) + list(range(z - 1, -1, -1))
    index = [period[i % len(period)] for i in range(slices)]
    return CTVolume(np.ascontiguousarray(volume.array[index]), volume.geometry, source=f"{volume.source} x{slices}")


def network_seconds(engine, batches):
    """(wall seconds, CPU seconds of this process, probabilities) of every preprocessed batch through
    ``engine``'s network (+ softmax)."""
    start, cpu = time.perf_counter(), time.process_time()
    out = [engine.predict_batch_probabilities(x) for x in batches]
    return time.perf_counter() - start, time.process_time() - cpu, out


def children_cpu_seconds():
    """CPU seconds of this process's ended children: ``getrusage`` (microseconds), else ``os.times`` (Windows has
    no ``resource`` module and counts no children there: 0)."""
    try:
        import resource
    except ImportError:
        times = os.times()
        return times.children_user + times.children_system
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def with_bytecode_cache(env, folder):
    """``env`` (a dict of environment variables) for the timed commands, with a writable bytecode cache in
    ``folder`` (``PYTHONPYCACHEPREFIX``; ``PYTHONDONTWRITEBYTECODE`` taken out). An installed environment has
    bytecode for every module (pip compiles a package on install; Python writes it on a first import), but a machine
    that sets ``PYTHONDONTWRITEBYTECODE`` with this checkout on ``PYTHONPATH`` (an editable install) compiled every
    LiverTumorSeg module again in each timed process: compiling the package took 0.64 s of CPU on the 2-core AMD
    EPYC (``python -m compileall LiverTumorSegLib``, 29 Nov 2026), paid by each end-to-end run and by the batch
    command, and not by the budget's parts, measured inside one process. The first command of a benchmark, a warm-up
    left out of its numbers, fills the cache (and, as the cache holds every module, compiles torch's and MONAI's
    Python once)."""
    env = dict(env, PYTHONPYCACHEPREFIX=str(folder))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def warm_up_bytecode_cache(args, ct_path, tmp, env, threads):
    """Fill the bytecode cache of ``env`` (:func:`with_bytecode_cache`) before anything is timed: every module of
    the package (a batch run imports some that one CT does not), then one ``segment`` of ``ct_path`` per backend
    timed (torch's, MONAI's and ONNX Runtime's Python). Prints the warm-up's wall seconds, not counted."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(__file__).resolve().parents[1] /
                                                                   "LiverTumorSegLib")],
                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env, check=True)
    for backend in ("torch", "onnx") if args.onnx else ("torch",):
        wall, _, _ = _segment_once(args, ct_path, tmp, f"warm_up_{backend}", env, threads, backend)
        print(f"warm-up ({backend}): segment end to end {wall:.1f} s (fills the bytecode cache; not counted)")


def run_cli(argv, env=None):
    """(wall seconds, stdout+stderr text, exit code, CPU seconds) of ``python -m LiverTumorSegLib ARGV`` in a
    fresh process. On a shared machine CPU seconds move less with other processes' load than wall seconds."""
    start, cpu = time.perf_counter(), children_cpu_seconds()
    done = subprocess.run([sys.executable, "-m", "LiverTumorSegLib"] + [str(a) for a in argv],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    return time.perf_counter() - start, done.stdout, done.returncode, children_cpu_seconds() - cpu


def label_agreement(probs_a, probs_b):
    """(differing voxel fraction, liver Dice, tumor Dice) between the argmax labels of two probability lists."""
    from LiverTumorSegLib.inference.engine import argmax_channels

    a = np.concatenate([argmax_channels(p) for p in probs_a])
    b = np.concatenate([argmax_channels(p) for p in probs_b])

    def dice(x, y):
        total = int(x.sum()) + int(y.sum())
        return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(x & y)) / total

    return float(np.count_nonzero(a != b)) / a.size, dice(a >= 1, b >= 1), dice(a == 2, b == 2)


def real_ct_benchmark(args):
    from LiverTumorSegLib.io import read_volume
    from LiverTumorSegLib.orientation import canonicalize
    from LiverTumorSegLib.preprocessing import SlicePreprocessor

    threads = args.threads or cpu_thread_count()  # os.sched_getaffinity alone: macOS and Windows have none
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))  # the bytecode cache: below
    original = read_volume(args.ct)
    volume = stacked_volume(original, args.slices) if args.slices else original
    if not args.slices:
        how = ""
    elif args.slices <= original.shape_zyx[0]:  # it said "stacked ... by mirrored repetition" of a cut
        how = f", its first {args.slices} of {original.shape_zyx[0]} slices"
    else:
        how = (f", stacked to {volume.shape_zyx[0]} slices by mirrored repetition of its {original.shape_zyx[0]} "
               f"real slices")
    note = f"{args.ct} {original.shape_zyx} (z, y, x){how}"
    print(f"CT: {note}\nCPU: {cpu_name()}, {threads} threads (shared machine: other processes may be running)")
    package = load_model_package(args.model)
    fp32 = SliceInferenceEngine(package, device="cpu", threads=threads, precision="fp32")
    bf16 = None
    if cpu_has_native_bf16():
        bf16 = SliceInferenceEngine(package, device="cpu", threads=threads, precision="bf16")
    else:
        print("bf16 network not timed: this CPU has no native bf16 (emulated bf16 is 8-9x slower than fp32 and "
              "--precision auto does not use it)")
    onnx = None
    if args.onnx:
        onnx = SliceInferenceEngine(package, device="cpu", threads=threads, precision="fp32", backend="onnx")
    canonical, _ = canonicalize(volume)
    prepared = SlicePreprocessor(fp32.preprocessing).prepare(canonical)
    n = prepared.num_slices
    size = 8
    batches = [np.ascontiguousarray(prepared.batch(list(range(s, min(n, s + size)))), dtype=np.float32)
               for s in range(0, n, size)]
    print(f"network input: {n} slices of {batches[0].shape[1:]} (C, H, W), batch {size}")
    for engine in (fp32, bf16, onnx):  # warm-up (oneDNN primitive creation; the ONNX export and session)
        if engine is not None:
            engine.predict_batch_probabilities(batches[0])
    tmp = Path(tempfile.mkdtemp(prefix="bench_inference_"))
    env = with_bytecode_cache(env, tmp / "pycache")
    try:  # the stacked CT, outputs and batch copies (hundreds of MB for a 300-slice CT) are not left behind
        return _measure_real_ct(args, volume, original, note, threads, env, (fp32, bf16, onnx), batches, n, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _segment_once(args, ct_path, tmp, name, env, threads, backend):
    """(wall s, CPU s, JSON report) of one ``segment`` command on ``ct_path`` in a fresh process."""
    report = tmp / f"report_{name}.json"
    wall, text, code, cpu = run_cli(["segment", ct_path, "-o", tmp / f"seg_{name}.nii.gz", "--report", report,
                                     "--model", args.model, "--device", "cpu", "--no-progress", "--overwrite",
                                     "--threads", str(threads), "--backend", backend], env)  # threads as the rows
    if code != 0:
        raise SystemExit(f"segment failed:\n{text}")
    return wall, cpu, json.loads(report.read_text())


def _stages(timings):
    return ", ".join(f"{k} {v:.2f}" for k, v in (timings or {}).items())


def _measure_real_ct(args, volume, original, note, threads, env, engines, batches, n, tmp):
    """The timed part of :func:`real_ct_benchmark`, in the temporary folder ``tmp``. ``engines``: the fp32, bf16
    (None: not timed) and ONNX Runtime (None: not timed) engines."""
    from LiverTumorSegLib.io import write_volume

    fp32, bf16, onnx = engines

    ct_path = write_volume(tmp / "ct.nii.gz", volume)
    warm_up_bytecode_cache(args, ct_path, tmp, env, threads)
    rows = []
    for repeat in range(args.repeats):
        t32, c32, p32 = network_seconds(fp32, batches)
        row = {"repeat": repeat, "slices": n, "fp32_network_s": t32, "fp32_ms_per_slice": 1000 * t32 / n,
               "fp32_network_cpu_s": c32}
        line = f"[{repeat}] network fp32 {t32:6.1f} s ({row['fp32_ms_per_slice']:.0f} ms/slice)"
        for name, engine in (("bf16", bf16), ("onnx", onnx)):
            if engine is None:
                continue
            seconds, cpu_s, probs = network_seconds(engine, batches)
            differing, liver_dice, tumor_dice = label_agreement(p32, probs)
            del probs
            row.update({f"{name}_network_s": seconds, f"{name}_ms_per_slice": 1000 * seconds / n,
                        f"{name}_network_cpu_s": cpu_s, f"{name}_vs_fp32_differing_voxel_fraction": differing,
                        f"{name}_vs_fp32_liver_dice": liver_dice, f"{name}_vs_fp32_tumor_dice": tumor_dice})
            line += (f", {name} {seconds:6.1f} s ({1000 * seconds / n:.0f} ms/slice, {t32 / seconds:.2f}x; labels vs "
                     f"fp32: {100 * differing:.4f} % voxels differ, liver Dice {liver_dice:.4f}, tumor Dice "
                     f"{tumor_dice:.4f})")
        del p32
        print(line)
        wall, cpu, data = _segment_once(args, ct_path, tmp, repeat, env, threads, "torch")
        row.update({"end_to_end_cli_s": wall, "end_to_end_over_fp32_network": wall / t32,
                    "precision": data.get("precision"), "end_to_end_cli_cpu_s": cpu,
                    "end_to_end_over_fp32_network_cpu": cpu / c32, "timings_s": data.get("timings_s")})
        print(f"    end to end (CLI, fresh process, --precision auto -> {(row['precision'] or {}).get('used')}): "
              f"{wall:.1f} s = {wall / t32:.2f}x the fp32 network time\n    CPU seconds: network fp32 {c32:.1f}, "
              f"end to end {cpu:.1f} = {cpu / c32:.2f}x the fp32 network\n    stages (s): {_stages(row['timings_s'])}")
        if onnx is not None:
            wall, cpu, data = _segment_once(args, ct_path, tmp, f"{repeat}_onnx", env, threads, "onnx")
            row.update({"onnx_end_to_end_cli_s": wall, "onnx_end_to_end_over_fp32_network": wall / t32,
                        "onnx_end_to_end_cli_cpu_s": cpu, "onnx_timings_s": data.get("timings_s")})
            print(f"    end to end with --backend onnx ({data.get('device')}): {wall:.1f} s = {wall / t32:.2f}x the "
                  f"torch fp32 network time\n    stages (s): {_stages(row['onnx_timings_s'])}")
        rows.append(row)
    result = {"ct": note, "cpu": cpu_name(), "threads": threads, "model": args.model, "rows": rows}
    if args.batch_cases:
        result["batch"] = batch_benchmark(args, stacked_volume(original, args.batch_slices) if args.batch_slices
                                          else original, tmp, env, threads)
    if args.sample_dice:
        result["sample_dice"] = {}
        for precision in ("fp32", "auto"):
            _, text, code, _ = run_cli(["segment", "--sample", "-o", tmp / f"sample_{precision}.nii.gz", "--no-progress",
                                     "--precision", precision, "--overwrite", "--threads", str(threads)], env)
            found = re.search(r"liver Dice vs bundled reference: ([0-9.]+)", text)
            result["sample_dice"][precision] = float(found.group(1)) if found else None
            print(f"sample liver Dice, --precision {precision}: {result['sample_dice'][precision]}")
    return result


def batch_benchmark(args, volume, tmp, env, threads):
    """K copies of ``volume`` in one folder: one batch command vs K x (read + network + write) + model load of a
    single-CT run that loads the model before it reads (segment_sequential.py: each part alone). The bf16
    check's fp32 batch (``--precision auto`` on a bf16 CPU) is paid once per process, so it is taken out of the
    per-case network and counted once, like the model load. Repeated ``--repeats`` times, each pair back to
    back (single run, then the batch), because a shared machine's speed drifts between minutes; the median
    ratio is the result."""
    from LiverTumorSegLib.io import write_volume

    folder = tmp / "batch_in"
    folder.mkdir()
    for k in range(args.batch_cases):
        write_volume(folder / f"case_{k}.nii.gz", volume)
    pairs = []
    for repeat in range(args.repeats):
        report = tmp / f"single_{repeat}.json"  # the budget's parts, each alone (no load/read overlap)
        done = subprocess.run([sys.executable, str(Path(__file__).with_name("segment_sequential.py")),
                               folder / "case_0.nii.gz", tmp / f"single_{repeat}.nii.gz", report, "--model",
                               args.model, "--device", "cpu", "--threads", str(threads), "--overwrite"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=env)
        if done.returncode != 0:
            raise SystemExit(f"segment failed:\n{done.stdout}")
        single = json.loads(report.read_text())
        t = single["timings_s"]
        # the bf16 check runs one fp32 batch once per process (a batch run reuses its verdict), like the model
        # load: the budget counts it once, not once per case
        check = (single.get("precision") or {}).get("check") or {}
        once = float(check.get("fp32_seconds", 0.0)) if check.get("this_volume") else 0.0
        network = t["network"] - once
        budget = args.batch_cases * (t["read"] + network + t["write"]) + t["model_load"] + once
        wall, text, code, _ = run_cli(["segment", folder, "-o", tmp / f"batch_out_{repeat}", "--model", args.model,
                                       "--device", "cpu", "--no-progress", "--threads", str(threads)], env)
        print(f"batch of {args.batch_cases} x {volume.shape_zyx} [{repeat}]: one command {wall:.1f} s (wall, "
              f"process start included); {args.batch_cases} x (read {t['read']:.2f} + network {network:.2f} + "
              f"write {t['write']:.2f}) + model load {t['model_load']:.2f} + bf16 check {once:.2f} = {budget:.1f} s"
              f" -> ratio {wall / budget:.2f} (exit {code})")
        pairs.append({"batch_wall_s": wall, "single_timings_s": t, "bf16_check_fp32_s": once, "budget_s": budget,
                      "ratio": wall / budget, "exit_code": code})
    ratios = sorted(p["ratio"] for p in pairs)
    median = statistics.median(ratios)
    print(f"batch ratio over {len(pairs)} pair(s): median {median:.2f}, range {ratios[0]:.2f}-{ratios[-1]:.2f}")
    return {"cases": args.batch_cases, "pairs": pairs, "median_ratio": median}


positive_int = bounded_number(int, 1)
"""argparse type: a whole number, 1 or more (--repeats 0 printed 'inf s' and '0.0 slices/s', a negative --shape or
--slices ended in a traceback)."""

def check_json_output(path, overwrite):
    """Before any timing: ``--json`` ends in .json and can be written (an existing file only with
    ``--overwrite``). It was written after the whole benchmark, over any file, without a word."""
    if not path:
        return
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.fileutil import check_can_write

    if Path(path).suffix.lower() != ".json":
        raise InputError(f"--json '{path}' must end in .json.")
    check_can_write(path, overwrite)


def write_json(path, document, overwrite):
    from LiverTumorSegLib.fileutil import atomic_output

    with atomic_output(path, overwrite=overwrite) as tmp:
        Path(tmp).write_text(json.dumps(document, indent=2), encoding="utf-8")
    print(f"wrote {path}")


CT_ONLY = ("--model", "--slices", "--batch-cases", "--batch-slices", "--sample-dice")
PHANTOM_ONLY = ("--shape", "--channels", "--skip-naive", "--monai")


def check_mode_options(parser, args):
    """Refuse an option that does nothing in the chosen mode (argparse's error, exit 2). ``--shape ... --sample-dice
    --batch-cases 3`` ran the phantom alone, and ``--ct X --device cuda`` timed the CPU (the real-CT rows, bf16
    check and CPU seconds are the CPU's), each without a word."""
    given = {"--model": args.model is not None, "--slices": args.slices is not None,
             "--batch-cases": bool(args.batch_cases), "--batch-slices": args.batch_slices is not None,
             "--sample-dice": args.sample_dice, "--shape": args.shape is not None,
             "--channels": args.channels is not None, "--skip-naive": args.skip_naive, "--monai": args.monai}
    if args.ct:
        unused = [name for name in PHANTOM_ONLY if given[name]]
        if unused:
            verb = "applies" if len(unused) == 1 else "apply"
            parser.error(f"{', '.join(unused)} only {verb} to the phantom benchmark (without --ct); --ct times the "
                         f"given model on the CT.")
        if args.device not in (None, "cpu"):
            parser.error(f"--ct times the CPU only (the network in fp32 and bf16 and `segment --device cpu`); "
                         f"--device {args.device} applies to the phantom benchmark (without --ct).")
        if args.model is None:
            args.model = "default"
    else:
        unused = [name for name in CT_ONLY if given[name]]
        if unused:
            verb = "applies" if len(unused) == 1 else "apply"
            parser.error(f"{', '.join(unused)} only {verb} to the real-CT benchmark (--ct FILE); without --ct the "
                         f"phantom is timed.")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ct", default=None, help="real CT file: benchmark the real model on it (see above)")
    p.add_argument("--model", default=None, help="model for --ct (name or .safetensors; default: default)")
    p.add_argument("--slices", type=positive_int, default=None,
                   help="--ct: this many slices (mirrored repetition of the CT's own; fewer: its first ones)")
    p.add_argument("--batch-cases", type=positive_int, default=0, help="--ct: also time a batch of this many copies")
    p.add_argument("--batch-slices", type=positive_int, default=None,
                   help="--batch-cases: stack each copy to this many slices (default: the CT as it is)")
    p.add_argument("--sample-dice", action="store_true", help="--ct: also print the sample's liver Dice")
    p.add_argument("--shape", type=positive_int, nargs=3, default=None,
                   help="phantom (z, y, x) voxels (default 48 256 256)")
    p.add_argument("--device", default=None, help="phantom: cpu (default) or cuda; --ct times the CPU only")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads of every variant (default: torch's count; --ct: all cores)")
    p.add_argument("--channels", type=positive_int, nargs="+", default=None,
                   help="phantom U-Net channels (default 16 32 64 128)")
    p.add_argument("--onnx", action="store_true", help="also time the ONNX Runtime backend")
    p.add_argument("--repeats", type=positive_int, default=2)
    p.add_argument("--skip-naive", action="store_true")
    p.add_argument("--monai", action="store_true", help="also time MONAI sliding_window_inference")
    p.add_argument("--json", default=None, help="also write the results to this JSON file (checked before the run)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    args = p.parse_args(argv)
    if args.batch_slices and not args.batch_cases:
        p.error("--batch-slices needs --batch-cases (it sets the slices of each batch copy)")
    check_mode_options(p, args)
    check_json_output(args.json, args.overwrite)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.ct:
        result = real_ct_benchmark(args)
        if args.json:
            write_json(args.json, result, args.overwrite)
        return
    args.shape = tuple(args.shape or (48, 256, 256))
    args.channels = tuple(args.channels or (16, 32, 64, 128))
    args.device = args.device or "cpu"
    # one thread count for every variant: the engine took cpu_thread_count() (all logical cores) inside its own
    # calls while the naive loop and MONAI ran at torch's count (OMP_NUM_THREADS=1: 1 against 2 on 2 cores)
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    phantom = make_phantom(tuple(args.shape), (1.0, 1.0, 3.0))
    cfg = PreprocessingConfig(channels=[{"kind": "window", "level": 40.0, "width": 400.0}], context_slices=0,
                              target_spacing_mm=None, size_multiple=16, crop_to_body=False)
    channels = tuple(args.channels)
    model = build_model("unet", in_channels=1, num_classes=3, channels=channels, strides=(2,) * (len(channels) - 1))
    with tempfile.TemporaryDirectory() as tmp:
        package = load_model_package(save_model_package(Path(tmp) / "bench.safetensors", model, cfg))
    n = args.shape[0]
    print(f"volume {tuple(args.shape)} (z, y, x), U-Net channels {channels}, {threads} CPU thread"
          f"{'' if threads == 1 else 's'} in every variant (torch threads {torch.get_num_threads()})")
    results = {}
    if not args.skip_naive:  # warmed up like the others: its first call's costs made the engine look faster
        naive_segment(package, phantom.ct)
        results["naive loop (cpu)"] = measured(lambda: naive_segment(package, phantom.ct), args.repeats, "cpu")
    engine = SliceInferenceEngine(package, device=args.device, threads=threads)
    engine.predict(phantom.ct)  # warm-up (cudnn autotune, allocator)
    results[f"engine torch ({engine.device_description}, batch {engine.batch_size})"] = measured(
        lambda: engine.predict(phantom.ct), args.repeats, engine.device)
    if args.onnx:
        onnx_engine = SliceInferenceEngine(package, device="cpu", backend="onnx", threads=threads)
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
        write_json(args.json, {"shape_zyx": list(args.shape), "unet_channels": list(channels),
                               "torch_threads": threads, "results": rows}, args.overwrite)


if __name__ == "__main__":
    from LiverTumorSegLib.cli import run_script

    sys.exit(run_script(main))
