"""Edge cases of LiverTumorSegLib.preprocessing.spatial: one axis shrinking, one bad spacing, label copies. The earlier
tests let each of them through: every test here fails when one operator or constant of the code it covers is changed
(checked by mutation in stop 26). Known inputs, known answers."""
import numpy as np
import pytest

from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.preprocessing.spatial import SpatialInfo, inverse_argmax, inverse_maps, plan_spatial


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
