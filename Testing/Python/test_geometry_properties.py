"""Property-based geometry round trips (hypothesis, derandomized): random grids with anisotropic spacing of 0.5-5 mm,
a random origin and a direction that is one of the 48 signed axis permutations, alone or turned by up to 20 degrees
(oblique), odd and even sizes. Every voxel must keep its physical (LPS) place: through the writers and readers
(NIfTI, NRRD, MetaImage, DICOM SEG), a label map stored in another axis order than its CT, the segment pipeline's
reorientation and resampling to the network grid and back, and the plausibility checks' numbers.

Arrays are ``(z, y, x)``; geometry vectors ``(x, y, z)``, LPS, mm. The slicer-core round trips are in
``test_mrml_geometry_properties.py``.
"""
import itertools
import types

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from LiverTumorSegLib.io import read_label_map, read_volume, write_label_map, write_volume
from LiverTumorSegLib.volume import CTVolume, ImageGeometry

from inference_helpers import reoriented
from test_orientation import rotation  # Rodrigues rotation matrix (axis, degrees)

SIGNED_PERMUTATIONS = [(perm, signs) for perm in itertools.permutations(range(3))
                       for signs in itertools.product((1.0, -1.0), repeat=3)]
"""The 48 axis-aligned directions: column c (index axis c) is ``signs[c]`` times LPS axis ``perm[c]``."""
STORAGE_ORDERS = [(tuple(source_axis), flip) for source_axis in itertools.permutations(range(3))
                  for flip in itertools.product((False, True), repeat=3)]
"""The 48 ways to store one grid (``reoriented``'s ``source_axis`` and ``flip``)."""
FLOAT32_MM = 1e-4
"""How far (mm; direction cosines: the same number) a NIfTI header, which holds the affine in float32, may put a
value of these grids (origins up to 500 mm: float32 steps of 3e-5 mm)."""
PROPERTY_SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow],
                         phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no shrinking: seconds, not minutes


@st.composite
def geometries(draw, oblique=True):
    """An ImageGeometry: spacing 0.5-5 mm per axis, origin within 500 mm, a signed permutation direction, turned by
    up to 20 degrees about a random axis (when ``oblique`` and the draw says so)."""
    perm, signs = draw(st.sampled_from(SIGNED_PERMUTATIONS))
    direction = np.zeros((3, 3))
    for column in range(3):
        direction[perm[column], column] = signs[column]
    if oblique and draw(st.booleans()):
        axis = draw(st.tuples(*[st.floats(-1.0, 1.0)] * 3).filter(lambda a: np.linalg.norm(a) > 0.1))
        direction = rotation(axis, draw(st.floats(1.0, 20.0))) @ direction
    spacing = draw(st.tuples(*[st.floats(0.5, 5.0)] * 3))
    origin = draw(st.tuples(*[st.floats(-500.0, 500.0)] * 3))
    return ImageGeometry(spacing=spacing, origin=origin, direction=tuple(direction.ravel()))


shapes = st.tuples(*[st.integers(1, 6)] * 3)


def lps_of(geometry: ImageGeometry, kji) -> np.ndarray:
    """LPS (mm) of voxel ``(k, j, i)``, computed here: origin + direction @ (spacing * (i, j, k))."""
    ijk = np.asarray(kji, dtype=float)[::-1]
    return np.asarray(geometry.origin) + geometry.direction_matrix @ (np.asarray(geometry.spacing) * ijk)


def point_and_values(volume: CTVolume):
    """Every voxel's LPS position (n, 3), mm, and value (n,), in the array's ``(z, y, x)`` order."""
    kji = np.argwhere(np.ones(volume.array.shape, bool))
    points = np.asarray(volume.geometry.ijk_to_lps()[:3, :3] @ kji[:, ::-1].T).T + np.asarray(volume.geometry.origin)
    return points, volume.array[tuple(kji.T)]


