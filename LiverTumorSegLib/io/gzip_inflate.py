"""Inflating a whole ``.gz`` file's payload into one numpy buffer in a few large zlib calls.

Python's ``gzip`` module (used by nibabel) inflates in 128 KiB steps, about a thousand calls for a
512 x 512 x 500 CT. Each call releases the GIL and must take it back; while another thread runs Python (the
model load that :class:`~LiverTumorSegLib.inference.segmenter.Segmenter` overlaps with the read), every step
waits up to the interpreter's switch interval, and a 2.4 s read took 7-8.5 s on an H100 machine. Here each
call inflates up to :data:`INFLATE_STEP_BYTES` straight from the file's bytes, so the GIL changes hands a few
times per CT. Used for ``.nii.gz`` voxel data; nibabel still parses the header.
"""
import os
import zlib
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np

from ..errors import InputError
from ..progress import raise_if_read_stopped

INFLATE_STEP_BYTES = 64 * 1024 * 1024
"""Largest piece of output one zlib call produces (bounds the temporary bytes object beside the result)."""

READ_STEP_BYTES = 16 * 1024 * 1024
"""Compressed bytes read from the file at a time: the compressed file is never held whole (nor copied again at
every step as the unconsumed rest of it; that made a 600-slice read allocate 2.7x its volume)."""

AFTER_RANGE_COUNT_MIN_BYTES = 64 * 1024 * 1024
"""The least :func:`after_range_count_limit` gives: a small image's data after its voxels is counted exactly up to
this many bytes (well under a second of inflating)."""

_GZIP_OR_ZLIB_WBITS = 32 + 15  # zlib detects a gzip or zlib header itself
_MIN_PENDING_BYTES = 64  # zlib's gzip-or-zlib detection misreads a member that starts with only 1 byte given


def inflate_peak_bytes(nbytes: int, compressed_bytes: int, step: int = INFLATE_STEP_BYTES,
                       read_step: int = READ_STEP_BYTES) -> int:
    """The most bytes :func:`inflate_range` and the functions beside it hold beside their ``nbytes`` result while
    inflating a stream of ``compressed_bytes`` on disk: one compressed read step and one inflated step twice (zlib
    fills blocks and joins them into the step's bytes object while it holds them). tracemalloc of a
    512 x 512 x 20 int16 ``.nii.gz``, gzip NRRD or compressed MetaImage read: 7.6 bytes a voxel (2 the result,
    4 the step twice, 1.6 the compressed file), where 4 were counted; 512 x 512 x 100 int32 MetaImage 9.1, counted
    8 (30 Nov 2026)."""
    return 2 * min(int(step), max(0, int(nbytes))) + min(int(read_step), max(0, int(compressed_bytes)))


def inflate_range(path: Union[str, Path], offset: int, nbytes: int, step: int = INFLATE_STEP_BYTES,
                  read_step: int = READ_STEP_BYTES) -> np.ndarray:
    """Bytes ``offset .. offset + nbytes`` of the decompressed content of the gzip file ``path`` (several
    concatenated gzip members are one stream, as ``gzip`` reads them), as a writable uint8 array. Memory beside
    the result: at most ``read_step`` compressed and ``step`` decompressed bytes.

    Raises InputError when the file is not gzip, is corrupt, or ends before ``offset + nbytes``."""
    return _inflate(path, offset, nbytes, step, read_step, to_end=False)[0]


