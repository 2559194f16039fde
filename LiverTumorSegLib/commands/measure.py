"""``livertumorseg measure``: the lesion report (volumes, RECIST long and short axes, targets) of any label map.

    livertumorseg measure LABELS [--ct CT] [--probabilities PROB] -o report.json|report.csv

LABELS: a label map (0 background, 1 liver, 2 tumor; NIfTI, NRRD, MetaImage, or a DICOM SEG ``.dcm`` as
``segment`` writes), e.g. a segmentation a reader corrected in Slicer. ``--ct`` adds each lesion's mean and median
HU and, on a CT in HU, whether it is of water density (a simple cyst is possible; such a lesion is chosen as a RECIST
target only after the others, so the targets can differ from a run without --ct), and checks that the label map lies
on the CT's grid; ``--probabilities`` adds the mean tumor probability. A liver on the scan's first or last slice,
or on the image's side, is warned of as segment warns of it: its volume is that of the part scanned.
"""
import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from .. import __version__
from ..argtypes import number
from ..errors import InputError
from ..io.formats import READ_SUFFIXES
from ..metrics.recist import (RECIST_MIN_LONG_AXIS_MM, RECIST_NOTE, SLICE_THICKNESS_SOURCE_WORDS,
                              axial_slice_thickness_text, check_given_slice_thickness, dicom_slice_thickness_of, given_slice_thickness_warning)

MEAN_HU_NOT_HU = ("measured anyway: the lesions' mean_hu and median_hu in this report are this file's values, not "
                  "Hounsfield units, and water density is not judged (water_density null: the RECIST targets are "
                  "chosen by their long axes alone); volumes and diameters do not depend on them")
"""How measure's warning ends for a --ct that does not look like HU: measure reads it for the lesions' mean and median
HU and, in HU only, their water density."""


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("measure", help="lesion report (volumes, RECIST axes) of an existing label map",
                              description=__doc__)
    p.add_argument("labels", help=f"label map (0 background, 1 liver, 2 tumor): {', '.join(READ_SUFFIXES)}, "
                                  ".seg.nrrd or DICOM SEG .dcm")
    p.add_argument("-o", "--output", required=True, help="report to write: .json or .csv")
    p.add_argument("--ct", default=None,
                   help="the CT the label map belongs to (adds mean and median HU per lesion and, on a CT in HU, "
                        "water density, which orders the RECIST targets)")
    p.add_argument("--series", default=None,
                   help="with a DICOM folder as --ct: the series (UID, unique UID prefix, description or number)")
    p.add_argument("--probabilities", default=None, metavar="PROB",
                   help="tumor probability map on the label grid (floats 0..1 or uint8 255 = 1.0)")
    p.add_argument("--slice-thickness-mm", type=number(float, "mm"), default=None, metavar="MM",
                   help="the reconstruction thickness of the slices in mm, for RECIST's measurable minimum (twice it "
                        "above 5 mm); wins over the DICOM SliceThickness of --ct (report: slice_thickness_source "
                        "'given'); default: that DICOM value, else that of a DICOM SEG label map, else the slice "
                        "spacing")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report")
    p.add_argument("--no-progress", "--no-progress-bar", action="store_true",
                   help="accepted as by the other commands (--no-progress-bar is the same); this one prints no progress")
    return p


def _without_resampling_fill(ct: Any, warnings: List[str]) -> Any:
    """``ct`` (in HU) with a resampling's fill outside its original field of view
    (:func:`~..inference.resampling_fill.find_resampling_fill`) set to the scanner's padding on a copy, so a lesion
    beside it is cut by the scan's edge (``touches_scan_edge``), and the warning added to ``warnings``; else ``ct``."""
    from ..inference.resampling_fill import READ_AS_PADDING_HU, fill_replaced, resampling_fill_warning

    ct, fill = fill_replaced(ct, READ_AS_PADDING_HU)
    if fill is not None:
        warnings.append(resampling_fill_warning(fill.record(), for_network=False))
    return ct


def _minimum_reason(recist: Dict[str, Any]) -> str:
    """Why RECIST's measurable minimum (report ``recist``) is above 10 mm: ', twice the 7 mm slice thickness (DICOM
    SliceThickness)' or '... (slice spacing)', on slices tilted from axial with what they cover along S
    (:func:`~..metrics.recist.axial_slice_thickness_text`: the minimum doubles that); '' at 10 mm or in a report
    without the thickness."""
    thickness = recist.get("slice_thickness_mm")
    if thickness is None or recist["measurable_minimum_mm"] <= RECIST_MIN_LONG_AXIS_MM:
        return ""
    source = recist.get("slice_thickness_source")
    said = SLICE_THICKNESS_SOURCE_WORDS.get(source, source or "slice spacing")
    tilted = axial_slice_thickness_text(recist)
    if tilted:
        return f", twice the {thickness:g} mm slices ({said}){tilted}"
    return f", twice the {thickness:g} mm slice thickness ({said})"


