"""The per-lesion Dice term of the training loss (``lesion_loss_weight``, the blob loss of Kofler et al. 2023):
known answers by hand on small targets, its place in SegmentationLoss, the option's checks and a training run with
it that records it in the package."""
import math

import numpy as np
import pytest
import torch

from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.training.config import TrainConfig
from LiverTumorSegLib.training.losses import SegmentationLoss, lesion_dice_loss, soft_dice_loss, tumor_components
from LiverTumorSegLib.training.labels import IGNORE_LABEL
from seeding import test_seed

MARGIN = 60.0  # logit margin: softmax probabilities are 0 or 1 to float32 precision


def two_lesion_target():
    """One 8 x 8 slice: liver everywhere, lesion A (2 x 2 = 4 pixels) at the top left, lesion B (4 x 4 = 16 pixels)
    at the bottom right, apart."""
    target = torch.ones((1, 8, 8), dtype=torch.long)
    target[0, 0:2, 0:2] = 2
    target[0, 4:8, 4:8] = 2
    return target


def logits_calling_tumor(where):
    """``(N, 3, H, W)`` logits: tumor where ``where`` (bool ``(N, H, W)``), liver elsewhere, at :data:`MARGIN`."""
    n, h, w = where.shape
    logits = torch.zeros((n, 3, h, w))
    logits[:, 1] = torch.where(where, torch.tensor(0.0), torch.tensor(MARGIN))
    logits[:, 2] = torch.where(where, torch.tensor(MARGIN), torch.tensor(0.0))
    return logits


def tiny_lesion_config(data_csv, output, cache_dir, **overrides):
    """A one-epoch, 4-16 channel U-Net training on phantoms with synthetic tumors in every sample, ``overrides``
    (the lesion-loss settings, iterations) on top."""
    values = dict(
        data=str(data_csv), model="unet", model_options={"channels": [4, 8, 16]},
        preprocessing={"channels": [{"kind": "window", "level": 40, "width": 400}], "context_slices": 1,
                       "target_spacing_mm": 3.0, "size_multiple": 16, "crop_to_body": True},
        epochs=1, batch_size=4, patch_size=32, num_workers=0, lr=3e-3, val_fraction=0, output=str(output),
        cache_dir=str(cache_dir), progress_bar=False, tensorboard=False, seed=test_seed(11),
        synthetic_lesions="true", tumor_slice_fraction=1.0)
    values.update(overrides)
    return TrainConfig.from_dict(values)


def test_components_are_numbered_per_slice_over_the_batch_8_connected():
    target = torch.zeros((2, 6, 6), dtype=torch.long)
    target[0, 0, 0] = target[0, 1, 1] = 2      # diagonal neighbours: one lesion (8-connected)
    target[0, 4, 4] = 2                        # a second lesion on slice 0
    target[1, 0, 0] = 2                        # slice 1's own lesion, at the same place as slice 0's first
    target[1, 3, 3] = 1                        # liver is no lesion
    comps = tumor_components(target)
    assert comps.dtype == np.int32 and comps.max() == 3
    assert comps[0, 0, 0] == comps[0, 1, 1] == 1 and comps[0, 4, 4] == 2 and comps[1, 0, 0] == 3
    assert np.count_nonzero(comps) == 4


def test_a_missed_small_lesion_costs_as_much_as_a_missed_large_one():
    """By hand: B (16 px) found exactly, A (4 px) missed: Dice_B = 1, Dice_A = (0 + s) / (4 + s) ~ 0, so the
    per-lesion loss is 1 - (1 + 0) / 2 = 0.5, where the whole-slice tumor Dice sees 2 * 16 / (16 + 20) = 0.889
    (loss 0.111); the reverse (A found, B missed) costs the same 0.5 per lesion and 1 - 8 / 24 = 0.667
    whole."""
    target = two_lesion_target()
    b_only = logits_calling_tumor(target == 2)
    b_only[0, :, 0:2, 0:2] = logits_calling_tumor(torch.zeros((1, 2, 2), dtype=torch.bool))[0]
    assert lesion_dice_loss(b_only, target).item() == pytest.approx(0.5, abs=1e-5)
    # soft_dice_loss averages liver and tumor: liver predicted on 44 of its 48 target pixels plus A's 4
    assert soft_dice_loss(b_only, target).item() == pytest.approx(1 - (2 * 44 / 92 + 2 * 16 / 36) / 2, abs=1e-5)
    a_only = logits_calling_tumor(torch.zeros((1, 8, 8), dtype=torch.bool))
    a_only[0, :, 0:2, 0:2] = logits_calling_tumor(torch.ones((1, 2, 2), dtype=torch.bool))[0]
    assert lesion_dice_loss(a_only, target).item() == pytest.approx(0.5, abs=1e-5)


