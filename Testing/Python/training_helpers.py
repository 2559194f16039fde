"""Test helper: a CSV training set of phantom CTs written as NIfTI (shared by the training tests)."""
from pathlib import Path
from typing import Sequence

from LiverTumorSegLib.io import write_label_map, write_volume
from LiverTumorSegLib.phantom import make_phantom


def write_phantom_cases(root: Path, count: int, shape_zyx: Sequence[int], image_suffix: str = ".nii.gz") -> Path:
    """``count`` phantoms (one patient each, seeds 0..count-1, 3 x 3 x 5 mm, ``shape_zyx`` voxels) plus
    ``root/cases.csv``. CTs are ``ct<i><image_suffix>`` (``.nii``: uncompressed, so every CT of one shape has the
    same size), labels ``lab<i>.nii.gz``."""
    rows = ["image,label,patient"]
    for i in range(count):
        ph = make_phantom(shape_zyx=tuple(shape_zyx), spacing_xyz=(3.0, 3.0, 5.0), seed=i)
        write_volume(root / f"ct{i}{image_suffix}", ph.ct)
        write_label_map(root / f"lab{i}.nii.gz", ph.labels, ph.ct.geometry)
        rows.append(f"ct{i}{image_suffix},lab{i}.nii.gz,p{i}")
    (root / "cases.csv").write_text("\n".join(rows) + "\n")
    return root / "cases.csv"