def assert_same_physical_image(a: CTVolume, b: CTVolume, atol_mm: float = 1e-3) -> None:
    """``a`` and ``b`` hold the same value at the same LPS place for every voxel, whatever their axis orders: each
    voxel of ``a`` is matched to the nearest voxel of ``b`` (voxels are 0.5 mm apart or more, far beyond
    ``atol_mm``), the match must be one to one, within ``atol_mm``, and of equal value. (The points were sorted
    by their coordinates rounded to 0.1 mm: a place on a rounding boundary, an origin of 0.65 mm read back as
    0.6500000000000045, sorted two voxels apart in the two images; seed 777 found it, stop 104.)"""
    pa, va = point_and_values(a)
    pb, vb = point_and_values(b)
    assert pa.shape == pb.shape
    distance = np.linalg.norm(pa[:, None, :] - pb[None, :, :], axis=2)
    nearest = distance.argmin(axis=1)
    assert len(np.unique(nearest)) == len(pa), "two voxels of one image at one place of the other"
    np.testing.assert_allclose(distance[np.arange(len(pa)), nearest], 0.0, atol=atol_mm)
    np.testing.assert_array_equal(va, vb[nearest])


def test_the_physical_image_comparison_matches_voxels_not_rounded_coordinates():
    """The comparison every geometry property test uses: an image read back with its origin 0.6500000000000045 mm
    instead of 0.65 (a place on the old 0.1 mm rounding boundary) and stored in another axis order is the same
    image; one reversed along an axis, or moved by 0.01 mm, is not (seed 777's example, stop 104)."""
    direction = (0.03051499006914918, 0.016935832604256722, 0.9993908209279693, -0.9995342758358328,
                 0.0002584771112892277, 0.03051499006914918, 0.0002584771112892277, -0.9998565450921365,
                 0.016935832604256722)
    geometry = ImageGeometry((1.1515659245288474, 1.5937972217539125, 4.892032549747152),
                             (0.65, -375.93115381618554, -183.51838742152063), direction)
    hu = np.random.default_rng(16178).integers(-1000, 1000, (2, 5, 3)).astype(np.int16)
    image = CTVolume(hu, geometry)
    read_back = CTVolume(hu, ImageGeometry(geometry.spacing, (0.6500000000000045,) + geometry.origin[1:], direction))
    stored_otherwise, _ = reoriented(read_back, hu, (2, 0, 1), (True, False, True))
    assert_same_physical_image(stored_otherwise, image)
    with pytest.raises(AssertionError):
        assert_same_physical_image(CTVolume(np.ascontiguousarray(hu[:, ::-1]), geometry), image)
    moved = ImageGeometry(geometry.spacing, (0.66,) + geometry.origin[1:], direction)
    with pytest.raises(AssertionError):
        assert_same_physical_image(CTVolume(hu, moved), image)


def _third_party_lps(path, suffix: str) -> np.ndarray:
    """LPS (mm) of the one voxel of value 2 in the label map ``path``, as nibabel or SimpleITK places it."""
    if suffix.startswith(".nii"):
        import nibabel as nib

        image = nib.load(str(path))
        ijk = np.argwhere(np.asarray(image.dataobj) == 2)[0]  # nibabel: (x, y, z) = (i, j, k)
        ras = image.affine[:3, :3] @ ijk + image.affine[:3, 3]
        return ras * [-1.0, -1.0, 1.0]
    sitk = pytest.importorskip("SimpleITK")
    image = sitk.ReadImage(str(path))
    kji = np.argwhere(sitk.GetArrayFromImage(image) == 2)[0]  # SimpleITK's array: (z, y, x)
    return np.asarray(image.TransformIndexToPhysicalPoint([int(v) for v in kji[::-1]]))


@settings(max_examples=24, **PROPERTY_SETTINGS)
@given(geometry=geometries(), shape=shapes, suffix=st.sampled_from([".nii", ".nii.gz", ".nrrd", ".mha"]),
       seed=st.integers(0, 2 ** 16))
