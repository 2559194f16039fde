"""benchmarks/scale_tta.py: its one-scale path gives the engine's own labels and probability (so a difference it
measures is the averaging), averaging a scale with itself changes nothing, the scaled configs and the ``--scales``
argument are what they say, and the lesion check makes liver of a lesion that no scale calls tumor (an oracle
network) and keeps the real one."""
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


def test_tumor_slabs_and_margin():
    assert tta.tumor_slabs([5, 6, 7], 100, 4) == [(1, 12)]
    assert tta.tumor_slabs([20, 2], 30, 4) == [(0, 7), (16, 25)]
    assert tta.tumor_slabs([2, 11], 30, 4) == [(0, 16)]  # slabs that touch are one
    assert tta.tumor_slabs([0, 29], 30, 4) == [(0, 5), (25, 30)]
    assert tta.context_margin(2.0) == 4 and tta.context_margin(0.5) == 7 and tta.context_margin(0.75) == 5


def test_context_margin_covers_a_package_that_reaches_further_than_3_mm():
    from LiverTumorSegLib.preprocessing import PreprocessingConfig

    bundled_like = PreprocessingConfig(context_slices=1, context_min_mm=1.0, context_max_mm=3.0)
    assert tta.context_margin(0.5, bundled_like) == tta.context_margin(0.5) == 7  # within the 3 mm margin
    far = PreprocessingConfig(context_slices=2, context_min_mm=6.0, context_max_mm=8.0)
    assert far.context_offset(0.5) == 12  # every 12th slice: neighbours 12 and 24 slices away
    assert tta.context_margin(0.5, far) == 25


def _oracle_engine(target_spacing_mm=2.0):
    """An engine stand-in whose network is the oracle (tumor where the HU are 10-30 % of the 0..100 window):
    its answer at every scale is known."""
    import dataclasses
    import types

    from inference_helpers import oracle_config, oracle_predictor

    config = dataclasses.replace(oracle_config(), target_spacing_mm=target_spacing_mm)
    return types.SimpleNamespace(preprocessing=config, predict_batch_probabilities=oracle_predictor)


def _labels_with_a_false_lesion(phantom):
    """The phantom's labels plus a 'lesion' of 3 x 3 x 3 liver voxels (liver HU: the oracle calls it liver) deep
    inside the liver, away from the real lesion (lesion HU: the oracle calls it tumor)."""
    from scipy import ndimage

    labels = np.array(phantom.labels, dtype=np.uint8, copy=True)
    inner = ndimage.binary_erosion(labels == 1, iterations=3)
    z, y, x = (int(v[-1]) for v in np.nonzero(inner))  # 3 voxels inside the liver, the last in scan order
    labels[z - 1:z + 2, y - 1:y + 2, x - 1:x + 2] = 2
    return labels, (z, y, x)


@pytest.mark.parametrize("orientation", ["LPS", "permuted"])
def test_lesion_check_keeps_what_every_scale_calls_tumor_and_makes_the_rest_liver(orientation):
    phantom = corner_phantom()
    labels, (z, y, x) = _labels_with_a_false_lesion(phantom)
    assert (labels[z - 1:z + 2, y - 1:y + 2, x - 1:x + 2] == 2).all() and (phantom.labels == 2).sum() > 0
    ct, moved = reoriented(phantom.ct, labels, *ORIENTATIONS[orientation])
    _, real = reoriented(phantom.ct, phantom.labels, *ORIENTATIONS[orientation])
    checked = tta.lesion_check(_oracle_engine(), ct, moved, [0.8, 1.0, 1.25])
    np.testing.assert_array_equal(checked, real)  # the false lesion is liver again, the real one untouched
    assert checked.shape == moved.shape and (moved == 2).sum() > (checked == 2).sum()


def test_lesion_check_leaves_a_result_without_tumor_alone():
    phantom = corner_phantom()
    labels = np.where(phantom.labels == 2, 1, phantom.labels).astype(np.uint8)
    assert tta.lesion_check(_oracle_engine(), phantom.ct, labels, [0.8, 1.0, 1.25]) is labels


def test_a_missing_script_is_one_usage_line(tmp_path, capsys, monkeypatch):
    """`--scales 1 nosuch.py` was a FileNotFoundError traceback from runpy, after the engine had been patched."""
    monkeypatch.setattr(tta, "install", lambda *a: pytest.fail("the engine was patched"))
    for missing in (str(tmp_path / "nosuch.py"), str(tmp_path)):
        with pytest.raises(SystemExit) as exc:
            tta.main(["--scales", "1", missing])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert f"script '{missing}'" in err and "Traceback" not in err, err


def test_a_table_of_the_patched_engine_is_not_stored_in_the_package(tmp_path, capsys, monkeypatch):
    """robustness.py --store-in-package under scale_tta stored the patched engine's table as the package's own."""
    monkeypatch.setattr(tta, "install", lambda *a: pytest.fail("the engine was patched"))
    script = tmp_path / "robustness.py"
    script.write_text("raise SystemExit('ran')\n")
    for flag in ("--store-in-package", "--store", "--store-in"):  # '--store' stored it past the check (helper-402)
        with pytest.raises(SystemExit) as exc:
            tta.main(["--scales", "1", str(script), "default", "--data", "x", flag])
        assert exc.value.code == 2 and "--store-in-package is refused under scale_tta" in capsys.readouterr().err
    robustness = load_script("benchmarks/robustness.py", "robustness_no_abbreviations")
    with pytest.raises(SystemExit) as exc:  # and robustness.py takes no abbreviation of it
        robustness.parse_args(["default", "--data", "x", "--store"])
    assert exc.value.code == 2 and "unrecognized arguments: --store" in capsys.readouterr().err


def test_the_patched_path_runs_no_unchecked_bf16_and_records_precision_and_network_time(tmp_path, restore_engine):
    """The patched path called the network past the engine's bf16 check: with precision auto on a bf16 CPU it ran
    bf16 unchecked, and the report's precision and network time were empty (helper-402's audit). A bf16 engine
    awaiting its check (as auto makes one on such a CPU) now runs fp32 and says so; bf16 asked for stays."""
    phantom = corner_phantom()
    package = tiny_unet_package(tmp_path)
    fp32 = SliceInferenceEngine(package, device="cpu", precision="fp32")
    own_labels, _ = fp32.predict_with_probability(phantom.ct)
    awaiting = SliceInferenceEngine(package, device="cpu", precision="bf16")
    awaiting._verify_cpu_dtype = True  # what precision auto sets on a CPU with native bf16
    asked = SliceInferenceEngine(package, device="cpu", precision="bf16")
    tta.install([1.0])
    labels, _ = awaiting.predict_with_probability(phantom.ct)
    np.testing.assert_array_equal(labels, own_labels)
    assert awaiting.precision_used == "fp32" and awaiting.last_precision["used"] == "fp32"
    assert "runs the CPU network in fp32" in awaiting.last_precision["note"]
    assert awaiting.last_timings["network"] > 0 and awaiting.last_timings["preprocess"] > 0
    awaiting.predict_with_probability(phantom.ct)  # a second volume of the same engine says it too (the review)
    assert awaiting.last_precision["used"] == "fp32" and "runs the CPU network in fp32" in awaiting.last_precision["note"]
    asked.predict_with_probability(phantom.ct)
    assert asked.last_precision["used"] == "bf16" and "note" not in asked.last_precision
