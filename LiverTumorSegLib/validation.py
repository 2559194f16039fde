"""Sanity checks on an input CT before any work is done, and memory checks.

:func:`check_ct` raises :class:`~LiverTumorSegLib.errors.InputError` for volumes that cannot be a
usable CT (empty, constant, NaN/Inf, 2D/4D, absurd spacing, values that are not Hounsfield units) and
returns a list of warnings for volumes that can be processed but may give poor results. Arrays are
``(z, y, x)``; spacing is ``(x, y, z)`` mm as in :class:`~LiverTumorSegLib.volume.ImageGeometry`.

Padding values outside the scanner's field of view (-3024, -2048, -2000 on GE/Siemens/Philips) are
normal CT and accepted.
"""
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import InputError, ResourceError, option_hint
from .volume import CTVolume

MAX_SPACING_MM = 20.0
SMALL_SPACING_WARN_MM = 0.2
THICK_SLICE_WARN_MM = 6.0
SPACING_DECIMALS = 6
"""Decimal places (mm) to which the spacing is held against the limits above: a NIfTI header stores its axes in
float32 (about 7 significant digits), which a tilted grid's spacing shows as 6.000000209 mm."""
MIN_INPLANE_WARN_VOXELS = 32
OBLIQUE_WARN_DEGREES = 20.0
"""A grid tilted more than this from the patient axes gets a warning. Measured with the bundled model on the real
3 mm abdomen-pelvis CT resampled onto tilted grids (rotation about x): liver Dice 0.96 at 10 degrees, 0 at 30
(the liver of the corners' fill kept, the real one dropped); rotated in-plane: 0.98 at 10, 0.91 at 44."""
AIR_HU_RANGE = (-1200.0, -500.0)  # air / lung; padding such as -3024 lies below this on purpose
MIN_PLAUSIBLE_VALUE = -40000.0  # below int16's -32768, a padding value some converters use
MAX_PLAUSIBLE_VALUE = 70000.0
PADDING_BELOW_HU = -1500.0  # scanner padding (-3024, -2048, -2000, and those + 1024) lies below this
SHIFTED_TISSUE_HU = 700.0
SHIFTED_TISSUE_FRACTION = 0.2
"""A CT whose voxels above the padding are at least 20 % over 700 is taken as shifted by +1024: in HU that much
of a volume is bone or metal only in a crop of bone; in a shifted CT every soft tissue lies there."""
GIB = float(1 << 30)


def _allow_non_hu() -> str:
    """The switch that lets a non-HU CT through, named for the caller (flag or argument)."""
    return option_hint("--allow-non-hu", "allow_non_hu=True")


def allow_non_hu_hint() -> str:
    """The way on for a CT that does not look like HU, named for the caller (flag or argument)."""
    return f"provide the original HU CT, or pass {_allow_non_hu()} to proceed"


def _source(volume: CTVolume) -> str:
    return volume.source or "the volume"


def _check_shape(volume: CTVolume, warnings: List[str]) -> None:
    arr = volume.array
    name = _source(volume)
    if arr.ndim != 3:
        kind = "2D" if arr.ndim == 2 else f"{arr.ndim}D"
        raise InputError(f"'{name}' is {kind} (shape {tuple(arr.shape)}); a 3D CT volume (z, y, x) is needed.")
    if arr.size == 0:
        raise InputError(f"'{name}' is empty (shape (z, y, x) {tuple(arr.shape)}); it holds no voxels.")
    singleton = [n for n, s in enumerate(arr.shape) if s == 1]
    if len(singleton) >= 2:
        raise InputError(f"'{name}' is a line or a single voxel (shape (z, y, x) {tuple(arr.shape)}); a 3D CT "
                         f"volume is needed.")
    from .orientation import plan_reorientation

    nz, ny, nx = plan_reorientation(volume.geometry, volume.shape_zyx).canonical_shape
    if singleton:
        if nz != 1:
            raise InputError(f"'{name}' is a single sagittal or coronal slice (shape (z, y, x) {tuple(arr.shape)}); "
                             f"axial CT slices are needed.")
        warnings.append(f"'{name}' is a single axial slice: neighbouring-slice context is replaced by copies of "
                        f"it and 3D post-processing has nothing to work with; results may be poorer.")
    if min(ny, nx) < MIN_INPLANE_WARN_VOXELS:
        hint = (" or an (x, y, z) array (nibabel's order) given as (z, y, x)? Pass array.T with the spacing "
                "(x, y, z)" if _looks_transposed(nz, ny, nx) else "")
        warnings.append(f"'{name}' has very small axial slices ({ny} x {nx} voxels); is it cropped{hint}?")


def _looks_transposed(nz: int, ny: int, nx: int) -> bool:
    """Whether a grid of ``nz`` slices of ``ny`` x ``nx`` voxels, one of them small, may be an ``(x, y, z)`` array
    given as ``(z, y, x)``: thin "slices" of a tall stack, or one short in-plane axis with the other in-plane axis
    and the slice count both at least 4 times it (a 512 x 512 x 20 CT in nibabel's order: slices of 512 x 20, where
    only the tall-stack rule was asked and said nothing, while the run gave a 7 mL liver)."""
    short = min(ny, nx)
    return nz > 4 * max(ny, nx) or min(nz, max(ny, nx)) >= 4 * short


