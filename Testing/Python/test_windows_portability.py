"""What Windows users hit and Linux never shows, each simulated here with the Windows behaviour patched in:

- ITK (.nrrd / .mha) opens paths in the ANSI code page, so it can write a non-ASCII temporary under another name;
- a file open in Excel cannot be opened for writing or renamed (PermissionError);
- text files opened without ``newline=""`` get ``\\n`` -> ``\\r\\n``;
- some network and cloud drives report inode 0 for every file;
- PowerShell 5.1 writes UTF-16 (or UTF-8 with a byte-order mark) config files;
- CON, NUL, ``?`` and friends are not file names;
- a process that has exited can still be asked about through a handle someone holds (kernel32 faked).
"""
import builtins
import csv
import errno
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from LiverTumorSegLib import fileutil, processes
from LiverTumorSegLib.cli import file_system_error_text
from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.inference import batch
from LiverTumorSegLib.io import itk as itk_module
from LiverTumorSegLib.io import read_volume, writers
from LiverTumorSegLib.training.config import load_config_file
from LiverTumorSegLib.training.logs import LOG_COLUMNS, CsvLog, read_log
from LiverTumorSegLib.volume import ImageGeometry
from text_file_helpers import windows_csv_bytes

GEOMETRY = ImageGeometry(spacing=(0.8, 0.8, 2.5), origin=(-10.0, 20.0, 30.0),
                         direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))


def _labels():
    labels = np.zeros((4, 6, 5), dtype=np.uint8)  # (z, y, x)
    labels[1:3, 2:4, 1:4] = 1
    labels[2, 3, 2] = 2
    return labels


# ---- ITK and non-ASCII names ------------------------------------------------------------------------------------
def test_itk_temporary_names_are_ascii_and_the_output_keeps_its_own_name(tmp_path, monkeypatch):
    """The temporary ITK writes is ASCII-only (ITK on Windows could not open 'Müller'); the output is renamed onto
    the user's non-ASCII name by Python and reads back whole."""
    seen = []
    real = writers._write_itk

    def recording(tmp, *args, **kwargs):
        seen.append(Path(tmp).name)
        return real(tmp, *args, **kwargs)

    monkeypatch.setattr(writers, "_write_itk", recording)
    out = tmp_path / "Müller_seg.nrrd"
    writers.write_label_map(out, _labels(), GEOMETRY)
    assert seen and all(ord(c) < 128 for c in seen[0]), seen
    np.testing.assert_array_equal(read_volume(out).array, _labels())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Müller_seg.nrrd"]


def test_an_itk_write_that_lands_elsewhere_is_an_error_not_an_empty_output(tmp_path, monkeypatch):
    """ITK on Windows 'wrote' under a garbled name and the empty placeholder became the output (exit 0)."""
    def writes_elsewhere(tmp, *args, **kwargs):
        (tmp_path / "elsewhere.nrrd").write_bytes(b"NRRD0004\n")

    monkeypatch.setattr(writers, "_write_itk", writes_elsewhere)
    monkeypatch.setattr(sys, "platform", "win32")
    out = tmp_path / "Müller" / "seg.nrrd"
    out.parent.mkdir()
    with pytest.raises(InputError) as info:
        writers.write_label_map(out, _labels(), GEOMETRY)
    text = str(info.value)
    assert str(out) in text and "empty" in text and "non-ASCII" in text and ".nii.gz" in text
    assert list(out.parent.iterdir()) == []  # neither an empty output nor a placeholder left behind


