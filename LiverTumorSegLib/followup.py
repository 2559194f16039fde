"""Follow-up comparison of two liver-tumor label maps: alignment, lesion matching, per-lesion change and the
RECIST 1.1 response.

Inputs: the baseline and follow-up label maps (``(z, y, x)`` uint8, 0 background, 1 liver, 2 tumor, each
with its own :class:`~LiverTumorSegLib.volume.ImageGeometry`) and optionally both CTs (HU, same grids).

1. **Alignment** (:func:`align_followup`): a rigid (rotation + translation, SimpleITK ``Euler3DTransform``)
   registration that maps baseline LPS points to follow-up LPS points, on images block-averaged to about
   3 mm voxels (2 pyramid levels, 30,000 random samples with a fixed seed). With both CTs: Mattes mutual
   information on the CTs (HU clipped to -200..400), sampled inside the baseline liver dilated by 20 mm,
   started from the liver masks' alignment when both scans hold a liver (from the grids' centres otherwise: a
   patient shifted inside a large field of view, or a follow-up with another field of view, sent the CT
   registration from the grid centres into a wrong minimum); a CT result that overlaps the livers clearly less
   than the masks' alignment did is replaced by it, with a warning. Without CTs: mean squares between the two
   liver masks (label >= 1) smoothed with a 2 mm Gaussian, started from the masks' centres of mass (a
   translation; no rotation is guessed). A liver Dice after alignment under ``LOW_LIVER_DICE`` is warned
   about (``warnings`` of the change report): the lesion matching is then unreliable; so is a turn of more than
   ``LARGE_ROTATION_DEG`` (20 degrees), the sign of a scan stored mirrored. Rigid on
   purpose: a scaling or deformable transform would absorb the lesion and liver size changes that are
   being measured. ``method="none"`` uses the scanner coordinates as they are.
2. **Matching** (:func:`link_lesions`): the follow-up lesion map is resampled onto the baseline grid and the
   baseline's onto the follow-up grid (nearest neighbour), and each pair's shared volume is the larger of the two
   (:func:`overlap_volumes`); each follow-up lesion belongs to the baseline lesion it shares most of with (ties:
   the lower baseline id), and a baseline lesion that owns none but shares voxels with follow-up lesions
   coalesced into the one it shares most voxels with; a lesion without any overlap is linked to the nearest
   lesion of the other scan that has no link yet whose centroid (after alignment) is within max(5 mm, half the
   larger long axis), at most :data:`MOVED_MAX_MM` (10 mm): a lesion that moved (said in the report's
   warnings). Merges and splits need shared voxels; a follow-up lesion that only touches another baseline
   lesion's old place (one lesion grown into where a neighbour was, the neighbour still its own lesion) is not a
   merge. The connected groups of links give each lesion's status:
   ``disappeared`` (baseline only, inside the follow-up's field of view), ``not_assessed`` (partly or wholly
   outside the follow-up scan: unseen or cut by its edge; or cut by the baseline scan's edge where the follow-up
   does not reach max(10 mm, its long axis) beyond that edge), ``present`` (cut by the baseline scan's edge,
   seen at follow-up: no change against its lower-bound baseline size; or a baseline lesion whose axial axes thick
   tilted slices cap, seen at follow-up: no long-axis change against its lower-bound long axis), ``new``
   (follow-up only), ``merged`` (several baseline lesions -> one, or several -> several), ``split`` (one ->
   several), else by the long-axis change: ``grown`` (>= +20 %),
   ``shrunk`` (<= -30 %) or ``stable`` (the RECIST 1.1 thresholds applied to each lesion).
3. **Response** (:func:`~LiverTumorSegLib.metrics.recist.recist_response`): the baseline's target lesions
   (at most 2 measurable liver lesions) are followed: their follow-up sum of diameters is the sum of the long
   axes of the follow-up lesions that belong to a target (0 when disappeared; the coalesced lesion once when
   merged, also with a non-target; all fragments when split); a non-target's follow-up lesion is never in it,
   and a follow-up lesion that shares voxels with a target and a non-target is named in a warning, with how it
   was counted. A new lesion counts for PD when its long axis is at least
   ``min_new_lesion_mm`` (default 5 mm; smaller ones are listed with ``"unequivocal": false`` and neither make PD
   nor prevent CR; the response reason names them). A target still present counts its measured long axis, also under 5 mm (RECIST 1.1 4.3.2:
   "actual measurements ... even when very small"; a segmentation always gives one); when counting such a
   target as 5 mm (the default for a lesion a reader judges "too small to measure") would give another
   category, the reason says so (per lesion: each fragment of a split target, summed; :func:`_recist_followup_mm`). A target not assessed (outside the follow-up scan) makes the response NE
   unless a new lesion or the measured targets show PD, and leaves the follow-up sum unknown (None); a non-target
   lesion not assessed turns CR into PR (RECIST 1.1 Table 1: target CR, non-target not evaluated), and, without
   targets, makes the response NE (Table 2) unless the follow-up shows it (a non-target judged present: non-CR/
   non-PD). A follow-up lesion cut by the follow-up scan's edge is a lower bound
   (growth beyond that edge is not measured): a warning names it, and when it is a target's and the response is PR
   or SD, the reason says that the response may be understated; so it does for a target's follow-up lesion whose
   axial axes thick tilted slices cap (``axial_axes_limited_by_slices``; the rows flag such lesions, and the reason
   gives the sum and category their stored-slice long axes would give; a PD from a ``previous_change`` nadir that
   counted such lesions says so where those axes would not give PD: the response stays RECIST's, by the axial axes).
   Non-target lesions whose long axis grew by >= 20 %
   and >= 5 mm are named in a warning: RECIST 1.1 calls PD for *unequivocal* progression of non-target lesions, a
   reader's judgement this program does not make. With ``after_complete_response`` (the previous assessment was a
   complete response: every lesion gone) any baseline lesion present again is PD (RECIST working group FAQ: after a
   CR the reappearance of any lesion is PD); its rows carry ``reappeared_after_complete_response``. A lesion at a new
   site is still judged as a new lesion: PD when unequivocal; an equivocal one leaves the CR standing and the reason
   says that a later scan confirming it makes PD, dated from this scan.

All lengths mm, volumes mL, positions LPS/RAS mm; lesion ids are those of each scan's lesion report.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import __version__
from .errors import InputError, option_hint
from .fileutil import atomic_output, picture_text_as_given
from .metrics.recist import (RECIST_MIN_LONG_AXIS_MM, RECIST_NOTE, RECIST_PD_ABSOLUTE_MM, RECIST_TOO_SMALL_MM,
                             SLICE_THICKNESS_FROM_SPACING, SLICE_THICKNESS_SOURCE_WORDS, at_least, at_most,
                             axial_slice_thickness_text, check_given_slice_thickness, dicom_slice_thickness_of,
                             given_slice_thickness_warning, equal_within_rounding, meets_progression,
                             percent_change_text, change_places, places_short_of, text_short_of,
                             voxel_centres_lps)
from .volume import CTVolume, ImageGeometry

STATUSES = ("new", "disappeared", "grown", "shrunk", "stable", "present", "merged", "split", "not_assessed")
"""``not_assessed``: a baseline lesion that lies partly or wholly outside the follow-up scan's field of view, or that
the baseline scan's edge cuts where the follow-up scan does not reach ``EDGE_CONTINUATION_MIN_MM`` (or the
lesion's long axis, if longer) beyond that edge: it may be there unseen, or be cut by the scan's edge, so it is
neither counted as disappeared nor measured (RECIST 1.1: a target not assessed makes the response NE unless
progression is shown otherwise); its entry's ``not_assessed_reason`` says which (:data:`NOT_ASSESSED_REASONS`).
``present``: a baseline lesion cut by the baseline scan's edge, seen at follow-up: its baseline size is a lower
bound, so its change is not measured (None); gone on a follow-up that shows that far beyond the edge, it is
``disappeared``. So is a baseline lesion whose axial axes thick tilted slices cap (``axial_axes_limited_by_slices``)
seen at follow-up: its long axis is a lower bound, so its long-axis change is None (its volume change is given: the
slices do not cut its volume); gone, it is ``disappeared``."""
EDGE_CONTINUATION_MIN_MM = 10.0
OUTSIDE_FOLLOWUP_VIEW = "outside_followup_view"
BASELINE_EDGE_NOT_COVERED = "baseline_edge_not_covered"
NOT_ASSESSED_REASONS = {
    OUTSIDE_FOLLOWUP_VIEW: ("lie partly or wholly outside the follow-up scan's field of view",
                            "partly or wholly outside the follow-up scan"),
    BASELINE_EDGE_NOT_COVERED: ("are cut by the baseline scan's edge, and the follow-up scan does not reach far enough "
                                "beyond that edge to show where they may continue",
                                "cut by the baseline scan's edge; the follow-up does not show beyond it")}
"""A ``not_assessed`` entry's ``not_assessed_reason`` (a code in the change report) -> its wording: ``(clause of the
response reason, after the lesion numbers; words of the printed lesion line)``."""
GROWN_CHANGE = 0.20
SHRUNK_CHANGE = -0.30
DEFAULT_MIN_NEW_LESION_MM = 5.0
MOVED_MAX_MM = 10.0
"""A lesion without shared voxels is linked to one of the other scan as 'moved' only within max(5 mm, half the larger
long axis), at most this: the alignment's error, not the lesion's size, bounds how far one lesion can seem to move
(under 1 mm with the CTs, up to about 4 mm with the livers, in the follow-up audit). With half a 42 mm long axis a
new 11 mm lesion 14 mm beside a vanished target was taken for it, shrunk: PR instead of PD."""
ALIGNMENT_METHODS = ("auto", "ct", "liver", "none")
TIME_POINT_NOTE = ("the response of this follow-up alone (a time-point response, RECIST 1.1 Table 1), not the best "
                   "overall response: whether a later scan confirms a CR or PR, as trials with response as end point "
                   "require, is the reader's")
"""Said in a change report's ``response_criteria``: a CR or PR here is not a confirmed response (RECIST 1.1 4.6)."""
BASELINE_SLICE_THICKNESS_OPTION = "--baseline-slice-thickness-mm"
FOLLOWUP_SLICE_THICKNESS_OPTION = "--followup-slice-thickness-mm"
"""``followup``'s options for each scan's slice thickness (mm), named in the warning for a value that was not used
(:func:`~.metrics.recist.given_slice_thickness_warning`) and in the error for one that cannot be a thickness."""


def _sitk():
    import SimpleITK as sitk  # noqa: N813

    return sitk


def to_sitk(array_zyx: np.ndarray, geometry: ImageGeometry):
    """SimpleITK image of a ``(z, y, x)`` array with ``geometry``."""
    sitk = _sitk()
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_zyx))
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    return image


@dataclass
class Alignment:
    """Rigid transform mapping baseline LPS mm points to follow-up LPS mm points (SimpleITK convention:
    baseline = fixed image, follow-up = moving image), and how it was found."""

    method: str
    transform: Any  # SimpleITK Transform
    metric_value: Optional[float] = None
    liver_dice: Optional[float] = None  # after alignment, on the baseline grid
    warnings: List[str] = field(default_factory=list)

    def map_baseline_to_followup(self, lps: Sequence[float]) -> np.ndarray:
        """A baseline point ``(x, y, z)`` in LPS mm -> the follow-up's point, ``(x, y, z)`` LPS mm."""
        return np.asarray(self.transform.TransformPoint(tuple(float(v) for v in lps)))

    def map_followup_to_baseline(self, lps: Sequence[float]) -> np.ndarray:
        """A follow-up point ``(x, y, z)`` in LPS mm -> the baseline's point, ``(x, y, z)`` LPS mm."""
        return np.asarray(self.transform.GetInverse().TransformPoint(tuple(float(v) for v in lps)))

    def map_points(self, lps_xyz: np.ndarray, to_baseline: bool = False) -> np.ndarray:
        """Points ``(n, 3)`` (x, y, z) LPS mm of the baseline -> the follow-up's (``to_baseline``: of the follow-up
        -> the baseline's), ``(n, 3)``: the transform (or its inverse) made once for all of them, where
        :meth:`map_followup_to_baseline` makes the inverse per point (90 ms for 4000 points, against 9)."""
        transform = self.transform.GetInverse() if to_baseline else self.transform
        points = np.asarray(lps_xyz, dtype=np.float64).reshape(-1, 3)
        return np.array([transform.TransformPoint(tuple(float(v) for v in p)) for p in points]).reshape(-1, 3)

    def rotation_angle_deg(self) -> float:
        """The rotation's whole angle (degrees, about its axis), from the transform's 3 x 3 matrix: 0.0 for a
        translation only. The Euler angles alone (``rotation_deg_xyz``) do not give it, since their order matters."""
        matrix = np.asarray(getattr(self.transform, "GetMatrix", lambda: np.eye(3).ravel())(), dtype=float)
        cosine = (float(np.trace(matrix.reshape(3, 3))) - 1.0) / 2.0
        return float(np.rad2deg(np.arccos(np.clip(cosine, -1.0, 1.0))))

    def to_dict(self) -> Dict[str, Any]:
        params = list(self.transform.GetParameters())
        rotation = [float(np.rad2deg(v)) for v in params[:3]] if len(params) == 6 else []
        translation = [float(v) for v in params[3:6]] if len(params) == 6 else [0.0, 0.0, 0.0]
        matrix = [float(v) for v in getattr(self.transform, "GetMatrix", lambda: np.eye(3).ravel())()]
        return {"method": self.method, "rotation_deg_xyz": rotation, "rotation_angle_deg": self.rotation_angle_deg(),
                # the rotation itself (row-major 3 x 3): the Euler angles are ITK's Euler3D (R = Rz Rx Ry), and read
                # as x, then y, then z they rebuilt another rotation (4.5 mm off at 150 mm for 10/10/10 degrees)
                "rotation_matrix": matrix,
                "translation_lps_mm": translation,
                "center_lps_mm": [float(v) for v in getattr(self.transform, "GetCenter", lambda: (0, 0, 0))()],
                "metric_value": self.metric_value, "liver_dice_after_alignment": self.liver_dice,
                "warnings": list(self.warnings),
                "meaning": "maps baseline LPS points p to follow-up LPS points R (p - center) + center + translation, "
                           "R = rotation_matrix (row-major); rotation_deg_xyz are ITK Euler3D angles about x, y, z "
                           "(R = Rz Rx Ry)"}


REGISTRATION_SPACING_MM = 3.0  # images are block-averaged to about this voxel size before registering
SHRINK_FACTORS = (2, 1)  # pyramid levels on top of that
METRIC_SAMPLES = 30000  # random samples per metric evaluation (fixed seed: repeatable)


MIN_REGISTRATION_VOXELS = 4  # per axis after block-averaging (the Gaussian smoothing needs 4)
LOW_LIVER_DICE = 0.7  # liver Dice after alignment under this: the alignment is doubtful, said so
LARGE_ROTATION_DEG = 20.0
"""An alignment that turns the follow-up by more than this (degrees, the whole angle) is warned of: patients lying
on their back turn a few degrees between two scans, while a scan stored mirrored (left-right, front-back or head-foot,
e.g. by a wrong NIfTI header) is aligned by a large turn: the example CTs mirrored left-right aligned with a 52.5 and
a 32.0 degree turn and liver Dice 0.763 and 0.777, over :data:`LOW_LIVER_DICE`, and the lesions matched wrongly (a
false PD from 'new' lesions) without a word (the follow-up audit)."""
CT_WORSE_THAN_LIVER = 0.1  # a CT registration whose liver Dice is this much under the masks' alignment is not used


