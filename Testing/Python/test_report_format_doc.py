"""docs/report_format.md against the reports the code writes: every key a ``segment`` report (and a ``measure``
report) holds is named there, at the case level, per lesion and inside the objects the tables describe. The audit
of the docs found keys the page left out (two_stage_record.parts_outside_crop, precision.note and
check.this_volume, a batch case's model_load timing); this keeps the next one from going unnoticed. The page also
documents ``evaluate``'s summary.json and ``followup``'s change.json (29 Nov 2026: neither had a key table, and the
report's ``postprocessing`` and ``options`` fields were named nowhere); their keys are checked both ways."""
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("torch")

from LiverTumorSegLib.inference.engine import SliceInferenceEngine  # noqa: E402
from LiverTumorSegLib.inference.lesion_report import lesion_report  # noqa: E402
from LiverTumorSegLib.inference.segmenter import Segmenter  # noqa: E402

from inference_helpers import corner_phantom, oracle_package, oracle_predictor  # noqa: E402
from evaluate_helpers import two_lesion_maps, write_evaluate_folders  # noqa: E402

REPORT_FORMAT = Path(__file__).resolve().parents[2] / "docs" / "report_format.md"


def _tables():
    """``{section title: [(keys of the row's first cell, names in backticks of its second cell)]}``. A row's names
    also take those of each ``### `key` ...`` subsection of its section whose heading names one of the row's keys:
    the details of the longest rows (``warnings``, ``precision``, ...) stand there as bullets since 29 Nov 2026."""
    tables = {}
    for section in REPORT_FORMAT.read_text(encoding="utf-8").split("\n## ")[1:]:
        table, *details = section.split("\n### ")
        rows = []
        for line in table.splitlines():
            cells = line.split("|")
            if line.startswith("| `") and len(cells) > 3:
                rows.append((set(re.findall(r"`([a-z_0-9]+)`", cells[1])),
                             set(re.findall(r"`([a-z_0-9]+)`", cells[2]))))
        for detail in details:
            heading, _, body = detail.partition("\n")
            named = set(re.findall(r"`([a-z_0-9]+)`", heading))
            body_names = set(re.findall(r"`([a-z_0-9]+)`", body))
            rows = [(keys, names | body_names) if keys & named else (keys, names) for keys, names in rows]
        tables[section.splitlines()[0].strip()] = rows
    return tables


def _row_of(rows, key):
    """The names the row documenting ``key`` gives (its second cell's)."""
    return next(names for keys, names in rows if key in keys)


def _documented(rows):
    """Every key the rows of one table document (their first cells)."""
    return set().union(*(keys for keys, _ in rows))


def _nested_keys(value, data_keyed=(), name=None):
    """The keys of the dicts inside ``value`` (a dict, at any depth, also inside lists), except the keys of a dict held
    under a name in ``data_keyed`` (whose keys are data, such as case names or column names: its values are looked
    into); ``name``: the key ``value`` is held under."""
    found, stack = set(), [(name, value)]
    while stack:
        name, item = stack.pop()
        if isinstance(item, dict):
            if name not in data_keyed:
                found.update(item)
            stack.extend(item.items())
        elif isinstance(item, list):
            stack.extend((None, element) for element in item)
    return found


def undocumented_keys(report, rows, data_keyed=()):
    """Keys of ``report`` no row of ``rows`` documents, and ``key.sub`` for each key (at any depth) inside a documented
    key's dict that its row's second cell does not name."""
    missing = sorted(set(report) - _documented(rows))
    for key, value in report.items():
        if isinstance(value, dict) and key in _documented(rows):
            names = _row_of(rows, key)
            missing += sorted(f"{key}.{sub}" for sub in _nested_keys(value, data_keyed, key) - names)
    return missing


def test_undocumented_keys_finds_a_new_key_at_any_depth():
    rows = [({"a"}, {"x", "y"}), ({"b"}, set())]
    assert undocumented_keys({"a": {"x": 1, "y": {"x": 2}}, "b": 3}, rows) == []
    assert undocumented_keys({"a": {"x": 1, "z": [{"w": 0}]}, "c": 3}, rows) == ["c", "a.w", "a.z"]
    assert undocumented_keys({"a": {"y": {"case7": {"x": 1}}}}, rows, data_keyed=("y",)) == []
    assert undocumented_keys({"a": {"case7": {"x": 1}}}, rows, data_keyed=("a",)) == []


