"""Dataset discovery (LiTS, MSD, 3D-IRCADb DICOM, CSV), label checks, canonical loading and patient splits."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from LiverTumorSegLib.errors import InputError, LabelError
from LiverTumorSegLib.io import write_label_map, write_volume
from LiverTumorSegLib.phantom import make_phantom
from LiverTumorSegLib.training.datasets import (Case, check_dataset_labels, detect_format, discover_cases,
                                                label_content_warnings, load_case, remap_labels)
from LiverTumorSegLib.training.splits import holdout_split, kfold_splits, select_split
from text_file_helpers import WINDOWS_CSV_FORMATS, windows_csv_bytes


def _phantom(seed=0, shape=(6, 24, 24)):
    return make_phantom(shape_zyx=shape, spacing_xyz=(4.0, 4.0, 5.0), seed=seed)


def _write_pair(image_path: Path, label_path: Path, seed=0, labels=None):
    ph = _phantom(seed)
    image_path.parent.mkdir(parents=True, exist_ok=True)
    label_path.parent.mkdir(parents=True, exist_ok=True)
    write_volume(image_path, ph.ct, overwrite=True)
    write_label_map(label_path, ph.labels if labels is None else labels, ph.ct.geometry, overwrite=True)
    return ph


# ----------------------------------------------------------------------------------------------- LiTS
def test_lits_kaggle_folders_are_paired_by_number(tmp_path):
    _write_pair(tmp_path / "volume_pt1" / "volume-0.nii", tmp_path / "segmentations" / "segmentation-0.nii")
    _write_pair(tmp_path / "volume_pt2" / "volume-12.nii", tmp_path / "segmentations" / "segmentation-12.nii", 1)
    assert detect_format(tmp_path) == "lits"
    cases = discover_cases(tmp_path)
    assert [c.case_id for c in cases] == ["lits-0", "lits-12"]
    assert cases[1].image_path.endswith("volume-12.nii") and cases[1].label_path.endswith("segmentation-12.nii")


def test_lits_missing_segmentation_is_a_clear_error(tmp_path):
    _write_pair(tmp_path / "volume-3.nii", tmp_path / "segmentation-3.nii")
    write_volume(tmp_path / "volume-4.nii", _phantom().ct)
    with pytest.raises(InputError, match=r"without a segmentation-N.nii: cases \['4'\]"):
        discover_cases(tmp_path, "lits")


# ----------------------------------------------------------------------------------------------- MSD
def test_msd_layout_uses_dataset_json_and_ignores_macos_files(tmp_path):
    for n in (1, 5):
        _write_pair(tmp_path / "imagesTr" / f"liver_{n}.nii.gz", tmp_path / "labelsTr" / f"liver_{n}.nii.gz", n)
    (tmp_path / "imagesTr" / "._liver_1.nii.gz").write_bytes(b"junk")
    (tmp_path / "dataset.json").write_text(json.dumps({"training": [
        {"image": "./imagesTr/liver_1.nii.gz", "label": "./labelsTr/liver_1.nii.gz"},
        {"image": "./imagesTr/liver_5.nii.gz", "label": "./labelsTr/liver_5.nii.gz"}]}))
    assert detect_format(tmp_path) == "msd"
    assert [c.case_id for c in discover_cases(tmp_path)] == ["liver_1", "liver_5"]


def test_msd_dataset_json_nested_thousands_deep_is_not_valid_json(tmp_path):
    """A damaged dataset.json of arrays nested 3000 deep was an 'internal error: RecursionError' in train."""
    _write_pair(tmp_path / "imagesTr" / "liver_1.nii.gz", tmp_path / "labelsTr" / "liver_1.nii.gz", 1)
    (tmp_path / "dataset.json").write_text('{"training": ' + "[" * 3000 + "]" * 3000 + "}")
    with pytest.raises(InputError, match=r"dataset.json' is not valid JSON: arrays or objects nested too deep"):
        discover_cases(tmp_path, "msd")


def test_msd_images_missing_from_dataset_json_are_named(tmp_path, caplog):
    for n in (1, 3):
        _write_pair(tmp_path / "imagesTr" / f"liver_{n}.nii.gz", tmp_path / "labelsTr" / f"liver_{n}.nii.gz", n)
    (tmp_path / "dataset.json").write_text(json.dumps({"training": [
        {"image": "./imagesTr/liver_1.nii.gz", "label": "./labelsTr/liver_1.nii.gz"}]}))
    with caplog.at_level("WARNING"):
        assert [c.case_id for c in discover_cases(tmp_path)] == ["liver_1"]
    assert "1 image(s)" in caplog.text and "liver_3.nii.gz" in caplog.text and "not used" in caplog.text
    (tmp_path / "imagesTr" / "liver_1.nii.gz").unlink()
    with pytest.raises(InputError, match="listed in dataset.json is missing. Restore it, or remove its entry"):
        discover_cases(tmp_path)


def test_nnunet_v2_raw_layout_pairs_channel_0000_with_its_case_label(tmp_path, caplog):
    """nnU-Net v2: imagesTr/CASE_0000.nii.gz, labelsTr/CASE.nii.gz, a dataset.json without a "training" list.
    It was read as MSD (label = the image's name) and refused with a hint that led to another error."""
    for case in ("liver_000", "liver_001"):
        _write_pair(tmp_path / "imagesTr" / f"{case}_0000.nii.gz", tmp_path / "labelsTr" / f"{case}.nii.gz")
    _write_pair(tmp_path / "imagesTr" / "liver_001_0001.nii.gz", tmp_path / "unused" / "x.nii.gz")  # a 2nd channel
    (tmp_path / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "numTraining": 2,
                                                       "labels": {"background": 0, "liver": 1, "tumor": 2},
                                                       "file_ending": ".nii.gz"}))
    with caplog.at_level("WARNING"):
        cases = discover_cases(tmp_path)
    assert [(c.case_id, Path(c.label_path).name) for c in cases] == [("liver_000", "liver_000.nii.gz"),
                                                                     ("liver_001", "liver_001.nii.gz")]
    assert "liver_001_0001.nii.gz" in caplog.text and "not used" in caplog.text
    # an MSD-style name that merely ends in four digits keeps its same-named label
    _write_pair(tmp_path / "msd" / "imagesTr" / "case_0001.nii.gz", tmp_path / "msd" / "labelsTr" / "case_0001.nii.gz")
    assert [c.case_id for c in discover_cases(tmp_path / "msd", "msd")] == ["case_0001"]


def test_nnunet_files_in_another_letter_case_and_a_numtraining_that_does_not_match_are_warned_of(tmp_path, caplog):
    """'case_002_0000.NII.GZ' was dropped without a word, and a dataset.json saying numTraining 5 with 2 pairs there
    was taken as it was (nnU-Net's own integrity check refuses it): the data audit, 1 Dec 2026."""
    for case in ("liver_000", "liver_001"):
        _write_pair(tmp_path / "imagesTr" / f"{case}_0000.nii.gz", tmp_path / "labelsTr" / f"{case}.nii.gz")
    _write_pair(tmp_path / "imagesTr" / "liver_002_0000.NII.GZ", tmp_path / "labelsTr" / "liver_002.NII.GZ")
    (tmp_path / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "numTraining": 5,
                                                       "labels": {"background": 0, "liver": 1, "tumor": 2},
                                                       "file_ending": ".nii.gz"}))
    with caplog.at_level("WARNING"):
        cases = discover_cases(tmp_path)
    assert [c.case_id for c in cases] == ["liver_000", "liver_001"]
    assert "end in .nii.gz in other letter case and are not used: liver_002_0000.NII.GZ" in caplog.text
    assert "says numTraining 5, but 2 image/label pair(s) were found" in caplog.text


def _write_nnunet_case(root: Path, case: str, ending: str, ph) -> None:
    """imagesTr/CASE_0000<ending> and labelsTr/CASE<ending> of the phantom ``ph``, written by SimpleITK itself on
    an oblique-free but flipped, anisotropic grid (spacing x, y, z 0.7, 0.8, 2.5 mm; x and y axes reversed)."""
    import SimpleITK as sitk

    for folder, name, array in (("imagesTr", f"{case}_0000{ending}", np.asarray(ph.ct.array, dtype=np.int16)),
                                ("labelsTr", f"{case}{ending}", np.asarray(ph.labels, dtype=np.uint8))):
        image = sitk.GetImageFromArray(array)  # (z, y, x)
        image.SetSpacing((0.7, 0.8, 2.5))
        image.SetOrigin((30.0, -20.0, 100.0))
        image.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
        (root / folder).mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(image, str(root / folder / name))


@pytest.mark.parametrize("ending", [".mha", ".nrrd"])
def test_an_nnunet_data_set_whose_file_ending_is_mha_or_nrrd_is_read_with_its_geometry(tmp_path, ending):
    """dataset.json "file_ending": ".mha" (or ".nrrd"): refused as 'holds no .nii/.nii.gz image but 2 other
    file(s) ... read for NIfTI only', though the CT reader reads those files. Read now, to the same canonical
    volume and labels as the same case written as NIfTI."""
    ph = _phantom(3)
    manifest = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "tumor": 2}, "numTraining": 1}
    for folder, suffix in (("other", ending), ("nifti", ".nii.gz")):
        _write_nnunet_case(tmp_path / folder, "case", suffix, ph)
        (tmp_path / folder / "dataset.json").write_text(json.dumps(dict(manifest, file_ending=suffix)))
    cases = discover_cases(tmp_path / "other")
    assert [(c.case_id, Path(c.image_path).name, Path(c.label_path).name) for c in cases] == \
        [("case", f"case_0000{ending}", f"case{ending}")]
    ct, labels = load_case(cases[0])
    reference_ct, reference_labels = load_case(discover_cases(tmp_path / "nifti")[0])
    np.testing.assert_allclose(ct.geometry.spacing, reference_ct.geometry.spacing, atol=1e-5)
    np.testing.assert_allclose(sorted(ct.geometry.spacing), [0.7, 0.8, 2.5], atol=1e-5)
    np.testing.assert_allclose(ct.geometry.origin, reference_ct.geometry.origin, atol=1e-4)
    np.testing.assert_allclose(ct.geometry.direction_matrix, reference_ct.geometry.direction_matrix, atol=1e-6)
    np.testing.assert_array_equal(ct.array, reference_ct.array)
    np.testing.assert_array_equal(labels, reference_labels)
    assert (labels == 1).sum() > 0 and (labels == 2).sum() > 0


