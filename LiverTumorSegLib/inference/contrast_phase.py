"""An estimate of the CT's contrast phase from the aorta's and the liver's density, for the report, and a warning
for an arterial phase, in which the bundled model misses or undersizes tumors brighter than the liver.

The bundled model was built for the portal venous phase. The benchmark's ``hyperdense`` row (tumors 15-60 HU
brighter than the liver, as an arterial phase shows hypervascular tumors) gave v3 (the default until 28 Nov 2026) mean
tumor Dice 0.485 over seeds 0-2 against 0.820 for darker ones, and ``segment`` said nothing about the phase; v10, the
default since, was trained with 20 % bright synthetic tumors and gives 0.685 against 0.837 (seeds 0-2, fp32; README,
"Known weaknesses"): better, still below darker tumors.

In (up to :data:`MAX_SLICES`) slices that hold the segmented liver, each read every :data:`SAMPLE_MM`: the spine
is the bone near the body's left-right centre behind its middle (:func:`_spine_back`), the vertebral body the
longest run of wide bone rows along the midline (:func:`_vertebra_front_y`), and the aorta the brightest disc of
radius :data:`CORE_RADIUS_MM` in a window in front of the vertebral body and slightly to the patient's left, clear
of bone, air and gas (:func:`_aorta_in_slice`). On an unenhanced CT that disc is blood or muscle (both about 40-60
HU), which classifies the same. The aorta's value is the median over the slices of each disc's median; the liver's
the median of label 1 in the same slices; :func:`classify_phase` turns them into a class.

Validated on the four shared real CTs only (one of them enhanced: portal venous) and on simulated phases of the
enhanced one (27 Nov 2026; docs/report_format.md, ``contrast_phase``).
"""
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..volume import ImageGeometry
from .sampling import anchored_start, in_patient_order, runs_forward, sampled_slices_holding

BODY_HU = -500.0
"""The body: voxels above this (HU), as the plausibility checks' :data:`~.plausibility.BODY_HU`."""

SAMPLE_MM = 2.0
"""In-plane step (mm) at which each slice is read: every second pixel of a 0.8-1 mm CT, every pixel of a 3 mm one;
a disc of :data:`CORE_RADIUS_MM` then holds about 20 samples of a 1 mm CT."""

MAX_SLICES = 9
"""At most this many slices that hold liver (evenly picked) are read: the aorta runs through all of them, and the
median over 9 outvotes a few slices where the search lands on something else (2 of 9 on the shared 3 mm CTs)."""

SMOOTH_MM = 5.0
"""The spine is found on the slice smoothed by a box this wide (mm): the cancellous bone of the shared 3 mm CTs'
vertebrae, 80-130 HU pixel by pixel with no cortex left above 150 HU by the blur, then lies above
:data:`VERTEBRA_BODY_HU` as a whole."""

VERTEBRA_BODY_HU = 90.0
"""Bone, on the smoothed slice (:data:`SMOOTH_MM`), lies above this (HU): cancellous bone of the shared 3 mm CTs
80-130 HU; unenhanced soft tissue (blood, muscle, liver: 40-70 HU) lies below it."""

VERTEBRA_ABOVE_LIVER_HU = 30.0
"""On an enhanced CT the organs in front of the spine (the liver's caudate lobe: 93 HU on the shared portal venous
CT) lie above :data:`VERTEBRA_BODY_HU`: bone is then taken above the liver's median plus this (HU). Cancellous bone
this leaves out lies inside the vertebra, darker than an enhanced aorta, which is still the brightest disc."""

SPINE_MIDLINE_MM = 30.0
"""The spine is looked for within this (mm) of the body's left-right centre (:func:`_spine_back`), behind the
body's centre; as the plausibility checks' spine (20 mm for single samples), widened for the ribs' heads, which come
in pairs and leave the median on the midline."""

VERTEBRA_HALF_WIDTH_MM = 12.0
"""Rows of the spine are read this far (mm) either side of the midline: inside a vertebral body (35-50 mm wide)
at the liver's levels, narrower than the spinal canal's bony ring."""

