"""atomic_output: rename on success, previous file intact on failure, no overwrite unless asked."""
import os
import re
import stat
import sys
from pathlib import Path

import pytest
from process_helpers import (ended_process_id, mark_of_an_earlier_holder_of_this_process_id,
                             read_in_another_time_namespace)

from LiverTumorSegLib.errors import InputError, OutputExistsError
from LiverTumorSegLib.fileutil import atomic_output, full_suffix
from LiverTumorSegLib import fileutil


def test_full_suffix_keeps_compound_extensions():
    assert full_suffix("a/b.nii.gz") == ".nii.gz"
    assert full_suffix("x.SEG.NRRD") == ".seg.nrrd"
    assert full_suffix("m.safetensors") == ".safetensors"


def test_success_renames_and_uses_umask_permissions(tmp_path):
    target = tmp_path / "out.nii.gz"
    with atomic_output(target) as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
        tmp.write_bytes(b"data")
    assert target.read_bytes() == b"data"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]


def test_failure_keeps_previous_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.nrrd"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_output(target, overwrite=True) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("cancelled")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.nrrd"]


def test_existing_output_refused_without_overwrite(tmp_path):
    target = tmp_path / "out.nii"
    target.write_bytes(b"keep")
    with pytest.raises(OutputExistsError, match="overwrite=True"):  # Python wording from Python (issue 14)
        with atomic_output(target):
            pass
    from LiverTumorSegLib.errors import cli_wording

    with cli_wording(), pytest.raises(OutputExistsError, match="pass --overwrite"):  # under the CLI
        with atomic_output(target):
            pass
    assert target.read_bytes() == b"keep"


def test_dangling_symlink_output_is_refused_without_overwrite(tmp_path):
    """-o onto a link whose target is missing replaced the link silently (exists() is False for it)."""
    link = tmp_path / "seg.nii.gz"
    link.symlink_to(tmp_path / "elsewhere" / "seg.nii.gz")
    with pytest.raises(OutputExistsError, match="is a symbolic link .*elsewhere"):
        with atomic_output(link):
            pass
    assert link.is_symlink()
    with atomic_output(link, overwrite=True) as tmp:
        tmp.write_bytes(b"new")
    assert not link.is_symlink() and link.read_bytes() == b"new"


def test_overwriting_through_a_symlink_writes_the_file_it_names_and_keeps_the_link(tmp_path):
    """`-o latest.nii.gz --overwrite`, latest.nii.gz a link to runs/3/seg.nii.gz: the output was renamed over the
    link, which became a plain file, while the file it named kept the old result."""
    (tmp_path / "runs").mkdir()
    target = tmp_path / "runs" / "seg.nii.gz"
    target.write_bytes(b"old")
    target.chmod(0o640)
    link = tmp_path / "latest.nii.gz"
    link.symlink_to(Path("runs") / "seg.nii.gz")  # relative, as `ln -s` makes them
    with pytest.raises(OutputExistsError, match="already exists"):  # still an existing output without overwrite
        with atomic_output(link):
            pass
    with atomic_output(link, overwrite=True) as tmp:
        assert tmp.parent == target.parent  # written beside the file, renamed onto it
        tmp.write_bytes(b"new")
    assert link.is_symlink() and os.readlink(link) == str(Path("runs") / "seg.nii.gz")
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert fileutil.check_can_write(link, overwrite=True) == target.resolve()
    # outputs written together (a label map and its report) too
    report = tmp_path / "runs" / "seg.json"
    report.write_text("{}")
    report_link = tmp_path / "latest.json"
    report_link.symlink_to(report)
    with fileutil.atomic_outputs({"labels": link, "report": report_link}, overwrite=True) as temporaries:
        temporaries["labels"].write_bytes(b"newer")
        temporaries["report"].write_text('{"a": 1}')
    assert link.is_symlink() and report_link.is_symlink()
    assert target.read_bytes() == b"newer" and report.read_text() == '{"a": 1}'
    # a link to a file of another format is refused: its name and its contents would disagree
    other = tmp_path / "other.nrrd"
    other.write_bytes(b"nrrd")
    (tmp_path / "as_nifti.nii.gz").symlink_to(other)
    with pytest.raises(InputError, match="symbolic link to .*other.nrrd', a file of another extension"):
        with atomic_output(tmp_path / "as_nifti.nii.gz", overwrite=True):
            pass
    assert other.read_bytes() == b"nrrd" and (tmp_path / "as_nifti.nii.gz").is_symlink()
    # a link to a folder is a folder, as before
    (tmp_path / "folder").mkdir()
    (tmp_path / "to_folder").symlink_to(tmp_path / "folder")
    with pytest.raises(InputError, match="is a folder"):
        with atomic_output(tmp_path / "to_folder", overwrite=True):
            pass


def test_missing_output_folder_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        with atomic_output(tmp_path / "nope" / "x.nii"):
            pass


def test_temporaries_left_by_a_killed_writer_are_removed_on_the_next_write(tmp_path):
    """A SIGKILL (the out-of-memory killer) mid-write left hidden temporary files beside the output for good.
    The next write of that output removes those whose writer has ended and which are older than 10 minutes; a
    recent one, one of a running process and one of another output name stay."""
    import os
    import time

    from LiverTumorSegLib import fileutil

    dead = ended_process_id()
    old = time.time() - 2 * fileutil.STALE_TEMPORARY_SECONDS
    names = {"stale": f".seg.{dead}-abc123de.tmp.nii.gz", "nested": f"..seg.{dead}-abc12345.tmp.{dead}-def12345.tmp.nii.gz",
             "recent": f".seg.{dead}-xyz789gh.tmp.nii.gz", "running": f".seg.{os.getpid()}-q1w2e3r4.tmp.nii.gz",
             "other": f".report.{dead}-abc123de.tmp.json", "older_naming": ".seg.abc123.tmp.nii.gz"}
    for key, name in names.items():
        (tmp_path / name).write_bytes(b"partial")
        if key != "recent":
            os.utime(tmp_path / name, (old, old))
    with fileutil.atomic_output(tmp_path / "seg.nii.gz") as out:
        assert f".seg.{os.getpid()}-" in out.name  # this writer's own temporary names its process
        out.write_bytes(b"done")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert names["stale"] not in left and names["nested"] not in left
    for key in ("recent", "running", "other", "older_naming"):
        assert names[key] in left, key
    assert (tmp_path / "seg.nii.gz").read_bytes() == b"done"


def test_a_users_hidden_file_named_almost_like_a_temporary_is_not_removed(tmp_path):
    """Any text between the process id and '.tmp' was taken for mkstemp's random part, so a user's hidden files
    '.scan.2023-backup.tmp.nii.gz' and '.scan.99999-copy.tmp.nii.gz' beside the output scan.nii.gz were removed as
    a killed run's (process 2023 or 99999, ended) once 10 minutes old. Only mkstemp's 8 characters count now."""
    import time

    dead = ended_process_id()
    old = time.time() - 2 * fileutil.STALE_TEMPORARY_SECONDS
    users = [f".scan.{dead}-backup.tmp.nii.gz", f".scan.{dead}-copy.tmp.nii.gz", f".scan.{dead}-old-copy1.tmp.nii.gz",
             f".scan.{dead}-Backup01.tmp.nii.gz"]
    leftover = f".scan.{dead}-k2c9x0ab.tmp.nii.gz"  # a killed run's, as mkstemp names it
    for name in users + [leftover]:
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (old, old))
    with fileutil.atomic_output(tmp_path / "scan.nii.gz") as out:
        out.write_bytes(b"done")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(users + ["scan.nii.gz"])


def test_temporaries_whose_process_id_a_later_process_holds_are_removed(tmp_path, monkeypatch):
    """Process ids are reused (after a reboot, or soon on a busy machine): a temporary whose writer's id now
    belonged to another running process was kept for good. Names carry the writer's id and start time; one with
    this process's id but another start time is left over, one with both is this process's own, and one an
    earlier version named by id alone is judged by the id as before."""
    import time

    from LiverTumorSegLib.processes import process_mark

    old = time.time() - 2 * fileutil.STALE_TEMPORARY_SECONDS
    names = {"reused_id": f".seg.{mark_of_an_earlier_holder_of_this_process_id(monkeypatch)}-abc123de.tmp.nii.gz",
             "running": f".seg.{process_mark()}-q1w2e3r4.tmp.nii.gz",
             "running_older_naming": f".seg.{os.getpid()}-z9x8c7v6.tmp.nii.gz"}
    for name in names.values():
        (tmp_path / name).write_bytes(b"partial")
        os.utime(tmp_path / name, (old, old))
    with fileutil.atomic_output(tmp_path / "seg.nii.gz") as out:
        out.write_bytes(b"done")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["seg.nii.gz", names["running"], names["running_older_naming"]])
    assert out.name.startswith(f".seg.{process_mark()}-")  # this writer's own temporary: its id and start time


