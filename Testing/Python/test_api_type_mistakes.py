"""Type mistakes a researcher makes calling the library from Python: each is refused where it is made, with a message
that says what was passed, what is expected and how to get it. Before, they failed deep inside with an unrelated
error ("'CTVolume' object has no attribute 'ijk_to_ras'", "'<' not supported", "cannot reshape array of size 16"),
or were accepted and gave a wrong file or number."""
import warnings

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.inference.lesion_report import lesion_report
from LiverTumorSegLib.io import write_label_map, write_probability_map, write_volume
from LiverTumorSegLib.volume import CTVolume, ImageGeometry

GEOMETRY = ImageGeometry(spacing=(0.8, 0.9, 2.5), origin=(-10.0, 20.0, 30.0))


def small_labels() -> np.ndarray:
    labels = np.zeros((4, 6, 5), np.uint8)
    labels[1:3, 1:5, 1:4] = 1
    labels[2, 2:4, 2:3] = 2
    return labels


def nibabel_image(array_zyx: np.ndarray) -> nib.Nifti1Image:
    return nib.Nifti1Image(np.ascontiguousarray(array_zyx.T), GEOMETRY.ijk_to_ras())


def simpleitk_image(array_zyx: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array_zyx)
    image.SetSpacing(GEOMETRY.spacing)
    return image


def test_write_label_map_says_to_pass_ct_geometry_for_a_ctvolume_or_an_affine(tmp_path):
    labels = small_labels()
    ct = CTVolume(labels.astype(np.int16), GEOMETRY)
    with pytest.raises(TypeError, match=r"write_label_map needs an ImageGeometry .* got a CTVolume; .*ct\.geometry"):
        write_label_map(tmp_path / "a.nii.gz", labels, ct)
    with pytest.raises(TypeError, match=r"got a 4 x 4 matrix; .*ImageGeometry\.from_ijk_to_ras\(affine\)"):
        write_label_map(tmp_path / "b.nrrd", labels, GEOMETRY.ijk_to_ras())
    with pytest.raises(TypeError, match=r"write_probability_map needs an ImageGeometry .* got a CTVolume"):
        write_probability_map(tmp_path / "c.nii.gz", labels, ct)
    assert not list(tmp_path.iterdir())  # nothing written, not even a placeholder
    write_label_map(tmp_path / "a.nii.gz", labels, ct.geometry)  # the way the message names


@pytest.mark.parametrize("make_image, how", [(nibabel_image, r"np\.asarray\(img\.dataobj\)\.T"),
                                             (simpleitk_image, r"sitk\.GetArrayFromImage\(image\)")],
                         ids=["nibabel", "SimpleITK"])
def test_write_label_map_refuses_an_image_object_as_labels_and_names_the_array(tmp_path, make_image, how):
    image = make_image(small_labels())
    with pytest.raises(TypeError, match=r"write_label_map needs the label map as a numpy array in \(z, y, x\) order, "
                                        r"got a (nibabel Nifti1Image|SimpleITK Image); .*read_label_map\(path\).*"
                                        + how):
        write_label_map(tmp_path / "labels.nii.gz", image, GEOMETRY)
    with pytest.raises(TypeError, match=r"write_probability_map needs the probability map as a numpy array"):
        write_probability_map(tmp_path / "probability.nii.gz", image, GEOMETRY)
    assert not list(tmp_path.iterdir())


def test_writers_say_how_to_convert_float_probabilities(tmp_path):
    """A softmax map (float 0..1) given to either writer was refused without the conversion to make ("a probability
    map is written as uint8 255 x p, got float32"; "label map has non-integer values")."""
    probability = np.linspace(0.0, 1.0, small_labels().size, dtype=np.float32).reshape(small_labels().shape)
    with pytest.raises(ValueError, match=r"got float32; pass np\.round\(255 \* p\)\.astype\(np\.uint8\)"):
        write_probability_map(tmp_path / "probability.nii.gz", probability, GEOMETRY)
    with pytest.raises(ValueError, match=r"non-integer values \(0\.00\d+, .*\): .*round or threshold it first, "
                                         r".*write_probability_map"):
        write_label_map(tmp_path / "labels.nii.gz", probability, GEOMETRY)
    assert not list(tmp_path.iterdir())
    write_probability_map(tmp_path / "probability.nii.gz", np.round(255 * probability).astype(np.uint8), GEOMETRY)


def test_write_label_map_rounds_the_float_labels_read_label_map_rounds(tmp_path):
    """read_label_map rounds float labels within 1e-3 of an integer (a map saved as float32 by a scaling step) while
    write_label_map refused them: a float32 map with 1.9996 for tumor could be read but not written back. Written
    now as the reader reads it (1.9996 is tumor, 2, not 1 as a cast would make it); NaN and 0.998 stay refused, and
    the file round-trips to the same uint8 map."""
    from LiverTumorSegLib.io import read_label_map

    labels = small_labels()
    near = labels.astype(np.float32)
    near[labels == 1] = 0.9999999
    near[labels == 2] = 1.9996
    near[labels == 0] = -0.0004
    written = write_label_map(tmp_path / "labels.nii.gz", near, GEOMETRY)
    back = read_label_map(written).array
    assert back.dtype == np.uint8 and np.array_equal(back, labels)
    for bad, shown in ((0.998, "0.998"), (np.nan, "nan")):
        off = labels.astype(np.float32)
        off[0, 0, 0] = bad
        with pytest.raises(ValueError, match=rf"non-integer values \({shown}\)"):
            write_label_map(tmp_path / "off.nii.gz", off, GEOMETRY)
    assert not (tmp_path / "off.nii.gz").exists()


