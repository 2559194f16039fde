"""io.itk: MetaImage (.mha / .mhd) header fields that change what the voxels mean. Those ITK reads correctly are
read; those ITK's reader (this tool's, 3D Slicer's) silently gets wrong are refused with a message saying what
to fix; an AnatomicalOrientation that disagrees with the TransformMatrix is followed as ITK follows it, with a
warning. The files are tiny and written by hand; arrays are (z, y, x), DimSize is x y z."""
import re
import zlib
from pathlib import Path

import numpy as np
import pytest

from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.io import read_volume

TRUTH = (np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4) * 100 - 1000)  # (z, y, x)
LITTLE, BIG = TRUTH.astype("<i2").tobytes(), TRUTH.astype(">i2").tobytes()


def _header(extra: str = "", data_file: str = "LOCAL", transform: str = "1 0 0 0 1 0 0 0 1") -> bytes:
    """A MetaImage header of TRUTH's grid (1 mm, origin 0) with ``extra`` lines before the geometry."""
    return (f"ObjectType = Image\nNDims = 3\nBinaryData = True\n{extra}TransformMatrix = {transform}\n"
            "Offset = 0 0 0\nElementSpacing = 1 1 1\nDimSize = 4 3 2\nElementType = MET_SHORT\n"
            f"ElementDataFile = {data_file}\n").encode("ascii")


def _mha(folder: Path, extra: str, data: bytes) -> Path:
    path = folder / "ct.mha"
    path.write_bytes(_header(extra) + data)
    return path


def _mhd(folder: Path, extra: str, data: bytes, data_file: str = "ct.raw") -> Path:
    (folder / data_file).write_bytes(data)
    path = folder / "ct.mhd"
    path.write_bytes(_header(extra, data_file))
    return path


def _mha_edited(folder: Path, line: bytes, edited: bytes) -> Path:
    """A .mha of TRUTH whose header line ``line`` reads ``edited``."""
    path = folder / "ct.mha"
    path.write_bytes(_header().replace(line, edited) + LITTLE)
    return path


COMPRESSED = zlib.compress(LITTLE)
TRAILING = b"not voxel data\n" * 4
"""Bytes after a complete zlib stream, which ITK's MetaImage reader (MetaIO) ignores."""
TWO_STREAMS = zlib.compress(LITTLE[:24]) + zlib.compress(LITTLE[24:])
"""TRUTH's bytes in two zlib streams: ITK inflates the first only (its 24 bytes, then whatever its buffer held)."""


def _mha_with_header_size(folder: Path, padding: int, data: bytes, extra: str = "") -> Path:
    """A .mha whose ``HeaderSize`` counts its header plus ``padding`` bytes before ``data`` (MetaIO counts a
    LOCAL file's HeaderSize from its first byte)."""
    size = 0
    while True:  # the header's length depends on the digits of its own HeaderSize
        header = _header(f"{extra}HeaderSize = {size}\n")
        if size == len(header) + padding:
            break
        size = len(header) + padding
    path = folder / "ct.mha"
    path.write_bytes(header + b"x" * padding + data)
    return path


@pytest.mark.parametrize("padding", [0, 16])
@pytest.mark.parametrize("compressed", [False, True])
def test_a_mha_whose_header_size_counts_its_own_header_is_read_exactly(tmp_path, padding, compressed):
    """MetaIO takes a LOCAL HeaderSize as the voxels' offset from the file's first byte, and ITK reads such a file
    exactly; the reader refused every LOCAL HeaderSize (review of this change, with SimpleITK as the judge)."""
    extra = f"CompressedData = True\nCompressedDataSize = {len(COMPRESSED)}\n" if compressed else ""
    path = _mha_with_header_size(tmp_path, padding, COMPRESSED if compressed else LITTLE, extra)
    assert np.array_equal(read_volume(path).array, TRUTH)


