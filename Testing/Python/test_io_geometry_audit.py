"""Geometry edge cases of the readers found by a geometry/file-format audit (tiny generated files only)."""
import numpy as np
import pytest

from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.io import read_volume

nib = pytest.importorskip("nibabel")


def _ct(shape_xyz=(8, 7, 5)):
    rng = np.random.default_rng(0)
    return rng.integers(-1000, 400, size=shape_xyz).astype(np.int16)


def _sheared_sform_nifti(path, pixdim_x=None):
    """A NIfTI whose sform (code 2) is sheared (slice axis 15 degrees off) beside a valid qform (code 1)."""
    qform = np.array([[-2.0, 0, 0, 40.0], [0, -2.0, 0, 30.0], [0, 0, 4.0, -20.0], [0, 0, 0, 1]])
    sform = qform.copy()
    sform[0, 2] = 4.0 * np.tan(np.radians(15))
    image = nib.Nifti1Image(_ct(), qform)
    image.set_qform(qform, code=1)
    image.set_sform(sform, code=2)
    if pixdim_x is not None:
        image.header["pixdim"][1] = pixdim_x
    nib.save(image, str(path))
    return qform


def test_sheared_sform_falls_back_to_the_qform_with_one_warning_that_says_so(tmp_path):
    path = tmp_path / "sheared_sform.nii"
    qform = _sheared_sform_nifti(path)
    volume = read_volume(path)
    expected = (-qform[0, 3], -qform[1, 3], qform[2, 3])  # RAS -> LPS
    assert volume.geometry.origin == pytest.approx(expected)
    assert volume.geometry.spacing == pytest.approx((2.0, 2.0, 4.0))
    warnings = volume.meta.get("warnings", [])
    # it said 'this tool follows the sform' and 'the sform was used' beside 'the qform was used instead'
    assert not any("sform was used" in w or "follows the sform" in w for w in warnings), warnings
    assert sum("qform was used" in w for w in warnings) == 1, warnings


def test_sheared_sform_with_a_zero_pixdim_is_refused_not_read_with_1_mm_voxels(tmp_path):
    path = tmp_path / "sheared_pixdim0.nii"
    _sheared_sform_nifti(path, pixdim_x=0.0)
    # the qform takes its spacing from pixdim, which nibabel turns from 0 into 1 mm: the CT was read with 1 mm
    # voxels instead of 2 mm (half its size) and no word about it
    with pytest.raises(InputError, match="invalid voxel spacing"):
        read_volume(path)


@pytest.mark.parametrize("sform_code", [2, 0])
def test_a_damaged_qform_quaternion_is_a_clear_error_or_a_warning_not_an_internal_error(tmp_path, sform_code):
    """A qform quaternion with b = -2.4e21 (b^2 + c^2 + d^2 > 1: no rotation) ended `preprocess` and `segment` in
    nibabel's "ValueError: w2 should be positive" (the fuzzing audit). With a valid sform the sform is used, as
    nibabel does, with a warning that ITK and Slicer may refuse or misplace the CT; without one the file is refused."""
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    image = nib.Nifti1Image(_ct(), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=sform_code)
    path = tmp_path / "ct.nii"
    nib.save(image, str(path))
    import struct

    data = bytearray(path.read_bytes())  # quatern_b is the float32 at byte 256 of a NIfTI-1 header
    data[256:260] = struct.pack("<f", -2.3611832414348226e21)
    path.write_bytes(bytes(data))
    if sform_code:
        volume = read_volume(path)
        assert np.allclose(volume.geometry.spacing, (3.0, 3.0, 3.0))
        assert any("qform is damaged" in w and "no rotation" in w for w in volume.meta.get("warnings", []))
    else:
        with pytest.raises(InputError, match="damaged qform orientation .*no rotation"):
            read_volume(path)


def _with_quatern_b(path, value):
    """The NIfTI-1 file ``path`` with its quatern_b (the float32 at byte 256 of the header) set to ``value``."""
    import struct

    data = bytearray(path.read_bytes())
    data[256:260] = struct.pack("<f", value)
    path.write_bytes(bytes(data))
    return path


