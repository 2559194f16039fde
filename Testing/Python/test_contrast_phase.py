"""The contrast phase estimated from the aorta's and the liver's HU (LiverTumorSegLib.inference.contrast_phase): each
class on a small synthetic trunk, "unknown" without a spine, a liver or a working estimate, and a warning for an
arterial phase only, from segment's post-processing path."""
import copy
import types
from pathlib import Path

import numpy as np
import pytest

from LiverTumorSegLib.inference.contrast_phase import (ARTERIAL_AORTA_MIN_HU, UNENHANCED_AORTA_MAX_HU,
                                                       arterial_phase_warnings, classify_phase,
                                                       estimate_contrast_phase)
from LiverTumorSegLib.package import is_bundled_default, read_package_metadata
from LiverTumorSegLib.volume import ImageGeometry

from inference_helpers import stored_flipped_case

GEOMETRY = ImageGeometry(spacing=(2.0, 2.0, 3.0))  # (x, y, z) mm; identity LPS: x grows to the patient's left,
# y to the back


def _trunk(aorta_hu, liver_hu, spine=True, seed=0):
    """``(hu, labels)`` ``(z, y, x)`` on :data:`GEOMETRY`: 6 slices of an elliptic trunk (240 x 200 mm, 20 HU, with
    5 HU of noise) holding a vertebral body (radius 20 mm: cortex 700 HU, cancellous bone 200 HU) with a spinous
    process behind it, an aorta (radius 11 mm, ``aorta_hu``) 12 mm in front of the vertebra's front and 10 mm to the
    patient's left of the midline, and a liver box (label 1, ``liver_hu``) on the patient's right (low x)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:120, 0:140]
    hu = np.full((6, 120, 140), -1000.0, np.float32)
    trunk = ((rows - 60) / 50.0) ** 2 + ((cols - 70) / 60.0) ** 2 <= 1.0
    hu[:, trunk] = 20.0
    if spine:
        distance = np.hypot(rows - 90, cols - 70)
        hu[:, distance <= 10] = 700.0
        hu[:, distance <= 8.5] = 200.0
        hu[:, 100:107, 68:73] = 500.0  # the spinous process
    hu[:, np.hypot(rows - 74, cols - 75) <= 5.5] = aorta_hu
    labels = np.zeros(hu.shape, np.uint8)
    labels[:, 30:65, 20:55] = 1
    hu[labels == 1] = liver_hu
    hu += rng.normal(0.0, 5.0, hu.shape).astype(np.float32)
    return hu, labels


@pytest.mark.parametrize("aorta_hu, liver_hu, expected", [
    (45.0, 55.0, "unenhanced"),
    (320.0, 75.0, "arterial"),
    (160.0, 110.0, "portal_venous_or_later"),
    (200.0, 100.0, "portal_venous_or_later"),  # a portal venous aorta of 180-220 HU with an enhanced liver
    (220.0, 100.0, "portal_venous_or_later"),
])
def test_each_phase_is_told_from_the_aortas_and_the_livers_density(aorta_hu, liver_hu, expected):
    phase = estimate_contrast_phase(*_trunk(aorta_hu, liver_hu), GEOMETRY)
    assert phase["estimate"] == expected
    assert phase["aorta_hu"] == pytest.approx(aorta_hu, abs=8.0)  # the aorta itself was found, not a neighbour
    assert phase["liver_hu"] == pytest.approx(liver_hu, abs=3.0)
    assert phase["aorta_slices"] == phase["slices_read"] == 6 and phase["reason"] is None
    assert (arterial_phase_warnings(phase) != []) == (expected == "arterial")


def test_the_warning_names_the_measured_values_and_the_hyperdense_weakness():
    (warning,) = arterial_phase_warnings(estimate_contrast_phase(*_trunk(320.0, 75.0), GEOMETRY))
    assert warning.startswith("Arterial contrast phase likely: the aorta measures about 3")
    assert "the liver 7" in warning and "hyperdense" in warning and "0.685" in warning
    assert "look for bright lesions by eye" in warning


def test_without_a_spine_or_a_liver_the_phase_is_unknown():
    no_spine = estimate_contrast_phase(*_trunk(45.0, 55.0, spine=False), GEOMETRY)
    assert no_spine["estimate"] == "unknown" and no_spine["aorta_hu"] is None
    assert no_spine["liver_hu"] == pytest.approx(55.0, abs=3.0) and "no aorta" in no_spine["reason"]
    hu, labels = _trunk(320.0, 75.0)
    no_liver = estimate_contrast_phase(hu, np.zeros_like(labels), GEOMETRY)
    assert no_liver["estimate"] == "unknown" and "no liver" in no_liver["reason"]
    assert arterial_phase_warnings(no_spine) == arterial_phase_warnings(no_liver) == []


def test_a_failing_estimate_gives_unknown_not_an_error():
    hu, labels = _trunk(320.0, 75.0)
    phase = estimate_contrast_phase(hu[:, :50], labels, GEOMETRY)  # the label map does not match the CT
    assert phase["estimate"] == "unknown" and phase["reason"].startswith("the estimate failed")


def test_classification_bounds():
    assert classify_phase(UNENHANCED_AORTA_MAX_HU - 1.0, 50.0) == "unenhanced"
    assert classify_phase(ARTERIAL_AORTA_MIN_HU - 1.0, 40.0) == "portal_venous_or_later"
    assert classify_phase(300.0, 119.0) == "arterial"
    assert classify_phase(300.0, 121.0) == "portal_venous_or_later"
    assert classify_phase(None, 50.0) == classify_phase(300.0, None) == "unknown"


def test_a_fatty_liver_beside_a_portal_venous_aorta_is_not_called_arterial():
    """A portal venous CT (aorta 212 HU) with a fatty liver enhanced to 53 HU (0.25 of the aorta) was called arterial,
    with the warning to look for bright lesions by eye (the HU rules audit): under 250 HU of aorta a liver below 60 HU
    does not decide; with a late arterial aorta it does, and a normal liver's ratio decides as before."""
    assert classify_phase(212.0, 53.0) == "portal_venous_or_later"
    assert classify_phase(249.0, 59.0) == "portal_venous_or_later"
    assert classify_phase(212.0, 60.0) == "arterial"           # 0.28 of the aorta, not fatty
    assert classify_phase(300.0, 53.0) == "arterial"           # a late arterial aorta: fatty or not


