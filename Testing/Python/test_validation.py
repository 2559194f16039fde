"""Tests for LiverTumorSegLib.validation: CT sanity checks and memory checks. Arrays are (z, y, x)."""
import sys
from pathlib import Path

import numpy as np
import pytest

from LiverTumorSegLib.errors import InputError, ResourceError
from LiverTumorSegLib.io import read_volume
from LiverTumorSegLib.phantom import make_phantom
from LiverTumorSegLib.validation import (available_memory_bytes, check_ct, check_memory, estimate_memory_bytes,
                                         label_map_description, not_hu_reason)
from LiverTumorSegLib.volume import CTVolume, ImageGeometry

DATA = Path(__file__).resolve().parents[1] / "Data"


def phantom_ct(**kwargs) -> CTVolume:
    args = dict(shape_zyx=(6, 40, 40), spacing_xyz=(2.0, 2.0, 4.0), seed=0)
    args.update(kwargs)
    return make_phantom(**args).ct


def with_array(volume: CTVolume, array: np.ndarray) -> CTVolume:
    return CTVolume(array=array, geometry=volume.geometry, source="test.nii.gz")


def with_spacing(volume: CTVolume, spacing) -> CTVolume:
    """``volume`` with ``spacing`` (x, y, z) mm, set past ImageGeometry's own check (which refuses zero, negative
    and NaN spacing), so the tests show that check_ct refuses such a volume however its geometry was built."""
    geometry = ImageGeometry(spacing=(1.0, 1.0, 1.0))
    object.__setattr__(geometry, "spacing", tuple(float(s) for s in spacing))
    return CTVolume(array=volume.array, geometry=geometry, source="test.nii.gz")


def test_phantom_and_real_ct_pass_without_warnings():
    assert check_ct(phantom_ct()) == []
    real = read_volume(DATA / "ct3slice_ct.nii.gz")  # GE CT with -3024 outside the field of view
    assert real.array.min() == -3024
    assert check_ct(real) == []
    assert check_ct(read_volume(DATA / "example_ct_sm.nii.gz")) == []


@pytest.mark.parametrize("pad", [-3024, -2048, -2000, -32768])
def test_scanner_padding_outside_the_field_of_view_is_accepted(pad):
    ct = phantom_ct()
    arr = ct.array.copy()
    arr[:, :5, :] = pad
    assert check_ct(with_array(ct, arr)) == []


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_fatal(bad):
    arr = phantom_ct().array.astype(np.float32)
    arr[1, 2, 3] = bad
    arr[2, 2, 3] = bad
    with pytest.raises(InputError, match="has 2 NaN/Inf voxels"):
        check_ct(with_array(phantom_ct(), arr))


def test_constant_volume_is_fatal():
    with pytest.raises(InputError, match=r"is constant \(every voxel is -1000\)"):
        check_ct(with_array(phantom_ct(), np.full((6, 40, 40), -1000, np.int16)))


@pytest.mark.parametrize("scale,words", [
    (lambda hu: (hu + 1024.0) / 4095.0, "within 0..1"),
    (lambda hu: np.clip((hu + 160.0) / 400.0 * 255.0, 0, 255).round(), "within 0..255"),
    (lambda hu: (hu - hu.mean()) / hu.std(), "like z-scored"),
    (lambda hu: (hu + 1000.0) * 1.5, "no air near -1000 HU"),  # MR-like; + 1024 is a raw CT (named as one below)
])
def test_non_hu_intensities_are_fatal_unless_allowed(scale, words):
    ct = phantom_ct()
    arr = scale(ct.array.astype(np.float32)).astype(np.float32)
    vol = with_array(ct, arr)
    with pytest.raises(InputError) as err:
        check_ct(vol)
    msg = str(err.value)
    assert words in msg and "pre-normalised/not CT" in msg and "allow_non_hu=True" in msg  # a library call names the argument
    warnings = check_ct(vol, allow_non_hu=True)
    assert len(warnings) == 1 and words in warnings[0]


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_a_label_map_given_as_the_ct_is_called_a_label_map_without_offering_allow_non_hu(dtype):
    """A label map (0/1/2) given as the CT was refused as 'pre-normalised/not CT' with the advice to pass
    allow_non_hu, which then segmented it into nonsense. It is a segmentation, not a CT in other units."""
    labels = make_phantom(shape_zyx=(6, 40, 40), spacing_xyz=(2.0, 2.0, 4.0), seed=0).labels
    assert set(np.unique(labels)) == {0, 1, 2}
    volume = with_array(phantom_ct(), labels.astype(dtype))
    with pytest.raises(InputError) as err:
        check_ct(volume)
    message = str(err.value)
    assert "looks like a label map" in message and "(0, 1, 2)" in message, message
    assert "allow_non_hu" not in message and "pre-normalised" not in message, message
    warnings = check_ct(volume, allow_non_hu=True)  # measure --ct and followup read a CT so: warned in these words
    assert len(warnings) == 1 and "looks like a label map" in warnings[0]
    assert "label map" in not_hu_reason(volume)  # segment's 'rules that read HU were skipped' names it too


@pytest.mark.parametrize("name", ["ct3slice_ct.nii.gz", "example_ct_sm.nii.gz", "ct3slice_liver_seg.nii.gz",
                                  "example_ct_sm_liver.nii.gz"])
def test_real_cts_and_their_8_bit_exports_are_not_label_maps_and_their_label_maps_are(name):
    """The label-map wording is for segmentations only: a real CT, or one windowed to 8 bits (80 and 400 HU
    windows: 81 and 256 values), still gets the 'not Hounsfield units' message that offers allow_non_hu."""
    volume = read_volume(DATA / name)
    if "liver" in name:
        assert label_map_description(volume.array) is not None
        return
    assert label_map_description(volume.array) is None
    for low, high in ((-160.0, 240.0), (0.0, 80.0)):
        picture = np.clip(np.round((volume.array.astype(np.float32) - low) / (high - low) * 255), 0, 255)
        assert label_map_description(picture.astype(np.uint8)) is None
        with pytest.raises(InputError, match=r"within 0\.\.255.*allow_non_hu=True"):
            check_ct(with_array(volume, picture.astype(np.uint8)))


def test_values_with_fractions_or_mostly_nonzero_are_not_a_label_map():
    labels = make_phantom(shape_zyx=(6, 40, 40), spacing_xyz=(2.0, 2.0, 4.0), seed=0).labels
    assert label_map_description(labels.astype(np.float32) * 0.5) is None  # 0, 0.5, 1: not whole values
    assert label_map_description(labels + 1) is None  # no background 0
    assert label_map_description(np.arange(6 * 40 * 40).reshape(6, 40, 40) % 60) is None  # 60 values


@pytest.mark.parametrize("name", ["ct3slice_ct.nii.gz", "example_ct_sm.nii.gz"])
def test_real_ct_stored_without_its_rescale_intercept_is_refused_unless_allowed(name):
    """The real CTs + 1024: GE's -3024 padding becomes -2000 and TotalSegmentator's -1100 becomes -76, so the
    minimum stays negative and the range test alone let them through (the 3-slice CT got 4 false lesions)."""
    real = read_volume(DATA / name)
    shifted = with_array(real, real.array.astype(np.int32) + 1024)
    with pytest.raises(InputError, match=r"over 700.*shifted by about \+1024.*rescale intercept.*allow_non_hu=True"):
        check_ct(shifted)
    warnings = check_ct(shifted, allow_non_hu=True)
    assert len(warnings) == 1 and "going on because non-HU input was allowed" in warnings[0]


