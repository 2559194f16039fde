"""Lesion report: known answers for the cases mutation testing found unchecked (RECIST target flags, an empty
label map, the anterior-first tie-break, the longest axial diameter of a single voxel and of a cross)."""
import numpy as np
import pytest

from LiverTumorSegLib.inference.lesion_report import lesion_components, lesion_report, longest_axial_diameter_mm
from LiverTumorSegLib.volume import ImageGeometry


def test_each_lesion_says_whether_it_is_a_recist_target():
    # 2 mm slices: lesions from 10 mm long axis are measurable; A (20 x 20 voxels of 1 mm) is, B (3 x 3) is not
    labels = np.zeros((10, 60, 60), dtype=np.uint8)
    labels[1:9, 2:58, 2:58] = 1
    labels[3:6, 10:30, 10:30] = 2                 # A: 1200 voxels
    labels[3:6, 40:43, 40:43] = 2                 # B: 27 voxels
    report = lesion_report(labels, ImageGeometry(spacing=(1.0, 1.0, 2.0)))
    a, b = report["lesions"]
    assert (a["voxel_count"], b["voxel_count"]) == (1200, 27)
    assert a["long_axis_mm"] >= 19.0 and b["long_axis_mm"] < 10.0
    assert a["recist_target"] is True and b["recist_target"] is False
    assert report["recist"]["target_lesion_ids"] == [a["id"]]
    assert report["recist"]["sum_of_diameters_mm"] == pytest.approx(a["long_axis_mm"])


def test_report_of_an_empty_label_map_is_all_zero():
    report = lesion_report(np.zeros((4, 5, 6), dtype=np.uint8), ImageGeometry(spacing=(1.0, 1.0, 1.0)))
    assert report["lesion_count"] == 0 and report["lesions"] == []
    assert report["liver_volume_ml"] == 0.0 and report["tumor_volume_ml"] == 0.0
    assert report["tumor_burden_percent"] == 0.0
    assert report["recist"]["target_lesion_ids"] == [] and report["recist"]["sum_of_diameters_mm"] == 0.0


@pytest.mark.parametrize("flip_y", [False, True])
def test_equal_lesions_at_the_same_height_and_side_are_numbered_anterior_first(flip_y):
    labels = np.zeros((8, 24, 12), dtype=np.uint8)
    labels[3:5, 3:6, 4:7] = 2                     # y index small
    labels[3:5, 15:18, 4:7] = 2                   # y index large; same size, height (z) and x
    direction = np.diag([1.0, -1.0 if flip_y else 1.0, 1.0])   # flip_y: the y index runs toward anterior
    geometry = ImageGeometry(spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0), direction=tuple(direction.ravel()))
    report = lesion_report(labels, geometry)
    first, second = report["lesions"]
    assert first["centroid_lps_mm"][1] < second["centroid_lps_mm"][1]       # LPS y: posterior positive
    ids, _ = lesion_components(labels, geometry)
    assert ids[3, 4, 5] == (2 if flip_y else 1) and ids[3, 16, 5] == (1 if flip_y else 2)


def test_longest_axial_diameter_of_a_single_voxel_is_zero():
    mask = np.zeros((3, 4, 4), dtype=bool)
    mask[1, 2, 2] = True
    assert longest_axial_diameter_mm(mask, ImageGeometry(spacing=(0.5, 0.5, 3.0))) == 0.0
    mask[1, 2, 3] = True                           # two voxels 0.5 mm apart
    assert longest_axial_diameter_mm(mask, ImageGeometry(spacing=(0.5, 0.5, 3.0))) == pytest.approx(0.5)


def test_longest_axial_diameter_of_a_cross_is_its_long_bar():
    # > 64 voxels in one slice (the convex-hull path); the first and last voxels in scan order (the vertical
    # bar's ends, 10 voxels apart) are not the farthest pair (the horizontal bar's ends, 39 voxels apart)
    mask = np.zeros((3, 20, 50), dtype=bool)
    mask[1, 5:16, 20] = True                       # vertical bar: 11 voxels
    mask[1, 10, 1:41] = True                       # horizontal bar: 40 voxels
    mask[1, 6:9, 2:8] = True                       # a block: 18 voxels (68 in the slice)
    mask[2, 10, 1:21] = True                       # another slice: a shorter bar (15.2 mm)
    spacing = (0.8, 0.6, 2.0)                      # x, y, z mm
    kji = np.argwhere(mask)
    best = 0.0
    for z in np.unique(kji[:, 0]):                 # brute force over all in-slice pairs
        pts = kji[kji[:, 0] == z][:, 1:] * np.array([spacing[1], spacing[0]])
        best = max(best, float(np.max(np.linalg.norm(pts[:, None] - pts[None], axis=-1))))
    assert best == pytest.approx(39 * 0.8)
    assert longest_axial_diameter_mm(mask, ImageGeometry(spacing=spacing)) == pytest.approx(best)


