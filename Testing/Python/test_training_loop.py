"""End-to-end training on tiny phantoms (CPU): loss falls, package reloads identically, exact resume after a
crash or Ctrl-C, time limit, cross-validation table, and a 2-process DDP (gloo) run with identical weights."""
import csv
import json
import math
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.io import read_volume, write_label_map, write_volume
from LiverTumorSegLib.phantom import make_phantom
from LiverTumorSegLib.training.checkpoint import load_checkpoint
from LiverTumorSegLib.training.config import TrainConfig
from LiverTumorSegLib.training.trainer import Trainer, train
from training_helpers import write_phantom_cases
from seeding import test_seed

PREPROCESSING = {"channels": [{"kind": "window", "level": 40, "width": 400}], "context_slices": 1,
                 "target_spacing_mm": 3.0, "size_multiple": 16, "crop_to_body": True}


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory):
    return write_phantom_cases(tmp_path_factory.mktemp("phantoms"), 3, (8, 48, 48))


def tiny_config(data_csv, out_dir, **overrides):
    values = dict(data=str(data_csv), model="unet", model_options={"channels": [4, 8, 16]},
                  preprocessing=PREPROCESSING, epochs=2, iterations_per_epoch=3, batch_size=4, patch_size=32,
                  num_workers=0, lr=3e-3, val_fraction=0.34, output=str(out_dir / "model.safetensors"),
                  cache_dir=str(out_dir.parent / "cache"), progress_bar=False, tensorboard=False,
                  seed=test_seed(5))
    values.update(overrides)
    return TrainConfig.from_dict(values)


def test_training_gives_the_caller_back_its_random_state(data_csv, tmp_path):
    """train() seeds torch with the config's seed (default 1234) and left it there: a notebook that seeded torch,
    trained and then drew its own numbers got the training's stream instead of its own. Also after a failed run."""
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    (tmp_path / "run").mkdir()
    train(tiny_config(data_csv, tmp_path / "run", epochs=1, iterations_per_epoch=1, val_fraction=0.0),
          log=lambda s: None)
    assert torch.equal(torch.rand(3), expected)
    torch.manual_seed(11)
    (tmp_path / "run2").mkdir()
    with pytest.raises(RuntimeError, match="stop here"):
        train(tiny_config(data_csv, tmp_path / "run2", epochs=1, iterations_per_epoch=2, val_fraction=0.0),
              callbacks=[RaiseAt(1, RuntimeError("stop here"))], log=lambda s: None)
    assert torch.equal(torch.rand(3), expected)


class RaiseAt:
    """Callback raising ``exc`` after global step ``step`` (simulates a kill / Ctrl-C)."""

    def __init__(self, step, exc):
        self.step, self.exc = step, exc

    def on_step_end(self, info):
        if info["global_step"] == self.step:
            raise self.exc


def _weights(path):
    return load_checkpoint(path)["model"]


def _same_value(a, b, where):
    """Exactly equal, recursing into dicts/lists; tensors by torch.equal with the same dtype and shape."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        if not torch.equal(a, b):
            diff = float((a.double() - b.double()).abs().max()) if a.is_floating_point() else None
            raise AssertionError(f"{where}: not bit for bit (max abs difference {diff})")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and sorted(map(str, a)) == sorted(map(str, b)), where
        for key in a:
            _same_value(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same_value(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, (where, a, b)


TIMES = ("epoch_time_s", "elapsed_s", "epoch_elapsed_s")  # wall-clock seconds: the only things a resume may change


def run_record(log_dir):
    """What a run left in its log folder ``log_dir`` (``model_train``, a fold's ``fold_N_train``): its last.pt and
    the rows of its log.csv (read now: a test may delete them)."""
    from LiverTumorSegLib.training.logs import read_log
    return load_checkpoint(Path(log_dir) / "checkpoints" / "last.pt"), read_log(Path(log_dir) / "log.csv")


def assert_resumed_as_uninterrupted(reference, resumed_log_dir, label=""):
    """The resumed run's last.pt and log.csv are the uninterrupted run's (``reference``: its :func:`run_record`),
    bit for bit: every weight, the optimizer's moments and step counts, the scheduler, the random state, the step
    counters, the history and early-stopping/best bookkeeping, and every number of log.csv except the wall-clock
    times. Both runs are made in this process with the same torch thread count, so nothing may differ (the
    README promises a bit-for-bit resume on the CPU with the same thread count); a tolerance would hide a
    replayed or skipped step that moved the weights by less than it."""
    (ref, ref_rows), (got, got_rows) = reference, run_record(resumed_log_dir)
    for key in ("epoch", "step_in_epoch", "global_step", "model", "optimizer", "scheduler", "scaler", "rng"):
        _same_value(ref.get(key), got.get(key), f"{label} last.pt {key}")
    ref_state, got_state = json.loads(ref["state"]), json.loads(got["state"])
    for key in ("resumes", *TIMES):
        ref_state.pop(key, None)
        got_state.pop(key, None)
    for state in (ref_state, got_state):
        for row in state["history"]:
            row.pop("epoch_time_s", None)
    _same_value(ref_state, got_state, f"{label} last.pt state")
    assert ref_rows and len(ref_rows) == len(got_rows), label
    for ref_row, got_row in zip(ref_rows, got_rows):
        assert ({k: v for k, v in ref_row.items() if k not in TIMES}
                == {k: v for k, v in got_row.items() if k not in TIMES}), (label, ref_row, got_row)


def test_loss_falls_and_package_reloads_to_identical_output(data_csv, tmp_path):
    from LiverTumorSegLib.models import build_model
    from LiverTumorSegLib.package import load_model_package, read_package_metadata

    torch.set_num_threads(1)
    cfg = tiny_config(data_csv, tmp_path / "run", epochs=4, iterations_per_epoch=5, augmentation={"enabled": False},
                      tensorboard=True)
    (tmp_path / "run").mkdir()
    result = train(cfg, command="livertumorseg train test", log=lambda s: None)
    losses = [row["train_loss"] for row in result.history]
    # last/first epoch loss was 0.71-0.87 over config seeds 0-15 (20 sampled steps); 0.85 failed 3 of them
    assert len(losses) == 4 and losses[-1] < 0.93 * losses[0]
    assert result.global_step == 20 and result.stop_reason == "completed"
    assert result.train_cases and result.val_cases and not set(result.train_cases) & set(result.val_cases)
    log_dir = tmp_path / "run" / "model_train"
    with open(log_dir / "log.csv") as handle:
        assert [int(r["epoch"]) for r in csv.DictReader(handle)] == [1, 2, 3, 4]
    assert (log_dir / "curves.png").stat().st_size > 1000
    meta = read_package_metadata(result.package_path)
    assert meta["training"]["cases"] == result.train_cases and meta["training"]["command"] == "livertumorseg train test"
    assert meta["training"]["spacing_zyx_min_mm"] == [5.0, 3.0, 3.0]
    # the held-out patients are recorded (the log named them, the package did not), apart from the training ones
    assert meta["training"]["validation_patients"] and not (set(meta["training"]["validation_patients"])
                                                            & set(meta["training"]["patients"]))
    assert "validation_spacing_zyx_min_mm" in meta["training"]
    # the recorded recipe reruns as recorded: its init_from was '', refused as '--init-from ... is empty'
    from LiverTumorSegLib.training.config import TrainConfig
    from LiverTumorSegLib.training.init_from import check_start_given
    recipe = meta["training"]["config"]
    assert recipe["init_from"] is None
    check_start_given(recipe["init_from"], "init_from in the recorded recipe")
    assert TrainConfig.from_dict(recipe).init_from == ""
    # each training CT's body size, for segment's body-size scaling (a phantom body, cut by no image side)
    bodies = meta["training_body_diameter_mm"]
    assert sorted(bodies) == sorted(result.train_cases) and all(40.0 < d < 400.0 for d in bodies.values())
    assert 0.0 <= meta["validation"]["liver_dice"] <= 1.0
    env = meta["training"]["environment"]       # enough to reproduce the run: software, resolved settings, files
    assert env["torch"] == torch.__version__ and env["numpy"] == np.__version__ and "git_commit" in env
    assert meta["training"]["augmentation_resolved"] is None                      # augmentation disabled here
    lesions = meta["training"]["lesions_resolved"]                                # the settings used, written out
    assert (lesions is None) == (not meta["training"]["synthetic_lesions"])
    if lesions is not None:
        assert list(lesions["count_range"]) == [1, 6]
    files = meta["training"]["data_files"]
    assert [f["case"] for f in files] == result.train_cases + result.val_cases
    assert all(Path(f["image"]).is_absolute() and f["image_bytes"] > 0 for f in files)
    from LiverTumorSegLib.training.datasets import Case, load_case, voxel_digest
    first = load_case(Case(files[0]["case"], files[0]["case"], files[0]["image"], files[0]["label"]))[0]
    assert files[0]["voxel_sha256"] == voxel_digest(first.array)  # what robustness.py knows a training CT by
    assert len({f["voxel_sha256"] for f in files}) == len(files)
    whole = meta["validation"]["whole_volume"]  # whole volumes through one Segmenter (not silently skipped)
    assert "inference.Segmenter with segment's default post-processing" in whole["method"]
    assert len(whole["cases"]) == len(result.val_cases)
    assert whole["precision"] == "fp32"  # as trained on the CPU; not bf16 on CPUs that have it
    package = load_model_package(result.package_path)
    arch = package.metadata["architecture"]
    reference = build_model(arch["name"], arch["in_channels"], arch["num_classes"], **arch["options"])
    reference.load_state_dict(_weights(log_dir / "checkpoints" / "last.pt"))  # the last epoch's: the default
    reference.eval()
    x = torch.randn(2, arch["in_channels"], 32, 32)
    with torch.no_grad():
        assert torch.equal(package.model(x), reference(x))


def _full_and_cut_dirs(tmp_path):
    """Folders of an uninterrupted run and of the same run interrupted and resumed, to compare their weights."""
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    full_dir.mkdir()
    cut_dir.mkdir()
    return full_dir, cut_dir


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_resume_after_crash_or_ctrl_c_matches_uninterrupted_run(data_csv, tmp_path, dropout, monkeypatch):
    """With dropout the resumed run once drew other masks: making the data loader's iterator took a number from
    torch's global generator after the checkpoint's state was restored (the loader now has its own)."""
    torch.set_num_threads(1)
    quiet = dict(log=lambda s: None)
    dirs = {k: tmp_path / k for k in ("full", "crash", "ctrlc")}
    for d in dirs.values():
        d.mkdir()

    def config(out_dir):
        return tiny_config(data_csv, out_dir, model_options={"channels": [4, 8, 16], "dropout": dropout})

    full = train(config(dirs["full"]), **quiet)
    assert full.global_step == 6
    reference = run_record(dirs["full"] / "model_train")

    # crash (like SIGKILL) in epoch 2: nothing saved since the end of epoch 1
    crash_cfg = config(dirs["crash"])
    with pytest.raises(RuntimeError, match="killed"):
        train(crash_cfg, callbacks=[RaiseAt(5, RuntimeError("killed"))], **quiet)
    last = load_checkpoint(dirs["crash"] / "model_train" / "checkpoints" / "last.pt")
    assert (last["epoch"], last["step_in_epoch"], last["global_step"]) == (1, 0, 3)
    assert last["data_path"] == str(Path(data_csv).resolve())  # what a resume from another folder compares
    from LiverTumorSegLib.training import trainer as trainer_module
    reads = []

    def counted(path, *args, **kwargs):
        reads.append(Path(path).name)
        return load_checkpoint(path, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "load_checkpoint", counted)
    resumed = train(crash_cfg.updated({"resume": True}), **quiet)
    assert resumed.global_step == 6 and [r["epoch"] for r in resumed.history] == [1, 2]
    assert reads.count("last.pt") == 1  # checked and continued from one read (it was read twice)
    monkeypatch.undo()

    # Ctrl-C mid epoch 1: checkpoint at the exact step
    ctrlc_cfg = config(dirs["ctrlc"])
    with pytest.raises(KeyboardInterrupt):
        train(ctrlc_cfg, callbacks=[RaiseAt(2, KeyboardInterrupt())], **quiet)
    last = load_checkpoint(dirs["ctrlc"] / "model_train" / "checkpoints" / "last.pt")
    assert (last["epoch"], last["step_in_epoch"], last["global_step"]) == (0, 2, 2)
    time_before_interrupt = json.loads(last["state"])["epoch_elapsed_s"]
    assert time_before_interrupt > 0
    from LiverTumorSegLib.errors import OutputExistsError
    with pytest.raises(OutputExistsError, match="--resume"):
        train(ctrlc_cfg, **quiet)
    # resuming under other experiment settings (another fold's split, another lr) is refused before any work:
    # fold 2 continued from fold 0's steps would have trained on its own validation patients
    from LiverTumorSegLib.errors import InputError
    seed = ctrlc_cfg.seed
    with pytest.raises(InputError, match=rf"other settings: lr 0.003 \(now 0.05\); seed {seed} \(now {seed + 1}\)"):
        train(ctrlc_cfg.updated({"resume": True, "lr": 0.05, "seed": seed + 1}), **quiet)
    assert load_checkpoint(dirs["ctrlc"] / "model_train" / "checkpoints" / "last.pt")["global_step"] == 2
    train(ctrlc_cfg.updated({"resume": True, "num_workers": 0, "tensorboard": False}), **quiet)  # run settings
    # --resume with no checkpoint would train from scratch: it must not replace an existing package
    shutil.rmtree(dirs["full"] / "model_train")
    package = (dirs["full"] / "model.safetensors").read_bytes()
    with pytest.raises(OutputExistsError, match="found no checkpoint"):
        train(config(dirs["full"]).updated({"resume": True}), **quiet)
    assert (dirs["full"] / "model.safetensors").read_bytes() == package

    from LiverTumorSegLib.training.logs import read_log
    times = [float(r["epoch_time_s"]) for r in read_log(dirs["ctrlc"] / "model_train" / "log.csv")]
    # the epoch interrupted at step 2 of 3 counts its time before the interrupt too (it counted only the rest)
    assert len(times) == 2 and times[0] > time_before_interrupt
    for name in ("crash", "ctrlc"):
        assert_resumed_as_uninterrupted(reference, dirs[name] / "model_train", name)


def test_ctrl_c_arriving_inside_the_weight_update_resumes_as_if_uninterrupted(data_csv, tmp_path, monkeypatch):
    """A real SIGINT right after the optimizer changed the weights (AdamW updates them one by one in Python on the
    CPU, and a signal lands between any two statements): the checkpoint said 'step 1 done' with step 2's weights,
    and --resume replayed step 2 on top of them. The signal is now held until the step is recorded."""
    import signal
    from LiverTumorSegLib.training import trainer as trainer_module

    torch.set_num_threads(1)
    quiet = dict(log=lambda s: None)
    full_dir, cut_dir = _full_and_cut_dirs(tmp_path)
    train(tiny_config(data_csv, full_dir), **quiet)
    reference = run_record(full_dir / "model_train")
    build_optimizer = trainer_module.build_optimizer
    steps = []

    def optimizer_that_is_interrupted_after_its_second_step(*args, **kwargs):
        optimizer = build_optimizer(*args, **kwargs)

        def after_step(opt, step_args, step_kwargs):
            steps.append(1)
            if len(steps) == 2:  # the weights have changed; the step counter has not moved yet
                os.kill(os.getpid(), signal.SIGINT)

        optimizer.register_step_post_hook(after_step)
        return optimizer

    monkeypatch.setattr(trainer_module, "build_optimizer", optimizer_that_is_interrupted_after_its_second_step)
    config = tiny_config(data_csv, cut_dir)
    with pytest.raises(KeyboardInterrupt):
        train(config, **quiet)
    monkeypatch.undo()
    last = load_checkpoint(cut_dir / "model_train" / "checkpoints" / "last.pt")
    assert (last["epoch"], last["step_in_epoch"], last["global_step"]) == (0, 2, 2)  # step 2 recorded with its weights
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is back
    resumed = train(config.updated({"resume": True}), **quiet)
    assert resumed.global_step == 6
    assert_resumed_as_uninterrupted(reference, cut_dir / "model_train")


def test_ctrl_c_inside_a_forward_pass_with_dropout_resumes_as_if_uninterrupted(data_csv, tmp_path, monkeypatch):
    """Ctrl-C inside step 3's forward pass (after its dropout masks were drawn): the checkpoint recorded step 2 but
    the random state after step 3's draws, so the resumed run replayed step 3 with other masks (weights 1.6e-3
    off; every preempted AlexNet-FCN run, whose dropout is 0.5 by default: the training audit). The interrupt
    checkpoint now records the random state of the step it records."""
    import LiverTumorSegLib.models as models_module

    torch.set_num_threads(1)
    quiet = dict(log=lambda s: None)
    full_dir, cut_dir = _full_and_cut_dirs(tmp_path)

    def config(out_dir):
        return tiny_config(data_csv, out_dir, model_options={"channels": [4, 8, 16], "dropout": 0.2})

    train(config(full_dir), **quiet)
    reference = run_record(full_dir / "model_train")
    real_split = models_module.split_deep_supervision
    forwards = []

    def split_then_interrupt(out):  # right after the network's forward: its dropout masks are drawn
        forwards.append(1)
        if len(forwards) == 3:
            raise KeyboardInterrupt
        return real_split(out)

    monkeypatch.setattr(models_module, "split_deep_supervision", split_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(config(cut_dir), **quiet)
    monkeypatch.undo()
    last = load_checkpoint(cut_dir / "model_train" / "checkpoints" / "last.pt")
    assert (last["epoch"], last["step_in_epoch"], last["global_step"]) == (0, 2, 2)
    train(config(cut_dir).updated({"resume": True}), **quiet)
    assert_resumed_as_uninterrupted(reference, cut_dir / "model_train")  # other masks: weights up to 1.6e-3 off


def test_resume_under_the_plateau_schedule_continues_its_patience_and_best(data_csv, tmp_path):
    """The resume tests all ran the default cosine schedule, whose state is a step count: a resume that restored
    the learning rate (in the optimizer's state) but started ReduceLROnPlateau afresh (best loss inf, no bad epochs
    counted) passed them all, and would halve the rate later than the uninterrupted run, or not at all. A crash in
    epoch 3 of a plateau run, resumed, must end bit for bit as the run that was not stopped, scheduler included."""
    torch.set_num_threads(1)
    quiet = dict(log=lambda s: None)
    full_dir, cut_dir = _full_and_cut_dirs(tmp_path)

    def config(out_dir):
        return tiny_config(data_csv, out_dir, epochs=4, iterations_per_epoch=2, schedule="plateau",
                           plateau_patience=1)

    train(config(full_dir), **quiet)
    reference = run_record(full_dir / "model_train")
    assert reference[0]["scheduler"]["last_epoch"] == 4  # stepped after each of the 4 validations
    with pytest.raises(RuntimeError, match="killed"):
        train(config(cut_dir), callbacks=[RaiseAt(5, RuntimeError("killed"))], **quiet)
    last = load_checkpoint(cut_dir / "model_train" / "checkpoints" / "last.pt")
    assert (last["epoch"], last["step_in_epoch"], last["scheduler"]["last_epoch"]) == (2, 0, 2)
    train(config(cut_dir).updated({"resume": True}), **quiet)
    assert_resumed_as_uninterrupted(reference, cut_dir / "model_train")


def test_ctrl_c_while_the_best_checkpoint_is_written_resumes_with_the_same_best_and_early_stopping(data_csv, tmp_path,
                                                                                                  monkeypatch):
    """A real SIGINT while epoch 1's best.pt was written: the checkpoint redid epoch 1's validation with the new
    best already recorded, so on resume the epoch did not count as improved (early stopping one more, best.pt on
    the epoch before: the training audit). The epoch's bookkeeping is now whole, with the signal held."""
    import signal

    from LiverTumorSegLib.training import trainer as trainer_module

    torch.set_num_threads(1)
    quiet = dict(log=lambda s: None)
    full_dir, cut_dir = _full_and_cut_dirs(tmp_path)

    def config(out_dir):
        return tiny_config(data_csv, out_dir, epochs=3, early_stopping_patience=5, use_best_checkpoint=True)

    def final(out_dir):
        last = load_checkpoint(out_dir / "model_train" / "checkpoints" / "last.pt")
        state = json.loads(last["state"])
        best = load_checkpoint(out_dir / "model_train" / "checkpoints" / "best.pt")
        return state["best"], state["early"], int(best["epoch"])

    train(config(full_dir), **quiet)
    real_save = trainer_module.save_checkpoint
    writes = []

    def save_with_a_signal(path, payload):
        if Path(path).name == "best.pt" and not writes:
            writes.append(path)
            os.kill(os.getpid(), signal.SIGINT)  # lands while the best checkpoint is written
        return real_save(path, payload)

    monkeypatch.setattr(trainer_module, "save_checkpoint", save_with_a_signal)
    with pytest.raises(KeyboardInterrupt):
        train(config(cut_dir), **quiet)
    monkeypatch.undo()
    last = load_checkpoint(cut_dir / "model_train" / "checkpoints" / "last.pt")
    assert (last["epoch"], last["step_in_epoch"]) == (1, 0)  # epoch 1 recorded whole, with its row
    train(config(cut_dir).updated({"resume": True}), **quiet)
    assert final(cut_dir) == final(full_dir)
    from LiverTumorSegLib.training.logs import read_log
    assert [int(r["epoch"]) for r in read_log(cut_dir / "model_train" / "log.csv")] == [1, 2, 3]