def test_each_lesion_is_scored_without_the_other_lesions_of_its_slice():
    """Both lesions found exactly: 0. Without leaving B out of A's score, B's 16 predicted pixels would be false
    positives of A: Dice_A = 2 * 4 / (20 + 4) = 1/3 and the loss 1/3."""
    target = two_lesion_target()
    assert lesion_dice_loss(logits_calling_tumor(target == 2), target).item() == pytest.approx(0.0, abs=1e-5)


def test_tumor_called_beside_a_lesion_is_its_false_positive():
    """B found and 16 more pixels called tumor next to it (rows 0-3 of columns 4-7): Dice_B = 2 * 16 / (32 + 16)
    = 2/3; A missed: 0. Loss 1 - (2/3 + 0) / 2 = 2/3."""
    target = two_lesion_target()
    called = target == 2
    called[0, 0:2, 0:2] = False
    called[0, 0:4, 4:8] = True
    assert lesion_dice_loss(logits_calling_tumor(called), target).item() == pytest.approx(2 / 3, abs=1e-5)


def test_a_lesion_is_scored_on_its_own_slice_only():
    """Slice 0 holds a lesion, found; slice 1 none, with tumor called all over it: slice 1 is no lesion's slice, so
    the per-lesion loss stays 0 (the whole-batch Dice term is the one that sees slice 1's false tumor)."""
    target = torch.ones((2, 8, 8), dtype=torch.long)
    target[0, 2:5, 2:5] = 2
    called = target == 2
    called[1] = True
    assert lesion_dice_loss(logits_calling_tumor(called), target).item() == pytest.approx(0.0, abs=1e-5)
    called[0, 2:5, 2:5] = False  # now slice 0's lesion is missed
    assert lesion_dice_loss(logits_calling_tumor(called), target).item() == pytest.approx(1.0, abs=1e-5)


def test_ignored_pixels_count_in_no_lesion():
    """False tumor on ignored pixels (outside an oblique CT's footprint) is left out: B's score stays 1."""
    target = two_lesion_target()
    called = target == 2
    called[0, 0:4, 4:8] = True
    target_ignored = target.clone()
    target_ignored[0, 0:4, 4:8] = IGNORE_LABEL
    valid = target_ignored != IGNORE_LABEL
    assert lesion_dice_loss(logits_calling_tumor(called), target_ignored, valid=valid).item() == \
        pytest.approx(0.0, abs=1e-5)
    assert SegmentationLoss("dice", lesion_weight=1.0)(logits_calling_tumor(called), target_ignored).item() == \
        pytest.approx(SegmentationLoss("dice")(logits_calling_tumor(called), target_ignored).item(), abs=1e-5)


def test_a_batch_without_tumor_gives_zero_with_a_zero_gradient():
    torch.manual_seed(0)
    logits = torch.randn((2, 3, 8, 8), requires_grad=True)
    target = torch.ones((2, 8, 8), dtype=torch.long)
    loss = lesion_dice_loss(logits, target)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.count_nonzero(logits.grad) == 0


def test_the_gradient_raises_a_missed_lesions_tumor_logit():
    """A missed lesion: descending the per-lesion loss raises the tumor logit on its pixels."""
    target = two_lesion_target()
    logits = torch.zeros((1, 3, 8, 8), requires_grad=True)
    lesion_dice_loss(logits, target).backward()
    assert (logits.grad[0, 2][target[0] == 2] < 0).all()


