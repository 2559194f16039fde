"""RECIST 1.1's measurable minimum is twice the slice *thickness* above 5 mm: a DICOM series' SliceThickness
(0018,0050) where the CT was read from DICOM, else the spacing between slices (NIfTI/NRRD record no thickness).
Overlapping reconstructions (7 mm slices every 5 mm) measured a 12 mm lesion as a target (minimum 10 mm from the
spacing) where RECIST asks 14 mm."""
import json

import numpy as np
import pytest

from dicom_helpers import write_ct_series
from LiverTumorSegLib.cli import main
from LiverTumorSegLib.inference.lesion_report import lesion_report
from LiverTumorSegLib.io import read_volume, write_label_map, write_volume
from LiverTumorSegLib.metrics.recist import recist_slice_thickness
from LiverTumorSegLib.volume import CTVolume, ImageGeometry

SPACING_XYZ = (1.0, 1.0, 5.0)
SHAPE_ZYX = (6, 40, 40)


def ct_and_labels_with_a_12_mm_lesion():
    """A CT (HU, 1 x 1 x 5 mm voxels) with a liver block of 100 HU and a round lesion of 40 HU, 12 mm across
    (long axis 12.4 mm) on two slices, and its label map (1 liver, 2 lesion), away from every edge."""
    labels = np.zeros(SHAPE_ZYX, np.uint8)
    labels[1:5, 8:32, 6:34] = 1
    y, x = np.mgrid[:SHAPE_ZYX[1], :SHAPE_ZYX[2]]
    disc = (y - 19.5) ** 2 + (x - 19.5) ** 2 <= 6.0 ** 2  # long axis 12.4 mm (farthest centres + 1 pixel)
    labels[2:4][:, disc] = 2
    hu = np.full(SHAPE_ZYX, -100, np.int16)  # fat around the liver (the body fills the scan)
    hu[labels == 1] = 100
    hu[labels == 2] = 40
    geometry = ImageGeometry(spacing=SPACING_XYZ, origin=(-20.0, -20.0, 0.0))
    return CTVolume(hu, geometry, source="phantom"), labels


def test_dicom_thickness_is_used_for_axial_slices_and_spacing_otherwise():
    axial = ImageGeometry(spacing=(0.8, 0.8, 5.0))
    assert recist_slice_thickness(axial, 7.0) == (7.0, "dicom")
    assert recist_slice_thickness(axial, None) == (5.0, "slice spacing")
    # coronal slices (k runs anterior-posterior): their DICOM thickness is not the axial slices'; the axial axis is j
    coronal = ImageGeometry(spacing=(0.8, 0.8, 7.0), direction=(1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0))
    assert recist_slice_thickness(coronal, 7.0) == (0.8, "slice spacing")


def test_gapped_dicom_series_keeps_its_slice_spacing():
    """1 mm slices every 7 mm: the minimum stays twice the 7 mm spacing (14 mm), not 10 mm from the thin slices."""
    gapped = ImageGeometry(spacing=(0.8, 0.8, 7.0))
    assert recist_slice_thickness(gapped, 1.0) == (7.0, "slice spacing")
    assert recist_slice_thickness(gapped, 7.0) == (7.0, "dicom")


def test_lesion_report_minimum_is_twice_the_dicom_thickness_above_5_mm():
    ct, labels = ct_and_labels_with_a_12_mm_lesion()
    report = lesion_report(labels, ct.geometry, ct.array, dicom_slice_thickness_mm=7.0)
    assert report["lesions"][0]["long_axis_mm"] == pytest.approx(12.4, abs=0.1)
    assert report["recist"]["measurable_minimum_mm"] == pytest.approx(14.0)
    assert report["recist"]["slice_thickness_mm"] == pytest.approx(7.0)
    assert report["recist"]["slice_thickness_source"] == "dicom"
    assert report["recist"]["target_lesion_ids"] == []


