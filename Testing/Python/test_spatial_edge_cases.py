"""Edge cases of LiverTumorSegLib.preprocessing.spatial: one axis shrinking, one bad spacing, label copies. The earlier
tests let each of them through: every test here fails when one operator or constant of the code it covers is changed
(checked by mutation in stop 26). Known inputs, known answers."""
import numpy as np
import pytest

from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.preprocessing.spatial import (SpatialInfo, forward_image, forward_labels, inverse_argmax,
                                                     inverse_labels, inverse_maps, plan_spatial)


def test_inverse_argmax_antialiases_when_only_one_axis_shrinks():
    """Network grid 20 x 45 back to a 40 x 30 slice: y grows, x shrinks. The restore must be antialiased
    (as inverse_maps and the forward resample are) because one axis shrinks; the probability of class 1
    equals torch's antialiased bilinear resize of the map, and differs from the non-antialiased one."""
    import torch

    info = SpatialInfo(native_shape_yx=(40, 30), native_spacing_yx=(1.0, 1.0), crop_yx=(0, 40, 0, 30),
                       resampled_shape_yx=(20, 45), pad_yx=(0, 0, 0, 0), num_slices=1)
    p1 = np.zeros((20, 45), np.float32)
    p1[:, ::2] = 1.0  # a stripe pattern along x: antialiasing averages it, plain bilinear does not
    probs = np.stack([1.0 - p1, p1])[None].astype(np.float32)  # (1, 2, 20, 45)
    ref_aa = torch.nn.functional.interpolate(torch.from_numpy(probs), size=(40, 30), mode="bilinear",
                                             align_corners=False, antialias=True).numpy()
    ref_plain = torch.nn.functional.interpolate(torch.from_numpy(probs), size=(40, 30), mode="bilinear",
                                                align_corners=False, antialias=False).numpy()
    expected = np.clip(np.rint(ref_aa[:, 1] * 255.0), 0, 255).astype(np.uint8)
    assert np.abs(ref_aa - ref_plain).max() > 0.1  # the two really differ on this input
    labels, probability = inverse_argmax(probs, info, class_index=1)
    np.testing.assert_array_equal(probability, expected)
    np.testing.assert_allclose(inverse_maps(probs, info), ref_aa, atol=1e-6)


@pytest.mark.parametrize("spacing", [(0.0, 1.0), (1.0, 0.0), (-1.0, 1.0), (1.0, -0.5)])
def test_plan_spatial_refuses_one_non_positive_spacing(spacing):
    with pytest.raises(InputError, match="spacing must be positive"):
        plan_spatial((2, 10, 12), spacing, None, 1.5, None, 1)


def test_forward_labels_without_resampling_or_padding_is_a_copy():
    """Identity grid (no crop, no resample, no pad): the network labels equal the input, and writing into them
    (e.g. in-place augmentation) must not change the caller's label map."""
    from LiverTumorSegLib.preprocessing.spatial import forward_labels

    labels = np.zeros((2, 6, 8), np.uint8)
    labels[:, 2:4, 3:6] = 2
    info = plan_spatial(labels.shape, (1.0, 1.0), None, None, None, 1)
    assert not info.is_resampled and info.pad_yx == (0, 0, 0, 0)
    out = forward_labels(labels, info)
    np.testing.assert_array_equal(out, labels)
    assert out.dtype == np.uint8 and not np.shares_memory(out, labels)
    out[:] = 0
    assert np.count_nonzero(labels) == 2 * 2 * 3