def _segment_report():
    """A ``segment`` report of a phantom with one lesion (an oracle network, so the labels are known)."""
    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=4,
                                  batch_predictor=oracle_predictor)
    return Segmenter(engine=engine).segment_volume(corner_phantom().ct).report


def test_every_key_of_a_segment_report_is_documented():
    tables = _tables()
    case_rows, lesion_rows = tables["Case level"], tables["Per lesion (`lesions[i]`)"]
    report = _segment_report()
    assert report["lesions"], "the phantom's lesion is found"
    assert undocumented_keys(report, case_rows) == []  # postprocessing's and options' fields too
    (lesion,) = report["lesions"]
    assert set(lesion) - set().union(*(keys for keys, _ in lesion_rows)) == set()
    for axis in ("long_axis", "short_axis"):
        assert set(lesion[axis]) - _row_of(lesion_rows, axis) == set(), axis
    assert set(lesion["measurement_slice"]) - _row_of(lesion_rows, "measurement_slice") == set()


def test_every_key_of_a_measure_report_is_documented():
    """``measure`` writes lesion_report's dict with its inputs' paths (labels, ct, probabilities)."""
    tables = _tables()
    ph = corner_phantom()
    probability = np.where(ph.labels == 2, 200, 0).astype(np.uint8)
    report = lesion_report(ph.labels, ph.ct.geometry, ph.ct.array, tumor_probability_zyx=probability,
                           extra={"labels": "seg.nii.gz", "ct": "ct.nii.gz", "probabilities": "p.nii.gz"})
    case_keys = set().union(*(keys for keys, _ in tables["Case level"]))
    lesion_keys = set().union(*(keys for keys, _ in tables["Per lesion (`lesions[i]`)"]))
    assert set(report) - case_keys == set()
    assert report["lesions"] and set(report["lesions"][0]) - lesion_keys == set()


def test_the_resampling_fill_record_is_documented():
    """A noisy phantom whose slices' corners hold exactly 0 HU (a resampling's default fill) gets ``resampling_fill``."""
    from LiverTumorSegLib.phantom import make_phantom

    ct = make_phantom((12, 40, 44), (2.0, 2.5, 4.0), noise_hu=8.0, seed=0).ct
    yy, xx = np.mgrid[0:40, 0:44]
    ct.array[:, np.abs(xx - 21.5) + np.abs(yy - 19.5) > 30] = 0
    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=4,
                                  batch_predictor=oracle_predictor)
    report = Segmenter(engine=engine).segment_volume(ct).report
    case_rows = _tables()["Case level"]
    assert set(report) - set().union(*(keys for keys, _ in case_rows)) == set()
    assert set(report["resampling_fill"]) - _row_of(case_rows, "resampling_fill") == set()


def test_every_key_of_evaluates_summary_is_documented_and_every_documented_key_written(tmp_path):
    """``evaluate --prob`` of two cases (a missed lesion, a false one) writes every summary.json key the page names
    but ``probability_scale`` (only where untagged 0/1 maps were read as 255 x p), and names no other."""
    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.volume import ImageGeometry

    ref, spacing_zyx = two_lesion_maps()
    pred = ref.copy()
    pred[8:12, 70:76, 70:76] = 1          # lesion B missed
    pred[14:16, 50:54, 50:54] = 2         # a false lesion
    probability = np.where(pred == 2, 230, 5).astype(np.uint8)
    geometry = ImageGeometry(spacing=tuple(reversed(spacing_zyx)))
    write_evaluate_folders(tmp_path, {"a": ref, "b": ref}, geometry, {"a": probability, "b": probability},
                           predictions={"a": pred, "b": ref})
    out = tmp_path / "out"
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "--prob",
                 str(tmp_path / "prob"), "-o", str(out), "--no-plots", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    rows = _tables()["`evaluate`'s `summary.json`"]
    assert undocumented_keys(summary, rows, data_keyed=("metrics", "warnings", "sensitivity_at_fp_per_case")) == []
    assert _documented(rows) - set(summary) == {"probability_scale"}
    for column, stats in summary["metrics"].items():  # each column's statistics, named in the metrics row
        assert set(stats) - _row_of(rows, "metrics") == set(), column