def _coarse(image):
    """Block-average (``BinShrink``) a SimpleITK image to voxels of about REGISTRATION_SPACING_MM, keeping at
    least ``MIN_REGISTRATION_VOXELS`` per axis where the image has them (a 3-slice scan is not shrunk in z)."""
    sitk = _sitk()
    factors = [max(1, min(int(round(REGISTRATION_SPACING_MM / s)), n // MIN_REGISTRATION_VOXELS))
               for s, n in zip(image.GetSpacing(), image.GetSize())]
    return sitk.BinShrink(image, factors) if max(factors) > 1 else image


def _registration_method(metric: str, fixed_size: Sequence[int], moving_size: Sequence[int], fixed_mask=None):
    """Rigid multi-resolution registration set-up; ``fixed_size`` / ``moving_size``: ``(x, y, z)`` voxels of the
    (coarse) fixed and moving images."""
    fixed_voxels = int(np.prod([int(n) for n in fixed_size]))
    sitk = _sitk()
    reg = sitk.ImageRegistrationMethod()
    if metric == "mattes":
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    else:
        reg.SetMetricAsMeanSquares()
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentagePerLevel(
        [min(1.0, METRIC_SAMPLES * f ** 3 / max(1, fixed_voxels)) for f in SHRINK_FACTORS], seed=7)
    if fixed_mask is not None:
        reg.SetMetricFixedMask(fixed_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3, numberOfIterations=150,
                                                 relaxationFactor=0.6, gradientMagnitudeTolerance=1e-8)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(SHRINK_FACTORS))
    # ITK's recursive Gaussians (the pyramid's smoothing, the metric's image gradients) need 4 voxels per axis: a
    # thinner scan (a few slices) is registered unsmoothed, with central-difference gradients
    # either image: a 3-slice follow-up failed in ITK's smoothing, and the error blamed the scans' regions
    thick = min(int(n) for n in list(fixed_size) + list(moving_size)) >= MIN_REGISTRATION_VOXELS
    reg.SetSmoothingSigmasPerLevel([1.0 if thick else 0.0, 0.0])
    if not thick:
        reg.MetricUseFixedImageGradientFilterOff()
        reg.MetricUseMovingImageGradientFilterOff()
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    return reg


def _smoothed_mask(labels: CTVolume):
    """Liver mask (label >= 1) as float, block-averaged to the registration voxel size, 2 mm Gaussian."""
    sitk = _sitk()
    image = _coarse(to_sitk((labels.array >= 1).astype(np.float32), labels.geometry))
    for axis, size in enumerate(image.GetSize()):  # axes too short for the recursive filter stay unsmoothed
        if size >= MIN_REGISTRATION_VOXELS:
            image = sitk.RecursiveGaussian(image, 2.0, False, sitk.RecursiveGaussianImageFilter.ZeroOrder, axis)
    return image


def _clamped_ct(ct: CTVolume):
    """CT clipped to -200..400 HU (soft tissue, contrast; no air/bone extremes), block-averaged, float32."""
    image = to_sitk(np.clip(ct.array, -200, 400).astype(np.float32), ct.geometry)
    return _coarse(image)


def _dilated_liver_mask(labels: CTVolume, reference, margin_mm: float = 20.0):
    """Baseline liver (label >= 1) grown by ``margin_mm``, on the grid of the coarse ``reference`` image."""
    sitk = _sitk()
    liver = to_sitk((labels.array >= 1).astype(np.uint8), labels.geometry)
    liver = sitk.Resample(liver, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    radius = [max(1, int(round(margin_mm / s))) for s in reference.GetSpacing()]
    return sitk.BinaryDilate(liver, radius)


def _dicom_slice_thickness(ct: Optional[CTVolume], labels: Optional[CTVolume] = None) -> Dict[str, Any]:
    """The lesion report's DICOM thickness arguments of one scan (RECIST's measurable minimum): the DICOM
    SliceThickness (mm) ``ct`` was read with (``slice_thickness_source`` "dicom"), else that of the label map
    ``labels`` where it is a DICOM SEG that gives one ("dicom_seg"); None without either
    (:func:`~.metrics.recist.dicom_slice_thickness_of`)."""
    thickness_mm, source = dicom_slice_thickness_of(ct, labels)
    return {"dicom_slice_thickness_mm": thickness_mm, "dicom_slice_thickness_source": source}


def _without_resampling_fill(ct: Optional[CTVolume], in_hu: bool, what: str, warnings: List[str]
                             ) -> Optional[CTVolume]:
    """``ct`` (a CT in HU, ``in_hu``) with a resampling's fill outside its original field of view set to the scanner's
    padding on a copy, and a warning naming ``what`` CT added to ``warnings``; ``ct`` itself otherwise. Two fills are
    read so: one value above air (:func:`~.inference.resampling_fill.find_resampling_fill`: SimpleITK's default 0 HU,
    e.g. a follow-up registered onto the baseline's grid), and air's value beyond a straight line
    (:func:`~.inference.resampling_fill.find_straight_air_fill`, by which segment's lesion report reads a lesion
    beside it as cut). ``segment`` labels nothing in such a fill, so read as tissue or air the follow-up showed, a
    target lying there was 'disappeared'; as padding it lies outside the follow-up's view, as in a round field of
    view's padding, and a lesion the baseline's fill cuts may go on beyond it unseen (it was 'disappeared' from a
    follow-up with the same -1024 fill, which the check of what the follow-up shows beyond read as shown). A round
    field of view padded with air's value (-1024; :func:`~.inference.body_size.round_air_padding_zyx`) is set to the
    padding too, without a warning: it is no fill, but read as air a target lying there was 'disappeared', as in
    -3024 padding before it was read as outside the scan."""
    if ct is None or not in_hu:
        return ct
    from .inference.body_size import round_air_padding_zyx
    from .inference.resampling_fill import (READ_AS_PADDING_HU, find_resampling_fill, find_straight_air_fill,
                                            resampling_fill_warning, straight_air_fill_warning, without_fill)

    fill = find_resampling_fill(ct.array, ct.geometry)
    air_fill = find_straight_air_fill(ct.array, ct.geometry)
    round_padding = round_air_padding_zyx(ct.array, ct.geometry)  # a round field of view padded with -1024: no fill
    if fill is not None:
        warnings.append(f"{what} CT: {resampling_fill_warning(fill.record(), for_network=False)}")
    if air_fill is not None:
        warnings.append(f"{what} CT: {straight_air_fill_warning(ct.array, air_fill, ct.geometry)}")
    masks = [mask for mask in (None if fill is None else fill.mask, air_fill, round_padding) if mask is not None]
    if not masks:
        return ct
    return without_fill(ct, np.logical_or.reduce(masks), READ_AS_PADDING_HU)


def followup_view(followup: CTVolume, followup_ct: Optional[CTVolume] = None) -> np.ndarray:
    """What the follow-up scan shows, uint8 ``(z, y, x)`` on its grid (1 = shown): every voxel of its grid, less the
    scanner's padding outside a round field of view (CT values below
    :data:`~LiverTumorSegLib.validation.PADDING_BELOW_HU`) when its CT is given. Counting the whole grid as shown, a
    target lying in the padding (the segmentation finds nothing there) was 'disappeared' and the response PR or CR
    instead of NE (the RECIST audit); the lesion report already treats that padding as a scan edge."""
    if followup_ct is None:
        return np.ones(followup.shape_zyx, np.uint8)
    from .validation import PADDING_BELOW_HU

    return (np.asarray(followup_ct.array) >= PADDING_BELOW_HU).astype(np.uint8)


MIN_SHOWN_REGISTRATION_VOXELS = 1000
"""A scan's view (:func:`_shown_mask`) with fewer registration voxels wholly shown is not used as a metric mask."""


def _shown_mask(view_zyx: np.ndarray, geometry: ImageGeometry):
    """The registration voxels (:func:`_coarse` blocks) wholly inside a scan's view (``view_zyx``, uint8 ``(z, y, x)``
    on ``geometry``: :func:`followup_view`), as a SimpleITK uint8 mask for the registration's metric; None where the
    whole grid is shown (nothing to leave out) or too little is (:data:`MIN_SHOWN_REGISTRATION_VOXELS`). Outside a
    round field of view the scanner's padding, clipped to -200 HU and read as liver-free, pulled the alignment: a
    follow-up whose field of view cut off 40 % of the liver was aligned 18.7 degrees and 40 mm off (true: 5.8
    degrees), and its three lesions read 'disappeared' beside a 'new' one, a false PD (the follow-up audit)."""
    if bool(np.all(view_zyx)):
        return None
    sitk = _sitk()
    shown = sitk.Cast(_coarse(to_sitk(np.asarray(view_zyx, dtype=np.float32), geometry)) > 0.99, sitk.sitkUInt8)
    if int(np.count_nonzero(sitk.GetArrayViewFromImage(shown))) < MIN_SHOWN_REGISTRATION_VOXELS:
        return None
    return shown


def _view_on_baseline(view: np.ndarray, followup: CTVolume, baseline: CTVolume, transform,
                      cache: Optional[Dict[Any, np.ndarray]] = None) -> np.ndarray:
    """The follow-up's view (:func:`followup_view`) on the baseline grid after ``transform``, bool: resampled once
    per transform where ``cache`` (a dict the caller keeps for one ``view``) is given. The livers' Dice and their
    volumes each resampled it (0.84 s a time on a 300 x 512 x 512 grid: the whole-diff read)."""
    key = (tuple(transform.GetParameters()), tuple(transform.GetFixedParameters()))
    if cache is not None and key in cache:
        return cache[key]
    shown = resample_to_baseline(view, followup.geometry, baseline, transform) > 0
    if cache is not None:
        cache[key] = shown
    return shown


def _liver_dice_after(baseline: CTVolume, followup: CTVolume, transform, view: Optional[np.ndarray] = None,
                      cache: Optional[Dict[Any, np.ndarray]] = None) -> Optional[float]:
    """Liver (label >= 1) Dice after alignment, on the baseline grid, where both scans show (the follow-up's field
    of view on that grid, ``view``: :func:`followup_view`, by default the whole grid): a follow-up covering part of
    the baseline's range read 0.668 after a 0.5 mm alignment, and its warning asked to check that the scans show the
    same patient (the follow-up audit). Callers give it maps that both hold liver (label 1); one of tumor alone
    read a small overlap with the other liver as a failed alignment (:func:`_checked`)."""
    view = followup_view(followup) if view is None else view
    shown = _view_on_baseline(view, followup, baseline, transform, cache)
    a = (baseline.array >= 1) & shown
    b = resample_to_baseline((followup.array >= 1).astype(np.uint8), followup.geometry, baseline, transform) > 0
    total = int(a.sum()) + int(b.sum())
    return None if total == 0 else float(2.0 * np.count_nonzero(a & b) / total)


def align_followup(baseline: CTVolume, followup: CTVolume, baseline_ct: Optional[CTVolume] = None,
                   followup_ct: Optional[CTVolume] = None, method: str = "auto") -> Alignment:
    """Rigid alignment of the follow-up to the baseline (see module doc). ``baseline``/``followup``: label
    maps; ``method``: ``auto`` (CTs when both given, else liver masks), ``ct``, ``liver`` or ``none``."""
    sitk = _sitk()
    if method not in ALIGNMENT_METHODS:
        raise InputError(f"Unknown alignment '{method}'; use one of {', '.join(ALIGNMENT_METHODS)}.")
    has_ct = baseline_ct is not None and followup_ct is not None
    one_ct = None if has_ct or (baseline_ct is None and followup_ct is None) else \
        ("baseline" if baseline_ct is not None else "follow-up")
    view = followup_view(followup, followup_ct)
    if method == "auto":
        method = "ct" if has_ct else "liver"
    if method == "ct" and not has_ct:
        raise InputError(f"Alignment 'ct' needs both CTs ({_ct_options()}).")
    # label 1 in both: a map holding only tumor (a reader's Liver segment left empty) was "aligned" by moving its
    # tumor onto the other liver's centre, which gave a false PD
    without = [name for name, labels in (("baseline", baseline), ("follow-up", followup))
               if not (np.asarray(labels.array) == 1).any()]  # read once: the checks below and _checked use it
    has_liver = not without

    shown_on_baseline = {}  # type: Dict[Any, np.ndarray]  # the view on the baseline grid per transform

    def liver_dice(transform) -> Optional[float]:  # the livers' overlap, where both maps hold liver
        return _liver_dice_after(baseline, followup, transform, view, shown_on_baseline) if has_liver else None

    if method == "liver" and not has_liver:
        which = " and ".join(f"the {name}" for name in without)
        raise InputError(f"Cannot align on the liver: {which} label map has no liver label (1), only tumor or "
                         f"nothing; give both CTs ({_ct_options()}) or {_alignment_option('none')}.")
    if method == "none":
        transform = sitk.Euler3DTransform()
        return _checked(Alignment("none", transform, None, liver_dice(transform)), without)
    views = (followup_view(baseline, baseline_ct), view)  # what each scan shows (its grid less its padding)
    shown = (_shown_mask(views[0], baseline.geometry),  # the metrics' masks of them (None: all of the grid)
             _shown_mask(views[1], followup.geometry))  # (after 'none', which uses neither)
    try:
        if method == "liver":
            transform, metric = _align_livers(baseline, followup, shown)
            said = [] if one_ct is None else [  # the CT alignment was dropped without a word
                f"only the {one_ct} CT was given, so the scans were aligned on their liver masks, not on the CTs; give "
                f"both CTs ({_ct_options()}) to align on the CTs"]
            said += _liver_volume_change_warnings(baseline, followup, transform, views, shown_on_baseline)
            return _checked(Alignment("liver", transform, metric, liver_dice(transform), said), without)
        fixed, moving = _clamped_ct(baseline_ct), _clamped_ct(followup_ct)
        mask = _dilated_liver_mask(baseline, fixed) if (baseline.array >= 1).any() else shown[0]
        if mask is not None and shown[0] is not None:  # the baseline's liver where the baseline shows
            mask = sitk.And(mask, sitk.Resample(shown[0], fixed, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                                sitk.sitkUInt8))
        livers = None
        if has_liver:  # start where the livers overlap, not from the grids' centres
            livers = _align_livers(baseline, followup, shown)[0]
            initial = sitk.Euler3DTransform(livers)
        else:
            initial = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                                        sitk.CenteredTransformInitializerFilter.GEOMETRY)
        reg = _registration_method("mattes", fixed.GetSize(), moving.GetSize(), mask)
        if shown[1] is not None:
            reg.SetMetricMovingMask(shown[1])
        transform, metric = _register(fixed, moving, initial, reg)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1][:160] if str(exc).strip() else type(exc).__name__
        raise InputError(f"Alignment of the follow-up to the baseline failed ({reason}); "
                         f"check that both scans show the same region, or use {_alignment_option('none')}.") from None
    aligned = Alignment("ct", transform, metric, liver_dice(transform))
    changed = _liver_volume_change(baseline, followup, livers, views,  # where both show, by the livers' alignment
                                   shown_on_baseline)
    if changed is not None:  # the masks' overlap then favours their own (wrong) alignment: a false PD after a resection
        low = aligned.liver_dice is not None and aligned.liver_dice < LOW_LIVER_DICE  # said only where it is
        aligned.warnings.append(f"{_liver_volume_text(changed)}: the CT registration is kept"
                                + (", and its liver Dice after alignment is low for that reason" if low else
                                   " over the liver masks' alignment") + "; check the lesion matching in the picture")
    elif livers is not None:
        by_livers = liver_dice(livers)
        if aligned.liver_dice is not None and by_livers is not None and \
                aligned.liver_dice < by_livers - CT_WORSE_THAN_LIVER:
            aligned = Alignment("liver", livers, None, by_livers, [
                f"the CT registration overlapped the livers less (liver Dice {aligned.liver_dice:.3f}) than the liver "
                f"masks' alignment ({by_livers:.3f}); the liver alignment is used"])
    return _checked(aligned, without)


def _register(fixed, moving, initial, reg) -> Tuple[Any, float]:
    """Run the registration ``reg`` from ``initial``; returns ``(Euler3DTransform, final metric value)``."""
    sitk = _sitk()
    reg.SetInitialTransform(initial, inPlace=False)
    found = reg.Execute(fixed, moving)
    transform = sitk.Euler3DTransform(found.GetNthTransform(0) if hasattr(found, "GetNthTransform") else found)
    return transform, float(reg.GetMetricValue())


def _align_livers(baseline: CTVolume, followup: CTVolume, shown: Tuple[Any, Any] = (None, None)
                  ) -> Tuple[Any, float]:
    """Mean squares between the smoothed liver masks, started from their centres of mass. ``shown``: the metric's
    masks of what the baseline and the follow-up show (:func:`_shown_mask`, None for all): a liver the follow-up's
    round field of view cut matched the whole baseline liver 15.6 degrees off, and was the CT registration's start."""
    sitk = _sitk()
    fixed, moving = _smoothed_mask(baseline), _smoothed_mask(followup)
    initial = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                                sitk.CenteredTransformInitializerFilter.MOMENTS)
    reg = _registration_method("meansquares", fixed.GetSize(), moving.GetSize(), shown[0])
    if shown[1] is not None:
        reg.SetMetricMovingMask(shown[1])
    return _register(fixed, moving, initial, reg)


def dicom_patient_id(ct: Optional[CTVolume]) -> Optional[str]:
    """The PatientID of a CT read from a DICOM series (its first file's header), or None (no DICOM files, no
    pydicom, an unreadable header, an empty ID)."""
    files = (ct.meta.get("files") if ct is not None else None) or []
    if not files:
        return None
    try:
        import pydicom

        value = str(pydicom.dcmread(str(files[0]), stop_before_pixels=True, specific_tags=["PatientID"],
                                    force=True).get("PatientID", "") or "").strip()
    except Exception:  # noqa: BLE001 - a header that cannot be read says nothing about the patient
        return None
    return value or None


def _other_patient_warning(baseline_ct: Optional[CTVolume], followup_ct: Optional[CTVolume]) -> List[str]:
    """A warning when both CTs are DICOM series whose PatientIDs differ: another patient's scan with a similar liver
    aligned with liver Dice 0.91 and gave a response without a word (the follow-up audit). Only DICOM series carry
    the ID; NIfTI and other files are not checked."""
    ids = dicom_patient_id(baseline_ct), dicom_patient_id(followup_ct)
    if None in ids or ids[0] == ids[1]:
        return []
    return [f"the two CTs' DICOM PatientIDs differ ('{ids[0]}' and '{ids[1]}'): they may be two patients' scans, "
            f"and then no change or response here means anything; check that both belong to one patient (an "
            f"anonymisation may also have given one patient two IDs)"]


def _ct_options() -> str:
    return option_hint("--baseline-ct, --followup-ct", "baseline_ct=, followup_ct=")


def _alignment_option(value: str) -> str:
    """``--alignment VALUE`` for the command line, ``alignment='VALUE'`` for library calls. (The Slicer panel's
    job runs the command line in a child process: ``panel_text.followup_text`` words it for the panel.)"""
    return option_hint(f"--alignment {value}", f"alignment='{value}'")


LIVER_ALIGNMENT_VOLUME_CHANGE = 0.20
"""Livers (label >= 1) whose volumes differ by this share of the larger or more: their masks' shapes differ, and
an alignment of the masks with them (a resection of 24 % put it 11 mm off, the CTs' within 1 mm), so the masks'
alignment is warned of and does not replace the CTs' (:func:`align_followup`)."""


