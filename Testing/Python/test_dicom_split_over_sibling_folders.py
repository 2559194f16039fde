"""A DICOM series split over sibling folders (``SE000001/A/``, ``SE000001/B/``: exports that put at most so many
files in a folder), one of them given: only its part was read, without a word, and a partial CT segmented (the
DICOM audit's repro_split_series). The reader now looks beside the folder, headers only and within limits, and
warns; the parent folder reads the series whole."""
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pydicom")

from dicom_helpers import write_ct_series  # noqa: E402

from LiverTumorSegLib.io import dicom, read_volume  # noqa: E402
from LiverTumorSegLib.phantom import make_phantom  # noqa: E402
from LiverTumorSegLib.validation import check_ct  # noqa: E402
from LiverTumorSegLib.volume import CTVolume, ImageGeometry  # noqa: E402

SPLIT_WARNING = "the folders beside it hold more files of this series"
GRID = ImageGeometry(spacing=(1, 1, 2), origin=(0, 0, 0))


def _split_series(first: Path, second: Path, uid_seed: int = 1) -> np.ndarray:
    """The first 4 of 8 slices of one series written in ``first``, the other 4 in ``second``; returns all 8 (HU)."""
    slices = np.arange(8 * 16 * 16, dtype=np.int16).reshape(8, 16, 16) % 700 - 200
    write_ct_series(first, CTVolume(slices[:4], ImageGeometry(spacing=(1, 1, 2), origin=(0, 0, 0))),
                    uid_seed=uid_seed)
    write_ct_series(second, CTVolume(slices[4:], ImageGeometry(spacing=(1, 1, 2), origin=(0, 0, 8))),
                    uid_seed=uid_seed, name_prefix="m")
    return slices


def _warnings(volume) -> list:
    return [w for w in volume.meta.get("warnings", []) if SPLIT_WARNING in w]


def test_a_series_split_over_sibling_folders_is_warned_of_and_its_parent_read_whole(tmp_path):
    """Given SE000001/A (or one of its files), 4 of the 8 slices were read without a word. Now the warning says
    how many files of the series lie in which folder beside it and to give the parent, which reads all 8."""
    series_folder = tmp_path / "SE000001"
    slices = _split_series(series_folder / "A", series_folder / "B")
    for given in (series_folder / "A", next((series_folder / "A").iterdir())):
        volume = read_volume(given)
        assert volume.shape_zyx[0] == 4
        [warning] = _warnings(volume)
        assert "(4 files), but the folders beside it hold more files of this series: 4 in 'B'." in warning
        assert f"Give the folder that holds all its parts, '{series_folder}'" in warning
        assert any(SPLIT_WARNING in w for w in check_ct(volume))  # what segment prints and reports
    whole = read_volume(series_folder)
    assert np.array_equal(whole.array, slices) and not whole.meta.get("warnings")


def test_a_part_in_the_parent_folder_itself_and_a_part_one_level_down_are_found(tmp_path):
    """The rest of the series in the parent's own files, or in a subfolder of a folder beside the given one
    (SE000001/B/1): both are within the search, and the parent reads the series whole in both cases."""
    _split_series(tmp_path / "S" / "more", tmp_path / "S")
    [warning] = _warnings(read_volume(tmp_path / "S" / "more"))
    assert "4 in the parent folder itself" in warning and f"'{tmp_path / 'S'}'" in warning
    assert read_volume(tmp_path / "S").shape_zyx[0] == 8

    _split_series(tmp_path / "T" / "A", tmp_path / "T" / "B" / "1", uid_seed=2)
    [warning] = _warnings(read_volume(tmp_path / "T" / "A"))
    assert "4 in 'B/1'" in warning
    assert read_volume(tmp_path / "T").shape_zyx[0] == 8


def test_folders_beside_holding_other_series_or_a_copy_of_the_same_files_are_not_warned_of(tmp_path):
    """A study's other series in the folders beside (SE000002/) is no part of this one, nor a copy of the same
    files (same SOPInstanceUIDs: a backup, a link), nor files that are not DICOM."""
    ct = make_phantom((6, 24, 28), (2.0, 2.0, 4.0), lesions=[], noise_hu=0.0, seed=1).ct
    write_ct_series(tmp_path / "SE000001", ct, uid_seed=1)
    write_ct_series(tmp_path / "SE000002", ct, uid_seed=2, description="another series")
    shutil.copytree(tmp_path / "SE000001", tmp_path / "SE000001_backup")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "report.txt").write_text("not DICOM")
    (tmp_path / "DICOMDIR").write_bytes(b"\0" * 200)
    for name in ("SE000001", "SE000002", "SE000001_backup"):
        volume = read_volume(tmp_path / name)
        assert volume.shape_zyx == ct.shape_zyx and not volume.meta.get("warnings"), volume.meta.get("warnings")