def test_a_warmup_as_long_as_the_run_is_said(data_csv, tmp_path):
    """--warmup 100 on a 6-step run: learning rates of 0.01-0.06 x lr throughout and 'cosine' in the package,
    without a word (the training audit). Said, not refused: a short trial of a recipe keeps the recipe's warmup."""
    said = []
    train(tiny_config(data_csv, tmp_path, warmup=100), log=said.append)
    assert sum("warning: warmup (100 steps) is as long as the whole run or longer (2 x 3 = 6 steps)" in line
               for line in said) == 1
    # what the rate does, not the project's history ('(the training audit: 0.01-0.04 x lr throughout)')
    assert any("never starts (the rate rises linearly through the whole run, a fraction of lr); give --warmup 0"
               in line and "audit" not in line for line in said)
    said.clear()
    train(tiny_config(data_csv, tmp_path, warmup=2, overwrite=True), log=said.append)
    assert not any("warning: warmup" in line for line in said)


def test_bf16_autocast_on_a_cpu_without_native_bf16_is_said(data_csv, tmp_path, monkeypatch):
    """--amp bf16 on an AVX2-only CPU ran emulated: the v10 fine-tune recipe had not finished one 100-step epoch in
    13 minutes where a CPU with AVX512-BF16 took 99-108 s, and nothing said why (30 Nov 2026)."""
    from LiverTumorSegLib.inference import device as device_module

    said = []
    monkeypatch.setattr(device_module, "_proc_cpuinfo", lambda: "flags\t\t: fpu sse2 avx avx2 fma\n")
    train(tiny_config(data_csv, tmp_path, amp="bf16", epochs=1, iterations_per_epoch=1), log=said.append)
    assert sum("warning: --amp bf16 on this CPU, which reports no native bf16" in line and "--amp off" in line
               for line in said) == 1
    said.clear()  # the same CPU, fp32: nothing to say
    train(tiny_config(data_csv, tmp_path, amp="off", epochs=1, iterations_per_epoch=1, overwrite=True),
          log=said.append)
    assert not any("native bf16" in line for line in said)
    said.clear()  # a CPU with AVX512-BF16: bf16 is its fast path
    monkeypatch.setattr(device_module, "_proc_cpuinfo", lambda: "flags\t\t: avx2 avx512f avx512_bf16\n")
    train(tiny_config(data_csv, tmp_path, amp="bf16", epochs=1, iterations_per_epoch=1, overwrite=True),
          log=said.append)
    assert not any("native bf16" in line for line in said)


def test_the_emulated_autocast_warning_reads_the_device_and_dtype():
    from LiverTumorSegLib.training.trainer import emulated_cpu_autocast_warning

    avx2 = "processor\t: 0\nflags\t\t: fpu avx avx2 fma\n"
    cpu = torch.device("cpu")
    assert "emulated" in emulated_cpu_autocast_warning(cpu, torch.bfloat16, avx2)
    assert emulated_cpu_autocast_warning(cpu, torch.bfloat16, avx2 + "flags\t\t: amx_bf16\n") is None
    assert emulated_cpu_autocast_warning(cpu, None, avx2) is None  # --amp off / auto on the CPU
    assert emulated_cpu_autocast_warning(cpu, torch.float16, avx2) is None  # not measured: not claimed
    assert emulated_cpu_autocast_warning(torch.device("cuda"), torch.bfloat16, avx2) is None


def test_tensorboard_keeps_one_runs_events(data_csv, tmp_path, monkeypatch):
    """An overwritten run's TensorBoard events stayed beside the new run's (loss/train twice at each step), and a
    resumed run logged its first epoch's steps again (the training audit): a fresh start clears the folder, and
    a resume has TensorBoard hide the events from its first step on (purge_step)."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from LiverTumorSegLib.training import trainer as trainer_module

    quiet = dict(log=lambda s: None)

    def train_loss_steps():
        events = EventAccumulator(str(tmp_path / "model_train" / "tensorboard"))
        events.Reload()
        return [e.step for e in events.Scalars("loss/train")]

    train(tiny_config(data_csv, tmp_path, tensorboard=True), **quiet)
    assert train_loss_steps() == [3, 6]
    train(tiny_config(data_csv, tmp_path, tensorboard=True, overwrite=True), **quiet)
    assert train_loss_steps() == [3, 6]                                      # the new run's only
    purges = []
    real = trainer_module.TensorBoardLog
    monkeypatch.setattr(trainer_module, "TensorBoardLog",
                        lambda *a, **k: purges.append(k.get("purge_step")) or real(*a, **k))
    config = tiny_config(data_csv, tmp_path, tensorboard=True, overwrite=True)
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[RaiseAt(4, KeyboardInterrupt())], **quiet)
    train(config.updated({"resume": True, "overwrite": False}), **quiet)
    assert purges == [None, 4]                                               # fresh, then resumed at step 4


def test_a_fresh_start_removes_the_earlier_runs_curves(data_csv, tmp_path):
    """curves.png is drawn only when a run ends; a fresh start (--overwrite) removed the earlier run's log.csv and
    TensorBoard events but kept its curves.png, so a new run stopped before its end left the earlier run's curves
    beside its own checkpoint, looking like this run's."""
    quiet = dict(log=lambda s: None)
    train(tiny_config(data_csv, tmp_path), **quiet)
    curves = tmp_path / "model_train" / "curves.png"
    assert curves.is_file()
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(data_csv, tmp_path, overwrite=True), callbacks=[RaiseAt(2, KeyboardInterrupt())], **quiet)
    assert not curves.exists()


def test_a_fresh_start_removes_only_the_earlier_runs_tensorboard_events(data_csv, tmp_path):
    """A fresh start (--overwrite) removed <log_dir>/tensorboard whole: with --log-dir a folder where the user keeps
    other runs' TensorBoard logs (tensorboard/other_run/), train, told that the folder holds the user's files and
    that --overwrite writes into it, deleted them. Only the event files TensorBoard writes there now go."""
    quiet = dict(log=lambda s: None)
    log_dir = tmp_path / "model_train"
    other_run = log_dir / "tensorboard" / "other_run" / "events.out.tfevents.1.host.1.0"
    other_run.parent.mkdir(parents=True)
    other_run.write_bytes(b"another experiment's events")
    earlier = log_dir / "tensorboard" / "events.out.tfevents.2.host.2.0"
    earlier.write_bytes(b"the earlier run's events")
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(data_csv, tmp_path, overwrite=True), callbacks=[RaiseAt(1, KeyboardInterrupt())], **quiet)
    assert other_run.read_bytes() == b"another experiment's events"
    assert not earlier.exists()


RUN_SHAPE_ZYX = (8, 48, 48)
"""The voxels of :func:`_interrupted_run`'s phantom CTs."""


def _interrupted_run(tmp_path, image_suffix=".nii.gz"):
    """Three phantom cases in ``tmp_path/data`` (CTs ``ct<i><image_suffix>``) and a tiny run on them in
    ``tmp_path/run``, stopped by Ctrl-C after step 2 of 6; returns (its config, the data folder)."""
    (tmp_path / "data").mkdir()
    data = write_phantom_cases(tmp_path / "data", 3, RUN_SHAPE_ZYX, image_suffix)
    out = tmp_path / "run"
    out.mkdir()
    config = tiny_config(data, out)
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[RaiseAt(2, KeyboardInterrupt())], log=lambda s: None)
    return config, tmp_path / "data"


def _another_ct():
    """A phantom CT of the shape :func:`_interrupted_run`'s CTs have, unlike each of them (seed 7)."""
    return make_phantom(shape_zyx=RUN_SHAPE_ZYX, spacing_xyz=(3.0, 3.0, 5.0), seed=7).ct


def test_resume_refuses_a_case_whose_label_was_replaced_while_the_run_was_stopped(tmp_path):
    """A label replaced while the run was stopped: --resume went on training on the new one (the slice
    cache only re-cached the case) and the package listed only the new file. Now refused, naming the case; the
    same files copied elsewhere (other times, other inodes) still resume."""
    config, data = _interrupted_run(tmp_path)
    label = data / "lab1.nii.gz"
    original = label.read_bytes()
    corrected = read_volume(label)
    corrected.array[corrected.array == 1] = 0  # a reader's new label: this case's liver taken out
    label.unlink()
    write_label_map(label, corrected.array.astype(np.uint8), corrected.geometry)
    with pytest.raises(InputError, match=r"other files for case\(s\) ct1 \(label\): the contents"):
        train(config.updated({"resume": True}), log=lambda s: None)
    label.unlink()
    label.write_bytes(original)  # the same contents again, with a new modification time and inode
    resumed = train(config.updated({"resume": True}), log=lambda s: None)
    assert resumed.global_step == 6


def test_resume_refuses_a_case_whose_ct_was_replaced_by_another_of_the_same_size(tmp_path):
    """An uncompressed CT replaced by another of the same shape has the same size, and --resume compared images
    by size only: it went on training on the new CT without a word. Now refused, naming the case and the image;
    the same bytes put back (a new modification time and inode) resume."""
    config, data = _interrupted_run(tmp_path, image_suffix=".nii")
    image = data / "ct1.nii"
    original = image.read_bytes()
    image.unlink()
    write_volume(image, _another_ct())
    assert image.stat().st_size == len(original) and image.read_bytes() != original
    with pytest.raises(InputError, match=r"other files for case\(s\) ct1 \(image\): the contents"):
        Trainer(config.updated({"resume": True}), log=lambda s: None).setup()
    image.unlink()
    image.write_bytes(original)
    Trainer(config.updated({"resume": True}), log=lambda s: None).setup()  # the checkpoint's data: accepted


def test_a_checkpoint_recording_image_sizes_resumes_unless_an_image_size_changed(tmp_path):
    """Checkpoints written before images were hashed hold [label SHA-256, image bytes] per case. They are compared
    on what they hold: the unchanged data set resumes (it is not refused as other files), and a CT of another size
    is refused, naming it."""
    from LiverTumorSegLib.training.checkpoint import save_checkpoint

    config, data = _interrupted_run(tmp_path)
    last = tmp_path / "run" / "model_train" / "checkpoints" / "last.pt"
    payload = load_checkpoint(last)
    payload["data_fingerprint"] = {case: [entry["label_sha256"], entry["image_bytes"]]  # as older versions wrote
                                   for case, entry in payload["data_fingerprint"].items()}
    save_checkpoint(last, payload)
    Trainer(config.updated({"resume": True}), log=lambda s: None).setup()
    image = data / "ct2.nii.gz"
    size = image.stat().st_size
    write_volume(image, _another_ct(), overwrite=True)
    assert image.stat().st_size != size
    with pytest.raises(InputError, match=r"other files for case\(s\) ct2 \(image\): the contents"):
        Trainer(config.updated({"resume": True}), log=lambda s: None).setup()


def test_a_fresh_run_keeps_the_file_hashes_so_its_resume_reads_no_file_again(tmp_path, monkeypatch):
    """A fresh run hashed its files before its cache folder existed and kept nothing, so the first --resume read
    the whole data set again (minutes for a real one). Its default cache folder keeps them now."""
    from LiverTumorSegLib.training import slice_cache

    (tmp_path / "data").mkdir()
    data = write_phantom_cases(tmp_path / "data", 3, RUN_SHAPE_ZYX)
    (tmp_path / "run").mkdir()
    config = tiny_config(data, tmp_path / "run", cache_dir="")  # <log dir>/cache, made by this run
    hashed = []
    original = slice_cache._content_fingerprint
    monkeypatch.setattr(slice_cache, "_content_fingerprint",
                        lambda path, *files: hashed.append(path) or original(path, *files))
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[RaiseAt(1, KeyboardInterrupt())], log=lambda s: None)
    assert len(hashed) == 6  # 3 CTs and 3 labels, read once
    Trainer(config.updated({"resume": True}), log=lambda s: None).setup()
    assert len(hashed) == 6


def test_a_fresh_run_failing_before_it_cached_a_case_still_leaves_nothing(tmp_path, monkeypatch):
    """The hashes a fresh run keeps make its cache folder before any case is cached; a folder holding only them
    is no finished cache, so a run failing then still removes the folder it made."""
    from LiverTumorSegLib.training import slice_cache

    (tmp_path / "data").mkdir()
    data = write_phantom_cases(tmp_path / "data", 3, RUN_SHAPE_ZYX)
    (tmp_path / "run").mkdir()
    store = tmp_path / "run" / "model_train" / "cache" / slice_cache.CONTENT_HASHES_NAME
    kept = []

    def unreadable(*args, **kwargs):  # the first case to cache
        kept.append(store.is_file())
        raise InputError("unreadable CT (test)")

    monkeypatch.setattr(slice_cache, "load_case", unreadable)
    with pytest.raises(InputError, match="unreadable CT"):
        train(tiny_config(data, tmp_path / "run", cache_dir=""), log=lambda s: None)
    assert kept == [True] and not (tmp_path / "run" / "model_train").exists()


def test_training_with_synthetic_lesions_validates_and_writes_its_package(data_csv, tmp_path):
    """Validation on synthetic-lesion copies of the validation cases runs to the end (a missing spacing_zyx on
    those copies once crashed every such run at the end of epoch 1, the README's tiny example included)."""
    from LiverTumorSegLib.package import read_package_metadata

    torch.set_num_threads(1)
    data = Path(__file__).resolve().parents[1] / "Data"  # real CTs without tumor labels, as in the README
    cases = tmp_path / "cases.csv"
    cases.write_text(f"image,label,patient\n{data / 'ct3slice_ct.nii.gz'},{data / 'ct3slice_liver_seg.nii.gz'},a\n"
                     f"{data / 'example_ct_sm.nii.gz'},{data / 'example_ct_sm_liver.nii.gz'},b\n")
    (tmp_path / "run").mkdir()
    result = train(tiny_config(cases, tmp_path / "run", epochs=1, iterations_per_epoch=2, val_fraction=0.5),
                   log=lambda s: None)
    assert result.val_cases and "+synthetic" not in result.val_cases[0]
    assert result.stop_reason == "completed" and result.package_path.is_file()
    validation = read_package_metadata(result.package_path)["validation"]
    assert 0.0 <= validation["liver_dice"] <= 1.0 and "tumor_dice" in validation
    # the synthetic tumors of validation follow the split's seed: two training seeds on one split are validated
    # on the same tumors (with --seed they differed: 0 tumor voxels against 2 on one case, the training audit)
    assert validation["synthetic_lesions_seed"] == test_seed(5)
    from LiverTumorSegLib.training.trainer import Trainer

    tumors = []
    for seed in (1, 2):
        trainer = Trainer(tiny_config(cases, tmp_path / "run", epochs=1, iterations_per_epoch=2, val_fraction=0.5,
                                      seed=seed, split_seed=11, overwrite=True), log=lambda s: None)
        trainer.setup()
        tumors.append([np.asarray(c.labels == 2) for c in trainer.val_eval_cases])
    assert len(tumors[0]) == len(tumors[1]) == 1 and tumors[0][0].any()
    assert np.array_equal(tumors[0][0], tumors[1][0])


def test_the_package_says_when_validation_took_only_some_slices(data_csv, tmp_path):
    """--val-max-slices 2 validated on 2 slices a case, and the package's validation.method still read 'on the
    cached validation volumes', the Dice shown by `models` as if of the whole volumes."""
    from LiverTumorSegLib.package import read_package_metadata

    torch.set_num_threads(1)
    cfg = tiny_config(data_csv, tmp_path, epochs=1, iterations_per_epoch=1, val_max_slices=2)
    result = train(cfg, command="livertumorseg train test", log=lambda s: None)
    method = read_package_metadata(result.package_path)["validation"]["method"]
    assert "at most 2 evenly spaced slices per case, the first and last included (val_max_slices)" in method


def test_time_limit_stops_and_still_writes_package_via_cli(data_csv, tmp_path, capsys):
    from LiverTumorSegLib.cli import main

    torch.set_num_threads(1)
    out = tmp_path / "m.safetensors"
    code = main(["train", "--data", str(data_csv), "--model", "unet", "--model-options", '{"channels": [4, 8, 16]}',
                 "--preprocessing", __import__("json").dumps(PREPROCESSING), "--patch-size", "32",
                 "--batch-size", "2", "--iterations-per-epoch", "50", "--epochs", "3", "--num-workers", "0",
                 "--max-time-minutes", "0.00001", "--no-progress-bar", "--no-tensorboard", "-o", str(out),
                 "--synthetic-lesions", "true"])
    assert code == 0 and out.is_file()
    printed = capsys.readouterr().out
    assert "synthetic lesions: on" in printed and "(time_limit)" in printed
    last = load_checkpoint(tmp_path / "m_train" / "checkpoints" / "last.pt")
    assert last["global_step"] == 1 and last["step_in_epoch"] == 1
    # the same command again (a scheduler's next slot) was told '--overwrite', which starts over and deletes the
    # checkpoint; the way to continue is --resume, which the time-limit line names too
    assert "rerun the same command with --resume" in printed
    again = main(["train", "--data", str(data_csv), "--model", "unet", "--model-options", '{"channels": [4, 8, 16]}',
                  "--no-progress", "-o", str(out)])
    assert again == 2 and "limit stopped" in capsys.readouterr().err


