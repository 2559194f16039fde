"""One training at a time in a training folder (``trainer.training_folder_lock``): a second run into a folder in use is
refused before it reads a checkpoint; a killed run's lock is taken over; the lock file is never counted as the user's.

Found on 27 Nov 2026 (stop 74): two ``train --resume`` runs into one folder (a script started twice) both trained on,
each resuming from and replacing the other's ``checkpoints/last.pt`` and writing every epoch twice into one log."""
import contextlib
from pathlib import Path
from typing import List

import pytest

TRAIN_PREPROCESSING = ('{"channels": [{"kind": "window", "level": 40, "width": 400}], "context_slices": 0, '
                       '"target_spacing_mm": 3.0, "size_multiple": 16}')


def _train_argv(csv_path: Path, out: Path, *more: str) -> List[str]:
    return ["train", "--data", str(csv_path), "--model", "unet", "--model-options",
            '{"channels": [4, 8], "num_res_units": 0}', "--preprocessing", TRAIN_PREPROCESSING,
            "--patch-size", "32", "--batch-size", "2", "--epochs", "1", "--iterations-per-epoch", "2",
            "--num-workers", "0", "--no-tensorboard", "--augmentation", '{"enabled": false}',
            "--synthetic-lesions", "false", "--val-fraction", "0.5", "--no-progress-bar", "-o", str(out), *more]


@pytest.fixture
def train_csv(tmp_path):
    from training_helpers import write_phantom_cases

    data = tmp_path / "data"
    data.mkdir()
    return write_phantom_cases(data, 2, (6, 40, 40))


def test_a_second_training_into_a_folder_in_use_is_refused_before_it_reads_anything(tmp_path, capsys, train_csv):
    """The other run is stood in for by this process holding the lock (a flock is per open file: this process's
    second open is refused as another process's would be). The refused run names the folder and the process, and
    leaves the checkpoint there byte for byte: it is refused before the checkpoint is read (this one is not a
    checkpoint at all, which reading would have reported instead)."""
    import os

    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.training.trainer import TRAIN_LOCK_FILE, training_folder_lock

    out = tmp_path / "m.safetensors"
    log_dir = tmp_path / "m_train"
    (log_dir / "checkpoints").mkdir(parents=True)
    (log_dir / "checkpoints" / "last.pt").write_bytes(b"the other run's checkpoint")
    with training_folder_lock(log_dir, str(out)):
        assert (log_dir / TRAIN_LOCK_FILE).is_file()
        code = main(_train_argv(train_csv, out, "--resume"))
        err = capsys.readouterr().err
        assert code == 2, err
        assert f"Another training (process {os.getpid()}) is running in '{log_dir}'" in err, err
        assert "checkpoint" in err and "-o" in err and str(log_dir / TRAIN_LOCK_FILE) in err
        assert (log_dir / "checkpoints" / "last.pt").read_bytes() == b"the other run's checkpoint"
        assert (log_dir / TRAIN_LOCK_FILE).is_file()  # still the holder's
        assert not out.exists()
    assert not (log_dir / TRAIN_LOCK_FILE).exists()  # released
    assert sorted(p.name for p in log_dir.iterdir()) == ["checkpoints"]


def test_a_killed_runs_lock_is_taken_over_and_is_not_counted_as_the_users_file(tmp_path, capsys, monkeypatch,
                                                                             train_csv):
    """A training folder holding only a killed run's lock is trained into without --overwrite (the lock file is not
    'an item of the user's'); while the run trains the lock holds this process's mark, and it is gone afterwards."""
    import torch
    from process_helpers import ended_process_id

    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.processes import process_mark, process_mark_of
    from LiverTumorSegLib.training import trainer as trainer_module

    torch.manual_seed(0)
    out = tmp_path / "m.safetensors"
    lock = tmp_path / "m_train" / trainer_module.TRAIN_LOCK_FILE
    lock.parent.mkdir()
    lock.write_text(process_mark_of(ended_process_id(), None), encoding="ascii")
    seen = []
    original_fit = trainer_module.Trainer.fit

    def fit_noting_the_lock(self):
        seen.append(lock.read_text(encoding="ascii"))
        return original_fit(self)

    monkeypatch.setattr(trainer_module.Trainer, "fit", fit_noting_the_lock)
    code = main(_train_argv(train_csv, out))
    err = capsys.readouterr().err
    assert code == 0, err
    assert seen == [process_mark()]
    assert out.is_file() and (lock.parent / "checkpoints" / "last.pt").is_file()
    assert not lock.exists()


