"""The public CT read: :func:`read_volume` picks the reader (DICOM folder or file, NIfTI, NRRD/MetaImage)."""
import os
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from ..errors import InputError, raise_if_out_of_memory
from ..fileutil import check_path_encoding, full_suffix, path_limit_hint, similar_names_hint, unexpanded_home_hint
from ..volume import CTVolume, ImageGeometry
from .dicom import _dicom_series_of_file, _read_dicom_folder
from .formats import (_SUPPORTED_TEXT, DICOM_FILE_SUFFIXES, IMAGE_2D_SUFFIXES, ITK_SUFFIXES, NIFTI_SUFFIXES, PathLike,
                      may_be_dicom_file)
from .conversions import (_check_3d_shape, check_geometry_values, hu_copy_itemsize, read_peak_voxel_bytes,
                          unit_direction)
from .itk import _read_itk_file, detached_data_file
from .nifti import _read_nifti


def _broken_link_hint(path: Path) -> str:
    """Why a ``path`` that 'ls' lists does not exist: " (it is a link to '...', which does not exist)" or " (it is a
    link in a loop of links)"; "" for a path that is no link."""
    import errno
    import os

    if not path.is_symlink():
        return ""
    try:
        os.stat(str(path))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return " (it is a link in a loop of links)"
    try:
        return f" (it is a link to '{os.readlink(str(path))}', which does not exist)"
    except OSError:
        return " (it is a link whose target cannot be reached)"


def read_volume(path: PathLike, series: Optional[str] = None, uint8_if_fits: bool = False) -> CTVolume:
    """Read a CT volume: NIfTI, NRRD, MetaImage file, a DICOM series folder, or one file of a DICOM series.

    ``series`` picks one series in a DICOM folder holding several (UID, list number, unique UID prefix
    or description). Returns a :class:`CTVolume` with a ``(z, y, x)`` array in HU (int16 when integral,
    else float32) and LPS geometry. Raises InputError with a one-line reason for anything unreadable.
    ``uint8_if_fits``: a NIfTI, NRRD or MetaImage file of integers that all lie in 0..255 (a label map, a 255 x p
    probability map) is read as uint8, without a whole-volume int16 copy (a DICOM series is read as a CT).
    """
    path = check_path_encoding(path, "Input")
    if not path.exists():
        too_long = path_limit_hint(path)  # on Windows an existing file may be 'missing' for its path's length
        parent_hint = "" if too_long or path.parent.exists() else f" (its folder '{path.parent}' does not exist either)"
        raise InputError(f"Input '{path}' does not exist{too_long}{parent_hint}{similar_names_hint(path)}"
                         f"{_broken_link_hint(path)}; check the path{unexpanded_home_hint(path)}.")
    if path.is_dir():
        return _read_dicom_folder(path, series)
    if path.name.upper() == "DICOMDIR":  # a DICOM medium's index: its series lie in the folders beside it
        return _read_dicom_folder(path.parent, series)
    suffix = full_suffix(path)
    if not path.is_file():  # a FIFO or a device (/dev/zero) has no size: it was called an empty, half-copied file
        raise InputError(f"Input '{path}' is not a regular file (a pipe, socket or device); give a CT file or a "
                         f"DICOM folder.")
    if path.stat().st_size == 0:
        raise InputError(f"Input '{path}' is an empty file (0 bytes); it was probably not copied completely.")
    if suffix in IMAGE_2D_SUFFIXES:
        from .formats import content_format
        found = content_format(path)
        if found is not None and found[1] not in IMAGE_2D_SUFFIXES:  # a NIfTI renamed x.png was '2D'
            raise InputError(f"'{path}' is named like a {suffix} picture (its content is {found[0]}: rename it to "
                             f"{found[1]}).")
        raise InputError(f"'{path}' is 2D (a {suffix} picture); a 3D CT volume is needed ({_SUPPORTED_TEXT}).")
    if suffix in DICOM_FILE_SUFFIXES or may_be_dicom_file(path):
        uid = _dicom_series_of_file(path)  # (IM000016 on a DICOMDIR medium is DICOM without an extension)
        return _read_dicom_folder(path.parent, series if series is not None else uid,
                                  given_file=(path, uid) if series is not None else None)
    if series is not None and suffix in NIFTI_SUFFIXES + ITK_SUFFIXES:  # was dropped without a word
        from ..errors import option_hint
        raise InputError(f"{option_hint('--series', 'series=')} picks a series in a DICOM folder, but '{path}' is a "
                         f"{suffix} file holding one volume; leave it out, or give the DICOM folder.")
    if suffix in NIFTI_SUFFIXES + ITK_SUFFIXES:
        before = file_fingerprint(path)  # of the file as it was when its voxels were read
        volume = _read_nifti(path, uint8_if_fits) if suffix in NIFTI_SUFFIXES else _read_itk_file(path, uint8_if_fits)
        volume.meta["input_file"] = before
        return volume
    from .formats import archive_text, is_archive_name, renamed_hint  # a NIfTI saved without its extension was only
    if is_archive_name(path):                                              # 'unknown'
        raise InputError(archive_text(path))
    raise InputError(f"Unknown file type '{suffix or path.name}' for '{path}'{renamed_hint(path, suffix)}; give "
                     f"{_SUPPORTED_TEXT}.")