def _liver_volume_change(baseline: CTVolume, followup: CTVolume, transform: Any = None,
                         views: Tuple[Optional[np.ndarray], Optional[np.ndarray]] = (None, None),
                         cache: Optional[Dict[Any, np.ndarray]] = None
                         ) -> Optional[Tuple[float, float, float, bool]]:
    """``(baseline mL, follow-up mL, share, where both show)`` of the two livers (label >= 1) when their volumes
    differ by :data:`LIVER_ALIGNMENT_VOLUME_CHANGE` of the larger or more, else None. Where ``transform`` (baseline
    points to follow-up points) is given, each liver is counted where the other scan shows (its grid, less the
    scanner's padding of ``views``: the baseline's and the follow-up's :func:`followup_view`, None for the whole
    grid; ``where both show`` True): a follow-up whose round field of view cut off 40 % of the liver read as a
    resection, and the CT registration was kept over the livers' alignment where it had gone 15-25 mm astray (a
    false PD); a follow-up whose range ended 33 mm short of the baseline's read 24 % smaller beside a liver Dice of
    1.000, and the swap to the livers' alignment was never weighed (the follow-up audits). Without ``transform``,
    the whole livers."""
    if transform is None:
        counts = [np.count_nonzero(np.asarray(v.array) >= 1) for v in (baseline, followup)]
    else:
        base_view, follow_view = (np.ones(v.shape_zyx, np.uint8) if w is None else w
                                  for v, w in zip((baseline, followup), views))
        counts = [np.count_nonzero((np.asarray(baseline.array) >= 1)  # (``cache``: of views[1], the follow-up's)
                                   & _view_on_baseline(follow_view, followup, baseline, transform,
                                                       cache if views[1] is not None else None)),
                  np.count_nonzero((np.asarray(followup.array) >= 1)
                                   & (resample_to_followup(base_view, baseline.geometry, followup, transform) > 0))]
    volumes = [float(n) * float(np.prod(v.geometry.spacing)) / 1000.0 for n, v in zip(counts, (baseline, followup))]
    if max(volumes) <= 0:
        return None
    share = abs(volumes[0] - volumes[1]) / max(volumes)
    both = transform is not None
    return (volumes[0], volumes[1], share, both) if share >= LIVER_ALIGNMENT_VOLUME_CHANGE else None


def _liver_volume_text(change: Tuple[float, float, float, bool]) -> str:
    where = " where both scans show" if change[3] else ""
    return (f"the livers' volumes differ by {change[2] * 100:.0f} % (baseline {change[0]:.0f} mL, follow-up "
            f"{change[1]:.0f} mL{where}: a resection, regrowth, a large change of the tumors or a scan covering part "
            f"of the liver)")


def _liver_volume_change_warnings(baseline: CTVolume, followup: CTVolume, transform: Any = None,
                                  views: Tuple[Optional[np.ndarray], Optional[np.ndarray]] = (None, None),
                                  cache: Optional[Dict[Any, np.ndarray]] = None) -> List[str]:
    """A warning when the scans, aligned on their liver masks, hold livers whose volumes differ by
    :data:`LIVER_ALIGNMENT_VOLUME_CHANGE` or more: the masks' alignment is less certain then. After a resection of a
    third of the liver it was 6-10 mm off (the CTs' within 0.9 mm) while its liver Dice, 0.76, raised no warning
    (the follow-up audit)."""
    change = _liver_volume_change(baseline, followup, transform, views, cache)  # (arguments as there)
    if change is None:
        return []
    return [f"{_liver_volume_text(change)}, so their masks' alignment is less certain and a lesion that did not "
            f"change may be matched wrongly (a small one read 'disappeared' and 'new'); give both CTs "
            f"({_ct_options()}) to align on the CTs, and check the matching in the picture"]


def _checked(alignment: Alignment, without: Sequence[str]) -> Alignment:
    """``alignment`` with a warning when its livers overlap little (the lesion matching is then unreliable), or
    when a map holds no liver label (``without``: "baseline", "follow-up"), so that no liver overlap checks it."""
    if without:
        alignment.warnings.append(
            f"the {' and '.join(without)} label map{'s hold' if len(without) > 1 else ' holds'} no liver label (1), "
            f"only tumor: the livers' overlap after alignment (liver Dice) is not measured, so nothing checks the "
            f"alignment; check the lesion matching in the picture")
    angle = alignment.rotation_angle_deg()
    if angle > LARGE_ROTATION_DEG:
        alignment.warnings.append(
            f"the alignment turned the follow-up by {angle:.1f} degrees (more than {LARGE_ROTATION_DEG:g}), more than "
            f"a patient turns between two scans unless one was taken lying prone: a scan stored mirrored (left-right, "
            f"front-back or head-foot, e.g. by a wrong NIfTI header) is aligned so, and its lesions are then matched "
            f"wrongly; check both scans' orientation in a viewer and the lesion matching in the picture")
    if alignment.liver_dice is not None and alignment.liver_dice < LOW_LIVER_DICE:
        alignment.warnings.append(
            f"the livers overlap little after alignment (liver Dice {alignment.liver_dice:.3f} < {LOW_LIVER_DICE}): "
            f"the lesion matching and the response may be wrong; check that both scans show the same patient and "
            f"region, or try another alignment ({_alignment_option('ct|liver|none')})")
    return alignment


def _integers_onto(array_zyx: np.ndarray, geometry: ImageGeometry, onto: CTVolume, transform) -> np.ndarray:
    """Integer array ``(z, y, x)`` on ``geometry`` resampled onto ``onto``'s grid (nearest neighbour, 0 outside);
    ``transform`` takes ``onto``'s points to ``geometry``'s."""
    sitk = _sitk()
    dtype = np.uint16 if array_zyx.max(initial=0) < 65535 else np.uint32
    moving = to_sitk(array_zyx.astype(dtype), geometry)
    reference = to_sitk(np.zeros(onto.shape_zyx, np.uint8), onto.geometry)
    out = sitk.Resample(moving, reference, transform, sitk.sitkNearestNeighbor, 0, moving.GetPixelID())
    return sitk.GetArrayFromImage(out)


def resample_to_baseline(array_zyx: np.ndarray, followup_geometry: ImageGeometry, baseline: CTVolume,
                         transform) -> np.ndarray:
    """Follow-up integer array ``(z, y, x)`` on the baseline grid (nearest neighbour, 0 outside)."""
    return _integers_onto(array_zyx, followup_geometry, baseline, transform)


def resample_to_followup(array_zyx: np.ndarray, baseline_geometry: ImageGeometry, followup: CTVolume,
                         transform) -> np.ndarray:
    """Baseline integer array ``(z, y, x)`` on the follow-up grid (nearest neighbour, 0 outside): the inverse of
    :func:`resample_to_baseline`'s mapping (``transform`` takes baseline points to follow-up points)."""
    return _integers_onto(array_zyx, baseline_geometry, followup, transform.GetInverse())


def overlap_volumes(base_components: np.ndarray, follow_on_base: np.ndarray, base_on_follow: np.ndarray,
                    follow_components: np.ndarray, base_voxel_ml: float, follow_voxel_ml: float
                    ) -> Dict[Tuple[int, int], float]:
    """``{(baseline id, follow-up id): shared mL}``, the larger of the overlap counted on the baseline grid and on the
    follow-up grid. Counted on the baseline's voxel centres alone, a follow-up lesion lying between two thick baseline
    slices (5 mm) shared no voxel with the baseline lesion it lies inside: the target 'disappeared' and the remnant was
    'new', PD, where it had shrunk (PR); a 2.5 mm shift along z decided it (the follow-up audit)."""
    on_base = _overlap_counts(base_components, follow_on_base)
    on_follow = _overlap_counts(base_on_follow, follow_components)
    return {key: max(on_base.get(key, 0) * float(base_voxel_ml), on_follow.get(key, 0) * float(follow_voxel_ml))
            for key in sorted(set(on_base) | set(on_follow))}


def _link_groups(edges: List[Tuple[int, int]], n_base: int, n_follow: int) -> List[Tuple[List[int], List[int]]]:
    """Connected groups of the bipartite link graph: [(baseline ids, follow-up ids)], every lesion once."""
    parent = {}  # type: Dict[Tuple[str, int], Tuple[str, int]]

    def find(node):
        while parent.setdefault(node, node) != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for i in range(1, n_base + 1):
        find(("b", i))
    for j in range(1, n_follow + 1):
        find(("f", j))
    for i, j in edges:
        parent[find(("b", i))] = find(("f", j))
    groups = {}  # type: Dict[Tuple[str, int], Tuple[List[int], List[int]]]
    for node in list(parent):
        base_ids, follow_ids = groups.setdefault(find(node), ([], []))
        (base_ids if node[0] == "b" else follow_ids).append(node[1])
    return [(sorted(b), sorted(f)) for b, f in groups.values()]


@dataclass
class LesionLinks:
    """How :func:`link_lesions` linked the lesions of the two scans (ids as in each scan's lesion report)."""

    groups: List[Tuple[List[int], List[int]]]  # (baseline ids, follow-up ids): one row of the change table each
    owner: Dict[int, int]  # follow-up id -> the baseline lesion it belongs to (overlaps most, or moved from)
    coalesced: Dict[int, int]  # baseline id owning no follow-up lesion -> the follow-up lesion it merged into
    overlap: Dict[Tuple[int, int], Any]  # (baseline id, follow-up id) -> shared mL (both grids), or voxels

    def followup_of(self, base_id: int) -> List[int]:
        """The follow-up lesions that belong to baseline lesion ``base_id``: those it owns (its own lesion, or
        its fragments after a split), else the lesion it coalesced into; [] when it disappeared."""
        owned = sorted(j for j, i in self.owner.items() if i == base_id)
        return owned or ([self.coalesced[base_id]] if base_id in self.coalesced else [])