def test_segmentation_loss_adds_the_weighted_lesion_term_and_weight_zero_is_the_loss_alone():
    torch.manual_seed(1)
    logits = torch.randn((2, 3, 8, 8))
    target = torch.ones((2, 8, 8), dtype=torch.long)
    target[0, 1:3, 1:3] = 2
    target[1, 5:8, 0:4] = 2
    for name in ("ce", "dice", "dice_ce", "focal", "dice_focal"):
        alone = SegmentationLoss(name)(logits, target).item()
        assert SegmentationLoss(name, lesion_weight=0.0)(logits, target).item() == alone
        with_term = SegmentationLoss(name, lesion_weight=2.5)(logits, target).item()
        assert with_term == pytest.approx(alone + 2.5 * lesion_dice_loss(logits, target).item(), rel=1e-6)


@pytest.mark.parametrize("value", [-0.5, 101.0, float("nan"), float("inf")])
def test_the_option_refuses_a_weight_outside_0_to_100(value):
    with pytest.raises(InputError, match="lesion_loss_weight"):
        TrainConfig.from_dict({"data": "x.csv", "lesion_loss_weight": value})


def test_the_option_reads_from_the_command_line_and_defaults_to_off():
    import argparse

    from LiverTumorSegLib.commands.train import add_config_options

    assert TrainConfig().lesion_loss_weight == 0.0
    parser = argparse.ArgumentParser()
    add_config_options(parser)
    assert parser.parse_args(["--lesion-loss-weight", "0.5"]).lesion_loss_weight == 0.5
    assert parser.parse_args([]).lesion_loss_weight is None  # not given: the config file's value (or 0) holds


def test_a_training_run_with_the_lesion_term_records_it_and_its_loss_is_larger(tmp_path):
    """Two tiny runs on phantoms with tumors, the same seed: the one with the lesion term packages
    ``lesion_loss_weight`` in its recipe and logs a larger first-epoch loss (the term adds a value in 0..1 to
    every batch holding tumor)."""
    from LiverTumorSegLib.package import read_package_metadata
    from LiverTumorSegLib.training.trainer import train
    from training_helpers import write_phantom_cases

    torch.set_num_threads(1)
    (tmp_path / "phantoms").mkdir()
    data_csv = write_phantom_cases(tmp_path / "phantoms", 2, (8, 48, 48))
    first_losses, metas = [], []
    for weight in (0.0, 1.0):
        out = tmp_path / f"run{weight}"
        out.mkdir()
        cfg = tiny_lesion_config(data_csv, out / "model.safetensors", tmp_path / "cache", iterations_per_epoch=3,
                                 lesion_loss_weight=weight)
        result = train(cfg, command="test", log=lambda s: None)
        first_losses.append(result.history[0]["train_loss"])
        metas.append(read_package_metadata(result.package_path))
    assert [json_config(m)["lesion_loss_weight"] for m in metas] == [0.0, 1.0]
    assert math.isfinite(first_losses[1]) and first_losses[1] > first_losses[0] + 0.3  # 0.91-0.94 over seeds 1-4


def json_config(meta):
    import json

    config = meta["training"]["config"]
    return json.loads(config) if isinstance(config, str) else config


def test_many_lesions_on_whole_slices_take_no_copy_of_the_batch_per_lesion(tmp_path):
    """A validation batch of whole slices with many lesions: the loss built an ``(M, H, W)`` copy of the batch
    per lesion (8 slices of 256 x 256 with 100 lesions each: about 1 GB more peak memory, on the GPU in a CUDA
    run); per-lesion sums need none. Run in a fresh process so that its peak memory is this call's."""
    import subprocess
    import sys
    import textwrap

    if not sys.platform.startswith("linux"):
        pytest.skip("ru_maxrss is in kilobytes on Linux")
    script = textwrap.dedent("""
        import resource, torch
        from LiverTumorSegLib.training.losses import lesion_dice_loss
        torch.manual_seed(0)
        target = torch.ones((8, 256, 256), dtype=torch.long)
        for k in range(100):
            r, c = 4 + 25 * (k // 10), 4 + 25 * (k % 10)
            target[:, r:r + 5, c:c + 5] = 2
        logits = torch.randn((8, 3, 256, 256))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with torch.no_grad():
            value = float(lesion_dice_loss(logits, target))
        print(value, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
    """)
    import os

    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    value, grown_mb = (float(v) for v in out.stdout.split())
    assert 0.9 < value < 1.0  # random logits: about a third tumor probability everywhere, lesions of 25 pixels
    assert grown_mb < 200, f"the loss took {grown_mb:.0f} MB more peak memory"


