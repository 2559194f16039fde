"""Tests for LiverTumorSegLib.orientation: canonical permute/flip, exact round trips, physical positions.

Arrays are (z, y, x); geometry vectors (x, y, z) LPS mm.
"""
import itertools

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from LiverTumorSegLib.io import read_volume, write_volume
from LiverTumorSegLib.orientation import canonicalize, obliquity_degrees, plan_reorientation
from LiverTumorSegLib.phantom import make_phantom
from LiverTumorSegLib.volume import CTVolume, ImageGeometry


def rotation(axis, angle_deg: float) -> np.ndarray:
    """Rodrigues rotation matrix about ``axis`` by ``angle_deg`` degrees."""
    axis = np.asarray(axis, float)
    axis = axis / np.linalg.norm(axis)
    a = np.deg2rad(angle_deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * (k @ k)


def relayout(volume: CTVolume, source_axis, flip) -> CTVolume:
    """The same voxels and physical positions stored in another array layout.

    New array axis n is old array axis ``source_axis[n]``, reversed when ``flip[n]``. The new geometry is
    built forward: new index axis (2 - n) = old index axis (2 - source_axis[n]) (negated when flipped),
    origin = physical position of the old voxel that becomes the new first voxel.
    """
    arr = volume.array.transpose(source_axis)
    arr = arr[tuple(slice(None, None, -1) if f else slice(None) for f in flip)]
    old_d = volume.geometry.direction_matrix
    shape_xyz = volume.shape_zyx[::-1]
    cols, spacing, first = [None] * 3, [0.0] * 3, [0, 0, 0]
    for n in range(3):
        new_c, old_c = 2 - n, 2 - source_axis[n]
        sign = -1.0 if flip[n] else 1.0
        cols[new_c] = sign * old_d[:, old_c]
        spacing[new_c] = volume.geometry.spacing[old_c]
        first[old_c] = shape_xyz[old_c] - 1 if flip[n] else 0
    geometry = ImageGeometry(spacing=tuple(spacing), origin=tuple(volume.geometry.index_to_lps(first)),
                             direction=tuple(np.stack(cols, axis=1).ravel()))
    return CTVolume(array=np.ascontiguousarray(arr), geometry=geometry, source="relayout")


def assert_same_physical_voxels(original: CTVolume, canonical: CTVolume, n_points: int = 20, seed: int = 0):
    """Every sampled voxel of ``original`` sits at the same LPS point, with the same value, in ``canonical``."""
    rng = np.random.default_rng(seed)
    inv = np.linalg.inv(canonical.geometry.ijk_to_lps())
    shape = original.shape_zyx
    corners = [np.array(c) * (np.array(shape) - 1) for c in itertools.product((0, 1), repeat=3)]
    samples = corners + [rng.integers(0, shape) for _ in range(n_points)]
    for kji in samples:
        ijk = np.asarray(kji)[::-1].astype(float)
        lps = original.geometry.index_to_lps(ijk)
        cijk = (inv @ np.append(lps, 1.0))[:3]
        np.testing.assert_allclose(cijk, np.rint(cijk), atol=1e-6)
        ci, cj, ck = np.rint(cijk).astype(int)
        assert canonical.array[ck, cj, ci] == original.array[tuple(int(v) for v in kji)]


def assert_canonical_direction(direction: np.ndarray):
    """Each canonical index axis points mostly along +L, +P, +S respectively."""
    for p in range(3):
        assert int(np.argmax(np.abs(direction[:, p]))) == p
        assert direction[p, p] > 0


def small_phantom():
    return make_phantom(shape_zyx=(6, 20, 18), spacing_xyz=(2.0, 2.5, 4.0), origin=(-10.0, 5.0, 30.0),
                        noise_hu=0.0, seed=0)


def test_canonical_phantom_is_identity_without_copy():
    ct = small_phantom().ct
    canon, reo = canonicalize(ct)
    assert reo.is_identity
    assert np.shares_memory(canon.array, ct.array) and np.array_equal(canon.array, ct.array)
    assert canon.geometry == ct.geometry
    assert reo.canonical_shape == reo.original_shape == ct.shape_zyx


def test_ras_lps_and_permuted_files_give_the_same_canonical_array(tmp_path):
    ct = small_phantom().ct
    nz, ny, nx = ct.shape_zyx
    sx, sy, sz = ct.geometry.spacing
    ox, oy, oz = ct.geometry.origin
    # RAS storage written out by hand: x and y reversed, LPS directions -x and -y, origin at the far x/y corner.
    ras = CTVolume(array=np.ascontiguousarray(ct.array[:, ::-1, ::-1]),
                   geometry=ImageGeometry(spacing=(sx, sy, sz), origin=(ox + (nx - 1) * sx, oy + (ny - 1) * sy, oz),
                                          direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1)))
    # permuted storage: array (y, z, x), so index i = x (L), j = z (S), k = y (P)
    permuted = CTVolume(array=np.ascontiguousarray(ct.array.transpose(1, 0, 2)),
                        geometry=ImageGeometry(spacing=(sx, sz, sy), origin=(ox, oy, oz),
                                               direction=(1, 0, 0, 0, 0, 1, 0, 1, 0)))
    assert nib.aff2axcodes(ras.geometry.ijk_to_ras()) == ("R", "A", "S")
    for name, vol in [("lps", ct), ("ras", ras), ("permuted", permuted)]:
        path = write_volume(tmp_path / f"{name}.nii.gz", vol)
        read = read_volume(path)
        canon, reo = canonicalize(read)
        assert reo.is_identity == (name == "lps")
        assert np.array_equal(canon.array, ct.array), name
        assert canon.geometry.almost_equal(ct.geometry, tol=1e-4), (name, canon.geometry, ct.geometry)
        assert np.array_equal(reo.from_canonical(canon.array), read.array)


