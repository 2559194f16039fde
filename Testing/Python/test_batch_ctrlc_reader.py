"""Ctrl-C during a batch while the reader thread reads the next CT: Python raises KeyboardInterrupt in the main
thread only, which then waited (leaving the reader's executor) for the read under way to end, 2-3 s for a
512 x 512 x 300 ``.nii.gz`` (more for larger CTs) before ``interrupted`` and exit 130. The batch now cancels a read
stop the reader's context holds (``progress.run_with_read_stop``), and the ``.nii.gz`` inflate checks it between
its steps. No timing is asserted: events and counted checks stand in for a slow read."""
import gzip
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from LiverTumorSegLib import io as io_module  # noqa: E402
from LiverTumorSegLib.errors import CancelledError  # noqa: E402
from LiverTumorSegLib.inference.batch import find_cases, segment_batch  # noqa: E402
from LiverTumorSegLib.inference.engine import SliceInferenceEngine  # noqa: E402
from LiverTumorSegLib.inference.segmenter import Segmenter  # noqa: E402
from LiverTumorSegLib.io import write_volume  # noqa: E402
from LiverTumorSegLib.io.gzip_inflate import inflate_range  # noqa: E402
from LiverTumorSegLib.phantom import make_phantom  # noqa: E402
from LiverTumorSegLib.progress import CancellationToken, raise_if_read_stopped, run_with_read_stop  # noqa: E402

from inference_helpers import oracle_package, oracle_predictor  # noqa: E402

LIMIT_S = 30.0


class _CancelledAfter(CancellationToken):
    """A token that reads as cancelled from its ``after``-th check on, counting the checks."""

    def __init__(self, after):
        super().__init__()
        self.after, self.checks = after, 0

    @property
    def is_cancelled(self):
        self.checks += 1
        return self.checks >= self.after


def _gz(tmp_path, nbytes=1 << 20):
    data = np.random.default_rng(0).integers(0, 4, nbytes, dtype=np.uint8).tobytes()
    path = tmp_path / "voxels.gz"
    path.write_bytes(gzip.compress(data, compresslevel=1))
    return path, data


def test_an_inflate_stops_at_its_next_step_once_its_read_stop_is_cancelled(tmp_path):
    path, data = _gz(tmp_path)
    token = _CancelledAfter(3)
    with pytest.raises(CancelledError):
        run_with_read_stop(token, inflate_range, path, 0, len(data), step=64 * 1024, read_step=64 * 1024)
    assert token.checks == 3  # stopped at the step the token was first seen cancelled, not at the end (16 steps)


def test_an_inflate_without_a_read_stop_or_with_one_not_cancelled_reads_everything(tmp_path):
    path, data = _gz(tmp_path)
    assert inflate_range(path, 0, len(data), step=64 * 1024).tobytes() == data  # the main thread's reads
    token = CancellationToken()
    got = run_with_read_stop(token, inflate_range, path, 0, len(data), step=64 * 1024)
    assert got.tobytes() == data
    token.cancel()
    raise_if_read_stopped()  # the read stop ended with run_with_read_stop: a later read here is not stopped by it



def _assert_a_stopped_read_is_cancelled_and_a_free_one_reads(path, shape_zyx):
    """read_volume(path) under a cancelled read stop raises CancelledError (not 'corrupt'); without one it reads."""
    token = CancellationToken()
    token.cancel()
    with pytest.raises(CancelledError) as caught:
        run_with_read_stop(token, io_module.read_volume, path)
    assert "corrupt" not in str(caught.value)
    assert io_module.read_volume(path).shape_zyx == shape_zyx


def test_a_stopped_nifti_read_says_it_was_stopped_not_that_the_file_is_corrupt(tmp_path):
    """read_volume of a .nii.gz whose read stop is cancelled (a batch's reader at Ctrl-C): the stop's CancelledError
    came out as "InputError: Cannot read '...': the file is truncated or corrupt (Cancelled: the CT read was
    stopped.)" of a sound file; a read without a stop reads it."""
    path = tmp_path / "ct.nii.gz"
    write_volume(path, make_phantom((8, 32, 32), (2.0, 2.0, 4.0), noise_hu=0.0).ct)
    _assert_a_stopped_read_is_cancelled_and_a_free_one_reads(path, (8, 32, 32))


@pytest.mark.parametrize("name", ["ct.nrrd", "ct.mha", "ct.nii"])
def test_a_compressed_nrrd_or_metaimage_read_is_stopped_too_and_an_uncompressed_one(tmp_path, name):
    """docs/cli.md said Ctrl-C stops a .nii.gz read only and waits for NRRD and MetaImage reads; a gzip NRRD's or
    a compressed MetaImage's voxels go through the same stoppable inflate (io.itk.check_deflated_data), so their read
    stops at its next inflate step too. An uncompressed file is read in steps that check the stop as well
    (io.gzip_inflate.read_range; it was read whole, and this test asserted so: test_read_stop_steps)."""
    import SimpleITK as sitk

    ct = make_phantom((8, 32, 32), (2.0, 2.0, 4.0), noise_hu=0.0).ct
    path = tmp_path / name
    sitk.WriteImage(sitk.GetImageFromArray(np.ascontiguousarray(ct.array)), str(path), True)  # compressed
    _assert_a_stopped_read_is_cancelled_and_a_free_one_reads(path, (8, 32, 32))