def _count_header_reads(monkeypatch) -> list:
    """Patch the sibling search's header read to record each file it reads; returns the list it fills."""
    read = []
    original = dicom._series_and_image_key

    def counted(path):
        read.append(path)
        return original(path)

    monkeypatch.setattr(dicom, "_series_and_image_key", counted)
    return read


def test_a_folder_beside_with_many_unrelated_files_is_sampled_within_the_caps(tmp_path, monkeypatch):
    """A folder of 300 files of another series (and 40 more folders) beside the series: 4 headers of each folder
    are read, not all 300, and no more folders than the count allows."""
    write_ct_series(tmp_path / "series", CTVolume(np.zeros((3, 4, 4), np.int16), GRID), uid_seed=1)
    write_ct_series(tmp_path / "other", CTVolume(np.zeros((300, 4, 4), np.int16), GRID), uid_seed=2)
    for k in range(40):
        (tmp_path / f"folder{k:02d}").mkdir()
        for n in range(5):
            (tmp_path / f"folder{k:02d}" / f"file{n}.txt").write_text("not DICOM")
    read = _count_header_reads(monkeypatch)
    assert not _warnings(read_volume(tmp_path / "series"))
    assert len(read) == 4 + 40 * 4 and len([p for p in read if "/other/" in p.replace("\\", "/")]) == 4
    assert len(read) <= dicom.SIBLING_SEARCH_MAX_FILES

    monkeypatch.setattr(dicom, "SIBLING_SEARCH_MAX_FOLDERS", 5)  # the parent, 'folder00' .. 'folder03'
    read.clear()
    read_volume(tmp_path / "series")
    assert len({Path(p).parent.name for p in read}) == 4 and len(read) == 16
    monkeypatch.setattr(dicom, "SIBLING_SEARCH_MAX_FILES", 6)
    read.clear()
    read_volume(tmp_path / "series")
    assert len(read) == 6


def test_a_part_counted_when_the_time_ran_out_says_at_least(tmp_path):
    """Where the time runs out before a folder holding the series is read through, the count is a lower bound
    and the warning says so, with how many of its files were looked at."""
    _split_series(tmp_path / "A", tmp_path / "B")
    files = sorted(str(p) for p in (tmp_path / "B").iterdir())
    series_id = dicom._series_and_image_key(files[0])[0]
    part = dicom._sibling_part(tmp_path / "B", files, files[:1], series_id, set(), deadline=time.monotonic())
    assert (part.found, part.looked_at, part.files, part.counted) == (1, 1, 4, False)
    assert dicom._sibling_part_text(part, tmp_path) == "at least 1 in 'B' (of its 4 files, 1 looked at)"


def test_a_batch_of_dicom_case_folders_side_by_side_warns_only_of_a_split_case(tmp_path):
    """A CSV of case folders that are each other's siblings, each its own series: no case is warned of the
    others. A case listed as one part of a split series is, in its report."""
    pytest.importorskip("torch")
    from LiverTumorSegLib.inference.batch import find_cases, segment_batch
    from LiverTumorSegLib.inference.engine import SliceInferenceEngine
    from LiverTumorSegLib.inference.segmenter import Segmenter

    from inference_helpers import oracle_package, oracle_predictor

    for k in range(3):
        ct = make_phantom((6, 24, 28), (2.0, 2.0, 4.0), lesions=[], noise_hu=0.0, seed=k).ct
        write_ct_series(tmp_path / "cts" / f"case_{k}", ct, uid_seed=k + 1)
    ct = make_phantom((8, 24, 28), (2.0, 2.0, 4.0), lesions=[], noise_hu=0.0, seed=7).ct
    halves = [CTVolume(ct.array[z:z + 4], ImageGeometry(spacing=(2, 2, 4), origin=(0, 0, 4.0 * z))) for z in (0, 4)]
    write_ct_series(tmp_path / "cts" / "split" / "A", halves[0], uid_seed=9)
    write_ct_series(tmp_path / "cts" / "split" / "B", halves[1], uid_seed=9, name_prefix="m")
    listing = tmp_path / "list.csv"
    listing.write_text("case_id,image\ncase_0,cts/case_0\ncase_1,cts/case_1\ncase_2,cts/case_2\n"
                       "split_a,cts/split/A\n")
    cases = find_cases(listing, tmp_path / "out")
    segmenter = Segmenter(engine=SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=4,
                                                      batch_predictor=oracle_predictor))
    assert [s.status for s in segment_batch(cases, segmenter)] == ["done"] * 4
    warned = {case.case_id: [w for w in json.loads(case.report_path.read_text())["warnings"] if SPLIT_WARNING in w]
              for case in cases}
    assert warned["case_0"] == warned["case_1"] == warned["case_2"] == []
    assert len(warned["split_a"]) == 1 and "4 in 'B'" in warned["split_a"][0]