def test_lesion_report_refuses_label_values_it_cannot_read():
    """Labels {1, 3, 5} or fractional values were reported as 0 lesions without a word (an API audit)."""
    from LiverTumorSegLib.errors import LabelError
    from LiverTumorSegLib.inference.lesion_report import lesion_report
    from LiverTumorSegLib.volume import ImageGeometry
    labels = np.zeros((3, 4, 5), np.uint8)
    labels[1, 1:3, 1:3] = 5
    with pytest.raises(LabelError, match="5"):
        lesion_report(labels, ImageGeometry(spacing=(1.0, 1.0, 1.0)))
    with pytest.raises(LabelError, match="non-integer"):
        lesion_report(np.full((3, 4, 5), 0.5), ImageGeometry(spacing=(1.0, 1.0, 1.0)))
    # the message named the map "Label map 'label map'", not which argument it was
    with pytest.raises(LabelError, match="^Label map 'labels_zyx given to lesion_report' has values 5 "):
        lesion_report(labels, ImageGeometry(spacing=(1.0, 1.0, 1.0)))


def test_near_integer_float_labels_are_read_as_the_integers_they_round_to():
    """The value check accepts 1.9999 as 2 (within 1e-3), but the report then tested the floats as they were:
    '== 2' found no tumor and '>= 1' no liver at 0.9999, so a 0.064 mL lesion became 0 lesions; post-processing
    truncated 1.9999 to liver."""
    from LiverTumorSegLib.inference.lesion_report import lesion_components, lesion_report
    from LiverTumorSegLib.inference.postprocess import postprocess_labels
    from LiverTumorSegLib.volume import ImageGeometry
    labels = np.zeros((8, 8, 8), np.float32)
    labels[:, :, :] = 0.0
    labels[0:8, 0:8, 0:1] = 0.9999                       # 64 liver voxels
    labels[2:6, 2:6, 2:6] = 0.9999
    labels[3:5, 3:5, 3:5] = 1.9999                       # 8 tumor voxels
    exact = np.round(labels).astype(np.uint8)
    geometry = ImageGeometry(spacing=(2.0, 2.0, 2.0))
    report = lesion_report(labels, geometry)
    assert report["lesion_count"] == 1 and report == lesion_report(exact, geometry)
    assert report["tumor_volume_ml"] == pytest.approx(8 * 0.008)
    assert lesion_components(labels, geometry)[1] == 1
    np.testing.assert_array_equal(postprocess_labels(labels, (2.0, 2.0, 2.0)),
                                  postprocess_labels(exact, (2.0, 2.0, 2.0)))


def test_measure_prints_a_fractional_recist_minimum_as_it_is():
    """With 6.25 mm slices RECIST's minimum is 12.5 mm (twice the slice thickness); the console said '12 mm',
    beside a 12.2 mm lesion that is (rightly) not a target."""
    from LiverTumorSegLib.commands.measure import summary_lines

    report = {"liver_volume_ml": 1500.0, "lesion_count": 0, "tumor_volume_ml": 0.0, "tumor_burden_percent": 0.0,
              "lesions": [], "recist": {"target_lesion_ids": [], "sum_of_diameters_mm": 0.0,
                                        "measurable_minimum_mm": 12.5, "slice_thickness_mm": 6.25}}
    assert "measurable from 12.5 mm" in summary_lines(report)[1]


def test_a_one_voxel_lesion_is_not_printed_or_tabled_as_0_ml():
    """A one-voxel lesion of 0.7 x 0.7 x 5 mm = 0.00245 mL in a 707.56 mL liver (burden 0.000346 %): measure
    printed 'tumors: 1 (0.00 mL, burden 0.00 %)' and 'lesion 1: 0.00 mL', and the Slicer table's Volume column
    read 0 mL, of a lesion the report holds. Such numbers now get 2 significant digits; others keep their places."""
    from LiverTumorSegLib.commands.measure import summary_lines
    from LiverTumorSegLib.inference.lesion_report import number_text
    from LiverTumorSegLib.mrml import _column_value

    labels = np.zeros((10, 200, 200), np.uint8)
    labels[1:9, 5:195, 5:195] = 1                  # 8 x 190 x 190 voxels = 707.56 mL
    labels[5, 50, 50] = 2
    report = lesion_report(labels, ImageGeometry(spacing=(0.7, 0.7, 5.0)))
    assert report["lesions"][0]["volume_ml"] == pytest.approx(0.7 * 0.7 * 5.0 / 1000.0)
    assert report["tumor_burden_percent"] == pytest.approx(100 * 0.00245 / 707.56)
    lines = summary_lines(report)
    assert "tumors: 1 (0.0024 mL, burden 0.00035 %)" in lines[0]   # 0.00245 is 0.0024499... as a float
    assert lines[2].startswith("  lesion 1: 0.0024 mL,")
    assert _column_value(report["lesions"][0], "Volume", "volume_ml") == pytest.approx(0.0024)
    assert _column_value({"volume_ml": 3.0849}, "Volume", "volume_ml") == 3.08
    assert _column_value({"mean_hu": 0.04}, "Mean HU", "mean_hu") == 0.0     # other columns keep their places
    assert (number_text(0.0, 2), number_text(12.346, 2), number_text(0.006, 2), number_text(-0.0004, 2)) == \
        ("0.00", "12.35", "0.01", "-0.00040")


