"""SimpleITK access: the lazy import, quiet ITK warnings, one-line ITK error texts, and reading NRRD / MetaImage
files (``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``) into a :class:`~LiverTumorSegLib.volume.CTVolume`."""
import contextlib
import math
import os
import re
import sys
import zlib
from pathlib import Path
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ..asciinumbers import is_ascii_digits, is_ascii_integer
from ..errors import InputError, out_of_memory_error, raise_if_out_of_memory
from ..fileutil import full_suffix
from ..volume import CTVolume, ImageGeometry
from .conversions import (_check_3d_shape, check_data_fits_file, check_geometry_values, check_memory_for_read,
                          data_after_voxels_warning, hu_copy_itemsize, to_hu_dtype, unit_direction,
                          STORED_FLOATING_KEY)


def _sitk():
    import SimpleITK as sitk  # noqa: N813 - the usual alias
    return sitk


@contextlib.contextmanager
def _quiet_itk() -> Iterator[None]:
    """Silence ITK's stderr warnings (we report problems ourselves); restores the previous setting."""
    process_object = _sitk().ProcessObject
    previous = process_object.GetGlobalWarningDisplay()
    process_object.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        process_object.SetGlobalWarningDisplay(previous)


def non_ascii_path_hint(path: Union[str, Path]) -> str:
    """The advice for a path that ITK (.nrrd, .mha) cannot open, or "" when the path is plain ASCII or not on
    Windows: there ITK opens paths in the ANSI code page, so characters outside it (a user name like 'Müller' in
    the folder) name another file or none."""
    text = os.path.abspath(str(path))
    if sys.platform != "win32" or all(ord(c) < 128 for c in text):
        return ""
    return ("; on Windows, ITK (which reads and writes .nrrd and .mha) cannot open paths with non-ASCII characters: "
            "use a folder whose path has only ASCII characters, or .nii.gz, which does not go through ITK")


def _itk_reason(exc: BaseException) -> str:
    """The most specific single line of a SimpleITK/ITK exception text, without source paths or pointers.

    ITK texts look like ``Exception thrown in ...cxx:935:`` / ``ITK ERROR: NrrdImageIO(0x..): Read: ...:`` /
    ``[nrrd] _nrrdEncodingRaw_read: fread got only 5284 ...``; the last teem line is the most specific.
    """
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("Exception thrown in")
             and not ln.startswith("Reason: No such file")]  # MetaImage's misleading errno text
    teem = [ln for ln in lines if ln.startswith("[nrrd]") and not ln.rstrip().endswith((":", "trouble"))]
    if teem:
        text = re.sub(r"^\[nrrd\]\s*\w+:\s*", "", teem[-1])
    else:
        text = next((ln for ln in lines if "ERROR" in ln), lines[-1] if lines else type(exc).__name__)
        for prefix in ("Description:", "ITK ERROR:", "sitk::ERROR:"):
            if prefix in text:
                text = text.split(prefix, 1)[1]
        text = re.sub(r"^\s*\w+\(0x[0-9a-fA-F]+\):\s*", "", text)
    return text.strip().rstrip(":.")[:200]


def _volume_from_sitk(image, source: str, uint8_if_fits: bool = False) -> CTVolume:
    """A SimpleITK image as a :class:`CTVolume` (``uint8_if_fits``: see :func:`~.conversions.to_hu_dtype`)."""
    sitk = _sitk()
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"'{source}' has {image.GetNumberOfComponentsPerPixel()} components per voxel (RGB or "
                         f"vector image); a scalar 3D CT volume is needed.")
    size = tuple(image.GetSize())
    shape = _check_3d_shape(size, source)
    dimension = image.GetDimension()
    spacing, origin = tuple(image.GetSpacing())[:3], tuple(image.GetOrigin())[:3]
    # e.g. 4D with a single time point: the first 3 axes, from a view (sitk.Extract copied the whole image: a 4D
    # compressed MetaImage's read held it twice, 22.0 bytes a voxel of float64, where its check counted 8 + 4)
    direction = tuple(float(v) for v in np.asarray(image.GetDirection(), float).reshape(dimension, dimension)[:3, :3]
                      .ravel())
    check_geometry_values(spacing, origin, direction, source)
    # the HU array made from a view of the image's buffer, copied only when it is that buffer (an int16 CT): numpy's
    # copy (GetArrayFromImage) and then the HU copy held 3 copies of an int32 or float64 read at once, not 2
    view = sitk.GetArrayViewFromImage(image).reshape(tuple(shape)[::-1])
    stored_floating = np.issubdtype(view.dtype, np.floating)
    array = to_hu_dtype(view, uint8_if_fits)
    if np.may_share_memory(array, view):  # the view lives only as long as the image: an array of its own
        array = np.array(array, copy=True)
    del view
    # already in its HU type: _volume_from_voxels's to_hu_dtype checked every voxel a second time, its temporaries
    # beside the image and the copy (a 20 x 512 x 512 float32 NRRD peaked at 12.0 bytes a voxel, counted 8; RSS)
    volume = _volume_from_voxels(array, spacing, origin, direction, source, uint8_if_fits, hu_checked=True)
    if stored_floating:
        volume.meta[STORED_FLOATING_KEY] = True
    return volume


def _volume_from_voxels(voxels_zyx: np.ndarray, spacing_xyz: Sequence[float], origin_xyz: Sequence[float],
                        direction: Sequence[float], source: str, uint8_if_fits: bool = False,
                        hu_checked: bool = False) -> CTVolume:
    """A CTVolume of ITK-ordered voxels ``(z, y, x)`` and an ITK header's spacing/origin ``(x, y, z)`` mm and
    9 row-major direction cosines (checked by the caller): HU dtype (``uint8_if_fits``: see
    :func:`~.conversions.to_hu_dtype`; ``hu_checked``: ``voxels_zyx`` is already what it returns), unit direction
    columns."""
    spacing, direction = unit_direction(spacing_xyz, direction)
    geometry = ImageGeometry(spacing=spacing, origin=tuple(origin_xyz), direction=direction)
    array = voxels_zyx if hu_checked else to_hu_dtype(voxels_zyx, uint8_if_fits)
    volume = CTVolume(array=array, geometry=geometry, source=source)
    if not hu_checked and np.issubdtype(voxels_zyx.dtype, np.floating):
        volume.meta[STORED_FLOATING_KEY] = True
    return volume


def _itk_itemsize(pixel_id: int) -> int:
    """Bytes per voxel component of a SimpleITK pixel type (:func:`_itk_numpy_dtype`'s item size)."""
    return int(_itk_numpy_dtype(pixel_id).itemsize)


def _direction_3d(reader) -> Tuple[float, ...]:
    """The 3 x 3 spatial part (row-major) of an N-D ITK direction (N >= 3)."""
    n = reader.GetDimension()
    d = tuple(reader.GetDirection())
    return tuple(d[r * n + c] for r in range(3) for c in range(3)) if n >= 3 else (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)


_NRRD_DEFLATED = {"gzip", "gz"}
_NRRD_RAW = {"raw"}


def _file_head(path: Path) -> Optional[bytes]:
    """The first 64 KiB of ``path`` (a NRRD or MetaImage header is a few KB), or None when it cannot be read."""
    try:
        with open(str(path), "rb") as fh:
            return fh.read(65536)
    except OSError:
        return None


class _Header(NamedTuple):
    """A NRRD or MetaImage header as :func:`_read_header` parsed it."""
    kind: str                 # "nrrd" or "metaimage"
    fields: Dict[str, str]    # names lower case (NRRD values as written, MetaImage values lower case)
    where: Any                # NRRD: where its blank line starts; MetaImage: the ElementDataFile line's match
    names: Tuple[str, ...]    # MetaImage: the field names as written (MetaIO matches them case-sensitively);
    # NRRD: () (teem matches field names in any case)

    @property
    def deflated(self) -> bool:
        """Whether the header says its voxel data is deflate-compressed: NRRD ``encoding: gzip`` (or ``gz``, any
        case), MetaImage ``CompressedData = True`` (or any value MetaIO reads as true: one beginning with t or 1;
        only 'true' counted before, and ITK inflated a raw file whose header said 'CompressedData = 1' into
        uninitialised memory, other voxel values on each run, without an error: the reader fuzzing audit)."""
        if self.kind == "nrrd":
            return self.fields.get("encoding", "").lower() in _NRRD_DEFLATED
        return self.fields.get("compresseddata", "false")[:1] in _METAIO_COMPRESSED_TRUE


class _StoredData(NamedTuple):
    """Where and how a NRRD or MetaImage file stores its voxel data (:func:`_stored_data`)."""
    size: int                 # bytes the file holds for the voxels (compressed bytes when deflated)
    deflated: bool            # deflate-compressed (:attr:`_Header.deflated`)
    data_path: Path           # the file holding them (the header's own file, or its data file)
    start: int                # where in that file they start
    stream_limit: Optional[int] = None  # MetaImage, deflated: ITK inflates one zlib stream from start, which must
    # end within this many bytes (CompressedDataSize, else size), and reads nothing after its end. None: NRRD (every
    # gzip member up to the data's end is read) or uncompressed


def _read_header(path: Path) -> Optional[_Header]:
    """The header of the NRRD or MetaImage file ``path`` (its first 64 KiB read), or None when it is neither or
    cannot be read or parsed."""
    head = _file_head(path)
    if head is None:
        return None
    if head.startswith(b"NRRD"):
        kind, parsed = "nrrd", _nrrd_fields(head)
    elif full_suffix(path) in (".mha", ".mhd"):
        kind, parsed = "metaimage", _metaimage_fields(head)
    else:
        return None
    return None if parsed is None else _Header(kind, *parsed)


def _stored_data(path: Path, header: Optional[_Header]) -> Optional[_StoredData]:
    """Where and how the file ``path`` stores its voxel data (:class:`_StoredData`), from its NRRD or MetaImage
    ``header`` (:func:`_read_header` of ``path``), or None when that cannot be told cheaply (ASCII or bzip2
    encoding, a list of data files, no header parsed): then the reader finds any truncation itself."""
    if header is None:
        return None
    return (_nrrd_stored if header.kind == "nrrd" else _metaimage_stored)(path, header)