def test_every_key_of_a_followup_change_report_is_documented_and_every_documented_key_written(tmp_path):
    """``followup`` of a target that grew and a new lesion: the page names every change.json key, the rows' too, and
    every key it names at the top is written; of a row's keys only those said to appear in some cases may be absent."""
    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.io import write_label_map
    from LiverTumorSegLib.volume import ImageGeometry

    geometry = ImageGeometry(spacing=(1.0, 1.0, 2.0))
    base = np.ones((8, 48, 48), np.uint8)
    base[3:5, 10:22, 10:22] = 2                    # a 12 mm target
    follow = base.copy()
    follow[2:6, 8:24, 8:24] = 2                    # grown to 16 mm
    follow[3:5, 32:40, 32:40] = 2                  # a new 8 mm lesion
    paths = [write_label_map(tmp_path / f"{name}.nii.gz", labels, geometry)
             for name, labels in (("base", base), ("follow", follow))]
    out = tmp_path / "change.json"
    assert main(["followup", "--baseline", str(paths[0]), "--followup", str(paths[1]), "--alignment", "none",
                 "--no-picture", "-o", str(out)]) == 0
    change = json.loads(out.read_text(encoding="utf-8"))
    tables = _tables()
    rows, row_rows = tables["`followup`'s `change.json`"], tables["`followup`'s `change.json`: per row (`lesions[i]`)"]
    assert undocumented_keys({k: v for k, v in change.items() if k not in ("baseline", "followup")}, rows) == []
    assert _documented(rows) - set(change) == set()
    for scan in ("baseline", "followup"):  # each scan's lesion report, documented by the lesion report's tables
        assert set(change[scan]) - _documented(tables["Case level"]) == set(), scan
        assert set(change[scan]["lesions"][0]) - _documented(tables["Per lesion (`lesions[i]`)"]) == set(), scan
    assert sorted(e["status"] for e in change["lesions"]) == ["grown", "new"]
    written = set().union(*(set(e) for e in change["lesions"]))
    assert written - _documented(row_rows) == set()
    assert _documented(row_rows) - written == {"recist_under_5_mm", "not_assessed_reason", "baseline_cut_by_scan_edge",
                                               "followup_cut_by_scan_edge", "moved_without_shared_voxel_mm",
                                               "reappeared_after_complete_response",
                                               "baseline_axial_axes_limited_by_slices",
                                               "followup_axial_axes_limited_by_slices", "may_be_part_of_rows"}


def test_the_network_grid_record_is_documented():
    """A CT on a grid turned 20 degrees about left-right is segmented on a patient-aligned grid: ``network_grid``."""
    from dataclasses import replace

    from LiverTumorSegLib.phantom import make_phantom

    ct = make_phantom((12, 40, 44), (2.0, 2.5, 4.0), noise_hu=8.0, seed=0).ct
    a = np.deg2rad(20.0)
    turned = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a), -np.sin(a)], [0.0, np.sin(a), np.cos(a)]])
    ct = replace(ct, geometry=replace(ct.geometry, direction=tuple(turned.ravel())))
    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=4,
                                  batch_predictor=oracle_predictor)
    report = Segmenter(engine=engine).segment_volume(ct).report
    case_rows = _tables()["Case level"]
    assert set(report) - set().union(*(keys for keys, _ in case_rows)) == set()
    assert set(report["network_grid"]) - _row_of(case_rows, "network_grid") == set()


def _crossval_results():
    """Two folds' training results as run_crossval tabulates them (no training): fold 0 validated on whole volumes,
    its weights chosen on its validation cases and started from a package that saw its patient; fold 1's
    whole-volume validation failed (NaN Dice), and the time limit stopped its training."""
    whole = {"liver_dice": 0.93, "tumor_dice": 0.61, "raw_network": {"liver_dice": 0.92, "tumor_dice": 0.55},
             "cases": [{"case": "a", "reference_has_tumor": True}, {"case": "b", "reference_has_tumor": False}],
             "postprocessing_label": "segment's defaults", "postprocessing": {"fill_holes": True}}
    first = SimpleNamespace(validation={"whole_volume": whole, "weights": "best_on_validation",
                                        "decided_on_validation": ["the packaged epoch"],
                                        "init_trained_on_validation_patients": ["p1"]},
                            val_cases=["a", "b"], epochs_completed=3)
    second = SimpleNamespace(validation={"liver_dice": 0.8, "tumor_dice": 0.4, "weights": "last_epoch"},
                             val_cases=["c"], epochs_completed=3, stop_reason="time_limit")
    return [first, second]


