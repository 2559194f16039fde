"""Unit tests of the training pieces with known answers: config, losses, schedules, sampling, checkpoints."""
import json
import math
import pathlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.training.callbacks import BestTracker, EarlyStopping, validation_score
from LiverTumorSegLib.training.checkpoint import load_checkpoint, save_checkpoint
from LiverTumorSegLib.training.config import TrainConfig
from LiverTumorSegLib.training.losses import DeepSupervisionLoss, SegmentationLoss, focal_loss, soft_dice_loss
from LiverTumorSegLib.training.optim import WarmupLambda, build_optimizer, build_scheduler
from LiverTumorSegLib.preprocessing.preprocessor import context_positions
from LiverTumorSegLib.training.sampling import EpochSampler, choose_slice, crop_box, crop_with_padding
from LiverTumorSegLib.training.slice_cache import CachedCase, slice_indices


# ----------------------------------------------------------------------------------------------- config
def test_config_file_then_cli_override(tmp_path):
    from LiverTumorSegLib.cli import build_parser
    from LiverTumorSegLib.commands.train import config_from_args

    (tmp_path / "t.yaml").write_text("data: d.csv\nepochs: 7\nlr: 0.01\nlabel_map: {'5': 1}\nmodel_options:\n"
                                     "  channels: [4, 8, 16]\n")
    args = build_parser().parse_args(["train", "--config", str(tmp_path / "t.yaml"), "--epochs", "3",
                                      "--every-other-slice", "--class-weights", "[1, 2, 4]"])
    cfg = config_from_args(args)
    assert (cfg.epochs, cfg.lr, cfg.label_map, cfg.every_other_slice) == (3, 0.01, {"5": 1}, True)
    assert cfg.model_options == {"channels": [4, 8, 16]} and cfg.class_weights == [1, 2, 4]
    assert TrainConfig.from_json(cfg.to_json()) == cfg


def test_options_that_would_do_nothing_are_refused_or_named(tmp_path, caplog):
    """An audit trained with --val-fraction 0 --early-stopping-patience 3 (or --use-best-checkpoint): no validation
    case, so neither did anything, without a word; and --folds 3 --val-fraction 0.5 used the fold's split silently."""
    import logging

    from LiverTumorSegLib.cli import build_parser
    from LiverTumorSegLib.commands.train import config_from_args

    # (named as typed, --early-stopping-patience, since the options were typed on the command line)
    for extra, said in ((["--early-stopping-patience", "3"], "--early-stopping-patience decides"),
                        (["--use-best-checkpoint"], "--use-best-checkpoint decides"),
                        (["--early-stopping-patience", "3", "--use-best-checkpoint"], "and --use-best-checkpoint decide")):
        with pytest.raises(InputError, match=f"{said} on the validation cases, and --val-fraction 0 leaves none"):
            config_from_args(build_parser().parse_args(["train", "--data", "d.csv", "--val-fraction", "0"] + extra))
    assert config_from_args(build_parser().parse_args(["train", "--data", "d.csv", "--val-fraction", "0.2",
                                                       "--use-best-checkpoint"])).use_best_checkpoint
    with caplog.at_level(logging.WARNING):
        cfg = config_from_args(build_parser().parse_args(["train", "--data", "d.csv", "--folds", "3", "--fold", "1",
                                                          "--val-fraction", "0.5"]))
    assert cfg.folds == 3 and "--val-fraction is not used with folds 3: fold 1 holds out its own share (1/3)" \
        in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        config_from_args(build_parser().parse_args(["train", "--data", "d.csv", "--folds", "3"]))
    assert "val-fraction" not in caplog.text


def test_cli_dict_options_merge_into_the_config_file_key_by_key(tmp_path):
    # `train --config v2.yaml --augmentation '{...one key...}'` replaced the file's whole augmentation dict with
    # that one key: every other setting of the recipe fell back to the library default without a word
    from LiverTumorSegLib.cli import build_parser
    from LiverTumorSegLib.commands.train import config_from_args

    (tmp_path / "t.yaml").write_text("data: d.csv\nmodel: unet\nmodel_options:\n  channels: [4, 8, 16]\n"
                                     "  strides: [2, 2]\naugmentation:\n  zoom_range: [0.6, 1.6]\n"
                                     "  zoom_probability: 0.8\nlesions:\n  diameter_range_mm: [5.0, 80.0]\n"
                                     "label_map: {'5': 1, '6': 2}\n")

    def config(*extra):
        return config_from_args(build_parser().parse_args(["train", "--config", str(tmp_path / "t.yaml"), *extra]))

    cfg = config("--augmentation", '{"liver_field_probability": 0.5, "zoom_probability": 0.3}',
                 "--lesions", '{"cluster_probability": 0.3}', "--model-options", '{"dropout": 0.2}',
                 "--label-map", '{"5": 1}')
    assert cfg.augmentation == {"zoom_range": [0.6, 1.6], "zoom_probability": 0.3, "liver_field_probability": 0.5}
    assert cfg.lesions == {"diameter_range_mm": [5.0, 80.0], "cluster_probability": 0.3}
    assert cfg.model_options == {"channels": [4, 8, 16], "strides": [2, 2], "dropout": 0.2}
    assert cfg.label_map == {"5": 1}                          # a label map is replaced whole
    from LiverTumorSegLib.training.augmentation import AugmentationConfig
    assert tuple(AugmentationConfig.from_dict(cfg.augmentation).zoom_range) == (0.6, 1.6)
    # another architecture: the file's U-Net options do not apply to it, the command line's replace them
    assert config("--model", "segnet", "--model-options", '{"width": 0.35}').model_options == {"width": 0.35}
    assert config("--model", "unet", "--model-options", '{"dropout": 0.2}').model_options["channels"] == [4, 8, 16]
    # ... also without --model-options: they were given to segnet as well (refused as 'unknown option strides',
    # which the command never named; where the names exist, another network trained with the file's channels)
    assert config("--model", "segnet").model_options == {}
    assert config("--model", "attention_unet").model_options == {}
    assert config("--augmentation", '{"enabled": false}').augmentation["enabled"] is False


def test_config_rejects_unknown_keys_and_bad_values(tmp_path):
    with pytest.raises(InputError, match=r"Unknown training option\(s\) epoch in config \(epoch: did you mean "
                                         r"epochs\?\)\. Valid options \(as config keys\): .*\bepochs\b"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(InputError, match="optimizer"):
        TrainConfig.from_dict({"optimizer": "lbfgs"})
    with pytest.raises(InputError, match="fold 4 is outside"):
        TrainConfig.from_dict({"folds": 4, "fold": 4})
    # YAML values of the wrong type: '1e-3' is text in YAML 1.1 (crashed training after caching the data);
    # a quoted 'false' is text, and text is true (every_other_slice: 'false' sampled every other slice)
    assert TrainConfig.from_dict({"lr": "1e-3"}).lr == pytest.approx(0.001)
    assert TrainConfig.from_dict({"name": 2024}).name == "2024"  # a number in a text field was always kept
    for values, words in (({"epochs": 2.5}, "epochs .* must be a whole number, got 2.5"),
                          ({"every_other_slice": "false"}, "every_other_slice .* must be true or false, got 'false'"),
                          ({"folds": "3"}, "folds .* whole number"), ({"lr": "abc"}, "lr .* must be a finite number"),
                          ({"warmup": float("nan")}, "warmup .* whole number"), ({"lr": float("inf")}, "finite"),
                          ({"device": 3}, "device .* must be text")):
        with pytest.raises(InputError, match=words):
            TrainConfig.from_dict(values)
    # a fold number without folds trained a hold-out split and recorded "fold 2" in the package
    with pytest.raises(InputError, match="fold 2 needs folds K"):
        TrainConfig.from_dict({"fold": 2})
    (tmp_path / "x.yaml").write_text("- a\n- b\n")
    with pytest.raises(InputError, match="mapping"):
        TrainConfig.from_file(tmp_path / "x.yaml")


@pytest.mark.parametrize("values,words", [
    ({"label_map": [1, 2]}, "label_map must be a JSON object"),
    ({"label_map": {"1": "x"}}, "targets must be 0, 1 or 2"),
    ({"model_options": [1]}, "model_options must be a JSON object"),
    ({"augmentation": "on"}, "augmentation must be a JSON object"),
    ({"class_weights": [1, float("nan"), 1]}, "finite numbers >= 0"),
    ({"class_weights": [1, -1, 1]}, "finite numbers >= 0"),
    ({"class_weights": [0, 0, 0]}, "at least one weight above 0"),
    ({"deep_supervision_weights": "1,0.5"}, "finite numbers >= 0"),
    # weights of the outputs, not of the classes (the message said 'one per class (e.g. [1, 1, 3])')
    ({"deep_supervision_weights": [1, -1]}, r"one per output: the main one first, then the auxiliary ones"),
    # a name segment --model takes for a file path: trained, installed and never found by that name
    ({"name": "abdomen/liver"}, r"'segment --model abdomen/liver' would take it for a file path .*'abdomen-liver'"),
    ({"name": "liver.onnx"}, r"ends in a weights suffix"),
    # refused at the first step after every case was cached, or kept in the package doing nothing
    ({"class_weights": [1, 2]}, "one weight per class, 3 .*got 2"),
    ({"class_weights": [1, 1, 3], "loss": "dice"}, "loss dice has neither"),
    ({"schedule": "plateau", "warmup": 500}, "warmup .*is not applied by schedule plateau"),
    # an audit's reproductions: internal errors after every case was cached, or silently used
    ({"seed": -1}, "seed must be a whole number from 0"),
    ({"lr": -1.0}, r"lr must be a finite number in \(0, 10\]"),
    ({"lr": float("nan")}, "lr .*must be a finite number"),
    ({"weight_decay": -0.1}, "weight_decay"),
    ({"momentum": -0.5}, "momentum"),
    ({"plateau_factor": 1.5}, r"plateau_factor must be a finite number in \(0, 1\)"),
    ({"tumor_slice_fraction": 7.0}, "tumor_slice_fraction"),
    ({"tumor_slice_fraction": -0.5}, "tumor_slice_fraction"),
    ({"val_every": 0}, "val_every must be a whole number >= 1"),
    ({"augmentation": {"enabled": "false"}}, "'enabled' must be true or false"),
    ({"augmentation": {"rotation_probabilty": 0.5}}, "Unknown AugmentationConfig keys"),
    ({"lesions": {"bogus_key": 1}}, "Unknown LesionConfig keys"),
    # a misspelt nested key named the closest one, as a misspelt top-level key does (the researcher-journey audit)
    ({"augmentation": {"zoom_probabilty": 0.5}}, r"\(zoom_probabilty: did you mean zoom_probability\?\)"),
    ({"lesions": {"diameter_range": [5, 40]}}, r"\(diameter_range: did you mean diameter_range_mm\?\)"),
])
def test_config_refuses_options_of_the_wrong_type_in_one_line(values, words):
    """These were internal errors (AttributeError, ValueError) or, for NaN class weights, a failure after
    training began that blamed the learning rate."""
    with pytest.raises(InputError, match=words):
        TrainConfig.from_dict(values)


def test_misspelt_model_option_and_preprocessing_key_name_the_closest_one():
    """A misspelt key of --model-options or of a preprocessing JSON was answered with the list of valid keys only;
    it names the closest key now, as a misspelt top-level option does, and a key close to none gets no guess."""
    from LiverTumorSegLib.models import build_model
    from LiverTumorSegLib.preprocessing import PreprocessingConfig, PreprocessingConfigError

    with pytest.raises(InputError, match=r"'unet' \(channel: did you mean channels\?\); valid options"):
        build_model("unet", 3, 3, channel=[4, 8])
    with pytest.raises(PreprocessingConfigError, match=r"\(context_slice: did you mean context_slices\?\); allowed"):
        PreprocessingConfig.from_dict({"context_slice": 1})
    with pytest.raises(InputError) as refused:
        build_model("unet", 3, 3, xyz=1)
    assert "did you mean" not in str(refused.value) and "valid options" in str(refused.value)


def test_training_csv_that_is_not_utf8_is_a_user_error(tmp_path):
    from LiverTumorSegLib.training.datasets import discover_cases

    (tmp_path / "cases.csv").write_bytes("image,label\nPatient\u00e9.nii.gz,lab.nii.gz\n".encode("latin-1"))
    with pytest.raises(InputError, match="is not UTF-8 text"):
        discover_cases(tmp_path / "cases.csv")


# ----------------------------------------------------------------------------------------------- losses
def _onehot_logits(target, scale=50.0):
    return F.one_hot(target, 3).permute(0, 3, 1, 2).float() * scale


def test_dice_loss_zero_for_perfect_and_one_for_disjoint():
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, :2] = 1
    target[0, 3, 3] = 2
    assert float(soft_dice_loss(_onehot_logits(target), target)) == pytest.approx(0.0, abs=1e-4)
    wrong = torch.zeros_like(target)  # predicts background everywhere
    assert float(soft_dice_loss(_onehot_logits(wrong), target)) == pytest.approx(1.0, abs=1e-4)


def test_weighted_ce_matches_hand_computation():
    logits = torch.tensor([[[[2.0]], [[0.0]], [[0.0]]], [[[0.0]], [[1.0]], [[0.0]]]])  # (2, 3, 1, 1)
    target = torch.tensor([[[0]], [[1]]])
    w = [1.0, 3.0, 1.0]
    l0 = -math.log(math.exp(2) / (math.exp(2) + 2))
    l1 = -math.log(math.e / (math.e + 2))
    expected = (1.0 * l0 + 3.0 * l1) / 4.0
    assert float(SegmentationLoss("ce", w)(logits, target)) == pytest.approx(expected, rel=1e-5)


def test_focal_gamma_zero_equals_ce_and_dice_ce_is_sum():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 5, 5), torch.randint(0, 3, (2, 5, 5))
    assert float(focal_loss(logits, target, gamma=0.0)) == pytest.approx(float(F.cross_entropy(logits, target)),
                                                                         rel=1e-5)
    total = SegmentationLoss("dice_ce")(logits, target)
    assert float(total) == pytest.approx(float(F.cross_entropy(logits, target) + soft_dice_loss(logits, target)),
                                         rel=1e-5)


def test_deep_supervision_weights_and_upsampling():
    base = SegmentationLoss("ce")
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    main = _onehot_logits(target)
    aux = torch.zeros(1, 3, 4, 4)  # uniform -> CE = log 3
    ds = DeepSupervisionLoss(base)
    assert ds.level_weights(2) == pytest.approx([2 / 3, 1 / 3])
    assert float(ds(main, [aux], target)) == pytest.approx(math.log(3) / 3, rel=1e-3)


def test_deep_supervision_weights_must_name_one_weight_per_output(tmp_path):
    """[0, 1] for a network without auxiliary heads trained the main output with weight 1, and a third weight
    for two outputs was dropped, both without a word. The count is checked before caching and at every step."""
    from LiverTumorSegLib.models import training_output_count
    from LiverTumorSegLib.training.trainer import _check_deep_supervision_weights
    assert training_output_count("unet") == 1 and training_output_count("attention_unet") == 1
    assert training_output_count("attention_unet", {"channels": [4, 8, 16, 32], "deep_supervision": True}) == 3
    with pytest.raises(InputError, match="2 value.*gives 1 output.*deep_supervision is off"):
        _check_deep_supervision_weights(TrainConfig.from_dict({"model": "attention_unet",
                                                               "deep_supervision_weights": [0.0, 1.0]}))
    _check_deep_supervision_weights(TrainConfig.from_dict({"model": "dalunet", "model_options": {
        "channels": [4, 8, 16]}, "deep_supervision_weights": [1.0, 0.5]}))  # 2 outputs: accepted
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    with pytest.raises(InputError, match="3 value.*2 output"):
        DeepSupervisionLoss(SegmentationLoss("ce"), [0.2, 0.3, 0.5])(_onehot_logits(target),
                                                                     [torch.zeros(1, 3, 4, 4)], target)


