"""io.gzip_inflate: the .nii.gz voxel reader's inflate, against Python's gzip on known bytes."""
import gzip
import zlib

import numpy as np
import pytest

from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.io import read_volume
from LiverTumorSegLib.io.gzip_inflate import inflate_range

PAYLOAD = np.random.default_rng(5).integers(0, 256, size=100_000, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("offset, nbytes, step", [(0, 100_000, 1 << 20), (352, 99_648, 1 << 20),
                                                  (352, 50_000, 4096), (99_999, 1, 7), (10, 0, 100)])
def test_range_equals_the_slice_of_gzip_read(tmp_path, offset, nbytes, step):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(PAYLOAD))
    out = inflate_range(path, offset, nbytes, step=step)
    assert out.dtype == np.uint8 and out.flags.writeable and out.shape == (nbytes,)
    assert out.tobytes() == PAYLOAD[offset:offset + nbytes]


def test_concatenated_members_are_one_stream(tmp_path):
    path = tmp_path / "two.gz"
    path.write_bytes(gzip.compress(PAYLOAD[:30_000]) + gzip.compress(PAYLOAD[30_000:]))
    assert inflate_range(path, 29_000, 2_000, step=512).tobytes() == PAYLOAD[29_000:31_000]
    assert inflate_range(path, 0, len(PAYLOAD)).tobytes() == gzip.open(path).read()


@pytest.mark.parametrize("read_step", [1, 7, 1000, 30_027, 30_028, 30_029, 1 << 20])
def test_compressed_file_read_in_pieces_of_any_size(tmp_path, read_step):
    """The compressed bytes are read a piece at a time (never the whole file); pieces of 1 byte, pieces that end
    inside a gzip header, exactly at the end of the first member (30,028 bytes here) or one byte either side."""
    first = gzip.compress(PAYLOAD[:30_000], mtime=0)
    path = tmp_path / "two.gz"
    path.write_bytes(first + gzip.compress(PAYLOAD[30_000:], mtime=0))
    assert len(first) == 30_028
    assert inflate_range(path, 0, len(PAYLOAD), read_step=read_step).tobytes() == PAYLOAD
    assert inflate_range(path, 29_990, 50, step=16, read_step=read_step).tobytes() == PAYLOAD[29_990:30_040]


def test_truncated_corrupt_and_not_gzip_files_say_so(tmp_path):
    whole = gzip.compress(PAYLOAD)
    short = tmp_path / "short.gz"
    short.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(InputError, match="ends after"):
        inflate_range(short, 0, len(PAYLOAD))
    corrupt = tmp_path / "corrupt.gz"
    corrupt.write_bytes(whole[:200] + bytes(b ^ 0xFF for b in whole[200:400]) + whole[400:])
    with pytest.raises(InputError, match="truncated or corrupt"):
        inflate_range(corrupt, 0, len(PAYLOAD))
    plain = tmp_path / "plain.gz"
    plain.write_bytes(PAYLOAD)
    with pytest.raises(InputError, match="zlib"):
        inflate_range(plain, 0, 10)
    longer = tmp_path / "x.gz"
    longer.write_bytes(gzip.compress(PAYLOAD))
    with pytest.raises(InputError, match="ends after"):
        inflate_range(longer, 50_000, len(PAYLOAD))  # asks for more than the file holds


def test_zlib_stream_is_read_too(tmp_path):
    path = tmp_path / "z.gz"
    path.write_bytes(zlib.compress(PAYLOAD))
    assert inflate_range(path, 5, 10).tobytes() == PAYLOAD[5:15]


def test_nifti_gz_voxels_equal_nibabel_for_byte_orders_and_scaling(tmp_path):
    """The .nii.gz reader (io.nifti, through inflate_range) returns what nibabel returns: big-endian
    int16, float32, scaled uint8 voxels, NIfTI-2, and a header extension that moves the voxel offset; a 4D
    file with one volume is read as 3D."""
    nib = pytest.importorskip("nibabel")
    from LiverTumorSegLib.io import read_volume

    rng = np.random.default_rng(7)
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    cases = {
        "big_endian": nib.Nifti1Image(rng.integers(-1024, 2000, (9, 7, 5)).astype(">i2"), affine),
        "float": nib.Nifti1Image(rng.normal(0, 300, (9, 7, 5)).astype(np.float32), affine),
        "four_d": nib.Nifti1Image(rng.integers(-1024, 2000, (9, 7, 5, 1)).astype(np.int16), affine),
    }
    scaled = nib.Nifti1Image(rng.integers(0, 255, (9, 7, 5)).astype(np.uint8), affine)
    scaled.header.set_slope_inter(4.0, -1024.0)
    cases["scaled"] = scaled
    cases["nifti2"] = nib.Nifti2Image(rng.integers(-1024, 2000, (9, 7, 5)).astype(np.int16), affine)
    extended = nib.Nifti1Image(rng.integers(-1024, 2000, (9, 7, 5)).astype(np.int16), affine)
    extended.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"x" * 300))  # voxels after it
    cases["extension"] = extended
    for name, image in cases.items():
        path = tmp_path / f"{name}.nii.gz"
        nib.save(image, str(path))
        expected = np.asarray(nib.load(str(path)).get_fdata(dtype=np.float32)).reshape(9, 7, 5).T
        volume = read_volume(path)
        np.testing.assert_allclose(volume.array.astype(np.float32), expected, atol=1e-3, err_msg=name)


