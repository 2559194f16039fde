"""Tests for LiverTumorSegLib.io: exact geometry round trips, DICOM series, label maps, bad inputs.

Arrays are (z, y, x); nibabel arrays are (x, y, z); affines are IJK -> RAS (nibabel convention).
"""
import importlib.util
import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from LiverTumorSegLib.errors import InputError, LabelError, OutputExistsError
from LiverTumorSegLib.io import (DicomSeriesInfo, list_dicom_series, read_header_geometry, read_label_map, read_volume,
                                 to_hu_dtype, write_label_map, write_volume)
from LiverTumorSegLib.volume import CTVolume, ImageGeometry

DATA = Path(__file__).resolve().parents[1] / "Data"


def rotation_xyz(ax_deg: float, ay_deg: float, az_deg: float) -> np.ndarray:
    """Rotation matrix R = Rz @ Ry @ Rx (degrees)."""
    ax, ay, az = np.deg2rad([ax_deg, ay_deg, az_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def make_affine(columns_ras: np.ndarray, spacing_xyz, origin_ras) -> np.ndarray:
    """4x4 IJK->RAS affine from unit column directions (RAS), spacing and origin."""
    aff = np.eye(4)
    aff[:3, :3] = np.asarray(columns_ras, float) @ np.diag(spacing_xyz)
    aff[:3, 3] = origin_ras
    return aff


AFFINES = {
    "ras": make_affine(np.eye(3), (0.8, 0.9, 2.5), (-120.5, -80.25, 33.0)),
    "lps": make_affine(np.diag([-1.0, -1.0, 1.0]), (0.7, 0.7, 3.0), (150.0, 170.5, -200.0)),
    "flipped": make_affine(np.diag([1.0, -1.0, -1.0]), (1.1, 1.2, 5.0), (-10.0, 20.0, 30.0)),
    "permuted": make_affine(np.array([[0, 0, -1.0], [1.0, 0, 0], [0, -1.0, 0]]), (2.0, 3.0, 1.5), (5.5, -6.5, 7.5)),
    "oblique": make_affine(rotation_xyz(17, -23, 41), (0.7, 0.9, 2.5), (-100.3, 20.1, 55.7)),
}


def hu_data_xyz(shape_xyz=(7, 6, 5), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1024, 2000, size=shape_xyz).astype(np.int16)


# ------------------------------------------------------------------------------------------- NIfTI
@pytest.mark.parametrize("name", sorted(AFFINES))
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_nifti_round_trip_keeps_affine_and_voxels_exactly(tmp_path, name, suffix):
    data = hu_data_xyz()
    src = tmp_path / f"ct{suffix}"
    nib.save(nib.Nifti1Image(data, AFFINES[name]), str(src))
    input_affine = nib.load(str(src)).affine

    vol = read_volume(src)
    assert vol.array.dtype == np.int16
    assert vol.array.shape == (5, 6, 7)
    assert np.array_equal(vol.array, data.T)
    np.testing.assert_allclose(vol.geometry.ijk_to_ras(), input_affine, atol=1e-9)
    d = vol.geometry.direction_matrix
    np.testing.assert_allclose(d.T @ d, np.eye(3), atol=1e-6)

    labels = (vol.array > 500).astype(np.uint8) + (vol.array > 1500)
    out = write_label_map(tmp_path / f"lab{suffix}", labels, vol.geometry)
    written = nib.load(str(out))
    assert np.array_equal(written.affine, input_affine)  # bit-exact, also oblique
    assert written.get_data_dtype() == np.uint8
    assert np.array_equal(np.asanyarray(written.dataobj), labels.T)
    header = written.header
    assert int(header["sform_code"]) == 1 and int(header["qform_code"]) == 1
    np.testing.assert_allclose(header.get_qform(), header.get_sform(), atol=1e-5)

    # ITK (Slicer) sees the same geometry as nibabel in the written file.
    itk = sitk.ReadImage(str(out))
    np.testing.assert_allclose(itk.GetDirection(), vol.geometry.direction, atol=1e-6)
    np.testing.assert_allclose(itk.GetOrigin(), vol.geometry.origin, atol=1e-4)
    np.testing.assert_allclose(itk.GetSpacing(), vol.geometry.spacing, atol=1e-5)


def test_write_volume_nifti_round_trip_keeps_dtype_and_geometry(tmp_path):
    vol = CTVolume(array=np.arange(60, dtype=np.int16).reshape(3, 4, 5) - 30,
                   geometry=ImageGeometry.from_ijk_to_ras(AFFINES["oblique"]))
    out = write_volume(tmp_path / "ct.nii.gz", vol)
    back = read_volume(out)
    assert back.array.dtype == np.int16 and np.array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.geometry.ijk_to_ras(), vol.geometry.ijk_to_ras(), atol=1e-6)
    fvol = CTVolume(array=vol.array.astype(np.float32) + 0.25, geometry=vol.geometry)
    fback = read_volume(write_volume(tmp_path / "f.nii", fvol))
    assert fback.array.dtype == np.float32 and np.array_equal(fback.array, fvol.array)


def test_nifti_scl_slope_is_applied_and_integral_result_becomes_int16(tmp_path):
    stored = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    img = nib.Nifti1Image(stored, np.eye(4))
    img.header.set_slope_inter(2.0, -1024.0)
    nib.save(img, str(tmp_path / "s.nii.gz"))
    vol = read_volume(tmp_path / "s.nii.gz")
    assert vol.array.dtype == np.int16
    assert np.array_equal(vol.array, (stored.astype(np.int32) * 2 - 1024).T)


@pytest.mark.parametrize("image_class, offset, fmt", [(nib.Nifti1Image, 112, "<2f"), (nib.Nifti2Image, 176, "<2d")])
@pytest.mark.parametrize("slope, inter, warned", [(0.0, -1024.0, True), (float("nan"), -1024.0, True),
                                                  (0.0, 0.0, False), (1.0, -1024.0, False)])
def test_a_nifti_intercept_that_its_zero_slope_leaves_unused_is_named(tmp_path, image_class, offset, fmt, slope,
                                                                       inter, warned):
    """scl_slope 0 with scl_inter -1024: the NIfTI standard (and nibabel, this reader) applies no scaling, ITK (3D
    Slicer, SimpleITK) adds the intercept, so Slicer showed the CT 1024 HU lower than segment read it, and neither
    said a word. The values are read as stored, with a warning naming both readings."""
    import struct

    stored = np.arange(-1000, -1000 + 8 * 8 * 4, dtype=np.int16).reshape(8, 8, 4)
    path = tmp_path / "ct.nii"
    nib.save(image_class(stored, np.eye(4)), str(path))
    raw = bytearray(path.read_bytes())
    raw[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, slope, inter)
    path.write_bytes(bytes(raw))
    vol = read_volume(path)
    expected = stored.astype(np.float64) + (inter if slope == 1.0 else 0.0)  # slope 0 or NaN: as stored
    assert np.array_equal(vol.array.astype(np.float64), expected.T)
    notes = [w for w in vol.meta.get("warnings", []) if "scl_inter" in w]
    assert bool(notes) == warned, notes
    if warned:
        assert f"scl_inter {inter:g}. By the NIfTI standard a slope of {slope:g} means no scaling" in notes[0]
        assert "3D Slicer, SimpleITK" in notes[0]


def test_nifti_qform_only_and_conflicting_sform(tmp_path):
    data = hu_data_xyz()
    img = nib.Nifti1Image(data, None)
    img.set_qform(AFFINES["oblique"], code=1)
    img.set_sform(None, code=0)
    nib.save(img, str(tmp_path / "q.nii.gz"))
    loaded = nib.load(str(tmp_path / "q.nii.gz"))
    assert int(loaded.header["sform_code"]) == 0
    vol = read_volume(tmp_path / "q.nii.gz")
    np.testing.assert_allclose(vol.geometry.ijk_to_ras(), loaded.affine, atol=1e-9)
    np.testing.assert_allclose(vol.geometry.ijk_to_ras(), AFFINES["oblique"], atol=1e-5)

    img = nib.Nifti1Image(data, None)
    img.set_qform(AFFINES["lps"], code=1)
    img.set_sform(AFFINES["ras"], code=2)
    nib.save(img, str(tmp_path / "c.nii.gz"))
    vol = read_volume(tmp_path / "c.nii.gz")
    np.testing.assert_allclose(vol.geometry.ijk_to_ras(), AFFINES["ras"], atol=1e-5)  # sform wins, as in nibabel
    assert any("sform and qform disagree" in w for w in vol.meta["warnings"])


def test_to_hu_dtype_keeps_int16_only_when_integral_and_in_range():
    assert to_hu_dtype(np.array([[-1024.0, 3071.0]], np.float64)).dtype == np.int16
    assert to_hu_dtype(np.array([[0.5, 1.0]], np.float64)).dtype == np.float32
    assert to_hu_dtype(np.array([[0, 40000]], np.int32)).dtype == np.float32
    assert to_hu_dtype(np.array([[0, 4000]], np.uint16)).dtype == np.int16
    assert to_hu_dtype(np.array([[np.nan, 1.0]], np.float32)).dtype == np.float32


def test_to_hu_dtype_returns_an_array_already_of_the_type_it_would_get_without_a_copy():
    """int16 voxels (uint8 ones with ``uint8_if_fits``) are returned as they are; the other of the two is converted."""
    ct, labels = np.array([[-1024, 40]], np.int16), np.array([[0, 2]], np.uint8)
    assert to_hu_dtype(ct) is ct and to_hu_dtype(labels, uint8_if_fits=True) is labels
    assert to_hu_dtype(labels).dtype == np.int16 and to_hu_dtype(ct[:, 1:], uint8_if_fits=True).dtype == np.uint8


@pytest.mark.parametrize("image_class, header_bytes", [(nib.Nifti2Image, 540), (nib.Nifti1Image, 348)])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_label_and_probability_maps_of_a_nifti_ct_are_written_in_its_nifti_version(tmp_path, image_class,
                                                                                    header_bytes, suffix):
    """A NIfTI-2 CT's label map was written as NIfTI-1: tools expect the format they gave back, and NIfTI-1
    cannot hold more than 32767 voxels along an axis. NIfTI-1 stays NIfTI-1."""
    from LiverTumorSegLib.io import nifti_write_options, write_probability_map

    src = tmp_path / f"ct{suffix}"
    nib.save(image_class(hu_data_xyz(), AFFINES["oblique"]), str(src))
    vol = read_volume(src)
    labels = (vol.array > 500).astype(np.uint8)
    written = {write_label_map(tmp_path / f"lab{suffix}", labels, vol.geometry, **nifti_write_options(vol)): labels,
               write_probability_map(tmp_path / f"p{suffix}", labels * 255, vol.geometry,
                                     **nifti_write_options(vol)): labels * 255}
    for path, voxels in written.items():
        image = nib.load(str(path))
        assert type(image) is image_class and int(image.header["sizeof_hdr"]) == header_bytes
        # NIfTI-1 stores the affine in float32 and reads back bit-exact; NIfTI-2's float64 to rounding
        np.testing.assert_allclose(image.affine, nib.load(str(src)).affine, rtol=0, atol=1e-12)
        assert header_bytes == 540 or np.array_equal(image.affine, nib.load(str(src)).affine)
        back = read_volume(path)
        assert np.array_equal(back.array, voxels) and back.geometry.almost_equal(vol.geometry, tol=1e-9)


def test_a_label_map_longer_than_nifti1_holds_is_written_as_nifti2(tmp_path):
    """NIfTI-1 stores dimensions as int16: a map with 32768 voxels along an axis made nibabel fail."""
    labels = np.zeros((2, 1, 32768), np.uint8)
    labels[1, 0, 32767] = 2
    geometry = ImageGeometry(spacing=(0.01, 1.0, 2.0), origin=(1.0, 2.0, 3.0))
    image = nib.load(str(write_label_map(tmp_path / "long.nii.gz", labels, geometry)))
    assert type(image) is nib.Nifti2Image and image.shape == (32768, 1, 2)
    assert np.array_equal(read_label_map(tmp_path / "long.nii.gz").array, labels)


def test_real_ct3slice_geometry_equals_nibabel_affine_and_label_round_trips(tmp_path):
    path = DATA / "ct3slice_ct.nii.gz"
    vol = read_volume(path)
    affine = nib.load(str(path)).affine
    np.testing.assert_allclose(vol.geometry.ijk_to_ras(), affine, atol=1e-9)
    assert vol.shape_zyx == (3, 512, 512) and vol.array.dtype == np.int16
    assert int(vol.array.min()) == -3024 and int(vol.array.max()) == 1381
    np.testing.assert_allclose(vol.geometry.spacing, (0.8105, 0.8105, 1.0), atol=1e-3)
    lab = read_label_map(DATA / "ct3slice_liver_seg.nii.gz", reference=vol)
    assert lab.array.dtype == np.uint8 and set(np.unique(lab.array)) == {0, 1}
    out = write_label_map(tmp_path / "seg.nii.gz", lab.array, vol.geometry)
    assert np.array_equal(nib.load(str(out)).affine, affine)


def test_real_example_ct_sm_is_ras_with_3mm_voxels():
    path = DATA / "example_ct_sm.nii.gz"
    vol = read_volume(path)
    assert vol.shape_zyx == (30, 101, 122)
    np.testing.assert_allclose(vol.geometry.ijk_to_ras(), nib.load(str(path)).affine, atol=1e-9)
    np.testing.assert_allclose(vol.geometry.direction_matrix, np.diag([-1.0, -1.0, 1.0]), atol=1e-6)  # RAS in LPS
    np.testing.assert_allclose(vol.geometry.spacing, (3.0, 3.0, 3.0), atol=1e-4)


# --------------------------------------------------------------------------------------- NRRD / MHA
@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_nrrd_and_mha_label_and_volume_round_trip(tmp_path, suffix):
    geometry = ImageGeometry.from_ijk_to_ras(AFFINES["oblique"])
    labels = np.random.default_rng(1).integers(0, 3, size=(4, 5, 6)).astype(np.uint8)
    out = write_label_map(tmp_path / f"lab{suffix}", labels, geometry)
    itk = sitk.ReadImage(str(out))
    assert itk.GetPixelID() == sitk.sitkUInt8
    back = read_label_map(out)
    assert back.array.dtype == np.uint8 and np.array_equal(back.array, labels)
    np.testing.assert_allclose(back.geometry.direction, geometry.direction, atol=1e-12)
    np.testing.assert_allclose(back.geometry.spacing, geometry.spacing, atol=1e-12)
    np.testing.assert_allclose(back.geometry.origin, geometry.origin, atol=1e-12)

    ct = CTVolume(array=(labels.astype(np.int16) * 100 - 1000), geometry=geometry)
    ct_back = read_volume(write_volume(tmp_path / f"ct{suffix}", ct))
    assert ct_back.array.dtype == np.int16 and np.array_equal(ct_back.array, ct.array)


@pytest.mark.parametrize("suffix", [".nhdr", ".mhd"])
def test_detached_header_formats_are_read(tmp_path, suffix):
    arr = np.arange(-30, 30, dtype=np.int16).reshape(3, 4, 5)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.5, 0.6, 2.0))
    img.SetOrigin((1.0, 2.0, 3.0))
    sitk.WriteImage(img, str(tmp_path / f"ct{suffix}"))
    vol = read_volume(tmp_path / f"ct{suffix}")
    assert np.array_equal(vol.array, arr)
    np.testing.assert_allclose(vol.geometry.spacing, (0.5, 0.6, 2.0))
    np.testing.assert_allclose(vol.geometry.origin, (1.0, 2.0, 3.0))


