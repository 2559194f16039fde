"""Lesions of water density (a simple cyst, or a necrotic or cystic tumor): flagged per lesion, warned of by id and
median HU, kept in the table, and chosen as RECIST targets only after the other measurable lesions. The bundled
model labelled 98 % of the benchmark's blobs of water (fluid_region) tumor, listed as tumors with volumes and axes."""
import csv
import io

import numpy as np
import pytest

from LiverTumorSegLib.inference.lesion_report import lesion_report, report_to_csv_text
from LiverTumorSegLib.inference.water_density import (WATER_SPREAD_RATIO, is_water_density, lesion_water_density,
                                                      within_shell,
                                                      water_density_lesion_warnings)
from LiverTumorSegLib.metrics.recist import select_target_lesions
from LiverTumorSegLib.volume import ImageGeometry

NOISE_HU = 10.0


def _ball(shape, centre, radius):
    z, y, x = np.ogrid[tuple(slice(0, n) for n in shape)]
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius ** 2


def _liver_with_lesions(liver_hu, lesions, seed=0, shape=(36, 48, 48)):
    """Labels and CT (HU, noise of :data:`NOISE_HU`) of a box of liver with balls ``(centre, radius, hu_of)``
    labelled tumor, ``hu_of(rng, n)`` giving the ball's values; 1 mm voxels."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[2:-2, 2:-2, 2:-2] = 1
    hu = np.full(shape, -100.0, dtype=np.float32)
    hu[labels == 1] = liver_hu
    for centre, radius, hu_of in lesions:
        ball = _ball(shape, centre, radius)
        labels[ball] = 2
        hu[ball] = hu_of(rng, int(ball.sum()))
    hu += rng.normal(0.0, NOISE_HU, shape).astype(np.float32)
    return labels, hu


def _report(labels, hu, **kwargs):
    return lesion_report(labels, ImageGeometry(spacing=(1.0, 1.0, 1.0)), hu, **kwargs)


def _uniform(value):
    return lambda rng, n: np.full(n, value)


def _two_valued(low, high):
    """A lesion half ``low``, half ``high`` (a necrotic centre with solid tissue, coarse)."""
    return lambda rng, n: np.where(rng.random(n) < 0.5, low, high)


def test_a_homogeneous_water_ball_in_liver_is_flagged_and_kept():
    labels, hu = _liver_with_lesions(60.0, [((18, 24, 24), 8, _uniform(5.0))])
    report = _report(labels, hu)
    (lesion,) = report["lesions"]
    assert lesion["water_density"] is True and lesion["median_hu"] == pytest.approx(5.0, abs=3.0)
    assert report["lesion_count"] == 1 and lesion["volume_ml"] > 1.5  # kept, as tumor
    assert lesion["recist_target"] and report["recist"]["water_density_passed_over_ids"] == []
    row, = csv.DictReader(io.StringIO(report_to_csv_text(report)))
    assert row["water_density"] == "1" and abs(float(row["median_hu"]) - 5.0) < 3.0


@pytest.mark.parametrize("hu_of", [_two_valued(-10.0, 70.0), _two_valued(-40.0, 60.0)],
                         ids=["heterogeneous_30HU", "heterogeneous_median_about_10HU"])
def test_a_heterogeneous_lesion_is_not_of_water_density(hu_of):
    labels, hu = _liver_with_lesions(60.0, [((18, 24, 24), 8, hu_of)])
    (lesion,) = _report(labels, hu)["lesions"]
    assert lesion["water_density"] is False


def test_a_lesion_no_darker_than_a_fatty_liver_is_not_of_water_density():
    labels, hu = _liver_with_lesions(5.0, [((18, 24, 24), 8, _uniform(10.0))])
    (lesion,) = _report(labels, hu)["lesions"]
    assert lesion["median_hu"] == pytest.approx(10.0, abs=3.0) and lesion["water_density"] is False


def test_without_a_ct_in_hu_nothing_is_judged():
    labels, hu = _liver_with_lesions(60.0, [((18, 24, 24), 8, _uniform(5.0))])
    assert _report(labels, None)["lesions"][0]["water_density"] is None
    assert _report(labels, hu, in_hu=False)["lesions"][0]["water_density"] is None
    row, = csv.DictReader(io.StringIO(report_to_csv_text(_report(labels, None))))
    assert row["water_density"] == "" and row["median_hu"] == ""


def test_the_rule_on_its_numbers():
    assert is_water_density(5.0, 13.0, 60.0, 13.0, 100)
    assert not is_water_density(5.0, 13.0 * WATER_SPREAD_RATIO + 1.0, 60.0, 13.0, 100)  # wider than the liver
    assert not is_water_density(25.0, 13.0, 60.0, 13.0, 100)  # above water
    assert not is_water_density(-20.0, 13.0, 60.0, 13.0, 100)  # below water
    assert not is_water_density(5.0, 13.0, 20.0, 13.0, 100)  # 15 HU darker only
    assert not is_water_density(5.0, 13.0, None, None, 100) and not is_water_density(5.0, 0.0, 60.0, 13.0, 5)


def test_recist_chooses_a_water_density_lesion_only_after_the_others_and_says_so():
    lesions = [dict(id=1, long_axis_mm=40.0, water_density=True), dict(id=2, long_axis_mm=20.0),
               dict(id=3, long_axis_mm=15.0, water_density=False)]
    assert select_target_lesions(lesions) == [2, 3]
    assert select_target_lesions(lesions[:2]) == [2, 1]  # no other measurable lesion: it fills the place
    # a cyst of 16 mm radius, and two solid tumors (40 HU: not water) of 8 and 6 mm radius
    labels, hu = _liver_with_lesions(60.0, [((18, 15, 15), 11, _uniform(5.0)), ((18, 34, 34), 8, _uniform(40.0)),
                                            ((18, 36, 12), 6, _uniform(40.0))])
    report = _report(labels, hu)
    water = [d["id"] for d in report["lesions"] if d["water_density"]]
    assert len(water) == 1 and report["lesions"][water[0] - 1]["long_axis_mm"] > 20.0
    assert water[0] not in report["recist"]["target_lesion_ids"] and len(report["recist"]["target_lesion_ids"]) == 2
    assert report["recist"]["water_density_passed_over_ids"] == water
    assert report["lesion_count"] == 3  # kept in the table
    warning, = water_density_lesion_warnings(report["lesions"], report["recist"])
    assert warning.startswith(f"Lesion(s) {water[0]} (median ")
    assert "may be a simple cyst" in warning and "necrotic or cystic tumor" in warning
    assert "on an unenhanced CT many a hypodense tumor" in warning  # 17 of 41 synthetic tumors there were flagged
    assert f"Lesion(s) {water[0]} were passed over as RECIST target lesions" in warning


def test_the_warning_says_when_a_water_density_lesion_is_a_target():
    lesions = [dict(id=1, median_hu=8.4, water_density=True, recist_target=True),
               dict(id=2, median_hu=12.0, water_density=False), dict(id=3, median_hu=None, water_density=None)]
    warning, = water_density_lesion_warnings(lesions, {"water_density_passed_over_ids": []})
    assert warning.startswith("Lesion(s) 1 (median 8 HU) of water density")
    assert "Lesion(s) 1 count among the RECIST target lesions" in warning and "passed over" not in warning
    assert water_density_lesion_warnings(lesions[1:]) == []


def test_segment_warns_of_a_water_density_lesion_by_id_and_median():
    """``segment`` (its finish step on a network output) writes the flag and the warning into the report."""
    from LiverTumorSegLib.inference.segmenter import NetworkOutput, SegmentationOptions, Segmenter
    from LiverTumorSegLib.volume import CTVolume

    labels, hu = _liver_with_lesions(60.0, [((18, 24, 24), 8, _uniform(5.0))])
    volume = CTVolume(hu, ImageGeometry(spacing=(1.0, 1.0, 1.0)))
    output = NetworkOutput(labels=labels, probability=np.where(labels == 2, 230, 0).astype(np.uint8),
                           facts={"device": "cpu"}, timings={})
    result = Segmenter(SegmentationOptions()).finish(volume, output)
    (lesion,) = result.report["lesions"]
    assert lesion["water_density"] is True
    flagged = [w for w in result.report["warnings"] if w.startswith("Lesion(s) 1 (median ")]
    assert len(flagged) == 1 and "of water density" in flagged[0] and flagged[0] in result.warnings


def test_measure_with_a_ct_flags_warns_and_notes_a_water_density_lesion(tmp_path, capsys):
    """``measure --ct`` (a label map drawn or edited by hand) judges the lesions as segment does: the flag, the
    warning in its report and on stderr, and a note on the lesion's console line; not with a CT that is not in HU."""
    import json

    import SimpleITK as sitk

    from LiverTumorSegLib.cli import main

    labels, hu = _liver_with_lesions(60.0, [((18, 24, 24), 8, _uniform(5.0))])
    for name, array in (("ct.nii.gz", hu.astype(np.int16)), ("labels.nii.gz", labels),
                        ("shifted.nii.gz", (hu + 3000.0).astype(np.int16))):
        sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / name))
    assert main(["measure", str(tmp_path / "labels.nii.gz"), "--ct", str(tmp_path / "ct.nii.gz"),
                 "-o", str(tmp_path / "r.json")]) == 0
    out, err = capsys.readouterr()
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["lesions"][0]["water_density"] is True
    assert [w for w in report["warnings"] if w.startswith("Lesion(s) 1 (median ")]
    assert "warning: Lesion(s) 1 (median " in err and "water density: a cyst?" in out
    assert main(["measure", str(tmp_path / "labels.nii.gz"), "--ct", str(tmp_path / "shifted.nii.gz"),
                 "-o", str(tmp_path / "shifted.json")]) == 0
    assert json.loads((tmp_path / "shifted.json").read_text())["lesions"][0]["water_density"] is None


