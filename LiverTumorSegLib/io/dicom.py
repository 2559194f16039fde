"""DICOM series discovery, selection (``--series``) and reading (SimpleITK/GDCM; rescale slope/intercept
applied, values are HU), with slice-position and memory checks."""
import os
import re
import sys
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..asciinumbers import is_ascii_digits
from ..errors import InputError, option_hint, raise_if_out_of_memory
from ..fileutil import check_path_encoding, is_hidden_name, media_storage_sop_class
from ..progress import execute_with_read_stop, raise_if_read_stopped
from ..thread_warnings import warnings_hidden_in_this_thread
from ..volume import CTVolume
from .conversions import check_memory_for_read, hu_copy_itemsize, to_hu_dtype
from .formats import _FILE_FORMATS_TEXT, PathLike
from .itk import _direction_3d, _itk_itemsize, _itk_numpy_dtype, _itk_reason, _quiet_itk, _sitk, _volume_from_sitk


@dataclass
class DicomSeriesInfo:
    """One DICOM series found in a folder. ``files`` are sorted by slice position (GDCM order)."""

    uid: str
    description: str = ""
    modality: str = ""
    series_number: str = ""
    files: List[str] = field(default_factory=list)
    _first_header: Optional["_DicomFileHeader"] = field(default=None, repr=False, compare=False)
    # the header of files[0] as the series listing read it (None for a series made otherwise): the memory check
    # reuses it instead of reading that file again
    _headers: Optional[List["_DicomFileHeader"]] = field(default=None, repr=False, compare=False)
    # the headers of all files as the series listing read them (None for a series made otherwise): the pixel data
    # and orientation check reuses them (_refuse_pixel_data_of_another_size)

    @property
    def num_files(self) -> int:
        return len(self.files)

    def summary(self) -> str:
        """One line: ``UID 'description' (CT, SeriesNumber 4, 120 files)`` (the SeriesNumber a PACS shows, where the
        header has one: the listing's own numbers are places in the list, which a reader could not tell from it)."""
        number = f"SeriesNumber {self.series_number.strip()}" if self.series_number.strip() else ""
        what = ", ".join(x for x in (self.modality, number, f"{self.num_files} files") if x)
        desc = f" '{self.description}'" if self.description else ""
        return f"{self.uid}{desc} ({what})"


SERIES_HEADER_TOLERANCE = 1e-4
"""How far the files of one series may differ in ImageOrientationPatient (direction cosines) and PixelSpacing (mm)
by header rounding and still be one orientation and pixel size (the reader's rule; a DICOM SEG's too)."""


class SeveralSeriesError(InputError):
    """A folder holds several DICOM series and none was chosen (the message lists them, one per line).
    ``headline``: the message's first clause alone ("Folder 'x' holds 3 DICOM series"), for callers that give
    their own advice (a batch has no --series)."""

    def __init__(self, message: str, headline: str = "") -> None:
        super().__init__(message)
        self.headline = headline or message.split("\n")[0].split("; ")[0]


class _ThisThreadsPydicomRecords:
    """A filter of the ``pydicom`` logger dropping the records below ERROR that a thread inside
    :func:`dcmread_quietly` gives (other threads' pass): installed once."""

    def __init__(self) -> None:
        import threading

        self.local = threading.local()

    def filter(self, record: Any) -> bool:
        import logging

        return record.levelno >= logging.ERROR or not getattr(self.local, "depth", 0)


_PYDICOM_RECORDS = _ThisThreadsPydicomRecords()


def dcmread_quietly(*args: Any, **kwargs: Any) -> Any:
    """``pydicom.dcmread(*args, **kwargs)`` without pydicom's own warnings on stderr (its logger's records below
    ERROR and its ``UserWarning`` s, of this thread only): a damaged series' 'Invalid value for VR UI' or 'Expected
    explicit VR, but found implicit VR' came ten times before the one-line error this reader gives, and a sibling
    folder's damaged files spoke in a run that read another series (the bad-inputs audit). Errors are raised as
    pydicom raises them. The values of ``specific_tags`` are read once inside (:func:`_read_values_asked_for`); a
    whole header's values are not, and pydicom may still speak when the reader reads one of them."""
    import logging

    import pydicom

    logger = logging.getLogger("pydicom")
    if _PYDICOM_RECORDS not in logger.filters:
        logger.addFilter(_PYDICOM_RECORDS)
    local = _PYDICOM_RECORDS.local
    local.depth = getattr(local, "depth", 0) + 1
    try:
        with warnings_hidden_in_this_thread():
            dataset = pydicom.dcmread(*args, **kwargs)
            _read_values_asked_for(dataset, kwargs.get("specific_tags"))
            return dataset
    finally:
        local.depth -= 1


def _read_values_asked_for(dataset: Any, tags: Optional[Sequence[Any]]) -> None:
    """Read the values of ``tags`` (a dcmread's ``specific_tags``; not pixel data) once, inside the quiet block:
    pydicom converts and checks a value when it is first read, after dcmread returned. One that cannot be converted
    is left as it is (its reader meets the same error where it reads it). Every value of a whole header was read so
    first: a damaged tag no check reads then failed the file (a pixel-size check skipped, an enhanced CT refused),
    and deferred pixel data was read into memory (the review)."""
    from pydicom.tag import Tag

    for tag in tags or ():
        try:
            if Tag(tag).group == 0x7FE0:  # pixel data of any kind: never read here
                continue
            dataset[tag]
        except Exception:  # noqa: BLE001 - left to the reader that reads it, as before
            pass


def _dicom_tag(reader, tag: str) -> str:
    return reader.GetMetaData(tag).strip() if reader.HasMetaDataKey(tag) else ""


CHARSET_ENCODINGS = {"ISO_IR 100": "latin_1", "ISO_IR 101": "iso8859_2", "ISO_IR 109": "iso8859_3",
                     "ISO_IR 110": "iso8859_4", "ISO_IR 144": "iso8859_5", "ISO_IR 127": "iso8859_6",
                     "ISO_IR 126": "iso8859_7", "ISO_IR 138": "iso8859_8", "ISO_IR 148": "iso8859_9",
                     "ISO_IR 192": "utf_8", "GB18030": "gb18030", "GBK": "gbk", "ISO_IR 13": "shift_jis",
                     "ISO_IR 166": "tis_620"}
"""Python codecs of the single-byte and Unicode DICOM character sets (SpecificCharacterSet, 0008,0005)."""


def _dicom_text(reader, tag: str) -> str:
    """A text tag decoded with the file's SpecificCharacterSet: GDCM hands over the raw bytes, which Python saw
    as UTF-8, so a Latin-1 'portalvenös' became 'portalven\\udcf6s' and could not be matched by --series. Text in
    ISO 2022 character sets (Japanese 'ISO 2022 IR 87', Korean 'ISO 2022 IR 149': escape sequences switch the
    character set) is decoded by pydicom, as the standard describes (PS3.5 6.1.2.5): it read as escape codes and
    Latin-1 ('\\x1b$BJ"It...' for a Japanese description), which no --series could match (the DICOM audit)."""
    text = _dicom_tag(reader, tag)
    if not any("\udc80" <= c <= "\udcff" or c == "\x1b" for c in text):
        return text
    raw = text.encode("utf-8", "surrogateescape")
    charsets = [value.strip().upper() for value in _dicom_tag(reader, "0008|0005").split("\\")]
    if any(value.startswith("ISO 2022") for value in charsets):
        decoded = _iso2022_text(raw, charsets)
        if decoded is not None:
            return decoded
    charset = charsets[-1]
    for encoding in (CHARSET_ENCODINGS.get(charset), "latin_1"):
        if encoding:
            try:
                return raw.decode(encoding).strip()
            except (UnicodeDecodeError, LookupError):
                continue
    return text


def _iso2022_text(raw: bytes, charsets: Sequence[str]) -> Optional[str]:
    """``raw`` text bytes decoded with pydicom's reading of the ISO 2022 code extensions of ``charsets`` (the values
    of SpecificCharacterSet, the first the default repertoire), stripped; None where pydicom cannot."""
    try:
        from pydicom.charset import convert_encodings, decode_bytes
    except ImportError:
        return None
    try:
        with warnings_hidden_in_this_thread():  # pydicom warns of an unknown character set and replaces it
            return decode_bytes(raw, convert_encodings(list(charsets)), set()).strip()
    except (LookupError, UnicodeDecodeError, ValueError):
        return None


MAX_SUBFOLDER_DEPTH = 6
MAX_SUBFOLDERS = 5000
"""How far :func:`find_dicom_series` looks below a folder without DICOM files of its own (PACS exports and DICOMDIR
media nest series as PATIENT/STUDY/SERIES/files, or split one series over several folders). Where the search
stops at either limit, the reader says so (:func:`_check_search_reached`)."""


@dataclass
class _SubfolderSearch:
    """What :func:`_subfolder_search` found below a folder. ``limits``: the limits that stopped it, as words
    ("6 levels deep", "after 5000 folders"), none when it looked everywhere; ``unsearched``: the folders it looked
    at whose subfolders it did not look at; ``skipped``: the folders it did not look at at all (their siblings
    filled the count); both in search order."""

    folders: List[Path]
    limits: List[str] = field(default_factory=list)
    unsearched: List[Path] = field(default_factory=list)
    skipped: List[Path] = field(default_factory=list)

    @property
    def cut(self) -> bool:
        """Whether the search stopped at a limit: a folder below was not looked at."""
        return bool(self.limits)


def _visible_subfolders(folder: Path) -> List[Path]:
    """``folder``'s subfolders, sorted, hidden ones and a macOS zip's ``__MACOSX`` copy left out (``is_hidden_name``,
    as :func:`_folder_headers` leaves out files); [] when it cannot be listed."""
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not is_hidden_name(p.name))
    except OSError:
        return []


def _subfolder_search(folder: Path) -> _SubfolderSearch:
    """``folder``'s subfolders, depth-first, sorted, hidden ones (and ``__MACOSX``) skipped, at most :data:`MAX_SUBFOLDER_DEPTH`
    levels and :data:`MAX_SUBFOLDERS` folders, and which of those limits stopped the search (a folder at the
    last level that has subfolders, or more folders than the count allows)."""
    search = _SubfolderSearch(folders=[])
    stack = [(folder, 0)]
    while stack:
        current, depth = stack.pop()
        children = _visible_subfolders(current)
        if not children:
            continue
        if depth >= MAX_SUBFOLDER_DEPTH:
            _note_limit(search, f"{MAX_SUBFOLDER_DEPTH} levels deep", [current])
            continue
        if len(search.folders) + len(children) > MAX_SUBFOLDERS:
            taken = children[:MAX_SUBFOLDERS - len(search.folders)]
            search.folders.extend(taken)
            # the rest of the children are not looked at, and neither are the subfolders of those taken nor of
            # the folders still waiting on the stack (it pops from its end: search order is its reverse); of
            # those, the message names only the folders that have subfolders (a series folder holds files only)
            search.skipped.extend(children[len(taken):])
            waiting = taken + [f for f, _ in reversed(stack)]
            _note_limit(search, f"after {MAX_SUBFOLDERS} folders", [f for f in waiting if _visible_subfolders(f)])
            break
        search.folders.extend(children)
        stack.extend((child, depth + 1) for child in reversed(children))
    return search


def _note_limit(search: _SubfolderSearch, limit: str, folders: Sequence[Path]) -> None:
    """Record in ``search`` that ``limit`` left the subfolders of ``folders`` unsearched."""
    if limit not in search.limits:
        search.limits.append(limit)
    search.unsearched.extend(folders)


def _subfolders(folder: Path) -> List[Path]:
    """The folders :func:`_subfolder_search` looks at below ``folder``."""
    return _subfolder_search(folder).folders


def dicom_images_below(folder: Path, is_dicom: Optional[Callable[[Path], bool]] = None) -> Optional[bool]:
    """Whether a subfolder of ``folder`` that :func:`find_dicom_series` would search (:func:`_subfolder_search`: at
    most :data:`MAX_SUBFOLDER_DEPTH` levels, :data:`MAX_SUBFOLDERS` folders) holds a DICOM image
    (:func:`holds_dicom_images` with ``is_dicom``); None when none does but the search stopped at a limit (a folder
    below was not looked at). ``folder``'s own files are not looked at."""
    search = _subfolder_search(folder)
    if any(holds_dicom_images(sub, is_dicom=is_dicom) for sub in search.folders):
        return True
    return None if search.cut else False


def list_dicom_series(folder: PathLike, recursive: bool = False) -> List[DicomSeriesInfo]:
    """All DICOM series directly inside ``folder`` in GDCM's order; with ``recursive`` those in its subfolders
    too (:func:`_subfolders`: at most :data:`MAX_SUBFOLDER_DEPTH` levels and :data:`MAX_SUBFOLDERS` folders;
    ``read_volume`` says when that search stopped), each series with its files from every folder (sorted by slice
    position as GDCM sorts them, :func:`_gdcm_file_order`). Every file's header is read once.

    Raises InputError if ``folder`` is not a folder. Returns ``[]`` when it holds no DICOM series.
    """
    folder = _existing_folder(folder)
    folders = [folder] + (_subfolders(folder) if recursive else [])
    return _series_listing_of([_folder_headers(f) for f in folders])


def _existing_folder(folder: PathLike) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"'{folder}' is not a folder; give the folder that holds the DICOM files.")
    return folder


@dataclass(frozen=True)
class _DicomFileHeader:
    """What the series listing needs of one DICOM file, as GDCM reads it (:func:`_read_file_header`)."""

    path: str
    series_id: str                           # GDCM's series key: SeriesInstanceUID, letters, digits and '.' only
    origin: Tuple[float, float, float]       # mm, LPS: ImagePositionPatient as GDCM reads it (or its default)
    cosines: Tuple[float, ...]               # the row, then the column direction cosines (6), as GDCM reads them
    instance_number: int                     # InstanceNumber (0020,0013); -1 when absent or not a number
    description: str = ""
    modality: str = ""
    series_number: str = ""
    size: Tuple[int, ...] = ()               # columns, rows (and frames of a multi-frame file), as GDCM reads them
    pixel_id: int = -1                       # the SimpleITK pixel type GDCM reads the pixels as
    check_tags: Tuple[Optional[str], ...] = ()  # the values of _CHECK_TAGS as stored (None: absent); () unknown
    photometric: str = ""                    # PhotometricInterpretation (0028,0004), upper case; "" when absent
    localizer: bool = False                  # whether ImageType (0008,0008) says LOCALIZER (a scout, topogram)
    rescale: Tuple[str, str] = ("", "")       # RescaleSlope, RescaleIntercept as stored ("": absent)


_CHECK_TAGS = ("0028|0010", "0028|0011", "0028|0008", "0028|0002", "0028|0100", "0020|0037")
"""Rows, Columns, NumberOfFrames, SamplesPerPixel, BitsAllocated and ImageOrientationPatient: what
:func:`_refuse_pixel_data_of_another_size` checks, kept from the listing's header of each file
(:func:`_passes_from_listing`) so that a file need not be read again with pydicom."""


def _read_file_header(path: str) -> Optional[_DicomFileHeader]:
    """The header of the file ``path`` read with GDCM, as GDCM's series scan reads it; None for a file GDCM
    cannot read as a DICOM image (left out of every series, as that scan leaves it out)."""
    reader = _sitk().ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    direction = _direction_3d(reader)  # row-major; its columns are the row, column and slice directions
    return _DicomFileHeader(
        path=path, series_id=_gdcm_series_id(_dicom_tag(reader, "0020|000e")),
        origin=tuple(float(v) for v in (tuple(reader.GetOrigin()) + (0.0, 0.0))[:3]),
        cosines=tuple(float(direction[r * 3 + c]) for c in (0, 1) for r in range(3)),
        instance_number=_leading_integer(_dicom_tag(reader, "0020|0013")),
        description=_dicom_text(reader, "0008|103e"), modality=_dicom_tag(reader, "0008|0060"),
        series_number=_dicom_tag(reader, "0020|0011"), size=tuple(int(n) for n in reader.GetSize()),
        pixel_id=int(reader.GetPixelID()),
        check_tags=tuple(reader.GetMetaData(t) if reader.HasMetaDataKey(t) else None for t in _CHECK_TAGS),
        photometric=_dicom_tag(reader, "0028|0004").upper(),
        localizer="LOCALIZER" in _dicom_tag(reader, "0008|0008").upper(),
        rescale=(_dicom_tag(reader, "0028|1053"), _dicom_tag(reader, "0028|1052")))


def _gdcm_series_id(series_instance_uid: str) -> str:
    """GDCM's key of a series: its SeriesInstanceUID with every character but ASCII letters, digits and '.' left
    out (padding, spaces), as ``GetGDCMSeriesIDs`` returned it."""
    return "".join(c for c in series_instance_uid if c == "." or (c.isascii() and c.isalnum()))


def _leading_integer(text: str) -> int:
    """The integer ``text`` starts with, as GDCM reads an IS value (``'12'``, ``' 12.0'`` -> 12); -1 when none."""
    match = re.match(r"\s*([+-]?\d+)", text)
    return int(match.group(1)) if match else -1


def _folder_headers(folder: Path) -> List[_DicomFileHeader]:
    """The headers of the DICOM image files directly in ``folder``, in directory order, each read once
    (:func:`_read_file_header`). Hidden files are left out, as GDCM's scan leaves them out on Linux and macOS
    (an rsync temporary or a ``.x.old`` copy of a slice beside a series made it "hold the same images more than
    once"). InputError for a file name that is not UTF-8, which GDCM cannot open (it ended the process)."""
    try:
        paths = [entry.path for entry in os.scandir(str(folder)) if entry.is_file() and not is_hidden_name(entry.name)]
    except OSError:
        return []
    for path in paths:
        check_path_encoding(path, "DICOM file")
    headers = []
    with _quiet_itk():
        for path in paths:
            raise_if_read_stopped()  # a batch's reader thread stopped by Ctrl-C: at most one file more
            headers.append(_read_file_header(path))
    return [h for h in headers if h is not None]


DICOM_READ_COPIES = 1
"""Copies of the series' voxels, in the type GDCM reads them as, that a DICOM read holds at its peak: the series
reader's image alone (:func:`_read_dicom_folder` lets the reader go, and its hold on that image, before the voxels are
copied), beside the HU copy made from it: int16 (2 bytes a voxel) where GDCM reads int16, else counted at 4 (int16 or
float32). Measured (30 Nov 2026, a 512 x 512 x 100 series, second read in one process, peak RSS rise): 4.0 bytes a
voxel of int16, 6.0 of int32 (int16 stored with intercept -1024, signed 16 bits: 4 and the int16 copy). Until then
the reader's output was kept while its per-slice tags were read, and SimpleITK copied the image for numpy's copy: 3
copies, 6.0 and 14.0 bytes a voxel. The files are 2.0 bytes a voxel uncompressed, 0.9 RLE-compressed. A series
whose rescale differs between its slices is read twice (again as float32) and holds both reads at once: counted at
8 bytes a voxel where GDCM's first read is narrower (:func:`_rescale_differs_in_headers`,
:func:`_rescale_differs_in_files`; uncounted until 30 Nov 2026)."""