def test_temporary_name_stays_within_windows_path_limit(tmp_path, monkeypatch):
    from LiverTumorSegLib import processes

    # an output path that fits in Windows' 260 characters must not fail only because its temporary name is longer
    monkeypatch.setattr(fileutil, "_max_path", lambda: fileutil.WINDOWS_MAX_PATH)
    folder = tmp_path / ("d" * max(1, 200 - len(str(tmp_path))))
    folder.mkdir()
    out = folder / ("r" * (258 - len(str(folder)) - 1 - len(".nii.gz")) + ".nii.gz")
    assert len(str(out)) == 258
    seen = []
    with fileutil.atomic_output(out) as tmp:
        seen.append(str(tmp))
        tmp.write_bytes(b"x")
    assert out.read_bytes() == b"x"
    assert len(seen[0]) <= fileutil.WINDOWS_MAX_PATH - 1 and seen[0].endswith(".tmp.nii.gz")
    assert len(fileutil.temporary_stem(folder, "short", ".nii.gz")) == 5  # short names are kept whole
    deepest = tmp_path / ("d" * (207 - len(str(tmp_path)) - 1))  # the deepest folder temporary_stem's note allows
    deepest.mkdir()
    longest_mark = processes.process_mark_of(2 ** 32 - 1, 36 ** 12 - 1, "zzzz")
    monkeypatch.setattr(fileutil, "process_mark", lambda: longest_mark)
    with fileutil.atomic_output(deepest / "r.nii.gz") as tmp:  # the longest process id and start time (year 16600)
        assert len(str(tmp)) == fileutil.WINDOWS_MAX_PATH - 1, tmp
        tmp.write_bytes(b"x")
    monkeypatch.setattr(fileutil, "_max_path", lambda: None)
    # elsewhere: no path limit (a stem of 300 was kept whole, too long for a name: see the test below)
    assert fileutil.temporary_stem(folder, "r" * 200, ".nii.gz") == "r" * 200


def test_an_output_whose_name_is_near_the_name_limit_is_written(tmp_path):
    """An output named with 240 characters (a file system takes 255) failed after the whole run with 'File name
    too long; check the path', naming its hidden temporary file, 45 characters longer: the temporary's stem is cut
    to fit the limit on a name."""
    longest = os.pathconf(str(tmp_path), "PC_NAME_MAX") if hasattr(os, "pathconf") else 255
    out = tmp_path / ("r" * (longest - len(".nii.gz")) + ".nii.gz")
    with fileutil.atomic_output(out) as tmp:
        assert len(tmp.name.encode("utf-8")) <= longest
        tmp.write_bytes(b"x")
    assert out.read_bytes() == b"x"
    room = longest - len(".") - fileutil._TEMPORARY_EXTRA - len(".nii.gz")  # in bytes: two for each é
    assert fileutil.temporary_stem(tmp_path, "\u00e9" * 200, ".nii.gz") == "\u00e9" * (room // 2)


def test_a_folder_too_deep_for_windows_path_limit_is_a_clear_error(tmp_path, monkeypatch):
    """Windows refuses a path of 260 characters or more as not found (ERROR_PATH_NOT_FOUND): an output in a folder
    whose path had 213-225 characters failed as "internal error: FileNotFoundError ... No such file or directory:
    '...\\.r.4294967295-...tmp.nii.gz'" (exit 1, a hidden temporary named), and one in a longer folder as "not
    writable ... fix its permissions". Simulated: the limit, a Windows process mark (the longest), and mkstemp
    failing as Windows does beyond the limit."""
    import errno
    import tempfile

    from LiverTumorSegLib import processes

    real_mkstemp = tempfile.mkstemp

    def windows_mkstemp(suffix=None, prefix=None, dir=None, text=False):
        path = os.path.join(str(dir), f"{prefix or ''}abcdefgh{suffix or ''}")
        if len(path) >= fileutil.WINDOWS_MAX_PATH:
            raise FileNotFoundError(errno.ENOENT, "The system cannot find the path specified", path)
        return real_mkstemp(suffix=suffix, prefix=prefix, dir=dir, text=text)

    monkeypatch.setattr(fileutil, "_max_path", lambda: fileutil.WINDOWS_MAX_PATH)
    monkeypatch.setattr(fileutil.tempfile, "mkstemp", windows_mkstemp)
    longest_mark = processes.process_mark_of(2 ** 32 - 1, 36 ** 12 - 1, "zzzz")
    monkeypatch.setattr(fileutil, "process_mark", lambda: longest_mark)
    temporary_name = len(".r.") + 28 + len("-") + 8 + len(".tmp.nii.gz")  # the stem cut to 'r' by temporary_stem
    for folder_length in (215, 240):  # the output's temporary fails; the writability probe fails
        folder = tmp_path / ("d" * (folder_length - len(str(tmp_path)) - 1))
        folder.mkdir()
        assert len(str(folder)) == folder_length
        with pytest.raises(InputError) as caught:
            with fileutil.atomic_output(folder / "report_of_case.nii.gz"):
                pass
        assert (f"a path of {folder_length + 1 + temporary_name} characters (outputs are first written under a "
                f"longer temporary name), beyond Windows' limit of 259. Choose an output folder whose path has at "
                f"most 207 characters") in str(caught.value)
        assert list(folder.iterdir()) == []
    with pytest.raises(FileNotFoundError):  # a folder that is not there is not called too long
        fileutil.make_temporary_file(tmp_path / "gone", "r", ".nii.gz")
    deepest = tmp_path / ("d" * (207 - len(str(tmp_path)) - 1))
    deepest.mkdir()
    with fileutil.atomic_output(deepest / "report_of_case.nii.gz") as tmp:  # 207: written as before
        tmp.write_bytes(b"x")
    assert (deepest / "report_of_case.nii.gz").read_bytes() == b"x"


def test_atomic_outputs_are_put_in_place_all_or_none(tmp_path, monkeypatch):
    """segment renamed its outputs one by one: a rename failing (or Ctrl-C) halfway left this run's report
    beside no label map, or beside an older run's; with --overwrite the old report was replaced and the old
    labels kept. Now a failure halfway takes back what was moved and restores what it replaced."""
    from LiverTumorSegLib import fileutil
    from LiverTumorSegLib.fileutil import atomic_outputs

    labels, report = tmp_path / "seg.nii.gz", tmp_path / "r.json"
    with atomic_outputs({"labels": labels, "report": report}) as tmp:
        tmp["labels"].write_text("labels 1")
        tmp["report"].write_text("report 1")
    assert labels.read_text() == "labels 1" and report.read_text() == "report 1"

    real_replace = fileutil.replace_file

    def failing_on_report(source, target):  # the second output's rename fails
        if Path(target) == report and Path(source).name.endswith(".tmp.json"):
            raise PermissionError(13, "Permission denied", str(target))
        real_replace(source, target)

    monkeypatch.setattr(fileutil, "replace_file", failing_on_report)
    with pytest.raises(PermissionError):
        with atomic_outputs({"labels": labels, "report": report}, overwrite=True) as tmp:
            tmp["labels"].write_text("labels 2")
            tmp["report"].write_text("report 2")
    assert labels.read_text() == "labels 1" and report.read_text() == "report 1"  # the first run's pair, whole
    monkeypatch.setattr(fileutil, "replace_file", real_replace)
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C while writing: nothing placed, nothing left
        with atomic_outputs({"labels": tmp_path / "new.nii.gz", "report": tmp_path / "new.json"}) as tmp:
            tmp["labels"].write_text("x")
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "seg.nii.gz"]


def test_errors_inside_atomic_outputs_name_the_users_paths(tmp_path):
    """A full disk said "Cannot write '.../.seg.31600-3be3vrbn.tmp.mha'": the hidden temporary, not the output."""
    from LiverTumorSegLib.fileutil import atomic_outputs

    target = tmp_path / "seg.mha"
    with pytest.raises(InputError) as err:
        with atomic_outputs({"labels": target}) as tmp:
            raise InputError(f"Cannot write '{tmp['labels']}': No space left on device.")
    assert str(err.value) == f"Cannot write '{target}': No space left on device."
    with pytest.raises(OSError) as err:
        with atomic_outputs({"labels": target}) as tmp:
            raise OSError(28, "No space left on device", str(tmp["labels"]))
    assert err.value.filename == str(target) and list(tmp_path.iterdir()) == []


def test_an_output_that_is_a_folder_is_called_a_folder_with_or_without_overwrite(tmp_path):
    """It was 'already exists; pass --overwrite', and with --overwrite 'is a folder': the first advice could not
    work."""
    folder = tmp_path / "s.nii.gz"
    folder.mkdir()
    for overwrite in (False, True):
        with pytest.raises(InputError, match="is a folder; give a file name") as refused:
            fileutil.check_can_write(folder, overwrite=overwrite)
        assert not isinstance(refused.value, OutputExistsError) and "--overwrite" not in str(refused.value)
    assert folder.is_dir()


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGKILL"), reason="SIGKILL is POSIX")
def _run_until_killed(script: str, *arguments) -> None:
    """Run ``script`` (Python, with this repository's library importable) in a child that SIGKILLs itself."""
    import subprocess
    import sys

    repo = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
    ended = subprocess.run([sys.executable, "-c", script] + [str(a) for a in arguments], env=env,
                           capture_output=True, text=True, timeout=120)
    assert ended.returncode == -9, ended.stderr


def test_an_output_a_killed_run_left_set_aside_is_put_back_with_a_warning(tmp_path, caplog):
    """A SIGKILL between move_all_or_none's two renames (the earlier output set aside, the new one not moved in yet)
    left the user's output only as a hidden '.seg.nii.gz.<pid>.old', and nothing said so. The next write of that
    output puts it back (so it is not replaced without --overwrite) and says so."""

    target = tmp_path / "seg.nii.gz"
    target.write_text("the user's earlier result")
    killed_between_the_renames = (
        "import os, signal, sys\n"
        "from LiverTumorSegLib import fileutil\n"
        "real = fileutil.replace_file\n"
        "def replace(source, target):\n"
        "    if '.tmp' in os.path.basename(source):  # the new output, after the earlier one was set aside\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    real(source, target)\n"
        "fileutil.replace_file = replace\n"
        "with fileutil.atomic_outputs({'labels': sys.argv[1]}, overwrite=True) as tmp:\n"
        "    tmp['labels'].write_text('new')\n")
    _run_until_killed(killed_between_the_renames, target)
    hidden = [p.name for p in tmp_path.iterdir() if p.name.endswith(".old")]
    assert not target.exists() and len(hidden) == 1 and hidden[0].startswith(".seg.nii.gz.")  # the defect's state

    with caplog.at_level("WARNING"):
        with pytest.raises(OutputExistsError):  # back, and so not replaced without --overwrite
            fileutil.check_can_write(target)
    assert target.read_text() == "the user's earlier result"
    assert not any(p.name.endswith(".old") for p in tmp_path.iterdir())
    assert f"'{target}' was restored" in caplog.text and hidden[0] in caplog.text