def _overlap_counts(base_components: np.ndarray, follow_on_base: np.ndarray) -> Dict[Tuple[int, int], int]:
    """``{(baseline id, follow-up id): shared voxels}`` of two lesion id maps ``(z, y, x)`` on the baseline grid, in
    ascending (baseline id, follow-up id) order. One integer key per voxel pair: ``np.unique(..., axis=0)`` on the
    id pairs took 8.7 s for a 10 million voxel mass present in both scans."""
    both = (base_components > 0) & (follow_on_base > 0)
    base_ids = base_components[both].astype(np.int64)
    follow_ids = follow_on_base[both].astype(np.int64)
    if not base_ids.size:
        return {}
    stride = int(follow_ids.max()) + 1
    keys, counts = np.unique(base_ids * stride + follow_ids, return_counts=True)
    return {(int(k // stride), int(k % stride)): int(n) for k, n in zip(keys, counts)}


def link_lesions(base_components: np.ndarray, follow_on_base: np.ndarray, base_lesions: Sequence[Dict[str, Any]],
                 follow_lesions: Sequence[Dict[str, Any]], follow_centroids_on_base_lps: Dict[int, np.ndarray],
                 overlap: Optional[Dict[Tuple[int, int], float]] = None) -> LesionLinks:
    """Links from voxel overlap on the baseline grid, then the centroid rule for lesions without overlap (see
    module doc). Each follow-up lesion belongs to the baseline lesion it shares most voxels with (ties: the lower
    baseline id); a baseline lesion that owns none but overlaps follow-up lesions coalesced into the one it shares
    most voxels with. ``*_lesions``: the two reports' lesion dicts. ``overlap``: the shared amount of each pair where
    the caller has it (:func:`overlap_volumes`, mL on both grids), else voxels counted on the baseline grid."""
    if overlap is None:
        overlap = _overlap_counts(base_components, follow_on_base)
    owner = {}  # type: Dict[int, int]
    for (i, j), n in sorted(overlap.items()):  # a follow-up lesion touching a target and a non-target
        if j not in owner or n > overlap[(owner[j], j)]:  # (one grown into the other's old place) is not both
            owner[j] = i
    owning = set(owner.values())  # (a look into owner.values() per pair took seconds for hundreds of lesions)
    coalesced = {}  # type: Dict[int, int]
    for (i, j), n in sorted(overlap.items()):
        if i not in owning and (i not in coalesced or n > overlap[(i, coalesced[i])]):
            coalesced[i] = j
    edges = [(i, j) for j, i in owner.items()] + [(i, j) for i, j in coalesced.items()]
    linked_base = {i for i, _ in edges}
    linked_follow = {j for _, j in edges}
    base_by_id = {d["id"]: d for d in base_lesions}
    follow_by_id = {d["id"]: d for d in follow_lesions}

    def near(base_id: int, follow_id: int) -> float:
        distance = float(np.linalg.norm(np.asarray(base_by_id[base_id]["centroid_lps_mm"])
                                        - follow_centroids_on_base_lps[follow_id]))
        limit = min(MOVED_MAX_MM, max(5.0, 0.5 * max(base_by_id[base_id]["long_axis_mm"],
                                                      follow_by_id[follow_id]["long_axis_mm"])))
        return distance if distance <= limit else np.inf

    # without overlap only a lesion that moved is linked (each partner at most once): a merge or split needs
    # shared voxels, else a new lesion beside a shrinking one (or a small one vanishing beside a large one) would
    # be absorbed as a fragment, hiding a PD (or taking the large one's diameter)
    unlinked = sorted(set(base_by_id) - linked_base)
    within_reach = _follow_ids_within(unlinked, [j for j in follow_by_id if j not in linked_follow], base_by_id,
                                      follow_centroids_on_base_lps, MOVED_MAX_MM)
    for i in unlinked:
        candidates = [(near(i, j), j) for j in within_reach[i] if j not in linked_follow]
        candidates = [c for c in candidates if np.isfinite(c[0])]
        if candidates:
            j = min(candidates)[1]
            edges.append((i, j))
            owner[j] = i
            linked_base.add(i)
            linked_follow.add(j)
    # (no second pass from the follow-up side: a baseline lesion left unlinked found no unlinked follow-up lesion
    # near it, and the unlinked follow-up lesions are fewer now, so none has an unlinked baseline lesion near it)
    return LesionLinks(_link_groups(edges, len(base_lesions), len(follow_lesions)), owner, coalesced, overlap)


NEAR_PAIRS_BLOCK = 4_000_000
"""Baseline x follow-up lesion pairs whose centroid distances :func:`_follow_ids_within` computes at once (32 MB)."""


def _follow_ids_within(base_ids: Sequence[int], follow_ids: Sequence[int], base_by_id: Dict[int, Dict[str, Any]],
                       follow_centroids_on_base_lps: Dict[int, np.ndarray], reach_mm: float) -> Dict[int, List[int]]:
    """Baseline id -> the ``follow_ids`` whose centroids (LPS mm, on the baseline grid) lie within ``reach_mm`` of
    its own (and a hair beyond, so that rounding leaves none out: :func:`link_lesions` measures each candidate
    again), all pairs at once in blocks of :data:`NEAR_PAIRS_BLOCK`: one distance per pair in Python took 1.5 s
    for 850 x 850 lesions. A NaN centroid is within reach of none."""
    within = {i: [] for i in base_ids}  # type: Dict[int, List[int]]
    if not base_ids or not follow_ids:
        return within
    base_xyz = np.array([base_by_id[i]["centroid_lps_mm"] for i in base_ids], dtype=np.float64).reshape(-1, 3)
    follow_xyz = np.array([follow_centroids_on_base_lps[j] for j in follow_ids], dtype=np.float64).reshape(-1, 3)
    limit = (reach_mm + 1e-6) ** 2
    rows = max(1, NEAR_PAIRS_BLOCK // len(follow_ids))
    for start in range(0, len(base_ids), rows):
        block = base_xyz[start:start + rows]
        squared = sum((block[:, None, axis] - follow_xyz[None, :, axis]) ** 2 for axis in range(3))
        for row, column in zip(*np.nonzero(squared <= limit)):
            within[base_ids[start + int(row)]].append(follow_ids[int(column)])
    return within


def match_lesions(base_components: np.ndarray, follow_on_base: np.ndarray, base_lesions: Sequence[Dict[str, Any]],
                  follow_lesions: Sequence[Dict[str, Any]], follow_centroids_on_base_lps: Dict[int, np.ndarray]
                  ) -> List[Tuple[List[int], List[int]]]:
    """Groups ``(baseline ids, follow-up ids)`` of :func:`link_lesions`."""
    return link_lesions(base_components, follow_on_base, base_lesions, follow_lesions,
                        follow_centroids_on_base_lps).groups


def _percent(change: float, reference: float) -> Optional[float]:
    return None if reference <= 0 else 100.0 * change / reference


def _status(base_ids: List[int], follow_ids: List[int], base_long: float, follow_long: float) -> str:
    if not follow_ids:
        return "disappeared"
    if not base_ids:
        return "new"
    if len(base_ids) > 1:
        return "merged"
    if len(follow_ids) > 1:
        return "split"
    relative = (follow_long - base_long) / base_long if base_long > 0 else 0.0
    if at_least(relative, GROWN_CHANGE):  # exactly +20 % is grown, whatever the float rounding
        return "grown"
    if at_most(relative, SHRUNK_CHANGE):
        return "shrunk"
    return "stable"


def _recist_followup_mm(entry: Dict[str, Any], too_small_default: bool = False,
                        follow_long_axes: Optional[Dict[int, float]] = None) -> float:
    """A target group's follow-up diameter for the sum: 0 when it disappeared, else the measured long axes of its
    follow-up lesions that belong to its target(s) (``recist_followup_ids``; RECIST 1.1 records actual
    measurements, even when very small). ``too_small_default``: each of those lesions at least 5 mm, the value
    RECIST assigns a target a reader judges too small to measure, *per lesion*: RECIST 1.1 (Eisenhauer et al.
    2009, Appendix II, "Lesions that split or coalesce on treatment") has the longest diameters of a fragmented
    lesion's portions "added together to calculate the target lesion sum", and ("Target lesions that become 'too
    small to measure'") "if the lesion is believed to be present and is faintly seen but too small to measure, a
    default value of 5 mm should be assigned" (0 mm when it has likely disappeared). So two 3 mm fragments count
    5 + 5 = 10 mm, not 5 mm for the group as a whole (as this gave before); the lesion a merge coalesced into is one
    lesion, at least 5 mm. ``follow_long_axes``: the follow-up lesions' long axes (mm) by id, needed for the
    default of a group of several; without it the group's sum is taken as one lesion."""
    ids = entry["recist_followup_ids"]
    if not ids:
        return 0.0
    measured = float(entry["recist_followup_mm"])
    if not too_small_default:
        return measured
    if follow_long_axes is None or len(ids) == 1:
        return max(measured, RECIST_TOO_SMALL_MM)
    return float(sum(max(float(follow_long_axes[j]), RECIST_TOO_SMALL_MM) for j in ids))


def _under_5_mm_text(entries: Sequence[Dict[str, Any]], follow_long_axes: Dict[int, float],
                     default_response: str) -> str:
    """The response reason's part on the targets flagged ``recist_under_5_mm`` whose 5 mm default
    (:func:`_recist_followup_mm`) gives ``default_response``. A target measured as one follow-up lesion "measures
    under 5 mm"; a split target (several fragments counted) is named with its fragments under 5 mm only, since the
    lesion, its fragments summed, may well measure more (8 + 3.8 = 11.8 mm): it read "measure under 5 mm" for it."""
    whole, split, fragments_under = [], [], 0
    for e in entries:
        if not e.get("recist_under_5_mm"):
            continue
        ids = e["recist_followup_ids"]
        if len(ids) < 2:
            whole.append(str(e["number"]))
            continue
        fragments = [float(follow_long_axes[j]) for j in ids]
        under = [mm for mm in fragments if not at_least(mm, RECIST_TOO_SMALL_MM)]
        under_text = ", ".join(text_short_of(mm, RECIST_TOO_SMALL_MM) for mm in under)  # 4.98: not '5.0'
        fragments_under += len(under)
        split.append(f"split target lesion {e['number']} has {len(under)} of its {len(fragments)} fragments under "
                     f"5 mm ({under_text} mm; its fragments sum to "
                     f"{float(e['recist_followup_mm']):.1f} mm)")
    parts = ([f"target lesion(s) {', '.join(whole)} measure under 5 mm"] if whole else []) + split
    if not split:
        return (f"{parts[0]}: counted as measured (RECIST 1.1 4.3.2); a reader who judges them too small to measure "
                f"counts 5 mm, which gives {default_response}")
    defaults = ", ".join(f"lesion {e['number']}: {_recist_followup_mm(e, True, follow_long_axes):.1f} mm"
                         for e in entries if e.get("recist_under_5_mm") and len(e["recist_followup_ids"]) > 1)
    several = len(whole) + fragments_under > 1
    return (f"{' and '.join(parts)}: counted as measured (RECIST 1.1 4.3.2); a reader who judges "
            f"{'them' if several else 'it'} too small to measure counts 5 mm for {'each' if several else 'it'}, a "
            f"split lesion's fragments then summed ({defaults}), which gives {default_response}")


def _group_entry(number: int, base_ids: List[int], follow_ids: List[int], base_by_id: Dict[int, Dict[str, Any]],
                 follow_by_id: Dict[int, Dict[str, Any]], targets: Sequence[int], min_new_lesion_mm: float,
                 follow_centroids_on_base_lps: Dict[int, np.ndarray],
                 target_followup_ids: Collection[int]) -> Dict[str, Any]:
    """One row of the change table. ``target_followup_ids``: the follow-up lesions (of any group) that belong to
    a baseline target lesion (:meth:`LesionLinks.followup_of`), the only ones counted in the sum of diameters."""
    base = [base_by_id[i] for i in base_ids]
    follow = [follow_by_id[j] for j in follow_ids]
    base_ml = float(sum(d["volume_ml"] for d in base))
    follow_ml = float(sum(d["volume_ml"] for d in follow))
    base_long = float(sum(d["long_axis_mm"] for d in base))
    follow_long = float(sum(d["long_axis_mm"] for d in follow))
    status = _status(base_ids, follow_ids, base_long, follow_long)
    target = any(i in targets for i in base_ids)
    counted = [j for j in follow_ids if target and j in target_followup_ids]
    if base:
        centroid = np.mean([d["centroid_lps_mm"] for d in base], axis=0)
    else:
        centroid = np.mean([follow_centroids_on_base_lps[j] for j in follow_ids], axis=0)
    entry = {
        "number": number, "status": status, "baseline_ids": base_ids, "followup_ids": follow_ids,
        "baseline_volume_ml": base_ml, "followup_volume_ml": follow_ml,
        "volume_change_ml": follow_ml - base_ml, "volume_change_percent": _percent(follow_ml - base_ml, base_ml),
        "baseline_long_axis_mm": base_long, "followup_long_axis_mm": follow_long,
        "long_axis_change_mm": follow_long - base_long,
        "long_axis_change_percent": _percent(follow_long - base_long, base_long),
        "baseline_short_axis_mm": float(sum(d["short_axis_mm"] for d in base)),
        "followup_short_axis_mm": float(sum(d["short_axis_mm"] for d in follow)),
        "recist_target": target,
        # the target(s)' part: a follow-up lesion of a non-target in the same group is not in the sum of diameters
        "recist_followup_ids": counted,
        "recist_followup_mm": float(sum(follow_by_id[j]["long_axis_mm"] for j in counted)),
        "centroid_baseline_lps_mm": [float(v) for v in centroid],
        "centroid_baseline_ras_mm": [0.0 - float(centroid[0]), 0.0 - float(centroid[1]), float(centroid[2])],
    }
    if status == "new":
        entry["unequivocal"] = at_least(follow_long, min_new_lesion_mm)  # exactly it counts
    if any(not at_least(follow_by_id[j]["long_axis_mm"], RECIST_TOO_SMALL_MM) for j in counted):
        # counted as measured; see the response reason for the 5 mm default (a split target: a fragment under 5 mm,
        # each fragment getting the default on its own, RECIST 1.1 summing the fragments: _recist_followup_mm)
        entry["recist_under_5_mm"] = True
    return entry


def _non_target_growth(entries: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Non-target groups (seen at both time points) whose long axis grew by >= 20 % and >= 5 mm: candidates for
    RECIST's unequivocal non-target progression, which is a reader's call."""
    grown = []
    for e in entries:
        # only "new" lacks a base; a baseline cut by the scan's edge (change None) is a lower bound
        if e["recist_target"] or e["status"] in ("new", "disappeared", "not_assessed") or \
                e["long_axis_change_mm"] is None:
            continue
        base = e["baseline_long_axis_mm"]
        if base > 0 and meets_progression(base, base + e["long_axis_change_mm"]):
            grown.append(e)
    return grown


def _unseen_text(entries: Sequence[Dict[str, Any]], noun: str) -> str:
    """``noun`` and the numbers of the not assessed ``entries``, with why each is not assessed (one clause per
    reason; at most :data:`~.inference.lesion_report.LISTED_LESIONS_MAX` numbers a clause, then how many more)."""
    from .inference.lesion_report import listed_lesions_text

    by_reason = {}  # type: Dict[str, List[str]]
    for e in entries:
        by_reason.setdefault(e["not_assessed_reason"], []).append(str(e["number"]))
    return "; ".join(f"{noun} {listed_lesions_text(numbers, 'not_assessed in the rows')} "
                     f"{NOT_ASSESSED_REASONS[code][0]}" for code, numbers in by_reason.items())


UNSEEN_PART_GAP_MM = MOVED_MAX_MM
"""A new follow-up lesion that the follow-up scan's edge cuts and that lies within this gap (mm, from its voxel centres
mapped into the baseline after alignment to the nearest baseline lesion voxel centre) of a baseline lesion partly or
wholly outside the follow-up scan, of which the follow-up shows nothing, may be that
lesion's part inside the scan (moved or grown across the edge): equivocal, not counted as new
(:func:`_new_beside_unseen`). A dome target 3 mm lower at a follow-up whose range ended within it showed as a cap
sharing no voxel with it, 'new', and made a false PD (the follow-up audit)."""


def _new_beside_unseen(entries: Sequence[Dict[str, Any]], base_components: np.ndarray,
                       follow_components: np.ndarray, baseline_geometry: ImageGeometry,
                       followup_geometry: ImageGeometry, align: "Alignment", base_by_id: Dict[int, Dict[str, Any]],
                       follow_by_id: Dict[int, Dict[str, Any]]) -> Dict[int, List[int]]:
    """Row number of each unequivocal ``new`` row whose follow-up lesion the follow-up scan's edge cuts
    (``touches_scan_edge``) -> the numbers of the ``not_assessed`` rows (outside the follow-up's view) with nothing
    seen at follow-up whose baseline lesions lie within :data:`UNSEEN_PART_GAP_MM` of it. The gap is taken in the
    patient (mm, after alignment): from each follow-up lesion voxel's centre (on its own grid, at most
    :data:`EDGE_PADDING_POINTS_MAX` of them, evenly thinned) to the nearest baseline lesion voxel centre. On the
    baseline grid a cap thinner than one of its slices vanished (a 5 mm baseline kept PD), and a row whose lesion
    the follow-up already shows (its part inside the scan matched) took a real new lesion beside it for its part
    (NE instead of PD; the review)."""
    from scipy import ndimage

    unseen = [e for e in entries if e["status"] == "not_assessed"
              and e.get("not_assessed_reason") == OUTSIDE_FOLLOWUP_VIEW and not e["followup_ids"]]
    cut_new = [e for e in entries if e["status"] == "new" and e.get("unequivocal")
               and any(follow_by_id[j].get("touches_scan_edge") for j in e["followup_ids"])]
    found = {}  # type: Dict[int, List[int]]
    if not unseen or not cut_new:
        return found
    to_index = np.linalg.inv(baseline_geometry.ijk_to_lps())
    on_baseline = {}  # type: Dict[int, np.ndarray]  # row number -> its lesion voxels' (z, y, x) baseline indices
    for entry in cut_new:
        points = []
        for j in entry["followup_ids"]:
            box = tuple(slice(a, b) for a, b in follow_by_id[j]["bounding_box_zyx"])
            points.append(np.argwhere(follow_components[box] == j) + [b.start for b in box])
        zyx = np.concatenate(points)
        if len(zyx) > EDGE_PADDING_POINTS_MAX:
            zyx = zyx[::int(np.ceil(len(zyx) / EDGE_PADDING_POINTS_MAX))]
        base_lps = align.map_points(voxel_centres_lps(zyx.astype(np.float64), followup_geometry), to_baseline=True)
        on_baseline[entry["number"]] = (base_lps @ to_index[:3, :3].T + to_index[:3, 3])[:, ::-1]
    spacing = np.asarray(baseline_geometry.spacing[::-1], dtype=np.float64)
    reach = np.ceil(UNSEEN_PART_GAP_MM / spacing).astype(np.int64) + 1
    for row in unseen:
        boxes = np.array([base_by_id[i]["bounding_box_zyx"] for i in row["baseline_ids"]])  # (n, 3, 2)
        box = tuple(slice(max(int(boxes[:, a, 0].min()) - int(reach[a]), 0),
                          min(int(boxes[:, a, 1].max()) + int(reach[a]), n))
                    for a, n in enumerate(base_components.shape))
        inside = np.isin(base_components[box], row["baseline_ids"])
        gap_mm = ndimage.distance_transform_edt(~inside, sampling=spacing)
        start = np.array([b.start for b in box], dtype=np.float64)
        size = np.array(gap_mm.shape, dtype=np.float64)
        for entry in cut_new:
            local = on_baseline[entry["number"]] - start
            # points beyond the box lie farther than the gap from every voxel of the lesion (the box's margin)
            within = np.all((local >= -0.5) & (local <= size - 0.5), axis=1)
            if not within.any():
                continue
            near = ndimage.map_coordinates(gap_mm, local[within].T, order=1, mode="nearest")
            if float(near.min()) <= UNSEEN_PART_GAP_MM + 1e-6:
                found.setdefault(entry["number"], []).append(row["number"])
    return found


def _beside_unseen_text(beside: Dict[int, List[int]]) -> str:
    """The response reason's clause for :func:`_new_beside_unseen`'s rows (empty when none)."""
    if not beside:
        return ""
    from .inference.lesion_report import listed_lesions_text

    pairs = [f"{new} (beside {', '.join(map(str, rows))})" for new, rows in sorted(beside.items())]
    return (f"; new lesion(s) in row(s) {listed_lesions_text(pairs, 'may_be_part_of_rows in the rows')} are cut by "
            f"the follow-up scan's edge within {UNSEEN_PART_GAP_MM:g} mm of baseline lesions partly or wholly outside "
            f"the follow-up scan: each may be that lesion's part inside the scan, so equivocal, not counted (RECIST "
            f"1.1: if a later scan shows it new, PD dates from this scan)")


EDGE_PADDING_POINTS_MAX = 4000
"""At most this many padding voxels (evenly thinned) are mapped to the follow-up by :func:`_padding_beyond`."""


def _padding_beyond(base_components: np.ndarray, lesion: Dict[str, Any], geometry: ImageGeometry,
                    baseline_ct: Optional[CTVolume], margin_mm: float) -> np.ndarray:
    """``(n, 3)`` ``(z, y, x)`` indices of the baseline CT's scanner padding (outside a round field of view, below
    :data:`~LiverTumorSegLib.validation.PADDING_BELOW_HU`) where ``lesion`` may go on unseen: the padding voxels
    beside it (face neighbours; any neighbour on a turned grid, :func:`~.inference.lesion_report.padding_neighbourhood`)
    and those ``margin_mm`` (less the largest voxel spacing) to ``margin_mm`` from it,
    evenly thinned to :data:`EDGE_PADDING_POINTS_MAX`; none when it borders no padding or no CT is given. Only
    the grid's faces were tested, so a lesion cut by that round edge alone counted as seen beyond it: gone at a
    follow-up of the same field of view, it was 'disappeared' and the response CR (the follow-up audit)."""
    if baseline_ct is None:
        return np.zeros((0, 3), np.int64)
    from scipy import ndimage

    from .validation import PADDING_BELOW_HU

    spacing = np.asarray(geometry.spacing[::-1], dtype=np.float64)
    reach = np.ceil(margin_mm / spacing).astype(np.int64) + 1
    box = tuple(slice(max(int(a) - int(r), 0), min(int(b) + int(r), n))
                for (a, b), r, n in zip(lesion["bounding_box_zyx"], reach, base_components.shape))
    padding = np.asarray(baseline_ct.array)[box] < PADDING_BELOW_HU
    if not padding.any():
        return np.zeros((0, 3), np.int64)
    inside = base_components[box] == lesion["id"]
    # beside it: a face neighbour (any neighbour on a turned grid), as the lesion report's touches_scan_edge reads it
    # (within the largest spacing took padding 5 mm away in-plane on 5 mm slices: a lesion near the circle was
    # 'not_assessed', NE for CR)
    from .inference.lesion_report import padding_neighbourhood

    beside = padding & ndimage.binary_dilation(inside, structure=padding_neighbourhood(geometry))
    if not beside.any():
        return np.zeros((0, 3), np.int64)
    distance = ndimage.distance_transform_edt(~inside, sampling=spacing)  # only for a lesion on the padding
    voxel = float(spacing.max()) + 1e-6
    points = np.argwhere(beside | (padding & (distance <= margin_mm + 1e-6) & (distance > margin_mm - voxel)))
    if len(points) > EDGE_PADDING_POINTS_MAX:
        points = points[::int(np.ceil(len(points) / EDGE_PADDING_POINTS_MAX))]
    return points + [b.start for b in box]


def _shows_beyond_baseline_edge(base_components: np.ndarray, lesion: Dict[str, Any], geometry: ImageGeometry,
                                followup: CTVolume, align: "Alignment", view: Optional[np.ndarray] = None,
                                baseline_ct: Optional[CTVolume] = None) -> bool:
    """Whether the follow-up scan's field of view covers where ``lesion`` (a baseline report's lesion cut by the
    baseline scan's edge) may go on beyond that edge: for each face of the baseline grid it touches, its voxels on
    that face moved outward by one voxel and by max(its long axis, ``EDGE_CONTINUATION_MIN_MM``), and, where it
    borders the scanner's padding of ``baseline_ct`` (a round field of view), that padding beside it and at that
    distance (:func:`_padding_beyond`), all lie inside the follow-up grid after alignment and outside the
    follow-up's own padding (``view``; the same nearest-voxel test as the field of view on the baseline grid;
    the field of view is convex, so the points between them lie inside too)."""
    box = tuple(slice(a, b) for a, b in lesion["bounding_box_zyx"])
    zyx = np.argwhere(base_components[box] == lesion["id"]) + [b.start for b in box]
    margin_mm = max(float(lesion["long_axis_mm"]), EDGE_CONTINUATION_MIN_MM)
    points = [_padding_beyond(base_components, lesion, geometry, baseline_ct, margin_mm).astype(np.float64)]
    for axis, size in enumerate(base_components.shape):
        steps = max(1, int(np.ceil(margin_mm / geometry.spacing[2 - axis] - 1e-9)))
        for face, outward in ((0, -1), (size - 1, 1)):
            on_face = zyx[zyx[:, axis] == face].astype(np.float64)
            for step in {1, steps}:
                moved = on_face.copy()
                moved[:, axis] += outward * step
                points.append(moved)
    zyx_out = np.concatenate(points) if points else np.zeros((0, 3))
    if not len(zyx_out):
        return True
    follow_lps = align.map_points(voxel_centres_lps(zyx_out, geometry))
    to_index = np.linalg.inv(followup.geometry.ijk_to_lps())
    ijk = follow_lps @ to_index[:3, :3].T + to_index[:3, 3]
    size_ijk = np.asarray(followup.shape_zyx[::-1], dtype=np.float64)
    if not np.all((ijk >= -0.5) & (ijk < size_ijk - 0.5)):
        return False
    if view is None:
        return True
    nearest = np.clip(np.floor(ijk + 0.5).astype(np.int64), 0, size_ijk.astype(np.int64) - 1)
    return bool(np.all(view[nearest[:, 2], nearest[:, 1], nearest[:, 0]] > 0))  # not in the scanner's padding


def _water_density_warnings(base_report: Dict[str, Any], follow_report: Dict[str, Any]) -> List[str]:
    """The lesion reports' water-density warnings (a simple cyst is possible), as ``segment`` and ``measure`` give
    them, prefixed with the scan they name lesions of: the baseline's says which lesions were passed over as RECIST
    targets or fill a target's place; the follow-up's only which lesions are of water density, since its own target
    choice is not the response's (followup sums the lesions that belong to the baseline's targets)."""
    from .inference.water_density import water_density_lesion_warnings

    baseline = water_density_lesion_warnings(base_report["lesions"], base_report["recist"])
    followup = water_density_lesion_warnings([dict(d, recist_target=False) for d in follow_report["lesions"]])
    return [f"baseline: {w}" for w in baseline] + [f"follow-up: {w}" for w in followup]


def _slice_limited_axes_warnings(base_report: Dict[str, Any], follow_report: Dict[str, Any]) -> List[str]:
    """The lesion reports' warnings of lesions whose axial axes are limited by the slices of a tilted grid, as
    ``segment`` and ``measure`` give them (:func:`~.inference.lesion_report.slice_limited_axes_warnings`), prefixed
    with the scan they name lesions of. The baseline's say they are no targets; the follow-up's do not (the targets
    are the baseline's, and a follow-up lesion of a target is measured as it is: the response's reason says when
    such a one may cut the sum short)."""
    from .inference.lesion_report import slice_limited_axes_warnings

    return [f"baseline: {w}" for w in slice_limited_axes_warnings(base_report["lesions"])] + \
        [f"follow-up: {w}" for w in slice_limited_axes_warnings(follow_report["lesions"], says_no_target=False)]


def _thickness_text(recist: Dict[str, Any]) -> str:
    """'7 mm slices (DICOM SliceThickness), measurable from 14 mm' of a lesion report's ``recist``; slices tilted
    from axial say what they cover along S, which the minimum doubles (:func:`~.metrics.recist.axial_slice_thickness_text`)."""
    source = recist.get("slice_thickness_source") or SLICE_THICKNESS_FROM_SPACING
    said = SLICE_THICKNESS_SOURCE_WORDS.get(source, source)
    return (f"{recist['slice_thickness_mm']:g} mm slices ({said}){axial_slice_thickness_text(recist)}, measurable "
            f"from {recist['measurable_minimum_mm']:g} mm")


def _slice_thickness_warnings(base_report: Dict[str, Any], follow_report: Dict[str, Any]) -> List[str]:
    """A warning when the baseline's and the follow-up's slice thicknesses (``recist.slice_thickness_mm``) differ:
    RECIST 1.1 asks the same technique at every time point, and where the measurable minimums differ (7 mm slices:
    14 mm; 2 mm slices: 10 mm) a lesion of 12 mm is measurable on one scan and not on the other. Names both
    thicknesses, their sources and minimums. Equal thicknesses, one scan's slices tilted from axial and the other's
    not (or tilted otherwise), differ across the axial planes the lesions are measured in
    (``recist.axial_slice_thickness_mm``) and are warned of too."""
    base, follow = base_report["recist"], follow_report["recist"]

    def across(recist: Dict[str, Any]) -> float:
        return float(recist.get("axial_slice_thickness_mm", recist["slice_thickness_mm"]))

    if equal_within_rounding(follow["slice_thickness_mm"], base["slice_thickness_mm"]) \
            and equal_within_rounding(across(follow), across(base)):
        return []
    if equal_within_rounding(follow["measurable_minimum_mm"], base["measurable_minimum_mm"]):
        effect = ("the measurable minimum is the same, but RECIST 1.1 asks the same imaging technique at every time "
                  "point (thicker slices blur small lesions' edges)")
    else:
        effect = ("RECIST 1.1 asks the same imaging technique at every time point: a lesion between the two minimums "
                  "is measurable on one scan and not on the other, and the baseline's targets were chosen by the "
                  "baseline's minimum")
    return [f"the baseline has {_thickness_text(base)}, the follow-up {_thickness_text(follow)}: {effect}; compare "
            f"scans reconstructed at the same slice thickness where they exist"]


def _mixed_lesion_warnings(entries: Sequence[Dict[str, Any]], links: LesionLinks, targets: Sequence[int]
                           ) -> List[str]:
    """One warning per follow-up lesion that shares voxels with a baseline target and a baseline non-target lesion:
    how it was counted (for the target, or for the non-target and not in the sum of diameters)."""
    row = {j: e["number"] for e in entries for j in e["followup_ids"]}
    out = []
    for j in sorted({j for _, j in links.overlap}):
        touched = sorted(i for i, k in links.overlap if k == j)
        with_target = [i for i in touched if i in targets]
        others = [i for i in touched if i not in targets]
        if not with_target or not others:
            continue
        text = (f"follow-up lesion {j} (row {row[j]} of the comparison) overlaps baseline target lesion(s) "
                f"{', '.join(map(str, with_target))} and non-target lesion(s) {', '.join(map(str, others))}: ")
        mine = [t for t in with_target if j in links.followup_of(t)]
        merged = [i for i in others if links.owner.get(j) == i or links.coalesced.get(i) == j]
        if not mine:
            text += (f"it is counted for non-target lesion {links.owner[j]}, the one it overlaps most, and not in "
                     f"the sum of diameters")
        elif merged:
            text += (f"it is measured once, whole, for target lesion(s) {', '.join(map(str, mine))} (RECIST 1.1: "
                     f"coalesced lesions are measured as one), so the sum of diameters includes the part of "
                     f"non-target lesion(s) {', '.join(map(str, merged))} that merged into it")
        else:
            text += (f"it is counted in the sum of diameters for target lesion(s) {', '.join(map(str, mine))}, "
                     f"not for the non-target(s), which it overlaps less")
        out.append(text)
    return out


def _equivocal_new_text(entries: Sequence[Dict[str, Any]], response: str, min_new_lesion_mm: float,
                        after_complete_response: bool = False) -> str:
    """What the response reason adds when new lesions under ``min_new_lesion_mm`` (mm; equivocal, not counted) lie
    beside a response other than PD: a CR read 'all lesions disappeared' beside a 4 mm follow-up lesion (the RECIST
    audit). RECIST 1.1: a new lesion a later scan confirms makes PD dated from the scan that first showed it.
    ``after_complete_response``: it also says why such a lesion is not PD where a baseline lesion back at that size
    is (a reappearance after a CR is PD; a lesion at a new site is judged by the new-lesion rule)."""
    from .inference.lesion_report import listed_lesions_text

    rows = [str(e["number"]) for e in entries if e["status"] == "new" and e.get("unequivocal") is False
            and "may_be_part_of_rows" not in e]  # (equivocal for another reason: _beside_unseen_text)
    if not rows or response == "PD":
        return ""
    return (f"; new lesion(s) in row(s) {listed_lesions_text(rows, 'unequivocal false in the rows')} are under "
            f"{min_new_lesion_mm:g} mm: equivocal, not counted (RECIST 1.1: if a later scan confirms one, PD dates "
            f"from this scan)" + (EQUIVOCAL_AFTER_CR_TEXT if after_complete_response else ""))


CR_UNCHECKED_TEXT = ("; a CR of the liver lesions: RECIST 1.1's CR also needs every lesion outside the liver gone and "
                     "every lymph node under 10 mm short axis, which the liver label maps do not show (the reader's)")
"""Added to the response reason of a CR: the liver label maps show the liver lesions only, and RECIST 1.1's CR (every
target and non-target lesion gone, pathological nodes under 10 mm short axis) is of the whole patient. The reason read
'all lesions disappeared' alone."""
PREVIOUS_CR_CRITERIA_TEXT = ("; after the previous change report's CR, an automatic time-point response taken as a "
                             "complete response (confirm it): any baseline lesion present again is PD")
"""What ``response_criteria`` says where ``--previous``'s CR made this a follow-up after a complete response: it said
'after the complete response given', as of a CR a reader gave (``--after-complete-response``), and only a warning
told that it was an automatic, unconfirmed one."""
EQUIVOCAL_AFTER_CR_TEXT = ("; after the complete response a baseline lesion seen again is PD at any size, but these lie "
                           "where no baseline lesion was: new lesions, PD only when unequivocal")
"""Added by :func:`_equivocal_new_text` after a complete response: why an equivocal new lesion leaves the CR standing
while a baseline lesion back at the same size is PD."""


def _sum_rule_shows_progression(base_sum_mm: float, follow_sum_mm: float, nadir_sum_mm: Optional[float]) -> bool:
    """Whether the targets' sum alone (``follow_sum_mm`` against the smaller of ``base_sum_mm`` and the nadir, mm)
    meets RECIST 1.1's PD: +20 % and +5 mm (from a nadir of 0 mm: +5 mm). A PD for a new lesion with a target not
    assessed said that the seen targets' sum 'already shows progression' when it had shrunk (35 -> 15 mm)."""
    reference = base_sum_mm if nadir_sum_mm is None else min(base_sum_mm, float(nadir_sum_mm))
    if reference <= 0:
        return at_least(follow_sum_mm, RECIST_PD_ABSOLUTE_MM)
    return meets_progression(reference, follow_sum_mm)


