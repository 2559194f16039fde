"""Ctrl-C during an uncompressed or DICOM read. The uncompressed NIfTI, NRRD and MetaImage voxels were read in one
call (nibabel's, ITK's) and a DICOM series by one ITK call, so a batch's reader thread stopped by Ctrl-C
(``progress.run_with_read_stop``) and the main thread's Ctrl-C waited for the whole read (0.3-1.1 s for a
512 x 512 x 300 CT measured, more from a slow disk). Now the uncompressed voxels are read in steps
(``io.gzip_inflate.read_range``) and a DICOM read checks its stop between the files it lists and, through ITK's
progress events, between the files ITK reads. The stop is set programmatically; no timing is asserted."""
import numpy as np
import pytest
import SimpleITK as sitk

from LiverTumorSegLib.errors import CancelledError, InputError
from LiverTumorSegLib.io import read_volume
from LiverTumorSegLib.io.gzip_inflate import read_range
from LiverTumorSegLib.progress import CancellationToken, run_with_read_stop

from test_batch_ctrlc_reader import _CancelledAfter
from test_io import UID_A, write_dicom_series


def _ct(shape=(6, 20, 24), seed=0):
    return np.random.default_rng(seed).integers(-1024, 2000, size=shape).astype(np.int16)


def test_a_range_read_stops_at_its_next_step_once_its_read_stop_is_cancelled(tmp_path):
    data = np.random.default_rng(1).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
    path = tmp_path / "voxels.raw"
    path.write_bytes(b"header" + data)
    token = _CancelledAfter(3)
    with pytest.raises(CancelledError):
        run_with_read_stop(token, read_range, path, 6, len(data), step=64 * 1024)
    assert token.checks == 3  # stopped at the step it was first seen cancelled, not after all 16
    assert read_range(path, 6, len(data), step=64 * 1024).tobytes() == data  # no stop set: read whole
    assert run_with_read_stop(CancellationToken(), read_range, path, 6, len(data), step=4096).tobytes() == data
    with pytest.raises(InputError, match="truncated or corrupt.*ends after"):
        read_range(path, 6, len(data) + 10, step=64 * 1024)


def _write(path, array, spacing=(0.7, 0.8, 2.5), origin=(-10.0, 20.0, 30.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path), False)  # uncompressed
    return image


@pytest.mark.parametrize("name", ["ct.nrrd", "ct.mha", "ct.nii", "ct.nhdr", "ct.mhd"])
def test_an_uncompressed_read_is_stopped_by_its_read_stop(tmp_path, name):
    """A batch's reader at Ctrl-C: the uncompressed read was waited for to its end (the earlier test asserted that
    a .nii was read whole under a cancelled stop); now it stops, saying so, not that the file is corrupt."""
    array = _ct()
    _write(tmp_path / name, array)
    token = CancellationToken()
    token.cancel()
    with pytest.raises(CancelledError) as caught:
        run_with_read_stop(token, read_volume, tmp_path / name)
    assert "corrupt" not in str(caught.value)


@pytest.mark.parametrize("name", ["ct.nrrd", "ct.mha", "ct.nii", "ct.nhdr", "ct.mhd"])
@pytest.mark.parametrize("dtype", ["<i2", ">i2", "<f4", ">u2", "u1"])
def test_an_uncompressed_read_in_steps_gives_the_voxels_and_grid_itk_reads(tmp_path, name, dtype, monkeypatch):
    """The steps give what ITK's (and nibabel's) one-call read gave: values, byte order and geometry."""
    from LiverTumorSegLib.io import gzip_inflate

    ct = _ct(seed=3)
    array = (ct % 256).astype(np.uint8) if dtype == "u1" else np.abs(ct).astype(np.dtype(dtype).newbyteorder("="))
    steps = []
    monkeypatch.setattr(gzip_inflate, "read_range", lambda *a, **k: steps.append(a) or read_range(*a, **k))
    path = tmp_path / name
    _write(path, array)
    if name.endswith((".nrrd", ".nhdr", ".mha", ".mhd")) and dtype.startswith(">"):  # big-endian voxels on disk
        path = tmp_path / ("big" + path.suffix)
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((0.7, 0.8, 2.5))
        image.SetOrigin((-10.0, 20.0, 30.0))
        writer_io = "NrrdImageIO" if "nr" in name or "nh" in name else "MetaImageIO"
        sitk.WriteImage(image, str(path), False, imageIO=writer_io)
        if writer_io == "NrrdImageIO":  # ITK writes the machine's order; a header and data of the other order
            _rewrite_nrrd_big_endian(path, array)
        else:
            _rewrite_metaimage_big_endian(path, array)
    volume = read_volume(path)
    assert len(steps) == 1  # read in steps, not by ITK or nibabel
    expected = sitk.ReadImage(str(path))
    np.testing.assert_array_equal(volume.array.astype(np.float64), sitk.GetArrayFromImage(expected).astype(np.float64))
    np.testing.assert_allclose(volume.geometry.spacing, expected.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(np.abs(volume.geometry.origin), np.abs(expected.GetOrigin()), atol=1e-4)


def _rewrite_nrrd_big_endian(path, array):
    """``path`` (a .nrrd or .nhdr ITK wrote) rewritten with big-endian voxels and ``endian: big``."""
    if path.suffix == ".nhdr":
        text = path.read_text()
        data_name = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("data file"))
        (path.parent / data_name).write_bytes(array.astype(array.dtype.newbyteorder(">")).tobytes())
        path.write_text(text.replace("endian: little", "endian: big"))
        return
    raw = path.read_bytes()
    head = raw[:raw.index(b"\n\n") + 2]
    path.write_bytes(head.replace(b"endian: little", b"endian: big") + array.astype(array.dtype.newbyteorder(">"))
                     .tobytes())