def test_a_run_killed_after_placing_some_of_its_outputs_leaves_the_earlier_set_whole(tmp_path, caplog):
    """A SIGKILL right after the new label map was placed: its report had not been set aside yet, so the group
    looked complete and the next run kept the new label map beside the earlier report. Every earlier output is now
    set aside before any new one is placed, and the next write puts the whole earlier set back."""

    labels, report = tmp_path / "s.nii.gz", tmp_path / "r.json"
    labels.write_text("earlier labels")
    report.write_text("earlier report")
    killed_after_the_first_placement = (
        "import os, signal, sys\n"
        "from LiverTumorSegLib import fileutil\n"
        "real = fileutil.replace_file\n"
        "placed = []\n"
        "def replace(source, target):\n"
        "    if placed:  # the next rename after the first new output was placed\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    real(source, target)\n"
        "    if '.tmp' in os.path.basename(source):\n"
        "        placed.append(target)\n"
        "fileutil.replace_file = replace\n"
        "with fileutil.atomic_outputs({'labels': sys.argv[1], 'report': sys.argv[2]}, overwrite=True) as tmp:\n"
        "    tmp['labels'].write_text('new labels')\n"
        "    tmp['report'].write_text('new report')\n")
    _run_until_killed(killed_after_the_first_placement, labels, report)
    assert labels.read_text() == "new labels" and not report.exists()  # the kill's state: both set aside first
    with caplog.at_level("WARNING"):
        fileutil.restore_set_aside_outputs_of([labels, report])
    assert labels.read_text() == "earlier labels" and report.read_text() == "earlier report"
    assert not any(p.name.endswith(".old") for p in tmp_path.iterdir())


