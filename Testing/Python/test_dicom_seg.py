"""DICOM SEG: write from a label map on a real CT series (made from Testing/Data/ct3slice_ct.nii.gz at test
time), read back with highdicom (segments, SNOMED CT codes, source references, voxels), and read by
read_label_map / measure / evaluate."""
import json
from pathlib import Path

import numpy as np
import pytest

hd = pytest.importorskip("highdicom")
pydicom = pytest.importorskip("pydicom")

from LiverTumorSegLib.cli import main  # noqa: E402
from LiverTumorSegLib.dicom_seg import (check_dicom_seg_input, dicom_series_files, is_dicom_seg,  # noqa: E402
                                        read_dicom_seg, write_dicom_seg)
from LiverTumorSegLib.errors import InputError, LabelError, OutputExistsError  # noqa: E402
from LiverTumorSegLib.io import read_label_map, read_volume, write_label_map  # noqa: E402

from dicom_helpers import write_ct_series  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "Data"


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """(folder, CT read from the DICOM series, label map 0/1/2 on it) from the real 3-slice CT."""
    nifti = read_volume(DATA / "ct3slice_ct.nii.gz")
    folder = tmp_path_factory.mktemp("dicom") / "ct"
    write_ct_series(folder, nifti)
    ct = read_volume(folder)
    labels = read_label_map(DATA / "ct3slice_liver_seg.nii.gz", reference=nifti).array.copy()
    labels[1, 200:230, 150:172] = 2  # a tumor in the middle slice, asymmetric on purpose
    labels[2, 300:305, 300:303] = 2  # a second, separate lesion
    return folder, ct, labels


def test_series_made_from_the_nifti_reads_back_identically(series):
    folder, ct, _ = series
    nifti = read_volume(DATA / "ct3slice_ct.nii.gz")
    assert np.array_equal(ct.array, nifti.array) and ct.geometry.almost_equal(nifti.geometry)
    assert ct.meta["modality"] == "CT"


def test_round_trip_highdicom_reads_both_segments_codes_and_voxels(series, tmp_path):
    folder, ct, labels = series
    files = dicom_series_files(folder)
    path = write_dicom_seg(tmp_path / "result.dcm", labels, ct.geometry, files, model_name="default")
    assert is_dicom_seg(path) and not is_dicom_seg(files[0])
    seg = hd.seg.segread(str(path))
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    liver, tumor = seg.get_segment_description(1), seg.get_segment_description(2)
    assert (liver.SegmentLabel, tumor.SegmentLabel) == ("Liver", "Liver tumor")
    assert (liver.segmented_property_type.value, liver.segmented_property_type.scheme_designator) == ("10200004", "SCT")
    assert tumor.segmented_property_type.value == "108369006"          # Neoplasm
    assert tumor.segmented_property_category.value == "49755003"       # Morphologically Altered Structure
    assert [c.value for c in tumor.anatomic_regions] == ["10200004"]   # ... of the liver
    assert liver.algorithm_type == hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
    # references the source series and shares its patient, study and frame of reference
    source = pydicom.dcmread(str(files[0]), stop_before_pixels=True)
    assert seg.StudyInstanceUID == source.StudyInstanceUID and seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert seg.PatientID == source.PatientID and seg.SeriesInstanceUID != source.SeriesInstanceUID
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    assert referenced == {str(pydicom.dcmread(str(f), stop_before_pixels=True).SOPInstanceUID) for f in files}
    # voxels: highdicom's own volume, per segment, equals the label map (slices in our (z, y, x) order)
    volume = seg.get_volume(combine_segments=False)
    stack = np.asarray(volume.array)
    if volume.affine[2, 0] < 0:  # highdicom stacks slices top-down here; ours go bottom-up (superior last)
        stack = stack[::-1]
    assert np.array_equal(stack[..., 0] > 0, labels == 1) and np.array_equal(stack[..., 1] > 0, labels == 2)
    # our reader: same voxels, same geometry as the CT series
    back = read_dicom_seg(path)
    assert np.array_equal(back.array, labels) and back.geometry.almost_equal(ct.geometry)
    assert back.meta["format"] == "dicom-seg"
    with pytest.raises(OutputExistsError):
        write_dicom_seg(tmp_path / "result.dcm", labels, ct.geometry, files)