def _crossval_tables(tmp_path, results):
    """``(crossval.csv's header, crossval.json)`` that run_crossval's writer makes of ``results``."""
    import csv

    from LiverTumorSegLib.training.crossval import fold_row, mean_row, recorded_postprocessing, write_table

    rows = [fold_row(i, result) for i, result in enumerate(results)]
    write_table(rows + [mean_row(rows)], tmp_path, [recorded_postprocessing(r) for r in results])
    with open(tmp_path / "crossval.csv", newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    return header, json.loads((tmp_path / "crossval.json").read_text(encoding="utf-8"))


def test_every_crossval_column_and_summary_key_is_documented_and_every_documented_one_written(tmp_path):
    """crossval.csv's columns and crossval.json's summary keys were described only in a docstring, and no test held
    them to a page (29 Nov 2026): both ways now, as summary.json's keys are."""
    tables = _tables()
    columns = tables["`crossval`'s `crossval.csv` (and `crossval.json`'s `folds`)"]
    summary_rows = tables["`crossval`'s `crossval.json`: `summary`"]
    header, written = _crossval_tables(tmp_path, _crossval_results())
    documented_columns = [key for keys, _ in columns for key in sorted(keys)]
    assert set(header) == set(documented_columns) and header[0] == "fold"
    assert set().union(*(set(row) for row in written["folds"])) == set(header)
    assert set(written) == {"folds", "summary"}
    summary = written["summary"]
    data_keyed = ("metrics_over_folds", "raw_network_metrics_over_folds", "postprocessing_options")
    assert undocumented_keys(summary, summary_rows, data_keyed=data_keyed) == []
    assert _documented(summary_rows) - set(summary) == set()
    for name in ("metrics_over_folds", "raw_network_metrics_over_folds"):
        assert sorted(summary[name]) == ["liver_dice", "tumor_dice"], name
    # a plain run (every fold held out, last epoch, no recorded post-processing) leaves out only the keys the page
    # says are written some of the time
    plain = [SimpleNamespace(validation={"whole_volume": {"liver_dice": 0.9, "tumor_dice": 1.0},
                                         "weights": "last_epoch"}, val_cases=[case], epochs_completed=2)
             for case in ("a", "b")]
    (tmp_path / "plain").mkdir()
    _, plain_written = _crossval_tables(tmp_path / "plain", plain)
    summary_title = "`crossval`'s `crossval.json`: `summary`"
    sometimes = {key for keys, _ in summary_rows for key in keys
                 if _cell_text(summary_title, key).strip().startswith(("(when", "(only when"))}
    assert sometimes == {"postprocessing", "postprocessing_options", "note", "not_held_out", "unfinished"}
    assert _documented(summary_rows) - set(plain_written["summary"]) == sometimes - {"postprocessing"}
    (tmp_path / "failed").mkdir()  # no fold validated on whole volumes: no post-processing to name
    _, failed_written = _crossval_tables(tmp_path / "failed", _crossval_results()[1:])
    assert "postprocessing" not in failed_written["summary"]


def _cell_text(title, key):
    """The second cell's text of the row documenting ``key`` in the section ``title`` (re-read from the page:
    ``_tables`` keeps names only)."""
    section = next(part for part in REPORT_FORMAT.read_text(encoding="utf-8").split("\n## ")[1:]
                   if part.splitlines()[0].strip() == title)
    for line in section.splitlines():
        cells = line.split("|")
        if line.startswith("| `") and len(cells) > 3 and key in re.findall(r"`([a-z_0-9]+)`", cells[1]):
            return cells[2]
    raise KeyError(key)


def test_every_batch_status_column_is_documented_and_every_documented_one_written(tmp_path):
    """batch_status.csv's columns were named on no page; a batch of a segmented phantom and a broken file writes
    exactly the documented ones, in the page's order."""
    import csv

    from LiverTumorSegLib.inference.batch import STATUS_FILE, find_cases, segment_batch, write_status_csv
    from LiverTumorSegLib.io import write_volume
    from LiverTumorSegLib.phantom import make_phantom

    (tmp_path / "cts").mkdir()
    write_volume(tmp_path / "cts" / "ct_0.nii.gz", make_phantom((10, 36, 40), (2.0, 2.0, 4.0), noise_hu=0.0).ct)
    (tmp_path / "cts" / "broken.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=4,
                                  batch_predictor=oracle_predictor)
    statuses = segment_batch(find_cases(tmp_path / "cts", tmp_path / "out"), Segmenter(engine=engine))
    assert sorted(s.status for s in statuses) == ["done", "failed"]
    path = write_status_csv(statuses, tmp_path / "out" / STATUS_FILE)
    with open(path, newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    rows = _tables()["`segment FOLDER`'s `batch_status.csv`"]
    assert header == [key for keys, _ in rows for key in sorted(keys)]
