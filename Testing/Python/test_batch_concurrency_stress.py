"""Stress tests of the batch's reader / network / finisher threads (``segment_batch``): the reader's early
network-grid copy waits for the running case's memory estimate (``batch.RunningNetworkMemory``), and a case that
does not fit beside the next read waits for it (``batch._check_beside_the_next_read``). A hang or a lost case in an
overnight batch is the worst outcome, so each run here is made in a thread with a hard time limit: a deadlock fails
the test instead of hanging the suite."""
import contextlib
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from LiverTumorSegLib import validation  # noqa: E402
from LiverTumorSegLib.errors import ResourceError  # noqa: E402
from LiverTumorSegLib.inference import batch as batch_module  # noqa: E402
from LiverTumorSegLib.inference.batch import RunningNetworkMemory, find_cases, segment_batch  # noqa: E402
from LiverTumorSegLib.inference.engine import SliceInferenceEngine  # noqa: E402
from LiverTumorSegLib.inference.segmenter import Segmenter  # noqa: E402
from LiverTumorSegLib.io import write_volume  # noqa: E402
from LiverTumorSegLib.phantom import PhantomLesion, make_phantom  # noqa: E402

from inference_helpers import oracle_package, oracle_predictor  # noqa: E402

LIMIT_S = 30.0


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(1)


def _write_cts(folder, count):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        lesion = PhantomLesion(center_zyx=(4.0, 14.0, 12.0), radius_mm=4.0, hu=15.0)
        ph = make_phantom((8 + i, 32, 32), (2.0, 2.0, 4.0), lesions=[lesion], noise_hu=0.0)
        write_volume(folder / f"ct_{i}.nii.gz", ph.ct)
    return folder


def _segmenter():
    return Segmenter(engine=SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=4,
                                                 batch_predictor=oracle_predictor))