# ----------------------------------------------------------------------------------------------- optim
def test_optimizers_and_warmup_cosine_values():
    p = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(build_optimizer("sgd", p, 1e-4, momentum=0.9), torch.optim.SGD)
    assert isinstance(build_optimizer("adagrad", p, 1e-2), torch.optim.Adagrad)
    assert build_optimizer("sgd", p, 1e-4, momentum=0.9).param_groups[0]["momentum"] == 0.9
    f = WarmupLambda("cosine", total_steps=12, warmup=2)
    assert [f(0), f(1), f(2), f(7), f(12)] == pytest.approx([0.5, 1.0, 1.0, 0.5, 0.0])
    g = WarmupLambda("step", total_steps=100, steps_per_epoch=10, step_size=3, gamma=0.1)
    assert [g(29), g(30), g(60)] == pytest.approx([1.0, 0.1, 0.01])
    opt = build_optimizer("adam", p, 1.0)
    sched = build_scheduler("plateau", opt, 10, 5, plateau_patience=0, plateau_factor=0.5)
    sched.step(1.0)
    sched.step(2.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5) and sched.per_step is False


def test_best_tracker_and_early_stopping():
    best, early = BestTracker(), EarlyStopping(patience=2)
    assert best.update(0.5, 1) and not early.update(True)
    assert not best.update(0.4, 2) and not early.update(False)
    assert not best.update(float("nan"), 3) and early.update(False)
    assert best.state() == {"best": 0.5, "best_epoch": 1}
    assert validation_score(0.9, float("nan")) == 0.9 and validation_score(0.9, 0.5) == pytest.approx(0.7)


# ----------------------------------------------------------------------------------------------- sampling
def _cached(liver, tumor, n=10):
    return CachedCase("c", "c", "", "", (5.0, 1.0, 1.0), (5.0, 1.0, 1.0), liver, tumor, n)


def test_choose_slice_follows_fractions_and_every_other_slice():
    rng = np.random.default_rng(0)
    case = _cached([3, 4, 5, 6], [5])
    assert {choose_slice(case, rng, 1.0, 0.0) for _ in range(200)} == {3, 4, 5, 6}
    assert {choose_slice(case, rng, 1.0, 1.0) for _ in range(50)} == {5}
    assert {choose_slice(case, rng, 1.0, 0.0, every_other_slice=True) for _ in range(100)} == {4, 6}
    # neighbours 2 slices away (thin slices): every other pair of slices, so that centres and their neighbours
    # (centre +- 2) read every slice; the even indices alone never read an odd slice
    thin = _cached([], [], n=12)
    centres = {choose_slice(thin, rng, 0.0, 0.0, every_other_slice=True, neighbour_step=2) for _ in range(500)}
    assert centres == {0, 1, 4, 5, 8, 9}
    assert {c + d for c in centres for d in (-2, 0, 2)} & set(range(12)) == set(range(12))
    drawn = [choose_slice(case, rng, 0.0, 0.0) for _ in range(2000)]
    assert set(drawn) == set(range(10))


def test_slice_indices_context_and_crop_known_answers():
    labels = np.zeros((4, 3, 3), np.uint8)
    labels[1, 0, 0] = 1
    labels[2, 1, 1] = 2
    assert slice_indices(labels) == ([1, 2], [2])
    assert context_positions(0, 1, 5).tolist() == [0, 0, 1]
    assert context_positions(4, 2, 5).tolist() == [2, 3, 4, 4, 4]
    assert context_positions(1, 1, 8, 2.0).tolist() == [0, 1, 3]
    assert context_positions([2, 7], 1, 8, 0.6).tolist() == [[1.4, 2, 2.6], [6.4, 7, 7]]
    arr = np.arange(16).reshape(4, 4)
    assert crop_with_padding(arr, -1, 2, 3, -9).tolist() == [[-9, -9, -9], [2, 3, -9], [6, 7, -9]]
    lab = np.zeros((40, 40), np.uint8)
    lab[30, 30] = 1
    y0, x0 = crop_box(lab, 10, np.random.default_rng(1), liver_bias=1.0)
    assert (y0, x0) == (25, 25)


def test_epoch_sampler_indices_and_resume_offset():
    s = EpochSampler(6)
    s.set_epoch(2, start=4)
    assert list(s) == [16, 17] and len(s) == 2


# ----------------------------------------------------------------------------------------------- checkpoint
class _Pickled:
    pass


def test_checkpoint_round_trip_is_weights_only(tmp_path):
    payload = {"model": {"w": torch.arange(3.0)}, "optimizer": {}, "epoch": 2, "global_step": 9,
               "config": json.dumps({"a": 1})}
    path = save_checkpoint(tmp_path / "c" / "last.pt", payload)
    back = load_checkpoint(path)
    assert back["epoch"] == 2 and torch.equal(back["model"]["w"], torch.arange(3.0))
    assert not list((tmp_path / "c").glob("*.tmp"))
    torch.save({"model": {}, "optimizer": {}, "epoch": 0, "global_step": 0, "config": "{}",
                "x": _Pickled()}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="cannot be read"):  # weights_only refuses arbitrary objects
        load_checkpoint(tmp_path / "evil.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot be read"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(InputError, match="No checkpoint"):
        load_checkpoint(tmp_path / "none.pt")


@pytest.mark.parametrize("change, words", [
    ({"state": "{not json"}, "holds a 'state' that is not valid JSON"),
    ({"state": "[" * 100000 + "]" * 100000}, "holds a 'state' that is not valid JSON"),  # was RecursionError
    ({"state": "[1]"}, "holds a 'state' that is a list, not a JSON object"),
    ({"config": "[]"}, "holds a 'config' that is a list, not a JSON object"),
    ({"epoch": "abc"}, "holds epoch = 'abc', not a whole number >= 0"),
    ({"global_step": None}, "holds global_step = None, not a whole number >= 0"),
    ({"step_in_epoch": -1}, "holds step_in_epoch = -1, not a whole number >= 0"),
    ({"epoch": True}, "holds epoch = True, not a whole number >= 0"),
    ({"rng": {"torch_cpu": torch.zeros(3, dtype=torch.uint8)}}, "holds a random state ('rng') of another form"),
], ids=["state-not-json", "state-nested-too-deep", "state-list", "config-list", "epoch-text", "step-none", "negative-step", "epoch-bool",
        "rng-short"])
def test_a_checkpoint_with_a_damaged_entry_is_refused_naming_it(tmp_path, change, words):
    """A checkpoint that loads (weights only) but holds an entry no training wrote ended --resume in an "internal
    error" (JSONDecodeError, ValueError, AttributeError, RuntimeError from the random state). load_checkpoint now
    refuses it, naming the entry and saying to delete the file; a well-formed one still loads."""
    good = {"model": {"w": torch.zeros(2)}, "optimizer": {}, "epoch": 1, "step_in_epoch": 0, "global_step": 3,
            "config": json.dumps({"epochs": 2}), "state": json.dumps({"history": []}),
            "rng": {"torch_cpu": torch.get_rng_state()}}
    assert load_checkpoint(save_checkpoint(tmp_path / "good.pt", good))["global_step"] == 3
    path = save_checkpoint(tmp_path / "last.pt", dict(good, **change))
    with pytest.raises(InputError, match=re.escape(words) + r".*damaged or was not written by livertumorseg train\. "
                                         r"Delete it \(or its run folder\) to start over"):
        load_checkpoint(path)


def test_checkpoint_write_failing_midway_keeps_previous_file(tmp_path, monkeypatch):
    """A crash while writing (disk full, kill during torch.save) never leaves a half-written last.pt."""
    from LiverTumorSegLib.training import checkpoint as ckpt

    good = {"model": {"w": torch.ones(2)}, "optimizer": {}, "epoch": 1, "global_step": 3, "config": "{}"}
    path = save_checkpoint(tmp_path / "last.pt", good)

    def half_write(payload, handle):
        handle.write(b"PK\x03\x04 half a zip")
        raise OSError("No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", half_write)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, dict(good, epoch=2))
    monkeypatch.undo()
    back = load_checkpoint(path)
    assert back["epoch"] == 1 and torch.equal(back["model"]["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_checkpoint_write_error_names_the_checkpoint_not_its_temporary(tmp_path, monkeypatch):
    """A checkpoint larger than allowed (`ulimit -f`) or a full disk: the error named no file ('Cannot write a
    file (File too large)')."""
    import errno

    from LiverTumorSegLib.training import checkpoint as ckpt

    def too_large(payload, handle):
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(ckpt.torch, "save", too_large)
    with pytest.raises(OSError) as raised:
        save_checkpoint(tmp_path / "last.pt", {"epoch": 1})
    assert raised.value.filename == str(tmp_path / "last.pt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("geometry", [{"target_spacing_mm": None}, {"target_spacing_mm": None,
                                                                     "target_size": [48, 56]}])
def test_training_inputs_smooth_with_the_network_grids_pixel_size_as_inference_does(tmp_path, geometry):
    """With gaussian_sigma_mm and a config without target_spacing_mm, training smoothed as if pixels were 1 mm
    (or target_spacing_mm) while inference used the real network-grid spacing: inputs differed by up to 0.23
    (window units). Both now use the cached case's network spacing."""
    from LiverTumorSegLib.io import write_label_map, write_volume
    from LiverTumorSegLib.orientation import canonicalize
    from LiverTumorSegLib.phantom import make_phantom
    from LiverTumorSegLib.preprocessing import PreprocessingConfig, SlicePreprocessor
    from LiverTumorSegLib.training.datasets import Case
    from LiverTumorSegLib.training.sampling import PatchDataset, full_slice_inputs
    from LiverTumorSegLib.training.slice_cache import build_slice_cache

    phantom = make_phantom((6, 40, 44), (0.7, 0.7, 3.0), noise_hu=20.0, seed=0)
    image = write_volume(tmp_path / "ct.nii.gz", phantom.ct)
    label = write_label_map(tmp_path / "lab.nii.gz", phantom.labels, phantom.ct.geometry)
    config = PreprocessingConfig(channels=[{"kind": "window", "level": 40.0, "width": 400.0}], context_slices=1,
                                 gaussian_sigma_mm=2.0, crop_to_body=False, size_multiple=8, **geometry)
    preprocessor = SlicePreprocessor(config)
    (cached,) = build_slice_cache([Case("c", "p", str(image), str(label), "csv")], preprocessor, tmp_path / "cache")
    prepared = SlicePreprocessor(config).prepare(canonicalize(phantom.ct)[0])
    np.testing.assert_allclose(full_slice_inputs(cached, preprocessor, [0, 3, 5]), prepared.batch([0, 3, 5]),
                               atol=1e-5)
    seen = []
    original = preprocessor.stack_input
    preprocessor.stack_input = lambda hu, info=None, spacing_yx=None, statistics=None: seen.append(
        spacing_yx) or original(hu, info, spacing_yx, statistics)
    PatchDataset([cached], preprocessor, patch_size=16, seed=0)[0]
    assert seen == [tuple(cached.spacing_zyx[1:])] or seen == [cached.spacing_zyx[1:]]


def test_a_read_only_slice_cache_serves_its_cases_and_names_the_one_it_lacks_before_reading_it(tmp_path, monkeypatch):
    """A slice cache another user built, read-only here, serves the cases it holds; a case it lacked was read whole
    and then failed with "Output folder '.../cache/KEY' is not writable ...; choose another output location", naming
    neither the case nor the cache option. Now it is refused before its CT is read, naming both. The folder is made
    unwritable by refusing mkstemp there (root ignores permissions)."""
    import tempfile

    from LiverTumorSegLib.io import write_label_map, write_volume
    from LiverTumorSegLib.phantom import make_phantom
    from LiverTumorSegLib.preprocessing import PreprocessingConfig, SlicePreprocessor
    from LiverTumorSegLib.training import slice_cache
    from LiverTumorSegLib.training.datasets import Case

    cases = []
    for name in ("c1", "c2"):
        phantom = make_phantom((4, 24, 24), (1.5, 1.5, 3.0), noise_hu=20.0, seed=len(cases))
        cases.append(Case(name, name, str(write_volume(tmp_path / f"{name}.nii.gz", phantom.ct)),
                          str(write_label_map(tmp_path / f"{name}_lab.nii.gz", phantom.labels, phantom.ct.geometry)),
                          "csv"))
    preprocessor = SlicePreprocessor(PreprocessingConfig(channels=[{"kind": "window", "level": 40.0, "width": 400.0}],
                                                         crop_to_body=False, size_multiple=8))
    slice_cache.build_slice_cache(cases[:1], preprocessor, tmp_path / "cache")
    real_mkstemp = tempfile.mkstemp

    def read_only_cache(*args, **kwargs):
        if str(tmp_path / "cache") in str(kwargs.get("dir", "")):
            raise PermissionError(13, "Permission denied", str(kwargs["dir"]))
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only_cache)
    read = []
    monkeypatch.setattr(slice_cache, "load_case", lambda case, *a, **k: read.append(case.case_id) or 1 / 0)
    assert [c.case_id for c in slice_cache.build_slice_cache(cases[:1], preprocessor, tmp_path / "cache")] == ["c1"]
    with pytest.raises(InputError, match=r"Cannot cache case 'c2' \('.*c2\.nii\.gz'\): the slice cache folder '.*cache.*' "
                                         r"holds no usable entry of it and cannot be written \(Permission denied\)\. Give "
                                         r"a cache folder you can write to \(cache_dir; a read-only cache serves only"):
        slice_cache.build_slice_cache(cases, preprocessor, tmp_path / "cache")
    assert read == []


@pytest.mark.parametrize("spacing_z, offset", [(0.5, 2.0), (5.0, 0.6)])
def test_training_stacks_neighbours_as_inference_does(tmp_path, spacing_z, offset):
    """With context_min_mm / context_max_mm, a 0.5 mm case's training patches and whole-slice validation inputs take
    every second slice, and a 5 mm case's HU interpolated 0.6 of the way to each adjacent slice, as inference does
    (segment on the same CT): the network sees one kind of input. Inside an air border, each slice's HU is
    40 + 20 x its index, so a patch's centre pixel tells which slice positions were stacked."""
    from LiverTumorSegLib.io import write_label_map, write_volume
    from LiverTumorSegLib.orientation import canonicalize
    from LiverTumorSegLib.preprocessing import PreprocessingConfig, SlicePreprocessor
    from LiverTumorSegLib.training.datasets import Case
    from LiverTumorSegLib.training.sampling import PatchDataset, full_slice_inputs
    from LiverTumorSegLib.training.slice_cache import build_slice_cache
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    z = 10
    hu = np.repeat((40.0 + 20.0 * np.arange(z, dtype=np.float32))[:, None, None], 24, axis=1).repeat(24, axis=2)
    hu[:, :2], hu[:, -2:], hu[:, :, :2], hu[:, :, -2:] = -1000.0, -1000.0, -1000.0, -1000.0
    ct = CTVolume(hu.astype(np.int16), ImageGeometry(spacing=(1.0, 1.0, spacing_z)))
    labels = np.ones(hu.shape, dtype=np.uint8)
    image = write_volume(tmp_path / "ct.nii.gz", ct)
    label = write_label_map(tmp_path / "lab.nii.gz", labels, ct.geometry)
    config = PreprocessingConfig(channels=[{"kind": "window", "level": 140.0, "width": 280.0}], context_slices=1,
                                 context_min_mm=1.0, context_max_mm=3.0, target_spacing_mm=None, crop_to_body=False,
                                 size_multiple=8)
    preprocessor = SlicePreprocessor(config)
    (cached,) = build_slice_cache([Case("c", "p", str(image), str(label), "csv")], preprocessor, tmp_path / "cache")
    prepared = SlicePreprocessor(config).prepare(canonicalize(ct)[0])
    assert prepared.context_offset == pytest.approx(offset)
    np.testing.assert_allclose(full_slice_inputs(cached, preprocessor, [0, 4, 9]), prepared.batch([0, 4, 9]),
                               atol=1e-5)
    seen = []
    lesions = lambda hu, labels, spacing, rng: seen.append(spacing) or (hu, labels)  # noqa: E731
    dataset = PatchDataset([cached], preprocessor, patch_size=16, seed=0, lesion_inserter=lesions)
    for index in range(6):
        stack = (dataset.sample_arrays(index)[0][:, 8, 8] - 40.0) / 20.0  # (3,): the stacked slice positions
        centre = float(stack[1])
        assert centre == int(centre)
        np.testing.assert_allclose(stack, np.clip([centre - offset, centre, centre + offset], 0, z - 1), atol=1e-4)
    # the synthetic lesions are drawn in 3D over the stack's own slice distance (2 x 0.5 mm, 0.6 x 5 mm = 1 and 3)
    assert {round(s[0], 6) for s in seen} == {round(offset * spacing_z, 6)}


