"""Synthetic fluid beside the liver, a training negative: ascites, a perihepatic collection, a pleural effusion.

Fluid of water density lying against the liver's outer surface is not liver and not tumor, but a network that has
seen dark round things inside livers labelled tumor, and never water outside one, may take it for a hypodense lesion
at the liver's edge. On 27 Nov 2026 (stop 72, docs/default_model_v7.md) leave-one-patient-out fold models of three
recipes (v3, v6, v7) called 0.8-3.5 mL of "tumor" on the held-out contrast CT in a water-density region (median about
10 HU) just outside the reference liver, between its posterior-right surface and the ribs. Ascites is common in the
patients liver-tumor CT is taken of (cirrhosis, advanced cancer) and none of the three training patients shows it.

:func:`insert_perihepatic_fluid` puts a layer of water, :attr:`LesionConfig.perihepatic_fluid_hu` plus the liver's
own grain noise, outside the liver on an in-plane angular sector around the liver's centre, up to a thickness drawn
from :attr:`LesionConfig.perihepatic_fluid_thickness_mm` from the liver's surface (a 3D distance, so it also lies
above or below the liver where the stack reaches past it), with a soft outer edge. Only voxels of soft tissue or fat
(:data:`DISPLACEABLE_HU`) change: bone, lung, gas and the padding outside the image stay. Labels stay as they are:
the layer is background. The array's axis order is ``(z, y, x)`` throughout.
"""
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

DISPLACEABLE_HU = (-250.0, 150.0)
"""CT values (HU) fluid may take the place of: fat (about -100) and soft tissue, muscle and bowel wall (30-80),
enhancing bowel up to about 150. Not bone or contrast-filled bowel (above), not lung or gas (below), as ascites
surrounds but does not replace them."""

FLUID_EDGE_MM = 1.0
"""Width (mm, a sigmoid's scale) of the layer's outer edge: partial volume between the fluid and what lies beyond,
as :data:`benchmarks.robustness.FLUID_EDGE_MM` for fluid inside the liver."""

SECTOR_TAPER_DEG = 15.0
"""Angular width (degrees) over which the layer thins to nothing at each end of its sector, so the fluid has no
straight radial cut (a real collection tapers along the surface)."""


def _sector_weight(angles: np.ndarray, direction: float, width: float) -> np.ndarray:
    """Weight 0..1 of each in-plane angle (radians) in a sector of ``width`` radians centred on ``direction``:
    1 inside, tapering to 0 over :data:`SECTOR_TAPER_DEG` at both ends."""
    offset = np.abs(np.angle(np.exp(1j * (angles - direction))))  # distance to the sector's centre, 0..pi
    taper = np.deg2rad(SECTOR_TAPER_DEG)
    return np.clip((0.5 * width - offset) / taper + 0.5, 0.0, 1.0).astype(np.float32)


RIGHT_RAD = float(np.pi)
"""In-plane angle (radians, ``arctan2(y, x)`` in the canonical LPS plane, x towards the patient's left, y towards the
back) of the patient's right: the direction the fluid's reach is measured from. -pi/2 is the front, +pi/2 the back."""


def _kept_within_reach(direction: float, width: float, reach_deg: float) -> Tuple[float, float]:
    """The sector (``direction``, ``width``, radians) kept within ``reach_deg`` of the patient's right
    (:data:`RIGHT_RAD`), its taper (:data:`SECTOR_TAPER_DEG`, half of it beyond the width) included: the width capped
    so that the arc fits, and the drawn direction (uniform over the circle) mapped linearly onto the directions whose
    whole arc stays within reach, so they stay uniform. ``reach_deg`` 180 (the default) keeps the sector as drawn: any
    direction, the random stream and the layer as before this option."""
    if reach_deg >= 180.0:
        return direction, width
    reach = float(np.deg2rad(reach_deg)) - 0.5 * float(np.deg2rad(SECTOR_TAPER_DEG))
    width = min(width, max(2.0 * reach, float(np.deg2rad(SECTOR_TAPER_DEG))))
    spread = max(0.0, reach - 0.5 * width)     # how far the sector's middle may turn from the right
    return RIGHT_RAD + (direction / np.pi - 1.0) * spread, width


def _filled_slices(mask: np.ndarray) -> np.ndarray:
    """``mask`` ``(z, y, x)`` with the holes of each axial slice filled."""
    from scipy.ndimage import binary_fill_holes

    return np.stack([binary_fill_holes(plane) for plane in mask])


def _box_around(mask: np.ndarray, reach_mm: float, spacing_zyx: np.ndarray) -> Tuple[slice, slice, slice]:
    """The index box ``(z, y, x)`` of ``mask`` grown by ``reach_mm`` on every side, within the array."""
    margin = np.ceil(reach_mm / spacing_zyx).astype(int) + 1
    nonzero = np.nonzero(mask)
    return tuple(slice(max(0, int(i.min()) - m), min(n, int(i.max()) + m + 1))
                 for i, m, n in zip(nonzero, margin, mask.shape))