@pytest.mark.parametrize("write", [
    lambda d: _mha(d, "BinaryDataByteOrderMSB = True\n", BIG),
    lambda d: _mha(d, "ElementByteOrderMSB = True\n", BIG),
    lambda d: _mha(d, "BinaryDataByteOrderMSB = True\nElementByteOrderMSB = True\n", BIG),
    lambda d: _mha(d, f"CompressedData = True\nCompressedDataSize = {len(COMPRESSED)}\n", COMPRESSED),
    lambda d: _mhd(d, "HeaderSize = 16\n", b"x" * 16 + LITTLE),
    lambda d: _mhd(d, "HeaderSize = -1\n", b"x" * 16 + LITTLE),
    lambda d: _mhd(d, f"HeaderSize = 16\nCompressedData = True\nCompressedDataSize = {len(COMPRESSED)}\n",
                   b"x" * 16 + COMPRESSED),
    lambda d: _mhd(d, "CompressedData = True\n", COMPRESSED),  # a data file of its own is inflated whole
    lambda d: _mhd(d, "ElementToIntensityFunctionSlope = 1\nElementToIntensityFunctionOffset = 0\n", LITTLE),
], ids=["BinaryDataByteOrderMSB", "ElementByteOrderMSB", "both MSB", "CompressedDataSize", "HeaderSize 16",
        "HeaderSize -1", "HeaderSize compressed", "no CompressedDataSize, data file", "identity intensity mapping"])
def test_metaimage_fields_that_itk_honours_are_read_exactly(tmp_path, write):
    assert np.array_equal(read_volume(write(tmp_path)).array, TRUTH)


@pytest.mark.parametrize("write, where", [
    (lambda d: _mha(d, f"CompressedData = True\nCompressedDataSize = {len(COMPRESSED)}\n", COMPRESSED + TRAILING),
     "the file"),
    (lambda d: _mha(d, f"CompressedData = True\nCompressedDataSize = {len(COMPRESSED + TRAILING)}\n",
                    COMPRESSED + TRAILING), "the file"),
    (lambda d: _mhd(d, "CompressedData = True\n", COMPRESSED + TRAILING), "its data file 'ct.raw'"),
    (lambda d: _mhd(d, f"HeaderSize = 16\nCompressedData = True\nCompressedDataSize = {len(COMPRESSED)}\n",
                    b"x" * 16 + COMPRESSED + TRAILING), "its data file 'ct.raw'"),
], ids=["CompressedDataSize the stream's", "CompressedDataSize counting the bytes after it", "data file",
        "data file after HeaderSize"])
def test_bytes_after_a_complete_compressed_stream_are_ignored_as_itk_ignores_them(tmp_path, write, where):
    """ITK's MetaImage reader (so 3D Slicer) inflates one zlib stream and stops at its end: the voxels are exactly
    the stream's, whatever follows it. Such a file was refused (CompressedDataSize not the bytes the file holds, or
    zlib's 'incorrect header check' on the bytes after the stream); now it reads as ITK reads it, with a warning
    naming the bytes ignored."""
    import SimpleITK

    path = write(tmp_path)
    volume = read_volume(path)
    assert np.array_equal(volume.array, TRUTH)
    assert np.array_equal(SimpleITK.GetArrayFromImage(SimpleITK.ReadImage(str(path))), TRUTH)
    assert volume.meta["warnings"] == [
        f"{where} holds {len(TRAILING)} bytes after its compressed voxel data (a complete stream of "
        f"{len(COMPRESSED)} bytes, its checksum correct); they were ignored, as ITK and 3D Slicer ignore them. If "
        f"the file was meant to hold more, export it again"]


def test_zero_padding_after_a_compressed_stream_is_ignored_without_a_warning(tmp_path):
    """Zero bytes after the stream are padding (as after a gzip member): read, and no warning."""
    path = _mha(tmp_path, f"CompressedData = True\nCompressedDataSize = {len(COMPRESSED)}\n", COMPRESSED + bytes(64))
    volume = read_volume(path)
    assert np.array_equal(volume.array, TRUTH) and "warnings" not in volume.meta


def test_a_list_of_slice_files_or_a_numbered_pattern_is_read_exactly(tmp_path):
    for k in range(2):
        (tmp_path / f"slice{k}.raw").write_bytes(TRUTH[k].astype("<i2").tobytes())
    (tmp_path / "list.mhd").write_bytes(_header(data_file="LIST") + b"slice0.raw\nslice1.raw\n")
    (tmp_path / "pattern.mhd").write_bytes(_header(data_file="slice%d.raw 0 1 1"))
    for name in ("list.mhd", "pattern.mhd"):
        assert np.array_equal(read_volume(tmp_path / name).array, TRUTH)