@pytest.mark.parametrize("source_axis", list(itertools.permutations(range(3))))
@pytest.mark.parametrize("flip", [(False, False, False), (True, False, True), (False, True, False),
                                  (True, True, True)])
def test_every_permutation_and_flip_of_an_oblique_volume_round_trips(source_axis, flip):
    base_geometry = ImageGeometry(spacing=(0.7, 0.9, 2.5), origin=(-100.3, 20.1, 55.7),
                                  direction=tuple(rotation((1, 2, 3), 25).ravel()))
    base = CTVolume(array=np.random.default_rng(0).integers(-1000, 1000, (4, 5, 6)).astype(np.int16),
                    geometry=base_geometry)
    vol = relayout(base, source_axis, flip)
    canon, reo = canonicalize(vol)
    # canonical = the un-permuted oblique volume, exact voxels, exact rotated direction columns
    assert np.array_equal(canon.array, base.array)
    np.testing.assert_allclose(canon.geometry.direction_matrix, base_geometry.direction_matrix, atol=1e-12)
    np.testing.assert_allclose(canon.geometry.origin, base_geometry.origin, atol=1e-9)
    assert canon.geometry.spacing == base_geometry.spacing
    assert_canonical_direction(canon.geometry.direction_matrix)
    assert_same_physical_voxels(vol, canon)
    # voxel-exact round trips, also with a leading class axis (K, z, y, x)
    assert np.array_equal(reo.from_canonical(reo.to_canonical(vol.array)), vol.array)
    view = reo.canonical_view(vol.array)  # the same voxels without a copy (post-processing reads HU this way)
    assert np.array_equal(view, canon.array) and np.shares_memory(view, vol.array)
    probs = np.random.default_rng(1).random((3,) + vol.shape_zyx).astype(np.float32)
    probs_c = reo.to_canonical(probs)
    assert probs_c.shape == (3,) + canon.shape_zyx and probs_c.flags["C_CONTIGUOUS"]
    back = reo.from_canonical(probs_c)
    assert back.flags["C_CONTIGUOUS"] and np.array_equal(back, probs)
    assert reo.original_geometry == vol.geometry and reo.canonical_geometry == canon.geometry
    assert reo.is_identity == (tuple(source_axis) == (0, 1, 2) and not any(flip))