def _slice_axes(direction: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The two in-plane index axes (columns of ``direction``, LPS) of the slices nearest to axial: those of the
    index axes other than the one closest to S."""
    direction = np.asarray(direction, dtype=float)
    axial_column = int(np.argmax(np.abs(direction[2, :])))  # 0=i(x), 1=j(y), 2=k(z)
    first, second = (direction[:, c] for c in range(3) if c != axial_column)
    return first, second


def slice_tilt_degrees(direction: np.ndarray) -> float:
    """The angle (degrees) between the patient's superior-inferior axis and the normal of the grid's slices nearest
    to axial (those of the index axis closest to S): 0 for any grid turned only about S (its slices are true axial
    planes), 30 for one tilted 30 degrees about x or y. ``direction``: 3 x 3, columns = the i, j, k axes in LPS."""
    normal = np.cross(*_slice_axes(direction))
    return float(np.degrees(np.arccos(np.clip(abs(normal[2]) / max(np.linalg.norm(normal), 1e-12), 0.0, 1.0))))


def in_plane_turn_degrees(direction: np.ndarray) -> float:
    """The angle (degrees, 0-45) by which the grid's slices nearest to axial are turned about the patient's
    superior-inferior axis: between the patient axis nearest to one of the slices' two index axes and that axis
    projected onto the axial plane. 0 for any axis-aligned grid (flipped or permuted) and for one only tilted about x
    or y; 30 for one turned 30 degrees about S, tilted or not. ``direction``: 3 x 3, columns = the i, j, k axes in
    LPS."""
    in_plane = _slice_axes(direction)[0][:2]  # its L and P components
    angle = float(np.degrees(np.arctan2(abs(in_plane[1]), abs(in_plane[0]))))  # 0..90 from L
    return min(angle, 90.0 - angle)


def measurement_tilt_warnings(direction: np.ndarray, name: str) -> List[str]:
    """Where lesions are measured (``measure``, ``followup``), not segmented: a warning when the slices nearest to
    axial are tilted more than :data:`OBLIQUE_WARN_DEGREES` from the axial plane (:func:`slice_tilt_degrees`), since
    RECIST axes are measured in true axial planes through such a grid's voxels
    (:func:`~.metrics.recist.lesion_axes`: each point takes the label of the stored voxel it lies in), which reads
    their staircase edges up to about two voxels differently from the same lesion stored axial; the warning says so. A
    grid turned only about S has true axial slices and gets none. (It said the axes were measured in the tilted
    slices, which they were: 27.7 mm for a 30 mm lesion stored tilted 45 degrees.)"""
    tilt = slice_tilt_degrees(direction)
    if tilt <= OBLIQUE_WARN_DEGREES:
        return []
    return [f"'{name}' is stored in slices tilted {tilt:.0f} degrees from the axial plane: the long and short axes "
            f"are measured in true axial planes through its voxels (each point takes the label of the voxel it lies "
            f"in), within about two voxels of the same lesion stored axial (up to 1.7 mm longer for a 30 mm lesion on "
            f"1 mm voxels tilted 45 degrees, with where the sampling falls)."]


def model_obliquity_warnings(direction: np.ndarray, name: str, aligned_for_model: bool = False,
                             oblique_grid_stored: bool = False) -> List[str]:
    """Where the model reads the CT (``segment``, training, ``preprocess``): a warning when the grid is more than
    :data:`OBLIQUE_WARN_DEGREES` off the patient axes. Slices tilted from the axial plane (an oblique reformat) are
    read as axial ones (liver Dice 0 at 30 degrees about x on the 3 mm CT); a grid turned only about S has true axial
    slices whose anatomy the model sees rotated in-plane (0.98 at 10 degrees, 0.91 at 44), which it was trained on
    only up to 15 degrees: each case gets its own words. ``aligned_for_model``: ``segment`` (and ``preprocess``, which
    previews it), which gives the model such a CT resampled onto a patient-aligned grid
    (:mod:`.inference.axis_aligned`): the warning says that. ``oblique_grid_stored``: ``segment --oblique-grid
    stored`` (``oblique_grid="stored"``), which reads the stored slices by the user's choice: the warning's advice is
    to drop that option (segment then resamples the CT itself), not to resample the CT beforehand."""
    tilt, turn = slice_tilt_degrees(direction), in_plane_turn_degrees(direction)
    without_stored = option_hint("segment without --oblique-grid stored",
                                 "segment with oblique_grid='aligned' (the default)") + \
        ", which resamples it onto a patient-aligned grid itself"
    if aligned_for_model and max(tilt, turn) > OBLIQUE_WARN_DEGREES:
        return [f"'{name}' is stored on a grid turned {max(tilt, turn):.0f} degrees from the patient axes; segment "
                f"gave the model the CT resampled onto a patient-aligned grid and brought the labels back onto the "
                f"CT's grid (the report's network_grid): the two linear interpolations soften edges by up to a "
                f"voxel."]
    if tilt > OBLIQUE_WARN_DEGREES:
        return [f"'{name}' is stored on a grid tilted {tilt:.0f} degrees from the patient axes; the model reads the "
                f"grid's slices as axial slices, so the result may be wrong. " +
                (f"Run {without_stored}." if oblique_grid_stored else
                 "Resample it onto an axial, patient-aligned grid first.")]
    if turn > OBLIQUE_WARN_DEGREES:
        slices = "axial" if tilt < 0.5 else f"within {tilt:.0f} degrees of axial"
        return [f"'{name}' is stored on a grid turned {turn:.0f} degrees about the head-foot axis: its slices are "
                f"{slices}, but the model sees the anatomy rotated in-plane by that much (it was trained on rotations "
                f"up to 15 degrees; liver Dice fell from 0.98 at 10 degrees to 0.91 at 44 on a test CT). Check the "
                f"result, or " + (f"run {without_stored}." if oblique_grid_stored else
                                  "resample the CT onto a patient-aligned grid first.")]
    return []


def converted_unit_hint(volume: CTVolume) -> str:
    """For a refusal or warning of a spacing: where a NIfTI header's unit (metres, microns) was converted to mm,
    a sentence saying so ('' otherwise); '3000 mm' of a header whose pixdim reads 3 in metres said nothing of why."""
    from .io.nifti import SPATIAL_UNIT_KEY, unit_conversion_text

    unit = (getattr(volume, "meta", None) or {}).get(SPATIAL_UNIT_KEY)
    return unit_conversion_text(unit["unit"], unit["mm_per_unit"]) if unit else ""


def spacing_over_limit(volume: CTVolume) -> bool:
    """Whether ``volume``'s voxels are over :data:`MAX_SPACING_MM` (to :data:`SPACING_DECIMALS` places) along an axis
    it has more than one voxel of: a wrong header, or no diagnostic CT (segment refuses such a CT; measure and
    followup such a label map)."""
    spacing = np.round(np.asarray(volume.geometry.spacing, dtype=float), SPACING_DECIMALS)
    return any(s > MAX_SPACING_MM for s, n in zip(spacing, volume.shape_zyx[::-1]) if n > 1)


def _check_geometry(volume: CTVolume, warnings: List[str], for_model: bool = True,
                    aligned_for_model: bool = False, oblique_grid_stored: bool = False) -> None:
    name = _source(volume)
    spacing = np.asarray(volume.geometry.spacing, dtype=float)
    shown = ", ".join(f"{s:g}" for s in spacing)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(f"'{name}' has invalid voxel spacing ({shown}) mm; the file header is broken. Fix the "
                         f"spacing in the header (e.g. re-export from the scanner/PACS).")
    sizes_xyz = volume.shape_zyx[::-1]
    # judged to SPACING_DECIMALS places: a tilted float32 NIfTI header's 6 mm slices read 6.000000209 mm and were
    # called thick slices '(6 mm)', which the same slices untilted were not
    spacing = np.round(spacing, SPACING_DECIMALS)
    relevant = [s for s, n in zip(spacing, sizes_xyz) if n > 1]
    if spacing_over_limit(volume):
        raise InputError(f"'{name}' has voxel spacing ({shown}) mm, over {MAX_SPACING_MM:g} mm: the header is "
                         f"wrong or this is not a diagnostic CT. Fix the spacing in the header."
                         f"{converted_unit_hint(volume)}")
    if any(s < SMALL_SPACING_WARN_MM for s in relevant):
        warnings.append(f"'{name}' has very small voxel spacing ({shown}) mm; check the header (micro-CT or a "
                        f"unit error?).{converted_unit_hint(volume)}")
    origin = np.asarray(volume.geometry.origin, dtype=float)
    if not np.all(np.isfinite(origin)):
        raise InputError(f"'{name}' has a non-finite origin ({', '.join(f'{v:g}' for v in origin)}); fix the "
                         f"header (e.g. re-export from the scanner/PACS).")
    direction = volume.geometry.direction_matrix
    check_direction_axes(direction, name)
    # the slices nearest to axial, whichever array axis holds them: a CT stored coronal or sagittal (its slice
    # axis first in the file) had its in-plane spacing read as the slice thickness, and 7 mm slices went unwarned
    from .orientation import plan_reorientation

    canonical = plan_reorientation(volume.geometry, volume.shape_zyx)
    slice_mm = float(np.round(canonical.canonical_geometry.spacing[2], SPACING_DECIMALS))
    if canonical.canonical_shape[0] > 1 and slice_mm > THICK_SLICE_WARN_MM:
        warnings.append(f"'{name}' has thick slices ({slice_mm:g} mm); small lesions may be missed.")
    warnings += (model_obliquity_warnings(direction, name, aligned_for_model, oblique_grid_stored) if for_model
                 else measurement_tilt_warnings(direction, name))


DIRECTION_UNIT_TOLERANCE = 1e-3
"""How far from 1 the length of a direction matrix column may be (header rounding) before it is refused."""


def check_direction_axes(direction: np.ndarray, name: str) -> None:
    """Refuse (InputError naming ``name``) a direction matrix (3x3, columns = the LPS directions of the i, j, k
    index axes) that is not finite, degenerate, has axes that are not unit vectors, or is sheared: volumes (the
    product of the spacings), diameters and positions are computed for unit, orthogonal axes. The readers refuse
    such headers; this holds an ImageGeometry built in memory to the same rule."""
    direction = np.asarray(direction, dtype=float)
    if not np.all(np.isfinite(direction)) or abs(np.linalg.det(direction)) < 1e-3:
        raise InputError(f"'{name}' has an invalid (degenerate) direction matrix in its header; fix the header.")
    lengths = np.linalg.norm(direction, axis=0)
    if np.any(np.abs(lengths - 1.0) > DIRECTION_UNIT_TOLERANCE):
        # the readers make unit axes; an ImageGeometry built by hand with the spacing folded into the direction
        # put every lesion centroid and diameter off by that factor (a 3 mm grid: centroids 3x too far out)
        raise InputError(f"'{name}' has a direction matrix whose axes are not unit vectors (lengths "
                         f"{', '.join(f'{v:.4g}' for v in lengths)}): give the voxel size in ImageGeometry.spacing "
                         f"(mm) and unit axis directions in ImageGeometry.direction (ImageGeometry.from_ijk_to_ras "
                         f"splits a 4 x 4 voxel-to-RAS affine that way).")
    from .io.conversions import check_orthogonal_axes

    check_orthogonal_axes(direction, name)  # the readers refuse a sheared grid; so does an in-memory volume


def _whole_numbers(arr: np.ndarray) -> bool:
    """Whether ``arr``'s values are whole numbers (an integer voxel type, or floats without fractions on every 4th
    voxel along each axis), as an 8-bit picture's are and PET SUVs or rescaled data are not."""
    if not np.issubdtype(arr.dtype, np.floating):
        return True
    sample = np.asarray(arr[::4, ::4, ::4] if arr.ndim == 3 else arr)
    return bool(np.all(sample == np.round(sample)))


def _not_hu_reason(lo: float, hi: float, whole_numbers: bool = True) -> Optional[str]:
    """Why a ``lo..hi`` value range cannot be Hounsfield units, or None when it can. ``whole_numbers``: whether the
    values are (:func:`_whole_numbers`): a range within 0..255 with fractions is no 8-bit picture (PET SUVs are such
    floats, 0 to about 20)."""
    if lo >= 0 and hi <= 1:
        # a probability map (another tool's, or a float one) lies here too: segmenting it as stored is no use
        return f"values lie within 0..1: {lo:g}..{hi:g}, like a normalised image or a probability map"
    if lo >= 0 and hi <= 255:
        if not whole_numbers:
            return f"values lie within 0..255: {lo:g}..{hi:g}, with fractions, like PET (SUV) or rescaled data"
        return f"values lie within 0..255: {lo:g}..{hi:g}, like an 8-bit picture or a windowed export"
    if whole_numbers and lo == -128 and hi <= 127:  # a windowed export stored signed: the window's floor at -128
        return (f"values lie within -128..127: {lo:g}..{hi:g}, with the floor at -128, like a signed 8-bit picture "
                f"or a windowed export")
    if hi - lo <= 20:
        return f"values span only {lo:g}..{hi:g}, like z-scored or rescaled data"
    if lo >= 0:
        return (f"all values >= 0: {lo:g}..{hi:g}, no air near -1000 HU; MR, or CT stored without its rescale "
                f"intercept")
    if lo < MIN_PLAUSIBLE_VALUE or hi > MAX_PLAUSIBLE_VALUE:
        return (f"values reach {lo:g}..{hi:g}, far outside any Hounsfield range (air -1000, metal up to about "
                f"30000, padding down to -32768)")
    return None


NO_AIR_DENSE_HU = 250.0
NO_AIR_DENSE_FRACTION = 0.3
"""A volume with no air (:data:`AIR_HU_RANGE`) where at least this fraction of the voxels above the padding lies
over :data:`NO_AIR_DENSE_HU` (where only bone, contrast and metal lie in HU) is not CT in HU: real abdominal CTs
have 0.6-2.1 % of their voxels there; MR with a noisy background below 0 (nothing near -1000, most of the body in
the hundreds or thousands) had 35 %."""


PADDED_PICTURE_MIN_VALUES = 16
"""Distinct values the non-padding voxels need before :func:`_not_hu_content_reason` judges them as a picture (MR
and 8-bit exports have hundreds; the tests' synthetic air-and-tissue volumes one or two)."""


def _any_between(arr: np.ndarray, lo: float, hi: float, chunk_slices: int = 8) -> bool:
    """Whether any voxel of ``arr`` lies strictly between ``lo`` and ``hi``, a few slices at a time, stopping at the
    first hit."""
    from .inference.thresholds import threshold_for

    lo, hi = threshold_for(arr, lo), threshold_for(arr, hi)  # an int16 CT compared in int16, not float64
    for start in range(0, arr.shape[0], chunk_slices):
        part = arr[start:start + chunk_slices]
        if np.any((part > lo) & (part < hi)):
            return True
    return False


