"""SimpleITK access: the lazy import, quiet ITK warnings, one-line ITK error texts, and reading NRRD / MetaImage
files (``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``) into a :class:`~LiverTumorSegLib.volume.CTVolume`."""
import contextlib
import re
from pathlib import Path
from typing import Iterator, Tuple

from ..errors import InputError
from ..fileutil import full_suffix
from ..volume import CTVolume, ImageGeometry
from .conversions import _check_3d_shape, check_geometry_values, check_memory_for_read, to_hu_dtype, unit_direction


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


def _read_itk_file(path: Path) -> CTVolume:
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with _quiet_itk():
            reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(f"Cannot read '{path}': not a valid {full_suffix(path)} file ({_itk_reason(exc)}).") from None
    if reader.GetNumberOfComponents() != 1:
        raise InputError(f"'{path}' has {reader.GetNumberOfComponents()} components per voxel (RGB or vector "
                         f"image); a scalar 3D CT volume is needed.")
    shape = _check_3d_shape(tuple(reader.GetSize()), str(path))
    check_geometry_values(reader.GetSpacing(), reader.GetOrigin(), tuple(reader.GetDirection())[:9]
                          if reader.GetDimension() == 3 else _direction_3d(reader), str(path))
    check_memory_for_read(shape, _itk_itemsize(reader.GetPixelID()), str(path))
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