def _stored_slice_long_axis(lesion: Dict[str, Any]) -> float:
    """A lesion's long axis (mm), or, where thick tilted slices cap its axial axes (``axial_axes_limited_by_slices``),
    its long axis in the stored slices where that is longer: the capped axis is cut short by the slices (30 mm read
    16.1 mm on one 5 mm slice tilted 25 degrees, 29.8 mm in the stored slice)."""
    measured = float(lesion["long_axis_mm"])
    limit = lesion.get("axial_axes_limited_by_slices")
    stored = (limit or {}).get("long_axis_in_stored_slices_mm")
    return measured if stored is None else max(measured, float(stored))


def _stored_sum_text(what: str, stored_sum_mm: float, base_sum_mm: float, nadir_sum_mm: Optional[float],
                     stored_response: str, response: str) -> str:
    """The response reason's words on a sum of diameters taken with capped lesions' stored-slice long axes
    (:func:`_stored_slice_long_axis`): ``what`` would be ``stored_sum_mm`` (its change from the baseline, and from the
    nadir where progression is judged from it), and the category that gives (``stored_response``) beside the one
    the measured axes give (``response``), which stands: RECIST 1.1 measures in the axial plane."""
    text = (f"by their long axes in the stored slices (long_axis_in_stored_slices_mm, where longer) {what} would be "
            f"{stored_sum_mm:.1f} mm ({percent_change_text((stored_sum_mm - base_sum_mm) / base_sum_mm)} from the "
            f"baseline's {base_sum_mm:.1f} mm")
    if nadir_sum_mm is not None and 0 < nadir_sum_mm < base_sum_mm:
        text += f", {percent_change_text((stored_sum_mm - nadir_sum_mm) / nadir_sum_mm)} from the nadir"
    return text + (f"): {stored_response}, not {response}" if stored_response != response else f"): {response} too")


def _capped_nadir_text(previous: Dict[str, Any], base_sum_mm: float, follow_sum_mm: float, nadir_sum_mm: float,
                       entries: Sequence[Dict[str, Any]], follow_by_id: Dict[int, Dict[str, Any]],
                       followup_count: int, baseline_lesion_count: int, nadir_cr: Optional[bool]) -> str:
    """The PD reason's words when the nadir is the previous follow-up's sum (``previous``, its change report) and
    that sum counted target lesions whose axes thick tilted slices capped there (cut short: a nadir too small, from
    which this follow-up's sum read as growth) and, with the stored-slice long axes at both follow-ups
    (:func:`_stored_slice_long_axis`), the response would not be PD; '' otherwise (also for a previous report
    without the lesion reports). The PD, computed from the measured axes as RECIST 1.1 defines it, stands."""
    from .metrics.recist import recist_response

    sums = previous.get("sum_of_diameters") or {}
    before = sums.get("followup_mm")
    previous_lesions = {d.get("id"): d for d in (previous.get("followup") or {}).get("lesions") or []}
    if before is None or not previous_lesions:
        return ""
    rows, extra = [], 0.0
    for e in previous.get("lesions") or []:
        if not e.get("recist_target") or e.get("status") == "not_assessed":
            continue
        ids = [j for j in e.get("recist_followup_ids") or [] if (previous_lesions.get(j) or {}).get(
            "axial_axes_limited_by_slices")]
        if ids:
            rows.append(str(e.get("number")))
            extra += sum(_stored_slice_long_axis(previous_lesions[j]) - float(previous_lesions[j]["long_axis_mm"])
                         for j in ids)
    stored_before = float(before) + extra
    stored_nadir = min([stored_before] + ([float(sums["nadir_mm"])] if sums.get("nadir_mm") is not None else []))
    if not rows or at_most(stored_nadir, nadir_sum_mm):  # the previous follow-up's sum was not the nadir
        return ""
    stored_sum = float(sum(_stored_slice_long_axis(follow_by_id[j]) for e in entries if e["recist_target"]
                           for j in e["recist_followup_ids"]))
    stored_response = recist_response(base_sum_mm, stored_sum, False, followup_count, baseline_lesion_count,
                                      stored_nadir, nadir_cr)[0]
    if stored_response == "PD":
        return ""
    return (f"; the nadir ({nadir_sum_mm:.1f} mm, the previous follow-up's sum) counts target lesion(s) in its row(s) "
            f"{', '.join(rows)} whose axes its tilted slices capped (axial_axes_limited_by_slices): it may be short "
            f"of the lesions' sum, so the progression may be overstated; by the long axes in the stored slices "
            f"(long_axis_in_stored_slices_mm, where longer) the nadir would be {stored_nadir:.1f} mm and this "
            f"follow-up's sum {stored_sum:.1f} mm ({percent_change_text((stored_sum - stored_nadir) / stored_nadir)} "
            f"from it): {stored_response}, not PD")


def read_previous_change(path: Any, source: str = "--previous", advice: Optional[str] = None) -> Dict[str, Any]:
    """The change report (``followup``'s change.json) at ``path``, of the previous follow-up of the same baseline;
    InputError, saying what is wrong, for a file that is missing, not JSON or not a change report. ``source``: where
    the path was given, leading each message (the option ``--previous``; the Slicer panel gives its field's name);
    ``advice``: what to do instead, ending each message (None: the command line's words)."""
    from .fileutil import json_loads_noting_repeats

    source_path = Path(path)
    where = f"{source} '{source_path}'"
    give_written = advice or "give the change.json that followup wrote for the previous follow-up"
    if source_path.is_dir():  # was called missing
        raise InputError(f"{where} is a folder; {give_written}.")
    if not source_path.is_file():
        raise InputError(f"{where} does not exist; {give_written}.")
    try:  # arrays nested thousands deep raised RecursionError: an internal error (the file-safety audit)
        change = json_loads_noting_repeats(source_path.read_text(encoding="utf-8"))[0]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{where} is not a readable JSON file ({exc}); {give_written}.") from exc
    problem = change_report_problem(change)
    if problem:  # a string sum crashed after the registration ("internal error"), a negative one became a CR's nadir
        raise InputError(f"{where} is {problem}; {give_written}.")
    return change


def change_report_problem(change: Any) -> Optional[str]:
    """Why ``change`` (JSON read back) is no change report the next follow-up takes as the previous one's
    (:func:`is_change_report`, :func:`change_report_field_errors`), as words after "is"; None when it is one."""
    if not is_change_report(change):
        return "not a followup change report (no response and sum_of_diameters)"
    wrong = change_report_field_errors(change)
    return f"not a change report as followup writes it: {'; '.join(wrong)}" if wrong else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def change_report_field_errors(change: Dict[str, Any]) -> List[str]:
    """What is wrong with the fields a change report passes on as the previous follow-up's (:func:`previous_assessment`
    reads them), each as ``field: what it holds``: ``response`` one of RECIST's responses; ``sum_of_diameters``'s
    ``baseline_mm``, ``followup_mm`` and ``nadir_mm`` null or a finite sum of 0 mm or more; its
    ``target_lesion_ids`` null or a list of lesion numbers; ``baseline`` null or an object whose ``lesion_count`` is
    null or a count. [] when all are right."""
    from .metrics.recist import RESPONSES

    wrong = []  # type: List[str]
    if change.get("response") not in RESPONSES:
        wrong.append(f"response is {change.get('response')!r}, not one of {', '.join(RESPONSES)}")
    sums = change["sum_of_diameters"]
    for key in ("baseline_mm", "followup_mm", "nadir_mm"):
        value = sums.get(key)
        if value is not None and not (_is_number(value) and np.isfinite(value) and value >= 0):
            wrong.append(f"sum_of_diameters.{key} is {value!r}, not a sum of diameters in mm (0 or more) or null")
    ids = sums.get("target_lesion_ids")
    if ids is not None and not (isinstance(ids, list) and all(isinstance(i, int) and not isinstance(i, bool)
                                                               and i >= 1 for i in ids)):
        wrong.append(f"sum_of_diameters.target_lesion_ids is {ids!r}, not a list of lesion numbers or null")
    baseline = change.get("baseline")
    if baseline is not None and not isinstance(baseline, dict):
        wrong.append(f"baseline is {baseline!r}, not an object or null")
    elif baseline is not None:
        count = baseline.get("lesion_count")
        if count is not None and not (isinstance(count, int) and not isinstance(count, bool) and count >= 0):
            wrong.append(f"baseline.lesion_count is {count!r}, not a count of lesions or null")
    return wrong