def test_an_nnunet_file_ending_the_reader_cannot_read_is_refused_naming_it(tmp_path):
    """A dataset.json "file_ending" the CT reader cannot read (.png) is named, with what to do; .mha images without
    a "file_ending" are told how to say it."""
    _write_nnunet_case(tmp_path, "case", ".mha", _phantom(3))
    (tmp_path / "dataset.json").write_text(json.dumps({"file_ending": ".png"}))
    with pytest.raises(InputError, match=r'gives "file_ending": ".png"; the images and labels of a data set are read '
                                         r'as 3D NIfTI .*Convert the cases to 3D volumes'):
        discover_cases(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}}))
    with pytest.raises(InputError, match=r'holds no .nii/.nii.gz image but 1 other file\(s\) \(case_0000.mha\); .*'
                                         r'give dataset.json the nnU-Net v2 key "file_ending" \(e.g. ".mha"\)'):
        discover_cases(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"file_ending": ".nrrd"}))
    with pytest.raises(InputError, match=r'holds no .nrrd image \(dataset.json\'s "file_ending"\) but 1 other'):
        discover_cases(tmp_path)


def test_a_csv_beside_a_lits_or_msd_layout_is_said_to_be_unread(tmp_path, caplog):
    """A CSV of the cases with their patient ids kept in the data folder was left unread without a word when the
    folder was read as LiTS (or MSD, IRCADb): its patients' scans could be split between training and
    validation."""
    _write_pair(tmp_path / "volume-0.nii", tmp_path / "segmentation-0.nii")
    (tmp_path / "cases.csv").write_text("image,label,patient\nvolume-0.nii,segmentation-0.nii,P0\n")
    with caplog.at_level("WARNING"):
        assert [c.patient_id for c in discover_cases(tmp_path)] == ["lits-0"]
        discover_cases(tmp_path)  # crossval lists the cases again: said once
    assert caplog.text.count("is read as the lits layout; its CSV file(s) cases.csv are not read") == 1
    assert "pass the CSV itself as --data" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert [c.patient_id for c in discover_cases(tmp_path / "cases.csv")] == ["P0"]
    assert caplog.text == ""


def test_msd_labels_without_an_image_are_named_not_left_out(tmp_path, caplog):
    """labelsTr/ holding labels whose CTs are missing from imagesTr/ (an interrupted copy) was read as a smaller
    data set without a word; LiTS refuses segmentations without a volume."""
    for n in (1, 2):
        _write_pair(tmp_path / "imagesTr" / f"liver_{n}.nii.gz", tmp_path / "labelsTr" / f"liver_{n}.nii.gz", n)
    (tmp_path / "imagesTr" / "liver_2.nii.gz").unlink()
    (tmp_path / "labelsTr" / "._liver_1.nii.gz").write_bytes(b"junk")  # macOS resource file: not a label
    with pytest.raises(InputError, match=r"1 label\(s\) in .*labelsTr' have no image in imagesTr/.*liver_2.nii.gz"):
        discover_cases(tmp_path, "msd")
    # nnU-Net v2 names: labelsTr/CASE.nii.gz goes with imagesTr/CASE_0000.nii.gz
    (tmp_path / "imagesTr" / "liver_1.nii.gz").rename(tmp_path / "imagesTr" / "liver_1_0000.nii.gz")
    with pytest.raises(InputError, match=r"liver_2.nii.gz\. Restore the missing images"):
        discover_cases(tmp_path, "msd")
    (tmp_path / "labelsTr" / "liver_2.nii.gz").unlink()
    assert [c.case_id for c in discover_cases(tmp_path, "msd")] == ["liver_1"]
    # with dataset.json's training list choosing the cases: a warning, the listed cases are used
    _write_pair(tmp_path / "imagesTr" / "liver_3.nii.gz", tmp_path / "labelsTr" / "liver_3.nii.gz", 3)
    _write_pair(tmp_path / "unused" / "ct.nii.gz", tmp_path / "labelsTr" / "liver_4.nii.gz", 4)
    (tmp_path / "dataset.json").write_text(json.dumps({"training": [
        {"image": "./imagesTr/liver_1_0000.nii.gz", "label": "./labelsTr/liver_1.nii.gz"}]}))
    with caplog.at_level("WARNING"):
        assert [c.case_id for c in discover_cases(tmp_path, "msd")] == ["liver_1"]
    assert "1 label(s)" in caplog.text and "liver_4.nii.gz" in caplog.text
    assert "liver_3.nii.gz" in caplog.text  # its image is there, unlisted: the unlisted-image warning names it


def test_msd_missing_label_names_the_file(tmp_path):
    _write_pair(tmp_path / "imagesTr" / "liver_2.nii.gz", tmp_path / "other" / "x.nii.gz")
    (tmp_path / "labelsTr").mkdir()
    with pytest.raises(InputError, match="liver_2.nii.gz"):
        discover_cases(tmp_path, "msd")


# ----------------------------------------------------------------------------------------------- IRCADb
def _write_dicom_series(folder: Path, array_zyx: np.ndarray, spacing_xyz, series_uid: str):
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetImageIO("GDCMImageIO")  # IRCADb files have no extension (image_0, image_1, ...)
    for k in range(array_zyx.shape[0]):
        img = sitk.GetImageFromArray(array_zyx[k].astype(np.int16))
        img.SetSpacing((spacing_xyz[0], spacing_xyz[1]))
        tags = {"0008|0060": "CT", "0020|000e": series_uid, "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
                "0020|0032": f"0\\0\\{k * spacing_xyz[2]}", "0020|0037": "1\\0\\0\\0\\1\\0",
                "0020|0013": str(k + 1), "0018|0050": str(spacing_xyz[2]),
                "0008|0018": f"{series_uid}.{k + 1}", "0028|1052": "0", "0028|1053": "1"}
        for key, value in tags.items():
            img.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"image_{k}"))
        writer.Execute(img)


@pytest.mark.parametrize("tumor_folder", ["livertumor", "LiverTumor"])
def test_ircadb_dicom_masks_merge_to_liver_and_tumor(tmp_path, tumor_folder):
    """Also tumor folders named in another letter case ('LiverTumor01'): left out, their tumors trained as liver
    (the training data audit)."""
    ph = _phantom(0)
    labels = ph.labels
    patient = tmp_path / "3Dircadb1.1"
    sp = (4.0, 4.0, 5.0)
    _write_dicom_series(patient / "PATIENT_DICOM", ph.ct.array, sp, "1.2.826.0.1.3680043.2.1125.10")
    _write_dicom_series(patient / "MASKS_DICOM" / "liver", (labels >= 1) * 255, sp, "1.2.826.0.1.3680043.2.1125.11")
    tumor = labels == 2
    half = np.zeros_like(tumor)
    half[:, :, :12] = True
    _write_dicom_series(patient / "MASKS_DICOM" / f"{tumor_folder}01", (tumor & half) * 255, sp,
                        "1.2.826.0.1.3680043.2.1125.12")
    _write_dicom_series(patient / "MASKS_DICOM" / f"{tumor_folder}02", (tumor & ~half) * 255, sp,
                        "1.2.826.0.1.3680043.2.1125.13")
    _write_dicom_series(patient / "MASKS_DICOM" / "portalvein", (labels >= 1) * 255, sp,
                        "1.2.826.0.1.3680043.2.1125.14")
    assert detect_format(tmp_path) == "ircadb"
    cases = discover_cases(tmp_path)
    assert [c.case_id for c in cases] == ["3Dircadb1.1"]
    volume, merged = load_case(cases[0])
    assert merged.dtype == np.uint8 and set(np.unique(merged)) == {0, 1, 2}
    assert np.count_nonzero(merged == 2) == np.count_nonzero(tumor)
    assert np.count_nonzero(merged >= 1) == np.count_nonzero(labels >= 1)
    assert volume.array.shape == merged.shape


def test_ircadb_without_liver_mask_is_an_error(tmp_path):
    patient = tmp_path / "3Dircadb1.2"
    (patient / "PATIENT_DICOM").mkdir(parents=True)
    (patient / "MASKS_DICOM").mkdir()
    with pytest.raises(InputError, match="MASKS_DICOM/liver"):
        discover_cases(tmp_path, "ircadb")


def test_ircadb_folders_unzipped_into_a_folder_of_their_own_name_are_read(tmp_path):
    """MASKS_DICOM.zip unpacked into MASKS_DICOM/ (MASKS_DICOM/MASKS_DICOM/liver, as some unzip tools do) was
    refused for having no MASKS_DICOM/liver, and a wrapped PATIENT_DICOM/PATIENT_DICOM was taken for a patient of
    its own."""
    patient = tmp_path / "3Dircadb1.1"
    for sub in ("PATIENT_DICOM/PATIENT_DICOM", "MASKS_DICOM/MASKS_DICOM/liver", "MASKS_DICOM/MASKS_DICOM/livertumor01"):
        (patient / sub).mkdir(parents=True)
    cases = discover_cases(tmp_path)
    assert [(c.case_id, Path(c.image_path), Path(c.label_path)) for c in cases] == [
        ("3Dircadb1.1", patient / "PATIENT_DICOM" / "PATIENT_DICOM", patient / "MASKS_DICOM" / "MASKS_DICOM")]
    (patient / "MASKS_DICOM" / "notes.txt").write_text("x")  # not only the wrapped folder: not unwrapped
    with pytest.raises(InputError, match="has no MASKS_DICOM/liver"):
        discover_cases(tmp_path)


def _ircadb_patient_folders(patient: Path) -> None:
    for sub in ("PATIENT_DICOM", "MASKS_DICOM/liver"):
        (patient / sub).mkdir(parents=True)


def test_ircadb_macos_copy_is_ignored_and_a_zipped_patient_is_not_dropped(tmp_path):
    """A macOS zip's __MACOSX/ tree repeats the patient folders (with ._ files): not a second patient. A patient
    still zipped beside unzipped ones used to be left out without a word."""
    _ircadb_patient_folders(tmp_path / "3Dircadb1.1")
    _ircadb_patient_folders(tmp_path / "__MACOSX" / "3Dircadb1.1")
    (tmp_path / "__MACOSX" / "3Dircadb1.1" / "PATIENT_DICOM" / "._image_0").write_bytes(b"junk")
    assert detect_format(tmp_path) == "ircadb"
    assert [c.case_id for c in discover_cases(tmp_path)] == ["3Dircadb1.1"]
    zipped = tmp_path / "3Dircadb1.3"
    zipped.mkdir()
    (zipped / "PATIENT_DICOM.zip").write_bytes(b"PK")
    (zipped / "MASKS_DICOM.zip").write_bytes(b"PK")
    with pytest.raises(InputError, match="3Dircadb1.3.*still hold PATIENT_DICOM.zip.*unzip"):
        discover_cases(tmp_path)


# ----------------------------------------------------------------------------------------------- CSV
def test_csv_relative_paths_patient_column_and_label_map(tmp_path):
    ph = _phantom(0)
    multi = np.where(ph.labels >= 1, 5, 0).astype(np.uint8)
    multi[0, 0, 0] = 7
    _write_pair(tmp_path / "a" / "ct.nii.gz", tmp_path / "a" / "seg.nii.gz", labels=multi)
    (tmp_path / "list.csv").write_text("image,label,patient\na/ct.nii.gz,a/seg.nii.gz,P1\n")
    cases = discover_cases(tmp_path)
    assert cases == [Case("ct", "P1", str(tmp_path / "a" / "ct.nii.gz"), str(tmp_path / "a" / "seg.nii.gz"), "csv")]
    with pytest.raises(LabelError, match="5, 7"):
        load_case(cases[0])
    _, labels = load_case(cases[0], {"5": 1})
    assert labels[0, 0, 0] == 0 and np.count_nonzero(labels) == np.count_nonzero(ph.labels >= 1)


