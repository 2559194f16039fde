"""The folders ``livertumorseg evaluate --pred ROOT/pred --ref ROOT/ref --prob ROOT/prob`` reads, and label maps to
evaluate, written for tests."""
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from LiverTumorSegLib.io import write_label_map, write_probability_map, write_volume
from LiverTumorSegLib.volume import CTVolume, ImageGeometry


def write_evaluate_folders(root: Path, references: Dict[str, np.ndarray], geometry: ImageGeometry,
                           probabilities: Optional[Dict[str, np.ndarray]] = None,
                           predictions: Optional[Dict[str, np.ndarray]] = None) -> Path:
    """Make ``root``/ref, ``root``/pred and, with ``probabilities``, ``root``/prob and write case NAME as NAME.nii.gz
    in each, on ``geometry``: ``references[NAME]`` (a (z, y, x) label map) in ref/, ``predictions[NAME]`` (the
    reference when ``predictions`` is None) in pred/, ``probabilities[NAME]`` in prob/: a uint8 map as ``segment
    --probabilities`` writes it (255 x p, tagged), any other as a plain volume of its type. Returns ``root``."""
    for folder in ("ref", "pred") + (() if probabilities is None else ("prob",)):
        (root / folder).mkdir()
    for case, reference in references.items():
        write_label_map(root / "ref" / f"{case}.nii.gz", reference, geometry)
        write_label_map(root / "pred" / f"{case}.nii.gz", reference if predictions is None else predictions[case],
                        geometry)
        if probabilities is None:
            continue
        probability = probabilities[case]
        if probability.dtype == np.uint8:
            write_probability_map(root / "prob" / f"{case}.nii.gz", probability, geometry)
        else:
            write_volume(root / "prob" / f"{case}.nii.gz", CTVolume(probability, geometry))
    return root


def two_lesion_maps() -> Tuple[np.ndarray, Tuple[float, float, float]]:
    """``(ref, spacing_zyx)``: a 0/1/2 label map of a liver with lesion A (4 x 10 x 10 voxels) and lesion B
    (4 x 6 x 6), 35 mm apart, on 5.0 x 0.7 x 0.7 mm voxels (z, y, x)."""
    ref = np.zeros((20, 100, 100), np.uint8)
    ref[2:18, 5:95, 5:95] = 1
    ref[8:12, 20:30, 20:30] = 2
    ref[8:12, 70:76, 70:76] = 2
    return ref, (5.0, 0.7, 0.7)