def test_zoomed_out_patches_read_only_real_pixels(tmp_path):
    """A fixed 1.75 x work region was too small for the v2 recipe's zoom down to 0.6 with rotation: patches
    of a slice full of body held straight edges of -1024 HU padding. The region now grows with what the drawn
    zoom, rotation, shear and shift read; the patch centre stays where the sampler chose it."""
    from LiverTumorSegLib.training.augmentation import AugmentationConfig, SliceAugmenter
    from LiverTumorSegLib.training.sampling import PatchDataset

    size, patch = 600, 64
    np.save(tmp_path / "hu.npy", np.full((3, size, size), 40.0, np.float32))  # body everywhere, no padding
    labels = np.zeros((3, size, size), np.uint8)
    labels[:, 250:350, 250:350] = 1  # patches centred on it (liver_slice_fraction 1) never reach the image edge
    np.save(tmp_path / "lab.npy", labels)
    case = CachedCase("c", "p", str(tmp_path / "hu.npy"), str(tmp_path / "lab.npy"), (3.0, 1.5, 1.5),
                      (3.0, 1.5, 1.5), [0, 1, 2], [], 3)
    config = AugmentationConfig(rotation_probability=1.0, rotation_range_deg=(-15.0, 15.0), zoom_probability=1.0,
                                zoom_range=(0.6, 0.6), zoom_anisotropy=1.2, shift_probability=1.0,
                                shear_probability=1.0, elastic_probability=0.0, liver_shift_probability=0.0,
                                hu_scale_probability=0.0, hu_shift_probability=0.0, gamma_probability=0.0,
                                blur_probability=0.0, noise_probability=0.0)

    class Preprocessor:  # only the context (size, adjacent slices) and the whole slices' statistics (none) are read
        config = type("C", (), {"context_slices": 1, "context_offset": lambda self, spacing: 1.0})()

        def slice_statistics(self, hu, spacing_yx):
            return None

    dataset = PatchDataset([case], Preprocessor(), patch_size=patch, seed=0, augmenter=SliceAugmenter(config),
                           liver_slice_fraction=1.0)
    lowest = min(float(dataset.sample_arrays(i)[0].min()) for i in range(40))
    assert lowest > 30.0  # bilinear mixing with padding would pull pixels towards -1024
    plain = PatchDataset([case], Preprocessor(), patch_size=patch, seed=0)
    hu, label = plain.sample_arrays(0)
    assert hu.shape == (3, patch, patch) and label.shape == (patch, patch)


def test_clipped_neighbours_at_a_scans_ends_are_copies_of_the_slice_they_repeat(tmp_path):
    """At a scan's first and last slice the 2.5D neighbours are clipped: inference repeats the slice itself. In
    training the lesion inserter took the stack as evenly spaced and the noise was drawn per slice, so the repeated
    neighbour differed from the centre by tens of HU where a lesion sat (the preprocessing audit). They are copies
    now; a centre inside the scan keeps neighbours of its own."""
    from LiverTumorSegLib.preprocessing import PreprocessingConfig, SlicePreprocessor
    from LiverTumorSegLib.training.augmentation import AugmentationConfig, SliceAugmenter
    from LiverTumorSegLib.training.sampling import PatchDataset, copies_at_clipped_positions
    from LiverTumorSegLib.training.trainer import LesionInserter

    import seeding

    z, size = 4, 96
    yy, xx = np.indices((size, size))
    liver = ((yy - 48) / 40.0) ** 2 + ((xx - 48) / 40.0) ** 2 <= 1
    labels = np.zeros((z, size, size), np.uint8)
    labels[:, liver] = 1
    hu = np.where(labels == 1, 100.0, -100.0).astype(np.float32)
    np.save(tmp_path / "hu.npy", hu)
    np.save(tmp_path / "lab.npy", labels)
    case = CachedCase("c", "p", str(tmp_path / "hu.npy"), str(tmp_path / "lab.npy"), (2.0, 1.5, 1.5),
                      (2.0, 1.5, 1.5), list(range(z)), [], z)
    noise = AugmentationConfig.disabled()
    noise.noise_probability, noise.noise_std_hu = 1.0, (10.0, 10.0)
    dataset = PatchDataset([case], SlicePreprocessor(PreprocessingConfig.preset("default")), 64, seed=seeding.test_seed(5),
                           lesion_inserter=LesionInserter({"probability": 1.0}), augmenter=SliceAugmenter(noise),
                           liver_slice_fraction=1.0)
    at_edge = inside = 0
    for index in range(60):
        stack, _, _, _ = dataset._sample(index)
        same = [np.array_equal(stack[j], stack[1]) for j in (0, 2)]
        if any(same):  # a scan's end: exactly one neighbour repeats the centre
            at_edge += 1
            assert sum(same) == 1
        else:
            inside += 1
            assert not np.array_equal(stack[0], stack[2])
    assert at_edge >= 10 and inside >= 10  # 2 of 4 slices are ends: about half each
    hu3, lab3 = np.arange(5.0)[:, None, None] * np.ones((5, 2, 2)), np.arange(5)[:, None, None] * np.ones((5, 2, 2))
    out, out_lab = copies_at_clipped_positions(hu3, lab3, np.array([0.0, 0.0, 0.0, 1.0, 2.0]), 2)
    assert out[:, 0, 0].tolist() == [2.0, 2.0, 2.0, 3.0, 4.0] and out_lab[:, 0, 0].tolist() == [2, 2, 2, 3, 4]
    out, _ = copies_at_clipped_positions(hu3, lab3, np.array([5.0, 5.4, 6.0, 6.0, 6.0]), 2)
    assert out[:, 0, 0].tolist() == [0.0, 1.0, 2.0, 2.0, 2.0]
    unchanged = copies_at_clipped_positions(hu3, lab3, np.array([1.0, 2.0, 3.0, 4.0, 5.0]), 2)
    assert unchanged[0] is hu3 and unchanged[1] is lab3


def test_edge_context_reaches_the_training_patches_after_the_lesions(tmp_path):
    """The recipes' ``edge_context_probability``: a patch's 2.5D neighbours on one side become air or repeat the
    centre, after the synthetic lesions were drawn through the whole stack (a tumor on a scan's last slice, with
    air or the scan's end beside it); the centre slice and its label are never changed."""
    from LiverTumorSegLib.training.augmentation import EDGE_AIR_HU, AugmentationConfig, SliceAugmenter
    from LiverTumorSegLib.training.sampling import PatchDataset

    np.save(tmp_path / "hu.npy", (40.0 + 10.0 * np.arange(3, dtype=np.float32))[:, None, None]
            * np.ones((3, 48, 48), np.float32))                  # slices at 40, 50 and 60 HU
    labels = np.ones((3, 48, 48), np.uint8)
    np.save(tmp_path / "lab.npy", labels)
    case = CachedCase("c", "p", str(tmp_path / "hu.npy"), str(tmp_path / "lab.npy"), (3.0, 1.5, 1.5),
                      (3.0, 1.5, 1.5), [1], [], 3)

    def bright_tumor_everywhere(hu, labels, spacing, rng):  # a lesion through the stack: 200, 210, 220 HU, label 2
        hu, labels = hu.copy(), labels.copy()
        hu[:, 4:44, 4:44] = (200.0 + 10.0 * np.arange(3, dtype=np.float32))[:, None, None]
        labels[:, 4:44, 4:44] = 2  # in every 16 px patch of the 48 px slice
        return hu, labels

    class Preprocessor:  # only the context (size, adjacent slices) and the whole slices' statistics (none) are read
        config = type("C", (), {"context_slices": 1, "context_offset": lambda self, spacing: 1.0})()

        def slice_statistics(self, hu, spacing_yx):
            return None

    for air in (1.0, 0.0):
        config = AugmentationConfig.disabled()
        config.edge_context_probability, config.edge_context_air_fraction = 1.0, air
        dataset = PatchDataset([case], Preprocessor(), patch_size=16, seed=0, liver_slice_fraction=1.0,
                               lesion_inserter=bright_tumor_everywhere, augmenter=SliceAugmenter(config))
        sides = set()
        for index in range(12):
            hu, label = dataset.sample_arrays(index)
            assert np.all((hu[1] == 50.0) | (hu[1] == 210.0)) and (hu[1] == 210.0).any()  # the centre, as it was
            assert set(np.unique(label)) <= {1, 2} and (label == 2).any()
            cut = [k for k in (0, 2) if not np.all((hu[k] == 40.0 + 10.0 * k) | (hu[k] == 200.0 + 10.0 * k))]
            assert len(cut) == 1  # exactly one side replaced
            expected = np.full_like(hu[1], EDGE_AIR_HU) if air else hu[1]
            np.testing.assert_array_equal(hu[cut[0]], expected)
            sides.add(cut[0])
        assert sides == {0, 2}


def test_each_sample_is_augmented_in_its_own_cases_pixel_size(tmp_path):
    """Without a fixed network spacing every case keeps its own pixel size, but mm-valued augmentation (an elastic
    warp of 4 mm, a liver field over 40-100 mm) was converted to pixels with the first case's for all (a stop-31
    known limit): a 0.7 mm case then got half the warp it should in mm."""
    from LiverTumorSegLib.training.augmentation import AugmentationConfig, SliceAugmenter
    from LiverTumorSegLib.training.sampling import PatchDataset

    cases = []
    for name, pixel in (("fine", 0.7), ("coarse", 1.4)):
        np.save(tmp_path / f"{name}_hu.npy", np.full((3, 64, 64), 40.0, np.float32))
        labels = np.zeros((3, 64, 64), np.uint8)
        labels[:, 20:44, 20:44] = 1
        np.save(tmp_path / f"{name}_lab.npy", labels)
        cases.append(CachedCase(name, name, str(tmp_path / f"{name}_hu.npy"), str(tmp_path / f"{name}_lab.npy"),
                                (3.0, pixel, pixel), (3.0, pixel, pixel), [0, 1, 2], [], 3))
    config = AugmentationConfig(elastic_probability=1.0, elastic_magnitude_mm=(4.0, 4.0), rotation_probability=0.0,
                                zoom_probability=0.0, shift_probability=0.0, shear_probability=0.0)
    seen = []

    class Recording(SliceAugmenter):
        def __call__(self, hu, labels, rng=None, spatial=None, pixel_spacing_mm=None):
            seen.append(pixel_spacing_mm)
            return super().__call__(hu, labels, rng, spatial=spatial, pixel_spacing_mm=pixel_spacing_mm)

    class Preprocessor:  # only the context (size, adjacent slices) and the whole slices' statistics (none) are read
        config = type("C", (), {"context_slices": 1, "context_offset": lambda self, spacing: 1.0})()

        def slice_statistics(self, hu, spacing_yx):
            return None

    augmenter = Recording(config, pixel_spacing_mm=0.7)   # the trainer's default: the first case's
    dataset = PatchDataset(cases, Preprocessor(), patch_size=32, seed=0, augmenter=augmenter)
    drawn = [dataset._sample(i)[2].spacing_zyx[1] for i in range(12)]
    assert seen == drawn and set(seen) == {0.7, 1.4}       # both cases drawn, each in its own pixel size
    elastic = {"elastic_magnitude_mm": 4.0}
    assert augmenter.source_reach_px(elastic, 0.0) == pytest.approx(4.0 * 4.0 / 0.7)
    assert augmenter.source_reach_px(elastic, 0.0, pixel_spacing_mm=1.4) == pytest.approx(4.0 * 4.0 / 1.4)
    with pytest.raises(InputError, match="pixel_spacing_mm must be a finite number of mm > 0"):
        augmenter(np.zeros((3, 8, 8), np.float32), np.zeros((8, 8), np.uint8), 0, pixel_spacing_mm=0.0)


def test_case_ids_differing_in_case_or_a_replaced_character_get_their_own_cache(tmp_path):
    """'Case1' and 'case1' were one cache file on Windows and macOS (case-insensitive file systems), and 'a/b' and
    'a_b' one everywhere: the second case overwrote the first one's cached slices."""
    from LiverTumorSegLib.io import write_label_map, write_volume
    from LiverTumorSegLib.phantom import make_phantom
    from LiverTumorSegLib.preprocessing import PreprocessingConfig, SlicePreprocessor
    from LiverTumorSegLib.training.datasets import Case
    from LiverTumorSegLib.training.slice_cache import build_slice_cache

    cases = []
    for n, case_id in enumerate(("Case1", "case1", "a/b", "a_b")):
        phantom = make_phantom((4, 24 + 8 * n, 24), (2.0, 2.0, 4.0), seed=n)
        image = write_volume(tmp_path / f"ct{n}.nii.gz", phantom.ct)
        label = write_label_map(tmp_path / f"lab{n}.nii.gz", phantom.labels, phantom.ct.geometry)
        cases.append(Case(case_id, case_id, str(image), str(label), "csv"))
    config = PreprocessingConfig(channels=[{"kind": "window", "level": 40.0, "width": 400.0}], context_slices=0,
                                 crop_to_body=False, size_multiple=8)
    cached = build_slice_cache(cases, SlicePreprocessor(config), tmp_path / "cache")
    stems = {p.name.split(".")[0].lower() for p in (tmp_path / "cache").rglob("*.json")}
    assert len(stems) == 4  # distinct even when compared without case
    assert [c.case_id for c in cached] == ["Case1", "case1", "a/b", "a_b"]
    assert len({tuple(np.load(c.hu_path, mmap_mode="r").shape) for c in cached}) == 4


def test_distributed_cuda_training_uses_gloo_where_pytorch_has_no_nccl(monkeypatch):
    """Windows builds of PyTorch have no NCCL: a multi-GPU run there asked for it and failed to start."""
    import torch

    from LiverTumorSegLib.training import distributed

    chosen = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend, **kw: chosen.append(backend))
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: None)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for nccl, expected in ((False, "gloo"), (True, "nccl")):
        monkeypatch.setattr(distributed.dist, "is_nccl_available", lambda nccl=nccl: nccl)
        distributed.init_distributed("cuda")
        assert chosen[-1] == expected
    distributed.init_distributed("cpu")
    assert chosen[-1] == "gloo"