def test_the_csv_keeps_a_tiny_lesions_volume_and_burden_above_zero():
    """One voxel of 0.125 mm (1.95e-06 mL) in a liver of 8000 of them (0.0156 mL), and one voxel of 1 mm in a
    liver of 2 million (2000 mL, burden 0.00005 %): the CSV wrote volume_ml 0.0000 and tumor_burden_percent 0.000
    of lesions it lists. Those get 2 significant digits now; a number that does not round to zero keeps its
    places (a 27-voxel and a 1-voxel lesion of 1 mm: 0.0270 and 0.0010 mL)."""
    import csv
    import io

    from LiverTumorSegLib.inference.lesion_report import report_to_csv_text

    def csv_rows(labels, spacing_mm):
        text = report_to_csv_text(lesion_report(labels, ImageGeometry(spacing=(spacing_mm,) * 3)))
        return list(csv.DictReader(io.StringIO(text)))

    labels = np.ones((20, 20, 20), np.uint8)
    labels[10, 10, 10] = 2
    (row,) = csv_rows(labels, 0.125)
    assert (row["volume_ml"], row["tumor_volume_ml"], row["liver_volume_ml"]) == ("0.0000020", "0.0000020", "0.016")
    assert row["tumor_burden_percent"] == "0.013"         # 1 / 8000 = 0.0125 % (0.01250000000000000069 as a float)
    big = np.ones((200, 100, 100), np.uint8)
    big[100, 50, 50] = 2
    (row,) = csv_rows(big, 1.0)
    assert (row["volume_ml"], row["liver_volume_ml"], row["tumor_burden_percent"]) == ("0.0010", "2000.000",
                                                                                        "0.000050")
    labels[5:8, 5:8, 5:8] = 2
    assert [r["volume_ml"] for r in csv_rows(labels, 1.0)] == ["0.0270", "0.0010"]


@pytest.mark.parametrize("dtype, value", [("int16", 600), ("uint16", 32768), ("int16", -50)])
def test_an_integer_probability_map_outside_0_255_is_refused(dtype, value):
    """lesion_report took any integer map as 255 x p: int16 600 reported a mean tumor probability of 2.35."""
    from LiverTumorSegLib.errors import InputError

    labels = np.zeros((3, 6, 6), np.uint8)
    labels[:, 1:5, 1:5] = 1
    labels[1, 2:4, 2:4] = 2
    probability = np.zeros(labels.shape, dtype)
    probability[labels == 2] = value
    with pytest.raises(InputError, match="0..255"):
        lesion_report(labels, ImageGeometry(spacing=(1.0, 1.0, 1.0)), tumor_probability_zyx=probability)
    probability[labels == 2] = 204
    report = lesion_report(labels, ImageGeometry(spacing=(1.0, 1.0, 1.0)), tumor_probability_zyx=probability)
    assert report["lesions"][0]["mean_tumor_probability"] == pytest.approx(0.8)


def test_measure_reads_a_probability_map_in_another_axis_order_than_the_ct(tmp_path, capsys):
    """With --ct the label map is put in the CT's axis order; its probability map, stored like the label map
    (x reversed), was then refused as 'not on the label map's grid'."""
    import json

    import SimpleITK as sitk

    from LiverTumorSegLib.cli import main

    labels = np.zeros((6, 12, 12), np.uint8)
    labels[1:5, 2:10, 2:10] = 1
    labels[2:4, 4:7, 4:7] = 2
    ct = np.where(labels == 2, 20, np.where(labels == 1, 60, -100)).astype(np.int16)
    probability = np.where(labels == 2, 0.8, 0.0).astype(np.float32)

    def write(name, array, flipped):
        image = sitk.GetImageFromArray(array[:, :, ::-1].copy() if flipped else array)
        if flipped:  # the same physical grid, x stored reversed
            image.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
            image.SetOrigin((11.0, 0.0, 0.0))
        sitk.WriteImage(image, str(tmp_path / name))
        return str(tmp_path / name)

    ct_path, label_path = write("ct.nrrd", ct, False), write("labels.nrrd", labels, True)
    probability_path = write("prob.nrrd", probability, True)
    for extra in ([], ["--ct", ct_path]):
        out = tmp_path / f"report{len(extra)}.json"
        code = main(["measure", label_path, "--probabilities", probability_path, "-o", str(out)] + extra)
        assert code == 0, capsys.readouterr().err
        report = json.loads(out.read_text())
        lesion = report["lesions"][0]
        assert lesion["mean_tumor_probability"] == pytest.approx(0.8)
        import LiverTumorSegLib
        assert report["library_version"] == LiverTumorSegLib.__version__  # as segment's reports record it
        if extra:
            assert lesion["mean_hu"] == pytest.approx(20.0)


