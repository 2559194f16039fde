"""The segmentation run of the Slicer module, in two halves (the SlicerNNUnet pattern, injected parts).

* :func:`compute_segmentation` - worker half: model package + CT arrays -> labels and lesion report. No MRML,
  no Qt; safe in a background thread. ``load_package`` and ``segment`` can be swapped (tests, other engines).
* :func:`apply_result` - main-thread half: labels -> "Liver"/"Liver tumor" segments, lesion table node,
  3D surfaces, via :mod:`LiverTumorSegLib.mrml` on the given scene.
* :class:`SegmentationRun` - one run as the module's Logic does it: read the volume node (main thread),
  compute in a :class:`~.background.BackgroundTask`, apply the result when the main thread polls.
"""
import dataclasses
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

from LiverTumorSegLib import mrml
from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.inference.device import DEVICE_CHOICES as DEVICES  # noqa: F401 - one list for all callers
from LiverTumorSegLib.inference.options import override_window  # noqa: F401 - re-exported for the module
from LiverTumorSegLib.progress import ProgressReporter
from LiverTumorSegLib.volume import CTVolume

from . import background

@dataclass
class SegmentationOptions:
    """What the user chose in the panel (all saved in the parameter node).

    ``device``: auto | cuda | cpu. ``postprocessing``: keyword arguments of
    ``LiverTumorSegLib.inference.PostprocessingOptions`` (missing keys keep its defaults).
    ``window_level`` / ``window_width`` (HU): when both set, replace the first window channel of the
    model's preprocessing (expert override; the model was trained with its own window).
    """

    model_path: str
    device: str = "auto"
    postprocessing: Dict[str, Any] = field(default_factory=dict)
    window_level: Optional[float] = None
    window_width: Optional[float] = None


def _with_window_override(package: Any, options: SegmentationOptions) -> Any:
    if options.window_level is None or options.window_width is None:
        return package
    from LiverTumorSegLib.preprocessing import PreprocessingConfig
    pre = package.preprocessing
    pre_dict = pre if isinstance(pre, dict) else pre.to_dict()
    new = PreprocessingConfig.from_dict(override_window(pre_dict, options.window_level, options.window_width))
    return dataclasses.replace(package, preprocessing=new)


def _default_load_package(path: str) -> Any:
    from LiverTumorSegLib.package import load_model_package
    return load_model_package(path, device="cpu")


def _default_segment(volume: CTVolume, package: Any, **kwargs: Any) -> Any:
    from LiverTumorSegLib.inference import segment_volume
    return segment_volume(volume, package, **kwargs)


def _postprocessing(options: SegmentationOptions) -> Any:
    from LiverTumorSegLib.inference import PostprocessingOptions
    return PostprocessingOptions(**options.postprocessing)


def compute_segmentation(volume: CTVolume, options: SegmentationOptions,
                         progress: Optional[Callable[[float, str], None]] = None, cancel: Any = None,
                         load_package: Callable[[str], Any] = _default_load_package,
                         segment: Callable[..., Any] = _default_segment,
                         make_postprocessing: Callable[[SegmentationOptions], Any] = _postprocessing) -> Any:
    """Worker half: load the package, run ``segment(volume, package, device=, postprocessing=, progress=,
    cancel=)``; returns its result (``.labels`` ``(z, y, x)`` uint8 in ``volume``'s geometry, ``.report``)."""
    if options.device not in DEVICES:
        raise InputError(f"Unknown device '{options.device}'; choose one of {', '.join(DEVICES)}.")
    reporter = ProgressReporter(progress)
    reporter(0.0, "loading model")
    package = _with_window_override(load_package(options.model_path), options)
    if cancel is not None:
        cancel.raise_if_cancelled()
    result = segment(volume, package, device=options.device, postprocessing=make_postprocessing(options),
                     progress=reporter.sub(0.05, 1.0), cancel=cancel)
    if tuple(result.labels.shape) != tuple(volume.array.shape):
        raise RuntimeError(f"The engine returned labels of shape {result.labels.shape}, expected "
                           f"{volume.array.shape} (z, y, x).")
    return result


