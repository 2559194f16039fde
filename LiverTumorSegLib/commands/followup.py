"""``livertumorseg followup``: compare a follow-up segmentation with the baseline (RECIST 1.1 response).

    livertumorseg followup --baseline A --followup B [--baseline-ct CT_A --followup-ct CT_B] -o change.json

A and B are label maps (0 background, 1 liver, 2 tumor; NIfTI, NRRD, MetaImage or DICOM SEG .dcm), each on
its own scan's grid. The follow-up is aligned to the baseline by a rigid registration (on the CTs when both
are given, else on the liver masks), lesions are matched by overlap after alignment (merges and splits
allowed) and each gets a status: new, disappeared, grown (long axis >= +20 %), shrunk (<= -30 %), stable,
merged, split, not_assessed (a baseline lesion partly or wholly outside the follow-up scan's field of view, or
one cut by the baseline scan's edge where the follow-up does not reach max(10 mm, its long axis) beyond that
edge) or present (cut by the baseline scan's edge, seen at follow-up: its change is not measured; gone on a
follow-up that shows that far, it is disappeared; or with its baseline axes capped by thick tilted slices: its
long-axis change is not measured), with volume and long/short-axis change. ``response`` is the
RECIST 1.1 category from the baseline's target lesions (at most 2 measurable liver lesions): CR (no lesion left),
PR (sum of diameters <= -30 %), PD (>= +20 % and >= 5 mm, or a new lesion of at least --min-new-lesion-mm), else
SD; with lesions but no measurable target lesion, Non-CR/non-PD (CR when none is left, PD for a new lesion); NE
when neither time point has a lesion; with --after-complete-response (the previous assessment was a CR) any
baseline lesion seen again is PD; --previous CHANGE_JSON (the previous follow-up's report) carries its nadir and
its CR into this one. Each scan's measurable minimum is twice its slice thickness above 5 mm: the DICOM
SliceThickness of a CT read from DICOM, else that of a DICOM SEG label map, else the slice spacing;
--baseline-slice-thickness-mm and
--followup-slice-thickness-mm give it where it is known (a NIfTI records none). A PNG shows baseline and aligned follow-up side by side, lesions numbered
as in the JSON (every lesion outlined; at most 100 numbered per side, the largest). Research use only: not a
medical device.
"""
import argparse
import sys
from pathlib import Path
from typing import Any, Optional

from ..argtypes import number
from ..errors import InputError


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("followup", help="compare follow-up with baseline lesions (RECIST 1.1 response)",
                              description=__doc__)
    p.add_argument("--baseline", required=True, help="baseline label map")
    p.add_argument("--followup", required=True, help="follow-up label map")
    p.add_argument("--baseline-ct", default=None, help="baseline CT (file or DICOM folder); with --followup-ct "
                                                       "the alignment uses the CTs")
    p.add_argument("--followup-ct", default=None, help="follow-up CT (file or DICOM folder)")
    p.add_argument("-o", "--output", required=True, help="change report to write (.json)")
    p.add_argument("--picture", default=None,
                   help="side-by-side PNG to write (default: the output's name with .png)")
    p.add_argument("--no-picture", action="store_true", help="do not write the PNG")
    p.add_argument("--title", default="", help="text put before the response in the picture's title")
    p.add_argument("--alignment", choices=["auto", "ct", "liver", "none"], default="auto",
                   help="auto (default): CTs when both are given, else liver masks; none: scanner coordinates")
    p.add_argument("--min-new-lesion-mm", type=number(float, "mm"), default=5.0, metavar="MM",
                   help="new lesions with a shorter long axis (mm) are listed but do not make PD (default 5)")
    p.add_argument("--nadir-sum-mm", type=number(float, "mm"), default=None, metavar="MM",
                   help="smallest sum of diameters of the baseline's target lesions at an earlier follow-up (e.g. "
                        "sum_of_diameters.followup_mm of that follow-up's change report): RECIST 1.1 judges "
                        "progression from the smallest sum on study; without it, from the baseline")
    p.add_argument("--after-complete-response", action="store_true",
                   help="the previous assessment of this patient was a complete response (CR: every lesion, targets "
                        "and non-targets, had disappeared; confirm it first, as the RECIST working group advises): "
                        "the nadir is then 0 mm and any baseline lesion seen again is PD, also under 5 mm and also a "
                        "non-target (RECIST working group FAQ); a lesion at a new site is still a new lesion (PD when "
                        "at least --min-new-lesion-mm). Without it, a target back under 5 mm after a nadir of 0 mm is "
                        "PD only where every baseline lesion is a target")
    p.add_argument("--previous", default=None, metavar="CHANGE_JSON",
                   help="the change.json of the previous follow-up compared with the same baseline: its nadir and "
                        "follow-up sum give this one's nadir, and its response CR is taken as "
                        "--after-complete-response (confirm that CR), so a chain of follow-ups carries both; not with "
                        "--nadir-sum-mm or --after-complete-response")
    for when, scan in (("baseline", "the baseline's"), ("followup", "the follow-up's")):
        p.add_argument(f"--{when}-slice-thickness-mm", type=number(float, "mm"), default=None, metavar="MM",
                       help=f"the reconstruction thickness of {scan} slices in mm, for its RECIST measurable minimum "
                            f"(twice it above 5 mm){' and so the choice of target lesions' if when == 'baseline' else ''}"
                            f"; wins over the DICOM SliceThickness of --{when}-ct (report: slice_thickness_source "
                            f"'given'); default: that DICOM value, else that of a DICOM SEG label map, else the "
                            f"slice spacing (a NIfTI records none)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--no-progress", "--no-progress-bar", action="store_true",
                   help="accepted as by the other commands (--no-progress-bar is the same); this one prints no progress")
    p.refused_together = [("--picture", "--no-picture", "--no-picture writes no PNG; give one or the other"),
                          ("--title", "--no-picture", "the title goes in the PNG, which --no-picture leaves out; "
                                                      "give one or the other")]
    return p


