"""Evaluation reports: per-case CSV table, summary JSON, box plots, ROC plot and case overlays.

A *row* is a dict made by :func:`LiverTumorSegLib.metrics.lits.evaluate_case` (or read back with
:func:`read_case_table`): ``case`` first, then metric columns named ``<metric>_<structure>[_<unit>]``.
Missing / undefined values are NaN (written as ``nan`` in the CSV, ``null`` in JSON).

The training engineer's cross-validation uses the same two functions as ``livertumorseg evaluate``::

    rows = [evaluate_case(pred, ref, spacing_zyx, case=name) for ...]
    write_case_table(rows, "cv/cases.csv")
    summary = summarize_cases(rows)           # JSON-ready dict

Summary statistics skip NaN values and report how many were skipped (``n_nan``), so a case with an
empty prediction does not turn a mean into NaN but is still visible. Matplotlib (Agg backend) is
imported only inside the plotting functions.
"""
import csv
import json
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..fileutil import atomic_output, picture_text_as_given, spreadsheet_cell_text, spreadsheet_safe_text
from .lits import STRUCTURES, global_dice

PathLike = Union[str, Path]
LOWER_IS_BETTER_PREFIXES = ("voe", "rvd", "tumor_burden_error", "volume_outside_ref_", "lesions_pred_no_overlap",
                            "lesions_false_positive", "lesions_missed", "lits_lesion_voe", "lits_lesion_rvd")
MEASUREMENT_COLUMNS = ("lesions_ref", "lesions_pred", "lits_lesions_scored", "tumor_burden_pred", "tumor_burden_ref")
MEASUREMENT_PREFIXES = ("volume_pred_", "volume_ref_", "voxels_", "lesions_size_")
"""cases.csv columns that measure a case instead of scoring the prediction (volumes, voxel and lesion counts, tumor
burdens): no value of them is better than another, so they rank no best and worst case (:func:`rank_cases`); the
largest liver volume was drawn as the 'best' case."""
NOT_SUMMARIZED_PREFIXES = ("voxels_",)  # raw counts: used for global Dice, not averaged
LITS_LESION_PREFIX = "lits_lesion"
"""Per-case columns of the LiTS per-lesion scores (``lits_lesions_scored``, ``lits_lesion_<key>``: the mean over the
case's detected lesions; :func:`~.lits.evaluate_case`). The summary pools them over all detected lesions of all cases
(``lesion_segmentation_lits``), as LiTS does, instead of averaging them over cases in ``metrics``."""
LESION_SIZE_PREFIX = "lesions_size_"
"""Per-case columns of the detection by lesion size (``lesions_size_<bin>_ref``, ``lesions_size_<bin>_detected``;
:func:`~.lits.evaluate_case`): pooled in the summary's ``lesion_detection_by_size``, not averaged in ``metrics``."""
NOT_AVERAGED_COLUMNS = ("lesion_precision", "lesion_recall")
"""Per-case columns left out of the summary's ``metrics`` (they stay in the case table): lesion detection precision
and recall are pooled counts in the field (sum TP, FP and FN over cases, then divide: ``lesion_detection``), and a
mean of per-case ratios is not that: a tumor-free case with nothing predicted scores 1.0 on both, so three such
cases beside one whose two lesions were all missed averaged to a recall of 0.75 where the pooled recall is 0.0."""
DEFAULT_BOXPLOT_METRICS = ("dice_liver", "dice_tumor", "voe_liver", "rvd_liver", "assd_liver_mm",
                           "hd95_liver_mm", "assd_tumor_mm", "hd95_tumor_mm")


METRIC_HINTS = (("dice_", "1 = perfect overlap"), ("iou_", "1 = perfect overlap"), ("voe_", "0 = perfect"),
                ("rvd_", "0 = right size, > 0 too large"), ("assd_", "mm, 0 = perfect"), ("hd95_", "mm, 0 = perfect"),
                ("hd_", "mm, 0 = perfect"), ("rmsd_", "mm, 0 = perfect"))


WHOLE_TUMOR_MASK_COLUMNS = ("voe_tumor", "rvd_tumor", "assd_tumor_mm", "hd_tumor_mm", "hd95_tumor_mm", "rmsd_tumor_mm")
"""Tumor columns of the case's whole tumor mask, which LiTS reports per detected lesion instead (:mod:`.lits`)."""
WHOLE_TUMOR_MASK_NOTE = "per case, whole tumor mask (not LiTS's per-lesion average)"


def metric_scope(name: str) -> str:
    """What a metric column is computed on where its name does not say it: :data:`WHOLE_TUMOR_MASK_NOTE` for the
    :data:`WHOLE_TUMOR_MASK_COLUMNS`, else ``""``."""
    return WHOLE_TUMOR_MASK_NOTE if name in WHOLE_TUMOR_MASK_COLUMNS else ""


