"""The folders ``livertumorseg evaluate --pred ROOT/pred --ref ROOT/ref --prob ROOT/prob`` reads, written for tests."""
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from LiverTumorSegLib.io import write_label_map, write_probability_map, write_volume
from LiverTumorSegLib.volume import CTVolume, ImageGeometry


def write_evaluate_folders(root: Path, references: Dict[str, np.ndarray], geometry: ImageGeometry,
                           probabilities: Dict[str, np.ndarray],
                           predictions: Optional[Dict[str, np.ndarray]] = None) -> Path:
    """Make ``root``/ref, ``root``/pred and ``root``/prob and write case NAME as NAME.nii.gz in each, on
    ``geometry``: ``references[NAME]`` (a (z, y, x) label map) in ref/, ``predictions[NAME]`` (the reference when
    ``predictions`` is None) in pred/, ``probabilities[NAME]`` in prob/: a uint8 map as ``segment --probabilities``
    writes it (255 x p, tagged), any other as a plain volume of its type. Returns ``root``."""
    for folder in ("ref", "pred", "prob"):
        (root / folder).mkdir()
    for case, reference in references.items():
        write_label_map(root / "ref" / f"{case}.nii.gz", reference, geometry)
        write_label_map(root / "pred" / f"{case}.nii.gz", reference if predictions is None else predictions[case],
                        geometry)
        probability = probabilities[case]
        if probability.dtype == np.uint8:
            write_probability_map(root / "prob" / f"{case}.nii.gz", probability, geometry)
        else:
            write_volume(root / "prob" / f"{case}.nii.gz", CTVolume(probability, geometry))
    return root
