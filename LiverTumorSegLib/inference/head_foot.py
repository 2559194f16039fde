"""Head-foot order of a CT read from its anatomy: the lungs lie above the liver.

A header with head and foot swapped (a NIfTI or NRRD whose slice direction was written the wrong way round) leaves
every axial slice as it was, so the network labels the same voxels; but the report's S positions and the
lesions' head-foot order are mirrored, and the rule that removes "liver" above the lung bases
(:func:`~.postprocess.remove_above_lungs`) then finds the lungs *under* the liver and removes most of it. Where
the scan holds lung (lung bases above the dome, as an abdominal CT usually does) the order can be read: in
every patient the lungs reach higher than the liver's dome and their volume lies above the liver's centre. Both
reversed by a margin is what a swapped header shows. A scan without lung (cut at or below the dome) is not judged.

All arrays are canonical ``(z, y, x)`` with z superior (as the header says), on one grid; distances in mm.
"""
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

LUNGS_BELOW_MARGIN_MM = 20.0
"""The lungs' highest slice and their centre must both lie at least this far (mm) below the liver's highest slice
and centre for the order to be called reversed. In the true order the lungs' top lies at or above the liver's top
(the dome lies under the lung; a scan cut through both has them on its first slice) and their centre above the
liver's (the lung bases of an abdominal CT: about 60 mm above); with head and foot swapped the lungs' lowest part
(the costophrenic recesses, above the liver's tip) becomes their top, about 40-80 mm under the liver's 'top'."""

CENTRES_BELOW_MARGIN_MM = 40.0
"""... or their centre alone at least this far (mm) below the liver's: a scan of the chest that ends in the upper
liver has the lungs' lowest part beside the liver's cut end (tops 12 mm apart when flipped, centres 81 mm), and
bowel gas joined to a lung base through partial volume can reach below the liver's tip; the centres, medians,
move little with either. In the true order a lung centre this far below the liver's would need gas to make up
most of the 'lung'."""

MIN_ORGAN_ML = 50.0
"""A liver (label >= 1) smaller than this (mL) is not judged: too little to place."""


TOP_QUANTILE = 0.9
"""A mask's 'top' is the slice under which this share of its voxels lies: false 'liver' voxels far up (before
post-processing keeps one part, which comes after this check), and bowel gas joined to a lung base (4.5 % of a
'lung' on a synthetic chest-abdomen CT, which on a flipped header became its top), do not move it; its centre is
the median slice."""


def _z_quantile(mask_zyx: np.ndarray, share: float) -> int:
    """The lowest slice index at or under which ``share`` of the voxels of ``mask_zyx`` (not empty) lie."""
    cumulative = np.cumsum(mask_zyx.sum(axis=(1, 2), dtype=np.int64))
    return int(np.searchsorted(cumulative, share * float(cumulative[-1]), side="left"))


NO_LUNG_WHY = "no lung in the scan"
NO_LUNG_FOUND_SIDES_CUT_WHY = ("no lung found, but the body reaches the image's left or right edge, where lung cannot "
                               "be told from the air outside the body (a field of view narrower than the chest)")
"""``why`` of a scan without lung found: with the body on the image's left or right edge (a field of view narrower
than the chest cuts the lungs, whose air then joins the image's edge as the air outside the body does) lungs may be
there: a 3-slice CT through the lung bases cropped to 340 mm read "no lung in the scan"."""


def head_foot_order(lungs_zyx: Optional[np.ndarray], organ_zyx: np.ndarray, spacing_zyx: Sequence[float],
                    organ_ml: float, body_on_image_sides: bool = False) -> Dict[str, Any]:
    """Judge the head-foot order from the lungs and the organ (label >= 1), canonical ``(z, y, x)`` bool arrays on
    one grid (z superior; the lungs' grid may be coarser in-plane than the labels', then give the organ on it too).
    ``spacing_zyx``: the z spacing (mm) is what is read. ``organ_ml``: the organ's volume on the full grid.

    Returns ``{"judged": bool, ...}``; judged: ``lungs_below_liver`` (bool), ``lung_top_below_liver_top_mm`` and
    ``lung_centre_below_liver_centre_mm`` (positive where the lungs lie lower; tops: :data:`TOP_QUANTILE`, centres:
    median slices); not judged: ``why``. ``body_on_image_sides``: the body reaches the image's left or right edge
    (:data:`NO_LUNG_FOUND_SIDES_CUT_WHY` then says why no lung may have been found)."""
    if lungs_zyx is None or not lungs_zyx.any():
        return {"judged": False, "why": NO_LUNG_FOUND_SIDES_CUT_WHY if body_on_image_sides else NO_LUNG_WHY}
    if organ_ml < MIN_ORGAN_ML or not organ_zyx.any():
        return {"judged": False, "why": f"liver under {MIN_ORGAN_ML:.0f} mL"}
    dz = float(spacing_zyx[0])
    top_below = (_z_quantile(organ_zyx, TOP_QUANTILE) - _z_quantile(lungs_zyx, TOP_QUANTILE)) * dz
    centre_below = (_z_quantile(organ_zyx, 0.5) - _z_quantile(lungs_zyx, 0.5)) * dz
    below = (top_below >= LUNGS_BELOW_MARGIN_MM and centre_below >= LUNGS_BELOW_MARGIN_MM) or \
        centre_below >= CENTRES_BELOW_MARGIN_MM
    return {"judged": True, "lungs_below_liver": bool(below), "lung_top_below_liver_top_mm": round(top_below, 1),
            "lung_centre_below_liver_centre_mm": round(centre_below, 1)}


def head_foot_warnings(order: Optional[Dict[str, Any]]) -> List[str]:
    """A warning when :func:`head_foot_order` found the lungs below the liver (``order`` may be None: not read)."""
    if not order or not order.get("lungs_below_liver"):
        return []
    return [f"Implausible orientation: the lungs lie below the liver along the file's head-foot axis (their highest "
            f"part {order['lung_top_below_liver_top_mm']:.0f} mm under the liver's, their centre "
            f"{order['lung_centre_below_liver_centre_mm']:.0f} mm under its centre), where they lie above it in every "
            f"patient. The file's header has head and foot swapped (its slice direction written the wrong way "
            f"round): the labels lie on the CT's own voxels, but every S position in the report is mirrored and the "
            f"lesions' head-foot order reversed, and the rule that removes liver above the lung bases was not "
            f"applied. Check the orientation in a viewer (the head should be up in a coronal view) and correct the "
            f"header before trusting the report."]