@pytest.mark.parametrize("data_file, listed, message", [
    ("LIST", b"", "lists 0 data file(s) (ElementDataFile = LIST) for the 2 its DimSize (4 3 2) needs"),
    ("LIST", b"slice0.raw\n", "lists 1 data file(s) (ElementDataFile = LIST) for the 2"),
    ("LIST 2D", b"slice0.raw\n", "lists 1 data file(s) (ElementDataFile = LIST 2D) for the 2"),
    ("LIST 3D", b"", "lists 0 data file(s) (ElementDataFile = LIST 3D) for the 1"),
    ("slice%d.raw 0 0 1", b"", "numbers 1 data file(s) (ElementDataFile = slice%d.raw 0 0 1) for the 2"),
])
def test_a_list_or_pattern_of_fewer_data_files_than_slices_is_refused(tmp_path, data_file, listed, message):
    """ITK read the files a LIST or numbered pattern named and returned the slices they lacked as leftover memory
    (in a process that had read a scan before, that scan's values; exit 0, no warning)."""
    for k in range(2):
        (tmp_path / f"slice{k}.raw").write_bytes(TRUTH[k].astype("<i2").tobytes())
    (tmp_path / "ct.mhd").write_bytes(_header(data_file=data_file) + listed)
    with pytest.raises(InputError, match=re.escape(message) + ".*ITK would fill the missing part of the image with "
                                                              "leftover memory"):
        read_volume(tmp_path / "ct.mhd")


@pytest.mark.parametrize("write, message", [
    (lambda d: _mha(d, "BinaryDataByteOrderMSB = False\nElementByteOrderMSB = True\n", BIG),
     "BinaryDataByteOrderMSB = False but ElementByteOrderMSB = True; both give the byte order"),
    (lambda d: _mha(d, "ElementByteOrderMSB = True\nBinaryDataByteOrderMSB = False\n", LITTLE),
     "BinaryDataByteOrderMSB = False but ElementByteOrderMSB = True"),
    (lambda d: _mha(d, "ElementToIntensityFunctionSlope = 2\nElementToIntensityFunctionOffset = -1024\n", LITTLE),
     r"maps the stored values to intensities \(ElementToIntensityFunctionSlope = 2, "
     r"ElementToIntensityFunctionOffset = -1024\), which ITK-based readers .* do not apply"),
    (lambda d: _mha(d, "HeaderSize = 16\n", b"x" * 16 + LITTLE),
     r"HeaderSize = 16 with the voxels in the same file \(ElementDataFile = LOCAL\), but the header itself is "
     r"\d+ bytes long.*Remove the HeaderSize line"),
    (lambda d: _mhd(d, f"HeaderSize = -1\nCompressedData = True\nCompressedDataSize = {len(COMPRESSED)}\n",
                    b"x" * 16 + COMPRESSED),
     "HeaderSize = -1 .* for compressed voxels"),
    (lambda d: _mha(d, "CompressedData = True\n", COMPRESSED),
     f"without a CompressedDataSize.*Add 'CompressedDataSize = {len(COMPRESSED)}' to the header"),
    (lambda d: _mha(d, f"CompressedData = True\nCompressedDataSize = {len(COMPRESSED) - 5}\n", COMPRESSED),
     rf"corrupt or its header is wrong \(its header gives CompressedDataSize = {len(COMPRESSED) - 5}, but the file "
     rf"holds {len(COMPRESSED)} bytes"),
    (lambda d: _mha(d, f"CompressedData = True\nCompressedDataSize = {len(COMPRESSED) + 50}\n", COMPRESSED),
     rf"truncated or corrupt \(its header gives CompressedDataSize = {len(COMPRESSED) + 50}"),
    (lambda d: _mhd(d, "ElementNumberOfChannels = 2\n", np.repeat(TRUTH[..., None], 2, axis=-1).tobytes()),
     "has 2 components per voxel"),
    (lambda d: _mha(d, f"CompressedData = True\nCompressedDataSize = {len(COMPRESSED) - 5}\n",
                    COMPRESSED + TRAILING),
     rf"corrupt or its header is wrong \(its header gives CompressedDataSize = {len(COMPRESSED) - 5}, but the file "
     rf"holds {len(COMPRESSED)} bytes"),
    (lambda d: _mha(d, f"CompressedData = True\nCompressedDataSize = {len(TWO_STREAMS)}\n", TWO_STREAMS),
     rf"its voxels are split over more than one compressed stream \(the first, of {len(zlib.compress(LITTLE[:24]))} "
     r"bytes, holds 24 of the 48 bytes its header describes, and the voxels continue in a second compressed stream "
     r"after it\), but ITK, so 3D Slicer and this tool, reads only the first stream of a MetaImage\. Export the "
     r"image again"),
    (lambda d: _mhd(d, "CompressedData = True\n", TWO_STREAMS), "continue in a second compressed stream"),
    (lambda d: _mha(d, f"CompressedData = True\nCompressedDataSize = {len(zlib.compress(LITTLE[:24]) + TRAILING)}\n",
                    zlib.compress(LITTLE[:24]) + TRAILING),
     r"truncated or corrupt \(its compressed data holds 24 of the 48 bytes its header describes\)"),
    (lambda d: _mha_edited(d, b"Offset = 0 0 0", b"Offset = nan 0 0"),
     r"its header's Offset is 'nan 0 0', not 3 finite numbers; the header is damaged"),
    (lambda d: _mha_edited(d, b"ElementSpacing = 1 1 1", b"ElementSpacing = 1 x 1"),
     r"its header's ElementSpacing is '1 x 1', not 3 finite numbers"),
], ids=["MSB fields disagree", "MSB fields disagree, other order", "intensity mapping", "HeaderSize in a .mha",
        "HeaderSize -1 compressed", "no CompressedDataSize", "CompressedDataSize too small",
        "CompressedDataSize too large", "two channels", "CompressedDataSize inside the stream, bytes after it",
        "voxels split over two streams", "voxels split over two streams, data file",
        "a short stream, other bytes after it", "Offset not a number", "ElementSpacing not a number"])