def _read_ct(path: Optional[str], option: str):
    """The CT at ``path`` (None without one), checked like ``segment``'s input except that values which do not
    look like HU only warn: NaN/Inf, constant or broken volumes are refused (NaN once reached ITK's SVD), and so is
    a label map given for the CT (``option`` names where): the scans were aligned on its labels' values, and two
    identical label maps compared with one given as the baseline CT answered PD (a lesion 'disappeared', one 'new')
    with exit 0 (the file-kind audit)."""
    from . import read_checked_ct

    return read_checked_ct(path, allow_non_hu=True, non_hu_going_on=CT_NOT_HU, command="followup", for_model=False,
                           label_map_advice=f"give the CT scan itself as {option}, or leave {option} out to align "
                                            f"the scans on their livers") if path else None


CT_NOT_HU = ("compared anyway: followup reads the CTs to align the scans and for the lesions' mean and median HU, "
             "which are then this file's values, not Hounsfield units, and water density is not judged (the "
             "baseline's RECIST targets are chosen by their long axes alone; volumes and diameters do not depend on "
             "the values, but the alignment, and so which lesions are matched, does: check it in the picture)")
"""How followup's warning ends for a CT that does not look like HU (it has no --allow-non-hu: none was given)."""


def _warn_of_labels_fitting_only_mirrored(read: Any) -> None:
    """Add to a label map's warnings (``read``: ``(path, its CT or None, the label map read onto it)`` pairs) that it
    fits its CT only in the CT's own voxel order, not where its header (another axis order) places it, or only
    mirrored (:func:`~..io.labels.label_fit_warning`; a CT in HU only): such a label was compared mirrored, with
    only the note that it was reoriented, or none."""
    from ..io.labels import label_fit_warning
    from ..validation import not_hu_reason

    for path, ct, labels in read:
        if ct is None or not_hu_reason(ct) is not None:
            continue
        misfit = label_fit_warning(path, ct, labels)
        if misfit:
            labels.meta["warnings"] = list(labels.meta.get("warnings", [])) + [misfit]