def test_the_non_ascii_hint_is_only_given_on_windows_for_non_ascii_paths(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    assert itk_module.non_ascii_path_hint("/data/Müller/ct.nrrd") == ""
    monkeypatch.setattr(sys, "platform", "win32")
    assert itk_module.non_ascii_path_hint("/data/plain/ct.nrrd") == ""
    assert "non-ASCII" in itk_module.non_ascii_path_hint("/data/Müller/ct.nrrd")


# ---- files held open by another program ------------------------------------------------------------------------
def test_a_report_held_open_is_named_not_its_hidden_backup(tmp_path, monkeypatch):
    """Replacing outputs sets the old ones aside first; when that fails (Excel holds the file), the error named
    '.a_report.csv.<pid>.old' and the user could not tell which file to close."""
    target = tmp_path / "a_report.csv"
    target.write_text("old", encoding="utf-8")
    source = tmp_path / "new.tmp"
    source.write_text("new", encoding="utf-8")
    real = fileutil.replace_file

    def held_open(src, dst):
        if Path(src) == target:
            raise PermissionError(errno.EACCES, "The process cannot access the file", str(src), None, str(dst))
        real(src, dst)

    monkeypatch.setattr(fileutil, "replace_file", held_open)
    with pytest.raises(OSError) as info:
        fileutil.move_all_or_none([(source, target)])
    monkeypatch.setattr(sys, "platform", "win32")  # where an open file blocks a rename (elsewhere it never does)
    text = file_system_error_text(info.value)
    assert text is not None and f"'{target}'" in text and ".old" not in text and "another program" in text
    assert target.read_text(encoding="utf-8") == "old"


def test_training_log_held_open_warns_and_keeps_its_rows(tmp_path, monkeypatch):
    """log.csv open in Excel stopped training after hours (and lost the epoch); now a warning, and the rows are
    written with the next one that can be."""
    path = tmp_path / "log.csv"
    notices = []
    log = CsvLog(path, notice=notices.append)
    assert log.append({"epoch": 1, "global_step": 10, "train_loss": 1.5})
    real_open = builtins.open
    locked = {"on": True}

    def excel_open(file, mode="r", *args, **kwargs):
        if locked["on"] and str(file) == str(path) and any(c in mode for c in "wa+"):
            raise PermissionError(errno.EACCES, "being used by another process", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", excel_open)
    assert not log.append({"epoch": 2, "global_step": 20, "train_loss": 1.25})
    assert not log.append({"epoch": 3, "global_step": 30, "train_loss": 1.0})
    assert len(notices) == 1 and str(path) in notices[0]
    locked["on"] = False
    assert log.append({"epoch": 4, "global_step": 40, "train_loss": 0.75})
    assert [row["epoch"] for row in read_log(path)] == ["1", "2", "3", "4"]
    assert [row["train_loss"] for row in read_log(path)] == ["1.5", "1.25", "1", "0.75"]


@pytest.mark.parametrize("saved", ["utf-8-sig", "semicolons"])
def test_training_log_saved_from_excel_is_truncated_on_resume_not_a_crash(tmp_path, saved):
    """log.csv opened in Excel and saved (as "CSV UTF-8": a byte-order mark; as "CSV" in a German locale:
    semicolons and decimal commas) ended --resume in "internal error: KeyError: 'epoch'". A mark is skipped; a log
    in another separator is emptied with a warning (the trainer writes its rows again from the checkpoint)."""
    path = tmp_path / "log.csv"
    rows = [LOG_COLUMNS, ["1", "3", "0.9", "", "", "", "0.001", "1.5", "3"], ["2", "6", "0.8", "", "", "", "0.001",
                                                                              "1.5", "3"]]
    if saved == "utf-8-sig":
        path.write_bytes(windows_csv_bytes(rows, "utf-8-sig", ","))
    else:
        path.write_bytes(windows_csv_bytes([[c.replace(".", ",") for c in row] for row in rows], "cp1252", ";"))
    notices = []
    CsvLog(path, notice=notices.append).truncate_after(1)
    if saved == "utf-8-sig":
        assert [row["epoch"] for row in read_log(path)] == ["1"] and not notices
    else:
        assert read_log(path) == [] and len(notices) == 1 and "spreadsheet" in notices[0]
        assert path.read_text().splitlines() == [",".join(LOG_COLUMNS)]


def test_training_log_with_bytes_that_are_no_utf8_is_written_again_on_resume_not_a_crash(tmp_path):
    """A log.csv holding bytes that are no UTF-8 (damaged, or a note typed into it and saved in a Windows code page)
    ended --resume in "internal error: UnicodeDecodeError"; it is now a log not as training writes it: emptied with
    the warning, and the trainer writes its rows again from the checkpoint."""
    path = tmp_path / "log.csv"
    path.write_bytes(",".join(LOG_COLUMNS).encode() + b"\n1,3,0.9,,,,0.001,1.5,3\n\xff\xfe damaged \x80\n")
    notices = []
    CsvLog(path, notice=notices.append).truncate_after(1)
    assert read_log(path) == [] and len(notices) == 1 and "spreadsheet" in notices[0]
    path.write_bytes(path.read_bytes() + b"\x80\n")  # an undecodable byte after the header: append still works
    assert CsvLog(path).append({"epoch": 1, "global_step": 3, "train_loss": 0.9})
    assert [row["epoch"] for row in read_log(path)][-1] == "1"


# ---- newlines, inodes, encodings, names ------------------------------------------------------------------------
def test_batch_status_table_has_one_line_end_per_row_with_windows_newlines(tmp_path, monkeypatch):
    """Python on Windows writes text opened without newline="" with \\n -> \\r\\n, and the csv module's own
    \\r\\n became \\r\\r\\n: Excel showed a blank row after every case."""
    real_open = io.open

    def windows_open(file, mode="r", buffering=-1, encoding=None, errors=None, newline=None, *args, **kwargs):
        if "b" not in mode and any(c in mode for c in "wa") and newline is None:
            newline = "\r\n"  # what newline=None means on Windows when writing
        return real_open(file, mode, buffering, encoding, errors, newline, *args, **kwargs)

    monkeypatch.setattr(io, "open", windows_open)
    monkeypatch.setattr(builtins, "open", windows_open)
    statuses = [batch.CaseStatus("a", "done", 1.0, "", 1500.0, 2, "bf16"),
                batch.CaseStatus("b", "failed", 0.5, "Cannot read 'b.nii.gz'")]
    path = batch.write_status_csv(statuses, tmp_path / "batch_status.csv")
    data = path.read_bytes()
    assert b"\r\r\n" not in data and data.count(b"\r\n") == 3
    with real_open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert [row[0] for row in rows] == ["case_id", "a", "b"]


@pytest.mark.skipif(os.sep != "/", reason="on Windows a backslash is a folder separator anyway")
def test_a_case_list_written_on_windows_with_backslashes_is_read_on_linux_and_macos(tmp_path):
    """'img\\ct1.nii.gz' in a case list made on Windows failed on Linux and macOS as "Input 'img\\ct1.nii.gz' does
    not exist; check the path" (its case named 'img\\ct1'), although img/ct1.nii.gz was there; training's CSV
    already read it. A file literally named with a backslash is still taken first."""
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "ct1.nii.gz").write_bytes(b"not read here")
    (tmp_path / "odd\\name.nii.gz").write_bytes(b"a Linux file with a backslash in its name")
    (tmp_path / "cases.csv").write_text("image\nimg\\ct1.nii.gz\nodd\\name.nii.gz\nmissing\\ct2.nii.gz\n",
                                        encoding="utf-8")
    cases = batch.find_cases(tmp_path / "cases.csv", tmp_path / "out")
    assert [(case.case_id, case.input_path) for case in cases] == [
        ("ct1", tmp_path / "img" / "ct1.nii.gz"),
        ("odd\\name", tmp_path / "odd\\name.nii.gz"),
        ("missing\\ct2", tmp_path / "missing\\ct2.nii.gz")]  # left as written: the run reports it missing
    assert fileutil.csv_cell_path(tmp_path, str(tmp_path / "img" / "ct1.nii.gz")) == tmp_path / "img" / "ct1.nii.gz"


def test_files_on_a_drive_without_inodes_are_not_all_the_same_file(tmp_path, monkeypatch):
    """WebDAV, sshfs-win and some cloud drives report st_ino 0 for every file: the batch refused to resume
    ("-o is the input folder") and --overwrite said the input and output were the same file."""
    a, b = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    real_stat = os.stat

    class NoInode:
        def __init__(self, result):
            self._result = result
            self.st_ino = 0

        def __getattr__(self, name):
            return getattr(self._result, name)

    monkeypatch.setattr(os, "stat", lambda path, *args, **kwargs: NoInode(real_stat(path, *args, **kwargs)))
    assert not fileutil.same_file_among([a, b])
    assert fileutil.same_file_among([a, tmp_path / "." / "a.nii.gz"])  # the real path still identifies it


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig"])
def test_config_files_written_by_powershell_are_read(tmp_path, encoding):
    """PowerShell 5.1 writes UTF-16 with a byte-order mark ('>' / Out-File) or UTF-8 with one (-Encoding utf8):
    'internal error: UnicodeDecodeError' and 'Unexpected UTF-8 BOM' before."""
    for name, text in (("c.json", '{"epochs": 3, "lr": 0.002}\r\n'), ("c.yaml", "epochs: 3\r\nlr: 0.002\r\n")):
        path = tmp_path / name
        path.write_bytes(text.encode(encoding))
        assert load_config_file(path) == {"epochs": 3, "lr": 0.002}


def test_a_utf8_path_under_an_ascii_file_name_encoding_is_not_called_invalid_utf8():
    """Under a C locale with PYTHONUTF8=0 Python decodes file names as ASCII, and an accented but valid UTF-8 path
    was refused as 'contains bytes that are not valid UTF-8; rename it ... using UTF-8 characters only'."""
    code = ("import sys; from LiverTumorSegLib.fileutil import check_path_encoding\n"
            "try:\n    check_path_encoding(sys.argv[1], 'Input')\n"
            "except Exception as exc:\n    sys.stdout.buffer.write(str(exc).encode('utf-8'))")
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, LC_ALL="C", LANG="C", PYTHONUTF8="0", PYTHONPATH=str(repo))
    env.pop("PYTHONIOENCODING", None)
    proc = subprocess.run([sys.executable, "-c", code, "/data/M\u00fcller/ct.nii.gz"], capture_output=True,
                          env=env, timeout=60)
    out = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    if "holds letters beyond ASCII" not in out:  # a Python whose file names are UTF-8 whatever the locale
        assert out.strip() == "", out
        return
    assert "not valid UTF-8" not in out and "PYTHONUTF8=1" in out and "ascii" in out


