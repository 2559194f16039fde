"""scripts/train_and_read_default_cpu.sh (DRY_RUN=1): which steps it runs, resumes and skips after a stop."""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "train_and_read_default_cpu.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _dry_run(tmp_path: Path, out: Path) -> subprocess.CompletedProcess:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: unet\n")
    cases = tmp_path / "cases.csv"
    cases.write_text("image,label,patient\n")
    shared = tmp_path / "shared"
    shared.mkdir(exist_ok=True)
    return subprocess.run(["bash", str(SCRIPT), str(recipe), str(cases), str(shared), str(out)], cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin", "DRY_RUN": "1", "PYTHON": "py"},
                          capture_output=True, text=True, timeout=60)


def _lines(result: subprocess.CompletedProcess, word: str):
    return [line for line in result.stdout.splitlines() if word in line]


def test_a_fresh_run_trains_then_reads_the_sample_and_three_robustness_seeds(tmp_path):
    result = _dry_run(tmp_path, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    (train,) = _lines(result, "LiverTumorSegLib train")
    assert "--resume" not in train and "--device cpu" in train and "--val-fraction 0" in train
    assert "--checkpoint-every-steps 500" in train and "recipe.yaml" in train
    (sample,) = _lines(result, "segment --sample")
    assert "candidate.safetensors" in sample
    robustness = _lines(result, "benchmarks/robustness.py")
    assert [line.split("--seed ")[1].split()[0] for line in robustness] == ["0", "1", "2"]
    assert all("default " in line and "--precision fp32" in line for line in robustness)
    (compare,) = _lines(result, "robustness_compare.py")
    assert all(f"rob_seed{s}.json" in compare for s in range(3))
    lines = result.stdout.splitlines()  # training, then the sample, then the seeds, then the comparison
    assert lines.index(train) < lines.index(sample) < lines.index(robustness[0]) < lines.index(compare)


def test_after_a_stop_it_resumes_training_from_its_checkpoint(tmp_path):
    out = tmp_path / "out"
    (out / "train" / "checkpoints").mkdir(parents=True)
    (out / "train" / "checkpoints" / "last.pt").write_bytes(b"x")
    (train,) = _lines(_dry_run(tmp_path, out), "LiverTumorSegLib train")
    assert "--resume" in train


def test_finished_steps_are_skipped(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "candidate.safetensors").write_bytes(b"x")
    (out / "sample.txt").write_text("liver Dice 0.98\n")
    (out / "rob_seed0.json").write_text("{}")
    result = _dry_run(tmp_path, out)
    assert result.returncode == 0, result.stderr
    assert not _lines(result, "LiverTumorSegLib train") and not _lines(result, "segment --sample")
    assert [line.split("--seed ")[1].split()[0] for line in _lines(result, "robustness.py ")] == ["1", "2"]


def test_a_missing_recipe_is_named(tmp_path):
    result = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "nope.yaml"), "a.csv", str(tmp_path),
                             str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "nope.yaml" in result.stderr