@pytest.mark.parametrize("name", ["ct3slice_ct.nii.gz", "example_ct_sm.nii.gz"])
def test_a_raw_ct_of_values_0_to_4095_is_named_as_stored_without_its_intercept(name):
    """A real CT stored without its rescale intercept and with its padding at 0 (HU + 1024 in 0..4095, as a tool
    that dropped RescaleIntercept -1024 writes it) was refused as 'pre-normalised/not CT'; its air near 0 and its fat
    and soft tissue near 874..1124 say what it is, and the error says how to read it (HU = stored - 1024). The
    values are not shifted by the check. The phantom's MR-like contrast (x 1.5) keeps the generic message."""
    real = read_volume(DATA / name)
    raw = with_array(real, np.clip(real.array.astype(np.int32) + 1024, 0, 4095).astype(np.uint16))
    with pytest.raises(InputError) as err:
        check_ct(raw)
    message = str(err.value)
    assert "all values >= 0" in message and "shifted by about +1024" in message, message
    assert "stored without its rescale intercept (HU = stored - 1024)" in message and "re-export it" in message
    assert "pre-normalised" not in message, message
    assert "shifted by about +1024" in not_hu_reason(raw)  # segment, measure, followup: the same reason
    assert int(raw.array.min()) == 0  # judged, not changed
    mr_like = with_array(real, ((np.clip(real.array.astype(np.int32), -1000, None) + 1000) * 3 // 2).astype(np.int16))
    with pytest.raises(InputError, match=r"MR, or CT stored without its rescale intercept\); it looks pre-normalised"):
        check_ct(mr_like)


@pytest.mark.parametrize("name", ["ct3slice_ct.nii.gz", "example_ct_sm.nii.gz"])
def test_a_raw_ct_with_some_air_like_voxels_and_a_doubly_shifted_ct_are_refused(name):
    """A raw (+1024) CT passed once a single voxel lay between -1200 and -500 (the interpolated edge of its
    padding after a resample): it got a 4.6 L 'liver' with 7 'tumors'. A CT with the intercept applied twice
    (-1024: soft tissue near -970) was not caught at all (a 29 mL 'liver')."""
    real = read_volume(DATA / name)
    raw = real.array.astype(np.int32) + 1024
    raw[:, 0, :] = -800  # a row of interpolated padding edge
    with pytest.raises(InputError, match=r"shifted by about \+1024"):
        check_ct(with_array(real, raw))
    twice = np.maximum(real.array.astype(np.int32) - 1024, -2048)
    with pytest.raises(InputError, match=r"soft tissue .* shifted by about -1024, i.e. the rescale intercept was "
                                         r"applied twice.*allow_non_hu=True"):
        check_ct(with_array(real, twice))
    assert len(check_ct(with_array(real, twice), allow_non_hu=True)) == 1
    assert not any("shifted" in w for w in check_ct(real))  # the real CT itself passes


@pytest.mark.parametrize("name", ["ct3slice_ct.nii.gz", "example_ct_sm.nii.gz"])
@pytest.mark.parametrize("factor, words", [(10.0, "rescale slope missing or applied twice"),
                                           (4.0, "rescale slope missing or applied twice"),
                                           (2.0, "rescale slope missing or applied twice"),
                                           (0.5, "multiplied by about 0.5")])
def test_a_ct_whose_values_are_scaled_is_refused(name, factor, words):
    """HU x 10 / x 4 (air among the padding values, but with many values) and x 0.5 (air at -500) passed every
    check: the sample x 10 got a 780 mL liver with 2 false tumors, x 4 was blamed on a head-foot flip, x 0.5 got 3
    false tumors. Real padding (one value: -3024 in ct3slice) stays unscaled, as a converter leaves it."""
    real = read_volume(DATA / name)
    arr = real.array.astype(np.float32)
    padding = arr <= -3024
    scaled = np.where(padding, arr, arr * factor)
    with pytest.raises(InputError, match=rf"Hounsfield units .*{words}.*allow_non_hu=True"):
        check_ct(with_array(real, scaled))
    assert len(check_ct(with_array(real, scaled), allow_non_hu=True)) == 1


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.uint16, np.uint8])
def test_kth_smallest_by_counting_is_the_partition_value(dtype):
    """The scaled-values check ranks an integer CT's sample by counting each value (np.partition on a 300 x 512 x
    512 CT's sample took 0.15 s of check_ct's 0.18 s): the same value as np.partition, ties and extremes included."""
    from LiverTumorSegLib.validation import _kth_smallest

    rng = np.random.default_rng(0)
    info = np.iinfo(dtype)
    for trial in range(20):
        size = int(rng.integers(1, 3000))
        if trial % 2:
            ints = rng.integers(info.min, info.max, size, endpoint=True)
        else:  # a CT's: many ties at one air / padding value
            ints = np.where(rng.random(size) < 0.4, -1024, rng.integers(-1024, 3000, size))
        values = np.clip(ints, info.min, info.max).astype(dtype).astype(np.float32)
        for k in (0, size // 20, size // 2, size - 1):
            assert _kth_smallest(values, k, whole=True) == float(np.partition(values, k)[k])
            assert _kth_smallest(values, k, whole=False) == float(np.partition(values, k)[k])


def test_an_integer_ct_is_checked_for_scaled_values_without_a_partial_sort(monkeypatch):
    """check_ct of an int16 CT counts its sample's values instead of np.partition (slow on a CT's many ties), and
    an int16 CT scaled by 0.5 is still refused, one scaled by 0.5 and stored as float32 too."""
    real = read_volume(DATA / "example_ct_sm.nii.gz")
    halved = np.round(real.array.astype(np.float32) * 0.5)
    partition = np.partition
    calls = []
    monkeypatch.setattr(np, "partition", lambda *a, **k: calls.append(1) or partition(*a, **k))
    assert check_ct(with_array(real, real.array.astype(np.int16))) == []
    with pytest.raises(InputError, match=r"multiplied by about 0.5"):
        check_ct(with_array(real, halved.astype(np.int16)))
    assert calls == []
    with pytest.raises(InputError, match=r"multiplied by about 0.5"):
        check_ct(with_array(real, halved))
    assert calls


def test_the_air_and_padding_looks_compare_an_integer_ct_in_its_own_type(monkeypatch):
    """The air look (a tight crop without air reads the whole CT) and the padding look compare an int16 CT with
    their HU bounds as int16 (threshold_for), not in float64: 0.057 -> 0.016 s CPU for the air look on a
    300 x 512 x 512 CT without air. The bounds stay as they were: [lo, hi] for air, (lo, hi) for padding."""
    from LiverTumorSegLib import validation
    from LiverTumorSegLib.inference import thresholds

    given = []
    original = thresholds.threshold_for
    monkeypatch.setattr(thresholds, "threshold_for", lambda a, v: given.append(original(a, v)) or given[-1])
    ct = np.full((20, 4, 4), 40, np.int16)
    assert not validation._has_values_in(ct, -1200.0, -500.0)
    assert given and all(g.dtype == np.int16 for g in given)
    for inside in (-1200, -500):
        ct[17, 1, 2] = inside
        assert validation._has_values_in(ct, -1200.0, -500.0)
    ct[17, 1, 2] = -499
    assert not validation._has_values_in(ct, -1200.0, -500.0)
    assert not validation._has_values_in(ct, -1200.0, -499.5)
    assert validation._has_values_in(ct, -1200.0, -498.5)  # a fractional bound: compared as the float
    padded = np.full((20, 4, 4), -3024, np.int16)
    padded[:, 0] = 100
    assert not validation._any_between(padded, -3024.0, 0.0)  # the bounds themselves are not between
    padded[19, 3, 3] = -3023
    assert validation._any_between(padded, -3024.0, 0.0)


@pytest.mark.parametrize("padding", [-2048.0, -3024.0, -32768.0])
def test_real_padding_and_a_lung_without_outside_air_are_not_taken_for_scaled_values(padding):
    real = read_volume(DATA / "example_ct_sm.nii.gz")
    arr = real.array.astype(np.float32)
    z, y, x = arr.shape
    yy, xx = np.mgrid[:y, :x]
    outside = ((yy - y / 2) / (y / 2)) ** 2 + ((xx - x / 2) / (x / 2)) ** 2 > 1.0  # a circular field of view
    arr[:, outside] = padding
    assert check_ct(with_array(real, arr)) == []
    # padding with noise on it (the robustness benchmark's noise rows; lossy compression) is still padding
    noisy = arr + np.random.default_rng(1).normal(0.0, 25.0, arr.shape).astype(np.float32)
    assert not any("multiplied" in w for w in check_ct(with_array(real, noisy)))
    # a crop with no air around the body, only broad lung-like values (-950..-600) beside soft tissue
    rng = np.random.default_rng(0)
    lung = rng.uniform(-950.0, -600.0, size=(z, y, x)).astype(np.float32)
    inside = np.where(arr > -500, arr, lung)
    assert not any("multiplied" in w for w in check_ct(with_array(real, inside)))


def test_a_tight_crop_without_air_only_warns():
    real = read_volume(DATA / "ct3slice_ct.nii.gz")
    z, y, x = real.array.shape
    crop = CTVolume(array=real.array[:, y // 2 - 12:y // 2 + 12, x // 2 - 12:x // 2 + 12].copy(),
                    geometry=real.geometry, source="crop.nii.gz")
    warnings = check_ct(crop)
    assert any("no air voxels" in w for w in warnings) and not any("shifted" in w for w in warnings)


@pytest.mark.parametrize("value", [1e33, -1e33, 80000.0])
def test_values_far_outside_any_hounsfield_range_are_refused(value):
    arr = phantom_ct().array.astype(np.float32)
    arr[1, 2, 3] = value
    with pytest.raises(InputError, match="far outside any Hounsfield range"):
        check_ct(with_array(phantom_ct(), arr))


@pytest.mark.parametrize("spacing", [(0.0, 1.0, 1.0), (1.0, -1.0, 1.0), (1.0, 1.0, float("nan")),
                                     (1.0, 1.0, 25.0), (21.0, 1.0, 1.0)])
def test_absurd_spacing_is_fatal(spacing):
    # zero, negative and NaN are refused where check_ct re-derives the canonical geometry (ImageGeometry's message)
    with pytest.raises(InputError, match="Voxel spacing must be three positive, finite sizes|over 20 mm"):
        check_ct(with_spacing(phantom_ct(), spacing))


def test_an_in_memory_direction_must_be_unit_perpendicular_axes():
    """The readers make unit, perpendicular axes; an ImageGeometry built by hand with the spacing folded into the
    direction, or with sheared axes, went through the API's checks (centroids 3x too far out on a 3 mm grid;
    a 20-degree shear moved a centroid 51 mm) while the same grid in a file is refused."""
    ct = make_phantom(shape_zyx=(6, 24, 24), seed=0).ct
    folded = ImageGeometry(spacing=(3.0, 3.0, 3.0), direction=(3.0, 0, 0, 0, 3.0, 0, 0, 0, 3.0))
    with pytest.raises(InputError, match="not unit vectors.*ImageGeometry.spacing"):
        check_ct(CTVolume(ct.array, folded, "folded"))
    shear = np.radians(20.0)
    sheared = ImageGeometry(spacing=(1.0, 1.0, 2.0), direction=(1, np.sin(shear), 0, 0, np.cos(shear), 0, 0, 0, 1))
    with pytest.raises(InputError, match="sheared"):
        check_ct(CTVolume(ct.array, sheared, "sheared"))
    rotated = ImageGeometry(spacing=(1.0, 1.0, 2.0), direction=(np.cos(0.3), -np.sin(0.3), 0, np.sin(0.3),
                                                                np.cos(0.3), 0, 0, 0, 1))
    check_ct(CTVolume(ct.array, rotated, "rotated"))  # an oblique but orthogonal grid is fine


def test_unusual_spacing_and_size_give_warnings():
    small = check_ct(with_spacing(phantom_ct(), (0.1, 0.1, 1.0)))
    assert len(small) == 1 and "very small voxel spacing" in small[0]
    thick = check_ct(with_spacing(phantom_ct(), (1.0, 1.0, 8.0)))
    assert len(thick) == 1 and "thick slices (8 mm)" in thick[0]
    tiny = check_ct(phantom_ct(shape_zyx=(6, 20, 40)))
    assert len(tiny) == 1 and "very small axial slices (20 x 40" in tiny[0]


def test_slices_of_exactly_6_mm_on_a_tilted_float32_header_are_not_called_thick():
    # a NIfTI header holds its axes in float32: 6 mm slices tilted 1 degree read 6.000000209 mm, and were called
    # 'thick slices (6 mm)', which the same slices untilted (6.0 mm) were not
    tilt = np.deg2rad(1.0)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(tilt), -np.sin(tilt)],
                               [0.0, np.sin(tilt), np.cos(tilt)]]) @ np.diag([1.0, 1.0, 6.0])
    geometry = ImageGeometry.from_ijk_to_ras(affine.astype(np.float32))
    assert geometry.spacing[2] > 6.0  # the float32 rounding is there
    assert not [w for w in check_ct(CTVolume(phantom_ct().array, geometry, "tilted")) if "thick" in w]