def test_labels_shrunk_two_to_one_stay_registered_with_the_hu():
    """At an exact 2:1 shrink (the two_windows_histscaled preset, or a 0.75 mm scan on a 1.5 mm grid) the nearest
    label of each network pixel came from the second of its two native pixels: training targets half a native
    pixel off the HU in y and x. Pushed forward and restored, boxes at 32 x 4 positions now come back with no
    mean shift and within 1 % of their area."""
    from LiverTumorSegLib.preprocessing import PreprocessingConfig, SlicePreprocessor
    from LiverTumorSegLib.preprocessing import spatial

    pre = SlicePreprocessor(PreprocessingConfig.preset("two_windows_histscaled"))
    info = pre.plan(np.zeros((1, 512, 512), np.int16), (2.5, 0.78, 0.78))
    assert tuple(info.resampled_shape_yx) == (256, 256)
    shifts, areas = [], []
    for p in range(200, 232):
        for q in range(4):
            labels = np.zeros((1, 512, 512), np.uint8)
            labels[0, p:p + 21 + q, p + q:p + 31 + q] = 1
            net = pre.labels_forward(labels, info)
            back, _ = spatial.inverse_argmax(np.eye(2, dtype=np.float32)[net].transpose(0, 3, 1, 2), info)
            shifts.append(np.array(np.nonzero(back[0])).mean(1) - np.array(np.nonzero(labels[0])).mean(1))
            areas.append(back.sum() / labels.sum())
    assert np.abs(np.mean(shifts, axis=0)).max() < 0.05  # native pixels; nearest gave 0.5
    assert abs(np.mean(areas) - 1.0) < 0.01


def test_labels_restored_to_coarser_native_pixels_stay_in_place():
    """inverse_labels (PreparedVolume.restore_labels) took the nearest network pixel when native pixels are coarser
    (3 mm native, 1.5 mm network): each native pixel took the second of the two it covers, and objects came back half
    a native pixel toward lower indices, where inverse_argmax of the same labels kept them (the numerics audit)."""
    info = plan_spatial((1, 4, 4), (3.0, 3.0), None, 1.5, None, 1)  # 2:1
    net = np.broadcast_to(np.array([0, 0, 0, 1, 1, 1, 0, 0], np.uint8), (1, 8, 8)).copy()  # x = 4.5..9.0 mm
    restored = inverse_labels(net, info)[0]
    assert restored[:, 2].all() and not restored[:, [0, 3]].any()  # covered wholly, not at all
    assert restored[:, 1].sum() == 2  # half covered: the object's on alternate rows (nearest: on every row)
    info = plan_spatial((1, 40, 40), (3.0, 3.0), None, 1.5, None, 1)
    rows, columns = np.mgrid[0:80, 0:80]
    disk = (np.hypot(rows - 40.0, columns - 38.5) <= 13.3).astype(np.uint8)[None]  # 40 mm across
    restored = inverse_labels(disk, info)[0]
    net_centre = np.array(np.nonzero(disk[0])).mean(1) * 1.5 + 0.75  # mm from the grid's first edge
    native_centre = np.array(np.nonzero(restored)).mean(1) * 3.0 + 1.5
    np.testing.assert_allclose(native_centre, net_centre, atol=0.3)  # nearest: about 1 mm off in y and x


@pytest.mark.parametrize("value", [0, 1, 2])
def test_labels_of_one_value_shrunk_keep_that_value_inside_and_pad_with_background(value):
    """A crop holding one label only (a slice stack all background, all liver or all tumor) shrunk 2:1 and padded
    to a multiple of 16: the resampled core holds that value, the padding 0 (background)."""
    info = plan_spatial((2, 20, 24), (1.0, 1.0), None, 2.0, None, 16)  # (z, y, x) 20 x 24 px -> 10 x 12 -> 16 x 16
    assert tuple(info.resampled_shape_yx) == (10, 12) and tuple(info.net_shape_yx) == (16, 16)
    net = forward_labels(np.full((2, 20, 24), value, np.uint8), info)
    t, b, l, r = info.pad_yx
    core = net[:, t:16 - b, l:16 - r]
    assert net.dtype == np.uint8 and core.shape == (2, 10, 12) and np.all(core == value)
    assert np.count_nonzero(net) == (core.size if value else 0)


