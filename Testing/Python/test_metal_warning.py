"""Metal in the slices of the segmented liver (LiverTumorSegLib.inference.metal): a warning where its streaks can
make the outline and lesions wrong, none for metal far below the liver or for bone and contrast."""
import re

import numpy as np
import pytest

from LiverTumorSegLib.inference.metal import METAL_MIN_HU, METAL_MIN_ML, metal_in_liver_slices, metal_warnings
from LiverTumorSegLib.volume import ImageGeometry

from inference_helpers import stored_flipped_case

GEOMETRY = ImageGeometry(spacing=(1.0, 1.0, 2.0))  # (x, y, z) mm; identity direction: z grows to the head


def _trunk():
    """``(hu, labels)`` ``(z, y, x)`` on :data:`GEOMETRY`: 30 slices of a body (40 HU) with a vertebra (300 HU,
    cortex 1800 HU) behind its centre, a kidney with excreted contrast (1500 HU) and a liver box (label 1) in slices
    10-20 (S 20-40 mm) on the patient's right (low x)."""
    hu = np.full((30, 100, 100), -1000.0, np.float32)
    hu[:, 10:90, 5:95] = 40.0
    hu[:, 60:80, 42:58] = 1800.0
    hu[:, 62:78, 44:56] = 300.0
    hu[:, 55:65, 70:80] = 1500.0
    labels = np.zeros(hu.shape, np.uint8)
    labels[10:21, 20:55, 10:45] = 1
    return hu, labels


def test_metal_in_the_liver_slices_is_found_with_its_amount_slices_and_distance():
    hu, labels = _trunk()
    hu[12:19, 60:80, 47:53] = 3071.0  # a 6 x 20 mm screw in 7 of the liver's 11 slices: 7 x 0.24 mL
    found = metal_in_liver_slices(hu, labels, GEOMETRY)
    assert found["volume_ml"] == pytest.approx(7 * 0.24, rel=0.25)
    assert found["slices"] == 7 and found["liver_slices"] == 11
    assert found["s_range_mm"] == pytest.approx((24.0, 36.0))
    assert found["distance_mm"] == pytest.approx(np.hypot(60 - 54, 47 - 44), abs=2.0)  # liver corner (54, 44)
    warning, = metal_warnings(hu, labels, GEOMETRY)
    assert warning.startswith("Metal in the liver's slices: about 1.")
    assert "in 7 of the 11 slices that hold liver (the metal from S 24 to 36 mm)" in warning
    distance = float(re.search(r"its nearest part about (\d+) mm from the segmented liver", warning).group(1))
    assert distance == pytest.approx(6.7, abs=2.0)
    assert "check them in the images" in warning and "may be an artefact" in warning
    labels[:, :, 30:45] = 0  # the liver now ends at x 29: metal 18-19 mm from it
    assert metal_in_liver_slices(hu, labels, GEOMETRY)["distance_mm"] == pytest.approx(np.hypot(6, 47 - 29), abs=2.0)
    hu[14, 30:40, 20:30] = 3071.0  # metal inside the liver too (a coil): the nearest part touches it
    assert "touching or inside the segmented liver" in metal_warnings(hu, labels, GEOMETRY)[0]


def test_metal_only_below_the_liver_as_a_hip_prosthesis_gets_no_warning():
    hu, labels = _trunk()
    hu[0:9, 40:70, 70:90] = 3071.0  # 5 mL of metal in slices 0-8, below the liver's slices 10-20
    assert metal_in_liver_slices(hu, labels, GEOMETRY) is None and metal_warnings(hu, labels, GEOMETRY) == []
    hu[9:11, 40:70, 70:90] = 3071.0  # reaching into the liver's lowest slice: warned
    warning, = metal_warnings(hu, labels, GEOMETRY)
    assert "in 1 of the 11 slices that hold liver (the metal at S 20 mm)" in warning


def test_bone_and_contrast_or_a_few_metal_voxels_get_no_warning():
    hu, labels = _trunk()
    hu[15, 60, 42:58] = METAL_MIN_HU - 1.0  # the densest cortex, just under the threshold
    assert metal_warnings(hu, labels, GEOMETRY) == []
    hu[14:16, 30:35, 60:65] = 3071.0  # a clip: 2 x 25 voxels of 2 mm^3 = 0.1 mL, under the minimum
    assert 0.1 < METAL_MIN_ML and metal_warnings(hu, labels, GEOMETRY) == []
    assert metal_warnings(hu, np.zeros_like(labels), GEOMETRY) == []  # no liver: nothing to warn about


