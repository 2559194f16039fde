"""Every lesion in the Segmenter's report carries its mean tumor probability (issue 11), also when the caller
did not ask for the probability map; the lung rule gets the CT (heart above the dome removed end to end)."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_helpers import corner_phantom, oracle_package, oracle_predictor  # noqa: E402

from LiverTumorSegLib.inference.engine import SliceInferenceEngine  # noqa: E402
from LiverTumorSegLib.inference.options import SegmentationOptions  # noqa: E402
from LiverTumorSegLib.inference.postprocess import PostprocessingOptions  # noqa: E402
from LiverTumorSegLib.inference.segmenter import Segmenter  # noqa: E402


def test_each_lesion_has_its_mean_tumor_probability():
    phantom = corner_phantom()
    engine = SliceInferenceEngine(oracle_package(), device="cpu", batch_predictor=oracle_predictor)
    options = SegmentationOptions(postprocessing=PostprocessingOptions(min_lesion_ml=0))
    result = Segmenter(options, package=oracle_package(), engine=engine).segment_volume(phantom.ct)
    lesions = result.report["lesions"]
    assert lesions, "the phantom's lesion must be found"
    for lesion in lesions:
        assert lesion["mean_tumor_probability"] == 1.0       # the oracle's one-hot tumor probability
    assert result.tumor_probability is None                  # the map itself only when asked for


def test_segmenter_gives_post_processing_the_ct_for_the_lung_rule():
    from test_postprocess import CHEST_SPACING, chest_phantom

    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    hu, parts = chest_phantom()
    hu[parts["heart"]] = 60.0                 # the oracle calls 55-65 HU liver: now the heart is "liver"
    volume = CTVolume(hu, ImageGeometry(spacing=CHEST_SPACING[::-1]))
    engine = SliceInferenceEngine(oracle_package(), device="cpu", batch_predictor=oracle_predictor)
    heart_kept = {}
    for rule in (True, False):
        options = SegmentationOptions(postprocessing=PostprocessingOptions(min_lesion_ml=0, below_lungs=rule))
        labels = Segmenter(options, package=oracle_package(), engine=engine).segment_volume(volume).labels
        assert (labels[parts["liver"]] >= 1).mean() > 0.99
        heart_kept[rule] = int(np.count_nonzero(labels[parts["heart"]]))
    assert heart_kept[False] == parts["heart"].sum()
    assert heart_kept[True] < 0.7 * heart_kept[False]
