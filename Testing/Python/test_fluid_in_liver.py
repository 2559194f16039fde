"""Water density inside the segmented liver (LiverTumorSegLib.inference.fluid_in_liver): phantoms with known fluid,
fatty and shifted livers, and the real sample CT."""
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from LiverTumorSegLib.inference.fluid_in_liver import (FLUID_MIN_ML, fluid_in_liver_warnings,
                                                       fluid_regions_in_liver)
from LiverTumorSegLib.io import read_label_map, read_volume
from LiverTumorSegLib.volume import ImageGeometry

from inference_helpers import stored_flipped_case

DATA = Path(__file__).resolve().parents[2] / "Testing" / "Data"
GEOMETRY = ImageGeometry(spacing=(2.0, 2.0, 2.0), origin=(-64.0, -64.0, -40.0))
"""The phantoms' grid: 2 mm voxels, LPS identity direction, array (z, y, x) of (40, 64, 64)."""


def _ball(centre_zyx, radius_mm, shape=(40, 64, 64)):
    """Boolean ball of ``radius_mm`` around voxel ``centre_zyx`` on the 2 mm phantom grid."""
    z, y, x = np.indices(shape)
    cz, cy, cx = centre_zyx
    return ((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) * 4.0 <= radius_mm ** 2


def _phantom(liver_hu=100.0, noise_hu=12.0, seed=0):
    """A 2 mm phantom: an ellipsoidal liver (about 320 mL) of ``liver_hu`` in fat (-100 HU) inside air, noise of
    ``noise_hu`` std, blurred by one voxel so its edge has partial volume; ``(hu, labels)``, labels 1 = liver."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices((40, 64, 64))
    liver = ((z - 20) / 16.0) ** 2 + ((y - 32) / 22.0) ** 2 + ((x - 32) / 26.0) ** 2 <= 1.0
    hu = np.where(liver, liver_hu, -100.0).astype(np.float32)
    hu[:, :, :3] = -1000.0
    hu = ndimage.gaussian_filter(hu + rng.normal(0.0, noise_hu, hu.shape).astype(np.float32), 0.6)
    return hu.astype(np.float32), liver.astype(np.uint8)


def _with_fluid(hu, labels, ball, fluid_hu=8.0, noise_hu=12.0, seed=1):
    """``hu`` with the voxels of ``ball`` set to ``fluid_hu`` plus noise (the labels are not changed)."""
    rng = np.random.default_rng(seed)
    out = hu.copy()
    out[ball] = fluid_hu + rng.normal(0.0, noise_hu, int(ball.sum())).astype(np.float32)
    return out


def test_a_fluid_ball_labelled_liver_warns_with_its_volume_place_and_density():
    hu, labels = _phantom()
    ball = _ball((20, 32, 20), 16.0)  # 17.2 mL of 8 HU water, deep in the liver's right half
    found, = fluid_regions_in_liver(labels, _with_fluid(hu, labels, ball), GEOMETRY)
    assert found["volume_ml"] == pytest.approx(float(ball.sum()) * 0.008, rel=0.25)
    assert found["median_hu"] == pytest.approx(8.0, abs=5.0) and found["liver_median_hu"] == pytest.approx(100, abs=5)
    centre_ras = GEOMETRY.index_to_ras((20, 32, 20))  # (i, j, k) = (x, y, z)
    np.testing.assert_allclose(found["centroid_ras_mm"], centre_ras, atol=3.0)
    assert 10 <= found["slices_z"][0] <= 13 and 27 <= found["slices_z"][1] <= 30
    warning, = fluid_in_liver_warnings(labels, _with_fluid(hu, labels, ball), GEOMETRY)
    assert warning.startswith("Possible fluid labelled liver: a part of about ") and " mL of the segmented liver (its " \
        "core, read about every 2 mm, so the whole may be larger" in warning
    assert "median 8 HU" in warning or "median 7 HU" in warning or "median 9 HU" in warning
    assert "resection bed" in warning and "cystic or necrotic lesion" in warning
    assert "the liver volume includes it" in warning


def test_a_plain_liver_a_tumor_of_water_and_a_small_cyst_do_not_warn():
    hu, labels = _phantom()
    assert fluid_regions_in_liver(labels, hu, GEOMETRY) == []
    ball = _ball((20, 32, 20), 16.0)
    tumor = labels.copy()
    tumor[ball] = 2  # the same water labelled tumor: the lesion report lists it already
    assert fluid_regions_in_liver(tumor, _with_fluid(hu, labels, ball), GEOMETRY) == []
    small = _ball((20, 32, 20), 12.0)  # 7.2 mL: a small cyst, under the minimum
    assert float(small.sum()) * 0.008 < FLUID_MIN_ML
    assert fluid_regions_in_liver(labels, _with_fluid(hu, labels, small), GEOMETRY) == []


def test_blood_density_in_a_contrast_liver_does_not_warn_and_fluid_in_an_unenhanced_one_does():
    hu, labels = _phantom()
    ball = _ball((20, 32, 20), 16.0)
    assert fluid_regions_in_liver(labels, _with_fluid(hu, labels, ball, fluid_hu=45.0), GEOMETRY) == []
    plain, labels = _phantom(liver_hu=50.0)  # unenhanced liver: water lies 40 HU below it
    assert len(fluid_regions_in_liver(labels, _with_fluid(plain, labels, ball, fluid_hu=10.0), GEOMETRY)) == 1


@pytest.mark.parametrize("liver_hu", [5.0, 15.0, 60.0, 140.0])
def test_a_liver_dark_or_bright_as_a_whole_does_not_warn(liver_hu):
    """A fatty liver (5-15 HU: all of it of water density) and livers 40 HU darker or brighter than the phantom's
    100 HU: nothing lies darker than the rest of the liver."""
    hu, labels = _phantom(liver_hu=liver_hu)
    assert fluid_regions_in_liver(labels, hu, GEOMETRY) == []


def test_a_sliver_of_gallbladder_at_the_edge_does_not_warn_and_a_whole_one_does():
    hu, labels = _phantom()
    gallbladder = _ball((20, 58, 32), 18.0) & (labels == 0)  # 18.7 mL of bile against the liver's back
    hu = _with_fluid(hu, labels, gallbladder, fluid_hu=10.0)
    sliver = labels.copy()
    sliver[gallbladder & ndimage.binary_dilation(labels == 1, iterations=2)] = 1  # 2 voxels (2.9 mL) taken in
    assert 2.0 < float(np.count_nonzero(sliver != labels)) * 0.008 < 4.0
    assert fluid_regions_in_liver(sliver, hu, GEOMETRY) == []
    whole = labels.copy()
    whole[gallbladder] = 1
    found, = fluid_regions_in_liver(whole, hu, GEOMETRY)
    assert found["volume_ml"] == pytest.approx(float(gallbladder.sum()) * 0.008, rel=0.2)


def test_no_liver_gives_nothing():
    hu, labels = _phantom()
    assert fluid_regions_in_liver(np.zeros_like(labels), hu, GEOMETRY) == []


def test_the_sample_ct_with_its_liver_passes_and_warns_with_water_put_in():
    """The real sample (unenhanced, liver about 46 HU, 3 mm voxels): its vessels and edges give no warning; a 40 mm
    ball of 8 HU water put inside its liver does."""
    ct = read_volume(DATA / "example_ct_sm.nii.gz")
    liver = np.asarray(read_label_map(DATA / "example_ct_sm_liver.nii.gz", reference=ct).array).astype(np.uint8)
    hu = np.asarray(ct.array, dtype=np.float32)
    assert fluid_in_liver_warnings(liver, hu, ct.geometry) == []
    depth = ndimage.distance_transform_edt(np.pad(liver, ((3, 3), (0, 0), (0, 0)), mode="edge"))[3:-3]
    centre = np.unravel_index(int(np.argmax(depth)), liver.shape)
    z, y, x = np.indices(liver.shape)
    ball = (((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) * 9.0 <= 20.0 ** 2) & (liver == 1)
    watered = _with_fluid(hu, liver, ball, fluid_hu=8.0, noise_hu=10.0)
    warning, = fluid_in_liver_warnings(liver, watered, ct.geometry)
    assert "water density" in warning


def test_segment_reports_the_warning_only_for_a_ct_in_hu():
    """Segmenter.finish (segment's path after the network) adds the warning to the report."""
    from LiverTumorSegLib.inference.options import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import NetworkOutput, Segmenter
    from LiverTumorSegLib.volume import CTVolume

    hu, labels = _phantom()
    hu = _with_fluid(hu, labels, _ball((20, 32, 20), 16.0))
    result = Segmenter(SegmentationOptions()).finish(
        CTVolume(hu, GEOMETRY), NetworkOutput(labels=labels, probability=None, facts={"device": "cpu"}, timings={}))
    assert sum(w.startswith("Possible fluid labelled liver") for w in result.report["warnings"]) == 1
    unknown = NetworkOutput(labels=labels, probability=None, facts={"device": "cpu"}, timings={},
                            not_hu="values 0..1")
    result = Segmenter(SegmentationOptions()).finish(CTVolume(hu, GEOMETRY), unknown)
    assert not any(w.startswith("Possible fluid labelled liver") for w in result.report["warnings"])


def test_the_fluid_s_centre_and_slices_follow_the_array_s_axis_order():
    """The first phantom's ball lies at z = x = 20, where a centre read in (x, y, z) order instead of (z, y, x)
    comes out the same: here z and x differ, so a swap moves the centre by 12 mm along two axes."""
    hu, labels = _phantom()
    ball = _ball((16, 32, 22), 16.0)
    found, = fluid_regions_in_liver(labels, _with_fluid(hu, labels, ball), GEOMETRY)
    np.testing.assert_allclose(found["centroid_ras_mm"], GEOMETRY.index_to_ras((22, 32, 16)), atol=3.0)
    assert 6 <= found["slices_z"][0] <= 9 and 23 <= found["slices_z"][1] <= 26



def test_the_same_ct_stored_flipped_gives_the_same_region():
    # 1 mm pixels are read every second one: from the liver box's first index, a flipped storage read other voxels
    # of the patient, and the same fluid measured another volume and median
    geometry = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    rng = np.random.default_rng(0)
    z, y, x = np.indices((30, 101, 101))
    liver = (((z - 15) * 2.0 / 24.0) ** 2 + ((y - 50) / 40.0) ** 2 + ((x - 50.5) / 45.0) ** 2 <= 1.0)  # x 6-95
    water = ((z - 15) * 2.0) ** 2 + (y - 50) ** 2 + (x - 37) ** 2 <= 17.0 ** 2  # 20.6 mL
    hu = np.where(liver, 100.0, -100.0) + rng.normal(0.0, 12.0, liver.shape)
    hu[water] = 8.0 + rng.normal(0.0, 12.0, int(water.sum()))
    hu = ndimage.gaussian_filter(hu, 0.6).astype(np.float32)
    labels = liver.astype(np.uint8)
    found, = fluid_regions_in_liver(labels, hu, geometry)
    for axes in ((0,), (1,), (2,), (1, 2)):
        other_hu, other_labels, other_geometry = stored_flipped_case(hu, labels, geometry, axes)
        other, = fluid_regions_in_liver(other_labels, other_hu, other_geometry)
        for key in ("volume_ml", "median_hu", "liver_median_hu", "edge_contrast_hu"):
            assert other[key] == pytest.approx(found[key]), (axes, key)
        np.testing.assert_allclose(other["centroid_ras_mm"], found["centroid_ras_mm"], atol=1e-6)


def test_a_failing_fluid_check_is_a_warning_not_a_failed_segmentation(monkeypatch):
    import LiverTumorSegLib.inference.fluid_in_liver as fluid_in_liver
    from LiverTumorSegLib.inference.options import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import NetworkOutput, Segmenter
    from LiverTumorSegLib.volume import CTVolume

    def broken(labels_zyx, hu_zyx, geometry, liver_box=None):
        raise MemoryError("Unable to allocate 2.00 GiB")

    monkeypatch.setattr(fluid_in_liver, "fluid_regions_in_liver", broken)
    hu, labels = _phantom()
    result = Segmenter(SegmentationOptions()).finish(  # the MemoryError ended segment after the network had run
        CTVolume(hu, GEOMETRY), NetworkOutput(labels=labels, probability=np.zeros(labels.shape, np.uint8),
                                              facts={"device": "cpu"}, timings={}))
    assert result.labels.shape == labels.shape and result.report["liver_volume_ml"] > 0
    warning, = [w for w in result.warnings if w.startswith("The fluid in the liver check failed")]
    assert "(MemoryError: Unable to allocate 2.00 GiB)" in warning and "measurements do not depend on it" in warning


@pytest.mark.parametrize("liver_hu", [60.0, 44.0])              # enhanced; unenhanced (the second review)
@pytest.mark.parametrize("fluid_share", [0.55, 0.7])
def test_a_resection_bed_filling_most_of_the_label_is_still_fluid(fluid_share, liver_hu):
    """A fluid-filled resection bed the network labelled liver, half of label 1 or more (431 mL of fluid beside 243 mL
    of liver on a real CT): the median of all label 1 fell into the fluid range, no part was 20 HU darker than it, and
    a liver volume three times too large was reported without a word (the clinical-variants audit). The reference is
    then the liver tissue's median."""
    hu, labels = _phantom(liver_hu=liver_hu)
    z, y, x = np.indices(labels.shape)
    liver_x = x[labels == 1]
    cut = np.quantile(liver_x, fluid_share)
    bed = (labels == 1) & (x <= cut)              # the patient-right part of the label: fluid
    found = fluid_regions_in_liver(labels, _with_fluid(hu, labels, bed, fluid_hu=10.0), GEOMETRY)
    assert found and found[0]["volume_ml"] > 0.6 * float(bed.sum()) * 0.008
    assert found[0]["liver_median_hu"] == pytest.approx(liver_hu, abs=6.0)


@pytest.mark.parametrize("liver_hu", [5.0, 20.0, 30.0])
def test_a_liver_dark_as_a_whole_is_not_fluid_with_the_tissue_reference(liver_hu):
    hu, labels = _phantom(liver_hu=liver_hu)
    assert fluid_regions_in_liver(labels, hu, GEOMETRY) == []


def test_the_upper_tail_of_a_uniformly_dark_liver_is_no_tissue_reference():
    """The review of the tissue rule: a liver of 15 HU with noise has an upper tail (local mean above 25 HU) of a fifth
    of it, 15 HU above its median, and 215 mL of a real liver was called fluid against it. The tissue must reach 45 HU
    too; a resection bed's tissue (60 HU) does."""
    from LiverTumorSegLib.inference.fluid_in_liver import liver_reference_hu

    rng = np.random.default_rng(0)
    dark = rng.normal(15.0, 15.0, 20000).astype(np.float32)      # a quarter of it above 25 HU, their median ~31
    everywhere = np.ones(dark.shape, dtype=bool)
    assert liver_reference_hu(dark, dark, everywhere) == pytest.approx(float(np.median(dark)))
    bed = np.concatenate([rng.normal(10.0, 8.0, 14000), rng.normal(60.0, 8.0, 6000)]).astype(np.float32)
    assert liver_reference_hu(bed, bed, np.ones(bed.shape, dtype=bool)) == pytest.approx(60.0, abs=1.0)