def _nrrd_fields(head: bytes) -> "Optional[Tuple[Dict[str, str], int, Tuple[str, ...]]]":
    """``(fields, where the header's blank line starts, ())`` of a NRRD header: field names lower case (``type``,
    ``data file``; teem matches them in any case, so their spelling is not kept), values stripped; comments and
    ``key:=value`` pairs (free metadata, as teem tells them: the ``:=`` before any ``': '``) left out. None
    without the blank line that ends a header, unless the header is the whole file and names its data file (a
    detached .nhdr, as ITK writes it, ends at the file's end)."""
    end = head.find(b"\n\n")
    if end < 0:
        lower = head.lower()
        if len(head) >= 65536 or not re.search(rb"(?m)^data ?file:", lower):
            return None
        end = len(head.rstrip(b"\r\n"))
    fields = {}
    for line in head[:end].decode("latin-1").splitlines()[1:]:
        if line.startswith("#") or ":" not in line:
            continue
        if ":=" in line and (": " not in line or line.index(":=") < line.index(": ")):
            continue
        key, _, value = line.partition(":")
        fields[key.strip().lower()] = value.strip()
    return fields, end, ()


def _nrrd_stored(path: Path, header: _Header) -> Optional[_StoredData]:
    fields, end = header.fields, header.where
    raw = fields.get("encoding", "").lower() in _NRRD_RAW
    if not (raw or header.deflated) or "line skip" in fields or "lineskip" in fields:
        return None
    data_file = fields.get("data file") or fields.get("datafile")
    if data_file:  # detached
        size = _detached_size(path, data_file)
        if size is None:
            return None
        where, start = path.parent / data_file, 0
    else:
        size = path.stat().st_size - (end + 2)
        where, start = path, end + 2
    skip = fields.get("byte skip") or fields.get("byteskip") or "0"
    if raw and is_ascii_integer(skip):
        size -= max(int(skip), 0)
    return _StoredData(size, header.deflated, where, start)


def _metaimage_fields(head: bytes) -> "Optional[Tuple[Dict[str, str], Any, Tuple[str, ...]]]":
    """``(fields, the ElementDataFile line's match, names as written)`` of a MetaImage header: the fields before
    that line (the header's last), names and values lower case. None without an ElementDataFile line."""
    marker = re.search(rb"(?m)^\s*ElementDataFile\s*=\s*(\S[^\r\n]*)\r?\n?", head)
    if marker is None:
        return None
    fields, names = {}, []
    for line in head[:marker.start()].decode("latin-1").splitlines():
        key, _, value = line.partition("=")
        fields[key.strip().lower()] = value.strip().lower()
        names.append(key.strip())
    return fields, marker, tuple(names)


def _metaimage_stored(path: Path, header: _Header) -> Optional[_StoredData]:
    """The voxels start after the header, or after ``HeaderSize`` bytes of the file that holds them (MetaIO counts a
    LOCAL file's from its first byte, header included); None for ``HeaderSize = -1`` (the voxels are the file's
    last bytes, however many the header describes). A LOCAL ``HeaderSize`` that ends inside the header is
    :func:`_check_metaimage_header`'s to refuse; its voxels are taken to start after the header here."""
    marker, name = header.where, _metaimage_data_file(header)
    skip = _metaimage_header_size(header.fields)
    local = _metaimage_local(name)
    if skip is None or skip < 0:
        return None
    size = path.stat().st_size if local else _detached_size(path, name)
    if size is None:
        return None
    start = max(skip, marker.end()) if local else skip
    stored = max(size - start, 0)
    limit = None
    if header.deflated:  # ITK inflates CompressedDataSize bytes; a data file without it, all of its own
        given = _metaimage_compressed_size(header.fields)
        limit = stored if given is None else given
    return _StoredData(stored, header.deflated, path if local else path.parent / name, start, limit)


_METAIO_LOCAL = ("LOCAL", "Local", "local")
"""The ``ElementDataFile`` values MetaIO takes as voxels in the header's own file: any other spelling ('LoCaL') is
a data file's name, which ITK fails to open (SimpleITK 30 Nov 2026)."""


def _metaimage_local(name: str) -> bool:
    """Whether the ``ElementDataFile`` value ``name`` keeps the voxels in the header's own file, as MetaIO reads it:
    reading the bytes after a 'LoCaL' header as voxels gave an image where ITK (and 3D Slicer) fail."""
    return name in _METAIO_LOCAL


def _metaimage_data_file(header: _Header) -> str:
    """The ``ElementDataFile`` value as written: ``LOCAL``, a file name, ``LIST`` or a numbered pattern."""
    return header.where.group(1).decode("latin-1").strip()


def _metaimage_compressed_size(fields: Dict[str, str]) -> Optional[int]:
    """``CompressedDataSize``: the bytes of compressed voxel data ITK reads from where the voxels start; None when
    absent or not a whole number."""
    text = fields.get("compresseddatasize", "")
    return int(text) if is_ascii_digits(text) else None


def _metaimage_header_size(fields: Dict[str, str]) -> Optional[int]:
    """``HeaderSize`` (bytes of a separate data file before its voxels; -1: the voxels are its last bytes), 0 when
    absent, None when not a whole number."""
    text = fields.get("headersize", "") or "0"
    return int(text) if is_ascii_integer(text) else None


_METAIO_COMPRESSED_TRUE = ("t", "1")
"""How a MetaImage ``CompressedData`` value begins when MetaIO reads it as compressed (``True``, ``t``, ``1``;
``yes`` is read as raw data: measured with SimpleITK, 30 Nov 2026)."""

_METAIO_TRUE = ("t", "y", "1")
"""How a MetaImage boolean (``True``, ``yes``, ``1``) begins when MetaIO reads it as true."""


def _check_metaimage_header(path: Path, header: Optional[_Header], stored: Optional[_StoredData]) -> None:
    """Refuse a MetaImage header with fields that change what its voxels mean in a way ITK's reader (this
    tool's, 3D Slicer's) silently gets wrong: byte order fields that disagree, an intensity mapping ITK does not
    apply, a ``HeaderSize`` it cannot honour, or a ``CompressedDataSize`` that is missing, not a number or more
    than the file holds (ITK inflates that many bytes and returns whatever came out; one that ends inside the
    compressed stream is refused by :func:`check_deflated_data`, which finds where the stream ends). Nothing is
    checked for a NRRD or an unparsed header."""
    if header is None or header.kind != "metaimage":
        return
    _check_metaimage_byte_order(path, header)
    _check_metaimage_intensity_mapping(path, header.fields)
    _check_metaimage_header_size(path, header)
    _check_metaimage_compressed_size(path, header, stored)
    _check_metaimage_data_file_count(path, header)


def _check_metaimage_data_file_count(path: Path, header: _Header) -> None:
    """Refuse a MetaImage whose ``ElementDataFile`` is a list of files (``LIST``, ``LIST 2D``) naming fewer files,
    or a numbered pattern (``slice%d.raw 1 40 1``) counting fewer, than its ``DimSize`` has slices (or blocks of
    the list's dimension): ITK read the files there were and returned the rest of the image as whatever its memory
    held before (the previous scan's values, in a process that had read one), without a word. A list longer than
    the 64 KiB read of the header is not judged."""
    value = _metaimage_data_file(header).split()
    sizes, ndims = header.fields.get("dimsize", "").split(), header.fields.get("ndims", "")
    if not value or not is_ascii_digits(ndims) or not all(is_ascii_digits(size) for size in sizes) or len(sizes) < int(ndims):
        return
    if value[0].upper() == "LIST":
        per_file = int(value[1][:-1]) if len(value) > 1 and is_ascii_digits(value[1][:-1]) else int(ndims) - 1
        after = header.where.string[header.where.end():]
        if len(header.where.string) >= 65536:
            return
        count, what = len([line for line in after.splitlines() if line.strip()]), "lists"
    elif len(value) == 4 and "%" in value[0]:
        if not all(is_ascii_integer(word) for word in value[1:]):  # MetaIO's atoi reads '--3' as 0: a step of 0 crashed
            # the process (SIGFPE), a last number of 0 gave an image of leftover memory
            raise InputError(f"Cannot read '{path}': its header's numbered data files (ElementDataFile = "
                             f"{' '.join(value)}) need three whole numbers after the pattern (first, last, step), "
                             f"which ITK misreads otherwise. Fix those numbers in the header, or export the volume "
                             f"again.")
        first, last, step = (int(word) for word in value[1:])
        per_file, count, what = int(ndims) - 1, len(range(first, last + 1, step)) if step > 0 else 0, "numbers"
    else:
        return
    needed = int(np.prod([int(size) for size in sizes[per_file:int(ndims)]], dtype=np.int64))
    if count < needed:
        raise InputError(f"Cannot read '{path}': its header {what} {count} data file(s) (ElementDataFile = "
                         f"{' '.join(value)}) for the {needed} its DimSize ({' '.join(sizes)}) needs; ITK would fill "
                         f"the missing part of the image with leftover memory, without a word. Export the volume "
                         f"again, or list every data file in the header.")


def _check_metaimage_byte_order(path: Path, header: _Header) -> None:
    orders = {name: header.fields[name.lower()] for name in ("BinaryDataByteOrderMSB", "ElementByteOrderMSB")
              if name in header.names}
    if len({value[:1] in _METAIO_TRUE for value in orders.values()}) > 1:
        said = " but ".join(f"{name} = {value.capitalize()}" for name, value in orders.items())
        raise InputError(f"Cannot read '{path}': its header says {said}; both give the byte order of its voxels "
                         f"and they disagree, so its values cannot be trusted. Set both to True (big-endian data) or "
                         f"both to False (little-endian), or export the file again.")


def _check_metaimage_intensity_mapping(path: Path, fields: Dict[str, str]) -> None:
    mapping = {name: fields.get(name.lower(), default) for name, default in (
        ("ElementToIntensityFunctionSlope", "1"), ("ElementToIntensityFunctionOffset", "0"))}
    try:
        identity = float(mapping["ElementToIntensityFunctionSlope"]) == 1.0 \
            and float(mapping["ElementToIntensityFunctionOffset"]) == 0.0
    except ValueError:
        identity = False
    if not identity:
        said = ", ".join(f"{name} = {value}" for name, value in mapping.items())
        raise InputError(f"Cannot read '{path}': its header maps the stored values to intensities ({said}), which "
                         f"ITK-based readers (this tool, 3D Slicer) do not apply, so every value would be read "
                         f"unscaled. Save the volume with the intensities themselves stored (e.g. as NIfTI or NRRD).")


