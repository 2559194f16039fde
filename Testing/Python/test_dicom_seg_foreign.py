"""DICOM SEG against other series and other tools (an audit's reproductions, each failing before its fix): a SEG
of another frame of reference or grid is refused, not placed; segments are mapped by their codes first (a Liver
segment labelled "Liver without tumor", a Neoplasm of the kidney); FRACTIONAL SEGs are read at 0.5; series without
the Part 10 preamble, with mixed frame-of-reference UIDs, or with positions rounded on an oblique grid."""
from pathlib import Path

import numpy as np
import pytest

hd = pytest.importorskip("highdicom")
pydicom = pytest.importorskip("pydicom")

from LiverTumorSegLib.cli import main  # noqa: E402
from LiverTumorSegLib.dicom_seg import dicom_series_files, read_dicom_seg, write_dicom_seg  # noqa: E402
from LiverTumorSegLib.errors import LabelError  # noqa: E402
from LiverTumorSegLib.io import read_volume, write_label_map  # noqa: E402
from LiverTumorSegLib.phantom import make_phantom  # noqa: E402
from LiverTumorSegLib.volume import CTVolume, ImageGeometry  # noqa: E402

from dicom_helpers import write_ct_series  # noqa: E402

C = hd.sr.CodedConcept


def small_ct(origin=(-10.0, 20.0, 100.0), spacing=(1.5, 2.0, 3.0), shape=(5, 20, 24), direction=np.eye(3), seed=0):
    rng = np.random.default_rng(seed)
    return CTVolume(rng.integers(-200, 200, size=shape).astype(np.int16),
                    ImageGeometry(spacing=spacing, origin=origin, direction=tuple(np.asarray(direction).ravel())))


def small_labels(shape):
    labels = np.zeros(shape, np.uint8)
    labels[1, 2:9, 3:15] = 1
    labels[1, 4:6, 5:8] = 2
    labels[3, 10:12, 1:4] = 2
    return labels


@pytest.fixture()
def series_a(tmp_path):
    write_ct_series(tmp_path / "A", small_ct(), uid_seed=1)
    ct = read_volume(tmp_path / "A")
    labels = small_labels(ct.shape_zyx)
    seg = write_dicom_seg(tmp_path / "segA.dcm", labels, ct.geometry, dicom_series_files(tmp_path / "A"))
    return ct, labels, seg


def test_a_seg_of_another_series_or_grid_is_refused_not_placed(series_a, tmp_path, capsys):
    ct, labels, seg = series_a
    write_ct_series(tmp_path / "B", small_ct(origin=(-10.0, 20.0, 400.0), seed=1), uid_seed=2)
    with pytest.raises(LabelError, match="made for another scan"):
        read_dicom_seg(seg, reference=read_volume(tmp_path / "B"))
    code = main(["measure", str(seg), "--ct", str(tmp_path / "B"), "-o", str(tmp_path / "r.json")])
    assert code == 2 and "FrameOfReferenceUID" in capsys.readouterr().err  # was: exit 0, "liver 0.0 mL"
    finer = small_ct(spacing=(0.75, 1.0, 3.0), shape=(5, 40, 48), seed=2)  # same place, finer grid
    write_label_map(tmp_path / "ref.nii.gz", np.zeros(finer.shape_zyx, np.uint8), finer.geometry)
    code = main(["evaluate", "--pred", str(seg), "--ref", str(tmp_path / "ref.nii.gz"), "-o", str(tmp_path / "e"),
                 "--no-progress"])
    assert code == 2 and "is not the reference's" in capsys.readouterr().err  # was: resampled, Dice 0.75
    np.testing.assert_array_equal(read_dicom_seg(seg, reference=ct).array, labels)  # its own series: as written


