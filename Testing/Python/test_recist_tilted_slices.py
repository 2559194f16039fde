"""RECIST on grids whose slices are tilted from the axial plane: the measurable minimum's slice thickness along the
patient's S axis, and lesions whose true axial axes are cut by a few thick tilted slices."""
import json

import numpy as np
import pytest

from LiverTumorSegLib.inference.lesion_report import lesion_report, slice_limited_axes_warnings
from LiverTumorSegLib.metrics.recist import axial_slice_thickness_mm
from LiverTumorSegLib.volume import ImageGeometry


def _copy(path):
    """A copy of ``path`` beside it: followup refuses the same file as baseline and follow-up."""
    import shutil

    return shutil.copy(path, str(path).replace(".nii.gz", "_again.nii.gz"))


def _rotation(axis, degrees):
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]), "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis].astype(float)


def _geometry(axis, degrees, spacing=(0.8, 0.8, 5.0)):
    return ImageGeometry(spacing=spacing, direction=tuple(_rotation(axis, degrees).ravel()))


@pytest.mark.parametrize("axis, degrees, thickness, expected", [
    ("x", 30.0, 5.0, 5.773503),   # 5 / cos 30 = 5.7735027
    ("y", 30.0, 5.0, 5.773503),
    ("x", 20.0, 7.0, 7.449244),   # 7 / cos 20 = 7.4492442
    ("x", 4.0, 5.0, 5.0),         # under 5 degrees the stored slices are the measurement planes
    ("z", 30.0, 5.0, 5.0),        # turned about S only: true axial slices
    ("x", 0.0, 5.0, 5.0)])
def test_the_thickness_the_minimum_doubles_is_what_a_tilted_slice_covers_along_s(axis, degrees, thickness, expected):
    assert axial_slice_thickness_mm(thickness, _geometry(axis, degrees)) == pytest.approx(expected, abs=1e-6)


def test_on_5_mm_slices_tilted_30_degrees_lesions_are_measurable_from_twice_their_thickness_along_s():
    """RECIST 1.1: measurable from twice the slice thickness above 5 mm. On a grid tilted 30 degrees the axes are
    measured in true axial planes, across which a 5 mm slice covers 5.77 mm: the minimum is 11.55 mm (it was 10 mm,
    from the stored 5 mm), and a lesion of 10.5-11.5 mm is no target there."""
    geometry = _geometry("x", 30.0)
    labels = np.ones((12, 60, 60), np.uint8)
    labels[4:8, 28:32, 23:36] = 2  # 13 x 4 pixels of 0.8 mm on 4 slices: 10.9 mm long in true axial planes
    report = lesion_report(labels, geometry)
    recist, (lesion,) = report["recist"], report["lesions"]
    assert recist["slice_thickness_mm"] == 5.0 and recist["slice_thickness_source"] == "slice spacing"
    assert recist["axial_slice_thickness_mm"] == pytest.approx(5.773503, abs=1e-6)
    assert recist["measurable_minimum_mm"] == pytest.approx(11.547006, abs=1e-6)
    assert 10.0 <= lesion["long_axis_mm"] < 11.5
    assert recist["target_lesion_ids"] == [] and not lesion["recist_target"]
    # the same lesion on the same grid stored axial: 5 mm across, measurable from 10 mm, a target
    axial = lesion_report(labels, _geometry("x", 0.0))
    assert axial["recist"]["axial_slice_thickness_mm"] == 5.0 and axial["recist"]["measurable_minimum_mm"] == 10.0
    assert axial["recist"]["target_lesion_ids"] == [1]


def _one_slice_ellipse(geometry, shape=(9, 80, 60)):
    """An ellipse 30 mm along the slice's j axis (the one tilted) and 12 mm along i, on the one stored slice 4."""
    z, y, x = np.mgrid[:shape[0], :shape[1], :shape[2]]
    labels = np.ones(shape, np.uint8)
    labels[(z == 4) & (((y - 40) * 0.8 / 15.0) ** 2 + ((x - 30) * 0.8 / 6.0) ** 2 <= 1.0)] = 2
    ball = np.ones(shape, np.uint8)
    ball[((z - 4) * 5.0) ** 2 + ((y - 40) * 0.8) ** 2 + ((x - 30) * 0.8) ** 2 <= 100.0] = 2
    return labels, ball


