"""Lesions of water density: a per-lesion flag (``water_density``) and a warning naming them.

A simple hepatic cyst (several % of adults) holds water-like fluid: 0-20 HU, homogeneous, sharply bounded, darker
than liver parenchyma in every phase (unenhanced about 45-65 HU, portal venous 90-130 HU). A radiologist does not
call it a tumor, yet the bundled model labels such fluid tumor: the ``fluid_region`` rows of
``benchmarks/robustness.py`` (a 40-70 mm blob of 0-15 HU water in the liver of the four shared CTs) came back 98 %
tumor (seed 0, ``--max-slices 40``: 204.5 of 208.6 mL), one lesion per case, each listed with a volume and RECIST
axes. A necrotic or cystic metastasis can come close to water density too, so the lesion is flagged and warned of,
never dropped or relabelled: only a reader (and earlier imaging) can tell.

A lesion is of water density when, over its core (:func:`lesion_water_density`), its median CT value lies in
:data:`WATER_MIN_HU` .. :data:`WATER_MAX_HU`, it is at least :data:`WATER_DARKER_THAN_LIVER_HU` darker than the liver
around it, and its spread (interquartile range) is at most :data:`WATER_SPREAD_RATIO` times that liver's: as
homogeneous as liver, whose own spread is the CT's noise.

What it cannot tell: a homogeneous hypodense tumor of water density. The benchmark's synthetic tumors (not cysts)
are drawn 15-60 HU below the liver with the liver's noise grain, so in an unenhanced liver (33-56 HU around the
flagged ones) many land at water density. Over ``benchmarks/robustness.py default --max-slices 40`` seeds 0-3, of
the bundled model's lesions over synthetic tumors, 17 of 41 were flagged on the ``baseline`` rows (6 of 12 on
ct3slice_ct, 6 of 9 on example_ct_full112, 5 of 8 on example_ct_sm, all three unenhanced; 0 of 12 on the contrast CT
example_ct_dicom20), 3 of 38 on ``liver_hu-40`` (all on example_ct_dicom20, whose enhanced liver then reads about 60
HU) and 0 of 9 on ``liver_hu+40`` (seed 0); every ``fluid_region`` lesion (16 of 16) was flagged, and none of the 8
other lesions (false lesions over neither; one of them, on example_ct_full112's liver_hu-40 row, the same at seeds
0-3). Hence a flag and a warning, not a relabelling.
"""
import itertools
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