def test_descending_the_lesion_term_alone_finds_a_missed_small_lesion():
    """A tiny network, one slice with a large (8 x 8) and a small (2 x 2) lesion, both brighter than the liver
    around them; 50 SGD steps on the per-lesion term alone take the small lesion's hard Dice from 0 to above 0.5
    (the term's gradient for a missed small lesion is as large as for a missed large one). Sixteen hidden channels:
    with four, 3 of 30 seeds left the small lesion missed (dead ReLU units; the determinism audit), with eight 4 of
    200, with sixteen none of 700 (seeds 0-699, one thread)."""
    torch.manual_seed(test_seed(235))
    target = torch.ones((1, 24, 24), dtype=torch.long)
    target[0, 3:11, 3:11] = 2
    target[0, 17:19, 17:19] = 2
    image = (target == 2).float().unsqueeze(1) + 0.05 * torch.randn((1, 1, 24, 24))
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 3, 1))
    with torch.no_grad():
        net[2].bias.copy_(torch.tensor([0.0, 1.0, -1.0]))  # starts calling liver everywhere: both lesions missed
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)

    def small_dice():
        pred = net(image).argmax(1)[0, 15:21, 15:21] == 2
        truth = target[0, 15:21, 15:21] == 2
        return 2 * float((pred & truth).sum()) / float(pred.sum() + truth.sum())

    assert small_dice() == 0.0
    for _ in range(50):
        optimizer.zero_grad()
        lesion_dice_loss(net(image), target).backward()
        optimizer.step()
    assert small_dice() > 0.5


def test_deep_supervision_finds_the_tumor_components_once_for_all_its_outputs(monkeypatch):
    """Every output is scored against the same target: its components were found once per output (three label
    passes, and on CUDA three waits for the GPU, for a network with two auxiliary heads); now once, with the same
    value as scoring each output on its own."""
    import LiverTumorSegLib.training.losses as losses
    from LiverTumorSegLib.training.losses import DeepSupervisionLoss

    torch.manual_seed(2)
    target = two_lesion_target().repeat(2, 1, 1)
    main, aux = torch.randn((2, 3, 8, 8)), [torch.randn((2, 3, 4, 4)), torch.randn((2, 3, 2, 2))]
    base = SegmentationLoss("dice_ce", lesion_weight=1.0)
    weights = DeepSupervisionLoss(base).level_weights(3)
    by_hand = sum(w * base(torch.nn.functional.interpolate(o, size=(8, 8), mode="bilinear", align_corners=False)
                           if o.shape[-1] != 8 else o, target).item() for w, o in zip(weights, [main] + aux))
    calls = []
    real = losses.tumor_components
    monkeypatch.setattr(losses, "tumor_components", lambda *a, **k: calls.append(1) or real(*a, **k))
    value = DeepSupervisionLoss(base)(main, aux, target).item()
    assert len(calls) == 1 and value == pytest.approx(by_hand, rel=1e-6)


# ----------------------------------------------------------------- lesion_loss_min_pixels and lesion_loss_average
def lesion_and_sliver_target():
    """One 8 x 8 slice: liver everywhere, lesion B (4 x 4 = 16 pixels) at the bottom right and a sliver S of 2
    pixels (rows 0-1 of column 0: a lesion's edge a patch border cut) at the top left, apart."""
    target = torch.ones((1, 8, 8), dtype=torch.long)
    target[0, 4:8, 4:8] = 2
    target[0, 0:2, 0] = 2
    return target