@pytest.mark.parametrize("target", [None, 1.0, 4.0])  # copied, enlarged (nearest), shrunk (largest share)
@pytest.mark.parametrize("value", [258, -1, 1.5, np.nan])
def test_forward_labels_refuses_values_uint8_cannot_hold(target, value):
    """The uint8 network grid wrapped a label 258 to 2 (a tumor) and -1 to 255, and cut 1.5 to 1, silently."""
    from LiverTumorSegLib.preprocessing.spatial import forward_labels

    labels = np.zeros((1, 8, 8), np.float32 if isinstance(value, float) else np.int16)
    labels[0, 2:5, 2:5] = value
    info = plan_spatial(labels.shape, (2.0, 2.0), None, target, None, 1)
    with pytest.raises(InputError, match="whole numbers 0..255"):
        forward_labels(labels, info)


def test_forward_labels_takes_whole_number_labels_of_any_dtype():
    from LiverTumorSegLib.preprocessing.spatial import forward_labels

    for dtype in (np.int16, np.int64, np.float64, np.uint16, bool):
        labels = np.zeros((1, 8, 8), dtype)
        labels[0, 2:6, 2:6] = 1
        info = plan_spatial(labels.shape, (2.0, 2.0), None, None, None, 1)
        np.testing.assert_array_equal(forward_labels(labels, info), labels.astype(np.uint8))


def test_odd_padding_puts_the_extra_pixel_bottom_right_and_comes_off_the_same_side():
    """A 5 x 7 slice padded to a multiple of 4: 3 rows (1 top, 2 bottom) and 1 column (0 left, 1 right), as
    plan_spatial's docstring says. Every way back to the native grid takes the padding off where it was put: the
    labels come back in place, not a row or column off."""
    info = plan_spatial((1, 5, 7), (1.0, 1.0), None, None, None, 4)
    assert info.pad_yx == (1, 2, 0, 1) and info.net_shape_yx == (8, 8)
    labels = np.zeros((1, 5, 7), np.uint8)
    labels[0, 0, :] = 1           # first row liver, last column tumor: a shift by one pixel moves both
    labels[0, :, 6] = 2
    net = forward_labels(labels, info)
    assert net[0, 1, 0] == 1 and net[0, 0].max() == 0 and net[0, 1:6, 6].tolist() == [2] * 5
    hu = forward_image(labels.astype(np.float32), info, pad_value=-1.0)
    np.testing.assert_array_equal(hu[0, 1:6, 0:7], labels[0])
    probs = np.stack([net == k for k in range(3)], axis=1).astype(np.float32)  # (1, 3, 8, 8) one-hot
    np.testing.assert_array_equal(inverse_argmax(probs, info)[0], labels)
    np.testing.assert_array_equal(inverse_labels(net, info), labels)
    np.testing.assert_array_equal(inverse_maps(probs, info).argmax(axis=1), labels)


def test_labels_shrunk_along_x_and_enlarged_along_y_take_the_largest_share():
    """2 x 9 pixels to a 4 x 3 grid: y grows 2x, x shrinks 3:1. Each output column covers three native columns
    1, 0, 1: two thirds tumor, so the largest share gives tumor everywhere; the nearest label (each group's
    centre column, 0) would give none, as it did when one enlarged axis sent the whole slice to nearest."""
    info = SpatialInfo(native_shape_yx=(2, 9), native_spacing_yx=(1.0, 1.0), crop_yx=(0, 2, 0, 9),
                       resampled_shape_yx=(4, 3), pad_yx=(0, 0, 0, 0), num_slices=1)
    labels = np.tile(np.array([2, 0, 2], np.uint8), 3)[None, None].repeat(2, axis=1)   # (1, 2, 9)
    np.testing.assert_array_equal(forward_labels(labels, info), np.full((1, 4, 3), 2, np.uint8))


def _argmax_reference(values: np.ndarray) -> np.ndarray:
    """First maximum over axis 1; a NaN neither wins nor lets a later class win (the running maximum turns NaN)."""
    best = values[:, 0].copy()
    labels = np.zeros(best.shape, dtype=np.uint8)
    for k in range(1, values.shape[1]):
        labels[values[:, k] > best] = k
        best = np.where(np.isnan(best) | np.isnan(values[:, k]), np.nan, np.maximum(best, values[:, k]))
    return labels


