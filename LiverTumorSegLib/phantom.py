"""Synthetic abdominal CT phantom with known anatomy and lesions, for tests and demos.

HU-realistic tissue classes (air -1000, fat -100, muscle/soft tissue 45, liver ~60 (portal-venous-like),
kidney ~150, spine cancellous 250 / cortical 700, hypodense lesions ~liver-45) plus Gaussian noise.

Array order ``(z, y, x)``. The geometry is canonical LPS (identity direction unless given), so in the
array: x increases toward patient **left**, y toward **posterior**, z toward **superior**. The liver sits
on the patient's right (small x), anterior of the right kidney, as in real anatomy.

Every lesion's true volume is the exact voxel count of its label times the voxel volume (mL).
"""
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .volume import CTVolume, ImageGeometry


@dataclass
class PhantomLesion:
    """A spherical/ellipsoidal lesion. ``center_zyx``: voxel index (z, y, x); ``radius_mm``: sphere radius."""

    center_zyx: Tuple[float, float, float]
    radius_mm: float
    hu: float
    volume_ml: float = 0.0  # filled by make_phantom: voxel count x voxel volume
    voxel_count: int = 0


@dataclass
class Phantom:
    """``ct``: int16 HU volume; ``labels``: (z, y, x) uint8 (0 bg, 1 liver, 2 tumor); ``lesions``: truth."""

    ct: CTVolume
    labels: np.ndarray
    lesions: List[PhantomLesion] = field(default_factory=list)

    @property
    def liver_volume_ml(self) -> float:
        """Liver volume including tumors (LiTS convention: liver = label >= 1), mL."""
        return float(np.count_nonzero(self.labels >= 1)) * self.ct.geometry.voxel_volume_ml


def _ellipsoid(grid_mm: Tuple[np.ndarray, np.ndarray, np.ndarray], center_mm: Sequence[float],
               radii_mm: Sequence[float]) -> np.ndarray:
    z, y, x = grid_mm
    cz, cy, cx = center_mm
    rz, ry, rx = radii_mm
    return ((z - cz) / rz) ** 2 + ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0


def default_lesions(shape_zyx: Sequence[int], spacing_zyx: Sequence[float]) -> List[PhantomLesion]:
    """Two hypodense lesions inside the default liver: one ~12 mm radius, one ~6 mm radius."""
    nz, ny, nx = shape_zyx
    sz, sy, sx = spacing_zyx
    extent = np.array([nz * sz, ny * sy, nx * sx])
    c1 = (0.5 * extent[0], 0.42 * extent[1], 0.30 * extent[2])
    c2 = (0.45 * extent[0], 0.35 * extent[1], 0.40 * extent[2])
    return [
        PhantomLesion(center_zyx=tuple(c1[i] / (sz, sy, sx)[i] for i in range(3)), radius_mm=0.06 * extent[1], hu=15.0),
        PhantomLesion(center_zyx=tuple(c2[i] / (sz, sy, sx)[i] for i in range(3)), radius_mm=0.03 * extent[1], hu=20.0),
    ]


