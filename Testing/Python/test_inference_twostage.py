"""Two-stage segmentation: decimation, cropping (geometry kept), and the oracle result equals single-stage."""
import numpy as np
import pytest

pytest.importorskip("torch")

from LiverTumorSegLib.inference.engine import SliceInferenceEngine  # noqa: E402
from LiverTumorSegLib.inference.twostage import (crop_volume, decimate_volume, decimation_factors,  # noqa: E402
                                                 organ_box, segment_two_stage)

from inference_helpers import ORIENTATIONS, corner_phantom, oracle_package, oracle_predictor, reoriented  # noqa: E402


class CountingEngine:
    """Wraps an engine and records the shapes it was asked to segment."""

    def __init__(self, engine):
        self.engine = engine
        self.shapes = []

    def predict(self, volume, progress=None, cancel=None):
        self.shapes.append(volume.shape_zyx)
        return self.engine.predict(volume, progress=progress, cancel=cancel)


def test_decimation_and_crop_keep_physical_positions():
    ph = corner_phantom()
    vol = ph.ct
    dec = decimate_volume(vol, (1, 2, 2))
    assert dec.shape_zyx == (12, 20, 22)
    np.testing.assert_allclose(dec.geometry.index_to_lps((3, 4, 5)), vol.geometry.index_to_lps((6, 8, 5)))
    crop = crop_volume(vol, (slice(2, 9), slice(5, 30), slice(4, 20)))
    np.testing.assert_array_equal(crop.array, vol.array[2:9, 5:30, 4:20])
    np.testing.assert_allclose(crop.geometry.index_to_lps((0, 0, 0)), vol.geometry.index_to_lps((4, 5, 2)))


def test_decimation_factors_respect_max_spacing():
    assert decimation_factors((5.0, 0.8, 0.8), 2) == (1, 2, 2)


def test_organ_box_takes_the_largest_part_holding_liver_as_post_processing_keeps_it():
    """A tumor-only blob larger than the liver, apart from it, was the crop's part (the largest by size): the crop left
    the liver out and post-processing then removed the blob as tumor outside the liver, an empty result where the
    whole volume's post-processing keeps the liver (the post-processing audit)."""
    coarse = np.zeros((40, 50, 50), np.uint8)
    coarse[2:12, 10:40, 10:40] = 1                             # the liver, 9,000 coarse voxels
    coarse[20:38, 5:45, 5:45] = 2                              # tumor alone, 28,800 voxels, not touching it
    box = organ_box(coarse, (2, 2, 2), (80, 100, 100), (2.5, 1.5, 1.5), 15.0, axial_axis=0)
    assert box[0].start <= 4 and box[0].stop >= 24 and box[0].stop < 40      # the liver's slices, not the blob's
    tumor_only = np.where(coarse == 2, 2, 0).astype(np.uint8)  # no liver anywhere: the largest part
    assert organ_box(tumor_only, (2, 2, 2), (80, 100, 100), (2.5, 1.5, 1.5), 15.0, axial_axis=0)[0].start >= 20


def test_organ_box_scales_and_adds_margin():
    coarse = np.zeros((5, 10, 10), np.uint8)
    coarse[1:3, 2:5, 3:4] = 1
    box = organ_box(coarse, (1, 2, 2), (5, 20, 20), (4.0, 1.0, 1.0), margin_mm=2.0)
    assert box == (slice(0, 5), slice(0, 14), slice(2, 12))
    assert organ_box(np.zeros((2, 2, 2), np.uint8), (1, 1, 1), (2, 2, 2), (1, 1, 1), 1.0) is None
    # two-stage crops only along the slices: whole slices in-plane (an in-plane island lost the liver's tip)
    assert organ_box(coarse, (1, 2, 2), (9, 20, 20), (4.0, 1.0, 1.0), 2.0, axial_axis=0) == \
        (slice(0, 5), slice(0, 20), slice(0, 20))