FINGERPRINT_SAMPLE_BYTES = 1 << 20
"""Bytes read at each end of a CT file for its fingerprint's ``sample_sha256`` (:func:`file_fingerprint`)."""


def file_fingerprint(path: PathLike) -> dict:
    """``{"bytes": size, "modified_ns": modification time, "sample_sha256": ...}`` of a CT file: a ``segment``
    report records it (``input_file``), so a resumed batch can tell the file it segmented from another one put at
    the same path (:func:`same_file_content`). ``sample_sha256``: the SHA-256 of the file's first and last
    :data:`FINGERPRINT_SAMPLE_BYTES` (the header, the first slices and, in a gzip file, the trailer whose CRC-32
    covers all the voxels), read in milliseconds where hashing a whole 300-slice CT took a second."""
    import hashlib
    import os

    def add(handle, count: int) -> None:  # in small pieces: a label map is read in less memory than a CT holds
        while count > 0:
            piece = handle.read(min(count, 1 << 16))
            if not piece:
                return
            digest.update(piece)
            count -= len(piece)

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        stat = os.fstat(handle.fileno())
        add(handle, FINGERPRINT_SAMPLE_BYTES)
        if stat.st_size > FINGERPRINT_SAMPLE_BYTES:
            handle.seek(max(FINGERPRINT_SAMPLE_BYTES, stat.st_size - FINGERPRINT_SAMPLE_BYTES))
            add(handle, FINGERPRINT_SAMPLE_BYTES)
    found = {"bytes": int(stat.st_size), "modified_ns": int(stat.st_mtime_ns), "sample_sha256": digest.hexdigest()}
    if full_suffix(path) in ITK_SUFFIXES:  # a .mhd / .nhdr: its voxels are in another file, fingerprinted too
        data = detached_data_file(Path(path))
        if data is not None and data.is_file():
            found["data_file"] = file_fingerprint(data)
    return found


def same_file_content(recorded: dict, now: dict) -> bool:
    """Whether two :func:`file_fingerprint` s are of the same file content: the same size and the same
    ``sample_sha256`` (whatever the modification time: a copy that did not keep it, a file touched or rewritten
    unchanged). The time alone decided before: another patient's CT of the same size copied with its time kept
    (``cp -p``, an archive's whole-second times) was skipped as segmented. A fingerprint without ``sample_sha256``
    (reports written before 25 Nov 2026) is the same only with the same time. Keys ``recorded`` lacks are not
    compared. Not seen: an uncompressed file of the same size changed only between its first and last megabyte. A
    header's data file (``data_file``: a .mhd's .raw, a .nhdr's data file) is compared the same way: its voxels
    changed while the header stayed the same were taken for the CT segmented before."""
    if "data_file" in recorded and not ("data_file" in now and same_file_content(recorded["data_file"],
                                                                                 now["data_file"])):
        return False
    if "bytes" in recorded and recorded["bytes"] != now["bytes"]:
        return False
    if "sample_sha256" in recorded:
        return recorded["sample_sha256"] == now.get("sample_sha256")
    return "modified_ns" not in recorded or recorded["modified_ns"] == now["modified_ns"]