def test_read_label_map_measure_and_evaluate_read_the_seg(series, tmp_path, capsys):
    folder, ct, labels = series
    path = write_dicom_seg(tmp_path / "seg.dcm", labels, ct.geometry, dicom_series_files(folder))
    via_io = read_label_map(path, reference=ct)
    assert np.array_equal(via_io.array, labels)
    assert main(["measure", str(path), "--ct", str(folder), "-o", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["lesion_count"] == 2 and report["lesions"][0]["voxel_count"] == 30 * 22
    assert report["lesions"][0]["mean_hu"] is not None
    reference = write_label_map(tmp_path / "ref.nii.gz", labels, ct.geometry)
    assert main(["evaluate", "--pred", str(path), "--ref", str(reference), "-o", str(tmp_path / "eval")]) == 0
    import csv

    row = next(csv.DictReader((tmp_path / "eval" / "cases.csv").open()))
    assert float(row["dice_liver"]) == pytest.approx(1.0) and float(row["dice_tumor"]) == pytest.approx(1.0)
    capsys.readouterr()


def test_seg_that_omits_empty_frames_is_placed_on_the_reference_grid(series, tmp_path):
    folder, ct, labels = series
    only_middle = np.zeros_like(labels)
    only_middle[1] = labels[1]
    datasets = [pydicom.dcmread(str(f)) for f in dicom_series_files(folder)]
    datasets.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    metastasis = hd.seg.SegmentDescription(
        segment_number=1, segment_label="Metastasis",
        segmented_property_category=hd.sr.CodedConcept("49755003", "SCT", "Morphologically Altered Structure"),
        segmented_property_type=hd.sr.CodedConcept("14799000", "SCT", "Metastasis"), algorithm_type="MANUAL")
    # another tool's SEG: one tumor segment numbered 1, empty frames omitted
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=(only_middle == 2).astype(np.uint8), segmentation_type="BINARY",
        segment_descriptions=[metastasis], series_instance_uid=hd.UID(), series_number=9,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="x", manufacturer_model_name="x",
        software_versions="1", device_serial_number="1", omit_empty_frames=True)
    assert int(seg.NumberOfFrames) == 1
    path = tmp_path / "other.dcm"
    seg.save_as(str(path))
    back = read_dicom_seg(path, reference=ct)
    assert back.shape_zyx == ct.shape_zyx
    assert np.array_equal(back.array, np.where(only_middle == 2, 2, 0))  # "Metastasis" label -> tumor
    assert not back.meta.get("warnings")
    # without its CT the grid holds only the SEG's one frame: the lesion on it looked cut by the scan's edge and
    # was left out of the RECIST targets, without a word (the output-format audit)
    alone = read_dicom_seg(path)
    assert alone.shape_zyx[0] == 1
    (said,) = alone.meta["warnings"]
    assert "covers 1 slice(s) but references 3 source images" in said and "--ct" in said
    assert not read_dicom_seg(write_dicom_seg(tmp_path / "ours.dcm", labels, ct.geometry,
                                              dicom_series_files(folder))).meta.get("warnings")


def test_a_seg_of_an_enhanced_ct_without_its_empty_frames_says_so_when_read_alone(tmp_path):
    """A SEG of a multi-frame (Enhanced) CT references one instance, so counting referenced instances never found
    frames left out: a tumor-only SEG without its empty frames, measured without --ct, dropped its RECIST target as
    'cut by the scan's edge' without a word. Its frames' source frame numbers tell now."""
    from LiverTumorSegLib.dicom_seg import segment_descriptions
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    from dicom_helpers import write_enhanced_ct

    ct_volume = CTVolume(np.full((12, 16, 16), 40, np.int16), ImageGeometry(spacing=(1.0, 1.0, 2.0)))
    path = write_enhanced_ct(tmp_path / "enhanced.dcm", ct_volume)
    source = pydicom.dcmread(str(path))
    labels = np.zeros((12, 16, 16), np.uint8)
    labels[:10, 2:14, 2:14] = 1  # the liver ends two slices before the scan
    labels[4:8, 5:10, 5:10] = 2  # a tumor on slices 4-7 of 12

    tumor = hd.seg.SegmentDescription(
        segment_number=1, segment_label="Liver tumor", algorithm_type="MANUAL",
        segmented_property_category=hd.sr.CodedConcept("49755003", "SCT", "Morphologically Altered Structure"),
        segmented_property_type=hd.sr.CodedConcept("108369006", "SCT", "Neoplasm"))

    def seg_of(pixels, segments, omit, name):
        hd.seg.Segmentation(source_images=[source], pixel_array=pixels, segmentation_type="BINARY",
                            segment_descriptions=segment_descriptions() if segments == 2 else [tumor],
                            series_instance_uid=hd.UID(), series_number=9, sop_instance_uid=hd.UID(),
                            instance_number=1, manufacturer="x", manufacturer_model_name="x", software_versions="1",
                            device_serial_number="1", omit_empty_frames=omit).save_as(str(tmp_path / name))
        return read_dicom_seg(tmp_path / name)

    tumor_only = seg_of((labels == 2).astype(np.uint8), 1, True, "tumor.dcm")
    assert tumor_only.shape_zyx[0] == 4
    (said,) = tumor_only.meta["warnings"]
    assert "reference frames 5-8 of a multi-frame CT" in said and "--ct" in said
    inner = labels.copy()
    inner[0] = 0  # segments on neither end slice
    both = np.stack([inner == 1, inner == 2], axis=-1).astype(np.uint8)
    assert not seg_of(both, 2, False, "whole.dcm").meta.get("warnings")  # every frame, none on an end: silent
    top = labels.copy()
    top[8:] = 0  # liver ends at slice 8: frames 9-12 are empty and left out, frames 1-8 kept
    cut = seg_of(np.stack([top == 1, top == 2], axis=-1).astype(np.uint8), 2, True, "top.dcm")
    (said,) = cut.meta["warnings"]
    assert "frames 1-8 of a multi-frame CT, whose number of frames the SEG does not record" in said


def test_a_seg_of_a_series_with_a_wrong_spacing_between_slices_reads_back_on_the_slices_own_spacing(tmp_path):
    """A series whose SpacingBetweenSlices disagrees with its slice positions (GDCM wrote 1 into slices 3 mm apart):
    highdicom copied the 1 into the SEG, which read back as slices 1 mm apart, a third of the liver's volume, and
    was refused against its own series (the invariance audit). The SEG holds the positions' spacing now."""
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    geometry = ImageGeometry(spacing=(1.5, 1.5, 3.0), origin=(-20.0, 10.0, 50.0))
    ct_volume = CTVolume(np.full((6, 16, 16), 40, np.int16), geometry)
    files = write_ct_series(tmp_path / "ct", ct_volume)
    for f in files:
        ds = pydicom.dcmread(str(f))
        ds.SpacingBetweenSlices = "1"
        ds.save_as(str(f))
    ct = read_volume(tmp_path / "ct")
    assert ct.geometry.spacing[2] == pytest.approx(3.0)  # the reader goes by the positions
    labels = np.zeros(ct.shape_zyx, np.uint8)
    labels[1:5, 3:13, 3:13] = 1
    labels[2:4, 6:9, 6:9] = 2
    seg = write_dicom_seg(tmp_path / "seg.dcm", labels, ct.geometry, dicom_series_files(tmp_path / "ct"))
    alone = read_dicom_seg(seg)
    assert alone.geometry.spacing[2] == pytest.approx(3.0) and alone.shape_zyx == ct.shape_zyx  # empty frames kept
    np.testing.assert_array_equal(read_dicom_seg(seg, reference=ct).array, labels)


def test_errors_are_one_line_and_clear(series, tmp_path):
    folder, ct, labels = series
    files = dicom_series_files(folder)
    with pytest.raises(InputError, match="2 files but the label map 3 slices"):
        write_dicom_seg(tmp_path / "a.dcm", labels, ct.geometry, files[:2])
    with pytest.raises(InputError, match="pixels"):
        write_dicom_seg(tmp_path / "a.dcm", labels[:, :10], ct.geometry, files)
    with pytest.raises(LabelError, match="value 3"):
        write_dicom_seg(tmp_path / "a.dcm", labels + 1, ct.geometry, files)
    (tmp_path / "junk.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage" * 10)
    assert not is_dicom_seg(tmp_path / "junk.dcm")
    assert not list(tmp_path.glob("*.dcm*tmp*"))


def test_label_values_that_are_not_0_1_2_are_refused_not_truncated(series, tmp_path):
    """A float label map of 0.5 / 1.7 was written as 0 / 1 (cast to uint8: silently changed labels), -1 failed
    in highdicom ("Pixel array contains segments that lack descriptions") and NaN with "cannot convert float NaN
    to integer"; each is now a LabelError naming the value, and nothing is written. Whole-number floats are
    labels like any other (as write_label_map takes them)."""
    folder, ct, labels = series
    files = dicom_series_files(folder)
    for bad, shown in ((labels + 0.5, "non-integer value 0.5"), (np.where(labels == 1, 1.7, labels), "1.7"),
                       (labels.astype(np.int16) - 1, "value -1"), (np.full(labels.shape, np.nan), "nan")):
        with pytest.raises(LabelError, match=shown):
            write_dicom_seg(tmp_path / "bad.dcm", bad, ct.geometry, files)
        assert not list(tmp_path.iterdir())
    path = write_dicom_seg(tmp_path / "float.dcm", labels.astype(np.float32), ct.geometry, files)
    assert np.array_equal(read_dicom_seg(path, reference=ct).array, labels)


def test_a_failed_write_names_the_file_and_keeps_the_earlier_one(series, tmp_path, monkeypatch):
    """A full disk while pydicom writes the SEG said 'Cannot write: no space left on the disk (With tag
    (7FE0,0010) got exception: ...)': which file, the user had to guess. Now the InputError names it, and the
    earlier file stays."""
    import errno

    folder, ct, labels = series
    files = dicom_series_files(folder)
    earlier = tmp_path / "result.dcm"
    earlier.write_bytes(b"earlier result")

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "With tag (7FE0,0010) got exception: [Errno 28] No space left on device\n"
                                    "Traceback (most recent call last): ...")

    monkeypatch.setattr(pydicom.Dataset, "save_as", full_disk)
    with pytest.raises(InputError, match=r"Cannot write '.*result\.dcm': \[Errno 28\] No space left on device "
                                         r"\(is the disk full or read-only\?\); nothing was replaced\.$"):
        write_dicom_seg(earlier, labels, ct.geometry, files, overwrite=True)
    assert earlier.read_bytes() == b"earlier result" and sorted(tmp_path.iterdir()) == [earlier]


