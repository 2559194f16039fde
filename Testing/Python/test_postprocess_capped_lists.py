"""The per-piece lists of ``postprocessing_changes`` (``tumor_in_air_components``, ``tumor_above_lungs_components``,
``liver_components_removed``, ``tumor_components``) hold at most ``LISTED_RECORDS_MAX`` (100) records, the largest;
each list's ``<list>_not_listed`` counts and sums the rest, so totals and warnings stay exact. Before, a prediction
of 20,000 one-voxel specks on 100 x 512 x 512 voxels wrote 20,000 records a list (4.5-9.4 MB of JSON report)."""
import json

import numpy as np
import pytest

from LiverTumorSegLib.inference import postprocess
from LiverTumorSegLib.inference.postprocess import (LISTED_RECORDS_MAX, PostprocessingOptions, postprocess_labels,
                                                    postprocessing_warnings, removed_tumor_components,
                                                    removed_tumor_pieces)
from LiverTumorSegLib.volume import ImageGeometry

GEOMETRY = ImageGeometry(spacing=(1.0, 1.0, 2.0), origin=(-40.0, 12.5, -300.0))
SPACING_ZYX = (2.0, 1.0, 1.0)
VOXEL_ML = 0.002


def test_the_cap_is_100():
    assert LISTED_RECORDS_MAX == 100


def _lines_of_lengths(count):
    """``count`` separate pieces ``(n, 3)`` (z, y, x): piece j is a run of ``1 + j % 10`` voxels along x on row
    y = 3 j (rows 3 apart: no two touch), so 15 pieces of each length 10, 9, ... 1 for count 150."""
    return [np.array([[0, 3 * j, x] for x in range(1 + j % 10)]) for j in range(count)]


def test_removed_tumor_pieces_lists_the_largest_and_counts_the_rest_exactly():
    pieces = _lines_of_lengths(150)
    records, rest = removed_tumor_pieces(pieces, 0.5, GEOMETRY, limit=100)
    # 15 pieces each of 10..5 voxels (90) and the first 10 (raster order) of the 15 of 4 voxels are listed
    assert [r["volume_ml"] for r in records] == [0.5 * n for n in range(10, 4, -1) for _ in range(15)] + [2.0] * 10
    assert rest == {"count": 50, "volume_ml": 0.5 * (5 * 4 + 15 * 3 + 15 * 2 + 15 * 1)}  # 55.0 mL
    everything = removed_tumor_components(pieces, 0.5, GEOMETRY)
    assert records == everything[:100]                           # the same records, centroids included
    assert sum(r["volume_ml"] for r in everything[100:]) == pytest.approx(rest["volume_ml"])
    assert records[-1]["centroid_lps_mm"] == pytest.approx([-40.0 + 1.5, 12.5 + 3 * 93, -300.0])  # j = 93: 4 voxels


def test_up_to_the_cap_every_piece_is_listed_and_nothing_is_left_out():
    pieces = _lines_of_lengths(100)
    records, rest = removed_tumor_pieces(pieces, 0.5, GEOMETRY, limit=100)
    assert records == removed_tumor_components(pieces, 0.5, GEOMETRY) and len(records) == 100
    assert rest == {"count": 0, "volume_ml": 0.0}
    assert removed_tumor_pieces([], 0.5, GEOMETRY, limit=100) == ([], {"count": 0, "volume_ml": 0.0})