def test_one_ct_listed_as_two_cases_is_refused(tmp_path):
    """ct0 listed twice with other case ids and patients was put in training and in validation at once."""
    _write_pair(tmp_path / "ct0.nii.gz", tmp_path / "lab0.nii.gz")
    (tmp_path / "list.csv").write_text("image,label,case,patient\nct0.nii.gz,lab0.nii.gz,c0,P0\n"
                                       "./ct0.nii.gz,lab0.nii.gz,c_again,P9\n")
    with pytest.raises(InputError, match=r"listed as case 'c0' \(patient 'P0'\) and as case 'c_again' \(patient "
                                         r"'P9'\).*same patient id"):
        discover_cases(tmp_path / "list.csv")


def test_one_patients_rows_may_share_an_image_path(tmp_path):
    """One scan with two readers' labels, listed as two rows of one patient: the rows stay on one side of every
    split. The content check (refuse_identical_images) allowed it for a copy, the check by path refused the same
    file whatever the patient."""
    import shutil

    _write_pair(tmp_path / "ct0.nii.gz", tmp_path / "lab0.nii.gz")
    _write_pair(tmp_path / "ct1.nii.gz", tmp_path / "lab1.nii.gz", seed=1)
    shutil.copyfile(tmp_path / "lab0.nii.gz", tmp_path / "lab0_reader2.nii.gz")
    (tmp_path / "list.csv").write_text("image,label,case,patient\nct0.nii.gz,lab0.nii.gz,c0_r1,P0\n"
                                       "./ct0.nii.gz,lab0_reader2.nii.gz,c0_r2,P0\nct1.nii.gz,lab1.nii.gz,c1,P1\n")
    cases = discover_cases(tmp_path / "list.csv")
    assert [(c.case_id, c.patient_id) for c in cases] == [("c0_r1", "P0"), ("c0_r2", "P0"), ("c1", "P1")]


def test_a_ct_copied_under_another_name_and_patient_is_refused_by_its_contents(tmp_path):
    """The same CT under another file name (and patient id) passed the check by path: the copy could be trained on
    in one split and validated on in the other. The SHA-256 hashes the run takes anyway (data_fingerprint) are
    compared; rows of one patient may share an image (one scan, two readers' labels)."""
    import shutil

    from LiverTumorSegLib.training.datasets import refuse_identical_images
    from LiverTumorSegLib.training.slice_cache import data_fingerprint

    _write_pair(tmp_path / "ct0.nii.gz", tmp_path / "lab0.nii.gz")
    _write_pair(tmp_path / "ct1.nii.gz", tmp_path / "lab1.nii.gz", seed=1)
    shutil.copyfile(tmp_path / "ct0.nii.gz", tmp_path / "copy.nii.gz")
    shutil.copyfile(tmp_path / "lab0.nii.gz", tmp_path / "copy_lab.nii.gz")
    rows = "image,label,patient\nct0.nii.gz,lab0.nii.gz,P0\nct1.nii.gz,lab1.nii.gz,P1\ncopy.nii.gz,copy_lab.nii.gz,"
    (tmp_path / "list.csv").write_text(rows + "P9\n")
    cases = discover_cases(tmp_path / "list.csv")  # nothing is hashed here: the run's first step does it
    with pytest.raises(InputError, match=r"case 'copy' \(patient 'P9', .*copy\.nii\.gz'\) and case 'ct0' "
                                         r"\(patient 'P0', .*ct0\.nii\.gz'\) have identical contents.*same patient "
                                         r"id.*remove the copy"):
        refuse_identical_images(cases, data_fingerprint(cases))
    (tmp_path / "list.csv").write_text(rows + "P0\n")
    cases = discover_cases(tmp_path / "list.csv")
    refuse_identical_images(cases, data_fingerprint(cases))  # one patient's: stays on one side of every split


def test_a_csv_without_patient_ids_says_once_that_each_row_is_its_own_patient(tmp_path, caplog):
    """Without a 'patient' column (or with empty cells) every row silently became a patient of its own, so two
    phases of one patient could be split between training and validation."""
    for i in range(3):
        _write_pair(tmp_path / f"ct{i}.nii.gz", tmp_path / f"lab{i}.nii.gz", seed=i)
    (tmp_path / "none.csv").write_text("image,label\n" + "".join(f"ct{i}.nii.gz,lab{i}.nii.gz\n" for i in range(3)))
    with caplog.at_level("WARNING"):
        cases = discover_cases(tmp_path / "none.csv")
        discover_cases(tmp_path / "none.csv")  # crossval lists the cases again: said once
    assert [c.patient_id for c in cases] == ["ct0", "ct1", "ct2"]  # as before: each row its own patient
    assert caplog.text.count("has no 'patient' column, so each of its 3 rows is taken as a patient of its own") == 1
    caplog.clear()
    (tmp_path / "blank.csv").write_text("image,label,patient\nct0.nii.gz,lab0.nii.gz,P0\nct1.nii.gz,lab1.nii.gz,\n"
                                        "ct2.nii.gz,lab2.nii.gz,P2\n")
    with caplog.at_level("WARNING"):
        assert [c.patient_id for c in discover_cases(tmp_path / "blank.csv")] == ["P0", "ct1", "P2"]
    assert "1 of its 3 rows have an empty 'patient' cell (lines 3)" in caplog.text
    caplog.clear()
    (tmp_path / "full.csv").write_text("image,label,patient\nct0.nii.gz,lab0.nii.gz,P0\n")
    with caplog.at_level("WARNING"):
        discover_cases(tmp_path / "full.csv")
    assert "patient" not in caplog.text


@pytest.mark.skipif(os.sep != "/", reason="a backslash is a folder separator on Windows")
def test_a_training_csv_written_on_windows_with_backslashes_is_read(tmp_path):
    """'img\\ct0.nii.gz' (a CSV made on Windows, trained on Linux) was reported missing without saying why."""
    _write_pair(tmp_path / "img" / "ct0.nii.gz", tmp_path / "lab" / "lab0.nii.gz")
    (tmp_path / "win.csv").write_text("image,label,patient\nimg\\ct0.nii.gz,lab\\lab0.nii.gz,P0\n")
    cases = discover_cases(tmp_path / "win.csv")
    assert [(c.case_id, Path(c.image_path), Path(c.label_path)) for c in cases] == [
        ("ct0", tmp_path / "img" / "ct0.nii.gz", tmp_path / "lab" / "lab0.nii.gz")]
    (tmp_path / "drive.csv").write_text("image,label\nC:\\data\\ct0.nii.gz,lab/lab0.nii.gz\n")
    with pytest.raises(InputError, match=r"line 2: image .*C:\\data\\ct0.nii.gz' does not exist \(nor with '/' "
                                         r"for its '\\'\); a path written on Windows"):
        discover_cases(tmp_path / "drive.csv")


def test_a_csv_whose_patient_column_has_another_name_is_told_to_rename_it(tmp_path, caplog):
    """A 'patient_id' column was not read (only 'patient' is), and the warning said the CSV had no patient column
    and to add one: the user, who had one, could not tell that its ids were unused and two scans of one patient
    could be split between training and validation."""
    for i in range(2):
        _write_pair(tmp_path / f"ct{i}.nii.gz", tmp_path / f"lab{i}.nii.gz", seed=i)
    (tmp_path / "ids.csv").write_text("image,label,Patient_ID\nct0.nii.gz,lab0.nii.gz,P0\nct1.nii.gz,lab1.nii.gz,P0\n")
    with caplog.at_level("WARNING"):
        assert [c.patient_id for c in discover_cases(tmp_path / "ids.csv")] == ["ct0", "ct1"]
    assert "its column 'patient_id' is not read as the patient id" in caplog.text
    assert "rename it 'patient'" in caplog.text


@pytest.mark.parametrize("encoding, separator", WINDOWS_CSV_FORMATS)
def test_training_csvs_saved_by_excel_or_powershell_are_read(tmp_path, encoding, separator):
    """A UTF-16 list was refused as 'not UTF-8 text'; a tab- or semicolon-separated one had no 'image' column."""
    _write_pair(tmp_path / "ct.nii.gz", tmp_path / "seg.nii.gz")
    rows = ["Image", "Label", "Patient"], ["ct.nii.gz", "seg.nii.gz", "M\u00fcller"]
    (tmp_path / "list.csv").write_bytes(windows_csv_bytes(rows, encoding, separator))
    assert discover_cases(tmp_path / "list.csv") == [
        Case("ct", "M\u00fcller", str(tmp_path / "ct.nii.gz"), str(tmp_path / "seg.nii.gz"), "csv")]


def test_a_training_csv_with_mac_line_ends_is_read_with_its_line_numbers(tmp_path):
    """Excel for Mac's "CSV (Macintosh)" (a CR alone ends each line) ended in "internal error: Error: new-line
    character seen in unquoted field"."""
    _write_pair(tmp_path / "ct.nii.gz", tmp_path / "seg.nii.gz")
    (tmp_path / "list.csv").write_bytes(b"image,label,patient\rct.nii.gz,seg.nii.gz,P1\r")
    assert discover_cases(tmp_path / "list.csv") == [
        Case("ct", "P1", str(tmp_path / "ct.nii.gz"), str(tmp_path / "seg.nii.gz"), "csv")]
    (tmp_path / "list.csv").write_bytes(b"sep=;\rimage;label\rct.nii.gz;\r")
    with pytest.raises(InputError, match=r"line 3: empty image or label path"):
        discover_cases(tmp_path / "list.csv")


def test_a_training_csv_in_another_encoding_is_refused_naming_the_file_and_the_format_to_save(tmp_path):
    (tmp_path / "list.csv").write_bytes("image,label\nPatient\u00e9.nii.gz,lab.nii.gz\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"CSV '.*list\.csv' is not UTF-8 text \(byte 19\); save it as UTF-8 CSV "
                                         r"\(in Excel: \"CSV UTF-8"):
        discover_cases(tmp_path / "list.csv")


def test_training_csv_errors_give_the_files_line_after_a_blank_line(tmp_path):
    (tmp_path / "a.csv").write_text("image,label\n\nnope.nii.gz,nope_seg.nii.gz\n")
    with pytest.raises(InputError, match="line 3: image"):  # was 'line 2': the blank line was not counted
        discover_cases(tmp_path / "a.csv")


def test_csv_missing_file_and_missing_column(tmp_path):
    (tmp_path / "a.csv").write_text("image,label\nnope.nii.gz,nope_seg.nii.gz\n")
    with pytest.raises(InputError, match="line 2: image"):
        discover_cases(tmp_path / "a.csv")
    (tmp_path / "a.csv").write_text("img,seg\nx,y\n")
    with pytest.raises(InputError, match="columns 'image' and 'label'"):
        discover_cases(tmp_path / "a.csv")