def test_a_failed_run_leaves_no_folder_and_a_missing_output_folder_is_not_made(tmp_path, capsys, train_csv):
    """The lock makes the training folder before the run's checks: a run refused by them (here, a CSV whose only
    case is missing) leaves no folder, as before; an -o into a folder that does not exist gets its own message and
    no folder is made for the lock."""
    from LiverTumorSegLib.cli import main

    missing = tmp_path / "missing.csv"
    missing.write_text("image,label,patient\nnope.nii.gz,nope_seg.nii.gz,p0\n")
    out = tmp_path / "m.safetensors"
    assert main(_train_argv(missing, out)) == 2
    capsys.readouterr()
    assert not (tmp_path / "m_train").exists() and not out.exists()

    out = tmp_path / "not_there" / "m.safetensors"
    assert main(_train_argv(train_csv, out)) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "not_there" in err, err
    assert not (tmp_path / "not_there").exists()


def test_a_lock_beside_a_failed_runs_cache_still_counts_as_only_a_cache(tmp_path):
    """A killed run leaves its lock beside the slice cache: the folder is still a failed run's leftover, reusable
    without --overwrite."""
    from LiverTumorSegLib.training.trainer import TRAIN_LOCK_FILE, holds_only_slice_cache

    entry = tmp_path / "run" / "cache" / "c53405de673d"
    entry.mkdir(parents=True)
    for name in ("ct0-1.json", "ct0-1.hu.npy", "ct0-1.labels.npy"):
        (entry / name).write_bytes(b"")
    (tmp_path / "run" / TRAIN_LOCK_FILE).write_text("1-0", encoding="ascii")
    assert holds_only_slice_cache(tmp_path / "run")
    (tmp_path / "run" / "log.csv").write_text("epoch\n")
    assert not holds_only_slice_cache(tmp_path / "run")


def test_the_refusal_names_a_run_on_another_computer(tmp_path):
    from process_helpers import ended_process_id

    from LiverTumorSegLib.processes import host_tag, process_mark_of
    from LiverTumorSegLib.training.trainer import _busy_training_folder

    other = "0000" if host_tag() != "0000" else "0001"
    pid = ended_process_id()
    text = str(_busy_training_folder(tmp_path / "run", process_mark_of(pid, 12345, host=other)))
    assert f"Another training (process {pid} on another computer) is running in" in text, text
    assert "Another training is running in" in str(_busy_training_folder(tmp_path / "run", ""))