def test_crossval_refuses_a_users_files_in_a_later_folds_folder_before_any_fold_trains(data_csv, tmp_path):
    """A user's folder fold_1_train was found when fold 1's turn came, after fold 0 had trained; the advice then
    (--overwrite) would have trained fold 0 again."""
    from LiverTumorSegLib.errors import OutputExistsError
    from LiverTumorSegLib.training.crossval import run_crossval

    (tmp_path / "cv" / "fold_1_train").mkdir(parents=True)
    (tmp_path / "cv" / "fold_1_train" / "mine.txt").write_text("x")
    trained = []
    cfg = tiny_config(data_csv, tmp_path, epochs=1, iterations_per_epoch=1, folds=2, output="")
    with pytest.raises(OutputExistsError, match=r"Fold 1's training folder '.*fold_1_train' already exists and "
                                                r"holds 1 item\(s\) \(e\.g\. 'mine\.txt'\)"):
        run_crossval(cfg, tmp_path / "cv", train_fn=lambda *a, **k: trained.append(a), log=lambda s: None)
    assert trained == [] and (tmp_path / "cv" / "fold_1_train" / "mine.txt").read_text() == "x"


def test_a_failed_crossval_into_a_new_parent_removes_only_its_own_folder(data_csv, tmp_path):
    """'crossval -o results/cv' with results/ missing removed the whole of results/ when a fold failed: what another
    run or the user had put there meanwhile (results/other/notes.txt), and the run's own slice cache in
    results/cv/cache, which a failed run keeps for the next. Now only results/cv is cleared (its cache kept), and
    results/ is removed only while empty."""
    from LiverTumorSegLib.training.crossval import run_crossval

    results = tmp_path / "results"
    cfg = tiny_config(data_csv, tmp_path, epochs=1, iterations_per_epoch=1, folds=2, output="")

    def fails_after_a_sibling_appears(*args, **kwargs):
        (results / "other").mkdir()
        (results / "other" / "notes.txt").write_text("another run's", encoding="utf-8")
        (results / "cv" / "fold_0_train").mkdir()
        raise InputError("a case that cannot be read")

    with pytest.raises(InputError, match="cannot be read"):
        run_crossval(cfg, results / "cv", train_fn=fails_after_a_sibling_appears, log=lambda s: None)
    assert (results / "other" / "notes.txt").read_text(encoding="utf-8") == "another run's"
    assert not (results / "cv").exists()
    (results / "other" / "notes.txt").unlink()
    (results / "other").rmdir()
    results.rmdir()
    with pytest.raises(InputError, match="cannot be read"):  # nothing else there: results/ goes too, as before
        run_crossval(cfg, results / "cv", train_fn=lambda *a, **k: (_ for _ in ()).throw(
            InputError("a case that cannot be read")), log=lambda s: None)
    assert not results.exists()


def test_crossval_writes_per_fold_and_mean_table(data_csv, tmp_path):
    from LiverTumorSegLib.package import read_package_metadata
    from LiverTumorSegLib.training.crossval import run_crossval

    torch.set_num_threads(1)
    cfg = tiny_config(data_csv, tmp_path, epochs=1, iterations_per_epoch=1, folds=3, output="",
                      log_dir=str(tmp_path / "logs"))
    table = run_crossval(cfg, tmp_path / "cv", log=lambda s: None)
    assert [r["fold"] for r in table] == [0, 1, 2, "mean"]
    # a given --log-dir holds the folds' logs (it was ignored: they went to OUT_DIR/fold_<i>_train)
    assert (tmp_path / "logs" / "fold_2_train" / "log.csv").is_file()
    assert not (tmp_path / "cv" / "fold_0_train").exists()
    assert sorted("; ".join(r["val_cases"] for r in table[:3]).split("; ")) == ["ct0", "ct1", "ct2"]
    assert table[3]["liver_dice"] == pytest.approx(np.mean([r["liver_dice"] for r in table[:3]]))
    assert (tmp_path / "cv" / "crossval.csv").is_file() and (tmp_path / "cv" / "fold_2.safetensors").is_file()
    # the summary is over folds: it said n_cases 3 for the folds and summarised epochs as a metric
    summary = json.loads((tmp_path / "cv" / "crossval.json").read_text())["summary"]
    assert summary["n_folds"] == 3 and summary["n_validation_cases"] == 3 and "n_cases" not in summary
    assert sorted(summary["metrics_over_folds"]) == ["liver_dice", "tumor_dice"]
    assert summary["metrics_over_folds"]["liver_dice"]["mean"] == pytest.approx(table[3]["liver_dice"])
    # each fold validated its last epoch's weights, on cases that decided nothing in its training
    assert all(r["weights"] == "last_epoch" and r["selected_on_validation"] == "no" for r in table)
    assert [r["stop_reason"] for r in table] == ["completed"] * 3 + ["finished"]
    assert summary["unfinished_folds"] == [] and "unfinished" not in summary
    assert summary["weights"] == "last_epoch" and summary["optimistic"] is False
    # the post-processing as the packages recorded it
    whole = read_package_metadata(tmp_path / "cv" / "fold_0.safetensors")["validation"]["whole_volume"]
    assert summary["postprocessing"] == whole["postprocessing_label"] == "segment's default post-processing"
    assert summary["postprocessing_options"] == whole["postprocessing"]


def test_resume_with_other_epochs_is_refused_under_cosine_and_recorded_under_other_schedules(data_csv, tmp_path):
    """The cosine schedule was rebuilt over the new --epochs on --resume: the learning rate jumped (0 to 1.5e-4
    in the review's run) and the package recorded a cosine over the whole run that never ran. Its total steps
    are in the checkpoint (older ones: their config's epochs) and another total is refused; schedules that do not
    depend on it resume, and the package lists every resume with the epochs before and after."""
    from LiverTumorSegLib.package import read_package_metadata
    from LiverTumorSegLib.training.checkpoint import save_checkpoint

    torch.set_num_threads(1)
    quiet = dict(log=lambda s: None)
    cosine = tmp_path / "cosine"
    cosine.mkdir()
    cfg = tiny_config(data_csv, cosine)  # 2 epochs x 3 steps, cosine (the default)
    with pytest.raises(RuntimeError, match="killed"):
        train(cfg, callbacks=[RaiseAt(4, RuntimeError("killed"))], **quiet)
    last = cosine / "model_train" / "checkpoints" / "last.pt"
    assert load_checkpoint(last)["schedule_total_steps"] == 6
    with pytest.raises(InputError, match=r"cosine schedule laid over 2 epochs, 6 steps; --epochs 3 would lay it over "
                                         r"9, and the learning rate would jump from .* at step 3.*Resume with "
                                         r"--epochs 2"):
        train(cfg.updated({"resume": True, "epochs": 3}), **quiet)
    payload = load_checkpoint(last)
    del payload["schedule_total_steps"]  # a checkpoint of an older version: the total from its config
    save_checkpoint(last, payload)
    with pytest.raises(InputError, match="laid over 2 epochs, 6 steps"):
        train(cfg.updated({"resume": True, "epochs": 1}), **quiet)
    result = train(cfg.updated({"resume": True}), **quiet)
    training = read_package_metadata(result.package_path)["training"]
    assert training["schedule_total_steps"] == 6 and result.global_step == 6
    assert training["resumes"] == [{"at_epoch": 1, "at_step_in_epoch": 0, "global_step": 3, "epochs_before": 2,
                                    "epochs_after": 2}]

    step = tmp_path / "step"
    step.mkdir()
    cfg = tiny_config(data_csv, step, schedule="step", step_size=1, gamma=0.5)
    with pytest.raises(RuntimeError, match="killed"):
        train(cfg, callbacks=[RaiseAt(4, RuntimeError("killed"))], **quiet)
    result = train(cfg.updated({"resume": True, "epochs": 3}), **quiet)
    training = read_package_metadata(result.package_path)["training"]
    assert result.epochs_completed == 3 and training["schedule_total_steps"] is None
    assert [(r["epochs_before"], r["epochs_after"]) for r in training["resumes"]] == [(2, 3)]
    assert [row["lr"] for row in result.history] == pytest.approx([cfg.lr * 0.5, cfg.lr * 0.25, cfg.lr * 0.125])


def test_whole_volume_validation_records_its_post_processing_and_the_raw_network_dice(data_csv, tmp_path):
    """The whole-volume Dice (crossval's number) is measured after segment's default post-processing (largest
    liver component, small and uncertain lesions, tube and lung-base rules), but its method named only the
    precision. The options are recorded, and the same network pass is scored before post-processing too."""
    from types import SimpleNamespace

    from LiverTumorSegLib.inference import SegmentationOptions, Segmenter
    from LiverTumorSegLib.inference.postprocess import PostprocessingOptions
    from LiverTumorSegLib.package import read_package_metadata
    from LiverTumorSegLib.training.crossval import fold_row, mean_row
    from LiverTumorSegLib.training.datasets import discover_cases, load_case
    from LiverTumorSegLib.training.trainer import whole_volume_row

    torch.set_num_threads(1)
    result = train(tiny_config(data_csv, tmp_path, epochs=1), log=lambda s: None)
    whole = read_package_metadata(result.package_path)["validation"]["whole_volume"]
    # the threshold that ran: the package being trained records none, so 0.65 of each lesion's mean
    assert whole["postprocessing"] == dict(PostprocessingOptions().to_dict(), min_lesion_probability=0.65,
                                           lesion_probability_statistic="mean")
    assert whole["tta"] is False and whole["two_stage"] is False and "post-processing" in whole["method"]
    cases = {c.case_id: c for c in discover_cases(data_csv)}
    for name, options, suffix in (("after", PostprocessingOptions(), ""),
                                  ("before", PostprocessingOptions.disabled(), "_raw")):
        segmenter = Segmenter(SegmentationOptions(model=str(result.package_path), device="cpu", precision="fp32",
                                                  postprocessing=options))
        for row in whole["cases"]:
            volume, labels = load_case(cases[row["case"]])
            expected = whole_volume_row(row["case"], segmenter.segment_volume(volume).labels, labels)
            assert row["liver_dice" + suffix] == pytest.approx(expected["liver_dice"]), name
            assert row["tumor_dice" + suffix] == pytest.approx(expected["tumor_dice"]), name
    assert whole["raw_network"]["liver_dice"] == pytest.approx(np.mean([r["liver_dice_raw"] for r in whole["cases"]]))
    row = fold_row(0, SimpleNamespace(validation={"whole_volume": whole}, val_cases=result.val_cases,
                                      epochs_completed=1))
    assert row["postprocessing"] == whole["postprocessing_label"] == "segment's default post-processing"
    assert row["liver_dice_raw"] == pytest.approx(whole["raw_network"]["liver_dice"])
    assert mean_row([row])["liver_dice_raw"] == pytest.approx(row["liver_dice_raw"])
    older = fold_row(1, SimpleNamespace(validation={"whole_volume": {"liver_dice": 0.9, "tumor_dice": 1.0}},
                                        val_cases=["a"], epochs_completed=1))
    assert older["postprocessing"].startswith("not recorded") and np.isnan(older["liver_dice_raw"])


def test_training_refuses_a_ct_copied_under_another_patient_before_it_caches_anything(tmp_path):
    """A copy of ct0 under another name and patient id was accepted, and fold splits put one copy in training
    and the other in validation. The run compares the image hashes it takes anyway at its start."""
    (tmp_path / "data").mkdir()
    data = write_phantom_cases(tmp_path / "data", 3, (8, 48, 48))
    for name in ("ct0", "lab0"):
        shutil.copyfile(tmp_path / "data" / f"{name}.nii.gz", tmp_path / "data" / f"{name}_copy.nii.gz")
    data.write_text(data.read_text() + "ct0_copy.nii.gz,lab0_copy.nii.gz,p7\n")
    (tmp_path / "out").mkdir()
    cfg = tiny_config(data, tmp_path / "out", folds=2, fold=0, cache_dir="")
    with pytest.raises(InputError, match=r"case 'ct0' \(patient 'p0'.*case 'ct0_copy' \(patient 'p7'.*identical contents"):
        train(cfg, log=lambda s: None)
    assert not (tmp_path / "out" / "model_train").exists()  # refused before a slice was cached


def _save_x_flipped(source, target, dtype=None):
    """``source`` (NIfTI) stored with its first axis reversed and the affine moved to match (the same voxels in
    space), optionally as ``dtype``, uncompressed: other bytes, the same scan."""
    import nibabel as nib

    image = nib.load(str(source))
    data = np.asanyarray(image.dataobj)[::-1]
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1.0, data.shape[0] - 1
    header = image.header.copy()
    if dtype is not None:
        data = data.astype(dtype)
        header.set_data_dtype(dtype)
        header.set_slope_inter(1.0, 0.0)
    affine = image.affine @ flip
    copy = nib.Nifti1Image(np.ascontiguousarray(data), affine, header)
    copy.set_sform(affine, code=1)
    copy.set_qform(affine, code=1)
    nib.save(copy, str(target))


def test_training_refuses_one_scan_saved_as_another_file_under_another_patient(tmp_path):
    """ct0 saved again (uncompressed, float32, stored right-to-left) under another patient: the byte hashes differ,
    so only the path and byte checks ran and the copy could be validated on the model trained on it. The voxels
    read for the slice cache are the same after canonical reorientation."""
    (tmp_path / "data").mkdir()
    data = write_phantom_cases(tmp_path / "data", 3, (8, 48, 48))
    _save_x_flipped(tmp_path / "data" / "ct0.nii.gz", tmp_path / "data" / "ct0_resaved.nii", np.float32)
    _save_x_flipped(tmp_path / "data" / "lab0.nii.gz", tmp_path / "data" / "lab0_resaved.nii")
    original = read_volume(tmp_path / "data" / "ct0.nii.gz")
    resaved = read_volume(tmp_path / "data" / "ct0_resaved.nii")
    assert not np.array_equal(original.array, resaved.array)  # stored another way: the raw arrays differ
    data.write_text(data.read_text() + "ct0_resaved.nii,lab0_resaved.nii,p7\n")
    (tmp_path / "out").mkdir()
    cfg = tiny_config(data, tmp_path / "out", folds=2, fold=0, cache_dir="")
    with pytest.raises(InputError, match=r"case 'ct0' \(patient 'p0'.*case 'ct0_resaved' \(patient 'p7'.*hold the "
                                         r"same voxels \(one scan saved as two files"):
        train(cfg, log=lambda s: None)
    assert not list((tmp_path / "out").glob("*.safetensors"))
    # the same rows as one patient's (one scan, two label files) train
    data.write_text(data.read_text().replace("ct0_resaved.nii,lab0_resaved.nii,p7", "ct0_resaved.nii,lab0_resaved.nii,p0"))
    cfg = tiny_config(data, tmp_path / "out", folds=2, fold=0, cache_dir="", epochs=1, iterations_per_epoch=1,
                      overwrite=True)
    assert train(cfg, log=lambda s: None).package_path.exists()


def test_resume_refuses_a_split_or_preprocessing_that_changed_under_the_same_options(tmp_path):
    """--resume compared the options' text only: an edited patient column moved a trained-on case into
    validation, and an edited preprocessing file gave a package whose recorded window most steps never saw."""
    (tmp_path / "data").mkdir()
    data = write_phantom_cases(tmp_path / "data", 3, (8, 48, 48))
    prep = tmp_path / "prep.json"
    prep.write_text(json.dumps(PREPROCESSING))
    out = tmp_path / "out"
    out.mkdir()
    cfg = tiny_config(data, out, preprocessing=str(prep), val_fraction=0.34)
    with pytest.raises(RuntimeError, match="killed"):
        train(cfg, callbacks=[RaiseAt(4, RuntimeError("killed"))], log=lambda s: None)
    original = data.read_text()
    # every case gets another case's patient (p0 -> p1 -> p2 -> p0): the same patients, so the split draws the same
    # validation patient, which is now another case's, whatever the seed (p0 -> p1 and p2 -> p0 left two patients,
    # and under some seeds the same validation case)
    data.write_text(original.replace(",p0", ",pX").replace(",p2", ",p0").replace(",p1", ",p2").replace(",pX", ",p1"))
    with pytest.raises(InputError, match="another split of the cases"):
        train(cfg.updated({"resume": True}), log=lambda s: None)
    data.write_text(original)
    prep.write_text(json.dumps(dict(PREPROCESSING, channels=[{"kind": "window", "level": 300, "width": 100}])))
    with pytest.raises(InputError, match="other preprocessing"):
        train(cfg.updated({"resume": True}), log=lambda s: None)
    prep.write_text(json.dumps(PREPROCESSING))
    # the same file named another way (relative from its folder, where the run gave its full path): one file, and
    # its content is compared above (it was refused as 'other settings': the training audit)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert train(cfg.updated({"resume": True, "preprocessing": "./prep.json"}),
                     log=lambda s: None).global_step == 6  # as it was: resumes
    finally:
        os.chdir(cwd)


def test_a_run_restarted_with_overwrite_and_resumed_packages_its_own_weights(data_csv, tmp_path):
    """The recipe's final run on all data (--overwrite, no validation) in the folder of a validated run, killed
    and resumed: restore() loaded the earlier run's best.pt, so the package held run A's weights, not B's."""
    from safetensors.torch import load_file
    out = tmp_path / "out"
    out.mkdir()
    quiet = dict(log=lambda s: None)
    train(tiny_config(data_csv, out, val_fraction=0.34), **quiet)
    best = out / "model_train" / "checkpoints" / "best.pt"
    best_a = _weights(best)
    cfg_b = tiny_config(data_csv, out, val_fraction=0.0, lr=1e-2, overwrite=True)
    with pytest.raises(RuntimeError, match="killed"):
        train(cfg_b, callbacks=[RaiseAt(4, RuntimeError("killed"))], **quiet)
    assert not best.exists()                       # a fresh start clears the earlier run's checkpoints
    result = train(cfg_b.updated({"resume": True, "overwrite": False}), **quiet)
    last_b = _weights(out / "model_train" / "checkpoints" / "last.pt")
    package = load_file(str(result.package_path))

    def matches(state):
        return sum(1 for k, v in package.items() for name, w in state.items()
                   if w.is_floating_point() and k.endswith(name) and v.shape == w.shape and torch.equal(v.float(),
                                                                                                       w.float()))
    assert matches(last_b) > 0 and matches(best_a) == 0


def test_resume_does_not_replace_another_runs_package_at_its_output(data_csv, tmp_path):
    """The check of an existing -o was skipped whenever --resume found a checkpoint, and -o may change on resume:
    `--resume -o precious.safetensors` (a package of another run) replaced it without a word (the file-safety
    audit). Now refused, the file kept; --overwrite with --resume replaces it. The run's own package at -o (a time
    limit's; also one moved or copied with its training folder, found by its settings) is still replaced."""
    from LiverTumorSegLib.errors import OutputExistsError

    quiet = dict(log=lambda s: None)
    other = tmp_path / "other"
    other.mkdir()
    precious = train(tiny_config(data_csv, other, epochs=1, iterations_per_epoch=1, val_fraction=0.0),
                     **quiet).package_path
    kept = precious.read_bytes()
    run = tmp_path / "run"
    run.mkdir()
    logs = str(run / "logs")
    cfg = tiny_config(data_csv, run, epochs=2, iterations_per_epoch=2, val_fraction=0.0, log_dir=logs)
    with pytest.raises(RuntimeError, match="killed"):
        train(cfg, callbacks=[RaiseAt(3, RuntimeError("killed"))], **quiet)
    resumed = cfg.updated({"resume": True, "output": str(precious)})
    with pytest.raises(OutputExistsError, match="is not a package of the run in"):
        train(resumed, **quiet)
    assert precious.read_bytes() == kept
    result = train(resumed.updated({"overwrite": True}), **quiet)
    assert result.package_path == precious and precious.read_bytes() != kept
    # the run's own package at -o: a time limit's, continued by --resume without --overwrite
    limited = tiny_config(data_csv, run, epochs=2, iterations_per_epoch=2, val_fraction=0.0,
                          log_dir=str(run / "logs2"), output=str(run / "limited.safetensors"))
    with pytest.raises(RuntimeError, match="killed"):
        train(limited, callbacks=[RaiseAt(3, RuntimeError("killed"))], **quiet)
    (run / "limited.safetensors").write_bytes(kept)  # another experiment's package (fewer iterations): refused
    with pytest.raises(OutputExistsError, match="is not a package of the run in"):
        train(limited.updated({"resume": True}), **quiet)