def test_dicom_series_carries_its_slice_thickness(tmp_path):
    ct, _ = ct_and_labels_with_a_12_mm_lesion()
    write_ct_series(tmp_path / "dicom", ct, slice_thickness_mm=7.0)
    read = read_volume(tmp_path / "dicom")
    assert read.geometry.spacing[2] == pytest.approx(5.0)  # the grid stays on the slice positions
    assert read.meta["dicom_slice_thickness_mm"] == pytest.approx(7.0)


def test_enhanced_multiframe_ct_carries_its_slice_thickness_from_the_functional_groups(tmp_path):
    """An enhanced CT keeps SliceThickness in its Pixel Measures functional groups, not at the top level."""
    from dicom_helpers import write_enhanced_ct

    ct, _ = ct_and_labels_with_a_12_mm_lesion()
    read = read_volume(write_enhanced_ct(tmp_path / "enhanced.dcm", ct, slice_thickness_mm=7.0))
    assert read.geometry.spacing[2] == pytest.approx(5.0)
    assert read.meta["dicom_slice_thickness_mm"] == pytest.approx(7.0)


def _measure(tmp_path, ct_path, labels_path):
    out = tmp_path / f"report_{ct_path.name.split('.')[0]}.json"
    assert main(["measure", str(labels_path), "--ct", str(ct_path), "-o", str(out)]) == 0
    return json.loads(out.read_text())


def test_measure_on_overlapping_dicom_slices_says_a_12_mm_lesion_is_not_measurable(tmp_path):
    """7 mm slices every 5 mm (DICOM): minimum 14 mm, the 12 mm lesion is no target; the same CT as NIfTI records
    no thickness: minimum 10 mm from the spacing, the lesion is a target, and the report says which was used."""
    ct, labels = ct_and_labels_with_a_12_mm_lesion()
    write_ct_series(tmp_path / "dicom", ct, slice_thickness_mm=7.0)
    labels_path = tmp_path / "labels.nii.gz"
    write_label_map(labels_path, labels, ct.geometry)
    from_dicom = _measure(tmp_path, tmp_path / "dicom", labels_path)
    assert from_dicom["lesions"][0]["long_axis_mm"] == pytest.approx(12.4, abs=0.1)
    assert from_dicom["recist"]["measurable_minimum_mm"] == pytest.approx(14.0)
    assert from_dicom["recist"]["slice_thickness_mm"] == pytest.approx(7.0)
    assert from_dicom["recist"]["slice_thickness_source"] == "dicom"
    assert from_dicom["recist"]["target_lesion_ids"] == []

    nifti = tmp_path / "ct.nii.gz"
    write_volume(nifti, ct)
    from_nifti = _measure(tmp_path, nifti, labels_path)
    assert from_nifti["recist"]["measurable_minimum_mm"] == pytest.approx(10.0)
    assert from_nifti["recist"]["slice_thickness_mm"] == pytest.approx(5.0)
    assert from_nifti["recist"]["slice_thickness_source"] == "slice spacing"
    assert from_nifti["recist"]["target_lesion_ids"] == [1]


def test_followup_judges_each_scan_by_its_own_dicom_thickness():
    """compare_followup's reports take each CT's DICOM SliceThickness (CTVolume.meta, as the DICOM reader sets
    it): a baseline of 7 mm slices every 5 mm has no target of 12 mm; a follow-up read from NIfTI has one."""
    from LiverTumorSegLib.followup import compare_followup

    ct, labels = ct_and_labels_with_a_12_mm_lesion()
    base_ct = CTVolume(ct.array, ct.geometry, source="baseline", meta={"dicom_slice_thickness_mm": 7.0})
    change = compare_followup(CTVolume(labels, ct.geometry), CTVolume(labels, ct.geometry), baseline_ct=base_ct,
                              followup_ct=ct, alignment="none")
    assert change["baseline"]["recist"]["measurable_minimum_mm"] == pytest.approx(14.0)
    assert change["baseline"]["recist"]["slice_thickness_source"] == "dicom"
    assert change["baseline"]["recist"]["target_lesion_ids"] == []
    assert change["followup"]["recist"]["measurable_minimum_mm"] == pytest.approx(10.0)
    assert change["followup"]["recist"]["slice_thickness_source"] == "slice spacing"