def test_measure_takes_segments_uint8_probability_map_without_a_float_copy(tmp_path, capsys, monkeypatch):
    """measure read segment's uint8 map (255 x p) as int16 and made two float32 copies of it (astype, / 255):
    10 bytes a voxel beside the label map, a 1.16 GB process for a 512 x 512 x 400 case (0.41 GB now). The map
    now stays uint8 and each lesion's mean tumor probability is the one segment's own report gives (the float32
    copy changed it in the 8th digit); the printed (4-digit) values are those of before."""
    import csv
    import json
    import tracemalloc

    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.io import labels as labels_module, write_label_map, write_probability_map

    labels = np.zeros((24, 128, 128), np.uint8)
    labels[2:22, 10:110, 10:110] = 1
    labels[6:12, 20:34, 20:36] = 2
    labels[9:12, 40:46, 40:44] = 2
    probability = np.random.default_rng(0).integers(0, 256, labels.shape).astype(np.uint8)
    geometry = ImageGeometry(spacing=(0.7, 0.8, 2.5))
    write_label_map(tmp_path / "labels.nii", labels, geometry)
    write_probability_map(tmp_path / "prob.nii", probability, geometry)
    as_segment_reports = lesion_report(labels, geometry, tumor_probability_zyx=probability)["lesions"]
    monkeypatch.setattr(labels_module, "_COUNT_CHUNK_VOXELS", 1 << 12)  # a bounded buffer made small: the peak
    # is then what grows with the volume
    peaks = []
    for suffix in ("json", "csv"):
        tracemalloc.start()
        try:
            code = main(["measure", str(tmp_path / "labels.nii"), "--probabilities", str(tmp_path / "prob.nii"),
                         "-o", str(tmp_path / f"r.{suffix}")])
            peaks.append(tracemalloc.get_traced_memory()[1] / labels.size)
        finally:
            tracemalloc.stop()
        assert code == 0, capsys.readouterr().err
    measured = json.loads((tmp_path / "r.json").read_text())["lesions"]
    assert len(measured) == 2
    assert [d["mean_tumor_probability"] for d in measured] == [d["mean_tumor_probability"] for d in as_segment_reports]
    rows = list(csv.DictReader((tmp_path / "r.csv").read_text(encoding="utf-8").splitlines()))
    as_float32 = probability.astype(np.float32) / 255.0  # what measure averaged before
    for row, lesion in zip(rows, measured):
        box = tuple(slice(a, b) for a, b in lesion["bounding_box_zyx"])
        before = float(as_float32[box][labels[box] == 2].astype(np.float64).mean())
        assert row["mean_tumor_probability"] == f"{before:.4f}"
    assert peaks[1] < 5.0, f"{peaks[1]:.1f} bytes a voxel"  # 3.6 (11.3 with the int16 read and float32 copies)


