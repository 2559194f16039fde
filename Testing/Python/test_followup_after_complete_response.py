"""The response of a follow-up after a complete response (CR) at the previous assessment.

RECIST working group FAQ (recist.eortc.org, "Does a new lesion always result in PD?"): lesions that disappear and
reappear are not PD by themselves unless the sum rule is met or CR (overall) was assigned at the previous
assessment, after which the reappearance of any lesion is PD. A lesion at a new site is judged by RECIST 1.1's
new-lesion rule (PD when unequivocal; an equivocal one is followed, and PD dates from its first scan when a later
scan confirms it). All label maps are generated (1 mm voxels), compared without alignment.
"""
import json

import pytest

from LiverTumorSegLib.cli import main
from LiverTumorSegLib.followup import change_summary_lines, compare_followup
from LiverTumorSegLib.io import write_label_map
from LiverTumorSegLib.metrics.recist import recist_response
from LiverTumorSegLib.volume import ImageGeometry
from test_followup import _labels_with_lesions as _labels  # noqa: E402 - the 1 mm liver block with tumor boxes

TARGET = (slice(5, 8), slice(10, 22), slice(10, 22))          # 12 x 12 voxels: long axis 16.6 mm, a target
SMALL_TARGET = (slice(6, 7), slice(15, 18), slice(15, 18))    # inside TARGET, 3 x 3 voxels: 3.8 mm
NON_TARGET = (slice(5, 7), slice(30, 36), slice(30, 36))      # 6 x 6 voxels: 8.1 mm, under the measurable 10 mm
SMALL_NON_TARGET = (slice(6, 7), slice(32, 34), slice(32, 34))  # inside NON_TARGET, 2 x 2 voxels: 2.4 mm
NEW_SITE = (slice(6, 7), slice(38, 41), slice(8, 11))         # 3 x 3 voxels away from every baseline lesion


BASELINE = [TARGET, NON_TARGET]


def test_recist_response_after_a_complete_response_is_pd_for_any_baseline_lesion_back():
    """Every target still gone (sum 0 mm), a non-target back: PD after a CR (it read PR, -100 % from the baseline);
    without targets at baseline, a lesion back: PD (it read Non-CR/non-PD). Not known to be a CR: unchanged."""
    response, reason = recist_response(30.0, 0.0, False, 1, 2, 0.0, True)
    assert response == "PD", reason
    assert "non-target lesion(s) of the baseline present again after the complete response" in reason
    assert recist_response(30.0, 0.0, False, 1, 2, 0.0, None)[0] == "PR"
    assert recist_response(30.0, 0.0, False, 1, 2, None, True)[0] == "PD"   # a CR's nadir is 0 mm
    response, reason = recist_response(None, None, False, 1, 2, None, True)
    assert response == "PD" and "present again after the complete response" in reason, reason
    assert recist_response(None, None, False, 1, 2, None, None)[0] == "Non-CR/non-PD"
    assert recist_response(None, None, False, 0, 2, None, True)[0] == "CR"    # still nothing: the CR stands
    assert recist_response(30.0, 0.0, False, 0, 2, None, True)[0] == "CR"
    with pytest.raises(ValueError, match="sum of diameters is 0 mm"):
        recist_response(30.0, 4.0, False, 2, 2, 10.0, True)


@pytest.mark.parametrize("follow_boxes, expected_after_cr, expected_otherwise", [
    ([SMALL_TARGET, NON_TARGET], "PD", "PR"),    # the target back at 3.8 mm (non-targets at baseline: PR without)
    ([SMALL_NON_TARGET], "PD", "PR"),            # only a non-target back, at 2.4 mm; every target gone
    ([], "CR", "CR"),                            # nothing back: the CR stands
], ids=["target_back", "non_target_back", "nothing_back"])
def test_after_a_complete_response_any_baseline_lesion_back_is_pd(follow_boxes, expected_after_cr,
                                                                  expected_otherwise):
    base, follow = _labels(BASELINE), _labels(follow_boxes)
    change = compare_followup(base, follow, alignment="none", after_complete_response=True)
    assert change["sum_of_diameters"]["target_lesion_ids"] == [1]
    assert change["response"] == expected_after_cr, change["response_reason"]
    assert change["after_complete_response"] is True
    assert change["sum_of_diameters"]["nadir_mm"] == 0.0
    assert "after the complete response given" in change["response_criteria"]
    back = [e["number"] for e in change["lesions"] if e.get("reappeared_after_complete_response")]
    assert len(back) == len(follow_boxes)
    lines = change_summary_lines(change)
    assert sum("seen again after the complete response: PD" in line for line in lines) == len(follow_boxes)
    plain = compare_followup(base, follow, alignment="none")
    assert plain["response"] == expected_otherwise, plain["response_reason"]
    assert plain["after_complete_response"] is False
    assert not any("reappeared_after_complete_response" in e for e in plain["lesions"])