VERTEBRA_ROW_FRACTION = 0.6
"""A row with at least this fraction of its pixels above the bone threshold is wide bone: the vertebral body's
rows on the shared CTs 0.6-1.0, the canal's and the spinous process's 0.0-0.4 (:func:`_vertebra_front_y`)."""

SPINE_DEPTH_MAX_MM = 110.0
"""The vertebral body's front lies at most this far (mm) in front of the spine's most posterior bone (57-90 mm on
the shared CTs' liver slices; about 60-90 mm in adults at these levels)."""

WINDOW_FRONT_MM = (6.0, 40.0)
"""The aorta's core centre is searched this far (mm, from .. to) in front of the vertebral body's front edge: an
abdominal aorta of 15-30 mm lies on the vertebra, its centre 7-15 mm in front of it (a core of
:data:`CORE_RADIUS_MM` centred 6 mm ahead stays clear of the vertebra's front); 40 mm leaves room for a tortuous
one."""

WINDOW_LEFT_MM = 40.0
"""... and at most this far (mm) to the patient's left of the midline (the aorta lies slightly left of it; at the
liver's dome, left anterolateral of the vertebra)."""

WINDOW_RIGHT_MM = 10.0
"""... and at most this far (mm) to the patient's right of it: the inferior vena cava, 20-40 mm to the right, is
mostly left out."""

CORE_RADIUS_MM = 5.0
"""Radius (mm) of the disc whose median is the aorta's value in a slice: the core of an aorta of 15-30 mm, clear of
its wall and of partial volume with the fat around it."""

MAX_SOFT_HU = 600.0
"""A disc with a voxel above this (HU) is not the aorta's core: cortical bone lies above it; contrast in the aorta,
even arterial, stays mostly below it (peak aortic attenuation of a late arterial phase about 290-360 HU)."""

GAS_HU = -300.0
"""Gas (in the bowel, stomach or oesophagus) lies below this (HU); the aorta holds none."""

GAS_CLEARANCE_MM = 10.0
"""A disc centre this close (mm) to gas is not the aorta's core: oral contrast lying under gas in the oesophagus of
the shared 3-slice GE CT (154 HU, 5 mm from the gas) was the brightest disc in front of its spine at 8 mm (that
CT's estimate: 91 HU, not unenhanced), while its unenhanced aorta lay 34 mm from the gas. The centre of an aorta of
20 mm lies 10 mm from anything outside it."""

UNENHANCED_AORTA_MAX_HU = 70.0
"""An aorta below this (HU) is unenhanced: unenhanced blood in the descending aorta is about 29-45 HU (39-50 HU
without anaemia; interquartile ranges of 325 patients, Research Square rs-1420003), while any contrast phase puts
the aorta 100 HU or more above that (117-125 HU even at 45-55 s, when the liver peaks: "MDCT of the Liver and
Hypervascular Hepatocellular Carcinomas: Optimizing Scan Delays for Bolus-Tracking Techniques", AJR). Measured
(27 Nov 2026): the three unenhanced shared CTs 54, 54 and 63 HU (the brightest disc picks the upper tail of the
noise), the portal venous one 158 HU."""

ARTERIAL_AORTA_MIN_HU = 200.0
"""An arterial phase needs an aorta of at least this (HU): a late arterial phase peaks at 290-360 HU (Radiopaedia,
"Late arterial phase"; 300-336 HU of enhancement at 10-15 s after bolus tracking, the AJR study above), a portal
venous one about 150-220 HU (the shared portal venous CT: 158 HU)."""

ARTERIAL_LIVER_TO_AORTA_MAX = 0.4
"""... and a liver at most this fraction of the aorta's value: in a late arterial phase the liver has enhanced
only 15-30 HU (the AJR study; Radiopaedia: 20-30 HU) over its unenhanced 50-70 HU (65-100 HU next to a 290-360 HU
aorta: 0.18-0.34); in a portal venous phase it has enhanced by about 60 HU (0.6-0.8 of the aorta; the shared
portal venous CT: 93 / 158 = 0.59, and 0.42 with its aorta raised to 220 HU). A fatty liver enhanced to 90 HU next
to a 200 HU aorta (0.45) is not called arterial; a late arterial phase with a strongly enhanced liver above 0.4 of
the aorta is missed."""

