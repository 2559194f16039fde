"""How training reads one anatomy stored in other ways (axis flips, transposes, LPS vs RAS), and which image/label
pairs it refuses: the canonical arrays must not depend on the storage, and a label that does not lie on its CT
must be refused (or the case warned about), never trained on in silence."""
import logging

import numpy as np
import pytest

from LiverTumorSegLib.errors import LabelError
from LiverTumorSegLib.io import write_label_map, write_volume
from LiverTumorSegLib.phantom import make_phantom
from LiverTumorSegLib.training.datasets import Case, discover_cases, liver_side_warning, load_case
from LiverTumorSegLib.training.splits import kfold_splits
from LiverTumorSegLib.volume import CTVolume, ImageGeometry


def _phantom():
    return make_phantom(shape_zyx=(8, 32, 32), spacing_xyz=(3.0, 3.0, 5.0), seed=0)


def _stored(geometry: ImageGeometry, shape_zyx, flip_xyz=(False, False, False), swap_xy=False):
    """``(how to store an array (z, y, x), the geometry that keeps every voxel where it was)``: the grid's x/y axes
    swapped and/or axes reversed, the same physical image."""
    direction = geometry.direction_matrix.copy()
    spacing = list(geometry.spacing)
    nz, ny, nx = shape_zyx
    first = [0, 0, 0]
    for axis, (flip, n) in enumerate(zip(flip_xyz, (nx, ny, nz))):
        if flip:
            direction[:, axis] *= -1
            first[axis] = n - 1
    origin = geometry.index_to_lps(first)
    if swap_xy:
        direction = direction[:, [1, 0, 2]]
        spacing = [spacing[1], spacing[0], spacing[2]]

    def store(array):
        index = tuple(slice(None, None, -1) if f else slice(None) for f in (flip_xyz[2], flip_xyz[1], flip_xyz[0]))
        out = np.asarray(array)[index]
        return np.ascontiguousarray(out.transpose(0, 2, 1) if swap_xy else out)

    return store, ImageGeometry(spacing=tuple(spacing), origin=tuple(float(v) for v in origin),
                                direction=tuple(direction.ravel()))


def _write_case(folder, name, ct: np.ndarray, ct_geometry, labels: np.ndarray, label_geometry, dtype=None):
    folder.mkdir(parents=True, exist_ok=True)
    image, label = folder / f"{name}_ct.nii.gz", folder / f"{name}_seg.nii.gz"
    write_volume(image, CTVolume(array=ct, geometry=ct_geometry), overwrite=True)
    write_label_map(label, labels if dtype is None else labels.astype(dtype), label_geometry, overwrite=True)
    return Case(name, name, str(image), str(label))


STORAGES = {"as is": ((False, False, False), False), "x reversed": ((True, False, False), False),
            "LPS<->RAS (x, y reversed)": ((True, True, False), False), "z reversed": ((False, False, True), False),
            "x/y swapped": ((False, False, False), True), "all three": ((True, True, True), True)}


def test_every_storage_of_one_anatomy_gives_the_same_training_arrays(tmp_path):
    ph = _phantom()
    results = {}
    for name, (flips, swap) in STORAGES.items():
        store, geometry = _stored(ph.ct.geometry, ph.ct.shape_zyx, flips, swap)
        case = _write_case(tmp_path, "".join(ch if ch.isalnum() else "_" for ch in name), store(ph.ct.array), geometry,
                           store(ph.labels), geometry)
        results[name] = load_case(case)
    reference_ct, reference_labels = results["as is"]
    assert np.count_nonzero(reference_labels == 2) > 0 and np.count_nonzero(reference_labels == 1) > 100
    for name, (volume, labels) in results.items():
        assert np.array_equal(volume.array, reference_ct.array), name
        assert np.array_equal(labels, reference_labels), name
        assert np.allclose(volume.geometry.origin, reference_ct.geometry.origin, atol=1e-6), name
        # the liver lies on the patient's right (canonical x runs toward the left): centroid below mid-x
        assert np.argwhere(labels == 1)[:, 2].mean() < labels.shape[2] / 2 - 3, name


def test_a_label_stored_in_another_axis_order_with_its_own_header_is_reoriented_onto_the_ct(tmp_path, caplog):
    ph = _phantom()
    store, lps = _stored(ph.ct.geometry, ph.ct.shape_zyx, (True, True, False))
    case = _write_case(tmp_path, "mixed", ph.ct.array, ph.ct.geometry, store(ph.labels), lps)
    with caplog.at_level(logging.WARNING):
        _, labels = load_case(case)
    assert np.array_equal(labels, ph.labels)
    assert "reoriented to the CT" in caplog.text


