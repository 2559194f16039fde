"""Property tests (hypothesis) of the overlap and surface metrics on small random masks."""
import math

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from LiverTumorSegLib.metrics import overlap, surface

masks = arrays(dtype=bool, shape=st.tuples(st.just(4), st.integers(3, 6), st.integers(3, 6)))
spacings = st.tuples(*[st.floats(0.3, 5.0, allow_nan=False, allow_infinity=False)] * 3)
pairs = st.integers(3, 6).flatmap(lambda n: st.tuples(arrays(bool, (3, n, 5)), arrays(bool, (3, n, 5))))


@settings(max_examples=60, deadline=None)
@given(pairs)
def test_dice_symmetric_bounded_and_tied_to_iou(pair):
    a, b = pair
    d_ab, d_ba = overlap.dice(a, b), overlap.dice(b, a)
    j = overlap.iou(a, b)
    assert d_ab == d_ba
    assert 0.0 <= d_ab <= 1.0 and 0.0 <= j <= 1.0
    assert j <= d_ab + 1e-12
    assert math.isclose(d_ab, 2 * j / (1 + j), abs_tol=1e-12)
    assert math.isclose(overlap.voe(a, b), 1 - j, abs_tol=1e-12)
    assert overlap.f1(a, b) == d_ab


@settings(max_examples=40, deadline=None)
@given(pairs, spacings)
def test_surface_distances_nonnegative_and_symmetric(pair, spacing):
    a, b = pair
    m_ab = surface.surface_metrics(a, b, spacing)
    m_ba = surface.surface_metrics(b, a, spacing)
    if not (a.any() and b.any()):  # a mask without surface: nothing to measure
        assert all(math.isnan(v) for v in m_ab.values())
        return
    for key in ("assd_mm", "hd_mm", "hd95_mm", "rmsd_mm"):
        assert m_ab[key] >= 0.0
        assert math.isclose(m_ab[key], m_ba[key], rel_tol=1e-9, abs_tol=1e-9)
    assert m_ab["assd_mm"] <= m_ab["rmsd_mm"] + 1e-9 <= m_ab["hd_mm"] + 2e-9
    assert m_ab["hd95_mm"] <= m_ab["hd_mm"] + 1e-9


@settings(max_examples=30, deadline=None)
@given(masks, spacings)
def test_identical_masks_have_zero_distance_and_unit_dice(mask, spacing):
    assert overlap.dice(mask, mask) == 1.0
    hd = surface.surface_metrics(mask, mask, spacing)["hd_mm"]
    assert hd == 0.0 if mask.any() else math.isnan(hd)  # an empty mask has no surface