def test_shape_problems():
    ct = phantom_ct()
    with pytest.raises(InputError, match="is 2D"):
        check_ct(with_array(ct, ct.array[0]))
    with pytest.raises(InputError, match="is 4D"):
        check_ct(with_array(ct, ct.array[None]))
    with pytest.raises(InputError, match="is empty"):
        check_ct(with_array(ct, ct.array[:0]))
    with pytest.raises(InputError, match="line or a single voxel"):
        check_ct(with_array(ct, ct.array[:1, :1, :]))
    with pytest.raises(InputError, match="single sagittal or coronal slice"):
        check_ct(with_array(ct, ct.array[:, :, 20:21]))
    one = check_ct(with_array(ct, ct.array[3:4]))
    assert len(one) == 1 and "single axial slice" in one[0]
    # a single axial slice stored with index k along P is still an axial slice after canonicalization
    sideways = CTVolume(array=np.ascontiguousarray(ct.array[3:4].transpose(1, 0, 2)),
                        geometry=ImageGeometry(spacing=(2, 4, 2), direction=(1, 0, 0, 0, 0, 1, 0, 1, 0)))
    assert "single axial slice" in check_ct(sideways)[0]


def test_degenerate_direction_is_fatal():
    ct = phantom_ct()
    vol = CTVolume(array=ct.array, geometry=ImageGeometry(spacing=(1, 1, 1), direction=(1, 0, 0, 1, 0, 0, 0, 0, 1)))
    with pytest.raises(InputError, match="degenerate"):
        check_ct(vol)


def test_strongly_oblique_grid_warns_and_a_slightly_oblique_one_does_not():
    from scipy.spatial.transform import Rotation

    ct = phantom_ct()
    for degrees, warns in ((10.0, False), (19.0, False), (25.0, True), (30.0, True)):
        d = Rotation.from_euler("x", degrees, degrees=True).as_matrix()
        vol = CTVolume(array=ct.array, geometry=ImageGeometry(spacing=(2, 2, 4), direction=tuple(d.ravel())),
                       source="tilted.nii.gz")
        tilted = [w for w in check_ct(vol) if "tilted" in w]
        assert bool(tilted) == warns, (degrees, tilted)
        if warns:
            assert f"tilted {degrees:.0f} degrees" in tilted[0] and "Resample" in tilted[0]


def test_segment_says_it_resampled_an_oblique_grid_instead_of_asking_the_user_to():
    """segment gives the model an oblique CT on a patient-aligned grid (inference/axis_aligned.py): its warning said
    'the model reads the grid's slices as axial slices ... Resample it', which it no longer does."""
    from scipy.spatial.transform import Rotation

    ct = phantom_ct()
    for axis, degrees, warns in (("x", 10.0, False), ("x", 30.0, True), ("z", 25.0, True)):
        d = Rotation.from_euler(axis, degrees, degrees=True).as_matrix()
        vol = CTVolume(array=ct.array, geometry=ImageGeometry(spacing=(2, 2, 4), direction=tuple(d.ravel())),
                       source="tilted.nii.gz")
        said = [w for w in check_ct(vol, aligned_for_model=True) if "patient axes" in w or "head-foot" in w]
        assert bool(said) == warns, (axis, degrees, said)
        if warns:
            assert f"turned {degrees:.0f} degrees from the patient axes" in said[0]
            assert "patient-aligned grid" in said[0] and "network_grid" in said[0] and "Resample" not in said[0]
        others = [w for w in check_ct(vol) if "patient axes" not in w and "head-foot" not in w]
        assert [w for w in check_ct(vol, aligned_for_model=True) if w not in said] == others  # nothing else differs