def metric_hint(name: str) -> str:
    """Plain-language reading aid for a metric column (e.g. ``"1 = perfect overlap"``), or ``""``."""
    for prefix, hint in METRIC_HINTS:
        if name.startswith(prefix):
            return hint
    return ""


def _to_float(value: Any) -> Optional[float]:
    """Float of a table cell, or None when the cell is not a number (e.g. the case name)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def table_columns(rows: Sequence[Dict[str, Any]], first: str = "case") -> List[str]:
    """``first`` (default ``case``) first, then every other key in order of first appearance over the rows."""
    columns: "OrderedDict[str, None]" = OrderedDict([(first, None)])
    for row in rows:
        for key in row:
            columns.setdefault(key, None)
    return list(columns)


def metric_values(rows: Sequence[Dict[str, Any]], column: str) -> np.ndarray:
    """Float values of one column over rows (NaN where missing or not a number)."""
    values = []
    for row in rows:
        value = _to_float(row.get(column))
        values.append(float("nan") if value is None else value)
    return np.asarray(values, dtype=np.float64)


def _stats(values: np.ndarray) -> Dict[str, Any]:
    finite = values[~np.isnan(values)]
    n = int(finite.size)
    if n == 0:
        return {"mean": None, "std": None, "median": None, "min": None, "max": None, "n": 0,
                "n_nan": int(values.size)}
    # the sample standard deviation (ddof=1) of one value is undefined: None ("n/a"), not 0.0, which read as a spread
    # measured to be nil on a one-case evaluation
    return {"mean": float(finite.mean()), "std": float(finite.std(ddof=1)) if n > 1 else None,
            "median": float(np.median(finite)), "min": float(finite.min()), "max": float(finite.max()),
            "n": n, "n_nan": int(values.size - n)}


def _lesion_summary(rows: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    totals = {}
    for key in ("ref", "pred", "detected", "missed", "false_positive", "pred_no_overlap"):
        values = metric_values(rows, f"lesions_{key}")
        totals[key] = int(np.nansum(values)) if values.size else 0
    if not any(row.get("lesions_pred_no_overlap") not in (None, "") for row in rows):
        totals["pred_no_overlap"] = None  # a table written before the column existed: unknown, not 0
    tp, fp, fn = totals["detected"], totals["false_positive"], totals["missed"]
    return dict({"ref_lesions": totals["ref"], "pred_lesions": totals["pred"],
                 "pred_no_overlap": totals["pred_no_overlap"]}, **_detection_counts(tp, fp, fn),
                lits_script=_lits_script_counts(rows, totals))


def _detection_counts(tp: int, fp: int, fn: int) -> Dict[str, Any]:
    """Pooled counts with precision TP / (TP + FP) and recall TP / (TP + FN) (None without a denominator)."""
    return {"detected": tp, "false_positive": fp, "missed": fn, "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None}


def _lits_script_counts(rows: Sequence[Dict[str, Any]], totals: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Pooled detection counted as the LiTS challenge script counts it (``lits.detect_lesions`` step 6): true
    positives = detected groups, false positives = predicted lesions - true positives, false negatives =
    reference lesions - true positives. None for a table written before ``lesions_detected_groups`` existed."""
    if not all(row.get("lesions_detected_groups") not in (None, "") for row in rows if "lesions_ref" in row):
        return None
    tp = int(np.nansum(metric_values(rows, "lesions_detected_groups")))
    return _detection_counts(tp, totals["pred"] - tp, totals["ref"] - tp)


