"""Two-stage segmentation: find the liver on a coarse pass, crop to it, segment the crop at full resolution.

Stage 1 runs an engine on the volume decimated by an integer factor per axis (every f-th voxel; geometry
spacing x f, same first-voxel centre) and keeps the largest organ component (label >= 1). Stage 2 keeps the
*input* volume's axial slices that hold that component plus a margin (mm), whole slices, and runs the fine
engine there; labels are pasted back into a full-size ``(z, y, x)`` uint8 volume (zero outside the crop). No
liver found on the coarse pass -> the fine engine runs on the whole volume (and the record says so).

Only the axial range is cropped: a crop in-plane too (a 60 x 96 mm island padded with air) is unlike anything
the slice network was trained on, and with only the liver's tip in the scan the fine pass lost the liver
(Dice 0.00-0.60 against 0.72-0.94 single-stage); the time saved comes from the skipped slices anyway.
"""
import logging
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from ..progress import CancellationToken, ProgressCallback, ProgressReporter
from ..volume import CTVolume, ImageGeometry, meta_for_another_grid
from .postprocess import CONNECTIVITY_26, largest_part_holding_liver

log = logging.getLogger(__name__)

Box = Tuple[slice, slice, slice]
Components = Tuple[np.ndarray, int]
"""``ndimage.label``'s ``(component number per voxel, count)`` of the coarse organ (26-connected, label >= 1)."""


def decimation_factors(spacing_zyx: Sequence[float], factor: int = 2, max_spacing_mm: float = 6.0) -> Tuple[int, int, int]:
    """Per-axis ``(z, y, x)`` integer factors: ``factor`` unless the result would exceed ``max_spacing_mm``."""
    return tuple(int(factor) if float(s) * factor <= max_spacing_mm else 1 for s in spacing_zyx)  # type: ignore


def decimate_volume(volume: CTVolume, factors_zyx: Sequence[int]) -> CTVolume:
    """Every ``f``-th voxel per axis; spacing multiplied accordingly; voxel (0, 0, 0) keeps its position."""
    fz, fy, fx = (int(f) for f in factors_zyx)
    array = np.ascontiguousarray(volume.array[::fz, ::fy, ::fx])
    g = volume.geometry
    spacing = (g.spacing[0] * fx, g.spacing[1] * fy, g.spacing[2] * fz)
    geometry = ImageGeometry(spacing=spacing, origin=g.origin, direction=g.direction)
    return CTVolume(array=array, geometry=geometry, source=volume.source, meta=meta_for_another_grid(volume.meta))


def crop_volume(volume: CTVolume, box_zyx: Box) -> CTVolume:
    """Sub-volume ``array[box_zyx]`` with its origin moved to the first kept voxel (spacing, direction kept)."""
    start_ijk = [box_zyx[2].start or 0, box_zyx[1].start or 0, box_zyx[0].start or 0]
    origin = volume.geometry.index_to_lps(start_ijk)
    g = volume.geometry
    geometry = ImageGeometry(spacing=g.spacing, origin=tuple(origin), direction=g.direction)
    return CTVolume(array=np.ascontiguousarray(volume.array[box_zyx]), geometry=geometry, source=volume.source,
                    meta=meta_for_another_grid(volume.meta))


def organ_components(coarse_labels: np.ndarray) -> Components:
    """The coarse organ's 26-connected components (label >= 1), labelled once for :func:`organ_box` and
    :func:`parts_outside` (each labelled them itself: about 0.15 s per two-stage case)."""
    from scipy import ndimage

    return ndimage.label(coarse_labels >= 1, structure=CONNECTIVITY_26)