def _copy_series_without(folder: Path, target: Path, attributes) -> list:
    """``folder``'s files copied to ``target`` with ``attributes`` deleted from each; the copies' paths."""
    target.mkdir()
    copies = []
    for f in dicom_series_files(folder):
        ds = pydicom.dcmread(f)
        for attribute in attributes:
            delattr(ds, attribute)
        copies.append(target / Path(f).name)
        ds.save_as(str(copies[-1]))
    return copies


def test_deidentified_series_without_patient_and_study_type2_attributes_gets_a_seg(series, tmp_path, caplog):
    """De-identified series often drop Type 2 patient/study attributes; highdicom reads them as attributes and
    failed with an AttributeError. The SEG carries them empty; the source files are not changed."""
    import logging

    folder, ct, labels = series
    dropped = ("PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "StudyDate", "StudyTime",
               "ReferringPhysicianName", "PatientName")
    copies = _copy_series_without(folder, tmp_path / "deid", dropped)
    before = [c.read_bytes() for c in copies]
    with caplog.at_level(logging.INFO):
        path = write_dicom_seg(tmp_path / "deid.dcm", labels, ct.geometry, copies)
    assert [c.read_bytes() for c in copies] == before
    assert not [r for r in caplog.records if r.name.startswith("highdicom") and r.levelno < logging.WARNING]
    seg = hd.seg.segread(str(path))
    assert (seg.PatientBirthDate, seg.AccessionNumber, seg.StudyID) == ("", "", "")
    assert seg.PatientID == "LTS-TEST"
    assert np.array_equal(read_dicom_seg(path).array, labels)


def _copy_series_with(folder: Path, target: Path, values: dict) -> list:
    """``folder``'s files copied to ``target`` with each of ``values`` set; the copies' paths."""
    target.mkdir()
    copies = []
    for f in dicom_series_files(folder):
        ds = pydicom.dcmread(f)
        for attribute, value in values.items():
            setattr(ds, attribute, value)
        copies.append(target / Path(f).name)
        ds.save_as(str(copies[-1]))
    return copies


@pytest.mark.parametrize("values, left_out", [
    ({"SpecificCharacterSet": ["", "ISO 2022 IR 87"], "PatientName": "ヤマダ^タロウ=山田^太郎"}, []),
    ({"SpecificCharacterSet": ["", "ISO 2022 IR 149"], "PatientName": "Hong^Gildong=洪^吉洞=홍^길동"}, []),
    ({"SpecificCharacterSet": ""}, []),
    ({"PatientSex": "m"}, []),
    ({"PatientSex": "U", "PatientBirthDate": "19700101000000", "StudyDate": "20261301", "StudyTime": "250000"},
     ["PatientSex 'U'", "PatientBirthDate '19700101000000'", "StudyDate '20261301'", "StudyTime '250000'"]),
])
def test_a_source_header_highdicom_refuses_gets_a_seg_with_those_values_left_out(series, tmp_path, values, left_out):
    """Japanese and Korean series (Specific Character Set \\ISO 2022 IR 87 / 149), an empty character set, PatientSex
    'U' and dates that do not parse passed the check before the network, then highdicom refused the SEG: 'internal
    error: ValueError' after the whole run (the DICOM audit). Names keep their characters (in UTF-8); values a SEG
    may not hold are left empty, with a warning; the source files are not changed."""
    folder, ct, labels = series
    copies = _copy_series_with(folder, tmp_path / "src", values)
    before = [c.read_bytes() for c in copies]
    notes = []
    from LiverTumorSegLib.dicom_seg import prepare_seg_sources

    sources = prepare_seg_sources(copies, ct.geometry, ct.shape_zyx, notes)
    path = write_dicom_seg(tmp_path / "out.dcm", labels, ct.geometry, copies, sources=sources)
    assert [c.read_bytes() for c in copies] == before
    seg = pydicom.dcmread(str(path))
    if "PatientName" in values:
        assert str(seg.PatientName) == values["PatientName"] and seg.SpecificCharacterSet == "ISO_IR 192"
    if values.get("PatientSex") == "m":
        assert seg.PatientSex == "M"
    if left_out:
        (note,) = notes
        assert all(item in note for item in left_out) and "source series is not changed" in note
        assert (seg.PatientSex, seg.PatientBirthDate, seg.StudyDate, seg.StudyTime) == ("", "", "", "")
    else:
        assert notes == []
    assert np.array_equal(read_dicom_seg(path).array, labels)


