"""train --init-from PACKAGE (fine-tuning): the network starts from the package's weights, its architecture and
preprocessing must be the package's (the command takes them from it), what it started from is recorded, and a
validation patient the starting package was trained on is said not to be held out."""
import argparse
import random

import numpy as np
import pytest
import torch

from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.package import load_model_package, read_package_metadata
from LiverTumorSegLib.training.config import TrainConfig
from LiverTumorSegLib.training.init_from import check_same_start
from LiverTumorSegLib.training.trainer import train
from seeding import test_seed
from training_helpers import write_phantom_cases

PREPROCESSING = {"channels": [{"kind": "window", "level": 40, "width": 400}], "context_slices": 1,
                 "target_spacing_mm": 3.0, "size_multiple": 16, "crop_to_body": True}
OPTIONS = {"channels": [4, 8, 16]}


@pytest.fixture(autouse=True)
def _seeded():
    seed = test_seed(11)
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory):
    return write_phantom_cases(tmp_path_factory.mktemp("phantoms"), 3, (8, 48, 48))


def _config(data_csv, out, **overrides):
    values = dict(data=str(data_csv), model="unet", model_options=OPTIONS, preprocessing=PREPROCESSING, epochs=1,
                  iterations_per_epoch=2, batch_size=4, patch_size=32, num_workers=0, lr=1e-3, weight_decay=0.0,
                  val_fraction=0.34, output=str(out / "model.safetensors"), cache_dir=str(out.parent / "cache"),
                  progress_bar=False, tensorboard=False, seed=test_seed(5), augmentation={"enabled": False})
    values.update(overrides)
    out.mkdir(parents=True, exist_ok=True)
    return TrainConfig.from_dict(values)


@pytest.fixture(scope="module")
def start_package(data_csv, tmp_path_factory):
    """A package trained on all three phantom patients (p0, p1, p2), as the bundled default saw every patient."""
    out = tmp_path_factory.mktemp("start")
    torch.manual_seed(3)
    result = train(_config(data_csv, out, val_fraction=0.0, seed=3), log=lambda s: None)
    return result.package_path


def _parameters(path):
    model = load_model_package(path).model
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_the_network_starts_from_the_package_s_weights(data_csv, start_package, tmp_path):
    """Two Adam steps of learning rate 1e-3 move each weight by at most about 2e-3 (Adam's step is at most lr per
    step, bias-corrected): from the package's weights the result lies that close to them; from scratch (the same
    seed, no --init-from) it does not (a fresh initialisation differs by far more)."""
    logs = []
    tuned = train(_config(data_csv, tmp_path / "tuned", init_from=str(start_package)), log=logs.append)
    scratch = train(_config(data_csv, tmp_path / "scratch"), log=lambda s: None)
    start, after, fresh = _parameters(start_package), _parameters(tuned.package_path), \
        _parameters(scratch.package_path)
    assert set(start) == set(after) == set(fresh)
    moved = max(float((after[k] - start[k]).abs().max()) for k in start)
    unrelated = max(float((fresh[k] - start[k]).abs().max()) for k in start)
    assert moved <= 2.2e-3 < 0.05 < unrelated, (moved, unrelated)
    assert any("starting from the weights of" in line for line in logs)
    record = read_package_metadata(tuned.package_path)["training"]["init_from"]
    assert record["weights_sha256"] == load_model_package(start_package).sha256
    assert record["package"] == str(start_package.resolve())
    assert "init_from" not in read_package_metadata(scratch.package_path)["training"]


def test_a_validation_patient_the_start_was_trained_on_is_said_not_held_out(data_csv, start_package, tmp_path):
    logs = []
    result = train(_config(data_csv, tmp_path / "run", init_from=str(start_package)), log=logs.append)
    validation_patients = sorted({case_id for case_id in result.val_cases})
    assert validation_patients  # one of the three phantom patients
    overlap = result.validation["init_trained_on_validation_patients"]
    assert overlap and len(overlap) == len(validation_patients)
    assert any("not held out" in line and overlap[0] in line for line in logs)
    saved = read_package_metadata(result.package_path)
    assert saved["validation"]["init_trained_on_validation_patients"] == overlap
    assert saved["training"]["init_from"]["validation_patients_it_trained_on"] == overlap
    from LiverTumorSegLib.commands.train import validation_summary

    assert "not held out" in validation_summary(result.validation)