ARTERIAL_UNAMBIGUOUS_AORTA_MIN_HU = 250.0
LIVER_MAY_BE_FATTY_BELOW_HU = 60.0
"""Under :data:`ARTERIAL_UNAMBIGUOUS_AORTA_MIN_HU` (an aorta a portal venous phase also gives: 150-220 HU) a liver
below :data:`LIVER_MAY_BE_FATTY_BELOW_HU` does not make the phase arterial: a fatty liver (unenhanced 0-40 HU) stays
dark in every phase, and a portal venous CT whose aorta read 212 HU and whose fatty liver 53 HU (0.25 of it) was
called arterial, with the warning to look for bright lesions by eye (the HU rules audit). From 250 HU on (a late
arterial aorta: 290-360 HU) the liver's ratio decides as before; an arterial phase with a weak bolus (aorta under
250 HU) in a fatty liver is then missed."""


def _liver_slices(labels_zyx: np.ndarray, head_foot: int, geometry: ImageGeometry,
                  liver_box: Optional[Tuple[slice, ...]] = None) -> np.ndarray:
    """Indices along ``head_foot`` of the slices that hold liver (label 1 or 2), read every third pixel (the same
    pixels of the patient however the CT is stored, :mod:`.sampling`); only inside ``liver_box`` (``(z, y, x)``
    slices holding all the liver) when given."""
    steps = [3, 3, 3]
    steps[head_foot] = 1
    return sampled_slices_holding(labels_zyx, geometry, steps, head_foot, liver_box)


def _plane(array_zyx: np.ndarray, head_foot: int, index: int, step: Tuple[int, int],
           start: Tuple[int, int] = (0, 0)) -> np.ndarray:
    """Slice ``index`` along ``head_foot`` of ``array_zyx``, read every ``step`` along its two remaining axes from
    ``start``."""
    cut = [slice(start[0], None, step[0]), slice(start[1], None, step[1])]
    cut.insert(head_foot, index)  # type: ignore
    return np.asarray(array_zyx[tuple(cut)])


def _plane_ras(shape: Tuple[int, int], head_foot: int, index: int, step: Tuple[int, int],
               geometry: ImageGeometry, start: Tuple[int, int] = (0, 0)) -> Tuple[np.ndarray, np.ndarray]:
    """RAS x (mm, + the patient's right) and y (mm, + anterior) of every pixel of a :func:`_plane` of ``shape``
    (read every ``step`` from ``start``)."""
    rows, cols = np.meshgrid(start[0] + np.arange(shape[0]) * step[0], start[1] + np.arange(shape[1]) * step[1],
                             indexing="ij")
    zyx = [rows, cols]
    zyx.insert(head_foot, np.full(shape, index))
    ijk = np.stack([zyx[2].ravel(), zyx[1].ravel(), zyx[0].ravel()]).astype(np.float64)
    ras = geometry.ijk_to_ras()[:2, :3] @ ijk + geometry.ijk_to_ras()[:2, 3:]
    return ras[0].reshape(shape), ras[1].reshape(shape)


def _spine_back(smooth: np.ndarray, body: np.ndarray, x_mm: np.ndarray, y_mm: np.ndarray, body_hu: float,
                midline_hint_x: Optional[float] = None) -> Optional[Tuple[float, float]]:
    """RAS ``(x, y)`` (mm) of the spine's midline and its most posterior bone. Bone is what lies above ``body_hu``
    in the smoothed slice ``smooth``, inside the body (``body``, the table left out), behind the body's centre
    and within :data:`SPINE_MIDLINE_MM` of its left-right centre (or of ``midline_hint_x``, the scan's spine midline
    when known: :func:`~.plausibility.spine_midline_x_mm`; a field of view cut to the liver moved the body's centre
    away from the spine, and a disc on other tissue read as a 246 HU 'aorta'): the midline is the median
    left-right position of that bone (ribs and transverse processes come in pairs), its back the most posterior of
    it within :data:`VERTEBRA_HALF_WIDTH_MM` of the midline. None without such bone."""
    body_x, body_y = float(x_mm[body].mean()), float(y_mm[body].mean())
    if midline_hint_x is not None:
        body_x = float(midline_hint_x)
    bone = body & (smooth > body_hu) & (np.abs(x_mm - body_x) < SPINE_MIDLINE_MM) & (y_mm < body_y)
    if not bone.any():
        return None
    midline_x = float(np.median(x_mm[bone]))
    central = bone & (np.abs(x_mm - midline_x) < VERTEBRA_HALF_WIDTH_MM)
    if not central.any():
        return None
    return midline_x, float(y_mm[central].min())