def test_a_config_in_another_encoding_is_a_clear_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes("note: portalvenös\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8 text"):
        load_config_file(path)


@pytest.mark.parametrize("case_id", ["CON", "nul", "com1", "LPT9.x", "liver?1", 'a"b', "a*", "a|b", "case.",
                                     "com0", "COM\u00b9", "lpt\u00b3.x", "conin$", "CONOUT$"])
def test_case_ids_windows_cannot_name_are_refused_before_any_work(tmp_path, case_id):
    (tmp_path / "ct.nii.gz").write_bytes(b"")
    cases = tmp_path / "cases.csv"
    with open(cases, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["image", "case_id"], ["ct.nii.gz", case_id]])
    with pytest.raises(InputError, match="cannot be a file name on Windows"):
        batch.find_cases(cases, tmp_path / "out")


def test_ordinary_case_ids_stay_accepted(tmp_path):
    (tmp_path / "ct.nii.gz").write_bytes(b"")
    (tmp_path / "ct2.nii.gz").write_bytes(b"x")
    cases = tmp_path / "cases.csv"
    cases.write_text("image,case_id\nct.nii.gz,CONTRAST_01\nct2.nii.gz,patient 7 (v2)\n", encoding="utf-8")
    assert [c.case_id for c in batch.find_cases(cases, tmp_path / "out")] == ["CONTRAST_01", "patient 7 (v2)"]