def test_an_interrupt_landing_on_the_set_aside_rename_is_rolled_back(tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM arriving just after an earlier output was renamed aside, before the rename was recorded:
    the rollback did not know of it, so the user's output stayed hidden while the run said only unfinished files
    were removed."""
    target = tmp_path / "s.nii.gz"
    target.write_text("earlier")
    real = fileutil._set_aside

    def set_aside_then_interrupted(target_path, backup):
        real(target_path, backup)
        raise KeyboardInterrupt

    monkeypatch.setattr(fileutil, "_set_aside", set_aside_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        with fileutil.atomic_outputs({"labels": target}, overwrite=True) as tmp:
            tmp["labels"].write_text("new")
    assert target.read_text() == "earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.nii.gz"]


def test_a_set_aside_output_beside_a_newer_one_is_made_visible_and_a_running_ones_is_left_alone(tmp_path):
    """When the output exists again (the killed run had already moved its new file in, or a later run wrote it),
    the set-aside earlier version is the only copy of what it held: it is renamed to a visible name and said,
    never deleted. A running process's (between its two renames right now) and other outputs' are left alone."""
    dead, running = ended_process_id(), os.getpid()  # (the parent is pid 0 under a container's first process)
    (tmp_path / "r.json").write_text("newer")
    (tmp_path / f".r.json.{dead}.old").write_text("earlier")
    (tmp_path / f".seg.nii.gz.{running}.old").write_text("a running run's")
    (tmp_path / f".other.nii.gz.{dead}.old").write_text("another output's")
    said = fileutil.restore_set_aside_outputs_of([tmp_path / "r.json", tmp_path / "seg.nii.gz"])
    assert len(said) == 1 and f"r.json.{dead}.old" in said[0] and "delete it if you do not need it" in said[0]
    assert (tmp_path / "r.json").read_text() == "newer"
    assert (tmp_path / f"r.json.{dead}.old").read_text() == "earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f".other.nii.gz.{dead}.old", f".seg.nii.gz.{running}.old", "r.json", f"r.json.{dead}.old"])


def test_an_output_set_aside_by_an_earlier_holder_of_a_process_id_is_put_back(tmp_path, monkeypatch):
    """A set-aside output whose writer's id a running process holds now was left hidden for good. Its name
    records the writer's start time too: with another start time it is put back; with this process's own (a run
    between its two renames right now) it is left alone, as is one an earlier version named by id alone."""
    from LiverTumorSegLib.processes import process_mark

    reused = mark_of_an_earlier_holder_of_this_process_id(monkeypatch)
    (tmp_path / f".r.json.{reused}.old").write_text("earlier report")
    (tmp_path / f".seg.nii.gz.{process_mark()}.old").write_text("a running run's")
    (tmp_path / f".p.nii.gz.{os.getpid()}.old").write_text("a running run of an earlier version's")
    said = fileutil.restore_set_aside_outputs_of([tmp_path / n for n in ("r.json", "seg.nii.gz", "p.nii.gz")])
    assert len(said) == 1 and f"'{tmp_path / 'r.json'}' was restored" in said[0]
    assert (tmp_path / "r.json").read_text() == "earlier report"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["r.json", f".seg.nii.gz.{process_mark()}.old", f".p.nii.gz.{os.getpid()}.old"])
    assert fileutil.set_aside_path(tmp_path / "r.json").name == f".r.json.{process_mark()}.old"  # what is written


def test_process_marks_hold_the_start_time_in_base_36_and_names_without_one_are_read_by_id():
    """Names carry ``{pid}-{start time}`` with the start time in base 36 (a Windows FILETIME in decimal made names
    18 characters longer, and outputs in deep folders failed at Windows' path limit). Names of earlier versions,
    ``.{stem}.{pid}-{random}.tmp`` (tempfile's random part: a-z, 0-9 and _, never '-') and ``.{name}.{pid}.old``,
    are still read as a process id without a start time."""
    from LiverTumorSegLib import processes

    assert processes.process_mark_of(4321, 134_000_000_000_000_000) == "4321-10nf1a66iz28"  # a FILETIME in 2025
    assert processes.process_mark_of(7, 0) == "7-0" and processes.process_mark_of(7, None) == "7"
    started = processes.process_start_time(os.getpid())
    own = re.fullmatch(processes.PROCESS_MARK, processes.process_mark())
    assert int(own["pid"]) == os.getpid() and (own["start"] is None if started is None
                                                 else int(own["start"], 36) == started)
    for name, pid, start in [(".seg.1234-10nf1a66iz28-k2_9x0ab.tmp.nii.gz", "1234", "10nf1a66iz28"),
                             (".seg.1234-k2c9x0ab.tmp.nii.gz", "1234", None),
                             (".seg.1234-k2_9x0ab.tmp.nii.gz", "1234", None),
                             (".seg.1234-12345678.tmp.nii.gz", "1234", None)]:
        mark = fileutil._TEMPORARY_MARK.search(name)
        assert (mark["pid"], mark["start"], mark["host"]) == (pid, start, None), name
    for name, start in [(".seg.1234-10nf1a66iz28@ab12-k2_9x0ab.tmp.nii.gz", "10nf1a66iz28"),
                        (".seg.1234@ab12-k2_9x0ab.tmp.nii.gz", None)]:  # this version's, with the computer's tag
        mark = fileutil._TEMPORARY_MARK.search(name)
        assert (mark["pid"], mark["start"], mark["host"]) == ("1234", start, "ab12"), name
    for name, start, host in [(".seg.nii.gz.1234-10nf1a66iz28.old", "10nf1a66iz28", None),
                              (".seg.nii.gz.1234.old", None, None),
                              (".seg.nii.gz.1234-2zqda@ab12.old", "2zqda", "ab12")]:
        mark = fileutil._SET_ASIDE_NAME.fullmatch(name)
        assert (mark["name"], mark["pid"], mark["start"], mark["host"]) == ("seg.nii.gz", "1234", start, host), name


def test_a_running_writers_leftovers_are_kept_when_its_start_time_reads_differently_here(tmp_path, monkeypatch):
    """Linux shifts /proc/PID/stat's start time by the reader's time-namespace offset: the temporaries and
    set-aside outputs of a writer running inside ``unshare --time`` were taken for a dead process's by a run
    outside (another start time for the same id) and removed or put back under it. Another start time now counts
    only for what was last changed before the process holding the id started: what changed after (the later of
    st_mtime and st_ctime, as a set-aside file is renamed and keeps its st_mtime) is kept, as where that start
    cannot be told; what changed before is a dead writer's."""
    import time

    from LiverTumorSegLib import processes

    mark = processes.process_mark()  # this process is the writer
    read_in_another_time_namespace(monkeypatch)
    started_at = processes.process_started_at(os.getpid())
    if started_at is None:
        pytest.skip("this system cannot tell when a process started")
    temporary, set_aside = tmp_path / f".seg.{mark}-abc123de.tmp.nii.gz", tmp_path / f".r.json.{mark}.old"
    for path in (temporary, set_aside):
        path.write_text("the writer's")
        os.utime(path, (started_at - 3600,) * 2)  # written before this process started; st_ctime stays now

    def clean_up():
        fileutil.remove_stale_temporaries(tmp_path, ".seg.", ".tmp.nii.gz")
        return fileutil.restore_set_aside_outputs_of([tmp_path / "r.json"])

    assert clean_up() == [] and sorted(tmp_path.iterdir()) == sorted([temporary, set_aside])
    monkeypatch.setattr(processes, "process_started_at", lambda pid: None)
    assert clean_up() == [] and sorted(tmp_path.iterdir()) == sorted([temporary, set_aside])
    monkeypatch.setattr(processes, "process_started_at", lambda pid: time.time() + 60)  # started after the changes
    assert len(clean_up()) == 1 and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_another_start_time_counts_only_for_what_was_changed_before_the_holder_started():
    """process_alive(pid, start_time, changed_at): a start time that differs from the one read now means another
    process only for a file changed (``changed_at``, seconds since 1970) more than START_TIME_SLACK_SECONDS before
    the process now holding ``pid`` started (process_started_at, the same in every time namespace)."""
    import time

    from LiverTumorSegLib import processes

    pid, started = os.getpid(), processes.process_start_time(os.getpid())
    started_at = processes.process_started_at(pid)
    if started is None or started_at is None:
        pytest.skip("no process start time can be read on this system: names are judged by process id alone")
    assert started_at <= time.time()
    slack = processes.START_TIME_SLACK_SECONDS
    assert not processes.process_alive(pid, started + 1, changed_at=started_at - slack - 60)
    assert processes.process_alive(pid, started + 1, changed_at=started_at - slack + 0.5)
    assert processes.process_alive(pid, started + 1, changed_at=time.time())
    assert processes.process_alive(pid, started, changed_at=started_at - 3600)  # the same start: the writer
    assert not processes.process_alive(ended_process_id(), started, changed_at=time.time())


def test_process_alive_tells_a_running_process_from_an_ended_one(monkeypatch):
    from LiverTumorSegLib import processes

    assert processes.process_alive(os.getpid()) and (os.getppid() <= 0 or processes.process_alive(os.getppid()))
    assert not processes.process_alive(ended_process_id())
    assert not processes.process_alive(0) and not processes.process_alive(2 ** 40)


def test_a_process_id_with_another_start_time_is_another_process(monkeypatch):
    """A process is alive for a name that recorded its id and start time only while the process holding that id
    started then; a name without a start time (earlier versions) is judged by the id alone."""
    import subprocess
    import sys
    import time

    from LiverTumorSegLib import processes

    mark_of_an_earlier_holder_of_this_process_id(monkeypatch)  # skips where no start time can be read
    started = processes.process_start_time(os.getpid())
    assert processes.process_mark() == processes.process_mark_of(os.getpid(), started, processes.host_tag())
    assert processes.process_alive(os.getpid(), started)
    assert not processes.process_alive(os.getpid(), started - 1)
    launched = time.time()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert abs(processes.process_started_at(child.pid) - launched) < 5  # seconds since 1970 (boot time: whole s)
        child_started = processes.process_start_time(child.pid)
        assert child_started is not None and processes.process_start_time(child.pid) == child_started
        assert processes.process_alive(child.pid, child_started) and processes.process_alive(child.pid)
        assert not processes.process_alive(child.pid, child_started + 1)
    finally:
        child.kill()
        child.wait()
    assert processes.process_start_time(child.pid) is None and not processes.process_alive(child.pid, child_started)
    assert processes.process_started_at(child.pid) is None


@pytest.mark.skipif(sys.platform.startswith("win"), reason="ps is POSIX")
def test_start_times_from_ps_are_the_utc_seconds_a_process_started(monkeypatch):
    """Where there is no /proc (macOS), ``ps -o lstart`` tells the start time: read in the C locale and UTC as
    seconds since 1970 (checked here on Linux, whose ps prints the same format)."""
    import shutil
    import subprocess
    import time

    from LiverTumorSegLib import processes

    if shutil.which("ps") is None:
        pytest.skip("no ps here")
    launched = time.time()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        monkeypatch.setattr(sys, "platform", "darwin")
        monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14: the number must not depend on the time zone
        started = processes.process_start_time(child.pid)
        assert processes.process_started_at(child.pid) == started
    finally:
        child.kill()
        child.wait()
    assert started is not None and abs(started - launched) <= 5, (started, launched)
    assert processes.process_start_time(child.pid) is None  # ended


def test_outputs_checked_together_are_restored_together(tmp_path, caplog):
    """check_can_write put one hidden output back at a time: for a single-CT segment (and followup), a kill after
    the new label map was placed but before the report was left the new labels kept beside the earlier report
    put back (a mix of two runs), or, without --overwrite, the labels refused with the earlier report still
    hidden. The outputs one run writes together are now put back together before any is judged."""
    from LiverTumorSegLib.inference.segmenter import _check_outputs

    dead = ended_process_id()
    ct = tmp_path / "ct.nii.gz"
    ct.write_bytes(b"a CT")
    (tmp_path / "seg.nii.gz").write_text("the killed run's labels")  # moved in before it was killed
    (tmp_path / f".seg.nii.gz.{dead}.old").write_text("earlier labels")
    (tmp_path / f".r.json.{dead}.old").write_text("earlier report")  # the new report never moved in
    with caplog.at_level("WARNING"), pytest.raises(OutputExistsError, match="seg.nii.gz' already exists"):
        _check_outputs(ct, tmp_path / "seg.nii.gz", tmp_path / "r.json", None, None, overwrite=False)
    assert (tmp_path / "seg.nii.gz").read_text() == "earlier labels"
    assert (tmp_path / "r.json").read_text() == "earlier report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz", "r.json", "seg.nii.gz"]
    assert "seg.nii.gz' was put back to its earlier version" in caplog.text
    checked = fileutil.check_can_write_all([tmp_path / "a.json", tmp_path / "b.png"], overwrite=False)
    assert checked == [tmp_path / "a.json", tmp_path / "b.png"]


def test_csv_rows_take_the_header_lines_separator_and_keep_other_separators_in_cells(tmp_path):
    """Excel's "Unicode Text" is UTF-16 and tab-separated: a Windows path with a comma stays one cell, and only
    the header (fixed column names) decides the separator; blank lines still count in the line numbers."""
    listing = tmp_path / "list.txt"
    listing.write_bytes("Image \tCase_ID\r\nC:\\scans\\a,b.nii.gz\tp;1\r\n\r\nc.nii.gz\r\n".encode("utf-16"))
    columns, rows = fileutil.read_csv_rows(listing, "Case list")
    assert columns == ["image", "case_id"]
    assert rows == [(2, {"image": "C:\\scans\\a,b.nii.gz", "case_id": "p;1"}), (4, {"image": "c.nii.gz",
                                                                                    "case_id": ""})]
    assert fileutil.csv_delimiter("image") == "," and fileutil.csv_delimiter("image;label") == ";"


@pytest.mark.parametrize("header, row, delimiter", [
    ('image;label;"notes, comments"', "a,b.nii.gz;a_seg.nii.gz;x", ";"),
    ("Image\tLabel\tSpacing (x, y)", "a.nii.gz\ta_seg.nii.gz\t1, 1", "\t"),
    ("image,label", "a;b.nii.gz,a_seg.nii.gz", ","),
])
def test_csv_separator_is_the_one_that_gives_the_image_column(tmp_path, header, row, delimiter):
    """A semicolon or tab list whose header holds a comma in a column name was split on commas and refused as
    having no image column; the separator is now the first that yields an ``image`` cell."""
    listing = tmp_path / "list.csv"
    listing.write_text(f"{header}\n{row}\n", encoding="utf-8")
    assert fileutil.csv_delimiter(header) == delimiter
    columns, rows = fileutil.read_csv_rows(listing, "Case list")
    assert columns[:2] == ["image", "label"] and len(columns) == header.count(delimiter) + 1
    assert rows[0][0] == 2 and rows[0][1]["image"] == row.split(delimiter)[0]


def test_csv_with_excels_separator_line_uses_it_and_counts_it_in_line_numbers(tmp_path):
    """Excel writes (and reads) a first line ``sep=;``; it was taken for the header ('sep=' column)."""
    listing = tmp_path / "list.csv"
    listing.write_text("sep=;\r\nimage;case_id\r\na,1.nii.gz;p1\r\n\r\nb.nii.gz;p2\r\n", encoding="utf-8")
    columns, rows = fileutil.read_csv_rows(listing, "Case list")
    assert columns == ["image", "case_id"]
    assert rows == [(3, {"image": "a,1.nii.gz", "case_id": "p1"}), (5, {"image": "b.nii.gz", "case_id": "p2"})]


def test_csv_of_powershell_export_csv_with_its_type_line_is_read(tmp_path):
    """Windows PowerShell 5.1's Export-Csv writes '#TYPE ...' first (without -NoTypeInformation); such a list was
    refused as needing "a header with an 'image' column", which its second line is."""
    listing = tmp_path / "list.csv"
    type_line = "#TYPE System.Management.Automation.PSCustomObject\r\n"
    listing.write_bytes((type_line + '"image","case_id"\r\n"C:\\scans\\a,b.nii.gz","p1"\r\n').encode("utf-16"))
    columns, rows = fileutil.read_csv_rows(listing, "Case list")
    assert columns == ["image", "case_id"] and rows == [(3, {"image": "C:\\scans\\a,b.nii.gz", "case_id": "p1"})]
    listing.write_text(type_line + "sep=;\r\nimage;case_id\r\na,1.nii.gz;p1\r\n", encoding="utf-8")
    assert fileutil.read_csv_rows(listing, "Case list") == (["image", "case_id"],
                                                            [(4, {"image": "a,1.nii.gz", "case_id": "p1"})])


def test_a_csv_cell_quoted_after_the_separators_space_is_read_without_its_quotes(tmp_path):
    """A list written by hand puts a space after each comma and quotes the paths holding spaces; the quotes were
    kept in the cell ('.../"my scans/lab 1.nii.gz"' did not exist), whereas a quote right after the comma was
    read as quoting."""
    listing = tmp_path / "list.csv"
    listing.write_bytes(b'\xef\xbb\xbfImage, Label, patient\r\n"my scans/ct 1.nii.gz", "my scans/lab 1.nii.gz",  p1\r\n'
                        b'ct2.nii.gz, "lab,2.nii.gz", p2\r\n\r\n')
    columns, rows = fileutil.read_csv_rows(listing, "CSV")
    assert columns == ["image", "label", "patient"]
    assert rows == [(2, {"image": "my scans/ct 1.nii.gz", "label": "my scans/lab 1.nii.gz", "patient": "p1"}),
                    (3, {"image": "ct2.nii.gz", "label": "lab,2.nii.gz", "patient": "p2"})]


def test_csv_rows_of_empty_cells_are_skipped_as_blank_lines(tmp_path):
    """Excel saves a row emptied inside the table as ``,,``; such a case list was refused as "line 3 has an empty
    'image'" (a training list as "empty image or label path")."""
    listing = tmp_path / "list.csv"
    listing.write_text("image,notes,case_id\r\na.nii.gz,,p1\r\n,,\r\n , ,\r\nb.nii.gz,x,p2\r\n,,\r\n",
                       encoding="utf-8")
    columns, rows = fileutil.read_csv_rows(listing, "Case list")
    assert rows == [(2, {"image": "a.nii.gz", "notes": "", "case_id": "p1"}),
                    (5, {"image": "b.nii.gz", "notes": "x", "case_id": "p2"})]


def test_a_file_another_process_creates_after_the_check_is_not_replaced(tmp_path, monkeypatch):
    """Without --overwrite, the output was looked for, then the finished temporary renamed onto it (os.replace):
    a file another process created in between was replaced. Now the rename itself refuses an existing name."""
    from LiverTumorSegLib.fileutil import atomic_outputs

    real_permissions = fileutil.apply_default_permissions
    appears = {}  # the output another process writes once ours is finished, after the last check

    def then_another_process_writes(path):
        real_permissions(path)
        for target in list(appears):
            target.write_text(appears.pop(target))

    monkeypatch.setattr(fileutil, "apply_default_permissions", then_another_process_writes)
    target = tmp_path / "seg.nii.gz"
    with pytest.raises(OutputExistsError, match="appeared while writing; not overwriting it"):
        with atomic_output(target) as tmp:
            tmp.write_text("ours")
            appears[target] = "another process's"
    assert target.read_text() == "another process's" and [p.name for p in tmp_path.iterdir()] == ["seg.nii.gz"]

    labels, report = tmp_path / "a.nii.gz", tmp_path / "a.json"  # several outputs: none of ours is left placed
    with pytest.raises(OutputExistsError, match="appeared while writing"):
        with atomic_outputs({"labels": labels, "report": report}) as tmp:
            tmp["labels"].write_text("our labels")
            tmp["report"].write_text("our report")
            appears[report] = "another process's report"
    assert report.read_text() == "another process's report" and not labels.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "seg.nii.gz"]


def _refused_then_placed(tmp_path):
    """``place_without_replacing`` of a finished file 'new' onto an existing 'out' (refused: both files kept), then,
    'out' removed, again (placed). Returns ``(source, target)``."""
    source, target = tmp_path / "new", tmp_path / "out"
    source.write_text("new")
    target.write_text("someone else's")
    with pytest.raises(OutputExistsError, match="appeared while writing"):
        fileutil.place_without_replacing(source, target)
    assert target.read_text() == "someone else's" and source.read_text() == "new"
    target.unlink()
    fileutil.place_without_replacing(source, target)
    return source, target


def test_placing_without_replacing_where_there_are_no_hard_links(tmp_path, monkeypatch):
    """FAT and some network shares have no hard links: the name is looked at just before a rename (which never
    replaces on Windows); an existing one is refused and the finished file stays where it was."""
    def no_hard_links(source, target):
        raise PermissionError(1, "Operation not permitted", str(source), None, str(target))

    monkeypatch.setattr(fileutil.os, "link", no_hard_links)
    source, target = _refused_then_placed(tmp_path)
    assert target.read_text() == "new" and not source.exists()


def test_placing_without_replacing_on_windows_is_one_rename_and_no_hard_link(tmp_path, monkeypatch):
    """On Windows a hard link left a second name for the output when a virus scanner held the temporary open (its
    unlink failed); there a rename, which never replaces an existing name, does the job alone."""
    def windows_rename(source, target):
        if os.path.lexists(target):
            raise FileExistsError(17, "Cannot create a file when that file already exists", str(target))
        os.replace(source, target)

    def no_link(source, target):
        raise AssertionError("os.link must not be used on Windows")

    monkeypatch.setattr(fileutil.sys, "platform", "win32")
    monkeypatch.setattr(fileutil.os, "rename", windows_rename)
    monkeypatch.setattr(fileutil.os, "link", no_link)
    monkeypatch.setattr(fileutil, "REPLACE_RETRY_SECONDS", ())
    source, target = _refused_then_placed(tmp_path)
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_quoted_tilde_is_named_as_not_the_home_folder(tmp_path, monkeypatch):
    """'Output folder '~' does not exist; create it first.' invited the user to make a folder named '~'."""
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.io import read_volume

    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="a quoted '~' is not your home folder"):
        fileutil.check_can_write("~/seg.nii.gz")
    with pytest.raises(InputError, match="a quoted '~' is not your home folder"):
        read_volume("~/no_such_ct.nii.gz")
    assert fileutil.unexpanded_home_hint(tmp_path / "x") == ""


