"""Batch segmentation (``segment FOLDER|LIST.csv -o OUT``): case discovery, one result per case identical to a
single-CT run, resumability, a failing case not stopping the others, reading overlapped with the network."""
import os
import shutil
import threading

import numpy as np
import pytest
from process_helpers import ended_process_id
from stream_helpers import ReaderGone

torch = pytest.importorskip("torch")

from LiverTumorSegLib import cli  # noqa: E402
from LiverTumorSegLib.errors import InputError  # noqa: E402
from LiverTumorSegLib.inference import batch as batch_module  # noqa: E402
from LiverTumorSegLib.inference.batch import find_cases, is_batch_input, segment_batch  # noqa: E402
from LiverTumorSegLib.inference.engine import SliceInferenceEngine  # noqa: E402
from LiverTumorSegLib.inference.segmenter import Segmenter  # noqa: E402
from LiverTumorSegLib.io import read_label_map, write_volume  # noqa: E402
from LiverTumorSegLib.phantom import PhantomLesion, make_phantom  # noqa: E402

from inference_helpers import oracle_package, oracle_predictor, tiny_unet_package  # noqa: E402
from text_file_helpers import WINDOWS_CSV_FORMATS, windows_csv_bytes  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(1)


def write_phantoms(folder, count=3):
    """``count`` small noise-free phantoms (different sizes and lesions) as ct_<i>.nii.gz; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        lesion = PhantomLesion(center_zyx=(4.0 + i, 14.0, 12.0), radius_mm=4.0 + i, hu=15.0)
        ph = make_phantom((10 + 2 * i, 36, 40), (2.0, 2.0, 4.0), lesions=[lesion], noise_hu=0.0)
        paths.append(write_volume(folder / f"ct_{i}.nii.gz", ph.ct))
    return paths


def test_a_case_whose_output_name_is_too_long_is_refused_before_the_model_loads(tmp_path):
    """A 250-character case_id made 'OUT/<case_id>.nii.gz' longer than a file name may be: the batch stopped after
    the model load with 'File name too long', naming neither the case nor a way out, and no case was segmented
    (the interruption audit). It is refused with the others' checks, naming the case."""
    paths = write_phantoms(tmp_path / "cts", 2)
    listing = tmp_path / "list.csv"
    long_id = "z" * 250
    listing.write_text(f"case_id,image\n{long_id},cts/ct_0.nii.gz\nok,cts/ct_1.nii.gz\n")
    with pytest.raises(InputError, match=rf"case_id '{long_id}' makes the output file name '{long_id}.nii.gz' "
                                         r"257 bytes long, over the 255 bytes"):
        find_cases(listing, tmp_path / "out")
    listing.write_text(f"case_id,image\n{'z' * 240},cts/ct_0.nii.gz\n")  # 247 bytes with .nii.gz: it fits
    assert find_cases(listing, tmp_path / "out")[0].output_path.name == "z" * 240 + ".nii.gz"
    named = tmp_path / "long"  # a folder's CT named so names its case by the file
    named.mkdir()
    shutil.copy(paths[0], named / ("y" * 250 + ".mha"))
    with pytest.raises(InputError, match="names its case 'y+' makes the output file name .* shorter case_id"):
        find_cases(named, tmp_path / "out2")


def oracle_engine(predictor=oracle_predictor):
    return SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=4, batch_predictor=predictor)


def oracle_segmenter(predictor=oracle_predictor):
    return Segmenter(engine=oracle_engine(predictor))


def test_find_cases_from_folder_and_csv(tmp_path):
    paths = write_phantoms(tmp_path / "cts", 2)
    (tmp_path / "cts" / "notes.txt").write_text("not a CT")
    (tmp_path / "cts" / ".ct_9.tmp.nii.gz").write_bytes(b"")  # an unfinished temp file is no case
    assert is_batch_input(tmp_path / "cts") and not is_batch_input(paths[0])
    cases = find_cases(tmp_path / "cts", tmp_path / "out")
    assert [c.case_id for c in cases] == ["ct_0", "ct_1"]
    assert cases[1].output_path == tmp_path / "out" / "ct_1.nii.gz"
    assert cases[1].report_path == tmp_path / "out" / "reports" / "ct_1.json"
    listing = tmp_path / "list.csv"
    listing.write_text("case_id,image\npatientA,cts/ct_1.nii.gz\n,cts/ct_0.nii.gz\n")
    assert is_batch_input(listing)
    cases = find_cases(listing, tmp_path / "out", suffix=".nrrd")
    assert [(c.case_id, c.input_path, c.output_path.name) for c in cases] == [
        ("patientA", tmp_path / "cts" / "ct_1.nii.gz", "patientA.nrrd"), ("ct_0", tmp_path / "cts" / "ct_0.nii.gz",
                                                                         "ct_0.nrrd")]
    _csv_refused(listing, "case_id,image\nsame,cts/ct_1.nii.gz\nsame,cts/ct_0.nii.gz\n", "both named 'same'")
    _csv_refused(listing, "case_id,image\nsame,cts/ct_1.nii.gz\nsame,cts/ct_0.nii.gz\n",
                 "so they would write the same output files")  # no letter-case talk where the names are equal
    _csv_refused(listing, "case_id,image\nSame,cts/ct_1.nii.gz\nsame,cts/ct_0.nii.gz\n",
                 "named 'Same' and 'same'.*disks that ignore letter case")
    _csv_refused(listing, "path\ncts/ct_1.nii.gz\n", "'image' column")


@pytest.mark.parametrize("encoding, separator", WINDOWS_CSV_FORMATS)
def test_case_lists_saved_by_excel_or_powershell_are_read(tmp_path, encoding, separator):
    """A UTF-16 list was refused as 'not UTF-8 text'; a tab- or semicolon-separated one had no 'image' column."""
    write_phantoms(tmp_path / "cts", 2)
    listing = tmp_path / "list.csv"
    rows = ["Case_ID", "Image"], ["M\u00fcller", "cts/ct_1.nii.gz"], ["", "cts/ct_0.nii.gz"]
    listing.write_bytes(windows_csv_bytes(rows, encoding, separator))
    cases = find_cases(listing, tmp_path / "out")
    assert [(c.case_id, c.input_path) for c in cases] == [("M\u00fcller", tmp_path / "cts" / "ct_1.nii.gz"),
                                                          ("ct_0", tmp_path / "cts" / "ct_0.nii.gz")]


def test_a_case_list_with_mac_line_ends_is_read_and_one_without_its_utf16_mark_is_refused(tmp_path):
    """Excel for Mac's "CSV (Macintosh)" ends lines with a CR alone, and UTF-16 without a byte-order mark reads as
    text with NUL characters: both ended in "internal error: Error: ..." (the csv module's)."""
    write_phantoms(tmp_path / "cts", 2)
    listing = tmp_path / "list.csv"
    listing.write_bytes(b"case_id,image\ra,cts/ct_1.nii.gz\rb,cts/ct_0.nii.gz\r")
    assert [(c.case_id, c.input_path.name) for c in find_cases(listing, tmp_path / "out")] == [
        ("a", "ct_1.nii.gz"), ("b", "ct_0.nii.gz")]
    listing.write_bytes("case_id,image\r\na,cts/ct_1.nii.gz\r\n".encode("utf-16-le"))
    with pytest.raises(InputError, match=r"Case list '.*list\.csv' holds NUL characters .*save it as UTF-8 CSV"):
        find_cases(listing, tmp_path / "out")


def test_a_case_list_in_another_encoding_is_refused_naming_the_file_and_the_format_to_save(tmp_path):
    listing = tmp_path / "list.csv"
    listing.write_bytes("case_id,image\nPatient\u00e9,cts/ct_0.nii.gz\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"Case list '.*list\.csv' is not UTF-8 text \(byte 21\); save it as "
                                         r"UTF-8 CSV \(in Excel: \"CSV UTF-8"):
        find_cases(listing, tmp_path / "out")


def _csv_refused(listing, text, match):
    """A case list with ``text`` is refused by find_cases with an InputError matching ``match``."""
    listing.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=match):
        find_cases(listing, listing.parent / "out_refused")


@pytest.mark.parametrize("case_id", ["../victim/important", "/abs/keep", "sub/x", "..", ".hidden", "a\\b",
                                     "c:evil"])
def test_csv_case_id_with_a_folder_part_is_refused(tmp_path, case_id):
    """A case_id names OUT/<case_id>.nii.gz; '../victim/important' once overwrote a file outside OUT."""
    write_phantoms(tmp_path / "cts", 1)
    listing = tmp_path / "list.csv"
    listing.write_text(f"case_id,image\n{case_id},cts/ct_0.nii.gz\n")
    with pytest.raises(InputError, match=r"line 2: case_id .* must be a plain name"):
        find_cases(listing, tmp_path / "out")


def test_csv_case_column_of_a_training_csv_names_the_cases(tmp_path):
    """A training CSV (image,label,patient,case) given to segment: its 'case' column was ignored, and p1/ct.nii.gz and
    p2/ct.nii.gz were refused as two cases named 'ct' ("give them distinct case_id values")."""
    for patient in ("p1", "p2"):
        write_phantoms(tmp_path / patient, 1)[0].rename(tmp_path / patient / "ct.nii.gz")
    listing = tmp_path / "train.csv"
    listing.write_text("image,label,patient,case\np1/ct.nii.gz,p1/seg.nii.gz,p1,p1_base\n"
                       "p2/ct.nii.gz,p2/seg.nii.gz,p2,p2_base\n")
    assert [c.case_id for c in find_cases(listing, tmp_path / "out")] == ["p1_base", "p2_base"]
    _csv_refused(listing, "image,case,case_id\np1/ct.nii.gz,a,b\n", "line 2: its 'case_id' .* and 'case' .* cells "
                                                                     "name the case differently")
    # named by the column it came from: "case_id '../x'" named a column the list does not have
    _csv_refused(listing, "image,case\np1/ct.nii.gz,../x\n", "line 2: case '../x' must be a plain name")
    _csv_refused(listing, "image,case\np1/ct.nii.gz,CON\n", "line 2: case 'CON' cannot be a file name on Windows")


def test_csv_path_under_the_home_folder_is_read_there(tmp_path, monkeypatch):
    """'~/scans/ct.nii.gz' in a case list (a training CSV reads it so) was looked for in LIST_FOLDER/~/scans and the
    case failed, advised to write the path "without quotes"."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("USERPROFILE", str(tmp_path / "home"))
    write_phantoms(tmp_path / "home" / "scans", 1)
    (tmp_path / "lists").mkdir()
    listing = tmp_path / "lists" / "list.csv"
    listing.write_text("image\n~/scans/ct_0.nii.gz\n")
    cases = find_cases(listing, tmp_path / "out")
    assert [c.input_path for c in cases] == [tmp_path / "home" / "scans" / "ct_0.nii.gz"]


def test_csv_paths_written_from_the_working_folder_are_warned_of(tmp_path, caplog, monkeypatch):
    """A list in lists/ naming cts/ct_0.nii.gz relative to the working folder: each such case failed after the model
    load as "does not exist", without a word that relative paths are read from the list's folder."""
    import logging

    write_phantoms(tmp_path / "cts", 3)
    (tmp_path / "lists").mkdir()
    listing = tmp_path / "lists" / "list.csv"
    absolute = tmp_path / "cts" / "ct_1.nii.gz"
    listing.write_text(f"image,case_id\ncts/ct_0.nii.gz,a\n{absolute},b\n../cts/ct_2.nii.gz,c\n")
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING):
        find_cases(listing, tmp_path / "out")
    assert "1 path(s) of case list" in caplog.text and "line 2: 'cts/ct_0.nii.gz'" in caplog.text
    assert "relative to the list's folder" in caplog.text and "line 3" not in caplog.text


def test_outputs_that_are_inputs_are_refused_before_any_work(tmp_path):
    """`segment cts -o cts --overwrite` once replaced the CT cts/ct_0.nii.gz by its own label map."""
    paths = write_phantoms(tmp_path / "cts", 2)
    before = [p.read_bytes() for p in paths]
    for out in (tmp_path / "cts", tmp_path / "cts" / ".." / "cts"):
        with pytest.raises(InputError, match="is the input folder"):
            find_cases(tmp_path / "cts", out)
    (tmp_path / "link").symlink_to(tmp_path / "cts")
    with pytest.raises(InputError, match="is the input folder"):
        find_cases(tmp_path / "cts", tmp_path / "link")
    listing = tmp_path / "list.csv"  # a CSV whose case_id makes one case's output the other's input
    listing.write_text("case_id,image\nct_1,cts/ct_0.nii.gz\nother,cts/ct_1.nii.gz\n")
    with pytest.raises(InputError, match="Case 'ct_1' would write .*ct_1.nii.gz', which is the input CT"):
        find_cases(listing, tmp_path / "cts")
    code = cli.main(["segment", str(tmp_path / "cts"), "-o", str(tmp_path / "cts"), "--overwrite",
                     "--no-progress"])
    assert code == 2 and [p.read_bytes() for p in paths] == before


def test_a_dicom_folder_with_a_stray_ct_file_and_a_file_name_as_batch_output_are_refused(tmp_path, capsys):
    """A DICOM series folder with a mask copied beside it ran as a batch of that one mask (the series ignored)
    and made the -o 'seg.nii.gz' a folder."""
    write_phantoms(tmp_path / "series", 1)
    dicom_like = tmp_path / "series" / "IM0001"
    dicom_like.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    with pytest.raises(InputError, match="holds DICOM files and also 1 NIfTI/NRRD/MetaImage file.*neither one "
                                         "DICOM series nor a batch folder"):
        is_batch_input(tmp_path / "series")
    dicom_like.unlink()
    assert is_batch_input(tmp_path / "series")
    (tmp_path / "series" / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)  # a medium's index
    assert is_batch_input(tmp_path / "series")
    for name in ("seg.nii.gz", "seg.seg.nrrd", "seg.dcm"):
        code = cli.main(["segment", str(tmp_path / "series"), "-o", str(tmp_path / name), "--no-progress"])
        assert code == 2 and "writes an output folder, but -o" in capsys.readouterr().err
        assert not (tmp_path / name).exists()


