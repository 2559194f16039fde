"""io.itk: a deflate-compressed NRRD / MetaImage is inflated once. The integrity check (check_deflated_data)
inflates the whole stream; its bytes become the voxels instead of ITK inflating the stream a second time
(0.83 s instead of 0.36 s for an 84 MB CT). The voxels and geometry must be exactly ITK's, for every byte order
and type; a header the fast path does not understand exactly is read by ITK, as before."""
import gzip
import zlib

import numpy as np
import pytest

SimpleITK = pytest.importorskip("SimpleITK")

from LiverTumorSegLib.errors import InputError  # noqa: E402
from LiverTumorSegLib.io import itk as itk_module  # noqa: E402
from LiverTumorSegLib.io import read_volume, write_probability_map  # noqa: E402
from LiverTumorSegLib.io.formats import PROBABILITY_255_CONTENT  # noqa: E402
from LiverTumorSegLib.volume import ImageGeometry  # noqa: E402

SHAPE_ZYX = (5, 6, 7)
SPACING = (0.8, 0.9, 2.5)
ORIGIN = (-10.5, 20.25, -300.0)
DIRECTION = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # rotated: x and y swapped in LPS


def _values(dtype: str) -> np.ndarray:
    """Seeded voxels ``(z, y, x)`` that use every byte of the type (a byte-order mix-up shows)."""
    rng = np.random.default_rng(7)
    if dtype == "uint8":
        return rng.integers(0, 256, SHAPE_ZYX).astype(np.uint8)
    if dtype == "int16":
        return rng.integers(-1024, 3000, SHAPE_ZYX).astype(np.int16)
    if dtype in ("uint16", "int32"):  # uint16 above 32767 and int32 beyond int16: read as float32
        return rng.integers(0 if dtype == "uint16" else -70000, 65536, SHAPE_ZYX).astype(dtype)
    return (rng.normal(0.0, 300.0, SHAPE_ZYX)).astype(dtype)


def _itk_read(path):
    """The volume as ITK reads it (the fast path refused), i.e. as before."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(itk_module, "_voxel_dtype", lambda *args: None)
        return read_volume(path)


def _fast_read(path):
    """The volume read with ITK's voxel read (its second inflate) failing when called."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SimpleITK.ImageFileReader, "Execute",
                      lambda self: pytest.fail("ITK read the voxels: the stream was inflated twice"))
        return read_volume(path)


def _assert_same_volume(fast, itk_read):
    assert fast.array.dtype == itk_read.array.dtype and fast.array.shape == itk_read.array.shape
    np.testing.assert_array_equal(fast.array, itk_read.array)
    assert fast.array.flags.writeable and fast.array.dtype.isnative
    assert fast.geometry == itk_read.geometry
    assert fast.meta == itk_read.meta


def _write_sitk(path, array_zyx):
    image = SimpleITK.GetImageFromArray(array_zyx)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(DIRECTION)
    SimpleITK.WriteImage(image, str(path), useCompression=True)
    return path


_NRRD_TYPE = {"uint8": "uchar", "int16": "short", "uint16": "ushort", "int32": "int", "float32": "float",
              "float64": "double"}
_MET_TYPE = {"uint8": "MET_UCHAR", "int16": "MET_SHORT", "uint16": "MET_USHORT", "int32": "MET_INT",
             "float32": "MET_FLOAT", "float64": "MET_DOUBLE"}


def _nrrd_header(dtype: str, endian: str, extra: str = "") -> bytes:
    d = np.asarray(DIRECTION).reshape(3, 3) * np.asarray(SPACING)  # column k: axis k's step
    directions = " ".join("(" + ",".join(repr(float(v)) for v in d[:, k]) + ")" for k in range(3))
    return ("NRRD0004\n# written by hand\n"
            f"type: {_NRRD_TYPE[dtype]}\ndimension: 3\nspace: left-posterior-superior\n"
            f"sizes: {SHAPE_ZYX[2]} {SHAPE_ZYX[1]} {SHAPE_ZYX[0]}\nspace directions: {directions}\n"
            f"kinds: domain domain domain\nendian: {endian}\nencoding: gzip\n"
            f"space origin: ({ORIGIN[0]},{ORIGIN[1]},{ORIGIN[2]})\n{extra}"
            "LiverTumorSeg_test:=endian: not this one\n\n").encode("ascii")