def test_series_without_frame_of_reference_is_refused_with_what_to_write_instead(series, tmp_path):
    folder, ct, labels = series
    copies = _copy_series_without(folder, tmp_path / "nofor", ["FrameOfReferenceUID"])
    with pytest.raises(InputError, match=r"lacks FrameOfReferenceUID.*seg\.nrrd"):
        write_dicom_seg(tmp_path / "nofor.dcm", labels, ct.geometry, copies)
    assert not list(tmp_path.glob("nofor.dcm*"))


def test_a_dicom_seg_output_takes_a_dicom_folder_or_file_and_refuses_nifti(series):
    folder, _, _ = series
    check_dicom_seg_input(folder)
    check_dicom_seg_input(dicom_series_files(folder)[1])
    with pytest.raises(InputError, match="not DICOM"):
        check_dicom_seg_input(DATA / "ct3slice_ct.nii.gz")


def test_segment_dicom_folder_to_dicom_seg(series, tmp_path):
    """`segment DICOM_DIR -o result.dcm` (oracle engine: labels known from the CT's HU) writes a SEG that
    highdicom reads with both segments and their SNOMED codes; its voxels equal the NIfTI output's."""
    from LiverTumorSegLib.inference.api import segment_file
    from LiverTumorSegLib.inference.engine import SliceInferenceEngine
    from LiverTumorSegLib.phantom import make_phantom

    from inference_helpers import oracle_package, oracle_predictor

    phantom = make_phantom((6, 40, 44), (2.0, 2.5, 4.0), noise_hu=0.0, origin=(-40.0, 20.0, 100.0))
    write_ct_series(tmp_path / "dicom", phantom.ct, uid_seed=5)

    def engine():
        return SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=4,
                                    batch_predictor=oracle_predictor)

    result = segment_file(tmp_path / "dicom", tmp_path / "result.dcm", engine=engine())
    nifti = segment_file(tmp_path / "dicom", tmp_path / "result.nii.gz", engine=engine())
    assert (result.labels == 2).any() and (result.labels == 1).any()
    seg = hd.seg.segread(str(tmp_path / "result.dcm"))
    assert [seg.get_segment_description(n).segmented_property_type.value for n in (1, 2)] == ["10200004", "108369006"]
    assert seg.SeriesDescription.startswith("LiverTumorSeg")
    back = read_label_map(tmp_path / "result.dcm", reference=read_volume(tmp_path / "dicom"))
    assert np.array_equal(back.array, read_label_map(tmp_path / "result.nii.gz").array)
    assert np.array_equal(back.array, phantom.labels) and np.array_equal(nifti.labels, phantom.labels)
    with pytest.raises(InputError, match="not DICOM"):
        segment_file(DATA / "ct3slice_ct.nii.gz", tmp_path / "x.dcm", engine=engine())
    assert not (tmp_path / "x.dcm").exists()


def test_segment_cli_real_ct_series_with_a_model_writes_seg(series, tmp_path, capsys):
    """The real 3-slice CT as a DICOM series through the CLI with a (tiny, untrained) model package."""
    from inference_helpers import tiny_unet_package

    folder, ct, _ = series
    package = tiny_unet_package(tmp_path).path
    out = tmp_path / "result.dcm"
    assert main(["segment", str(folder), "-o", str(out), "--model", str(package), "--no-progress"]) == 0
    seg = hd.seg.segread(str(out))
    assert seg.segment_numbers == [1, 2] and int(seg.NumberOfFrames) == 2 * ct.shape_zyx[0]
    assert seg.get_segment_description(2).segmented_property_category.value == "49755003"
    assert main(["segment", str(DATA / "ct3slice_ct.nii.gz"), "-o", str(tmp_path / "y.dcm"),
                 "--model", str(package)]) == 2
    assert "not DICOM" in capsys.readouterr().err


def _oracle_engine(refuse: bool = False):
    from LiverTumorSegLib.inference.engine import SliceInferenceEngine

    from inference_helpers import oracle_package, oracle_predictor

    def predictor(x):
        assert not refuse, "the network ran although the SEG output could not be written"
        return oracle_predictor(x)

    return SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=4, batch_predictor=predictor)


def test_segment_warns_of_source_values_the_seg_leaves_out_and_writes_it(series, tmp_path):
    """segment's run: the warning on the console's log and in the result's warnings, the SEG written."""
    from LiverTumorSegLib.inference.api import segment_file

    folder, _, _ = series
    copies = _copy_series_with(folder, tmp_path / "src", {"PatientSex": "U"})
    result = segment_file(copies[0].parent, tmp_path / "result.dcm", engine=_oracle_engine())
    assert any("The DICOM SEG leaves out (empty) what the source series holds as PatientSex 'U'" in w
               for w in result.warnings)
    assert pydicom.dcmread(str(tmp_path / "result.dcm")).PatientSex == ""


