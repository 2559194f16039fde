"""The lesion report's scan-edge flag beside a resampling's fill written with air's value (-1024): a CT resampled
onto a turned grid with that fill (no fill :mod:`LiverTumorSegLib.inference.resampling_fill` looks for) cuts a lesion
along a straight line, as the array's edge would; air, noisy or set to one value, borders the body's curved surface."""
import importlib
from pathlib import Path

import numpy as np
import pytest

from LiverTumorSegLib.inference.lesion_report import lesion_report
from LiverTumorSegLib.volume import ImageGeometry

GEOMETRY = ImageGeometry(spacing=(1.0, 1.0, 2.5))  # (x, y, z) mm
SHAPE = (8, 64, 64)  # (z, y, x)
FILL_FROM_ROW = 55


def _ellipse(shape=SHAPE):
    rows, columns = np.mgrid[0:shape[1], 0:shape[2]]
    return ((rows - 32.0) / 26.0) ** 2 + ((columns - 32.0) / 28.0) ** 2 <= 1.0


def _phantom(air, fill=False, seed=0):
    """(CT in HU, labels), both ``(z, y, x)``: an elliptical body (soft tissue 100 +- 5 HU) in ``air`` ("noisy":
    -1000 +- 20 HU clipped at -1024, as scanners store it; "one value": all -1024), a liver (label 1) and a lesion
    (label 2, 60 HU, 17 mm wide, slices 2-5) at the body's lower edge. ``fill``: rows from :data:`FILL_FROM_ROW` on
    hold -1024 (a resampling's fill beyond the old grid), and no label."""
    rng = np.random.default_rng(seed)
    body = np.broadcast_to(_ellipse(), SHAPE)
    if air == "noisy":
        hu = np.clip(np.rint(rng.normal(-1000.0, 20.0, SHAPE)), -1024, None)
    else:
        hu = np.full(SHAPE, -1024.0)
    hu[body] = np.rint(rng.normal(100.0, 5.0, SHAPE))[body]
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[:, 10:, 8:56][body[:, 10:, 8:56]] = 1
    lesion = np.zeros(SHAPE, dtype=bool)
    lesion[2:6, 46:, 24:41] = True
    lesion &= body
    labels[lesion] = 2
    hu[lesion] = np.rint(rng.normal(60.0, 5.0, SHAPE))[lesion]
    if fill:
        hu[:, FILL_FROM_ROW:] = -1024
        labels[:, FILL_FROM_ROW:] = 0
    return hu.astype(np.int16), labels


def _only_lesion(report):
    assert report["lesion_count"] == 1
    return report["lesions"][0]


def test_a_lesion_cut_by_a_straight_air_fill_is_cut_by_the_scan_s_edge():
    """Before, a lesion against a -1024 fill read as air: touches_scan_edge False, and it was the RECIST target (the
    20-slice CT on a grid turned 30 degrees: lesion 2, 5.86 mL). Now it is cut, its size a lower bound. (In air a
    CT has had set to -1024 the fill joins the air, whose border is the body's curved surface: not found, a limit.)"""
    hu, labels = _phantom("noisy", fill=True)
    report = lesion_report(labels, GEOMETRY, hu_zyx=hu)
    lesion = _only_lesion(report)
    assert lesion["long_axis_mm"] >= 15.0
    assert lesion["touches_scan_edge"] is True and lesion["recist_target"] is False
    assert report["recist"]["target_lesion_ids"] == []


def test_a_lesion_against_curved_air_is_not_cut():
    """The same lesion reaching the body's curved surface: air (noisy, or set to -1024 all round) is no scan edge."""
    for air in ("noisy", "one value"):
        hu, labels = _phantom(air, fill=False)
        report = lesion_report(labels, GEOMETRY, hu_zyx=hu)
        lesion = _only_lesion(report)
        assert lesion["long_axis_mm"] >= 15.0
        assert lesion["touches_scan_edge"] is False and lesion["recist_target"] is True


def test_a_lesion_away_from_the_fill_is_not_cut():
    """Only a lesion beside the fill is cut: the same lesion moved up into the body, the fill kept, is not."""
    hu, labels = _phantom("noisy", fill=True)
    moved = np.zeros_like(labels)
    moved[labels == 1] = 1
    moved[(labels == 2)[:, list(range(10, 64)) + list(range(10))]] = 2
    report = lesion_report(moved, GEOMETRY, hu_zyx=hu)
    assert _only_lesion(report)["touches_scan_edge"] is False


def _without_fill_rule(monkeypatch):
    module = importlib.import_module("LiverTumorSegLib.inference.lesion_report")  # the package's name is the function
    monkeypatch.setattr(module, "_borders_air_valued_padding", lambda *args: False)


def _round_fov_padded_with_air(seed=0):
    """A round field of view padded with -1024 (rows and columns more than 30 pixels from the centre), the lesion of
    :func:`_phantom` inside the circle, its lower edge on it."""
    hu, labels = _phantom("noisy", seed=seed)
    rows, columns = np.mgrid[0:SHAPE[1], 0:SHAPE[2]]
    outside = np.hypot(rows - 28.0, columns - 32.0) > 30.0
    hu[:, outside] = -1024
    labels[:, outside] = 0
    return hu, labels


@pytest.mark.parametrize("case", ["noisy", "one value"])
def test_reports_without_a_straight_fill_are_unchanged(case, monkeypatch):
    """No fill and no padding: the report is the one the scanner-padding check alone gave."""
    hu, labels = _phantom(case)
    now = lesion_report(labels, GEOMETRY, hu_zyx=hu)
    _without_fill_rule(monkeypatch)
    assert lesion_report(labels, GEOMETRY, hu_zyx=hu) == now


