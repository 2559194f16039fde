"""benchmarks/lesion_contrast_analysis.py: the table of lesion contrast to the liver beside it, false against true
lesions, and the share of each that a rule ``|contrast| < T`` would remove (tabulated from rows; the segmentation
runs themselves need the models and CTs, so they are not run here)."""
import json
import re
from pathlib import Path

import pytest

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


def _csv(tmp_path):
    data = Path(__file__).resolve().parents[1] / "Data"
    path = tmp_path / "cases.csv"
    path.write_text(f"image,label\n{data / 'ct3slice_ct.nii.gz'},{data / 'ct3slice_liver_seg.nii.gz'}\n")
    return path


def test_inputs_and_json_are_checked_before_the_first_segment_run(tmp_path, capsys, monkeypatch):
    """A missing fold package failed only after fold 0 had been segmented (minutes), --held-out 0=nosuch was a
    KeyError, a negative --max-slices was taken, and --json replaced any file: all one line now, before any run."""
    script = load_script("benchmarks/lesion_contrast_analysis.py", "lesion_contrast_analysis_checks")
    monkeypatch.setattr(script, "false_rows_of_package", lambda *a: pytest.fail("segment ran"))
    monkeypatch.setattr(script, "true_rows", lambda *a: pytest.fail("the benchmark ran"))
    csv = _csv(tmp_path)
    existing = tmp_path / "rows.json"
    existing.write_text("mine")
    fold0 = tmp_path / "m_fold0.safetensors"
    for argv, said in (
            (["--false-data", str(csv), "--fold-packages", str(tmp_path / "nosuch_fold2.safetensors")],
             "does not exist"),
            (["--false-data", str(csv), "--fold-packages", str(fold0)], "does not exist"),
            (["--false-data", str(csv), "--held-out", "0=nosuch", "--fold0-packages", str(ROOT_MODEL)],
             "held-out CT 'nosuch' is not in --false-data"),
            (["--false-data", str(csv), "--held-out", "zero", "--fold0-packages", str(ROOT_MODEL)], "N=STEM"),
            (["--true-data", str(tmp_path), "--max-slices", "-3"], "--max-slices must be >= 0"),
            (["--true-data", str(tmp_path), "--seeds", "x"], "--seeds 'x'"),
            (["--true-data", str(tmp_path), "--perturbations", "nosuch"], "unknown nosuch"),
            (["--from-json", str(existing), "--json", str(existing)], "one of the --from-json files"),
            (["--true-data", str(tmp_path), "--json", str(existing)], "--overwrite")):
        assert script.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and said in err and "Traceback" not in err, (argv, err)
    assert existing.read_text() == "mine"


ROOT_MODEL = Path(__file__).resolve().parents[2] / "Resources" / "Models" / "default.safetensors"


def test_a_failed_segment_run_says_why(tmp_path):
    """segment's stderr went to DEVNULL: a failed run was a CalledProcessError with no reason."""
    script = load_script("benchmarks/lesion_contrast_analysis.py", "lesion_contrast_analysis_segment")
    broken = tmp_path / "broken_fold0.safetensors"
    broken.write_bytes(b"not a package")
    case = script.csv_cases(_csv(tmp_path))["ct3slice_ct"]
    with pytest.raises(script.InputError, match=r"segment with .*broken_fold0.safetensors on ct3slice_ct failed "
                                                r"\(exit 2\): error: .*broken_fold0"):
        script.false_rows_of_package(broken, case, "ct3slice_ct", 1, tmp_path)