@pytest.mark.parametrize("degrees", [20.0, 25.0, 30.0])
def test_a_lesion_on_one_thick_tilted_slice_is_flagged_with_its_limit_and_its_stored_slice_axes(degrees):
    """A lesion on one 5 mm slice tilted 25 degrees lies, in every true axial plane, in a strip 5 / sin 25 = 11.8 mm
    wide: its 30 x 12 mm were reported 16.1 x 15.5 mm as if exact. The report now says its axes are limited by the
    slices (axial_axes_limited_by_slices, with the limit and its axes in the stored slice) and a warning names it; a
    20 mm ball on the same grid, over 5 slices, is not flagged."""
    geometry = _geometry("x", degrees)
    ellipse, ball = _one_slice_ellipse(geometry)
    (lesion,) = lesion_report(ellipse, geometry)["lesions"]
    limited = lesion["axial_axes_limited_by_slices"]
    assert limited is not None
    assert limited["slices"] == 1 and limited["slice_spacing_mm"] == 5.0
    assert limited["tilt_degrees"] == pytest.approx(degrees, abs=1e-6)
    assert limited["limit_mm"] == pytest.approx(5.0 / np.sin(np.radians(degrees)), rel=1e-9)
    assert limited["long_axis_in_stored_slices_mm"] == pytest.approx(30.0, abs=1.0)
    assert limited["short_axis_in_stored_slices_mm"] == pytest.approx(12.0, abs=1.0)
    assert lesion["long_axis_mm"] < limited["long_axis_in_stored_slices_mm"] - 10.0  # the cut the flag reports
    (warning,) = slice_limited_axes_warnings([lesion])
    assert warning.startswith(f"lesion(s) 1 (1 slice(s) of 5 mm tilted {degrees:.0f} degrees: at most "
                              f"{5.0 / np.sin(np.radians(degrees)):.1f} mm along the tilt; ")
    assert "limited by slice thickness and tilt" in warning
    (round_lesion,) = lesion_report(ball, geometry)["lesions"]
    assert round_lesion["axial_axes_limited_by_slices"] is None
    assert slice_limited_axes_warnings([round_lesion]) == []


def test_no_flag_on_an_axial_grid_or_one_tilted_under_5_degrees():
    for degrees in (0.0, 4.0):
        geometry = _geometry("x", degrees)
        ellipse, _ = _one_slice_ellipse(geometry)
        (lesion,) = lesion_report(ellipse, geometry)["lesions"]
        assert lesion["axial_axes_limited_by_slices"] is None
        assert lesion["long_axis_mm"] == pytest.approx(30.0, abs=1.0)