def test_uneven_slice_gaps_get_a_seg_with_each_files_own_position_and_a_warning(tmp_path):
    """A series whose gaps vary a little (positions written to 0.1 mm, or jitter) is read on its mean spacing;
    the SEG writer demanded every position within 0.01 voxel of that grid and failed after the whole run,
    blaming the input. The reader's 'spacing varies' note also never reached the user."""
    from LiverTumorSegLib.inference.api import segment_file
    from LiverTumorSegLib.phantom import make_phantom

    phantom = make_phantom((6, 40, 44), (2.0, 2.5, 4.0), noise_hu=0.0, origin=(-40.0, 20.0, 100.0))
    files = write_ct_series(tmp_path / "dicom", phantom.ct, uid_seed=7)
    for k, shift in enumerate((0.0, 0.3, -0.2, 0.3, -0.2, 0.0)):  # gaps 3.5 .. 4.5 mm around 4 mm
        ds = pydicom.dcmread(str(files[k]))
        position = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [position[0], position[1], round(position[2] + shift, 1)]
        ds.save_as(str(files[k]))
    result = segment_file(tmp_path / "dicom", tmp_path / "result.dcm", engine=_oracle_engine())
    assert any("spacing" in w for w in result.warnings)
    nifti = segment_file(tmp_path / "dicom", tmp_path / "result.nii.gz", engine=_oracle_engine())
    seg = pydicom.dcmread(str(tmp_path / "result.dcm"))
    sources = {ds.SOPInstanceUID: [float(v) for v in ds.ImagePositionPatient]
               for ds in (pydicom.dcmread(str(f), stop_before_pixels=True) for f in files)}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        assert [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient] == pytest.approx(sources[uid])
    back = read_label_map(tmp_path / "result.dcm", reference=read_volume(tmp_path / "dicom"))
    assert np.array_equal(back.array, nifti.labels)
    assert "ContentCreatorName" in seg and seg.ContentCreatorName == ""  # Type 2: present, may be empty
    # without the series (evaluate against a label map) the uneven frames cannot be placed: the message says
    # what can be done (it said 'read it with its CT series as the reference', which evaluate cannot)
    with pytest.raises(InputError, match=r"not a regular 3D volume .*measure SEG --ct DICOM_FOLDER.*To evaluate it"):
        read_label_map(tmp_path / "result.dcm", reference=read_label_map(tmp_path / "result.nii.gz"))


def test_a_series_that_cannot_get_a_seg_is_refused_before_the_network(series, tmp_path):
    from LiverTumorSegLib.inference.api import segment_file

    folder, _, _ = series
    _copy_series_without(folder, tmp_path / "nofor", ["FrameOfReferenceUID"])
    with pytest.raises(InputError, match="lacks FrameOfReferenceUID"):
        segment_file(tmp_path / "nofor", tmp_path / "x.dcm", engine=_oracle_engine(refuse=True))
    assert not list(tmp_path.glob("x.dcm*"))


def test_series_number_stays_an_integer_string_and_a_seg_beside_its_ct_is_not_a_second_series(series, tmp_path):
    folder, ct, labels = series
    copies = _copy_series_without(folder, tmp_path / "big", [])
    for path in copies:
        ds = pydicom.dcmread(str(path))
        ds.SeriesNumber = 2147483000
        ds.save_as(str(path))
    write_dicom_seg(tmp_path / "big" / "seg.dcm", labels, ct.geometry, copies)
    assert int(pydicom.dcmread(str(tmp_path / "big" / "seg.dcm")).SeriesNumber) == 2 ** 31 - 1
    # the folder now holds the CT and its SEG: the CT is read without asking which series
    again = read_volume(tmp_path / "big")
    assert again.meta["modality"] == "CT" and np.array_equal(again.array, ct.array)


def test_a_label_or_probability_map_written_into_the_input_series_folder_is_refused(series, tmp_path):
    """'segment ct -o ct/seg.nii.gz' wrote a NIfTI into the DICOM series' folder, and every later run on that folder
    (even the same command with --overwrite) refused it as neither one series nor a batch folder: the tool's own
    output made the series unsegmentable (the file-safety audit). Refused before any work, in single and batch runs;
    a DICOM SEG there is written as before, and a map beside the folder too."""
    from LiverTumorSegLib.inference.api import segment_file
    from LiverTumorSegLib.inference.batch import find_cases

    folder, _, _ = series
    ct = tmp_path / "ct"
    _copy_series_without(folder, ct, [])
    listed = sorted(p.name for p in ct.iterdir())
    for output, probabilities in ((ct / "seg.nii.gz", None), (ct / "seg.nrrd", None),
                                  (tmp_path / "seg.nii.gz", ct / "p.nii.gz")):
        with pytest.raises(InputError, match="would be written into the input DICOM series' folder"):
            segment_file(ct, output, probability_path=probabilities, engine=_oracle_engine())
    with pytest.raises(InputError, match="would be written into the input DICOM series' folder") as refused:
        segment_file(ct / listed[0], ct / "seg.nii.gz", engine=_oracle_engine())  # a series given by one file
    # the advice names the file beside the folder (it named 'ct_seg.nii.gz' in the working folder: the audit)
    import os
    assert f"(e.g. -o {os.path.relpath(tmp_path / 'ct_seg.nii.gz')})" in str(refused.value)
    assert sorted(p.name for p in ct.iterdir()) == listed
    segment_file(ct, tmp_path / "seg.nii.gz", engine=_oracle_engine())
    segment_file(ct, ct / "result.dcm", engine=_oracle_engine())
    (tmp_path / "cases.csv").write_text(f"image,case_id\n{ct},d1\n")
    with pytest.raises(InputError, match="is the folder of case 'd1' \\(a DICOM series\\)"):
        find_cases(tmp_path / "cases.csv", tmp_path / "out", probability_folder=ct)


def test_an_output_that_is_a_slice_beside_an_input_given_as_one_dicom_file_is_refused_even_with_overwrite(
        series, tmp_path):
    """A series given by one of its files ('segment ct/IM0003.dcm -o ct/IM0004.dcm --overwrite') is guarded as its
    folder is: the other slice is not replaced by the SEG, nor is the file given as the input."""
    from LiverTumorSegLib.inference.api import segment_file

    folder, _, _ = series
    copies = _copy_series_without(folder, tmp_path / "ct", [])
    given, victim = copies[1], copies[2]
    before = {path: path.read_bytes() for path in (given, victim)}
    with pytest.raises(InputError, match="existing DICOM file in the input's folder, possibly a slice"):
        segment_file(given, victim, overwrite=True, engine=_oracle_engine())
    with pytest.raises(InputError, match="are the same file"):
        segment_file(given, given, overwrite=True, engine=_oracle_engine())
    assert {path: path.read_bytes() for path in (given, victim)} == before