def test_after_a_complete_response_a_small_lesion_at_a_new_site_is_equivocal_and_the_reason_says_why():
    """A 3.8 mm lesion where no baseline lesion was: a new lesion under the 5 mm --min-new-lesion-mm, equivocal;
    the CR stands, and the reason and the printed row say why a baseline lesion back at that size would be PD."""
    change = compare_followup(_labels(BASELINE), _labels([NEW_SITE]), alignment="none",
                              after_complete_response=True)
    assert change["response"] == "CR", change["response_reason"]
    reason = change["response_reason"]
    assert "equivocal, not counted" in reason
    assert "a baseline lesion seen again is PD at any size, but these lie where no baseline lesion was" in reason
    (row,) = change["lesions"][2:]
    assert row["status"] == "new" and row["unequivocal"] is False
    assert "reappeared_after_complete_response" not in row
    line = [x for x in change_summary_lines(change) if x.startswith(f"  {row['number']}:")][0]
    assert "a new site, not a lesion seen again after the complete response" in line
    plain = compare_followup(_labels(BASELINE), _labels([NEW_SITE]), alignment="none")
    assert plain["response"] == "CR"
    assert "where no baseline lesion was" not in plain["response_reason"]


def test_followup_after_complete_response_option(tmp_path, capsys):
    """--after-complete-response reaches the response and change.json; with a nadir above 0 mm it is refused before
    anything is written."""
    geometry = ImageGeometry(spacing=(1.0, 1.0, 1.0))
    base = write_label_map(tmp_path / "base.nii.gz", _labels(BASELINE).array, geometry)
    follow = write_label_map(tmp_path / "follow.nii.gz", _labels([SMALL_NON_TARGET]).array, geometry)
    out = tmp_path / "change.json"
    args = ["followup", "--baseline", str(base), "--followup", str(follow), "--alignment", "none", "--no-picture"]
    assert main(args + ["--after-complete-response", "-o", str(out)]) == 0
    report = json.loads(out.read_text())
    assert (report["response"], report["after_complete_response"]) == ("PD", True)
    assert "seen again after the complete response: PD" in capsys.readouterr().out
    assert main(args + ["-o", str(tmp_path / "plain.json")]) == 0
    assert json.loads((tmp_path / "plain.json").read_text())["response"] == "PR"
    bad = tmp_path / "bad.json"
    assert main(args + ["--after-complete-response", "--nadir-sum-mm", "12", "-o", str(bad)]) == 2
    assert "--nadir-sum-mm gives 12 mm" in capsys.readouterr().err
    assert not bad.exists()
    assert main(args + ["--after-complete-response", "--nadir-sum-mm", "0", "-o", str(bad)]) == 0


def _row(length_voxels, y=20):
    """A tumor row of ``length_voxels`` voxels of 1 mm along x (long axis exactly that many mm), slices 5-6."""
    return (slice(5, 7), slice(y, y + 1), slice(4, 4 + length_voxels))