@contextlib.contextmanager
def _leftover_holding_the_flock(lock: Path, seconds: float):
    """A process standing in for a killed run's DataLoader worker: it holds the flock on ``lock`` (a forked worker
    shares the run's open lock file) for ``seconds`` after it says so, then ends; killed on leaving the block."""
    import subprocess
    import sys

    code = ("import fcntl, os, sys, time\n"
            "h = os.open(sys.argv[1], os.O_RDWR)\n"
            "fcntl.flock(h, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
            "print('held', flush=True)\n"
            "time.sleep(float(sys.argv[2]))\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(lock), str(seconds)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        yield child
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


@pytest.mark.skipif(__import__("os").name != "posix", reason="flock")
def test_a_resume_right_after_a_kill_waits_for_the_killed_runs_workers_instead_of_refusing(tmp_path, monkeypatch):
    """SIGKILL of a training with --num-workers 2, then the same command with --resume at once: refused as 'Another
    training (process N) is running', N the killed run, for the 5 s its orphaned DataLoader workers lived on holding
    the flock they inherited. The lock file names an ended process: the run now waits for the flock (up to
    LEFTOVER_WAIT_S) and takes it; a holder that outlasts that is still refused, naming the process."""
    from process_helpers import ended_process_id

    from LiverTumorSegLib import folder_lock as folder_lock_module
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.processes import host_tag, process_mark, process_mark_of
    from LiverTumorSegLib.training.trainer import TRAIN_LOCK_FILE, training_folder_lock

    log_dir = tmp_path / "m_train"
    log_dir.mkdir()
    lock = log_dir / TRAIN_LOCK_FILE
    killed = ended_process_id()
    lock.write_text(process_mark_of(killed, None, host_tag()), encoding="ascii")
    with _leftover_holding_the_flock(lock, 0.5):
        with training_folder_lock(log_dir, str(tmp_path / "m.safetensors")):
            assert lock.read_text(encoding="ascii") == process_mark()  # taken over once the leftover ended
    assert not lock.exists()

    lock.write_text(process_mark_of(killed, None, host_tag()), encoding="ascii")
    monkeypatch.setattr(folder_lock_module, "LEFTOVER_WAIT_S", 0.3)
    with _leftover_holding_the_flock(lock, 60):
        with pytest.raises(InputError, match=rf"The training that held '.*' \(process {killed}\) has ended, but "):
            with training_folder_lock(log_dir, str(tmp_path / "m.safetensors")):
                pass
    assert lock.read_text(encoding="ascii") == process_mark_of(killed, None, host_tag())  # left as it was


@pytest.mark.skipif(__import__("os").name != "posix", reason="flock")
def test_the_wait_for_a_killed_runs_workers_is_said_and_its_refusal_names_the_process_still_holding_it(
        tmp_path, monkeypatch):
    """The wait for a killed run's leftover DataLoader workers (up to LEFTOVER_WAIT_S, 15 s) was silent: the resume
    printed nothing and then, when they outlasted it, 'Another training (process N) is running', N the killed run.
    Now one line through the training's log says the wait when it starts; the refusal says the named training has
    ended and which process still has the lock open (or 'a leftover child process' where none can be found)."""
    import sys

    from process_helpers import ended_process_id

    from LiverTumorSegLib import folder_lock as folder_lock_module
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.processes import host_tag, process_mark_of
    from LiverTumorSegLib.training.trainer import TRAIN_LOCK_FILE, training_folder_lock

    log_dir = tmp_path / "m_train"
    log_dir.mkdir()
    lock = log_dir / TRAIN_LOCK_FILE
    killed = ended_process_id()
    said: List[str] = []
    lock.write_text(process_mark_of(killed, None, host_tag()), encoding="ascii")
    with _leftover_holding_the_flock(lock, 0.5):
        with training_folder_lock(log_dir, str(tmp_path / "m.safetensors"), say=said.append):
            pass
    assert said == [f"waiting for the ended training's (process {killed}) leftover DataLoader workers to release "
                    f"'{log_dir}' (up to 15 s)"]

    said.clear()
    lock.write_text(process_mark_of(killed, None, host_tag()), encoding="ascii")
    monkeypatch.setattr(folder_lock_module, "LEFTOVER_WAIT_S", 0.3)
    with _leftover_holding_the_flock(lock, 60) as worker:
        with pytest.raises(InputError) as caught:
            with training_folder_lock(log_dir, str(tmp_path / "m.safetensors"), say=said.append):
                pass
    assert said == [f"waiting for the ended training's (process {killed}) leftover DataLoader workers to release "
                    f"'{log_dir}' (up to 0.3 s)"]
    text = str(caught.value)
    assert "\n" not in text and "is running" not in text
    holder = f"process {worker.pid}" if sys.platform.startswith("linux") else "a leftover child process"
    assert text.startswith(f"The training that held '{log_dir}' (process {killed}) has ended, but {holder}"), text
    assert f"still has its lock '{TRAIN_LOCK_FILE}' open after 0.3 s of waiting (a killed training's leftover " \
           f"DataLoader workers keep it after it ended). Wait for it to end, or end it, then run again." in text, text


def test_no_holder_found_reads_as_a_leftover_child_process(tmp_path, monkeypatch):
    """Where no process can be found holding it (no /proc: not Linux), the refusal says 'a leftover child process'."""
    import os

    from LiverTumorSegLib import folder_lock as folder_lock_module

    lock = tmp_path / "x.lock"
    lock.write_text("", encoding="ascii")
    handle = os.open(str(lock), os.O_RDONLY)
    try:
        monkeypatch.setattr(folder_lock_module, "PROC_FOLDER", str(tmp_path / "no_proc"))
        assert folder_lock_module.processes_holding(handle, lock) == []
    finally:
        os.close(handle)
    text = str(folder_lock_module._left_over_error(lock, "", [], "training", "leftover DataLoader workers", 15.0))
    assert text.startswith(f"The training that held '{tmp_path}' has ended, but a leftover child process still has "
                           f"its lock 'x.lock' open after 15 s of waiting"), text
    assert text.endswith(f"(If no such process is going on, remove '{lock}'.)"), text