def _run_with_limit(cases, segmenter, **kwargs):
    """``segment_batch`` on a thread of its own: (statuses, exception); fails when it has not ended in LIMIT_S."""
    result = {}

    def run():
        try:
            result["statuses"] = segment_batch(cases, segmenter, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(LIMIT_S)
    assert not thread.is_alive(), "segment_batch hung (a thread waits for something that never comes)"
    return result.get("statuses"), result.get("error")


def _slices(volume):
    return int(volume.shape_zyx[0])


def _record_preparations_on_the_reader(monkeypatch):
    """The slice counts of the CTs the batch's reader thread prepares for the network ahead of their turn (a list
    filled as it runs): ``prepared_input.prepare_input`` wrapped for the test."""
    from LiverTumorSegLib.inference import prepared_input

    prepared_on_reader = []
    real_prepare = prepared_input.prepare_input

    def prepare(volume, config):
        if threading.current_thread().name.startswith("ct-reader"):
            prepared_on_reader.append(_slices(volume))
        return real_prepare(volume, config)

    monkeypatch.setattr(prepared_input, "prepare_input", prepare)
    return prepared_on_reader


def test_a_mixed_batch_with_done_unreadable_failing_and_memory_tight_cases_ends_with_every_case(tmp_path, monkeypatch):
    """Cases done by an earlier run interleaved with new ones, an unreadable CT, a network failure, a finish that
    fails, and cases that do not fit beside the next read (the check publishes None and waits for it): every case
    has its status, each new one once, and the batch ends."""
    cts = _write_cts(tmp_path / "cts", 8)
    out = tmp_path / "out"
    cases = find_cases(cts, out)
    first = _run_with_limit([cases[1], cases[4]], _segmenter())[0]
    assert [s.status for s in first] == ["done", "done"]
    (cts / "ct_3.nii.gz").write_bytes(b"not a CT at all")  # its read fails
    segmenter = _segmenter()
    real_check = validation.check_network_memory

    def check(volume, *args, **kwargs):
        # the network's check refuses the case beside an unfinished read (each second case), so it waits for it
        if kwargs.get("pending_bytes") and _slices(volume) % 2 == 0 and not \
                threading.current_thread().name.startswith("ct-reader"):
            raise ResourceError("not beside the read (test)")
        return real_check(volume, *args, **kwargs)

    real_predict = segmenter.predict

    def predict(volume, *args, **kwargs):
        if _slices(volume) == 8 + 5:
            raise RuntimeError("the network failed (test)")
        return real_predict(volume, *args, **kwargs)

    real_finish = batch_module._finish_and_write_case

    def finish(case, *args, **kwargs):
        if case.case_id == "ct_6":
            raise OSError("disk full (test)")
        return real_finish(case, *args, **kwargs)

    monkeypatch.setattr(validation, "check_network_memory", check)
    monkeypatch.setattr(segmenter, "predict", predict)
    monkeypatch.setattr(batch_module, "_finish_and_write_case", finish)
    seen = []
    statuses, error = _run_with_limit(find_cases(cts, out), segmenter, on_case=lambda s: seen.append(s.case_id))
    assert error is None, error
    by_id = {s.case_id: s for s in statuses}
    assert sorted(seen) == sorted(by_id) == [f"ct_{i}" for i in range(8)]  # each case once
    assert by_id["ct_1"].status == by_id["ct_4"].status == "skipped"
    assert by_id["ct_3"].status == "failed" and by_id["ct_5"].status == "failed" and by_id["ct_6"].status == "failed"
    assert [by_id[f"ct_{i}"].status for i in (0, 2, 7)] == ["done"] * 3, [s.message for s in statuses]


@pytest.mark.parametrize("count", [1, 2, 3])
def test_short_batches_and_a_last_case_that_does_not_fit_beside_nothing_end(tmp_path, monkeypatch, count):
    """A batch of 1, 2 and 3 (the last case has no next read to wait for) with every check refusing a case beside
    an unfinished read."""
    cts = _write_cts(tmp_path / "cts", count)
    real_check = validation.check_network_memory

    def check(volume, *args, **kwargs):
        if kwargs.get("pending_bytes") and not threading.current_thread().name.startswith("ct-reader"):
            raise ResourceError("not beside the read (test)")
        return real_check(volume, *args, **kwargs)

    monkeypatch.setattr(validation, "check_network_memory", check)
    statuses, error = _run_with_limit(find_cases(cts, tmp_path / "out"), _segmenter())
    assert error is None, error
    assert [s.status for s in statuses] == ["done"] * count, [s.message for s in statuses]


@pytest.mark.parametrize("where", ["predict", "check"])
def test_an_interruption_while_the_reader_waits_for_the_running_case_ends_the_batch(tmp_path, monkeypatch, where):
    """Ctrl-C (KeyboardInterrupt, raised on the main thread) while case 1's network runs or is checked, the reader
    meanwhile waiting in ``reserved_before`` for case 2: the batch ends with the interruption, it does not hang."""
    cts = _write_cts(tmp_path / "cts", 5)
    segmenter = _segmenter()
    real_predict = segmenter.predict
    real_check = segmenter.check_network_memory

    def predict(volume, *args, **kwargs):
        if where == "predict" and _slices(volume) == 9:
            raise KeyboardInterrupt
        return real_predict(volume, *args, **kwargs)

    def check(volume, *args, **kwargs):
        if where == "check" and _slices(volume) == 9:
            raise KeyboardInterrupt
        return real_check(volume, *args, **kwargs)

    monkeypatch.setattr(segmenter, "predict", predict)
    monkeypatch.setattr(segmenter, "check_network_memory", check)
    statuses, error = _run_with_limit(find_cases(cts, tmp_path / "out"), segmenter)
    assert isinstance(error, KeyboardInterrupt)


def test_running_network_memory_hands_each_reader_its_cases_estimate_and_none_once_closed():
    """``reserved_before(i)`` waits for case i - 1 and returns its last estimate; once closed a waiting reader gets
    None (prepare nothing) at once."""
    running = RunningNetworkMemory()
    assert running.reserved_before(0) == 0  # the first case has no network before it
    got = []
    reader = threading.Thread(target=lambda: got.append(running.reserved_before(3)), daemon=True)
    reader.start()
    running.publish(1, 100)
    reader.join(0.2)
    assert reader.is_alive() and not got  # case 2 not published yet
    running.publish(2, 200)
    reader.join(LIMIT_S)
    assert got == [200]
    waiting = threading.Thread(target=lambda: got.append(running.reserved_before(10)), daemon=True)
    waiting.start()
    running.close()
    waiting.join(LIMIT_S)
    assert not waiting.is_alive() and got[-1] is None


def test_running_out_of_memory_in_the_readers_early_fill_search_leaves_the_case_to_the_engine(tmp_path, monkeypatch):
    """The reader's early preparation of case i + 1 runs beside case i's network, where memory is shortest: a
    MemoryError in its resampling-fill search (raised since that search no longer hides running out of memory) is
    only a preparation not made ahead, as any other failure of it is; the case is prepared by the engine in its
    turn and done, not failed as 'Ran out of memory' for memory the running network held."""
    from LiverTumorSegLib.inference import resampling_fill

    cts = _write_cts(tmp_path / "cts", 3)
    real_search = resampling_fill.find_resampling_fill
    failed_on_reader = []

    def search(*args, **kwargs):
        if threading.current_thread().name.startswith("ct-reader"):
            failed_on_reader.append(True)
            raise MemoryError("Unable to allocate 1.00 GiB for an array with shape (512, 512, 1024) (test)")
        return real_search(*args, **kwargs)

    monkeypatch.setattr(resampling_fill, "find_resampling_fill", search)
    statuses, error = _run_with_limit(find_cases(cts, tmp_path / "out"), _segmenter())
    assert error is None, error
    assert failed_on_reader  # the reader did look for the fill ahead
    assert [s.status for s in statuses] == ["done"] * 3, [s.message for s in statuses]


def test_a_next_read_that_fails_while_the_running_case_waits_for_it_fails_only_that_case(tmp_path, monkeypatch):
    """Case 1 does not fit beside case 2's unfinished read, so it waits for that read; the read then fails (a file
    that breaks after its header). Case 1 is checked again and done, case 2 fails with its read's error, case 3 is
    done: no hang, no case lost."""
    cts = _write_cts(tmp_path / "cts", 4)
    checked_beside_the_read = threading.Event()
    real_read = batch_module._read_case

    def read(case, *args, **kwargs):
        if case.case_id == "ct_2":
            assert checked_beside_the_read.wait(LIMIT_S)  # still running when case 1 is checked
            raise OSError(f"'{case.input_path}' is truncated (test)")
        return real_read(case, *args, **kwargs)

    real_check = validation.check_network_memory
    pending_seen = []

    def check(volume, *args, **kwargs):
        if kwargs.get("pending_bytes") and not threading.current_thread().name.startswith("ct-reader"):
            pending_seen.append(_slices(volume))
            checked_beside_the_read.set()
            raise ResourceError("not beside the read (test)")
        return real_check(volume, *args, **kwargs)

    monkeypatch.setattr(batch_module, "_read_case", read)
    monkeypatch.setattr(validation, "check_network_memory", check)
    statuses, error = _run_with_limit(find_cases(cts, tmp_path / "out"), _segmenter())
    assert error is None, error
    assert 9 in pending_seen  # case 1 (9 slices) was checked beside case 2's read and waited for it
    assert [s.status for s in statuses] == ["done", "done", "failed", "done"], [s.message for s in statuses]
    assert "truncated" in statuses[2].message


def test_a_stale_publish_never_replaces_a_later_cases_estimate_or_the_close():
    """``publish`` of an earlier case after a later one (or after ``close``) replaced the later estimate: a reader
    then counted the earlier network's bytes beside the later one, or prepared a CT while the batch was ending."""
    running = RunningNetworkMemory()
    running.publish(2, 500)
    running.publish(1, 0)  # stale: case 1's network has long ended
    assert running.reserved_before(3) == 500
    running.close()
    running.publish(2, 0)  # the running case's 'finally' after the batch was closed
    assert running.reserved_before(3) is None


def test_an_interruption_while_the_reader_waits_makes_no_early_copy_of_the_next_ct(tmp_path, monkeypatch):
    """Ctrl-C while case 1 is checked, the reader waiting for its estimate to prepare case 2: the reader woke to the
    interrupted case's 'finally' (estimate 0) and, when it ran before the batch closed the estimates, resampled case
    2 to the network grid while the batch was ending (seconds for a large CT before the command could stop). The
    interruption closes them first now, and a publish after the close is ignored: it prepares nothing."""
    cts = _write_cts(tmp_path / "cts", 4)
    reader_waits_for_case_1 = threading.Event()
    real_reserved_before = RunningNetworkMemory.reserved_before

    reader_answered = threading.Event()

    def reserved_before(self, index):
        if index == 2:
            reader_waits_for_case_1.set()
        try:
            return real_reserved_before(self, index)
        finally:
            if index == 2:
                reader_answered.set()

    real_cores_shared = batch_module._cores_shared

    @contextlib.contextmanager
    def cores_shared(*args):
        # the batch loop's way out, between the interrupted case's 'finally' and the end of the batch: held until
        # the reader has had its answer, so that the test does not depend on which thread runs first
        with real_cores_shared(*args):
            try:
                yield
            finally:
                reader_answered.wait(LIMIT_S)

    prepared_on_reader = _record_preparations_on_the_reader(monkeypatch)

    segmenter = _segmenter()
    real_check = segmenter.check_network_memory

    def check(volume, *args, **kwargs):
        if _slices(volume) == 9:  # case 1
            assert reader_waits_for_case_1.wait(LIMIT_S)
            raise KeyboardInterrupt
        return real_check(volume, *args, **kwargs)

    monkeypatch.setattr(RunningNetworkMemory, "reserved_before", reserved_before)
    monkeypatch.setattr(batch_module, "_cores_shared", cores_shared)
    monkeypatch.setattr(segmenter, "check_network_memory", check)
    statuses, error = _run_with_limit(find_cases(cts, tmp_path / "out"), segmenter)
    assert isinstance(error, KeyboardInterrupt)
    assert 10 not in prepared_on_reader  # case 2 (10 slices) not resampled ahead while the batch ended


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_long_batch_with_random_failures_and_waits_ends_with_each_case_once(tmp_path, monkeypatch, seed):
    """24 cases, each at random (seeded) one of: done by an earlier run, unreadable, failing in the network, failing
    while finished, not fitting beside the next read (waits for it), plain. The batch ends in time, with each case
    reported once and with the status its kind gives."""
    import random

    rng = random.Random(seed)
    count = 24
    kinds = [rng.choice(["earlier", "unreadable", "network", "finish", "tight", "plain"]) for _ in range(count)]
    cts = _write_cts(tmp_path / "cts", count)
    out = tmp_path / "out"
    cases = find_cases(cts, out)
    cases.sort(key=lambda case: int(case.case_id.split("_")[1]))  # in the order of ``kinds`` (ct_2 before ct_10)
    earlier = [case for case, kind in zip(cases, kinds) if kind == "earlier"]
    if earlier:
        assert all(s.status == "done" for s in _run_with_limit(earlier, _segmenter())[0])
    for i, kind in enumerate(kinds):
        if kind == "unreadable":
            (cts / f"ct_{i}.nii.gz").write_bytes(b"\x1f\x8b broken")
    kind_of_slices = {8 + i: kind for i, kind in enumerate(kinds)}
    segmenter = _segmenter()
    real_check = validation.check_network_memory
    real_predict = segmenter.predict
    real_finish = batch_module._finish_and_write_case

    def check(volume, *args, **kwargs):
        if kwargs.get("pending_bytes") and kind_of_slices.get(_slices(volume)) == "tight" and \
                not threading.current_thread().name.startswith("ct-reader"):
            raise ResourceError("not beside the read (test)")
        return real_check(volume, *args, **kwargs)

    def predict(volume, *args, **kwargs):
        if kind_of_slices.get(_slices(volume)) == "network":
            raise RuntimeError("the network failed (test)")
        return real_predict(volume, *args, **kwargs)

    def finish(case, *args, **kwargs):
        if kinds[int(case.case_id.split("_")[1])] == "finish":
            raise OSError("disk full (test)")
        return real_finish(case, *args, **kwargs)

    monkeypatch.setattr(validation, "check_network_memory", check)
    monkeypatch.setattr(segmenter, "predict", predict)
    monkeypatch.setattr(batch_module, "_finish_and_write_case", finish)
    reported = []
    statuses, error = _run_with_limit(cases, segmenter, on_case=lambda s: reported.append(s.case_id))
    assert error is None, error
    assert sorted(reported) == sorted(s.case_id for s in statuses) == sorted(c.case_id for c in cases)
    expected = {"earlier": "skipped", "unreadable": "failed", "network": "failed", "finish": "failed",
                "tight": "done", "plain": "done"}
    assert [s.status for s in statuses] == [expected[kind] for kind in kinds], \
        [(kind, s.status, s.message) for kind, s in zip(kinds, statuses)]


@pytest.mark.parametrize("raised", [SystemExit(3), KeyboardInterrupt()])
def test_an_exception_that_is_no_exception_on_the_finishing_thread_fails_that_case_and_the_batch_ends(
        tmp_path, monkeypatch, raised):
    """A finish raising SystemExit or KeyboardInterrupt (from code: signals reach only the main thread) escaped the
    finished-case callback and ended the finishing thread; the next case's finish was never run and the batch waited
    for it for ever. That case fails now and the others are done."""
    cts = _write_cts(tmp_path / "cts", 4)
    real_finish = batch_module._finish_and_write_case

    def finish(case, *args, **kwargs):
        if case.case_id == "ct_1":
            raise raised
        return real_finish(case, *args, **kwargs)

    monkeypatch.setattr(batch_module, "_finish_and_write_case", finish)
    statuses, error = _run_with_limit(find_cases(cts, tmp_path / "out"), _segmenter())
    assert error is None, error
    assert [s.status for s in statuses] == ["done", "failed", "done", "done"], [s.message for s in statuses]


def test_ctrl_c_while_a_case_waits_for_its_read_does_not_read_the_next_ct_first(tmp_path, monkeypatch):
    """Ctrl-C (SIGINT to the main thread) while case 1 waits for its CT's read: the next CT's read, queued behind it,
    was still made (a whole CT, a DICOM series: seconds to a minute) before the batch ended; it is cancelled now."""
    import signal

    if not hasattr(signal, "pthread_kill"):
        pytest.skip("needs signal.pthread_kill (POSIX)")
    cts = _write_cts(tmp_path / "cts", 4)
    reading_case_1, release = threading.Event(), threading.Event()
    started = []
    real_read = batch_module._read_case

    def read(case, *args, **kwargs):
        started.append(case.case_id)
        if case.case_id == "ct_1":
            reading_case_1.set()
            assert release.wait(LIMIT_S)  # the reader stays on ct_1 until the interruption has been handled
        return real_read(case, *args, **kwargs)

    queued = {}
    real_submit = batch_module.submit_in_caller_context

    def submit(executor, function, *args):
        future = real_submit(executor, function, *args)
        if function is batch_module.run_with_read_stop and args[1] is batch_module._read_and_prepare_case:
            queued[args[2].case_id] = future  # (read stop, _read_and_prepare_case, case, ...)
        return future

    main = threading.main_thread().ident
    pause = threading.Event()  # never set: a 10 ms step of the waits below

    def interrupt():
        # ct_2's read is queued (behind ct_1's, which the reader is on) once the loop has taken case 1: interrupt
        # the main thread then, and let ct_1's read end once ct_2's was cancelled (or after 10 s without)
        if reading_case_1.wait(LIMIT_S):
            for _ in range(1000):
                if "ct_2" in queued:
                    break
                pause.wait(0.01)
            signal.pthread_kill(main, signal.SIGINT)
            for _ in range(1000):
                if "ct_2" in queued and queued["ct_2"].cancelled():
                    break
                pause.wait(0.01)
        release.set()

    monkeypatch.setattr(batch_module, "_read_case", read)
    monkeypatch.setattr(batch_module, "submit_in_caller_context", submit)
    helper = threading.Thread(target=interrupt, daemon=True)
    helper.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            segment_batch(find_cases(cts, tmp_path / "out"), _segmenter())
    finally:
        release.set()
    helper.join(LIMIT_S)
    assert "ct_2" in queued and "ct_2" not in started, started


def test_the_next_reads_bytes_count_a_dicom_series_in_subfolders_as_the_reader_reads_it(tmp_path):
    """A DICOM folder case's unfinished read was counted by the files directly in the folder: a PACS export
    (PATIENT/STUDY/SERIES/files), which the reader finds in its subfolders, counted 0 beside the running case's
    network. It counts the visible files of the folders the reader's search walks now (no header read), and a
    DICOMDIR or a file of a series as its folder, which is what the reader reads."""
    import concurrent.futures

    from LiverTumorSegLib.inference.batch import BatchCase, next_read_bytes

    export = tmp_path / "export"
    series = export / "PATIENT" / "STUDY" / "SERIES"
    series.mkdir(parents=True)
    for i in range(5):
        (series / f"IM{i:04d}.dcm").write_bytes(b"\0" * 1000)
    (series / ".IM0000.dcm.tmp").write_bytes(b"\0" * 7)  # hidden: the reader leaves it out
    (export / "DICOMDIR").write_bytes(b"\0" * 200)
    (export / "__MACOSX").mkdir()
    (export / "__MACOSX" / "IM0000.dcm").write_bytes(b"\0" * 11)  # a macOS zip's copy: not searched
    running = concurrent.futures.Future()  # a read not finished

    def case(path):
        return BatchCase("c", path, tmp_path / "out.nii.gz", tmp_path / "out.json")

    assert next_read_bytes(running, case(export)) == 5 * 1000 + 200
    assert next_read_bytes(running, case(export / "DICOMDIR")) == 5 * 1000 + 200
    assert next_read_bytes(running, case(series / "IM0002.dcm")) == 5 * 1000
    running.set_result(None)
    assert next_read_bytes(running, case(export)) == 0  # a finished read: its CT is in memory already


def test_the_next_reads_bytes_count_a_dicom_series_by_its_voxels_not_its_file_bytes(tmp_path):
    """A DICOM folder case's unfinished read was counted by its files' bytes: about 2 bytes a voxel of an int16
    series, under 1 for an RLE or JPEG one, where the read holds the series reader's image and its HU copy at its
    peak (measured 4.0 bytes a voxel of int16, 6.0 of int32: docs/speed.md, 30 Nov 2026; 3 copies, 6.0 and 14.0, before
    the reader was let go first). It is counted from the headers now: voxels x the type GDCM reads them as, and the
    HU copy (2 bytes where that type is int16, else 4)."""
    import concurrent.futures

    pydicom = pytest.importorskip("pydicom")
    from pydicom.uid import RLELossless

    from LiverTumorSegLib.inference.batch import BatchCase, next_read_bytes
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    from dicom_helpers import write_ct_series

    voxels = np.full((4, 64, 80), -1000, np.int16)
    voxels[:, 16:48, 20:60] = 60
    files = write_ct_series(tmp_path / "plain", CTVolume(voxels, ImageGeometry(spacing=(0.8, 0.8, 2.0))))
    (tmp_path / "rle").mkdir()
    (tmp_path / "wide").mkdir()
    for path in files:
        ds = pydicom.dcmread(path)
        ds.compress(RLELossless)  # pydicom's own RLE encoder: no extra package
        ds.save_as(tmp_path / "rle" / path.name)
        ds = pydicom.dcmread(path)
        ds.RescaleIntercept = -1024  # signed 16 bits and an intercept: GDCM reads int32
        ds.save_as(tmp_path / "wide" / path.name)
    running = concurrent.futures.Future()  # a read not finished

    def case(path):
        return BatchCase("c", path, tmp_path / "out.nii.gz", tmp_path / "out.json")

    count = voxels.size
    for folder in ("plain", "rle"):  # what was counted before: its files' bytes, under 3 bytes a voxel
        assert sum(p.stat().st_size for p in (tmp_path / folder).iterdir()) < 3 * count
    assert next_read_bytes(running, case(tmp_path / "plain")) == 4 * count
    assert next_read_bytes(running, case(tmp_path / "rle")) == 4 * count
    assert next_read_bytes(running, case(tmp_path / "rle" / files[0].name)) == 4 * count  # read as its folder
    assert next_read_bytes(running, case(tmp_path / "wide")) == (4 + 4) * count


def test_a_case_check_counts_the_previous_case_finish_still_running_and_waits_for_it_when_short(tmp_path,
                                                                                             monkeypatch):
    """The previous case's finish (post-processing, report, writing) runs on the finishing thread beside the next
    case's network, and no check counted it: the second case of a batch was let in with nothing pending while the
    first case's finish had its arrays still to allocate. The check counts it now while it runs
    (``finish_memory_bytes``), and a case that fits alone but not beside it waits for it instead of being refused."""
    from LiverTumorSegLib.inference.batch import finish_memory_bytes
    from LiverTumorSegLib.io import read_volume

    cts = _write_cts(tmp_path / "cts", 2)
    first_finish_bytes = finish_memory_bytes(read_volume(cts / "ct_0.nii.gz"))
    for short in (False, True):
        segmenter = _segmenter()
        checked = threading.Event()
        asked = []  # (slices, pending bytes, whether the first finish had ended) of each case's check
        first_finished = threading.Event()
        real_check, real_finish = segmenter.check_network_memory, segmenter.finish

        def check(volume, pending_bytes=0, real_check=real_check, asked=asked, checked=checked, short=short,
                  first_finished=first_finished):
            asked.append((_slices(volume), pending_bytes, first_finished.is_set()))
            if _slices(volume) == 9:
                checked.set()  # the first case's finish may end now
                if short and pending_bytes:
                    raise ResourceError("Not enough memory beside the first case's finish")
            return real_check(volume, pending_bytes=pending_bytes)

        def finish(volume, output, *args, real_finish=real_finish, checked=checked, first_finished=first_finished):
            if _slices(volume) == 8:
                checked.wait(LIMIT_S / 3)  # held while the second case is checked
                result = real_finish(volume, output, *args)
                first_finished.set()
                return result
            return real_finish(volume, output, *args)

        monkeypatch.setattr(segmenter, "check_network_memory", check)
        monkeypatch.setattr(segmenter, "finish", finish)
        statuses, error = _run_with_limit(find_cases(cts, tmp_path / f"out_{short}"), segmenter)
        assert error is None and [s.status for s in statuses] == ["done", "done"], statuses
        second = [entry for entry in asked if entry[0] == 9]
        assert second[0][1] == first_finish_bytes  # no read ahead for the last case: the first finish alone
        assert not second[0][2]
        if short:  # checked again once the first case's finish had ended, with nothing pending
            assert second[1:] == [(9, 0, True)]
        else:
            assert len(second) == 1


def test_a_next_ct_already_read_is_not_counted_again_as_a_read_to_come(tmp_path, monkeypatch):
    """The reader reads the next CT and then waits for the running case's estimate before its early network-grid
    copy, so its future is still running at that case's check although the CT is in memory: the check counted the
    whole CT again as a read to come (``pending_bytes``), and with little memory free the case waited for the read and
    the next CT lost its early copy. Case 0 is checked here once the reader holds case 1's CT and waits (as after a
    model load longer than two reads), with memory that fits nothing beside a read still to come: it is checked with
    nothing pending and case 1 is resampled ahead on the reader."""
    cts = _write_cts(tmp_path / "cts", 2)
    reader_waits_with_case_1_read = threading.Event()
    real_reserved_before = RunningNetworkMemory.reserved_before

    def reserved_before(self, index):
        if index == 1:
            reader_waits_with_case_1_read.set()
        return real_reserved_before(self, index)

    prepared_on_reader = _record_preparations_on_the_reader(monkeypatch)

    segmenter = _segmenter()
    real_check = segmenter.check_network_memory
    pending_at_case_0 = []

    from LiverTumorSegLib.inference import segmenter as segmenter_module

    real_wait_for_load = segmenter_module.wait_for_load

    def wait_for_load(loading):  # a model load that outlasts the reads of cases 0 and 1
        real_wait_for_load(loading)
        assert reader_waits_with_case_1_read.wait(LIMIT_S)

    def check(volume, *args, **kwargs):
        if _slices(volume) == 8 and not threading.current_thread().name.startswith("ct-reader"):
            pending_at_case_0.append(kwargs.get("pending_bytes", 0))
            if kwargs.get("pending_bytes"):
                raise ResourceError("not beside the read (test)")
        return real_check(volume, *args, **kwargs)

    monkeypatch.setattr(RunningNetworkMemory, "reserved_before", reserved_before)
    monkeypatch.setattr(segmenter_module, "wait_for_load", wait_for_load)
    monkeypatch.setattr(segmenter, "check_network_memory", check)
    statuses, error = _run_with_limit(find_cases(cts, tmp_path / "out"), segmenter)
    assert error is None, error
    assert [s.status for s in statuses] == ["done", "done"], [s.message for s in statuses]
    assert pending_at_case_0 == [0]  # before: [9 * 32 * 32 * 4, 0], the read counted, then waited for
    assert 9 in prepared_on_reader  # case 1 (9 slices) resampled ahead: its early copy was not dropped


def test_a_read_ending_between_a_network_and_its_finish_counts_that_finish(tmp_path, monkeypatch):
    """Case 0's network ended with its reservation published as 0 (the loop's 'finally'), and its finish was
    registered only after the previous finish had been waited for and this one submitted: a read of case 1 ending in
    between made its early copy with nothing counted for case 0's finish, about to allocate its arrays. The reader's
    check is held here exactly in that window (right after the publish that ends case 0's network): it counts case
    0's finish (finish_memory_bytes of its CT), and no later state counts less while that finish runs."""
    cts = _write_cts(tmp_path / "cts", 2)
    network_0_published = threading.Event()
    reader_counted = threading.Event()
    counted = []
    real_publish = RunningNetworkMemory.publish
    real_reserved_before = RunningNetworkMemory.reserved_before
    publishes_of_0 = []

    def publish(self, index, reserved_bytes, **kwargs):
        real_publish(self, index, reserved_bytes, **kwargs)
        if index == 0:
            publishes_of_0.append(reserved_bytes)
            if len(publishes_of_0) == 2:  # the first: its estimate before the network; the second: the network ran
                network_0_published.set()
                assert reader_counted.wait(LIMIT_S)

    def reserved_before(self, index):
        if index != 1:
            return real_reserved_before(self, index)
        assert network_0_published.wait(LIMIT_S)
        try:
            counted.append(real_reserved_before(self, index))
            return counted[-1]
        finally:
            reader_counted.set()

    monkeypatch.setattr(RunningNetworkMemory, "publish", publish)
    monkeypatch.setattr(RunningNetworkMemory, "reserved_before", reserved_before)
    statuses, error = _run_with_limit(find_cases(cts, tmp_path / "out"), _segmenter())
    assert error is None, error
    assert [s.status for s in statuses] == ["done", "done"], [s.message for s in statuses]
    case_0_finish = 8 * 32 * 32 * batch_module.FINISH_BYTES_PER_VOXEL + batch_module.FINISH_FIXED_BYTES
    assert counted == [case_0_finish]  # before: [0]
    assert publishes_of_0[1:] == [case_0_finish, 0]  # then handed to its finish, counted there, in one step


@pytest.mark.parametrize("read_left, finish_left, said", [
    (True, False, "waited for the next CT's read before the network: 1 MiB would not fit beside it"),
    (False, True, "waited for the previous case's finish before the network: 2 MiB would not fit beside it"),
    (True, True, "waited for the next CT's read and the previous case's finish before the network: 3 MiB would not "
                 "fit beside them"),
])
def test_the_wait_before_a_network_names_what_it_waited_for(monkeypatch, caplog, read_left, finish_left, said):
    """The debug line said it waited for 'the next CT's read and the previous case's finish' also when only one of
    them was pending: it names the one(s) counted."""
    import concurrent.futures
    import logging

    read, finish = concurrent.futures.Future(), concurrent.futures.Future()
    for future, left in ((read, read_left), (finish, finish_left)):
        if not left:
            future.set_result(None)
    monkeypatch.setattr(batch_module, "next_read_bytes", lambda future, case: (1 << 20) if not future.done() else 0)
    asked = []

    class Segmenter:
        def check_network_memory(self, volume, pending_bytes=0):
            asked.append(pending_bytes)
            if pending_bytes:
                for future in (read, finish):  # what the wait waits for has ended (no timing)
                    if not future.done():
                        future.set_result(None)
                raise ResourceError("not beside them (test)")
            return 5

    with caplog.at_level(logging.DEBUG, logger=batch_module.log.name):
        assert batch_module._check_beside_the_next_read(Segmenter(), object(), read, object(), None, 0, finish,
                                                        2 << 20) == 5
    assert asked == [(1 << 20) * read_left + (2 << 20) * finish_left, 0]
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("waited")] == [said]