def _not_hu_content_reason(arr: np.ndarray, lo: float, hi: float) -> Optional[str]:
    """Why a volume whose value range (``lo``..``hi``) :func:`_not_hu_reason` accepts is still not CT in HU, or None.

    * Every negative voxel holds the one value ``lo``: padding (one constant row or border, as a resampling or
      conversion tool leaves) around data that is otherwise all >= 0, an MR or 8-bit picture whose minimum the
      padding alone made negative. A CT always has negative voxels of many values (air, lung, fat at -150..-50).
      The value range without the padding is judged again, when the rest is a picture (at least
      :data:`PADDED_PICTURE_MIN_VALUES` distinct values; a synthetic volume of air and one tissue value is not
      judged by this rule).
    * No air, and :data:`NO_AIR_DENSE_FRACTION` of the voxels over :data:`NO_AIR_DENSE_HU`.

    Usually one early-stopping look at the first slices (a CT's first slices hold values between its minimum and
    0) and an air look that stops at the first air voxel."""
    if lo < 0 and not _any_between(arr, lo, 0.0):
        above = arr[arr > lo]
        if np.unique(above[::max(1, above.size // 100000)]).size >= PADDED_PICTURE_MIN_VALUES:
            rest = _not_hu_reason(float(above.min()), hi, _whole_numbers(arr))
            if rest is not None:
                return f"apart from {arr.size - above.size} padding voxels of {lo:g}, {rest}"
    air_lo, air_hi = AIR_HU_RANGE
    if not _has_values_in(arr, air_lo, air_hi):
        sample = np.asarray(arr[::4, ::4, ::4], dtype=np.float32)
        sample = sample[sample > PADDING_BELOW_HU]
        dense = float(np.count_nonzero(sample > NO_AIR_DENSE_HU)) / max(sample.size, 1)
        if sample.size and dense >= NO_AIR_DENSE_FRACTION:
            return (f"no air ({air_lo:g}..{air_hi:g}) anywhere, while {100 * dense:.0f} % of the voxels lie over "
                    f"{NO_AIR_DENSE_HU:g}, where in a CT only bone, contrast and metal lie: MR, or another scale")
    return None


RAW_CT_OFFSET = 1024.0
"""What a CT stored without its rescale intercept (-1024) holds above its HU: air near 0, soft tissue near 1060."""
RAW_CT_AIR_BELOW_HU = -800.0
RAW_CT_BODY_ABOVE_HU = -500.0
RAW_CT_SOFT_TISSUE_HU = (-150.0, 100.0)  # fat, muscle, organs: most of an abdomen
RAW_CT_AIR_MIN_FRACTION = 0.05
RAW_CT_SOFT_MIN_FRACTION = 0.5
"""A volume of values all >= 0 is a CT stored without its intercept (:func:`_stored_without_intercept_reason`) when,
read as HU after subtracting :data:`RAW_CT_OFFSET`, at least :data:`RAW_CT_AIR_MIN_FRACTION` of its voxels are air
(below :data:`RAW_CT_AIR_BELOW_HU`) and at least :data:`RAW_CT_SOFT_MIN_FRACTION` of those above
:data:`RAW_CT_BODY_ABOVE_HU` (the body) lie in :data:`RAW_CT_SOFT_TISSUE_HU`. The shared real CTs + 1024 (clipped at
0): air 36-63 %, fat and soft tissue 78-90 % of the body; MR-like data spreads its body over hundreds of values."""


def _stored_without_intercept_reason(arr: np.ndarray, lo: float, hi: float) -> Optional[str]:
    """Why a volume of values all >= 0 (``lo``..``hi``, above 255) looks like a CT stored without its rescale
    intercept (a raw 0..4095 store: air near 0, fat near 900-950, soft tissue near 1024-1100), or None when its
    values do not clearly fit that (MR, or a crop without air). Read on every 4th voxel along each axis."""
    if lo < 0 or hi <= 255:
        return None
    sample = np.asarray(arr[::4, ::4, ::4], dtype=np.float32).ravel() - RAW_CT_OFFSET
    air = float(np.count_nonzero(sample < RAW_CT_AIR_BELOW_HU)) / max(sample.size, 1)
    body = sample[sample > RAW_CT_BODY_ABOVE_HU]
    soft_lo, soft_hi = RAW_CT_SOFT_TISSUE_HU
    soft = float(np.count_nonzero((body >= soft_lo) & (body <= soft_hi))) / max(body.size, 1)
    if air < RAW_CT_AIR_MIN_FRACTION or soft < RAW_CT_SOFT_MIN_FRACTION:
        return None
    offset = RAW_CT_OFFSET
    return (f"all values >= 0: {lo:g}..{hi:g}, no air near -1000 HU; {100 * air:.0f} % of the voxels lie below "
            f"{RAW_CT_AIR_BELOW_HU + offset:g} (air + 1024) and {100 * soft:.0f} % of the others above "
            f"{RAW_CT_BODY_ABOVE_HU + offset:g} at {soft_lo + offset:g}..{soft_hi + offset:g} (fat and soft tissue + "
            f"1024): the values look shifted by about +1024, i.e. a CT stored without its rescale intercept (HU = "
            f"stored - 1024)")


SOFT_TISSUE_HU_RANGE = (-200.0, 250.0)  # fat, muscle, organs, blood (contrast-enhanced too)
DOUBLE_SHIFT_SOFT_FRACTION = 0.02
DOUBLE_SHIFT_AIR_FRACTION = 0.5


def _shifted_by_intercept_reason(arr: np.ndarray, maximum: float) -> Optional[str]:
    """Why a CT looks stored with its values shifted by about 1024, or None. Read on every 4th voxel along each
    axis, scanner padding (below :data:`PADDING_BELOW_HU`) left out.

    * +1024 (stored without the rescale intercept): air near 0 instead of -1000, soft tissue near +1050; at least
      :data:`SHIFTED_TISSUE_FRACTION` of the voxels lie over :data:`SHIFTED_TISSUE_HU`, where only bone and metal
      lie (real abdominal CTs: 0.2-0.4 %; raw ones 55-87 %). Checked whether or not some voxels look like air:
      a resampled raw CT has interpolated padding edges between -1200 and -500.
    * -1024 (the intercept applied twice): soft tissue near -970 reads as air; under
      :data:`DOUBLE_SHIFT_SOFT_FRACTION` of the voxels in :data:`SOFT_TISSUE_HU_RANGE` while more than
      :data:`DOUBLE_SHIFT_AIR_FRACTION` lie in :data:`AIR_HU_RANGE` (real CTs: 11-85 % soft tissue), and
      something dense (``maximum``, the volume's largest value, above -200: bone, which a shift keeps above
      soft tissue) shows it is not a volume of air alone. The air joined to a slice's edge is then left out and the
      shares read again (:func:`_without_air_around_the_body`): a small child in an adult's field of view is mostly
      air around a body of soft tissue, where a doubly shifted CT's 'air' is the body itself (its real air lies
      below -1500)."""
    sampled = np.asarray(arr[::4, ::4, ::4], dtype=np.float32)
    sample = sampled[sampled > PADDING_BELOW_HU]
    if sample.size == 0:
        return None
    above = float(np.count_nonzero(sample > SHIFTED_TISSUE_HU)) / sample.size
    if above >= SHIFTED_TISSUE_FRACTION:
        return (f"{100 * above:.0f} % of the voxels above the padding are over {SHIFTED_TISSUE_HU:g}, where only bone "
                f"and metal lie: the values look shifted by about +1024, i.e. stored without the rescale intercept")
    soft_lo, soft_hi = SOFT_TISSUE_HU_RANGE
    air_lo, air_hi = AIR_HU_RANGE
    soft = float(np.count_nonzero((sample >= soft_lo) & (sample <= soft_hi))) / sample.size
    air = float(np.count_nonzero((sample >= air_lo) & (sample <= air_hi))) / sample.size
    if soft < DOUBLE_SHIFT_SOFT_FRACTION and air > DOUBLE_SHIFT_AIR_FRACTION and maximum > -200:
        inside = np.zeros(0) if _image_below_padding(sampled) else _without_air_around_the_body(sampled)
        if inside.size:  # a body inside a room of air: mostly soft tissue and fat, as a body is
            body_soft = float(np.count_nonzero((inside >= soft_lo) & (inside <= soft_hi))) / inside.size
            if body_soft >= RESCUED_BODY_SOFT_SHARE:
                return None
        return (f"only {100 * soft:.1f} % of the voxels above the padding are soft tissue ({soft_lo:g}..{soft_hi:g}) "
                f"while {100 * air:.0f} % read as air: the values look shifted by about -1024, i.e. the rescale "
                f"intercept was applied twice")
    return None


DOUBLE_SHIFT_IMAGE_BELOW_PADDING_FRACTION = 0.005
"""A sampled volume with more than this fraction of its voxels below :data:`PADDING_BELOW_HU` other than its most
common value there (the scanner's padding) holds image there: a doubly shifted CT's gas and air (about -2024). Such a
CT is never taken for a small body in a wide field of view (:func:`_without_air_around_the_body`), whose air lies at
-1000."""


RESCUED_BODY_SOFT_SHARE = 0.5
"""Where the shares point at a double shift, the CT is taken for a small body in a wide field of view only when what is
left without the room of air around it is at least this much soft tissue and fat (:data:`SOFT_TISSUE_HU_RANGE`), as a
body is: a doubly shifted CT's body reads as air and was taken for the room, and what was left, its shifted bone and
fat below -1200 HU, passed the looser shares (12 of 32 slabs of the shared CTs, cropped and padded round, the
review)."""


def _most_common(values: np.ndarray) -> float:
    """The most common of ``values`` (1-D, not empty; the lowest of those tied): below :data:`PADDING_BELOW_HU`, the
    scanner's padding, where the rest there is image (:func:`_image_below_padding`, :func:`_scaled_reason`)."""
    found, counts = np.unique(values, return_counts=True)
    return found[int(np.argmax(counts))]


def _image_below_padding(sampled_zyx: np.ndarray) -> bool:
    """Whether more than :data:`DOUBLE_SHIFT_IMAGE_BELOW_PADDING_FRACTION` of the sampled voxels lie below
    :data:`PADDING_BELOW_HU` with a value other than the most common one there, and not beside it (in-plane): a
    resampled round field of view's interpolated rim (0.57 % of a child CT resampled to 1.5 mm) is padding too."""
    from scipy import ndimage

    below_mask = sampled_zyx <= PADDING_BELOW_HU
    if not below_mask.any():
        return False
    padding = sampled_zyx == _most_common(sampled_zyx[below_mask])
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = True
    rim = ndimage.binary_dilation(padding, structure=in_plane, iterations=1)
    image = np.count_nonzero(below_mask & ~rim)
    return image > DOUBLE_SHIFT_IMAGE_BELOW_PADDING_FRACTION * sampled_zyx.size


def _without_air_around_the_body(sampled_zyx: np.ndarray) -> np.ndarray:
    """The values (flat) of a sampled volume ``(z, y, x)`` above :data:`PADDING_BELOW_HU` that are not air around the
    body: in :data:`AIR_HU_RANGE` and joined (4-connected in their slice, through such voxels or the padding) to all
    four edges of the slice, the room around a body inside the field of view. A 106 mm wide child in a 500 mm field of
    view read 1.5 % soft tissue among 'air' that was that room, and the CT was refused as having its rescale intercept
    applied twice (the HU rules audit). A doubly shifted CT's 'air' is its body, and its real air and gas lie below
    -1500 (:func:`_image_below_padding`, checked first): where its body fills the image it reached all four edges
    too."""
    from scipy import ndimage

    air_lo, air_hi = AIR_HU_RANGE
    # the padding of a round field of view belongs to the room: the air inside the circle reaches no edge of the image;
    # so does a resampling's rim beside it (values between the padding and air: -1500..-1200, neither of them)
    padding = sampled_zyx <= PADDING_BELOW_HU
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    rim = ndimage.binary_dilation(padding, structure=in_plane) & (sampled_zyx < air_lo)
    air = (sampled_zyx >= air_lo) & (sampled_zyx <= air_hi) | padding | rim
    components, count = ndimage.label(air, structure=in_plane)
    edge = np.ones(count + 1, dtype=bool)
    for face in (components[:, 0, :], components[:, -1, :], components[:, :, 0], components[:, :, -1]):
        on_face = np.zeros(count + 1, dtype=bool)
        on_face[np.unique(face)] = True
        edge &= on_face
    edge[0] = False
    keep = ~edge[components] & (sampled_zyx > PADDING_BELOW_HU)
    return sampled_zyx[keep]


SCALED_IMAGE_BELOW_PADDING_FRACTION = 0.05
"""Voxels below :data:`PADDING_BELOW_HU` that are image, not padding: more than this fraction of them (the most
common value there, the padding, left out) with at least :data:`PADDED_PICTURE_MIN_VALUES` distinct values. Real CTs
(the shared cases, the sample, and each with -2048 / -3024 / -32768 padding): 0; the sample x4 and x10: 37-39 %."""
SCALED_IMAGE_SPREAD_HU = 200.0
"""...and those values spread over at least this much (5th to 95th percentile): air and lung at x 2 and more span
hundreds of HU, while padding with noise on it (the robustness benchmark's noise rows on the GE CT's -3024, as
lossy compression could leave it) stays within a few tens and is still padding: the check refused those rows. (On
that padding, noise of 10 / 25 / 40 / 60 HU spreads 32 / 84 / 133 / 201 HU: up to about 60 HU of noise passes.)"""
SCALED_AIR_HU = (-850.0, -300.0)
SCALED_AIR_SPREAD_HU = 60.0
"""A CT whose values were scaled down: nothing above the padding reaches :data:`SCALED_AIR_HU`'s low end (real
air is -1000 HU), while the lowest 5 % of the voxels lie within :data:`SCALED_AIR_SPREAD_HU` of each other below
its high end: a sharp cluster, like the air around a body, where no tissue lies (lung is broad and reaches -900;
fat lies at -150..-50). The sample x 0.5: minimum -550, lowest 5 % within -550..-502; real CTs reach -1000."""


COUNTED_RANK_MAX_SPAN = 1 << 20
"""Whole values spanning at most this many units are ranked by counting (:func:`_kth_smallest`)."""


def _kth_smallest(values: np.ndarray, k: int, whole: bool = False) -> float:
    """The ``k``-th smallest (0-based) of the 1-D ``values``, as ``np.partition(values, k)[k]`` gives it. ``whole``:
    the values are whole numbers (read from an integer volume): then counted per value (a histogram and its running
    sum), where ``np.partition`` on a CT's sample (1.2 M float32 values, a third of them one air or padding value)
    took 0.15 s of the 0.18 s ``check_ct`` (300 x 512 x 512 int16, one thread). The same value either way."""
    if whole and values.size:
        lowest, highest = int(values.min()), int(values.max())
        if highest - lowest <= COUNTED_RANK_MAX_SPAN:
            counts = np.bincount((values - lowest).astype(np.intp), minlength=highest - lowest + 1)
            return float(values.dtype.type(lowest + int(np.searchsorted(np.cumsum(counts), k + 1))))
    return float(np.partition(values, k)[k])


def _scaled_reason(arr: np.ndarray) -> Optional[str]:
    """Why a CT's values look multiplied by a factor (a rescale slope missing, applied twice or wrong), or None.
    Read on every 4th voxel along each axis.

    * Scaled up (x 2 and more): air lies far below -1000, among the padding values, but with many different values
      (:data:`SCALED_IMAGE_BELOW_PADDING_FRACTION`), where real padding is one value.
    * Scaled down (x 0.5): see :data:`SCALED_AIR_SPREAD_HU`. A CT with no air at all (a crop inside the body) is
      not judged here (:func:`check_ct` warns that it has no air)."""
    sample = np.asarray(arr[::4, ::4, ::4], dtype=np.float32).ravel()
    if sample.size == 0:
        return None
    low = sample[sample < PADDING_BELOW_HU]
    if low.size >= SCALED_IMAGE_BELOW_PADDING_FRACTION * sample.size:  # else too few to be image, whatever they are
        image = low[low != _most_common(low)]  # the padding left out
        fraction = image.size / sample.size
        spread = float(np.ptp(np.percentile(image, [5, 95]))) if image.size else 0.0
        if fraction >= SCALED_IMAGE_BELOW_PADDING_FRACTION and np.unique(image).size >= PADDED_PICTURE_MIN_VALUES \
                and spread >= SCALED_IMAGE_SPREAD_HU:
            return (f"{100 * fraction:.0f} % of the voxels lie below {PADDING_BELOW_HU:g} with many different values "
                    f"(median {float(np.median(image)):.0f}), where a CT holds only padding of one value: air at "
                    f"about {float(np.median(image)):.0f} instead of -1000 HU, so the values look multiplied, i.e. "
                    f"stored with a rescale slope missing or applied twice")
    above = sample[sample >= PADDING_BELOW_HU]
    if above.size == 0:
        return None
    air_lo, air_hi = SCALED_AIR_HU
    fifth = int(0.05 * (above.size - 1))  # the 5th percentile's rank
    lowest, p5 = float(above.min()), _kth_smallest(above, fifth, whole=np.issubdtype(arr.dtype, np.integer))
    if lowest > air_lo and p5 < air_hi and p5 - lowest <= SCALED_AIR_SPREAD_HU:
        return (f"the lowest 5 % of the voxels form a sharp cluster at {lowest:.0f}..{p5:.0f} and nothing reaches "
                f"air's -1000 HU: air at about {p5:.0f}, so the values look multiplied by about "
                f"{p5 / -1000.0:.2g}, i.e. stored with a wrong rescale slope")
    return None


LABEL_MAP_MAX_VALUES = 48
"""A volume of at most this many distinct whole values, all in 0..255 and mostly 0
(:data:`LABEL_MAP_MIN_BACKGROUND`), is taken as a label map (a segmentation) given where a CT belongs. Measured on
the shared real cases: their liver and liver-spine label maps hold 2-3 values, TotalSegmentator's multi-organ maps 32
(example_ct_dicom20_ts117labels) and 42 (example_ct_sm_ts117labels); the CTs themselves 1711-2598 values, and
windowed to 8 bits (0..255) 248-256 values at a 400 or 2000 HU window and 81 at an 80 HU one. An 8-bit export with a
window narrower than about 48 HU would be called a label map too."""
LABEL_MAP_MIN_BACKGROUND = 0.5
"""...with at least this fraction of the voxels 0 (background): 70 % (example_ct_sm_ts117labels) to 97 %
(sample_liver_reference) in the shared label maps."""
LABEL_MAP_FULL_READ_VOXELS = 8_000_000
"""A larger volume is judged on every 2nd voxel along each axis (the distinct values found can only be fewer)."""


def label_map_description(arr: np.ndarray) -> Optional[str]:
    """What makes ``arr`` (``(z, y, x)``) look like a label map rather than a CT, or None: at most
    :data:`LABEL_MAP_MAX_VALUES` distinct whole values, all within 0..255, with at least
    :data:`LABEL_MAP_MIN_BACKGROUND` of the voxels 0. A CT in HU never passes (air lies near -1000)."""
    sample = np.asarray(arr[::2, ::2, ::2] if arr.size > LABEL_MAP_FULL_READ_VOXELS else arr)
    values, counts = np.unique(sample, return_counts=True)
    values = values.astype(np.float64)
    if values.size == 0 or values.size > LABEL_MAP_MAX_VALUES or values[0] < 0 or values[-1] > 255 \
            or np.any(values != np.round(values)):
        return None
    background = float(counts[values == 0].sum()) / float(counts.sum())
    if background < LABEL_MAP_MIN_BACKGROUND:
        return None
    shown = ", ".join(f"{v:g}" for v in values[:8]) + (", ..." if values.size > 8 else "")
    return f"only {values.size} distinct whole values ({shown}), {100 * background:.0f} % of the voxels 0"


def _label_map_reason(arr: np.ndarray, lo: float, hi: float) -> Optional[str]:
    """:func:`label_map_description` of a volume whose range ``lo``..``hi`` lies within 0..255, else None (without a
    look at the voxels: a CT in HU has negative values)."""
    return label_map_description(arr) if lo >= 0 and hi <= 255 else None


def not_hu_reason(volume: CTVolume) -> Optional[str]:
    """Why ``volume``'s values are not CT in Hounsfield units (a DICOM Modality other than CT, a value range no CT
    has, values shifted by about 1024), or None when they look like HU: the test :func:`check_ct` refuses by unless
    ``allow_non_hu``. One pass over the volume (its minimum and maximum) and a sample of it."""
    modality = str(volume.meta.get("modality") or "").strip().upper()
    if modality and modality != "CT":
        return f"a DICOM series of Modality {modality}"
    arr = volume.array
    lo, hi = float(arr.min()), float(arr.max())
    label_map = _label_map_reason(arr, lo, hi)
    if label_map is not None:
        return f"it looks like a label map, not a CT: {label_map}"
    return (_stored_without_intercept_reason(arr, lo, hi) or _not_hu_reason(lo, hi, _whole_numbers(arr))
            or _shifted_by_intercept_reason(arr, hi)
            or _scaled_reason(arr) or _not_hu_content_reason(arr, lo, hi))


NON_HU_GOING_ON = "going on because non-HU input was allowed: results may be meaningless"
"""How a check_ct warning ends when ``allow_non_hu`` let a CT that does not look like HU through."""


def _check_modality(volume: CTVolume, allow_non_hu: bool, warnings: List[str],
                    going_on: str = NON_HU_GOING_ON) -> None:
    """A DICOM series whose Modality is not CT (MR, PT, ...) is refused unless ``allow_non_hu``."""
    modality = str(volume.meta.get("modality") or "").strip().upper()
    if not modality or modality == "CT":
        return
    what = f"'{_source(volume)}' is a DICOM series of Modality {modality}, not CT in Hounsfield units"
    if not allow_non_hu:
        raise InputError(f"{what}; the models are trained on CT only: {allow_non_hu_hint()}.")
    warnings.append(f"{what}; {going_on}.")


def _has_values_in(arr: np.ndarray, lo: float, hi: float, chunk_slices: int = 8) -> bool:
    """Whether any voxel of ``arr`` (first axis = slices) lies in ``[lo, hi]``: a few slices at a time, stopping at
    the first hit (a CT's first slices nearly always hold air), so usually without a pass over the volume."""
    from .inference.thresholds import threshold_for

    lo, hi = threshold_for(arr, lo), threshold_for(arr, hi)  # an int16 CT compared in int16, not float64
    for start in range(0, arr.shape[0], chunk_slices):
        part = arr[start:start + chunk_slices]
        if np.any((part >= lo) & (part <= hi)):
            return True
    return False


def _refuse_probability_map(volume: CTVolume) -> None:
    """InputError for a file tagged as a ``segment --probabilities`` map given as the CT, whatever ``allow_non_hu``:
    it was called 'a label map (a segmentation)', which it is not (the file-kind audit)."""
    from .io.formats import PROBABILITY_255_CONTENT

    if volume.meta.get("content") == PROBABILITY_255_CONTENT:
        raise InputError(f"'{_source(volume)}' is a tumor probability map (as segment --probabilities writes it), "
                         f"not a CT: give the CT scan itself (the image in Hounsfield units).")


def _checked_as_label_map(volume: CTVolume, lo: float, hi: float, allow_non_hu: bool, warnings: List[str],
                          going_on: str, label_map_advice: str = "") -> bool:
    """Whether ``volume`` (value range ``lo``..``hi``) looks like a label map (:func:`label_map_description`): then
    InputError, or with ``allow_non_hu`` a warning ending in ``going_on`` and True. Its message does not offer
    ``--allow-non-hu``: a segmentation given for the CT is no CT in any units, and segmenting it gave nonsense."""
    label_map = _label_map_reason(volume.array, lo, hi)
    if label_map is None:
        return False
    what = f"'{_source(volume)}' looks like a label map (a segmentation), not a CT ({label_map})"
    if label_map_advice:  # refused whatever allow_non_hu says (followup's CTs: it aligned the scans on the labels)
        raise InputError(f"{what}: {label_map_advice}")
    if not allow_non_hu:
        raise InputError(f"{what}: give the CT scan itself (the image in Hounsfield units), not a segmentation.")
    warnings.append(f"{what}; {going_on}.")
    return True


def _refuse_header_scaled_beyond_hu(volume: CTVolume, lo: float, hi: float) -> None:
    """InputError when a NIfTI header's ``scl_slope``/``scl_inter`` (``volume.meta``, :data:`~.io.nifti.
    NIFTI_SCALING_KEY`) took the CT's values ``lo``..``hi`` beyond any Hounsfield range (:data:`MIN_PLAUSIBLE_VALUE`
    .. :data:`MAX_PLAUSIBLE_VALUE`), also where non-HU input is allowed: a slope of 1e30 gave values of 1e31, which
    segment called 'pre-normalised/not CT' and measure put into the report as the lesions' mean HU, neither naming the
    header field that made them."""
    from .io.nifti import NIFTI_SCALING_KEY

    scaling = volume.meta.get(NIFTI_SCALING_KEY)
    if scaling is None or (MIN_PLAUSIBLE_VALUE <= lo and hi <= MAX_PLAUSIBLE_VALUE):
        return
    slope, inter = (float(v) for v in scaling)
    stored = sorted((v - inter) / slope for v in (lo, hi))
    raise InputError(f"'{_source(volume)}': its NIfTI header's scale factors (scl_slope {slope:g}, scl_inter "
                     f"{inter:g}) turn the stored values {stored[0]:g}..{stored[1]:g} into {lo:g}..{hi:g}, far "
                     f"outside any Hounsfield range (air -1000, metal up to about 30000, padding down to -32768): "
                     f"the header is damaged. A CT's HU = stored x scl_slope + scl_inter with scl_slope 1 (scl_inter "
                     f"0, or -1024 for values stored from 0); set scl_slope and scl_inter to the values it was "
                     f"exported with (e.g. nibabel: img.header.set_slope_inter(1, 0), then nib.save) or export the "
                     f"file again.")


def _check_intensities(volume: CTVolume, allow_non_hu: bool, warnings: List[str],
                       going_on: str = NON_HU_GOING_ON, label_map_advice: str = "") -> None:
    _refuse_probability_map(volume)  # its file's tag says so: before any pass over the voxels
    arr = volume.array
    name = _source(volume)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating) or arr.dtype == np.bool_):
        raise InputError(f"'{name}' has voxel type {arr.dtype}; a scalar numeric CT volume is needed.")
    if np.issubdtype(arr.dtype, np.floating):
        bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise InputError(f"'{name}' has {bad} NaN/Inf voxels; CT values must be finite HU. Re-export the "
                             f"volume or replace them (e.g. with -1024) first.")
    lo, hi = float(arr.min()), float(arr.max())
    _refuse_header_scaled_beyond_hu(volume, lo, hi)
    if lo == hi:
        raise InputError(f"'{name}' is constant (every voxel is {lo:g}); it holds no image. Check the file.")
    air_lo, air_hi = AIR_HU_RANGE
    if air_lo <= hi <= air_hi and not allow_non_hu:
        # a volume of air alone was told its values were 'like z-scored or rescaled data' (a span under 20 HU)
        raise InputError(f"'{name}' holds nothing denser than air (values {lo:g}..{hi:g} HU, while a body's fat, "
                         f"organs and bone lie above {air_hi:g} HU): no body lies in this volume. Check that it is "
                         f"the CT series you meant (not a crop outside the body or a scan of air); if its values are "
                         f"not HU, pass {_allow_non_hu()} to proceed.")
    shifted = _stored_without_intercept_reason(arr, lo, hi)  # named for what it is, not 'pre-normalised/not CT'
    reason = None if shifted is not None else _not_hu_reason(lo, hi, _whole_numbers(arr))
    if reason is None and shifted is None:
        shifted = _shifted_by_intercept_reason(arr, hi) or _scaled_reason(arr)
    if reason is None and shifted is None:
        reason = _not_hu_content_reason(arr, lo, hi)  # after the raw-CT rule, whose re-export advice is the fix
    if _checked_as_label_map(volume, lo, hi, allow_non_hu, warnings, going_on, label_map_advice):
        return
    if reason is not None or shifted is not None:
        what = f"'{name}' does not look like CT in Hounsfield units ({reason or shifted})"
        if allow_non_hu:
            warnings.append(f"{what}; {going_on}.")
            return
        if shifted is not None:
            raise InputError(f"{what}: re-export it with its rescale slope and intercept applied once (HU = stored "
                             f"x slope + intercept); only if its values are HU after all, pass {_allow_non_hu()} to segment them "
                             f"as stored (shifted or scaled values give meaningless labels).")
        raise InputError(f"{what}; it looks pre-normalised/not CT: {allow_non_hu_hint()}.")
    if not _has_values_in(arr, air_lo, air_hi):
        warnings.append(f"'{name}' has no air voxels ({air_lo:g}..{air_hi:g} HU; range {lo:g}..{hi:g}): is it "
                        f"tightly cropped, or not in Hounsfield units?")
    if hi < -200:
        warnings.append(f"'{name}' has no soft tissue (maximum {hi:g} HU); is this the right volume?")


def check_ct(volume: CTVolume, allow_non_hu: bool = False, non_hu_going_on: str = NON_HU_GOING_ON,
             for_model: bool = True, aligned_for_model: bool = False, oblique_grid_stored: bool = False,
             label_map_advice: str = "") -> List[str]:
    """Check that ``volume`` (``(z, y, x)``, HU) is a usable CT. Returns warnings (may be empty).

    Raises InputError for: not 3D, empty, a line/voxel, a single non-axial slice, invalid or > 20 mm
    spacing, non-finite origin, degenerate direction, a DICOM Modality other than CT (unless ``allow_non_hu``), NaN/Inf voxels, constant volume, and (unless ``allow_non_hu``)
    intensities that are not HU (within 0..1, within 0..255, a span of <= 20, or no negative values; a label map
    is named as one, :func:`label_map_description`).
    A single axial slice is accepted with a warning. The reader's own notes (``volume.meta["warnings"]``: uneven
    slice gaps put on the mean spacing, NIfTI sform/qform disagreeing or missing, fewer slices than files) come
    first: they were kept in the volume but reached neither the user nor the report. ``non_hu_going_on``: how a
    warning about values that do not look like HU ends when ``allow_non_hu`` lets them through (what the caller
    does with them). ``for_model``: the CT is read by the model (an oblique grid is warned about as the model reads
    it, :func:`model_obliquity_warnings`); False where only lesions are measured on it (``measure --ct``,
    ``followup``'s CTs: :func:`measurement_tilt_warnings`). ``aligned_for_model``: ``segment``, which gives the
    model an oblique CT resampled onto a patient-aligned grid (its warning says so); ``oblique_grid_stored``:
    ``segment --oblique-grid stored``, whose oblique-grid warning says that dropping the option does that.
    ``label_map_advice``: when given, a volume that looks like a label map is refused with it even where
    ``allow_non_hu`` lets other values through with a warning (``followup``'s CTs).
    """
    warnings: List[str] = [str(note) for note in volume.meta.get("warnings", [])]
    _check_shape(volume, warnings)
    _check_geometry(volume, warnings, for_model, aligned_for_model, oblique_grid_stored)
    _check_modality(volume, allow_non_hu, warnings, non_hu_going_on)
    _check_intensities(volume, allow_non_hu, warnings, non_hu_going_on, label_map_advice)
    return warnings


# ---------------------------------------------------------------------------------------------- memory
RUNTIME_OVERHEAD_BYTES = 256 * (1 << 20)
"""Room :func:`estimate_memory_bytes` keeps for the runtime's temporaries."""

RUN_COPY_MARGIN_BYTES_PER_VOXEL = 2
"""Bytes a voxel the network checks (:func:`estimate_network_memory_bytes`,
:func:`estimate_aligned_grid_memory_bytes`) keep beside the CT as margin, whatever its voxel type: the room the
canonical copy of an int16 CT took before ``segment`` resampled from a view (27 Nov 2026). The run makes no copy of
the CT: it held the same beside an int16, float32 and float64 CT (docs/speed.md, 29 Nov 2026)."""


def estimate_memory_bytes(shape_zyx: Sequence[int], input_itemsize: int = 2, float_copies: int = 0,
                          num_classes: int = 3, keep_probabilities: bool = False,
                          overhead_bytes: int = RUNTIME_OVERHEAD_BYTES, copy_itemsize: Optional[int] = None) -> int:
    """Rough peak memory (bytes) to segment a ``(z, y, x)`` volume at its own grid, the input included.

    Per voxel: the input (``input_itemsize``) and a copy of it (``copy_itemsize``; None: ``input_itemsize``, a
    reader's check before the voxels are read: the stored voxels and the reader's copy of them, SimpleITK's image or
    nibabel's voxels and their int16/float32 Hounsfield copy (:func:`~.io.conversions.hu_copy_itemsize`); the network checks keep
    :data:`RUN_COPY_MARGIN_BYTES_PER_VOXEL`, as ``segment`` copies no CT), the uint8 labels and tumor probability
    and the post-processing's masks (4 bytes), ``float_copies`` float32 working volumes (none: the restore
    writes uint8 straight to the native grid) and, with ``keep_probabilities``, a float32 map per class. Plus
    ``overhead_bytes`` for the runtime's temporaries. The network grid's share is in
    :func:`estimate_network_memory_bytes`.

    Measured (2 cores, bundled model, ``segment`` of a 512 x 512 int16 CT stacked to 600 and 1200 slices, 23 Nov
    2026): peak RSS 1.41 and 2.39 GiB, of which 0.39 GiB is the process with the model loaded, i.e. 6.9 bytes per
    voxel. This counts 8 per voxel; with the network grid and a batch, :func:`check_network_memory` asks for 1.97
    and 3.13 GiB beside the CT (2.26 and 3.71 GiB in all): still on the safe side, where the previous formula's
    2.83 and 4.85 GiB would have refused the 1200-slice CT on a laptop with 4.5 GiB free. Re-measured 27 Nov 2026
    (512 x 512 x 1000 RAS CT, docs/speed.md): peak RSS 2.04 GiB, check_network_memory asked for 2.76 GiB in all.

    Until 29 Nov 2026 the network checks counted ``2 * input_itemsize`` too: beside a float64 CT (the Python API
    given ``nibabel``'s ``get_fdata()``) they asked 6 bytes a voxel more than beside the same CT in int16, although
    ``segment_volume`` of a 512 x 512 x 200 CT held 380, 379 and 349 MiB beside an int16, float32 and float64 CT
    (docs/speed.md).
    """
    voxels = int(np.prod([int(s) for s in shape_zyx], dtype=np.int64))
    copy = int(input_itemsize) if copy_itemsize is None else int(copy_itemsize)
    per_voxel = int(input_itemsize) + copy + 4 + 4 * int(float_copies)
    if keep_probabilities:
        per_voxel += 4 * int(num_classes)
    return voxels * per_voxel + int(overhead_bytes)


def _meminfo_available(meminfo_path: Path) -> Optional[int]:
    try:
        for line in meminfo_path.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


_CGROUP_V1_NO_LIMIT = 1 << 60  # cgroup v1 reports "no limit" as a number near 2**63


def _cgroup_available(cgroup_dir: Path, own_cgroups_path: Path = Path("/proc/self/cgroup")) -> Optional[int]:
    """Room left under the memory limits of this process's cgroups, or None when none has a limit: the smallest
    headroom (limit less usage) of the cgroup ``own_cgroups_path`` names for this process, of every cgroup above it
    and of the hierarchy's root under ``cgroup_dir``, in cgroup v2 (``memory.max`` / ``memory.current``) and cgroup
    v1 (``memory/memory.limit_in_bytes`` / ``memory/memory.usage_in_bytes``, older Docker hosts). The root alone is
    a container's own cgroup; a Slurm job's (ConstrainRAMSpace), a systemd scope's or a v1 sub-group's limit is set
    on a cgroup below it, and reading the root only let a process in a 800 MiB group be killed by the kernel with
    no word (the memory audit)."""
    headrooms = [room for room in (_cgroup_headroom(directory, limit_file, usage_file)
                                   for directory, limit_file, usage_file in _own_cgroup_dirs(cgroup_dir,
                                                                                            own_cgroups_path))
                 if room is not None]
    return min(headrooms) if headrooms else None


def _own_cgroup_dirs(cgroup_dir: Path, own_cgroups_path: Path) -> List[Tuple[Path, str, str]]:
    """``(directory, limit file, usage file)`` of each memory cgroup that bounds this process: the one
    ``own_cgroups_path`` (``/proc/self/cgroup``: ``ID:CONTROLLERS:PATH`` lines, ``0::PATH`` for cgroup v2) names and
    those above it, where they exist under ``cgroup_dir`` (not in a container that sees only its own cgroup as the
    root), then the root's v2 and v1 files."""
    found = []  # type: List[Tuple[Path, str, str]]
    try:
        lines = own_cgroups_path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        if fields[0] == "0" and fields[1] == "":
            base, limit_file, usage_file = cgroup_dir, "memory.max", "memory.current"
        elif "memory" in fields[1].split(","):
            base, limit_file, usage_file = cgroup_dir / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes"
        else:
            continue
        parts = [part for part in fields[2].strip().split("/") if part and part not in (".", "..")]
        found += [(base.joinpath(*parts[:depth]), limit_file, usage_file) for depth in range(len(parts), 0, -1)]
    return found + [(cgroup_dir, "memory.max", "memory.current"),
                    (cgroup_dir / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes")]


def _cgroup_headroom(directory: Path, limit_file: str, usage_file: str) -> Optional[int]:
    """Bytes left under the memory limit of the cgroup ``directory``; None without a limit or the files."""
    try:
        limit = (directory / limit_file).read_text().strip()
        if limit == "max" or int(limit) >= _CGROUP_V1_NO_LIMIT:
            return None
        return max(0, int(limit) - int((directory / usage_file).read_text().strip()))
    except (OSError, ValueError):
        return None


def _windows_available() -> Optional[int]:
    """The smaller of ``ullAvailPhys`` (what Task Manager shows as available) and ``ullAvailPageFile`` (what the commit
    limit still allows: with a small or no page file, an allocation failed below the physical memory free) of
    Windows' GlobalMemoryStatusEx, or None."""
    import ctypes

    class MemoryStatusEx(ctypes.Structure):
        _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong),
                    ("ullTotalPhys", ctypes.c_ulonglong), ("ullAvailPhys", ctypes.c_ulonglong),
                    ("ullTotalPageFile", ctypes.c_ulonglong), ("ullAvailPageFile", ctypes.c_ulonglong),
                    ("ullTotalVirtual", ctypes.c_ulonglong), ("ullAvailVirtual", ctypes.c_ulonglong),
                    ("ullAvailExtendedVirtual", ctypes.c_ulonglong)]

    try:
        status = MemoryStatusEx()
        status.dwLength = ctypes.sizeof(MemoryStatusEx)
        if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
            return None
        return int(min(status.ullAvailPhys, status.ullAvailPageFile))
    except (AttributeError, OSError):
        return None


def parse_vm_stat(text: str) -> Optional[int]:
    """Available bytes from macOS ``vm_stat`` output: free + inactive + speculative pages (as ``psutil`` counts
    "available" there) times the page size it states; None when the text is not ``vm_stat``'s."""
    size = re.search(r"page size of (\d+) bytes", text)
    pages = {m.group(1): int(m.group(2)) for m in re.finditer(r"^Pages (\w+):\s+(\d+)\.", text, re.MULTILINE)}
    if size is None or "free" not in pages:
        return None
    return int(size.group(1)) * sum(pages.get(k, 0) for k in ("free", "inactive", "speculative"))


def _macos_available() -> Optional[int]:
    try:
        text = subprocess.run(["vm_stat"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_vm_stat(text)


def _sysconf_available() -> Optional[int]:
    """Free physical memory by ``os.sysconf`` (Unixes without /proc/meminfo), or None."""
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _mapped_bytes(statm_path: Path) -> Optional[int]:
    """The address space this process has mapped (VmSize: ``/proc/self/statm``'s first field, in pages), or None."""
    try:
        return int(statm_path.read_text().split()[0]) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def address_space_room(statm_path: str = "/proc/self/statm") -> Optional[int]:
    """Bytes this process may still map under its address-space limit (``RLIMIT_AS``, ``ulimit -v``, as HPC login
    nodes and Slurm jobs often set it), or None without such a limit or without the ``resource`` module (Windows).

    The soft limit minus the address space already mapped (VmSize; the limit itself where /proc is missing). All of
    that is subtracted, although much of it is no memory in use (CPU torch maps about 0.6 GiB, CUDA reserves tens of
    GiB it never touches, glibc 64 MiB per thread arena): the kernel counts exactly that size against the limit and
    refuses a mapping that would take it past, resident or not, so the limit minus it is what is left."""
    try:
        import resource
    except ImportError:
        return None
    try:
        soft_limit = int(resource.getrlimit(resource.RLIMIT_AS)[0])
    except (AttributeError, ValueError, OSError):
        return None
    if soft_limit == resource.RLIM_INFINITY or soft_limit < 0:
        return None
    return max(0, soft_limit - (_mapped_bytes(Path(statm_path)) or 0))


def release_freed_heap() -> bool:
    """Give the memory the C heap holds freed back to the system (glibc's ``malloc_trim(0)``); True when that ran.
    The network's batches (host tensors and buffers of a few MiB, below glibc's mmap threshold) leave their heap
    pages resident after they are freed: 183 MiB of a 512 x 512 x 1000 CT's run on the CPU, which the later
    stages (whose large arrays are mapped afresh) never reused, so they stayed in the process's peak memory.
    A no-op (False) off Linux and on a C library without ``malloc_trim`` (musl)."""
    if not sys.platform.startswith("linux"):
        return False
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


_MALLOC_TRIM = []  # type: List[Any]


def _malloc_trim() -> Any:
    """glibc's ``malloc_trim`` through ctypes, looked up once (None where the C library has none)."""
    if not _MALLOC_TRIM:
        try:
            import ctypes

            trim = ctypes.CDLL(None).malloc_trim
            trim.argtypes, trim.restype = (ctypes.c_size_t,), ctypes.c_int
        except (OSError, AttributeError):
            trim = None
        _MALLOC_TRIM.append(trim)
    return _MALLOC_TRIM[0]


def available_memory_bytes(meminfo_path: str = "/proc/meminfo", cgroup_dir: str = "/sys/fs/cgroup",
                           statm_path: str = "/proc/self/statm", own_cgroups_path: str = "/proc/self/cgroup"
                           ) -> Optional[int]:
    """Memory available to this process in bytes: on Linux the smallest of MemAvailable, the headroom under the
    memory limits of its cgroups (a container's, a Slurm job's, a systemd scope's: :func:`_cgroup_available`) and
    the room left under the process's address-space limit (:func:`address_space_room`,
    ``ulimit -v``); on Windows GlobalMemoryStatusEx's available physical memory; on macOS free + inactive
    pages (``vm_stat``; macOS does not enforce ``RLIMIT_AS``); on other Unixes ``os.sysconf`` and the address-space
    limit. None when it cannot be determined (the check then passes)."""
    if sys.platform == "win32":
        return _windows_available()
    if sys.platform == "darwin":
        return _macos_available()
    candidates = [v for v in (_meminfo_available(Path(meminfo_path)),
                              _cgroup_available(Path(cgroup_dir), Path(own_cgroups_path))) if v is not None]
    if not candidates:  # no /proc/meminfo
        candidates = [v for v in (_sysconf_available(),) if v is not None]
    room = address_space_room(statm_path)
    if room is not None:
        candidates.append(room)
    return min(candidates) if candidates else None


PLAUSIBLE_IN_PLANE_MM = (100.0, 700.0)
"""Field of view (mm) across a slice within which a CT's header spacing is taken as right for a memory refusal's
advice: abdominal CTs reconstruct 250-500 mm; 20 mm pixels made a 512-pixel slice 10 m wide."""
PLAUSIBLE_Z_MM = 2000.0
"""Scan length (mm) up to which the spacing between slices is taken as right for that advice (a whole body is
under 2 m)."""


def _memory_advice(shape_zyx: Tuple[int, ...], spacing_zyx: Tuple[float, ...], net_zyx: Tuple[int, ...],
                   preprocessing: Any) -> str:
    """What to check when the network grid does not fit in memory: the voxel spacing in the header, or, where the
    slices are much larger than the resampled CT (over four times its pixels, 256 x 256 or more), the preprocessing's ``size_multiple`` /
    ``target_size`` that pad or resize them (a size_multiple of 4096 padded 101 x 122 slices to 4096 x 4096)."""
    target = _setting(preprocessing, "target_spacing_mm", None)
    if target:
        rows, columns = (shape_zyx[1] * spacing_zyx[1] / float(target), shape_zyx[2] * spacing_zyx[2] / float(target))
        area = net_zyx[1] * net_zyx[2]
        if area >= 256 * 256 and area > 4 * max(rows * columns, 1.0):  # not the padding of a small CT to 64 px
            multiple, size = _setting(preprocessing, "size_multiple", None), _setting(preprocessing, "target_size", None)
            settings = ", ".join(f"{name} {value}" for name, value in (("size_multiple", multiple),
                                                                      ("target_size", size)) if value)
            return (f"the network's slices ({net_zyx[1]} x {net_zyx[2]}) are padded or resized far beyond the "
                    f"resampled CT's (about {rows:.0f} x {columns:.0f}) by the preprocessing ({settings}): "
                    f"use a model (or preprocessing config) with a smaller size_multiple or target_size, or a "
                    f"machine with more memory.")
    extent_zyx = [n * float(d) for n, d in zip(shape_zyx, spacing_zyx)]
    if PLAUSIBLE_IN_PLANE_MM[0] <= min(extent_zyx[1:]) and max(extent_zyx[1:]) <= PLAUSIBLE_IN_PLANE_MM[1] \
            and extent_zyx[0] <= PLAUSIBLE_Z_MM:  # the header's spacing gives a body's size: it is not the cause
        return (f"the CT measures {extent_zyx[2]:.0f} x {extent_zyx[1]:.0f} x {extent_zyx[0]:.0f} mm (x, y, z), a "
                f"body's size, so its spacing is not the cause: close other programs, crop the volume to the liver's "
                f"region, or use a machine (or a batch job or container with a memory limit) with more memory.")
    return "check the voxel spacing in the header, crop the volume, or use a machine with more memory."


def _limit_note(available_bytes: int) -> str:
    """A few words for a memory error when a limit on this process, not the machine's free memory, is what leaves
    only ``available_bytes``: the address-space limit (``ulimit -v``) or its cgroup's memory limit (a batch job's
    or a container's). More physical memory would not help there; raising the limit would."""
    room = address_space_room()
    if room is not None and room <= available_bytes:
        return (" under this process's address-space limit (ulimit -v: raise it, e.g. 'ulimit -v unlimited', or ask "
                "the batch job for more memory)")
    if sys.platform.startswith("linux"):
        cgroup_room, free = _cgroup_available(Path("/sys/fs/cgroup")), _meminfo_available(Path("/proc/meminfo"))
        if cgroup_room is not None and cgroup_room <= available_bytes and (free is None or cgroup_room < free):
            return (" under the memory limit of this process's cgroup (a batch job's, e.g. Slurm's --mem, or a "
                    "container's: ask for more memory there)")
    return ""


MODEL_LOAD_ADDRESS_SPACE_BYTES = 1 << 30
"""Address space loading a model takes, at least (measured: importing torch and MONAI and building the bundled
network on the CPU maps 0.76 GiB more, and the threads of the math libraries more; 26 Nov 2026 and the memory
audit). Under an address-space limit (``ulimit -v``) that leaves less, the load is refused before it starts: under
a limit of 0.8-0.95 GiB it hung in OpenBLAS's start (for good, deaf to Ctrl-C), ended in 'pthread_create failed',
or in an ImportError called a corrupt package."""


def check_room_for_model_load(room_bytes: Optional[int] = None, torch_imported: Optional[bool] = None) -> None:
    """ResourceError when this process's address-space limit (``ulimit -v``; :func:`address_space_room`, or
    ``room_bytes``) leaves less than :data:`MODEL_LOAD_ADDRESS_SPACE_BYTES` to load a model in; nothing without a
    limit, nor once torch is imported (``torch_imported``; default: whether it is in ``sys.modules``): most of that
    room is torch's and MONAI's, and a second model of a process that has them (train's whole-volume validation)
    needs a few MiB."""
    if torch_imported is None:
        torch_imported = "torch" in sys.modules
    if torch_imported:
        return
    room = address_space_room() if room_bytes is None else room_bytes
    if room is None or room >= MODEL_LOAD_ADDRESS_SPACE_BYTES:
        return
    raise ResourceError(f"Loading the model needs at least {MODEL_LOAD_ADDRESS_SPACE_BYTES / GIB:.1f} GiB of address "
                        f"space, but this process's limit leaves {room / GIB:.2f} GiB (ulimit -v: raise it, e.g. "
                        f"'ulimit -v unlimited', or ask the batch job for more memory).")


MEMORY_ADVICE = "close other programs, crop the volume, or use a machine with more memory"
"""What :func:`check_memory`'s error tells to do unless the caller says otherwise."""


def check_memory(required_bytes: int, available_bytes: Optional[int] = None, what: str = "this volume",
                 advice: str = MEMORY_ADVICE) -> Optional[int]:
    """Raise ResourceError when ``required_bytes`` exceed the available memory; return the available bytes.

    ``available_bytes=None`` asks the system (:func:`available_memory_bytes`); when that is unknown the
    check passes and None is returned. The error names ``what`` needs the memory, both amounts, ``advice`` (what to
    do) and the limit (address space, cgroup) when that is what leaves so little.
    """
    asked_the_system = available_bytes is None
    if asked_the_system:
        available_bytes = available_memory_bytes()
    if available_bytes is None:
        return None
    if required_bytes > available_bytes:
        limit = _limit_note(available_bytes) if asked_the_system else ""
        digits = 1 if f"{required_bytes / GIB:.1f}" != f"{available_bytes / GIB:.1f}" else 2  # not '1.4 but only 1.4'
        raise ResourceError(f"Processing {what} needs about {required_bytes / GIB:.{digits}f} GiB of memory but only "
                            f"{available_bytes / GIB:.{digits}f} GiB is available{limit}; {advice}.")
    return int(available_bytes)


# ------------------------------------------------------------------------- memory at network resolution
ACTIVATION_FEATURE_MAPS = 64  # float32 feature maps per pixel when a package gives no measured figure
DEFAULT_BATCH_SLICES = 8      # the CPU engine's batch (inference.device.DEFAULT_CPU_BATCH)
# Without gradients torch frees layer outputs as it goes, so the live activations are a part of their sum
# (package.activation_bytes_per_pixel): one 768 x 768 slice through the bundled U-Net grew the peak RSS by
# 178 MB against a 511 MB sum of layer outputs (0.35); half the sum is counted.
LIVE_ACTIVATION_FRACTION = 0.5


def _setting(preprocessing: Any, key: str, default: Any) -> Any:
    """A preprocessing setting from a PreprocessingConfig or its dict form."""
    if isinstance(preprocessing, dict):
        return preprocessing.get(key, default)
    return getattr(preprocessing, key, default)


def network_grid_zyx(shape_zyx: Sequence[int], spacing_zyx: Sequence[float], preprocessing: Any) -> Tuple[int, int, int]:
    """``(z, H, W)`` the network sees for a canonical ``(z, y, x)`` volume with ``spacing_zyx`` mm: in-plane
    resampling to ``target_spacing_mm`` (or ``target_size``), then padding to ``size_multiple``; the body crop
    is ignored, so this is an upper bound (the same rule as ``preprocessing.spatial.plan_spatial``)."""
    nz, ny, nx = (int(s) for s in shape_zyx)
    sy, sx = float(spacing_zyx[1]), float(spacing_zyx[2])
    target_size = _setting(preprocessing, "target_size", None)
    target = _setting(preprocessing, "target_spacing_mm", None)
    if target_size:
        h, w = int(target_size[0]), int(target_size[1])
    elif target:
        h, w = max(1, int(round(ny * sy / float(target)))), max(1, int(round(nx * sx / float(target))))
    else:
        h, w = ny, nx
    m = max(1, int(_setting(preprocessing, "size_multiple", 1) or 1))
    return nz, h + (-h) % m, w + (-w) % m


def _in_channels(preprocessing: Any) -> int:
    channels = _setting(preprocessing, "channels", None) or [None]
    return len(channels) * (2 * int(_setting(preprocessing, "context_slices", 0) or 0) + 1)


def estimate_network_memory_bytes(native_shape_zyx: Sequence[int], net_shape_zyx: Sequence[int],
                                  in_channels: int, num_classes: int = 3, input_itemsize: int = 2,
                                  batch_size: int = DEFAULT_BATCH_SLICES, activation_bytes_per_pixel: float = 0.0) -> int:
    """Peak memory (bytes) to segment a volume: :func:`estimate_memory_bytes` for the native ``(z, y, x)``
    volume (the CT of ``input_itemsize`` once, and :data:`RUN_COPY_MARGIN_BYTES_PER_VOXEL`) plus, at the network's ``(z, H, W)``: the padded float32 volume (resampled into it), and per batch of
    ``batch_size`` slices the input channels (3 float32 copies: channels, 2.5D stacking, contiguous batch), the
    network's live activations (half of ``activation_bytes_per_pixel``, the sum of its layer outputs; at least
    64 float32 feature maps), the softmax
    probabilities (2 copies) and their restored native-grid copy."""
    nz, h, w = (int(s) for s in net_shape_zyx)
    _, ny, nx = (int(s) for s in native_shape_zyx)
    hw = h * w
    net_volume = 4 * nz * hw
    per_pixel_activations = max(LIVE_ACTIVATION_FRACTION * float(activation_bytes_per_pixel),
                                4.0 * ACTIVATION_FEATURE_MAPS)
    per_slice = 3 * 4 * int(in_channels) * hw + per_pixel_activations * hw + 2 * 4 * int(num_classes) * hw \
        + 4 * int(num_classes) * ny * nx
    batch = min(int(batch_size), max(1, nz))
    return (estimate_memory_bytes(native_shape_zyx, input_itemsize=input_itemsize,
                                  copy_itemsize=RUN_COPY_MARGIN_BYTES_PER_VOXEL) + net_volume
            + int(batch * per_slice))


ALIGNED_SLAB_SLICES = 16
"""Target slices :mod:`.inference.axis_aligned` resamples at a time (its ``SLAB_SLICES``; a test keeps them equal)."""


def aligned_grid_phase_bytes(native_shape_zyx: Sequence[int], native_dtype: Any, aligned_shape_zyx: Sequence[int],
                             network_bytes: int, antialiased: bool = False) -> Dict[str, int]:
    """Peak bytes of each phase of segmenting an oblique CT ``native_shape_zyx`` (voxels of ``native_dtype``) on its
    patient-aligned grid ``aligned_shape_zyx`` (:mod:`.inference.axis_aligned`), beyond what the CT's own grid holds
    throughout (:func:`estimate_aligned_grid_memory_bytes`), each with :data:`RUNTIME_OVERHEAD_BYTES`:

    - ``onto``: the resampling onto the aligned grid: its float32 CT and, for a float16 CT or one filtered in-plane
      first (``antialiased``: :func:`~.inference.axis_aligned.in_plane_antialias` names axes), the float32 copy of
      the CT that ``scipy.ndimage`` reads (it has no float16), 4 bytes per CT voxel;
    - ``network``: ``network_bytes``, the :func:`estimate_network_memory_bytes` of the aligned grid (its float32 CT
      as the input, the labels and probability there, the network's arrays);
    - ``labels_back``: per aligned voxel the uint8 labels and probability, a label's bool comparison and two float32
      label indicators (:func:`~.inference.axis_aligned.labels_back`), and its slab work arrays of
      :data:`ALIGNED_SLAB_SLICES` CT slices: four float32 (the best share, the background's, a label's share and the
      one before it) and two bool;
    - ``probability_back``: the aligned uint8 probability and the float32 probability brought back onto the CT's
      grid (:func:`~.inference.axis_aligned.probability_back`, rounded in place). (``labels_back`` filters its
      float32 indicators in place where the CT's pixels are coarser: no more bytes.)

    Bytes measured with ``tracemalloc`` stay within each (Testing/Python/test_axis_aligned.py)."""
    aligned_voxels = int(np.prod([int(s) for s in aligned_shape_zyx], dtype=np.int64))
    native_voxels = int(np.prod([int(s) for s in native_shape_zyx], dtype=np.int64))
    _, ny, nx = (int(s) for s in native_shape_zyx)
    float32_copy = 4 * native_voxels if antialiased or np.dtype(native_dtype) == np.float16 else 0
    return {"onto": float32_copy + 4 * aligned_voxels + RUNTIME_OVERHEAD_BYTES,
            "network": int(network_bytes),
            "labels_back": (aligned_voxels * (2 + 1 + 2 * 4) + (4 * 4 + 2) * ALIGNED_SLAB_SLICES * ny * nx
                            + RUNTIME_OVERHEAD_BYTES),
            "probability_back": aligned_voxels + 4 * native_voxels + RUNTIME_OVERHEAD_BYTES}


def estimate_aligned_grid_memory_bytes(native_shape_zyx: Sequence[int], native_dtype: Any,
                                       aligned_shape_zyx: Sequence[int], network_bytes: int,
                                       antialiased: bool = False) -> int:
    """Peak memory (bytes) to segment an oblique CT ``native_shape_zyx`` (voxels of ``native_dtype``) on its
    patient-aligned grid ``aligned_shape_zyx`` (:mod:`.inference.axis_aligned`), given ``network_bytes`` (the
    :func:`estimate_network_memory_bytes` of the aligned grid) and whether the CT is filtered in-plane before it is
    resampled (``antialiased``). Beside every phase the CT's own grid holds the CT,
    the labels and probability brought back and post-processing's masks (:func:`estimate_memory_bytes`, no second
    overhead); the largest phase (:func:`aligned_grid_phase_bytes`) counts."""
    native = estimate_memory_bytes(native_shape_zyx, input_itemsize=np.dtype(native_dtype).itemsize,
                                   overhead_bytes=0, copy_itemsize=RUN_COPY_MARGIN_BYTES_PER_VOXEL)
    return native + max(aligned_grid_phase_bytes(native_shape_zyx, native_dtype, aligned_shape_zyx,
                                                 network_bytes, antialiased).values())


def check_network_memory(volume: CTVolume, preprocessing: Any, in_channels: Optional[int] = None,
                         num_classes: int = 3, batch_size: Optional[int] = None,
                         activation_bytes_per_pixel: float = 0.0, available_bytes: Optional[int] = None,
                         aligned_shape_zyx: Optional[Sequence[int]] = None,
                         aligned_spacing_xyz: Optional[Sequence[float]] = None, held_bytes: int = 0,
                         pending_bytes: int = 0) -> int:
    """Refuse (ResourceError, with the numbers) a volume whose processing at the network's resolution needs
    more memory than is available, before anything is resampled; returns the estimated bytes.

    A 512 x 512 x 8 CT with 19.9 mm pixels becomes 6816 x 6816 pixels per slice at 1.5 mm: hundreds of GiB
    with the default batch, although the file holds 4 MB.

    ``aligned_shape_zyx`` and ``aligned_spacing_xyz`` (mm): an oblique CT the network runs on that patient-aligned
    grid (:mod:`.inference.axis_aligned`), counted there (:func:`estimate_aligned_grid_memory_bytes`): a thin
    slab turned 30 degrees has 7x its slices there.

    ``held_bytes``: bytes of the counted arrays that exist already when the check runs, so that the available
    memory has them taken off: the network-grid float32 CT of a preparation made ahead (``segment`` resampled it
    while the model loaded, a batch's reader while the previous case ran). They are not asked for again (the
    16 x 542 x 542 grid of a child's CT enlarged 2.1x, 18 MiB, was). The CT itself (``volume``) is never asked for;
    a copy of it made for the network (a resampling's fill made air) is ``volume`` here, the original CT beside it
    and the fill's mask are held before the check, and counted so in the available memory.

    ``pending_bytes``: a copy of ``volume`` not made yet, to be made before the counted arrays, asked for too: the
    copy with a resampling's fill made air is checked so before it is made (``Segmenter._network_form``); made
    first, a CT too large for it ended in a bare MemoryError instead of this refusal with its numbers.
    """
    from .orientation import plan_reorientation

    channels, batch = in_channels or _in_channels(preprocessing), batch_size or DEFAULT_BATCH_SLICES
    if aligned_shape_zyx is None:
        plan = plan_reorientation(volume.geometry, volume.shape_zyx)
        shape = tuple(int(s) for s in plan.canonical_shape)
        spacing_zyx = tuple(float(s) for s in plan.canonical_geometry.spacing[::-1])
        net = network_grid_zyx(shape, spacing_zyx, preprocessing)

        def required_at(slices: int) -> int:
            return estimate_network_memory_bytes(shape, net, channels, num_classes, volume.array.dtype.itemsize,
                                                 slices, activation_bytes_per_pixel)
    else:
        from .inference.axis_aligned import in_plane_antialias

        shape = tuple(int(s) for s in aligned_shape_zyx)
        spacing_zyx = tuple(float(s) for s in (aligned_spacing_xyz or volume.geometry.spacing)[::-1])
        net = network_grid_zyx(shape, spacing_zyx, preprocessing)
        antialiased = bool(in_plane_antialias(volume.geometry, volume.shape_zyx, spacing_zyx[::-1]))

        def required_at(slices: int) -> int:
            on_grid = estimate_network_memory_bytes(shape, net, channels, num_classes, 4, slices,
                                                    activation_bytes_per_pixel)  # the grid's CT is float32
            return estimate_aligned_grid_memory_bytes(volume.shape_zyx, volume.array.dtype, shape, on_grid,
                                                      antialiased)
    required = required_at(batch)
    asked_the_system = available_bytes is None
    if asked_the_system:
        available_bytes = available_memory_bytes()
    # the CT itself is read already
    beside = - int(volume.array.nbytes) - int(held_bytes) + int(pending_bytes)
    still_needed = required + beside
    if available_bytes is not None and still_needed > available_bytes:
        smaller = DEFAULT_BATCH_SLICES if batch > DEFAULT_BATCH_SLICES else 0  # the CPU engine's own batch
        fits_smaller = smaller and required_at(smaller) + beside <= available_bytes
        # a batch of 256 slices asked 10 GiB where 8 ask 1.5, and the advice named cropping and other machines (the
        # memory audit)
        # the engine's own batch, not a fixed 8: on a GPU it takes its batch from the free GPU memory (the review)
        batch_advice = (f"without {option_hint('--batch-size', 'batch_size')} (the engine's own batch: {smaller} "
                        f"slices on the CPU, as many as the GPU's memory takes on a GPU) it fits, needing about "
                        f"{(required_at(smaller) + beside) / GIB:.1f} GiB (the batch is now {batch}); "
                        if fits_smaller else "")
        target = _setting(preprocessing, "target_spacing_mm", None)
        how = (f"{spacing_zyx[2]:g} x {spacing_zyx[1]:g} mm pixels resampled to {float(target):g} mm" if target
               else "after resizing")
        grid = (f"(z, y, x) {shape}" if aligned_shape_zyx is None else
                f"(z, y, x) {tuple(int(s) for s in volume.shape_zyx)} on its patient-aligned grid (z, y, x) {shape}")
        raise ResourceError(f"Processing '{_source(volume)}' {grid} needs about {still_needed / GIB:.1f} "
                            f"GiB of memory at the network's resolution ((z, H, W) {net}: {how}) beside the CT "
                            f"itself, but only {available_bytes / GIB:.1f} GiB is available"
                            f"{_limit_note(available_bytes) if asked_the_system else ''}; "
                            f"{batch_advice}{_memory_advice(shape, spacing_zyx, net, preprocessing)}")
    return int(required)