def test_a_sliver_under_min_pixels_is_not_scored():
    """B found, the 2-pixel sliver missed: every component scored, 1 - (1 + 0) / 2 = 0.5; with min_pixels 3 the
    sliver is left out and B alone scores 1: loss ~0. min_pixels 2 (the sliver's size) still scores it."""
    target = lesion_and_sliver_target()
    logits = logits_calling_tumor((target == 2) & (torch.arange(8) >= 4).view(1, 1, 8))  # B only
    assert lesion_dice_loss(logits, target).item() == pytest.approx(0.5, abs=1e-5)
    assert lesion_dice_loss(logits, target, min_pixels=2).item() == pytest.approx(0.5, abs=1e-5)
    assert lesion_dice_loss(logits, target, min_pixels=3).item() == pytest.approx(0.0, abs=1e-5)


def test_a_left_out_slivers_pixels_are_no_false_positive_of_the_other_lesions():
    """Both B and the sliver called tumor: with min_pixels 3 the sliver's 2 called pixels are left out of B's
    score, which stays 1 (loss ~0); counted as B's false positives they would give Dice_B = 2 * 16 / (18 + 16)
    = 16/17 and a loss of 1/17 = 0.059."""
    target = lesion_and_sliver_target()
    logits = logits_calling_tumor(target == 2)
    assert lesion_dice_loss(logits, target, min_pixels=3).item() == pytest.approx(0.0, abs=1e-5)
    called_beside = (target == 2).clone()
    called_beside[0, 0:2, 2] = True  # 2 pixels called tumor outside every lesion: those are B's false positives
    assert lesion_dice_loss(logits_calling_tumor(called_beside), target, min_pixels=3).item() == \
        pytest.approx(1 / 17, abs=1e-5)


def test_min_pixels_above_every_component_gives_zero_with_a_zero_gradient():
    target = two_lesion_target()  # components of 4 and 16 pixels
    torch.manual_seed(3)
    logits = torch.randn((1, 3, 8, 8), requires_grad=True)
    loss = lesion_dice_loss(logits, target, min_pixels=17)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.count_nonzero(logits.grad) == 0
    assert lesion_dice_loss(logits, target, min_pixels=16).item() > 0.0  # B (16 pixels) is scored at 16


def one_and_three_lesion_batch():
    """Two 12 x 12 slices of liver: slice 0 holds one lesion (rows 1-3, columns 1-3), slice 1 three (rows 1-3 of
    columns 1-3, 5-7 and 9-11), all of 9 pixels and apart."""
    target = torch.ones((2, 12, 12), dtype=torch.long)
    target[0, 1:4, 1:4] = 2
    for c in (1, 5, 9):
        target[1, 1:4, c:c + 3] = 2
    return target


def test_image_averaging_weighs_each_slice_alike_and_lesion_averaging_each_lesion():
    """Slice 0's lesion missed (Dice ~0), slice 1's three found (Dice 1 each): the mean over the batch's lesions
    is 3/4 (loss 0.25); over each slice's first, (0 + 1) / 2 (loss 0.5). Reversed (slice 0 found, slice 1's three
    missed): lesion 1 - 1/4 = 0.75, image again 0.5."""
    target = one_and_three_lesion_batch()
    called = target == 2
    called[0] = False
    logits = logits_calling_tumor(called)
    assert lesion_dice_loss(logits, target).item() == pytest.approx(0.25, abs=1e-5)
    assert lesion_dice_loss(logits, target, average="lesion").item() == pytest.approx(0.25, abs=1e-5)
    assert lesion_dice_loss(logits, target, average="image").item() == pytest.approx(0.5, abs=1e-5)
    reversed_called = target == 2
    reversed_called[1] = False
    logits = logits_calling_tumor(reversed_called)
    assert lesion_dice_loss(logits, target, average="lesion").item() == pytest.approx(0.75, abs=1e-5)
    assert lesion_dice_loss(logits, target, average="image").item() == pytest.approx(0.5, abs=1e-5)


