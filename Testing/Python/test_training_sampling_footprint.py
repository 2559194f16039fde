"""Training patches of an oblique CT come from inside its footprint: the random (non-liver) share of patch centres and
of centre slices is drawn from pixels and slices that are not IGNORE_LABEL. Before, a centre drawn on any pixel of the
patient-aligned grid (up to 89 % of a thin tilted slab lies outside the CT's footprint) gave patches mostly or wholly
ignored, which add nothing to the loss (38 % of the random-centre 16 px patches of a 4-slice phantom turned 40 degrees
were wholly ignored), and a slice wholly outside the footprint could be the centre. An axial CT (no IGNORE_LABEL)
draws exactly the boxes it drew before."""
import numpy as np
import pytest

import test_training_oblique_grid as oblique
from LiverTumorSegLib.preprocessing import SlicePreprocessor
from LiverTumorSegLib.training import sampling
from LiverTumorSegLib.training.labels import IGNORE_LABEL
from LiverTumorSegLib.training.sampling import (PatchDataset, choose_slice, crop_box, crop_with_padding, fair_slices,
                                                trainable_share, trainable_slices)
from LiverTumorSegLib.training.slice_cache import CachedCase, build_slice_cache


class _Preprocessor:  # only the context (size, adjacent slices) and the whole slices' statistics (none) are read
    config = type("C", (), {"context_slices": 1, "context_offset": lambda self, spacing: 1.0})()

    def slice_statistics(self, hu, spacing_yx):
        return None


def _in_memory_case(labels, network_grid=None, seed=3):
    hu = np.random.default_rng(seed).normal(40.0, 20.0, labels.shape).astype(np.float32)
    liver = [int(i) for i in np.flatnonzero(((labels == 1) | (labels == 2)).reshape(len(labels), -1).any(axis=1))]
    tumor = [int(i) for i in np.flatnonzero((labels == 2).reshape(len(labels), -1).any(axis=1))]
    return CachedCase("c", "p", "", "", (3.0, 1.5, 1.5), (3.0, 1.5, 1.5), liver, tumor, labels.shape[0],
                      _hu=hu, _labels=labels, network_grid=network_grid)


def test_a_random_centre_is_a_pixel_inside_the_footprint():
    """liver_bias 0 on a slice whose only trainable pixels are a 6 x 6 block in a 40 x 40 corner: every patch holds
    its drawn centre inside the block (before: 96 % of the draws were centred on ignored pixels)."""
    labels = np.full((40, 40), IGNORE_LABEL, np.uint8)
    labels[30:36, 2:8] = 0
    rng = np.random.default_rng(0)
    for _ in range(200):
        y0, x0 = crop_box(labels, 8, rng, 0.0)
        assert np.any(labels[max(y0, 0):y0 + 8, max(x0, 0):x0 + 8] != IGNORE_LABEL)
    # a slice holding nothing but ignored pixels (no slice chooser gives one) still gives a box
    assert crop_box(np.full((40, 40), IGNORE_LABEL, np.uint8), 8, np.random.default_rng(0), 0.0) is not None


def test_a_random_slice_is_one_holding_trainable_pixels():
    labels = np.zeros((6, 10, 10), np.uint8)
    labels[[0, 1, 5]] = IGNORE_LABEL
    labels[2, 0, 0] = IGNORE_LABEL
    assert trainable_slices(labels) == [2, 3, 4]
    assert trainable_slices(labels, chunk=4) == [2, 3, 4]
    case = _in_memory_case(labels)
    rng = np.random.default_rng(1)
    assert {choose_slice(case, rng, 0.0, 0.0, trainable=[2, 3, 4]) for _ in range(300)} == {2, 3, 4}
    assert {choose_slice(case, rng, 0.0, 0.0) for _ in range(300)} == set(range(6))  # without: every slice
    assert {choose_slice(case, rng, 0.0, 0.0, True, 1, [2, 3, 4]) for _ in range(300)} == {2, 4}