def test_write_refuses_existing_file_and_unknown_suffix(tmp_path):
    geometry = ImageGeometry(spacing=(1, 1, 1))
    labels = np.zeros((2, 3, 4), np.uint8)
    write_label_map(tmp_path / "a.nii.gz", labels, geometry)
    with pytest.raises(OutputExistsError):
        write_label_map(tmp_path / "a.nii.gz", labels, geometry)
    write_label_map(tmp_path / "a.nii.gz", labels + 1, geometry, overwrite=True)
    assert np.asanyarray(nib.load(str(tmp_path / "a.nii.gz")).dataobj).max() == 1
    with pytest.raises(InputError, match="unknown output type"):
        write_label_map(tmp_path / "a.png", labels, geometry)
    with pytest.raises(InputError, match="Slicer segmentation"):
        write_label_map(tmp_path / "a.seg.nrrd", labels, geometry)
    with pytest.raises(ValueError, match="uint8"):
        write_label_map(tmp_path / "b.nii.gz", labels.astype(np.int16) + 300, geometry)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz"]  # no temp files left behind


@pytest.mark.parametrize("name", ["OUT.MHA", "out.Mha"])
def test_a_metaimage_named_in_upper_case_is_refused_naming_the_lower_case_name(tmp_path, name):
    """ITK (3D Slicer, SimpleITK) opens a MetaImage by a lower-case .mha only: OUT.MHA was written, and no ITK-based
    program could open it ('Unable to determine ImageIO reader'). Refused before anything is written; .NRRD and
    .NII.GZ, which ITK and nibabel open in any case, are written."""
    geometry = ImageGeometry(spacing=(1, 1, 1))
    labels = np.zeros((2, 3, 4), np.uint8)
    with pytest.raises(InputError, match=r"lower-case extension \.mha, .*name it '.*\.mha'"):
        write_label_map(tmp_path / name, labels, geometry)
    assert list(tmp_path.iterdir()) == []
    for other in ("a.NRRD", "b.NII.GZ"):
        assert read_volume(write_label_map(tmp_path / other, labels, geometry)).geometry == geometry


def test_a_label_map_with_voxels_over_20_mm_is_refused_as_segment_refuses_such_a_ct(tmp_path):
    """measure and followup took a label map with 300 mm voxels (a header in cm read as mm, or worse): a 4118 mm long
    axis, 11,502,000 mL and 'PD', with volume warnings only, where segment refuses such a CT as a wrong header."""
    from LiverTumorSegLib.cli import main

    labels = np.zeros((4, 6, 8), np.uint8)
    labels[1:3, 1:5, 1:7] = 1
    path = write_label_map(tmp_path / "huge.nii.gz", labels, ImageGeometry(spacing=(300.0, 300.0, 5.0)))
    with pytest.raises(InputError, match=r"voxel spacing \(300, 300, 5\) mm, over 20 mm: the header is wrong"):
        read_label_map(path)
    assert main(["measure", str(path), "-o", str(tmp_path / "m.json")]) == 2 and not (tmp_path / "m.json").exists()
    # one slice of 30 mm is no axis the label map extends along: kept, as for a CT
    one = write_label_map(tmp_path / "one.nii.gz", labels[:1], ImageGeometry(spacing=(0.8, 0.8, 30.0)))
    assert read_label_map(one).shape_zyx == (1, 6, 8)


@pytest.mark.parametrize("name", ["OUT.Nii", "out.Nii.Gz", "out.nii.GZ"])
def test_a_nifti_named_in_mixed_case_is_refused_and_read_with_a_rename_hint(tmp_path, name):
    """``segment -o X.Nii`` wrote (exit 0) a label map that ITK refuses ('mixed case extension is not valid') and
    that this tool could not read back ('No such file ... X.nii. Check that the file is complete'). Refused before
    anything is written, naming the lower-case name; all upper case (.NII.GZ) stays allowed (ITK and nibabel open it),
    and such an input says to rename it."""
    import shutil

    geometry = ImageGeometry(spacing=(1, 1, 1))
    labels = np.zeros((2, 3, 4), np.uint8)
    with pytest.raises(InputError, match=r"refuse a NIfTI extension in mixed case .*name it '.*\.nii(\.gz)?'"):
        write_label_map(tmp_path / name, labels, geometry)
    assert list(tmp_path.iterdir()) == []
    written = write_label_map(tmp_path / ("ok.nii.gz" if name.lower().endswith(".gz") else "ok.nii"), labels, geometry)
    if name == "OUT.Nii":  # nibabel opens X.Nii as X.nii: no such file
        shutil.copy(written, tmp_path / name)
        with pytest.raises(InputError, match=r"extension '\.Nii' is in mixed case, .*rename it to 'OUT\.nii'"):
            read_volume(tmp_path / name)


# ------------------------------------------------------------------------------------------- DICOM
def write_dicom_series(folder: Path, stored_zyx: np.ndarray, uid: str, description: str,
                       origin=(-10.5, 20.25, 100.0), pixel_spacing_xy=(0.6, 0.75), thickness=2.5,
                       row_dir=(1.0, 0.0, 0.0), col_dir=(0.0, 1.0, 0.0), slope=2, intercept=-1024,
                       prefix="s", shift_per_slice=(0.0, 0.0, 0.0)) -> None:
    """Write int16 stored values as a CT series with RescaleSlope/Intercept tags (LPS geometry).

    SimpleITK's writer divides by the rescale tags, so it is given HU = stored * slope + intercept and
    stores exactly ``stored``. ``shift_per_slice`` (LPS mm) is added to each slice's position once per slice
    index (a gantry tilt when it lies in the image plane).
    """
    folder.mkdir(parents=True, exist_ok=True)
    normal = np.cross(row_dir, col_dir)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    hu = stored_zyx.astype(np.int32) * slope + intercept
    for k in range(stored_zyx.shape[0]):
        position = np.asarray(origin) + k * thickness * normal + k * np.asarray(shift_per_slice, dtype=float)
        sl = sitk.GetImageFromArray(hu[k].astype(np.int16))
        sl.SetSpacing(pixel_spacing_xy)
        tags = {"0008|0060": "CT", "0020|000d": "1.2.826.0.1.3680043.2.1125.9", "0020|000e": uid,
                "0008|103e": description, "0020|0011": "1",
                "0020|0032": "\\".join(f"{v:.6f}" for v in position),
                "0020|0037": "\\".join(f"{v:.8f}" for v in (*row_dir, *col_dir)),
                "0018|0050": str(thickness), "0028|1053": str(slope), "0028|1052": str(intercept),
                "0020|0013": str(k + 1), "0008|0018": f"{uid}.{k + 1}"}
        for tag, value in tags.items():
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{prefix}{k:03d}.dcm"))
        writer.Execute(sl)


UID_A = "1.2.826.0.1.3680043.2.1125.1.111"
UID_B = "1.2.826.0.1.3680043.2.1125.2.222"


def test_dicom_series_is_read_in_hu_with_geometry(tmp_path):
    stored = np.random.default_rng(2).integers(0, 1500, size=(4, 8, 10)).astype(np.int16)
    write_dicom_series(tmp_path / "dcm", stored, UID_A, "abdomen venous")
    # the files really hold the stored values (uncompressed pixel data at the end of each file)
    raw = np.frombuffer((tmp_path / "dcm" / "s000.dcm").read_bytes()[-stored[0].nbytes:], "<i2")
    assert np.array_equal(raw.reshape(8, 10), stored[0])

    vol = read_volume(tmp_path / "dcm")
    assert vol.array.dtype == np.int16
    assert np.array_equal(vol.array, stored.astype(np.int32) * 2 - 1024)
    np.testing.assert_allclose(vol.geometry.spacing, (0.6, 0.75, 2.5), atol=1e-6)
    np.testing.assert_allclose(vol.geometry.origin, (-10.5, 20.25, 100.0), atol=1e-6)
    np.testing.assert_allclose(vol.geometry.direction_matrix, np.eye(3), atol=1e-6)
    assert vol.meta["series_uid"] == UID_A and vol.meta["num_files"] == 4

    # one file of the series reads the whole series
    one = read_volume(tmp_path / "dcm" / "s002.dcm")
    assert np.array_equal(one.array, vol.array)


def test_single_slice_dicom_uses_slice_thickness(tmp_path):
    write_dicom_series(tmp_path / "one", np.full((1, 6, 7), 600, np.int16), UID_A, "one", thickness=5.0)
    vol = read_volume(tmp_path / "one")
    assert vol.shape_zyx == (1, 6, 7) and int(vol.array[0, 0, 0]) == 600 * 2 - 1024
    np.testing.assert_allclose(vol.geometry.spacing, (0.6, 0.75, 5.0), atol=1e-6)


def test_dicom_oblique_orientation_gives_rotated_direction(tmp_path):
    c, s = np.cos(np.deg2rad(20)), np.sin(np.deg2rad(20))
    row, col = (1.0, 0.0, 0.0), (0.0, c, s)
    stored = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)
    write_dicom_series(tmp_path / "obl", stored, UID_A, "tilted", row_dir=row, col_dir=col, slope=1, intercept=-1000)
    vol = read_volume(tmp_path / "obl")
    expected = np.stack([row, col, np.cross(row, col)], axis=1)
    np.testing.assert_allclose(vol.geometry.direction_matrix, expected, atol=1e-5)
    assert np.array_equal(vol.array, stored - 1000)


def test_dicom_missing_slice_is_refused_and_small_jitter_is_a_warning(tmp_path):
    write_dicom_series(tmp_path / "gap", np.zeros((5, 4, 4), np.int16), UID_A, "gap")
    (tmp_path / "gap" / "s002.dcm").unlink()
    with pytest.raises(InputError, match=r"missing slices or uneven slice spacing \(gaps 2.5..5 mm, typical 2.5 mm; "
                                         r"the one most off, 5 mm, between 's001.dcm' and 's003.dcm' \(at 102.5 and "
                                         r"107.5 mm along the slice normal\): about 1 slice\(s\) missing there\)"):
        read_volume(tmp_path / "gap")
    # one slice 0.1 mm off its place: readable, with a note
    write_dicom_series(tmp_path / "jitter", np.zeros((5, 4, 4), np.int16), UID_A, "jitter")
    f = tmp_path / "jitter" / "s002.dcm"
    img = sitk.ReadImage(str(f))
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(f))
    reader.ReadImageInformation()
    for key in reader.GetMetaDataKeys():
        img.SetMetaData(key, reader.GetMetaData(key))
    img.SetMetaData("0020|0032", "-10.500000\\20.250000\\105.100000")
    img.SetOrigin((-10.5, 20.25, 105.1))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetFileName(str(f))
    writer.Execute(img)
    vol = read_volume(tmp_path / "jitter")
    assert vol.shape_zyx == (5, 4, 4)
    assert any("slice spacing varies by up to 0.1 mm" in w for w in vol.meta["warnings"])


def test_gantry_tilted_dicom_series_is_refused_and_header_rounding_is_not(tmp_path):
    # 6 slices 3 mm apart along the normal, each 0.8 mm further posterior: a 15 degree tilt (atan(0.8 / 3))
    write_dicom_series(tmp_path / "tilt", np.zeros((6, 8, 8), np.int16), UID_A, "tilted", thickness=3.0,
                       shift_per_slice=(0.0, 0.8038, 0.0))
    with pytest.raises(InputError, match=r"gantry-tilted: its slices shift by up to 4.02 mm within the image plane "
                                         r"over 15 mm of scan \(a tilt of about 15 degrees\).*dcm2niix"):
        read_volume(tmp_path / "tilt")
    # in-plane positions that wander by 0.2 mm in all (under half the 0.6 mm pixel) are header rounding: read
    write_dicom_series(tmp_path / "round", np.zeros((6, 8, 8), np.int16), UID_A, "rounded", thickness=3.0,
                       shift_per_slice=(0.04, 0.0, 0.0))
    vol = read_volume(tmp_path / "round")
    assert vol.shape_zyx == (6, 8, 8)
    np.testing.assert_allclose(vol.geometry.spacing[2], 3.0, atol=1e-3)


def test_an_oblique_nrrd_with_3_decimal_directions_is_not_called_sheared(tmp_path):
    """Headers written with 3 decimals round a 20 degree rotation's cosines by up to 5e-4."""
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    header = (f"NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 4 4 4\n"
              f"space directions: ({c:.3f},{s:.3f},0) ({-s:.3f},{c:.3f},0) (0,0,2)\nkinds: domain domain domain\n"
              f"endian: little\nencoding: raw\nspace origin: (0,0,0)\n\n")
    path = tmp_path / "oblique.nrrd"
    path.write_bytes(header.encode("ascii") + np.zeros(64, "<i2").tobytes())
    assert read_volume(path).shape_zyx == (4, 4, 4)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".nii.gz"])
