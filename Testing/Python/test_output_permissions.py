"""Model packages and training checkpoints get the same permissions as every other output (``0666 & ~umask``,
0644 under the usual umask 022), not mkstemp's 0600 (issue 14)."""
import os
import stat

import pytest
import torch

from LiverTumorSegLib.models import build_model
from LiverTumorSegLib.package import save_model_package
from LiverTumorSegLib.preprocessing import PreprocessingConfig
from LiverTumorSegLib.training.checkpoint import save_checkpoint


@pytest.fixture()
def umask_022():
    previous = os.umask(0o022)
    yield 0o644
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_model_package_is_0644_under_umask_022(tmp_path, umask_022):
    model = build_model("unet", 3, 3, channels=(4, 8, 16))
    path = save_model_package(tmp_path / "m.safetensors", model, PreprocessingConfig.preset("default"))
    assert _mode(path) == umask_022
    path = save_model_package(path, model, PreprocessingConfig.preset("default"), overwrite=True)
    assert _mode(path) == umask_022


def test_checkpoint_is_0644_under_umask_022_and_follows_other_umasks(tmp_path, umask_022):
    path = save_checkpoint(tmp_path / "last.pt", {"model": {"w": torch.zeros(2)}, "epoch": 1})
    assert _mode(path) == umask_022
    os.umask(0o077)
    assert _mode(save_checkpoint(tmp_path / "private.pt", {"epoch": 2})) == 0o600


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_an_output_written_over_keeps_the_permissions_the_user_gave_it(tmp_path, umask_022):
    """A label map and report the user had made private (chmod 600: patient data) became 0644 when a rerun with
    --overwrite replaced them (helper-25's audit). A replaced file keeps its permissions; a new one gets the
    umask's."""
    from LiverTumorSegLib.fileutil import atomic_output, atomic_outputs

    single, group = tmp_path / "seg.nii.gz", {"labels": tmp_path / "a.nii.gz", "report": tmp_path / "a.json"}
    with atomic_output(single) as tmp:
        tmp.write_bytes(b"1")
    assert _mode(single) == umask_022
    os.chmod(single, 0o600)
    with atomic_output(single, overwrite=True) as tmp:
        tmp.write_bytes(b"2")
    assert _mode(single) == 0o600 and single.read_bytes() == b"2"
    group["labels"].write_bytes(b"old")
    os.chmod(group["labels"], 0o640)
    with atomic_outputs(group, overwrite=True) as temporaries:
        for tmp in temporaries.values():
            tmp.write_bytes(b"new")
    assert _mode(group["labels"]) == 0o640 and _mode(group["report"]) == umask_022


def test_outputs_are_written_where_the_file_system_refuses_chmod(tmp_path, monkeypatch):
    """A USB stick (FAT, exFAT) or Windows share (CIFS) mounted for another owner refuses chmod (EPERM): every output
    written there failed after the whole run with "Cannot write or read '.../.seg.PID-...tmp.nii.gz' (Operation not
    permitted)" and left that empty hidden file behind. The outputs are written (with the mount's permissions), a
    replaced one too, and nothing else is left. chmod is made to refuse (this runs as any user, root included)."""
    import errno

    from LiverTumorSegLib.fileutil import atomic_output, atomic_outputs

    def refused(path, mode, *args, **kwargs):
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), str(path))

    monkeypatch.setattr(os, "chmod", refused)
    single, group = tmp_path / "seg.nii.gz", {"labels": tmp_path / "a.nii.gz", "report": tmp_path / "a.json"}
    for overwrite in (False, True):
        with atomic_output(single, overwrite=overwrite) as tmp:
            tmp.write_bytes(b"1" if not overwrite else b"2")
        with atomic_outputs(group, overwrite=overwrite) as temporaries:
            for tmp in temporaries.values():
                tmp.write_bytes(b"new")
    checkpoint = save_checkpoint(tmp_path / "last.pt", {"epoch": 1})
    assert single.read_bytes() == b"2" and group["labels"].read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.nii.gz", "last.pt", "seg.nii.gz"]
    assert torch.load(checkpoint, weights_only=True) == {"epoch": 1}