def test_measure_refuses_series_without_ct(tmp_path, capsys):
    """--series without --ct was dropped without a word."""
    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.io import write_label_map

    labels = np.zeros((3, 6, 6), np.uint8)
    labels[:, 1:5, 1:5] = 1
    write_label_map(tmp_path / "labels.nii.gz", labels, ImageGeometry(spacing=(1.0, 1.0, 1.0)))
    code = main(["measure", str(tmp_path / "labels.nii.gz"), "--series", "3", "-o", str(tmp_path / "r.json")])
    assert code == 2 and "--series picks the DICOM series of --ct" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_a_long_axis_short_of_the_measurable_minimum_is_not_shown_rounded_onto_it():
    """A 9.988 mm long axis read 'long axis 10.0 mm' in the console and 10.0 in the Slicer table, beside 'RECIST
    target lesions: none ... measurable from 10 mm' (the report audit): such a value gets the places that keep it
    below; the others keep 0.1 mm (the CSV 0.01 mm)."""
    from LiverTumorSegLib.commands.measure import summary_lines
    from LiverTumorSegLib.inference.lesion_report import (lesion_summary_line, long_axis_text, places_short_of,
                                                          report_to_csv_text)
    from LiverTumorSegLib.mrml import _column_value

    assert [long_axis_text(v) for v in (9.9879, 9.9999, 9.94, 10.0, 10.04, 26.63)] == \
        ["9.99", "9.9999", "9.9", "10.0", "10.0", "26.6"]
    assert long_axis_text(10.0 - 1e-12) == "10.0"                  # short by float rounding only: it meets 10 mm
    assert long_axis_text(11.96, 12.0) == "11.96" and long_axis_text(11.96) == "12.0"  # 6 mm slices: 12 mm
    assert places_short_of(float("nan"), 10.0, 1) == 1
    lesion = {"id": 1, "volume_ml": 0.48, "long_axis_mm": 9.9879, "short_axis_mm": 8.4}
    assert "long axis 9.99 mm, short axis 8.4 mm" in lesion_summary_line(lesion)
    assert _column_value(lesion, "Long axis", "long_axis_mm") == 9.99
    assert _column_value(lesion, "Long axis", "long_axis_mm", 12.0) == 10.0
    assert _column_value({"long_axis_mm": 26.63}, "Long axis", "long_axis_mm") == 26.6
    # a real report: a lesion of 9.9959 mm along x (1 pixel of 0.9995 mm times 10 by the centre-distance-plus-one
    # rule) on 1 mm-thick slices
    labels = np.zeros((3, 30, 30), np.uint8)
    labels[:, 2:28, 2:28] = 1
    labels[1, 10, 5:15] = 2                                         # 10 pixels along x, one row
    report = lesion_report(labels, ImageGeometry(spacing=(0.99959, 0.99959, 1.0)))
    (found,) = report["lesions"]
    assert found["long_axis_mm"] == pytest.approx(9.9959) and not found["recist_target"]
    assert "long axis 9.996 mm" in summary_lines(report)[2]
    row = report_to_csv_text(report).splitlines()[1].split(",")
    assert row[3] == "9.996"                                        # 2 places would read 10.00


def _measure_lesion_of_hu(tmp_path, lesion_hu):
    """``(exit code, report path)`` of ``measure --ct`` on a liver box (60 HU) with one 14 mm lesion of ``lesion_hu``,
    bone and soft tissue beside it (a CT in HU), 1 x 1 x 2 mm voxels."""
    import nibabel as nib

    from LiverTumorSegLib.cli import main

    labels = np.zeros((20, 40, 40), np.uint8)
    labels[2:18, 5:35, 5:35] = 1
    labels[6:12, 10:24, 10:24] = 2                                  # 14 mm across: measurable
    ct = np.where(labels == 1, 60, -1000).astype(np.int16)
    ct[labels == 2] = lesion_hu
    ct[:, 36:39, 18:22] = 500                                       # bone and soft tissue: a CT in HU
    ct[:, 0:2, :] = 40
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    for name, array in (("labels.nii.gz", labels), ("ct.nii.gz", ct)):
        nib.save(nib.Nifti1Image(np.ascontiguousarray(array.transpose(2, 1, 0)), affine), str(tmp_path / name))
    out = tmp_path / "r.json"
    return main(["measure", str(tmp_path / "labels.nii.gz"), "--ct", str(tmp_path / "ct.nii.gz"), "-o", str(out)]), out


def test_measure_warns_of_a_lesion_of_fat_density_as_segment_does(tmp_path, capsys):
    """measure --ct chose a -90 HU 'tumor' as a RECIST target without a word, where segment warns of it."""
    import json

    from LiverTumorSegLib.cli import main

    code, out = _measure_lesion_of_hu(tmp_path, -90)
    assert code == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    report = json.loads(out.read_text())
    assert report["lesions"][0]["recist_target"] is True
    assert any("Implausible lesion(s) 1 (-90 HU)" in w for w in report["warnings"])
    assert "Implausible lesion(s) 1 (-90 HU)" in err
    code = main(["measure", str(tmp_path / "labels.nii.gz"), "-o", str(tmp_path / "r2.json")])  # no CT: no HU
    assert code == 0 and not any("Implausible" in w for w in json.loads((tmp_path / "r2.json").read_text())["warnings"])


def test_measure_warns_of_a_dense_lesion_as_segment_does(tmp_path, capsys):
    """A 350 HU 'tumor' (oral contrast in a stomach beside the liver) is named, as segment names it."""
    import json

    code, out = _measure_lesion_of_hu(tmp_path, 350)
    assert code == 0, capsys.readouterr().err
    assert any(w.startswith("Implausible lesion(s) 1 (350 HU): a mean density of 250 HU or more")
               for w in json.loads(out.read_text())["warnings"])


