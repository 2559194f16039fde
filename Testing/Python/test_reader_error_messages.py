"""Error messages of the readers and the case list that named the wrong fault (the bad-input audit of 27 Nov
2026). Tiny generated files; each message must say what is wrong with the file."""
import gzip
import warnings

import nibabel as nib
import numpy as np
import pytest

from LiverTumorSegLib.cli import main
from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.io import read_volume


def _nifti(path, shape=(6, 5, 4)):
    nib.save(nib.Nifti1Image(np.full(shape, -1000, np.int16), np.diag([2.0, 2.0, 3.0, 1.0])), str(path))
    return path


def _metaimage(path, spacing="2 2 3", data_file="LOCAL", voxels=True):
    header = (f"ObjectType = Image\nNDims = 3\nDimSize = 6 5 4\nElementSpacing = {spacing}\n"
              f"ElementType = MET_SHORT\nElementDataFile = {data_file}\n")
    path.write_bytes(header.encode("ascii") + (bytes(6 * 5 * 4 * 2) if voxels and data_file == "LOCAL" else b""))
    return path


def test_a_metaimage_field_with_too_few_values_is_named_and_itk_prints_nothing(tmp_path, capfd):
    """`ElementSpacing = 3 3` with NDims 3: MetaIO printed four lines ('ElementDataFile required and not
    defined', ...) and the error named neither the field nor the fault."""
    path = _metaimage(tmp_path / "ct.mha", spacing="2 2")
    with pytest.raises(InputError, match=r"ElementSpacing has 2 value\(s\) for NDims = 3 \(3 needed\)"):
        read_volume(path)
    captured = capfd.readouterr()
    assert "MetaObject" not in captured.err + captured.out and "ElementDataFile" not in captured.err + captured.out
    assert read_volume(_metaimage(tmp_path / "ok.mha")).geometry.spacing == pytest.approx((2.0, 2.0, 3.0))


def test_a_metaimage_whose_data_file_is_missing_names_that_file(tmp_path):
    """A .mhd whose .raw was left behind was 'truncated ... the file holds 0 bytes'."""
    path = _metaimage(tmp_path / "ct.mhd", data_file="ct.raw")
    with pytest.raises(InputError, match=r"its voxels are in the data file 'ct\.raw' its header names, which is not "
                                         r"there .*Keep the header and its data file together"):
        read_volume(path)
    (tmp_path / "ct.raw").write_bytes(bytes(6 * 5 * 4 * 2))
    assert read_volume(path).array.shape == (4, 5, 6)


def _detached_nrrd(path, data_file="ct.raw"):
    """A detached NRRD header (6 x 5 x 4 int16 voxels of 2 x 2 x 3 mm, LPS) naming ``data_file``."""
    path.write_bytes(("NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 6 5 4\n"
                      "space directions: (2,0,0) (0,2,0) (0,0,3)\nendian: little\nencoding: raw\n"
                      f"data file: {data_file}\n").encode("ascii"))
    return path


def test_a_detached_nrrd_whose_data_file_is_missing_names_that_file_as_a_metaimage_does(tmp_path):
    """A .nhdr whose .raw was left behind was 'not a valid .nhdr file (couldn't open ...)' and, for the header
    reader, 'Cannot read the header of ct.nhdr', where the header is fine (ITK's NRRD reader opens the data file
    while reading the header); a .mhd is told which file to copy."""
    from LiverTumorSegLib.io import read_header_geometry, read_label_map

    path = _detached_nrrd(tmp_path / "ct.nhdr")
    for read in (read_volume, read_label_map, read_header_geometry):
        with pytest.raises(InputError, match=r"its voxels are in the data file 'ct\.raw' its header names, which is "
                                             r"not there .*Keep the header and its data file together") as refused:
            read(path)
        assert "not a valid" not in str(refused.value) and "Cannot read the header" not in str(refused.value)
    (tmp_path / "ct.raw").write_bytes(np.full(6 * 5 * 4, -1000, "<i2").tobytes())
    volume = read_volume(path)
    assert volume.array.shape == (4, 5, 6) and volume.geometry.spacing == pytest.approx((2.0, 2.0, 3.0))
    assert int(volume.array.min()) == -1000


def test_a_metaimage_header_size_that_is_no_number_is_named_not_called_unreadable(tmp_path, capfd):
    """`HeaderSize = abc`: MetaIO failed the header read with 'File cannot be read ... for reading' (as for a file
    without read permission) and printed four lines of its own; the header reader said 'Cannot read the header'."""
    from LiverTumorSegLib.io import read_header_geometry, read_label_map

    path = tmp_path / "ct.mha"
    good = _metaimage(path).read_bytes()
    path.write_bytes(good.replace(b"ElementType", b"HeaderSize = abc\nElementType", 1))
    for read in (read_volume, read_label_map, read_header_geometry):
        with pytest.raises(InputError, match=r"its HeaderSize \(abc\) is not a byte count") as refused:
            read(path)
        assert "cannot be read" not in str(refused.value)
    captured = capfd.readouterr()
    assert "MetaImage" not in captured.err + captured.out and "DimSize" not in captured.err + captured.out


def test_a_nifti_data_offset_past_the_end_of_the_file_is_not_a_negative_byte_count(tmp_path):
    path = _nifti(tmp_path / "ct.nii")
    raw = bytearray(path.read_bytes())
    raw[108:112] = np.float32(10000.0).tobytes()  # vox_offset
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError) as error:
        read_volume(path)
    text = str(error.value)
    assert "past the end of the file" in text and "holds -" not in text


def test_the_header_probe_before_the_error_prints_no_nibabel_warning(tmp_path):
    """A gzipped NIfTI named .nii: the probe that looks for a damaged qform read the compressed bytes as a header,
    and nibabel's 'Extension size is not a multiple of 16 bytes' reached the console before the error that says
    to rename the file. Here the probe gets such bytes on purpose (extension flag 1, size 17)."""
    from LiverTumorSegLib.io.nifti import _qform_problem_of_file

    raw = bytearray(_nifti(tmp_path / "plain.nii").read_bytes())
    raw[108:112] = np.float32(400.0).tobytes()  # vox_offset: room for an extension after the 352-byte header
    raw[348:360] = bytes([1, 0, 0, 0]) + np.int32(17).tobytes() + np.int32(0).tobytes()
    odd = tmp_path / "odd.nii"
    odd.write_bytes(bytes(raw))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _qform_problem_of_file(odd)
    assert [str(w.message) for w in caught] == []
    renamed = tmp_path / "ct.nii"
    renamed.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(InputError, match="rename it to .nii.gz"):
        read_volume(renamed)


def test_a_case_list_with_a_header_and_no_rows_says_it_lists_no_cases(tmp_path, capsys):
    """It was told it needed 'a header with an image column', which it has."""
    listing = tmp_path / "cases.csv"
    listing.write_text("image,case_id\n")
    code = main(["segment", str(listing), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "lists no cases: add one row per CT under its header (image, case_id)" in err, err
    listing.write_text("case_id\nA\n")
    assert main(["segment", str(listing), "-o", str(tmp_path / "out")]) == 2
    assert "needs a header with an 'image' column" in capsys.readouterr().err
    # a newcomer's 'ct' column: the message named 'case_id' alone (the 'case' column a train CSV names its cases with
    # is read too) and not the header it found (the researcher-journey audit)
    listing.write_text("ct,case\nct1.nii.gz,A\n")
    assert main(["segment", str(listing), "-o", str(tmp_path / "out")]) == 2
    assert "(and optionally 'case_id' or 'case'), one CT per row; found ['ct', 'case']." in capsys.readouterr().err
