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
    assert record["trained_on"]["patients"] == ["p0", "p1", "p2"]
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
    assert set(saved["training"]["init_from"]["matched_by"].values()) == {"voxels"}  # the start recorded them
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
    """By the voxels' digest or the image file's SHA-256 that the package records for a training case (a copy of a
    training scan under another name), by patient id, and by case name only where no content can be compared (two
    data sets' 'case0' with other voxels are not one scan); a scan the package only validated on is not counted."""
    from types import SimpleNamespace

    from LiverTumorSegLib.training.init_from import patients_seen, trained_on

    metadata = {"training": {
        "patients": ["pa"], "cases": ["ca", "cb", "cc"], "validation_cases": ["cv"],
        "data_files": [{"case": "ca", "voxel_sha256": "d1"}, {"case": "cb", "image_sha256": "h2"},
                       {"case": "cv", "voxel_sha256": "d3", "image_sha256": "h3"}]}}
    trained = trained_on(metadata)
    assert trained == {"patients": ["pa"], "cases": ["ca", "cb", "cc"], "voxel_sha256": ["d1"], "image_sha256": ["h2"]}

    def case(case_id, patient_id):
        return SimpleNamespace(case_id=case_id, patient_id=patient_id)

    cases = [case("x1", "pa"), case("cc", "p2"), case("x3", "p3"), case("x4", "p4"), case("x5", "p5"),
             case("x6", "p6"), case("ca", "p7")]
    digests = {"x3": "d1", "x5": "d3", "ca": "other voxels"}
    hashes = {"x4": {"image_sha256": "h2"}, "x6": {"image_sha256": "h3"}}
    assert patients_seen(trained, cases, digests, hashes) == {"p2": "case name", "p3": "voxels", "p4": "image file",
                                                             "pa": "patient id"}
    assert patients_seen(trained, cases) == {"p2": "case name", "p7": "case name", "pa": "patient id"}
    # free-form training metadata (package.py allows it) is no TypeError
    assert trained_on({"training": {"patients": 12, "cases": 12}}) == {k: [] for k in trained}
    assert patients_seen(trained_on({}), cases, digests, hashes) == {}


def test_a_chain_of_fine_tunings_keeps_every_patient_the_starts_trained_on():
    """B fine-tuned from A (trained on ctsm) on other data: a run fine-tuned from B and validated on ctsm was not
    warned (only B's own training cases were looked at)."""
    from types import SimpleNamespace

    from LiverTumorSegLib.training.init_from import patients_seen, start_record, trained_on

    a = SimpleNamespace(path="a.safetensors", name="a", sha256="1" * 64, metadata={"training": {
        "patients": ["ctsm"], "cases": ["example_ct_sm"]}})
    b_meta = {"training": {"patients": ["q1"], "cases": ["q1"], "init_from": start_record(a, "a.safetensors")}}
    assert trained_on(b_meta)["patients"] == ["ctsm", "q1"]
    assert patients_seen(trained_on(b_meta), [SimpleNamespace(case_id="s", patient_id="ctsm")]) == \
        {"ctsm": "patient id"}


def test_an_empty_init_from_and_a_run_that_would_replace_its_start_are_refused(start_package, tmp_path):
    """`--init-from "$START"` with the variable unset trained from random weights without a word; `-o` naming the
    start package replaced the weights the run started from, and its --resume could then not find them."""
    from LiverTumorSegLib.commands.train import with_start_package_settings

    for value in ("", "  "):
        with pytest.raises(InputError, match="--init-from .* is empty"):
            with_start_package_settings({"init_from": value})
    assert with_start_package_settings({"lr": 0.1}) == {"lr": 0.1}
    import shutil

    copy = tmp_path / "start.safetensors"
    shutil.copy(start_package, copy)
    with pytest.raises(InputError, match="is the --init-from package"):
        train(_config(tmp_path / "no_data.csv", tmp_path, init_from=str(copy), output=str(copy), overwrite=True),
              log=lambda s: None)
    assert copy.read_bytes() == start_package.read_bytes()


def test_resuming_with_another_spelling_of_the_same_start_package_is_not_other_settings(data_csv, start_package,
                                                                                       tmp_path, monkeypatch):
    """The start path was compared as text: a relative --init-from and its absolute form were 'other settings'."""
    from LiverTumorSegLib.training.trainer import check_resume_config

    monkeypatch.chdir(start_package.parent)
    relative = _config(data_csv, tmp_path / "a", init_from=start_package.name)
    absolute = _config(data_csv, tmp_path / "a", init_from=str(start_package.resolve()))
    check_resume_config(relative.to_json(), absolute, tmp_path / "last.pt")
    with pytest.raises(InputError, match="init_from"):
        check_resume_config(relative.to_json(), _config(data_csv, tmp_path / "a", init_from="default"),
                            tmp_path / "last.pt")