def is_change_report(change: Any) -> bool:
    """Whether ``change`` (JSON read back) is a ``followup`` change report that :func:`read_previous_change` takes
    as the previous follow-up's: an object with a ``response`` and a ``sum_of_diameters`` object with its
    ``baseline_mm``. The Slicer panel checks the report it is asked to save with it, before its save dialog."""
    sums = change.get("sum_of_diameters") if isinstance(change, dict) else None
    return isinstance(sums, dict) and "response" in change and "baseline_mm" in sums


def previous_assessment(previous: Dict[str, Any], target_ids: Sequence[int], baseline_sum_mm: Optional[float],
                        baseline_lesion_count: int) -> Tuple[Optional[float], bool]:
    """``(nadir_sum_mm, after_complete_response)`` carried from ``previous``, the change report of the previous
    follow-up against the same baseline (targets ``target_ids``, sum ``baseline_sum_mm`` mm, ``baseline_lesion_count``
    lesions): the nadir is the smallest of its nadir and its follow-up sum (None where neither is known), and its
    response CR makes this one a follow-up after a complete response. InputError where ``previous`` was made against
    another baseline (other targets, sum or lesion count): its sums are not of these lesions."""
    sums = previous["sum_of_diameters"]
    base_report = previous.get("baseline") or {}
    theirs = (list(sums.get("target_lesion_ids") or []), sums.get("baseline_mm"), base_report.get("lesion_count"))
    ours = (list(target_ids), baseline_sum_mm, baseline_lesion_count)
    same_sum = (theirs[1] is None) == (ours[1] is None) and (
        ours[1] is None or equal_within_rounding(float(theirs[1]), float(ours[1])))
    if theirs[0] != ours[0] or not same_sum or (theirs[2] is not None and theirs[2] != ours[2]):
        raise InputError(f"The previous change report was made against another baseline: target lesions "
                         f"{theirs[0]}, sum of diameters {_mm_or_none(theirs[1])}, {theirs[2]} lesion(s) there; "
                         f"{ours[0]}, {_mm_or_none(ours[1])}, {ours[2]} here. Give the change.json of a follow-up "
                         f"compared with this baseline.")
    known = [float(v) for v in (sums.get("nadir_mm"), sums.get("followup_mm")) if v is not None]
    return (min(known) if known and target_ids else None), previous.get("response") == "CR"


def _mm_or_none(value: Optional[float]) -> str:
    return "none" if value is None else f"{float(value):.1f} mm"


def check_after_complete_response(after_complete_response: Any, nadir_sum_mm: Optional[float],
                                  option: str = "after_complete_response", nadir_option: str = "nadir_sum_mm"
                                  ) -> None:
    """InputError for an ``after_complete_response`` that is not a bool, or one given with a nadir above 0 mm: a
    complete response leaves no target, so the targets' sum at it, the nadir, is 0 mm."""
    if not isinstance(after_complete_response, (bool, np.bool_)):
        raise InputError(f"{option} must be True or False, got {after_complete_response!r}.")
    if after_complete_response and nadir_sum_mm is not None and not at_most(nadir_sum_mm, 0.0):
        raise InputError(f"{option} says every lesion had disappeared at the previous assessment, so the target "
                         f"lesions' sum of diameters was 0 mm there, but {nadir_option} gives {nadir_sum_mm:g} mm: "
                         f"give 0 or leave it out with a complete response, or leave out {option} if lesions "
                         f"remained.")


MAX_MIN_NEW_LESION_MM = 1000.0
"""The largest new-lesion threshold taken (mm): longer than any liver, so a larger one (1e308) only switched the
new-lesion rule off without a word."""


def check_min_new_lesion_mm(value: Any, name: str = "min_new_lesion_mm") -> float:
    """``value`` as a float when it is a finite number from 0 to :data:`MAX_MIN_NEW_LESION_MM` (mm), else InputError
    naming ``name`` (``nan < 0`` is False: a NaN threshold let no new lesion make PD)."""
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)) or value < 0 or value > MAX_MIN_NEW_LESION_MM:
        raise InputError(f"{name} must be a finite number from 0 to {MAX_MIN_NEW_LESION_MM:g} (mm; a new lesion "
                         f"longer than any liver never counts), got {value!r}.")
    return float(value)


def check_nadir_sum_mm(value: Optional[float], option: str = "nadir_sum_mm") -> None:
    """InputError for a nadir that is not a finite sum of diameters of 0 mm or more (None: none given)."""
    if value is None:
        return
    # numpy scalars too (a nadir read from an array as np.float32 or np.int64 was refused as no sum of diameters)
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, (bool, np.bool_)) \
            or not np.isfinite(value) or value < 0:
        raise InputError(f"{option} must be a sum of diameters in mm, 0 or more (the smallest sum of the baseline's "
                         f"target lesions at an earlier follow-up), got {value!r}.")


def nadir_origin_text(from_previous_report: bool, after_complete_response_given: bool) -> str:
    """Where the nadir a change report judges progression from came from, as its ``response_criteria`` and warnings
    say it: the previous change report (``followup --previous``: the smaller of its nadir and its follow-up sum, or
    0 mm after its CR), a complete response the caller gave (``--after-complete-response``: 0 mm), else the nadir
    given (``--nadir-sum-mm``, the Slicer panel's *Nadir sum of diameters*). It said 'the nadir given' for all three."""
    if from_previous_report:
        return "the nadir from the previous change report"
    if after_complete_response_given:
        return "the nadir of 0 mm after the complete response given"
    return "the nadir given"


