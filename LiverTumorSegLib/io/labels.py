"""Label maps: reading (plain images, Slicer ``.seg.nrrd``, DICOM SEG), checking their values (0 background,
1 liver, 2 tumor) and matching their grid to the reference CT."""
import json
import logging
import re
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np

from ..errors import InputError, LabelError
from ..volume import CTVolume, ImageGeometry, meta_for_another_grid
from .formats import _LABEL_MAP_FORMATS_TEXT, _SUPPORTED_TEXT, PathLike
from .reading import read_volume

log = logging.getLogger(__name__)

LABEL_VALUES = (0, 1, 2)
GEOMETRY_TOLERANCE = 1e-3  # mm for spacing and origin, unitless for direction cosines

def _remap_advice(values: Sequence[int], holds_liver_or_tumor: bool = True) -> str:
    """How to fix a label map holding ``values`` (its values outside 0, 1, 2, sorted): measure and followup have no
    --label-map (the advice said only 'remap them first', without how), with the file's own value in the example
    (it showed {255: 1} for every value, 3 too). More than two such values are either lesions numbered one by one
    (Slicer's export of Liver, Lesion 1, Lesion 2, ...) or a multi-organ labelling, whose 1 and 2 are other organs:
    both readings are given (the example mapped TotalSegmentator's 3, the left kidney, to tumor and left its 1, the
    spleen, and 2, the right kidney, as liver and tumor: the measure audit), and so are they for one or two values
    other than 255 (TotalSegmentator's liver alone, 0/5, was advised {5: 2}: the whole liver one lesion). Two
    values in a map without 1 and 2 (``holds_liver_or_tumor`` False) are read as liver and tumor scaled (0/127/254,
    0/127/255): the lower to 1, the higher to 2, the other way round said (it was advised {127: 2, 254: 2}, the
    whole liver tumor), as evaluate's and train's --label-map advice reads them."""
    multi_organ = ("If it is a multi-organ label map, whose 1 and 2 are other organs too, set the value that means "
                   "liver to 1 and every other value, 1 and 2 included, to 0 (TotalSegmentator's, liver = 5: "
                   "sitk.BinaryThreshold(image, 5, 5, 1, 0)), and its tumor value, where it has one, to 2. evaluate "
                   "and train can map them with --label-map instead.")
    if len(values) > 2:
        lesions = "{" + ", ".join(f"{int(v)}: 2" for v in values[:12]) + "}" + (  # Python as written: no '...'
            f" and the other {len(values) - 12} values alike" if len(values) > 12 else "")
        return (f"it holds more values than liver and tumor. If 1 is the liver and the others are lesions numbered "
                f"one by one (as Slicer's 'Export to labelmap' of Liver, Lesion 1, Lesion 2, ... writes them), map "
                f"them all to 2 (SimpleITK: sitk.ChangeLabel(image, changeMap={lesions})). {multi_organ}")
    if len(values) == 2 and not holds_liver_or_tumor:
        low, high = (int(v) for v in values)
        return (f"if {low} is liver and {high} tumor (a liver/tumor map stored with other values), remap them "
                f"first: e.g. in 3D Slicer, or with SimpleITK: sitk.ChangeLabel(image, changeMap={{{low}: 1, "
                f"{high}: 2}}) (the other way round, {{{low}: 2, {high}: 1}}, if {high} is the liver). {multi_organ}")
    # 0/255 is a mask of the liver; another value more often a lesion class (Liver with Lesion 1 and 2 exported by
    # Slicer: 3 and 4, both given, where the example showed {3: 2} alone), or a multi-organ map's liver
    # (TotalSegmentator's liver alone is 0/5, with two organs 1, 3, 5: their example made the liver a lesion)
    example = "{" + ", ".join(f"{int(v)}: {1 if int(v) == 255 else 2}" for v in values) + "}"
    if all(int(v) == 255 for v in values):
        return (f"remap them first (e.g. in 3D Slicer, or with SimpleITK: sitk.ChangeLabel(image, "
                f"changeMap={example}), each value mapped to the label it stands for); evaluate and train can map "
                f"them with --label-map instead.")
    return (f"remap them first, each value to the label it stands for: lesion classes beside a liver of 1 to 2, a "
            f"mask's 255 to 1 (e.g. in 3D Slicer, or with SimpleITK: sitk.ChangeLabel(image, changeMap={example})). "
            f"{multi_organ}")


def describe_grid_mismatch(label: CTVolume, reference: CTVolume, tolerance: float,
                           compare_shape: bool = True) -> List[str]:
    """How ``label``'s grid differs from ``reference``'s (size, spacing, origin, direction), one phrase each;
    empty when they match within ``tolerance`` (mm, and cosines)."""
    problems = []
    lx = tuple(reversed(label.shape_zyx))
    rx = tuple(reversed(reference.shape_zyx))
    if compare_shape and lx != rx:
        problems.append(f"size (x, y, z) {lx} vs the reference's {rx} voxels")
    lg, rg = label.geometry, reference.geometry
    d_spacing = np.abs(np.subtract(lg.spacing, rg.spacing)).max()
    if d_spacing > tolerance:
        problems.append(f"spacing (x, y, z) {_fmt(lg.spacing)} mm vs the reference's {_fmt(rg.spacing)} mm")
    d_origin = float(np.abs(np.subtract(lg.origin, rg.origin)).max())
    if d_origin > tolerance:
        problems.append(f"origin (LPS) {_fmt(lg.origin)} vs the reference's {_fmt(rg.origin)} (off by up to "
                        f"{d_origin:.4g} mm)")
    d_dir = float(np.abs(np.subtract(lg.direction, rg.direction)).max())
    if d_dir > tolerance:
        problems.append(f"direction {_fmt(lg.direction)} vs the reference's {_fmt(rg.direction)} (cosines differ "
                        f"by up to {d_dir:.3g})")
    return problems