def test_sheared_grid_is_refused_in_every_format(tmp_path, suffix):
    """A grid whose slice axis leans 15 degrees against the image plane (an uncorrected gantry tilt) would give
    wrong volumes (voxel volume != product of the spacings) and misplaced labels: refused, as for NIfTI."""
    image = sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16))
    tilt = np.radians(15)
    direction = np.eye(3)
    direction[:, 2] = (0.0, np.sin(tilt), np.cos(tilt))
    image.SetSpacing((1.0, 1.0, 3.0 / np.cos(tilt)))
    path = tmp_path / f"shear{suffix}"
    if suffix == ".nii.gz":  # sform only (a qform cannot hold a shear): ITK's writer would drop it
        affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.block([[direction * np.array([1.0, 1.0, 3.0 / np.cos(tilt)]),
                                                               np.zeros((3, 1))], [np.zeros((1, 3)), np.ones((1, 1))]])
        img = nib.Nifti1Image(np.zeros((6, 5, 4), np.int16), None)
        img.set_sform(affine, code=1)
        img.set_qform(None, code=0)
        nib.save(img, str(path))
    else:
        image.SetDirection(tuple(direction.ravel()))
        sitk.WriteImage(image, str(path))
    with pytest.raises(InputError, match=r"sheared \(non-orthogonal\) grid: its voxel axes are up to 15 degrees off "
                                         r"a right angle"):
        read_volume(path)


def _retag(path: Path, **attributes) -> None:
    """Rewrite one DICOM file with some attributes (pydicom keywords) changed, or removed when None."""
    pydicom = pytest.importorskip("pydicom")  # an environment without it
    ds = pydicom.dcmread(str(path))
    for keyword, value in attributes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(str(path))


def test_dicom_slices_must_agree_on_position_orientation_and_pixel_spacing(tmp_path):
    """ITK builds the grid from the first file and fills in what is missing: without positions it invented 1 mm
    slices at the origin (a third of the liver volume), another pixel spacing in the first file was used for all
    slices, and a scout image mixed into the series was called a gantry tilt."""
    stored = np.zeros((5, 4, 4), np.int16)
    write_dicom_series(tmp_path / "nopos", stored, UID_A, "no positions")
    _retag(tmp_path / "nopos" / "s002.dcm", ImagePositionPatient=None)
    with pytest.raises(InputError, match=r"1 of its 5 files \('s002.dcm'\) has no ImagePositionPatient while the "
                                         r"others have one: such files are probably not slices of this CT \(a dose "
                                         r"report screen.*Remove them"):
        read_volume(tmp_path / "nopos")
    write_dicom_series(tmp_path / "nopos_all", stored, UID_A, "no positions at all")
    for name in sorted((tmp_path / "nopos_all").glob("*.dcm")):
        _retag(name, ImagePositionPatient=None)
    with pytest.raises(InputError, match=r"its files \('s000.dcm', 's001.dcm', 's002.dcm' and 2 more\) have no "
                                         r"ImagePositionPatient, so the slice positions .*Re-export the series"):
        read_volume(tmp_path / "nopos_all")
    write_dicom_series(tmp_path / "spacing", stored, UID_A, "odd spacing")
    _retag(tmp_path / "spacing" / "s003.dcm", PixelSpacing=[0.8, 0.8])
    with pytest.raises(InputError, match=r"another pixel spacing \(PixelSpacing\) \(0.8\\0.8\)"):
        read_volume(tmp_path / "spacing")
    write_dicom_series(tmp_path / "scout", stored, UID_A, "with a scout")
    _retag(tmp_path / "scout" / "s004.dcm", ImageOrientationPatient=[0, 1, 0, 0, 0, -1])
    with pytest.raises(InputError, match=r"'s004.dcm' has another orientation .* a localizer/scout image"):
        read_volume(tmp_path / "scout")


def test_dicom_files_of_another_orientation_are_all_named_and_counted(tmp_path):
    """Coronal reformats filed under the axial series' UID were reported one file at a time ("file 'c001.dcm' has
    another orientation ...; remove that file"): the user removed it and was refused again for the next one."""
    stored = np.zeros((6, 4, 4), np.int16)
    write_dicom_series(tmp_path / "mixed", stored, UID_A, "axial with coronal reformats")
    write_dicom_series(tmp_path / "mixed", np.zeros((4, 4, 4), np.int16), UID_A, "coronal", prefix="c",
                       origin=(-10.5, 40.0, 80.0), col_dir=(0.0, 0.0, -1.0))
    for name in sorted((tmp_path / "mixed").glob("c*.dcm")):  # their own images, not copies of the axial slices
        _retag(name, SOPInstanceUID=f"{UID_A}.9{name.stem[1:]}")
    with pytest.raises(InputError, match=r"4 of its 10 files \('c000.dcm', 'c001.dcm', 'c002.dcm' and 1 more\) have "
                                         r"another orientation \(ImageOrientationPatient\) \(e.g. 'c000.dcm': "
                                         r"1\\0\\0\\0\\0\\-1\) than the other 6 files \(e.g. 's\d+.dcm': "
                                         r"1\\0\\0\\0\\1\\0\): .*remove those files"):
        read_volume(tmp_path / "mixed")


@pytest.mark.parametrize("spacing", [[-3, -3], [0, 0], [3], None], ids=["negative", "zero", "one_value", "missing"])
@pytest.mark.parametrize("slices", [5, 1])
def test_dicom_pixel_spacing_must_be_two_positive_numbers(tmp_path, spacing, slices):
    """ITK read -3\\-3 as 3 mm with the axes flipped (the CT segmented mirrored, exit 0), 0\\0 or a missing tag as
    1 mm, and one value as square pixels (then DICOM SEG output failed after the network). PixelSpacing is Type 1
    with two values (PS3.3 C.7.6.2)."""
    write_dicom_series(tmp_path / "s", np.zeros((slices, 4, 4), np.int16), UID_A, "spacing")
    for path in sorted((tmp_path / "s").iterdir()):
        _retag(path, PixelSpacing=spacing)
    with pytest.raises(InputError, match=r"pixel spacing \(PixelSpacing, 0028,0030\) of file .* two positive"):
        read_volume(tmp_path / "s")


def test_dicom_localizer_with_the_axial_orientation_is_named(tmp_path):
    """An axial scout among the slices was refused as 'uneven slice spacing', naming neither it nor the fix."""
    write_dicom_series(tmp_path / "s", np.zeros((6, 4, 4), np.int16), UID_A, "with scout")
    _retag(tmp_path / "s" / "s003.dcm", ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"],
           ImagePositionPatient=[-10.5, 20.25, 101.0])
    with pytest.raises(InputError, match=r"1 localizer \(scout\) image\(s\) among its slices \(s003.dcm"):
        read_volume(tmp_path / "s")


def test_dicom_float_pixel_data_is_named_not_called_no_series(tmp_path):
    """A folder of slices holding Float Pixel Data (7FE0,0008) said 'holds no DICOM series' (GDCM lists none)."""
    pydicom = pytest.importorskip("pydicom")

    write_dicom_series(tmp_path / "f", np.zeros((3, 4, 4), np.int16), UID_A, "float")
    for path in sorted((tmp_path / "f").iterdir()):
        ds = pydicom.dcmread(str(path))
        del ds.PixelData
        ds.FloatPixelData = np.zeros((4, 4), np.float32).tobytes()
        ds.BitsAllocated = 32
        for keyword in ("BitsStored", "HighBit", "PixelRepresentation", "RescaleIntercept", "RescaleSlope"):
            if keyword in ds:
                delattr(ds, keyword)
        ds.save_as(str(path))
    with pytest.raises(InputError, match=r"pixels are floating point \(Float Pixel Data"):
        read_volume(tmp_path / "f")


def test_dicom_uneven_gaps_that_add_up_are_refused(tmp_path):
    """Every gap within 20 % of the median (2.8 and 3.3 mm), but on the mean-spacing grid the middle slices lie
    more than half a slice from their recorded positions."""
    folder = tmp_path / "uneven"
    write_dicom_series(folder, np.zeros((24, 4, 4), np.int16), UID_A, "uneven", thickness=2.8)
    for k in range(24):
        z = 100.0 + (3.3 * k if k <= 12 else 3.3 * 12 + 2.8 * (k - 12))
        _retag(folder / f"s{k:03d}.dcm", ImagePositionPatient=[-10.5, 20.25, round(z, 6)])
    with pytest.raises(InputError, match=r"uneven slice spacing \(gaps 2.8..3.3 mm\) that adds up: .* would lie"):
        read_volume(folder)


def test_dicom_seg_of_a_multiframe_source_is_refused_plainly():
    Dataset = pytest.importorskip("pydicom.dataset").Dataset

    from LiverTumorSegLib.dicom_seg import _prepare_source_datasets
    enhanced = Dataset()
    enhanced.NumberOfFrames = 30
    with pytest.raises(InputError, match="multi-frame \\(enhanced\\) image; DICOM SEG output is written for series"):
        _prepare_source_datasets([enhanced], ["mf.dcm"])


def test_two_series_in_one_folder_list_and_select(tmp_path):
    folder = tmp_path / "mixed"
    a = np.full((3, 6, 7), 600, np.int16)
    b = np.full((5, 6, 7), 700, np.int16)
    b[:, 0, 0] = 0
    a[:, 0, 0] = 0
    write_dicom_series(folder, a, UID_A, "arterial", prefix="a")
    write_dicom_series(folder, b, UID_B, "portal venous", prefix="b")

    infos = list_dicom_series(folder)
    assert all(isinstance(i, DicomSeriesInfo) for i in infos)
    assert {(i.uid, i.description, i.num_files, i.modality) for i in infos} == {
        (UID_A, "arterial", 3, "CT"), (UID_B, "portal venous", 5, "CT")}

    with pytest.raises(InputError) as err:
        read_volume(folder)
    msg = str(err.value)
    for words in ("2 DICOM series", "series=", "description", UID_A, UID_B, "arterial", "portal venous", "3 files", "5 files"):
        assert words in msg

    by_uid = read_volume(folder, series=UID_B)
    assert by_uid.shape_zyx == (5, 6, 7) and int(by_uid.array[0, 1, 1]) == 700 * 2 - 1024
    assert read_volume(folder, series="1.2.826.0.1.3680043.2.1125.1").shape_zyx == (3, 6, 7)  # unique prefix
    assert read_volume(folder, series="arterial").shape_zyx == (3, 6, 7)  # description
    assert read_volume(folder, series="VENOUS").shape_zyx == (5, 6, 7)  # unique substring, any case
    number = [i.uid for i in infos].index(UID_B) + 1
    assert read_volume(folder, series=str(number)).meta["series_uid"] == UID_B  # number in the listing
    with pytest.raises(InputError, match="No DICOM series matching series='delayed'"):
        read_volume(folder, series="delayed")
    with pytest.raises(InputError, match="matches 2 series"):
        read_volume(folder, series="1.2.826.0.1.3680043.2.1125")


def test_a_folder_of_nifti_cts_given_as_one_ct_names_its_files(tmp_path):
    """'preprocess Task03_Liver/imagesTr' (a folder of NIfTI CTs where one CT is read) was told only that the folder
    holds no DICOM series, as if it held no CT; the message now names its CT files (not macOS's '._' files) and
    says to give one."""
    folder = tmp_path / "imagesTr"
    folder.mkdir()
    for name in ("liver_0.nii.gz", "liver_1.nii.gz", "._liver_0.nii.gz"):
        (folder / name).write_bytes(b"\0" * 64)
    with pytest.raises(InputError, match=r"holds no DICOM series.* It holds 2 NIfTI/NRRD/MetaImage file\(s\) "
                                         r"\(liver_0.nii.gz, liver_1.nii.gz\).*give one of them"):
        read_volume(folder)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "notes.txt").write_text("hello")
    with pytest.raises(InputError) as err:
        read_volume(tmp_path / "notes")
    assert "It holds" not in str(err.value)


def test_folder_without_dicom_and_dicom_in_subfolder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="holds no DICOM series, nor do its subfolders"):
        read_volume(tmp_path / "empty")
    # a DICOMDIR-style medium: PATIENT/STUDY/SERIES/files, three levels below the folder given
    stored = np.arange(2 * 4 * 4, dtype=np.int16).reshape(2, 4, 4)
    write_dicom_series(tmp_path / "media" / "PT0" / "ST0" / "SE0", stored, UID_A, "x")
    (tmp_path / "media" / "DICOMDIR").write_bytes(b"\0" * 132)
    for given in (tmp_path / "media", tmp_path / "media" / "DICOMDIR"):
        volume = read_volume(given)
        assert volume.meta["series_uid"] == UID_A and np.array_equal(volume.array, stored * 2 - 1024)
    with pytest.raises(InputError, match="not a folder"):
        list_dicom_series(tmp_path / "empty" / "notes.txt")


def test_series_split_over_subfolders_is_read_whole(tmp_path):
    """PACS exports split a series over folders; the error once suggested one of them, which then gave part of
    the series (10 of 20 slices) without a word. The parent folder now reads the whole series in order."""
    stored = np.arange(6 * 4 * 4, dtype=np.int16).reshape(6, 4, 4)
    write_dicom_series(tmp_path / "whole", stored, UID_A, "venous")
    export = tmp_path / "export"
    for k, f in enumerate(sorted((tmp_path / "whole").iterdir())):
        target = export / ("part2" if k % 2 else "part1")  # interleaved, as some exports do
        target.mkdir(parents=True, exist_ok=True)
        f.rename(target / f.name)
    volume = read_volume(export)
    reference = read_volume(export / "part1")  # what the old hint led to: half the slices
    assert volume.shape_zyx == (6, 4, 4) and reference.shape_zyx == (3, 4, 4)
    assert np.array_equal(volume.array, stored * 2 - 1024)
    assert sorted(map(Path, volume.meta["files"])) == sorted(export.rglob("*.dcm"))
    write_dicom_series(export / "part3", stored[:2], UID_B, "arterial")
    with pytest.raises(InputError, match="holds 2 DICOM series"):
        read_volume(export)
    assert read_volume(export, series="venous").shape_zyx == (6, 4, 4)