def _check_metaimage_header_size(path: Path, header: _Header) -> None:
    skip = _metaimage_header_size(header.fields)
    text = header.fields.get("headersize", "")
    if skip is None or skip < -1:
        raise InputError(f"Cannot read '{path}': its HeaderSize ({text}) is not a byte count (0 or more, or -1 for "
                         f"voxels at the end of the data file). Fix the header.")
    if 0 < skip < header.where.end() and _metaimage_local(_metaimage_data_file(header)):
        raise InputError(f"Cannot read '{path}': its header sets HeaderSize = {skip} with the voxels in the same file "
                         f"(ElementDataFile = LOCAL), but the header itself is {header.where.end()} bytes long, so "
                         f"ITK-based readers would read header text as voxels. Remove the HeaderSize line (or set it "
                         f"to the header's length).")
    if skip == -1 and header.deflated:
        raise InputError(f"Cannot read '{path}': its header sets HeaderSize = -1 (the voxels are the data file's last "
                         f"bytes) for compressed voxels, whose size is not known before they are inflated. Give "
                         f"the bytes before the compressed data as HeaderSize, or store the voxels uncompressed.")


def _check_metaimage_compressed_size(path: Path, header: _Header, stored: Optional[_StoredData]) -> None:
    if stored is None or not stored.deflated:
        return
    text = header.fields.get("compresseddatasize", "")
    if not text:
        if stored.data_path == path:  # a separate data file without it is inflated whole, as it should be
            said = header.fields.get("compresseddata", "true")
            raise InputError(f"Cannot read '{path}': its compressed voxels (CompressedData = "
                             f"{'True' if said == 'true' else said}) follow its header "
                             f"without a CompressedDataSize, so ITK-based readers (this tool, 3D Slicer) cannot tell "
                             f"where they end and read them wrongly. Add 'CompressedDataSize = {stored.size}' to the "
                             f"header (before ElementDataFile), or export the file again.")
        return
    given = _metaimage_compressed_size(header.fields)
    if given is not None and given <= stored.size:  # the stream must end within them: check_deflated_data
        return
    raise _compressed_size_error(path, "truncated or corrupt", text, stored.size)


def _compressed_size_error(path: Path, problem: str, text: str, holds: int) -> InputError:
    """The error for a MetaImage whose ``CompressedDataSize`` (``text``, as written) is not the ``holds`` bytes of
    compressed voxel data the file holds; ``problem``: what the file then is."""
    return InputError(f"Cannot read '{path}': the file is {problem} (its header gives CompressedDataSize = {text}, "
                      f"but the file holds {holds} bytes of compressed voxel data; ITK reads exactly the bytes the "
                      f"header gives). Copy or export it again.")


_RUNS_FROM = {"r": (1.0, 0.0, 0.0), "l": (-1.0, 0.0, 0.0), "a": (0.0, 1.0, 0.0), "p": (0.0, -1.0, 0.0),
              "i": (0.0, 0.0, 1.0), "s": (0.0, 0.0, -1.0)}
"""The LPS direction of an axis that a MetaImage ``AnatomicalOrientation`` letter names by the side the axis runs
from, as ITK writes it (``RAI`` for the identity direction)."""


def _space_units_warnings(header: Optional[_Header]) -> List[str]:
    """A warning when a NRRD header's ``space units`` name a unit other than mm (``"cm" "cm" "cm"``): ITK, so 3D
    Slicer and this tool, ignores the field and reads spacing and origin as mm, so the label map still overlays the
    CT, but every volume (mL) and length (mm) measured on it is off by that unit's factor (1000 x in volume for
    cm) if the header is right. The NIfTI reader converts metres and microns; a NRRD in other units was read as mm
    without a word. Nothing for a MetaImage, or units that are all mm or empty."""
    if header is None or header.kind != "nrrd":
        return []
    units = re.findall(r'"([^"]*)"', header.fields.get("space units", ""))
    odd = sorted({u.strip() for u in units if u.strip().lower() not in ("", "mm", "millimeter", "millimeters",
                                                                        "millimetre", "millimetres")})
    if not odd:
        return []
    return [f"the NRRD header gives its space units as {', '.join(repr(u) for u in odd)}, not mm: spacing and "
            f"origin are read as mm, as ITK and 3D Slicer read them, so if the header is right every volume (mL) and "
            f"length (mm) measured on this image is off by that unit's factor. Convert the image to mm (or remove "
            f"the field if its numbers are mm)."]


def _anatomical_orientation_warnings(header: Optional[_Header], direction_matrix: np.ndarray) -> List[str]:
    """A warning when a MetaImage header's ``AnatomicalOrientation`` names other patient axes than its direction
    (``direction_matrix``: 3 x 3, unit columns = the x, y, z axes in LPS; ITK's reading of ``TransformMatrix``,
    which this tool and 3D Slicer follow, while ITK ignores the letters). The letters are taken both ways: the
    side each axis runs from, as ITK writes them (``RAI`` for the identity), and the side it runs to (``LPS``),
    as some writers do; they agree when every axis lies within 60 degrees of the one its letter names. The warning
    names the field the direction came from (``TransformMatrix``, ``Rotation`` or ``Orientation``), or, with none of
    them (left out, or misspelled: :func:`_unrecognised_geometry_key_warnings`), the identity ITK took. Nothing
    for a NRRD, or letters that are not three known ones (``???``)."""
    letters = header.fields.get("anatomicalorientation", "") if header is not None and header.kind == "metaimage" \
        else ""
    if len(letters) != 3 or not set(letters) <= set(_RUNS_FROM):
        return []
    direction = np.asarray(direction_matrix, dtype=float)
    cosines = np.sum(direction * np.array([_RUNS_FROM[c] for c in letters]).T, axis=0)
    if np.all(cosines > 0.5) or np.all(cosines < -0.5):
        return []
    source = next((name for name in _METAIMAGE_GEOMETRY_SPELLING["direction"] if name in header.names), None)
    if source is None:  # no direction field ITK reads (left out, or misspelled): ITK took the identity
        return [f"the MetaImage header's AnatomicalOrientation ({letters.upper()}) names other axes than the "
                f"identity direction ({_runs_from_letters(direction)} in the same notation) that ITK and 3D Slicer "
                f"take for a header without TransformMatrix, Rotation or Orientation; the identity was followed, as "
                f"they follow it. If left and right or the slice order look wrong, give the direction in the "
                f"header's TransformMatrix"]
    return [f"the MetaImage header's AnatomicalOrientation ({letters.upper()}) names other axes than its "
            f"{source} ({_runs_from_letters(direction)} in the same notation); the {source} was "
            f"followed, as ITK and 3D Slicer follow it. If left and right or the slice order look wrong, fix the "
            f"header"]


_METAIO_KEYS = frozenset((
    "Comment", "ObjectType", "ObjectSubType", "NDims", "Name", "ID", "ParentID", "Color", "AcquisitionDate",
    "FileFormatVersion", "CompressedData", "CompressedDataSize", "BinaryData", "BinaryDataByteOrderMSB",
    "ElementByteOrderMSB", "Position", "Origin", "Offset", "TransformMatrix", "Rotation", "Orientation",
    "CenterOfRotation", "AnatomicalOrientation", "DistanceUnits", "ElementSpacing", "ElementSize", "DimSize",
    "HeaderSize", "HeaderSizesPerDataFile", "Modality", "SequenceID", "ElementMin", "ElementMax",
    "ElementNumberOfChannels", "ElementType", "ElementDataFile", "ElementToIntensityFunctionSlope",
    "ElementToIntensityFunctionOffset"))
"""The MetaImage fields MetaIO (ITK's reader) knows, spelled as it matches them (case-sensitively)."""
_METAIMAGE_GEOMETRY_KEYS = {
    "transformmatrix": "direction", "rotation": "direction", "orientation": "direction", "direction": "direction",
    "offset": "origin", "position": "origin", "origin": "origin",
    "elementspacing": "spacing", "elementsize": "spacing", "spacing": "spacing",
    "centerofrotation": "", "anatomicalorientation": ""}
"""Lower-case geometry field names (and the names other formats give them) -> what ITK takes without them
(``""``: nothing, ITK does not build the image's geometry from it)."""
_METAIMAGE_GEOMETRY_SPELLING = {"direction": ("TransformMatrix", "Rotation", "Orientation"),
                                "origin": ("Offset", "Position", "Origin"),
                                "spacing": ("ElementSpacing", "ElementSize")}
_METAIMAGE_GEOMETRY_DEFAULT = {"direction": "the identity direction (axes along L, P, S: a flip or tilt the field "
                                            "gives is lost)",
                               "origin": "the origin (0, 0, 0)", "spacing": "1 mm voxels"}


def _unrecognised_geometry_key_warnings(header: Optional[_Header]) -> List[str]:
    """A warning for each MetaImage header field MetaIO does not know whose name is close to a geometry field's
    (``TransfromMatrix``, ``transformmatrix``, ``ElementSpacings``, ``Orgin``; ``difflib``, 0.8) or is another
    format's name for one (``Direction``, ``Spacing``), where the header has no field MetaIO reads for that
    geometry: ITK (so 3D Slicer and this tool) ignores the line and takes the identity direction, the origin
    (0, 0, 0) or 1 mm voxels, which read a left-right flipped CT unflipped without a word. Other unknown fields
    (a writer's own) are left alone. Nothing for a NRRD."""
    import difflib

    if header is None or header.kind != "metaimage":
        return []
    given = set(header.names) & _METAIO_KEYS
    notes = []
    for name in header.names:
        if not name or name in _METAIO_KEYS:
            continue
        match = difflib.get_close_matches(name.lower(), list(_METAIMAGE_GEOMETRY_KEYS), n=1, cutoff=0.8)
        what = _METAIMAGE_GEOMETRY_KEYS[match[0]] if match else ""
        if not what or given & set(_METAIMAGE_GEOMETRY_SPELLING[what]):
            continue
        spellings = _METAIMAGE_GEOMETRY_SPELLING[what]
        spellings = ", ".join(spellings[:-1]) + " or " + spellings[-1]
        notes.append(f"the MetaImage header's field '{name}' is not one ITK reads (it reads the {what} from "
                     f"{spellings}, spelled so) and the header has none of those, so it was read with "
                     f"{_METAIMAGE_GEOMETRY_DEFAULT[what]}, as ITK and 3D Slicer read it. If '{name}' was "
                     f"meant to give the {what}, rename it in the header and read the file again")
    return notes