def test_a_seg_is_placed_on_its_ct_stored_in_another_axis_order(series_a):
    """The dcm2niix NIfTI of a series stores its rows reversed: the same voxel centres. A label map file on that
    grid was reoriented, but a SEG was refused as 'not the reference's' grid (measure SEG --ct ct.nii.gz)."""
    ct, labels, seg = series_a
    g = ct.geometry
    flipped = CTVolume(np.asarray(ct.array)[:, ::-1].copy(), ImageGeometry(
        spacing=g.spacing, origin=tuple(g.index_to_lps((0, ct.shape_zyx[1] - 1, 0))),
        direction=tuple((g.direction_matrix @ np.diag([1.0, -1.0, 1.0])).ravel())))
    np.testing.assert_array_equal(read_dicom_seg(seg, reference=flipped).array, labels[:, ::-1])
    shifted = CTVolume(flipped.array, ImageGeometry(spacing=g.spacing, origin=tuple(
        np.add(flipped.geometry.origin, (0.5 * g.spacing[0], 0.0, 0.0))), direction=flipped.geometry.direction))
    with pytest.raises(LabelError, match="is not the reference's"):  # half a voxel off: another grid
        read_dicom_seg(seg, reference=shifted)


def test_a_seg_reaching_outside_its_reference_is_refused_not_cut(series_a):
    """A reference holding only some of the SEG's slices (a NIfTI cut from the series): the SEG was resampled
    onto it and its other slices dropped without a word."""
    ct, labels, seg = series_a
    g = ct.geometry
    cut = CTVolume(np.asarray(ct.array)[1:].copy(), ImageGeometry(
        spacing=g.spacing, origin=tuple(g.index_to_lps((0, 0, 1))), direction=g.direction))
    with pytest.raises(LabelError, match="is not the reference's"):
        read_dicom_seg(seg, reference=cut)


def test_segments_are_mapped_by_their_codes_first(series_a, tmp_path):
    ct, labels, _ = series_a
    kidney = np.zeros(ct.shape_zyx, bool)
    kidney[3, 14:18, 16:22] = True
    datasets = sorted((pydicom.dcmread(str(f)) for f in dicom_series_files(tmp_path / "A")),
                      key=lambda d: int(d.InstanceNumber))
    neoplasm = dict(segmented_property_category=C("49755003", "SCT", "Morphologically Altered Structure"),
                    segmented_property_type=C("108369006", "SCT", "Neoplasm"), algorithm_type="MANUAL")
    descriptions = [
        hd.seg.SegmentDescription(segment_number=1, segment_label="Liver without tumor", algorithm_type="MANUAL",
                                  segmented_property_category=C("123037004", "SCT", "Anatomical Structure"),
                                  segmented_property_type=C("10200004", "SCT", "Liver")),
        hd.seg.SegmentDescription(segment_number=2, segment_label="Liver tumor",
                                  anatomic_regions=[C("10200004", "SCT", "Liver")], **neoplasm),
        hd.seg.SegmentDescription(segment_number=3, segment_label="Renal tumor",
                                  anatomic_regions=[C("64033007", "SCT", "Kidney")], **neoplasm)]
    pixels = np.stack([labels == 1, labels == 2, kidney], axis=-1).astype(np.uint8)
    _binary_seg(datasets, pixels, descriptions, "other tool").save_as(str(tmp_path / "other.dcm"))
    read = read_dicom_seg(tmp_path / "other.dcm", reference=ct)
    np.testing.assert_array_equal(read.array, labels)  # liver 1 (was 0: 'tumor' in its label), no kidney tumor
    assert [s["value"] for s in read.meta["segments"]] == [1, 2, None]

    fractional = hd.seg.Segmentation(source_images=datasets, pixel_array=(pixels[..., :2] * 0.7).astype(np.float32),
                                     segmentation_type="FRACTIONAL", segment_descriptions=descriptions[:2],
                                     series_instance_uid=hd.UID(), series_number=9, sop_instance_uid=hd.UID(),
                                     instance_number=1, manufacturer="other tool", manufacturer_model_name="x",
                                     software_versions="1", device_serial_number="1", max_fractional_value=255,
                                     omit_empty_frames=False)
    fractional.save_as(str(tmp_path / "fractional.dcm"))
    for reference in (None, ct):  # was refused: 'not a regular 3D volume' / 'database table is locked'
        np.testing.assert_array_equal(read_dicom_seg(tmp_path / "fractional.dcm", reference=reference).array, labels)


def _binary_seg(datasets, pixels, descriptions, manufacturer):
    """A BINARY DICOM SEG of ``pixels`` ((frames, rows, columns, segments) 0/1) on ``datasets``, made by highdicom as
    another tool (``manufacturer``) would write it."""
    return hd.seg.Segmentation(source_images=datasets, pixel_array=pixels, segmentation_type="BINARY",
                               segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=9,
                               sop_instance_uid=hd.UID(), instance_number=1, manufacturer=manufacturer,
                               manufacturer_model_name="x", software_versions="1", device_serial_number="1")


