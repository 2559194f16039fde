"""Slices whose whole 2.5D input stack is air are not given to the network while the post-processing's air step
runs: the bundled v3 network labels an all-air slice mostly liver (its window channels all 0), which that step then
removed whole (2,929 mL on 20 padded air slices), after the network had spent time on it."""
import numpy as np
import pytest

pytest.importorskip("torch")

from LiverTumorSegLib.inference.engine import SliceInferenceEngine, air_stack_slices  # noqa: E402
from LiverTumorSegLib.inference.options import PostprocessingOptions, SegmentationOptions  # noqa: E402
from LiverTumorSegLib.inference.segmenter import Segmenter  # noqa: E402
from LiverTumorSegLib.volume import CTVolume  # noqa: E402

from inference_helpers import corner_phantom, oracle_package, oracle_predictor  # noqa: E402


def test_air_stack_slices_marks_only_slices_whose_whole_stack_is_air():
    hu = np.full((7, 4, 4), -1024, np.int16)
    hu[3] = 40                      # body
    hu[5, 0, 0] = -790              # one voxel above the threshold: not air
    assert air_stack_slices(hu, -800.0, 0).tolist() == [True, True, True, False, True, False, True]
    assert air_stack_slices(hu, -800.0, 1).tolist() == [True, True, False, False, False, False, False]
    # neighbours 1.5 slices away: both slices around a fractional position count
    assert air_stack_slices(hu, -800.0, 1, 1.5).tolist() == [True, False, False, False, False, False, False]
    as_float = hu.astype(np.float32)
    as_float[0, 1, 1] = np.nan      # a NaN is not air
    assert air_stack_slices(as_float, -800.0, 0).tolist()[:2] == [False, True]


def _padded_phantom(air_slices=4):
    """The corner phantom with ``air_slices`` slices of -1024 HU added above (high z) its last slice."""
    ct = corner_phantom().ct
    array = np.concatenate([ct.array, np.full((air_slices,) + ct.array.shape[1:], -1024, ct.array.dtype)])
    return CTVolume(array, ct.geometry)


def _liver_in_air_predictor(given):
    """The oracle, except that a slice of nothing but air (window all 0) is called liver, as the bundled v3 network
    does; records how many slices it was given."""
    def predict(x_nchw):
        given.append(len(x_nchw))
        probs = oracle_predictor(x_nchw)
        blank = (x_nchw.reshape(len(x_nchw), -1) == 0).all(axis=1)
        probs[blank] = 0
        probs[blank, 1] = 1
        return probs
    return predict


def test_the_engine_leaves_air_stacks_out_and_labels_them_background():
    volume = _padded_phantom()
    given = []
    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=3,
                                  batch_predictor=_liver_in_air_predictor(given))
    every_labels, every_probability = engine.predict_with_probability(volume)
    assert sum(given) == volume.shape_zyx[0] and every_labels[-4:].all()  # the air slices labelled liver
    given.clear()
    engine.skip_air_below_hu = -800.0
    labels, probability = engine.predict_with_probability(volume)
    assert sum(given) == volume.shape_zyx[0] - 4 and engine.last_air_slices_skipped == 4
    assert not labels[-4:].any() and not probability[-4:].any()
    assert np.array_equal(labels[:-4], every_labels[:-4])
    assert np.array_equal(probability[:-4], every_probability[:-4])


def test_segment_skips_air_stacks_only_while_the_air_step_runs():
    volume = _padded_phantom()
    given = []
    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=3,
                                  batch_predictor=_liver_in_air_predictor(given))
    result = Segmenter(engine=engine).segment_volume(volume)
    assert sum(given) == volume.shape_zyx[0] - 4 and engine.skip_air_below_hu is None  # set for the call only
    assert not result.labels[-4:].any() and result.labels.any()
    assert result.report["postprocessing_changes"]["liver_in_air_ml"] == 0.0
    given.clear()
    options = SegmentationOptions(postprocessing=PostprocessingOptions(air_to_background=False))
    kept = Segmenter(options, engine=engine).segment_volume(volume)  # --keep-liver-in-air: the network's labels
    assert sum(given) == volume.shape_zyx[0] and kept.labels[-4:].any()


def test_the_report_says_how_many_slices_were_left_out_as_air():
    """engine.last_air_slices_skipped had no reader: a report's reader could not tell the network had not run on
    the 4 slices of air (labels background there by that, not by the network)."""
    volume = _padded_phantom()
    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=3,
                                  batch_predictor=_liver_in_air_predictor([]))
    assert Segmenter(engine=engine).segment_volume(volume).report["air_slices_skipped"] == 4
    # the next CT of the same engine starts from 0
    assert Segmenter(engine=engine).segment_volume(corner_phantom().ct).report["air_slices_skipped"] == 0
    options = SegmentationOptions(postprocessing=PostprocessingOptions(air_to_background=False))
    kept = Segmenter(options, engine=engine).segment_volume(volume)  # every slice ran: null, not 0
    assert "air_slices_skipped" in kept.report and kept.report["air_slices_skipped"] is None


def test_the_count_adds_up_over_passes_while_the_engine_accumulates():
    """Two-stage's passes and an oblique CT's footprint runs call the engine several times with
    accumulate_timings on: the count adds up as last_timings do, and starts afresh without it."""
    volume = _padded_phantom()
    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=3,
                                  batch_predictor=_liver_in_air_predictor([]))
    engine.skip_air_below_hu = -800.0
    engine.accumulate_timings = True
    engine.predict(volume)
    engine.predict(_padded_phantom(2))
    assert engine.last_air_slices_skipped == 4 + 2
    engine.accumulate_timings = False
    engine.predict(_padded_phantom(2))
    assert engine.last_air_slices_skipped == 2


def test_a_batch_records_each_cases_air_slices(tmp_path):
    import json

    from LiverTumorSegLib.inference.batch import find_cases, segment_batch
    from LiverTumorSegLib.io import write_volume

    (tmp_path / "cts").mkdir()
    write_volume(tmp_path / "cts" / "a.nii.gz", _padded_phantom(4))
    write_volume(tmp_path / "cts" / "b.nii.gz", corner_phantom().ct)
    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=3,
                                  batch_predictor=_liver_in_air_predictor([]))
    statuses = segment_batch(find_cases(tmp_path / "cts", tmp_path / "out"), Segmenter(engine=engine))
    assert [s.status for s in statuses] == ["done", "done"]
    reports = {name: json.loads((tmp_path / "out" / "reports" / f"{name}.json").read_text(encoding="utf-8"))
               for name in ("a", "b")}
    assert reports["a"]["air_slices_skipped"] == 4 and reports["b"]["air_slices_skipped"] == 0