def _runs_from_letters(direction_matrix: np.ndarray) -> str:
    """The ``AnatomicalOrientation`` ITK writes for a direction (3 x 3, columns = the x, y, z axes in LPS): for
    each axis the side it runs from, of the patient axis it is nearest (``RAI`` for the identity)."""
    from ..orientation import _axis_assignment

    index_axis_of, signs = _axis_assignment(np.asarray(direction_matrix, dtype=float))
    letters = [""] * 3
    for patient_axis, (index_axis, sign) in enumerate(zip(index_axis_of, signs)):
        letters[index_axis] = ("RL", "AP", "IS")[patient_axis][0 if sign > 0 else 1]
    return "".join(letters)


def detached_data_file(path: Path) -> Optional[Path]:
    """The one data file a NRRD (``data file``) or MetaImage (``ElementDataFile``) header ``path`` keeps its voxels
    in, or None: voxels in the header's own file, a list of files or a numbered pattern, or no such header. The
    batch's fingerprint of a CT covers it: a .mhd whose .raw changed was skipped as already segmented."""
    header = _read_header(Path(path))
    if header is None:
        return None
    if header.kind == "nrrd":
        name = header.fields.get("data file") or header.fields.get("datafile") or ""
    else:
        name = _metaimage_data_file(header)
    local = name.upper() == "LOCAL" if header.kind == "nrrd" else _metaimage_local(name)
    if not name or local or _several_data_files(name):
        return None
    return Path(path).parent / name


def _several_data_files(name: str) -> bool:
    """Whether a header's data-file value names a list of files (``LIST``) or a numbered pattern, not one file."""
    return name.upper().startswith("LIST") or "%" in name or " " in name


def _detached_size(header: Path, name: str) -> "Optional[int]":
    """Bytes of the data file ``name`` a header names (relative to the header's folder), or None for a list of files
    or a numbered pattern, which is not judged. InputError when that file is not there (a MetaImage header whose
    ``.raw`` was left behind was called 'truncated, the file holds 0 bytes': the bad-input audit) or is no regular
    file (a named pipe hung ITK's read for ever, ``/dev/stdin`` too when a terminal or pipe held it)."""
    if _several_data_files(name):
        return None
    target = header.parent / name  # an absolute name stays absolute
    if not target.exists():
        raise InputError(f"Cannot read '{header}': its voxels are in the data file '{name}' its header names, which "
                         f"is not there ({target}). Keep the header and its data file together (copy both).")
    if not target.is_file():  # a FIFO, socket or device: ITK waited for ever on a pipe nobody wrote to
        raise InputError(f"Cannot read '{header}': the data file '{name}' its header names is not a regular file (a "
                         f"pipe, socket or device: {target}). Point the header at the file that holds the voxels.")
    return target.stat().st_size


def data_bytes(reader: Any) -> int:
    """Bytes of voxel data an ITK reader's header describes (after ``ReadImageInformation``): voxels x components
    per voxel x bytes per component."""
    return math.prod(int(n) for n in reader.GetSize()) * int(reader.GetNumberOfComponents()) \
        * _itk_itemsize(reader.GetPixelID())


def check_deflated_data(path: Path, stored: Optional[_StoredData], nbytes: int, keep: bool = False,
                        warnings: Optional[List[str]] = None,
                        shape_xyz: Optional[Sequence[int]] = None) -> Optional[np.ndarray]:
    """Refuse a compressed NRRD / MetaImage (``stored``: :func:`_stored_data` of ``path``; nothing is checked when
    it is None or uncompressed) whose voxel data is not one whole, intact zlib or gzip stream of at least
    ``nbytes`` bytes (inflated here): ITK's MetaImage reader only prints "Uncompress failed" and returns whatever
    it inflated, and its gzip NRRD reader often says nothing, so a label map with one flipped byte read
    113-4772 mL of liver where it holds 1087, with exit 0. ``keep``: return the stream's first ``nbytes``
    (uint8), from which :func:`_voxels_from_inflated` builds the voxels without ITK inflating them again;
    else they are dropped (one more inflate of the data, about 0.2 s per 50 MB) and None is returned, as it is
    when nothing was checked. A MetaImage's data is the one stream ITK inflates (:func:`_metaimage_stream`; a
    note on bytes after it is added to ``warnings``); a NRRD's, every gzip member to the data's end. Data after
    the ``nbytes`` is inflated only as far as :func:`~.gzip_inflate.after_range_count_limit` (more is not needed
    to know that it is there; 4 GiB of zeros after the voxels took 4-5.5 s to count): past that, the stream's end
    is neither read nor checked. ``shape_xyz``: the header's voxel counts ``(x, y, z)``; with it and
    ``warnings``, a slice or more of data after the voxels adds the warning a raw file gets (a header edited to
    fewer slices: the rest of the scan is not read)."""
    from .gzip_inflate import after_range_count_limit, inflate_to_end

    if stored is None or not stored.deflated:
        return None
    data_path, start = stored.data_path, stored.start
    counted_up_to = after_range_count_limit(nbytes)  # bytes after the voxels that are inflated to count them
    max_after = counted_up_to + (0 if keep else nbytes)  # after the range inflated: the voxels too when not kept
    try:
        if stored.stream_limit is None:
            kept, after = inflate_to_end(data_path, 0, nbytes if keep else 0, start=start, allow_short=True,
                                         max_after=max_after)
        else:
            kept, after = _metaimage_stream(path, stored, nbytes, keep, warnings, max_after)
    except InputError as exc:
        raise InputError(str(exc).replace(f"'{data_path}'", f"'{path}'")) from None
    except MemoryError as exc:  # the voxels' buffer (keep): named as the reader's own failures are
        raise out_of_memory_error(exc, reading=str(path)) from exc
    produced = kept.size + after
    if produced < nbytes:
        raise InputError(f"Cannot read '{path}': the file is truncated or corrupt (its compressed data holds "
                         f"{produced} of the {nbytes} bytes its header describes). Copy or export it again.")
    if warnings is not None and shape_xyz is not None and nbytes > 0:  # as for raw data and .nii.gz
        itemsize = nbytes // max(1, math.prod(int(n) for n in shape_xyz))  # all of a voxel's components
        warnings += data_after_voxels_warning(shape_xyz, itemsize, produced - nbytes, counted_up_to=counted_up_to)
    return kept if keep else None


MAX_HEADER_DIMENSIONS = 16
"""The most axes a NRRD (``dimension``) or MetaImage (``NDims``) header may name before ITK reads it: ITK's MetaIO
reader corrupted the heap (glibc abort) at NDims 65-100 and crashed (SIGSEGV) at -3 or 1000 (the fuzzing audit); a
CT has 3 (4 with a trailing single axis)."""


MAX_NRRD_KEY_VALUES = 25_000
"""The most ``key:=value`` entries a NRRD header may hold before ITK reads it: ITK's (teem's) header parser looks
each new key up among those before it, so its time grows with their square: 50,000 took 4 s, 500,000 (a
``.seg.nrrd`` claiming 100,000 segments) over 5 minutes. A Slicer segmentation writes about 9 a segment (2000
segments, :data:`~LiverTumorSegLib.segnrrd.MAX_SEGMENTS`: 18,000); a CT a handful."""

_NRRD_HEADER_READ_BYTES = 65536  # as _file_head reads: a header is a few KB (a 1 MiB buffer was most of a small
# label map's read peak)
_NRRD_HEADER_LINE_BYTES = 16 << 20  # a longer line: a damaged header, refused (nrrd_header_keys)


_LINE_END = re.compile(b"\r\n|\r|\n")


def _header_lines(handle: Any) -> Iterator[bytes]:
    """The lines of ``handle`` from where it is, without their ends, read 64 KiB at a time: a line ends at
    ``\\n``, ``\\r\\n`` or a lone ``\\r``, as teem (ITK's NRRD reader) reads them (a header with ``\\r`` alone
    between its lines is read by ITK, and was one long line here: 40,000 key/value lines passed the count and took
    ITK 7.8 s). Stops at the file's end; raises :class:`_HeaderLineTooLong` at a line longer than 16 MiB; each byte is
    looked at once (joining the pieces of a long line at every read took 0.8 s to give up on a 16 MiB one)."""
    pending: List[bytes] = []  # the pieces of a line not ended yet
    pending_bytes, after_cr = 0, False
    while True:
        chunk = handle.read(_NRRD_HEADER_READ_BYTES)
        if not chunk:
            if pending_bytes:
                yield b"".join(pending)
            return
        if after_cr and chunk.startswith(b"\n"):  # the '\n' of a '\r\n' split between two reads
            chunk = chunk[1:]
        after_cr = chunk.endswith(b"\r")
        pieces = _LINE_END.split(chunk)
        for piece in pieces[:-1]:
            pending.append(piece)
            yield b"".join(pending)
            pending, pending_bytes = [], 0
        pending.append(pieces[-1])
        pending_bytes += len(pieces[-1])
        if pending_bytes > _NRRD_HEADER_LINE_BYTES:
            raise _HeaderLineTooLong()


class _HeaderLineTooLong(ValueError):
    """A header line longer than 16 MiB (:func:`_header_lines`): no image's header needs one."""


def nrrd_header_keys(path: Union[str, Path]) -> Iterator[str]:
    """The keys of the ``key:=value`` lines of the NRRD header of ``path`` (teem's rule: the ``:=`` before any
    ``': '``; comments skipped), in file order, read 64 KiB at a time up to the blank line that ends the header and
    no further than the caller takes them (lines end as teem ends them: :func:`_header_lines`). Nothing for a file
    that is not NRRD or cannot be read (ITK's own read says why); InputError at a header line longer than 16 MiB: the
    count stopped there, and a header of 200,000 keys behind one long comment went to ITK, which parsed it for
    minutes (the file-safety audit)."""
    try:
        handle = open(str(path), "rb")
    except OSError:
        return
    with handle:
        if handle.read(4) != b"NRRD":
            return
        lines = _header_lines(handle)
        try:
            next(lines, None)  # the rest of 'NRRD0004'
            for line in lines:
                if not line:  # the blank line that ends the header
                    return
                if line.startswith(b"#"):
                    continue
                pair, field = line.find(b":="), line.find(b": ")
                if pair > 0 and (field < 0 or pair < field):
                    yield line[:pair].decode("latin-1")
        except _HeaderLineTooLong:
            raise InputError(f"Cannot read '{path}': its NRRD header holds a line longer than "
                             f"{_NRRD_HEADER_LINE_BYTES // 2 ** 20} MiB, which no image's header needs; the header is "
                             f"damaged. Export the volume again.") from None