def test_metaimage_fields_that_itk_would_misread_are_refused_saying_what_to_fix(tmp_path, write, message):
    """Each was read without a word into other values than the file holds (ITK ignores the intensity mapping,
    takes one of two disagreeing byte orders, inflates only CompressedDataSize bytes or only the first of two
    streams, skips HeaderSize bytes from the wrong place, or reads an Offset of 'nan 0 0' as 0 0 0), or refused as
    'File cannot be read'."""
    with pytest.raises(InputError, match=message):
        read_volume(write(tmp_path))


def test_a_damaged_compressed_data_file_after_a_header_size_is_refused(tmp_path):
    """A .mhd with HeaderSize skipped the integrity check of its compressed data: ITK printed 'Uncompress failed'
    and returned damaged voxels."""
    damaged = bytearray(COMPRESSED)
    damaged[len(damaged) // 2] ^= 0xFF
    path = _mhd(tmp_path, f"HeaderSize = 16\nCompressedData = True\nCompressedDataSize = {len(damaged)}\n",
                b"x" * 16 + bytes(damaged))
    with pytest.raises(InputError, match="truncated or corrupt"):
        read_volume(path)


@pytest.mark.parametrize("letters, transform, warned", [
    ("RAI", "1 0 0 0 1 0 0 0 1", False),    # as ITK writes the identity: the side each axis runs from
    ("LPS", "1 0 0 0 1 0 0 0 1", False),    # the side each axis runs to
    ("???", "1 0 0 0 1 0 0 0 1", False),
    ("ARS", "0 1 0 1 0 0 0 0 -1", False),
    ("RAS", "1 0 0 0 1 0 0 0 1", True),     # z reversed
    ("ARI", "1 0 0 0 1 0 0 0 1", True),     # x and y swapped
])
def test_an_anatomical_orientation_that_disagrees_with_the_transform_matrix_is_warned(tmp_path, letters, transform,
                                                                                      warned):
    """ITK (so 3D Slicer) places the voxels by TransformMatrix and ignores AnatomicalOrientation: this tool does
    the same, and says so when the two disagree (one of them is wrong, left-right perhaps)."""
    path = tmp_path / "ct.mha"
    path.write_bytes(_header(f"AnatomicalOrientation = {letters}\n", transform=transform) + LITTLE)
    volume = read_volume(path)
    notes = [w for w in volume.meta.get("warnings", []) if "AnatomicalOrientation" in w]
    assert bool(notes) == warned
    if warned:
        assert f"AnatomicalOrientation ({letters}) names other axes than its TransformMatrix (RAI" in notes[0]
        assert "the TransformMatrix was followed" in notes[0]
    assert np.array_equal(volume.array, TRUTH)


@pytest.mark.parametrize("direction_line", ["TransfromMatrix = -1 0 0 0 -1 0 0 0 1\n", ""])
def test_an_anatomical_orientation_beside_no_direction_field_names_the_identity_not_a_transform_matrix(
        tmp_path, direction_line):
    """A header whose TransformMatrix is misspelled (or left out) is read with the identity direction: the
    AnatomicalOrientation warning said 'its TransformMatrix (RAI ...) ... the TransformMatrix was followed', of a
    field the header does not have, beside the misspelling's warning that says it was ignored."""
    header = _header(f"AnatomicalOrientation = LPI\n{direction_line}").replace(
        b"TransformMatrix = 1 0 0 0 1 0 0 0 1\n", b"")
    assert b"TransformMatrix =" not in header
    path = tmp_path / "ct.mha"
    path.write_bytes(header + LITTLE)
    volume = read_volume(path)
    notes = [w for w in volume.meta.get("warnings", []) if "AnatomicalOrientation" in w]
    assert len(notes) == 1 and "TransformMatrix (RAI" not in notes[0] and "TransformMatrix was" not in notes[0]
    assert "names other axes than the identity direction (RAI in the same notation)" in notes[0]
    assert "the identity was followed" in notes[0]
    np.testing.assert_array_equal(volume.geometry.direction_matrix, np.eye(3))


@pytest.mark.parametrize("name", ["CT.MHA", "ct.Mha", "CT.MHD"])
def test_a_metaimage_named_in_upper_case_is_read_as_in_lower_case(tmp_path, name):
    """ITK picks its MetaImage reader by a lower-case .mha/.mhd only: a valid CT.MHA (as Windows tools name files,
    and as `segment -o OUT.MHA` wrote it) was refused as 'not a valid .mha file (Unable to determine ImageIO
    reader)'. Its voxels, geometry and header-only geometry are those of the same file named in lower case."""
    from LiverTumorSegLib.io import read_header_geometry

    lower = _mhd(tmp_path, "", LITTLE) if name.lower().endswith(".mhd") else _mha(tmp_path, "", LITTLE)
    path = lower.rename(tmp_path / name)
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.array, TRUTH)
    assert read_header_geometry(path) == (volume.geometry, TRUTH.shape)