def test_measure_notes_a_liver_the_scan_cuts_as_segment_does(tmp_path, capsys):
    """measure gave the 70 mL liver of a 3-slice scan as the liver volume without a word, where segment notes that
    it is the volume of the part scanned; a liver inside the scan gets no note."""
    import json

    import nibabel as nib

    from LiverTumorSegLib.cli import main

    labels = np.zeros((3, 40, 40), np.uint8)
    labels[:, 5:35, 5:35] = 1                                       # on the first and last slice: cut
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(np.ascontiguousarray(labels.transpose(2, 1, 0)), affine), str(tmp_path / "cut.nii.gz"))
    inside = np.pad(labels, ((1, 1), (0, 0), (0, 0)))
    nib.save(nib.Nifti1Image(np.ascontiguousarray(inside.transpose(2, 1, 0)), affine), str(tmp_path / "in.nii.gz"))
    assert main(["measure", str(tmp_path / "cut.nii.gz"), "-o", str(tmp_path / "cut.json")]) == 0
    err = capsys.readouterr().err
    warnings = json.loads((tmp_path / "cut.json").read_text())["warnings"]
    assert len(warnings) == 1 and "the scan starts or ends inside the liver" in warnings[0].lower()
    assert "5 mL, is that of the part scanned" in warnings[0] and warnings[0] in err   # 3 x 30 x 30 x 2 mm^3
    assert main(["measure", str(tmp_path / "in.nii.gz"), "-o", str(tmp_path / "in.json")]) == 0
    inside_warnings = json.loads((tmp_path / "in.json").read_text())["warnings"]
    assert not any("inside the liver" in w.lower() for w in inside_warnings)
    # its 5.4 mL liver without tumor, which nothing cuts, is asked whether it is a lesion mask (the measure audit)
    assert len(inside_warnings) == 1 and "lesion mask" in inside_warnings[0]


def test_a_small_liver_volume_is_not_printed_as_0_ml():
    """A liver label of 0.01 mL was printed 'liver volume: 0.0 mL' beside a tumor of 0.00025 mL (the report audit)."""
    from LiverTumorSegLib.commands.measure import summary_lines

    labels = np.zeros((4, 10, 10), np.uint8)
    labels[1:3, 2:5, 2:5] = 1                                       # 18 voxels of 0.5 x 0.5 x 1 mm: 0.0045 mL
    labels[1, 3, 3] = 2
    report = lesion_report(labels, ImageGeometry(spacing=(0.5, 0.5, 1.0)))
    assert summary_lines(report)[0].startswith("liver volume: 0.0045 mL; tumors: 1 (0.00025 mL")


def test_segments_console_summary_keeps_small_livers_and_short_long_axes_apart_from_the_rounding():
    """segment's console lines follow measure's: the liver volume with 2 significant digits where 0.1 mL shows 0, and
    a long axis short of the report's measurable minimum (here 12 mm: 6 mm slices) not rounded onto it."""
    from types import SimpleNamespace

    from LiverTumorSegLib.commands.segment import format_summary

    lesion = {"id": 1, "volume_ml": 0.48, "long_axis_mm": 11.96, "short_axis_mm": 8.4, "centroid_ras_mm": [1, 2, 3]}
    report = {"liver_volume_ml": 0.0045, "lesion_count": 1, "tumor_volume_ml": 0.48, "tumor_burden_percent": 1.0,
              "lesions": [lesion], "recist": {"measurable_minimum_mm": 12.0}}
    result = SimpleNamespace(output_path="out.nii.gz", seconds=1.0, device="cpu", report=report, report_path=None,
                             preview_path=None, probability_path=None)
    lines = format_summary(result).splitlines()
    assert lines[1].startswith("liver volume: 0.0045 mL;")
    assert "long axis 11.96 mm" in lines[2]


def _label_with_a_mirrored_header(tmp_path):
    """Testing/Data's 30-slice CT and its liver label, the label saved with the CT's voxels but a header that
    mirrors x (a conversion tool's flip): placed by its header, the liver lands on the patient's left."""
    from pathlib import Path

    import nibabel as nib

    data = Path(__file__).resolve().parents[1] / "Data"
    ct = nib.load(str(data / "example_ct_sm.nii.gz"))
    label = nib.load(str(data / "example_ct_sm_liver.nii.gz"))
    flipped = ct.affine.copy()
    flipped[:, 0] *= -1                                             # x mirrored ...
    flipped[:3, 3] = ct.affine[:3, 3] + ct.affine[:3, 0] * (ct.shape[0] - 1)  # ... over the same extent
    path = tmp_path / "liver_header_flipped.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(label.dataobj).astype(np.uint8), flipped), str(path))
    return str(data / "example_ct_sm.nii.gz"), str(data / "example_ct_sm_liver.nii.gz"), str(path)