def _write_nrrd_by_hand(path, array_zyx, endian: str, extra: str = ""):
    order = ">" if endian == "big" else "<"
    data = array_zyx.astype(array_zyx.dtype.newbyteorder(order)).tobytes()
    path.write_bytes(_nrrd_header(str(array_zyx.dtype), endian, extra) + gzip.compress(data))
    return path


def _write_mha_by_hand(path, array_zyx, msb: bool, order_key: str = "BinaryDataByteOrderMSB"):
    order = ">" if msb else "<"
    data = zlib.compress(array_zyx.astype(array_zyx.dtype.newbyteorder(order)).tobytes())
    header = ("ObjectType = Image\nNDims = 3\nBinaryData = True\n"
              f"{order_key} = {msb}\nCompressedData = True\nCompressedDataSize = {len(data)}\n"
              f"TransformMatrix = {' '.join(str(v) for v in np.asarray(DIRECTION).reshape(3, 3).T.ravel())}\n"
              f"Offset = {' '.join(str(v) for v in ORIGIN)}\nElementSpacing = {' '.join(str(v) for v in SPACING)}\n"
              f"DimSize = {SHAPE_ZYX[2]} {SHAPE_ZYX[1]} {SHAPE_ZYX[0]}\n"
              f"ElementType = {_MET_TYPE[str(array_zyx.dtype)]}\nElementDataFile = LOCAL\n")
    path.write_bytes(header.encode("ascii") + data)
    return path


@pytest.mark.parametrize("dtype", ["int16", "uint8", "float32"])
@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_simpleitk_compressed_files_read_without_a_second_inflate_exactly_as_itk(tmp_path, dtype, suffix):
    truth = _values(dtype)
    path = _write_sitk(tmp_path / f"ct{suffix}", truth)
    fast = _fast_read(path)
    _assert_same_volume(fast, _itk_read(path))
    np.testing.assert_array_equal(fast.array, truth.astype(fast.array.dtype))
    assert fast.geometry.direction == pytest.approx(DIRECTION) and fast.geometry.origin == pytest.approx(ORIGIN)


@pytest.mark.parametrize("dtype", ["int16", "uint8", "float32"])
@pytest.mark.parametrize("endian", ["big", "little"])
def test_gzip_nrrd_of_either_byte_order_reads_as_itk_reads_it(tmp_path, dtype, endian):
    truth = _values(dtype)
    fast = _fast_read(_write_nrrd_by_hand(tmp_path / "ct.nrrd", truth, endian))
    np.testing.assert_array_equal(fast.array, truth.astype(fast.array.dtype))
    _assert_same_volume(fast, _itk_read(tmp_path / "ct.nrrd"))


@pytest.mark.parametrize("dtype", ["int16", "uint16", "int32", "float32", "float64"])
@pytest.mark.parametrize("msb", [True, False])
@pytest.mark.parametrize("order_key", ["BinaryDataByteOrderMSB", "ElementByteOrderMSB"])
def test_compressed_metaimage_of_either_byte_order_reads_as_itk_reads_it(tmp_path, dtype, msb, order_key):
    truth = _values(dtype)
    fast = _fast_read(_write_mha_by_hand(tmp_path / "ct.mha", truth, msb, order_key))
    np.testing.assert_array_equal(fast.array, truth.astype(fast.array.dtype))
    _assert_same_volume(fast, _itk_read(tmp_path / "ct.mha"))