def apply_result(scene: Any, result: Any, volume: CTVolume, input_volume_node: Any = None,
                 segmentation_node: Any = None, table_node: Any = None, replace_existing: bool = True,
                 show_3d: bool = True, name: str = "") -> Tuple[Any, Any]:
    """Main-thread half: write ``result.labels`` (on ``volume.geometry``) into a segmentation node and
    ``result.report`` into a lesion table node. Returns ``(segmentation_node, table_node)``."""
    base = name or (input_volume_node.GetName() if input_volume_node is not None else "CT")
    segmentation_node = mrml.labels_to_segmentation_node(
        scene, result.labels, volume.geometry, segmentation_node=segmentation_node,
        reference_volume_node=input_volume_node, replace_existing=replace_existing,
        name=f"{base} liver segmentation")
    table_node = mrml.create_lesion_table_node(scene, result.report, table_node=table_node,
                                               name=f"{base} liver lesions")
    if show_3d:
        mrml.show_segmentation_in_3d(segmentation_node)
    return segmentation_node, table_node


class SegmentationOutcome:
    """How a run ended: ``kind`` (:data:`~.background.DONE` | ``CANCELLED`` | ``FAILED``), the nodes written,
    the lesion report, the error (failed) with its traceback text, and the wall time in seconds."""

    def __init__(self, kind: str, segmentation_node: Any = None, table_node: Any = None,
                 report: Optional[Dict[str, Any]] = None, error: Optional[BaseException] = None,
                 details: str = "", seconds: float = 0.0) -> None:
        self.kind = kind
        self.segmentation_node = segmentation_node
        self.table_node = table_node
        self.report = report or {}
        self.error = error
        self.details = details
        self.seconds = seconds


class SegmentationRun:
    """One segmentation run of the module, Slicer-safe: MRML is touched only in the constructor and in
    :meth:`poll`, which the caller runs on the main thread (in Slicer from a ``qt.QTimer``).

    The constructor copies ``input_volume_node`` into a :class:`CTVolume` (``(z, y, x)`` + LPS geometry);
    ``compute(volume, options, progress, cancel)`` (default :func:`compute_segmentation`) then runs in a
    worker thread (:meth:`start`) or here (:meth:`run_here`) on arrays only. ``progress(fraction, stage)`` is
    called from :meth:`poll`. A run cancelled after its worker finished writes nothing either.
    """

    def __init__(self, scene: Any, input_volume_node: Any, options: SegmentationOptions,
                 segmentation_node: Any = None, table_node: Any = None, replace_existing: bool = True,
                 show_3d: bool = True, compute: Callable[..., Any] = compute_segmentation,
                 progress: Optional[Callable[[float, str], None]] = None, cancel: Any = None) -> None:
        self.volume = mrml.ctvolume_from_volume_node(input_volume_node)
        self._scene = scene
        self._input_volume_node = input_volume_node
        self._segmentation_node = segmentation_node
        self._table_node = table_node
        self._replace_existing = replace_existing
        self._show_3d = show_3d
        self._progress = progress
        volume = self.volume
        self.task = background.BackgroundTask(lambda report, token: compute(volume, options, report, token))
        if cancel is not None:
            self.task.cancel_token = cancel
        self._start = time.time()

    def start(self) -> "SegmentationRun":
        """Compute in a worker thread; poll for the outcome."""
        self._start = time.time()
        self.task.start()
        return self

    def run_here(self) -> "SegmentationRun":
        """Compute in the calling thread (blocks); poll once afterwards for the outcome."""
        self._start = time.time()
        self.task.run_here()
        return self

    def cancel(self) -> None:
        """Ask the computation to stop; the outcome will be ``cancelled`` and the scene unchanged."""
        self.task.cancel()

    def poll(self) -> Optional[SegmentationOutcome]:
        """Main thread: forward progress, and once the worker ended apply its result; ``None`` while running.

        A failure while writing into MRML is returned as a ``failed`` outcome, like a worker failure.
        """
        for event in self.task.poll():
            seconds = time.time() - self._start
            if event.kind == background.PROGRESS:
                if self._progress:
                    self._progress(event.fraction, event.stage)
                continue
            if event.kind == background.DONE and self.task.cancel_token.is_cancelled:
                return SegmentationOutcome(background.CANCELLED, seconds=seconds)
            if event.kind != background.DONE:
                return SegmentationOutcome(event.kind, error=event.error, details=event.details, seconds=seconds)
            try:
                segmentation_node, table_node = apply_result(
                    self._scene, event.result, self.volume, self._input_volume_node, self._segmentation_node,
                    self._table_node, self._replace_existing, self._show_3d)
            except Exception as exc:  # noqa: BLE001 - reported to the user by the caller
                return SegmentationOutcome(background.FAILED, error=exc, details=traceback.format_exc(),
                                           seconds=seconds)
            return SegmentationOutcome(background.DONE, segmentation_node, table_node, event.result.report,
                                       seconds=time.time() - self._start)
        return None