def _scripted_validation(monkeypatch, liver_dice_per_call):
    """Trainer._validate answering the given liver Dice in turn (then the last one again): which epoch is the
    'best' is then decided by the test, not by what 6 steps of a tiny network happen to learn."""
    scores = list(liver_dice_per_call)

    def validate(self):
        value = scores.pop(0) if len(scores) > 1 else scores[0]
        return {"loss": 1.0 - value, "liver_dice": value, "tumor_dice": float("nan"), "cases": []}

    monkeypatch.setattr(Trainer, "_validate", validate)


def _same_weights(package_path, state):
    from safetensors.torch import load_file

    package = load_file(str(package_path))
    pairs = [(v, w) for k, v in package.items() for name, w in state.items()
             if w.is_floating_point() and k.endswith(name) and v.shape == w.shape]
    return bool(pairs) and all(torch.equal(v.float(), w.float()) for v, w in pairs)


def test_the_package_holds_the_last_epoch_unless_the_best_is_asked_for_and_says_which(data_csv, tmp_path,
                                                                                    monkeypatch):
    """The package held (and its whole-volume validation, crossval's number, measured) the weights of the epoch
    that scored best on the validation cases: the Dice reported on those cases was chosen on them. The last
    epoch's weights are packaged now; use_best_checkpoint packages the best epoch's and marks the numbers."""
    from LiverTumorSegLib.package import read_package_metadata

    torch.set_num_threads(1)
    quiet = dict(log=lambda s: None)
    for name, best in (("last", False), ("best", True)):
        out = tmp_path / name
        out.mkdir()
        _scripted_validation(monkeypatch, [0.9, 0.1])  # epoch 1 is the best, epoch 2 the last
        result = train(tiny_config(data_csv, out, use_best_checkpoint=best), **quiet)
        checkpoints = out / "model_train" / "checkpoints"
        assert result.validation["best_epoch"] == 1 and result.epochs_completed == 2
        meta = read_package_metadata(result.package_path)
        if not best:
            assert _same_weights(result.package_path, _weights(checkpoints / "last.pt"))
            assert not _same_weights(result.package_path, _weights(checkpoints / "best.pt"))
            assert meta["training"]["weights"] == meta["validation"]["weights"] == "last_epoch"
            assert meta["validation"]["weights_epoch"] == 2 and meta["validation"]["optimistic"] is False
            assert meta["training"]["weights_global_step"] == 6 and "weights_note" not in meta["training"]
            assert "note" not in meta["validation"]
        else:
            assert _same_weights(result.package_path, _weights(checkpoints / "best.pt"))
            assert meta["training"]["weights"] == meta["validation"]["weights"] == "best_on_validation"
            assert meta["validation"]["weights_epoch"] == 1 and meta["validation"]["optimistic"] is True
            assert meta["training"]["weights_global_step"] == 3
            assert meta["validation"]["note"].startswith("selected on these validation cases (optimistic)")


def test_the_weights_the_last_epoch_validated_are_not_validated_again_at_the_end(data_csv, tmp_path, monkeypatch):
    """_finish validated the packaged weights although the last epoch (which always validates) or the validation
    that stopped the run early had just done so on exactly those weights: the same numbers computed twice. Another
    validation runs only for other weights (the best epoch's, steps trained after the last validation)."""
    from LiverTumorSegLib.package import read_package_metadata

    torch.set_num_threads(1)
    real = Trainer._validate
    calls = []

    def counted(self):
        calls.append(self.global_step)
        return real(self)

    monkeypatch.setattr(Trainer, "_validate", counted)
    (tmp_path / "last").mkdir()
    result = train(tiny_config(data_csv, tmp_path / "last"), log=lambda s: None)
    assert calls == [3, 6]  # one per epoch; none more at the end
    validation = read_package_metadata(result.package_path)["validation"]
    assert validation["liver_dice"] == pytest.approx(result.history[-1]["val_liver_dice"])
    # the best epoch's weights (epoch 1) are not the last validated ones: validated again
    scripted = []

    def scripted_validate(self):
        scripted.append(self.global_step)
        value = 0.9 if len(scripted) == 1 else 0.1
        return {"loss": 1.0 - value, "liver_dice": value, "tumor_dice": float("nan"), "cases": []}

    monkeypatch.setattr(Trainer, "_validate", scripted_validate)
    (tmp_path / "best").mkdir()
    train(tiny_config(data_csv, tmp_path / "best", use_best_checkpoint=True), log=lambda s: None)
    assert scripted == [3, 6, 6]


def test_a_package_of_a_run_stopped_mid_epoch_says_its_weights_hold_steps_of_the_next_epoch(data_csv, tmp_path,
                                                                                            monkeypatch):
    """After a time-limit stop mid-epoch the package said weights_epoch 1 (len(history)) although its weights had
    a step of epoch 2 too. The global step they were taken after is recorded, and a note says so."""
    from LiverTumorSegLib.package import read_package_metadata

    torch.set_num_threads(1)
    monkeypatch.setattr(Trainer, "_time_up", lambda self: self.global_step == 4)  # epoch 2's first step (of 3)
    result = train(tiny_config(data_csv, tmp_path), log=lambda s: None)
    assert result.stop_reason == "time_limit" and result.epochs_completed == 1 and result.global_step == 4
    meta = read_package_metadata(result.package_path)
    for part in ("training", "validation"):
        assert meta[part]["weights"] == "last_epoch" and meta[part]["weights_epoch"] == 1
        assert meta[part]["weights_global_step"] == 4
        assert "1 step(s) of epoch 2" in meta[part]["weights_note"]


def test_early_stopping_and_the_plateau_schedule_mark_the_validation_numbers_optimistic(data_csv, tmp_path,
                                                                                      monkeypatch):
    """Both decide on the validation cases (when to stop, when to lower the rate); the package and crossval's
    table said nothing of it."""
    from types import SimpleNamespace

    from LiverTumorSegLib.package import read_package_metadata
    from LiverTumorSegLib.training.crossval import fold_row, mean_row, selection_summary

    torch.set_num_threads(1)
    _scripted_validation(monkeypatch, [0.9, 0.1])
    result = train(tiny_config(data_csv, tmp_path, epochs=4, early_stopping_patience=1, schedule="plateau"),
                   log=lambda s: None)
    assert result.stop_reason == "early_stopping" and result.epochs_completed == 2
    validation = read_package_metadata(result.package_path)["validation"]
    assert validation["weights"] == "last_epoch" and validation["optimistic"] is True
    decided = " ".join(validation["decided_on_validation"])
    assert "early stopping" in decided and "it stopped the run" in decided and "plateau" in decided
    row = fold_row(0, SimpleNamespace(validation=validation, val_cases=["a"], epochs_completed=2))
    assert row["weights"] == "last_epoch" and row["selected_on_validation"].startswith(
        "yes, selected on these validation cases (optimistic): early stopping")
    plain = fold_row(1, SimpleNamespace(validation={"weights": "last_epoch", "decided_on_validation": []},
                                        val_cases=["b"], epochs_completed=2))
    assert plain["selected_on_validation"] == "no"
    # a package of an older version: it always held the best validation epoch's weights
    older = fold_row(2, SimpleNamespace(validation={"best_epoch": 3, "whole_volume": {"liver_dice": 0.9}},
                                        val_cases=["c"], epochs_completed=4))
    assert older["weights"] == "best_on_validation" and older["selected_on_validation"].startswith("yes")
    assert mean_row([plain])["selected_on_validation"] == "no"
    assert mean_row([plain, older])["weights"] == "mixed: best_on_validation, last_epoch"
    summary = selection_summary([plain, older])
    assert summary["optimistic"] is True and "fold(s) 2" in summary["note"]
    assert selection_summary([plain]) == {"weights": "last_epoch", "optimistic": False, "unfinished_folds": []}


def test_resume_of_a_run_that_stopped_early_is_refused_as_finished(data_csv, tmp_path):
    """--resume trained on past an early stop and replaced the package (crossval --resume treats such a run as
    finished). A larger patience may still continue it."""
    from LiverTumorSegLib.errors import OutputExistsError
    out = tmp_path / "out"
    out.mkdir()
    quiet = dict(log=lambda s: None)
    # a learning rate of 1e-12 cannot move any voxel's argmax: the score never improves after epoch 1
    cfg = tiny_config(data_csv, out, epochs=6, lr=1e-12, weight_decay=0.0, early_stopping_patience=1,
                      augmentation={"enabled": False})
    first = train(cfg, **quiet)
    assert first.stop_reason == "early_stopping" and first.epochs_completed == 2
    with pytest.raises(OutputExistsError, match="stopped early after 2 epochs"):
        train(cfg.updated({"resume": True}), **quiet)
    assert train(cfg.updated({"resume": True, "early_stopping_patience": 2}), **quiet).epochs_completed == 3


def test_an_early_stopped_run_interrupted_before_its_package_is_written_writes_it_on_resume(data_csv, tmp_path,
                                                                                           monkeypatch):
    """Interrupted between its 'early stopping' line and its package (drawing the curves, validating the best
    weights: minutes on real data), a run said only 'interrupted', and --resume refused it as 'stopped early ...
    nothing to resume' (crossval --resume too), so its package could never be had; --overwrite trained another
    epoch (the training run-time audit). --resume writes the early-stopped run's package, its last epoch's weights."""
    from LiverTumorSegLib.errors import OutputExistsError
    from LiverTumorSegLib.package import load_model_package
    from LiverTumorSegLib.training import trainer as trainer_module

    out = tmp_path / "out"
    out.mkdir()
    said = []
    cfg = tiny_config(data_csv, out, epochs=6, lr=1e-12, weight_decay=0.0, early_stopping_patience=1,
                      augmentation={"enabled": False})
    real_plot = trainer_module.plot_curves

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(trainer_module, "plot_curves", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, log=said.append)
    assert not Path(cfg.output).exists()
    assert any("interrupted before the model package was written" in line and "--resume" in line for line in said)
    monkeypatch.setattr(trainer_module, "plot_curves", real_plot)
    said.clear()
    result = train(cfg.updated({"resume": True}), log=said.append)
    assert result.stop_reason == "early_stopping" and result.epochs_completed == 2 and Path(cfg.output).is_file()
    assert any("the run stopped early after 2 epochs" in line and "writing the package" in line for line in said)
    assert load_model_package(cfg.output).metadata["training"]["stop_reason"] == "early_stopping"
    with pytest.raises(OutputExistsError, match="stopped early after 2 epochs"):  # written: now nothing to resume
        train(cfg.updated({"resume": True}), log=said.append)


def test_an_earlier_package_of_the_run_does_not_pass_for_its_early_stopped_package(data_csv, tmp_path, monkeypatch):
    """A time limit's package of epoch 1 at -o, then a resumed run that stopped early and was interrupted before its
    package: the next --resume took the epoch-1 package for the finished one ('stopped early ...; nothing to
    resume', the review). It writes the early-stopped package."""
    from LiverTumorSegLib.package import load_model_package
    from LiverTumorSegLib.training import trainer as trainer_module

    out = tmp_path / "out"
    out.mkdir()
    cfg = tiny_config(data_csv, out, epochs=6, lr=1e-12, weight_decay=0.0, early_stopping_patience=1,
                      augmentation={"enabled": False})
    monkeypatch.setattr(trainer_module.Trainer, "_time_up", lambda self: len(self.history) == 1)
    first = train(cfg, log=lambda s: None)
    assert first.stop_reason == "time_limit" and first.epochs_completed == 1
    monkeypatch.setattr(trainer_module.Trainer, "_time_up", lambda self: False)
    real_plot = trainer_module.plot_curves

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(trainer_module, "plot_curves", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(cfg.updated({"resume": True}), log=lambda s: None)
    assert load_model_package(cfg.output).metadata["training"]["stop_reason"] == "time_limit"
    monkeypatch.setattr(trainer_module, "plot_curves", real_plot)
    result = train(cfg.updated({"resume": True}), log=lambda s: None)
    assert result.stop_reason == "early_stopping" and result.epochs_completed == 2
    assert load_model_package(cfg.output).metadata["training"]["stop_reason"] == "early_stopping"


def test_training_says_when_slice_adaptive_preprocessing_meets_smaller_patches(data_csv, tmp_path):
    """CLAHE is computed on each training patch but on the whole slice at inference: training says so. A z-score
    (or histogram-scaled, globally equalized) channel, computed on the patch until an audit found inputs 8.7
    apart for zscore_body, now takes its whole slice's statistics in training: no warning."""
    zscore = {"channels": [{"kind": "zscore", "mask": "body"}], "context_slices": 1, "target_spacing_mm": 3.0,
              "size_multiple": 16, "crop_to_body": True}
    clahe = dict(PREPROCESSING, equalize="clahe")
    for name, preprocessing, warned in (("zscore", zscore, False), ("clahe", clahe, True),
                                        ("window", PREPROCESSING, False)):
        out = tmp_path / name
        out.mkdir()
        lines = []
        Trainer(tiny_config(data_csv, out, preprocessing=preprocessing), log=lines.append).setup()
        assert any("depend(s) on the whole slice" in line for line in lines) == warned, name
        assert any("clahe equalization depend(s) on the whole slice" in line for line in lines) == warned


def test_clahe_warns_also_when_the_patch_is_larger_than_the_slices(data_csv, tmp_path):
    """Square patches larger than a slice are padded, and CLAHE's tiles then cover the padding: inference's
    tiles lie over the slice itself, so training warns whenever a slice is not exactly the patch (it warned only
    for patches smaller than a slice). The median filter differs only where a patch cuts into a slice: no
    warning when every patch holds its whole slice."""
    median = dict(PREPROCESSING, median_size=3)
    clahe = dict(PREPROCESSING, equalize="clahe")
    for name, preprocessing, warned in (("clahe", clahe, True), ("median", median, False)):
        out = tmp_path / name
        out.mkdir()
        lines = []
        trainer = Trainer(tiny_config(data_csv, out, preprocessing=preprocessing, patch_size=64), log=lines.append)
        trainer.setup()
        assert max(max(c.hu.shape[1:]) for c in trainer.train_cached) < 64  # every slice fits inside the patch
        assert any("depend(s) on the whole slice" in line for line in lines) == warned, name
        if warned:
            assert any("padded where a slice is narrower" in line and "global equalization" in line
                       for line in lines), lines


def test_labels_without_any_liver_are_refused_before_training(tmp_path):
    """Every label empty (e.g. a --label-map that dropped the liver value): training ran to the end and wrote a
    package with validation liver Dice 0.000, exit 0, after one warning per case."""
    (tmp_path / "data").mkdir()
    data = write_phantom_cases(tmp_path / "data", 3, (8, 48, 48))
    for i in range(3):
        label = tmp_path / "data" / f"lab{i}.nii.gz"
        empty = read_volume(label)
        write_label_map(label, np.zeros(empty.shape_zyx, np.uint8), empty.geometry, overwrite=True)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError, match="No training case's label holds any liver or tumor voxel"):
        Trainer(tiny_config(data, out), log=lambda s: None).setup()
    assert not (out / "model.safetensors").exists()


def test_split_seed_holds_out_the_same_patients_for_every_training_seed(data_csv, tmp_path):
    # "fold 0" with --seed 2027 and with --seed 7 held out different patients, so a comparison of training seeds
    # measured one of them on a patient it had trained on (issue 11's lever check in stop 25 did)
    logs = []

    def held_out(seed, **extra):
        out = tmp_path / f"s{seed}_{len(logs)}"
        out.mkdir()
        cfg = tiny_config(data_csv, out, seed=seed, folds=3, fold=0, **extra)
        trainer = Trainer(cfg, log=logs.append)
        trainer.setup()
        return sorted(c.patient_id for c in trainer.val_cases)

    by_seed = {seed: held_out(seed) for seed in range(6)}
    assert len({tuple(v) for v in by_seed.values()}) > 1          # the split follows --seed when no split seed
    assert any("validation patients: " + ", ".join(by_seed[5]) + " (split seed 5)" in line for line in logs)
    with_split = {seed: held_out(seed, split_seed=0) for seed in range(6)}
    assert all(v == by_seed[0] for v in with_split.values())
    assert TrainConfig.from_dict({"seed": 7}).data_split_seed == 7
    assert TrainConfig.from_dict({"seed": 7, "split_seed": 2027}).data_split_seed == 2027
    for bad in (-1, True, 1.5, "3"):
        with pytest.raises(Exception, match="split_seed"):
            TrainConfig.from_dict({"split_seed": bad})


def test_crossval_resume_keeps_finished_folds_and_continues_the_interrupted_one(data_csv, tmp_path):
    """crossval --resume stopped at the first finished fold ('nothing to resume'), so the only way on was
    --overwrite, training every fold again. Finished folds are taken from their packages now."""
    from LiverTumorSegLib.training.crossval import run_crossval
    from LiverTumorSegLib.training.trainer import train

    torch.set_num_threads(1)
    cfg = tiny_config(data_csv, tmp_path, epochs=2, iterations_per_epoch=2, folds=3, output="")
    full = run_crossval(cfg, tmp_path / "full", log=lambda s: None)
    trained = []

    def interrupted_in_fold_1(fold_cfg, command="", log=print):
        trained.append(fold_cfg.fold)
        callbacks = [RaiseAt(3, KeyboardInterrupt())] if fold_cfg.fold == 1 else []
        return train(fold_cfg, command=command, log=log, callbacks=callbacks)

    with pytest.raises(KeyboardInterrupt):
        run_crossval(cfg, tmp_path / "cv", train_fn=interrupted_in_fold_1, log=lambda s: None)
    fold0 = (tmp_path / "cv" / "fold_0.safetensors").read_bytes()
    trained.clear()
    lines = []
    table = run_crossval(cfg.updated({"resume": True}), tmp_path / "cv",
                         train_fn=lambda c, command="", log=print: (trained.append(c.fold), train(c, log=log))[1],
                         log=lines.append)
    assert trained == [1, 2]  # fold 0 was finished: not trained again, its package untouched
    assert (tmp_path / "cv" / "fold_0.safetensors").read_bytes() == fold0
    assert any("fold 0 already finished (2 epochs, completed)" in line for line in lines)
    # the same folds and numbers as the uninterrupted run, bit for bit (one process, one torch thread): every
    # fold's table row (its Dice included) and the resumed fold's and the later fold's whole training state
    _same_value(table, full, "crossval table")  # NaN (a fold without tumor) equals NaN
    for fold in (1, 2):
        assert_resumed_as_uninterrupted(run_record(tmp_path / "full" / f"fold_{fold}_train"),
                                        tmp_path / "cv" / f"fold_{fold}_train", f"fold {fold}")
    # a finished fold trained under other settings (another split seed) is not taken as this run's fold
    from LiverTumorSegLib.errors import InputError
    with pytest.raises(InputError, match=r"Fold 0: '.*fold_0.safetensors' is from a run with other settings: "
                                         r"split_seed None \(now 99\)"):
        run_crossval(cfg.updated({"resume": True, "split_seed": 99}), tmp_path / "cv", log=lambda s: None)