# ---------------------------------------------------------------------------------------- label maps
def _write_nifti(path: Path, data_xyz: np.ndarray, affine=None) -> Path:
    nib.save(nib.Nifti1Image(data_xyz, np.eye(4) if affine is None else affine), str(path))
    return path


def test_label_values_are_checked(tmp_path):
    good = _write_nifti(tmp_path / "good.nii.gz", np.array([[[0.0, 1.0], [2.0, 0.0]]], np.float32))
    lab = read_label_map(good)
    assert lab.array.dtype == np.uint8 and sorted(np.unique(lab.array)) == [0, 1, 2]

    bad = _write_nifti(tmp_path / "bad.nii.gz", np.array([[[0, 3], [7, 1]]], np.int16))
    with pytest.raises(LabelError, match=r"values 3, 7 outside the allowed 0, 1, 2"):
        read_label_map(bad)
    assert read_label_map(bad, allowed_values=(0, 1, 3, 7)).array.max() == 7
    # values beyond uint8 cannot be mapped: said once, plainly (the message read "(0 background, ...)" twice and
    # suggested --label-map, which cannot map them)
    from LiverTumorSegLib.io.labels import ANY_LABEL_VALUE, parse_label_map_option
    big = _write_nifti(tmp_path / "big.nii.gz", np.array([[[0, 1000], [1000, 0]]], np.uint16))
    with pytest.raises(LabelError, match=r"values 1000; label values must lie in 0..255") as err:
        read_label_map(big, allowed_values=ANY_LABEL_VALUE)
    assert str(err.value).count("0 background") == 1
    with pytest.raises(LabelError) as err:
        read_label_map(_write_nifti(tmp_path / "b255.nii.gz", np.array([[[0, 255]]], np.uint8)))
    assert str(err.value).count("0 background") == 1
    with pytest.raises(InputError, match="key 1000 is outside 0..255"):
        parse_label_map_option('{"1000": 1}')

    # a CT taken for a label map (a file name evaluate could not tell apart from the label map's) is named as one
    ct_like = _write_nifti(tmp_path / "ct.nii.gz", np.array([[[-1000, 40], [300, 60]]], np.int16))
    for allowed in ((0, 1, 2), ANY_LABEL_VALUE):
        with pytest.raises(LabelError, match="look like a CT's Hounsfield units: is it the CT rather than the label"):
            read_label_map(ct_like, allowed_values=allowed)
    with pytest.raises(LabelError) as err:  # a few odd label values are no CT
        read_label_map(bad)
    assert "Hounsfield" not in str(err.value)
    # the file's own value in the example (it showed {255: 1} whatever the value)
    assert "remap them first, each value to the label it stands for: lesion classes beside a liver of 1 to 2, a " \
           "mask's 255 to 1 (e.g. in 3D Slicer, or with SimpleITK: sitk.ChangeLabel(image, changeMap={3: 2, 7: 2}))." \
           " If it is a multi-organ label map" in str(err.value)
    # TotalSegmentator's liver alone (0/5) was advised {5: 2}, the whole liver one lesion (the measure audit): the
    # multi-organ reading is given too; a 0/255 mask keeps its one reading
    liver_only = _write_nifti(tmp_path / "ts_liver.nii.gz", np.array([[[0, 5], [5, 0]]], np.uint8))
    with pytest.raises(LabelError) as err:
        read_label_map(liver_only)
    assert "TotalSegmentator's, liver = 5: sitk.BinaryThreshold(image, 5, 5, 1, 0)" in str(err.value)
    with pytest.raises(LabelError) as err:
        read_label_map(_write_nifti(tmp_path / "mask255.nii.gz", np.array([[[0, 255]]], np.uint8)))
    assert "changeMap={255: 1}), each value mapped to the label it stands for)" in str(err.value)
    assert "multi-organ" not in str(err.value)
    # a multi-organ map (TotalSegmentator's 1..7, liver = 5): its 1 and 2 are organs too; the advice mapped its 3 (a
    # kidney) to tumor and kept 1 and 2 (the measure audit)
    # a liver/tumor map stored as 0/127/254 was advised {127: 2, 254: 2}, the whole liver tumor (helper-404's
    # audit): the lower value to liver, the higher to tumor, the other way round said
    scaled = _write_nifti(tmp_path / "scaled.nii.gz", np.array([[[0, 127], [254, 127]]], np.uint8))
    with pytest.raises(LabelError) as err:
        read_label_map(scaled)
    assert ("if 127 is liver and 254 tumor (a liver/tumor map stored with other values), remap them first: e.g. in "
            "3D Slicer, or with SimpleITK: sitk.ChangeLabel(image, changeMap={127: 1, 254: 2}) (the other way round, "
            "{127: 2, 254: 1}, if 254 is the liver)") in str(err.value)
    organs = _write_nifti(tmp_path / "organs.nii.gz", np.arange(8, dtype=np.uint8).reshape(2, 2, 2))
    with pytest.raises(LabelError) as err:
        read_label_map(organs)
    assert "multi-organ label map, whose 1 and 2 are other organs too" in str(err.value)
    assert "every other value, 1 and 2 included, to 0" in str(err.value) and "changeMap={3: 2})" not in str(err.value)
    # ... or a liver with lesions numbered one by one (Slicer's export): both readings are given (the diff review)
    assert "lesions numbered one by one" in str(err.value) and "changeMap={3: 2, 4: 2, 5: 2, 6: 2, 7: 2}" in str(err.value)

    frac = _write_nifti(tmp_path / "prob.nii.gz", np.array([[[0.0, 0.5], [1.0, 0.25]]], np.float32))
    with pytest.raises(LabelError, match="non-integer values"):
        read_label_map(frac)
    # integers saved as floats after a scaling step (255 * (1 / 255)) are those integers; 0.99 is not
    noisy = _write_nifti(tmp_path / "noisy.nii.gz", np.array([[[0.0, 0.999999], [2.0000005, 1e-7]]], np.float32))
    np.testing.assert_array_equal(np.bincount(read_label_map(noisy).array.ravel()), [2, 1, 1])
    near = _write_nifti(tmp_path / "near.nii.gz", np.array([[[0.0, 0.99], [1.0, 2.0]]], np.float32))
    with pytest.raises(LabelError, match="non-integer values \\(0.99\\)"):
        read_label_map(near)
    neg = _write_nifti(tmp_path / "neg.nii.gz", np.array([[[0, -1], [1, 1]]], np.int16))
    with pytest.raises(LabelError, match="values -1 outside"):
        read_label_map(neg)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_float_label_map_with_nan_or_inf_is_refused_naming_them(tmp_path, bad):
    """One NaN or infinite voxel among 0/1/2 (a label map saved from a float computation) is named as such, not
    rounded to a label or called an out-of-range value."""
    array = np.zeros((3, 4, 5), np.float32)
    array[1, 1:3, 1:4] = 1.0
    array[1, 2, 2] = 2.0
    array[0, 0, 0] = bad
    path = _write_nifti(tmp_path / "labels.nii.gz", array)
    with pytest.raises(LabelError, match=r"Label map '.*labels\.nii\.gz' contains NaN/Inf values; it must hold the "
                                         r"integers 0, 1, 2\."):
        read_label_map(path)


@pytest.mark.parametrize("text", ["[]", "{}", "null", '"255"', "[255, 1]"])
def test_a_label_map_option_that_is_no_json_object_says_what_it_must_be(text):
    from LiverTumorSegLib.io.labels import parse_label_map_option

    with pytest.raises(InputError, match=r"--label-map must be a non-empty JSON object like '\{\"255\": 1\}', got "
                                         + re.escape(repr(text))):
        parse_label_map_option(text)


def test_a_macos_resource_file_is_named_as_one_with_the_image_beside_it(tmp_path):
    """MSD's Task03_Liver.tar holds ._liver_N.nii.gz (AppleDouble) beside each image; a case CSV made from a file
    search lists them, and reading one said 'not a gzip file. Check that the file is complete.'"""
    _write_nifti(tmp_path / "liver_1.nii.gz", np.zeros((4, 4, 2), np.int16))
    (tmp_path / "._liver_1.nii.gz").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(40))
    with pytest.raises(InputError, match=r"Cannot read '.*\._liver_1.nii.gz' as NIfTI: .*: it is a macOS resource file "
                                         r"\(AppleDouble\), not an image;.*Use 'liver_1.nii.gz' and leave the '\._' "
                                         r"files out") as err:
        read_volume(tmp_path / "._liver_1.nii.gz")
    assert "Check that the file is complete" not in str(err.value)
    (tmp_path / "cut.nii.gz").write_bytes(b"\x1f\x8b\x08")  # a cut-short file is still told so
    with pytest.raises(InputError, match="Check that the file is complete") as err:
        read_volume(tmp_path / "cut.nii.gz")
    assert "AppleDouble" not in str(err.value)


def test_a_negative_label_value_is_not_said_to_be_mappable_with_label_map(tmp_path):
    """A label map holding -1 (an 'ignore' value) was told that evaluate and train can map it with --label-map,
    which refuses any key outside 0..255: the advice led to a second error."""
    from LiverTumorSegLib.io.labels import ANY_LABEL_VALUE, parse_label_map_option

    ignore = _write_nifti(tmp_path / "ignore.nii.gz", np.array([[[0, 1], [2, -1]]], np.int16))
    for allowed, said in ((ANY_LABEL_VALUE, r"values -1; label values must lie in 0\.\.255 \(also for --label-map"),
                          ((0, 1, 2), r"values -1 outside the allowed 0, 1, 2 \(0 background, 1 liver, 2 tumor\); "
                                      r"convert the file")):
        with pytest.raises(LabelError, match=said) as err:
            read_label_map(ignore, allowed_values=allowed)
        assert "can map them with --label-map" not in str(err.value)
        assert "convert the file to 0 background, 1 liver, 2 tumor first" in str(err.value).lower()
    with pytest.raises(InputError, match="key -1 is outside 0..255"):
        parse_label_map_option('{"-1": 0, "1": 1}')



@pytest.mark.parametrize("suffix", [".nii", ".nrrd"])
def test_label_maps_are_read_as_uint8_without_an_int16_copy(tmp_path, suffix, monkeypatch):
    """A uint8 label map was read as int16 (twice its size) and then copied back to uint8: 3 bytes a voxel at the
    peak, 300 MiB for a 512 x 512 x 400 map (675 MiB at 900 slices). Values outside 0..255 (or stored as
    floats) are read as before, so a refused map still names the values the file holds."""
    import functools
    import tracemalloc

    from LiverTumorSegLib.io import gzip_inflate, labels as labels_module
    # the buffers of bounded size (value counting chunk, inflate steps) made small: the peak is what grows with
    # the volume
    monkeypatch.setattr(labels_module, "_COUNT_CHUNK_VOXELS", 1 << 12)
    # (4 KiB: a compressed NRRD's voxels are now the inflate buffer itself, so the steps' own buffers counted)
    monkeypatch.setattr(gzip_inflate, "inflate_to_end", functools.partial(gzip_inflate.inflate_to_end,
                                                                          step=1 << 12, read_step=1 << 12))
    labels = np.zeros((32, 80, 96), np.uint8)
    labels[4:28, 10:70, 8:90] = 1
    labels[12:20, 30:50, 30:60] = 2
    path = write_label_map(tmp_path / f"labels{suffix}", labels, ImageGeometry(spacing=(0.7, 0.8, 2.5)))
    read_label_map(path)  # the readers imported
    tracemalloc.start()
    try:
        read = read_label_map(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert read.array.dtype == np.uint8 and np.array_equal(read.array, labels)
    assert peak / labels.size < 2.0, f"{peak / labels.size:.2f} bytes a voxel"  # 3.0 with the int16 read
    assert read_volume(path).array.dtype == np.int16  # a CT read keeps int16
    for stored, dtype in (([0, 1, 2, 2], np.int16), ([0, 1, 1, 0], np.int8), ([0, 2, 2, 0], np.uint16)):
        assert read_label_map(_write_nifti(tmp_path / "fits.nii", np.array([[stored]], dtype))).array.dtype == np.uint8
    assert to_hu_dtype(np.array([[0, 255]], np.uint16), uint8_if_fits=True).dtype == np.uint8
    assert to_hu_dtype(np.array([[0, 256]], np.uint16), uint8_if_fits=True).dtype == np.int16
    assert to_hu_dtype(np.array([[-1, 2]], np.int16), uint8_if_fits=True).dtype == np.int16
    assert to_hu_dtype(np.array([[0.0, 2.0]], np.float32), uint8_if_fits=True).dtype == np.int16
    for stored, dtype, named in (([0, 300, 1, 1], np.uint16, "values 300 outside"),
                                 ([0, 300, -1, 1], np.int16, "values -1, 300 outside"),
                                 ([0, -1, 1, 1], np.int8, "values -1 outside"),
                                 ([0, 70000, 1, 1], np.int32, "values 70000 outside")):
        with pytest.raises(LabelError, match=named):
            read_label_map(_write_nifti(tmp_path / "bad.nii", np.array([[stored]], dtype)))


def test_label_reference_mismatch_says_what_differs(tmp_path):
    ct = CTVolume(array=np.zeros((4, 5, 6), np.int16), geometry=ImageGeometry.from_ijk_to_ras(AFFINES["ras"]),
                  source="ct.nii.gz")
    labels_xyz = np.zeros((6, 5, 4), np.uint8)
    base = AFFINES["ras"]

    p = _write_nifti(tmp_path / "size.nii.gz", np.zeros((6, 5, 3), np.uint8), base)
    with pytest.raises(LabelError, match=r"size \(x, y, z\) \(6, 5, 3\) vs the reference's \(6, 5, 4\)"):
        read_label_map(p, reference=ct)

    shifted = base.copy()
    shifted[2, 3] += 2.5
    p = _write_nifti(tmp_path / "origin.nii.gz", labels_xyz, shifted)
    with pytest.raises(LabelError, match=r"origin \(LPS\) .*off by up to 2.5 mm"):
        read_label_map(p, reference=ct)

    spaced = make_affine(np.eye(3), (0.8, 0.9, 3.0), base[:3, 3])
    p = _write_nifti(tmp_path / "spacing.nii.gz", labels_xyz, spaced)
    with pytest.raises(LabelError, match=r"spacing \(x, y, z\) \(0.8, 0.9, 3\) mm vs the reference's \(0.8, 0.9, 2.5\)"):
        read_label_map(p, reference=ct)

    rotated = make_affine(rotation_xyz(0, 0, 10), (0.8, 0.9, 2.5), base[:3, 3])
    p = _write_nifti(tmp_path / "dir.nii.gz", labels_xyz, rotated)
    with pytest.raises(LabelError, match=r"direction .*cosines differ by up to 0.174"):
        read_label_map(p, reference=ct)


def test_label_on_same_grid_in_other_axis_order_is_reoriented(tmp_path):
    ct_vol = read_volume(_write_nifti(tmp_path / "ct.nii.gz", hu_data_xyz((6, 5, 4)), AFFINES["ras"]))
    labels = np.random.default_rng(3).integers(0, 3, size=ct_vol.shape_zyx).astype(np.uint8)
    # the same labels on the same physical grid stored LPS: flip x and y, move the origin to the far corner
    flip_xy = np.diag([-1.0, -1.0, 1.0])
    lps_geometry = ImageGeometry(spacing=ct_vol.geometry.spacing,
                                 origin=tuple(ct_vol.geometry.index_to_lps((5, 4, 0))),
                                 direction=tuple((ct_vol.geometry.direction_matrix @ flip_xy).ravel()))
    out = write_label_map(tmp_path / "lab_lps.nrrd", labels[:, ::-1, ::-1], lps_geometry)
    lab = read_label_map(out, reference=ct_vol)
    assert np.array_equal(lab.array, labels)
    assert lab.geometry == ct_vol.geometry
    assert any("reoriented" in w for w in lab.meta["warnings"])


# ---------------------------------------------------------------------------------------- bad input
def _png(path: Path) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8), np.uint8)), str(path))
    return path