def check_nrrd_key_values(path: Union[str, Path]) -> None:
    """Refuse, before ITK parses it, a NRRD header with more than :data:`MAX_NRRD_KEY_VALUES` ``key:=value``
    entries (InputError), which ITK parses ever more slowly (minutes for a few hundred thousand); other files pass.
    Only as much of the header is read as it takes to know."""
    for count, _ in enumerate(nrrd_header_keys(path), start=1):
        if count > MAX_NRRD_KEY_VALUES:
            raise InputError(f"Cannot read '{path}': its NRRD header holds more than {MAX_NRRD_KEY_VALUES} key/value "
                             f"entries ('key:=value' lines), more than any image needs and more than ITK parses in "
                             f"reasonable time (its time grows with their square: 500,000 took minutes); the header "
                             f"is damaged. Export the volume again.")


def check_header_dimension(path: Path) -> None:
    """Refuse, before ITK reads it, a NRRD or MetaImage header whose axis count is not a whole number in
    1..:data:`MAX_HEADER_DIMENSIONS` or whose sizes are not whole numbers (:func:`_check_header_sizes`), or a NRRD
    header with more key/value entries than ITK parses in reasonable
    time (:func:`check_nrrd_key_values`): InputError; other files pass. So are headers whose fault ITK's own message
    misnames (:func:`_check_header_before_itk`)."""
    check_nrrd_key_values(path)
    header = _read_header(Path(path))
    if header is None:
        return
    _check_header_before_itk(Path(path), header)
    text = header.fields.get("dimension" if header.kind == "nrrd" else "ndims")
    if text is None:
        return
    try:
        count = int(text)
    except ValueError:
        count = -1
    if not 1 <= count <= MAX_HEADER_DIMENSIONS:
        field = "dimension" if header.kind == "nrrd" else "NDims"
        raise InputError(f"Cannot read '{path}': its header says {field} = {text}, not an axis count a CT file can "
                         f"have (a 3D volume has 3); the header is damaged. Export the volume again.")
    if header.kind == "metaimage":
        _check_metaimage_value_counts(path, header, count)
    _check_header_sizes(path, header, count)


def _check_header_before_itk(path: Path, header: _Header) -> None:
    """Refuse, naming the fault, a header ITK's header read fails on with a message that blames the file: a
    detached NRRD (``.nhdr``) whose one data file is not there (ITK said "not a valid .nhdr file (couldn't open
    ...)" and the header reader "Cannot read the header", where the header is fine: the ``.raw`` was left behind,
    which a MetaImage ``.mhd`` is told plainly), and a MetaImage ``HeaderSize`` that is no whole number (ITK said
    "File cannot be read ... for reading", as for a file without read permission)."""
    if header.kind == "nrrd":
        name = header.fields.get("data file") or header.fields.get("datafile")
        if name:
            _detached_size(path, name)  # InputError when the one data file it names is not there
    elif _metaimage_header_size(header.fields) is None:
        _check_metaimage_header_size(path, header)


MAX_HEADER_AXIS_SIZE = 2 ** 31 - 1
"""The most voxels along one axis a NRRD ``sizes`` or MetaImage ``DimSize`` value may give: ITK's NRRD reader kept
only the low 32 bits of a larger one (99999999999 became 1215752191)."""


def _check_header_sizes(path: Path, header: _Header, count: int) -> None:
    """Refuse a NRRD ``sizes`` or MetaImage ``DimSize`` whose first ``count`` values are not whole numbers of voxels
    in 0..:data:`MAX_HEADER_AXIS_SIZE` (digits only): ITK read ``1.5`` as 1, ``1e308`` and ``18446744073709551617``
    as 1 and ``8.5`` as 8, so a label map of 8 slices became one slice of background without an error (the reader
    fuzzing audit). A size of 0 is left to the reader's own 'zero size' message."""
    key = "sizes" if header.kind == "nrrd" else "dimsize"
    text = header.fields.get(key)
    if text is None:
        return
    words = text.split()[:count]
    if all(re.fullmatch(r"\+?\d+", word) and int(word) <= MAX_HEADER_AXIS_SIZE for word in words):
        return
    name = "sizes" if header.kind == "nrrd" else next((n for n in header.names if n.lower() == key), "DimSize")
    raise InputError(f"Cannot read '{path}': its header's {name} is '{text}', not {count} whole numbers of voxels "
                     f"(each 0..{MAX_HEADER_AXIS_SIZE}); the header is damaged. Export the volume again.")


_METAIMAGE_PER_AXIS_FIELDS = ("dimsize", "elementspacing", "elementsize", "offset", "origin", "position")
_METAIMAGE_MATRIX_FIELDS = ("transformmatrix", "rotation", "orientation")


def _check_metaimage_value_counts(path: Path, header: _Header, ndims: int) -> None:
    """Refuse a MetaImage header whose per-axis field (``DimSize``, ``ElementSpacing``, ``Offset``, ...) has fewer
    values than ``NDims`` (a matrix field fewer than ``NDims`` squared): MetaIO then reads the next line as the
    missing values, prints its own lines to the console (``ElementDataFile required and not defined``) and fails
    with a message that names neither the field nor the fault (the bad-input audit)."""
    for field in _METAIMAGE_PER_AXIS_FIELDS + _METAIMAGE_MATRIX_FIELDS:
        text = header.fields.get(field)
        needed = ndims * ndims if field in _METAIMAGE_MATRIX_FIELDS else ndims
        if text is None:
            continue
        name = next((written for written in header.names if written.lower() == field), field)
        if len(text.split()) < needed:
            raise InputError(f"Cannot read '{path}': its header's {name} has {len(text.split())} value(s) for NDims "
                             f"= {ndims} ({needed} needed); the header is damaged. Export the volume again.")
        if not _finite_numbers(text.split()[:needed]):  # MetaIO read 'Offset = nan 0 0' as (0, 0, 0) unsaid
            raise InputError(f"Cannot read '{path}': its header's {name} is '{text}', not {needed} finite "
                             f"numbers; the header is damaged. Export the volume again.")


def _finite_numbers(words: Sequence[str]) -> bool:
    """Whether every one of ``words`` is a finite number (``3``, ``-0.5``, ``1e-3``)."""
    try:
        return all(math.isfinite(float(word)) for word in words)
    except ValueError:
        return False


METAIMAGE_SUFFIXES = (".mha", ".mhd")
"""MetaImage file extensions, compared in lower case."""


def itk_file_reader(path: Union[str, Path]) -> Any:
    """A SimpleITK ``ImageFileReader`` of ``path``, told to use MetaImageIO for a ``.mha``/``.mhd`` in any letter
    case: ITK picks that reader by the extension in lower case only, so a valid ``CT.MHA`` (as Windows tools name
    files) was refused as 'not a valid .mha file (Unable to determine ImageIO reader)'. NRRD is found in any case."""
    reader = _sitk().ImageFileReader()
    reader.SetFileName(str(path))
    if full_suffix(path) in METAIMAGE_SUFFIXES and Path(path).suffix not in METAIMAGE_SUFFIXES:
        reader.SetImageIO("MetaImageIO")  # only then: ITK's choice keeps MetaIO's stderr lines off a damaged .mha
    return reader


def _information_reader(path: Path) -> Any:
    """An ITK reader of ``path`` after its ``ReadImageInformation`` (ITK's own lines kept off stderr); RuntimeError
    from ITK for a file it cannot read, InputError for a header ITK must not see (:func:`check_header_dimension`)."""
    check_header_dimension(path)
    reader = itk_file_reader(path)
    with _quiet_itk():
        reader.ReadImageInformation()
    return reader


def check_written_image(path: Path) -> None:
    """Raise InputError when the NRRD or MetaImage file ITK (or Slicer's storage node) just wrote at ``path`` does
    not hold all its voxel data: on a full disk ITK's NRRD writer reports nothing, and a 7.5 kB label map came out
    as 4 kB that no reader opens ('wrote', exit 0; with --overwrite it replaced the good file). Compressed data is
    inflated once to check it (:func:`check_deflated_data`, about 0.2 s per 50 MB of voxels); a file whose storage
    cannot be told cheaply is read whole by ITK."""
    try:
        reader = _information_reader(path)
        stored = _stored_data(path, _read_header(path))
        if stored is None:
            with _quiet_itk():
                reader.Execute()
            return
    except RuntimeError as exc:
        raise InputError(f"the written file cannot be read back ({_itk_reason(exc)})") from None
    needed = data_bytes(reader)
    if stored.deflated:
        try:
            check_deflated_data(path, stored, needed)
        except InputError:
            raise InputError("the written file's compressed voxel data is incomplete") from None
    elif stored.size < needed:
        raise InputError(f"the written file holds {stored.size} of its {needed} bytes of voxel data")


def _metaimage_stream(path: Path, stored: _StoredData, nbytes: int, keep: bool,
                      warnings: Optional[List[str]], max_after: Optional[int] = None) -> Tuple[np.ndarray, int]:
    """``(the first nbytes when keep, else none; number of inflated bytes after them)`` of a compressed MetaImage
    ``path``'s voxel data (``stored``: :func:`_stored_data` of it; ``nbytes``: the bytes its header describes),
    read as ITK reads it: the one zlib (or gzip) stream that begins at ``stored.start``, inflated to its end
    marker, which must lie within the ``stored.stream_limit`` bytes ITK inflates (its ``CompressedDataSize``).
    Bytes after the stream's end are ignored, as MetaIO stops at that marker; unless they are all zero (padding),
    ``warnings`` gets a note saying how many. InputError when the stream holds fewer than ``nbytes`` and a second
    compressed stream follows it (the voxels continue there, where ITK does not read). ``max_after``: inflating
    stops once more than this many bytes follow the ones returned (:func:`~.gzip_inflate.inflate_one_stream`);
    the stream's end, and so what follows it, is then not looked at."""
    from .gzip_inflate import inflate_one_stream

    kept, after, length = inflate_one_stream(stored.data_path, nbytes if keep else 0, start=stored.start,
                                             max_after=max_after)
    if length > stored.stream_limit:  # ITK would inflate the stream only in part
        raise _compressed_size_error(path, "corrupt or its header is wrong", str(stored.stream_limit), length)
    if max_after is not None and after > max_after:  # stopped inside the stream: its end is not known
        return kept, after
    trailing = stored.size - length
    if trailing > 0 and kept.size + after < nbytes and _starts_compressed_stream(stored.data_path,
                                                                                 stored.start + length):
        raise InputError(f"Cannot read '{path}': its voxels are split over more than one compressed stream (the "
                         f"first, of {length} bytes, holds {kept.size + after} of the {nbytes} bytes its header "
                         f"describes, and the voxels continue in a second compressed stream after it), but ITK, "
                         f"so 3D Slicer and this tool, reads only the first stream of a MetaImage. Export the image "
                         f"again with a tool that writes one stream (3D Slicer, SimpleITK), uncompressed, or as NIfTI "
                         f"or NRRD.")
    if trailing > 0 and warnings is not None and not _all_zero(stored.data_path, stored.start + length, trailing):
        where = "the file" if stored.data_path == path else f"its data file '{stored.data_path.name}'"
        warnings.append(f"{where} holds {trailing} bytes after its compressed voxel data (a complete stream of "
                        f"{length} bytes, its checksum correct); they were ignored, as ITK and 3D Slicer ignore "
                        f"them. If the file was meant to hold more, export it again")
    return kept, after


