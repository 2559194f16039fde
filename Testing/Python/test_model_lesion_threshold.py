"""A model package's own lesion confidence threshold (metadata ``postprocessing.min_lesion_probability``): a
probability threshold belongs to the network whose probabilities it reads, so ``segment`` uses the one the package
records where the user sets none, else 0.65; the report says which ran and where it came from."""
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_helpers import HUThresholdEngine, tiny_unet_package  # noqa: E402
from test_postprocess_record_positions import FLIPPED, LESION, SHAPE  # noqa: E402

from LiverTumorSegLib.errors import InputError, ModelPackageError  # noqa: E402
from LiverTumorSegLib.inference.postprocess import (DEFAULT_MIN_LESION_PROBABILITY,  # noqa: E402
                                                    PostprocessingOptions, with_min_lesion_probability)
from LiverTumorSegLib.volume import CTVolume  # noqa: E402

LESION_VOXELS = 3 * 6 * 6


def _ct() -> CTVolume:
    hu = np.full(SHAPE, -1000, dtype=np.int16)
    hu[:, 2:38, 2:42] = 40                  # body
    hu[1:11, 3:30, 4:40] = 60               # liver
    hu[LESION] = 10                         # one lesion of 0.15 mL, every voxel at tumor probability 179/255
    return CTVolume(hu, FLIPPED)


def _segment(metadata, postprocessing=None):
    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import Segmenter

    engine = HUThresholdEngine(179)  # 0.702: above 0.65, below 0.75
    engine.package = types.SimpleNamespace(metadata=metadata, name="stand-in", path="stand-in")
    options = SegmentationOptions(body_size_scaling=False,
                                  postprocessing=postprocessing or PostprocessingOptions())
    return Segmenter(options, engine=engine).segment_volume(_ct())


def test_the_package_threshold_decides_a_lesion_of_known_probability():
    plain = _segment({})
    assert int((plain.labels == 2).sum()) == LESION_VOXELS  # 0.70 >= 0.65: kept
    assert plain.report["postprocessing"]["min_lesion_probability"] == DEFAULT_MIN_LESION_PROBABILITY == 0.65
    assert plain.report["min_lesion_probability_from"] == "library default"
    assert plain.report["options"]["postprocessing"]["min_lesion_probability"] == 0.65  # what ran, not None

    own = _segment({"postprocessing": {"min_lesion_probability": 0.75}})
    assert int((own.labels == 2).sum()) == 0  # 0.70 < 0.75: liver
    assert int((own.labels == 1).sum()) == int((plain.labels >= 1).sum())
    (record,) = own.report["postprocessing_changes"]["tumor_components"]
    assert record["rule"] == "uncertain" and record["mean_tumor_probability"] == pytest.approx(179 / 255)
    assert own.report["postprocessing"]["min_lesion_probability"] == 0.75
    assert own.report["min_lesion_probability_from"] == "model package"

    given = _segment({"postprocessing": {"min_lesion_probability": 0.75}},
                     PostprocessingOptions(min_lesion_probability=0.65))  # typed by the user: wins
    assert int((given.labels == 2).sum()) == LESION_VOXELS
    assert given.report["postprocessing"]["min_lesion_probability"] == 0.65
    assert given.report["min_lesion_probability_from"] == "options"


def test_resolving_the_models_threshold():
    assert with_min_lesion_probability(PostprocessingOptions(), None).min_lesion_probability == 0.65
    assert with_min_lesion_probability(PostprocessingOptions(), 0.8).min_lesion_probability == 0.8
    assert with_min_lesion_probability(PostprocessingOptions(min_lesion_probability=0.5), 0.8
                                       ).min_lesion_probability == 0.5
    assert with_min_lesion_probability(PostprocessingOptions.disabled(), 0.8).min_lesion_probability == 0.0


def test_a_package_records_removes_and_refuses_its_threshold(tmp_path):
    from LiverTumorSegLib.package import (load_model_package, package_min_lesion_probability, read_package_metadata,
                                          set_package_min_lesion_probability)

    package = tiny_unet_package(tmp_path)
    path = Path(package.path)
    assert package_min_lesion_probability(read_package_metadata(path)) is None
    set_package_min_lesion_probability(path, 0.8)
    assert read_package_metadata(path)["postprocessing"] == {"min_lesion_probability": 0.8}
    assert package_min_lesion_probability(load_model_package(path).metadata) == 0.8  # sealed: it loads
    before = path.read_bytes()
    for bad in (1.5, -0.1, float("nan"), "0.8", True):
        with pytest.raises(InputError, match="from 0 to 1"):
            set_package_min_lesion_probability(path, bad)
    assert path.read_bytes() == before
    set_package_min_lesion_probability(path, None)
    assert "postprocessing" not in read_package_metadata(path)


