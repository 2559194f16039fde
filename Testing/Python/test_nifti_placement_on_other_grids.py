"""A NIfTI CT's own placement (sform and qform that disagree, or no orientation) is kept in its NIfTI outputs so that
every tool lays them over the CT. It belongs to the grid the CT was read on: found in an audit of the I/O layer
(1 Dec 2026), a canonicalized CT carried it on and its label map written with it lay mirrored, write_volume dropped
it (a copy ITK places 48 mm off), a gzip stream named .nii was called a damaged qform, and read_header_geometry
answered where read_volume refuses."""
import gzip

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")

from LiverTumorSegLib.errors import InputError  # noqa: E402
from LiverTumorSegLib.io import nifti_write_options, read_header_geometry, read_volume, write_label_map, \
    write_volume  # noqa: E402
from LiverTumorSegLib.orientation import canonicalize  # noqa: E402
from LiverTumorSegLib.volume import PLACEMENT_META_KEYS  # noqa: E402

SFORM = np.diag([0.8, 0.9, 2.5, 1.0])
SFORM[:3, 3] = (-12.0, -10.0, -50.0)
QFORM = SFORM.copy()
QFORM[1, 3] += 48.0  # the qform 48 mm elsewhere: ITK and Slicer place the file by it (sform code 2)


def _ct_with_disagreeing_transforms(tmp_path):
    hu = np.full((32, 24, 6), -1000, np.int16)  # (x, y, z) as nibabel stores it
    hu[2:6, 3:7, 2:4] = 50
    image = nib.Nifti1Image(hu, SFORM)
    image.set_sform(SFORM, code=2)
    image.set_qform(QFORM, code=1)
    path = tmp_path / "ct.nii.gz"
    nib.save(image, str(path))
    return path, hu


def _centre_ras(affine, data):
    return nib.affines.apply_affine(affine, np.argwhere(np.asarray(data) > 0).mean(axis=0))


def test_a_canonicalized_ct_does_not_carry_the_files_placement_and_its_label_map_lies_on_it(tmp_path):
    path, hu = _ct_with_disagreeing_transforms(tmp_path)
    ct = read_volume(path)
    assert ct.meta.get("nifti_header_transforms")
    canonical, reorientation = canonicalize(ct)
    assert not reorientation.is_identity and not any(key in canonical.meta for key in PLACEMENT_META_KEYS)
    out = write_label_map(tmp_path / "labels.nii.gz", (canonical.array > 0).astype(np.uint8), canonical.geometry,
                          **nifti_write_options(canonical))
    written = nib.load(str(out))
    # the block where the CT has it (it lay at (10.0, 6.65, -43.75) RAS: mirrored left-right and front-back)
    np.testing.assert_allclose(_centre_ras(written.affine, written.dataobj), _centre_ras(SFORM, hu > 0), atol=1e-4)
    # the CT's own options with an array on another grid: refused, not written mirrored
    with pytest.raises(ValueError, match="placement options .* belong to the grid the input was read on"):
        write_label_map(tmp_path / "wrong.nii.gz", (canonical.array > 0).astype(np.uint8), canonical.geometry,
                        **nifti_write_options(ct))
    assert not (tmp_path / "wrong.nii.gz").exists()
    # on its own grid they still keep both transforms and codes, so ITK places the label map as it places the CT
    kept = nib.load(str(write_label_map(tmp_path / "same.nii.gz", (ct.array > 0).astype(np.uint8), ct.geometry,
                                        **nifti_write_options(ct))))
    assert int(kept.header["sform_code"]) == 2 and np.allclose(kept.get_qform(), QFORM, atol=1e-4)


def test_write_volume_keeps_a_nifti_cts_own_placement(tmp_path):
    path, _ = _ct_with_disagreeing_transforms(tmp_path)
    copy = nib.load(str(write_volume(tmp_path / "copy.nii.gz", read_volume(path))))
    assert int(copy.header["sform_code"]) == 2 and int(copy.header["qform_code"]) == 1
    np.testing.assert_allclose(copy.get_qform(), QFORM, atol=1e-4)  # was the sform, code 1: 48 mm off in ITK
    # without orientation (codes 0): the copy has none either (it got code 1 and another place in ITK)
    plain = nib.Nifti1Image(np.zeros((8, 6, 4), np.int16), np.diag([0.7, 0.9, 3.0, 1.0]))
    plain.set_sform(None, code=0)
    plain.set_qform(None, code=0)
    nib.save(plain, str(tmp_path / "plain.nii"))
    again = nib.load(str(write_volume(tmp_path / "plain_copy.nii", read_volume(tmp_path / "plain.nii"))))
    assert int(again.header["sform_code"]) == 0 and int(again.header["qform_code"]) == 0
    # a volume on another grid with the file's meta is written with its own geometry
    canonical, _ = canonicalize(read_volume(path))
    canonical.meta.update(read_volume(path).meta)
    other = read_volume(write_volume(tmp_path / "other.nii.gz", canonical))
    assert other.geometry.almost_equal(canonical.geometry, 1e-4)


def test_a_gzip_stream_named_nii_is_named_so_not_a_damaged_qform(tmp_path):
    said = []
    for seed in range(12):  # random CT values: 5 of these 12 streams read as a qform-only header, "damaged"
        hu = np.random.default_rng(seed).integers(-1000, 200, (32 + seed, 24, 6)).astype(np.int16)
        plain = tmp_path / f"p{seed}.nii"
        nib.save(nib.Nifti1Image(hu, np.diag([-0.8, -0.9, 2.5, 1.0])), str(plain))
        zipped = tmp_path / f"g{seed}.nii"
        zipped.write_bytes(gzip.compress(plain.read_bytes(), mtime=0))
        with pytest.raises(InputError) as raised:
            read_volume(zipped)
        said.append(str(raised.value))
    assert all("rename it to .nii.gz" in text and "qform" not in text for text in said), said


def test_read_header_geometry_refuses_what_read_volume_refuses(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    affine = np.diag([-0.8, -0.8, 2.5, 1.0])
    nib.save(nib.Nifti1Image(np.zeros((16, 16), np.int16), affine), str(tmp_path / "flat.nii"))
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 1, 5), np.int16), affine), str(tmp_path / "time.nii"))
    sheared = sitk.Image([16, 16, 6], sitk.sitkInt16)
    direction = np.eye(3)
    direction[1, 2], direction[2, 2] = np.sin(np.radians(15)), np.cos(np.radians(15))
    sheared.SetDirection(direction.ravel())
    sitk.WriteImage(sheared, str(tmp_path / "sheared.nrrd"))
    sitk.WriteImage(sitk.Image([16, 16], sitk.sitkInt16), str(tmp_path / "flat.nrrd"))
    for name, said in (("flat.nii", "is 2D"), ("time.nii", "stored along the 4th"), ("sheared.nrrd", "sheared"),
                       ("flat.nrrd", "is 2D")):
        for read in (read_volume, read_header_geometry):
            with pytest.raises(InputError, match=said):  # IndexError, a 1-slice shape, a sheared grid before
                read(tmp_path / name)