def _gdcm_output_itemsize(ds: Any) -> Tuple[int, bool]:
    """``(bytes, is_int16)`` of a voxel as GDCM reads the file whose header is ``ds`` (pydicom), with its
    RescaleSlope/Intercept applied: the stored type without a rescale; with a whole slope and intercept the smallest
    of int16, int32 that holds the rescaled range of BitsStored (unsigned 8 bits become int16); float64 otherwise."""
    bits_allocated = int(ds.get("BitsAllocated", 16) or 16)
    bits_stored = int(ds.get("BitsStored", bits_allocated) or bits_allocated)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    try:
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
    except (TypeError, ValueError):
        return 8, False  # the read refuses it; counted at the most
    stored = max(1, (bits_allocated + 7) // 8)
    if (slope, intercept) == (1.0, 0.0):
        return stored, stored == 2 and signed
    if not (slope.is_integer() and intercept.is_integer()):
        return 8, False
    low, high = (-(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1) if signed else (0, (1 << bits_stored) - 1)
    ends = sorted((low * slope + intercept, high * slope + intercept))
    if -(1 << 15) <= ends[0] and ends[1] < (1 << 15):
        return 2, True
    return (4, False) if -(1 << 31) <= ends[0] and ends[1] < (1 << 31) else (8, False)


_READ_BYTES_TAGS = (0x00280002, 0x00280008, 0x00280010, 0x00280011, 0x00280100, 0x00280101, 0x00280103,
                    0x00281052, 0x00281053)
"""SamplesPerPixel, NumberOfFrames, Rows, Columns, BitsAllocated, BitsStored, PixelRepresentation, RescaleIntercept
and RescaleSlope: all :func:`_file_read_bytes` reads of a file's header."""
_UNCOMPRESSED_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")


def _file_read_bytes(path: str, size: int) -> Tuple[int, bool, int]:
    """``(bytes, same for another file of this size, bytes if read twice)``: what a DICOM read holds at its peak for
    the image file ``path`` of ``size`` bytes, from its header alone (pydicom, ``stop_before_pixels``): Rows x
    Columns x frames x samples voxels at :data:`DICOM_READ_COPIES` copies of the type GDCM reads them as, and the HU
    copy: 2 bytes a voxel (int16) where that type is int16, else 4 (int16 or float32). An uncompressed file's count
    holds for another file of its size in its folder (its pixel data are as many bytes); a compressed one's, or one
    without pixels (a DICOMDIR, a report: 0), does not. A file pydicom cannot read as DICOM is counted at its size
    (the read leaves it out, or fails on it), which holds for another of its size. The third: what the file holds
    where its series is read twice, its rescale differing between slices (:func:`_read_as_float`): GDCM's first
    image beside the float32 one, then that and its HU copy (float32 where the values are fractional): at least 8
    bytes a voxel; the same as the first where GDCM reads float64 (never read again)."""
    try:  # (odd values in a header are no concern here: dcmread_quietly says none)
        ds = dcmread_quietly(path, stop_before_pixels=True, specific_tags=list(_READ_BYTES_TAGS))
    except Exception as exc:  # noqa: BLE001 - not DICOM, unreadable, damaged: counted as before, by its size
        raise_if_out_of_memory(exc, str(path))  # a deflated file inflated past the memory: said, not "no DICOM"
        return size, True, size
    try:
        rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = max(1, int(ds.get("NumberOfFrames", 1) or 1))
        samples = max(1, int(ds.get("SamplesPerPixel", 1) or 1))
        itemsize, is_int16 = _gdcm_output_itemsize(ds)
        syntax = str(ds.file_meta.get("TransferSyntaxUID", "") or "")
    except (AttributeError, TypeError, ValueError):
        return size, False, size
    voxels = rows * columns * frames * samples
    held = voxels * (DICOM_READ_COPIES * itemsize + (2 if is_int16 else 4))
    twice = held if itemsize >= 8 else max(held, voxels * (4 + max(4, DICOM_READ_COPIES * itemsize)))
    return held, voxels > 0 and syntax in _UNCOMPRESSED_SYNTAXES, twice


_SERIES_RESCALE_TAGS = (0x0020000E, 0x00281052, 0x00281053)
"""SeriesInstanceUID, RescaleIntercept and RescaleSlope: what :func:`_rescale_differs_in_files` reads of a file."""


def _file_rescale(path: str) -> Optional[Tuple[str, float, float]]:
    """``(SeriesInstanceUID, slope, intercept)`` of the DICOM file ``path``, its header read up to the rescale tags
    only (pydicom); None when it cannot be read (counted as it is by :func:`_file_read_bytes`)."""
    from pydicom.filereader import read_partial

    try:
        with warnings_hidden_in_this_thread(), open(path, "rb") as handle:
            ds = read_partial(handle, stop_when=lambda tag, vr, length: tag > 0x00281053,
                              specific_tags=list(_SERIES_RESCALE_TAGS))
        slope, intercept = ds.get("RescaleSlope", 1), ds.get("RescaleIntercept", 0)
        return (str(ds.get("SeriesInstanceUID", "") or ""), float(1 if slope in (None, "") else slope),
                float(0 if intercept in (None, "") else intercept))
    except Exception as exc:  # noqa: BLE001 - not DICOM, damaged, a value that is not a number: the read says what
        raise_if_out_of_memory(exc, str(path))  # a deflated file inflated past the memory: said, not "no DICOM"
        return None


def _rescale_differs_in_files(paths: Sequence[str]) -> List[str]:
    """Of the DICOM files ``paths`` (one folder's), those whose series is read twice: its files give different
    RescaleSlope or RescaleIntercept values, or one that is not a whole number (as
    :func:`_rescale_differs_between_slices` finds after the first read)."""
    by_series = {}  # type: Dict[str, List[Tuple[str, float, float]]]
    for path in paths:
        found = _file_rescale(path)
        if found is not None:
            by_series.setdefault(found[0], []).append((path, found[1], found[2]))
    twice = []
    for files in by_series.values():
        if _rescale_read_twice((slope, intercept) for _, slope, intercept in files):
            twice.extend(path for path, _, _ in files)
    return twice


def _rescale_read_twice(pairs: Iterable[Tuple[float, float]]) -> bool:
    """Whether a series whose files give the ``(RescaleSlope, RescaleIntercept)`` ``pairs`` is read twice, again as
    float32 (:func:`_read_as_float`): its files give different pairs, or a slope or intercept that is not a whole
    number (NaN included). The one rule of :func:`_rescale_differs_between_slices` (the series reader's tags),
    :func:`_rescale_differs_in_headers` (the listing's) and :func:`_rescale_differs_in_files` (a batch's count);
    stops at the first pair that decides it."""
    seen = set()
    for slope, intercept in pairs:
        if not (float(slope).is_integer() and float(intercept).is_integer()):
            return True
        seen.add((float(slope), float(intercept)))
        if len(seen) > 1:
            return True
    return False


def dicom_folder_read_bytes(folder: PathLike) -> int:
    """The most memory a read of the DICOM folder ``folder`` may hold at its peak (:func:`_read_dicom_folder`): the
    visible files in it and in the subfolders its search looks at (:func:`_subfolder_search`, as
    :func:`find_dicom_series` walks them), each counted by its header's voxels (:func:`_file_read_bytes`). All of
    them: the read may take any of those folders' series. A folder's uncompressed files of one size are counted by
    one header (a 300-file series reads a header or two: a few ms); a compressed series reads each file's header
    (about 0.3 ms a file, where decoding it takes some 30). 0 when the folder cannot be listed. Counting the files'
    bytes instead, a batch counted an int16 series at a third of the peak its read held then (6.0 bytes a voxel; 4.0
    since :data:`DICOM_READ_COPIES` is 1: half), and a JPEG/RLE one at a seventh. Where GDCM reads a file in 2
    bytes a voxel or fewer (where a second read would hold more than the first's count), the rescale tags of every
    such file are read too (:func:`_rescale_differs_in_files`, about 0.3 ms a file): a series whose rescale differs
    between slices is read twice, and held 6.0-8.0 bytes a voxel where 4.0 were counted (30 Nov 2026)."""
    folder = Path(folder)
    total = 0
    for current in [folder] + _subfolder_search(folder).folders:
        try:
            with os.scandir(str(current)) as entries:
                files = [(entry.path, entry.stat().st_size) for entry in entries
                         if not is_hidden_name(entry.name) and entry.is_file()]
        except OSError:
            continue
        by_size = {}  # type: Dict[int, Tuple[int, int]]
        counts = {}  # type: Dict[str, Tuple[int, int]]
        for path, size in files:
            if size not in by_size:
                held, same_for_size, twice = _file_read_bytes(path, size)
                if not same_for_size:
                    counts[path] = (held, twice)
                    continue
                by_size[size] = (held, twice)
            counts[path] = by_size[size]
        # every file's rescale (a later slice's fractional slope makes its series read twice), where a second read
        # of one of them would hold more than its count
        twice_read = set(_rescale_differs_in_files(list(counts))) if any(
            twice > held for held, twice in counts.values()) else set()
        total += sum(twice if path in twice_read else held for path, (held, twice) in counts.items())
    return total


def _series_listing_of(folder_headers: Sequence[Sequence[_DicomFileHeader]]) -> List[DicomSeriesInfo]:
    """The series of the files whose headers ``folder_headers`` holds, one list per folder (the folder itself
    first): each folder's new series in GDCM's order (by series key), folder by folder, each with its files from
    every folder in GDCM's order (:func:`_gdcm_file_order`)."""
    by_series: Dict[str, List[_DicomFileHeader]] = {}
    for headers in folder_headers:
        for series_id in sorted({h.series_id for h in headers} - set(by_series)):
            by_series[series_id] = []
        for header in headers:
            by_series[header.series_id].append(header)
    return [_series_info(series_id, _gdcm_file_order(headers)) for series_id, headers in by_series.items()]


def _series_info(series_id: str, ordered: Sequence[_DicomFileHeader]) -> DicomSeriesInfo:
    """A series whose files are ``ordered``; description, modality and number from the first, as GDCM lists it."""
    first = ordered[0]
    return DicomSeriesInfo(uid=series_id, description=first.description, modality=first.modality,
                           series_number=first.series_number, files=[h.path for h in ordered], _first_header=first,
                           _headers=list(ordered))


def _gdcm_file_order(headers: Sequence[_DicomFileHeader]) -> List[_DicomFileHeader]:
    """The files of one series (``headers`` in directory order) in the order GDCM's series helper puts them
    (``gdcm::SerieHelper::OrderFileList``, which ``GetGDCMSeriesFileNames`` returns and the reader follows): by
    distance along the first file's slice normal (the cross product of its cosines, as GDCM computes it) when the
    distances all differ, else by InstanceNumber when those all differ, else by file name."""
    c = headers[0].cosines
    normal = (c[1] * c[5] - c[2] * c[4], c[2] * c[3] - c[0] * c[5], c[0] * c[4] - c[1] * c[3])
    distances = [normal[0] * h.origin[0] + normal[1] * h.origin[1] + normal[2] * h.origin[2] for h in headers]
    if min(distances) != max(distances) and len(set(distances)) == len(distances):
        return [h for _, h in sorted(zip(distances, headers), key=lambda pair: pair[0])]
    if len({h.instance_number for h in headers}) == len(headers):
        return sorted(headers, key=lambda h: h.instance_number)
    return sorted(headers, key=lambda h: h.path)


def _series_folders(series: Sequence[DicomSeriesInfo]) -> Dict[int, str]:
    """Each series' folder (``id(series)`` -> the folder its files share, relative to all series' common folder),
    or {} when they all lie in one folder: two patients' 'abdomen' series in PAT1/ and PAT2/ listed as two
    identical lines."""
    folders = {id(s): os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in s.files])
               for s in series if s.files}
    if len(set(folders.values())) < 2:
        return {}
    root = os.path.commonpath(list(folders.values()))
    return {key: os.path.relpath(folder, root) for key, folder in folders.items()}


def _series_listing(series: Sequence[DicomSeriesInfo], shown: Optional[Sequence[DicomSeriesInfo]] = None) -> str:
    """The series ``shown`` (default: all), each numbered by its place in ``series``: the number --series takes;
    with its folder when the series lie in different ones."""
    numbers = {id(s): n for n, s in enumerate(series, start=1)}
    folders = _series_folders(series)

    def where(s: DicomSeriesInfo) -> str:
        folder = folders.get(id(s))
        return "" if folder is None else " in the folder itself" if folder == "." else f" in '{folder}'"

    return "\n".join(f"  {numbers[id(s)]}. {s.summary()}{where(s)}" for s in (series if shown is None else shown))


SERIES_CHOICES_TEXT = ("SeriesInstanceUID, a unique UID prefix, the series description, or its number in this list "
                       "(or its SeriesNumber, where no other series has that number in this list)")


def _series_option(wanted: str = "...") -> str:
    """``--series 'x'`` under the command line, ``series='x'`` from Python."""
    return option_hint(f"--series '{wanted}'", f"series='{wanted}'")


def select_dicom_series(series: Sequence[DicomSeriesInfo], wanted: str, folder: PathLike = "") -> DicomSeriesInfo:
    """Pick one series by exact UID, number (:func:`_series_by_number`), unique UID prefix, or description.

    Descriptions match case-insensitively, exactly first, then as a unique substring. Raises InputError
    naming the candidates when nothing or more than one series matches.
    """
    wanted = str(wanted).strip()
    exact = [s for s in series if s.uid == wanted]
    if exact:
        return exact[0]
    if is_ascii_digits(wanted):
        numbered = _series_by_number(series, int(wanted), folder)
        if numbered is not None:
            return numbered
    low = wanted.lower()
    for matches in ([s for s in series if s.uid.startswith(wanted)],
                    [s for s in series if s.description.lower() == low],
                    [s for s in series if low and low in s.description.lower()]):
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InputError(f"{_series_option(wanted)} matches {len(matches)} series in '{folder}'; give more "
                             f"of the UID, or the series' number:\n{_series_listing(series, matches)}")
    raise InputError(f"No DICOM series matching {_series_option(wanted)} in '{folder}'; give its "
                     f"{SERIES_CHOICES_TEXT}. It holds:\n{_series_listing(series)}")


def _series_number(info: DicomSeriesInfo) -> Optional[int]:
    """The series' SeriesNumber (0020,0011) as an integer, or None where it has none (or not a number)."""
    try:
        return int(str(info.series_number).strip())
    except ValueError:
        return None


def _series_by_number(series: Sequence[DicomSeriesInfo], number: int, folder: PathLike) -> Optional[DicomSeriesInfo]:
    """The series ``--series N`` names: the N-th of the listing (1-based), or the one whose SeriesNumber is N (the
    number a PACS and the scanner show) where no series is N-th; both where they are the same series. Where they
    are different series, InputError naming both: the listing is ordered by UID, so its numbers and the
    SeriesNumbers differ, and a reader who typed the PACS's series number got another series (the arterial
    phase for the portal venous one) without a word. None when neither exists."""
    listed = series[number - 1] if 1 <= number <= len(series) else None
    by_header = [s for s in series if _series_number(s) == number]
    if listed is not None and (not by_header or by_header == [listed]):
        return listed
    if listed is None and len(by_header) == 1:
        return by_header[0]
    if listed is None and not by_header:
        return None
    if listed is not None:  # a derived object (a DICOM SEG written into the folder) is no volume --series picks: it
        header_images = [s for s in by_header if _is_image_series(s)]  # took place 1 of the listing, and the CT's
        if not _is_image_series(listed) and len(header_images) == 1:  # own SeriesNumber 1 became ambiguous
            return header_images[0]
        if _is_image_series(listed) and header_images in ([], [listed]):
            return listed
    shown = ([listed] if listed is not None else []) + [s for s in by_header if s is not listed]
    place = (f"number {number} in the listing is '{listed.description or listed.uid}'" if listed is not None else
             f"no series is number {number} in the listing")
    names = ", ".join(f"'{s.description or s.uid}'" for s in by_header)
    owner = f"that of {names}" if len(by_header) == 1 else f"shared by {names}"
    raise InputError(f"{_series_option(str(number))} is ambiguous in '{folder}': {place}, while SeriesNumber "
                     f"{number} is {owner}. Give the series' UID (or a unique UID prefix) or its description "
                     f"instead:\n{_series_listing(series, shown)}")