def _segmenter():
    return Segmenter(engine=SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=4,
                                                 batch_predictor=oracle_predictor))


def test_ctrl_c_during_a_case_stops_the_next_cts_read_under_way_instead_of_waiting_for_it(tmp_path, monkeypatch):
    """Case 1's network interrupted (KeyboardInterrupt on the main thread) while the reader reads case 2: the read
    is stopped at its next step (it polls its read stop here, as the inflate does between steps); before, the batch
    waited for the read to run to its end."""
    torch.manual_seed(0)
    cts = tmp_path / "cts"
    cts.mkdir()
    for i in range(2):
        write_volume(cts / f"ct_{i}.nii.gz", make_phantom((8 + i, 32, 32), (2.0, 2.0, 4.0), noise_hu=0.0).ct)
    real_read = io_module.read_volume
    reading, interrupted = threading.Event(), threading.Event()
    seen = {"stopped": False, "polls": 0}

    def read_volume(path, *args, **kwargs):
        if "ct_1" not in str(path):
            return real_read(path, *args, **kwargs)
        reading.set()
        assert interrupted.wait(LIMIT_S)
        for _ in range(200):  # a slow read's steps; without the stop it ran all of them, then returned
            seen["polls"] += 1
            try:
                raise_if_read_stopped()
            except CancelledError:
                seen["stopped"] = True
                raise
            threading.Event().wait(0.01)
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(io_module, "read_volume", read_volume)
    segmenter = _segmenter()

    def predict(volume, *args, **kwargs):
        assert reading.wait(LIMIT_S)  # case 2's read is under way
        interrupted.set()
        raise KeyboardInterrupt

    monkeypatch.setattr(segmenter, "predict", predict)
    result = {}

    def run():
        try:
            result["statuses"] = segment_batch(find_cases(cts, tmp_path / "out"), segmenter)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(LIMIT_S)
    assert not thread.is_alive()
    assert isinstance(result.get("error"), KeyboardInterrupt)
    assert seen["stopped"], f"the read ran all its {seen['polls']} steps"
    assert seen["polls"] == 1  # the stop was set before the main thread waited for the reader
    assert not list((tmp_path / "out").glob("*.nii.gz"))  # no label map of an interrupted case


def test_ctrl_c_while_the_previous_case_is_finished_says_that_case_is_finished_first(tmp_path, monkeypatch):
    """Ctrl-C during case 2's network while case 1 is post-processed and written on the finishing thread: the batch
    waits for that finish (2.5 s measured on a 512 x 512 x 300 CT, its outputs whole) and said nothing in those
    seconds; now it names the case it finishes first. The finish here waits until the line is logged."""
    import logging

    torch.manual_seed(0)
    cts = tmp_path / "cts"
    cts.mkdir()
    for i in range(2):
        write_volume(cts / f"ct_{i}.nii.gz", make_phantom((8 + i, 32, 32), (2.0, 2.0, 4.0), noise_hu=0.0).ct)
    segmenter = _segmenter()
    said = threading.Event()
    lines = []

    class _Said(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())
            if record.getMessage().startswith("stopping:"):
                said.set()

    real_finish, real_predict = segmenter.finish, segmenter.predict
    finishing = threading.Event()

    def finish(volume, output, *args, **kwargs):
        finishing.set()
        said.wait(10.0)  # still under way when the main thread is interrupted; without the line, 10 s more
        return real_finish(volume, output, *args, **kwargs)

    def predict(volume, *args, **kwargs):
        if volume.shape_zyx[0] == 9:  # case 2's network, case 1 being finished
            assert finishing.wait(LIMIT_S)
            raise KeyboardInterrupt
        return real_predict(volume, *args, **kwargs)

    monkeypatch.setattr(segmenter, "finish", finish)
    monkeypatch.setattr(segmenter, "predict", predict)
    handler = _Said()
    batch_log = logging.getLogger("LiverTumorSegLib.inference.batch")
    batch_log.addHandler(handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            segment_batch(find_cases(cts, tmp_path / "out"), segmenter)
    finally:
        batch_log.removeHandler(handler)
    assert said.is_set(), lines
    assert [line for line in lines if line.startswith("stopping:")] == [
        "stopping: case ct_0 is finished first (its post-processing, then its report and label map written: "
        "seconds), then the run ends"]
    assert io_module.read_volume(tmp_path / "out" / "ct_0.nii.gz").shape_zyx == (8, 32, 32)  # whole
    assert not (tmp_path / "out" / "ct_1.nii.gz").exists()