def test_lesion_report_refuses_a_spacing_tuple_or_a_ctvolume_as_geometry():
    labels = small_labels()
    with pytest.raises(TypeError, match=r"lesion_report needs an ImageGeometry .* got \(1, 1, 1\), voxel sizes alone; "
                                        r"pass ImageGeometry\(spacing=\(sx, sy, sz\)\)"):
        lesion_report(labels, (1, 1, 1))
    with pytest.raises(TypeError, match=r"got a CTVolume; pass its geometry: ct\.geometry"):
        lesion_report(labels, CTVolume(labels, GEOMETRY))
    report = lesion_report(labels, ImageGeometry(spacing=(1, 1, 1)))
    assert report["lesion_count"] == 1 and report["tumor_volume_ml"] == pytest.approx(0.002)


@pytest.mark.parametrize("make_image, how", [(nibabel_image, r"ImageGeometry\.from_ijk_to_ras\(img\.affine\)"),
                                             (simpleitk_image, r"direction=image\.GetDirection\(\)")],
                         ids=["nibabel", "SimpleITK"])
def test_ctvolume_refuses_an_image_object_and_names_the_reader(make_image, how):
    """numpy made a nibabel image a 0-D object array (refused much later as '0D (shape ())') and a SimpleITK image
    a flat 1-D int64 array."""
    with pytest.raises(TypeError, match=r"CTVolume\.array must be a numeric numpy array in \(z, y, x\) order, got a "
                                        r"(nibabel|SimpleITK) .*LiverTumorSegLib\.io\.read_volume\(path\).*" + how):
        CTVolume(make_image(small_labels().astype(np.int16)), GEOMETRY)


def test_ctvolume_refuses_what_is_not_numbers_and_keeps_numeric_arrays(tmp_path):
    with pytest.raises(TypeError, match=r"got object \(to numpy: dtype object, shape \(\)\), not numbers"):
        CTVolume(object(), GEOMETRY)
    with pytest.raises(TypeError, match=r"got ndarray \(to numpy: dtype <U2"):
        CTVolume(np.array([["ct", "hu"]]), GEOMETRY)
    # ragged: numpy >= 1.24 refuses to make an array; 1.22 and 1.23 make an object array (with a warning)
    with pytest.raises(TypeError, match=r"got list(, which numpy cannot make into an array| \(to numpy: dtype "
                                        r"object, shape \(1, 2\)\), not numbers)"), warnings.catch_warnings():
        warnings.simplefilter("ignore", getattr(np, "VisibleDeprecationWarning", DeprecationWarning))
        CTVolume([[[0, 1], [2]]], GEOMETRY)
    base = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    mapped = np.memmap(tmp_path / "ct.raw", dtype=np.int16, mode="w+", shape=base.shape)
    mapped[:] = base
    for array in (base, base.astype(">f8"), base.astype(np.float16), base.astype(np.uint16), base > 3,
                  np.asfortranarray(base), base[:, ::-1], mapped):
        volume = CTVolume(array, GEOMETRY)
        assert volume.array is array  # numpy arrays are kept as they are, no copy
    assert CTVolume(base.tolist(), GEOMETRY).array.dtype.kind == "i"  # a nested list of numbers still becomes numpy


def test_image_geometry_names_a_3x3_direction_and_a_4x4_affine():
    with pytest.raises(InputError, match=r"ImageGeometry\.direction must be a 3 x 3 matrix .* got shape \(4, 4\); "
                                         r".*ImageGeometry\.from_ijk_to_ras\(affine\)"):
        ImageGeometry(spacing=(1.0, 1.0, 1.0), direction=np.eye(4))
    with pytest.raises(InputError, match=r"from_ijk_to_ras needs a 4 x 4 voxel-to-RAS affine .* got shape \(3, 3\); "
                                         r"a 3 x 3 direction matrix goes into ImageGeometry\("):
        ImageGeometry.from_ijk_to_ras(np.eye(3))
    assert ImageGeometry(spacing=(1.0, 1.0, 1.0), direction=np.eye(3)).direction == tuple(np.eye(3).ravel())


