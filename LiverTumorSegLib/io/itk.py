"""SimpleITK access: the lazy import, quiet ITK warnings, one-line ITK error texts, and reading NRRD / MetaImage
files (``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``) into a :class:`~LiverTumorSegLib.volume.CTVolume`."""
import contextlib
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterator, Optional, Tuple, Union

from ..errors import InputError
from ..fileutil import full_suffix
from ..volume import CTVolume, ImageGeometry
from .conversions import (_check_3d_shape, check_data_fits_file, check_geometry_values, check_memory_for_read,
                          to_hu_dtype, unit_direction)


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


def _volume_from_sitk(image, source: str) -> CTVolume:
    sitk = _sitk()
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"'{source}' has {image.GetNumberOfComponentsPerPixel()} components per voxel (RGB or "
                         f"vector image); a scalar 3D CT volume is needed.")
    size = tuple(image.GetSize())
    shape = _check_3d_shape(size, source)
    if image.GetDimension() != 3:  # e.g. 4D with a single time point: keep the first 3 axes
        index = [0] * image.GetDimension()
        extract = list(shape) + [0] * (image.GetDimension() - 3)
        image = sitk.Extract(image, extract, index)
    check_geometry_values(image.GetSpacing(), image.GetOrigin(), image.GetDirection(), source)
    array = to_hu_dtype(sitk.GetArrayFromImage(image))
    spacing, direction = unit_direction(image.GetSpacing(), image.GetDirection())
    geometry = ImageGeometry(spacing=spacing, origin=image.GetOrigin(), direction=direction)
    return CTVolume(array=array, geometry=geometry, source=source)


def _itk_itemsize(pixel_id: int) -> int:
    """Bytes per voxel component of a SimpleITK pixel type (a 1-voxel probe image, no data read)."""
    return int(_sitk().Image([1, 1, 1], pixel_id).GetSizeOfPixelComponent())


def _direction_3d(reader) -> Tuple[float, ...]:
    """The 3 x 3 spatial part (row-major) of an N-D ITK direction (N >= 3)."""
    n = reader.GetDimension()
    d = tuple(reader.GetDirection())
    return tuple(d[r * n + c] for r in range(3) for c in range(3)) if n >= 3 else (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)


_NRRD_DEFLATED = {"gzip", "gz"}
_NRRD_RAW = {"raw"}


def _stored_data(path: Path) -> "Optional[Tuple[int, bool, Path, int]]":
    """``(bytes the file holds for its voxels, deflate-compressed, the file holding them, where they start)`` of a
    NRRD or MetaImage header, or None when that cannot be told cheaply (ASCII or bzip2 encoding, a list of data
    files, an unreadable header): then the reader finds any truncation itself. Reads the header text only (a few
    KB)."""
    try:
        with open(str(path), "rb") as fh:
            head = fh.read(65536)
    except OSError:
        return None
    if head.startswith(b"NRRD"):
        return _nrrd_stored(path, head)
    if full_suffix(path) in (".mha", ".mhd"):
        return _metaimage_stored(path, head)
    return None


def _nrrd_stored(path: Path, head: bytes) -> "Optional[Tuple[int, bool, Path, int]]":
    end = head.find(b"\n\n")
    if end < 0:
        return None
    fields = {}
    for line in head[:end].decode("latin-1").splitlines()[1:]:
        if ":" in line and not line.startswith("#"):
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.lstrip("=").strip()
    encoding = fields.get("encoding", "").lower()
    if encoding not in _NRRD_RAW | _NRRD_DEFLATED or "line skip" in fields or "lineskip" in fields:
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
    if encoding in _NRRD_RAW and skip.lstrip("-").isdigit():
        size -= max(int(skip), 0)
    return size, encoding in _NRRD_DEFLATED, where, start