def test_a_grid_turned_about_s_is_warned_about_as_an_in_plane_rotation_and_not_where_only_lesions_are_measured():
    """The lesion measurement audit: a CT turned 25 degrees about S (true axial slices) was told 'tilted 25 degrees
    ... the model reads the grid's slices as axial slices', which they are; and `measure --ct`, which runs no model
    and measures those axial slices correctly, repeated segment's advice to resample (which would only blur the
    lesions). Now segment says what the model sees (a rotated anatomy), measure says nothing, and a grid tilted
    about x keeps its warnings."""
    from scipy.spatial.transform import Rotation

    ct = phantom_ct()

    def volume(axis, degrees):
        d = Rotation.from_euler(axis, degrees, degrees=True).as_matrix()
        return CTVolume(array=ct.array, geometry=ImageGeometry(spacing=(2, 2, 4), direction=tuple(d.ravel())),
                        source="grid.nii.gz")

    turned = [w for w in check_ct(volume("z", 25.0)) if "degrees" in w]
    assert len(turned) == 1 and "turned 25 degrees about the head-foot axis: its slices are axial" in turned[0]
    assert "tilted" not in turned[0]
    assert [w for w in check_ct(volume("z", 25.0), for_model=False) if "degrees" in w] == []
    assert [w for w in check_ct(volume("z", 15.0)) if "degrees" in w] == []
    tilted = [w for w in check_ct(volume("x", 25.0)) if "degrees" in w]
    assert len(tilted) == 1 and "tilted 25 degrees from the patient axes; the model reads" in tilted[0]
    # tilted 18 degrees (under the limit) and turned 40 about S: the turn and the tilt, each as it is (helper-14's
    # read: "turned 43 degrees ... its slices are axial", the grid's whole obliquity and slices that are not axial)
    d = Rotation.from_euler("xz", [18.0, 40.0], degrees=True).as_matrix()  # tilted about x, then turned about S
    both = CTVolume(array=ct.array, geometry=ImageGeometry(spacing=(2, 2, 4), direction=tuple(d.ravel())),
                    source="grid.nii.gz")
    said = [w for w in check_ct(both) if "degrees" in w]
    assert len(said) == 1 and "turned 40 degrees about the head-foot axis: its slices are within 18 degrees of " \
        "axial" in said[0], said
    assert [w for w in check_ct(volume("z", 70.0)) if "degrees" in w] == []  # 70 about S: 20 from the other axis
    measured = [w for w in check_ct(volume("x", 25.0), for_model=False) if "degrees" in w]
    assert measured == ["'grid.nii.gz' is stored in slices tilted 25 degrees from the axial plane: the long and "
                        "short axes are measured in true axial planes through its voxels (each point takes the label "
                        "of the voxel it lies in), within about two voxels of the same lesion stored axial (up to "
                        "1.7 mm longer for a 30 mm lesion on 1 mm voxels tilted 45 degrees, with where the sampling "
                        "falls)."]


def test_missing_air_and_soft_tissue_warn():
    ct = phantom_ct()
    crop = ct.array[:, 10:30, 8:30].copy()  # inside the body
    crop[crop < -500] = 40  # no bowel gas either
    cropped = check_ct(with_array(ct, crop))
    assert any("no air voxels" in w for w in cropped)
    lung_only = np.where(ct.array > -500, -300, ct.array).astype(np.int16)
    assert any("no soft tissue" in w for w in check_ct(with_array(ct, lung_only)))


@pytest.mark.parametrize("low, high", [(-1000, -990), (-1067, -929), (-1000, -600)])
def test_a_volume_of_air_alone_is_refused_as_holding_no_body(low, high):
    """A volume of air (-1000..-990 HU) was refused as values 'like z-scored or rescaled data'; one of noisy air ran
    the network for a 0 mL liver. Nothing denser than air means no body, whatever the span."""
    ct = phantom_ct()
    air = np.full(ct.array.shape, low, dtype=np.int16)
    air[2, 3:6, 4:9] = high
    with pytest.raises(InputError) as refused:
        check_ct(with_array(ct, air))
    message = str(refused.value)
    assert "holds nothing denser than air" in message and "no body" in message and "z-scored" not in message
    assert check_ct(with_array(ct, air), allow_non_hu=True)   # let through, with a warning


@pytest.mark.parametrize("where", [0, 7, 8, 20])
def test_air_found_in_any_slice_chunk(where):
    """The air check reads a few slices at a time and stops early; air in only one slice (first, last of a
    chunk, first of the next, the last slice) is still found, and its absence still warns."""
    ct = phantom_ct()
    soft = np.full((21,) + ct.array.shape[1:], 40, dtype=np.int16)
    soft[:, 0, 0] = -300                                    # fat-to-tissue range: HU, but no air (-1200..-500)
    assert any("no air voxels" in w for w in check_ct(with_array(ct, soft)))
    soft[where, 3, 4] = -1000
    assert not any("no air voxels" in w for w in check_ct(with_array(ct, soft)))


def test_estimate_memory_bytes_known_answers():
    voxels = 10 * 20 * 30
    assert estimate_memory_bytes((10, 20, 30), overhead_bytes=0) == voxels * (2 * 2 + 4)
    assert estimate_memory_bytes((10, 20, 30), overhead_bytes=0, keep_probabilities=True,
                                 num_classes=3) == voxels * 20
    assert estimate_memory_bytes((10, 20, 30), input_itemsize=4, float_copies=1,
                                 overhead_bytes=100) == voxels * (8 + 4 + 4) + 100
    assert estimate_memory_bytes((10, 20, 30), input_itemsize=8, copy_itemsize=2,
                                 overhead_bytes=0) == voxels * (8 + 2 + 4)
    assert estimate_memory_bytes((512, 512, 1000)) - estimate_memory_bytes((1, 1, 1)) == (512 * 512 * 1000 - 1) * 8


def test_check_memory_raises_with_needed_and_available():
    with pytest.raises(ResourceError, match=r"needs about 3.0 GiB of memory but only 1.5 GiB is available"):
        check_memory(3 << 30, available_bytes=int(1.5 * (1 << 30)))
    assert check_memory(10, available_bytes=50) == 50


