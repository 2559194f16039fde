"""followup with a resampling's fill outside a CT's original field of view, 0 HU (SimpleITK's default, found by
:mod:`LiverTumorSegLib.inference.resampling_fill`) or -1024 HU beyond a straight line (the lesion report's
``touches_scan_edge`` rule): the fill is outside the scan, as the scanner's padding is. A baseline lesion the fill
cuts, gone from a follow-up with the same fill, may go on unseen there (not assessed, never 'disappeared'); a target
lying in the follow-up's fill is outside the follow-up's view (not assessed, the response NE)."""
import numpy as np
import pytest

from LiverTumorSegLib.followup import compare_followup
from LiverTumorSegLib.volume import CTVolume, ImageGeometry

GEOMETRY = ImageGeometry(spacing=(1.0, 1.0, 2.5))  # (x, y, z) mm
SHAPE = (8, 64, 64)  # (z, y, x)


def _scan(fill_hu, fill_from_row, lesion=True, seed=0):
    """(labels, CT) volumes ``(z, y, x)``: an elliptical body (100 +- 5 HU, fat of -100 +- 10 HU in rows 0-15) in noisy air (-1000 +- 20 HU clipped at
    -1024, as scanners store it), a liver (label 1) and a lesion (label 2, 60 +- 5 HU, 17 mm wide, slices 2-5, rows
    46-58) at the body's lower edge. Rows from ``fill_from_row`` on (None: none) hold ``fill_hu`` and no label."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:SHAPE[1], 0:SHAPE[2]]
    body = np.broadcast_to(((rows - 32.0) / 26.0) ** 2 + ((columns - 32.0) / 28.0) ** 2 <= 1.0, SHAPE)
    hu = np.clip(np.rint(rng.normal(-1000.0, 20.0, SHAPE)), -1024, None)
    hu[body] = np.rint(rng.normal(100.0, 5.0, SHAPE))[body]
    fat = body & (rows < 16)[None]
    hu[fat] = np.rint(rng.normal(-100.0, 10.0, SHAPE))[fat]
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[:, 10:, 8:56][body[:, 10:, 8:56]] = 1
    if lesion:
        tumor = np.zeros(SHAPE, dtype=bool)
        tumor[2:6, 46:, 24:41] = True
        tumor &= body
        labels[tumor] = 2
        hu[tumor] = np.rint(rng.normal(60.0, 5.0, SHAPE))[tumor]
    if fill_from_row is not None:
        hu[:, fill_from_row:] = fill_hu
        labels[:, fill_from_row:] = 0
    return CTVolume(labels, GEOMETRY, source="labels"), CTVolume(hu.astype(np.int16), GEOMETRY, source="CT")


@pytest.mark.parametrize("fill_hu", [0, -1024])
def test_a_lesion_cut_by_the_baseline_s_fill_is_not_called_gone_where_the_followup_shows_no_more(fill_hu):
    """The baseline's lesion is cut by its fill (rows 55 on); the follow-up, with the same fill, shows no lesion. With
    a -1024 fill the lesion report read the lesion as cut, but the check of what the follow-up shows beyond that edge
    looked only below -1500 HU: nothing to show, so the lesion was 'disappeared' and the response CR."""
    baseline, baseline_ct = _scan(fill_hu, 55)
    follow, follow_ct = _scan(fill_hu, 55, lesion=False, seed=1)
    change = compare_followup(baseline, follow, baseline_ct, follow_ct, alignment="none")
    assert [e["status"] for e in change["lesions"]] == ["not_assessed"]
    assert change["lesions"][0]["not_assessed_reason"] in ("baseline_edge_not_covered", "outside_followup_view")
    assert change["response"] != "CR"
    # a follow-up that shows the whole grid (no fill) shows where the lesion went on: gone is gone
    follow, follow_ct = _scan(fill_hu, None, lesion=False, seed=1)
    whole = compare_followup(baseline, follow, baseline_ct, follow_ct, alignment="none")
    assert [e["status"] for e in whole["lesions"]] == ["disappeared"] and whole["response"] == "CR"


@pytest.mark.parametrize("fill_hu", [0, -1024])
def test_a_target_in_the_followup_s_fill_is_not_assessed(fill_hu):
    """The baseline shows the whole lesion (a RECIST target); the follow-up CT, resampled with a fill from row 40 on,
    labels nothing there. The -1024 fill read as air the follow-up shows: 'disappeared', CR instead of NE."""
    baseline, baseline_ct = _scan(fill_hu, None)
    follow, follow_ct = _scan(fill_hu, 40, seed=1)
    change = compare_followup(baseline, follow, baseline_ct, follow_ct, alignment="none")
    assert [e["status"] for e in change["lesions"]] == ["not_assessed"]
    assert change["lesions"][0]["recist_target"] is True
    assert change["lesions"][0]["not_assessed_reason"] == "outside_followup_view"
    assert change["response"] == "NE"
    said = [w for w in change["warnings"] if w.startswith("follow-up CT:") and "outside the scan" in w]
    assert len(said) == 1, change["warnings"]
    assert follow_ct.array[0, 40:].min() == follow_ct.array[0, 40:].max() == fill_hu  # the CT itself unchanged


def test_air_set_to_one_value_around_the_body_is_still_what_the_followup_shows():
    """Air a CT has had set to -1024 all round borders the body's curved surface: no fill, a lesion gone from such a
    follow-up is gone (the straight-line rule keeps real air out)."""
    baseline, baseline_ct = _scan(-1024, None)
    follow, follow_ct = _scan(-1024, None, lesion=False, seed=1)
    air = follow_ct.array < -500
    follow_ct = CTVolume(np.where(air, -1024, follow_ct.array).astype(np.int16), GEOMETRY, source="CT")
    change = compare_followup(baseline, follow, baseline_ct, follow_ct, alignment="none")
    assert [e["status"] for e in change["lesions"]] == ["disappeared"] and change["response"] == "CR"
    assert not [w for w in change["warnings"] if "outside the scan" in w]


@pytest.mark.parametrize("name", ["example_ct_sm.nii.gz", "ct3slice_ct.nii.gz"])
@pytest.mark.parametrize("clipped", [False, True], ids=["as_stored", "clipped_at_-1024"])
def test_the_shared_real_cts_hold_no_straight_air_fill(name, clipped):
    """The straight-line rule alone took a sliver of air at the edge of a slice (0.03 mL of the 3-slice CT clipped at
    -1024): a fill counts only from 1 cm^2 in a slice and 10 mL (or 5 % of a small grid) in all."""
    from pathlib import Path

    from LiverTumorSegLib.inference.resampling_fill import find_straight_air_fill
    from LiverTumorSegLib.io import read_volume

    volume = read_volume(Path(__file__).resolve().parents[1] / "Data" / name)
    hu = np.maximum(volume.array, -1024).astype(volume.array.dtype) if clipped else volume.array
    assert find_straight_air_fill(hu, volume.geometry) is None


PADDED_SHAPE = (8, 128, 128)  # (z, y, x), 1 mm pixels, 2.5 mm slices
FOV_RADIUS_PX = 70.0  # beyond the image's half width: the field of view's air meets the image's sides


def _padded_ct(air, fill_from_row=None, slope=0.25, flat_back_from_row=None, seed=0, ring=True):
    """int16 HU ``(z, y, x)`` (:data:`PADDED_SHAPE`): an elliptical body (100 +- 5 HU, 80 x 100 mm) in ``air``
    ("noisy": -1000 +- 20 HU clipped at -1024; "one value": all -1024), a round field of view of
    :data:`FOV_RADIUS_PX` padded with -3024 outside, as Siemens and GE write it, with the values a resampling puts
    between padding and air on a ring along the circle (-1400 inside it, -2200 outside; ``ring`` False: none, the CT
    as scanned). ``fill_from_row``: -1024
    beyond the line ``row = fill_from_row + slope x (column - 64)`` (a resampling's fill of air beyond the old grid,
    over the padding too). ``flat_back_from_row``: the body's rows from there on made air (a back lying flat)."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:PADDED_SHAPE[1], 0:PADDED_SHAPE[2]]
    body = ((rows - 64.0) / 40.0) ** 2 + ((columns - 64.0) / 50.0) ** 2 <= 1.0
    if flat_back_from_row is not None:
        body &= rows < flat_back_from_row
    if air == "noisy":
        hu = np.clip(np.rint(rng.normal(-1000.0, 20.0, PADDED_SHAPE)), -1024, None)
    else:
        hu = np.full(PADDED_SHAPE, -1024.0)
    hu[:, body] = np.rint(rng.normal(100.0, 5.0, PADDED_SHAPE))[:, body]
    distance = np.hypot(rows - 63.5, columns - 63.5)
    hu[:, distance > FOV_RADIUS_PX] = -3024
    if ring:
        hu[:, (distance > FOV_RADIUS_PX - 1) & (distance <= FOV_RADIUS_PX)] = -1400
        hu[:, (distance > FOV_RADIUS_PX) & (distance <= FOV_RADIUS_PX + 1)] = -2200
    if fill_from_row is not None:
        hu[:, rows > fill_from_row + slope * (columns - 64)] = -1024
    return hu.astype(np.int16)


