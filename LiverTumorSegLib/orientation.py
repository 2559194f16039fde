"""Canonical processing orientation: permute and flip axes (never resample).

After :func:`canonicalize`, index i runs toward patient **Left**, j toward **Posterior**, k toward
**Superior**: the direction matrix is the one closest to identity reachable by permuting and negating
the original index axes. For an oblique scan each index axis is assigned to its dominant physical
axis and the exact rotated direction columns are kept (permuted and negated), with the origin moved to
the physical position of the new first voxel, so every voxel keeps its exact physical position.

Arrays are ``(z, y, x)`` = ``[k, j, i]``; :class:`Reorientation` maps the **last three** axes, so
batches such as ``(K, z, y, x)`` probability maps work too. Geometry vectors are ``(x, y, z)``, LPS, mm.
"""
import itertools
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from .volume import CTVolume, ImageGeometry, meta_for_another_grid


@dataclass(frozen=True)
class Reorientation:
    """How to go between an original ``(z, y, x)`` array layout and the canonical one.

    ``source_axis[n]``: the original array axis (0 = z, 1 = y, 2 = x) that canonical array axis ``n``
    comes from. ``flip[n]``: whether canonical array axis ``n`` runs backwards along it.
    """

    original_geometry: ImageGeometry
    canonical_geometry: ImageGeometry
    original_shape: Tuple[int, int, int]
    canonical_shape: Tuple[int, int, int]
    source_axis: Tuple[int, int, int]
    flip: Tuple[bool, bool, bool]

    @property
    def is_identity(self) -> bool:
        """True when the original layout already is canonical (arrays pass through unchanged)."""
        return self.source_axis == (0, 1, 2) and not any(self.flip)

    @staticmethod
    def _check_shape(arr: np.ndarray, expected: Tuple[int, int, int], what: str) -> None:
        if arr.ndim < 3 or tuple(arr.shape[-3:]) != tuple(expected):
            raise ValueError(f"{what} array's last three axes {tuple(arr.shape[-3:])} do not match the expected "
                             f"(z, y, x) shape {tuple(expected)}")

    def to_canonical(self, arr: np.ndarray) -> np.ndarray:
        """Original layout ``(..., z, y, x)`` -> canonical ``(..., z', y', x')``; C-contiguous result."""
        return np.ascontiguousarray(self.canonical_view(arr))

    def canonical_view(self, arr: np.ndarray) -> np.ndarray:
        """:meth:`to_canonical` as a view (axes permuted and flipped, no copy; not C-contiguous): for reading a
        part of a large array, e.g. a coarse subsample, without copying all of it."""
        arr = np.asarray(arr)
        self._check_shape(arr, self.original_shape, "original")
        lead = arr.ndim - 3
        out = arr.transpose(list(range(lead)) + [lead + a for a in self.source_axis])
        index = (Ellipsis,) + tuple(slice(None, None, -1) if f else slice(None) for f in self.flip)
        return out[index]

    def from_canonical(self, arr: np.ndarray) -> np.ndarray:
        """Canonical layout ``(..., z', y', x')`` -> original ``(..., z, y, x)``; C-contiguous result."""
        return np.ascontiguousarray(self.original_view(arr))

    def original_view(self, arr: np.ndarray) -> np.ndarray:
        """:meth:`from_canonical` as a view (axes flipped and permuted back, no copy; not C-contiguous): for a
        map that is only read, in parts, in the original layout."""
        arr = np.asarray(arr)
        self._check_shape(arr, self.canonical_shape, "canonical")
        lead = arr.ndim - 3
        index = (Ellipsis,) + tuple(slice(None, None, -1) if f else slice(None) for f in self.flip)
        unflipped = arr[index]
        inverse = [0, 0, 0]
        for n, a in enumerate(self.source_axis):
            inverse[a] = n
        return unflipped.transpose(list(range(lead)) + [lead + n for n in inverse])

    def original_volume(self, canonical_array: np.ndarray, source: str = "") -> CTVolume:
        """A ``(z, y, x)`` canonical array (e.g. labels) as a CTVolume in the original layout and geometry."""
        return CTVolume(array=self.from_canonical(canonical_array), geometry=self.original_geometry, source=source)


def _axis_assignment(direction: np.ndarray, target_direction: Optional[np.ndarray] = None
                     ) -> Tuple[Tuple[int, int, int], Tuple[float, float, float]]:
    """For physical axes (L, P, S), or the columns of ``target_direction`` (3 x 3, LPS) when given, the original
    index axis (0 = i, 1 = j, 2 = k) and its sign (+1/-1).

    Picks the permutation maximising the summed absolute cosines, so every index axis goes to its
    dominant physical axis, also for oblique directions. Ties (a grid turned exactly 45 degrees) go to the first
    permutation in ``itertools.permutations`` order, the stored layout first: deterministic, but two storages of one
    45-degree grid (axes swapped) can tie-break to different layouts; ``target_direction`` (another grid's axes)
    has no tie for grids whose axes are parallel.
    """
    cosines = direction if target_direction is None else \
        np.asarray(target_direction, dtype=float).T @ np.asarray(direction, dtype=float)  # [target p, index c]
    best, best_score = (0, 1, 2), -1.0
    for perm in itertools.permutations(range(3)):
        score = sum(abs(cosines[p, perm[p]]) for p in range(3))
        if score > best_score + 1e-12:
            best, best_score = perm, score
    signs = tuple(-1.0 if cosines[p, best[p]] < 0 else 1.0 for p in range(3))
    return best, signs  # type: ignore[return-value]