def summary_lines(report: Dict[str, Any], limit: Optional[int] = None) -> List[str]:
    """Human-readable lines: liver, burden, RECIST targets and one line per lesion (at most ``limit``; None:
    :data:`~..inference.lesion_report.LISTED_LESIONS_MAX`, as segment's summary and the warnings)."""
    from ..inference.lesion_report import LISTED_LESIONS_MAX, lesion_summary_line, number_text

    limit = LISTED_LESIONS_MAX if limit is None else limit

    recist = report["recist"]
    targets = ", ".join(str(i) for i in recist["target_lesion_ids"]) or "none"
    lines = [f"liver volume: {number_text(report['liver_volume_ml'], 1)} mL; tumors: {report['lesion_count']} "
             f"({number_text(report['tumor_volume_ml'], 2)} mL, "
             f"burden {number_text(report['tumor_burden_percent'], 2)} %)",
             f"RECIST 1.1 target lesions: {targets}; sum of diameters {recist['sum_of_diameters_mm']:.1f} mm "
             f"(measurable from {recist['measurable_minimum_mm']:g} mm{_minimum_reason(recist)}; {RECIST_NOTE})"]
    for lesion in report["lesions"][:limit]:
        lines.append("  " + lesion_summary_line(lesion, minimum_mm=recist["measurable_minimum_mm"]))
    if len(report["lesions"]) > limit:
        lines.append(f"  ... {len(report['lesions']) - limit} more in the report")
    return lines


def liver_cut_warnings(labels_zyx: Any, geometry: Any, hu_zyx: Any, liver_ml: float) -> List[str]:
    """``segment``'s note on a liver the scan's first or last slice or the image's side cuts, for a label map
    ``labels_zyx`` (``(z, y, x)``, 0/1/2 on ``geometry``; ``hu_zyx``: its CT in HU on the same grid, for a round
    field of view's padding, or None): its volume (``liver_ml``, mL) is that of the part scanned, a lower bound (a
    liver above 5000 mL is still called implausible). No warning for a liver that nothing cuts: measure does not judge
    an uncut liver's volume. measure gave the 70 mL liver of a 3-slice scan as the liver volume without a word."""
    from ..inference.plausibility import liver_cut_by_image_side, liver_cut_by_scan_end
    from ..inference.segmenter import liver_volume_warnings

    by_scan_end = liver_cut_by_scan_end(labels_zyx, geometry)
    by_image_side = liver_cut_by_image_side(labels_zyx, geometry, hu_zyx)
    if not (by_scan_end or by_image_side):
        return []
    return liver_volume_warnings(liver_ml, cut_by_scan_end=by_scan_end, cut_by_image_side=by_image_side)


def lesion_mask_warnings(labels_zyx: Any, liver_ml: float) -> List[str]:
    """A warning for a label map (``(z, y, x)``, 0/1/2) of liver (1) without tumor whose liver, not cut by the scan
    (the caller's :func:`liver_cut_warnings` said nothing), is smaller than any whole liver
    (``segmenter.PLAUSIBLE_LIVER_ML``): a reader's lesion mask (lesion = 1) was measured as a 2.1 mL liver with no
    tumor, without a word (the measure audit)."""
    import numpy as np

    from ..inference.segmenter import PLAUSIBLE_LIVER_ML

    smallest = PLAUSIBLE_LIVER_ML[0]
    if liver_ml >= smallest or np.any(np.asarray(labels_zyx) == 2):
        return []
    return [f"the label map holds liver (1) of only {liver_ml:.1f} mL and no tumor (2), while a whole liver is "
            f"{smallest:g} mL or more: if it is a lesion mask (lesion = 1), map its 1 to 2 first (e.g. SimpleITK: "
            f"sitk.ChangeLabel(image, changeMap={{1: 2}})) and measure again; this tool reads 0 background, 1 liver, "
            f"2 tumor"]