def test_segment_report_takes_the_dicom_thickness_of_the_ct():
    """Segmenter.finish (segment's path after the network) passes the CT's DICOM SliceThickness to the report."""
    from LiverTumorSegLib.inference.options import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import NetworkOutput, Segmenter

    ct, labels = ct_and_labels_with_a_12_mm_lesion()
    from_dicom = CTVolume(ct.array, ct.geometry, source="dicom", meta={"dicom_slice_thickness_mm": 7.0})
    output = NetworkOutput(labels=labels, probability=None, facts={"device": "cpu"}, timings={})
    recist = Segmenter(SegmentationOptions()).finish(from_dicom, output).report["recist"]
    assert (recist["measurable_minimum_mm"], recist["slice_thickness_source"]) == (14.0, "dicom")
    assert recist["target_lesion_ids"] == []


def test_measure_summary_says_why_the_minimum_is_above_10_mm():
    from LiverTumorSegLib.commands.measure import summary_lines

    ct, labels = ct_and_labels_with_a_12_mm_lesion()
    line = summary_lines(lesion_report(labels, ct.geometry, ct.array, dicom_slice_thickness_mm=7.0))[1]
    assert "measurable from 14 mm, twice the 7 mm slice thickness (DICOM SliceThickness);" in line
    line = summary_lines(lesion_report(labels, ct.geometry, ct.array))[1]
    assert "measurable from 10 mm;" in line


# ---- a thickness the user gives (--slice-thickness-mm; the Slicer panel's DICOM SliceThickness) -------------------

def test_a_given_thickness_wins_over_the_dicom_one_under_the_same_rules():
    from LiverTumorSegLib.metrics.recist import given_slice_thickness_warning

    axial = ImageGeometry(spacing=(0.8, 0.8, 5.0))
    assert recist_slice_thickness(axial, 7.0, 5.0) == (5.0, "given")
    assert recist_slice_thickness(axial, None, 7.0) == (7.0, "given")
    assert given_slice_thickness_warning(axial, 7.0) == ""
    # thinner than the spacing (gapped) or on coronal slices: the spacing, and a warning says why
    assert recist_slice_thickness(axial, 7.0, 1.0) == (5.0, "slice spacing")
    assert given_slice_thickness_warning(axial, 1.0) == (
        "--slice-thickness-mm 1 mm was not used: it is thinner than the 5 mm spacing between the slices (a gapped "
        "series: the minimum is never below what the spacing gives); RECIST's measurable minimum was judged from the "
        "5 mm slice spacing")
    coronal = ImageGeometry(spacing=(0.8, 0.8, 7.0), direction=(1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0))
    assert recist_slice_thickness(coronal, None, 7.0) == (0.8, "slice spacing")
    assert "slices (its third voxel axis, k) are not axial" in given_slice_thickness_warning(coronal, 7.0)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0, -5.0, 50.0, 70.0, "seven"])
def test_a_given_thickness_outside_0_to_50_mm_is_refused_with_what_to_give(value):
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.metrics.recist import check_given_slice_thickness

    with pytest.raises(InputError, match=r"--slice-thickness-mm must be the slice \(reconstruction\) thickness in mm, "
                                         r"a number above 0 and below 50 mm \(got "):
        check_given_slice_thickness(value)
    assert check_given_slice_thickness(None) is None and check_given_slice_thickness(49.5) == 49.5


