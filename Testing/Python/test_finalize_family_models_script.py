"""scripts/finalize_family_models.py: a whole-volume validation line is not stored as a synthetic tumor's Dice.

Train's last line gives whole-volume numbers when it has them ('validation (whole volumes, CT grid) ...'): the
held-out patient's real CT, which has no labelled tumor, so its tumor Dice is 1.0 when no tumor is predicted and
0 otherwise. The script stored that number as ``dice_tumor_synthetic`` and its method text said 'validated on that
patient's slices with synthetic tumors on the network grid' whichever line it read."""
import sys

import pytest

from script_helpers import load_script

FAMILIES = ("segnet", "resnet18_fcn", "alexnet_fcn", "attention_unet")


def _logs(folder, kinds):
    from LiverTumorSegLib.commands.train import validation_summary

    folder.mkdir()
    for arch, kind in kinds.items():
        validation = {"liver_dice": 0.85, "tumor_dice": 0.17}
        if kind == "whole":
            validation["whole_volume"] = {"liver_dice": 0.93, "tumor_dice": 1.0}
        (folder / f"arch_{arch}.log").write_text(f"done: 2 epochs, 800 steps (completed); "
                                                 f"{validation_summary(validation)}; package x\n")
    return folder


def _packages(folder):
    from LiverTumorSegLib.models import build_model
    from LiverTumorSegLib.package import save_model_package
    from LiverTumorSegLib.preprocessing import PreprocessingConfig

    folder.mkdir()
    options = {"segnet": {"width": 0.05}, "resnet18_fcn": {"width": 0.05},
               "alexnet_fcn": {"width": 0.05, "fc_channels": 4}, "attention_unet": {"channels": [2, 4, 8]}}
    config = PreprocessingConfig(channels=[{"kind": "window", "level": 40.0, "width": 400.0}], context_slices=0)
    for arch in FAMILIES:
        save_model_package(folder / f"{arch}.safetensors", build_model(arch, 1, 3, **options[arch]), config)


def _finalize_whole_volume_round(tmp_path, monkeypatch, module_name):
    """The script (loaded as ``module_name``), run on whole-volume logs of every family and tiny packages into
    ``tmp_path/out`` (exit 0 asserted)."""
    script = load_script("scripts/finalize_family_models.py", module_name)
    logs = _logs(tmp_path / "logs", {arch: "whole" for arch in FAMILIES + ("unet",)})
    _packages(tmp_path / "models")
    (tmp_path / "out").mkdir()
    monkeypatch.setattr(sys, "argv", ["finalize_family_models.py", "--models", str(tmp_path / "models"),
                                      "--comparison-logs", str(logs), "-o", str(tmp_path / "out")])
    assert script.main() == 0
    return script


def test_whole_volume_numbers_are_named_as_such(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    from LiverTumorSegLib.package import read_package_metadata

    _finalize_whole_volume_round(tmp_path, monkeypatch, "finalize_family_models_whole")
    validation = read_package_metadata(tmp_path / "out" / "segnet_v2.safetensors")["validation"]
    assert validation["fold0_dice_liver"] == 0.93 and validation["fold0_dice_tumor_whole_volume"] == 1.0
    assert "fold0_dice_tumor_synthetic" not in validation
    assert "whole CT" in validation["method"] and "slices with synthetic tumors" not in validation["method"]
    assert {row["validated_on"] for row in validation["all_architectures"]} == {"whole volumes, CT grid"}
    assert all("dice_tumor_synthetic" not in row for row in validation["all_architectures"])


def test_logs_of_two_kinds_are_refused(tmp_path, monkeypatch, capsys):
    script = load_script("scripts/finalize_family_models.py", "finalize_family_models_mixed")
    kinds = dict({arch: "slices" for arch in FAMILIES}, unet="whole")
    logs = _logs(tmp_path / "logs", kinds)
    monkeypatch.setattr(sys, "argv", ["finalize_family_models.py", "--models", str(tmp_path / "none"),
                                      "--comparison-logs", str(logs)])
    with pytest.raises(SystemExit) as stop:
        script.main()
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "the logs' validations differ" in err and "whole volumes, CT grid: unet" in err


def test_the_steps_and_hardware_are_those_the_logs_and_packages_record(tmp_path, monkeypatch):
    """The method text said '750-800 steps of batch 16 (one H100, 2.6 min each ...)', the description '1,200 steps
    of batch 16 on one H100' and training.hardware the v2 round's H100 run, whatever the logs and packages
    recorded (helper-31's audit). Those come from the logs (steps) and the packages' training record now."""
    pytest.importorskip("torch")
    from LiverTumorSegLib.package import read_package_metadata

    script = _finalize_whole_volume_round(tmp_path, monkeypatch, "finalize_family_models_steps")
    meta = read_package_metadata(tmp_path / "out" / "segnet_v2.safetensors")
    assert "for 800 steps (arch_<architecture>.log)" in meta["validation"]["method"]
    assert "H100" not in meta["validation"]["method"] and "H100" not in meta["description"]
    assert "hardware" not in meta["training"]  # these packages record no training run
    assert script.trained_how({"device": "cuda", "global_step": 1200, "config": {"batch_size": 16,
                                                                                  "patch_size": 192}}) == \
        "cuda, 1200 steps of batch 16, 192x192 patches"
