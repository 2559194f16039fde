"""Synthetic metal artefacts (training augmentation): projection, FBP, the physics of the artefact, placement."""
import numpy as np
import pytest

from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.training import metal_artifacts as metal
from LiverTumorSegLib.training.augmentation import AugmentationConfig, SliceAugmenter
from seeding import test_seed

ANGLES = np.arange(360) * np.pi / 360


def test_projection_of_a_disk_is_its_chord_length():
    """A disk of radius 10 mm at 0.5 mm pixels: the path through it at ray offset s is 2 sqrt(R^2 - s^2) mm."""
    coverage = metal.metal_objects_mask((96, 96), 0.5, [(0.0, 0.0, 10.0, 10.0, 0.0)], supersample=4)
    assert coverage.sum() * 0.25 == pytest.approx(np.pi * 100.0, rel=0.01)  # area in mm^2
    sino = metal.metal_projection(coverage, 0.5, ANGLES)
    centre = (sino.shape[1] - 1) // 2  # bins 1 px = 0.5 mm apart, centred on the image's centre
    for offset_px, expected_mm in [(0, 20.0), (10, 2 * np.sqrt(100.0 - 25.0)), (16, 2 * np.sqrt(100.0 - 64.0))]:
        assert sino[:, centre + offset_px].mean() == pytest.approx(expected_mm, rel=0.03)
        assert sino[:, centre + offset_px].std() < 0.03 * expected_mm  # the same from every direction
    assert sino[:, centre + 22:].max() == 0.0  # beyond the disk (11 mm out, half a pixel of splatting)


def test_ramp_filter_is_the_ram_lak_convolution():
    """The FFT filter equals a direct convolution with Kak and Slaney's kernel (1/4 at 0, -1/(pi n)^2 at odd n)."""
    rng = np.random.default_rng(test_seed())
    sino = rng.normal(size=(3, 40))
    n = np.arange(-39, 40)
    kernel = np.zeros(n.size)
    kernel[n == 0] = 0.25
    odd = n % 2 == 1
    kernel[odd] = -1.0 / (np.pi * n[odd]) ** 2
    direct = np.stack([np.convolve(row, kernel, mode="full")[39:79] for row in sino])
    np.testing.assert_allclose(metal.ramp_filter(sino), direct, atol=1e-10)


def test_filtered_back_projection_inverts_the_projection_of_a_disk():
    coverage = metal.metal_objects_mask((128, 128), 1.0, [(0.0, 0.0, 20.0, 20.0, 0.0)], supersample=4)
    image = metal.filtered_back_projection(metal.metal_projection(coverage, 1.0, ANGLES), ANGLES, 128)
    assert image[54:74, 54:74].mean() == pytest.approx(1.0, abs=0.02)   # inside: the disk's value
    assert abs(image[:20, :20].mean()) < 0.01 and abs(image[-20:, -20:].mean()) < 0.01  # outside: nothing


def test_metal_mask_tests_each_ellipse_only_near_it_and_finds_every_covered_sample():
    """The coverage is tested only on the samples of the square around each ellipse (its longer semi-axis and a
    pixel more each way): the same map, sample for sample, as testing every sample of the image, here for thin,
    turned, overlapping ellipses and one that reaches past the image's corner."""
    ellipses = [(0.0, 0.0, 10.0, 0.5, 0.3), (-7.0, 12.0, 2.0, 6.0, 2.6), (-3.0, 10.5, 4.0, 4.0, 0.0),
                (33.0, -33.0, 9.0, 3.0, 2.356)]
    k, pixel_mm, n = 4, 1.5, 48
    sub = (np.arange(k) + 0.5) / k - 0.5
    axis = ((np.arange(n) - 0.5 * (n - 1))[:, None] + sub[None, :]).ravel() * pixel_mm  # every sample, mm
    inside = np.zeros((axis.size, axis.size), dtype=bool)
    for cy, cx, a, b, angle in ellipses:
        dy, dx = axis[:, None] - cy, axis[None, :] - cx
        along, across = dy * np.cos(angle) + dx * np.sin(angle), -dy * np.sin(angle) + dx * np.cos(angle)
        inside |= (along / a) ** 2 + (across / b) ** 2 <= 1.0
    expected = inside.reshape(n, k, n, k).mean(axis=(1, 3)).astype(np.float32)
    coverage = metal.metal_objects_mask((n, n), pixel_mm, ellipses, supersample=k)
    np.testing.assert_array_equal(coverage, expected)
    assert coverage[-1, 0] > 0 and 0 < coverage.mean() < 0.2  # the corner ellipse is in, most of the image not


