"""One-call segmentation: :func:`segment_volume` (in memory) and :func:`segment_file` (file in, files out).

``segment_file`` checks everything cheap first (output extensions, existing outputs, slicer-core for
``.seg.nrrd``, the input file, CT plausibility, memory) before running the network, and writes every output
atomically only after the whole run succeeded: a failed or cancelled run leaves previous files intact and
no partial file.
"""
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from ..errors import InputError
from ..fileutil import atomic_output, check_can_write, full_suffix
from ..progress import CancellationToken, ProgressCallback, ProgressReporter
from ..volume import CTVolume, ImageGeometry
from .lesion_report import check_report_path, lesion_report, write_report
from .postprocess import PostprocessingOptions, postprocess_labels

log = logging.getLogger(__name__)

LABEL_MAP_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha")
SEG_NRRD_SUFFIX = ".seg.nrrd"


@dataclass
class SegmentationResult:
    """``labels``: ``(z, y, x)`` uint8 (0 bg, 1 liver, 2 tumor) in the input geometry ``geometry``;
    ``report``: :func:`lesion_report` dict plus run facts; ``warnings``: input check messages;
    ``tumor_probability``: ``(z, y, x)`` uint8 ``round(255 * p_tumor)`` before post-processing, when asked."""

    labels: np.ndarray
    geometry: ImageGeometry
    report: Dict[str, Any]
    warnings: List[str] = field(default_factory=list)
    device: str = ""
    seconds: float = 0.0
    output_path: Optional[Path] = None
    report_path: Optional[Path] = None
    preview_path: Optional[Path] = None
    tumor_probability: Optional[np.ndarray] = None
    probability_path: Optional[Path] = None


def slicer_available() -> bool:
    """True when ``slicer`` (slicer-core or Slicer's Python) imports."""
    try:
        import slicer  # noqa: F401
    except ImportError:
        return False
    return True


def check_output_format(path: Any) -> str:
    """The output's full suffix if supported (.nii, .nii.gz, .nrrd, .mha, .seg.nrrd), else InputError."""
    suffix = full_suffix(path)
    if suffix == SEG_NRRD_SUFFIX:
        if not slicer_available():
            raise InputError(f"Writing '{path}' (.seg.nrrd) needs slicer-core: pip install slicer-core "
                             f"(or write .nii.gz / .nrrd instead).")
        return suffix
    if suffix not in LABEL_MAP_SUFFIXES:
        raise InputError(f"Output '{path}' has an unsupported extension '{suffix}'; use .nii.gz, .nii, .nrrd, "
                         f".mha or .seg.nrrd.")
    return suffix


# Stages reported to the user, in order: "reading", "loading model", "preprocessing", "network",
# "post-processing", "lesion report", "writing" (files only), "done" (only at 1.0).
ENGINE_STAGES = {"reorienting": "preprocessing", "preprocessing": "preprocessing"}  # everything else: "network"


def renamed_stages(progress: ProgressCallback, mapping: Dict[str, str], default: Optional[str] = None
                   ) -> ProgressCallback:
    """``progress`` with each stage name passed through ``mapping`` (unmapped -> ``default``, or kept)."""
    def callback(fraction: float, stage: str) -> None:
        progress(fraction, mapping.get(stage, stage if default is None else default))

    return callback


def make_engine(package: Any, device: str = "auto", tta_flip: bool = False, backend: str = "torch",
                batch_size: Optional[int] = None, threads: Optional[int] = None, precision: str = "auto") -> Any:
    """A :class:`SliceInferenceEngine` (imported lazily so this module stays light)."""
    from .engine import SliceInferenceEngine

    return SliceInferenceEngine(package, device=device, batch_size=batch_size, tta_flip=tta_flip,
                                backend=backend, threads=threads, precision=precision)


def _rounded_timings(timings: Dict[str, float]) -> Dict[str, float]:
    return {stage: round(float(seconds), 3) for stage, seconds in timings.items()}