def test_label_with_other_shape_is_rejected(tmp_path):
    ph = _phantom(0)
    write_volume(tmp_path / "ct.nii.gz", ph.ct)
    other = _phantom(0, shape=(6, 24, 20))
    write_label_map(tmp_path / "seg.nii.gz", other.labels, other.ct.geometry)
    (tmp_path / "l.csv").write_text("image,label\nct.nii.gz,seg.nii.gz\n")
    with pytest.raises(LabelError):
        load_case(discover_cases(tmp_path)[0])


def test_unknown_layout_explains_the_expected_ones(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="Expected one of: LiTS"):
        discover_cases(tmp_path)
    with pytest.raises(InputError, match="does not exist") as missing:
        discover_cases(tmp_path / "missing")
    # it told 'train --data missing' (and discover_cases's callers) to "pass --data", which they had done
    assert "pass --data" not in str(missing.value) and "check the path" in str(missing.value)


def test_remap_labels_known_answer():
    raw = np.array([[0, 5, 6], [5, 9, 0]])
    assert remap_labels(raw, {"5": 1, 6: 2}).tolist() == [[0, 1, 2], [1, 0, 0]]
    with pytest.raises(LabelError, match="--label-map"):
        remap_labels(raw)


def test_labels_255_name_the_option_that_maps_them(tmp_path):
    ph = _phantom(0)
    _write_pair(tmp_path / "ct.nii.gz", tmp_path / "seg.nii.gz", labels=(ph.labels >= 1).astype(np.uint8) * 255)
    (tmp_path / "l.csv").write_text("image,label\nct.nii.gz,seg.nii.gz\n")
    case = discover_cases(tmp_path)[0]
    with pytest.raises(LabelError, match="values 255 outside .*--label-map '\\{\"1\": 1, \"2\": 2, \"255\": 1\\}'"):
        load_case(case)
    assert np.count_nonzero(load_case(case, {"255": 1})[1] == 1) == np.count_nonzero(ph.labels >= 1)


def test_label_content_warnings_known_answers():
    labels = np.zeros((3, 10, 10), np.uint8)
    raw = np.zeros_like(labels)
    raw[1, 2:5, 2:5] = 1
    raw[1, 3, 3] = 2
    empty = label_content_warnings(labels, raw, {"255": 1})
    assert len(empty) == 1 and "no liver or tumor voxel" in empty[0]
    assert "as a validation case it gives liver Dice 0" in empty[0]  # train read it as a training case's only
    assert "values [1, 2] are not in the label map" in empty[0]
    assert "label map" not in label_content_warnings(labels)[0]
    tumor_only = labels.copy()
    tumor_only[1, 3, 3] = 2
    assert "tumor (2) but no liver (1)" in label_content_warnings(tumor_only)[0]
    liver = raw.copy()                   # one tumor inside the liver ...
    assert label_content_warnings(liver) == []
    liver[1, 8, 8] = 2                   # ... and one in the background, two voxels away from it
    liver[2, 8, 1] = 2                   # ... and one more, diagonal to nothing of the liver
    assert label_content_warnings(liver) == ["2 of its 3 tumor components touch no liver voxel (tumor outside "
                                             "the liver); check the label."]


def test_load_case_warns_about_a_label_map_that_drops_a_cases_liver(tmp_path, caplog):
    """A label map written for one case's values (255) silently emptied another case's 0/1/2 label."""
    ph = _phantom(0)
    _write_pair(tmp_path / "ct.nii.gz", tmp_path / "seg.nii.gz")
    (tmp_path / "l.csv").write_text("image,label\nct.nii.gz,seg.nii.gz\n")
    with caplog.at_level("WARNING"):
        _, labels = load_case(discover_cases(tmp_path)[0], {"255": 1})
    assert not labels.any()
    assert "case ct: its label has no liver or tumor voxel" in caplog.text and "[1, 2]" in caplog.text
    assert np.count_nonzero(ph.labels) > 0


# ----------------------------------------------------------------------------------------------- splits
def _cases(patients):
    return [Case(f"c{i}", p, f"i{i}", f"l{i}") for i, p in enumerate(patients)]


def test_holdout_never_splits_a_patient_and_is_deterministic():
    cases = _cases(["a", "a", "b", "c", "c", "c", "d", "e"])
    train, val = holdout_split(cases, 0.4, seed=3)
    assert {c.patient_id for c in train}.isdisjoint({c.patient_id for c in val})
    assert len({c.patient_id for c in val}) == 2  # round(0.4 * 5)
    assert len(train) + len(val) == len(cases)
    assert holdout_split(cases, 0.4, seed=3) == (train, val)


