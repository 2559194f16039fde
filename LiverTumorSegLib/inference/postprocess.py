"""Post-processing of a liver/tumor label map ``(z, y, x)`` uint8 (0 bg, 1 liver, 2 tumor); each step switchable.

1. ``largest_liver_component``: keep only the largest 3D connected component of the organ (label >= 1,
   i.e. liver with its tumors, 26-connectivity); far-away blobs of either label are removed.
2. ``fill_liver_holes``: background cavities fully enclosed by the organ become liver (3D fill).
3. ``tumor_inside_liver``: tumor components with no voxel within ``liver_dilation_mm`` of the liver -> background.
4. ``min_lesion_ml``: tumor components (26-connectivity) smaller than this become liver.

Everything works on boolean/uint8/int32 arrays (no float volumes); dilation runs on the tumor's bounding
box only.
"""
from dataclasses import asdict, dataclass
from typing import Dict, Sequence, Tuple

import numpy as np

CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)


@dataclass
class PostprocessingOptions:
    """Switches of :func:`postprocess_labels`. ``PostprocessingOptions.disabled()`` turns everything off."""

    largest_liver_component: bool = True
    fill_liver_holes: bool = True
    tumor_inside_liver: bool = True
    liver_dilation_mm: float = 5.0
    min_lesion_ml: float = 0.1

    @classmethod
    def disabled(cls) -> "PostprocessingOptions":
        return cls(largest_liver_component=False, fill_liver_holes=False, tumor_inside_liver=False,
                   min_lesion_ml=0.0)

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Boolean mask of the largest 26-connected component of ``mask`` (all False if empty)."""
    from scipy import ndimage

    components, count = ndimage.label(mask, structure=CONNECTIVITY_26)
    if count <= 1:
        return mask.astype(bool, copy=True)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == int(np.argmax(sizes))


def ellipsoid_structure(radius_mm: float, spacing_zyx: Sequence[float]) -> np.ndarray:
    """Boolean ellipsoid ``(z, y, x)`` of physical radius ``radius_mm`` on a grid of ``spacing_zyx`` mm."""
    half = [int(np.floor(radius_mm / float(s))) for s in spacing_zyx]
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    dist2 = sum((g * float(s)) ** 2 for g, s in zip(grids, spacing_zyx))
    return np.asarray(dist2 <= radius_mm ** 2 + 1e-9)


def _bbox(mask: np.ndarray, margin: Sequence[int]) -> Tuple[slice, ...]:
    where = np.nonzero(mask)
    return tuple(slice(max(0, int(w.min()) - m), min(n, int(w.max()) + m + 1))
                 for w, m, n in zip(where, margin, mask.shape))


def restrict_tumor_to_liver(labels: np.ndarray, spacing_zyx: Sequence[float], dilation_mm: float) -> np.ndarray:
    """Tumor components (26-connected) with no voxel within ``dilation_mm`` of a liver voxel -> background.

    Component-wise, so a lesion filling the liver's edge is kept whole while tumor blobs away from the
    liver go. Works in place on ``labels`` ``(z, y, x)`` and returns it.
    """
    from scipy import ndimage

    tumor = labels == 2
    if not tumor.any():
        return labels
    liver = labels == 1
    if not liver.any():
        labels[tumor] = 0
        return labels
    structure = ellipsoid_structure(max(float(dilation_mm), 0.0), spacing_zyx)
    margin = [s // 2 + 1 for s in structure.shape]
    box = _bbox(tumor, margin)
    near_liver = ndimage.binary_dilation(liver[box], structure=structure)
    components, count = ndimage.label(tumor[box], structure=CONNECTIVITY_26)
    keep = np.zeros(count + 1, dtype=bool)
    keep[np.unique(components[near_liver & (components > 0)])] = True
    keep[0] = True
    labels[box][~keep[components]] = 0
    return labels


def remove_small_lesions(labels: np.ndarray, spacing_zyx: Sequence[float], min_ml: float) -> np.ndarray:
    """Tumor components under ``min_ml`` millilitres become liver (in place)."""
    from scipy import ndimage

    if min_ml <= 0:
        return labels
    components, count = ndimage.label(labels == 2, structure=CONNECTIVITY_26)
    if count == 0:
        return labels
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    sizes_ml = np.bincount(components.ravel()) * voxel_ml
    small = sizes_ml < float(min_ml)
    small[0] = False
    labels[small[components]] = 1
    return labels


def postprocess_labels(labels_zyx: np.ndarray, spacing_zyx: Sequence[float],
                       options: PostprocessingOptions = PostprocessingOptions()) -> np.ndarray:
    """Return a cleaned copy of ``labels_zyx`` (uint8, (z, y, x)); ``spacing_zyx`` in mm."""
    from scipy import ndimage

    labels = np.array(labels_zyx, dtype=np.uint8, copy=True)
    organ = labels >= 1
    if not organ.any():
        return labels
    if options.largest_liver_component:
        keep = largest_component(organ)
        labels[organ & ~keep] = 0
        organ = keep
    if options.fill_liver_holes:
        box = _bbox(organ, (1, 1, 1))
        filled = ndimage.binary_fill_holes(organ[box])
        holes = filled & ~organ[box]
        labels[box][holes] = 1
    if options.tumor_inside_liver:
        restrict_tumor_to_liver(labels, spacing_zyx, options.liver_dilation_mm)
    if options.min_lesion_ml and options.min_lesion_ml > 0:
        remove_small_lesions(labels, spacing_zyx, options.min_lesion_ml)
    return labels