def _finished(hu, labels, package=None, facts=None):
    """segment's path after the network (Segmenter.finish) with ``labels`` as the network's output on ``hu``;
    ``package``: the package that ran (an object with its ``metadata``), ``facts``: the run's report entries."""
    from LiverTumorSegLib.inference.options import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import NetworkOutput, Segmenter
    from LiverTumorSegLib.volume import CTVolume

    return Segmenter(SegmentationOptions(), package=package).finish(
        CTVolume(hu, GEOMETRY), NetworkOutput(labels=labels, probability=np.zeros(labels.shape, np.uint8),
                                              facts=dict(facts or {}, device="cpu"), timings={}))


BUNDLED = Path(__file__).resolve().parents[2] / "Resources" / "Models"


def test_the_arterial_warning_says_built_for_the_portal_venous_phase_only_of_the_bundled_default():
    """It said 'The bundled model was built for the portal venous phase' whatever package ran: of a user's own
    package (--model PATH) or another bundled one that is not known."""
    hu, labels = _trunk(320.0, 75.0)
    default = types.SimpleNamespace(metadata=read_package_metadata(BUNDLED / "default.safetensors"))
    (said,) = [w for w in _finished(hu, labels, default, {"model": "default"}).report["warnings"]
               if w.startswith("Arterial")]
    assert "The bundled default model was built for the portal venous phase" in said and "0.685" in said
    other = types.SimpleNamespace(metadata=read_package_metadata(BUNDLED / "alexnet_fcn_v2.safetensors"))
    (said,) = [w for w in _finished(hu, labels, other, {"model": "alexnet_fcn_v2"}).report["warnings"]
               if w.startswith("Arterial")]
    assert "Which contrast phase the model 'alexnet_fcn_v2' was built for is not known" in said
    assert "model was built for the portal venous" not in said and "look for bright lesions by eye" in said
    (said,) = arterial_phase_warnings(estimate_contrast_phase(hu, labels, GEOMETRY))  # no package named
    assert "Which contrast phase this model was built for is not known" in said