@pytest.mark.parametrize("ring", [True, False], ids=["resampled_ring", "sharp_circle"])
@pytest.mark.parametrize("fill_from_row, slope", [(90, 0.25), (96, 0.0), (85, -0.3)])
def test_a_straight_air_fill_in_a_ct_padded_below_air_is_found(fill_from_row, slope, ring):
    """A CT padded with -3024 outside its round field of view, resampled with a fill of -1024 beyond the old grid: the
    rule read only each slice's lowest value (the padding), and skipped slices holding padding, so the fill that cuts
    the body was air (followup: a target there 'disappeared'; the body measured whole). -1024 is looked for in such
    slices: the fill is found, up to the line, and cuts the body."""
    from LiverTumorSegLib.inference.body_size import body_diameter_mm
    from LiverTumorSegLib.inference.resampling_fill import find_straight_air_fill

    hu = _padded_ct("noisy", fill_from_row, slope, ring=ring)
    found = find_straight_air_fill(hu, GEOMETRY)
    assert found is not None
    rows, columns = np.mgrid[0:PADDED_SHAPE[1], 0:PADDED_SHAPE[2]]
    beyond = np.broadcast_to(rows > fill_from_row + 1 + slope * (columns - 64), PADDED_SHAPE)
    before = np.broadcast_to(rows < fill_from_row - 2 + slope * (columns - 64), PADDED_SHAPE)
    assert found[beyond].all()
    assert np.count_nonzero(found[before]) <= 8  # a few pixels of air clipped at -1024 that touch the fill join it
    record = body_diameter_mm(hu, GEOMETRY)
    assert record["diameter_mm"] is None and record["slices_cut"] == PADDED_SHAPE[0]