def test_a_nan_qform_quaternion_beside_a_valid_sform_is_read_by_the_sform_with_a_warning(tmp_path):
    """NaN in the quaternion (not only b^2 + c^2 + d^2 > 1) is a damaged qform: the valid sform places the CT."""
    affine = np.array([[-3.0, 0, 0, 30.0], [0, 2.0, 0, -20.0], [0, 0, 4.0, 10.0], [0, 0, 0, 1]])
    image = nib.Nifti1Image(_ct(), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=2)
    path = tmp_path / "ct.nii"
    nib.save(image, str(path))
    volume = read_volume(_with_quatern_b(path, float("nan")))
    assert volume.geometry.spacing == pytest.approx((3.0, 2.0, 4.0))
    assert volume.geometry.origin == pytest.approx((-30.0, 20.0, 10.0))  # RAS (30, -20, 10) in LPS
    assert any("qform is damaged (its quaternion is not finite)" in w and "the sform was used" in w
               for w in volume.meta.get("warnings", [])), volume.meta.get("warnings")


@pytest.mark.parametrize("quatern_b,problem", [(-2.3611832414348226e21, "damaged qform orientation .*no rotation"),
                                               (float("nan"), "non-finite values .*in its qform")])
def test_a_sheared_sform_beside_a_damaged_qform_is_refused_saying_why_neither_places_it(tmp_path, quatern_b,
                                                                                       problem):
    """With a sheared sform the qform must place the CT: a damaged one is refused, and the message says the sform
    cannot stand in (it named only the qform, leaving the reader asking why the sform was not used)."""
    path = tmp_path / "ct.nii"
    _sheared_sform_nifti(path)
    with pytest.raises(InputError, match=problem + r".*the sform is sheared \(its voxel axes are not at right "):
        read_volume(_with_quatern_b(path, quatern_b))


@pytest.mark.parametrize("ndims", ["99", "65", "-3", "1000", "x"])
def test_a_metaimage_axis_count_itk_cannot_take_is_refused_before_itk_reads_it(tmp_path, ndims):
    """NDims 65-100 corrupted the heap inside ITK's MetaIO reader (glibc abort) and -3 or 1000 crashed it (SIGSEGV):
    every command died without a message (the fuzzing audit)."""
    from LiverTumorSegLib.io import read_header_geometry, read_label_map

    sitk = pytest.importorskip("SimpleITK")
    path = tmp_path / "ct.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16)), str(path))
    data = path.read_bytes()
    assert b"NDims = 3" in data
    path.write_bytes(data.replace(b"NDims = 3", b"NDims = " + ndims.encode(), 1))
    for read in (read_volume, read_label_map, read_header_geometry):
        with pytest.raises(InputError, match=f"NDims = {ndims}, not an axis count"):
            read(path)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_a_nifti_whose_voxels_start_inside_its_header_is_refused(tmp_path, suffix):
    """vox_offset 0 (nibabel takes it as it stands) read the 352 header bytes as voxels: the CT shifted by 176
    voxels and `segment` found a 236 mL liver instead of 1087 mL, exit 0 (the fuzzing audit)."""
    import gzip
    import struct

    from LiverTumorSegLib.io import read_label_map

    path = tmp_path / ("ct" + suffix)
    nib.save(nib.Nifti1Image(_ct(), np.diag([2.0, 2.0, 4.0, 1.0])), str(path))
    raw = bytearray(gzip.decompress(path.read_bytes()) if suffix == ".nii.gz" else path.read_bytes())
    raw[108:112] = struct.pack("<f", 0.0)  # vox_offset
    path.write_bytes(gzip.compress(bytes(raw)) if suffix == ".nii.gz" else bytes(raw))
    for read in (read_volume, read_label_map):
        with pytest.raises(InputError, match="voxels at byte 0 .*inside the 348-byte header"):
            read(path)


@pytest.mark.parametrize("spacing, origin", [((1e30, 2.0, 4.0), (0.0, 0.0, 0.0)), ((2.0, 2.0, 4.0), (1e7, 0.0, 0.0)),
                                             ((2.0, 2.0, 4.0), (0.0, -1e30, 0.0))])
