"""Follow-up comparison: known shift + grown / vanished / new lesions -> PD; 40 % shrink -> PR; merges and
splits; the followup and measure commands end to end."""
import json

import numpy as np
import pytest

from LiverTumorSegLib.cli import main
from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.followup import CR_UNCHECKED_TEXT, _link_groups, _overlap_counts, compare_followup, match_lesions
from LiverTumorSegLib.io import write_label_map, write_volume
from LiverTumorSegLib.phantom import PhantomLesion, make_phantom
from LiverTumorSegLib.volume import CTVolume, ImageGeometry

SHAPE, SPACING = (24, 72, 72), (2.0, 2.0, 4.0)
ORIGIN = np.array([-70.0, -50.0, 100.0])
SHIFT_LPS = np.array([15.0, -9.0, 12.0])  # the follow-up patient lies this far off in scanner coordinates


def shifted_pair():
    """Baseline: lesions A (r 6 mm, will grow to 9) and B (r 7 mm, vanishes); follow-up: A grown, new C;
    the follow-up scan is the same phantom displaced by SHIFT_LPS (its origin moved)."""
    base = make_phantom(SHAPE, SPACING, lesions=[PhantomLesion((12, 24, 18), 6.0, 15.0),
                                                 PhantomLesion((9, 36, 26), 7.0, 20.0)],
                        noise_hu=5.0, origin=tuple(ORIGIN), seed=0)
    follow = make_phantom(SHAPE, SPACING, lesions=[PhantomLesion((12, 24, 18), 9.0, 15.0),
                                                   PhantomLesion((14, 22, 28), 5.0, 20.0)],
                          noise_hu=5.0, origin=tuple(ORIGIN + SHIFT_LPS), seed=1)
    return base, follow


def labels_of(phantom):
    return CTVolume(array=phantom.labels, geometry=phantom.ct.geometry, source="phantom labels")


def statuses(change):
    return sorted(e["status"] for e in change["lesions"])


@pytest.mark.parametrize("use_ct", [False, True], ids=["liver_masks", "ct"])
def test_known_shift_grown_vanished_new_is_progression(use_ct):
    base, follow = shifted_pair()
    kwargs = dict(baseline_ct=base.ct, followup_ct=follow.ct) if use_ct else {}
    change = compare_followup(labels_of(base), labels_of(follow), **kwargs)
    assert change["alignment"]["method"] == ("ct" if use_ct else "liver")
    np.testing.assert_allclose(change["alignment"]["translation_lps_mm"], SHIFT_LPS, atol=1.0)
    assert change["alignment"]["liver_dice_after_alignment"] > 0.97
    assert statuses(change) == ["disappeared", "grown", "new"]
    assert change["response"] == "PD" and change["response_reason"] == "new lesion"
    by_status = {e["status"]: e for e in change["lesions"]}
    grown = by_status["grown"]
    assert grown["baseline_long_axis_mm"] == pytest.approx(12.0, abs=2.0)
    assert grown["followup_long_axis_mm"] == pytest.approx(18.0, abs=2.0)
    assert grown["volume_change_ml"] > 0 and grown["long_axis_change_percent"] > 20
    new = by_status["new"]
    assert new["unequivocal"] and new["followup_long_axis_mm"] == pytest.approx(10.0, abs=2.0)
    # the new lesion's position, mapped back to the baseline frame, is where it was placed (voxel 14, 22, 28)
    expected = base.ct.geometry.index_to_lps((28.0, 22.0, 14.0))
    np.testing.assert_allclose(new["centroid_baseline_lps_mm"], expected, atol=2.5)
    assert by_status["disappeared"]["followup_volume_ml"] == 0.0


def test_followup_on_another_grid_and_axis_order():
    """Follow-up at 1.5 x 1.5 x 3 mm (baseline 2 x 2 x 4 mm), stored in another axis order, same anatomy in mm
    shifted by SHIFT_LPS: same statuses and shift."""
    from inference_helpers import ORIENTATIONS, reoriented

    base, _ = shifted_pair()
    scale = 4.0 / 3.0
    at = lambda zyx: tuple((np.asarray(zyx) + 0.5) * scale - 0.5)  # same mm position on the finer grid
    follow = make_phantom((32, 96, 96), (1.5, 1.5, 3.0), lesions=[PhantomLesion(at((12, 24, 18)), 9.0, 15.0),
                                                                 PhantomLesion(at((14, 22, 28)), 5.0, 20.0)],
                          noise_hu=5.0, origin=tuple(ORIGIN + SHIFT_LPS), seed=1)
    volume, labels = reoriented(follow.ct, follow.labels, *ORIENTATIONS["sagittal-like"])
    change = compare_followup(labels_of(base), CTVolume(labels, volume.geometry))
    np.testing.assert_allclose(change["alignment"]["translation_lps_mm"], SHIFT_LPS, atol=1.0)
    assert statuses(change) == ["disappeared", "grown", "new"] and change["response"] == "PD"


def test_without_alignment_the_shift_breaks_the_matching():
    """Control: in scanner coordinates the 21 mm shift makes the grown lesion look new + disappeared."""
    base, follow = shifted_pair()
    change = compare_followup(labels_of(base), labels_of(follow), alignment="none")
    assert statuses(change) != ["disappeared", "grown", "new"]


def shrinking_pair(factor):
    lesions = [PhantomLesion((12, 26, 20), 10.0, 15.0), PhantomLesion((10, 36, 32), 8.0, 20.0)]
    base = make_phantom((24, 96, 96), (1.5, 1.5, 3.0), lesions=lesions, noise_hu=0.0, origin=(-60.0, -40.0, 80.0))
    smaller = [PhantomLesion(l.center_zyx, l.radius_mm * factor, l.hu) for l in lesions]
    follow = make_phantom((24, 96, 96), (1.5, 1.5, 3.0), lesions=smaller, noise_hu=0.0,
                          origin=(-57.0, -42.0, 83.0))
    return base, follow


def test_forty_percent_shrink_is_partial_response():
    base, follow = shrinking_pair(0.6)
    change = compare_followup(labels_of(base), labels_of(follow))
    sod = change["sum_of_diameters"]
    assert sod["target_lesion_ids"] == [1, 2]
    assert sod["change_percent"] == pytest.approx(-40.0, abs=6.0)
    assert change["response"] == "PR"
    assert statuses(change) == ["shrunk", "shrunk"]


def test_small_change_is_stable_disease_and_all_gone_is_complete_response():
    base, follow = shrinking_pair(0.9)
    change = compare_followup(labels_of(base), labels_of(follow))
    assert change["response"] == "SD" and statuses(change) == ["stable", "stable"]
    gone = labels_of(follow)
    gone.array = np.where(gone.array == 2, 1, gone.array).astype(np.uint8)
    change = compare_followup(labels_of(base), gone)
    assert change["response"] == "CR" and statuses(change) == ["disappeared", "disappeared"]


def test_merge_and_split_groups():
    base = np.zeros((1, 1, 10), np.int32)
    follow = np.zeros_like(base)
    base[0, 0, 1:3], base[0, 0, 4:6] = 1, 2       # two baseline lesions ...
    follow[0, 0, 1:6] = 1                          # ... covered by one follow-up lesion
    lesion = {"long_axis_mm": 2.0, "centroid_lps_mm": [0.0, 0.0, 0.0]}
    groups = match_lesions(base, follow, [dict(lesion, id=1), dict(lesion, id=2)], [dict(lesion, id=1)],
                           {1: np.array([100.0, 0, 0])})
    assert groups == [([1, 2], [1])]
    assert sorted(_link_groups([(1, 1), (1, 2)], 2, 3)) == [([], [3]), ([1], [1, 2]), ([2], [])]


def merged_change():
    """The change report of two baseline lesions that merged into one at follow-up (no alignment)."""
    g = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    base = np.ones((6, 40, 40), np.uint8)
    base[2:4, 10:18, 10:18] = 2
    base[2:4, 10:18, 20:28] = 2
    follow = np.ones_like(base)
    follow[2:4, 10:18, 10:28] = 2
    return compare_followup(CTVolume(base, g), CTVolume(follow, g), alignment="none")


def test_merged_status_in_a_report():
    change = merged_change()
    assert statuses(change) == ["merged"]
    entry = change["lesions"][0]
    assert entry["baseline_ids"] == [1, 2] and entry["followup_ids"] == [1]
    from LiverTumorSegLib.followup import change_summary_lines
    line = [text for text in change_summary_lines(change) if text.startswith("  1: merged")][0]
    # two 8 x 8 x 2 voxel squares (10.9 mm long axis, 0.256 mL each) became one of 8 x 18 x 2 (19.4 mm, 0.576 mL)
    assert "; long axes summed 21.8 -> 19.4 mm, volumes summed 0.51 -> 0.58 mL" in line, line


def test_followup_command_writes_report_and_picture(tmp_path, capsys):
    base, follow = shifted_pair()
    paths = {}
    for name, phantom in (("base", base), ("follow", follow)):
        paths[name] = write_label_map(tmp_path / f"{name}_seg.nii.gz", phantom.labels, phantom.ct.geometry)
        paths[name + "_ct"] = write_volume(tmp_path / f"{name}_ct.nii.gz", phantom.ct)
    out = tmp_path / "change.json"
    code = main(["followup", "--baseline", str(paths["base"]), "--followup", str(paths["follow"]),
                 "--baseline-ct", str(paths["base_ct"]), "--followup-ct", str(paths["follow_ct"]), "-o", str(out)])
    assert code == 0
    change = json.loads(out.read_text())
    assert change["response"] == "PD" and statuses(change) == ["disappeared", "grown", "new"]
    assert "_arrays" not in change and change["alignment"]["method"] == "ct"
    import LiverTumorSegLib
    assert change["library_version"] == LiverTumorSegLib.__version__  # which version's rules judged it
    png = tmp_path / "change.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert "RECIST 1.1 response: PD" in capsys.readouterr().out
    assert main(["followup", "--baseline", str(paths["base"]), "--followup", str(paths["follow"]),
                 "-o", str(out)]) == 2  # exists, no --overwrite
    assert main(["followup", "--baseline", str(paths["base"]), "--followup", str(paths["follow"]),
                 "-o", str(tmp_path / "c.txt")]) == 2
    assert "must end in .json" in capsys.readouterr().err