def test_measure_and_followup_give_the_same_numbers_flag_and_minimum_for_a_lesion_on_a_tilted_grid(tmp_path, capsys):
    """The same label map through measure and through followup (as baseline and follow-up): the same axes, the
    same flag and minimum, and each names the lesion in a warning; measure's summary says why the minimum is above
    10 mm, with the thickness along S."""
    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.io.writers import write_label_map

    geometry = _geometry("x", 25.0)
    labels, _ = _one_slice_ellipse(geometry)
    path = write_label_map(tmp_path / "tilted.nii.gz", labels, geometry)
    assert main(["measure", str(path), "-o", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    measured = json.loads((tmp_path / "m.json").read_text())
    assert "(measurable from 11.0338 mm, twice the 5 mm slices (slice spacing), tilted 25 degrees from the axial " \
           "plane: 5.517 mm along the head-foot axis" in out
    assert main(["followup", "--baseline", str(path), "--followup", str(_copy(path)), "-o", str(tmp_path / "c.json"),
                 "--no-picture"]) == 0
    change = json.loads((tmp_path / "c.json").read_text())
    for key in ("baseline", "followup"):
        (lesion,), (measured_lesion,) = change[key]["lesions"], measured["lesions"]
        for name in ("long_axis_mm", "short_axis_mm", "axial_axes_limited_by_slices"):
            assert lesion[name] == measured_lesion[name]
        assert change[key]["recist"]["measurable_minimum_mm"] == measured["recist"]["measurable_minimum_mm"]
    assert [w for w in measured["warnings"] if "too few slices" in w] != []
    named = [w for w in change["warnings"] if "too few slices" in w]
    assert [w.split(" (")[0] for w in named] == ["baseline: lesion(s) 1", "follow-up: lesion(s) 1"]


def test_followup_warns_when_equal_slices_are_tilted_in_one_scan_only():
    from LiverTumorSegLib.followup import _slice_thickness_warnings

    flat = {"recist": {"slice_thickness_mm": 5.0, "axial_slice_thickness_mm": 5.0, "measurable_minimum_mm": 10.0,
                       "slice_thickness_source": "slice spacing"}}
    tilted = {"recist": {"slice_thickness_mm": 5.0, "axial_slice_thickness_mm": 5.773503,
                         "measurable_minimum_mm": 11.547006, "slice_thickness_source": "slice spacing"}}
    (warning,) = _slice_thickness_warnings(flat, tilted)
    assert "the follow-up 5 mm slices (slice spacing), tilted 30 degrees from the axial plane: 5.774 mm along the " \
           "head-foot axis" in warning and "measurable from 11.547 mm" in warning
    assert _slice_thickness_warnings(flat, flat) == [] and _slice_thickness_warnings(tilted, tilted) == []
    # an older report without the key: its slices count as they are
    older = {"recist": {k: v for k, v in flat["recist"].items() if k != "axial_slice_thickness_mm"}}
    assert _slice_thickness_warnings(older, flat) == []


def _capped_ellipse_and_ball():
    """On 5 mm slices tilted 25 degrees: lesion 1, the 30 x 12 mm ellipse on one slice (16.1 mm long in true axial
    planes, capped by its slice: axial_axes_limited_by_slices), and lesion 2, a ball of radius 6.5 mm over three
    slices (14.6 mm, not capped). Both are above the 11.03 mm minimum (twice 5 / cos 25)."""
    shape = (12, 80, 110)
    z, y, x = np.mgrid[:shape[0], :shape[1], :shape[2]]
    labels = np.ones(shape, np.uint8)
    labels[(z == 4) & (((y - 40) * 0.8 / 15.0) ** 2 + ((x - 30) * 0.8 / 6.0) ** 2 <= 1.0)] = 2
    labels[((z - 6) * 5.0) ** 2 + ((y - 40) * 0.8) ** 2 + ((x - 80) * 0.8) ** 2 <= 6.5 ** 2] = 2
    return labels, _geometry("x", 25.0)


def test_a_lesion_whose_axial_axes_the_slices_cap_is_no_recist_target_as_one_cut_by_the_scan_edge_is_not():
    """The capped ellipse (16.1 mm, its 30 mm cut by its slice) was chosen as a RECIST target beside the ball and
    its capped long axis summed: 30.2 mm. Like a lesion cut by the scan's edge it is not reproducibly measurable,
    so it is no target now: the target is the ball alone, the sum its 14.6 mm, and the warning says why."""
    labels, geometry = _capped_ellipse_and_ball()
    report = lesion_report(labels, geometry)
    capped, ball = report["lesions"]
    assert capped["axial_axes_limited_by_slices"] is not None and ball["axial_axes_limited_by_slices"] is None
    # the ball's true 13 mm, sampled on the tilted voxels' staircase (14.11 mm before 1 Dec 2026: the sampling lattice
    # then went through the volume's first voxel, which made the axes depend on how the scan was stored)
    assert capped["long_axis_mm"] == pytest.approx(16.08, abs=0.05) and ball["long_axis_mm"] == pytest.approx(
        14.56, abs=0.05)
    assert report["recist"]["measurable_minimum_mm"] == pytest.approx(11.03378, abs=1e-5)
    assert report["recist"]["target_lesion_ids"] == [2]
    assert report["recist"]["sum_of_diameters_mm"] == pytest.approx(ball["long_axis_mm"], abs=1e-9)
    assert not capped["recist_target"] and ball["recist_target"]
    assert report["recist"]["water_density_passed_over_ids"] == []  # no water: nothing passed over as such
    (warning,) = slice_limited_axes_warnings(report["lesions"])
    assert warning.startswith("lesion(s) 1 (1 slice(s) of 5 mm tilted 25 degrees: at most 11.8 mm along the tilt")
    assert "they are not chosen as RECIST targets" in warning
    from LiverTumorSegLib.inference.lesion_report import lesion_summary_line
    assert lesion_summary_line(capped).endswith("(axial axes limited by its tilted slices (at most 11.8 mm): not a "
                                                "target)")
    assert lesion_summary_line(ball).endswith("(target)")
    from LiverTumorSegLib import mrml
    assert mrml.lesion_location_text(capped).endswith(", axes limited by tilted slices")


def test_measure_csv_and_followup_agree_on_the_target_and_the_csv_gives_the_limit(tmp_path):
    """measure (JSON and CSV) and followup (as baseline and follow-up) choose the same target, the ball, and the
    CSV's axial_axes_limit_mm gives the capped lesion's limit, 5 / sin 25 = 11.83 mm (empty for the ball)."""
    import csv

    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.io.writers import write_label_map

    labels, geometry = _capped_ellipse_and_ball()
    path = write_label_map(tmp_path / "tilted.nii.gz", labels, geometry)
    assert main(["measure", str(path), "-o", str(tmp_path / "m.json")]) == 0
    assert main(["measure", str(path), "-o", str(tmp_path / "m.csv")]) == 0
    measured = json.loads((tmp_path / "m.json").read_text())
    assert measured["recist"]["target_lesion_ids"] == [2]
    assert [w for w in measured["warnings"] if "not chosen as RECIST targets" in w] != []
    with open(tmp_path / "m.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["id"], r["recist_target"], r["axial_axes_limit_mm"]) for r in rows] == [("1", "0", "11.83"),
                                                                                        ("2", "1", "")]
    assert float(rows[0]["recist_sum_of_diameters_mm"]) == pytest.approx(14.56, abs=0.01)
    assert main(["followup", "--baseline", str(path), "--followup", str(_copy(path)), "-o", str(tmp_path / "c.json"),
                 "--no-picture"]) == 0
    change = json.loads((tmp_path / "c.json").read_text())
    assert change["sum_of_diameters"]["target_lesion_ids"] == [2]
    assert change["sum_of_diameters"]["baseline_mm"] == pytest.approx(measured["recist"]["sum_of_diameters_mm"])
    for key in ("baseline", "followup"):
        assert change[key]["recist"]["target_lesion_ids"] == [2]


def test_an_unused_given_thickness_on_tilted_slices_names_the_thickness_along_s_the_minimum_doubles():
    """--slice-thickness-mm 1 on 5 mm slices tilted 30 degrees is not used (thinner than the spacing); the warning
    said the minimum was 'judged from the 5 mm slice spacing', while it doubles 5 / cos 30 = 5.774 mm: 11.547 mm."""
    from LiverTumorSegLib.metrics.recist import given_slice_thickness_warning

    warning = given_slice_thickness_warning(_geometry("x", 30.0), 1.0)
    assert warning.startswith("--slice-thickness-mm 1 mm was not used: it is thinner than the 5 mm spacing")
    assert warning.endswith("judged from the 5 mm slice spacing, tilted 30 degrees from the axial plane: 5.774 mm "
                            "along the head-foot axis, across the axial planes the lesions are measured in "
                            "(measurable from 11.547 mm)")
    # an axial grid's warning is as it was
    assert given_slice_thickness_warning(_geometry("x", 0.0), 1.0).endswith("judged from the 5 mm slice spacing")


def test_followup_says_a_targets_follow_up_lesion_capped_by_tilted_slices_may_understate_the_response(tmp_path):
    """Baseline: the 30 x 12 mm ellipse over 3 slices of 5 mm tilted 25 degrees (33.0 mm in true axial planes, not
    capped: the target). Follow-up: the same ellipse on 1 slice (capped: 16.1 mm). PR by the numbers (-51 %), but
    the lesion did not shrink in plane: the reason now says the target's follow-up axes may be cut short by the
    slices. The follow-up warning does not call the follow-up lesion 'not chosen as a target' (it is the target's)."""
    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.io.writers import write_label_map

    geometry = _geometry("x", 25.0)
    shape = (14, 80, 60)
    z, y, x = np.mgrid[:shape[0], :shape[1], :shape[2]]
    paths = []
    for slices in (3, 1):
        labels = np.ones(shape, np.uint8)
        labels[(np.abs(z - 6) <= slices // 2) & (((y - 40) * 0.8 / 15.0) ** 2 + ((x - 30) * 0.8 / 6.0) ** 2 <= 1.0)] = 2
        paths.append(write_label_map(tmp_path / f"s{slices}.nii.gz", labels, geometry))
    assert main(["followup", "--baseline", str(paths[0]), "--followup", str(paths[1]), "-o", str(tmp_path / "c.json"),
                 "--no-picture"]) == 0
    change = json.loads((tmp_path / "c.json").read_text())
    assert change["baseline"]["lesions"][0]["axial_axes_limited_by_slices"] is None
    assert change["followup"]["lesions"][0]["axial_axes_limited_by_slices"] is not None
    assert change["sum_of_diameters"]["target_lesion_ids"] == [1]
    assert change["sum_of_diameters"]["baseline_mm"] == pytest.approx(32.96, abs=0.05)
    assert change["sum_of_diameters"]["followup_mm"] == pytest.approx(16.08, abs=0.05)
    assert change["response"] == "PR"
    assert change["response_reason"].endswith(
        "; target lesion(s) 1 lie on too few of the follow-up's tilted slices (axial_axes_limited_by_slices): their "
        "axes may be cut short by the slices, so the follow-up sum of diameters may be short of the lesions' and the "
        "response may be understated; by their long axes in the stored slices (long_axis_in_stored_slices_mm, where "
        "longer) the follow-up sum would be 29.8 mm (-9.7 % from the baseline's 33.0 mm): SD, not PR")
    assert change["lesions"][0]["followup_axial_axes_limited_by_slices"] is True
    assert "baseline_axial_axes_limited_by_slices" not in change["lesions"][0]
    (named,) = [w for w in change["warnings"] if "too few slices" in w]
    assert named.startswith("follow-up: lesion(s) 1 ") and "not chosen as RECIST targets" not in named


def _ellipse_on_slices(slices, half_long_mm, shape=(14, 100, 60)):
    """A label map on 5 mm slices tilted 25 degrees: liver, and an ellipse of ``half_long_mm`` x 6 mm half axes in the
    stored slices over ``slices`` slices (1: its axial axes capped by the slices, 16.6 mm long; 3: not capped)."""
    from LiverTumorSegLib.volume import CTVolume

    z, y, x = np.mgrid[:shape[0], :shape[1], :shape[2]]
    labels = np.ones(shape, np.uint8)
    labels[(np.abs(z - 6) <= slices // 2) & (((y - 50) * 0.8 / half_long_mm) ** 2 + ((x - 30) * 0.8 / 6.0) ** 2
                                            <= 1.0)] = 2
    return CTVolume(labels, _geometry("x", 25.0))


def test_an_sd_that_a_capped_targets_stored_slice_axis_makes_pd_gives_that_sum_and_the_rows_flag_it():
    """Baseline: a 19.2 mm target over 3 slices. Follow-up: a 50 x 12 mm ellipse on 1 slice, capped at 16.6 mm in
    true axial planes (50.4 mm in the stored slice). SD by the axial axes (-13.3 %), which stands; the reason said
    only 'may be understated', now also that the stored-slice axes give 50.4 mm (+162.5 %), PD. The row carries
    followup_axial_axes_limited_by_slices, and the printed summary says it on the row."""
    from LiverTumorSegLib.followup import change_summary_lines, compare_followup

    change = compare_followup(_ellipse_on_slices(3, 8.0), _ellipse_on_slices(1, 25.0))
    limit = change["followup"]["lesions"][0]["axial_axes_limited_by_slices"]
    assert limit["long_axis_in_stored_slices_mm"] == pytest.approx(50.4)
    assert change["sum_of_diameters"]["baseline_mm"] == pytest.approx(19.2)
    assert change["sum_of_diameters"]["followup_mm"] == pytest.approx(16.64, abs=0.01)
    assert change["response"] == "SD"  # RECIST 1.1 by the axial axes: unchanged
    assert change["response_reason"].endswith(
        "response may be understated; by their long axes in the stored slices (long_axis_in_stored_slices_mm, where "
        "longer) the follow-up sum would be 50.4 mm (+162.5 % from the baseline's 19.2 mm): PD, not SD")
    row = change["lesions"][0]
    assert row["followup_axial_axes_limited_by_slices"] is True and "baseline_axial_axes_limited_by_slices" not in row
    (line,) = [t for t in change_summary_lines(change) if t.startswith("  1:")]
    assert line.endswith("; axes limited by the follow-up's tilted slices: follow-up size may be cut short")


def test_a_baseline_lesion_capped_by_tilted_slices_is_present_with_no_long_axis_change_as_one_cut_by_the_edge():
    """Capped at baseline (1 slice, no target: 16.1 mm in true axial planes, 29.8 mm in its stored slice), whole at
    follow-up (3 slices: 33.0 mm): its row read 'grown' (+104.9 %) against the capped baseline, and the non-target
    growth warning named it as growth (16.1 -> 33.0 mm). Like a baseline lesion cut by the scan's edge it is now
    'present', its long-axis change None (a change against a lower bound); its volume (not cut by the slices) keeps
    its change, 1.42 -> 4.25 mL (+200 %: one slice against three). baseline_axial_axes_limited_by_slices flags the
    row, not the follow-up's key."""
    from LiverTumorSegLib.followup import change_summary_lines, compare_followup

    change = compare_followup(_ellipse_on_slices(1, 15.0), _ellipse_on_slices(3, 15.0))
    assert change["sum_of_diameters"]["target_lesion_ids"] == []
    row = change["lesions"][0]
    assert row["baseline_axial_axes_limited_by_slices"] is True and "followup_axial_axes_limited_by_slices" not in row
    assert row["status"] == "present" and change["status_counts"]["present"] == 1
    assert change["status_counts"]["grown"] == 0
    assert row["baseline_long_axis_mm"] == pytest.approx(16.08, abs=0.01)
    assert row["followup_long_axis_mm"] == pytest.approx(32.96, abs=0.01)
    assert row["long_axis_change_mm"] is None and row["long_axis_change_percent"] is None
    assert row["volume_change_percent"] == pytest.approx(200.0)
    assert row["volume_change_ml"] == pytest.approx(row["followup_volume_ml"] - row["baseline_volume_ml"])
    assert not [w for w in change["warnings"] if w.startswith("non-target lesion(s)")]
    assert change["response"] == "Non-CR/non-PD"
    (line,) = [t for t in change_summary_lines(change) if t.startswith("  1:")]
    assert line.startswith("  1: present ")
    assert line.endswith("; axes limited by the baseline's tilted slices: baseline size may be cut short, long-axis "
                         "change not measured")
    # gone at follow-up it is disappeared, as a lesion cut by the edge is
    from LiverTumorSegLib.volume import CTVolume

    empty = _ellipse_on_slices(3, 15.0)
    gone = CTVolume(np.where(empty.array == 2, 1, empty.array).astype(np.uint8), empty.geometry)
    assert compare_followup(_ellipse_on_slices(1, 15.0), gone)["lesions"][0]["status"] == "disappeared"


def test_a_capped_baseline_lesion_beside_a_target_neither_reads_grown_nor_is_named_as_non_target_growth():
    """A whole target (a ball over 3 slices, 14.6 mm) and the capped ellipse (16.1 mm on 1 slice) at baseline; at
    follow-up the ball is unchanged and the ellipse lies over 3 slices (33.0 mm): the ellipse's row read 'grown' and
    the warnings said non-target lesion 2 (16.1 -> 33.0 mm) grew by 20 % and 5 mm or more. It is 'present' now, with
    no long-axis change and no such warning; the target's row and the response (SD, 14.6 -> 14.6 mm) are as before."""
    from LiverTumorSegLib.followup import compare_followup
    from LiverTumorSegLib.volume import CTVolume

    base_labels, geometry = _capped_ellipse_and_ball()
    follow_labels = base_labels.copy()
    z, y, x = np.mgrid[:base_labels.shape[0], :base_labels.shape[1], :base_labels.shape[2]]
    follow_labels[(np.abs(z - 4) <= 1) & (((y - 40) * 0.8 / 15.0) ** 2 + ((x - 30) * 0.8 / 6.0) ** 2 <= 1.0)] = 2
    change = compare_followup(CTVolume(base_labels, geometry), CTVolume(follow_labels, geometry))
    rows = {tuple(e["baseline_ids"]): e for e in change["lesions"]}
    base = {d["id"]: d for d in change["baseline"]["lesions"]}
    (capped_id,) = [i for i, d in base.items() if d["axial_axes_limited_by_slices"]]
    (target_id,) = change["sum_of_diameters"]["target_lesion_ids"]
    capped, target = rows[(capped_id,)], rows[(target_id,)]
    assert capped["status"] == "present" and capped["long_axis_change_percent"] is None
    assert capped["baseline_long_axis_mm"] == pytest.approx(16.08, abs=0.01)
    assert capped["followup_long_axis_mm"] == pytest.approx(32.96, abs=0.05)
    assert not [w for w in change["warnings"] if w.startswith("non-target lesion(s)")]
    assert target["status"] == "stable" and target["long_axis_change_percent"] == pytest.approx(0.0)
    assert change["response"] == "SD"
    assert change["sum_of_diameters"]["baseline_mm"] == pytest.approx(14.56, abs=0.05)
    assert change["sum_of_diameters"]["followup_mm"] == pytest.approx(change["sum_of_diameters"]["baseline_mm"])


def test_a_follow_up_lesion_capped_by_tilted_slices_keeps_its_status_as_one_cut_by_the_follow_up_edge():
    """A capped follow-up lesion is treated as one cut by the follow-up scan's edge is (followup_cut_by_scan_edge
    leaves the row's status and change measured, a lower bound, and flags the row), whether the row holds a target
    or not (the status does not look at it): the whole ellipse at baseline (33.0 mm) reads 'shrunk' (-51.2 %)
    against its capped follow-up lesion (16.1 mm), flagged followup_axial_axes_limited_by_slices, not 'present'."""
    from LiverTumorSegLib.followup import compare_followup

    row = compare_followup(_ellipse_on_slices(3, 15.0), _ellipse_on_slices(1, 15.0))["lesions"][0]
    assert row["status"] == "shrunk" and row["followup_axial_axes_limited_by_slices"] is True
    assert row["long_axis_change_percent"] == pytest.approx(-51.20, abs=0.01)
    assert "baseline_axial_axes_limited_by_slices" not in row


def test_a_pd_from_a_nadir_that_counted_a_capped_target_says_the_stored_slice_axes_give_sd():
    """First follow-up: the 33.0 mm target on 1 slice (capped at 16.1 mm; 29.8 mm in the stored slice): PR, whose
    16.1 mm becomes the nadir (--previous). Second follow-up: the same lesion over 3 slices again, 33.0 mm: PD,
    +104.9 % from the nadir, which stands (RECIST 1.1 by the axial axes); the reason said no more, and now says that
    nadir counted a capped target, and by the stored-slice axes the nadir would be 29.8 mm and the sum +10.7 % from
    it: SD."""
    from LiverTumorSegLib.followup import change_to_json, compare_followup

    baseline = _ellipse_on_slices(3, 15.0)
    first = json.loads(change_to_json(compare_followup(baseline, _ellipse_on_slices(1, 15.0))))
    assert first["response"] == "PR" and first["lesions"][0]["followup_axial_axes_limited_by_slices"] is True
    assert first["sum_of_diameters"]["followup_mm"] == pytest.approx(16.08, abs=0.01)
    stored = first["followup"]["lesions"][0]["axial_axes_limited_by_slices"]["long_axis_in_stored_slices_mm"]
    assert stored == pytest.approx(29.78, abs=0.01)
    change = compare_followup(baseline, _ellipse_on_slices(3, 15.0), previous_change=first)
    assert change["response"] == "PD"
    assert change["sum_of_diameters"]["nadir_mm"] == pytest.approx(16.08, abs=0.01)
    assert change["response_reason"].endswith(
        "; the nadir (16.1 mm, the previous follow-up's sum) counts target lesion(s) in its row(s) 1 whose axes its "
        "tilted slices capped (axial_axes_limited_by_slices): it may be short of the lesions' sum, so the "
        "progression may be overstated; by the long axes in the stored slices (long_axis_in_stored_slices_mm, where "
        "longer) the nadir would be 29.8 mm and this follow-up's sum 33.0 mm (+10.7 % from it): SD, not PD")
    # a nadir from whole lesions is left as it was: no such words
    whole = json.loads(change_to_json(compare_followup(baseline, _ellipse_on_slices(3, 11.0))))
    assert not any("followup_axial_axes_limited_by_slices" in e for e in whole["lesions"])
    again = compare_followup(baseline, _ellipse_on_slices(3, 15.0), previous_change=whole)
    assert "nadir (" not in again["response_reason"]


def test_a_tilted_scan_stored_flipped_or_moved_measures_the_same_lesion_axes_and_position():
    """The sampling lattice of a tilted grid's axial planes went through the volume's first voxel, another corner
    for each storage order: the same voxels stored with i and k reversed read a 16.82 x 12.74 mm lesion as
    16.82 x 13.32 mm and put another's axial position 1.6 mm off (the lesion-report audit); through the voxel centre
    nearest the LPS origin instead, a scan moved by 1.5 mm read 33.89 x 25.73 mm as 32.55 x 28.59 mm (the
    invariance audit). It goes through the lesion's own first voxel centre now."""
    from LiverTumorSegLib.metrics.recist import lesion_axes

    rotation = _rotation("x", 20.0)
    shape_xyz = (90, 90, 14)
    scaled = rotation @ np.diag([0.7, 0.7, 5.0])  # columns: the i, j, k steps in mm
    origin = np.array([-30.0, -30.0, -20.0])
    ijk = np.stack(np.meshgrid(*map(np.arange, shape_xyz), indexing="ij"), -1).reshape(-1, 3)
    lps = ijk @ scaled.T + origin
    c, s = np.cos(0.5), np.sin(0.5)
    turn = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    results = []
    for centre, semi in (((1.0, 2.0, 12.0), (14.0, 9.0, 10.0)), ((5.0, 5.0, 35.0), (8.0, 6.0, 9.0))):
        inside = ((((lps - centre) @ turn) / semi) ** 2).sum(1) <= 1
        mask_xyz = inside.reshape(shape_xyz)
        stored = ImageGeometry(spacing=(0.7, 0.7, 5.0), origin=tuple(origin), direction=tuple(rotation.ravel()))
        flipped_direction = rotation @ np.diag([-1.0, 1.0, -1.0])
        flipped_origin = origin + scaled[:, 0] * (shape_xyz[0] - 1) + scaled[:, 2] * (shape_xyz[2] - 1)
        flipped = ImageGeometry(spacing=(0.7, 0.7, 5.0), origin=tuple(flipped_origin),
                                direction=tuple(flipped_direction.ravel()))
        as_stored = lesion_axes(np.ascontiguousarray(mask_xyz.transpose(2, 1, 0)), stored)
        reversed_ = lesion_axes(np.ascontiguousarray(mask_xyz[::-1, :, ::-1].transpose(2, 1, 0)), flipped)
        # and moved: anchored at the voxel centre nearest the LPS origin, a scan moved 1.5 mm measured otherwise
        moved = lesion_axes(np.ascontiguousarray(mask_xyz.transpose(2, 1, 0)), ImageGeometry(
            spacing=stored.spacing, origin=tuple(origin + (37.3, -1.5, 100.7)), direction=stored.direction))
        for key in ("long_axis_mm", "short_axis_mm"):
            assert reversed_[key] == pytest.approx(as_stored[key], abs=1e-9), key
            assert moved[key] == pytest.approx(as_stored[key], abs=1e-9), key
        ends = [sorted(map(tuple, np.round(r["long_axis"]["end_points_lps_mm"], 6))) for r in (as_stored, reversed_)]
        assert ends[0] == ends[1]
        results.append(as_stored)
    assert results[0]["long_axis_mm"] == pytest.approx(28.3, abs=1.5)  # the 28 x 18 mm ellipse, within a voxel