def test_the_folders_next_to_the_given_one_are_looked_at_first(tmp_path, monkeypatch):
    """Among 100 series folders the split series' other part (SE081 beside SE080) lay past the 64-folder cap in
    plain name order and was never looked at (the review of the sibling search); the nearest names come first."""
    from LiverTumorSegLib.io.dicom import _nearest_first

    names = [tmp_path / f"SE{k:03d}" for k in range(6)]
    assert _nearest_first(names, names[3]) == [names[4], names[2], names[5], names[1], names[0]]
    assert _nearest_first(names, tmp_path / "other") == names
    for k in range(8):                              # other series in SE000 .. SE007
        write_ct_series(tmp_path / f"SE{k:03d}", CTVolume(np.zeros((2, 4, 4), np.int16), GRID), uid_seed=100 + k)
    _split_series(tmp_path / "SE008", tmp_path / "SE009")
    monkeypatch.setattr(dicom, "SIBLING_SEARCH_MAX_FOLDERS", 3)  # the parent and two folders
    assert _warnings(read_volume(tmp_path / "SE008"))


def test_the_header_probe_on_a_reader_thread_leaves_other_threads_warnings_alone(tmp_path, monkeypatch):
    """The probe hid its headers' warnings with ``warnings.catch_warnings``, which swaps the process-wide filters:
    on a batch's reader thread, a warning the network or post-processing gave meanwhile on another thread was
    dropped, and two such blocks on two threads could leave each other's filters in place for good. Now only the
    probing thread's warnings are hidden: the main thread's warning is shown, the probe's is not, and the filters
    are as before."""
    import threading
    import warnings

    import pydicom

    _split_series(tmp_path / "S" / "A", tmp_path / "S" / "B")
    inside, warned = threading.Event(), threading.Event()
    read_header = pydicom.dcmread

    def odd_header(*args, **kwargs):  # pydicom warns of an odd value, then the other thread warns meanwhile
        warnings.warn("odd header value (probe)", UserWarning)
        inside.set()
        warned.wait(5)
        return read_header(*args, **kwargs)

    monkeypatch.setattr(pydicom, "dcmread", odd_header)
    filters_before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        reader = threading.Thread(target=read_volume, args=(tmp_path / "S" / "A",), name="ct-reader")
        reader.start()
        assert inside.wait(5)
        warnings.warn("the network's warning (main thread)", UserWarning)
        warned.set()
        reader.join(30)
    assert [str(w.message) for w in shown] == ["the network's warning (main thread)"]
    assert warnings.filters == filters_before


def test_a_warning_hidden_in_a_probe_is_shown_when_given_again_after_it():
    """Python marks a warning as given (its module's ``__warningregistry__``) before showing it, so a warning the
    probe hid silenced the same warning given later from the same line for the rest of the process (the real
    read after a probe); ``catch_warnings`` emptied those records on leaving, and so does the hiding block."""
    import warnings

    from LiverTumorSegLib.thread_warnings import warnings_hidden_in_this_thread

    def odd_header():
        warnings.warn("odd header value", UserWarning)

    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("default")  # once per line, as Python's default action
        with warnings_hidden_in_this_thread():
            odd_header()
        assert shown == []
        odd_header()
    assert [str(w.message) for w in shown] == ["odd header value"]
