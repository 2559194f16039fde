"""IGNORE_LABEL: an oblique CT's aligned-grid voxels outside its footprint (edge voxels repeated, where segment
labels nothing) count in no loss, no validation Dice, no liver sampling. Before, they were cached and trained as
background (liver labels repeated there as liver). Targets without it are computed exactly as before."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from LiverTumorSegLib.training.labels import IGNORE_LABEL  # noqa: E402
from LiverTumorSegLib.training.losses import SegmentationLoss, dice_per_class  # noqa: E402
from LiverTumorSegLib.training.sampling import crop_box  # noqa: E402
from LiverTumorSegLib.training.slice_cache import slice_indices  # noqa: E402

LOSSES = ["ce", "dice", "dice_ce", "focal", "dice_focal"]


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, 8, 8, generator=g)
    target = torch.randint(0, 3, (2, 8, 8), generator=g)
    return logits, target


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("weights", [None, [0.2, 1.0, 3.0]])
def test_an_ignored_image_adds_nothing_to_any_loss(name, weights):
    """A batch whose second image is all IGNORE_LABEL scores as the first image alone, whatever that image's
    logits; its logits get no gradient."""
    logits, target = _batch()
    loss = SegmentationLoss(name, weights)
    alone = loss(logits[:1], target[:1])
    ignored = target.clone()
    ignored[1] = IGNORE_LABEL
    for scale in (1.0, 50.0):
        given = logits.clone()
        given[1] *= scale
        given.requires_grad_(True)
        value = loss(given, ignored)
        assert torch.isfinite(value)
        assert float(value.detach()) == pytest.approx(float(alone), rel=1e-5, abs=1e-6)
        value.backward()
        assert float(given.grad[1].abs().max()) == 0.0 and float(given.grad[0].abs().max()) > 0.0


@pytest.mark.parametrize("name", LOSSES)
def test_a_batch_ignored_whole_gives_zero_and_a_backward(name):
    logits, _ = _batch(1)
    logits.requires_grad_(True)
    value = SegmentationLoss(name)(logits, torch.full((2, 8, 8), IGNORE_LABEL, dtype=torch.long))
    assert float(value.detach()) == 0.0
    value.backward()
    assert float(logits.grad.abs().max()) == 0.0


@pytest.mark.parametrize("name", LOSSES)
def test_ignored_pixels_within_an_image_count_in_no_loss(name):
    """Changing the logits of ignored pixels changes nothing; a target without them is scored as before."""
    logits, target = _batch(2)
    ignored = target.clone()
    ignored[:, :, :3] = IGNORE_LABEL
    loss = SegmentationLoss(name)
    changed = logits.clone()
    changed[:, :, :, :3] = torch.randn(2, 3, 8, 3, generator=torch.Generator().manual_seed(5)) * 10
    assert float(loss(logits, ignored)) == pytest.approx(float(loss(changed, ignored)), rel=1e-6)
    assert float(loss(logits, ignored)) != pytest.approx(float(loss(logits, target)), rel=1e-3)


def test_dice_counts_leave_ignored_pixels_out():
    target = torch.tensor([[1, 1, IGNORE_LABEL, IGNORE_LABEL], [0, 2, 0, IGNORE_LABEL]])
    pred = torch.tensor([[1, 1, 1, 2], [0, 2, 0, 1]])
    counts = dice_per_class(pred, target)
    assert counts["liver"] == (3.0, 6.0) and counts["tumor"] == (1.0, 2.0)


def test_an_ignored_voxel_is_no_liver_to_sample():
    labels = np.zeros((3, 6, 6), dtype=np.uint8)
    labels[0] = IGNORE_LABEL
    labels[1, 2, 2] = 1
    labels[2, 3, 3] = 2
    assert slice_indices(labels) == ([1, 2], [2])
    only_ignored = np.full((40, 40), IGNORE_LABEL, dtype=np.uint8)
    only_ignored[30, 30] = 1
    rng = np.random.default_rng(0)
    for _ in range(20):  # always centred on the one liver pixel (liver_bias 1)
        assert crop_box(only_ignored, 8, rng, 1.0) == (26, 26)


def test_slice_validation_scores_no_ignored_pixel():
    """A network saying liver exactly where the slice is liver and background on its ignored half: liver Dice 1
    (the ignored half read as liver gave 0.67), and a finite loss."""
    from types import SimpleNamespace

    from LiverTumorSegLib.preprocessing import PreprocessingConfig, SlicePreprocessor
    from LiverTumorSegLib.training.trainer import validate_slices

    labels = np.ones((2, 8, 8), dtype=np.uint8)
    labels[:, :, 4:] = IGNORE_LABEL
    case = SimpleNamespace(case_id="c", hu=np.zeros((2, 8, 8), dtype=np.float32), labels=labels, num_slices=2,
                           spacing_zyx=(3.0, 1.5, 1.5))
    preprocessor = SlicePreprocessor(PreprocessingConfig(channels=[{"kind": "window", "level": 40.0, "width": 400.0}],
                                                         context_slices=0, crop_to_body=False, size_multiple=8))

    class Liver(torch.nn.Module):
        def forward(self, x):
            logits = torch.zeros(x.shape[0], 3, x.shape[2], x.shape[3])
            logits[:, 1, :, :4] = 5.0
            return logits

    result = validate_slices(Liver(), [case], preprocessor, torch.device("cpu"), 2, SegmentationLoss("dice_ce"))
    assert result["liver_dice"] == pytest.approx(1.0)
    assert np.isfinite(result["loss"])


def test_a_validation_batch_wholly_ignored_is_left_out_of_the_validation_loss():
    """A batch of slices wholly outside an oblique CT's footprint (every target pixel IGNORE_LABEL) scored loss 0,
    which pulled the validation loss (the plateau scheduler's) down: the same case with two such slices read a third
    of the loss of its one scored batch. Such batches are left out of the mean."""
    from types import SimpleNamespace

    from LiverTumorSegLib.preprocessing import PreprocessingConfig, SlicePreprocessor
    from LiverTumorSegLib.training.trainer import validate_slices

    preprocessor = SlicePreprocessor(PreprocessingConfig(channels=[{"kind": "window", "level": 40.0, "width": 400.0}],
                                                         context_slices=0, crop_to_body=False, size_multiple=8))

    class Unsure(torch.nn.Module):
        def forward(self, x):
            logits = torch.zeros(x.shape[0], 3, x.shape[2], x.shape[3])
            logits[:, 1] = 0.5
            return logits

    def case(labels):
        return SimpleNamespace(case_id="c", hu=np.zeros(labels.shape, dtype=np.float32), labels=labels,
                               num_slices=labels.shape[0], spacing_zyx=(3.0, 1.5, 1.5))

    inside = np.ones((2, 8, 8), dtype=np.uint8)
    inside[:, :, 4:] = 0
    outside = np.full((4, 8, 8), IGNORE_LABEL, dtype=np.uint8)
    loss = SegmentationLoss("dice_ce")
    alone = validate_slices(Unsure(), [case(inside)], preprocessor, torch.device("cpu"), 2, loss)
    with_outside = validate_slices(Unsure(), [case(np.concatenate([inside, outside]))], preprocessor,
                                   torch.device("cpu"), 2, loss)
    assert alone["loss"] > 0.1
    assert with_outside["loss"] == pytest.approx(alone["loss"], rel=1e-6)
    assert with_outside["liver_dice"] == pytest.approx(alone["liver_dice"])
    only_outside = validate_slices(Unsure(), [case(outside)], preprocessor, torch.device("cpu"), 2, loss)
    assert np.isnan(only_outside["loss"])  # nothing to score: no loss (the scheduler skips NaN), not a perfect 0


def _no_host_reads(monkeypatch):
    """Make every Python-side read of a tensor's values (bool(), .item(), .tolist(), .numpy(), a boolean-mask index,
    which counts the mask's pixels on the host) raise: each is a host sync on CUDA."""
    def refuse(*args, **kwargs):
        raise AssertionError("the loss read a tensor's value on the host (a GPU sync per call on CUDA)")

    getitem = torch.Tensor.__getitem__

    def no_mask_index(self, index):
        parts = index if isinstance(index, tuple) else (index,)
        if any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts):
            refuse()
        return getitem(self, index)

    for name in ("__bool__", "item", "tolist", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    monkeypatch.setattr(torch.Tensor, "__getitem__", no_mask_index)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("weights", [None, [0.2, 1.0, 3.0]])
def test_the_loss_reads_no_value_on_the_host_and_scores_as_before(name, weights, monkeypatch):
    """Before, every call read ``bool(ignored.any())`` (and ``bool(valid.any())``, and focal's mask index) on the
    host: on CUDA a sync per loss call. Now none; the values: a batch without ignored pixels scores as the plain
    formulas, one with them as its valid pixels alone (to 1e-6), one wholly ignored 0 with a zero gradient."""
    from LiverTumorSegLib.training.losses import focal_loss, soft_dice_loss

    logits, target = _batch(3)
    ignored = target.clone()
    ignored[torch.rand(target.shape, generator=torch.Generator().manual_seed(6)) < 0.4] = IGNORE_LABEL
    valid = ignored != IGNORE_LABEL
    # the valid pixels alone, as one column image (CE, focal and the batch Dice's sums do not see the layout)
    alone_logits = logits.permute(0, 2, 3, 1)[valid].T.reshape(1, 3, -1, 1)
    alone_target = ignored[valid].reshape(1, -1, 1)
    loss = SegmentationLoss(name, weights)
    expected_plain = torch.zeros(())
    if "ce" in name.split("_"):
        expected_plain = expected_plain + torch.nn.functional.cross_entropy(
            logits, target, weight=None if weights is None else torch.tensor(weights))
    if "focal" in name:
        expected_plain = expected_plain + focal_loss(logits, target, class_weights=weights)
    if "dice" in name:
        expected_plain = expected_plain + soft_dice_loss(logits, target)
    expected_alone = loss(alone_logits, alone_target)
    all_ignored = torch.full_like(target, IGNORE_LABEL)
    grad_logits = logits.clone().requires_grad_(True)
    _no_host_reads(monkeypatch)
    plain, partly, none_valid = loss(logits, target), loss(logits, ignored), loss(grad_logits, all_ignored)
    monkeypatch.undo()
    assert float(plain) == pytest.approx(float(expected_plain), rel=1e-6, abs=1e-7)
    assert float(partly) == pytest.approx(float(expected_alone), rel=1e-6, abs=1e-7)
    assert float(none_valid.detach()) == 0.0
    none_valid.backward()
    assert torch.isfinite(grad_logits.grad).all() and float(grad_logits.grad.abs().max()) == 0.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", LOSSES)
def test_the_loss_makes_no_cuda_sync(name):
    """torch's sync debug mode raises on any host sync during the loss and its backward."""
    logits, target = _batch(4)
    target[0, :, :3] = IGNORE_LABEL
    device = torch.device("cuda")
    logits = logits.to(device).requires_grad_(True)
    target = target.to(device)
    loss = SegmentationLoss(name, [0.2, 1.0, 3.0])
    for t in (target, torch.full_like(target, IGNORE_LABEL)):
        loss(logits, t)  # warm up (lazy CUDA init syncs)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            value = loss(logits, t)
            value.backward()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert torch.isfinite(value).item()


@pytest.mark.parametrize("name", ["ce", "dice_ce"])
def test_class_weights_with_a_zero_give_a_finite_loss_on_a_batch_of_that_class_only(name):
    """class_weights [0, 1, 1] (allowed: >= 0, one above 0) on a patch of background only: F.cross_entropy's weighted
    mean is 0/0, NaN, and the run stopped as "diverged" at the first such batch (and validation losses were NaN).
    Such a batch now adds 0 with zero, finite gradients; any other batch the same weighted mean as before, to the
    rounding of another summation order, ignored pixels left out too."""
    logits, target = _batch(3)
    loss = SegmentationLoss(name, [0.0, 1.0, 1.0])
    background = torch.zeros_like(target)
    given = logits.clone().requires_grad_(True)
    value = loss(given, background)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(given.grad).all()
    if name == "ce":
        assert float(value) == 0.0 and float(given.grad.abs().max()) == 0.0
    import torch.nn.functional as F
    expected_ce = F.cross_entropy(logits, target, weight=torch.tensor([0.0, 1.0, 1.0]))
    plain = SegmentationLoss(name, [0.0, 1.0, 1.0])(logits, target)
    dice_part = 0.0 if name == "ce" else float(SegmentationLoss("dice")(logits, target))
    assert float(plain) == pytest.approx(float(expected_ce) + dice_part, rel=1e-5)
    partly = target.clone()
    partly[0, :4] = IGNORE_LABEL
    keep = partly != IGNORE_LABEL
    expected = F.cross_entropy(logits, partly.long(), weight=torch.tensor([0.0, 1.0, 1.0]), ignore_index=IGNORE_LABEL)
    assert keep.any() and float(SegmentationLoss("ce", [0.0, 1.0, 1.0])(logits, partly)) == \
        pytest.approx(float(expected), rel=1e-5)
