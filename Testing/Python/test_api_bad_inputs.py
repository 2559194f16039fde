"""The Python API with inputs a researcher may pass directly (an audit's reproductions, each failing before its
fix): a CT on another grid or a bad spacing given to post-processing, volume_ml with a bad spacing, NaN scores in
the pooled ROC, empty label maps scored as perfect, a bad spacing given to preprocessing, a float probability map
outside 0..1 in the lesion report, and segment_volume's allow_non_hu."""
import re

import numpy as np
import pytest

from LiverTumorSegLib.errors import InputError, LabelError
from LiverTumorSegLib.inference.postprocess import postprocess_labels


def _labels():
    labels = np.zeros((16, 48, 48), np.uint8)
    labels[2:14, 8:40, 8:40] = 1
    labels[6:9, 20:25, 20:25] = 2
    return labels


def test_postprocess_refuses_a_ct_on_another_grid_and_a_bad_spacing():
    """A CT of 15 slices for 16-slice labels was dropped silently (73 mL of air stayed liver); a spacing of
    (-3, 2, 2) recorded a -0.876 mL lesion and removed it; 0 and NaN were internal errors."""
    labels = _labels()
    with pytest.raises(InputError, match=r"hu_zyx \(the CT\) has shape \(15, 48, 48\)"):
        postprocess_labels(labels, (3.0, 2.0, 2.0), hu_zyx=np.zeros((15, 48, 48), np.int16))
    with pytest.raises(InputError, match="tumor_probability_zyx has shape"):
        postprocess_labels(labels, (3.0, 2.0, 2.0), tumor_probability_zyx=np.zeros((16, 48, 47), np.uint8))
    for spacing in ((-3.0, 2.0, 2.0), (0.0, 2.0, 2.0), (float("nan"), 2.0, 2.0), (2.0, 2.0)):
        with pytest.raises(InputError, match="spacing_zyx must be 3 positive, finite"):
            postprocess_labels(labels, spacing)


def test_postprocess_refuses_a_label_map_that_is_not_3d_and_leaves_the_callers_map_unchanged():
    """One slice (2D) or a map with a leading channel axis (4D) names the shape it got and the axis order it needs."""
    labels = _labels()
    before = labels.copy()
    for bad in (labels[8], labels[None]):
        with pytest.raises(InputError, match=r"needs a 3-D \(z, y, x\) label map, got shape " +
                           re.escape(str(bad.shape))):
            postprocess_labels(bad, (3.0, 2.0, 2.0))
    assert np.array_equal(labels, before)


def test_volume_ml_refuses_a_spacing_that_is_not_one_positive_size_per_axis():
    from LiverTumorSegLib.metrics import volume_ml
    cube = np.zeros((10, 10, 10), bool)
    cube[:5, :5, :5] = True
    assert volume_ml(cube, (2.0, 2.0, 2.0)) == pytest.approx(1.0)          # 125 x 8 mm^3
    for spacing in ((-2.0, 2.0, 2.0), (0.0, 2.0, 2.0), (2.0, 2.0), (float("nan"), 2.0, 2.0)):
        with pytest.raises(ValueError, match="spacing_zyx"):
            volume_ml(cube, spacing)


def test_pooled_roc_refuses_nan_scores():
    """Two NaN positives were binned as p = 0 and the pooled AUC of a perfect ranking read 0.5."""
    from LiverTumorSegLib.metrics.roc import RocAccumulator
    roc = RocAccumulator()
    with pytest.raises(ValueError, match="NaN or Inf"):
        roc.add(np.array([0.9, np.nan, 0.1]), np.array([1, 1, 0]))


def test_empty_label_maps_are_not_a_perfect_case():
    from LiverTumorSegLib.metrics.lits import evaluate_case
    empty = np.zeros((0, 64, 64), np.uint8)
    with pytest.raises(LabelError, match="hold no voxels"):
        evaluate_case(empty, empty, (1.0, 1.0, 1.0), case="a")


def test_preprocessing_refuses_a_spacing_that_is_zero_nan_or_short():
    from LiverTumorSegLib.preprocessing import SlicePreprocessor, gaussian_smooth
    hu = np.full((2, 16, 16), 40, np.int16)
    for spacing in ((3.0, 0.0, 1.0), (3.0, float("nan"), 1.0), (1.0, 1.0)):
        with pytest.raises(InputError, match="spacing_zyx must be 3"):
            SlicePreprocessor().plan(hu, spacing)
    impulse = np.zeros((9, 9), np.float32)
    impulse[4, 4] = 1.0
    with pytest.raises(InputError, match=r"Pixel spacing \(y, x\)"):  # NaN skipped the smoothing along y
        gaussian_smooth(impulse, 2.0, (float("nan"), 1.0))


def test_lesion_report_refuses_a_float_probability_map_outside_0_to_1():
    """A float copy of the 0..255 map gave a mean tumor probability of 255.0."""
    from LiverTumorSegLib.inference.lesion_report import lesion_report
    from LiverTumorSegLib.volume import ImageGeometry
    labels = _labels()
    probability = np.where(labels == 2, 230, 0).astype(np.uint8)
    geometry = ImageGeometry(spacing=(1.0, 1.0, 1.0))
    as_uint8 = lesion_report(labels, geometry, tumor_probability_zyx=probability)
    assert as_uint8["lesions"][0]["mean_tumor_probability"] == pytest.approx(230 / 255)
    as_fraction = lesion_report(labels, geometry, tumor_probability_zyx=probability / 255.0)
    assert as_fraction["lesions"][0]["mean_tumor_probability"] == pytest.approx(230 / 255)
    with pytest.raises(InputError, match="finite values in 0..1"):
        lesion_report(labels, geometry, tumor_probability_zyx=probability.astype(np.float32))


def test_segment_volume_takes_the_allow_non_hu_its_message_names():
    """The refusal says 'pass allow_non_hu=True to proceed'; segment_volume had no such argument (TypeError)."""
    pytest.importorskip("torch")
    from inference_helpers import corner_phantom, oracle_package, oracle_predictor

    from LiverTumorSegLib.inference import SliceInferenceEngine, segment_volume
    from LiverTumorSegLib.volume import CTVolume
    ph = corner_phantom()
    scaled = CTVolume((np.asarray(ph.ct.array, np.float32) + 1024) / 4095.0, ph.ct.geometry)  # 0..1, not HU
    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_predictor=oracle_predictor)
    with pytest.raises(InputError, match="allow_non_hu=True"):
        segment_volume(scaled, oracle_package(), engine=engine)
    result = segment_volume(scaled, oracle_package(), engine=engine, allow_non_hu=True)
    assert result.labels.shape == ph.ct.shape_zyx