@pytest.mark.parametrize("line, what", [("TransfromMatrix = -1 0 0 0 -1 0 0 0 1", "direction"),
                                        ("transformmatrix = -1 0 0 0 -1 0 0 0 1", "direction"),
                                        ("Direction = -1 0 0 0 -1 0 0 0 1", "direction"),
                                        ("Ofset = 10 20 30", "origin"), ("ElementSpacings = 0.8 0.8 2.5", "spacing")])
def test_a_misspelled_geometry_field_is_named_in_a_warning(tmp_path, line, what):
    """MetaIO matches field names exactly and ignores others: a header whose only direction field is
    'TransfromMatrix' (a flip to R, A) was read with the identity direction without a word. The field is named,
    with the spellings ITK reads and what it took instead; the file is read as ITK and 3D Slicer read it."""
    field = line.split(" = ")[0]
    header = _header().decode("ascii")
    for known in ("TransformMatrix", "Offset", "ElementSpacing"):
        if _METAIMAGE_WHAT[known] == what:
            header = re.sub(rf"(?m)^{known} = .*\n", line + "\n", header)
    path = tmp_path / "ct.mha"
    path.write_bytes(header.encode("ascii") + LITTLE)
    volume = read_volume(path)
    notes = [w for w in volume.meta.get("warnings", []) if f"'{field}'" in w]
    assert len(notes) == 1 and f"it reads the {what} from" in notes[0] and "rename it" in notes[0]
    if what == "direction":
        assert volume.geometry.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)   # what ITK took
        assert "identity direction" in notes[0]


_METAIMAGE_WHAT = {"TransformMatrix": "direction", "Offset": "origin", "ElementSpacing": "spacing"}


@pytest.mark.parametrize("extra", ["TransfromMatrix = -1 0 0 0 -1 0 0 0 1\n", "MyScannerTag = 7\n",
                                   "PatientPosition = HFS\n", "Modality = MET_MOD_CT\n"])
def test_an_unknown_field_beside_the_geometry_fields_is_not_warned_about(tmp_path, extra):
    """A near-miss of a geometry field where the header has the field itself, or a writer's own field, or a field
    MetaIO knows, gets no warning."""
    volume = read_volume(_mha(tmp_path, extra, LITTLE))
    assert not [w for w in volume.meta.get("warnings", []) if "is not one ITK reads" in w]