def _starts_compressed_stream(path: Path, start: int) -> bool:
    """Whether a zlib or gzip stream begins at byte ``start`` of ``path``: its first bytes inflate without an
    error (a zlib header's checksum, gzip's magic number, a valid first block)."""
    from .gzip_inflate import _GZIP_OR_ZLIB_WBITS

    with open(str(path), "rb") as handle:
        handle.seek(start)
        head = handle.read(64)
    try:
        zlib.decompressobj(_GZIP_OR_ZLIB_WBITS).decompress(head)
    except zlib.error:
        return False
    return len(head) >= 2


def _all_zero(path: Path, start: int, count: int, step: int = 1 << 24) -> bool:
    """Whether the ``count`` bytes of ``path`` from byte ``start`` on are all zero (read ``step`` bytes at a
    time; bytes past the file's end count as zero)."""
    with open(str(path), "rb") as handle:
        handle.seek(start)
        while count > 0:
            chunk = handle.read(min(step, count))
            if not chunk:
                return True
            if chunk.strip(b"\0"):
                return False
            count -= len(chunk)
    return True


_NRRD_TYPES = {name: code for code, names in {
    "i1": ("signed char", "int8", "int8_t"),
    "u1": ("uchar", "unsigned char", "uint8", "uint8_t"),
    "i2": ("short", "short int", "signed short", "signed short int", "int16", "int16_t"),
    "u2": ("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"),
    "i4": ("int", "signed int", "int32", "int32_t"),
    "u4": ("uint", "unsigned int", "uint32", "uint32_t"),
    "i8": ("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64", "int64_t"),
    "u8": ("ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"),
    "f4": ("float",), "f8": ("double",)}.items() for name in names}
"""NRRD ``type`` names (teem's spellings) -> numpy type code without byte order."""
_NRRD_LAYOUT_FIELDS = {"dimension", "type", "sizes", "endian", "encoding"}
"""Fields that :func:`_nrrd_voxel_dtype` reads: they say how the voxels are stored."""
_NRRD_FIELDS_KEEPING_VOXELS = {
    "content", "space", "space dimension", "space directions", "space origin", "space units", "spacings",
    "thicknesses", "axis mins", "axismins", "axis maxs", "axismaxs", "centers", "centerings", "labels", "units",
    "kinds", "measurement frame", "min", "max", "sample units", "sampleunits", "data file", "datafile"}
"""Fields that do not change the voxel values ITK returns (geometry comes from ITK's header read; a single
data file is where :func:`_stored_data` found the stream). Any other field (``old min``, ``block size``, a skip)
sends the read to ITK."""
_METAIMAGE_TYPES = {"met_char": "i1", "met_uchar": "u1", "met_short": "i2", "met_ushort": "u2", "met_int": "i4",
                    "met_uint": "u4", "met_long_long": "i8", "met_ulong_long": "u8", "met_float": "f4",
                    "met_double": "f8"}
"""MetaImage ``ElementType`` -> numpy type code (MET_LONG, whose size depends on the platform, is left to ITK)."""
_METAIMAGE_NAMES = {name.lower(): name for name in (
    "ObjectType", "NDims", "BinaryData", "CompressedData", "ElementNumberOfChannels", "DimSize", "ElementType",
    "BinaryDataByteOrderMSB", "ElementByteOrderMSB", "HeaderSize")}
"""The MetaImage fields the fast read relies on, spelled as MetaIO matches them (case-sensitively: ITK ignores a
``binarydatabyteordermsb`` line, so another spelling sends the file to ITK)."""


def _voxel_dtype(header: Optional[_Header], reader: Any, raw_too: bool = False) -> Optional[np.dtype]:
    """The numpy type, byte order included, of the voxels of a deflate-compressed NRRD / MetaImage as stored
    (``header``: :func:`_read_header` of it), when its header says exactly how ITK would turn the inflated bytes
    into voxels: a 3D image, ``(x, y, z)`` order with x fastest (a NRRD may have a ``list`` axis before x, whose
    values ITK reads as the components of a voxel: a multi-layer ``.seg.nrrd``), of a type ITK reads as the same
    numpy type (``reader``: after ``ReadImageInformation``), no byte or line skip and no value mapping. Else None:
    ITK reads the file. ``raw_too``: of uncompressed (raw) voxels as well."""
    components = int(reader.GetNumberOfComponents())
    if header is None or not (header.deflated or raw_too) or reader.GetDimension() != 3 \
            or (components != 1 and header.kind != "nrrd"):
        return None
    size = tuple(int(n) for n in reader.GetSize())
    if header.kind == "nrrd":
        dtype = _nrrd_voxel_dtype(header, size, components)
    else:
        dtype = _metaimage_voxel_dtype(header, size)
    if dtype is None or dtype.newbyteorder("=") != _itk_numpy_dtype(reader.GetPixelID()):
        return None
    return dtype


def _itk_numpy_dtype(pixel_id: int) -> np.dtype:
    """The numpy type SimpleITK gives the voxels of a scalar pixel type (native byte order)."""
    sitk = _sitk()
    return np.dtype(sitk.GetArrayViewFromImage(sitk.Image([1, 1, 1], pixel_id)).dtype)


def _with_byte_order(code: str, big_endian: Optional[bool]) -> Optional[np.dtype]:
    """``code`` (``"i2"``) in the stated byte order; one-byte types need none; None when a wider one has none."""
    if code[1] == "1":
        return np.dtype(code)
    if big_endian is None:
        return None
    return np.dtype((">" if big_endian else "<") + code)


_NRRD_LAYER_KINDS = ["list", "domain", "domain", "domain"]
"""The ``kinds`` of a 4D NRRD whose first (fastest) axis ITK reads as the components of a 3D image, as Slicer
writes a multi-layer ``.seg.nrrd``."""


def _nrrd_voxel_dtype(header: _Header, size_xyz: Tuple[int, ...], components: int = 1) -> Optional[np.dtype]:
    """:func:`_voxel_dtype` of a NRRD header whose ITK reader says ``size_xyz`` voxels of ``components``."""
    fields = header.fields
    sizes = ([str(components)] if components > 1 else []) + [str(n) for n in size_xyz]
    if set(fields) - _NRRD_LAYOUT_FIELDS - _NRRD_FIELDS_KEEPING_VOXELS or fields.get("dimension") != str(len(sizes)) \
            or fields.get("sizes", "").split() != sizes \
            or (components > 1 and fields.get("kinds", "").lower().split() != _NRRD_LAYER_KINDS):
        return None
    code = _NRRD_TYPES.get(" ".join(fields.get("type", "").lower().split()))
    endian = fields.get("endian", "").lower()
    if code is None or endian not in ("", "big", "little"):
        return None
    return _with_byte_order(code, {"big": True, "little": False}.get(endian))


def _metaimage_voxel_dtype(header: _Header, size_xyz: Tuple[int, ...]) -> Optional[np.dtype]:
    fields = header.fields
    if any(_METAIMAGE_NAMES.get(name.lower(), name) != name for name in header.names):
        return None
    if fields.get("objecttype", "image") != "image" or fields.get("ndims") != "3" \
            or fields.get("binarydata") != "true" or fields.get("elementnumberofchannels", "1") != "1" \
            or any(key.startswith("elementtointensity") for key in fields) \
            or fields.get("dimsize", "").split() != [str(n) for n in size_xyz]:
        return None
    code = _METAIMAGE_TYPES.get(fields.get("elementtype", ""))
    orders = {fields[key] for key in ("binarydatabyteordermsb", "elementbyteordermsb") if key in fields}
    if code is None or not orders <= {"true", "false"} or len(orders) > 1:
        return None
    return _with_byte_order(code, {"true": True, "false": False}.get(orders.pop()) if orders else None)


def _voxels_from_inflated(inflated: np.ndarray, dtype: np.dtype, size_xyz: Sequence[int],
                          components: int = 1) -> np.ndarray:
    """The ``(z, y, x)`` voxels (``(z, y, x, components)`` when ``components`` > 1, as SimpleITK's array of a
    vector image), in native byte order, that ``inflated`` (uint8, writable, components then x fastest) holds as
    ``dtype``: a view of it, swapped in place when stored in the other byte order; no copy."""
    shape = tuple(int(n) for n in size_xyz)[::-1] + ((int(components),) if components > 1 else ())
    voxels = inflated.view(dtype).reshape(shape)
    if not dtype.isnative:
        voxels = voxels.byteswap(inplace=True).view(dtype.newbyteorder("="))
    return voxels


