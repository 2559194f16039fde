"""Robustness benchmark: real CT cases under controlled perturbations, liver Dice and tumor Dice (synthetic
tumors, plus a case's own real ones where its reference labels any).

    python benchmarks/robustness.py PACKAGE [PACKAGE ...] --data DIR|CSV [--json out.json]
        [--store-in-package] [--perturbations NAME,NAME] [--max-slices N] [--threads N] [--device cpu]
        [--no-postprocessing] [--tta] [--seed 0] [--precision auto|fp32|bf16]

PACKAGE: a model package path or an installed model name ("default" = the bundled model).

``--data``: a CSV with columns ``image,label[,patient,case]`` (relative paths from the CSV's folder), a
folder holding exactly one such CSV, or a folder searched recursively with the pairing rule
``<stem>.nii[.gz]`` + ``<stem>_liver[_seg|_tsvN].nii[.gz]`` (``<stem>`` may also end in ``_ct``, which the
label name drops: ``ct3slice_ct`` + ``ct3slice_liver_seg``); the public layouts of ``livertumorseg train``
(LiTS, MSD, IRCADb) work too. Labels: 0 background, 1 liver, 2 tumor (real tumors, where present, count).

Every case is loaded in canonical orientation and gets synthetic tumors (the training generator
``training.synthetic_lesions.insert_lesions`` in 3D, with a fixed seed per case and a fixed benchmark
configuration, so the tumor labels are known exactly). Then each perturbation is applied to the CT (and,
where it moves anatomy, to the label) and the whole volume goes through the normal inference path
(``segment_volume``: the engine, then the default post-processing) once:

==================  =====================================================================================
``original``        the real CT, no synthetic tumor: plain whole-volume liver Dice (tumor Dice n/a, or that of
                    the case's own real tumors where its reference labels any)
``baseline``        with the synthetic tumors, nothing else changed (= field of view "full scan")
``spacing-30`` ...  in-plane pixel spacing mis-scaled by -30/-15/+15/+30 %: the header says the pixels are
                    ``1 + s`` times their true size, so the network (which resamples to its own mm grid)
                    sees the anatomy ``1 + s`` times larger; the voxels and the label are unchanged, so
                    the label stays exactly aligned. This is the same as resampling image and label by
                    ``1 + s`` while keeping the header, without interpolating the label. With body-size
                    scaling on (the default, as ``segment``), a body the benchmark shows under 0.75 x the
                    package's smallest training body is enlarged again for the network: ``spacing-30`` and
                    below, on every CT whose body is measurable (on the shared cases the 3-slice, 20-slice and
                    sm CTs, 239, 227 and 215 mm at 0.70 x against the bundled v10's 243 mm threshold, then shown
                    at 0.9 x the smallest training body; the abdomen-pelvis CT's body is cut by the image and
                    not measured); ``--no-body-size-scaling`` shows it
                    as perturbed
``liver_hu+40/-40`` every liver (and tumor) voxel shifted by +-40 HU (contrast phase), the organ's outer ring
                    by half (``training.augmentation.liver_hu_shift``)
``noise10/25``      Gaussian noise of 10 / 25 HU std added everywhere (fixed seed)
``thick5mm``        5 mm thick slices: slabs of 5 mm averaged (overlap-weighted) on a 5 mm z grid, each
                    slab's label the label holding most of it (ties to the higher label; skipped when the scan
                    is thinner than 10 mm)
``thin0.75mm/0.5mm`` thin slices: HU linearly interpolated between the slice centres onto a 0.75 / 0.5 mm z
                    grid, the label from the original slice holding each new slice's centre (skipped when the
                    scan's slices are under 1.5 x that thick); no noise is added, though real thin-slice
                    reconstructions are noisier. What it tests: a 2.5D network's neighbour slices closer together
                    than in training (``context_min_mm`` keeps them apart)
``fov_liver20/60``  field of view cut along z to the liver's extent +-20 / +-60 mm (liver-only scans)
``air_pad15``       15 slices of air (-1000 HU, no label) added above and below the scan: a reconstruction
                    range reaching beyond the body (the bundled network labelled such slices liver)
``scan_end_tumor``  the scan cut at the slice where a tumor is widest, which becomes its first (or last) slice: a
                    tumor at the scan's edge, where a 2.5D network's missing neighbours repeat the edge slice
``rotate-10/+10``   the anatomy turned 10 degrees either way about the z axis (a patient lying turned on the
                    table): HU linearly interpolated, the label by nearest neighbour, air brought in at the corners;
                    a round field of view's padding stays where it was (the scanner's field does not turn)
``regrid_fill0``    the CT resampled onto a grid turned 30 degrees about the left-right axis through its centre
                    (same size and spacing; HU linear, the label nearest neighbour), as a registration or SimpleITK's
                    and Slicer's resampling make it, with their default fill of 0 HU (label 0) wherever the new grid
                    reaches beyond the old one: on the shared cases 31-85 % of the grid (``segment`` reads such a
                    fill as outside the scan, ``inference/resampling_fill.py``). ``regrid_fill-1024``: the same with
                    a fill of -1024 HU (air), so the two rows show what the fill value costs. Skipped when the tilted
                    grid holds under a quarter of the liver (a slab too thin for the tilt: the 3-slice CT). Not in
                    the bundled package's stored table (README)
``fov_xy300/220``   a tighter in-plane field of view: a 300 / 220 mm square centred on the liver's in-plane
                    extent, the body cut at the image edges (pixel size unchanged; skipped when the image is no
                    larger already)
``sharp_kernel``    a sharper reconstruction kernel, imitated by an in-plane unsharp mask (amount 2, 1 mm): edges
                    overshoot and fine noise grows (acts on fine pixels only; values kept in -1024..3071 HU)
``metal_streaks``   a metal bar at the scanner's ceiling (3071 HU, 6 x 30 mm, partial volume in its edge pixels:
                    a pedicle screw) on the spine in every slice holding liver, with 10 straight streaks through it
                    across the slice, alternately bright and dark, about 400-700 HU at the metal and fading with
                    distance (skipped without a spine)
``hyperdense``      the real CT with the benchmark's tumors all brighter than the liver (15-60 HU above it, as an
                    arterial phase shows hypervascular tumors), inserted with the row's own seed into the kept slices
``large_confluent`` the real CT with one confluent mass instead: 3-4 tumors of 30-60 mm, each touching the first
                    (issue 11 saw large confluent tumors partly called background and the liver beside them missed)
``dome``            the real CT with 1-2 tumors of 10-30 mm centred on the slice 15 mm below the liver's top slice,
                    half of them at the liver's edge (issue 11 saw a tumor at the dome missed); the top of the whole
                    scan's liver, also under ``--max-slices`` (skipped when that slice is not kept). Under the dome
                    only where the scan reaches above the liver: where the scan's first slice cuts the liver (all
                    four shared cases), the tumors lie 15 mm under the scan's top edge
``exophytic``       the real CT with 1-2 tumors of 25-40 mm centred at the liver's surface where it faces fat or
                    soft tissue, 40-70 % of each aimed outside the liver (exact for a flat surface), the outside part
                    taking fat and soft tissue only (-250..150 HU, never air, lung or bone) with the tumor's own HU
                    and label 2: tumors bulging out of the capsule (issue 11 saw one found only inside the liver);
                    the truth's liver (label >= 1) grows by that part. Skipped when under a quarter of the tumor
                    lies outside the liver (the 3-slice CT on some seeds)
``small_lesions``   the real CT with 4-8 tumors of 5-10 mm (log-uniform), each wholly inside the liver (centre at least
                    its radius from the surface), with the benchmark's appearance: metastases are often 5-10 mm, the
                    other rows' tumors 10-40 mm. The smallest is two of the scan's largest voxel side where that is
                    more than 5 mm (3 mm voxels: 6-10 mm); skipped with voxels over 3.75 mm on a side (5 mm slices);
                    a stack thinner than a lesion (the 3-slice CT, 3 mm) cuts it to a slab.
                    The default post-processing makes lesions under 0.1 mL (a 5.8 mm ball) liver, and under 5 mL
                    liver unless their mean tumor probability reaches 0.65: the row measures the pipeline, not the
                    network alone (``--no-postprocessing`` shows the network's)
``fluid_region``    the real CT with a 40-70 mm smooth blob of water (0-15 HU plus the liver's own noise) where
                    liver was, at its edge, labelled background: a resection bed, a large cyst or abscess, a
                    necrotic tumor (an earlier audit saw a resection bed's fluid labelled liver)
``perihepatic_fluid`` the real CT with a layer of water (0-15 HU plus the liver's own noise) 5-20 mm deep (in-plane)
                    outside the liver on a 120-200 degree sector from its front through its right side to its back,
                    in every slice holding liver, replacing fat and soft tissue only (-250..150 HU); labels unchanged:
                    ascites, a perihepatic collection, a pleural effusion (fold models called 0.8-3.5 mL of tumor in
                    a water-density region beside example_ct_dicom20's liver); skipped when under 5 mL fits
==================  =====================================================================================

Each row: ``liver_dice`` (label >= 1), ``tumor_dice`` (label 2: the synthetic tumors and the case's real ones together; None where there is no tumor
in the truth),
``liver_outside_ml`` (predicted liver outside the true liver, mL of true voxel size),
``tumor_outside_ml`` (predicted tumor outside the true tumor, mL: on a tumor-free real CT, all predicted tumor),
``true_lesions`` / ``detected_lesions`` (true tumor components touched by the prediction) /
``false_lesions`` (predicted tumor components touching no true tumor; 26-connectivity), ``slices``,
``seconds``, on the ``fluid_region`` and ``perihepatic_fluid`` rows ``fluid_ml`` (the water put in) with
``fluid_as_liver_ml`` and ``fluid_as_tumor_ml`` (the parts of it predicted liver and tumor, mL; also in
``liver_outside_ml``), on the ``exophytic`` row ``outside_part_ml`` (the true tumor outside the real liver) with
``outside_part_as_tumor_ml`` and ``outside_part_as_liver_ml`` (the parts of it predicted tumor and liver, mL), and
``training_case`` (the case id or patient is listed in the package's training metadata as a
training or validation case, or the CT's voxels have the SHA-256 its ``data_files`` record for one (packages
trained since 25 Nov 2026): validation cases chose the best epoch, so neither kind is unseen).

**What this measures.** On the team's shared cases, every patient was in the bundled model's training
set: the table measures *invariance* (does a perturbation the model must be robust to change its output
on a CT it knows?), not generalization to unseen patients. ``example_ct_sm`` holds the same voxels as
slices 82-111 of ``example_ct_full112`` (only its label differs). Tumor Dice is on *synthetic* tumors.

``--store-in-package`` writes each package's rows into its metadata under ``robustness`` (a JSON list of
flat rows; the weights and their SHA-256 are unchanged) so ``livertumorseg models`` shows them, and how they
were made under ``robustness_settings``. A stored table with cases or perturbations this run does not cover is
kept (the run stops before any work) unless ``--replace-stored``.

The summary gives, per perturbation, the number of cases it applied to and its mean change against
``baseline`` on those same cases: a mean over fewer cases is not comparable with the baseline's. A mean
tumor Dice over fewer cases than that (some cases' truth holds no tumor) is followed by its own count, ``(k)``. Tumor Dice
depends on the synthetic-tumor draw (seeded by case id and ``--seed``): on two cases, the baseline's mean
tumor Dice ranged 0.52-0.92 over seeds 0-5, so compare packages on the same cases and seed, and treat tumor
differences of a few hundredths as noise.
``--max-slices N`` keeps at most N slices around the liver's centre per case (faster on a CPU).
"""
import argparse
import json
import re
import sys
import time
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from LiverTumorSegLib.argtypes import probability  # noqa: E402
from LiverTumorSegLib.errors import InputError  # noqa: E402
from LiverTumorSegLib.preprocessing.preprocessor import slices_at  # noqa: E402
from LiverTumorSegLib.training.synthetic_lesions import LesionConfig, insert_lesions  # noqa: E402
from LiverTumorSegLib.validation import PADDING_BELOW_HU  # noqa: E402
from LiverTumorSegLib.volume import CTVolume, ImageGeometry  # noqa: E402

NOTE = ("Rows on cases the package was trained on measure invariance to the perturbation, not accuracy on "
        "unseen CT; tumor Dice is on synthetic tumors inserted with a fixed seed, together with a case's own real "
        "tumors where its reference labels any (on the original row: those alone).")

# Synthetic tumors of the benchmark: fixed, mostly hypodense, 10-40 mm, 2-4 per case (seeded per case).
BENCHMARK_LESIONS = LesionConfig(probability=1.0, count_range=(2, 4), diameter_range_mm=(10.0, 40.0),
                                 hypodense_probability=0.9, anchor="any", edge_probability=0.2,
                                 cluster_probability=0.0)


@dataclass
class Sample:
    """A canonical CT ``hu`` ``(z, y, x)`` float32 HU with ``labels`` (uint8 0/1/2) on the same grid.

    ``spacing_zyx``: the spacing the network is told (mm); ``true_spacing_zyx``: the voxels' real size (mm),
    used for the mL numbers (they differ only for the spacing perturbation)."""

    hu: np.ndarray
    labels: np.ndarray
    spacing_zyx: Tuple[float, float, float]
    true_spacing_zyx: Tuple[float, float, float]
    fluid: Optional[np.ndarray] = None  # (z, y, x) bool: where water was put (label 0): the fluid rows
    outside_part: Optional[np.ndarray] = None  # (z, y, x) bool: true tumor outside the real liver (exophytic row)
    # the regrid rows' turned grid: its direction (row-major 3 x 3, columns the i, j, k axes in LPS) and origin
    # ((x, y, z) LPS mm), as a resample module records them; None: identity direction, origin 0
    direction: Optional[Tuple[float, ...]] = None
    origin: Optional[Tuple[float, float, float]] = None

    def volume(self, source: str = "") -> CTVolume:
        """A CTVolume with the told spacing: canonical orientation (identity direction, LPS, origin 0), or the
        regrid rows' turned grid."""
        z, y, x = self.spacing_zyx
        turned = {} if self.direction is None else {"direction": self.direction, "origin": self.origin}
        return CTVolume(self.hu, ImageGeometry(spacing=(float(x), float(y), float(z)), **turned), source=source)


