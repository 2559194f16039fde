"""``livertumorseg segment``: segment liver and liver tumors in a CT (file or DICOM folder).

    livertumorseg segment INPUT -o OUTPUT [--model NAME|PATH] [--device auto|cpu|cuda] [--report r.json]
    livertumorseg segment --sample -o out.nii.gz     # bundled sample CT + bundled model, prints liver Dice

OUTPUT's extension picks the format (.nii.gz, .nii, .nrrd, .mha; .seg.nrrd with slicer-core). Labels
0 background, 1 liver, 2 tumor, in the input's own geometry.
"""
import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

log = logging.getLogger(__name__)


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("segment", help="segment liver and liver tumors in a CT",
                              description="Segment liver (1) and liver tumors (2) in an abdominal CT; "
                                          "labels are written in the input's geometry.")
    p.add_argument("input", nargs="?", help="CT file (.nii.gz, .nii, .nrrd, .mha, .mhd) or DICOM folder")
    p.add_argument("-o", "--output", required=True,
                   help="label map to write; extension picks the format (.nii.gz, .nii, .nrrd, .mha, .seg.nrrd)")
    p.add_argument("--sample", action="store_true",
                   help="segment the bundled sample CT and print the liver Dice against its reference")
    p.add_argument("--model", default="default", help="installed model name or .safetensors package path")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--series", default=None, help="DICOM SeriesInstanceUID when the folder holds several")
    p.add_argument("--report", default=None, help="lesion report to write (.json or .csv)")
    p.add_argument("--preview", default=None, help="preview PNG with liver/tumor overlays")
    p.add_argument("--probabilities", default=None, metavar="PROB",
                   help="also write the tumor probability map (uint8 0..255 = 255 x p, before post-processing, "
                        "input geometry; .nii.gz/.nrrd/.mha), e.g. for `evaluate --prob`")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--no-postprocess", action="store_true", help="raw network labels (no clean-up)")
    p.add_argument("--keep-all-liver-components", action="store_true",
                   help="do not reduce the liver to its largest connected component")
    p.add_argument("--no-fill-holes", action="store_true", help="do not fill holes inside the liver")
    p.add_argument("--allow-tumor-outside-liver", action="store_true",
                   help="keep tumor voxels far from the liver")
    p.add_argument("--min-lesion-ml", type=float, default=0.1,
                   help="lesions smaller than this (mL) become liver (default 0.1; 0 keeps all)")
    p.add_argument("--tta", action="store_true", help="test-time left-right flip augmentation (slower)")
    p.add_argument("--two-stage", action="store_true", help="coarse liver localisation, then full-res crop")
    p.add_argument("--backend", choices=["auto", "torch", "onnx"], default="torch",
                   help="CPU runtime (default torch). onnx = ONNX Runtime (needs onnx + onnxruntime; exported "
                        "per run, so it only pays off on long volumes: on 2 idle cores both ran a 32-slice "
                        "256x256 CT in 1.1 s); auto = onnx when installed, else torch")
    p.add_argument("--batch-size", type=int, default=None, help="slices per batch (default: from memory)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="network arithmetic. auto (default): bf16 on GPUs, and on CPUs with native bf16 "
                        "(AVX512-BF16/AMX) checked per CT on one batch against fp32 (falls back to fp32 when "
                        "labels differ on > 0.1 %% of its voxels); fp32; bf16 (unchecked). ONNX runs fp32")
    p.add_argument("--allow-non-hu", action="store_true",
                   help="accept intensities that do not look like Hounsfield units")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def postprocessing_from_args(args: argparse.Namespace) -> Any:
    """PostprocessingOptions from the CLI switches."""
    from ..inference.postprocess import PostprocessingOptions

    if args.min_lesion_ml < 0:
        raise InputError(f"--min-lesion-ml must be >= 0 (got {args.min_lesion_ml}).")
    if args.no_postprocess:
        return PostprocessingOptions.disabled()
    return PostprocessingOptions(largest_liver_component=not args.keep_all_liver_components,
                                 fill_liver_holes=not args.no_fill_holes,
                                 tumor_inside_liver=not args.allow_tumor_outside_liver,
                                 min_lesion_ml=float(args.min_lesion_ml))