def _vertebra_front_y(smooth: np.ndarray, x_mm: np.ndarray, y_mm: np.ndarray, midline_x: float, back_y: float,
                      body_hu: float, row_mm: float) -> float:
    """RAS y (mm) of the vertebral body's front edge in the smoothed slice ``smooth`` (HU; each pixel's RAS
    ``x_mm`` and ``y_mm``). The slice is cut into rows ``row_mm`` deep from the spine's
    back (``back_y``) forward, each :data:`VERTEBRA_HALF_WIDTH_MM` either side of ``midline_x``; a row is wide bone
    when at least :data:`VERTEBRA_ROW_FRACTION` of its pixels lie above ``body_hu`` (:func:`_vertebra_body_hu`).
    The vertebral body is the longest run of wide rows (one narrow row inside allowed) within
    :data:`SPINE_DEPTH_MAX_MM`: the spinous process is narrow, the canal dark in the middle, an aorta beside the
    midline fills too little of a row."""
    near = (np.abs(x_mm - midline_x) < VERTEBRA_HALF_WIDTH_MM) & (y_mm >= back_y) & \
        (y_mm < back_y + SPINE_DEPTH_MAX_MM)
    rows = ((y_mm[near] - back_y) / row_mm).astype(int)
    total = np.bincount(rows)
    bright = np.bincount(rows, weights=(smooth[near] > body_hu).astype(np.float64), minlength=total.size)
    wide = (total > 0) & (bright >= VERTEBRA_ROW_FRACTION * np.maximum(total, 1))
    wide[1:-1] |= wide[:-2] & wide[2:]  # one narrow row between wide ones (a dip of cancellous bone)
    best_end, best_length, start = -1, 0, None
    for index, is_wide in enumerate(list(wide) + [False]):
        if is_wide and start is None:
            start = index
        elif not is_wide and start is not None:
            if index - start > best_length:
                best_end, best_length = index, index - start
            start = None
    return back_y + best_end * row_mm if best_length else back_y


def _vertebra_body_hu(liver_hu: Optional[float]) -> float:
    """The HU above which a pixel of the smoothed slice is taken for the spine's bone (:func:`_spine_back`,
    :func:`_vertebra_front_y`): :data:`VERTEBRA_BODY_HU`, or :data:`VERTEBRA_ABOVE_LIVER_HU` above the liver's median
    (HU) where that is higher."""
    if liver_hu is None:
        return VERTEBRA_BODY_HU
    return max(VERTEBRA_BODY_HU, liver_hu + VERTEBRA_ABOVE_LIVER_HU)


def _body(hu: np.ndarray) -> np.ndarray:
    """The largest component above :data:`BODY_HU` of one slice: the body without the table under it."""
    from scipy import ndimage

    components, count = ndimage.label(hu > BODY_HU)
    if count == 0:
        return np.zeros(hu.shape, bool)
    return components == int(np.argmax(np.bincount(components.ravel())[1:])) + 1


def _smoothing_origin(size: List[int], forward: Tuple[bool, bool]) -> List[int]:
    """``uniform_filter``'s origin along each of a slice's two axes for a box ``size`` pixels wide: 0 for an odd
    width (centred); for an even width the box reaches one pixel further toward the patient's L or P than toward R
    or A (origin -1 on an axis that runs toward L or P, 0 on one that runs against it), in any storage."""
    return [-1 if width % 2 == 0 and ahead else 0 for width, ahead in zip(size, forward)]