@pytest.mark.parametrize("orientation", ["LPS", "permuted"])
def test_two_stage_oracle_equals_single_stage_and_crops(orientation):
    from LiverTumorSegLib.metrics.recist import axial_axis_zyx
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    ph = corner_phantom(shape_zyx=(12, 60, 64))
    pad = 10  # air slices above and below: the fine pass skips them
    g = ph.ct.geometry
    padded = CTVolume(np.pad(ph.ct.array, ((pad, pad), (0, 0), (0, 0)), constant_values=-1000),
                      ImageGeometry(spacing=g.spacing, origin=tuple(g.index_to_lps((0, 0, -pad))),
                                    direction=g.direction))
    volume, expected = reoriented(padded, np.pad(ph.labels, ((pad, pad), (0, 0), (0, 0))),
                                  *ORIENTATIONS[orientation])
    engine = CountingEngine(SliceInferenceEngine(oracle_package(), device="cpu", threads=1,
                                                 batch_predictor=oracle_predictor))
    seen, record = [], {}
    labels = segment_two_stage(volume, engine, margin_mm=6.0, progress=lambda f, s: seen.append(f), record=record)
    np.testing.assert_array_equal(labels, expected)
    assert len(engine.shapes) == 2
    axial = axial_axis_zyx(volume.geometry)
    fine = engine.shapes[1]
    assert fine[axial] < volume.shape_zyx[axial]                  # the fine pass skipped slices ...
    assert [fine[a] for a in range(3) if a != axial] == [volume.shape_zyx[a] for a in range(3) if a != axial]
    assert record["crop_zyx"][axial][1] - record["crop_zyx"][axial][0] == fine[axial]
    assert seen[-1] == 1.0 and all(b >= a for a, b in zip(seen, seen[1:]))


def test_two_stage_records_a_fallback_to_the_whole_volume():
    # the report said "two_stage": true with nothing about the crop or that the coarse pass found no liver
    from LiverTumorSegLib.volume import CTVolume

    ph = corner_phantom(shape_zyx=(12, 60, 64))
    air = CTVolume(np.full(ph.ct.shape_zyx, -1000, np.int16), ph.ct.geometry)
    engine = CountingEngine(SliceInferenceEngine(oracle_package(), device="cpu", threads=1,
                                                 batch_predictor=oracle_predictor))
    record = {}
    labels = segment_two_stage(air, engine, record=record)
    assert not labels.any() and "no liver on the coarse pass" in record["fallback"] and "crop_zyx" not in record
    assert engine.shapes[1] == air.shape_zyx


def test_the_report_says_where_two_stage_ran_or_that_it_fell_back():
    # the report said "two_stage": true and nothing else; a fallback to the whole volume was a log line only
    from LiverTumorSegLib.inference import SegmentationOptions, Segmenter
    from LiverTumorSegLib.volume import CTVolume

    ph = corner_phantom(shape_zyx=(12, 60, 64))
    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_predictor=oracle_predictor)
    segmenter = Segmenter(SegmentationOptions(two_stage=True, device="cpu"), engine=engine)
    report = segmenter.segment_volume(ph.ct).report
    assert report["two_stage"] is True and set(report["two_stage_record"]) == {"crop_zyx"}
    assert not any("Two-stage" in w for w in report["warnings"])
    noise = np.random.default_rng(0).normal(-950.0, 20.0, ph.ct.shape_zyx).astype(np.float32)  # air, not constant
    noise[:, 20:40, 20:40] = 40.0                                                                # some soft tissue
    result = segmenter.segment_volume(CTVolume(noise, ph.ct.geometry))
    assert "fallback" in result.report["two_stage_record"]
    assert result.warnings[0].startswith("Two-stage mode found no liver")
    single = Segmenter(SegmentationOptions(device="cpu"), engine=engine).segment_volume(ph.ct).report
    assert "two_stage_record" not in single


class AirIsLiverEngine:
    """The bundled network's failure on pure-air slices, as a stand-in: labels the oracle's answer, plus liver on
    every slice without a body."""

    def __init__(self, engine):
        self.engine = engine

    def predict(self, volume, progress=None, cancel=None):
        labels = self.engine.predict(volume, progress=progress, cancel=cancel)
        air_slices = (np.asarray(volume.array) < -500).all(axis=(1, 2))
        labels[air_slices] = 1
        return labels

    def predict_with_probability(self, volume, progress=None, cancel=None, probability_everywhere=True):
        labels, probability = self.engine.predict_with_probability(
            volume, progress=progress, cancel=cancel, probability_everywhere=probability_everywhere)
        labels[(np.asarray(volume.array) < -500).all(axis=(1, 2))] = 1
        return labels, probability


def _air_padded_phantom(pad: int = 40):
    """``(phantom, the phantom's CT with pad air slices in front, an engine labelling air slices liver)``."""
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry
    ph = corner_phantom(shape_zyx=(12, 60, 64))
    g = ph.ct.geometry
    padded = CTVolume(np.pad(ph.ct.array, ((pad, 0), (0, 0), (0, 0)), constant_values=-1000),
                      ImageGeometry(spacing=g.spacing, origin=tuple(g.index_to_lps((0, 0, -pad))),
                                    direction=g.direction))
    engine = AirIsLiverEngine(SliceInferenceEngine(oracle_package(), device="cpu", threads=1,
                                                   batch_predictor=oracle_predictor))
    return ph, padded, engine