WATER_MIN_HU = -10.0
WATER_MAX_HU = 20.0
"""Median CT value (HU) range of a lesion of water density: water 0 HU, serous cyst fluid 0-20 HU; -10 leaves room for
noise and beam hardening (fat, -150..-50 HU, lies well below; :data:`~.plausibility.LESION_FAT_MAX_HU` warns of it).
The water of the ``fluid_region`` rows (drawn at 0-15 HU plus the liver's noise), as the bundled model's lesion over
it, measured medians of 2.1-14.7 HU over its core (the four shared CTs, seeds 0-3, ``--max-slices 40``: 16 lesions)."""
WATER_DARKER_THAN_LIVER_HU = 20.0
"""The lesion's median lies at least this far (HU) below the median of the liver (label 1) around it
(:data:`SURROUNDING_MM`): a lesion in a fatty liver (near 0 HU) is not of water density against it, however dark
(the same margin as :data:`~.fluid_in_liver.FLUID_DARKER_THAN_LIVER_HU`). The ``fluid_region`` lesions lay 25.8-91.2
HU below the liver around them (the least in the unenhanced livers of 36-49 HU; 16 lesions as above); a lesion of
6 HU in the benchmark's liver shifted to 10 HU (``liver_hu-40``, example_ct_full112) lay 4 HU below it: not flagged."""
WATER_SPREAD_RATIO = 1.5
"""The lesion core's interquartile range of CT values is at most this multiple of the surrounding liver's: water is as
homogeneous as liver (both show the CT's noise); a necrotic tumor with solid parts or an enhancing rim spreads wider.
The ratio, not an absolute bound, as noise differs between scanners: the liver around the ``fluid_region`` lesions
spread 14.0-70.9 HU (the noisy 3-slice GE CT: 44-71 HU), the lesions 0.78-1.11 times that (16 lesions as above). It
does not tell the benchmark's synthetic tumors (drawn with the liver's noise grain and 0-8 HU of smooth texture):
they spread 0.47-1.69 times their liver."""
WATER_LESION_DENSE_HU = 300.0
WATER_LESION_DENSE_SHARE_MAX = 0.01
"""A lesion with more than this share of its voxels at or above :data:`WATER_LESION_DENSE_HU` (lipiodol after
chemoembolisation, calcification) is no simple cyst, however homogeneous its core: a necrotic 10 HU tumor holding a
1.4 mL blob of lipiodol (mean 115 HU) was flagged as possibly a simple cyst and passed over as a RECIST target (the
clinical-variants audit); the interquartile range does not see a dense tenth."""
SURROUNDING_MM = (2.0, 10.0)
"""The liver around a lesion: label-1 voxels this far (mm, from ... to, from the lesion's voxel centres) outside it;
the first 2 mm hold partial volume with the lesion."""
CONTRAST_SHELL_MM = (2.0, 6.0)
"""The liver beside a lesion for ``contrast_to_liver_hu``: label-1 voxels more than 2 and at most 6 mm (from the
lesion's voxel centres) outside it, within :data:`SURROUNDING_MM` so one distance transform serves both. Thinner than
:data:`SURROUNDING_MM` so the contrast compares the lesion with the liver right beside it (a liver's HU drifts over
centimetres, by its vessels and enhancement); the first 2 mm hold partial volume with the lesion. The definition the
lesion-contrast audit set (27 Nov 2026), not fitted: with it, fold models' false lesions inside example_ct_dicom20's
liver (no real tumor) read -10 to -6.5 HU, and 127 of the bundled model's 138 lesions over the robustness benchmark's
synthetic tumors 15 HU or more (``benchmarks/lesion_contrast_analysis.py``, seeds 0-3)."""
DISTANCE_TOLERANCE_MM = 1e-4
"""Distances within this (mm) of a shell's bound count as on it: on 3 mm voxels the distances are multiples of 3, so a
header whose spacing reads 3.000000026 mm (metres converted to mm) put voxels at 6.00000005 mm outside the 6 mm
bound that the same CT in mm kept, and a lesion's contrast to its liver read -27 instead of -29 HU."""


def within_shell(distance_mm: np.ndarray, shell_mm: Tuple[float, float]) -> np.ndarray:
    """Mask of distances more than ``shell_mm[0]`` and at most ``shell_mm[1]`` mm (:data:`DISTANCE_TOLERANCE_MM`)."""
    return (distance_mm > shell_mm[0] + DISTANCE_TOLERANCE_MM) & (distance_mm <= shell_mm[1] + DISTANCE_TOLERANCE_MM)


CONTRAST_MIN_SHELL_VOXELS = 20
"""Fewest liver voxels in :data:`CONTRAST_SHELL_MM` for a ``contrast_to_liver_hu`` (else None): a lesion at the
liver's edge, or outside the liver, has too few liver voxels beside it for a median worth comparing. Set with
:data:`CONTRAST_SHELL_MM` by the same audit; it left 2 of the 100 false lesions of the fold models (both outside the
liver of example_ct_full112) and none of the benchmark's lesions without a contrast."""
SHELL_BLOCK_VOXELS = 2 ** 21
"""Most voxels of one block of the lesion's grown box over which the distance transform runs (scipy's takes about 56
bytes a voxel: about 110 MiB here), see :func:`_liver_around`. Measured on a synthetic lesion of 6.5 M voxels (an
ellipsoid in liver, 0.7 mm voxels, grown box 501 x 221 x 171): one transform over the box peaked at 988 MiB
(tracemalloc; resident set +1005 MiB) in 4.1 s; blocks of at most 2**21 voxels at 127 MiB (+148 MiB) in 3.2 s, the
rest being the lesion's values and the box's masks; 2**20 took 4.5 s for +126 MiB, 2**22 4.0 s for +290 MiB."""
MIN_VOXELS = 10
"""Fewest voxels (of the lesion, or of the liver around it) judged: fewer give no median or spread worth reading, so
such a lesion is not flagged."""


