"""benchmarks/scale_tta.py: its one-scale path gives the engine's own labels and probability (so a difference it
measures is the averaging), averaging a scale with itself changes nothing, and the scaled configs and the
``--scales`` argument are what they say."""
import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_helpers import ORIENTATIONS, corner_phantom, reoriented, tiny_unet_package  # noqa: E402
from script_helpers import load_script  # noqa: E402

from LiverTumorSegLib.inference.engine import SliceInferenceEngine  # noqa: E402

tta = load_script("benchmarks/scale_tta.py", "scale_tta_bench")


@pytest.fixture
def restore_engine(monkeypatch):
    """install() replaces two engine methods for the process; the test's monkeypatch puts them back."""
    for name in ("predict", "predict_with_probability"):
        monkeypatch.setattr(SliceInferenceEngine, name, getattr(SliceInferenceEngine, name))


@pytest.mark.parametrize("orientation", ["LPS", "permuted"])
def test_one_scale_gives_the_engines_own_labels_and_probability(tmp_path, restore_engine, orientation):
    """In the CT's own orientation too: a transposed, flipped storage order comes back as it went in."""
    engine = SliceInferenceEngine(tiny_unet_package(tmp_path), device="cpu", precision="fp32")
    phantom = corner_phantom()
    ct, _ = reoriented(phantom.ct, phantom.labels, *ORIENTATIONS[orientation])
    own_labels, own_probability = engine.predict_with_probability(ct)
    assert own_labels.any() and own_probability.any()  # the untrained network labels something: a real comparison
    tta.install([1.0])
    labels, probability = engine.predict_with_probability(ct)
    assert labels.shape == ct.shape_zyx and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, own_labels)
    np.testing.assert_array_equal(probability, own_probability)
    np.testing.assert_array_equal(engine.predict(ct), own_labels)


def test_averaging_a_scale_with_itself_changes_nothing(tmp_path):
    from LiverTumorSegLib.orientation import canonicalize

    engine = SliceInferenceEngine(tiny_unet_package(tmp_path), device="cpu", precision="fp32")
    canonical, _ = canonicalize(corner_phantom().ct)
    once = tta.averaged_probabilities(engine, canonical, [1.0])
    twice = tta.averaged_probabilities(engine, canonical, [1.0, 1.0])
    np.testing.assert_allclose(twice, once, atol=1e-6)
    assert once.shape[0] == canonical.shape_zyx[0] and once.shape[2:] == canonical.shape_zyx[1:]
    np.testing.assert_allclose(once.sum(axis=1), 1.0, atol=1e-5)  # probabilities on the CT's grid


def test_scaled_config_multiplies_the_pixel_size_only(tmp_path):
    config = tiny_unet_package(tmp_path).preprocessing
    scaled = tta.scaled_config(config, 1.25)
    assert scaled.target_spacing_mm == pytest.approx(config.target_spacing_mm * 1.25)
    assert scaled.channels == config.channels and scaled.context_slices == config.context_slices


@pytest.mark.parametrize("text", ["", "0", "0.8,,5", "x"])
def test_scales_argument_refuses_what_is_not_a_list_of_factors(text):
    with pytest.raises((argparse.ArgumentTypeError, ValueError)):
        tta.parse_scales(text)


def test_scales_argument_reads_a_list():
    assert tta.parse_scales("0.8,1,1.25") == [0.8, 1.0, 1.25]