DERIVED_OBJECT_MODALITIES = ("SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "SR", "PR", "KO", "REG", "DOC")
"""Series that are not a volume to segment (a segmentation, contours, reports, presentation states): when a
folder holds exactly one other series, that one is read without asking."""


def _is_image_series(series: DicomSeriesInfo) -> bool:
    return (series.modality or "").upper() not in DERIVED_OBJECT_MODALITIES


def find_dicom_series(folder: PathLike) -> List[DicomSeriesInfo]:
    """The DICOM series of ``folder``: those directly in it, or, when it holds no image series itself or its
    subfolders hold other image series, also those in its subfolders, each gathered from all of them (a series
    split over several folders is read whole; choosing one of those folders would have given part of the series
    without a word). A DICOM SEG written into a study folder (``segment study -o study/result.dcm``) therefore does
    not hide the CT below it. Every file's header is read once (:func:`_folder_headers`). The subfolders are
    searched within :data:`MAX_SUBFOLDER_DEPTH` and :data:`MAX_SUBFOLDERS` (:func:`_search_dicom_series` also
    says whether the search stopped at them)."""
    return _search_dicom_series(folder)[0]


def _search_dicom_series(folder: PathLike) -> Tuple[List[DicomSeriesInfo], _SubfolderSearch]:
    """:func:`find_dicom_series` of ``folder``, and the search of its subfolders that it used."""
    folder = _existing_folder(folder)
    own = _folder_headers(folder)
    search = _subfolder_search(folder)
    below = [_folder_headers(sub) for sub in search.folders]
    top, everything = _series_listing_of([own]), _series_listing_of([own] + below)
    images = {s.uid for s in top if _is_image_series(s)}
    # the folder's own image series alone, unless a subfolder holds other image series (one key image or scout at
    # a study's top hid the CT series below it, and a 1-slice "CT" was segmented without a word) or continues one
    # of them (only its top part was read, without a word); a copy of its own slices (backup/) is no continuation
    if images and not _continues_below(own, below, images) and not any(
            _is_image_series(s) and s.uid not in images for s in everything):
        return top, search
    return everything, search


def _search_stop_text(search: _SubfolderSearch, folder: Path) -> str:
    """Where the search of ``folder``'s subfolders stopped, for a message: "stopped 6 levels deep (not searched:
    below 'a/b' and 2 more folder(s))", "stopped after 5000 folders (not searched: 'a/z'; below 'a/x' and 3 more
    folder(s))" (``a/z`` not looked at, nor the subfolders of ``a/x`` and the 3 others)."""
    parts = ([_folders_text(search.skipped, folder)] if search.skipped else []) + (
        [f"below {_folders_text(search.unsearched, folder)}"] if search.unsearched else [])
    return f"stopped {' and '.join(search.limits)} (not searched: {'; '.join(parts)})"


def _folders_text(folders: Sequence[Path], folder: Path) -> str:
    """The first of ``folders`` relative to ``folder`` and how many more: "'a/b' and 2 more folder(s)"."""
    first = os.path.relpath(os.path.abspath(str(folders[0])), os.path.abspath(str(folder)))
    more = len(folders) - 1
    return (f"'{first}'" if first != "." else "the folder itself") + (f" and {more} more folder(s)" if more else "")


def _check_search_reached(chosen: DicomSeriesInfo, folder: Path, search: _SubfolderSearch) -> Optional[str]:
    """After a search of ``folder``'s subfolders that stopped at a limit: InputError when the ``chosen`` series
    has files in those subfolders (it may continue in the folders not searched; read in part it gives a wrong
    segmentation, as missing slices would, which the reader refuses too); a warning text when it lies in the
    folder itself (a continuation far below is possible, but nothing suggests one). None when the search
    looked everywhere."""
    if not search.cut:
        return None
    stop = _search_stop_text(search, folder)
    homes = {os.path.dirname(os.path.abspath(f)) for f in chosen.files}
    if homes == {os.path.abspath(str(folder))}:
        return (f"the search of the subfolders of '{folder}' {stop}: series {chosen.uid} was read from the folder "
                f"itself; if it continues in the folders not searched, those slices are missing: give the folder "
                f"that holds the whole series")
    found_in = os.path.relpath(os.path.commonpath(sorted(homes)), os.path.abspath(str(folder)))
    where = "the folder itself and its subfolders" if found_in == "." else f"'{found_in}'"
    raise InputError(f"DICOM series {chosen.uid} in '{folder}' has files in its subfolders ({chosen.num_files} "
                     f"files found, in {where}), but their search {stop}: files of the series in the folders "
                     f"not searched would be left out without a word, and a series read in part gives a wrong "
                     f"segmentation and wrong volumes. Give the folder that holds the whole series (its files, "
                     f"or the subfolders it is split over), so that the search of it stays within "
                     f"{MAX_SUBFOLDER_DEPTH} levels and {MAX_SUBFOLDERS} folders.")


def _continues_below(own: Sequence[_DicomFileHeader], below: Sequence[Sequence[_DicomFileHeader]],
                     series_ids: set) -> bool:
    """Whether a subfolder holds slices of one of the folder's own ``series_ids`` at positions (mm, LPS) that the
    folder's own files do not have: the series continues below. Files at the folder's own positions are copies."""
    own_positions = {(h.series_id, h.origin) for h in own if h.series_id in series_ids}
    return any(h.series_id in series_ids and (h.series_id, h.origin) not in own_positions
               for headers in below for h in headers)


SIBLING_SEARCH_MAX_FOLDERS = 64
SIBLING_SEARCH_FILES_PER_FOLDER = 4
SIBLING_SEARCH_MAX_FILES = 256
SIBLING_SEARCH_SECONDS = 0.25
"""How far :func:`_find_sibling_parts` looks beside the folder a series was read from for more files of it (a
series split over sibling folders, ``SE000001/A/`` and ``SE000001/B/``, by an export that puts at most so many files
in a folder): the parent folder's own files, its other subfolders (the names next to the given one's first:
:func:`_nearest_first`) and their subfolders (one level down), at most 64 folders in that order; in each, the headers of 4 files spread over its sorted names (the first and last
included), at most 256 files in all; the whole within 0.25 s (wall clock). In a folder where a file of the series
is found, its other files are read too (within the same time, not counted against the 256) to count them.
Measured (2 cores, files in the disk cache, 29 Nov 2026): about 0.3 ms a header; beside a series of a study of 20
series folders, 76 headers in 29 ms (the series' read: 0.3 s); a case among 100 case folders side by side, 252
headers (63 folders) in 79 ms; a 200-slice part of a 512 x 512 series with 300 more of its files in two folders
beside it, 300 headers in 88 ms (its read: 0.46 s)."""


@dataclass
class _SiblingPart:
    """Files of a series found in a folder beside the one it was read from (:func:`_find_sibling_parts`)."""

    folder: Path
    found: int       # files of the series that are none of the images read (:data:`_ImageKey`)
    looked_at: int   # files of ``folder`` whose header was read
    files: int       # files in ``folder`` (hidden ones and a DICOMDIR left out)

    @property
    def counted(self) -> bool:
        """Whether every file of the folder was looked at, so that ``found`` is their number, not a lower bound."""
        return self.looked_at >= self.files


def _find_sibling_parts(series_id: str, read_images: Sequence["_ImageKey"], folder: Path) -> List[_SiblingPart]:
    """The folders beside ``folder`` (:data:`SIBLING_SEARCH_MAX_FOLDERS` and the other limits there) that hold files
    of the series ``series_id`` (GDCM's series key) other than the images ``read_images`` (a copy of the series'
    files beside it is no other part of it). Headers only (pydicom); [] when pydicom is missing or ``folder`` has
    no parent."""
    try:
        import pydicom  # noqa: F401 - a dependency; a stripped install only loses this warning
    except ImportError:
        return []
    here = Path(os.path.abspath(str(folder)))
    if here.parent == here:
        return []
    deadline = time.monotonic() + SIBLING_SEARCH_SECONDS
    read = set(read_images)
    queue = deque([(here.parent, 0)])  # the parent's own files, then its other subfolders, then theirs
    parts: List[_SiblingPart] = []
    folders = sampled = 0
    while queue and folders < SIBLING_SEARCH_MAX_FOLDERS and sampled < SIBLING_SEARCH_MAX_FILES \
            and time.monotonic() < deadline:
        current, level = queue.popleft()
        files, subfolders = _folder_files_and_subfolders(current)
        folders += 1
        if level < 2:  # no more waiting than the count lets be looked at
            room = SIBLING_SEARCH_MAX_FOLDERS - folders - len(queue)
            queue.extend((sub, level + 1) for sub in _nearest_first(subfolders, here)[:max(room, 0)])
        sample = _spread_sample(files, min(SIBLING_SEARCH_FILES_PER_FOLDER, SIBLING_SEARCH_MAX_FILES - sampled))
        sampled += len(sample)
        part = _sibling_part(current, files, sample, series_id, read, deadline)
        if part is not None:
            parts.append(part)
    return parts


def _nearest_first(subfolders: Sequence[Path], here: Path) -> List[Path]:
    """``subfolders`` (sorted) without ``here``, those next to it in that order first (the next, then the one
    before, and so on): an export's next part of a series is the next folder (SE080 -> SE081), which among 100
    series folders lay past the search's folder cap in plain order. Without ``here`` among them: as they are."""
    order = list(subfolders)
    if here not in order:
        return order
    at = order.index(here)
    ranked = sorted((abs(i - at), i < at, i) for i in range(len(order)) if i != at)
    return [order[i] for _, _, i in ranked]


def _folder_files_and_subfolders(folder: Path) -> Tuple[List[str], List[Path]]:
    """``folder``'s files (paths, sorted; hidden ones and a DICOMDIR left out) and its subfolders (sorted; hidden
    ones and ``__MACOSX`` left out), from one listing; both [] when it cannot be listed."""
    files: List[str] = []
    subfolders: List[Path] = []
    try:
        with os.scandir(str(folder)) as entries:
            for entry in entries:
                if is_hidden_name(entry.name):
                    continue
                if entry.is_dir():
                    subfolders.append(Path(entry.path))
                elif entry.is_file() and entry.name.upper() != "DICOMDIR":
                    files.append(entry.path)
    except OSError:
        return [], []
    return sorted(files), sorted(subfolders)


def _spread_sample(paths: Sequence[str], count: int) -> List[str]:
    """Up to ``count`` of ``paths`` spread evenly over them, the first and the last included (where a folder of
    mixed series continues another folder's series, its files come first or last by name)."""
    if count <= 0 or not paths:
        return []
    if len(paths) <= count:
        return list(paths)
    if count == 1:
        return [paths[0]]
    return [paths[round(k * (len(paths) - 1) / (count - 1))] for k in range(count)]


def _sibling_part(folder: Path, files: Sequence[str], sample: Sequence[str], series_id: str, read: set,
                  deadline: float) -> Optional[_SiblingPart]:
    """The files of series ``series_id`` in ``folder`` that are none of the images ``read``, when one of the
    ``sample`` of its ``files`` is one: then its other files are looked at too, until ``deadline``
    (``time.monotonic()``); None when none of the sample is."""
    def is_unread_part(path: str) -> bool:
        found = _series_and_image_key(path)
        return found is not None and found[0] == series_id and found[1] not in read

    found = sum(1 for path in sample if is_unread_part(path))
    if not found:
        return None
    looked_at = len(sample)
    taken = set(sample)
    for path in files:
        if time.monotonic() >= deadline:
            break
        if path not in taken:
            found += is_unread_part(path)
            looked_at += 1
    return _SiblingPart(folder=folder, found=found, looked_at=looked_at, files=len(files))


_ImageKey = Tuple[str, Optional[Tuple[float, ...]]]
"""What tells one image from another: its SOPInstanceUID and its ImagePositionPatient (mm, to 0.001; None when
absent or not numbers). A copy of an image has both; slices of a split series written with the same UIDs (as
small test series are) differ in position."""


def _image_key(sop_instance_uid: str, position: Sequence[Any]) -> _ImageKey:
    """The :data:`_ImageKey` of an image whose header holds ``sop_instance_uid`` and ``position`` (its
    ImagePositionPatient values, as text or numbers)."""
    try:
        numbers: Optional[Tuple[float, ...]] = tuple(round(float(v), 3) for v in position) or None
    except (TypeError, ValueError):
        numbers = None
    return sop_instance_uid.strip().rstrip("\0"), numbers


_SIBLING_SEARCH_TAGS = (0x00080018, 0x0020000E, 0x00200032)
"""SOPInstanceUID, SeriesInstanceUID and ImagePositionPatient: all :func:`_series_and_image_key` reads of a file."""


def _series_and_image_key(path: str) -> Optional[Tuple[str, _ImageKey]]:
    """The GDCM series key (:func:`_gdcm_series_id`) and the :data:`_ImageKey` of the DICOM file ``path``, read
    with pydicom from its header alone; None for a file that is no DICOM Part 10 file (without the 'DICM' preamble
    pydicom stops after 132 bytes) or cannot be read."""
    try:  # (odd values in another file's header are no concern here: dcmread_quietly says none)
        ds = dcmread_quietly(path, stop_before_pixels=True, specific_tags=list(_SIBLING_SEARCH_TAGS))
        position = ds.get("ImagePositionPatient") or ()
        return (_gdcm_series_id(str(ds.get("SeriesInstanceUID", ""))),
                _image_key(str(ds.get("SOPInstanceUID", "")), position if isinstance(position, Sequence) else ()))
    except Exception as exc:  # noqa: BLE001 - not DICOM, unreadable, damaged: not a part of the series
        raise_if_out_of_memory(exc, str(path))  # a deflated file inflated past the memory: said, not "no DICOM"
        return None


def _sibling_parts_note(chosen: DicomSeriesInfo, read_images: Sequence[_ImageKey], folder: Path) -> Optional[str]:
    """A warning text when folders beside ``folder`` hold more files of the series ``chosen`` read from it
    (:func:`_find_sibling_parts`; ``read_images``: its files' :data:`_ImageKey`), saying how many in which
    folders and to give their parent, which gathers a series split over its subfolders; else None. Such a series
    was segmented in part without a word: a partial CT, and too small volumes."""
    parts = _find_sibling_parts(chosen.uid, read_images, folder)
    if not parts:
        return None
    beside = Path(os.path.abspath(str(folder))).parent
    shown = ", ".join(_sibling_part_text(part, beside) for part in parts[:3])
    more = f" and {len(parts) - 3} more folder(s)" if len(parts) > 3 else ""
    parent = _parent_text(folder)
    return (f"DICOM series {chosen.uid} was read from '{folder}' ({chosen.num_files} files), but the folders beside "
            f"it hold more files of this series: {shown}{more}. It is split over several folders, as some exports "
            f"do, and only part of it, so of the CT, is segmented: the volumes are too small. Give the folder that "
            f"holds all its parts, '{parent}' (a series split over its subfolders is read whole; where it holds "
            f"other series too, choose this one with {option_hint('--series', 'series=')}).")


def _sibling_part_text(part: _SiblingPart, parent: Path) -> str:
    """What a warning says of one part: "200 in 'B'" (the folder relative to ``parent``, where the series was read
    from one of its subfolders), or "at least 37 in 'B' (of its 500 files, 40 looked at)" where the time ran out
    before its files were all looked at."""
    relative = os.path.relpath(str(part.folder), str(parent))
    where = "the parent folder itself" if relative == "." else f"'{relative}'"
    if part.counted:
        return f"{part.found} in {where}"
    return f"at least {part.found} in {where} (of its {part.files} files, {part.looked_at} looked at)"


def _parent_text(folder: Path) -> str:
    """``folder``'s parent as the user would write it: ``SE000001`` for ``SE000001/A``, an absolute path where the
    given one names no parent (``A``, ``.``)."""
    written = os.path.dirname(os.path.normpath(str(folder)))
    return written if written else os.path.dirname(os.path.abspath(str(folder)))


FLOAT_PIXEL_TAGS = (0x7FE00008, 0x7FE00009)
"""Float Pixel Data and Double Float Pixel Data (PS3.3 C.7.6.24): GDCM lists no series for files holding them."""


def _float_pixel_file(folder: Path, limit: int = 20) -> Optional[Path]:
    """The first of (up to ``limit``) files directly in ``folder`` that is DICOM with float pixel data, else None:
    why a folder of such files lists no series ("holds no DICOM series" said nothing of them)."""
    try:
        import pydicom  # noqa: F401 - a dependency: its absence is said here (read by dcmread_quietly)
    except ImportError:
        return None
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))[:limit]
    except OSError:
        return None
    for path in files:
        try:
            ds = dcmread_quietly(str(path), stop_before_pixels=False, specific_tags=list(FLOAT_PIXEL_TAGS))
        except Exception as exc:  # noqa: BLE001 - not DICOM, unreadable: not this case
            raise_if_out_of_memory(exc, str(path))  # a deflated file inflated past the memory: said, not "no DICOM"
            continue
        if any(tag in ds for tag in FLOAT_PIXEL_TAGS):
            return path
    return None


def holds_dicom_images(folder: Path, max_files: int = 64, is_dicom: Optional[Callable[[Path], bool]] = None,
                       skip_suffixes: Sequence[str] = ()) -> bool:
    """Whether ``folder``'s own files (hidden ones, a DICOMDIR index and names ending in ``skip_suffixes`` left
    out) include a DICOM image, looking at up to ``max_files`` of them. ``is_dicom``: the test of one file (default:
    the 'DICM' preamble; ``fileutil.is_dicom_file`` also takes files without it); a DICOM SEG is not an image."""
    from ..dicom_seg import is_dicom_seg
    from ..fileutil import full_suffix, has_dicom_preamble

    is_dicom = is_dicom or has_dicom_preamble
    looked = 0
    try:
        names = sorted(folder.iterdir())
    except OSError:
        return False
    for p in names:
        if (not p.is_file() or p.name.startswith(".") or full_suffix(p) in skip_suffixes
                or p.name.upper() == "DICOMDIR"):
            continue
        if is_dicom(p) and not is_dicom_seg(p):
            return True
        looked += 1
        if looked >= max_files:
            break
    return False


READABLE_TRANSFER_SYNTAXES = frozenset([
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2",  # uncompressed, deflate
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",  # JPEG
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",  # JPEG-LS
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203",  # HTJ2K
    "1.2.840.10008.1.2.5",  # RLE
])
"""Transfer syntaxes whose images SimpleITK's GDCM decodes (JPEG lossless, JPEG-LS, JPEG 2000, RLE and HTJ2K were
read from a real CT series by an audit; the others are GDCM's uncompressed and JPEG ones); for files in any other
(JPEG XL, MPEG, a vendor's private one) GDCM lists no series, and the reader says which one it is."""


NEWER_TRANSFER_SYNTAX_NAMES = {"1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
                               "1.2.840.10008.1.2.4.111": "JPEG XL JPEG Recompression",
                               "1.2.840.10008.1.2.4.112": "JPEG XL"}
"""Names (PS3.6 Table A-1) of transfer syntaxes that pydicom 3.0 does not name: the message said "transfer syntax
a newer standard one, 1.2.840.10008.1.2.4.110" for JPEG XL."""


def _sample_files(folders: Sequence[Path], limit: int = 20) -> List[Path]:
    """Up to ``limit`` files of ``folders``, the first folder's first (a folder, then the subfolders its series
    search looked at: :attr:`_SubfolderSearch.folders`), hidden ones skipped."""
    found: List[Path] = []
    for current in folders:
        try:
            found.extend(sorted(p for p in current.iterdir() if p.is_file() and not p.name.startswith(".")))
        except OSError:
            continue
        if len(found) >= limit:
            break
    return found[:limit]


def undecodable_transfer_syntax(files: Sequence[Path]) -> Optional[Tuple[Path, str, str]]:
    """``(file, UID, name)`` of the first of ``files`` that is a DICOM image stored in a transfer syntax this
    reader cannot decode (not in :data:`READABLE_TRANSFER_SYNTAXES`), else None."""
    try:
        import pydicom
    except ImportError:
        return None
    for path in files:
        try:
            ds = dcmread_quietly(str(path), stop_before_pixels=True, force=True)
        except Exception as exc:  # noqa: BLE001 - not DICOM, unreadable: not this case
            raise_if_out_of_memory(exc, str(path))  # a deflated file inflated past the memory: said, not "no DICOM"
            continue
        uid = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
        if uid and uid not in READABLE_TRANSFER_SYNTAXES and "Rows" in ds:
            name = str(getattr(pydicom.uid.UID(uid), "name", "") or "")
            if not name or name == uid:  # one this pydicom does not know by name (JPEG XL in pydicom 3.0)
                name = NEWER_TRANSFER_SYNTAX_NAMES.get(uid) or (
                    "not a valid UID" if not _is_valid_uid(uid) else
                    "a standard one newer than this reader" if uid.startswith("1.2.840.10008.") else "a private one")
            return Path(path), uid, name
    return None


_UID_PATTERN = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
"""A valid DICOM UID (PS3.5 9.1): numeric components, without leading zeros, separated by dots (64 characters at
most, checked apart)."""


def _is_valid_uid(uid: str) -> bool:
    return len(uid) <= 64 and _UID_PATTERN.fullmatch(uid) is not None


def _undecodable_text(found: Tuple[Path, str, str], where: str) -> str:
    path, uid, name = found
    example = "" if path.name in where else f", e.g. '{path.name}'"
    if not _is_valid_uid(uid):  # '1.2.840.10008.q.2.1' was 'a standard one newer than this reader'
        return (f"{where} holds DICOM images whose transfer syntax UID (0002,0010) is {uid!r}{example}, which is not "
                f"a valid UID (a UID is numbers separated by dots): the files are damaged, and how their pixels are "
                f"stored cannot be known. Copy them again from their source, or re-export the series from the "
                f"scanner/PACS.")
    return (f"{where} holds DICOM images compressed in a way this reader cannot decode (transfer syntax {name}, "
            f"{uid}{example}). Decompress the files first (e.g. 'gdcmconv --raw IN OUT' or DCMTK's "
            f"'dcmdjpeg'), export them uncompressed from the PACS, or convert the series to NIfTI (dcm2niix).")


def _meta_header_without_preamble(files: Sequence[str]) -> Optional[str]:
    """The first of ``files`` that starts with a file meta header (group 0002, little endian) where the 128-byte
    preamble and 'DICM' belong, else None: GDCM lists such files, then the image reader refuses them."""
    for name in files[:20]:
        try:
            with open(name, "rb") as handle:
                head = handle.read(132)
        except OSError:
            continue
        if head[:2] == b"\x02\x00" and head[128:132] != b"DICM":
            return name
    return None


CT_IMAGE_STORAGE_UIDS = ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2")
"""CT Image Storage, Enhanced CT Image Storage, Legacy Converted Enhanced CT Image Storage (SOP Class UIDs)."""


def _damaged_files_beside(chosen: DicomSeriesInfo) -> List[str]:
    """Files in the folders of the ``chosen`` series, outside it, that look like part of it but cannot be read:
    a CT image file (by its meta header's SOP Class) that GDCM cannot read (cut short, damaged), a file without a
    usable meta header (cut short inside its preamble, its 'DICM' marker or SOP Class UID damaged) named like the series' files (their
    names with the digits left out: ``ct0000.dcm`` beside ``ct0001.dcm``) that GDCM cannot read, or an empty file
    named like the series' files (same extension). The series scan leaves such files out, and a slice lost at
    either end of the series left no gap to notice: 19 of 20 slices were segmented without a word."""
    members = {os.path.abspath(f) for f in chosen.files}
    suffixes = {Path(f).suffix.lower() for f in chosen.files}
    name_patterns = {_name_pattern(f) for f in chosen.files}
    damaged = []
    for home in sorted({os.path.dirname(f) for f in members}):
        try:
            entries = [e for e in os.scandir(home) if e.is_file() and not is_hidden_name(e.name)]
        except OSError:
            continue
        for entry in sorted(entries, key=lambda e: e.name):
            path = os.path.abspath(entry.path)
            if path in members:
                continue
            if entry.stat().st_size == 0:
                if Path(entry.name).suffix.lower() in suffixes:
                    damaged.append(path)
                continue
            sop_class = media_storage_sop_class(path)
            # no usable meta header (cut short in its preamble, 'DICM' or its SOP Class UID damaged): a file named
            # like the series' files
            no_sop_class = sop_class is None or not re.fullmatch(r"[0-9.]+", sop_class.rstrip("\x00 "))
            if sop_class in CT_IMAGE_STORAGE_UIDS or (no_sop_class and _name_pattern(path) in name_patterns):
                with _quiet_itk():
                    if _read_file_header(path) is None:
                        damaged.append(path)
    return damaged


def _name_pattern(path: str) -> str:
    """A file's name with each run of digits as '#', lower case: 'CT0007.dcm' and 'ct0012.dcm' -> 'ct#.dcm',
    'IM000016' -> 'im#' (the series' numbering scheme)."""
    return re.sub(r"\d+", "#", os.path.basename(path).lower())


def _refuse_damaged_files_beside(chosen: DicomSeriesInfo, folder: Path) -> None:
    """InputError naming the files :func:`_damaged_files_beside` finds; when they are images in a transfer syntax
    this reader cannot decode (a series partly recompressed, e.g. in JPEG XL), it says so and how to decompress
    them (they were called cut short or damaged, with the advice to copy the series again)."""
    damaged = _damaged_files_beside(chosen)
    if not damaged:
        return
    shown = ", ".join(f"'{os.path.relpath(p, os.path.abspath(str(folder)))}'" for p in damaged[:3])
    more = f" and {len(damaged) - 3} more" if len(damaged) > 3 else ""
    undecodable = undecodable_transfer_syntax([Path(p) for p in damaged])
    if undecodable is not None:
        where = f"Folder '{folder}'"
        raise InputError(f"{_undecodable_text(undecodable, where)} Without them ({len(damaged)} "
                         f"file(s): {shown}{more}), DICOM series {chosen.uid} would be read with slices missing.")
    raise InputError(f"Folder '{folder}': {len(damaged)} file(s) beside DICOM series {chosen.uid} cannot be read "
                     f"({shown}{more}): CT image files that are cut short or damaged, or empty files named like the "
                     f"series' files. They may be slices of this series, which would then be segmented with slices "
                     f"missing. Copy or export the series again; if those files do not belong to it, remove them.")


def _image_files_held_text(folder: Path) -> str:
    """`` It holds N NIfTI/NRRD/MetaImage file(s) (...): give one of them.`` when ``folder`` holds such files (hidden
    ones, such as macOS's ``._`` files, left out), else ''. ``preprocess Task03_Liver/imagesTr`` was told only that
    the folder holds no DICOM series, as if it held no CT."""
    from ..fileutil import full_suffix
    from .formats import READ_SUFFIXES

    from .formats import is_archive_name

    try:
        entries = sorted(p for p in folder.iterdir() if not is_hidden_name(p.name))
    except OSError:
        return ""
    held = [p.name for p in entries if full_suffix(p) in READ_SUFFIXES]
    archives = [p.name for p in entries if is_archive_name(p) and p.is_file()]
    text = ""
    if held:
        shown = ", ".join(held[:3]) + (" ..." if len(held) > 3 else "")
        text += (f" It holds {len(held)} NIfTI/NRRD/MetaImage file(s) ({shown}), which are read one at a time: give "
                 f"one of them.")
    if archives:  # a study exported as a zip: 'holds no DICOM series' said nothing of it (the DICOM audit)
        shown = ", ".join(archives[:3]) + (" ..." if len(archives) > 3 else "")
        text += (f" It holds {len(archives)} archive(s) ({shown}), which this tool does not open: extract them and "
                 f"give the extracted DICOM series folder or CT file.")
    return text


