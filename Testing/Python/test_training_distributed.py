"""Training under ``torchrun`` with two CPU processes (the gloo backend: what README's multi-GPU launch does,
without a GPU). Slow-ish (two interpreters each import torch), so one command covers what the audit found:
crossval re-made the process group in every fold (a rank sometimes hung in the next fold's init), and every
rank wrote crossval.csv (the other ranks' rows are all NaN: whichever renamed its file last won)."""
import csv
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or sys.platform.startswith("win"),
                                reason="needs torch.distributed with gloo (POSIX)")

ROOT = Path(__file__).resolve().parents[2]


def _torchrun() -> list:
    found = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    return [found] if found else [sys.executable, "-m", "torch.distributed.run"]


def test_crossval_under_torchrun_writes_one_table_from_rank_0(tmp_path):
    from training_helpers import write_phantom_cases

    (tmp_path / "data").mkdir()
    data = write_phantom_cases(tmp_path / "data", 4, (6, 40, 40))
    seed = os.environ.get("LIVERTUMORSEG_TEST_SEED", "7")
    command = _torchrun() + ["--standalone", "--nproc_per_node=2", "-m", "LiverTumorSegLib", "crossval",
                             "--data", str(data), "--model", "unet", "--model-options", '{"channels": [4, 8, 16]}',
                             "--patch-size", "32", "--batch-size", "2", "--epochs", "1", "--iterations-per-epoch", "2",
                             "--num-workers", "0", "--seed", seed, "--device", "cpu", "--no-progress", "--folds", "2",
                             "--no-tensorboard", "-o", str(tmp_path / "cv")]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    done = subprocess.run(command, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert output.count("=== fold 1 (folds 0-1) ===") == 1 and output.count("table written to") == 1  # rank 0 alone
    # the trainer's line names the fold as the header does ("fold 2/2" beside "(fold 1 of 2)" named one fold two ways)
    assert "(fold 1 of folds 0-1)" in output and "fold 2/2" not in output
    rows = {row["fold"]: row for row in csv.DictReader((tmp_path / "cv" / "crossval.csv").open())}
    assert set(rows) == {"0", "1", "mean"}
    assert all(math.isfinite(float(rows[fold]["liver_dice"])) for fold in rows)  # rank 1's rows were NaN
    assert sorted(p.name for p in (tmp_path / "cv").glob("fold_*.safetensors")) == ["fold_0.safetensors",
                                                                                    "fold_1.safetensors"]


def test_a_rank_whose_peer_stopped_says_so_instead_of_internal_error(monkeypatch):
    """Under torchrun a data error on rank 0 made rank 1 print 'internal error: RuntimeError: [...gloo...]
    Connection closed by peer ... please report it' beside the real error."""
    from LiverTumorSegLib.cli import peer_process_failure_text

    gloo = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer "
                        "[127.0.0.1]:13714")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert peer_process_failure_text(gloo) is None          # one process: a real internal error
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert "training process 1 of 2 stopped because another one did" in peer_process_failure_text(gloo)
    assert peer_process_failure_text(RuntimeError("shape mismatch")) is None
    assert peer_process_failure_text(ValueError("Connection closed by peer")) is None


def test_a_rank_terminated_by_torchrun_points_at_the_failed_one(monkeypatch):
    """torchrun sends SIGTERM to every process after Ctrl-C or when one fails; each printed only 'terminated
    (SIGTERM)', naming neither cause."""
    from LiverTumorSegLib.cli import terminated_text

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert terminated_text() == "terminated (SIGTERM); unfinished output files were removed"
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    text = terminated_text()
    assert text.startswith("training process 3 of 4 terminated (SIGTERM); torchrun sends it to every process "
                           "when the run is interrupted (Ctrl-C) or one process failed"), text
    monkeypatch.setenv("WORLD_SIZE", "")  # an empty variable is one process, as init_distributed reads it
    assert terminated_text().startswith("terminated (SIGTERM)")


def test_torchrun_environment_is_read_without_importing_torch():
    """The command line words its SIGTERM and peer-failure messages from the torchrun variables; reading them
    must not import torch (a SIGTERM before torch loaded would wait seconds for it)."""
    import subprocess
    import sys

    code = ("import sys; from LiverTumorSegLib.training.launch_env import env_rank, env_world_size; "
            "from LiverTumorSegLib.cli import terminated_text; terminated_text(); "
            "print(env_rank(), env_world_size(), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "WORLD_SIZE": "2", "RANK": "1"}).stdout.split()
    assert out == ["1", "2", "False"], out