def test_torchrun_processes_wait_long_enough_for_the_cache_and_fit_the_gpus(monkeypatch):
    """NCCL's default 10-minute timeout stopped the processes waiting while process 0 cached a large data set; a
    node started with more processes than GPUs failed in set_device as an internal error (the GPU code audit)."""
    import datetime

    import torch

    from LiverTumorSegLib.training import distributed

    given = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "is_nccl_available", lambda: True)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend, **kw: given.update(kw))
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: None)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(InputError, match="started process 1 of this node, but it has 1 GPU"):
        distributed.init_distributed("cuda")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    distributed.init_distributed("cuda")
    assert given["timeout"] == datetime.timedelta(minutes=distributed.DDP_TIMEOUT_MINUTES) > datetime.timedelta(
        minutes=10)
    assert distributed.process_group_timeout({distributed.DDP_TIMEOUT_VARIABLE: "30"}) == datetime.timedelta(minutes=30)
    for bad in ("0", "-5", "abc", "nan"):
        with pytest.raises(InputError, match="must be a positive number of minutes"):
            distributed.process_group_timeout({distributed.DDP_TIMEOUT_VARIABLE: bad})


def test_resume_from_another_folder_with_a_relative_data_path_is_the_same_data(tmp_path, monkeypatch):
    """A run started in runs/ with --data ../data/cases.csv and resumed from the project folder with
    --data data/cases.csv trains on the same file, but was refused as 'other settings' (a stop-31 known limit).
    The checkpoint now records where the text pointed; other data is still refused."""
    import json

    from LiverTumorSegLib.training.trainer import check_resume_config, resolved_data_path
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cases.csv").write_text("image,label\n")
    (tmp_path / "data" / "other.csv").write_text("image,label\n")
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path / "runs")
    started = TrainConfig.from_dict({"data": "../data/cases.csv"})
    saved, saved_path = json.dumps(started.to_dict()), resolved_data_path(started.data)
    assert saved_path == str((tmp_path / "data" / "cases.csv").resolve())
    monkeypatch.chdir(tmp_path)
    same = TrainConfig.from_dict({"data": "data/cases.csv"})
    check_resume_config(saved, same, tmp_path / "last.pt", saved_data_path=saved_path)
    with pytest.raises(InputError, match="data"):  # an older checkpoint without the resolved path: refused as before
        check_resume_config(saved, same, tmp_path / "last.pt")
    with pytest.raises(InputError, match="data"):
        check_resume_config(saved, TrainConfig.from_dict({"data": "data/other.csv"}), tmp_path / "last.pt",
                            saved_data_path=saved_path)


@pytest.mark.parametrize("deciding", [{"use_best_checkpoint": True}, {"early_stopping_patience": 2},
                                      {"schedule": "plateau"}])
def test_a_resume_may_not_change_the_validation_sample_where_validation_decides(tmp_path, deciding):
    """A resume with another --val-max-slices counted an unchanged model's score on fewer slices as an improvement,
    trained past the early stop and packaged another epoch (the training audit). Where the validation score decides
    nothing, the validation sample may still change on resume (it only reports)."""
    import json

    from LiverTumorSegLib.training.trainer import check_resume_config

    for field, other in (("val_max_slices", 1), ("val_every", 3)):
        saved = json.dumps(TrainConfig.from_dict(dict(deciding, val_max_slices=4, val_every=1)).to_dict())
        changed = TrainConfig.from_dict(dict(deciding, **dict({"val_max_slices": 4, "val_every": 1}, **{field: other})))
        with pytest.raises(InputError, match=field):
            check_resume_config(saved, changed, tmp_path / "last.pt")
        plain = json.dumps(TrainConfig.from_dict({"val_max_slices": 4, "val_every": 1}).to_dict())
        check_resume_config(plain, TrainConfig.from_dict({"val_max_slices": 4, "val_every": 1, field: other}),
                            tmp_path / "last.pt")


def test_a_folds_resume_does_not_compare_val_fraction(tmp_path):
    """A crossval fold saved by 0.6.20 kept a given --val-fraction (ignored there); crossval now leaves it out, and
    the resume was refused as 'val_fraction 0.1 (now 0.2)', with no option to mend it (the review). A fold's own
    patients decide its validation; a hold-out run's val_fraction is still compared."""
    import json

    from LiverTumorSegLib.commands.train import crossval_values
    from LiverTumorSegLib.training.trainer import check_resume_config

    saved = json.dumps(TrainConfig.from_dict({"folds": 4, "fold": 0, "val_fraction": 0.1}).to_dict())
    check_resume_config(saved, TrainConfig.from_dict(crossval_values({"folds": 4, "val_fraction": 0.1})),
                        tmp_path / "last.pt")
    with pytest.raises(InputError, match="val_fraction"):
        check_resume_config(json.dumps(TrainConfig.from_dict({"val_fraction": 0.1}).to_dict()),
                            TrainConfig.from_dict({"val_fraction": 0.3}), tmp_path / "last.pt")


def test_a_resume_with_epochs_ending_before_the_epoch_in_progress_is_refused(tmp_path):
    """A checkpoint 1 step into epoch 3, resumed with --epochs 2: 'all 2 epochs were trained (7 steps)' of 3-step
    epochs, the package blaming a time limit never set (the training audit)."""
    from LiverTumorSegLib.training.trainer import check_resume_epochs

    with pytest.raises(InputError, match=r"saved 1 step\(s\) into epoch 3; --epochs 2 ends before that epoch.*"
                                         r"--epochs 3 or more"):
        check_resume_epochs(2, 1, 2, tmp_path / "last.pt")
    check_resume_epochs(2, 1, 3, tmp_path / "last.pt")   # the epoch in progress is trained to its end
    check_resume_epochs(2, 0, 2, tmp_path / "last.pt")   # at an epoch's end: nothing left, the package is written
    check_resume_epochs(2, 0, 1, tmp_path / "last.pt")


def test_resume_check_takes_yaml_int_keys_as_the_checkpoints_text_keys(tmp_path):
    """A YAML label_map {5: 1} is stored as {"5": 1} in the checkpoint's JSON: resuming with the same YAML was
    refused; a real difference still is."""
    import json

    from LiverTumorSegLib.training.trainer import check_resume_config
    saved = json.dumps(TrainConfig.from_dict({"label_map": {5: 1}}).to_dict())
    check_resume_config(saved, TrainConfig.from_dict({"label_map": {5: 1}}), tmp_path / "last.pt")
    with pytest.raises(InputError, match="label_map"):
        check_resume_config(saved, TrainConfig.from_dict({"label_map": {5: 2}}), tmp_path / "last.pt")


@pytest.mark.parametrize("channel, equalize", [
    ({"kind": "zscore", "mask": "body"}, None),
    ({"kind": "hist_scaled", "n_bins": 50}, None),
    ({"kind": "window", "level": 40.0, "width": 400.0}, "histogram"),
])
def test_training_patches_get_their_whole_slices_statistics_as_inference_does(tmp_path, channel, equalize):
    """A z-score, histogram-scaled or globally equalized channel was computed on each training patch but on the
    whole slice at inference (zscore_body inputs up to 8.7 apart). A patch's input now equals the same pixels of
    the whole slice's input, as validation and inference compute it."""
    from LiverTumorSegLib.preprocessing import PreprocessingConfig
    from LiverTumorSegLib.preprocessing.preprocessor import SlicePreprocessor
    from LiverTumorSegLib.training.sampling import PatchDataset, full_slice_inputs

    import seeding
    rng = seeding.rng(17)
    size, patch = 160, 48
    yy, xx = np.mgrid[:size, :size]
    body = (yy - 80) ** 2 + (xx - 80) ** 2 < 70 ** 2
    hu = np.where(body, 40.0 + 0.5 * (yy - 80) + 2.0 * (xx - 80) + rng.normal(0, 20, (size, size)), -1000.0)
    hu = np.round(hu).astype(np.float32)[None]  # one slice, noisy: the patch's place is found from its values
    np.save(tmp_path / "hu.npy", hu)
    labels = np.zeros((1, size, size), np.uint8)
    labels[0, 60:100, 60:100] = 1
    np.save(tmp_path / "lab.npy", labels)
    case = CachedCase("c", "p", str(tmp_path / "hu.npy"), str(tmp_path / "lab.npy"), (3.0, 1.5, 1.5),
                      (3.0, 1.5, 1.5), [0], [], 1)
    config = PreprocessingConfig(channels=[channel], context_slices=0, equalize=equalize, target_spacing_mm=1.5)
    preprocessor = SlicePreprocessor(config)
    whole = full_slice_inputs(case, preprocessor, [0])[0]  # (C, H, W): what inference gives these pixels
    dataset = PatchDataset([case], preprocessor, patch_size=patch, seed=seeding.test_seed(17),
                           liver_slice_fraction=1.0)
    for index in range(5):
        x, _ = dataset[index]
        hu_patch, _ = dataset.sample_arrays(index)
        windows = np.lib.stride_tricks.sliding_window_view(hu[0], (patch, patch))  # where the patch was cut
        (oy,), (ox,) = np.nonzero((windows == hu_patch[0]).all(axis=(-2, -1)))
        np.testing.assert_allclose(x.numpy(), whole[:, oy:oy + patch, ox:ox + patch], atol=1e-5)
    # computed on the patch alone the inputs differed: the defect this test guards against
    alone = preprocessor.stack_input(hu_patch, spacing_yx=(1.5, 1.5))
    assert np.abs(alone - whole[:, oy:oy + patch, ox:ox + patch]).max() > 0.05


def test_grad_scaler_on_a_torch_without_torch_amp_grad_scaler(monkeypatch):
    """torch.amp.GradScaler appeared in torch 2.3; the package allows torch>=2.1, where every Trainer failed with
    an AttributeError ('internal error'). Without it the CUDA scaler is used (enabled only on CUDA)."""
    import warnings

    from LiverTumorSegLib.training.trainer import grad_scaler

    if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3: that one, then as if it were missing
        assert isinstance(grad_scaler("cpu", enabled=False), torch.amp.GradScaler)
        monkeypatch.delattr(torch.amp, "GradScaler")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer torch calls torch.cuda.amp.GradScaler deprecated
        scaler = grad_scaler("cpu", enabled=True)
    assert not scaler.is_enabled()  # fp16 on the CPU: nothing to scale


def _cache_fixture(tmp_path, seed=0):
    from LiverTumorSegLib.io import write_label_map, write_volume
    from LiverTumorSegLib.phantom import make_phantom
    from LiverTumorSegLib.preprocessing import PreprocessingConfig, SlicePreprocessor
    from LiverTumorSegLib.training.datasets import Case

    phantom = make_phantom((4, 32, 32), (2.0, 2.0, 4.0), noise_hu=20.0, seed=seed)
    image = write_volume(tmp_path / "ct.nii", phantom.ct)
    label = write_label_map(tmp_path / "ct_lab.nii", phantom.labels, phantom.ct.geometry)
    config = PreprocessingConfig(channels=[{"kind": "window", "level": 40.0, "width": 400.0}], context_slices=0,
                                 crop_to_body=False, size_multiple=8)
    return Case("c1", "p1", str(image), str(label), "csv"), SlicePreprocessor(config)