def organ_box(coarse_labels: np.ndarray, factors_zyx: Sequence[int], full_shape_zyx: Sequence[int],
              spacing_zyx: Sequence[float], margin_mm: float, axial_axis: Optional[int] = None,
              all_components: bool = False, components: Optional[Components] = None) -> Optional[Box]:
    """Full-resolution bounding box (plus ``margin_mm``) of the largest coarse organ component holding liver, as
    post-processing keeps it (:func:`~.postprocess.largest_part_holding_liver`; with ``all_components``: of every
    organ voxel), or None. ``axial_axis`` (array axis of the slices): crop only along it, keeping whole slices.
    ``components``: :func:`organ_components` of ``coarse_labels`` when the caller has them (else labelled here).
    The largest part by size alone could be a tumor-only blob: the crop then left the liver out, and the
    post-processing removed that blob as tumor outside the liver, for an empty result (the post-processing
    audit)."""
    if all_components:
        organ = coarse_labels >= 1
    else:
        labelled, count = components if components is not None else organ_components(coarse_labels)
        organ = labelled == largest_part_holding_liver(labelled, count, coarse_labels) if count else labelled > 0
    if not organ.any():
        return None
    where = np.nonzero(organ)
    box = []
    for axis, w in enumerate(where):
        if axial_axis is not None and axis != axial_axis:
            box.append(slice(0, int(full_shape_zyx[axis])))
            continue
        f = int(factors_zyx[axis])
        margin = int(np.ceil(margin_mm / float(spacing_zyx[axis]))) + f
        lo = max(0, int(w.min()) * f - margin)
        hi = min(int(full_shape_zyx[axis]), (int(w.max()) + 1) * f + margin)
        box.append(slice(lo, hi))
    return tuple(box)  # type: ignore[return-value]