@dataclass
class BenchCase:
    """One benchmark case: ``sample`` (with synthetic tumors) and ``original`` (the real CT), both limited to
    ``--max-slices`` around the liver; ``source`` and ``seed`` rebuild the whole scan for the field-of-view rows
    (:meth:`whole_sample`: held while one case's rows run, then dropped, so a batch of large CTs is not held
    twice in memory)."""
    case_id: str
    patient_id: str
    sample: Sample          # with synthetic tumors
    original: Sample        # the real CT (no synthetic tumors)
    source: Any = None      # the training.datasets.Case it was read from
    seed: int = 0
    lesions: Any = None     # the LesionConfig of the synthetic tumors
    cropped: bool = False   # sample and original are a part of the scan (--max-slices)
    read_options: Dict[str, Any] = field(default_factory=dict)  # label_map / allow_non_hu the case was read with
    whole: Optional[Sample] = field(default=None, repr=False)  # the whole scan while this case is evaluated
    voxel_sha256: str = ""  # training.datasets.voxel_digest of the whole canonical real CT
    liver_top: Optional[int] = None  # z index (kept slices' numbering) of the whole scan's highest liver slice

    def whole_sample(self) -> Sample:
        """The whole scan with the same synthetic tumors (``sample`` itself when it is not cropped): read once per
        case while :func:`evaluate` runs its rows (three rows need it), dropped after them."""
        if not self.cropped:
            return self.sample
        if self.whole is None:
            self.whole = _whole_scan_samples(self.source, self.seed, self.lesions, **self.read_options)[1]
        return self.whole


# ---------------------------------------------------------------------------------------------------- data

PAIR_RE = re.compile(r"^(?P<stem>.+?)_liver(_seg|_tsv\d+)?\.nii(\.gz)?$")
LABEL_PREFERENCE = ("_liver.", "_liver_seg.", "_liver_tsv")


def paired_cases(folder: Path, unpaired: Optional[List[str]] = None) -> List[Any]:
    """Cases (``training.datasets.Case``) found below ``folder`` by the ``<stem>`` + ``<stem>_liver*`` rule.
    ``unpaired`` (a list) receives the other ``.nii*`` files' paths below ``folder``: images without such a
    label, or labels named otherwise (``x_seg.nii.gz``), left out without a word before."""
    from LiverTumorSegLib.training.datasets import Case

    files = sorted(p for p in folder.rglob("*.nii*") if p.is_file() and not p.name.startswith("."))
    labels: Dict[Tuple[Path, str], List[Path]] = {}
    for path in files:
        m = PAIR_RE.match(path.name)
        if m:
            labels.setdefault((path.parent, m.group("stem")), []).append(path)
    label_set = {p for group in labels.values() for p in group}
    cases = []
    for path in files:
        if path in label_set:
            continue
        stem = re.sub(r"\.nii(\.gz)?$", "", path.name)
        candidates = labels.get((path.parent, stem)) or labels.get((path.parent, re.sub(r"_ct$", "", stem)))
        if not candidates:
            if unpaired is not None:
                unpaired.append(path.relative_to(folder).as_posix())
            continue
        candidates = sorted(candidates, key=lambda p: [i for i, k in enumerate(LABEL_PREFERENCE)
                                                       if k in p.name][:1] or [99])
        cases.append(Case(stem, stem, str(path), str(candidates[0]), "csv"))
    return unique_case_ids(cases, folder)


def unique_case_ids(cases: List[Any], folder: Path) -> List[Any]:
    """Cases whose file stems repeat (``patient01/ct.nii.gz``, ``patient02/ct.nii.gz``) get their path below
    ``folder`` as id and patient: with the stem as id they shared one synthetic-tumor seed and the summary
    kept only the last of them."""
    from collections import Counter

    counts = Counter(c.case_id for c in cases)
    out = []
    for case in cases:
        if counts[case.case_id] > 1:
            relative = Path(case.image_path).relative_to(folder).as_posix()
            name = re.sub(r"\.nii(\.gz)?$", "", relative)
            case = replace(case, case_id=name, patient_id=name)
        out.append(case)
    return out


def find_cases(data: Any, log: Optional[Callable[[str], None]] = None) -> List[Any]:
    """Cases of ``data`` (CSV, folder with one CSV, pairing-rule folder, or a public layout). ``log`` is told
    which files of a pairing-rule folder were left out."""
    from LiverTumorSegLib.training.datasets import detect_format, discover_cases

    root = Path(data)
    if not root.exists():
        raise InputError(f"--data '{root}' does not exist; pass a folder of cases or a CSV (image,label).")
    if root.is_file() and root.suffix.lower() != ".csv":  # a CT given as --data was read as a CSV: "not UTF-8"
        raise InputError(f"--data '{root}' is a file but not a .csv; pass a CSV with columns image,label[,patient,"
                         f"case] (one row per CT and its liver label map) or a folder of cases.")
    if root.is_file() or any(p.suffix.lower() == ".csv" for p in root.glob("*.csv")):
        return discover_cases(root, "csv", warn_patients=False)
    unpaired: List[str] = []
    cases = paired_cases(root, unpaired)
    if cases and unpaired and log:
        log(f"not used ({len(unpaired)} file(s) without a '<stem>_liver*.nii*' label beside them): "
            + ", ".join(unpaired[:10]) + (" ..." if len(unpaired) > 10 else ""))
    if cases:
        return cases
    try:
        layout = detect_format(root)
    except InputError as exc:  # it named the public layouts only, not this benchmark's own pairing rule
        seen = (f"; the .nii files found there have no such label: {', '.join(unpaired[:10])}"
                + (" ..." if len(unpaired) > 10 else "")) if unpaired else ""
        raise InputError(f"{exc} Or a folder of '<stem>.nii[.gz]' CTs each beside its '<stem>_liver.nii[.gz]' "
                         f"(or _liver_seg, _liver_tsvN) label map{seen}.") from None
    return discover_cases(root, layout, warn_patients=False)


def crop_z(sample: Sample, z0: int, z1: int) -> Sample:
    return replace(sample, hu=np.ascontiguousarray(sample.hu[z0:z1]),
                   labels=np.ascontiguousarray(sample.labels[z0:z1]))