def test_an_output_that_is_a_slice_of_the_input_series_is_refused_even_with_overwrite(series, tmp_path):
    """'segment DICOM_FOLDER -o DICOM_FOLDER/<a slice>.dcm --overwrite' replaced a slice of the series with the SEG
    (the outputs were compared with the folder only); re-running into an earlier result.dcm there still works."""
    from LiverTumorSegLib.inference.api import segment_file

    folder, _, _ = series
    copies = _copy_series_without(folder, tmp_path / "ct", [])
    victim = copies[len(copies) // 2]
    before = victim.read_bytes()
    with pytest.raises(InputError, match="existing DICOM file in the input's folder, possibly a slice"):
        segment_file(tmp_path / "ct", victim, overwrite=True, engine=_oracle_engine())
    assert victim.read_bytes() == before
    segment_file(tmp_path / "ct", tmp_path / "ct" / "result.dcm", engine=_oracle_engine())
    segment_file(tmp_path / "ct", tmp_path / "ct" / "result.dcm", overwrite=True, engine=_oracle_engine())


def _phantom_series(folder: Path, shape=(6, 40, 44), uid_seed: int = 7):
    """(files in slice order, CT read back, phantom) of a small phantom written as a DICOM series (4 mm slices)."""
    from LiverTumorSegLib.phantom import make_phantom

    phantom = make_phantom(shape, (2.0, 2.5, 4.0), noise_hu=0.0, origin=(-40.0, 20.0, 100.0))
    files = write_ct_series(folder, phantom.ct, uid_seed=uid_seed)
    return files, read_volume(folder), phantom


def test_a_one_slice_seg_keeps_the_slices_thickness(tmp_path):
    """highdicom wrote SpacingBetweenSlices 1.0 for one source slice: measure read a 4 mm slice as 1 mm (a quarter
    of the volume) and measure --ct / evaluate refused the SEG's own series."""
    from LiverTumorSegLib.inference.lesion_report import lesion_report

    files, ct, phantom = _phantom_series(tmp_path / "ct", shape=(1, 40, 44))
    source = pydicom.dcmread(str(files[0]))
    if "SpacingBetweenSlices" in source:  # a single slice with SliceThickness alone, as CT series carry it
        del source.SpacingBetweenSlices
        source.save_as(str(files[0]))
    labels = phantom.labels[:1]
    assert (labels >= 1).any()
    path = write_dicom_seg(tmp_path / "seg.dcm", labels, ct.geometry, files)
    alone = read_dicom_seg(path)
    assert alone.geometry.spacing == pytest.approx(ct.geometry.spacing)
    expected_ml = float((labels >= 1).sum()) * 2.0 * 2.5 * 4.0 / 1000
    assert lesion_report(alone.array, alone.geometry)["liver_volume_ml"] == pytest.approx(expected_ml)
    on_ct = read_label_map(path, reference=ct)
    assert np.array_equal(on_ct.array, labels) and on_ct.geometry.almost_equal(ct.geometry)


def test_files_whose_orientation_differs_by_header_rounding_get_a_seg(tmp_path):
    """ImageOrientationPatient of 5 decimals in some files and 6 in others: highdicom refused them after the whole
    network run ('internal error: ... shared orientation'); a real difference is refused before it."""
    import pydicom

    from LiverTumorSegLib.dicom_seg import prepare_seg_sources

    files, ct, phantom = _phantom_series(tmp_path / "ct")
    ds = pydicom.dcmread(str(files[2]))
    ds.ImageOrientationPatient = ["1.000000", "0.0000001", "0", "0", "0.9999999", "0"]
    ds.save_as(str(files[2]))
    path = write_dicom_seg(tmp_path / "seg.dcm", phantom.labels, ct.geometry, files)
    assert np.array_equal(read_label_map(path, reference=ct).array, phantom.labels)
    ds.ImageOrientationPatient = ["1", "0.01", "0", "0", "1", "0"]
    ds.save_as(str(files[2]))
    with pytest.raises(InputError, match="differ in ImageOrientationPatient"):
        prepare_seg_sources(files, ct.geometry, phantom.labels.shape)


def test_a_seg_of_a_long_oblique_series_with_rounded_orientation_is_read_on_its_own_series(tmp_path):
    """An oblique series (20 degrees about z, 10 about x) of 60 slices of 6 mm whose ImageOrientationPatient is written
    to 4 decimals: the SEG's grid, its first slice extrapolated over 354 mm along the rounded normal, lay 0.013 mm
    from its recorded position, and our own SEG was refused against its own series ('made for another image')."""
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    a, b = np.radians(20.0), np.radians(10.0)
    about_z = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    about_x = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(b), -np.sin(b)], [0.0, np.sin(b), np.cos(b)]])
    geometry = ImageGeometry(spacing=(3.0, 3.0, 6.0), origin=(178.0, -11.3, 94.3),
                             direction=tuple((about_x @ about_z @ np.diag([-1.0, -1.0, 1.0])).ravel()))
    files = write_ct_series(tmp_path / "ct", CTVolume(np.full((60, 6, 7), 40, np.int16), geometry), uid_seed=11)
    for name in files:
        ds = pydicom.dcmread(str(name))
        ds.ImageOrientationPatient = [f"{float(v):.4f}" for v in ds.ImageOrientationPatient]
        ds.ImagePositionPatient = [f"{float(v):.2f}" for v in ds.ImagePositionPatient]
        ds.save_as(str(name))
    ct = read_volume(tmp_path / "ct")
    labels = np.zeros(ct.shape_zyx, np.uint8)
    labels[5:40, 1:4, 2:6] = 1
    labels[0, 0, 0] = labels[20:23, 2, 3] = 2
    path = write_dicom_seg(tmp_path / "seg.dcm", labels, ct.geometry, ct.meta["files"])
    on_ct = read_label_map(path, reference=ct)
    assert np.array_equal(on_ct.array, labels) and on_ct.geometry.almost_equal(ct.geometry)
    alone = read_dicom_seg(path)
    assert np.array_equal(alone.array, labels) and alone.geometry.almost_equal(ct.geometry, tol=1e-3)