def test_batch_csv_that_is_not_utf8_and_an_unwritable_output_folder_are_user_errors(tmp_path, capsys):
    write_phantoms(tmp_path / "cts", 1)
    listing = tmp_path / "list.csv"
    listing.write_bytes("case_id,image\nPatient\u00e9,cts/ct_0.nii.gz\n".encode("latin-1"))
    assert cli.main(["segment", str(listing), "-o", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "is not UTF-8 text" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli.main(["segment", str(tmp_path / "cts"), "-o", str(blocker / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "cannot be created" in err and "internal error" not in err


def test_batch_equals_single_runs_resumes_and_survives_a_bad_case(tmp_path):
    from LiverTumorSegLib.inference.api import segment_file

    paths = write_phantoms(tmp_path / "cts", 3)
    (tmp_path / "cts" / "broken.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    engine = oracle_engine()
    seen = []
    statuses = segment_batch(find_cases(tmp_path / "cts", tmp_path / "out"), Segmenter(engine=engine),
                             on_case=seen.append)
    assert [(s.case_id, s.status) for s in statuses] == [("broken", "failed"), ("ct_0", "done"), ("ct_1", "done"),
                                                         ("ct_2", "done")]
    assert "broken.nii.gz" in statuses[0].message and len(seen) == 4
    assert not (tmp_path / "out" / "broken.nii.gz").exists()
    for path in paths:
        single = segment_file(path, tmp_path / f"single_{path.name}", engine=engine)
        batch = read_label_map(tmp_path / "out" / path.name)
        np.testing.assert_array_equal(batch.array, single.labels)
        assert int((single.labels == 2).sum()) > 0  # the lesion is found, so the comparison means something
        assert (tmp_path / "out" / "reports" / path.name.replace(".nii.gz", ".json")).exists()
    before = (tmp_path / "out" / "ct_0.nii.gz").stat().st_mtime_ns
    calls = []
    again = segment_batch(find_cases(tmp_path / "cts", tmp_path / "out"),
                          oracle_segmenter(lambda x: calls.append(len(x)) or oracle_predictor(x)))
    assert [s.status for s in again] == ["failed", "skipped", "skipped", "skipped"] and calls == []
    assert (tmp_path / "out" / "ct_0.nii.gz").stat().st_mtime_ns == before
    # a resumed batch's table keeps the earlier run's numbers (from the reports), not blanks
    assert [(s.liver_ml, s.lesion_count) for s in again[1:]] == [(s.liver_ml, s.lesion_count) for s in statuses[1:]]
    assert all(s.liver_ml > 0 and s.precision for s in again[1:])


def test_next_ct_is_read_while_the_network_runs(tmp_path, monkeypatch):
    write_phantoms(tmp_path / "cts", 2)
    second_read_started = threading.Event()
    original_read = batch_module._read_case

    def read(case, allow_non_hu, share, *rest):  # rest: aligned_for_model (an oblique CT's warning)
        if case.case_id == "ct_1":
            second_read_started.set()
        return original_read(case, allow_non_hu, share, *rest)

    overlapped = []

    def predictor(x):
        if not overlapped:  # first batch of the first CT: the reader must already be on the second CT
            overlapped.append(second_read_started.wait(timeout=20.0))
        return oracle_predictor(x)

    monkeypatch.setattr(batch_module, "_read_case", read)
    statuses = segment_batch(find_cases(tmp_path / "cts", tmp_path / "out"), oracle_segmenter(predictor))
    assert overlapped == [True] and [s.status for s in statuses] == ["done", "done"]


def test_cli_batch_whose_output_reader_has_gone_still_writes_its_status_table(tmp_path, monkeypatch):
    """`segment cts -o out 2>&1 | head -c 5`: the cases were segmented, but the broken pipe of the status table's
    print ended the run before OUT/batch_status.csv was written, with exit 0."""
    package = tiny_unet_package(tmp_path)
    write_phantoms(tmp_path / "cts", 2)
    out = tmp_path / "out"
    monkeypatch.setattr("sys.stdout", ReaderGone())
    monkeypatch.setattr("sys.stderr", ReaderGone())
    code = cli.main(["segment", str(tmp_path / "cts"), "-o", str(out), "--model", str(package.path),
                     "--device", "cpu", "--precision", "fp32"])
    assert code == 0 and (out / "ct_0.nii.gz").exists() and (out / "ct_1.nii.gz").exists()
    assert [line.split(",")[:2] for line in (out / "batch_status.csv").read_text().splitlines()[1:]] == [
        ["ct_0", "done"], ["ct_1", "done"]]


def test_cli_batch_folder_with_tiny_model(tmp_path, capsys):
    package = tiny_unet_package(tmp_path)
    write_phantoms(tmp_path / "cts", 2)
    (tmp_path / "cts" / "bad.nii.gz").write_bytes(b"garbage")
    out = tmp_path / "out"
    code = cli.main(["segment", str(tmp_path / "cts"), "-o", str(out), "--model", str(package.path),
                     "--device", "cpu", "--precision", "fp32", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 2  # one case failed; the others were written
    assert (out / "ct_0.nii.gz").exists() and (out / "ct_1.nii.gz").exists() and not (out / "bad.nii.gz").exists()
    assert "2 done, 0 skipped (already segmented), 1 failed" in printed
    status_csv = (out / "batch_status.csv").read_text()
    assert status_csv.splitlines()[0].startswith("case_id,status") and "bad,failed" in status_csv
    code = cli.main(["segment", str(tmp_path / "cts"), "-o", str(out), "--model", str(package.path),
                     "--device", "cpu", "--no-progress"])
    assert code == 2 and "0 done, 2 skipped (already segmented), 1 failed" in capsys.readouterr().out
    code = cli.main(["segment", str(tmp_path / "cts"), "-o", str(out), "--report", str(tmp_path / "r.json"),
                     "--model", str(package.path), "--no-progress"])
    assert code == 2 and "--report is for one CT" in capsys.readouterr().err


@pytest.mark.parametrize("option, value, remedy", [
    ("--series", "2", "segment that DICOM folder alone with --series"),
    ("--slice-thickness-mm", "5", "measure LABELS --ct CT --slice-thickness-mm MM")])
def test_one_ct_options_in_a_batch_say_what_to_do_instead(tmp_path, capsys, option, value, remedy):
    """--series and --slice-thickness-mm in a batch were told 'a batch writes OUT/<case>.nii.gz and
    OUT/reports/<case>.json', which says nothing a user can do; each names its way now, refused before any work."""
    cts = tmp_path / "cts"
    cts.mkdir()
    (cts / "a.nii.gz").write_bytes(b"not read")
    code = cli.main(["segment", str(cts), "-o", str(tmp_path / "out"), option, value, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and f"{option} is for one CT; " in err and remedy in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_batch_refuses_an_output_that_is_a_file_a_zero_batch_size_and_an_input_beside_sample(tmp_path, capsys):
    """A folder of CTs with -o naming an existing file (a user's) is refused and the file kept; --batch-size 0 in a
    batch is refused as in a single run; an INPUT with --sample says to give one of them. All before any work."""
    write_phantoms(tmp_path / "cts", 1)
    mine = tmp_path / "results.nii.gz"
    mine.write_bytes(b"a user's file")
    code = cli.main(["segment", str(tmp_path / "cts"), "-o", str(mine), "--no-progress"])
    assert code == 2 and f"-o must be an output folder; '{mine}' is a file" in capsys.readouterr().err
    assert mine.read_bytes() == b"a user's file"
    out = tmp_path / "out"
    code = cli.main(["segment", str(tmp_path / "cts"), "-o", str(out), "--batch-size", "0", "--no-progress"])
    assert code == 2 and "--batch-size must be at least 1 (got 0)" in capsys.readouterr().err
    code = cli.main(["segment", str(tmp_path / "cts" / "ct_0.nii.gz"), "--sample", "-o", str(tmp_path / "s.nii.gz"),
                     "--no-progress"])
    assert code == 2 and "Give either an INPUT or --sample, not both" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "s.nii.gz").exists()


def test_cli_batch_writes_each_cases_probability_map_as_a_single_run_does(tmp_path, capsys):
    """`segment FOLDER -o OUT --probabilities PROB` writes PROB/<case>.nii.gz, the map a single run's --probabilities
    writes for that CT (it was refused: 'is for one CT', so a dataset could not be segmented for evaluate --prob);
    evaluate then takes the folder, ROC and lesion FROC included."""
    from LiverTumorSegLib.io import read_volume

    package = tiny_unet_package(tmp_path)
    paths = write_phantoms(tmp_path / "cts", 2)
    out, prob = tmp_path / "out", tmp_path / "prob"
    common = ["--model", str(package.path), "--device", "cpu", "--precision", "fp32", "--no-progress"]
    assert cli.main(["segment", str(tmp_path / "cts"), "-o", str(out), "--probabilities", str(prob)] + common) == 0
    assert "2 done" in capsys.readouterr().out
    single = tmp_path / "single"
    single.mkdir()
    for path in paths:
        case = path.name[:-len(".nii.gz")]
        assert cli.main(["segment", str(path), "-o", str(single / f"{case}.nii.gz"), "--probabilities",
                         str(single / f"{case}_prob.nii.gz")] + common) == 0
        batch_map, single_map = read_volume(prob / f"{case}.nii.gz"), read_volume(single / f"{case}_prob.nii.gz")
        assert batch_map.meta.get("content") == single_map.meta.get("content") != ""
        np.testing.assert_array_equal(batch_map.array, single_map.array)
        np.testing.assert_array_equal(read_label_map(out / f"{case}.nii.gz").array,
                                      read_label_map(single / f"{case}.nii.gz").array)
    capsys.readouterr()
    shutil.copytree(out, tmp_path / "ref")  # the labels as their own reference (one folder for both is refused)
    assert cli.main(["evaluate", "--pred", str(out), "--ref", str(tmp_path / "ref"), "--prob", str(prob), "-o",
                     str(tmp_path / "eval"), "--no-plots", "--no-progress"]) == 0
    # a rerun skips both cases; one asking for maps where an earlier run wrote none says why and how
    assert cli.main(["segment", str(tmp_path / "cts"), "-o", str(out), "--probabilities", str(prob)] + common) == 0
    assert "0 done, 2 skipped" in capsys.readouterr().out
    assert cli.main(["segment", str(tmp_path / "cts"), "-o", str(out), "--probabilities",
                     str(tmp_path / "other")] + common) == 2
    printed = capsys.readouterr().out
    assert "was segmented without writing" in printed and "--overwrite" in printed
    # a run killed after writing a case's report and map, before its label map: the rerun replaces both
    (out / "ct_1.nii.gz").unlink()
    assert cli.main(["segment", str(tmp_path / "cts"), "-o", str(out), "--probabilities", str(prob)] + common) == 0
    assert "1 done, 1 skipped" in capsys.readouterr().out and (out / "ct_1.nii.gz").exists()


def test_a_moved_results_folder_is_told_its_report_names_a_map_that_is_no_longer_there(tmp_path, capsys):
    """A results folder made with --probabilities and then moved failed every case as 'segmented without writing'
    the map that lay beside it. Whether that map is the one the report names cannot be told (the report names it by
    its path), so the case still fails, saying why."""
    import shutil

    write_phantoms(tmp_path / "cts", 1)
    run = ["segment", str(tmp_path / "cts"), "--device", "cpu", "--precision", "fp32", "--no-progress",
           "--model", str(tiny_unet_package(tmp_path).path)]
    assert cli.main(run + ["-o", str(tmp_path / "a" / "out"), "--probabilities", str(tmp_path / "a" / "prob")]) == 0
    shutil.move(str(tmp_path / "a"), str(tmp_path / "b"))
    capsys.readouterr()
    assert cli.main(run + ["-o", str(tmp_path / "b" / "out"), "--probabilities", str(tmp_path / "b" / "prob")]) == 2
    printed = capsys.readouterr().out
    assert f"names its probability map at '{tmp_path / 'a' / 'prob' / 'ct_0.nii.gz'}', which no longer exists" in \
        printed and "--overwrite" in printed


def test_a_probability_map_another_run_wrote_never_passes_for_a_cases_own(tmp_path, capsys):
    """Helper-2's audit: a rerun took any map in PROB as the case's (maps of another model after an --overwrite run
    without maps; a user's file put there), and a second output folder's run replaced the first's finished maps.
    A case's report names its map (``probabilities``), and only a map its report names counts or is replaced."""
    package = tiny_unet_package(tmp_path)
    other = tiny_unet_package(tmp_path, name="other.safetensors")
    write_phantoms(tmp_path / "cts", 1)
    out, prob = tmp_path / "out", tmp_path / "prob"
    common = ["--device", "cpu", "--precision", "fp32", "--no-progress"]
    run = ["segment", str(tmp_path / "cts")]
    assert cli.main(run + ["-o", str(out), "--probabilities", str(prob), "--model", str(package.path)] + common) == 0
    written = (prob / "ct_0.nii.gz").read_bytes()
    # another model's labels over them, without maps: the old map is not this label map's
    assert cli.main(run + ["-o", str(out), "--overwrite", "--model", str(other.path)] + common) == 0
    capsys.readouterr()
    assert cli.main(run + ["-o", str(out), "--probabilities", str(prob), "--model", str(other.path)] + common) == 2
    assert "was segmented without writing" in capsys.readouterr().out
    # a second output folder sharing PROB: the first run's finished map is kept, the case fails
    assert cli.main(run + ["-o", str(tmp_path / "out2"), "--probabilities", str(prob), "--model",
                           str(package.path)] + common) == 2
    assert "was not written for this case's report" in capsys.readouterr().out
    assert (prob / "ct_0.nii.gz").read_bytes() == written and not (tmp_path / "out2" / "ct_0.nii.gz").exists()


def test_a_probability_map_replaced_or_cut_short_at_its_path_fails_the_case_on_a_rerun(tmp_path, capsys):
    """The report named its map by path alone: another output folder's run with --overwrite (as the refusal advised)
    replaced the map with its model's, and a rerun of the first folder skipped the case, its 'own' map another
    model's; a map cut short passed too (helper-408's audit). The report records the map's SHA-256."""
    import json

    package = tiny_unet_package(tmp_path)
    other = tiny_unet_package(tmp_path, context_slices=1, name="other.safetensors")  # other weights, other maps
    write_phantoms(tmp_path / "cts", 1)
    out, prob = tmp_path / "out", tmp_path / "prob"
    common = ["--device", "cpu", "--precision", "fp32", "--no-progress"]
    run = ["segment", str(tmp_path / "cts"), "--probabilities", str(prob)]
    assert cli.main(run + ["-o", str(out), "--model", str(package.path)] + common) == 0
    report = json.loads((out / "reports" / "ct_0.json").read_text())
    from LiverTumorSegLib.package import file_sha256
    assert report["probabilities_sha256"] == file_sha256(prob / "ct_0.nii.gz")
    before = (prob / "ct_0.nii.gz").read_bytes()
    assert cli.main(run + ["-o", str(tmp_path / "out2"), "--model", str(other.path), "--overwrite"] + common) == 0
    assert (prob / "ct_0.nii.gz").read_bytes() != before
    capsys.readouterr()
    assert cli.main(run + ["-o", str(out), "--model", str(package.path)] + common) == 2
    printed = capsys.readouterr().out
    assert "is not the probability map its report" in printed and "probabilities_sha256" in printed
    assert cli.main(run + ["-o", str(out), "--model", str(package.path), "--overwrite"] + common) == 0
    capsys.readouterr()
    with open(prob / "ct_0.nii.gz", "r+b") as handle:  # cut short (a power cut, a full disk)
        handle.truncate(100)
    assert cli.main(run + ["-o", str(out), "--model", str(package.path)] + common) == 2
    assert "is not the probability map its report" in capsys.readouterr().out


def test_a_case_failing_after_its_report_was_written_puts_the_report_back(tmp_path, capsys, monkeypatch):
    """Without --overwrite the report is placed before the probability map and the label map; a failure to place the
    map (a file held open in a viewer on Windows) failed the case and left a finished-looking report (liver volume,
    label_map_sha256) beside no label map (helper-408's audit; the review: made to fail after the report). The report
    is put back as it was (here: none)."""
    from pathlib import Path

    from LiverTumorSegLib import fileutil

    package = tiny_unet_package(tmp_path)
    write_phantoms(tmp_path / "cts", 1)
    out, prob = tmp_path / "out", tmp_path / "prob"
    real_replace = fileutil.replace_file

    def held_open(source, target):
        if Path(target) == prob / "ct_0.nii.gz":  # the map's placing (its writer's own temporaries pass)
            raise PermissionError(13, "The process cannot access the file", str(target))
        return real_replace(source, target)
    monkeypatch.setattr(fileutil, "replace_file", held_open)
    assert cli.main(["segment", str(tmp_path / "cts"), "-o", str(out), "--probabilities", str(prob), "--model",
                     str(package.path), "--device", "cpu", "--precision", "fp32", "--no-progress"]) != 0
    assert "cannot access" in capsys.readouterr().out
    assert not (out / "reports" / "ct_0.json").exists() and not (out / "ct_0.nii.gz").exists()
    assert not prob.exists() or [p for p in prob.iterdir() if not p.name.startswith(".")] == []


def test_an_unwritable_probability_folder_or_one_among_listed_cts_is_refused_before_any_work(tmp_path, capsys):
    package = tiny_unet_package(tmp_path)
    paths = write_phantoms(tmp_path / "cts", 1)
    common = ["--model", str(package.path), "--device", "cpu", "--precision", "fp32", "--no-progress"]
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "out"
    assert cli.main(["segment", str(tmp_path / "cts"), "-o", str(out), "--probabilities",
                     str(tmp_path / "afile" / "sub")] + common) == 2
    assert "Probability folder" in capsys.readouterr().err and not out.exists()  # nothing made, nothing run
    listing = tmp_path / "list.csv"
    listing.write_text(f"case_id,image\npatientA,{paths[0]}\n")
    assert cli.main(["segment", str(listing), "-o", str(out), "--probabilities", str(tmp_path / "cts")] + common) == 2
    assert "holds case 'patientA''s CT" in capsys.readouterr().err


def test_batch_probability_folder_mistakes_are_refused_and_a_users_file_is_kept(tmp_path, capsys):
    package = tiny_unet_package(tmp_path)
    write_phantoms(tmp_path / "cts", 1)
    out = tmp_path / "out"
    common = ["--model", str(package.path), "--device", "cpu", "--precision", "fp32", "--no-progress"]
    for prob, words in ((out, "is the output folder"), (tmp_path / "cts", "is the input folder"),
                        (tmp_path / "p.nii.gz", "names a folder")):
        assert cli.main(["segment", str(tmp_path / "cts"), "-o", str(out), "--probabilities", str(prob)] + common) == 2
        assert words in capsys.readouterr().err
    (tmp_path / "prob").mkdir()
    mine = tmp_path / "prob" / "ct_0.nii.gz"
    mine.write_bytes(b"my own notes")
    assert cli.main(["segment", str(tmp_path / "cts"), "-o", str(out), "--probabilities", str(tmp_path / "prob")]
                    + common) == 2
    assert "was not written for this case's report" in capsys.readouterr().out
    assert mine.read_bytes() == b"my own notes"


def test_a_case_is_finished_while_the_next_runs_and_a_failing_finish_fails_only_that_case(tmp_path, monkeypatch):
    write_phantoms(tmp_path / "cts", 3)
    segmenter = oracle_segmenter()
    real_finish = segmenter.finish
    finish_started = {}
    network_of_ct2_started = threading.Event()

    def finish(volume, output, progress=None):
        case = "ct_1" if volume.shape_zyx[0] == 12 else "ct_0" if volume.shape_zyx[0] == 10 else "ct_2"
        finish_started[case] = True
        if case == "ct_1":  # the second CT's post-processing waits until the third CT's network has begun
            assert network_of_ct2_started.wait(timeout=20.0)
            raise RuntimeError("post-processing broke")
        return real_finish(volume, output, progress)

    real_predict = segmenter.predict

    def predict(volume, progress=None, cancel=None):
        if volume.shape_zyx[0] == 14:
            network_of_ct2_started.set()
        return real_predict(volume, progress, cancel)

    monkeypatch.setattr(segmenter, "finish", finish)
    monkeypatch.setattr(segmenter, "predict", predict)
    statuses = segment_batch(find_cases(tmp_path / "cts", tmp_path / "out"), segmenter)
    assert [(s.case_id, s.status) for s in statuses] == [("ct_0", "done"), ("ct_1", "failed"), ("ct_2", "done")]
    assert "post-processing broke" in statuses[1].message and statuses[1].message.startswith("post-processing")
    assert not (tmp_path / "out" / "ct_1.nii.gz").exists() and not (tmp_path / "out" / "reports" / "ct_1.json").exists()
    assert statuses[0].lesion_count == 1 and statuses[2].liver_ml > 0  # filled in by the finishing thread
    import json

    report = json.loads((tmp_path / "out" / "reports" / "ct_2.json").read_text())
    assert report["timings_s"]["read"] >= 0 and "postprocess" in report["timings_s"]
    assert report["precision"]["used"] == statuses[2].precision


def test_an_unloaded_segmenter_loads_once_beside_the_first_read(tmp_path, monkeypatch):
    """segment_batch loads the model while the reader thread reads the first CT, on a thread of its own (the main
    thread only waits: see test_ctrl_c_while_the_model_loads_ends_the_batch_and_never_hangs_on_the_import_lock);
    on_loaded runs once, after the load and before any case finishes; a bad model is raised, not recorded as a
    case's failure."""
    from LiverTumorSegLib.errors import ModelPackageError
    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference import segmenter as segmenter_module

    write_phantoms(tmp_path / "cts", 2)
    package = tiny_unet_package(tmp_path)
    events = []
    original = segmenter_module.Segmenter._load

    def counted(self, progress):
        events.append(("load", threading.current_thread() is threading.main_thread()))
        original(self, progress)

    monkeypatch.setattr(segmenter_module.Segmenter, "_load", counted)
    segmenter = Segmenter(SegmentationOptions(model=str(package.path), device="cpu", threads=1))
    statuses = segment_batch(find_cases(tmp_path / "cts", tmp_path / "out"), segmenter,
                             on_case=lambda s: events.append(("case", s.status)),
                             on_loaded=lambda: events.append(("loaded", segmenter.loaded)))
    assert [s.status for s in statuses] == ["done", "done"]
    assert events[:2] == [("load", False), ("loaded", True)] and events[2:] == [("case", "done")] * 2
    missing = Segmenter(SegmentationOptions(model=str(tmp_path / "missing.safetensors"), device="cpu"))
    with pytest.raises(ModelPackageError, match="missing"):
        segment_batch(find_cases(tmp_path / "cts", tmp_path / "out2"), missing)
    assert not (tmp_path / "out2" / "ct_0.nii.gz").exists()


def test_the_first_cases_report_says_its_read_ran_during_the_model_load(tmp_path):
    """segment_batch reads the first CTs while the model loads, but the first case's report said
    model_load_s.during_read false, so its read and model_load seconds looked like one after the other (a single
    run's report says true for the same overlap). Now it says true; a batch with a loaded model reports no load."""
    import json

    from LiverTumorSegLib.inference import SegmentationOptions

    write_phantoms(tmp_path / "cts", 2)
    package = tiny_unet_package(tmp_path)
    segmenter = Segmenter(SegmentationOptions(model=str(package.path), device="cpu", threads=1))
    statuses = segment_batch(find_cases(tmp_path / "cts", tmp_path / "out"), segmenter)
    assert [s.status for s in statuses] == ["done", "done"]
    first = json.loads((tmp_path / "out" / "reports" / "ct_0.json").read_text())
    assert first["model_load_s"]["during_read"] is True and "model_load" in first["timings_s"]
    assert "model_load_s" not in json.loads((tmp_path / "out" / "reports" / "ct_1.json").read_text())
    segment_batch(find_cases(tmp_path / "cts", tmp_path / "out2"), segmenter)  # loaded: nothing overlaps
    assert "model_load_s" not in json.loads((tmp_path / "out2" / "reports" / "ct_0.json").read_text())


def documented_batch_case_stages() -> set:
    """The ``timings_s`` stages docs/report_format.md lists for a batch case: the names it gives there, with "the
    stages from `A` to `B`" read as the one-CT stages from A to B in the order that row lists them."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "report_format.md").read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `timings_s`"))
    one_ct = re.findall(r"`(\w+)`", re.search(r"one CT gives (.*?); a batch case", row).group(1))
    batch = re.search(r"a batch case gives (.*?), as its report", row).group(1)
    first, last = re.search(r"the stages from `(\w+)` to `(\w+)`", batch).groups()
    return set(re.findall(r"`(\w+)`", batch)) | set(one_ct[one_ct.index(first):one_ct.index(last) + 1])


def test_the_stages_of_a_batch_cases_timings_are_the_documented_ones(tmp_path):
    """docs/report_format.md said a batch case's ``timings_s`` holds ``read`` and the stages from ``reorient`` to
    ``report``; the first case's also holds ``model_load`` (its run loaded the model beside its read), which the
    docs left out. Every stage a batch report gives is now named there, ``model_load`` only in the first case's."""
    import json

    from LiverTumorSegLib.inference import SegmentationOptions

    write_phantoms(tmp_path / "cts", 2)
    package = tiny_unet_package(tmp_path)
    segmenter = Segmenter(SegmentationOptions(model=str(package.path), device="cpu", threads=1))
    segment_batch(find_cases(tmp_path / "cts", tmp_path / "out"), segmenter)
    documented = documented_batch_case_stages()
    first, second = (json.loads((tmp_path / "out" / "reports" / f"ct_{i}.json").read_text()) for i in (0, 1))
    assert set(first["timings_s"]) == documented
    assert set(second["timings_s"]) == documented - {"model_load"}


def test_the_second_ct_is_read_while_the_model_loads_and_a_load_error_cancels_later_reads(tmp_path, monkeypatch):
    """The load (imports, mostly one thread) leaves a core free for longer than one read: the reader goes on to
    the second CT before the load ends (it waited for the first case's network before). A load that fails
    leaves the third CT unread and writes nothing."""
    from LiverTumorSegLib.inference import SegmentationOptions
    from LiverTumorSegLib.inference import segmenter as segmenter_module

    write_phantoms(tmp_path / "cts", 3)
    package = tiny_unet_package(tmp_path)
    second_read_started = threading.Event()
    original_read = batch_module._read_case
    read_ids = []

    def read(case, allow_non_hu, share, *rest):  # rest: aligned_for_model (an oblique CT's warning)
        read_ids.append(case.case_id)
        if case.case_id == "ct_1":
            second_read_started.set()
        return original_read(case, allow_non_hu, share, *rest)

    seen_during_load = []
    original_load = segmenter_module.Segmenter._load

    def load(self, progress):
        seen_during_load.append(second_read_started.wait(timeout=20.0))
        original_load(self, progress)

    monkeypatch.setattr(batch_module, "_read_case", read)
    monkeypatch.setattr(segmenter_module.Segmenter, "_load", load)
    segmenter = Segmenter(SegmentationOptions(model=str(package.path), device="cpu", threads=1))
    statuses = segment_batch(find_cases(tmp_path / "cts", tmp_path / "out"), segmenter)
    assert seen_during_load == [True] and [s.status for s in statuses] == ["done"] * 3
    assert read_ids == ["ct_0", "ct_1", "ct_2"]  # each CT read once, in order

    def failing_load(self, progress):
        second_read_started.wait(timeout=20.0)
        raise RuntimeError("broken model")

    read_ids.clear()
    second_read_started.clear()
    monkeypatch.setattr(segmenter_module.Segmenter, "_load", failing_load)
    broken = Segmenter(SegmentationOptions(model=str(package.path), device="cpu", threads=1))
    with pytest.raises(RuntimeError, match="broken model"):
        segment_batch(find_cases(tmp_path / "cts", tmp_path / "out2"), broken)
    assert "ct_2" not in read_ids and not list((tmp_path / "out2").glob("*.nii.gz"))


def test_memory_check_uses_the_models_grid_and_a_memory_failure_is_one_line(tmp_path, monkeypatch):
    """The batch's memory check ran on the reader thread before the model was loaded, so it estimated the CT's
    own grid with one channel; it runs with the loaded package now. A case that runs out of memory is marked
    failed with the user's words, and the next case still runs."""
    from LiverTumorSegLib.inference import segmenter as segmenter_module

    write_phantoms(tmp_path / "cts", 2)
    seen = []
    original = segmenter_module._estimate_and_check_memory

    def check(volume, package=None, batch_size=None, aligned=None, held_bytes=0, pending_bytes=0):  # aligned: an
        seen.append(package)  # oblique CT's grid; pending_bytes: the next CT's read, still running
        return original(volume, package, batch_size, aligned, held_bytes, pending_bytes)

    monkeypatch.setattr(segmenter_module, "_estimate_and_check_memory", check)
    segmenter = oracle_segmenter()
    original_predict = segmenter.predict

    def predict(volume):
        if volume.shape_zyx[0] == 10:  # ct_0
            raise MemoryError("Unable to allocate 150. MiB for an array with shape (600, 512, 512)")
        return original_predict(volume)

    monkeypatch.setattr(segmenter, "predict", predict)
    statuses = segment_batch(find_cases(tmp_path / "cts", tmp_path / "out"), segmenter)
    assert len(seen) == 2 and all(p is segmenter.package and p is not None for p in seen)
    assert [s.status for s in statuses] == ["failed", "done"]
    assert statuses[0].message.startswith("Ran out of memory (Unable to allocate 150. MiB") and "Close other" in \
        statuses[0].message


def test_a_case_running_out_of_memory_on_the_finishing_thread_names_the_command_line_flag(tmp_path, monkeypatch):
    """A case whose post-processing ran out of memory on the finishing thread was recorded there, outside the
    command's context: the `segment FOLDER` table told a command-line user to try 'batch_size=1' (the Python
    argument) where a failure on the network thread said '--batch-size 1'."""
    from LiverTumorSegLib.errors import cli_wording

    write_phantoms(tmp_path / "cts", 2)
    segmenter = oracle_segmenter()
    real_finish, real_predict = segmenter.finish, segmenter.predict
    second_network_started = threading.Event()

    def finish(volume, output, progress=None):
        if volume.shape_zyx[0] == 10:  # ct_0: fails once the main thread has gone on to ct_1 (its callback is set)
            assert second_network_started.wait(timeout=20.0)
            raise MemoryError("Unable to allocate 150. MiB for an array with shape (600, 512, 512)")
        return real_finish(volume, output, progress)

    def predict(volume, progress=None, cancel=None):
        if volume.shape_zyx[0] == 12:
            second_network_started.set()
        return real_predict(volume, progress, cancel)

    monkeypatch.setattr(segmenter, "finish", finish)
    monkeypatch.setattr(segmenter, "predict", predict)
    with cli_wording():
        statuses = segment_batch(find_cases(tmp_path / "cts", tmp_path / "out"), segmenter)
    assert [s.status for s in statuses] == ["failed", "done"]
    assert "Ran out of memory" in statuses[0].message and "--batch-size 1" in statuses[0].message
    assert "batch_size=1" not in statuses[0].message


@pytest.mark.skipif(os.name != "posix", reason="file names of any bytes: POSIX")
def test_a_file_name_that_is_not_utf8_fails_its_case_and_the_batch_goes_on(tmp_path, monkeypatch):
    """A CT named with a byte that is not UTF-8 (`ct\xff.nii.gz`, as Linux allows) in a batch folder: writing the
    status table with its case id ended the batch with 'internal error: UnicodeEncodeError ... surrogates not
    allowed', exit 1, no batch_status.csv and the later cases never segmented. That case fails (its name is
    refused, as a single run refuses it) and the table file shows its name with the byte as \xff."""
    import io

    package = tiny_unet_package(tmp_path)
    paths = write_phantoms(tmp_path / "cts", 2)
    os.rename(paths[0], os.fsdecode(os.fsencode(str(tmp_path / "cts")) + b"/ct\xff.nii.gz"))
    out = tmp_path / "out"
    printed = io.StringIO()  # as the command line's console streams, it takes the name's byte as it is
    monkeypatch.setattr("sys.stdout", printed)
    monkeypatch.setattr("sys.stderr", printed)
    code = cli.main(["segment", str(tmp_path / "cts"), "-o", str(out), "--model", str(package.path),
                     "--device", "cpu", "--precision", "fp32", "--no-progress"])
    assert code == 2 and (out / "ct_1.nii.gz").exists(), printed.getvalue()
    rows = sorted((out / "batch_status.csv").read_text(encoding="utf-8").splitlines()[1:])
    assert rows[0].startswith("ct\\xff,failed,") and "not valid UTF-8" in rows[0]
    assert rows[1].startswith("ct_1,done,")


def test_cli_batch_takes_two_stage(tmp_path, capsys):
    # --two-stage was refused in batch mode although the batch code handles it
    import json

    package = tiny_unet_package(tmp_path)
    write_phantoms(tmp_path / "cts", 2)
    out = tmp_path / "out"
    code = cli.main(["segment", str(tmp_path / "cts"), "-o", str(out), "--model", str(package.path), "--two-stage",
                     "--device", "cpu", "--precision", "fp32", "--no-progress"])
    assert code == 0 and "2 done" in capsys.readouterr().out
    for case in ("ct_0", "ct_1"):
        report = json.loads((out / "reports" / f"{case}.json").read_text())
        assert report["two_stage"] is True and "two_stage_record" in report


def test_a_long_batch_keeps_one_finished_case_in_memory_not_all(tmp_path):
    """Every finished case's result (label map) stayed referenced by a list of futures until the batch ended:
    about 50 MB per 512 x 512 x 200 case. Only the last one is held now."""
    import gc
    import weakref

    write_phantoms(tmp_path / "cts", 4)
    alive = []
    real_finish = Segmenter.finish

    def tracked_finish(self, volume, output, progress=None):
        result = real_finish(self, volume, output, progress)
        alive.append(weakref.ref(result.labels))
        return result

    counts = []
    segmenter = oracle_segmenter()
    segmenter.finish = tracked_finish.__get__(segmenter)
    segment_batch(find_cases(tmp_path / "cts", tmp_path / "out"), segmenter,
                  on_case=lambda status: (gc.collect(), counts.append(sum(r() is not None for r in alive))))
    assert len(alive) == 4 and max(counts) <= 2  # was 1, 2, 3, 4: every result kept


def test_batch_warnings_orientation_and_case_ids_like_single_runs(tmp_path, caplog):
    """Batch mode wrote a NIfTI CT without orientation with codes 1 (placed elsewhere than the CT in Slicer),
    printed no plausibility or post-processing warning, counted CSV lines without blank ones, loaded the model
    with every case done, and let 'CT' and 'ct' share output files on case-insensitive disks."""
    import logging

    import nibabel as nib

    from inference_helpers import without_nifti_orientation

    (path,) = write_phantoms(tmp_path / "cts", 1)
    without_nifti_orientation(path, path)
    with caplog.at_level(logging.WARNING):
        statuses = segment_batch(find_cases(tmp_path / "cts", tmp_path / "out"), oracle_segmenter())
    header = nib.load(str(tmp_path / "out" / "ct_0.nii.gz")).header
    assert int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0
    assert "ct_0: Implausible result" in caplog.text  # the phantom's liver is far below 300 mL
    assert statuses[0].message.endswith("warning(s); see its report")
    loads = []
    done_again = oracle_segmenter()
    done_again.load = lambda *a, **k: loads.append(1) or done_again
    assert [s.status for s in segment_batch(find_cases(tmp_path / "cts", tmp_path / "out"), done_again)] == ["skipped"]
    assert loads == []
    listing = tmp_path / "list.csv"
    _csv_refused(listing, "case_id,image\n\nfirst,cts/ct_0.nii.gz\n\nbad/id,cts/ct_0.nii.gz\n",
                 "line 5: case_id 'bad/id'")
    _csv_refused(listing, "case_id,image\nCT,cts/ct_0.nii.gz\nct,cts/other.nii.gz\n",
                 "named 'CT' and 'ct'.*ignore letter case")
    # 'café' composed and decomposed: one name on a macOS disk (the second report replaced the first's there)
    _csv_refused(listing, "case_id,image\ncaf\u00e9,cts/ct_0.nii.gz\ncafe\u0301,cts/other.nii.gz\n",
                 "how an accented letter is encoded")
    listing.write_text("case_id,image\nstra\u00dfe,cts/ct_0.nii.gz\nSTRASSE,cts/other.nii.gz\n", encoding="utf-8")
    assert [c.case_id for c in find_cases(listing, tmp_path / "out_sharp_s")] == ["stra\u00dfe", "STRASSE"]


def test_progress_json_with_a_folder_of_cts_ends_with_an_error_line(tmp_path, capsys):
    """A batch input (or a folder mixing DICOM and CT files) with --progress json exited 2 with an empty stdout,
    while the protocol promises a last {"error": ...} line."""
    import json

    write_phantoms(tmp_path / "cts", 2)
    code = cli.main(["segment", str(tmp_path / "cts"), "-o", str(tmp_path / "out"), "--progress", "json"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 2 and "--progress json is for one CT" in json.loads(out[-1])["error"]


def test_csv_case_ids_of_dicom_folders_and_spaced_headers(tmp_path):
    """An audit's reproductions: DICOM series folders '1.2.840.1136.1' and '.2' were both case '1.2.840.1136' (the
    batch refused as two cases with one output); 'image, case_id' (a space after the comma) lost its case_id
    column without a word."""
    for name in ("1.2.840.113619.2.55.3.1", "1.2.840.113619.2.55.3.2", "CT.Abdomen"):
        (tmp_path / name).mkdir()
    listing = tmp_path / "list.csv"
    listing.write_text("image\n1.2.840.113619.2.55.3.1\n1.2.840.113619.2.55.3.2\nCT.Abdomen\n")
    assert [c.case_id for c in find_cases(listing, tmp_path / "out")] == [
        "1.2.840.113619.2.55.3.1", "1.2.840.113619.2.55.3.2", "CT.Abdomen"]
    write_phantoms(tmp_path / "cts", 2)
    listing.write_text("image, case_id\ncts/ct_0.nii.gz, patientA\ncts/ct_1.nii.gz,patientB\n")
    assert [c.case_id for c in find_cases(listing, tmp_path / "out")] == ["patientA", "patientB"]


def test_a_csv_batch_writing_into_a_cases_dicom_folder_is_refused(tmp_path):
    """-o naming a listed DICOM series folder wrote label maps, reports and batch_status.csv into the series (the
    README promises an output equal to the input folder is refused); the series then could not be read alone."""
    (tmp_path / "series1").mkdir()
    listing = tmp_path / "list.csv"
    listing.write_text("image\nseries1\n")
    with pytest.raises(InputError, match="is the input folder of case 'series1'"):
        find_cases(listing, tmp_path / "series1")


def test_a_csv_batch_writing_among_its_listed_cts_is_refused(tmp_path):
    """`segment data/list.csv -o data` with the CTs ct1.nii and ct2.nii.gz (case_id p2) in data/ wrote the label
    maps ct1.nii.gz and p2.nii.gz among the CTs (a folder batch into its input folder, and such a --probabilities
    folder, are refused); a later batch of data/ read them as CTs."""
    write_phantoms(tmp_path / "data", 1)[0].rename(tmp_path / "data" / "ct1.nii.gz")
    listing = tmp_path / "data" / "list.csv"
    listing.write_text("image,case_id\nct1.nii.gz,p2\n")
    with pytest.raises(InputError, match="holds case 'p2''s CT"):
        find_cases(listing, tmp_path / "data")
    assert [c.case_id for c in find_cases(listing, tmp_path / "data" / "seg")] == ["p2"]  # a subfolder is fine


def test_an_interrupted_batch_writes_its_table_and_status_file(tmp_path, capsys, monkeypatch):
    """Ctrl-C after the first case: the finished case was on disk, but no table was printed and batch_status.csv
    was not written (an earlier run's was left, contradicting the folder)."""
    package = tiny_unet_package(tmp_path)
    write_phantoms(tmp_path / "cts", 3)
    out = tmp_path / "out"
    real = Segmenter.predict
    calls = []

    def ctrl_c_on_the_second_network(self, *args, **kwargs):  # in the main thread, as Ctrl-C arrives
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)
    monkeypatch.setattr(Segmenter, "predict", ctrl_c_on_the_second_network)
    code = cli.main(["segment", str(tmp_path / "cts"), "-o", str(out), "--model", str(package.path),
                     "--device", "cpu", "--precision", "fp32", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 130
    rows = (out / "batch_status.csv").read_text().splitlines()
    assert rows[1].startswith("ct_0,done") and rows[2].startswith("ct_1,not run") and rows[3].startswith("ct_2,not run")
    assert "1 done, 0 skipped (already segmented), 0 failed, 2 not run (interrupted; rerun to resume)" in printed


def test_a_batch_killed_without_a_word_leaves_a_table_of_the_cases_it_ended(tmp_path, capsys, monkeypatch):
    """A run killed without a word (SIGKILL, out of memory: nothing of it runs after) left the previous run's
    batch_status.csv, which called cases done that it had redone with other settings. The table is written as each
    case ends; here the 'kill' is an exception nothing handles, raised in the second case's network."""
    package = tiny_unet_package(tmp_path)
    write_phantoms(tmp_path / "cts", 3)
    out = tmp_path / "out"
    real = Segmenter.predict
    calls = []

    class Killed(BaseException):
        pass

    def killed_in_the_second_network(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise Killed
        return real(self, *args, **kwargs)
    monkeypatch.setattr(Segmenter, "predict", killed_in_the_second_network)
    with pytest.raises(Killed):
        cli.main(["segment", str(tmp_path / "cts"), "-o", str(out), "--model", str(package.path), "--device", "cpu",
                  "--precision", "fp32", "--no-progress"])
    rows = (out / "batch_status.csv").read_text().splitlines()
    assert rows[1].startswith("ct_0,done") and rows[2].startswith("ct_1,not run") and rows[3].startswith("ct_2,not run")
    assert "not reached (this run was going on, or was killed, when the table was written)" in rows[2]


def test_case_list_headers_ignore_letter_case_and_the_status_table_never_replaces_the_list(tmp_path):
    """'Image,Case_ID' lost its case_id column silently (and 'Image' was refused); a list saved as
    OUT/batch_status.csv was overwritten by the status table."""
    write_phantoms(tmp_path / "cts", 1)
    listing = tmp_path / "list.csv"
    listing.write_text("Image,Case_ID\ncts/ct_0.nii.gz,patient1\n")
    assert [c.case_id for c in find_cases(listing, tmp_path / "out")] == ["patient1"]
    status = tmp_path / "batch_status.csv"
    status.write_text("image\ncts/ct_0.nii.gz\n")
    with pytest.raises(InputError, match="is 'batch_status.csv' in the output folder"):
        find_cases(status, tmp_path)
    assert status.read_text() == "image\ncts/ct_0.nii.gz\n"


def test_a_case_an_overwrite_run_fails_on_says_its_earlier_label_map_is_kept(tmp_path):
    """`--overwrite` with a case's CT now unreadable: the earlier run's label map stays (all or none), and the table
    said only why the case failed, so `evaluate OUT` took that earlier result for this run's."""
    paths = write_phantoms(tmp_path / "cts", 2)
    segment_batch(find_cases(tmp_path / "cts", tmp_path / "out"), oracle_segmenter())
    paths[1].write_bytes(paths[1].read_bytes()[:200])  # truncated
    statuses = segment_batch(find_cases(tmp_path / "cts", tmp_path / "out"), oracle_segmenter(), overwrite=True)
    assert [s.status for s in statuses] == ["done", "failed"]
    assert "ct_1.nii.gz is an earlier run's label map, kept: not this run's result" in statuses[1].message
    assert "earlier run" not in _message_of_a_case_failing_into_a_fresh_folder(tmp_path)


def _message_of_a_case_failing_into_a_fresh_folder(tmp_path):
    """The message of a case that fails in a run into a fresh output folder (no earlier label map to speak of)."""
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    return segment_batch(find_cases(tmp_path / "bad", tmp_path / "out_bad"), oracle_segmenter())[0].message


def test_a_ct_link_whose_target_is_gone_fails_as_a_case(tmp_path):
    """A dangling link named like a CT was left out of the batch: 1 done, 0 failed, exit 0."""
    write_phantoms(tmp_path / "cts", 1)
    (tmp_path / "cts" / "p2.nii.gz").symlink_to(tmp_path / "gone" / "p2.nii.gz")
    cases = find_cases(tmp_path / "cts", tmp_path / "out")
    assert [c.case_id for c in cases] == ["ct_0", "p2"]
    statuses = segment_batch(cases, oracle_segmenter())
    assert [s.status for s in statuses] == ["done", "failed"]


def test_a_folder_named_like_a_ct_file_fails_as_a_case(tmp_path):
    """A folder 'p2.nii.gz' beside the CTs was left out of the batch: 1 done, 0 failed, no row for it, while
    `segment p2.nii.gz` alone refuses it."""
    write_phantoms(tmp_path / "cts", 1)
    (tmp_path / "cts" / "p2.nii.gz").mkdir()
    cases = find_cases(tmp_path / "cts", tmp_path / "out")
    assert [c.case_id for c in cases] == ["ct_0", "p2.nii.gz"]  # a folder keeps its whole name, as a DICOM folder
    statuses = segment_batch(cases, oracle_segmenter())
    assert [s.status for s in statuses] == ["done", "failed"] and statuses[1].message


def test_a_case_folder_with_several_series_says_what_a_batch_needs():
    """The several-series message told batch users to pass --series, which batch refuses, and lost its list."""
    from LiverTumorSegLib.io.dicom import SeveralSeriesError

    error = SeveralSeriesError("Folder 'study' holds 2 DICOM series; choose one with --series (a SeriesInstanceUID, "
                               "...):\n"
                               "  1: 1.2.3 CT 'abdomen' (40 files)\n  2: 1.2.4 CT 'chest' (30 files)")
    text = batch_module._one_line(error)
    assert text.startswith("Folder 'study' holds 2 DICOM series; a batch reads one series per case")
    assert "--series" not in text


def test_an_overwriting_batch_replaces_report_and_label_map_together(tmp_path, monkeypatch):
    """--overwrite replaced the report, then the label map, one by one: a full disk (or a kill) between them left
    this run's report beside the earlier run's label map, and a resume kept the pair as done."""
    from LiverTumorSegLib.io import writers

    write_phantoms(tmp_path / "cts", 1)
    out = tmp_path / "out"
    segment_batch(find_cases(tmp_path / "cts", out), oracle_segmenter())
    report = out / "reports" / "ct_0.json"
    before = {path: path.read_bytes() for path in (report, out / "ct_0.nii.gz")}
    real = writers.write_label_map

    def disk_full(path, *args, **kwargs):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(writers, "write_label_map", disk_full)
    monkeypatch.setattr("LiverTumorSegLib.io.write_label_map", disk_full)
    statuses = segment_batch(find_cases(tmp_path / "cts", out), oracle_segmenter(lambda x: 0.5 * oracle_predictor(x)
                                                                                  + 0.25), overwrite=True)
    assert [s.status for s in statuses] == ["failed"]
    # in the words a single run gives a full disk (it was 'OSError: [Errno 28] ...', read as an internal error)
    assert "No space left for" in statuses[0].message and "free disk space" in statuses[0].message, statuses[0]
    assert "OSError" not in statuses[0].message
    assert {path: path.read_bytes() for path in before} == before  # both as they were, never a mix
    assert sorted(p.name for p in out.iterdir()) == ["ct_0.nii.gz", "reports"]  # no temporaries left
    monkeypatch.setattr("LiverTumorSegLib.io.write_label_map", real)


def test_the_table_of_an_interrupted_overwriting_batch_says_to_rerun_with_overwrite():
    """'rerun to resume' after an interrupted --overwrite run kept the earlier run's label maps of the cases not
    run, as 'already segmented'."""
    statuses = [batch_module.CaseStatus("a", "done"), batch_module.CaseStatus("b", "not run", message="interrupted")]
    assert "rerun to resume" in batch_module.format_status_table(statuses)
    text = batch_module.format_status_table(statuses, overwrite=True)
    assert "rerun to resume" not in text and "rerun with --overwrite" in text


def test_a_status_file_that_cannot_be_written_does_not_hide_the_table(tmp_path, capsys, caplog, monkeypatch):
    """A disk that filled up during the batch: 'error: No space left' and no table, so nothing said which cases
    failed."""
    package = tiny_unet_package(tmp_path)
    write_phantoms(tmp_path / "cts", 1)

    def disk_full(statuses, path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(batch_module, "write_status_csv", disk_full)
    code = cli.main(["segment", str(tmp_path / "cts"), "-o", str(tmp_path / "out"), "--model", str(package.path),
                     "--device", "cpu", "--precision", "fp32", "--no-progress"])
    assert code == 0 and "1 done, 0 skipped" in capsys.readouterr().out
    assert "batch_status.csv was not written" in caplog.text and "No space left" in caplog.text


def test_a_label_map_a_killed_overwrite_run_left_hidden_is_put_back_and_counts_as_segmented(tmp_path, caplog):
    """A batch --overwrite killed between setting a case's earlier label map aside and moving the new one in left
    it only as the hidden '.ct_0.nii.gz.<pid>.old': a resumed run segmented the case again beside it, without a
    word. It is put back first now (and said), so the resumed run keeps it as the earlier run's result. The report
    is moved first (atomic_outputs), so such a kill also left the killed run's new report in place, its earlier
    one hidden: that earlier report is put back too (the pair stays of one run), the new one discarded."""

    write_phantoms(tmp_path / "cts", 1)
    out = tmp_path / "out"
    (out / "reports").mkdir(parents=True)
    dead = ended_process_id()
    (out / f".ct_0.nii.gz.{dead}.old").write_bytes(b"the earlier run's label map")
    earlier = '{"run": "earlier", "liver_volume_ml": 1.0, "lesions": []}'  # a segment report's keys
    (out / "reports" / f".ct_0.json.{dead}.old").write_text(earlier)
    (out / "reports" / "ct_0.json").write_text('{"run": "killed", "liver_volume_ml": 2.0, "lesions": []}')
    with caplog.at_level("WARNING"):
        statuses = segment_batch(find_cases(tmp_path / "cts", out), oracle_segmenter())
    assert [s.status for s in statuses] == ["skipped"]
    assert (out / "ct_0.nii.gz").read_bytes() == b"the earlier run's label map"
    assert (out / "reports" / "ct_0.json").read_text() == earlier
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["ct_0.nii.gz", "reports",
                                                                        str(out.joinpath("reports", "ct_0.json").relative_to(out))]
    assert "ct_0.nii.gz' was restored" in caplog.text and "ct_0.json' was put back to its earlier" in caplog.text


CTRL_C_DURING_THE_MODEL_LOAD = '''
import _imp, importlib, signal, sys, threading, time
from pathlib import Path
from LiverTumorSegLib.inference import batch

out = Path(sys.argv[1])
assert "xml.dom.minidom" not in sys.modules  # the reader's import below must be a new one, taking the lock
main = threading.main_thread()
loading = threading.Event()


def main_waits_for_the_load():
    """The main thread is in Future.result(): waiting, not importing."""
    frame = sys._current_frames().get(main.ident)
    while frame is not None:
        if frame.f_code.co_name == "result":
            return True
        frame = frame.f_back
    return False


class Segmenter:
    options = None

    def load(self):
        loading.set()
        if threading.current_thread() is main:
            # the model loads on the main thread, importing torch and MONAI: a Ctrl-C that lands in the import
            # system between its taking and releasing Python's import lock leaves that lock held by this thread
            _imp.acquire_lock()
            raise KeyboardInterrupt
        deadline = time.monotonic() + 30
        while not main_waits_for_the_load() and time.monotonic() < deadline:
            time.sleep(0.01)
        signal.pthread_kill(main.ident, signal.SIGINT)  # Ctrl-C while the model loads
        return self


def read_case(case, allow_non_hu, share):
    loading.wait(30)
    importlib.import_module("xml.dom.minidom")  # the reader imports lazily (a module not imported yet)
    return None, [], 0.0


batch._read_case = read_case
cases = [batch.BatchCase(f"c{i}", out / f"c{i}.nii.gz", out / f"c{i}.nii.gz", out / "reports" / f"c{i}.json")
         for i in range(3)]
try:
    batch.segment_batch(cases, Segmenter())
except KeyboardInterrupt:
    sys.exit(130)
'''


@pytest.mark.skipif(not hasattr(__import__("signal"), "pthread_kill"), reason="signal.pthread_kill is POSIX")
def test_ctrl_c_while_the_model_loads_ends_the_batch_and_never_hangs_on_the_import_lock(tmp_path):
    """Ctrl-C in the first second of a batch hung about 1 run in 20 (no exit within 30 s): the main thread loaded
    the model (imports) while the reader thread read the first CT (imports too). Python raises Ctrl-C's
    KeyboardInterrupt in the main thread, also inside the import system, where one landing between its taking
    and releasing the global import lock left that lock held by the main thread for good; the reader's next import
    then never returned, and the main thread's wait for the reader (or for a module the reader was importing)
    neither. The model loads on a thread of its own now, and the main thread only waits for it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
    try:
        run = subprocess.run([sys.executable, "-c", CTRL_C_DURING_THE_MODEL_LOAD, str(tmp_path)], env=env,
                             capture_output=True, text=True, timeout=120)  # a hang never ends; a busy machine is slow
    except subprocess.TimeoutExpired:
        pytest.fail("the interrupted batch hung (waiting for a reader blocked on the import lock)")
    assert run.returncode == 130, run.stderr


def test_the_wait_for_the_model_load_is_never_an_untimed_lock_wait():
    """On Windows before Python 3.14 an untimed lock wait cannot be interrupted: Ctrl-C while a batch (or one CT)
    waited for its model-load thread was delayed until the load ended (forever if it hung). The wait is made in
    steps with a timeout; the load's result and error come through unchanged."""
    import concurrent.futures

    from LiverTumorSegLib.inference.segmenter import wait_for_load

    class SlowLoad:
        def __init__(self, outcome):
            self.timeouts, self.outcome = [], outcome

        def result(self, timeout=None):
            assert timeout is not None, "an untimed wait: Ctrl-C could not interrupt it on Windows"
            self.timeouts.append(timeout)
            if len(self.timeouts) < 3:
                raise concurrent.futures.TimeoutError
            if isinstance(self.outcome, BaseException):
                raise self.outcome
            return self.outcome

    load = SlowLoad("segmenter")
    assert wait_for_load(load) == "segmenter" and len(load.timeouts) == 3 and max(load.timeouts) <= 1.0
    with pytest.raises(RuntimeError, match="package damaged"):
        wait_for_load(SlowLoad(RuntimeError("package damaged")))


def test_a_rerun_with_another_model_or_settings_is_refused_instead_of_mixing_results(tmp_path, capsys):
    """A rerun into the same folder kept every case an earlier run had written as 'already segmented', whatever
    model or post-processing that run had used: the folder (and the numbers evaluate took from it) mixed two
    models under one table. Now such a rerun stops before any work and says which cases and why; the same model
    and settings still resume, and --overwrite segments them again."""
    from LiverTumorSegLib.inference.batch import check_earlier_results
    from LiverTumorSegLib.inference.options import SegmentationOptions

    first = tiny_unet_package(tmp_path, name="first.safetensors")
    other = tiny_unet_package(tmp_path, context_slices=1, name="other.safetensors")
    assert first.sha256 != other.sha256
    write_phantoms(tmp_path / "cts", 2)
    out = tmp_path / "out"

    def segment(package, *extra):
        return cli.main(["segment", str(tmp_path / "cts"), "-o", str(out), "--model", str(package.path),
                         "--device", "cpu", "--precision", "fp32", "--no-progress"] + list(extra))

    assert segment(first) == 0
    written = {p.name: p.read_bytes() for p in out.glob("*.nii.gz")}
    capsys.readouterr()
    assert segment(other) == 2
    err = capsys.readouterr().err
    assert "2 case(s) in the output folder were segmented by an earlier run" in err
    assert "ct_0 (another model)" in err and "--overwrite" in err
    assert segment(first, "--no-fill-holes") == 2
    assert "ct_0 (other postprocessing (fill_liver_holes))" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.glob("*.nii.gz")} == written  # nothing touched
    assert segment(first, "--threads", "1") == 0  # settings that do not change a label map still resume
    assert "0 done, 2 skipped (already segmented)" in capsys.readouterr().out
    assert segment(other, "--overwrite") == 0 and "2 done" in capsys.readouterr().out
    assert segment(other) == 0 and "2 skipped" in capsys.readouterr().out  # now the other model's results
    # a label map without a readable report has nothing to compare: kept as segmented, as before
    (out / "reports" / "ct_0.json").unlink()
    check_earlier_results(find_cases(tmp_path / "cts", out), other.sha256, SegmentationOptions(model=str(other.path)))
    with pytest.raises(InputError, match=r"1 case\(s\) .*ct_1 \(another model\)"):  # ct_0 has no report to compare
        check_earlier_results(find_cases(tmp_path / "cts", out), first.sha256, SegmentationOptions())


def test_a_rerun_with_the_same_weights_but_another_window_is_refused_instead_of_mixing_results(tmp_path, capsys):
    """A package re-saved with another window (rewrite_package_metadata keeps the weights and their SHA-256) passed
    for the same model: a resumed batch kept the cases the old window had segmented as 'already segmented' and
    segmented the rest with the new one, one folder and table mixing two models."""
    import json

    from LiverTumorSegLib.package import network_settings_sha256, read_package_metadata, rewrite_package_metadata

    package = tiny_unet_package(tmp_path, name="clinic.safetensors")
    write_phantoms(tmp_path / "cts", 2)
    out = tmp_path / "out"

    def segment(*extra):
        return cli.main(["segment", str(tmp_path / "cts"), "-o", str(out), "--model", str(package.path),
                         "--device", "cpu", "--precision", "fp32", "--no-progress"] + list(extra))

    assert segment() == 0
    report = json.loads((out / "reports" / "ct_0.json").read_text())
    assert report["model_settings_sha256"] == network_settings_sha256(read_package_metadata(package.path))
    (out / "ct_1.nii.gz").unlink()  # a case still to do
    rewrite_package_metadata(package.path, lambda meta: meta["preprocessing"]["channels"][0].update(level=300.0))
    assert read_package_metadata(package.path)["weights_sha256"] == package.sha256
    capsys.readouterr()
    assert segment() == 2
    err = capsys.readouterr().err
    assert "ct_0 (another model (the same weights with other preprocessing or network settings))" in err
    assert not (out / "ct_1.nii.gz").exists()
    assert segment("--overwrite") == 0 and "2 done" in capsys.readouterr().out
    assert segment() == 0 and "2 skipped" in capsys.readouterr().out  # the same package resumes


def test_a_batch_refused_when_its_model_loads_leaves_no_output_folder_behind(tmp_path, capsys):
    """A batch whose model is refused once it loads (a misspelt --model, --tta for a model trained without
    flips) made the output folder and its missing parents first, and left them behind empty: the error said what
    to fix, and an empty results folder stayed. The folders the run made are removed again; a folder that was
    there before is kept, and one that holds anything is never touched."""
    from LiverTumorSegLib.models import build_model
    from LiverTumorSegLib.package import save_model_package
    from LiverTumorSegLib.preprocessing import PreprocessingConfig

    write_phantoms(tmp_path / "cts", 1)
    config = PreprocessingConfig(channels=[{"kind": "window", "level": 40.0, "width": 400.0}], context_slices=0,
                                 target_spacing_mm=3.0, size_multiple=8)
    network = build_model("unet", in_channels=1, num_classes=3, channels=(4, 8, 16), strides=(2, 2))
    no_flips = save_model_package(tmp_path / "no_flips.safetensors", network, config,
                                  metadata={"training": {"config": {"augmentation": {"flip_lr_probability": 0.0}}}})
    out = tmp_path / "results" / "run1"

    def segment(*extra):
        return cli.main(["segment", str(tmp_path / "cts"), "-o", str(out), "--device", "cpu", "--no-progress"]
                        + list(extra))

    assert segment("--model", "no_such_model") == 2
    assert "No installed model named 'no_such_model'" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
    assert segment("--model", str(no_flips), "--tta") == 2
    assert "trained without mirroring" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
    out.mkdir(parents=True)  # there before the run: kept
    assert segment("--model", "no_such_model") == 2
    assert out.is_dir() and not any(out.iterdir())
    assert segment("--model", str(no_flips)) == 0 and (out / "ct_0.nii.gz").exists()


def test_a_batch_refused_before_its_first_case_keeps_the_previous_table_and_leaves_no_new_folder(tmp_path, capsys):
    """The table was written before segment_batch checked the earlier results and loaded the model: a rerun refused
    for a changed CT replaced the previous batch_status.csv (a failed case's reason lost, a CT called 'skipped' that
    the error said had changed) with one of a run that did nothing, and a fresh run refused for a truncated package
    left its output folder holding that table (the batch audit). Now the table is first written once the model
    has loaded."""
    package = tiny_unet_package(tmp_path)
    paths = write_phantoms(tmp_path / "cts", 2)
    (tmp_path / "cts" / "corrupt.nii.gz").write_bytes(b"\x1f\x8bjunk")
    out = tmp_path / "out"

    def segment(target, model=str(package.path)):
        return cli.main(["segment", str(tmp_path / "cts"), "-o", str(target), "--model", model, "--device", "cpu",
                         "--precision", "fp32", "--no-progress"])

    assert segment(out) == 2  # the corrupt case failed
    before = (out / "batch_status.csv").read_text()
    assert "corrupt,failed" in before
    shutil.copy(paths[1], paths[0])  # ct_0 is now another CT
    capsys.readouterr()
    assert segment(out) == 2
    assert "another CT file" in capsys.readouterr().err
    assert (out / "batch_status.csv").read_text() == before
    truncated = tmp_path / "truncated.safetensors"
    data = package.path.read_bytes()
    truncated.write_bytes(data[:len(data) // 2])
    fresh = tmp_path / "results" / "fresh"
    assert segment(fresh, str(truncated)) == 2
    assert "truncated" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_a_case_failed_before_a_refused_model_load_leaves_the_previous_table(tmp_path, capsys, monkeypatch):
    """A case the batch fails before the model loads (a user's file where its report goes) wrote the table as it
    failed, so a load refused after it still replaced the previous table with one of a run that did nothing (the
    review). The table now waits for the load."""
    from LiverTumorSegLib.errors import InputError

    package = tiny_unet_package(tmp_path)
    write_phantoms(tmp_path / "cts", 2)
    out = tmp_path / "out"

    def segment():
        return cli.main(["segment", str(tmp_path / "cts"), "-o", str(out), "--model", str(package.path),
                         "--device", "cpu", "--precision", "fp32", "--no-progress"])

    assert segment() == 0
    before = (out / "batch_status.csv").read_text()
    (out / "ct_1.nii.gz").unlink()                       # to redo ct_1 ...
    (out / "reports" / "ct_1.json").write_text("notes")  # ... but a file of the user's sits at its report path
    write_phantoms(tmp_path / "more", 1)[0].rename(tmp_path / "cts" / "ct_9.nii.gz")  # a new case to run

    def refused(self):
        raise InputError("the model load was refused")

    monkeypatch.setattr(Segmenter, "load", refused)
    capsys.readouterr()
    assert segment() == 2 and "the model load was refused" in capsys.readouterr().err
    assert (out / "batch_status.csv").read_text() == before


def test_segment_batch_itself_refuses_to_resume_with_other_settings(tmp_path):
    """The library's segment_batch (not only the segment command) refuses to keep another run's cases."""
    from LiverTumorSegLib.inference.options import PostprocessingOptions, SegmentationOptions

    write_phantoms(tmp_path / "cts", 2)
    cases = find_cases(tmp_path / "cts", tmp_path / "out")
    assert [s.status for s in segment_batch(cases, oracle_segmenter())] == ["done", "done"]
    assert [s.status for s in segment_batch(cases, oracle_segmenter())] == ["skipped", "skipped"]
    other = Segmenter(SegmentationOptions(postprocessing=PostprocessingOptions(fill_liver_holes=False)),
                      engine=oracle_engine())
    with pytest.raises(InputError, match=r"2 case\(s\) .*ct_0 \(other postprocessing \(fill_liver_holes\)\)"):
        segment_batch(cases, other)
    assert [s.status for s in segment_batch(cases, other, overwrite=True)] == ["done", "done"]


def test_a_report_of_an_older_version_without_a_postprocessing_setting_names_it_as_one_that_version_lacked(tmp_path):
    """An earlier run by a library without a post-processing step (its report lacks that setting): the resume was
    refused as "other postprocessing", which read as a setting the user had changed; it now names the setting as one
    the earlier run's version did not have (a setting changed by the user is named as such)."""
    import json

    write_phantoms(tmp_path / "cts", 1)
    cases = find_cases(tmp_path / "cts", tmp_path / "out")
    assert [s.status for s in segment_batch(cases, oracle_segmenter())] == ["done"]
    report = json.loads(cases[0].report_path.read_text(encoding="utf-8"))
    del report["options"]["postprocessing"]["air_to_background"]
    report["options"]["postprocessing"]["fill_liver_holes"] = False
    cases[0].report_path.write_text(json.dumps(report), encoding="utf-8")
    with pytest.raises(InputError) as refused:
        segment_batch(cases, oracle_segmenter())
    assert ("ct_0 (other postprocessing (fill_liver_holes; air_to_background: a setting the earlier run's version "
            "did not have))") in str(refused.value)


def test_a_file_at_a_cases_output_path_without_a_report_is_kept_and_reported_not_skipped(tmp_path):
    """An empty file (or a copy of the CT) at OUT/<case>.nii.gz counted as 'already segmented': the batch ended
    'done' with exit 0 and no label map for that case. A run writes the report before the label map, so a label
    map without a readable report is no finished result: the case is reported failed and the file kept."""
    write_phantoms(tmp_path / "cts", 2)
    cases = find_cases(tmp_path / "cts", tmp_path / "out")
    cases[0].output_path.parent.mkdir(parents=True)
    cases[0].output_path.write_bytes(b"")
    statuses = segment_batch(cases, oracle_segmenter())
    assert [s.status for s in statuses] == ["failed", "done"]
    assert "is missing or unreadable, so it is no finished result" in statuses[0].message
    assert "--overwrite" in statuses[0].message
    assert cases[0].output_path.read_bytes() == b""  # kept
    cases[0].report_path.write_text("{not json", encoding="utf-8")
    assert [s.status for s in segment_batch(cases, oracle_segmenter())] == ["failed", "skipped"]
    assert [s.status for s in segment_batch(cases, oracle_segmenter(), overwrite=True)] == ["done", "done"]
    assert [s.status for s in segment_batch(cases, oracle_segmenter())] == ["skipped", "skipped"]


def test_a_report_nested_thousands_deep_is_unreadable_not_an_internal_error(tmp_path):
    """A damaged report of arrays nested 3000 deep beside a case's label map ended the rerun batch in 'internal
    error: RecursionError' (json.loads); it is an unreadable report: the case is failed and its files kept."""
    write_phantoms(tmp_path / "cts", 1)
    cases = find_cases(tmp_path / "cts", tmp_path / "out")
    assert [s.status for s in segment_batch(cases, oracle_segmenter())] == ["done"]
    cases[0].report_path.write_text("[" * 3000 + "]" * 3000, encoding="utf-8")
    statuses = segment_batch(cases, oracle_segmenter())
    assert [s.status for s in statuses] == ["failed"]
    assert "is missing or unreadable, so it is no finished result" in statuses[0].message


def test_label_maps_named_as_such_beside_the_cts_are_not_segmented(tmp_path, caplog):
    """LiTS keeps segmentation-N beside volume-N: the batch read the label maps as CTs, listed them as failed
    (not CT) and ended with exit 2. Files named as label or probability maps are left out, with a warning that
    names them; a folder holding only such names is taken whole (each case then says why it is no CT)."""
    import logging
    import shutil

    import nibabel as nib

    paths = write_phantoms(tmp_path / "lits", 2)
    for i, path in enumerate(paths):
        path.rename(path.with_name(f"volume-{i}.nii.gz"))
    ct = nib.load(str(tmp_path / "lits" / "volume-0.nii.gz"))
    hu = np.asarray(ct.dataobj, dtype=np.float32)
    labels = (hu > 40).astype(np.uint8) + (hu > 100).astype(np.uint8)
    nib.save(nib.Nifti1Image(labels, ct.affine), str(tmp_path / "lits" / "segmentation-0.nii.gz"))
    nib.save(nib.Nifti1Image(labels, ct.affine), str(tmp_path / "lits" / "patient1_seg.nii.gz"))
    nib.save(nib.Nifti1Image(np.clip(hu / 200.0, 0.0, 1.0), ct.affine), str(tmp_path / "lits" / "prob_1.nii.gz"))
    with caplog.at_level(logging.WARNING):
        cases = find_cases(tmp_path / "lits", tmp_path / "out")
    assert [c.case_id for c in cases] == ["volume-0", "volume-1"]
    assert "3 file(s)" in caplog.text and "segmentation-0.nii.gz" in caplog.text and "prob_1.nii.gz" in caplog.text
    only_labels = tmp_path / "labels"
    only_labels.mkdir()
    shutil.copy(tmp_path / "lits" / "segmentation-0.nii.gz", only_labels)
    assert [c.case_id for c in find_cases(only_labels, tmp_path / "out2")] == ["segmentation-0"]


def test_cts_named_as_label_maps_are_segmented_whatever_else_the_folder_holds(tmp_path, caplog):
    """'p1_liver.nii.gz' and 'p2_liver.nii.gz' (CTs: air on their first slice) were segmented in a folder of them
    alone ('taken whole'), and left out by name, out of the table and with exit 0, once the folder held one other CT
    (the batch audit). A file named so that holds a CT is segmented, said in a line; a label map so named is still
    left out."""
    import logging
    import shutil

    import nibabel as nib

    paths = write_phantoms(tmp_path / "named", 3)
    for name, path in zip(("p1_liver", "seg_p2"), paths[:2]):
        path.rename(path.with_name(f"{name}.nii.gz"))
    extra = paths[2]
    shutil.move(str(extra), str(tmp_path / "later.nii.gz"))
    assert [c.case_id for c in find_cases(tmp_path / "named", tmp_path / "out")] == ["p1_liver", "seg_p2"]
    shutil.move(str(tmp_path / "later.nii.gz"), str(extra))
    ct = nib.load(str(extra))
    labels = (np.asarray(ct.dataobj) > 40).astype(np.uint8)
    nib.save(nib.Nifti1Image(labels, ct.affine), str(tmp_path / "named" / "p3_liver.nii.gz"))
    with caplog.at_level(logging.INFO):
        cases = find_cases(tmp_path / "named", tmp_path / "out")
    assert [c.case_id for c in cases] == [extra.name.split(".")[0], "p1_liver", "seg_p2"]
    assert "2 file(s)" in caplog.text and "hold CTs (air at or below -500 HU on their first slice)" in caplog.text
    assert "named as label or probability maps and are not segmented (p3_liver.nii.gz)" in caplog.text


def test_label_maps_whose_names_say_nothing_are_told_by_their_content_and_not_segmented(tmp_path, caplog):
    """A researcher's folder of CTs holds the label maps beside them under names the name rule does not know
    (case_liver_tsv1, case_liver_v2, case_gt, case-label): each was read as a CT, failed as 'looks like a label map'
    and the batch ended with exit 2. Their content (a few whole values in 0..255, mostly 0) leaves them out, with one
    warning naming them; a CT whose first slice holds no value below 0 is still taken (read whole to decide), and a
    folder of such label maps only is taken whole (each case then says why it is no CT)."""
    import logging

    import nibabel as nib

    paths = write_phantoms(tmp_path / "cts", 2)
    ct = nib.load(str(paths[0]))
    hu = np.asarray(ct.dataobj)
    labels = ((hu > 40).astype(np.uint8) + (hu > 100).astype(np.uint8))
    names = ["ct_0_liver_tsv1.nii.gz", "ct_0_liver_v2.nii.gz", "ct_0_gt.nii.gz", "ct_1-label.nii"]
    for name in names:
        nib.save(nib.Nifti1Image(labels, ct.affine), str(tmp_path / "cts" / name))
    padded = hu.copy()
    padded[:, :, 0] = 0  # a CT whose file starts with a slice of zeros: judged on all its voxels, kept
    nib.save(nib.Nifti1Image(padded.astype(np.int16), ct.affine), str(tmp_path / "cts" / "ct_2.nii.gz"))
    with caplog.at_level(logging.WARNING):
        cases = find_cases(tmp_path / "cts", tmp_path / "out")
    assert [c.case_id for c in cases] == ["ct_0", "ct_1", "ct_2"]
    warned = [r.getMessage() for r in caplog.records if "hold label maps, not CTs" in r.getMessage()]
    assert len(warned) == 1 and "4 file(s)" in warned[0] and all(name in warned[0] for name in names)
    assert "list it in a case CSV (column 'image') and pass allow_non_hu=True" in warned[0]
    only_labels = tmp_path / "labels"
    only_labels.mkdir()
    for name in names[:2]:
        shutil.copy(tmp_path / "cts" / name, only_labels)
    assert [c.case_id for c in find_cases(only_labels, tmp_path / "out2")] == ["ct_0_liver_tsv1", "ct_0_liver_v2"]


def test_a_users_file_where_a_report_goes_is_kept_without_overwrite(tmp_path):
    """The report was written with overwrite whatever the user gave: a hand-made OUT/reports/<case>.json was
    replaced without a word. A report of this tool (a killed run's leftover: the report is written before the label
    map) is still replaced; anything else is kept and its case listed as failed, until --overwrite."""
    write_phantoms(tmp_path / "cts", 2)
    cases = find_cases(tmp_path / "cts", tmp_path / "out")
    cases[0].report_path.parent.mkdir(parents=True)
    cases[0].report_path.write_text('{"my": "hand-made notes"}', encoding="utf-8")
    cases[1].report_path.write_text('{"liver_volume_ml": 1.0, "lesions": []}', encoding="utf-8")  # a leftover
    statuses = segment_batch(cases, oracle_segmenter())
    assert [s.status for s in statuses] == ["failed", "done"]
    assert "exists and is no segment report; it was kept" in statuses[0].message
    assert cases[0].report_path.read_text(encoding="utf-8") == '{"my": "hand-made notes"}'
    assert not cases[0].output_path.exists() and cases[1].output_path.exists()
    assert [s.status for s in segment_batch(cases, oracle_segmenter(), overwrite=True)] == ["done", "done"]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="symbolic links")
def test_a_symbolic_link_where_a_report_goes_is_not_written_through_without_overwrite(tmp_path):
    """OUT/reports/<case>.json as a link to another run's report (a segment report, so taken for a killed run's
    leftover) was written through without --overwrite: the report outside OUT was replaced by this case's. No run
    makes a link there: it is kept, and its case listed as failed, as a user's file is."""
    write_phantoms(tmp_path / "cts", 1)
    other = tmp_path / "other_report.json"
    other.write_text('{"liver_volume_ml": 1.0, "lesions": []}', encoding="utf-8")
    cases = find_cases(tmp_path / "cts", tmp_path / "out")
    cases[0].report_path.parent.mkdir(parents=True)
    os.symlink(str(other), str(cases[0].report_path))
    statuses = segment_batch(cases, oracle_segmenter())
    assert [s.status for s in statuses] == ["failed"]
    assert "exists and is a symbolic link; it was kept" in statuses[0].message
    assert other.read_text(encoding="utf-8") == '{"liver_volume_ml": 1.0, "lesions": []}'
    assert cases[0].report_path.is_symlink() and not cases[0].output_path.exists()


def test_a_second_batch_run_into_a_folder_in_use_is_refused_and_a_killed_runs_lock_taken_over(tmp_path, capsys):
    """Two batch runs into one folder (another model 3 s later) each replaced the other's reports and left every
    case with one run's label map beside the other's report. The folder is now held by a lock file naming the run."""
    from LiverTumorSegLib.inference.batch import BATCH_LOCK_FILE, batch_folder_lock
    from LiverTumorSegLib.processes import process_mark_of

    package = tiny_unet_package(tmp_path)
    write_phantoms(tmp_path / "cts", 1)
    out = tmp_path / "out"
    argv = ["segment", str(tmp_path / "cts"), "-o", str(out), "--model", str(package.path), "--device", "cpu",
            "--no-progress"]
    out.mkdir()
    with batch_folder_lock(out):
        assert (out / BATCH_LOCK_FILE).exists()
    assert not (out / BATCH_LOCK_FILE).exists()  # released
    with batch_folder_lock(out):  # a run going on in this very process stands in for the other run
        assert cli.main(argv) == 2
        assert "Another batch run (process" in capsys.readouterr().err and not (out / "ct_0.nii.gz").exists()
    (out / BATCH_LOCK_FILE).write_text(process_mark_of(ended_process_id(), None), encoding="ascii")  # a killed run's
    assert cli.main(argv) == 0 and (out / "ct_0.nii.gz").exists()
    assert not (out / BATCH_LOCK_FILE).exists()


def test_a_second_batch_run_sharing_the_probability_folder_is_refused(tmp_path, capsys):
    """Two batch runs into two output folders with one --probabilities folder, at once, each replaced the other's
    maps, which both runs' reports named (one run's evaluate --prob then read the other's probabilities)."""
    from LiverTumorSegLib.inference.batch import BATCH_LOCK_FILE, batch_folder_lock

    package = tiny_unet_package(tmp_path)
    write_phantoms(tmp_path / "cts", 1)
    prob = tmp_path / "prob"
    argv = ["segment", str(tmp_path / "cts"), "-o", str(tmp_path / "out2"), "--probabilities", str(prob),
            "--model", str(package.path), "--device", "cpu", "--precision", "fp32", "--no-progress"]
    prob.mkdir()
    with batch_folder_lock(prob):  # the other run, into its own -o, writing maps into prob/
        assert cli.main(argv) == 2
        said = capsys.readouterr().err
        assert f"is writing into '{prob}'" in said and "choose another --probabilities folder" in said
        assert not (prob / "ct_0.nii.gz").exists() and not (tmp_path / "out2").exists()
    assert cli.main(argv) == 0 and (prob / "ct_0.nii.gz").exists() and not (prob / BATCH_LOCK_FILE).exists()


@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_a_batch_lock_being_written_or_taken_over_by_another_run_is_not_taken_over_again(tmp_path, monkeypatch):
    """Known limit until 25 Nov 2026: the lock went by the process mark in the file alone, so a run that found the
    file empty (another run had created it and not yet written its mark) or a killed run's mark (another run was
    taking it over at that moment) removed it and wrote on beside that run. A run now holds a flock on the file,
    which the kernel drops when it is killed: such a file is refused whatever it holds, and a killed run's is
    taken over by one run."""
    import fcntl

    from LiverTumorSegLib import folder_lock
    from LiverTumorSegLib.inference.batch import BATCH_LOCK_FILE, batch_folder_lock
    from LiverTumorSegLib.processes import process_mark_of

    monkeypatch.setattr(folder_lock, "LEFTOVER_WAIT_S", 0.3)  # the wait for an ended run's leftovers: not 15 s here
    out = tmp_path / "out"
    out.mkdir()
    lock = out / BATCH_LOCK_FILE
    lock.write_text("", encoding="ascii")  # another run has just created it
    other = os.open(str(lock), os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_EX)
    with pytest.raises(InputError, match="Another batch run is writing into"):
        with batch_folder_lock(out):
            pass
    os.write(other, process_mark_of(ended_process_id(), None).encode("ascii"))  # a killed run's mark, being taken over
    with pytest.raises(InputError, match="The batch run that held '.*' \\(process [0-9]+\\) has ended, but "):
        with batch_folder_lock(out):  # the mark's process ended, its flock still held after the wait: said so
            pass
    assert lock.exists()
    os.close(other)  # that run ended (or was killed: the kernel drops its flock)
    with batch_folder_lock(out):
        assert lock.read_text(encoding="ascii").startswith(str(os.getpid()))
    assert not lock.exists()


@pytest.mark.skipif(not hasattr(os, "symlink") or os.name != "posix", reason="symbolic links and flock")
def test_a_symbolic_link_named_as_the_batch_lock_is_not_written_through(tmp_path):
    """A symbolic link put at OUT/.livertumorseg-batch.lock (a shared output folder) was opened and truncated: the
    file it named, anyone's, was left holding only the run's process mark. The link is now removed unread and
    unwritten, and the lock is a file of its own."""
    from LiverTumorSegLib.inference.batch import BATCH_LOCK_FILE, batch_folder_lock

    out = tmp_path / "out"
    out.mkdir()
    precious = tmp_path / "precious.txt"
    precious.write_text("a user's notes", encoding="utf-8")
    os.symlink(str(precious), str(out / BATCH_LOCK_FILE))
    with batch_folder_lock(out):
        assert not (out / BATCH_LOCK_FILE).is_symlink()
        assert (out / BATCH_LOCK_FILE).read_text(encoding="ascii").startswith(str(os.getpid()))
    assert precious.read_text(encoding="utf-8") == "a user's notes"
    assert not os.path.lexists(out / BATCH_LOCK_FILE)


def test_a_resumed_batch_refuses_a_result_of_another_ct_put_under_the_same_name(tmp_path):
    """An audit resumed a batch on another cohort with the same case names: the first cohort's label maps were kept
    as 'already segmented' and scored against the second cohort's references. The report now records the CT file's
    size and modification time (input_file), and a case whose file differs is refused like other settings."""
    import json
    import os

    paths = write_phantoms(tmp_path / "cts", 2)
    cases = find_cases(tmp_path / "cts", tmp_path / "out")
    assert [s.status for s in segment_batch(cases, oracle_segmenter())] == ["done", "done"]
    recorded = json.loads((tmp_path / "out" / "reports" / "ct_1.json").read_text())["input_file"]
    assert {k: recorded[k] for k in ("bytes", "modified_ns")} == {"bytes": paths[1].stat().st_size,
                                                                  "modified_ns": paths[1].stat().st_mtime_ns}
    assert len(recorded["sample_sha256"]) == 64
    os.utime(paths[0], ns=(paths[0].stat().st_atime_ns, paths[0].stat().st_mtime_ns))  # unchanged: still resumes
    assert [s.status for s in segment_batch(cases, oracle_segmenter())] == ["skipped", "skipped"]

    other = make_phantom((12, 36, 40), (2.0, 2.0, 4.0), lesions=[], noise_hu=0.0, seed=5).ct  # another patient
    write_volume(paths[1], other, overwrite=True)
    os.utime(paths[1], ns=(recorded["modified_ns"] + 10 ** 9, recorded["modified_ns"] + 10 ** 9))
    with pytest.raises(InputError, match=r"1 case\(s\) .*ct_1 \(another CT file.*--overwrite"):
        segment_batch(cases, oracle_segmenter())
    assert [s.status for s in segment_batch(cases, oracle_segmenter(), overwrite=True)] == ["done", "done"]


def test_a_resumed_batch_takes_a_copy_without_its_times_for_the_same_ct_and_refuses_a_changed_one(tmp_path):
    """A CT copied without its modification time (cp without -p, a download, a sync) was refused as 'another CT
    file'; the report's input_file now also holds a SHA-256 of the file's first and last megabyte. A file of the
    same size with other voxels is still refused."""
    import os
    import shutil

    paths = write_phantoms(tmp_path / "cts", 2)
    cases = find_cases(tmp_path / "cts", tmp_path / "out")
    assert [s.status for s in segment_batch(cases, oracle_segmenter())] == ["done", "done"]
    copy = tmp_path / "copy.nii.gz"
    shutil.copyfile(paths[0], copy)  # contents only: a new modification time
    os.replace(copy, paths[0])
    later = paths[0].stat().st_mtime_ns + 5 * 10 ** 9
    os.utime(paths[0], ns=(later, later))
    assert [s.status for s in segment_batch(cases, oracle_segmenter())] == ["skipped", "skipped"]

    data = bytearray(paths[1].read_bytes())  # the same size, one byte of the gzip trailer (its CRC-32) changed
    data[-5] ^= 0xFF
    paths[1].write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"1 case\(s\) .*ct_1 \(another CT file: its size or content differs"):
        segment_batch(cases, oracle_segmenter())


def test_a_resumed_batch_refuses_another_ct_of_the_same_size_whose_modification_time_was_kept(tmp_path):
    """Another patient's CT of the same size put under a case's name with the segmented file's modification time
    (cp -p, an archive's whole-second times) was skipped as segmented: the time alone decided. The sampled SHA-256
    now decides whenever the report holds one."""
    import os

    paths = write_phantoms(tmp_path / "cts", 2)
    cases = find_cases(tmp_path / "cts", tmp_path / "out")
    assert [s.status for s in segment_batch(cases, oracle_segmenter())] == ["done", "done"]
    stat = paths[1].stat()
    data = bytearray(paths[1].read_bytes())  # the same size, other content (the gzip trailer's CRC-32)
    data[-5] ^= 0xFF
    paths[1].write_bytes(bytes(data))
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the segmented file's time, kept
    assert paths[1].stat().st_size == stat.st_size and paths[1].stat().st_mtime_ns == stat.st_mtime_ns
    with pytest.raises(InputError, match=r"1 case\(s\) .*ct_1 \(another CT file: its size or content differs"):
        segment_batch(cases, oracle_segmenter())


@pytest.mark.parametrize("header", ["ct_1.mhd", "ct_1.nhdr"])
def test_a_resumed_batch_refuses_a_header_whose_data_file_changed(tmp_path, header):
    """A .mhd whose .raw was replaced by another patient's voxels (same size, the header untouched) was skipped as
    already segmented: the fingerprint covered the 346-byte header only (the batch audit). It now covers the data
    file the header names."""
    import os

    from LiverTumorSegLib.io.reading import file_fingerprint

    sitk = pytest.importorskip("SimpleITK")

    def write_detached(path, array):  # ITK writes the header and its data file beside it
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((2.0, 2.0, 4.0))
        sitk.WriteImage(image, str(path), False)
        return path

    folder = tmp_path / "cts"
    folder.mkdir()
    first = make_phantom((12, 36, 40), (2.0, 2.0, 4.0), lesions=[], noise_hu=0.0, seed=1).ct
    path = write_detached(folder / header, first.array)
    data = sorted(p for p in folder.iterdir() if p != path)
    assert len(data) == 1, data                                     # the header and its one data file
    assert file_fingerprint(path)["data_file"]["bytes"] == data[0].stat().st_size
    cases = find_cases(folder, tmp_path / "out")
    assert [s.status for s in segment_batch(cases, oracle_segmenter())] == ["done"]
    assert [s.status for s in segment_batch(cases, oracle_segmenter())] == ["skipped"]
    mirrored = first.array[:, :, ::-1].copy()                       # another CT of the same size and grid
    other = tmp_path / "other"
    other.mkdir()
    write_detached(other / header, mirrored)
    replacement = next(p for p in other.iterdir() if p.suffix != path.suffix)
    stamp = data[0].stat().st_mtime_ns + 10 ** 9
    os.replace(replacement, data[0])
    os.utime(data[0], ns=(stamp, stamp))
    with pytest.raises(InputError, match=r"1 case\(s\) .*ct_1 \(another CT file"):
        segment_batch(cases, oracle_segmenter())


def test_an_explicit_bf16_rerun_does_not_keep_fp32_results_nor_the_other_way(tmp_path):
    """A batch segmented in fp32, rerun with --precision bf16 (unchecked, labels differ from fp32's a little), skipped
    every case without a word and the table named fp32. Auto against fp32 still resumes (auto's bf16 is checked)."""
    import json

    from LiverTumorSegLib.inference.batch import check_earlier_results
    from LiverTumorSegLib.inference.options import SegmentationOptions

    write_phantoms(tmp_path / "cts", 2)
    cases = find_cases(tmp_path / "cts", tmp_path / "out")
    assert [s.status for s in segment_batch(cases, oracle_segmenter())] == ["done", "done"]
    recorded = json.loads(cases[0].report_path.read_text())["options"]["precision"]
    assert recorded != "bf16"
    check_earlier_results(cases, "", SegmentationOptions(precision="fp32"))
    check_earlier_results(cases, "", SegmentationOptions(precision="auto"))
    with pytest.raises(InputError, match=r"2 case\(s\) .*ct_0 \(other precision\)"):
        check_earlier_results(cases, "", SegmentationOptions(precision="bf16"))


def test_the_device_fallback_warning_is_not_repeated_for_every_case_but_kept_in_each_report(tmp_path, caplog):
    """'--device cuda' without CUDA: the batch printed the CPU-fallback warning at the load and again for every
    case; each case's report still records it."""
    import json
    import logging

    from LiverTumorSegLib.inference.options import SegmentationOptions

    write_phantoms(tmp_path / "cts", 2)
    cases = find_cases(tmp_path / "cts", tmp_path / "out")
    engine = oracle_engine()
    engine.device_message = "CUDA was asked for but is not available; running on the CPU."
    with caplog.at_level(logging.WARNING):
        statuses = segment_batch(cases, Segmenter(SegmentationOptions(device="cpu"), engine=engine))
    assert [s.status for s in statuses] == ["done", "done"]
    assert "CUDA was asked for" not in caplog.text
    for case in cases:
        assert engine.device_message in json.loads(case.report_path.read_text())["warnings"]


def test_a_resumed_batch_refuses_a_result_of_another_dicom_series_put_in_the_cases_folder(tmp_path):
    """Known limit until 25 Nov 2026: a resumed batch compared a CT file's size and content with its report's, but a
    DICOM folder not at all, so another patient's series put in a case's folder kept the first one's label map as
    'already segmented'. The report now records the series' UID, file count, total size and a hash of its file
    names and sizes (input_dicom); the same series copied elsewhere (new times) still resumes."""
    import json
    import shutil

    from dicom_helpers import write_ct_series

    first = make_phantom((6, 24, 28), (2.0, 2.0, 4.0), lesions=[], noise_hu=0.0, seed=1).ct
    write_ct_series(tmp_path / "cts" / "case_a", first, uid_seed=1)
    write_ct_series(tmp_path / "cts" / "case_b", first, uid_seed=2)
    listing = tmp_path / "list.csv"
    listing.write_text("image\ncts/case_a\ncts/case_b\n")
    cases = find_cases(listing, tmp_path / "out")
    assert [s.status for s in segment_batch(cases, oracle_segmenter())] == ["done", "done"]
    recorded = json.loads(cases[0].report_path.read_text())["input_dicom"]
    assert recorded["num_files"] == 6 and len(recorded["files_sha256"]) == 64
    assert recorded["bytes"] == sum(p.stat().st_size for p in (tmp_path / "cts" / "case_a").iterdir())

    moved = tmp_path / "cts" / "case_a_copy"  # copied without times and put back: the same series
    shutil.copytree(tmp_path / "cts" / "case_a", moved, copy_function=shutil.copyfile)
    shutil.rmtree(tmp_path / "cts" / "case_a")
    moved.rename(tmp_path / "cts" / "case_a")
    assert [s.status for s in segment_batch(cases, oracle_segmenter())] == ["skipped", "skipped"]

    shutil.rmtree(tmp_path / "cts" / "case_b")  # another patient's series under the same folder name
    other = make_phantom((6, 24, 28), (2.0, 2.0, 4.0), lesions=[], noise_hu=0.0, seed=5).ct
    write_ct_series(tmp_path / "cts" / "case_b", other, uid_seed=9)
    with pytest.raises(InputError, match=r"1 case\(s\) .*case_b \(another CT series: the DICOM folder"):
        segment_batch(cases, oracle_segmenter())
    assert [s.status for s in segment_batch(cases, oracle_segmenter(), overwrite=True)] == ["done", "done"]


def test_a_resumed_batch_compares_the_series_of_a_case_listed_as_one_dicom_file(tmp_path):
    """A case listed as one file of its series (what the batch advises for a folder of two series) was compared as a
    file, which a DICOM read does not record: another patient's series put in the folder under the same file names
    was skipped as already segmented (the DICOM audit). The series the file is in now is compared instead; the same
    series still resumes."""
    import shutil
    from pathlib import Path

    from dicom_helpers import write_ct_series

    first = make_phantom((6, 24, 28), (2.0, 2.0, 4.0), lesions=[], noise_hu=0.0, seed=1).ct
    files = write_ct_series(tmp_path / "cts" / "case_a", first, uid_seed=1)
    listing = tmp_path / "list.csv"
    listing.write_text(f"case_id,image\ncase_a,cts/case_a/{Path(files[0]).name}\n")
    cases = find_cases(listing, tmp_path / "out")
    assert [s.status for s in segment_batch(cases, oracle_segmenter())] == ["done"]
    assert [s.status for s in segment_batch(cases, oracle_segmenter())] == ["skipped"]
    shutil.rmtree(tmp_path / "cts" / "case_a")  # another patient's series under the same file names
    other = make_phantom((6, 24, 28), (2.0, 2.0, 4.0), lesions=[], noise_hu=0.0, seed=5).ct
    again = write_ct_series(tmp_path / "cts" / "case_a", other, uid_seed=9)
    assert sorted(Path(f).name for f in again) == sorted(Path(f).name for f in files)
    with pytest.raises(InputError, match=r"1 case\(s\) .*case_a \(another CT series"):
        segment_batch(cases, oracle_segmenter())


def test_a_file_named_reports_in_the_output_folder_is_refused_before_any_work(tmp_path):
    """A user's file OUT/reports (where the batch keeps its reports folder) let every case run its network and then
    fail writing ('FileExistsError: ... reports'), exit 2 with nothing done. It is refused before any work, and
    kept."""
    write_phantoms(tmp_path / "cts", 1)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "reports").write_text("my notes", encoding="utf-8")
    with pytest.raises(InputError, match="reports' is a file, and the batch writes each case's report"):
        find_cases(tmp_path / "cts", tmp_path / "out")
    assert (tmp_path / "out" / "reports").read_text(encoding="utf-8") == "my notes"


def test_a_reports_folder_that_cannot_be_written_is_refused_before_any_work(tmp_path, monkeypatch):
    """OUT/reports owned by another user (or a read-only mount) let every case run its network and then fail at its
    report ('Output folder .../reports is not writable'), exit 2 with nothing done (the outputs audit). It is refused
    before any work, as an unwritable output folder is. Simulated: root writes anywhere a chmod allows."""
    import tempfile

    write_phantoms(tmp_path / "cts", 1)
    reports = tmp_path / "out" / "reports"
    reports.mkdir(parents=True)
    real_mkstemp = tempfile.mkstemp

    def refused_in_reports(*args, **kwargs):
        if os.path.basename(str(kwargs.get("dir", ""))) == "reports":
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refused_in_reports)
    with pytest.raises(InputError, match=r"Reports folder '.*reports' is not writable \(Permission denied\)"):
        find_cases(tmp_path / "cts", tmp_path / "out")
    monkeypatch.setattr(tempfile, "mkstemp", real_mkstemp)
    assert len(find_cases(tmp_path / "cts", tmp_path / "out")) == 1
    assert os.listdir(reports) == []  # the probe leaves nothing


def test_a_batch_of_a_folder_without_cts_names_the_folder_not_the_output(tmp_path, capsys):
    """'segment EMPTY_FOLDER -o OUT' (or a folder of notes only, or CTs with another extension) said "Output 'OUT'
    has no file extension", blaming the output folder a batch needs; it now says the input folder holds no CT."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "ct_0.nii.gz.bak").write_bytes(b"x")
    for folder, says in (("empty", "it is empty"), ("notes", "ct_0.nii.gz.bak")):
        code = cli.main(["segment", str(tmp_path / folder), "-o", str(tmp_path / "out"), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and "holds no CT files" in err and says in err and "no file extension" not in err
        assert not (tmp_path / "out").exists()


def test_a_batch_folder_of_archives_is_told_to_extract_them(tmp_path, capsys):
    """'segment EXPORTS -o OUT' with zips only named them among what the folder holds, nothing more."""
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "p1.zip").write_bytes(b"PK\x03\x04" + b"\0" * 64)
    code = cli.main(["segment", str(tmp_path / "exports"), "-o", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "holds no CT files" in err and "Its archive(s) (p1.zip) are not opened: extract them" in err
    assert not (tmp_path / "out").exists()


def test_a_folder_whose_subfolders_hold_no_dicom_series_names_the_folder_not_the_output(tmp_path, capsys):
    """'segment FOLDER -o OUT' where FOLDER held only an empty subfolder or one of notes was told "Output 'OUT' has
    no file extension", blaming the output folder (a subfolder was taken for a possible DICOM study). It now says
    the folder and its subfolders hold no CT; a subfolder with a DICOM series below makes it a batch of DICOM
    folders (:func:`test_a_folder_of_dicom_folders_is_a_batch_of_one_case_per_folder`)."""
    (tmp_path / "study" / "empty").mkdir(parents=True)
    (tmp_path / "study" / "notes" / "deeper").mkdir(parents=True)
    (tmp_path / "study" / "notes" / "deeper" / "read_me.txt").write_text("no images here")
    code = cli.main(["segment", str(tmp_path / "study"), "-o", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "no file extension" not in err
    assert "holds no CT files" in err and "empty/, notes/" in err and "nor do its subfolders hold a DICOM" in err
    assert not (tmp_path / "out").exists()
    series = tmp_path / "study" / "notes" / "deeper" / "series"
    series.mkdir()
    (series / "IM0001").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)
    assert is_batch_input(tmp_path / "study", tmp_path / "out")           # case 'notes'
    assert not is_batch_input(tmp_path / "study", tmp_path / "out.nii.gz")  # one CT: the DICOM search


def test_a_folder_of_dicom_folders_is_a_batch_of_one_case_per_folder(tmp_path, capsys, caplog):
    """A PACS export of one folder per patient, 'segment PATIENTS -o OUT', was told "Output 'OUT' has no file
    extension: one CT (a DICOM series folder is one) ..." (the DICOM audit): each subfolder holding a DICOM series
    (in it or below) is now a case named by it; a rerun skips them; subfolders of CT files beside them are named as
    not segmented; with an output file name, the folder is still one CT's DICOM search."""
    import logging

    from dicom_helpers import write_ct_series

    phantom = make_phantom(shape_zyx=(6, 32, 32), seed=1)
    write_ct_series(tmp_path / "patients" / "p1" / "study" / "series", phantom.ct, uid_seed=1)
    write_ct_series(tmp_path / "patients" / "p2", phantom.ct, uid_seed=2)
    (tmp_path / "patients" / "empty").mkdir()
    write_phantoms(tmp_path / "patients" / "niftis", 1)
    assert [(c.case_id, c.input_path.name) for c in find_cases(tmp_path / "patients", tmp_path / "out")] == [
        ("p1", "p1"), ("p2", "p2")]
    package = tiny_unet_package(tmp_path)
    args = ["segment", str(tmp_path / "patients"), "-o", str(tmp_path / "out"), "--model", str(package.path),
            "--no-progress", "--device", "cpu", "--precision", "fp32"]
    with caplog.at_level(logging.WARNING):
        assert cli.main(args) == 0
    assert "1 subfolder(s) of" in caplog.text and "(niftis)" in caplog.text
    out = capsys.readouterr().out
    assert "2 done, 0 skipped" in out
    single = read_label_map(tmp_path / "out" / "p2.nii.gz")
    np.testing.assert_array_equal(read_label_map(tmp_path / "out" / "p1.nii.gz").array, single.array)
    assert single.shape_zyx == (6, 32, 32)
    assert cli.main(args) == 0 and "0 done, 2 skipped" in capsys.readouterr().out
    assert not is_batch_input(tmp_path / "patients", tmp_path / "one.nii.gz")
    assert not is_batch_input(tmp_path / "patients" / "p2", tmp_path / "out2")  # a series folder is one CT
    (tmp_path / "out.v2").mkdir()                                      # an existing folder with a dot in its name
    assert is_batch_input(tmp_path / "patients", tmp_path / "out.v2")
    # results written into the patients' folder: a rerun names neither them nor the probability maps (the review)
    inside = ["segment", str(tmp_path / "patients"), "-o", str(tmp_path / "patients" / "results"), "--probabilities",
              str(tmp_path / "patients" / "prob")] + args[4:]
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert cli.main(inside) == 0
        assert "results" not in caplog.text and "prob" not in caplog.text and "(niftis)" in caplog.text
    capsys.readouterr()


def test_a_case_list_row_without_an_image_and_an_unknown_output_type_are_refused(tmp_path):
    """A case list's row with an empty (or blank) 'image' cell names its line; an output type no writer takes is
    refused naming the ones it takes, before any work."""
    write_phantoms(tmp_path / "cts", 1)
    listing = tmp_path / "list.csv"
    _csv_refused(listing, "case_id,image\na,cts/ct_0.nii.gz\nb,  \n", "line 3 has an empty 'image'")
    with pytest.raises(InputError, match=r"'\.png' is not supported; use \.nii\.gz, \.nii, \.nrrd or \.mha"):
        find_cases(tmp_path / "cts", tmp_path / "out", suffix=".png")
    assert not (tmp_path / "out").exists()


def test_a_data_set_folder_names_its_subfolders_of_cts_not_the_output(tmp_path, capsys):
    """'segment Task03_Liver -o OUT' (an MSD or nnU-Net data set's top folder, or LiTS's folder of 'Training
    Batch 1'/'2') said "Output 'OUT' has no file extension: one CT (a DICOM series folder is one) ...", blaming the
    output folder. It now names the subfolders that hold CTs (not labelsTr/, which holds label maps)."""
    data_set = tmp_path / "Task03_Liver"
    write_phantoms(data_set / "imagesTr", 1)
    write_phantoms(data_set / "labelsTr", 1)
    (data_set / "dataset.json").write_text("{}", encoding="utf-8")
    code = cli.main(["segment", str(data_set), "-o", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "no file extension" not in err
    assert "'imagesTr/' (1)" in err and "labelsTr" not in err
    assert not (tmp_path / "out").exists()


def test_a_dicom_series_folder_beside_the_cts_is_named_not_left_out_silently(tmp_path, caplog):
    """A batch folder of NIfTI CTs with one patient's DICOM series in a subfolder segmented the CTs and left the
    series out without a word (no row in the table, exit 0). It is still not segmented (a folder batch takes CT
    files) but a warning names it and says how to include it."""
    import logging

    write_phantoms(tmp_path / "cts", 1)
    (tmp_path / "cts" / "patient7").mkdir()
    (tmp_path / "cts" / "patient7" / "IM0001").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)
    (tmp_path / "cts" / "scratch").mkdir()  # a subfolder without DICOM files is not named
    with caplog.at_level(logging.WARNING):
        cases = find_cases(tmp_path / "cts", tmp_path / "out")
    assert [c.case_id for c in cases] == ["ct_0"]
    assert "1 subfolder(s)" in caplog.text and "patient7" in caplog.text and "scratch" not in caplog.text
    assert "case CSV" in caplog.text


def test_a_ct_link_in_a_loop_or_to_a_gone_file_says_it_is_a_link(tmp_path):
    """A link named like a CT that leads back to itself (a loop) or to a removed file failed as "Input ... does not
    exist; check the path" while 'ls' shows the name there: the case's message now says it is such a link."""
    write_phantoms(tmp_path / "cts", 1)
    (tmp_path / "cts" / "loop.nii.gz").symlink_to("loop.nii.gz")
    (tmp_path / "cts" / "p2.nii.gz").symlink_to(tmp_path / "gone" / "p2.nii.gz")
    statuses = segment_batch(find_cases(tmp_path / "cts", tmp_path / "out"), oracle_segmenter())
    assert [s.status for s in statuses] == ["done", "failed", "failed"]
    assert "is a link in a loop of links" in statuses[1].message
    assert "is a link to '" + str(tmp_path / "gone" / "p2.nii.gz") + "', which does not exist" in statuses[2].message


def test_a_users_file_named_batch_status_csv_in_the_output_folder_is_kept(tmp_path, capsys):
    """A user's own OUT/batch_status.csv (not a status table of a batch) was replaced by the run's table without
    --overwrite. It is now refused before any work and kept; an earlier batch's table is still replaced."""
    package = tiny_unet_package(tmp_path)
    write_phantoms(tmp_path / "cts", 1)
    (tmp_path / "out").mkdir()
    mine = "patient,notes\n7,check the liver dome\n"
    (tmp_path / "out" / "batch_status.csv").write_text(mine, encoding="utf-8")
    args = ["segment", str(tmp_path / "cts"), "-o", str(tmp_path / "out"), "--model", str(package.path),
            "--device", "cpu", "--precision", "fp32", "--no-progress"]
    assert cli.main(args) == 2
    assert "batch_status.csv' exists and is no batch status table" in capsys.readouterr().err
    assert (tmp_path / "out" / "batch_status.csv").read_text(encoding="utf-8") == mine
    assert not (tmp_path / "out" / "ct_0.nii.gz").exists()
    assert cli.main(args + ["--overwrite"]) == 0
    assert cli.main(args) == 0  # the table the run wrote is replaced by the next run's
    assert "ct_0,skipped" in (tmp_path / "out" / "batch_status.csv").read_text(encoding="utf-8")


def test_a_folder_named_batch_status_csv_in_the_output_folder_is_refused_also_with_overwrite(tmp_path, capsys):
    """A folder OUT/batch_status.csv was refused as "no batch status table ... pass --overwrite to replace it"; with
    --overwrite every case was segmented, no table written (a warning per case) and the run ended with exit 0. It is
    now refused before any work, with or without --overwrite, and the folder kept."""
    package = tiny_unet_package(tmp_path)
    write_phantoms(tmp_path / "cts", 1)
    folder = tmp_path / "out" / "batch_status.csv"
    folder.mkdir(parents=True)
    (folder / "keep.txt").write_text("mine", encoding="utf-8")
    args = ["segment", str(tmp_path / "cts"), "-o", str(tmp_path / "out"), "--model", str(package.path),
            "--device", "cpu", "--precision", "fp32", "--no-progress"]
    for extra in ([], ["--overwrite"]):
        assert cli.main(args + extra) == 2
        err = capsys.readouterr().err
        assert "batch_status.csv' is a folder, but the batch writes its status table as a file" in err
        assert "pass --overwrite" not in err
    assert (folder / "keep.txt").read_text(encoding="utf-8") == "mine"
    assert not (tmp_path / "out" / "ct_0.nii.gz").exists() and not (tmp_path / "out" / "reports").exists()


def test_a_ct_listed_twice_in_a_case_list_is_named_as_such(tmp_path):
    """A CSV row pasted twice was refused as "Two cases are both named 'ct_0' (X and X) ... give them distinct
    case_id values", which would segment the one CT twice; it now says the list names that CT twice."""
    write_phantoms(tmp_path / "cts", 1)
    _csv_refused(tmp_path / "list.csv", "image\ncts/ct_0.nii.gz\ncts/ct_0.nii.gz\n",
                 "lists .*ct_0.nii.gz' twice.*remove one of the rows")


def test_a_ct_listed_twice_under_two_spellings_is_named_as_such(tmp_path):
    """The one CT listed as cts/ct_0.nii.gz and cts/../cts/ct_0.nii.gz (or through a link) was refused as two cases
    "both named 'ct_0' ... give them distinct case_id values in a CSV", which would segment it twice."""
    write_phantoms(tmp_path / "cts", 1)
    _csv_refused(tmp_path / "list.csv", "image\ncts/ct_0.nii.gz\ncts/../cts/ct_0.nii.gz\n",
                 r"lists '.*cts/\.\./cts/ct_0.nii.gz' \(also as '.*cts/ct_0.nii.gz'\) twice \(case 'ct_0'\); remove one")
    if os.name != "posix":
        return  # links need privileges on Windows
    (tmp_path / "link").symlink_to(tmp_path / "cts", target_is_directory=True)
    _csv_refused(tmp_path / "list2.csv", "image\ncts/ct_0.nii.gz\nlink/ct_0.nii.gz\n", "twice.*remove one of the rows")


def test_ct_files_in_a_subfolder_are_named_not_left_out_without_a_word(tmp_path, caplog):
    """A folder batch takes the CT files directly in its folder; a CT in a subfolder got no row and no word (DICOM
    subfolders were warned of). The run's own output and probability folders inside the input folder are not named."""
    paths = write_phantoms(tmp_path / "cts", 2)
    (tmp_path / "cts" / "more").mkdir()
    paths[1].rename(tmp_path / "cts" / "more" / paths[1].name)
    out, prob = tmp_path / "cts" / "seg", tmp_path / "cts" / "prob"
    for folder in (out, prob):  # a previous run's results inside the input folder
        write_phantoms(folder, 1)
    with caplog.at_level("WARNING"):
        cases = find_cases(tmp_path / "cts", out, probability_folder=prob)
    assert [c.case_id for c in cases] == ["ct_0"]
    said = [r.getMessage() for r in caplog.records if "subfolder(s)" in r.getMessage()]
    assert len(said) == 1 and "1 subfolder(s) of" in said[0] and "hold CT files that are not segmented (more)" in said[0]


def test_an_earlier_batchs_results_inside_the_input_folder_are_not_named_as_cts_left_out(tmp_path, caplog):
    """`segment cts -o cts/seg --probabilities cts/prob`, then `segment cts -o cts/seg2`: cts/seg and cts/prob were
    named as subfolders holding "CT files that are not segmented ... run segment on each subfolder"."""
    import json

    write_phantoms(tmp_path / "cts", 1)
    for folder in ("seg", "prob", "more"):
        write_phantoms(tmp_path / "cts" / folder, 1)
    (tmp_path / "cts" / "seg" / "batch_status.csv").write_text("case_id,status\nct_0,done\n")
    (tmp_path / "cts" / "seg" / "reports").mkdir()
    (tmp_path / "cts" / "seg" / "reports" / "ct_0.json").write_text(json.dumps(
        {"probabilities": str((tmp_path / "cts" / "prob" / "ct_0.nii.gz").resolve())}))
    with caplog.at_level("WARNING"):
        find_cases(tmp_path / "cts", tmp_path / "cts" / "seg2")
    said = [r.getMessage() for r in caplog.records if "subfolder(s)" in r.getMessage()]
    assert len(said) == 1 and "hold CT files that are not segmented (more)" in said[0]


def test_the_status_table_keeps_its_columns_in_line_for_wide_and_combining_characters():
    """Padded by characters, a case named '患者 2' (two columns per character in a terminal) pushed its row out of
    line; a decomposed 'é' (e and a combining accent) takes one column."""
    from LiverTumorSegLib.inference.batch import CaseStatus, display_width, format_status_table

    assert display_width("患者 2") == 6 and display_width("cafe\u0301") == 4 and display_width("ct_1") == 4
    lines = format_status_table([CaseStatus("患者 2", "done", 1.0), CaseStatus("cafe\u0301", "done", 2.0),
                                 CaseStatus("ct_1", "failed", 0.0, message="x")]).splitlines()
    starts = {display_width(line[:line.index(" done") if " done" in line else line.index(" failed")]) for line in
              lines[1:4]}
    assert len(starts) == 1  # the status column starts at one screen column on every row


def test_a_device_fallback_during_the_next_cases_network_stays_out_of_the_case_being_finished(tmp_path):
    """A case is finished (post-processing, report) on another thread while the next case's network runs; the
    report took the engine's device warning as it stood then, so a fallback on the next case (an Apple GPU or ONNX
    Runtime failing on it: 'running on the CPU instead') was written into the report of a case that ran before it.
    The warning is now the one said by the end of the case's own network."""
    import json

    write_phantoms(tmp_path / "cts", 2)
    cases = find_cases(tmp_path / "cts", tmp_path / "out")
    engine = oracle_engine()
    segmenter = Segmenter(engine=engine)
    fallback = "The Apple GPU (MPS) failed on a batch; running on the CPU instead (slower)."
    second_network_ran = threading.Event()
    networks = []

    def with_a_fallback_on_the_second(run):
        def network(*args, **kwargs):
            result = run(*args, **kwargs)
            networks.append(1)
            if len(networks) == 2:  # as _fall_back_to_cpu does during the second case's network
                engine.device_message = fallback
                second_network_ran.set()
            return result
        return network

    engine.predict = with_a_fallback_on_the_second(engine.predict)
    engine.predict_with_probability = with_a_fallback_on_the_second(engine.predict_with_probability)
    real_finish = segmenter.finish

    def finish_once_the_next_network_ran(volume, output, progress=None):
        if len(networks) == 1:
            second_network_ran.wait(30)
        return real_finish(volume, output, progress)

    segmenter.finish = finish_once_the_next_network_ran
    statuses = segment_batch(cases, segmenter)
    assert [s.status for s in statuses] == ["done", "done"] and len(networks) == 2
    first, second = (json.loads(case.report_path.read_text())["warnings"] for case in cases)
    assert fallback not in first and fallback in second


def test_a_ct_listed_under_two_case_ids_is_named_as_listed_twice(tmp_path):
    """One CT listed under two case_ids (a row pasted twice and renamed; the file through a link or a hard link; a
    DICOM folder twice) was segmented twice without a word, as two cases; it is now refused before any work, as the
    list naming that CT twice. Two CTs under two case_ids stay two cases."""
    write_phantoms(tmp_path / "cts", 2)
    _csv_refused(tmp_path / "list.csv", "case_id,image\na,cts/ct_0.nii.gz\nb,cts/ct_1.nii.gz\nc,cts/ct_0.nii.gz\n",
                 r"lists '.*cts/ct_0.nii.gz' twice, as case 'a' and as case 'c', so the one CT would be segmented "
                 r"twice; remove one of the rows\.")
    _csv_refused(tmp_path / "list.csv", "case_id,image\nA,cts/ct_0.nii.gz\na,cts/../cts/ct_0.nii.gz\n",
                 r"lists '.*cts/\.\./cts/ct_0.nii.gz' \(also as '.*cts/ct_0.nii.gz'\) twice, as case 'A' and as case "
                 r"'a'")
    (tmp_path / "dicom").mkdir()
    _csv_refused(tmp_path / "list.csv", "case_id,image\np1,dicom\np2,dicom/\n", r"twice, as case 'p1' and as case 'p2'")
    if os.name == "posix":  # links need privileges on Windows
        os.link(tmp_path / "cts" / "ct_0.nii.gz", tmp_path / "hard.nii.gz")
        _csv_refused(tmp_path / "list.csv", "case_id,image\na,cts/ct_0.nii.gz\nb,hard.nii.gz\n",
                     r"lists '.*hard.nii.gz' \(also as '.*cts/ct_0.nii.gz'\) twice, as case 'a' and as case 'b'")
    listing = tmp_path / "list.csv"
    listing.write_text("case_id,image\na,cts/ct_0.nii.gz\nb,cts/ct_1.nii.gz\n", encoding="utf-8")
    assert [c.case_id for c in find_cases(listing, tmp_path / "out")] == ["a", "b"]


def test_nrrd_and_metaimage_label_maps_are_told_by_their_content_and_not_segmented(tmp_path, caplog):
    """The content screen covered NIfTI only: a label map beside the CTs as case_gt.nrrd, .nhdr, .mha or .mhd failed
    as a case (exit 2), and a case.nrrd label map beside the CT case.nii.gz stopped the whole batch as "Two cases are
    both named 'case' ... give them distinct case_id values in a CSV". Such files are now left out by their content
    (their first slice, read from the file's bytes) with the NIfTI label maps' warning; a NRRD or MetaImage CT, also
    one whose first slice is all 0, is still a case, and two CTs of one name are still refused."""
    import logging

    import SimpleITK as sitk

    paths = write_phantoms(tmp_path / "cts", 2)
    ct = sitk.ReadImage(str(paths[0]))
    labels = sitk.Cast(ct > 40, sitk.sitkUInt8) + sitk.Cast(ct > 100, sitk.sitkUInt8)
    paths[0].rename(tmp_path / "cts" / "case.nii.gz")
    names = ["case.nrrd", "case_gt.nhdr", "case_liver_v2.mha", "case-label.mhd"]
    for name in names:
        sitk.WriteImage(labels, str(tmp_path / "cts" / name), name.endswith((".nrrd", ".mha")))
    other = sitk.ReadImage(str(paths[1]))
    padded = sitk.GetArrayFromImage(other)
    padded[0] = 0  # a CT whose file starts with a slice of zeros: judged on all its voxels, kept
    image = sitk.GetImageFromArray(padded)
    image.CopyInformation(other)
    sitk.WriteImage(image, str(tmp_path / "cts" / "ct_2.nrrd"), True)
    sitk.WriteImage(ct, str(tmp_path / "cts" / "ct_3.mha"), True)
    with caplog.at_level(logging.WARNING):
        cases = find_cases(tmp_path / "cts", tmp_path / "out")
    assert [c.case_id for c in cases] == ["case", "ct_1", "ct_2", "ct_3"]
    warned = [r.getMessage() for r in caplog.records if "hold label maps, not CTs" in r.getMessage()]
    assert len(warned) == 1 and "4 file(s)" in warned[0] and all(name in warned[0] for name in names)
    sitk.WriteImage(ct, str(tmp_path / "cts" / "ct_1.nrrd"), True)  # a CT of the same name: two cases, refused
    with pytest.raises(InputError, match=r"Two cases are both named 'ct_1'"):
        find_cases(tmp_path / "cts", tmp_path / "out")


@pytest.mark.skipif(os.name != "posix", reason="links need privileges on Windows")
def test_a_link_in_a_batch_folder_to_another_of_its_cts_is_left_out_with_a_warning(tmp_path, caplog):
    """cts/ct_link.nii.gz -> ct_0.nii.gz (a symbolic link) or a hard link to ct_0.nii.gz segmented that CT twice, as
    cases ct_0 and ct_link. A folder is not a deliberate list (a case CSV naming one CT twice is refused): the second
    name is left out with a warning naming both, keeping the name that is not a symbolic link."""
    import logging

    write_phantoms(tmp_path / "cts", 2)
    os.symlink("ct_1.nii.gz", tmp_path / "cts" / "a_link.nii.gz")  # sorts first: the real name is kept anyway
    os.link(tmp_path / "cts" / "ct_0.nii.gz", tmp_path / "cts" / "ct_hard.nii.gz")
    with caplog.at_level(logging.WARNING):
        cases = find_cases(tmp_path / "cts", tmp_path / "out")
    assert [(c.case_id, c.input_path.name) for c in cases] == [("ct_0", "ct_0.nii.gz"), ("ct_1", "ct_1.nii.gz")]
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [m for m in said if "'a_link.nii.gz' is another name of 'ct_1.nii.gz'" in m and "as case 'ct_1'" in m]
    assert [m for m in said if "'ct_hard.nii.gz' is another name of 'ct_0.nii.gz'" in m and "as case 'ct_0'" in m]


def test_a_status_file_that_cannot_be_written_is_warned_of_once_per_cause(tmp_path, capsys, caplog, monkeypatch):
    """The table is written before the first case, again as each case ends and at the batch's end: on a full disk the
    same 'was not written' warning was repeated for every case and once more at the end (4 times for 3 cases). Said
    once per cause now; a cause that changes is said too."""
    package = tiny_unet_package(tmp_path)
    write_phantoms(tmp_path / "cts", 3)
    causes = iter([(28, "No space left on device")] * 4 + [(13, "Permission denied")])

    def cannot_write(statuses, path):
        number, words = next(causes)
        raise OSError(number, words, str(path))

    monkeypatch.setattr(batch_module, "write_status_csv", cannot_write)
    code = cli.main(["segment", str(tmp_path / "cts"), "-o", str(tmp_path / "out"), "--model", str(package.path),
                     "--device", "cpu", "--precision", "fp32", "--no-progress"])
    assert code == 0 and "3 done, 0 skipped" in capsys.readouterr().out
    warnings = [r.getMessage() for r in caplog.records if "batch_status.csv was not written" in r.getMessage()]
    assert len(warnings) == 2, warnings
    assert "No space left" in warnings[0] and "Permission denied" in warnings[1]


def test_a_json_at_a_cases_report_path_that_is_no_segment_report_does_not_mark_the_case_done(tmp_path):
    """A label map put there by hand (here a copy of the CT) beside '{"note": ...}' at the case's report path was
    skipped as already segmented: only 'a JSON object' was asked of the report (the batch audit, 1 Dec 2026)."""
    paths = write_phantoms(tmp_path / "cts", 1)
    cases = find_cases(tmp_path / "cts", tmp_path / "out")
    cases[0].output_path.parent.mkdir(parents=True)
    shutil.copy(paths[0], cases[0].output_path)
    cases[0].report_path.parent.mkdir(parents=True)
    cases[0].report_path.write_text('{"note": "my own notes"}', encoding="utf-8")
    (status,) = segment_batch(cases, oracle_segmenter())
    assert status.status == "failed" and "no finished result" in status.message
    assert cases[0].report_path.read_text(encoding="utf-8") == '{"note": "my own notes"}'  # kept


def test_a_case_whose_list_row_now_names_a_folder_is_not_the_file_it_was_done_from(tmp_path):
    """A case done from ct0.nii.gz, its CSV row later pointing at a DICOM folder: the recorded file's fingerprint was
    compared with the folder's, which raised IsADirectoryError, read as 'the same file', and another patient's
    series kept the first CT's label map as done."""
    from LiverTumorSegLib.inference.batch import _other_input_file
    from LiverTumorSegLib.io.reading import file_fingerprint

    paths = write_phantoms(tmp_path / "cts", 1)
    report = {"input_file": file_fingerprint(paths[0])}
    assert not _other_input_file(report, paths[0])
    (tmp_path / "series").mkdir()
    assert _other_input_file(report, tmp_path / "series")


def test_a_list_rows_dot_or_dot_dot_names_its_case_by_the_folder(tmp_path):
    """A case list inside a DICOM folder naming it '.', or one below it naming '..': the case id was '' (its report
    'reports/.json' refused after the network ran) or '..' (hidden outputs '...nii.gz'). The folder's own name now."""
    (tmp_path / "series_a" / "lists").mkdir(parents=True)
    here = tmp_path / "series_a" / "list.csv"
    here.write_text("image\n.\n")
    assert [c.case_id for c in find_cases(here, tmp_path / "out")] == ["series_a"]
    below = tmp_path / "series_a" / "lists" / "list.csv"
    below.write_text("image\n..\n")
    (case,) = find_cases(below, tmp_path / "out")
    assert case.case_id == "series_a" and case.output_path == tmp_path / "out" / "series_a.nii.gz"


def test_one_dicom_series_listed_by_two_of_its_files_or_by_its_folder_and_a_file_is_refused(tmp_path):
    """A DICOM file is read as its folder's series, so two of its files under two case_ids (or the folder and one of
    its files) segmented one series twice, byte-identical outputs; the list's one-CT-twice refusal compared files
    only. Two files of two series in one folder stay two cases."""
    from dicom_helpers import write_ct_series

    ct = make_phantom((4, 24, 28), (2.0, 2.0, 4.0), noise_hu=0.0).ct
    files = write_ct_series(tmp_path / "series", ct, uid_seed=1)
    listing = tmp_path / "list.csv"
    for rows in ([files[0], files[2]], [tmp_path / "series", files[1]]):
        listing.write_text("image,case_id\n" + "".join(f"{p},case{i}\n" for i, p in enumerate(rows)))
        with pytest.raises(InputError, match="twice, as case 'case0' and as case 'case1'"):
            find_cases(listing, tmp_path / "out")
    other = write_ct_series(tmp_path / "two", ct, uid_seed=2, name_prefix="a")
    second = write_ct_series(tmp_path / "two", ct, uid_seed=3, name_prefix="b")
    listing.write_text(f"image,case_id\n{other[0]},first\n{second[0]},second\n")
    assert [c.case_id for c in find_cases(listing, tmp_path / "out")] == ["first", "second"]


def test_a_batch_killed_before_its_first_case_ends_replaces_the_earlier_table(tmp_path, capsys, monkeypatch):
    """The table was first written when a case ended: a run killed before that left the previous run's, which called
    ct_0 done although its label map had been removed to redo it (the docs' way to redo a case)."""
    package = tiny_unet_package(tmp_path)
    write_phantoms(tmp_path / "cts", 2)
    out = tmp_path / "out"
    argv = ["segment", str(tmp_path / "cts"), "-o", str(out), "--model", str(package.path), "--device", "cpu",
            "--precision", "fp32", "--no-progress"]
    assert cli.main(argv) == 0
    (out / "ct_0.nii.gz").unlink()

    class Killed(BaseException):
        pass

    def killed(self, *args, **kwargs):
        raise Killed
    monkeypatch.setattr(Segmenter, "predict", killed)
    with pytest.raises(Killed):
        cli.main(argv)
    rows = (out / "batch_status.csv").read_text().splitlines()
    assert rows[1].startswith("ct_0,not run") and "not reached" in rows[1]


def _tiny_batch_args(tmp_path, *more):
    """The command line of a batch of ``tmp_path/cts`` into ``tmp_path/out`` with a tiny untrained U-Net (saved once
    in ``tmp_path/model``), and ``more``."""
    package = tmp_path / "model" / "tiny.safetensors"
    if not package.exists():
        package.parent.mkdir()
        tiny_unet_package(package.parent)
    return ["segment", str(tmp_path / "cts"), "-o", str(tmp_path / "out"), "--model", str(package),
            "--device", "cpu", "--precision", "fp32", "--no-progress"] + list(more)


def test_a_refused_rerun_keeps_the_finished_cases_in_the_status_table(tmp_path, capsys):
    """A rerun refused for other settings rewrote batch_status.csv calling every finished case 'not run', 'not
    reached (this run was going on, or was killed ...)' (the interruption audit), then 'skipped' (the run that was
    refused skipped nothing); the refused run now leaves the previous run's table as it was (the batch audit)."""
    import csv

    write_phantoms(tmp_path / "cts", 2)
    assert cli.main(_tiny_batch_args(tmp_path)) == 0
    capsys.readouterr()
    assert cli.main(_tiny_batch_args(tmp_path, "--no-postprocess")) == 2
    assert "segmented by an earlier run with" in capsys.readouterr().err
    with open(tmp_path / "out" / "batch_status.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["case_id"], row["status"]) for row in rows] == [("ct_0", "done"), ("ct_1", "done")]


def test_a_label_map_that_appears_during_the_run_is_not_paired_with_its_report(tmp_path, monkeypatch, capsys):
    """A label map copied into OUT while its case ran: the batch's report replaced the one there (or was written
    where none was), the label map could not be placed, and a rerun skipped that pair as the batch's finished case
    (the interruption audit). The report is put back as it was, so the rerun fails the case instead."""
    import importlib
    from pathlib import Path

    lesion_report = importlib.import_module("LiverTumorSegLib.inference.lesion_report")
    write_phantoms(tmp_path / "cts", 2)
    reports = tmp_path / "out" / "reports"
    reports.mkdir(parents=True)
    mine = '{"liver_volume_ml": 1.0, "lesions": [], "label_map_sha256": "%s"}' % ("0" * 64)  # a killed run's
    (reports / "ct_1.json").write_text(mine, encoding="utf-8")   # ct_1: a report there before (a killed run's)
    written = lesion_report.write_report

    def write_then_a_label_map_appears(report, path, overwrite=False):
        out = written(report, path, overwrite=overwrite)
        (tmp_path / "out" / (Path(path).stem + ".nii.gz")).write_bytes(b"someone else's label map")
        return out

    monkeypatch.setattr(lesion_report, "write_report", write_then_a_label_map_appears)
    assert cli.main(_tiny_batch_args(tmp_path)) == 2
    assert "2 failed" in capsys.readouterr().out
    assert not (reports / "ct_0.json").exists()                                  # none before: none after
    assert (reports / "ct_1.json").read_text(encoding="utf-8") == mine
    monkeypatch.setattr(lesion_report, "write_report", written)
    assert cli.main(_tiny_batch_args(tmp_path)) == 2
    printed = capsys.readouterr().out
    assert "0 skipped" in printed and "2 failed" in printed
    assert "is missing or unreadable, so it is no finished result" in printed                     # ct_0
    assert "is not the label map its report" in printed and "SHA-256 differs" in printed          # ct_1


def test_a_finished_cases_label_map_replaced_or_cut_short_is_not_taken_as_done(tmp_path, capsys):
    """A rerun skipped a case whose label map had been replaced by another file, or cut short (as a power cut can
    leave a file no one synced), beside its report (the interruption audit): the report records the label map's
    SHA-256 and a rerun checks it."""
    import json

    write_phantoms(tmp_path / "cts", 2)
    assert cli.main(_tiny_batch_args(tmp_path)) == 0
    capsys.readouterr()
    report = json.loads((tmp_path / "out" / "reports" / "ct_0.json").read_text(encoding="utf-8"))
    from LiverTumorSegLib.package import file_sha256

    assert report["label_map_sha256"] == file_sha256(tmp_path / "out" / "ct_0.nii.gz")
    data = (tmp_path / "out" / "ct_0.nii.gz").read_bytes()
    (tmp_path / "out" / "ct_0.nii.gz").write_bytes(data[: len(data) // 2])
    assert cli.main(_tiny_batch_args(tmp_path)) == 2
    printed = capsys.readouterr().out
    assert "1 skipped" in printed and "1 failed" in printed and "SHA-256 differs" in printed
    assert (tmp_path / "out" / "ct_0.nii.gz").read_bytes() == data[: len(data) // 2]              # kept
    assert cli.main(_tiny_batch_args(tmp_path, "--overwrite")) == 0
    assert "2 done" in capsys.readouterr().out


@pytest.mark.parametrize("first_slice_min, is_ct", [(-500.0, True), (-499.0, False), (-1.0, False)])
def test_the_batch_and_evaluate_read_a_first_slice_at_minus_500_hu_alike(tmp_path, first_slice_min, is_ct):
    """One rule (io.reading.first_slice_shows_ct): at -500 HU exactly the batch said 'no CT' and evaluate 'CT' (the
    review); -1, an 'ignore' value of a label map, is never a CT."""
    import nibabel as nib

    from LiverTumorSegLib.commands.evaluate import _without_cts
    from LiverTumorSegLib.inference.batch import _ct_despite_its_name

    array = np.full((8, 8, 3), 40.0, np.float32)
    array[0, 0, 0] = first_slice_min
    path = tmp_path / "p1_liver.nii.gz"
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))
    other = tmp_path / "case2.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.uint8), np.eye(4)), str(other))
    plain = tmp_path / "case1.nii.gz"
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(plain))
    assert _ct_despite_its_name(path) is is_ct
    assert (plain not in _without_cts(tmp_path, "--ref", [plain, other])) is is_ct