@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_two_writers_of_one_output_group_place_it_one_after_the_other(tmp_path):
    """Known limit until 25 Nov 2026: two 'segment --overwrite' runs of one CT placed their outputs file by file at
    the same time, and one run's label map could end beside the other's report. atomic_outputs now places a group
    under a lock on its folder: a writer waits while another holds it, then places its whole group."""
    import fcntl
    import threading

    from LiverTumorSegLib.fileutil import atomic_outputs

    paths = {"labels": tmp_path / "seg.nii.gz", "report": tmp_path / "report.json"}

    def write(text):
        with atomic_outputs(paths, overwrite=True) as temporaries:
            for tmp in temporaries.values():
                tmp.write_text(text)

    write("first")
    holder = os.open(str(tmp_path), os.O_RDONLY)  # another run placing its group now
    fcntl.flock(holder, fcntl.LOCK_EX)
    writer = threading.Thread(target=write, args=("second",))
    writer.start()
    writer.join(timeout=1.0)
    assert writer.is_alive()  # waits for the other run's placement
    assert {key: path.read_text() for key, path in paths.items()} == {"labels": "first", "report": "first"}
    os.close(holder)
    writer.join(timeout=30)
    assert not writer.is_alive()
    assert {key: path.read_text() for key, path in paths.items()} == {"labels": "second", "report": "second"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "seg.nii.gz"]


def test_a_killed_writers_leftovers_are_said_in_one_line_and_others_are_left_alone(tmp_path, caplog):
    """After a SIGKILL mid-write, hidden temporaries stayed beside the outputs and nothing ever said so: those
    older than 10 minutes were removed in silence, younger ones kept in silence. Now a group of outputs says in
    one line which it removed, and in one warning which of an ended process it kept (too recent) and that they
    can be deleted. A running writer's temporary (this process's) and a user's files of near names are left
    alone and not named."""
    import logging
    import time

    from LiverTumorSegLib.processes import process_mark

    dead = ended_process_id()
    old = time.time() - 2 * fileutil.STALE_TEMPORARY_SECONDS
    names = {"stale_seg": f".seg.{dead}-abc123de.tmp.nii.gz", "stale_report": f".r.{dead}-def456jk.tmp.json",
             "recent": f".seg.{dead}-xyz789gh.tmp.nii.gz", "running": f".seg.{process_mark()}-q1w2e3r4.tmp.nii.gz",
             "near_1": "seg.nii.gz.tmp", "near_2": f"seg.{dead}-abc123de.tmp.nii.gz", "near_3": ".seg.backup.tmp.nii.gz",
             "near_4": f".seg.{dead}.nii.gz"}
    for key, name in names.items():
        (tmp_path / name).write_bytes(b"partial")
        if key != "recent":
            os.utime(tmp_path / name, (old, old))
    caplog.set_level(logging.INFO, logger="LiverTumorSegLib.fileutil")
    with fileutil.atomic_outputs({"seg": tmp_path / "seg.nii.gz", "report": tmp_path / "r.json"}) as temporaries:
        for temporary in temporaries.values():
            temporary.write_bytes(b"done")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["seg.nii.gz", "r.json"] + [names[key] for key in names if not key.startswith("stale")])
    removed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("removed ")]
    kept = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(removed) == 1 and len(kept) == 1, caplog.text
    assert "removed 2 unfinished temporary file(s)" in removed[0]
    assert names["stale_seg"] in removed[0] and names["stale_report"] in removed[0]
    assert f"'{names['recent']}'" in kept[0] and "can be deleted" in kept[0] and "10 minutes" in kept[0]
    for key in names:
        if key.startswith(("running", "near")):
            assert f"'{names[key]}'" not in caplog.text, key