def test_a_reference_seg_without_its_empty_frames_is_placed_on_the_predictions_grid(series_a, tmp_path, capsys):
    """dcmqi's and OHIF's SEGs leave out empty frames (highdicom's default too): given as evaluate's --ref, it was read
    as the slices it holds, and the prediction on the CT's whole grid was refused as "made for another image" (given
    as --pred, the same pair scored Dice 1). It is placed on the prediction's grid now, as a --pred SEG is."""
    import csv

    from LiverTumorSegLib.dicom_seg import segment_descriptions

    ct, labels, _ = series_a
    datasets = sorted((pydicom.dcmread(str(f)) for f in dicom_series_files(tmp_path / "A")),
                      key=lambda d: int(d.InstanceNumber))
    pixels = np.stack([labels == 1, labels == 2], axis=-1).astype(np.uint8)  # slices 1 and 3 of 5 hold segments
    _binary_seg(datasets, pixels, segment_descriptions(), "other tool").save_as(str(tmp_path / "ref.dcm"))
    assert read_dicom_seg(tmp_path / "ref.dcm").shape_zyx[0] < ct.shape_zyx[0]  # frames left out: a sub-grid
    write_label_map(tmp_path / "pred.nii.gz", labels, ct.geometry)
    for pred, ref, out in (("pred.nii.gz", "ref.dcm", "e1"), ("ref.dcm", "pred.nii.gz", "e2")):
        assert main(["evaluate", "--pred", str(tmp_path / pred), "--ref", str(tmp_path / ref), "-o",
                     str(tmp_path / out), "--no-surface", "--no-plots", "--no-progress"]) == 0, capsys.readouterr().err
        (row,) = list(csv.DictReader(open(tmp_path / out / "cases.csv", newline="")))
        assert float(row["dice_liver"]) == 1.0 and float(row["dice_tumor"]) == 1.0
    (tmp_path / "refs").mkdir()  # folders are paired by case name, which a .dcm has none of: said, not "0 files"
    (tmp_path / "refs" / "case1.dcm").write_bytes((tmp_path / "ref.dcm").read_bytes())
    (tmp_path / "preds").mkdir()
    write_label_map(tmp_path / "preds" / "case1.nii.gz", labels, ct.geometry)
    assert main(["evaluate", "--pred", str(tmp_path / "preds"), "--ref", str(tmp_path / "refs"), "-o",
                 str(tmp_path / "e4"), "--no-progress"]) == 2
    assert "DICOM SEG files (1: '" in capsys.readouterr().err
    shifted = np.roll(labels, 1, axis=0)  # one slice off: measured as such, not refused or read on the SEG's slices
    write_label_map(tmp_path / "pred2.nii.gz", shifted, ct.geometry)
    assert main(["evaluate", "--pred", str(tmp_path / "pred2.nii.gz"), "--ref", str(tmp_path / "ref.dcm"), "-o",
                 str(tmp_path / "e3"), "--no-surface", "--no-plots", "--no-progress"]) == 0
    (row,) = list(csv.DictReader(open(tmp_path / "e3" / "cases.csv", newline="")))
    assert float(row["dice_liver"]) == 0.0


@pytest.mark.parametrize("liver_code, tumor_code, region", [
    (("T-62000", "SRT", "Liver"), ("M-80003", "SRT", "Neoplasm, Primary"), ("T-62000", "SRT", "Liver")),
    (("181268008", "SCT", "Entire liver"), ("14799000", "SCT", "Neoplasm, metastatic"), None),
    (("85756007", "SCT", "Tissue"), ("M-80000", "SRT", "Neoplasm"), None),  # a 'Liver' of another code: by label
    # Slicer 5.6's tumor type is Mass (it has no Neoplasm): read as neither and scored as background (DICOM SEG audit)
    (("10200004", "SCT", "Liver"), ("4147007", "SCT", "Mass"), ("10200004", "SCT", "Liver")),
    (("10200004", "SCT", "Liver"), ("52988006", "SCT", "Lesion"), None)])
