"""Load a model once, segment many CTs: :class:`Segmenter` (the CLI, batch runs, the trainer's whole-volume
validation and the Slicer module's child process all use it).

```python
segmenter = Segmenter(SegmentationOptions(model="default", device="auto"))
segmenter.load()                                    # optional: otherwise the first call loads
result = segmenter.segment_volume(ct, progress=cb, cancel=token)        # SegmentationResult, nothing written
result = segmenter.segment_file("ct.nii.gz", "seg.nii.gz", report_path="r.json", overwrite=True)
```

The package is loaded and the engine built once (on :meth:`Segmenter.load` or the first call); every call
reads/segments/writes independently. ``segment_file`` checks everything cheap first (output extensions,
existing outputs, slicer-core for ``.seg.nrrd``, the input file, CT plausibility, memory) before the network
runs, and writes every output atomically only after the whole run succeeded: a failed or cancelled run
leaves previous files intact and no partial file.

Progress stages, in order: ``reading``, ``loading model`` (first call only), ``preprocessing``, ``network``,
``post-processing``, ``lesion report``, ``writing`` (files only), ``done`` (only at 1.0).
"""
import concurrent.futures
import contextlib
import copy
import dataclasses
import functools
import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ..errors import CancelledError, InputError, submit_in_caller_context
from ..dicom_seg import DICOM_SEG_SUFFIX, check_dicom_seg_input
from ..fileutil import (atomic_outputs, check_can_write, file_identities, full_suffix, restore_set_aside_outputs_of,
                        shell_word)
from ..progress import CancellationToken, ProgressCallback, ProgressReporter
from ..volume import CTVolume, ImageGeometry
from .options import (LABEL_MAP_SUFFIXES, PREVIEW_SUFFIX, PROBABILITY_SUFFIXES, SEG_NRRD_SUFFIX,
                      SegmentationOptions, override_window)
from .postprocess import PostprocessingOptions

log = logging.getLogger(__name__)

# Engine stage names -> the user's; everything else the engine reports is "network".
ENGINE_STAGES = {"reorienting": "preprocessing", "preprocessing": "preprocessing"}

# Plausible whole-liver volume, mL. Adult livers are about 0.8-3 L (roughly 2 % of body weight; larger
# with steatosis, hepatomegaly or many tumors); outside 300-5000 mL the segmentation most likely missed or
# leaked (or the scan covers only part of the liver, or the file's spacing is wrong), so a person should look.
PLAUSIBLE_LIVER_ML = (300.0, 5000.0)
LIVER_CUT_BY_SCAN_END = "the scan starts or ends inside the liver (liver on its first or last slice)"
LIVER_CUT_BY_IMAGE_SIDE = ("the image's field of view cuts the liver (liver on the outermost row or column of its "
                           "slices, or next to the padding outside a round field of view)")
SMALL_LIVER_PATIENTS = ("the patient is a small child (a child's standard liver volume is about 706 mL per square "
                        "metre of body surface area + 2 mL (Urata 1995): some 320 mL at one year, 0.45 square "
                        "metres) or had part of the liver removed")
"""Whose whole liver lies under 300 mL: the volume warning names them, so that it does not tell a reader of a
toddler's CT only that the segmentation missed most of the liver (a CT scaled to 0.6 of an adult's size, a
1123 mL liver outlined with Dice 0.94 at 226 mL, was told just that)."""


@dataclass
class SegmentationResult:
    """``labels``: ``(z, y, x)`` uint8 (0 bg, 1 liver, 2 tumor) in the input geometry ``geometry``;
    ``report``: :func:`lesion_report` dict plus run facts (what actually ran: device, backend, TTA, options);
    ``warnings``: input-check and plausibility messages (also ``report["warnings"]``);
    ``tumor_probability``: ``(z, y, x)`` uint8 ``round(255 * p_tumor)`` before post-processing, when asked;
    ``seconds``: wall time, from :meth:`Segmenter.segment_file` the whole run (read, checks, model load, network,
    post-processing, writing: what ``segment`` prints and its JSON ``done`` line gives), from ``segment_volume``
    the network and post-processing."""

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


@dataclass
class NetworkOutput:
    """What :meth:`Segmenter.predict` hands to :meth:`Segmenter.finish`: raw network ``labels`` and the tumor
    ``probability`` (uint8 ``round(255 p)``, or None), both ``(z, y, x)`` in the input geometry; ``facts``:
    what ran (taken right after this CT's network, so a later CT cannot change them); ``timings`` (s) so far;
    ``model_load_parts``: the model load's parts when this call loaded the model; ``seconds`` spent;
    ``device_message``: the engine's device fallback said by then (CUDA asked for, CPU used; a GPU or ONNX Runtime
    that failed on this or an earlier CT), None for none; ``outside_scan``: the voxels of a resampling's fill
    (:mod:`.resampling_fill`), which the network was given as air and where no label may lie, or None."""

    labels: np.ndarray
    probability: Optional[np.ndarray]
    facts: Dict[str, Any]
    timings: Dict[str, float]
    model_load_parts: Optional[Dict[str, Any]] = None
    seconds: float = 0.0
    not_hu: Optional[str] = None  # why the HU rules must not run on this CT (_why_not_hu), decided once
    device_message: Optional[str] = None
    outside_scan: Optional[np.ndarray] = None  # bool (z, y, x): a resampling's fill, read as outside the scan


def renamed_stages(progress: ProgressCallback, mapping: Dict[str, str], default: Optional[str] = None
                   ) -> ProgressCallback:
    """``progress`` with each stage name passed through ``mapping`` (unmapped -> ``default``, or kept)."""
    def callback(fraction: float, stage: str) -> None:
        progress(fraction, mapping.get(stage, stage if default is None else default))

    return callback


def _precision_check_message(engine: Any, precision: Any) -> Optional[str]:
    """The engine's warning of a failed bf16 check (``precision_message``: auto precision fell back to fp32) when
    the report's precision record (``precision``) says the check ran on this volume; None otherwise (its numbers
    are another volume's: a batch's later CTs record the check with ``this_volume`` false)."""
    message = getattr(engine, "precision_message", None)
    check = (precision or {}).get("check") if isinstance(precision, dict) else None
    return message if message and isinstance(check, dict) and check.get("this_volume") else None


def liver_volume_warnings(liver_ml: float, limits_ml: Any = PLAUSIBLE_LIVER_ML, cut_by_scan_end: bool = False,
                          cut_by_image_side: bool = False) -> List[str]:
    """A warning when the segmented liver volume (mL) is outside ``limits_ml`` (see :data:`PLAUSIBLE_LIVER_ML`).
    ``cut_by_scan_end``: the scan starts or ends inside the liver (:func:`~.plausibility.liver_cut_by_scan_end`);
    ``cut_by_image_side``: the liver reaches the side of the image's slices, a field of view narrower than the
    body (:func:`~.plausibility.liver_cut_by_image_side`). A cut liver's volume is that of the part scanned, so
    instead of "Implausible result" a small one gets a note that the lower limit does not apply, and a plausible one
    a note that its volume is a lower bound (no liver at all, or one above the upper limit, is still implausible)."""
    from .lesion_report import number_text

    low, high = limits_ml
    # 2 significant digits where whole mL show a liver that is there as 0 ('the liver volume is 0 mL' of 0.17 mL)
    shown = number_text(liver_ml, 0) if round(liver_ml) not in (round(low), round(high)) else f"{liver_ml:.1f}"
    liver_ml = round(float(liver_ml), 6)  # a voxel count x voxel volume of exactly 5000 mL was 5000.000000000001
    cut = " and ".join(([LIVER_CUT_BY_SCAN_END] if cut_by_scan_end else [])
                       + ([LIVER_CUT_BY_IMAGE_SIDE] if cut_by_image_side else []))
    if 0 < liver_ml < low and cut:
        return [f"{cut[0].upper()}{cut[1:]}, so the liver volume, {shown} mL, is that of the part scanned and the "
                f"check for a liver under {low:.0f} mL does not apply; check that the outline covers the liver the "
                f"scan shows."]
    if low <= liver_ml <= high and cut:
        return [f"{cut[0].upper()}{cut[1:]}, so the liver volume, {shown} mL, is that of the part scanned: a lower "
                f"bound for the whole liver's volume."]
    if liver_ml < low:
        found = "no liver was found" if liver_ml <= 0 else f"the liver volume is {shown} mL"
        unless = "" if liver_ml <= 0 else f", unless {SMALL_LIVER_PATIENTS}"
        return [f"Implausible result: {found} (adult livers are about 800-3000 mL; below {low:.0f} mL the scan "
                f"covers only part of the liver or the segmentation missed most of it{unless}); check it before use."]
    if liver_ml > high:
        return [f"Implausible result: the liver volume is {shown} mL (adult livers are about 800-3000 mL; "
                f"above {high:.0f} mL the segmentation most likely leaked into other organs, or the file's voxel "
                f"spacing is wrong); check it before use."]
    return []


def slicer_available() -> bool:
    """True when ``slicer`` imports with every class a ``.seg.nrrd`` is written with (slicer-core, or Slicer's Python
    inside the application; not Slicer's ``PythonSlicer`` on its own: ``mrml.headless_scene_problem``)."""
    from ..mrml import headless_scene_problem
    return not headless_scene_problem()


def check_output_format(path: Any) -> str:
    """The output's full suffix if supported (.nii, .nii.gz, .nrrd, .mha, .seg.nrrd), else InputError. A
    ``.seg.nrrd`` this Python cannot write is refused here, before the CT is read and the network runs."""
    suffix = full_suffix(path)
    if suffix == SEG_NRRD_SUFFIX:
        if not slicer_available():
            from ..mrml import headless_scene_problem
            problem = (headless_scene_problem()
                       or "needs slicer-core: pip install slicer-core (or write .nii.gz / .nrrd instead).")
            raise InputError(f"Writing '{path}' (.seg.nrrd) {problem}")
        return suffix
    if suffix == DICOM_SEG_SUFFIX:  # DICOM Segmentation referencing the input series (dicom_seg)
        return suffix
    if not suffix:  # 'segment DICOM_FOLDER -o out/': one CT, one label map file
        given = Path(str(path).rstrip("/").rstrip(chr(92)) or "seg")
        # '-o .' was advised '..nii.gz'
        example = given / "seg.nii.gz" if given.name in ("", ".", "..") else Path(f"{given}.nii.gz")
        raise InputError(f"Output '{path}' has no file extension: one CT (a DICOM series folder is one) is written "
                         f"as one label map file, e.g. -o {shell_word(str(example))}. An output folder is for a "
                         f"batch: a folder of CT files, or a CSV listing the CTs (each DICOM series by its folder).")
    if suffix not in LABEL_MAP_SUFFIXES:
        raise InputError(f"Output '{path}' has an unsupported extension '{suffix}'; use .nii.gz, .nii, .nrrd, "
                         f".mha, .seg.nrrd or .dcm (DICOM SEG, for a DICOM input).")
    from ..io.writers import check_metaimage_name

    check_metaimage_name(path)  # before the run: OUT.MHA opened nowhere
    return suffix


def window_overridden_config(preprocessing: Any, level: float, width: float) -> Any:
    """A ``PreprocessingConfig`` like ``preprocessing`` (a config or its dict) whose first window is
    ``level``/``width`` HU."""
    from ..preprocessing import PreprocessingConfig

    pre_dict = preprocessing if isinstance(preprocessing, dict) else preprocessing.to_dict()
    return PreprocessingConfig.from_dict(override_window(pre_dict, level, width))


def with_window_override(package: Any, level: float, width: float) -> Any:
    """A shallow copy of ``package`` whose preprocessing uses window ``level``/``width`` HU (first window)."""
    new = window_overridden_config(package.preprocessing, level, width)
    if dataclasses.is_dataclass(package):
        return dataclasses.replace(package, preprocessing=new)
    result = copy.copy(package)
    result.preprocessing = new
    return result


def _engine_settings(options: SegmentationOptions, engine: Any) -> Dict[str, Any]:
    """The settings an engine actually runs with, as SegmentationOptions fields (``options`` where it does
    not say): device (e.g. ``cpu``, ``cuda:0``), TTA, backend (``auto`` resolved), batch size, threads,
    precision (as requested; the report's ``precision`` says what arithmetic ran)."""
    device = getattr(engine, "device", None)
    return {"device": str(device) if device is not None else options.device,
            "tta": bool(getattr(engine, "tta_flip", options.tta)),
            "backend": str(getattr(engine, "backend", None) or options.backend),
            "batch_size": getattr(engine, "batch_size", options.batch_size),
            "threads": getattr(engine, "threads", options.threads),
            "precision": str(getattr(engine, "precision", None) or options.precision)}