def test_patches_of_a_case_mostly_outside_its_footprint_all_hold_trainable_pixels():
    """A case on an aligned grid, 87 % outside the footprint: slices 0, 1 and 7 wholly, the others but for a band of
    10 rows. No patch's centre label is wholly ignored, with or without the liver bias (before: 71 % of the
    random-centre patches and 14 % at liver_slice_fraction 0.85); the random-centre patches' mean share of ignored
    pixels was 0.88 before, 0.43 now (a 16 px patch holds at most the band's 10 rows)."""
    labels = np.full((8, 48, 48), IGNORE_LABEL, np.uint8)
    labels[2:7, 20:30, :] = 0
    labels[3:6, 22:27, 10:20] = 1
    case = _in_memory_case(labels, network_grid={"kind": "aligned"})
    for fraction in (0.85, 0.0):
        dataset = PatchDataset([case], _Preprocessor(), patch_size=16, seed=0, liver_slice_fraction=fraction)
        shares = [float(np.mean(dataset.sample_arrays(i)[1] == IGNORE_LABEL)) for i in range(300)]
        assert max(shares) < 1.0, fraction
    assert np.mean(shares) < 0.5


def test_a_thin_tilted_phantom_cached_on_the_aligned_grid_gives_no_wholly_ignored_patch(tmp_path, monkeypatch):
    """4 slices turned 40 degrees: 75 % of the aligned grid is outside the footprint. Random-centre 16 px patches:
    38 % wholly ignored before, none now."""
    monkeypatch.setattr(oblique, "SHAPE_ZYX", (4, 40, 40))
    case, _ = oblique._case(tmp_path / "data", 40.0)
    preprocessor = SlicePreprocessor(oblique._config())
    (cached,) = build_slice_cache([case], preprocessor, tmp_path / "cache")
    assert cached.network_grid and np.mean(np.asarray(cached.labels) == IGNORE_LABEL) > 0.7
    dataset = PatchDataset([cached], preprocessor, patch_size=16, seed=0, liver_slice_fraction=0.0)
    shares = [float(np.mean(dataset.sample_arrays(i)[1] == IGNORE_LABEL)) for i in range(300)]
    assert max(shares) < 1.0


# (centre slice, crop_box's y0, x0) and the centre label's sum of the first 24 samples of the axial case below, seed
# 7, liver_slice_fraction 0.5, drawn by the sampler before ignored pixels were left out of the random draws
AXIAL_DRAWS = [(5, 24, 20), (6, 11, 19), (3, 13, 6), (3, 24, 15), (6, 24, 5), (4, 3, 6), (3, 12, 3), (5, 12, 4),
               (3, 2, 0), (4, 24, 14), (3, 15, 20), (0, 13, 19), (3, 3, 6), (4, 24, 1), (4, 0, 14), (2, 4, 10),
               (0, 23, 20), (5, 3, 7), (2, 11, 4), (2, 24, 17), (4, 13, 2), (1, 19, 20), (4, 11, 9), (4, 11, 9)]
AXIAL_LABEL_SUMS = [0, 0, 105, 7, 0, 129, 117, 99, 119, 0, 0, 0, 105, 0, 32, 90, 0, 72, 96, 0, 73, 0, 141, 90]


def test_an_axial_case_draws_exactly_the_boxes_it_drew_before(monkeypatch):
    labels = np.zeros((8, 40, 36), np.uint8)
    labels[2:6, 10:22, 8:20] = 1
    labels[3:5, 14:17, 12:15] = 2
    drawn = []
    choose, crop = sampling.choose_slice, sampling.crop_box

    def recording_choose(*args, **kwargs):
        drawn.append([choose(*args, **kwargs)])
        return drawn[-1][0]

    def recording_crop(*args, **kwargs):
        box = crop(*args, **kwargs)
        drawn[-1].extend(box)
        return box

    monkeypatch.setattr(sampling, "choose_slice", recording_choose)
    monkeypatch.setattr(sampling, "crop_box", recording_crop)
    dataset = PatchDataset([_in_memory_case(labels)], _Preprocessor(), 16, seed=7, liver_slice_fraction=0.5)
    sums = [int(dataset.sample_arrays(i)[1].sum()) for i in range(24)]
    assert [tuple(d) for d in drawn] == AXIAL_DRAWS
    assert sums == AXIAL_LABEL_SUMS


