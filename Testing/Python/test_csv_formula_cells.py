"""CSV injection (OWASP): a text cell the project writes (a case name, an input path) that starts with = + - @ or a
tab opened as a formula in Excel/LibreOffice. Such a cell is written after a "'" (fileutil.spreadsheet_safe_text);
numbers stay numbers, and the project's own readers give the names back unchanged."""
import csv
import io

import numpy as np
import pytest
from script_helpers import load_script

from LiverTumorSegLib.fileutil import FORMULA_STARTS, spreadsheet_cell_text, spreadsheet_safe_text
from LiverTumorSegLib.inference.batch import CaseStatus, write_status_csv
from LiverTumorSegLib.inference.lesion_report import lesion_report, report_to_csv_text
from LiverTumorSegLib.metrics.report import read_case_table, write_case_table
from LiverTumorSegLib.volume import ImageGeometry

NAMES = ["=HYPERLINK(\"http://x\";\"y\")", "=1+2", "+1", "-2", "@SUM(A1)", "\tx", "\rx", "'=1+2", "''-2", "'plain",
         "plain", "-", "'", ""]


def _cells(text):
    return list(csv.reader(io.StringIO(text, newline="")))


@pytest.mark.parametrize("name", NAMES)
def test_each_text_round_trips_and_no_written_cell_starts_a_formula(name):
    written = spreadsheet_safe_text(name)
    assert written[:1] not in FORMULA_STARTS
    assert spreadsheet_cell_text(written) == name


def test_cases_csv_names_are_not_formulas_numbers_stay_numbers_and_read_back(tmp_path):
    rows = [{"case": name, "dice_liver": -0.5, "note": "-see log"} for name in ("=1+2", "-2", "+1", "@x", "ok")]
    path = write_case_table(rows, tmp_path / "cases.csv")
    table = _cells(path.read_text(encoding="utf-8"))
    assert [r[0] for r in table[1:]] == ["'=1+2", "'-2", "'+1", "'@x", "ok"]
    assert {r[1] for r in table[1:]} == {"-0.5"} and {r[2] for r in table[1:]} == {"'-see log"}
    back = read_case_table(path)
    assert [r["case"] for r in back] == ["=1+2", "-2", "+1", "@x", "ok"]
    assert [r["dice_liver"] for r in back] == [-0.5] * 5 and back[0]["note"] == "-see log"


def test_batch_status_csv_case_names_are_not_formulas(tmp_path):
    statuses = [CaseStatus("=1+2", "done", 1.5, liver_ml=-0.0), CaseStatus("-2", "failed", message="+oops")]
    table = _cells(write_status_csv(statuses, tmp_path / "batch_status.csv").read_text(encoding="utf-8"))
    assert table[0][:2] == ["case_id", "status"]
    assert [r[0] for r in table[1:]] == ["'=1+2", "'-2"] and table[2][-1] == "'+oops"
    assert table[1][2] == "1.5"
    assert [r["case_id"] for r in read_case_table(tmp_path / "batch_status.csv")] == ["=1+2", "-2"]


def test_lesion_report_csv_text_facts_are_not_formulas_coordinates_stay_numbers():
    labels = np.zeros((4, 6, 6), np.uint8)
    labels[:, 1:5, 1:5] = 1
    labels[1:3, 2:4, 2:4] = 2
    report = lesion_report(labels, ImageGeometry(spacing=(1, 1, 1), origin=(-50.0, -50.0, -50.0)))
    report["input"] = "=1+2.nii.gz"
    header, row = _cells(report_to_csv_text(report))
    cells = dict(zip(header, row))
    assert cells["input"] == "'=1+2.nii.gz"
    assert float(cells["centroid_lps_x_mm"]) < 0 and cells["centroid_lps_x_mm"].startswith("-")


def test_heldout_comparison_reads_the_escaped_names_and_writes_them_escaped(tmp_path):
    comparison = load_script("scripts/heldout_comparison.py", "heldout_comparison")
    write_status_csv([CaseStatus("=1+2", "failed"), CaseStatus("ok", "done")], tmp_path / "batch_status.csv")
    assert comparison.failed_segment_cases(tmp_path) == [comparison.evaluate_name("=1+2")]
    (tmp_path / "m" / "eval").mkdir(parents=True)
    write_case_table([{"case": "-2", "dice_liver": 0.9}], tmp_path / "m" / "eval" / "cases.csv")
    rows = {"m": {"implausible_cases": ["-2"], "cases_without_prediction": []}}
    table = comparison.per_case_rows(rows, tmp_path)
    assert table[0]["case"] == "-2" and table[0]["m_implausible"] == "yes"


def test_a_case_list_naming_a_column_twice_or_with_an_unquoted_comma_in_a_path_is_refused(tmp_path):
    """'image' and 'Image ' read the last column's path without a word; 'x,b,c.nii.gz' read the path 'b' and the
    case failed as "Input 'b' does not exist". Empty cells beyond the header (Excel's ',,') stay harmless."""
    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.fileutil import read_csv_rows

    repeated = tmp_path / "repeated.csv"
    repeated.write_text("case_id,image,Image \nx,a.nii.gz,b.nii.gz\n", encoding="utf-8")
    with pytest.raises(InputError, match="names the column\\(s\\) image more than once"):
        read_csv_rows(repeated, "Case list")
    comma = tmp_path / "comma.csv"
    comma.write_text("case_id,image\r\nx,a.nii.gz\r\nz,b,c.nii.gz\r\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 3 has more cells than its header's 2 column.*double quotes"):
        read_csv_rows(comma, "Case list")
    fine = tmp_path / "fine.csv"
    fine.write_text('case_id,image,,\r\nz,"b,c.nii.gz",,\r\n', encoding="utf-8")
    assert read_csv_rows(fine, "Case list")[1] == [(2, {"case_id": "z", "image": "b,c.nii.gz", "": ""})]


def test_a_case_list_with_a_stray_quote_or_a_first_line_of_many_cells_is_refused_in_one_line(tmp_path):
    """A double quote that opened a cell without one closing it took in the list's remaining lines, and past the csv
    module's 128 KiB cell limit segment and train ended in "internal error: Error: field larger than field limit";
    a first line of 80,000 cells (no case list) was checked for repeated names in quadratic time (minutes)."""
    import time

    from LiverTumorSegLib.errors import InputError
    from LiverTumorSegLib.fileutil import read_csv_rows

    stray = tmp_path / "stray.csv"
    rows = [f"case{i:05d}_with_a_long_name.nii.gz" for i in range(6000)]
    stray.write_text("image\nct0.nii.gz\n\"ct1.nii.gz\n" + "\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"'.*stray.csv' cannot be read as CSV from line 3 on \(field larger than "
                                         r"field limit.*a double quote that opens a cell without one closing it"):
        read_csv_rows(stray, "Case list")
    wide = tmp_path / "wide.csv"
    wide.write_text("image" + ",c" * 80000 + "\n", encoding="utf-8")
    began = time.monotonic()
    with pytest.raises(InputError, match="names the column\\(s\\) c more than once"):
        read_csv_rows(wide, "Case list")
    assert time.monotonic() - began < 3.0