def test_kfold_each_patient_validated_exactly_once():
    cases = _cases(["p%d" % (i // 2) for i in range(14)])  # 7 patients, 2 scans each
    folds = kfold_splits(cases, 4, seed=0)
    seen = []
    for train, val in folds:
        assert {c.patient_id for c in train}.isdisjoint({c.patient_id for c in val})
        seen += sorted({c.patient_id for c in val})
    assert sorted(seen) == sorted({c.patient_id for c in cases})
    assert sorted(len({c.patient_id for c in v}) for _, v in folds) == [1, 2, 2, 2]
    assert select_split(cases, 0.2, 4, 2, 0) == folds[2]
    with pytest.raises(InputError, match="at least 8 patients"):
        kfold_splits(cases, 8, 0)


def test_load_case_says_when_a_label_was_stored_in_another_axis_order(tmp_path, caplog):
    from LiverTumorSegLib.volume import ImageGeometry

    ph = _phantom(0)
    write_volume(tmp_path / "ct.nii.gz", ph.ct)
    geometry = ph.ct.geometry
    nz, ny, nx = ph.labels.shape
    flip_xy = np.diag([-1.0, -1.0, 1.0])
    lps = ImageGeometry(spacing=geometry.spacing, origin=tuple(geometry.index_to_lps((nx - 1, ny - 1, 0))),
                        direction=tuple((geometry.direction_matrix @ flip_xy).ravel()))
    write_label_map(tmp_path / "seg.nrrd", ph.labels[:, ::-1, ::-1], lps)
    (tmp_path / "l.csv").write_text("image,label\nct.nii.gz,seg.nrrd\n")
    with caplog.at_level("WARNING"):
        _, labels = load_case(discover_cases(tmp_path)[0])
    assert "case ct: label map stored in another axis order; reoriented to the CT" in caplog.text
    assert np.count_nonzero(labels == 2) == np.count_nonzero(ph.labels == 2)


def test_load_case_logs_each_ct_warning_once_however_often_the_case_is_read(tmp_path, caplog):
    # training reads a validation case for its slice cache and again for the whole-volume validation at the end
    ph = make_phantom(shape_zyx=(6, 24, 24), spacing_xyz=(4.0, 4.0, 8.0), seed=0)  # 8 mm: "thick slices"
    write_volume(tmp_path / "ct.nii.gz", ph.ct)
    write_label_map(tmp_path / "seg.nii.gz", ph.labels, ph.ct.geometry)
    (tmp_path / "l.csv").write_text("image,label\nct.nii.gz,seg.nii.gz\n")
    case = discover_cases(tmp_path)[0]
    with caplog.at_level("WARNING"):
        load_case(case)
        load_case(case)
    assert caplog.text.count("has thick slices (8 mm)") == 1


def _msd_set(root: Path, labels=None, n_cases=2):
    for n in range(n_cases):
        _write_pair(root / "imagesTr" / f"case_{n}_0000.nii.gz", root / "labelsTr" / f"case_{n}.nii.gz", n)
    if labels is not None:
        (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": labels,
                                                       "numTraining": n_cases, "file_ending": ".nii.gz"}))
    return root


@pytest.mark.parametrize("labels", [{"background": 0, "tumor": 1, "liver": 2},
                                    {"0": "background", "1": "Vessel", "2": "Tumour"},
                                    {"background": 0, "liver": 1, "tumor": 2, "vessel": 3}])
def test_a_dataset_json_whose_labels_mean_something_else_is_refused(tmp_path, labels):
    """nnU-Net's {"tumor": 1, "liver": 2} trained the liver as tumor and the tumor as liver with exit 0."""
    root = _msd_set(tmp_path / "set", labels)
    with pytest.raises(InputError, match="training needs 1 = liver and 2 = liver tumor.*--label-map"):
        check_dataset_labels(root)
    check_dataset_labels(root, label_map={"1": 2, "2": 1})  # the user's own reading is not second-guessed


@pytest.mark.parametrize("labels", [{"0": "background", "1": "liver", "2": "cancer"},  # MSD Task03_Liver
                                    {"background": 0, "liver": [1, 2], "tumor": 2},   # nnU-Net v2 regions
                                    {"background": 0, "liver": 1},                    # liver only
                                    None])                                            # no dataset.json
def test_dataset_json_labels_that_mean_liver_and_tumor_are_accepted(tmp_path, labels):
    check_dataset_labels(_msd_set(tmp_path / "set", labels))


def test_dataset_json_labels_given_as_a_list_of_names_are_checked_by_their_index(tmp_path):
    """A list (["background", "tumor", "liver"]: index = label value) was not checked at all, so a swapped one
    trained the liver as tumor with exit 0; it is now read as MSD's {"0": ..., "1": ..., "2": ...}."""
    swapped = _msd_set(tmp_path / "swapped", ["background", "tumor", "liver"])
    with pytest.raises(InputError, match=r"1 = tumor, 2 = liver; training needs 1 = liver and 2 = liver tumor"
                                         r".*'\{\"1\": 2, \"2\": 1\}'"):
        check_dataset_labels(swapped)
    check_dataset_labels(swapped, label_map={"1": 2, "2": 1})  # the user's own reading is not second-guessed
    check_dataset_labels(_msd_set(tmp_path / "right", ["background", "liver", "cancer"]))


def test_dataset_json_labels_given_as_a_list_of_no_names_are_refused_saying_which_form_to_give(tmp_path):
    """[0, 2, 1] names no value's meaning: refused, not taken as saying nothing."""
    root = _msd_set(tmp_path / "set", [0, 2, 1])
    with pytest.raises(InputError, match=r"gives \"labels\" as a list that is not a list of names \(\[0, 2, 1\]\)"
                                         r".*\{\"0\": \"background\", \"1\": \"liver\", \"2\": \"tumor\"\}"):
        check_dataset_labels(root)


@pytest.mark.parametrize("key", ["\u00b2", "--1"])
def test_a_dataset_json_label_key_that_is_no_ascii_number_is_a_name(tmp_path, key):
    """{"²": "liver"}: '²'.isdigit() is True and int('²') raised ValueError (a traceback from train); "--1" passed
    lstrip("-").isdigit() and raised too. Such keys are names, as nnU-Net v2's are (here: of no label number)."""
    check_dataset_labels(_msd_set(tmp_path / "set", {"0": "background", "1": "liver", "2": "cancer", key: "liver"}))


def test_one_label_file_listed_for_two_cts_is_refused(tmp_path):
    """Rows a and b both named pat0's label: b trained on a's liver (Dice 0.22 with its own CT), exit 0."""
    _write_pair(tmp_path / "ct0.nii.gz", tmp_path / "lab0.nii.gz")
    _write_pair(tmp_path / "ct1.nii.gz", tmp_path / "lab1.nii.gz", 1)
    (tmp_path / "list.csv").write_text("image,label,case\nct0.nii.gz,lab0.nii.gz,a\nct1.nii.gz,lab0.nii.gz,b\n")
    with pytest.raises(InputError, match="listed for case 'a' and for case 'b'"):
        discover_cases(tmp_path / "list.csv")
    # two phases of one patient on one grid may share their labels (they stay in one split)
    (tmp_path / "phases.csv").write_text("image,label,case,patient\nct0.nii.gz,lab0.nii.gz,a,P1\n"
                                         "ct1.nii.gz,lab0.nii.gz,b,P1\n")
    assert [c.case_id for c in discover_cases(tmp_path / "phases.csv")] == ["a", "b"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig"])
def test_a_dataset_json_saved_on_windows_is_read(tmp_path, encoding):
    """dataset.json saved by Windows PowerShell 5.1 or an editor there (UTF-16, or UTF-8 with a byte-order mark)
    was refused as "not valid JSON: 'utf-8' codec can't decode byte 0xff" or "Unexpected UTF-8 BOM"."""
    root = _msd_set(tmp_path / "set")
    text = json.dumps({"labels": {"background": 0, "tumor": 1, "liver": 2}})
    (root / "dataset.json").write_bytes(text.encode(encoding))
    with pytest.raises(InputError, match="training needs 1 = liver and 2 = liver tumor"):  # it was read
        check_dataset_labels(root)
    assert len(discover_cases(root)) == 2


def test_a_dataset_json_in_another_encoding_is_a_clear_error(tmp_path):
    root = _msd_set(tmp_path / "set")
    (root / "dataset.json").write_bytes('{"name": "F\u00e9rie"}'.encode("latin-1"))
    with pytest.raises(InputError, match=r"Data set manifest '.*dataset\.json' is not UTF-8 text"):
        discover_cases(root)


@pytest.mark.parametrize("training", [[{"image": "./imagesTr/case_0_0000.nii.gz"}], ["./imagesTr/x.nii.gz"],
                                      {"image": "x"}])
def test_a_malformed_dataset_json_training_list_is_a_clear_error(tmp_path, training):
    root = _msd_set(tmp_path / "set")
    (root / "dataset.json").write_text(json.dumps({"training": training}))
    with pytest.raises(InputError, match="dataset.json.*\"training\""):
        discover_cases(root)


def test_nnunet_v1_and_non_nifti_folders_get_advice_that_fits(tmp_path, caplog):
    v1 = _msd_set(tmp_path / "v1")
    (v1 / "dataset.json").write_text(json.dumps({"training": [
        {"image": "./imagesTr/case_0.nii.gz", "label": "./labelsTr/case_0.nii.gz"}]}))
    with pytest.raises(InputError, match="nnU-Net v1 naming"):
        discover_cases(v1)
    # its CASE_0000 files were first called 'not listed in dataset.json and not used' (the data-side audit)
    assert "not listed" not in caplog.text
    nrrd = tmp_path / "nrrd"
    (nrrd / "imagesTr").mkdir(parents=True)
    (nrrd / "labelsTr").mkdir()
    (nrrd / "imagesTr" / "case_0_0000.nrrd").write_bytes(b"NRRD0004\n")
    with pytest.raises(InputError, match="no .nii/.nii.gz image but 1 other file.*CSV"):
        discover_cases(nrrd)


def test_lits_zero_padded_copy_of_a_case_is_one_case_number(tmp_path):
    """volume-1 and volume-01 became cases lits-1 and lits-01, two 'patients' that could be split apart."""
    _write_pair(tmp_path / "volume-1.nii", tmp_path / "segmentation-1.nii")
    _write_pair(tmp_path / "copy" / "volume-01.nii", tmp_path / "copy" / "segmentation-01.nii")
    with pytest.raises(InputError, match="LiTS case 1 appears twice"):
        discover_cases(tmp_path)


def test_train_refuses_a_swapped_dataset_json_before_any_case_is_cached(tmp_path, capsys):
    from LiverTumorSegLib.cli import main

    root = _msd_set(tmp_path / "set", {"background": 0, "tumor": 1, "liver": 2})
    out = tmp_path / "m.safetensors"
    code = main(["train", "--data", str(root), "--model", "unet", "--epochs", "1", "--no-progress-bar",
                 "--no-tensorboard", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "1 = tumor, 2 = liver" in err and "--label-map" in err
    assert not out.exists() and not (tmp_path / "m_train").exists()


def test_only_a_slice_cache_of_finished_cases_counts_as_a_failed_runs_leftover(tmp_path):
    """A training folder holding only our cache may be reused without --overwrite; a user's folder named 'cache'
    holding anything else, or a cache without one finished case, may not."""
    from LiverTumorSegLib.training.trainer import holds_only_slice_cache

    entry = tmp_path / "run" / "cache" / "c53405de673d"
    entry.mkdir(parents=True)
    (entry / "ct0-1.json").write_text("{}")
    (entry / "ct0-1.hu.npy").write_bytes(b"")
    assert not holds_only_slice_cache(tmp_path / "run")               # no .labels.npy: not finished
    (entry / "ct0-1.labels.npy").write_bytes(b"")
    assert holds_only_slice_cache(tmp_path / "run")
    (entry / "notes.txt").write_text("mine")
    assert not holds_only_slice_cache(tmp_path / "run")               # something of the user's
    (entry / "notes.txt").unlink()
    (tmp_path / "run" / "log.csv").write_text("epoch\n")
    assert not holds_only_slice_cache(tmp_path / "run")


def test_load_case_drops_other_organs_on_purpose_without_a_warning_per_file(tmp_path, caplog):
    """A multi-organ label (TotalSegmentator's liver = 5) under {"5": 1} drops every other organ on purpose; the
    'does not list' warning (for evaluate, where a map emptied a 0/1/2 reference) printed once per training file."""
    import nibabel as nib

    _write_pair(tmp_path / "ct.nii.gz", tmp_path / "seg.nii.gz")
    image = nib.load(str(tmp_path / "seg.nii.gz"))
    organs = np.asarray(image.dataobj).astype(np.uint8)
    organs[organs == 1] = 5  # the liver is organ 5
    organs[0, 0, :] = 3  # another organ, dropped by the map
    nib.save(nib.Nifti1Image(organs, image.affine, image.header), str(tmp_path / "seg.nii.gz"))
    (tmp_path / "l.csv").write_text("image,label\nct.nii.gz,seg.nii.gz\n")
    with caplog.at_level("WARNING"):
        _, labels = load_case(discover_cases(tmp_path)[0], {"5": 1, "2": 2})
    assert (labels == 1).any() and "does not list" not in caplog.text


def test_lits_names_in_another_letter_case_are_read(tmp_path):
    """Volume-N.nii / Segmentation-N.nii (renamed on a Windows or macOS disk, which ignore case) were left out on
    Linux without a word, and a folder of only such files was 'no known layout' (helper-30's audit)."""
    _write_pair(tmp_path / "Volume-3.nii", tmp_path / "Segmentation-3.nii")
    _write_pair(tmp_path / "volume-4.nii.gz", tmp_path / "SEGMENTATION-4.NII.GZ", 1)
    assert detect_format(tmp_path) == "lits"
    cases = discover_cases(tmp_path)
    assert [c.case_id for c in cases] == ["lits-3", "lits-4"]
    assert cases[0].label_path.endswith("Segmentation-3.nii") and cases[1].label_path.endswith("SEGMENTATION-4.NII.GZ")


def test_a_training_csv_names_its_cases_by_case_or_by_segments_case_id_column(tmp_path):
    """'segment LIST.csv' names cases by a 'case_id' column, training by 'case': training ignored 'case_id' without
    a word, so two CTs named ct.nii.gz were refused as one case id although the CSV named them apart."""
    for patient in ("p1", "p2"):
        (tmp_path / patient).mkdir()
        for name in ("ct.nii.gz", "seg.nii.gz"):
            (tmp_path / patient / name).write_bytes(b"x")
    csv = tmp_path / "list.csv"
    csv.write_text("image,label,case_id\np1/ct.nii.gz,p1/seg.nii.gz,alpha\np2/ct.nii.gz,p2/seg.nii.gz,beta\n")
    assert [c.case_id for c in discover_cases(csv, "csv", warn_patients=False)] == ["alpha", "beta"]
    csv.write_text("image,label,case,case_id\np1/ct.nii.gz,p1/seg.nii.gz,a,a\np2/ct.nii.gz,p2/seg.nii.gz,b,c\n")
    with pytest.raises(InputError, match=r"line 3: its 'case' \('b'\) and 'case_id' \('c'\) cells name the case "
                                         r"differently"):
        discover_cases(csv, "csv", warn_patients=False)
    csv.write_text("image,label,case,case_id\np1/ct.nii.gz,p1/seg.nii.gz,a,\np2/ct.nii.gz,p2/seg.nii.gz,,b\n")
    assert [c.case_id for c in discover_cases(csv, "csv", warn_patients=False)] == ["a", "b"]


def test_images_and_labels_paired_crosswise_are_refused(tmp_path):
    """dataset.json entries whose labels were swapped (image liver_0 with label liver_1 and back) trained each CT on
    the other's label with exit 0 (the two grids had one size); so did a CSV row holding the next row's label."""
    msd = tmp_path / "msd"
    for n in (0, 1):
        _write_pair(msd / "imagesTr" / f"liver_{n}.nii.gz", msd / "labelsTr" / f"liver_{n}.nii.gz", n)
    entry = {"image": "./imagesTr/liver_{}.nii.gz", "label": "./labelsTr/liver_{}.nii.gz"}
    training = [{key: value.format(n if key == "image" else 1 - n) for key, value in entry.items()} for n in (0, 1)]
    (msd / "dataset.json").write_text(json.dumps({"training": training}))
    with pytest.raises(InputError, match=r"image '.*imagesTr/liver_0.nii.gz' with label '.*labelsTr/liver_1.nii.gz'"
                                         r".*that of the image '.*imagesTr/liver_1.nii.gz' \(case 'liver_0'"
                                         r".*crosswise"):
        discover_cases(msd)
    (msd / "dataset.json").write_text(json.dumps({"training": [
        {key: value.format(n) for key, value in entry.items()} for n in (0, 1)]}))
    assert [(Path(c.image_path).name, Path(c.label_path).name) for c in discover_cases(msd)] == [
        ("liver_0.nii.gz", "liver_0.nii.gz"), ("liver_1.nii.gz", "liver_1.nii.gz")]

    for n in (0, 1, 2):
        _write_pair(tmp_path / f"p{n}_ct.nii.gz", tmp_path / f"p{n}_seg.nii.gz", n)
    (tmp_path / "swapped.csv").write_text("image,label,patient\np0_ct.nii.gz,p0_seg.nii.gz,P0\n"
                                          "p1_ct.nii.gz,p2_seg.nii.gz,P1\np2_ct.nii.gz,p1_seg.nii.gz,P2\n")
    with pytest.raises(InputError, match=r"Case 'p1_ct' pairs image .*p1_ct.nii.gz' with label .*p2_seg.nii.gz'"):
        discover_cases(tmp_path / "swapped.csv")
    # two phases of one patient on one grid share that patient's label: not crosswise
    _write_pair(tmp_path / "p0_venous.nii.gz", tmp_path / "unused_seg.nii.gz", 0)
    (tmp_path / "phases.csv").write_text("image,label,patient\np0_ct.nii.gz,p0_seg.nii.gz,P0\n"
                                         "p0_venous.nii.gz,p0_seg.nii.gz,P0\np1_ct.nii.gz,p1_seg.nii.gz,P1\n")
    assert [c.case_id for c in discover_cases(tmp_path / "phases.csv")] == ["p0_ct", "p0_venous", "p1_ct"]


def test_a_label_of_case_0000_given_to_another_nnunet_ct_is_refused(tmp_path):
    """nnU-Net's channel suffix _0000 is removed once from a name (the CT liver_0000_0000 is case liver_0000), so
    labelsTr/liver_0000.nii.gz (case name 'liver') must also be judged as 'liver_0000': its pairing with another
    patient's CT passed unnamed once the CT's name kept its case's _0000 (only the second row was named)."""
    for n in ("0000", "0001"):
        _write_pair(tmp_path / "imagesTr" / f"liver_{n}_0000.nii.gz", tmp_path / "labelsTr" / f"liver_{n}.nii.gz")
    (tmp_path / "crossed.csv").write_text("image,label,patient\n"
                                          "imagesTr/liver_0001_0000.nii.gz,labelsTr/liver_0000.nii.gz,P1\n"
                                          "imagesTr/liver_0000_0000.nii.gz,labelsTr/liver_0001.nii.gz,P0\n")
    with pytest.raises(InputError, match=r"liver_0001_0000.nii.gz' with label .*liver_0000.nii.gz'.*crosswise"):
        discover_cases(tmp_path / "crossed.csv")


def test_a_folder_one_level_away_from_an_msd_or_nnunet_data_set_names_the_data_sets_folder(tmp_path):
    """The folder Task03_Liver.tar was unpacked into, nnUNet_raw/ or imagesTr/ itself was answered with the list
    of layouts only (which did not name nnU-Net), though LiTS and 3D-IRCADb-01 are found below the folder given."""
    data_set = tmp_path / "nnUNet_raw" / "Dataset003_Liver"
    _write_pair(data_set / "imagesTr" / "liver_000_0000.nii.gz", data_set / "labelsTr" / "liver_000.nii.gz")
    with pytest.raises(InputError, match=r"Cannot tell the layout of '.*nnUNet_raw'\. It holds the MSD / nnU-Net data "
                                         r"set folder\(s\) 'Dataset003_Liver': pass one of them as --data \(e\.g\. "
                                         r"'.*nnUNet_raw/Dataset003_Liver'\).*nnU-Net v2 raw data set"):
        discover_cases(tmp_path / "nnUNet_raw")
    with pytest.raises(InputError, match=r"It is the labelsTr/ folder of an MSD / nnU-Net data set: pass that data "
                                         r"set's folder '.*Dataset003_Liver' as --data"):
        discover_cases(data_set / "labelsTr", "msd")
    assert [c.case_id for c in discover_cases(data_set)] == ["liver_000"]


def test_a_label_saved_with_its_axes_reversed_is_told_to_reverse_them_not_to_resample(tmp_path):
    """A (z, y, x) label array saved by nibabel with the CT's affine reads (z, y, x) as (x, y, z): the advice was to
    resample it onto the reference grid, which cannot mend it."""
    import nibabel as nib

    ph = _phantom(0, shape=(6, 24, 20))
    write_volume(tmp_path / "ct.nii.gz", ph.ct)
    write_label_map(tmp_path / "good.nii.gz", ph.labels, ph.ct.geometry)
    affine = nib.load(str(tmp_path / "good.nii.gz")).affine
    nib.save(nib.Nifti1Image(ph.labels.astype(np.uint8), affine), str(tmp_path / "zyx.nii.gz"))  # (z, y, x) voxels
    case = Case("c", "c", str(tmp_path / "ct.nii.gz"), str(tmp_path / "zyx.nii.gz"))
    with pytest.raises(LabelError, match=r"size \(x, y, z\) \(6, 24, 20\) vs the reference's \(20, 24, 6\) voxels\. "
                                         r"Its size is the reference's in reverse order.*Do not resample it: reverse "
                                         r"its axes \(array\.transpose\(2, 1, 0\)\)") as err:
        load_case(case)
    assert "resample it onto the reference grid" not in str(err.value)
    nib.save(nib.Nifti1Image(ph.labels.transpose(2, 1, 0).astype(np.uint8), affine), str(tmp_path / "xyz.nii.gz"))
    _, labels = load_case(Case("c", "c", str(tmp_path / "ct.nii.gz"), str(tmp_path / "xyz.nii.gz")))
    assert np.array_equal(labels, ph.labels)  # the advice mends it (phantom grid: canonical already)
    write_label_map(tmp_path / "other.nii.gz", ph.labels[:, :, :18], ph.ct.geometry)  # another size: general advice
    with pytest.raises(LabelError, match="resample it onto the reference grid") as err:
        load_case(Case("c", "c", str(tmp_path / "ct.nii.gz"), str(tmp_path / "other.nii.gz")))
    assert "reverse order" not in str(err.value)


@pytest.mark.parametrize("labels, suggested", [
    ({"background": 0, "tumor": 1, "liver": 2}, '{"1": 2, "2": 1}'),
    ({"background": 0, "spleen": 1, "kidney": 2, "liver": 5, "liver tumor": 6}, '{"5": 1, "6": 2}'),
    ({"background": 0, "liver": [1, 2], "tumor": 2, "lung": 3}, '{"1": 1, "2": 2}'),
    ({"0": "background", "1": "Vessel", "2": "Tumour"}, None)])  # names no liver: only the general example
def test_a_refused_dataset_json_is_told_the_label_map_its_label_names_call_for(tmp_path, labels, suggested):
    """The refusal's example was always '{"1": 2, "2": 1}' (swapped liver and tumor), also for a multi-organ data
    set whose liver is 5 and tumor 6, where that map trained kidney as liver."""
    with pytest.raises(InputError) as err:
        check_dataset_labels(_msd_set(tmp_path / "set", labels))
    if suggested:
        assert f"--label-map to say which values are liver and tumor (here '{suggested}', as its \"labels\" name " \
               f"them; values left out become background)" in str(err.value)
    else:
        assert "here '" not in str(err.value) and "e.g. '{\"1\": 2, \"2\": 1}' for a data set with 1 = tumor" in \
            str(err.value)
    assert "'ignore' value" not in str(err.value)


def test_a_dataset_json_with_an_nnunet_ignore_label_says_what_mapping_it_away_means(tmp_path):
    with pytest.raises(InputError, match=r"here '\{\"1\": 1, \"2\": 2\}'.*Its 'ignore' value \(3\) marks voxels "
                                         r"left unannotated \(nnU-Net\); training has no such value, so they would be "
                                         r"trained as background"):
        check_dataset_labels(_msd_set(tmp_path / "set", {"background": 0, "liver": 1, "tumor": 2, "ignore": 3}))


def test_an_msd_set_decompressed_with_gunzip_is_read_from_its_dataset_json(tmp_path, caplog):
    """dataset.json names imagesTr/liver_N.nii.gz; after gunzip the files are liver_N.nii, and every case was named
    as unlisted and then refused as missing."""
    for n in (1, 2):
        _write_pair(tmp_path / "imagesTr" / f"liver_{n}.nii", tmp_path / "labelsTr" / f"liver_{n}.nii", n)
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "liver", "2": "cancer"},
                                                       "training": [{"image": f"./imagesTr/liver_{n}.nii.gz",
                                                                     "label": f"./labelsTr/liver_{n}.nii.gz"}
                                                                    for n in (1, 2)]}))
    with caplog.at_level("WARNING"):
        cases = discover_cases(tmp_path)
    assert [(c.case_id, Path(c.image_path).name, Path(c.label_path).name) for c in cases] == [
        ("liver_1", "liver_1.nii", "liver_1.nii"), ("liver_2", "liver_2.nii", "liver_2.nii")]
    assert "not listed" not in caplog.text
    (tmp_path / "imagesTr" / "liver_2.nii").unlink()
    with pytest.raises(InputError, match=r"MSD image '.*liver_2.nii.gz' listed in dataset.json is missing"):
        discover_cases(tmp_path)


