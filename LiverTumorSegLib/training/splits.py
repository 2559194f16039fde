"""Patient-level data splits: a hold-out validation split and k-fold cross-validation.

All cases of one patient always land on the same side (never split by slice or by scan). Splits depend
only on the sorted patient ids and ``seed``, so they are reproducible across runs and machines.
"""
from typing import List, Sequence, Tuple

import numpy as np

from ..errors import InputError
from .datasets import Case


def _shuffled_patients(cases: Sequence[Case], seed: int) -> List[str]:
    patients = sorted({c.patient_id for c in cases})
    order = np.random.default_rng(int(seed)).permutation(len(patients))
    return [patients[i] for i in order]


def holdout_split(cases: Sequence[Case], val_fraction: float, seed: int) -> Tuple[List[Case], List[Case]]:
    """(train, val) with ``round(val_fraction * patients)`` validation patients (at least 1 when
    ``val_fraction > 0`` and there are 2+ patients). ``val_fraction == 0`` -> no validation cases."""
    patients = _shuffled_patients(cases, seed)
    if val_fraction <= 0:
        return list(cases), []
    if len(patients) < 2:
        raise InputError(f"A validation split needs at least 2 patients; the data has {len(patients)}. "
                         f"Add cases, or train without validation: --val-fraction 0 (val_fraction: 0 in a "
                         f"config file).")
    n_val = min(len(patients) - 1, max(1, int(round(val_fraction * len(patients)))))
    val_patients = set(patients[:n_val])
    return ([c for c in cases if c.patient_id not in val_patients],
            [c for c in cases if c.patient_id in val_patients])


def kfold_splits(cases: Sequence[Case], folds: int, seed: int) -> List[Tuple[List[Case], List[Case]]]:
    """``folds`` (train, val) pairs; every patient is in exactly one validation fold.

    Fold sizes differ by at most one patient. Raises :class:`InputError` when there are fewer
    patients than folds.
    """
    patients = _shuffled_patients(cases, seed)
    if folds < 2:
        raise InputError(f"Cross-validation needs at least 2 folds (got {folds}).")
    if len(patients) < folds:
        advice = "Use fewer folds." if len(patients) >= 2 else \
            "Cross-validation needs at least 2 patients: add cases, or train one model with train."
        raise InputError(f"{folds}-fold cross-validation needs at least {folds} patients; the data has "
                         f"{len(patients)}. {advice}")
    groups = [set(patients[i::folds]) for i in range(folds)]
    return [([c for c in cases if c.patient_id not in g], [c for c in cases if c.patient_id in g]) for g in groups]


def select_split(cases: Sequence[Case], val_fraction: float, folds: int, fold: int,
                 seed: int) -> Tuple[List[Case], List[Case]]:
    """The split a training run uses: fold ``fold`` of ``folds`` when ``folds >= 2``, else the hold-out."""
    if folds and folds >= 2:
        if not 0 <= fold < folds:
            raise InputError(f"fold {fold} is outside 0..{folds - 1}.")
        return kfold_splits(cases, folds, seed)[fold]
    return holdout_split(cases, val_fraction, seed)
