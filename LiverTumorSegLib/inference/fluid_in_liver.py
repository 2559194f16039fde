"""A warning when a sizeable part of the segmented liver has the density of water.

Fluid labelled liver inflates the liver volume without a word, and may hide a finding: a fluid-filled resection bed
after a hepatectomy (an earlier audit saw the bundled model label one liver: 1,158 mL of liver against 282 mL), a
large cyst or abscess, ascites beside the liver, or a cystic or necrotic tumor the network called liver. Simple fluid
(water 0 HU; bile, ascites, serous cysts 0-20 HU; an abscess or complex fluid up to about 25 HU) is darker than liver
parenchyma in every phase (unenhanced 50-65 HU, portal venous 90-130 HU) and than unenhanced blood (35-50 HU), so a
connected part of label 1 whose median lies in :data:`FLUID_MIN_HU` .. :data:`FLUID_MAX_HU` and at least
:data:`FLUID_DARKER_THAN_LIVER_HU` below the liver's own median is not liver tissue. The second condition keeps a
liver that is dark as a whole (fatty: near 0 HU; a liver shifted 40 HU down) from being called fluid.

A third condition tells such a region from the darkest part of a liver that darkens gradually (uneven enhancement,
beam hardening): fluid has an edge (:data:`SHARP_EDGE_FRACTION`).

Label 2 (tumor) is left out: the lesion report lists the tumors with their mean HU already, and flags and warns of
those of water density (:mod:`.water_density`; the bundled model called the benchmark's water blobs tumor, 98 % of
them: docs/bundled_model.md, ``fluid_region``). The check reads a coarse
sample (about :data:`SAMPLE_MM` apart) of the liver's bounding box only: 0.14 s on a 300 x 512 x 512 CT whose liver
filled all 300 slices (``example_ct_dicom20`` and its segmentation repeated 15 times), 0.16-0.20 s with a 65 mL ball of
water in it.
"""
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..volume import ImageGeometry
from .sampling import anchored_start

FLUID_MIN_HU = -10.0
FLUID_MAX_HU = 25.0
"""Median CT value (HU) range of a fluid region: water 0 HU, bile, ascites and simple cysts 0-20 HU, an abscess or
proteinaceous fluid up to about 25 HU; -10 leaves room for noise and beam hardening. Fat (-150..-50 HU) lies below,
unenhanced blood (35-50 HU) and liver in any phase (about 45 HU and more) above. The water of the ``fluid_region``
rows of ``benchmarks/robustness.py`` (drawn at 0-15 HU in the liver of the four shared CTs, seeds 0-5) measured
-0.3 to 14.7 HU (the median of the region found, with the water labelled liver)."""
FLUID_DARKER_THAN_LIVER_HU = 20.0
"""A fluid region's median must lie at least this far (HU) below the median of the liver (label 1), so that a liver
dark as a whole (fatty, near 0 HU; every liver voxel shifted down) is not called fluid: the four shared CTs with
their liver moved to 5 HU, or 40 HU down or up (``liver_hu-40`` / ``liver_hu+40``), gave no warning. Unenhanced
liver (44-46 HU on three of the shared CTs) lies only 20-45 HU above fluid of 0-25 HU: the ``fluid_region`` water
of 14.7 HU in the 44 HU liver of ``example_ct_full112`` (seed 0) lay 29 HU below it, so 30 would have missed it
(and the darkest part of ``example_ct_dicom20`` shifted 40 HU down lay 27 HU below: :data:`SHARP_EDGE_FRACTION`
tells it apart)."""
FLUID_MIN_ML = 10.0
"""Smallest fluid region (mL) warned of: a ball of 27 mm, 0.7 % of a 1.5 L liver, under the volume error of a liver
Dice of 0.98. Smaller cysts are common and harmless to the liver volume, and a sliver of the gallbladder (bile,
0-20 HU) at the liver's edge taken in by the segmentation stays below it: on the sample CT (``example_ct_sm``, 3 mm
voxels) the bundled model labels 0.8 mL of TotalSegmentator's 36 mL gallbladder (median 3 HU) liver; with the
gallbladder within 6 mm of that liver added to it (9.7 mL) nothing is warned, within 9 mm (15.0 mL) a 14.9 mL region
is, and so is the whole gallbladder (38.0 mL)."""
SHARP_EDGE_FRACTION = 0.6
"""A fluid region has an edge: the liver just around it (two sampled voxels out, its median) lies at least this
fraction of the way from the region's median up to the liver's. The darkest part of a liver that darkens gradually
(uneven enhancement, beam hardening) is surrounded by values in between: on ``example_ct_dicom20`` shifted 40 HU
down (``liver_hu-40``, with its reference labels), a 109 mL posterior part of 25 HU in a liver of 52 HU was
surrounded by 38 HU (a fraction of 0.48), where water put in by the ``fluid_region`` rows (and labelled liver) was
surrounded at 0.79-1.06 of the way on the three CTs where it was large enough at seed 0, and at 0.67-1.06 on them
over seeds 0-5 (0.63 on the 3-slice CT, where a region of 10 mL or more was found once, at seed 5)."""
SAMPLE_MM = 2.0
"""Voxels read about this far apart (mm) along each axis (every voxel of a coarser scan)."""
EDGE_VOXELS = 1
"""Sampled voxels (about :data:`SAMPLE_MM` each) peeled off the liver's surface before the search: partial volume
between liver and the fat around it gives the surface voxels values in the fluid range."""