def _aorta_in_slice(hu: np.ndarray, x_mm: np.ndarray, y_mm: np.ndarray, pixel_mm: Tuple[float, float],
                    liver_hu: Optional[float] = None, forward: Tuple[bool, bool] = (False, False),
                    midline_hint_x: Optional[float] = None) -> Optional[Tuple[float, int, int]]:
    """``(median HU, row, column)`` of the aorta's core (:data:`CORE_RADIUS_MM`) in one sampled slice (``hu``, with
    each pixel's RAS ``x_mm`` and ``y_mm``; ``pixel_mm`` the sampled pixel size along its two axes), or None without
    a spine or a candidate disc. ``liver_hu``: the liver's median (HU), which sets the bone threshold
    (:func:`_vertebra_body_hu`). ``forward``: whether each of the slice's two axes runs toward the patient's L or P
    (:func:`~.sampling.runs_forward`), so that a smoothing box of an even width (2 pixels: a 3 mm CT's, or a 0.7 or
    1 mm CT's read every third or second pixel) covers the same pixels of the patient however the CT is stored
    (:func:`_smoothing_origin`). ``midline_hint_x``: as :func:`_spine_back`'s."""
    from scipy import ndimage

    body = _body(hu)
    if not body.any():
        return None
    body_hu = _vertebra_body_hu(liver_hu)
    size = [max(1, int(round(SMOOTH_MM / p))) for p in pixel_mm]
    smooth = ndimage.uniform_filter(hu, size=size, mode="nearest", origin=_smoothing_origin(size, forward))
    back = _spine_back(smooth, body, x_mm, y_mm, body_hu, midline_hint_x)
    if back is None:
        return None
    midline_x, back_y = back
    front_y = _vertebra_front_y(smooth, x_mm, y_mm, midline_x, back_y, body_hu, max(pixel_mm))
    ahead, left = y_mm - front_y, midline_x - x_mm  # RAS: + anterior; + the patient's left
    window = ((ahead >= WINDOW_FRONT_MM[0]) & (ahead <= WINDOW_FRONT_MM[1]) & (left <= WINDOW_LEFT_MM)
              & (left >= -WINDOW_RIGHT_MM))
    if not window.any():
        return None
    radius = [max(1, int(round(CORE_RADIUS_MM / p))) for p in pixel_mm]
    rows, cols = np.nonzero(window)  # only the window's box (and a disc's radius around it) is filtered
    box = (slice(max(0, rows.min() - radius[0]), rows.max() + radius[0] + 1),
           slice(max(0, cols.min() - radius[1]), cols.max() + radius[1] + 1))
    part = hu[box]
    ry, rx = np.ogrid[-radius[0]:radius[0] + 1, -radius[1]:radius[1] + 1]
    disc = (((ry * pixel_mm[0]) ** 2 + (rx * pixel_mm[1]) ** 2) <= CORE_RADIUS_MM ** 2).astype(np.float32)
    invalid = ((part > MAX_SOFT_HU) | ~body[box]).astype(np.float32)  # bone or plaque, air: not the aorta's core
    blocked = ndimage.convolve(invalid, disc, mode="constant", cval=1.0) > 0
    clear = [max(1, int(round(GAS_CLEARANCE_MM / p))) for p in pixel_mm]
    gy, gx = np.ogrid[-clear[0]:clear[0] + 1, -clear[1]:clear[1] + 1]
    gas_disc = (((gy * pixel_mm[0]) ** 2 + (gx * pixel_mm[1]) ** 2) <= GAS_CLEARANCE_MM ** 2).astype(np.float32)
    blocked |= ndimage.convolve((part < GAS_HU).astype(np.float32), gas_disc, mode="constant", cval=0.0) > 0
    mean = ndimage.convolve(part, disc / disc.sum(), mode="nearest")
    score = np.where(window[box] & ~blocked, mean, -np.inf)
    if not np.isfinite(score).any():
        return None
    row, col = np.unravel_index(int(np.argmax(score)), score.shape)
    # a disc off the box's edge is blocked (cval 1 above), so the chosen one's pixels lie inside it; its square
    # may not (pixels over 5 mm: the disc is its centre alone, and the square's slice came out short: IndexError)
    rows_in, cols_in = np.nonzero(disc)
    core = part[row + rows_in - radius[0], col + cols_in - radius[1]]
    return float(np.median(core)), int(row + box[0].start), int(col + box[1].start)