@pytest.mark.parametrize("padding_hu", [-1024, -3024])
def test_a_lesion_cut_by_a_round_field_of_view_is_cut_whatever_the_padding_value(padding_hu):
    """A round field of view padded with -1024 (many scanners' exports; any CT clipped at -1024, as LiTS and nnU-Net
    pipelines clip) cut a lesion that was reported whole and chosen as the RECIST target, where -3024 padding made it
    cut (the lesion audit: a real CT, 3.2 mL, 23.7 mm, either way). The same lesion moved into the circle is not."""
    hu, labels = _round_fov_padded_with_air()
    hu[hu == -1024] = padding_hu  # the padding (noisy air inside the circle holds -1024 on a few pixels too)
    report = lesion_report(labels, GEOMETRY, hu_zyx=hu)
    lesion = _only_lesion(report)
    assert lesion["touches_scan_edge"] is True and lesion["recist_target"] is False
    assert report["recist"]["target_lesion_ids"] == []
    moved = np.where(labels == 2, 1, labels).astype(np.uint8)
    moved[(labels == 2)[:, list(range(12, 64)) + list(range(12))]] = 2  # 12 rows up, inside the circle
    assert _only_lesion(lesion_report(moved, GEOMETRY, hu_zyx=hu))["touches_scan_edge"] is False


@pytest.mark.parametrize("padding_hu", [-1024, -3024])
def test_a_liver_cut_by_a_round_field_of_view_is_cut_whatever_the_padding_value(padding_hu):
    """segment's and measure's check that the field of view cuts the liver (its volume then that of the part inside
    the image) read padding below -1500 HU only: the same circle padded with -1024 cut the liver without a word (the
    lesion audit). Air set to -1024 all round the body (no circle) cuts nothing."""
    from LiverTumorSegLib.inference.plausibility import liver_cut_by_image_side

    hu, labels = _round_fov_padded_with_air()
    hu[hu == -1024] = padding_hu
    assert liver_cut_by_image_side(labels, GEOMETRY, hu) is True
    hu, labels = _phantom("one value")
    assert liver_cut_by_image_side(labels, GEOMETRY, hu) is False


def test_real_cts_livers_are_not_cut_clipped_at_air_or_not():
    """Testing/Data's 30-slice CT (a round field of view padded with -3024 that does not reach the liver) and the
    same CT clipped at -1024, as LiTS and nnU-Net pipelines clip: its liver, beside lung and bowel air, is not cut."""
    from LiverTumorSegLib.inference.plausibility import liver_cut_by_image_side
    from LiverTumorSegLib.io.reading import read_volume

    data = Path(__file__).resolve().parents[2] / "Testing" / "Data"
    ct = read_volume(data / "example_ct_sm.nii.gz")
    labels = (np.asarray(read_volume(data / "example_ct_sm_liver.nii.gz").array) > 0).astype(np.uint8)
    hu = np.asarray(ct.array)
    for given in (hu, np.maximum(hu, -1024)):
        assert liver_cut_by_image_side(labels, ct.geometry, given) is False


@pytest.mark.parametrize("name", ["example_ct_sm", "ct3slice_ct"])
def test_real_ct_reports_are_unchanged(name, monkeypatch):
    """The real CTs in Testing/Data, with lesions drawn inside the liver and on the body's surface (beside air):
    identical reports with and without the fill rule."""
    from scipy import ndimage

    from LiverTumorSegLib.io.reading import read_volume
    data = Path(__file__).resolve().parents[2] / "Testing" / "Data"
    ct = read_volume(data / (name + ".nii.gz"))
    liver_name = "example_ct_sm_liver" if name == "example_ct_sm" else "ct3slice_liver_seg"
    labels = (np.asarray(read_volume(data / (liver_name + ".nii.gz")).array) > 0).astype(np.uint8)
    hu = np.asarray(ct.array)
    z = hu.shape[0] // 2
    body = ndimage.binary_fill_holes(hu[z] > -500)
    surface = np.argwhere(body & ~ndimage.binary_erosion(body))
    liver = np.argwhere(labels[z] == 1)
    for y, x in (surface[len(surface) // 3], surface[2 * len(surface) // 3], liver[len(liver) // 2]):
        labels[max(z - 1, 0):z + 2, max(y - 3, 0):y + 4, max(x - 3, 0):x + 4] = 2
    now = lesion_report(labels, ct.geometry, hu_zyx=hu)
    assert now["lesion_count"] >= 2
    _without_fill_rule(monkeypatch)
    assert lesion_report(labels, ct.geometry, hu_zyx=hu) == now


@pytest.mark.parametrize("padding_hu", [-3024, -2048])
def test_a_lesion_cut_by_a_straight_air_fill_in_a_ct_padded_below_air_is_cut(padding_hu):
    """The same fill in a CT padded below air outside a round field of view (Siemens and GE write -3024 or -2048):
    the rule compared the air beside the lesion with the slice's lowest value, the padding, and the lesion against the
    fill was uncut and the RECIST target. -1024 is the fill's value in such a slice."""
    hu, labels = _phantom("noisy", fill=True)
    rows, columns = np.mgrid[0:SHAPE[1], 0:SHAPE[2]]
    outside = (np.hypot(rows - 31.5, columns - 31.5) > 34.0) & (rows < FILL_FROM_ROW)  # the fill lies over it
    hu[:, outside] = padding_hu
    lesion = _only_lesion(lesion_report(labels, GEOMETRY, hu_zyx=hu))
    assert lesion["touches_scan_edge"] is True and lesion["recist_target"] is False
    unfilled, labels = _phantom("noisy", fill=False)  # without the fill, the padding far from it: uncut
    unfilled[:, outside] = padding_hu
    assert _only_lesion(lesion_report(labels, GEOMETRY, hu_zyx=unfilled))["touches_scan_edge"] is False