def inflated_voxels(path: Path, reader: Any, header: Optional[_Header], stored: Optional[_StoredData],
                    warnings: Optional[List[str]] = None) -> Optional[np.ndarray]:
    """Check the voxel data of a deflate-compressed NRRD / MetaImage ``path`` (:func:`check_deflated_data`;
    ``reader``: its ITK reader after ``ReadImageInformation``; ``header`` and ``stored``: :func:`_read_header` and
    :func:`_stored_data` of it) and return the voxels that the check inflated when the header says exactly how ITK
    reads them (:func:`_voxel_dtype`): ``(z, y, x)``, or ``(z, y, x, components)``, native byte order, writable.
    So the stream is inflated once. Uncompressed (raw) voxels whose header says exactly how ITK reads them are
    read here too, in steps (:func:`~.gzip_inflate.read_range`), so that Ctrl-C (a batch reader's read stop) stops
    the read between two steps: ITK read them in one call that nothing could stop. None when ITK must read the
    voxels (``reader.Execute()``, which inflates a stream again). ``warnings``: the check's notes are added to it."""
    if stored is not None and not stored.deflated:
        raw_dtype = _voxel_dtype(header, reader, raw_too=True)
        if raw_dtype is None:
            return None
        from .gzip_inflate import read_range

        try:
            data = read_range(stored.data_path, stored.start, data_bytes(reader))
        except InputError as exc:  # a detached data file is named as the file the user gave
            raise InputError(str(exc).replace(f"'{stored.data_path}'", f"'{path}'")) from None
        except MemoryError as exc:  # the voxels' buffer: named as the reader's own failures are
            raise out_of_memory_error(exc, reading=str(path)) from exc
        return _voxels_from_inflated(data, raw_dtype, reader.GetSize(), reader.GetNumberOfComponents())
    stored_dtype = _voxel_dtype(header, reader) if stored is not None else None
    inflated = check_deflated_data(path, stored, data_bytes(reader), keep=stored_dtype is not None,
                                   warnings=warnings, shape_xyz=_check_3d_shape(tuple(reader.GetSize()), str(path)))
    if inflated is None:
        return None
    return _voxels_from_inflated(inflated, stored_dtype, reader.GetSize(), reader.GetNumberOfComponents())


def _missing_spacing_notes(header: Optional[_Header]) -> List[str]:
    """A warning when a NRRD header has neither ``space directions`` nor ``spacings``, or a MetaImage one neither
    ``ElementSpacing`` nor ``ElementSize``: ITK then takes 1 mm voxels, and volumes and diameters were computed on
    them without a word (a 1043 mL liver measured 38.6 mL; the fuzzing audit)."""
    if header is None:
        return []
    keys = ("space directions", "spacedirections", "spacings") if header.kind == "nrrd" else \
        ("elementspacing", "elementsize")
    if any(key in header.fields for key in keys):
        return _nrrd_axes_without_spacing_notes(header)
    return ["the header gives no voxel spacing, so 1 mm voxels were assumed (as ITK and 3D Slicer read it): volumes "
            "(mL) and sizes (mm) are right only if the voxels are 1 mm. Export the volume with its spacing"]


def _nrrd_axes_without_spacing_notes(header: _Header) -> List[str]:
    """A warning when a NRRD header gives spacing for some axes only: ``none`` in ``space directions`` or ``nan``
    in ``spacings`` for an axis of the 3-D volume (NRRD's mark of a non-spatial axis). ITK then takes 1 mm along
    that axis, and a CT of 3 mm slices was measured at a third of its volume without a word (the bad-input audit).
    Axes are numbered as the header lists them (1 = the fastest, x)."""
    if header.kind != "nrrd":
        return []
    fields = header.fields
    directions = fields.get("space directions", fields.get("spacedirections"))
    if directions is not None:
        entries = [v.lower() for v in re.findall(r"\([^)]*\)|none", directions, flags=re.IGNORECASE)]
    else:
        entries = [v.lower() for v in fields.get("spacings", "").split()]
    kinds = [k.lower() for k in fields.get("kinds", "").split()]
    missing = [i + 1 for i, entry in enumerate(entries) if entry in ("none", "nan")
               and (len(kinds) != len(entries) or kinds[i] in ("domain", "space"))]
    try:  # a .seg.nrrd's layers (or any list axis) have no spacing by right: only the 3 spatial axes need one
        non_spatial = max(int(fields.get("dimension", "3")) - 3, 0)
    except ValueError:
        non_spatial = 0
    if len(missing) <= non_spatial and len(kinds) != len(entries):
        return []
    if not missing:
        return []
    which = ", ".join(str(axis) for axis in missing)
    return [f"the header gives no spacing along axis {which} ('none' or 'nan' there), so 1 mm was assumed along it "
            f"(as ITK reads it): volumes (mL) and sizes (mm) are right only if that is the true spacing. Export the "
            f"volume with its spacing (for a CT: its slice spacing)"]


def _compressed_data_bytes(path: Path) -> Optional[int]:
    """Bytes of a deflate-compressed NRRD / MetaImage ``path``'s voxel data on disk (:func:`_stored_data`), None
    when it is not compressed or its header cannot tell (the full read says what is wrong)."""
    try:
        header = _read_header(path)
        stored = _stored_data(path, header) if header is not None else None
    except (InputError, OSError, ValueError):
        return None
    return int(stored.size) if stored is not None and stored.deflated else None


def checked_before_voxels(path: Path, reader: Any, copy_itemsize: Optional[int] = None
                          ) -> Tuple[Tuple[int, int, int], Optional[_Header], Optional[_StoredData], List[str]]:
    """The checks a NRRD or MetaImage file gets from the header ``reader`` (after ``ReadImageInformation``) before
    any voxel is read: a 3D shape, finite and bounded geometry, MetaImage fields ITK gets wrong, data that fits the
    bytes the file holds (a 4 KB file claiming 4 GiB), and the memory, for all of the reader's components (a
    ``.seg.nrrd``'s layers). Returns ``(shape_xyz, header, stored data, warnings)``: the warnings say that 1 mm
    voxels were assumed, or that a raw file holds a slice or more after its voxels. The CT reader and the
    ``.seg.nrrd`` reader share it. ``copy_itemsize``: bytes a voxel of the copy the reader makes beside the stored
    voxels (:func:`~.conversions.check_memory_for_read`; None: one of the stored type)."""
    shape = _check_3d_shape(tuple(reader.GetSize()), str(path))
    check_geometry_values(reader.GetSpacing(), reader.GetOrigin(), tuple(reader.GetDirection())[:9]
                          if reader.GetDimension() == 3 else _direction_3d(reader), str(path))
    itemsize = _itk_itemsize(reader.GetPixelID()) * int(reader.GetNumberOfComponents())
    header = _read_header(path)
    _check_nrrd_space_direction_lengths(path, header)
    check_nrrd_text_data(path, header)
    stored = _stored_data(path, header)
    _check_metaimage_header(path, header, stored)
    notes: List[str] = _missing_spacing_notes(header)
    if stored is not None:
        needed = check_data_fits_file(path, shape, itemsize, stored.size, stored.deflated)
        if not stored.deflated:  # a header edited to fewer slices (raw data), as NIfTI's reader says it
            notes += data_after_voxels_warning(shape, itemsize, stored.size - needed)
    check_memory_for_read(shape, itemsize, str(path), copy_itemsize=copy_itemsize,  # and the inflating buffers
                          compressed_bytes=stored.size if stored is not None and stored.deflated else None,
                          compressed_held_whole=itk_holds_compressed(header, reader, stored))
    return shape, header, stored, notes


def itk_holds_compressed(header: Optional[_Header], reader: Any, stored: Optional[_StoredData]) -> bool:
    """Whether reading a file (``header``, ``stored``: :func:`_read_header` and :func:`_stored_data` of it;
    ``reader``: its ITK reader after ``ReadImageInformation``) holds all its compressed voxel data beside the image:
    a compressed MetaImage that ITK inflates itself (:func:`_voxel_dtype` None: a header that does not say exactly
    how ITK reads it, e.g. 4 axes), as MetaIO reads the whole compressed block into memory first. A gzip NRRD that
    ITK reads is inflated as it streams (teem): its read rose 8.0 bytes a voxel above the process for a
    40 x 512 x 512 float64 one, the MetaImage's 15.6 (7.65 of them its compressed bytes; RSS, 30 Nov 2026)."""
    return stored is not None and stored.deflated and header is not None and header.kind != "nrrd" \
        and _voxel_dtype(header, reader) is None


def _check_nrrd_space_direction_lengths(path: Path, header: Optional[_Header]) -> None:
    """Refuse a NRRD ``space directions`` vector longer than :data:`~.conversions.MAX_HEADER_SPACING_MM`, from the
    header's text: ITK squares the coefficients for the length, and ``(1e308,0,0)`` overflowed and was read as 1 mm
    without a word (the reader fuzzing audit); a shorter too-long vector is refused after ITK's read as well."""
    from .conversions import MAX_HEADER_SPACING_MM

    if header is None or header.kind != "nrrd":
        return
    text = header.fields.get("space directions", header.fields.get("spacedirections"))
    if text is None:
        return
    lengths = []
    for vector in re.findall(r"\(([^)]*)\)|none", text, flags=re.IGNORECASE):
        try:
            values = [float(v) for v in vector.split(",")] if vector else []
        except ValueError:
            return  # ITK's own parse says what is wrong
        if not all(math.isfinite(v) for v in values):
            return
        lengths.append(math.hypot(*values) if values else float("nan"))  # hypot: no overflow
    if any(length > MAX_HEADER_SPACING_MM for length in lengths):
        shown = ", ".join("none" if math.isnan(v) else f"{v:g}" for v in lengths)
        raise InputError(f"'{path}' has voxel spacing ({shown}) mm in its header (the lengths of its space "
                         f"directions): no scanner's image is {MAX_HEADER_SPACING_MM:g} mm a voxel; the header is "
                         f"damaged. Fix it (e.g. re-export from the scanner/PACS).")


_NRRD_TEXT_ENCODINGS = {"ascii", "text", "txt"}
_NRRD_TEXT_TOKEN_LIMIT = 64
"""Characters of the longest number a NRRD's text voxels may hold (a double needs 24)."""
_NRRD_TEXT_DATA_REFUSED = re.compile(rb"[^0-9\s,+\-.eEnNaAiIfF]|\S{%d}" % (_NRRD_TEXT_TOKEN_LIMIT + 1))
"""A byte no number is written with, or a 'number' longer than :data:`_NRRD_TEXT_TOKEN_LIMIT` characters. ITK
splits the data at whitespace only: numbers joined by commas alone ('0,10,20') are one word to it, and crashed it
as a long number did."""