def test_two_stage_crop_does_not_follow_liver_labelled_on_air_slices():
    """40 air slices in front of a CT: the coarse pass's largest 'liver' was the air block, the crop covered it
    and the fine pass saw 5 % of the real liver. With the air gate the crop covers the real liver."""
    pad = 40
    ph, padded, engine = _air_padded_phantom(pad)
    record = {}
    segment_two_stage(padded, engine, margin_mm=6.0, record=record, air_hu=-800.0)
    liver_slices = np.flatnonzero(ph.labels.any(axis=(1, 2))) + pad
    start, stop = record["crop_zyx"][0]
    assert start <= liver_slices.min() and stop > liver_slices.max() and start >= pad - 3
    ungated = {}
    segment_two_stage(padded, engine, margin_mm=6.0, record=ungated)
    assert ungated["crop_zyx"][0][0] == 0                         # without it: the air block


def test_allow_non_hu_on_a_ct_in_hu_keeps_the_two_stage_air_gate():
    """With --allow-non-hu (e.g. a series tagged with another Modality's values in HU) the post-processing still
    applied its air step on a CT in HU, but the two-stage crop turned its air gate off: the crop followed
    the air block. Both now ask the same question: are these values HU?"""
    from LiverTumorSegLib.inference.segmenter import Segmenter
    from LiverTumorSegLib.inference.options import SegmentationOptions
    pad = 40
    ph, padded, engine = _air_padded_phantom(pad)
    report = Segmenter(SegmentationOptions(two_stage=True, allow_non_hu=True, device="cpu"),
                       engine=engine).segment_volume(padded).report
    start, stop = report["two_stage_record"]["crop_zyx"][0]
    liver_slices = np.flatnonzero(ph.labels.any(axis=(1, 2))) + pad
    assert pad - 6 <= start <= liver_slices.min() and stop > liver_slices.max()  # not the air block (start 0)


class HUEngine:
    """Stand-in network: liver = 50..70 HU (label 1), tumor = 10..29 HU (label 2); only ``predict`` (an engine
    without ``predict_with_probability``, which Segmenter accepts)."""

    device, tta_flip, backend, batch_size, threads, precision = "cpu", False, "torch", 1, 1, "fp32"
    device_description = "stand-in"

    def predict(self, volume, progress=None, cancel=None):
        a = np.asarray(volume.array)
        labels = np.zeros(a.shape, np.uint8)
        labels[(a >= 50) & (a <= 70)] = 1
        labels[(a >= 10) & (a < 30)] = 2
        return labels


def _two_part_liver():
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    hu = np.full((100, 96, 96), -1000, np.int16)
    hu[:, 8:88, 8:88] = 40               # body
    hu[20:60, 20:60, 10:45] = 60         # the main liver part, slices 20..59 (2.5 mm)
    hu[80:92, 30:50, 15:35] = 60         # a separate part 50 mm below it: 4,800 voxels, 108 mL
    return CTVolume(hu, ImageGeometry(spacing=(3.0, 3.0, 2.5)))


def test_two_stage_keeps_or_reports_the_liver_parts_outside_its_crop():
    """--two-stage cropped to the largest coarse liver part: with --keep-all-liver-components a separate 108 mL
    part was dropped without a word (one-stage kept it), and by default it vanished without the warning one-stage
    post-processing gives."""
    import dataclasses

    from LiverTumorSegLib.inference import SegmentationOptions, Segmenter
    from LiverTumorSegLib.inference.postprocess import PostprocessingOptions

    volume = _two_part_liver()
    keep_all = dataclasses.replace(PostprocessingOptions(), largest_liver_component=False)
    for two_stage in (False, True):
        result = Segmenter(SegmentationOptions(device="cpu", two_stage=two_stage, postprocessing=keep_all),
                           engine=HUEngine()).segment_volume(volume)
        assert int((result.labels[80:92] >= 1).sum()) == 4800
        assert result.report["liver_volume_ml"] == pytest.approx((40 * 40 * 35 + 4800) * 22.5 / 1000)
    result = Segmenter(SegmentationOptions(device="cpu", two_stage=True), engine=HUEngine()).segment_volume(volume)
    assert not (result.labels[80:92] >= 1).any()
    assert result.report["two_stage_record"]["parts_outside_crop"] == {"count": 1, "volume_ml": pytest.approx(108.0)}
    assert any("1 other part(s) (about 108.0 mL) were left out" in w for w in result.warnings), result.warnings
    assert set(result.report["two_stage_record"]) <= documented_two_stage_record_keys()  # it was not named there