def test_a_label_map_with_an_absurd_spacing_or_origin_is_refused(tmp_path, spacing, origin):
    """Label maps had no geometry bound: an origin of 1e308 hung followup's registration beyond SIGTERM, 1e7 gave
    3 mm RECIST axes for 27 mm ones, and a spacing of 1e308 ended measure in an internal error (the fuzzing audit; NIfTI stores float32, so 1e30 here)."""
    from LiverTumorSegLib.io import read_label_map

    affine = np.diag(list(spacing) + [1.0])
    affine[:3, 3] = origin
    path = tmp_path / "labels.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 7, 5), np.uint8), affine), str(path))
    with pytest.raises(InputError, match="the header is damaged"):
        read_label_map(path)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_a_nrrd_or_metaimage_without_spacing_says_1_mm_was_assumed(tmp_path, suffix):
    """Without `space directions` / `spacings` (NRRD) or `ElementSpacing` (MetaImage) ITK takes 1 mm voxels, and a
    1043 mL liver measured 38.6 mL without a word (the fuzzing audit)."""
    from LiverTumorSegLib.io import read_label_map

    sitk = pytest.importorskip("SimpleITK")
    path = tmp_path / ("labels" + suffix)
    image = sitk.GetImageFromArray(np.zeros((4, 5, 6), np.uint8))
    image.SetSpacing((2.0, 2.0, 4.0))
    sitk.WriteImage(image, str(path), False)
    assert not any("no voxel spacing" in w for w in read_label_map(path).meta.get("warnings", []))
    lines = path.read_bytes().split(b"\n")
    kept = [line for line in lines if not line.lower().startswith((b"space directions", b"spacings", b"elementspacing"))]
    assert len(kept) < len(lines)
    path.write_bytes(b"\n".join(kept))
    volume = read_label_map(path)
    assert volume.geometry.spacing == pytest.approx((1.0, 1.0, 1.0))
    assert any("no voxel spacing, so 1 mm voxels were assumed" in w for w in volume.meta.get("warnings", []))


@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "compressed"])
@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_a_nrrd_or_metaimage_holding_more_slices_than_its_header_says_is_warned_about(tmp_path, suffix, compressed):
    """A header edited from 30 to 15 slices read half the liver (287 of 1043 mL) without a word, where the NIfTI
    reader warns (the fuzzing audit). The raw case was warned about first; a gzip NRRD (encoding gzip) or a
    MetaImage with CompressedData still read the 4 of 8 slices without a word: the inflate counted the 240
    bytes after them, and nobody looked."""
    sitk = pytest.importorskip("SimpleITK")
    path = tmp_path / ("ct" + suffix)
    ct = _ct((6, 5, 8)).T.copy()  # (z, y, x) = (8, 5, 6)
    sitk.WriteImage(sitk.GetImageFromArray(ct), str(path), compressed)
    assert not any("after the" in w for w in read_volume(path).meta.get("warnings", []))
    data = path.read_bytes()
    assert (b"encoding: gzip" in data or b"CompressedData = True" in data) == compressed
    old, new = (b"sizes: 6 5 8", b"sizes: 6 5 4") if suffix == ".nrrd" else (b"DimSize = 6 5 8", b"DimSize = 6 5 4")
    assert old in data
    path.write_bytes(data.replace(old, new, 1))
    volume = read_volume(path)
    assert volume.shape_zyx == (4, 5, 6)
    np.testing.assert_array_equal(volume.array, ct[:4])
    (warning,) = [w for w in volume.meta.get("warnings", []) if "after the" in w]
    assert warning == ("the file holds 240 bytes after the 6 x 5 x 4 voxels its header describes (about 4 more "
                       "slices); they are not read. If the header's slice count is wrong, export the CT again")


def test_nrrd_header_lines_end_as_teem_ends_them_so_a_carriage_return_header_is_counted(tmp_path, monkeypatch):
    """ITK (teem) ends a header line at a lone carriage return too: a header of 40,000 'key:=value' lines separated
    by '\\r' alone was read by ITK in 7.8 s, and the key count saw one long line (0 keys), so the limit never
    applied. A '\\r\\n' split between two reads is one line end, not an empty line that would end the header."""
    from LiverTumorSegLib.io import itk

    head = [b"NRRD0004", b"type: short", b"dimension: 3", b"sizes: 2 2 2", b"endian: little", b"encoding: raw"]
    keys = [b"key%d:=value" % i for i in range(itk.MAX_NRRD_KEY_VALUES + 1)]
    path = tmp_path / "cr.nrrd"
    path.write_bytes(b"\r".join(head + keys) + b"\r\r" + bytes(16))
    assert sum(1 for _ in itk.nrrd_header_keys(path)) == itk.MAX_NRRD_KEY_VALUES + 1
    with pytest.raises(InputError, match="its NRRD header holds more than 25000 key/value entries"):
        read_volume(path)
    mixed = tmp_path / "mixed.nrrd"
    mixed.write_bytes(b"NRRD0004\r\ntype: short\ra:=1\r\nb:=2\nc:=3\r\r\nd:=after the header\n")
    for step in (1, 2, 3, 5, 65536):  # every place a read can end, the '\r' of '\r\n' last among them
        monkeypatch.setattr(itk, "_NRRD_HEADER_READ_BYTES", step)
        assert list(itk.nrrd_header_keys(mixed)) == ["a", "b", "c"], step