def _rewrite_metaimage_big_endian(path, array):
    """``path`` (a .mha or .mhd ITK wrote) rewritten with big-endian voxels and ``ElementByteOrderMSB = True``."""
    big = array.astype(array.dtype.newbyteorder(">")).tobytes()
    if path.suffix == ".mhd":
        text = path.read_text()
        data_name = text.strip().splitlines()[-1].split("=", 1)[1].strip()
        (path.parent / data_name).write_bytes(big)
        path.write_text(text.replace("ElementByteOrderMSB = False", "ElementByteOrderMSB = True")
                        .replace("BinaryDataByteOrderMSB = False", "BinaryDataByteOrderMSB = True"))
        return
    raw = path.read_bytes()
    head = raw[:len(raw) - array.nbytes]
    path.write_bytes(head.replace(b"ElementByteOrderMSB = False", b"ElementByteOrderMSB = True")
                     .replace(b"BinaryDataByteOrderMSB = False", b"BinaryDataByteOrderMSB = True") + big)


def test_a_dicom_folder_read_checks_its_stop_between_the_files_it_lists(tmp_path):
    """The listing reads each file's header (300 files: about 0.13-0.4 s): a stop seen at the second file ends the
    read there; before, nothing checked the stop and the whole series was read."""
    write_dicom_series(tmp_path / "dcm", _ct((6, 8, 10)).clip(0, 1500), UID_A, "abdomen")
    token = _CancelledAfter(2)
    with pytest.raises(CancelledError):
        run_with_read_stop(token, read_volume, tmp_path / "dcm")
    assert token.checks == 2


def test_a_dicom_series_read_by_itk_is_aborted_between_its_files_once_its_stop_is_cancelled(tmp_path, monkeypatch):
    """The stop is cancelled once ITK's series read has begun: ITK's next progress event (a file read) aborts it and
    the read says it was stopped, not that the series is damaged; the reader keeps no command (a cycle that held
    its image). Before, ITK read every file and the read returned the CT."""
    stored = _ct((6, 8, 10), seed=2).clip(0, 1500)
    write_dicom_series(tmp_path / "dcm", stored, UID_A, "abdomen")
    token = CancellationToken()
    readers = []
    real_execute = sitk.ImageSeriesReader.Execute

    def execute(self, *args, **kwargs):
        readers.append(self)
        token.cancel()  # Ctrl-C once ITK's read is under way
        return real_execute(self, *args, **kwargs)

    monkeypatch.setattr(sitk.ImageSeriesReader, "Execute", execute)
    with pytest.raises(CancelledError) as caught:
        run_with_read_stop(token, read_volume, tmp_path / "dcm")
    assert "corrupt" not in str(caught.value) and "Cannot read" not in str(caught.value)
    assert readers and not readers[0].HasCommand(sitk.sitkProgressEvent)
    monkeypatch.undo()
    volume = run_with_read_stop(CancellationToken(), read_volume, tmp_path / "dcm")  # not cancelled: read whole
    assert np.array_equal(volume.array, stored.astype(np.int32) * 2 - 1024)


def test_a_dicom_series_read_on_the_main_thread_ends_at_ctrl_c_between_its_files(tmp_path, monkeypatch):
    """A single CT's read runs on the main thread, where Ctrl-C is raised only once ITK's series read (one call into
    C) returns: 0.5-1.2 s after Ctrl-C for 300 files. ITK now reads on a helper thread whose read stop the main
    thread cancels at Ctrl-C (simulated here with _thread.interrupt_main once ITK's read is under way): the read ends
    at its next file, waited for, and the KeyboardInterrupt goes on, with no traceback of ITK's callback."""
    import _thread
    import threading

    from LiverTumorSegLib.progress import current_read_stop

    write_dicom_series(tmp_path / "dcm", _ct((6, 8, 10), seed=4).clip(0, 1500), UID_A, "abdomen")
    real_execute = sitk.ImageSeriesReader.Execute
    seen = {}

    def execute(self, *args, **kwargs):
        token = current_read_stop()
        seen["thread"], seen["stop"] = threading.current_thread(), token
        assert token is not None, "ITK's read ran with no read stop (on the main thread)"
        _thread.interrupt_main()  # Ctrl-C once ITK's read is under way
        assert _wait_until(lambda: token.is_cancelled)
        try:
            return real_execute(self, *args, **kwargs)
        except BaseException as exc:
            seen["error"] = exc
            raise

    monkeypatch.setattr(sitk.ImageSeriesReader, "Execute", execute)
    with pytest.raises(KeyboardInterrupt):
        read_volume(tmp_path / "dcm")
    assert seen["thread"] is not threading.main_thread()
    assert "AbortGenerateData" in str(seen.get("error"))  # ITK's read was aborted (and waited for), not run to its end
    monkeypatch.undo()
    assert read_volume(tmp_path / "dcm").shape_zyx == (6, 8, 10)  # read whole without Ctrl-C


def _wait_until(condition, limit_s=30.0):
    import time

    end = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True
