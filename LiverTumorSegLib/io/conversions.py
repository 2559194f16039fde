"""HU dtype conversion and the header checks every reader shares (shape, spacing, origin, direction, memory).

No SimpleITK or nibabel here: these work on numpy arrays and plain header values.
"""
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError
from .formats import _SUPPORTED_TEXT


_INT16_MIN, _INT16_MAX = -32768, 32767


def _fits_int16(lo: float, hi: float) -> bool:
    return _INT16_MIN <= lo and hi <= _INT16_MAX


STORED_FLOATING_KEY = "stored_floating"
""":attr:`CTVolume.meta` key set by the file readers when the file stores floating-point voxels, which
:func:`to_hu_dtype` may have made integers (whole numbers): a probability map of floats holding only 0.0 and 1.0
is probabilities 0 and 1, not an untagged integer map of unknown scale (``evaluate`` read it as 0 and 1/255 beside
255 x p maps)."""


def to_hu_dtype(array: np.ndarray, uint8_if_fits: bool = False) -> np.ndarray:
    """Return ``array`` as int16 when every value is an integer in the int16 range, else as float32.

    ``uint8_if_fits``: integer (or bool) voxels that all lie in 0..255 become (or stay) uint8 instead of int16:
    label maps and 255 x p probability maps, read without an int16 copy twice their size (and the uint8 copy
    made from it again). Any other voxels get the type they get without it, so a label value outside 0..255
    is still reported as stored. Any shape. Floating-point voxels are checked a view at a time through two
    small buffers (:func:`_floats_fit_int16`): at most 2.25 MiB (float64) beside the array, whatever its size, and
    under the HU copy the memory counts hold for it (:func:`hu_copy_itemsize`: 4 bytes a voxel of floats), which they
    let go before the copy is made: no count needs a term of its own for them.
    """
    if array.size == 0:
        return array.astype(np.int16)
    if array.dtype == (np.uint8 if uint8_if_fits else np.int16):  # already the narrowest type it can get
        return array
    if np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        lo, hi = int(array.min()), int(array.max())
        if uint8_if_fits and 0 <= lo and hi <= 255:
            return array.astype(np.uint8)
        return array.astype(np.int16 if _fits_int16(lo, hi) else np.float32, copy=False)
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"Voxel type {array.dtype} is not a scalar number; a scalar CT volume is needed.")
    return array.astype(np.int16 if _floats_fit_int16(array) else np.float32, copy=False)