def test_available_memory_reads_meminfo_and_cgroup_limit(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000 kB\nMemFree:  100 kB\nMemAvailable:    2048 kB\n")
    no_cgroup = tmp_path / "none"
    assert available_memory_bytes(str(meminfo), str(no_cgroup)) == 2048 * 1024
    cgroup = tmp_path / "cg"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text("1000000\n")
    (cgroup / "memory.current").write_text("400000\n")
    assert available_memory_bytes(str(meminfo), str(cgroup)) == 600000
    (cgroup / "memory.max").write_text("max\n")
    assert available_memory_bytes(str(meminfo), str(cgroup)) == 2048 * 1024
    v1 = tmp_path / "v1"  # an older Docker host: cgroup v1's memory controller
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text("1500000\n")
    (v1 / "memory" / "memory.usage_in_bytes").write_text("500000\n")
    assert available_memory_bytes(str(meminfo), str(v1)) == 1000000
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    assert available_memory_bytes(str(meminfo), str(v1)) == 2048 * 1024
    real = available_memory_bytes()
    assert real is None or real > 0


def test_available_memory_counts_the_limit_of_the_process_own_cgroup(tmp_path, monkeypatch):
    """A process in a memory-limited cgroup below the hierarchy's root (a Slurm job with ConstrainRAMSpace, a
    systemd scope, a cgroup v1 sub-group) was told the machine's free memory: in an 800 MiB v1 group, segment of a
    512 x 512 x 300 CT passed the checks and was killed by the kernel (signal 9, no message). The process's own
    cgroup (/proc/self/cgroup) and those above it count, in v1 and v2, the tightest one wins, and the error says so."""
    from LiverTumorSegLib import validation

    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemAvailable:    {64 << 20} kB\n")  # 64 GiB free on the node
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    job = v1 / "memory" / "slurm" / "uid_1" / "job_7"
    job.mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # the root: no limit
    (v1 / "memory" / "memory.usage_in_bytes").write_text(f"{40 << 30}\n")
    (job / "memory.limit_in_bytes").write_text(f"{8 << 30}\n")
    (job / "memory.usage_in_bytes").write_text(f"{3 << 30}\n")
    own = tmp_path / "cgroup"
    own.write_text("12:cpu,cpuacct:/slurm/uid_1/job_7\n4:memory:/slurm/uid_1/job_7/step_0\n0::/\n")
    assert available_memory_bytes(str(meminfo), str(v1), own_cgroups_path=str(own)) == 5 << 30
    (job.parent / "memory.limit_in_bytes").write_text(f"{6 << 30}\n")  # the user's group is tighter still
    (job.parent / "memory.usage_in_bytes").write_text(f"{4 << 30}\n")
    assert available_memory_bytes(str(meminfo), str(v1), own_cgroups_path=str(own)) == 2 << 30
    scope = v2 / "system.slice" / "job.scope"  # cgroup v2: memory.max of the process's group
    scope.mkdir(parents=True)
    (scope / "memory.max").write_text(f"{4 << 30}\n")
    (scope / "memory.current").write_text(f"{1 << 30}\n")
    (v2 / "system.slice" / "memory.max").write_text("max\n")
    (v2 / "system.slice" / "memory.current").write_text(f"{9 << 30}\n")
    own.write_text("0::/system.slice/job.scope\n")
    assert available_memory_bytes(str(meminfo), str(v2), own_cgroups_path=str(own)) == 3 << 30
    own.write_text("0::/docker/0123abcd\n")  # a container sees its own group as the root: the root's files count
    (v2 / "memory.max").write_text(f"{2 << 30}\n")
    (v2 / "memory.current").write_text(f"{1 << 30}\n")
    assert available_memory_bytes(str(meminfo), str(v2), own_cgroups_path=str(own)) == 1 << 30
    assert available_memory_bytes(str(meminfo), str(v2), own_cgroups_path=str(tmp_path / "none")) == 1 << 30

    monkeypatch.setattr(validation.sys, "platform", "linux")  # the error names the limit and what to do
    monkeypatch.setattr(validation, "_meminfo_available", lambda path: 64 << 30)
    monkeypatch.setattr(validation, "_cgroup_available", lambda *args: 3 << 30)
    monkeypatch.setattr(validation, "address_space_room", lambda *args: None)
    with pytest.raises(ResourceError, match=r"needs about 10.0 GiB of memory but only 3.0 GiB is available under the "
                                            r"memory limit of this process's cgroup \(a batch job's, e.g. Slurm's "
                                            r"--mem, or a container's: ask for more memory there\)"):
        check_memory(10 << 30)


def test_available_memory_counts_the_address_space_limit(tmp_path, monkeypatch):
    """A process under 'ulimit -v 8G' (RLIMIT_AS, HPC login nodes, Slurm) on a node with 256 GiB free was told 256
    GiB were available and died with MemoryError; the room under the limit is the soft limit minus the address
    space already mapped (VmSize in /proc/self/statm)."""
    import os

    from LiverTumorSegLib import validation

    resource = pytest.importorskip("resource")  # not on Windows, which has no such limit
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemAvailable:    {256 << 20} kB\n")  # 256 GiB
    no_cgroup = tmp_path / "no_cgroup"
    statm = tmp_path / "statm"
    statm.write_text(f"{(1 << 30) // os.sysconf('SC_PAGE_SIZE')} 2000 1000 1 0 1500 0\n")  # 1 GiB mapped
    soft_limit = {"bytes": 8 << 30}
    real_getrlimit = resource.getrlimit
    monkeypatch.setattr(resource, "getrlimit", lambda which: (soft_limit["bytes"], resource.RLIM_INFINITY)
                        if which == resource.RLIMIT_AS else real_getrlimit(which))
    assert available_memory_bytes(str(meminfo), str(no_cgroup)) <= 8 << 30  # this process's own statm: was 256
    assert available_memory_bytes(str(meminfo), str(no_cgroup), str(statm)) == 7 << 30
    assert available_memory_bytes(str(meminfo), str(no_cgroup), str(tmp_path / "no_statm")) == 8 << 30
    soft_limit["bytes"] = 1 << 29  # already past it (mapped before the limit was lowered): nothing left
    assert available_memory_bytes(str(meminfo), str(no_cgroup), str(statm)) == 0
    soft_limit["bytes"] = resource.RLIM_INFINITY
    assert available_memory_bytes(str(meminfo), str(no_cgroup), str(statm)) == 256 << 30

    soft_limit["bytes"] = 8 << 30  # the error says which limit leaves so little, and what to do about it
    monkeypatch.setattr(validation.sys, "platform", "linux")
    monkeypatch.setattr(validation, "_meminfo_available", lambda path: 256 << 30)
    monkeypatch.setattr(validation, "_cgroup_available", lambda *args: None)
    monkeypatch.setattr(validation, "_mapped_bytes", lambda path: 1 << 30)
    with pytest.raises(ResourceError, match=r"needs about 10.0 GiB of memory but only 7.0 GiB is available under "
                                            r"this process's address-space limit \(ulimit -v: raise it"):
        check_memory(10 << 30)
    with pytest.raises(ResourceError, match=r"only 4.0 GiB is available; close other programs"):
        check_memory(10 << 30, available_bytes=4 << 30)  # a figure given by the caller: no word on the limit
    # the network-resolution check of segment (after the model is loaded, when most is mapped) says it too; it
    # told to check the voxel spacing or get a bigger machine
    from LiverTumorSegLib.preprocessing import PreprocessingConfig
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry
    monkeypatch.setattr(validation, "_mapped_bytes", lambda path: (8 << 30) - (1 << 20))  # 1 MiB left
    volume = CTVolume(array=np.zeros((20, 64, 64), np.int16), geometry=ImageGeometry(spacing=(0.8, 0.8, 2.5)))
    with pytest.raises(ResourceError, match=r"GiB is available under this process's address-space limit \(ulimit -v: "
                                            r"raise it.*; check the voxel spacing"):
        validation.check_network_memory(volume, PreprocessingConfig.preset("default"))
    monkeypatch.setitem(sys.modules, "resource", None)  # Windows: no resource module, no such limit
    assert validation.address_space_room(str(statm)) is None and available_memory_bytes() == 256 << 30


def test_network_memory_check_counts_what_is_still_to_be_allocated():
    """The CT is in memory when the check runs, so only the rest must fit in the available memory."""
    from LiverTumorSegLib.preprocessing import PreprocessingConfig
    from LiverTumorSegLib.validation import check_network_memory
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    volume = CTVolume(array=np.zeros((20, 64, 64), np.int16), geometry=ImageGeometry(spacing=(0.8, 0.8, 2.5)))
    config = PreprocessingConfig.preset("default")
    required = check_network_memory(volume, config, available_bytes=1 << 40)
    rest = required - volume.array.nbytes
    assert check_network_memory(volume, config, available_bytes=rest) == required
    with pytest.raises(ResourceError, match=f"needs about {rest / 2 ** 30:.1f} GiB .* beside the CT itself"):
        check_network_memory(volume, config, available_bytes=rest - 1)


def test_a_refusal_of_a_large_batch_names_the_batch_that_fits():
    """A batch of 256 slices asked 10 GiB where the default 8 asks 1.5 and the advice named cropping the CT and
    other machines, not the batch (the memory audit). Where the default batch fits, the refusal says so."""
    from LiverTumorSegLib.errors import cli_wording
    from LiverTumorSegLib.preprocessing import PreprocessingConfig
    from LiverTumorSegLib.validation import check_network_memory
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    volume = CTVolume(array=np.zeros((300, 128, 128), np.int16), geometry=ImageGeometry(spacing=(0.8, 0.8, 2.5)))
    config = PreprocessingConfig.preset("default")
    default_rest = check_network_memory(volume, config, available_bytes=1 << 40) - volume.array.nbytes
    large_rest = check_network_memory(volume, config, batch_size=256, available_bytes=1 << 40) - volume.array.nbytes
    assert large_rest > 2 * default_rest
    with pytest.raises(ResourceError, match=r"without batch_size \(the engine's own batch: 8 slices on the CPU, .*\) "
                                            r"it fits, needing about .* GiB \(the batch is now 256\)"):
        check_network_memory(volume, config, batch_size=256, available_bytes=default_rest)
    with cli_wording(), pytest.raises(ResourceError, match=r"without --batch-size \(the engine's own batch"):
        check_network_memory(volume, config, batch_size=256, available_bytes=default_rest)
    with pytest.raises(ResourceError) as refused:  # the default batch itself does not fit: nothing said of batches
        check_network_memory(volume, config, batch_size=256, available_bytes=default_rest - 1)
    assert "engine's own batch" not in str(refused.value)


def test_network_memory_check_asks_the_same_beside_a_float64_ct_as_beside_int16():
    """segment copies no CT: beside it, an int16, float32 and float64 CT held the same (349-380 MiB for
    512 x 512 x 200, docs/speed.md). The check asked 2 x the CT's itemsize, 6 bytes a voxel more for a float64 CT
    (nibabel's get_fdata() given to the Python API): 1.5 GiB never used for 512 x 512 x 1000."""
    from LiverTumorSegLib.preprocessing import PreprocessingConfig
    from LiverTumorSegLib.validation import check_network_memory
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    config, geometry = PreprocessingConfig.preset("default"), ImageGeometry(spacing=(0.8, 0.8, 2.5))
    beside = {}
    for dtype in (np.int16, np.float32, np.float64):
        volume = CTVolume(array=np.zeros((20, 64, 64), dtype), geometry=geometry)
        beside[np.dtype(dtype).name] = check_network_memory(volume, config, available_bytes=1 << 40) - volume.array.nbytes
    assert beside["float64"] == beside["float32"] == beside["int16"]
    int16 = CTVolume(array=np.zeros((20, 64, 64), np.int16), geometry=geometry)
    # the int16 ask is kept: its CT and the 2-byte margin the canonical copy took
    assert estimate_memory_bytes((20, 64, 64), overhead_bytes=0, copy_itemsize=2) == \
        estimate_memory_bytes((20, 64, 64), overhead_bytes=0)
    assert check_network_memory(int16, config, available_bytes=1 << 40) - beside["int16"] == 20 * 64 * 64 * 2


def test_nifti_header_check_counts_a_float64_files_hu_copy_at_4_bytes(tmp_path, monkeypatch):
    """Reading a float64 NIfTI holds its voxels and their int16 or float32 HU copy (10.4 and 12.1 bytes a voxel
    measured with the .nii.gz bytes, 512 x 512 x 200): the header check asks 8 + 4 + 4 a voxel, not 8 + 8 + 4.
    Uncompressed files: a compressed one this small is asked for its inflating buffers, more than that (since
    30 Nov 2026, :func:`~LiverTumorSegLib.io.conversions.read_peak_voxel_bytes`)."""
    import nibabel as nib

    from LiverTumorSegLib import validation

    asked = []
    monkeypatch.setattr(validation, "check_memory", lambda required, *a, **k: asked.append(required))
    voxels = 6 * 16 * 16
    for dtype, per_voxel in ((np.float64, 8 + 4 + 4), (np.float32, 4 + 4 + 4), (np.int16, 2 + 2 + 4),
                             (np.uint8, 1 + 2 + 4)):
        path = tmp_path / f"ct_{np.dtype(dtype).name}.nii"
        array = np.full((16, 16, 6), 40, dtype)
        array[0] = 0 if dtype == np.uint8 else -1000
        image = nib.Nifti1Image(array, np.diag([0.8, 0.8, 2.5, 1.0]))
        image.header.set_slope_inter(1, 0)
        nib.save(image, str(path))
        read_volume(path)
        assert asked.pop() == voxels * per_voxel + validation.RUNTIME_OVERHEAD_BYTES, dtype
    scaled = tmp_path / "scaled.nii"  # scl_slope/scl_inter: the float32 scaled copy beside the stored voxels
    stored = np.full((16, 16, 6), 1064, np.int16)
    stored[0] = 24
    image = nib.Nifti1Image(stored, np.diag([0.8, 0.8, 2.5, 1.0]))
    image.header.set_slope_inter(1, -1024)
    nib.save(image, str(scaled))
    assert read_volume(scaled).array.min() == -1000
    assert asked.pop() == voxels * (4 + 4 + 4) + validation.RUNTIME_OVERHEAD_BYTES  # as before


VM_STAT = """Mach Virtual Memory Statistics: (page size of 16384 bytes)
Pages free:                               12000.
Pages active:                            300000.
Pages inactive:                          250000.
Pages speculative:                         3000.
Pages throttled:                              0.
Pages wired down:                        100000.
"""


def test_available_memory_on_macos_and_windows(monkeypatch):
    """There is no /proc there: the check passed anything (a plan of hundreds of GiB started)."""
    import subprocess

    from LiverTumorSegLib import validation

    assert validation.parse_vm_stat(VM_STAT) == 16384 * (12000 + 250000 + 3000)
    assert validation.parse_vm_stat("not vm_stat") is None
    monkeypatch.setattr(validation.sys, "platform", "darwin")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, stdout=VM_STAT))
    assert validation.available_memory_bytes() == 16384 * 265000
    with pytest.raises(ResourceError, match="only 4.0 GiB is available"):
        check_memory(5 << 30)
    monkeypatch.setattr(validation.sys, "platform", "win32")
    monkeypatch.setattr(validation, "_windows_available", lambda: 3 << 30)
    with pytest.raises(ResourceError, match="only 3.0 GiB is available"):
        check_memory(5 << 30)