def test_a_csv_row_with_another_scan_folders_label_is_refused(tmp_path):
    """One folder per scan (P1/ct.nii.gz + P1/seg.nii.gz), as hospital exports and TotalSegmentator runs lay data
    out: a CSV row holding another patient's folder's seg.nii.gz was trained on that label, since the names cannot
    tell (both are seg.nii.gz)."""
    rows = []
    for n in range(4):
        _write_pair(tmp_path / f"P{n}" / "ct.nii.gz", tmp_path / f"P{n}" / "seg.nii.gz", n)
        rows.append([f"P{n}/ct.nii.gz", f"P{n}/seg.nii.gz", f"pat{n}", f"c{n}"])
    rows[1][1], rows[2][1] = rows[2][1], rows[1][1]
    (tmp_path / "swapped.csv").write_text("image,label,patient,case\n" + "\n".join(",".join(r) for r in rows) + "\n")
    with pytest.raises(InputError, match=r"Case 'c1' pairs image '.*P1/ct.nii.gz' with label '.*P2/seg.nii.gz', "
                                         r"whose folder is that of the image '.*P2/ct.nii.gz' \(case 'c2', another "
                                         r"patient\)"):
        discover_cases(tmp_path / "swapped.csv")
    rows[1][1], rows[2][1] = rows[2][1], rows[1][1]
    rows[3][2] = "pat2"  # P3's scan with P2's label, one patient (phases on one grid): allowed
    rows[3][1] = "P2/seg.nii.gz"
    (tmp_path / "phases.csv").write_text("image,label,patient,case\n" + "\n".join(",".join(r) for r in rows) + "\n")
    assert [c.case_id for c in discover_cases(tmp_path / "phases.csv")] == ["c0", "c1", "c2", "c3"]
    rows[3] = ["elsewhere/ct3.nii.gz", "P2/seg3.nii.gz", "pat3", "c3"]  # a CT kept elsewhere, its label saved
    _write_pair(tmp_path / "elsewhere" / "ct3.nii.gz", tmp_path / "P2" / "seg3.nii.gz", 3)  # beside P2's own pair
    (tmp_path / "elsewhere.csv").write_text("image,label,patient,case\n" + "\n".join(",".join(r) for r in rows)
                                            + "\n")
    assert [c.case_id for c in discover_cases(tmp_path / "elsewhere.csv")] == ["c0", "c1", "c2", "c3"]
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    lines = []
    for n in range(3):  # images/ and labels/ apart: a label beside no image is not judged by its folder
        _write_pair(tmp_path / "images" / f"a{n}.nii.gz", tmp_path / "labels" / f"b{n}.nii.gz", n)
        lines.append(f"images/a{n}.nii.gz,labels/b{n}.nii.gz,p{n}")
    (tmp_path / "apart.csv").write_text("image,label,patient\n" + "\n".join(lines) + "\n")
    assert len(discover_cases(tmp_path / "apart.csv")) == 3