def model_postprocessing(options: SegmentationOptions, metadata: Optional[Dict[str, Any]]) -> PostprocessingOptions:
    """``options.postprocessing`` for the package whose ``metadata`` is given: a ``min_lesion_probability`` of None
    (the model's) becomes the package's recorded threshold
    (:func:`~LiverTumorSegLib.package.package_min_lesion_probability`), else
    :data:`~.postprocess.DEFAULT_MIN_LESION_PROBABILITY`, and a ``lesion_probability_statistic`` of None the
    package's (:func:`~LiverTumorSegLib.package.package_lesion_probability_statistic`), else the mean; a value the
    options set stays."""
    from ..package import package_lesion_probability_statistic, package_min_lesion_probability
    from .postprocess import with_min_lesion_probability

    return with_min_lesion_probability(options.postprocessing, package_min_lesion_probability(metadata),
                                       package_lesion_probability_statistic(metadata))


MIN_LESION_PROBABILITY_SOURCES = ("options", "model package", "library default")
"""Where a run's lesion confidence threshold came from (the report's ``min_lesion_probability_from``): set in the
options (``--min-lesion-probability``, the Slicer panel), recorded by the model's package, or 0.65."""


def min_lesion_probability_source(options: SegmentationOptions, metadata: Optional[Dict[str, Any]]) -> str:
    """Which of :data:`MIN_LESION_PROBABILITY_SOURCES` decided the threshold of ``options`` run with the package
    whose ``metadata`` is given."""
    from ..package import package_min_lesion_probability

    if options.postprocessing.min_lesion_probability is not None:
        return MIN_LESION_PROBABILITY_SOURCES[0]
    return MIN_LESION_PROBABILITY_SOURCES[1 if package_min_lesion_probability(metadata) is not None else 2]


def _engine_options(options: SegmentationOptions, engine: Any) -> SegmentationOptions:
    """``options`` corrected to what a given ``engine`` actually runs; a warning for each setting it overrides."""
    actual = _engine_settings(options, engine)
    if options.tta != actual["tta"]:
        log.warning("warning: the engine given runs with%s TTA; ignoring tta=%s.", "" if actual["tta"] else "out",
                    options.tta)
    if options.backend not in ("auto", actual["backend"]):
        log.warning("warning: the engine given runs the %s backend; ignoring backend=%r.", actual["backend"],
                    options.backend)
    # the device types that satisfy what was asked: "auto" any, "gpu" CUDA or a Mac's GPU, else itself
    asked = options.device.split(":")[0]
    accepted = {"auto": None, "gpu": ("cuda", "mps")}.get(asked, (asked,))
    if accepted is not None and not actual["device"].startswith(accepted):
        log.warning("warning: the engine given runs on %s; ignoring device=%r.", actual["device"], options.device)
    # precision, threads and batch size asked for were replaced by the engine's without a word (the inference
    # options audit: precision='fp32' ran bf16), where the docstrings promise a warning for each setting overridden
    if options.precision not in ("auto", actual["precision"]):
        log.warning("warning: the engine given runs with precision %r; ignoring precision=%r.", actual["precision"],
                    options.precision)
    for name in ("threads", "batch_size"):
        if getattr(options, name) is not None and getattr(options, name) != actual[name]:
            log.warning("warning: the engine given runs with %s=%r; ignoring %s=%r.", name, actual[name], name,
                        getattr(options, name))
    if options.window_level is not None:
        raise InputError("A window override needs the Segmenter to build its own engine; do not pass an engine.")
    return dataclasses.replace(options, **actual)


def _failed_check_warning(what: str, error: BaseException) -> str:
    """The report's warning for an image check (``what``: metal, fluid in the liver) that raised
    ``error``: it is left out, and the run goes on."""
    return (f"The {what} check failed ({type(error).__name__}: {error}) and was left out: the segmentation and "
            f"the report's measurements do not depend on it, but a warning it might have given is missing.")


def untrained_tumor_warnings(metadata: Optional[Dict[str, Any]]) -> List[str]:
    """A warning when the model package's ``training`` record says its network never saw a tumor: no training
    label held tumor (``tumor_label_cases`` 0) and synthetic lesions were off (a liver-only model, trained with
    ``--label-map '{"1": 1, "2": 1}' --synthetic-lesions false``, or on liver labels alone). Such a model reported
    "tumors: 0" as if it had looked for them. Packages that do not record ``tumor_label_cases`` (written before it,
    or not by ``train``) get none."""
    training = (metadata or {}).get("training")
    if not isinstance(training, dict) or training.get("synthetic_lesions") is not False or \
            training.get("tumor_label_cases") != 0:
        return []
    return ["This model was trained without tumors (no training label held tumor, and synthetic lesions were off): "
            "it does not segment tumors, so a lesion count of 0 does not mean the liver is free of them. Use a model "
            "trained with tumor labels or synthetic lesions, such as the bundled default, to look for tumors."]


def _check_warnings(what: str, check: Callable[..., List[str]], *args: Any) -> List[str]:
    """``check(*args)``'s warnings, or :func:`_failed_check_warning` when it raises: an image check that only adds
    warnings (:mod:`.metal`, :mod:`.fluid_in_liver`) must not fail a segmentation the network has already made (an
    IndexError in the metal check once ended segment there)."""
    try:
        return list(check(*args))
    except Exception as error:  # noqa: BLE001 - reported in the warnings instead
        log.warning("the %s check failed", what, exc_info=True)
        return [_failed_check_warning(what, error)]


def _why_not_hu(volume: CTVolume, allow_non_hu: bool) -> Optional[str]:
    """Why the rules that read Hounsfield units (the two-stage crop's air gate, the anatomical post-processing)
    must not run on ``volume``, or None when they may. Without ``allow_non_hu`` the input checks have refused
    any CT not in HU, so it is in HU; with it, :func:`~LiverTumorSegLib.validation.not_hu_reason` decides, so a
    CT in HU let through with ``--allow-non-hu`` (e.g. another Modality tag) keeps every HU rule."""
    if not allow_non_hu:
        return None
    from ..validation import not_hu_reason
    return not_hu_reason(volume)


def _checked_in_memory(volume: Any, allow_non_hu: bool, aligned_for_model: bool = True) -> List[str]:
    """:func:`~LiverTumorSegLib.validation.check_ct`'s warnings for an in-memory CT (raises InputError for
    what it refuses), after making sure it is a CTVolume at all. ``aligned_for_model``: an oblique CT is segmented
    on a patient-aligned grid (``oblique_grid`` ``aligned``), which its warning says."""
    from ..validation import check_ct

    if not isinstance(volume, CTVolume):
        raise InputError(f"segment_volume needs a CTVolume (array (z, y, x) in HU with its ImageGeometry), not "
                         f"{type(volume).__name__}; e.g. CTVolume(array_zyx, ImageGeometry(spacing=(sx, sy, sz))) "
                         f"or LiverTumorSegLib.io.read_volume(path).")
    return check_ct(volume, allow_non_hu=allow_non_hu, aligned_for_model=aligned_for_model,
                    oblique_grid_stored=not aligned_for_model)  # segment's only other choice


class _FillCopyWouldNotFit(Exception):
    """A preparation made ahead is not made: the copy with a resampling's fill made air would not fit in memory
    (:meth:`Segmenter._check_fill_copy_fits`)."""


MAX_NETWORK_VOLUMES_KEPT = 4
"""CTs whose network form :meth:`Segmenter.network_volume` keeps until :meth:`Segmenter.predict` takes it: a batch
holds two (the one running, the next one read). The cache holds the CT itself only weakly: one prepared and then
refused (its memory check, a cancel) goes when its caller lets go of it."""


def _forget_network_volume(cache: Dict[int, Tuple[Any, Any, Any, Any]], lock: Any, key: int, reference: Any) -> None:
    """The weak-reference callback of :meth:`Segmenter.network_volume`: the CT ``reference`` pointed to is gone, so
    its entry ``key`` of ``cache`` goes too (unless the entry is already another CT's, which got the same id)."""
    with lock:
        entry = cache.get(key)
        if entry is not None and entry[0] is reference:
            del cache[key]


def _on_the_true_grid(two_stage_record: Dict[str, Any], network_volume: CTVolume, volume: CTVolume
                      ) -> Dict[str, Any]:
    """``two_stage_record`` with the mL of the liver parts its crop left out (``parts_outside_crop``, measured on
    ``network_volume``, the CT enlarged in-plane for a small body) on ``volume``'s true voxel size: they read the
    in-plane scale squared too much (40.2 mL for an 8 mL part at 2.24x)."""
    outside = two_stage_record.get("parts_outside_crop")
    if network_volume is volume or not isinstance(outside, dict):
        return two_stage_record
    voxel_ratio = float(np.prod(volume.geometry.spacing)) / float(np.prod(network_volume.geometry.spacing))
    return dict(two_stage_record, parts_outside_crop=dict(outside, volume_ml=outside["volume_ml"] * voxel_ratio))


