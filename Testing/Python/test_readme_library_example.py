"""README's library example, run as written: on a NIfTI CT whose sform and qform disagree, the label map it writes
must lie where ITK and 3D Slicer place the CT (an audit found the example's own write 13.9 mm off the CT there)."""
import os
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
nib = pytest.importorskip("nibabel")
sitk = pytest.importorskip("SimpleITK")

from LiverTumorSegLib.phantom import make_phantom  # noqa: E402

README = Path(__file__).resolve().parents[2] / "README.md"


def library_example() -> str:
    section = README.read_text(encoding="utf-8").split("\n## The library\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def write_ct_with_disagreeing_transforms(path: Path, shift_mm=(5.0, -7.0, 11.0)) -> None:
    ct = make_phantom((12, 48, 52), (1.6, 1.6, 4.0), noise_hu=0.0).ct
    affine = ct.geometry.ijk_to_ras()
    image = nib.Nifti1Image(np.ascontiguousarray(ct.array.transpose(2, 1, 0)), affine)
    image.set_sform(affine, code=2)
    moved = affine.copy()
    moved[:3, 3] += shift_mm
    image.set_qform(moved, code=1)
    nib.save(image, str(path))


def test_the_library_example_places_its_label_map_where_the_ct_lies(tmp_path, monkeypatch):
    write_ct_with_disagreeing_transforms(tmp_path / "ct.nii.gz")
    write_ct_with_disagreeing_transforms(tmp_path / "ct2.nii.gz")
    monkeypatch.chdir(tmp_path)
    code = library_example().replace('device="auto"', 'device="cpu"')  # the same on a machine with a GPU
    exec(compile(code, "README.md (The library)", "exec"), {"print": lambda *a, **k: None})
    for ct, seg in (("ct.nii.gz", "seg.nii.gz"), ("ct2.nii.gz", "seg2.nii.gz")):
        ct_image, seg_image = sitk.ReadImage(os.fspath(tmp_path / ct)), sitk.ReadImage(os.fspath(tmp_path / seg))
        np.testing.assert_allclose(seg_image.GetOrigin(), ct_image.GetOrigin(), atol=1e-3)
        np.testing.assert_allclose(seg_image.GetDirection(), ct_image.GetDirection(), atol=1e-6)
        np.testing.assert_allclose(seg_image.GetSpacing(), ct_image.GetSpacing(), atol=1e-5)
        ct_nib, seg_nib = nib.load(tmp_path / ct), nib.load(tmp_path / seg)
        np.testing.assert_allclose(seg_nib.affine, ct_nib.affine, atol=1e-3)  # nibabel: by the sform, as the CT