def classify_phase(aorta_hu: Optional[float], liver_hu: Optional[float]) -> str:
    """``"unenhanced"``, ``"arterial"``, ``"portal_venous_or_later"`` or ``"unknown"`` (no aorta or no liver value)
    from the aorta's and the liver's median HU, by :data:`UNENHANCED_AORTA_MAX_HU`, :data:`ARTERIAL_AORTA_MIN_HU`,
    :data:`ARTERIAL_LIVER_TO_AORTA_MAX` and, for a liver that may be fatty, :data:`ARTERIAL_UNAMBIGUOUS_AORTA_MIN_HU`."""
    if aorta_hu is None or liver_hu is None:
        return "unknown"
    if aorta_hu < UNENHANCED_AORTA_MAX_HU:
        return "unenhanced"
    if aorta_hu >= ARTERIAL_AORTA_MIN_HU and liver_hu <= ARTERIAL_LIVER_TO_AORTA_MAX * aorta_hu:
        if aorta_hu >= ARTERIAL_UNAMBIGUOUS_AORTA_MIN_HU or liver_hu >= LIVER_MAY_BE_FATTY_BELOW_HU:
            return "arterial"
    return "portal_venous_or_later"


def unknown_phase(reason: str, liver_hu: Optional[float] = None) -> Dict[str, Any]:
    """The report's ``contrast_phase`` when no estimate could be made (``reason``: why), with the liver's median
    (HU) where it was read."""
    return {"estimate": "unknown", "aorta_hu": None, "liver_hu": liver_hu, "aorta_slices": 0, "slices_read": 0,
            "reason": reason}


MIN_AORTA_SLICES = 2
"""Slices the aorta must be found in before a phase is estimated (one, on a CT of one slice read): found in 1 of 9
slices of a CT whose front and back were swapped, a disc on the bowel read as a 359 HU 'aorta' (the warnings
audit)."""


def estimate_contrast_phase(hu_zyx: np.ndarray, labels_zyx: np.ndarray, geometry: ImageGeometry,
                            midline_x_mm: Optional[float] = None,
                            liver_box: Optional[Tuple[slice, ...]] = None) -> Dict[str, Any]:
    """The report's ``contrast_phase``: ``{"estimate", "aorta_hu", "liver_hu", "aorta_slices", "slices_read",
    "reason"}``: the class (:func:`classify_phase`), the aorta's median core value (HU, over the slices where it was
    found; None where it was not), the liver's median (label 1, HU, same slices), in how many of the slices read the
    aorta was found, and ``reason`` (None, or why the estimate is ``"unknown"``). ``hu_zyx`` (HU) and
    ``labels_zyx`` are ``(z, y, x)`` on ``geometry``; ``midline_x_mm``: the spine's midline (RAS x, mm) when known
    (:func:`_spine_back`); ``liver_box``: slices holding all the liver (its bounding box), when the caller has it.
    Never raises: any failure gives ``"unknown"``."""
    try:
        return _estimate(hu_zyx, labels_zyx, geometry, midline_x_mm, liver_box)
    except Exception as error:  # an estimate for the report; it must never fail the run
        return unknown_phase(f"the estimate failed ({type(error).__name__}: {error})")