def test_property_files_read_back_with_their_voxels_and_geometry(tmp_path_factory, geometry, shape, suffix, seed):
    """CT and label map, written and read back: the same voxels (also for axes of size 1) and the same geometry:
    exact for NRRD and MetaImage (ITK prints 17 digits), to float32 precision for NIfTI; a labelled voxel lies at
    the LPS point computed here from the geometry, as nibabel and SimpleITK read the file too."""
    folder = tmp_path_factory.mktemp("io")
    rng = np.random.default_rng(seed)
    hu = rng.integers(-1024, 3000, shape).astype(np.int16)
    labels = np.zeros(shape, np.uint8)
    kji = tuple(int(rng.integers(0, n)) for n in shape)
    labels[kji] = 2
    atol = FLOAT32_MM if suffix.startswith(".nii") else 1e-9
    for array, write, read in ((hu, lambda p: write_volume(p, CTVolume(hu, geometry)), read_volume),
                               (labels, lambda p: write_label_map(p, labels, geometry), read_label_map)):
        path = folder / f"{array.dtype.name}{suffix}"
        write(path)
        back = read(path)
        assert back.array.dtype == array.dtype
        np.testing.assert_array_equal(back.array, array)
        np.testing.assert_allclose(back.geometry.spacing, geometry.spacing, atol=atol)
        np.testing.assert_allclose(back.geometry.origin, geometry.origin, atol=atol)
        np.testing.assert_allclose(back.geometry.direction, geometry.direction, atol=atol)
    expected = lps_of(geometry, kji)
    np.testing.assert_allclose(lps_of(back.geometry, kji), expected, atol=2 * atol)
    np.testing.assert_allclose(_third_party_lps(path, suffix), expected, atol=10 * FLOAT32_MM)


@settings(max_examples=24, **PROPERTY_SETTINGS)
@given(geometry=geometries(), shape=shapes, ct_order=st.sampled_from(STORAGE_ORDERS),
       label_order=st.sampled_from(STORAGE_ORDERS), suffix=st.sampled_from([".nii.gz", ".nrrd", ".mha"]),
       seed=st.integers(0, 2 ** 16))
# a NIfTI label map in the CT's own axis order kept its float32 header (spacing 2.174445390701294 for the CT's
# 2.174445298755283 mm) where one in another order got the CT's geometry (found in a full run, replayed from
# hypothesis' example database; io.labels._with_reference_geometry)
@example(geometry=ImageGeometry(spacing=(1.9496905535614697, 3.8917119654773593, 2.174445298755283),
                                origin=(499.99999999999994, 1.7363289305942617e-24, 8.737632184777087e-58),
                                direction=(0.0, -1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0)),
         shape=(4, 6, 6), ct_order=((1, 2, 0), (True, True, False)), label_order=((0, 1, 2), (False, False, False)),
         suffix=".nii.gz", seed=1205)
def test_property_a_label_map_stored_in_another_axis_order_lands_on_the_ct_voxels(tmp_path_factory, geometry, shape,
                                                                                 ct_order, label_order, suffix, seed):
    """A label map of the CT's grid stored in any of the 48 axis orders (LPS, RAS, transposed, mirrored with a
    header that says so) is read onto the CT's voxels, voxel for voxel: no flip, no shift."""
    rng = np.random.default_rng(seed)
    base = CTVolume(rng.integers(-1000, 1000, shape).astype(np.int16), geometry)
    ct, _ = reoriented(base, base.array, *ct_order)
    labels = rng.integers(0, 3, ct.shape_zyx).astype(np.uint8)
    stored, stored_labels = reoriented(CTVolume(labels, ct.geometry), labels, *label_order)
    path = tmp_path_factory.mktemp("labels") / f"labels{suffix}"
    write_label_map(path, stored_labels, stored.geometry)
    placed = read_label_map(path, reference=ct)
    np.testing.assert_array_equal(placed.array, labels)
    assert placed.geometry == ct.geometry


def _labelling_predictor(x_nchw: np.ndarray) -> np.ndarray:
    """A mock network that labels a fixed physical region: liver (1) where the windowed input (0..100 HU -> 0..1)
    is below one half, i.e. below 50 HU, background elsewhere; one-hot ``(n, 3, H, W)``."""
    liver = x_nchw[:, 0] < 0.5
    probabilities = np.zeros((x_nchw.shape[0], 3) + liver.shape[1:], dtype=np.float32)
    probabilities[:, 1] = liver
    probabilities[:, 0] = ~liver
    return probabilities