@pytest.mark.parametrize("scans, crossing", [(3, "shifted"), (2, "swapped")])
def test_a_csv_whose_every_row_takes_another_scan_folders_label_is_refused(tmp_path, scans, crossing):
    """The folder check judged only data sets where most rows keep image and label in one folder: a label column
    shifted by one row (every row crossed), or the two rows of two patients swapped, trained on the wrong labels
    without a word when the CTs share a grid (the preprocessing audit)."""
    rows = []
    for n in range(scans):
        _write_pair(tmp_path / f"P{n}" / "ct.nii.gz", tmp_path / f"P{n}" / "seg.nii.gz", n)
        rows.append([f"P{n}/ct.nii.gz", f"P{(n + 1) % scans}/seg.nii.gz", f"pat{n}", f"c{n}"])
    (tmp_path / "crossed.csv").write_text("image,label,patient,case\n" + "\n".join(",".join(r) for r in rows) + "\n")
    with pytest.raises(InputError, match=r"Case 'c0' pairs image '.*P0/ct.nii.gz' with label '.*P1/seg.nii.gz', "
                                         r"whose folder is that of the image '.*P1/ct.nii.gz'"):
        discover_cases(tmp_path / "crossed.csv")


def test_csv_patient_ids_that_differ_only_in_unicode_form_are_refused(tmp_path):
    """'José' written composed (NFC) in one row and decomposed (NFD, as macOS writes names) in another was two
    patients: k-fold splits put the arterial scan in training and the venous one in validation (the data audit)."""
    import unicodedata

    for n in range(3):
        _write_pair(tmp_path / f"ct{n}.nii.gz", tmp_path / f"lab{n}.nii.gz", n)
    composed, decomposed = unicodedata.normalize("NFC", "José"), unicodedata.normalize("NFD", "José")
    assert composed != decomposed
    (tmp_path / "cases.csv").write_text(f"image,label,patient\nct0.nii.gz,lab0.nii.gz,{composed}\n"
                                        f"ct1.nii.gz,lab1.nii.gz,{decomposed}\nct2.nii.gz,lab2.nii.gz,P08\n",
                                        encoding="utf-8")
    with pytest.raises(InputError, match=r"which differ only in Unicode form"):
        discover_cases(tmp_path / "cases.csv")


def test_csv_patient_ids_that_differ_only_in_letter_case_are_refused(tmp_path):
    """'P07' and 'p07' were two patients: one patient's two scans landed in training and in validation."""
    for n in range(3):
        _write_pair(tmp_path / f"ct{n}.nii.gz", tmp_path / f"lab{n}.nii.gz", n)
    (tmp_path / "cases.csv").write_text("image,label,patient\nct0.nii.gz,lab0.nii.gz,P07\nct1.nii.gz,lab1.nii.gz,p07\n"
                                        "ct2.nii.gz,lab2.nii.gz,P08\n")
    with pytest.raises(InputError, match=r"names patients 'P07' and 'p07', which differ only in letter case.*Spell "
                                         r"each patient's id one way"):
        discover_cases(tmp_path / "cases.csv")
    (tmp_path / "cases.csv").write_text("image,label,patient\nct0.nii.gz,lab0.nii.gz,P07\nct1.nii.gz,lab1.nii.gz,P07\n"
                                        "ct2.nii.gz,lab2.nii.gz,P08\n")
    train, val = holdout_split(discover_cases(tmp_path / "cases.csv"), 0.5, 0)
    assert {c.patient_id for c in train}.isdisjoint({c.patient_id for c in val})
    assert sorted(len(side) for side in (train, val)) == [1, 2]  # P07's two scans stay together
    import shutil  # rows without a patient id are named by their files: not judged as patient ids

    (tmp_path / "sub").mkdir()
    shutil.copyfile(tmp_path / "ct1.nii.gz", tmp_path / "sub" / "CT0.nii.gz")
    (tmp_path / "unnamed.csv").write_text("image,label,case\nct0.nii.gz,lab0.nii.gz,a\nsub/CT0.nii.gz,lab1.nii.gz,A\n")
    assert [c.patient_id for c in discover_cases(tmp_path / "unnamed.csv")] == ["A", "a"]


def test_lits_test_set_volumes_given_as_training_data_are_said_to_have_no_labels(tmp_path):
    """LiTS's test set (test-volume-N.nii, whose labels the challenge kept) was answered with the list of layouts
    only, as if the folder held nothing known."""
    (tmp_path / "Test Batch").mkdir()
    for n in (0, 1):
        write_volume(tmp_path / "Test Batch" / f"test-volume-{n}.nii", _phantom(n).ct)
    for fmt in ("auto", "lits"):
        with pytest.raises(InputError, match=r"It holds 2 LiTS test-set volume\(s\) \(test-volume-0.nii, "
                                             r"test-volume-1.nii\), which come without labels: training needs LiTS's "
                                             r"training volumes \(volume-N.nii with segmentation-N.nii"):
            discover_cases(tmp_path, fmt)
    with pytest.raises(InputError) as err:  # a folder of nothing known: the list of layouts only
        discover_cases(tmp_path / "Test Batch" / "test-volume-0.nii")
    assert "test-set" not in str(err.value)


def test_load_case_logs_each_label_warning_once_however_often_the_case_is_read(tmp_path, caplog):
    """A validation case is read for the slice cache and again for the whole-volume validation: its label's
    warnings (tumor without liver, a label stored in another axis order) were printed twice."""
    ph = _phantom(0)
    write_volume(tmp_path / "ct.nii.gz", ph.ct)
    write_label_map(tmp_path / "seg.nii.gz", np.where(ph.labels == 1, 0, ph.labels), ph.ct.geometry)
    case = Case("c", "c", str(tmp_path / "ct.nii.gz"), str(tmp_path / "seg.nii.gz"))
    with caplog.at_level("WARNING"):
        load_case(case)
        load_case(case)
    assert caplog.text.count("warning: case c: its label has tumor (2) but no liver (1) voxel") == 1


def test_a_label_map_that_drops_a_cases_liver_but_keeps_its_tumor_names_the_dropped_value():
    """One --label-map for a data set mixing 0/255/2 and 0/1/2 labels ('{"255": 1, "2": 2}') dropped the second
    kind's liver (1): the warning said only 'tumor but no liver ... Check the label values', not that the map had
    dropped 1."""
    raw = np.zeros((3, 10, 10), np.uint8)
    raw[1, 2:6, 2:6] = 1
    raw[1, 3, 3] = 2
    mapped = np.where(raw == 2, 2, 0).astype(np.uint8)
    assert label_content_warnings(mapped, raw, {"255": 1, "2": 2}) == [
        "its label has tumor (2) but no liver (1) voxel; liver labels mark the liver around each tumor; its values "
        "[1] are not in the label map {\"255\": 1, \"2\": 2} and became 0 (list every value you mean to keep, e.g. "
        "\"1\": 1, \"2\": 2)."]
    assert label_content_warnings(mapped) == ["its label has tumor (2) but no liver (1) voxel; liver labels mark the "
                                              "liver around each tumor. Check the label values (--label-map)."]


@pytest.mark.parametrize("rows", ["ct0.nii.gz,lab0.nii.gz,P0\nct0.nii.gz,lab0.nii.gz,P0\n",
                                  "ct0.nii.gz,lab0.nii.gz,a,P0\nct1.nii.gz,lab1.nii.gz,b,P1\n./ct0.nii.gz,lab0.nii.gz,c,P0\n"])
def test_a_repeated_row_is_refused_as_one_not_told_to_get_its_own_case_id(tmp_path, rows):
    """A row listed twice was told to get a unique id (a 'case' column); with one, the CT trained twice as often, and
    a split could validate on a copy of a training case."""
    _write_pair(tmp_path / "ct0.nii.gz", tmp_path / "lab0.nii.gz")
    _write_pair(tmp_path / "ct1.nii.gz", tmp_path / "lab1.nii.gz", seed=1)
    header = "image,label,patient\n" if rows.count(",") == 4 else "image,label,case,patient\n"
    (tmp_path / "list.csv").write_text(header + rows)
    with pytest.raises(InputError, match=r"are one image \('.*ct0\.nii\.gz'\) with one label \('.*lab0\.nii\.gz'\): a "
                                         r"repeated row, which would train that CT twice as often\. Remove the "
                                         r"repeated row\.") as refused:
        discover_cases(tmp_path / "list.csv")
    assert "'case' column" not in str(refused.value)


def test_natural_key_orders_ascii_numbers_and_takes_other_digits_as_text():
    """A file name with a superscript digit ('x1²': '²'.isdigit() is True, int('²') raises) stopped a data folder's
    listing with ValueError; case2 still sorts before case10."""
    from LiverTumorSegLib.training.datasets import _natural_key

    assert sorted(["case10", "case2", "case1"], key=_natural_key) == ["case1", "case2", "case10"]
    assert _natural_key("x1\u00b2") == ["x", 1, "\u00b2"]
    assert sorted(["x1\u00b2", "x1", "x02"], key=_natural_key) == ["x1", "x1\u00b2", "x02"]