def test_legacy_and_other_snomed_liver_and_neoplasm_codes_are_read(series_a, tmp_path, liver_code, tumor_code, region):
    """SEGs from before 2019 (dcmqi, older Slicer, TCIA) code the liver as SNOMED-RT T-62000 and tumors as
    M-8000x; others use SCT Entire liver. Only SCT 10200004 counted: the liver segment 'Liver' was left out
    ('neither liver nor tumor'), a tumor of the SRT region 'Liver' counted as another organ's, and one labelled
    'Segment 2' was dropped too."""
    ct, labels, _ = series_a
    datasets = [pydicom.dcmread(str(f)) for f in dicom_series_files(tmp_path / "A")]
    descriptions = [
        hd.seg.SegmentDescription(segment_number=1, segment_label="Liver", algorithm_type="MANUAL",
                                  segmented_property_category=C("T-D000A", "SRT", "Anatomical Structure"),
                                  segmented_property_type=C(*liver_code)),
        hd.seg.SegmentDescription(segment_number=2, segment_label="Segment 2", algorithm_type="MANUAL",
                                  segmented_property_category=C("M-01000", "SRT", "Morphologically Altered Structure"),
                                  segmented_property_type=C(*tumor_code),
                                  anatomic_regions=[C(*region)] if region else None)]
    pixels = np.stack([labels == 1, labels == 2], axis=-1).astype(np.uint8)
    _binary_seg(datasets, pixels, descriptions, "older tool").save_as(str(tmp_path / "legacy.dcm"))
    read = read_dicom_seg(tmp_path / "legacy.dcm", reference=ct)
    np.testing.assert_array_equal(read.array, labels)
    assert [s["value"] for s in read.meta["segments"]] == [1, 2] and not read.meta.get("warnings")


def _segment_to_seg(folder: Path, out: Path, capsys) -> tuple:
    code = main(["segment", str(folder), "-o", str(out), "--no-progress", "--no-postprocess"])
    return code, capsys.readouterr().err


def test_series_without_preamble_or_slice_thickness_gets_a_seg_and_its_slices_are_not_overwritten(tmp_path, capsys):
    phantom = make_phantom((4, 32, 32), (3.0, 3.0, 5.0), noise_hu=0.0)
    files = write_ct_series(tmp_path / "ct", phantom.ct)
    for name in files:
        ds = pydicom.dcmread(str(name))
        del ds.file_meta
        ds.preamble = None
        del ds.SliceThickness  # SimpleITK writes none; highdicom read it after the whole run (AttributeError)
        pydicom.dcmwrite(str(name), ds, enforce_file_format=False, implicit_vr=True, little_endian=True)
    code, err = _segment_to_seg(tmp_path / "ct", tmp_path / "result.dcm", capsys)
    assert code == 0 and "internal error" not in err  # was: exit 1, InvalidDicomError
    assert str(pydicom.dcmread(str(tmp_path / "result.dcm")).SOPClassUID) == "1.2.840.10008.5.1.4.1.1.66.4"
    slice_file = sorted(files)[1]
    before = Path(slice_file).read_bytes()
    code = main(["segment", str(tmp_path / "ct"), "-o", str(slice_file), "--overwrite", "--no-progress"])
    assert code == 2 and "possibly a slice" in capsys.readouterr().err and Path(slice_file).read_bytes() == before


def test_mixed_frame_of_reference_is_refused_before_the_network_and_rounded_oblique_positions_fit(tmp_path, capsys):
    phantom = make_phantom((4, 32, 32), (3.0, 3.0, 5.0), noise_hu=0.0)
    files = sorted(write_ct_series(tmp_path / "ct", phantom.ct))
    ds = pydicom.dcmread(str(files[2]))
    ds.FrameOfReferenceUID = pydicom.uid.generate_uid()
    ds.save_as(str(files[2]))
    code, err = _segment_to_seg(tmp_path / "ct", tmp_path / "result.dcm", capsys)
    assert code == 2 and "differ in FrameOfReferenceUID" in err and "internal error" not in err
    assert not (tmp_path / "result.dcm").exists()

    angle = np.radians(20.0)
    tilted = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    ct = CTVolume(phantom.ct.array, ImageGeometry(spacing=(3.0, 3.0, 5.0), origin=(-40.0, -30.0, 10.0),
                                                  direction=tuple(tilted.ravel())))
    files = write_ct_series(tmp_path / "oblique", ct)
    for name in files:  # positions rounded to 0.1 mm, as many scanners write them
        ds = pydicom.dcmread(str(name))
        ds.ImagePositionPatient = [round(float(v), 1) for v in ds.ImagePositionPatient]
        ds.save_as(str(name))
    code, err = _segment_to_seg(tmp_path / "oblique", tmp_path / "oblique.dcm", capsys)
    assert code == 0 and (tmp_path / "oblique.dcm").exists(), err  # was: "lies outside the label map's grid"