def test_measure_takes_a_given_thickness_for_a_nifti_ct_and_over_the_dicom_one(tmp_path):
    """A NIfTI records no thickness: --slice-thickness-mm 7 gives the 14 mm minimum of 7 mm slices (source 'given');
    given for a DICOM series of 7 mm slices, 5 mm wins (minimum 10 mm, the 12 mm lesion a target)."""
    ct, labels = ct_and_labels_with_a_12_mm_lesion()
    labels_path = tmp_path / "labels.nii.gz"
    write_label_map(labels_path, labels, ct.geometry)
    nifti = tmp_path / "ct.nii.gz"
    write_volume(nifti, ct)
    out = tmp_path / "given.json"
    assert main(["measure", str(labels_path), "--ct", str(nifti), "--slice-thickness-mm", "7", "-o", str(out)]) == 0
    recist = json.loads(out.read_text())["recist"]
    assert (recist["slice_thickness_mm"], recist["slice_thickness_source"]) == (7.0, "given")
    assert recist["measurable_minimum_mm"] == pytest.approx(14.0) and recist["target_lesion_ids"] == []

    write_ct_series(tmp_path / "dicom", ct, slice_thickness_mm=7.0)
    out = tmp_path / "over_dicom.json"
    assert main(["measure", str(labels_path), "--ct", str(tmp_path / "dicom"), "--slice-thickness-mm", "5",
                 "-o", str(out)]) == 0
    recist = json.loads(out.read_text())["recist"]
    assert (recist["slice_thickness_mm"], recist["slice_thickness_source"]) == (5.0, "given")
    assert recist["measurable_minimum_mm"] == pytest.approx(10.0) and recist["target_lesion_ids"] == [1]


def test_segment_says_in_its_report_when_a_given_thickness_is_not_used(tmp_path):
    """``segment --slice-thickness-mm`` (the Slicer panel passes a DICOM SliceThickness so): 1 mm on 5 mm slices is
    thinner than their spacing, so RECIST takes the spacing and the report's warnings say why, as measure's do."""
    from inference_helpers import tiny_unet_package

    package = tiny_unet_package(tmp_path)
    ct, _ = ct_and_labels_with_a_12_mm_lesion()
    nifti = write_volume(tmp_path / "ct.nii.gz", ct)
    report_path = tmp_path / "seg.json"
    assert main(["segment", str(nifti), "-o", str(tmp_path / "seg.nii.gz"), "--report", str(report_path),
                 "--model", str(package.path), "--device", "cpu", "--precision", "fp32",
                 "--slice-thickness-mm", "1", "--no-progress"]) == 0
    report = json.loads(report_path.read_text())
    assert [w for w in report["warnings"] if "--slice-thickness-mm" in w] == [
        "--slice-thickness-mm 1 mm was not used: it is thinner than the 5 mm spacing between the slices (a gapped "
        "series: the minimum is never below what the spacing gives); RECIST's measurable minimum was judged from the "
        "5 mm slice spacing"]
    assert (report["recist"]["slice_thickness_mm"], report["recist"]["slice_thickness_source"]) == \
        (5.0, "slice spacing")