def test_filtered_back_projection_interpolates_each_filtered_view_at_the_ray_through_each_pixel():
    """Against a direct back-projection (np.interp of each ramp-filtered view at ``x cos + y sin`` from the centre,
    clamped to the detector) of a random sinogram: the same to float32 rounding."""
    rng = np.random.default_rng(test_seed())
    angles = np.arange(30) * np.pi / 30
    size, nbins = 40, 61
    sinogram = rng.normal(size=(angles.size, nbins))
    filtered = metal.ramp_filter(sinogram)
    axis = np.arange(size) - 0.5 * (size - 1)
    expected = np.zeros((size, size))
    for view, theta in enumerate(angles):
        s = np.clip(axis[None, :] * np.cos(theta) + axis[:, None] * np.sin(theta) + 0.5 * (nbins - 1), 0.0,
                    nbins - 1.001)
        expected += np.interp(s, np.arange(nbins), filtered[view])
    expected *= np.pi / angles.size
    image = metal.filtered_back_projection(sinogram, angles, size)
    assert image.dtype == np.float32 and image.shape == (size, size)
    np.testing.assert_allclose(image, expected, rtol=0, atol=2e-5 * np.abs(expected).max())


def _angular_profile(image, pixel_mm, ring_mm=(20.0, 30.0), sectors=72):
    """Mean of ``image`` in each of ``sectors`` angular sectors of the ring around its centre."""
    n = image.shape[0]
    axis = (np.arange(n) - 0.5 * (n - 1)) * pixel_mm
    r = np.hypot(axis[:, None], axis[None, :])
    angle = np.arctan2(axis[:, None], axis[None, :])
    ring = (r >= ring_mm[0]) & (r <= ring_mm[1])
    sector = np.minimum(((angle[ring] + np.pi) / (2 * np.pi) * sectors).astype(int), sectors - 1)
    return np.bincount(sector, weights=image[ring], minlength=sectors) / np.bincount(sector, minlength=sectors)


def test_an_elongated_piece_of_metal_streaks_darkest_along_its_long_axis():
    """Beam hardening underestimates the longest paths most: the dark streak runs along the bar (here along y).
    The bar's artefact (unit ring RMS, no noise) reaches its darkest mean along +-y, and far darker than across."""
    rng = np.random.default_rng(test_seed())
    artefact, _ = metal.artifact_from_ellipses([(0.0, 0.0, 8.0, 1.5, 0.0)], 1.0, 0.0, rng, size_px=256)
    assert metal.ring_rms(artefact, 1.0) == pytest.approx(1.0, rel=1e-5)
    profile = _angular_profile(artefact, 1.0)  # sector k spans angle -pi + k * 5 degrees; +y (rows) is +90 deg
    along_y = profile[[17, 18, 53, 54]].mean()     # -90 and +90 degrees
    across = profile[[0, 35, 36, 71]].mean()       # 180 and 0 degrees: along x
    assert along_y < -2.0 and along_y < across - 2.0
    assert int(np.argmin(profile)) in (17, 18, 53, 54)


def test_two_pieces_of_metal_darken_the_line_between_them():
    """The classic beam-hardening band: two disks 30 mm apart, no noise; the midpoint between them is much darker
    than points as far from it across the line."""
    rng = np.random.default_rng(test_seed())
    artefact, coverage = metal.artifact_from_ellipses([(0.0, -15.0, 3.0, 3.0, 0.0), (0.0, 15.0, 3.0, 3.0, 0.0)],
                                                      1.0, 0.0, rng, size_px=256)
    c = 127  # (256 - 1) / 2 = 127.5: pixels 125..129 around the midpoint
    midpoint = artefact[c - 2:c + 3, c - 2:c + 3].mean()
    across = 0.5 * (artefact[c + 13:c + 18, c - 2:c + 3].mean() + artefact[c - 17:c - 12, c - 2:c + 3].mean())
    assert midpoint < -0.5 and midpoint < across - 0.5
    assert coverage[c, c - 15 + 1] > 0.9 and coverage[c, c] == 0.0  # the disks where they were asked for


def test_templates_are_made_from_their_index_alone():
    first = metal.artifact_template(5, 1.5)
    metal._TEMPLATES.clear()
    again = metal.artifact_template(5, 1.5)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert first[0].shape == (metal.TEMPLATE_SIZE_PX,) * 2
    from scipy.ndimage import binary_dilation

    near_metal = binary_dilation(first[1] > 0, iterations=1)
    assert metal.ring_rms(first[0], 1.5, exclude_yx=near_metal) == pytest.approx(1.0, rel=1e-4)
    assert first[1].sum() > 0  # some metal
    assert not np.array_equal(first[0], metal.artifact_template(6, 1.5)[0])