def test_image_averaging_leaves_out_a_slice_whose_components_are_all_under_min_pixels():
    """Slice 0 holds only a 2-pixel sliver, missed; slice 1 a 16-pixel lesion, found. Image averaging: every
    component scored, (0 + 1) / 2 (loss 0.5); with min_pixels 3 slice 0 has no scored lesion and is no image of
    the mean: loss ~0 (not 0.5, as it would be if it counted with a mean of 0). A slice without tumor counts in
    neither."""
    target = torch.ones((3, 8, 8), dtype=torch.long)
    target[0, 0:2, 0] = 2
    target[1, 4:8, 4:8] = 2
    called = target == 2
    called[0] = False
    logits = logits_calling_tumor(called)
    assert lesion_dice_loss(logits, target, average="image").item() == pytest.approx(0.5, abs=1e-5)
    assert lesion_dice_loss(logits, target, average="image", min_pixels=3).item() == pytest.approx(0.0, abs=1e-5)


def test_image_averaging_matches_a_per_slice_loop_on_random_logits():
    """On random logits: ``image`` equals the mean, over slices holding tumor, of each slice's own lesion term
    (each slice's lesions scored alone against its own pixels), within float32 rounding."""
    torch.manual_seed(4)
    target = one_and_three_lesion_batch()
    target = torch.cat([target, torch.ones((1, 12, 12), dtype=torch.long)])  # a third slice without tumor
    logits = torch.randn((3, 3, 12, 12))
    per_slice = [lesion_dice_loss(logits[n:n + 1], target[n:n + 1]).item() for n in range(2)]
    assert lesion_dice_loss(logits, target, average="image").item() == pytest.approx(sum(per_slice) / 2, abs=1e-6)


def test_an_unknown_average_is_refused():
    target = two_lesion_target()
    with pytest.raises(InputError, match="lesion or image"):
        lesion_dice_loss(logits_calling_tumor(target == 2), target, average="blob")
    with pytest.raises(InputError, match="lesion or image"):
        SegmentationLoss("dice", lesion_weight=1.0, lesion_average="blob")


def test_segmentation_and_deep_supervision_losses_pass_the_options_on():
    """The weighted term in SegmentationLoss is lesion_dice_loss with the same min_pixels and average, and
    DeepSupervisionLoss still finds the components once for all its outputs with them."""
    from LiverTumorSegLib.training.losses import DeepSupervisionLoss

    torch.manual_seed(5)
    target = lesion_and_sliver_target().repeat(2, 1, 1)
    target[1, 0:2, 0] = 1  # slice 1: B alone
    logits = torch.randn((2, 3, 8, 8))
    options = dict(min_pixels=3, average="image")
    alone = SegmentationLoss("dice_ce")(logits, target).item()
    base = SegmentationLoss("dice_ce", lesion_weight=2.0, lesion_min_pixels=3, lesion_average="image")
    assert base(logits, target).item() == pytest.approx(
        alone + 2.0 * lesion_dice_loss(logits, target, **options).item(), rel=1e-6)
    assert lesion_dice_loss(logits, target, **options).item() != pytest.approx(
        lesion_dice_loss(logits, target).item(), abs=1e-3)  # the options change this batch's value
    aux = [torch.randn((2, 3, 4, 4))]
    weights = DeepSupervisionLoss(base).level_weights(2)
    up = torch.nn.functional.interpolate(aux[0], size=(8, 8), mode="bilinear", align_corners=False)
    by_hand = weights[0] * base(logits, target).item() + weights[1] * base(up, target).item()
    assert DeepSupervisionLoss(base)(logits, aux, target).item() == pytest.approx(by_hand, rel=1e-6)


@pytest.mark.parametrize("value", [-1, 2.5, True, "3", 2048 * 2048 + 1])
def test_min_pixels_must_be_a_whole_number_from_0(value):
    with pytest.raises(InputError) as refused:
        TrainConfig.from_dict({"data": "x.csv", "lesion_loss_weight": 1.0, "lesion_loss_min_pixels": value})
    assert "lesion_loss_min_pixels" in str(refused.value) and "Unknown" not in str(refused.value)


