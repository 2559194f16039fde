"""Where a batch run's time goes: one ``segment FOLDER`` run in this process, with a timeline of every case.

The model is loaded (and its bf16 check run on the first case) before the clock starts, so the timeline shows
the steady state of a batch: for each case when its read (reader thread), network (``predict``: preprocess,
network, restore) and finishing (post-processing, report, write; finishing thread) started and ended, in
seconds from the start, and the engine's stage times. It ends with the wall and CPU seconds of the batch and
the CPU seconds per case. On a machine whose cores the network already fills (2 CPU cores), the helpers'
work is paid in network time; on a GPU it runs beside it.

    python benchmarks/batch_timeline.py CT_FOLDER [--model default] [--device cpu] [--json timeline.json [--overwrite]]
"""
import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _timed(events, kind, function, case_id_of):
    """``function`` wrapped to append ``(kind, case id, start s, end s, extra)`` to ``events``."""
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        events.append({"kind": kind, "case": case_id_of(args, result), "start": start, "end": time.perf_counter(),
                       "stages": dict(getattr(result, "timings", None) or {})})
        return result
    return wrapper


def batch_timeline(folder, model="default", device="cpu", output=None):
    """Run the batch on ``folder`` (one warm-up case first) and return ``{"events", "wall_s", "cpu_s",
    "cases"}`` with event times in seconds from the batch's start."""
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.inference import SegmentationOptions, Segmenter
    from LiverTumorSegLib.inference import batch as batch_module

    if not Path(folder).is_dir():
        raise InputError(f"'{folder}' is not a folder of CT files; give the folder `segment FOLDER` would take.")
    segmenter = Segmenter(SegmentationOptions(model=model, device=device)).load()
    out = Path(output) if output else Path(tempfile.mkdtemp(prefix="batch_timeline_"))
    events = []
    originals = (batch_module._read_case, batch_module._finish_and_write_case, segmenter.predict)
    try:  # the temporary outputs go also when finding the cases fails
        cases = batch_module.find_cases(folder, out)
        batch_module.segment_batch(cases[:1], segmenter, overwrite=True)  # warm: bf16 check, first-call costs
        batch_module._read_case = _timed(events, "read", originals[0], lambda a, r: a[0].case_id)
        batch_module._finish_and_write_case = _timed(events, "finish", originals[1], lambda a, r: a[0].case_id)
        predicted = iter(case.case_id for case in cases)
        segmenter.predict = _timed(events, "network", originals[2], lambda a, r: next(predicted))
        start, cpu = time.perf_counter(), time.process_time()
        statuses = batch_module.segment_batch(cases, segmenter, overwrite=True)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        batch_module._read_case, batch_module._finish_and_write_case, segmenter.predict = originals
        if not output:
            shutil.rmtree(out, ignore_errors=True)
    for event in events:
        event["start"], event["end"] = event["start"] - start, event["end"] - start
    failed = [s.case_id for s in statuses if s.status != "done"]
    if failed:
        raise SystemExit(f"cases failed: {', '.join(failed)}")
    events.sort(key=lambda e: (e["start"], e["kind"]))
    return {"events": events, "wall_s": wall, "cpu_s": cpu, "cases": len(cases)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", help="folder of CT files (as for `segment FOLDER`)")
    p.add_argument("--model", default="default")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None, help="also write the timeline here (checked before the run)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    args = p.parse_args(argv)
    if args.json:  # it was written after the batch, over any file, without a word
        from LiverTumorSegLib.errors import InputError
        from LiverTumorSegLib.fileutil import check_can_write

        if Path(args.json).suffix.lower() != ".json":
            raise InputError(f"--json '{args.json}' must end in .json.")
        check_can_write(args.json, args.overwrite)
    result = batch_timeline(args.folder, args.model, args.device)
    for e in result["events"]:
        stages = ", ".join(f"{k} {v:.2f}" for k, v in e["stages"].items())
        print(f"{e['kind']:8s} {e['case']:24s} {e['start']:7.2f} -> {e['end']:7.2f} s ({e['end'] - e['start']:.2f})"
              + (f"  [{stages}]" if stages else ""))
    n = result["cases"]
    print(f"{n} cases: wall {result['wall_s']:.2f} s ({result['wall_s'] / n:.2f} per case), CPU "
          f"{result['cpu_s']:.2f} s ({result['cpu_s'] / n:.2f} per case, {result['cpu_s'] / result['wall_s']:.2f} "
          f"cores busy on average)")
    if args.json:
        from LiverTumorSegLib.fileutil import atomic_output

        with atomic_output(args.json, overwrite=args.overwrite) as tmp:
            Path(tmp).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    from LiverTumorSegLib.cli import run_script

    sys.exit(run_script(main))