def test_compressed_data_size_reads_ascii_digits_only():
    """'²' (byte 0xB2 in a latin-1 header) is a digit to str.isdigit but not to int: the size read raised ValueError
    (the read's own handler then called the file unreadable); it is now 'not a whole number', as any other text."""
    from LiverTumorSegLib.io.itk import _metaimage_compressed_size

    assert _metaimage_compressed_size({"compresseddatasize": "120"}) == 120
    assert _metaimage_compressed_size({"compresseddatasize": "\u00b2"}) is None
    assert _metaimage_compressed_size({"compresseddatasize": "1\u00b2"}) is None
    assert _metaimage_compressed_size({}) is None


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("spelling", ["LOCAL", "Local", "local", "LoCaL", "lOCAL"])
def test_local_voxels_only_where_metaio_spells_local_so(tmp_path, spelling, compressed):
    """MetaIO keeps the voxels in the header's own file for ElementDataFile LOCAL, Local or local only; another
    spelling ('LoCaL') is a data file's name, which ITK (and 3D Slicer) cannot find. The reader read the bytes after
    such a header as voxels where ITK fails (compressed files since the fast inflate, uncompressed ones since the
    read in steps); now it says the data file is missing, as for any .mhd whose .raw was left behind."""
    extra = f"CompressedData = True\nCompressedDataSize = {len(COMPRESSED)}\n" if compressed else ""
    path = tmp_path / "ct.mha"
    path.write_bytes(_header(extra, data_file=spelling) + (COMPRESSED if compressed else LITTLE))
    if spelling in ("LOCAL", "Local", "local"):
        assert np.array_equal(read_volume(path).array, TRUTH)
    else:
        with pytest.raises(InputError, match=f"its voxels are in the data file '{spelling}' its header names, which is "
                                             f"not there"):
            read_volume(path)


@pytest.mark.parametrize("numbers", ["--1 3 1", "1 --3 1", "1 3 --1", "-1 3 1x"])
def test_a_numbered_data_file_pattern_with_a_malformed_number_is_an_input_error(tmp_path, numbers):
    """'--1' passed the pattern check's ``lstrip('-').isdigit()`` and ``int`` refused it: read_volume raised
    ValueError (a traceback from segment) instead of a one-line InputError; let through, MetaIO's atoi reads it as 0:
    a step of 0 killed the process (SIGFPE), a last number of 0 returned an image of leftover memory."""
    path = tmp_path / "ct.mhd"
    path.write_bytes(_header(data_file=f"s%03d.raw {numbers}"))
    with pytest.raises(InputError, match=r"need three whole numbers after the pattern \(first, last, step\)"):
        read_volume(path)


@pytest.mark.parametrize("value", ["1", "t", "18446744073709551617"])
def test_compressed_data_spelled_as_metaio_reads_true_is_read_as_compressed(tmp_path, value):
    """MetaIO takes a CompressedData beginning with t or 1 as true; this reader took only 'true' as compressed. A raw
    .mha whose header said 'CompressedData = 18446744073709551617' (the reader fuzzing audit) was inflated by ITK,
    which printed 'Uncompress failed' and returned uninitialised memory as voxels: other values on each run, no
    error. Such a header is now read as one of compressed voxels: with its CompressedDataSize they are read exactly;
    without it, or with raw voxels, it is refused."""
    data = zlib.compress(LITTLE)
    compressed = _mha(tmp_path, f"CompressedData = {value}\nCompressedDataSize = {len(data)}\n", data)
    assert np.array_equal(read_volume(compressed).array, TRUTH)
    without_size = _mha(tmp_path, f"CompressedData = {value}\n", data)
    with pytest.raises(InputError, match=rf"\(CompressedData = {value}\) follow its header without a "
                                         rf"CompressedDataSize"):
        read_volume(without_size)
    raw = _mha(tmp_path, f"CompressedData = {value}\nCompressedDataSize = {len(LITTLE)}\n", LITTLE)
    with pytest.raises(InputError, match=r"truncated or corrupt"):
        read_volume(raw)


def test_compressed_data_yes_is_raw_as_metaio_reads_it(tmp_path):
    """'CompressedData = yes' is read by MetaIO as raw data (not compressed), and so it is read here."""
    assert np.array_equal(read_volume(_mha(tmp_path, "CompressedData = yes\n", LITTLE)).array, TRUTH)