def test_segment_label_words_follow_the_seg_nrrd_rule_negations_included():
    """A SEG segment of neither the Liver nor the Neoplasm code is read by its label's words. 'Tumor-free
    parenchyma' was read as tumor (the words had no negations there, unlike .seg.nrrd names)."""
    from types import SimpleNamespace

    from LiverTumorSegLib.dicom_seg import _label_of_segment

    def described(label):
        return SimpleNamespace(segmented_property_type=SimpleNamespace(value="85756007"),  # SCT Tissue
                               SegmentLabel=label, anatomic_regions=None)

    assert _label_of_segment(described("Tumor-free parenchyma")) is None
    # the liver's own words, as .seg.nrrd names are read since 0.6.17: the parenchyma, a reader's corrected liver
    assert _label_of_segment(described("Liver without lesion")) == 1
    assert _label_of_segment(described("Liver (corrected)")) == 1 and _label_of_segment(described("No liver")) is None
    assert _label_of_segment(described("Metastasis 2")) == 2
    assert _label_of_segment(described("LIVER TUMOR -_1")) == 2


@pytest.mark.parametrize("thickness", ["missing", "empty"])
def test_a_seg_of_a_series_without_slice_thickness_has_one_and_highdicom_reads_it(tmp_path, thickness):
    """A series whose SliceThickness is empty (de-identified) or missing (SimpleITK) gave a SEG whose shared Pixel
    Measures had no SliceThickness value: highdicom's Segmentation.from_dataset refused it ("Sequence does not have
    the required attributes for a Pixel Measures Sequence"), and so did measure, evaluate and followup. It now holds
    the slice spacing, and a SEG already written without one is read."""
    ct = small_ct()
    files = write_ct_series(tmp_path / "ct", ct)
    for name in files:
        ds = pydicom.dcmread(str(name))
        if thickness == "missing":
            del ds.SliceThickness
        else:
            ds.SliceThickness = ""
        ds.save_as(str(name))
    read = read_volume(tmp_path / "ct")
    labels = small_labels(read.shape_zyx)
    out = write_dicom_seg(tmp_path / "seg.dcm", labels, read.geometry, files)

    dataset = pydicom.dcmread(str(out))
    measures = dataset.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert float(measures.SliceThickness) == pytest.approx(3.0)
    volume = hd.seg.Segmentation.from_dataset(dataset).get_volume(combine_segments=True)
    assert volume.spacing == pytest.approx((3.0, 2.0, 1.5))  # highdicom's (slice, row, column) order
    np.testing.assert_array_equal(read_dicom_seg(out, reference=read).array, labels)

    del measures.SliceThickness  # as SEGs were written before this fix
    dataset.save_as(str(tmp_path / "old.dcm"))
    with pytest.raises(AttributeError):
        hd.seg.Segmentation.from_dataset(pydicom.dcmread(str(tmp_path / "old.dcm")))
    np.testing.assert_array_equal(read_dicom_seg(tmp_path / "old.dcm", reference=read).array, labels)
    assert read_dicom_seg(tmp_path / "old.dcm").geometry.spacing == pytest.approx((1.5, 2.0, 3.0))


def test_a_one_part_patient_name_is_copied_into_the_seg_without_a_python_warning(tmp_path):
    """A de-identified series' PatientName 'ANONYMOUS' made `segment -o result.dcm` print highdicom's UserWarning
    ('... is unlikely to represent the intended person name ... use the pydicom.valuerep.PersonName
    .from_named_components() method') with a site-packages path: advice on pydicom's API, not for a user. The name
    is copied unchanged and nothing is printed."""
    import warnings

    files = write_ct_series(tmp_path / "ct", small_ct())
    for name in files:
        ds = pydicom.dcmread(str(name))
        ds.PatientName = "ANONYMOUS"
        ds.save_as(str(name))
    read = read_volume(tmp_path / "ct")
    labels = small_labels(read.shape_zyx)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = write_dicom_seg(tmp_path / "seg.dcm", labels, read.geometry, files)
    assert not [str(w.message) for w in caught if "person name" in str(w.message)]
    dataset = pydicom.dcmread(str(out))
    assert str(dataset.PatientName) == "ANONYMOUS"
    np.testing.assert_array_equal(read_dicom_seg(out, reference=read).array, labels)