def test_measure_says_when_a_given_thickness_is_not_used_and_refuses_a_bad_one(tmp_path, capsys):
    ct, labels = ct_and_labels_with_a_12_mm_lesion()
    labels_path = tmp_path / "labels.nii.gz"
    write_label_map(labels_path, labels, ct.geometry)
    out = tmp_path / "thin.json"
    assert main(["measure", str(labels_path), "--slice-thickness-mm", "1", "-o", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["recist"]["slice_thickness_source"] == "slice spacing"
    assert any(w.startswith("--slice-thickness-mm 1 mm was not used: it is thinner than the 5 mm spacing")
               for w in report["warnings"])
    assert "--slice-thickness-mm 1 mm was not used" in capsys.readouterr().err
    for bad in ("nan", "0", "60"):
        assert main(["measure", str(labels_path), "--slice-thickness-mm", bad, "-o", str(tmp_path / "bad.json")]) == 2
        assert "--slice-thickness-mm must be the slice (reconstruction) thickness in mm" in capsys.readouterr().err
        assert not (tmp_path / "bad.json").exists()


def test_measure_summary_names_a_given_thickness():
    from LiverTumorSegLib.commands.measure import summary_lines

    ct, labels = ct_and_labels_with_a_12_mm_lesion()
    line = summary_lines(lesion_report(labels, ct.geometry, ct.array, given_slice_thickness_mm=7.0))[1]
    assert "measurable from 14 mm, twice the 7 mm slice thickness (given);" in line


def test_segment_command_takes_the_given_thickness_end_to_end(tmp_path):
    """segment --slice-thickness-mm 7 on a NIfTI CT (a tiny untrained network): the report's minimum is 14 mm,
    source 'given'; a batch and a bad value are refused before any work."""
    from inference_helpers import tiny_unet_package

    tiny_unet_package(tmp_path)
    ct, _ = ct_and_labels_with_a_12_mm_lesion()
    nifti = tmp_path / "ct.nii.gz"
    write_volume(nifti, ct)
    report_path = tmp_path / "report.json"
    args = ["segment", str(nifti), "-o", str(tmp_path / "labels.nii.gz"), "--report", str(report_path),
            "--model", str(tmp_path / "tiny.safetensors"), "--device", "cpu", "--no-progress"]
    assert main(args + ["--slice-thickness-mm", "7"]) == 0
    recist = json.loads(report_path.read_text())["recist"]
    assert (recist["slice_thickness_mm"], recist["slice_thickness_source"]) == (7.0, "given")
    assert recist["measurable_minimum_mm"] == pytest.approx(14.0)
    assert main(args[:3] + [str(tmp_path / "other.nii.gz")] + args[4:] + ["--slice-thickness-mm", "inf"]) == 2
    assert not (tmp_path / "other.nii.gz").exists()


def test_segment_command_args_hand_the_thickness_to_a_child():
    from LiverTumorSegLib.cli import build_parser
    from LiverTumorSegLib.inference.options import SegmentationOptions, segment_command_args

    args = segment_command_args("ct.nii", "l.nii.gz", SegmentationOptions(), slice_thickness_mm=7.0)
    assert args[:5] == ["segment", "ct.nii", "-o", "l.nii.gz", "--slice-thickness-mm"] and args[5] == "7.0"
    assert build_parser().parse_args(args).slice_thickness_mm == 7.0
    assert "--slice-thickness-mm" not in segment_command_args("ct.nii", "l.nii.gz", SegmentationOptions())


# ---- followup: the two time points' slice thicknesses ------------------------------------------------------------

def test_followup_warns_when_the_two_scans_slice_thicknesses_differ():
    """RECIST 1.1 asks the same technique at every time point: a 7 mm baseline (minimum 14 mm) against a NIfTI
    follow-up of 5 mm slices (10 mm) is warned of, naming both thicknesses, sources and minimums; the same
    thickness is not."""
    from LiverTumorSegLib.followup import compare_followup

    ct, labels = ct_and_labels_with_a_12_mm_lesion()
    base_ct = CTVolume(ct.array, ct.geometry, source="baseline", meta={"dicom_slice_thickness_mm": 7.0})
    change = compare_followup(CTVolume(labels, ct.geometry), CTVolume(labels, ct.geometry), baseline_ct=base_ct,
                              followup_ct=ct, alignment="none")
    said = [w for w in change["warnings"] if w.startswith("the baseline has ")]
    assert said == ["the baseline has 7 mm slices (DICOM SliceThickness), measurable from 14 mm, the follow-up 5 mm "
                    "slices (slice spacing), measurable from 10 mm: RECIST 1.1 asks the same imaging technique at "
                    "every time point: a lesion between the two minimums is measurable on one scan and not on the "
                    "other, and the baseline's targets were chosen by the baseline's minimum; compare scans "
                    "reconstructed at the same slice thickness where they exist"]
    same = compare_followup(CTVolume(labels, ct.geometry), CTVolume(labels, ct.geometry), baseline_ct=ct,
                            followup_ct=ct, alignment="none")
    assert not [w for w in same["warnings"] if "slices (" in w]


def _followup(tmp_path, name, *options):
    """``followup`` on two copies of the 12 mm lesion's label map (NIfTI, no CT, scanner coordinates): the change
    report and the exit code."""
    ct, labels = ct_and_labels_with_a_12_mm_lesion()
    for when in ("baseline", "followup"):
        if not (tmp_path / f"{when}.nii.gz").exists():
            write_label_map(tmp_path / f"{when}.nii.gz", labels, ct.geometry)
    out = tmp_path / f"{name}.json"
    code = main(["followup", "--baseline", str(tmp_path / "baseline.nii.gz"), "--followup",
                 str(tmp_path / "followup.nii.gz"), "--alignment", "none", "--no-picture", "-o", str(out),
                 *options])
    return (json.loads(out.read_text()) if out.exists() else None), code


def test_followup_takes_each_scans_given_thickness_end_to_end(tmp_path):
    """Label maps from NIfTI record no thickness: both time points took the 5 mm spacing (minimum 10 mm), so the
    12 mm lesion was the baseline's target although its 7 mm slices ask 14 mm. --baseline-slice-thickness-mm 7
    makes it no target (source 'given'); the follow-up's own option sets the follow-up's minimum; both are
    recorded in change.json's inputs."""
    spacing, code = _followup(tmp_path, "spacing")
    assert code == 0 and spacing["baseline"]["recist"]["target_lesion_ids"] == [1]  # as before: 10 mm minimum
    assert spacing["inputs"]["baseline_slice_thickness_mm"] is None

    change, code = _followup(tmp_path, "given", "--baseline-slice-thickness-mm", "7",
                             "--followup-slice-thickness-mm", "7")
    assert code == 0
    base, follow = change["baseline"]["recist"], change["followup"]["recist"]
    assert change["baseline"]["lesions"][0]["long_axis_mm"] == pytest.approx(12.4, abs=0.1)
    assert (base["slice_thickness_mm"], base["slice_thickness_source"]) == (7.0, "given")
    assert base["measurable_minimum_mm"] == pytest.approx(14.0) and base["target_lesion_ids"] == []
    assert (follow["slice_thickness_mm"], follow["slice_thickness_source"]) == (7.0, "given")
    assert follow["measurable_minimum_mm"] == pytest.approx(14.0)
    assert change["sum_of_diameters"]["target_lesion_ids"] == [] and change["response"] == "Non-CR/non-PD"
    assert (change["inputs"]["baseline_slice_thickness_mm"], change["inputs"]["followup_slice_thickness_mm"]) == (
        7.0, 7.0)
    assert not [w for w in change["warnings"] if w.startswith("the baseline has ")]  # same thickness: no warning

    only_base, code = _followup(tmp_path, "only_base", "--baseline-slice-thickness-mm", "7")
    assert code == 0 and only_base["followup"]["recist"]["slice_thickness_source"] == "slice spacing"
    assert [w for w in only_base["warnings"] if w.startswith(
        "the baseline has 7 mm slices (given), measurable from 14 mm, the follow-up 5 mm slices (slice spacing)")]


def test_followup_summary_names_a_minimum_above_10_mm_and_its_thickness(tmp_path):
    """The printed summary said 'no measurable target lesion at baseline' for the 12 mm lesion on 7 mm slices
    without the 14 mm minimum behind it (change.json alone held it); now a line per time point names it."""
    from LiverTumorSegLib.followup import change_summary_lines

    change, code = _followup(tmp_path, "given_summary", "--baseline-slice-thickness-mm", "7")
    assert code == 0
    lines = change_summary_lines(change)
    assert ("baseline: 7 mm slices (given), measurable from 14 mm (RECIST 1.1: twice the slice thickness above 5 mm)"
            in lines), lines
    assert not [line for line in lines if line.startswith("follow-up: ")]  # 5 mm spacing: 10 mm, nothing to say
    plain, code = _followup(tmp_path, "plain_summary")
    assert code == 0 and not [line for line in change_summary_lines(plain) if "measurable from" in line]


def test_followup_says_when_a_given_thickness_is_not_used_and_refuses_a_bad_one(tmp_path, capsys):
    change, code = _followup(tmp_path, "thin", "--followup-slice-thickness-mm", "1")
    assert code == 0 and change["followup"]["recist"]["slice_thickness_source"] == "slice spacing"
    assert any(w.startswith("--followup-slice-thickness-mm 1 mm was not used: it is thinner than the 5 mm spacing")
               for w in change["warnings"])
    capsys.readouterr()
    for option in ("--baseline-slice-thickness-mm", "--followup-slice-thickness-mm"):
        for bad in ("nan", "0", "60"):
            change, code = _followup(tmp_path, "bad", option, bad)
            assert code == 2 and change is None
            assert f"{option} must be the slice (reconstruction) thickness in mm" in capsys.readouterr().err


def test_compare_followup_takes_a_given_thickness_over_the_dicom_one():
    """The library's compare_followup: a given thickness wins over the CT's DICOM SliceThickness (source 'given'),
    per time point; a bad one is an InputError naming the argument."""
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.followup import compare_followup

    ct, labels = ct_and_labels_with_a_12_mm_lesion()
    base_ct = CTVolume(ct.array, ct.geometry, source="baseline", meta={"dicom_slice_thickness_mm": 7.0})
    change = compare_followup(CTVolume(labels, ct.geometry), CTVolume(labels, ct.geometry), baseline_ct=base_ct,
                              followup_ct=ct, alignment="none", baseline_slice_thickness_mm=5.0,
                              followup_slice_thickness_mm=8.0)
    assert (change["baseline"]["recist"]["slice_thickness_source"], change["baseline"]["recist"]["target_lesion_ids"]
            ) == ("given", [1])
    assert change["followup"]["recist"]["measurable_minimum_mm"] == pytest.approx(16.0)
    with pytest.raises(InputError, match="^baseline_slice_thickness_mm must be the slice"):
        compare_followup(CTVolume(labels, ct.geometry), CTVolume(labels, ct.geometry), alignment="none",
                         baseline_slice_thickness_mm=-1.0)


def _seg_of_overlapping_slices(tmp_path, slice_thickness_mm=7.0):
    """The 12 mm lesion's CT written as DICOM slices ``slice_thickness_mm`` thick every 5 mm, and a DICOM SEG of its
    label map written by the project's own writer (which copies SliceThickness into the SEG's Pixel Measures)."""
    pytest.importorskip("highdicom")
    from LiverTumorSegLib.dicom_seg import dicom_series_files, write_dicom_seg

    ct, labels = ct_and_labels_with_a_12_mm_lesion()
    write_ct_series(tmp_path / "dicom", ct, slice_thickness_mm=slice_thickness_mm)
    seg = write_dicom_seg(tmp_path / "seg.dcm", labels, ct.geometry, dicom_series_files(tmp_path / "dicom"))
    return ct, labels, seg


def test_measure_of_a_dicom_seg_without_ct_takes_the_segs_own_slice_thickness(tmp_path, capsys):
    """``measure seg.dcm`` without --ct took the 5 mm spacing (minimum 10 mm, the 12 mm lesion a target) although the
    SEG's Pixel Measures say the slices are 7 mm thick: RECIST asks 14 mm. Now the SEG's own value is used (source
    'dicom_seg', named in the summary); a DICOM CT's value still comes first (source 'dicom'), a NIfTI CT has none."""
    import pydicom

    ct, _, seg = _seg_of_overlapping_slices(tmp_path)
    measures = pydicom.dcmread(str(seg)).SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert float(measures.SliceThickness) == pytest.approx(7.0) and float(measures.SpacingBetweenSlices) == 5.0
    out = tmp_path / "alone.json"
    assert main(["measure", str(seg), "-o", str(out)]) == 0
    recist = json.loads(out.read_text())["recist"]
    assert recist["slice_thickness_mm"] == pytest.approx(7.0)
    assert recist["slice_thickness_source"] == "dicom_seg"
    assert recist["measurable_minimum_mm"] == pytest.approx(14.0)
    assert recist["target_lesion_ids"] == []
    assert "twice the 7 mm slice thickness (DICOM SEG SliceThickness)" in capsys.readouterr().out

    nifti = tmp_path / "ct.nii.gz"
    write_volume(nifti, ct)
    with_nifti_ct = _measure(tmp_path, nifti, seg)["recist"]
    assert (with_nifti_ct["slice_thickness_source"], with_nifti_ct["measurable_minimum_mm"]) == ("dicom_seg", 14.0)
    with_dicom_ct = _measure(tmp_path, tmp_path / "dicom", seg)["recist"]
    assert (with_dicom_ct["slice_thickness_source"], with_dicom_ct["measurable_minimum_mm"]) == ("dicom", 14.0)
    out = tmp_path / "given.json"
    assert main(["measure", str(seg), "-o", str(out), "--slice-thickness-mm", "5"]) == 0
    assert json.loads(out.read_text())["recist"]["slice_thickness_source"] == "given"


def test_a_dicom_seg_that_states_no_slice_thickness_keeps_the_spacing(tmp_path):
    """A SEG without SliceThickness (written before 27 Nov 2026 from a series without one) is read with its
    SpacingBetweenSlices filled in; that stand-in is no thickness: the report says 'slice spacing'."""
    import pydicom

    from LiverTumorSegLib.io import read_label_map

    _, _, seg = _seg_of_overlapping_slices(tmp_path)
    dataset = pydicom.dcmread(str(seg))
    del dataset.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SliceThickness
    bare = tmp_path / "bare.dcm"
    dataset.save_as(str(bare))
    assert "seg_slice_thickness_mm" not in read_label_map(bare).meta
    assert read_label_map(seg).meta["seg_slice_thickness_mm"] == pytest.approx(7.0)
    out = tmp_path / "bare.json"
    assert main(["measure", str(bare), "-o", str(out)]) == 0
    recist = json.loads(out.read_text())["recist"]
    assert (recist["slice_thickness_source"], recist["measurable_minimum_mm"]) == ("slice spacing", 10.0)


def test_a_dicom_seg_whose_thickness_is_the_writers_stand_in_reports_slice_spacing(tmp_path):
    """The writer fills a series' missing SliceThickness with the slice spacing (the IOD requires one); measure
    seg.dcm then called that stand-in a 'dicom_seg' thickness. A SEG thickness equal to its spacing is reported as
    'slice spacing' now (the same minimum: a contiguous series' own equal value gives it too)."""
    pytest.importorskip("highdicom")  # the DICOM SEG writer's (Python >= 3.10)
    import pydicom

    from LiverTumorSegLib.dicom_seg import dicom_series_files, write_dicom_seg
    from LiverTumorSegLib.io import read_label_map

    ct, labels = ct_and_labels_with_a_12_mm_lesion()
    write_ct_series(tmp_path / "dicom", ct, slice_thickness_mm=7.0)
    for path in dicom_series_files(tmp_path / "dicom"):  # a de-identified series: no SliceThickness
        dataset = pydicom.dcmread(str(path))
        del dataset.SliceThickness
        dataset.save_as(str(path))
    seg = write_dicom_seg(tmp_path / "seg.dcm", labels, ct.geometry, dicom_series_files(tmp_path / "dicom"))
    measures = pydicom.dcmread(str(seg)).SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert float(measures.SliceThickness) == pytest.approx(5.0)  # the writer's stand-in: the 5 mm spacing
    assert "seg_slice_thickness_mm" not in read_label_map(seg).meta
    out = tmp_path / "seg.json"
    assert main(["measure", str(seg), "-o", str(out)]) == 0
    recist = json.loads(out.read_text())["recist"]
    assert (recist["slice_thickness_source"], recist["measurable_minimum_mm"]) == ("slice spacing", 10.0)


def test_followup_of_two_dicom_segs_takes_each_segs_slice_thickness(tmp_path):
    """followup on DICOM SEG label maps without CTs judged both time points by the 5 mm spacing; the SEGs say 7 mm."""
    import shutil

    _, _, seg = _seg_of_overlapping_slices(tmp_path)
    again = shutil.copy(seg, tmp_path / "again.dcm")  # the same file twice is refused
    out = tmp_path / "change.json"
    assert main(["followup", "--baseline", str(seg), "--followup", str(again), "--alignment", "none", "--no-picture",
                 "-o", str(out)]) == 0
    change = json.loads(out.read_text())
    for when in ("baseline", "followup"):
        assert change[when]["recist"]["slice_thickness_source"] == "dicom_seg"
        assert change[when]["recist"]["measurable_minimum_mm"] == pytest.approx(14.0)
    assert change["baseline"]["recist"]["target_lesion_ids"] == []