def test_training_log_left_empty_by_a_failed_write_gets_its_header(tmp_path, monkeypatch):
    """A full disk: open('a') created log.csv, the write failed; the next row was written without the header, and
    --resume then failed on it ('internal error: KeyError: epoch')."""
    path = tmp_path / "log.csv"
    log = CsvLog(path, notice=lambda text: None)
    real_open = builtins.open

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    def full_disk_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        return FullDisk(handle) if str(file) == str(path) and "a" in mode else handle

    monkeypatch.setattr(builtins, "open", full_disk_open)
    assert not log.append({"epoch": 1, "global_step": 10, "train_loss": 1.5})
    assert path.is_file() and path.stat().st_size == 0
    monkeypatch.setattr(builtins, "open", real_open)
    assert log.append({"epoch": 2, "global_step": 20, "train_loss": 1.25})
    assert [row["epoch"] for row in read_log(path)] == ["1", "2"]
    CsvLog(path).truncate_after(1)  # what --resume does
    assert [row["epoch"] for row in read_log(path)] == ["1"]


# ---- processes --------------------------------------------------------------------------------------------------


class FakeKernel32:
    """The kernel32 functions ``processes`` calls, for one process whose exit code and creation time (a FILETIME)
    are given; counts the handles it opens and closes."""

    def __init__(self, exit_code: int, created: int):
        self.exit_code, self.created = exit_code, created
        self.open_handles = 0

    def OpenProcess(self, access, inherit, pid):
        self.open_handles += 1
        return 1234

    def CloseHandle(self, handle):
        self.open_handles -= 1
        return 1

    def GetExitCodeProcess(self, handle, code):
        code._obj.value = self.exit_code
        return 1

    def GetProcessTimes(self, handle, created, exited, kernel, user):
        created._obj.dwHighDateTime, created._obj.dwLowDateTime = self.created >> 32, self.created & 0xFFFFFFFF
        return 1