def test_crossval_resume_with_a_damaged_fold_checkpoint_is_refused_keeping_it(data_csv, tmp_path):
    """crossval --resume whose interrupted fold's last.pt is damaged: fold_other_settings leaves an unreadable
    checkpoint to the fold's training, which refuses it before any step, naming the file and what to do; the file
    stays and no fold package or table is written."""
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.training.crossval import run_crossval

    cfg = tiny_config(data_csv, tmp_path, epochs=1, iterations_per_epoch=2, folds=2, output="", resume=True)
    last = tmp_path / "cv" / "fold_0_train" / "checkpoints" / "last.pt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"not a checkpoint" * 64)
    with pytest.raises(InputError, match=r"fold_0_train/checkpoints/last.pt' cannot be read and was refused: .*"
                                         r"delete it \(or its run folder\) to start over"):
        run_crossval(cfg, tmp_path / "cv", log=lambda s: None)
    assert last.read_bytes() == b"not a checkpoint" * 64
    assert not list((tmp_path / "cv").glob("*.safetensors")) and not list((tmp_path / "cv").glob("crossval.*"))


def test_a_refused_crossval_resume_of_a_finished_run_keeps_its_tables(data_csv, tmp_path):
    """crossval --resume --epochs 2 of a finished 1-epoch cosine run: fold 0 is refused (its schedule would be laid
    over another total), as it should be, but the run's crossval.csv and crossval.json had been removed first, so
    the finished results were gone after a refused command. They are put back, byte for byte, when no fold package
    was replaced."""
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.training.crossval import TABLE_NAMES, run_crossval

    torch.set_num_threads(1)
    cfg = tiny_config(data_csv, tmp_path, epochs=1, iterations_per_epoch=2, folds=2, output="")
    out = tmp_path / "cv"
    run_crossval(cfg, out, log=lambda s: None)
    tables = {name: (out / name).read_bytes() for name in TABLE_NAMES}
    packages = {p.name: p.read_bytes() for p in out.glob("fold_*.safetensors")}
    lines = []
    with pytest.raises(InputError, match=r"cosine schedule laid over 1 epochs.*Resume with --epochs 1"):
        run_crossval(cfg.updated({"resume": True, "epochs": 2}), out, log=lines.append)
    assert {name: (out / name).read_bytes() for name in TABLE_NAMES} == tables
    assert {p.name: p.read_bytes() for p in out.glob("fold_*.safetensors")} == packages
    assert any("put the earlier run's crossval.csv and crossval.json back" in line for line in lines)


def test_crossval_reports_progress_over_all_folds(data_csv, tmp_path):
    """run_crossval took no progress callback (train and segment's API follow theirs), so a researcher's script or a
    panel driving a cross-validation could show nothing for hours. The fraction now rises over both folds to 1.0, the
    stage naming the fold and the epoch."""
    from LiverTumorSegLib.training.crossval import FOLD_TRAINING_SHARE, run_crossval

    torch.set_num_threads(1)
    cfg = tiny_config(data_csv, tmp_path, epochs=1, iterations_per_epoch=2, folds=2, output="")
    seen = []
    run_crossval(cfg, tmp_path / "cv", log=lambda s: None, progress=lambda f, stage: seen.append((f, stage)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    stages = [stage for _, stage in seen]
    assert "fold 0 (folds 0-1): epoch 1/1, step 2/2" in stages and "fold 1 (folds 0-1): epoch 1/1, step 1/2" in stages
    by_stage = dict((stage, f) for f, stage in seen)
    assert by_stage["fold 0 (folds 0-1): epoch 1/1, step 2/2"] == pytest.approx(0.5 * FOLD_TRAINING_SHARE)
    assert by_stage["fold 0 (folds 0-1): finished"] == pytest.approx(0.5)
    assert by_stage["fold 1 (folds 0-1): epoch 1/1, step 1/2"] == pytest.approx(0.5 + 0.5 * 0.5 * FOLD_TRAINING_SHARE)
    assert stages[-1] == "2 folds: tables written" and (tmp_path / "cv" / "crossval.csv").is_file()


def test_a_cancelled_crossval_keeps_its_finished_folds_for_resume(data_csv, tmp_path):
    """run_crossval could not be stopped but by Ctrl-C. A CancellationToken now stops it between folds (set here once
    fold 0 is finished) or inside a fold's training (after a step, with the fold's interrupt checkpoint saved):
    CancelledError says which folds are finished, no table is written, and --resume trains only what is left."""
    from LiverTumorSegLib.errors import CancelledError
    from LiverTumorSegLib.progress import CancellationToken
    from LiverTumorSegLib.training.crossval import run_crossval

    torch.set_num_threads(1)
    cfg = tiny_config(data_csv, tmp_path, epochs=2, iterations_per_epoch=2, folds=2, output="")
    out = tmp_path / "cv"
    token = CancellationToken()

    def cancel_when_fold_0_is_finished(fraction, stage):
        if stage == "fold 0 (folds 0-1): finished":
            token.cancel()

    with pytest.raises(CancelledError, match=r"cancelled before fold 1 of 0-1; fold 0 is finished .* --resume"):
        run_crossval(cfg, out, log=lambda s: None, progress=cancel_when_fold_0_is_finished, cancel=token)
    assert (out / "fold_0.safetensors").is_file() and not (out / "fold_1.safetensors").exists()
    assert not (out / "crossval.csv").exists() and not (out / "fold_1_train").exists()
    fold0 = (out / "fold_0.safetensors").read_bytes()
    # cancelled again inside fold 1, after its third step: its checkpoint is kept for --resume
    token = CancellationToken()

    def cancel_at_fold_1_step_3(fraction, stage):
        if stage == "fold 1 (folds 0-1): epoch 2/2, step 1/2":
            token.cancel()

    with pytest.raises(CancelledError, match=r"cancelled in fold 1: .*fold_1_train.*checkpoints'; fold 0 is finished"):
        run_crossval(cfg.updated({"resume": True}), out, log=lambda s: None, progress=cancel_at_fold_1_step_3,
                     cancel=token)
    assert (out / "fold_1_train" / "checkpoints" / "last.pt").is_file() and not (out / "crossval.csv").exists()
    trained, lines = [], []

    def recording_train(fold_cfg, command="", log=print):
        trained.append(fold_cfg.fold)
        return train(fold_cfg, command=command, log=log)

    table = run_crossval(cfg.updated({"resume": True}), out, train_fn=recording_train, log=lines.append)
    assert trained == [1] and (out / "fold_0.safetensors").read_bytes() == fold0
    assert any("resuming from" in line and "global step 3" in line for line in lines), lines
    assert [row["fold"] for row in table] == [0, 1, "mean"] and (out / "crossval.csv").is_file()


def test_an_interrupted_crossval_overwrite_leaves_no_earlier_table_beside_its_new_folds(data_csv, tmp_path):
    """`crossval --overwrite` stopped by Ctrl-C in fold 1 left the earlier run's crossval.csv and crossval.json, which
    look finished, beside this run's new fold_0.safetensors (other Dice, other validation cases). The earlier tables
    are removed when the first fold trains; a run that trains no fold (all finished, --resume) keeps them."""
    from types import SimpleNamespace

    from LiverTumorSegLib.training.crossval import run_crossval

    out = tmp_path / "cv"
    out.mkdir()
    for name in ("crossval.csv", "crossval.json"):
        (out / name).write_text("the earlier run's table")
    cfg = tiny_config(data_csv, tmp_path, folds=2, output="", overwrite=True)
    lines = []

    def fold_0_then_ctrl_c(fold_cfg, command="", log=print):
        if fold_cfg.fold == 1:
            raise KeyboardInterrupt()
        return SimpleNamespace(validation={"whole_volume": {"liver_dice": 0.9, "tumor_dice": 1.0}},
                               val_cases=["c"], epochs_completed=1)

    with pytest.raises(KeyboardInterrupt):
        run_crossval(cfg, out, train_fn=fold_0_then_ctrl_c, log=lines.append)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("crossval")) == []
    assert any("removed the earlier run's crossval.csv and crossval.json" in line for line in lines)


def test_crossval_resume_of_an_interrupted_overwrite_with_other_settings_retrains_the_replaced_runs_folds(tmp_path):
    """A finished crossval, then `crossval --overwrite` with another --lr stopped in fold 1, then `--resume` with that
    --lr: fold 1 still held the first run's package, and the resume was refused with 'Resume with the interrupted
    run's settings', which it had been given. Now fold 1 continues from its checkpoint of these settings, or, where
    it has none, is trained again; no fold of the first run's settings reaches the table, and settings matching no
    fold are refused, named."""
    from LiverTumorSegLib.package import read_package_metadata
    from LiverTumorSegLib.training.crossval import run_crossval

    torch.set_num_threads(1)
    (tmp_path / "data").mkdir()
    data = write_phantom_cases(tmp_path / "data", 2, (8, 48, 48))
    first = tiny_config(data, tmp_path, epochs=1, iterations_per_epoch=2, folds=2, output="", lr=3e-3)
    second = first.updated({"lr": 1e-3})
    run_crossval(first, tmp_path / "cv", log=lambda s: None)

    def ctrl_c_in_fold_1(fold_cfg, command="", log=print):
        return train(fold_cfg, command=command, log=log,
                     callbacks=[RaiseAt(1, KeyboardInterrupt())] if fold_cfg.fold == 1 else [])

    with pytest.raises(KeyboardInterrupt):
        run_crossval(second.updated({"overwrite": True}), tmp_path / "cv", train_fn=ctrl_c_in_fold_1,
                     log=lambda s: None)
    shutil.copytree(tmp_path / "cv", tmp_path / "no_checkpoint")
    (tmp_path / "no_checkpoint" / "fold_1_train" / "checkpoints" / "last.pt").unlink()  # stopped before one
    with pytest.raises(InputError, match=r"Fold 0: .* other settings: lr 0.001 \(now 0.01\), and no earlier fold"):
        run_crossval(second.updated({"resume": True, "lr": 1e-2}), tmp_path / "cv", log=lambda s: None)
    # --overwrite removed the first run's fold 1 package before its fold 0: the fold without a checkpoint starts over
    for folder, said in (("cv", "resuming from"), ("no_checkpoint", "holds no checkpoint")):
        lines = []
        table = run_crossval(second.updated({"resume": True}), tmp_path / folder, log=lines.append)
        assert any(said in line for line in lines), folder
        lrs = [read_package_metadata(tmp_path / folder / f"fold_{i}.safetensors")["training"]["config"]["lr"]
               for i in range(2)]
        assert lrs == [1e-3, 1e-3], folder
        assert [row["fold"] for row in table] == [0, 1, "mean"]


def test_crossval_overwrite_leaves_no_fold_of_the_replaced_run_for_a_later_resume(tmp_path):
    """A finished 1-epoch crossval, then `crossval --overwrite --epochs 2` stopped (Ctrl-C) before fold 1, then
    `--resume --epochs 2`: fold 1 still held the first run's package and checkpoints, whose settings differ only in
    --epochs (which a resume may change), so fold 1 continued the first run's checkpoint ('resuming from ... epoch
    2 of 2'): one table of two runs. --overwrite now removes the earlier run's fold packages and checkpoints before
    its first fold; the folds' logs and anything else stay."""
    from LiverTumorSegLib.package import read_package_metadata
    from LiverTumorSegLib.training.crossval import run_crossval

    torch.set_num_threads(1)
    torch.manual_seed(0)
    (tmp_path / "data").mkdir()
    data = write_phantom_cases(tmp_path / "data", 2, (8, 48, 48))
    first = tiny_config(data, tmp_path, epochs=1, iterations_per_epoch=1, folds=2, output="")
    out = tmp_path / "cv"
    run_crossval(first, out, log=lambda s: None)
    assert (out / "fold_1_train" / "checkpoints" / "last.pt").is_file()  # a finished fold keeps its checkpoint
    (out / "notes.txt").write_text("a user's file")
    second = first.updated({"epochs": 2})

    def ctrl_c_before_fold_1(fold_cfg, command="", log=print):
        if fold_cfg.fold == 1:
            raise KeyboardInterrupt()
        return train(fold_cfg, command=command, log=log)

    lines = []
    with pytest.raises(KeyboardInterrupt):
        run_crossval(second.updated({"overwrite": True}), out, train_fn=ctrl_c_before_fold_1, log=lines.append)
    assert not (out / "fold_1.safetensors").exists()
    assert not list((out / "fold_1_train" / "checkpoints").glob("*.pt"))
    assert (out / "fold_1_train" / "log.csv").is_file() and (out / "notes.txt").read_text() == "a user's file"
    assert any("--overwrite: removed the earlier run's 2 fold package(s)" in line for line in lines), lines
    lines = []
    table = run_crossval(second.updated({"resume": True}), out, log=lines.append)
    assert not any("resuming from" in line for line in lines), lines
    assert any("fold 1: " in line and "holds no checkpoint" in line for line in lines), lines
    for fold in range(2):
        training = read_package_metadata(out / f"fold_{fold}.safetensors")["training"]
        assert (training["config"]["epochs"], training["epochs_completed"]) == (2, 2), fold
        assert not training.get("resumes"), fold
    assert [row["epochs"] for row in table[:2]] == [2, 2]



def test_crossval_overwrite_names_the_log_dir_its_checkpoints_were_removed_from(tmp_path):
    """With --log-dir the folds' checkpoints lie in LOG_DIR/fold_<i>_train/checkpoints, not in the output folder,
    but the --overwrite line said it removed them 'from' the output folder."""
    from LiverTumorSegLib.training.config import TrainConfig
    from LiverTumorSegLib.training.crossval import _remove_replaced_folds

    logs, out = tmp_path / "logs", tmp_path / "cv"
    out.mkdir()
    cfg = TrainConfig().updated({"data": str(tmp_path / "data"), "folds": 2, "log_dir": str(logs), "overwrite": True})
    for fold in range(2):
        (out / f"fold_{fold}.safetensors").write_bytes(b"x")
        (logs / f"fold_{fold}_train" / "checkpoints").mkdir(parents=True)
        (logs / f"fold_{fold}_train" / "checkpoints" / "last.pt").write_bytes(b"x")
    lines = []
    _remove_replaced_folds(cfg, out, lines.append)
    assert not list(out.glob("*.safetensors")) and not list(logs.rglob("*.pt"))
    assert lines == [f"--overwrite: removed the earlier run's 2 fold package(s) from '{out}' and 2 checkpoint(s) "
                     f"from '{logs}' before training fold 0, so that no fold of that run is taken as this run's by a "
                     f"later --resume"], lines
    # without --log-dir both lie in the output folder: one folder named, as before
    for fold in range(2):
        (out / f"fold_{fold}.safetensors").write_bytes(b"x")
    lines = []
    _remove_replaced_folds(cfg.updated({"log_dir": ""}), out, lines.append)
    assert lines[0].startswith(f"--overwrite: removed the earlier run's 2 fold package(s) and 0 checkpoint(s) from "
                               f"'{out}' before training fold 0"), lines


def test_crossval_resume_trains_again_a_fold_killed_before_its_first_checkpoint(tmp_path):
    """A crossval killed (SIGKILL, out of memory) in fold 1 before that fold's first checkpoint left fold_1_train/ with
    tensorboard/ and an empty checkpoints/: --resume was refused ('Training folder ... holds 2 item(s) (e.g.
    'checkpoints') ... pass --overwrite'), and crossval --overwrite trains the finished fold 0 again. Now the fold
    starts over; a folder holding anything a run does not make is still refused."""
    from LiverTumorSegLib.errors import OutputExistsError
    from LiverTumorSegLib.training.crossval import run_crossval

    torch.set_num_threads(1)
    (tmp_path / "data").mkdir()
    data = write_phantom_cases(tmp_path / "data", 2, (8, 48, 48))
    cfg = tiny_config(data, tmp_path, epochs=1, iterations_per_epoch=1, folds=2, output="")

    def killed_in_fold_1(fold_cfg, command="", log=print):
        if fold_cfg.fold == 0:
            return train(fold_cfg, command=command, log=log)
        folder = Path(fold_cfg.log_dir)  # what the killed run had made by then
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "tensorboard").mkdir()
        (folder / "tensorboard" / "events.out.tfevents.1.host.1.1").write_bytes(b"events")
        raise KeyboardInterrupt()

    with pytest.raises(KeyboardInterrupt):
        run_crossval(cfg, tmp_path / "cv", train_fn=killed_in_fold_1, log=lambda s: None)
    fold0 = (tmp_path / "cv" / "fold_0.safetensors").read_bytes()
    shutil.copytree(tmp_path / "cv", tmp_path / "with_notes")
    (tmp_path / "with_notes" / "fold_1_train" / "notes.txt").write_text("a user's file")
    with pytest.raises(OutputExistsError, match="fold_1_train' already exists and holds 3 item"):
        run_crossval(cfg.updated({"resume": True}), tmp_path / "with_notes", log=lambda s: None)
    lines = []
    table = run_crossval(cfg.updated({"resume": True}), tmp_path / "cv", log=lines.append)
    assert any("fold 1: " in line and "holds no checkpoint" in line for line in lines)
    assert (tmp_path / "cv" / "fold_0.safetensors").read_bytes() == fold0  # the finished fold is kept
    assert (tmp_path / "cv" / "fold_1.safetensors").is_file() and [r["fold"] for r in table] == [0, 1, "mean"]


def test_crossval_with_more_folds_than_patients_is_refused_before_any_fold_banner(tmp_path):
    """`crossval --folds 3` on 2 patients printed '=== fold 0 (folds 0-2) ===' and then the refusal, as if fold 0 had
    started; the split is checked with the data now, before any fold."""
    from LiverTumorSegLib.training.crossval import run_crossval

    (tmp_path / "data").mkdir()
    data = write_phantom_cases(tmp_path / "data", 2, (4, 16, 16))
    lines, calls = [], []
    with pytest.raises(InputError, match="3-fold cross-validation needs at least 3 patients; the data has 2"):
        run_crossval(tiny_config(data, tmp_path, folds=3, output=""), tmp_path / "cv",
                     train_fn=lambda *a, **k: calls.append(a), log=lines.append)
    assert lines == [] and calls == [] and not (tmp_path / "cv").exists()


def test_crossval_overwrite_with_fewer_folds_names_the_earlier_runs_other_fold_packages(data_csv, tmp_path):
    """`crossval --overwrite --folds 2` in the folder of a 4-fold run left fold_2 and fold_3.safetensors beside the new
    2-fold table without a word, to be installed or ensembled with this run's folds as if they were its own."""
    from types import SimpleNamespace

    from LiverTumorSegLib.training.crossval import folds_beyond, run_crossval

    out = tmp_path / "cv"
    out.mkdir()
    for name in ("fold_2.safetensors", "fold_10.safetensors", "fold_3.safetensors", "fold_1.safetensors",
                 "fold_x.safetensors", "fold_2.safetensors.bak"):
        (out / name).write_bytes(b"an earlier run's")
    assert folds_beyond(out, 2) == ["fold_2.safetensors", "fold_3.safetensors", "fold_10.safetensors"]
    lines = []
    run_crossval(tiny_config(data_csv, tmp_path, folds=2, output="", overwrite=True), out, log=lines.append,
                 train_fn=lambda fold_cfg, command="", log=print: SimpleNamespace(
                     validation={"whole_volume": {"liver_dice": 0.9, "tumor_dice": 1.0}}, val_cases=["c"],
                     epochs_completed=1))
    said = [line for line in lines if line.startswith("warning: fold_2.safetensors, fold_3.safetensors, "
                                                      "fold_10.safetensors in")]
    assert len(said) == 1 and "no part of this 2-fold table" in said[0] and "fold_10_train" in said[0]
    assert (out / "fold_2.safetensors").read_bytes() == b"an earlier run's"  # named, not deleted