def test_the_average_must_be_lesion_or_image():
    with pytest.raises(InputError, match="lesion_loss_average='mean' is not one of lesion, image"):
        TrainConfig.from_dict({"data": "x.csv", "lesion_loss_weight": 1.0, "lesion_loss_average": "mean"})


@pytest.mark.parametrize("values, named", [({"lesion_loss_min_pixels": 3}, "lesion_loss_min_pixels"),
                                           ({"lesion_loss_average": "image"}, "lesion_loss_average")])
def test_the_options_are_refused_without_the_lesion_term(values, named):
    """Without lesion_loss_weight the term is off: these options would do nothing, and a package would record them
    as if they had shaped the training."""
    with pytest.raises(InputError, match=f"{named} shapes the per-lesion loss term"):
        TrainConfig.from_dict(dict({"data": "x.csv"}, **values))
    cfg = TrainConfig.from_dict(dict({"data": "x.csv", "lesion_loss_weight": 0.5}, **values))
    assert getattr(cfg, named) == values[named]


def test_the_options_read_from_the_command_line_and_default_to_todays_term():
    import argparse

    from LiverTumorSegLib.commands.train import add_config_options

    assert (TrainConfig().lesion_loss_min_pixels, TrainConfig().lesion_loss_average) == (0, "lesion")
    parser = argparse.ArgumentParser()
    add_config_options(parser)
    args = parser.parse_args(["--lesion-loss-min-pixels", "3", "--lesion-loss-average", "image"])
    assert (args.lesion_loss_min_pixels, args.lesion_loss_average) == (3, "image")
    empty = parser.parse_args([])
    assert empty.lesion_loss_min_pixels is None and empty.lesion_loss_average is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--lesion-loss-average", "mean"])


def test_a_run_recorded_before_the_options_reads_their_defaults_on_resume():
    """A checkpoint's config written before these options (no such keys) reads 0 and "lesion": a resume with the
    defaults finds no other setting; one asking for another min_pixels is refused, naming it."""
    from pathlib import Path

    from LiverTumorSegLib.training.trainer import differing_settings

    now = TrainConfig.from_dict({"data": "x.csv", "lesion_loss_weight": 1.0})
    older = now.to_dict()
    del older["lesion_loss_min_pixels"], older["lesion_loss_average"]
    saved = TrainConfig.from_json(__import__("json").dumps(older))
    assert (saved.lesion_loss_min_pixels, saved.lesion_loss_average) == (0, "lesion")
    assert differing_settings(older, now, Path("last.pt")) == ""
    other = now.updated({"lesion_loss_min_pixels": 3})
    assert differing_settings(older, other, Path("last.pt")) == "lesion_loss_min_pixels 0 (now 3)"


def test_a_training_run_records_the_lesion_term_options(tmp_path):
    """A tiny run with the term, min_pixels 3 and image averaging packages both options in its recipe and trains
    to a finite loss."""
    from LiverTumorSegLib.package import read_package_metadata
    from LiverTumorSegLib.training.trainer import train
    from training_helpers import write_phantom_cases

    torch.set_num_threads(1)
    (tmp_path / "phantoms").mkdir()
    data_csv = write_phantom_cases(tmp_path / "phantoms", 2, (8, 48, 48))
    cfg = tiny_lesion_config(data_csv, tmp_path / "model.safetensors", tmp_path / "cache", iterations_per_epoch=2,
                             lesion_loss_weight=1.0, lesion_loss_min_pixels=3, lesion_loss_average="image")
    result = train(cfg, command="test", log=lambda s: None)
    recorded = json_config(read_package_metadata(result.package_path))
    assert (recorded["lesion_loss_weight"], recorded["lesion_loss_min_pixels"], recorded["lesion_loss_average"]) == \
        (1.0, 3, "image")
    assert math.isfinite(result.history[0]["train_loss"])