def _lesion_size_summary(rows: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Detection by reference lesion size pooled over cases (:data:`~.lits.LESION_SIZE_BINS`): per bin ``label``,
    ``low_mm``, ``high_mm`` (null: open), ``ref_lesions``, ``detected``, ``missed`` and ``recall`` = detected /
    reference lesions (None without a reference lesion in the bin), the same pooling as ``lesion_detection``'s recall;
    and ``definition``. Cases without the columns (a table written before them) are left out; ``n_cases`` counts the
    cases used."""
    from .lits import LESION_SIZE_BINS, LESION_SIZE_DEFINITION

    used = [row for row in rows
            if all(row.get(f"{LESION_SIZE_PREFIX}{key}_{kind}") not in (None, "")
                   for key, _label, _low, _high in LESION_SIZE_BINS for kind in ("ref", "detected"))]
    bins: "OrderedDict[str, Any]" = OrderedDict()
    for key, label, low, high in LESION_SIZE_BINS:
        ref = int(np.nansum(metric_values(used, f"{LESION_SIZE_PREFIX}{key}_ref"))) if used else 0
        detected = int(np.nansum(metric_values(used, f"{LESION_SIZE_PREFIX}{key}_detected"))) if used else 0
        bins[key] = OrderedDict(label=label, low_mm=low, high_mm=high, ref_lesions=ref, detected=detected,
                                missed=ref - detected, recall=detected / ref if ref else None)
    return OrderedDict(n_cases=len(used), bins=bins, definition=LESION_SIZE_DEFINITION)


def lesion_size_line(by_size: Optional[Dict[str, Any]]) -> str:
    """One line of the recall by lesion size (``summary["lesion_detection_by_size"]``), e.g. ``lesion recall by size
    (reference lesions' equivalent-sphere diameter; predicted lesions not binned): <10 mm 3/8 (0.38), 10-20 mm 5/6
    (0.83), >=20 mm 4/4 (1.00)``; ``""`` without it."""
    if not by_size or not by_size.get("n_cases"):
        return ""
    parts = []
    for values in by_size["bins"].values():
        recall = "n/a" if values["recall"] is None else f"{values['recall']:.2f}"
        parts.append(f"{values['label']} {values['detected']}/{values['ref_lesions']} ({recall})")
    return ("lesion recall by size (reference lesions' equivalent-sphere diameter; predicted lesions not binned): "
            + ", ".join(parts))


LITS_LESION_DEFINITION = (
    "per detected lesion (each detected group: its reference lesions against its predicted lesions), averaged over "
    "all detected lesions of all cases, as the LiTS script averages its lesion VOE, RVD, ASD, MSD (hd_mm here) and "
    "RMSD; with this tool's RVD ((pred - ref) / ref) and 6-connected surfaces (the LiTS script's are 18-connected), "
    "lesions labelled and detected as lesion_detection counts them")


def _lits_lesion_summary(rows: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """The LiTS per-lesion scores pooled: per key of :data:`~.lits.LITS_LESION_KEYS` the mean over all detected
    lesions of all cases (each case's ``lits_lesion_<key>``, a mean over its ``lits_lesions_scored`` lesions, weighted
    by that count); None without a detected lesion; the surface keys are left out where the table has no such column
    (``--no-surface``)."""
    from .lits import LITS_LESION_KEYS

    counts = np.nan_to_num(metric_values(rows, "lits_lesions_scored"))
    summary: Dict[str, Any] = OrderedDict(n_lesions=int(counts.sum()))
    for key in LITS_LESION_KEYS:
        column = f"{LITS_LESION_PREFIX}_{key}"
        if not any(column in row for row in rows):
            continue
        values = metric_values(rows, column)
        used = (counts > 0) & ~np.isnan(values)
        summary[key] = float(np.sum(counts[used] * values[used]) / counts[used].sum()) if used.any() else None
    summary["definition"] = LITS_LESION_DEFINITION
    return summary


def _burden_summary(rows: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    errors = metric_values(rows, "tumor_burden_error")
    finite = errors[~np.isnan(errors)]
    if finite.size == 0:
        return {"rmse": None, "max_abs_error": None, "n": 0, "n_nan": int(errors.size)}
    return {"rmse": float(np.sqrt(np.mean(finite ** 2))), "max_abs_error": float(np.abs(finite).max()),
            "n": int(finite.size), "n_nan": int(errors.size - finite.size)}


def _add_confidence_intervals(summary: Dict[str, Any], rows: Sequence[Dict[str, Any]]) -> None:
    """Add to ``summary`` (changed in place) each metric's ``ci95_low`` and ``ci95_high`` (after its other keys), the
    ``global_dice_ci95`` per structure (after ``global_dice``; of the cases with voxel counts) and ``bootstrap``,
    which says how they were taken: see :func:`summarize_cases`."""
    from .bootstrap import (BOOTSTRAP_DESCRIPTION, BOOTSTRAP_METHOD, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED,
                            CONFIDENCE_LEVEL, mean_intervals, pooled_dice_interval)

    metrics = summary["metrics"]
    intervals = mean_intervals({column: metric_values(rows, column) for column in metrics})
    for column, (low, high) in intervals.items():
        metrics[column].update(ci95_low=low, ci95_high=high)
    pooled = OrderedDict()
    for structure in STRUCTURES:
        counted = [row for row in rows if row.get(f"voxels_tp_{structure}") not in (None, "")]
        low, high = pooled_dice_interval(*(metric_values(counted, f"voxels_{kind}_{structure}")
                                           for kind in ("tp", "pred", "ref")))
        pooled[structure] = OrderedDict(low=low, high=high)
    summary["global_dice_ci95"] = pooled
    summary["bootstrap"] = OrderedDict(method=BOOTSTRAP_METHOD, confidence_level=CONFIDENCE_LEVEL,
                                       resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED, resampled_unit="case",
                                       definition=BOOTSTRAP_DESCRIPTION)


def summarize_cases(rows: Sequence[Dict[str, Any]], confidence_intervals: bool = True) -> Dict[str, Any]:
    """Summary of per-case rows, JSON-ready (NaN -> None).

    Keys: ``n_cases``; ``metrics``: per numeric column (except raw ``voxels_*`` counts, the per-case
    ``lesion_precision`` and ``lesion_recall``, :data:`NOT_AVERAGED_COLUMNS`: detection is pooled, and the
    ``lits_lesion*`` columns, pooled in ``lesion_segmentation_lits``) a dict with ``mean``, ``std`` (sample, ddof=1;
    None for one value: undefined), ``median``, ``min``, ``max``, ``n`` (finite values used) and ``n_nan`` (NaN values
    left out), and with ``confidence_intervals`` ``ci95_low`` and ``ci95_high``: the 95 % interval of the mean over the
    cases (percentile bootstrap, :mod:`.bootstrap`; None with fewer than 2 values, both the value when all values are
    equal); ``global_dice``: per structure, Dice of all cases' voxels pooled, and with ``confidence_intervals``
    ``global_dice_ci95``: per structure ``{"low", "high"}``, the cases resampled and their voxel counts pooled again;
    ``bootstrap``: how the intervals were taken (``method``, ``confidence_level``, ``resamples``, ``seed``,
    ``resampled_unit``, ``definition``). ``confidence_intervals=False`` (crossval's summary over folds) leaves the three
    out. ``lesion_detection``: pooled counts with ``precision`` = TP / (TP + FP) and ``recall`` = TP / (TP + FN),
    ``pred_no_overlap`` (predicted lesions sharing no voxel with a reference lesion) and ``lits_script``: the same
    counted as the LiTS challenge script counts them (one hit per detected group; see :mod:`.lits`);
    ``lesion_detection_by_size``: the detection of reference lesions pooled per size bin (equivalent-sphere diameter,
    :func:`_lesion_size_summary`; only where the rows have the ``lesions_size_*`` columns, :data:`LESION_SIZE_PREFIX`);
    ``lesion_segmentation_lits``: tumor Dice, VOE, RVD, ASSD, HD (LiTS's MSD) and RMSD per detected lesion, averaged
    over all detected lesions of all cases as LiTS averages them (``n_lesions``, ``definition``); ``tumor_burden``:
    ``rmse`` and ``max_abs_error`` of ``tumor_burden_error`` (LiTS reports both); ``volume_outside_ref_total_ml``: per
    structure, predicted mL outside the reference, summed over cases.
    """
    rows = list(rows)
    metrics: "OrderedDict[str, Any]" = OrderedDict()
    for column in table_columns(rows):
        pooled_prefixes = (LITS_LESION_PREFIX, LESION_SIZE_PREFIX)  # pooled below, not averaged
        if column == "case" or column.startswith(NOT_SUMMARIZED_PREFIXES + pooled_prefixes) or \
                column in NOT_AVERAGED_COLUMNS:
            continue
        cells = [row.get(column) for row in rows if row.get(column) not in (None, "")]
        if not cells or any(_to_float(c) is None for c in cells):
            continue  # a text column
        metrics[column] = _stats(metric_values(rows, column))
    summary: Dict[str, Any] = OrderedDict(n_cases=len(rows), metrics=metrics)
    summary["global_dice"] = OrderedDict((s, global_dice(rows, s)) for s in STRUCTURES)
    if confidence_intervals:
        _add_confidence_intervals(summary, rows)
    if any("lesions_ref" in row for row in rows):
        summary["lesion_detection"] = _lesion_summary(rows)
    if any(column.startswith(LESION_SIZE_PREFIX) for row in rows for column in row):
        summary["lesion_detection_by_size"] = _lesion_size_summary(rows)
    if any("lits_lesions_scored" in row for row in rows):
        summary["lesion_segmentation_lits"] = _lits_lesion_summary(rows)
    if any("tumor_burden_error" in row for row in rows):
        summary["tumor_burden"] = _burden_summary(rows)
    outside = [c for c in table_columns(rows) if c.startswith("volume_outside_ref_") and c in metrics]
    if outside:  # totals over cases, mL: how much was labelled outside the reference, all cases together
        summary["volume_outside_ref_total_ml"] = OrderedDict(
            (c[len("volume_outside_ref_"):-len("_ml")], float(np.nansum(metric_values(rows, c)))) for c in outside)
    return _json_ready(summary)


def _json_ready(value: Any) -> Any:
    """Replace NaN/inf by None and numpy scalars by Python ones, recursively."""
    if isinstance(value, dict):
        return OrderedDict((k, _json_ready(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def _cell(value: Any) -> str:
    """A table cell's text; a file name's bytes that are not UTF-8 (Python's surrogate escapes: a case named
    after a file ``ct\\xff.nii.gz``) written as ``\\xff``: they ended the batch's table (and the batch) with
    'internal error: UnicodeEncodeError ... surrogates not allowed'."""
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return "nan" if math.isnan(value) else repr(value)
    if isinstance(value, str):  # a case named '=1+2' or '-2' opened as a formula in Excel (CSV injection)
        return spreadsheet_safe_text(_utf8_text(value))
    return _utf8_text(str(value))


def _utf8_text(text: str) -> str:
    """``text`` with each surrogate escape (a byte that was not UTF-8 in a file name) as ``\\xNN``, any other lone
    surrogate as ``\\udNNN``: text that can be written as UTF-8."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def write_case_table(rows: Sequence[Dict[str, Any]], path: PathLike, overwrite: bool = False,
                     first_column: str = "case") -> Path:
    """Write rows as CSV (``first_column``, default ``case``, first; NaN as ``nan``), atomically. Returns the
    path. A text (str) cell starting with = + - @ or a tab is written after a ``'`` (fileutil.spreadsheet_safe_text)
    so that a spreadsheet does not run it as a formula; numbers are written as they are."""
    rows = list(rows)
    columns = table_columns(rows, first_column)
    with atomic_output(path, overwrite=overwrite) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([_cell(row.get(c)) for c in columns])
    return Path(path)


def read_case_table(path: PathLike) -> List[Dict[str, Any]]:
    """Read a table written by :func:`write_case_table`; numbers come back as float, ``case`` as str, a text cell
    kept from being a formula ('=x' written as "'=x") as its text."""
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for record in csv.DictReader(handle):
            row: "OrderedDict[str, Any]" = OrderedDict()
            for key, text in record.items():
                row[key] = _read_cell(key, text or "")
            rows.append(row)
    return rows


def _read_cell(key: str, text: str) -> Any:
    """A cell of :func:`read_case_table`: a number as float (not in ``case``), '' as None, else its text; a text
    cell :func:`write_case_table` kept from being a formula ('=x' written as "'=x") as that text."""
    unescaped = spreadsheet_cell_text(text)
    if unescaped != text:
        return unescaped
    number = _to_float(text) if key != "case" else None
    return number if number is not None else (text if text != "" else None)


def write_json(data: Dict[str, Any], path: PathLike, overwrite: bool = False) -> Path:
    """Write a dict as indented JSON (NaN/inf -> null), atomically."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(_json_ready(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return Path(path)


def rank_cases(rows: Sequence[Dict[str, Any]], metric: str = "dice_liver") -> Tuple[Optional[str], Optional[str]]:
    """``(best_case, worst_case)`` by ``metric`` (higher is better for Dice-like metrics; for metrics
    ending in ``_mm``, starting with ``voe``/``rvd``/``tumor_burden_error``, and for counts and volumes of
    errors (false or missed lesions, volume outside the reference) lower absolute value is better). Cases with
    NaN are ignored; ``(None, None)`` when no case has a value. Ties go to the first such case in ``rows``' order, so
    where every case has the same value both are the first case (evaluate then draws one overlay). ValueError for a
    column that measures instead of scoring (:func:`is_measurement_column`)."""
    if is_measurement_column(metric):
        raise ValueError(f"{metric} measures a case (no value of it is better than another); rank by a score such "
                         f"as dice_liver, hd95_liver_mm or lesions_false_positive")
    values = metric_values(rows, metric)
    if metric.endswith("_mm") or metric.startswith(LOWER_IS_BETTER_PREFIXES):
        values = -np.abs(values)
    valid = np.flatnonzero(~np.isnan(values))
    if valid.size == 0:
        return None, None
    best = valid[np.argmax(values[valid])]
    worst = valid[np.argmin(values[valid])]
    return str(rows[best]["case"]), str(rows[worst]["case"])


def is_measurement_column(column: str) -> bool:
    """Whether the cases.csv ``column`` measures a case (:data:`MEASUREMENT_COLUMNS`, :data:`MEASUREMENT_PREFIXES`)
    instead of scoring the prediction against the reference."""
    if column.startswith(LOWER_IS_BETTER_PREFIXES):  # lesions_pred_no_overlap is an error count
        return False
    return column in MEASUREMENT_COLUMNS or column.startswith(MEASUREMENT_PREFIXES)


# ------------------------------------------------------------------------------------------------ plots
def agg_subplots(figsize: Tuple[float, float], nrows: int = 1, ncols: int = 1, squeeze: bool = True):
    """``(figure, axes)`` as ``pyplot.subplots`` gives them (``figsize`` in inches), drawn by a bare Agg ``Figure``
    that pyplot never holds: the caller's pyplot backend and figures stay as they were. The plots switched the whole
    process to Agg (``matplotlib.use``), so a notebook's or Qt session's own ``plt.show()`` showed nothing after an
    evaluation or a training."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def _save_figure(fig, path: PathLike, overwrite: bool) -> Path:
    with atomic_output(path, overwrite=overwrite) as tmp:
        fig.savefig(str(tmp), dpi=110, format="png")
    return Path(path)


MIN_BOXPLOT_CASES = 2


@picture_text_as_given()
def plot_metric_boxplots(rows: Sequence[Dict[str, Any]], path: PathLike,
                         metrics: Optional[Sequence[str]] = None, overwrite: bool = False) -> Optional[Path]:
    """One box plot per metric (cases as dots) in a grid, saved as PNG; metrics without any finite
    value are left out, and a box leaving out a case's NaN (a surface distance of a case without tumor) says how
    many cases it holds (``n = 2 of 3 cases``). Returns None when nothing could be plotted, and for fewer than
    :data:`MIN_BOXPLOT_CASES` cases (a box of one value says nothing; the table holds it)."""
    if len(rows) < MIN_BOXPLOT_CASES:
        return None
    wanted = list(metrics) if metrics is not None else list(DEFAULT_BOXPLOT_METRICS)
    series = [(m, metric_values(rows, m)) for m in wanted]
    series = [(m, v[~np.isnan(v)]) for m, v in series if np.any(~np.isnan(v))]
    if not series:
        return None
    ncols = min(4, len(series))
    nrows = int(math.ceil(len(series) / ncols))
    fig, axes = agg_subplots((3.2 * ncols, 3.4 * nrows), nrows, ncols, squeeze=False)
    rng = np.random.default_rng(0)
    for ax, (name, values) in zip(axes.ravel(), series):
        ax.boxplot([values], widths=0.5, showfliers=False)
        ax.scatter(1 + rng.uniform(-0.12, 0.12, values.size), values, s=12, alpha=0.7, color="tab:blue")
        hint, scope = metric_hint(name), metric_scope(name)
        title = f"{name}\n({hint})" if hint else name
        if values.size < len(rows):  # the figure's title counts every case; this box does not hold them all
            title += f"\nn = {values.size} of {len(rows)} cases (others undefined)"
        if scope:  # two lines: a box plot's title is narrow
            title += "\n" + scope.replace(" (", "\n(")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.grid(axis="y", alpha=0.3)
    for ax in axes.ravel()[len(series):]:
        ax.axis("off")
    fig.suptitle(f"Per-case metrics ({len(rows)} cases)")
    fig.tight_layout()
    return _save_figure(fig, path, overwrite)


@picture_text_as_given()
def plot_roc_curve(curve, path: PathLike, title: str = "ROC curve", overwrite: bool = False) -> Path:
    """Plot a :class:`~LiverTumorSegLib.metrics.roc.RocCurve` (with its AUC in the legend) as PNG."""
    fig, ax = agg_subplots((4.5, 4.5))
    ax.plot(curve.fpr, curve.tpr, color="tab:red", label=f"AUC = {curve.auc:.4f}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    ax.set_xlabel("false-positive rate (1 - specificity)")
    ax.set_ylabel("true-positive rate (sensitivity)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return _save_figure(fig, path, overwrite)


@picture_text_as_given()
def plot_froc_curve(curve, path: PathLike, title: str = "Lesion FROC", overwrite: bool = False) -> Path:
    """Plot a :class:`~LiverTumorSegLib.metrics.froc.FrocCurve` as PNG: sensitivity against false-positive lesions
    per case (log axis), the operating points as a step line, the sensitivity at each of
    :data:`~LiverTumorSegLib.metrics.froc.FROC_FP_RATES` marked and their mean in the legend."""
    from .froc import FROC_FP_RATES

    fig, ax = agg_subplots((5.0, 4.5))
    low, high = FROC_FP_RATES[0] / 2, max(FROC_FP_RATES[-1] * 1.5, float(curve.fp_per_case.max()) * 1.2)
    x = np.clip(curve.fp_per_case, low, None)  # a log axis has no 0: the points without false positives at its left
    ax.step(np.append(x, high), np.append(curve.sensitivity, curve.sensitivity[-1]), where="post",
            color="tab:red", label=f"mean sensitivity at 1/8..8 FP/case = {curve.summary()['mean_sensitivity']:.3f}")
    at = [curve.sensitivity_at(rate) for rate in FROC_FP_RATES]
    ax.plot(FROC_FP_RATES, at, "o", color="black", markersize=4, label="at 1/8, 1/4, ... 8 FP/case")
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, NullFormatter

    # plain tick labels (1/8 ... 8 as 0.125 ... 8): a log axis labels its ticks in math text ('$10^{-1}$'), which
    # the pictures' plain text (picture_text_as_given) showed as raw TeX laid over each other
    ticks = list(FROC_FP_RATES)
    while ticks[-1] * 2 <= high:  # a curve reaching far past 8 FP/case: its axis labelled on
        ticks.append(ticks[-1] * 2)
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(low, high)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false-positive lesions per case")
    ax.set_ylabel("sensitivity (reference lesions hit)")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)  # a curve near the top or the bottom: wherever it covers least
    fig.tight_layout()
    return _save_figure(fig, path, overwrite)


def draw_outline(ax: Any, mask: np.ndarray, **style: Any) -> None:
    """Outline the boolean 2-D ``mask`` (rows, columns; image pixel coordinates) on the matplotlib axes ``ax`` with
    ``ax.contour``'s ``style``, the mask padded by a pixel of background first: matplotlib refused masks under
    2 x 2 pixels (a one-voxel lesion ended ``followup`` in an internal error) and drew no line along the image's
    edge (a region touching it was left open; one filling the slice got no outline). Nothing is drawn for an
    empty mask."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or not mask.any():
        return
    rows, cols = mask.shape
    ax.contour(np.arange(-1, cols + 1), np.arange(-1, rows + 1), np.pad(mask, 1).astype(np.float32), levels=[0.5],
               **style)


def _outline_path(mask: np.ndarray, origin_rc: Tuple[int, int]) -> Any:
    """The matplotlib ``Path`` of the line :func:`draw_outline` draws around the boolean 2-D ``mask`` (rows,
    columns), placed with its pixel ``(0, 0)`` at image pixel ``origin_rc`` (row, column): the same contour
    generator with the settings ``ax.contour`` takes from matplotlib's rcParams, on the mask padded by one background
    pixel, so the vertices are those a contour of the whole image would give (marching squares is local)."""
    import contourpy
    import matplotlib
    from matplotlib.path import Path as MplPath

    rows, cols = mask.shape
    x, y = np.meshgrid(np.arange(origin_rc[1] - 1, origin_rc[1] + cols + 1, dtype=np.float64),
                       np.arange(origin_rc[0] - 1, origin_rc[0] + rows + 1, dtype=np.float64))
    algorithm = matplotlib.rcParams["contour.algorithm"]
    generator = contourpy.contour_generator(
        x, y, np.pad(mask, 1).astype(np.float32), name=algorithm,
        corner_mask=False if algorithm == "mpl2005" else matplotlib.rcParams["contour.corner_mask"],
        line_type=contourpy.LineType.SeparateCode)
    vertices, codes = generator.lines(0.5)
    return MplPath(np.concatenate(vertices), np.concatenate(codes))


def draw_outlines(ax: Any, outlines: Sequence[Tuple[np.ndarray, Tuple[int, int], Any, str]],
                  image_shape: Tuple[int, int], linewidths: float = 1.5) -> None:
    """Draw many outlines at once, as :func:`draw_outline` draws each (same lines, pixel for pixel), in the order
    given (a later one on top). ``outlines``: ``(mask, origin_rc, color, linestyle)`` per outline, ``mask`` a boolean
    2-D (rows, columns) part of the image whose pixel ``(0, 0)`` is image pixel ``origin_rc`` (row, column), e.g. a
    lesion's bounding box: the work is that of the masks, not of the whole image per outline. All outlines are one
    matplotlib collection: ``ax.contour`` per outline made an artist that kept the whole image's grid (about 0.66 MB
    on a 180 x 180 crop) and rescaled the axes over every artist before it, so ``followup``'s picture of 7,225
    one-voxel lesions took 10 min and 14 GB. ``image_shape``: (rows, columns) of the image drawn on; as after
    :func:`draw_outline` of a whole-image mask, the axes' data limits then take in its padded extent (-1 to columns
    and rows: an outline along the image's edge is seen whole) and are rescaled once, tightly. Empty masks are left
    out; without ``contourpy`` (matplotlib < 3.6) each outline is drawn by ``ax.contour`` on its mask."""
    outlines = [(np.asarray(m, dtype=bool), tuple(int(v) for v in o), c, s) for m, o, c, s in outlines]
    outlines = [item for item in outlines if item[0].ndim == 2 and item[0].any()]
    if not outlines:
        return
    try:
        import contourpy  # noqa: F401  (matplotlib >= 3.6 depends on it)
    except ImportError:
        for mask, (r0, c0), color, style in outlines:
            rows, cols = mask.shape
            ax.contour(np.arange(c0 - 1, c0 + cols + 1), np.arange(r0 - 1, r0 + rows + 1),
                       np.pad(mask, 1).astype(np.float32), levels=[0.5], colors=[color], linestyles=style,
                       linewidths=linewidths)
        _padded_image_limits(ax, ax.collections[-1], image_shape)
        return
    from matplotlib.collections import PathCollection

    paths = [_outline_path(mask, origin) for mask, origin, _, _ in outlines]
    collection = PathCollection(paths, facecolors="none", edgecolors=[color for _, _, color, _ in outlines],
                                linewidths=linewidths, linestyles=[style for _, _, _, style in outlines],
                                label="_nolegend_", zorder=2)
    ax.add_collection(collection, autolim=False)
    _padded_image_limits(ax, collection, image_shape)


def _padded_image_limits(ax: Any, artist: Any, image_shape: Tuple[int, int]) -> None:
    """What ``ax.contour`` of a whole-image mask padded by one pixel does to the axes, once: the padded extent
    (-1 to columns, -1 to rows) is ``artist``'s sticky edges (no margin beyond them) and data limits, and the view is
    rescaled tightly."""
    artist.sticky_edges.x[:] = [-1.0, float(image_shape[1])]
    artist.sticky_edges.y[:] = [-1.0, float(image_shape[0])]
    ax.update_datalim([(-1, -1), (image_shape[1], image_shape[0])])  # (x, y): column, row
    ax.autoscale_view(tight=True)


def overlay_slice_index(pred_labels: np.ndarray, ref_labels: np.ndarray) -> int:
    """Axial slice ``z`` to show for a case: most tumor voxels (reference or prediction), else most
    liver voxels, else the middle slice. Arrays ``(z, y, x)``."""
    for structure_value in (2, 1):
        area = (np.count_nonzero(ref_labels >= structure_value, axis=(1, 2))
                + np.count_nonzero(pred_labels >= structure_value, axis=(1, 2)))
        if area.max() > 0:
            return int(np.argmax(area))
    return int(ref_labels.shape[0] // 2)


@picture_text_as_given()
def plot_case_overlay(pred_labels: np.ndarray, ref_labels: np.ndarray, path: PathLike,
                      image: Optional[np.ndarray] = None, spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0),
                      title: str = "", overwrite: bool = False, reference_name: str = "reference",
                      slice_s_mm: Optional[Sequence[float]] = None, orientation_known: bool = True) -> Path:
    """PNG of one axial slice with reference (solid) and prediction (dashed) outlines of the liver
    (green / yellow) and tumor (blue / red), over the CT (``image`` in HU, window level 40 width 400) or
    a black background. Arrays ``(z, y, x)`` in the canonical orientation (:mod:`~LiverTumorSegLib.orientation`),
    shown in radiological convention as ``segment --preview`` shows them: image left = patient right, top =
    anterior, marked R, L, A and P on the image's edges (``orientation_known=False``, a NIfTI without sform or
    qform or a NRRD without space, :func:`~..volume.sides_unknown`: no letters, which would be a guess drawn as a
    fact); ``spacing_zyx`` (mm) sets the pixel aspect ratio.
    ``reference_name`` names the reference in the legend ("reference"; say "expert" only when it is).
    ``slice_s_mm``: each slice's S position (mm), which the title then gives: the arrays are often a reoriented
    copy, whose slice index is no slice number of the user's file."""
    from matplotlib.lines import Line2D

    z = overlay_slice_index(pred_labels, ref_labels)
    fig, ax = agg_subplots((6, 6.4))
    if image is not None:
        ax.imshow(np.asarray(image[z], dtype=np.float32), cmap="gray", vmin=40 - 200, vmax=40 + 200,
                  interpolation="nearest")
    else:
        ax.imshow(np.zeros(ref_labels.shape[1:], dtype=np.float32), cmap="gray", vmin=0, vmax=1)
    ax.set_aspect(float(spacing_zyx[1]) / float(spacing_zyx[2]))
    styles = [(ref_labels, 1, "limegreen", "solid"), (pred_labels, 1, "yellow", "dashed"),
              (ref_labels, 2, "deepskyblue", "solid"), (pred_labels, 2, "red", "dashed")]
    for labels, value, color, linestyle in styles:
        draw_outline(ax, labels[z] >= value, colors=[color], linestyles=linestyle, linewidths=1.4)
    handles = [Line2D([0], [0], color=c, linestyle=ls, label=lab) for c, ls, lab in (
        ("limegreen", "solid", f"liver, {reference_name}"), ("yellow", "dashed", "liver, prediction"),
        ("deepskyblue", "solid", f"tumor, {reference_name}"), ("red", "dashed", "tumor, prediction"))]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=2, fontsize=8, frameon=False)
    where = (f"axial slice at S {float(slice_s_mm[z]):.1f} mm" if slice_s_mm is not None
             else f"axial slice {z} of these arrays")
    ax.set_title(f"{title}\n{where}" if title else where, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    if orientation_known:  # the sides, as segment's preview and followup's figure mark them
        style = dict(transform=ax.transAxes, color="yellow", fontsize=11, fontweight="bold")
        for text, x, y, ha, va in (("A", 0.5, 0.99, "center", "top"), ("P", 0.5, 0.01, "center", "bottom"),
                                   ("R", 0.01, 0.5, "left", "center"), ("L", 0.99, 0.5, "right", "center")):
            ax.text(x, y, text, ha=ha, va=va, **style)
    fig.tight_layout()
    return _save_figure(fig, path, overwrite)