@pytest.mark.parametrize("recorded,words", [
    ([0.75], "must be a JSON object"),
    ({"min_lesion_probability": 1.5}, "from 0 to 1"),
    ({"min_lesion_probability": "high"}, "from 0 to 1"),
    ({"min_lesion_probability": 0.7, "min_lesion_ml": 2.0}, "min_lesion_ml, which this version does not know"),
    ({"min_lesion_probability": 0.99, "lesion_probability_statistic": "max"}, "one of mean, peak, got max")])
def test_a_package_with_a_malformed_threshold_is_refused(recorded, words):
    from LiverTumorSegLib.package import package_min_lesion_probability, validate_package_metadata

    meta = {"format_version": 1, "name": "x", "weights_sha256": "0" * 64, "postprocessing": recorded,
            "architecture": {"name": "unet", "in_channels": 1, "num_classes": 3, "options": {}}}
    with pytest.raises(ModelPackageError, match="'postprocessing' .*" + words):
        validate_package_metadata(meta, "p.safetensors")
    with pytest.raises(ModelPackageError, match=words):
        package_min_lesion_probability(meta)


def test_a_batch_compares_earlier_reports_with_the_threshold_that_will_run():
    """An earlier run's report records the threshold that ran (the package's 0.75); the same run again, with none
    typed, must compare equal (kept as done), and one with 0.65 typed must not."""
    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference.batch import _earlier_run_differences, segmenter_result_options

    package = types.SimpleNamespace(metadata={"postprocessing": {"min_lesion_probability": 0.75}})
    earlier = {"options": SegmentationOptions(postprocessing=PostprocessingOptions(
        min_lesion_probability=0.75, lesion_probability_statistic="mean")).to_dict()}  # resolved, as reports hold it
    same = types.SimpleNamespace(package=package, options=SegmentationOptions())
    assert segmenter_result_options(same).postprocessing.min_lesion_probability == 0.75
    assert _earlier_run_differences(earlier, "", segmenter_result_options(same).to_dict()) == []
    typed = types.SimpleNamespace(package=package, options=SegmentationOptions(
        postprocessing=PostprocessingOptions(min_lesion_probability=0.65)))
    assert _earlier_run_differences(earlier, "", segmenter_result_options(typed).to_dict()) == [
        "other postprocessing (min_lesion_probability)"]


def test_check_earlier_results_reads_an_unset_threshold_as_the_packages(tmp_path):
    """check_earlier_results given options whose threshold is the model's (None, as heldout_comparison.py gives
    segment's): with the package's metadata it compares the package's threshold, without it 0.65."""
    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference.batch import check_earlier_results, find_cases

    (tmp_path / "cts").mkdir()
    (tmp_path / "cts" / "ct_0.nii.gz").write_bytes(b"not read")
    out = tmp_path / "out"
    (out / "reports").mkdir(parents=True)
    (out / "ct_0.nii.gz").write_bytes(b"a label map")
    ran = SegmentationOptions(postprocessing=PostprocessingOptions(min_lesion_probability=0.75)).to_dict()
    del ran["postprocessing"]["lesion_probability_statistic"]  # a report of 0.6.14, which read every lesion's mean
    (out / "reports" / "ct_0.json").write_text(json.dumps({"options": ran}))
    cases = find_cases(tmp_path / "cts", out)
    own = {"postprocessing": {"min_lesion_probability": 0.75}}
    check_earlier_results(cases, "", SegmentationOptions(), model_metadata=own)  # the same: kept
    with pytest.raises(InputError, match=r"ct_0 \(other postprocessing \(min_lesion_probability\)\)"):
        check_earlier_results(cases, "", SegmentationOptions())  # a package recording none runs at 0.65
    # a package that records the peak reads lesions otherwise than the earlier run did
    with pytest.raises(InputError, match=r"ct_0 \(other postprocessing \(lesion_probability_statistic\)\)"):
        check_earlier_results(cases, "", SegmentationOptions(), model_metadata={"postprocessing": dict(
            own["postprocessing"], lesion_probability_statistic="peak")})


def test_segment_help_says_the_default_is_the_models(capsys):
    from LiverTumorSegLib.cli import main

    with pytest.raises(SystemExit):
        main(["segment", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: the model's, 0.65 unless its package records another)" in text


def test_the_panel_shows_the_models_threshold():
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "LiverTumorSeg"))
    from LiverTumorSegModuleLib import panel_text

    assert panel_text.model_lesion_probability({}) == 0.65
    recorded = {"postprocessing": {"min_lesion_probability": 0.75}}
    assert panel_text.model_lesion_probability(recorded) == 0.75
    assert ("Lesion confidence threshold: 0.75 of each lesion's mean tumor probability (this model's own)"
            in panel_text.describe_model(recorded))
    peak = {"postprocessing": {"min_lesion_probability": 0.99, "lesion_probability_statistic": "peak"}}
    assert panel_text.model_lesion_probability(peak) == 0.99
    assert ("Lesion confidence threshold: 0.99 of each lesion's peak tumor probability (this model's own)"
            in panel_text.describe_model(peak))
    assert "Lesion confidence threshold" not in panel_text.describe_model({})