def _fmt(values: Iterable[float]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


REORIENTED_ONTO_REFERENCE_NOTE = "stored in another axis order than its reference; reoriented onto it"
"""The note :func:`onto_reference_grid` adds by default to a volume it reoriented onto its reference (a label map
reoriented onto its CT gets :data:`REORIENTED_NOTE`)."""


def onto_reference_grid(volume: CTVolume, reference: CTVolume, tolerance: float,
                        note: str = REORIENTED_ONTO_REFERENCE_NOTE) -> Optional[CTVolume]:
    """``volume`` on the reference's grid: its voxels as they are when the grids match (within ``tolerance``),
    reoriented when it is the same grid stored in another axis order (e.g. LPS vs RAS, a flipped or permuted file),
    None when the grids differ; either way with the reference's geometry (:func:`_with_reference_geometry`). Any
    voxel type (labels, a CT, a probability map)."""
    if not describe_grid_mismatch(volume, reference, tolerance):
        return _with_reference_geometry(volume, reference)
    return _reoriented_onto(volume, reference, tolerance, note)


def _with_reference_geometry(volume: CTVolume, reference: CTVolume) -> CTVolume:
    """``volume`` (its array, not copied) with ``reference``'s geometry, for a grid that matches it within
    the tolerance: a label map stored in the CT's own axis order kept its own header (a NIfTI's float32 spacing,
    2.174445390701294 for the CT's 2.174445298755283 mm), where one stored in another axis order got the CT's, so
    the same label map carried two geometries by how it was stored (the geometry property test, seed 60)."""
    if volume.geometry == reference.geometry:
        return volume
    return CTVolume(array=volume.array, geometry=reference.geometry, source=volume.source, meta=dict(volume.meta))


def place_on_reference_grid(volume: CTVolume, reference: CTVolume, tolerance: float,
                            note: str = "placed into the reference grid") -> Optional[CTVolume]:
    """``volume`` on the reference's grid as :func:`onto_reference_grid` gives it, or, when its grid is a part of
    the reference's (the same voxel centres, in any axis order, a whole-voxel offset, inside it: a
    segmentation cropped to its segments' extent, a DICOM SEG that omits empty frames), padded with zeros
    (``note`` added to its warnings); None for any other grid. ``tolerance``: mm (spacing, the offset) and
    direction cosines. Any voxel type."""
    if not describe_grid_mismatch(volume, reference, tolerance):
        return _with_reference_geometry(volume, reference)
    return _reoriented_onto(volume, reference, tolerance, REORIENTED_NOTE, part_note=note)


def _reoriented_onto(volume: CTVolume, reference: CTVolume, tolerance: float, whole_note: str,
                     part_note: Optional[str] = None) -> Optional[CTVolume]:
    """``volume`` reoriented onto ``reference``'s grid when both are one grid in another axis order
    (``whole_note``), or, with ``part_note``, padded into it when ``volume``'s grid is a part of it; else None.
    The grids are compared before any voxel moves, and the voxels are copied once."""
    from ..orientation import plan_reorientation

    # laid out along the reference's own index axes, not both along L, P, S: a grid turned exactly 45 degrees ties
    # there, and the tie broke differently for the CT and a label map stored with two axes swapped (refused)
    vol_reo = plan_reorientation(volume.geometry, volume.shape_zyx, reference.geometry.direction_matrix)
    reference_shape = tuple(reference.shape_zyx)
    grid = np.zeros((1, 1, 1), np.uint8)  # geometries only: describe_grid_mismatch reads no voxel here
    same_grid = tuple(vol_reo.canonical_shape) == reference_shape and not describe_grid_mismatch(
        CTVolume(array=grid, geometry=vol_reo.canonical_geometry, source=volume.source),
        CTVolume(array=grid, geometry=reference.geometry, source=reference.source), tolerance,
        compare_shape=False)
    view = vol_reo.canonical_view(volume.array)
    if same_grid:
        array, note = np.ascontiguousarray(view), whole_note
    else:
        start = _whole_voxel_offset(vol_reo.canonical_geometry, reference.geometry, tolerance) \
            if part_note is not None else None
        if start is None:
            return None
        stop = start + np.asarray(view.shape)
        if (start < 0).any() or (stop > np.asarray(reference_shape)).any():
            return None
        array = np.zeros(reference_shape, dtype=volume.array.dtype)
        array[start[0]:stop[0], start[1]:stop[1], start[2]:stop[2]] = view
        note = part_note
    out = CTVolume(array=array, geometry=reference.geometry, source=volume.source,
                   meta=meta_for_another_grid(volume.meta))
    out.meta["warnings"] = list(volume.meta.get("warnings", [])) + [note]
    return out


def _whole_voxel_offset(part: ImageGeometry, whole: ImageGeometry, tolerance: float) -> Optional[np.ndarray]:
    """``(z, y, x)`` index in ``whole`` of ``part``'s first voxel, when both grids share spacing and direction and
    ``part``'s origin lies on a voxel centre of ``whole`` (within ``tolerance`` mm); else None."""
    if np.abs(np.subtract(part.spacing, whole.spacing)).max() > tolerance or \
            np.abs(np.subtract(part.direction, whole.direction)).max() > tolerance:
        return None
    direction = np.asarray(whole.direction, dtype=np.float64).reshape(3, 3)
    ijk = np.linalg.solve(direction * np.asarray(whole.spacing, dtype=np.float64)[None, :],
                          np.subtract(part.origin, whole.origin))
    rounded = np.rint(ijk)
    if np.abs((ijk - rounded) * np.asarray(whole.spacing)).max() > tolerance:
        return None
    return rounded[::-1].astype(int)


LABEL_HU_RANGE = (-50.0, 300.0)
"""HU in which liver and liver-tumor voxels lie (fatty liver to contrast-enhanced tumor): a label voxel outside it
lies in fat, air, lung or bone. Measured on 4 real CTs with liver labels (26 Nov 2026): 0.1 % to 6 % of the
labelled voxels outside it as aligned; 14 % to 55 % with the label mirrored in x or y or transposed."""

LABEL_MISFIT_REFUSED = 0.10
"""Fraction of labelled voxels outside :data:`LABEL_HU_RANGE` above which a label placed by a header that
disagrees with the CT's axis order is refused, when its voxels in the CT's own order fit at least 3 times better."""


def label_misfit(ct_zyx: np.ndarray, labels_zyx: np.ndarray) -> Optional[float]:
    """The fraction of the liver and tumor voxels of ``labels_zyx`` (``(z, y, x)``, 0/1/2) whose CT value in
    ``ct_zyx`` (same shape, HU) lies outside :data:`LABEL_HU_RANGE`; None when the label has no such voxel."""
    mask = np.asarray(labels_zyx) > 0
    count = int(np.count_nonzero(mask))
    if not count:
        return None
    values = np.asarray(ct_zyx)[mask]
    low, high = LABEL_HU_RANGE
    return float(np.count_nonzero((values < low) | (values > high))) / count



def header_misfits(ct_zyx: np.ndarray, placed_zyx: np.ndarray, stored_zyx: Callable[[], np.ndarray]
                   ) -> Optional[Tuple[float, float]]:
    """``(misfit placed, misfit as stored)`` (:func:`label_misfit`) when a label map placed on its CT by a header
    that stores the CT's grid in another axis order (``placed_zyx``, on the CT ``ct_zyx``'s layout, HU) fits it
    badly (:data:`LABEL_MISFIT_REFUSED` or more of its voxels outside :data:`LABEL_HU_RANGE`) while its voxels in the
    CT's own order (``stored_zyx()``, called only then: the file's voxels, same shape as the CT) fit at least 3 times
    better: a header flipped by a conversion tool while the voxels were drawn on the CT. Else None, also when the
    stored voxels have another shape than the CT (a transposed grid: the CT's voxel order cannot be meant)."""
    placed = label_misfit(ct_zyx, placed_zyx)
    if placed is None or placed < LABEL_MISFIT_REFUSED:
        return None
    stored = np.asarray(stored_zyx())
    if stored.shape != np.shape(ct_zyx):
        return None
    as_stored = label_misfit(ct_zyx, stored)
    if as_stored is None or as_stored * 3 > placed:
        return None
    return placed, as_stored


MIRROR_AXIS_WORDS = ("z (the slice order reversed)", "y (front and back as stored)", "x (left and right as stored)")
"""How a refusal names the ``(z, y, x)`` axis along which a label's voxels fit their CT mirrored."""


def mirrored_misfits(ct_zyx: np.ndarray, labels_zyx: np.ndarray) -> Optional[Tuple[float, float, int]]:
    """``(misfit as given, misfit mirrored, axis)`` (:func:`label_misfit`; ``axis`` 0, 1 or 2 of ``(z, y, x)``) when
    a label map on its CT's own grid (same shape, HU) fits it badly (:data:`LABEL_MISFIT_REFUSED` or more of its
    voxels outside :data:`LABEL_HU_RANGE`) while its voxels mirrored along one axis fit at least 3 times better: voxels
    flipped against the CT by a conversion (slice order reversed) or a script (``arr[::-1]``) under the CT's own
    header, which no grid check sees. The best such axis; None otherwise (a label that fits, or one no mirror
    mends)."""
    given = label_misfit(ct_zyx, labels_zyx)
    if given is None or given < LABEL_MISFIT_REFUSED:
        return None
    labels = np.asarray(labels_zyx)
    mirrored = [label_misfit(ct_zyx, np.flip(labels, axis)) for axis in range(labels.ndim)]
    axis = int(np.argmin([1.0 if m is None else m for m in mirrored]))
    best = mirrored[axis]
    if best is None or best * 3 > given:
        return None
    return given, best, axis


REORIENTED_NOTE = "label map stored in another axis order; reoriented to the CT"
"""The note :func:`label_on_reference_grid` adds to a label map it reoriented onto its CT."""


def reoriented_label_fit_warning(path: PathLike, ct: CTVolume, placed: CTVolume) -> Optional[str]:
    """A warning when the label map at ``path``, read onto the CT ``ct`` (in HU) as ``placed`` by a header that
    stores the CT's grid in another axis order (:data:`REORIENTED_NOTE`), fits the CT only in the CT's own voxel
    order (:func:`header_misfits`): ``measure`` and ``followup`` measured such a label where its header put it,
    mirrored, with only the note that it was reoriented (``train`` refuses it). None otherwise (the file is read a
    second time only for a reoriented label that fits badly)."""
    if REORIENTED_NOTE not in placed.meta.get("warnings", []):
        return None
    ct_zyx = np.asarray(ct.array)

    def stored() -> np.ndarray:
        return np.asarray(read_label_map(path).array)

    try:
        misfits = header_misfits(ct_zyx, placed.array, stored)
    except (ValueError, InputError):  # stored in another shape (transposed): the CT's voxel order cannot be meant
        return None
    if misfits is None:
        return None
    low, high = LABEL_HU_RANGE
    return (f"label map '{path}' does not fit its CT where its header places it: its header stores the CT's grid in "
            f"another axis order (mirrored or transposed), and placed so {misfits[0]:.0%} of its liver and tumor "
            f"voxels lie outside {low:g}..{high:g} HU (fat, air or bone), while read in the CT's own voxel order only "
            f"{misfits[1]:.0%} do. Its header is probably wrong (flipped by a conversion): the lesions' positions, "
            f"sizes and HU here are those of a mirrored label. Give the label map the CT's header (e.g. nibabel: "
            f"Nifti1Image(label voxels, ct.affine, ct.header)) and run again.")


def mirrored_label_fit_warning(path: PathLike, ct: CTVolume, placed: CTVolume) -> Optional[str]:
    """A warning when the label map at ``path``, on the CT ``ct``'s own grid (``placed``; CT in HU), fits the CT badly
    while its voxels mirrored along one axis fit it (:func:`mirrored_misfits`): voxels flipped against the CT under
    the CT's own header (slice order reversed by a conversion, ``arr[::-1]`` in a script), which no grid check sees.
    ``train`` refuses such a label; ``measure`` and ``followup`` measured it mirrored without a word (stop 109's
    note). None otherwise."""
    misfits = mirrored_misfits(np.asarray(ct.array), np.asarray(placed.array))
    if misfits is None:
        return None
    given, mirrored, axis = misfits
    low, high = LABEL_HU_RANGE
    return (f"label map '{path}' does not fit its CT: {given:.0%} of its liver and tumor voxels lie outside "
            f"{low:g}..{high:g} HU (fat, air or bone), while mirrored along {MIRROR_AXIS_WORDS[axis]} only "
            f"{mirrored:.0%} would: its voxels are probably flipped against the CT's (by a conversion or a script), "
            f"and the lesions' positions and HU here are those of a mirrored label. Flip the label's voxels back along "
            f"that axis, keeping the CT's header, and run again.")


def label_fit_warning(path: PathLike, ct: CTVolume, placed: CTVolume) -> Optional[str]:
    """The warning of :func:`reoriented_label_fit_warning` for a label map its header reoriented onto the CT, else
    that of :func:`mirrored_label_fit_warning` (``ct`` in HU; ``placed``: the label map read onto it); None when
    the label fits, or no mirror mends it."""
    if REORIENTED_NOTE in placed.meta.get("warnings", []):
        return reoriented_label_fit_warning(path, ct, placed)
    return mirrored_label_fit_warning(path, ct, placed)


def label_on_reference_grid(label: CTVolume, reference: CTVolume, tolerance: float) -> CTVolume:
    """Return ``label`` on the reference's grid (:func:`onto_reference_grid`: itself, or reoriented when it is the
    same grid in another axis order), else raise LabelError naming the differences."""
    matched = onto_reference_grid(label, reference, tolerance, REORIENTED_NOTE)
    if matched is not None:
        return matched
    problems = describe_grid_mismatch(label, reference, tolerance)
    advice = header_rounding_advice(label, reference, "label map") or reversed_axes_advice(label, reference) or \
        default_header_advice(label, reference) or (
        " Use the label map made for this image (same grid), or resample it onto the reference grid first.")
    raise LabelError(f"Label map '{label.source}' does not match its reference '{reference.source}': "
                     + "; ".join(problems) + "." + advice)


def reversed_axes_advice(label: CTVolume, reference: CTVolume) -> str:
    """Advice (a sentence with a leading space) when ``label``'s size (x, y, z) is the reference's in reverse order,
    and not the same size: a ``(z, y, x)`` array (as SimpleITK's GetArrayFromImage gives) saved as ``(x, y, z)``
    voxels with the image's affine (nibabel), or the other way round. Resampling, which the general advice says,
    cannot mend such a file (a real 512 x 512 x 75 label saved so reads 75 x 512 x 512); '' otherwise."""
    size_zyx = tuple(label.shape_zyx)
    if size_zyx == tuple(reference.shape_zyx) or size_zyx != tuple(reference.shape_zyx)[::-1]:
        return ""
    return (" Its size is the reference's in reverse order: its voxel array was probably saved with its axes reversed "
            "(a (z, y, x) array, as SimpleITK's GetArrayFromImage gives, written by a tool that takes (x, y, z), as "
            "nibabel does, or the other way round). Do not resample it: reverse its axes (array.transpose(2, 1, 0)) "
            "and save it with the image's header (nibabel: nib.Nifti1Image(array, image.affine, image.header); "
            "SimpleITK: out = sitk.GetImageFromArray(array); out.CopyInformation(image)).")


HEADER_ROUNDING_VOXELS = 0.05
"""Largest displacement, as a fraction of the reference's smallest voxel size, between where two grids of the same
size put any voxel, for their difference to be called header rounding rather than another grid."""


def default_header_advice(label: CTVolume, reference: CTVolume) -> str:
    """Advice (a sentence with a leading space) when ``label`` has the reference's size but a header no scan has: an
    identity direction with the origin at 0 and 1 mm voxels in every axis the reference's are not (numpy saved with
    ``nib.Nifti1Image(mask, np.eye(4))``, ``sitk.GetImageFromArray`` without ``CopyInformation``): its voxels were
    most likely made on this image, and resampling them, which the general advice says, would move them to where that
    default header puts them (nowhere near the scan: an empty label); '' otherwise (the data audit)."""
    if tuple(label.shape_zyx) != tuple(reference.shape_zyx):
        return ""
    geometry = label.geometry
    # an identity affine, read as LPS: np.eye(4) in NIfTI (RAS) is diag(-1, -1, 1) here, in SimpleITK the identity
    axes = np.abs(geometry.direction_matrix)
    identity = np.allclose(axes, np.eye(3)) and np.allclose(geometry.origin, 0.0)
    unit = np.allclose(geometry.spacing, 1.0) and not np.allclose(reference.geometry.spacing, 1.0)
    if not (identity and (unit or not np.allclose(reference.geometry.origin, 0.0))):
        return ""
    return (" The label map has the image's size and a default header (origin 0, identity direction"
            + (", 1 mm voxels" if unit else "") + "), as numpy-made masks saved without the image's header have: if "
            "it was made on this image, do not resample it (its voxels would land where that header puts them); give "
            "it the image's header (nibabel: nib.Nifti1Image(its voxels, image.affine, image.header); SimpleITK: "
            "its_image.CopyInformation(image)), after checking that its axes are in the image's order.")


def header_rounding_advice(volume: CTVolume, reference: CTVolume, what: str) -> str:
    """Advice (a sentence with a leading space) when ``volume``'s grid has the reference's size and puts every voxel
    within :data:`HEADER_ROUNDING_VOXELS` of a voxel of where the reference puts it (the eight corners checked, in
    LPS mm): their headers differ by rounding (another conversion tool), and resampling, which the general advice
    says, would only blur ``what`` (e.g. "label map"); '' otherwise."""
    if tuple(volume.shape_zyx) != tuple(reference.shape_zyx):
        return ""
    nz, ny, nx = (n - 1 for n in reference.shape_zyx)
    corners = [(x, y, z) for x in (0, nx) for y in (0, ny) for z in (0, nz)]
    moved = max(float(np.linalg.norm(volume.geometry.index_to_lps(c) - reference.geometry.index_to_lps(c)))
                for c in corners)
    if moved > HEADER_ROUNDING_VOXELS * float(min(reference.geometry.spacing)):
        return ""
    return (f" No voxel lies more than {moved:.3g} mm from where the reference puts it (under "
            f"{HEADER_ROUNDING_VOXELS:.0%} of a voxel): the headers differ by rounding (e.g. another conversion tool), "
            f"so do not resample the {what}: if it was made on this image, give it the image's header (nibabel: "
            f"nib.Nifti1Image(its voxels, image.affine, image.header); SimpleITK: its_image.CopyInformation(image)).")


_COUNT_CHUNK_VOXELS = 1 << 22  # 4 M voxels: 32 MiB of intp indices per bincount call


def label_value_counts(array: np.ndarray) -> Dict[int, int]:
    """``{value: voxel count}`` of an integer-valued array (any shape; integer, bool or integral float dtype),
    in bounded memory: ``np.unique`` would sort the whole volume with int64 indices and ``np.isin`` made
    temporaries of 15x a uint8 volume (2.2 GiB for a 512 x 512 x 600 label map)."""
    a = np.asarray(array)
    if a.size == 0:
        return {}
    lo, hi = int(a.min()), int(a.max())
    index_limit = np.iinfo(np.intp).max // 2  # values past it (a float map scaled by a damaged header's scl_inter of
    if hi - lo > 1 << 16 or max(abs(lo), abs(hi)) > index_limit:  # 1e30) overflowed the shift: an internal error
        # a wide range or huge values (not a label map): sort after all
        values, counts = np.unique(a, return_counts=True)
        return {int(v): int(c) for v, c in zip(values.tolist(), counts.tolist())}
    flat = a.reshape(-1)  # a view for the contiguous arrays the readers return
    counts = np.zeros(hi - lo + 1, dtype=np.int64)
    for start in range(0, flat.size, _COUNT_CHUNK_VOXELS):
        chunk = flat[start:start + _COUNT_CHUNK_VOXELS].astype(np.intp)
        if lo:
            chunk -= lo
        counts += np.bincount(chunk, minlength=counts.size)
    return {int(v) + lo: int(counts[v]) for v in np.flatnonzero(counts)}


NEAR_INTEGER_TOLERANCE = 1e-3
"""A float label value this close to an integer is that integer (labels saved as float32 by a scaling step)."""


def near_integers_rounded(array: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(rounded, off)`` of a float array: its values rounded to the nearest integer, and where a value lies
    further than :data:`NEAR_INTEGER_TOLERANCE` from it (True for NaN and inf): the one rule by which the label
    map reader (:func:`check_label_values`) and writer (``writers.write_label_map``) read floats as labels."""
    rounded = np.rint(array)
    return rounded, ~(np.abs(array - rounded) <= NEAR_INTEGER_TOLERANCE)


def require_label_values(array: np.ndarray, source: str = "label map") -> None:
    """Raise LabelError (naming the values) unless ``array`` holds only 0, 1 and 2 (bool, integers, or floats that
    are those integers). Quick for the uint8 maps ``segment`` makes: one pass (their maximum) over the volume."""
    array = np.asarray(array)
    kind = array.dtype.kind
    if array.size and kind != "b" and (array.max() > 2 or (kind != "u" and array.min() < 0)
                                       or (kind == "f" and np.any(array != np.round(array)))):
        check_label_values(array, source)


def as_label_array(array: np.ndarray, source: str = "label map") -> np.ndarray:
    """``array`` as a uint8 0/1/2 map after :func:`require_label_values` (itself when it already is uint8):
    floats within :data:`NEAR_INTEGER_TOLERANCE` of 1 and 2 are rounded, not tested as they are (1.9999 >= 1 but
    != 2 made a tumor voxel liver, and uint8 casting truncated it to 1)."""
    array = np.asarray(array)
    if array.dtype.kind == "f":  # one full check that also rounds (the quick check would hand over to it anyway)
        return check_label_values(array, source)
    require_label_values(array, source)
    return array if array.dtype == np.uint8 else array.astype(np.uint8)


def check_label_values(array: np.ndarray, source: str = "label map",
                       allowed_values: Sequence[int] = LABEL_VALUES) -> np.ndarray:
    """Return ``array`` as uint8 after checking it holds only integers in ``allowed_values`` (floats within
    :data:`NEAR_INTEGER_TOLERANCE` of an integer are rounded to it). Any shape.

    Raises LabelError naming the offending values (at most 10) and the allowed set.
    """
    allowed = sorted(int(v) for v in allowed_values)
    if allowed and (allowed[0] < 0 or allowed[-1] > 255):
        raise ValueError("allowed label values must lie in 0..255 (uint8)")
    if len(allowed) > 5 and allowed == list(range(allowed[0], allowed[-1] + 1)):
        # any label value (mapped to 0/1/2 afterwards): named as a range, not as 256 numbers
        allowed_txt = f"{allowed[0]}..{allowed[-1]} (0 background, 1 liver, 2 tumor, or values --label-map maps)"
    else:
        allowed_txt = ", ".join(str(v) for v in allowed)
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.all():
            raise LabelError(f"Label map '{source}' contains NaN/Inf values; it must hold the integers {allowed_txt}.")
        rounded, frac = near_integers_rounded(array)
        if not frac.any():
            array = rounded  # integers stored as floats, within float rounding (0.999999 is 1)
        else:
            examples = ", ".join(f"{v:g}" for v in np.unique(array[frac])[:5])
            raise LabelError(f"Label map '{source}' has non-integer values ({examples}); it must hold the integers "
                             f"{allowed_txt}. Is this a probability map or a CT instead of a label map?")
    present = label_value_counts(array)
    bad = sorted(v for v in present if v not in set(allowed))
    if bad:
        shown = ", ".join(f"{int(v)}" for v in bad[:10]) + (" ..." if len(bad) > 10 else "")
        outside_bytes = bad[0] < 0 or bad[-1] > 255  # -1 (an 'ignore' value) too: --label-map cannot map it
        advice = ("convert the file to 0 background, 1 liver, 2 tumor first (e.g. in 3D Slicer or with "
                  "SimpleITK's ChangeLabel).")
        if outside_bytes and len(allowed) > 5:  # any value allowed, to be mapped with --label-map
            hint = _ct_hint(bad) or advice
            raise LabelError(f"Label map '{source}' has values {shown}; label values must lie in 0..255 (also for "
                             f"--label-map, which maps values 0..255). {hint[:1].upper() + hint[1:]}")
        meaning = "" if "0 background" in allowed_txt else " (0 background, 1 liver, 2 tumor)"
        remap = None if outside_bytes else _remap_advice([int(v) for v in bad], 1 in present or 2 in present)
        raise LabelError(f"Label map '{source}' has values {shown} outside the allowed {allowed_txt}{meaning}; "
                         f"{_ct_hint(bad) or remap or advice}")
    return array.astype(np.uint8, copy=False)


def _ct_hint(bad_values: Sequence[int]) -> str:
    """A hint for a label map whose values look like a CT's (Hounsfield units well below 0, or hundreds of
    distinct values): a CT taken for a label map, by a slip of the option or by a file name that did not say
    which file of a case is the label map ('' otherwise)."""
    if bad_values[0] > -100 and len(bad_values) < 100:
        return ""
    return ("its values look like a CT's Hounsfield units: is it the CT rather than the label map? Check which "
            "file was given as the label map (where a folder's files are paired by name, as evaluate and train "
            "pair them, a label map named CASE_seg or segmentation-N is never taken for a CT).")


ANY_LABEL_VALUE = tuple(range(256))


def parse_label_map_option(text: str, option: str = "--label-map") -> Dict[str, int]:
    """A ``--label-map`` JSON text (``'{"255": 1}'``: raw value -> 0 background, 1 liver, 2 tumor) as a dict;
    InputError saying what is wrong otherwise."""
    from ..fileutil import json_loads_noting_repeats

    try:  # keys written twice in one JSON object: json keeps the last without a word
        mapping, repeated = json_loads_noting_repeats(text)
    except ValueError as exc:
        raise InputError(f"{option} must be JSON like '{{\"255\": 1}}' (raw value -> 0, 1 or 2): {exc}.") from None
    if not isinstance(mapping, dict) or not mapping:
        raise InputError(f"{option} must be a non-empty JSON object like '{{\"255\": 1}}', got {text[:60]!r}.")
    first_key: Dict[int, str] = {}
    for key, value in mapping.items():
        if re.fullmatch(r"\s*[+-]?[0-9]+\s*", key) is None:  # int() also took '1_0' (10) and other digits
            raise InputError(f"{option} key {key!r} is not an integer label value.")
        number = int(key)
        if not 0 <= number <= 255:
            raise InputError(f"{option} key {key} is outside 0..255; label maps are read as values 0..255, so "
                             f"convert a file holding {key} to 0/1/2 first.")
        if isinstance(value, bool) or not isinstance(value, int) or value not in (0, 1, 2):
            raise InputError(f"{option} maps {key} to {value!r}; targets must be 0, 1 or 2.")
        if number in first_key or key in repeated:  # '1' and '01' were both applied, the later one winning
            keys = f"keys {first_key[number]!r} and {key!r}" if number in first_key else f"key {key!r} twice"
            raise InputError(f"{option} lists the value {number} more than once ({keys}); give each raw value one "
                             f"target.")
        first_key[number] = key
    return mapping


def unlisted_label_values(raw: np.ndarray, label_map: Mapping) -> Dict[int, int]:
    """``{value: voxel count}`` of the values other than 0 in ``raw`` that ``label_map`` does not list: those
    :func:`remap_labels` makes background."""
    listed = {int(key) for key in label_map}
    return {value: count for value, count in label_value_counts(raw).items() if value != 0 and value not in listed}


def unlisted_values_warning(where: str, raw: np.ndarray, label_map: Mapping, option: str = "--label-map"
                            ) -> Optional[str]:
    """The warning that :func:`remap_labels` gives for ``raw`` (the label map ``where``) and ``label_map``: the
    values present in it that the map does not list and so sends to background, with their voxel counts; None when
    every value present is listed (or 0)."""
    dropped = unlisted_label_values(raw, label_map)
    if not dropped:
        return None
    shown = ", ".join(f"{value} ({count} voxels)" for value, count in sorted(dropped.items())[:8])
    shown += " ..." if len(dropped) > 8 else ""
    present = label_value_counts(raw)
    kept = any(int(key) in present and int(target) != 0 for key, target in label_map.items())
    whole = "" if kept else " (nothing of it is liver or tumor after the map: every case scores it as empty)"
    example = {str(key): int(target) for key, target in label_map.items()}
    if not kept:  # the map matched nothing in the file: a 0/1/2 file under another file's map
        example.update({str(value): value for value in sorted(dropped) if value in (1, 2)})
    values = ", ".join(str(value) for value in sorted(dropped)[:8])
    # a map that does match the file (TotalSegmentator's liver 5 as '{"5": 1}') was told to add "1": 1 and "2": 2,
    # which scored the spleen as liver and a kidney as tumor (the held-out script's audit): no guess then
    hint = (f"e.g. {option} '{json.dumps(example)}'" if len(example) > len(label_map)
            else f"map each of {values} to 1 (liver), 2 (tumor) or 0 (neither, such as another organ)")
    return (f"label map '{where}' holds value(s) {shown} that {option} {json.dumps(dict(label_map))} does not list, "
            f"so they become 0 (background){whole}. List every value to keep ({hint}).")


_SAID_UNLISTED: Set[Tuple[str, str]] = set()
"""(file, warning) pairs :func:`remap_labels` has logged in this process: a file read again (evaluate's overlays
read the best and worst case a second time) is not warned about twice."""


def remap_labels(raw: np.ndarray, label_map: Optional[Mapping] = None, where: str = "label",
                 option: str = "--label-map", warnings: Optional[List[str]] = None,
                 log_dropped: bool = True) -> np.ndarray:
    """Map raw label values to uint8 {0, 1, 2}; values not in ``label_map`` become 0, and when ``raw`` holds such
    values other than 0 a warning naming the file (``where``) and those values is logged (once per file and
    process; ``warnings``: a list the warning is also appended to): a map written for 0/255 masks turned a 0/1/2
    reference into background without a word, and its case scored liver Dice 0. ``log_dropped=False``: not logged
    (still appended to ``warnings``), for a caller that drops values on purpose and checks the result itself
    (training's ``load_case``: a multi-organ label map under ``{"5": 1}`` drops every other organ, and its own
    check names the dropped values when no liver is left). Without a map, values must already be in {0, 1, 2}
    (LabelError naming ``option``, the way to map them, otherwise)."""
    if label_map:
        targets: Dict[int, Tuple[object, int]] = {}
        for source, target in label_map.items():
            number = int(source)
            if number in targets and targets[number][1] != int(target):  # both were applied, the later winning
                raise InputError(f"{option} lists the value {number} twice with different targets "
                                 f"({targets[number][0]!r}: {targets[number][1]}, {source!r}: {int(target)}); give "
                                 f"each raw value one target.")
            targets[number] = (source, int(target))
        said = unlisted_values_warning(str(where), raw, label_map, option)
        if said is not None:
            if warnings is not None:
                warnings.append(said)
            if log_dropped and (str(where), said) not in _SAID_UNLISTED:
                _SAID_UNLISTED.add((str(where), said))
                log.warning("warning: %s", said)
        out = np.zeros(raw.shape, dtype=np.uint8)
        for source, target in label_map.items():
            out[raw == int(source)] = int(target)
        return out
    counts = label_value_counts(raw)
    bad = sorted(v for v in counts if v not in (0, 1, 2))
    if bad:
        shown = ", ".join(str(int(v)) for v in bad[:8]) + (" ..." if len(bad) > 8 else "")
        if len(bad) > 2:  # a multi-organ labelling: its first extra value (TotalSegmentator's 3) is no liver
            how = (f"It looks like a multi-organ label map: map the value that means liver in its labelling to 1, "
                   f"e.g. {option} '{{\"5\": 1}}' for TotalSegmentator's (liver = 5), with the tumor value to 2 "
                   f"where it has one (every value not in the map becomes 0).")
        else:
            # the whole map to give: 1 and 2 kept, the others mapped (two of them, as in 0/127/255: the lower to
            # liver, the higher to tumor, which the data's owner confirms). 1 and 2 also where this file holds
            # neither: the map applies to every case, and '{"3": 1}' for one file turned every other case's tumor
            # (and liver) into background, training them as tumor-free (the training audit)
            mapping = {1: 1, 2: 2}
            mapping.update({int(v): target for v, target in zip(bad, (1, 2))})
            shown_map = "{" + ", ".join(f'"{v}": {t}' for v, t in sorted(mapping.items())) + "}"
            which = (f" if {int(bad[0])} is liver and {int(bad[1])} tumor (the other way round otherwise)"
                     if len(bad) == 2 else
                     f" if {int(bad[0])} is liver (\"{int(bad[0])}\": 2 if it is tumor, \"{int(bad[0])}\": 0 if "
                     f"it is neither)")
            how = (f"Map them with {option} '{shown_map}'{which}; every value not in the map becomes 0 (the map "
                   f"applies to every file it is given with, so it keeps 1 and 2).")
        raise LabelError(f"Label map '{where}' holds values {shown} outside 0 (background), 1 (liver), 2 (tumor). "
                         f"{how}")
    return raw.astype(np.uint8, copy=False)


def _refuse_probability_map(volume: CTVolume) -> None:
    """LabelError for a file tagged as a ``segment --probabilities`` map (uint8 255 x p): read as a label map, its
    values 3..255 were called a multi-organ labelling (advice: map liver = 5), and under a ``--label-map`` such as
    ``{"255": 1}`` its probabilities became liver or background without a word."""
    from .formats import PROBABILITY_255_CONTENT

    if volume.meta.get("content") == PROBABILITY_255_CONTENT:
        raise LabelError(f"'{volume.source}' is a tumor probability map (uint8, 255 x probability, as segment "
                         f"--probabilities writes it), not a label map (0 background, 1 liver, 2 tumor). Give the "
                         f"label map here (evaluate takes probability maps with --prob).")


def read_label_map(path: PathLike, reference: Optional[CTVolume] = None,
                   allowed_values: Sequence[int] = LABEL_VALUES,
                   tolerance: float = GEOMETRY_TOLERANCE, series: Optional[str] = None) -> CTVolume:
    """Read a label map as a uint8 ``(z, y, x)`` :class:`CTVolume`.

    Values must be integers in ``allowed_values`` (default 0 background, 1 liver, 2 tumor), else
    LabelError naming the bad values. With ``reference`` (the CT), the size and geometry must match
    within ``tolerance`` (mm for spacing/origin, cosine units for direction); a label map holding the
    same grid in another axis order (e.g. LPS vs RAS) is reoriented onto the reference's layout; any other
    difference raises LabelError saying what differs and by how much. A Slicer segmentation (``.seg.nrrd``,
    segments "Liver" / "Liver tumor" -> 1 / 2, see :mod:`segnrrd`) is read too, and, when cropped, put back
    into the reference's grid. A DICOM SEG file (``.dcm``) is read with :func:`dicom_seg.read_dicom_seg`
    (liver and tumor segments by their SNOMED CT codes).
    """
    from .. import segnrrd
    from ..dicom_seg import is_dicom_seg, read_dicom_seg

    if segnrrd.is_seg_nrrd(path):
        volume = segnrrd.read_seg_nrrd_labels(path, embed_in_stored_reference=reference is None,
                                               reference=reference)
        if reference is not None:  # a crop of the CT's grid (any axis order) goes into it; else refused below
            volume = segnrrd.embed_in_reference(volume, reference, tolerance)
    elif is_dicom_seg(path):
        volume = read_dicom_seg(path, reference)
    else:
        try:
            volume = read_volume(path, series=series, uint8_if_fits=True)  # no int16 copy of a 0/1/2 map
        except InputError as exc:  # the reader's shape refusal speaks of a CT: a 2D label map was told one is needed
            if "3D CT volume is needed" not in str(exc):
                raise
            # ... and the CT's formats: 'or a DICOM series folder', which evaluate then refused as no label map file
            raise InputError(str(exc).replace("3D CT volume is needed", "3D label map is needed")
                             .replace(_SUPPORTED_TEXT, _LABEL_MAP_FORMATS_TEXT)) from exc
        _refuse_probability_map(volume)
    try:
        _refuse_labels_merged_by_header_scale(volume)
        volume.array = check_label_values(volume.array, volume.source, allowed_values)
    except LabelError as exc:
        raise _header_scaled_label_error(volume, exc) from None
    _refuse_header_scaled_labels(volume, allowed_values)
    _refuse_implausible_spacing(volume)
    if reference is not None:
        volume = label_on_reference_grid(volume, reference, tolerance)
    return volume


def _refuse_implausible_spacing(volume: CTVolume) -> None:
    """InputError for a label map whose voxels are over :data:`~LiverTumorSegLib.validation.MAX_SPACING_MM` along an
    axis it has more than one voxel of, as segment refuses such a CT: a label map with 300 mm voxels was measured
    (measure, followup: a 4118 mm long axis, 11,502,000 mL, 'PD') with only volume warnings."""
    from ..validation import MAX_SPACING_MM, converted_unit_hint, spacing_over_limit

    if spacing_over_limit(volume):
        shown = ", ".join(f"{s:g}" for s in volume.geometry.spacing)
        raise InputError(f"Label map '{volume.source}' has voxel spacing ({shown}) mm, over {MAX_SPACING_MM:g} mm: "
                         f"the header is wrong (a CT's voxels are at most a few mm). Fix the spacing in the header "
                         f"(e.g. copy the CT's geometry onto it).{converted_unit_hint(volume)}")


def _refuse_labels_merged_by_header_scale(volume: CTVolume) -> None:
    """LabelError (then named by :func:`_header_scaled_label_error`) when a NIfTI header's ``scl_slope`` makes
    distinct stored values one label once rounded as the label check rounds floats (:func:`near_integers_rounded`):
    a slope of 1e-30 made labels 1 and 2 into 1e-30 and 2e-30, read as background, and measure reported no liver
    (the reader fuzzing audit). Distinct stored integers are distinct labels unless a damaged scale merges them.
    Only a header-scaled map is looked at (its distinct values sorted once)."""
    from .nifti import NIFTI_SCALING_KEY

    if volume.meta.get(NIFTI_SCALING_KEY) is None or volume.array.dtype.kind != "f":
        return
    values = np.unique(volume.array)
    values = values[np.isfinite(values)]
    labels = np.unique(np.rint(values))
    if len(labels) < len(values):
        shown = ", ".join(f"{v:g}" for v in labels[:5]) + (" ..." if len(labels) > 5 else "")
        raise LabelError(f"Label map '{volume.source}' makes {len(values)} distinct stored values into the labels "
                         f"{shown} (values {', '.join(f'{v:g}' for v in values[:5])}{' ...' if len(values) > 5 else ''} "
                         f"round to them); convert the file first.")


def _refuse_header_scaled_labels(volume: CTVolume, allowed_values: Sequence[int]) -> None:
    """LabelError for a NIfTI label map whose header scales its stored values (``scl_slope``/``scl_inter`` other than
    1 and 0) where the stored values are allowed labels too, other ones: a 0/1 liver mask with scl_slope 2 was read as
    0/2, all tumor (measure: tumor burden 100 %), and with scl_inter 1 as 1/2, the whole grid liver with a 'lesion'
    (the bad-inputs audit); which of the two readings is meant cannot be told. A map whose stored values are no
    labels is read scaled, as the NIfTI standard says: nibabel stores a float 0/1/2 mask saved with an int16 header
    as -32768/0/32767 with scl_slope 3.05e-5 and scl_inter 1.00002 (the review)."""
    from .nifti import NIFTI_SCALING_KEY

    scaling = volume.meta.get(NIFTI_SCALING_KEY)
    if scaling is None:
        return
    slope, inter = (float(v) for v in scaling)
    if slope == 0.0:
        return
    labels = np.array(sorted(label_value_counts(volume.array)), dtype=np.float64)
    stored = (labels - inter) / slope
    if not np.allclose(stored, np.rint(stored), atol=1e-3) or \
            not set(int(v) for v in np.rint(stored)) <= set(int(v) for v in allowed_values) or \
            np.array_equal(np.rint(stored), labels):
        return  # the stored values are no labels (or the very same ones): only the scaled reading is one
    raise LabelError(f"Label map '{volume.source}': its NIfTI header scales the stored values (value = stored x "
                     f"scl_slope + scl_inter; scl_slope {slope:g}, scl_inter {inter:g}), which a label map is not: "
                     f"whether its labels are the stored values or the scaled ones cannot be told (a 0/1 liver mask "
                     f"scaled by 2 reads as all tumor). If the stored values are the labels, set scl_slope 1 and "
                     f"scl_inter 0 in its header (e.g. nibabel: img.header.set_slope_inter(1, 0), then nib.save); "
                     f"else write the scaled values unscaled.")


def _header_scaled_label_error(volume: CTVolume, refusal: LabelError) -> LabelError:
    """``refusal`` (a label map refused for its values), or, when a NIfTI header's ``scl_slope``/``scl_inter``
    made those values (:data:`~.nifti.NIFTI_SCALING_KEY`), a LabelError that names them: a label map whose header
    scaled 1 and 2 by 1e30 was told only that it held 1e30 and 2e30 and to convert it with ChangeLabel. The scaled
    values are the file's values by the NIfTI standard, so such a map is refused, not read raw."""
    from .nifti import NIFTI_SCALING_KEY

    scaling = volume.meta.get(NIFTI_SCALING_KEY)
    if scaling is None:
        return refusal
    slope, inter = (float(v) for v in scaling)
    what = str(refusal).replace(f"Label map '{volume.source}' ", "", 1).split(";")[0].rstrip(".")
    return LabelError(f"Label map '{volume.source}': its NIfTI header's scale factors (value = stored x scl_slope + "
                      f"scl_inter; scl_slope {slope:g}, scl_inter {inter:g}) make values a label map cannot hold: it "
                      f"{what}. A label map is stored unscaled: if the stored values are the labels, set scl_slope 1 "
                      f"and scl_inter 0 in its header (e.g. nibabel: img.header.set_slope_inter(1, 0), then "
                      f"nib.save); else export the label map again.")