def test_crossval_resume_refuses_finished_folds_of_another_split(tmp_path):
    """An edited patient column between two crossval runs: --resume took the finished folds as they were, so the
    table validated some cases twice and one never (the options' text had not changed)."""
    from LiverTumorSegLib.training.crossval import run_crossval

    torch.set_num_threads(1)
    (tmp_path / "data").mkdir()
    data = write_phantom_cases(tmp_path / "data", 3, (8, 48, 48))
    cfg = tiny_config(data, tmp_path, epochs=1, iterations_per_epoch=1, folds=3, output="")
    run_crossval(cfg, tmp_path / "cv", log=lambda s: None)
    data.write_text(data.read_text().replace(",p0", ",px").replace(",p1", ",p0").replace(",px", ",p1"))
    with pytest.raises(InputError, match="was validated on .* but this split gives the fold"):
        run_crossval(cfg.updated({"resume": True}), tmp_path / "cv", log=lambda s: None)


def test_crossval_rerun_without_resume_after_an_interrupt_says_resume(tmp_path):
    """A crossval run stopped in fold 1 (before its table) and run again without --resume was refused by fold 0's
    train with 'Output fold_0.safetensors already exists; pass --overwrite', which would train the finished fold
    again; --resume, which keeps it, was not named."""
    from LiverTumorSegLib.errors import OutputExistsError
    from LiverTumorSegLib.training.crossval import run_crossval

    (tmp_path / "data").mkdir()
    data = write_phantom_cases(tmp_path / "data", 2, (8, 48, 48))
    cfg = tiny_config(data, tmp_path, epochs=1, iterations_per_epoch=1, folds=2, output="")
    (tmp_path / "cv").mkdir()
    (tmp_path / "cv" / "fold_0.safetensors").write_bytes(b"fold 0's package")
    calls = []
    with pytest.raises(OutputExistsError, match="fold_0.safetensors' is left from an earlier crossval run .* --resume"):
        run_crossval(cfg, tmp_path / "cv", train_fn=lambda *a, **k: calls.append(a), log=lambda s: None)
    assert calls == [] and (tmp_path / "cv" / "fold_0.safetensors").read_bytes() == b"fold 0's package"


def test_crossval_resume_refuses_finished_folds_trained_on_files_that_changed_since(tmp_path):
    """A label replaced between two crossval runs (same names, same options): --resume took every finished fold
    as it was, so the table mixed folds trained and scored on the old labels with folds trained on the new ones,
    without a word (train --resume refuses a checkpoint of changed files; README says crossval --resume checks
    its finished folds the same way)."""
    from LiverTumorSegLib.package import read_package_metadata
    from LiverTumorSegLib.training.crossval import run_crossval

    torch.set_num_threads(1)
    (tmp_path / "data").mkdir()
    data = write_phantom_cases(tmp_path / "data", 2, (8, 48, 48))
    cfg = tiny_config(data, tmp_path, epochs=1, iterations_per_epoch=1, folds=2, output="")
    run_crossval(cfg, tmp_path / "cv", log=lambda s: None)
    files = read_package_metadata(tmp_path / "cv" / "fold_0.safetensors")["training"]["data_files"]
    assert all(len(f["label_sha256"]) == 64 and len(f["image_sha256"]) == 64 for f in files)
    run_crossval(cfg.updated({"resume": True}), tmp_path / "cv", log=lambda s: None)  # unchanged files: resumes
    from LiverTumorSegLib.io import read_label_map

    label = read_label_map(data.parent / "lab1.nii.gz")
    changed = np.asarray(label.array).copy()
    changed[changed == 2] = 1  # the same case's label, its tumor now liver
    write_label_map(data.parent / "lab1.nii.gz", changed, label.geometry, overwrite=True)
    with pytest.raises(InputError, match=r"Fold 0's package .* other files for case\(s\) ct1 \(label\)"):
        run_crossval(cfg.updated({"resume": True}), tmp_path / "cv", log=lambda s: None)


# ----------------------------------------------------------------------------------------------- DDP
def _free_ports(count):
    """``count`` distinct TCP ports free on 127.0.0.1 now (one per process group a test's workers make)."""
    ports = set()
    while len(ports) < count:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.add(s.getsockname()[1])
    return sorted(ports)


def _ddp_jobs_worker(rank, world, jobs):
    """One rank of two-process runs made one after another in this process. ``jobs``: ``(port, config_json,
    out_dir, kill_at)`` each; a run interrupted (both ranks, KeyboardInterrupt) after ``kill_at`` steps (0: not
    interrupted) leaves its checkpoints only, a finished one also ``rank<r>.pt`` (the weights) and ``rank<r>.txt``
    ('<global step> <world size>') in ``out_dir``. Each run's Trainer makes its own process group on its own port
    and removes it when it ends (finished or interrupted), as a run of the command line does."""
    torch.set_num_threads(1)
    for port, config_json, out_dir, kill_at in jobs:
        os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
        trainer = Trainer(TrainConfig.from_json(config_json), log=lambda s: None)
        if kill_at:
            trainer.callbacks.append(RaiseAt(kill_at, KeyboardInterrupt()))
        trainer.setup()
        try:
            result = trainer.fit()
        except KeyboardInterrupt:
            continue
        torch.save({k: v.detach().clone() for k, v in trainer.model.named_parameters()},
                   os.path.join(out_dir, f"rank{rank}.pt"))
        with open(os.path.join(out_dir, f"rank{rank}.txt"), "w") as handle:
            handle.write(f"{result.global_step} {trainer.dist.world_size}")


def _ddp_batches_worker(batches):
    """Run ``batches`` (lists of ``(config_json, out_dir, kill_at)``) one after another, each in its own new pair of
    rank processes (gloo), forked from this process where the platform forks. This process is a spawned one that
    imported torch and the library once and trained nothing; a batch's ranks are new processes that never held an
    earlier batch's runs, as after a real kill, without importing everything again (~5 s of a 2-core CPU each)."""
    import importlib
    import multiprocessing

    import torch.multiprocessing as mp

    from LiverTumorSegLib.training.trainer import check_model_spec

    # what every rank would import on its own (~3 s of a 2-core CPU each): the network and its meta-device check,
    # and matplotlib for curves.png
    check_model_spec(DDP_MODEL["model"], 3, DDP_MODEL["model_options"])
    for name in ("matplotlib.backends.backend_agg", "matplotlib.figure"):
        importlib.import_module(name)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    for batch in batches:
        specs = [(port, *job) for port, job in zip(_free_ports(len(batch)), batch)]
        mp.start_processes(_ddp_jobs_worker, args=(2, specs), nprocs=2, join=True, start_method=method)


def _spawn_ddp_batches(batches):
    """Run ``batches`` (lists of ``(config, out_dir, kill_at)``, each run in order in one pair of rank processes)
    one after another, all from one spawned process (see :func:`_ddp_batches_worker`)."""
    import multiprocessing

    specs = [[(cfg.to_json(), str(out), kill) for cfg, out, kill in batch] for batch in batches]
    process = multiprocessing.get_context("spawn").Process(target=_ddp_batches_worker, args=(specs,))
    process.start()
    process.join()
    assert process.exitcode == 0, f"the DDP runs failed (exit code {process.exitcode}; their traceback above)"


DDP_MODEL = dict(model="attention_unet", model_options={"channels": [4, 8], "norm": "instance"})
"""The DDP runs' network: a 2-level attention U-Net (1,798 weights, instance norm as the U-Net's). Not MONAI's U-Net:
importing MONAI took each spawned process 5-8 s of the fixture's ~30 s; what these tests check (gradients averaged
over ranks, each rank's random state and running loss kept for a resume) is the trainer's, whatever the network."""

# the two interrupted-and-resumed runs: (kill after this many steps, config); the dropout run is killed at the end
# of its first epoch, the other in the middle of its only epoch
DDP_RESUMES = {"dropout": (3, dict(epochs=2, iterations_per_epoch=3,
                                   model_options=dict(DDP_MODEL["model_options"], dropout=0.3))),
               "mid_epoch": (2, dict(epochs=1, iterations_per_epoch=4))}


def _ddp_config(data_csv, out_dir, resume, config):
    """The tiny config of one run of :data:`DDP_RESUMES` (no augmentation or synthetic lesions) in ``out_dir``."""
    return tiny_config(data_csv, out_dir, batch_size=2, val_fraction=0.0, resume=resume,
                       augmentation={"enabled": False}, synthetic_lesions=False, **dict(DDP_MODEL, **config))


@pytest.fixture(scope="module")
def ddp_runs(data_csv, tmp_path_factory):
    """The DDP tests' two-process runs of tiny configs, made in two batches, each in one new pair of processes,
    where the tests made seven spawns (each spawn imported torch and the library again in both processes: ~14 s
    of a 2-core CPU, the runs themselves well under a second each); both pairs are forked from one spawned process
    that imported them once (:func:`_ddp_batches_worker`). First batch: the plain run (``identical``), then, for each
    run of :data:`DDP_RESUMES`, its uninterrupted twin (``<name>/whole``) and its interrupted run
    (``<name>/resumed``). Second batch, new processes as after a real kill: the ``--resume`` of each interrupted
    run, the dropout one first (so its random state is restored into processes that never trained). Returns the
    root folder."""
    root = tmp_path_factory.mktemp("ddp")
    (root / "identical").mkdir()
    first = [(tiny_config(data_csv, root / "identical", epochs=1, iterations_per_epoch=2, batch_size=2,
                          val_fraction=0.0, **DDP_MODEL), root / "identical", 0)]
    second = []
    for name, (kill_at, config) in DDP_RESUMES.items():
        whole, resumed = root / name / "whole", root / name / "resumed"
        whole.mkdir(parents=True)
        resumed.mkdir()
        first += [(_ddp_config(data_csv, whole, False, config), whole, 0),
                  (_ddp_config(data_csv, resumed, False, config), resumed, kill_at)]
        second.append((_ddp_config(data_csv, resumed, True, config), resumed, 0))
    _spawn_ddp_batches([first, second])
    return root


GLOO = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                          reason="torch.distributed with gloo is not available")


@GLOO
def test_two_process_ddp_gloo_ends_with_identical_weights(ddp_runs):
    out = ddp_runs / "identical"
    w0 = torch.load(out / "rank0.pt", weights_only=True)
    w1 = torch.load(out / "rank1.pt", weights_only=True)
    assert (out / "rank0.txt").read_text() == "2 2" == (out / "rank1.txt").read_text()
    for key in w0:
        assert torch.equal(w0[key], w1[key]), key
    assert (out / "model.safetensors").is_file()


@GLOO
def test_two_process_ddp_resume_with_dropout_is_bit_for_bit(ddp_runs):
    """Rank 1 was reseeded on resume while its uninterrupted twin kept drawing: with dropout the resumed run's
    weights differed (2.9e-4). Each rank now saves its own random state beside last.pt."""
    results = {name: [torch.load(ddp_runs / "dropout" / name / f"rank{rank}.pt", weights_only=True)
                      for rank in range(2)] for name in ("whole", "resumed")}
    assert any((ddp_runs / "dropout" / "resumed").rglob("last_rng_rank1.pt"))  # beside last.pt, wherever the log dir is
    for key in results["whole"][0]:
        assert torch.equal(results["whole"][0][key], results["resumed"][0][key]), key
        assert torch.equal(results["whole"][1][key], results["resumed"][1][key]), key


@GLOO
def test_two_process_ddp_resume_mid_epoch_logs_the_same_train_loss(ddp_runs):
    """Killed mid-epoch and resumed, every rank took rank 0's running loss from last.pt, so the epoch's mean over
    ranks counted rank 0's early steps twice (1.45827 against 1.45810 in an audit). Each rank now keeps its own."""
    from LiverTumorSegLib.training.logs import read_log

    losses = {name: [row["train_loss"] for row in read_log(next((ddp_runs / "mid_epoch" / name).rglob("log.csv")))]
              for name in ("whole", "resumed")}
    assert losses["resumed"] == losses["whole"] and len(losses["whole"]) == 1