def test_inflate_to_end_counts_the_data_after_the_range_and_checks_the_trailer(tmp_path):
    """A range that stops before the stream's end left the rest unread: a file whose gzip trailer (CRC-32 and
    length) was cut off, or whose trailer's CRC was wrong, read as whole; data after the range went uncounted."""
    from LiverTumorSegLib.io.gzip_inflate import inflate_to_end

    whole = gzip.compress(PAYLOAD)
    path = tmp_path / "x.gz"
    path.write_bytes(whole)
    out, after = inflate_to_end(path, 100, 50_000)
    assert out.tobytes() == PAYLOAD[100:50_100] and after == 100_000 - 50_100
    assert inflate_to_end(path, 0, len(PAYLOAD), step=4096)[1] == 0
    two = tmp_path / "two.gz"
    two.write_bytes(gzip.compress(PAYLOAD[:30_000]) + gzip.compress(PAYLOAD[30_000:]))
    assert inflate_to_end(two, 0, 20_000, read_step=1000)[1] == 80_000
    padded = tmp_path / "padded.gz"
    padded.write_bytes(whole + bytes(700))  # zero padding after the last member: gzip skips it too
    assert inflate_to_end(padded, 0, len(PAYLOAD), read_step=256)[1] == 0
    assert gzip.decompress(whole) == PAYLOAD
    no_trailer = tmp_path / "no_trailer.gz"
    no_trailer.write_bytes(whole[:-8])
    assert inflate_range(no_trailer, 0, len(PAYLOAD)).tobytes() == PAYLOAD  # the range alone is all there
    with pytest.raises(InputError, match="ends before its end marker"):
        inflate_to_end(no_trailer, 0, len(PAYLOAD))
    bad_crc = tmp_path / "bad_crc.gz"
    bad_crc.write_bytes(whole[:-8] + bytes([whole[-8] ^ 0xFF]) + whole[-7:])
    with pytest.raises(gzip.BadGzipFile, match="CRC"):  # what Python's gzip says of it
        gzip.decompress(bad_crc.read_bytes())
    with pytest.raises(InputError, match="truncated or corrupt"):
        inflate_to_end(bad_crc, 0, len(PAYLOAD))


def test_inflate_to_end_allow_short_returns_what_an_intact_stream_holds(tmp_path):
    """For the NRRD / MetaImage check, which keeps the bytes it inflates and says itself how many are missing: an
    intact stream shorter than the range gives its bytes; a stream cut off is still refused."""
    from LiverTumorSegLib.io.gzip_inflate import inflate_to_end

    whole = gzip.compress(PAYLOAD)
    path = tmp_path / "x.gz"
    path.write_bytes(whole)
    out, after = inflate_to_end(path, 0, len(PAYLOAD) + 500, allow_short=True)
    assert out.tobytes() == PAYLOAD and after == 0
    out, after = inflate_to_end(path, 0, 60_000, step=4096, allow_short=True)
    assert out.tobytes() == PAYLOAD[:60_000] and after == 40_000
    with pytest.raises(InputError, match="ends after"):
        inflate_to_end(path, 0, len(PAYLOAD) + 500)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(whole[:-8])
    with pytest.raises(InputError, match="ends before its end marker"):
        inflate_to_end(cut, 0, len(PAYLOAD) + 500, allow_short=True)