@pytest.mark.parametrize("attribute", ["SegmentationType", "SegmentSequence", "SharedFunctionalGroupsSequence",
                                       "DimensionIndexSequence"])
def test_a_seg_lacking_an_attribute_every_seg_holds_is_named_as_damaged(series_a, tmp_path, attribute):
    """Without SegmentationType or DimensionIndexSequence the read failed inside highdicom and was called 'not a
    regular 3D volume ... e.g. made from a series with slightly uneven slice gaps' ('no such column:
    FrameLUT.ReferencedSegmentNumber'); without a sequence it was "'Segmentation' object has no attribute ...",
    with nothing of what to do."""
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.io import read_label_map

    ct, _, seg = series_a
    dataset = pydicom.dcmread(str(seg))
    delattr(dataset, attribute)
    dataset.save_as(str(tmp_path / "damaged.dcm"))
    for reference in (None, ct):
        with pytest.raises(InputError) as refused:
            read_label_map(tmp_path / "damaged.dcm", reference=reference)
        assert str(refused.value) == (f"DICOM SEG '{tmp_path / 'damaged.dcm'}' lacks {attribute}, which every DICOM "
                                      f"SEG holds; the file is damaged or was written incompletely: export the "
                                      f"segmentation again.")


def test_a_ct_slice_read_as_a_seg_is_named_as_no_seg(series_a, tmp_path):
    """It was "Cannot read DICOM SEG '...': Dataset is not a Segmentation.." (two full stops, no advice)."""
    from LiverTumorSegLib.errors import InputError

    ct_file = dicom_series_files(tmp_path / "A")[0]
    with pytest.raises(InputError) as refused:
        read_dicom_seg(ct_file)
    assert str(refused.value) == (f"'{ct_file}' is not a DICOM SEG (its SOPClassUID is 1.2.840.10008.5.1.4.1.1.2); "
                                  f"give the segmentation's own file.")