def test_only_the_listed_pieces_records_are_built(monkeypatch):
    """5,000 one-voxel specks: 100 centroid conversions (about 1.1 s for 20,000), not 5,000."""
    calls = []
    real = postprocess.patient_position
    monkeypatch.setattr(postprocess, "patient_position", lambda *a: calls.append(1) or real(*a))
    specks = [np.array([[2 * (j // 2500), 2 * (j // 50 % 50), 2 * (j % 50)]]) for j in range(5000)]
    records, rest = removed_tumor_pieces(specks, 0.5, GEOMETRY, limit=100)
    assert len(records) == 100 and len(calls) == 100
    assert rest == {"count": 4900, "volume_ml": 2450.0}


# ------------------------------------------------------------------------------------------ through the pipeline

def _specks(count, first_y=26):
    """``count`` one-voxel spots (z, y, x) on a lattice of step 2 (never touching, 26-connected), rows from
    ``first_y`` (10 voxels from the liver of :func:`_liver_and_specks`: beyond the 5 mm tumor margin), raster
    order."""
    spots = [(z, y, x) for z in (0, 2) for y in range(first_y, 44, 2) for x in range(0, 80, 2)]
    return spots[:count]


def _liver_and_specks(tumor_specks, liver_specks):
    """(4, 44, 80) labels: the liver (rows 0-15) and, apart from it, ``tumor_specks`` one-voxel parts of tumor
    then ``liver_specks`` of liver, in raster order."""
    labels = np.zeros((4, 44, 80), np.uint8)
    labels[:, :16] = 1
    for n, spot in enumerate(_specks(tumor_specks + liver_specks)):
        labels[spot] = 2 if n < tumor_specks else 1
    return labels


def _run(labels, monkeypatch=None, cap=None, **kwargs):
    if cap is not None:
        monkeypatch.setattr(postprocess, "LISTED_RECORDS_MAX", cap)
    changes = {}
    out = postprocess_labels(labels, SPACING_ZYX, geometry=GEOMETRY, changes=changes, **kwargs)
    return out, changes


def test_dropped_parts_beyond_the_cap_are_summed_with_their_tumor(monkeypatch):
    labels = _liver_and_specks(130, 20)
    out, changes = _run(labels, options=PostprocessingOptions(min_lesion_ml=0))
    kept = np.zeros_like(labels)
    kept[:, :16] = 1
    assert np.array_equal(out, kept)                                  # every speck dropped
    listed = changes["liver_components_removed"]
    # largest first on (organ, tumor) voxels: the one-voxel tumor parts before the liver ones, raster order kept
    assert len(listed) == 100 and all(p["volume_ml"] == VOXEL_ML and p["tumor_ml"] == VOXEL_ML for p in listed)
    assert listed[0]["centroid_lps_mm"] == pytest.approx([-40.0, 12.5 + 26, -300.0])
    assert changes["liver_components_removed_not_listed"] == {
        "count": 50, "volume_ml": pytest.approx(50 * VOXEL_ML), "tumor_ml": pytest.approx(30 * VOXEL_ML),
        "notable_count": 30, "notable_volume_ml": pytest.approx(30 * VOXEL_ML), "mostly_tumor_count": 30}
    capped_warnings = postprocessing_warnings(changes, liver_left_ml=float(np.count_nonzero(out)) * VOXEL_ML)
    _, every = _run(labels, monkeypatch, cap=10 ** 6, options=PostprocessingOptions(min_lesion_ml=0))
    assert every["liver_components_removed"][:100] == listed and len(every["liver_components_removed"]) == 150
    assert every["liver_components_removed_not_listed"]["count"] == 0
    uncapped_warnings = postprocessing_warnings(every, liver_left_ml=float(np.count_nonzero(out)) * VOXEL_ML)
    # the same counts and mL: '130 part(s) ... 20 smaller part(s) without tumor (0.04 mL) too, counted ...'
    assert [w.replace("listed in the report", "counted in the report") for w in uncapped_warnings] == \
        capped_warnings
    assert "130 part(s)" in capped_warnings[0] and "20 smaller part(s) without tumor" in capped_warnings[0]
    assert "130 of them mostly tumor" in capped_warnings[0]


def _liver_with_tumor_specks(pairs, singles):
    """(6, 40, 60) labels: liver with ``pairs`` two-voxel tumor pieces (first in raster order), then ``singles``
    one-voxel ones inside it, on a lattice of step 3 (never touching)."""
    labels = np.zeros((6, 40, 60), np.uint8)
    labels[:] = 1
    spots = [(z, y, x) for z in (1, 4) for y in range(1, 39, 3) for x in range(1, 58, 3)]
    for n, (z, y, x) in enumerate(spots[:pairs + singles]):
        labels[z, y, x] = 2
        if n < pairs:
            labels[z, y, x + 1] = 2
    return labels


def test_changed_tumor_components_beyond_the_cap_are_counted_per_rule(monkeypatch):
    """10 two-voxel and 120 one-voxel tumor pieces of low probability inside the liver (voxels of 0.125 mL: each
    at least min_lesion_ml, all below uncertain_lesion_max_ml): all made liver by the uncertain rule."""
    labels = _liver_with_tumor_specks(10, 120)
    probability = np.where(labels == 2, 100, 0).astype(np.uint8)      # 0.39 < 0.65
    kwargs = dict(options=PostprocessingOptions(), tumor_probability_zyx=probability)
    geometry = ImageGeometry(spacing=(5.0, 5.0, 5.0))
    changes, every = {}, {}
    out = postprocess_labels(labels, (5.0, 5.0, 5.0), geometry=geometry, changes=changes, **kwargs)
    assert not (out == 2).any()
    listed = changes["tumor_components"]
    assert len(listed) == 100 and all(c["rule"] == "uncertain" and c["became"] == "liver" for c in listed)
    # the 10 pairs and the first 90 singles, in the order of the component numbers, as an uncapped list gives them
    assert sorted(c["volume_ml"] for c in listed) == [0.125] * 90 + [0.25] * 10
    assert changes["tumor_components_not_listed"] == {
        "count": 30, "volume_ml": pytest.approx(30 * 0.125),
        "by_rule": {"uncertain": {"count": 30, "volume_ml": pytest.approx(30 * 0.125), "became_background": 0}}}
    monkeypatch.setattr(postprocess, "LISTED_RECORDS_MAX", 10 ** 6)
    postprocess_labels(labels, (5.0, 5.0, 5.0), geometry=geometry, changes=every, **kwargs)
    assert len(every["tumor_components"]) == 130
    # the listed records are the uncapped list's, the 30 last singles left out: values and order unchanged
    assert listed == every["tumor_components"][:100]
    assert every["tumor_components_not_listed"] == {"count": 0, "volume_ml": 0.0, "by_rule": {}}
    (capped,) = postprocessing_warnings(changes)
    assert capped == postprocessing_warnings(every)[0]
    assert capped.startswith("post-processing: 130 small lesion(s) whose mean tumor probability was below the limit "
                             "were labelled liver (17.5 mL)")


def test_the_cap_keeps_the_largest_tumor_components_in_component_order(monkeypatch):
    """3 records allowed: the two pairs placed after singles in raster order still come first by size."""
    labels = np.ones((3, 10, 30), np.uint8)
    for x in (1, 4, 7, 10, 13):
        labels[1, 4, x] = 2
    labels[1, 4, 16:18] = 2                                          # a pair, 6th in raster order
    labels[1, 4, 20:22] = 2                                          # a pair, 7th
    monkeypatch.setattr(postprocess, "LISTED_RECORDS_MAX", 3)
    changes = {}
    postprocess_labels(labels, (1.0, 1.0, 1.0), PostprocessingOptions(), changes=changes)
    assert [c["volume_ml"] for c in changes["tumor_components"]] == [0.001, 0.002, 0.002]  # the first single, pairs
    assert changes["tumor_components_not_listed"] == {
        "count": 4, "volume_ml": pytest.approx(0.004),
        "by_rule": {"small": {"count": 4, "volume_ml": pytest.approx(0.004), "became_background": 0}}}


def test_air_pieces_beyond_the_cap_are_summed_in_the_report():
    """130 one-voxel tumor specks on 2 slices of air (below the body): 100 listed, 30 summed, the total exact."""
    hu = np.full((8, 44, 80), -1000, np.int16)
    hu[2:, 2:42, 2:78] = 40
    labels = np.zeros(hu.shape, np.uint8)
    labels[4:8, 4:20, 4:70] = 1
    hu[labels == 1] = 60
    for z, y, x in [(z, y, x) for z in (0,) for y in range(0, 44, 2) for x in range(0, 80, 2)][:130]:
        labels[z, y, x] = 2
    changes = {}
    postprocess_labels(labels, SPACING_ZYX, PostprocessingOptions(min_lesion_ml=0), hu_zyx=hu, geometry=GEOMETRY,
                       changes=changes)
    assert changes["tumor_in_air_ml"] == pytest.approx(130 * VOXEL_ML)
    assert len(changes["tumor_in_air_components"]) == 100
    assert changes["tumor_in_air_components_not_listed"] == {"count": 30, "volume_ml": pytest.approx(30 * VOXEL_ML)}
    assert changes["tumor_above_lungs_components_not_listed"] == {"count": 0, "volume_ml": 0.0}
    assert len(json.dumps(changes, indent=2)) < 40000                 # 100 records, not one per speck