def _bad_inputs(tmp: Path):
    """(name, path maker, expected message words); the table rows of the report."""
    def truncated_nii_gz():
        full = _write_nifti(tmp / "full.nii.gz", hu_data_xyz((20, 20, 20)))
        blob = full.read_bytes()
        (tmp / "trunc.nii.gz").write_bytes(blob[: len(blob) // 2])
        return tmp / "trunc.nii.gz"

    def truncated_nrrd():
        sitk.WriteImage(sitk.GetImageFromArray(np.ones((10, 10, 10), np.int16)), str(tmp / "t.nrrd"))
        blob = (tmp / "t.nrrd").read_bytes()
        (tmp / "t.nrrd").write_bytes(blob[: len(blob) * 2 // 3])
        return tmp / "t.nrrd"

    def truncated_mha():
        sitk.WriteImage(sitk.GetImageFromArray(np.ones((10, 10, 10), np.int16)), str(tmp / "t.mha"))
        blob = (tmp / "t.mha").read_bytes()
        (tmp / "t.mha").write_bytes(blob[: len(blob) * 2 // 3])
        return tmp / "t.mha"

    def garbage_nii_gz():
        (tmp / "junk.nii.gz").write_bytes(b"this is not a nifti file" * 20)
        return tmp / "junk.nii.gz"

    def empty_file():
        (tmp / "empty.nii.gz").write_bytes(b"")
        return tmp / "empty.nii.gz"

    def two_d_nifti():
        return _write_nifti(tmp / "slice.nii.gz", np.zeros((16, 16), np.int16))

    def two_d_nrrd():
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((16, 16), np.int16)), str(tmp / "slice.nrrd"))
        return tmp / "slice.nrrd"

    def four_d():
        return _write_nifti(tmp / "4d.nii.gz", np.zeros((4, 4, 4, 2), np.int16))

    def rgb_nifti():
        rgb = np.zeros((4, 4, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
        return _write_nifti(tmp / "rgb.nii.gz", rgb)

    def vector_mha():
        img = sitk.Image([4, 4, 4], sitk.sitkVectorFloat32, 3)
        sitk.WriteImage(img, str(tmp / "vec.mha"))
        return tmp / "vec.mha"

    def zero_size():
        return _write_nifti(tmp / "zero.nii", np.zeros((4, 4, 0), np.int16))

    def text_file():
        (tmp / "notes.txt").write_text("hello")
        return tmp / "notes.txt"

    def bad_dcm():
        (tmp / "x.dcm").write_bytes(b"not dicom" * 50)
        return tmp / "x.dcm"

    return [
        ("missing path", lambda: tmp / "nope" / "ct.nii.gz", ["does not exist"]),
        ("unknown extension", text_file, ["Unknown file type '.txt'", "NIfTI"]),
        ("PNG picture", lambda: _png(tmp / "a.png"), ["is 2D", "3D CT volume is needed"]),
        ("JPEG picture", lambda: _png(tmp / "a.jpg"), ["is 2D", "3D CT volume is needed"]),
        ("2D NIfTI", two_d_nifti, ["is 2D (16 x 16 pixels)", "3D CT volume is needed"]),
        ("2D NRRD", two_d_nrrd, ["is 2D (16 x 16 pixels)"]),
        ("4D NIfTI", four_d, ["is 4D (4 x 4 x 4 x 2", "single 3D CT volume"]),
        ("RGB NIfTI", rgb_nifti, ["RGB", "scalar 3D CT"]),
        ("vector MHA", vector_mha, ["3 components per voxel", "scalar 3D CT"]),
        ("truncated .nii.gz", truncated_nii_gz, ["truncated or corrupt"]),
        ("truncated .nrrd", truncated_nrrd, ["truncated or its header is wrong", "10 x 10 x 10 voxels"]),
        ("truncated .mha", truncated_mha, ["truncated or its header is wrong"]),
        ("not gzip .nii.gz", garbage_nii_gz, ["Cannot read", "as NIfTI"]),
        ("0-byte file", empty_file, ["empty file (0 bytes)"]),
        ("zero-size image", zero_size, ["zero size"]),
        ("broken .dcm file", bad_dcm, ["not a readable DICOM file"]),
    ]


def test_bad_inputs_give_one_line_input_errors(tmp_path):
    rows = _bad_inputs(tmp_path)
    for name, make, words in rows:
        path = make()
        with pytest.raises(InputError) as err:
            read_volume(path)
        msg = str(err.value)
        for w in words:
            assert w in msg, f"{name}: {w!r} not in {msg!r}"
        assert "Traceback" not in msg and "sitk::ERROR" not in msg and ".cxx" not in msg, (name, msg)
        assert "\n" not in msg, (name, msg)


def test_4d_with_single_time_point_is_accepted(tmp_path):
    data = hu_data_xyz((4, 5, 6))
    vol = read_volume(_write_nifti(tmp_path / "t1.nii.gz", data[..., None]))
    assert vol.shape_zyx == (6, 5, 4) and np.array_equal(vol.array, data.T)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_a_ct_and_a_label_map_with_a_singleton_4th_axis_are_read_as_their_3d_volumes(tmp_path, suffix):
    """nnU-Net and MONAI tooling write label maps (and CTs) of shape (x, y, z, 1). Both are read, the same way and
    without a word, as the 3D volume (the 1-voxel axis holds nothing: no voxel, spacing or position is lost), the
    label onto its CT and in training (load_case); a 4th axis of 2 or more is refused, for a label map in its words."""
    import warnings

    from LiverTumorSegLib.training.datasets import Case, load_case

    from LiverTumorSegLib.phantom import make_phantom

    phantom = make_phantom((6, 22, 20), (0.7, 0.8, 3.0), noise_hu=10.0, seed=0)
    ct_zyx, labels_zyx = np.round(phantom.ct.array).astype(np.int16), phantom.labels.astype(np.uint8)
    assert (labels_zyx == 1).any()

    def write(name, zyx, frames=1):
        image = sitk.GetImageFromArray(np.stack([zyx] * frames), isVector=False)  # (t, z, y, x): (x, y, z, t)
        image.SetSpacing((0.7, 0.8, 3.0, 1.0))
        image.SetOrigin((-10.0, 20.0, 35.0, 0.0))
        path = tmp_path / f"{name}{suffix}"
        sitk.WriteImage(image, str(path))
        return path

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing said
        ct = read_volume(write("ct", ct_zyx))
        labels = read_label_map(write("lab", labels_zyx), reference=ct)
        case = load_case(Case("c", "p", str(tmp_path / f"ct{suffix}"), str(tmp_path / f"lab{suffix}")))
    assert ct.shape_zyx == (6, 22, 20) and np.array_equal(ct.array, ct_zyx)
    assert np.allclose(ct.geometry.spacing, (0.7, 0.8, 3.0)) and np.allclose(ct.geometry.origin, (-10.0, 20.0, 35.0))
    assert np.array_equal(labels.array, labels_zyx) and labels.geometry == ct.geometry
    assert case[0].shape_zyx == (6, 22, 20) and case[1].shape == (6, 22, 20) and int((case[1] == 1).sum()) > 0
    with pytest.raises(InputError, match=r"is 4D \(20 x 22 x 6 x 2 voxels.*label map"):
        read_label_map(write("lab2", labels_zyx, frames=2))


def test_label_value_counts_known_answers(monkeypatch):
    from LiverTumorSegLib.io import labels as labels_module
    from LiverTumorSegLib.io.labels import label_value_counts

    monkeypatch.setattr(labels_module, "_COUNT_CHUNK_VOXELS", 7)  # several chunks, one shorter
    a = np.array([[[0, 2, 2], [255, 0, 0]], [[0, 0, 1], [2, 0, 0]]], np.uint8)
    assert label_value_counts(a) == {0: 7, 1: 1, 2: 3, 255: 1}
    assert label_value_counts(a.astype(np.int16) - 3) == {-3: 7, -2: 1, -1: 3, 252: 1}
    assert label_value_counts(a.astype(np.float32)) == {0: 7, 1: 1, 2: 3, 255: 1}
    assert label_value_counts(a > 0) == {0: 7, 1: 5}
    assert label_value_counts(np.array([0, 1 << 20, 1 << 20], np.int32)) == {0: 1, 1 << 20: 2}  # wide: sorted
    assert label_value_counts(np.zeros((0, 4, 4), np.uint8)) == {}
    assert label_value_counts(a[:, :, ::2]) == {0: 4, 1: 1, 2: 2, 255: 1}  # a strided view (columns 0 and 2)


def test_label_map_scaled_to_huge_values_by_its_header_is_refused_by_value(tmp_path):
    """A label map whose damaged header's scl_inter is 1e30 (every voxel about 1e30 after scaling) was an 'internal
    error: OverflowError: Python int too large to convert to C long' in measure and evaluate (the value count shifted
    the voxels by the minimum as a machine integer); it is refused as a label map of values outside 0, 1, 2."""
    image = nib.Nifti1Image(np.ones((4, 5, 6), np.uint8), np.diag([3.0, 3.0, 3.0, 1.0]))
    image.header.set_slope_inter(1.0, 1e30)
    path = tmp_path / "scaled.nii.gz"
    nib.save(image, str(path))
    with pytest.raises(LabelError, match=r"has values 1\d{30} outside the allowed 0, 1, 2"):
        read_label_map(path)


def test_label_map_scaled_by_its_header_is_refused_naming_the_header_fields(tmp_path):
    """Labels 1 and 2 scaled by a header's scl_slope of 1e30 were refused as 'values 1e30, 2e30', with the advice
    to convert them with ChangeLabel: nothing said that the header made them. The scaled values are the file's
    values (so the map is still refused, as one with scl_slope 2 is), and the message names the header fields and
    how to reset them."""
    stored = np.zeros((6, 5, 4), np.uint8)
    stored[1:4, 1:4, 1:3] = 1
    stored[2, 2, 1] = 2
    image = nib.Nifti1Image(stored, np.diag([3.0, 3.0, 3.0, 1.0]))
    path = tmp_path / "scaled_labels.nii.gz"
    for slope, shown in ((1e30, r"1e\+30"), (2.0, "2")):
        image.header.set_slope_inter(slope, 0.0)
        nib.save(image, str(path))
        with pytest.raises(LabelError, match=rf"header's scale factors .*scl_slope {shown}, scl_inter 0\) make values a "
                                             rf"label map cannot hold: it has values .* outside the allowed 0, 1, 2.* "
                                             rf"set scl_slope 1 and scl_inter 0") as caught:
            read_label_map(path)
        assert "ChangeLabel" not in str(caught.value)
    image.header.set_slope_inter(1.0, 0.0)  # the same voxels unscaled read as labels
    nib.save(image, str(path))
    assert int(read_label_map(path).array.max()) == 2


def test_ct_scaled_beyond_hounsfield_by_its_header_is_refused_naming_the_header_fields(tmp_path, recwarn):
    """A CT whose header's scl_slope is 1e30 (values up to 6e31, finite in float32) was refused by segment as
    'pre-normalised/not CT', and measure (non-HU allowed) put 6e31 into the report as the lesions' mean HU: neither
    named the header. Refused, also where non-HU input is allowed, naming scl_slope and the stored range."""
    from LiverTumorSegLib.validation import check_ct

    stored = np.full((16, 16, 8), -1000, np.int16)
    stored[4:12, 4:12, 2:6] = 60
    image = nib.Nifti1Image(stored, np.diag([2.0, 2.0, 3.0, 1.0]))
    image.header.set_slope_inter(1e30, 0.0)
    path = tmp_path / "huge_slope_ct.nii.gz"
    nib.save(image, str(path))
    volume = read_volume(path)
    for allow_non_hu in (False, True):
        with pytest.raises(InputError, match=r"header's scale factors \(scl_slope 1e\+30, scl_inter 0\) turn the "
                                             r"stored values -1000\.\.60 into .* far outside any Hounsfield range.*"
                                             r"set scl_slope and scl_inter"):
            check_ct(volume, allow_non_hu=allow_non_hu)
    assert not [w for w in recwarn if "overflow" in str(w.message)]
    image.header.set_slope_inter(1.0, 0.0)  # the same voxels unscaled: a CT, no refusal
    nib.save(image, str(path))
    check_ct(read_volume(path))


def test_uncompressed_nifti_is_read_into_memory_not_mapped(tmp_path):
    """An int16 .nii was returned as a view of nibabel's memory map; Windows cannot replace or truncate a mapped
    file, so `segment x.nii -o x.nii --overwrite` (or Slicer saving over the node's file while the child reads
    it) failed there."""
    import mmap

    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) - 1000
    path = _write_nifti(tmp_path / "ct.nii", data, np.eye(4))
    array = read_volume(path).array
    base = array
    while base is not None:
        assert not isinstance(base, (np.memmap, mmap.mmap)), type(base)
        base = getattr(base, "base", None)
    assert array.dtype == np.int16 and sorted(array.ravel().tolist()) == sorted(data.ravel().tolist())


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_volumes_of_any_real_dtype_are_written(tmp_path, suffix):
    # nibabel refused bool and float16 and wanted a header for 64-bit integers: raw HeaderDataError/ValueError
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.io import read_volume, write_volume
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    geometry = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    values = np.arange(60).reshape(3, 4, 5)
    for array in (values % 2 == 0, values.astype(np.int64) - 30, values.astype(np.float16), values.astype(np.uint64)):
        path = write_volume(tmp_path / f"v_{array.dtype.name}{suffix}", CTVolume(array, geometry))
        np.testing.assert_array_equal(read_volume(path).array, array.astype(np.float64))
    big = values.astype(np.int64) * 2 ** 40                            # does not fit 32 bits: kept as float64
    assert read_volume(write_volume(tmp_path / f"big{suffix}", CTVolume(big, geometry))).array.max() == big.max()
    with pytest.raises(InputError, match="complex"):
        write_volume(tmp_path / f"c{suffix}", CTVolume(values.astype(np.complex64), geometry))


@pytest.mark.parametrize("spacing", [(0.0, 1.0, 1.0), (1.0, -0.5, 1.0), (1.0, 1.0, float("nan")),
                                     (1.0, float("inf"), 1.0), (1.0, 1.0)])
def test_image_geometry_refuses_a_spacing_that_is_not_three_positive_sizes(spacing):
    # a zero spacing gave 0 mL volumes and 0 mm diameters without a word when built in code (readers refuse it)
    with pytest.raises(InputError, match="Voxel spacing must be three positive, finite sizes in mm"):
        ImageGeometry(spacing)


def test_image_geometry_refuses_a_non_finite_origin_or_direction():
    with pytest.raises(InputError, match="not finite"):
        ImageGeometry((1.0, 1.0, 1.0), origin=(0.0, float("nan"), 0.0))
    with pytest.raises(InputError, match="not finite"):
        ImageGeometry((1.0, 1.0, 1.0), direction=(float("inf"),) + (0.0,) * 8)
    assert ImageGeometry((0.7, 0.7, 5.0)).voxel_volume_ml == pytest.approx(0.7 * 0.7 * 5.0 / 1000)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_header_geometry_is_what_read_volume_builds(tmp_path, suffix):
    """read_header_geometry (no voxels read) gives the grid read_volume gives, oblique and flipped included."""
    c, s = np.cos(0.3), np.sin(0.3)
    direction = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, -1.0]])
    volume = CTVolume(array=np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5),
                      geometry=ImageGeometry(spacing=(0.7, 0.9, 2.5), origin=(-10.0, 20.0, 35.0),
                                             direction=tuple(direction.ravel())))
    path = write_volume(tmp_path / f"ct{suffix}", volume)
    geometry, shape = read_header_geometry(path)
    assert shape == (3, 4, 5)
    assert geometry.almost_equal(read_volume(path).geometry, tol=1e-5)
    assert geometry.almost_equal(volume.geometry, tol=1e-4)
    with pytest.raises(InputError, match="not a NIfTI, NRRD or MetaImage"):
        read_header_geometry(tmp_path / "folder")


def test_a_spacing_refused_after_a_unit_conversion_names_the_headers_unit(tmp_path):
    """A NIfTI whose pixdim reads 3 with xyzt_units metres is read as 3000 mm voxels (as ITK reads it) and refused;
    the refusal said only '(3000, 3000, 3000) mm ... the header is damaged', nothing of the unit that made it so."""
    import nibabel as nib

    from LiverTumorSegLib.io.labels import read_label_map
    from LiverTumorSegLib.validation import check_ct

    data = np.full((6, 5, 4), -100, np.int16)
    image = nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0]))
    image.header.set_xyzt_units("meter", "sec")
    nib.save(image, str(tmp_path / "ct.nii.gz"))
    with pytest.raises(InputError, match=r"\(3000, 3000, 3000\) mm.*spatial unit as meters, so its numbers were "
                                         r"multiplied by 1000 to mm.*set the header's xyzt_units to mm"):
        check_ct(read_volume(tmp_path / "ct.nii.gz"))
    labels = nib.Nifti1Image(np.zeros((6, 5, 4), np.uint8), np.diag([3.0, 3.0, 3.0, 1.0]))
    labels.header.set_xyzt_units("meter", "sec")
    nib.save(labels, str(tmp_path / "labels.nii.gz"))
    with pytest.raises(InputError, match="spatial unit as meters"):
        read_label_map(tmp_path / "labels.nii.gz")
    for spacing_m, unit in ((0.05, "meter"), (50.0, "micron")):  # read (50 mm; 0.05 mm), then refused or warned of
        varied = data.copy()
        varied[:, :, :2] = -1000  # air and tissue: an image, not a constant volume
        odd = nib.Nifti1Image(varied, np.diag([spacing_m, spacing_m, spacing_m, 1.0]))
        odd.header.set_xyzt_units(unit, "sec")
        nib.save(odd, str(tmp_path / f"odd_{unit}.nii.gz"))
        volume = read_volume(tmp_path / f"odd_{unit}.nii.gz")
        if unit == "meter":
            with pytest.raises(InputError, match="over 20 mm.*spatial unit as meters"):
                check_ct(volume)
        else:
            warned = [w for w in check_ct(volume, allow_non_hu=True) if "very small voxel spacing" in w]
            assert warned and "spatial unit as microns, so its numbers were multiplied by 0.001" in warned[0]
    plain = nib.Nifti1Image(np.zeros((6, 5, 4), np.uint8), np.diag([300.0, 300.0, 300.0, 1.0]))
    nib.save(plain, str(tmp_path / "plain.nii.gz"))  # in mm: no word of a unit
    with pytest.raises(InputError) as refused:
        read_label_map(tmp_path / "plain.nii.gz")
    assert "spatial unit" not in str(refused.value)