@pytest.mark.parametrize("dtype", ["uint16", "int32", "float64"])
def test_wider_types_in_big_endian_gzip_nrrd_read_as_itk_reads_them(tmp_path, dtype):
    truth = _values(dtype)
    fast = _fast_read(_write_nrrd_by_hand(tmp_path / "ct.nrrd", truth, "big"))
    np.testing.assert_array_equal(fast.array, truth.astype(fast.array.dtype))
    _assert_same_volume(fast, _itk_read(tmp_path / "ct.nrrd"))


def test_a_metaimage_field_spelled_otherwise_than_metaio_matches_it_is_read_by_itk(tmp_path):
    """MetaIO matches field names case-sensitively: ITK ignores 'binarydatabyteordermsb = True' (and reads the
    voxels little-endian), where the fast path had honoured it and swapped the bytes: the two reads differed."""
    truth = _values("int16")
    path = _write_mha_by_hand(tmp_path / "ct.mha", truth, True, order_key="binarydatabyteordermsb")
    used = []
    real = itk_module._voxels_from_inflated
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(itk_module, "_voxels_from_inflated", lambda *args: used.append(1) or real(*args))
        volume = read_volume(path)
    assert used == []
    _assert_same_volume(volume, _itk_read(path))


def test_a_detached_header_with_one_gzip_data_file_reads_as_itk(tmp_path):
    truth = _values("int16")
    (tmp_path / "ct.raw.gz").write_bytes(gzip.compress(truth.astype(">i2").tobytes()))
    (tmp_path / "ct.nhdr").write_bytes(_nrrd_header("int16", "big", "data file: ct.raw.gz\n"))
    fast = _fast_read(tmp_path / "ct.nhdr")
    np.testing.assert_array_equal(fast.array, truth)
    _assert_same_volume(fast, _itk_read(tmp_path / "ct.nhdr"))


@pytest.mark.parametrize("extra, why", [
    ("old min: -1024\nold max: 3071\n", "a field the fast path does not know"),
    ("byte skip: 0\n", "a skip, even of 0 bytes"),
])
def test_a_header_the_fast_path_does_not_know_exactly_is_read_by_itk(tmp_path, extra, why):
    truth = _values("int16")
    path = _write_nrrd_by_hand(tmp_path / "ct.nrrd", truth, "big", extra)
    used = []
    real = itk_module._voxels_from_inflated
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(itk_module, "_voxels_from_inflated", lambda *args: used.append(1) or real(*args))
        volume = read_volume(path)
    assert used == [], why
    np.testing.assert_array_equal(volume.array, truth)


def test_the_probability_content_tag_is_read_on_the_fast_path(tmp_path):
    probability = (_values("uint8") // 2).astype(np.uint8)
    geometry = ImageGeometry(spacing=SPACING, origin=ORIGIN)
    for name in ("p.nrrd", "p.mha"):
        path = write_probability_map(tmp_path / name, probability, geometry)
        fast = _fast_read(path)
        assert fast.meta["content"] == PROBABILITY_255_CONTENT
        _assert_same_volume(fast, _itk_read(path))


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_truncated_or_short_compressed_data_gives_the_same_error_as_before(tmp_path, suffix):
    """The check now keeps the bytes it inflates; a file cut short, and an intact stream holding fewer bytes than
    the header describes, are refused with the messages of the check that dropped them."""
    truth = _values("int16")
    whole = _write_sitk(tmp_path / f"ct{suffix}", truth).read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole[:-40])
    with pytest.raises(InputError) as fast_error:
        read_volume(cut)
    with pytest.raises(InputError) as itk_error:
        _itk_read(cut)
    assert str(fast_error.value) == str(itk_error.value)
    assert "truncated or corrupt" in str(fast_error.value) and str(cut) in str(fast_error.value)

    short = tmp_path / "short.nrrd"
    short.write_bytes(_nrrd_header("int16", "little") + gzip.compress(truth.tobytes()[:-14]))
    with pytest.raises(InputError, match=r"truncated or corrupt \(its compressed data holds 406 of the 420 bytes"):
        read_volume(short)


