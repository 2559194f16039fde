"""docs/report_format.md against the reports the code writes: every key a ``segment`` report (and a ``measure``
report) holds is named there, at the case level, per lesion and inside the objects the tables describe. The audit
of the docs found keys the page left out (two_stage_record.parts_outside_crop, precision.note and
check.this_volume, a batch case's model_load timing); this keeps the next one from going unnoticed."""
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from LiverTumorSegLib.inference.engine import SliceInferenceEngine  # noqa: E402
from LiverTumorSegLib.inference.lesion_report import lesion_report  # noqa: E402
from LiverTumorSegLib.inference.segmenter import Segmenter  # noqa: E402

from inference_helpers import corner_phantom, oracle_package, oracle_predictor  # noqa: E402

REPORT_FORMAT = Path(__file__).resolve().parents[2] / "docs" / "report_format.md"


def _tables():
    """``{section title: [(keys of the row's first cell, names in backticks of its second cell)]}``."""
    tables = {}
    for section in REPORT_FORMAT.read_text(encoding="utf-8").split("\n## ")[1:]:
        rows = []
        for line in section.splitlines():
            cells = line.split("|")
            if line.startswith("| `") and len(cells) > 3:
                rows.append((set(re.findall(r"`([a-z_0-9]+)`", cells[1])),
                             set(re.findall(r"`([a-z_0-9]+)`", cells[2]))))
        tables[section.splitlines()[0].strip()] = rows
    return tables


def _row_of(rows, key):
    """The names the row documenting ``key`` gives (its second cell's)."""
    return next(names for keys, names in rows if key in keys)


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
    assert set(report) - set().union(*(keys for keys, _ in case_rows)) == set()
    (lesion,) = report["lesions"]
    assert set(lesion) - set().union(*(keys for keys, _ in lesion_rows)) == set()
    for key in ("grid", "recist", "postprocessing_changes", "precision"):
        assert set(report[key]) - _row_of(case_rows, key) == set(), key
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