def read_range(path: Union[str, Path], offset: int, nbytes: int, step: int = READ_STEP_BYTES) -> np.ndarray:
    """Bytes ``offset .. offset + nbytes`` of the uncompressed file ``path``, read straight into one writable uint8
    array in steps of ``step`` bytes, checking the read stop (:func:`~..progress.raise_if_read_stopped`) before
    each: the uncompressed NIfTI, NRRD and MetaImage voxels, which nibabel and ITK read in one call that nothing
    could stop, so Ctrl-C waited for the whole read (0.3-0.8 s for a 512 x 512 x 300 int16 file read from a local
    disk, more from a slow one). On the main thread Ctrl-C itself is raised between two steps. Memory: the result
    only (what nibabel's and ITK's reads held). InputError when the file ends before ``offset + nbytes``."""
    if offset < 0 or nbytes < 0:
        raise ValueError(f"offset and nbytes must be >= 0 (got {offset}, {nbytes})")
    out = np.empty(nbytes, dtype=np.uint8)
    view = memoryview(out)
    written = 0
    with open(path, "rb", buffering=0) as handle:
        handle.seek(offset)
        while written < nbytes:
            raise_if_read_stopped()  # a batch's reader thread stopped by Ctrl-C: at most one step more
            got = handle.readinto(view[written:written + min(step, nbytes - written)])
            if not got:
                raise _truncated(path, f"its data ends after {written} of {nbytes} bytes")
            written += got
    return out


def after_range_count_limit(nbytes: int) -> int:
    """How many decompressed bytes after an image's ``nbytes`` bytes of voxels the readers inflate to count them
    (``max_after`` of :func:`inflate_to_end` and :func:`inflate_one_stream`): as many as the voxels themselves, at
    least :data:`AFTER_RANGE_COUNT_MIN_BYTES`. The readers only warn about data after the voxels (a header edited to
    fewer slices), so knowing that there is more than this is enough; counting it all made a ``.nii.gz`` with
    48 GiB of zeros appended as a second gzip member take over 2 minutes to read (the fuzzing audit). Inflating at
    most one more volume's worth bounds the work at twice that of a plain read."""
    return max(int(nbytes), AFTER_RANGE_COUNT_MIN_BYTES)


def inflate_to_end(path: Union[str, Path], offset: int, nbytes: int, step: int = INFLATE_STEP_BYTES,
                   read_step: int = READ_STEP_BYTES, start: int = 0, allow_short: bool = False,
                   max_after: Optional[int] = None) -> Tuple[np.ndarray, int]:
    """:func:`inflate_range`, then the rest of the stream inflated (and dropped) to its end: ``(bytes, number of
    decompressed bytes after them)``. So every member's CRC-32 and length are checked, a file cut off after the
    range (its gzip trailer missing) is refused as truncated, and data after the range is counted (a header
    edited to fewer slices than the file holds). Zero bytes after the last member (padding) are allowed.
    ``start``: where in the file the compressed stream begins (after a NRRD header; a zlib stream is read as well
    as gzip; a MetaImage's is read by :func:`inflate_one_stream`, as ITK reads it). ``allow_short``: an intact stream
    that ends inside the range is not refused; the bytes returned are then fewer than ``nbytes`` (the caller says
    what is missing). ``max_after``: inflating stops once more than this many bytes are known to follow the range
    (:func:`after_range_count_limit`); the count returned is then a lower bound above ``max_after``, and what
    follows it (with any gzip trailer there: the CRC-32 of a member holding the range, a cut-off end) is neither
    inflated nor checked. None: to the stream's end, however long."""
    return _inflate(path, offset, nbytes, step, read_step, to_end=True, start=start, allow_short=allow_short,
                    max_after=max_after)[:2]


def inflate_one_stream(path: Union[str, Path], nbytes: int, start: int = 0, step: int = INFLATE_STEP_BYTES,
                       read_step: int = READ_STEP_BYTES, max_after: Optional[int] = None
                       ) -> Tuple[np.ndarray, int, int]:
    """The first ``nbytes`` decompressed bytes of the one zlib or gzip stream that begins at byte ``start`` of
    ``path``, inflated to its end marker (its checksum and length checked) and no further, as ITK's MetaImage
    reader (MetaIO) inflates ``CompressedData = True`` voxels: whatever follows the stream's end is not inflated,
    however many bytes and whatever they hold (another stream is not read on). Returns ``(bytes, number of
    decompressed bytes after them, the stream's compressed length in bytes from start)``; the bytes are fewer than
    ``nbytes`` when the stream holds fewer (the caller says what is missing). ``max_after``: as for
    :func:`inflate_to_end`; when more than that many bytes follow, the count is a lower bound above it and the
    length is only how far the stream was read (its end marker not reached, its checksum not checked).

    Raises InputError when the stream is corrupt or the file ends before its end marker."""
    return _inflate(path, 0, nbytes, step, read_step, to_end=True, start=start, allow_short=True, one_stream=True,
                    max_after=max_after)