class Segmenter:
    """Segments CT volumes with one model package, loaded once.

    ``options``: :class:`SegmentationOptions` (default: the bundled model, ``device="auto"``).
    ``package``: an already-loaded model package (skips loading ``options.model``). ``engine``: an already-built
    engine (anything with ``predict``/``predict_with_probability``, normally :class:`SliceInferenceEngine`);
    its device/TTA/backend win over ``options`` (a warning says so) and the report records what it runs.
    """

    _load_seconds = 0.0
    _load_parts = {}  # type: Dict[str, float]
    _monai_hidden = None  # type: Optional[bool]
    _load_overlapped_read = False
    _load_overlapped_preprocess = False

    def __init__(self, options: Optional[SegmentationOptions] = None, package: Any = None, engine: Any = None) -> None:
        options = options if options is not None else SegmentationOptions()
        if not isinstance(options, SegmentationOptions):
            convert = "; for a dict use SegmentationOptions.from_dict(...)" if isinstance(options, dict) else ""
            raise InputError(f"options must be SegmentationOptions (got {type(options).__name__}){convert}.")
        self.package = package if engine is None else getattr(engine, "package", package)
        self.engine = engine
        self._engine_given = engine is not None  # its model is the engine's, whatever options.model names
        self.options = options if engine is None else _engine_options(options, engine)
        self._load_lock = threading.Lock()
        self._bundled_default = None  # type: Optional[bool]  # the loaded package is the bundled default
        self._network_lock = threading.Lock()  # the engine keeps per-call state: one CT at a time
        self._preprocessing_known = threading.Event()  # set by the load once the config is known, and when it ends
        self._loading_config = None  # type: Any  # the package's preprocessing config, as the engine will use it
        # id(CT) -> (weak reference to the CT, its network form (enlarged, or a resampling's fill made air) or None:
        # the CT itself, body_size record, ResamplingFill or None)
        self._network_volumes = {}  # type: Dict[int, Tuple[Any, Optional[CTVolume], Optional[Dict[str, Any]], Any]]
        self._network_volumes_lock = threading.RLock()  # an entry's weak-reference callback may run under it

    def network_volume(self, volume: CTVolume) -> Tuple[CTVolume, Optional[Dict[str, Any]]]:
        """``(the CT the network is given, the report's body_size record or None)`` for ``volume``: in a CT in HU a
        resampling's fill outside the original field of view (:mod:`.resampling_fill`) is given as air, on a copy;
        a body much narrower than the training adults' is given enlarged in-plane (:mod:`.body_size`;
        ``options.body_size_scaling``, a CT in HU only; a body the fill cuts counts as cut); any other CT is given
        as it is. Kept for the same CT object until :meth:`predict` takes it, so an early resampling
        (:meth:`_prepare_while_loading`, a batch's reader) prepares the very object the engine is then given (its
        preparation serves only that object)."""
        return self._network_form(volume)[:2]

    def network_volume_ahead(self, volume: CTVolume, reserved_bytes: int = 0) -> Optional[CTVolume]:
        """The CT the network is given (:meth:`network_volume`) for a preparation made ahead (``segment`` while the
        model loads, a batch's reader), or None when the copy with a resampling's fill made air would not fit in
        memory beside the network's needs: nothing is copied then, and the memory check after the load refuses the
        CT with its numbers. ``reserved_bytes``: memory other work may still take meanwhile (a batch's running
        network, :class:`~.batch.RunningNetworkMemory`), asked for too, as the network-grid copy's check does.
        None too when making it fails in any other way (logged at debug level): a preparation made ahead is only an
        offer, and :meth:`network_volume` in the CT's turn does it again and reports a real problem. Running out of
        memory here (the fill search, beside the model load or a batch's running network) failed the case as 'Ran
        out of memory' before its turn, for memory that other work held."""
        try:
            return self._network_form(volume, ahead=True, reserved_bytes=reserved_bytes)[0]
        except _FillCopyWouldNotFit:
            return None
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.debug("the CT's network form was not made ahead (%s); it is made in the CT's turn", exc)
            return None

    def _network_form(self, volume: CTVolume, ahead: bool = False,
                      reserved_bytes: int = 0) -> Tuple[CTVolume, Optional[Dict[str, Any]], Any]:
        """:meth:`network_volume` and the :class:`~.resampling_fill.ResamplingFill` found in ``volume`` (or None).
        The fill's copy is checked against the available memory before it is made (:meth:`_check_fill_copy_fits`;
        ``ahead``: :meth:`network_volume_ahead`'s check, which raises :class:`_FillCopyWouldNotFit`)."""
        with self._network_volumes_lock:
            known = self._network_volumes.get(id(volume))
        if known is not None and known[0]() is volume:
            return (volume if known[1] is None else known[1]), known[2], known[3]
        record = None
        network_volume = volume
        in_hu = _why_not_hu(volume, self.options.allow_non_hu) is None
        fill = _resampling_fill(volume) if in_hu else None
        if fill is not None:
            from .resampling_fill import without_fill

            self._check_fill_copy_fits(volume, ahead, reserved_bytes)
            network_volume = without_fill(volume, fill.mask)  # a copy: the user's CT is left as it is
        if self.options.body_size_scaling and in_hu:
            from .body_size import (body_size_failed_record, body_size_record, training_body_diameter_mm,
                                    with_in_plane_scale)

            metadata = self._package_metadata()  # read once for both (before the load: from the file)
            training_diameter_mm = training_body_diameter_mm(metadata)
            try:
                record = body_size_record(network_volume, training_diameter_mm, None if fill is None else fill.mask)
            except Exception as error:  # noqa: BLE001 - the CT is then given as it is, and the report says why
                log.warning("the body size check failed", exc_info=True)
                record = body_size_failed_record(training_diameter_mm, error)
            unscaled = self._grid_ignores_pixel_spacing(metadata) if record.get("in_plane_scale", 1.0) != 1.0 else ""
            if unscaled:
                record = dict(record, in_plane_scale=1.0, not_scaled=unscaled)  # and no warning of an enlargement
            if record["in_plane_scale"] != 1.0:
                network_volume = with_in_plane_scale(network_volume, record["in_plane_scale"])
        # the CT is held weakly (and never as its own network form): a CT prepared and then refused before
        # predict took it (a batch case over the memory limit, a cancel) held up to 4 CTs in memory for good
        key = id(volume)
        reference = weakref.ref(volume, functools.partial(_forget_network_volume, self._network_volumes,
                                                          self._network_volumes_lock, key))
        with self._network_volumes_lock:
            self._network_volumes[key] = (reference, None if network_volume is volume else network_volume, record,
                                          fill)
            while len(self._network_volumes) > MAX_NETWORK_VOLUMES_KEPT:  # CTs prepared but never run (failed)
                self._network_volumes.pop(next(iter(self._network_volumes)))
        return network_volume, record, fill

    def _check_fill_copy_fits(self, volume: CTVolume, ahead: bool = False, reserved_bytes: int = 0) -> None:
        """Refuse (ResourceError, with the numbers and the copy named) a CT whose copy with a resampling's fill made
        air (:func:`~.resampling_fill.fill_copy_bytes`) would not fit in memory beside what the network needs, before
        the copy is made: made first (the memory check ran after it), a CT too large for it ended in a bare
        MemoryError ('Ran out of memory (MemoryError)') instead of the check's refusal. ``ahead`` (a preparation made
        while the model loads, or by a batch's reader): :class:`_FillCopyWouldNotFit` instead, so that the check after
        the load words the refusal; before the load the package's preprocessing is used, as the preparation's own
        check does (``prepared_input.prepare_if_it_fits``). ``reserved_bytes`` (ahead only): memory other work may
        still take meanwhile (a batch's running network), asked for beside the copy."""
        from ..errors import ResourceError
        from .resampling_fill import fill_copy_bytes

        pending = fill_copy_bytes(volume.array)
        if ahead:
            pending += int(reserved_bytes or 0)
        try:
            if ahead and not self.loaded:
                config = self.known_preprocessing
                if config is None:
                    raise _FillCopyWouldNotFit()  # nothing to count it with: the engine makes the copy after the load
                from ..validation import check_network_memory

                check_network_memory(volume, config, None, 3, self.options.batch_size, 0.0, pending_bytes=pending)
            else:
                _estimate_and_check_memory(volume, self.package, self.options.batch_size, self._aligned_grid(volume),
                                           pending_bytes=pending)
        except ResourceError as exc:
            if ahead:
                raise _FillCopyWouldNotFit() from None
            raise ResourceError(f"{exc} (This counts the copy of the CT, {pending / 2 ** 20:.0f} MiB, that the network "
                                f"is given with its resampling's fill outside the field of view made air.)") from None

    def _grid_ignores_pixel_spacing(self, metadata: Optional[Dict[str, Any]] = None) -> str:
        """Why an enlargement of the CT's pixel spacing would not reach the network, or '': the package's
        preprocessing gives the network the CT's own pixels (``target_spacing_mm`` null) or resizes each slice to a
        fixed size (``target_size``), so the spacing the body-size scaling multiplies is never read. A package of
        such a preset (``zscore_body``, ``window250_equalized``) was reported 'given the CT enlarged 1.66x' with
        an unchanged input (the train/infer audit). The config the engine runs, else the package's, else the one its
        metadata records (``metadata``: :meth:`_package_metadata`, read there where not given)."""
        config = self.known_preprocessing
        if config is None:
            config = getattr(self.package, "preprocessing", None)
        if config is None:
            metadata = self._package_metadata() if metadata is None else metadata
            config = metadata.get("preprocessing") if isinstance(metadata, dict) else None
        if isinstance(config, dict):
            try:
                from ..preprocessing.config import PreprocessingConfig

                config = PreprocessingConfig.from_dict(config)
            except Exception:  # noqa: BLE001 - the load refuses such a record, saying why
                return ""
        if config is None:
            return ""
        if getattr(config, "target_size", None):
            return ("the model resizes each slice to a fixed size (target_size), so an enlargement would not "
                    "change its input")
        if getattr(config, "target_spacing_mm", 1.5) is None:
            return ("the model takes the CT's own pixels (target_spacing_mm null), so an enlargement would not "
                    "change its input")
        return ""

    def _package_metadata(self) -> Optional[Dict[str, Any]]:
        """The package's metadata: the loaded package's, else (before the load has made it) read from the file (not
        yet verified: a batch's reader or the early resampling decides with it, and the engine then uses that work
        only for the very CT object it is given, which the verified package's run asks for again only through this
        cache); None for an engine given without a package (a model of its own) or a file it cannot read."""
        metadata = getattr(self.package, "metadata", None)
        if metadata is None and self.package is None and not self._engine_given:  # the package load() will read
            try:
                from ..package import read_package_metadata, resolve_model

                metadata = read_package_metadata(resolve_model(self.options.model))
            except Exception:  # noqa: BLE001 - the load reports a package it cannot read; here: not scaled
                return None
        return metadata

    def check_network_memory(self, volume: CTVolume, pending_bytes: int = 0) -> Optional[int]:
        """:func:`_estimate_and_check_memory` of the CT the network is given (:meth:`network_volume`): a child's CT
        enlarged 1.5x in-plane is resampled to 2.25x the network pixels (the 20-slice CT shrunk to 0.6x: 631 MiB
        where its own grid counts 472 MiB); a refusal then says that the enlargement is counted. An oblique CT is
        counted on the patient-aligned grid the network runs on (:meth:`_aligned_grid`), and a refusal says so.
        ``pending_bytes``: memory other work will take while the network runs (a batch's read of the next CT, not
        finished yet), asked for too."""
        from ..errors import ResourceError, option_hint

        network_volume, record = self.network_volume(volume)
        grid = self._aligned_grid(network_volume)
        try:
            return _estimate_and_check_memory(network_volume, self.package, self.options.batch_size, grid,
                                              _prepared_bytes(self.engine, network_volume), pending_bytes)
        except ResourceError as exc:
            if grid is not None:
                flag = option_hint("--oblique-grid stored", "oblique_grid='stored'")
                raise ResourceError(f"{exc} (This counts the patient-aligned grid the oblique CT is resampled onto "
                                    f"for the network; to run the network on the CT's own slices, run again with "
                                    f"{flag}.)") from None
            if record is None or record["in_plane_scale"] == 1.0:  # not enlarged (maybe a copy without a fill)
                raise
            flag = option_hint("--no-body-size-scaling", "body_size_scaling=False")
            raise ResourceError(f"{exc} (This counts the CT enlarged {record['in_plane_scale']:.2f}x in-plane for the "
                                f"network, as its body is small; to give it as it is, run again with "
                                f"{flag}.)") from None

    def network_memory_to_come(self, volume: CTVolume, required: Optional[int]) -> int:
        """Bytes the network may still allocate for ``volume`` beyond what it holds already, given ``required``
        (:meth:`check_network_memory`'s estimate): the estimate less the CT the network is given
        (:meth:`network_volume`, made already) and less a network-grid CT prepared ahead for it
        (:func:`_prepared_bytes`), which the check counted as held too; never negative. A batch publishes it for
        the reader's early copy of the next CT (:class:`~.batch.RunningNetworkMemory`): that copy's check reads
        the available memory, out of which these arrays are taken already, and counting them again refused the
        next CT's early copy beside a network that had room for it."""
        if not required:
            return 0
        network_volume = self.network_volume(volume)[0]
        held = int(network_volume.array.nbytes) + _prepared_bytes(self.engine, network_volume)
        return max(0, int(required) - held)

    def _take_network_volume(self, volume: CTVolume) -> Tuple[CTVolume, Optional[Dict[str, Any]], Any]:
        """:meth:`_network_form` (with the resampling fill), then forgotten (the CT is not held beyond its run)."""
        result = self._network_form(volume)
        with self._network_volumes_lock:
            self._network_volumes.pop(id(volume), None)
        return result

    # ------------------------------------------------------------------ loading
    @property
    def loaded(self) -> bool:
        return self.engine is not None

    def load(self, progress: Optional[ProgressCallback] = None) -> "Segmenter":
        """Load the package (unless given) and build the engine; later calls do nothing. Returns self.
        Thread-safe: a call while another thread loads waits for that load (:meth:`segment_file` loads in a
        background thread while it reads the input)."""
        with self._load_lock:
            try:
                if self.engine is None:
                    from ..validation import check_room_for_model_load

                    check_room_for_model_load()  # before torch is imported: a load under a tight ulimit -v hung
                    self._load(progress)
            finally:
                self._preprocessing_known.set()  # loaded or failed: nobody waits for a config any more
        return self

    def _config_known(self, config: Any) -> None:
        """The load's ``preprocessing_ready`` callback: the package's preprocessing config (its metadata validated;
        its hashes are checked after, and work on it is used only once the load succeeded), with the
        window override the engine will get (a thread waiting in :meth:`preprocessing_while_loading` goes on)."""
        o = self.options
        if o.window_level is not None:
            config = window_overridden_config(config, o.window_level, o.window_width)
        elif isinstance(config, dict):  # a package object given with a plain dict, as the engine converts it
            from ..preprocessing import PreprocessingConfig
            config = PreprocessingConfig.from_dict(config)
        self._loading_config = config
        self._preprocessing_known.set()

    @property
    def known_preprocessing(self) -> Any:
        """The preprocessing config the engine runs with, when it is known without waiting: the engine is built,
        or its package's metadata has been validated and the load goes on; else None. (A batch's reader thread
        resamples CTs with it; the engine uses that work only for an equal config, after a successful load.)"""
        engine = self.engine
        if engine is not None:
            return getattr(engine, "preprocessing", None)
        return self._loading_config if self._preprocessing_known.is_set() else None

    def preprocessing_while_loading(self, loading: "concurrent.futures.Future") -> Any:
        """The preprocessing config of the package the background ``loading`` (:func:`_load_in_background`) is
        loading, as soon as its metadata is validated and before its network is planned and built (MONAI's
        import); None when the load ended first (or failed). Waits in steps, as :func:`wait_for_load`."""
        while not self._preprocessing_known.wait(LOAD_WAIT_STEP_SECONDS):
            pass
        return None if loading.done() else self._loading_config

    def _load(self, progress: Optional[ProgressCallback]) -> None:
        reporter = ProgressReporter(progress)
        reporter(0.0, "loading model")
        start = time.perf_counter()
        import numpy
        import torch  # timed on its own: in a fresh process the imports are most of a model load

        from ..models.monai_import import monai_import_facts
        from .device import check_torch_numpy

        check_torch_numpy(torch.__version__, numpy.__version__, torch)  # before the package's tensors meet numpy
        from .engine import SliceInferenceEngine, load_package

        imported = time.perf_counter()
        monai_before = monai_import_facts()["seconds"]
        package = load_package(self.package if self.package is not None else self.options.model,
                               preprocessing_ready=self._config_known)
        if self.options.window_level is not None:
            package = with_window_override(package, self.options.window_level, self.options.window_width)
        packaged = time.perf_counter()
        monai = monai_import_facts()
        o = self.options
        self.engine = SliceInferenceEngine(package, device=o.device, batch_size=o.batch_size, tta_flip=o.tta,
                                           backend=o.backend, threads=o.threads, precision=o.precision)
        self.package = self.engine.package
        self._bundled_default = None  # judged again of this package
        end = time.perf_counter()
        self._load_seconds = end - start  # reported once, by the first segmentation, with its parts:
        monai_seconds = max(0.0, monai["seconds"] - monai_before)
        self._load_parts = {"import_torch": imported - start, "import_monai": monai_seconds,
                            "read_verify_build": packaged - imported - monai_seconds, "engine": end - packaged}
        self._monai_hidden = monai["optional_packages_hidden"] if monai_seconds else None
        reporter(1.0, "loading model")

    @property
    def postprocessing(self) -> PostprocessingOptions:
        """``options.postprocessing`` as it runs with this Segmenter's package: a ``min_lesion_probability`` of
        None (the model's) is the package's recorded threshold, else 0.65 (:func:`model_postprocessing`)."""
        return model_postprocessing(self.options, getattr(self.package, "metadata", None))

    @property
    def device_description(self) -> str:
        """What runs the network, e.g. ``cpu (2 threads, torch)`` (after :meth:`load`)."""
        return str(getattr(self.engine, "device_description", self.options.device))

    def _ran_bundled_default(self) -> bool:
        """Whether the package that ran is the bundled default (:func:`~LiverTumorSegLib.package.is_bundled_default`):
        what the arterial-phase warning may say of it. Judged once per load (the package does not change between)."""
        if self._bundled_default is None:
            from ..package import is_bundled_default

            self._bundled_default = is_bundled_default(getattr(self.package, "metadata", None))
        return bool(self._bundled_default)

    def _run_facts(self) -> Dict[str, Any]:
        """Report entries saying what actually ran."""
        from .. import __version__
        from ..package import network_settings_sha256

        engine, package = self.engine, self.package
        options = dataclasses.replace(self.options, **_engine_settings(self.options, engine),  # e.g. "auto" resolved
                                      postprocessing=self.postprocessing)  # the model's lesion threshold filled in
        metadata = getattr(package, "metadata", None) or {}
        return {"model": str(getattr(package, "name", "") or getattr(package, "path", "") or options.model),
                "model_path": str(getattr(package, "path", "") or ""),  # which file ran (names can repeat)
                "model_weights_sha256": str(metadata.get("weights_sha256", "")),
                # the package's architecture and preprocessing: same weights with another window is another model
                "model_settings_sha256": network_settings_sha256(metadata) if metadata else "",
                "library_version": str(__version__),
                "device": self.device_description,
                "backend": options.backend,
                "postprocessing": options.postprocessing.to_dict(),
                "min_lesion_probability_from": min_lesion_probability_source(self.options, metadata),
                "two_stage": bool(options.two_stage),
                "tta_flip": bool(getattr(engine, "tta_flip", options.tta)),
                "precision": dict(getattr(engine, "last_precision", None) or {"requested": options.precision}),
                "options": options.to_dict()}

    # ------------------------------------------------------------------ in memory
    def segment_volume(self, volume: CTVolume, progress: Optional[ProgressCallback] = None,
                       cancel: Optional[CancellationToken] = None, checked: bool = False) -> SegmentationResult:
        """Segment a CT ``(z, y, x)`` (HU); labels come back in its geometry. Nothing is written, and the
        warnings (liver volume and the other plausibility checks) are in ``result.warnings`` and
        ``result.report["warnings"]``, not logged; only the model's load logs a device fallback (a GPU asked for but
        absent), which is among those warnings too.

        The CT first gets the checks ``segment`` makes (:func:`~LiverTumorSegLib.validation.check_ct`: not HU,
        NaN, 2D/4D, a broken direction, ...; ``options.allow_non_hu`` as there), so an array scaled to 0..1 is
        refused instead of segmented into nonsense (an array in (x, y, z) order gets a warning only when its shape
        gives it away: slices with one short side, 20 voxels of a 20-slice CT, or thin "slices" of a tall stack; a
        CT with as many slices as columns transposed gets none, so give the ``(z, y, x)`` array
        :func:`~LiverTumorSegLib.io.read_volume` returns); its warnings come first in ``result.warnings``.
        ``checked=True``: the caller has run them (``segment_file``), and the memory check at the network's
        resolution (:meth:`check_network_memory`, ResourceError), which is made here otherwise. A package whose
        preprocessing makes another number of channels than its network takes is refused here too, not only in
        ``segment_file``.

        The report records ``precision`` (what arithmetic ran and the bf16 check), ``air_slices_skipped`` (the
        slices whose whole input stack was air, not given to the network; null when every slice ran) and
        ``timings_s``: seconds per stage (``model_load`` on the call that loaded it, the engine's ``reorient``,
        ``preprocess``, ``network``, ``restore``, then ``postprocess`` and ``report``). Same as :meth:`finish` of :meth:`predict`."""
        input_warnings = [] if checked else _checked_in_memory(volume, self.options.allow_non_hu,
                                                                 self.options.oblique_grid == "aligned")
        reporter = ProgressReporter(progress)
        if not checked:  # the memory check segment makes at the network's resolution: a CT with 19.9 mm pixels
            if not self.loaded:  # ran into a MemoryError minutes in here, where segment refused it at once
                self.load(reporter.sub(0.0, 0.02))
            self.check_network_memory(volume)
        output = self.predict(volume, reporter.sub(0.0, 0.9), cancel)
        if cancel is not None:
            cancel.raise_if_cancelled()
        result = self.finish(volume, output, reporter.sub(0.9, 1.0))
        if input_warnings:
            result.warnings = input_warnings + result.warnings
            result.report["warnings"] = list(result.warnings)
        return result

    def predict(self, volume: CTVolume, progress: Optional[ProgressCallback] = None,
                cancel: Optional[CancellationToken] = None) -> "NetworkOutput":
        """The network part of :meth:`segment_volume`: raw labels and tumor probability in ``volume``'s
        geometry, with the run facts and timings of this call. Uses the engine, one call at a time (a lock:
        threads sharing a Segmenter wait for each other); :meth:`finish` does not, so a batch can finish one CT
        on another thread while the next runs."""
        start = time.perf_counter()
        reporter = ProgressReporter(progress)
        if not self.loaded:
            self.load(reporter.sub(0.0, 0.02))
        self._put_backend_back()  # an earlier CT's torch run that ended in an error (cancelled, refused)
        if getattr(self.engine, "_batch_predictor", None) is None:  # a stand-in predictor has no network to feed
            from ..package import check_input_channels
            check_input_channels(self.package)  # segment_volume and segment_file both come here
        timings = {}  # type: Dict[str, float]
        load_parts = None
        if self._load_seconds:
            timings["model_load"], self._load_seconds = self._load_seconds, 0.0
            load_parts = dict(rounded_timings(self._load_parts), monai_optional_packages_hidden=self._monai_hidden,
                              during_read=self._load_overlapped_read)  # during_preprocess: below
            log.debug("model load (s): %s", ", ".join(f"{k} {v:.2f}" for k, v in self._load_parts.items()))
        if cancel is not None:
            cancel.raise_if_cancelled()
        not_hu = _why_not_hu(volume, self.options.allow_non_hu)  # for the crop's air gate and finish's HU rules
        # a child's CT is given enlarged (its labels come back on its own voxels); finish works on the true grid
        network_volume, body_size, fill = self._take_network_volume(volume)
        with self._network_lock:  # two threads sharing one Segmenter mixed up the engine's buffers
            two_stage_record, grid_record = {}, {}  # type: Dict[str, Any], Dict[str, Any]
            skips_air = hasattr(self.engine, "skip_air_below_hu")
            skipping_air = False
            if skips_air:  # slices whose whole input stack is air, which the air step would clear, are not run
                from .postprocess import ORGAN_AIR_HU

                self.engine.skip_air_below_hu = ORGAN_AIR_HU if (self.options.postprocessing.air_to_background
                                                                 and not_hu is None) else None
                skipping_air = self.engine.skip_air_below_hu is not None
                self.engine.last_air_slices_skipped = 0  # the passes and footprint runs below add to it
            try:
                labels, probability = self._network(network_volume, reporter.sub(0.02, 1.0), cancel,
                                                    keep_probability=True, two_stage_record=two_stage_record,
                                                    in_hu=not_hu is None, grid_record=grid_record)
            finally:
                if skips_air:
                    self.engine.skip_air_below_hu = None
            if fill is not None:  # no label in a resampling's fill: this call's own arrays, cleared in place
                labels, probability = _cleared_outside_scan(labels, probability, fill.mask)
            timings.update(getattr(self.engine, "last_timings", None) or {})
            if load_parts is not None:  # the CT was resampled while the model loaded (segment_file)
                load_parts["during_preprocess"] = bool(self._load_overlapped_preprocess and
                                                       getattr(self.engine, "used_offered", False))
            facts = self._run_facts()
            if skips_air:  # null: every slice ran (--keep-liver-in-air, a CT not in HU)
                facts["air_slices_skipped"] = (int(getattr(self.engine, "last_air_slices_skipped", 0) or 0)
                                               if skipping_air else None)
            if body_size is not None:
                facts["body_size"] = body_size
            if fill is not None:
                facts["resampling_fill"] = fill.record()
            if grid_record:  # an oblique CT, segmented on an axis-aligned grid
                facts["network_grid"] = grid_record
            if self.options.two_stage:  # where the fine pass ran, or its fallback (finish warns of both)
                facts["two_stage_record"] = _on_the_true_grid(two_stage_record, network_volume, volume)
                if grid_record:  # its crop_zyx indexes the patient-aligned grid the network ran on
                    facts["two_stage_record"] = dict(facts["two_stage_record"], grid="network_grid")
            # read here, not in finish: a batch finishes this CT on another thread while the next CT's network
            # runs, and a fallback there (an Apple GPU or ONNX Runtime failing on it) put its warning in this
            # CT's report, which ran before it
            device_message = getattr(self.engine, "device_message", None)
            self._put_backend_back()  # this CT's torch run ends here (use_torch_for_several_slice_sizes)
        from ..validation import release_freed_heap

        release_freed_heap()  # the network's freed batch buffers, before post-processing adds its arrays
        return NetworkOutput(labels=labels, probability=probability, facts=facts, timings=timings,
                             model_load_parts=load_parts, seconds=time.perf_counter() - start, not_hu=not_hu,
                             device_message=device_message, outside_scan=None if fill is None else fill.mask)

    def finish(self, volume: CTVolume, output: "NetworkOutput", progress: Optional[ProgressCallback] = None
               ) -> SegmentationResult:
        """Post-processing and the lesion report of :meth:`predict`'s ``output`` for the same ``volume``."""
        start = time.perf_counter()
        reporter = ProgressReporter(progress)
        reporter(0.0, "post-processing")
        from .lesion_report import lesion_report
        from .postprocess import ORGAN_AIR_HU, postprocess_labels, postprocessing_warnings

        timings, probability, facts = dict(output.timings), output.probability, output.facts
        network_labels, probability, hu_ct = _outside_scan_cleared(volume, output)  # a resampling's fill: air
        # the CT and its geometry let post-processing find the lungs (organ above the lung bases is removed)
        # ... and the tumor probability lets it turn small uncertain lesions into liver
        changes = {}  # type: Dict[str, Any]
        # ... both anatomical rules read Hounsfield units (air, lung density, a vessel within 15 HU of the
        # liver), so a CT that does not look like HU (let through by allow_non_hu) gets the shape-only rules
        # instead of HU thresholds on 0..1; a CT in HU keeps them, allow_non_hu or not
        hu_rules_skipped = output.not_hu or ""
        hu = None if hu_rules_skipped else hu_ct
        labels = postprocess_labels(network_labels, volume.spacing_zyx, self.postprocessing,
                                    hu_zyx=hu, geometry=volume.geometry, tumor_probability_zyx=probability,
                                    changes=changes)
        timings["postprocess"] = time.perf_counter() - start
        reporter(0.5, "lesion report")
        stage_start = time.perf_counter()
        # every lesion carries its mean tumor probability, so a reader can sort lesions by confidence
        source = dict(input=volume.source)
        for key in ("input_file", "input_dicom"):  # a CT file's size and time, or a DICOM series' UID and files:
            if isinstance(volume.meta.get(key), dict):  # to recognise it later (a resumed batch)
                source[key] = dict(volume.meta[key])
        report = lesion_report(labels, volume.geometry, hu_ct, extra=dict(facts, **source),
                               tumor_probability_zyx=probability, network_labels_zyx=network_labels,
                               in_hu=not hu_rules_skipped,
                               dicom_slice_thickness_mm=volume.meta.get("dicom_slice_thickness_mm"),
                               given_slice_thickness_mm=volume.meta.get("given_slice_thickness_mm"))
        if not self.options.probabilities:
            probability = None
        report["postprocessing_changes"] = changes  # what post-processing took out (mL), nothing silently
        # returned here; segment_file also logs them
        cut = _lesions_cut_by_postprocessing(network_labels, labels, volume.geometry, changes)
        from .plausibility import (lesion_density_warnings, liver_cut_by_image_side,
                                   liver_cut_by_scan_end, liver_extent_warnings, liver_ras_xz, liver_side_warnings,
                                   spine_front_back_warnings, spine_midline_x_mm, spine_sample)
        from .fluid_in_liver import fluid_in_liver_warnings
        from .contrast_phase import arterial_phase_warnings, estimate_contrast_phase, unknown_phase
        from .metal import metal_warnings
        from .water_density import water_density_lesion_warnings

        from .head_foot import head_foot_warnings

        from .resampling_fill import resampling_fill_warning

        from ..metrics.surface import bounding_box

        # the liver's box (labels 0/1/2: any label is liver), read once (0.03 s a 300 x 512 x 512 label map) for
        # the checks that read the liver: each reads only inside it
        liver_box = bounding_box(labels, 1)
        cut_by_scan_end = liver_cut_by_scan_end(labels, volume.geometry)
        cut_by_image_side = liver_cut_by_image_side(labels, volume.geometry, hu,  # a fill is padding in hu
                                                    liver_box=liver_box)
        fill_warning = resampling_fill_warning(facts.get("resampling_fill"))
        warnings = ([fill_warning] if fill_warning else []) + head_foot_warnings(changes.get("head_foot_order")) + \
            postprocessing_warnings(changes, report["liver_volume_ml"], cut_by_scan_end,
                                    self.postprocessing.lesion_probability_statistic) + \
            liver_volume_warnings(report["liver_volume_ml"], cut_by_scan_end=cut_by_scan_end,
                                  cut_by_image_side=cut_by_image_side)
        if cut:
            for lesion in report["lesions"]:
                if lesion["id"] in cut:
                    lesion["cut_by_postprocessing"] = True
            warnings.append(f"post-processing removed part of lesion(s) {', '.join(map(str, sorted(cut)))} (above the "
                            f"lung bases or on air): the report's volume and axes of each are those of the part left "
                            f"(cut_by_postprocessing in the report); check them in the images.")
        if hu_rules_skipped:
            warnings.append(f"The rules that read Hounsfield units were skipped, as the CT's values are not HU "
                            f"({hu_rules_skipped}): liver above the lung bases kept, liver and tumor on air "
                            f"(below {ORGAN_AIR_HU:.0f} HU) kept, tube-shaped tumors judged by shape alone, the "
                            f"liver's side not checked.")
        from .lesion_report import slice_limited_axes_warnings
        warnings += slice_limited_axes_warnings(report["lesions"])  # a tilted grid's axial axes cut by thick slices
        liver_xz = liver_ras_xz(labels, volume.geometry, liver_box)  # read once for both checks
        warnings += liver_extent_warnings(liver_xz, volume.geometry)
        if hu is not None:  # the body is found by its HU
            # front and back swapped: that warning says it, and the liver's side and the aorta, found from the spine's
            # place, are not judged (the side check called such a liver 62 mm left of a 'spine' that was not one)
            spine = spine_sample(hu, volume.geometry, labels)  # read once for both spine checks
            front_back = spine_front_back_warnings(hu, volume.geometry, spine, liver_xz[1])  # the liver's levels
            midline = None if front_back else spine_midline_x_mm(hu, volume.geometry, liver_xz, spine)
            warnings += front_back or liver_side_warnings(liver_xz, hu, volume.geometry, midline)
            warnings += lesion_density_warnings(report["lesions"])  # mean_hu is HU only here
            warnings += water_density_lesion_warnings(report["lesions"], report["recist"])  # a cyst is no tumor
            warnings += _check_warnings("fluid in the liver", fluid_in_liver_warnings, labels, hu,
                                        volume.geometry, liver_box)  # water density in label 1
            warnings += _check_warnings("metal", metal_warnings, hu, labels, volume.geometry,
                                        liver_box)  # metal by its HU
            # the aorta's and the liver's HU: an arterial phase, where the model misses bright tumors, is warned of
            report["contrast_phase"] = unknown_phase("the image's front and back look swapped") if front_back else \
                estimate_contrast_phase(hu, labels, volume.geometry, midline, liver_box)
            warnings += arterial_phase_warnings(report["contrast_phase"], self._ran_bundled_default(),
                                                report.get("model", ""))
        else:
            report["contrast_phase"] = unknown_phase("the CT's values are not HU")
        from .body_size import body_size_warning

        scaled = body_size_warning(facts.get("body_size") or {})
        if scaled:
            warnings.append(scaled)
        from ..metrics.recist import given_slice_thickness_warning

        thickness_unused = given_slice_thickness_warning(volume.geometry, volume.meta.get("given_slice_thickness_mm"))
        if thickness_unused:  # --slice-thickness-mm on coronal slices or thinner than the spacing: said, not dropped
            warnings.append(thickness_unused)
        if (facts.get("two_stage_record") or {}).get("fallback"):
            warnings = ["Two-stage mode found no liver in its coarse pass, so the whole volume was segmented."] \
                + warnings
        outside = (facts.get("two_stage_record") or {}).get("parts_outside_crop")
        if outside:  # as one-stage post-processing reports the liver parts it removes
            from .postprocess import liver_parts_advice
            warnings.append(f"Two-stage mode segmented only the slices of the largest liver part its coarse pass "
                            f"found; {outside['count']} other part(s) (about {outside['volume_ml']:.1f} mL) were "
                            f"left out; {liver_parts_advice(cut_by_scan_end)}")
        device_message = output.device_message  # e.g. CUDA asked for, CPU used
        precision_message = _precision_check_message(self.engine, report.get("precision"))
        warnings = [m for m in (device_message, precision_message) if m] + \
            untrained_tumor_warnings(getattr(self.package, "metadata", None)) + warnings
        report["warnings"] = list(warnings)
        timings["report"] = time.perf_counter() - stage_start
        report["timings_s"] = rounded_timings(timings)
        if output.model_load_parts is not None:  # what the model load spent its time on (CUDA start: "engine")
            report["model_load_s"] = dict(output.model_load_parts)
        log.debug("timings (s): %s", ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
        reporter(1.0, "done")
        return SegmentationResult(labels=labels, geometry=volume.geometry, report=report, warnings=warnings,
                                  device=facts["device"], seconds=output.seconds + time.perf_counter() - start,
                                  tumor_probability=probability)

    def _network(self, volume: CTVolume, progress: ProgressReporter, cancel: Optional[CancellationToken],
                 keep_probability: Optional[bool] = None, two_stage_record: Optional[Dict[str, Any]] = None,
                 in_hu: bool = True, grid_record: Optional[Dict[str, Any]] = None) -> Any:
        """``(labels, tumor probability or None)`` from the engine, one or two stages, on ``volume``'s grid or, for an
        oblique CT, an axis-aligned one (:meth:`_aligned_network`; ``grid_record``: a dict that then receives the
        report's ``network_grid``). ``keep_probability``:
        None = as the options say; an engine without ``predict_with_probability`` gives None.
        ``two_stage_record``: a dict that receives where two-stage's fine pass ran (or its fallback).
        ``in_hu``: the CT's values are HU (:func:`_why_not_hu`), so the crop's air gate may read them."""
        if keep_probability is None:
            keep_probability = self.options.probabilities
        if not hasattr(self.engine, "predict_with_probability"):  # two-stage's fine pass calls it too
            keep_probability = False
        aligned = self._aligned_network(volume, progress, cancel, keep_probability, two_stage_record, in_hu,
                                        grid_record)
        if aligned is not None:
            return aligned
        return self._network_on_grid(volume, progress, cancel, keep_probability, two_stage_record, in_hu)

    def _aligned_network(self, volume: CTVolume, progress: ProgressReporter, cancel: Optional[CancellationToken],
                         keep_probability: bool, two_stage_record: Optional[Dict[str, Any]], in_hu: bool,
                         grid_record: Optional[Dict[str, Any]] = None) -> Any:
        """:meth:`_network` on an axis-aligned grid (:mod:`.axis_aligned`) for a CT whose grid is turned more than
        :data:`.axis_aligned.OBLIQUE_THRESHOLD_DEGREES` against the patient's axes, labels and probability brought
        back onto ``volume``'s grid; None for any other CT (it takes the usual path, unchanged). Two-stage's
        record (where its fine pass ran) is then on the aligned grid. Progress: :data:`ALIGNED_GRID_STAGE` for the
        resampling there (the first 5 %) and back (the last 5 %), the cancel checked after every slab of it."""
        from . import axis_aligned
        from ..orientation import obliquity_degrees

        grid = self._aligned_grid(volume)
        if grid is None:
            return None
        degrees = obliquity_degrees(volume.geometry.direction_matrix)
        start = time.perf_counter()
        onto, network, back = progress.sub(0.0, 0.05), progress.sub(0.05, 0.95), progress.sub(0.95, 1.0)
        onto(0.0, ALIGNED_GRID_STAGE)
        grid_ct = axis_aligned.resampled_onto(volume, grid, _slab_checkpoint(onto, cancel))
        seconds = time.perf_counter() - start
        footprint_record = {}  # type: Dict[str, Any]
        runs = None if self.options.two_stage else self._footprint_runs(grid_ct, volume)
        if runs is None:
            labels, probability = self._network_on_grid(grid_ct, network, cancel, keep_probability, two_stage_record,
                                                        in_hu, scanned_grid=(volume.geometry, volume.shape_zyx))
        else:
            labels, probability = self._network_over_footprint(grid_ct, runs, network, cancel, keep_probability,
                                                               footprint_record)
        del grid_ct
        start = time.perf_counter()
        back(0.0, ALIGNED_GRID_STAGE)
        with_probability = probability is not None
        labels = axis_aligned.labels_back(labels, grid.geometry, volume.geometry, volume.shape_zyx,
                                          slab_done=_slab_checkpoint(back.sub(0.0, 0.7 if with_probability else 1.0),
                                                                     cancel))
        if with_probability:
            probability = axis_aligned.probability_back(probability, grid.geometry, volume.geometry,
                                                        volume.shape_zyx,
                                                        slab_done=_slab_checkpoint(back.sub(0.7, 1.0), cancel))
        seconds += time.perf_counter() - start
        if grid_record is not None:
            grid_record.update(grid.record(), obliquity_degrees=round(degrees, 2),
                               resampling_seconds=round(seconds, 2))
            if footprint_record:
                grid_record["footprint"] = footprint_record
        return labels, probability

    def _footprint_runs(self, grid_ct: CTVolume, volume: CTVolume) -> Optional[List[Any]]:
        """The :func:`~.axis_aligned.footprint_runs` the network is given for ``grid_ct`` (``volume`` resampled onto
        its aligned grid), or None: whole aligned slices, as :data:`~.axis_aligned.FOOTPRINT_MARGIN_PIXELS` is None
        or the runs would read no fewer voxels than the whole grid (a CT long along z turned a little: its boxes
        span nearly whole slices, and the runs' context slices are read twice; the abdomen-pelvis CT turned 10
        degrees: 3.15 million voxels against 2.94, 3.37 s against 3.19, docs/speed.md), or the engine's
        preprocessing gives a pixel a value that depends on the slice it is cut from
        (:func:`_input_depends_on_slice_extent`: a run's box is not the whole aligned slice training learned from)."""
        from . import axis_aligned

        if axis_aligned.FOOTPRINT_MARGIN_PIXELS is None:
            return None
        if _input_depends_on_slice_extent(getattr(self.engine, "preprocessing", None)):
            return None
        inside = axis_aligned.footprint(grid_ct.geometry, grid_ct.shape_zyx, volume.geometry, volume.shape_zyx)
        runs = axis_aligned.footprint_runs(inside, axis_aligned.FOOTPRINT_RUN_SLICES,
                                           axis_aligned.FOOTPRINT_MARGIN_PIXELS, self._context_reach_slices(grid_ct))
        if sum(run.read_voxels for run in runs) >= int(np.prod(grid_ct.shape_zyx, dtype=np.int64)):
            return None
        return runs

    def _network_over_footprint(self, grid_ct: CTVolume, runs: List[Any], progress: ProgressReporter,
                                cancel: Optional[CancellationToken], keep_probability: bool,
                                record: Optional[Dict[str, Any]] = None) -> Any:
        """``(labels, probability or None)`` on the aligned grid of ``grid_ct``, the network run only over the CT's
        footprint: per run of ``runs`` (:meth:`_footprint_runs`), on its box (:func:`~.axis_aligned.run_volume`);
        outside every run's box background and probability 0. The cancel is
        checked before each run (and by the engine within it); progress is ``network`` throughout, each run its
        share of the voxels read; the engine's timings add up over the runs. ``record``: a dict that receives the
        report's ``network_grid.footprint`` (``run_slices``, ``margin_pixels``, ``runs``, ``network_voxels``: the
        aligned voxels the network read, context slices included)."""
        from . import axis_aligned

        if record is not None:
            record.update(run_slices=int(axis_aligned.FOOTPRINT_RUN_SLICES),
                          margin_pixels=int(axis_aligned.FOOTPRINT_MARGIN_PIXELS), runs=len(runs),
                          network_voxels=int(sum(run.read_voxels for run in runs)))
        switch = getattr(self.engine, "use_torch_for_several_slice_sizes", None)  # an ONNX export per box size
        if switch is not None:  # put back once this CT's facts are read (_network_stage): not for a batch's next CT
            self._backend_to_restore = switch(len({tuple(axis_aligned.run_volume(grid_ct, run).shape_zyx[1:])
                                                   for run in runs}))
        labels = np.zeros(grid_ct.shape_zyx, dtype=np.uint8)
        probability = np.zeros(grid_ct.shape_zyx, dtype=np.uint8) if keep_probability else None
        total, done = max(1, sum(run.read_voxels for run in runs)), 0
        check = None  # the engine's precision check, on the run it ran on (a later run records it as an earlier CT's)
        self.engine.last_timings, self.engine.accumulate_timings = {}, True  # every run counts
        try:
            for run in runs:
                if cancel is not None:
                    cancel.raise_if_cancelled()
                part = renamed_stages(progress.sub(done / total, (done + run.read_voxels) / total), {}, "network")
                done += run.read_voxels
                part_ct = axis_aligned.run_volume(grid_ct, run)
                if keep_probability:
                    part_labels, part_probability = self.engine.predict_with_probability(
                        part_ct, progress=part, cancel=cancel, probability_everywhere=self.options.probabilities)
                    probability[run.kept_box] = part_probability[run.kept_in_read]
                else:
                    part_labels = self.engine.predict(part_ct, progress=part, cancel=cancel)
                labels[run.kept_box] = part_labels[run.kept_in_read]
                del part_ct, part_labels
                check = check or _run_precision_check(self.engine, run)
        finally:
            self.engine.accumulate_timings = False
        if check is not None and isinstance(getattr(self.engine, "last_precision", None), dict):
            self.engine.last_precision["check"] = check
        progress(1.0, "network")
        return labels, probability

    def _put_backend_back(self) -> None:
        """The engine's backend as before this CT's footprint runs switched it to torch
        (:meth:`_network_over_footprint`; nothing when none did), so a batch's next CT runs ONNX again."""
        before, self._backend_to_restore = getattr(self, "_backend_to_restore", None), None
        restore = getattr(self.engine, "restore_backend", None)
        if before is not None and restore is not None:
            restore(before)

    def _context_reach_slices(self, grid_ct: CTVolume) -> int:
        """How many slices either side of a slice the engine's 2.5D context reads on ``grid_ct``'s slices: its
        ``context_slices`` times its neighbours' distance in slices (rounded up; 1 for an engine without a
        preprocessing config)."""
        config = getattr(self.engine, "preprocessing", None)
        if config is None or not hasattr(config, "context_offset"):
            return 1
        offset = config.context_offset(float(grid_ct.geometry.spacing[2]))
        return int(config.context_slices) * int(np.ceil(offset - 1e-9))

    def _aligned_grid(self, volume: CTVolume) -> Any:
        """The :class:`~.axis_aligned.AlignedGrid` the network runs on for ``volume`` (the CT it is given), or None:
        the CT is turned at most :data:`~.axis_aligned.OBLIQUE_THRESHOLD_DEGREES` against the patient's axes, or
        ``options.oblique_grid`` is ``stored``. In-plane spacing: the engine's preprocessing (the package's before
        the engine is built)."""
        if self.options.oblique_grid != "aligned" or not _oblique(volume):
            return None
        from . import axis_aligned

        config = getattr(self.engine, "preprocessing", None)
        if config is None:
            config = getattr(self.package, "preprocessing", None) or {}
        setting = (lambda key: config.get(key)) if isinstance(config, dict) else (lambda key: getattr(config, key, None))
        target = None if setting("target_size") else setting("target_spacing_mm")
        return axis_aligned.aligned_grid(volume.geometry, volume.shape_zyx,
                                         axis_aligned.aligned_spacing_xyz(volume, target))

    def _network_on_grid(self, volume: CTVolume, progress: ProgressReporter, cancel: Optional[CancellationToken],
                         keep_probability: bool, two_stage_record: Optional[Dict[str, Any]], in_hu: bool,
                         scanned_grid: Optional[Tuple[ImageGeometry, Tuple[int, int, int]]] = None) -> Any:
        """:meth:`_network` on ``volume``'s own grid. ``scanned_grid``: ``(geometry, shape_zyx)`` of the CT that
        ``volume`` (a patient-aligned grid) was resampled from: two-stage's crop reads coarse labels only within it."""
        # two-stage runs the engine twice: both passes are "network", so stage names never go back
        network_progress = renamed_stages(progress, {} if self.options.two_stage else ENGINE_STAGES, "network")
        if self.options.two_stage:
            from .postprocess import ORGAN_AIR_HU
            from .twostage import segment_two_stage

            # the post-processing's air step decides the same way (finish reads the same answer): only in HU
            air_gate = self.options.postprocessing.air_to_background and in_hu
            self.engine.last_timings, self.engine.accumulate_timings = {}, True  # both passes count
            try:
                out = segment_two_stage(volume, self.engine, progress=network_progress, cancel=cancel,
                                        with_probability=keep_probability, record=two_stage_record,
                                        probability_everywhere=self.options.probabilities,
                                        air_hu=ORGAN_AIR_HU if air_gate else None,
                                        all_components=not self.options.postprocessing.largest_liver_component,
                                        scanned_grid=scanned_grid)
            finally:
                self.engine.accumulate_timings = False
            return out if keep_probability else (out, None)
        if keep_probability:  # a probability not asked for is read only inside the labels (lesion confidence)
            return self.engine.predict_with_probability(volume, progress=network_progress, cancel=cancel,
                                                        probability_everywhere=self.options.probabilities)
        return self.engine.predict(volume, progress=network_progress, cancel=cancel), None

    def _prepare_while_loading(self, volume: CTVolume, loading: "concurrent.futures.Future") -> Any:
        """The CT resampled to the network grid while the model load still runs (a
        :class:`~.prepared_input.PreparedInput`), or None: the load has ended (the engine prepares it then, as
        without a load), two-stage mode, or the network-grid copy would not fit in memory (refused with the full
        message after the load). A failure here is not the CT's error: it is dropped and the engine prepares the
        CT itself, so that any real problem is reported as it is without this step."""
        if loading.done() or not _prepare_while_loading_wanted(self.options, volume):
            return None
        config = self.preprocessing_while_loading(loading)
        if config is None:
            return None
        from .prepared_input import prepare_ahead

        network_volume = self.network_volume_ahead(volume)
        if network_volume is None:  # its fill's copy would not fit: the check after the load says so
            return None
        early = prepare_ahead(network_volume, config, self.options.batch_size, self.options.threads, "the CT")
        self._load_overlapped_preprocess = early is not None
        return early

    # ------------------------------------------------------------------ files
    def segment_file(self, input_path: Any, output_path: Any, report_path: Any = None, preview_path: Any = None,
                     probability_path: Any = None, overwrite: bool = False, series: Optional[str] = None,
                     progress: Optional[ProgressCallback] = None, cancel: Optional[CancellationToken] = None,
                     slice_thickness_mm: Optional[float] = None) -> SegmentationResult:
        """Read ``input_path`` (file or DICOM folder; ``series``: SeriesInstanceUID, UID prefix, description or
        list number), segment, write ``output_path`` (labels 0/1/2 in the input geometry; format from the
        extension) and optionally ``report_path`` (.json/.csv), ``preview_path`` (.png) and ``probability_path``
        (tumor probability, uint8 ``round(255 * p)`` before post-processing, input geometry). All outputs are
        checked before any work and written only after success. The report's ``timings_s`` adds ``read``,
        ``checks``, ``write`` (every output but the report itself, which is written last) and ``total``.
        A model not loaded yet loads in a thread while the input is read (:func:`_load_in_background`); then
        ``read`` and ``model_load`` overlap (``model_load_s.during_read``) and the stages add up to more than
        ``total``. ``slice_thickness_mm``: the reconstruction thickness (mm) of the input's slices, for RECIST's
        measurable minimum (``segment --slice-thickness-mm``; it wins over a DICOM SliceThickness: the report's
        ``recist.slice_thickness_source`` "given"); checked before any work
        (:func:`~LiverTumorSegLib.metrics.recist.check_given_slice_thickness`)."""
        from ..io import read_volume
        from ..metrics.recist import check_given_slice_thickness
        from ..validation import check_ct

        given_thickness_mm = check_given_slice_thickness(slice_thickness_mm)
        start = time.perf_counter()
        reporter = ProgressReporter(progress)
        outputs = _check_outputs(input_path, output_path, report_path, preview_path, probability_path, overwrite)
        reporter(0.0, "reading")
        loading = None if self.loaded else _load_in_background(self)  # model load overlaps the read
        try:
            volume = read_volume(input_path, series=series)
            if given_thickness_mm is not None:  # the report's RECIST minimum (finish): it wins over the DICOM value
                volume.meta["given_slice_thickness_mm"] = given_thickness_mm
            timings = {"read": time.perf_counter() - start}  # type: Dict[str, float]
            stage_start = time.perf_counter()
            input_warnings = check_ct(volume, allow_non_hu=self.options.allow_non_hu,
                                      aligned_for_model=self.options.oblique_grid == "aligned",
                                      oblique_grid_stored=self.options.oblique_grid == "stored")
            for message in input_warnings:
                log.warning("warning: %s", message)
            if outputs["labels"] is not None and full_suffix(outputs["labels"]) == DICOM_SEG_SUFFIX:
                from ..dicom_seg import prepare_seg_sources  # the SEG's references checked now, not after the network

                seg_notes = []  # type: List[str]
                volume.meta["dicom_seg_sources"] = prepare_seg_sources(volume.meta["files"], volume.geometry,
                                                                       volume.shape_zyx, seg_notes)
                for message in seg_notes:
                    log.warning("warning: %s", message)
                input_warnings += seg_notes
            timings["checks"] = time.perf_counter() - stage_start
            if cancel is not None:
                cancel.raise_if_cancelled()
            early = None if loading is None else self._prepare_while_loading(volume, loading)
        except BaseException as exc:
            # a bad input before the load finished: let the load end before the error leaves, so that no import
            # runs on behind the caller's back (a segment-only process hides some optional packages while MONAI
            # imports: a caller's `import matplotlib` in that window failed). The input's error is the one
            # reported: a failed load's own error is dropped here. Not for Ctrl-C, SIGTERM or a cancel: the user
            # wants out, and the wait could last the whole load or for ever (the interrupt can leave an import
            # lock the load then waits on: 4 of 10 early interrupts hung, in the batch audit); the command line
            # ends a process whose load thread still runs without waiting for it
            if loading is not None and not isinstance(exc, (KeyboardInterrupt, CancelledError)):
                with contextlib.suppress(Exception):
                    wait_for_load(loading)
            raise
        if loading is not None:
            reporter(0.02, "loading model")
            wait_for_load(loading, cancel)
            self._load_overlapped_read = True
            reporter(0.05, "loading model")
            if early is not None and hasattr(self.engine, "offer_prepared"):
                self.engine.offer_prepared(early)  # used when it is this CT and the engine's config
            early = None  # the engine's network loop lets go of it; held here, it lived on through post-processing
        self.check_network_memory(volume)  # at the network's resolution
        if cancel is not None:
            cancel.raise_if_cancelled()
        segmenter = self
        if outputs["probabilities"] is not None and not self.options.probabilities:
            segmenter = copy.copy(self)  # same engine, also keeps the probability
            self._load_seconds = 0.0  # the copy reports the load
            segmenter.options = dataclasses.replace(self.options, probabilities=True)
        result = segmenter.segment_volume(
            volume, progress=renamed_stages(reporter.sub(0.05, 0.95), {"done": "lesion report"}), cancel=cancel,
            checked=True)
        said = (getattr(self.engine, "device_message", None), getattr(self.engine, "precision_message", None))
        for message in result.warnings:
            if message not in said:  # the engine has said those already
                log.warning("warning: %s", message)
        result.warnings = input_warnings + result.warnings
        result.report["warnings"] = list(result.warnings)
        if cancel is not None:
            cancel.raise_if_cancelled()
        reporter(0.95, "writing")
        timings.update(result.report.get("timings_s", {}))
        _write_outputs(outputs, volume, result, overwrite, cancel, timings, start)
        result.output_path, result.report_path = outputs["labels"], outputs["report"]
        result.preview_path, result.probability_path = outputs["preview"], outputs["probabilities"]
        result.seconds = time.perf_counter() - start  # the whole run: 'wrote ... (0.6 s)' hid a 3.5 s read and load
        reporter(1.0, "done")
        return result


ALIGNED_GRID_STAGE = "resampling (patient-aligned grid)"
"""The progress stage of an oblique CT's resampling onto the patient-aligned grid and back (:mod:`.axis_aligned`)."""


def _slab_checkpoint(progress: ProgressReporter, cancel: Optional[CancellationToken]) -> Callable[[int, int], None]:
    """A ``slab_done(done, total)`` callback for :mod:`.axis_aligned`'s slab loops: raises
    :class:`~..errors.CancelledError` once ``cancel`` is set, and reports ``done / total`` of ``progress`` as
    :data:`ALIGNED_GRID_STAGE` (seconds per pass on a 300-slice CT)."""
    def slab_done(done: int, total: int) -> None:
        if cancel is not None:
            cancel.raise_if_cancelled()
        progress(done / max(1, total), ALIGNED_GRID_STAGE)

    return slab_done


def _input_depends_on_slice_extent(config: Any) -> bool:
    """True when ``config`` (an engine's ``PreprocessingConfig``) gives a network-grid pixel inside the CT a value
    that depends on the extent of the slice it is cut from, so that a footprint run's box
    (:meth:`Segmenter._footprint_runs`) would give the network other values than the whole aligned slices training
    cached (:func:`~LiverTumorSegLib.training.slice_cache.aligned_network_ct`): ``target_size`` (each box resized to
    that size: a thin slab's runs at 0.55-1.2 mm rows where training had 1.34 mm), a histogram scaling, z-score or
    equalization computed over the slice, CLAHE's tiles over it. Measured on a phantom (8 x 256 x 256, 1.5 mm, turned
    30 degrees; default preset: identical inside the footprint): zscore_body up to 6.8 apart (mean 1.26),
    window250_equalized up to 0.10. Fixed windows, the filters and the body crop are pointwise or local: the runs'
    margin covers them."""
    if config is None or not hasattr(config, "channels"):
        return False
    if getattr(config, "target_size", None) or getattr(config, "equalize", None) == "clahe":
        return True
    from ..preprocessing import SlicePreprocessor

    return bool(SlicePreprocessor(config)._pointwise_channels())


def _run_precision_check(engine: Any, run: Any) -> Optional[Dict[str, Any]]:
    """The precision check (bf16 against fp32) ``engine`` ran on the footprint run ``run`` it has just segmented
    (:meth:`Segmenter._network_over_footprint`), with ``footprint_run``: the aligned-grid slices ``[r0, r1)`` that
    run read (its ``slices`` count the run's network slices); None when it ran on none of them."""
    check = (getattr(engine, "last_precision", None) or {}).get("check")
    if not (isinstance(check, dict) and check.get("this_volume")):
        return None
    return dict(check, footprint_run=[int(z) for z in run.read_slices])


def _oblique(volume: CTVolume) -> bool:
    """Whether the network runs on an axis-aligned grid for ``volume`` (:meth:`Segmenter._aligned_network`)."""
    from ..orientation import obliquity_degrees
    from .axis_aligned import OBLIQUE_THRESHOLD_DEGREES

    return obliquity_degrees(volume.geometry.direction_matrix) > OBLIQUE_THRESHOLD_DEGREES


def _resampling_fill(volume: CTVolume) -> Any:
    """:func:`~.resampling_fill.find_resampling_fill` of ``volume`` (a CT in HU), or None: none found, or the check
    failed (logged as a warning, with its traceback; the CT is then given as it is). Running out of memory is not
    such a failure: it is raised (the command says 'Ran out of memory', exit 2). Taken as one, a CT whose fill
    search ran out of memory was segmented with its fill given to the network as CT values, a warning its only
    trace, on a machine already short of the memory the network then needed."""
    from ..errors import out_of_memory_error
    from .resampling_fill import find_resampling_fill

    try:
        return find_resampling_fill(volume.array, volume.geometry)
    except Exception as exc:  # noqa: BLE001 - the CT is then given as it is
        if out_of_memory_error(exc) is not None:
            raise
        log.warning("the check for a resampling's fill outside the field of view failed", exc_info=True)
        return None


def _cleared_outside_scan(labels: np.ndarray, probability: Optional[np.ndarray], outside: np.ndarray
                          ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """``labels`` and ``probability`` (the engine's arrays for this call, ``(z, y, x)``) with 0 where ``outside`` (a
    resampling's fill, bool) is set: in place, so a fill costs no copy of either (a read-only array is copied). They
    were copied with ``np.where`` in :meth:`Segmenter.finish`: two uint8 copies of the CT's grid beside the CT's own
    two (the network's and the checks'), which the memory check before the run did not count; the network's copy
    and the fill's mask exist when it runs (:meth:`Segmenter.check_network_memory`), and the checks' copy is made
    after the network's is let go."""
    def cleared(array: np.ndarray) -> np.ndarray:
        array = array if array.flags.writeable else array.copy()
        array[outside] = 0
        return array

    return cleared(labels), None if probability is None else cleared(probability)


def _outside_scan_cleared(volume: CTVolume, output: "NetworkOutput"
                          ) -> Tuple[np.ndarray, Optional[np.ndarray], np.ndarray]:
    """``(network labels, tumor probability, CT array)`` of ``output`` for :meth:`Segmenter.finish`: where
    ``output.outside_scan`` (a resampling's fill) is set, labels and probability 0 (:meth:`Segmenter.predict`
    cleared them; again here, in place, for an output made elsewhere) and the CT the scanner's padding
    (:data:`~.resampling_fill.READ_AS_PADDING_HU`: outside the scan to every check, so a liver or lesion beside the
    fill is cut by the scan's edge), on a copy of the CT; without a fill, as they are (``volume.array`` itself)."""
    outside = output.outside_scan
    if outside is None:
        return output.labels, output.probability, volume.array
    from .resampling_fill import READ_AS_PADDING_HU, without_fill

    labels, probability = _cleared_outside_scan(output.labels, output.probability, outside)
    return labels, probability, without_fill(volume, outside, READ_AS_PADDING_HU).array


def _prepare_while_loading_wanted(options: SegmentationOptions, volume: Optional[CTVolume] = None) -> bool:
    """Whether ``segment_file`` (or a batch's reader) resamples the CT ``volume`` to the network grid ahead of the
    engine: not in two-stage mode, whose passes resample crops of the CT, never the whole CT as given; not for an
    oblique CT the network runs on an axis-aligned grid (:meth:`Segmenter._aligned_network`), which the engine
    is given instead of the CT's own grid (a batch's reader made that copy, unused, beside the aligned one)."""
    if options.two_stage:
        return False
    return volume is None or not (getattr(options, "oblique_grid", "aligned") == "aligned" and _oblique(volume))


LOAD_WAIT_STEP_SECONDS = 0.25
"""How long one wait for the model-load thread lasts (:func:`wait_for_load`)."""


def _lesions_cut_by_postprocessing(network_labels: np.ndarray, labels: np.ndarray, geometry: ImageGeometry,
                                   changes: Dict[str, Any]) -> set:
    """Report ids of the lesions whose tumor, as the network labelled it, post-processing cut (made background in
    part): the lung-base and air steps act on voxels, not on whole lesions, so a lesion bulging above the line kept
    only its part below it, and the report gave that part's size without a word (the post-processing audit). Looked
    for only when those steps removed tumor."""
    if not (changes.get("tumor_above_lungs_ml") or changes.get("tumor_in_air_ml")):
        return set()
    from scipy import ndimage

    from .lesion_report import lesion_components
    from .postprocess import CONNECTIVITY_26, bounding_box

    network_tumor = network_labels == 2
    if not network_tumor.any():
        return set()
    box = bounding_box(network_tumor, 1)
    network_ids, _ = ndimage.label(network_tumor[box], structure=CONNECTIVITY_26)
    removed = network_tumor[box] & (labels[box] == 0)
    cut_network = np.unique(network_ids[removed])
    cut_network = cut_network[cut_network > 0]
    if cut_network.size == 0:
        return set()
    lesion_ids, _ = lesion_components(labels, geometry)  # numbered as the report numbers them
    touched = lesion_ids[box][np.isin(network_ids, cut_network)]
    return {int(i) for i in np.unique(touched) if i > 0}


def wait_for_load(loading: "concurrent.futures.Future", cancel: Optional[CancellationToken] = None) -> Any:
    """``loading.result()`` waited for in steps of :data:`LOAD_WAIT_STEP_SECONDS`: on Windows before Python 3.14 a
    lock wait without a timeout cannot be interrupted, so Ctrl-C during the model load would wait for the whole
    load (torch, MONAI, CUDA: tens of seconds from a cold disk), and forever if the load hangs. ``cancel``: checked
    at each step (CancelledError), so a cancel (``segment --progress json``'s signal) need not wait for the load."""
    while True:
        try:
            return loading.result(timeout=LOAD_WAIT_STEP_SECONDS)
        except concurrent.futures.TimeoutError:
            if cancel is not None:
                cancel.raise_if_cancelled()


def _load_in_background(segmenter: "Segmenter") -> "concurrent.futures.Future":
    """:meth:`Segmenter.load` on a worker thread, started before the input is read, so that importing torch and
    MONAI, reading the package and starting CUDA overlap reading the CT (zlib inflates without holding the
    GIL). The future's ``result()`` re-raises the load's error. If the read fails first, its error is raised
    when the load has ended (:meth:`Segmenter.segment_file`), so a later load call finds the model loaded. In a segment-only process the load
    hides some optional packages while MONAI imports (models.monai_import); the readers import none of them."""
    import nibabel  # noqa: F401 - imported here first, so the reader and the loader never import it together

    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model-load")
    future = submit_in_caller_context(executor, segmenter.load)
    executor.shutdown(wait=False)
    return future


def _input_data_file(input_path: Any) -> Optional[Path]:
    """The one file a detached-header input (``.mhd``, ``.nhdr``) keeps its voxels in, or None (any other input,
    one without such a file, or one whose header cannot be read: the reader says what is wrong)."""
    if input_path is None or full_suffix(Path(input_path)) not in (".mhd", ".nhdr"):
        return None
    try:
        from ..io.itk import detached_data_file

        return detached_data_file(Path(input_path))
    except Exception:  # noqa: BLE001 - a damaged header is the reader's to report
        return None


def _check_outputs(input_path: Any, output_path: Any, report_path: Any, preview_path: Any, probability_path: Any,
                   overwrite: bool) -> Dict[str, Optional[Path]]:
    """Every output checked (extension, existence, folder) before any work; ``{"labels", "report", ...}``."""
    from .lesion_report import check_report_path

    outputs = {"labels": Path(output_path), "report": None, "preview": None, "probabilities": None}
    if check_output_format(outputs["labels"]) == DICOM_SEG_SUFFIX:
        check_dicom_seg_input(input_path)
    # the outputs a killed run replaced together are put back together (one run's), before each is judged
    restore_set_aside_outputs_of([Path(p) for p in (output_path, report_path, preview_path, probability_path)
                                  if p is not None])
    roles = ("input", "output", "report", "preview", "probability map")
    given = [(role, Path(p)) for role, p in zip(roles, (input_path, output_path, report_path, preview_path,
                                                        probability_path)) if p is not None]
    data_file = _input_data_file(input_path)
    if data_file is not None:  # a .mhd's ElementDataFile, a .nhdr's data file: its voxels, overwritten by -o before
        given.insert(1, ("input's data file", data_file))
    # before the existence checks ('segment ct.nii.gz -o ct.nii.gz' was told to pass --overwrite); also 'ct.nii.gz'
    # against 'CT.nii.gz' on Windows and macOS, hard links and symbolic links
    identities = [set(file_identities(path)) for _, path in given]  # each path's once, not once per pair
    for k, (role, path) in enumerate(given):
        for (other_role, other), other_identities in zip(given[k + 1:], identities[k + 1:]):
            if identities[k] & other_identities:  # said which two: 'must all be different files' named none
                raise InputError(f"The {role} '{path}' and the {other_role} '{other}' are the same file; the input "
                                 f"and each output must be different files.")
    check_can_write(outputs["labels"], overwrite)
    if report_path is not None:
        outputs["report"] = check_can_write(check_report_path(report_path), overwrite)
    if preview_path is not None:
        preview_path = Path(preview_path)
        if full_suffix(preview_path) != PREVIEW_SUFFIX:
            raise InputError(f"Preview '{preview_path}' must end in {PREVIEW_SUFFIX}.")
        outputs["preview"] = check_can_write(preview_path, overwrite)
    if probability_path is not None:
        probability_path = Path(probability_path)
        if full_suffix(probability_path) not in PROBABILITY_SUFFIXES:
            raise InputError(f"Probability map '{probability_path}' has an unsupported extension "
                             f"'{full_suffix(probability_path)}'; use .nii.gz, .nii, .nrrd or .mha.")
        from ..io.writers import check_metaimage_name

        check_metaimage_name(probability_path)
        outputs["probabilities"] = check_can_write(probability_path, overwrite)
    _refuse_replacing_input_dicom(Path(input_path), [p for p in outputs.values() if p is not None])
    _refuse_images_in_input_dicom_folder(Path(input_path), [p for p in outputs.values() if p is not None])
    return outputs


def _refuse_replacing_input_dicom(input_path: Path, outputs: List[Path]) -> None:
    """An output that is an existing DICOM image in the input's DICOM folder (or beside an input DICOM file) could
    be a slice of the series being read: ``--overwrite`` would destroy it. Refused whatever ``overwrite`` says.
    An existing DICOM SEG there (an earlier result) may be replaced as usual. An input or output named NIfTI,
    NRRD or MetaImage is not sniffed for DICOM (io.formats.may_be_dicom_file): pydicom's forced read walked a
    whole uncompressed NIfTI, 4-12 s on one with zero slices."""
    from ..dicom_seg import is_dicom_seg
    from ..io.formats import may_be_dicom_file
    folder = input_dicom_folder(input_path)
    if folder is None:
        return
    for path in outputs:
        if path.is_file() and folder in path.resolve().parents and may_be_dicom_file(path) and not is_dicom_seg(path):
            raise InputError(f"Output '{path}' is an existing DICOM file in the input's folder, possibly a slice of "
                             f"the series being segmented; write the result elsewhere (e.g. -o result.dcm beside "
                             f"the folder).")


def input_dicom_folder(input_path: Path) -> Optional[Path]:
    """The folder of the DICOM series ``input_path`` names (the folder itself, or a DICOM file's folder), resolved;
    None for another input. An input named NIfTI, NRRD or MetaImage is not sniffed for DICOM
    (:func:`~..io.formats.may_be_dicom_file`)."""
    from ..io.formats import may_be_dicom_file

    if input_path.is_dir():
        return input_path.resolve()
    if input_path.is_file() and may_be_dicom_file(input_path):
        return input_path.resolve().parent
    return None


def _refuse_images_in_input_dicom_folder(input_path: Path, outputs: List[Path]) -> None:
    """Refuse a label or probability map (NIfTI, NRRD, MetaImage) written into the input DICOM series' own folder:
    the next read of that folder found DICOM files and a NIfTI and refused it as neither one series nor a batch
    folder, so the tool's own output made the series unsegmentable (the file-safety audit). A DICOM SEG, a report
    or a preview there does not disturb the read."""
    from ..io.formats import READ_SUFFIXES

    folder = input_dicom_folder(input_path)
    if folder is None:
        return
    for path in outputs:
        if full_suffix(path) in READ_SUFFIXES and path.resolve().parent == folder:
            raise InputError(f"Output '{path}' would be written into the input DICOM series' folder '{input_path}': "
                             f"a NIfTI/NRRD/MetaImage file there makes the folder neither one DICOM series nor a "
                             f"folder of CT files, and later runs would refuse it. Write the result beside the folder "
                             f"(e.g. -o {shell_word(_beside(folder, folder.name + '_seg.nii.gz'))}) or into another "
                             f"one.")


def _beside(folder: Path, name: str) -> str:
    """The file ``name`` beside ``folder``, relative to the working folder where it can be (its name alone was the
    advice, which named a file in the working folder, and a name with spaces split in a pasted command)."""
    import os

    target = folder.parent / name
    try:
        return os.path.relpath(target)
    except ValueError:  # Windows: another drive than the working folder's
        return str(target)


def _prepared_bytes(engine: Any, network_volume: CTVolume) -> int:
    """Bytes of the network-grid CT that ``engine`` was offered for ``network_volume`` (a
    :class:`~.prepared_input.PreparedInput` made ahead, which its next call uses), or 0: none offered, or one for
    another CT or config (the engine prepares the CT again then)."""
    offered = getattr(engine, "_offered", None)
    prepared = getattr(offered, "prepared", None)
    if prepared is None or not offered.serves(network_volume, getattr(engine, "preprocessing", None)):
        return 0
    return int(np.asarray(prepared.hu_net).nbytes)


def _estimate_and_check_memory(volume: CTVolume, package: Any = None, batch_size: Optional[int] = None,
                               aligned: Any = None, held_bytes: int = 0, pending_bytes: int = 0) -> Optional[int]:
    """Estimated peak bytes for this volume at the package's network resolution (in-plane resampling
    included; validation.check_network_memory); raises ResourceError when clearly too much. ``aligned``: the
    :class:`~.axis_aligned.AlignedGrid` an oblique CT is segmented on (counted there), or None. ``held_bytes``:
    counted arrays made already (:func:`_prepared_bytes`), not asked for again. ``pending_bytes``: a copy of the CT
    not made yet, asked for too (``validation.check_network_memory``)."""
    from ..package import check_input_channels
    from ..validation import check_network_memory

    check_input_channels(package)
    arch = getattr(package, "architecture", None) or {}
    required = check_network_memory(volume, getattr(package, "preprocessing", None) or {}, arch.get("in_channels"),
                                    int(arch.get("num_classes", 3)), batch_size,
                                    float(getattr(package, "activation_bytes_per_pixel", 0.0) or 0.0),
                                    aligned_shape_zyx=None if aligned is None else aligned.shape_zyx,
                                    aligned_spacing_xyz=None if aligned is None else aligned.geometry.spacing,
                                    held_bytes=held_bytes, pending_bytes=pending_bytes)
    log.debug("Estimated memory needed: %.2f GiB", required / 2 ** 30)  # shown with --debug
    return int(required)


def _write_labels(tmp: Path, labels: np.ndarray, geometry: ImageGeometry, suffix: str, volume: Any = None,
                  model_name: str = "") -> None:
    if suffix == DICOM_SEG_SUFFIX:
        from ..dicom_seg import write_dicom_seg

        write_dicom_seg(tmp, labels, geometry, volume.meta["files"], overwrite=True, model_name=model_name,
                        sources=volume.meta.get("dicom_seg_sources"))
    elif suffix == SEG_NRRD_SUFFIX:
        from ..mrml import write_seg_nrrd

        write_seg_nrrd(tmp, labels, geometry, overwrite=True)
    else:
        from ..io import nifti_write_options, write_label_map

        write_label_map(tmp, labels, geometry, overwrite=True, **nifti_write_options(volume))


def rounded_timings(timings: Dict[str, float]) -> Dict[str, float]:
    """Seconds per stage rounded to milliseconds (for the report)."""
    return {stage: round(float(seconds), 3) for stage, seconds in timings.items()}


def _write_outputs(outputs: Dict[str, Optional[Path]], volume: CTVolume, result: SegmentationResult,
                   overwrite: bool, cancel: Optional[CancellationToken], timings: Optional[Dict[str, float]] = None,
                   start: Optional[float] = None) -> None:
    """Every file to a temporary name first; all put in place together at the end (none when anything fails,
    a rename halfway or Ctrl-C included: :func:`~LiverTumorSegLib.fileutil.atomic_outputs`). The report is
    written last so that ``timings`` (completed with ``write`` and ``total`` since ``start``) can go into
    ``result.report["timings_s"]``."""
    write_start = time.perf_counter()
    wanted = {key: path for key, path in outputs.items()
              if key in ("labels", "preview", "probabilities", "report") and path is not None}
    with atomic_outputs(wanted, overwrite) as temporaries:
        labels_path = outputs["labels"]
        _write_labels(temporaries["labels"], result.labels, volume.geometry, full_suffix(labels_path), volume,
                      str(result.report.get("model", "")))
        if outputs["preview"] is not None:
            from .preview import save_overlay_preview

            save_overlay_preview(temporaries["preview"], volume, result.labels, overwrite=True)
        if outputs["probabilities"] is not None:
            from ..io import nifti_write_options, write_probability_map

            write_probability_map(temporaries["probabilities"], result.tumor_probability, volume.geometry,
                                  overwrite=True, **nifti_write_options(volume))
        if timings is not None:
            timings["write"] = time.perf_counter() - write_start
            if start is not None:
                timings["total"] = time.perf_counter() - start
            result.report["timings_s"] = rounded_timings(timings)
            log.debug("timings (s): %s", ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
        if outputs["report"] is not None:
            from .lesion_report import write_report

            write_report(result.report, temporaries["report"], overwrite=True)
        if cancel is not None:
            cancel.raise_if_cancelled()