def run(args: argparse.Namespace) -> int:
    from ..fileutil import check_can_write_all
    from ..followup import (BASELINE_SLICE_THICKNESS_OPTION, FOLLOWUP_SLICE_THICKNESS_OPTION, change_summary_lines,
                            check_after_complete_response, check_min_new_lesion_mm, check_nadir_sum_mm,
                            compare_followup, read_previous_change, save_change_picture, write_change_report)
    from ..metrics.recist import check_given_slice_thickness
    from ..io import read_label_map

    output = Path(args.output)
    if output.suffix.lower() != ".json":
        raise InputError(f"Change report '{output}' must end in .json.")
    picture = None if args.no_picture else Path(args.picture) if args.picture else output.with_suffix(".png")
    if picture is not None and picture.suffix.lower() != ".png":
        raise InputError(f"Picture '{picture}' must end in .png.")
    if (args.baseline_ct is None) != (args.followup_ct is None) and args.alignment == "ct":
        raise InputError("--alignment ct needs both --baseline-ct and --followup-ct.")
    check_min_new_lesion_mm(args.min_new_lesion_mm, "--min-new-lesion-mm")
    check_given_slice_thickness(args.baseline_slice_thickness_mm, BASELINE_SLICE_THICKNESS_OPTION)  # before reading
    check_given_slice_thickness(args.followup_slice_thickness_mm, FOLLOWUP_SLICE_THICKNESS_OPTION)
    check_nadir_sum_mm(args.nadir_sum_mm, "--nadir-sum-mm")
    check_after_complete_response(args.after_complete_response, args.nadir_sum_mm, "--after-complete-response",
                                  "--nadir-sum-mm")
    if args.previous is not None and (args.nadir_sum_mm is not None or args.after_complete_response):
        raise InputError("--previous gives the nadir and whether the previous assessment was a complete response; "
                         "give it or --nadir-sum-mm / --after-complete-response, not both.")
    if args.previous is not None and Path(args.previous).resolve() == output.resolve():
        raise InputError(f"--previous '{args.previous}' is also the report to write (-o): that would replace the "
                         f"previous follow-up's report with this one's; give this follow-up's report another name.")
    previous = read_previous_change(args.previous) if args.previous is not None else None
    check_can_write_all([path for path in (output, picture) if path is not None], args.overwrite)
    for path, what in ((args.baseline, "--baseline"), (args.followup, "--followup"),
                       (args.baseline_ct, "--baseline-ct"), (args.followup_ct, "--followup-ct")):
        if path and not Path(path).exists():
            raise InputError(f"{what} '{path}' does not exist; check the path.")
    from ..fileutil import same_file_among
    # (one CT for both stays allowed: two segmentations of the same scan, as the Slicer panel may compare)
    if same_file_among([args.baseline, args.followup]):  # evaluate refuses --pred = --ref alike
        raise InputError(f"--baseline and --followup are the same file ('{args.baseline}', '{args.followup}'): "
                         f"compared with itself every lesion would read as unchanged (SD); give the baseline's and "
                         f"the follow-up's own label maps.")
    baseline_ct, followup_ct = _read_ct(args.baseline_ct, "--baseline-ct"), _read_ct(args.followup_ct, "--followup-ct")
    baseline = read_label_map(args.baseline, reference=baseline_ct)
    followup = read_label_map(args.followup, reference=followup_ct)
    _warn_of_labels_fitting_only_mirrored(((args.baseline, baseline_ct, baseline),
                                            (args.followup, followup_ct, followup)))
    change = compare_followup(baseline, followup, baseline_ct, followup_ct, alignment=args.alignment,
                              min_new_lesion_mm=args.min_new_lesion_mm, nadir_sum_mm=args.nadir_sum_mm,
                              after_complete_response=args.after_complete_response, previous_change=previous,
                              baseline_slice_thickness_mm=args.baseline_slice_thickness_mm,
                              followup_slice_thickness_mm=args.followup_slice_thickness_mm)
    change["inputs"] = {"baseline": str(args.baseline), "followup": str(args.followup),
                        "baseline_ct": args.baseline_ct, "followup_ct": args.followup_ct, "previous": args.previous,
                        "baseline_slice_thickness_mm": args.baseline_slice_thickness_mm,
                        "followup_slice_thickness_mm": args.followup_slice_thickness_mm}
    from ..fileutil import atomic_outputs

    outputs = {"report": output} if picture is None else {"report": output, "picture": picture}
    with atomic_outputs(outputs, overwrite=args.overwrite) as temporary:  # both or neither: a failed picture
        write_change_report(change, temporary["report"], overwrite=True)  # left the report behind
        if picture is not None:
            save_change_picture(temporary["picture"], change, overwrite=True, title=args.title)
    for line in change_summary_lines(change):  # warnings on stderr, as every other command's (in their place:
        warning = line.startswith("warning: ")   # under the response line, where a terminal shows them)
        print(line, file=sys.stderr if warning else sys.stdout, flush=True)
    print(f"change report: {output}")
    if picture is not None:
        print(f"picture: {picture}")
    return 0