def test_an_exited_process_whose_handle_is_still_held_has_no_start_time(monkeypatch):
    """GetProcessTimes answers for a process that has exited while anyone holds its handle (subprocess.Popen keeps
    its child's): process_start_time gave a start time for an ended child, so names judged by it counted a dead
    writer as running. Only a process whose exit code is STILL_ACTIVE has one."""
    created = 134_000_000_000_000_000  # a FILETIME in 2025
    monkeypatch.setattr(sys, "platform", "win32")
    running = FakeKernel32(exit_code=processes._WINDOWS_STILL_ACTIVE, created=created)
    monkeypatch.setattr(processes, "_windows_kernel32", lambda: running)
    assert processes.process_start_time(4321) == created and processes._windows_process_alive(4321)
    assert processes.process_started_at(4321) == 1_755_526_400.0  # 2025-08-18 14:13:20 UTC
    exited = FakeKernel32(exit_code=0, created=created)
    monkeypatch.setattr(processes, "_windows_kernel32", lambda: exited)
    assert processes.process_start_time(4321) is None and not processes._windows_process_alive(4321)
    assert running.open_handles == 0 and exited.open_handles == 0


def test_kernel32_is_loaded_once_for_every_process_check(monkeypatch):
    """_windows_kernel32 loaded kernel32 (a new ctypes.WinDLL) and set its signatures again on every process check
    (each temporary name's mark, each lock and staging folder judged). It is loaded once and kept."""
    import ctypes
    import types

    loads = []

    def win_dll(name, use_last_error=False):
        loads.append((name, use_last_error))
        return types.SimpleNamespace(**{function: types.SimpleNamespace() for function in (
            "OpenProcess", "GetExitCodeProcess", "GetProcessTimes", "CloseHandle")})

    monkeypatch.setattr(ctypes, "WinDLL", win_dll, raising=False)  # absent on Linux
    processes._windows_kernel32.cache_clear()  # none loaded before (a real one on Windows)
    try:
        first = processes._windows_kernel32()
        assert processes._windows_kernel32() is first and loads == [("kernel32", True)]
        assert first.OpenProcess.argtypes and first.GetProcessTimes.argtypes  # the signatures were set
    finally:
        processes._windows_kernel32.cache_clear()  # the fake is not kept for later tests