def read_header_geometry(path: PathLike) -> Tuple[ImageGeometry, Tuple[int, int, int]]:
    """``(geometry, shape_zyx)`` of a NIfTI, NRRD or MetaImage file from its header alone (no voxels read), as
    :func:`read_volume` would build them (NIfTI: sform before qform, as nibabel). Raises InputError when the
    file is not one of those or its header is unreadable."""
    geometry, shape_zyx, _, _, _ = _read_header(path)
    return geometry, shape_zyx


def read_peak_bytes(path: PathLike) -> int:
    """The most memory :func:`read_volume` of the NIfTI, NRRD or MetaImage file ``path`` holds at its peak, from its
    header alone, as the reader's own memory check counts it: its voxels at the bytes a voxel of the stored voxels it
    reads and of the Hounsfield copy it makes of them (NIfTI: :func:`~.nifti.nifti_read_itemsizes`, e.g. 8 for a
    float32 file, 4 for an int16 one; NRRD/MetaImage: the stored item size and
    :func:`~.conversions.hu_copy_itemsize`, e.g. 12 for a float64 file, 4 for an int16 one). Raises InputError as
    :func:`read_header_geometry` does. A batch counted every such read ahead at 4 bytes a voxel, where reading a
    512 x 512 x 100 float32 ``.nii.gz`` peaked at 7.6 (docs/speed.md). A compressed file (``.nii.gz``, gzip NRRD,
    compressed MetaImage) is counted at least at its inflating peak, the stored voxels and the buffers beside them
    (:func:`~.gzip_inflate.inflate_peak_bytes`): reading a 512 x 512 x 20 int16 ``.nii.gz`` allocated 7.6 bytes a
    voxel at its peak (tracemalloc), where 4 were counted. One formula with the reader's own check
    (:func:`~.conversions.read_peak_voxel_bytes`)."""
    _, shape_zyx, (read_itemsize, copy_itemsize), compressed, held_whole = _read_header(path)
    voxels = int(shape_zyx[0]) * int(shape_zyx[1]) * int(shape_zyx[2])
    return read_peak_voxel_bytes(voxels, read_itemsize, copy_itemsize, compressed, held_whole)


