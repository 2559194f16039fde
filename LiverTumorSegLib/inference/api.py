"""One-call segmentation: :func:`segment_volume` (in memory) and :func:`segment_file` (file in, files out).

Thin wrappers over :class:`~.segmenter.Segmenter` with :class:`~.options.SegmentationOptions` built from
keyword arguments; they load the model on every call. To segment several CTs, build one ``Segmenter`` and
call it many times. ``segment_file`` checks every output before any work and writes atomically after
success (see :mod:`.segmenter`).
"""
from typing import Any, Optional

from ..progress import CancellationToken, ProgressCallback
from .options import LABEL_MAP_SUFFIXES, SEG_NRRD_SUFFIX, SegmentationOptions  # noqa: F401 - re-exported
from .postprocess import PostprocessingOptions
from .segmenter import (ENGINE_STAGES, SegmentationResult, Segmenter, check_output_format,  # noqa: F401
                        renamed_stages, slicer_available)


def make_engine(package: Any, device: str = "auto", tta_flip: bool = False, backend: str = "torch",
                batch_size: Optional[int] = None, threads: Optional[int] = None, precision: str = "auto") -> Any:
    """A :class:`SliceInferenceEngine` (imported lazily so this module stays light)."""
    from .engine import SliceInferenceEngine

    return SliceInferenceEngine(package, device=device, batch_size=batch_size, tta_flip=tta_flip,
                                backend=backend, threads=threads, precision=precision)


def _options(model: Any = "default", device: str = "auto", postprocessing: Optional[PostprocessingOptions] = None,
             tta_flip: bool = False, two_stage: bool = False, backend: str = "torch",
             batch_size: Optional[int] = None, threads: Optional[int] = None, probabilities: bool = False,
             allow_non_hu: bool = False, precision: str = "auto", body_size_scaling: bool = True
             ) -> SegmentationOptions:
    return SegmentationOptions(
        model=str(model), device=device, backend=backend, batch_size=batch_size, threads=threads, tta=tta_flip,
        two_stage=two_stage, postprocessing=postprocessing if postprocessing is not None else PostprocessingOptions(),
        probabilities=probabilities, allow_non_hu=allow_non_hu, precision=precision,
        body_size_scaling=body_size_scaling)


def segment_volume(volume: Any, package: Any, device: str = "auto",
                   postprocessing: Optional[PostprocessingOptions] = None,
                   progress: Optional[ProgressCallback] = None, cancel: Optional[CancellationToken] = None,
                   tta_flip: bool = False, two_stage: bool = False, backend: str = "torch",
                   batch_size: Optional[int] = None, threads: Optional[int] = None, engine: Any = None,
                   tumor_probability: bool = False, precision: str = "auto",
                   allow_non_hu: bool = False, body_size_scaling: bool = True) -> SegmentationResult:
    """Segment a CT volume ``(z, y, x)`` (HU) with a model package (loaded, or a name/path); labels come back
    in its geometry. ``postprocessing``: None = defaults; ``PostprocessingOptions.disabled()`` for raw network
    output. ``engine``: reuse an existing engine (its device/TTA/backend win; a warning names any setting
    it overrides, and the report records what ran). ``tumor_probability``: also keep the network's tumor
    probability (uint8 0..255, input geometry). ``body_size_scaling``: a child-sized body is given to the network
    enlarged (:mod:`.body_size`). Same as ``Segmenter(options, package).segment_volume(...)``.
    """
    loaded = hasattr(package, "preprocessing")
    model = package
    if loaded:
        model = getattr(package, "path", None) or getattr(package, "name", None) or "loaded package"
    options = _options(model or "default", device, postprocessing, tta_flip, two_stage, backend, batch_size, threads,
                       probabilities=tumor_probability, precision=precision, allow_non_hu=allow_non_hu,
                       body_size_scaling=body_size_scaling)
    package = package if loaded else None  # a name/path: options.model loads it
    return Segmenter(options, package=package, engine=engine).segment_volume(volume, progress=progress, cancel=cancel)


def segment_file(input_path: Any, output_path: Any, model: Any = "default", device: str = "auto",
                 report_path: Any = None, overwrite: bool = False, series: Optional[str] = None,
                 postprocessing: Optional[PostprocessingOptions] = None, tta_flip: bool = False,
                 two_stage: bool = False, backend: str = "torch", batch_size: Optional[int] = None,
                 allow_non_hu: bool = False, preview_path: Any = None,
                 progress: Optional[ProgressCallback] = None, cancel: Optional[CancellationToken] = None,
                 threads: Optional[int] = None, package: Any = None, engine: Any = None,
                 probability_path: Any = None, precision: str = "auto", body_size_scaling: bool = True
                 ) -> SegmentationResult:
    """Read ``input_path`` (file or DICOM folder; ``series``: SeriesInstanceUID, UID prefix, description or
    the number from the listing), segment, write ``output_path`` (labels 0/1/2 in the input geometry; format
    from the extension), optionally ``report_path`` (.json/.csv), ``preview_path`` (.png) and
    ``probability_path`` (tumor probability, uint8 ``round(255 * p)`` before post-processing, input geometry;
    ``evaluate --prob`` reads it). ``model``: name or package path (ignored when ``package``/``engine`` given).
    All outputs are checked before any work and written only after success. Returns the
    :class:`SegmentationResult` (``labels`` ``(z, y, x)`` uint8 in the input geometry, ``report`` with volumes in mL
    and diameters in mm, ``seconds`` of wall time, the paths written).
    Same as ``Segmenter(options, package, engine).segment_file(...)``."""
    options = _options(model, device, postprocessing, tta_flip, two_stage, backend, batch_size, threads,
                       allow_non_hu=allow_non_hu, precision=precision, body_size_scaling=body_size_scaling)
    segmenter = Segmenter(options, package=package, engine=engine)
    return segmenter.segment_file(input_path, output_path, report_path=report_path, preview_path=preview_path,
                                  probability_path=probability_path, overwrite=overwrite, series=series,
                                  progress=progress, cancel=cancel)