def test_a_slicer_seg_nrrd_label_cropped_to_its_segments_is_trained_where_the_nifti_label_is(tmp_path):
    """A training CSV may list a Slicer .seg.nrrd as a case's label; Slicer stores it cropped to the segments'
    extent. load_case places it back into the CT's grid by its origin (LPS, mm): the same labels (z, y, x) as the
    full NIfTI label map of the same case."""
    from test_segnrrd import LIVER, TUMOR, write_seg_nrrd_by_hand

    ph = _write_pair(tmp_path / "ct.nii.gz", tmp_path / "lab.nii.gz")  # spacing (4, 4, 5) mm, origin 0, LPS axes
    zs, ys, xs = (np.flatnonzero(ph.labels.any(axis=axes)) for axes in [(1, 2), (0, 2), (0, 1)])
    box = ph.labels[zs[0]:zs[-1] + 1, ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]
    assert box.shape != ph.labels.shape  # really cropped
    write_seg_nrrd_by_hand(tmp_path / "lab.seg.nrrd", [box], [LIVER, TUMOR], spacing=(4.0, 4.0, 5.0),
                           origin=(4.0 * xs[0], 4.0 * ys[0], 5.0 * zs[0]))
    (tmp_path / "seg.csv").write_text("image,label,case,patient\nct.nii.gz,lab.seg.nrrd,c0,P0\n")
    (tmp_path / "nii.csv").write_text("image,label,case,patient\nct.nii.gz,lab.nii.gz,c0,P0\n")
    _, from_seg_nrrd = load_case(discover_cases(tmp_path / "seg.csv")[0])
    _, from_nifti = load_case(discover_cases(tmp_path / "nii.csv")[0])
    np.testing.assert_array_equal(from_seg_nrrd, from_nifti)
    assert np.count_nonzero(from_seg_nrrd == 2) == np.count_nonzero(ph.labels == 2) > 0


def test_two_csv_rows_with_one_case_id_are_refused_naming_the_column_to_add(tmp_path):
    """Two CTs both named ct.nii.gz in other folders take the same case id from their file name; the cases' slice
    caches and report rows would mix. The refusal names the id and the 'case' column that tells them apart."""
    _write_pair(tmp_path / "a" / "ct.nii.gz", tmp_path / "a" / "seg.nii.gz")
    _write_pair(tmp_path / "b" / "ct.nii.gz", tmp_path / "b" / "seg.nii.gz", seed=1)
    (tmp_path / "l.csv").write_text("image,label,patient\na/ct.nii.gz,a/seg.nii.gz,P0\nb/ct.nii.gz,b/seg.nii.gz,P1\n")
    with pytest.raises(InputError, match=r"Case ids \['ct'\] occur more than once .*l\.csv'; give each case a "
                                         r"unique id \(CSV: a 'case' column\)"):
        discover_cases(tmp_path / "l.csv")


@pytest.mark.parametrize("fmt, words", [
    ("auto", r"holds several CSV files \(a\.csv, b\.csv\); pass the one to use as --data"),
    ("csv", r"Expected exactly one CSV in .*, found 2; pass the CSV file as --data"),
])
def test_a_folder_of_two_csv_lists_asks_which_one(tmp_path, fmt, words):
    _write_pair(tmp_path / "ct.nii.gz", tmp_path / "seg.nii.gz")
    for name in ("a.csv", "b.csv"):
        (tmp_path / name).write_text("image,label\nct.nii.gz,seg.nii.gz\n")
    with pytest.raises(InputError, match=words):
        discover_cases(tmp_path, fmt)


def test_a_zipped_ircadb_download_is_told_to_unzip_and_a_json_list_is_no_manifest(tmp_path):
    patient = tmp_path / "ircadb" / "3Dircadb1.1"
    patient.mkdir(parents=True)
    for name in ("PATIENT_DICOM.zip", "MASKS_DICOM.zip"):
        (patient / name).write_bytes(b"PK\x03\x04")
    with pytest.raises(InputError, match=r"holds zipped 3D-IRCADb folders \(PATIENT_DICOM.zip\); unzip"):
        discover_cases(tmp_path / "ircadb")
    msd = tmp_path / "msd"
    _write_pair(msd / "imagesTr" / "liver_1.nii.gz", msd / "labelsTr" / "liver_1.nii.gz")
    (msd / "dataset.json").write_text("[1, 2]")
    with pytest.raises(InputError, match=r"dataset.json' must hold a JSON object \(MSD / nnU-Net dataset.json\)"):
        discover_cases(msd)


def test_a_linked_batch_folder_is_followed_in_discovery_and_evaluate(tmp_path):
    """'Training Batch 2' a symbolic link to another disk (a common layout): Path.rglob does not follow it (Python
    3.11), so discovery found 2 of 4 LiTS cases and train ran on them without a word, and evaluate scored 2 of 4
    (the data audit, 1 Dec 2026). Linked folders are followed, each real folder once (a loop is not walked again)."""
    import os

    from LiverTumorSegLib.commands.evaluate import list_cases

    root, elsewhere = tmp_path / "lits", tmp_path / "other_disk" / "batch2"
    for n in (0, 1):
        _write_pair(root / "Training Batch 1" / f"volume-{n}.nii", root / "Training Batch 1" / f"segmentation-{n}.nii",
                    n)
    for n in (2, 3):
        _write_pair(elsewhere / f"volume-{n}.nii", elsewhere / f"segmentation-{n}.nii", n)
    os.symlink(elsewhere, root / "Training Batch 2")
    os.symlink(root, root / "Training Batch 1" / "loop")  # back up: walked once
    assert sorted(c.case_id for c in discover_cases(root)) == ["lits-0", "lits-1", "lits-2", "lits-3"]
    refs = tmp_path / "refs"
    (refs / "one").mkdir(parents=True)
    for n in (0, 1):
        os.link(root / "Training Batch 1" / f"segmentation-{n}.nii", refs / "one" / f"case{n}.nii")
    linked = tmp_path / "more_refs"
    linked.mkdir()
    for n in (2, 3):
        os.link(elsewhere / f"segmentation-{n}.nii", linked / f"case{n}.nii")
    os.symlink(linked, refs / "two")
    assert sorted(list_cases(refs, "--ref")) == ["case0", "case1", "case2", "case3"]


def test_a_label_with_liver_and_tumor_values_swapped_is_asked_about():
    """Labels with 1 = tumor and 2 = liver trained without a word (the 'tumor' 42,965 voxels, the 'liver' 1,083:
    the dataset audit). A right label whose tumors outnumber the liver is not asked: its liver's border faces the
    outside of the organ."""
    zz, yy, xx = np.mgrid[:20, :40, :40]
    organ = (zz - 10) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2 <= 12 ** 2
    nodule = (zz - 10) ** 2 + (yy - 18) ** 2 + (xx - 16) ** 2 <= 3 ** 2
    swapped = np.where(organ, 2, 0).astype(np.uint8)
    swapped[nodule] = 1
    warned = [w for w in label_content_warnings(swapped) if "swapped" in w]
    assert len(warned) == 1 and "100% of the liver's border faces tumor" in warned[0]
    assert "--label-map '{\"0\": 0, \"1\": 2, \"2\": 1}'" in warned[0]
    right = np.where(organ, 1, 0).astype(np.uint8)
    right[nodule] = 2
    assert label_content_warnings(right) == []
    burden = np.where(organ, 1, 0).astype(np.uint8)  # a tumor filling most of the liver, the liver a rim around it
    burden[organ & ((zz - 10) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2 <= 10 ** 2)] = 2
    assert np.count_nonzero(burden == 2) > np.count_nonzero(burden == 1)
    assert label_content_warnings(burden) == []


def test_label_values_a_map_drops_inside_the_liver_are_named_and_other_organs_beside_it_are_not():
    """MSD's tumors (2) under '--label-map {"1": 1}' became holes in the liver without a word, while synthetic tumors
    were trained as tumor (the training audit). Dropped values inside the liver are named; another organ's label
    that touches the liver with part of its rim (a kidney under TotalSegmentator's '{"5": 1}') is not."""
    from LiverTumorSegLib.io.labels import remap_labels
    from LiverTumorSegLib.training.datasets import label_content_warnings

    raw = np.zeros((20, 40, 40), np.uint8)
    raw[2:18, 5:30, 5:30] = 1
    raw[8:12, 12:18, 12:18] = 2  # a tumor inside the liver
    labels = remap_labels(raw, {"1": 1}, "msd.nii.gz", log_dropped=False)
    said = label_content_warnings(labels, raw, {"1": 1})
    assert len(said) == 1 and "value(s) 2 (144 voxels)" in said[0] and "lie inside the liver and became 0" in said[0]
    assert label_content_warnings(remap_labels(raw, {"1": 1, "2": 2}), raw, {"1": 1, "2": 2}) == []
    organs = np.zeros((20, 40, 40), np.uint8)
    organs[2:18, 5:30, 5:25] = 5   # liver
    organs[6:14, 10:20, 25:33] = 2  # a kidney beside it: one face of its rim on the liver
    organs[6:14, 32:38, 5:12] = 1   # the spleen, apart
    mapped = remap_labels(organs, {"5": 1}, "ts.nii.gz", log_dropped=False)
    assert label_content_warnings(mapped, organs, {"5": 1}) == []
    # a tumor at the liver's extreme (it forms the top of the liver label's box) and one touching another dropped
    # organ are named too: both were left out (a part reaching the box's margin; parts of values merged: the review)
    dome = np.zeros((24, 40, 40), np.uint8)
    dome[2:18, 5:30, 5:30] = 1
    dome[14:18, 12:18, 12:18] = 2        # the liver's top slices, inside its outline
    dome[2:18, 18:22, 26:34] = 3         # a vessel label (3) running out of the liver through its side
    dome[8:12, 20:26, 20:26] = 2         # a second tumor touching the vessel label (3)
    found = label_content_warnings(remap_labels(dome, {"1": 1}, "d.nii.gz", log_dropped=False), dome, {"1": 1},
                                   (2.0, 1.0, 1.0))
    assert len(found) == 1 and "value(s) 2 (" in found[0] and "3 (" not in found[0]
    assert "(288 voxels)" in found[0]  # both tumors: 144 + 144


def test_a_folder_of_two_layouts_says_which_one_is_not_read(tmp_path, caplog):
    """LiTS volumes beside 3D-IRCADb patient folders: the LiTS cases were read and the 3D-IRCADb patients left out
    without a word (the data audit)."""
    import logging

    from LiverTumorSegLib.training.datasets import detect_format

    (tmp_path / "lits").mkdir()
    for name in ("volume-0.nii", "segmentation-0.nii"):
        (tmp_path / "lits" / name).write_bytes(b"")
    (tmp_path / "ircadb" / "3Dircadb1.1" / "PATIENT_DICOM").mkdir(parents=True)
    with caplog.at_level(logging.WARNING):
        assert detect_format(tmp_path) == "lits"
    assert "holds data of the 3D-IRCADb (PATIENT_DICOM folders) layout(s) too, which are not read: only its LiTS" \
        in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert detect_format(tmp_path / "lits") == "lits"
        assert detect_format(tmp_path) == "lits"  # said once a run (crossval lists the cases for every fold)
    assert "not read" not in caplog.text
    # an MSD data set whose imagesTr/ and labelsTr/ keep LiTS names: that is its data, not a second layout
    msd = tmp_path / "msd"
    for folder, name in (("imagesTr", "volume-0.nii.gz"), ("labelsTr", "volume-0.nii.gz")):
        (msd / folder).mkdir(parents=True)
        (msd / folder / name).write_bytes(b"")
    (msd / "dataset.json").write_text("{}")
    with caplog.at_level(logging.WARNING):
        assert detect_format(msd) == "msd"
    assert "not read" not in caplog.text