def lesion_water_density(hu_zyx: np.ndarray, labels_zyx: np.ndarray, mask: np.ndarray, box: Tuple[slice, ...],
                         spacing_zyx: Sequence[float]) -> Dict[str, Any]:
    """The density of one lesion: ``median_hu`` (HU, over its core: the voxels whose 6 neighbours are all in it, or
    over all its voxels when the core holds fewer than :data:`MIN_VOXELS`; None when every voxel is the scanner's
    padding), ``spread_hu`` (that core's interquartile range, HU), ``liver_median_hu`` and ``liver_spread_hu`` (the
    same of the liver around it, :data:`SURROUNDING_MM`, its tissue where fluid labelled liver lies there too,
    :func:`liver_tissue_around`; None without :data:`MIN_VOXELS` such voxels),
    ``water_density`` (bool, see the module doc) and ``contrast_to_liver_hu`` (HU: the median of all the lesion's
    voxels, padding left out, minus the median of the liver beside it, :data:`CONTRAST_SHELL_MM`; None with fewer
    than :data:`CONTRAST_MIN_SHELL_VOXELS` such voxels; negative: darker than the liver).

    ``hu_zyx`` and ``labels_zyx`` (0/1/2): the CT (HU) and label map, ``(z, y, x)`` on one grid; ``mask``: the lesion
    within ``box`` (slices of the whole volume); ``spacing_zyx``: voxel size (mm)."""
    from scipy import ndimage

    from ..validation import PADDING_BELOW_HU

    shape = np.shape(labels_zyx)
    # one voxel beyond the surrounding's reach: the local means of its outermost voxels read their neighbours, not a
    # copy of the box's face (1597 of 17152 shell voxels of a phantom differed, the review)
    reach = [int(np.ceil(SURROUNDING_MM[1] / float(s))) for s in spacing_zyx]
    grown = tuple(slice(max(b.start - m - 1, 0), min(b.stop + m + 1, n)) for b, m, n in zip(box, reach, shape))
    lesion = np.zeros(tuple(g.stop - g.start for g in grown), dtype=bool)
    lesion[tuple(slice(b.start - g.start, b.stop - g.start) for b, g in zip(box, grown))] = mask
    hu = np.asarray(hu_zyx)[grown]
    tissue = hu >= PADDING_BELOW_HU
    core = ndimage.binary_erosion(lesion, structure=ndimage.generate_binary_structure(3, 1)) & tissue
    if np.count_nonzero(core) < MIN_VOXELS:
        core = lesion & tissue
    out = {"median_hu": None, "spread_hu": None, "liver_median_hu": None, "liver_spread_hu": None,
           "water_density": False, "contrast_to_liver_hu": None}  # type: Dict[str, Any]
    if not core.any():
        return out
    out["median_hu"], out["spread_hu"] = _median_and_spread(hu[core])
    del core
    dense_share = float(np.count_nonzero(hu[lesion & tissue] >= WATER_LESION_DENSE_HU)) / max(
        int(np.count_nonzero(lesion & tissue)), 1)
    labels = np.asarray(labels_zyx)[grown]
    liver, distance, local = _liver_around(lesion, hu, labels, tissue, reach, spacing_zyx)
    beside = liver[within_shell(distance, CONTRAST_SHELL_MM)]
    if beside.size >= CONTRAST_MIN_SHELL_VOXELS:
        lesion_median = float(np.median(hu[lesion & tissue].astype(np.float64)))
        out["contrast_to_liver_hu"] = lesion_median - float(np.median(beside.astype(np.float64)))
    del beside, distance
    liver = liver_tissue_around(liver, local)
    del local
    if liver.size >= MIN_VOXELS:
        out["liver_median_hu"], out["liver_spread_hu"] = _median_and_spread(liver)
    out["water_density"] = is_water_density(out["median_hu"], out["spread_hu"], out["liver_median_hu"],
                                            out["liver_spread_hu"], int(np.count_nonzero(lesion))) and \
        dense_share <= WATER_LESION_DENSE_SHARE_MAX  # lipiodol or calcium in it: no simple cyst
    return out