def _liver_box(labels_zyx: np.ndarray, liver_box: Optional[Tuple[slice, ...]] = None) -> Tuple[slice, ...]:
    """The bounding box of label >= 1 plus one voxel on each side (clipped to the array); empty slices without
    liver. ``liver_box``: that box (``bounding_box(labels_zyx, 1)``, ``(z, y, x)`` slices, None without liver)
    already found by the caller: the report stage reads it once for its checks (0.03 s a read of a 300 x 512 x 512
    label map)."""
    from ..metrics.surface import bounding_box

    box = bounding_box(labels_zyx, 1) if liver_box is None else liver_box  # labels 0/1/2: any label is liver
    return (slice(0, 0),) * 3 if box is None else box


FLUID_REACH_VOXELS = EDGE_VOXELS + 1 + 2
"""Sampled voxels a region reaches beyond its core: grown back over the peeled surface (``EDGE_VOXELS + 1``), then
the shell of liver around it (2)."""


def _grown_box(box: Tuple[slice, ...], margin: int, shape: Tuple[int, ...]) -> Tuple[slice, ...]:
    """``box`` (slices of an array of ``shape``) widened by ``margin`` voxels on each side, clipped to the array."""
    return tuple(slice(max(b.start - margin, 0), min(b.stop + margin, n)) for b, n in zip(box, shape))


TISSUE_MIN_SHARE = 0.2
TISSUE_ABOVE_ALL_HU = 10.0
TISSUE_MIN_HU = 35.0
TISSUE_ABOVE_FLUID_HU = 25.0
"""The liver's reference density is that of its tissue, label 1 whose local mean lies above :data:`FLUID_MAX_HU`, where
that tissue is at least :data:`TISSUE_MIN_SHARE` of label 1, its median at least :data:`TISSUE_ABOVE_ALL_HU` above the
median of all label 1, at least :data:`TISSUE_MIN_HU` and at least :data:`TISSUE_ABOVE_FLUID_HU` above the median of
the rest: the liver splits into two groups (the upper tail of a uniformly dark liver, 15 HU with noise, met the first
two and 215 mL of it were called fluid, the review; a floor of 45 HU alone missed the beds of unenhanced livers of 44 HU,
the second review; 15 HU above all missed 18 of 144 noisy beds of 55-60 %, whose median of all lies midway, the
third). A fluid-filled resection bed
the network labelled liver, half of label 1 or more, pulled that median into the fluid range (16 HU with 431 mL of fluid
beside 243 mL of liver), no part was 20 HU darker than 'the liver', and a liver volume three times too large was
reported without a word (the clinical-variants audit). A liver dark as a whole (fatty, 0-30 HU) has too little such
tissue, or not that much brighter, and keeps the median of all."""


def liver_reference_hu(raw: np.ndarray, smoothed: np.ndarray, parenchyma: np.ndarray) -> float:
    """The median (HU) the fluid check compares with: of the liver's tissue (``smoothed`` above :data:`FLUID_MAX_HU`,
    ``raw`` values) where :func:`tissue_reference` says the liver splits so, else of all of ``parenchyma`` (label 1)."""
    everything = float(np.median(raw[parenchyma]))
    tissue = parenchyma & (smoothed > FLUID_MAX_HU)
    if tissue_reference(raw[parenchyma], smoothed[parenchyma] > FLUID_MAX_HU):
        return float(np.median(raw[tissue]))
    return everything