def folded_geometry() -> ImageGeometry:
    """A nibabel affine's 3 x 3 (spacing 0.8, 0.8, 2.5 folded in) copied into ``direction``, spacing left at 1 mm."""
    affine = np.diag([-0.8, -0.8, 2.5, 1.0])
    direction_lps = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, :3]
    return ImageGeometry(spacing=(1.0, 1.0, 1.0), direction=tuple(direction_lps.ravel()))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_writers_refuse_a_direction_with_the_spacing_folded_in(tmp_path, suffix):
    """It was written without a word, with other voxel sizes (NIfTI zooms 0.8, 0.8, 2.5) than its spacing (1, 1, 1)."""
    labels = small_labels()
    message = r"'geometry for .*' has a direction matrix whose axes are not unit vectors \(lengths 0.8, 0.8, 2.5\)"
    with pytest.raises(InputError, match=message):
        write_label_map(tmp_path / f"labels{suffix}", labels, folded_geometry())
    with pytest.raises(InputError, match=message):
        write_probability_map(tmp_path / f"probability{suffix}", labels, folded_geometry())
    with pytest.raises(InputError, match=message):
        write_volume(tmp_path / f"ct{suffix}", CTVolume(labels.astype(np.int16), folded_geometry()))
    assert not list(tmp_path.iterdir())


def test_voxel_volume_refuses_a_direction_with_the_spacing_folded_in():
    """It returned 0.001 mL (the product of the 1 mm spacings) for voxels of 0.8 x 0.8 x 2.5 mm = 0.0016 mL."""
    with pytest.raises(InputError, match=r"not unit vectors \(lengths 0.8, 0.8, 2.5\): give the voxel size in "
                                         r"ImageGeometry\.spacing"):
        print(folded_geometry().voxel_volume_ml)
    rotated = ImageGeometry(spacing=(0.8, 0.8, 2.5), direction=(0, -1, 0, 1, 0, 0, 0, 0, 1))
    assert rotated.voxel_volume_ml == pytest.approx(0.0016)


@pytest.mark.parametrize("make_image, how", [(nibabel_image, r"np\.asarray\(img\.dataobj\)\.T"),
                                             (simpleitk_image, r"sitk\.GetArrayFromImage\(image\)")],
                         ids=["nibabel", "SimpleITK"])
def test_the_metrics_refuse_an_image_object_as_a_mask_and_name_the_array(make_image, how):
    """numpy made a nibabel image a 0-D object array counted as one foreground voxel: dice(nib.load(a), nib.load(b))
    was 1.0 for any two images and volume_ml one voxel's volume, without an error (the library API audit); a
    SimpleITK image became a flat array (a 'spacing must be 1 value' error)."""
    from LiverTumorSegLib import metrics

    labels = small_labels()
    other = np.zeros_like(labels)
    other[0, 0, 0] = 1
    image = make_image(labels)
    calls = {"the overlap metrics": [lambda: metrics.dice(image, other), lambda: metrics.dice(other, image),
                                     lambda: metrics.overlap_metrics(image, other),
                                     lambda: metrics.confusion_counts(image, other)],
             "volume_ml": [lambda: metrics.volume_ml(image, (2.5, 0.9, 0.8))],
             "the surface distances": [lambda: metrics.hd95(image, other, (2.5, 0.9, 0.8))],
             "evaluate_case": [lambda: metrics.evaluate_case(image, labels, (2.5, 0.9, 0.8))],
             "tumor_burden": [lambda: metrics.tumor_burden(image)],
             "structure_mask": [lambda: metrics.structure_mask(image, "liver")]}
    for function, made in calls.items():
        for call in made:
            with pytest.raises(TypeError, match=rf"{function}: a mask must be a numpy array in \(z, y, x\) order, got "
                                                r"a (nibabel Nifti1Image|SimpleITK Image); .*read_label_map\(path\)"
                                                r"\.array.*" + how):
                call()
    # the arrays the message names give the right numbers
    assert metrics.dice(labels, other) == 0.0
    assert metrics.volume_ml(labels >= 1, (2.5, 0.9, 0.8)) == pytest.approx(24 * 2.5 * 0.9 * 0.8 / 1000.0)


def test_a_label_map_in_nibabel_order_written_with_its_cts_options_is_refused(tmp_path):
    """write_label_map wrote an (x, y, z) label array with its CT's geometry without a word: a file of 20 x 320 x
    320 for a 320 x 320 x 20 CT, which only a later read against the CT refused (the library API audit). With the
    CT's nifti_write_options (as README's example writes it), the shape is checked, in every format."""
    from LiverTumorSegLib.io import nifti_write_options

    labels = small_labels()
    ct = CTVolume(labels.astype(np.int16), GEOMETRY)
    for suffix in (".nii.gz", ".nrrd"):
        with pytest.raises(ValueError, match=r"the array to write is \(z, y, x\) \(5, 6, 4\), while the geometry given "
                                             r"is that of a volume of \(4, 6, 5\).*an \(x, y, z\) array \(nibabel's "
                                             r"order\)\? Pass array\.T"):
            write_label_map(tmp_path / f"xyz{suffix}", np.ascontiguousarray(labels.T), ct.geometry,
                            **nifti_write_options(ct))
        with pytest.raises(ValueError, match="the array to write is"):
            write_probability_map(tmp_path / f"p{suffix}", np.ascontiguousarray(labels.T), ct.geometry,
                                  **nifti_write_options(ct))
        write_label_map(tmp_path / f"zyx{suffix}", labels, ct.geometry, **nifti_write_options(ct))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zyx.nii.gz", "zyx.nrrd"]