@pytest.mark.parametrize("data", [bytes(6000), b"x" * 6000, b"1" * 6000,
                                  b",".join(b"%d" % (i % 3) for i in range(6000)) + b"\n"],
                         ids=["binary voxels", "letters", "one 6000-digit number", "numbers joined by commas alone"])
@pytest.mark.parametrize("detached", [False, True])
def test_a_text_nrrd_whose_data_is_no_numbers_is_refused_before_itk_reads_it(tmp_path, monkeypatch, data, detached):
    """A NRRD whose header says 'encoding: ascii' over binary voxels (a header edited, or damaged) crashed the whole
    process inside SimpleITK 2.5's reader (segmentation fault, exit 139, no message; measure and evaluate of such
    a label map, segment of such a CT) once its data held more than a few thousand bytes. It is refused first; a
    text NRRD of numbers still reads. ITK splits text voxels at whitespace only: 6000 numbers joined by commas
    alone ('0,1,2') crashed it as one 6000-digit number did, though the check took the commas for separators."""
    import SimpleITK

    from LiverTumorSegLib.io import read_label_map

    head = b"NRRD0004\ntype: unsigned char\ndimension: 3\nsizes: 20 20 15\nspacings: 1 1 1\nencoding: ascii\n"
    path = tmp_path / ("labels.nhdr" if detached else "labels.nrrd")
    numbers = b" ".join(b"%d" % (i % 3) for i in range(6000)) + b"\n"
    for voxels in (numbers, data):
        if detached:
            (tmp_path / "labels.txt").write_bytes(voxels)
            path.write_bytes(head + b"data file: labels.txt\n")
        else:
            path.write_bytes(head + b"\n" + voxels)
        if voxels is numbers:
            assert read_label_map(path).array.sum() == sum(i % 3 for i in range(6000))

    def itk_reads_the_voxels(*args, **kwargs):
        raise AssertionError("ITK read the voxels (a segmentation fault in SimpleITK 2.5)")

    monkeypatch.setattr(SimpleITK.ImageFileReader, "Execute", itk_reads_the_voxels)
    for read in (read_volume, read_label_map):
        with pytest.raises(InputError, match=r"its header says the voxels are stored as text \(encoding: ascii\), "
                                             r"but labels\.(nrrd|txt) holds bytes that are no numbers"):
            read(path)


def _forbid_itk_header_parse(monkeypatch):
    """Make ITK's header parse fail the test: the check before it must refuse the file."""
    import SimpleITK

    def itk_parses(*args, **kwargs):
        raise AssertionError("ITK parsed the header")

    monkeypatch.setattr(SimpleITK.ImageFileReader, "ReadImageInformation", itk_parses)


def test_a_nrrd_header_with_more_key_value_entries_than_itk_parses_in_time_is_refused_before_itk(tmp_path,
                                                                                                  monkeypatch):
    """ITK's NRRD header parser looks each key up among those before it: 50,000 'key:=value' lines took 4 s,
    500,000 (a .seg.nrrd claiming 100,000 segments) minutes, before any check. The CT and label map readers
    (and the header-only read) now count them first, up to MAX_NRRD_KEY_VALUES."""
    from LiverTumorSegLib.io import read_header_geometry, read_label_map
    from LiverTumorSegLib.io.itk import MAX_NRRD_KEY_VALUES, check_nrrd_key_values

    assert MAX_NRRD_KEY_VALUES == 25_000
    head = b"NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2 2\nendian: little\nencoding: raw\nspacings: 1 1 1\n"
    path = tmp_path / "ct.nrrd"
    path.write_bytes(head + b"key:=value\n\n" + bytes(16))
    assert read_volume(path).shape_zyx == (2, 2, 2)
    keys = b"".join(b"key%d:=value\n" % i for i in range(MAX_NRRD_KEY_VALUES))
    path.write_bytes(head + keys + b"\n" + b"after:=the header\n")
    check_nrrd_key_values(path)  # the limit itself passes (ITK then parses it in about 1 s)
    path.write_bytes(head + keys + b"one:=more\n\n" + bytes(16))

    _forbid_itk_header_parse(monkeypatch)
    for read in (read_volume, read_label_map, read_header_geometry):
        with pytest.raises(InputError) as excinfo:
            read(path)
        assert str(excinfo.value) == (
            f"Cannot read '{path}': its NRRD header holds more than 25000 key/value entries ('key:=value' lines), "
            f"more than any image needs and more than ITK parses in reasonable time (its time grows with their "
            f"square: 500,000 took minutes); the header is damaged. Export the volume again.")