def test_a_seg_of_another_organ_only_or_with_cut_pixel_data_is_refused_saying_so(series_a, tmp_path):
    """A SEG of the spleen alone names its segments and the codes read; one whose Pixel Data was cut to half says
    how many bytes it holds of how many."""
    from LiverTumorSegLib.errors import InputError

    ct, labels, seg = series_a
    datasets = [pydicom.dcmread(str(f)) for f in dicom_series_files(tmp_path / "A")]
    spleen = [hd.seg.SegmentDescription(segment_number=1, segment_label="Spleen", algorithm_type="MANUAL",
                                        segmented_property_category=C("123037004", "SCT", "Anatomical Structure"),
                                        segmented_property_type=C("78961009", "SCT", "Spleen"))]
    _binary_seg(datasets, (labels > 0).astype(np.uint8)[..., None], spleen, "x").save_as(str(tmp_path / "sp.dcm"))
    with pytest.raises(LabelError, match=r"has no liver or liver-tumor segment \(segments: 'Spleen'\); its segment "
                                         r"types must be SNOMED CT Liver \(10200004\), or Neoplasm \(108369006\), "
                                         r"Mass \(4147007\) or Lesion \(52988006\)"):
        read_dicom_seg(tmp_path / "sp.dcm", reference=ct)
    dataset = pydicom.dcmread(str(seg))
    full = len(dataset.PixelData)
    dataset.PixelData = dataset.PixelData[:full // 2]
    dataset.save_as(str(tmp_path / "cut.dcm"))
    with pytest.raises(InputError, match=f"{full} bytes of pixel data, but holds {full // 2} .*it is truncated or its "
                                         f"header is wrong. Export the segmentation again"):
        read_dicom_seg(tmp_path / "cut.dcm")
    # the file itself cut short (a copy broken off): the Pixel Data element still states its whole length, which
    # passed, and the SEG was called "not a regular 3D volume" with advice (--ct) that led to another wrong message
    whole = seg.read_bytes()
    (tmp_path / "broken_off.dcm").write_bytes(whole[:len(whole) - full // 2])
    with pytest.raises(InputError, match=f"{full} bytes of pixel data, but holds {full - full // 2} .*it is truncated "
                                         f"or its header is wrong"):
        read_dicom_seg(tmp_path / "broken_off.dcm")
    with pytest.raises(InputError, match="it is truncated or its header is wrong"):
        read_dicom_seg(tmp_path / "broken_off.dcm", reference=ct)


def test_touching_tumor_segments_of_a_seg_are_named_as_in_a_seg_nrrd(series_a, tmp_path):
    """A SEG with one segment per lesion (as OHIF writes them) whose two lesions touch was measured as one lesion
    without a word; a .seg.nrrd's touching tumor segments were named (the measure audit). Apart, nothing is said."""
    ct, labels, _ = series_a
    datasets = sorted((pydicom.dcmread(str(f)) for f in dicom_series_files(tmp_path / "A")),
                      key=lambda d: int(d.InstanceNumber))
    neoplasm = dict(segmented_property_category=C("49755003", "SCT", "Morphologically Altered Structure"),
                    segmented_property_type=C("108369006", "SCT", "Neoplasm"), algorithm_type="MANUAL")
    liver = hd.seg.SegmentDescription(segment_number=1, segment_label="Liver", algorithm_type="MANUAL",
                                      segmented_property_category=C("123037004", "SCT", "Anatomical Structure"),
                                      segmented_property_type=C("10200004", "SCT", "Liver"))
    descriptions = [liver] + [hd.seg.SegmentDescription(segment_number=n, segment_label=f"Lesion {n - 1}", **neoplasm)
                              for n in (2, 3)]
    first, second = np.zeros(ct.shape_zyx, bool), np.zeros(ct.shape_zyx, bool)
    first[1, 3:6, 4:8] = True
    for gap, name in ((0, "touch.dcm"), (1, "apart.dcm")):
        second[:] = False
        second[1, 6 + gap:9, 4:8] = True
        pixels = np.stack([labels >= 1, first, second], axis=-1).astype(np.uint8)
        _binary_seg(datasets, pixels, descriptions, "other tool").save_as(str(tmp_path / name))
    touching = read_dicom_seg(tmp_path / "touch.dcm", reference=ct).meta.get("warnings", [])
    assert any("'touch.dcm' has tumor segments that touch ('Lesion 1 (segment 2)' and 'Lesion 2 (segment 3)')" in w
               for w in touching), touching
    assert not any("touch" in w for w in read_dicom_seg(tmp_path / "apart.dcm", reference=ct).meta.get("warnings", []))


def test_a_seg_segment_left_out_is_said_on_stderr_as_a_seg_nrrd_s(series_a, tmp_path, caplog):
    """A segment of neither liver nor tumor (a 'Kidney' mass: its region another organ) was noted only in the read's
    warnings, which evaluate does not print: the console said nothing while its voxels were scored as background (the
    DICOM SEG audit). It is logged, as the .seg.nrrd reader logs one."""
    import logging

    ct, labels, _ = series_a
    datasets = [pydicom.dcmread(str(f)) for f in dicom_series_files(tmp_path / "A")]
    descriptions = [
        hd.seg.SegmentDescription(segment_number=1, segment_label="Liver", algorithm_type="MANUAL",
                                  segmented_property_category=C("123037004", "SCT", "Anatomical Structure"),
                                  segmented_property_type=C("10200004", "SCT", "Liver")),
        hd.seg.SegmentDescription(segment_number=2, segment_label="Mass", algorithm_type="MANUAL",
                                  segmented_property_category=C("49755003", "SCT", "Morphologically Altered Structure"),
                                  segmented_property_type=C("4147007", "SCT", "Mass"),
                                  anatomic_regions=[C("64033007", "SCT", "Kidney")])]
    pixels = np.stack([labels >= 1, labels == 2], axis=-1).astype(np.uint8)
    _binary_seg(datasets, pixels, descriptions, "older tool").save_as(str(tmp_path / "kidney.dcm"))
    with caplog.at_level(logging.WARNING):
        read = read_dicom_seg(tmp_path / "kidney.dcm", reference=ct)
    said = "segment 2 'Mass' is neither liver nor tumor; ignored"
    assert said in caplog.text and read.meta["logged_warnings"] == [said]
    assert not (read.array == 2).any()
    # a generic Mass or Lesion code without a region, labelled as another organ's, is left out too (the review: it
    # was read as liver tumor without a word)
    from LiverTumorSegLib.dicom_seg import _label_of_segment

    for code, label, expected in ((("4147007", "SCT", "Mass"), "Kidney mass", None),
                                  (("52988006", "SCT", "Lesion"), "Lung nodule lesion", None),
                                  (("52988006", "SCT", "Lesion"), "Lesion 3", 2),
                                  (("4147007", "SCT", "Mass"), "Segment_2", 2)):
        description = hd.seg.SegmentDescription(
            segment_number=2, segment_label=label, algorithm_type="MANUAL",
            segmented_property_category=C("49755003", "SCT", "Morphologically Altered Structure"),
            segmented_property_type=C(*code))
        assert _label_of_segment(description) == expected, label


def test_a_label_map_on_another_plane_or_pixel_size_is_refused_not_written_transposed(tmp_path):
    """A square label map stored with i and j swapped (the same anatomy in another axis order) passed the checks of
    slice size and first-pixel position, and its frames were written transposed (a lesion 100 pixels off); one of
    0.8 mm pixels on a series of 1.5 mm was written too (the DICOM SEG audit). Both are refused; the series' own
    grid writes."""
    from LiverTumorSegLib.errors import InputError

    square = small_ct(spacing=(1.5, 1.5, 3.0), shape=(5, 20, 20))
    write_ct_series(tmp_path / "S", square, uid_seed=4)
    ct = read_volume(tmp_path / "S")
    files = dicom_series_files(tmp_path / "S")
    labels = small_labels(ct.shape_zyx)
    g, d = ct.geometry, ct.geometry.direction_matrix
    swapped = ImageGeometry(spacing=(g.spacing[1], g.spacing[0], g.spacing[2]), origin=g.origin,
                            direction=tuple(d[:, [1, 0, 2]].ravel()))
    with pytest.raises(InputError, match=r"ImageOrientationPatient\), but the label map's i and j axes run along "
                                         r".*not on the series' grid"):
        write_dicom_seg(tmp_path / "swapped.dcm", labels.transpose(0, 2, 1).copy(), swapped, files)
    finer = ImageGeometry(spacing=(0.8, 0.8, g.spacing[2]), origin=g.origin, direction=g.direction)
    with pytest.raises(InputError, match=r"has pixels of 1.5 x 1.5 mm \(PixelSpacing\), but the label map's are "
                                         r"0.8 x 0.8 mm"):
        write_dicom_seg(tmp_path / "finer.dcm", labels, finer, files)
    assert not (tmp_path / "swapped.dcm").exists() and not (tmp_path / "finer.dcm").exists()
    written = write_dicom_seg(tmp_path / "own.dcm", labels, g, files)
    np.testing.assert_array_equal(read_dicom_seg(written, reference=ct).array, labels)


def test_a_series_whose_orientation_is_rounded_within_the_readers_tolerance_gets_its_seg(tmp_path):
    """ImageOrientationPatient whose vectors' squared lengths are off by 9.5e-4 (within what the reader accepts and
    normalises) must not be refused by the SEG writer's plane check as 'not on the series' grid' (the review found
    series the reader takes that the check refused); the header's vectors are compared as the reader takes them."""
    import math

    from LiverTumorSegLib.dicom_seg import prepare_seg_sources

    angle = math.radians(20.0)
    turned = np.array([[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0],
                       [0.0, 0.0, 1.0]])
    write_ct_series(tmp_path / "R", small_ct(shape=(5, 20, 20), direction=turned), uid_seed=7)
    files = dicom_series_files(tmp_path / "R")
    for name in files:
        ds = pydicom.dcmread(str(name))
        cosines = [float(v) for v in ds.ImageOrientationPatient]
        scale = math.sqrt(1 + 9.5e-4)  # squared lengths off by 9.5e-4: the reader takes it
        ds.ImageOrientationPatient = [f"{v * scale:.8f}" for v in cosines]
        ds.save_as(str(name))
    ct = read_volume(tmp_path / "R")
    datasets, slices = prepare_seg_sources(files, ct.geometry, ct.shape_zyx)
    assert sorted(slices) == list(range(5))