def test_models_lists_a_packages_own_threshold(tmp_path, monkeypatch, capsys):
    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.package import set_package_min_lesion_probability

    models = tmp_path / "models"
    models.mkdir()
    package = tiny_unet_package(models, name="mine.safetensors")
    set_package_min_lesion_probability(package.path, 0.8)
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(models))
    assert main(["models", "--json"]) == 0
    listed = {entry["path"]: entry for entry in json.loads(capsys.readouterr().out)["installed"]}
    assert listed[str(Path(package.path))]["min_lesion_probability"] == 0.8
    assert all(e["min_lesion_probability"] is None for p, e in listed.items() if p != str(Path(package.path)))
    assert main(["models"]) == 0
    assert "lesion confidence threshold 0.8 of each lesion's mean tumor probability (this model's own" in \
        " ".join(capsys.readouterr().out.split())
    assert listed[str(Path(package.path))]["lesion_probability_statistic"] is None  # none recorded: the mean
    set_package_min_lesion_probability(package.path, 0.99, "peak")
    assert main(["models", "--json"]) == 0
    entry = {e["path"]: e for e in json.loads(capsys.readouterr().out)["installed"]}[str(Path(package.path))]
    assert (entry["min_lesion_probability"], entry["lesion_probability_statistic"]) == (0.99, "peak")
    assert main(["models"]) == 0
    assert "lesion confidence threshold 0.99 of each lesion's peak tumor probability" in \
        " ".join(capsys.readouterr().out.split())


def test_a_package_records_its_statistic_only_beside_its_threshold(tmp_path):
    """set_package_min_lesion_probability records the statistic with the threshold it is read at; a threshold set
    again alone records none (the mean), and an unknown statistic or one without a threshold is refused."""
    from LiverTumorSegLib.package import (package_lesion_probability_statistic, package_min_lesion_probability,
                                          read_package_metadata, set_package_min_lesion_probability)

    package = tiny_unet_package(tmp_path)
    set_package_min_lesion_probability(package.path, 0.99, "peak")
    meta = read_package_metadata(package.path)
    assert (package_min_lesion_probability(meta), package_lesion_probability_statistic(meta)) == (0.99, "peak")
    set_package_min_lesion_probability(package.path, 0.7)
    meta = read_package_metadata(package.path)
    assert (package_min_lesion_probability(meta), package_lesion_probability_statistic(meta)) == (0.7, None)
    with pytest.raises(InputError, match="one of mean, peak"):
        set_package_min_lesion_probability(package.path, 0.7, "median")
    with pytest.raises(InputError, match="give the threshold too"):
        set_package_min_lesion_probability(package.path, None, "peak")
    assert package_lesion_probability_statistic(read_package_metadata(package.path)) is None  # nothing written


def test_finalize_refuses_recorded_folds_read_at_another_threshold():
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from script_helpers import load_script

    fin = load_script("scripts/finalize_default_model.py", "finalize_default_model_threshold")
    assert fin.recorded_threshold_problem([{"dice_liver": 0.9}], None) == ""  # read at 0.65, runs at 0.65
    assert fin.recorded_threshold_problem([{"min_lesion_probability": 0.75}], 0.75) == ""
    problem = fin.recorded_threshold_problem([{"dice_liver": 0.9}, {"min_lesion_probability": 0.75}], 0.75)
    assert "threshold(s) 0.65, 0.75" in problem and "--min-lesion-probability 0.75" in problem


def test_models_says_a_stored_table_was_measured_at_another_threshold_than_the_package_now_records(
        tmp_path, monkeypatch, capsys):
    """A package given a new threshold kept printing its stored robustness table as its own, without a word, though
    the table's false lesions and tumor Dice were counted at the old threshold (the package audit)."""
    import shutil

    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.commands.models import robustness_threshold_note
    from LiverTumorSegLib.package import set_package_min_lesion_probability

    models = tmp_path / "models"
    models.mkdir()
    mine = models / "mine.safetensors"
    shutil.copyfile(Path(__file__).resolve().parents[2] / "Resources" / "Models" / "unet16_widezoom_cpu.safetensors",
                    mine)
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(models))
    assert main(["models"]) == 0
    assert "STALE for lesions" not in capsys.readouterr().out  # every table measured at its package's threshold
    set_package_min_lesion_probability(mine, 0.9, "peak")
    assert main(["models"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.count("STALE for lesions") == 1
    assert ("STALE for lesions: measured at the lesion confidence threshold 0.65 of the mean; this package now "
            "records 0.9 of the peak") in out
    settings = {"postprocessing": {"min_lesion_probability": 0.65}}
    assert robustness_threshold_note(settings, None, None) == ""          # the library's 0.65 of the mean
    assert robustness_threshold_note(settings, 0.65, "mean") == ""
    assert "now records 0.75 of the mean" in robustness_threshold_note(settings, 0.75, None)
    assert robustness_threshold_note({}, 0.75, None) == ""                # not recorded: nothing to compare