def _ct_with_fat_where_the_mirrored_liver_falls(ph):
    """The phantom's CT with fat (-120 HU) where its liver, mirrored in x, would lie (as the stomach, colon and
    their fat lie opposite a real liver): a label placed there is visibly not on a liver."""
    ct = ph.ct.array.copy()
    ct[(ph.labels[:, :, ::-1] > 0) & (ph.labels == 0)] = -120
    return ct


def test_a_label_whose_header_alone_is_flipped_is_refused_not_trained_mirrored(tmp_path):
    """Voxels drawn on the CT, header flipped in x by a conversion: the label was reoriented by its header and
    trained mirrored (only 'reoriented to the CT' was said)."""
    ph = _phantom()
    ct = _ct_with_fat_where_the_mirrored_liver_falls(ph)
    _, flipped_header = _stored(ph.ct.geometry, ph.ct.shape_zyx, (True, False, False))
    case = _write_case(tmp_path, "lits-7", ct, ph.ct.geometry, ph.labels, flipped_header)
    with pytest.raises(LabelError) as raised:
        load_case(case)
    text = str(raised.value)
    assert "Case lits-7: label map" in text and "does not fit its CT" in text
    assert "another axis order (mirrored or transposed)" in text
    assert "outside -50..300 HU" in text and "only 0% do" in text
    placed = int(text.split("placed so, ")[1].split("%")[0])
    assert placed >= 30
    assert "Give the label map the CT's header" in text
    # the same pair with the header fixed trains as drawn
    fixed = _write_case(tmp_path, "lits-7-fixed", ct, ph.ct.geometry, ph.labels, ph.ct.geometry)
    assert np.array_equal(load_case(fixed)[1], ph.labels)


def test_a_label_whose_header_alone_is_flipped_in_z_is_refused(tmp_path):
    ph = _phantom()
    labels = ph.labels.copy()
    labels[:3] = 0  # a liver in the upper slices only: mirrored in z, it falls where the CT holds no liver
    ct = ph.ct.array.copy()
    ct[(labels[::-1] > 0) & (labels == 0)] = -800  # lung above / gas below the liver
    _, flipped_header = _stored(ph.ct.geometry, ph.ct.shape_zyx, (False, False, True))
    case = _write_case(tmp_path, "z", ct, ph.ct.geometry, labels, flipped_header)
    with pytest.raises(LabelError, match=r"does not fit its CT .* where its header places it"):
        load_case(case)


def test_a_truly_mirrored_label_file_is_not_refused(tmp_path):
    """The converse: a label stored mirrored together with its header (LPS vs RAS) lies on the liver as placed,
    and off it only in the CT's voxel order: it is used."""
    ph = _phantom()
    ct = _ct_with_fat_where_the_mirrored_liver_falls(ph)
    store, flipped_header = _stored(ph.ct.geometry, ph.ct.shape_zyx, (True, False, False))
    case = _write_case(tmp_path, "ok", ct, ph.ct.geometry, store(ph.labels), flipped_header)
    assert np.array_equal(load_case(case)[1], ph.labels)


def test_label_value_and_grid_variants(tmp_path):
    ph = _phantom()
    g = ph.ct.geometry
    nudged = ImageGeometry(spacing=g.spacing, origin=(g.origin[0] + 1e-5,) + tuple(g.origin[1:]),
                           direction=g.direction)
    case = _write_case(tmp_path, "float", ph.ct.array, g, ph.labels, nudged, dtype=np.float32)
    assert np.array_equal(load_case(case)[1], ph.labels)  # float 0.0/1.0/2.0 and 1e-5 mm rounding: accepted
    off = ImageGeometry(spacing=g.spacing, origin=(g.origin[0] + 0.01,) + tuple(g.origin[1:]), direction=g.direction)
    with pytest.raises(LabelError, match=r"origin .* \(off by up to 0.01 mm\)"):
        load_case(_write_case(tmp_path, "off", ph.ct.array, g, ph.labels, off))
    with pytest.raises(LabelError, match=r"values 255 .* --label-map '\{\"1\": 1, \"2\": 2, \"255\": 1\}'"):
        load_case(_write_case(tmp_path, "mask", ph.ct.array, g, (ph.labels > 0) * 255, g, dtype=np.uint8))
    with pytest.raises(LabelError, match=r"size \(x, y, z\) \(32, 32, 7\) vs the reference's \(32, 32, 8\)"):
        load_case(_write_case(tmp_path, "short", ph.ct.array, g, ph.labels[:7], g))