def test_bad_model_spec_fails_before_reading_data(tmp_path):
    """An unknown architecture or option is reported at once, before minutes of data caching, and leaves
    no training folder behind."""
    from LiverTumorSegLib.errors import InputError

    missing = tmp_path / "no_such.csv"  # never read: the model check comes first
    for model, options, message in (("vit", {}, "Unknown model architecture 'vit'"),
                                     ("unet", {"chanels": [4]}, "Unknown option")):
        cfg = TrainConfig.from_dict(dict(data=str(missing), model=model, model_options=options,
                                         output=str(tmp_path / "m.safetensors")))
        with pytest.raises(InputError, match=message):
            train(cfg, log=lambda s: None)
    cfg = TrainConfig.from_dict(dict(data=str(missing), output=str(tmp_path / "m.safetensors")))
    with pytest.raises(InputError, match="does not exist"):
        train(cfg, log=lambda s: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_resolve_amp_is_bf16_on_cuda_only(monkeypatch):
    """auto: bf16 on a CUDA GPU computing it natively (compute capability 8.0 on), fp16 on an older one (a T4 got bf16:
    torch's is_bf16_supported counts emulation; the GPU code audit), none on the CPU."""
    from LiverTumorSegLib.training.trainer import amp_name, resolve_amp

    asked = []
    capability = {"now": (8, 0)}

    def device_capability(index):
        asked.append(index)
        return capability["now"]

    monkeypatch.setattr(torch.cuda, "get_device_capability", device_capability)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert resolve_amp("auto", torch.device("cpu")) is None
    assert resolve_amp("auto", torch.device("cuda")) is torch.bfloat16
    assert resolve_amp("fp16", torch.device("cuda")) is torch.float16
    assert resolve_amp("off", torch.device("cuda")) is None
    capability["now"] = (7, 5)  # a T4
    assert resolve_amp("auto", torch.device("cuda:1")) is torch.float16 and asked[-1] == 1
    with pytest.raises(InputError, match="cuda:1 has no native bf16"):
        resolve_amp("bf16", torch.device("cuda:1"))
    assert resolve_amp("bf16", torch.device("cpu")) is torch.bfloat16  # the CPU's own warning says if it is emulated
    assert [amp_name(d) for d in (torch.bfloat16, torch.float16, None)] == ["bf16", "fp16", "off"]


def test_a_cuda_device_beyond_the_gpus_is_refused_before_any_work(monkeypatch):
    """train --device cuda:7 on a 2-GPU machine hashed and cached every case, then ended in an internal error."""
    from LiverTumorSegLib.training.trainer import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(InputError, match="'cuda:7' requested, but this computer has 2 GPU"):
        resolve_device("cuda:7")
    assert resolve_device("cuda:1") == torch.device("cuda:1")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_with_bf16_autocast_and_deep_supervision(data_csv, tmp_path):
    """GPU path: AMP (bf16 autocast), deep-supervision loss, finite falling loss, package reloads on CPU."""
    from LiverTumorSegLib.package import load_model_package

    config = tiny_config(data_csv, tmp_path, device="cuda", amp="auto", model="attention_unet",
                         model_options={"channels": [8, 16, 32], "deep_supervision": True},
                         epochs=3, iterations_per_epoch=10)
    result = train(config, log=lambda *a, **k: None)
    losses = [row["train_loss"] for row in result.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    package = load_model_package(result.package_path, device="cpu")
    in_channels = int(package.metadata["architecture"]["in_channels"])
    assert package.model(torch.zeros(1, in_channels, 32, 32)).shape == (1, 3, 32, 32)


def test_plateau_schedule_follows_the_validation_loss_only(data_csv, tmp_path):
    """With validation every 2nd epoch, the epochs between stepped the plateau scheduler on the training loss, so a
    training loss became its 'best' and the rate was halved although the validation loss fell."""
    torch.set_num_threads(1)
    cfg = tiny_config(data_csv, tmp_path, epochs=4, iterations_per_epoch=2, schedule="plateau",
                      plateau_patience=0, val_every=2)
    trainer = Trainer(cfg, log=lambda s: None)
    trainer.setup()
    result = trainer.fit()
    val_losses = [row["val_loss"] for row in result.history if not np.isnan(row["val_loss"])]
    assert len(val_losses) == 2
    assert trainer.scheduler.best == pytest.approx(min(val_losses))


def test_whole_volume_validation_runs_on_non_hu_data_trained_with_allow_non_hu(data_csv, tmp_path):
    # segment_volume checks its input now; the validation Segmenter was built without allow_non_hu, so a model
    # trained on normalised data lost its whole-volume validation ("skipped (InputError ...)")
    from LiverTumorSegLib.io import read_volume, write_volume
    from LiverTumorSegLib.package import read_package_metadata
    from LiverTumorSegLib.volume import CTVolume

    torch.set_num_threads(1)
    root = tmp_path / "normalised"
    root.mkdir()
    rows = data_csv.read_text().splitlines()
    for row in rows[1:]:
        image, label, _ = row.split(",")
        volume = read_volume(data_csv.parent / image)
        scaled = (volume.array.astype(np.float32) + 1024.0) / 4096.0      # 0..1: refused as not HU
        write_volume(root / image, CTVolume(scaled, volume.geometry))
        (root / label).write_bytes((data_csv.parent / label).read_bytes())
    (root / "cases.csv").write_text("\n".join(rows) + "\n")
    preprocessing = dict(PREPROCESSING, channels=[{"kind": "zscore"}])
    cfg = tiny_config(root / "cases.csv", tmp_path / "run", epochs=1, iterations_per_epoch=2, allow_non_hu=True,
                      preprocessing=preprocessing, augmentation={"enabled": False})
    (tmp_path / "run").mkdir()
    result = train(cfg, command="test", log=lambda s: None)
    whole = read_package_metadata(result.package_path)["validation"].get("whole_volume")
    assert whole and len(whole["cases"]) == len(result.val_cases)


def test_git_commit_is_read_from_a_checkout_a_linked_worktree_and_packed_refs(tmp_path):
    # the package records the library's commit; a run from a `git worktree add` checkout (a .git *file*)
    # recorded none (default model v3 was trained so), and neither did a branch whose ref was only packed
    from LiverTumorSegLib.training.trainer import _git_commit

    main_sha, packed_sha, detached_sha = "a" * 40, "b" * 40, "c" * 40
    repo = tmp_path / "repo"
    (repo / ".git" / "refs" / "heads").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / ".git" / "refs" / "heads" / "main").write_text(main_sha + "\n")
    (repo / ".git" / "packed-refs").write_text(f"# pack-refs with: peeled\n{packed_sha} refs/heads/old\n")
    assert _git_commit(repo) == main_sha
    worktree_git = repo / ".git" / "worktrees" / "wt"
    worktree_git.mkdir(parents=True)
    (worktree_git / "commondir").write_text("../..\n")
    tree = tmp_path / "wt"
    tree.mkdir()
    (tree / ".git").write_text(f"gitdir: {worktree_git}\n")
    (worktree_git / "HEAD").write_text(detached_sha + "\n")
    assert _git_commit(tree) == detached_sha                    # detached worktree
    (worktree_git / "HEAD").write_text("ref: refs/heads/main\n")
    assert _git_commit(tree) == main_sha                        # branch ref in the shared directory
    (worktree_git / "HEAD").write_text("ref: refs/heads/old\n")
    assert _git_commit(tree) == packed_sha                      # packed in the shared directory
    (tree / ".git").write_text("gitdir: ../repo/.git/worktrees/wt\n")
    assert _git_commit(tree) == packed_sha                      # a relative gitdir
    (worktree_git / "HEAD").write_text("ref: refs/heads/gone\n")
    assert _git_commit(tree) is None
    assert _git_commit(tmp_path / "not_a_checkout") is None


def test_the_package_records_the_software_the_run_started_with(data_csv, tmp_path, monkeypatch):
    """A commit made (or a file edited) while a run trained was recorded as the code that trained: the software was
    read when the package was written (a fine-tune named the version bump committed 2 minutes into its 17). Here the
    'checkout' changes after the first epoch; the package names the one the run started with."""
    import LiverTumorSegLib.training.trainer as trainer_module

    checkout = {"git_commit": "commit-at-start"}
    monkeypatch.setattr(trainer_module, "software_environment", lambda: dict(checkout))

    class CommitDuringTraining:
        def on_epoch_end(self, row):
            checkout["git_commit"] = "commit-made-while-it-trained"

    torch.set_num_threads(1)
    cfg = tiny_config(data_csv, tmp_path / "run", epochs=2, iterations_per_epoch=1, val_fraction=0)
    (tmp_path / "run").mkdir()
    result = train(cfg, callbacks=[CommitDuringTraining()], log=lambda s: None)
    from LiverTumorSegLib.package import read_package_metadata

    assert checkout["git_commit"] == "commit-made-while-it-trained"  # the callback ran
    assert read_package_metadata(result.package_path)["training"]["environment"] == {"git_commit": "commit-at-start"}


def test_the_library_source_hash_tells_edited_code_from_the_commit(tmp_path):
    """A package trained from uncommitted edits recorded only the commit checked out; the source hash differs
    as soon as one file's bytes or name differ, and compiled files do not count."""
    from LiverTumorSegLib.training.trainer import library_source_sha256, software_environment

    library = tmp_path / "LiverTumorSegLib"
    (library / "io").mkdir(parents=True)
    (library / "__init__.py").write_text("")
    (library / "io" / "nifti.py").write_text("SCALE = 1\n")
    first = library_source_sha256(library)
    assert library_source_sha256(library) == first and len(first) == 64
    (library / "__pycache__").mkdir()
    (library / "__pycache__" / "x.py").write_text("compiled copies are no source")
    (library / "notes.txt").write_text("not Python")
    assert library_source_sha256(library) == first
    (library / "io" / "nifti.py").write_text("SCALE = 2\n")
    edited = library_source_sha256(library)
    assert edited != first
    (library / "io" / "nifti.py").rename(library / "io" / "nrrd.py")
    assert library_source_sha256(library) not in (first, edited)
    assert software_environment()["library_sha256"] == library_source_sha256()
    # a Windows checkout of the same code (CRLF line ends) is the same code (the portability audit)
    renamed = library_source_sha256(library)
    (library / "io" / "nrrd.py").write_bytes(b"SCALE = 2\r\n")
    assert library_source_sha256(library) == renamed


def test_a_fold_whose_whole_volume_validation_failed_is_named_and_left_out_of_the_mean():
    """The fold's slice-level numbers stood in its row (tumor-free cases left out of tumor Dice: 2.8x too high in
    an audit) and were averaged with the other folds' whole-volume ones, without a word."""
    import types

    from LiverTumorSegLib.training.crossval import fold_row, mean_row

    whole = types.SimpleNamespace(val_cases=["a"], epochs_completed=1, validation={
        "liver_dice": 0.5, "tumor_dice": 0.5,
        "whole_volume": {"liver_dice": 0.9, "tumor_dice": 0.2, "cases": [{"reference_has_tumor": True}]}})
    failed = types.SimpleNamespace(val_cases=["b"], epochs_completed=1,
                                   validation={"liver_dice": 0.8, "tumor_dice": 0.6})
    rows = [fold_row(0, whole), fold_row(1, failed)]
    assert rows[0]["validation"] == "whole volume" and rows[0]["liver_dice"] == 0.9
    assert np.isnan(rows[1]["liver_dice"]) and np.isnan(rows[1]["tumor_dice"])
    assert rows[1]["validation"].startswith("whole-volume validation failed") and "liver 0.800" in rows[1]["validation"]
    mean = mean_row(rows)
    assert mean["liver_dice"] == pytest.approx(0.9) and mean["tumor_dice"] == pytest.approx(0.2)


def test_a_diverging_run_is_a_user_error_not_an_internal_one(data_csv, tmp_path, monkeypatch):
    """A NaN loss raised FloatingPointError, which the command line printed as 'internal error ... please report
    it' (exit 1), after torch's warning about float() on a tensor requiring grad; the hint said 'amp: off' on a
    CPU run without mixed precision."""
    import warnings

    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.training import losses

    original = losses.SegmentationLoss.forward
    monkeypatch.setattr(losses.SegmentationLoss, "forward",
                        lambda self, logits, target: original(self, logits, target) * float("nan"))
    out = tmp_path / "run"
    out.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no UserWarning from float() of a tensor that requires grad
        with pytest.raises(InputError, match=r"The training loss became nan at step 1: the run diverged\. Lower "
                                             r"the learning rate \(--lr\), or add gradient clipping"):
            train(tiny_config(data_csv, out, device="cpu", amp="off"))


def test_a_run_stopped_in_its_final_validation_resumes_that_validation(data_csv, tmp_path, monkeypatch):
    """The package was written as 'completed' before the whole-volume validation; Ctrl-C there left it without
    the validation, `train --resume` refused ('nothing to resume') and `crossval --resume` took the fold as
    finished with NaN Dice. The package says 'validating' until it is done, and --resume validates again."""
    import LiverTumorSegLib.inference as inference
    from LiverTumorSegLib.package import read_package_metadata

    out = tmp_path / "run"
    out.mkdir()
    original = inference.Segmenter.predict  # the whole-volume validation's network pass

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(inference.Segmenter, "predict", interrupted)
    said = []
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(data_csv, out, epochs=1), log=said.append)
    # it said only 'interrupted' (the command's line): nothing of the package or of --resume
    assert f"the model package {out / 'model.safetensors'} is written but its validation is unfinished" in said[-1]
    assert said[-1].endswith("Rerun the same command with --resume to finish the validation.")
    training = read_package_metadata(out / "model.safetensors")["training"]
    assert training["stop_reason"] == "validating" and training["final_stop_reason"] == "completed"
    monkeypatch.setattr(inference.Segmenter, "predict", original)
    result = train(tiny_config(data_csv, out, epochs=1, resume=True))
    meta = read_package_metadata(out / "model.safetensors")
    assert meta["training"]["stop_reason"] == "completed" and "final_stop_reason" not in meta["training"]
    assert "whole_volume" in meta["validation"] and result.stop_reason == "completed"
    uninterrupted = tmp_path / "again"
    uninterrupted.mkdir()
    train(tiny_config(data_csv, uninterrupted, epochs=1, cache_dir=str(out.parent / "cache")))
    assert read_package_metadata(uninterrupted / "model.safetensors")["validation"]["whole_volume"] == \
        meta["validation"]["whole_volume"]
    # with more --epochs asked for, --resume trains on (it only validated the old package again)
    longer = tmp_path / "longer"  # (a schedule that does not depend on the epochs: cosine refuses another count)
    longer.mkdir()
    monkeypatch.setattr(inference.Segmenter, "predict", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(data_csv, longer, epochs=1, schedule="none"))
    monkeypatch.setattr(inference.Segmenter, "predict", original)
    result = train(tiny_config(data_csv, longer, epochs=2, resume=True, schedule="none"))
    assert result.epochs_completed == 2 and read_package_metadata(longer / "model.safetensors")["training"]["stop_reason"] \
        == "completed"


def test_resuming_says_which_epoch_of_how_many_and_a_finished_run_says_it_is_finished(data_csv, tmp_path):
    """Resuming a finished 2-epoch run said 'resuming ...: epoch 3, step 6', as if a third epoch were to come."""
    from LiverTumorSegLib.training.trainer import train

    cfg = tiny_config(data_csv, tmp_path, epochs=2, iterations_per_epoch=3, val_fraction=0.0)
    with pytest.raises(RuntimeError, match="killed"):
        train(cfg, callbacks=[RaiseAt(4, RuntimeError("killed"))], log=lambda s: None)
    lines = []
    train(cfg.updated({"resume": True}), log=lines.append)
    assert any(": epoch 2 of 2, global step 3" in line for line in lines), lines  # the epoch-1 checkpoint
    lines.clear()
    train(cfg.updated({"resume": True, "overwrite": True}), log=lines.append)
    assert any("all 2 epochs were trained (6 steps); writing the package" in line for line in lines), lines


def test_a_file_put_at_the_output_while_the_run_trains_is_kept(data_csv, tmp_path, monkeypatch):
    """Known limit until 25 Nov 2026: a file created at -o while training ran (a user's copy of an older package,
    another run's result) was replaced by the package at the end without a word. It is now kept, and the package
    is written beside it under a free name the log names."""
    out = tmp_path / "run"
    out.mkdir()
    config = tiny_config(data_csv, out, epochs=1)
    users = b"a file of the user's"
    validate = Trainer._validate

    def validate_and_meddle(self):
        if not (out / "model.safetensors").exists():
            (out / "model.safetensors").write_bytes(users)
        return validate(self)

    monkeypatch.setattr(Trainer, "_validate", validate_and_meddle)
    lines = []
    result = train(config, log=lines.append)
    assert (out / "model.safetensors").read_bytes() == users
    assert result.package_path.parent == out and result.package_path.name.startswith("model.")
    assert result.package_path.name.endswith(".safetensors") and result.package_path.name != "model.safetensors"
    from LiverTumorSegLib.package import load_model_package
    assert load_model_package(result.package_path).metadata["training"]["stop_reason"] == "completed"
    assert any("was created or replaced by another program" in line and str(result.package_path) in line
               for line in lines)


def test_a_resumed_or_overwritten_run_still_replaces_its_own_package(data_csv, tmp_path):
    """The guard above leaves -o to a run that may replace it: --overwrite replaces the file there at the start."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"old")
    result = train(tiny_config(data_csv, out, epochs=1, overwrite=True), log=lambda line: None)
    assert result.package_path == out / "model.safetensors" and (out / "model.safetensors").read_bytes() != b"old"


def test_fp32_training_and_validation_run_where_torch_refuses_a_float32_cpu_autocast(data_csv, tmp_path, monkeypatch):
    """torch 2.1 (the package allows torch>=2.1) raised "Currently, AutocastCPU only support Bfloat16" for
    ``torch.autocast("cpu", dtype=torch.float32, enabled=False)``, the placeholder fp32 training and validation
    passed it, so every CPU training failed there (seen on torch 2.1.0). Here torch.autocast behaves as 2.1's."""
    real_autocast = torch.autocast

    def autocast_of_torch_2_1(device_type, dtype=None, enabled=True, cache_enabled=None):
        if device_type == "cpu" and dtype is not None and dtype != torch.bfloat16:
            raise RuntimeError("Currently, AutocastCPU only support Bfloat16 as the autocast_cpu_dtype")
        return real_autocast(device_type, dtype=dtype, enabled=enabled)

    monkeypatch.setattr(torch, "autocast", autocast_of_torch_2_1)
    torch.set_num_threads(1)
    cfg = tiny_config(data_csv, tmp_path / "run", epochs=1, iterations_per_epoch=2, val_every=1,
                      augmentation={"enabled": False})
    (tmp_path / "run").mkdir()
    result = train(cfg, command="livertumorseg train test", log=lambda s: None)
    assert result.global_step == 2 and result.stop_reason == "completed"
    assert "val_loss" in result.history[-1], result.history[-1]  # validation ran (its forward passes too)


def test_resume_without_a_checkpoint_keeps_a_users_folder_as_a_new_run_does(data_csv, tmp_path):
    """--resume in a --log-dir holding the user's files but no checkpoint started a new run there and deleted its
    tensorboard/ folder and log.csv without a word (a job script that always passes --resume; the training audit).
    Without a checkpoint, --resume is held to a new run's refusal."""
    from LiverTumorSegLib.errors import OutputExistsError

    folder = tmp_path / "mine"
    (folder / "tensorboard" / "exp_old").mkdir(parents=True)
    (folder / "tensorboard" / "exp_old" / "events.txt").write_text("x")
    (folder / "log.csv").write_text("a,b\n")
    config = tiny_config(data_csv, tmp_path).updated({"resume": True, "log_dir": str(folder), "epochs": 1})
    with pytest.raises(OutputExistsError, match="already exists and holds"):
        train(config, log=lambda *a, **k: None)
    assert (folder / "tensorboard" / "exp_old" / "events.txt").read_text() == "x"
    assert (folder / "log.csv").read_text() == "a,b\n"
    # a run killed (kill -9, out of memory) before its first checkpoint left tensorboard/ and an empty checkpoints/:
    # its --resume was told of 'a folder holding 2 item(s)', as if it were the user's; now it is told why
    killed = tmp_path / "killed"
    (killed / "checkpoints").mkdir(parents=True)
    (killed / "tensorboard").mkdir()
    (killed / "tensorboard" / "events.out.tfevents.1.host.1.1").write_bytes(b"events")
    with pytest.raises(OutputExistsError, match=r"--resume found no checkpoint in .* stopped \(kill -9, out of "
                                                r"memory, power cut\) before its first one.* Pass --overwrite"):
        train(config.updated({"log_dir": str(killed)}), log=lambda *a, **k: None)
    assert (killed / "tensorboard" / "events.out.tfevents.1.host.1.1").read_bytes() == b"events"


def test_a_run_the_time_limit_stops_in_its_first_epoch_leaves_a_log_row_that_resume_replaces(data_csv, tmp_path,
                                                                                             monkeypatch):
    """A run stopped by --max-time-minutes before its first epoch ended left no log.csv (nor curves.png): nothing
    in its folder said what it had done. Its stopped epoch gets a row (the steps it trained, no validation), which
    --resume replaces with the whole epoch's."""
    from LiverTumorSegLib.training.logs import read_log

    torch.set_num_threads(1)
    monkeypatch.setattr(Trainer, "_time_up", lambda self: self.global_step == 2)  # epoch 1's second step (of 3)
    result = train(tiny_config(data_csv, tmp_path), log=lambda s: None)
    assert result.stop_reason == "time_limit" and result.epochs_completed == 0
    log_dir = tmp_path / "model_train"
    rows = read_log(log_dir / "log.csv")
    assert [(r["epoch"], r["global_step"], r["epoch_steps"], r["val_liver_dice"]) for r in rows] == [
        ("1", "2", "2", "")]
    assert math.isfinite(float(rows[0]["train_loss"])) and (log_dir / "curves.png").is_file()
    monkeypatch.undo()
    train(tiny_config(data_csv, tmp_path, resume=True), log=lambda s: None)
    rows = read_log(log_dir / "log.csv")
    assert [(r["epoch"], r["global_step"], r["epoch_steps"]) for r in rows] == [("1", "3", "3"), ("2", "6", "3")]


def test_a_resume_with_another_number_of_processes_is_refused_and_the_package_records_the_step_batch(
        data_csv, tmp_path, monkeypatch):
    """A 2-process torchrun run resumed in one process went on with half the patches per step (other ranks'
    samples too) without a word, and the package recorded only batch_size (per process) and the last world size.
    The checkpoint records its process count; the package the patches each step averaged."""
    from LiverTumorSegLib.package import read_package_metadata
    from LiverTumorSegLib.training.checkpoint import save_checkpoint

    torch.set_num_threads(1)
    monkeypatch.setattr(Trainer, "_time_up", lambda self: self.global_step == 1)
    result = train(tiny_config(data_csv, tmp_path), log=lambda s: None)
    assert read_package_metadata(result.package_path)["training"]["patches_per_step"] == 4  # batch 4, 1 process
    last = tmp_path / "model_train" / "checkpoints" / "last.pt"
    payload = load_checkpoint(last)
    assert payload["world_size"] == 1
    save_checkpoint(last, dict(payload, world_size=2))  # as a 2-process run writes it
    monkeypatch.undo()
    with pytest.raises(InputError, match=r"trained by 2 processes \(torchrun --nproc_per_node 2\), 8 patches per "
                                         r"step .*this run has one process, which would train 4 per step"):
        train(tiny_config(data_csv, tmp_path, resume=True), log=lambda s: None)


def test_a_cpu_resume_with_another_thread_count_says_it_is_not_bit_for_bit(data_csv, tmp_path, monkeypatch):
    """On the CPU a resumed run is bit for bit the uninterrupted one only with the same torch thread count (the
    kernels' sums come in another order: 1 against 2 threads gave weights 5e-4 apart after 4 steps); the README
    promised it without that condition, and a resume on another machine said nothing."""
    torch.set_num_threads(1)
    monkeypatch.setattr(Trainer, "_time_up", lambda self: self.global_step == 1)
    train(tiny_config(data_csv, tmp_path, epochs=1), log=lambda s: None)
    assert load_checkpoint(tmp_path / "model_train" / "checkpoints" / "last.pt")["cpu_threads"] == 1
    monkeypatch.undo()
    said = []
    try:
        torch.set_num_threads(2)
        train(tiny_config(data_csv, tmp_path, epochs=1, resume=True, device="cpu"), log=said.append)
    finally:
        torch.set_num_threads(1)
    assert any("saved by a run with 1 CPU thread(s) and this one has 2" in line and "OMP_NUM_THREADS=1" in line
               for line in said), said


def test_an_interrupt_checkpoint_that_cannot_be_written_is_not_announced_as_saved(data_csv, tmp_path, monkeypatch):
    """Ctrl-C with a full disk: 'interrupted; checkpoint saved to ...' was printed before the save, which then
    failed; the user read that the run could be resumed from a checkpoint that was not there."""
    import errno

    import LiverTumorSegLib.training.trainer as trainer_module

    torch.set_num_threads(1)
    real_save = trainer_module.save_checkpoint

    def full_disk_after_step_1(path, payload):
        if Path(path).name == "last.pt" and payload.get("global_step") == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(path, payload)

    monkeypatch.setattr(trainer_module, "save_checkpoint", full_disk_after_step_1)
    said = []
    with pytest.raises(OSError):
        train(tiny_config(data_csv, tmp_path, checkpoint_every_steps=1), callbacks=[RaiseAt(2, KeyboardInterrupt())],
              log=said.append)
    assert not any("checkpoint saved" in line for line in said), said
    assert load_checkpoint(tmp_path / "model_train" / "checkpoints" / "last.pt")["global_step"] == 1  # kept


def test_a_package_trained_without_tumors_says_so_in_train_and_in_segment(data_csv, tmp_path):
    """A liver-only training (tumor merged into liver by --label-map, synthetic lesions off) trained without a word,
    and segment with its package reported "tumors: 0" as if it had looked for them. train now warns, the package
    records how many training labels held tumor, and segment's report warns that the model does not segment
    tumors (inference.segmenter.untrained_tumor_warnings, tested with the segmenter in test_segmenter.py)."""
    from LiverTumorSegLib.inference.segmenter import untrained_tumor_warnings
    from LiverTumorSegLib.package import read_package_metadata

    torch.set_num_threads(1)
    said = []
    cfg = tiny_config(data_csv, tmp_path / "run", epochs=1, iterations_per_epoch=1, augmentation={"enabled": False},
                      synthetic_lesions=False, label_map={"1": 1, "2": 1}, val_fraction=0.0)
    (tmp_path / "run").mkdir()
    result = train(cfg, command="livertumorseg train test", log=said.append)
    assert any("no training case's label holds tumor (2) and synthetic lesions are off" in s for s in said)
    metadata = read_package_metadata(result.package_path)
    assert metadata["training"]["tumor_label_cases"] == 0 and metadata["training"]["synthetic_lesions"] is False
    assert any("trained without tumors" in w for w in untrained_tumor_warnings(metadata))