def liver_tissue_around(values: np.ndarray, local_means: np.ndarray) -> np.ndarray:
    """The values (HU) of the label-1 voxels around a lesion that are liver tissue: those whose local mean
    (``local_means``, same order: the 3 x 3 x 3 mean of the liver's own voxels) lies above
    :data:`~.fluid_in_liver.FLUID_MAX_HU`, where they are :data:`~.fluid_in_liver.TISSUE_MIN_SHARE` of all and their
    median as :func:`.fluid_in_liver.tissue_reference` asks, as :func:`.fluid_in_liver.liver_reference_hu` reads the
    liver; else all of them (selected by the raw values, a noisy fatty liver's upper half of noise made the reference, flags came and
    went both ways, the review). Ascites or a resection bed the network split into tumor
    and 'liver' put fluid around the lesions it called tumor: 'the liver around it' read 17-25 HU, the lesions of 10 HU
    were not of water density against it, and RECIST chose them as targets ahead of the flagged ones (the
    clinical-variants audit)."""
    from .fluid_in_liver import FLUID_MAX_HU, tissue_reference

    values = np.asarray(values)
    if values.size == 0:
        return values
    is_tissue = np.asarray(local_means) > FLUID_MAX_HU
    if np.count_nonzero(is_tissue) >= MIN_VOXELS and tissue_reference(values, is_tissue):
        return values[is_tissue]
    return values


def _median_and_spread(values: np.ndarray) -> Tuple[float, float]:
    """Median and interquartile range (HU) of ``values`` (HU, any order), in float64; both partition one float64 copy
    in place (the same order statistics as on copies of it, without a copy each)."""
    values = values.astype(np.float64)
    median = float(np.median(values, overwrite_input=True))
    low, high = np.percentile(values, [25.0, 75.0], overwrite_input=True)
    return median, float(high - low)


