"""``--model`` and ``--config`` mean different things in ``train``/``crossval`` (an architecture name; a training
recipe YAML/JSON) and in ``segment`` (a trained model package; no --config at all). A value meant for the other
command is refused before any work with a message saying what the option means here and which option was meant."""
import json
import shutil
from pathlib import Path

import pytest

from LiverTumorSegLib.cli import main
from LiverTumorSegLib.models import available_models

ARCHITECTURES = ", ".join(available_models())  # alexnet_fcn, attention_unet, ..., unet

BUNDLED = Path(__file__).resolve().parents[2] / "Resources" / "Models" / "unet16_widezoom_cpu.safetensors"
"""A small bundled package (3 MB, architecture unet) whose copy is the only package installed here."""
PKG = "unet16_widezoom_cpu"
OUTPUT = {"train": "out.safetensors", "crossval": "out"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Resources with one bundled package, ``unet16_widezoom_cpu`` (a U-Net), and an empty user folder."""
    root = tmp_path_factory.mktemp("resources")
    (root / "Models").mkdir()
    (root / "user").mkdir()
    package = root / "Models" / BUNDLED.name
    shutil.copy(BUNDLED, package)
    return root, package


@pytest.fixture
def env(installed, monkeypatch, tmp_path):
    root, package = installed
    monkeypatch.setenv("LIVERTUMORSEG_RESOURCES", str(root))
    monkeypatch.setenv("LIVERTUMORSEG_MODELS_DIR", str(root / "user"))
    monkeypatch.chdir(tmp_path)
    return package


def _error(capsys, argv):
    """main(argv)'s exit code and its one error line (without 'error: ')."""
    code = main(argv)
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return code, err[len("error: "):].rstrip("\n")


@pytest.mark.parametrize("command", ["train", "crossval"])
def test_a_package_given_as_the_architecture_points_to_init_from(env, capsys, command):
    """Before: "Unknown model architecture '.../default.safetensors'; available: ..." for a package path, and the
    same for an installed package's name (--model default), without a word about --init-from."""
    package = env
    for value in (str(package), PKG):
        code, err = _error(capsys, [command, "--data", "d.csv", "-o", OUTPUT[command], "--model", value])
        assert code == 2
        assert err == (f"--model {value}: in {command}, --model is the architecture of the network to build "
                       f"({ARCHITECTURES}), and '{value}' is a trained model package (architecture unet). To start "
                       f"training from its weights (fine-tuning), give --init-from {value} instead (it takes the "
                       f"package's architecture); to train a new unet from random weights, give --model unet.")
    code, err = _error(capsys, [command, "--data", "d.csv", "-o", OUTPUT[command], "--model", "weights.pt"])
    assert code == 2 and err == (f"--model weights.pt: in {command}, --model is the architecture of the network to "
                                 f"build ({ARCHITECTURES}), and 'weights.pt' is a file path. A model package "
                                 f"(.safetensors) to start from goes to --init-from; an interrupted run is continued "
                                 f"with --resume.")
    code, err = _error(capsys, [command, "--data", "d.csv", "-o", OUTPUT[command], "--model", "unte"])  # as before
    assert code == 2 and err == f"Unknown model architecture 'unte'; available: {ARCHITECTURES}."


def test_a_package_as_the_config_file_s_model_names_the_file_s_key(env, capsys, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model: {PKG}\nepochs: 1\n")
    code, err = _error(capsys, ["train", "--data", "d.csv", "-o", "out.safetensors", "--config", str(recipe)])
    assert code == 2
    assert err.startswith(f"model: {PKG} in '{recipe}': in train, model is the architecture of the network to "
                          f"build ({ARCHITECTURES}), and '{PKG}' is a trained model package"), err
    assert err.endswith(f"give --init-from {PKG} instead (it takes the package's architecture); to train a new "
                        f"unet from random weights, set model: unet in the file."), err


def test_a_package_or_weights_file_given_as_the_training_recipe_points_to_init_from(env, capsys):
    """Before: "Training config '.../default.safetensors' is not UTF-8 text (byte 1); save it as UTF-8." for a
    package, and "Training config file 'default' does not exist." for an installed package's name."""
    package = env
    code, err = _error(capsys, ["train", "--data", "d.csv", "-o", "out.safetensors", "--config", str(package)])
    assert code == 2 and err == (f"--config {package}: in train, --config is a training recipe (a YAML or JSON file "
                                 f"of training options), and '{package}' is a model package. To start training from "
                                 f"its weights (fine-tuning), give --init-from {package} instead.")
    code, err = _error(capsys, ["crossval", "--data", "d.csv", "-o", "out.safetensors", "--config", "last.pt"])
    assert code == 2 and err == ("--config last.pt: in crossval, --config is a training recipe (a YAML or JSON file of "
                                 "training options), and 'last.pt' is a weights or checkpoint file. A model package "
                                 "(.safetensors) to start from goes to --init-from; an interrupted run is continued "
                                 "with --resume (from its --log-dir).")
    code, err = _error(capsys, ["train", "--data", "d.csv", "-o", "out.safetensors", "--config", PKG])
    assert code == 2 and err == (f"--config {PKG}: in train, --config is a training recipe (a YAML or JSON file of "
                                 f"training options); there is no file '{PKG}', but an installed model package has "
                                 f"that name. To start training from its weights (fine-tuning), give --init-from "
                                 f"{PKG} instead.")
    code, err = _error(capsys, ["train", "--data", "d.csv", "-o", "out.safetensors", "--config", "missing.yaml"])
    assert code == 2 and err == "Training config file 'missing.yaml' does not exist."  # as before


def test_an_architecture_given_as_the_start_package_points_to_model(env, capsys):
    """Before: "No installed model named 'unet'. Installed: ...", not that an architecture goes to --model."""
    code, err = _error(capsys, ["train", "--data", "d.csv", "-o", "out.safetensors", "--init-from", "unet"])
    assert code == 2 and err == (f"--init-from unet: --init-from is a trained model package to start from (a "
                                 f".safetensors file or an installed model's name), and 'unet' is an architecture. To "
                                 f"train a unet from random weights, give --model unet instead (installed packages of "
                                 f"that architecture, to start from: {PKG}).")
    code, err = _error(capsys, ["train", "--data", "d.csv", "-o", "out.safetensors", "--init-from", "segnet"])
    assert code == 2 and err.endswith("give --model segnet instead (no installed package is a segnet).")


def test_segment_refuses_an_architecture_as_its_model_before_reading_the_ct(env, capsys, tmp_path):
    """Before: the CT was read, then "No installed model named 'unet'. Installed: ..." (here: the missing CT's
    error came first). Now the option's meaning, the way out and the installed packages of that architecture."""
    code, err = _error(capsys, ["segment", "ct.nii.gz", "-o", "seg.nii.gz", "--model", "unet", "--no-progress"])
    expected = (f"--model unet: in segment, --model is a trained model package (an installed model's name or a "
                f".safetensors file), and 'unet' is an architecture, which has no trained weights (train --model "
                f"takes it to train one). Leave --model out for the bundled default model, or give a package "
                f"(installed packages of that architecture: {PKG}; livertumorseg models lists them all).")
    assert code == 2 and err == expected
    code = main(["segment", "ct.nii.gz", "-o", "seg.nii.gz", "--model", "unet", "--progress", "json"])
    out, err = capsys.readouterr()
    assert code == 2 and [json.loads(line) for line in out.splitlines()] == [{"error": expected}]
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("model, said", [
    ("mistyped.safetensors", "Model package 'mistyped.safetensors' does not exist"),
    ("no_such_model", "No installed model named 'no_such_model'"),
    (PKG + " --tta", "trained without mirroring")])  # a package trained without flips: its header says so
def test_segment_refuses_a_model_that_names_no_package_before_reading_the_ct(env, capsys, tmp_path, monkeypatch,
                                                                              model, said):
    """A mistyped --model, or --tta for a package trained without flips, was found only by the model load beside the
    read, so its error came once the whole CT (a DICOM series over a network share: a minute) had been read. Now
    before the read, also for --progress json."""
    import LiverTumorSegLib.io as io_module

    def no_read(*args, **kwargs):
        raise AssertionError("the CT was read")

    monkeypatch.setattr(io_module, "read_volume", no_read)
    ct = tmp_path / "ct.nii.gz"
    ct.write_bytes(b"not read")
    for progress in ("none", "json"):
        code = main(["segment", str(ct), "-o", "seg.nii.gz", "--model"] + model.split() + ["--progress", progress])
        out, err = capsys.readouterr()
        assert code == 2 and said in err and "the CT was read" not in err, err
        if progress == "json":
            assert [set(json.loads(line)) for line in out.splitlines()] == [{"error"}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz"]  # nothing written


def test_segment_keeps_a_package_installed_under_an_architecture_s_name(env, installed, tmp_path):
    """A user package saved as segnet.safetensors is what `segment --model segnet` means: it is not refused."""
    from LiverTumorSegLib.commands.segment import check_model_is_a_package
    from LiverTumorSegLib.errors import InputError

    root, package = installed
    with pytest.raises(InputError, match="'segnet' is an architecture"):
        check_model_is_a_package("segnet")
    shutil.copy(package, root / "user" / "segnet.safetensors")
    try:
        check_model_is_a_package("segnet")
    finally:
        (root / "user" / "segnet.safetensors").unlink()
    check_model_is_a_package(PKG)
    check_model_is_a_package(str(package))


@pytest.mark.parametrize("option, value, said", [
    ("--config", "recipe.yaml", "; a training recipe is for train --config"),
    ("--config", "default.safetensors", ", e.g. --model default.safetensors; a training recipe is for train --config"),
    ("--init-from", PKG, "")])
def test_segment_answers_train_s_options_with_the_one_it_has(env, capsys, option, value, said):
    """Before: "unrecognized arguments: --config recipe.yaml" and nothing more."""
    with pytest.raises(SystemExit) as exit_:
        main(["segment", "ct.nii.gz", "-o", "seg.nii.gz", option, value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.rstrip("\n").endswith(
        f"unrecognized arguments: {option} {value}; segment has no {option}: the trained model package to segment "
        f"with goes to --model NAME|PATH (an installed model's name or a .safetensors file; it carries its own "
        f"preprocessing and architecture){said}"), err


def test_segment_config_before_the_ct_still_names_the_package_typed(env, capsys):
    """`segment --config default.safetensors ct.nii.gz`: argparse takes the package as the CT (the positional) and
    leaves `--config ct.nii.gz` over, so the hint read the CT as the option's value and gave no --model example."""
    with pytest.raises(SystemExit) as exit_:
        main(["segment", "--config", "default.safetensors", "ct.nii.gz", "-o", "seg.nii.gz"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert "e.g. --model default.safetensors; a training recipe is for train --config" in err, err
    assert "--model ct.nii.gz" not in err, err