def test_followup_previous_carries_the_complete_response_and_the_nadir(tmp_path, capsys):
    """--previous CHANGE_JSON: the previous follow-up's report gives this one its nadir (the smaller of that report's
    nadir and follow-up sum) and its CR. A non-target back after a CR: PD (PR without --previous); a sum of 25 -> 20
    -> 25 mm: PD from the nadir of 20 mm (+25 %, +5 mm), SD from the baseline alone. A report of another baseline,
    one given with --nadir-sum-mm, and one that -o would replace are refused before anything is written."""
    geometry = ImageGeometry(spacing=(1.0, 1.0, 1.0))

    def write(name, boxes):
        return str(write_label_map(tmp_path / f"{name}.nii.gz", _labels(boxes).array, geometry))

    def followup(base, follow, out, *more):
        code = main(["followup", "--baseline", base, "--followup", follow, "--alignment", "none", "--no-picture",
                     "-o", str(tmp_path / out), *more])
        return code, (json.loads((tmp_path / out).read_text()) if code == 0 else None)

    base, gone, back = write("base", BASELINE), write("gone", []), write("back", [SMALL_NON_TARGET])
    assert followup(base, gone, "first.json")[1]["response"] == "CR"
    code, change = followup(base, back, "second.json", "--previous", str(tmp_path / "first.json"))
    assert code == 0 and change["response"] == "PD" and change["after_complete_response"] is True
    assert change["previous"] == {"response": "CR", "followup_mm": 0.0, "nadir_mm": None}
    assert change["inputs"]["previous"] == str(tmp_path / "first.json")
    assert any("previous change report's response was CR" in w for w in change["warnings"])
    assert followup(base, back, "plain.json")[1]["response"] == "PR"
    previous = json.loads((tmp_path / "first.json").read_text())
    library = compare_followup(_labels(BASELINE), _labels([SMALL_NON_TARGET]), alignment="none",
                               previous_change=previous)
    assert library["response"] == "PD" and library["previous"]["response"] == "CR"
    from LiverTumorSegLib.errors import InputError
    with pytest.raises(InputError, match="not both"):
        compare_followup(_labels(BASELINE), _labels([]), alignment="none", previous_change=previous, nadir_sum_mm=0.0)

    rows = [write(f"row{n}", [_row(n)]) for n in (25, 20)]
    first = followup(rows[0], rows[1], "sd.json")[1]
    assert first["response"] == "SD" and first["sum_of_diameters"]["followup_mm"] == pytest.approx(20.0)
    again = write("again", [_row(25)])  # the same lesion again, in another file (the same file is refused)
    code, change = followup(rows[0], again, "pd.json", "--previous", str(tmp_path / "sd.json"))
    assert change["response"] == "PD" and change["sum_of_diameters"]["nadir_mm"] == pytest.approx(20.0)
    assert change["after_complete_response"] is False
    assert followup(rows[0], again, "same.json")[1]["response"] == "SD"

    (tmp_path / "base.nii.gz.json").write_text('{"response": "CR"}')
    capsys.readouterr()
    for extra, message in ((["--previous", str(tmp_path / "first.json")], "made against another baseline"),
                           (["--previous", str(tmp_path / "sd.json"), "--nadir-sum-mm", "20"], "not both"),
                           (["--previous", str(tmp_path / "sd.json"), "--overwrite"], "also the report to write"),
                           (["--previous", str(tmp_path / "missing.json")], "does not exist"),
                           (["--previous", rows[0]], "not a readable JSON file"),
                           (["--previous", str(tmp_path / "base.nii.gz.json")], "is not a followup change report")):
        out = "sd.json" if "--overwrite" in extra else "refused.json"
        before = (tmp_path / "sd.json").read_bytes()
        assert main(["followup", "--baseline", rows[0], "--followup", again, "--alignment", "none",
                     "--no-picture", "-o", str(tmp_path / out), *extra]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "refused.json").exists() and (tmp_path / "sd.json").read_bytes() == before


@pytest.mark.parametrize("field, value, said", [
    ("followup_mm", "abc", "sum_of_diameters.followup_mm is 'abc'"),
    ("followup_mm", -5.0, "sum_of_diameters.followup_mm is -5.0"),
    ("nadir_mm", [1], "sum_of_diameters.nadir_mm is [1]"),
    ("baseline_mm", True, "sum_of_diameters.baseline_mm is True"),
    ("target_lesion_ids", 5, "sum_of_diameters.target_lesion_ids is 5"),
    ("response", "XX", "response is 'XX', not one of CR, PR, SD, PD"),
    ("baseline", [1], "baseline is [1], not an object"),
])
def test_a_previous_change_report_with_a_wrong_field_is_refused_before_any_work(tmp_path, capsys, field, value, said):
    """--previous read a change report's fields unchecked: a sum "abc" (or a list, a number for the target list) ended
    in "internal error" after the registration, a sum of -5 mm was taken as the nadir (below 0 mm: read as after a
    complete response, every lesion seen again PD), a response "XX" passed. Each is refused, naming the field, before
    anything is read; the library's previous_change the same."""
    geometry = ImageGeometry(spacing=(1.0, 1.0, 1.0))
    base = str(write_label_map(tmp_path / "base.nii.gz", _labels(BASELINE).array, geometry))
    same = str(write_label_map(tmp_path / "same.nii.gz", _labels(BASELINE).array, geometry))
    first = tmp_path / "first.json"
    assert main(["followup", "--baseline", base, "--followup", same, "--alignment", "none", "--no-picture",
                 "-o", str(first)]) == 0
    change = json.loads(first.read_text())
    holder = change if field in ("response", "baseline") else change["sum_of_diameters"]
    holder[field] = value
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(change))
    capsys.readouterr()
    assert main(["followup", "--baseline", base, "--followup", same, "--alignment", "none", "--no-picture",
                 "-o", str(tmp_path / "second.json"), "--previous", str(bad)]) == 2
    err = capsys.readouterr().err
    assert said in err and "internal error" not in err and not (tmp_path / "second.json").exists()
    from LiverTumorSegLib.errors import InputError
    with pytest.raises(InputError, match="previous_change is not a change report as followup writes it"):
        compare_followup(_labels(BASELINE), _labels(BASELINE), alignment="none", previous_change=change)


