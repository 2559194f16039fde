"""Post-processing of a liver/tumor label map ``(z, y, x)`` uint8 (0 bg, 1 liver, 2 tumor); each step switchable.

0. ``below_lungs`` (needs the CT in HU and its geometry; skipped without them): the liver lies under the
   diaphragm. Lungs = air (< ``AIR_HU`` = -400 HU) enclosed by the body in an axial slice, in 3D air components that
   reach a *thoracic* slice (enclosed air >= ``AnatomyRules.thorax_air_fraction`` of the body's area; bowel gas stays far
   below that). For every vertical column the lowest lung voxel gives the diaphragm height (an index column
   (y, x) of an axial grid; on a grid tilted from axial, a vertical line of the patient in LPS mm); columns
   without lung within ``heart_reach_mm`` of a lung column (the heart, the mediastinum) take the height of
   the nearest lung column. Organ voxels more than ``lung_margin_mm`` above that height are removed: the
   heart and lung-base tissue called liver goes, while the dome under the lung (the lung lies *above* it in
   the same columns) stays.
1. ``largest_liver_component``: keep only one 3D connected component of the organ (label >= 1, i.e. liver
   with its tumors, 26-connectivity), the largest one that holds any liver (label 1) voxel, so a tumor-only
   blob larger than the liver beside it never wins (it had been kept, then removed with the liver it displaced);
   far-away blobs of either label are removed.
2. ``fill_liver_holes``: background cavities fully enclosed by the organ (3D fill; per slice on the scan's
   first and last slices) take the label around them: liver, or tumor for a core inside a tumor.
3. ``tumor_inside_liver``: tumor components with no voxel within ``liver_dilation_mm`` of the liver -> background.
4. ``tubular_lesions_to_liver``: tumor components that are tube-like (PCA of the component's voxel
   positions in mm: ``sqrt(l1 / l2) >= tube_elongation`` and cross-section ``4 sqrt(l2) <= tube_max_width_mm``,
   i.e. a vessel segment, not a round lesion), no thicker than that anywhere, and, with a CT, no more than
   ``tube_darker_hu`` darker than the liver around them on average and where they are thickest (there allowing for
   the noise of that core's mean, at most ``CORE_NOISE_ALLOWANCE_MAX_HU``) -> liver.
5. ``min_lesion_ml``: tumor components (26-connectivity) smaller than this become liver.
6. ``min_lesion_probability`` (needs the network's tumor probability; skipped without it): tumor components
   smaller than ``uncertain_lesion_max_ml`` whose tumor probability is below this become liver. A lesion's
   probability is its ``lesion_probability_statistic``: ``"mean"`` (the default) or ``"peak"`` (its largest), over
   the voxels the network labelled tumor (a core step 2 made tumor, background to the network, does not count);
   None is the model's (its package may record ``"peak"``: a network trained with the per-lesion loss term is sure
   somewhere inside a true lesion and lukewarm throughout a false one, ``docs/lesion_peak_probability.md``). Chosen
   from lesion statistics of held-out patients (``docs/lesion_confidence.md``): 0.65 removed 41 % of the false
   lesions there and no true one; larger components are never removed for low confidence (a large isodense
   tumor is better shown and doubted than hidden). A probability threshold belongs to the network whose
   probabilities it reads: None (the default) is the model's, the threshold its package records
   (:func:`~LiverTumorSegLib.package.package_min_lesion_probability`), else
   :data:`DEFAULT_MIN_LESION_PROBABILITY`; ``segment`` resolves it once the package is known
   (:func:`with_min_lesion_probability`), and :func:`postprocess_labels` called without a package takes 0.65.

All work happens in the canonical orientation (z = superior) on the organ's bounding box: one organ
labelling and one tumor labelling (steps 3-6 share it), plus one labelling of the enclosed air on a grid
of about ``lung_grid_mm`` in-plane. Boolean/uint8/int32 arrays only, no float volumes (per-lesion means read the
lesion voxels only). The fixed thresholds named above are the fields of :class:`AnatomyRules`.
"""
from dataclasses import asdict, dataclass, replace
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError
from ..metrics.surface import bounding_box
from ..robust_stats import robust_std
from .thresholds import threshold_for

CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)
AIR_HU = -400.0                                       # below: air (lung parenchyma is about -850 HU)
IN_PLANE_4 = np.zeros((3, 3, 3), dtype=bool)
IN_PLANE_4[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]   # per-slice 2D operations in one 3D call
CROSS_6 = IN_PLANE_4.copy()                            # 6-connectivity (binary_fill_holes' default)
CROSS_6[0, 1, 1] = CROSS_6[2, 1, 1] = True


DEFAULT_MIN_LESION_PROBABILITY = 0.65
"""The lesion confidence threshold (step 6) of a model whose package records none: every model before v11's
candidate was read at it (``docs/lesion_confidence.md``)."""

LESION_PROBABILITY_STATISTICS = ("mean", "peak")
"""What step 6 compares with its threshold, per lesion: the mean or the largest (peak) tumor probability of the
voxels the network labelled tumor."""

DEFAULT_LESION_PROBABILITY_STATISTIC = "mean"
"""Step 6's statistic for a model whose package records none (every model before the peak was measured)."""


@dataclass(frozen=True)
class PostprocessingOptions:
    """Switches of :func:`postprocess_labels`. ``PostprocessingOptions.disabled()`` turns everything off.
    Frozen, like :class:`~.options.SegmentationOptions` that holds it: change with ``dataclasses.replace``.
    ``min_lesion_probability`` and ``lesion_probability_statistic`` None: the model's (step 6 of the module's
    docstring)."""

    largest_liver_component: bool = True
    fill_liver_holes: bool = True
    tumor_inside_liver: bool = True
    liver_dilation_mm: float = 5.0
    min_lesion_ml: float = 0.1
    below_lungs: bool = True
    tubular_lesions_to_liver: bool = True
    min_lesion_probability: Optional[float] = None
    lesion_probability_statistic: Optional[str] = None
    uncertain_lesion_max_ml: float = 5.0
    air_to_background: bool = True

    @classmethod
    def disabled(cls) -> "PostprocessingOptions":
        return cls(largest_liver_component=False, fill_liver_holes=False, tumor_inside_liver=False,
                   min_lesion_ml=0.0, below_lungs=False, tubular_lesions_to_liver=False, min_lesion_probability=0.0,
                   air_to_background=False)

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)


def with_min_lesion_probability(options: PostprocessingOptions, model_threshold: Optional[float],
                                model_statistic: Optional[str] = None) -> PostprocessingOptions:
    """``options`` with a ``min_lesion_probability`` of None (the model's) replaced by ``model_threshold`` (the
    package's recorded threshold; None: :data:`DEFAULT_MIN_LESION_PROBABILITY`) and a
    ``lesion_probability_statistic`` of None by ``model_statistic`` (the package's; None:
    :data:`DEFAULT_LESION_PROBABILITY_STATISTIC`); a value already set stays."""
    filled = {}  # type: Dict[str, Any]
    if options.min_lesion_probability is None:
        filled["min_lesion_probability"] = (DEFAULT_MIN_LESION_PROBABILITY if model_threshold is None
                                            else float(model_threshold))
    if options.lesion_probability_statistic is None:
        filled["lesion_probability_statistic"] = model_statistic or DEFAULT_LESION_PROBABILITY_STATISTIC
    return replace(options, **filled) if filled else options


@dataclass(frozen=True)
class AnatomyRules:
    """Fixed parameters of ``below_lungs`` and ``tubular_lesions_to_liver`` (mm, HU fractions, mL)."""

    lung_margin_mm: float = 10.0        # organ this far above the diaphragm height of its column is removed
    heart_reach_mm: float = 60.0        # lung-free columns within this of a lung column use its height
    thorax_air_fraction: float = 0.15   # enclosed air / body area that makes an axial slice thoracic
    lung_grid_mm: float = 4.0           # in-plane step of the coarse grid the lungs are found on
    min_lung_ml: float = 10.0           # smaller enclosed-air components are not lungs
    lung_thorax_share: float = 0.5      # a lung has at least this share of its volume in thoracic slices
    lung_min_median_hu: float = -900.0  # lung parenchyma (about -850 HU); gas (about -1000) has a lower median
    gas_hu: float = -900.0              # below: gas rather than lung parenchyma (voxel values)
    gas_core_hu: float = -950.0         # below: a gas bubble's core, whose 26 neighbours are its partial-volume shell
    tube_elongation: float = 3.0        # sqrt(l1 / l2) of a tube-like tumor component ...
    tube_max_width_mm: float = 15.0     # ... whose cross-section 4 sqrt(l2) is at most this ...
    tube_darker_hu: float = 15.0        # ... and whose mean HU is at most this below the liver's: a vessel
    tube_liver_reach_mm: float = 5.0    # the liver within this of the tumors is what a tube is compared with


RULES = AnatomyRules()


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Boolean mask of the largest 26-connected component of ``mask`` (all False if empty)."""
    from scipy import ndimage

    components, count = ndimage.label(mask, structure=CONNECTIVITY_26)
    return largest_labelled_component(components, count)


COUNT_CHUNK_VOXELS = 1 << 22
"""Voxels counted per ``np.bincount`` call in :func:`label_counts` (4 Mi: a 32 MiB int64 copy at most)."""


def label_counts(ids: np.ndarray, count: int, region: Optional[np.ndarray] = None, value: int = 0) -> np.ndarray:
    """Voxels per label ``0..count`` of the int labels ``ids`` (``(z, y, x)``, as ``ndimage.label`` gives them),
    with ``region`` (same shape) only where ``region == value``: ``np.bincount(ids.ravel())`` or
    ``np.bincount(ids[region == value])`` with ``minlength=count + 1``, counted a slab of slices at a time when
    ``ids`` holds more than :data:`COUNT_CHUNK_VOXELS`. ``np.bincount`` casts its whole input to int64 (8 bytes a
    voxel beside an int32 labelling of 4), and ``ids[region == value]`` is a mask and a copy: together they made
    post-processing's peak 14 bytes a voxel of the organ's box (its whole grid for a large organ)."""
    ids = np.asarray(ids)
    if ids.size <= COUNT_CHUNK_VOXELS or ids.ndim == 0:  # one call, as before
        return np.bincount(ids.ravel() if region is None else ids[np.asarray(region) == value],
                           minlength=int(count) + 1)
    counts = np.zeros(int(count) + 1, dtype=np.intp)
    step = max(1, COUNT_CHUNK_VOXELS // max(1, int(np.prod(ids.shape[1:], dtype=np.int64))))
    for start in range(0, ids.shape[0], step):
        part = ids[start:start + step]
        if region is not None:
            part = part[np.asarray(region)[start:start + step] == value]
        part = np.bincount(part.ravel(), minlength=int(count) + 1)
        if part.size > counts.size:  # a label above count: longer, as np.bincount's own answer would be
            part[:counts.size] += counts
            counts = part
        else:  # (as long, or shorter than a slab before held: a label above count there; the review)
            counts[:part.size] += part
    return counts


def largest_labelled_component(components: np.ndarray, count: int) -> np.ndarray:
    """Boolean mask of the largest of the ``count`` components ``ndimage.label`` numbered in ``components``
    (all False when there are none): :func:`largest_component` for a caller that needs the labelling too."""
    if count <= 1:
        return components > 0
    sizes = label_counts(components, count)
    sizes[0] = 0
    return components == int(np.argmax(sizes))


def largest_part_holding_liver(components: np.ndarray, count: int, labels: np.ndarray,
                               sizes: Optional[np.ndarray] = None) -> int:
    """Number (1..``count``) of the largest organ part of ``components`` (``ndimage.label`` of ``labels >= 1``,
    same grid) that holds any liver (label 1 in ``labels``); without liver anywhere, the largest part; 0 when there
    is none. ``sizes``: the parts' voxel counts (index 0 ignored) when the caller has them. A tumor-only blob larger
    than the liver (901 mL of tumor beside 512 mL of liver, 1.6 mm apart) was kept, then removed as tumor outside
    the liver; the part with the most liver label would instead drop a real liver that is mostly tumor beside a
    smaller liver-only blob."""
    if count == 0:
        return 0
    sizes = np.array(label_counts(components, count) if sizes is None else sizes, copy=True)
    sizes[0] = 0
    liver_sizes = label_counts(components, count, labels, 1)
    with_liver = np.where(liver_sizes > 0, sizes, 0)
    return int(np.argmax(with_liver if with_liver.max() > 0 else sizes))


def ellipsoid_structure(radius_mm: float, spacing_zyx: Sequence[float]) -> np.ndarray:
    """Boolean ellipsoid ``(z, y, x)`` of physical radius ``radius_mm`` on a grid of ``spacing_zyx`` mm."""
    half = [int(np.floor(radius_mm / float(s))) for s in spacing_zyx]
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    dist2 = sum((g * float(s)) ** 2 for g, s in zip(grids, spacing_zyx))
    return np.asarray(dist2 <= radius_mm ** 2 + 1e-9)


def enclosed_background(mask: np.ndarray, structure: np.ndarray) -> np.ndarray:
    """Voxels outside ``mask`` that are not connected (by ``structure``) to the array's border: the holes
    ``scipy.ndimage.binary_fill_holes(mask, structure)`` fills, from one labelling instead of an iterative
    dilation (much faster on large volumes). With the in-plane ``IN_PLANE_4`` structure the border is each
    slice's edge (holes per axial slice)."""
    components, count = compact_label(~mask, structure)
    if count == 0:
        return np.zeros(mask.shape, dtype=bool)
    touches = np.zeros(count + 1, dtype=bool)
    per_slice = not structure[0].any() and not structure[2].any()
    axes = (1, 2) if per_slice else (0, 1, 2)
    for axis in axes:
        for index in (0, -1):
            face = np.take(components, index, axis=axis)
            touches[np.unique(face)] = True
    touches[0] = True
    if touches.all():  # no hole (the usual case): the lookup over the whole box took 0.014 s of a 300-slice CT
        return np.zeros(mask.shape, dtype=bool)
    enclosed = ~touches  # per component: inverted before the lookup, so no second mask of the box is made
    return _components_in(components, enclosed)