def test_a_seg_refused_against_another_grid_says_how_far_the_grids_differ(series, tmp_path):
    """A reference turned by 3 degrees (same spacing and origin) was refused with its spacing and origin printed
    identical to the SEG's ("its grid (spacing (0.811, ...), origin (-235.2, ...)) is not the reference's (spacing
    (0.811, ...), origin (-235.2, ...))"), which read as a contradiction: the direction was not shown."""
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    folder, ct, labels = series
    path = write_dicom_seg(tmp_path / "seg.dcm", labels, ct.geometry, dicom_series_files(folder))
    turn = np.radians(3.0)
    rotation = np.array([[np.cos(turn), -np.sin(turn), 0.0], [np.sin(turn), np.cos(turn), 0.0], [0.0, 0.0, 1.0]])
    turned = ImageGeometry(spacing=ct.geometry.spacing, origin=ct.geometry.origin,
                           direction=tuple((rotation @ ct.geometry.direction_matrix).ravel()))
    with pytest.raises(LabelError, match=r"they differ by up to 0 mm in spacing, 0 mm in origin and 0.052\d* in "
                                         r"direction cosines \(allowed: 0.01\)\. Use the SEG made for this image"):
        read_dicom_seg(path, reference=CTVolume(np.zeros(ct.shape_zyx, np.int16), turned, source="turned.nii.gz"))


def test_a_model_name_fits_the_segs_long_string_fields(tmp_path):
    """A package named after a long file stem made AlgorithmName 66 characters (invalid) or, over 64, failed after
    the network; 'für' was written as a Latin-1 byte in a SEG without a character set."""
    from LiverTumorSegLib.dicom_seg import algorithm_name, long_string

    assert long_string("Lebermodell für Tumoren") == "Lebermodell fur Tumoren"
    assert long_string("a\\b") == "ab" and len(long_string("x" * 100)) == 64 and long_string("x" * 100).endswith("...")
    assert algorithm_name("") == "LiverTumorSeg" and len(algorithm_name("m" * 80)) == 64
    files, ct, phantom = _phantom_series(tmp_path / "ct")
    for name in ("m" * 67, "Lebermodell für Tumoren\\v2"):
        path = write_dicom_seg(tmp_path / "seg.dcm", phantom.labels, ct.geometry, files, model_name=name,
                               overwrite=True)
        seg = pydicom.dcmread(str(path))
        texts = [seg.ManufacturerModelName] + [str(a.AlgorithmName) for s in seg.SegmentSequence
                                               for a in s.SegmentationAlgorithmIdentificationSequence]
        assert all(len(t) <= 64 and t.isascii() and "\\" not in t for t in texts), texts


def _label_map_seg(tmp_path):
    """``(a LABELMAP highdicom Segmentation of the phantom's labels (segments 0, 1, 2), its CT volume, the
    phantom)``, the CT series written to ``tmp_path/ct``; the SEG not yet saved."""
    from LiverTumorSegLib.dicom_seg import segment_descriptions

    files, ct, phantom = _phantom_series(tmp_path / "ct")
    datasets = [pydicom.dcmread(str(f)) for f in files]
    seg = hd.seg.Segmentation(source_images=datasets, pixel_array=phantom.labels.astype(np.uint8),
                              segmentation_type="LABELMAP", segment_descriptions=segment_descriptions("x", "1"),
                              series_instance_uid=hd.UID(), series_number=99, sop_instance_uid=hd.UID(),
                              instance_number=1, manufacturer="m", manufacturer_model_name="m",
                              software_versions="1", device_serial_number="1")
    return seg, ct, phantom


def test_a_label_map_seg_is_read_like_a_binary_one(tmp_path):
    """A LABELMAP SEG (Label Map Segmentation Storage, 1.2.840.10008.5.1.4.1.1.66.7) was 'not a readable DICOM
    file', though the module says it reads them."""
    seg, ct, phantom = _label_map_seg(tmp_path)
    seg.save_as(str(tmp_path / "labelmap.dcm"))
    assert str(seg.SOPClassUID) == "1.2.840.10008.5.1.4.1.1.66.7"
    assert is_dicom_seg(tmp_path / "labelmap.dcm")
    assert np.array_equal(read_label_map(tmp_path / "labelmap.dcm", reference=ct).array, phantom.labels)


@pytest.mark.parametrize("frames, said", [(2 ** 31 - 1, "says it has 2147483647 frames"),
                                          (2, "says it has 2 frames"), (0, "0 frame")])
def test_a_seg_whose_frame_count_is_not_its_frames_is_refused_before_its_pixels_are_read(series, tmp_path, frames,
                                                                                         said):
    """NumberOfFrames edited to 2**31 - 1 grew `measure` to 24 GB until the kernel killed it; edited to fewer than
    the SEG holds, it was read as a smaller label map without a word (the fuzzing audit)."""
    folder, ct, labels = series
    path = write_dicom_seg(tmp_path / "result.dcm", labels, ct.geometry, dicom_series_files(folder))
    good = read_dicom_seg(path).array
    assert (good == labels).all()
    dataset = pydicom.dcmread(str(path))
    assert int(dataset.NumberOfFrames) > 2
    dataset.NumberOfFrames = frames
    dataset.save_as(str(tmp_path / "edited.dcm"))
    with pytest.raises(InputError, match=said):
        read_dicom_seg(tmp_path / "edited.dcm")