def test_a_member_that_ends_after_an_output_limited_call_leaves_the_next_member_once(tmp_path):
    """At a member's end CPython's decompressobj puts the input left over in unused_data, and, when the call before
    stopped at its output limit (the range's end, or a step), a copy of it in unconsumed_tail too; both were taken,
    so the next member was inflated twice: 150000 bytes counted after a 20000-byte range of 100000, or a valid file
    refused with 'incorrect data check'."""
    from LiverTumorSegLib.io.gzip_inflate import inflate_to_end

    two = tmp_path / "two.gz"
    two.write_bytes(gzip.compress(PAYLOAD[:30_000]) + gzip.compress(PAYLOAD[30_000:]))
    out, after = inflate_to_end(two, 0, 20_000)
    assert out.tobytes() == PAYLOAD[:20_000] and after == 80_000
    assert inflate_to_end(two, 0, len(PAYLOAD), step=4096, read_step=100_000)[1] == 0
    assert inflate_range(two, 0, len(PAYLOAD), step=4096, read_step=100_000).tobytes() == PAYLOAD


@pytest.mark.parametrize("read_step", [1000, 1 << 24])
def test_inflate_one_stream_stops_at_the_first_streams_end_as_metaio_does(tmp_path, read_step):
    """For a compressed MetaImage: ITK inflates one zlib stream and ignores what follows its end, where
    inflate_to_end read on as if it were another gzip member (zlib's 'incorrect header check' on other bytes)."""
    from LiverTumorSegLib.io.gzip_inflate import inflate_one_stream, inflate_to_end

    stream = zlib.compress(PAYLOAD)
    path = tmp_path / "x.mha"
    for after_stream in (b"", b"not a stream\n" * 20, bytes(30), zlib.compress(b"another stream" * 9)):
        path.write_bytes(b"header\n" + stream + after_stream)
        out, after, length = inflate_one_stream(path, 60_000, start=7, step=4096, read_step=read_step)
        assert out.tobytes() == PAYLOAD[:60_000] and after == 40_000 and length == len(stream)
        out, after, length = inflate_one_stream(path, len(PAYLOAD) + 500, start=7, read_step=read_step)
        assert out.tobytes() == PAYLOAD and after == 0 and length == len(stream)  # short: the caller says so
    path.write_bytes(b"header\n" + stream + b"not a stream\n")
    with pytest.raises(InputError, match="incorrect header check"):  # as before for NRRD and NIfTI
        inflate_to_end(path, 0, 0, start=7)
    path.write_bytes(b"header\n" + stream[:-3])  # its Adler-32 cut short
    with pytest.raises(InputError, match="ends before its end marker"):
        inflate_one_stream(path, 0, start=7, read_step=read_step)
    damaged = bytearray(stream)
    damaged[len(damaged) // 2] ^= 0xFF
    path.write_bytes(b"header\n" + bytes(damaged) + b"not a stream\n")
    with pytest.raises(InputError, match="truncated or corrupt"):
        inflate_one_stream(path, 0, start=7, read_step=read_step)


def test_max_after_stops_inflating_once_that_much_is_known_to_follow_the_range(tmp_path):
    """Data after the range was inflated whole just to be counted: a .nii.gz with 48 GiB of zeros appended as a
    second gzip member took over 2 minutes to read. With max_after, inflating stops once more than that many
    bytes are known to follow (the count returned is then a lower bound); what lies beyond is not checked."""
    from LiverTumorSegLib.io.gzip_inflate import inflate_one_stream, inflate_to_end

    zeros = gzip.compress(bytes(4_000_000), compresslevel=1)  # 4 MB after the payload, in 4 kB of file
    path = tmp_path / "appended.gz"
    path.write_bytes(gzip.compress(PAYLOAD) + zeros)
    assert inflate_to_end(path, 0, 20_000, step=4096)[1] == 80_000 + 4_000_000  # the whole count, as before
    out, after = inflate_to_end(path, 0, 20_000, step=4096, max_after=100_000)
    assert out.tobytes() == PAYLOAD[:20_000] and 100_000 < after <= 100_000 + 4096
    out, after = inflate_to_end(path, 0, 20_000, step=4096, max_after=4_080_000)  # all of it fits: exact
    assert out.tobytes() == PAYLOAD[:20_000] and after == 4_080_000
    # the second member cut off beyond the limit: not reached, so not refused (the caller's warning says so)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(gzip.compress(PAYLOAD) + zeros[:-8])
    with pytest.raises(InputError, match="ends before its end marker"):
        inflate_to_end(cut, 0, 20_000)
    assert inflate_to_end(cut, 0, 20_000, step=4096, max_after=100_000)[1] <= 100_000 + 4096
    # one zlib stream (a compressed MetaImage's): the length is how far it was read, not its end
    stream = zlib.compress(PAYLOAD + bytes(4_000_000), 1)
    path.write_bytes(b"header\n" + stream)
    out, after, length = inflate_one_stream(path, 20_000, start=7, step=4096, max_after=100_000)
    assert out.tobytes() == PAYLOAD[:20_000] and 100_000 < after <= 100_000 + 4096 and length < len(stream)
    assert inflate_one_stream(path, 20_000, start=7, step=4096)[1:] == (4_080_000, len(stream))


def test_after_range_count_limit_is_the_voxels_size_at_least_64_mib():
    from LiverTumorSegLib.io.gzip_inflate import after_range_count_limit

    assert after_range_count_limit(0) == after_range_count_limit(1000) == 64 * 1024 * 1024
    assert after_range_count_limit(512 * 512 * 400 * 2) == 512 * 512 * 400 * 2


def _with_appended_zeros(path, suffix, zeros):
    """A 6 x 5 x 4 int16 CT written as ``suffix`` at ``path``, ``zeros`` zero bytes of inflated data after its
    voxels: a second gzip member (.nii.gz, gzip .nrrd), or the voxels' own zlib stream going on (.mha, whose
    reader inflates only the first stream)."""
    import re

    sitk = pytest.importorskip("SimpleITK")
    nib = pytest.importorskip("nibabel")
    ct = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # (z, y, x)
    if suffix == ".nii.gz":
        nib.save(nib.Nifti1Image(ct.T.copy(), np.eye(4)), str(path.with_suffix("")))
        path.write_bytes(gzip.compress(path.with_suffix("").read_bytes()) + gzip.compress(bytes(zeros), 1))
    elif suffix == ".nrrd":
        sitk.WriteImage(sitk.GetImageFromArray(ct), str(path), True)
        path.write_bytes(path.read_bytes() + gzip.compress(bytes(zeros), 1))
    else:
        sitk.WriteImage(sitk.GetImageFromArray(ct), str(path), True)
        head = path.read_bytes().split(b"ElementDataFile = LOCAL\n")[0] + b"ElementDataFile = LOCAL\n"
        stream = zlib.compress(ct.astype("<i2").tobytes() + bytes(zeros), 1)
        path.write_bytes(re.sub(rb"CompressedDataSize = \d+", b"CompressedDataSize = %d" % len(stream), head) + stream)
    return ct


@pytest.mark.parametrize("suffix, itk_reads", [(".nii.gz", False), (".nrrd", False), (".nrrd", True),
                                               (".mha", False)],
                         ids=[".nii.gz", ".nrrd", ".nrrd whose voxels ITK reads", ".mha"])
def test_the_readers_count_data_after_the_voxels_only_as_far_as_the_warning_needs(tmp_path, monkeypatch, suffix,
                                                                                  itk_reads):
    """48 GiB of zeros appended to a .nii.gz as a second gzip member took over 2 minutes to read (4 GiB: 3.9 s for
    .nii.gz, 4.3 s for a gzip .nrrd, 3.9 s for a .mha, for 240 bytes of voxels): all of it was inflated to be
    counted. Now the readers stop once more than after_range_count_limit bytes are known to follow (here made
    10000 bytes; 64 MiB or the voxels' size in use) and say "more than"."""
    import functools

    from LiverTumorSegLib.io import gzip_inflate

    monkeypatch.setattr(gzip_inflate, "AFTER_RANGE_COUNT_MIN_BYTES", 10_000, raising=False)  # (older code: none)
    counted = []
    for name in ("inflate_to_end", "inflate_one_stream"):
        def counting(*args, _real=getattr(gzip_inflate, name), **kwargs):
            result = _real(*args, **kwargs)
            counted.append(result[1])  # the bytes inflated after the range
            return result
        monkeypatch.setattr(gzip_inflate, name, functools.partial(counting, step=4096, read_step=4096))
    path = tmp_path / ("ct" + suffix)
    ct = _with_appended_zeros(path, suffix, 2_000_000)
    if itk_reads:  # a field the fast read does not take: the check inflates from the voxels' start, ITK reads them
        path.write_bytes(path.read_bytes().replace(b"encoding: gzip\n", b"encoding: gzip\nold min: 0\n", 1))
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.array, ct)
    voxels = 240 if itk_reads else 0  # counted after the range: the voxels too when they are not kept
    assert len(counted) == 1 and voxels + 10_000 < counted[0] <= voxels + 10_000 + 4096, counted  # not 2,000,000
    (warning,) = [w for w in volume.meta.get("warnings", []) if "after the" in w]
    assert warning == ("the file holds more than 10000 bytes after the 6 x 5 x 4 voxels its header describes (more "
                       "than 167 more slices; the rest of the file was not inflated or checked); they are not "
                       "read. If the header's slice count is wrong, export the CT again")