def _another_host_tag() -> str:
    """A :func:`~LiverTumorSegLib.processes.host_tag` that is not this computer's."""
    from LiverTumorSegLib.processes import host_tag

    return "0000" if host_tag() != "0000" else "0001"


def _write_leftovers(folder, names, folder_key, last_written, recent=()):
    """Write ``names`` (key -> file name) into ``folder`` as a killed run leaves them: ``folder_key``'s as a folder
    holding a partial table, the others as partial files; all but ``recent`` last written at ``last_written``."""
    for key, name in names.items():
        if key == folder_key:
            (folder / name).mkdir()
            (folder / name / "table.csv").write_text("partial")
        else:
            (folder / name).write_bytes(b"partial")
        if key not in recent:
            os.utime(folder / name, (last_written, last_written))


def test_a_temporary_of_another_computer_is_never_removed_and_is_said(tmp_path, caplog):
    """A folder on a network drive (or mounted into a container) holds the temporaries of runs elsewhere, whose
    process ids mean nothing here: one whose id ran no process here was removed once 10 minutes old, while its
    run (an evaluate staging folder, for one) could still be writing. Names now carry their computer's host tag:
    another computer's are left alone, at any age, and those older than 10 minutes are named in a warning; this
    computer's of an ended process are removed as before."""
    import logging
    import time

    from LiverTumorSegLib.processes import host_tag

    dead, other = ended_process_id(), _another_host_tag()
    old = time.time() - 2 * fileutil.STALE_TEMPORARY_SECONDS
    names = {"elsewhere_old": f".seg.{dead}-2zqda@{other}-k2c9x0ab.tmp.nii.gz",
             "elsewhere_folder": f".seg.{dead}@{other}-m3d8y1cd.tmp.nii.gz",
             "elsewhere_recent": f".seg.{dead}-2zqda@{other}-q1w2e3r4.tmp.nii.gz",
             "here_ended": f".seg.{dead}-2zqda@{host_tag()}-z9x8c7v6.tmp.nii.gz"}
    _write_leftovers(tmp_path, names, folder_key="elsewhere_folder", last_written=old, recent=("elsewhere_recent",))
    caplog.set_level(logging.INFO, logger="LiverTumorSegLib.fileutil")
    with fileutil.atomic_output(tmp_path / "seg.nii.gz") as out:
        assert f"@{host_tag()}-" in out.name  # this writer's own temporary names its computer
        out.write_bytes(b"done")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["seg.nii.gz", names["elsewhere_old"], names["elsewhere_folder"], names["elsewhere_recent"]])
    assert (tmp_path / names["elsewhere_folder"] / "table.csv").read_text() == "partial"
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "another computer or container" in warned[0], caplog.text
    assert f"'{names['elsewhere_old']}'" in warned[0] and f"'{names['elsewhere_folder']}'" in warned[0]
    assert f"'{names['elsewhere_recent']}'" not in caplog.text
    assert "removed 1 unfinished temporary file(s)" in caplog.text and f"'{names['here_ended']}'" in caplog.text


def test_an_output_another_computer_set_aside_is_not_put_back(tmp_path):
    """A file set aside by a run on another computer (``.NAME.PID-START@HOST.old``) was put back over the output
    when its process id ran nothing here, although that run may be about to place its new output. It is left."""
    dead, other = ended_process_id(), _another_host_tag()
    set_aside = tmp_path / f".seg.nii.gz.{dead}-2zqda@{other}.old"
    set_aside.write_bytes(b"earlier")
    assert fileutil.restore_set_aside_outputs_of([tmp_path / "seg.nii.gz"]) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [set_aside.name]


def test_a_batch_lock_of_another_computer_says_so():
    """A batch lock left by a run on another computer is never taken over (its process id means nothing here): the
    error says whose it is."""
    from pathlib import Path

    from LiverTumorSegLib.inference.batch import _busy_error

    text = str(_busy_error(Path("out"), Path("out/.lock"), f"{ended_process_id()}-2zqda@{_another_host_tag()}"))
    assert "on another computer" in text


def test_this_computers_leftovers_of_other_outputs_are_removed_once_per_folder(tmp_path, caplog):
    """A killed run's temporaries were removed only when the same output was written again: those of an output
    written under another name next time (a new case name, a changed -o) stayed for good. A write into the folder
    now also removes this computer's (its host tag in the name) of any output there, once its process has ended
    and they are 10 minutes old; a running writer's, an older version's (no tag), another computer's and a
    user's file of a near name stay."""
    import logging
    import time

    from LiverTumorSegLib.processes import host_tag, process_mark

    dead, here, other = ended_process_id(), host_tag(), _another_host_tag()
    old = time.time() - 2 * fileutil.STALE_TEMPORARY_SECONDS
    names = {"other_output": f".case_7.{dead}-2zqda@{here}-k2c9x0ab.tmp.nii.gz",
             "staging_folder": f".evaluate.{dead}-2zqda@{here}-m3d8y1cd.tmp",
             "running": f".case_8.{process_mark()}-q1w2e3r4.tmp.nii.gz",
             "older_version": f".case_9.{dead}-2zqda-z9x8c7v6.tmp.nii.gz",
             "elsewhere": f".case_10.{dead}-2zqda@{other}-a1s2d3f4.tmp.nii.gz",
             "near_name": f"case_11.{dead}-2zqda@{here}-a1s2d3f4.tmp.nii.gz",
             "set_aside": f".case_12.nii.gz.{dead}-2zqda@{here}.old"}
    _write_leftovers(tmp_path, names, folder_key="staging_folder", last_written=old)
    caplog.set_level(logging.INFO, logger="LiverTumorSegLib.fileutil")
    with fileutil.atomic_output(tmp_path / "seg.nii.gz") as out:
        out.write_bytes(b"done")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["seg.nii.gz"] + [names[key] for key in names
                                            if key not in ("other_output", "staging_folder")])
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("removed ")]
    assert len(said) == 1 and "removed 2 unfinished" in said[0], caplog.text
    (tmp_path / names["other_output"]).write_bytes(b"partial")  # as if left again: the folder was looked through
    os.utime(tmp_path / names["other_output"], (old, old))
    with fileutil.atomic_output(tmp_path / "seg.nii.gz", overwrite=True) as out:
        out.write_bytes(b"again")
    assert (tmp_path / names["other_output"]).exists()