def test_a_nrrd_header_line_too_long_to_count_past_is_refused_before_itk(tmp_path, monkeypatch):
    """The key count stopped at a header line over 16 MiB, so 200,000 'key:=value' lines behind one long comment went
    to ITK, which parsed them for minutes (the file-safety audit). Such a line is refused; a .seg.nrrd's segment count
    reads the header the same way."""
    from LiverTumorSegLib.io import itk, read_label_map

    monkeypatch.setattr(itk, "_NRRD_HEADER_LINE_BYTES", 4096)  # the rule at a size a test writes quickly
    monkeypatch.setattr(itk, "_NRRD_HEADER_READ_BYTES", 1024)  # (a line is measured across reads, as 16 MiB ones are)
    head = b"NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2 2\nendian: little\nencoding: raw\nspacings: 1 1 1\n"
    path = tmp_path / "long.nrrd"
    path.write_bytes(head + b"# " + b"x" * 10000 + b"\n" + b"".join(b"k%d:=v\n" % i for i in range(100)) + b"\n"
                     + bytes(16))

    _forbid_itk_header_parse(monkeypatch)
    for read in (read_volume, read_label_map):
        with pytest.raises(InputError, match=r"its NRRD header holds a line longer than 0 MiB, which no image's "
                                             r"header needs; the header is damaged"):
            read(path)


@pytest.mark.parametrize("field, value", [("space directions", "(2,0,0) (0,2,0) none"), ("spacings", "2 2 nan")])
def test_a_nrrd_without_the_spacing_of_one_axis_says_1_mm_was_assumed_along_it(tmp_path, field, value):
    """`space directions: ... none` (or `spacings: ... nan`) for the slice axis: ITK takes 1 mm along it, and a CT
    of 3 mm slices was measured at a third of its volume without a word (the bad-input audit)."""
    from LiverTumorSegLib.io import read_label_map

    path = tmp_path / "labels.nrrd"
    header = ("NRRD0004\ntype: unsigned char\ndimension: 3\n" + ("space: left-posterior-superior\n"
              if field == "space directions" else "") + f"sizes: 6 5 4\n{field}: {value}\nencoding: raw\n\n")
    path.write_bytes(header.encode("ascii") + bytes(6 * 5 * 4))
    volume = read_label_map(path)
    assert volume.geometry.spacing == pytest.approx((2.0, 2.0, 1.0))
    notes = [w for w in volume.meta.get("warnings", []) if "no spacing along axis 3" in w]
    assert len(notes) == 1 and "1 mm was assumed" in notes[0]
    full = value.replace("none", "(0,0,3)").replace("nan", "3")
    path.write_bytes(path.read_bytes().replace(value.encode("ascii"), full.encode("ascii")))
    assert not any("spacing" in w for w in read_label_map(path).meta.get("warnings", []))