def _read_header(path: PathLike
                 ) -> Tuple[ImageGeometry, Tuple[int, int, int], Tuple[int, int], Optional[int], bool]:
    """``(geometry, shape_zyx, (read, copy) bytes a voxel, compressed bytes, held whole)`` of
    :func:`read_header_geometry` and :func:`read_peak_bytes`; compressed bytes: the size of a compressed file's voxel
    data on disk (an upper bound: the file's size), None for an uncompressed file; held whole: ITK's read holds them
    all beside the image (:func:`~.itk.itk_holds_compressed`)."""
    path = check_path_encoding(path, "Input")
    suffix = full_suffix(path)
    if suffix in NIFTI_SUFFIXES:
        import nibabel as nib

        from .nifti import _nifti_geometry, check_nifti_extensions, nifti_read_itemsizes
        check_nifti_extensions(path)
        try:
            image = nib.load(str(path), mmap=False)
        except Exception as exc:  # noqa: BLE001 - nibabel raises many types for bad files
            raise_if_out_of_memory(exc, str(path))
            raise InputError(f"Cannot read the NIfTI header of '{path}'.") from None
        # the reader's shape check first (a 2-D file raised IndexError here, a 16 x 16 x 1 x 5 one was 1 slice)
        shape_xyz = _check_3d_shape(image.shape, str(path))
        geometry, _ = _nifti_geometry(image.header, str(path), warn=False)
        itemsizes = nifti_read_itemsizes(image)
        compressed = os.path.getsize(str(path)) if suffix == ".nii.gz" else None
        held_whole = False
    elif suffix in ITK_SUFFIXES:
        from .itk import (_compressed_data_bytes, _direction_3d, _itk_itemsize, _itk_numpy_dtype, _quiet_itk,
                          check_header_dimension, itk_file_reader, non_ascii_path_hint)
        check_header_dimension(path)
        reader = itk_file_reader(path)
        try:
            with _quiet_itk():
                reader.ReadImageInformation()
        except RuntimeError as exc:
            raise_if_out_of_memory(exc, str(path))
            raise InputError(f"Cannot read the header of '{path}'{non_ascii_path_hint(path)}.") from None
        shape_xyz = _check_3d_shape(tuple(reader.GetSize()), str(path))  # as the reader: 2-D, 4-D refused
        spacing, direction = unit_direction(tuple(reader.GetSpacing())[:3], _direction_3d(reader))
        check_geometry_values(spacing, tuple(reader.GetOrigin())[:3], direction, str(path))  # a sheared grid too
        geometry = ImageGeometry(spacing=spacing, origin=tuple(reader.GetOrigin())[:3], direction=direction)
        stored = _itk_itemsize(reader.GetPixelID()) * int(reader.GetNumberOfComponents())
        # as _read_itk_file's check: the stored voxels and their HU copy (int16 or float32)
        kind = _itk_numpy_dtype(reader.GetPixelID()).kind
        itemsizes = (stored, hu_copy_itemsize(stored, False, unsigned=kind == "u", floating=kind == "f"))
        compressed = _compressed_data_bytes(path)
        held_whole = False
        if compressed is not None:
            from .itk import _read_header as _itk_header, _stored_data, itk_holds_compressed
            header = _itk_header(Path(path))
            held_whole = itk_holds_compressed(header, reader, _stored_data(Path(path), header))
    else:
        raise InputError(f"'{path}' is not a NIfTI, NRRD or MetaImage file.")
    return geometry, (shape_xyz[2], shape_xyz[1], shape_xyz[0]), itemsizes, compressed, held_whole


CT_FIRST_SLICE_AT_MOST_HU = -500.0
"""A NIfTI, NRRD or MetaImage file whose first slice holds a value at or below this is a CT (air is -1000 HU, the
scanner's padding lower), never a label or probability map, which holds no value below 0 (an 'ignore' value -1 is
not at or below it): :func:`first_slice_shows_ct`."""


def first_slice_shows_ct(path: PathLike) -> Optional[bool]:
    """Whether the file ``path`` holds a CT by its first slice (:func:`first_slice_values`, a few ms; a value at or
    below :data:`CT_FIRST_SLICE_AT_MOST_HU`); None where that slice cannot be read so. The one rule of the batch's
    CTs named as label maps and of evaluate's CTs in a label-map folder (two copies disagreed at -500 exactly: the
    review)."""
    first = first_slice_values(path)
    if first is None or first.size == 0:
        return None
    return bool(np.nanmin(first) <= CT_FIRST_SLICE_AT_MOST_HU)


def first_slice_values(path: PathLike) -> Optional[np.ndarray]:
    """The voxel values of the first slice (z = 0) of the NIfTI, NRRD or MetaImage file ``path``, read without the
    rest (:func:`~.nifti.first_slice_values`, else :func:`~.itk.first_slice_values`: a few ms a file); None for any
    other file or one whose first slice cannot be read so (its full read then says what is wrong). What a folder's
    file most likely is, cheaply: a CT's first slice nearly always holds air or padding far below 0 HU, a label
    map's never a value below 0 (the batch's label-map screen and evaluate's CT screen)."""
    from .itk import first_slice_values as itk_first_slice_values
    from .nifti import first_slice_values as nifti_first_slice_values

    first = nifti_first_slice_values(Path(path))
    return first if first is not None else itk_first_slice_values(path)