def _metaimage_stored(path: Path, head: bytes) -> "Optional[Tuple[int, bool, Path, int]]":
    marker = re.search(rb"(?m)^\s*ElementDataFile\s*=\s*(\S[^\r\n]*)\r?\n?", head)
    if marker is None:
        return None
    fields = {}
    for line in head[:marker.start()].decode("latin-1").splitlines():
        key, _, value = line.partition("=")
        fields[key.strip().lower()] = value.strip().lower()
    if fields.get("headersize", "0") not in ("0", ""):
        return None
    deflated = fields.get("compresseddata", "false") == "true"
    name = marker.group(1).decode("latin-1").strip()
    local = name.upper() == "LOCAL"
    size = path.stat().st_size - marker.end() if local else _detached_size(path, name)
    return None if size is None else (size, deflated, path if local else path.parent / name,
                                      marker.end() if local else 0)


def _detached_size(header: Path, name: str) -> "Optional[int]":
    """Bytes of the data file ``name`` a header names (relative to the header's folder; 0 when it is missing), or
    None for a list of files or a numbered pattern, which is not judged."""
    if name.upper().startswith("LIST") or "%" in name or " " in name:
        return None
    target = header.parent / name  # an absolute name stays absolute
    return target.stat().st_size if target.is_file() else 0


def data_bytes(reader: Any) -> int:
    """Bytes of voxel data an ITK reader's header describes (after ``ReadImageInformation``): voxels x components
    per voxel x bytes per component."""
    return math.prod(int(n) for n in reader.GetSize()) * int(reader.GetNumberOfComponents()) \
        * _itk_itemsize(reader.GetPixelID())


def check_deflated_data(path: Path, stored: "Optional[Tuple[int, bool, Path, int]]", nbytes: int) -> None:
    """Refuse a compressed NRRD / MetaImage (``stored``: :func:`_stored_data` of ``path``; nothing is checked when
    it is None or uncompressed) whose voxel data is not one whole, intact zlib or gzip stream of at least
    ``nbytes`` bytes (inflated here and dropped): ITK's MetaImage reader only prints "Uncompress failed" and
    returns whatever it inflated, and its gzip NRRD reader often says nothing, so a label map with one flipped
    byte read 113-4772 mL of liver where it holds 1087, with exit 0. Costs one more inflate of the data (about
    0.2 s per 50 MB)."""
    from .gzip_inflate import inflate_to_end

    if stored is None or not stored[1]:
        return
    data_path, start = stored[2], stored[3]
    try:
        produced = inflate_to_end(data_path, 0, 0, start=start)[1]
    except InputError as exc:
        raise InputError(str(exc).replace(f"'{data_path}'", f"'{path}'")) from None
    if produced < nbytes:
        raise InputError(f"Cannot read '{path}': the file is truncated or corrupt (its compressed data holds "
                         f"{produced} of the {nbytes} bytes its header describes). Copy or export it again.")


def _read_itk_file(path: Path) -> CTVolume:
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with _quiet_itk():
            reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(f"Cannot read '{path}': not a valid {full_suffix(path)} file ({_itk_reason(exc)})"
                         f"{non_ascii_path_hint(path)}.") from None
    if reader.GetNumberOfComponents() != 1:
        raise InputError(f"'{path}' has {reader.GetNumberOfComponents()} components per voxel (RGB or vector "
                         f"image); a scalar 3D CT volume is needed.")
    shape = _check_3d_shape(tuple(reader.GetSize()), str(path))
    check_geometry_values(reader.GetSpacing(), reader.GetOrigin(), tuple(reader.GetDirection())[:9]
                          if reader.GetDimension() == 3 else _direction_3d(reader), str(path))
    itemsize = _itk_itemsize(reader.GetPixelID())
    stored = _stored_data(path)
    if stored is not None:
        check_data_fits_file(path, shape, itemsize, *stored[:2])
    check_memory_for_read(shape, itemsize, str(path))
    check_deflated_data(path, stored, data_bytes(reader))
    try:
        with _quiet_itk():
            image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"Cannot read '{path}': the file is truncated or corrupt ({_itk_reason(exc)}).") from None
    volume = _volume_from_sitk(image, str(path))
    volume.meta["format"] = full_suffix(path).lstrip(".")
    from .formats import CONTENT_KEY

    if image.HasMetaDataKey(CONTENT_KEY):  # what a file written by this library says its voxels are
        volume.meta["content"] = image.GetMetaData(CONTENT_KEY).strip()
    return volume