@pytest.mark.parametrize("classes", [1, 2, 3, 4, 5])
def test_argmax_classes_keeps_the_first_maximum_with_ties_and_nan(classes):
    import torch

    from LiverTumorSegLib.preprocessing.spatial import argmax_classes

    rng = np.random.default_rng(classes)
    values = np.round(rng.random((3, classes, 9, 11)), 1).astype(np.float32)  # many exact ties
    values[rng.random(values.shape) < 0.05] = np.nan
    labels = argmax_classes(torch.from_numpy(values))
    assert labels.dtype == torch.uint8 and tuple(labels.shape) == (3, 9, 11)
    np.testing.assert_array_equal(labels.numpy(), _argmax_reference(values))


def test_argmax_classes_writes_winners_in_place(monkeypatch):
    """The restore's argmax writes each later class's winners into the labels in place and keeps no running maximum
    past the last class: torch.where made a new label array per class, and a clone, a zeros and a last maximum
    cost as much again (0.031 -> 0.013 s CPU per 16-slice chunk of a 295 x 512 restore, one thread)."""
    import torch

    from LiverTumorSegLib.preprocessing.spatial import argmax_classes

    calls = {"where": 0, "maximum": 0}
    where, maximum = torch.where, torch.maximum
    monkeypatch.setattr(torch, "where", lambda *a, **k: calls.__setitem__("where", calls["where"] + 1) or where(*a, **k))
    monkeypatch.setattr(torch, "maximum",
                        lambda *a, **k: calls.__setitem__("maximum", calls["maximum"] + 1) or maximum(*a, **k))
    values = torch.from_numpy(np.random.default_rng(0).random((2, 3, 5, 6)).astype(np.float32))
    np.testing.assert_array_equal(argmax_classes(values).numpy(), np.argmax(values.numpy(), axis=1))
    assert calls == {"where": 0, "maximum": 1}


def _restore_info(native_yx, resampled_yx):
    return SpatialInfo(native_shape_yx=native_yx, native_spacing_yx=(1.0, 1.0),
                       crop_yx=(0, native_yx[0], 0, native_yx[1]), resampled_shape_yx=resampled_yx,
                       pad_yx=(0, 0, 0, 0), num_slices=4)


@pytest.mark.parametrize("classes", [1, 2, 3])
def test_restore_layout_upsamples_channels_last_with_the_contiguous_kernels_numbers(classes):
    """The CPU restore on one thread upsamples channels-last (2.5-4x faster) only where PyTorch's two bilinear kernels
    give the same float32 numbers: up to 3 classes. 4 x K x 92 x 167 -> 141 x 256 (the bundled model's 1.54x
    restore). On two threads (where the contiguous kernel is the faster) it stays contiguous."""
    import torch

    from LiverTumorSegLib.inference.device import torch_threads
    from LiverTumorSegLib.preprocessing.spatial import restore_layout

    info = _restore_info((141, 256), (92, 167))
    rng = np.random.default_rng(5)
    chunk = torch.softmax(torch.from_numpy(rng.normal(scale=3.0, size=(4, classes, 92, 167)).astype(np.float32)), 1)
    with torch_threads(2):
        assert restore_layout(chunk, info).is_contiguous()
    with torch_threads(1):
        laid_out = restore_layout(chunk, info)
    assert laid_out.is_contiguous(memory_format=torch.channels_last) and not laid_out.is_contiguous() or classes == 1
    resize = dict(size=(141, 256), mode="bilinear", align_corners=False)
    assert torch.equal(torch.nn.functional.interpolate(laid_out, **resize),
                       torch.nn.functional.interpolate(chunk.contiguous(), **resize))