def test_measure_warns_of_a_label_whose_header_mirrors_it_off_its_ct(tmp_path, capsys):
    """A label map whose header was flipped by a conversion (its voxels drawn on the CT) was measured where that
    header puts it, mirrored, with only the note 'reoriented to the CT' (train refuses such a label); measure --ct now
    warns that it fits the CT only in the CT's own voxel order. The right label gets no such warning."""
    import json

    from LiverTumorSegLib.cli import main

    ct, right, flipped = _label_with_a_mirrored_header(tmp_path)
    assert main(["measure", flipped, "--ct", ct, "-o", str(tmp_path / "r.json")]) == 0
    warnings = json.loads((tmp_path / "r.json").read_text())["warnings"]
    misfit = [w for w in warnings if "does not fit its CT where its header places it" in w]
    assert len(misfit) == 1 and "outside -50..300 HU" in misfit[0], warnings
    assert "does not fit its CT where its header places it" in capsys.readouterr().err
    assert main(["measure", right, "--ct", ct, "-o", str(tmp_path / "r2.json")]) == 0
    assert not any("does not fit its CT" in w for w in json.loads((tmp_path / "r2.json").read_text())["warnings"])


def _label_with_mirrored_voxels(tmp_path):
    """Testing/Data's 30-slice CT and its liver label, the label's voxels flipped in x under the CT's own header (a
    script's ``arr[::-1]``): the same grid, so no grid check sees it."""
    from pathlib import Path

    import nibabel as nib

    data = Path(__file__).resolve().parents[1] / "Data"
    ct = nib.load(str(data / "example_ct_sm.nii.gz"))
    label = np.asarray(nib.load(str(data / "example_ct_sm_liver.nii.gz")).dataobj).astype(np.uint8)
    path = tmp_path / "liver_voxels_flipped.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(label[::-1]), ct.affine), str(path))  # nibabel (x, y, z): x
    return str(data / "example_ct_sm.nii.gz"), str(path)


def test_measure_warns_of_a_label_whose_voxels_are_mirrored_under_the_cts_header(tmp_path, capsys):
    """A label whose voxels were flipped against the CT under the CT's own header (train refuses it) was measured
    mirrored without a word (stop 109's note); measure --ct now names the axis along which it would fit."""
    import json

    from LiverTumorSegLib.cli import main

    ct, flipped = _label_with_mirrored_voxels(tmp_path)
    assert main(["measure", flipped, "--ct", ct, "-o", str(tmp_path / "r.json")]) == 0
    warnings = json.loads((tmp_path / "r.json").read_text())["warnings"]
    misfit = [w for w in warnings if "does not fit its CT:" in w]
    assert len(misfit) == 1 and "mirrored along x (left and right as stored)" in misfit[0], warnings
    assert "probably flipped against the CT's" in capsys.readouterr().err


def test_measure_of_a_badly_fitting_label_stored_transposed_runs(tmp_path):
    """A label map whose header stores the CT's grid transposed (x and y swapped, so the stored voxels have another
    shape than the CT) and that fits the CT badly where its header places it: the misfit check compared the CT with
    the stored voxels of the other shape and measure ended in 'internal error: IndexError'. It is measured now."""
    from pathlib import Path

    import nibabel as nib

    from LiverTumorSegLib.cli import main

    data = Path(__file__).resolve().parents[1] / "Data"
    ct = nib.load(str(data / "example_ct_sm.nii.gz"))
    label = np.asarray(nib.load(str(data / "example_ct_sm_liver.nii.gz")).dataobj).astype(np.uint8)
    transposed = ct.affine.copy()
    transposed[:, [0, 1]] = transposed[:, [1, 0]]
    wrong = np.ascontiguousarray(np.transpose(label[::-1, ::-1, :], (1, 0, 2)))  # placed mirrored: fits badly
    path = tmp_path / "transposed.nii.gz"
    nib.save(nib.Nifti1Image(wrong, transposed), str(path))
    assert main(["measure", str(path), "--ct", str(data / "example_ct_sm.nii.gz"),
                 "-o", str(tmp_path / "r.json")]) == 0