def _block_lengths(shape: Sequence[int], reach: Sequence[int], max_voxels: int) -> List[int]:
    """Length (voxels, per axis ``(z, y, x)``) of the part of ``shape`` one block decides, the block reaching ``reach``
    voxels beyond it on each side (within ``shape``): the longest part halved until a block holds at most
    ``max_voxels``, no part shorter than its reach (else the overlap, read again by the next block, would outweigh
    it), so a block can exceed ``max_voxels`` only where 3 reaches per axis do (10 mm reach: voxels under 0.24 mm)."""
    lengths = list(shape)

    def block_voxels() -> int:
        return int(np.prod([min(n + 2 * r, s) for n, r, s in zip(lengths, reach, shape)], dtype=np.int64))

    while block_voxels() > max_voxels:
        halvable = [axis for axis in range(len(lengths)) if lengths[axis] > max(reach[axis], 1)]
        if not halvable:
            break
        axis = max(halvable, key=lambda a: lengths[a])
        lengths[axis] = max((lengths[axis] + 1) // 2, reach[axis], 1)
    return lengths


def _liver_local_means(hu: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Float32, on ``hu``'s grid (a block of a lesion's grown box): the mean of the liver's own voxels (label 1) over
    3 x 3 x 3 around each voxel, 0 where none is liver. (The fluid check averages label >= 1 on its coarse sample;
    here the lesion itself, label 2, is left out of its surroundings' means.)"""
    from scipy import ndimage

    liver = labels == 1
    weight = ndimage.uniform_filter(liver.astype(np.float32), size=3, mode="nearest")
    total = ndimage.uniform_filter(np.where(liver, hu.astype(np.float32), np.float32(0)), size=3, mode="nearest")
    return total / np.maximum(weight, np.float32(1e-3))


def _liver_around(lesion: np.ndarray, hu: np.ndarray, labels: np.ndarray, tissue: np.ndarray, reach: Sequence[int],
                  spacing_zyx: Sequence[float]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(values, distances, local means)``: CT values (HU, the CT's dtype, in no set order) of the liver around the
    lesion, label-1 voxels of tissue (not padding) more than ``SURROUNDING_MM[0]`` and at most ``SURROUNDING_MM[1]`` mm
    from the nearest lesion voxel (centres, ``spacing_zyx`` in mm), each one's distance (mm, same order) and the mean of
    the liver's voxels around it (:func:`_liver_local_means`, float32, same order). All arrays
    ``(z, y, x)`` on the lesion's grown box; ``reach``: voxels per axis spanning ``SURROUNDING_MM[1]``.

    Block by block (:data:`SHELL_BLOCK_VOXELS`): each block's distance transform gives the true distance wherever it
    is at most 10 mm (every lesion voxel that near lies within the block) and more than 10 mm elsewhere, so the
    values are those of one transform over the box. Blocks deciding no liver, or reaching no lesion voxel, are
    skipped."""
    from scipy import ndimage

    sampling = tuple(float(s) for s in spacing_zyx)
    shape = lesion.shape
    lengths = _block_lengths(shape, reach, SHELL_BLOCK_VOXELS)
    found, distances, extra = [], [], []  # type: List[np.ndarray], List[np.ndarray], List[np.ndarray]
    for start in itertools.product(*(range(0, s, n) for s, n in zip(shape, lengths))):
        decided = tuple(slice(b, min(b + n, s)) for b, n, s in zip(start, lengths, shape))
        liver = (labels[decided] == 1) & tissue[decided]
        if not liver.any():
            continue
        block = tuple(slice(max(d.start - r, 0), min(d.stop + r, s)) for d, r, s in zip(decided, reach, shape))
        near = lesion[block]
        if not near.any():
            continue
        distance = ndimage.distance_transform_edt(~near, sampling=sampling)
        distance = distance[tuple(slice(d.start - b.start, d.stop - b.start) for d, b in zip(decided, block))]
        liver &= within_shell(distance, SURROUNDING_MM)
        found.append(hu[decided][liver])
        distances.append(distance[liver])
        inner = tuple(slice(d.start - b.start, d.stop - b.start) for d, b in zip(decided, block))
        extra.append(_liver_local_means(hu[block], labels[block])[inner][liver])  # per block: bounded memory
    if not found:
        return np.empty(0, dtype=hu.dtype), np.empty(0, dtype=np.float64), np.empty(0, dtype=np.float32)
    return np.concatenate(found), np.concatenate(distances), np.concatenate(extra)


def is_water_density(median_hu: Optional[float], spread_hu: Optional[float], liver_median_hu: Optional[float],
                     liver_spread_hu: Optional[float], voxels: int) -> bool:
    """The rule of the module doc on the numbers :func:`lesion_water_density` measures (HU; ``voxels``: the
    lesion's count): False where any is missing or the lesion has fewer than :data:`MIN_VOXELS` voxels."""
    if None in (median_hu, spread_hu, liver_median_hu, liver_spread_hu) or voxels < MIN_VOXELS:
        return False
    return bool(WATER_MIN_HU <= median_hu <= WATER_MAX_HU
                and liver_median_hu - median_hu >= WATER_DARKER_THAN_LIVER_HU
                and spread_hu <= WATER_SPREAD_RATIO * liver_spread_hu)


def water_density_lesion_warnings(lesions: List[dict], recist: Optional[Dict[str, Any]] = None) -> List[str]:
    """One warning naming the lesions of the report's ``lesions`` (dicts with ``id``, ``median_hu`` (HU) and
    ``water_density``, ``recist_target``) of water density (the first :data:`~.lesion_report.LISTED_LESIONS_MAX`,
    then how many more), with the RECIST consequence (``recist``: the report's, its
    ``water_density_passed_over_ids``); none without such a lesion."""
    watery = [lesion for lesion in lesions if lesion.get("water_density")]
    if not watery:
        return []
    from .lesion_report import listed_lesions_text

    listed = listed_lesions_text([f"{lesion['id']} (median {lesion['median_hu']:.0f} HU)" for lesion in watery],
                                 "water_density in the report")
    text = (f"Lesion(s) {listed} of water density (median {WATER_MIN_HU:.0f} to {WATER_MAX_HU:.0f} HU, at least "
            f"{WATER_DARKER_THAN_LIVER_HU:.0f} HU darker than the liver around it and about as homogeneous): each may "
            f"be a simple cyst, which is not a tumor, but a necrotic or cystic tumor, and on an unenhanced CT many a "
            f"hypodense tumor, can look the same. Check each in the images and compare with earlier imaging; each is "
            f"kept in the lesion count, tumor volume and burden (water_density in the report).")
    passed = [str(i) for i in (recist or {}).get("water_density_passed_over_ids") or []]
    if passed:
        text += (f" Lesion(s) {', '.join(passed)} were passed over as RECIST target lesions although measurable "
                 f"(RECIST 1.1: a simple cyst is neither target nor non-target, and non-cystic lesions are preferred "
                 f"as targets).")
    targets = [str(lesion["id"]) for lesion in watery if lesion.get("recist_target")]
    if targets:
        text += (f" Lesion(s) {', '.join(targets)} count among the RECIST target lesions and in the sum of diameters, "
                 f"as too few other measurable lesions were found to take the target places: if a simple cyst, it is "
                 f"no target.")
    return [text]
