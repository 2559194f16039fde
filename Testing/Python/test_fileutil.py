"""atomic_output: rename on success, previous file intact on failure, no overwrite unless asked."""
import os
import stat

import pytest

from LiverTumorSegLib.errors import InputError, OutputExistsError
from LiverTumorSegLib.fileutil import atomic_output, full_suffix


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


def test_missing_output_folder_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        with atomic_output(tmp_path / "nope" / "x.nii"):
            pass