def _t1_like(ct_hu: np.ndarray) -> np.ndarray:
    """MR-like intensities 0..650 (fat bright, as in T1) from a real CT's anatomy, no noise. Kept under 700, where
    the raw-CT rule (20 % over 700 HU: stored without the intercept) would refuse it already."""
    return np.interp(ct_hu.astype(np.float32), [-3024, -1000, -500, -150, -50, 0, 60, 300, 1400],
                     [0, 0, 30, 650, 600, 300, 400, 350, 300]).astype(np.int16)


@pytest.mark.parametrize("name", ["ct3slice_ct.nii.gz", "example_ct_sm.nii.gz"])
def test_a_picture_whose_only_negative_voxels_are_padding_is_refused(name):
    """MR-like data (all >= 0) or an 8-bit export with one edge row of -1024 padding, as a resampling tool leaves,
    passed the range test (its minimum was negative) and was segmented without a word: a 1.8 L 'liver' with six
    'tumors' on the MR-like volume. Every negative voxel holding the one padding value gives it away."""
    real = read_volume(DATA / name)
    mr = _t1_like(real.array)
    mr[:, 0, :] = -1024
    with pytest.raises(InputError, match=r"apart from \d+ padding voxels of -1024, all values >= 0: 0\.\.650.*MR"):
        check_ct(with_array(real, mr))
    picture = np.clip((real.array.astype(np.float32) + 160) * 255 / 400, 0, 255).astype(np.int16)
    picture[:, 0, :] = -1024
    with pytest.raises(InputError, match=r"apart from \d+ padding voxels of -1024, values lie within 0\.\.255"):
        check_ct(with_array(real, picture))
    warnings = check_ct(with_array(real, mr), allow_non_hu=True)
    assert len(warnings) == 1 and "going on because non-HU input was allowed" in warnings[0]
    assert not any("not look like CT" in w for w in check_ct(real))  # the real CT itself still passes


@pytest.mark.parametrize("name", ["ct3slice_ct.nii.gz", "example_ct_sm.nii.gz"])
def test_mr_like_data_with_a_noisy_background_below_zero_is_refused(name):
    """MR-like data whose background noise dips below 0 (to about -160: no air near -1000) was only warned about
    ('no air voxels'), then segmented into a liver with ten 'tumors'. No air and about a third of the voxels over
    250 (real CTs: 0.6-2.1 %) is not CT in HU."""
    real = read_volume(DATA / name)
    rng = np.random.default_rng(0)
    noisy = _t1_like(real.array) + rng.normal(0.0, 50.0, real.array.shape).astype(np.int16)
    assert noisy.min() < 0 and noisy.min() > -500
    with pytest.raises(InputError, match=r"no air \(-1200\.\.-500\) anywhere, while \d+ % of the voxels lie over 250"):
        check_ct(with_array(real, noisy))
    cropped_soft = np.clip(real.array, -300, 400)  # a CT without air but with HU tissue is only warned about
    assert any("no air voxels" in w for w in check_ct(with_array(real, cropped_soft)))


def test_network_memory_error_blames_the_preprocessings_padding_when_it_makes_the_slices_large():
    """An audit padded the sample's 101 x 122 slices to 4096 x 4096 with size_multiple 4096: the memory error then
    said 'check the voxel spacing in the header', which was wrong (the spacing was fine). It now names the settings
    that enlarge the slices beyond the resampled CT, and keeps the spacing advice where the slices are the CT's own
    size."""
    from LiverTumorSegLib.preprocessing import PreprocessingConfig
    from LiverTumorSegLib.validation import check_network_memory
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    volume = CTVolume(array=np.zeros((20, 64, 64), np.int16), geometry=ImageGeometry(spacing=(1.5, 1.5, 2.5)))
    padded = PreprocessingConfig.from_dict(dict(PreprocessingConfig.preset("default").to_dict(), size_multiple=512))
    with pytest.raises(ResourceError, match=r"the network's slices \(512 x 512\) are padded or resized far beyond the "
                                            r"resampled CT's \(about 64 x 64\) by the preprocessing \(size_multiple "
                                            r"512\): use a model"):
        check_network_memory(volume, padded, available_bytes=1)
    with pytest.raises(ResourceError, match="check the voxel spacing in the header"):
        check_network_memory(volume, PreprocessingConfig.preset("default"), available_bytes=1)