@pytest.mark.parametrize("suffix, field", [(".nrrd", "sizes"), (".mha", "DimSize")])
@pytest.mark.parametrize("sizes", ["6 5 1.5", "1e308 5 4", "6 18446744073709551617 4", "6 5 99999999999", "6 5 0x4"])
def test_a_size_that_is_no_whole_number_of_voxels_is_refused_before_itk_reads_it(tmp_path, suffix, field, sizes):
    """ITK read a NRRD 'sizes: 6 5 1.5' as 1 slice, '1e308' and 2^64 + 1 as 1 voxel, 99999999999 as 1215752191:
    a label map of 6 x 5 x 4 became one slice (or one row) of background, read without an error (a warning of bytes
    after the voxels at most), and `measure` reported no liver (the reader fuzzing audit). Such a size is refused."""
    from LiverTumorSegLib.io import read_header_geometry, read_label_map

    sitk = pytest.importorskip("SimpleITK")
    path = tmp_path / ("labels" + suffix)
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[1:3, 1:4, 1:5] = 1
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(path))
    writer.SetUseCompression(False)
    writer.Execute(sitk.GetImageFromArray(labels))
    data = path.read_bytes()
    written = f"{field}{': ' if suffix == '.nrrd' else ' = '}6 5 4".encode()
    assert written in data
    path.write_bytes(data.replace(written, written[:-5] + sizes.encode(), 1))
    for read in (read_volume, read_label_map, read_header_geometry):
        # ('0x4' in a MetaImage was refused before, as no finite number)
        with pytest.raises(InputError, match=rf"its header's {field} is '{sizes}', not 3 (whole numbers of voxels "
                                             rf"\(each 0..2147483647\)|finite numbers); the header is damaged"):
            read(path)


@pytest.mark.parametrize("matrix", ["100000 0 0 0 1 0 0 0 1", "18446744073709551617 0 0 0 1 0 0 0 1",
                                    "1e308 0 0 0 1 0 0 0 1"])
def test_a_metaimage_direction_matrix_that_scales_the_voxels_beyond_any_scanner_is_refused(tmp_path, matrix):
    """A TransformMatrix column of length 1e5 steps 1e5 x ElementSpacing mm (ITK's physical step): the reader moved
    that length into the spacing after the 1000 mm bound was checked on ElementSpacing alone, so a label map of
    80000 mm voxels (1.5e19 for 2^64 + 1) was read without a word; 1e308 was called a sheared grid 'up to 0 degrees
    off a right angle' (the reader fuzzing audit). The voxel step ITK takes is what is bounded now."""
    from LiverTumorSegLib.io import read_label_map

    sitk = pytest.importorskip("SimpleITK")
    path = tmp_path / "labels.mha"
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[1:3, 1:4, 1:5] = 1
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(path), False)
    data = path.read_bytes()
    assert b"TransformMatrix = 1 0 0 0 1 0 0 0 1" in data
    path.write_bytes(data.replace(b"TransformMatrix = 1 0 0 0 1 0 0 0 1", b"TransformMatrix = " + matrix.encode(), 1))
    for read in (read_volume, read_label_map):
        with pytest.raises(InputError, match=r"has voxel spacing \((100000|1\.\d+e\+19|inf), 1, 1\) mm .*no scanner's "
                                             r"image is 1000 mm a voxel.*the header is damaged"):
            read(path)


@pytest.mark.parametrize("vector", ["(1e308,0,0)", "(0,1e200,0)"])
def test_a_nrrd_space_direction_too_long_for_itk_is_refused_not_read_as_1_mm(tmp_path, vector):
    """ITK squares a NRRD space direction's coefficients for its length: (1e308,0,0) overflowed and the axis was read
    as 1 mm without a word (the reader fuzzing audit), where a length of 1e30 is refused as no scanner's spacing."""
    from LiverTumorSegLib.io import read_label_map

    path = tmp_path / "labels.nrrd"
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[1:3, 1:4, 1:5] = 1
    path.write_bytes(f"NRRD0004\ntype: uchar\ndimension: 3\nspace: left-posterior-superior\nsizes: 6 5 4\n"
                     f"space directions: {vector} (0,0.8,0) (0,0,2.5)\nkinds: domain domain domain\n"
                     f"encoding: raw\nspace origin: (0,0,0)\n\n".encode() + labels.tobytes())
    for read in (read_volume, read_label_map):
        with pytest.raises(InputError, match=r"has voxel spacing \(1e\+(308|200), 0\.8, 2\.5\) mm .*no scanner's "
                                             r"image is 1000 mm a voxel.*the header is damaged"):
            read(path)