def _phantom(size=160, t=3):
    """A body disk of 40 HU (radius 70 px) with a 'liver' (label 1, 60 HU), a bone block (700 HU) behind it,
    air around and a corner of -2000 HU padding."""
    yy, xx = np.mgrid[:size, :size]
    hu = np.full((t, size, size), -1000.0, dtype=np.float32)
    body = (yy - 80) ** 2 + (xx - 80) ** 2 <= 70 ** 2
    hu[:, body] = 40.0
    labels = np.zeros((t, size, size), dtype=np.uint8)
    labels[:, 50:90, 40:80] = 1
    hu[:, 50:90, 40:80] = 60.0
    hu[:, 110:125, 72:88] = 700.0
    hu[:, :12, :12] = -2000.0
    return hu, labels


@pytest.mark.parametrize("offset", range(4))
def test_metal_is_placed_in_the_middle_with_its_artefact_at_the_drawn_strength(offset):
    hu, labels = _phantom()
    out, drawn = metal.add_metal_artifact(hu, labels, np.random.default_rng(test_seed(offset)), 1.5, (40.0, 120.0))
    cy, cx = drawn["centre_yx"]
    assert 32 <= cy < 128 and 32 <= cx < 128  # the central 60 %
    assert drawn["placed_at"] in ("bone", "liver", "body")
    assert 40.0 <= drawn["rms_hu"] <= 120.0 and drawn["slice_strengths"][1] == 1.0
    centre = out[1]
    assert centre[cy, cx] == metal.METAL_HU or np.any(centre[max(0, cy - 2):cy + 3, max(0, cx - 2):cx + 3]
                                                      == metal.METAL_HU)
    np.testing.assert_array_equal(out[:, :12, :12], hu[:, :12, :12])  # padding untouched
    scanned = hu >= -1500.0
    assert out[scanned].min() >= -1024.0 and out.max() <= metal.METAL_HU
    for z, strength in enumerate(drawn["slice_strengths"]):
        if strength == 0.0:
            np.testing.assert_array_equal(out[z], hu[z])


@pytest.mark.parametrize("offset", range(4))
def test_the_artefact_has_the_drawn_strength_over_the_ring_around_the_metal(offset):
    """On soft tissue filling the image (nothing clipped, the ring inside the image) the change over the ring
    15-40 mm around the metal, less the pixels of further pieces of metal in it, has the drawn root-mean-square
    value (the template's unit ring, its centre half a pixel from the metal's pixel)."""
    hu = np.full((3, 160, 160), 40.0, dtype=np.float32)
    labels = np.zeros((3, 160, 160), dtype=np.uint8)
    labels[:, 60:100, 60:100] = 1
    out, drawn = metal.add_metal_artifact(hu, labels, np.random.default_rng(test_seed(offset)), 1.5, (30.0, 50.0))
    cy, cx = drawn["centre_yx"]
    yy, xx = np.mgrid[:160, :160]
    r_mm = np.hypot(yy - cy, xx - cx) * 1.5
    ring = (r_mm >= 15.0) & (r_mm <= 40.0)
    assert ring.sum() > 0.95 * np.pi * ((40 / 1.5) ** 2 - (15 / 1.5) ** 2)  # the whole ring inside the image
    from scipy.ndimage import binary_dilation

    ring &= ~binary_dilation(out[1] == metal.METAL_HU, iterations=2)  # the metal and the pixels beside it
    rms = np.sqrt(np.mean((out[1] - hu[1])[ring].astype(float) ** 2))
    assert 0.75 * drawn["rms_hu"] < rms < 1.3 * drawn["rms_hu"]


def test_metal_placement_is_reproducible_from_the_generator():
    hu, labels = _phantom()
    a, drawn_a = metal.add_metal_artifact(hu, labels, np.random.default_rng(test_seed()), 1.5, (20.0, 200.0))
    b, drawn_b = metal.add_metal_artifact(hu, labels, np.random.default_rng(test_seed()), 1.5, (20.0, 200.0))
    np.testing.assert_array_equal(a, b)
    assert drawn_a == drawn_b


def test_metal_goes_on_bone_near_the_liver_or_in_the_body_in_about_the_documented_shares():
    hu, labels = _phantom()
    rng = np.random.default_rng(test_seed())
    kinds = []
    for _ in range(200):
        kinds.append(metal._pick_metal_centre(hu[1], labels[1], rng, 1.5, (32, 128, 32, 128))[2])
    shares = {k: kinds.count(k) / 200.0 for k in ("bone", "liver", "body")}
    assert abs(shares["bone"] - 0.4) < 0.12 and abs(shares["liver"] - 0.35) < 0.12 and abs(shares["body"] - 0.25) < 0.12