def test_response_criteria_say_where_the_nadir_came_from():
    """The change report's response_criteria (and the nadir warnings) said 'the nadir given' also for a nadir taken
    from --previous or set to 0 mm by --after-complete-response; they now name its origin."""
    base, follow = _labels(BASELINE), _labels([SMALL_TARGET, NON_TARGET])

    def criteria(**kwargs):
        return compare_followup(base, follow, alignment="none", **kwargs)["response_criteria"]

    assert "smaller of the baseline's sum and the nadir given;" in criteria(nadir_sum_mm=10.0)
    after_cr = criteria(after_complete_response=True)
    assert "the nadir of 0 mm after the complete response given;" in after_cr and "nadir given" not in after_cr
    previous = compare_followup(base, _labels([]), alignment="none")
    previous.pop("_arrays", None)
    from_previous = criteria(previous_change=json.loads(json.dumps(previous)))
    assert "the nadir from the previous change report;" in from_previous and "nadir given" not in from_previous
    assert "no nadir given" in criteria()
    over = compare_followup(base, follow, alignment="none", nadir_sum_mm=99.0)["warnings"]
    assert any(w.startswith("the nadir given (99.0 mm) is above the baseline's sum") for w in over), over


def test_a_cr_says_what_the_liver_label_maps_cannot_show_and_a_previous_reports_cr_is_named_automatic(tmp_path):
    """RECIST 1.1's CR is every target and non-target lesion gone and every pathological lymph node under 10 mm short
    axis, in the whole patient; the reason read 'all lesions disappeared' of the liver label maps alone. A next
    follow-up with --previous took that CR as a complete response, and only a warning said it was an automatic,
    unconfirmed one: its response_criteria said 'after the complete response given', as of a reader's CR."""
    from LiverTumorSegLib.followup import CR_UNCHECKED_TEXT, PREVIOUS_CR_CRITERIA_TEXT

    geometry = ImageGeometry(spacing=(1.0, 1.0, 1.0))
    paths = {}
    for name, boxes in (("base", BASELINE), ("gone", []), ("back", [SMALL_TARGET])):
        paths[name] = write_label_map(tmp_path / f"{name}.nii.gz", _labels(boxes).array, geometry)
    first = tmp_path / "first.json"
    assert main(["followup", "--baseline", str(paths["base"]), "--followup", str(paths["gone"]), "--alignment",
                 "none", "--no-picture", "-o", str(first)]) == 0
    change = json.loads(first.read_text())
    assert change["response"] == "CR"
    assert change["response_reason"] == "all lesions disappeared" + CR_UNCHECKED_TEXT
    assert "outside the liver" in CR_UNCHECKED_TEXT and "lymph node under 10 mm short axis" in CR_UNCHECKED_TEXT
    second = tmp_path / "second.json"
    assert main(["followup", "--baseline", str(paths["base"]), "--followup", str(paths["back"]), "--alignment",
                 "none", "--previous", str(first), "--no-picture", "-o", str(second)]) == 0
    change = json.loads(second.read_text())
    assert change["response"] == "PD" and change["after_complete_response"] is True
    assert PREVIOUS_CR_CRITERIA_TEXT in change["response_criteria"]
    assert "automatic time-point response" in change["response_criteria"]
    assert "after the complete response given" not in change["response_criteria"]
    assert CR_UNCHECKED_TEXT not in change["response_reason"]  # said of a CR only