def check_nrrd_text_data(path: Path, header: Optional[_Header], chunk_bytes: int = 1 << 20) -> None:
    """Refuse (InputError), before ITK reads its voxels, a NRRD whose header says they are text (``encoding:
    ascii``) while its data holds bytes no number is written with (binary voxels under a wrong encoding) or a
    'number' longer than :data:`_NRRD_TEXT_TOKEN_LIMIT` characters: SimpleITK 2.5's NRRD reader crashed the whole
    process on such data (segmentation fault, exit 139, no message) once it held more than a few thousand bytes.
    Other files, a list of data files and data after ``line skip`` lines are not looked at. The data is read in
    pieces of ``chunk_bytes``."""
    if header is None or header.kind != "nrrd" or header.fields.get("encoding", "").lower() not in \
            _NRRD_TEXT_ENCODINGS or "line skip" in header.fields or "lineskip" in header.fields:
        return
    name = header.fields.get("data file") or header.fields.get("datafile")
    if name and _several_data_files(name):
        return
    data_path, start = (path.parent / name, 0) if name else (path, header.where + 2)
    overlap = b""  # the end of the piece before: a long 'number' split between two pieces is seen whole
    try:
        with open(str(data_path), "rb") as handle:
            handle.seek(start)
            while True:
                piece = handle.read(chunk_bytes)
                if not piece:
                    return
                if _NRRD_TEXT_DATA_REFUSED.search(overlap + piece):
                    break
                overlap = piece[-_NRRD_TEXT_TOKEN_LIMIT:]
    except OSError:
        return  # not there or unreadable: the reader's own refusal says so
    raise InputError(f"Cannot read '{path}': its header says the voxels are stored as text (encoding: "
                     f"{header.fields.get('encoding')}), but {data_path.name} holds bytes that are no numbers "
                     f"(binary voxels, numbers not separated by spaces or line breaks, or a damaged file); the "
                     f"header's encoding is wrong or the file is corrupt. Export the volume again.")


def _read_itk_file(path: Path, uint8_if_fits: bool = False) -> CTVolume:
    """A NRRD or MetaImage file as a :class:`CTVolume` (``uint8_if_fits``: see :func:`~.conversions.to_hu_dtype`)."""
    try:
        reader = _information_reader(path)
    except RuntimeError as exc:
        raise_if_out_of_memory(exc, str(path))
        from .formats import renamed_hint

        # a NIfTI renamed .nrrd got no 'rename it' hint, which the NIfTI reader gives (the input formats audit)
        raise InputError(f"Cannot read '{path}': not a valid {full_suffix(path)} file ({_itk_reason(exc)})"
                         f"{renamed_hint(path, full_suffix(path))}{non_ascii_path_hint(path)}.") from None
    if reader.GetNumberOfComponents() != 1:
        raise InputError(f"'{path}' has {reader.GetNumberOfComponents()} components per voxel (RGB or vector "
                         f"image); a scalar 3D CT volume is needed.")
    # the stored voxels (SimpleITK's image, or the inflated stream) and their HU copy, int16 or float32, made from a
    # view (_volume_from_sitk): a float64 file's copy is 4 bytes a voxel, not 8 (docs/speed.md, 30 Nov 2026)
    kind = _itk_numpy_dtype(reader.GetPixelID()).kind
    shape, header, stored, notes = checked_before_voxels(
        path, reader, copy_itemsize=hu_copy_itemsize(_itk_itemsize(reader.GetPixelID()), False,
                                                     unsigned=kind == "u", floating=kind == "f"))
    voxels = inflated_voxels(path, reader, header, stored, notes)
    if voxels is not None:
        volume = _volume_from_voxels(voxels, reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection(),
                                     str(path), uint8_if_fits)
        tags = reader  # the header's key/value pairs, as Execute's image would hold them
    else:
        try:
            with _quiet_itk():
                tags = reader.Execute()
        except RuntimeError as exc:  # ITK's "Failed to allocate memory for image." too
            raise_if_out_of_memory(exc, str(path))
            encoding = (header.fields.get("encoding", "") if header is not None and header.kind == "nrrd" else "")
            if encoding.strip().lower() in ("bzip2", "bz2"):  # valid NRRD (teem's unu writes it); NrrdIO lacks it
                raise InputError(f"Cannot read '{path}': its voxels are stored with bzip2 compression (encoding: "
                                 f"{encoding.strip()}), which the NRRD reader (ITK's NrrdIO) "
                                 f"cannot read; the file itself may be fine. Re-save it with gzip or raw encoding "
                                 f"(e.g. 'unu save -f nrrd -e gzip -i FILE -o OUT.nrrd') and segment that.") from None
            raise InputError(f"Cannot read '{path}': the file is truncated or corrupt ({_itk_reason(exc)}).") from None
        volume = _volume_from_sitk(tags, str(path), uint8_if_fits)
    volume.meta["format"] = full_suffix(path).lstrip(".")
    notes += _unrecognised_geometry_key_warnings(header)
    notes += _anatomical_orientation_warnings(header, volume.geometry.direction_matrix)
    notes += _space_units_warnings(header)
    # the space as ITK read it (its own spelling: '3D right handed' and '3Drighthanded' are '3D-right-handed'), as the
    # .seg.nrrd reader reads it; None where the header has none
    space = tags.GetMetaData("NRRD_space") if tags.HasMetaDataKey("NRRD_space") else None
    if header is not None and header.kind == "nrrd" and not nrrd_space_names_patient_sides(space):
        from ..volume import ORIENTATION_ASSUMED_KEY

        # no anatomical space: ITK (and 3D Slicer) take the axes as L, P, S; a NRRD stored right to left was segmented
        # mirrored (liver Dice 0) and its preview drew R and L as facts, with no word of doubt
        volume.meta[ORIENTATION_ASSUMED_KEY] = True
        notes.append(nrrd_without_space_text(path, space))
    if notes:
        volume.meta.setdefault("warnings", []).extend(notes)
    from .formats import CONTENT_KEY

    if tags.HasMetaDataKey(CONTENT_KEY):  # what a file written by this library says its voxels are
        volume.meta["content"] = tags.GetMetaData(CONTENT_KEY).strip()
    return volume


NRRD_SPACES_WITHOUT_PATIENT_SIDES = ("scanner-xyz", "3d-right-handed", "3d-left-handed")
"""The NRRD ``space`` values (lower case, as ITK reports them in ``NRRD_space``) that name a coordinate frame but no
patient side: ITK reads them as LPS, as it reads a header without ``space`` (the ``-time`` forms are 4-D spaces,
which ITK refuses for a 3-D image)."""


def nrrd_space_names_patient_sides(space: Optional[str]) -> bool:
    """Whether a NRRD header's ``space`` (as ITK reports it; None: the header has none) names the patient's sides
    (ITK reports RAS, LPS, LAS and their long forms as LPS); False for none and for
    :data:`NRRD_SPACES_WITHOUT_PATIENT_SIDES` (a CT
    written with ``space: scanner-xyz`` and RAS directions was read mirrored, its liver 157 mL instead of 1148,
    without the warning a header without ``space`` gets; the input formats audit)."""
    return space is not None and space.strip().lower() not in NRRD_SPACES_WITHOUT_PATIENT_SIDES


def nrrd_without_space_text(path: Path, space: Optional[str] = None) -> str:
    """The warning for a NRRD (or ``.seg.nrrd``) whose header has no ``space`` field, or one (``space``) that names
    no patient side: its sides are unknown, and it was read as ITK and 3D Slicer read it (LPS)."""
    said = f"gives 'space: {space.strip()}', which names no patient side" if space else "has no 'space' field"
    return (f"the NRRD header of '{Path(path).name}' {said}, so which patient side each axis runs to is "
            f"unknown: it was read as ITK and 3D Slicer read it, the axes running to the patient's left, back and "
            f"head (LPS). If left and right or front and back look wrong, re-export it with its orientation (a "
            f"'space: left-posterior-superior' line with 'space directions')")


FIRST_SLICE_MAX_BYTES = 64 << 20
"""The most bytes :func:`first_slice_values` reads or inflates for a slice (a 4096 x 4096 float32 slice); a file
claiming more is left to the full read, which checks it against the memory."""


def first_slice_values(path: Union[str, Path]) -> Optional[np.ndarray]:
    """The voxel values of the NRRD or MetaImage file ``path``'s first slice (its first x * y voxels as stored, z = 0),
    read from the file's bytes without the rest and without ITK: a few ms, where reading a compressed CT whole takes
    about a second. For what a folder's file most likely is, cheaply (as :func:`~.nifti.first_slice_values` for
    NIfTI): a CT's first slice nearly always holds air or padding far below 0 HU, a label map's never a value below
    0. None where the header does not say exactly how the voxels are stored (anything but a 3D scalar image of a
    plain type, raw or deflated, in the file or one data file, without skips or value mapping: such files are left
    to the full read), where the data is shorter than a slice or damaged, or the file cannot be read."""
    path = Path(path)
    if full_suffix(path) not in (".nrrd", ".nhdr") + METAIMAGE_SUFFIXES or not path.is_file():
        return None
    try:
        header = _read_header(path)
        if header is None:
            return None
        if header.kind == "nrrd":
            size_text = header.fields.get("sizes", "")
            raw = header.fields.get("encoding", "").lower() in _NRRD_RAW
        else:
            size_text = header.fields.get("dimsize", "")
            raw = not header.deflated
        if not re.fullmatch(r"\s*\d+\s+\d+\s+\d+\s*", size_text):
            return None
        size_xyz = tuple(int(n) for n in size_text.split())
        dtype = (_nrrd_voxel_dtype if header.kind == "nrrd" else _metaimage_voxel_dtype)(header, size_xyz)
        if dtype is None or not (raw or header.deflated):
            return None
        nbytes = size_xyz[0] * size_xyz[1] * dtype.itemsize
        stored = _stored_data(path, header)
        if stored is None or nbytes <= 0 or nbytes > FIRST_SLICE_MAX_BYTES:
            return None
        data = _first_bytes(stored, nbytes)
        if data is None:
            return None
        return np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("="))
    except KeyboardInterrupt:
        raise
    except Exception:  # noqa: BLE001 - a damaged header or data file: the full read says what is wrong
        return None


def _first_bytes(stored: _StoredData, nbytes: int, read_step: int = 1 << 16) -> Optional[bytes]:
    """The first ``nbytes`` bytes of voxel data ``stored`` holds (inflated when deflated: a gzip or zlib stream),
    or None when it holds fewer."""
    with open(str(stored.data_path), "rb") as handle:
        handle.seek(stored.start)
        if not stored.deflated:
            data = handle.read(nbytes)
            return data if len(data) == nbytes else None
        inflater = zlib.decompressobj(32 + 15)  # zlib tells a gzip (NRRD) from a zlib (MetaImage) header itself
        pieces, have, pending = [], 0, b""
        while have < nbytes:
            if not pending:
                pending = handle.read(read_step)
                if not pending:
                    return None
            piece = inflater.decompress(pending, nbytes - have)
            pending = inflater.unconsumed_tail
            pieces.append(piece)
            have += len(piece)
            if inflater.eof:
                break
        data = b"".join(pieces)
        return data if len(data) == nbytes else None