def _read_size(handle, read_step: int) -> int:
    """The bytes to ask ``handle`` for: ``read_step``, or what is left of the file when that is less (a read of
    ``read_step`` allocates all of it first, 16 MiB for a 1 MB file)."""
    try:
        left = os.fstat(handle.fileno()).st_size - handle.tell()
    except (OSError, ValueError):
        return read_step
    return max(1, min(read_step, left)) if left >= 0 else read_step


def _truncated(path: Union[str, Path], detail: str) -> InputError:
    return InputError(f"Cannot read '{path}': the file is truncated or corrupt ({detail}). Copy or export it again.")


def _inflate(path: Union[str, Path], offset: int, nbytes: int, step: int, read_step: int, to_end: bool,
             start: int = 0, allow_short: bool = False, one_stream: bool = False, max_after: Optional[int] = None
             ) -> Tuple[np.ndarray, int, int]:
    """``(the range's bytes, decompressed bytes after them, compressed bytes from start to the end of the last
    stream inflated)``; ``one_stream``: stop at the first stream's end (:func:`inflate_one_stream`);
    ``max_after``: stop once more than that many bytes follow the range (:func:`inflate_to_end`)."""
    if offset < 0 or nbytes < 0:
        raise ValueError(f"offset and nbytes must be >= 0 (got {offset}, {nbytes})")
    out = np.empty(nbytes, dtype=np.uint8)
    position = 0  # bytes of the decompressed stream produced so far
    written = 0
    inflater = zlib.decompressobj(_GZIP_OR_ZLIB_WBITS)
    member_ended = False  # the last member's end (and trailer) was reached, and no next one has begun
    pending = b""
    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            while written < nbytes or to_end:
                raise_if_read_stopped()  # a batch's reader thread stopped by Ctrl-C: at most one step more
                if len(pending) < _MIN_PENDING_BYTES:  # a new member's header is read whole
                    pending += handle.read(_read_size(handle, read_step))  # no name kept: it held a second copy
                if member_ended and pending and not pending.strip(b"\0"):
                    pending = handle.read(_read_size(handle, read_step))  # zero padding, as gzip skips it
                    continue
                if not pending:
                    if written < nbytes and not allow_short:
                        raise _truncated(path, f"its data ends after {written} of {nbytes} bytes")
                    if not member_ended:
                        raise _truncated(path, "its compressed stream ends before its end marker")
                    break
                want = min(step, offset + nbytes - position) if written < nbytes else step
                piece = inflater.decompress(pending, want)
                pending = inflater.unconsumed_tail
                member_ended = inflater.eof
                if inflater.eof:  # the next gzip member starts in what this one left over: unused_data holds
                    # all of it (when the call before stopped at max_length, CPython leaves a copy of it in
                    # unconsumed_tail as well, and adding that inflated the next member twice)
                    pending = inflater.unused_data
                    inflater = zlib.decompressobj(_GZIP_OR_ZLIB_WBITS)
                skip = max(0, offset - position)  # the part of the stream before the range
                if written < nbytes and skip < len(piece):
                    chunk = memoryview(piece)[skip:skip + nbytes - written]
                    out[written:written + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
                    written += len(chunk)
                position += len(piece)
                piece = chunk = None  # not held while the next step is inflated: that held 3 steps at once
                if one_stream and member_ended:
                    break
                if max_after is not None and position - offset - nbytes > max_after:
                    break  # enough is known: more than max_after bytes follow the range
            taken = handle.tell() - start - len(pending)  # compressed bytes from start on that were inflated
    except zlib.error as exc:
        raise _truncated(path, f"zlib: {exc}") from None
    return out[:written], max(0, position - offset - nbytes), taken