def test_a_case_whose_ct_and_label_headers_mirror_left_and_right_is_warned_about(tmp_path, caplog):
    """CT and label with one header that mirrors left and right (an identity affine on DICOM-ordered voxels, as
    some LiTS files have): no grid check sees it, and the case trained with its liver on the patient's left."""
    ph = _phantom()
    g = ph.ct.geometry
    mirrored = ImageGeometry(spacing=g.spacing, origin=g.origin, direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1))
    case = _write_case(tmp_path, "mirrored", ph.ct.array, mirrored, ph.labels, mirrored)
    with caplog.at_level(logging.WARNING):
        _, labels = load_case(case)
    assert "case mirrored: its liver label's centre lies 16 mm to the patient's left of the body's centre" \
        in caplog.text
    assert "probably mirrored left-right" in caplog.text
    assert np.argwhere(labels == 1)[:, 2].mean() > labels.shape[2] / 2  # it is, as stored
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_case(_write_case(tmp_path, "right", ph.ct.array, g, ph.labels, g))
    assert "patient's left" not in caplog.text and "WARNING" not in caplog.text


def test_liver_side_warning_known_answers():
    ct = np.full((2, 10, 20), -1000, np.int16)
    ct[:, 2:8, 2:18] = 40  # body x 2..17: centre x 9.5
    labels = np.zeros(ct.shape, np.uint8)
    labels[:, 3:6, 2:8] = 1  # centre x 4.5: 5 voxels from the body's centre
    lps = ImageGeometry(spacing=(2.0, 2.0, 5.0), origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    volume = CTVolume(array=ct, geometry=lps)
    assert liver_side_warning(volume, labels) is None  # LPS: x index toward the left, so low x is the right
    # mirrored: liver x 12..17 read every 2nd column (12, 14, 16), body every 4th (4, 8, 12, 16): (14 - 10) x 2 mm
    assert liver_side_warning(volume, labels[:, :, ::-1]).startswith(
        "its liver label's centre lies 8 mm to the patient's left of the body's centre")
    assert liver_side_warning(volume, np.zeros_like(labels)) is None
    wide_liver = np.zeros_like(labels)
    wide_liver[:, 3:6, 6:18] = 1  # a scan cropped to the liver (body < 1.5 x the liver's width): not judged
    assert liver_side_warning(volume, wide_liver) is None


def test_crossval_keeps_each_patients_scans_in_one_fold(tmp_path):
    ph = _phantom()
    rows = ["image,label,patient"]
    for n, patient in enumerate(["p1", "p1", "p2", "p3", "p3", "p3", "p4"]):
        case = _write_case(tmp_path, f"s{n}", ph.ct.array + n, ph.ct.geometry, ph.labels, ph.ct.geometry)
        rows.append(f"{case.image_path},{case.label_path},{patient}")
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    cases = discover_cases(tmp_path / "list.csv")
    for _, validation in kfold_splits(cases, 3, seed=0):
        for patient in {c.patient_id for c in validation}:
            assert {c.case_id for c in validation if c.patient_id == patient} == \
                {c.case_id for c in cases if c.patient_id == patient}


def test_a_header_that_differs_by_rounding_is_told_to_take_the_images_header_not_to_resample(tmp_path):
    """A label 0.01 mm off its CT (another conversion tool's rounding) was told 'resample it onto the reference
    grid', which would only blur it; grids that put every voxel within 5 % of a voxel of the CT's now get the header
    advice, and a real offset keeps the resampling advice."""
    from LiverTumorSegLib.errors import LabelError as Refused
    from LiverTumorSegLib.metrics.lits import check_same_grid

    ph = _phantom()  # 3 x 3 x 5 mm voxels: 5 % of the smallest is 0.15 mm
    g = ph.ct.geometry

    def shifted(mm):
        return ImageGeometry(spacing=g.spacing, origin=(g.origin[0] + mm,) + tuple(g.origin[1:]), direction=g.direction)

    with pytest.raises(Refused) as rounding:
        load_case(_write_case(tmp_path, "rounded", ph.ct.array, g, ph.labels, shifted(0.01)))
    text = str(rounding.value)
    assert "do not resample the label map" in text and "CopyInformation" in text and "resample it onto" not in text
    assert "No voxel lies more than 0.01 mm from where the reference puts it" in text
    with pytest.raises(Refused) as offset:
        load_case(_write_case(tmp_path, "offset", ph.ct.array, g, ph.labels, shifted(2.0)))
    assert "resample it onto the reference grid" in str(offset.value) and "do not resample" not in str(offset.value)
    # a turn of 0.2 degrees (cosines 0.0035 apart) moves the far corner (about 94 mm out) by 0.33 mm: another grid
    angle = np.radians(0.2)
    turned = ImageGeometry(spacing=g.spacing, origin=g.origin,
                           direction=(np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle), 0, 0, 0, 1))
    with pytest.raises(Refused) as turn:
        load_case(_write_case(tmp_path, "turned", ph.ct.array, g, ph.labels, turned))
    assert "do not resample" not in str(turn.value) and "resample it onto the reference grid" in str(turn.value)
    angle = np.radians(0.06)  # 0.1 mm at that corner: rounding, though the cosines are 1.05e-3 apart
    slight = ImageGeometry(spacing=g.spacing, origin=g.origin,
                           direction=(np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle), 0, 0, 0, 1))
    with pytest.raises(Refused, match=r"do not resample the label map"):
        load_case(_write_case(tmp_path, "slight", ph.ct.array, g, ph.labels, slight))
    pred, ref = CTVolume(array=ph.labels, geometry=shifted(0.02)), CTVolume(array=ph.labels, geometry=g)
    with pytest.raises(Refused, match=r"do not resample the prediction"):
        check_same_grid(pred, ref, "c1")