def test_followup_and_measure_refuse_a_nan_ct(tmp_path, capsys):
    """A NaN CT reached ITK's registration (an SVD dump of NaN on stderr, exit 0); now one line, exit 2."""
    base, follow = shifted_pair()
    seg = write_label_map(tmp_path / "base_seg.nii.gz", base.labels, base.ct.geometry)
    seg2 = write_label_map(tmp_path / "follow_seg.nii.gz", follow.labels, follow.ct.geometry)
    good = write_volume(tmp_path / "base_ct.nii.gz", base.ct)
    arr = follow.ct.array.astype(np.float32)
    arr[3:9] = np.nan
    bad = write_volume(tmp_path / "nan_ct.nii.gz", CTVolume(array=arr, geometry=follow.ct.geometry))
    capsys.readouterr()
    assert main(["followup", "--baseline", str(seg), "--followup", str(seg2), "--baseline-ct", str(good),
                 "--followup-ct", str(bad), "-o", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err
    assert "NaN/Inf voxels" in err and "vnl" not in err and not (tmp_path / "c.json").exists()
    assert main(["measure", str(seg2), "--ct", str(bad), "-o", str(tmp_path / "m.json")]) == 2
    assert "NaN/Inf voxels" in capsys.readouterr().err and not (tmp_path / "m.json").exists()


def test_followup_refuses_a_label_map_given_as_a_ct(tmp_path, capsys):
    """A label map given as --baseline-ct was only warned of ('the response does not depend on the values'), then the
    scans were aligned on its labels: two identical label maps answered PD (a lesion 'disappeared', one 'new'), exit 0
    (the file-kind audit). It is refused before any work, naming the option and what to give."""
    base, follow = shifted_pair()
    seg = write_label_map(tmp_path / "base_seg.nii.gz", base.labels, base.ct.geometry)
    seg2 = write_label_map(tmp_path / "follow_seg.nii.gz", follow.labels, follow.ct.geometry)
    labels_as_ct = write_label_map(tmp_path / "labels_again.nii.gz", base.labels, base.ct.geometry)
    follow_ct = write_volume(tmp_path / "follow_ct.nii.gz", follow.ct)
    capsys.readouterr()
    assert main(["followup", "--baseline", str(seg), "--followup", str(seg2), "--baseline-ct", str(labels_as_ct),
                 "--followup-ct", str(follow_ct), "-o", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err
    assert "looks like a label map (a segmentation), not a CT" in err and "give the CT scan itself as --baseline-ct" \
        in err and not (tmp_path / "c.json").exists() and not (tmp_path / "c.png").exists()
    base_ct = write_volume(tmp_path / "base_ct.nii.gz", base.ct)  # the CTs themselves: compared
    assert main(["followup", "--baseline", str(seg), "--followup", str(seg2), "--baseline-ct", str(base_ct),
                 "--followup-ct", str(follow_ct), "-o", str(tmp_path / "c.json"), "--no-picture"]) == 0


def test_followup_refuses_ct_alignment_with_one_ct_and_a_ct_of_another_size_and_writes_nothing(tmp_path, capsys):
    """--alignment ct with one CT names both CT options; a CT that is not the label map's size (two slices cut off)
    names the label map and what to give; neither run leaves a report or a picture."""
    from LiverTumorSegLib.volume import CTVolume as Volume

    base, follow = shifted_pair()
    seg = write_label_map(tmp_path / "base_seg.nii.gz", base.labels, base.ct.geometry)
    seg2 = write_label_map(tmp_path / "follow_seg.nii.gz", follow.labels, follow.ct.geometry)
    follow_ct = write_volume(tmp_path / "follow_ct.nii.gz", follow.ct)
    cut = write_volume(tmp_path / "cut_ct.nii.gz", Volume(array=base.ct.array[:-2], geometry=base.ct.geometry))
    out = tmp_path / "c.json"
    common = ["followup", "--baseline", str(seg), "--followup", str(seg2), "-o", str(out)]
    capsys.readouterr()
    assert main(common + ["--followup-ct", str(follow_ct), "--alignment", "ct"]) == 2
    assert "--alignment ct needs both --baseline-ct and --followup-ct" in capsys.readouterr().err
    assert main(common + ["--baseline-ct", str(cut), "--followup-ct", str(follow_ct)]) == 2
    err = capsys.readouterr().err
    assert "base_seg.nii.gz' does not match its" in err and "Use the label map made for this image" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([
        "base_seg.nii.gz", "follow_seg.nii.gz", "follow_ct.nii.gz", "cut_ct.nii.gz"])


def test_followup_api_refuses_an_unknown_alignment_and_says_a_nadir_without_baseline_targets_is_unused():
    """The library call names the alignments it takes (and, for 'ct', both CT arguments), names a CT's and its label
    map's shapes where they differ, and wants a bool for after_complete_response; a nadir given
    for a baseline without tumor (so without target lesions) is said to be unused, not silently dropped."""
    base, follow = shifted_pair()
    with pytest.raises(InputError, match="Unknown alignment 'rigid'; use one of auto, ct, liver, none"):
        compare_followup(labels_of(base), labels_of(follow), alignment="rigid")
    with pytest.raises(InputError, match=r"Alignment 'ct' needs both CTs \(baseline_ct=, followup_ct=\)"):
        compare_followup(labels_of(base), labels_of(follow), followup_ct=follow.ct, alignment="ct")
    with pytest.raises(InputError, match="after_complete_response must be True or False, got 'yes'"):
        compare_followup(labels_of(base), labels_of(follow), after_complete_response="yes")
    cut = CTVolume(array=base.ct.array[:-2], geometry=base.ct.geometry)
    with pytest.raises(InputError, match=r"The baseline CT \(22, 72, 72\) and label map \(24, 72, 72\) \(z, y, x\) "
                       "differ in size; give the CT the label map was made on"):
        compare_followup(labels_of(base), labels_of(follow), baseline_ct=cut, followup_ct=follow.ct)
    no_tumor = CTVolume(array=np.minimum(base.labels, 1).astype(np.uint8), geometry=base.ct.geometry)
    change = compare_followup(no_tumor, labels_of(follow), nadir_sum_mm=30.0)
    assert change["sum_of_diameters"]["baseline_mm"] is None
    assert ("the nadir given (30.0 mm) is not used: the baseline has no measurable target lesion, so there is no "
            "sum of diameters to follow") in change["warnings"]


def test_measure_command_ellipsoid_30_by_20(tmp_path, capsys):
    g = ImageGeometry(spacing=(0.8, 1.1, 2.5), origin=(10.0, -20.0, 30.0))
    k, j, i = np.indices((16, 48, 64)).astype(float)
    x, y, z = (i - 31.3) * 0.8, (j - 23.6) * 1.1, (k - 7.8) * 2.5
    labels = np.ones((16, 48, 64), np.uint8)
    labels[(x / 15.0) ** 2 + (y / 10.0) ** 2 + (z / 12.0) ** 2 <= 1.0] = 2
    path = write_label_map(tmp_path / "corrected.nii.gz", labels, g)
    assert main(["measure", str(path), "-o", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    lesion = report["lesions"][0]
    assert lesion["long_axis_mm"] == pytest.approx(30.0, abs=1.6)
    assert lesion["short_axis_mm"] == pytest.approx(20.0, abs=1.6)
    assert report["recist"]["target_lesion_ids"] == [1]
    assert "long axis" in capsys.readouterr().out
    assert main(["measure", str(path), "-o", str(tmp_path / "r.csv")]) == 0
    first = (tmp_path / "r.csv").read_text().splitlines()[0]
    assert first.startswith("id,volume_ml,voxel_count,long_axis_mm,short_axis_mm")
    assert main(["measure", str(tmp_path / "missing.nii.gz"), "-o", str(tmp_path / "x.json")]) == 2
    prob = write_label_map(tmp_path / "prob.nii.gz", np.where(labels == 2, 204, 10).astype(np.uint8), g)
    assert main(["measure", str(path), "--probabilities", str(prob), "-o", str(tmp_path / "p.json")]) == 0
    written = json.loads((tmp_path / "p.json").read_text())
    assert written["lesions"][0]["mean_tumor_probability"] == pytest.approx(0.8)
    assert written["probabilities"] == str(prob)                  # which map the numbers came from
    other_grid = write_label_map(tmp_path / "prob2.nii.gz", np.zeros((4, 4, 4), np.uint8), g)
    assert main(["measure", str(path), "--probabilities", str(other_grid), "-o", str(tmp_path / "q.json")]) == 2
    assert "not on the label map's grid" in capsys.readouterr().err
    # a hard float map (1.0 in the lesion) was stored as integers by the reader and divided by 255 (0.0039);
    # values outside 0..1 and NaN went into the report (a 'probability' of 230.5, 'nan' in the CSV)
    import nibabel as nib
    affine = g.ijk_to_ras()
    hard = tmp_path / "hard.nii.gz"
    nib.save(nib.Nifti1Image((labels == 2).astype(np.float32).transpose(2, 1, 0), affine), str(hard))
    assert main(["measure", str(path), "--probabilities", str(hard), "-o", str(tmp_path / "h.json")]) == 0
    assert json.loads((tmp_path / "h.json").read_text())["lesions"][0]["mean_tumor_probability"] == pytest.approx(1.0)
    for name, values in (("big", np.where(labels == 2, 230.5, 0.0)), ("nan", np.where(labels == 2, np.nan, 0.5))):
        bad = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(values.astype(np.float32).transpose(2, 1, 0), affine), str(bad))
        assert main(["measure", str(path), "--probabilities", str(bad), "-o", str(tmp_path / f"{name}.json")]) == 2
        assert "in [0, 1]" in capsys.readouterr().err  # NaN: "holds N NaN/Inf voxel(s) ...; must be finite ..."


def test_measure_names_a_lesion_apart_from_the_liver(tmp_path, capsys):
    """A 'Kidney tumor' segment 63 mm from the liver was measured as a liver lesion and chosen as a RECIST target
    without a word (the measure audit): a lesion with no liver voxel within 5 mm is named (segment's post-processing
    removes such tumor); one inside or touching the liver is not."""
    g = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    labels = np.zeros((12, 40, 90), np.uint8)
    labels[2:10, 5:35, 5:40] = 1
    labels[4:8, 12:22, 12:22] = 2        # in the liver, first in raster order: the report's lesion 2 (0.8 mL)
    labels[4:8, 12:24, 70:82] = 2        # 30 mm beside it, a kidney's: the report's lesion 1, the larger (1.152 mL)
    path = write_label_map(tmp_path / "labels.nii.gz", labels, g)
    assert main(["measure", str(path), "-o", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    volumes = {lesion["id"]: lesion["volume_ml"] for lesion in report["lesions"]}
    assert volumes == {1: pytest.approx(1.152), 2: pytest.approx(0.8)}
    (said,) = [w for w in report["warnings"] if "no liver voxel within 5 mm" in w]
    # the report's numbers, not raster order's (which named lesion 2, the one inside the liver)
    assert said.startswith("lesion(s) 1 have no liver voxel within 5 mm") and "RECIST targets (1)" in said
    assert said in capsys.readouterr().err
    labels[4:8, 12:24, 70:82] = 0
    near = write_label_map(tmp_path / "near.nii.gz", labels, g)
    assert main(["measure", str(near), "-o", str(tmp_path / "n.json")]) == 0
    assert not any("no liver voxel" in w for w in json.loads((tmp_path / "n.json").read_text())["warnings"])


def test_measure_report_carries_the_runs_warnings(tmp_path):
    """docs/report_format.md lists 'warnings' for every report; measure printed them but left them out."""
    g = ImageGeometry(spacing=(0.8, 0.8, 8.0), origin=(0.0, 0.0, 0.0))
    ct = np.full((6, 40, 40), -1000, np.int16)
    ct[:, 5:35, 5:35] = 50
    labels = np.zeros(ct.shape, np.uint8)
    labels[1:5, 10:30, 10:30] = 1
    labels[2:4, 15:20, 15:20] = 2  # a small liver with its tumor (without one, it is asked whether it is a lesion mask)
    write_volume(tmp_path / "ct.nii.gz", CTVolume(array=ct, geometry=g))
    path = write_label_map(tmp_path / "labels.nii.gz", labels, g)
    assert main(["measure", str(path), "--ct", str(tmp_path / "ct.nii.gz"), "-o", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert any("thick slices (8 mm)" in w for w in report["warnings"])
    assert main(["measure", str(path), "-o", str(tmp_path / "alone.json")]) == 0
    assert json.loads((tmp_path / "alone.json").read_text())["warnings"] == []


def _normalised_ct_and_labels(tmp_path):
    """``tmp_path/ct.nii.gz``, a CT scaled to 0..1 (liver 0.55, a lesion 0.45), and its label map's path."""
    g = ImageGeometry(spacing=(0.8, 0.8, 2.0), origin=(0.0, 0.0, 0.0))
    scaled = np.zeros((6, 40, 40), np.float32)
    scaled[:, 5:35, 5:35] = 0.55
    scaled[:, 12:20, 12:20] = 0.45
    labels = np.zeros(scaled.shape, np.uint8)
    labels[1:5, 8:32, 8:32] = 1
    labels[1:5, 12:20, 12:20] = 2
    write_volume(tmp_path / "ct.nii.gz", CTVolume(array=scaled, geometry=g))
    return write_label_map(tmp_path / "labels.nii.gz", labels, g)


def test_measure_says_what_a_ct_that_is_not_in_hu_means_for_its_report(tmp_path):
    """measure has no --allow-non-hu switch: it reads the CT only for each lesion's mean HU. Its warning said
    'non-HU input was allowed', naming a switch the user never passed; it now says what the numbers mean."""
    path = _normalised_ct_and_labels(tmp_path)
    assert main(["measure", str(path), "--ct", str(tmp_path / "ct.nii.gz"), "-o", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["lesions"][0]["mean_hu"] == pytest.approx(0.45, abs=1e-6)
    warning = next(w for w in report["warnings"] if "does not look like CT in Hounsfield units" in w)
    assert "mean_hu and median_hu in this report are this file's values, not Hounsfield units" in warning
    assert "was allowed" not in warning
    # 0.2.0 added median_hu and water density: the warning said the CT gave the mean HU alone, and nothing of the
    # water density it then leaves unjudged (null), which orders the RECIST targets on a CT in HU
    assert report["lesions"][0]["water_density"] is None and "water density is not judged" in warning


def test_followup_says_what_a_ct_that_is_not_in_hu_means_without_naming_a_switch(tmp_path, capsys):
    """followup has no --allow-non-hu either; its warning for an MR-like --baseline-ct said 'non-HU input was
    allowed'."""
    import shutil

    path = _normalised_ct_and_labels(tmp_path)
    again = shutil.copy(path, tmp_path / "again.nii.gz")  # another file: the same one is refused
    assert main(["followup", "--baseline", str(path), "--followup", str(again), "--baseline-ct",
                 str(tmp_path / "ct.nii.gz"), "--alignment", "none", "--no-picture", "-o",
                 str(tmp_path / "c.json")]) == 0
    err = capsys.readouterr().err
    assert "does not look like CT in Hounsfield units" in err and "was allowed" not in err
    assert "followup reads the CTs to align the scans" in err
    assert "mean and median HU" in err and "water density is not judged" in err
    assert "the alignment, and so which lesions are matched, does" in err  # it said the response did not depend


def test_measure_reads_a_slicer_seg_nrrd(tmp_path):
    pytest.importorskip("slicer")
    from LiverTumorSegLib.mrml import write_seg_nrrd

    base, _ = shifted_pair()
    path = write_seg_nrrd(tmp_path / "corrected.seg.nrrd", base.labels, base.ct.geometry)
    assert main(["measure", str(path), "-o", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["lesion_count"] == 2
    assert sorted(d["voxel_count"] for d in report["lesions"]) == sorted(l.voxel_count for l in base.lesions)


def test_tiny_new_lesion_is_listed_but_not_progression():
    g = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    base = np.ones((6, 40, 40), np.uint8)
    base[2:4, 10:22, 10:22] = 2                  # 12 x 12 voxels: a 12 mm target
    follow = base.copy()
    follow[3, 30, 30] = 2                        # one new voxel: 1 mm long axis, below the 5 mm default
    change = compare_followup(CTVolume(base, g), CTVolume(follow, g), alignment="none")
    new = next(e for e in change["lesions"] if e["status"] == "new")
    assert new["unequivocal"] is False and change["response"] == "SD"
    from LiverTumorSegLib.followup import change_summary_lines
    line = [text for text in change_summary_lines(change) if ": new " in text][0]
    # said beside the response, not only in the JSON; its one voxel is 0.002 mL, not '0.00 mL'
    assert line.endswith("volume 0.00 -> 0.0020 mL; equivocal (long axis under 5 mm): not counted as a new lesion")
    strict = compare_followup(CTVolume(base, g), CTVolume(follow, g), alignment="none", min_new_lesion_mm=0.5)
    assert strict["response"] == "PD"
    line = [text for text in change_summary_lines(strict) if ": new " in text][0]
    assert "equivocal" not in line


def test_recist_rules_a_radiologist_applies_at_follow_up():
    """A target shrunk to a 3 mm focus counts its measured 3 mm (RECIST 1.1 4.3.2: actual measurements are
    recorded "even when very small (e.g. 2 mm)"; 5 mm is the default only for a lesion a reader cannot measure),
    so 20 + 14 mm -> 20 + 3 mm is PR, and the reason says that the 5 mm default would give SD; an equivocal new
    focus does not keep all-gone disease from CR; a new lesion beside a shrinking target (no shared voxel) is new,
    PD, not a 'split' fragment of it."""
    g = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    base = np.ones((6, 60, 60), np.uint8)
    base[2:4, 5:25, 5:10] = 2                    # target 1: 20 mm long
    base[2:4, 35:49, 40:45] = 2                  # target 2: 14 mm long
    follow = np.ones_like(base)
    follow[2:4, 5:25, 5:10] = 2                  # unchanged
    follow[3, 40:43, 41:43] = 2                  # target 2 became a 3 mm focus
    change = compare_followup(CTVolume(base, g), CTVolume(follow, g), alignment="none")
    shrunk = next(e for e in change["lesions"] if 2 in e["baseline_ids"])
    assert shrunk["followup_long_axis_mm"] < 5.0 and shrunk["recist_under_5_mm"] is True
    sod = change["sum_of_diameters"]
    kept = next(e for e in change["lesions"] if 1 in e["baseline_ids"])
    assert sod["followup_mm"] == pytest.approx(kept["followup_long_axis_mm"] + shrunk["followup_long_axis_mm"])
    assert sod["change_percent"] <= -30.0       # with 5 mm counted it reads between -30 and -20 %: SD
    assert change["response"] == "PR"
    assert "under 5 mm" in change["response_reason"] and change["response_reason"].endswith("gives SD")

    gone = np.ones_like(base)
    gone[3, 55, 55] = 2                          # all lesions gone; one 1-voxel new focus (equivocal)
    change = compare_followup(CTVolume(base, g), CTVolume(gone, g), alignment="none")
    assert [e["unequivocal"] for e in change["lesions"] if e["status"] == "new"] == [False]
    assert change["response"] == "CR"
    # the reason named it: 'all lesions disappeared' stood beside a lesion in the follow-up
    assert change["response_reason"] == ("all lesions disappeared; new lesion(s) in row(s) 3 are under 5 mm: "
                                         "equivocal, not counted (RECIST 1.1: if a later scan confirms one, PD "
                                         "dates from this scan)" + CR_UNCHECKED_TEXT)

    satellite = np.ones_like(base)
    satellite[2:4, 5:19, 5:9] = 2                # target 1 shrinks to 14 x 4 mm ...
    satellite[2:4, 35:49, 40:45] = 2
    satellite[2:4, 6:14, 13:21] = 2              # ... and an 8 mm lesion appears 4 mm beside it, not touching
    change = compare_followup(CTVolume(base, g), CTVolume(satellite, g), alignment="none")
    assert "split" not in statuses(change) and "new" in statuses(change)
    assert change["response"] == "PD"
    assert "research use, not a clinical read" in change["response_criteria"]
    # a radiologist reads CR/PR here as unconfirmed: the report says it gives one time point, not the best response
    assert "a time-point response, RECIST 1.1 Table 1), not the best overall response" in change["response_criteria"]


def _cropped_in_z(volume, z0, z1):
    """``volume`` cut to slices z0..z1-1 with its origin moved there: the same anatomy, a shorter scan."""
    g = volume.geometry
    origin = tuple(float(v) for v in g.index_to_lps((0.0, 0.0, float(z0))))
    return CTVolume(np.ascontiguousarray(volume.array[z0:z1]), ImageGeometry(g.spacing, origin, g.direction))


def test_a_target_outside_the_followup_scan_is_not_assessed_not_gone():
    """A follow-up that does not reach a target lesion reported it as disappeared: PR (-55 %) with one target out
    of view, CR with all of them (audit). RECIST 1.1: not assessed, the response NE unless PD is shown."""
    base = make_phantom((24, 48, 40), (2.0, 2.0, 3.0), lesions=[PhantomLesion((5, 22, 18), 7.0, 15.0),
                                                                   PhantomLesion((15, 22, 18), 7.0, 20.0)],
                        noise_hu=0.0, seed=0)
    baseline = labels_of(base)
    upper = compare_followup(baseline, _cropped_in_z(baseline, 11, 24), alignment="none")
    by_status = {e["status"]: e for e in upper["lesions"]}
    assert sorted(by_status) == ["not_assessed", "stable"]
    assert by_status["not_assessed"]["recist_target"] and upper["response"] == "NE"
    assert "outside the follow-up scan's field of view" in upper["response_reason"]
    assert by_status["not_assessed"]["not_assessed_reason"] == "outside_followup_view"  # a code; the words: printed
    assert by_status["not_assessed"]["long_axis_change_percent"] is None  # not a -100 % "change"
    # its follow-up size is unknown, not 0 (the Slicer change table read 'Follow-up long axis 0.0', as if gone)
    assert [by_status["not_assessed"][key] for key in ("followup_volume_ml", "followup_long_axis_mm",
                                                       "followup_short_axis_mm")] == [None, None, None]
    assert by_status["stable"]["followup_long_axis_mm"] > 10.0
    from LiverTumorSegLib.followup import change_summary_lines
    assert any("not wholly in both scans (partly or wholly outside the follow-up scan): not measured" in line
               for line in change_summary_lines(upper))
    none_in_view = compare_followup(baseline, _cropped_in_z(baseline, 9, 12), alignment="none")
    assert statuses(none_in_view) == ["not_assessed", "not_assessed"] and none_in_view["response"] == "NE"
    cut = compare_followup(baseline, _cropped_in_z(baseline, 9, 15), alignment="none")  # lesion 2 half in view
    assert statuses(cut) == ["not_assessed", "not_assessed"] and cut["response"] == "NE"  # was 'shrunk', PR
    whole = compare_followup(baseline, baseline, alignment="none")
    assert statuses(whole) == ["stable", "stable"] and whole["response"] == "SD"
    # the follow-up sum with a target not assessed is unknown, not the seen targets' part (it read -100 %)
    assert upper["sum_of_diameters"]["followup_mm"] is None and upper["sum_of_diameters"]["change_percent"] is None
    assert any("-> unknown" in line for line in change_summary_lines(upper))


def test_a_target_in_the_followup_cts_padding_outside_its_round_field_of_view_is_not_assessed():
    """A follow-up reconstructed with a smaller round field of view: outside the circle the CT holds the scanner's
    padding (-3024) and the segmentation nothing, so a target lying there was 'disappeared' and the response PR
    (-50 %) instead of NE (the RECIST audit). With the CT given, the padding is not part of what the follow-up
    shows; without it, nothing tells padding from tissue."""
    base = make_phantom((24, 48, 40), (2.0, 2.0, 3.0), lesions=[PhantomLesion((12, 19, 8), 7.0, 15.0),
                                                                   PhantomLesion((12, 19, 17), 7.0, 20.0)],
                        noise_hu=0.0, seed=0)
    baseline, baseline_ct = labels_of(base), base.ct
    y, x = np.mgrid[:48, :40]
    outside = (y - 19) ** 2 + (x - 17) ** 2 > 6 ** 2  # a circle of 12 mm radius around the second lesion
    follow_labels = np.where(outside[None], 0, base.labels).astype(np.uint8)
    follow_hu = np.where(outside[None], -3024, base.ct.array).astype(base.ct.array.dtype)
    follow = CTVolume(follow_labels, base.ct.geometry, source="follow-up labels")
    follow_ct = CTVolume(follow_hu, base.ct.geometry, source="follow-up CT")
    change = compare_followup(baseline, follow, baseline_ct, follow_ct, alignment="none")
    by_status = {e["status"]: e for e in change["lesions"]}
    assert sorted(by_status) == ["not_assessed", "stable"] and change["response"] == "NE"
    assert by_status["not_assessed"]["not_assessed_reason"] == "outside_followup_view"
    assert change["alignment"]["liver_dice_after_alignment"] == pytest.approx(1.0)  # where both scans show liver
    without_ct = compare_followup(baseline, follow, alignment="none")  # padding unknown: taken as tissue
    assert sorted(e["status"] for e in without_ct["lesions"]) == ["shrunk", "stable"]  # its part in the circle


def _band_phantom_with_round_view(padding_hu):
    """(baseline labels, baseline CT, follow-up labels, follow-up CT) on a 160 x 160 grid of 2 mm pixels: a phantom
    body cut to a band 50 px high, in noisy air clipped at -1024 as scanners store it; a lesion at the liver's
    lateral side and one in its middle. The follow-up is reconstructed with a round field of view of 30 px radius
    about the grid's centre, padded with ``padding_hu``: the lateral lesion lies outside it, the other inside."""
    rng = np.random.default_rng(0)
    base = make_phantom((8, 96, 96), (2.0, 2.0, 4.0), lesions=[PhantomLesion((4, 39, 15), 5.0, 15.0),
                                                               PhantomLesion((4, 39, 31), 5.0, 20.0)],
                        noise_hu=5.0, seed=0)
    hu = np.clip(np.rint(rng.normal(-1000.0, 20.0, (8, 160, 160))), -1024, None).astype(np.int16)
    labels = np.zeros((8, 160, 160), np.uint8)
    hu[:, 32:128, 32:128] = base.ct.array
    labels[:, 32:128, 32:128] = base.labels
    band = np.abs(np.arange(160) - 79.5) <= 25
    hu[:, ~band] = np.clip(np.rint(rng.normal(-1000.0, 20.0, hu[:, ~band].shape)), -1024, None)
    labels[:, ~band] = 0
    geometry = base.ct.geometry
    rows, columns = np.mgrid[0:160, 0:160]
    outside = np.hypot(rows - 79.5, columns - 79.5) > 30.0
    assert (labels[:, outside] == 2).any() and (labels[:, ~outside] == 2).any()
    follow_hu = np.where(outside[None], padding_hu, hu).astype(np.int16)
    follow_labels = np.where(outside[None], 0, labels).astype(np.uint8)
    return (CTVolume(labels, geometry, source="baseline labels"), CTVolume(hu, geometry, source="baseline CT"),
            CTVolume(follow_labels, geometry, source="follow-up labels"),
            CTVolume(follow_hu, geometry, source="follow-up CT"))


@pytest.mark.parametrize("padding_hu", [-1024, -3024])
def test_a_target_outside_the_followups_round_field_of_view_is_not_assessed_whatever_the_padding_value(padding_hu):
    """A follow-up reconstructed with a round field of view padded with -1024 (many scanners' exports; any CT clipped
    at -1024, as LiTS and nnU-Net pipelines clip): the padding read as air the follow-up showed, and a target lying
    there was 'disappeared' (the response PR) where -3024 padding made it not assessed (NE) (the lesion audit's
    finding, carried to followup)."""
    baseline, baseline_ct, follow, follow_ct = _band_phantom_with_round_view(padding_hu)
    change = compare_followup(baseline, follow, baseline_ct, follow_ct, alignment="none")
    by_status = {e["status"]: e for e in change["lesions"]}
    assert sorted(by_status) == ["not_assessed", "stable"] and change["response"] == "NE", change["lesions"]
    assert by_status["not_assessed"]["not_assessed_reason"] == "outside_followup_view"
    assert not any("fill" in w for w in change["warnings"]), change["warnings"]  # no fill: nothing to warn of


def test_a_target_in_the_followup_cts_resampling_fill_is_not_assessed():
    """A follow-up CT resampled onto another grid with SimpleITK's default fill (0 HU) outside its own field of view:
    segment labels nothing in the fill, and a target lying there was 'disappeared' (the fill read as tissue the
    follow-up shows), the response PR instead of NE. The fill now reads as outside the scan, as the padding above."""
    base = make_phantom((24, 48, 40), (2.0, 2.0, 3.0), lesions=[PhantomLesion((12, 19, 8), 7.0, 15.0),
                                                                   PhantomLesion((12, 19, 17), 7.0, 20.0)],
                        noise_hu=8.0, seed=0)
    baseline, baseline_ct = labels_of(base), base.ct
    y, x = np.mgrid[:48, :40]
    outside = (y - 19) ** 2 + (x - 17) ** 2 > 6 ** 2  # the old grid's view: a disc of 12 mm radius
    follow = CTVolume(np.where(outside[None], 0, base.labels).astype(np.uint8), base.ct.geometry, source="labels")
    follow_ct = CTVolume(np.where(outside[None], 0, base.ct.array).astype(base.ct.array.dtype), base.ct.geometry,
                         source="follow-up CT")
    change = compare_followup(baseline, follow, baseline_ct, follow_ct, alignment="none")
    by_status = {e["status"]: e for e in change["lesions"]}
    assert sorted(by_status) == ["not_assessed", "stable"] and change["response"] == "NE"
    assert by_status["not_assessed"]["not_assessed_reason"] == "outside_followup_view"
    fill_ml = 24 * int(outside.sum()) * 2.0 * 2.0 * 3.0 / 1000
    said = [w for w in change["warnings"] if "reach the edge of its slices" in w]
    assert len(said) == 1 and said[0].startswith(f"follow-up CT: {fill_ml:.0f} mL of the CT hold exactly 0 HU")
    assert np.array_equal(follow_ct.array[:, outside], np.zeros_like(follow_ct.array[:, outside]))  # not changed


def test_a_lesion_cut_by_the_baseline_cts_round_field_of_view_is_not_called_gone_where_the_followup_shows_no_more():
    """A baseline lesion cut by the scanner's round field of view (padding outside the circle, no grid face) was
    taken as seen beyond that edge: gone at a follow-up of the same field of view it was 'disappeared', and with
    the other lesion gone the response CR (the follow-up audit). The follow-up must show the padding beside it and
    max(10 mm, its long axis) beyond, as for a lesion cut by the grid's face."""
    base = make_phantom((24, 48, 40), (2.0, 2.0, 3.0), lesions=[PhantomLesion((12, 19, 8), 7.0, 15.0),
                                                                   PhantomLesion((12, 19, 17), 7.0, 20.0)],
                        noise_hu=0.0, seed=0)
    y, x = np.mgrid[:48, :40]
    outside = (y - 19) ** 2 + (x - 8) ** 2 > 10 ** 2  # a circle of 20 mm radius: its edge cuts the second lesion
    assert (base.labels[:, outside] == 2).any() and not (base.labels[:, ~outside] == 2).all()

    def scan(labels, padded):
        hu = np.where(outside[None], -3024, base.ct.array) if padded else base.ct.array
        kept = np.where(outside[None], 0, labels) if padded else labels
        return (CTVolume(kept.astype(np.uint8), base.ct.geometry, source="labels"),
                CTVolume(hu.astype(base.ct.array.dtype), base.ct.geometry, source="CT"))

    baseline, baseline_ct = scan(base.labels, padded=True)
    gone = np.minimum(base.labels, 1)                   # every lesion gone, the liver as it was
    follow, follow_ct = scan(gone, padded=True)
    same_view = compare_followup(baseline, follow, baseline_ct, follow_ct, alignment="none")
    cut = [e for e in same_view["lesions"] if e["status"] != "disappeared"]
    assert len(cut) == 1 and cut[0]["status"] == "not_assessed"
    assert cut[0]["not_assessed_reason"] == "baseline_edge_not_covered" and same_view["response"] != "CR"
    follow, follow_ct = scan(gone, padded=False)
    whole_view = compare_followup(baseline, follow, baseline_ct, follow_ct, alignment="none")
    assert statuses(whole_view) == ["disappeared", "disappeared"] and whole_view["response"] == "CR"


def test_a_lesion_near_but_not_on_the_round_field_of_view_is_judged_by_the_scans_own_edge_alone():
    """5 mm slices of 0.8 mm pixels: a lesion cut by the last slice lies 0.8 mm (one pixel of liver) inside the round
    field of view. Padding within the largest spacing (5 mm) counted as beside it, so the follow-up, which shows
    100 mm beyond that slice, had to show the padding too: 'not_assessed', NE instead of CR (the review of the
    round-field change). Beside means a face neighbour, as the lesion report's touches_scan_edge reads it."""
    def scan(slices, lesion):
        z, y, x = np.mgrid[:slices, :100, :100]
        inside = (y - 50) ** 2 + (x - 50) ** 2 <= 45 ** 2
        hu = np.where(inside, 40, -3024).astype(np.int16)
        labels = np.zeros(hu.shape, np.uint8)
        liver = inside & ((y - 50) ** 2 + (x - 50) ** 2 <= 44 ** 2)
        labels[liver], hu[liver] = 1, 60
        if lesion:   # its edge one pixel inside the liver's, which lies one pixel inside the circle
            ball = liver & (((y - 18) * 0.8) ** 2 + ((x - 50) * 0.8) ** 2 + ((z - 19) * 5.0) ** 2 <= 9.6 ** 2)
            labels[ball], hu[ball] = 2, 20
        geometry = ImageGeometry(spacing=(0.8, 0.8, 5.0))
        return CTVolume(labels, geometry), CTVolume(hu, geometry)

    (baseline, baseline_ct), (follow, follow_ct) = scan(20, True), scan(40, False)
    change = compare_followup(baseline, follow, baseline_ct, follow_ct, alignment="none")
    assert statuses(change) == ["disappeared"] and change["response"] == "CR"


def test_targets_gone_with_a_non_target_outside_the_followup_scan_is_pr_not_ne():
    """RECIST 1.1 Table 1: target CR, non-target not evaluated, no new lesion -> PR (it said NE). Two 20 mm
    targets and a 6 mm non-target at the top; the follow-up covers the targets' slices only, both gone."""
    g = ImageGeometry(spacing=(1.0, 1.0, 3.0))
    base = np.ones((12, 60, 60), np.uint8)
    base[2:4, 5:25, 5:10] = 2                    # target 1: 20 mm
    base[2:4, 35:55, 40:45] = 2                  # target 2: 20 mm
    base[10, 30:36, 30:33] = 2                   # non-target: 6 mm, on slice 10
    follow = np.ones_like(base)                  # the targets gone
    baseline = CTVolume(base, g)
    change = compare_followup(baseline, _cropped_in_z(CTVolume(follow, g), 0, 8), alignment="none")
    assert statuses(change) == ["disappeared", "disappeared", "not_assessed"]
    assert change["response"] == "PR" and "Table 1" in change["response_reason"]
    assert change["sum_of_diameters"]["followup_mm"] == 0.0     # both targets were seen: their sum is known
    only_non_targets = base.copy()
    only_non_targets[base == 2] = 1
    only_non_targets[10, 30:36, 30:33] = 2
    only_non_targets[2, 30:36, 30:33] = 2        # two 6 mm non-targets, no target; the upper one unseen
    change = compare_followup(CTVolume(only_non_targets, g), _cropped_in_z(CTVolume(follow, g), 0, 8),
                              alignment="none")
    assert change["response"] == "NE"            # Table 2: non-target lesions not all evaluated (it said CR)


def test_a_growing_non_target_lesion_is_named_in_a_warning():
    """Only two liver lesions can be targets: a third, measurable lesion growing 12 -> 38 mm left the response SD
    without a word. Unequivocal non-target progression is a reader's call; the change report now names it."""
    g = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    base = np.ones((6, 80, 80), np.uint8)
    base[2:4, 5:25, 5:10] = 2                    # target 1: 20 mm
    base[2:4, 35:53, 60:65] = 2                  # target 2: 18 mm
    base[2:4, 60:71, 20:25] = 2                  # non-target: 11.8 mm (third largest)
    follow = base.copy()
    follow[2:4, 40:78, 20:25] = 2                # the non-target grows to 38.2 mm
    change = compare_followup(CTVolume(base, g), CTVolume(follow, g), alignment="none")
    assert change["response"] == "SD"
    (warning,) = [w for w in change["warnings"] if "non-target" in w]
    # 11 x 5 voxels of 1 mm: corner to corner sqrt(10^2 + 4^2) + 1 = 11.8 mm; 38 x 5: sqrt(37^2 + 4^2) + 1 = 38.2
    assert "3 (11.8 -> 38.2 mm)" in warning and "a reader's judgement" in warning
    assert not any("non-target" in w for w in compare_followup(CTVolume(base, g), CTVolume(base, g),
                                                               alignment="none")["warnings"])


def test_followup_without_matplotlib_is_a_clear_error_and_leaves_no_report(tmp_path, capsys, monkeypatch):
    """In Slicer's Python (no matplotlib: the module does not install it) followup's picture was an 'internal
    error', and the change report written before it stayed behind."""
    import sys

    base, follow = shifted_pair()
    paths = {}
    for name, phantom in (("base", base), ("follow", follow)):
        paths[name] = write_label_map(tmp_path / f"{name}_seg.nii.gz", phantom.labels, phantom.ct.geometry)
    before = sorted(p.name for p in tmp_path.iterdir())
    for module in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib... raises ModuleNotFoundError
    code = main(["followup", "--baseline", str(paths["base"]), "--followup", str(paths["follow"]),
                 "--alignment", "liver", "-o", str(tmp_path / "change.json")])
    err = capsys.readouterr().err
    assert code == 2 and "needs the Python package 'matplotlib'" in err and "internal error" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # neither the report nor the picture
    assert main(["followup", "--baseline", str(paths["base"]), "--followup", str(paths["follow"]),
                 "--alignment", "liver", "--no-picture", "-o", str(tmp_path / "change.json")]) == 0


def test_measure_without_a_ct_says_when_the_label_grid_is_tilted(tmp_path):
    """Without --ct no CT check ran, so a label map on a grid tilted 30 degrees gave a report without a word,
    although its axes are measured through the tilted grid's voxels (in true axial planes since 30 Nov 2026)."""
    angle = np.radians(30.0)
    tilted = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(angle), -np.sin(angle)], [0.0, np.sin(angle), np.cos(angle)]])
    g = ImageGeometry(spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0), direction=tuple(tilted.ravel()))
    labels = np.zeros((6, 40, 40), np.uint8)
    labels[1:5, 10:30, 10:30] = 1
    labels[2:4, 15:20, 15:20] = 2
    path = write_label_map(tmp_path / "tilted.nii.gz", labels, g)
    assert main(["measure", str(path), "-o", str(tmp_path / "r.json")]) == 0
    warnings = json.loads((tmp_path / "r.json").read_text())["warnings"]
    assert len(warnings) == 1 and "tilted 30 degrees" in warnings[0] and "in true axial planes" in warnings[0]
    turned = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    path = write_label_map(tmp_path / "turned.nii.gz", labels, ImageGeometry(
        spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0), direction=tuple(turned.ravel())))
    assert main(["measure", str(path), "-o", str(tmp_path / "t.json")]) == 0  # turned about S: true axial slices
    assert json.loads((tmp_path / "t.json").read_text())["warnings"] == []


def test_measure_with_its_ct_gives_the_measurement_warning_not_segments(tmp_path):
    """With --ct the CT's check spoke for the grid in segment's words: a CT turned 25 degrees about S (true axial
    slices, measured correctly) got 'the model reads the grid's slices as axial slices ... Resample it'; a tilted
    one now gets the same words as without --ct."""
    from LiverTumorSegLib.io import write_volume
    from LiverTumorSegLib.volume import CTVolume

    labels = np.zeros((6, 40, 40), np.uint8)
    labels[1:5, 10:30, 10:30] = 1
    labels[2:4, 15:20, 15:20] = 2
    ct = np.where(labels > 0, 60.0, -1000.0).astype(np.float32)
    ct[:, 2:38, 2:38] = np.where(labels[:, 2:38, 2:38] > 0, 60.0, 20.0)
    for name, axis in (("turned", 2), ("tilted", 0)):
        angle = np.radians(25.0)
        c, s = np.cos(angle), np.sin(angle)
        rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) if axis == 2 else \
            np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
        g = ImageGeometry(spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0), direction=tuple(rotation.ravel()))
        label_path = write_label_map(tmp_path / f"{name}_labels.nii.gz", labels, g)
        ct_path = write_volume(tmp_path / f"{name}_ct.nii.gz", CTVolume(array=ct, geometry=g))
        out = tmp_path / f"{name}.json"
        assert main(["measure", str(label_path), "--ct", str(ct_path), "-o", str(out)]) == 0
        warnings = [w for w in json.loads(out.read_text())["warnings"] if "degrees" in w]
        if name == "turned":
            assert warnings == []
        else:
            assert len(warnings) == 1 and "tilted 25 degrees from the axial plane" in warnings[0]
            assert "model" not in warnings[0]


def test_measure_prints_the_label_maps_warnings_on_stderr(tmp_path, capsys):
    """A map with tumor but no liver: the report said its burden (100 %) means nothing, the console nothing."""
    labels = np.zeros((6, 40, 40), np.uint8)
    labels[2:4, 15:20, 15:20] = 2
    path = write_label_map(tmp_path / "tumor_only.nii.gz", labels, ImageGeometry(spacing=(1.0, 1.0, 2.0)))
    assert main(["measure", str(path), "-o", str(tmp_path / "r.json")]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "tumor but no liver" in err


def _padded_pair(shift_yx_voxels):
    """Baseline: the phantom (2 lesions) in a field of view padded by 20 voxels around it; follow-up: the same
    patient, lesions unchanged, lying ``shift_yx_voxels`` (2 mm voxels) off inside the same field of view."""
    base = make_phantom((40, 96, 96), (2.0, 2.0, 4.0), lesions=[PhantomLesion((14, 30, 24), 7.0, 15.0),
                                                                 PhantomLesion((22, 38, 32), 7.0, 20.0)],
                        noise_hu=5.0, seed=0)
    pad = ((0, 0), (20, 20), (20, 20))
    ct, labels = np.pad(base.ct.array, pad, constant_values=-1000), np.pad(base.labels, pad)
    geometry = base.ct.geometry

    def moved(a):  # the shift is smaller than the padding: only padding wraps around
        return np.roll(a, tuple(shift_yx_voxels), axis=(1, 2))

    return (CTVolume(labels, geometry), CTVolume(moved(labels), geometry),
            CTVolume(ct.astype(np.float32), geometry), CTVolume(moved(ct).astype(np.float32), geometry))


def test_ct_alignment_starts_where_the_livers_overlap_a_patient_moved_in_a_large_field_of_view():
    """With both CTs the registration started from the grids' centres: a patient lying (-24, -16, 0) mm off in a
    large field of view ended at (21, 7.5, 3) mm with liver Dice 0.15, both lesions 'disappeared', two 'new', PD,
    and no warning. It starts from the liver masks' alignment now."""
    base, follow, base_ct, follow_ct = _padded_pair((-8, -12))   # -16 mm in y, -24 mm in x (2 mm voxels)
    change = compare_followup(base, follow, base_ct, follow_ct)
    align = change["alignment"]
    assert align["method"] == "ct" and align["liver_dice_after_alignment"] > 0.95
    np.testing.assert_allclose(align["translation_lps_mm"], [-24.0, -16.0, 0.0], atol=1.0)
    assert statuses(change) == ["stable", "stable"] and change["response"] == "SD"
    # no warning about the alignment (the phantom's lesions of 15 and 20 HU are of water density: that one is given)
    assert [w for w in change["warnings"] if "of water density" not in w] == []


def test_a_doubtful_alignment_is_warned_and_a_thin_scan_aligns():
    """A liver Dice under 0.7 after alignment is told in the report and the summary (the matching is then
    unreliable); a 3-slice scan, like Testing/Data's ct3slice, stopped with an ITK error about 4 pixels."""
    from LiverTumorSegLib.followup import change_summary_lines

    base, follow, _, _ = _padded_pair((0, 0))
    far = CTVolume(np.roll(follow.array, 30, axis=2), follow.geometry)     # 120 mm off, not aligned: none
    change = compare_followup(base, far, alignment="none")
    assert change["alignment"]["liver_dice_after_alignment"] < 0.7 and len(change["warnings"]) == 1
    assert "livers overlap little" in change["warnings"][0]
    assert change_summary_lines(change)[1] == f"warning: {change['warnings'][0]}"
    thin = CTVolume(base.array[10:13], base.geometry)
    for ct in (None, CTVolume(_thin_ct(base), base.geometry)):
        change = compare_followup(thin, thin, ct, ct)
        assert change["alignment"]["liver_dice_after_alignment"] == pytest.approx(1.0)
        np.testing.assert_allclose(change["alignment"]["translation_lps_mm"], 0.0, atol=0.5)


def _chiral_liver():
    """A liver of three unlike lobes (no mirror symmetry) with one lesion, ``(z, y, x)`` on 2 x 2 x 4 mm voxels."""
    labels = np.zeros((20, 64, 64), np.uint8)
    labels[3:17, 12:44, 8:34] = 1
    labels[10:17, 14:30, 34:54] = 1
    labels[3:8, 36:50, 16:28] = 1
    labels[8:12, 20:28, 14:22] = 2
    return labels


@pytest.mark.parametrize("degrees", [10.0, 30.0])
def test_an_alignment_that_turns_the_followup_far_is_warned_of(tmp_path, monkeypatch, degrees):
    """The example CTs stored mirrored left-right aligned with a 52.5 and a 32.0 degree turn at liver Dice 0.763
    and 0.777 (over 0.7) and matched their lesions wrongly (a false PD) without a word: a turn of more than 20
    degrees is warned of, in the report, the summary and the picture; a 10 degree turn is not."""
    from LiverTumorSegLib.followup import change_summary_lines

    turn = np.deg2rad(degrees)
    rotation = np.array([[np.cos(turn), -np.sin(turn), 0.0], [np.sin(turn), np.cos(turn), 0.0], [0.0, 0.0, 1.0]])
    labels = _chiral_liver()
    change = compare_followup(CTVolume(labels, ImageGeometry(spacing=(2.0, 2.0, 4.0))),
                              CTVolume(labels.copy(), ImageGeometry(spacing=(2.0, 2.0, 4.0),
                                                                    direction=tuple(rotation.ravel()))),
                              alignment="liver")
    assert change["alignment"]["rotation_angle_deg"] == pytest.approx(degrees, abs=1.0)
    assert change["alignment"]["liver_dice_after_alignment"] > 0.95
    turned = [w for w in change["warnings"] if "the alignment turned the follow-up" in w]
    if degrees < 20.0:
        assert turned == []
        return
    assert len(turned) == 1 and "stored mirrored" in turned[0] and f"warning: {turned[0]}" in \
        change_summary_lines(change)
    pytest.importorskip("matplotlib")
    (title,) = [t for t in _picture_texts(tmp_path, monkeypatch, change) if t.startswith("RECIST 1.1 response")]
    assert f"the alignment turned the follow-up by {change['alignment']['rotation_angle_deg']:.1f} degrees: check " \
           f"that neither scan is stored mirrored" in title


def _thin_ct(labels):
    """A 3-slice CT for ``labels[10:13]`` of :func:`_padded_pair`: liver 60 HU, rest soft tissue or air."""
    array = np.where(labels.array[10:13] >= 1, 60.0, 0.0).astype(np.float32)
    array[:, :10] = -1000.0
    return array


@pytest.mark.parametrize("value", ["nan", "inf", "1e308", "1000.5"])
def test_min_new_lesion_mm_must_be_finite(tmp_path, capsys, value):
    """``--min-new-lesion-mm nan`` passed (nan < 0 is False): no new lesion could make PD, and the report held
    NaN, which strict JSON rejects; 1e308 (or any length beyond a liver's) switched the new-lesion rule off."""
    base, follow = shifted_pair()
    paths = [write_label_map(tmp_path / f"{n}.nii.gz", p.labels, p.ct.geometry)
             for n, p in (("base", base), ("follow", follow))]
    code = main(["followup", "--baseline", str(paths[0]), "--followup", str(paths[1]), "--min-new-lesion-mm", value,
                 "--no-picture", "-o", str(tmp_path / "change.json")])
    assert code == 2 and "finite number from 0 to 1000 (mm" in capsys.readouterr().err
    assert not (tmp_path / "change.json").exists()
    with pytest.raises(Exception, match="finite number from 0 to 1000 "):
        compare_followup(labels_of(base), labels_of(follow), min_new_lesion_mm=float(value))


def test_alignment_errors_name_the_library_argument_in_a_library_call():
    """Library callers (and the Slicer panel) were told to use '--alignment none', a flag they do not have."""
    from LiverTumorSegLib.errors import InputError, cli_wording
    geometry = ImageGeometry(spacing=(1.0, 1.0, 1.0))
    tumor_only = np.zeros((4, 8, 8), np.uint8)
    tumor_only[1:3, 2:5, 2:5] = 2                              # no liver label to align on
    tumor_only = CTVolume(tumor_only, geometry)
    with pytest.raises(InputError, match=r"baseline_ct=, followup_ct=\) or alignment='none'"):
        compare_followup(tumor_only, tumor_only, alignment="liver")
    with cli_wording(), pytest.raises(InputError, match=r"--baseline-ct, --followup-ct\) or --alignment none"):
        compare_followup(tumor_only, tumor_only, alignment="liver")


@pytest.mark.parametrize("which", ["baseline", "follow-up"])
def test_an_empty_label_map_is_refused_not_read_as_every_lesion_gone(which):
    """An all-zero follow-up map (a failed segmentation, the wrong file) gave CR, the best category, with a warning
    that blamed the alignment (the follow-up audit)."""
    from LiverTumorSegLib.errors import InputError
    geometry = ImageGeometry(spacing=(2.0, 2.0, 2.0))
    labels = np.zeros((12, 24, 24), np.uint8)
    labels[2:10, 2:22, 2:22] = 1
    labels[3:9, 6:13, 6:13] = 2
    full, empty = CTVolume(labels, geometry), CTVolume(np.zeros_like(labels), geometry)
    pair = (empty, full) if which == "baseline" else (full, empty)
    with pytest.raises(InputError, match=f"The {which} label map holds no liver and no tumor") as refused:
        compare_followup(*pair, alignment="none")
    # what would happen, not the project's history ('(the follow-up audit: an empty follow-up read as CR)')
    assert "audit" not in str(refused.value) and "a false complete response" in str(refused.value)


@pytest.mark.parametrize("which", ["baseline", "follow-up"])
def test_a_ct_given_as_a_label_map_names_which_map(which):
    """The CTs given where the label maps go (a library call's arguments swapped): the refusal said "Label map
    'label map' has values -1000, ...", not which of the two maps it was."""
    from LiverTumorSegLib.errors import LabelError
    base, follow = shifted_pair()
    ct = base.ct if which == "baseline" else follow.ct
    pair = (CTVolume(ct.array, ct.geometry), labels_of(follow)) if which == "baseline" else \
        (labels_of(base), CTVolume(ct.array, ct.geometry))
    with pytest.raises(LabelError, match=f"Label map '{which} given to compare_followup' has values .*is it the CT "
                                         f"rather than the label map"):
        compare_followup(*pair, alignment="none")
    with pytest.raises(LabelError, match="Label map 'ct.nii.gz' has values"):
        compare_followup(CTVolume(base.ct.array, base.ct.geometry, source="ct.nii.gz"), labels_of(follow))


def test_a_map_with_tumor_but_no_liver_label_is_not_aligned_on_its_tumor():
    """A follow-up whose Liver segment was left empty: liver alignment moved its tumor onto the baseline liver's
    centre (15 mm off), so the unchanged lesion was 'disappeared' + 'new', a false PD."""
    from LiverTumorSegLib.errors import InputError
    geometry = ImageGeometry(spacing=(2.0, 2.0, 2.0))
    baseline = np.zeros((12, 24, 24), np.uint8)
    baseline[2:10, 2:22, 2:22] = 1
    baseline[3:9, 6:13, 6:13] = 2                  # 12-14 mm: a measurable target
    followup = np.where(baseline == 2, 2, 0).astype(np.uint8)
    with pytest.raises(InputError, match="the follow-up label map has no liver label"):
        compare_followup(CTVolume(baseline, geometry), CTVolume(followup, geometry), alignment="liver")
    same = compare_followup(CTVolume(baseline, geometry), CTVolume(followup, geometry), alignment="none")
    assert same["response"] == "SD" and statuses(same) == ["stable"]
    # its tumor against the baseline's liver read liver Dice 0.06 and 'check that both scans show the same patient'
    # (the follow-up audit): no liver Dice is measured, and the warning says why nothing checks the alignment
    assert same["alignment"]["liver_dice_after_alignment"] is None
    assert not any("overlap little" in w for w in same["warnings"])
    assert any("the follow-up label map holds no liver label (1), only tumor: the livers' overlap after alignment "
               "(liver Dice) is not measured" in w for w in same["warnings"])


def test_livers_of_much_different_volume_aligned_on_their_masks_are_warned_of():
    """After a resection of a third of the liver the liver masks' alignment was 6-10 mm off while its liver Dice
    (0.76) raised no warning (the follow-up audit): livers differing by 20 % or more are now named, with the advice
    to align on the CTs. A follow-up of the same liver is not."""
    geometry = ImageGeometry(spacing=(2.0, 2.0, 2.0))
    baseline = np.zeros((16, 30, 30), np.uint8)
    baseline[2:14, 3:27, 3:27] = 1
    baseline[6:10, 8:14, 8:14] = 2
    resected = baseline.copy()
    resected[:, :, 19:] = 0                           # a third of the liver gone: 1/3 of 24 columns
    change = compare_followup(CTVolume(baseline, geometry), CTVolume(resected, geometry), alignment="liver")
    (said,) = [w for w in change["warnings"] if "livers' volumes differ" in w]
    # counted where both scans show after the masks' alignment (which moves the remnant: 51 of the 55 mL stay on
    # the follow-up's grid); both were counted whole where neither scan held padding (33 %, 55 mL)
    assert "differ by 28 % (baseline 51 mL, follow-up 37 mL where both scans show" in said and "align on the CTs" in said
    same = compare_followup(CTVolume(baseline, geometry), CTVolume(baseline.copy(), geometry), alignment="liver")
    assert not any("livers' volumes differ" in w for w in same["warnings"])


def test_after_a_resection_the_ct_registration_is_kept_over_the_liver_masks():
    """Both CTs given, the right 55 % of the liver resected and the rest regrown (365 -> 234 mL), the lesion and
    the CTs unchanged: the masks' alignment overlapped the livers more (0.71 against 0.55) and replaced the CTs',
    16.5 mm off, so the unchanged lesion read 'disappeared' + 'new', a false PD (the review of 57d76b3). With
    livers 20 % or more apart, the CT registration is kept, and said so."""
    from scipy import ndimage

    phantom = make_phantom((32, 96, 96), (2.0, 2.0, 4.0), lesions=[PhantomLesion((16, 38, 42), 5.0, 20.0)],
                           noise_hu=8.0, seed=0)
    labels = phantom.labels.astype(np.uint8)
    xs = np.flatnonzero((labels >= 1).any(axis=(0, 1)))
    cut = xs.min() + int(0.55 * (xs.max() - xs.min()))
    follow = labels.copy()
    follow[:, :, :cut] = 0
    grown = ndimage.binary_dilation(follow >= 1, iterations=3) & ~(follow >= 1)
    grown[:, :, :cut + 3] = False
    follow[grown] = 1
    change = compare_followup(labels_of(phantom), CTVolume(follow, phantom.ct.geometry), phantom.ct, phantom.ct)
    assert change["alignment"]["method"] == "ct" and change["response"] == "SD"
    assert statuses(change) == ["stable"]
    assert any("the livers' volumes differ by 36 % (baseline 365 mL, follow-up 234 mL" in w
               and "the CT registration is kept" in w for w in change["warnings"])


def test_what_reading_the_label_maps_left_out_is_in_the_change_report():
    base = CTVolume(np.ones((4, 8, 8), np.uint8), ImageGeometry(spacing=(1.0, 1.0, 1.0)))
    follow = CTVolume(np.ones((4, 8, 8), np.uint8), ImageGeometry(spacing=(1.0, 1.0, 1.0)),
                      meta={"warnings": ["segment(s) 'Portal vein' of 'f.seg.nrrd' are neither ... left out"]})
    change = compare_followup(base, follow, alignment="none")
    assert change["warnings"][0].startswith("follow-up: segment(s) 'Portal vein'")


def test_a_change_of_exactly_20_or_30_percent_meets_the_status_rules():
    """10 -> 12 voxels of 0.6 mm are 6.0 -> 7.199999999999999 mm, +20 % exactly: 'stable' (33 of 108 boundary
    cases); the non-target growth warning was skipped at exactly +20 % too. The response rule had a tolerance."""
    from LiverTumorSegLib.followup import _non_target_growth, _status

    assert 12 * 0.6 / (10 * 0.6) - 1 < 0.2
    assert _status([1], [1], 10 * 0.6, 12 * 0.6) == "grown"
    assert _status([1], [1], 10 * 0.65, 7 * 0.65) == "shrunk"  # -30 %
    assert _status([1], [1], 10 * 0.6, 11.9 * 0.6) == "stable"
    entry = {"recist_target": False, "status": "grown", "baseline_long_axis_mm": 40 * 0.65,
             "long_axis_change_mm": 48 * 0.65 - 40 * 0.65}  # 26.0 -> 31.2 mm: +20 %, +5.2 mm
    assert _non_target_growth([entry]) == [entry]


def test_a_lesion_cut_by_the_baseline_scans_edge_has_no_change_against_its_lower_bound():
    """Its baseline volume and axes are lower bounds, yet the lesion was reported 'grown' by 229 % against the
    same lesion seen whole at follow-up. Seen whole at follow-up it is 'present' with no change; it was
    'not_assessed' even so, which only a follow-up that does not show beyond the baseline's edge justifies."""
    from LiverTumorSegLib.followup import change_summary_lines

    base = make_phantom((24, 48, 40), (2.0, 2.0, 3.0), lesions=[PhantomLesion((5, 22, 18), 7.0, 15.0),
                                                                   PhantomLesion((15, 22, 18), 7.0, 20.0)],
                        noise_hu=0.0, seed=0)
    whole = labels_of(base)
    cut = _cropped_in_z(whole, 0, 5)  # ends below lesion 1's centre slice (z 5 of slices 3..7)
    change = compare_followup(cut, whole, alignment="none")
    cut_ids = [d["id"] for d in change["baseline"]["lesions"] if d["touches_scan_edge"]]
    assert cut_ids
    entry = next(e for e in change["lesions"] if set(cut_ids) & set(e["baseline_ids"]))
    assert entry["status"] == "present" and entry["volume_change_ml"] is None
    assert entry["long_axis_change_percent"] is None and entry["baseline_cut_by_scan_edge"] is True
    assert any("cut by the baseline scan's edge (a lower bound): change not measured" in line
               for line in change_summary_lines(change))
    same_range = compare_followup(cut, cut, alignment="none")  # shows nothing beyond the baseline's edge
    (entry,) = [e for e in same_range["lesions"] if set(cut_ids) & set(e["baseline_ids"])]
    assert entry["status"] == "not_assessed" and entry["long_axis_change_percent"] is None


def test_a_thin_followup_aligns_as_a_thin_baseline_does():
    """A 3-slice follow-up failed in ITK's smoothing ('dimension 2 is less than 4') with advice to check that
    both scans show the same region; a 3-slice baseline aligned."""
    base, _, base_ct, _ = _padded_pair((0, 0))
    thin, thin_ct = _cropped_in_z(base, 10, 13), _cropped_in_z(base_ct, 10, 13)  # slices 10..12, in place
    by_livers = compare_followup(base, thin)["alignment"]["translation_lps_mm"]
    np.testing.assert_allclose(by_livers, 0.0, atol=1.0)
    # on the CTs it runs, within 2 slices of 4 mm: the baseline's liver region samples the metric, and most of it
    # maps outside a 3-slice follow-up (a 3-slice baseline aligns to 1 mm); a known limit, not measured further
    by_cts = compare_followup(base, thin, base_ct, thin_ct)["alignment"]["translation_lps_mm"]
    np.testing.assert_allclose(by_cts, 0.0, atol=8.0)


def test_change_picture_counts_lesions_not_groups(tmp_path, monkeypatch):
    """Two baseline lesions merged into one: the baseline panel said '1 lesions' (one group)."""
    pytest.importorskip("matplotlib")
    from matplotlib.axes import Axes

    from LiverTumorSegLib.followup import save_change_picture

    change = merged_change()
    titles = []
    original = Axes.set_title
    monkeypatch.setattr(Axes, "set_title", lambda self, text, *a, **k: titles.append(text) or original(self, text,
                                                                                                       *a, **k))
    save_change_picture(tmp_path / "change.png", change)
    assert [t.split("(axial projection; ")[1] for t in titles if "axial projection" in t] == ["2 lesions)",
                                                                                              "1 lesion)"]


def _picture_texts(tmp_path, monkeypatch, change):
    """Every title, suptitle and text the change picture draws."""
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from LiverTumorSegLib.followup import save_change_picture

    said = []
    for cls, method in ((Axes, "set_title"), (Axes, "text"), (Figure, "suptitle")):
        original = getattr(cls, method)
        monkeypatch.setattr(cls, method, lambda self, *a, _o=original, _m=method, **k: said.append(
            str(a[2] if _m == "text" and len(a) > 2 else a[0])) or _o(self, *a, **k))
    save_change_picture(tmp_path / "change.png", change, overwrite=True)
    return said


def test_change_picture_says_when_the_follow_up_was_not_aligned_or_its_sides_are_unknown(tmp_path, monkeypatch):
    """With --alignment none the follow-up panel still said '(aligned to baseline)', and a follow-up picture of
    NIfTIs without sform/qform marked R, L and A as fact, where segment's preview says the orientation is unknown
    (the preview audit)."""
    pytest.importorskip("matplotlib")
    change = merged_change()                                   # alignment none
    said = _picture_texts(tmp_path, monkeypatch, change)
    assert any(t.startswith("Follow-up (not aligned: alignment none)") for t in said)
    assert not any("aligned to baseline" in t for t in said) and {"R", "L", "A"} <= set(said)
    change["_arrays"]["orientation_known"] = False
    change["alignment"]["liver_dice_after_alignment"] = 0.655
    said = _picture_texts(tmp_path, monkeypatch, change)
    assert not {"R", "L", "A"} & set(said)
    (title,) = [t for t in said if t.startswith("RECIST 1.1 response")]
    assert "ORIENTATION UNKNOWN" in title and "livers overlap little after alignment (liver Dice 0.655)" in title
    # the response's reason too: 'PD' beside rows all 'stable' (from the nadir) said nothing of why
    assert change["response_reason"] and " ".join(change["response_reason"].split()[:6]) in title


def test_the_change_pictures_reason_is_wrapped_and_cut_after_three_lines():
    from LiverTumorSegLib.followup import PICTURE_REASON_WIDTH, picture_reason_text

    assert picture_reason_text("") == ""
    assert picture_reason_text("new lesion") == "new lesion\n"
    long = " ".join(f"word{i}" for i in range(200))
    lines = picture_reason_text(long).splitlines()
    assert len(lines) == 3 and all(len(line) <= PICTURE_REASON_WIDTH for line in lines)
    assert lines[0].startswith("word0 word1") and lines[-1].endswith("... (the whole reason: the change report)")


def _spheres(spheres, shape=(40, 120, 160)):
    """Label map (1 mm x 1 mm x 2 mm voxels, origin 0): a liver box and tumor balls ``(x, y, z, radius)`` mm."""
    labels = np.zeros(shape, np.uint8)
    labels[2:shape[0] - 2, 5:shape[1] - 5, 5:shape[2] - 5] = 1
    z, y, x = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    z *= 2.0
    for cx, cy, cz, r in spheres:
        labels[(x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= r * r] = 2
    return CTVolume(labels, ImageGeometry(spacing=(1.0, 1.0, 2.0)))


def test_a_non_targets_own_followup_lesion_is_not_in_the_sum_of_diameters():
    """Targets T and B (21 mm each), non-target N (15 mm) beside T. At follow-up T grows to 27.9 mm into where N
    was, N shrinks to 7 mm, still its own lesion. The overlap graph grouped them ('merged' [1, 3] -> [1, 3]) and
    the follow-up sum took N's 7 mm too: 27.9 + 7.0 + 21 = 55.9 mm (+33 %, PD) with a row 36.0 -> 34.9 mm that hid
    T's growth; RECIST 1.1 sums the targets only: 27.9 + 21 = 48.9 mm (+16 %, SD)."""
    target, other, non_target = (40, 40, 40, 10), (110, 80, 40, 10), (59, 40, 40, 7)
    change = compare_followup(_spheres([target, other, non_target]),
                              _spheres([(40, 40, 40, 13.5), other, (59, 40, 40, 3)]), alignment="none")
    sod = change["sum_of_diameters"]
    assert sod["target_lesion_ids"] == [1, 2] and sod["baseline_mm"] == pytest.approx(42.0)
    assert sod["followup_mm"] == pytest.approx(48.9, abs=0.05) and change["response"] == "SD"
    rows = {e["number"]: (e["status"], e["baseline_ids"], e["followup_ids"]) for e in change["lesions"]}
    assert rows == {1: ("grown", [1], [1]), 2: ("stable", [2], [2]), 3: ("shrunk", [3], [3])}
    grown = change["lesions"][0]
    assert grown["baseline_long_axis_mm"] == pytest.approx(21.0) and grown["followup_long_axis_mm"] == \
        pytest.approx(27.9, abs=0.05)
    assert grown["recist_followup_ids"] == [1] and change["lesions"][2]["recist_followup_ids"] == []
    (warning,) = [w for w in change["warnings"] if "overlaps baseline target" in w]
    assert "follow-up lesion 1" in warning and "non-target lesion(s) 3" in warning and "for target lesion(s) 1" \
        in warning


def test_a_target_coalesced_with_a_non_target_is_measured_once_for_the_target():
    """A 20 mm target and a 8 mm non-target grow into one lesion that shares more voxels with the non-target: the
    target owns no follow-up lesion of its own, yet it did not disappear: the coalesced lesion (25.3 mm) is its
    follow-up diameter, counted once (RECIST 1.1), and a warning says that the non-target's part is in it."""
    g = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    base = np.ones((6, 60, 40), np.uint8)
    base[2:4, 5:25, 5:10] = 2                    # target: 20 x 5 voxels, sqrt(19^2 + 4^2) + 1 = 20.4 mm
    base[2:4, 30:38, 5:10] = 2                   # non-target: 8 x 5 voxels, 9.1 mm (not measurable)
    follow = np.ones_like(base)
    follow[2:4, 20:45, 5:10] = 2                 # one lesion: 5 rows of the target, all 8 of the non-target
    change = compare_followup(CTVolume(base, g), CTVolume(follow, g), alignment="none")
    (entry,) = change["lesions"]
    assert entry["status"] == "merged" and entry["baseline_ids"] == [1, 2] and entry["followup_ids"] == [1]
    assert entry["recist_followup_ids"] == [1]
    sod = change["sum_of_diameters"]
    assert sod["baseline_mm"] == pytest.approx(20.4, abs=0.05)
    assert sod["followup_mm"] == pytest.approx(np.hypot(24, 4) + 1) and change["response"] == "SD"
    assert any("measured once, whole, for target lesion(s) 1" in w and "non-target lesion(s) 2" in w
               for w in change["warnings"])


def _balls(spheres, shape, origin_z=0.0):
    """Label map of 1 mm x 1 mm x 2 mm voxels whose first slice is at z = ``origin_z`` mm: liver everywhere
    inside x 5..154, y 5..114 and tumor balls ``(x, y, z, radius)`` mm."""
    labels = np.zeros(shape, np.uint8)
    labels[:, 5:shape[1] - 5, 5:shape[2] - 5] = 1
    z, y, x = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    z = z * 2.0 + origin_z
    for cx, cy, cz, r in spheres:
        labels[(x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= r * r] = 2
    return CTVolume(labels, ImageGeometry(spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, origin_z)))


def test_a_lesion_cut_by_the_baseline_edge_is_assessed_where_the_followup_shows_beyond_that_edge():
    """Baseline z 0..78 mm: targets A and B (21 mm) and a 13 mm non-target E centred on the first slice (cut by
    the scan's edge). The follow-up covers z -20..78 mm, all of E and 20 mm beyond the baseline's edge. E was
    'not_assessed' whatever the follow-up showed, with the reason that it lay outside the follow-up's field of
    view: all gone read PR (not CR), E alone gone NE (not CR), E seen and doubled NE (not Non-CR/non-PD)."""
    base_shape, follow_shape = (40, 120, 160), (50, 120, 160)
    a, b, e = (40, 40, 40, 10), (110, 60, 40, 10), (80, 100, 0, 6)
    all_gone = compare_followup(_balls([a, b, e], base_shape), _balls([], follow_shape, -20.0), alignment="none")
    assert [x["status"] for x in all_gone["lesions"]] == ["disappeared"] * 3
    assert all_gone["response"] == "CR" and all_gone["sum_of_diameters"]["followup_mm"] == 0.0
    alone = compare_followup(_balls([e], base_shape), _balls([], follow_shape, -20.0), alignment="none")
    assert [x["status"] for x in alone["lesions"]] == ["disappeared"] and alone["response"] == "CR"
    doubled = compare_followup(_balls([e], base_shape), _balls([(80, 100, 0, 12)], follow_shape, -20.0),
                               alignment="none")
    (entry,) = doubled["lesions"]
    assert entry["status"] == "present" and entry["long_axis_change_mm"] is None
    assert entry["followup_long_axis_mm"] == pytest.approx(25.0) and doubled["response"] == "Non-CR/non-PD"
    # a follow-up on the baseline's own range shows nothing beyond the edge: E is not assessed, and says why
    same_range = compare_followup(_balls([a, b, e], base_shape), _balls([], base_shape), alignment="none")
    assert [x["status"] for x in same_range["lesions"]] == ["disappeared", "disappeared", "not_assessed"]
    assert same_range["response"] == "PR" and "Table 1" in same_range["response_reason"]
    assert "non-target lesion(s) 3 are cut by the baseline scan's edge" in same_range["response_reason"]
    assert "outside the follow-up scan's field of view" not in same_range["response_reason"]
    assert same_range["lesions"][2]["not_assessed_reason"] == "baseline_edge_not_covered"
    from LiverTumorSegLib.followup import change_summary_lines
    assert any("(cut by the baseline scan's edge; the follow-up does not show beyond it): not measured" in line
               for line in change_summary_lines(same_range))
    # reaching 4 mm beyond the edge is not enough for a 13 mm lesion (max(10 mm, its long axis) is asked)
    short = compare_followup(_balls([e], base_shape), _balls([], (42, 120, 160), -4.0), alignment="none")
    assert [x["status"] for x in short["lesions"]] == ["not_assessed"] and short["response"] == "NE"


def test_a_followup_lesion_cut_by_the_followup_scans_edge_is_named_as_a_lower_bound():
    """The follow-up scan ends at z 38 mm; target 2 (17 mm) is unchanged there but reaches the last slice along a
    3 mm stalk (it may go on beyond). It was reported stable, SD, without a word: its follow-up size is a lower
    bound and the category may be understated. Seen whole, nothing is said."""
    baseline = _balls([(40, 40, 28, 8), (110, 60, 20, 10)], (40, 120, 160))
    follow = _balls([(40, 40, 28, 8), (110, 60, 20, 10)], (20, 120, 160))
    z, y, x = np.meshgrid(np.arange(20) * 2.0, np.arange(120.0), np.arange(160.0), indexing="ij")
    follow.array[((x - 40) ** 2 + (y - 40) ** 2 <= 9) & (z >= 28)] = 2  # a stalk up to the scan's last slice
    change = compare_followup(baseline, follow, alignment="none")
    assert [d["touches_scan_edge"] for d in change["followup"]["lesions"]] == [False, True]
    assert change["response"] == "SD" and change["sum_of_diameters"]["followup_mm"] == pytest.approx(38.0)
    assert change["response_reason"].endswith("target lesion(s) 2 are cut by the follow-up scan's edge: the "
                                              "follow-up sum of diameters is a lower bound, so the response may be "
                                              "understated")
    (warning,) = [w for w in change["warnings"] if "follow-up scan's edge" in w]
    assert warning.startswith("follow-up lesion(s) 2 (row 2, stable) are cut by the follow-up scan's edge")
    assert change["lesions"][1]["followup_cut_by_scan_edge"] is True
    whole = compare_followup(baseline, _balls([(40, 40, 28, 8), (110, 60, 20, 10)], (40, 120, 160)),
                             alignment="none")
    assert whole["response_reason"] == "sum of diameters 38.0 -> 38.0 mm (+0.0 %)"
    assert not any("follow-up scan's edge" in w for w in whole["warnings"])


def test_a_ct_of_the_label_maps_size_on_another_grid_is_refused():
    """compare_followup compared only the CT's size with its label map's: a CT of the same size on another grid (an
    origin 30 mm off) went into the CT registration, whose result, found in the CT's frame, was applied to the
    labels, and the lesions' mean HU were read at the wrong places, without a word."""
    from LiverTumorSegLib.errors import InputError

    base, follow = shifted_pair()
    g = base.ct.geometry
    moved = ImageGeometry(g.spacing, (g.origin[0] + 30.0, g.origin[1], g.origin[2]), g.direction)
    off_grid = CTVolume(array=base.ct.array, geometry=moved, source="baseline CT")
    with pytest.raises(InputError, match=r"baseline label map is not on its CT's grid: origin"):
        compare_followup(labels_of(base), labels_of(follow), baseline_ct=off_grid, followup_ct=follow.ct)
    flipped = CTVolume(array=follow.ct.array, source="follow-up CT", geometry=ImageGeometry(
        follow.ct.geometry.spacing, follow.ct.geometry.origin, (-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)))
    with pytest.raises(InputError, match=r"follow-up label map is not on its CT's grid: direction"):
        compare_followup(labels_of(base), labels_of(follow), baseline_ct=base.ct, followup_ct=flipped)


def test_a_sum_of_diameters_change_that_rounds_to_zero_reads_0_0_percent():
    """A -0.02 % change printed '(-0.0 %)' (helper-35's audit)."""
    from LiverTumorSegLib.followup import sum_of_diameters_line

    for change, shown in ((-0.02, "(0.0 %)"), (0.04, "(0.0 %)"), (-12.34, "(-12.3 %)"), (5.0, "(+5.0 %)")):
        line = sum_of_diameters_line({"baseline_mm": 40.0, "followup_mm": 40.0, "change_percent": change})
        assert line.endswith(shown), line


def test_the_sum_of_diameters_line_words_a_change_near_a_threshold_as_the_response_reason_does():
    """A 60 mm target became a 45-degree line of 30 pixels (29 x sqrt(2) + 1 = 42.01 mm, -29.98 %): the reason said
    'SD (... -29.98 %)' and the sum-of-diameters line under it '(-30.0 %)', the PR threshold beside SD."""
    from LiverTumorSegLib.followup import change_summary_lines

    g = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    base = np.ones((4, 80, 80), np.uint8)
    base[1, 5, 5:65] = 2
    follow = np.ones_like(base)
    follow[1, np.arange(5, 35), np.arange(5, 35)] = 2
    change = compare_followup(CTVolume(base, g), CTVolume(follow, g), alignment="none")
    assert change["response"] == "SD" and change["response_reason"].endswith("(-29.98 %)")
    # the sums too: '60.0 -> 42.0 mm' is -30 % exactly, the PR the percent beside it says is not met
    assert change_summary_lines(change)[1] == "target lesions [1]: sum of diameters 60.00 -> 42.01 mm (-29.98 %)"
    assert change["response_reason"].startswith("sum of diameters 60.00 -> 42.01 mm")


def test_outlines_are_drawn_for_one_pixel_masks_and_closed_along_the_image_edge():
    """matplotlib's contour refused masks under 2 x 2 pixels: `followup` with a one-voxel baseline lesion ended in
    an internal error (the fuzzing audit), and a region touching the image edge was left open there. The outline is
    drawn on the mask padded by one background pixel, in the same pixel coordinates."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from LiverTumorSegLib.metrics.report import draw_outline

    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    draw_outline(ax, np.ones((1, 1), bool), colors=["red"])  # refused before: "at least a (2, 2) shaped array"
    full = np.ones((4, 6), bool)
    draw_outline(ax, full, colors=["red"])
    draw_outline(ax, np.zeros((3, 3), bool), colors=["red"])  # nothing to draw, no error
    contours = [c for c in ax.collections]
    assert len(contours) == 2
    vertices = np.concatenate([path.vertices for path in contours[1].get_paths()])
    # the whole 4 x 6 mask is enclosed half a pixel outside its pixel centres, on every side (closed at the edge)
    assert vertices[:, 0].min() == pytest.approx(-0.5) and vertices[:, 0].max() == pytest.approx(5.5)
    assert vertices[:, 1].min() == pytest.approx(-0.5) and vertices[:, 1].max() == pytest.approx(3.5)


def _rendered(draw, shape=(30, 40)):
    """RGBA pixels and axis limits of a figure with a black ``shape`` image that ``draw(ax)`` outlines on."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3))
    canvas = FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.imshow(np.zeros(shape), cmap="gray", vmin=0, vmax=1, aspect=0.8, interpolation="nearest")
    draw(ax)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy(), (ax.get_xlim(), ax.get_ylim())


def _outline_cases(shape=(30, 40)):
    """Whole-image masks with their colour and line style: a one-pixel lesion, a ring (hole in its projection),
    one cut by the image's edge and two overlapping ones, dashed and solid (the later one on top)."""
    cases = []
    for box, color, style in (((slice(5, 6), slice(5, 6)), "red", "solid"),
                              ((slice(8, 20), slice(10, 24)), "yellow", "solid"),
                              ((slice(0, 6), slice(30, 40)), "lime", "dashed"),
                              ((slice(12, 26), slice(16, 30)), "magenta", "dashed"),
                              ((slice(14, 28), slice(20, 36)), "cyan", "solid")):
        mask = np.zeros(shape, bool)
        mask[box] = True
        cases.append((mask, color, style))
    cases[1][0][11:17, 13:21] = False  # the ring's hole
    return cases


def _boxed(mask):
    """``(mask within its bounding box, (row, column) of the box's first pixel)``."""
    rows, cols = np.nonzero(mask)
    return mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1], (int(rows.min()), int(cols.min()))


def test_outlines_drawn_at_once_from_their_boxes_are_the_pixels_of_one_contour_per_whole_image_mask():
    """followup's picture drew each lesion with ax.contour on a whole-image mask (minutes and gigabytes for
    thousands of lesions); draw_outlines draws them from their bounding boxes in one collection: the same pixels,
    line by line (dashes, a ring's hole, the image's edge, which one lies on top) and the same axis limits."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("contourpy")  # matplotlib >= 3.6; before, each outline is an ax.contour
    from LiverTumorSegLib.metrics.report import draw_outline, draw_outlines

    cases = _outline_cases()

    def one_contour_each(ax):
        for mask, color, style in cases:
            draw_outline(ax, mask, colors=[color], linewidths=1.5, linestyles=style)

    def at_once(ax):
        draw_outlines(ax, [_boxed(m) + (c, s) for m, c, s in cases], image_shape=(30, 40), linewidths=1.5)
        assert len(ax.collections) == 1 and len(ax.collections[0].get_paths()) == len(cases)

    before, before_limits = _rendered(one_contour_each)
    after, after_limits = _rendered(at_once)
    assert after_limits == before_limits == ((-1.0, 40.0), (30.0, -1.0))
    assert np.count_nonzero((before != after).any(axis=-1)) == 0
    assert np.count_nonzero((after != _rendered(lambda ax: None)[0]).any(axis=-1)) > 500  # something was drawn


def test_outlines_without_contourpy_are_drawn_one_contour_each(monkeypatch):
    """matplotlib < 3.6 has no contourpy: draw_outlines then calls ax.contour per box, with the same pixels."""
    pytest.importorskip("matplotlib")
    import builtins

    from LiverTumorSegLib.metrics import report

    cases = _outline_cases()
    draw = lambda ax: report.draw_outlines(ax, [_boxed(m) + (c, s) for m, c, s in cases], image_shape=(30, 40))
    with_contourpy = _rendered(draw)
    real_import = builtins.__import__

    def no_contourpy(name, globals=None, *args, **kwargs):
        if name == "contourpy" and globals is not None and globals.get("__name__") == report.__name__:
            raise ImportError("No module named 'contourpy'")
        return real_import(name, globals, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_contourpy)
    without = _rendered(draw)
    assert without[1] == with_contourpy[1]
    assert np.count_nonzero((without[0] != with_contourpy[0]).any(axis=-1)) == 0


def test_change_picture_outlines_lesions_from_their_boxes_and_numbers_at_most_a_hundred(tmp_path, monkeypatch):
    """A map of 144 one-voxel lesions (12 x 12, half gone at follow-up): each panel is one collection of 144
    outlines (no ax.contour, no whole-volume mask per lesion: 7,225 such lesions took 10 min and 14 GB), each
    lesion read within its one-voxel box; 100 numbers per panel, the title says which. A lesion's outline and
    number lie where they were: the outline half a pixel around the voxel, the number 1.5 pixels above it."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("contourpy")  # matplotlib >= 3.6; before, each outline is an ax.contour
    from matplotlib.axes import Axes
    from matplotlib.collections import PathCollection

    import LiverTumorSegLib.followup as followup

    base = np.ones((3, 40, 40), np.uint8)
    base[1, 8:32:2, 8:32:2] = 2
    follow = base.copy()
    follow[1, 8:32:4, 8:32:2] = 1
    g = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    change = compare_followup(CTVolume(base, g), CTVolume(follow, g), alignment="none")
    assert len(change["lesions"]) == 144 and change["status_counts"]["disappeared"] == 72
    boxes_read = []
    real_projection = followup._lesion_projection

    def spy(components, boxes, ids):
        found = real_projection(components, boxes, ids)
        boxes_read.append(found[0].size)
        return found

    monkeypatch.setattr(followup, "_lesion_projection", spy)
    monkeypatch.setattr(Axes, "contour", lambda *a, **k: pytest.fail("ax.contour per lesion"))
    titles, panels = [], []
    from matplotlib.figure import Figure

    real_savefig = Figure.savefig

    def keep_axes(fig, *args, **kwargs):
        panels.extend(fig.axes[:2])
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep_axes)
    followup.save_change_picture(tmp_path / "many.png", change)
    assert (tmp_path / "many.png").stat().st_size > 0
    assert boxes_read == [1] * 288  # 144 lesions per panel (gone ones dashed where they were), a pixel each
    for ax in panels:
        assert [type(c) for c in ax.collections] == [PathCollection]
        assert len(ax.collections[0].get_paths()) == 144
        numbers = [t for t in ax.texts if t.get_text().isdigit()]
        assert [int(t.get_text()) for t in numbers] == list(range(1, 101))  # all one pixel: the lowest numbers
        assert ax.get_title().endswith("\nnumbered: the 100 largest of 144 outlines")
        titles.append(ax.get_title().split("\n")[1])
        # lesion 1 is voxel (1, 8, 8); the liver fills the map, so the picture is not cropped: pixel (8, 8)
        first = ax.collections[0].get_paths()[0].vertices
        assert numbers[0].get_position() == (8.0, 8.0 - 1.5)
        assert (first.min(axis=0).tolist(), first.max(axis=0).tolist()) == ([7.5, 7.5], [8.5, 8.5])
    assert titles == ["(axial projection; 144 lesions)", "(axial projection; 72 lesions)"]


def test_a_new_lesion_beside_a_vanished_long_target_is_new_not_the_target_moved():
    """A 42 mm target gone and a new 11 mm lesion 14 mm from its centre, sharing no voxel: half the long axis (21 mm)
    let the new lesion pass for the target, shrunk, so PR stood where a new lesion makes PD (the follow-up audit).
    A lesion counts as moved within 10 mm at most; such a link is said in the warnings."""
    geometry = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    liver = np.zeros((20, 80, 80), np.uint8)
    liver[2:18, 5:75, 5:75] = 1
    baseline = liver.copy()
    baseline[8:12, 30:34, 19:61] = 2                           # 42 x 4 mm in-plane: the target
    baseline[8:12, 60:70, 10:20] = 2                           # a second lesion, unchanged
    followup = liver.copy()
    followup[8:12, 60:70, 10:20] = 2
    followup[8:12, 41:48, 36:47] = 2                           # 11 mm, its centre 12.5 mm from the target's
    report = compare_followup(CTVolume(baseline, geometry), CTVolume(followup, geometry), alignment="none")
    statuses = sorted(e["status"] for e in report["lesions"])
    assert statuses == ["disappeared", "new", "stable"] and report["response"] == "PD"
    # a lesion that did move a little (5 mm, no shared voxel) is still one lesion, and the link is said
    moved = liver.copy()
    moved[8:12, 60:70, 10:20] = 2
    moved[8:12, 35:39, 19:61] = 2                              # the target 5 mm further along y
    report = compare_followup(CTVolume(baseline, geometry), CTVolume(moved, geometry), alignment="none")
    assert sorted(e["status"] for e in report["lesions"]) == ["stable", "stable"]
    assert any("share no voxel after alignment and were taken for one lesion that moved" in w
               for w in report["warnings"])


def test_the_liver_overlap_is_judged_where_both_scans_show_and_a_single_ct_is_said():
    """A follow-up covering part of the baseline's head-foot range read liver Dice 0.67 after a 0.5 mm alignment,
    with a warning to check that both scans show the same patient; and with only one CT given, the CT alignment
    was dropped without a word (the follow-up audit)."""
    geometry = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    baseline = np.zeros((30, 40, 40), np.uint8)
    baseline[2:28, 5:35, 5:35] = 1
    baseline[10:14, 15:22, 15:22] = 2
    part = baseline[8:22].copy()                               # the follow-up scans slices 8-21 only
    shifted = ImageGeometry(spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 16.0))
    report = compare_followup(CTVolume(baseline, geometry), CTVolume(part, shifted), alignment="none")
    assert report["alignment"]["liver_dice_after_alignment"] == pytest.approx(1.0)
    assert not any("overlap little" in w for w in report["warnings"])
    hu = np.where(baseline >= 1, 60, -1000).astype(np.int16)
    one = compare_followup(CTVolume(baseline, geometry), CTVolume(baseline, geometry),
                           baseline_ct=CTVolume(hu, geometry))
    assert one["alignment"]["method"] == "liver"
    assert any("only the baseline CT was given" in w for w in one["warnings"])


def test_pd_with_a_target_not_assessed_says_its_sum_is_the_seen_targets_lower_bound():
    """The reason quoted 'sum of diameters 27.4 -> 37.0 mm (+34.9 %)' while the report's sum read 'unknown', with no
    word that 37.0 mm counts the targets seen only (the follow-up audit). PD stands: the lower bound shows it."""
    g = ImageGeometry(spacing=(1.0, 1.0, 3.0))
    base = np.ones((12, 60, 60), np.uint8)
    base[2:4, 5:25, 5:10] = 2                    # target 1: 20 mm, slices 2-3
    base[8:10, 35:50, 40:45] = 2                 # target 2: 15 mm, slices 8-9
    follow = np.ones_like(base)
    follow[8:10, 5:60, 40:45] = 2                # target 2 grown to 55 mm; target 1's slices not scanned
    change = compare_followup(CTVolume(base, g), _cropped_in_z(CTVolume(follow, g), 6, 12), alignment="none")
    assert change["response"] == "PD" and change["sum_of_diameters"]["followup_mm"] is None
    assert "the follow-up sum counts the targets seen only, a lower bound that already shows progression" in \
        change["response_reason"]



def test_pd_for_a_new_lesion_with_a_target_not_assessed_does_not_say_the_shrunk_sum_shows_progression():
    """Target 1 outside the follow-up scan, target 2 unchanged, a new 12 mm lesion: PD for the new lesion. The reason
    said the seen targets' sum (15.6 mm against 36.0 mm) 'already shows progression'; it shows none."""
    g = ImageGeometry(spacing=(1.0, 1.0, 3.0))
    base = np.ones((12, 60, 60), np.uint8)
    base[2:4, 5:25, 5:10] = 2                    # target 1: 20 mm, slices 2-3 (not scanned at follow-up)
    base[8:10, 35:50, 40:45] = 2                 # target 2: 15 mm, slices 8-9
    follow = np.ones_like(base)
    follow[8:10, 35:50, 40:45] = 2               # target 2 unchanged
    follow[8:10, 10:22, 20:24] = 2               # a new lesion, 12 mm
    change = compare_followup(CTVolume(base, g), _cropped_in_z(CTVolume(follow, g), 6, 12), alignment="none")
    reason = change["response_reason"]
    assert change["response"] == "PD" and reason.startswith("new lesion"), reason
    assert "already shows progression" not in reason
    assert "the follow-up sum of diameters is unknown (the targets seen sum to 15.6 mm, baseline 36.0 mm)" in reason


@pytest.mark.parametrize("base, follow, nadir, expected", [
    (36.0, 15.6, None, False), (25.0, 30.0, None, True), (25.0, 29.9, None, False),
    (40.0, 30.0, 25.0, True), (40.0, 5.0, 0.0, True), (40.0, 4.9, 0.0, False)])
def test_the_sum_rule_alone_from_the_smaller_of_baseline_and_nadir(base, follow, nadir, expected):
    from LiverTumorSegLib.followup import _sum_rule_shows_progression

    assert _sum_rule_shows_progression(base, follow, nadir) is expected

def test_two_dicom_series_of_other_patient_ids_are_said():
    """Another patient's scan with a similar liver aligned with liver Dice 0.91 and gave a response without a word
    (the follow-up audit). Where both CTs are DICOM series, differing PatientIDs are now said."""
    import tempfile

    sitk = pytest.importorskip("SimpleITK")
    pytest.importorskip("pydicom")
    from pathlib import Path

    from LiverTumorSegLib.followup import _other_patient_warning, dicom_patient_id

    folder = Path(tempfile.mkdtemp())

    def dicom_ct(name, patient):
        image = sitk.GetImageFromArray(np.zeros((4, 4), np.int16))
        for tag, value in {"0008|0060": "CT", "0010|0020": patient}.items():
            image.SetMetaData(tag, value)
        sitk.WriteImage(image, str(folder / name))
        return CTVolume(np.zeros((1, 4, 4), np.int16), ImageGeometry(spacing=(1.0, 1.0, 1.0)),
                        meta={"files": [str(folder / name)]})

    first, second, same = dicom_ct("a.dcm", "P-001"), dicom_ct("b.dcm", "P-002"), dicom_ct("c.dcm", "P-001")
    assert dicom_patient_id(first) == "P-001"
    (said,) = _other_patient_warning(first, second)
    assert "DICOM PatientIDs differ ('P-001' and 'P-002')" in said
    assert _other_patient_warning(first, same) == []
    assert _other_patient_warning(first, None) == [] and _other_patient_warning(None, second) == []
    nifti = CTVolume(np.zeros((1, 4, 4), np.int16), ImageGeometry(spacing=(1.0, 1.0, 1.0)))  # not DICOM: not judged
    assert _other_patient_warning(first, nifti) == []


def test_alignment_reports_the_rotations_whole_angle_not_only_the_translation():
    """A rigid alignment turned 12 degrees about an oblique axis: the record and the printed line give 12.0 deg
    (not one of the Euler angles, whose order matters), a translation-only one 0.0 deg."""
    import SimpleITK as sitk

    from LiverTumorSegLib.followup import Alignment, change_summary_lines

    versor = sitk.VersorRigid3DTransform()
    versor.SetRotation((1.0 / np.sqrt(2.0), 1.0 / np.sqrt(2.0), 0.0), np.deg2rad(12.0))
    euler = sitk.Euler3DTransform()
    euler.SetMatrix(versor.GetMatrix())
    euler.SetTranslation((1.0, 2.0, 3.0))
    record = Alignment(method="ct", transform=euler, liver_dice=0.9).to_dict()
    assert record["rotation_angle_deg"] == pytest.approx(12.0, abs=1e-6)
    assert max(abs(a) for a in record["rotation_deg_xyz"]) < 11.0  # no single Euler angle is the whole turn
    # the record rebuilds the transform: its matrix, and the Euler angles composed as ITK's Euler3D, Rz Rx Ry (read
    # as x, then y, then z they gave another rotation; the record named no order)
    matrix = np.asarray(record["rotation_matrix"]).reshape(3, 3)
    np.testing.assert_allclose(matrix, np.asarray(versor.GetMatrix()).reshape(3, 3), atol=1e-12)
    ax, ay, az = np.deg2rad(record["rotation_deg_xyz"])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    np.testing.assert_allclose(rz @ rx @ ry, matrix, atol=1e-9)
    assert "R = Rz Rx Ry" in record["meaning"]
    point = np.array([10.0, -20.0, 30.0])
    centre, moved = np.asarray(record["center_lps_mm"]), np.asarray(euler.TransformPoint(tuple(point)))
    np.testing.assert_allclose(matrix @ (point - centre) + centre + record["translation_lps_mm"], moved, atol=1e-9)
    change = {"response": "SD", "response_reason": "", "sum_of_diameters": {"baseline_mm": None}, "lesions": [],
              "alignment": record}
    line = [text for text in change_summary_lines(change) if text.startswith("alignment:")][0]
    assert line == ("alignment: ct, translation LPS (1.0, 2.0, 3.0) mm, rotation 12.0 deg, liver Dice after "
                    "alignment 0.900")
    shifted = sitk.Euler3DTransform()
    shifted.SetTranslation((4.0, 0.0, 0.0))
    assert Alignment(method="livers", transform=shifted).to_dict()["rotation_angle_deg"] == 0.0


def test_followup_warns_of_a_label_whose_header_mirrors_it_off_its_ct(tmp_path):
    """followup compared a baseline label map whose header was flipped by a conversion where that header put it,
    mirrored (only 'reoriented to the CT' was said); with the CTs given, the change report now warns."""
    import json

    from LiverTumorSegLib.cli import main
    from test_lesion_report_edge_cases import _label_with_a_mirrored_header

    ct, right, flipped = _label_with_a_mirrored_header(tmp_path)
    out = tmp_path / "change.json"
    assert main(["followup", "--baseline", flipped, "--followup", right, "--baseline-ct", ct, "--followup-ct", ct,
                 "-o", str(out), "--no-picture"]) == 0
    warnings = json.loads(out.read_text())["warnings"]
    assert sum("does not fit its CT where its header places it" in w and "liver_header_flipped" in w
               for w in warnings) == 1, warnings


def test_followup_warns_of_a_label_whose_voxels_are_mirrored_under_the_cts_header(tmp_path):
    """A follow-up label whose voxels were flipped against its CT under the CT's own header was compared mirrored
    without a word (stop 109's note); with the CTs given, the change report names the axis."""
    import json

    from LiverTumorSegLib.cli import main
    from test_lesion_report_edge_cases import _label_with_mirrored_voxels

    ct, flipped = _label_with_mirrored_voxels(tmp_path)
    right = ct.replace("example_ct_sm.nii.gz", "example_ct_sm_liver.nii.gz")
    out = tmp_path / "change.json"
    assert main(["followup", "--baseline", right, "--followup", flipped, "--baseline-ct", ct, "--followup-ct", ct,
                 "-o", str(out), "--no-picture"]) == 0
    warnings = json.loads(out.read_text())["warnings"]
    assert sum("does not fit its CT:" in w and "liver_voxels_flipped" in w and "along x" in w
               for w in warnings) == 1, warnings
    assert not any("example_ct_sm_liver" in w and "does not fit" in w for w in warnings), warnings


def test_followup_judges_progression_from_a_nadir_given(tmp_path, capsys):
    """RECIST 1.1 measures progression from the smallest sum on study: a 10 % shrink from the baseline is SD, but
    with an earlier follow-up's sum well below it (--nadir-sum-mm) the same scans are PD; the report records the
    nadir and says how it was used; a nadir that is no sum of diameters is refused before any work."""
    base, follow = shrinking_pair(0.9)
    plain = compare_followup(labels_of(base), labels_of(follow))
    base_sum, follow_sum = plain["sum_of_diameters"]["baseline_mm"], plain["sum_of_diameters"]["followup_mm"]
    assert plain["response"] == "SD" and plain["sum_of_diameters"]["nadir_mm"] is None
    nadir = round(follow_sum / 1.5, 1)            # +50 % and far more than 5 mm from it
    change = compare_followup(labels_of(base), labels_of(follow), nadir_sum_mm=nadir)
    assert change["response"] == "PD" and f"nadir {nadir:.1f} mm" in change["response_reason"]
    assert change["sum_of_diameters"]["nadir_mm"] == nadir
    assert "progression from the smaller of the baseline's sum and the nadir" in change["response_criteria"]
    above = compare_followup(labels_of(base), labels_of(follow), nadir_sum_mm=base_sum + 10.0)
    assert above["response"] == "SD" and any("is above the baseline's sum" in w for w in above["warnings"])
    paths = [write_label_map(tmp_path / f"{n}.nii.gz", p.labels, p.ct.geometry)
             for n, p in (("base", base), ("follow", follow))]
    out = tmp_path / "change.json"
    assert main(["followup", "--baseline", str(paths[0]), "--followup", str(paths[1]), "--nadir-sum-mm", str(nadir),
                 "--no-picture", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["response"] == "PD"
    for value in ("-1", "nan"):
        assert main(["followup", "--baseline", str(paths[0]), "--followup", str(paths[1]), "--nadir-sum-mm", value,
                     "--no-picture", "-o", str(tmp_path / "bad.json")]) == 2
        assert "must be a sum of diameters in mm, 0 or more" in capsys.readouterr().err
        assert not (tmp_path / "bad.json").exists()


def test_overlap_counts_are_those_of_the_id_pairs():
    # one integer key per voxel pair (np.unique(axis=0) on the pairs took 8.7 s for a 10 million voxel mass): the
    # same counts, in the same (baseline id, follow-up id) order, also with follow-up ids up to uint16's top
    rng = np.random.default_rng(3)
    base = rng.integers(0, 40, size=(6, 20, 20)).astype(np.int32)
    follow = rng.choice(np.array([0, 1, 2, 17, 65534], dtype=np.uint16), size=(6, 20, 20))
    both = (base > 0) & (follow > 0)
    pairs, counts = np.unique(np.stack([base[both], follow[both]], axis=1), axis=0, return_counts=True)
    expected = {(int(i), int(j)): int(n) for (i, j), n in zip(pairs, counts)}
    got = _overlap_counts(base, follow)
    assert list(got.items()) == list(expected.items())
    assert _overlap_counts(base, np.zeros_like(follow)) == {}


def test_the_non_target_growth_warning_names_at_most_ten_lesions():
    # miliary progression: every grown non-target lesion was listed in one warning line (4,300 characters for 180)
    geometry = ImageGeometry(spacing=(1.0, 1.0, 1.0))
    base = np.zeros((12, 96, 96), np.uint8)
    base[1:11, 2:94, 2:94] = 1
    follow = base.copy()
    base[3:9, 4:18, 4:18] = follow[3:9, 4:18, 4:18] = 2  # two stable targets (14 mm)
    base[3:9, 4:18, 24:38] = follow[3:9, 4:18, 24:38] = 2
    for n in range(12):  # 12 non-targets of 4 mm growing to 10 mm
        y, x = 30 + 20 * (n // 4), 10 + 22 * (n % 4)
        base[5:7, y:y + 4, x:x + 4] = 2
        follow[5:7, y - 3:y + 7, x - 3:x + 7] = 2
    change = compare_followup(CTVolume(base, geometry), CTVolume(follow, geometry), alignment="none")
    warning, = [w for w in change["warnings"] if w.startswith("non-target lesion(s) ")]
    assert " and 2 more (the comparison's rows) grew by 20 % and 5 mm or more" in warning
    assert warning.count(" mm), ") == 9


def test_the_console_summary_lists_at_most_ten_lesion_groups_and_counts_the_rest(tmp_path, capsys):
    # hundreds of lesions printed one console line each; the change report keeps every group
    geometry = ImageGeometry(spacing=(1.0, 1.0, 1.0))
    base = np.zeros((12, 96, 96), np.uint8)
    base[1:11, 2:94, 2:94] = 1
    follow = base.copy()
    for n in range(16):  # 16 lesions of 4 mm: 12 stay, 4 grow to 10 mm
        y, x = 6 + 22 * (n // 4), 6 + 22 * (n % 4)
        base[5:7, y:y + 4, x:x + 4] = 2
        follow[5:7, y - 3:y + 7, x - 3:x + 7] = 2 if n >= 12 else 0
        follow[5:7, y:y + 4, x:x + 4] = 2
    paths = [write_label_map(tmp_path / f"{name}.nii.gz", labels, geometry)
             for name, labels in (("base", base), ("follow", follow))]
    report = tmp_path / "change.json"
    assert main(["followup", "--baseline", str(paths[0]), "--followup", str(paths[1]), "--alignment", "none",
                 "--no-picture", "-o", str(report)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line[:3].strip().isdigit()]
    assert [line.split(":")[0].strip() for line in rows] == [str(n) for n in range(1, 11)], out
    assert "  ... 6 more lesion group(s) in the change report (2 grown, 4 stable)" in out.splitlines(), out
    assert len(json.loads(report.read_text())["lesions"]) == 16


def _link_lesions_one_pair_at_a_time(base_components, follow_on_base, base_lesions, follow_lesions,
                                     follow_centroids_on_base_lps):
    """link_lesions as it was before its centroid rule was vectorized (one distance per pair in Python): the
    reference its links must equal."""
    from LiverTumorSegLib.followup import MOVED_MAX_MM, LesionLinks

    overlap = _overlap_counts(base_components, follow_on_base)
    owner = {}
    for (i, j), n in sorted(overlap.items()):
        if j not in owner or n > overlap[(owner[j], j)]:
            owner[j] = i
    coalesced = {}
    for (i, j), n in sorted(overlap.items()):
        if i not in owner.values() and (i not in coalesced or n > overlap[(i, coalesced[i])]):
            coalesced[i] = j
    edges = [(i, j) for j, i in owner.items()] + [(i, j) for i, j in coalesced.items()]
    linked_base, linked_follow = {i for i, _ in edges}, {j for _, j in edges}
    base_by_id, follow_by_id = {d["id"]: d for d in base_lesions}, {d["id"]: d for d in follow_lesions}

    def near(base_id, follow_id):
        distance = float(np.linalg.norm(np.asarray(base_by_id[base_id]["centroid_lps_mm"])
                                        - follow_centroids_on_base_lps[follow_id]))
        limit = min(MOVED_MAX_MM, max(5.0, 0.5 * max(base_by_id[base_id]["long_axis_mm"],
                                                      follow_by_id[follow_id]["long_axis_mm"])))
        return distance if distance <= limit else np.inf

    for i in sorted(set(base_by_id) - linked_base):
        candidates = [(near(i, j), j) for j in follow_by_id if j not in linked_follow]
        candidates = [c for c in candidates if np.isfinite(c[0])]
        if candidates:
            j = min(candidates)[1]
            edges.append((i, j))
            owner[j] = i
            linked_base.add(i)
            linked_follow.add(j)
    return LesionLinks(_link_groups(edges, len(base_lesions), len(follow_lesions)), owner, coalesced, overlap)


def test_link_lesions_links_many_lesions_as_one_pair_at_a_time_did():
    # 850 x 850 lesions took 1.5 s (a distance per pair in Python, and a look into owner.values() per overlap)
    from LiverTumorSegLib.followup import link_lesions

    rng = np.random.default_rng(7)
    shape = (20, 100, 100)
    maps, lesions, centroids = [], [], []
    for count in (300, 280):
        ids = np.zeros(shape, np.int32)
        found = {}
        for k in range(1, count + 1):
            z, y, x = rng.integers(0, shape[0] - 2), rng.integers(0, shape[1] - 3), rng.integers(0, shape[2] - 3)
            ids[z:z + 2, y:y + 3, x:x + 3] = k
            found[k] = np.array([x + 1.0, y + 1.0, 2.0 * z + 1.0]) + rng.normal(0, 0.5, 3)
        maps.append(ids)
        lesions.append([{"id": k, "centroid_lps_mm": list(c), "long_axis_mm": float(rng.uniform(2, 30))}
                        for k, c in found.items()])
        centroids.append({k: c + rng.normal(0, 2.0, 3) for k, c in found.items()})
    centroids[1][5] = np.array([np.nan, 0.0, 0.0])  # a lesion without a centroid is near none
    arguments = (maps[0], maps[1], lesions[0], lesions[1], centroids[1])
    got, expected = link_lesions(*arguments), _link_lesions_one_pair_at_a_time(*arguments)
    assert (got.groups, got.owner, got.coalesced, got.overlap) == (expected.groups, expected.owner,
                                                                   expected.coalesced, expected.overlap)
    moved = [j for j, i in got.owner.items() if (i, j) not in got.overlap]
    assert len(moved) > 20 and got.coalesced  # the centroid rule and the coalescing were both exercised


def test_the_edge_and_moved_warnings_name_at_most_ten_lesions_and_the_rows_say_which():
    # 12 lesions grown to the follow-up scan's edge and 12 that moved 3 mm: each warning named every one (5,835
    # characters for 210 moved lesions); the moved ones are now also marked in their rows, as the cut ones were
    geometry = ImageGeometry(spacing=(1.0, 1.0, 1.0))
    base = np.zeros((12, 40, 150), np.uint8)
    base[1:11, 0:38, 2:148] = 1
    follow = base.copy()
    for n in range(12):
        x = 4 + 12 * n
        base[4:8, 6:10, x:x + 4] = 2
        follow[4:8, 0:10, x:x + 4] = 2  # grown to the scan's edge (y = 0)
        base[4:8, 30:32, x:x + 2] = 2
        follow[4:8, 30:32, x + 3:x + 5] = 2  # moved 3 mm, no shared voxel
    change = compare_followup(CTVolume(base, geometry), CTVolume(follow, geometry), alignment="none")
    cut, = [w for w in change["warnings"] if w.startswith("follow-up lesion(s) ")]
    moved, = [w for w in change["warnings"] if w.startswith("baseline and follow-up lesion(s) ")]
    assert cut.count("(row ") == 10 and " and 2 more (followup_cut_by_scan_edge in the comparison's rows) are cut" \
        in cut, cut
    assert moved.count(" mm apart)") == 10 and " and 2 more (moved_without_shared_voxel_mm in the comparison's " \
        "rows) share no voxel" in moved, moved
    assert sum(1 for e in change["lesions"] if e.get("followup_cut_by_scan_edge")) == 12
    assert [e["moved_without_shared_voxel_mm"] for e in change["lesions"]
            if "moved_without_shared_voxel_mm" in e] == pytest.approx([3.0] * 12)


def test_the_response_reason_names_at_most_ten_lesions_not_assessed():
    # a follow-up scan covering half the baseline's: its reason named each lesion outside its view (30 numbers)
    geometry = ImageGeometry(spacing=(1.0, 1.0, 1.0))
    base = np.zeros((30, 40, 200), np.uint8)
    base[1:29, 2:38, 2:198] = 1
    for n in range(30):
        base[20:23, 10:13, 4 + 6 * n:7 + 6 * n] = 2
    change = compare_followup(CTVolume(base, geometry), CTVolume(base[:15].copy(), geometry), alignment="none")
    assert change["response"] == "NE"
    assert change["response_reason"].startswith("lesion(s) 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 20 more (not_assessed "
                                                "in the rows) lie partly or wholly outside the follow-up scan's "
                                                "field of view"), change["response_reason"]
    assert [e["status"] for e in change["lesions"]] == ["not_assessed"] * 30


def _labels_with_lesions(boxes_zyx):
    """A 1 mm label map (z, y, x) with a liver block and a tumor (label 2) in each of ``boxes_zyx`` (slices)."""
    labels = np.zeros((12, 48, 48), np.uint8)
    labels[1:11, 2:46, 2:46] = 1
    for box in boxes_zyx:
        labels[box] = 2
    return CTVolume(array=labels, geometry=ImageGeometry(spacing=(1.0, 1.0, 1.0)), source="synthetic labels")


@pytest.mark.parametrize("with_non_target", [False, True], ids=["targets_only", "with_non_target"])
def test_a_target_back_under_5_mm_after_a_nadir_of_0_mm_is_pd_only_when_that_follow_up_was_a_complete_response(
        with_non_target):
    """Nadir 0 mm (every target gone at an earlier follow-up), the target back at 3.8 mm (3 x 3 voxels of 1 mm). A
    baseline whose every lesion is a target had no lesion left at that nadir: a complete response, after which any
    lesion that reappears is PD. With a non-target lesion at baseline (6 x 6 voxels, 8.1 mm: under the measurable 10
    mm), still there, that follow-up may have been a PR, where RECIST 1.1 needs +5 mm from the nadir: PR from the
    baseline, and the reason says PD if it was a CR. Both read PD."""
    target = (slice(5, 8), slice(10, 22), slice(10, 22))                 # 12 x 12 voxels: 16.6 mm long axis
    small_target = (slice(6, 7), slice(15, 18), slice(15, 18))           # 3 x 3 voxels: 3.8 mm
    non_target = (slice(5, 7), slice(30, 36), slice(30, 36))
    base = _labels_with_lesions([target] + ([non_target] if with_non_target else []))
    follow = _labels_with_lesions([small_target] + ([non_target] if with_non_target else []))
    change = compare_followup(base, follow, alignment="none", nadir_sum_mm=0.0)
    assert change["sum_of_diameters"]["target_lesion_ids"] == [1]
    assert change["sum_of_diameters"]["followup_mm"] == pytest.approx(2 * np.sqrt(2) + 1, abs=1e-6)
    reason = change["response_reason"]
    assert "measured again after a nadir of 0 mm" in reason
    if with_non_target:
        assert change["response"] == "PR", reason
        assert "PD if that follow-up was a complete response" in reason
        assert "a reader who judges them too small to measure counts 5 mm, which gives PD" in reason
    else:
        assert change["response"] == "PD", reason
        assert "every lesion had disappeared at that follow-up (CR)" in reason
    without_nadir = compare_followup(base, follow, alignment="none")
    assert without_nadir["response"] == "PR"   # -77 % from the baseline


def _row(length_voxels, y=20):
    """A tumor row of ``length_voxels`` voxels of 1 mm along x (long axis exactly that many mm), slices 5-6."""
    return (slice(5, 7), slice(y, y + 1), slice(4, 4 + length_voxels))


@pytest.mark.parametrize("base_mm, follow_mm, nadir_mm, expected", [
    (25, 30, None, "PD"),    # +20 % and +5 mm exactly
    (25, 29, None, "SD"),    # +16 %
    (20, 24, None, "SD"),    # +20 % but +4 mm
    (30, 21, None, "PR"),    # -30 % exactly
    (30, 22, None, "SD"),    # -26.7 %
    (40, 30, 25, "PD"),      # +20 % and +5 mm from the nadir (-25 % from the baseline)
    (40, 29, 25, "SD"),      # +16 % from the nadir
    (40, 28, 20, "PD"),      # +40 % and +8 mm from the nadir: PD, although -30 % from the baseline
])
def test_the_response_of_whole_scans_at_each_rules_boundary(base_mm, follow_mm, nadir_mm, expected):
    """One target row whose long axis is a whole number of 1 mm voxels, compared end to end (no alignment): the
    thresholds of RECIST 1.1 met exactly (+20 % with +5 mm, -30 %, +20 % and +5 mm from the nadir) give PD, PR, PD;
    a rise of +20 % by 4 mm is SD."""
    change = compare_followup(_labels_with_lesions([_row(base_mm)]), _labels_with_lesions([_row(follow_mm)]),
                              alignment="none", nadir_sum_mm=None if nadir_mm is None else float(nadir_mm))
    sod = change["sum_of_diameters"]
    assert (sod["baseline_mm"], sod["followup_mm"]) == (pytest.approx(base_mm), pytest.approx(follow_mm))
    assert change["response"] == expected, change["response_reason"]


def test_a_nadir_given_as_a_numpy_number_is_taken():
    """A nadir read from an array (np.float32, np.int64) was refused: 'must be a sum of diameters in mm, 0 or more,
    got np.float32(20.0)'; a bool or a negative one still is."""
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.followup import check_nadir_sum_mm

    for value in (np.float32(20.0), np.float64(20.0), np.int64(20), 0, 12.5):
        check_nadir_sum_mm(value)
    for value in (True, np.bool_(True), np.float32(-1.0), float("nan"), "20"):
        with pytest.raises(InputError, match="must be a sum of diameters in mm"):
            check_nadir_sum_mm(value)


def test_a_split_target_whose_fragments_are_each_under_5_mm_gets_5_mm_per_fragment_in_the_default():
    """RECIST 1.1 sums the longest diameters of a split lesion's fragments, and gives a lesion present but too small
    to measure 5 mm: two 3.8 mm fragments of one target count 5 + 5 = 10 mm under that default. The default gave the
    group 5 mm as a whole (max(7.7, 5) = 7.7 mm), so after a 5 mm nadir the reason kept quiet that a reader who
    cannot measure the fragments reaches +5 mm, PD; it now says so, naming the split lesion's fragments."""
    g = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    base = np.ones((6, 40, 40), np.uint8)
    base[2:4, 5:25, 5:10] = 2                    # one target, about 20 mm long
    follow = np.ones_like(base)
    follow[3, 6:9, 6:9] = 2                      # two fragments inside it, 3 x 3 voxels: 3.8 mm each
    follow[3, 20:23, 6:9] = 2
    change = compare_followup(CTVolume(base, g), CTVolume(follow, g), alignment="none", nadir_sum_mm=5.0)
    group = next(e for e in change["lesions"] if 1 in e["baseline_ids"])
    assert group["status"] == "split" and len(group["recist_followup_ids"]) == 2
    assert group["recist_followup_mm"] == pytest.approx(2 * (2 * np.sqrt(2) + 1), abs=1e-6)  # 7.66 mm: +2.7 mm
    assert group["recist_under_5_mm"] is True
    assert change["response"] == "PR", change["response_reason"]      # measured: -62 % from the baseline
    n = group["number"]
    assert (f"split target lesion {n} has 2 of its 2 fragments under 5 mm (3.8, 3.8 mm; its fragments sum to 7.7 mm): "
            "counted as measured (RECIST 1.1 4.3.2); a reader who judges them too small to measure counts 5 mm for "
            f"each, a split lesion's fragments then summed (lesion {n}: 10.0 mm), which gives PD"
            ) in change["response_reason"]


def test_a_split_target_with_one_fragment_under_5_mm_is_not_said_to_measure_under_5_mm():
    """A split target whose fragments measure 8.0 and 3.8 mm (11.8 mm summed) is flagged for its 3.8 mm fragment, but
    the response reason said 'target lesion(s) 1 measure under 5 mm', untrue of the lesion. It now names the fragment
    under 5 mm and what the 5 mm default gives the lesion (8.0 + 5.0 = 13.0 mm: +5.5 mm from a 7.5 mm nadir, PD)."""
    g = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    base = np.ones((6, 40, 40), np.uint8)
    base[2:4, 5:25, 5:10] = 2                    # one target, about 20 mm long
    follow = np.ones_like(base)
    follow[3, 6, 6:14] = 2                       # a fragment 8 voxels long: 8.0 mm
    follow[3, 20:23, 6:9] = 2                    # a fragment of 3 x 3 voxels: 3.8 mm
    change = compare_followup(CTVolume(base, g), CTVolume(follow, g), alignment="none", nadir_sum_mm=7.5)
    group = next(e for e in change["lesions"] if 1 in e["baseline_ids"])
    n = group["number"]
    assert group["status"] == "split" and group["recist_under_5_mm"] is True
    assert group["recist_followup_mm"] == pytest.approx(8.0 + 2 * np.sqrt(2) + 1, abs=1e-6)
    reason = change["response_reason"]
    assert change["response"] == "PR", reason    # measured: +4.3 mm from the nadir, -42 % from the baseline
    assert "measure under 5 mm" not in reason
    assert (f"split target lesion {n} has 1 of its 2 fragments under 5 mm (3.8 mm; its fragments sum to 11.8 mm): "
            "counted as measured (RECIST 1.1 4.3.2); a reader who judges it too small to measure counts 5 mm for it, "
            f"a split lesion's fragments then summed (lesion {n}: 13.0 mm), which gives PD") in reason


def test_followup_refuses_one_file_as_baseline_and_follow_up_and_prints_warnings_on_stderr(tmp_path, capsys):
    """The same file (by another spelling too) as --baseline and --followup read as every lesion unchanged: SD, exit
    0, without a word (evaluate refuses --pred = --ref); now refused before anything is read (one CT for both stays
    allowed: two segmentations of one scan, as the Slicer panel compares them). The summary's warnings were printed
    on stdout, unlike every other command's."""
    import os

    base, follow = shifted_pair()
    paths = {name: write_label_map(tmp_path / f"{name}_seg.nii.gz", phantom.labels, phantom.ct.geometry)
             for name, phantom in (("base", base), ("follow", follow))}
    link = tmp_path / "link.nii.gz"
    os.symlink(paths["base"], link)
    for follow in (paths["base"], link, tmp_path / "." / paths["base"].name):
        assert main(["followup", "--baseline", str(paths["base"]), "--followup", str(follow), "--alignment", "none",
                     "--no-picture", "-o", str(tmp_path / "c.json")]) == 2
        assert "--baseline and --followup are the same file" in capsys.readouterr().err
    assert not (tmp_path / "c.json").exists()
    assert main(["followup", "--baseline", str(paths["base"]), "--followup", str(paths["follow"]), "--alignment",
                 "none", "--no-picture", "-o", str(tmp_path / "c.json")]) == 0
    captured = capsys.readouterr()
    warnings = json.loads((tmp_path / "c.json").read_text())["warnings"]
    assert warnings and all(f"warning: {w}" in captured.err for w in warnings)
    assert "warning:" not in captured.out and "RECIST 1.1 response" in captured.out


@pytest.mark.parametrize("centre_z_mm", [20.0, 22.5])
def test_a_remnant_between_thick_baseline_slices_is_the_shrunk_target_not_a_new_lesion(centre_z_mm):
    """Overlap was counted on the baseline's voxel centres alone: on 5 mm baseline slices a 7 mm remnant lying
    between two slice centres, inside the target it shrank from, shared no voxel with it, and the target
    'disappeared' while the remnant was 'new': PD, where at z 20 mm (on a slice centre) it was PR. A 2.5 mm shift
    decided it (the follow-up audit, 1 Dec 2026). Counted on both grids, the finer sees it."""
    def ellipsoid_labels(shape, spacing, lesion):
        geometry = ImageGeometry(spacing=spacing)
        z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
        xx, yy, zz = x * spacing[0], y * spacing[1], z * spacing[2]
        labels = np.zeros(shape, np.uint8)
        labels[((xx - 38) / 28) ** 2 + ((yy - 40) / 22) ** 2 + ((zz - 20) / 14) ** 2 <= 1] = 1
        cx, cy, cz, rx, ry, rz = lesion
        labels[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 + ((zz - cz) / rz) ** 2 <= 1] = 2
        return CTVolume(labels, geometry)

    baseline = ellipsoid_labels((8, 80, 80), (1.0, 1.0, 5.0), (40, 40, 20, 20, 20, 6))   # a 41 mm target
    followup = ellipsoid_labels((40, 80, 80), (1.0, 1.0, 1.0), (53, 40, centre_z_mm, 3, 3, 1.6))  # inside it
    change = compare_followup(baseline, followup, alignment="none")
    assert [e["status"] for e in change["lesions"]] == ["shrunk"]
    assert change["response"] == "PR", change["response_reason"]


def test_the_change_picture_names_a_follow_up_lesion_it_cannot_draw(tmp_path, monkeypatch):
    """The follow-up panel is drawn on the baseline's grid: a new lesion outside the baseline's field of view (the
    one that made the response PD) was drawn nowhere while the title counted it (the follow-up audit, 1 Dec 2026).
    The panel now names the rows it cannot draw."""
    pytest.importorskip("matplotlib")

    def labels(width, lesions):
        array = np.zeros((20, 60, width), np.uint8)
        array[4:16, 10:50, 5:55] = 1  # the liver, inside both fields of view
        for z, y, x, r in lesions:
            zz, yy, xx = np.ogrid[:20, :60, :width]
            array[(zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 <= r * r] = 2
        return CTVolume(array, ImageGeometry(spacing=(1.0, 1.0, 1.0)))

    baseline = labels(60, [(10, 30, 30, 6)])
    followup = labels(80, [(10, 30, 30, 6), (10, 30, 70, 5)])  # and one at x 70 mm, beyond the baseline's 60 mm
    change = compare_followup(baseline, followup, alignment="none")
    assert change["response"] == "PD" and [e["status"] for e in change["lesions"]] == ["stable", "new"]
    titles = [t for t in _picture_texts(tmp_path, monkeypatch, change) if t.startswith("Follow-up")]
    assert len(titles) == 1 and "not drawn (outside the baseline's grid or between its slices): row 2" in titles[0]


def test_a_folder_given_as_previous_is_named_a_folder_and_a_seg_nrrd_given_as_a_ct_is_named(tmp_path, capsys):
    """followup --previous FOLDER said the folder 'does not exist'; a .seg.nrrd given as the CT was told to be renamed
    to .nrrd, after which it was refused as a label map (the file-kind audit)."""
    base, follow = shifted_pair()
    seg = write_label_map(tmp_path / "base_seg.nii.gz", base.labels, base.ct.geometry)
    seg2 = write_label_map(tmp_path / "follow_seg.nii.gz", follow.labels, follow.ct.geometry)
    (tmp_path / "previous").mkdir()
    capsys.readouterr()
    assert main(["followup", "--baseline", str(seg), "--followup", str(seg2), "--previous", str(tmp_path / "previous"),
                 "-o", str(tmp_path / "c.json")]) == 2
    assert "is a folder; give the change.json that followup wrote for the previous follow-up" in capsys.readouterr().err
    fake = tmp_path / "case.seg.nrrd"
    fake.write_bytes(b"NRRD0004\n")
    assert main(["followup", "--baseline", str(seg), "--followup", str(seg2), "--baseline-ct", str(fake),
                 "-o", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err
    assert "it is a Slicer segmentation (a label map), not an image volume such as a CT" in err and "rename" not in err


def test_previous_json_nested_too_deep_is_refused_as_unreadable(tmp_path):
    """A change.json of 100,000 opening brackets raised RecursionError: 'internal error ... please report it' (the
    file-safety audit)."""
    from LiverTumorSegLib.followup import read_previous_change

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000, encoding="utf-8")
    with pytest.raises(InputError, match="is not a readable JSON file .*nested too deep"):
        read_previous_change(deep)


def test_a_non_target_cut_by_the_scan_edge_and_seen_at_follow_up_is_present_not_unevaluated():
    """RECIST 1.1 judges non-target lesions present or absent. A lesion cut by the baseline scan's top edge, where
    the follow-up does not reach farther, was not assessed and, without targets, made the response NE, though the
    follow-up showed it: 'not evaluated' beside 'non-target lesions persist' (the followup audit; a dome lesion cut
    at the top of both abdominal scans). Seen at follow-up it is present: Non-CR/non-PD. Gone, it may lie beyond the
    follow-up's view: NE, as before."""
    base = make_phantom((16, 48, 40), (2.0, 2.0, 3.0), lesions=[PhantomLesion((6, 19, 13), 7.0, 15.0)],
                        noise_hu=0.0, seed=0)
    geometry = ImageGeometry(spacing=(2.0, 2.0, 3.0))
    labels = CTVolume(np.ascontiguousarray(base.labels[6:]), geometry, source="baseline")  # starts in the lesion
    seen = compare_followup(labels, CTVolume(labels.array.copy(), geometry, source="follow-up"), alignment="none")
    (row,) = seen["lesions"]
    assert row["status"] == "not_assessed" and row["followup_ids"] == [1]
    assert seen["response"] == "Non-CR/non-PD" and "present at follow-up" in seen["response_reason"]
    gone = compare_followup(labels, CTVolume(np.minimum(labels.array, 1), geometry, source="follow-up"),
                            alignment="none")
    assert gone["response"] == "NE" and "(not evaluated)" in gone["response_reason"]


def test_change_rows_never_round_a_long_axis_onto_a_rule_it_misses():
    """A new lesion of 4.98 mm read 'long axis 0.0 -> 5.0 mm ... equivocal (long axis under 5 mm)', and a long axis of
    20.03 -> 23.99 mm (+19.8 %) '20.0 -> 24.0 mm' (+20 %, grown) beside 'stable' (the printed-numbers audit)."""
    g = ImageGeometry(spacing=(1.0, 1.0, 5.0))
    base = np.ones((6, 60, 60), np.uint8)
    base[2, 10, 10:30] = 2                               # 20 mm
    follow = np.ones_like(base)
    follow[2, 10, 10:30] = 2
    follow[2, 40, 10:15] = 2                             # a new lesion, 5 mm
    stable = compare_followup(CTVolume(base, g), CTVolume(follow, g), alignment="none")
    assert [e["status"] for e in stable["lesions"]] == ["stable", "new"]
    from LiverTumorSegLib.followup import change_summary_lines, long_axes_change_text

    grown_by = dict(stable["lesions"][0], baseline_long_axis_mm=20.03, followup_long_axis_mm=23.99)
    assert long_axes_change_text(grown_by, 5.0) == "20.03 -> 23.99 mm"
    assert long_axes_change_text(dict(grown_by, followup_long_axis_mm=30.0), 5.0) == "20.0 -> 30.0 mm"
    new = dict(stable["lesions"][1], followup_long_axis_mm=4.98, unequivocal=False)
    assert long_axes_change_text(new, 5.0) == "0.0 -> 4.98 mm"
    assert long_axes_change_text(dict(new, followup_long_axis_mm=5.0), 5.0) == "0.0 -> 5.0 mm"
    lines = change_summary_lines(dict(stable, lesions=[grown_by, new]))
    assert any("long axis 20.03 -> 23.99 mm" in line and "stable" in line for line in lines)
    assert any("long axis 0.0 -> 4.98 mm" in line and "equivocal" in line for line in lines)


def test_the_change_picture_title_gives_the_sums_to_the_places_that_keep_the_rules_and_the_percent():
    from LiverTumorSegLib.followup import sum_of_diameters_line, sum_of_diameters_title_text

    sod = {"baseline_mm": 20.0256, "followup_mm": 25.0056, "change_percent": 24.87}
    assert sum_of_diameters_title_text(sod) == "; sum of diameters 20.03 mm -> 25.01 mm (+24.9 %)"
    assert sum_of_diameters_line(sod) == "target lesions: sum of diameters 20.03 -> 25.01 mm (+24.9 %)"
    assert sum_of_diameters_title_text({"baseline_mm": 20.0, "followup_mm": 30.0, "change_percent": 50.0}) == \
        "; sum of diameters 20.0 mm -> 30.0 mm (+50.0 %)"
    assert sum_of_diameters_title_text({"baseline_mm": 20.0, "followup_mm": None, "change_percent": None}) == \
        "; sum of diameters 20.0 mm -> unknown"
    assert sum_of_diameters_title_text({"baseline_mm": None, "followup_mm": None}) == ""


def _turned_followup_in_a_round_view():
    """Baseline: a phantom with three lesions; follow-up: the same patient turned 6 degrees about S and moved
    (8, -6, 4) mm, reconstructed with a round field of view (radius 66 px about column 88) that cuts off 40 % of the
    liver, the scanner's padding (-3024) outside it. ``(baseline labels, follow-up labels, baseline CT, follow-up
    CT)``."""
    import math

    import SimpleITK as sitk

    from LiverTumorSegLib.followup import to_sitk

    base = make_phantom((40, 96, 96), (2.0, 2.0, 4.0), lesions=[
        PhantomLesion((14, 30, 24), 7.0, 15.0), PhantomLesion((22, 38, 32), 7.0, 20.0),
        PhantomLesion((20, 50, 40), 6.0, 20.0)], noise_hu=5.0, seed=0)
    geometry = base.ct.geometry
    ct, labels = to_sitk(base.ct.array.astype(np.float32), geometry), to_sitk(base.labels, geometry)
    turn = sitk.Euler3DTransform()
    turn.SetCenter(ct.TransformContinuousIndexToPhysicalPoint([48, 48, 20]))
    turn.SetRotation(0.0, 0.0, math.radians(6.0))
    turn.SetTranslation((8.0, -6.0, 4.0))
    follow_ct = sitk.GetArrayFromImage(sitk.Resample(ct, ct, turn, sitk.sitkLinear, -1000.0))
    follow = sitk.GetArrayFromImage(sitk.Resample(labels, labels, turn, sitk.sitkNearestNeighbor, 0))
    y, x = np.mgrid[0:96, 0:96]
    outside = (y - 48) ** 2 + (x - 88) ** 2 > 66 ** 2
    shown_share = np.count_nonzero(follow[:, ~outside] >= 1) / np.count_nonzero(follow >= 1)
    assert 0.55 < shown_share < 0.65  # the field of view cuts off about 40 % of the liver
    follow_ct[:, outside], follow[:, outside] = -3024, 0
    return (CTVolume(base.labels, geometry), CTVolume(follow, geometry),
            CTVolume(base.ct.array.astype(np.float32), geometry), CTVolume(follow_ct.astype(np.float32), geometry))


@pytest.mark.parametrize("alignment", ["auto", "liver"])
def test_a_followup_whose_round_field_of_view_cuts_the_liver_is_aligned_where_it_shows(alignment):
    """A follow-up whose round field of view cut off 40 % of the liver: the masks' alignment matched the cut liver to
    the whole one (0.86 liver Dice where both show) and read the loss as a resection, so the CT registration was
    kept where it went 20 mm astray (liver Dice 0.44): all three lesions 'disappeared' and two 'new', a false PD.
    The metric now reads each scan where it shows, and the volumes are compared there."""
    base, follow, base_ct, follow_ct = _turned_followup_in_a_round_view()
    change = compare_followup(base, follow, base_ct, follow_ct, alignment=alignment)
    align = change["alignment"]
    assert align["liver_dice_after_alignment"] > 0.95
    assert statuses(change) == ["not_assessed", "stable", "stable"] and change["response"] != "PD"
    assert not any("volumes differ" in w for w in change["warnings"])


DOME_TARGET = (10, 0, 30, 12)  # (x, y, z, radius) mm: z 18-42
SECOND_LESION = (-20, -10, -10, 8)
ELSEWHERE_AT_THE_EDGE = (-30, 5, 10, 10)  # z 0-20: cut at 17 by a 68-slice follow-up, 18 mm or more from the target


def _liver_with(nz, lesions, slice_mm=1.0):
    """1 mm pixels, ``nz`` slices ``slice_mm`` apart from z = -50 mm: an ellipsoid liver (half-axes 45, 30, 48 mm)
    with tumor spheres ``lesions`` ((x, y, z, radius) mm)."""
    z, y, x = np.meshgrid(-50.0 + slice_mm * np.arange(nz), np.arange(-55.0, 55.0), np.arange(-60.0, 60.0),
                          indexing="ij")
    lab = ((x / 45) ** 2 + (y / 30) ** 2 + (z / 48) ** 2 <= 1).astype(np.uint8)
    for cx, cy, cz, r in lesions:
        lab[(x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= r * r] = 2
    return CTVolume(lab, ImageGeometry(spacing=(1.0, 1.0, slice_mm), origin=(-60.0, -55.0, -50.0)))


@pytest.mark.parametrize("radius", [12.0, 15.0], ids=["same_size", "grown_25_to_30_mm"])
def test_a_targets_cap_inside_a_shorter_followup_is_not_a_new_lesion(radius):
    """A dome target 3 mm lower at a follow-up whose range ends (z 17) below its baseline place: the follow-up shows
    its lowest cap, cut by the scan's edge, sharing no voxel with it and more than 10 mm from its centroid. It was
    'new' and made PD (also where the target had grown 25 -> 30 mm); the target is not assessed, so NE (the
    follow-up audit). The whole follow-up gives SD and no new lesion."""
    from LiverTumorSegLib.followup import change_summary_lines

    base = _liver_with(100, [DOME_TARGET, SECOND_LESION])
    moved = (10, 0, 27, radius)
    change = compare_followup(base, _liver_with(68, [moved, SECOND_LESION]), alignment="none")
    rows = {e["status"]: e for e in change["lesions"]}
    assert sorted(rows) == ["new", "not_assessed", "stable"]
    assert rows["new"]["unequivocal"] is False
    assert rows["new"]["may_be_part_of_rows"] == [rows["not_assessed"]["number"]]
    assert change["response"] == "NE", change["response_reason"]
    assert "may be that lesion's part inside the scan" in change["response_reason"]
    lines = change_summary_lines(change)
    assert any("equivocal (may be the part inside the follow-up scan of row 1): not counted" in line for line in lines)
    assert not any("long axis under" in line for line in lines)
    whole = compare_followup(base, _liver_with(100, [moved, SECOND_LESION]), alignment="none")
    assert whole["response"] == "SD" and not any(e["status"] == "new" for e in whole["lesions"])


def test_a_new_lesion_cut_by_the_followups_edge_apart_from_any_unseen_lesion_is_still_progression():
    """Only a cap within 10 mm of a baseline lesion partly outside the follow-up scan is equivocal: a lesion cut by
    the same edge 18 mm or more from the target stays an unequivocal new lesion, PD (beside the target's own cap,
    equivocal); so does one at the edge of a follow-up that shows every baseline lesion whole."""
    base = _liver_with(100, [DOME_TARGET, SECOND_LESION])
    follow = _liver_with(68, [(10, 0, 27, 12), SECOND_LESION, ELSEWHERE_AT_THE_EDGE])
    change = compare_followup(base, follow, alignment="none")
    new = [e for e in change["lesions"] if e["status"] == "new"]
    assert sorted(e["unequivocal"] for e in new) == [False, True] and change["response"] == "PD"
    assert [e for e in new if e["unequivocal"]][0].get("may_be_part_of_rows") is None
    without_target = compare_followup(_liver_with(100, [SECOND_LESION]),
                                      _liver_with(68, [SECOND_LESION, ELSEWHERE_AT_THE_EDGE]), alignment="none")
    assert [e["status"] for e in without_target["lesions"]] == ["stable", "new"]
    assert without_target["response"] == "PD"


def test_a_followup_ending_within_the_liver_is_not_read_as_a_smaller_liver():
    """A follow-up whose range ends 33 mm short of the baseline's (the same liver): the livers were counted whole,
    271 against 207 mL, 'the livers' volumes differ by 24 %' beside a liver Dice of 1.000, and the CT path's swap
    to the masks' alignment was never weighed (the follow-up audit). Each liver is now counted where the other scan
    shows: no warning."""
    from LiverTumorSegLib.followup import _liver_volume_change, _sitk

    base = _liver_with(100, [DOME_TARGET, SECOND_LESION])
    follow = _liver_with(68, [DOME_TARGET, SECOND_LESION])
    change = compare_followup(base, follow, alignment="liver")
    assert not any("volumes differ" in w for w in change["warnings"]), change["warnings"]
    assert _liver_volume_change(base, follow, _sitk().Euler3DTransform()) is None
    whole = _liver_volume_change(base, follow)  # without a transform: the whole livers
    assert whole is not None and round(whole[2] * 100) == 24


def test_a_targets_thin_cap_is_judged_in_the_patient_not_on_a_baseline_of_thicker_slices():
    """The same dome target on a baseline of 5 mm slices, 5 mm lower at a follow-up (1 mm slices) ending at z 17: its
    cap (2 slices) vanished on the baseline grid, and the rule, which looked for it there, left it 'new': PD (the
    review). The gap is taken between the follow-up lesion's voxels and the baseline lesion's in mm: NE."""
    base = _liver_with(20, [DOME_TARGET, SECOND_LESION], slice_mm=5.0)
    change = compare_followup(base, _liver_with(68, [(10, 0, 28, 12), SECOND_LESION]), alignment="none")
    new = [e for e in change["lesions"] if e["status"] == "new"]
    assert len(new) == 1 and new[0]["unequivocal"] is False and new[0]["may_be_part_of_rows"]
    assert change["response"] == "NE", change["response_reason"]


def test_a_new_lesion_beside_a_cut_lesion_the_followup_shows_is_progression():
    """Lesion A (z 0-24) cut by a follow-up ending at z 17, its part inside matched; a new 13 mm lesion B 8 mm beside
    it, cut by the same edge: A's row is not assessed, but the follow-up shows A, so B is not A's unseen part. It was
    made equivocal (NE where the whole follow-up gives PD; the review)."""
    a, b = (10, 0, 12, 12), (36, 0, 14, 6.5)
    base = _liver_with(100, [a, SECOND_LESION])
    whole = compare_followup(base, _liver_with(100, [a, b, SECOND_LESION]), alignment="none")
    assert whole["response"] == "PD"
    short = compare_followup(base, _liver_with(68, [a, b, SECOND_LESION]), alignment="none")
    rows = {e["status"]: e for e in short["lesions"]}
    assert rows["not_assessed"]["followup_ids"] and rows["new"]["unequivocal"] is True
    assert "may_be_part_of_rows" not in rows["new"] and short["response"] == "PD", short["response_reason"]


def test_followup_points_are_mapped_into_the_baseline_as_the_transforms_own_inverse_maps_them():
    """The cap rule maps the follow-up lesion's voxels into the baseline at once (Alignment.map_points, the inverse
    made once): the same points SimpleITK's GetInverse().TransformPoint gives point by point, for rotations about a
    centre off the origin with a shift (every earlier test ran alignment 'none', whose identity would hide the
    forward map in its place: the review), and for a scaling transform."""
    import SimpleITK as sitk

    from LiverTumorSegLib.followup import Alignment

    rng = np.random.default_rng(8)
    points = rng.uniform(-150.0, 150.0, (50, 3))
    for _ in range(5):
        transform = sitk.Euler3DTransform()
        transform.SetCenter(tuple(rng.uniform(-80.0, 80.0, 3)))
        transform.SetRotation(*rng.uniform(-0.4, 0.4, 3))
        transform.SetTranslation(tuple(rng.uniform(-30.0, 30.0, 3)))
        align = Alignment("ct", transform)
        expected = np.array([align.map_followup_to_baseline(p) for p in points])
        np.testing.assert_allclose(align.map_points(points, to_baseline=True), expected, atol=1e-9)
        forward = np.array([align.map_baseline_to_followup(p) for p in points])
        np.testing.assert_allclose(align.map_points(points), forward, atol=1e-9)
    scaled = sitk.Similarity3DTransform()
    scaled.SetScale(1.2)
    scaled.SetTranslation((5.0, -3.0, 2.0))
    align = Alignment("ct", scaled)
    np.testing.assert_allclose(align.map_points(points, to_baseline=True),
                               np.array([align.map_followup_to_baseline(p) for p in points]), atol=1e-9)