def test_a_nifti_with_disagreeing_transforms_and_an_unknown_unit_code_is_read_in_mm(tmp_path):
    """xyzt_units with a bit nibabel knows no unit for (130 = mm + 128) made nibabel's get_xyzt_units raise KeyError
    where the reader keeps a CT's two disagreeing transforms for its outputs: an internal error (a traceback in the
    CLI) instead of the CT, which the geometry reader had read in mm like ITK (the reader fuzzing audit)."""
    from LiverTumorSegLib.io import read_label_map
    from LiverTumorSegLib.io.nifti import NIFTI_TRANSFORMS_KEY

    affine = np.diag([-2.0, -2.0, 4.0, 1.0])
    image = nib.Nifti1Image(_ct(), affine)
    image.set_sform(affine, code=2)
    moved = affine.copy()
    moved[0, 3] = 48.0
    image.set_qform(moved, code=1)
    path = tmp_path / "ct.nii"
    nib.save(image, str(path))
    data = bytearray(path.read_bytes())
    data[123] = 2 | 128  # xyzt_units: mm, and a bit of no unit
    path.write_bytes(bytes(data))
    volume = read_volume(path)
    assert np.allclose(volume.geometry.spacing, (2.0, 2.0, 4.0))
    assert volume.meta[NIFTI_TRANSFORMS_KEY]["unit"] == "mm"
    labels = tmp_path / "labels.nii"
    image = nib.Nifti1Image(np.zeros(_ct().shape, np.uint8), affine)
    nib.save(image, str(labels))
    data = bytearray(labels.read_bytes())
    data[123] = 2 | 128
    labels.write_bytes(bytes(data))
    assert read_label_map(labels).shape_zyx == volume.shape_zyx


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha"])
def test_a_voxel_spacing_below_any_scanner_is_refused(tmp_path, suffix):
    """A slice spacing of 1e-30 mm (a NIfTI sform, a MetaImage ElementSpacing of 1e-300) passed as positive: measure
    reported a liver of 1.6e-31 mL with exit 0, and segment ended in 'internal error: OverflowError' (the reader
    fuzzing audit). Spacing under 0.001 mm is refused as a damaged header, as spacing over 1000 mm is."""
    from LiverTumorSegLib.io import read_label_map

    labels = np.zeros((4, 5, 6), np.uint8)  # (z, y, x)
    labels[1:3, 1:4, 1:5] = 1
    path = tmp_path / ("labels" + suffix)
    if suffix == ".mha":
        sitk = pytest.importorskip("SimpleITK")
        image = sitk.GetImageFromArray(labels)
        image.SetSpacing((0.8, 0.8, 2.5))
        sitk.WriteImage(image, str(path), False)
        import re

        data, count = re.subn(rb"ElementSpacing = [^\n]*", b"ElementSpacing = 0.8 0.8 1e-300", path.read_bytes(), 1)
        assert count == 1
        path.write_bytes(data)
    else:
        affine = np.diag([-0.8, -0.8, 1e-30, 1.0])
        image = nib.Nifti1Image(labels.transpose(2, 1, 0), affine)
        image.set_sform(affine, code=1)
        image.set_qform(affine, code=0)
        nib.save(image, str(path))
    for read in (read_volume, read_label_map):
        with pytest.raises(InputError, match=r"has voxel spacing \(0\.8, 0\.8, 1e-(30|300)\) mm .*no scanner's image is "
                                             r"1000 mm a voxel \(or under 0\.001 mm\).*the header is damaged"):
            read(path)