@pytest.mark.parametrize("axis, words", [(0, "along z (the slice order reversed)"),
                                         (2, "along x (left and right as stored)")])
def test_a_label_whose_voxels_are_mirrored_under_the_cts_header_is_refused(tmp_path, axis, words):
    """Voxels flipped against the CT (slice order reversed by a conversion, an array flipped in a script) under the
    CT's own header passed every check: a real 3 mm CT's label with its slices reversed trained without a word (42 %
    of it outside the liver's HU), mirrored in x with only the liver-side warning (the dataset audit)."""
    ph = _phantom()
    labels = ph.labels.copy()
    if axis == 0:
        labels[:3] = 0  # a liver in the upper slices only: mirrored in z, it falls where the CT holds no liver
    ct = ph.ct.array.copy()
    ct[(np.flip(labels, axis) > 0) & (labels == 0)] = -800 if axis == 0 else -120
    case = _write_case(tmp_path, f"m{axis}", ct, ph.ct.geometry, np.ascontiguousarray(np.flip(labels, axis)),
                       ph.ct.geometry)
    with pytest.raises(LabelError) as raised:
        load_case(case)
    text = str(raised.value)
    assert f"Case m{axis}: label map" in text and "does not fit its CT" in text and words in text
    assert "outside -50..300 HU" in text and "only 0% would" in text
    # the same label as drawn trains
    fixed = _write_case(tmp_path, f"ok{axis}", ct, ph.ct.geometry, labels, ph.ct.geometry)
    assert np.array_equal(load_case(fixed)[1], labels)


def test_a_case_folder_of_several_dicom_series_names_the_case_and_how_training_chooses_one(tmp_path):
    """A CSV image cell naming a folder of two CT series was refused with 'choose one with --series', which train
    and crossval do not have ('unrecognized arguments: --series'); the case was not named (the dataset audit). One
    file of the wanted series in the cell reads that whole series."""
    from dicom_helpers import write_ct_series
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.training.datasets import Case

    ph = _phantom()
    folder = tmp_path / "p0" / "ct"
    first = write_ct_series(folder, ph.ct, uid_seed=1, name_prefix="a")
    write_ct_series(folder, ph.ct, uid_seed=2, name_prefix="b", description="second")
    label = tmp_path / "p0" / "liver.nii.gz"
    from LiverTumorSegLib.io import write_label_map

    write_label_map(label, ph.labels, ph.ct.geometry)
    with pytest.raises(InputError) as raised:
        load_case(Case(case_id="p0", patient_id="p0", image_path=str(folder), label_path=str(label)))
    text = str(raised.value)
    assert text.startswith(f"Case p0: Folder '{folder}' holds 2 DICOM series; training reads one series per case")
    assert "--series" not in text and "one file of it" in text and "\n  1. " in text and "\n  2. " in text
    image, labels = load_case(Case(case_id="p0", patient_id="p0", image_path=str(first[0]), label_path=str(label)))
    assert image.shape_zyx == ph.ct.shape_zyx and int(np.count_nonzero(labels)) == int(np.count_nonzero(ph.labels))