def test_network_memory_error_of_a_ct_of_a_bodys_size_does_not_blame_its_spacing():
    """A 0.98 mm CT refused by a memory limit (a cgroup's, in the memory audit) was told to 'check the voxel spacing
    in the header'; where the spacing gives a body's size it is told to free or find memory, or crop."""
    from LiverTumorSegLib.preprocessing import PreprocessingConfig
    from LiverTumorSegLib.validation import check_network_memory
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    volume = CTVolume(array=np.zeros((40, 512, 512), np.int16), geometry=ImageGeometry(spacing=(0.98, 0.98, 2.5)))
    with pytest.raises(ResourceError, match=r"the CT measures 502 x 502 x 100 mm \(x, y, z\), a body's size, so its "
                                            r"spacing is not the cause: close other programs, crop") as caught:
        check_network_memory(volume, PreprocessingConfig.preset("default"), available_bytes=1)
    assert "check the voxel spacing" not in str(caught.value)


def test_pet_suv_values_are_not_called_an_8_bit_picture():
    """PET in SUV (floats 0 to about 20) was refused as 'like an 8-bit picture or a windowed export', which sent the
    user looking for a windowing step; values with fractions are named for what they can be. A real 8-bit export
    (whole numbers, as uint8 or as floats) keeps its own words."""
    real = read_volume(DATA / "ct3slice_ct.nii.gz")
    hu = real.array.astype(np.float32)
    rng = np.random.default_rng(0)
    suv = (np.where(hu > -500, 1.0 + 0.5 * rng.random(hu.shape), 0.0) + np.where(hu > 100, 3.0, 0.0)).astype(np.float32)
    with pytest.raises(InputError, match=r"within 0\.\.255: 0\.\.4\.\d+, with fractions, like PET \(SUV\) or "
                                         r"rescaled data\); it looks pre-normalised/not CT"):
        check_ct(with_array(real, suv))
    picture = np.clip(np.round((hu + 160.0) / 400.0 * 255.0), 0, 255)
    for stored in (picture.astype(np.uint8), picture.astype(np.float32)):
        with pytest.raises(InputError, match=r"within 0\.\.255: 0\.\.255, like an 8-bit picture or a windowed export"):
            check_ct(with_array(real, stored))
    # the same export stored signed (int8, -128..127): it was segmented with only a 'no air' warning (a CLI audit)
    with pytest.raises(InputError, match=r"within -128\.\.127: -128\.\.127, with the floor at -128, like a signed "
                                         r"8-bit picture or a windowed export"):
        check_ct(with_array(real, (picture - 128).astype(np.int8)))
    check_ct(real)  # the CT itself (air at -1000 and below) passes


def test_release_freed_heap_runs_malloc_trim_on_glibc_only(monkeypatch):
    """segment hands the heap pages the network's freed batches leave resident back to the system before
    post-processing (183 MiB of a 512 x 512 x 1000 CT's run): glibc's malloc_trim on Linux, nothing elsewhere."""
    import platform
    import sys

    from LiverTumorSegLib import validation

    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert validation.release_freed_heap() is True
    monkeypatch.setattr(validation.sys, "platform", "win32")
    assert validation.release_freed_heap() is False


def test_complex_voxels_given_through_the_api_are_refused_naming_the_type():
    """The readers refuse complex images; a CTVolume built in Python from an FFT's complex result reached check_ct's
    type check, which had never run: it names the voxel type and what is needed."""
    ct = phantom_ct()
    complex_ct = with_array(ct, ct.array.astype(np.complex64))
    with pytest.raises(InputError, match=r"^'test\.nii\.gz' has voxel type complex64; a scalar numeric CT volume "
                                         r"is needed\.$"):
        check_ct(complex_ct)


def test_network_grid_of_a_target_size_preprocessing_is_what_plan_spatial_makes():
    """A preprocessing that resizes to target_size (H, W) pixels: the memory check's grid (z, H, W) is that size
    padded up to size_multiple, the same as preprocessing's own plan (known answer: 256 x 190 padded to 32s is
    256 x 192), whatever the CT's spacing (mm)."""
    from LiverTumorSegLib.preprocessing.spatial import plan_spatial
    from LiverTumorSegLib.validation import network_grid_zyx

    settings = {"target_size": [256, 190], "size_multiple": 32}
    assert network_grid_zyx((10, 512, 400), (2.0, 0.7, 0.7), settings) == (10, 256, 192)
    assert network_grid_zyx((10, 100, 80), (5.0, 1.4, 0.5), settings) == (10, 256, 192)
    planned = plan_spatial((10, 512, 400), (0.7, 0.7), None, None, (256, 190), 32)
    assert tuple(planned.net_shape_yx) == (256, 192)


def test_a_thin_ct_in_nibabel_order_is_asked_about_its_axis_order():
    """A 20-slice CT as nibabel gives it, (x, y, z) = 512 x 512 x 20, given as (z, y, x) has 'slices' of 512 x 20:
    the hint naming nibabel's order was asked only for thin slices of a taller stack (z > 4 x 512), so the warning
    asked only whether it was cropped, and the run gave a 7 mL liver (the library API audit)."""
    ct = phantom_ct(shape_zyx=(20, 160, 160))
    nibabel_order = CTVolume(np.ascontiguousarray(ct.array.T), ImageGeometry(spacing=(2.0, 0.8, 0.8)), "xyz")
    warned = [w for w in check_ct(nibabel_order) if "very small axial slices" in w]
    assert len(warned) == 1 and "(x, y, z) array (nibabel's order)" in warned[0] and "array.T" in warned[0]
    cropped = check_ct(phantom_ct(shape_zyx=(6, 20, 40)))  # a small crop is asked only whether it is cropped
    assert len(cropped) == 1 and "nibabel" not in cropped[0]


