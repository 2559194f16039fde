"""What other tools read from the files this library writes: nibabel, SimpleITK (ITK, 3D Slicer), MONAI.

Arrays are (z, y, x); nibabel arrays are (x, y, z)."""
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from LiverTumorSegLib.io import read_volume, write_probability_map
from LiverTumorSegLib.io.formats import PROBABILITY_255_CONTENT
from LiverTumorSegLib.io.probability import read_probability_map
from LiverTumorSegLib.volume import ImageGeometry

OBLIQUE = ImageGeometry(spacing=(0.8, 0.9, 2.5), origin=(10.5, -20.25, 30.0),
                        direction=(0.9396926, 0.3420201, 0.0, 0.3420201, -0.9396926, 0.0, 0.0, 0.0, -1.0))


def _probability_levels() -> np.ndarray:
    """A (z, y, x) = (3, 4, 5) uint8 map 255 x p holding 0, 1, 128 and 255."""
    levels = np.zeros((3, 4, 5), np.uint8)
    levels[1, 1, 1], levels[1, 2, 2], levels[2, 3, 4] = 1, 128, 255
    return levels


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_a_nifti_probability_map_reads_as_probabilities_in_other_tools(tmp_path, suffix):
    """segment --probabilities stored 255 x p without a NIfTI scale: nibabel's get_fdata, SimpleITK (3D Slicer) and
    MONAI read 0..255 (255 where the probability is 1.0); only descrip said otherwise. Its scl_slope 1/255 now
    makes them read p, the stored voxels stay uint8, and this library still reads those uint8 levels."""
    levels = _probability_levels()
    path = write_probability_map(tmp_path / f"prob{suffix}", levels, OBLIQUE)
    expected_xyz = levels.T / 255.0

    image = nib.load(str(path))
    assert image.get_data_dtype() == np.uint8
    assert np.array_equal(np.asanyarray(image.dataobj.get_unscaled()), levels.T)
    np.testing.assert_allclose(image.get_fdata(), expected_xyz, rtol=0, atol=1e-6)
    assert float(image.dataobj.slope) == pytest.approx(1 / 255, rel=1e-6) and float(image.dataobj.inter) == 0.0
    assert (float(image.header["cal_min"]), float(image.header["cal_max"])) == (0.0, 1.0)
    assert bytes(image.header["descrip"].item()).rstrip(b"\0").decode() == PROBABILITY_255_CONTENT

    itk_values = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))  # (z, y, x)
    np.testing.assert_allclose(itk_values, levels / 255.0, rtol=0, atol=1e-6)

    own = read_volume(path, uint8_if_fits=True)
    assert own.array.dtype == np.uint8 and np.array_equal(own.array, levels)
    assert own.meta["content"] == PROBABILITY_255_CONTENT
    placed = read_probability_map(path, own, "map")
    assert placed.dtype == np.uint8 and np.array_equal(placed, levels)


@pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader:UserWarning")  # MONAI's note on a missing GPU decoder
def test_monai_loads_a_nifti_probability_map_as_probabilities(tmp_path):
    """MONAI's LoadImage (nibabel reader), what a researcher's pipeline uses, reads p, not 255 x p."""
    LoadImage = pytest.importorskip("monai.transforms").LoadImage
    levels = _probability_levels()
    path = write_probability_map(tmp_path / "prob.nii.gz", levels, OBLIQUE)
    loaded = np.asarray(LoadImage(image_only=True)(str(path)))  # (x, y, z)
    np.testing.assert_allclose(loaded, levels.T / 255.0, rtol=0, atol=1e-6)


def test_a_nifti_label_map_has_the_label_intent_no_scale_and_the_ct_placement(tmp_path):
    """The label map said nothing of being labels (intent code 0), so viewers that read the intent (NiiVue, AFNI,
    MRIcroGL) showed it as a grey image. It now has NIFTI_INTENT_LABEL (1002); the rest of what nibabel and ITK
    read is checked against an oblique CT written by nibabel: uint8, no scale, mm, sform = qform (codes 1)."""
    from LiverTumorSegLib.io import write_label_map

    affine = OBLIQUE.ijk_to_ras()
    ct_path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((5, 4, 3), np.int16), affine), str(ct_path))
    ct = read_volume(ct_path)
    labels = np.zeros(ct.shape_zyx, np.uint8)
    labels[1, 2, 3], labels[2, 3, 4] = 1, 2
    image = nib.load(str(write_label_map(tmp_path / "labels.nii.gz", labels, ct.geometry)))
    header = image.header

    assert int(header["intent_code"]) == 1002 and header.get_intent()[0] == "label"
    assert image.get_data_dtype() == np.uint8 and int(header["datatype"]) == 2
    assert image.dataobj.slope == 1.0 and image.dataobj.inter == 0.0  # stored NaN: no scale
    assert header.get_xyzt_units()[0] == "mm"
    assert (int(header["sform_code"]), int(header["qform_code"])) == (1, 1)
    np.testing.assert_allclose(image.get_sform(), nib.load(str(ct_path)).affine, rtol=0, atol=1e-5)
    np.testing.assert_allclose(image.get_qform(), nib.load(str(ct_path)).affine, rtol=0, atol=1e-5)
    assert np.array_equal(np.asanyarray(image.dataobj), labels.T)

    itk_labels, itk_ct = sitk.ReadImage(str(tmp_path / "labels.nii.gz")), sitk.ReadImage(str(ct_path))
    assert itk_labels.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_allclose(itk_labels.GetOrigin(), itk_ct.GetOrigin(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(itk_labels.GetDirection(), itk_ct.GetDirection(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(itk_labels.GetSpacing(), itk_ct.GetSpacing(), rtol=1e-6)