def test_the_bundled_default_is_known_by_its_weights_and_settings_not_its_name_or_flag():
    meta = read_package_metadata(BUNDLED / "default.safetensors")
    assert is_bundled_default(meta) and is_bundled_default(dict(meta, name="my_copy"))  # a copy, renamed
    rewindowed = copy.deepcopy(meta)  # re-saved with another window: the "default" flag kept, another model
    rewindowed["preprocessing"]["channels"][0]["level"] += 50.0
    assert rewindowed.get("default") is True and not is_bundled_default(rewindowed)
    assert not is_bundled_default(read_package_metadata(BUNDLED / "segnet_v2.safetensors"))
    assert not is_bundled_default(None) and not is_bundled_default({})


def test_segment_reports_the_phase_and_warns_of_an_arterial_one_only():
    arterial = _finished(*_trunk(320.0, 75.0))
    assert arterial.report["contrast_phase"]["estimate"] == "arterial"
    assert sum(w.startswith("Arterial contrast phase likely") for w in arterial.report["warnings"]) == 1
    portal = _finished(*_trunk(200.0, 100.0))
    assert portal.report["contrast_phase"]["estimate"] == "portal_venous_or_later"
    assert not any(w.startswith("Arterial") for w in portal.report["warnings"])



@pytest.mark.parametrize("spacing", [(2.0, 2.0, 3.0), (1.0, 1.0, 3.0)])
def test_the_same_ct_stored_flipped_gives_the_same_values(spacing):
    # read from index 0 (every second pixel of a 1 mm CT), smoothed by a box of an even width (2 pixels) and with
    # 9 of an even count of slices picked from the first, the same contrast CT's aorta read 153-164 HU in its four
    # flips (example_ct_dicom20)
    geometry = ImageGeometry(spacing=spacing)
    parts = [_trunk(200.0, 100.0, seed=seed) for seed in (0, 1)]  # 12 slices
    hu, labels = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    if spacing[0] == 1.0:  # the trunk on pixels half as wide: 1 mm pixels of the same anatomy
        hu, labels = hu.repeat(2, axis=1).repeat(2, axis=2), labels.repeat(2, axis=1).repeat(2, axis=2)
        hu += np.random.default_rng(1).normal(0.0, 20.0, hu.shape).astype(np.float32)  # a noisier scan
    found = estimate_contrast_phase(hu, labels, geometry)
    assert found["estimate"] != "unknown"
    for axes in ((0,), (1,), (2,), (1, 2)):
        other_hu, other_labels, other_geometry = stored_flipped_case(hu, labels, geometry, axes)
        other = estimate_contrast_phase(other_hu, other_labels, other_geometry)
        assert (other["aorta_hu"], other["liver_hu"]) == (found["aorta_hu"], found["liver_hu"]), axes


def test_pixels_coarser_than_the_core_s_radius_give_an_estimate_not_an_index_error():
    # read at 6 mm pixels the aorta's 5 mm disc is its centre pixel alone, while its values were cut from the 3 x 3
    # square around it, which the image's edge cut short: the estimate failed with an IndexError
    hu = np.full((2, 8, 12), 40.0, np.float32)  # a body filling the image (48 x 72 mm), anterior at row 0
    hu[:, 5:8, 4:8] = 700.0  # the vertebra at its back, on the midline
    hu[:, 0, 6] = 150.0  # contrast in front of it, on the image's anterior edge
    labels = np.zeros(hu.shape, np.uint8)
    labels[:, 2:5, 0:3] = 1
    phase = estimate_contrast_phase(hu, labels, ImageGeometry(spacing=(6.0, 6.0, 6.0)))
    assert phase["reason"] is None and phase["aorta_hu"] == 150.0 and phase["aorta_slices"] == 2