def test_another_network_or_preprocessing_than_the_package_s_is_refused_before_any_data_is_read(start_package,
                                                                                                 tmp_path):
    missing = tmp_path / "no_data.csv"  # never read: the refusal comes first
    for overrides, said in (({"model": "segnet", "model_options": {}}, r"architecture unet \(the run's: segnet\)"),
                            ({"model_options": {"channels": [4, 8, 32]}},
                             r"model options channels \[4, 8, 16\] \(the run's: \[4, 8, 32\]\)"),
                            ({"preprocessing": dict(PREPROCESSING, target_spacing_mm=2.0)},
                             r"preprocessing .*target_spacing_mm 3.0 \(the run's: 2.0\)")):
        with pytest.raises(InputError, match=r"--init-from .* is another network than this run's: its " + said):
            train(_config(missing, tmp_path / "run", init_from=str(start_package), **overrides), log=lambda s: None)
    assert not (tmp_path / "run" / "model_train").exists()


def test_the_command_takes_the_package_s_network_and_preprocessing_when_not_given(start_package, tmp_path):
    from LiverTumorSegLib.commands.train import config_from_args

    def args(**given):
        values = {f: None for f in TrainConfig.field_names()}
        values.update(config_file=None, data="d.csv", init_from=str(start_package), **given)
        return argparse.Namespace(**values)

    meta = read_package_metadata(start_package)
    config = config_from_args(args())
    assert config.model == "unet" and config.model_options == meta["architecture"]["options"]
    assert config.model_options["channels"] == OPTIONS["channels"]
    assert config.preprocessing == meta["preprocessing"]
    given = config_from_args(args(model="segnet"))  # given: kept (the trainer refuses it, above)
    assert given.model == "segnet" and given.model_options == {}


def test_resuming_from_a_changed_start_package_is_refused():
    check_same_start(None, {"weights_sha256": "a"}, "last.pt")  # a run from scratch, or an older checkpoint
    check_same_start({"weights_sha256": "a"}, {"weights_sha256": "a"}, "last.pt")
    with pytest.raises(InputError, match="started from weights a .* now holds b"):
        check_same_start({"weights_sha256": "a", "package": "p"}, {"weights_sha256": "b", "given_as": "p"},
                         "last.pt")


def test_crossval_marks_a_fold_whose_start_saw_its_validation_patients():
    """A leave-one-patient-out crossval fine-tuned from the bundled default (trained on every shared patient) would
    have reported its folds' Dice as held out."""
    from types import SimpleNamespace

    from LiverTumorSegLib.training.crossval import fold_row, mean_row, selection_summary

    def result(validation):
        return SimpleNamespace(validation=validation, epochs_completed=1, val_cases=["p0"])

    seen = fold_row(0, result({"whole_volume": {"liver_dice": 0.9, "tumor_dice": 1.0, "cases": []},
                               "init_trained_on_validation_patients": ["p0"]}))
    clean = fold_row(1, result({"whole_volume": {"liver_dice": 0.8, "tumor_dice": 1.0, "cases": []}}))
    assert seen["held_out"] == "no: the --init-from package was trained on p0" and clean["held_out"] == "yes"
    assert mean_row([seen, clean])["held_out"] == "no for fold(s) 0 (see the folds)"
    assert mean_row([clean])["held_out"] == "yes"
    assert "fold(s) 0 started (--init-from)" in selection_summary([seen, clean])["not_held_out"]
    assert "not_held_out" not in selection_summary([clean])


def test_a_validation_scan_is_known_as_trained_on_by_name_or_by_content():
    """By patient or case name, and by the voxels' digest or the image file's SHA-256 that the package records for
    a training case (a copy of a training scan under another name); a scan the package only validated on is not
    counted."""
    from types import SimpleNamespace

    from LiverTumorSegLib.training.init_from import patients_seen

    package = SimpleNamespace(metadata={"training": {
        "patients": ["pa"], "cases": ["ca", "cb"], "validation_cases": ["cv"],
        "data_files": [{"case": "ca", "voxel_sha256": "d1"}, {"case": "cb", "image_sha256": "h2"},
                       {"case": "cv", "voxel_sha256": "d3", "image_sha256": "h3"}]}})

    def case(case_id, patient_id):
        return SimpleNamespace(case_id=case_id, patient_id=patient_id)

    cases = [case("x1", "pa"), case("cb", "p2"), case("x3", "p3"), case("x4", "p4"), case("x5", "p5"),
             case("x6", "p6")]
    digests = {"x3": "d1", "x5": "d3"}
    hashes = {"x4": {"image_sha256": "h2"}, "x6": {"image_sha256": "h3"}}
    assert patients_seen(package, cases, digests, hashes) == ["p2", "p3", "p4", "pa"]
    assert patients_seen(package, cases) == ["p2", "pa"]
    assert patients_seen(SimpleNamespace(metadata={}), cases, digests, hashes) == []
