"""threshold_for (LiverTumorSegLib.inference.thresholds): the integer form of a threshold compares as the float."""
import operator

import numpy as np
import pytest

from LiverTumorSegLib.inference.thresholds import threshold_for

COMPARISONS = (operator.lt, operator.le, operator.gt, operator.ge, operator.eq)


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.uint16, np.int32, np.int64, np.float32, np.float64])
@pytest.mark.parametrize("value", [-500.0, -800.0, 2500.0, 0.0, 255.0, 256.0, -1.0, -500.5, 40000.0, 1e20,
                                   float("nan"), float("inf"), -float("inf")])
def test_every_comparison_gives_the_booleans_of_the_float_comparison(dtype, value):
    rng = np.random.default_rng(4)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    low, high = (int(info.min), int(info.max)) if info else (-3000, 3000)
    array = rng.integers(max(low, -40000), min(high, 40000), (7, 11, 13), endpoint=True).astype(dtype)
    if np.isfinite(value):  # the whole numbers around the threshold occur (-501, -500 for -500.5)
        flat = array.reshape(-1)
        for k, near in enumerate(range(int(np.floor(value)) - 1, int(np.ceil(value)) + 2)):
            if info is None or info.min <= near <= info.max:
                flat[k] = near
    given = threshold_for(array, value)
    for compare in COMPARISONS:
        np.testing.assert_array_equal(compare(array, given), compare(array, value))


def test_an_integer_scalar_of_the_array_type_is_given_only_where_it_compares_the_same():
    ct = np.zeros((2, 2), np.int16)
    assert threshold_for(ct, -500.0) == -500 and threshold_for(ct, -500.0).dtype == np.int16
    assert threshold_for(ct[::-1], 2500.0).dtype == np.int16  # a view: its dtype
    assert threshold_for(ct, -500.5) == -500.5 and isinstance(threshold_for(ct, -500.5), float)
    assert isinstance(threshold_for(np.zeros(3, np.uint8), -800.0), float)  # outside uint8
    assert isinstance(threshold_for(np.zeros(3, np.float32), -800.0), float)
    assert isinstance(threshold_for([1, 2, 3], -800.0), np.integer)  # a list: as np.asarray reads it