def segment_volume(volume: CTVolume, package: Any, device: str = "auto",
                   postprocessing: Optional[PostprocessingOptions] = None,
                   progress: Optional[ProgressCallback] = None, cancel: Optional[CancellationToken] = None,
                   tta_flip: bool = False, two_stage: bool = False, backend: str = "torch",
                   batch_size: Optional[int] = None, threads: Optional[int] = None, engine: Any = None,
                   tumor_probability: bool = False, precision: str = "auto") -> SegmentationResult:
    """Segment a CT volume ``(z, y, x)`` (HU) with a model package; labels come back in its geometry.

    ``postprocessing``: None = defaults (:class:`PostprocessingOptions`); use
    ``PostprocessingOptions.disabled()`` for raw network output. ``engine``: reuse an existing engine.
    ``tumor_probability``: also keep the network's tumor probability (uint8 0..255, input geometry).
    ``precision``: ``auto|fp32|bf16`` (see :class:`SliceInferenceEngine`). The report gets ``precision`` (what
    ran, and the bf16 check) and ``timings_s`` (seconds per stage: the engine's reorient / preprocess /
    network / restore, then postprocess and report; a ``model_load`` stage when the engine is built here).
    """
    start = time.perf_counter()
    reporter = ProgressReporter(progress)
    options = postprocessing if postprocessing is not None else PostprocessingOptions()
    timings = {}  # type: Dict[str, float]
    if engine is None:
        engine = make_engine(package, device, tta_flip, backend, batch_size, threads, precision)
        timings["model_load"] = time.perf_counter() - start
    probability = None
    # two-stage runs the engine twice: both passes are "network", so stage names never go back
    network_progress = renamed_stages(reporter.sub(0.0, 0.9), {} if two_stage else ENGINE_STAGES, default="network")
    if two_stage:
        from .twostage import segment_two_stage

        engine.last_timings, engine.accumulate_timings = {}, True  # both passes count
        try:
            out = segment_two_stage(volume, engine, progress=network_progress, cancel=cancel,
                                    with_probability=tumor_probability)
        finally:
            engine.accumulate_timings = False
        labels, probability = out if tumor_probability else (out, None)
    elif tumor_probability:
        labels, probability = engine.predict_with_probability(volume, progress=network_progress, cancel=cancel)
    else:
        labels = engine.predict(volume, progress=network_progress, cancel=cancel)
    if cancel is not None:
        cancel.raise_if_cancelled()
    timings.update(getattr(engine, "last_timings", {}) or {})
    reporter(0.9, "post-processing")
    stage_start = time.perf_counter()
    labels = postprocess_labels(labels, volume.spacing_zyx, options)
    timings["postprocess"] = time.perf_counter() - stage_start
    reporter(0.95, "lesion report")
    stage_start = time.perf_counter()
    package_obj = getattr(engine, "package", package)
    device_text = getattr(engine, "device_description", str(device))
    report = lesion_report(labels, volume.geometry, volume.array, extra={
        "input": volume.source,
        "model": str(getattr(package_obj, "name", "") or getattr(package_obj, "path", "")),
        "device": device_text,
        "precision": dict(getattr(engine, "last_precision", {}) or {}),
        "postprocessing": options.to_dict(),
        "two_stage": bool(two_stage),
        "tta_flip": bool(tta_flip),
    })
    timings["report"] = time.perf_counter() - stage_start
    report["timings_s"] = _rounded_timings(timings)
    log.debug("timings (s): %s", ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
    reporter(1.0, "done")
    return SegmentationResult(labels=labels, geometry=volume.geometry, report=report, device=device_text,
                              seconds=time.perf_counter() - start, tumor_probability=probability)


def _estimate_and_check_memory(volume: CTVolume) -> Optional[int]:
    """Estimated peak bytes for this volume; raises ResourceError when clearly too much."""
    from ..validation import check_memory, estimate_memory_bytes

    required = estimate_memory_bytes(volume.shape_zyx, input_itemsize=volume.array.dtype.itemsize)
    log.debug("Estimated memory needed: %.2f GiB", required / 2 ** 30)  # shown with --debug
    check_memory(required, what=f"'{volume.source or 'the volume'}' {volume.shape_zyx} (z, y, x)")
    return int(required)


def _write_labels(tmp: Path, labels: np.ndarray, geometry: ImageGeometry, suffix: str) -> None:
    if suffix == SEG_NRRD_SUFFIX:
        from ..mrml import write_seg_nrrd

        write_seg_nrrd(tmp, labels, geometry, overwrite=True)
    else:
        from ..io import write_label_map

        write_label_map(tmp, labels, geometry, overwrite=True)


def segment_file(input_path: Any, output_path: Any, model: Any = "default", device: str = "auto",
                 report_path: Any = None, overwrite: bool = False, series: Optional[str] = None,
                 postprocessing: Optional[PostprocessingOptions] = None, tta_flip: bool = False,
                 two_stage: bool = False, backend: str = "torch", batch_size: Optional[int] = None,
                 allow_non_hu: bool = False, preview_path: Any = None,
                 progress: Optional[ProgressCallback] = None, cancel: Optional[CancellationToken] = None,
                 threads: Optional[int] = None, package: Any = None, engine: Any = None,
                 probability_path: Any = None, precision: str = "auto") -> SegmentationResult:
    """Read ``input_path`` (file or DICOM folder, ``series`` UID), segment, write ``output_path`` (labels 0/1/2
    in the input geometry; format from the extension), optionally ``report_path`` (.json/.csv) and
    ``preview_path`` (.png) and ``probability_path`` (tumor probability, uint8 ``round(255 * p)`` before
    post-processing, input geometry; .nii.gz/.nii/.nrrd/.mha; ``evaluate --prob`` reads it). ``model``: name or package path (ignored when ``package``/``engine`` given).
    All outputs are checked before any work and written only after success. The report's ``timings_s`` adds
    ``read``, ``checks``, ``model_load``, ``write`` (outputs other than the report itself) and ``total``."""
    from ..io import read_volume

    start = time.perf_counter()
    reporter = ProgressReporter(progress)
    output_path = Path(output_path)
    suffix = check_output_format(output_path)
    outputs = [output_path]
    check_can_write(output_path, overwrite)
    if report_path is not None:
        report_path = check_report_path(report_path)
        check_can_write(report_path, overwrite)
        outputs.append(report_path)
    if preview_path is not None:
        preview_path = Path(preview_path)
        if full_suffix(preview_path) != ".png":
            raise InputError(f"Preview '{preview_path}' must end in .png.")
        check_can_write(preview_path, overwrite)
        outputs.append(preview_path)
    if probability_path is not None:
        probability_path = Path(probability_path)
        if full_suffix(probability_path) not in LABEL_MAP_SUFFIXES:
            raise InputError(f"Probability map '{probability_path}' has an unsupported extension "
                             f"'{full_suffix(probability_path)}'; use .nii.gz, .nii, .nrrd or .mha.")
        check_can_write(probability_path, overwrite)
        outputs.append(probability_path)
    resolved = [p.resolve() for p in outputs]
    if len(set(resolved)) != len(resolved) or Path(input_path).resolve() in resolved:
        raise InputError("The input, output, report, preview and probability paths must all be different files.")

    reporter(0.0, "reading")
    stage_start = time.perf_counter()
    volume = read_volume(input_path, series=series)
    timings = {"read": time.perf_counter() - stage_start}  # type: Dict[str, float]
    from ..validation import check_ct

    stage_start = time.perf_counter()
    warnings = check_ct(volume, allow_non_hu=allow_non_hu)
    for message in warnings:
        log.warning("warning: %s", message)
    _estimate_and_check_memory(volume)
    timings["checks"] = time.perf_counter() - stage_start
    if engine is None and package is None:
        from ..package import load_model_package

        reporter(0.02, "loading model")
        stage_start = time.perf_counter()
        package = load_model_package(model, device="cpu")
        timings["model_load"] = time.perf_counter() - stage_start
    if cancel is not None:
        cancel.raise_if_cancelled()
    result = segment_volume(volume, package, device=device, postprocessing=postprocessing,
                            progress=renamed_stages(reporter.sub(0.05, 0.95), {"done": "lesion report"}),
                            cancel=cancel, tta_flip=tta_flip,
                            two_stage=two_stage, backend=backend, batch_size=batch_size, threads=threads,
                            engine=engine, tumor_probability=probability_path is not None, precision=precision)
    result.warnings = warnings
    result.report["warnings"] = warnings
    if cancel is not None:
        cancel.raise_if_cancelled()
    reporter(0.95, "writing")
    stage_start = time.perf_counter()
    with contextlib.ExitStack() as stack:  # every file to a temp first; renamed together at the end
        tmp_labels = stack.enter_context(atomic_output(output_path, overwrite))
        _write_labels(tmp_labels, result.labels, volume.geometry, suffix)
        if preview_path is not None:
            from .preview import save_overlay_preview

            tmp_preview = stack.enter_context(atomic_output(preview_path, overwrite))
            save_overlay_preview(tmp_preview, volume, result.labels, overwrite=True)
        if probability_path is not None:
            from ..io import write_volume

            tmp_probability = stack.enter_context(atomic_output(probability_path, overwrite))
            write_volume(tmp_probability, CTVolume(result.tumor_probability, volume.geometry), overwrite=True)
        timings["write"] = time.perf_counter() - stage_start
        model_load = timings.pop("model_load", 0.0) + result.report["timings_s"].pop("model_load", 0.0)
        timings = dict(timings, model_load=model_load, **result.report["timings_s"])
        timings["total"] = time.perf_counter() - start
        result.report["timings_s"] = _rounded_timings(timings)
        log.debug("timings (s): %s", ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
        if report_path is not None:  # last, so that it holds the write time of the other files
            tmp_report = stack.enter_context(atomic_output(report_path, overwrite))
            write_report(result.report, tmp_report, overwrite=True)
        if cancel is not None:
            cancel.raise_if_cancelled()
    result.output_path, result.report_path, result.preview_path = output_path, report_path, preview_path
    result.probability_path = probability_path
    reporter(1.0, "done")
    return result