def test_a_windows_process_mark_is_12_characters_longer_than_its_process_id(monkeypatch):
    """The start time in names was a FILETIME in decimal, 18 digits: temporary and set-aside names got 19
    characters longer, and outputs in deep folders failed at the 260-character path limit. It is in base 36 now
    (12 characters until the year 16600), and the longest mark fits the room temporary_stem keeps for it."""
    created = 134_000_000_000_000_000  # a FILETIME in 2025
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(processes, "_windows_kernel32", lambda: FakeKernel32(processes._WINDOWS_STILL_ACTIVE, created))
    assert processes.process_mark(4321) == "4321-10nf1a66iz28@" + processes.host_tag()
    longest = processes.process_mark_of(2 ** 32 - 1, 36 ** 12 - 1, "zzzz")  # the largest process id, year 16600
    assert len(f".{longest}-{'r' * 8}.tmp") == fileutil._TEMPORARY_EXTRA


def test_monai_imports_on_windows_without_a_user_name_in_the_environment(monkeypatch):
    """Python < 3.13 on Windows looks a user name up with the POSIX module pwd when LOGNAME, USER, LNAME and
    USERNAME are all unset; MONAI's import calls getpass.getuser(), so every model failed to build and the CLI said
    "needs the Python package 'pwd' ... pip install pwd". The process gets USER=uid0 instead (no os.getuid there)."""
    import getpass

    from LiverTumorSegLib.models import monai_import

    def windows_getuser():
        for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
            if os.environ.get(name):
                return os.environ[name]
        raise ModuleNotFoundError("No module named 'pwd'", name="pwd")

    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(getpass, "getuser", windows_getuser)
    monkeypatch.delattr(os, "getuid", raising=False)
    monai_import.give_monai_a_user_name()
    assert os.environ["USER"] == "uid0" and getpass.getuser() == "uid0"