@pytest.mark.parametrize("unit, per_mm", [("meter", 0.001), ("micron", 1000.0), ("mm", 1.0)])
def test_a_nifti_in_metres_or_microns_is_read_in_mm_as_itk_reads_it(tmp_path, unit, per_mm):
    """nibabel does not convert the header's spatial unit; ITK (so Slicer) does. A CT stored in metres was read
    with 0.003 mm voxels (a 0 mL liver) and in microns refused as 3000 mm voxels."""
    import nibabel as nib
    import SimpleITK as sitk

    affine = np.diag([0.8, 0.8, 3.0, 1.0])
    affine[:3, 3] = (-100.0, 50.0, 20.0)
    affine[:3, :] *= per_mm
    data = np.zeros((6, 5, 4), np.int16)
    data[1, 2, 3] = 7
    image = nib.Nifti1Image(data, affine)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    image.header.set_xyzt_units(unit, "sec")
    path = tmp_path / f"ct_{unit}.nii.gz"
    nib.save(image, str(path))
    volume = read_volume(path)
    np.testing.assert_allclose(volume.geometry.spacing, (0.8, 0.8, 3.0), rtol=1e-5)
    np.testing.assert_allclose(volume.geometry.index_to_ras((1, 2, 3)), (-99.2, 51.6, 29.0), atol=1e-3)
    itk_version = (sitk.Version.MajorVersion(), sitk.Version.MinorVersion())
    if itk_version >= (2, 3):  # 2.2 did not convert the unit, 2.3 (2.3.1 seen) the spacing but not the origin
        itk = sitk.ReadImage(str(path))
        np.testing.assert_allclose(itk.GetSpacing(), volume.geometry.spacing, rtol=1e-5)
        if itk_version >= (2, 4):
            np.testing.assert_allclose(itk.GetOrigin(), volume.geometry.origin, atol=1e-3)
    assert any("converted to mm" in w for w in volume.meta.get("warnings", [])) == (unit != "mm")


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".nii.gz"])
@pytest.mark.parametrize("dtype", [">i2", ">f8"])
def test_write_volume_stores_big_endian_arrays(tmp_path, suffix, dtype):
    """SimpleITK (NRRD, MetaImage) refused '>i2' with a raw TypeError; nibabel wrote it. Values and geometry
    come back in every format."""
    values = (np.arange(2 * 3 * 4).reshape(2, 3, 4) * 7 - 40).astype(dtype)
    geometry = ImageGeometry(spacing=(0.8, 0.9, 2.5), origin=(-10.0, 5.0, 30.0))
    path = write_volume(tmp_path / f"big{suffix}", CTVolume(values, geometry))
    back = read_volume(path)
    np.testing.assert_array_equal(back.array, values.astype(values.dtype.newbyteorder("=")))
    assert back.geometry.almost_equal(geometry)


def test_a_metaimage_direction_with_non_unit_columns_moves_its_length_into_the_spacing(tmp_path):
    """ITK steps D[:, k] * spacing[k]: 'TransformMatrix = 2 0 0 ...' with 1 mm spacing is a 2 mm x step. The
    geometry kept the non-unit column, so diameters used 2 mm and volumes 1 mm (a 2 mL lesion reported 1 mL)."""
    from LiverTumorSegLib.inference.lesion_report import lesion_report
    from LiverTumorSegLib.io import read_header_geometry, read_label_map
    n = 20
    labels = np.ones((n, n, n), np.uint8)
    labels[5:15, 5:15, 5:15] = 2                                   # 10 x 10 x 10 voxels
    header = ("ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
              "CompressedData = False\nTransformMatrix = 2 0 0 0 1 0 0 0 1\nOffset = 0 0 0\n"
              f"ElementSpacing = 1 1 1\nDimSize = {n} {n} {n}\nElementType = MET_UCHAR\nElementDataFile = LOCAL\n")
    path = tmp_path / "labels.mha"
    path.write_bytes(header.encode() + labels.tobytes())
    volume = read_label_map(path)
    np.testing.assert_allclose(volume.geometry.spacing, (2.0, 1.0, 1.0))
    np.testing.assert_allclose(volume.geometry.direction_matrix, np.eye(3))
    geometry, shape = read_header_geometry(path)
    np.testing.assert_allclose(geometry.spacing, (2.0, 1.0, 1.0))
    report = lesion_report(volume.array, volume.geometry)
    assert report["lesions"][0]["volume_ml"] == pytest.approx(2.0)     # a 20 x 10 x 10 mm box


def _nifti_ct_with_both_transforms(path):
    """``(affine, image, path)``: a small HU CT at 1.5 x 1.5 x 2.5 mm saved to ``path`` (an uncompressed .nii) with
    its qform and sform both set to ``affine``."""
    affine = np.diag([1.5, 1.5, 2.5, 1.0])
    img = nib.Nifti1Image(hu_data_xyz(), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))
    return affine, img, path


def _edit_header_bytes(path, offset, data):
    """Overwrite ``data`` at byte ``offset`` of the file at ``path`` (a header field, as a header editor would)."""
    raw = bytearray(path.read_bytes())
    raw[offset:offset + len(data)] = data
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("pixdim_x", [-1.5, 0.0, 3.0])
def test_nifti_pixdim_other_than_the_sform_voxel_size_is_warned(tmp_path, pixdim_x):
    """sform at 1.5 mm but pixdim[1] -1.5, 0 or 3: read silently here (the sform), while ITK (3D Slicer) takes
    pixdim as the spacing and places the CT elsewhere (mirrored for -1.5): the label map written here did not
    overlay it there. Hand-edited headers do this."""
    import struct

    affine, img, path = _nifti_ct_with_both_transforms(tmp_path / "ct.nii")
    _edit_header_bytes(path, 80, struct.pack("<f", pixdim_x))  # pixdim[1], as a header editor would leave it
    vol = read_volume(path)
    np.testing.assert_allclose(vol.geometry.ijk_to_ras(), affine, atol=1e-6)  # still the sform
    (warning,) = [w for w in vol.meta["warnings"] if "pixdim" in w]
    assert "not the sform's voxel size (1.5, 1.5, 2.5 mm)" in warning and "3D Slicer" in warning
    nib.save(img, str(tmp_path / "fine.nii"))
    assert not any("pixdim" in w for w in read_volume(tmp_path / "fine.nii").meta.get("warnings", []))


def test_a_nifti1_header_whose_sizeof_hdr_reads_540_is_not_checked_as_nifti2(tmp_path):
    """sizeof_hdr damaged from 348 to 540 with the NIfTI-1 magic in place: nibabel reads the NIfTI-1 it is, but the
    raw pixdim check read the header as NIfTI-2 and warned of 'pixdim (5.26354e-315, 0, 0)', which the file does not
    hold."""
    import struct

    affine, _, path = _nifti_ct_with_both_transforms(tmp_path / "ct.nii")
    _edit_header_bytes(path, 0, struct.pack("<i", 540))
    vol = read_volume(path)
    np.testing.assert_allclose(vol.geometry.ijk_to_ras(), affine, atol=1e-6)
    assert not any("pixdim" in w for w in vol.meta.get("warnings", []))