def tissue_reference(values: np.ndarray, is_tissue: np.ndarray) -> bool:
    """Whether the ``values`` (HU) of a liver, of which ``is_tissue`` (same order) marks the tissue, split into tissue
    and fluid as :data:`TISSUE_MIN_SHARE`, :data:`TISSUE_ABOVE_ALL_HU`, :data:`TISSUE_MIN_HU` and
    :data:`TISSUE_ABOVE_FLUID_HU` ask, so that the tissue's median is the reference."""
    values = np.asarray(values, dtype=np.float64)
    is_tissue = np.asarray(is_tissue, dtype=bool)
    count = int(np.count_nonzero(is_tissue))
    if values.size == 0 or count < TISSUE_MIN_SHARE * values.size or count == values.size:
        return False
    tissue_median = float(np.median(values[is_tissue]))
    rest_median = float(np.median(values[~is_tissue]))
    return (tissue_median >= max(float(np.median(values)) + TISSUE_ABOVE_ALL_HU, TISSUE_MIN_HU)
            and tissue_median - rest_median >= TISSUE_ABOVE_FLUID_HU)


def fluid_regions_in_liver(labels_zyx: np.ndarray, hu_zyx: np.ndarray, geometry: ImageGeometry,
                           liver_box: Optional[Tuple[slice, ...]] = None) -> List[Dict[str, Any]]:
    """Connected parts of the liver (label 1 of ``labels_zyx``, ``(z, y, x)`` on ``geometry``; ``hu_zyx`` the CT in
    HU on the same grid) of water density: median in :data:`FLUID_MIN_HU` .. :data:`FLUID_MAX_HU`, at least
    :data:`FLUID_DARKER_THAN_LIVER_HU` below the liver's median, with an edge (:data:`SHARP_EDGE_FRACTION`),
    :data:`FLUID_MIN_ML` or more. Each is a dict of ``volume_ml``, ``median_hu``, ``liver_median_hu`` (of all label 1,
    or of its tissue where much of label 1 is fluid: :func:`liver_reference_hu`), ``edge_contrast_hu`` (the median of
    the liver just around it minus its own), ``centroid_ras_mm`` and ``slices_z`` (first and last array index along z),
    largest first.

    Method, on every :data:`SAMPLE_MM` of the liver's bounding box: the CT averaged over 3 x 3 x 3 sampled voxels
    (noise), the liver (label >= 1) peeled by :data:`EDGE_VOXELS` (partial volume with fat, not at the scan's or
    image's ends), voxels of label 1 at least :data:`FLUID_DARKER_THAN_LIVER_HU` below the liver's median and above
    fat grouped into 26-connected regions, each judged by the median of its CT values (not the averages), grown back
    over the peeled surface (its dark label-1 voxels), measured, and compared with the label-1 voxels up to two
    sampled voxels around it. ``liver_box``: ``bounding_box(labels_zyx, 1)`` when the caller has it (not read
    again; :func:`_liver_box`)."""
    from scipy import ndimage

    from .postprocess import _inside_6

    labels = np.asarray(labels_zyx)
    box = _liver_box(labels, liver_box)
    if any(b.stop <= b.start for b in box):
        return []
    spacing = np.asarray(geometry.spacing, dtype=float)[::-1]  # (z, y, x)
    step = tuple(max(1, int(SAMPLE_MM // s)) for s in spacing)
    # the same voxels of the patient however the CT is stored (:mod:`.sampling`; read from the box's first index, a
    # 30 mL region of water measured 30.17 or 29.98 mL and 10 or 9 HU as the same CT was stored)
    start = [anchored_start(geometry, labels.shape, axis, k, b.start) for axis, (b, k) in enumerate(zip(box, step))]
    sampled = tuple(slice(a, b.stop, k) for a, b, k in zip(start, box, step))
    lab = labels[sampled]
    parenchyma = lab == 1
    if not parenchyma.any():
        return []
    raw = np.asarray(hu_zyx)[sampled].astype(np.float32)
    liver = lab >= 1
    # the mean of the liver's own voxels around each voxel: the fat outside a surface voxel does not lower it
    weight = ndimage.uniform_filter(liver.astype(np.float32), size=3, mode="nearest")
    hu = ndimage.uniform_filter(np.where(liver, raw, np.float32(0)), size=3, mode="nearest") / np.maximum(weight, 1e-3)
    liver_median = liver_reference_hu(raw, hu, parenchyma)
    dark_cut = min(liver_median - FLUID_DARKER_THAN_LIVER_HU, FLUID_MAX_HU + FLUID_DARKER_THAN_LIVER_HU)
    dark = parenchyma & (hu <= dark_cut) & (hu >= FLUID_MIN_HU - FLUID_DARKER_THAN_LIVER_HU)
    if not dark.any():
        return []
    peeled = liver
    for _ in range(EDGE_VOXELS):  # ndimage.binary_erosion(liver, iterations=EDGE_VOXELS, border_value=1), by
        peeled = _inside_6(peeled)  # array shifts: 0.018 -> 0.003 s on a 300-slice CT's sampled liver box
    core = dark & peeled
    regions, count = ndimage.label(core, structure=np.ones((3, 3, 3), dtype=bool))
    if count == 0:
        return []
    voxel_ml = float(np.prod(spacing * np.asarray(step))) / 1000.0
    sizes = np.bincount(regions.ravel(), minlength=count + 1) * voxel_ml
    found = []
    # the peeled surface holds at most about half of a region's volume: smaller cores cannot reach the minimum (and
    # the median of each of the many specks of noise took 0.14 s on a 300-slice CT)
    boxes = ndimage.find_objects(regions)
    for number in np.flatnonzero(sizes >= 0.5 * FLUID_MIN_ML):
        if number == 0:
            continue
        # each region's growth (EDGE_VOXELS + 1) and its shell (2 more) stay within this box: the whole sampled
        # liver box per region took 0.03 s a region on a 300-slice CT
        near = _grown_box(boxes[number - 1], FLUID_REACH_VOXELS, regions.shape)
        own = regions[near] == number
        near_raw = raw[near]
        median = float(np.median(near_raw[own]))  # judged on the CT's own values, not the averages
        if not (FLUID_MIN_HU <= median <= FLUID_MAX_HU and median <= liver_median - FLUID_DARKER_THAN_LIVER_HU):
            continue
        region = ndimage.binary_dilation(own, structure=np.ones((3, 3, 3), dtype=bool),
                                         iterations=EDGE_VOXELS + 1, mask=dark[near])
        volume_ml = float(np.count_nonzero(region)) * voxel_ml
        if volume_ml < FLUID_MIN_ML:
            continue
        shell = ndimage.binary_dilation(region, structure=np.ones((3, 3, 3), dtype=bool), iterations=2,
                                        mask=parenchyma[near]) & ~region
        edge_contrast = float(np.median(near_raw[shell])) - median if shell.any() else 0.0
        if edge_contrast < SHARP_EDGE_FRACTION * (liver_median - median):
            continue  # the darkest part of a gradual change in the liver, not a collection with an edge
        offset = np.asarray([s.start for s in near])  # the box's first sampled voxel
        kji = (np.argwhere(region).mean(axis=0) + offset) * np.asarray(step) + start
        z = (np.flatnonzero(region.any(axis=(1, 2))) + offset[0]) * step[0] + start[0]
        found.append({"volume_ml": volume_ml, "median_hu": float(np.median(near_raw[region])),
                      "liver_median_hu": liver_median, "edge_contrast_hu": edge_contrast,
                      "centroid_ras_mm": [float(v) for v in geometry.index_to_ras(kji[::-1])],
                      "slices_z": [int(z[0]), int(z[-1])]})
    return sorted(found, key=lambda r: -r["volume_ml"])


def _about_ml(volume_ml: float) -> str:
    """A fluid region's volume (mL) to whole mL (2 significant digits under 10 mL), as the estimate it is: its
    core on a coarse sample (:data:`SAMPLE_MM`), the liver's surface peeled (:data:`EDGE_VOXELS`); a 30.0 mL ball of
    water on 5 mm slices read '26.8 mL' as if measured to 0.1 mL."""
    from .lesion_report import number_text

    return number_text(float(volume_ml), 0) if volume_ml >= 10 else f"{float(volume_ml):.2g}"


def fluid_in_liver_warnings(labels_zyx: np.ndarray, hu_zyx: np.ndarray, geometry: ImageGeometry,
                            liver_box: Optional[Tuple[slice, ...]] = None) -> List[str]:
    """One warning per region :func:`fluid_regions_in_liver` finds (arguments as it takes them); none without."""
    warnings = []
    for region in fluid_regions_in_liver(labels_zyx, hu_zyx, geometry, liver_box):
        where = ", ".join(f"{v:.0f}" for v in region["centroid_ras_mm"])
        warnings.append(
            f"Possible fluid labelled liver: a part of about {_about_ml(region['volume_ml'])} mL of the segmented "
            f"liver (its core, read about every {SAMPLE_MM:g} mm, so the whole may be larger; centre RAS "
            f"({where}) mm, array slices z {region['slices_z'][0]}-{region['slices_z'][1]}) has water density "
            f"(median {region['median_hu']:.0f} HU; the liver's median {region['liver_median_hu']:.0f} HU, of its tissue "
            f"where fluid is much of it). It may be "
            f"fluid (a resection bed, a cyst, an abscess, ascites or the gallbladder) or a cystic or necrotic lesion "
            f"the segmentation missed. Check it in the images: the liver volume includes it.")
    return warnings