@pytest.mark.skipif(not hasattr(os, "kill") or sys.platform == "win32", reason="stands a POSIX signal in for SIGBREAK")
def test_ctrl_break_stops_a_command_like_sigterm_and_training_holds_it(monkeypatch, capsys):
    """Ctrl-Break, and os.kill(pid, signal.CTRL_BREAK_EVENT) (the one way a Windows program asks another to stop),
    raise SIGBREAK, whose default ends the process at once: unfinished outputs were left and training saved no
    interrupt checkpoint. Simulated with SIGUSR2 standing in for signal.SIGBREAK."""
    import runpy
    import signal

    from LiverTumorSegLib import cli
    from LiverTumorSegLib.training import interrupts

    monkeypatch.setattr(signal, "SIGBREAK", signal.SIGUSR2, raising=False)
    previous = signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    try:
        assert signal.SIGUSR2 in cli._stop_signals()

        def parser_that_gets_ctrl_break():
            os.kill(os.getpid(), signal.SIGUSR2)
            for _ in range(100):  # the handler runs at the next bytecode
                pass
            raise AssertionError("SIGBREAK was not handled")

        monkeypatch.setattr(cli, "build_parser", parser_that_gets_ctrl_break)
        assert cli.main(["models"]) == 128 + signal.SIGUSR2
        assert "terminated (SIGUSR2) before any work started" in capsys.readouterr().err
        assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL  # given back
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        assert signal.SIGUSR2 not in cli._stop_signals()  # one started with it ignored keeps it ignored

        held = runpy.run_path(interrupts.__file__)  # the module as Windows builds it (its own imports: stdlib)
        assert signal.SIGUSR2 in held["HELD_SIGNALS"] and signal.SIGUSR2 in held["STOP_SIGNALS"]
        seen = []
        signal.signal(signal.SIGUSR2, lambda signum, frame: seen.append(signum))
        with held["interrupts_deferred"]():
            os.kill(os.getpid(), signal.SIGUSR2)
            for _ in range(100):
                pass
            assert seen == []  # held inside the block (a whole training step)
        assert seen == [signal.SIGUSR2]  # delivered when it ends
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_an_input_path_over_windows_limit_is_not_only_called_missing(tmp_path, monkeypatch):
    """Windows reports a path of 260 characters or more as not found, also for a file that is there (long paths
    off): "Input '...' does not exist; check the path" sent the user looking for a file they could see in Explorer.
    The message now says the path's length and the limit. Simulated: the limit (the file is really missing here)."""
    from LiverTumorSegLib.io import read_volume as read

    monkeypatch.setattr(fileutil, "_max_path", lambda: fileutil.WINDOWS_MAX_PATH)
    folder = tmp_path / ("d" * (200 - len(str(tmp_path)) - 1))
    folder.mkdir()
    deep = folder / ("c" * (260 - 201 - len(".nii.gz")) + ".nii.gz")
    assert len(str(deep)) == 260
    with pytest.raises(InputError) as caught:
        read(deep)
    assert ("does not exist (its full path has 260 characters, beyond Windows' limit of 259: Windows cannot open it "
            "even where it exists; move it to a folder with a shorter path") in str(caught.value)
    short = folder / "ct.nii.gz"
    with pytest.raises(InputError) as caught:
        read(short)
    assert str(caught.value) == f"Input '{short}' does not exist; check the path."  # within the limit: as before
    monkeypatch.setattr(fileutil, "_max_path", lambda: None)  # Linux and macOS: no such limit, no such hint
    assert fileutil.path_limit_hint(deep) == ""


@pytest.mark.parametrize("name, reason", [
    ("seg_2026-11-27T12:30:00.nii.gz", "it holds one of < > : \" | ? * or a control character"),
    ("seg:v2.nii.gz", "it holds one of < > : \" | ? * or a control character"),
    ("liver?.nii.gz", "it holds one of < > : \" | ? * or a control character"),
    ("report.json.", "it ends in a space or a dot"),
    ("nul.nii.gz", "'nul' is a device name there (CON, PRN, AUX, NUL, COM0-9, LPT0-9)")])
def test_an_output_name_windows_cannot_hold_is_refused_before_any_work(tmp_path, monkeypatch, name, reason):
    """An output named with a time stamp from a script (isoformat's ':'), a '?' or a device name failed on Windows
    only when its temporary was made, after the network ran, as "internal error: OSError: [Errno 22] Invalid
    argument", and 'seg:v2.nii.gz' named an NTFS alternate data stream of a hidden file '.seg'. Simulated: Windows'
    name rules switched on (the failures themselves need Windows)."""
    monkeypatch.setattr(fileutil, "_windows_file_names", lambda: True)
    with pytest.raises(InputError) as caught:
        fileutil.check_can_write(tmp_path / name)
    assert str(caught.value) == f"Output '{tmp_path / name}' cannot be a file name on Windows ({reason}); choose " \
                                "another name."
    assert list(tmp_path.iterdir()) == []
    fine = "seg_2026-11-27T12-30-00.nii.gz"
    assert fileutil.check_can_write(tmp_path / fine).name == fine
    monkeypatch.setattr(fileutil, "_windows_file_names", lambda: False)  # Linux and macOS take such names
    assert fileutil.check_can_write(tmp_path / name).name == name