@pytest.mark.parametrize("size", [1000, 100000])
@pytest.mark.parametrize("kind", ["nrrd", "nrrd_gzip", "mha", "mhd_raw"])
def test_a_tiny_nrrd_or_metaimage_with_a_huge_header_is_refused_before_any_allocation(tmp_path, kind, size):
    """A 1 KB NRRD claiming 1000^3 shorts was refused only after ITK had allocated 2.3 GB; one claiming 10^15
    voxels got 'needs 7450580 GiB of memory, close other programs'."""
    payload = b"\0" * 512
    if kind.startswith("nrrd"):
        encoding = "gzip" if kind == "nrrd_gzip" else "raw"
        path = tmp_path / "big.nrrd"
        path.write_bytes(f"NRRD0004\ntype: short\ndimension: 3\nsizes: {size} {size} {size}\n"
                         f"spacings: 1 1 1\nencoding: {encoding}\nendian: little\n\n".encode() + payload)
    else:
        path = tmp_path / f"big.{kind[:3]}"
        local = kind == "mha"
        header = (f"ObjectType = Image\nNDims = 3\nDimSize = {size} {size} {size}\nElementType = MET_SHORT\n"
                  f"ElementSpacing = 1 1 1\nElementDataFile = {'LOCAL' if local else 'big.raw'}\n").encode()
        path.write_bytes(header + (payload if local else b""))
        if not local:
            (tmp_path / "big.raw").write_bytes(payload)
    with pytest.raises(InputError, match="truncated or its header is wrong"):
        read_volume(path)


def test_nrrd_and_metaimage_whose_data_fits_still_read(tmp_path):
    ct = read_volume(write_volume(tmp_path / "a.nrrd", CTVolume(np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4),
                                                                 ImageGeometry(spacing=(1.0, 1.0, 2.0)))))
    for name in ("b.nrrd", "c.mha", "d.nii.gz"):
        again = read_volume(write_volume(tmp_path / name, ct))
        np.testing.assert_array_equal(again.array, ct.array)


def test_an_uncompressed_nifti_holding_more_slices_than_its_header_says_is_warned(tmp_path):
    """A header edited to 4 of its 8 slices: half the scan was read and segmented without a word."""
    import struct

    data = np.zeros((6, 5, 8), np.int16)
    data[..., 4:] = 100
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), str(tmp_path / "ct.nii"))
    raw = bytearray((tmp_path / "ct.nii").read_bytes())
    raw[46:48] = struct.pack("<h", 4)                                  # dim[3]: 8 -> 4
    (tmp_path / "cut.nii").write_bytes(bytes(raw))
    vol = read_volume(tmp_path / "cut.nii")
    assert vol.shape_zyx == (4, 5, 6)
    (warning,) = [w for w in vol.meta["warnings"] if "not read" in w]
    assert "240 bytes after the 6 x 5 x 4 voxels" in warning and "about 4 more slices" in warning
    assert not [w for w in read_volume(tmp_path / "ct.nii").meta.get("warnings", []) if "not read" in w]
    # the same bytes compressed: the .nii.gz reader stopped at the header's voxels without a word
    import gzip
    (tmp_path / "cut.nii.gz").write_bytes(gzip.compress(bytes(raw)))
    (warning,) = [w for w in read_volume(tmp_path / "cut.nii.gz").meta["warnings"] if "not read" in w]
    assert "240 bytes after the 6 x 5 x 4 voxels" in warning
    (tmp_path / "whole.nii.gz").write_bytes(gzip.compress((tmp_path / "ct.nii").read_bytes()))
    assert not [w for w in read_volume(tmp_path / "whole.nii.gz").meta.get("warnings", []) if "not read" in w]
    # a .nii.gz cut off after its voxels (the gzip trailer missing) was read as whole; Python's gzip refuses it
    # (a file large enough for nibabel to read its header without reaching the end)
    noise = np.random.default_rng(0).integers(-1000, 1000, size=(128, 128, 16), dtype=np.int16)
    nib.save(nib.Nifti1Image(noise, np.eye(4)), str(tmp_path / "big.nii"))
    (tmp_path / "no_trailer.nii.gz").write_bytes(gzip.compress((tmp_path / "big.nii").read_bytes())[:-8])
    with pytest.raises(InputError, match="truncated or corrupt.*end marker"):
        read_volume(tmp_path / "no_trailer.nii.gz")


def test_compressed_nrrd_metaimage_and_seg_nrrd_with_a_damaged_byte_are_refused(tmp_path):
    """ITK's MetaImage reader only printed 'Uncompress failed' and returned what it had inflated, and its gzip NRRD
    reader often said nothing: a label map with one flipped byte read 113-4772 mL of liver (1087 mL intact) and
    `measure` exited 0. The data stream is now inflated and checked (CRC, end marker, length) before ITK reads."""
    from LiverTumorSegLib.mrml import write_seg_nrrd

    labels = np.zeros((12, 40, 48), np.uint8)
    labels[2:10, 5:35, 6:40] = 1
    labels[4:7, 10:20, 10:20] = 2
    geometry = ImageGeometry(spacing=(0.8, 0.9, 2.5))
    written = [write_label_map(tmp_path / "l.mha", labels, geometry), write_label_map(tmp_path / "l.nrrd", labels, geometry)]
    if importlib.util.find_spec("slicer") is not None:
        written.append(write_seg_nrrd(tmp_path / "l.seg.nrrd", labels, geometry))
    for path in written:
        np.testing.assert_array_equal(read_label_map(path).array, labels)
        raw = bytearray(Path(path).read_bytes())
        header_end = raw.find(b"ElementDataFile = LOCAL\n") + 24 if path.suffix == ".mha" else raw.find(b"\n\n") + 2
        assert header_end > 2
        for fraction in (0.3, 0.6, 0.95):  # a byte inside the compressed data
            damaged = bytearray(raw)
            damaged[header_end + int(fraction * (len(raw) - header_end))] ^= 0xFF
            bad = tmp_path / ("bad" + "".join(Path(path).suffixes))
            bad.write_bytes(bytes(damaged))
            with pytest.raises(InputError, match="truncated or corrupt"):
                read_label_map(bad)
        cut = tmp_path / ("cut" + "".join(Path(path).suffixes))
        cut.write_bytes(bytes(raw[:-6]))
        with pytest.raises(InputError, match="truncated or corrupt"):
            read_label_map(cut)


def test_a_file_named_like_another_format_is_told_what_it_holds(tmp_path):
    """An NRRD saved as .nii.gz, a MetaImage or gzip data saved as .nii, an uncompressed NIfTI saved as .nii.gz
    were 'Cannot read ... as NIfTI: not a gzip file. Check that the file is complete.' (the file was complete),
    and a NIfTI renamed .png was '2D (a .png picture)'."""
    volume = CTVolume(np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) - 1000,
                      ImageGeometry(spacing=(1.0, 1.0, 2.0)))
    made = {suffix: write_volume(tmp_path / f"ct{suffix}", volume) for suffix in (".nrrd", ".mha", ".nii", ".nii.gz")}
    expected = {("nrrd", ".nii.gz"): "an NRRD image: rename it to .nrrd",
                ("mha", ".nii"): "a MetaImage: rename it to .mha",
                ("nii.gz", ".nii"): "a gzip-compressed NIfTI image: rename it to .nii.gz",
                ("nii", ".nii.gz"): "a NIfTI image: rename it to .nii)"}
    for (real, named), words in expected.items():
        wrong = tmp_path / f"wrong_{real.replace('.', '_')}{named}"
        wrong.write_bytes(Path(made["." + real]).read_bytes())
        with pytest.raises(InputError, match=rf"Cannot read .* as NIfTI: .*\(its content is {re.escape(words)}"):
            read_volume(wrong)
    picture = tmp_path / "ct.png"
    picture.write_bytes(Path(made[".nii.gz"]).read_bytes())
    with pytest.raises(InputError, match=r"is named like a \.png picture \(its content is a gzip-compressed NIfTI"):
        read_volume(picture)
    real_png = tmp_path / "photo.png"
    real_png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(InputError, match=r"is 2D \(a \.png picture\)"):
        read_volume(real_png)


def test_a_scale_factor_that_overflows_is_named_as_the_headers_fault(tmp_path, recwarn):
    """scl_slope 1e38 printed numpy's 'overflow encountered in multiply' and then 'has 777943 NaN/Inf voxels', as
    if the voxels were bad; the header's scale factor is."""
    stored = (np.arange(4 * 5 * 6, dtype=np.int16).reshape(6, 5, 4) - 60)  # (x, y, z), some 0 (stays finite)
    image = nib.Nifti1Image(stored, np.eye(4))
    image.header.set_slope_inter(1e38, 0.0)
    path = tmp_path / "huge_slope.nii"
    nib.save(image, str(path))
    with pytest.raises(InputError, match=r"scale factors \(scl_slope 1e\+38, scl_inter 0\) turn stored values into "
                                         r"numbers beyond float32.*header is damaged"):
        read_volume(path)
    assert not [w for w in recwarn if "overflow" in str(w.message)]
    image.header.set_slope_inter(2.0, -1024.0)  # an ordinary scale still reads
    nib.save(image, str(path))
    assert float(read_volume(path).array.max()) == pytest.approx(2.0 * 59 - 1024.0)