def documented_two_stage_record_keys() -> set:
    """The keys docs/report_format.md names in its ``two_stage_record`` row (those written in backticks that are
    names, not values such as ``[start, stop)``)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "report_format.md").read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `two_stage_record`"))
    return set(re.findall(r"`([a-z_]+)`", row.split("|")[2]))


def test_two_stage_runs_an_engine_without_probabilities():
    """Segmenter takes engines with predict alone; two-stage called predict_with_probability anyway
    (AttributeError), while one-stage ran."""
    from LiverTumorSegLib.inference import SegmentationOptions, Segmenter

    volume = _two_part_liver()
    volumes = [Segmenter(SegmentationOptions(device="cpu", two_stage=two), engine=HUEngine())
               .segment_volume(volume).report["liver_volume_ml"] for two in (False, True)]
    assert volumes == [pytest.approx(40 * 40 * 35 * 22.5 / 1000)] * 2


def test_liver_volume_limits_are_inclusive_whatever_the_float_rounding():
    """3,125,000 voxels of 0.8 x 0.8 x 2.5 mm are 5000 mL exactly, but the product was 5000.000000000001 and was
    flagged 'above 5000 mL'; 299.6 mL was printed as '300 mL (... below 300 mL ...)'."""
    from LiverTumorSegLib.inference.segmenter import liver_volume_warnings

    voxel_ml = 0.8 * 0.8 * 2.5 / 1000
    assert 3125000 * voxel_ml > 5000 and liver_volume_warnings(3125000 * voxel_ml) == []
    assert liver_volume_warnings(375000 * 0.8 / 1000) == []  # 300 mL exactly
    assert "the liver volume is 299.6 mL" in liver_volume_warnings(299.6)[0]
    assert "the liver volume is 5000.4 mL" in liver_volume_warnings(5000.4)[0]
    assert "the liver volume is 150 mL" in liver_volume_warnings(150.2)[0]


def test_two_stage_labels_the_coarse_organ_once(monkeypatch):
    """organ_box (the largest part) and parts_outside (the parts the crop leaves out) each labelled the coarse
    liver's connected components: about 0.15 s per case twice. Labelled once now; crop and record unchanged."""
    from scipy import ndimage

    volume = _two_part_liver()
    coarse_calls = []
    real_label = ndimage.label

    def counting_label(mask, *args, **kwargs):
        coarse_calls.append(np.shape(mask))
        return real_label(mask, *args, **kwargs)

    monkeypatch.setattr(ndimage, "label", counting_label)
    record = {}
    labels = segment_two_stage(volume, HUEngine(), record=record)
    assert len(coarse_calls) == 1, coarse_calls
    assert record == {"crop_zyx": [[12, 68], [0, 96], [0, 96]],  # slices 20..59 and 15 mm (6 slices) + 2
                      "parts_outside_crop": {"count": 1, "volume_ml": pytest.approx(108.0)}}
    assert int((labels >= 1).sum()) == 40 * 40 * 35 and not labels[80:92].any()
    # the functions alone still label for themselves, with the same answers
    from LiverTumorSegLib.inference.twostage import organ_components, parts_outside

    factors = decimation_factors(volume.spacing_zyx)
    coarse_volume = decimate_volume(volume, factors)
    coarse = HUEngine().predict(coarse_volume)
    box = organ_box(coarse, factors, volume.shape_zyx, volume.spacing_zyx, 15.0, axial_axis=0)
    assert box == organ_box(coarse, factors, volume.shape_zyx, volume.spacing_zyx, 15.0, axial_axis=0,
                            components=organ_components(coarse))
    assert parts_outside(coarse, box, factors, coarse_volume.spacing_zyx) == \
        parts_outside(coarse, box, factors, coarse_volume.spacing_zyx, components=organ_components(coarse))


def test_the_coarse_passs_precision_check_is_recorded_as_this_volumes():
    """An engine checks bf16 against fp32 on the first volume it segments: with --two-stage that is the coarse pass,
    and the fine pass recorded the check as an earlier CT's (this_volume false) with slices of the coarse grid as if
    they were the CT's (the inference options audit)."""
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    class Engine:
        def __init__(self):
            self.calls = 0
            self.last_precision = {}

        def predict(self, volume, progress=None, cancel=None):
            self.calls += 1                                   # the check runs on the first call only
            self.last_precision = {"used": "bf16", "check": {"slices": [4, 7], "this_volume": self.calls == 1}}
            labels = np.zeros(volume.shape_zyx, np.uint8)
            labels[1:-1, 2:-2, 2:-2] = 1
            return labels

    volume = CTVolume(np.zeros((20, 40, 40), np.int16), ImageGeometry(spacing=(1.0, 1.0, 2.0)))
    engine = Engine()
    segment_two_stage(volume, engine, factor=2, margin_mm=4.0)
    assert engine.calls == 2
    assert engine.last_precision["check"] == {"slices": [4, 7], "this_volume": True, "pass": "coarse"}
    engine.calls = 5                                          # a later CT of a batch: the check was an earlier CT's
    segment_two_stage(volume, engine, factor=2, margin_mm=4.0)
    assert engine.last_precision["check"]["this_volume"] is False and "pass" not in engine.last_precision["check"]