def _read_dicom_folder(folder: Path, series: Optional[str], given_file: Optional[Tuple[Path, str]] = None
                       ) -> CTVolume:
    """The DICOM series ``series`` picks in ``folder`` (or its only one). ``given_file``: ``(file, its series UID)``
    when the user gave one file of a series and ``series`` too: a ``series`` that picks another series than the
    file's is refused (it read that other series without a word)."""
    all_series, search = _search_dicom_series(folder)
    if not all_series:
        float_file = _float_pixel_file(folder)
        if float_file is not None:
            raise InputError(f"Folder '{folder}' holds DICOM images whose pixels are floating point (Float Pixel "
                             f"Data, e.g. '{float_file.name}'), which CT images do not use (they store integers with "
                             f"a rescale to HU); they cannot be read as a CT. Export the series as a standard CT "
                             f"Image series, or convert it to NIfTI/NRRD.")
        sampled = _sample_files([folder] + search.folders)  # not walked again
        undecodable = undecodable_transfer_syntax(sampled)
        if undecodable is not None:
            raise InputError(_undecodable_text(undecodable, f"Folder '{folder}'"))
        zero_slope = zero_rescale_slope_file(sampled)
        if zero_slope is not None:
            raise InputError(_zero_slope_text(f"Folder '{folder}' holds no DICOM series the reader can read",
                                              f"'{zero_slope}'"))
        non_finite = non_finite_rescale_file(sampled)
        if non_finite is not None:
            raise InputError(_non_finite_rescale_text(f"Folder '{folder}' holds no DICOM series the reader can read",
                                                      non_finite[1], non_finite[2], f"'{non_finite[0]}'"))
        if search.cut:
            raise InputError(f"Folder '{folder}' holds no DICOM series, nor do its subfolders as far as they were "
                             f"searched: the search {_search_stop_text(search, folder)}. Give the folder of the "
                             f"DICOM series itself, or a {_FILE_FORMATS_TEXT} file.")
        raise InputError(f"Folder '{folder}' holds no DICOM series, nor do its subfolders (searched "
                         f"{MAX_SUBFOLDER_DEPTH} levels deep). Give a folder of DICOM files, or a "
                         f"{_FILE_FORMATS_TEXT} file.{_image_files_held_text(folder)}")
    images = [s for s in all_series if _is_image_series(s)]
    if series is not None:
        chosen = select_dicom_series(all_series, series, folder)
        if given_file is not None and chosen.uid != given_file[1]:
            raise InputError(f"'{given_file[0]}' is a file of DICOM series {given_file[1]}, but --series "
                             f"'{series}' picks another series of its folder ({chosen.uid}"
                             f"{', ' + repr(chosen.description) if chosen.description else ''}). Give the file of "
                             f"the series you want, or the folder with --series.")
    elif len(all_series) == 1:
        chosen = all_series[0]
    elif len(images) == 1:  # e.g. the CT and the DICOM SEG written from it in one folder
        chosen = images[0]
    else:
        each = ("\nTo segment each of them, list their folders as cases in a CSV (column 'image') and give the "
                "CSV instead." if _series_folders(all_series) else "")
        if search.cut:
            each += (f"\nThe search of its subfolders {_search_stop_text(search, folder)}: this list may miss "
                     f"series, and a series found in the subfolders may lack files and is refused; give the "
                     f"folder that holds the whole series you want instead.")
        headline = f"Folder '{folder}' holds {len(all_series)} DICOM series"
        raise SeveralSeriesError(f"{headline}; choose one with {option_hint('--series', 'series=')} "
                                 f"({SERIES_CHOICES_TEXT}):\n{_series_listing(all_series)}{each}", headline)
    if not _is_image_series(chosen):  # --allow-non-hu would have segmented a binary mask as a CT
        raise InputError(f"DICOM series {chosen.uid} in '{folder}' is a {chosen.modality.upper()} object (a "
                         f"segmentation, contours, a report or a presentation state), not an image. Give the CT "
                         f"series{' (choose it with ' + option_hint('--series', 'series=') + ')' if images else ''}.")
    cut_note = _check_search_reached(chosen, folder, search)
    _refuse_damaged_files_beside(chosen, folder)
    _check_dicom_series_memory(chosen, folder)
    _refuse_pixel_data_of_another_size(chosen, folder)
    if any(h.photometric == "MONOCHROME1" for h in chosen._headers or []):  # before GDCM, which fails on some
        raise InputError(_inverted_grey_scale_text(chosen, folder))      # (12 bits stored, signed) with its own words
    _refuse_colour_images_among_slices(chosen, folder)
    _refuse_several_multiframe_files(chosen, folder)
    if chosen._headers:  # before GDCM, which refused two scouts of two sizes as 'a localizer ... mixed in'
        _refuse_localizer_series(chosen, [h.localizer for h in chosen._headers], folder, others=len(images) > 1)
    sitk = _sitk()
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(chosen.files)
    reader.MetaDataDictionaryArrayUpdateOn()  # per-slice tags (positions) without reading the files again
    try:
        with _quiet_itk():
            image = execute_with_read_stop(reader)  # a batch's reader stopped by Ctrl-C: at most one file more
    except RuntimeError as exc:
        raise_if_out_of_memory(exc, str(folder), series=chosen.uid)
        reason = _itk_reason(exc)
        odd = _files_of_another_size(chosen.files)  # ITK words a size mismatch differently by case
        bare = _meta_header_without_preamble(chosen.files)
        fix = (f"Its images have different sizes ({odd}): a localizer/scout image or another series is probably "
               f"mixed in; remove the odd file(s) (or export the axial series alone)." if odd else
               f"Its files (e.g. '{Path(bare).name}') start with a file meta header but lack the 128-byte preamble "
               f"and 'DICM' before it, which this reader needs; rewrite them as standard DICOM files (e.g. DCMTK's "
               f"'dcmconv', or pydicom's dcmread(..., force=True) and save_as)." if bare else
               "Check that all its files are complete.")
        if sys.platform == "win32" and not all(ord(c) < 128 for c in os.path.abspath(str(folder))):
            fix += (" On Windows, ITK (GDCM), which reads DICOM series, cannot open paths with non-ASCII characters: "
                    "copy the series to a folder whose path has only ASCII characters.")  # (the portability audit)
        raise InputError(f"Cannot read DICOM series {chosen.uid} in '{folder}': {reason}. {fix}") from None
    _refuse_zero_rescale_slope(chosen, reader, folder)
    _refuse_non_numeric_rescale(chosen, reader, folder)
    _refuse_missing_rescale(chosen, reader, folder)
    _refuse_negative_rescale_slope(chosen, reader, folder)
    _refuse_implausible_rescale_slope(chosen, reader, folder)
    _refuse_values_beyond_bits_stored(chosen, reader, folder)
    if len(chosen.files) > 1 and _rescale_differs_between_slices(reader, len(chosen.files)) \
            and image.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64):
        image = _read_as_float(reader, folder, chosen)
    _refuse_inverted_grey_scale(chosen, reader, folder)
    _refuse_signed_values_marked_unsigned(chosen, reader, image, folder)
    _refuse_localizer_series(chosen, _localizer_kinds(chosen, reader), folder, others=len(images) > 1)
    multiframe_thickness_mm = None  # type: Optional[float]
    multiframe_rescale = []  # type: list  # the frames' rescale, which the padding is mapped with
    if len(chosen.files) == 1 and image.GetDimension() >= 3 and image.GetSize()[2] > 1:  # one multi-frame file
        multiframe_thickness_mm = _check_multiframe(chosen, image, folder, multiframe_rescale)
    else:  # single-frame slices (a multi-frame file keeps its spacing in functional groups)
        _check_pixel_spacing(chosen, reader, folder)
        _check_orientation_present(chosen, reader, folder)
    positions = _checked_slice_positions(chosen, reader, image, folder) if len(chosen.files) > 1 else None
    sibling_note = _sibling_parts_note(chosen, _read_image_keys(reader, len(chosen.files)), folder)
    notes = [n for n in (cut_note, sibling_note) if n]
    if image.GetDimension() == 3 and image.GetSize()[2] == 1:
        thickness = _single_slice_thickness(chosen.files[0])
        if thickness:
            image.SetSpacing(tuple(image.GetSpacing()[:2]) + (thickness,))
        else:  # ITK's 1 mm: a 4 mm slice's liver was 23.6 mL instead of 94.4 mL, without a word
            notes.append(f"DICOM series {chosen.uid} is one slice whose header gives neither SliceThickness nor "
                         f"SpacingBetweenSlices; its thickness is taken as {image.GetSpacing()[2]:g} mm, so the "
                         f"volumes (mL) measured on it are not the real ones.")
    if positions is not None and image.HasMetaDataKey("ITK_non_uniform_sampling_deviation"):
        note = _check_slice_positions(chosen, image, folder, positions)
        if note:
            notes.append(note)
    # the per-slice tags still needed, then the reader let go before the voxels are copied: it keeps its output (the
    # image's own buffer) alive, so numpy's copy made SimpleITK copy the image first (3 copies at the peak, not 2)
    padding = _padding_hu_intervals(reader, len(chosen.files), image.GetSize()[2] if image.GetDimension() >= 3 else 1,
                                    multiframe_rescale[0] if multiframe_rescale else None)
    thickness_mm = multiframe_thickness_mm or _series_slice_thickness(reader, len(chosen.files))
    del reader
    volume = _volume_from_sitk(image, f"{folder} (series {chosen.uid})")
    del image
    padded = _apply_pixel_padding(volume, padding)
    if padded:
        volume.meta["padding_voxels"] = padded
    if notes:
        volume.meta.setdefault("warnings", []).extend(notes)
    volume.meta.update({"format": "dicom", "series_uid": chosen.uid, "series_description": chosen.description,
                        "modality": chosen.modality, "num_files": chosen.num_files,
                        "files": list(chosen.files),  # what a DICOM SEG of this volume references
                        "input_dicom": dicom_series_fingerprint(chosen, folder)})
    if thickness_mm is not None:  # RECIST's measurable minimum is twice it above 5 mm (7 mm slices every 5 mm: 14 mm)
        volume.meta["dicom_slice_thickness_mm"] = thickness_mm
    if len(chosen.files) > 1 and volume.shape_zyx[0] != len(chosen.files):
        volume.meta.setdefault("warnings", []).append(
            f"series has {len(chosen.files)} files but {volume.shape_zyx[0]} slices were read")
    return volume


def dicom_series_fingerprint(series: DicomSeriesInfo, folder: PathLike) -> Dict[str, Any]:
    """``{"series_uid", "num_files", "bytes", "files_sha256"}`` of a DICOM series read from ``folder``: a
    ``segment`` report records it (``input_dicom``), so a resumed batch can tell the series it segmented from
    another one put in the case's folder (:func:`current_dicom_fingerprint`). ``bytes``: the files' total size;
    ``files_sha256``: the SHA-256 of each file's path relative to ``folder`` and size, in sorted order (a folder
    copied or moved elsewhere keeps it; the files' modification times are not part of it). Not seen: a file
    rewritten in place with other pixels of the same size under the same series UID."""
    import hashlib

    root = os.path.abspath(str(folder))
    entries = sorted((os.path.relpath(os.path.abspath(f), root).replace(os.sep, "/"), os.path.getsize(f))
                     for f in series.files)
    digest = hashlib.sha256("\n".join(f"{name}\t{size}" for name, size in entries).encode("utf-8"))
    return {"series_uid": series.uid, "num_files": len(entries), "bytes": int(sum(size for _, size in entries)),
            "files_sha256": digest.hexdigest()}


def current_dicom_fingerprint(folder: PathLike) -> Optional[Dict[str, Any]]:
    """:func:`dicom_series_fingerprint` of the series ``segment`` would read from ``folder`` now without
    ``--series`` (the folder's one series, or its one image series); None when there is none or several (reading
    it would then fail or ask for a series). Reads every file's header once, no pixels."""
    try:
        all_series = find_dicom_series(folder)
    except (InputError, OSError):
        return None
    images = [s for s in all_series if _is_image_series(s)]
    chosen = all_series if len(all_series) == 1 else images
    if len(chosen) != 1:
        return None
    try:
        return dicom_series_fingerprint(chosen[0], folder)
    except OSError:
        return None


def current_dicom_fingerprint_of_file(path: PathLike) -> Optional[Dict[str, Any]]:
    """:func:`dicom_series_fingerprint` of the series ``segment`` reads now for the DICOM file ``path`` (as
    ``read_volume`` does: the series of the file's folder that holds it); None when the file is no readable DICOM
    file or no single series of its folder has its series UID."""
    path = Path(path)
    try:
        uid = _dicom_series_of_file(path)
        chosen = [s for s in find_dicom_series(path.parent) if s.uid == uid]
        return dicom_series_fingerprint(chosen[0], path.parent) if len(chosen) == 1 else None
    except (InputError, OSError):
        return None


def _sop_instance_uids(reader, num_files: int) -> List[str]:
    """The SOPInstanceUID of each of the ``num_files`` files ``reader`` read ("" where absent), from its per-file
    tags (``MetaDataDictionaryArrayUpdateOn``), without reading the files again."""
    uids = []
    for index in range(num_files):
        try:
            uids.append(reader.GetMetaData(index, "0008|0018").strip().rstrip("\0"))
        except RuntimeError:
            uids.append("")
    return uids


def _read_image_keys(reader, num_files: int) -> List[_ImageKey]:
    """The :data:`_ImageKey` of each of the ``num_files`` files ``reader`` read, from its per-file tags."""
    positions = []
    for index in range(num_files):
        try:
            positions.append(reader.GetMetaData(index, "0020|0032").split("\\"))
        except RuntimeError:
            positions.append([])
    return [_image_key(uid, position) for uid, position in zip(_sop_instance_uids(reader, num_files), positions)]


def _refuse_copies_of_one_image(series: DicomSeriesInfo, reader, folder: Path) -> None:
    """InputError when two files of ``series`` are the same image (one SOPInstanceUID): two copies of one export
    in the folder tree. They were blamed on 'several acquisitions', with advice to export each on its own."""
    uids = _sop_instance_uids(reader, len(series.files))
    first = {}  # type: dict
    for uid, name in zip(uids, series.files):
        if uid and uid in first:
            copies = sum(1 for u in uids if u) - len({u for u in uids if u})
            raise InputError(f"DICOM series {series.uid} in '{folder}' holds the same images more than once "
                             f"({copies} file(s) repeat another's SOPInstanceUID, e.g. '{first[uid]}' and '{name}'): "
                             f"the folder holds two copies of the series. Keep one copy, or give the folder of one "
                             f"of them.")
        first.setdefault(uid, name)


PLANE_TAG_CHECKS = (("0020|0037", "orientation (ImageOrientationPatient)",
                     "a localizer/scout image or another reconstruction is mixed into the series; remove {that} (or "
                     "export the axial series alone)"),
                    ("0028|0030", "pixel spacing (PixelSpacing)",
                     "ITK would use the first file's spacing for every slice; export a series whose slices share one "
                     "pixel spacing"))
"""The per-file tags every slice of a series must share (tag, what it is, the fix; ``{that}``: "that file" or
"those files"), within :data:`SERIES_HEADER_TOLERANCE`."""


def _same_plane_values(values: Sequence[float], reference: Sequence[float]) -> bool:
    """Whether two files' values of one :data:`PLANE_TAG_CHECKS` tag agree (as many, each within the tolerance)."""
    return len(values) == len(reference) and \
        float(np.max(np.abs(np.subtract(values, reference)))) <= SERIES_HEADER_TOLERANCE


def _plane_value_groups(series: DicomSeriesInfo, reader, tag: str) -> List[List[int]]:
    """The files of ``series`` (indices, file order) that have ``tag``, grouped by its value (each file with the
    first of a group whose value it shares), the largest group first (of equal ones, the one met first)."""
    groups: List[Tuple[List[float], List[int]]] = []
    for index in range(len(series.files)):
        values = _tag_numbers(reader, index, tag)
        if values is None:
            continue
        group = next((members for first, members in groups if _same_plane_values(values, first)), None)
        if group is None:
            groups.append((values, [index]))
        else:
            group.append(index)
    return sorted((members for _, members in groups), key=lambda members: (-len(members), members[0]))


def _refuse_another_plane_value(series: DicomSeriesInfo, reader, folder: Path, tag: str, what: str,
                                fix: str) -> None:
    """InputError for a series whose files differ in ``tag`` (one of :data:`PLANE_TAG_CHECKS`), naming every file
    outside the largest group of files that share one value, and how many there are: eight coronal reformats filed
    under the axial series' UID were reported one file at a time ("file 'cor01.dcm' has another orientation ...;
    remove that file"), so the user removed one and was refused again, seven more times."""
    groups = _plane_value_groups(series, reader, tag)
    main, odd = groups[0], [index for group in groups[1:] for index in group]
    names = [Path(series.files[index]).name for index in odd]
    kept = Path(series.files[main[0]]).name
    kept_values = _format_numbers(_tag_numbers(reader, main[0], tag) or [])
    odd_values = _format_numbers(_tag_numbers(reader, odd[0], tag) or [])
    if len(odd) == 1:
        raise InputError(f"DICOM series {series.uid} in '{folder}': file '{names[0]}' has another {what} "
                         f"({odd_values}) than '{kept}' ({kept_values}): {fix.format(that='that file')}.")
    others = f"the other {len(main)} files" if len(main) > 1 else "the other file"
    raise InputError(f"DICOM series {series.uid} in '{folder}': {len(odd)} of its {len(series.files)} files "
                     f"({_first_names(names)}) have another {what} (e.g. '{names[0]}': {odd_values}) than {others} "
                     f"(e.g. '{kept}': {kept_values}): {fix.format(that='those files')}.")


def _checked_slice_positions(series: DicomSeriesInfo, reader, image, folder: Path) -> np.ndarray:
    """Each file's position along the slice normal (mm, file order, from the tags the series read already holds:
    no file is read again), after checking the per-slice geometry tags of a multi-file series before ITK's grid
    is trusted (ITK builds it from the first file and fills in what is missing): every slice must have an
    ImagePositionPatient (ITK would
    invent 1 mm slices at the origin), the same ImageOrientationPatient (else a localizer/scout or another
    reconstruction is mixed in) and the same PixelSpacing (ITK would use the first file's for all), and distinct
    positions along the slice normal (else several acquisitions are mixed). Also refuse a gantry-tilted series
    (:func:`_check_no_gantry_tilt`)."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    normal = direction[:, 2]
    _refuse_mixed_in_localizer(series, reader, folder)
    positions = []
    points = []
    first_tags: dict = {}
    for index in range(len(series.files)):
        name = Path(series.files[index]).name
        try:
            text = reader.GetMetaData(index, "0020|0032")
        except RuntimeError:
            _refuse_files_without_position(series, reader, folder)
        xyz = _position_xyz(text)
        if xyz is None:
            raise InputError(f"DICOM series {series.uid} in '{folder}' has an invalid ImagePositionPatient "
                             f"({text.strip()[:60]!r}) in file '{name}': it must be 3 numbers (x, y, z in mm), "
                             f"so the slice geometry cannot be built. Re-export the series from the scanner/PACS.")
        for tag, what, fix in PLANE_TAG_CHECKS:
            values = _tag_numbers(reader, index, tag)
            if values is None:
                continue
            reference = first_tags.setdefault(tag, (values, name))
            if not _same_plane_values(values, reference[0]):
                _refuse_another_plane_value(series, reader, folder, tag, what, fix)
        positions.append(float(np.dot(xyz, normal)))
        points.append(xyz)
    distinct = len(np.unique(np.round(positions, 3)))
    if distinct < len(positions):
        _refuse_copies_of_one_image(series, reader, folder)
        raise InputError(f"DICOM series {series.uid} in '{folder}' has {len(positions)} slices but only {distinct} "
                         f"distinct slice position(s) (ImagePositionPatient), so its slice spacing is unknown; it "
                         f"probably mixes several acquisitions (phases, echoes, a repeated scan)"
                         f"{_same_position_text(series, reader, positions)}. Export each acquisition as its own "
                         f"series.")
    _refuse_interleaved_acquisitions(series, reader, positions, folder)
    _check_no_gantry_tilt(series, np.asarray(points), direction, image.GetSpacing(), folder)
    return np.asarray(positions)


def _position_xyz(text: str) -> Optional[List[float]]:
    """An ImagePositionPatient value as stored (``'x\\y\\z'``) as 3 floats (mm, LPS); None unless it is exactly 3
    finite numbers: a fourth value was dropped and the first three trusted ('1\\2\\3\\4' was then refused as
    a gantry tilt, and a stray fourth value after the right position went unseen)."""
    try:
        xyz = [float(v) for v in text.strip(" \0").split("\\")]
    except ValueError:
        return None
    return xyz if len(xyz) == 3 and all(np.isfinite(v) for v in xyz) else None


def _first_names(names: Sequence[str], shown: int = 3) -> str:
    """``names`` quoted for a message, the first ``shown`` of them: "'a.dcm', 'b.dcm', 'c.dcm' and 4 more"."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(f"'{name}'" for name in names[:shown]) + more


def _which_files(series: DicomSeriesInfo, indices: Sequence[int]) -> str:
    """Files ``indices`` of ``series`` for a message: "its files ('a.dcm', ...)" when they are all of them, else
    "2 of its 12 files ('a.dcm', 'b.dcm')"."""
    which = "its files" if len(indices) == len(series.files) else f"{len(indices)} of its {len(series.files)} files"
    return f"{which} ({_first_names([Path(series.files[index]).name for index in indices])})"


def _files_without_tag(series: DicomSeriesInfo, reader, tag: str, empty_too: bool = False) -> List[str]:
    """Names of the files of ``series`` (file order) whose tags, as a series reader read them, lack ``tag``;
    ``empty_too``: also those whose value is empty (only spaces)."""
    missing = []
    for index in range(len(series.files)):
        try:
            value = reader.GetMetaData(index, tag)
        except RuntimeError:
            value = None
        if value is None or (empty_too and not value.strip()):
            missing.append(Path(series.files[index]).name)
    return missing


def _refuse_files_without_position(series: DicomSeriesInfo, reader, folder: Path) -> None:
    """InputError for a multi-file series some of whose files have no ImagePositionPatient (0020,0032). When the
    other files have one, those are no slices of the CT (a dose report screen or another secondary capture
    filed in the series): they are named, with the advice to remove them, where re-exporting the series (the
    advice for a series whose files all lack it) would bring them back."""
    missing = _files_without_tag(series, reader, "0020|0032")
    shown = _first_names(missing)
    if len(missing) < len(series.files):
        raise InputError(f"DICOM series {series.uid} in '{folder}': {len(missing)} of its {len(series.files)} files "
                         f"({shown}) {'has' if len(missing) == 1 else 'have'} no ImagePositionPatient while the "
                         f"others have one: such files are probably not slices of this CT (a dose report screen, a "
                         f"screenshot or another secondary capture filed in the series). Remove them, or export the "
                         f"axial series alone.")
    raise InputError(f"DICOM series {series.uid} in '{folder}': its files ({shown}) have no ImagePositionPatient, "
                     f"so the slice positions and spacing cannot be known. Re-export the series from the "
                     f"scanner/PACS with its position tags.")


def _zero_slope_text(where: str, files: str) -> str:
    """The refusal of a RescaleSlope of 0 (:func:`_refuse_zero_rescale_slope`, :func:`zero_rescale_slope_file`):
    ``where`` names the series or file, ``files`` the files (what the user would fix)."""
    return (f"{where}: RescaleSlope (0028,1053) is 0 in {files}. A slope of 0 maps every pixel to the "
            f"RescaleIntercept, so the Hounsfield units cannot be computed; the DICOM reader would take slope 1 (or "
            f"fail) without saying so. If the writer meant no rescale, set RescaleSlope to 1 (e.g. DCMTK: dcmodify "
            f"-m \"(0028,1053)=1\" FILES) and read it again; otherwise re-export the series from the scanner/PACS.")