FEW_COMPONENTS = 8
"""Up to this many components are picked out of a labelling by comparisons (:func:`_components_in`)."""


def _components_in(components: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """``chosen[components]`` (``chosen``: bool per component number, 0 included): with few numbers chosen, or few
    left out, by one comparison of the labelling per number (0.001 s each on a 300-slice CT's liver box, against
    0.014 s for the lookup); else by the lookup."""
    picked = np.flatnonzero(chosen)
    left_out = np.flatnonzero(~chosen)
    if picked.size <= min(FEW_COMPONENTS, left_out.size):
        found = np.zeros(components.shape, dtype=bool)
        for number in picked:
            found |= components == int(number)  # a Python int: compared as the labelling's own type
        return found
    if left_out.size <= FEW_COMPONENTS:
        found = np.ones(components.shape, dtype=bool)
        for number in left_out:
            found &= components != int(number)
        return found
    return chosen[components]


def compact_label(mask: np.ndarray, structure: np.ndarray) -> Tuple[np.ndarray, int]:
    """``scipy.ndimage.label(mask, structure)`` (same numbering) into uint16 when the components fit (2 bytes a
    voxel instead of int32's 4: the hole fill's labelling of the organ's box was post-processing's largest
    array beside the label map), else int32 as ndimage gives it. Past 65535 components the int32 labelling runs
    after the uint16 array and the failed attempt's traceback (which holds ndimage's int32 retry array) are let go:
    run inside the ``except`` block it held them (10 bytes a voxel against ndimage's 4)."""
    from scipy import ndimage

    components = np.empty(np.shape(mask), dtype=np.uint16)
    try:
        return components, int(ndimage.label(mask, structure=structure, output=components))
    except RuntimeError as error:  # more than 65535 components: 'insufficient bit-depth in requested output type'
        if "bit-depth" not in str(error):
            raise
    del components
    components, count = ndimage.label(mask, structure=structure)
    return components, int(count)


# ------------------------------------------------------------------------------------------ lungs

def lung_mask(hu: np.ndarray, spacing_zyx: Sequence[float], options: PostprocessingOptions
              ) -> Tuple[Optional[np.ndarray], int]:
    """Lungs on a coarse grid: ``(mask (z, y // s, x // s) bool or None, s)`` for a canonical HU volume.

    Enclosed air = air inside the body outline of its axial slice; lungs = 6-connected enclosed-air
    components of at least ``min_lung_ml`` that lie mostly (``lung_thorax_share``) in thoracic slices
    (enclosed air >= ``thorax_air_fraction`` of the body area) and have a lung's density (median >=
    ``lung_min_median_hu``). None when there is no such component (no chest in the scan). Bowel or stomach
    gas is not lung: a gas component reaching from the abdomen into a thoracic slice counted as lung, and
    its lowest voxel then removed the true liver above it (304 mL of a real CT). A lung whose median is
    below -900 HU (severe emphysema) is missed too; the step then removes nothing, which is the safe side.
    """
    from scipy import ndimage

    step = max(1, int(round(RULES.lung_grid_mm / max(min(float(spacing_zyx[1]), float(spacing_zyx[2])), 1e-6))))
    coarse = hu[:, ::step, ::step]
    air = coarse < threshold_for(coarse, AIR_HU)
    enclosed = enclosed_background(~air, IN_PLANE_4)       # air inside the body outline, per slice
    body = enclosed | ~air
    area = body.sum(axis=(1, 2))
    thorax = enclosed.sum(axis=(1, 2)) >= RULES.thorax_air_fraction * np.maximum(area, 1)
    thorax &= area > 0
    if not thorax.any():
        return None, step
    components, count = ndimage.label(enclosed)
    if count == 0:
        return None, step
    voxel_ml = float(spacing_zyx[0]) * float(spacing_zyx[1]) * float(spacing_zyx[2]) * step * step / 1000.0
    voxels = np.bincount(components.ravel(), minlength=count + 1)
    sizes_ml = voxels * voxel_ml
    in_thorax = np.bincount(components[thorax].ravel(), minlength=count + 1)
    keep = (in_thorax >= RULES.lung_thorax_share * voxels) & (sizes_ml >= RULES.min_lung_ml)
    keep[0] = False
    candidates = np.flatnonzero(keep)
    if candidates.size:
        medians = np.atleast_1d(ndimage.median(coarse, components, candidates))
        keep[candidates[np.asarray(medians, dtype=np.float64) < RULES.lung_min_median_hu]] = False
    if not keep.any():
        return None, step
    return keep[components], step


BODY_ON_SIDE_SHARE = 0.05
"""The body reaches an image side when at least this share of that side's column (over all slices) is not air: a
field of view cut through the chest (chest wall, ribs, lung) or arms at the edge; the shared abdominal CT cropped
to the abdomen touches its sides with 1 % (a table's or an arm's tip)."""


def body_on_image_sides(hu: np.ndarray, step: int = 1) -> bool:
    """Whether the body (not air, :data:`AIR_HU`) fills :data:`BODY_ON_SIDE_SHARE` or more of the first or last
    column (x, the left-right axis) of a canonical HU volume ``(z, y, x)``, read every ``step``-th row: a field of
    view narrower than the body, where :func:`lung_mask` cannot tell lung at the edge from the air outside it."""
    sides = np.asarray(hu)[:, ::step, [0, -1]] >= AIR_HU
    return bool(sides.mean(axis=(0, 1)).max() >= BODY_ON_SIDE_SHARE) if sides.size else False


def lung_parenchyma(lungs: np.ndarray, hu: np.ndarray) -> np.ndarray:
    """The voxels of ``lungs`` (coarse grid, z superior) that set a column's diaphragm height: lung density
    (>= ``gas_hu``), no gas of ``lungs`` directly above, and none of the 26 neighbours of a gas core (below
    ``gas_core_hu``). Gas touching a lung base through a thin diaphragm (5 mm slices) joins the lung's air
    component, and its lowest voxel, under the liver, then set the column's height and removed the liver above it;
    gas (about -1000 HU) does not count, nor does the partial-volume layer at a gas bubble's floor (gas above it)
    nor the shell around its core: the layer over the gas, part gas and part tissue on a CT's normal blur, removed
    43 mL of a blurred phantom's liver and 72 mL of a left lobe over gastric gas on 5 mm slabs (the post-processing
    audit). The shell is grown around the cores only: grown around every voxel below ``gas_hu``, which normal lung
    holds too, it thinned the lung bases and weakened the heart's removal (0.36 -> 0.32 of a noisy phantom's heart;
    the review). A gas layer blurred to lung density (about -820 HU) is lung to this rule (a known limit). A lung
    under the heart's lateral bulge still counts (the heart above it is what the step removes)."""
    from scipy import ndimage

    gas = lungs & (hu < RULES.gas_hu)
    result = lungs & ~gas
    result[:-1] &= ~gas[1:]
    cores = lungs & (hu < RULES.gas_core_hu)
    if cores.any():
        result &= ~ndimage.binary_dilation(cores, structure=CONNECTIVITY_26)
    return result


def diaphragm_height(lungs: np.ndarray, spacing_zyx: Sequence[float], step: int, reach_mm: float) -> np.ndarray:
    """Per coarse column ``(y, x)``: the lowest lung slice index; columns without lung within ``reach_mm``
    of a lung column take the nearest one's value; farther columns get a value above every slice."""
    lowest = np.argmax(lungs, axis=0).astype(np.float32)
    sampling = (float(spacing_zyx[1]) * step, float(spacing_zyx[2]) * step)
    return _nearest_within(lowest, lungs.any(axis=0), sampling, reach_mm)


def _nearest_within(values: np.ndarray, has: np.ndarray, sampling: Sequence[float], reach_mm: float) -> np.ndarray:
    """``values`` (2-D) where ``has``; elsewhere the value of the nearest cell with ``has`` (``sampling``: the cells'
    size in mm per axis) when it lies within ``reach_mm``, else +inf (above every height: nothing is removed there).
    The fill of both the index columns of a level grid and the vertical columns of a tilted one."""
    from scipy import ndimage

    distance, (iy, ix) = ndimage.distance_transform_edt(~has, sampling=sampling, return_indices=True)
    filled = values[iy, ix]
    filled[distance > reach_mm] = np.inf
    return filled


def find_lungs(hu: np.ndarray, spacing_zyx: Sequence[float], options: PostprocessingOptions
               ) -> Tuple[Optional[np.ndarray], int]:
    """The lung parenchyma (:func:`lung_parenchyma` of :func:`lung_mask`) of a canonical HU volume on the coarse
    grid: ``(mask (z, y // s, x // s) bool, or None where the scan holds no lung, s)``."""
    lungs, step = lung_mask(hu, spacing_zyx, options)
    if lungs is None:
        return None, step
    lungs = lung_parenchyma(lungs, hu[:, ::step, ::step])
    return (lungs if lungs.any() else None), step


def true_indices(mask: np.ndarray) -> Tuple[np.ndarray, ...]:
    """``np.nonzero(mask)`` of a boolean ``(z, y, x)`` mask, found flat and unravelled: the same index arrays, in
    the same order, about 20 times faster where few voxels are True (``np.nonzero`` of a 3-D mask took 0.14 s on a
    20-million-voxel organ box, ``np.flatnonzero`` 0.007 s)."""
    mask = np.ascontiguousarray(mask)
    return np.unravel_index(np.flatnonzero(mask), mask.shape)


LEVEL_GRID_MAX_TILT_DEGREES = 1.0
"""A canonical grid whose slice axis is within this angle of the superior direction is level: the lung-base rule
compares the voxels of an index column (:func:`remove_above_lungs`). A grid tilted more (gantry tilt, an oblique
reformat) is judged in vertical columns of the patient instead: an index column of a grid tilted 15-30 degrees
crosses from the liver's dome into the lung recess below its side, whose lowest voxel then removed 16-87 mL of
dome liver of a chest phantom."""


def superior_tilt_degrees(direction: np.ndarray) -> float:
    """The angle, degrees, between the slice axis (column 2, k) of a 3 x 3 LPS ``direction`` matrix (unit columns)
    and the superior direction (LPS +z): 0 for an axial grid with z up, 180 for one with z down. Unlike
    :func:`~LiverTumorSegLib.validation.slice_tilt_degrees` (the slices' normal, either way up, of any storage
    order), a grid not canonical reads far from level here and is judged in the patient's vertical columns, which
    hold for any grid, rather than in index columns taken as vertical and upward."""
    k_axis = np.asarray(direction, dtype=np.float64).reshape(3, 3)[:, 2]
    cosine = float(k_axis[2] / max(float(np.linalg.norm(k_axis)), 1e-12))
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def remove_above_lungs(labels: np.ndarray, hu: np.ndarray, spacing_zyx: Sequence[float],
                       options: PostprocessingOptions, removed_tumor: Optional[list] = None,
                       found_lungs: Optional[Tuple[Optional[np.ndarray], int]] = None,
                       removed_tumor_at: Optional[list] = None, direction: Optional[np.ndarray] = None) -> int:
    """Canonical ``labels`` (z up): organ voxels more than ``lung_margin_mm`` above the diaphragm height of
    their column -> 0, in place. Returns the number of voxels removed; ``removed_tumor`` (a list) receives
    how many of them were tumor (label 2). ``found_lungs``: :func:`find_lungs` of ``hu`` where already found.
    ``removed_tumor_at`` (a list) receives the ``(n, 3)`` int indices ``(z, y, x)`` in ``labels`` of the tumor
    voxels removed (nothing when none were), for :func:`removed_tumor_components`. ``direction``: the grid's 3 x 3
    LPS direction matrix (columns: the unit vectors of the x, y, z index axes); on a grid tilted more than
    :data:`LEVEL_GRID_MAX_TILT_DEGREES` from axial a column is a vertical line of the patient
    (:func:`_above_diaphragm_tilted`), else an index column (None: the grid is axial)."""
    organ_z = np.flatnonzero(labels.any(axis=(1, 2)))  # uint8 0/1/2: nonzero is organ, no whole-volume mask
    if organ_z.size == 0:
        return 0
    lungs, step = find_lungs(hu, spacing_zyx, options) if found_lungs is None else found_lungs
    if lungs is None:
        return 0
    box = bounding_box(labels)  # nonzero = organ; not None: the organ is present (checked above)
    region = labels[box]
    if direction is not None and superior_tilt_degrees(direction) > LEVEL_GRID_MAX_TILT_DEGREES:
        above = _above_diaphragm_tilted(lungs, step, region, box, spacing_zyx, direction, labels.shape)
    else:
        above = _above_diaphragm_level(lungs, step, box, spacing_zyx, labels.shape)
    remove = above & (region >= 1)
    count = int(np.count_nonzero(remove))
    if count:
        if removed_tumor is not None or removed_tumor_at is not None:
            tumor_gone = remove & (region == 2)
            if removed_tumor is not None:
                removed_tumor.append(int(np.count_nonzero(tumor_gone)))
            if removed_tumor_at is not None and tumor_gone.any():
                removed_tumor_at.append(np.stack(true_indices(tumor_gone), axis=1)
                                        + np.asarray([b.start for b in box]))
        region[remove] = 0
    return count


def _above_diaphragm_level(lungs: np.ndarray, step: int, box: Tuple[slice, ...], spacing_zyx: Sequence[float],
                           shape_zyx: Sequence[int]) -> np.ndarray:
    """Bool over ``box`` of an axial grid ``(z, y, x)``: the voxels more than ``lung_margin_mm`` above the lowest
    lung voxel of their index column (:func:`diaphragm_height`)."""
    height = diaphragm_height(lungs, spacing_zyx, step, RULES.heart_reach_mm)
    ny, nx = shape_zyx[1:]
    # (y, x) slice index: each full-resolution column takes the highest height of the coarse samples around it
    # (the sample at its block's corner alone could lie up to 3 mm across a diaphragm step and remove liver)
    below_y, below_x = np.arange(ny) // step, np.arange(nx) // step
    above_y = np.minimum(below_y + (np.arange(ny) % step > 0), height.shape[0] - 1)
    above_x = np.minimum(below_x + (np.arange(nx) % step > 0), height.shape[1] - 1)
    full = np.maximum.reduce([height[ys][:, xs] for ys in (below_y, above_y) for xs in (below_x, above_x)])
    margin = RULES.lung_margin_mm / float(spacing_zyx[0])
    z = np.arange(box[0].start, box[0].stop, dtype=np.float32)[:, None, None]
    return z > (full[box[1], box[2]] + np.float32(margin))[None]


def _above_diaphragm_tilted(lungs: np.ndarray, step: int, region: np.ndarray, box: Tuple[slice, ...],
                            spacing_zyx: Sequence[float], direction: np.ndarray, shape_zyx: Sequence[int],
                            chunk: int = 16) -> np.ndarray:
    """Bool over ``box`` of a tilted canonical grid ``(z, y, x)``: the organ voxels (``region >= 1``) more than
    ``lung_margin_mm`` above the diaphragm of their vertical column of the patient. The lung voxels (coarse grid
    ``lungs``, every ``step``-th row and column) are placed in LPS mm (``direction``, spacing; the origin cancels)
    and binned on a horizontal (L, P) grid of ``step`` in-plane pixels; a cell's height is the S position of its
    lowest lung voxel, a cell without lung takes the nearest lung cell's within ``heart_reach_mm`` and none (no
    removal) beyond, as :func:`diaphragm_height` does per index column. An organ voxel takes the highest height of
    the four cells around its (L, P) position, as an axial grid's columns take their four coarse samples'."""
    spacing_xyz = np.asarray([float(v) for v in spacing_zyx[::-1]], dtype=np.float64)
    to_mm = np.asarray(direction, dtype=np.float64).reshape(3, 3) * spacing_xyz[None, :]  # (i, j, k) -> LPS offset
    corners = np.array([[i, j, k] for i in (0, shape_zyx[2] - 1) for j in (0, shape_zyx[1] - 1)
                        for k in (0, shape_zyx[0] - 1)], dtype=np.float64) @ to_mm.T
    low = corners[:, :2].min(axis=0)
    cell = float(step) * float(min(spacing_xyz[0], spacing_xyz[1]))
    cells = np.floor((corners[:, :2].max(axis=0) - low) / cell).astype(np.int64) + 1   # (L, P) cell counts
    lz, ly, lx = true_indices(lungs)
    lung_mm = np.stack([lx * float(step), ly * float(step), lz.astype(np.float64)], axis=1) @ to_mm.T
    at = np.floor((lung_mm[:, :2] - low) / cell).astype(np.int64)
    lowest = np.full((int(cells[1]), int(cells[0])), np.inf)                             # (P, L)
    np.minimum.at(lowest, (at[:, 1], at[:, 0]), lung_mm[:, 2])
    height = _nearest_within(lowest, np.isfinite(lowest), (cell, cell), RULES.heart_reach_mm)
    above = np.zeros(region.shape, dtype=bool)
    starts = np.asarray([b.start for b in box], dtype=np.float64)
    for first in range(0, region.shape[0], chunk):
        block = region[first:first + chunk]
        oz, oy, ox = true_indices(block >= 1)
        if oz.size == 0:
            continue
        index = np.stack([ox + starts[2], oy + starts[1], oz + first + starts[0]], axis=1)
        organ_mm = index @ to_mm.T
        where = (organ_mm[:, :2] - low) / cell - 0.5                                   # from cell centres
        below = np.clip(np.floor(where).astype(np.int64), 0, cells - 1)
        beyond = np.clip(below + 1, 0, cells - 1)
        full = np.maximum.reduce([height[py, px] for py in (below[:, 1], beyond[:, 1])
                                  for px in (below[:, 0], beyond[:, 0])])
        above[first:first + chunk][oz, oy, ox] = organ_mm[:, 2] > full + RULES.lung_margin_mm
    return above


# ------------------------------------------------------------------------------------------ tumors

def component_shape(components: np.ndarray, count: int, spacing_zyx: Sequence[float]
                    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per component 1..count: ``(voxels, elongation sqrt(l1 / l2), width 4 sqrt(l2) mm)`` from the
    eigenvalues ``l1 >= l2 >= l3`` of the covariance of its voxel positions in mm (index 0 unused)."""
    where = np.nonzero(components)
    ids = components[where]
    n = np.bincount(ids, minlength=count + 1).astype(np.float64)
    coords = [w.astype(np.float64) * float(s) for w, s in zip(where, spacing_zyx)]
    safe_n = np.maximum(n, 1.0)
    means = [np.bincount(ids, weights=c, minlength=count + 1) / safe_n for c in coords]
    cov = np.zeros((count + 1, 3, 3))
    for a in range(3):
        for b in range(a, 3):
            value = np.bincount(ids, weights=coords[a] * coords[b], minlength=count + 1) / safe_n - means[a] * means[b]
            cov[:, a, b] = cov[:, b, a] = value
    eig = np.clip(np.linalg.eigvalsh(cov)[:, ::-1], 0.0, None)          # descending
    elongation = np.sqrt(eig[:, 0] / np.maximum(eig[:, 1], 1e-6))
    width = 4.0 * np.sqrt(eig[:, 1])
    return n, elongation, width


def restrict_tumor_to_liver(labels: np.ndarray, spacing_zyx: Sequence[float], dilation_mm: float) -> np.ndarray:
    """Tumor components (26-connected) with no voxel within ``dilation_mm`` of a liver voxel -> background.

    Component-wise, so a lesion filling the liver's edge is kept whole while tumor blobs away from the
    liver go. Works in place on ``labels`` ``(z, y, x)`` and returns it.
    """
    options = PostprocessingOptions(liver_dilation_mm=dilation_mm, min_lesion_ml=0.0, tubular_lesions_to_liver=False)
    return clean_tumors(labels, spacing_zyx, options)


def remove_small_lesions(labels: np.ndarray, spacing_zyx: Sequence[float], min_ml: float) -> np.ndarray:
    """Tumor components of a ``(z, y, x)`` 0/1/2 map under ``min_ml`` millilitres become liver (in place), or
    background where they touch no liver (a piece of 'liver' apart from the liver is what the largest-component step
    drops); ``spacing_zyx``: voxel size in mm, same axis order."""
    if min_ml <= 0:
        return labels
    options = PostprocessingOptions(tumor_inside_liver=False, min_lesion_ml=min_ml, tubular_lesions_to_liver=False)
    return clean_tumors(labels, spacing_zyx, options)


VOLUME_ROUNDING_RTOL = 1e-6
"""Relative difference under which a volume equals a threshold (:func:`volume_below`): float rounding of the voxel
volume, float32 header spacings included (a NIfTI pixdim of 0.7 reads 0.699999988 mm, 1.7e-8 under; a tilted
float32 affine's axes are up to a few 1e-7 off)."""


def volume_below(volume_ml: np.ndarray, threshold_ml: float) -> np.ndarray:
    """``volume_ml < threshold_ml``, where a volume equal to the threshold up to rounding
    (:data:`VOLUME_ROUNDING_RTOL`) is not below it: 100 voxels of 3 x 0.7 x 0.7 mm are 0.147 mL, but their product in
    floats is 0.14699999999999996, and ``--min-lesion-ml 0.147`` made such a lesion liver although the rule keeps
    lesions of exactly the minimum; read from a NIfTI file (float32 pixdim 0.699999988 mm) it still did at 1e-9."""
    volume_ml = np.asarray(volume_ml, dtype=np.float64)
    return (volume_ml < threshold_ml) & ~np.isclose(volume_ml, threshold_ml, rtol=VOLUME_ROUNDING_RTOL, atol=0.0)


def _vessel_like_density(components: np.ndarray, count: int, region: np.ndarray, hu: np.ndarray,
                         voxels: np.ndarray, spacing_zyx: Sequence[float], candidates: np.ndarray,
                         labels: Optional[np.ndarray] = None, all_hu: Optional[np.ndarray] = None) -> np.ndarray:
    """Per component ``0..count``: whether its mean HU, and that where it is thickest
    (:func:`_thickest_core_mean_hu`), are at least the median HU of the liver around it minus ``tube_darker_hu`` (a
    vessel: bright with contrast, a little darker than liver without; tumors are typically 20-70 HU darker). The
    liver around a component is the liver (label 1 in ``region``) within ``tube_liver_reach_mm`` of it; without any
    there, the liver of ``region``, then of the whole ``labels`` (with ``all_hu`` on its grid); True when there is
    no liver at all to compare with (shape alone decides, as without a CT). Only ``candidates`` (the tube-shaped
    components) are judged; the others are False. The liver around all tumors together made one lesion's fate depend
    on another's: a tube 30 HU darker than its own liver became liver beside a lesion in fatty liver 12 cm away."""
    from scipy import ndimage

    judged = np.zeros(count + 1, dtype=bool)
    mean = component_sums(components, count, hu) / np.maximum(np.asarray(voxels, dtype=np.float64)[:count + 1], 1.0)
    reach_mm = float(RULES.tube_liver_reach_mm)
    half = reach_voxels(reach_mm, spacing_zyx)
    fallback = []  # type: list  # the wider reference, computed once when a component has no liver around it

    def wider_reference() -> Optional[float]:
        if not fallback:
            liver = region == 1
            if liver.any():
                fallback.append(float(np.median(hu[liver])))
            elif labels is not None and all_hu is not None and (labels == 1).any():
                fallback.append(float(np.median(all_hu[labels == 1])))
            else:
                fallback.append(None)
        return fallback[0]

    sampling = [float(v) for v in spacing_zyx]
    for k, grown in component_neighbourhoods(components, half, only=candidates):
        liver = region[grown] == 1
        reference, noise = None, 0.0
        if liver.any():
            distance = ndimage.distance_transform_edt(components[grown] != k, sampling=sampling)
            near = liver & (distance <= reach_mm + 1e-6)
            if near.any():
                around = hu[grown][near].astype(np.float64)
                reference, noise = float(np.median(around)), robust_std(around)
        if reference is None:
            reference = wider_reference()
        if reference is None:
            judged[k] = True
            continue
        limit = reference - RULES.tube_darker_hu
        if not mean[k] >= limit:
            continue
        core_mean, core_voxels = _thickest_core_mean_hu(components[grown] == k, hu[grown], sampling)
        # the core's mean is of a few dozen voxels (a handful on 3 mm slices): its noise is allowed for
        judged[k] = core_mean >= limit - min(2.0 * noise / np.sqrt(core_voxels), CORE_NOISE_ALLOWANCE_MAX_HU)
    return judged


CORE_NOISE_ALLOWANCE_MAX_HU = 10.0
"""The tube rule's density test where a component is thickest (:func:`_thickest_core_mean_hu`) allows for the noise of
that core's mean, twice its standard error (the liver's noise around it, from the median absolute deviation, over the
core's voxel count), at most this: on a low-dose CT (noise SD 40 HU) 13 of 80 unenhanced vessels 8 HU darker than the
liver stayed lesions, their cores' means of a few dozen voxels falling under the 15 HU limit by noise alone (the HU
rules audit); none does with the allowance. Capped, so that a tumor 50 HU darker than the liver joined to a bright
vessel, whose core on 3 mm slices holds only a handful of voxels, is not taken for a vessel by noise either."""


def _thickest_core_mean_hu(mask: np.ndarray, hu: np.ndarray, sampling: Sequence[float]) -> Tuple[float, int]:
    """Mean HU of the component ``mask`` (``hu`` on its grid) where it is thickest: its voxels inside the largest
    ball it holds (centred on its deepest voxel, the radius that voxel's distance to the nearest voxel outside). A
    10-15 mm hypodense tumor joined to a bright vessel the network also called tumor had a component mean near the
    liver's (the vessel's voxels outweighed it) and became liver whole; its thickest place is the tumor, 50 HU
    darker, while a vessel's is a stretch of its bright lumen (the post-processing audit). Returns ``(mean HU,
    voxel count)`` of that core."""
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(np.pad(mask, 1), sampling=list(sampling))[1:-1, 1:-1, 1:-1]
    deepest = np.unravel_index(int(np.argmax(depth)), depth.shape)
    grid = np.ogrid[tuple(slice(0, n) for n in depth.shape)]
    squared = sum(((g - c) * float(v)) ** 2 for g, c, v in zip(grid, deepest, sampling))
    core = mask & (squared <= float(depth[deepest]) ** 2 + 1e-9)
    return float(np.mean(hu[core], dtype=np.float64)), int(np.count_nonzero(core))


def thin_everywhere(components: np.ndarray, count: int, spacing_zyx: Sequence[float], candidates: np.ndarray,
                    max_width_mm: float) -> np.ndarray:
    """Per component ``0..count``: whether it is no thicker than ``max_width_mm`` anywhere, by
    :func:`widest_width_mm` (edge to edge). Only ``candidates`` are judged (the others are False). The tube rule's
    width (from the spread of all the component's voxels) is an average: a 20 mm tumor joined to a 7 x 70 mm vessel
    the network also called tumor measured as one elongated, 'narrow' component and became liver whole, tumor and
    all (the post-processing audit: tumors of 10-20 mm were lost this way, the report said 0 lesions)."""
    thin = np.zeros(count + 1, dtype=bool)
    for k, box in component_neighbourhoods(components, (0, 0, 0), only=candidates):
        thin[k] = widest_width_mm(components[box] == k, spacing_zyx) <= max_width_mm + 1e-6
    return thin


def widest_width_mm(mask_zyx: np.ndarray, spacing_zyx: Sequence[float]) -> float:
    """Edge-to-edge width (mm) of a boolean mask ``(z, y, x)`` where it is thickest: the larger of twice its largest
    distance (voxel centre to the nearest voxel centre outside it) less the smallest spacing, which measures a
    band of an odd number of voxels (a line one voxel wide measures one voxel), and, over face neighbours whose
    nearest outside voxels lie on opposite sides along their axis, the sum of their two distances, which measures
    a band of an even number of voxels (whose middle lies between two voxels: the first term alone measured bars of
    2, 4, 6 and 8 voxels of 0.8 mm as 0.8, 2.4, 4.0 and 5.6 mm, one voxel narrow, and so took a thicker component
    for a vessel)."""
    from scipy import ndimage

    sampling = [float(v) for v in spacing_zyx]
    inside = np.pad(np.asarray(mask_zyx, dtype=bool), 1)  # a border outside it: the mask may end at its box's edge
    distance, nearest = ndimage.distance_transform_edt(inside, sampling=sampling, return_indices=True)
    width = 2.0 * float(distance.max()) - min(sampling)
    for axis in range(3):
        shape = [1, 1, 1]
        shape[axis] = inside.shape[axis]
        position = np.arange(inside.shape[axis], dtype=nearest.dtype).reshape(shape)
        before, after = [slice(None)] * 3, [slice(None)] * 3
        before[axis], after[axis] = slice(0, -1), slice(1, None)
        outside_before = (nearest[axis] < position)[tuple(before)]  # the first voxel's nearest outside lies before it
        outside_after = (nearest[axis] > position)[tuple(after)]    # the second's after it
        across = outside_before & outside_after & inside[tuple(before)] & inside[tuple(after)]
        if across.any():
            width = max(width, float((distance[tuple(before)] + distance[tuple(after)])[across].max()))
    return width


def component_sums(components: np.ndarray, count: int, values: np.ndarray) -> np.ndarray:
    """Per component ``0..count`` (index 0, the background, is 0): the float64 sum of ``values`` (same grid) over
    its voxels. Reads the component voxels only: a float64 copy of the whole box
    (``values.ravel().astype(float64)``, 8 bytes a voxel for a few lesions) is not made."""
    inside = components > 0
    sums = np.bincount(components[inside], weights=values[inside].astype(np.float64), minlength=count + 1)
    return sums[:count + 1]


def tumor_changes_not_listed() -> Dict[str, Any]:
    """An empty ``tumor_components_not_listed``: ``{"count": 0, "volume_ml": 0.0, "by_rule": {}}``
    (:func:`_count_tumor_changes_not_listed` adds to it)."""
    return {"count": 0, "volume_ml": 0.0, "by_rule": {}}


def _count_tumor_changes_not_listed(summary: Dict[str, Any], left_out: np.ndarray, sizes: np.ndarray,
                                    new_value: np.ndarray, rule_of: np.ndarray, voxel_ml: float) -> None:
    """Add the changed tumor components ``left_out`` (component numbers; ``sizes`` their voxels, ``new_value`` and
    ``rule_of`` as :func:`_record_tumor_changes` takes them) to ``summary`` (:func:`tumor_changes_not_listed`): their
    count and mL, and per rule ``{"count", "volume_ml", "became_background"}``, what
    :func:`postprocessing_warnings` counts per rule."""
    for rule in sorted({str(rule_of[k]) for k in left_out}):
        of_rule = left_out[rule_of[left_out] == rule]
        voxels = int(sizes[of_rule].sum())
        entry = summary["by_rule"].setdefault(rule, {"count": 0, "volume_ml": 0.0, "became_background": 0})
        entry["count"] += int(of_rule.size)
        entry["volume_ml"] += voxels * voxel_ml
        entry["became_background"] += int(np.count_nonzero(new_value[of_rule] == 0))
        summary["count"] += int(of_rule.size)
        summary["volume_ml"] += voxels * voxel_ml


def _listed_and_left_out(changed: np.ndarray, sizes: np.ndarray, room: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(listed, left out)``: of the component numbers ``changed`` (ascending), the ``room`` largest by ``sizes``
    (equal sizes: the lower number), kept in ascending order, and the others."""
    if changed.size <= room:
        return changed, changed[:0]
    largest = np.argsort(-sizes[changed], kind="stable")
    return np.sort(changed[largest[:room]]), np.sort(changed[largest[room:]])


def _record_tumor_changes(changes: Dict[str, Any], components: np.ndarray, count: int, new_value: np.ndarray,
                          rule_of: np.ndarray, spacing_zyx: Sequence[float],
                          mean_probability: Optional[np.ndarray] = None, geometry: Any = None,
                          offset_zyx: Sequence[int] = (0, 0, 0), peak_probability: Optional[np.ndarray] = None,
                          counted: Optional[np.ndarray] = None) -> None:
    """Append to ``changes["tumor_components"]`` one ``{"rule", "became", "volume_ml", "mean_tumor_probability",
    "peak_tumor_probability"}``
    (with ``geometry`` also ``"centroid_lps_mm"`` and ``"centroid_ras_mm"``) per tumor component a
    rule changed (``outside_liver``: removed; ``tubular``, ``small``, ``uncertain``: became liver, or background
    when the part touches no liver; ``became``: ``"liver"`` or ``"background"``), in the order of the components'
    numbers, up to :data:`LISTED_RECORDS_MAX` records in the list: the largest; the others are counted in
    ``changes["tumor_components_not_listed"]`` (:func:`_count_tumor_changes_not_listed`). ``components``:
    the labelling of the components, of which the voxels where ``counted`` (bool, same shape; None: all) count
    (:func:`clean_tumors` passes those the network labelled tumor, so a filled core, background before and liver or
    background after, is not reported as tumor changed; a product ``components * counted`` and np.bincount's int64
    cast of it took 16 bytes a voxel of the tumors' box, the liver's for lesions spread through it, and a run the
    memory check had passed ran out of memory here: the memory audit); volume,
    centroid and mean probability are all of these voxels.

    ``mean_probability`` (per component ``0..count``, 0..1: :func:`component_mean_probability` over the same
    voxels, as :func:`clean_tumors` takes it once for its uncertain rule too): ``mean_tumor_probability``, else
    None; ``peak_probability`` (:func:`component_peak_probability`, the same way): ``peak_tumor_probability``.
    ``geometry`` (:class:`ImageGeometry` of the whole array
    ``components`` was cut from, ``offset_zyx`` the index there of ``components[0, 0, 0]``): the centroids, the
    mean voxel-centre position as the lesion report gives a lesion's, patient LPS and RAS mm, so a reader can find
    a candidate post-processing took away; without ``geometry`` these two keys are left out."""
    voxel_ml = float(np.prod([float(s) for s in spacing_zyx])) / 1000.0
    sizes = label_counts(components, count, counted, True)
    record = changes.setdefault("tumor_components", [])
    summary = changes.setdefault("tumor_components_not_listed", tumor_changes_not_listed())
    changed = np.flatnonzero(new_value[1:count + 1] != 2) + 1
    changed = changed[sizes[changed] > 0]
    if not changed.size:
        return
    listed, left_out = _listed_and_left_out(changed, sizes, max(0, LISTED_RECORDS_MAX - len(record)))
    _count_tumor_changes_not_listed(summary, left_out, sizes, new_value, rule_of, voxel_ml)
    centres = None
    if geometry is not None and listed.size:
        where = true_indices(components > 0 if counted is None else counted & (components > 0))
        ids = components[where]
        centres = np.stack([np.bincount(ids, weights=axis.astype(np.float64), minlength=count + 1)[:count + 1]
                            for axis in where], axis=1) / np.maximum(sizes[:count + 1], 1)[:, None]
        centres += np.asarray([int(o) for o in offset_zyx], dtype=np.float64)
    for k in listed:
        entry = {"rule": str(rule_of[k]), "became": "liver" if new_value[k] == 1 else "background",
                 "volume_ml": float(sizes[k] * voxel_ml),
                 "mean_tumor_probability": None if mean_probability is None else float(mean_probability[k]),
                 "peak_tumor_probability": None if peak_probability is None else float(peak_probability[k]),
                 }  # type: Dict[str, Any]
        if centres is not None:
            ijk = centres[k][::-1]
            entry["centroid_lps_mm"] = [float(v) for v in geometry.index_to_lps(ijk)]
            entry["centroid_ras_mm"] = [float(v) for v in geometry.index_to_ras(ijk)]
        record.append(entry)


def patient_position(geometry: Any, centre_zyx: Sequence[float]) -> Dict[str, List[float]]:
    """``{"centroid_lps_mm", "centroid_ras_mm"}`` of a continuous index ``centre_zyx`` ``(z, y, x)`` of the
    array whose :class:`ImageGeometry` is ``geometry``: patient LPS and RAS mm, as plain floats for the JSON
    report (the conversion :func:`_record_tumor_changes` and the lesion report use)."""
    ijk = [float(v) for v in centre_zyx][::-1]
    return {"centroid_lps_mm": [float(v) for v in geometry.index_to_lps(ijk)],
            "centroid_ras_mm": [float(v) for v in geometry.index_to_ras(ijk)]}


FORWARD_26 = tuple((dz, dy, dx) for dz in (0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                   if (dz, dy, dx) > (0, 0, 0))
"""The 13 of the 26 neighbour offsets ``(z, y, x)`` that come after a voxel in C order: each neighbour pair once."""


def _pieces_of_voxels(at_zyx: np.ndarray) -> np.ndarray:
    """26-connected piece number (0..K-1, numbered in C order of each piece's first voxel, as ``ndimage.label``
    numbers them) of each row of ``at_zyx`` (``(n, 3)`` distinct int indices ``(z, y, x)``, any order), found from
    the voxels alone: memory and time grow with n, not with their bounding box (two specks at opposite corners of
    100 slices of 512 x 512 made a box labelling of 135 MiB and 2.3 s)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    low = at_zyx.min(axis=0)
    extent = at_zyx.max(axis=0) - low + 3  # one voxel of margin on each side: a neighbour key never wraps a row
    shifted = at_zyx - low + 1
    keys = (shifted[:, 0] * extent[1] + shifted[:, 1]) * extent[2] + shifted[:, 2]  # C order of the voxels
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    first, second = [], []
    for dz, dy, dx in FORWARD_26:
        wanted = sorted_keys + (dz * extent[1] + dy) * extent[2] + dx
        found = np.minimum(np.searchsorted(sorted_keys, wanted), sorted_keys.size - 1)
        hit = sorted_keys[found] == wanted
        first.append(np.flatnonzero(hit))
        second.append(found[hit])
    rows, columns = np.concatenate(first), np.concatenate(second)
    graph = coo_matrix((np.ones(rows.size, dtype=np.int8), (rows, columns)), shape=(keys.size, keys.size))
    _, in_c_order = connected_components(graph, directed=False)  # numbered by each piece's lowest (first) voxel
    pieces = np.empty(keys.size, dtype=np.int64)
    pieces[order] = in_c_order
    return pieces


LISTED_RECORDS_MAX = 100
"""Records each per-piece list of :func:`postprocess_labels`'s ``changes`` holds at most (``tumor_in_air_components``,
``tumor_above_lungs_components``, ``liver_components_removed``, ``tumor_components``): the largest; the rest are
counted and summed in the list's ``<list>_not_listed``, so the totals stay exact. On 100 x 512 x 512 voxels, 20,000
one-voxel specks (in the air, as separate organ parts, inside the liver) made 20,000 records a list: 4.5-9.4 MB of
the JSON report (indent 2), and post-processing took 1.5-4.7 s against 0.35-1.24 s listing 100 (22-47 KB)."""


def pieces_not_listed(voxels: Sequence[int], voxel_ml: float) -> Dict[str, Any]:
    """``{"count", "volume_ml"}`` of the pieces of ``voxels`` (voxel count each) a capped list leaves out
    (:data:`LISTED_RECORDS_MAX`): how many and their mL together; ``0`` and ``0.0`` when all are listed."""
    return {"count": int(len(voxels)), "volume_ml": int(np.sum(voxels, dtype=np.int64)) * voxel_ml}


def removed_tumor_pieces(removed_at: Sequence[np.ndarray], voxel_ml: float, geometry: Any = None,
                         limit: Optional[int] = None) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """``(records, not listed)``: :func:`removed_tumor_components`'s records of the ``limit`` largest pieces (all
    with None), in its order, and :func:`pieces_not_listed` of the others. Only the listed pieces' records are
    built (each centroid's patient-space conversion is what takes the time: about 1.1 s for 20,000)."""
    parts = [a for a in removed_at if len(a)]
    if not parts:
        return [], pieces_not_listed([], voxel_ml)
    at = np.concatenate(parts).astype(np.int64)
    piece = _pieces_of_voxels(at)  # numbered in C order of each piece's first voxel
    sizes = np.bincount(piece)
    largest_first = np.argsort(-sizes, kind="stable")  # stable: equal sizes keep C order
    listed = largest_first if limit is None else largest_first[:max(0, int(limit))]
    sums = np.stack([np.bincount(piece, weights=at[:, a].astype(np.float64)) for a in range(3)], axis=1)
    records = []
    for k in listed:
        voxels = int(sizes[k])
        entry = {"volume_ml": voxels * voxel_ml}  # type: Dict[str, Any]
        if geometry is not None:
            entry.update(patient_position(geometry, sums[k] / voxels))
        records.append(entry)
    return records, pieces_not_listed(sizes[largest_first[len(listed):]], voxel_ml)


def removed_tumor_components(removed_at: Sequence[np.ndarray], voxel_ml: float,
                             geometry: Any = None) -> List[Dict[str, Any]]:
    """One record ``{"volume_ml", "centroid_lps_mm", "centroid_ras_mm"}`` per 26-connected piece of the tumor
    voxels a step removed (``removed_at``: ``(n, 3)`` int indices ``(z, y, x)`` of the array ``geometry``
    describes, as :func:`remove_above_lungs` and :func:`remove_organ_in_air` give them), largest first: the
    step's total in mL said how much, these say where to look. The centroid (mean voxel-centre position,
    patient LPS and RAS mm, as a lesion's) is left out without ``geometry``. The pieces are found from the removed
    voxels alone (:func:`_pieces_of_voxels`), never from a box around them. Every piece; :func:`postprocess_labels`
    lists the largest :data:`LISTED_RECORDS_MAX` (:func:`removed_tumor_pieces`)."""
    return removed_tumor_pieces(removed_at, voxel_ml, geometry)[0]


def dropped_part_record(part: Tuple[int, int, np.ndarray, Optional[np.ndarray]], voxel_ml: float,
                        geometry: Any = None) -> Dict[str, Any]:
    """The ``liver_components_removed`` record of one organ part the largest-component step dropped (``part`` as
    :func:`_clean_organ` lists it: organ and tumor voxels, mean index ``(z, y, x)`` of the part's and of its
    tumor's voxels): ``volume_ml``, ``tumor_ml`` and, with ``geometry`` (of the array the indices are in),
    ``centroid_lps_mm`` / ``centroid_ras_mm`` of the part and ``tumor_centroid_lps_mm`` /
    ``tumor_centroid_ras_mm`` of its tumor (None when it held none): a tumor dropped with its part is findable."""
    organ, tumor, centre, tumor_centre = part
    entry = {"volume_ml": organ * voxel_ml, "tumor_ml": tumor * voxel_ml}  # type: Dict[str, Any]
    if geometry is not None:
        entry.update(patient_position(geometry, centre))
        at = None if tumor_centre is None else patient_position(geometry, tumor_centre)
        entry["tumor_centroid_lps_mm"] = None if at is None else at["centroid_lps_mm"]
        entry["tumor_centroid_ras_mm"] = None if at is None else at["centroid_ras_mm"]
    return entry


def dropped_parts_not_listed(parts: Sequence[Tuple[int, int, Any, Any]], voxel_ml: float) -> Dict[str, Any]:
    """``liver_components_removed_not_listed``: of the dropped organ ``parts`` (as :func:`dropped_part_record` takes
    them) a capped list leaves out, ``count``, ``volume_ml`` and ``tumor_ml`` together, and what
    :func:`postprocessing_warnings` counts of them: ``notable_count`` / ``notable_volume_ml`` (parts of
    :data:`WARN_LIVER_REMOVED_ML` or more, or holding tumor) and ``mostly_tumor_count`` (at least half tumor);
    all 0 (``0.0`` mL) when every part is listed."""
    organ = np.asarray([int(p[0]) for p in parts], dtype=np.int64)
    tumor = np.asarray([int(p[1]) for p in parts], dtype=np.int64)
    notable = (organ * voxel_ml >= WARN_LIVER_REMOVED_ML) | (tumor > 0)
    return {"count": int(organ.size), "volume_ml": int(organ.sum()) * voxel_ml, "tumor_ml": int(tumor.sum()) * voxel_ml,
            "notable_count": int(np.count_nonzero(notable)), "notable_volume_ml": int(organ[notable].sum()) * voxel_ml,
            "mostly_tumor_count": int(np.count_nonzero((2 * tumor >= organ) & (organ > 0)))}


def reach_voxels(radius_mm: float, spacing_zyx: Sequence[float]) -> List[int]:
    """Per axis ``(z, y, x)``, the voxels a distance of ``radius_mm`` spans (``floor(r / s)``, as
    :func:`ellipsoid_structure`), at least 1: a tumor component touching the liver (26-neighbourhood) always
    counts as near it (a margin below the voxel size once made ``--tumor-liver-margin-mm 0`` remove every tumor,
    even one deep inside the liver)."""
    return [max(1, int(np.floor(max(float(radius_mm), 0.0) / float(s)))) for s in spacing_zyx]


def component_neighbourhoods(components: np.ndarray, half: Sequence[int], only: Optional[np.ndarray] = None
                            ) -> Iterator[Tuple[int, Tuple[slice, ...]]]:
    """``(k, box)`` for each component ``k`` of ``components`` ``(z, y, x)`` (with ``only[k]`` when given): its
    bounding box grown by ``half`` voxels per axis ``(z, y, x)`` and clipped to the volume. Each component is
    then judged inside its own small box, so the cost follows the tumors' size, not the volume's."""
    from scipy import ndimage

    for k, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None or (only is not None and not only[k]):
            continue
        yield k, tuple(slice(max(0, b.start - h), min(n, b.stop + h)) for b, h, n in zip(box, half, components.shape))


def near_liver_components(region: np.ndarray, components: np.ndarray, count: int, spacing_zyx: Sequence[float],
                          margin_mm: float) -> np.ndarray:
    """``near[k]``: tumor component ``k`` touches a liver voxel (label 1 in ``region``; 26-neighbourhood) or has
    one within ``margin_mm`` (Euclidean distance between voxel centres, mm).

    Touching is read from one 26-neighbourhood dilation of the liver (3 x 3 x 3) on the components' box, the
    distance of the others from one k-d tree of the liver's surface voxels, queried with each component's surface
    voxels: the liver voxel nearest to a voxel outside the liver has a 6-neighbour outside it (a step towards that
    voxel would otherwise come nearer), and likewise on the component's side. Neither cost grows with the margin:
    a distance transform in each component's box grown by the margin took over 15 minutes for 10,000 specks of
    tumor with ``--keep-all-liver-components --tumor-liver-margin-mm 100`` (and a dilation of the whole liver by a
    100 mm ellipsoid at 0.7 mm spacing, a 41 x 285 x 285 structure, had run out of memory)."""
    from scipy.spatial import cKDTree

    near = np.zeros(count + 1, dtype=bool)
    if count == 0:
        return near
    liver = region == 1
    if not liver.any():
        return near
    box = bounding_box(components > 0, 1)
    touching = _grown_by_one(liver[box]) & (components[box] > 0)
    near[components[box][touching]] = True
    pending = ~near
    pending[0] = False
    if not pending.any():
        return near
    scale = np.asarray([float(v) for v in spacing_zyx], dtype=np.float64)
    tree = cKDTree(np.argwhere(liver & ~_inside_6(liver)) * scale)
    mine = pending[components[box]]
    surface = np.argwhere(mine & ~_inside_6(mine))
    ids = components[box][tuple(surface.T)]
    offset = np.asarray([b.start for b in box], dtype=np.float64)
    distance, _ = tree.query((surface + offset) * scale, k=1, distance_upper_bound=float(margin_mm) + 1e-6)
    near[np.unique(ids[np.isfinite(distance)])] = True
    return near


def _shifted_pairs(axis: int) -> Tuple[Tuple[slice, ...], Tuple[slice, ...]]:
    """Index tuples of ``array[1:]`` and ``array[:-1]`` along ``axis`` of a 3-D array (neighbours along it)."""
    upper, lower = [slice(None)] * 3, [slice(None)] * 3
    upper[axis], lower[axis] = slice(1, None), slice(None, -1)
    return tuple(upper), tuple(lower)


def _grown_by_one(mask: np.ndarray) -> np.ndarray:
    """``mask`` dilated by its 26-neighbourhood (a 3 x 3 x 3 cube, done as three one-voxel steps along the axes):
    ``ndimage.binary_dilation(mask, CONNECTIVITY_26)``, several times faster on a whole CT's box."""
    out = mask.copy()
    for axis in range(3):
        upper, lower = _shifted_pairs(axis)
        step = out.copy()
        step[upper] |= out[lower]
        step[lower] |= out[upper]
        out = step
    return out


def _inside_6(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` whose six face neighbours all lie in ``mask`` (outside the array counts as inside):
    ``ndimage.binary_erosion(mask, CROSS_6, border_value=1)``; the rest of ``mask`` is its surface."""
    inner = mask.copy()
    for axis in range(3):
        upper, lower = _shifted_pairs(axis)
        inner[upper] &= mask[lower]
        inner[lower] &= mask[upper]
    return inner


def component_mean_probability(components: np.ndarray, count: int, probability: np.ndarray,
                               voxels: Optional[np.ndarray] = None,
                               network_tumor: Optional[np.ndarray] = None) -> np.ndarray:
    """Mean tumor probability (0..1) per component ``0..count`` (index 0, the background, is 0) of a map on the
    same grid: integer maps are ``round(255 p)`` (``segment``'s uint8), float maps p in 0..1 (clipped).

    The mean of a lesion is taken over its voxels the network labelled tumor (``network_tumor``, bool, same grid;
    None: all its voxels): a core the hole fill made tumor was background in the network's output, at a low
    tumor probability, and diluted the mean of a ring lesion the network was sure of (ring 0.75, core 0.05: a
    0.75 lesion read as 0.55 and became liver as uncertain). A component without such a voxel takes the mean over
    all its voxels. ``voxels``: the components' voxel counts when the caller has them. The post-processing's
    uncertain-lesion rule and the lesion report's ``mean_tumor_probability`` both come from here. Reads the
    component voxels only (no float copy of the box)."""
    inside = components > 0
    ids = components[inside]
    values = probability[inside]
    if np.issubdtype(values.dtype, np.integer):
        weights, scale = values.astype(np.float64), 255.0
    else:
        weights, scale = np.clip(values.astype(np.float64), 0.0, 1.0), 1.0
    sums = np.bincount(ids, weights=weights, minlength=count + 1)[:count + 1]
    if voxels is None:
        counts = np.bincount(ids, minlength=count + 1)[:count + 1].astype(np.float64)
    else:
        counts = np.asarray(voxels, dtype=np.float64)[:count + 1].copy()
    if network_tumor is not None:
        labelled = network_tumor[inside]
        net_sums = np.bincount(ids[labelled], weights=weights[labelled], minlength=count + 1)[:count + 1]
        net_counts = np.bincount(ids[labelled], minlength=count + 1)[:count + 1]
        use = net_counts > 0
        sums = np.where(use, net_sums, sums)
        counts = np.where(use, net_counts, counts)
    mean = sums / (scale * np.maximum(counts, 1.0))
    mean[0] = 0.0
    return mean


def component_peak_probability(components: np.ndarray, count: int, probability: np.ndarray,
                               network_tumor: Optional[np.ndarray] = None) -> np.ndarray:
    """Largest tumor probability (0..1) per component ``0..count`` (index 0, the background, is 0) of a map on the
    same grid, read as :func:`component_mean_probability` reads it (``round(255 p)`` integers or p in 0..1; over
    the voxels ``network_tumor`` marks, where a component has any, else over all its voxels)."""
    inside = components > 0
    ids = components[inside]
    values = probability[inside]
    values = values.astype(np.float64) / 255.0 if np.issubdtype(values.dtype, np.integer) \
        else np.clip(values.astype(np.float64), 0.0, 1.0)
    peak = np.zeros(count + 1, dtype=np.float64)
    np.maximum.at(peak, ids, values)
    if network_tumor is not None:
        labelled = network_tumor[inside]
        net_peak = np.zeros(count + 1, dtype=np.float64)
        np.maximum.at(net_peak, ids[labelled], values[labelled])
        use = np.bincount(ids[labelled], minlength=count + 1)[:count + 1] > 0
        peak = np.where(use, net_peak, peak)
    peak[0] = 0.0
    return peak


def clean_tumors(labels: np.ndarray, spacing_zyx: Sequence[float], options: PostprocessingOptions,
                 tumor_probability: Optional[np.ndarray] = None, hu: Optional[np.ndarray] = None,
                 changes: Optional[Dict[str, Any]] = None, network_tumor: Optional[np.ndarray] = None,
                 geometry: Any = None, offset_zyx: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """Steps 3-6 with one labelling of the tumor's bounding box, in place: components away from the liver
    -> 0; tube-like, smaller than ``min_lesion_ml``, or small and uncertain -> liver. ``tumor_probability``:
    uint8 ``round(255 p)`` on the grid of ``labels`` (step 6 is skipped without it). ``hu`` (the CT on the
    same grid): a tube-like component becomes liver only when it is at most ``tube_darker_hu`` (15 HU) darker
    than the liver around it (a vessel, with or without contrast), so a clearly hypodense elongated tumor stays
    a tumor; without ``hu`` shape alone decides. ``changes``: a dict that receives what each rule did
    (:func:`postprocess_labels`). ``network_tumor`` (bool, grid of ``labels``): the voxels the network labelled
    tumor, when the hole fill has made more of them tumor (None: the tumor of ``labels``); a lesion's mean
    probability and the volume recorded in ``changes`` count these voxels only. ``geometry`` (the
    :class:`ImageGeometry` of the array ``labels`` was cut from, ``offset_zyx`` the index there of
    ``labels[0, 0, 0]``): each record in ``changes`` also gets its centroid (:func:`_record_tumor_changes`).
    ``tumor_probability`` with ``min_lesion_probability`` 0 only gives the records their mean probability."""
    from scipy import ndimage

    tumor = labels == 2
    if not tumor.any():
        return labels
    options = with_min_lesion_probability(options, None)  # the model's, where none is known: the default
    check_liver = options.tumor_inside_liver
    small = options.min_lesion_ml and options.min_lesion_ml > 0
    uncertain = tumor_probability is not None and options.min_lesion_probability > 0
    if not (check_liver or small or options.tubular_lesions_to_liver or uncertain):
        return labels
    margin_mm = max(float(options.liver_dilation_mm), 0.0)
    margin = [h + 1 for h in reach_voxels(margin_mm, spacing_zyx)] if check_liver else [0, 0, 0]
    if options.tubular_lesions_to_liver and hu is not None:
        # a tube is compared with the liver around it, so the box takes that liver in, liver check or not
        margin = [max(m, h + 1) for m, h in zip(margin, reach_voxels(RULES.tube_liver_reach_mm, spacing_zyx))]
    if options.largest_liver_component:  # one voxel at least: whether a lesion made liver touches the liver (below)
        margin = [max(m, 1) for m in margin]  # is seen also where that liver lies just beyond the tumor's box
    box = bounding_box(tumor, margin)
    region = labels[box]
    components, count = ndimage.label(region == 2, structure=CONNECTIVITY_26)
    network = None if network_tumor is None else network_tumor[box]
    new_value = np.full(count + 1, 2, dtype=np.uint8)
    rule_of = np.full(count + 1, "", dtype=object)  # the first rule that turned a component into liver
    # each lesion's mean tumor probability over its network-labelled voxels: read once, by the uncertain rule and by
    # the records in ``changes`` (each took it itself)
    mean_p = component_mean_probability(components, count, tumor_probability[box], network_tumor=network) \
        if tumor_probability is not None and (uncertain or changes is not None) else None
    by_peak = options.lesion_probability_statistic == "peak"  # the mean-read rule needs no peak unless recorded
    peak_p = component_peak_probability(components, count, tumor_probability[box], network_tumor=network) \
        if tumor_probability is not None and ((uncertain and by_peak) or changes is not None) else None
    if options.tubular_lesions_to_liver or small or uncertain:
        voxels, elongation, width = component_shape(components, count, spacing_zyx)
        voxel_ml = float(np.prod([float(s) for s in spacing_zyx])) / 1000.0
        if options.tubular_lesions_to_liver:
            tube = (elongation >= RULES.tube_elongation) & (width <= RULES.tube_max_width_mm) & (voxels >= 4)
            if tube.any():
                tube &= thin_everywhere(components, count, spacing_zyx, tube, RULES.tube_max_width_mm)
            if hu is not None and tube.any():
                tube &= _vessel_like_density(components, count, region, hu[box], voxels, spacing_zyx, tube,
                                             labels, hu)
            new_value[tube] = 1
            rule_of[tube] = "tubular"
        if small:
            tiny = volume_below(voxels * voxel_ml, float(options.min_lesion_ml))
            new_value[tiny] = 1
            rule_of[tiny & (rule_of == "")] = "small"
        if uncertain:
            score = peak_p if by_peak else mean_p
            doubtful = (score < float(options.min_lesion_probability)) & \
                volume_below(voxels * voxel_ml, float(options.uncertain_lesion_max_ml))
            doubtful[0] = False
            new_value[doubtful] = 1
            rule_of[doubtful & (rule_of == "")] = "uncertain"
    if check_liver:
        away = ~near_liver_components(region, components, count, spacing_zyx, margin_mm)
        new_value[away] = 0
        rule_of[away] = "outside_liver"
    new_value[0] = 0
    to_liver = new_value == 1
    if options.largest_liver_component and to_liver.any():
        # a part the largest-component step left to these rules (near the liver, not touching it) was made liver
        # as uncertain, tubular or small: a piece of 'liver' apart from the liver, which that step exists to drop.
        # With no liver in the box (tumor allowed outside the liver, far from it) none touches it: a far uncertain
        # lesion became a detached 'liver' (the post-processing audit); a map without any liver keeps the old way
        if (region == 1).any():
            new_value[to_liver & ~near_liver_components(region, components, count, spacing_zyx, 0.0)] = 0
        elif (labels == 1).any():
            new_value[to_liver] = 0
    if changes is not None and count:
        _record_tumor_changes(changes, components, count, new_value, rule_of, spacing_zyx, mean_p, geometry,
                              [int(o) + b.start for o, b in zip(offset_zyx, box)], peak_p, counted=network)
    changed = new_value != 2
    changed[0] = False
    if changed.any():
        move = changed[components]
        region[move] = new_value[components[move]]
    return labels


# ------------------------------------------------------------------------------------------ pipeline

def tumor_parts_left_to_tumor_rules(components: np.ndarray, count: int, largest: int, region: np.ndarray,
                                    spacing_zyx: Sequence[float], options: PostprocessingOptions) -> np.ndarray:
    """Per organ part ``0..count`` (``components`` of ``region``'s organ): whether the largest-component step
    leaves it to the tumor rules instead of dropping it: a part mostly tumor (label 2 in at least half of its
    voxels), smaller than the kept part ``largest``, within ``liver_dilation_mm`` of it (or anywhere, when tumor may
    lie outside the liver). The margin rule otherwise never saw such a part: an exophytic or pedunculated tumor
    whose stalk the network missed, one voxel from the liver, was dropped as a separate organ part whatever
    ``--tumor-liver-margin-mm`` said (the post-processing audit)."""
    sizes = label_counts(components, count)
    tumor = label_counts(components, count, region, 2)
    # smaller than the kept part: a 901 mL 'tumor' beside a 512 mL liver is no lesion of it, and stays dropped
    left = (2 * tumor >= sizes) & (tumor > 0) & (sizes < sizes[largest])
    left[0] = left[largest] = False
    if not left.any() or not options.tumor_inside_liver:
        return left
    candidates = np.where(left[components], components, 0)
    kept_as_liver = (components == largest).astype(np.uint8)
    near = near_liver_components(kept_as_liver, candidates, count, spacing_zyx,
                                 max(float(options.liver_dilation_mm), 0.0))
    return left & near[:count + 1]


def _clean_organ(labels: np.ndarray, options: PostprocessingOptions,
                 removed: Optional[list] = None, air_hu: Optional[np.ndarray] = None,
                 spacing_zyx: Optional[Sequence[float]] = None, filled: Optional[List[int]] = None
                 ) -> Tuple[Tuple[slice, ...], Optional[np.ndarray]]:
    """Steps 1-2 on the organ's bounding box (one organ labelling), in place. Returns the kept organ's
    bounding box (+1 voxel) in ``labels``, where the tumor steps then work (the whole array if it is empty), and
    the tumor of that box before the hole fill (bool) when the fill made a core tumor (else None): the voxels the
    network labelled tumor, over which :func:`clean_tumors` takes a lesion's mean probability.
    ``removed``: a list that receives ``(organ voxels, tumor voxels, centre, tumor centre)`` of each component
    dropped (:func:`_dropped_parts`; centres as ``(z, y, x)`` mean indices in ``labels``). ``air_hu``: the
    CT (same grid) when the air step ran: a hole below :data:`ORGAN_AIR_HU` stays background, and so does a
    dropped component inside a hole (the fill had put both back, while the report said they were removed).
    ``spacing_zyx`` (mm): given, parts that are mostly tumor near the kept part are left to the tumor rules
    (:func:`tumor_parts_left_to_tumor_rules`) and the returned box takes them in. ``filled``: a list ``[liver,
    tumor]`` to which the voxels the hole fill labelled are added."""
    from scipy import ndimage

    if not labels.any():  # uint8 0/1/2: nonzero is organ (a whole-volume mask labels >= 1 is not needed)
        return tuple(slice(0, n) for n in labels.shape), None
    box = bounding_box(labels, 1)
    region = labels[box]
    organ = region >= 1
    dropped = None  # the dropped components' voxels, in the (final) box
    if options.largest_liver_component:
        components, count = compact_label(organ, CONNECTIVITY_26)
        if count > 1:
            sizes = label_counts(components, count)
            sizes[0] = 0
            largest = largest_part_holding_liver(components, count, region, sizes)
            spared = np.zeros(count + 1, dtype=bool) if spacing_zyx is None else \
                tumor_parts_left_to_tumor_rules(components, count, largest, region, spacing_zyx, options)
            spared[largest] = True
            organ = components == largest
            staying = organ if spared.sum() == 1 else spared[components]  # the kept part, and any left to the rules
            gone = ~staying & (region >= 1)  # the dropped parts' voxels
            if spared.sum() > 1:  # a part left to the tumor rules keeps its tumor only: its liver-labelled voxels
                # stayed a piece of 'liver' apart from the liver, and made its tumor look as if it touched the
                # liver, so the small, uncertain or tube rule made that tumor liver too (the post-processing audit)
                others = spared.copy()
                others[largest] = False
                gone |= others[components] & (region == 1)
                del others
            if removed is not None:
                removed.extend(_dropped_parts(components, count, region, gone, [b.start for b in box]))
            region[gone] = 0
            del gone
            inner = ndimage.find_objects(staying.astype(np.uint8), max_label=1)[0]
            shape = region.shape
            box = tuple(slice(b.start + max(0, i.start - 1), b.start + min(n, i.stop + 1))
                        for b, i, n in zip(box, inner, shape))
            kept = tuple(slice(max(0, i.start - 1), min(n, i.stop + 1)) for i, n in zip(inner, shape))
            # the hole fill's organ: the kept part and the parts left to the tumor rules. A tumor inside the liver
            # with a shell of background around it (a part of its own) lay in a hole of the kept part alone, and
            # the fill made it liver without a word
            organ = staying[kept]
            del staying
            dropped = (components[kept] > 0) & ~spared[components[kept]]
            region = labels[box]
        del components  # the box's labelling (2 or 4 bytes a box voxel): not held through the hole fill below
    tumor_before = None
    if options.fill_liver_holes and organ.any():
        tumor_before = region == 2
        filled_all = filled_tumor = 0
        stay_empty = dropped
        if air_hu is not None:
            box_hu = np.asarray(air_hu[box])
            air = box_hu < threshold_for(box_hu, ORGAN_AIR_HU)
            stay_empty = air if stay_empty is None else (stay_empty | air)
        holes = _fillable(enclosed_background(organ, CROSS_6), stay_empty)
        count, tumor_count = fill_cavities(region, holes, CROSS_6)
        filled_all, filled_tumor = filled_all + count, filled_tumor + tumor_count
        # the scan's first and last slices: a hole there touches the array's z face, which is the scan's end,
        # not the body's outside; their holes are filled per slice (on a one-slice scan, the only fill there is)
        for z in sorted({0, region.shape[0] - 1}):
            if box[0].start + z in (0, labels.shape[0] - 1):
                edge = region[z:z + 1]
                holes = _fillable(enclosed_background(edge >= 1, IN_PLANE_4),
                                  None if stay_empty is None else stay_empty[z:z + 1])
                count, tumor_count = fill_cavities(edge, holes, IN_PLANE_4)
                filled_all, filled_tumor = filled_all + count, filled_tumor + tumor_count
        if filled is not None:
            filled[0] += filled_all - filled_tumor
            filled[1] += filled_tumor
        if not filled_tumor:
            tumor_before = None
    return box, tumor_before


DROPPED_SLAB_VOXELS = 1 << 19
"""Voxels of the organ's box :func:`_dropped_parts` reads at a time (512 Ki: at most 12 MiB of int64 indices)."""


def _dropped_parts(components: np.ndarray, count: int, region: np.ndarray, gone: np.ndarray,
                   offset_zyx: Sequence[int]) -> List[Tuple[int, int, np.ndarray, Optional[np.ndarray]]]:
    """Per organ part of ``components`` (the labelling of ``region``'s organ, ``(z, y, x)``, parts numbered
    ``1..count``) under ``gone`` (bool, same grid: the voxels the largest-component step drops), in order of part
    number: ``(organ voxels, tumor voxels, mean index of its voxels, mean index of its tumor voxels or None)``,
    indices ``(z, y, x)`` in the array ``region`` was cut from at ``offset_zyx``. Only the dropped voxels are
    gathered, a slab of slices at a time (:data:`DROPPED_SLAB_VOXELS`): no pass over the box beyond reading
    ``gone`` (it replaced a count of the box's tumor per part: 0.010 s against 0.007-0.015 s on a 20.5-million-voxel
    box with 300 parts dropped)."""
    size = int(count) + 1
    organ, tumor = np.zeros(size, dtype=np.int64), np.zeros(size, dtype=np.int64)
    sums, tumor_sums = np.zeros((size, 3)), np.zeros((size, 3))
    step = max(1, DROPPED_SLAB_VOXELS // max(1, int(np.prod(gone.shape[1:], dtype=np.int64))))
    components = np.ascontiguousarray(components)  # compact_label's own array: no copy, read flat below
    for first in range(0, gone.shape[0], step):
        slab = np.ascontiguousarray(gone[first:first + step])
        flat = np.flatnonzero(slab)
        if not flat.size:
            continue
        where = np.unravel_index(flat, slab.shape)
        ids = components[first:first + step].reshape(-1)[flat].astype(np.intp)
        is_tumor = region[first:first + step][where] == 2
        at = np.stack(where, axis=1).astype(np.float64)
        at[:, 0] += first
        organ += np.bincount(ids, minlength=size)
        tumor += np.bincount(ids[is_tumor], minlength=size)
        for axis in range(3):
            sums[:, axis] += np.bincount(ids, weights=at[:, axis], minlength=size)
            tumor_sums[:, axis] += np.bincount(ids[is_tumor], weights=at[is_tumor, axis], minlength=size)
    numbers = np.flatnonzero(organ)
    offset = np.asarray([float(o) for o in offset_zyx])
    centres = sums[numbers] / organ[numbers, None] + offset
    tumor_centres = tumor_sums[numbers] / np.maximum(tumor[numbers], 1)[:, None] + offset
    return [(int(organ[k]), int(tumor[k]), centre, tumor_centre if tumor[k] else None)
            for k, centre, tumor_centre in zip(numbers, centres, tumor_centres)]


def _fillable(cavities: np.ndarray, stay_empty: Optional[np.ndarray]) -> np.ndarray:
    """The cavity voxels a hole fill may label: all of ``cavities`` but those that must ``stay_empty``."""
    return cavities if stay_empty is None else cavities & ~stay_empty


def fill_cavities(region: np.ndarray, cavities: np.ndarray, structure: np.ndarray) -> Tuple[int, int]:
    """Each connected cavity (``structure``) of ``region`` ``(z, y, x)`` takes the label most of the voxels
    around it carry, in place: a hole in the liver becomes liver, an unlabelled core inside a tumor (necrosis)
    becomes tumor (ties: liver). Returns ``(voxels filled, of them tumor)``."""
    from scipy import ndimage

    if not cavities.any():
        return 0, 0
    box = bounding_box(cavities, 1)
    cavities, labels = cavities[box], region[box]
    ids, count = ndimage.label(cavities, structure=structure)
    around = ndimage.grey_dilation(ids, footprint=structure) * ~cavities  # the cavity a border voxel touches
    tumor = np.bincount(around[labels == 2], minlength=count + 1)
    total = np.bincount(around.ravel(), minlength=count + 1)
    value = np.where(2 * tumor[:count + 1] > total[:count + 1], 2, 1).astype(np.uint8)
    filled = value[ids[cavities]]
    labels[cavities] = filled
    return int(filled.size), int(np.count_nonzero(filled == 2))


def postprocess_labels(labels_zyx: np.ndarray, spacing_zyx: Sequence[float],
                       options: PostprocessingOptions = PostprocessingOptions(), hu_zyx: Optional[np.ndarray] = None,
                       geometry: Any = None, tumor_probability_zyx: Optional[np.ndarray] = None,
                       changes: Optional[Dict[str, Any]] = None) -> np.ndarray:
    """Return a cleaned copy of ``labels_zyx`` (uint8, (z, y, x)); ``spacing_zyx`` in mm.

    ``hu_zyx`` (the CT in HU on the same grid) and ``geometry`` (its :class:`ImageGeometry`, for the
    superior direction) enable ``below_lungs``; without them that step is skipped. ``hu_zyx`` also lets the
    tube rule check a vessel's density. ``tumor_probability_zyx`` (uint8 ``round(255 p)`` of the tumor
    class, same grid, before post-processing) enables ``min_lesion_probability`` and gives each
    ``tumor_components`` record its ``mean_tumor_probability`` and ``peak_tumor_probability``.

    ``changes``: a dict that receives what the steps took out, so nothing is removed silently:
    ``liver_above_lungs_ml`` (organ removed above the lung bases, tumor included), ``tumor_above_lungs_ml``
    (the tumor part of it), ``tumor_above_lungs_components`` and ``tumor_in_air_components`` (per 26-connected
    piece of the tumor the lung-base and air steps removed, largest first: ``{"volume_ml", "centroid_lps_mm",
    "centroid_ras_mm"}``, :func:`removed_tumor_components`), ``liver_components_removed`` (list of
    ``{"volume_ml", "tumor_ml", "centroid_lps_mm", "centroid_ras_mm", "tumor_centroid_lps_mm",
    "tumor_centroid_ras_mm"}``: organ parts apart from the kept one, the largest with liver; the tumor centroids
    None for a part without tumor, :func:`dropped_part_record`; all centroids in patient LPS and RAS mm, left out
    without ``geometry``),
    ``holes_filled_liver_ml`` and ``holes_filled_tumor_ml`` (background enclosed by the organ that the hole fill
    labelled liver, or tumor: a necrotic core inside a tumor), ``tumor_components`` (list of
    ``{"rule", "became", "volume_ml", "mean_tumor_probability", "peak_tumor_probability", "centroid_lps_mm",
    "centroid_ras_mm"}``; rules
    ``outside_liver`` (removed), ``tubular``, ``small``, ``uncertain`` (became liver, or background when touching
    no liver); ``volume_ml``, the mean and peak probability and the centroids count the component's voxels the
    network labelled tumor, not a core the hole fill added; the two probabilities 0..1, None without
    ``tumor_probability_zyx``; the centroids (mean voxel-centre position, patient LPS and RAS mm, as the lesion
    report's) only with ``geometry``, left out without it), ``head_foot_order``
    (:func:`~.head_foot.head_foot_order`: whether the lungs lie below the liver, a header with head and foot
    swapped; read whenever ``hu_zyx`` and ``geometry`` are given, with the rules off too; where they do,
    ``below_lungs`` is not applied). Volumes in mL.

    The four lists hold at most :data:`LISTED_RECORDS_MAX` records each, the largest (``tumor_components``: in
    component order, as uncapped); ``<list>_not_listed`` counts and sums the rest (0 and 0.0 when all are listed):
    ``{"count", "volume_ml"}`` (:func:`pieces_not_listed`) for the two removed-tumor lists, with ``tumor_ml`` and
    the counts the warning reads for ``liver_components_removed`` (:func:`dropped_parts_not_listed`), with
    ``by_rule`` for ``tumor_components`` (:func:`_count_tumor_changes_not_listed`).
    ``options.min_lesion_probability`` None (the model's) is :data:`DEFAULT_MIN_LESION_PROBABILITY` here, where no
    package is known (``segment`` gives its package's).
    """
    from ..io.labels import as_label_array
    from ..volume import checked_spacing
    options = with_min_lesion_probability(options, None)
    # 258 became 2 (tumor), -1 255, 1.9999 liver
    labels = np.array(as_label_array(labels_zyx, "labels given to postprocess_labels"), dtype=np.uint8, copy=True,
                      order="C")
    if labels.ndim != 3:
        raise InputError(f"postprocess_labels needs a 3-D (z, y, x) label map, got shape {labels.shape}.")
    spacing = checked_spacing(spacing_zyx, 3)
    for array, what in ((hu_zyx, "hu_zyx (the CT)"), (tumor_probability_zyx, "tumor_probability_zyx")):
        if array is not None and tuple(np.shape(array)) != labels.shape:  # a CT on another grid was dropped silently
            raise InputError(f"{what} has shape {tuple(np.shape(array))}, the labels {labels.shape} (z, y, x); give "
                             f"it on the labels' grid.")
    none = pieces_not_listed([], voxel_ml=0.0)  # each capped list's summary of what it leaves out: nothing yet
    record = {"liver_in_air_ml": 0.0, "tumor_in_air_ml": 0.0, "liver_in_air_outside_body_ml": 0.0,
              "tumor_in_air_outside_body_ml": 0.0, "air_slices_without_body": 0, "tumor_in_air_components": [],
              "tumor_in_air_components_not_listed": dict(none),
              "liver_above_lungs_ml": 0.0, "tumor_above_lungs_ml": 0.0, "tumor_above_lungs_components": [],
              "tumor_above_lungs_components_not_listed": dict(none),
              "liver_components_removed": [], "liver_components_removed_not_listed": dropped_parts_not_listed([], 0.0),
              "tumor_components": [], "tumor_components_not_listed": tumor_changes_not_listed(),
              "holes_filled_liver_ml": 0.0, "holes_filled_tumor_ml": 0.0,
              "head_foot_order": {"judged": False, "why": "no liver" if hu_zyx is not None and geometry is not None
                                  else "no CT in HU with its geometry given"}}
    if not labels.any():  # uint8 0/1/2: nonzero is organ (labels >= 1 made a whole-volume mask)
        if changes is not None:  # every key, also when there was nothing to clean (no liver found)
            changes.update(record)
        return labels
    result, reorientation = labels, None
    if geometry is not None:
        from ..orientation import plan_reorientation

        # a geometry of another grid was half used: spacing_zyx on an axis-aligned one, its own spacing otherwise
        if not np.allclose(np.asarray(geometry.spacing[::-1], dtype=np.float64), np.asarray(spacing, dtype=np.float64),
                           rtol=1e-6, atol=0.0):
            raise InputError(f"spacing_zyx {tuple(float(s) for s in spacing)} differs from the geometry's spacing "
                             f"{tuple(geometry.spacing[::-1])} (z, y, x); give both of the labels' grid.")

        reorientation = plan_reorientation(geometry, labels.shape)
        if reorientation.is_identity:
            reorientation = None
        else:  # the steps work in place on a canonical view of the copy: no canonical copy, none to turn back
            labels = reorientation.canonical_view(result)
            spacing = tuple(float(s) for s in reorientation.canonical_geometry.spacing[::-1])
    voxel_ml = float(np.prod(spacing)) / 1000.0
    # the records' centroids: indices of the canonical view, whose geometry puts each voxel where it lies
    located = None if geometry is None else (geometry if reorientation is None else reorientation.canonical_geometry)
    hu = None
    if hu_zyx is not None:
        hu = np.asarray(hu_zyx)
        if reorientation is not None:  # a view: the lung step reads a coarse subsample, the tube rule a box
            hu = reorientation.canonical_view(hu)
    if options.air_to_background and hu is not None:
        # first: the air must not join the liver's component
        outside_body = [0, 0, 0]
        tumor_at = []  # type: list
        organ, tumor = remove_organ_in_air(labels, hu, outside_body=outside_body, removed_tumor_at=tumor_at)
        record["liver_in_air_ml"], record["tumor_in_air_ml"] = organ * voxel_ml, tumor * voxel_ml
        record["liver_in_air_outside_body_ml"] = outside_body[0] * voxel_ml
        record["tumor_in_air_outside_body_ml"] = outside_body[1] * voxel_ml
        record["air_slices_without_body"] = outside_body[2]
        record["tumor_in_air_components"], record["tumor_in_air_components_not_listed"] = \
            removed_tumor_pieces(tumor_at, voxel_ml, located, LISTED_RECORDS_MAX)
    if hu is not None and geometry is not None:
        from .head_foot import head_foot_order

        # the lungs tell the head-foot order too (a check, run with the rules off as well): with head and foot
        # swapped in the header they lie under the liver, and the lung-base rule would remove most of it
        found_lungs = find_lungs(hu, spacing, options)
        lungs, step = found_lungs
        organ = labels[:, ::step, ::step] >= 1
        record["head_foot_order"] = head_foot_order(lungs, organ, spacing,
                                                    float(np.count_nonzero(labels)) * voxel_ml,
                                                    lungs is None and body_on_image_sides(hu, step))
        if options.below_lungs and not record["head_foot_order"].get("lungs_below_liver"):
            tumor_above, tumor_at = [], []  # type: list, list
            record["liver_above_lungs_ml"] = remove_above_lungs(labels, hu, spacing, options, tumor_above,
                                                                found_lungs, tumor_at,
                                                                located.direction_matrix) * voxel_ml
            record["tumor_above_lungs_ml"] = sum(tumor_above) * voxel_ml
            record["tumor_above_lungs_components"], record["tumor_above_lungs_components_not_listed"] = \
                removed_tumor_pieces(tumor_at, voxel_ml, located, LISTED_RECORDS_MAX)
    probability = None
    if tumor_probability_zyx is not None:  # the uncertain-lesion rule's, and each record's mean probability
        probability = np.asarray(tumor_probability_zyx)
        if probability.dtype != np.uint8:  # shape checked with the CT's
            if options.min_lesion_probability > 0:
                raise ValueError(f"tumor_probability_zyx must be uint8 of shape {tuple(labels_zyx.shape)}, got "
                                 f"{probability.dtype} {probability.shape}: give round(255 p), as segment writes "
                                 f"it (np.round(np.clip(p, 0, 1) * 255).astype(np.uint8) for a map p of 0..1).")
            # the confidence step off: a map not in round(255 p) is left unread, as before, rather than an int16
            # map's values being misread as 255ths in the records' mean probability
            probability = None
        if probability is not None and reorientation is not None:  # a view: only the tumors' box is read
            probability = reorientation.canonical_view(probability)
    dropped, filled = [], [0, 0]  # type: list, List[int]
    box, network_tumor = _clean_organ(labels, options, dropped,
                                      air_hu=hu if options.air_to_background else None, spacing_zyx=spacing,
                                      filled=filled)
    record["holes_filled_liver_ml"], record["holes_filled_tumor_ml"] = filled[0] * voxel_ml, filled[1] * voxel_ml
    # largest first, as before (sorted on the voxel counts only: the centres take no part in the order)
    largest_first = sorted(dropped, key=lambda p: (p[0], p[1]), reverse=True)
    record["liver_components_removed"] = [dropped_part_record(part, voxel_ml, located)
                                          for part in largest_first[:LISTED_RECORDS_MAX]]
    record["liver_components_removed_not_listed"] = dropped_parts_not_listed(largest_first[LISTED_RECORDS_MAX:],
                                                                             voxel_ml)
    clean_tumors(labels[box], spacing, options, None if probability is None else probability[box],
                 None if hu is None else hu[box], record, network_tumor, located, [b.start for b in box])
    if changes is not None:
        changes.update(record)
    return result


ORGAN_AIR_HU = -800.0
"""Voxels below this (HU) are air, gas or lung parenchyma (about -850), never liver or tumor. Not the body
threshold (-500): partial-volume voxels at the dome, where the liver meets the lung, reach -700 HU in expert labels
(132 voxels of the dcmqi 3-slice reference lie below -500, none below -800)."""


def _outside_body(slice_hu: np.ndarray, body_hu: float) -> Optional[np.ndarray]:
    """``(y, x)`` bool: the slice's voxels below ``body_hu`` joined to its edge (4-connected), i.e. the air around
    the body, not the gas or lung within its outline; None when no voxel reaches ``body_hu`` (no body at all). A
    body cut open by the field of view lets its lung or gas join the edge too."""
    from scipy import ndimage

    body = slice_hu >= threshold_for(slice_hu, body_hu)
    if not body.any():
        return None
    air, _ = ndimage.label(~body)
    edge = np.unique(np.concatenate([air[0], air[-1], air[:, 0], air[:, -1]]))
    edge = edge[edge > 0]
    return np.isin(air, edge)


def remove_organ_in_air(labels: np.ndarray, hu: np.ndarray, chunk: int = 16,
                        threshold_hu: float = ORGAN_AIR_HU, outside_body: Optional[List[int]] = None,
                        removed_tumor_at: Optional[list] = None) -> Tuple[int, int]:
    """Set liver and tumor voxels below ``threshold_hu`` (:data:`ORGAN_AIR_HU`) to background, in place; returns
    ``(organ, tumor)`` voxel
    counts removed. The bundled network labels slices of pure air liver (about 1,550 voxels per 512 x 512 slice,
    at p up to 0.98, for the v2 network; the v3 default labels most of such a slice liver): 15 air slices padded
    above and below a CT added 604 mL of "liver" that touched the real
    one, so the largest-component step kept it, and the two-stage crop followed it. ``(z, y, x)``, any layout;
    read in blocks of ``chunk`` slices (no full-size temporaries).

    ``outside_body``: a list ``[organ, tumor, slices]`` to which the organ and tumor voxels removed outside the
    body are added (:func:`_outside_body`: in the air joined to the slice's edge, or on a slice holding no body at
    all, whose number goes to ``slices``): that "liver" lies in the air around the body, never liver, so no option
    should be advised to keep it (:func:`postprocessing_warnings`).

    ``removed_tumor_at`` (a list) receives, per block that lost tumor, the ``(n, 3)`` int indices ``(z, y, x)`` in
    ``labels`` of the tumor voxels removed, for :func:`removed_tumor_components` (read from the air voxels
    only)."""
    from ..preprocessing.intensity import BODY_THRESHOLD_HU

    organ = tumor = 0
    for start in range(0, labels.shape[0], chunk):
        in_block = labels[start:start + chunk] >= 1
        plane = in_block.any(axis=0)  # the block's organ, seen along z
        rows, columns = np.flatnonzero(plane.any(axis=1)), np.flatnonzero(plane.any(axis=0))
        if rows.size == 0:
            continue
        # only the organ's in-plane box is compared with the CT: outside it no voxel can change (the whole block's
        # threshold took 0.046 s of a 300 x 512 x 512 CT's post-processing)
        box = (slice(start, start + chunk), slice(int(rows[0]), int(rows[-1]) + 1),
               slice(int(columns[0]), int(columns[-1]) + 1))
        block = labels[box]
        block_hu = np.asarray(hu[box])
        air = in_block[(slice(None),) + box[1:]] & (block_hu < threshold_for(block_hu, threshold_hu))
        if air.any():
            if removed_tumor_at is None:
                tumor += int(np.count_nonzero(block[air] == 2))
            else:
                where = true_indices(air)
                is_tumor = block[where] == 2
                tumor += int(np.count_nonzero(is_tumor))
                if is_tumor.any():
                    removed_tumor_at.append(np.stack([w[is_tumor] for w in where], axis=1)
                                            + np.asarray([start, box[1].start, box[2].start]))
            organ += int(np.count_nonzero(air))
            if outside_body is not None:  # only slices that lost organ labels are read whole (about 1 ms each)
                for k in np.flatnonzero(air.any(axis=(1, 2))):
                    outside = _outside_body(np.asarray(hu[start + int(k)]), BODY_THRESHOLD_HU)
                    if outside is None:
                        there = air[k]
                        outside_body[2] += 1
                    else:
                        there = air[k] & outside[box[1], box[2]]
                    outside_body[0] += int(np.count_nonzero(there))
                    outside_body[1] += int(np.count_nonzero(block[k][there] == 2))
            block[air] = 0
    return organ, tumor


WARN_LIVER_REMOVED_ML = 5.0
"""Liver (mL) taken out by one anatomical step above which :func:`postprocessing_warnings` tells the user."""
WARN_TUMOR_CHANGED_ML = 0.5
"""Tumor (mL, all components of one rule together) removed or relabelled above which the user is told."""


KEEP_HINT = "run again with {}"
"""How every post-processing warning ends: ``run again with --flag``. The Slicer panel replaces the flag by its
checkbox (``panel_text``), so one wording serves both; library calls name the option field instead."""


def _switch(cli_flag: str, field: str) -> str:
    """A post-processing switch as the caller knows it: the flag for the command line, else the
    PostprocessingOptions field that turns the step off."""
    from ..errors import option_hint
    return option_hint(cli_flag, f"postprocessing {field}=False")


def _ml(volume_ml: float) -> str:
    """A volume for a warning: one decimal below 10 mL (a 0.3 mL part was '0 mL' beside '0.3 mL of it tumor'),
    whole mL above."""
    return f"{volume_ml:.1f}" if volume_ml < 10 else f"{volume_ml:.0f}"


def liver_parts_advice(cut_by_scan_end: bool = False) -> str:
    """How a warning about liver parts left out ends, in one-stage post-processing and in the two-stage crop.
    ``cut_by_scan_end``: the liver kept lies on the scan's first or last slice
    (:func:`~.plausibility.liver_cut_by_scan_end`), so parts of it may join only beyond the scan: the shared
    abdomen-pelvis CT cut in its lower liver had its left lobe's lower part (11 mL of true liver, joined to the right
    lobe only above the scan's top slice) dropped with advice about resections only."""
    beyond = (", or, as the scan starts or ends inside the liver, a part joined to the rest only beyond its first or "
              "last slice") if cut_by_scan_end else ""
    return (f"if that is liver (a lobe separated by a resection or a thin bridge{beyond}), "
            f"{KEEP_HINT.format(_switch('--keep-all-liver-components', 'largest_liver_component'))}.")


def _part_ml(volume_ml: float) -> str:
    """A removed part's volume for a warning: to 0.1 mL, or to 2 significant digits where that would show 0 (a
    one-voxel part of tumor of 0.027 mL read '(0.0 mL, 0.0 mL of it tumor)')."""
    from .lesion_report import number_text
    return number_text(volume_ml, 1)


def postprocessing_warnings(changes: Dict[str, Any], liver_left_ml: Optional[float] = None,
                            cut_by_scan_end: bool = False, statistic: str = DEFAULT_LESION_PROBABILITY_STATISTIC
                            ) -> list:
    """One line per step of :func:`postprocess_labels` that took out a notable amount (its ``changes``), with
    the switch that keeps it: anatomical rules can be wrong on anatomy they were not built for.
    ``liver_left_ml``: the organ (label >= 1) left after post-processing; when the lung-base step removed more
    than that (most of the organ), its line adds that a head-foot flip in the file's header does this.
    ``cut_by_scan_end``: the liver left lies on the scan's first or last slice (:func:`liver_parts_advice`).
    ``statistic``: what the uncertain-lesion rule read of each lesion (``lesion_probability_statistic``: mean or
    peak), as its line names it."""
    from ..errors import option_hint

    lines = []
    lines.extend(_air_warnings(changes))
    above = float(changes.get("liver_above_lungs_ml", 0.0))
    tumor_above = float(changes.get("tumor_above_lungs_ml", 0.0))
    if above >= WARN_LIVER_REMOVED_ML or tumor_above >= WARN_TUMOR_CHANGED_ML:
        what = f"{_ml(above)} mL labelled liver" if not tumor_above else \
            f"{_part_ml(above)} mL labelled liver or tumor ({_part_ml(tumor_above)} mL of it tumor)"
        flip = ""
        if liver_left_ml is not None and above > float(liver_left_ml):  # most of the organ: the lungs "below" it
            flip = (f", most of the organ ({_ml(float(liver_left_ml))} mL left): a head-foot flip in the file's "
                    f"header (its orientation puts the feet up) would cause this, so check the header's orientation")
        lines.append(f"post-processing removed {what} above the lung bases (heart or chest){flip}; if it belongs to "
                     f"the liver, {KEEP_HINT.format(_switch('--keep-liver-above-lungs', 'below_lungs'))}.")
    parts = changes.get("liver_components_removed", [])
    # the parts a capped list leaves out (LISTED_RECORDS_MAX), each smaller than every listed one: counted too
    unlisted = changes.get("liver_components_removed_not_listed") or {}
    notable = [p for p in parts if p["volume_ml"] >= WARN_LIVER_REMOVED_ML or p["tumor_ml"] > 0]
    notable_count = len(notable) + int(unlisted.get("notable_count", 0))
    if notable_count:
        volume = sum(p["volume_ml"] for p in notable) + float(unlisted.get("notable_volume_ml", 0.0))
        tumor = sum(p["tumor_ml"] for p in notable) + float(unlisted.get("tumor_ml", 0.0))
        # specks: counted, so the warning and the report's list (with its not-listed summary) agree
        rest = len(parts) + int(unlisted.get("count", 0)) - notable_count
        everything = sum(p["volume_ml"] for p in parts) + float(unlisted.get("volume_ml", 0.0))
        more = (f"; {rest} smaller part(s) without tumor ({_ml(everything - volume)} mL) "
                f"too, {'listed' if not unlisted.get('count') else 'counted'} in the report") if rest else ""
        # parts mostly tumor and smaller than the liver kept go only when farther than the tumor margin (a part not
        # listed is smaller than every listed one: taken as smaller than the liver kept)
        lesion_like = sum(1 for p in notable if 2 * p["tumor_ml"] >= p["volume_ml"] > 0
                          and (liver_left_ml is None or p["volume_ml"] < float(liver_left_ml))) + \
            int(unlisted.get("mostly_tumor_count", 0))
        lesion_advice = (f" {lesion_like} of them mostly tumor, farther from the liver than the tumor margin: if "
                         f"that is a lesion (an exophytic or pedunculated tumor), a larger "
                         f"{option_hint(MARGIN_FLAG, 'postprocessing liver_dilation_mm')} keeps it.") \
            if lesion_like else ""
        lines.append(f"post-processing removed {notable_count} part(s) of the liver label apart from the "
                     f"largest one holding liver "
                     f"({_part_ml(volume)} mL, {_part_ml(tumor)} mL of it tumor){more}; "
                     f"{liver_parts_advice(cut_by_scan_end)}{lesion_advice}")
        # ... both to 0.1 mL: '23 mL, 23.2 mL of it tumor' read as more tumor than the parts held (23.355 mL)
    components = changes.get("tumor_components", [])
    unlisted_by_rule = (changes.get("tumor_components_not_listed") or {}).get("by_rule", {})
    # with no liver left, 'away from the liver' named a liver that was not there (a prediction of tumor alone)
    away = "tumor region(s) with no liver found anywhere removed (tumor is kept in or near the liver only)" \
        if liver_left_ml is not None and float(liver_left_ml) <= 0.0 else "tumor region(s) away from the liver removed"
    for rule, what, switch in (("outside_liver", away,
                                _switch("--allow-tumor-outside-liver", "tumor_inside_liver")),
                               ("tubular", "tube-shaped tumor region(s) read as vessels and " +
                                _made(components, "tubular", unlisted_by_rule),
                                _switch("--keep-tubular-lesions", "tubular_lesions_to_liver"))):
        hits, hits_ml = _rule_count_and_ml(components, unlisted_by_rule, rule)
        if hits_ml >= WARN_TUMOR_CHANGED_ML:
            lines.append(f"post-processing: {hits} {what} ({hits_ml:.1f} mL); to keep them, "
                         f"{KEEP_HINT.format(switch)}.")
    # lesions of low confidence made liver: three lesions of about 20 mm (RECIST-measurable) went without a word
    doubtful, doubtful_ml = _rule_count_and_ml(components, unlisted_by_rule, "uncertain")
    if doubtful_ml >= WARN_TUMOR_CHANGED_ML:
        switch = option_hint(KEEP_ALL_LESIONS_FLAG, "postprocessing min_lesion_probability=0")
        lines.append(f"post-processing: {doubtful} small lesion(s) whose {statistic} tumor probability was below the "
                     f"limit were {_made(components, 'uncertain', unlisted_by_rule)} ({doubtful_ml:.1f} mL); to keep "
                     f"them, {KEEP_HINT.format(switch)}.")
    return lines


AIR_BEYOND_LIVER_ML = 5000.0
"""Organ removed at air density (mL) within the body's outline above which it cannot be liver the air rule took by
mistake: the largest plausible liver (``segmenter.PLAUSIBLE_LIVER_ML``), so its warning advises no option to keep
it."""


def _air_warnings(changes: Dict[str, Any]) -> List[str]:
    """The air step's warning(s): what it removed outside the body (in the air around it, or on slices holding no
    body: the network's "liver" there is never liver, so no option is advised), and what it removed within the
    body's outline (gas or lung, or liver the rule mistook: ``--keep-liver-in-air`` keeps it, unless it is more
    than any liver holds). The advice to keep the whole of it, given for 2,929 mL on 20 padded air slices and
    20,427 mL around a turned CT, kept litres of false liver."""
    in_air = float(changes.get("liver_in_air_ml", 0.0))
    tumor_in_air = float(changes.get("tumor_in_air_ml", 0.0))
    if in_air < WARN_LIVER_REMOVED_ML and tumor_in_air < WARN_TUMOR_CHANGED_ML:
        return []
    outside = min(in_air, float(changes.get("liver_in_air_outside_body_ml", 0.0)))
    rest = in_air - outside
    rest_tumor = tumor_in_air - min(tumor_in_air, float(changes.get("tumor_in_air_outside_body_ml", 0.0)))
    lines = []
    if outside > 0.0 and (outside >= WARN_LIVER_REMOVED_ML or rest < WARN_LIVER_REMOVED_ML):
        slices = int(changes.get("air_slices_without_body", 0))
        empty = f", {slices} slice(s) of it holding no body at all" if slices else ""
        lines.append(f"post-processing removed {_ml(outside)} mL labelled liver or tumor in the air outside the body "
                     f"(below {ORGAN_AIR_HU:.0f} HU and joined to the image's edge{empty}: e.g. a reconstruction "
                     f"range longer than the body, or the air around a turned CT): the network labels such air "
                     f"liver; that is never liver, and the labels are right without it.")
        if rest < WARN_LIVER_REMOVED_ML and rest_tumor < WARN_TUMOR_CHANGED_ML:
            return lines
    where = " within the body's outline" if outside > 0.0 else ""
    if rest > AIR_BEYOND_LIVER_ML:
        lines.append(f"post-processing removed {_ml(rest)} mL labelled liver or tumor at air density (below "
                     f"{ORGAN_AIR_HU:.0f} HU){where}: more than any liver holds, so it is air the network mistook "
                     f"for liver, not liver; the labels are right without it.")
    else:
        what = f"{where}: gas or lung" if outside > 0.0 else ": air slices or gas"
        lines.append(f"post-processing removed {_ml(rest)} mL labelled liver or tumor at air density (below "
                     f"{ORGAN_AIR_HU:.0f} HU{what} the network mistook for liver); to keep it, "
                     f"{KEEP_HINT.format(_switch('--keep-liver-in-air', 'air_to_background'))}.")
    return lines


def _rule_count_and_ml(components: Sequence[Dict[str, Any]], unlisted_by_rule: Dict[str, Any],
                       rule: str) -> Tuple[int, float]:
    """``(count, mL)`` of the tumor components of ``rule``: those listed (``tumor_components``) and those the capped
    list left out (``tumor_components_not_listed["by_rule"]``)."""
    volumes = [c["volume_ml"] for c in components if c["rule"] == rule]
    unlisted = unlisted_by_rule.get(rule, {})
    return len(volumes) + int(unlisted.get("count", 0)), sum(volumes) + float(unlisted.get("volume_ml", 0.0))


def _made(components: Sequence[Dict[str, Any]], rule: str, unlisted_by_rule: Optional[Dict[str, Any]] = None) -> str:
    """What the tumor components of ``rule`` became, for a warning: 'labelled liver', or with those touching no
    liver (``became`` background: :func:`clean_tumors`) counted; ``unlisted_by_rule``: those a capped list left out
    (``tumor_components_not_listed["by_rule"]``), counted too."""
    unlisted = (unlisted_by_rule or {}).get(rule, {})
    apart = sum(1 for c in components if c["rule"] == rule and c.get("became") == "background") + \
        int(unlisted.get("became_background", 0))
    every = sum(1 for c in components if c["rule"] == rule) + int(unlisted.get("count", 0))
    if not apart:
        return "labelled liver"
    if apart == every:
        return "removed (touching no liver)"
    return f"labelled liver ({apart} of them touching no liver: removed)"


MARGIN_FLAG = "--tumor-liver-margin-mm"
"""The tumor margin's switch (the panel has no control for it)."""
KEEP_ALL_LESIONS_FLAG = "--min-lesion-probability 0"
"""The switch that keeps lesions of low mean tumor probability (the panel: its spin box set to 0)."""