def test_a_temporary_a_failed_write_could_not_delete_is_not_blamed_on_a_kill(tmp_path, caplog, monkeypatch):
    """On Windows a run whose write failed could not delete its temporary while a virus scanner or indexer held it
    open (``atomic_output`` then leaves it to a later write's clean-up); the next write, once that run had ended, said
    it was left by "SIGKILL, a crash or a power cut". The lines now name a file held open among the causes."""
    import logging

    real_unlink = Path.unlink

    def held_open(self, *args, **kwargs):
        if ".tmp" in self.name:
            raise PermissionError(13, "The process cannot access the file because it is being used")
        return real_unlink(self, *args, **kwargs)

    target = tmp_path / "seg.nii.gz"
    monkeypatch.setattr(Path, "unlink", held_open)
    with pytest.raises(ValueError):
        with atomic_output(target) as temporary:
            temporary.write_bytes(b"partial")
            raise ValueError("the write failed")
    monkeypatch.setattr(Path, "unlink", real_unlink)
    (left,) = [p.name for p in tmp_path.iterdir()]  # the temporary the failed run could not delete
    monkeypatch.setattr(fileutil, "marked_process_alive", lambda mark, changed_at: False)  # that run has ended
    caplog.set_level(logging.INFO, logger="LiverTumorSegLib.fileutil")
    with atomic_output(target) as temporary:
        temporary.write_bytes(b"done")
    (kept,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"'{left}'" in kept and "held open" in kept, kept
    fileutil._say_leftovers(tmp_path, [tmp_path / left], [], [], fileutil.STALE_TEMPORARY_SECONDS)
    assert "held open" in caplog.records[-1].getMessage()


def test_outputs_whose_names_are_near_the_name_limit_are_replaced_and_put_back(tmp_path):
    """A label map and report named with 240 characters (a file system takes 255) could not be replaced with
    --overwrite: setting the earlier file aside as '.NAME.MARK.old', 33 characters longer, failed after the whole
    run with 'File name too long'. Such a name is cut and ended with a digest, different for the two outputs of
    one stem, and a killed run's set-aside file is still found and put back."""
    stem = "b" * 240
    labels, report = tmp_path / f"{stem}.nii.gz", tmp_path / f"{stem}.json"
    labels.write_text("earlier labels")
    report.write_text("earlier report")
    with fileutil.atomic_outputs({"labels": labels, "report": report}, overwrite=True) as tmp:
        tmp["labels"].write_text("new labels")
        tmp["report"].write_text("new report")
    assert labels.read_text() == "new labels" and report.read_text() == "new report"
    assert sorted(tmp_path.iterdir()) == sorted([labels, report])
    names = {fileutil.set_aside_name(p.name, tmp_path) for p in (labels, report)}
    assert len(names) == 2 and all(len(n) + fileutil._SET_ASIDE_EXTRA <= 255 for n in names)
    dead = ended_process_id()  # a run killed between its two renames: the earlier report only set aside
    report.rename(tmp_path / f".{fileutil.set_aside_name(report.name, tmp_path)}.{dead}.old")
    said = fileutil.restore_set_aside_outputs_of([labels, report])
    assert len(said) == 1 and f"'{report}' was restored" in said[0]
    assert report.read_text() == "new report" and sorted(tmp_path.iterdir()) == sorted([labels, report])


@pytest.mark.parametrize("text, reason", [("[" * 3000 + "]" * 3000, "nested too deep to read"),
                                          ('{"a": ' + "9" * 5000 + "}", "more digits than can be read")])
def test_json_that_python_cannot_read_is_a_json_error_the_callers_turn_into_their_message(text, reason):
    """Arrays nested 3000 deep (RecursionError) and a 5000-digit number (ValueError about
    sys.set_int_max_str_digits) were an 'internal error' in preprocess --config, --label-map and train
    --model-options; they are now json.JSONDecodeError, which each caller words as 'not valid JSON'."""
    import json

    from LiverTumorSegLib.io.labels import parse_label_map_option
    from LiverTumorSegLib.preprocessing import PreprocessingConfig, PreprocessingConfigError

    with pytest.raises(json.JSONDecodeError, match=reason):
        fileutil.json_loads_noting_repeats(text)
    with pytest.raises(PreprocessingConfigError, match="Preprocessing config is not valid JSON: .*" + reason):
        PreprocessingConfig.from_json(text)
    with pytest.raises(InputError, match=r"--label-map must be JSON like .*: .*" + reason):
        parse_label_map_option(text)


@pytest.mark.skipif(sys.platform.startswith("win"), reason="a rename changes no time of a file on Windows")
def test_an_output_set_aside_under_an_id_alone_now_held_by_a_later_process_is_put_back(tmp_path, monkeypatch):
    """A set-aside output an earlier version named by its writer's id alone ('.seg.nii.gz.1.old') stayed hidden for
    as long as any process held that id: in a container every run may be process 1, the run looking at it
    included. The holder now counts as another process when it started more than ID_ALONE_SLACK_SECONDS after the
    file was last changed; a holder started sooner after (a running writer of that version, give or take a
    step of the clock) keeps it hidden."""
    from LiverTumorSegLib import processes

    pid, slack = os.getpid(), processes.ID_ALONE_SLACK_SECONDS
    set_aside = tmp_path / f".seg.nii.gz.{pid}.old"
    set_aside.write_text("earlier")
    changed_at = fileutil._last_changed(set_aside.lstat())
    monkeypatch.setattr(processes, "process_started_at", lambda _pid: changed_at + slack - 60)  # within the slack
    assert fileutil.restore_set_aside_outputs_of([tmp_path / "seg.nii.gz"]) == []
    assert [p.name for p in tmp_path.iterdir()] == [set_aside.name]
    assert processes.process_alive(pid, None, changed_at) and processes.process_alive(pid)
    monkeypatch.setattr(processes, "process_started_at", lambda _pid: None)  # cannot be told: the id decides
    assert fileutil.restore_set_aside_outputs_of([tmp_path / "seg.nii.gz"]) == []
    monkeypatch.setattr(processes, "process_started_at", lambda _pid: changed_at + slack + 60)  # started later
    assert not processes.process_alive(pid, None, changed_at)
    said = fileutil.restore_set_aside_outputs_of([tmp_path / "seg.nii.gz"])
    assert len(said) == 1 and "was restored" in said[0]
    assert [p.name for p in tmp_path.iterdir()] == ["seg.nii.gz"]
    assert (tmp_path / "seg.nii.gz").read_text() == "earlier"


def test_an_output_appearing_while_it_is_written_is_kept_and_our_temporary_removed(tmp_path):
    """Another process (a second segment run given the same -o) writes the output while ours is being written: ours
    is refused before it is placed, the other's file stays as it was, and no temporary of ours is left."""
    target = tmp_path / "seg.nii.gz"
    with pytest.raises(OutputExistsError, match=r"Output '.*seg\.nii\.gz' appeared while writing; not overwriting "
                                                r"it\."):
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"ours")
            target.write_bytes(b"the other run's")
    assert target.read_bytes() == b"the other run's"
    assert [p.name for p in tmp_path.iterdir()] == ["seg.nii.gz"]


def test_an_output_folder_that_is_a_file_is_named_and_nothing_is_written(tmp_path):
    """'-o report.json/seg.nii.gz' (a file where the folder should be): named as such, the file left as it was."""
    from LiverTumorSegLib.fileutil import check_can_write

    existing = tmp_path / "report.json"
    existing.write_text("{}")
    with pytest.raises(InputError, match=r"Output folder '.*report\.json' is not a folder; choose another output "
                                         r"path\."):
        check_can_write(existing / "seg.nii.gz")
    with pytest.raises(InputError, match="is not a folder"):
        with atomic_output(existing / "seg.nii.gz") as tmp:
            tmp.write_bytes(b"never")
    assert existing.read_text() == "{}" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_the_sop_class_is_read_from_a_dicom_meta_header_and_a_header_cut_short_gives_none(tmp_path):
    """media_storage_sop_class reads (0002,0002) after an OB element ((0002,0001), 12-byte element header); a file
    cut after 'DICM' or inside that element's header gives None (the reader then judges the file), never an error
    or a UID read from bytes past the end."""
    import struct

    from LiverTumorSegLib.fileutil import media_storage_sop_class

    seg_class = b"1.2.840.10008.5.1.4.1.1.66.4"
    version = b"\x02\x00\x01\x00OB\x00\x00" + struct.pack("<I", 2) + b"\x00\x01"
    sop_class = b"\x02\x00\x02\x00UI" + struct.pack("<H", len(seg_class)) + seg_class
    whole = b"\0" * 128 + b"DICM" + version + sop_class
    for name, data, expected in (("whole.dcm", whole, seg_class.decode("ascii")),
                                 ("after_dicm.dcm", whole[:132], None),
                                 ("inside_ob_header.dcm", whole[:132 + 10], None)):
        path = tmp_path / name
        path.write_bytes(data)
        assert media_storage_sop_class(path) == expected, name


def test_a_set_aside_output_whose_visible_name_is_taken_is_left_hidden_and_named_nothing_replaced(tmp_path):
    """The visible name 'r.json.<pid>.old' is already taken (an earlier restore for a run of the same process id,
    which the user kept): neither file is replaced; the hidden earlier version stays where it is and is named, with
    what to do."""
    dead = ended_process_id()
    (tmp_path / "r.json").write_text("newer")
    hidden = tmp_path / f".r.json.{dead}.old"
    hidden.write_text("earlier")
    (tmp_path / f"r.json.{dead}.old").write_text("kept from before")
    said = fileutil.restore_set_aside_outputs_of([tmp_path / "r.json"])
    assert said == [f"'{hidden}' is an earlier version of '{tmp_path / 'r.json'}', left by a run (process {dead}) "
                    f"that was stopped while replacing it; move it elsewhere or delete it."]
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        "r.json": "newer", f".r.json.{dead}.old": "earlier", f"r.json.{dead}.old": "kept from before"}


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGINT") or sys.platform == "win32",
                    reason="a signal sent to this process")
def test_a_second_ctrl_c_during_the_rollback_waits_until_every_earlier_output_is_back(tmp_path, monkeypatch):
    """A Ctrl-C on a placement starts the rollback; a second one landing in it (a double Ctrl-C, SIGTERM then SIGHUP)
    ended it half done: the label map the user's, the report this run's, the user's report hidden (the interruption
    audit). The rollback now holds such a signal until it is done, then the run stops."""
    import signal

    for name in ("labels.nii.gz", "report.json"):
        (tmp_path / name).write_text("user " + name)
    for name in ("new_labels", "new_report"):
        (tmp_path / name).write_text("new")
    real, calls = fileutil.replace_file, [0]

    def replace(source, target):
        calls[0] += 1
        real(source, target)
        if calls[0] == 4:  # the second placement: Ctrl-C, as the handler raises it
            raise KeyboardInterrupt
        if calls[0] == 5:  # the rollback's first step: a second Ctrl-C, a real signal
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(fileutil, "replace_file", replace)
    with pytest.raises(KeyboardInterrupt):
        fileutil.move_all_or_none([(tmp_path / "new_labels", tmp_path / "labels.nii.gz"),
                                   (tmp_path / "new_report", tmp_path / "report.json")])
    assert calls[0] >= 6  # the rollback went on past the second signal
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.nii.gz", "report.json"]
    assert [(tmp_path / n).read_text() for n in ("labels.nii.gz", "report.json")] == ["user labels.nii.gz",
                                                                                      "user report.json"]


def test_the_host_tag_of_a_mac_is_its_machine_id_not_its_changing_name(monkeypatch):
    """A Mac's name changes with the network it joins, and the tag with it: a killed run's lock then blocked later runs
    as 'another computer's', and a crashed Slicer job's CT copies were never removed (the portability audit). The
    tag comes from its IOPlatformUUID, and files its name-based tag of earlier versions marks are its own too. On
    Linux the tag stays the name's (and the process namespace's), as in every earlier version."""
    import re
    import socket
    import subprocess

    from LiverTumorSegLib import processes

    def hash_tag(name, namespace):  # the formula every version has used
        import hashlib
        digest = hashlib.sha256(f"{name}\0{namespace}".encode("utf-8", "surrogateescape")).digest()
        return processes._in_base_36(int.from_bytes(digest[:8], "big") % 36 ** 4).rjust(4, "0")

    ioreg = '  "IOPlatformSerialNumber" = "C02X"\n  "IOPlatformUUID" = "12345678-ABCD-4EF0-9876-0123456789AB"\n'
    monkeypatch.setattr(processes.subprocess, "run",
                        lambda *a, **k: subprocess.CompletedProcess(a, 0, stdout=ioreg, stderr=""))
    assert processes.stable_machine_id("darwin") == "12345678-ABCD-4EF0-9876-0123456789AB"
    assert processes.stable_machine_id("linux") == "" and processes.stable_machine_id("win32") == ""
    monkeypatch.setattr(processes.sys, "platform", "darwin")
    tags = []
    for name in ("Annas-MacBook-Pro.local", "dhcp-10-2-3-4.hospital.org"):
        monkeypatch.setattr(socket, "gethostname", lambda name=name: name)
        processes.host_tag.cache_clear()
        processes._name_tag.cache_clear()
        tags.append(processes.host_tag())
        # a lock of 0.6.17 on this Mac, under its present name, is this computer's
        legacy = re.match(r"(?P<host>\w+)", hash_tag(name, ""))
        assert not processes.marked_elsewhere(legacy)
        assert processes.marked_elsewhere(re.match(r"(?P<host>\w+)", "zzzz" if tags[-1] != "zzzz" else "zzzy"))
    assert tags[0] == tags[1]  # the name changed, the tag did not
    monkeypatch.undo()
    processes.host_tag.cache_clear()
    processes._name_tag.cache_clear()
    if sys.platform.startswith("linux"):
        try:
            namespace = os.readlink("/proc/self/ns/pid")
        except OSError:
            namespace = ""
        assert processes.host_tag() == hash_tag(socket.gethostname(), namespace)  # Linux: unchanged