def _windows_read_only_rules(monkeypatch):
    """Windows' rules for a file whose Read-only attribute is set (its mode without write permission here):
    os.replace onto it and deleting it are refused (PermissionError), renaming it is allowed."""
    import stat

    real_replace, real_unlink = os.replace, os.unlink

    def read_only(path) -> bool:
        return os.path.isfile(path) and not os.stat(path).st_mode & stat.S_IWRITE

    def windows_replace(source, target, **kwargs):
        if read_only(target):
            raise PermissionError(errno.EACCES, "Access is denied", str(source), None, str(target))
        return real_replace(source, target, **kwargs)

    def windows_unlink(path, *args, **kwargs):
        if read_only(path):
            raise PermissionError(errno.EACCES, "Access is denied", str(path))
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(fileutil, "REPLACE_RETRY_SECONDS", (0.0, 0.0))
    monkeypatch.setattr(os, "replace", windows_replace)
    monkeypatch.setattr(os, "unlink", windows_unlink)
    monkeypatch.setattr(os, "remove", windows_unlink)


def test_overwrite_replaces_a_read_only_output_on_windows_as_elsewhere(tmp_path, monkeypatch):
    """An output whose Read-only attribute is set (copied from a CD or DVD) was replaced by --overwrite on Linux
    and macOS, but on Windows a single output failed after 2 s of retries as "it is probably open in another
    program" (closing programs did not help), and a label map written with its report was replaced while the
    read-only earlier file stayed hidden beside it ('.seg.nii.gz.<pid>-<start>.old'), later shown as a killed run's.
    Now both are replaced there too, and stay read-only as on Linux. Simulated: Windows' rules for such files."""
    import stat

    single, label_map, report = tmp_path / "single.nii.gz", tmp_path / "seg.nii.gz", tmp_path / "seg.json"
    for path in (single, label_map, report):
        path.write_text("old", encoding="utf-8")
    for path in (single, label_map):
        os.chmod(path, 0o444)
    _windows_read_only_rules(monkeypatch)
    with fileutil.atomic_output(single, overwrite=True) as tmp:
        tmp.write_text("new", encoding="utf-8")
    with fileutil.atomic_outputs({"labels": label_map, "report": report}, overwrite=True) as tmps:
        for tmp in tmps.values():
            tmp.write_text("new", encoding="utf-8")
    assert [p.read_text(encoding="utf-8") for p in (single, label_map, report)] == ["new", "new", "new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg.json", "seg.nii.gz", "single.nii.gz"]
    assert not os.stat(single).st_mode & stat.S_IWRITE and not os.stat(label_map).st_mode & stat.S_IWRITE


def test_a_read_only_output_that_still_cannot_be_replaced_is_called_read_only_and_kept(tmp_path, monkeypatch):
    """Where clearing the attribute does not help (the file also held open, or an access rule), the file is left
    read-only as it was, and the message says it is read-only instead of only 'open in another program'."""
    import stat

    target = tmp_path / "seg.nii.gz"
    target.write_text("old", encoding="utf-8")
    os.chmod(target, 0o444)
    _windows_read_only_rules(monkeypatch)
    windows_replace = os.replace

    def held_open(source, dest, **kwargs):
        if Path(dest) == target:
            raise PermissionError(errno.EACCES, "Access is denied", str(source), None, str(dest))
        return windows_replace(source, dest, **kwargs)

    monkeypatch.setattr(os, "replace", held_open)
    with pytest.raises(PermissionError) as info:
        with fileutil.atomic_output(target, overwrite=True) as tmp:
            tmp.write_text("new", encoding="utf-8")
    assert target.read_text(encoding="utf-8") == "old" and stat.S_IMODE(os.stat(target).st_mode) == 0o444
    assert file_system_error_text(info.value) == (
        f"Cannot replace '{target}' (Access is denied): the file is read-only (its Read-only attribute is set, as on "
        f"files copied from a CD or DVD); clear it (the file's Properties, or attrib -r) and run again, or choose "
        f"another output name.")