def liver_dice(labels_zyx: np.ndarray, reference_zyx: np.ndarray) -> float:
    """Dice of liver (label >= 1) between two ``(z, y, x)`` label maps; 1.0 when both are empty."""
    a = np.asarray(labels_zyx) >= 1
    b = np.asarray(reference_zyx) >= 1
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total


class _TqdmProgress:
    """Progress callback driving a tqdm bar (0..100 %) with the stage as description."""

    def __init__(self, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=100, unit="%", bar_format="{desc:<16}{percentage:3.0f}%|{bar}| {elapsed}")

    def __call__(self, fraction: float, stage: str) -> None:
        if self.bar is None:
            return
        target = int(round(100 * fraction))
        if target > self.bar.n:
            self.bar.update(target - self.bar.n)
        self.bar.set_description_str(stage, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def format_summary(result: Any) -> str:
    """Human-readable summary lines of a SegmentationResult."""
    r = result.report
    lines = [f"wrote {result.output_path} ({result.seconds:.1f} s on {result.device})",
             f"liver volume: {r['liver_volume_ml']:.1f} mL; tumors: {r['lesion_count']} "
             f"({r['tumor_volume_ml']:.2f} mL, burden {r['tumor_burden_percent']:.2f} %)"]
    for lesion in r["lesions"][:10]:
        ras = ", ".join(f"{v:.1f}" for v in lesion["centroid_ras_mm"])
        lines.append(f"  lesion {lesion['id']}: {lesion['volume_ml']:.2f} mL, longest axial diameter "
                     f"{lesion['longest_axial_diameter_mm']:.1f} mm, centroid RAS ({ras}) mm")
    if len(r["lesions"]) > 10:
        lines.append(f"  ... {len(r['lesions']) - 10} more in the report")
    if result.report_path:
        lines.append(f"report: {result.report_path}")
    if result.preview_path:
        lines.append(f"preview: {result.preview_path}")
    if getattr(result, "probability_path", None):
        lines.append(f"tumor probability (uint8, 255 = 1.0): {result.probability_path}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from .. import resources
    from ..inference.api import segment_file

    if args.sample:
        if args.input:
            raise InputError("Give either an INPUT or --sample, not both.")
        input_path = resources.sample_ct_path()
    elif not args.input:
        raise InputError("Give an INPUT CT file or DICOM folder (or --sample for the bundled sample CT).")
    else:
        input_path = Path(args.input)
        if not input_path.exists():
            raise InputError(f"Input '{input_path}' does not exist; check the path.")
    if args.batch_size is not None and args.batch_size < 1:  # before reading the CT and loading the model
        raise InputError(f"--batch-size must be at least 1 (got {args.batch_size}).")
    progress = _TqdmProgress(enabled=not args.no_progress)
    try:
        result = segment_file(input_path, args.output, model=args.model, device=args.device,
                              report_path=args.report, overwrite=args.overwrite, series=args.series,
                              postprocessing=postprocessing_from_args(args), tta_flip=args.tta,
                              two_stage=args.two_stage, backend=args.backend, batch_size=args.batch_size,
                              allow_non_hu=args.allow_non_hu, preview_path=args.preview, progress=progress,
                              probability_path=args.probabilities, precision=args.precision)
    finally:
        progress.close()
    print(format_summary(result))
    if args.sample:
        reference_path = resources.sample_reference_path()
        if reference_path.exists():
            from ..io import read_label_map, read_volume

            reference = read_label_map(reference_path, reference=read_volume(input_path))
            print(f"liver Dice vs bundled reference: {liver_dice(result.labels, reference.array):.3f}")
    return 0
