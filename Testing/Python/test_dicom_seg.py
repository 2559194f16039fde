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
from LiverTumorSegLib.dicom_seg import (dicom_series_files, is_dicom_seg, read_dicom_seg,  # noqa: E402
                                        source_series_files, write_dicom_seg)
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


def test_source_series_of_a_folder_or_one_file_and_refusal_for_nifti(series, tmp_path):
    folder, _, _ = series
    files = dicom_series_files(folder)
    assert sorted(source_series_files(folder)) == sorted(files)
    assert sorted(source_series_files(files[1])) == sorted(files)
    with pytest.raises(InputError, match="not DICOM"):
        source_series_files(DATA / "ct3slice_ct.nii.gz")