@pytest.mark.parametrize("liver_bias", [0.0, 0.5, 1.0])
def test_crop_box_without_ignored_pixels_leaves_the_generator_where_it_left_it(liver_bias):
    """The same box and the same next draw as the plain uniform pixel draw (the code before)."""
    labels = np.zeros((30, 26), np.uint8)
    labels[5:9, 6:12] = 1
    for seed in range(40):
        rng, reference = np.random.default_rng(seed), np.random.default_rng(seed)
        box = crop_box(labels, 12, rng, liver_bias)
        ys, xs = np.nonzero(labels)
        if reference.random() < liver_bias:
            k = reference.integers(ys.size)
            cy, cx = int(ys[k]), int(xs[k])
        else:
            cy, cx = int(reference.integers(30)), int(reference.integers(26))
        assert box == (min(max(cy - 6, 0), 18), min(max(cx - 6, 0), 14))
        assert rng.random() == reference.random()


@pytest.mark.parametrize("shape,patch", [((40, 40), 32), ((30, 50), 16), ((20, 12), 16), ((9, 40), 32)])
def test_trainable_share_is_the_share_of_the_box_crop_box_places(shape, patch):
    """Brute force: the share of trainable pixels in the padded crop of the box crop_box gives for each centre."""
    rng = np.random.default_rng(4)
    trainable = rng.random(shape) < 0.4
    share = trainable_share(trainable, patch)
    labels = np.where(trainable, 0, IGNORE_LABEL).astype(np.uint8)
    for cy in range(shape[0]):
        for cx in range(shape[1]):
            one = np.full(shape, IGNORE_LABEL, np.uint8)
            one[cy, cx] = 0  # crop_box's only choice of centre
            y0, x0 = crop_box(one, patch, np.random.default_rng(0), 0.0)
            box = crop_with_padding(labels, y0, x0, patch, IGNORE_LABEL)
            assert share[cy, cx] == pytest.approx(np.mean(box != IGNORE_LABEL))


def test_a_random_centre_at_the_footprint_edge_is_drawn_where_the_patch_is_mostly_trainable():
    """A slice trainable in its lower right quarter, 32 px patches: every random centre's patch is at least half
    trainable (before: centred on any trainable pixel, 10 % of 1000 patches were under half)."""
    labels = np.full((64, 64), IGNORE_LABEL, np.uint8)
    labels[32:, 32:] = 0
    rng = np.random.default_rng(0)
    for _ in range(200):
        y0, x0 = crop_box(labels, 32, rng, 0.0)
        assert np.mean(crop_with_padding(labels, y0, x0, 32, IGNORE_LABEL) != IGNORE_LABEL) >= 0.5
    # a band thinner than half the patch: no patch is half trainable; the centres then give at least half the best
    # share any patch can have (6 of 32 rows), not any trainable pixel's
    band = np.full((64, 64), IGNORE_LABEL, np.uint8)
    band[20:26] = 0
    for _ in range(100):
        y0, x0 = crop_box(band, 32, rng, 0.0)
        assert np.mean(crop_with_padding(band, y0, x0, 32, IGNORE_LABEL) != IGNORE_LABEL) >= 0.5 * 6 / 32


def test_fair_slices_leave_out_the_slivers_at_a_slab_edge():
    labels = np.full((5, 40, 40), IGNORE_LABEL, np.uint8)
    labels[0, 0:2] = 0  # a sliver: a 32 px patch holds at most 2 rows
    labels[1:4, 10:30] = 0
    labels[4, 38:] = 0
    slices, min_share = fair_slices(labels, 32)
    assert slices == [1, 2, 3] and min_share == pytest.approx(0.5 * 20 / 32)
    assert fair_slices(np.full((2, 8, 8), IGNORE_LABEL, np.uint8), 4) == ([], 0.0)


def test_patches_of_a_thin_tilted_phantom_are_never_almost_all_ignored(tmp_path, monkeypatch):
    """4 slices of 40 x 40 turned 40 degrees, random-centre 32 px patches: 12-14 % were at least 90 % ignored (the
    first and last slices of the aligned grid hold a band of 2 trainable rows; 14 % of these 300), none now; over
    1000 patches the mean ignored share fell from 0.70 to 0.63."""
    monkeypatch.setattr(oblique, "SHAPE_ZYX", (4, 40, 40))
    case, _ = oblique._case(tmp_path / "data", 40.0)
    preprocessor = SlicePreprocessor(oblique._config())
    (cached,) = build_slice_cache([case], preprocessor, tmp_path / "cache")
    dataset = PatchDataset([cached], preprocessor, patch_size=32, seed=0, liver_slice_fraction=0.0)
    shares = np.array([float(np.mean(dataset.sample_arrays(i)[1] == IGNORE_LABEL)) for i in range(300)])
    assert np.mean(shares >= 0.9) == 0.0