def test_a_nrrd_without_space_is_read_as_lps_with_a_warning_and_its_pictures_draw_no_sides(tmp_path):
    """A NRRD with 'spacings' and no 'space' field says nothing of the patient's sides; ITK reads it as LPS. Stored
    right to left it was segmented mirrored (liver Dice 0) and its preview drew R and L as facts, without a word.
    It is read as ITK reads it, with a warning, and marked so that pictures draw no side letters."""
    from LiverTumorSegLib.volume import sides_unknown

    data = _ct((6, 5, 4))
    header = ("NRRD0004\ntype: short\ndimension: 3\nsizes: 6 5 4\nspacings: 3 2 1.5\nencoding: raw\n"
              "endian: little\n\n")
    path = tmp_path / "nospace.nrrd"
    path.write_bytes(header.encode("ascii") + np.ascontiguousarray(data.transpose(2, 1, 0)).astype("<i2").tobytes())
    volume = read_volume(path)
    assert volume.geometry.spacing == pytest.approx((3.0, 2.0, 1.5))
    np.testing.assert_allclose(volume.geometry.direction_matrix, np.eye(3))  # as ITK and 3D Slicer place it
    np.testing.assert_array_equal(volume.array, data.transpose(2, 1, 0))
    assert sides_unknown(volume)
    (said,) = [w for w in volume.meta["warnings"] if "'space'" in w]
    assert "no 'space' field" in said and "LPS" in said
    spaced = tmp_path / "lps.nrrd"  # the same file saying its space: no doubt
    spaced.write_bytes(header.replace("spacings: 3 2 1.5\n", "space: left-posterior-superior\nspace directions: "
                                      "(3,0,0) (0,2,0) (0,0,1.5)\n").encode("ascii")
                       + np.ascontiguousarray(data.transpose(2, 1, 0)).astype("<i2").tobytes())
    assert not sides_unknown(read_volume(spaced))
    # 'space: scanner-xyz' (and the 3D-handed spaces) name no patient side either: ITK reads them as LPS too, and a
    # CT written so with RAS directions was segmented mirrored without the warning (the input formats audit)
    for space in ("scanner-xyz", "3D-right-handed", "3D-left-handed", "3D right handed", "3Dlefthanded"):
        named = tmp_path / f"{space}.nrrd"
        named.write_bytes(header.replace("spacings: 3 2 1.5\n", f"space: {space}\nspace directions: "
                                         "(3,0,0) (0,2,0) (0,0,1.5)\n").encode("ascii")
                          + np.ascontiguousarray(data.transpose(2, 1, 0)).astype("<i2").tobytes())
        volume = read_volume(named)
        np.testing.assert_allclose(volume.geometry.direction_matrix, np.eye(3))
        assert sides_unknown(volume)
        (said,) = [w for w in volume.meta["warnings"] if "'space" in w]
        # in ITK's spelling ('3D right handed' is '3D-right-handed' to it; the review: other spellings went unwarned)
        itk_spelling = {"3D right handed": "3D-right-handed", "3Dlefthanded": "3D-left-handed"}.get(space, space)
        assert f"gives 'space: {itk_spelling}', which names no patient side" in said and "LPS" in said
    unknown_nifti = nib.Nifti1Image(data, np.eye(4))
    unknown_nifti.set_sform(None, code=0)
    unknown_nifti.set_qform(None, code=0)
    nib.save(unknown_nifti, str(tmp_path / "unknown.nii.gz"))
    assert sides_unknown(read_volume(tmp_path / "unknown.nii.gz"))  # the NIfTI case, as before


def test_a_bzip2_nrrd_is_named_as_such_and_a_nifti_named_nrrd_or_mha_is_told_to_be_renamed(tmp_path):
    """A valid NRRD with 'encoding: bzip2' (teem's unu writes it), which ITK's NrrdIO cannot read, was 'truncated or
    corrupt'; a NIfTI renamed .nrrd or .mha got no 'rename it' hint, which the NIfTI reader gives for the reverse
    (the input formats audit)."""
    import bz2
    import gzip

    from LiverTumorSegLib.errors import InputError

    data = (np.arange(4 * 5 * 6, dtype=np.int16) - 50).reshape(4, 5, 6)
    header = ("NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 6 5 4\n"
              "space directions: (1,0,0) (0,1,0) (0,0,2)\nendian: little\nencoding: {}\nspace origin: (0,0,0)\n\n")
    packed = tmp_path / "bz.nrrd"
    packed.write_bytes(header.format("bzip2").encode("ascii") + bz2.compress(data.astype("<i2").tobytes()))
    with pytest.raises(InputError, match=r"stored with bzip2 compression \(encoding: bzip2\).*Re-save it with gzip"):
        read_volume(packed)
    fine = tmp_path / "gz.nrrd"  # the same voxels gzip-encoded read
    fine.write_bytes(header.format("gzip").encode("ascii") + gzip.compress(data.astype("<i2").tobytes()))
    np.testing.assert_array_equal(read_volume(fine).array, data)
    nifti = nib.Nifti1Image(data.transpose(2, 1, 0), np.eye(4))
    for suffix in (".nrrd", ".mha"):
        renamed = tmp_path / f"ct{suffix}"
        nib.save(nifti, str(tmp_path / "ct.nii.gz"))
        (tmp_path / "ct.nii.gz").rename(renamed)
        with pytest.raises(InputError, match=r"not a valid \.(nrrd|mha) file .*rename it to \.nii\.gz"):
            read_volume(renamed)