def _estimate(hu_zyx: np.ndarray, labels_zyx: np.ndarray, geometry: ImageGeometry,
              midline_x_mm: Optional[float] = None, liver_box: Optional[Tuple[slice, ...]] = None) -> Dict[str, Any]:
    """:func:`estimate_contrast_phase` without its guard."""
    from ..metrics.recist import axial_axis_zyx

    head_foot = axial_axis_zyx(geometry)
    slices = in_patient_order(_liver_slices(labels_zyx, head_foot, geometry, liver_box), geometry, head_foot)
    if slices.size == 0:
        return unknown_phase("no liver was segmented")
    picked = np.unique(slices[np.linspace(0, slices.size - 1, min(MAX_SLICES, slices.size)).round().astype(int)])
    in_plane = [a for a in range(3) if a != head_foot]
    spacing_zyx = [float(s) for s in geometry.spacing[::-1]]
    step = tuple(max(1, int(round(SAMPLE_MM / spacing_zyx[a]))) for a in in_plane)
    pixel_mm = tuple(spacing_zyx[a] * s for a, s in zip(in_plane, step))
    # the same pixels of the patient however the CT is stored (a flipped storage read the aorta 153-164 HU)
    start = tuple(anchored_start(geometry, np.shape(hu_zyx), a, s) for a, s in zip(in_plane, step))
    forward = tuple(runs_forward(geometry, a) for a in in_plane)
    planes = [_plane(hu_zyx, head_foot, int(index), step, start).astype(np.float32) for index in picked]  # type: ignore
    liver_values = np.concatenate([hu[_plane(labels_zyx, head_foot, int(index), step, start) == 1]  # type: ignore
                                   for hu, index in zip(planes, picked)])
    liver_hu = round(float(np.median(liver_values)), 1) if liver_values.size else None
    aorta = []  # type: List[float]
    for hu, index in zip(planes, picked):
        x_mm, y_mm = _plane_ras(hu.shape, head_foot, int(index), step, geometry, start)  # type: ignore
        found = _aorta_in_slice(hu, x_mm, y_mm, pixel_mm, liver_hu, forward, midline_x_mm)  # type: ignore
        if found is not None:
            aorta.append(found[0])
    if len(aorta) < min(MIN_AORTA_SLICES, int(picked.size)):
        result = unknown_phase("no aorta was found in front of the spine" if not aorta else
                               f"the aorta was found in {len(aorta)} of {picked.size} slices read, too few to judge",
                               liver_hu)
        result["slices_read"] = int(picked.size)
        result["aorta_slices"] = len(aorta)
        return result
    aorta_hu = round(float(np.median(aorta)), 1)
    estimate = classify_phase(aorta_hu, liver_hu)
    return {"estimate": estimate, "aorta_hu": aorta_hu, "liver_hu": liver_hu, "aorta_slices": len(aorta),
            "slices_read": int(picked.size), "reason": "no liver (label 1) value" if liver_hu is None else None}


def arterial_phase_warnings(phase: Dict[str, Any], bundled_default: bool = False, model: str = "") -> List[str]:
    """A warning when the report's ``contrast_phase`` (:func:`estimate_contrast_phase`) is ``"arterial"``: what was
    measured, and that a model built for the portal venous phase misses or undersizes tumors brighter than the liver
    in this phase; none for any other estimate. ``bundled_default``: the package that ran is the bundled default
    (:func:`~LiverTumorSegLib.package.is_bundled_default`), built for the portal venous phase; for any other package
    (``model``: its name) which phase it was built for is not known, and the warning says so rather than claim it."""
    if phase.get("estimate") != "arterial":
        return []
    measured = (f"Arterial contrast phase likely: the aorta measures about {phase['aorta_hu']:.0f} HU and the liver "
                f"{phase['liver_hu']:.0f} HU (an aorta of {ARTERIAL_AORTA_MIN_HU:.0f} HU or more with a liver at most "
                f"{ARTERIAL_LIVER_TO_AORTA_MAX:.1f} of it; contrast_phase in the report). ")
    tumors = ("tumors brighter than the liver, as hypervascular tumors (HCC; neuroendocrine, renal-cell or melanoma "
              "metastases) appear in this phase")
    if bundled_default:
        return [f"{measured}The bundled default model was built for the portal venous phase and misses or undersizes "
                f"{tumors} (the benchmark's hyperdense row: mean tumor Dice 0.685 against 0.837 for darker tumors): "
                f"look for bright lesions by eye."]
    which = f"the model '{model}'" if model else "this model"
    return [f"{measured}Which contrast phase {which} was built for is not known; the bundled default model, built for "
            f"the portal venous phase, misses or undersizes {tumors} (its hyperdense benchmark row: mean tumor Dice "
            f"0.685 against 0.837 for darker tumors), and a model trained like it may too: look for bright lesions "
            f"by eye."]