def _refuse_zero_rescale_slope(series: DicomSeriesInfo, reader, folder: Path) -> None:
    """InputError for files of a series (read by ``reader``) whose RescaleSlope (0028,1053) is 0: GDCM takes
    such a slope as 1 without a word (a phantom series with slope 0 in every file read with its stored values as
    HU), but a slope of 0 is no rescale at all (every pixel would be the intercept): whether the writer meant 1
    or the tag is damaged is the user's to say, so the file is named rather than read as a guess."""
    zero = [index for index in range(len(series.files)) if (_tag_numbers(reader, index, "0028|1053") or [1.0])[0] == 0]
    if not zero:
        return
    raise InputError(_zero_slope_text(f"DICOM series {series.uid} in '{folder}'", _which_files(series, zero)))


_RESCALE_TAGS = (("0028|1053", "RescaleSlope (0028,1053)", "slope 1"),
                 ("0028|1052", "RescaleIntercept (0028,1052)", "intercept 0"))
"""The rescale tags (ITK's key, name, what GDCM takes instead of a value that is no number)."""
_RESCALE_KEYWORDS = (("RescaleSlope", "RescaleSlope (0028,1053)", "slope 1"),
                     ("RescaleIntercept", "RescaleIntercept (0028,1052)", "intercept 0"))
"""The rescale tags (pydicom's keyword, name, what GDCM takes instead of a value that is no number)."""


def _refuse_non_numeric_rescale(series: DicomSeriesInfo, reader, folder: Path) -> None:
    """InputError for files of a series (read by ``reader``) whose RescaleSlope or RescaleIntercept is there but no
    finite number ('NaN', 'inf'): GDCM takes such a slope as 1 and such an intercept as 0 without a word (a series
    whose every file gave slope 'NaN' read its stored values as HU, exit 0), as it takes a slope of 0
    (:func:`_refuse_zero_rescale_slope`); the values they stood for cannot be known."""
    for tag, name, taken in _RESCALE_TAGS:
        bad = [index for index in range(len(series.files))
               if _tag_text(reader, index, tag) and _tag_numbers(reader, index, tag) is None]
        if not bad:
            continue
        raise InputError(f"DICOM series {series.uid} in '{folder}': {name} is '{_tag_text(reader, bad[0], tag)}' in "
                         f"{_which_files(series, bad)}, not a finite number, so the Hounsfield units cannot be "
                         f"computed; the DICOM reader would take {taken} without saying so. Re-export the series "
                         f"from the scanner/PACS (or, if you know the value, set it, e.g. DCMTK: dcmodify -m "
                         f"\"({tag.replace('|', ',')})=VALUE\" FILES).")


def _refuse_missing_rescale(series: DicomSeriesInfo, reader, folder: Path) -> None:
    """InputError for files of a series (read by ``reader``) that lack RescaleSlope or RescaleIntercept (or hold it
    empty) where other files of it give one: GDCM takes slope 1 and intercept 0 for them without a word, so an
    unsigned series stored with intercept -1024 read such a slice 1024 HU too bright, exit 0 (the DICOM audit). The
    tags are required in a CT image (Type 1, PS3.3 C.8.2.1); where no file has them the series is read as stored
    and the HU checks judge its values, and where the others give what the reader takes (slope 1, intercept 0)
    nothing is lost and the series is read."""
    for (tag, name, taken), default in zip(_RESCALE_TAGS, (1.0, 0.0)):
        has = [bool(_tag_text(reader, index, tag)) for index in range(len(series.files))]
        missing = [index for index, there in enumerate(has) if not there]
        if not missing or len(missing) == len(series.files):
            continue
        given = [index for index, there in enumerate(has) if there]
        if all((_tag_numbers(reader, index, tag) or [None])[0] == default for index in given):
            continue  # what the reader takes for the missing ones is what the others give: nothing is lost
        given = given[0]
        raise InputError(f"DICOM series {series.uid} in '{folder}': {name} is missing or empty in "
                         f"{_which_files(series, missing)}, while the others give it (e.g. "
                         f"'{_tag_text(reader, given, tag)}' in '{Path(series.files[given]).name}'); the DICOM reader "
                         f"would take {taken} for those slices without saying so, and their Hounsfield units would be "
                         f"wrong. Re-export the series from the scanner/PACS (or, if you know the value, set it, e.g. "
                         f"DCMTK: dcmodify -i \"({tag.replace('|', ',')})=VALUE\" FILES).")


def _refuse_negative_rescale_slope(series: DicomSeriesInfo, reader, folder: Path) -> None:
    """InputError for files of a series (read by ``reader``) whose RescaleSlope (0028,1053) is negative: GDCM
    applies it, which turns those slices' values around (air bright, bone dark); one such file among twelve gave
    a lesion's mean HU as 27 instead of 41 without a word. CT stores HU with a positive slope (as the NIfTI reader
    refuses a negative scl_slope)."""
    negative = [index for index in range(len(series.files))
                if (_tag_numbers(reader, index, "0028|1053") or [1.0])[0] < 0]
    if not negative:
        return
    raise InputError(f"DICOM series {series.uid} in '{folder}': RescaleSlope (0028,1053) is negative "
                     f"({_tag_text(reader, negative[0], '0028|1053')}) in {_which_files(series, negative)}, which "
                     f"turns their values around (air bright, bone dark); a CT stores Hounsfield units with a "
                     f"positive slope. Re-export the series from the scanner/PACS.")


CT_RESCALE_SLOPES = (1e-3, 1e3)
"""The RescaleSlope (0028,1053) values a CT can have (inclusive): CT writes 1 (a few exports 0.5, 2, or a float
volume's range / 65535, e.g. 0.0625). Below 1e-3 all 65536 values of 16 bits stored (a CT's most, PS3.3 C.8.2.1)
span under 66 HU, less than fat to soft tissue; above 1e3 one stored step is over 1000 HU, air to bone. A slope
outside (a damaged header's 1e-30) read that slice as about 0 HU without a word."""


def _implausible_slope_text(where: str, value: str, files: str) -> str:
    """The refusal of a RescaleSlope outside :data:`CT_RESCALE_SLOPES` (a series' files or an enhanced CT's frames)."""
    low, high = CT_RESCALE_SLOPES
    return (f"{where}: RescaleSlope (0028,1053) is {value} in {files}, which no CT uses (a CT's slope lies within "
            f"{low:g}..{high:g}, usually 1): the header is damaged, and the Hounsfield units computed with it would be "
            f"wrong. Re-export the series from the scanner/PACS.")


def _refuse_implausible_rescale_slope(series: DicomSeriesInfo, reader, folder: Path) -> None:
    """InputError for files of a series (read by ``reader``) whose positive RescaleSlope lies outside
    :data:`CT_RESCALE_SLOPES` (0, negative and non-finite slopes have their own refusals)."""
    low, high = CT_RESCALE_SLOPES
    odd = [index for index in range(len(series.files))
           if not low <= (_tag_numbers(reader, index, "0028|1053") or [1.0])[0] <= high]
    if odd:
        raise InputError(_implausible_slope_text(f"DICOM series {series.uid} in '{folder}'",
                                                 _tag_text(reader, odd[0], "0028|1053"), _which_files(series, odd)))


def _stored_values_beyond_bits(path: str, compressed_too: bool = True,
                               overlay_bits: int = 0) -> Optional[Tuple[int, int, int, bool]]:
    """``(lowest, highest, BitsStored, signed)`` of the stored values of the file ``path`` when some of them do not
    fit its BitsStored (0028,0101), so GDCM, which keeps only those low bits of each value, would read others than
    the file holds; None when they fit (a signed value either sign-extended beyond BitsStored, as scanners write
    it, or with the bits above it 0) or the file cannot be checked. Native (uncompressed) pixel data is read as
    stored; compressed data as pydicom decodes it, without masking the bits above BitsStored (pydicom 3's RLE
    decoder masks them unless told not to: an RLE slice marked 8 bits passed), unless ``compressed_too`` is False
    (then None, after reading the file meta alone: decoding every slice of a series would cost more than GDCM's
    read). A file whose values lie within BitsStored's range is
    decided by their lowest and highest; only one outside it is looked at value by value (about 11 ms).
    ``overlay_bits``: the bits of overlay planes embedded in the pixel data (:func:`_embedded_overlay_bits`),
    which are not stored values."""
    try:
        import pydicom  # noqa: F401 - a dependency: its absence is said here (read by dcmread_quietly)

        if not compressed_too:  # the file meta alone (its transfer syntax) before the whole file
            from pydicom.filereader import read_file_meta_info

            if getattr(read_file_meta_info(path).get("TransferSyntaxUID"), "is_compressed", True):
                return None
        ds = dcmread_quietly(path, force=True)
        bits, allocated = int(ds.BitsStored), int(ds.BitsAllocated)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        if not 0 < bits < allocated or allocated not in (8, 16, 32):
            return None
        syntax = ds.file_meta.TransferSyntaxUID
        if getattr(syntax, "is_compressed", True):  # not reached without compressed_too: the file meta said so
            if hasattr(ds, "pixel_array_options"):  # pydicom 3; pydicom 2 (Python 3.9) has no such option
                ds.pixel_array_options(correct_unused_bits=False)
            values = np.asarray(ds.pixel_array)
        else:
            count = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1) * \
                int(ds.get("NumberOfFrames", 1) or 1)
            dtype = np.dtype(f"{'i' if signed else 'u'}{allocated // 8}").newbyteorder(
                "<" if syntax.is_little_endian else ">")
            values = np.frombuffer(ds.PixelData, dtype=dtype, count=count)
    except Exception:  # noqa: BLE001 - pydicom raises many types for damaged files; GDCM read it: not this check's
        return None
    return _values_beyond_bits(values, bits, signed, overlay_bits)


def _values_beyond_bits(values: np.ndarray, bits: int, signed: bool,
                        overlay_bits: int = 0) -> Optional[Tuple[int, int, int, bool]]:
    """``(lowest, highest, bits, signed)`` of the stored ``values`` when some of them do not fit ``bits`` bits
    (neither within their range, nor, signed, written with the bits above them 0); None when they all fit. The
    bits of ``overlay_bits`` (overlay planes embedded above BitsStored, which GDCM drops as the standard says)
    are not looked at."""
    if values.size == 0:
        return None
    least, most = _bits_range(bits, signed)
    highest = int(values.max())
    if highest <= most and (values.dtype.kind == "u" or least <= int(values.min())):  # one pass where unsigned
        return None
    lowest = int(values.min())
    width = 8 * values.dtype.itemsize
    high = ((1 << width) - 1) & ~((1 << bits) - 1) & ~overlay_bits  # the bits above BitsStored, overlays not
    values = values.astype(np.int64)
    above = values & high
    fits = above == 0
    if signed:  # sign-extended: every bit above set, and the sign bit
        fits |= (above == high) & (((values >> (bits - 1)) & 1) == 1)
    if bool(np.all(fits)):
        return None
    return lowest, highest, bits, signed


_NATIVE_PIXEL_DATA_HEADS = (
    (b"\xe0\x7f\x10\x00", True, "<"),   # explicit VR little endian: tag, VR (OW/OB), 2 reserved bytes, 4-byte length
    (b"\x7f\xe0\x00\x10", True, ">"),   # explicit VR big endian (retired)
    (b"\xe0\x7f\x10\x00", False, "<"),  # implicit VR little endian: tag, 4-byte length
)


def _native_pixel_element_bytes(count: int, allocated: int) -> int:
    """Bytes of a native PixelData element holding ``count`` values of ``allocated`` bits: its 12-byte header (tag,
    VR and reserved bytes or implicit VR, length) and the values, padded to an even length as every element is."""
    size = count * allocated // 8
    return size + (size & 1) + 12


def _native_pixel_values(path: str, count: int, allocated: int, signed: bool,
                         buffer: Optional[bytearray] = None) -> Optional[np.ndarray]:
    """The ``count`` stored values of ``allocated`` bits of the file ``path``, read straight from its last bytes,
    where its native (uncompressed) PixelData (7FE0,0010) of exactly that length ends the file (as scanners and
    PACS write a CT slice); None otherwise (compressed, encapsulated pixel data, elements after it, a damaged
    file): then pydicom reads the file. ``buffer``: a bytearray to read into (the values are a view of it, valid
    until it is read into again), reused from file to file. About 0.1 ms a 512 x 512 slice, against pydicom's
    0.4 ms."""
    if allocated not in (8, 16, 32) or count <= 0:
        return None
    padded = _native_pixel_element_bytes(count, allocated) - 12
    if buffer is None or len(buffer) != padded + 12:
        buffer = bytearray(padded + 12)
    try:
        with open(path, "rb", buffering=0) as handle:
            end = handle.seek(0, os.SEEK_END)
            if end < padded + 12 + 132:
                return None
            handle.seek(end - padded - 12)
            if handle.readinto(buffer) != padded + 12:
                return None
    except OSError:
        return None
    head = bytes(buffer[:12])
    for tag, explicit, order in _NATIVE_PIXEL_DATA_HEADS:
        length = padded.to_bytes(4, "little" if order == "<" else "big")
        if explicit and head[:4] == tag and head[4:6] in (b"OW", b"OB") and head[6:8] == b"\x00\x00" \
                and head[8:] == length:
            break
        if not explicit and head[4:8] == tag and head[8:] == length:
            break
    else:
        return None
    dtype = np.dtype(f"{'i' if signed else 'u'}{allocated // 8}").newbyteorder(order)
    return np.frombuffer(buffer, dtype=dtype, count=count, offset=12)


class _PixelLayout:
    """What :func:`_file_values_beyond_bits` needs of a series' files beside each one's BitsStored: the stored
    values a file holds (Rows x Columns x SamplesPerPixel x NumberOfFrames) and BitsAllocated, as GDCM read them
    from its first file (a file of another size fails :func:`_native_pixel_values`'s length test and is read with
    pydicom), and a buffer reused from file to file."""

    def __init__(self, reader) -> None:
        def number(tag: str, default: int) -> int:
            return int((_tag_numbers(reader, 0, tag) or [default])[0])

        self.allocated = number("0028|0100", 0)
        self.count = number("0028|0010", 0) * number("0028|0011", 0) * max(number("0028|0002", 1), 1) * \
            max(number("0028|0008", 1), 1)
        self._buffer = None  # type: Optional[bytearray]

    @property
    def buffer(self) -> bytearray:
        """The bytearray :func:`_native_pixel_values` reads each file's PixelData element into, made on first use."""
        if self._buffer is None:
            self._buffer = bytearray(_native_pixel_element_bytes(self.count, self.allocated))
        return self._buffer


def _file_values_beyond_bits(series: DicomSeriesInfo, reader, index: int, bits: int, layout: _PixelLayout,
                             compressed_too: bool) -> Optional[Tuple[int, int, int, bool]]:
    """:func:`_stored_values_beyond_bits` of file ``index`` (BitsStored ``bits``) of a series read by ``reader``:
    its native pixel data read straight from its bytes (:func:`_native_pixel_values`), else with pydicom
    (compressed files only where ``compressed_too``)."""
    path, values = series.files[index], None
    if 0 < bits < layout.allocated:
        signed = int((_tag_numbers(reader, index, "0028|0103") or [0])[0]) == 1
        values = _native_pixel_values(path, layout.count, layout.allocated, signed, layout.buffer)
    if values is not None:
        def check(overlay: int) -> Optional[Tuple[int, int, int, bool]]:
            return _values_beyond_bits(values, bits, signed, overlay)
    else:
        def check(overlay: int) -> Optional[Tuple[int, int, int, bool]]:
            return _stored_values_beyond_bits(path, compressed_too, overlay)
    found = check(0)
    if found is not None:  # overlay planes' bits are not values: looked up only for a file that failed
        overlay = _embedded_overlay_bits(reader, index, bits, layout.allocated)
        if overlay:
            found = check(overlay)
    return found


def _embedded_overlay_bits(reader, index: int, bits: int, allocated: int) -> int:
    """The bits above BitsStored ``bits`` that file ``index`` gives to overlay planes embedded in its pixel data
    (OverlayBitPosition (60xx,0102), retired in 2004, still in older archives): GDCM drops them, reading the
    values right, so they must not be taken for values beyond BitsStored. Read only for a file that failed the
    check."""
    mask = 0
    for group in range(0x6000, 0x6020, 2):
        position = _tag_numbers(reader, index, f"{group:04x}|0102")
        if position and bits <= position[0] < allocated and float(position[0]).is_integer():
            mask |= 1 << int(position[0])
    return mask


BITS_STORED_SAMPLE = 5
"""Files of a series whose files all give one BitsStored below BitsAllocated (12 of 16) that are checked against
it even when compressed (:func:`_refuse_values_beyond_bits_stored`), spread over the series, the first and the
last included; every uncompressed file is checked."""


def _bits_range(stored: int, signed: bool) -> Tuple[int, int]:
    """The lowest and highest stored value ``stored`` bits hold: ``(-2048, 2047)`` signed 12, ``(0, 4095)`` unsigned."""
    return (-2 ** (stored - 1), 2 ** (stored - 1) - 1) if signed else (0, 2 ** stored - 1)


def _fit_text(stored: int, signed: bool) -> str:
    """The stored values ``stored`` bits hold, e.g. ``-2048..2047`` (signed 12) or ``0..4095``."""
    return "%d..%d" % _bits_range(stored, signed)


WRAPPED_SIGNED_SHARE = 0.01
"""A 16-bit series marked unsigned (PixelRepresentation 0) with at least this share of its sampled voxels reading
32768 HU or more (after its rescale) holds signed values: a CT's air and fat stored as two's complement (-1000 as
64536), which no CT's Hounsfield scale reaches (the extended scale ends near 30,000). An unsigned series stored with
intercept -32768 reads its tissue as usual and is not judged so."""
WRAPPED_SIGNED_MIN_VALUES = 8
"""...and those values take at least this many distinct values (air and fat with their noise), where a padding value
is one."""
WRAPPED_SIGNED_HU = 32768.0


def _refuse_signed_values_marked_unsigned(series: DicomSeriesInfo, reader, image, folder: Path) -> None:
    """InputError for a series whose files say PixelRepresentation 0 (unsigned) and BitsStored 16 but whose values
    read as Hounsfield units no CT has (:data:`WRAPPED_SIGNED_SHARE`): signed values in a header that calls them
    unsigned. GDCM reads -1000 HU as 64536, and the check of the HU said the values look like 'CT stored without its
    rescale intercept' and offered --allow-non-hu, which would segment the wrapped values (the DICOM audit). The
    header is what is wrong; the message says how to mend it."""
    files = range(len(series.files))
    if any((_tag_numbers(reader, i, "0028|0103") or [0])[0] != 0 for i in files) or \
            any((_tag_numbers(reader, i, "0028|0101") or [0])[0] != 16 for i in files):
        return
    sitk = _sitk()
    hu = sitk.GetArrayViewFromImage(image)[::4, ::4, ::4]
    high = hu[hu >= WRAPPED_SIGNED_HU]
    if high.size < WRAPPED_SIGNED_SHARE * max(1, hu.size) or np.unique(high).size < WRAPPED_SIGNED_MIN_VALUES:
        return
    raise InputError(f"DICOM series {series.uid} in '{folder}': its files say PixelRepresentation (0028,0103) is 0 "
                     f"(unsigned), but {100 * high.size / hu.size:.0f} % of its voxels read {WRAPPED_SIGNED_HU:g} HU "
                     f"or more, which no CT holds: signed values (air's -1000 stored as 64536) in a header that calls "
                     f"them unsigned, so every value below 0 would read about 65536 too high. The header is damaged: "
                     f"re-export the series from the scanner/PACS, or, if the values are signed, set "
                     f"PixelRepresentation to 1 in every file (e.g. DCMTK: dcmodify -m \"(0028,0103)=1\" FILES).")


def _refuse_values_beyond_bits_stored(series: DicomSeriesInfo, reader, folder: Path) -> None:
    """InputError for a series whose stored values do not fit BitsStored (0028,0101): GDCM keeps only those bits of
    each value, without a word. Where its files differ in BitsStored, each file with fewer bits than the most is
    read again (pydicom): one slice marked BitsStored 8 among 16-bit slices read -118..80 HU where it held
    -1000..710; series mixing 12 and 16 bits whose values fit are read as they are (scanners write such series).
    Where every file gives one BitsStored below BitsAllocated (12 of 16), every file is read again (its pixel
    data's bytes, :func:`_native_pixel_values`; compressed files only among :data:`BITS_STORED_SAMPLE` spread over
    the series): a series marked 12 bits whose padding was stored as -3024 read it as +1072 HU, and metal stored
    as 4524 (3500 HU, intercept -1024) read as -596 HU, also where only 2 of 40 slices held the metal."""
    bits = [int((_tag_numbers(reader, index, "0028|0101") or [0])[0]) for index in range(len(series.files))]
    if len(set(bits)) < 2:
        allocated = int((_tag_numbers(reader, 0, "0028|0100") or [0])[0])
        if not bits or not 0 < bits[0] < allocated:
            return
        sample, layout = set(_spread_sample(series.files, BITS_STORED_SAMPLE)), _PixelLayout(reader)
        for index, path in enumerate(series.files):
            raise_if_read_stopped()
            found = _file_values_beyond_bits(series, reader, index, bits[index], layout, compressed_too=path in sample)
            if found is not None:
                lowest, highest, stored, signed = found
                raise InputError(
                    f"DICOM series {series.uid} in '{folder}': its files say BitsStored (0028,0101) is {stored} (of "
                    f"{allocated} allocated), but they hold stored values that {stored} bits do not hold (e.g. "
                    f"'{Path(path).name}': {lowest}..{highest}, where {stored} bits hold "
                    f"{_fit_text(stored, signed)}); the DICOM reader would keep only those bits and read wrong "
                    f"Hounsfield units without saying so. The header is damaged: re-export the series from the "
                    f"scanner/PACS, or, if the values are right, set BitsStored to {allocated} and HighBit to "
                    f"{allocated - 1} in every file (e.g. pydicom: ds.BitsStored, ds.HighBit = {allocated}, "
                    f"{allocated - 1}; ds.save_as(path)).")
        return
    most = max(bits)
    beyond, layout = [], _PixelLayout(reader)
    for index, value in enumerate(bits):
        if value < most:
            raise_if_read_stopped()
            found = _file_values_beyond_bits(series, reader, index, value, layout, compressed_too=True)
            if found is not None:
                beyond.append((index, found))
    if not beyond:
        return
    counts = ", ".join(f"{b} in {bits.count(b)} file(s)" for b in sorted(set(bits), reverse=True))
    index, (lowest, highest, stored, signed) = beyond[0]
    raise InputError(f"DICOM series {series.uid} in '{folder}': its files differ in BitsStored (0028,0101) "
                     f"({counts}), and {_which_files(series, [i for i, _ in beyond])} hold stored values that do not "
                     f"fit their own BitsStored (e.g. '{Path(series.files[index]).name}': {lowest}..{highest} in "
                     f"{stored} bits, which hold {_fit_text(stored, signed)}); the DICOM reader would keep only those "
                     f"bits and read wrong Hounsfield units without saying so. The header is damaged: re-export the "
                     f"series from the scanner/PACS.")