def liver_centred_window(labels_zyx: np.ndarray, max_slices: Optional[int]) -> Tuple[int, int]:
    """Slice range ``(z0, z1)`` of at most ``max_slices`` slices centred on the liver's z centre (all slices
    when None or enough)."""
    nz = labels_zyx.shape[0]
    if not max_slices or nz <= max_slices:
        return 0, nz
    zs = np.nonzero((labels_zyx >= 1).any(axis=(1, 2)))[0]
    centre = int(round(zs.mean())) if zs.size else nz // 2
    z0 = int(np.clip(centre - max_slices // 2, 0, nz - max_slices))
    return z0, z0 + max_slices


def case_seed(case_id: str, seed: int) -> int:
    return (zlib.crc32(case_id.encode("utf-8")) + 7919 * int(seed)) % (2 ** 32)


def _whole_scan_samples(case: Any, seed: int, lesions: LesionConfig = BENCHMARK_LESIONS,
                        label_map: Optional[Dict[str, int]] = None, allow_non_hu: bool = False
                        ) -> Tuple[Sample, Sample]:
    """``(original, with synthetic tumors)`` of a case's whole scan, read and canonicalized (``label_map``,
    ``allow_non_hu``: as ``train``'s --label-map and --allow-non-hu); the tumors are seeded by the case id and
    ``seed``, so every call gives the same ones."""
    from LiverTumorSegLib.training.datasets import load_case

    # content_warnings: this benchmark says "no liver voxel" its own way, not as training would
    volume, labels = load_case(case, label_map, allow_non_hu, content_warnings=False)
    if not (labels >= 1).any():
        raise InputError(f"Case '{case.case_id}': its label map '{case.label_path}' has no liver voxel; the "
                         f"benchmark scores the liver and inserts its tumors into it. Give the case's liver label, "
                         f"or leave the case out.")
    spacing = tuple(float(s) for s in volume.spacing_zyx)
    original = Sample(np.asarray(volume.array, dtype=np.float32), labels.astype(np.uint8), spacing, spacing)
    hu, lab, _ = insert_lesions(original.hu, original.labels, spacing, rng=case_seed(case.case_id, seed),
                                config=lesions)
    return original, Sample(hu, lab, spacing, spacing)


def load_bench_case(case: Any, seed: int = 0, max_slices: Optional[int] = None,
                    lesions: LesionConfig = BENCHMARK_LESIONS, label_map: Optional[Dict[str, int]] = None,
                    allow_non_hu: bool = False, digest: bool = True) -> BenchCase:
    """Read and canonicalize one case, insert the benchmark's synthetic tumors into the whole scan (seeded by
    case id), then keep at most ``max_slices`` slices around the liver. ``digest``: also take the real CT's voxel
    digest (``voxel_sha256``; about 0.2 s per 100 slices of 512 x 512), which only a package that records its
    training scans' digests is compared with; False leaves it empty (never a match)."""
    from LiverTumorSegLib.training.datasets import voxel_digest

    read_options = {"label_map": label_map or None, "allow_non_hu": bool(allow_non_hu)}
    original, sample = _whole_scan_samples(case, seed, lesions, **read_options)
    digest = voxel_digest(original.hu) if digest else ""  # as the slice cache records it for data_files
    z0, z1 = liver_centred_window(original.labels, max_slices)
    cropped = (z0, z1) != (0, original.hu.shape[0])
    liver_top = int(np.flatnonzero((original.labels >= 1).any(axis=(1, 2)))[-1]) - z0  # before the cut
    if cropped:
        original, sample = crop_z(original, z0, z1), crop_z(sample, z0, z1)
    return BenchCase(case.case_id, case.patient_id, sample, original, case, seed, lesions, cropped, read_options,
                     voxel_sha256=digest, liver_top=liver_top)


# ------------------------------------------------------------------------------------------- perturbations

def scale_spacing(sample: Sample, factor: float) -> Sample:
    """Header in-plane spacing x ``factor``: the network sees the anatomy ``factor`` times larger."""
    z, y, x = sample.spacing_zyx
    return replace(sample, spacing_zyx=(z, y * factor, x * factor))


def shift_liver_hu(sample: Sample, shift_hu: float) -> Sample:
    """Liver and tumor voxels + ``shift_hu`` (outer ring half), background untouched."""
    from LiverTumorSegLib.training.augmentation import liver_hu_shift

    return replace(sample, hu=liver_hu_shift(sample.hu, sample.labels, shift_hu, tumor_fraction=1.0))


def add_noise(sample: Sample, std_hu: float, seed: int) -> Sample:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(sample.hu.shape, dtype=np.float32) * np.float32(std_hu)
    return replace(sample, hu=sample.hu + noise)


def thick_slices(sample: Sample, thickness_mm: float = 5.0) -> Optional[Sample]:
    """Slabs of ``thickness_mm`` on a new z grid: HU = overlap-weighted mean of the original slices, label = per
    pixel the label holding most of the slab (the same overlap weights; a tie goes to the higher label, so liver
    over background and tumor over liver). None when fewer than 2 slabs fit or the slices are already thick.
    The label of the slice at the slab's centre lay half an original slice from the image wherever a slab held an
    even number of slices (2.5 mm, 1.25 mm): its centre is a slice boundary, and the upper slice was taken."""
    nz = sample.hu.shape[0]
    sz = sample.spacing_zyx[0]
    if sz >= thickness_mm:
        return None
    n_new = int(np.floor(nz * sz / thickness_mm + 1e-6))
    if n_new < 2:
        return None
    hu = np.empty((n_new,) + sample.hu.shape[1:], dtype=np.float32)
    labels = np.empty((n_new,) + sample.labels.shape[1:], dtype=np.uint8)
    edges = np.arange(nz + 1) * sz
    for j in range(n_new):
        a, b = j * thickness_mm, (j + 1) * thickness_mm
        overlap = np.clip(np.minimum(edges[1:], b) - np.maximum(edges[:-1], a), 0.0, None)
        idx = np.nonzero(overlap > 1e-9)[0]
        w = (overlap[idx] / overlap[idx].sum()).astype(np.float32)
        hu[j] = np.tensordot(w, sample.hu[idx], axes=(0, 0))
        labels[j] = slab_majority_label(sample.labels[idx], overlap[idx])
    spacing = (float(thickness_mm),) + tuple(sample.spacing_zyx[1:])
    true_spacing = (float(thickness_mm),) + tuple(sample.true_spacing_zyx[1:])
    return Sample(hu, labels, spacing, true_spacing)


def slab_majority_label(labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per pixel of the ``(slices, y, x)`` label maps ``labels`` (uint8), the label whose slices hold the largest
    sum of ``weights`` (one per slice, e.g. mm of overlap with a slab); a tie goes to the higher label.
    Returns ``(y, x)`` uint8."""
    values = np.unique(labels)
    best = np.full(labels.shape[1:], values[0], dtype=np.uint8)
    best_weight = np.full(labels.shape[1:], -1.0)
    for value in values:  # ascending, so '>=' hands a tie to the higher label
        weight = np.tensordot(np.asarray(weights, dtype=np.float64), labels == value, axes=(0, 0))
        take = weight >= best_weight - 1e-9
        best[take] = value
        best_weight[take] = np.maximum(weight[take], best_weight[take])
    return best


def thin_slices(sample: Sample, spacing_mm: float = 0.75) -> Optional[Sample]:
    """Slices every ``spacing_mm`` along z, as a thin-slice reconstruction: HU linearly interpolated between the
    original slice centres (held at the first and last), label = the original slice that holds the new slice's
    centre. No noise is added (a real thin-slice reconstruction is noisier). None when the slices are not at
    least 1.5 x ``spacing_mm`` thick already."""
    nz = sample.hu.shape[0]
    sz = sample.spacing_zyx[0]
    if sz < 1.5 * spacing_mm:
        return None
    n_new = int(np.floor(nz * sz / spacing_mm + 1e-6))
    centres = (np.arange(n_new) + 0.5) * spacing_mm  # mm from the scan's first slice edge
    hu = slices_at(sample.hu, np.clip(centres / sz - 0.5, 0.0, nz - 1.0))  # positions in original slice indices
    labels = np.ascontiguousarray(sample.labels[np.minimum((centres / sz).astype(int), nz - 1)])
    spacing = (float(spacing_mm),) + tuple(sample.spacing_zyx[1:])
    true_spacing = (float(spacing_mm),) + tuple(sample.true_spacing_zyx[1:])
    return Sample(hu, labels, spacing, true_spacing)


def crop_to_liver(sample: Sample, margin_mm: float) -> Optional[Sample]:
    """z range = the liver's slices +- ``margin_mm``; None when that is the whole scan already."""
    zs = np.nonzero((sample.labels >= 1).any(axis=(1, 2)))[0]
    if zs.size == 0:
        return None
    m = int(np.ceil(margin_mm / sample.spacing_zyx[0]))
    z0, z1 = max(0, int(zs.min()) - m), min(sample.hu.shape[0], int(zs.max()) + m + 1)
    if z0 == 0 and z1 == sample.hu.shape[0]:
        return None
    return crop_z(sample, z0, z1)


def pad_with_air(sample: Sample, slices: int, hu: float = -1000.0) -> Sample:
    """``slices`` slices of air (``hu``, label 0) added above and below ``sample``."""
    pad = ((slices, slices), (0, 0), (0, 0))
    return Sample(np.pad(sample.hu, pad, constant_values=hu), np.pad(sample.labels, pad),
                  sample.spacing_zyx, sample.true_spacing_zyx)


def cut_at_widest_tumor(sample: Sample) -> Optional[Sample]:
    """The scan cut so that its end passes through a tumor: the slice with the most tumor voxels (the lowest
    such z on a tie) becomes the scan's first slice, the slices below it gone, or its last, the slices above it
    gone, whichever keeps more slices (z in ``(z, y, x)``). A tumor at a scan's edge is common (a chest CT ending
    in the liver, an abdominal one starting below the dome), and there a 2.5D network's missing neighbours are
    the edge slice repeated. None when the sample has no tumor or that slice is already its first or last."""
    per_slice = np.count_nonzero(sample.labels == 2, axis=(1, 2))
    nz = sample.hu.shape[0]
    if not per_slice.any():
        return None
    z = int(np.argmax(per_slice))
    if z in (0, nz - 1):
        return None
    return crop_z(sample, z, nz) if nz - z >= z + 1 else crop_z(sample, 0, z + 1)


def rotate_in_plane(sample: Sample, degrees: float, air_hu: float = -1000.0) -> Sample:
    """The anatomy turned ``degrees`` about the z axis (a patient lying turned on the table), about the centre of
    each ``(y, x)`` slice, on the same grid: HU linearly interpolated, the label by nearest neighbour, air
    (``air_hu``, label 0) where the turn brings in voxels from outside the scan. A positive angle turns +x towards
    -y (``scipy.ndimage.rotate`` with ``axes=(1, 2)``; at 90 degrees ``np.rot90(a, 1, axes=(1, 2))``): the patient's
    left towards anterior in the canonical LPS grid.

    The scanner's field of view does not turn with the patient: padding outside a round field (voxels at or below
    :data:`PADDING_BELOW_HU`, -3024 HU on the 3-slice shared CT) is air while the anatomy turns and is put back
    where it was afterwards, anatomy turned into it is cut (its HU, label 0). Before, the padding turned with the
    anatomy and was interpolated with the air beside it into values from -3024 to -1000 HU that no scanner
    makes (the network's windows clip them all alike; checks that find padding by its value did not)."""
    from scipy import ndimage

    padding = sample.hu <= PADDING_BELOW_HU
    anatomy = np.where(padding, np.float32(air_hu), sample.hu) if padding.any() else sample.hu
    hu = ndimage.rotate(anatomy, degrees, axes=(1, 2), reshape=False, order=1, mode="constant", cval=air_hu,
                        prefilter=False)
    labels = ndimage.rotate(sample.labels, degrees, axes=(1, 2), reshape=False, order=0, mode="constant", cval=0)
    if padding.any():
        hu = np.where(padding, sample.hu, hu)
        labels = np.where(padding, np.uint8(0), labels)
    return replace(sample, hu=np.ascontiguousarray(hu, dtype=np.float32),
                   labels=np.ascontiguousarray(labels, dtype=np.uint8))


REGRID_DEGREES = 30.0
"""How far the ``regrid_fill*`` rows turn the grid about the left-right axis (degrees): on the shared cases (40
kept slices) the old field of view leaves 31-43 % of the 3 mm CTs' new grid and 85 % of the 20-slice CT's to the fill
(4.2-8.5 L), keeping 86-91 % and 49 % of their liver."""

REGRID_MIN_LIVER_KEPT = 0.25
"""A ``regrid_fill*`` row is skipped when the turned grid holds under this fraction of the sample's liver voxels: a
slab too thin for the tilt (the 3-mm-thick 3-slice CT keeps 3 % of its liver and none of its tumors at 30 degrees),
whose few kept voxels would score the fill alone."""

REGRID_DEGREES_USED = REGRID_DEGREES
"""The regrid rows' turn in this run (``--regrid-degrees``; :data:`REGRID_DEGREES` unless given)."""


def regrid_tilted(sample: Sample, degrees: float, fill_hu: float) -> Optional[Sample]:
    """The CT resampled onto a grid turned ``degrees`` about the patient's left-right (x) axis through the CT's
    centre, of the same size and spacing, as a registration or a resample module does it (SimpleITK's
    ``ResampleImageFilter``, Slicer's resample modules): HU linearly interpolated, the label by nearest neighbour,
    and ``fill_hu`` (label 0) wherever the new grid reaches beyond the old one (0 HU by default in those tools).
    The angle is turned in millimetres (the slices' spacing may differ from the pixels'); arrays are ``(z, y, x)``.
    The anatomy at ``(dz, dy)`` mm from the centre lands at ``(dz cos a + dy sin a, -dz sin a + dy cos a)``: a
    positive angle turns posterior (+y in the canonical LPS grid) towards superior (+z). Every value is
    interpolated as the tools do, a round field of view's padding too. The sample records the turned grid's
    direction and origin, as those tools write them, so every voxel keeps its place in the patient (``segment``
    then gives the network the CT on a patient-aligned grid, :mod:`LiverTumorSegLib.inference.axis_aligned`; before,
    the sample claimed an axial grid: a patient lying tilted). None when the new grid holds under
    :data:`REGRID_MIN_LIVER_KEPT` of the liver (:data:`SKIP_REASONS`)."""
    from scipy import ndimage

    angle = np.deg2rad(degrees)
    cos, sin = float(np.cos(angle)), float(np.sin(angle))
    turn = np.array([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]])  # (z, y, x) mm: where anatomy lands
    spacing = np.asarray(sample.spacing_zyx, dtype=float)
    to_old = np.diag(1.0 / spacing) @ turn.T @ np.diag(spacing)  # new index -> old index, about the centre
    centre = (np.asarray(sample.hu.shape, dtype=float) - 1.0) / 2.0
    offset = centre - to_old @ centre

    def resample(array: np.ndarray, order: int, cval: float) -> np.ndarray:
        return ndimage.affine_transform(array, to_old, offset, order=order, mode="constant", cval=cval,
                                        prefilter=False)

    # where the new grid's voxel centres lie within the old grid: the fill is exactly fill_hu, label 0, outside it
    inside = resample(np.ones(sample.hu.shape, dtype=np.float32), 1, 0.0) > 0.5
    labels = np.where(inside, resample(sample.labels, 0, 0.0), np.uint8(0)).astype(np.uint8)
    if np.count_nonzero(labels >= 1) < REGRID_MIN_LIVER_KEPT * np.count_nonzero(sample.labels >= 1):
        return None
    hu = np.where(inside, resample(sample.hu.astype(np.float32), 1, fill_hu), np.float32(fill_hu))
    # the new grid's voxel (index n, (z, y, x)) lies at S c + turn^T S (n - c) mm in the old grid's frame (identity
    # direction, origin 0): its direction is turn^T, its origin the position of n = 0 (both turned to (x, y, z))
    direction_zyx = turn.T
    origin_zyx = spacing * centre - direction_zyx @ (spacing * centre)
    return replace(sample, hu=np.ascontiguousarray(hu, dtype=np.float32), labels=np.ascontiguousarray(labels),
                   direction=tuple(float(v) for v in direction_zyx[::-1, ::-1].ravel()),
                   origin=tuple(float(v) for v in origin_zyx[::-1]))


def crop_in_plane(sample: Sample, size_mm: float) -> Optional[Sample]:
    """A tighter in-plane field of view: the ``size_mm`` x ``size_mm`` square (y, x) centred on the liver's
    in-plane bounding box, as a display field of view set to the liver cuts the body at the image edges (pixel
    size unchanged, the square kept inside the image). The label is cut with the image: liver outside the square
    is not in the truth either. None when the image is no larger than that in both in-plane axes already."""
    yx = np.nonzero((sample.labels >= 1).any(axis=0))
    if yx[0].size == 0:
        return None
    window = []
    for axis, spacing in ((1, sample.spacing_zyx[1]), (2, sample.spacing_zyx[2])):
        n = sample.hu.shape[axis]
        keep = min(n, int(round(size_mm / float(spacing))))
        coords = yx[axis - 1]
        centre = (int(coords.min()) + int(coords.max()) + 1) // 2
        start = int(np.clip(centre - keep // 2, 0, n - keep))
        window.append(slice(start, start + keep))
    if all(w.stop - w.start == sample.hu.shape[a] for a, w in zip((1, 2), window)):
        return None
    box = (slice(None),) + tuple(window)
    return replace(sample, hu=np.ascontiguousarray(sample.hu[box]), labels=np.ascontiguousarray(sample.labels[box]))


def sharpen_in_plane(sample: Sample, amount: float = 2.0, sigma_mm: float = 1.0) -> Sample:
    """A sharper reconstruction kernel, imitated: each slice's HU plus ``amount`` x (HU - HU Gaussian-blurred in
    ``(y, x)`` with ``sigma_mm``), so edges overshoot and fine noise grows (on the 0.98 mm shared CT: liver
    noise about 11 -> 29 HU std); slices are not mixed. It acts on fine pixels only: a 1 mm blur barely changes
    3 mm pixels. Only the scanned voxels (above :data:`PADDING_BELOW_HU`) are blurred, sharpened and changed, as a
    scanner's kernel acts inside its field of view: the padding around a round field of view (-3024 HU on the
    3-slice shared CT) was blurred in with the air inside it, and that air's ring at the field's edge went from
    -1000 to above -500 HU (1,836 voxels a slice there), an edge no sharper kernel makes. The sharpened values are
    kept within the scanner's range (-1024..:data:`METAL_HU`): air beside the body's edge overshot to -2422 HU on
    the 0.98 mm shared CT, below what a scanner stores."""
    from scipy import ndimage

    sigma = (0.0, sigma_mm / float(sample.spacing_zyx[1]), sigma_mm / float(sample.spacing_zyx[2]))
    hu = sample.hu.astype(np.float32)
    scanned = hu > PADDING_BELOW_HU
    weight = ndimage.gaussian_filter(scanned.astype(np.float32), sigma)  # normalized blur over scanned voxels
    blurred = ndimage.gaussian_filter(np.where(scanned, hu, np.float32(0.0)), sigma) / np.maximum(weight, 1e-6)
    sharpened = np.clip(hu + np.float32(amount) * (hu - blurred), np.float32(SCANNER_MIN_HU), np.float32(METAL_HU))
    return replace(sample, hu=np.where(scanned, sharpened, hu).astype(np.float32))


METAL_HU = 3071.0
"""HU of the inserted metal: the ceiling of the usual 12-bit CT scale (-1024..3071), where steel and titanium end up
on a scanner without an extended HU range."""
SCANNER_MIN_HU = -1024.0
"""The floor of that scale: the lowest value a scanner stores inside its field of view."""
METAL_BAR_MM = (6.0, 30.0)
"""In-plane size (mm, x by y) of the inserted metal: a pedicle screw's width (5.5-7.5 mm) by part of its length,
running front to back through the vertebral body as such a screw does. A pixel the bar covers in part holds that
share of :data:`METAL_HU` (partial volume, :func:`metal_fraction`)."""


def metal_fraction(dy_mm: np.ndarray, dx_mm: np.ndarray, spacing_yx: Tuple[float, float],
                   bar_mm: Tuple[float, float] = METAL_BAR_MM) -> np.ndarray:
    """Share (0..1) of each pixel covered by a ``bar_mm`` (x by y, mm) bar centred on 0: the overlap of the pixel
    (``spacing_yx`` mm, centred at ``dy_mm``, ``dx_mm`` mm from the bar's centre; broadcast arrays) with the bar,
    per axis, multiplied. Its sum times the pixel area is the bar's area wherever the bar lies within the image.
    Before, every pixel whose centre lay in the bar was metal: on 3 mm pixels a 6 x 30 mm bar became 9 x 33 mm."""
    cover = np.float32(1.0)
    for d, pixel, size in ((dx_mm, spacing_yx[1], bar_mm[0]), (dy_mm, spacing_yx[0], bar_mm[1])):
        lo = np.maximum(d - np.float32(pixel / 2.0), np.float32(-size / 2.0))
        hi = np.minimum(d + np.float32(pixel / 2.0), np.float32(size / 2.0))
        cover = cover * np.clip((hi - lo) / np.float32(pixel), 0.0, 1.0)
    return np.asarray(cover, dtype=np.float32)
STREAK_LINES = 10
"""Straight streaks through the metal per slice, alternately bright and dark, at angles spread over 180 degrees."""
STREAK_PEAK_HU = 700.0
STREAK_DECAY_MM = 25.0
"""A streak's amplitude (HU) at the metal's edge, and the distance (mm) over which it halves: ``peak x decay / (decay +
distance)`` (about 230 HU 50 mm from the metal, 100 HU 150 mm away), as a steel screw's streaks of several hundred HU
beside it fade across the slice."""
STREAK_WIDTH_MM = (1.0, 3.0)
"""Range of a streak's width (Gaussian sigma across it, mm)."""
SPINE_SEARCH_MM = 20.0
"""How far (mm) left or right of the body's centre bone counts as the spine's (a lumbar vertebral body is 40-50 mm
wide)."""


def spine_centre_yx(hu_zyx: np.ndarray, liver_slices: np.ndarray, spacing_yx: Tuple[float, float]
                    ) -> Optional[Tuple[float, float]]:
    """``(y, x)`` (voxels) of the spine in the canonical LPS grid (y grows to the back): the median position of the
    bone (over 300 HU) within :data:`SPINE_SEARCH_MM` of the body's left-right centre and behind the body's centre
    (body: over -500 HU), over the slices ``liver_slices`` of ``hu_zyx`` (``(z, y, x)``, HU); ``spacing_yx`` in mm.
    None with fewer than 20 such voxels. On the four shared cases it lies in the back of the vertebral body or in
    the spinal canal just behind it, where a pedicle screw's path runs."""
    sub = hu_zyx[liver_slices]
    body = np.nonzero(sub > -500.0)
    if body[0].size == 0:
        return None
    cy, cx = float(body[1].mean()), float(body[2].mean())
    _, by, bx = np.nonzero(sub > 300.0)
    keep = (np.abs(bx - cx) * spacing_yx[1] < SPINE_SEARCH_MM) & (by > cy)
    if int(keep.sum()) < 20:
        return None
    return float(np.median(by[keep])), float(np.median(bx[keep]))


def metal_streaks(sample: Sample, seed: int) -> Optional[Sample]:
    """Metal in the spine with its streak artefacts, in every slice that holds liver: a bar of :data:`METAL_HU`
    (:data:`METAL_BAR_MM`, a pedicle screw running front to back; partial volume at its edges) centred on the spine
    (:func:`spine_centre_yx`), plus :data:`STREAK_LINES` straight bands through the metal's centre across the whole slice, alternately bright
    and dark, each of a random width, angle and strength (0.6-1 x :data:`STREAK_PEAK_HU`, fading with distance from
    the metal as :data:`STREAK_DECAY_MM` says); the angles move by about 2 degrees from slice to slice. Values stay
    within the scanner's range (-1024..3071 HU); padding outside the field of view is left alone. The label is
    unchanged. Deterministic given ``seed``. None when no spine is found behind the body's centre."""
    liver_slices = np.nonzero((sample.labels >= 1).any(axis=(1, 2)))[0]
    if liver_slices.size == 0:
        return None
    sy, sx = float(sample.spacing_zyx[1]), float(sample.spacing_zyx[2])
    centre = spine_centre_yx(sample.hu, liver_slices, (sy, sx))
    if centre is None:
        return None
    rng = np.random.default_rng(seed)
    ny, nx = sample.hu.shape[1:]
    dy = (np.arange(ny, dtype=np.float32)[:, None] - np.float32(centre[0])) * np.float32(sy)  # mm from the centre
    dx = (np.arange(nx, dtype=np.float32)[None, :] - np.float32(centre[1])) * np.float32(sx)
    metal = metal_fraction(dy, dx, (sy, sx))
    beyond_metal = np.maximum(np.sqrt(dx ** 2 + dy ** 2) - np.float32(METAL_BAR_MM[1] / 2), 0.0)
    fade = np.float32(STREAK_PEAK_HU * STREAK_DECAY_MM) / (np.float32(STREAK_DECAY_MM) + beyond_metal)
    angles = rng.uniform(0.0, np.pi) + np.arange(STREAK_LINES) * np.pi / STREAK_LINES
    strengths = rng.uniform(0.6, 1.0, STREAK_LINES) * np.where(np.arange(STREAK_LINES) % 2 == 0, -1.0, 1.0)
    widths = rng.uniform(*STREAK_WIDTH_MM, STREAK_LINES)
    hu = sample.hu.astype(np.float32, copy=True)
    for z in liver_slices:
        turned = angles + rng.normal(0.0, np.radians(2.0), STREAK_LINES)
        streaks = np.zeros((ny, nx), dtype=np.float32)
        for angle, strength, width in zip(turned, strengths, widths):
            across = dx * np.float32(-np.sin(angle)) + dy * np.float32(np.cos(angle))  # mm from the line
            streaks += np.float32(strength) * np.exp(-0.5 * (across / np.float32(width)) ** 2)
        scanned = hu[z] > PADDING_BELOW_HU
        streaked = np.clip(hu[z] + streaks * fade, SCANNER_MIN_HU, METAL_HU)
        hu[z] = np.where(scanned, streaked * (np.float32(1.0) - metal) + np.float32(METAL_HU) * metal, hu[z])
    return replace(sample, hu=hu)


def original_with_lesions(case: BenchCase, seed: int, lesions: LesionConfig,
                          anchor_slice: Optional[int] = None) -> Sample:
    """The real CT of the kept slices (``case.original``, no benchmark tumor) with ``lesions`` inserted by the
    training generator, seeded by ``seed`` (``anchor_slice``: as :func:`insert_lesions`'s)."""
    original = case.original
    hu, labels, _ = insert_lesions(original.hu, original.labels, original.spacing_zyx, rng=seed, config=lesions,
                                   anchor_slice=anchor_slice)
    return replace(original, hu=hu, labels=labels)


HYPERDENSE_LESIONS = replace(BENCHMARK_LESIONS, hypodense_probability=0.0)
"""The benchmark's synthetic tumors, all brighter than the liver around them (15-60 HU above it)."""


def with_hyperdense_lesions(case: BenchCase, seed: int) -> Sample:
    """The real CT (``case.original``, no synthetic tumor) with :data:`HYPERDENSE_LESIONS` inserted (seeded by
    ``seed``): hypervascular tumors as an arterial phase shows them (HCC; neuroendocrine, renal-cell or melanoma
    metastases), where the benchmark's usual tumors are 90 % darker than the liver and the bundled models trained on
    97 % darker ones. Its tumor Dice is on these tumors alone (the case's own real ones, if labelled, stay too)."""
    return original_with_lesions(case, seed, HYPERDENSE_LESIONS)


LARGE_CONFLUENT_LESIONS = replace(BENCHMARK_LESIONS, count_range=(3, 4), diameter_range_mm=(30.0, 60.0),
                                  cluster_probability=1.0)
"""One confluent mass: 3-4 tumors of 30-60 mm, each touching the first."""


def with_large_confluent_lesions(case: BenchCase, seed: int) -> Sample:
    """The real CT (``case.original``) with one confluent tumor mass (:data:`LARGE_CONFLUENT_LESIONS`, seeded by
    ``seed``): issue 11 saw large confluent tumors partly called background and the liver beside big tumors left
    out. Liver Dice (liver and tumor together) measures the parenchyma around the mass; tumor Dice the mass."""
    return original_with_lesions(case, seed, LARGE_CONFLUENT_LESIONS)


DOME_LESIONS = replace(BENCHMARK_LESIONS, count_range=(1, 2), diameter_range_mm=(10.0, 30.0), edge_probability=0.5)
"""Tumors of 10-30 mm centred on the slice :data:`DOME_DEPTH_MM` below the top of the liver (half of them at its
edge)."""

DOME_DEPTH_MM = 15.0
"""How far below the liver's top slice (mm, between slice centres) the dome tumors' anchor slice is."""


def dome_anchor_slice(labels: np.ndarray, spacing_z_mm: float, depth_mm: float = DOME_DEPTH_MM,
                      liver_top: Optional[int] = None) -> Optional[int]:
    """z index of the slice ``depth_mm`` below the highest slice holding liver (canonical LPS: z grows towards
    the head), or the lowest liver slice when the liver is shorter than that. ``labels``: ``(z, y, x)``.
    ``liver_top``: the liver's highest slice when ``labels`` are slices kept from a longer scan (its index in
    their numbering, beyond their last when the cut left the top out); the window's own top liver slice is then
    only where the cut ran. None when the anchor lies above the kept slices."""
    liver_z = np.flatnonzero((labels >= 1).any(axis=(1, 2)))
    top = int(liver_z[-1]) if liver_top is None else int(liver_top)
    anchor = int(max(liver_z[0], top - int(round(depth_mm / float(spacing_z_mm)))))
    return anchor if anchor <= int(liver_z[-1]) else None


def with_dome_lesions(case: BenchCase, seed: int) -> Optional[Sample]:
    """The real CT (``case.original``) with :data:`DOME_LESIONS` under the dome (seeded by ``seed``): issue 11 saw
    a real tumor at the dome missed and the heart above it called liver. The depth is counted from the whole
    scan's top liver slice (``case.liver_top``): under ``--max-slices`` the kept window's top liver slice was
    where the window cut the liver (on example_ct_full112 the anchor sat 2 slices, 6 mm, too deep). None when the
    anchor is above the kept slices."""
    anchor = dome_anchor_slice(case.original.labels, case.original.spacing_zyx[0], liver_top=case.liver_top)
    if anchor is None:
        return None
    return original_with_lesions(case, seed, DOME_LESIONS, anchor_slice=anchor)


EXOPHYTIC_LESIONS = replace(BENCHMARK_LESIONS, count_range=(1, 2), diameter_range_mm=(25.0, 40.0),
                            edge_probability=1.0, exophytic_probability=1.0, exophytic_outside_fraction=(0.4, 0.7))
"""1-2 tumors of 25-40 mm centred at the liver's surface where it faces fat or soft tissue, 40-70 % of each aimed
outside the liver (``LesionConfig.exophytic_probability``; the share is exact for a flat surface, measured per row)."""


EXOPHYTIC_MIN_OUTSIDE = 0.25
"""The :func:`with_exophytic_lesions` row is skipped when under this share of its tumor lies outside the liver (a few
kept slices cut the ball; the 3-slice CT kept 3 % on one seed): it would measure an ordinary tumor."""


def with_exophytic_lesions(case: BenchCase, seed: int) -> Optional[Sample]:
    """The real CT (``case.original``) with :data:`EXOPHYTIC_LESIONS` (seeded by ``seed``): tumors bulging out of the
    liver's capsule into the fat or soft tissue beside it (HCC and metastases often do; issue 11 measured the bundled
    model finding such a tumor only inside the liver). The truth's label 2 takes the part outside the liver too, and
    the sample's ``outside_part`` marks it (the row's ``outside_part_*`` scores). None when no tumor reaches outside
    the liver, or under :data:`EXOPHYTIC_MIN_OUTSIDE` of the inserted tumor does (no surface facing fat or soft tissue
    in the kept slices, or too few slices). The share is of the inserted tumor only: a case's own real tumor counted
    too, and a large one skipped the row on every case of a data set with real tumor labels (the benchmark audit)."""
    original = case.original
    hu, labels, infos = insert_lesions(original.hu, original.labels, original.spacing_zyx, rng=seed,
                                       config=EXOPHYTIC_LESIONS)
    outside = (labels == 2) & (original.labels == 0)
    inserted = (labels == 2) & (original.labels != 2)  # the case's own tumors are not the inserted ones
    if not any(info.get("exophytic") for info in infos) \
            or np.count_nonzero(outside) < EXOPHYTIC_MIN_OUTSIDE * np.count_nonzero(inserted):
        return None
    return replace(original, hu=hu, labels=labels, outside_part=outside)


SMALL_LESIONS = replace(BENCHMARK_LESIONS, count_range=(4, 8), diameter_range_mm=(5.0, 10.0), edge_probability=0.0,
                        allow_boundary_touching=False)
"""4-8 tumors of 5-10 mm (log-uniform, as the others), each wholly inside the liver (its centre at least its radius
from the liver's surface, so none is clipped to a sliver), with the benchmark's appearance (90 % darker than the
liver): metastases are often 5-10 mm, while the benchmark's other tumors are 10-40 mm."""

SMALL_LESION_VOXELS_ACROSS = 2.0
"""The smallest diameter the :func:`with_small_lesions` row draws is at least this many of the scan's largest voxel
side (a 5 mm ball on 3 mm voxels holds 2.4 voxels; raised to 6 mm it holds 4.2)."""

SMALL_LESION_MAX_LOW_MM = 7.5
"""The :func:`with_small_lesions` row is skipped when the widened lower end would be above this (voxels over 3.75 mm
on a side, such as 5 mm slices): it would no longer measure 5-10 mm lesions."""


def small_lesion_config(spacing_zyx: Sequence[float]) -> Optional[LesionConfig]:
    """:data:`SMALL_LESIONS` for a scan of ``spacing_zyx`` (mm): the lower end of the diameter range raised to
    :data:`SMALL_LESION_VOXELS_ACROSS` x the largest voxel side where that is more than 5 mm (3 mm voxels: 6-10 mm);
    None where it would exceed :data:`SMALL_LESION_MAX_LOW_MM`."""
    low, high = SMALL_LESIONS.diameter_range_mm
    across = SMALL_LESION_VOXELS_ACROSS * max(float(s) for s in spacing_zyx)
    if across > SMALL_LESION_MAX_LOW_MM:
        return None
    return SMALL_LESIONS if across <= low else replace(SMALL_LESIONS, diameter_range_mm=(across, high))


def with_small_lesions(case: BenchCase, seed: int) -> Optional[Sample]:
    """The real CT (``case.original``) with :data:`SMALL_LESIONS` (seeded by ``seed``; the range widened for coarse
    voxels by :func:`small_lesion_config`): how many small lesions the model finds (``detected_lesions`` of
    ``true_lesions``), how many it invents (``false_lesions``), and its tumor Dice on them. Note that the default
    post-processing makes lesions under 0.1 mL (a 5.8 mm ball) liver, and those under 5 mL liver unless their mean
    tumor probability reaches 0.65. None when the scan's voxels are too coarse."""
    config = small_lesion_config(case.original.spacing_zyx)
    if config is None:
        return None
    return original_with_lesions(case, seed, config)


FLUID_DIAMETER_MM = (40.0, 70.0)
"""Diameter range (mm) of the :func:`with_fluid_region` blob: a resection bed, a large cyst or abscess (the
resection bed the earlier audit saw labelled liver held 1,158 - 282 = about 876 mL; a 55 mm half-ball is 44 mL)."""
FLUID_HU = (0.0, 15.0)
"""Range (HU) of the fluid's mean CT value: water 0 HU; bile, ascites, simple cysts and a fresh resection bed's fluid
0-20 HU."""
FLUID_EDGE_MM = 1.0
"""Width (mm) of the fluid's soft edge (a sigmoid's scale): partial volume between liver and fluid."""


def _fluid_centre(liver: np.ndarray, spacing_zyx: Sequence[float], radius_mm: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Voxel index ``(z, y, x)`` of a liver voxel 0.25-0.5 ``radius_mm`` from the liver's edge (the scan's first
    and last slices are no edge), drawn by ``rng``, so a ball of ``radius_mm`` there reaches out of the liver: a
    fluid region at the liver's edge. The deepest liver voxel when the liver is nowhere that thick."""
    from scipy.ndimage import distance_transform_edt

    ends = int(np.ceil(0.5 * radius_mm / float(spacing_zyx[0]))) + 1  # slices beyond the scan's ends: liver
    padded = np.pad(np.pad(liver, ((ends, ends), (0, 0), (0, 0)), mode="edge"), ((0, 0), (1, 1), (1, 1)))
    depth = distance_transform_edt(padded, sampling=tuple(spacing_zyx))[ends:-ends, 1:-1, 1:-1]
    candidates = np.flatnonzero(liver & (depth >= 0.25 * radius_mm) & (depth <= 0.5 * radius_mm))
    if candidates.size == 0:
        return np.array(np.unravel_index(int(np.argmax(depth)), liver.shape), dtype=float)
    return np.array(np.unravel_index(int(candidates[rng.integers(candidates.size)]), liver.shape), dtype=float)


def with_fluid_region(case: BenchCase, seed: int) -> Sample:
    """The real CT (``case.original``, no synthetic tumor) with a smooth blob of water density at the liver's edge:
    an ellipsoid of :data:`FLUID_DIAMETER_MM` (radii 0.8-1.2 x, turned in-plane) centred 0.25-0.5 radius inside the
    liver's edge, clipped to the liver, of one CT value in :data:`FLUID_HU` plus noise of the liver's own grain (its
    std and correlation measured around the centre, as the synthetic tumors') and a soft edge
    (:data:`FLUID_EDGE_MM`); labelled background (it is not liver). A resection bed, a large cyst or abscess, a
    necrotic tumor or ascites: an earlier audit saw the bundled model label a resection bed's fluid liver
    (1,158 mL liver against 282 mL) without a word. Seeded by ``seed``; the blob is the sample's ``fluid``."""
    from LiverTumorSegLib.training.synthetic_lesions import correlated_noise, local_liver_stats

    original = case.original
    rng = np.random.default_rng(seed)
    spacing = np.asarray(original.spacing_zyx, dtype=float)
    liver = original.labels >= 1
    radius_mm = 0.5 * float(rng.uniform(*FLUID_DIAMETER_MM))
    radii_mm = radius_mm * rng.uniform(0.8, 1.2, size=3)
    angle = float(rng.uniform(0.0, np.pi))
    fluid_hu = float(rng.uniform(*FLUID_HU))
    centre = _fluid_centre(liver, spacing, radius_mm, rng)
    reach = (float(radii_mm.max()) + 3.0 * FLUID_EDGE_MM) / spacing
    box = tuple(slice(max(0, int(np.floor(c - r))), min(n, int(np.ceil(c + r)) + 1))
                for c, r, n in zip(centre, reach, liver.shape))
    z, y, x = [(np.arange(b.start, b.stop) - c) * s for b, c, s in zip(box, centre, spacing)]
    dz, dy, dx = np.meshgrid(z, y, x, indexing="ij")
    u, v = np.cos(angle) * dy + np.sin(angle) * dx, -np.sin(angle) * dy + np.cos(angle) * dx
    q = np.sqrt((dz / radii_mm[0]) ** 2 + (u / radii_mm[1]) ** 2 + (v / radii_mm[2]) ** 2)
    weight = 0.5 * (1.0 - np.tanh(0.5 * (q - 1.0) * radius_mm / FLUID_EDGE_MM))  # 1 inside, 0.5 on the outline
    weight = (weight * liver[box]).astype(np.float32)
    _, noise_std, rho = local_liver_stats(original.hu, liver, centre, tuple(spacing), 25.0)
    water = np.float32(fluid_hu) + np.float32(noise_std) * correlated_noise(weight.shape, rho, rng)
    hu, labels = original.hu.copy(), original.labels.copy()
    hu[box] = (1.0 - weight) * hu[box] + weight * water
    fluid = np.zeros_like(liver)
    fluid[box] = weight >= 0.5
    labels[fluid] = 0
    return replace(original, hu=hu, labels=labels, fluid=fluid)


PERIHEPATIC_THICKNESS_MM = (5.0, 20.0)
"""Range (mm) of the :func:`with_perihepatic_fluid` layer's thickness at the middle of its sector, measured in-plane
from the liver's outline in each slice: chosen as a small to moderate perihepatic rim of ascites or a pleural effusion
behind the liver's top, a few mm to about 2 cm deep on an axial slice (not measured on a scan with ascites: none of
the shared cases has any). The layer is thinner where a wall is nearer (:data:`PERIHEPATIC_WALL_MM`)."""
PERIHEPATIC_SECTOR_DEG = (120.0, 200.0)
"""Range (degrees) of the layer's angular width around the liver's in-plane centroid: a rim over a third to a good
half of the liver's outline, as a perihepatic collection covers the convex surface and not the hilum."""
PERIHEPATIC_DIRECTION_DEG = (-90.0, 90.0)
"""Range (degrees) of the sector's middle direction in the canonical LPS plane: 0 points to the patient's right
(-x), -90 to the front (-y), +90 to the back (+y). Anterior to posterior through the right-lateral side: ascites
gathers anterior and lateral to the right lobe, fluid in the hepatorenal pouch and a pleural effusion lie posterior."""
PERIHEPATIC_REACH_DEG = 135.0
"""The sector stays within this angle (degrees) of the patient's right (moved, keeping its width, where the drawn
one reached further): the medial quarter, the porta hepatis, vena cava and stomach, is never covered (a 200 degree
sector drawn around the back filled example_ct_sm's hilum, seen by eye)."""
PERIHEPATIC_TAPER = 0.25
"""Share of the sector's half-width at either end over which the layer thins linearly to nothing, so the layer is a
crescent (as a free-fluid rim thins where it ends) and not a slab with square ends."""
PERIHEPATIC_TISSUE_HU = (-250.0, 150.0)
"""CT range (HU) the layer may replace: fat (-150..-50) and soft tissue (muscle, diaphragm, bowel wall, unenhanced
and enhanced parenchyma up to 150) with partial volume between them. Bone (over 300), lung and gas (under -500) and
the brightest contrast (enhanced vessels and kidney cortex over 150) stay as they are: fluid displaces soft tissue,
it does not fill bone or replace aerated lung on the same slice."""
PERIHEPATIC_WALL_MM = 15.0
"""Half-width (mm, along the liver's outline) over which the layer's depth is capped by the nearest wall: at a point of
the outline, the layer reaches no further than the shortest distance from the liver to anything it may not replace
(a rib, lung, gas, the skin) at any liver voxel within this reach (that distance taken in any direction, so a point
facing the gap between two ribs is capped by the ribs beside it). On example_ct_dicom20 the bone pieces within 30 mm
of the liver lie 11-59 mm from their nearest neighbours (slices 4, 10, 16 of the 40 kept; 4-6 mm between the two
cortices of one rib); without the cap the layer ran through the gaps between ribs into the chest wall outside them
(seen by eye on its slice 10), with it the layer stayed on the liver's side of the ribs there."""
PERIHEPATIC_BODY_HU = -500.0
"""Threshold (HU) of the body in a slice: the layer is put only in connected parts of over -500 HU that hold liver
(never the couch or a separate arm); the body threshold :func:`spine_centre_yx` uses."""
PERIHEPATIC_MIN_ML = 5.0
"""Smallest layer (mL) the row is measured with: the fold models' 0.8-3.5 mL of tumor in example_ct_dicom20's
fluid-like region are then at most a part of it, and it is about the smallest ``fluid_region`` blob measured on the
shared cases (5.18 mL on ct3slice_ct, docs/bundled_model.md). Less fits where little soft tissue or fat borders the
liver on the drawn sector (a scan of a few thin slices, a liver against lung and ribs): the row is skipped."""


def perihepatic_weight(liver_yx: np.ndarray, tissue_yx: np.ndarray, spacing_yx: Sequence[float],
                       direction_rad: float, half_width_rad: float, thickness_mm: float) -> np.ndarray:
    """The layer's weight (float32 ``(y, x)``, 0..1; 0.5 on its outer outline) in one slice: the voxels of
    ``tissue_yx`` (bool, where the layer may go) outside ``liver_yx`` (bool) within the local thickness of the liver's
    outline (in-plane distance, mm, ``spacing_yx`` ``(y, x)`` mm; holes in the liver, its vessels at the hilum, count
    as liver), with a soft outer edge of :data:`FLUID_EDGE_MM` (cut 4 edges beyond), on the sector of half-width
    ``half_width_rad`` around ``direction_rad`` (as :data:`PERIHEPATIC_DIRECTION_DEG`) seen from the liver's centroid
    in this slice. The thickness is ``thickness_mm`` over the sector's middle and thins to 0 over
    :data:`PERIHEPATIC_TAPER` of the half-width at either end, and at most the distance from the liver to the nearest
    wall (:data:`PERIHEPATIC_WALL_MM`). Zero everywhere when the slice holds no liver."""
    from scipy.ndimage import binary_fill_holes, distance_transform_edt, minimum_filter

    weight = np.zeros(liver_yx.shape, dtype=np.float32)
    if not liver_yx.any():
        return weight
    sy, sx = float(spacing_yx[0]), float(spacing_yx[1])
    reach_mm = thickness_mm + 4.0 * FLUID_EDGE_MM
    ys, xs = np.nonzero(liver_yx)
    box = (slice(max(0, int(ys.min() - np.ceil(reach_mm / sy)) - 1), int(ys.max() + np.ceil(reach_mm / sy)) + 2),
           slice(max(0, int(xs.min() - np.ceil(reach_mm / sx)) - 1), int(xs.max() + np.ceil(reach_mm / sx)) + 2))
    liver, tissue = binary_fill_holes(liver_yx[box]), tissue_yx[box]
    distance, nearest = distance_transform_edt(~liver, sampling=(sy, sx), return_indices=True)  # mm to the liver
    to_wall = np.where(liver, distance_transform_edt(tissue | liver, sampling=(sy, sx)), np.inf)  # on the liver
    window = (2 * int(round(PERIHEPATIC_WALL_MM / sy)) + 1, 2 * int(round(PERIHEPATIC_WALL_MM / sx)) + 1)
    wall_mm = minimum_filter(to_wall, size=window, mode="nearest")[nearest[0], nearest[1]]
    y = (np.arange(box[0].start, box[0].start + liver.shape[0]) - ys.mean()) * sy
    x = (np.arange(box[1].start, box[1].start + liver.shape[1]) - xs.mean()) * sx
    angle = np.arctan2(y[:, None], -x[None, :])  # 0: the patient's right, +pi/2: the back
    off = np.abs(np.angle(np.exp(1j * (angle - direction_rad)))) / half_width_rad  # 0 middle, 1 the sector's end
    local_mm = np.minimum(thickness_mm * np.clip((1.0 - off) / PERIHEPATIC_TAPER, 0.0, 1.0), wall_mm)
    layer = 0.5 * (1.0 - np.tanh(0.5 * (distance - local_mm) / FLUID_EDGE_MM))
    keep = tissue & ~liver & (off < 1.0) & (distance <= local_mm + 4.0 * FLUID_EDGE_MM)
    weight[box] = np.where(keep, layer, 0.0)
    return weight


def perihepatic_tissue(hu_yx: np.ndarray, liver_yx: np.ndarray) -> np.ndarray:
    """Where the layer may go in one slice (bool ``(y, x)``): :data:`PERIHEPATIC_TISSUE_HU` inside the connected
    parts of the body (over :data:`PERIHEPATIC_BODY_HU`) that hold liver, outside the liver."""
    from scipy.ndimage import label

    parts, _ = label(hu_yx > PERIHEPATIC_BODY_HU)
    body = np.isin(parts, np.unique(parts[liver_yx & (parts > 0)]))
    low, high = PERIHEPATIC_TISSUE_HU
    return body & (hu_yx >= low) & (hu_yx <= high) & ~liver_yx


def with_perihepatic_fluid(case: BenchCase, seed: int) -> Optional[Sample]:
    """The real CT (``case.original``, no synthetic tumor) with a layer of water density outside the liver along
    part of its surface, in every slice holding liver: ascites or a perihepatic collection (common with cirrhosis
    and liver cancer), or a pleural effusion behind the liver's top. Drawn per ``seed``: the thickness
    (:data:`PERIHEPATIC_THICKNESS_MM`, in-plane distance from the liver's outline in each slice), the sector's width
    (:data:`PERIHEPATIC_SECTOR_DEG`) and direction (:data:`PERIHEPATIC_DIRECTION_DEG`, the sector kept within
    :data:`PERIHEPATIC_REACH_DEG` of the patient's right), the same in every slice, and one CT value in
    :data:`FLUID_HU`, plus noise of the liver's own grain (std and correlation measured around
    the liver's centroid, as :func:`with_fluid_region` does) and a soft outer edge (:func:`perihepatic_weight`). Only
    fat and soft tissue of the body are replaced (:func:`perihepatic_tissue`); liver, labels, bone, lung and gas stay.
    The layer (weight >= 0.5) is the sample's ``fluid``. Leave-one-patient-out fold models of the v3, v6 and v7 recipes
    called 0.8-3.5 mL of tumor in a water-density region between example_ct_dicom20's liver and ribs. None when
    under :data:`PERIHEPATIC_MIN_ML` fits."""
    from LiverTumorSegLib.training.synthetic_lesions import correlated_noise, local_liver_stats

    original = case.original
    liver = original.labels >= 1
    if not liver.any():
        return None
    rng = np.random.default_rng(seed)
    thickness_mm = float(rng.uniform(*PERIHEPATIC_THICKNESS_MM))
    half_width = 0.5 * np.radians(float(rng.uniform(*PERIHEPATIC_SECTOR_DEG)))
    reach = np.radians(PERIHEPATIC_REACH_DEG) - half_width
    direction = float(np.clip(np.radians(float(rng.uniform(*PERIHEPATIC_DIRECTION_DEG))), -reach, reach))
    fluid_hu = float(rng.uniform(*FLUID_HU))
    weight = np.zeros(liver.shape, dtype=np.float32)
    for z in np.flatnonzero(liver.any(axis=(1, 2))):
        tissue = perihepatic_tissue(original.hu[z], liver[z])
        weight[z] = perihepatic_weight(liver[z], tissue, original.spacing_zyx[1:], direction, half_width,
                                       thickness_mm)
    fluid = weight >= 0.5
    voxel_ml = float(np.prod(original.true_spacing_zyx)) / 1000.0
    if float(np.count_nonzero(fluid)) * voxel_ml < PERIHEPATIC_MIN_ML:
        return None
    centre = np.argwhere(liver).mean(axis=0)
    _, noise_std, rho = local_liver_stats(original.hu, liver, centre, tuple(original.spacing_zyx), 25.0)
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(weight > 0.0))
    water = np.float32(fluid_hu) + np.float32(noise_std) * correlated_noise(weight[box].shape, rho, rng)
    hu = original.hu.copy()
    hu[box] = (1.0 - weight[box]) * hu[box] + weight[box] * water
    return replace(original, hu=hu, fluid=fluid)


Perturbation = Callable[[BenchCase, int], Optional[Sample]]

SKIP_REASONS = {
    "thick": "the scan's slices are already that thick, or fewer than two thick slabs fit",
    "thin": "the scan's slices are already less than 1.5 x that thin",
    "fov_liver": "the liver +- the margin already spans the whole scan (needs a scan reaching beyond the liver)",
    "fov_xy": "the image is no larger than that field of view in-plane already",
    "scan_end": "the kept slices hold no tumor, or the slice where it is widest is already the scan's end",
    "metal": "no spine (bone near the midline behind the body's centre) in the slices that hold liver",
    "dome": "the slice 15 mm below the liver's top is above the kept slices (raise --max-slices)",
    "exophytic": "under a quarter of the tumor reaches outside the liver: no stretch of its surface in the kept "
                 "slices faces fat or soft tissue (-250..150 HU), or too few slices are kept",
    "small": "the scan's voxels are over 3.75 mm on a side: a lesion two voxels across would be over 7.5 mm",
    "perihepatic": "under 5 mL of fat or soft tissue (-250..150 HU) borders the liver within the drawn sector and "
                   "thickness",
    "regrid": "the scan is too thin along z for the tilted grid: it holds under a quarter of the kept slices' liver",
}


def skip_reason(name: str) -> str:
    """Why perturbation ``name`` gave no sample for a case."""
    return next((text for prefix, text in SKIP_REASONS.items() if name.startswith(prefix)), "it does not apply")

REFERENCE_OF = {"fov_liver20": "baseline_whole", "fov_liver60": "baseline_whole"}
"""Perturbations cut from the whole scan -> the row they are compared with under ``--max-slices`` (the others are
compared with ``baseline``); ``run`` adds that row to a run that cuts scans."""

PERTURBATIONS: Dict[str, Tuple[str, Perturbation]] = {
    "original": ("real CT, no synthetic tumor", lambda c, s: c.original),
    "baseline": ("synthetic tumors, full scan", lambda c, s: c.sample),
    # the fov rows' reference under --max-slices (they cut the whole scan, baseline keeps N slices); only then
    "baseline_whole": ("synthetic tumors, whole scan (the fov rows' reference with --max-slices)",
                       lambda c, s: c.whole_sample()),
    "spacing-30": ("anatomy shown 0.70x (spacing -30 %)", lambda c, s: scale_spacing(c.sample, 0.70)),
    "spacing-15": ("anatomy shown 0.85x (spacing -15 %)", lambda c, s: scale_spacing(c.sample, 0.85)),
    "spacing-40": ("anatomy shown 0.60x (spacing -40 %; body diameters about 184-205 mm)",
                   lambda c, s: scale_spacing(c.sample, 0.60)),
    "spacing-50": ("anatomy shown 0.50x (spacing -50 %)", lambda c, s: scale_spacing(c.sample, 0.50)),
    "spacing-60": ("anatomy shown 0.40x (spacing -60 %; body diameters about 122-137 mm, a toddler's)",
                   lambda c, s: scale_spacing(c.sample, 0.40)),
    "spacing+15": ("anatomy shown 1.15x (spacing +15 %)", lambda c, s: scale_spacing(c.sample, 1.15)),
    "spacing+30": ("anatomy shown 1.30x (spacing +30 %)", lambda c, s: scale_spacing(c.sample, 1.30)),
    "liver_hu-40": ("liver -40 HU", lambda c, s: shift_liver_hu(c.sample, -40.0)),
    "liver_hu+40": ("liver +40 HU", lambda c, s: shift_liver_hu(c.sample, 40.0)),
    "noise10": ("noise 10 HU std", lambda c, s: add_noise(c.sample, 10.0, s)),
    "noise25": ("noise 25 HU std", lambda c, s: add_noise(c.sample, 25.0, s)),
    "thick5mm": ("5 mm thick slices", lambda c, s: thick_slices(c.sample, 5.0)),
    "thin0.75mm": ("0.75 mm thin slices (z interpolated)", lambda c, s: thin_slices(c.sample, 0.75)),
    "thin0.5mm": ("0.5 mm thin slices (z interpolated)", lambda c, s: thin_slices(c.sample, 0.5)),
    # from the whole scan: with --max-slices the kept slices were always within the liver +- the margin
    "fov_liver20": ("z field of view liver +-20 mm", lambda c, s: crop_to_liver(c.whole_sample(), 20.0)),
    "fov_liver60": ("z field of view liver +-60 mm", lambda c, s: crop_to_liver(c.whole_sample(), 60.0)),
    "air_pad15": ("15 air slices above and below", lambda c, s: pad_with_air(c.sample, 15)),
    "scan_end_tumor": ("the scan's end cuts the widest tumor slice", lambda c, s: cut_at_widest_tumor(c.sample)),
    "rotate-10": ("anatomy turned -10 degrees in-plane", lambda c, s: rotate_in_plane(c.sample, -10.0)),
    "rotate+10": ("anatomy turned +10 degrees in-plane", lambda c, s: rotate_in_plane(c.sample, 10.0)),
    "regrid_fill0": ("resampled onto a grid turned {regrid_degrees:g} degrees about left-right, fill 0 HU "
                     "(SimpleITK's default)",
                     lambda c, s: regrid_tilted(c.sample, REGRID_DEGREES_USED, 0.0)),
    "regrid_fill-1024": ("resampled onto a grid turned {regrid_degrees:g} degrees about left-right, fill -1024 HU",
                         lambda c, s: regrid_tilted(c.sample, REGRID_DEGREES_USED, -1024.0)),
    "fov_xy300": ("in-plane field of view 300 mm around the liver", lambda c, s: crop_in_plane(c.sample, 300.0)),
    "fov_xy220": ("in-plane field of view 220 mm around the liver", lambda c, s: crop_in_plane(c.sample, 220.0)),
    "sharp_kernel": ("sharper reconstruction kernel (unsharp mask)", lambda c, s: sharpen_in_plane(c.sample)),
    "metal_streaks": ("a metal screw in the spine with its streaks", lambda c, s: metal_streaks(c.sample, s)),
    "hyperdense": ("synthetic tumors brighter than the liver (arterial phase)", with_hyperdense_lesions),
    "large_confluent": ("one confluent mass of 3-4 tumors of 30-60 mm", with_large_confluent_lesions),
    "dome": ("1-2 tumors of 10-30 mm 15 mm under the liver's top in the scan (its dome, or the scan's top edge where "
             "that cuts the liver)", with_dome_lesions),
    "exophytic": ("1-2 tumors of 25-40 mm at the liver's surface, 40-70 % outside it", with_exophytic_lesions),
    "small_lesions": ("4-8 tumors of 5-10 mm inside the liver (6-10 mm on 3 mm voxels)", with_small_lesions),
    "fluid_region": ("a 40-70 mm blob of water (0-15 HU) at the liver's edge, labelled background", with_fluid_region),
    "perihepatic_fluid": ("a 5-20 mm layer of water (0-15 HU) outside the liver on a 120-200 degree sector (ascites)",
                          with_perihepatic_fluid),
}


def perturbation_description(name: str) -> str:
    """What row ``name`` of :data:`PERTURBATIONS` does, with the regrid rows' angle as run
    (:data:`REGRID_DEGREES_USED`): the JSON said 'turned 30 degrees' of rows run with --regrid-degrees 10."""
    return PERTURBATIONS[name][0].format(regrid_degrees=REGRID_DEGREES_USED)


# ------------------------------------------------------------------------------------------------ metrics

def dice(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    """Dice of two boolean masks; None when both are empty."""
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    if total == 0:
        return None
    return 2.0 * int(np.count_nonzero(a & b)) / total


def lesion_counts(truth: np.ndarray, pred: np.ndarray) -> Tuple[int, int, int]:
    """``(true lesions, detected true lesions, false predicted lesions)`` of boolean tumor masks (26-conn.)."""
    from scipy import ndimage

    structure = np.ones((3, 3, 3), dtype=bool)
    t_lab, n_true = ndimage.label(truth, structure=structure)
    p_lab, n_pred = ndimage.label(pred, structure=structure)
    detected = len(np.setdiff1d(np.unique(t_lab[pred]), [0])) if n_true else 0
    false = n_pred - len(np.setdiff1d(np.unique(p_lab[truth]), [0])) if n_pred else 0
    return int(n_true), int(detected), int(false)


def score(sample: Sample, predicted: np.ndarray) -> Dict[str, Any]:
    truth_liver, pred_liver = sample.labels >= 1, predicted >= 1
    truth_tumor, pred_tumor = sample.labels == 2, predicted == 2
    voxel_ml = float(np.prod(sample.true_spacing_zyx)) / 1000.0
    n_true, detected, false = lesion_counts(truth_tumor, pred_tumor)
    liver = dice(truth_liver, pred_liver)
    return {"liver_dice": None if liver is None else round(liver, 4),
            "tumor_dice": round(dice(truth_tumor, pred_tumor) or 0.0, 4) if truth_tumor.any() else None,
            "liver_outside_ml": round(float(np.count_nonzero(pred_liver & ~truth_liver)) * voxel_ml, 2),
            "tumor_outside_ml": round(float(np.count_nonzero(pred_tumor & ~truth_tumor)) * voxel_ml, 2),
            "true_lesions": n_true, "detected_lesions": detected, "false_lesions": false,
            **fluid_scores(sample, predicted, voxel_ml), **outside_part_scores(sample, predicted, voxel_ml)}


def outside_part_scores(sample: Sample, predicted: np.ndarray, voxel_ml: float) -> Dict[str, Any]:
    """``outside_part_ml`` (the true tumor :func:`with_exophytic_lesions` put outside the real liver, mL),
    ``outside_part_as_tumor_ml`` and ``outside_part_as_liver_ml`` (the parts of it ``predicted`` labels tumor (2) and
    liver (1), mL; the rest was called background); nothing for a sample without it."""
    if sample.outside_part is None:
        return {}
    part = sample.outside_part
    return {"outside_part_ml": round(float(np.count_nonzero(part)) * voxel_ml, 2),
            "outside_part_as_tumor_ml": round(float(np.count_nonzero(part & (predicted == 2))) * voxel_ml, 2),
            "outside_part_as_liver_ml": round(float(np.count_nonzero(part & (predicted == 1))) * voxel_ml, 2)}


def fluid_scores(sample: Sample, predicted: np.ndarray, voxel_ml: float) -> Dict[str, Any]:
    """``fluid_ml`` (the water :func:`with_fluid_region` or :func:`with_perihepatic_fluid` put in, mL),
    ``fluid_as_liver_ml`` and ``fluid_as_tumor_ml`` (the parts of it ``predicted`` labels liver (1) and tumor (2), mL;
    both counted in ``liver_outside_ml`` too, the tumor in ``tumor_outside_ml``); nothing for a sample without
    fluid."""
    if sample.fluid is None:
        return {}
    return {"fluid_ml": round(float(np.count_nonzero(sample.fluid)) * voxel_ml, 2),
            "fluid_as_liver_ml": round(float(np.count_nonzero(sample.fluid & (predicted == 1))) * voxel_ml, 2),
            "fluid_as_tumor_ml": round(float(np.count_nonzero(sample.fluid & (predicted == 2))) * voxel_ml, 2)}


# ---------------------------------------------------------------------------------------------- running

def _listed_names(metadata: Dict[str, Any]) -> Dict[str, set]:
    """The package metadata's training ``cases``, ``patients`` and ``validation_cases`` as sets of names
    (empty where missing or not a list)."""
    training = metadata.get("training", {}) if isinstance(metadata, dict) else {}
    training = training if isinstance(training, dict) else {}
    return {key: {str(v) for v in training.get(key)} if isinstance(training.get(key), list) else set()
            for key in ("cases", "patients", "validation_cases")}


def training_names(metadata: Dict[str, Any]) -> set:
    """Every case or patient name a package was trained or validated on."""
    return set().union(*_listed_names(metadata).values())


def training_digests(metadata: Dict[str, Any]) -> set:
    """The ``voxel_sha256`` of every scan a package was trained or validated on, from its training metadata's
    ``data_files`` (recorded by packages trained since 25 Nov 2026; empty for older ones, such as the bundled
    v3)."""
    training = metadata.get("training", {}) if isinstance(metadata, dict) else {}
    files = training.get("data_files") if isinstance(training, dict) else None
    return {str(f["voxel_sha256"]) for f in (files if isinstance(files, list) else [])
            if isinstance(f, dict) and isinstance(f.get("voxel_sha256"), str) and f["voxel_sha256"]}


DERIVED_FROM = {"example_ct_sm": "example_ct_full112"}
"""Cases known to hold another case's voxels under another name, which neither a name nor a voxel digest can tell:
TotalSegmentator's ``example_ct_sm`` (in Testing/Data) is slices 82-111 of its ``example_ct_full112``, voxel for
voxel (checked with numpy on the shared copies, 27 Nov 2026). A package trained on the one was trained on the
other; on Testing/Data the benchmark called example_ct_sm unseen (the evaluate audit)."""


def is_training_case(case: "BenchCase", trained_on: set, trained_digests: set) -> bool:
    """Whether the package was trained or validated on ``case``: by case or patient name, by its voxels' digest
    where the package records them (a copy under another name or in another file format), or through
    :data:`DERIVED_FROM` (a crop of a training case)."""
    return (case.case_id in trained_on or case.patient_id in trained_on
            or DERIVED_FROM.get(case.case_id) in trained_on
            or bool(case.voxel_sha256) and case.voxel_sha256 in trained_digests)


def validation_only_names(metadata: Dict[str, Any], patient_of: Optional[Dict[str, str]] = None) -> set:
    """Names listed as validation cases and not as training cases or patients in a package's metadata, nor a
    scan of a training patient (``patient_of``: case name -> patient id, where known)."""
    listed = _listed_names(metadata)
    names = listed["validation_cases"] - listed["cases"] - listed["patients"]
    return {n for n in names if str((patient_of or {}).get(n, n)) not in listed["patients"]}


def _run_key(case: BenchCase, sample: Sample, name: str) -> str:
    """Which segmentation a row's ``sample`` shares: one the case holds (its sample, its real CT, its whole scan)
    by which it is, so baseline_whole of an uncut scan reuses baseline's; a perturbed copy by its row. (Keyed by
    ``id(sample)``, a copy freed after its row lent its id to the next: spacing+30 was scored with another
    perturbation's labels.)"""
    for kept, held in (("sample", case.sample), ("original", case.original), ("whole", case.whole)):
        if sample is held:
            return kept
    return name


def evaluate(engine: Any, cases: Sequence[BenchCase], perturbations: Sequence[str], seed: int = 0,
             postprocessing: Any = None, trained_on: Optional[set] = None,
             log: Optional[Callable[[str], None]] = None,
             refused: Optional[List[Tuple[str, str, str]]] = None,
             trained_digests: Optional[set] = None, body_size_scaling: bool = True) -> List[Dict[str, Any]]:
    """One flat row per (case, perturbation): the scores of ``engine`` (a SliceInferenceEngine) after the
    default (or given) post-processing (``body_size_scaling``: as ``segment``'s, on by default). Perturbations that
    do not apply to a case are left out; one whose volume segment refuses is left out too and appended to
    ``refused`` as ``(case, perturbation, reason)``."""
    from LiverTumorSegLib.inference.api import segment_volume

    trained_on = trained_on or set()
    rows = []
    for case in cases:
        done = {}  # type: Dict[str, Tuple[Any, float]]  # run key -> (labels, seconds): one volume, one run
        for name in perturbations:
            _, make = PERTURBATIONS[name]
            sample = make(case, case_seed(case.case_id + name, seed))
            if sample is None:
                if log:
                    log(f"  {case.case_id:<22} {name:<12} skipped: {skip_reason(name)}")
                continue
            key = _run_key(case, sample, name)
            if key in done:  # an uncut scan's baseline_whole is its baseline: segmented once
                labels, seconds = done[key]
            else:
                start = time.perf_counter()
                try:
                    out = segment_volume(sample.volume(case.case_id), engine.package, engine=engine,
                                         postprocessing=postprocessing, body_size_scaling=body_size_scaling,
                                         allow_non_hu=bool(case.read_options.get("allow_non_hu")))
                except InputError as exc:  # a perturbed volume the input check refuses (the real CT passed it
                    # at load): that row is skipped with the reason; before, the whole run stopped
                    if log:
                        log(f"  {case.case_id:<22} {name:<12} skipped: segment refused the perturbed volume "
                            f"({exc})")
                    if refused is not None:
                        refused.append((case.case_id, name, str(exc)))
                    continue
                labels, seconds = out.labels, time.perf_counter() - start
                if key != name:  # only a shared volume's run can be asked for again: the others are not kept
                    done[key] = (labels, seconds)
            row = {"case": case.case_id, "perturbation": name, "slices": int(sample.hu.shape[0])}
            row.update(score(sample, labels))
            row["seconds"] = round(seconds, 2)
            row["training_case"] = is_training_case(case, trained_on, trained_digests or set())
            rows.append(row)
            if log:
                log(f"  {case.case_id:<22} {name:<12} liver {fmt(row['liver_dice'])}  tumor "
                    f"{fmt(row['tumor_dice'])}  outside {row['liver_outside_ml']:.1f} mL  "
                    f"false lesions {row['false_lesions']}  {seconds:.1f} s"
                    + (f"  fluid {row['fluid_ml']:.1f} mL: {row['fluid_as_liver_ml']:.1f} called liver, "
                       f"{row['fluid_as_tumor_ml']:.1f} tumor" if "fluid_ml" in row else "")
                    + (f"  outside the liver {row['outside_part_ml']:.1f} mL: {row['outside_part_as_tumor_ml']:.1f} "
                       f"called tumor" if "outside_part_ml" in row else ""))
        case.whole = None  # a batch of large CTs is not held twice in memory
    return rows


def fmt(value: Optional[float]) -> str:
    return "  n/a" if value is None else f"{value:.3f}"


def paired_change(rows: Sequence[Dict[str, Any]], name: str, key: str, reference: str = "baseline"
                  ) -> Optional[float]:
    """Mean of ``row[key]`` minus the ``reference`` row's over the cases that have both (None when none do).
    A perturbation that does not apply to every case (thick slices on a thick scan, a field of view already
    as small) has its mean over fewer cases, so only this paired change is comparable with the reference."""
    own = REFERENCE_OF.get(name)
    if reference == "baseline" and own and any(r["perturbation"] == own for r in rows):
        reference = own  # cut from the whole scan: compared with it alone (never the N-slice rows)
    ref = {r["case"]: r.get(key) for r in rows if r["perturbation"] == reference}
    pairs = [(r.get(key), ref.get(r["case"])) for r in rows if r["perturbation"] == name]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    return float(np.mean([a - b for a, b in pairs])) if pairs else None


def summary_table(rows: Sequence[Dict[str, Any]], perturbations: Sequence[str]) -> str:
    """Text table: one line per perturbation, ``liver/tumor`` Dice per case, the means (a tumor mean over fewer
    cases than the row applied to, where some have no tumor in their truth, followed by that number), the number of
    cases the perturbation applied to, its false lesions summed over them (README's column), and the mean change
    against ``baseline`` on those same cases (the fov rows: against ``baseline_whole`` when measured)."""
    cases = list(dict.fromkeys(r["case"] for r in rows))
    by_key = {(r["case"], r["perturbation"]): r for r in rows}
    width = max(13, max((len(c) for c in cases), default=0))
    # the longest name's width: large_confluent, perihepatic_fluid ran into the cells, shifting that line's columns
    name_width = max([13] + [len(name) for name in perturbations])
    head = (f"  {'perturbation':<{name_width}}" + "".join(f" {c[-width:]:>{width}}" for c in cases)
            + "   mean liver  mean tumor   n  false lesions   vs baseline (same cases)")
    lines = [head, "  " + "-" * (len(head) - 2)]
    fewer_tumors = False
    for name in perturbations:
        cells, livers, tumors = [], [], []
        for c in cases:
            r = by_key.get((c, name))
            if r is None:
                cells.append(f" {'-':>{width}}")
                continue
            cells.append(f" {fmt(r['liver_dice']) + '/' + fmt(r['tumor_dice']).strip():>{width}}")
            if r["liver_dice"] is not None:
                livers.append(r["liver_dice"])
            if r["tumor_dice"] is not None:
                tumors.append(r["tumor_dice"])
        mean_l = fmt(float(np.mean(livers))) if livers else "  n/a"
        mean_t = fmt(float(np.mean(tumors))) if tumors else "  n/a"
        applied = sum(1 for c in cases if (c, name) in by_key)
        if tumors and len(tumors) < applied:  # cases without a tumor in their truth: a mean over fewer cases,
            mean_t += f" ({len(tumors)})"  # said (it was silent: n counted the cases the row applied to)
            fewer_tumors = True
        false = sum(int(by_key[(c, name)].get("false_lesions") or 0) for c in cases if (c, name) in by_key)
        change = ""
        if name not in ("baseline", "original", *REFERENCE_OF.values()) and applied:
            parts = [paired_change(rows, name, key) for key in ("liver_dice", "tumor_dice")]
            change = "   " + " / ".join("n/a" if v is None else f"{v:+.3f}" for v in parts)
        lines.append(f"  {name:<{name_width}}" + "".join(cells)
                     + f"   {mean_l:>10}  {mean_t:>10}  {applied:>2}  {false:>13}" + change)
    if fewer_tumors:
        lines.append("  mean tumor '(k)': over the k cases with a tumor in their truth (the others have no tumor "
                     "Dice), fewer than n")
    return "\n".join(lines)


def store_robustness(path: Any, rows: Sequence[Dict[str, Any]], settings: Optional[Dict[str, Any]] = None,
                     replace_stored: bool = False) -> Path:
    """Rewrite package ``path`` with ``metadata["robustness"] = rows`` and ``metadata["robustness_settings"] =
    settings`` (how the rows were made: data, cases, perturbations, seed, slices, post-processing, code
    version, the weights' SHA-256, date), tensors and their hash unchanged, the metadata's own hash
    recomputed. A stored table with cases or perturbations the new rows lack is kept (InputError) unless
    ``replace_stored``: a quick check run replaced a 43-row table by 2 rows without a word. When ``settings``
    name the weights they measured (``weights_sha256``), a file whose weights differ now is refused: it was
    replaced after the run, and the rows would describe another network."""
    from LiverTumorSegLib.package import rewrite_package_metadata

    where = Path(path).resolve()

    def store(meta: Dict[str, Any]) -> None:  # checked on the metadata read with the tensors it rewrites
        measured = (settings or {}).get("weights_sha256")
        if measured and meta.get("weights_sha256") != measured:
            raise InputError(f"'{where}' holds other weights (SHA-256 {str(meta.get('weights_sha256'))[:12]}...) "
                             f"than the package this run measured ({str(measured)[:12]}...): the file was replaced "
                             f"during the run. Run the benchmark again on it.")
        if not replace_stored:
            check_table_kept(where, meta, _covered(rows))
        meta["robustness"] = [dict(r) for r in rows]
        if settings is not None:
            meta["robustness_settings"] = dict(settings)

    return rewrite_package_metadata(path, store)


def _covered(rows: Sequence[Any]) -> set:
    return {(str(r.get("case")), str(r.get("perturbation"))) for r in rows if isinstance(r, dict)}


def check_table_kept(path: Any, metadata: Dict[str, Any], covered: set) -> None:
    """InputError when the package's stored robustness rows hold (case, perturbation) pairs that ``covered``
    (the new run's) lacks: storing would lose them."""
    stored = metadata.get("robustness")
    lost = _covered(stored if isinstance(stored, list) else []) - covered
    if lost:
        raise InputError(f"'{path}' holds robustness rows this run does not repeat ({len(lost)} case/perturbation "
                         f"pairs, e.g. {sorted(lost)[0]}); run the same cases and perturbations, or pass "
                         f"--replace-stored to replace the table.")


CODE_PATHS = ("LiverTumorSegLib", "benchmarks")
"""The folders (below the checkout's root) of the code a run imports: ``git_modified`` counts changes there only."""


def code_version() -> Dict[str, Any]:
    """The git commit of this checkout and whether the code (:data:`CODE_PATHS`) differs from it (``{}`` outside a
    git clone): the library version stayed 0.1.0 while a change to the synthetic-lesion code moved stored tumor Dice
    by 0.005. Other files do not count: a package stored into ``Resources/Models`` (and its ``SHA256SUMS``) made the
    next run's table say ``git_modified`` of the same code, as an edited README did."""
    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=str(ROOT), capture_output=True, text=True,
                                timeout=10)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
                                cwd=str(ROOT), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return {}
    if commit.returncode != 0 or status.returncode != 0:
        return {}
    return {"git_commit": commit.stdout.strip(), "git_modified": bool(status.stdout.strip())}


def run_settings(args: argparse.Namespace, cases: Sequence[BenchCase], perturbations: Sequence[str],
                 weights_sha256: Optional[str] = None, code: Optional[Dict[str, Any]] = None,
                 min_lesion_probability: Optional[float] = None,
                 lesion_probability_statistic: Optional[str] = None) -> Dict[str, Any]:
    """What a stored table was made with, so two packages' tables can be compared (or found not comparable):
    also the synthetic tumors' settings, the code's git commit and the SHA-256 of the weights measured
    (``livertumorseg models`` flags a table whose weights differ from the package's). ``code``: the
    :func:`code_version` taken when the run started (files edited during a run do not count).
    ``min_lesion_probability``: the lesion confidence threshold the package ran at (its own; None: 0.65), and
    ``lesion_probability_statistic`` what it was compared with (its own; None: the mean)."""
    import datetime

    from LiverTumorSegLib import __version__
    from LiverTumorSegLib.inference.postprocess import PostprocessingOptions, with_min_lesion_probability

    return {"command": "benchmarks/robustness.py", "data": str(args.data), "cases": [c.case_id for c in cases],
            "perturbations": list(perturbations), "seed": int(args.seed), "max_slices": int(args.max_slices),
            "label_map": args.label_map, "allow_non_hu": bool(args.allow_non_hu),
            "regrid_degrees": float(getattr(args, "regrid_degrees", REGRID_DEGREES)),
            "postprocessing": with_min_lesion_probability(PostprocessingOptions(), min_lesion_probability,
                                                          lesion_probability_statistic).to_dict(),
            "device": str(args.device),
            "benchmark_lesions": BENCHMARK_LESIONS.to_dict(), "library_version": __version__,
            "code": code_version() if code is None else code, "weights_sha256": weights_sha256,
            "date": datetime.date.today().isoformat()}


def planned_pairs(cases: Sequence[BenchCase], perturbations: Sequence[str], seed: int) -> set:
    """The (case, perturbation) pairs a run will score: the perturbations that can skip a case (thick slices,
    field of view) are tried, as :func:`evaluate` will."""
    pairs = set()
    for case in cases:
        for name in perturbations:
            may_skip = any(name.startswith(prefix) for prefix in SKIP_REASONS)
            if not may_skip or PERTURBATIONS[name][1](case, case_seed(case.case_id + name, seed)) is not None:
                pairs.add((case.case_id, name))
        case.whole = None  # the fov rows' whole scan, read for this case only (as evaluate drops it)
    return pairs


def check_json_output(path: Optional[str], overwrite: bool, data: Any, packages: Sequence[Any],
                      cases: Sequence[Any]) -> None:
    """Before any work: ``--json`` ends in .json, can be written (an existing file only with --overwrite) and is
    none of the run's inputs (``data``, the CSV or folder; a package; a case's CT or label map). It was checked
    only after the whole benchmark, and replaced any file, inputs included, without a word."""
    from LiverTumorSegLib.fileutil import check_json_output as check_output

    check_output(path, overwrite, [data] + list(packages) +
                 [p for case in cases for p in (case.image_path, case.label_path)])


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    # no abbreviations (as the CLI): '--store' stored a table past scale_tta.py's refusal of --store-in-package
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("packages", nargs="+", help="model package paths or installed names ('default')")
    p.add_argument("--data", required=True, help="CSV (image,label[,patient]) or folder of cases")
    p.add_argument("--json", help="write all rows and settings to this JSON file (checked before the run)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.add_argument("--store-in-package", action="store_true",
                   help="write each package's rows into its metadata (key 'robustness')")
    p.add_argument("--replace-stored", action="store_true",
                   help="with --store-in-package: replace a stored table even if it covers cases or "
                        "perturbations this run does not")
    p.add_argument("--perturbations", default=",".join(PERTURBATIONS),
                   help="comma-separated subset of: " + ", ".join(PERTURBATIONS))
    p.add_argument("--max-slices", type=int, default=0,
                   help="at most N slices around the liver per case (default 0: all slices)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the network")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="network precision, as segment's --precision (default auto: bf16 on a CPU with native "
                        "bf16, else fp32; the two differ in the third decimal of a Dice). fp32 gives the same table "
                        "on every CPU")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic tumors and the noise")
    p.add_argument("--no-postprocessing", action="store_true", help="score the raw network output")
    p.add_argument("--min-lesion-probability", type=probability, default=None, metavar="P",
                   help="the post-processing's lesion-confidence threshold (segment --min-lesion-probability; "
                        "0 turns the step off) instead of each package's own (the one it records, else 0.65)")
    p.add_argument("--keep-liver-in-air", action="store_true",
                   help="turn off the post-processing step that makes voxels below -800 HU background (segment "
                        "--keep-liver-in-air): what does the step change?")
    p.add_argument("--tta", action="store_true",
                   help="left-right flip test-time augmentation (segment --tta): does it pay for its time?")
    p.add_argument("--label-map", metavar="JSON", default=None,
                   help="remap the label maps' values as train does, e.g. '{\"255\": 1}' (unlisted values -> 0)")
    p.add_argument("--allow-non-hu", action="store_true",
                   help="read CTs whose values do not look like Hounsfield units (as train --allow-non-hu)")
    p.add_argument("--no-body-size-scaling", action="store_true",
                   help="as segment's: give child-sized bodies to the network as they are (the spacing-30..-60 rows "
                        "are where it acts, on bodies it can measure: under 0.75 x the package's smallest training "
                        "body)")
    p.add_argument("--regrid-degrees", type=float, default=REGRID_DEGREES, metavar="DEG",
                   help=f"how far the regrid rows turn the grid about left-right (default {REGRID_DEGREES:g}; "
                        f"0 < DEG <= 45): what a smaller or larger obliquity costs (segment runs the network on a "
                        f"patient-aligned grid above 5 degrees). Not with --store-in-package")
    p.add_argument("--quiet", action="store_true", help="no per-row progress lines")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The benchmark; a user error is one ``error:`` line and exit 2 (:func:`LiverTumorSegLib.cli.run_script`,
    as the other scripts), worded for the command line."""
    from LiverTumorSegLib.cli import run_script

    return run_script(lambda: run(parse_args(argv)))


def run(args: argparse.Namespace) -> int:
    from LiverTumorSegLib.inference.api import make_engine
    from LiverTumorSegLib.inference.postprocess import PostprocessingOptions, with_min_lesion_probability
    from LiverTumorSegLib.package import (load_model_package, package_lesion_probability_statistic,
                                          package_min_lesion_probability, read_package_metadata, resolve_model)

    code = code_version()  # the code this run imports, before anything can be edited
    # each once (a repeat stored its rows twice, and `models` counted its cases twice), in the order given
    perturbations = list(dict.fromkeys(p.strip() for p in args.perturbations.split(",") if p.strip()))
    if not perturbations:
        raise InputError(f"--perturbations names none; choose from {', '.join(PERTURBATIONS)}.")
    unknown = [p for p in perturbations if p not in PERTURBATIONS]
    if unknown:
        raise InputError(f"Unknown perturbation(s) {unknown}; choose from {', '.join(PERTURBATIONS)}.")
    if args.max_slices:  # the cut rows' reference: compared with the N-slice baseline, a cut looked like a loss
        for name in list(perturbations):
            if name in REFERENCE_OF and REFERENCE_OF[name] not in perturbations:
                perturbations.insert(perturbations.index(name), REFERENCE_OF[name])
    if args.max_slices < 0:
        raise InputError("--max-slices must be >= 0 (0 = all slices).")
    if args.replace_stored and not args.store_in_package:  # stored nothing and replaced nothing, exit 0
        raise InputError("--replace-stored says what --store-in-package may replace, and without "
                         "--store-in-package nothing is stored; add --store-in-package, or leave --replace-stored "
                         "out.")
    if not 0.0 < args.regrid_degrees <= 45.0:
        raise InputError(f"--regrid-degrees must be above 0 and at most 45, got {args.regrid_degrees:g}.")
    if args.store_in_package and args.regrid_degrees != REGRID_DEGREES:
        raise InputError(f"--store-in-package stores the table of the default rows; run it without --regrid-degrees "
                         f"(the stored regrid rows are turned {REGRID_DEGREES:g} degrees).")
    global REGRID_DEGREES_USED
    REGRID_DEGREES_USED = float(args.regrid_degrees)
    changed_post = args.min_lesion_probability is not None or args.keep_liver_in_air
    if args.store_in_package and (args.tta or args.no_postprocessing or changed_post or args.no_body_size_scaling):
        raise InputError("--store-in-package stores the table of the default inference; run it without --tta, "
                         "--no-postprocessing, --min-lesion-probability, --keep-liver-in-air and "
                         "--no-body-size-scaling.")
    if changed_post and args.no_postprocessing:
        raise InputError("--min-lesion-probability and --keep-liver-in-air set post-processing steps; "
                         "--no-postprocessing turns them all off. Give one or the other.")
    paths = [resolve_model(p) for p in args.packages]
    say = (lambda text: None) if args.quiet else (lambda text: print(text, file=sys.stderr, flush=True))
    found = find_cases(args.data, say)
    check_json_output(args.json, args.overwrite, args.data, paths, found)
    from LiverTumorSegLib.io.labels import parse_label_map_option

    label_map = parse_label_map_option(args.label_map) if args.label_map else None
    # a CT's voxel digest is compared only with a package's recorded ones: none recorded, none taken
    digests = any(training_digests(read_package_metadata(path)) for path in paths)
    cases = [load_bench_case(c, args.seed, args.max_slices or None, label_map=label_map,
                             allow_non_hu=args.allow_non_hu, digest=digests) for c in found]
    say(f"{len(cases)} cases from {args.data}: " + ", ".join(c.case_id for c in cases))
    if args.store_in_package and not args.replace_stored:  # refuse now, not after the whole run
        planned = planned_pairs(cases, perturbations, args.seed)
        for path in paths:
            check_table_kept(path, read_package_metadata(path), planned)
    post = PostprocessingOptions.disabled() if args.no_postprocessing else None
    if changed_post:
        from LiverTumorSegLib.inference.options import SegmentationOptions
        changes = {"air_to_background": not args.keep_liver_in_air}
        if args.min_lesion_probability is not None:
            changes["min_lesion_probability"] = args.min_lesion_probability
        # checked as segment checks it (0..1, a number)
        post = SegmentationOptions(postprocessing=PostprocessingOptions(**changes)).postprocessing
    results = []
    for given, path in zip(args.packages, paths):
        package = load_model_package(path)
        engine = make_engine(package, args.device, threads=args.threads, tta_flip=args.tta,
                             precision=args.precision)
        trained_on, trained_digests = training_names(package.metadata), training_digests(package.metadata)
        say(f"{package.name} ({path}):")
        refused = []  # type: List[Tuple[str, str, str]]
        rows = evaluate(engine, cases, perturbations, args.seed, post, trained_on, say, refused,
                        trained_digests=trained_digests, body_size_scaling=not args.no_body_size_scaling)
        if refused and args.quiet:  # said row by row only without --quiet: a missing row looked like a skip
            print(f"warning: segment refused {len(refused)} perturbed volume(s), left out of the table and its means: "
                  + "; ".join(f"{case} {name} ({reason[:120]})" for case, name, reason in refused[:5])
                  + (" ..." if len(refused) > 5 else ""), file=sys.stderr)
        if refused and args.store_in_package and not args.replace_stored:  # the stored table would lose them
            raise InputError(f"segment refused {len(refused)} perturbed volume(s) (e.g. {refused[0][0]} "
                             f"{refused[0][1]}: {refused[0][2][:160]}), so the package's table would lack those "
                             f"rows; nothing was stored. Pass --replace-stored to store the table without them.")
        # what ran, not what was asked: --device cuda without CUDA, or auto, runs on the CPU; --precision auto
        # runs bf16 on a CPU with native bf16 and fp32 elsewhere, and the two give other Dice in the 3rd decimal
        used = {"device_used": engine.device.type, "precision_used": engine.precision_used}
        # "given": the argument as typed (e.g. "default"), which robustness_compare.py's --base/--candidate match
        # the threshold each package ran at: the one given, else the package's own (0.65 where it records none)
        ran = None if args.no_postprocessing else with_min_lesion_probability(
            post or PostprocessingOptions(), package_min_lesion_probability(package.metadata),
            package_lesion_probability_statistic(package.metadata))
        threshold = None if ran is None else ran.min_lesion_probability
        statistic = None if ran is None else ran.lesion_probability_statistic
        results.append({"package": str(path), "name": package.name, "given": str(given), "rows": rows,
                        "weights_sha256": package.sha256, "min_lesion_probability_used": threshold,
                        "lesion_probability_statistic_used": statistic, **used})
        print(f"\n{package.name} ({path}) - liver Dice / synthetic-tumor Dice"
              f"{' (raw network output)' if args.no_postprocessing else ''}"
              f"{'' if threshold is None else f' (min lesion probability {threshold:g}'}"
              f"{'' if threshold is None else (')' if statistic == 'mean' else f' of the {statistic})')}"
              f"{' (left-right flip test-time augmentation)' if args.tta else ''}"
              f"{' (air step off: --keep-liver-in-air)' if args.keep_liver_in_air else ''}"
              f"{' (no body-size scaling)' if args.no_body_size_scaling else ''}:")
        print(summary_table(rows, perturbations))
        trained = sorted({r["case"] for r in rows if r["training_case"]})
        validated = validation_only_names(package.metadata, {c.case_id: c.patient_id for c in cases})
        if trained:
            how = ("matched by case name and by the voxel digests the package records, so a copy under another "
                   "name or in another file format is caught too (not a resampled, cropped or edited one)"
                   if trained_digests else "matched by case name: this package records no voxel digests (trained "
                   "before 25 Nov 2026), so a copy under another name is not caught")
            derived = [f"{name} (a crop of {DERIVED_FROM[name]})" for name in trained if name in DERIVED_FROM]
            how += f"; known crops of a training case: {', '.join(derived)}" if derived else ""
            print(f"  cases this package was trained or validated on: {', '.join(trained)} (invariance, not "
                  f"generalization; {how})")
        for name in sorted(set(trained) & validated):
            print(f"  {name} was only its validation case (not trained on, but it chose the best epoch; a "
                  f"leave-one-patient-out fold's held-out patient)")
    print("\n" + NOTE)
    if args.json:
        from LiverTumorSegLib.fileutil import atomic_output

        document = {"data": str(args.data), "perturbations": {k: perturbation_description(k) for k in perturbations},
                    "seed": args.seed, "max_slices": args.max_slices, "postprocessing": not args.no_postprocessing,
                    "min_lesion_probability": args.min_lesion_probability,
                    "keep_liver_in_air": bool(args.keep_liver_in_air),
                    "label_map": args.label_map, "allow_non_hu": bool(args.allow_non_hu),
                    "regrid_degrees": float(args.regrid_degrees),
                    "tta": bool(args.tta), "precision": args.precision,
                    "body_size_scaling": not args.no_body_size_scaling,
                    "note": NOTE, "packages": results}
        with atomic_output(args.json, overwrite=args.overwrite) as tmp:
            Path(tmp).write_text(json.dumps(document, indent=1), encoding="utf-8")
    if args.store_in_package:
        if code.get("git_modified"):  # stored without a word before; models now flags such a table
            print(f"warning: {ROOT} has uncommitted changes to its code ({', '.join(CODE_PATHS)}): the stored table "
                  f"records commit {str(code.get('git_commit'))[:12]} with git_modified true, and 'livertumorseg "
                  f"models' says it was measured with changed code. Commit the changes and run again for a table of "
                  f"a commit.",
                  file=sys.stderr)
        for result in results:
            settings = run_settings(args, cases, perturbations, result["weights_sha256"], code,
                                    result["min_lesion_probability_used"],
                                    result["lesion_probability_statistic_used"])
            settings.update({k: result[k] for k in ("device_used", "precision_used")})
            store_robustness(result["package"], result["rows"], settings, args.replace_stored)
            print(f"stored {len(result['rows'])} robustness rows in {result['package']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())  # main enters through LiverTumorSegLib.cli.run_script
