"""Whole-number training options have an upper limit as well as a lower one: ``train --num-workers 1000000``
passed every check and went on to cache the data and fork a million DataLoader workers; ``--batch-size 100000``
and ``--epochs 100000000000`` trained too (only int64 was checked). Each is now refused before any work, in one
line that names the limit and why, while every shipped recipe and bundled package's stored recipe still loads."""
import json
from pathlib import Path

import pytest

from LiverTumorSegLib.cli import main
from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.package import read_package_metadata
from LiverTumorSegLib.training.config import MAX_BATCH_SIZE, MAX_COUNT, MAX_NUM_WORKERS, TrainConfig

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "Testing" / "Data"

LIMITS = {"num_workers": MAX_NUM_WORKERS, "batch_size": MAX_BATCH_SIZE, "epochs": MAX_COUNT,
          "iterations_per_epoch": MAX_COUNT, "warmup": MAX_COUNT, "step_size": MAX_COUNT,
          "plateau_patience": MAX_COUNT, "val_every": MAX_COUNT, "val_max_slices": MAX_COUNT,
          "early_stopping_patience": MAX_COUNT, "checkpoint_every_steps": MAX_COUNT}


def test_the_limits_are_the_documented_numbers():
    assert (MAX_NUM_WORKERS, MAX_BATCH_SIZE, MAX_COUNT) == (256, 4096, 10_000_000)


@pytest.mark.parametrize("command", ["train", "crossval"])
@pytest.mark.parametrize("name", sorted(LIMITS))
def test_a_whole_number_option_beyond_its_limit_is_refused_in_one_line_before_any_work(tmp_path, capsys, command,
                                                                                       name):
    csv = tmp_path / "cases.csv"
    csv.write_text(f"image,label\n{DATA / 'ct3slice_ct.nii.gz'},{DATA / 'ct3slice_liver_seg.nii.gz'}\n")
    out = tmp_path / ("cv" if command == "crossval" else "m.safetensors")
    flag = "--" + name.replace("_", "-")
    code = main([command, "--data", str(csv), "-o", str(out), "--device", "cpu", "--no-progress",
                 flag, str(LIMITS[name] + 1)])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: Option {flag} must be at most {LIMITS[name]} (got {LIMITS[name] + 1}): "), err
    assert not out.exists() and not (tmp_path / "m_train").exists() and not (tmp_path / "cv").exists()


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_a_recipe_key_beyond_its_limit_is_refused_and_the_limit_itself_is_taken(tmp_path, name):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"{name}: {LIMITS[name] + 1}\n")
    with pytest.raises(InputError, match=rf"^Option {name} must be at most {LIMITS[name]} \(got "):
        TrainConfig.from_file(recipe)
    recipe.write_text(f"{name}: {LIMITS[name]}\n")
    assert getattr(TrainConfig.from_file(recipe), name) == LIMITS[name]


def test_the_num_workers_refusal_says_why():
    with pytest.raises(InputError) as caught:
        TrainConfig.from_dict({"num_workers": 1_000_000})
    assert str(caught.value) == ("Option num_workers must be at most 256 (got 1000000): each worker is a process of "
                                 "its own; 2-8 feed a GPU, 0 = in the main process.")


@pytest.mark.parametrize("recipe", sorted((ROOT / "scripts").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_still_loads(recipe):
    TrainConfig.from_file(recipe)


@pytest.mark.parametrize("package", sorted((ROOT / "Resources" / "Models").glob("*.safetensors")),
                         ids=lambda p: p.name)
def test_every_bundled_packages_stored_recipe_still_loads(package):
    config = (read_package_metadata(package).get("training") or {}).get("config")
    assert isinstance(config, dict), package
    TrainConfig.from_json(json.dumps(config))