def compare_followup(baseline: CTVolume, followup: CTVolume, baseline_ct: Optional[CTVolume] = None,
                     followup_ct: Optional[CTVolume] = None, alignment: str = "auto",
                     min_new_lesion_mm: float = DEFAULT_MIN_NEW_LESION_MM,
                     nadir_sum_mm: Optional[float] = None,
                     after_complete_response: bool = False,
                     previous_change: Optional[Dict[str, Any]] = None,
                     baseline_slice_thickness_mm: Optional[float] = None,
                     followup_slice_thickness_mm: Optional[float] = None) -> Dict[str, Any]:
    """Compare two scans' label maps: ``baseline`` and ``followup`` are 0/1/2 label-map :class:`CTVolume` s
    (``(z, y, x)`` arrays, each with its own geometry), ``baseline_ct`` / ``followup_ct`` their CTs in HU on the
    same grids (optional: with both, ``alignment="auto"`` registers the CTs; they also give the HU-based checks).

    The change report (see module doc): ``response``, ``response_reason``, ``sum_of_diameters`` (baseline,
    follow-up, change mm and %, and the nadir given), ``lesions`` (one entry per matched group, numbered 1.. by
    baseline lesion id, new lesions last), ``alignment``, and both scans' full lesion reports (``baseline``,
    ``followup``). ``nadir_sum_mm``: the smallest sum of diameters of the baseline's target lesions at an earlier
    follow-up (mm; e.g. the ``sum_of_diameters.followup_mm`` of that follow-up's change report): progression is
    judged from it where it is below the baseline's sum (:func:`~.metrics.recist.recist_response`); without it, from
    the baseline. A nadir of 0 mm with targets back under 5 mm is PD only where every baseline lesion is a target
    (that follow-up was then a complete response); with non-target lesions at baseline the sum rule decides and the
    reason says that it is PD if that follow-up was a CR. ``after_complete_response``: the previous assessment of
    this patient was a complete response (every lesion, targets and non-targets, gone; ``followup
    --after-complete-response``): the nadir is then 0 mm (a ``nadir_sum_mm`` above 0 is an InputError) and any
    baseline lesion present again is PD, a target under 5 mm and a non-target too. ``previous_change``: the change
    report of the previous follow-up against this baseline (``followup --previous``; not with ``nadir_sum_mm`` or
    ``after_complete_response``): its nadir and follow-up sum give the nadir and its CR the complete response
    (:func:`previous_assessment`), so a chain of follow-ups carries them. ``baseline_slice_thickness_mm`` /
    ``followup_slice_thickness_mm``: the reconstruction thickness (mm) of that scan's axial slices where it is known
    (``followup --baseline-slice-thickness-mm`` / ``--followup-slice-thickness-mm``; the Slicer panel's DICOM
    SliceThickness): a label map or CT from NIfTI records none, so each scan's RECIST measurable minimum (twice it
    above 5 mm) and the baseline's target choice came from the slice spacing. It wins over that scan's DICOM
    SliceThickness under the same rules (:func:`~.metrics.recist.recist_slice_thickness`; the lesion report's
    ``slice_thickness_source`` "given"); a value that cannot be used (slices not axial, or thinner than their spacing)
    is warned of; one not finite, not above 0 or not below 50 mm is an InputError before any work
    (:func:`~.metrics.recist.check_given_slice_thickness`). Also returns, under the key ``_arrays`` (not serialised),
    the component maps for the picture."""
    from .inference.lesion_report import lesion_components, lesion_report
    from .metrics.recist import NON_CR_NON_PD, recist_response

    from .io.labels import GEOMETRY_TOLERANCE, describe_grid_mismatch, require_label_values
    from .volume import sides_unknown

    check_min_new_lesion_mm(min_new_lesion_mm)
    check_nadir_sum_mm(nadir_sum_mm)
    check_after_complete_response(after_complete_response, nadir_sum_mm)
    base_given_mm = check_given_slice_thickness(baseline_slice_thickness_mm, "baseline_slice_thickness_mm")
    follow_given_mm = check_given_slice_thickness(followup_slice_thickness_mm, "followup_slice_thickness_mm")
    if previous_change is not None and (nadir_sum_mm is not None or after_complete_response):
        raise InputError("previous_change gives the nadir and whether the previous assessment was a complete "
                         "response; give it or nadir_sum_mm / after_complete_response, not both.")
    problem = None if previous_change is None else change_report_problem(previous_change)
    if problem:
        raise InputError(f"previous_change is {problem}; give the change report followup wrote for the previous "
                         f"follow-up.")
    for labels, what in ((baseline, "baseline"), (followup, "follow-up")):
        # a CT given as the label map (the arguments swapped) was named 'label map', not which of the two it was
        require_label_values(np.asarray(labels.array), labels.source or f"{what} given to compare_followup")
        if not np.asarray(labels.array).any():  # read as 'all lesions disappeared': CR, the best category
            # the message named the project's 'follow-up audit' to its users, where it should say what would happen
            raise InputError(f"The {what} label map holds no liver and no tumor (every voxel 0): a failed "
                             f"segmentation or the wrong file; compared, it would read as every lesion gone (a false "
                             f"complete response). Give the {what} segmentation of the liver and its lesions.")
    for ct, labels, what in ((baseline_ct, baseline, "baseline"), (followup_ct, followup, "follow-up")):
        if ct is not None and tuple(ct.shape_zyx) != tuple(labels.shape_zyx):
            raise InputError(f"The {what} CT {ct.shape_zyx} and label map {labels.shape_zyx} (z, y, x) differ in "
                             f"size; give the CT the label map was made on.")
        # same size on another grid (origin, spacing, direction): the CT registration ran in the CT's frame and
        # moved the labels, and the mean HU were read at the wrong places, without a word
        problems = [] if ct is None else describe_grid_mismatch(labels, ct, GEOMETRY_TOLERANCE)
        if problems:
            raise InputError(f"The {what} label map is not on its CT's grid: {'; '.join(problems)}; give the CT "
                             f"the label map was made on.")
    from .validation import not_hu_reason

    # a CT read with followup's allow_non_hu: water density (which orders the RECIST targets) is judged in HU only
    base_in_hu = baseline_ct is not None and not_hu_reason(baseline_ct) is None
    follow_in_hu = followup_ct is not None and not_hu_reason(followup_ct) is None
    fill_warnings = []  # type: List[str]
    baseline_ct = _without_resampling_fill(baseline_ct, base_in_hu, "baseline", fill_warnings)
    followup_ct = _without_resampling_fill(followup_ct, follow_in_hu, "follow-up", fill_warnings)
    base_report = lesion_report(baseline.array, baseline.geometry, baseline_ct.array if baseline_ct else None,
                                in_hu=base_in_hu, **_dicom_slice_thickness(baseline_ct, baseline),
                                given_slice_thickness_mm=base_given_mm)
    follow_report = lesion_report(followup.array, followup.geometry, followup_ct.array if followup_ct else None,
                                  in_hu=follow_in_hu, **_dicom_slice_thickness(followup_ct, followup),
                                  given_slice_thickness_mm=follow_given_mm)
    # a thickness given for slices that are not axial or thinner than their spacing: the spacing's minimum, said so
    thickness_unused = [w for w in (
        given_slice_thickness_warning(baseline.geometry, base_given_mm, BASELINE_SLICE_THICKNESS_OPTION),
        given_slice_thickness_warning(followup.geometry, follow_given_mm, FOLLOWUP_SLICE_THICKNESS_OPTION)) if w]
    base_components, _ = lesion_components(baseline.array, baseline.geometry)  # numbered as the reports are
    follow_components, _ = lesion_components(followup.array, followup.geometry)
    align = align_followup(baseline, followup, baseline_ct, followup_ct, method=alignment)
    follow_on_base = resample_to_baseline(follow_components, followup.geometry, baseline, align.transform)
    follow_centroids = {d["id"]: align.map_followup_to_baseline(d["centroid_lps_mm"]) for d in follow_report["lesions"]}
    overlap = overlap_volumes(base_components, follow_on_base,  # on both grids: the finer one sees what the
                              resample_to_followup(base_components, baseline.geometry, followup, align.transform),
                              follow_components, baseline.geometry.voxel_volume_ml, followup.geometry.voxel_volume_ml)
    links = link_lesions(base_components, follow_on_base, base_report["lesions"], follow_report["lesions"],
                         follow_centroids, overlap)
    groups = sorted(links.groups, key=lambda g: (not g[0], g[0][0] if g[0] else g[1][0]))
    base_by_id = {d["id"]: d for d in base_report["lesions"]}
    follow_by_id = {d["id"]: d for d in follow_report["lesions"]}
    targets = base_report["recist"]["target_lesion_ids"]
    # RECIST 1.1 sums the targets' diameters only: a follow-up lesion counts when it belongs to a target (its own
    # lesion or fragments, or the lesion it coalesced into, measured once), not when it is a non-target's lesion
    # that a target's grown lesion touches (that added the non-target to the sum: a false PD)
    target_followup = {j for t in targets for j in links.followup_of(t)}
    entries = [_group_entry(n, b, f, base_by_id, follow_by_id, targets, min_new_lesion_mm, follow_centroids,
                            target_followup) for n, (b, f) in enumerate(groups, start=1)]
    view = followup_view(followup, followup_ct)
    covered = resample_to_baseline(view, followup.geometry, baseline,
                                   align.transform) > 0  # the follow-up's field of view on the baseline grid
    uncovered = set(np.unique(base_components[~covered]).tolist())  # lesions with a voxel outside it (one pass)
    # the baseline scan's own edge cuts these: their baseline volume and axes are lower bounds (report_format.md),
    # so a change against them is not measured (a lesion cut below its centre was 'grown' by 229 %); they are not
    # assessed only when the follow-up does not show where they may go on beyond that edge (a lesion gone from a
    # follow-up that shows all of it was 'not_assessed': CR read PR, or NE without targets)
    cut = {d["id"]: d for d in base_report["lesions"] if d.get("touches_scan_edge")}
    unseen_beyond = {i for i, d in cut.items() if i not in uncovered and
                     not _shows_beyond_baseline_edge(base_components, d, baseline.geometry, followup, align, view,
                                                     baseline_ct)}
    for entry in entries:
        ids = entry["baseline_ids"]
        if not uncovered.intersection(ids) and not cut.keys() & set(ids):  # (unseen_beyond lies in cut)
            continue
        for key in ("volume_change_ml", "volume_change_percent", "long_axis_change_mm", "long_axis_change_percent"):
            entry[key] = None
        if uncovered.intersection(ids) or unseen_beyond.intersection(ids):
            # a baseline lesion the follow-up does not wholly show: gone or cut, unknown; what the follow-up shows
            # of it (0 or a cut part) is not a change
            entry["status"] = "not_assessed"
            entry["not_assessed_reason"] = OUTSIDE_FOLLOWUP_VIEW if uncovered.intersection(ids) else \
                BASELINE_EDGE_NOT_COVERED
            # its follow-up size is unknown, not 0: 'Follow-up long axis 0.0' in the Slicer change table read as a
            # lesion gone (the follow-up audit)
            for key in ("followup_volume_ml", "followup_long_axis_mm", "followup_short_axis_mm"):
                entry[key] = None
        else:
            entry["baseline_cut_by_scan_edge"] = True  # seen whole at follow-up; its baseline size is a lower bound
            if entry["status"] in ("grown", "shrunk", "stable"):  # a change against a lower bound is none of them
                entry["status"] = "present"
    # so are the axial axes of a baseline lesion on too few of its scan's thick tilted slices (never a target): cut
    # short by the slices, not by its own edge (30 mm read 16.1 mm), its long axis is a lower bound and a change
    # against it is not measured: a whole follow-up lesion read 'grown' (16.1 -> 32.3 mm) and the non-target growth
    # warning named it. Its volume, which the slices do not cut, keeps its change.
    for entry in entries:
        if entry["status"] == "not_assessed" or not any(
                base_by_id[i].get("axial_axes_limited_by_slices") for i in entry["baseline_ids"]):
            continue
        entry["long_axis_change_mm"] = entry["long_axis_change_percent"] = None
        if entry["status"] in ("grown", "shrunk", "stable"):
            entry["status"] = "present"
    beside_unseen = _new_beside_unseen(entries, base_components, follow_components, baseline.geometry,
                                       followup.geometry, align, base_by_id, follow_by_id)
    for entry in entries:
        if entry["number"] in beside_unseen:
            entry["unequivocal"] = False
            entry["may_be_part_of_rows"] = beside_unseen[entry["number"]]
    base_sum = base_report["recist"]["sum_of_diameters_mm"] if targets else None
    new_lesion = any(e["status"] == "new" and e["unequivocal"] for e in entries)
    followup_count = sum(len(e["followup_ids"]) for e in entries if not (e["status"] == "new" and not e["unequivocal"]))

    # a nadir of 0 mm where every baseline lesion is a target: every lesion had gone at that follow-up, a complete
    # response, after which a target back under 5 mm is PD; with non-target lesions at baseline it is not known
    # unless the caller says so (after_complete_response: then the nadir is 0 mm and a non-target back is PD too)
    previous_warnings = []  # type: List[str]
    complete_response_given = bool(after_complete_response)  # by the caller, not by the previous report's CR
    if previous_change is not None:
        nadir_sum_mm, after_complete_response = previous_assessment(previous_change, targets, base_report["recist"][
            "sum_of_diameters_mm"] if targets else None, base_report["lesion_count"])
        if after_complete_response:
            previous_warnings.append(
                "the previous change report's response was CR, taken as a complete response after which any baseline "
                "lesion seen again is PD; it was an automatic time-point response: confirm that CR (RECIST working "
                "group: lesions may have been present but indistinct, and then PR fits both assessments)")
    nadir_zero = nadir_sum_mm is not None and at_most(nadir_sum_mm, 0.0)
    nadir_cr = True if after_complete_response or (
        nadir_zero and targets and len(targets) == base_report["lesion_count"]) else None
    if after_complete_response and targets:
        nadir_sum_mm = 0.0
    nadir_text = nadir_origin_text(previous_change is not None, complete_response_given and bool(targets))
    if nadir_cr:  # which rows are lesions seen again after the CR (a new lesion is judged as new: not one of them)
        for e in entries:
            if e["baseline_ids"] and e["followup_ids"]:
                e["reappeared_after_complete_response"] = True

    def response_for(too_small_default: bool) -> Tuple[str, str, Optional[float]]:
        total = float(sum(_recist_followup_mm(e, too_small_default, follow_long_axes)
                          for e in entries if e["recist_target"])) if targets else None
        return recist_response(base_sum, total, new_lesion, followup_count, base_report["lesion_count"],
                               nadir_sum_mm, nadir_cr) + (total,)

    follow_long_axes = {j: float(d["long_axis_mm"]) for j, d in follow_by_id.items()}
    response, reason, follow_sum = response_for(False)
    small = [e["number"] for e in entries if e.get("recist_under_5_mm")]
    if small:
        default_response = response_for(True)[0]
        if default_response != response:
            reason += "; " + _under_5_mm_text(entries, follow_long_axes, default_response)
    from .inference.lesion_report import listed_lesions_text

    warnings = []  # type: List[str]
    unseen = [e for e in entries if e["status"] == "not_assessed"]
    unseen_targets = [e for e in unseen if e["recist_target"]]
    if unseen_targets:  # their follow-up size is unknown, so is the sum (the seen targets' part is a lower bound)
        if response != "PD":  # only progression shown by what was seen can be called (RECIST 1.1)
            response, reason = "NE", (f"{_unseen_text(unseen_targets, 'target lesion(s)')} (not assessed), so the "
                                      f"follow-up sum of diameters is unknown (the targets seen sum to "
                                      f"{follow_sum:.1f} mm, baseline {base_sum:.1f} mm)")
        elif _sum_rule_shows_progression(base_sum, follow_sum, nadir_sum_mm):
            # the reason quoted a sum the report then calls unknown: it is the seen targets' lower bound
            reason += (f"; {_unseen_text(unseen_targets, 'target lesion(s)')} (not assessed): the follow-up sum "
                       f"counts the targets seen only, a lower bound that already shows progression")
        else:  # PD for a new lesion or a lesion seen again after a CR: the seen targets' sum showed none
            reason += (f"; {_unseen_text(unseen_targets, 'target lesion(s)')} (not assessed): the follow-up sum "
                       f"of diameters is unknown (the targets seen sum to {follow_sum:.1f} mm, baseline "
                       f"{base_sum:.1f} mm), which does not change PD")
        follow_sum = None
    elif unseen and targets and response == "CR":  # Table 1: target CR, non-target not evaluated, no new -> PR
        response, reason = "PR", (f"all target lesions disappeared; {_unseen_text(unseen, 'non-target lesion(s)')} "
                                  f"(not evaluated), so not CR (RECIST 1.1 Table 1)")
    elif unseen and not targets and response in ("CR", NON_CR_NON_PD):
        # Table 2: non-targets are judged present or absent. One the follow-up shows (a lesion cut by the
        # baseline's edge, seen again) is present, whatever its size: evaluated, non-CR/non-PD; only one of which the
        # follow-up shows nothing may lie beyond its view, not evaluated -> NE (a dome lesion cut at the top of both
        # scans made NE, 'not evaluated' beside 'non-target lesions persist': the followup audit)
        absent = [e for e in unseen if not e["followup_ids"]]
        if absent:
            response, reason = "NE", f"{_unseen_text(absent, 'lesion(s)')} (not evaluated); {reason}"
        else:
            reason += (f"; {_unseen_text(unseen, 'lesion(s)')}, but present at follow-up: as non-target lesions "
                       f"they are evaluated as present (their change in size is not measured)")
    # a follow-up lesion the follow-up scan's edge cuts is a lower bound: growth beyond that edge is not measured
    cut_rows = [(e, [j for j in e["followup_ids"] if follow_by_id[j].get("touches_scan_edge")]) for e in entries
                if e["status"] != "not_assessed"]
    cut_rows = [(e, ids) for e, ids in cut_rows if ids]
    for e, _ in cut_rows:
        e["followup_cut_by_scan_edge"] = True
    if cut_rows:
        warnings.append("follow-up lesion(s) " + listed_lesions_text(
            [f"{', '.join(map(str, ids))} (row {e['number']}, {e['status']})" for e, ids in cut_rows],
            "followup_cut_by_scan_edge in the comparison's rows")
                        + " are cut by the follow-up scan's edge: their follow-up size is a lower bound and growth "
                          "beyond that edge cannot be measured (a lesion that grew there may read stable or shrunk)")
    cut_targets = [str(e["number"]) for e, ids in cut_rows if set(ids) & set(e["recist_followup_ids"])]
    if cut_targets and response in ("PR", "SD"):  # more size could only raise the category (PD is already PD)
        reason += (f"; target lesion(s) {', '.join(cut_targets)} are cut by the follow-up scan's edge: the follow-up "
                   f"sum of diameters is a lower bound, so the response may be understated")
    # the rows say which lesions thick tilted slices cap (as they say which a scan's edge cuts): the lesion reports
    # alone named them by lesion id, which a reader of the rows had to look up in both
    for e in entries:
        for side, ids, by_id in (("baseline", e["baseline_ids"], base_by_id),
                                 ("followup", e["followup_ids"], follow_by_id)):
            if any(by_id[i].get("axial_axes_limited_by_slices") for i in ids):
                e[f"{side}_axial_axes_limited_by_slices"] = True
    # a target's follow-up lesion on too few slices of a tilted grid: its axial axes may be cut short by the slices
    # (30 mm measured 16.1 mm on one 5 mm slice tilted 25 degrees), which read as shrinkage: a false PR
    capped = [str(e["number"]) for e in entries if e["recist_target"] and e["status"] != "not_assessed" and any(
        follow_by_id[j].get("axial_axes_limited_by_slices") for j in e["recist_followup_ids"])]
    if capped and response in ("PR", "SD") and follow_sum is not None:
        # the sum with the capped lesions' long axes in the stored slices: the reason said 'may be understated' and
        # no more, so a PR or SD that those axes make SD or PD read as sure as any other
        stored_sum = float(sum(_stored_slice_long_axis(follow_by_id[j]) for e in entries if e["recist_target"]
                               for j in e["recist_followup_ids"]))
        stored_response = recist_response(base_sum, stored_sum, new_lesion, followup_count,
                                          base_report["lesion_count"], nadir_sum_mm, nadir_cr)[0]
        reason += (f"; target lesion(s) {', '.join(capped)} lie on too few of the follow-up's tilted slices "
                   f"(axial_axes_limited_by_slices): their axes may be cut short by the slices, so the follow-up sum "
                   f"of diameters may be short of the lesions' and the response may be understated; "
                   + _stored_sum_text("the follow-up sum", stored_sum, base_sum, nadir_sum_mm, stored_response,
                                      response))
    elif response == "PD" and previous_change is not None and follow_sum is not None and \
            _sum_rule_shows_progression(base_sum, follow_sum, nadir_sum_mm) and not new_lesion:
        reason += _capped_nadir_text(previous_change, base_sum, follow_sum, nadir_sum_mm, entries, follow_by_id,
                                     followup_count, base_report["lesion_count"], nadir_cr)
    if nadir_sum_mm is not None and base_sum is not None and nadir_sum_mm > base_sum:
        warnings.append(f"{nadir_text} ({nadir_sum_mm:.1f} mm) is above the baseline's sum of diameters "
                        f"({base_sum:.1f} mm), so the baseline is the smallest sum on study and progression is judged "
                        f"from it; check that the nadir is of these target lesions")
    elif nadir_sum_mm is not None and base_sum is None:
        warnings.append(f"{nadir_text} ({nadir_sum_mm:.1f} mm) is not used: the baseline has no measurable target "
                        f"lesion, so there is no sum of diameters to follow")
    warnings.extend(thickness_unused)
    warnings.extend(_slice_thickness_warnings(base_report, follow_report))
    warnings.extend(_water_density_warnings(base_report, follow_report))
    warnings.extend(_slice_limited_axes_warnings(base_report, follow_report))
    warnings.extend(_other_patient_warning(baseline_ct, followup_ct))
    warnings.extend(_mixed_lesion_warnings(entries, links, targets))
    moved = [(i, j) for j, i in sorted(links.owner.items()) if (i, j) not in links.overlap]
    if moved:  # linked by the centroid rule alone: a reader should see that no voxel is shared
        def apart_mm(i: int, j: int) -> float:
            return float(np.linalg.norm(np.asarray(base_by_id[i]["centroid_lps_mm"]) - follow_centroids[j]))

        row_of = {i: e for e in entries for i in e["baseline_ids"]}
        for i, j in moved:  # the rows say it too: the warning names only the first pairs
            row_of[i]["moved_without_shared_voxel_mm"] = apart_mm(i, j)
        warnings.append("baseline and follow-up lesion(s) " + listed_lesions_text(
            [f"{i} and {j} ({apart_mm(i, j):.1f} mm apart)" for i, j in moved],
            "moved_without_shared_voxel_mm in the comparison's rows")
            + " share no voxel after alignment and were taken for one lesion that "
            "moved; check them: a new lesion beside one that disappeared would make PD")
    grown = _non_target_growth(entries)
    if grown:
        warnings.append("non-target lesion(s) " + listed_lesions_text(
            [f"{e['number']} ({e['baseline_long_axis_mm']:.1f} -> {e['followup_long_axis_mm']:.1f} mm)" for e in grown],
            "the comparison's rows")
            + " grew by 20 % and 5 mm or more: RECIST 1.1 calls PD for unequivocal progression of non-target "
              "lesions, a reader's judgement this program does not make; the response above does not include it")
    reason += _equivocal_new_text(entries, response, min_new_lesion_mm, bool(nadir_cr))
    if response != "PD":
        reason += _beside_unseen_text(beside_unseen)
    if response == "CR":  # 'all lesions disappeared' spoke of the liver label maps as if of the whole patient
        reason += CR_UNCHECKED_TEXT
    counts = {s: sum(1 for e in entries if e["status"] == s) for s in STATUSES}
    change = None if base_sum is None or follow_sum is None else follow_sum - base_sum
    return {
        "response": response, "response_reason": reason,
        "response_criteria": "RECIST 1.1 on the liver lesions of the label maps; " + (
            "the baseline is the reference (no nadir given)" if nadir_sum_mm is None else
            "partial response from the baseline, progression from the smaller of the baseline's sum and "
            + nadir_text) + ((PREVIOUS_CR_CRITERIA_TEXT if previous_change is not None else
                              "; after the complete response given (the previous assessment): any baseline lesion "
                              "present again is PD") if after_complete_response else "") + "; " + TIME_POINT_NOTE + "; " + RECIST_NOTE + "; not a medical device",
        "sum_of_diameters": {"target_lesion_ids": targets, "baseline_mm": base_sum, "followup_mm": follow_sum,
                             "nadir_mm": None if nadir_sum_mm is None else float(nadir_sum_mm),
                             "change_mm": change,
                             "change_percent": None if change is None or not base_sum else 100.0 * change / base_sum},
        "status_counts": counts,
        "min_new_lesion_mm": float(min_new_lesion_mm),
        # the CR the response took as the previous assessment's: given, or a nadir of 0 mm with only targets
        "after_complete_response": bool(nadir_cr),
        "previous": None if previous_change is None else {
            "response": previous_change.get("response"),
            "followup_mm": previous_change["sum_of_diameters"].get("followup_mm"),
            "nadir_mm": previous_change["sum_of_diameters"].get("nadir_mm")},
        "library_version": str(__version__),  # which code judged it: the rules and rows change between versions
        # what reading the label maps said first (e.g. a .seg.nrrd segment not named as liver or tumor, left out)
        "warnings": [f"{which}: {w}" for which, v in (("baseline", baseline), ("follow-up", followup))
                     for w in v.meta.get("warnings", [])] + fill_warnings + list(align.warnings) + previous_warnings
        + warnings,
        "lesions": entries,
        "alignment": align.to_dict(),
        "baseline": base_report,
        "followup": follow_report,
        "_arrays": {"baseline_components": base_components, "followup_on_baseline": follow_on_base,
                    "baseline_labels": baseline.array,
                    "followup_labels_on_baseline": resample_to_baseline(followup.array, followup.geometry, baseline,
                                                                        align.transform),
                    "baseline_geometry": baseline.geometry,
                    # a NIfTI without sform/qform, a NRRD without space: its sides are a guess, not marked R/L/A
                    # (as segment's preview)
                    "orientation_known": not any(sides_unknown(v) for v in (baseline, followup))},
    }


PICTURE_MAX_NUMBERS = 100
"""At most this many rows of the change table are numbered per panel of :func:`save_change_picture` (those whose
outline encloses the most pixels; ties: the lower number), and the panel's title says so: each number is a text
of its own for matplotlib to lay out twice (about 3 ms), so 7,225 one-voxel lesions spent about 50 s on numbers
that covered each other; every lesion is still outlined."""
STATUS_COLORS = {"new": "#ff3b30", "disappeared": "#34c759", "grown": "#ff9500", "shrunk": "#30b0ff",
                 "stable": "#ffd60a", "present": "#c7a17a", "merged": "#bf5af2", "split": "#ff2d95",
                 "not_assessed": "#8e8e93"}


def _picture_crop(panels, margin: int = 8) -> Tuple[slice, slice]:
    """Row and column slices around the liver/lesions of both panels (whole image when there is none)."""
    union = np.zeros(panels[0][1].shape[1:], dtype=bool)
    for _, labels, _, _ in panels:
        union |= (labels >= 1).any(axis=0)
    if not union.any():
        return slice(None), slice(None)
    rows, cols = np.nonzero(union)
    return (slice(max(0, rows.min() - margin), rows.max() + margin + 1),
            slice(max(0, cols.min() - margin), cols.max() + margin + 1))


def _lesion_projection(components: np.ndarray, boxes: Sequence[Any], ids: Sequence[int]
                       ) -> Optional[Tuple[np.ndarray, Tuple[int, int]]]:
    """The axial projection of lesions ``ids`` of the ``(z, y, x)`` lesion-id array ``components``, read within
    their bounding boxes (``boxes``: ``scipy.ndimage.find_objects(components)``, lesion ``i`` at ``i - 1``):
    ``(mask (rows, columns) of the box's y and x, (row, column) of its first pixel)``; None when none of ``ids`` is
    in ``components``. Costs the lesions' boxes, not the volume: a mask of the whole volume per lesion took minutes
    and gigabytes for thousands of lesions."""
    found = [boxes[i - 1] for i in ids if 0 < i <= len(boxes) and boxes[i - 1] is not None]
    if not found:
        return None
    box = tuple(slice(min(b[axis].start for b in found), max(b[axis].stop for b in found)) for axis in range(3))
    part = components[box]
    mask = (part == ids[0]) if len(ids) == 1 else np.isin(part, ids)
    return mask.any(axis=0), (box[1].start, box[2].start)