def test_the_spines_midline_given_keeps_the_aorta_found_when_the_field_of_view_moves_the_bodys_centre():
    """A field of view cut to the liver moved the body's centre away from the spine; the spine search, within 30 mm
    of that centre, missed it and a disc on other tissue read as a 246 HU 'aorta' (the warnings audit). Given the
    spine's midline (segment passes plausibility.spine_midline_x_mm's), the aorta is found again."""
    from LiverTumorSegLib.inference.plausibility import liver_ras_xz, spine_midline_x_mm

    hu, labels = _trunk(160.0, 110.0)
    hu[:, :, 95:] = -1000.0                                   # the body's left side cut off: its centre moves right
    # RAS x of the spine's centre (column 70 of an LPS grid of 2 mm: LPS x 140 mm, RAS -140 mm)
    midline = spine_midline_x_mm(hu, GEOMETRY, liver_ras_xz(labels, GEOMETRY))
    assert midline == pytest.approx(-140.0, abs=3.0)
    phase = estimate_contrast_phase(hu, labels, GEOMETRY, midline)
    assert phase["aorta_hu"] == pytest.approx(160.0, abs=8.0) and phase["estimate"] == "portal_venous_or_later"
    elsewhere = estimate_contrast_phase(hu, labels, GEOMETRY, midline + 70.0)  # the hint is where it looks
    assert elsewhere["aorta_hu"] != pytest.approx(160.0, abs=8.0)


def test_an_aorta_found_in_one_slice_of_several_is_too_few_to_judge():
    """Found in 1 of 9 slices of a CT whose front and back were swapped, a disc on the bowel read as a 359 HU
    'aorta' and an arterial phase was claimed (the warnings audit): two slices at least (one on a CT of one)."""
    hu, labels = _trunk(320.0, 75.0)
    hu[1:, 66:110, 58:84] = 20.0                              # spine and aorta gone but in the first slice
    phase = estimate_contrast_phase(hu, labels, GEOMETRY)
    assert phase["estimate"] == "unknown" and phase["aorta_slices"] == 1 and phase["slices_read"] == 6
    assert "found in 1 of 6 slices read, too few" in phase["reason"] and arterial_phase_warnings(phase) == []
    one = estimate_contrast_phase(hu[:1], labels[:1], GEOMETRY)  # a CT of one slice: that slice decides
    assert one["estimate"] == "arterial" and one["aorta_slices"] == 1


def test_with_front_and_back_swapped_neither_the_phase_nor_the_livers_side_is_judged():
    """A CT whose front and back were swapped got, beside the orientation warning, an 'arterial phase' and a liver
    '62 mm to the patient's left of the spine' measured from bone that was not the spine (the warnings audit): the
    orientation warning alone is given, and the phase is unknown, saying why."""
    hu, labels = _trunk(320.0, 75.0)
    flipped_hu, flipped_labels = np.ascontiguousarray(hu[:, ::-1]), np.ascontiguousarray(labels[:, ::-1])
    report = _finished(flipped_hu, flipped_labels).report
    assert any(w.startswith("Implausible orientation: the spine") for w in report["warnings"])
    assert not any(w.startswith("Arterial") or "the segmented liver" in w for w in report["warnings"])
    assert report["contrast_phase"]["estimate"] == "unknown"
    assert report["contrast_phase"]["reason"] == "the image's front and back look swapped"
    plain = _finished(hu, labels).report                       # the same CT stored right: both judged
    assert plain["contrast_phase"]["estimate"] == "arterial"
    assert not any(w.startswith("Implausible orientation") for w in plain["warnings"])