def _finished(hu, labels):
    """segment's path after the network (Segmenter.finish) with ``labels`` as the network's output on ``hu``."""
    from LiverTumorSegLib.inference.options import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import NetworkOutput, Segmenter
    from LiverTumorSegLib.volume import CTVolume

    return Segmenter(SegmentationOptions()).finish(
        CTVolume(hu, GEOMETRY), NetworkOutput(labels=labels, probability=np.zeros(labels.shape, np.uint8),
                                              facts={"device": "cpu"}, timings={}))


def test_segment_reports_metal_in_the_liver_slices_and_not_below():
    hu, labels = _trunk()
    hu[labels == 1] = 60.0
    assert not any(w.startswith("Metal") for w in _finished(hu, labels).warnings)
    below = hu.copy()
    below[0:9, 60:80, 47:53] = 3071.0
    assert not any(w.startswith("Metal") for w in _finished(below, labels).warnings)
    hu[10:21, 60:80, 47:53] = 3071.0
    result = _finished(hu, labels)
    flagged = [w for w in result.warnings if w.startswith("Metal in the liver's slices")]
    assert len(flagged) == 1 and flagged[0] in result.report["warnings"]


def test_metal_beside_a_liver_thinner_than_the_distance_step_is_measured_not_a_crash():
    # the liver's dome in two slices at the end of a chest CT (1 mm slices), missed by the 5 mm reading of the
    # distance step, with a sternal wire or lead in those slices: an IndexError ended segment after the network ran
    geometry = ImageGeometry(spacing=(1.0, 1.0, 1.0))
    hu = np.full((12, 40, 40), 40.0, np.float32)
    labels = np.zeros(hu.shape, np.uint8)
    labels[1:3, 10:20, 10:20] = 1
    hu[1:3, 24:38, 24:38] = 3071.0
    found = metal_in_liver_slices(hu, labels, geometry)
    assert found["slices"] == 2 and found["liver_slices"] == 2
    assert found["distance_mm"] == pytest.approx(np.hypot(24 - 19, 24 - 19), abs=0.5)  # corner (19, 19) to (24, 24)
    warning, = metal_warnings(hu, labels, geometry)
    assert "in 2 of the 2 slices that hold liver" in warning



def test_a_clip_is_measured_alike_however_the_ct_is_stored():
    # a 7 x 7 mm clip in two slices (0.196 mL): read every second pixel from index 0, it was 3 x 3 samples (0.14 mL,
    # no warning) as stored and 4 x 4 (0.26 mL, a warning) with x and y stored the other way round
    hu, labels = _trunk()
    hu[14:16, 61:68, 61:68] = 3071.0
    found = metal_in_liver_slices(hu, labels, GEOMETRY)
    for axes in ((2,), (1,), (1, 2), (0, 1, 2)):
        other_hu, other_labels, geometry = stored_flipped_case(hu, labels, GEOMETRY, axes)
        other = metal_in_liver_slices(other_hu, other_labels, geometry)
        assert (found is None) == (other is None), axes
        if found is not None:
            assert other["volume_ml"] == pytest.approx(found["volume_ml"]), axes
            assert other["distance_mm"] == pytest.approx(found["distance_mm"]), axes
            assert other["s_range_mm"] == pytest.approx(found["s_range_mm"]), axes
        assert len(metal_warnings(other_hu, other_labels, geometry)) == len(metal_warnings(hu, labels, GEOMETRY))


def test_a_failing_metal_check_is_a_warning_not_a_failed_segmentation(monkeypatch):
    import LiverTumorSegLib.inference.metal as metal

    def broken(hu_zyx, labels_zyx, geometry, liver_box=None):
        raise IndexError("index 2 is out of bounds for axis 1 with size 2")

    monkeypatch.setattr(metal, "metal_in_liver_slices", broken)
    hu, labels = _trunk()
    result = _finished(hu, labels)  # the IndexError ended segment after the network had run
    assert result.labels.shape == labels.shape and result.report["liver_volume_ml"] > 0
    warning, = [w for w in result.warnings if w.startswith("The metal check failed")]
    assert "(IndexError: index 2 is out of bounds for axis 1 with size 2)" in warning and warning in \
        result.report["warnings"]