def _touching(room: np.ndarray, outline: np.ndarray) -> np.ndarray:
    """The parts of ``room`` (6-connected components) that touch ``outline``'s outer surface: fluid spreads from
    the liver through soft tissue and fat, so what bone or air cuts off from the liver (muscle beyond a closed rib
    wall) stays as it is."""
    from scipy.ndimage import binary_dilation, label

    components, count = label(room)
    if count == 0:
        return room
    touching = np.unique(components[binary_dilation(outline) & ~outline])
    return np.isin(components, touching[touching > 0])


def insert_perihepatic_fluid(hu: np.ndarray, labels: np.ndarray, spacing_zyx: Sequence[float],
                             rng: np.random.Generator, config: Any) -> List[Dict[str, Any]]:
    """Blend a layer of fluid outside the liver of ``hu`` ``(z, y, x)`` in place; ``labels`` (the same shape, 0/1/2)
    are not changed. ``config``: a :class:`~.synthetic_lesions.LesionConfig` (its ``perihepatic_fluid_*`` ranges).

    The sector's direction is uniform over the whole circle (ascites lies in front of and beside the right lobe, an
    effusion behind it, fluid in the gallbladder fossa or the lesser sac medial to it), its width uniform in
    ``perihepatic_fluid_sector_deg``; with ``perihepatic_fluid_reach_deg`` under 180 the whole arc stays within that
    angle of the patient's right (:func:`_kept_within_reach`; 135 is the benchmark row's: never the medial quarter
    where the vena cava, the hilum and the spine lie, where the any-direction layer cost the posterior right lobe's
    outline in a fine-tune, docs/perihepatic_fluid_lever.md). Returns one info dict (``thickness_mm``,
    ``direction_deg``, ``sector_deg``, ``fluid_hu``, ``voxel_count``: voxels of weight > 0.5), or none when no liver
    or no room beside it.
    """
    from scipy.ndimage import distance_transform_edt

    from .labels import organ

    liver = organ(labels)
    if np.count_nonzero(liver) < config.min_liver_voxels:
        return []
    spacing = np.asarray(spacing_zyx, dtype=float)
    thickness = float(rng.uniform(*config.perihepatic_fluid_thickness_mm))
    direction = float(rng.uniform(0.0, 2.0 * np.pi))
    width = float(np.deg2rad(rng.uniform(*config.perihepatic_fluid_sector_deg)))
    fluid_hu = float(rng.uniform(*config.perihepatic_fluid_hu))
    direction, width = _kept_within_reach(direction, width, float(config.perihepatic_fluid_reach_deg))
    outline = _filled_slices(liver)  # background the liver encloses (the hilum's vessels) is no place for it
    reach_mm = thickness + 3.0 * FLUID_EDGE_MM
    box = _box_around(outline, reach_mm, spacing)  # all the layer can touch: the work stays in it
    outline_box, hu_box = outline[box], hu[box]
    distance = distance_transform_edt(~outline_box, sampling=tuple(spacing)).astype(np.float32)  # mm to the liver
    centre = np.array([np.mean(axis) for axis in np.nonzero(liver)])
    yy, xx = np.meshgrid((np.arange(box[1].start, box[1].stop) - centre[1]) * spacing[1],
                         (np.arange(box[2].start, box[2].stop) - centre[2]) * spacing[2], indexing="ij")
    sector = _sector_weight(np.arctan2(yy, xx), direction, width)  # (y, x), the same on every slice
    edge = 0.5 * (1.0 - np.tanh(0.5 * (distance - np.float32(thickness)) / np.float32(FLUID_EDGE_MM)))
    room = (hu_box >= DISPLACEABLE_HU[0]) & (hu_box <= DISPLACEABLE_HU[1]) & ~outline_box \
        & (distance <= reach_mm) & (sector[None] > 0)
    weight = (edge * sector[None] * _touching(room, outline_box)).astype(np.float32)
    if not (weight > 0.5).any():
        return []
    from .synthetic_lesions import correlated_noise, local_liver_stats

    _, noise_std, rho = local_liver_stats(hu, labels == 1, centre, tuple(spacing), 25.0)
    inner = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(weight > 0))  # within the box
    water = np.float32(fluid_hu) + np.float32(noise_std) * correlated_noise(weight[inner].shape, rho, rng)
    layer = hu_box[inner]  # a view into hu
    layer += weight[inner] * (water - layer)
    return [{"thickness_mm": thickness, "direction_deg": float(np.rad2deg(direction)),
             "sector_deg": float(np.rad2deg(width)), "fluid_hu": fluid_hu,
             "voxel_count": int(np.count_nonzero(weight > 0.5))}]