@pytest.mark.parametrize("ring", [True, False], ids=["resampled_ring", "sharp_circle"])
@pytest.mark.parametrize("back_from_row", [80, 90])
@pytest.mark.parametrize("air", ["noisy", "one value"])
def test_air_of_one_value_around_a_flat_back_in_a_ct_padded_below_air_is_no_fill(air, back_from_row, ring):
    """Air at -1024 (set to one value, or noisy and clipped there) around a body with a flat back, in a field of view
    padded with -3024 that meets the image's sides: the air's border with the padding (and with the ring a resampling
    puts beside it) is the field of view's circle, no fill's edge, and its border with the body is curved but for the
    back. Read as the rest of the slice, the circle's arcs beside the back's line made the air beyond the back a fill
    (the body cut, with the back from row 80). No fill; the body is measured uncut."""
    from LiverTumorSegLib.inference.body_size import body_diameter_mm, straight_air_fill
    from LiverTumorSegLib.inference.resampling_fill import find_straight_air_fill

    hu = _padded_ct(air, flat_back_from_row=back_from_row, ring=ring)
    assert find_straight_air_fill(hu, GEOMETRY) is None
    assert not straight_air_fill(hu[0], (1.0, 1.0)).any()
    record = body_diameter_mm(hu, GEOMETRY)
    assert record["slices_cut"] == 0 and record["diameter_mm"] is not None