def test_the_format_sniffer_says_nothing_of_a_damaged_gzip_stream(tmp_path):
    """A file that starts like gzip but whose stream is damaged raised zlib.error from the sniffer, which turned
    'Cannot read ... the file is truncated or corrupt' into an internal error."""
    from LiverTumorSegLib.io.formats import content_format

    broken = tmp_path / "b.nii.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    assert content_format(broken) is None
    with pytest.raises(InputError, match="Cannot read"):
        read_volume(broken)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_an_incomplete_itk_write_is_refused_and_the_earlier_file_kept(tmp_path, monkeypatch, suffix):
    """On a full disk ITK's NRRD writer reports nothing: a 7.5 kB label map came out as 4 kB that no reader opens,
    'wrote' and exit 0, and with --overwrite it replaced the good file. A written file is now checked whole before
    it replaces anything (a full disk is simulated by cutting the written file short)."""
    from LiverTumorSegLib.io import writers
    from LiverTumorSegLib.volume import ImageGeometry

    labels = np.zeros((6, 40, 50), np.uint8)
    labels[1:5, 5:35, 5:45] = 1
    labels[2:4, 10:20, 10:20] = 2
    rng = np.random.default_rng(0)
    labels[rng.random(labels.shape) < 0.2] = 0  # noise, so the compressed data is more than a few bytes
    geometry = ImageGeometry(spacing=(0.8, 0.8, 2.5))
    path = write_label_map(tmp_path / f"good{suffix}", labels, geometry)
    before = path.read_bytes()
    real_write = writers._write_itk

    def write_cut_short(tmp, *args, **kwargs):
        real_write(tmp, *args, **kwargs)
        with open(tmp, "r+b") as handle:
            handle.truncate(max(os.path.getsize(tmp) - 200, 1))

    monkeypatch.setattr(writers, "_write_itk", write_cut_short)
    other = labels.copy()
    other[other == 2] = 1
    with pytest.raises(InputError, match=f"Cannot write '.*good\\{suffix}': the written file.*nothing was replaced"):
        write_label_map(path, other, geometry, overwrite=True)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"good{suffix}"]  # no temporary file left


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_pipe_or_a_device_given_as_the_ct_is_named_as_no_regular_file(tmp_path):
    """A FIFO or /dev/zero was called 'an empty file (0 bytes); it was probably not copied completely'."""
    fifo = tmp_path / "ct.nii.gz"
    os.mkfifo(fifo)
    for path in [fifo] + ([Path("/dev/zero")] if Path("/dev/zero").exists() else []):
        with pytest.raises(InputError, match="is not a regular file \\(a pipe, socket or device\\)"):
            read_volume(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
@pytest.mark.parametrize("suffix", [".nhdr", ".mhd"])
def test_a_header_whose_data_file_is_a_pipe_is_refused_at_once(tmp_path, suffix):
    """A detached NRRD (raw or gzip) or MetaImage whose data file was a named pipe hung ITK's read for ever (stop
    109's note): the read runs in a child process with a time limit here, so that the old behaviour fails the test
    instead of hanging the suite."""
    import subprocess
    import sys

    os.mkfifo(tmp_path / "data.raw")
    header = tmp_path / f"ct{suffix}"
    if suffix == ".nhdr":
        header.write_text("NRRD0004\ntype: int16\ndimension: 3\nsizes: 8 8 8\nspace: left-posterior-superior\n"
                          "space directions: (1,0,0) (0,1,0) (0,0,1)\nencoding: gzip\nendian: little\n"
                          "data file: data.raw\n\n")
    else:
        header.write_text("ObjectType = Image\nNDims = 3\nDimSize = 8 8 8\nElementType = MET_SHORT\n"
                          "ElementSpacing = 1 1 1\nElementDataFile = data.raw\n")
    script = ("from LiverTumorSegLib.io import read_volume\nfrom LiverTumorSegLib.errors import InputError\n"
              f"try:\n    read_volume({str(header)!r})\nexcept InputError as exc:\n    print('refused:', exc)\n")
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail("reading a header whose data file is a named pipe waited on the pipe")
    assert "refused:" in done.stdout and "is not a regular file (a pipe, socket or device" in done.stdout, done


def test_the_label_map_advice_gives_a_whole_map_that_loses_nothing():
    """The advice for values outside 0/1/2 named only the first of them and left the file's own 1 and 2 out of the
    map ('{"127": 1}' for a 0/127/255 reference, whose tumor then became background; helper-13's dress rehearsal):
    it now gives a map that keeps every class the file holds."""
    from LiverTumorSegLib.io.labels import remap_labels

    def advice(values):
        with pytest.raises(LabelError) as caught:
            remap_labels(np.array(values), None, "x.nii.gz", option="--label-map")
        return str(caught.value).split(" (tumor). ")[1]

    # one value more: which it is, the data's owner knows (with 1 and 2 in the map, 3 or 5 was called liver outright)
    # 1 and 2 are in every map: it applies to every case ('{"3": 1}' for one file made the others' tumor background)
    kept = " (the map applies to every file it is given with, so it keeps 1 and 2)."
    assert advice([0, 255]) == ("Map them with --label-map '{\"1\": 1, \"2\": 2, \"255\": 1}' if 255 is liver (\"255\": 2 "
                                "if it is tumor, \"255\": 0 if it is neither); every value not in the map becomes 0" + kept)
    assert advice([0, 1, 2, 5]) == ("Map them with --label-map '{\"1\": 1, \"2\": 2, \"5\": 1}' if 5 is liver (\"5\": 2 "
                                    "if it is tumor, \"5\": 0 if it is neither); every value not in the map becomes 0"
                                    + kept)
    assert advice([0, 127, 255]) == ("Map them with --label-map '{\"1\": 1, \"2\": 2, \"127\": 1, \"255\": 2}' if 127 is "
                                     "liver and 255 tumor (the other way round otherwise); every value not in the map "
                                     "becomes 0" + kept)
    assert "multi-organ" in advice([0, 3, 5, 7])


def test_a_nifti_saved_without_its_extension_is_told_how_to_rename_it(tmp_path):
    """A NIfTI named without an extension ('scan', as some exports write it) was only an 'Unknown file type'."""
    for name, suffix in (("scan.nii.gz", ".nii.gz"), ("plain.nii", ".nii")):
        _write_nifti(tmp_path / name, np.zeros((4, 4, 4), np.int16))
        bare = tmp_path / name.split(".")[0]
        (tmp_path / name).rename(bare)
        with pytest.raises(InputError, match=rf"Unknown file type '{bare.name}' .* rename it to {re.escape(suffix)}\)"):
            read_volume(bare)


def test_a_2d_label_map_is_told_a_3d_label_map_is_needed_not_a_ct(tmp_path):
    _write_nifti(tmp_path / "slice.nii.gz", np.zeros((16, 16), np.uint8))
    with pytest.raises(InputError, match=r"is 2D \(16 x 16 pixels\); a 3D label map is needed") as refused:
        read_label_map(tmp_path / "slice.nii.gz")
    # the label map formats: it offered the CT's 'or a DICOM series folder', which evaluate refuses as a label map
    assert str(refused.value).endswith("(NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) or a "
                                       "Slicer .seg.nrrd).")
    with pytest.raises(InputError, match=r"a 3D CT volume is needed"):  # as a CT, it is told so
        read_volume(tmp_path / "slice.nii.gz")


def test_slices_stored_along_the_time_axis_are_told_so_not_to_extract_one_volume(tmp_path):
    """A (x, y, 1, 3) NIfTI (slices along t) was told it is 4D and to extract one volume, which leaves one 2D slice."""
    _write_nifti(tmp_path / "t.nii.gz", np.zeros((16, 16, 1, 3), np.int16))
    with pytest.raises(InputError, match=r"is 16 x 16 x 1 x 3 voxels: its 3 slices are stored along the 4th \(time\) "
                                         r"axis with one slice along z; a 3D CT volume is needed\. Re-save it"):
        read_volume(tmp_path / "t.nii.gz")


def test_a_nifti_named_dcm_is_told_to_be_renamed_not_to_give_a_dicom_folder(tmp_path):
    _write_nifti(tmp_path / "scan.nii.gz", np.zeros((4, 4, 4), np.int16))
    (tmp_path / "scan.nii.gz").rename(tmp_path / "scan.dcm")
    with pytest.raises(InputError, match=r"'.*scan\.dcm' is not a DICOM file \(its content is a gzip-compressed NIfTI "
                                         r"image: rename it to \.nii\.gz\)\.$"):
        read_volume(tmp_path / "scan.dcm")


def test_a_nifti_whose_scale_slope_is_negative_is_refused_saying_so(tmp_path):
    """scl_slope -1 turned every value around (air +1000 HU); it was told its values looked shifted by +1024."""
    image = nib.Nifti1Image(np.full((8, 8, 4), 1000, np.int16), np.eye(4))
    image.header.set_slope_inter(-1.0, 0.0)
    nib.save(image, str(tmp_path / "negated.nii.gz"))
    with pytest.raises(InputError, match=r"its header's scl_slope is negative \(-1\), which turns every value around"):
        read_volume(tmp_path / "negated.nii.gz")


@pytest.mark.parametrize("units, warned", [('"cm" "cm" "cm"', True), ('"mm" "mm" "mm"', False), (None, False)])
def test_a_nrrd_whose_space_units_are_not_mm_is_read_as_mm_with_a_warning(tmp_path, units, warned):
    """ITK (and 3D Slicer) ignore a NRRD's 'space units' and read spacing and origin as mm; a header in cm was read
    as 1, 2, 3 mm voxels without a word, so every mL and mm measured was off by the unit's factor. It is still read
    as mm (the labels overlay the CT as in Slicer), with a warning naming the unit."""
    voxels = (np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) - 1000)  # (z, y, x)
    header = ["NRRD0004", "type: short", "dimension: 3", "space: left-posterior-superior", "sizes: 6 5 4",
              "space directions: (1,0,0) (0,2,0) (0,0,3)", "space origin: (0,0,0)"]
    header += [f"space units: {units}"] if units else []
    header += ["endian: little", "encoding: raw", "", ""]
    path = tmp_path / "ct.nrrd"
    path.write_bytes("\n".join(header).encode("ascii") + voxels.astype("<i2").tobytes())
    volume = read_volume(path)
    assert volume.geometry.spacing == pytest.approx((1.0, 2.0, 3.0))
    np.testing.assert_array_equal(volume.array, voxels)
    said = [w for w in volume.meta.get("warnings", []) if "space units" in w]
    assert len(said) == int(warned)
    if warned:
        assert "'cm', not mm" in said[0] and "off by that unit's factor" in said[0]


def test_a_label_map_larger_than_allowed_says_so_and_keeps_the_earlier_file(tmp_path, monkeypatch):
    """Under `ulimit -f` (or on FAT32, 4 GiB) a NIfTI write fails with EFBIG ('File too large'): the error asked
    'is the disk full or read-only?'. It names the size limits now; the file --overwrite was replacing is kept."""
    import errno

    from LiverTumorSegLib.io import writers

    geometry = ImageGeometry(spacing=(0.8, 0.8, 2.5))
    path = write_label_map(tmp_path / "seg.nii.gz", np.ones((2, 4, 4), np.uint8), geometry)
    before = path.read_bytes()

    def too_large(*args, **kwargs):
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(writers, "_write_nifti", too_large)
    with pytest.raises(InputError, match=r"Cannot write '.*seg\.nii\.gz': \[Errno 27\] File too large \(it would be "
                                         r"larger than allowed here: is there a file-size limit \(ulimit -f\)"):
        write_label_map(path, np.zeros((2, 4, 4), np.uint8), geometry, overwrite=True)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg.nii.gz"]


def test_label_map_whose_header_scale_collapses_its_labels_into_one_is_refused(tmp_path):
    """A header scl_slope of 1e-30 made labels 1 and 2 into 1e-30 and 2e-30, which the label check rounds (within
    float rounding) to 0: the map was read as all background, and measure reported no liver, exit 0 (the reader
    fuzzing audit). Distinct stored values that the header's scale makes one label are refused, naming the header."""
    stored = np.zeros((6, 5, 4), np.uint8)
    stored[1:4, 1:4, 1:3] = 1
    stored[2, 2, 1] = 2
    image = nib.Nifti1Image(stored, np.diag([3.0, 3.0, 3.0, 1.0]))
    image.header.set_slope_inter(1e-30, 0.0)
    path = tmp_path / "scaled_labels.nii.gz"
    nib.save(image, str(path))
    with pytest.raises(LabelError, match=r"header's scale factors .*scl_slope 1e-30, scl_inter 0\) make values a label "
                                         r"map cannot hold: it makes 3 distinct stored values into the labels 0 .*"
                                         r"set scl_slope 1 and scl_inter 0"):
        read_label_map(path)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_a_nifti_whose_header_claims_huge_extensions_is_refused_before_nibabel_reads_them(tmp_path, suffix):
    """nibabel reads every header extension into memory before anything else: a 6 MB .nii.gz whose header put the
    voxels after six 1 GiB extensions took 6.6 GB (the file-safety audit). vox_offset is checked first; a file with
    an ordinary extension still reads."""
    import gzip
    import struct

    import nibabel as nib

    from LiverTumorSegLib.io import read_header_geometry, read_label_map
    from LiverTumorSegLib.io.nifti import MAX_NIFTI_EXTENSION_BYTES

    image = nib.Nifti1Image(np.zeros((4, 5, 6), np.int16) - 1000, np.eye(4))
    image.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"a small extension"))
    ok = tmp_path / f"ok{suffix}"
    nib.save(image, str(ok))
    assert read_volume(ok).shape_zyx == (6, 5, 4)
    raw = bytearray(gzip.decompress(ok.read_bytes()) if suffix == ".nii.gz" else ok.read_bytes())
    raw[108:112] = struct.pack("<f", float(MAX_NIFTI_EXTENSION_BYTES + 4096))  # vox_offset
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(gzip.compress(bytes(raw)) if suffix == ".nii.gz" else bytes(raw))
    for read in (read_volume, read_label_map, read_header_geometry):
        with pytest.raises(InputError, match=r"its NIfTI header puts the voxels \d+ bytes into the file \(vox_offset\), "
                                             r"after \d+ bytes of header extensions"):
            read(bad)


def test_a_label_map_with_a_default_header_is_told_to_take_the_images_header_not_to_be_resampled(tmp_path):
    """A mask of the CT's size saved with np.eye(4) (origin 0, 1 mm, identity) was told 'resample it onto the
    reference grid first', which would move it where that default header puts it: an empty label (the data audit)."""
    import pytest

    from LiverTumorSegLib.io.labels import LabelError, label_on_reference_grid
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    ct = CTVolume(np.zeros((6, 10, 12), np.int16), ImageGeometry(spacing=(0.8, 0.8, 2.0),
                                                                  origin=(-200.0, -150.0, -300.0)), source="ct.nii")
    mask = CTVolume(np.zeros((6, 10, 12), np.uint8), ImageGeometry(spacing=(1.0, 1.0, 1.0)), source="mask.nii")
    with pytest.raises(LabelError) as caught:
        label_on_reference_grid(mask, ct, 1e-3)
    assert "a default header (origin 0, identity direction, 1 mm voxels)" in str(caught.value)
    assert "do not resample it" in str(caught.value) and "resample it onto the reference grid first" not in str(
        caught.value)
    # saved through nibabel with np.eye(4) and read back: an identity affine is RAS, read as LPS diag(-1, -1, 1) (the
    # advice missed this, the case it was written for: the review)
    import nibabel as nib

    from LiverTumorSegLib.io import read_label_map

    nib.save(nib.Nifti1Image(np.zeros((12, 10, 6), np.uint8), np.eye(4)), str(tmp_path / "eye.nii.gz"))
    from_nibabel = read_label_map(tmp_path / "eye.nii.gz")
    assert from_nibabel.shape_zyx == ct.shape_zyx
    with pytest.raises(LabelError, match="a default header"):
        label_on_reference_grid(from_nibabel, ct, 1e-3)
    moved = CTVolume(mask.array, ImageGeometry(spacing=(0.8, 0.8, 2.0), origin=(-180.0, -150.0, -300.0)),
                     source="moved.nii")  # a scan's header, elsewhere: the general advice
    with pytest.raises(LabelError, match="resample it onto the reference grid first"):
        label_on_reference_grid(moved, ct, 1e-3)


@pytest.mark.parametrize("slope, inter", [(2.0, 0.0), (1.0, 1.0)])
def test_a_label_map_scaled_by_its_header_into_allowed_values_is_refused(tmp_path, slope, inter):
    """A 0/1 liver mask with scl_slope 2 read as 0/2 (all tumor: tumor burden 100 %), with scl_inter 1 as 1/2 (the
    whole grid liver with a 'lesion'), without a word (the bad-inputs audit): refused, naming the header."""
    import nibabel as nib

    from LiverTumorSegLib.io import read_label_map
    from LiverTumorSegLib.io.labels import LabelError

    mask = np.zeros((12, 10, 6), np.uint8)
    mask[3:9, 3:7, 1:5] = 1
    image = nib.Nifti1Image(mask, np.diag([2.0, 2.0, 3.0, 1.0]))
    image.header.set_slope_inter(slope, inter)
    nib.save(image, str(tmp_path / "scaled.nii.gz"))
    with pytest.raises(LabelError, match=rf"its NIfTI header scales the stored values .*scl_slope {slope:g}, "
                                         rf"scl_inter {inter:g}"):
        read_label_map(tmp_path / "scaled.nii.gz")
    image.header.set_slope_inter(1.0, 0.0)
    nib.save(image, str(tmp_path / "plain.nii.gz"))
    assert read_label_map(tmp_path / "plain.nii.gz").array.max() == 1


def test_a_float_mask_saved_with_an_int16_header_is_read_scaled_as_before(tmp_path):
    """nib.save of a float 0/1/2 mask with a CT's int16 header stores -32768/0/32767 with scl_slope 3.05e-5 and
    scl_inter 1.00002: its stored values are no labels, so only the scaled reading is one (read before, refused by
    the first form of the scaled-label rule: the review)."""
    import nibabel as nib

    from LiverTumorSegLib.io import read_label_map

    mask = np.zeros((12, 10, 6), np.float64)
    mask[3:9, 3:7, 1:5] = 1.0
    mask[5:7, 4:6, 2:4] = 2.0
    nib.save(nib.Nifti1Image(np.zeros(mask.shape, np.int16), np.diag([2.0, 2.0, 3.0, 1.0])), str(tmp_path / "ct.nii"))
    ct = nib.load(str(tmp_path / "ct.nii"))  # a CT's int16 header, as read from its file
    nib.save(nib.Nifti1Image(mask, ct.affine, ct.header), str(tmp_path / "float_mask.nii.gz"))
    stored = np.asanyarray(nib.load(str(tmp_path / "float_mask.nii.gz")).dataobj.get_unscaled())
    assert sorted(np.unique(stored).tolist()) == [-32768, 0, 32767]  # the premise: stored scaled
    read = read_label_map(tmp_path / "float_mask.nii.gz")
    assert sorted(np.unique(read.array).tolist()) == [0, 1, 2] and int(np.count_nonzero(read.array == 2)) == 8