def test_a_seg_whose_frames_reference_an_undefined_segment_is_refused_naming_frame_and_segment(tmp_path):
    """The tumor frames of a SEG edited to reference segment 3 (its SegmentSequence defines 1 and 2) were dropped
    by highdicom without a word: the 52 tumor voxels read as background, and measure reported no lesion (the
    fuzzing audit). The label map would be incomplete, so the file is refused."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    files, ct, phantom = _phantom_series(tmp_path / "ct")
    path = write_dicom_seg(tmp_path / "seg.dcm", phantom.labels, ct.geometry, files)
    assert np.bincount(read_dicom_seg(path).array.ravel(), minlength=3)[2] == 52
    dataset = pydicom.dcmread(str(path))
    frames = dataset.PerFrameFunctionalGroupsSequence
    numbers = [int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber) for f in frames]
    assert numbers == [1] * 6 + [2] * 6
    for frame in frames[6:]:
        frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber = 3
    dataset.save_as(str(tmp_path / "undefined.dcm"))
    message = (f"DICOM SEG '{tmp_path / 'undefined.dcm'}': frame 7 references segment 3, which its SegmentSequence "
               f"does not define (it defines segments 1, 2; 6 of its 12 frames reference undefined segments); those "
               f"voxels would be left out of the label map. The file is damaged: export the segmentation again.")
    for read in (read_dicom_seg, lambda p: read_label_map(p, reference=ct)):
        with pytest.raises(InputError) as excinfo:
            read(tmp_path / "undefined.dcm")
        assert str(excinfo.value) == message
    frames[6].SegmentIdentificationSequence[0].ReferencedSegmentNumber = 2  # one frame left: no count
    frames[7].SegmentIdentificationSequence[0].ReferencedSegmentNumber = 2
    frames[8].SegmentIdentificationSequence[0].ReferencedSegmentNumber = 2
    frames[9].SegmentIdentificationSequence[0].ReferencedSegmentNumber = 2
    frames[10].SegmentIdentificationSequence[0].ReferencedSegmentNumber = 2
    dataset.save_as(str(tmp_path / "one.dcm"))
    with pytest.raises(InputError, match=r"frame 12 references segment 3, which its SegmentSequence does not define "
                                         r"\(it defines segments 1, 2\); those voxels"):
        read_dicom_seg(tmp_path / "one.dcm")
    for frame in frames:  # the segment named once for all frames (shared functional groups)
        del frame.SegmentIdentificationSequence
    shared = Dataset()
    shared.ReferencedSegmentNumber = 3
    dataset.SharedFunctionalGroupsSequence[0].SegmentIdentificationSequence = Sequence([shared])
    dataset.save_as(str(tmp_path / "shared.dcm"))
    with pytest.raises(InputError, match=r"its frames \(SharedFunctionalGroupsSequence\) reference segment 3, which "
                                         r"its SegmentSequence does not define \(it defines segments 1, 2\)"):
        read_dicom_seg(tmp_path / "shared.dcm")


def test_a_label_map_seg_holding_an_undefined_segment_number_is_refused(tmp_path):
    """A LABELMAP SEG stores segment numbers as pixel values; with segment 2 (the tumor) taken out of its
    SegmentSequence, its 52 tumor voxels read as background without a word."""
    seg, ct, phantom = _label_map_seg(tmp_path)
    assert [int(s.SegmentNumber) for s in seg.SegmentSequence] == [0, 1, 2]
    seg.SegmentSequence = pydicom.sequence.Sequence(list(seg.SegmentSequence)[:2])
    seg.save_as(str(tmp_path / "labelmap.dcm"))
    frames = pydicom.dcmread(str(tmp_path / "labelmap.dcm")).pixel_array  # (frames, rows, columns), file order
    first = 1 + int(np.flatnonzero((frames == 2).any(axis=(1, 2)))[0])
    with pytest.raises(InputError, match=rf"frame {first} holds pixel value 2, but its SegmentSequence defines no "
                                         rf"segment 2 \(it defines segments 0, 1\); those voxels would be left out"):
        read_dicom_seg(tmp_path / "labelmap.dcm")


def test_a_valid_label_map_seg_is_checked_by_each_frames_maximum_not_by_sorting_its_values(tmp_path, monkeypatch):
    """The undefined-segment check sorted every frame's values (np.unique): 0.09 s more on a 0.54 s read of a
    120-frame 512 x 512 LABELMAP SEG. With segments 0..n defined a frame's maximum says it; other numberings (2 and
    5 defined) and a frame past the maximum are still judged value by value, naming the frame and value."""
    from LiverTumorSegLib import dicom_seg
    seg, ct, phantom = _label_map_seg(tmp_path)
    path = tmp_path / "labelmap.dcm"
    seg.save_as(str(path))
    frames = pydicom.dcmread(str(path)).pixel_array
    first_tumor = 1 + int(np.flatnonzero((frames == 2).any(axis=(1, 2)))[0])
    sorted_frames = []
    real_unique = np.unique

    def counting_unique(array, *args, **kwargs):
        sorted_frames.append(np.shape(array))
        return real_unique(array, *args, **kwargs)

    monkeypatch.setattr(np, "unique", counting_unique)
    assert dicom_seg._undefined_label_value(path, {0, 1, 2}) == (None, None)
    assert sorted_frames == []
    assert dicom_seg._undefined_label_value(path, {0, 1}) == (first_tumor, 2)
    assert dicom_seg._undefined_label_value(path, {0, 2, 5}) == (1, 1)  # not 0..n: value by value
    assert dicom_seg._undefined_label_value(path, {0, 1, 2, 5}) == (None, None)


@pytest.mark.parametrize("old", ["0.22.0", "0.27.0"])
def test_a_highdicom_older_than_0_28_is_named_not_an_internal_error(series, tmp_path, monkeypatch, old):
    """highdicom 0.22 (the last for pydicom 2 and Python 3.9) lacks CIELabColor.from_rgb, and 0.23-0.27 lack
    highdicom.enum.SpecificCharacterSetValues (and 0.23 Segmentation.get_volume): writing a SEG with them ended in
    'internal error: AttributeError' or 'ImportError' (0.22.0 seen on Python 3.9; 0.23-0.27 installed one by one by
    the minimal-install audit). The version is checked first, and nothing is written."""
    folder, ct, labels = series
    monkeypatch.setattr(hd, "__version__", old)
    with pytest.raises(InputError, match=r"DICOM SEG needs highdicom 0\.28 or newer \(with pydicom 3, Python >= "
                                         rf"3\.10\); this Python has highdicom {old.replace('.', '[.]')}\..*"
                                         r"-o result\.seg\.nrrd"):
        write_dicom_seg(tmp_path / "result.dcm", labels, ct.geometry, dicom_series_files(folder), model_name="x")
    assert not (tmp_path / "result.dcm").exists()
    monkeypatch.setattr(hd, "__version__", "0.28.0")
    assert is_dicom_seg(write_dicom_seg(tmp_path / "result.dcm", labels, ct.geometry, dicom_series_files(folder),
                                        model_name="x"))