def _tag_text(reader, index: int, tag: str) -> str:
    """The text of a tag of file ``index`` of a series reader, stripped; "" when absent."""
    try:
        return reader.GetMetaData(index, tag).strip()
    except RuntimeError:
        return ""


def _zero_slope_in(dataset: Any) -> bool:
    """Whether a pydicom data set gives a RescaleSlope (0028,1053) of 0: at its top level (a single-frame image)
    or in a PixelValueTransformationSequence of its shared or per-frame functional groups (an enhanced CT)."""
    holders = [dataset]
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for group in getattr(dataset, groups, None) or []:
            holders.extend(getattr(group, "PixelValueTransformationSequence", None) or [])
    for holder in holders:
        try:
            if "RescaleSlope" in holder and holder.RescaleSlope not in (None, "") and float(holder.RescaleSlope) == 0:
                return True
        except (TypeError, ValueError):
            continue
    return False


def zero_rescale_slope_file(files: Sequence[Path]) -> Optional[Path]:
    """The first of ``files`` that is DICOM with a RescaleSlope of 0 (:func:`_zero_slope_in`), else None: GDCM
    cannot read an enhanced CT whose functional groups give that slope, so a folder of it listed no series and one
    such file was "not a readable DICOM file", neither saying why."""
    try:
        import pydicom  # noqa: F401 - a dependency: its absence is said here (read by dcmread_quietly)
    except ImportError:
        return None
    for path in files:
        try:
            dataset = dcmread_quietly(str(path), stop_before_pixels=True)
        except Exception as exc:  # noqa: BLE001 - not DICOM, unreadable: not this case
            raise_if_out_of_memory(exc, str(path))  # a deflated file inflated past the memory: said, not "no DICOM"
            continue
        if _zero_slope_in(dataset):
            return Path(path)
    return None


def _rescale_text(holder: Any, keyword: str) -> str:
    """The value of ``keyword`` (``RescaleSlope``, ``RescaleIntercept``) of a pydicom data set or sequence item as
    written, stripped; "" when absent or empty."""
    try:
        element = holder[keyword] if keyword in holder else None
    except Exception:  # noqa: BLE001 - a value pydicom cannot even hold: none to name
        return ""
    if element is None or element.value in (None, ""):
        return ""
    return str(element.value).strip()


def _is_finite_number(text: str) -> bool:
    """Whether ``text`` (a DICOM DS value) is one finite number."""
    try:
        return bool(np.isfinite(float(text)))
    except (TypeError, ValueError):
        return False


def _non_finite_rescale_in(dataset: Any) -> Optional[Tuple[str, str]]:
    """``(tag name, value as written)`` of the first RescaleSlope (0028,1053) or RescaleIntercept (0028,1052) of a
    pydicom data set that is there but no finite number ('NaN', 'inf'): at its top level or in a
    PixelValueTransformationSequence of its shared or per-frame functional groups (an enhanced CT); else None."""
    holders = [dataset]
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for group in getattr(dataset, groups, None) or []:
            holders.extend(getattr(group, "PixelValueTransformationSequence", None) or [])
    for holder in holders:
        for keyword, name, _ in _RESCALE_KEYWORDS:
            text = _rescale_text(holder, keyword)
            if text and not _is_finite_number(text):
                return name, text
    return None


def non_finite_rescale_file(files: Sequence[Path]) -> Optional[Tuple[Path, str, str]]:
    """``(file, tag name, value)`` of the first of ``files`` that is DICOM with a rescale that is no finite number
    (:func:`_non_finite_rescale_in`), else None: GDCM cannot read an enhanced CT whose functional groups give a
    RescaleSlope of 'NaN', so a folder of it listed no series and the file was "not a readable DICOM file", where
    a series of single-frame files with it is refused naming the slope."""
    try:
        import pydicom  # noqa: F401 - a dependency: its absence is said here (read by dcmread_quietly)
    except ImportError:
        return None
    for path in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pydicom's 'Invalid value for VR DS': the value is named below
                dataset = dcmread_quietly(str(path), stop_before_pixels=True)
                problem = _non_finite_rescale_in(dataset)
        except Exception as exc:  # noqa: BLE001 - not DICOM, unreadable: not this case
            raise_if_out_of_memory(exc, str(path))  # a deflated file inflated past the memory: said, not "no DICOM"
            continue
        if problem is not None:
            return (Path(path),) + problem
    return None


def _non_finite_rescale_text(where: str, name: str, value: str, files: str, unreadable: bool = True) -> str:
    """The refusal of a rescale that is no finite number in an enhanced CT's frames (the single-frame series'
    refusal, :func:`_refuse_non_numeric_rescale`, says the same of the files it names); ``unreadable``: the DICOM
    reader could not read the file with it."""
    consequence = "; the DICOM reader cannot read the file with it" if unreadable else ""
    return (f"{where}: {name} is '{value}' in {files}, not a finite number, so the Hounsfield units cannot be "
            f"computed{consequence}. Re-export the series from the scanner/PACS (or, if you know the value, set it in the "
            f"file's PixelValueTransformationSequence, 0028,9145).")


def _same_position_text(series: DicomSeriesInfo, reader, positions: Sequence[float]) -> str:
    """The first two files of ``series`` at one position (``positions``: mm along the slice normal, file order,
    compared to 0.001 mm), with their AcquisitionNumbers when the files have them, for a message: " ('a.dcm' and
    'b.dcm' both lie at 12.5 mm along the slice normal; acquisitions 1 and 2)"."""
    first: Dict[float, int] = {}
    for index, position in enumerate(np.round(np.asarray(positions, dtype=float), 3)):
        if float(position) in first:
            pair = (first[float(position)], index)
            names = " and ".join(f"'{Path(series.files[i]).name}'" for i in pair)
            numbers = _acquisition_numbers(reader, len(series.files))
            acquisitions = "" if numbers is None or numbers[pair[0]] == numbers[pair[1]] else (
                f"; acquisitions {numbers[pair[0]]} and {numbers[pair[1]]}")
            return f" ({names} both lie at {float(position):.5g} mm along the slice normal{acquisitions})"
        first[float(position)] = index
    return ""


def _acquisition_numbers(reader, num_files: int) -> Optional[List[int]]:
    """Each file's AcquisitionNumber (0020,0012) from a series reader's tags (file order); None when a file lacks
    it or it is not a whole number."""
    numbers = []
    for index in range(num_files):
        try:
            text = reader.GetMetaData(index, "0020|0012").strip()
        except RuntimeError:
            return None
        if not re.fullmatch(r"[+-]?\d+", text):
            return None
        numbers.append(int(text))
    return numbers


def _refuse_interleaved_acquisitions(series: DicomSeriesInfo, reader, positions: Sequence[float],
                                     folder: Path) -> None:
    """Refuse a series whose acquisitions (AcquisitionNumber) alternate along the scan: sorted by ``positions``
    (mm along the slice normal, file order), each acquisition's slices must lie together. Several scans stored as
    one series (contrast phases at positions shifted by half a slice) were read as one volume of half the slice
    spacing whose slices came from the phases in turn, without a word. Acquisitions that follow each other along
    the scan (a step-and-shoot scan numbers each rotation) are one volume and are read, also where two neighbours
    swap a slice or two at their overlap (at most two runs of slices per acquisition on average); such a series
    with uneven gaps there is refused by the spacing check instead."""
    numbers = _acquisition_numbers(reader, len(series.files))
    if numbers is None or len(set(numbers)) < 2:
        return
    along = [numbers[i] for i in np.argsort(np.asarray(positions, dtype=float), kind="stable")]
    runs = [along[0]] + [b for a, b in zip(along, along[1:]) if a != b]  # the acquisition of each run of slices
    if len(runs) <= 2 * len(set(runs)):  # each acquisition in one run, or two where neighbours overlap at an end
        return
    shown = ", ".join(str(n) for n in runs[:8]) + (", ..." if len(runs) > 8 else "")
    raise InputError(f"DICOM series {series.uid} in '{folder}' mixes {len(set(runs))} acquisitions whose slices "
                     f"alternate along the scan (AcquisitionNumber, slice by slice from one end: {shown}): several "
                     f"scans (contrast phases, a repeated scan) stored as one series, which would be read as one "
                     f"volume of slices taken from them in turn. Export each acquisition as its own series (or put "
                     f"each acquisition's files into a folder of its own) and segment that.")


PADDING_AIR_HU = -1024
"""The value (HU) given to voxels that a series marks as padding (outside the reconstruction circle)."""
PHYSICAL_HU_RANGE = (-1024.5, 3071.5)
"""Padding that maps into this range (HU) is left alone: it cannot be told from tissue, and it is plausible CT."""


def _padding_hu_interval(reader, index: int, rescale: Optional[Tuple[float, float]] = None
                         ) -> Optional[Tuple[float, float]]:
    """The HU interval that file ``index`` marks as padding (PixelPaddingValue, 0028,0120, and
    PixelPaddingRangeLimit, 0028,0121, are *stored* values, before the rescale slope and intercept), or None.
    ``rescale``: ``(slope, intercept)`` of a multi-frame file's functional groups, where an enhanced CT keeps it
    (the top-level tags it lacks read as 1 and 0: padding 63536 of an unsigned file with intercept -1024 stayed
    +62512 HU, and the CT was refused as shifted by +1024; the DICOM audit).

    A signed series (PixelRepresentation 1) whose padding was written unsigned (63536 for -2000) is read as the
    two's complement of its BitsStored (:func:`_signed_stored_value`)."""
    padding = _tag_numbers(reader, index, "0028|0120")
    if not padding:
        return None
    stored = [padding[0]] + (_tag_numbers(reader, index, "0028|0121") or [])[:1]
    signed = (_tag_numbers(reader, index, "0028|0103") or [0])[0] == 1
    bits = int((_tag_numbers(reader, index, "0028|0101") or [16])[0])
    if signed and 0 < bits <= 32:
        stored = [_signed_stored_value(v, bits) for v in stored]
    if rescale is not None:
        slope, intercept = rescale
    else:
        slope = (_tag_numbers(reader, index, "0028|1053") or [1.0])[0]
        intercept = (_tag_numbers(reader, index, "0028|1052") or [0.0])[0]
    hu = [v * slope + intercept for v in stored]
    margin = 0.5 * abs(slope)  # stored values are integers: half a step either side
    return min(hu) - margin, max(hu) + margin


def _signed_stored_value(value: float, bits: int) -> float:
    """A signed stored value of ``bits`` bits (BitsStored) as a number: a value written unsigned is taken as the
    two's complement of its low ``bits`` bits (63536 = 0xF830 is -2000 for 16 and for 12 bits stored; subtracting
    2 ** 12 alone made it 59440, so a 12-bit series' padding was left at -2000 HU). Values already negative, or
    below 2 ** (bits - 1), are left as they are."""
    if value < 2 ** (bits - 1) or not float(value).is_integer():
        return value
    low = int(value) & (2 ** bits - 1)
    return float(low - 2 ** bits if low >= 2 ** (bits - 1) else low)


def _padding_hu_intervals(reader, num_files: int, depth: int, rescale: Optional[Tuple[float, float]] = None
                          ) -> List[Optional[Tuple[float, float]]]:
    """For each of the ``depth`` slices a series read gave, the HU interval its file marks as padding
    (:func:`_padding_hu_interval`; one file: every frame uses its tags, and ``rescale``, its frames' rescale, where
    given), or None; read from the series reader's per-file tags before the reader is let go
    (:func:`_read_dicom_folder`)."""
    return [_padding_hu_interval(reader, k if num_files > 1 else 0, rescale) for k in range(depth)]


def _apply_pixel_padding(volume: CTVolume, intervals: Sequence[Optional[Tuple[float, float]]]) -> int:
    """Set the voxels that the series marks as padding to air (:data:`PADDING_AIR_HU`), in place; returns how many.

    ITK/GDCM apply the rescale but not the padding, so an unsigned series padded with 63536 read its corners as
    +62512 HU (and was refused as "shifted by +1024"). Padding that maps into :data:`PHYSICAL_HU_RANGE` is left as
    it is. ``volume.array`` is ``(z, y, x)``; ``intervals[k]``: slice k's padding interval
    (:func:`_padding_hu_intervals`)."""
    padded = 0
    array = volume.array
    for k in range(array.shape[0]):
        interval = intervals[k] if k < len(intervals) else None
        if interval is None or (PHYSICAL_HU_RANGE[0] <= interval[0] and interval[1] <= PHYSICAL_HU_RANGE[1]):
            continue
        mask = (array[k] >= interval[0]) & (array[k] <= interval[1])
        if mask.any():
            array[k][mask] = PADDING_AIR_HU
            padded += int(mask.sum())
    if padded:
        volume.array = to_hu_dtype(array)
    return padded


def _localizer_kinds(series: DicomSeriesInfo, reader) -> List[bool]:
    """For each file of ``series`` (file order), whether its ImageType (0008,0008) in a series reader's tags says
    LOCALIZER."""
    kinds = []
    for index in range(len(series.files)):
        try:
            kinds.append("LOCALIZER" in reader.GetMetaData(index, "0008|0008").upper())
        except RuntimeError:
            kinds.append(False)
    return kinds


def _refuse_localizer_series(series: DicomSeriesInfo, kinds: Sequence[bool], folder: Path, others: bool) -> None:
    """Refuse a series whose files all say LOCALIZER in ImageType (``kinds``: one bool per file): the scout
    (topogram) series chosen instead of the axial CT. Two orthogonal scouts were refused as 'another orientation
    ... a localizer/scout image is mixed into the series; remove that file', advice that leaves a scout.
    ``others``: whether the folder holds other image series (the message then says to choose one)."""
    if not kinds or not all(kinds):
        return
    choose = (f"choose the axial CT series with {option_hint('--series', 'series=')}" if others else
              "give the folder of the axial CT series")
    raise InputError(f"DICOM series {series.uid} in '{folder}' is a localizer (scout) series (ImageType LOCALIZER, "
                     f"{series.num_files} image(s)), not an axial CT; {choose}.")


def _refuse_mixed_in_localizer(series: DicomSeriesInfo, reader, folder: Path) -> None:
    """A file whose ImageType (0008,0008) says LOCALIZER among slices that do not: a scout image in the series
    folder. One with the axial orientation was refused as 'uneven slice spacing', which named neither it nor the
    fix."""
    kinds = _localizer_kinds(series, reader)
    if any(kinds) and not all(kinds):
        scouts = [Path(series.files[i]).name for i, scout in enumerate(kinds) if scout]
        raise InputError(f"DICOM series {series.uid} in '{folder}' holds {len(scouts)} localizer (scout) image(s) "
                         f"among its slices ({', '.join(scouts[:3])}{' ...' if len(scouts) > 3 else ''}; ImageType "
                         f"LOCALIZER); remove them, or export the axial series alone.")


def _check_pixel_spacing(series: DicomSeriesInfo, reader, folder: Path) -> None:
    """PixelSpacing (0028,0030) of the first slice must be two positive, finite numbers (mm; Type 1, VM 2 in the
    Image Plane Module, PS3.3 C.7.6.2). ITK makes a missing or zero value 1 mm and a negative one a positive
    spacing with the axis flipped: the CT was segmented mirrored, or at the wrong scale, with exit 0. (The
    other slices must match the first: :func:`_checked_slice_positions`.)"""
    values = _tag_numbers(reader, 0, "0028|0030")
    if values is None or len(values) != 2 or min(values) <= 0:
        name = Path(series.files[0]).name
        try:
            text = reader.GetMetaData(0, "0028|0030").strip()
        except RuntimeError:
            text = ""
        found = f"'{text[:40]}'" if text else "missing"
        raise InputError(f"DICOM series {series.uid} in '{folder}': the pixel spacing (PixelSpacing, 0028,0030) of "
                         f"file '{name}' is {found}; a CT slice needs two positive pixel sizes in mm (row\\column). "
                         f"Without them the image's size and left-right orientation are unknown. Re-export the "
                         f"series from the scanner/PACS.")


def _check_orientation_present(series: DicomSeriesInfo, reader, folder: Path) -> None:
    """Every file of a single-frame series must have an ImageOrientationPatient (0020,0037; Type 1 in the Image
    Plane Module). GDCM takes a missing one as the identity: a series without it was read as axial, and a sagittal
    series whose first file lacked it was read as axial too, both without a word. An empty value is no orientation
    either: a first slice with one among slices turned by 20 degrees was read as axial, without a word. (Values
    that are no rotation: :func:`_check_orientation`; files that differ: :func:`_checked_slice_positions`.)"""
    missing = _files_without_tag(series, reader, "0020|0037", empty_too=True)
    if not missing:
        return
    shown = _first_names(missing)
    which = "its files" if len(missing) == len(series.files) else f"{len(missing)} of its {len(series.files)} files"
    verb = "has" if len(missing) == 1 and which != "its files" else "have"
    unless = "" if which == "its files" else " (or, if those are no slices of the CT, remove them)"
    raise InputError(f"DICOM series {series.uid} in '{folder}': {which} ({shown}) {verb} no orientation "
                     f"(ImageOrientationPatient, 0020,0037), so the direction of the image rows and columns in the "
                     f"patient (which side is the patient's left, whether the slices are axial) is unknown; the "
                     f"reader would take them as axial without a word. Re-export the series from the scanner/PACS "
                     f"with its orientation tags{unless}.")


def _rescale_differs_between_slices(reader, num_files: int) -> bool:
    """Whether the files of a series reader give different RescaleSlope (0028,1053) or RescaleIntercept (0028,1052)
    values, or a slope or intercept that is not a whole number, in a series whose first file has whole ones. ITK
    takes the pixel type from the first file: slope 1 and a whole intercept there made the volume int16, and a later
    slice with slope 0.5 lost its half HU (up to 0.5 HU off, without a word); an unsigned first slice with intercept
    0 made it uint16, and a later slice with intercept -1024 wrapped round (-500 HU read as 65036)."""
    return _rescale_read_twice(((_tag_numbers(reader, index, "0028|1053") or [1.0])[0],
                                 (_tag_numbers(reader, index, "0028|1052") or [0.0])[0]) for index in range(num_files))


def _read_as_float(reader, folder: Path, chosen: DicomSeriesInfo):
    """The series read again with float32 voxels (:func:`_rescale_differs_between_slices`)."""
    sitk = _sitk()
    reader.SetOutputPixelType(sitk.sitkFloat32)
    try:
        with _quiet_itk():
            return execute_with_read_stop(reader)
    except RuntimeError as exc:
        raise_if_out_of_memory(exc, str(folder), series=chosen.uid)
        raise InputError(f"Cannot read DICOM series {chosen.uid} in '{folder}': {_itk_reason(exc)}.") from None


def _tag_numbers(reader, index: int, tag: str) -> Optional[List[float]]:
    """A multi-valued numeric tag of file ``index`` of a series reader as floats; None when absent or unreadable."""
    try:
        values = [float(v) for v in reader.GetMetaData(index, tag).strip().split("\\")]
    except (RuntimeError, ValueError):
        return None
    return values if values and all(np.isfinite(v) for v in values) else None


def _format_numbers(values: Sequence[float]) -> str:
    return "\\".join(f"{v:.6g}" for v in values)


def _check_no_gantry_tilt(series: DicomSeriesInfo, points_xyz: np.ndarray, direction: np.ndarray,
                          spacing_xyz: Sequence[float], folder: Path) -> None:
    """Refuse a series whose slice origins (ImagePositionPatient, ``(n, 3)`` mm) move within the image plane from
    slice to slice, i.e. a gantry-tilted acquisition: ITK builds an orthogonal grid from the first slice's
    orientation, so every later slice would be placed off by its in-plane drift (a silent shift of anatomy and
    wrong volumes). A drift of up to half the smaller pixel over the whole series is tolerated (header rounding).
    ``direction``: ITK's 3 x 3 direction (columns: rows' direction, columns' direction, slice normal)."""
    if len(points_xyz) < 2:
        return
    in_plane = points_xyz @ direction[:, :2]  # (n, 2) mm along the row and column directions
    drift = float(np.max(np.ptp(in_plane, axis=0)))
    tolerance = 0.5 * min(float(spacing_xyz[0]), float(spacing_xyz[1]))
    if drift <= tolerance:
        return
    _refuse_slices_off_the_line(series, points_xyz, in_plane, tolerance, folder)
    raise InputError(_gantry_tilt_text(f"DICOM series {series.uid} in '{folder}'", drift,
                                       float(np.ptp(points_xyz @ direction[:, 2])), "slices"))


