"""Evaluation metrics for liver and liver-tumor segmentation (LiTS-style).

* :mod:`.overlap`: Dice, IoU (Jaccard), VOE, RVD, precision, sensitivity, specificity, accuracy, F1;
* :mod:`.surface`: ASSD, Hausdorff, HD95, RMSD in mm (spacing-aware distance transforms);
* :mod:`.roc`: ROC curve and AUC from probabilities (exact; integer maps counted per value, float maps by the
  Mann-Whitney count, memory bounded beside the map; pooled binned accumulator);
* :mod:`.lits`: 0/1/2 label-map evaluation per case, lesion detection, tumor burden, global Dice;
* :mod:`.froc`: lesion-level FROC (sensitivity against false-positive lesions per case, lesion confidence = mean
  tumor probability);
* :mod:`.report`: per-case CSV, summary JSON, box plots, ROC plot, case overlays.

Masks and label maps are ``(z, y, x)`` arrays; spacing is ``(z, y, x)`` in mm. Only numpy is imported
here; scipy and matplotlib are imported inside the functions that need them.
"""
from .froc import FrocCurve, froc_curve, lesion_hits
from .lits import (STRUCTURES, LesionDetection, check_same_grid, detect_lesions, evaluate_case, global_dice,
                   structure_mask, tumor_burden)
from .overlap import (ConfusionCounts, accuracy, confusion_counts, dice, f1, iou, jaccard, overlap_metrics,
                      precision, recall, rvd, sensitivity, specificity, voe, volume_ml)
from .report import (plot_case_overlay, plot_metric_boxplots, plot_roc_curve, read_case_table, summarize_cases,
                     write_case_table, write_json)
from .roc import RocAccumulator, RocCurve, roc_auc, roc_curve
from .surface import SurfaceDistances, assd, hausdorff, hd95, rmsd, surface_distances, surface_metrics, surface_voxels

__all__ = [
    "FrocCurve", "froc_curve", "lesion_hits", "STRUCTURES", "LesionDetection", "check_same_grid", "detect_lesions", "evaluate_case", "global_dice",
    "structure_mask", "tumor_burden", "ConfusionCounts", "accuracy", "confusion_counts", "dice", "f1", "iou",
    "jaccard", "overlap_metrics", "precision", "recall", "rvd", "sensitivity", "specificity", "voe", "volume_ml",
    "plot_case_overlay", "plot_metric_boxplots", "plot_roc_curve", "read_case_table", "summarize_cases",
    "write_case_table", "write_json", "RocAccumulator", "RocCurve", "roc_auc", "roc_curve", "SurfaceDistances",
    "assd", "hausdorff", "hd95", "rmsd", "surface_distances", "surface_metrics", "surface_voxels",
]