def parts_outside(coarse_labels: np.ndarray, box: Box, factors_zyx: Sequence[int],
                  coarse_spacing_zyx: Sequence[float], components: Optional[Components] = None) -> dict:
    """``{"count", "volume_ml"}`` of the coarse organ parts (26-connected, label >= 1) with no voxel inside the
    full-resolution ``box``: what the fine pass never sees. Volumes at the coarse resolution (mL).
    ``components``: :func:`organ_components` of ``coarse_labels`` when the caller has them."""
    components, count = components if components is not None else organ_components(coarse_labels)
    # the coarse voxels c with c * f inside the box: ceil(start / f) .. ceil(stop / f)
    inside = components[tuple(slice(-(-b.start // f), -(-b.stop // f)) for b, f in zip(box, factors_zyx))]
    left_out = np.setdiff1d(np.arange(1, count + 1), inside)
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    voxel_ml = float(np.prod([float(s) for s in coarse_spacing_zyx])) / 1000.0
    return {"count": int(left_out.size), "volume_ml": float(sizes[left_out].sum() * voxel_ml)}


def segment_two_stage(volume: CTVolume, fine_engine: object, coarse_engine: Optional[object] = None,
                      factor: int = 2, margin_mm: float = 15.0, progress: Optional[ProgressCallback] = None,
                      cancel: Optional[CancellationToken] = None, with_probability: bool = False,
                      record: Optional[dict] = None, probability_everywhere: bool = True,
                      air_hu: Optional[float] = None, all_components: bool = False,
                      scanned_grid: Optional[Tuple[ImageGeometry, Sequence[int]]] = None) -> object:
    """Labels ``(z, y, x)`` uint8 on ``volume``'s grid via coarse localisation + fine crop segmentation.

    ``fine_engine`` / ``coarse_engine``: objects with ``predict(volume, progress, cancel)`` (normally
    :class:`SliceInferenceEngine`; the coarse one defaults to the fine one).
    ``with_probability``: return ``(labels, tumor probability uint8 0..255)`` from the fine engine's
    ``predict_with_probability`` (0 outside the crop) instead of labels alone; ``probability_everywhere``
    is passed to it (False: the probability is read only where the labels are not background).
    ``record``: a dict that receives ``crop_zyx`` (``[[start, stop]]`` per array axis) or ``fallback``.
    ``air_hu``: coarse labels on voxels below this (HU) are not organ when the crop is chosen (air slices the
    network called liver made the crop follow them, losing 95 % of a real liver); None: no such gate.
    ``all_components``: the crop takes in every coarse organ part, not only the largest (post-processing keeps
    every liver part: ``--keep-all-liver-components``); otherwise the parts the crop leaves out are recorded as
    ``parts_outside_crop`` (``{"count", "volume_ml"}``, at the coarse resolution) so that they are not lost
    without a word, as one-stage post-processing reports the parts it removes.
    ``scanned_grid``: ``(geometry, shape_zyx)`` of the CT grid ``volume`` was resampled from (an oblique CT's own,
    ``volume`` its patient-aligned grid, :mod:`.axis_aligned`); coarse labels beyond it are not organ when the crop
    is chosen or ``parts_outside_crop`` counted: there the aligned grid holds only the CT's repeated edge voxels,
    and the liver the network found in them stretched a 20-slice CT's crop over all 143 aligned slices.
    """
    from ..metrics.recist import axial_axis_zyx

    record = {} if record is None else record
    reporter = ProgressReporter(progress)
    coarse_engine = coarse_engine or fine_engine
    factors = decimation_factors(volume.spacing_zyx, factor)
    coarse = decimate_volume(volume, factors)
    coarse_labels = coarse_engine.predict(coarse, progress=reporter.sub(0.0, 0.3), cancel=cancel)
    coarse_check = _this_volumes_check(coarse_engine) if coarse_engine is fine_engine else None
    if air_hu is not None:  # the post-processing's air rule, on the coarse labels (a copy: the engine's own array)
        from .postprocess import remove_organ_in_air

        coarse_labels = np.array(coarse_labels, dtype=np.uint8)
        remove_organ_in_air(coarse_labels, coarse.array, threshold_hu=air_hu)
    if scanned_grid is not None:  # a copy here too: the engine's own array is not changed
        from .axis_aligned import footprint

        coarse_labels = np.where(footprint(coarse.geometry, coarse.shape_zyx, *scanned_grid), coarse_labels,
                                 np.uint8(0)).astype(np.uint8)
    axial = axial_axis_zyx(volume.geometry)
    components = None if all_components else organ_components(coarse_labels)
    box = organ_box(coarse_labels, factors, volume.shape_zyx, volume.spacing_zyx, margin_mm, axial_axis=axial,
                    all_components=all_components, components=components)
    if box is not None and not all_components:
        outside = parts_outside(coarse_labels, box, factors, coarse.spacing_zyx, components=components)
        if outside["count"]:
            record["parts_outside_crop"] = outside
    del components  # not held through the fine pass (int32 on the coarse grid)
    if box is None:
        log.info("Two-stage: no liver on the coarse pass; segmenting the whole volume.")
        record["fallback"] = "no liver on the coarse pass: the whole volume was segmented"
        if with_probability:
            whole = fine_engine.predict_with_probability(volume, progress=reporter.sub(0.3, 1.0), cancel=cancel,
                                                         probability_everywhere=probability_everywhere)
        else:
            whole = fine_engine.predict(volume, progress=reporter.sub(0.3, 1.0), cancel=cancel)
        _keep_coarse_check(fine_engine, coarse_check)
        return whole
    log.debug("Two-stage crop (z, y, x): %s", [(b.start, b.stop) for b in box])
    record["crop_zyx"] = [[int(b.start), int(b.stop)] for b in box]
    labels = np.zeros(volume.shape_zyx, dtype=np.uint8)
    if with_probability:
        crop_labels, crop_probability = fine_engine.predict_with_probability(
            crop_volume(volume, box), progress=reporter.sub(0.3, 1.0), cancel=cancel,
            probability_everywhere=probability_everywhere)
        probability = np.zeros(volume.shape_zyx, dtype=np.uint8)
        probability[box] = crop_probability
    else:
        crop_labels = fine_engine.predict(crop_volume(volume, box), progress=reporter.sub(0.3, 1.0), cancel=cancel)
    labels[box] = crop_labels
    _keep_coarse_check(fine_engine, coarse_check)
    reporter(1.0, "done")
    return (labels, probability) if with_probability else labels


def _this_volumes_check(engine: Any) -> Optional[dict]:
    """The precision check ``engine`` ran on the volume it last segmented (its ``last_precision["check"]`` with
    ``this_volume``), or None."""
    check = (getattr(engine, "last_precision", None) or {}).get("check")
    return dict(check) if isinstance(check, dict) and check.get("this_volume") else None


def _keep_coarse_check(engine: Any, coarse_check: Optional[dict]) -> None:
    """After the fine pass: the bf16 check the coarse pass of this CT ran (``coarse_check``) is this volume's, not an
    earlier CT's (the fine pass recorded it with ``this_volume`` False, as for a later CT of a batch), and its
    ``slices`` are the coarse pass's network slices (``pass``: ``"coarse"``), not slices of the CT (the inference
    options audit)."""
    record = getattr(engine, "last_precision", None)
    if coarse_check is not None and isinstance(record, dict):
        record["check"] = dict(coarse_check, this_volume=True, **{"pass": "coarse"})