def make_phantom(shape_zyx: Sequence[int] = (32, 96, 96), spacing_xyz: Sequence[float] = (2.0, 2.0, 4.0),
                 lesions: Optional[List[PhantomLesion]] = None, noise_hu: float = 8.0, liver_hu: float = 60.0,
                 origin: Sequence[float] = (0.0, 0.0, 0.0), direction: Optional[Sequence[float]] = None,
                 seed: int = 0) -> Phantom:
    """Build a phantom. ``shape_zyx`` voxels, ``spacing_xyz`` mm (x, y, z order, like ImageGeometry).

    ``lesions=None`` uses :func:`default_lesions`; pass ``[]`` for a tumor-free liver. Lesions are
    clipped to the liver; their recorded ``volume_ml`` is the clipped voxel volume.
    """
    rng = np.random.default_rng(seed)
    nz, ny, nx = (int(s) for s in shape_zyx)
    sx, sy, sz = (float(s) for s in spacing_xyz)
    zz, yy, xx = np.meshgrid((np.arange(nz) + 0.5) * sz, (np.arange(ny) + 0.5) * sy,
                             (np.arange(nx) + 0.5) * sx, indexing="ij", sparse=True)
    grid = (zz, yy, xx)
    ez, ey, ex = nz * sz, ny * sy, nx * sx

    hu = np.full((nz, ny, nx), -1000.0, dtype=np.float32)
    body = np.broadcast_to(((yy - 0.5 * ey) / (0.45 * ey)) ** 2 + ((xx - 0.5 * ex) / (0.47 * ex)) ** 2 <= 1.0,
                           hu.shape)
    inner = np.broadcast_to(((yy - 0.5 * ey) / (0.40 * ey)) ** 2 + ((xx - 0.5 * ex) / (0.42 * ex)) ** 2 <= 1.0,
                            hu.shape)
    hu[body] = -100.0          # subcutaneous fat
    hu[inner] = 45.0           # muscle / soft tissue
    fat_pocket = _ellipsoid(grid, (0.5 * ez, 0.5 * ey, 0.62 * ex), (0.6 * ez, 0.10 * ey, 0.12 * ex))
    hu[fat_pocket & inner] = -90.0   # mesenteric fat
    gas = _ellipsoid(grid, (0.5 * ez, 0.32 * ey, 0.68 * ex), (0.25 * ez, 0.05 * ey, 0.06 * ex))
    hu[gas & inner] = -850.0          # bowel gas
    liver = _ellipsoid(grid, (0.5 * ez, 0.40 * ey, 0.32 * ex), (0.42 * ez, 0.22 * ey, 0.20 * ex)) & inner
    kidney_r = _ellipsoid(grid, (0.45 * ez, 0.68 * ey, 0.32 * ex), (0.25 * ez, 0.08 * ey, 0.06 * ex))
    kidney_l = _ellipsoid(grid, (0.50 * ez, 0.68 * ey, 0.68 * ex), (0.25 * ez, 0.08 * ey, 0.06 * ex))
    kidney_r &= ~liver
    hu[kidney_r | kidney_l] = 150.0
    spine = np.broadcast_to(((yy - 0.78 * ey) / (0.07 * ey)) ** 2 + ((xx - 0.5 * ex) / (0.07 * ex)) ** 2 <= 1.0,
                            hu.shape)
    spine_core = np.broadcast_to(((yy - 0.78 * ey) / (0.05 * ey)) ** 2 + ((xx - 0.5 * ex) / (0.05 * ex)) ** 2 <= 1.0,
                                 hu.shape)
    hu[spine] = 700.0
    hu[spine_core] = 250.0
    hu[liver] = liver_hu

    labels = np.zeros((nz, ny, nx), dtype=np.uint8)
    labels[liver] = 1
    if lesions is None:
        lesions = default_lesions((nz, ny, nx), (sz, sy, sx))
    voxel_ml = sx * sy * sz / 1000.0
    for lesion in lesions:
        cz, cy, cx = lesion.center_zyx
        center_mm = ((cz + 0.5) * sz, (cy + 0.5) * sy, (cx + 0.5) * sx)
        r = float(lesion.radius_mm)
        mask = _ellipsoid(grid, center_mm, (r, r, r)) & liver & (labels != 2)
        hu[mask] = lesion.hu
        labels[mask] = 2
        lesion.voxel_count = int(np.count_nonzero(mask))
        lesion.volume_ml = lesion.voxel_count * voxel_ml

    hu += rng.normal(0.0, noise_hu, size=hu.shape).astype(np.float32) * (hu > -950)
    ct_array = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    geometry = ImageGeometry(spacing=(sx, sy, sz), origin=tuple(origin),
                             direction=tuple(direction) if direction is not None else (1, 0, 0, 0, 1, 0, 0, 0, 1))
    return Phantom(ct=CTVolume(array=ct_array, geometry=geometry, source="phantom"), labels=labels,
                   lesions=list(lesions))