def test_the_augmenter_adds_metal_when_asked_and_keeps_the_labels():
    hu, labels = _phantom()
    cfg = AugmentationConfig.disabled()
    cfg.metal_artifact_probability = 1.0
    cfg.validate()
    out_hu, out_lab = SliceAugmenter(cfg, pixel_spacing_mm=1.5)(hu, labels, np.random.default_rng(test_seed()))
    np.testing.assert_array_equal(out_lab, labels)
    assert (out_hu[1] == metal.METAL_HU).any() and not np.array_equal(out_hu, hu)
    off = AugmentationConfig.disabled()
    same_hu, _ = SliceAugmenter(off, pixel_spacing_mm=1.5)(hu, labels, np.random.default_rng(test_seed()))
    np.testing.assert_array_equal(same_hu, hu)


@pytest.mark.parametrize("value", [(0.0, 100.0), (-5.0, 10.0), (50.0, 20.0)])
def test_metal_artifact_strength_must_be_a_positive_range(value):
    with pytest.raises(InputError, match="metal_artifact_rms_hu"):
        AugmentationConfig(metal_artifact_rms_hu=value).validate()


def test_add_metal_artifact_needs_a_stack():
    with pytest.raises(InputError, match="HU stack"):
        metal.add_metal_artifact(np.zeros((16, 16), np.float32), np.zeros((16, 16), np.uint8),
                                 np.random.default_rng(0), 1.5, (20.0, 200.0))


def test_metal_lands_in_the_training_patch_that_the_dataset_cuts(tmp_path):
    """Through :class:`PatchDataset`: the metal is placed in the work region's central 60 %, where the patch is cut
    from, so the patch's centre slice holds metal (or its streaks: values far from the phantom's 40 / 60 HU) in
    nearly every sample, and the patch's label is the phantom's."""
    from LiverTumorSegLib.training.sampling import PatchDataset
    from LiverTumorSegLib.training.slice_cache import CachedCase

    hu = np.full((3, 96, 96), 40.0, np.float32)
    labels = np.zeros((3, 96, 96), np.uint8)
    hu[:, 24:72, 24:72], labels[:, 24:72, 24:72] = 60.0, 1
    np.save(tmp_path / "hu.npy", hu)
    np.save(tmp_path / "lab.npy", labels)
    case = CachedCase("c", "p", str(tmp_path / "hu.npy"), str(tmp_path / "lab.npy"), (3.0, 1.5, 1.5),
                      (3.0, 1.5, 1.5), [1], [], 3)

    class Preprocessor:  # only the context (size, adjacent slices) and the whole slices' statistics (none) are read
        config = type("C", (), {"context_slices": 1, "context_offset": lambda self, spacing: 1.0})()

        def slice_statistics(self, hu, spacing_yx):
            return None

    config = AugmentationConfig.disabled()
    config.metal_artifact_probability = 1.0
    dataset = PatchDataset([case], Preprocessor(), patch_size=48, seed=test_seed(), liver_slice_fraction=1.0,
                           augmenter=SliceAugmenter(config, pixel_spacing_mm=1.5))
    with_metal = streaked = 0
    for index in range(15):  # 94 % of samples hold metal over seeds 0-59 (10 samples and >= 7: 6 at seed 58)
        patch, label = dataset.sample_arrays(index)
        assert patch.shape == (3, 48, 48) and label.shape == (48, 48)
        with_metal += int((patch[1] == metal.METAL_HU).any())
        streaked += int(np.mean(np.abs(patch[1] - 50.0) > 15.0) > 0.1)
        assert set(np.unique(label)) <= {0, 1}
    assert with_metal >= 10 and streaked >= 12  # expected about 14.1 and 15; P(< 10 of 15 at 94 %) ~ 1e-4


def test_templates_kept_per_process_are_bounded_least_recently_used_first(monkeypatch):
    """Templates were kept per pixel size without a limit: with a preset that gives each case its own pixel size, a
    loader worker kept up to 48 x (number of spacings) templates of about 1.6 MB (about 4 GB for 50 spacings)."""
    made = []

    def cheap(ellipses, pixel_mm, noise_weight, rng):  # the template build (about 1 s), stood in for
        made.append(pixel_mm)
        return np.full((2, 2), pixel_mm, np.float32), np.zeros((2, 2), np.float32)

    monkeypatch.setattr(metal, "artifact_from_ellipses", cheap)
    monkeypatch.setattr(metal, "MAX_TEMPLATES_KEPT", 3)
    monkeypatch.setattr(metal, "_TEMPLATES", metal.collections.OrderedDict())
    for pixel_mm in (0.7, 0.8, 0.9):
        metal.artifact_template(0, pixel_mm)
    metal.artifact_template(0, 0.7)             # used again: kept, the 0.8 one is now the oldest
    metal.artifact_template(0, 1.0)             # a fourth: the least recently used (0.8) is dropped
    assert sorted(key[1] for key in metal._TEMPLATES) == [0.7, 0.9, 1.0]
    assert made == [0.7, 0.8, 0.9, 1.0]
    assert metal.artifact_template(0, 0.8)[0][0, 0] == np.float32(0.8) and made[-1] == 0.8  # made again, the same