def test_measure_help_says_that_ct_adds_median_hu_and_water_density(capsys):
    """measure's --help said --ct 'adds mean HU per lesion'; since 0.2.0 it also adds the median HU and, on a CT in
    HU, water density, which orders the RECIST targets (a label map measured without --ct can get other targets)."""
    from LiverTumorSegLib.cli import main

    with pytest.raises(SystemExit):
        main(["measure", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    ct_option = text[text.index("--ct CT "):text.index("--series SERIES ", text.index("--ct CT "))]
    assert "median HU" in ct_option and "water density" in ct_option and "RECIST targets" in ct_option
    assert "so the targets can differ from a run without --ct" in text  # the description


def test_followup_judges_water_density_on_a_ct_in_hu_only():
    """followup reads a CT that is not in HU too (for the mean HU): its baseline's RECIST targets, which water density
    orders, were then ordered by values that are not HU. The same lesions, CT in HU: the cyst is flagged and passed
    over; CT shifted by 3000: not judged, the long axis alone chooses."""
    from LiverTumorSegLib.followup import compare_followup
    from LiverTumorSegLib.volume import CTVolume

    labels, hu = _liver_with_lesions(60.0, [((18, 15, 15), 11, _uniform(5.0)), ((18, 34, 34), 8, _uniform(40.0)),
                                            ((18, 36, 12), 6, _uniform(40.0))])
    geometry = ImageGeometry(spacing=(1.0, 1.0, 1.0))
    for shift, flag in ((0.0, True), (3000.0, None)):
        ct = CTVolume(hu + np.float32(shift), geometry)
        change = compare_followup(CTVolume(labels, geometry), CTVolume(labels, geometry), ct, ct, alignment="none")
        baseline = change["baseline"]
        assert [d["water_density"] for d in baseline["lesions"]].count(flag) >= 1
        passed = baseline["recist"]["water_density_passed_over_ids"]
        assert (passed != []) == bool(flag)


def test_followup_warns_of_water_density_lesions_of_either_scan():
    """followup ordered the baseline's RECIST targets by water density (``recist.water_density_passed_over_ids`` of
    its ``baseline``) but said nothing: a cyst passed over, or one filling a target's place, went unremarked, where
    segment and measure warn. Its warnings now carry each scan's water-density warning, named by scan; the
    follow-up's without the target sentence (the response sums the baseline's targets); none without CTs."""
    from LiverTumorSegLib.followup import compare_followup
    from LiverTumorSegLib.volume import CTVolume

    labels, hu = _liver_with_lesions(60.0, [((18, 15, 15), 11, _uniform(5.0)), ((18, 34, 34), 8, _uniform(40.0)),
                                            ((18, 36, 12), 6, _uniform(40.0))])
    geometry = ImageGeometry(spacing=(1.0, 1.0, 1.0))
    ct, maps = CTVolume(hu, geometry), CTVolume(labels, geometry)
    change = compare_followup(maps, maps, ct, ct, alignment="none")
    (cyst,) = change["baseline"]["recist"]["water_density_passed_over_ids"]
    base = [w for w in change["warnings"] if w.startswith(f"baseline: Lesion(s) {cyst} (median ")]
    follow = [w for w in change["warnings"] if w.startswith(f"follow-up: Lesion(s) {cyst} (median ")]
    assert len(base) == 1 and f"Lesion(s) {cyst} were passed over as RECIST target lesions" in base[0]
    assert len(follow) == 1 and "RECIST target" not in follow[0] and "of water density" in follow[0]
    without_ct = compare_followup(maps, maps, alignment="none")
    assert not [w for w in without_ct["warnings"] if "water density" in w]


def test_the_liver_around_a_lesion_is_taken_in_mm_along_each_array_axis():
    """Thick slices (5 mm) of fine pixels (0.5 mm): the liver 2-10 mm around the lesion is its own two or three slices
    above and below and 4-20 pixels in-plane. With the spacing given in (x, y, z) order instead of (z, y, x) the
    shell reached 20 slices away, into a part of label 1 of 10 HU, and the lesion of water in a 60 HU liver was not
    flagged; the other tests' 1 mm voxels cannot tell the orders apart."""
    rng = np.random.default_rng(0)
    shape = (31, 80, 80)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[1:-1, 2:-2, 2:-2] = 1
    hu = np.full(shape, 10.0, dtype=np.float32)  # label 1 far from the lesion: another, darker part
    hu[12:19] = 60.0  # the liver within 3 slices (15 mm) of the lesion's centre slice
    z, y, x = np.ogrid[:31, :80, :80]
    lesion = ((z - 15) * 5.0) ** 2 + ((y - 40) * 0.5) ** 2 + ((x - 40) * 0.5) ** 2 <= 8.0 ** 2
    labels[lesion] = 2
    hu[lesion] = 0.0
    hu += rng.normal(0.0, NOISE_HU, shape).astype(np.float32)
    report = lesion_report(labels, ImageGeometry(spacing=(0.5, 0.5, 5.0)), hu)
    lesion_record, = report["lesions"]
    assert lesion_record["water_density"] is True
    assert lesion_record["median_hu"] == pytest.approx(0.0, abs=4.0)


def _lesions_in_mm(spacing_zyx, shape=(24, 56, 64), seed=1):
    """Labels and CT (HU) of a noisy liver (60 HU rising 1 HU a slice, a strip of it scanner padding) on voxels of
    ``spacing_zyx`` (mm) with three lesions drawn in mm: two overlapping balls of water (irregular, the larger one),
    one of 30 HU cut by the volume's corner (its grown box ends there) and a small mixed one; and their labels."""
    rng = np.random.default_rng(seed)
    z, y, x = [np.arange(n) * s for n, s in zip(shape, spacing_zyx)]
    z, y, x = z[:, None, None], y[None, :, None], x[None, None, :]
    labels = np.ones(shape, dtype=np.uint8)
    hu = (60.0 + np.arange(shape[0])[:, None, None] + rng.normal(0.0, NOISE_HU, shape)).astype(np.float32)
    hu[:, :, :2] = -2000.0  # liver labelled over the scanner's padding: left out as no tissue
    extent = [n * s for n, s in zip(shape, spacing_zyx)]
    water = (((z - extent[0] / 2) ** 2 + (y - extent[1] / 2) ** 2 + (x - extent[2] / 2) ** 2 <= 9.0 ** 2)
             | ((z - extent[0] / 2 - 4) ** 2 + (y - extent[1] / 2 + 7) ** 2 + (x - extent[2] / 2) ** 2 <= 6.0 ** 2))
    corner = z ** 2 + y ** 2 + (x - extent[2]) ** 2 <= 8.0 ** 2
    mixed = (z - extent[0] / 2) ** 2 + (y - extent[1] + 8) ** 2 + (x - 8) ** 2 <= 4.0 ** 2
    for lesion, lesion_hu in ((water, 5.0), (corner, 30.0), (mixed, None)):
        labels[lesion] = 2
        hu[lesion] = lesion_hu if lesion_hu is not None else rng.choice([-10.0, 70.0], int(lesion.sum()))
    hu[labels == 2] += rng.normal(0.0, NOISE_HU, int((labels == 2).sum())).astype(np.float32)
    return labels, hu


@pytest.mark.parametrize("spacing_zyx", [(1.0, 1.0, 1.0), (2.5, 0.8, 0.6)], ids=["1mm", "anisotropic"])
def test_the_liver_around_a_lesion_is_taken_block_by_block_with_the_same_numbers(monkeypatch, spacing_zyx):
    """One distance transform over a lesion's grown box took about 56 bytes a box voxel (988 MiB for a lesion of
    6.5 M voxels); it now runs over blocks of at most SHELL_BLOCK_VOXELS, each reaching 10 mm beyond the part it
    decides. Here blocks far smaller than the boxes give the very numbers of one transform per box, for an irregular
    lesion, one cut by the volume's corner and a mixed one, on 1 mm and on anisotropic voxels."""
    from scipy import ndimage

    from LiverTumorSegLib.inference import water_density
    from LiverTumorSegLib.inference.water_density import lesion_water_density

    labels, hu = _lesions_in_mm(spacing_zyx)
    numbered, count = ndimage.label(labels == 2)
    assert count == 3

    def judge_each():
        return [lesion_water_density(hu, labels, numbered[box] == i + 1, box, spacing_zyx)
                for i, box in enumerate(ndimage.find_objects(numbered))]

    monkeypatch.setattr(water_density, "SHELL_BLOCK_VOXELS", 10 ** 12)
    whole = judge_each()
    assert [d["water_density"] for d in whole] == [False, True, False]  # raster order: corner, water, mixed
    assert all(d["liver_median_hu"] is not None for d in whole)
    transformed = []
    transform = ndimage.distance_transform_edt
    monkeypatch.setattr(ndimage, "distance_transform_edt",
                        lambda array, **kwargs: transformed.append(array.size) or transform(array, **kwargs))
    monkeypatch.setattr(water_density, "SHELL_BLOCK_VOXELS", 30000)
    assert judge_each() == whole
    assert len(transformed) > 2 * count and max(transformed) <= 30000


def test_the_liver_shells_keep_voxels_on_their_bound_whatever_the_rounding_of_the_spacing():
    """On 3 mm voxels the liver's distances from a lesion are multiples of 3 mm, so the 6 mm bound of the liver beside
    it falls on voxels: a header whose spacing reads 3.000000026 mm (metres converted to mm) left them out, and the
    same lesion's contrast to its liver read -27 instead of -29 HU. Here the liver 6 mm (54 voxels) and 4.2 mm (36)
    from a 3 x 3 x 3 voxel lesion is 90 HU, the rest of the shell (62 voxels) 60 HU: the median of the shell is 90 HU
    with the voxels on the bound and 60 HU without them."""
    shape = (9, 15, 15)
    labels = np.ones(shape, np.uint8)
    labels[3:6, 6:9, 6:9] = 2                      # a 9 mm cube of lesion
    from scipy import ndimage
    steps = ndimage.distance_transform_edt(labels != 2)  # voxels from the lesion
    hu = np.where(np.isclose(steps, 2.0) | np.isclose(steps, np.sqrt(2.0)), 90, 60).astype(np.int16)
    hu[labels == 2] = 20
    box = (slice(3, 6), slice(6, 9), slice(6, 9))
    mask = labels[box] == 2
    contrasts = [lesion_water_density(hu, labels, mask, box, (s, s, s))["contrast_to_liver_hu"]
                 for s in (3.0, 3.000000026, 2.999999974)]
    assert contrasts[0] is not None and contrasts == [contrasts[0]] * 3
    assert contrasts[0] == 20 - 90
    assert within_shell(np.array([2.0, 2.00000005, 6.0, 6.00000005, 6.001]), (2.0, 6.0)).tolist() == \
        [False, False, True, True, False]


def test_the_warning_names_at_most_ten_water_density_lesions_and_counts_the_rest():
    # a polycystic liver of 454 cysts gave one 8,100-character warning line (the console lists 10 lesions)
    lesions = [dict(id=i, median_hu=5.0, water_density=True, recist_target=i == 1) for i in range(1, 455)]
    warning, = water_density_lesion_warnings(lesions, {"water_density_passed_over_ids": []})
    assert warning.startswith("Lesion(s) 1 (median 5 HU), 2 (median 5 HU)")
    assert "10 (median 5 HU) and 444 more (water_density in the report) of water density" in warning
    assert "11 (median" not in warning and len(warning) < 1000
    assert "Lesion(s) 1 count among the RECIST target lesions" in warning
    ten, = water_density_lesion_warnings(lesions[:10])
    assert "more" not in ten.split(" of water density")[0] and "10 (median 5 HU) of water density" in ten


def test_a_lesions_density_numbers_with_the_liver_beside_it_along_x_only():
    """One slice of 5 mm, 1 mm pixels: a 3 x 6 pixel lesion of HU 0..17 with liver of 100 HU to its left and right
    only. Too thin for a core, so all 18 voxels count: median 8.5 HU, interquartile range 12.75 - 4.25 = 8.5 HU
    (numpy's linear percentiles at 0.25 x 17 and 0.75 x 17). The liver 2-6 mm beside it is 4 columns of 3 pixels
    on either side, 24 voxels (>= 20), so contrast_to_liver_hu = 8.5 - 100 = -91.5 HU. The liver is searched 10 mm
    along each array axis: 10 pixels along x here (two, 2 mm, with the spacing read in x, y, z order, and no liver
    beside the lesion was found)."""
    labels = np.zeros((3, 5, 40), dtype=np.uint8)
    labels[1, 1:4, 5:35] = 1
    labels[1, 1:4, 17:23] = 2
    hu = np.zeros(labels.shape, dtype=np.float32)
    hu[labels == 1] = 100.0
    hu[1, 1:4, 17:23] = np.arange(18, dtype=np.float32).reshape(3, 6)
    box = (slice(1, 2), slice(1, 4), slice(17, 23))
    density = lesion_water_density(hu, labels, labels[box] == 2, box, (5.0, 1.0, 1.0))
    assert (density["median_hu"], density["spread_hu"]) == (pytest.approx(8.5), pytest.approx(8.5))
    assert density["contrast_to_liver_hu"] == pytest.approx(-91.5)


def test_a_fluid_lesion_in_fluid_labelled_liver_is_of_water_density_against_the_liver_tissue():
    """Ascites or a resection bed split by the network into tumor and 'liver': the liver around a 10 HU lesion was a
    rim of fluid (17-25 HU), the lesion not 20 HU darker than it, and RECIST chose it as a target ahead of the flagged
    ones (the clinical-variants audit). Around it, the liver's tissue is what it is compared with."""
    shape = (36, 48, 48)
    labels, hu = _liver_with_lesions(60.0, [((18, 24, 24), 7, _uniform(10.0))], shape=shape)
    rim = _ball(shape, (18, 24, 24), 15) & (labels == 1)       # 8 mm of fluid labelled liver around it
    hu[rim] = 15.0 + np.random.default_rng(1).normal(0.0, NOISE_HU, int(rim.sum())).astype(np.float32)
    (lesion,) = _report(labels, hu)["lesions"]
    assert lesion["water_density"] is True and lesion["median_hu"] == pytest.approx(10.0, abs=3.0)
    labels, hu = _liver_with_lesions(15.0, [((18, 24, 24), 7, _uniform(10.0))], shape=shape)   # a fatty liver: no
    (lesion,) = _report(labels, hu)["lesions"]
    assert lesion["water_density"] is False


def test_the_target_words_do_not_say_no_other_lesion_was_found_beside_another_target():
    """'... count among the RECIST target lesions ..., as no other measurable lesion was found' beside another target
    (a hemangioma) was false (the clinical-variants audit)."""
    lesions = [dict(id=1, median_hu=5.0, water_density=True, recist_target=True),
               dict(id=2, median_hu=48.0, water_density=False, recist_target=True)]
    warning, = water_density_lesion_warnings(lesions, {"water_density_passed_over_ids": []})
    assert "no other measurable lesion" not in warning
    assert "as too few other measurable lesions were found to take the target places" in warning


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_noisy_fatty_liver_keeps_all_its_voxels_as_the_reference(seed):
    """The review of the tissue rule: picked by raw values, the liver tissue of a noisy fatty liver (20 HU, noise SD
    25) was its upper half of noise, 15-30 HU brighter, and a lesion 15 HU darker than the liver was flagged. Picked by
    the local mean, and only where that tissue reaches 45 HU, such a liver is read whole."""
    rng = np.random.default_rng(seed)
    shape = (36, 48, 48)
    labels, hu = _liver_with_lesions(20.0, [((18, 24, 24), 8, _uniform(5.0))], seed=seed, shape=shape)
    hu += rng.normal(0.0, 22.0, shape).astype(np.float32)        # noise SD about 25 HU in all
    found = lesion_water_density(hu, labels, labels == 2, tuple(slice(0, n) for n in shape), (1.0, 1.0, 1.0))
    assert found["liver_median_hu"] == pytest.approx(20.0, abs=4.0)   # raw-value picking read about 45
    assert found["water_density"] is False


def test_a_necrotic_lesion_holding_lipiodol_is_no_simple_cyst():
    """A 10 HU necrotic tumor holding a blob of lipiodol (a tenth of it at 1000 HU; mean 115 HU) was flagged as possibly
    a simple cyst, its core's interquartile range blind to the dense tenth (the clinical-variants audit)."""
    def necrotic_with_lipiodol(rng, n):
        values = np.full(n, 10.0)
        values[: n // 10] = 1000.0
        return values

    labels, hu = _liver_with_lesions(60.0, [((18, 24, 24), 8, necrotic_with_lipiodol)])
    (lesion,) = _report(labels, hu)["lesions"]
    assert lesion["water_density"] is False
    labels, hu = _liver_with_lesions(60.0, [((18, 24, 24), 8, _uniform(10.0))])   # without it: flagged as before
    assert _report(labels, hu)["lesions"][0]["water_density"] is True