def _engine(target_spacing_mm, size_multiple: int, crop_to_body: bool):
    from LiverTumorSegLib.inference.engine import SliceInferenceEngine
    from LiverTumorSegLib.preprocessing import PreprocessingConfig

    config = PreprocessingConfig(channels=[{"kind": "window", "level": 50.0, "width": 100.0}], context_slices=0,
                                 target_spacing_mm=target_spacing_mm, size_multiple=size_multiple,
                                 crop_to_body=crop_to_body)
    package = types.SimpleNamespace(preprocessing=config, model=None, name="labelling mock")
    return SliceInferenceEngine(package, device="cpu", threads=1, batch_size=4, batch_predictor=_labelling_predictor)


@settings(max_examples=30, **PROPERTY_SETTINGS)
@given(geometry=geometries(), shape=st.tuples(st.integers(1, 4), st.integers(12, 24), st.integers(12, 24)),
       order=st.sampled_from(STORAGE_ORDERS), target=st.sampled_from([None, 0.7, 1.5, 3.0]),
       size_multiple=st.sampled_from([1, 8]), crop_to_body=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_property_segment_labels_the_same_physical_region_in_every_storage_order(geometry, shape, order, target,
                                                                                 size_multiple, crop_to_body, seed):
    """The network sees every storage order of a CT as the same canonical slices (reoriented, resampled to its grid
    and padded), and its labels come back onto the CT's voxels: the labels of a CT stored in any of the 48 orders
    are those of the first, stored alike, voxel for voxel. And they are the region the mock network labels: every
    voxel farther from the region's edge than the in-plane resampling reaches (the coarser of the two pixel sizes,
    plus one native pixel) has its label, and the region's centre moves less than half a coarse pixel."""
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    hu = np.full(shape, 100, np.int16)  # body, above the mock's 50 HU
    y0, x0 = (int(rng.integers(2, 5)) for _ in range(2))
    y1, x1 = shape[1] - int(rng.integers(2, 5)), shape[2] - int(rng.integers(2, 5))
    hu[:, y0:y1, x0:x1] = 0  # the region the mock labels
    from LiverTumorSegLib.orientation import plan_reorientation

    # the grid's own direction made canonical (axial slices: the network's in-plane axes are the array's y and x)
    canonical = CTVolume(hu, plan_reorientation(geometry, (1, 1, 1)).canonical_geometry)
    engine = _engine(target, size_multiple, crop_to_body)
    labels = engine.predict(canonical)
    stored, expected = reoriented(canonical, labels, *order)
    np.testing.assert_array_equal(engine.predict(stored), expected)

    truth = (canonical.array == 0).astype(np.uint8)
    sy, sx = canonical.spacing_zyx[1:]
    reach = [int(np.ceil(max(s, target or s) / s)) + 1 for s in (sy, sx)]
    padded = np.pad(truth, ((0, 0), (reach[0], reach[0]), (reach[1], reach[1])), mode="edge")
    far_from_edge = np.ones(truth.shape, bool)
    for dy in range(-reach[0], reach[0] + 1):
        for dx in range(-reach[1], reach[1] + 1):
            far_from_edge &= padded[:, reach[0] + dy:reach[0] + dy + shape[1],
                                    reach[1] + dx:reach[1] + dx + shape[2]] == truth
    np.testing.assert_array_equal(labels[far_from_edge], truth[far_from_edge])
    if labels.any() and (target is None or min(y1 - y0, x1 - x0) * min(sy, sx) > 4 * target):
        coarse = np.array([max(sy, target or sy), max(sx, target or sx)])
        shift_mm = (np.argwhere(labels)[:, 1:].mean(0) - np.argwhere(truth)[:, 1:].mean(0)) * [sy, sx]
        assert np.all(np.abs(shift_mm) <= 0.5 * coarse + 1e-6), (shift_mm, coarse)


@settings(max_examples=12, **PROPERTY_SETTINGS)
@given(order=st.sampled_from(STORAGE_ORDERS), turn=st.sampled_from([0.0, 12.0]))
def test_property_the_plausibility_checks_read_the_same_numbers_in_every_storage_order(order, turn):
    """The liver's side (from the body's centre and from the spine) and the spine's front-back place are measured
    on every n-th voxel; one CT stored in another axis order must give the same millimetres. Read in the stored
    order, the liver's side from the body's centre was 13 mm stored one way and 15 mm stored another (the numbers of
    segment's "Implausible result" warning), 67.8-68.9 mm over the 112-slice example CT's 48 storage orders."""
    from LiverTumorSegLib.inference.plausibility import (liver_ras_xz, liver_side_mm, spine_front_back_mm,
                                                         spine_midline_x_mm, spine_sample)

    from inference_helpers import corner_phantom

    phantom = corner_phantom(shape_zyx=(10, 36, 40))
    direction = rotation((0.3, 1.0, 0.2), turn) @ phantom.ct.geometry.direction_matrix
    base = CTVolume(phantom.ct.array, ImageGeometry(phantom.ct.geometry.spacing, phantom.ct.geometry.origin,
                                                    tuple(direction.ravel())))
    base.array[:, 30:33, 18:22] = 700  # a midline bone behind the body's centre (RAS y: + anterior, so high j)
    stored, stored_labels = reoriented(base, phantom.labels, *order)

    def measured(volume, labels):
        liver_xz = liver_ras_xz(labels, volume.geometry)
        sample = spine_sample(volume.array, volume.geometry)
        return (liver_side_mm(liver_xz, volume.array, volume.geometry),
                spine_midline_x_mm(volume.array, volume.geometry, liver_xz, sample),
                spine_front_back_mm(volume.array, volume.geometry, sample, liver_xz[1]))

    expected, got = measured(base, phantom.labels), measured(stored, stored_labels)
    assert expected[0] is not None
    np.testing.assert_allclose(got[0], expected[0], atol=1e-6)
    for a, b in zip(got[1:], expected[1:]):
        assert (a is None) == (b is None)
        if a is not None:
            assert a == pytest.approx(b, abs=1e-6)


@settings(max_examples=8, **PROPERTY_SETTINGS)
@given(geometry=geometries(), shape=st.tuples(st.integers(1, 4), st.integers(3, 6), st.integers(3, 6)),
       seed=st.integers(0, 2 ** 16))
def test_property_a_dicom_seg_puts_its_labels_where_the_dicom_ct_has_them(tmp_path_factory, geometry, shape, seed):
    """A DICOM CT series on the grid (one file per k slice), read; a DICOM SEG of labels on what was read, written
    and read back, alone and onto the CT: every voxel at its LPS place (the SEG's own frames may come in another
    slice order than the CT's). Slices of 9 pixels or more: highdicom 0.28.2 pads each BINARY frame of fewer than 8
    pixels to a whole byte (its ``(Rows * Columns) // 8 != 0`` test, meant as ``% 8``), where DICOM and its own
    reader pack the frames without a gap, so a 2 x 2 slice's tumor frame read back empty."""
    pytest.importorskip("highdicom")
    from LiverTumorSegLib.dicom_seg import dicom_series_files, read_dicom_seg, write_dicom_seg

    from dicom_helpers import write_ct_series

    rng = np.random.default_rng(seed)
    folder = tmp_path_factory.mktemp("dicom")
    original = CTVolume(rng.integers(-1000, 1000, shape).astype(np.int16), geometry)
    write_ct_series(folder / "ct", original)
    ct = read_volume(folder / "ct")
    assert_same_physical_image(ct, original)  # the series' header holds 6 to 8 decimals
    labels = np.zeros(ct.shape_zyx, np.uint8)
    labels[tuple(slice(0, max(1, n // 2)) for n in labels.shape)] = 1
    labels[tuple(int(rng.integers(0, n)) for n in labels.shape)] = 2
    path = write_dicom_seg(folder / "seg.dcm", labels, ct.geometry, dicom_series_files(folder / "ct"))
    assert_same_physical_image(read_dicom_seg(path), CTVolume(labels, ct.geometry))
    np.testing.assert_array_equal(read_label_map(path, reference=ct).array, labels)