def test_a_damaged_slice_cache_entry_is_rebuilt_not_an_error(tmp_path):
    """A half-written sidecar ended training with JSONDecodeError, a truncated .hu.npy with 'mmap length is
    greater than file size'; both are rebuilt now."""
    from LiverTumorSegLib.training.slice_cache import build_slice_cache

    case, preprocessor = _cache_fixture(tmp_path)
    (entry,) = build_slice_cache([case], preprocessor, tmp_path / "cache")
    expected = np.array(entry.hu)
    sidecar = Path(entry.hu_path.replace(".hu.npy", ".json"))
    text = sidecar.read_text()
    sidecar.write_text(text[: len(text) // 2])
    (entry,) = build_slice_cache([case], preprocessor, tmp_path / "cache")
    np.testing.assert_array_equal(entry.hu, expected)
    data = Path(entry.hu_path).read_bytes()
    Path(entry.hu_path).write_bytes(data[: len(data) // 2])
    (entry,) = build_slice_cache([case], preprocessor, tmp_path / "cache")
    np.testing.assert_array_equal(entry.hu, expected)
    assert not [p.name for p in (tmp_path / "cache").rglob("*tmp*")]  # no temporary left


def test_a_slice_cache_entry_whose_array_is_not_the_recorded_shape_is_rebuilt(tmp_path):
    """A .hu.npy of another build (a valid array of another shape beside this sidecar) is not cut into patches:
    the entry is cached again and gives the case's own slices (z, H, W)."""
    from LiverTumorSegLib.training.slice_cache import build_slice_cache

    case, preprocessor = _cache_fixture(tmp_path)
    (entry,) = build_slice_cache([case], preprocessor, tmp_path / "cache")
    expected = np.array(entry.hu)
    np.save(entry.hu_path, np.zeros((2,) + expected.shape[1:], np.float32))  # 2 slices, the sidecar says 4
    logged = []
    (again,) = build_slice_cache([case], preprocessor, tmp_path / "cache", log=logged.append)
    assert logged == [f"caching c1 ({Path(case.image_path).name})"]
    np.testing.assert_array_equal(again.hu, expected)


def test_a_damaged_content_hash_store_is_hashed_again_and_rewritten(tmp_path):
    """The kept hashes (cache/CONTENT_HASHES_NAME) half-written or not JSON: every file is hashed again (the
    fingerprint is the files' SHA-256 all the same) and the store is written anew, not an error."""
    import hashlib

    from LiverTumorSegLib.training import slice_cache
    from LiverTumorSegLib.training.datasets import Case

    (tmp_path / "ct.nii").write_bytes(b"ct")
    (tmp_path / "lab.nii").write_bytes(b"label")
    cases = [Case("c0", "p0", str(tmp_path / "ct.nii"), str(tmp_path / "lab.nii"))]
    store = tmp_path / "cache" / slice_cache.CONTENT_HASHES_NAME
    store.parent.mkdir()
    store.write_text('{"' + str(tmp_path / "ct.nii"), encoding="utf-8")  # cut off mid-key
    fingerprint = slice_cache.data_fingerprint(cases, tmp_path / "cache")
    assert fingerprint == {"c0": {"label_sha256": hashlib.sha256(b"label").hexdigest(),
                                  "image_sha256": hashlib.sha256(b"ct").hexdigest(), "image_bytes": 2}}
    assert sorted(json.loads(store.read_text(encoding="utf-8"))) == [str(tmp_path / "ct.nii"), str(tmp_path / "lab.nii")]


def test_a_slice_cache_entry_without_the_voxel_digest_is_rebuilt_and_gets_it(tmp_path):
    """Entries cached before the voxel digest existed cannot take part in the one-scan-two-files check: they are
    cached again once, and the digest is that of the canonical CT."""
    from LiverTumorSegLib.training.datasets import load_case, voxel_digest
    from LiverTumorSegLib.training.slice_cache import build_slice_cache

    case, preprocessor = _cache_fixture(tmp_path)
    (entry,) = build_slice_cache([case], preprocessor, tmp_path / "cache")
    assert entry.voxel_sha256 == voxel_digest(load_case(case)[0].array)
    sidecar = Path(entry.hu_path.replace(".hu.npy", ".json"))
    meta = json.loads(sidecar.read_text())
    del meta["voxel_sha256"]
    sidecar.write_text(json.dumps(meta))
    logged = []
    (again,) = build_slice_cache([case], preprocessor, tmp_path / "cache", log=logged.append)
    assert logged == [f"caching c1 ({Path(case.image_path).name})"] and again.voxel_sha256 == entry.voxel_sha256
    logged.clear()
    build_slice_cache([case], preprocessor, tmp_path / "cache", log=logged.append)
    assert logged == []  # and then reused


def test_voxel_digest_is_the_values_and_shape_not_the_storage():
    """Known answers: the digest is SHA-256 over the shape's text and each slice as little-endian float32."""
    import hashlib

    from LiverTumorSegLib.training.datasets import voxel_digest

    volume = np.arange(24, dtype=np.int16).reshape(2, 3, 4) - 1000
    expected = hashlib.sha256(b"(2, 3, 4)" + volume.astype("<f4").tobytes()).hexdigest()
    assert voxel_digest(volume) == expected
    assert voxel_digest(volume.astype(np.float64)) == expected            # another data type, same values
    assert voxel_digest(np.asfortranarray(volume)) == expected           # another memory order
    changed = volume.copy()
    changed[1, 2, 3] += 1
    assert voxel_digest(changed) != expected                              # one voxel
    assert voxel_digest(volume.reshape(2, 4, 3)) != expected              # same bytes, another shape


def test_a_slice_cache_entry_is_rebuilt_for_new_content_and_for_a_stricter_run(tmp_path):
    """Same size and modification time served the old content; an entry made with allow_non_hu let a later run
    without it skip the non-HU refusal."""
    import os

    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.io import read_volume, write_volume
    from LiverTumorSegLib.training.slice_cache import build_slice_cache

    case, preprocessor = _cache_fixture(tmp_path)
    build_slice_cache([case], preprocessor, tmp_path / "cache")
    image = Path(case.image_path)
    stat = image.stat()
    volume = read_volume(image)
    volume.array[:] = volume.array + 50                       # new content, same size (uncompressed NIfTI)
    write_volume(image, volume, overwrite=True)
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the old modification time
    assert image.stat().st_size == stat.st_size
    (entry,) = build_slice_cache([case], preprocessor, tmp_path / "cache")
    fresh = preprocessor.spatial_forward(read_volume(image).array, volume.spacing_zyx)[0]
    np.testing.assert_allclose(entry.hu, fresh, atol=1e-4)

    normalised = read_volume(image)
    normalised.array = ((normalised.array.astype(np.float32) + 1024) / 4000).astype(np.float32)  # 0..1, not HU
    write_volume(image, normalised, overwrite=True)
    build_slice_cache([case], preprocessor, tmp_path / "cache", allow_non_hu=True)
    with pytest.raises(InputError, match="Hounsfield"):
        build_slice_cache([case], preprocessor, tmp_path / "cache")


def test_patches_hold_the_drawn_liver_also_near_the_image_edge(tmp_path):
    """The 1.75 P work region was clamped into the image before the patch was cut from its centre, so a patch
    centre could never come within 0.875 P of the image edge: a liver at the edge of the slice was left out of
    most patches drawn 'centred on a liver pixel' (on a 224 x 256 px slice every 160 px patch sat at the centre)."""
    from LiverTumorSegLib.training.sampling import PatchDataset

    size, patch = 300, 64
    np.save(tmp_path / "hu.npy", np.full((3, size, size), 40.0, np.float32))
    labels = np.zeros((3, size, size), np.uint8)
    labels[:, 20:30, 20:30] = 1  # 100 liver pixels in the corner of the slice
    np.save(tmp_path / "lab.npy", labels)
    case = CachedCase("c", "p", str(tmp_path / "hu.npy"), str(tmp_path / "lab.npy"), (3.0, 1.5, 1.5),
                      (3.0, 1.5, 1.5), [0, 1, 2], [], 3)

    class Preprocessor:
        config = type("C", (), {"context_slices": 1, "context_offset": lambda self, spacing: 1.0})()

        def slice_statistics(self, hu, spacing_yx):
            return None

    dataset = PatchDataset([case], Preprocessor(), patch_size=patch, seed=0, liver_slice_fraction=1.0)
    liver_in_patch = [int(np.count_nonzero(dataset.sample_arrays(i)[1])) for i in range(60)]
    # the patch box is [0, 64) moved by at most (112 - 64) // 4 = 12 px of jitter: the whole block is inside
    assert liver_in_patch == [100] * 60, liver_in_patch


def test_a_patch_the_size_of_the_slice_is_the_slice(tmp_path):
    """README's advice for CLAHE and filter presets is --patch-size = the slice size, so that training computes
    them on what inference sees; the patch was still shifted by up to (1.75 P - P) // 4 px, cutting off part of
    the slice for -1024 HU fill (CLAHE up to 0.16 apart from inference's). Along an axis the patch spans whole
    there is no jitter; along a longer axis there still is."""
    from LiverTumorSegLib.training.sampling import PatchDataset

    rng = np.random.default_rng(0)
    hu = rng.normal(40.0, 30.0, (4, 48, 80)).astype(np.float32)
    np.save(tmp_path / "hu.npy", hu)
    labels = np.zeros((4, 48, 80), np.uint8)
    labels[:, 10:30, 30:60] = 1
    np.save(tmp_path / "lab.npy", labels)
    case = CachedCase("c", "p", str(tmp_path / "hu.npy"), str(tmp_path / "lab.npy"), (3.0, 1.0, 1.0),
                      (3.0, 1.0, 1.0), [0, 1, 2, 3], [], 4)

    class Preprocessor:
        config = type("C", (), {"context_slices": 0, "context_offset": lambda self, spacing: 1.0})()

        def slice_statistics(self, hu, spacing_yx):
            return None

    dataset = PatchDataset([case], Preprocessor(), patch_size=48, seed=0, liver_slice_fraction=1.0)
    offsets = set()
    for index in range(30):
        patch, _ = dataset.sample_arrays(index)
        found = [(z, x0) for z in range(4) for x0 in range(80 - 48 + 1)
                 if np.array_equal(patch[0], hu[z, :, x0:x0 + 48])]
        assert found, f"sample {index}: not a whole-height window of a slice"  # no rows cut off or filled
        offsets.add(found[0][1])
    assert len(offsets) > 3  # along x (80 px) the patch still moves


def test_fold_counts_are_checked_before_the_fold_and_crossval_says_what_it_needs(capsys):
    """--folds -2 was answered 'fold 0 is outside 0..-3'; crossval --folds 1, which its help said meant 4, was
    refused with a message about a hold-out split crossval never makes."""
    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.errors import InputError

    with pytest.raises(InputError, match=r"folds must be 0 \(hold-out split\) or at least 2 \(got -2\)"):
        TrainConfig.from_dict({"data": "x.csv", "folds": -2})
    for folds in ("1", "-2", "0"):  # 0 (train's hold-out) ran 4 folds without a word
        assert main(["crossval", "--data", "x.csv", "--folds", folds, "-o", "cv"]) == 2
        assert f"crossval needs --folds 2 or more (got {folds})" in capsys.readouterr().err


def test_file_hashes_for_resume_are_kept_in_the_cache_and_taken_again_only_for_changed_files(tmp_path,
                                                                                            monkeypatch):
    """data_fingerprint hashed every label at every start, fold and rank (LiTS' uncompressed labels are about
    100 MB each). The hashes are kept in the cache folder with the stat signature they were taken at. Images are
    hashed too (they were compared by size: a CT replaced by another of the same size went unseen)."""
    import hashlib

    from LiverTumorSegLib.training import slice_cache
    from LiverTumorSegLib.training.datasets import Case

    cases = []
    for i in range(2):
        (tmp_path / f"ct{i}.nii").write_bytes(b"ct" * (i + 1))
        (tmp_path / f"lab{i}.nii").write_bytes(b"label %d" % i)
        cases.append(Case(f"c{i}", f"p{i}", str(tmp_path / f"ct{i}.nii"), str(tmp_path / f"lab{i}.nii")))
    hashed = []
    original = slice_cache._content_fingerprint
    monkeypatch.setattr(slice_cache, "_content_fingerprint",
                        lambda path, *files: hashed.append(path) or original(path, *files))
    cache = tmp_path / "cache"
    first = slice_cache.data_fingerprint(cases, cache)  # no cache folder yet (a fresh run): made to keep them
    assert len(hashed) == 4 and (cache / slice_cache.CONTENT_HASHES_NAME).is_file()

    def entry(label, image):
        return {"label_sha256": hashlib.sha256(label).hexdigest(), "image_sha256": hashlib.sha256(image).hexdigest(),
                "image_bytes": len(image)}

    assert first == {"c0": entry(b"label 0", b"ct"), "c1": entry(b"label 1", b"ctct")}
    assert slice_cache.data_fingerprint(cases, cache) == first and len(hashed) == 4  # kept: none read again
    (tmp_path / "lab1.nii").write_bytes(b"label XX")  # another size: found whatever the clock's resolution
    (tmp_path / "ct0.nii").unlink()
    (tmp_path / "ct0.nii").write_bytes(b"CT")  # the same size, another inode: hashed again
    again = slice_cache.data_fingerprint(cases, cache)
    assert sorted(hashed[4:]) == [str(tmp_path / "ct0.nii"), str(tmp_path / "lab1.nii")]
    assert again == {"c0": entry(b"label 0", b"CT"), "c1": entry(b"label XX", b"ctct")}


def _spy_on_scandir(monkeypatch, spy) -> None:
    """``os.scandir`` replaced by ``spy`` also where ``Path.rglob`` keeps its own reference to it: the accessor of
    Python < 3.11, the globber class of Python >= 3.13."""
    import glob
    import os

    monkeypatch.setattr(os, "scandir", spy)
    if hasattr(pathlib, "_NormalAccessor"):
        monkeypatch.setattr(pathlib._NormalAccessor, "scandir", staticmethod(spy))
    if "scandir" in getattr(getattr(glob, "_StringGlobber", None), "__dict__", {}):
        monkeypatch.setattr(glob._StringGlobber, "scandir", staticmethod(spy))


def test_a_dicom_folders_fingerprint_walks_it_once(tmp_path, monkeypatch):
    """data_fingerprint walked an image folder (a DICOM series) once for its stat signature, once more to hash it
    when no hash was kept, and once more, stat'ing every file again, for its size. One walk gives all three now;
    the values are those the separate walks gave."""
    import collections
    import os

    from LiverTumorSegLib.training import slice_cache
    from LiverTumorSegLib.training.datasets import Case

    series = tmp_path / "series"
    for name, data in (("IM1", b"one"), ("IM2", b"second"), ("more/IM3", b"3")):
        (series / name).parent.mkdir(parents=True, exist_ok=True)
        (series / name).write_bytes(data)
    (tmp_path / "lab.nii").write_bytes(b"label")
    cases = [Case("c0", "p0", str(series), str(tmp_path / "lab.nii"))]
    listed = collections.Counter()
    real_scandir = os.scandir

    def counting_scandir(path="."):
        if Path(path) == series or series in Path(path).parents:  # the cache folder is listed too: not counted
            listed[str(Path(path))] += 1  # 3.13 lists "folder/" with its slash
        return real_scandir(path)

    _spy_on_scandir(monkeypatch, counting_scandir)
    slice_cache._files_of(series)
    one_walk = dict(listed)  # the folder and its subfolder, each listed as often as one walk lists it
    assert one_walk.get(str(series)), "the walk no longer lists folders with os.scandir: count its walks otherwise"
    for fresh in (True, False):  # no hash kept (hashed now), then the kept one
        listed.clear()
        fingerprint = slice_cache.data_fingerprint(cases, tmp_path / "cache")
        assert dict(listed) == one_walk, f"fresh={fresh}: {dict(listed)} listed, one walk lists {one_walk}"
        assert fingerprint["c0"]["image_bytes"] == len(b"one") + len(b"second") + len(b"3")
        assert fingerprint["c0"]["image_sha256"] == slice_cache._content_fingerprint(str(series))
    kept = json.loads((tmp_path / "cache" / slice_cache.CONTENT_HASHES_NAME).read_text(encoding="utf-8"))
    assert kept[str(series)]["signature"] == slice_cache._path_signature(str(series))


def test_a_cache_folder_that_cannot_be_written_only_keeps_no_hashes(tmp_path, monkeypatch):
    """A shared slice cache this user may not write to: keeping the hashes there raised atomic_output's 'not
    writable' InputError and stopped the run, though the hashes are only a saving. Now they are just not kept."""
    from LiverTumorSegLib import fileutil
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.training import slice_cache
    from LiverTumorSegLib.training.datasets import Case

    (tmp_path / "ct.nii").write_bytes(b"ct")
    (tmp_path / "lab.nii").write_bytes(b"lab")
    (tmp_path / "cache").mkdir()

    def read_only(folder, what="Output folder"):  # what it says on a read-only mount (root may write anywhere)
        raise InputError(f"{what} '{folder}' is not writable (Read-only file system); choose another output location")

    monkeypatch.setattr(fileutil, "check_folder_writable", read_only)
    fingerprint = slice_cache.data_fingerprint([Case("c0", "p0", str(tmp_path / "ct.nii"), str(tmp_path / "lab.nii"))],
                                               tmp_path / "cache")
    assert fingerprint["c0"]["image_bytes"] == 2 and not any((tmp_path / "cache").iterdir())


def test_resume_compares_each_case_on_what_the_checkpoint_recorded():
    """A checkpoint's entry {label, image hash} is compared by hash; one written before images were hashed,
    [label SHA-256, image bytes], by the label's hash and the image's size (not refused as a wholly other data
    set); the changed file is named."""
    from LiverTumorSegLib.training.slice_cache import changed_files

    now = {"label_sha256": "L", "image_sha256": "I", "image_bytes": 10}
    assert changed_files({"label_sha256": "L", "image_sha256": "I", "image_bytes": 10}, now) == []
    assert changed_files({"label_sha256": "L", "image_sha256": "other", "image_bytes": 10}, now) == ["image"]
    assert changed_files({"label_sha256": "other", "image_sha256": "I"}, now) == ["label"]
    assert changed_files(["L", 10], now) == []
    assert changed_files(["L", 11], now) == ["image"]
    assert changed_files(["other", 11], now) == ["label", "image"]
    assert changed_files(None, now) == ["label", "image"]  # a case the checkpoint does not list


def test_a_cache_holding_label_hashes_is_still_a_failed_runs_cache(tmp_path):
    """data_fingerprint keeps label hashes in the cache root; that file made the folder no longer count as a
    failed run's cache, so the next failed start deleted the whole cache (every CT cached again)."""
    from LiverTumorSegLib.training import slice_cache
    from LiverTumorSegLib.training.datasets import Case
    from LiverTumorSegLib.training.trainer import holds_only_slice_cache, remove_if_no_checkpoint

    (tmp_path / "ct.nii").write_bytes(b"ct")
    (tmp_path / "lab.nii").write_bytes(b"lab")
    run = tmp_path / "run"
    key = run / "cache" / "abc123def456"
    key.mkdir(parents=True)
    for suffix in slice_cache.ENTRY_SUFFIXES:
        (key / f"c0{suffix}").write_bytes(b"x")
    slice_cache.data_fingerprint([Case("c0", "p0", str(tmp_path / "ct.nii"), str(tmp_path / "lab.nii"))],
                                 run / "cache")
    assert (run / "cache" / slice_cache.CONTENT_HASHES_NAME).is_file()
    assert holds_only_slice_cache(run)
    remove_if_no_checkpoint(run)
    assert (key / f"c0{slice_cache.ENTRY_SUFFIXES[0]}").is_file()


def test_a_dicom_folders_content_hash_is_the_same_on_every_system(tmp_path, monkeypatch):
    """A series folder's hash covered its files in the order the system sorts paths (Windows: without case) and
    their names with the system's separator ('\\' on Windows), so a resume on another system was refused as
    'image changed'. Now: POSIX names in POSIX order, whatever order the files come in."""
    import hashlib

    from LiverTumorSegLib.package import file_sha256
    from LiverTumorSegLib.training import slice_cache

    series = tmp_path / "series"
    for name, data in (("IM_B", b"b"), ("im_a", b"a"), ("sub/x.dcm", b"x")):
        (series / name).parent.mkdir(parents=True, exist_ok=True)
        (series / name).write_bytes(data)
    expected = hashlib.sha256()
    for name in ("IM_B", "im_a", "sub/x.dcm"):  # POSIX order: upper case before lower case
        expected.update(f"{name}\0{file_sha256(series / name)}\n".encode("utf-8"))
    assert slice_cache._content_fingerprint(str(series)) == expected.hexdigest()
    as_windows_lists_them = sorted(slice_cache._files_of(series), key=lambda f: str(f).lower(), reverse=True)
    monkeypatch.setattr(slice_cache, "_files_of", lambda path: list(as_windows_lists_them))
    assert slice_cache._content_fingerprint(str(series)) == expected.hexdigest()


def test_an_older_package_whose_best_epoch_is_its_last_is_read_as_the_last_epochs_weights():
    """Older packages held the best validation epoch's weights, and crossval read each as best_on_validation
    (optimistic), also where that epoch was the last one trained (the v3 recipe validates only after its last
    epoch): those are the last epoch's weights, chosen by nothing."""
    from types import SimpleNamespace

    from LiverTumorSegLib.training.crossval import fold_row, fold_selection

    older = {"best_epoch": 27, "whole_volume": {"liver_dice": 0.9, "tumor_dice": 0.5}}
    assert fold_selection(older, 27) == ("last_epoch", [])
    row = fold_row(0, SimpleNamespace(validation=older, val_cases=["a"], epochs_completed=27))
    assert row["weights"] == "last_epoch" and row["selected_on_validation"] == "no"
    weights, decided = fold_selection(dict(older, best_epoch=20), 27)
    assert weights == "best_on_validation" and "(20 of 27;" in decided[0]


def test_crossval_names_the_post_processing_a_package_recorded_not_todays_defaults(tmp_path):
    """crossval compared a package's recorded options with today's PostprocessingOptions() defaults: a later
    change of the defaults would have called every older package's 'custom', and crossval.json listed today's
    options. The label the trainer recorded when it wrote the package is shown, and the recorded options."""
    import json
    from types import SimpleNamespace

    from LiverTumorSegLib.training.crossval import fold_row, mean_row, recorded_postprocessing, write_table

    then = {"min_lesion_mm3": 12345.0, "keep_largest_liver": True}  # not today's defaults
    results = [SimpleNamespace(validation={"whole_volume": {"liver_dice": 0.9, "tumor_dice": 1.0,
                                                            "postprocessing_label": "segment's default post-processing",
                                                            "postprocessing": then}},
                               val_cases=[f"c{i}"], epochs_completed=1) for i in range(2)]
    rows = [fold_row(i, r) for i, r in enumerate(results)]
    assert [r["postprocessing"] for r in rows] == ["segment's default post-processing"] * 2
    write_table(rows + [mean_row(rows)], tmp_path, [recorded_postprocessing(r) for r in results])
    summary = json.loads((tmp_path / "crossval.json").read_text())["summary"]
    assert summary["postprocessing"] == "segment's default post-processing"
    assert summary["postprocessing_options"] == then
    between = SimpleNamespace(validation={"whole_volume": {"liver_dice": 0.9, "postprocessing": then}},
                              val_cases=["c"], epochs_completed=1)  # options recorded, no label yet
    assert fold_row(0, between)["postprocessing"] == "segment's defaults of its version (options recorded)"


def test_a_training_start_walks_a_dicom_image_folder_once(tmp_path, monkeypatch):
    """data_fingerprint walked and stat'ed every file of a DICOM image folder, and the slice cache did the same
    again for its entry's source signature. The cache now takes the signatures data_fingerprint took."""
    import collections
    import os

    from dicom_helpers import write_ct_series
    from LiverTumorSegLib.io import write_label_map, write_volume
    from LiverTumorSegLib.phantom import make_phantom
    from LiverTumorSegLib.training import slice_cache
    from LiverTumorSegLib.training.trainer import Trainer

    rows = ["image,label,patient"]
    for i in range(3):
        ph = make_phantom(shape_zyx=(6, 48, 48), spacing_xyz=(3.0, 3.0, 5.0), seed=i)
        if i == 0:
            write_ct_series(tmp_path / "series0", ph.ct, shuffle_names=False)
            image = "series0"
        else:
            write_volume(tmp_path / f"ct{i}.nii.gz", ph.ct)
            image = f"ct{i}.nii.gz"
        write_label_map(tmp_path / f"lab{i}.nii.gz", ph.labels, ph.ct.geometry)
        rows.append(f"{image},lab{i}.nii.gz,p{i}")
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n")
    series = tmp_path / "series0"
    config = TrainConfig.from_dict({
        "data": str(tmp_path / "cases.csv"), "model": "unet", "model_options": {"channels": [4, 8, 16]},
        "preprocessing": {"channels": [{"kind": "window", "level": 40, "width": 400}], "context_slices": 1,
                          "target_spacing_mm": 3.0, "size_multiple": 16, "crop_to_body": True},
        "epochs": 1, "iterations_per_epoch": 1, "batch_size": 2, "patch_size": 32, "num_workers": 0,
        "val_fraction": 0.0, "output": str(tmp_path / "model.safetensors"), "cache_dir": str(tmp_path / "cache"),
        "progress_bar": False,
        "tensorboard": False, "seed": 5})
    Trainer(config, log=lambda s: None).setup()  # caches every case and keeps the hashes
    listed = collections.Counter()
    real_scandir = os.scandir

    def counting_scandir(path="."):
        if Path(path) == series:
            listed[str(Path(path))] += 1  # 3.13 lists "folder/" with its slash
        return real_scandir(path)

    _spy_on_scandir(monkeypatch, counting_scandir)
    slice_cache._files_of(series)
    one_walk = listed[str(series)]
    assert one_walk, "the walk no longer lists folders with os.scandir: count its walks otherwise"
    listed.clear()
    trainer = Trainer(config.updated({"output": str(tmp_path / "again.safetensors")}), log=lambda s: None)
    trainer.setup()  # a second start: hashes kept, every case cached
    assert listed[str(series)] == one_walk  # data_fingerprint's walk only
    assert [c.case_id for c in trainer.train_cached] == ["ct1", "ct2", "series0"]


def test_whole_volume_rows_of_one_case_share_its_reference_masks():
    """The raw and the post-processed row of a validation case each built the reference masks again; they are
    built once per case now, and give the rows the labels gave."""
    from LiverTumorSegLib.training.trainer import reference_masks, whole_volume_row

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, (4, 16, 16)).astype(np.uint8)
    for pred in (rng.integers(0, 3, labels.shape).astype(np.uint8), np.zeros_like(labels), labels):
        assert whole_volume_row("a", pred, reference_masks(labels)) == whole_volume_row("a", pred, labels)
    no_tumor = np.minimum(labels, 1)
    assert whole_volume_row("a", labels, reference_masks(no_tumor))["reference_has_tumor"] is False


def test_crossval_prints_the_note_crossval_json_holds(monkeypatch, capsys, tmp_path):
    """The command rebuilt the note by splitting a fold's 'yes, ...: ' cell; it prints selection_summary's."""
    from types import SimpleNamespace

    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.training import crossval

    older = SimpleNamespace(validation={"best_epoch": 1, "whole_volume": {"liver_dice": 0.9, "tumor_dice": 1.0}},
                            val_cases=["a"], epochs_completed=2)
    plain = SimpleNamespace(validation={"weights": "last_epoch", "whole_volume": {"liver_dice": 0.8}},
                            val_cases=["b"], epochs_completed=2)
    rows = [crossval.fold_row(0, older), crossval.fold_row(1, plain)]
    monkeypatch.setattr(crossval, "run_crossval", lambda *a, **k: rows + [crossval.mean_row(rows)])
    assert main(["crossval", "--data", str(tmp_path / "cases.csv"), "--folds", "2", "-o", str(tmp_path / "cv")]) == 0
    printed = capsys.readouterr().out
    assert f"note: {crossval.selection_summary(rows)['note']}\n" in printed and "fold(s) 0 is" in printed


def test_an_output_folder_that_is_a_file_is_named_as_a_file(tmp_path):
    """'crossval -o data.csv' (an existing file) was told the folder 'is not writable (Not a directory) ... fix
    its permissions'."""
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.fileutil import check_folder_writable

    listing = tmp_path / "data.csv"
    listing.write_text("image,label\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"Output folder '.*data\.csv' is a file, not a folder"):
        check_folder_writable(listing)
    assert listing.read_text(encoding="utf-8") == "image,label\n"
    assert check_folder_writable(tmp_path) == tmp_path


def test_an_unparsable_yaml_config_is_a_one_line_error_with_its_line(tmp_path):
    """PyYAML's parse error spans five lines (problem, context, quoted source, caret): 'train --config bad.yaml'
    printed them all after 'error:'."""
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.training.config import load_config_file

    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: 0.001\nepochs: [\n", encoding="utf-8")
    with pytest.raises(InputError) as raised:
        load_config_file(bad)
    text = str(raised.value)
    assert "\n" not in text and "Cannot parse training config" in text and "at line 3, column 1" in text
    broken_json = tmp_path / "bad.json"
    broken_json.write_text('{"lr": 0.001,\n}', encoding="utf-8")
    # Python < 3.13 points at the brace after the comma (line 2), 3.13 at the comma itself (line 1 column 13)
    with pytest.raises(InputError, match=r"Cannot parse training config .*(line 2|line 1 column 13)") as raised:
        load_config_file(broken_json)
    assert "\n" not in str(raised.value)


def test_a_network_a_package_cannot_hold_is_refused_before_training(monkeypatch):
    """A network over the package limits (200 M parameters; 2 GiB of layer outputs per 256 x 256 slice) trained for
    hours and then its package was refused at the save, or, before that, at every load (helper-24's audit). The
    meta-device check that runs before any data is read now refuses it."""
    import LiverTumorSegLib.package as package
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.training.trainer import check_model_spec

    options = {"channels": [4, 8, 16], "strides": [2, 2]}
    check_model_spec("unet", 3, options)
    monkeypatch.setattr(package, "MAX_PARAMETERS", 100)
    with pytest.raises(InputError, match=r"The network has 0 M parameters, more than the 0 M a model package may hold, so this run's result "
                                         r"could not be saved"):
        check_model_spec("unet", 3, options)
    monkeypatch.setattr(package, "MAX_PARAMETERS", 200_000_000)
    monkeypatch.setattr(package, "MAX_ACTIVATION_BYTES", 1 << 20)
    with pytest.raises(InputError, match=r"layer outputs for one 256 x 256 slice take .* GiB"):
        check_model_spec("unet", 3, options)


def test_the_slice_cache_key_changes_exactly_with_the_settings_that_change_the_cached_arrays():
    """Every preprocessing option changed alone: the cache key (slice_cache.SPATIAL_KEYS) must change when the cached
    HU or labels on the network grid change, and only then (an option missing from the key would train on stale
    arrays; an intensity option in it would re-cache every case for nothing)."""
    from LiverTumorSegLib.preprocessing.config import PreprocessingConfig
    from LiverTumorSegLib.preprocessing.preprocessor import SlicePreprocessor
    from LiverTumorSegLib.training.slice_cache import cache_key, spatial_settings_of

    rng = np.random.default_rng(0)
    hu = np.full((3, 100, 120), -1000.0, np.float32)
    hu[:, 30:70, 35:95] = rng.normal(40.0, 20.0, (3, 40, 60))       # the body, wide air around it
    labels = np.zeros(hu.shape, np.uint8)
    labels[:, 40:60, 45:75] = 1
    spacing = (2.5, 0.8, 0.9)
    changed = {"channels": [{"kind": "window", "level": 60.0, "width": 300.0}], "context_slices": 2,
               "context_min_mm": 2.0, "context_max_mm": 5.0, "target_spacing_mm": 1.2, "target_size": [64, 80],
               "size_multiple": 16, "crop_to_body": False, "crop_margin_mm": 2.0, "body_threshold_hu": 100.0,
               "pad_hu": -900.0, "median_size": 3, "gaussian_sigma_mm": 1.0, "equalize": "histogram",
               "clahe_clip_limit": 0.02, "clahe_tiles": 4}
    base = PreprocessingConfig.preset("default").to_dict()
    assert sorted(changed) == sorted(base)                          # a new option must be judged here too

    def cached(options):
        pre = SlicePreprocessor(PreprocessingConfig.from_dict(options))
        hu_net, info = pre.spatial_forward(hu, spacing)
        return hu_net, pre.labels_forward(labels, info), cache_key(spatial_settings_of(options), None)

    hu0, lab0, key0 = cached(base)
    for name, value in changed.items():
        options = dict(base, **{name: value})
        if name == "target_size":
            options["target_spacing_mm"] = None                       # one or the other
        hu1, lab1, key1 = cached(options)
        arrays_differ = hu1.shape != hu0.shape or not (np.array_equal(hu1, hu0) and np.array_equal(lab1, lab0))
        assert arrays_differ == (key1 != key0), name


def test_train_label_map_follows_evaluates_rules_and_json_options_refuse_repeated_keys():
    """train's --label-map was read with plain json.loads ('{"1":1,"1":2}' became {"1": 2}: liver trained as tumor
    without a word) and TrainConfig took keys such as '1_0' (10), 300, or '1' beside '01' (helper-30's audit).
    It follows evaluate's --label-map rules now, and every JSON option refuses a key given twice."""
    import argparse

    from LiverTumorSegLib.commands.train import _json_value
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.training.config import TrainConfig

    with pytest.raises(argparse.ArgumentTypeError, match="gives the key '1' twice"):
        _json_value('{"1": 1, "1": 2}')
    with pytest.raises(argparse.ArgumentTypeError, match="gives the key 'channels' twice"):
        _json_value('{"channels": [4, 8], "dropout": 0.1, "channels": [8, 16]}')
    assert _json_value('{"5": 1}') == {"5": 1}
    for label_map, why in (({"1": 1, "01": 2}, "lists the value 1 more than once"),
                           ({"1_0": 1}, "is not an integer label value"), ({"300": 1}, "outside 0..255"),
                           ({5: 1, "5": 2}, "lists the value 5 more than once"), ({"1": 3}, "targets must be 0, 1 or 2")):
        with pytest.raises(InputError, match=why):
            TrainConfig.from_dict({"data": "cases.csv", "label_map": label_map})
    assert TrainConfig.from_dict({"data": "cases.csv", "label_map": {5: 1}}).label_map == {5: 1}  # YAML's 5: 1


def test_train_refuses_an_unknown_device_by_name():
    """train --device tpu ended as 'internal error: RuntimeError ...' with exit 1 (helper-34's audit)."""
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.training.trainer import resolve_device

    assert str(resolve_device("cpu")) == "cpu"
    # letter case and spaces count for nothing, as in segment's --device ('CPU' was refused here, taken there)
    assert str(resolve_device("CPU")) == str(resolve_device(" Cpu ")) == "cpu"
    for name in ("tpu", "cuda:x", "cuda:\u00b2"):
        with pytest.raises(InputError, match=f"Unknown device '{name}'; training runs on auto, cpu, cuda, cuda:N"):
            resolve_device(name)
    with pytest.raises(InputError, match="Training runs on a CUDA GPU or the CPU; --device mps"):
        resolve_device("MPS")


SHIPPED_RECIPES = Path(__file__).resolve().parents[2] / "scripts"


@pytest.mark.parametrize("recipe", sorted(p.name for p in SHIPPED_RECIPES.glob("*.yaml")))
def test_every_shipped_recipe_reads_into_a_valid_training_config(recipe):
    """The recipes in scripts/ are what a GPU session trains the next default from: a misspelt key or a range out
    of order must fail here, not minutes into a lent machine's time."""
    from LiverTumorSegLib.cli import build_parser
    from LiverTumorSegLib.commands.train import config_from_args
    from LiverTumorSegLib.training.augmentation import AugmentationConfig
    from LiverTumorSegLib.training.synthetic_lesions import LesionConfig

    path = SHIPPED_RECIPES / recipe
    cfg = config_from_args(build_parser().parse_args(["train", "--config", str(path), "--data", "d.csv"]))
    AugmentationConfig.from_dict(cfg.augmentation or {})
    LesionConfig.from_dict(cfg.lesions or {}).validate()
    assert cfg.epochs >= 1 and cfg.batch_size >= 1


def test_the_v5_recipe_is_v3s_with_a_fifth_of_the_synthetic_tumors_brighter_than_the_liver():
    """docs/hyperdense_lever.md measured this one change; the recipe must not carry another one unmeasured."""
    from LiverTumorSegLib.training.config import load_config_file

    v3 = load_config_file(SHIPPED_RECIPES / "default_model_v3.yaml")
    v5 = load_config_file(SHIPPED_RECIPES / "default_model_v5.yaml")
    assert v5["lesions"].pop("hypodense_probability") == 0.80 and v3["lesions"].pop("hypodense_probability") == 0.97
    assert v5 == v3


def test_the_v6_recipe_is_v5s_with_the_scan_end_in_the_2d5_input():
    """docs/edge_context_lever.md measured this one change on top of v5's recipe; nothing else may differ."""
    from LiverTumorSegLib.training.config import load_config_file

    v5 = load_config_file(SHIPPED_RECIPES / "default_model_v5.yaml")
    v6 = load_config_file(SHIPPED_RECIPES / "default_model_v6.yaml")
    assert v6["augmentation"].pop("edge_context_probability") == 0.2
    assert v6["augmentation"].pop("edge_context_air_fraction") == 0.5
    assert v6 == v5


def test_the_v7_recipe_is_v6s_with_grained_training_noise():
    """docs/synthetic_lesions.md measured the grain on v3's recipe; v7 adds that one key to v6 and nothing else."""
    from LiverTumorSegLib.training.config import load_config_file

    v6 = load_config_file(SHIPPED_RECIPES / "default_model_v6.yaml")
    v7 = load_config_file(SHIPPED_RECIPES / "default_model_v7.yaml")
    assert v7["augmentation"].pop("noise_grain_probability") == 0.5
    assert v7 == v6


def test_the_v8_recipe_is_v7s_with_fluid_beside_the_liver_on_its_right():
    """docs/perihepatic_fluid_lever.md suggested this arm; v8 adds the fluid negative, kept to the patient's right
    side of the liver, to v7 and nothing else."""
    from LiverTumorSegLib.training.config import load_config_file
    from LiverTumorSegLib.training.synthetic_lesions import LesionConfig

    v7 = load_config_file(SHIPPED_RECIPES / "default_model_v7.yaml")
    v8 = load_config_file(SHIPPED_RECIPES / "default_model_v8.yaml")
    LesionConfig.from_dict(v8["lesions"]).validate()
    assert v8["lesions"].pop("perihepatic_fluid_probability") == 0.15
    assert v8["lesions"].pop("perihepatic_fluid_reach_deg") == 135.0
    assert v8 == v7


def test_the_v11_recipe_is_v10s_with_the_lighter_per_lesion_loss():
    """docs/small_lesion_lever.md measured this one change (the fourth arm, confirmed on seeds 3-5 at the 0.75 lesion
    confidence) as a fine-tune of v10; the recipe its folds train from must carry nothing else unmeasured."""
    from LiverTumorSegLib.cli import build_parser
    from LiverTumorSegLib.commands.train import config_from_args
    from LiverTumorSegLib.training.config import load_config_file

    v10 = load_config_file(SHIPPED_RECIPES / "default_model_v10.yaml")
    v11 = load_config_file(SHIPPED_RECIPES / "default_model_v11.yaml")
    assert v11.pop("lesion_loss_weight") == 0.3 and v11.pop("lesion_loss_min_pixels") == 8
    assert v11 == v10
    cfg = config_from_args(build_parser().parse_args(
        ["train", "--config", str(SHIPPED_RECIPES / "default_model_v11.yaml"), "--data", "d.csv"]))
    assert (cfg.lesion_loss_weight, cfg.lesion_loss_min_pixels, cfg.lesion_loss_average) == (0.3, 8, "lesion")


@pytest.mark.parametrize("option", ["name", "description"])
def test_a_name_or_description_longer_than_a_package_holds_is_refused_before_training(option):
    """A 70,000-character --description trained the whole run and was then refused by the package writer, in words
    naming save_model_package rather than the option."""
    from LiverTumorSegLib.package import MAX_TEXT_CHARS

    TrainConfig(data="x.csv", **{option: "x" * MAX_TEXT_CHARS}).validate()
    with pytest.raises(InputError, match=rf"Option {option} is {MAX_TEXT_CHARS + 1} characters long; a model package "
                                         rf"holds at most {MAX_TEXT_CHARS}\. Shorten it \(--{option}\)\."):
        TrainConfig(data="x.csv", **{option: "x" * (MAX_TEXT_CHARS + 1)}).validate()


def test_an_unknown_config_key_beside_typed_options_lists_every_option_as_a_key(tmp_path, capsys):
    """With --batch-size typed, the list of valid options after an unknown config key read '..., --batch-size, ...,
    lr, ...': the typed ones spelt as options among config keys."""
    from LiverTumorSegLib.cli import main

    config = tmp_path / "c.yaml"
    config.write_text("batchsize: 4\n")
    assert main(["train", "--data", "x.csv", "--config", str(config), "--batch-size", "2", "-o", "m.safetensors"]) == 2
    err = capsys.readouterr().err
    assert "Unknown training option(s) batchsize in " in err and "(batchsize: did you mean batch_size?)" in err
    listed = err.split("Valid options (as config keys): ")[1]
    assert "batch_size" in listed and "--" not in listed


def test_options_the_chosen_optimizer_or_schedule_does_not_read_are_warned_of(caplog):
    """--momentum with adamw and --step-size under cosine were ignored without a word."""
    import argparse

    from LiverTumorSegLib.commands.train import add_config_options, config_from_args

    parser = argparse.ArgumentParser()
    add_config_options(parser)
    base = ["--data", "x.csv", "-o", "m.safetensors"]
    with caplog.at_level("WARNING"):
        config_from_args(parser.parse_args(base + ["--optimizer", "adamw", "--momentum", "0.5", "--schedule", "cosine",
                                                   "--step-size", "10"]))
    said = [r.getMessage() for r in caplog.records]
    assert "warning: --momentum is read only by optimizer sgd; with optimizer adamw it is ignored." in said
    assert "warning: --step-size is read only by schedule step; with schedule cosine it is ignored." in said
    caplog.clear()
    with caplog.at_level("WARNING"):
        config_from_args(parser.parse_args(base + ["--optimizer", "sgd", "--momentum", "0.5", "--schedule", "step",
                                                   "--step-size", "10"]))
    assert not [r for r in caplog.records if "is read only by" in r.getMessage()]


@pytest.mark.parametrize("extra, warned", [
    (["--liver-slice-fraction", "0", "--tumor-slice-fraction", "0.9"],
     "warning: --tumor-slice-fraction is the share of the draws from liver slices, and liver_slice_fraction 0 makes "
     "none; it is ignored."),
    (["--synthetic-lesions", "false", "--lesions", '{"probability": 0.5}'],
     "warning: --lesions sets the synthetic lesions, which synthetic_lesions false turns off; it is ignored."),
    (["--val-fraction", "0", "--val-every", "2", "--split-seed", "3"],
     "warning: --val-every, --split-seed are ignored: val_fraction 0 (and no folds) holds out no validation cases."),
    (["--val-fraction", "0", "--val-max-slices", "4"],
     "warning: --val-max-slices is ignored: val_fraction 0 (and no folds) holds out no validation cases."),
    (["--schedule", "step", "--epochs", "10"],
     "warning: schedule step cuts the learning rate after every 30 epochs (step_size), and this run has 10: it trains "
     "at lr 0.0003 throughout, and gamma is never applied. Give a step_size below epochs.")])
def test_options_that_other_options_leave_unread_are_warned_of(caplog, extra, warned):
    """--tumor-slice-fraction with --liver-slice-fraction 0, --lesions with --synthetic-lesions false,
    --val-every / --val-max-slices / --split-seed with --val-fraction 0, and --schedule step over no more epochs than
    --step-size (a constant rate) trained without a word, the package recording the values as if they had
    applied."""
    import argparse

    from LiverTumorSegLib.commands.train import add_config_options, config_from_args

    parser = argparse.ArgumentParser()
    add_config_options(parser)
    base = ["--data", "x.csv", "-o", "m.safetensors"]
    with caplog.at_level("WARNING"):
        config_from_args(parser.parse_args(base + extra))
    assert warned in [r.getMessage() for r in caplog.records]
    caplog.clear()
    with caplog.at_level("WARNING"):  # the same options where they are read: no word
        config_from_args(parser.parse_args(base + ["--tumor-slice-fraction", "0.9", "--lesions", '{"probability": 0.5}',
                                                   "--val-every", "2", "--val-max-slices", "4", "--split-seed", "3",
                                                   "--schedule", "step", "--step-size", "9", "--epochs", "10"]))
    assert not [r for r in caplog.records if "ignored" in r.getMessage()]


def test_crossval_gives_each_fold_its_own_name(tmp_path):
    """crossval --name mymodel named every fold's package 'mymodel': once installed, `segment --model mymodel` was
    refused as ambiguous, though --name's help says segment takes that name."""
    from LiverTumorSegLib.training.config import TrainConfig
    from LiverTumorSegLib.training.crossval import fold_config

    named = TrainConfig.from_dict({"data": "x.csv", "folds": 3, "name": "mymodel"})
    assert [fold_config(named, tmp_path, fold).name for fold in range(3)] == \
        ["mymodel_fold_0", "mymodel_fold_1", "mymodel_fold_2"]
    unnamed = TrainConfig.from_dict({"data": "x.csv", "folds": 3})
    assert fold_config(unnamed, tmp_path, 1).name == ""  # the package is then named after its file, fold_1


def test_a_folds_config_marks_as_given_only_what_the_user_set(tmp_path):
    """TrainConfig.given is "the options the user set", but fold_config marked fold, output, log_dir and cache_dir
    (crossval's own values) as given too."""
    from LiverTumorSegLib.training.crossval import fold_config

    config = TrainConfig.from_dict({"data": "x.csv", "folds": 3, "name": "m", "oblique_grid": "stored"})
    folded = fold_config(config, tmp_path, 2)
    assert folded.given == config.given == {"data", "folds", "name", "oblique_grid"}
    assert (folded.fold, folded.name, Path(folded.output).name) == (2, "m_fold_2", "fold_2.safetensors")
    assert fold_config(TrainConfig.from_dict({"data": "x.csv"}), tmp_path, 0).given == {"data"}


def test_crossval_is_not_told_that_a_config_files_val_fraction_0_leaves_no_validation(caplog, tmp_path):
    """crossval validates every fold, whatever val_fraction its config file holds: --val-every is read."""
    from LiverTumorSegLib.cli import build_parser
    from LiverTumorSegLib.commands.train import config_from_args

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("val_fraction: 0\n")
    args = build_parser().parse_args(["crossval", "--data", "x.csv", "--config", str(recipe), "--val-every", "2",
                                      "-o", str(tmp_path / "cv")])
    with caplog.at_level("WARNING"):
        config_from_args(args)
    assert not [r for r in caplog.records if "holds out no validation cases" in r.getMessage()]


def test_a_relative_path_found_only_from_the_other_folder_says_which_folder_it_is_read_from(tmp_path, monkeypatch):
    """A config file's relative data is read from the working folder, a CSV's rows from the CSV's folder; a path
    written the other way was only 'does not exist', naming neither rule."""
    import argparse

    from LiverTumorSegLib.commands.train import add_config_options, config_from_args
    from LiverTumorSegLib.training.datasets import discover_cases

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "ok.csv").write_text("image,label\n")
    (tmp_path / "sub" / "cfg.yaml").write_text("data: ok.csv\n")
    monkeypatch.chdir(tmp_path)
    parser = argparse.ArgumentParser()
    add_config_options(parser)
    with pytest.raises(InputError, match=r"Training data 'ok.csv' \(data in 'sub/cfg.yaml'\) does not exist in the "
                                         r"working folder; .* not from the file's folder, where 'sub/ok.csv' exists"):
        config_from_args(parser.parse_args(["--config", "sub/cfg.yaml", "-o", "m.safetensors"]))
    (tmp_path / "sub" / "rows.csv").write_text("image,label\nsub/ok.csv,sub/ok.csv\n")  # written from tmp_path
    with pytest.raises(InputError, match=r"read from the CSV's folder \('sub'\), not from the working folder, where "
                                         r"'sub/ok.csv' exists"):
        discover_cases(Path("sub/rows.csv"))


def test_curves_draw_validation_measured_every_other_epoch(tmp_path, monkeypatch):
    """With --val-every 2 the epochs without validation are empty in log.csv; plotted as NaN they broke each
    validation line into single points that drew nothing (an empty Dice panel; the training audit)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    from LiverTumorSegLib.training.logs import plot_curves

    log = tmp_path / "log.csv"
    log.write_text("epoch,train_loss,val_loss,val_liver_dice,val_tumor_dice\n"
                   "1,0.9,,,\n2,0.8,0.7,0.5,0.1\n3,0.7,,,\n4,0.6,0.5,0.6,0.2\n")
    drawn = {}
    real_plot = Axes.plot

    def recording(self, x, y, *args, **kwargs):
        drawn[kwargs.get("label")] = (list(x), list(y), kwargs.get("marker"))
        return real_plot(self, x, y, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", recording)
    assert plot_curves(log, tmp_path / "curves.png").is_file()
    assert drawn["liver Dice"][:2] == ([2.0, 4.0], [0.5, 0.6]) and drawn["val loss"][:2] == ([2.0, 4.0], [0.7, 0.5])
    assert drawn["train loss"][0] == [1.0, 2.0, 3.0, 4.0] and drawn["tumor Dice"][2] == "o"


def test_training_curves_keep_the_callers_pyplot_backend(tmp_path):
    """plot_curves (the end of every training) called ``matplotlib.use("Agg")``: a notebook that trained through
    the library had its pyplot switched to Agg, and its own ``plt.show()`` then showed nothing."""
    import matplotlib
    import matplotlib.pyplot as plt

    from LiverTumorSegLib.training.logs import plot_curves

    log = tmp_path / "log.csv"
    log.write_text("epoch,train_loss,val_loss,val_liver_dice,val_tumor_dice\n1,0.9,0.8,0.5,0.1\n2,0.8,0.7,0.6,0.2\n")
    before = matplotlib.get_backend()
    plt.switch_backend("svg")  # the caller's own backend (not Agg)
    figures = plt.get_fignums()  # another test's left open (a benchmark script's pyplot) is not this one's
    try:
        assert plot_curves(log, tmp_path / "curves.png").is_file()
        assert matplotlib.get_backend() == "svg" and plt.get_fignums() == figures
    finally:
        plt.switch_backend(before)


@pytest.mark.parametrize("name, text", [("c.yaml", "epochs: 2\nbatch_size: 4\nepochs: 1\n"),
                                        ("c.json", '{"epochs": 2, "batch_size": 4, "epochs": 1}')])
def test_a_key_given_twice_in_a_config_file_is_refused(tmp_path, name, text):
    """The last value of a repeated key was taken without a word (YAML and JSON alike), where the command line
    refuses an option given twice (the training audit)."""
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.training.config import load_config_file

    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=r"gives the key\(s\) 'epochs' more than once; give each key once"):
        load_config_file(tmp_path / name)
    (tmp_path / name).write_text(text.replace("epochs: 1\n", "").replace(', "epochs": 1', ""))
    assert load_config_file(tmp_path / name) == {"epochs": 2, "batch_size": 4}


def test_a_key_given_twice_in_a_preprocessing_file_is_refused(tmp_path):
    from LiverTumorSegLib.preprocessing.config import PreprocessingConfig, PreprocessingConfigError

    (tmp_path / "p.json").write_text('{"context_slices": 1, "context_slices": 2}')
    with pytest.raises(PreprocessingConfigError, match="gives the key\\(s\\) 'context_slices' more than once"):
        PreprocessingConfig.from_file(tmp_path / "p.json")


def test_two_data_sets_with_the_same_case_ids_keep_their_own_entries_in_a_shared_cache(tmp_path):
    """A second run with the same --cache-dir and another data set whose case ids are the same (two copies of a data
    set with other labels) replaced the first run's entry under its name: the first run's workers, which open the
    memory maps by path, then read the other data set's slices (6 where its record said 8)."""
    from LiverTumorSegLib.io import write_label_map, write_volume
    from LiverTumorSegLib.phantom import make_phantom
    from LiverTumorSegLib.preprocessing import PreprocessingConfig, SlicePreprocessor
    from LiverTumorSegLib.training.datasets import Case
    from LiverTumorSegLib.training.slice_cache import build_slice_cache

    preprocessor = SlicePreprocessor(PreprocessingConfig(channels=[{"kind": "window", "level": 40.0, "width": 400.0}],
                                                         context_slices=0, crop_to_body=False, size_multiple=8))
    records = []
    for name, slices in (("first", 8), ("second", 6)):
        folder = tmp_path / name
        folder.mkdir()
        phantom = make_phantom((slices, 24, 24), (2.0, 2.0, 4.0), seed=slices)
        image = write_volume(folder / "ct.nii.gz", phantom.ct)
        label = write_label_map(folder / "lab.nii.gz", phantom.labels, phantom.ct.geometry)
        (record,) = build_slice_cache([Case("case1", "p1", str(image), str(label), "csv")], preprocessor,
                                      tmp_path / "shared")
        records.append(record)
    first = CachedCase(**{k: v for k, v in records[0].__getstate__().items()})  # as a DataLoader worker gets it
    assert first.hu.shape[0] == first.num_slices == 8
    assert records[1].hu.shape[0] == records[1].num_slices == 6


def test_a_metaimage_whose_raw_data_file_changed_is_cached_again_and_seen_by_a_resume(tmp_path):
    """Of a .mhd only the header's signature and hash were taken: its .raw replaced by another scan's (the header
    unchanged) kept serving the old cached slices, and --resume did not see that the image had changed."""
    from LiverTumorSegLib.io import read_volume, write_label_map
    from LiverTumorSegLib.phantom import make_phantom
    from LiverTumorSegLib.training.datasets import Case
    from LiverTumorSegLib.training.slice_cache import build_slice_cache, data_fingerprint

    _, preprocessor = _cache_fixture(tmp_path)
    phantom = make_phantom((4, 32, 32), (2.0, 2.0, 4.0), noise_hu=20.0, seed=0)
    (tmp_path / "ct.mhd").write_text("ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
                                     "ElementSpacing = 2 2 4\nOffset = 0 0 0\nDimSize = 32 32 4\n"
                                     "ElementType = MET_SHORT\nElementDataFile = ct.raw\n")
    (tmp_path / "ct.raw").write_bytes(phantom.ct.array.astype("<i2").tobytes())
    ct = read_volume(tmp_path / "ct.mhd")
    label = write_label_map(tmp_path / "lab.nii.gz", phantom.labels, ct.geometry)
    case = Case("c1", "p1", str(tmp_path / "ct.mhd"), str(label), "csv")
    (entry,) = build_slice_cache([case], preprocessor, tmp_path / "cache")
    before, fingerprint = np.array(entry.hu), data_fingerprint([case])
    (tmp_path / "new.raw").write_bytes((phantom.ct.array + 100).astype("<i2").tobytes())
    (tmp_path / "new.raw").replace(tmp_path / "ct.raw")     # another scan's voxels under the same header
    (entry,) = build_slice_cache([case], preprocessor, tmp_path / "cache")
    changed = read_volume(tmp_path / "ct.mhd")
    fresh = preprocessor.spatial_forward(changed.array, changed.spacing_zyx)[0]
    assert not np.allclose(fresh, before)
    np.testing.assert_allclose(np.array(entry.hu), fresh, atol=1e-4)
    assert data_fingerprint([case])["c1"]["image_sha256"] != fingerprint["c1"]["image_sha256"]


def test_a_csv_cell_naming_one_dicom_file_is_signed_and_hashed_as_its_whole_series(tmp_path):
    """A CSV image cell naming one file of a DICOM series reads the whole series, but only that file was signed and
    hashed: another slice changed (300 HU added) kept serving the old cached slices, and --resume did not see it
    (the training data audit)."""
    import pydicom
    from dicom_helpers import save_dicom, write_ct_series

    from LiverTumorSegLib.io import read_volume, write_label_map
    from LiverTumorSegLib.phantom import make_phantom
    from LiverTumorSegLib.training.datasets import Case
    from LiverTumorSegLib.training.slice_cache import build_slice_cache, data_fingerprint
    from LiverTumorSegLib.volume import CTVolume

    _, preprocessor = _cache_fixture(tmp_path)
    phantom = make_phantom((4, 32, 32), (2.0, 2.0, 4.0), noise_hu=20.0, seed=0)
    files = write_ct_series(tmp_path / "series", CTVolume(phantom.ct.array.astype(np.int16), phantom.ct.geometry))
    ct = read_volume(files[0])
    label = write_label_map(tmp_path / "lab.nii.gz", phantom.labels, ct.geometry)
    case = Case("c1", "p1", str(files[0]), str(label), "csv")
    (entry,) = build_slice_cache([case], preprocessor, tmp_path / "cache")
    before, fingerprint = np.array(entry.hu), data_fingerprint([case])
    ds = pydicom.dcmread(str(files[2]))                  # another slice than the one the cell names
    ds.PixelData = (ds.pixel_array.astype(np.int16) + 300).tobytes()
    save_dicom(ds, files[2])
    (entry,) = build_slice_cache([case], preprocessor, tmp_path / "cache")
    after = np.array(entry.hu)
    assert [bool(np.allclose(after[k], before[k])) for k in range(4)] == [True, True, False, True]  # cached again
    assert data_fingerprint([case])["c1"]["image_sha256"] != fingerprint["c1"]["image_sha256"]


def test_a_log_of_an_older_version_gets_the_new_columns_before_rows_are_appended(tmp_path):
    """A run resumed under a version with more log.csv columns (epoch_steps) appended rows with one column more
    than the file's header. The file is rewritten under the new header first; the old rows keep their values."""
    from LiverTumorSegLib.training.logs import LOG_COLUMNS, CsvLog, read_log

    path = tmp_path / "log.csv"
    path.write_text("epoch,global_step,train_loss,val_loss,val_liver_dice,val_tumor_dice,lr,epoch_time_s\n"
                    "1,3,0.9,,,,0.001,1.5\n")
    assert CsvLog(path).append({"epoch": 2, "global_step": 6, "train_loss": 0.8, "epoch_steps": 3})
    assert path.read_text().splitlines()[0] == ",".join(LOG_COLUMNS)
    rows = read_log(path)
    assert [(r["epoch"], r["train_loss"], r["epoch_steps"]) for r in rows] == [("1", "0.9", ""), ("2", "0.8", "3")]


def test_a_batch_that_finds_no_shared_memory_is_said_with_what_to_do_and_other_errors_pass():
    """torch reports a worker whose batch did not fit in shared memory as "Caught RuntimeError in DataLoader worker
    process 0 ... unable to allocate shared memory(shm) for file </torch_...>", which 'train' showed as an internal
    error with a traceback. batches_of says it as an InputError; an error without workers, another error, and a
    full disk that names its file pass unchanged."""
    import errno

    from LiverTumorSegLib.training.shared_memory import batches_of

    worker_report = RuntimeError("Caught RuntimeError in DataLoader worker process 0.\nOriginal Traceback (most "
                                 "recent call last):\nRuntimeError: unable to allocate shared memory(shm) for file "
                                 "</torch_7553_2396439488_0>: No space left on device (28)\n")

    class Loader:
        def __init__(self, error):
            self.error = error

        def __iter__(self):
            yield "batch 1"
            raise self.error

    batches = batches_of(Loader(worker_report), workers=2)
    assert next(batches) == "batch 1"
    with pytest.raises(InputError, match=r"^The 2 data-loading worker process\(es\) of the training ran out of "
                                         r"shared memory.*\(RuntimeError: unable to allocate shared memory\(shm\) for "
                                         r"file </torch_7553_2396439488_0>: No space left on device \(28\)\)\. Pass "
                                         r"num_workers=0"):
        next(batches)
    named_file = OSError(errno.ENOSPC, "No space left on device", "/out/last.pt")
    for error, workers in ((worker_report, 0), (RuntimeError("CUDA out of memory"), 2), (named_file, 2)):
        with pytest.raises(type(error)) as raised:
            list(batches_of(Loader(error), workers))
        assert raised.value is error


@pytest.mark.parametrize("where", ["beside", "in_cache"])
def test_a_failed_run_removes_no_file_of_a_folder_it_did_not_make(tmp_path, monkeypatch, where):
    """Guard for the cleanup of a failed run (remove_if_no_checkpoint): it is only called for a folder the run
    made, or one holding nothing but a finished slice cache. A folder of the user's given with --log-dir and
    --overwrite, also one whose cache/ holds a file of the user's (which makes holds_finished_entries False, the
    case where the whole folder is removed), keeps every file when the run fails before its first checkpoint."""
    from LiverTumorSegLib.training import slice_cache, trainer
    from LiverTumorSegLib.training.config import TrainConfig

    folder = tmp_path / "mine"
    key = folder / "cache" / "abc123def456"
    key.mkdir(parents=True)
    for suffix in slice_cache.ENTRY_SUFFIXES:
        (key / f"c0{suffix}").write_bytes(b"x")
    notes = (folder if where == "beside" else folder / "cache") / "notes.txt"
    notes.write_text("mine")

    def failing_setup(self):
        raise RuntimeError("failed before the first checkpoint")

    monkeypatch.setattr(trainer.Trainer, "setup", failing_setup)
    config = TrainConfig(data=str(tmp_path / "data"), log_dir=str(folder), output=str(tmp_path / "m.safetensors"),
                         overwrite=True)
    with pytest.raises(RuntimeError, match="before the first checkpoint"):
        trainer.train(config, log=lambda text: None)
    assert notes.read_text() == "mine" and (key / "c0.json").is_file()


def test_a_yaml_alias_bomb_is_refused_and_an_error_never_writes_a_huge_value_out(tmp_path):
    """1.5 KB of nested YAML aliases make a list of 10^9 values: the check's error message quoted it with repr() and
    ran out of memory after a minute (the file-safety audit). Such a file is refused as it is read; an ordinary
    alias still reads; a huge shared value in a message is cut short without being written out."""
    import time

    from LiverTumorSegLib.configutil import short_repr
    from LiverTumorSegLib.training.config import TrainConfig

    lines = ["a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]"
              for i in range(1, 10)]
    lines += ["channels: *a9"]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    start = time.monotonic()
    with pytest.raises(InputError, match=r"Cannot parse training config .*aliases \(\*name\) expand to more than "
                                         r"1,000,000 values"):
        TrainConfig.from_file(bomb)
    assert time.monotonic() - start < 30
    fine = tmp_path / "fine.yaml"
    fine.write_text("lr_values: &lr 0.001\nlr: *lr\nepochs: 2\n")
    with pytest.raises(InputError, match="lr_values"):  # read; only the unknown key is refused
        TrainConfig.from_file(fine)
    shared = [1, 2]
    for _ in range(30):
        shared = [shared] * 8
    start = time.monotonic()
    assert len(short_repr(shared)) <= 203 and time.monotonic() - start < 5


def test_the_training_spacing_is_the_training_cts_and_the_validation_cts_is_recorded_apart():
    """The package's spacing_zyx_min/max_mm took the validation CTs in: a 3 mm validation CT gave a maximum no
    training CT had (the training audit)."""
    from types import SimpleNamespace

    from LiverTumorSegLib.training.trainer import spacing_summary

    train = [SimpleNamespace(native_spacing_zyx=(2.0, 0.98, 0.98)), SimpleNamespace(native_spacing_zyx=(1.0, 0.8, 0.8))]
    val = [SimpleNamespace(native_spacing_zyx=(3.0, 3.0, 3.0))]
    assert spacing_summary(train) == {"spacing_zyx_min_mm": [1.0, 0.8, 0.8], "spacing_zyx_max_mm": [2.0, 0.98, 0.98]}
    assert spacing_summary(val, "validation_") == {"validation_spacing_zyx_min_mm": [3.0, 3.0, 3.0],
                                                   "validation_spacing_zyx_max_mm": [3.0, 3.0, 3.0]}
    assert spacing_summary([], "validation_") == {}


@pytest.mark.parametrize("given, words", [
    ("p1.safetensors", "is a model package, not a preprocessing preset or config JSON file: to train from its "
                       "weights with its preprocessing, give --init-from p1.safetensors"),
    ("./p1.safetensors", "is a model package"),
    ("../scripts/default_model_v10.yaml", "is a YAML file, such as a training recipe, not a preprocessing preset or "
                                          "config JSON file: give a recipe as --config"),
])
def test_a_package_or_recipe_given_as_preprocessing_is_named(given, words):
    """'Unknown preprocessing preset', 'not UTF-8 text' and 'not valid JSON' were the answers (the training audit)."""
    from LiverTumorSegLib.training.trainer import build_preprocessing

    with pytest.raises(InputError) as caught:
        build_preprocessing(given)
    assert words in str(caught.value)


def test_a_preprocessing_json_file_is_read_whatever_the_case_of_its_suffix(tmp_path, monkeypatch):
    """'--preprocessing PRE.JSON' was taken as a preset's name ('Unknown preprocessing preset'), while preprocess
    --config read the same file (the portability audit)."""
    from LiverTumorSegLib.training.trainer import build_preprocessing

    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    for name in ("PRE.JSON", "configs/pre.Json"):
        (tmp_path / name).write_text('{"target_spacing_mm": 1.25}')
        assert build_preprocessing(name).target_spacing_mm == 1.25, name
    (tmp_path / "configs" / "pre_cfg").write_text('{"target_spacing_mm": 1.75}')  # a folder part, no suffix
    assert build_preprocessing("configs/pre_cfg").target_spacing_mm == 1.75
    # on Windows (separators '\\' and '/') and where '/' is no separator at all, 'configs/pre_cfg' is a file too
    from LiverTumorSegLib.training.trainer import names_a_preprocessing_file
    assert names_a_preprocessing_file("configs/pre_cfg", ("\\", "/"))
    assert names_a_preprocessing_file("configs/pre_cfg", ("\\", None))
    assert names_a_preprocessing_file("configs\\pre_cfg", ("\\", "/"))
    assert not names_a_preprocessing_file("default", ("\\", "/"))