def _gantry_tilt_text(what: str, drift: float, span: float, slices: str) -> str:
    """The refusal of a gantry-tilted ``what`` (a series, an enhanced CT file) whose ``slices`` (its slices, its
    frames) drift by up to ``drift`` mm within the image plane over ``span`` mm along the slice normal."""
    tilt = float(np.degrees(np.arctan2(drift, span))) if span > 0 else 90.0
    return (f"{what} is gantry-tilted: its {slices} shift by up to {drift:.3g} mm within the image plane over "
            f"{span:.3g} mm of scan (a tilt of about {tilt:.2g} degrees), so it does not form an orthogonal 3D grid "
            f"and every slice would be misplaced. Convert it with a tool that corrects gantry tilt (dcm2niix; or 3D "
            f"Slicer's DICOM module with acquisition geometry regularization, then harden the transform and save "
            f"as NRRD/NIfTI) and segment that file.")


def _frames_tilt_text(what: str, positions: Sequence[Sequence[float]], orientation: Sequence[float],
                      spacing_xyz: Sequence[float]) -> Optional[str]:
    """:func:`_gantry_tilt_text` for the frames of an enhanced CT ``what`` where their origins (``positions``,
    ``(n, 3)`` mm, LPS) drift within the image plane (ImageOrientationPatient ``orientation``, six numbers) by more
    than half the smaller pixel (``spacing_xyz`` mm), in step with their position along the slice normal (a
    straight line within that tolerance: a tilt, not frames misplaced one by one); None otherwise. Such a file was
    refused as 'frames out of order, a missing frame or uneven spacing', which sent the user after the wrong fault."""
    points = np.asarray(positions, dtype=float)
    row, column = np.asarray(orientation[:3], dtype=float), np.asarray(orientation[3:6], dtype=float)
    direction = np.column_stack([row, column, np.cross(row, column)])
    tolerance = 0.5 * min(float(spacing_xyz[0]), float(spacing_xyz[1]))
    in_plane, along = points @ direction[:, :2], points @ direction[:, 2]
    drift, span = float(np.max(np.ptp(in_plane, axis=0))), float(np.ptp(along))
    if len(points) < 3 or drift <= tolerance or span <= 0:
        return None
    design = np.column_stack([along, np.ones_like(along)])
    fit = design @ np.linalg.lstsq(design, in_plane, rcond=None)[0]
    if float(np.max(np.abs(in_plane - fit))) > tolerance:
        return None
    return _gantry_tilt_text(what, drift, span, "frames")


def _refuse_slices_off_the_line(series: DicomSeriesInfo, points_xyz: np.ndarray, in_plane: np.ndarray,
                                tolerance: float, folder: Path) -> None:
    """InputError naming the files of ``series`` (file order) whose slice origin lies more than ``tolerance`` mm
    within the image plane from where the other slices, which agree among themselves, lie: fewer than half of the
    files, the others within ``tolerance`` of their median. ``points_xyz``: each file's ImagePositionPatient
    ``(n, 3)`` mm; ``in_plane``: its ``(n, 2)`` mm along the row and column directions. One slice 20 mm sideways
    (a damaged header, a slice of another series under this UID) was called a gantry tilt of 55 degrees, with the
    advice to convert the series with dcm2niix; a real tilt moves every slice a little. Returns for a tilt."""
    offsets = np.linalg.norm(in_plane - np.median(in_plane, axis=0), axis=1)  # mm from the slices' median
    off = [int(index) for index in np.flatnonzero(offsets > tolerance)]
    rest = [index for index in range(len(points_xyz)) if offsets[index] <= tolerance]
    if not off or len(off) * 2 >= len(points_xyz) or float(np.max(np.ptp(in_plane[rest], axis=0))) > tolerance:
        return
    first = off[0]
    where = (f"file '{Path(series.files[first]).name}' has an ImagePositionPatient"
             if len(off) == 1 else f"{_which_files(series, off)} have ImagePositionPatients, e.g.")
    raise InputError(f"DICOM series {series.uid} in '{folder}': {where} ({_format_numbers(points_xyz[first])}) "
                     f"{offsets[first]:.3g} mm within the image plane from the other {len(rest)} slices' (e.g. "
                     f"{_format_numbers(points_xyz[rest[0]])}), so they are not slices of one straight stack: a "
                     f"damaged header, or images of another series filed under this one's UID. Remove "
                     f"{'that file if it does' if len(off) == 1 else 'those files if they do'} not belong to the "
                     f"series, else re-export the series from the scanner/PACS.")


def _check_dicom_series_memory(series: DicomSeriesInfo, folder: Path) -> None:
    """Memory check from the first file's header (columns x rows, pixel type) times the number of files. The
    header is the one the series listing read (``series._first_header``); the file is read again only for a
    series that did not come from the listing. Counted: the voxels in the type GDCM reads them as
    (:data:`DICOM_READ_COPIES`) and their HU copy (:func:`~.conversions.hu_copy_itemsize`: int16 or float32, made
    from a view of the image), as :func:`dicom_folder_read_bytes` counts them; until 30 Nov 2026 a copy of GDCM's
    type (float64 for a fractional rescale slope: 16 bytes a voxel where the read holds 12)."""
    header = series._first_header
    if header is None or header.path != series.files[0]:
        with _quiet_itk():
            header = _read_file_header(series.files[0])
        if header is None:
            return  # the series read below reports the unreadable file
    size = header.size
    shape_xyz = (size[0], size[1], max(len(series.files), size[2] if len(size) > 2 else 1))
    itemsize = _itk_itemsize(header.pixel_id)
    kind = _itk_numpy_dtype(header.pixel_id).kind
    copy_itemsize = hu_copy_itemsize(itemsize, False, unsigned=kind == "u", floating=kind == "f")
    if kind != "f" and _rescale_differs_in_headers(series._headers):
        # read again as float32 (_read_as_float) while GDCM's first image is held, then its HU copy beside it
        itemsize, copy_itemsize = 4, max(4, itemsize)
    check_memory_for_read(shape_xyz, DICOM_READ_COPIES * itemsize, f"{folder} (series {series.uid})",
                          copy_itemsize=copy_itemsize)


def _rescale_differs_in_headers(headers: Optional[Sequence[_DicomFileHeader]]) -> bool:
    """Whether the series whose files' listing headers are ``headers`` is read twice
    (:func:`_rescale_differs_between_slices`, which decides it from the series reader's tags after the first read):
    its files give different RescaleSlope or RescaleIntercept values, or one that is not a whole number. False when
    the headers are unknown (a series that did not come from the listing)."""
    return _rescale_read_twice((_float_or(header.rescale[0], 1.0), _float_or(header.rescale[1], 0.0))
                               for header in headers or [])


def _float_or(text: str, default: float) -> float:
    """The first number of a DS value as stored (``default`` when absent; NaN when not a number, which is no
    whole number: counted as a read twice, the safe side)."""
    text = text.strip().split("\\")[0].strip()
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        return float("nan")


def _series_slice_thickness(reader, num_files: int) -> Optional[float]:
    """The SliceThickness (0018,0050, mm) of the ``num_files`` files ``reader`` read (per-file tags), the largest
    where slices differ (the larger measurable minimum); None where no file gives a positive, finite one (absent,
    empty, or not a number; an enhanced multi-frame file keeps it in its functional groups:
    :func:`_frames_slice_thickness`).
    It is the reconstruction's thickness, which can exceed the spacing between slices (overlapping slices) and
    which RECIST 1.1's measurable minimum is judged by."""
    values = []
    for index in range(num_files):
        try:
            text = reader.GetMetaData(index, "0018|0050").strip() if reader.HasMetaDataKey(index, "0018|0050") else ""
            value = float(text.split("\\")[0]) if text else float("nan")
        except (RuntimeError, ValueError):
            continue
        if np.isfinite(value) and value > 0:
            values.append(value)
    return max(values) if values else None


def _single_slice_thickness(file_name: str) -> Optional[float]:
    """SliceThickness, else SpacingBetweenSlices (mm) of a DICOM file; None when absent or invalid."""
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(file_name)
    with _quiet_itk():
        reader.ReadImageInformation()
    for tag in ("0018|0050", "0018|0088"):
        try:
            value = float(_dicom_tag(reader, tag))
        except ValueError:
            continue
        if value > 0:
            return value
    return None


def _check_slice_positions(series: DicomSeriesInfo, image, folder: Path, positions: np.ndarray) -> Optional[str]:
    """Measure the slice gaps of a series ITK flagged as non-uniform (``positions``: each file's position along the
    slice normal, mm, from :func:`_checked_slice_positions`); raise when slices are missing or the regular grid
    would put a slice more than half a slice from its recorded position.

    Returns a warning text for small irregularities (the grid then uses the mean slice spacing); None when the
    slices lie within 1 % of a slice of the grid (header rounding).
    """
    normal = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)[:, 2]
    gaps = np.diff(np.sort(positions))
    median = float(np.median(gaps)) if gaps.size else 0.0
    worst = float(np.max(np.abs(gaps - median))) if gaps.size else 0.0
    if median <= 0 or worst > 0.2 * median:
        raise InputError(f"DICOM series {series.uid} in '{folder}' has missing slices or uneven slice spacing "
                         f"(gaps {gaps.min():.3g}..{gaps.max():.3g} mm, typical {median:.3g} mm"
                         f"{_odd_gap_text(series, positions, median)}); a regular 3D grid cannot be built. Export "
                         f"the complete series (or resample it to even spacing) first.")
    # each gap may be near the median while the gaps add up: slice k is placed at origin + k * spacing
    spacing = float(image.GetSpacing()[2])
    placed = float(np.dot(image.GetOrigin(), normal)) + spacing * np.arange(len(positions))
    misplaced = float(np.max(np.abs(np.sort(positions) - placed)))
    if misplaced > 0.5 * spacing:
        raise InputError(f"DICOM series {series.uid} in '{folder}' has uneven slice spacing (gaps "
                         f"{gaps.min():.3g}..{gaps.max():.3g} mm) that adds up: on a regular grid of {spacing:.4g} mm "
                         f"some slices would lie {misplaced:.3g} mm from their recorded positions. Resample the "
                         f"series to even spacing (e.g. in 3D Slicer: load it with acquisition geometry "
                         f"regularization, harden the transform, save as NRRD/NIfTI) and segment that file.")
    if misplaced <= 0.01 * spacing:
        return None  # header rounding
    return (f"slice spacing varies by up to {worst:.3g} mm around {median:.3g} mm; the mean spacing "
            f"{spacing:.4g} mm was used, which places some slices up to {misplaced:.2g} mm from their recorded "
            f"positions")


def _odd_gap_text(series: DicomSeriesInfo, positions: np.ndarray, median: float) -> str:
    """Where the gap between neighbouring slices that differs most from the ``median`` gap (mm) lies, for a message:
    "; the one most off, 5 mm, between 'a.dcm' and 'b.dcm' (at 7.5 and 12.5 mm along the slice normal): about 1
    slice missing there". ``positions``: each file's position along the slice normal (mm, file order)."""
    order = np.argsort(positions, kind="stable")
    along = np.asarray(positions, dtype=float)[order]
    gaps = np.diff(along)
    i = int(np.argmax(np.abs(gaps - median)))
    first, second = (Path(series.files[order[n]]).name for n in (i, i + 1))
    missing = int(round(gaps[i] / median)) - 1 if median > 0 else 0
    return (f"; the one most off, {gaps[i]:.3g} mm, between '{first}' and '{second}' (at {along[i]:.5g} and "
            f"{along[i + 1]:.5g} mm along the slice normal)"
            f"{f': about {missing} slice(s) missing there' if missing >= 1 else ''}")


UNCOMPRESSED_TRANSFER_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")
"""Implicit and explicit VR little endian, explicit big endian: pixel data stored as it is, its length known."""


def pixel_data_sizes(ds: Any) -> Optional[Tuple[int, int]]:
    """``(bytes stored, bytes the header describes)`` of the Pixel Data of ``ds`` (a pydicom dataset read with
    ``defer_size``, so its length is known without its bytes): Rows x Columns x NumberOfFrames x SamplesPerPixel x
    BitsAllocated bits, rounded up to bytes. None when that cannot be judged: no Pixel Data, a compressed
    (encapsulated) transfer syntax or undefined length, or header fields that are not numbers. A stored size of
    the described one, or one more (the padding to an even length), is right."""
    try:
        syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "1.2.840.10008.1.2")
        try:
            element = ds.get_item(0x7FE00010, keep_deferred=True)  # its length, without reading its bytes
        except TypeError:  # pydicom 2 (the newest for Python 3.9, as in Slicer 5.8) leaves a deferred value unread
            element = ds.get_item(0x7FE00010)
        if element is None or syntax not in UNCOMPRESSED_TRANSFER_SYNTAXES:
            return None
        stored = int(element.length) if hasattr(element, "length") else len(element.value)
        stored = min(stored, _bytes_in_file_from(element, ds))  # the length the header gives, or what is left
        stated = getattr(ds, "NumberOfFrames", None)
        frames = 1 if stated is None or str(stated).strip() == "" else int(stated)
        expected = (int(ds.Rows) * int(ds.Columns) * frames * int(getattr(ds, "SamplesPerPixel", 1) or 1)
                    * int(getattr(ds, "BitsAllocated", 1) or 1) + 7) // 8
    except Exception:  # noqa: BLE001 - what pydicom cannot tell, the reader judges
        return None
    return None if stored == 0xFFFFFFFF else (stored, expected)


def _bytes_in_file_from(element: Any, ds: Any) -> int:
    """How many bytes the file of ``ds`` holds from where the deferred ``element``'s value starts (its
    ``value_tell``) to its end; a very large number when that is not known (read from memory, not deferred). A
    truncated file's Pixel Data element still states its whole length: a DICOM SEG cut in half passed the size
    check and was then called "not a regular 3D volume", with advice that led to another wrong message."""
    import os

    start, name = getattr(element, "value_tell", None), getattr(ds, "filename", None)
    if start is None or not isinstance(name, (str, os.PathLike)):
        return 1 << 62
    try:
        return max(0, os.path.getsize(name) - int(start))
    except (OSError, TypeError, ValueError):
        return 1 << 62


_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_WHOLE_TEXT = re.compile(r"[0-9]+")


def _passes_from_listing(header: _DicomFileHeader) -> bool:
    """Whether the file of ``header`` (as the series listing read it with GDCM: :data:`_CHECK_TAGS`) passes what
    :func:`_refuse_pixel_data_of_another_size` checks with pydicom, seen without reading it again: its
    ImageOrientationPatient is six plain decimal numbers making a rotation (:func:`_is_rotation`), and it ends with
    an uncompressed little-endian Pixel Data element of the bytes its header describes, or one more
    (:func:`_ends_with_pixel_data`). False when anything is absent, unusual or not so: pydicom then reads the file,
    and every refusal is worded as before. 30-40 us a file where pydicom took 0.33 ms (a header of 51 elements) to
    0.9 ms (a GE CT's, 258): 12-17 ms for a 400-file series instead of 135-385 ms."""
    tags = header.check_tags
    if len(tags) != len(_CHECK_TAGS) or tags[0] is None or tags[1] is None or tags[4] is None or tags[5] is None:
        return False
    parts = [part.strip() for part in tags[5].split("\\")]
    if len(parts) != 6 or not all(_DECIMAL_TEXT.fullmatch(part) for part in parts) or not _is_rotation(parts):
        return False
    texts = ["" if text is None else text.strip() for text in tags[:5]]
    if not all(_WHOLE_TEXT.fullmatch(text) for text in texts[:2]) or \
            not all(text == "" or _WHOLE_TEXT.fullmatch(text) for text in texts[2:]):
        return False
    # as pixel_data_sizes takes pydicom's values: no or an empty NumberOfFrames is 1, SamplesPerPixel and
    # BitsAllocated absent, empty or 0 are 1
    rows, columns = int(texts[0]), int(texts[1])
    frames = int(texts[2]) if texts[2] else 1
    samples, bits = (int(text or 0) or 1 for text in texts[3:])
    expected = (rows * columns * frames * samples * bits + 7) // 8
    return _ends_with_pixel_data(header.path, expected)


