"""Each tumor component post-processing changed is reported with where it lay and how sure the network was of it
(``postprocessing_changes.tumor_components``: ``centroid_lps_mm``, ``centroid_ras_mm``, ``mean_tumor_probability``):
the report said how many mL a rule took away, but not where, so no one could look at a lesion it demoted."""
import json

import numpy as np
import pytest

from LiverTumorSegLib.inference.postprocess import PostprocessingOptions, postprocess_labels
from LiverTumorSegLib.volume import CTVolume, ImageGeometry
from inference_helpers import HUThresholdEngine

# (x, y, z) spacing 0.7 / 0.8 / 2.5 mm; the j axis runs toward anterior (flipped), so post-processing works on a
# canonical view with its own box offsets
SPACING_XYZ = (0.7, 0.8, 2.5)
ORIGIN = (-120.5, 85.25, -310.0)
FLIPPED = ImageGeometry(spacing=SPACING_XYZ, origin=ORIGIN, direction=(1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
SHAPE = (12, 40, 44)
LESION = (slice(4, 7), slice(10, 16), slice(20, 26))     # 3 x 6 x 6 = 108 voxels = 0.1512 mL, inside the liver
# its centre: k 5, j 12.5, i 22.5 -> LPS x -120.5 + 0.7 * 22.5, y 85.25 - 0.8 * 12.5, z -310 + 2.5 * 5
LESION_LPS = [-104.75, 75.25, -297.5]
LESION_RAS = [104.75, -75.25, -297.5]


def _liver_with_an_uncertain_lesion():
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[1:11, 3:30, 4:40] = 1
    labels[LESION] = 2
    probability = np.zeros(SHAPE, dtype=np.uint8)
    probability[LESION] = 80
    probability[4, 10:16, 20:26] = 140   # mean of the lesion's voxels: (2 * 80 + 140) / 3 = 100 -> 100 / 255
    return labels, probability


def test_an_uncertain_lesion_made_liver_is_reported_with_its_centroid_and_mean_probability():
    labels, probability = _liver_with_an_uncertain_lesion()
    changes = {}
    out = postprocess_labels(labels, FLIPPED.spacing[::-1], PostprocessingOptions(), geometry=FLIPPED,
                             tumor_probability_zyx=probability, changes=changes)
    assert (out[LESION] == 1).all()
    (record,) = changes["tumor_components"]
    assert record["rule"] == "uncertain" and record["became"] == "liver"
    assert record["volume_ml"] == pytest.approx(108 * 0.7 * 0.8 * 2.5 / 1000.0)
    assert record["centroid_lps_mm"] == pytest.approx(LESION_LPS, abs=1e-9)
    assert record["centroid_ras_mm"] == pytest.approx(LESION_RAS, abs=1e-9)
    assert record["mean_tumor_probability"] == pytest.approx(100.0 / 255.0)
    json.dumps(changes)  # plain floats: the JSON report takes them


def test_the_centroid_is_the_lesion_reports_on_an_oblique_grid_too():
    from LiverTumorSegLib.inference.lesion_report import lesion_report

    angle = np.radians(20.0)   # turned about the patient's S axis, i axis reversed
    c, s = np.cos(angle), np.sin(angle)
    tilted = ImageGeometry(spacing=SPACING_XYZ, origin=ORIGIN, direction=(-c, -s, 0.0, -s, c, 0.0, 0.0, 0.0, 1.0))
    labels, probability = _liver_with_an_uncertain_lesion()
    changes = {}
    postprocess_labels(labels, tilted.spacing[::-1], PostprocessingOptions(), geometry=tilted,
                       tumor_probability_zyx=probability, changes=changes)
    (record,) = changes["tumor_components"]
    (lesion,) = lesion_report(labels, tilted)["lesions"]    # the same lesion, before post-processing
    assert record["centroid_lps_mm"] == pytest.approx(lesion["centroid_lps_mm"], abs=1e-9)
    assert record["centroid_ras_mm"] == pytest.approx(lesion["centroid_ras_mm"], abs=1e-9)
    assert record["centroid_lps_mm"] == pytest.approx(list(tilted.index_to_lps((22.5, 12.5, 5.0))), abs=1e-9)


def test_a_tumor_removed_outside_the_liver_gets_its_centroid_too():
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[1:11, 3:20, 4:40] = 1
    labels[6:9, 30:34, 10:14] = 2       # 8 mm and more from the liver along j: outside; centre k 7, j 31.5, i 11.5
    changes = {}
    out = postprocess_labels(labels, FLIPPED.spacing[::-1], PostprocessingOptions(largest_liver_component=False,
                                                                                   min_lesion_ml=0.0),
                             geometry=FLIPPED, changes=changes)
    assert not out[6:9, 30:34, 10:14].any()
    (record,) = changes["tumor_components"]
    assert record["rule"] == "outside_liver" and record["became"] == "background"
    assert record["centroid_lps_mm"] == pytest.approx([-120.5 + 0.7 * 11.5, 85.25 - 0.8 * 31.5, -310.0 + 2.5 * 7],
                                                      abs=1e-9)
    assert record["centroid_ras_mm"] == pytest.approx([120.5 - 0.7 * 11.5, -85.25 + 0.8 * 31.5, -310.0 + 2.5 * 7],
                                                      abs=1e-9)
    assert record["mean_tumor_probability"] is None   # no probability given


def test_without_geometry_the_centroids_are_left_out():
    labels, probability = _liver_with_an_uncertain_lesion()
    changes = {}
    postprocess_labels(labels, FLIPPED.spacing[::-1], PostprocessingOptions(), tumor_probability_zyx=probability,
                       changes=changes)
    (record,) = changes["tumor_components"]
    assert "centroid_lps_mm" not in record and "centroid_ras_mm" not in record
    assert record["mean_tumor_probability"] == pytest.approx(100.0 / 255.0)


def test_with_the_confidence_step_off_a_record_still_carries_the_mean_probability():
    labels, probability = _liver_with_an_uncertain_lesion()
    changes = {}
    out = postprocess_labels(labels, FLIPPED.spacing[::-1], PostprocessingOptions(min_lesion_probability=0.0,
                                                                                   min_lesion_ml=1.0),
                             geometry=FLIPPED, tumor_probability_zyx=probability, changes=changes)
    assert (out[LESION] == 1).all()
    (record,) = changes["tumor_components"]
    assert record["rule"] == "small" and record["mean_tumor_probability"] == pytest.approx(100.0 / 255.0)
    assert record["centroid_lps_mm"] == pytest.approx(LESION_LPS, abs=1e-9)


def test_with_the_confidence_step_off_a_map_not_in_255ths_is_left_unread_not_misread():
    """The confidence step refuses a map that is not uint8 round(255 p); with the step off such a map was ignored,
    and reading it for the records' mean would take an int16 map's 100 for 100/255: it stays unread (None)."""
    labels, probability = _liver_with_an_uncertain_lesion()
    changes = {}
    postprocess_labels(labels, FLIPPED.spacing[::-1], PostprocessingOptions(min_lesion_probability=0.0,
                                                                          min_lesion_ml=1.0),
                       geometry=FLIPPED, tumor_probability_zyx=probability.astype(np.int16), changes=changes)
    (record,) = changes["tumor_components"]
    assert record["rule"] == "small" and record["mean_tumor_probability"] is None
    with pytest.raises(ValueError, match="uint8"):
        postprocess_labels(labels, FLIPPED.spacing[::-1], PostprocessingOptions(), geometry=FLIPPED,
                           tumor_probability_zyx=probability.astype(np.int16))


def test_segment_files_json_report_holds_where_and_how_sure(tmp_path):
    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import Segmenter
    from LiverTumorSegLib.io import write_volume

    hu = np.full(SHAPE, -1000, dtype=np.int16)
    hu[:, 2:38, 2:42] = 40                  # body
    hu[1:11, 3:30, 4:40] = 60               # liver
    hu[LESION] = 10                         # the lesion
    ct = write_volume(tmp_path / "ct.nii.gz", CTVolume(hu, FLIPPED))
    segmenter = Segmenter(SegmentationOptions(body_size_scaling=False), engine=HUThresholdEngine(100))
    segmenter.segment_file(ct, tmp_path / "seg.nii.gz", report_path=tmp_path / "report.json")
    written = json.loads((tmp_path / "report.json").read_text())
    (record,) = written["postprocessing_changes"]["tumor_components"]
    assert record["rule"] == "uncertain" and record["became"] == "liver"
    assert record["centroid_lps_mm"] == pytest.approx(LESION_LPS, abs=1e-4)
    assert record["centroid_ras_mm"] == pytest.approx(LESION_RAS, abs=1e-4)
    assert record["mean_tumor_probability"] == pytest.approx(100.0 / 255.0)