@picture_text_as_given()
def save_change_picture(path: Any, change: Dict[str, Any], overwrite: bool = False, title: str = "") -> Path:
    """PNG: baseline (left) and follow-up aligned to the baseline (right), axial maximum projections of the
    liver (grey) and the lesions (outlined in their status colour, numbered as in ``change["lesions"]``: at most
    :data:`PICTURE_MAX_NUMBERS` per panel, the largest), cropped to the liver; disappeared lesions are dashed on the
    follow-up side where they were. Each lesion is read within its bounding box and all outlines of a panel are one
    matplotlib collection (:func:`~.metrics.report.draw_outlines`): the cost grows with the lesions' boxes, not with
    lesions x volume.
    Radiological convention (image left = patient right, top = anterior). ``change``: from
    :func:`compare_followup` (needs its ``_arrays``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from scipy import ndimage

    from .metrics.report import draw_outlines
    from .orientation import plan_reorientation

    arrays = change["_arrays"]
    geometry = arrays["baseline_geometry"]
    reo = plan_reorientation(geometry, arrays["baseline_labels"].shape)
    sz, sy, sx = reo.canonical_geometry.spacing[::-1]
    base_comp = reo.to_canonical(arrays["baseline_components"])
    follow_comp = reo.to_canonical(arrays["followup_on_baseline"])
    alignment = change.get("alignment") or {}
    # '(aligned to baseline)' was written over a follow-up that --alignment none had not moved (the preview audit)
    follow_name = "Follow-up (not aligned: alignment none)" if alignment.get("method") == "none" else \
        "Follow-up (aligned to baseline)"
    panels = (("Baseline", reo.to_canonical(arrays["baseline_labels"]), base_comp, "baseline_ids"),
              (follow_name, reo.to_canonical(arrays["followup_labels_on_baseline"]), follow_comp, "followup_ids"))
    rows, cols = _picture_crop(panels)
    panels = tuple((name, labels[:, rows, cols], components[:, rows, cols], key)
                   for name, labels, components, key in panels)
    fig = Figure(figsize=(11, 6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    boxes = [ndimage.find_objects(components) for _, _, components, _ in panels]  # per lesion id - 1
    for ax, (name, labels, components, key) in zip(axes, panels):
        liver = (labels >= 1).any(axis=0)
        ax.imshow(np.where(liver, 0.45, 0.0), cmap="gray", vmin=0, vmax=1, aspect=sy / sx, interpolation="nearest")
        outlines = []  # one collection per panel: an artist per lesion made thousands of lesions take minutes
        numbers = []  # (pixels, number, x, y, colour) per outlined row of the change table
        not_drawn = []  # rows with lesions of this scan that its panel (the baseline grid) does not hold
        for entry in change["lesions"]:
            ids, style, source = entry[key], "solid", (components, boxes[0 if key == "baseline_ids" else 1])
            if not ids and key == "followup_ids" and entry["status"] == "disappeared":
                ids, style, source = entry["baseline_ids"], "dashed", (panels[0][2], boxes[0])  # where it was
            projection = _lesion_projection(*source, ids)
            if projection is None:
                if ids:  # beyond the baseline's field of view, or between its thick slices: said, not hidden
                    not_drawn.append(entry["number"])
                continue
            mask, (row0, col0) = projection
            color = STATUS_COLORS[entry["status"]]
            outlines.append((mask, (row0, col0), color, style))
            rows, cols = np.nonzero(mask)
            numbers.append((rows.size, entry["number"], (cols + col0).mean(), rows.min() + row0 - 1.5, color))
        draw_outlines(ax, outlines, image_shape=liver.shape, linewidths=1.5)
        shown = {n for _, n, _, _, _ in sorted(numbers, key=lambda t: (-t[0], t[1]))[:PICTURE_MAX_NUMBERS]}
        for _, number, x, y, color in numbers:  # in the table's order, as ever: the same picture up to the cap
            if number in shown:
                ax.text(x, y, str(number), color=color, fontsize=12, fontweight="bold", ha="center", va="bottom")
        count = sum(len(e[key]) for e in change["lesions"])  # lesions, not groups (a merge is 2 baseline lesions)
        capped = f"\nnumbered: the {len(shown)} largest of {len(numbers)} outlines" if len(shown) < len(numbers) else ""
        if not_drawn:  # the new lesion that made PD lay outside the baseline's grid and was nowhere (the audit)
            capped += (f"\nnot drawn (outside the baseline's grid or between its slices): row"
                       f"{'' if len(not_drawn) == 1 else 's'} {', '.join(str(n) for n in not_drawn[:10])}"
                       f"{' ...' if len(not_drawn) > 10 else ''}")
        ax.set_title(f"{name}\n(axial projection; {count} lesion{'' if count == 1 else 's'}){capped}")
        ax.set_xticks([])
        ax.set_yticks([])
        style = dict(transform=ax.transAxes, color="white", fontsize=10, fontweight="bold")
        if arrays.get("orientation_known", True):
            ax.text(0.01, 0.5, "R", ha="left", va="center", **style)
            ax.text(0.99, 0.5, "L", ha="right", va="center", **style)
            ax.text(0.5, 0.99, "A", ha="center", va="top", **style)
        ax.set_facecolor("black")
    present = [s for s in STATUSES if change["status_counts"].get(s)]
    equivocal = sum(1 for e in change["lesions"] if e["status"] == "new" and e.get("unequivocal") is False)
    names = {"new": f"new ({equivocal} equivocal, not counted)"} if equivocal else {}
    fig.legend(handles=[Patch(color=STATUS_COLORS[s], label=names.get(s, s)) for s in present], loc="lower center",
               ncol=max(1, len(present)), frameon=False)
    sod_text = sum_of_diameters_title_text(change["sum_of_diameters"])
    dice = alignment.get("liver_dice_after_alignment")
    angle = alignment.get("rotation_angle_deg")  # reports from before it was recorded have none
    doubts = ([f"the livers overlap little after alignment (liver Dice {dice:.3f}): check the alignment"]
              if dice is not None and dice < LOW_LIVER_DICE else []) + \
        ([f"the alignment turned the follow-up by {angle:.1f} degrees: check that neither scan is stored mirrored"]
         if angle is not None and angle > LARGE_ROTATION_DEG else []) + \
        ([] if arrays.get("orientation_known", True) else
         ["ORIENTATION UNKNOWN (a NIfTI without sform/qform, or a NRRD without space): left/right and front/back "
          "may be swapped"])
    fig.suptitle(f"{title + ': ' if title else ''}RECIST 1.1 response {change['response']}{sod_text}\n"
                 + picture_reason_text(change.get("response_reason") or "") + f"({RECIST_NOTE})"
                 + "".join(f"\n{d}" for d in doubts), fontsize=13)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    path = Path(path)
    with atomic_output(path, overwrite) as tmp:
        fig.savefig(str(tmp), format="png", dpi=80)
    return path


def response_line(response: str, reason: str) -> str:
    """The first line of :func:`change_summary_lines`: the RECIST 1.1 response and its reason."""
    return f"RECIST 1.1 response: {response} ({reason}); {RECIST_NOTE}"


PICTURE_REASON_WIDTH = 110
PICTURE_REASON_LINES = 3
"""The change picture's title gives the response's reason in at most this many lines of this many characters."""


def picture_reason_text(reason: str) -> str:
    """The change picture's lines of the response's ``reason`` (each ending in a line break; '' for none), cut after
    :data:`PICTURE_REASON_LINES` lines with a pointer to the change report. The title gave the category and the sum
    of diameters only: 'PD; 43.4 mm -> 47.6 mm (+9.6 %)' beside rows all 'stable' (PD from the nadir), 'PD; 43.4 mm
    -> 0.0 mm (-100.0 %)' after a complete response, where the picture is often shown alone (the follow-up
    audit)."""
    import textwrap

    if not reason:
        return ""
    lines = textwrap.wrap(reason, PICTURE_REASON_WIDTH)
    if len(lines) > PICTURE_REASON_LINES:
        lines = lines[:PICTURE_REASON_LINES]
        more = " ... (the whole reason: the change report)"
        lines[-1] = lines[-1][:PICTURE_REASON_WIDTH - len(more)].rstrip() + more
    return "".join(f"{line}\n" for line in lines)


def sum_of_diameters_title_text(sod: Dict[str, Any]) -> str:
    """The change picture's title part on the sum of diameters (a change report's ``sum_of_diameters``, mm):
    ``; sum of diameters 20.0 mm -> 25.0 mm (+24.9 %)``, to as many places as keep the change on its side of the
    rules (:func:`~.metrics.recist.change_places`: 20.03 -> 25.01 mm read '20.0 mm -> 25.0 mm', +5 mm and +25 %,
    beside SD, without the percent); '' without target lesions."""
    if sod.get("baseline_mm") is None:
        return ""
    if sod.get("followup_mm") is None:
        return f"; sum of diameters {sod['baseline_mm']:.1f} mm -> unknown"
    places = change_places(sod["baseline_mm"], sod["followup_mm"])
    percent = sod.get("change_percent")
    change = "" if percent is None else \
        f" ({percent_change_text(float(percent) / 100.0) if round(float(percent), 1) else '0.0 %'})"
    return f"; sum of diameters {sod['baseline_mm']:.{places}f} mm -> {sod['followup_mm']:.{places}f} mm{change}"


def sum_of_diameters_line(sum_of_diameters: Dict[str, Any]) -> Optional[str]:
    """The sum-of-diameters line of :func:`change_summary_lines` from a change report's ``sum_of_diameters``
    (mm; ``target_lesion_ids`` may be left out), or None without target lesions."""
    sod = sum_of_diameters
    if sod.get("baseline_mm") is None:
        return None
    # both sums to as many places as keep the change on its side of the rules (a +4.98 mm rise read '+5.0 mm' beside
    # SD: metrics.recist.change_places)
    places = 1 if sod.get("followup_mm") is None else change_places(sod["baseline_mm"], sod["followup_mm"])
    if sod.get("followup_mm") is None:
        follow = "unknown (a target lies outside the follow-up scan)"
    elif sod.get("change_percent") is None:  # no percent of a zero baseline sum
        follow = f"{sod['followup_mm']:.{places}f} mm"
    else:
        change = round(float(sod["change_percent"]), 1) + 0.0  # -0.02 % printed '-0.0 %': a change none can see
        # as the response's reason words it (0.01 % next to a threshold not met): -29.98 % read '-30.0 %' here
        # beside SD, under a reason that said '-29.98 %'
        percent = percent_change_text(float(sod["change_percent"]) / 100.0) if change else "0.0 %"
        follow = f"{sod['followup_mm']:.{places}f} mm ({percent})"
    targets = "target lesions" if sod.get("target_lesion_ids") is None else f"target lesions {sod['target_lesion_ids']}"
    return f"{targets}: sum of diameters {sod['baseline_mm']:.{places}f} -> {follow}"


def measurable_minimum_lines(change: Dict[str, Any]) -> List[str]:
    """One line per time point whose RECIST measurable minimum is above 10 mm (slices thicker than 5 mm), naming
    the thickness and where it came from: a 12 mm lesion that is no target on 7 mm slices was printed as 'no
    measurable target lesion at baseline' with its reason in change.json alone. Nothing for reports that lack the
    keys (older versions)."""
    lines = []
    for key, name in (("baseline", "baseline"), ("followup", "follow-up")):
        recist = (change.get(key) or {}).get("recist") or {}
        minimum, thickness = recist.get("measurable_minimum_mm"), recist.get("slice_thickness_mm")
        if minimum is None or thickness is None or at_most(float(minimum), RECIST_MIN_LONG_AXIS_MM):
            continue
        lines.append(f"{name}: {_thickness_text(recist)} (RECIST 1.1: twice the slice thickness above 5 mm)")
    return lines


def change_summary_lines(change: Dict[str, Any]) -> List[str]:
    """Human-readable lines: response, sum of diameters, alignment and one line per lesion group, for the first
    :data:`~.inference.lesion_report.LISTED_LESIONS_MAX` groups, then how many more of each status the change report
    holds (hundreds of lesions printed hundreds of lines)."""
    from .inference.lesion_report import LISTED_LESIONS_MAX

    lines = [response_line(change["response"], change["response_reason"])]
    lines += [f"warning: {text}" for text in change.get("warnings", [])]
    sums = sum_of_diameters_line(change["sum_of_diameters"])
    if sums is not None:
        lines.append(sums)
    lines += measurable_minimum_lines(change)
    align = change["alignment"]
    shift = ", ".join(f"{v:.1f}" for v in align["translation_lps_mm"])
    dice = align["liver_dice_after_alignment"]
    angle = align.get("rotation_angle_deg")  # reports from before it was recorded have none
    lines.append(f"alignment: {align['method']}, translation LPS ({shift}) mm"
                 + (f", rotation {angle:.1f} deg" if angle is not None else "")
                 + (f", liver Dice after alignment {dice:.3f}" if dice is not None else ""))
    for e in change["lesions"][:LISTED_LESIONS_MAX]:
        ids = f"baseline {e['baseline_ids'] or '-'} -> follow-up {e['followup_ids'] or '-'}"
        if e["status"] == "not_assessed":
            lines.append(f"  {e['number']}: {e['status']:<11} {ids}; long axis {e['baseline_long_axis_mm']:.1f} mm, "
                         f"volume {_ml_text(e['baseline_volume_ml'])} mL; not wholly in both scans ("
                         f"{NOT_ASSESSED_REASONS.get(e.get('not_assessed_reason'), ('', 'cut by a scan edge'))[1]}): "
                         f"not measured")
            continue
        cut = "; cut by the baseline scan's edge (a lower bound): change not measured" \
            if e.get("baseline_cut_by_scan_edge") else ""
        if e.get("followup_cut_by_scan_edge"):
            cut += "; cut by the follow-up scan's edge: follow-up size a lower bound"
        for side, name in (("baseline", "baseline"), ("followup", "follow-up")):  # as the edge's: per row
            if e.get(f"{side}_axial_axes_limited_by_slices"):
                cut += f"; axes limited by the {name}'s tilted slices: {name} size may be cut short"
                if side == "baseline":  # a lower bound, as the edge's: its long-axis change is None
                    cut += ", long-axis change not measured"
        if e["status"] == "new" and e.get("unequivocal") is False:  # printed beside 'CR' as if it counted
            why = (f"may be the part inside the follow-up scan of row {', '.join(map(str, e['may_be_part_of_rows']))}"
                   if e.get("may_be_part_of_rows") else
                   f"long axis under {change.get('min_new_lesion_mm', DEFAULT_MIN_NEW_LESION_MM):g} mm")
            cut += f"; equivocal ({why}): not counted as a new lesion"
            if change.get("after_complete_response"):  # beside a baseline lesion back at that size, which is PD
                cut += " (a new site, not a lesion seen again after the complete response: PD once confirmed)"
        if e.get("reappeared_after_complete_response"):
            cut += "; seen again after the complete response: PD"
        # a merged or split group's numbers are sums over its lesions (RECIST sums the fragments' diameters)
        several = len(e["baseline_ids"]) > 1 or len(e["followup_ids"]) > 1
        lines.append(f"  {e['number']}: {e['status']:<11} {ids}; {'long axes summed' if several else 'long axis'} "
                     f"{long_axes_change_text(e, change.get('min_new_lesion_mm', DEFAULT_MIN_NEW_LESION_MM))}, "
                     f"volume{'s summed' if several else ''} {_ml_text(e['baseline_volume_ml'])} -> "
                     f"{_ml_text(e['followup_volume_ml'])} mL{cut}")
    more = change["lesions"][LISTED_LESIONS_MAX:]
    if more:
        lines.append(f"  ... {len(more)} more lesion group(s) in the change report ({_status_counts_text(more)})")
    return lines


def long_axes_change_text(entry: Dict[str, Any], min_new_lesion_mm: float) -> str:
    """A change row's ``20.0 -> 24.0 mm`` (baseline and follow-up long axes, mm), to as many places as keep the row's
    change on its side of the status rules (+20 % grown, -30 % shrunk; :func:`~.metrics.recist.change_places`) and
    a new lesion's long axis on its side of ``min_new_lesion_mm`` (a 4.98 mm new lesion read '5.0 mm' beside
    'equivocal (long axis under 5 mm)'; a +19.8 % change '20.0 -> 24.0 mm' beside 'stable')."""
    before, after = float(entry["baseline_long_axis_mm"]), float(entry["followup_long_axis_mm"])
    before_places, after_places = long_axes_places(entry, min_new_lesion_mm)
    return f"{before:.{before_places}f} -> {after:.{after_places}f} mm"


def long_axes_places(entry: Dict[str, Any], min_new_lesion_mm: float, decimals: int = 1) -> Tuple[int, int]:
    """Decimal places of a change row's baseline and follow-up long axes (``decimals``, or more where fewer would
    round onto a rule the row misses): a new lesion's follow-up axis kept short of ``min_new_lesion_mm``
    (:func:`~.metrics.recist.places_short_of`); any other row's pair on its side of the status rules (+20 % grown,
    -30 % shrunk; :func:`~.metrics.recist.change_places`). The printed rows and the Slicer change table read them
    both."""
    before, after = entry.get("baseline_long_axis_mm"), entry.get("followup_long_axis_mm")
    if entry.get("status") == "new":
        return decimals, (decimals if after is None else places_short_of(float(after), min_new_lesion_mm, decimals))
    if before is None or after is None:
        return decimals, decimals
    places = change_places(float(before), float(after), decimals, relative_rules=(GROWN_CHANGE, SHRUNK_CHANGE),
                           absolute_rise=None)
    return places, places


def _status_counts_text(groups: List[Dict[str, Any]]) -> str:
    """``230 stable, 3 new, 7 disappeared``: how many of the lesion ``groups`` have each status (in the order of
    :data:`STATUSES`), those with none left out."""
    counts = {status: sum(1 for group in groups if group["status"] == status) for status in STATUSES}
    return ", ".join(f"{count} {status}" for status, count in counts.items() if count)


def _ml_text(value: float) -> str:
    """A volume (mL) to 2 decimals, or as many as show a lesion's nonzero volume (a one-voxel new lesion, which made
    the response PD, read '0.00 mL')."""
    from .inference.lesion_report import number_text

    return number_text(value, 2)


def change_to_json(change: Dict[str, Any]) -> str:
    """The change report as JSON text (without the ``_arrays``)."""
    import json

    from .fileutil import finite_json

    return json.dumps(finite_json({k: v for k, v in change.items() if not k.startswith("_")}), indent=2,
                      allow_nan=False) + "\n"


def write_change_report(change: Dict[str, Any], path: Any, overwrite: bool = False) -> Path:
    """Write :func:`change_to_json` atomically to a ``.json`` path."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        raise InputError(f"Change report '{path}' must end in .json.")
    with atomic_output(path, overwrite) as tmp:
        Path(tmp).write_text(change_to_json(change), encoding="utf-8")
    return path
