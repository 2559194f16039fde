"""benchmarks/lesion_contrast_analysis.py: the table of lesion contrast to the liver beside it, false against true
lesions, and the share of each that a rule ``|contrast| < T`` would remove (tabulated from rows; the segmentation
runs themselves need the models and CTs, so they are not run here)."""
import json
import re
from pathlib import Path

from script_helpers import load_script


def _row(truth, contrast, volume_ml, source="benchmark", **extra):
    row = {"source": source, "truth": truth, "contrast_to_liver_hu": contrast, "volume_ml": volume_ml,
           "perturbation": "baseline", "on_synthetic_tumor_fraction": 1.0, "case": "example_ct_dicom20",
           "mostly_outside_reference_liver": False}
    row.update(extra)
    return row


def test_fold_numbers_come_from_the_package_name():
    script = load_script("benchmarks/lesion_contrast_analysis.py", "lesion_contrast_analysis_fold")
    assert script.fold_of(Path("/tmp/v8/default_model_v8_s2027_fold2.safetensors")) == 2
    assert script.fold_of(Path("/tmp/lev/control_s7.safetensors")) is None


def test_the_table_gives_the_shares_a_threshold_removes_and_never_removes_a_lesion_without_contrast(tmp_path, capsys):
    script = load_script("benchmarks/lesion_contrast_analysis.py", "lesion_contrast_analysis_table")
    rows = [_row("true", -40.0, 3.0), _row("true", -9.0, 1.0),
            _row("false", -6.0, 2.0, source="fold_heldout"), _row("false", None, 8.0, source="fold_heldout")]
    path = tmp_path / "rows.json"
    path.write_text(json.dumps({"rows": rows}), encoding="utf-8")
    assert script.main(["--from-json", str(path)]) == 0
    lines = {line[:46].strip(): line for line in capsys.readouterr().out.splitlines()}
    true_line = lines["benchmark true (all perturbations)"]
    assert true_line[46:].split()[:2] == ["2", "0"]  # lesions, of them without a contrast
    # per T = 5, 8, 10, 15 HU: % of lesions / % of mL removed; -9 HU (1 of 4 mL) goes at 10 and 15
    assert _shares(true_line) == [(0.0, 0.0), (0.0, 0.0), (50.0, 25.0), (50.0, 25.0)]
    false_line = lines["fold false example_ct_dicom20"]
    assert false_line[46:].split()[:2] == ["2", "1"]
    # the lesion without a contrast (8 of 10 mL) is never removed: -6 HU (2 of 10 mL) goes from T = 8 on
    assert _shares(false_line) == [(0.0, 0.0), (50.0, 20.0), (50.0, 20.0), (50.0, 20.0)]


def _shares(line):
    return [(float(a), float(b)) for a, b in re.findall(r"(\d+\.\d)/\s*(\d+\.\d)", line)]