def test_the_report_of_a_large_grid_makes_no_whole_volume_mask():
    """lesion_report made two whole-volume masks (labels >= 1 to count the liver, labels == 2 to find the tumors'
    box), each 1 byte a voxel beside segment's three maps (250 MiB of a 512 x 512 x 1000 CT): the liver is now
    counted on the uint8 map itself and the box found a slab at a time. Same report; 0.50 bytes a voxel here
    (1.11 before)."""
    import tracemalloc

    from LiverTumorSegLib.metrics.surface import bounding_box, value_bounding_box

    labels = np.zeros((64, 160, 160), np.uint8)
    labels[20:40, 30:90, 40:100] = 1
    labels[25:30, 40:50, 50:60] = 2
    labels[33:35, 70:74, 80:83] = 2
    geometry = ImageGeometry(spacing=(0.8, 0.8, 2.0))
    assert value_bounding_box(labels, 2) == bounding_box(labels == 2)
    assert value_bounding_box(labels, 3) is None
    lesion_report(labels, geometry)  # its imports done before tracing
    tracemalloc.start()
    try:
        report = lesion_report(labels, geometry)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report["lesion_count"] == 2
    assert report["liver_volume_ml"] == pytest.approx(20 * 60 * 60 * 0.8 * 0.8 * 2.0 / 1000.0)
    assert peak < 0.8 * labels.size, f"{peak / labels.size:.2f} bytes a voxel"  # 1.11 before


@pytest.mark.parametrize("option", ["--ct", "--probabilities"])
def test_measure_names_the_option_whose_file_does_not_exist(tmp_path, capsys, option):
    """A missing --ct or --probabilities file was 'Input ... does not exist' (the map's only after the CT and the
    labels had been read), where followup names its --baseline-ct: the option is named, before any reading."""
    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.io import write_label_map

    labels = np.zeros((3, 6, 6), np.uint8)
    labels[:, 1:5, 1:5] = 1
    write_label_map(tmp_path / "labels.nii.gz", labels, ImageGeometry(spacing=(1.0, 1.0, 1.0)))
    missing = tmp_path / "missing.nii.gz"
    code = main(["measure", str(tmp_path / "labels.nii.gz"), option, str(missing), "-o", str(tmp_path / "r.json")])
    assert code == 2 and f"error: {option} '{missing}' does not exist; check the path." in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_the_recist_sum_adds_the_targets_long_axes_not_their_short_ones():
    """Two bars one voxel wide in y, 20 and 15 voxels long in x (1 mm pixels, 2 mm slices): long axes 20 and 15 mm
    (19 and 14 mm between the end voxels' centres plus one pixel), short axes 1 mm. Both are targets (>= 10 mm), and
    the sum of diameters is 20 + 15 = 35 mm (their short axes would give 2 mm; a square's are equal to its long)."""
    labels = np.zeros((7, 30, 40), dtype=np.uint8)
    labels[1:6, 1:29, 1:39] = 1
    labels[2:5, 5, 5:25] = 2
    labels[2:5, 20, 5:20] = 2
    report = lesion_report(labels, ImageGeometry(spacing=(1.0, 1.0, 2.0)))
    assert [(d["long_axis_mm"], d["short_axis_mm"]) for d in report["lesions"]] == \
        [pytest.approx((20.0, 1.0)), pytest.approx((15.0, 1.0))]
    assert report["recist"]["target_lesion_ids"] == [1, 2]
    assert report["recist"]["sum_of_diameters_mm"] == pytest.approx(35.0)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_lesion_on_the_last_slice_row_or_column_touches_the_scan_edge_and_one_a_voxel_short_does_not(axis):
    """touches_scan_edge flags lesions the grid cuts at either end of every axis: a lesion whose box ends on the
    last index (stop == size) is cut; one ending a voxel before it is not (without a CT: no padding to border)."""
    shape = (8, 9, 10)
    flags = []
    for gap in (0, 1):
        labels = np.ones(shape, dtype=np.uint8)
        box = [slice(3, 6)] * 3
        box[axis] = slice(shape[axis] - 3 - gap, shape[axis] - gap)
        labels[tuple(box)] = 2
        flags.append(lesion_report(labels, ImageGeometry(spacing=(1.0, 1.0, 1.0)))["lesions"][0]["touches_scan_edge"])
    assert flags == [True, False]


def test_mean_hu_leaves_out_padding_below_minus_1500_hu_and_keeps_minus_1500():
    """Scanner padding lies below -1500 HU (validation.PADDING_BELOW_HU) and is left out of a lesion's mean_hu;
    -1500 itself is kept. An 8-voxel lesion at 40 HU with one voxel at -1500: (7 x 40 - 1500) / 8 = -152.5 HU;
    with that voxel at -1501 instead it is padding: 7 x 40 / 7 = 40 HU."""
    labels = np.ones((6, 6, 6), dtype=np.uint8)
    labels[2:4, 2:4, 2:4] = 2
    hu = np.full(labels.shape, 40, dtype=np.int16)
    means = []
    for edge_hu in (-1500, -1501):
        hu[2, 2, 2] = edge_hu
        means.append(lesion_report(labels, ImageGeometry(spacing=(1.0, 1.0, 1.0)), hu_zyx=hu)["lesions"][0]["mean_hu"])
    assert means == [pytest.approx(-152.5), pytest.approx(40.0)]