def run(args: argparse.Namespace) -> int:
    from ..fileutil import check_can_write
    from ..inference.lesion_report import check_report_path, lesion_report, write_report
    from ..io import read_label_map
    from . import read_checked_ct

    output = check_report_path(args.output)
    check_can_write(output, args.overwrite)  # before any reading
    given_thickness_mm = check_given_slice_thickness(args.slice_thickness_mm)
    if not Path(args.labels).exists():
        raise InputError(f"Label map '{args.labels}' does not exist; check the path.")
    for path, option in ((args.ct, "--ct"), (args.probabilities, "--probabilities")):  # named, and before reading
        if path and not Path(path).exists():  # (they were 'Input ... does not exist', the map's after the CT's read)
            raise InputError(f"{option} '{path}' does not exist; check the path.")
    if args.series and not args.ct:
        raise InputError("--series picks the DICOM series of --ct; without --ct it has nothing to pick (the label "
                         "map is one file). Drop --series, or add --ct with the DICOM folder.")
    # refused when NaN/Inf, constant or broken; values that do not look like HU only warn
    warnings: List[str] = []
    ct = read_checked_ct(args.ct, args.series, allow_non_hu=True, warnings_out=warnings,
                         non_hu_going_on=MEAN_HU_NOT_HU, for_model=False) if args.ct else None
    printed = len(warnings)  # the CT's warnings, printed as it was read
    labels = read_label_map(args.labels, reference=ct)
    warnings += [str(w) for w in labels.meta.get("warnings", [])]
    from ..validation import not_hu_reason

    in_hu = ct is not None and not_hu_reason(ct) is None  # water density is judged in HU only
    if in_hu:  # a header flipped by a conversion, or voxels flipped under the CT's header: measured mirrored
        from ..io.labels import label_fit_warning

        misfit = label_fit_warning(args.labels, ct, labels)
        warnings += [misfit] if misfit else []
    if in_hu:  # a resampling's 0 HU fill read as tissue: a lesion against the old grid's edge was reported whole
        ct = _without_resampling_fill(ct, warnings)
    if ct is None:  # with --ct, the CT's own check has said it (in these words: read_checked_ct's for_model=False)
        from ..validation import measurement_tilt_warnings

        warnings += measurement_tilt_warnings(labels.geometry.direction_matrix, str(args.labels))
    if not labels.array.any():  # 0.0 mL and no lesion, reported as a liver without tumor
        warnings.append("the label map holds no liver and no tumor (every voxel background): its liver volume 0.0 mL "
                        "and empty lesion table describe no segmentation; check that it is the right file (segment "
                        "writes 1 = liver, 2 = tumor)")
    elif (labels.array == 2).any() and not (labels.array == 1).any():  # its "liver" is the tumor alone: burden 100 %
        warnings.append("the label map holds tumor but no liver label (1) (an empty Liver segment?): the liver "
                        "volume counts the tumor alone and the tumor burden (100 %) means nothing")
    thickness_unused = given_slice_thickness_warning(labels.geometry, given_thickness_mm)
    if thickness_unused:  # on coronal slices or thinner than the spacing: the minimum is the spacing's, said so
        warnings.append(thickness_unused)
    logged = set(labels.meta.get("logged_warnings", ()))  # the reader has printed these itself
    for warning in warnings[printed:]:  # in the report too; a map with tumor but no liver ran without a word
        if warning not in logged:
            print(f"warning: {warning}", file=sys.stderr)
    probability = None
    if args.probabilities:  # the label map's grid, also in another axis order (with --ct the labels are in the
        from ..io.probability import read_probability_map  # CT's axis order, the map in its own)

        # segment's uint8 map (255 x p) stays uint8, and each lesion's mean is taken of it as segment takes it
        probability = read_probability_map(args.probabilities, labels, f"Probability map '{args.probabilities}' "
                                                                       f"is not on the label map's grid")
    # the CT's DICOM SliceThickness, else a DICOM SEG's own (its Pixel Measures): measure seg.dcm took the spacing
    dicom_thickness_mm, dicom_thickness_source = dicom_slice_thickness_of(ct, labels)
    report = lesion_report(labels.array, labels.geometry, ct.array if ct is not None else None,
                           extra={"labels": str(args.labels), "ct": str(args.ct) if args.ct else None,
                                  "probabilities": str(args.probabilities) if args.probabilities else None,
                                  "library_version": str(__version__), "warnings": warnings},
                           tumor_probability_zyx=probability, in_hu=in_hu,
                           dicom_slice_thickness_mm=dicom_thickness_mm, given_slice_thickness_mm=given_thickness_mm,
                           dicom_slice_thickness_source=dicom_thickness_source)
    from ..inference.lesion_report import slice_limited_axes_warnings
    from ..inference.plausibility import lesion_density_warnings, lesions_away_from_liver_warnings
    from ..inference.water_density import water_density_lesion_warnings

    # as segment warns; fat density is judged in HU only (a corrected or third-party label map is where fat
    # labelled tumor is most likely, and measure said nothing of a -90 HU 'tumor' it chose as a RECIST target)
    added = (lesion_density_warnings(report["lesions"]) if in_hu else []) + \
        water_density_lesion_warnings(report["lesions"], report["recist"]) + \
        slice_limited_axes_warnings(report["lesions"]) + \
        lesions_away_from_liver_warnings(labels.array, labels.geometry, report["lesions"])
    if (labels.array == 1).any():  # a liver cut by the scan: as segment notes it (no liver label: warned above)
        cut = liver_cut_warnings(labels.array, labels.geometry, ct.array if in_hu else None, report["liver_volume_ml"])
        added = (cut or lesion_mask_warnings(labels.array, report["liver_volume_ml"])) + added
    for warning in added:
        print(f"warning: {warning}", file=sys.stderr)
        report["warnings"] = list(report["warnings"]) + [warning]
    write_report(report, output, overwrite=args.overwrite)
    print("\n".join(summary_lines(report)))
    print(f"report: {output}")
    return 0