def test_restore_layout_keeps_four_classes_and_shrinking_contiguous():
    """From 4 classes the channels-last kernel's last bit differed from the contiguous one's on torch 2.8 and 2.13
    (AVX2; not asserted, as it may depend on the CPU's vector width); shrinking (antialiased) it is slower. Both
    stay contiguous."""
    import torch

    from LiverTumorSegLib.inference.device import torch_threads
    from LiverTumorSegLib.preprocessing.spatial import restore_layout

    rng = np.random.default_rng(6)
    four = torch.softmax(torch.from_numpy(rng.normal(scale=3.0, size=(4, 4, 92, 167)).astype(np.float32)), 1)
    up = _restore_info((141, 256), (92, 167))
    with torch_threads(1):
        assert restore_layout(four, up).is_contiguous()
        assert restore_layout(four.contiguous(memory_format=torch.channels_last), up).is_contiguous()
    three = four[:, :3].contiguous()
    shrunk = _restore_info((60, 100), (92, 167))
    one_axis_shrinks = _restore_info((141, 120), (92, 167))
    with torch_threads(1):
        assert restore_layout(three, shrunk).is_contiguous()
        assert restore_layout(three, one_axis_shrinks).is_contiguous()
        assert restore_layout(three, up).is_contiguous(memory_format=torch.channels_last)


def test_inverse_argmax_into_out_arrays_fills_every_pixel_with_the_same_numbers():
    """``out`` arrays holding garbage (255) come back with the crop restored and background / probability 0
    around it: the numbers of the call without ``out``, in the very arrays given."""
    info = SpatialInfo(native_shape_yx=(40, 50), native_spacing_yx=(1.0, 1.0), crop_yx=(5, 37, 3, 45),
                       resampled_shape_yx=(20, 31), pad_yx=(2, 2, 1, 0), num_slices=6)
    h, w = info.net_shape_yx
    rng = np.random.default_rng(12)
    probs = rng.random((6, 3, h, w)).astype(np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    expected_labels, expected_probability = inverse_argmax(probs, info, class_index=2)
    labels = np.full((6, 40, 50), 255, np.uint8)
    probability = np.full((6, 40, 50), 255, np.uint8)
    got = inverse_argmax(probs, info, class_index=2, out=(labels, probability))
    assert got[0] is labels and got[1] is probability
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_array_equal(probability, expected_probability)
    assert labels[:, :5].max() == 0 and labels[:, :, 45:].max() == 0 and probability[:, 37:].max() == 0
    only_labels = np.full((6, 40, 50), 7, np.uint8)
    assert inverse_argmax(probs, info, out=(only_labels, None))[1] is None
    np.testing.assert_array_equal(only_labels, expected_labels)
    with pytest.raises(InputError, match="uint8 arrays of shape"):
        inverse_argmax(probs, info, out=(np.zeros((6, 40, 50), np.int16), None))
    with pytest.raises(InputError, match="needs a probability array"):
        inverse_argmax(probs, info, class_index=2, out=(labels, None))


def test_restore_targets_are_views_of_consecutive_slices_only():
    from LiverTumorSegLib.inference.engine import restore_targets

    labels = np.zeros((10, 4, 5), np.uint8)
    probability = np.zeros((10, 4, 5), np.uint8)
    views = restore_targets(labels, probability, np.array([3, 4, 5]))
    assert views is not None and np.shares_memory(views[0], labels) and views[0].shape == (3, 4, 5)
    views[1][:] = 9
    assert probability[3:6].min() == 9 and probability[:3].max() == 0 and probability[6:].max() == 0
    assert restore_targets(labels, None, np.array([7]))[1] is None
    for gaps in ([3, 5, 4, 6], [3, 5], [5, 4, 3]):  # [3, 5, 4, 6] spans 4 slices too, but out of order
        assert restore_targets(labels, probability, np.array(gaps)) is None
    assert restore_targets(labels[::-1], None, np.array([0, 1])) is None  # a flipped view: torch takes no such
    assert restore_targets(labels.astype(np.int16), None, np.array([0, 1])) is None