@pytest.mark.parametrize("plate_y", [40, 41, 42, 43])
def test_metal_beside_a_liver_plate_thinner_than_the_distance_step_is_measured_to_it(plate_y):
    # a 3 mm plate of liver (a thin left lobe) lying between two planes of the 5 mm reading was missed, and a clip
    # 2 mm beyond its tip was measured 47 mm away, to the thick part of the liver
    geometry = ImageGeometry(spacing=(1.0, 1.0, 1.0))
    hu = np.full((40, 120, 120), 40.0, np.float32)
    labels = np.zeros(hu.shape, np.uint8)
    labels[5:35, 20:60, 10:50] = 1
    labels[5:35, plate_y:plate_y + 3, 50:100] = 1  # x 50-99
    hu[15:25, 38:48, 101:108] = 3071.0  # 0.7 mL from x 101: 2 mm from the plate (3 mm from the sampled metal)
    assert metal_in_liver_slices(hu, labels, geometry)["distance_mm"] == pytest.approx(2.5, abs=0.6)


@pytest.mark.parametrize("shift", [0, 1])
def test_a_thin_rod_is_found_and_measured_wherever_it_falls_on_the_pixel_grid(shift):
    """Read every 1.5 mm (every second pixel of a 0.8-1 mm CT), a 3 mm rod through the liver's slices (0.34 mL) was
    found at one sub-pixel position and missed at another, and a screw's volume came out about half (the warnings
    audit). Every pixel is read: one pixel wide or two, the rod's volume is its voxels'."""
    hu, labels = _trunk()
    hu[10:21, 30 + shift, 25 + shift] = 3071.0             # one pixel: 11 slices x 1 x 1 x 2 mm = 0.022 mL
    hu[10:21, 40:42, 30 + shift:32 + shift] = 3071.0       # 2 x 2 pixels: 0.088 mL
    hu[10:21, 45:47, 30:33] = 3071.0                       # 2 x 3 pixels: 0.132 mL
    found = metal_in_liver_slices(hu, labels, GEOMETRY)
    assert found["volume_ml"] == pytest.approx(11 * 2e-3 * (1 + 4 + 6))  # 0.242 mL, every voxel counted
    assert found["slices"] == 11


@pytest.mark.parametrize("degrees", [20.0, -30.0])
def test_the_s_range_is_the_metals_own_on_a_tilted_grid(degrees):
    """The S of each metal slice's corner voxel was given: on a grid tilted 20-30 degrees 70-100 mm from the metal (a
    rod at S -15..35 mm read 'from S -87 to -42 mm', the oblique-grid audit). It is the metal voxels' own S now."""
    hu, labels = _trunk()
    hu[12:19, 60:80, 47:53] = 3071.0
    t = np.radians(degrees)
    tilted = ImageGeometry(spacing=(1.0, 1.0, 2.0), origin=(-50.0, -50.0, 0.0),
                           direction=(1, 0, 0, 0, np.cos(t), -np.sin(t), 0, np.sin(t), np.cos(t)))
    k, j, i = np.nonzero(hu >= METAL_MIN_HU)
    s = (tilted.ijk_to_ras()[2, :3] @ np.stack([i, j, k]).astype(float)) + tilted.ijk_to_ras()[2, 3]
    low, high = metal_in_liver_slices(hu, labels, tilted)["s_range_mm"]
    assert low == pytest.approx(s.min(), abs=3.0) and high == pytest.approx(s.max(), abs=3.0)


def test_the_warning_names_lipiodol_and_excreted_contrast_too():
    """Compact lipiodol after chemoembolisation and dense excreted contrast can pass 2500 HU; the warning said 'bone and
    contrast stay below' beside them (the clinical-variants audit)."""
    hu, labels = _trunk()
    hu[12:19, 60:80, 47:53] = 3071.0
    warning, = metal_warnings(hu, labels, GEOMETRY)
    assert "or compact lipiodol or excreted contrast; bone stays below" in warning