def obliquity_degrees(direction: np.ndarray) -> float:
    """The largest angle (degrees) between an index axis of ``direction`` (3 x 3, columns = the i, j, k axes in
    LPS) and the patient axis it is assigned to (:func:`_axis_assignment`): 0 for any axis-aligned grid, flipped
    or permuted; 30 for a grid rotated 30 degrees about one patient axis."""
    direction = np.asarray(direction, dtype=float)
    index_axis_of, _ = _axis_assignment(direction)
    cosines = [abs(direction[p, index_axis_of[p]]) / max(np.linalg.norm(direction[:, index_axis_of[p]]), 1e-12)
               for p in range(3)]
    return float(np.degrees(np.arccos(np.clip(min(cosines), 0.0, 1.0))))


def plan_reorientation(geometry: ImageGeometry, shape_zyx: Sequence[int],
                       target_direction: Optional[np.ndarray] = None) -> Reorientation:
    """The :class:`Reorientation` that makes a ``shape_zyx`` grid with ``geometry`` canonical (no voxels needed).

    ``target_direction`` (3 x 3, columns = another grid's i, j, k axes in LPS): the layout whose index axes run
    closest to that grid's instead of to L, P, S, e.g. to lay a label map out as its CT is stored. For a grid turned
    exactly 45 degrees the canonical layout is a tie (:func:`_axis_assignment`) that can differ between two storages
    of the same grid; the layout of the other grid has none."""
    shape_zyx = tuple(int(s) for s in shape_zyx)
    if len(shape_zyx) != 3:
        raise ValueError(f"shape_zyx must have 3 entries (z, y, x), got {shape_zyx}")
    direction = geometry.direction_matrix
    index_axis_of, signs = _axis_assignment(direction, target_direction)
    shape_xyz = shape_zyx[::-1]
    first_voxel_ijk = [0.0, 0.0, 0.0]
    new_spacing, new_columns = [], []
    for p in range(3):  # new index axis p (0 = i -> L, 1 = j -> P, 2 = k -> S; or target column p)
        c = index_axis_of[p]
        new_spacing.append(geometry.spacing[c])
        new_columns.append(signs[p] * direction[:, c])
        if signs[p] < 0:
            first_voxel_ijk[c] = shape_xyz[c] - 1
    new_direction = np.stack(new_columns, axis=1) + 0.0  # + 0.0 turns -0.0 into 0.0
    origin = geometry.index_to_lps(first_voxel_ijk)
    canonical_geometry = ImageGeometry(spacing=tuple(new_spacing), origin=tuple(origin),
                                       direction=tuple(new_direction.ravel()))
    # canonical array axis n = 2 - p comes from original array axis 2 - c
    source_axis = tuple(2 - index_axis_of[2 - n] for n in range(3))
    flip = tuple(bool(signs[2 - n] < 0) for n in range(3))
    canonical_shape = tuple(shape_zyx[a] for a in source_axis)
    return Reorientation(original_geometry=geometry, canonical_geometry=canonical_geometry,
                         original_shape=shape_zyx, canonical_shape=canonical_shape,  # type: ignore[arg-type]
                         source_axis=source_axis, flip=flip)  # type: ignore[arg-type]


def canonicalize(volume: CTVolume, copy: bool = True) -> Tuple[CTVolume, Reorientation]:
    """Return ``volume`` permuted/flipped to canonical orientation (no resampling) and the mapping back.

    The canonical array is C-contiguous ``(z, y, x)``; when the volume already is canonical its array is
    passed through without a copy (if already contiguous). ``copy=False``: the canonical array is a view of
    ``volume.array`` (:meth:`Reorientation.canonical_view`: the same voxels, not C-contiguous, no memory) for a
    caller that only reads it once, as the engine resamples it to the network grid: the contiguous copy held a
    second CT (2 bytes a voxel of an int16 CT) through the whole network loop.
    """
    reorientation = plan_reorientation(volume.geometry, volume.shape_zyx)
    array = reorientation.to_canonical(volume.array) if copy else reorientation.canonical_view(volume.array)
    canonical = CTVolume(array=array, geometry=reorientation.canonical_geometry, source=volume.source,
                         meta=dict(volume.meta) if reorientation.is_identity else meta_for_another_grid(volume.meta))
    return canonical, reorientation