def _floats_fit_int16(array: np.ndarray) -> bool:
    """Whether every value of the floating-point ``array`` (not empty) is an integer in the int16 range, checked in
    views of at most :data:`HU_CHECK_CHUNK_VOXELS` voxels and a quarter of the array (:func:`_hu_check_chunks`)
    through two buffers of that size, let go on return (before :func:`to_hu_dtype` makes its copy)."""
    voxels = min(HU_CHECK_CHUNK_VOXELS, max(1, array.size // 4))
    rounded, same = np.empty(voxels, dtype=array.dtype), np.empty(voxels, dtype=np.bool_)
    for part in _hu_check_chunks(array, voxels):
        part_rounded = rounded[:part.size].reshape(part.shape)
        part_same = same[:part.size].reshape(part.shape)
        np.rint(part, out=part_rounded)
        np.equal(part, part_rounded, out=part_same)  # NaN is unequal to itself; an infinity fails the range below
        if not (part_same.all() and _fits_int16(float(part.min()), float(part.max()))):
            return False
    return True


HU_CHECK_CHUNK_VOXELS = 1 << 18
"""The most voxels :func:`to_hu_dtype` checks at a time (one 512 x 512 slice; a quarter of a smaller array): its
two buffers hold 2.25 MiB for float64 voxels, 1.25 MiB for float32, at most 2.25 bytes a voxel of the array. It
checked 16 slices at a time until 30 Nov 2026: their temporaries (the rounded values, two boolean masks) held 20 MiB
beside a 512 x 512 float32 CT and 36 MiB beside a float64 one (tracemalloc), counted by no memory count (a batch's
read-ahead count has no fixed overhead), and a non-contiguous array (a transposed view) was copied whole first."""


def _hu_check_chunks(array: np.ndarray, voxels: int):
    """Views of ``array`` that together hold each of its voxels once, each at most ``voxels`` voxels: flat runs of a
    contiguous array (C or Fortran order), else blocks along the first axis, the axes below it split the same way
    where one index of the first axis holds more. Never a copy."""
    if array.ndim <= 1 or array.flags.c_contiguous or array.flags.f_contiguous:
        flat = array.ravel(order="K") if array.ndim != 1 else array  # a view: contiguous, or already 1-D
        for start in range(0, flat.size, voxels):
            yield flat[start:start + voxels]
        return
    per_index = array.size // array.shape[0]
    if per_index <= voxels:
        step = voxels // per_index
        for start in range(0, array.shape[0], step):
            yield array[start:start + step]
        return
    for index in range(array.shape[0]):
        yield from _hu_check_chunks(array[index], voxels)


def hu_copy_itemsize(stored_itemsize: int, scaled: bool, unsigned: bool = False, floating: bool = False) -> int:
    """Bytes a voxel of the copy a reader (:func:`~.nifti._read_nifti`; the NRRD, MetaImage and DICOM readers with
    ``scaled`` False) holds beside the stored voxels it read: their float32 scaled values (``scaled``), else their
    int16 or float32 Hounsfield copy (:func:`to_hu_dtype`), counted as the stored type up to 4 bytes and at least 2
    (an int16 CT is kept as read, its 2 bytes kept as margin). A float64 file's copy is 4 bytes, not 8: reading a
    512 x 512 x 200 float64 ``.nii.gz`` peaked at 10.4 bytes a voxel (int16 values) and 12.1 (fractional values)
    with the file's bytes, where its check counts 16 (docs/speed.md, 29 Nov 2026; 20 before). A NRRD/MetaImage or
    DICOM read holds the same beside SimpleITK's image: a 512 x 512 x 100 float64 NRRD peaked at 10.0 bytes a voxel
    raw, 12.2 gzip (12.9 MetaImage), where its check counted 16 (30 Nov 2026). ``unsigned``: the stored type is
    unsigned; a uint16 file's copy is counted at 4 bytes, as its values above 32767 (which the header cannot rule
    out) make it float32: a 512 x 512 x 100 uint16 ``.nii.gz``, gzip NRRD or MetaImage of such values peaked at 6.0
    bytes a voxel where its check counted 4 (30 Nov 2026). ``floating``: the stored type is floating point, whose
    fractional values make the copy float32 (4 bytes) whatever the stored size: float16 was counted at 2 until
    30 Nov 2026 (no reader gives float16 voxels that day: nibabel refuses a float16 NIfTI, ITK has no such type)."""
    if scaled or floating or (unsigned and int(stored_itemsize) == 2):
        return 4
    return max(2, min(4, int(stored_itemsize)))


def _check_3d_shape(shape_xyz: Tuple[int, ...], source: str) -> Tuple[int, int, int]:
    """Validate an (x, y, z, ...) shape: drop trailing singleton dims, refuse 2D / 4D / empty."""
    shape = tuple(int(s) for s in shape_xyz)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    dims = " x ".join(str(s) for s in shape)
    if len(shape) < 3:
        raise InputError(f"'{source}' is 2D ({dims} pixels); a 3D CT volume is needed ({_SUPPORTED_TEXT}).")
    if len(shape) == 4 and shape[2] == 1 and shape[3] > 1:  # one volume of one slice each: 'extract one' left 2D
        raise InputError(f"'{source}' is {dims} voxels: its {shape[3]} slices are stored along the 4th (time) axis "
                         f"with one slice along z; a 3D CT volume is needed. Re-save it with the slices along z "
                         f"(e.g. with nibabel: the data reshaped to {shape[0]} x {shape[1]} x {shape[3]}, the slice "
                         f"spacing in pixdim[3]).")
    if len(shape) > 3:
        raise InputError(f"'{source}' is {len(shape)}D ({dims} voxels, e.g. several time points or channels); "
                         f"a single 3D CT volume is needed: extract one volume first.")
    if 0 in shape:
        raise InputError(f"'{source}' has zero size ({dims} voxels); the file holds no image data.")
    return shape  # type: ignore[return-value]


def _check_header_spacing(spacing_xyz: Sequence[float], source: str) -> None:
    """Refuse zero, negative or non-finite voxel spacing (x, y, z) mm read from a header."""
    spacing = [float(s) for s in spacing_xyz[:3]]
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        shown = ", ".join(f"{s:g}" for s in spacing)
        raise InputError(f"'{source}' has invalid voxel spacing ({shown}) mm in its header; fix the spacing in the "
                         f"header (e.g. re-export from the scanner/PACS).")


MAX_HEADER_SPACING_MM = 1000.0
"""The largest voxel spacing any reader accepts (a CT is refused above 20 mm later, by ``validation``): label maps
had no bound, and a spacing of 1e308 mm ended measure and followup in an internal error (the fuzzing audit)."""

MIN_HEADER_SPACING_MM = 1e-3
"""The smallest voxel spacing any reader accepts (1 micrometre, below any CT's): a slice spacing of 1e-30 mm passed as
positive, measure reported a liver of 1.6e-31 mL (exit 0) and segment ended in an internal OverflowError (the reader
fuzzing audit)."""

MAX_HEADER_ORIGIN_MM = 1e5
"""The farthest origin (each coordinate, mm) any reader accepts: 100 m, far beyond any scanner's frame (DICOM origins
lie within a metre or so). An origin of 1e308 hung followup's registration beyond SIGTERM, and one of 1e7 gave
3 mm RECIST axes for 27 mm ones (float32 rounding), exit 0."""


def check_geometry_values(spacing_xyz: Sequence[float], origin_xyz: Sequence[float], direction: Sequence[float],
                          source: str) -> None:
    """Refuse a header whose spacing is zero, negative or non-finite, whose origin or direction holds NaN/Inf,
    or whose direction is degenerate (axes not independent). Spacing/origin ``(x, y, z)`` mm, direction the
    9 row-major cosines."""
    _check_header_spacing(spacing_xyz, source)
    origin = [float(v) for v in origin_xyz[:3]]
    if not all(np.isfinite(v) for v in origin):
        raise InputError(f"'{source}' has a non-finite origin ({', '.join(f'{v:g}' for v in origin)}) in its header; "
                         f"fix the header (e.g. re-export from the scanner/PACS).")
    cosines = np.asarray([float(v) for v in direction], dtype=float)
    spacing = _voxel_steps(spacing_xyz, cosines)
    if max(spacing) > MAX_HEADER_SPACING_MM or min(spacing) < MIN_HEADER_SPACING_MM or \
            max(abs(v) for v in origin) > MAX_HEADER_ORIGIN_MM:
        raise InputError(f"'{source}' has voxel spacing ({', '.join(f'{v:g}' for v in spacing)}) mm and origin "
                         f"({', '.join(f'{v:g}' for v in origin)}) mm in its header: no scanner's image is "
                         f"{MAX_HEADER_SPACING_MM:g} mm a voxel (or under {MIN_HEADER_SPACING_MM:g} mm) or lies "
                         f"{MAX_HEADER_ORIGIN_MM:g} mm from its origin; the header is damaged. Fix it (e.g. re-export "
                         f"from the scanner/PACS).")
    if cosines.size != 9 or not np.all(np.isfinite(cosines)) or abs(np.linalg.det(cosines.reshape(3, 3))) < 1e-3:
        raise InputError(f"'{source}' has an invalid (non-finite or degenerate) direction matrix in its header; fix "
                         f"the header (e.g. re-export from the scanner/PACS).")
    check_orthogonal_axes(cosines.reshape(3, 3), source)


def _voxel_steps(spacing_xyz: Sequence[float], cosines: np.ndarray) -> List[float]:
    """The step (mm) ITK takes along each voxel axis: the spacing times the length of the direction matrix's column
    (:func:`unit_direction` moves that length into the spacing), the spacing alone where the column is not finite or
    of length 0 (refused as a direction). A MetaImage ``TransformMatrix = 100000 0 0 ...`` passed the bound on its
    ElementSpacing and was read as 1e5 mm voxels; ``1e308 ...`` (its length overflows: inf) was called sheared (the
    reader fuzzing audit)."""
    spacing = [float(v) for v in spacing_xyz[:3]]
    if cosines.size != 9 or not np.all(np.isfinite(cosines)):
        return spacing
    with np.errstate(over="ignore"):
        lengths = np.linalg.norm(cosines.reshape(3, 3), axis=0)
    return [s * float(n) if n > 0 else s for s, n in zip(spacing, lengths)]


def unit_direction(spacing_xyz: Sequence[float], direction: Sequence[float]
                   ) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """``(spacing, direction)`` with each direction column scaled to unit length and its length moved into the
    spacing: ITK's physical step of axis k is ``D[:, k] * spacing[k]``, so a MetaImage ``TransformMatrix`` of
    ``2 0 0 ...`` steps 2 mm along x. Kept as read, positions and diameters used 2 mm while volumes (the product
    of the spacings) used 1 mm. Spacing ``(x, y, z)`` mm, direction the 9 row-major cosines."""
    d = np.asarray([float(v) for v in direction], dtype=float).reshape(3, 3)
    norms = np.linalg.norm(d, axis=0)
    if np.allclose(norms, 1.0, rtol=0, atol=1e-6) or not np.all(norms > 0):
        return tuple(float(v) for v in spacing_xyz[:3]), tuple(float(v) for v in d.ravel())
    spacing = tuple(float(s) * float(n) for s, n in zip(spacing_xyz[:3], norms))
    return spacing, tuple(float(v) for v in (d / norms).ravel())


ORTHOGONALITY_TOLERANCE = 1e-3
"""Largest accepted deviation of ``D^T D`` from the identity for a direction matrix ``D`` (unit columns):
1e-3 is an angle of about 0.06 degrees between two axes (a volume error of 0.1 %), above the rounding of
headers written with 3 decimals (up to 5e-4); a gantry tilt is degrees."""


def axes_angles_deg(direction: np.ndarray) -> Tuple[float, float, float]:
    """Angles (degrees) between the voxel axes i-j, i-k and j-k of a 3 x 3 direction matrix (columns = axes)."""
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    d = d / np.linalg.norm(d, axis=0, keepdims=True)
    pairs = ((0, 1), (0, 2), (1, 2))
    return tuple(float(np.degrees(np.arccos(np.clip(np.dot(d[:, a], d[:, b]), -1.0, 1.0)))) for a, b in pairs)


def axes_are_orthogonal(matrix: np.ndarray, tolerance: float = ORTHOGONALITY_TOLERANCE) -> bool:
    """Whether the columns of a 3 x 3 matrix (voxel axes, any lengths: a direction, or spacing x direction) are at
    right angles: ``D^T D`` of the unit columns within ``tolerance`` of the identity."""
    d = np.asarray(matrix, dtype=float).reshape(3, 3)
    d = d / np.linalg.norm(d, axis=0, keepdims=True)
    return bool(np.allclose(d.T @ d, np.eye(3), atol=tolerance))


def check_orthogonal_axes(direction: np.ndarray, source: str) -> None:
    """Refuse a sheared grid: voxel axes (columns of ``direction``) that are not at right angles.

    Everything downstream (reorientation to RAS, voxel volume = product of the spacings, the writers) assumes
    orthogonal axes, so a sheared grid would give wrong volumes and misplaced labels. Sheared headers come from
    gantry-tilted CT saved without correction."""
    if axes_are_orthogonal(direction):
        return
    worst = max(abs(90.0 - a) for a in axes_angles_deg(direction))
    raise InputError(f"'{source}' has a sheared (non-orthogonal) grid: its voxel axes are up to {worst:.3g} degrees "
                     f"off a right angle (typical of a gantry-tilted CT saved without correction). Volumes and "
                     f"positions on such a grid would be wrong. Resample it to an orthogonal grid first (dcm2niix "
                     f"corrects gantry tilt; in 3D Slicer, load the DICOM series with acquisition geometry "
                     f"regularization and harden the transform), and use the resampled file.")


MAX_DEFLATE_RATIO = 1100
"""Deflate (gzip, zlib) expands at most 1032:1, so n compressed bytes hold at most about 1100 n bytes of voxels."""


def check_data_fits_file(path: Any, shape_xyz: Sequence[int], itemsize: int, available_bytes: int,
                         deflated: bool) -> int:
    """Refuse a header whose voxels cannot be in the bytes the file holds for them (``available_bytes``; deflate
    compressed: up to :data:`MAX_DEFLATE_RATIO` times as many): a truncated file, or a broken header claiming
    e.g. 1000^3 voxels in 1 KB, found before reading allocates them or the memory check calls it a shortage.
    Returns the bytes the header describes."""
    stored = int(np.prod([int(n) for n in shape_xyz], dtype=np.int64)) * int(itemsize)
    if stored <= (MAX_DEFLATE_RATIO if deflated else 1) * max(int(available_bytes), 0):
        return stored
    dims = " x ".join(str(int(n)) for n in shape_xyz)
    if int(available_bytes) < 0:  # the header's data offset (NIfTI vox_offset, ...) lies past the file's end
        raise InputError(f"Cannot read '{path}': the file is truncated or its header is wrong (the header puts the "
                         f"voxels {-int(available_bytes)} bytes past the end of the file, which holds none of the "
                         f"{dims} voxels it describes). Check that the file is complete.")
    raise InputError(f"Cannot read '{path}': the file is truncated or its header is wrong (the header describes "
                     f"{dims} voxels, {stored / 2 ** 30:.3g} GiB of data, but the file holds {int(available_bytes)} "
                     f"bytes for them). Check that the file is complete.")


def read_peak_voxel_bytes(voxels: int, read_itemsize: int, copy_itemsize: int,
                          compressed_bytes: Optional[int] = None, compressed_held_whole: bool = False) -> int:
    """The most bytes a reader holds for the voxels of a CT of ``voxels`` voxels while it reads them: the stored
    voxels (``read_itemsize`` bytes a voxel) and their HU copy (``copy_itemsize``), or, for a deflate-compressed file
    (``compressed_bytes`` on disk; None: not compressed), while it inflates: the stored voxels, one inflated step
    twice and one compressed read step (:func:`~.gzip_inflate.inflate_peak_bytes`), where that is more. The one
    formula the readers' own checks (:func:`check_memory_for_read`) and a batch's count of a read ahead
    (:func:`~.reading.read_peak_bytes`) share: until 30 Nov 2026 the readers' checks left the inflating buffers out,
    so a small float64 gzip NRRD (one 64 MiB step holds it all: 8 + 16 bytes a voxel and the compressed bytes) was
    checked for 16 bytes a voxel where a batch counted the same read at 24. ``compressed_held_whole``: ITK inflates
    the file itself (a compressed MetaImage whose header sends it to ITK's read, :func:`~.itk.itk_holds_compressed`),
    holding all its compressed bytes beside the stored voxels: a 40 x 512 x 512 float64 one (7.65 bytes a voxel on
    disk) peaked at 15.6 in ITK's read (RSS; uncounted until 30 Nov 2026: at 512 x 512 x 300 some 290 MB above the
    count)."""
    voxels = int(voxels)
    peak = voxels * (int(read_itemsize) + int(copy_itemsize))
    if compressed_bytes is not None:
        from .gzip_inflate import inflate_peak_bytes
        stored = voxels * int(read_itemsize)
        peak = max(peak, stored + inflate_peak_bytes(stored, int(compressed_bytes)))
        if compressed_held_whole:
            peak = max(peak, stored + int(compressed_bytes))
    return peak


def check_memory_for_read(shape_xyz: Sequence[int], itemsize: int, source: str,
                          copy_itemsize: Optional[int] = None, compressed_bytes: Optional[int] = None,
                          compressed_held_whole: bool = False) -> None:
    """Estimate from the header, before any voxel is loaded, the memory needed to process a volume of
    ``shape_xyz`` (x, y, z) voxels of ``itemsize`` bytes (:func:`validation.estimate_memory_bytes`) and raise
    ResourceError saying how much is needed when it exceeds the available memory. ``copy_itemsize``: bytes a voxel
    of the copy the reader holds beside the stored voxels (None: ``itemsize``, a copy of the stored type).
    ``compressed_bytes``: the deflate-compressed voxel data's size on disk (None: not compressed); the read's own
    peak (:func:`read_peak_voxel_bytes`, with the inflating buffers) and the runtime's overhead are asked for where
    that is more than the estimate (which counts the labels made later, not the read's buffers);
    ``compressed_held_whole``: see :func:`read_peak_voxel_bytes`."""
    from ..validation import RUNTIME_OVERHEAD_BYTES, check_memory, estimate_memory_bytes

    shape_zyx = tuple(int(s) for s in tuple(shape_xyz)[:3][::-1])
    required = estimate_memory_bytes(shape_zyx, input_itemsize=int(itemsize), copy_itemsize=copy_itemsize)
    voxels = int(np.prod(shape_zyx, dtype=np.int64))
    copy = int(itemsize) if copy_itemsize is None else int(copy_itemsize)
    required = max(required, read_peak_voxel_bytes(voxels, int(itemsize), copy, compressed_bytes,
                                                   compressed_held_whole) + RUNTIME_OVERHEAD_BYTES)
    check_memory(required, what=f"'{source}' (z, y, x) {shape_zyx}")


def data_after_voxels_warning(shape_xyz: tuple, itemsize: int, after: int,
                              counted_up_to: Optional[int] = None) -> List[str]:
    """The warning for ``after`` bytes of data after the voxels (none below one slice: padding), which the NIfTI,
    NRRD and MetaImage readers give alike (a header edited to fewer slices than the file holds); ``shape_xyz``:
    the header's voxel counts ``(x, y, z)``; ``itemsize``: bytes per voxel (all its components). ``counted_up_to``:
    for compressed data, the most bytes the reader inflated to count them
    (:func:`~.gzip_inflate.after_range_count_limit`); an ``after`` above it says only that there are more, and the
    warning says so ("more than")."""
    slice_bytes = int(shape_xyz[0]) * int(shape_xyz[1]) * itemsize
    if after < slice_bytes:
        return []
    voxels = " x ".join(str(int(n)) for n in shape_xyz)
    if counted_up_to is not None and after > counted_up_to:
        return [f"the file holds more than {counted_up_to} bytes after the {voxels} voxels its header describes "
                f"(more than {counted_up_to / slice_bytes:.3g} more slices; the rest of the file was not inflated "
                f"or checked); they are not read. If the header's slice count is wrong, export the CT again"]
    return [f"the file holds {after} bytes after the {voxels} "
            f"voxels its header describes (about {after / slice_bytes:.3g} more slices); they are "
            f"not read. If the header's slice count is wrong, export the CT again"]