def test_data_loading_workers_without_shared_memory_are_said_with_what_to_do(data_csv, tmp_path, monkeypatch):
    """The workers' queues and batches live in shared memory (/dev/shm; 64 MB in a Docker container unless started
    with --shm-size). Where their locks did not fit, 'train' ended with "No space left for a file ...; free disk
    space or choose another output location" and a traceback of torch's half-built iterator; where a batch did not,
    with an internal error. Now an InputError says so, with --num-workers 0 and --shm-size. The shortage is made by
    refusing to create locks (ENOSPC, as sem_open answers on a full /dev/shm)."""
    import errno
    import multiprocessing.synchronize

    def no_shared_memory(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(multiprocessing.synchronize.SemLock, "__init__", no_shared_memory)
    (tmp_path / "run").mkdir()
    with pytest.raises(InputError, match=r"The 1 data-loading worker process\(es\) of the training ran out of shared "
                                         r"memory.*\(\[Errno 28\] No space left on device\)\. Pass num_workers=0 .*"
                                         r"--shm-size"):
        train(tiny_config(data_csv, tmp_path / "run", epochs=1, iterations_per_epoch=1, val_fraction=0.0,
                          num_workers=1), log=lambda s: None)


def test_the_loader_workers_get_a_setup_that_watches_this_training_process(data_csv, tmp_path):
    """The DataLoader's worker_init_fn names this process (test_training_kill: a worker of a killed training ends)
    and survives pickling, as spawn and forkserver send it to each worker."""
    import os
    import pickle

    from LiverTumorSegLib.processes import process_start_time
    from LiverTumorSegLib.training.interrupts import WorkerSetup

    (tmp_path / "run").mkdir()
    # segnet: no MONAI import (seconds) for a test of the loader alone
    trainer = Trainer(tiny_config(data_csv, tmp_path / "run", num_workers=1, model="segnet",
                                  model_options={"width": 0.0625}), log=lambda s: None)
    trainer.setup()
    setup = pickle.loads(pickle.dumps(trainer.loader.worker_init_fn))
    assert isinstance(setup, WorkerSetup)
    assert (setup.training_pid, setup.training_start_time) == (os.getpid(), process_start_time(os.getpid()))


def test_every_rank_checks_the_training_folder_before_rank_0_makes_anything_in_it(data_csv, tmp_path, monkeypatch):
    """Under torchrun rank 0 made the slice cache and checkpoints/ right after its own folder check; a rank that came
    to its check later (crossval: each fold at its own pace) found 'checkpoints' there and refused the run as a
    folder of the user's. Setup now waits at a barrier after the check, before anything is made (the order of
    events is what is tested: the race itself needs two processes and luck)."""
    import LiverTumorSegLib.training.trainer as trainer_module

    events = []
    real_check, real_fingerprint = Trainer._check_outputs, trainer_module.data_fingerprint

    def check(self):
        events.append("check")
        return real_check(self)

    def fingerprint(*args, **kwargs):
        events.append("cache made")
        return real_fingerprint(*args, **kwargs)

    monkeypatch.setattr(Trainer, "_check_outputs", check)
    monkeypatch.setattr(trainer_module, "data_fingerprint", fingerprint)
    monkeypatch.setattr(trainer_module, "barrier", lambda info: events.append("barrier"))
    (tmp_path / "run").mkdir()
    trainer = Trainer(tiny_config(data_csv, tmp_path / "run", model="segnet", model_options={"width": 0.0625}),
                      log=lambda s: None)
    trainer.setup()
    assert events.index("check") < events.index("barrier") < events.index("cache made")


@pytest.fixture
def no_start_method_chosen():
    """The process-wide multiprocessing start method unchosen (as in a fresh notebook), the test's own restored
    afterwards."""
    import multiprocessing

    before = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method(None, force=True)
    yield
    multiprocessing.set_start_method(before, force=True)


def test_training_with_workers_leaves_the_process_wide_start_method_unchosen(data_csv, tmp_path,
                                                                             no_start_method_chosen):
    """train() with worker processes fixed multiprocessing's start method for the whole process (None before,
    'fork' after on Linux), so a caller's later multiprocessing.set_start_method('spawn') raised 'context has
    already been set'. The workers now start from a context object of that method; they still start and run."""
    import multiprocessing

    from LiverTumorSegLib.training.shared_memory import worker_context

    (tmp_path / "run").mkdir()
    train(tiny_config(data_csv, tmp_path / "run", epochs=1, iterations_per_epoch=2, val_fraction=0.0,
                      num_workers=1, model="segnet", model_options={"width": 0.0625}), log=lambda s: None)
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert multiprocessing.get_start_method(allow_none=True) is None
    assert worker_context().get_start_method() == multiprocessing.get_all_start_methods()[0]  # the default
    multiprocessing.set_start_method("spawn")  # the caller's own choice, after a training: still free
    assert worker_context().get_start_method() == "spawn"  # and the training's workers would follow it


def _parameters(model):
    """The model's trainable parameters by name, copied (buffers such as norm statistics left out)."""
    return {name: value.detach().clone() for name, value in model.named_parameters()}


def _step_length(before, after):
    """Euclidean length of the change between two parameter dicts (float64 sum over every parameter)."""
    return math.sqrt(sum(float(((after[k] - before[k]).double() ** 2).sum()) for k in before))


def test_grad_clip_bounds_the_length_of_an_sgd_step(data_csv, tmp_path):
    """--grad-clip C clips the gradient's global norm to C before the optimizer step; no test ran it. Plain SGD (no
    momentum, no weight decay), one step at lr 0.1: the weights move by exactly lr x C = 1e-4 with C = 1e-3 (the
    tiny net's gradient is far longer), and by far more without clipping."""
    lengths = {}
    for clip in (0.0, 1e-3):
        (tmp_path / f"clip{clip}").mkdir()
        cfg = tiny_config(data_csv, tmp_path / f"clip{clip}", epochs=1, iterations_per_epoch=1, val_fraction=0.0,
                          optimizer="sgd", momentum=0.0, weight_decay=0.0, lr=0.1, grad_clip=clip)
        trainer = Trainer(cfg, log=lambda s: None)
        trainer.setup()
        before = _parameters(trainer.model)
        trainer.fit()
        lengths[clip] = _step_length(before, _parameters(trainer.model))
    assert lengths[1e-3] == pytest.approx(0.1 * 1e-3, rel=1e-3)
    assert lengths[0.0] > 100 * lengths[1e-3]


def _plateau_rates(losses, lr, factor, patience, threshold=1e-4):
    """The learning rate after each epoch of ReduceLROnPlateau (mode min, relative threshold, no cooldown) fed
    ``losses``: what the log's ``lr`` column must hold."""
    best, bad, rates = math.inf, 0, []
    for loss in losses:
        if loss < best * (1 - threshold):
            best, bad = loss, 0
        else:
            bad += 1
        if bad > patience:
            lr, bad = lr * factor, 0
        rates.append(lr)
    return rates


def test_plateau_schedule_without_validation_data_follows_the_training_loss(data_csv, tmp_path):
    """--schedule plateau with no validation cases (--val-fraction 0) steps the scheduler on each epoch's training
    loss; no test ran it. Its best is the lowest training loss of the run, and the lr column is what
    ReduceLROnPlateau gives for the logged training losses."""
    cfg = tiny_config(data_csv, tmp_path, epochs=4, iterations_per_epoch=2, val_fraction=0.0, schedule="plateau",
                      plateau_patience=0, plateau_factor=0.5)
    trainer = Trainer(cfg, log=lambda s: None)
    trainer.setup()
    result = trainer.fit()
    losses = [row["train_loss"] for row in result.history]
    assert result.val_cases == [] and len(losses) == 4
    assert trainer.scheduler.best == pytest.approx(min(losses), rel=1e-12)
    assert [row["lr"] for row in result.history] == pytest.approx(_plateau_rates(losses, 3e-3, 0.5, 0), rel=1e-9)


def test_channels_last_trains_to_the_same_losses(data_csv, tmp_path):
    """--channels-last (a memory layout for GPUs) must not change what is trained; no test ran it. Two epochs on the
    CPU with and without it: the same training losses (to float rounding) and a package either way."""
    histories = {}
    for layout in (False, True):
        out = tmp_path / f"layout{layout}"
        out.mkdir()
        result = train(tiny_config(data_csv, out, epochs=2, iterations_per_epoch=2, val_fraction=0.0,
                                   channels_last=layout), log=lambda s: None)
        assert Path(result.package_path).is_file()
        histories[layout] = [row["train_loss"] for row in result.history]
    assert histories[True] == pytest.approx(histories[False], rel=1e-4)


def test_resume_rewrites_a_log_csv_that_an_interrupt_cut_short(data_csv, tmp_path):
    """A run stopped while log.csv was written lost that epoch's row (the checkpoint has it): --resume writes the
    file again from the checkpoint's history, so the log has every epoch once, with the checkpoint's numbers."""
    from LiverTumorSegLib.training.logs import read_log

    cfg = tiny_config(data_csv, tmp_path, epochs=2, iterations_per_epoch=2, val_fraction=0.0, schedule="none")
    first = train(cfg, log=lambda s: None)
    log_csv = Path(first.log_dir) / "log.csv"
    lines = log_csv.read_text().splitlines(keepends=True)
    assert len(lines) == 3  # header, epochs 1 and 2
    log_csv.write_text("".join(lines[:2]))  # epoch 2's row lost
    resumed = train(cfg.updated({"resume": True, "epochs": 3}), log=lambda s: None)
    rows = read_log(log_csv)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [float(r["train_loss"]) for r in rows[:2]] == pytest.approx([h["train_loss"] for h in first.history],
                                                                      rel=1e-5)
    assert float(rows[2]["train_loss"]) == pytest.approx(resumed.history[2]["train_loss"], rel=1e-5)


def test_training_runs_on_a_thread_other_than_the_main_one(data_csv, tmp_path):
    """A program that trains in a background thread (a GUI keeping its window alive, a notebook's worker) cannot set
    signal handlers there (Python allows that on the main thread only): the training's holding of Ctrl-C around a
    step does nothing on such a thread instead of failing with "signal only works in main thread". No test trained
    off the main thread. One epoch with a DataLoader worker: a package, and the main thread's SIGINT handler as
    before."""
    import signal
    import threading

    handler_before = signal.getsignal(signal.SIGINT)
    outcome = {}

    def run():
        try:
            outcome["result"] = train(tiny_config(data_csv, tmp_path, epochs=1, iterations_per_epoch=2,
                                                  val_fraction=0.0, num_workers=1), log=lambda s: None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread to assert on
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="background-training")
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert "error" not in outcome, repr(outcome.get("error"))
    assert outcome["result"].stop_reason == "completed" and Path(outcome["result"].package_path).is_file()
    assert signal.getsignal(signal.SIGINT) is handler_before


def test_crossval_resume_with_more_epochs_trains_finished_folds_on(data_csv, tmp_path):
    """crossval --resume with a larger --epochs (a schedule that does not depend on the total: none) does not take
    the finished folds as they are: each continues from its checkpoint to the new epochs (no test ran it), and the
    table says so."""
    from LiverTumorSegLib.training.crossval import run_crossval
    from LiverTumorSegLib.training.trainer import train

    torch.set_num_threads(1)
    cfg = tiny_config(data_csv, tmp_path, epochs=1, iterations_per_epoch=2, folds=2, output="", schedule="none",
                      val_fraction=0.0)
    from LiverTumorSegLib.training.logs import read_log

    run_crossval(cfg, tmp_path / "cv", log=lambda s: None)
    first_rows = [read_log(tmp_path / "cv" / f"fold_{fold}_train" / "log.csv") for fold in (0, 1)]
    trained, lines = [], []
    table = run_crossval(cfg.updated({"resume": True, "epochs": 2}), tmp_path / "cv",
                         train_fn=lambda c, command="", log=print: (trained.append(c.fold), train(c, log=log))[1],
                         log=lines.append)
    assert trained == [0, 1]
    assert not any("already finished" in line for line in lines)
    assert [row["epochs"] for row in table[:2]] == [2, 2]
    for fold in (0, 1):  # continued, not started over: epoch 1's row is the first run's
        rows = read_log(tmp_path / "cv" / f"fold_{fold}_train" / "log.csv")
        assert [int(r["epoch"]) for r in rows] == [1, 2] and rows[0] == first_rows[fold][0]


class HoldLogOpenFrom:
    """Callback that, from the end of epoch ``epoch`` (1-based) on, makes ``path`` refuse writes as Windows does for
    a file open in Excel (PermissionError from ``open`` in a writing mode)."""

    def __init__(self, monkeypatch, path, epoch):
        import builtins

        self.path, self.epoch, self.real_open = str(path), epoch, builtins.open
        self.monkeypatch, self.builtins = monkeypatch, builtins

    def on_epoch_end(self, row):
        if int(row["epoch"]) == self.epoch:
            self.monkeypatch.setattr(self.builtins, "open", self.held_open)

    def held_open(self, file, mode="r", *args, **kwargs):
        import errno

        if str(file) == self.path and any(c in mode for c in "wa+"):
            raise PermissionError(errno.EACCES, "being used by another process", str(file))
        return self.real_open(file, mode, *args, **kwargs)


def test_a_log_csv_held_open_to_the_end_of_the_run_is_said_with_the_rows_it_lacks(data_csv, tmp_path, monkeypatch):
    """log.csv opened in a spreadsheet after epoch 1 of 3 (Windows then refuses every write): the run still ends
    with its package and checkpoint, and its last words say how many epoch rows the file lacks (2) and that
    curves.png lacks them too (no test ran that warning)."""
    from LiverTumorSegLib.training.logs import read_log

    log_csv = tmp_path / "model_train" / "log.csv"
    said = []
    result = train(tiny_config(data_csv, tmp_path, epochs=3, iterations_per_epoch=1, val_fraction=0.0),
                   callbacks=[HoldLogOpenFrom(monkeypatch, log_csv, 1)], log=said.append)
    monkeypatch.undo()
    assert result.stop_reason == "completed" and Path(result.package_path).is_file()
    assert [int(r["epoch"]) for r in read_log(log_csv)] == [1]
    lacks = [line for line in said if "lacks the last" in line]
    assert lacks == [f"warning: {log_csv} lacks the last 2 epoch row(s): it could not be written (is it open in "
                     f"another program?); curves.png lacks them too."]
    assert sum("cannot write" in line for line in said) == 1  # said once when the first row failed


def test_a_run_whose_last_epoch_ends_on_the_time_limit_is_completed_not_stopped(data_csv, tmp_path, monkeypatch):
    """The time limit was checked after every epoch, the last one too: a run that had trained all its epochs when the
    limit came was recorded as stopped by it ("rerun with --resume"), its package refused without --resume, and
    --resume then said it had finished: a circle. With no epoch left it is completed; with one left it still stops."""
    from LiverTumorSegLib.package import read_package_metadata

    torch.set_num_threads(1)
    monkeypatch.setattr(Trainer, "_time_up", lambda self: True)  # the limit is always reached
    said = []
    result = train(tiny_config(data_csv, tmp_path, epochs=1, iterations_per_epoch=1), log=said.append)
    training = read_package_metadata(result.package_path)["training"]
    assert training["stop_reason"] == "completed" and training["epochs_completed"] == 1
    assert not [line for line in said if "--resume" in line], said
    result = train(tiny_config(data_csv, tmp_path, epochs=2, iterations_per_epoch=1, overwrite=True),
                   log=said.append)
    training = read_package_metadata(result.package_path)["training"]
    assert training["stop_reason"] == "time_limit" and training["epochs_completed"] == 1


class LogAt:
    """Callback logging a library warning after global step ``step``, as a case read during the epoch would."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, info):
        if info["global_step"] == self.step:
            import logging

            logging.getLogger("LiverTumorSegLib.training").warning("warning: logged in the middle of an epoch")


def test_warnings_logged_during_an_epoch_begin_their_own_line(data_csv, tmp_path, monkeypatch):
    """A warning logged while the epoch's progress bar was shown began inside the bar's line ('epoch 1/1: 33%|...|
    warning: ...'), as segment's once did; log lines now go through the bar. stderr is a file, as in a log."""
    import io
    import logging
    import re

    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [handler])
    (tmp_path / "run").mkdir()
    train(tiny_config(data_csv, tmp_path / "run", epochs=1, iterations_per_epoch=3, val_fraction=0.0,
                      progress_bar=True), callbacks=[LogAt(1)], log=lambda s: None)
    text = err.getvalue()
    assert "%|" in text  # the bar was drawn
    pieces = re.split(r"[\r\n]", text)
    warned = [p for p in pieces if "logged in the middle of an epoch" in p]
    assert warned and all(p.startswith("warning: ") for p in warned), warned


def test_a_package_whose_training_settings_this_library_cannot_read_is_no_runs_own(data_csv, tmp_path):
    """A resumed run replaces a package at -o that a run of the same experiment wrote (a training folder moved
    with its package); a package of a newer version, whose training settings hold a key this library does not
    know, read as 'no difference' and was replaced too (a review of that change). It is no run's own now."""
    from LiverTumorSegLib.package import save_model_package
    from LiverTumorSegLib.training.trainer import _package_of_run
    from inference_helpers import tiny_unet_package

    cfg = tiny_config(data_csv, tmp_path, log_dir=str(tmp_path / "here"))
    saved = dict(cfg.to_dict(), log_dir=str(tmp_path / "moved"))
    tiny = tiny_unet_package(tmp_path)
    model, pre = tiny.model, tiny.preprocessing
    same = save_model_package(tmp_path / "same.safetensors", model, pre, metadata={"training": {"config": saved}})
    assert _package_of_run(same, tmp_path / "here", cfg)
    newer = save_model_package(tmp_path / "newer.safetensors", model, pre,
                               metadata={"training": {"config": dict(saved, option_of_a_later_version=1)}})
    assert not _package_of_run(newer, tmp_path / "here", cfg)


def test_the_resume_advice_of_a_crossval_overwrite_run_says_to_drop_overwrite():
    """An interrupted 'crossval ... --overwrite' said 'Rerun the same command with --resume'; doing so kept
    --overwrite, which crossval refuses beside --resume ('give one of the two') (the training run-time audit). train
    takes the pair; a crossval --resume run that retrains a fold itself (overwrite inside) keeps the plain advice."""
    from types import SimpleNamespace

    from LiverTumorSegLib.training.trainer import Trainer

    def advice(command):
        return Trainer._rerun_with_resume(SimpleNamespace(command=command))
    assert advice("livertumorseg crossval --data d.csv -o cv --overwrite") == (
        "Rerun the same command with --resume in place of --overwrite (crossval takes one of the two)")
    assert advice("livertumorseg crossval --data d.csv -o cv --resume") == "Rerun the same command with --resume"
    assert advice("livertumorseg train --data d.csv -o m.safetensors --overwrite") == \
        "Rerun the same command with --resume"
    assert advice("") == advice("livertumorseg 'unclosed") == "Rerun the same command with --resume"
    assert advice("livertumorseg --debug crossval --data d.csv --overwrite").endswith("in place of --overwrite "
                                                                                       "(crossval takes one of the two)")