def _nrrd_bytes(values_zyx: np.ndarray, type_name: str, endian: str, encoding: str, extra: str = "") -> bytes:
    """A NRRD file of ``values_zyx`` written by hand (``type_name`` as teem spells it)."""
    nz, ny, nx = values_zyx.shape
    header = (f"NRRD0004\ntype: {type_name}\ndimension: 3\nsizes: {nx} {ny} {nz}\nendian: {endian}\n"
              f"encoding: {encoding}\n{extra}\n").encode("ascii")
    order = ">" if endian == "big" else "<"
    data = values_zyx.astype(values_zyx.dtype.newbyteorder(order)).tobytes()
    return header + (gzip.compress(data) if encoding == "gzip" else data)


@pytest.mark.parametrize("name,compressed", [("v.nrrd", True), ("v.nrrd", False), ("v.nhdr", False),
                                             ("v.mha", True), ("v.mha", False), ("v.mhd", True), ("v.mhd", False)])
@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32"])
def test_first_slice_values_are_itks_first_slice(tmp_path, name, compressed, dtype):
    """The batch tells a label map beside the CTs from a CT by its first slice; for NRRD and MetaImage it is read
    from the file's bytes (2 ms for a compressed 512 x 512 CT, where ITK inflates the whole file). Its values must
    be the ones ITK reads at z = 0."""
    values = _values(dtype)
    image = SimpleITK.GetImageFromArray(values)
    image.SetSpacing(SPACING)
    SimpleITK.WriteImage(image, str(tmp_path / name), compressed)
    first = itk_module.first_slice_values(tmp_path / name)
    assert first is not None and first.dtype == values.dtype
    np.testing.assert_array_equal(first.reshape(SHAPE_ZYX[1:]), values[0])


@pytest.mark.parametrize("encoding", ["raw", "gzip"])
def test_first_slice_values_of_a_big_endian_nrrd(tmp_path, encoding):
    values = _values("int16")
    (tmp_path / "b.nrrd").write_bytes(_nrrd_bytes(values, "short", "big", encoding))
    np.testing.assert_array_equal(SimpleITK.GetArrayFromImage(SimpleITK.ReadImage(str(tmp_path / "b.nrrd")))[0],
                                  values[0])  # the file is as ITK reads it
    first = itk_module.first_slice_values(tmp_path / "b.nrrd")
    assert first.dtype.isnative
    np.testing.assert_array_equal(first.reshape(SHAPE_ZYX[1:]), values[0])


def test_first_slice_values_leave_what_the_header_does_not_say_exactly_to_the_full_read(tmp_path):
    """None (the case's own read decides) for text voxels, a byte skip, a 4D file, a slice's worth of data missing,
    a damaged stream, a missing data file, no header, or another format."""
    values = _values("int16")
    cases = {
        "text.nrrd": b"NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2 1\nencoding: ascii\n\n1 2 3 4\n",
        "skip.nrrd": _nrrd_bytes(values, "short", "little", "raw", "byte skip: 2\n"),
        "4d.nrrd": b"NRRD0004\ntype: uchar\ndimension: 4\nsizes: 1 2 2 1\nencoding: raw\n\n\0\0\0\0",
        "short.nrrd": _nrrd_bytes(values, "short", "little", "raw")[:-values[0].nbytes * len(values) + 10],
        "damaged.nrrd": _nrrd_bytes(values, "short", "little", "gzip")[:-values.nbytes] + b"\xff" * 64,
        "detached.nhdr": b"NRRD0004\ntype: short\ndimension: 3\nsizes: 7 6 5\nencoding: raw\ndata file: gone.raw\n",
        "nothing.mha": b"not a header at all",
        "ct.nii": b"\0" * 400,
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        assert itk_module.first_slice_values(tmp_path / name) is None, name
    assert itk_module.first_slice_values(tmp_path / "absent.nrrd") is None