def _ends_with_pixel_data(path: str, nbytes: int) -> bool:
    """Whether the file ``path`` ends with a Pixel Data element (7FE0,0010) of ``nbytes`` or ``nbytes`` + 1 bytes
    (the padding to an even length), in explicit (OB or OW) or implicit VR little endian, followed by nothing or by
    Data Set Trailing Padding (FFFC,FFFC) of at most :data:`_TRAILING_PADDING_BYTES` (as some GE scanners write
    it): the element pydicom reads the length of (:func:`pixel_data_sizes`), found from the file's size instead of
    its elements."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if _pixel_data_ends_at(handle, size, nbytes):
                return True
            start = max(0, size - _TRAILING_PADDING_BYTES)
            handle.seek(start)
            tail = handle.read()
            at = tail.rfind(b"\xfc\xff\xfc\xff")
            while at >= 0:
                head = tail[at:at + 12]  # explicit VR: tag, OB, 2 reserved bytes, length; implicit: tag, length
                if (len(head) == 12 and head[4:8] == b"OB\0\0" and at + 12 + _uint32(head[8:]) == len(tail)) or \
                        (len(head) >= 8 and at + 8 + _uint32(head[4:8]) == len(tail)):
                    return _pixel_data_ends_at(handle, start + at, nbytes)
                at = tail.rfind(b"\xfc\xff\xfc\xff", 0, at)
    except OSError:
        return False
    return False


_TRAILING_PADDING_BYTES = 4096
"""The most bytes of the end of a file :func:`_ends_with_pixel_data` looks at for trailing padding after the Pixel
Data (a GE CT's: 138); a file with more is read with pydicom."""


def _uint32(data: bytes) -> int:
    return int.from_bytes(data, "little")


def _pixel_data_ends_at(handle: Any, end: int, nbytes: int) -> bool:
    """Whether a Pixel Data element of ``nbytes`` or ``nbytes`` + 1 bytes, explicit (OB, OW) or implicit VR little
    endian, ends at byte ``end`` of the open file ``handle``."""
    for length in (nbytes, nbytes + 1):
        start = end - length - 12
        if start < 0:
            continue
        handle.seek(start)
        head = handle.read(12)
        if len(head) != 12 or _uint32(head[8:]) != length:
            continue
        if head[:4] == b"\xe0\x7f\x10\x00" and head[4:6] in (b"OB", b"OW") and head[6:8] == b"\0\0":
            return True  # explicit VR: tag, VR, 2 reserved bytes, 4-byte length
        if head[4:8] == b"\xe0\x7f\x10\x00":
            return True  # implicit VR: tag, 4-byte length
    return False


def _refuse_pixel_data_of_another_size(series: DicomSeriesInfo, folder: Path) -> None:
    """Refuse, before the series is read, a file whose orientation is no rotation (:func:`_check_orientation`) or an
    uncompressed file whose Pixel Data holds another number of bytes than
    its Rows x Columns x frames x samples x BitsAllocated describe (one odd padding byte allowed): GDCM read a
    half-length Pixel Data with the missing half filled from uninitialised memory (4 false tumors, exit 0), and
    Columns 100 on 122-wide data sheared every slice (the fuzzing audit). Files pydicom cannot read this way are
    left to the series reader.

    A file whose listing header (``series._headers``) and last bytes show both right (:func:`_passes_from_listing`:
    most uncompressed files) is not read again; the others are read with pydicom, which words every refusal.
    Without pydicom (an environment without it; the package installed none on Python 3.9 before, and importing it
    stopped every DICOM read) those others get the orientation check from the listing's header alone, and their
    Pixel Data is left to the series reader, as it was before this check."""
    try:
        import pydicom
    except ImportError:
        pydicom = None
    headers = {h.path: h for h in series._headers or []}
    for name in series.files:
        header = headers.get(name)
        if header is not None and _passes_from_listing(header):
            continue
        if pydicom is None:
            if header is not None and len(header.check_tags) == len(_CHECK_TAGS) and header.check_tags[-1] is not None:
                parts = [part.strip() for part in header.check_tags[-1].split("\\")]
                _check_orientation_values(parts, name, series, folder)
            continue
        try:
            ds = dcmread_quietly(str(name), defer_size=1024, force=True)
        except Exception as exc:  # noqa: BLE001 - what pydicom cannot read, the series reader judges
            raise_if_out_of_memory(exc, str(name))  # a deflated file inflated past the memory: said, not "no DICOM"
            continue
        _check_orientation(ds, name, series, folder)
        sizes = pixel_data_sizes(ds)
        if sizes is None or sizes[0] in (sizes[1], sizes[1] + 1):
            continue
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        raise InputError(f"DICOM file '{Path(name).name}' of series {series.uid} in '{folder}' holds {sizes[0]} bytes "
                         f"of pixel data, but its header describes {sizes[1]} ({ds.Rows} rows x {ds.Columns} columns"
                         f"{f' x {frames} frames' if frames > 1 else ''} of {ds.BitsAllocated} bits): the file is "
                         f"truncated or its header is wrong. Copy or export the series again.")


def _check_orientation(ds: Any, name: Any, series: DicomSeriesInfo, folder: Path) -> None:
    """Refuse an ImageOrientationPatient that is not two unit-length, perpendicular direction cosines (six finite
    numbers): GDCM took 0\\0\\0\\0\\0\\0 or 0.9\\0.1\\0\\0\\1\\0 as the identity without a word, and the CT came out
    rotated (a 68 mL liver instead of 381 mL; the fuzzing audit). A file without the tag is left to the reader."""
    values = ds.get("ImageOrientationPatient") if hasattr(ds, "get") else None
    if values is None:
        return
    _check_orientation_values(values, name, series, folder)


ORIENTATION_TOLERANCE = 1e-3
"""How far from 1 the squared length of each ImageOrientationPatient direction, and how far from 0 their dot
product, may be: GDCM's own test (``gdcm::DirectionCosines::IsValid``), beyond which it reads the series as axial
and unturned without a word. With 1 % here, a series turned 20 degrees whose orientation was written to too few
digits (row . column = -0.0017) came out as the identity, its corners 164 mm from where its header puts them."""


def _is_rotation(values: Any) -> bool:
    """Whether ``values`` (ImageOrientationPatient: pydicom's values or the texts between its backslashes) are six
    finite numbers making two unit-length, perpendicular direction cosines, within :data:`ORIENTATION_TOLERANCE`
    (squared lengths and dot product, as GDCM tests them)."""
    try:
        cosines = np.asarray([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        return False
    if cosines.size != 6 or not np.all(np.isfinite(cosines)):
        return False
    row, column = cosines[:3], cosines[3:]
    return abs(float(row @ row) - 1) < ORIENTATION_TOLERANCE and abs(float(column @ column) - 1) < \
        ORIENTATION_TOLERANCE and abs(float(row @ column)) < ORIENTATION_TOLERANCE


def _check_orientation_values(values: Any, name: Any, series: DicomSeriesInfo, folder: Path) -> None:
    """:func:`_check_orientation` of the ImageOrientationPatient ``values`` of the file ``name``."""
    if not _is_rotation(values):
        shown = "\\".join(str(v) for v in values)
        raise InputError(f"DICOM file '{Path(name).name}' of series {series.uid} in '{folder}' has "
                         f"ImageOrientationPatient {shown}, which is not two perpendicular unit directions (within "
                         f"{ORIENTATION_TOLERANCE:g}, as the DICOM reader needs them: it would read the series as "
                         f"axial); the orientation of the CT cannot be known. Export the series again (its "
                         f"orientation written to 6 decimals).")


def _files_of_another_size(files: Sequence[str]) -> str:
    """After a failed series read: the files whose Rows x Columns differ from most files' (named, at most 3),
    or "" when all agree or the headers cannot be read. ITK words a size mismatch differently by case."""
    sitk = _sitk()
    sizes = {}
    for name in files:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(name))
        try:
            with _quiet_itk():
                reader.ReadImageInformation()
        except RuntimeError:
            return ""
        sizes[str(name)] = tuple(reader.GetSize()[:2])
    if len(set(sizes.values())) < 2:
        return ""
    values = list(sizes.values())
    common = max(set(values), key=values.count)
    odd = [f"'{Path(n).name}' {s[0]} x {s[1]}" for n, s in sizes.items() if s != common]
    more = f" and {len(odd) - 3} more" if len(odd) > 3 else ""
    return f"{', '.join(odd[:3])}{more}, against {common[0]} x {common[1]} for the others"


def _refuse_inverted_grey_scale(series: DicomSeriesInfo, reader, folder: Path) -> None:
    """Refuse a MONOCHROME1 series: GDCM inverts its stored values before the rescale, so every HU comes out
    mirrored (air at about +1000, soft tissue below -1000), and the CT's own HU are stored, not inverted."""
    try:
        photometric = reader.GetMetaData(0, "0028|0004").strip().upper()
    except RuntimeError:
        return
    if photometric == "MONOCHROME1":
        raise InputError(_inverted_grey_scale_text(series, folder))


def _refuse_several_multiframe_files(series: DicomSeriesInfo, folder: Path) -> None:
    """Refuse a series of several files of which some hold several frames (an enhanced CT split over files, or
    multi-frame files beside single slices): the series reader stacks one image per file, and such a series was
    refused with 'the pixel spacing ... of file ... is missing ... Re-export the series' (its spacing lies in the
    frames' functional groups), which named neither the files nor what to do. One multi-frame file alone is read
    (:func:`_check_multiframe`)."""
    headers = series._headers or []
    multiframe = [h for h in headers if len(h.size) > 2 and h.size[2] > 1]
    if len(headers) < 2 or not multiframe:
        return
    shown = ", ".join(f"'{Path(h.path).name}' ({h.size[2]} frames)" for h in multiframe[:3]) + (
        f" and {len(multiframe) - 3} more" if len(multiframe) > 3 else "")
    raise InputError(f"DICOM series {series.uid} in '{folder}' has {len(headers)} files, {len(multiframe)} of them "
                     f"multi-frame (enhanced) images ({shown}); this reader reads a multi-frame series only as one "
                     f"file, and stacks single-frame slices otherwise. Convert the series to NIfTI with a tool that "
                     f"reads enhanced DICOM frame by frame (e.g. dcm2niix) and segment that file.")


def _is_colour(header: _DicomFileHeader) -> bool:
    """Whether the file of ``header`` (as the series listing read it) holds a colour or multi-sample image: more
    than one SamplesPerPixel (0028,0002), or a PhotometricInterpretation other than MONOCHROME1/2 (RGB, YBR_*,
    PALETTE COLOR)."""
    samples = header.check_tags[3] if len(header.check_tags) == len(_CHECK_TAGS) else None
    try:
        several = samples is not None and samples.strip() != "" and int(samples.strip()) > 1
    except ValueError:
        several = False
    return several or header.photometric not in ("", "MONOCHROME1", "MONOCHROME2")


def _refuse_colour_images_among_slices(series: DicomSeriesInfo, folder: Path) -> None:
    """Refuse a greyscale series with colour images among its files (a screenshot or colour map filed in the series
    with a slice's size and position): ITK turned each into its grey luminance and read it as a slice of 0 HU
    or so, without a word. A series of colour images alone is refused after the read (it has several components
    per voxel)."""
    headers = series._headers or []
    colour = [Path(h.path).name for h in headers if _is_colour(h)]
    if not colour or len(colour) == len(headers):
        return
    shown = _first_names(colour)
    raise InputError(f"DICOM series {series.uid} in '{folder}': {len(colour)} of its {len(headers)} files ({shown}) "
                     f"{'holds' if len(colour) == 1 else 'hold'} colour images (RGB or another colour photometric "
                     f"interpretation) among its greyscale CT slices: a screenshot or a derived colour image filed in "
                     f"the series, which would be read as a slice of made-up HU. Remove them, or export the axial "
                     f"series alone.")


def _inverted_grey_scale_text(series: DicomSeriesInfo, folder: Path) -> str:
    """The refusal of a MONOCHROME1 series (:func:`_refuse_inverted_grey_scale`); the listing's headers let the
    reader give it before GDCM reads the pixels: GDCM failed on a signed 12-bit MONOCHROME1 series with
    'An invalid logic behavior occurredPF.GetBitsStored() != 12. Check that all its files are complete.'"""
    return (f"DICOM series {series.uid} in '{folder}' is stored as MONOCHROME1 (inverted grey scale); the DICOM "
            f"reader would invert its values, so the Hounsfield units would come out mirrored. Convert it to "
            f"MONOCHROME2 or to NIfTI with a tool that applies only the rescale slope and intercept (air should read "
            f"about -1000 HU, the liver 40-150 HU afterwards).")


def _functional_item(frame, shared, sequence: str):
    """The first item of a functional group ``sequence`` for one frame: its per-frame item, else the shared one."""
    for group in (frame, shared):
        items = getattr(group, sequence, None) if group is not None else None
        if items:
            return items[0]
    return None


def _frame_pixel_spacings(frames, shared, count: int) -> List[Optional[Tuple[float, float]]]:
    """The PixelSpacing (0028,0030; row spacing, column spacing, mm) of each of the ``count`` frames of a
    multi-frame file: from the frame's own PixelMeasuresSequence, else the shared one (:func:`_functional_item`).
    None for a frame that gives none, or not two positive finite numbers."""
    spacings: List[Optional[Tuple[float, float]]] = []
    for index in range(count):
        frame = frames[index] if frames is not None and len(frames) > index else None
        measures = _functional_item(frame, shared, "PixelMeasuresSequence")
        try:
            values = [float(v) for v in measures.PixelSpacing] if measures is not None else []
        except (AttributeError, TypeError, ValueError):
            values = []
        ok = len(values) == 2 and all(np.isfinite(v) and v > 0 for v in values)
        spacings.append((round(values[0], 6), round(values[1], 6)) if ok else None)
    return spacings


def _frame_numbers_text(numbers: Sequence[int]) -> str:
    return ", ".join(str(n) for n in numbers[:5]) + (" ..." if len(numbers) > 5 else "")


def _multiframe_pixel_spacing(path: str, series: DicomSeriesInfo, frames, shared, count: int) -> Tuple[float, float]:
    """The one PixelSpacing (row, column; mm) that all frames of a multi-frame file give, in their shared or
    per-frame functional groups (:func:`_frame_pixel_spacings`). A file that gave none was refused as "frames not
    on the grid ... out of order" (GDCM took 1 mm, also between the slices), which sent the user after the
    frames' order; one whose frames gave different spacings was read at the first frame's, without a word. Both
    are InputErrors naming the tag and what to do."""
    spacings = _frame_pixel_spacings(frames, shared, count)
    missing = [number for number, spacing in enumerate(spacings, start=1) if spacing is None]
    where = ("PixelSpacing, 0028,0030, in a PixelMeasuresSequence of its shared functional groups "
             "(SharedFunctionalGroupsSequence) or of each frame's (PerFrameFunctionalGroupsSequence)")
    if missing:
        which = "any of its frames" if len(missing) == count else \
            f"{len(missing)} of its {count} frames (numbers {_frame_numbers_text(missing)})"
        raise InputError(f"'{path}' (series {series.uid}) gives no pixel spacing for {which} ({where}); without it "
                         f"the size of its voxels in mm, and so every volume measured on it, is unknown (the DICOM "
                         f"reader would take 1 mm). Re-export the series from the scanner/PACS with its pixel "
                         f"measures, or convert it to NIfTI with a tool that lets you give the spacing.")
    distinct = sorted(set(spacings))
    if len(distinct) > 1:
        shown = "; ".join(f"{row:g}\\{column:g} mm in frames "
                          f"{_frame_numbers_text([n for n, s in enumerate(spacings, start=1) if s == (row, column)])}"
                          for row, column in distinct[:3]) + (" ..." if len(distinct) > 3 else "")
        raise InputError(f"'{path}' (series {series.uid}) gives its frames different pixel spacings ({shown}; "
                         f"{where}); a volume has one pixel size, so some slices would be measured at the wrong "
                         f"scale. Re-export it with one pixel spacing for all frames (resampled on the scanner/PACS), "
                         f"or convert each group of frames to NIfTI separately.")
    return distinct[0]


def _set_multiframe_spacing(image, pixel_spacing: Tuple[float, float], positions: Sequence[Sequence[float]]) -> None:
    """Give ``image`` (SimpleITK, read from one multi-frame file; changed in place) the frames' ``pixel_spacing``
    (row, column; mm) where the reader's in-plane spacing differs from it (GDCM reads the pixel measures of the
    shared functional groups, else of the first frame only), and then the distance between slices from the
    frames' ``positions`` (mm, LPS, frame order) along the slice normal (their mean step), which the reader
    took from the same measures; :func:`_check_multiframe` then checks every frame against that grid. The step is
    the first-to-last distance over the frames between (the mean step), set also where the in-plane spacing was
    right: GDCM falls back to 1 mm slices when the frames' positions are not exactly even (a micrometre of rounding),
    and the median step of positions written to 0.01 mm (0.63 for 0.625) put frame 480 2.4 mm off; both were refused
    as 'frames out of order' (the DICOM audit)."""
    column_row = (pixel_spacing[1], pixel_spacing[0])  # ITK: x (along a row, the column spacing) first
    spacing = list(image.GetSpacing())
    if not np.allclose(spacing[:2], column_row, rtol=1e-4, atol=1e-6):
        spacing[:2] = column_row
    if len(positions) > 1:
        size = int(round(len(image.GetDirection()) ** 0.5))
        normal = np.asarray(image.GetDirection(), dtype=float).reshape(size, size)[:3, 2]
        along = np.asarray(positions, dtype=float) @ normal
        step = float((along[-1] - along[0]) / (len(along) - 1))
        if step > 0:
            spacing[2] = step
    image.SetSpacing(tuple(spacing))


def _check_multiframe(series: DicomSeriesInfo, image, folder: Path, rescale_out: Optional[list] = None
                      ) -> Optional[float]:
    """Refuse a multi-frame (enhanced) CT file whose frames the reader would misplace or mis-scale: it builds the
    grid from the first frames and applies one rescale to all, so frames out of order, a missing frame or a
    rescale intercept set per frame came out silently wrong (1 mm slices, a 0 mL liver; every other slice
    1024 HU off). Frames in order on an even grid with one rescale pass. The pixel spacing is taken from the
    frames' functional groups (:func:`_multiframe_pixel_spacing`; ``image``'s spacing is set in place where the
    reader's differs). Needs pydicom to see the frames. Returns the frames' SliceThickness (mm, from their Pixel
    Measures functional groups, the largest where frames differ; None where none gives one), which the reader's
    top-level tags do not hold. ``rescale_out``: a list that receives the frames' one ``(slope, intercept)`` (from
    their functional groups, which the reader applies), when they give one. Frames whose orientations
    (PlaneOrientationSequence) differ are refused, as a single-frame series' files are: the reader placed every
    frame as the first (the DICOM audit)."""
    path = series.files[0]
    try:
        import pydicom  # noqa: F401 - a dependency: its absence is said here (read by dcmread_quietly)
    except ImportError:
        raise InputError(f"'{path}' is a multi-frame (enhanced) DICOM file; checking its frames' positions needs "
                         f"pydicom (pip install pydicom), or convert it to NIfTI first (e.g. dcm2niix).") from None
    try:
        dataset = dcmread_quietly(str(path), stop_before_pixels=True, force=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for damaged files
        raise_if_out_of_memory(exc, str(path))
        raise InputError(f"Cannot read the frame headers of '{path}': {exc}.") from None
    count = int(dataset.get("NumberOfFrames", 1) or 1)
    frames = getattr(dataset, "PerFrameFunctionalGroupsSequence", None)
    shared = getattr(dataset, "SharedFunctionalGroupsSequence", None)
    shared = shared[0] if shared else None
    positions, rescales, orientations, without_rescale = [], [], [], []
    for index in range(count):
        frame = frames[index] if frames is not None and len(frames) > index else None
        plane = _functional_item(frame, shared, "PlanePositionSequence")
        if plane is not None and "ImagePositionPatient" in plane:
            positions.append([float(v) for v in plane.ImagePositionPatient])
        turned = _functional_item(frame, shared, "PlaneOrientationSequence")
        if turned is not None and "ImageOrientationPatient" in turned:
            orientations.append((index, [float(v) for v in turned.ImageOrientationPatient]))
        transform = _functional_item(frame, shared, "PixelValueTransformationSequence")
        if transform is not None:
            slope, intercept = _rescale_text(transform, "RescaleSlope"), _rescale_text(transform, "RescaleIntercept")
            for (_, name, _), text in zip(_RESCALE_KEYWORDS, (slope, intercept)):
                if text and not _is_finite_number(text):  # nan != nan: it read as a rescale set per frame
                    raise InputError(_non_finite_rescale_text(f"'{path}' (series {series.uid})", name, text,
                                                              f"its frames' functional groups (frame {index + 1})",
                                                              unreadable=False))
            rescales.append((float(slope) if slope else 1.0, float(intercept) if intercept else 0.0))
        else:
            without_rescale.append(index)
    if rescales and without_rescale:  # GDCM then applied no rescale to any frame: all 1024 HU off, without a word
        raise InputError(f"'{path}' (series {series.uid}): frame{'s' if len(without_rescale) > 1 else ''} "
                         f"{', '.join(str(i + 1) for i in without_rescale[:5])}{', ...' if len(without_rescale) > 5 else ''}"
                         f" of {count} give{'' if len(without_rescale) > 1 else 's'} no rescale (no "
                         f"PixelValueTransformationSequence in the frame's or the shared functional groups) while the "
                         f"other frames give one, so the Hounsfield units of the frames cannot all be known; the DICOM "
                         f"reader would apply one rescale, or none, to every frame without saying so. Re-export the "
                         f"series from the scanner/PACS.")
    if any(slope == 0 for slope, _ in rescales):
        raise InputError(_zero_slope_text(f"'{path}' (series {series.uid})", "its frames' functional groups"))
    negative = next((slope for slope, _ in rescales if slope < 0), None)
    if negative is not None:  # the reader applied it: every frame's values turned around, as a single-frame series'
        raise InputError(f"'{path}' (series {series.uid}): RescaleSlope (0028,1053) is negative ({negative:g}) in "
                         f"its frames' functional groups, which turns their values around (air bright, bone dark); "
                         f"a CT stores Hounsfield units with a positive slope. Re-export the series from the "
                         f"scanner/PACS.")
    odd = next((slope for slope, _ in rescales if not CT_RESCALE_SLOPES[0] <= slope <= CT_RESCALE_SLOPES[1]), None)
    if odd is not None:
        raise InputError(_implausible_slope_text(f"'{path}' (series {series.uid})", f"{odd:g}",
                                                 "its frames' functional groups"))
    fix = "Convert it to NIfTI with a tool that reads enhanced DICOM frame by frame (e.g. dcm2niix) and segment that."
    first = orientations[0] if orientations else None
    turned = next(((n, o) for n, o in orientations
                   if first is not None and (len(o) != len(first[1]) or
                                             np.max(np.abs(np.subtract(o, first[1]))) > SERIES_HEADER_TOLERANCE)),
                  None)
    if turned is not None:
        raise InputError(f"'{path}' (series {series.uid}): frame {turned[0] + 1} has another orientation "
                         f"(ImageOrientationPatient {_format_numbers(turned[1])}) than frame {first[0] + 1} "
                         f"({_format_numbers(first[1])}); the DICOM reader places every frame as the first, so those "
                         f"frames' anatomy would be turned. {fix}")
    if len(set(rescales)) > 1:
        shown = ", ".join(f"{s:g} x + {i:g}" for s, i in sorted(set(rescales))[:4])
        raise InputError(f"'{path}' (series {series.uid}) sets its rescale per frame ({shown}); the DICOM reader "
                         f"applies one rescale to every frame, so some slices would be off in HU. {fix}")
    if len(positions) != count or count != image.GetSize()[2]:
        raise InputError(f"'{path}' (series {series.uid}) has {count} frames but {len(positions)} frame positions "
                         f"and {image.GetSize()[2]} slices were read; its slice geometry cannot be trusted. {fix}")
    if rescales and rescale_out is not None:
        rescale_out.append(rescales[0])
    _set_multiframe_spacing(image, _multiframe_pixel_spacing(path, series, frames, shared, count), positions)
    rest = (0,) * (image.GetDimension() - 3)  # ITK reads a multi-frame file as (x, y, frames, 1)
    expected = np.array([image.TransformIndexToPhysicalPoint((0, 0, k) + rest)[:3] for k in range(count)],
                        dtype=float)
    off = float(np.max(np.linalg.norm(np.asarray(positions) - expected, axis=1)))
    if off > 0.25 * float(image.GetSpacing()[2]):
        tilted = (_frames_tilt_text(f"'{path}' (series {series.uid})", positions, orientations[0][1],
                                    image.GetSpacing()) if orientations and len(orientations[0][1]) == 6 else None)
        if tilted is not None:
            raise InputError(tilted)
        raise InputError(f"'{path}' (series {series.uid}): its frames are not on the grid the DICOM reader builds "
                         f"(a frame lies {off:.3g} mm from where the reader puts it: frames out of order, a missing "
                         f"frame or uneven spacing). {fix}")
    return _frames_slice_thickness(frames, shared, count)


def functional_groups_slice_thickness_mm(dataset: Any) -> Optional[float]:
    """The largest positive SliceThickness (0018,0050, mm) in the Pixel Measures functional groups of a multi-frame
    pydicom ``dataset`` (an enhanced CT, a DICOM SEG: per frame, else shared; :func:`_frames_slice_thickness`),
    where such files keep it instead of at the top level; None where it has no functional groups or none gives
    one."""
    frames = getattr(dataset, "PerFrameFunctionalGroupsSequence", None)
    shared = getattr(dataset, "SharedFunctionalGroupsSequence", None)
    if not frames and not shared:
        return None
    try:
        count = int(dataset.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        count = len(frames) if frames else 1
    return _frames_slice_thickness(frames, shared[0] if shared else None, max(count, 1))


def _frames_slice_thickness(frames, shared, count: int) -> Optional[float]:
    """The largest positive SliceThickness (0018,0050, mm) in the Pixel Measures functional groups of the ``count``
    frames of a multi-frame file (per frame, else shared); None where none gives one."""
    values = []
    for index in range(count):
        frame = frames[index] if frames is not None and len(frames) > index else None
        measures = _functional_item(frame, shared, "PixelMeasuresSequence")
        try:
            value = float(getattr(measures, "SliceThickness", None) or "nan")
        except (TypeError, ValueError):
            continue
        if np.isfinite(value) and value > 0:
            values.append(value)
    return max(values) if values else None


def _dicom_series_of_file(path: Path) -> str:
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        undecodable = undecodable_transfer_syntax([path])
        if undecodable is not None:
            raise InputError(_undecodable_text(undecodable, f"'{path}'")) from None
        if zero_rescale_slope_file([path]) is not None:
            raise InputError(_zero_slope_text(f"'{path}' cannot be read", "this file")) from None
        non_finite = non_finite_rescale_file([path])
        if non_finite is not None:
            raise InputError(_non_finite_rescale_text(f"'{path}' cannot be read", non_finite[1], non_finite[2],
                                                      "this file")) from None
        from .formats import renamed_hint  # a NIfTI named .dcm was told to give a DICOM folder

        hint = renamed_hint(path, path.suffix.lower())
        if hint:
            raise InputError(f"'{path}' is not a DICOM file{hint}.") from None
        raise InputError(f"'{path}' is not a readable DICOM file; give the folder holding the DICOM series.") from None
    uid = _dicom_tag(reader, "0020|000e")
    if not uid:
        raise InputError(f"DICOM file '{path}' has no SeriesInstanceUID; give its folder instead.")
    return uid