class _Stop(Exception):
    """What the test's SIGINT handler raises (the CLI's handler raises KeyboardInterrupt, which would end pytest)."""


@pytest.mark.skipif(not hasattr(__import__("os"), "kill"), reason="needs os.kill")
@pytest.mark.parametrize("what, stop_signal", [("file", "SIGINT"), ("folder", "SIGINT"), ("file", "SIGHUP")])
def test_a_stop_signal_as_a_temporary_is_made_leaves_none_behind(tmp_path, monkeypatch, what, stop_signal):
    """A SIGTERM that landed as mkstemp (or evaluate's mkdtemp) returned, before the clean-up knew the temporary, left
    it behind: an empty '.p.<mark>.tmp.png' beside a preview, an evaluate staging folder (the interruption audit)."""
    import os
    import signal
    import tempfile

    from LiverTumorSegLib.commands import evaluate
    from LiverTumorSegLib.fileutil import atomic_output

    if not hasattr(signal, stop_signal):
        pytest.skip(f"no {stop_signal} here")
    number = getattr(signal, stop_signal)  # the command line stops on SIGHUP too (the review)

    def stop(signum, frame):
        raise _Stop()

    name = "mkstemp" if what == "file" else "mkdtemp"
    real = getattr(tempfile, name)

    def made_then_stopped(*args, **kwargs):
        made = real(*args, **kwargs)
        if not str(kwargs.get("prefix", "")).startswith(".livertumorseg-write-test"):  # not the writability probe
            os.kill(os.getpid(), number)
        return made

    monkeypatch.setattr(tempfile, name, made_then_stopped)
    previous = signal.signal(number, stop)
    try:
        with pytest.raises(_Stop):
            if what == "file":
                with atomic_output(tmp_path / "p.png"):
                    pass
            else:
                with evaluate._staged_outputs(tmp_path / "ev", overwrite=False):
                    pass
    finally:
        signal.signal(number, previous)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_folder_output_beginning_with_an_unexpanded_tilde_is_refused_and_a_recipes_is_the_home_folder(
        tmp_path, monkeypatch, capsys):
    """'--output=~/ev' (bash leaves '~' after '=' as it is) made ./~/ev and said 'wrote ~/ev/summary.json', read as
    the home folder; so did a batch's -o, --log-dir, --cache-dir and crossval's -o; a recipe's 'log_dir: ~/trlogs'
    made ./~/trlogs and its 'data: ~/...' was called missing (the portability audit)."""
    import shutil

    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.training.config import load_config_file

    data = Path(__file__).resolve().parents[2] / "Testing" / "Data"
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    work = tmp_path / "work"
    (work / "cts").mkdir(parents=True)
    shutil.copy(data / "ct3slice_liver_seg.nii.gz", work / "ref.nii.gz")
    shutil.copy(data / "ct3slice_ct.nii.gz", work / "cts" / "a.nii.gz")
    monkeypatch.chdir(work)
    commands = {
        "-o": ["evaluate", "--pred", "ref.nii.gz", "--ref", "ref.nii.gz", "--no-plots", "--output=~/ev"],
        "Output folder": ["segment", "cts", "--output=~/bo", "--no-progress"],
        "--log-dir": ["train", "--data", "cts", "-o", "m.safetensors", "--log-dir=~/tl", "--epochs", "1"],
        "--cache-dir": ["train", "--data", "cts", "-o", "m.safetensors", "--cache-dir=~/tc", "--epochs", "1"],
    }
    for what, argv in commands.items():
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"{what} '~/" in err and "begins with '~', which was not taken as your home folder" in err, err
        assert f"or in full, such as '{home}/" in err
    assert main(["crossval", "--data", "cts", "--output=~/cv", "--folds", "2", "--epochs", "1"]) == 2
    assert "-o '~/cv' begins with '~'" in capsys.readouterr().err
    assert not (work / "~").exists() and list(home.iterdir()) == []
    recipe = work / "recipe.yaml"
    recipe.write_text("data: ~/d/list.csv\nlog-dir: ~/trlogs\ncache_dir: ~/trcache\nname: ~keep\n"
                      "output: ~no_such_account_x/m.safetensors\n")
    values = load_config_file(recipe)
    assert values == {"data": f"{home}/d/list.csv", "log-dir": f"{home}/trlogs", "cache_dir": f"{home}/trcache",
                      "name": "~keep", "output": "~no_such_account_x/m.safetensors"}
    # '~name' of no account is a folder's name (bash leaves it too), and so is a '~' folder that is there (the review)
    assert not fileutil.unexpanded_home_prefix("~no_such_account_x/ev")
    assert fileutil.unexpanded_home_prefix("~") and fileutil.unexpanded_home_prefix("~/ev")
    (work / "~").mkdir()
    assert not fileutil.unexpanded_home_prefix("~/ev")
    # a recipe's '~' is the home folder even with a './~' folder here (no shell reads a file: the review)
    recipe.write_text("log_dir: ~/trlogs\n")
    assert load_config_file(recipe) == {"log_dir": f"{home}/trlogs"}
    shutil.copy(work / "ref.nii.gz", work / "pred.nii.gz")
    assert main(["evaluate", "--pred", "pred.nii.gz", "--ref", "ref.nii.gz", "--no-plots", "--no-surface",
                 "--output=~no_such_account_x/ev"]) == 0
    assert (work / "~no_such_account_x" / "ev" / "summary.json").is_file()


@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_an_output_folder_locked_by_someone_else_is_waited_for_a_while_then_used_without_its_lock(
        tmp_path, monkeypatch, caplog):
    """'flock OUT livertumorseg segment ... -o OUT/s.nii.gz' (a job script's lock, which the run inherits) waited on
    its own lock for ever after all the work (helper-408's audit). The lock is waited for a while, said, then the
    outputs are placed without it, and that folder is not waited for again in this process (an --overwrite batch
    waited per case: the review); a lock let go meanwhile is taken."""
    import fcntl
    import logging
    import threading
    import time

    monkeypatch.setattr(fileutil, "_FOLDERS_LOCKED_BY_OTHERS", set())
    out, other = tmp_path / "out", tmp_path / "other"
    out.mkdir()
    other.mkdir()
    holders = [os.open(str(folder), os.O_RDONLY) for folder in (out, other)]
    for holder in holders:
        fcntl.flock(holder, fcntl.LOCK_EX)  # another open file description: as another process's lock
    monkeypatch.setattr(fileutil, "FOLDER_LOCK_WAIT_SECONDS", 0.3)
    try:
        with caplog.at_level(logging.INFO):
            with fileutil.atomic_outputs({"a": out / "a.txt"}) as paths:
                paths["a"].write_text("done")
        assert (out / "a.txt").read_text() == "done"
        assert "waiting for another process placing its files into" in caplog.text
        assert caplog.text.count("stayed locked by another process") == 1
        monkeypatch.setattr(fileutil, "FOLDER_LOCK_WAIT_SECONDS", 30.0)
        started = time.monotonic()
        with caplog.at_level(logging.INFO):
            with fileutil.atomic_outputs({"b": out / "b.txt"}) as paths:  # the next case into that folder
                paths["b"].write_text("done")
        assert time.monotonic() - started < 10 and caplog.text.count("stayed locked by another process") == 1
        caplog.clear()
        threading.Timer(0.3, lambda: fcntl.flock(holders[1], fcntl.LOCK_UN)).start()  # let go while waited for
        with caplog.at_level(logging.INFO):
            with fileutil.atomic_outputs({"c": other / "c.txt"}) as paths:
                paths["c"].write_text("done")
        assert (other / "c.txt").read_text() == "done" and "stayed locked" not in caplog.text
        assert "waiting for another process" in caplog.text
    finally:
        for holder in holders:
            os.close(holder)


def test_a_writers_error_inside_atomic_output_names_the_output_not_its_temporary(tmp_path):
    """A batch's probability map on a full disk said "Cannot write '.../prob/.ct_0.<mark>.tmp.nii.gz'", the hidden
    temporary atomic_output gave the writer (the review); the error names the output."""
    from LiverTumorSegLib.errors import InputError

    target = tmp_path / "ct_0.nii.gz"
    with pytest.raises(InputError) as failed:
        with fileutil.atomic_output(target) as temporary:
            raise InputError(f"Cannot write '{temporary}': [Errno 28] No space left on device")
    assert str(failed.value) == f"Cannot write '{target}': [Errno 28] No space left on device"
    assert list(tmp_path.iterdir()) == []