def test_a_finished_crossval_fold_from_another_start_package_is_refused(data_csv, start_package, tmp_path):
    """`crossval --resume` took a finished fold fine-tuned from the package's earlier weights beside folds trained
    from the new ones (train --resume refused the same)."""
    from LiverTumorSegLib.training.crossval import _check_same_start

    cfg = _config(data_csv, tmp_path, init_from=str(start_package))
    sha = load_model_package(start_package).sha256
    _check_same_start(cfg, {"init_from": {"weights_sha256": sha}}, tmp_path / "fold_0.safetensors")
    _check_same_start(_config(data_csv, tmp_path), {}, tmp_path / "fold_0.safetensors")  # no --init-from
    for training in ({"init_from": {"weights_sha256": "0" * 64}}, {}):
        with pytest.raises(InputError, match="was fine-tuned from weights .* now holds " + sha):
            _check_same_start(cfg, training, tmp_path / "fold_0.safetensors")


def test_a_start_package_of_a_newer_version_is_refused_saying_what_to_do(start_package, tmp_path):
    """--init-from a package recording a preprocessing setting this version does not know named the setting with
    nothing to do (segment and models say to update LiverTumorSeg)."""
    import json

    from safetensors.torch import load_file, save_file

    from LiverTumorSegLib.errors import ModelPackageError
    from LiverTumorSegLib.package import read_safetensors_header, sealed_metadata_json
    from LiverTumorSegLib.training.init_from import package_settings

    meta = json.loads(read_safetensors_header(start_package)["__metadata__"]["livertumorseg"])
    meta.pop("metadata_sha256")
    meta.update(library_version="9.0.0")
    meta["preprocessing"]["bias_field_correction"] = True
    newer = tmp_path / "newer.safetensors"
    save_file(load_file(str(start_package)), str(newer),
              metadata={"livertumorseg": sealed_metadata_json(meta), "format": "pt"})
    with pytest.raises(ModelPackageError, match=r"\['bias_field_correction'\].*The package was written by "
                                                r"LiverTumorSeg 9\.0\.0, newer than this one .*: update LiverTumorSeg"):
        package_settings(str(newer))


def test_a_start_with_its_own_lesion_threshold_is_named_and_not_carried_over(data_csv, start_package, tmp_path):
    """The start's recorded threshold was chosen for its weights: the fine-tuned package records none (0.65 applies
    to it), and the run says so rather than leaving a user of the new package to find out."""
    import shutil

    from LiverTumorSegLib.package import set_package_min_lesion_probability

    start = tmp_path / "start_own.safetensors"
    shutil.copyfile(start_package, start)
    set_package_min_lesion_probability(start, 0.75, "peak")
    logs = []
    tuned = train(_config(data_csv, tmp_path / "tuned", init_from=str(start)), log=logs.append)
    assert "postprocessing" not in read_package_metadata(tuned.package_path)  # neither threshold nor statistic
    (note,) = [line for line in logs if "lesion confidence threshold" in line]
    assert "records its own lesion confidence threshold (0.75 of each lesion's peak tumor probability)" in note
    assert "reads it at 0.65 of the mean" in note
    logs.clear()
    train(_config(data_csv, tmp_path / "tuned_plain", init_from=str(start_package)), log=logs.append)
    assert not [line for line in logs if "lesion confidence threshold" in line]


def test_crossval_marks_folds_the_time_limit_stopped_and_their_mean():
    """Folds stopped by --max-time-minutes were averaged with finished ones into the mean, with only an epochs
    number (often 0) to tell (the crossval audit): each fold says its stop_reason, the mean row and crossval.json's
    summary name the unfinished folds, and the printed note says to --resume."""
    from types import SimpleNamespace

    from LiverTumorSegLib.training.crossval import fold_row, mean_row, selection_summary

    def result(stop_reason):
        return SimpleNamespace(validation={"whole_volume": {"liver_dice": 0.9, "tumor_dice": 1.0, "cases": []}},
                               epochs_completed=0 if stop_reason == "time_limit" else 3, val_cases=["p0"],
                               stop_reason=stop_reason)

    rows = [fold_row(0, result("completed")), fold_row(1, result("time_limit")), fold_row(2, result("early_stopping"))]
    assert [r["stop_reason"] for r in rows] == ["completed", "time_limit", "early_stopping"]
    assert mean_row(rows)["stop_reason"] == "not finished: fold(s) 1 (see the folds)"
    summary = selection_summary(rows)
    assert summary["unfinished_folds"] == [1] and "fold(s) 1 stopped before the end" in summary["unfinished"]
    assert "--resume" in summary["unfinished"]
    finished = [rows[0], rows[2]]
    assert mean_row(finished)["stop_reason"] == "finished" and selection_summary(finished)["unfinished_folds"] == []