def test_dominant_axis_is_chosen_for_strong_obliquity():
    # 40 degrees about z: i still mostly L, j mostly P
    d = rotation((0, 0, 1), 40)
    reo = plan_reorientation(ImageGeometry(spacing=(1, 1, 1), direction=tuple(d.ravel())), (3, 4, 5))
    assert reo.is_identity
    # 130 degrees about z: i points mostly toward P and -L ... axes swap and flip
    d = rotation((0, 0, 1), 130)
    vol = CTVolume(array=np.arange(60, dtype=np.int16).reshape(3, 4, 5),
                   geometry=ImageGeometry(spacing=(1, 2, 3), direction=tuple(d.ravel())))
    canon, reo = canonicalize(vol)
    assert not reo.is_identity
    assert_canonical_direction(canon.geometry.direction_matrix)
    assert_same_physical_voxels(vol, canon)
    assert canon.geometry.spacing == (2.0, 1.0, 3.0)  # old j (mostly L after rotation) becomes i


@pytest.mark.parametrize("axis", [(1, 0, 0), (0, 1, 0), (0, 0, 1)])
@pytest.mark.parametrize("angle", [0.0, 10.0, 30.0, 44.0, 130.0])
def test_obliquity_is_the_rotation_angle_off_the_nearest_axis_aligned_grid(axis, angle):
    """A grid rotated by ``angle`` about one patient axis is tilted ``angle`` (folded to the nearest axis-aligned
    grid: 130 degrees is 40 off the grid rotated by 90); flips and permutations do not add any."""
    expected = min(angle % 90.0, 90.0 - angle % 90.0)
    d = rotation(axis, angle)
    assert obliquity_degrees(d) == pytest.approx(expected, abs=1e-6)
    permuted_and_flipped = d[:, [2, 0, 1]] * np.array([-1.0, 1.0, -1.0])
    assert obliquity_degrees(permuted_and_flipped) == pytest.approx(expected, abs=1e-6)


def test_original_volume_and_shape_checks():
    vol = relayout(small_phantom().ct, (0, 2, 1), (True, False, True))
    canon, reo = canonicalize(vol)
    labels = (canon.array > 0).astype(np.uint8)
    restored = reo.original_volume(labels, source="labels")
    assert restored.geometry == vol.geometry
    assert np.array_equal(restored.array, (vol.array > 0).astype(np.uint8))
    with pytest.raises(ValueError, match="do not match"):
        reo.to_canonical(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="do not match"):
        reo.from_canonical(vol.array if vol.shape_zyx != canon.shape_zyx else np.zeros((1, 1, 1)))


def test_real_ras_file_canonicalizes_to_lps_identity():
    vol = read_volume(__import__("pathlib").Path(__file__).resolve().parents[1] / "Data" / "example_ct_sm.nii.gz")
    canon, reo = canonicalize(vol)
    assert reo.source_axis == (0, 1, 2) and reo.flip == (False, True, True)
    np.testing.assert_array_equal(canon.geometry.direction_matrix, np.eye(3))
    assert np.array_equal(canon.array, vol.array[:, ::-1, ::-1])
    assert_same_physical_voxels(vol, canon)


@settings(max_examples=60, deadline=None)
@given(shape=st.tuples(*[st.integers(1, 6)] * 3),
       source_axis=st.permutations([0, 1, 2]),
       flip=st.tuples(st.booleans(), st.booleans(), st.booleans()),
       spacing=st.tuples(*[st.floats(0.1, 8.0)] * 3),
       origin=st.tuples(*[st.floats(-500.0, 500.0)] * 3),
       axis=st.tuples(*[st.floats(-1.0, 1.0)] * 3).filter(lambda a: np.linalg.norm(a) > 0.1),
       angle=st.floats(0.0, 29.0),
       lead=st.integers(0, 2))
def test_property_canonicalize_round_trip_is_exact(shape, source_axis, flip, spacing, origin, axis, angle, lead):
    base_geometry = ImageGeometry(spacing=spacing, origin=origin, direction=tuple(rotation(axis, angle).ravel()))
    rng = np.random.default_rng(sum(shape))
    base = CTVolume(array=rng.integers(-1000, 1000, shape).astype(np.int16), geometry=base_geometry)
    vol = relayout(base, tuple(source_axis), flip)
    canon, reo = canonicalize(vol)
    assert np.array_equal(canon.array, base.array)
    assert canon.geometry.almost_equal(base_geometry, tol=1e-9)
    assert_canonical_direction(canon.geometry.direction_matrix)
    extra = rng.random((2,) * lead + vol.shape_zyx)
    assert np.array_equal(reo.from_canonical(reo.to_canonical(extra)), extra)
    assert np.array_equal(reo.to_canonical(reo.from_canonical(canon.array)), canon.array)