def test_a_model_load_under_an_address_space_limit_too_tight_for_it_is_refused_before_it_starts(monkeypatch):
    """Under ulimit -v of 0.8-0.95 GiB the load hung in OpenBLAS's start (for good, deaf to Ctrl-C), or ended in
    'pthread_create failed' or an ImportError called a corrupt package (the memory audit). It is refused first."""
    from LiverTumorSegLib import validation
    from LiverTumorSegLib.inference import SegmentationOptions, Segmenter
    from LiverTumorSegLib.validation import MODEL_LOAD_ADDRESS_SPACE_BYTES, check_room_for_model_load

    with pytest.raises(ResourceError, match=r"Loading the model needs at least 1\.0 GiB of address space, but this "
                                            r"process's limit leaves 0\.50 GiB \(ulimit -v"):
        check_room_for_model_load(room_bytes=MODEL_LOAD_ADDRESS_SPACE_BYTES // 2, torch_imported=False)
    check_room_for_model_load(room_bytes=MODEL_LOAD_ADDRESS_SPACE_BYTES, torch_imported=False)
    # torch imported already (a second model, train's whole-volume validation): a few MiB more, not asked (the review)
    check_room_for_model_load(room_bytes=MODEL_LOAD_ADDRESS_SPACE_BYTES // 2, torch_imported=True)
    monkeypatch.setattr(validation, "address_space_room", lambda *a, **k: None)  # no limit: nothing said
    check_room_for_model_load(torch_imported=False)
    monkeypatch.setattr(validation, "address_space_room", lambda *a, **k: 1 << 20)
    real_check = validation.check_room_for_model_load
    monkeypatch.setattr(validation, "check_room_for_model_load", lambda: real_check(torch_imported=False))
    segmenter = Segmenter(SegmentationOptions(model="default", device="cpu"))
    monkeypatch.setattr(segmenter, "_load", lambda progress: pytest.fail("the load started"))
    with pytest.raises(ResourceError, match="ulimit -v"):
        segmenter.load()


def test_a_memory_refusal_shows_enough_digits_to_tell_the_two_amounts_apart():
    """'needs about 1.4 GiB of memory but only 1.4 GiB is available' read as no shortage (the memory audit)."""
    from LiverTumorSegLib.validation import GIB, check_memory

    with pytest.raises(ResourceError, match=r"needs about 1\.44 GiB of memory but only 1\.38 GiB is available"):
        check_memory(int(1.44 * GIB), int(1.38 * GIB))
    with pytest.raises(ResourceError, match=r"needs about 2\.0 GiB of memory but only 1\.0 GiB is available"):
        check_memory(2 * GIB, GIB)


def test_windows_available_memory_is_the_smaller_of_free_memory_and_the_commit_room(monkeypatch):
    """With a small or no page file, Windows refuses an allocation once the commit limit is reached, below the free
    physical memory the check read (the portability audit): the smaller of the two counts."""
    import ctypes
    import types

    from LiverTumorSegLib import validation

    def memory_status(available_phys, available_page_file):
        def fill(reference):
            status = reference._obj
            status.ullAvailPhys, status.ullAvailPageFile = available_phys, available_page_file
            return 1
        return types.SimpleNamespace(kernel32=types.SimpleNamespace(GlobalMemoryStatusEx=fill))

    monkeypatch.setattr(ctypes, "windll", memory_status(8 << 30, 2 << 30), raising=False)
    assert validation._windows_available() == 2 << 30
    monkeypatch.setattr(ctypes, "windll", memory_status(3 << 30, 40 << 30), raising=False)
    assert validation._windows_available() == 3 << 30


def _child_in_a_wide_field_of_view(shift=0.0, body_reaches_sides=False):
    """``CTVolume`` (20, 128, 128) on 3.9 mm pixels (a 500 mm field of view): air (-1000 HU) around a 55 x 70 mm
    body of soft tissue (40 HU) with a little bone (1200 HU, off the validation's every-4th-voxel sample); ``shift``
    added to every value (-1024: the intercept applied twice, the air then clipped at -2048); ``body_reaches_sides``:
    a 70 mm band of body cut by the field of view's sides instead."""
    hu = np.full((20, 128, 128), -1000.0, np.float32)
    y, x = np.ogrid[:128, :128]
    body = ((y - 64) / 9.0) ** 2 + ((x - 64) / 7.0) ** 2 <= 1.0
    if body_reaches_sides:
        body = np.broadcast_to(np.abs(y - 64) <= 9, (128, 128))
    hu[:, body] = 40.0
    hu[:, 69:71, 63:65] = 1200.0
    hu = np.maximum(hu + shift, -2048.0)
    return CTVolume(hu.astype(np.int16), ImageGeometry(spacing=(3.9, 3.9, 5.0)))


def test_a_small_child_in_a_wide_field_of_view_is_not_called_doubly_shifted():
    """A 106 mm wide child in a 500 mm field of view read 1.5 % soft tissue among 'air' that was the room around it,
    and was refused as 'the rescale intercept applied twice' (the HU rules audit); the air around the body, joined to
    all four edges of its slices, is left out of the shares. The same CT doubly shifted is refused still, also when
    its body reaches the field of view's sides."""
    assert not any("shifted" in w for w in check_ct(_child_in_a_wide_field_of_view()))
    for sides in (False, True):
        with pytest.raises(InputError, match=r"applied twice"):
            check_ct(_child_in_a_wide_field_of_view(shift=-1024.0, body_reaches_sides=sides))


def test_values_within_0_and_1_are_named_as_a_normalised_image_or_a_probability_map():
    """A float probability map given as the CT was called only 'pre-normalised' and offered allow_non_hu, which would
    segment the map as stored (stop 109's file-kind notes): the message names what such values usually are."""
    array = np.random.default_rng(0).random((8, 32, 32)).astype(np.float32)
    with pytest.raises(InputError, match=r"values lie within 0\.\.1: .*, like a normalised image or a probability map"):
        check_ct(CTVolume(array, ImageGeometry(spacing=(1.0, 1.0, 2.0))))


def test_a_doubly_shifted_ct_whose_body_fills_the_image_is_refused_still():
    """The review of the child fix: a body reaching all four edges (a field of view cut to the abdomen), doubly
    shifted, read as a 'room' joined to every edge, was left out, and the shifted cortex left passed as soft tissue:
    the CT was accepted without a word. Its gas (-1000 HU, shifted to -2024) is image below -1500: no such rescue."""
    hu = np.full((40, 128, 128), 40.0)
    hu[:, :6, :] = hu[:, -6:, :] = -100.0                 # fat at the rim
    hu[:, 84:96, 58:70] = 1200.0                          # a vertebra
    hu[:, 30:50, 30:60] = -1000.0                         # bowel gas
    hu += np.random.default_rng(0).normal(0.0, 10.0, hu.shape)
    twice = np.maximum(np.round(hu) - 1024.0, -2048.0).astype(np.int16)
    with pytest.raises(InputError, match=r"applied twice"):
        check_ct(CTVolume(twice, ImageGeometry(spacing=(2.5, 2.5, 2.5))))


def test_a_resampled_childs_round_padding_rim_is_padding_not_image():
    """The review of the rescue's guard: a child CT with a round -3024 field of view, resampled (linear) to a coarser
    grid, had an interpolated rim of values between -3024 and -1000 (0.57 % of the samples), counted as image below
    -1500, and the CT was refused as 'intercept applied twice' again. Values beside the padding are padding."""
    from scipy import ndimage

    child = _child_in_a_wide_field_of_view().array.astype(np.float32)
    y, x = np.ogrid[:128, :128]
    child[:, (y - 63.5) ** 2 + (x - 63.5) ** 2 > 63.0 ** 2] = -3024.0          # the round field of view's padding
    coarse = ndimage.zoom(child, (1.0, 0.77, 0.77), order=1)                 # resampled: a rim of in-between values
    volume = CTVolume(np.round(coarse).astype(np.int16), ImageGeometry(spacing=(5.06, 5.06, 5.0)))
    assert not any("shifted" in w for w in check_ct(volume))


@pytest.mark.parametrize("first_slice", [0, 16, 48])
def test_a_doubly_shifted_ct_cropped_into_its_body_with_round_padding_is_refused(first_slice):
    """The second review of the child fix: the sample CT's 16-slice slabs cropped just inside the body, doubly
    shifted, a round -3024 field of view around them: the body (reading as air) joined the padding to the image's
    edges and was taken for a room of air, and the shifted bone and fat left passed; 12 of 32 such slabs of the shared
    CTs were accepted without a word. What is left must be mostly soft tissue and fat, as a body is."""
    from LiverTumorSegLib.resources import sample_ct_path

    ct = read_volume(sample_ct_path())
    part = ct.array.astype(np.float32)[first_slice:first_slice + 16]
    ys, xs = np.nonzero((part > -500).any(axis=0))
    part = part[:, ys.min() + 2:ys.max() - 2, xs.min() + 2:xs.max() - 2] - 1024.0
    _, h, w = part.shape
    y, x = np.ogrid[:h, :w]
    part[:, ((y - h / 2) / (h / 2)) ** 2 + ((x - w / 2) / (w / 2)) ** 2 > 1] = -3024.0
    with pytest.raises(InputError, match=r"applied twice"):
        check_ct(CTVolume(part.astype(np.int16), ct.geometry))


@pytest.mark.parametrize("zoom", [0.77, 1.2, 1.3])
def test_a_childs_ct_resampled_either_way_is_not_called_doubly_shifted(zoom):
    """The third review: resampled finer (1.2, 1.3), the round padding's rim held values between it and air (-1500 to
    -1200), neither padding nor air: they counted as the body and its share of soft tissue fell under a half. The rim
    beside the padding belongs to the room."""
    from scipy import ndimage

    child = _child_in_a_wide_field_of_view().array.astype(np.float32)
    y, x = np.ogrid[:128, :128]
    child[:, (y - 63.5) ** 2 + (x - 63.5) ** 2 > 63.0 ** 2] = -3024.0
    resampled = np.round(ndimage.zoom(child, (1.0, zoom, zoom), order=1)).astype(np.int16)
    assert not any("shifted" in w for w in check_ct(CTVolume(resampled, ImageGeometry(spacing=(3.9 / zoom,
                                                                                                 3.9 / zoom, 5.0)))))
