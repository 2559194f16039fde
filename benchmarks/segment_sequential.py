"""Segment one CT with the model loaded first, then read: the stage times without the overlap.

``segment`` loads the model in a thread while it reads the CT (Segmenter.segment_file), so in its report
``read`` and ``model_load`` each include waiting for the other. Budgets built from them (issue 13:
"K x (read + network + write) + one model load"; "end to end vs read + write") need each measured alone.
This runs the same code as the ``segment`` command (MONAI imported with the same packages hidden), loads the
model before it reads, and writes the report with ``timings_s.model_load`` = that load's seconds.

    python benchmarks/segment_sequential.py CT OUT.nii.gz REPORT.json [--model default] [--device cpu]
                                            [--threads N] [--overwrite]

REPORT must be .json (the script reads it back); an existing OUT or REPORT is replaced only with --overwrite.
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("ct")
    p.add_argument("output")
    p.add_argument("report")
    p.add_argument("--model", default="default")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the network (as segment --threads)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT or REPORT")
    args = p.parse_args(argv)
    from LiverTumorSegLib.errors import InputError

    if Path(args.report).suffix.lower() != ".json":
        raise InputError(f"REPORT '{args.report}' must end in .json (the script reads its timings back).")
    from LiverTumorSegLib.inference import SegmentationOptions, Segmenter
    from LiverTumorSegLib.models.monai_import import hide_optional_packages_while_importing_monai

    hide_optional_packages_while_importing_monai()  # as the segment command does
    start = time.perf_counter()
    segmenter = Segmenter(SegmentationOptions(model=args.model, device=args.device, threads=args.threads)).load()
    load_seconds = time.perf_counter() - start
    segmenter.segment_file(args.ct, args.output, report_path=args.report, overwrite=args.overwrite)
    report = json.loads(Path(args.report).read_text())
    report["timings_s"]["model_load"] = load_seconds
    Path(args.report).write_text(json.dumps(report, indent=1))
    t = report["timings_s"]
    print(f"model load {load_seconds:.2f} s, then read {t['read']:.2f} s, network {t['network']:.2f} s, "
          f"write {t['write']:.2f} s, total after the load {t['total']:.2f} s")
    return 0


if __name__ == "__main__":
    from LiverTumorSegLib.cli import run_script

    sys.exit(run_script(main))
