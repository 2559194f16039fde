"""benchmarks/robustness_compare.py: the ship rules' quantities from robustness JSONs, against sums done by hand."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from script_helpers import load_script  # noqa: E402


def _row(case, perturbation, liver, tumor, false):
    return {"case": case, "perturbation": perturbation, "liver_dice": liver, "tumor_dice": tumor,
            "false_lesions": false}


def _doc(seed, base_rows, cand_rows):
    return {"seed": seed, "packages": [
        {"package": "/models/default.safetensors", "name": "default", "rows": base_rows},
        {"package": "/tmp/v5/default_v5.safetensors", "name": "default_v5", "rows": cand_rows}]}


@pytest.fixture(scope="module")
def compare():
    return load_script("benchmarks/robustness_compare.py", "robustness_compare_under_test")


def test_summary_pools_cases_and_seeds_as_counted_by_hand(compare):
    rows = [_row("a", "original", 0.90, None, 1), _row("b", "original", 0.80, None, 0),
            _row("a", "hyperdense", 0.90, 0.50, 2), _row("b", "hyperdense", 0.70, 0.30, 0),
            _row("a", "hyperdense", 0.95, 0.70, 0)]  # a second seed's row
    s = compare.summarize(rows)
    assert s["liver_dice"] == pytest.approx((0.90 + 0.80 + 0.90 + 0.70 + 0.95) / 5)
    assert s["tumor_dice"] == pytest.approx((0.50 + 0.30 + 0.70) / 3)  # rows without tumors left out
    assert s["false_lesions"] == 3 and s["false_lesions_original"] == 1
    hyper = s["per_perturbation"]["hyperdense"]
    assert hyper["tumor_dice"] == pytest.approx(0.5) and hyper["false_lesions"] == 2 and hyper["rows"] == 3
    assert list(s["per_perturbation"]) == ["original", "hyperdense"]  # the table's order


def test_main_reads_both_packages_of_each_seed(compare, tmp_path, capsys):
    files = []
    for seed, (b, c) in enumerate([(0.5, 0.7), (0.3, 0.9)]):
        path = tmp_path / f"seed{seed}.json"
        path.write_text(json.dumps(_doc(seed, [_row("a", "hyperdense", 0.9, b, seed)],
                                        [_row("a", "hyperdense", 0.9, c, 0)])))
        files.append(str(path))
    out = tmp_path / "summary.json"
    assert compare.main(files + ["--base", "default", "--candidate", "v5/", "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["seeds"] == [0, 1]
    assert summary["base"]["tumor_dice"] == pytest.approx(0.4)
    assert summary["candidate"]["tumor_dice"] == pytest.approx(0.8)
    assert summary["base"]["false_lesions"] == 1 and summary["candidate"]["false_lesions"] == 0
    assert "hyperdense" in capsys.readouterr().out


def test_a_name_is_taken_before_a_path_and_an_ambiguous_path_is_refused(compare, tmp_path):
    doc = _doc(0, [], [])
    assert compare.pick_package(doc, "default", "x")["name"] == "default"  # also in the other's path
    path = tmp_path / "seed0.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(compare.InputError, match="matches 2 of its packages"):
        compare.pick_package(doc, "safetensors", "x")
    assert compare.main([str(path), "--base", "safetensors", "--candidate", "default_v5"]) == 2  # one line


def test_the_documented_base_default_is_the_file_stem_not_any_path_holding_it(compare):
    """docs/default_model_v10.md's `--base default --candidate default_model_v10_all`: robustness.py records the
    bundled default by its metadata name (default_v10) and path .../default.safetensors, and 'default' is also a
    part of the candidate's path. It was refused ("'default' matches 2 of its packages")."""
    doc = {"seed": 0, "packages": [
        {"package": "/repo/Resources/Models/default.safetensors", "name": "default_v10", "rows": []},
        {"package": "/tmp/v10/default_model_v10_all.safetensors", "name": "default_model_v10_all", "rows": []}]}
    assert compare.pick_package(doc, "default", "x")["name"] == "default_v10"
    assert compare.pick_package(doc, "default_model_v10_all", "x")["name"] == "default_model_v10_all"
    assert compare.pick_package(doc, "v10/", "x")["name"] == "default_model_v10_all"  # a unique part of a path
    doc["packages"][1]["given"] = "mine"  # the argument as typed on robustness.py's command line
    assert compare.pick_package(doc, "mine", "x")["name"] == "default_model_v10_all"
    with pytest.raises(compare.InputError, match="matches none"):
        compare.pick_package(doc, "v5", "x")


def test_bad_inputs_and_outputs_are_one_line_errors_before_any_work(compare, tmp_path, capsys):
    good = tmp_path / "seed0.json"
    good.write_text(json.dumps(_doc(0, [_row("a", "original", 0.9, None, 0)], [_row("a", "original", 0.8, None, 0)])))
    picks = ["--base", "default", "--candidate", "v5/"]
    not_robustness = tmp_path / "other.json"
    not_robustness.write_text(json.dumps({"cases": []}))
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    for argv, said in (([str(tmp_path / "missing.json")] + picks, "does not exist"),
                       ([str(not_robustness)] + picks, "is not a benchmarks/robustness.py --json output"),
                       ([str(broken)] + picks, "is not JSON"),
                       ([str(good)] + picks + ["--out", str(tmp_path / "no" / "s.json")], "does not exist"),
                       ([str(good)] + picks + ["--out", str(good), "--overwrite"], "one of the input JSON files")):
        assert compare.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and said in err and "Traceback" not in err, (argv, err)
    out = tmp_path / "summary.json"
    out.write_text("mine")
    # checked before the inputs are read: the user's file is kept, and the run stops before reading a bad input
    assert compare.main([str(not_robustness)] + picks + ["--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == "mine"
    assert compare.main([str(good)] + picks + ["--out", str(out), "--overwrite"]) == 0
    assert json.loads(out.read_text())["seeds"] == [0]


def test_the_water_rows_are_summed_over_cases_and_seeds(compare, tmp_path, capsys):
    """v10's rule D1 read perihepatic_fluid's water called tumor and liver, summed over cases and seeds, with a
    throwaway script: the comparison prints and stores them itself (sums by hand below)."""
    def fluid(case, put, liver, tumor, false):
        return dict(_row(case, "perihepatic_fluid", 0.95, None, false), fluid_ml=put, fluid_as_liver_ml=liver,
                    fluid_as_tumor_ml=tumor)
    files = []
    for seed in (0, 1):
        path = tmp_path / f"seed{seed}.json"
        path.write_text(json.dumps(_doc(seed, [fluid("a", 100.0, 10.0 + seed, 5.0, 1), fluid("b", 50.0, 0.0, 2.5, 0),
                                               _row("a", "original", 0.9, None, 0)],
                                        [fluid("a", 100.0, 4.0, 1.0, 0), fluid("b", 50.0, 0.5, 0.0, 0)])))
        files.append(str(path))
    out = tmp_path / "summary.json"
    assert compare.main(files + ["--base", "default", "--candidate", "v5/", "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    base = summary["base"]["per_perturbation"]["perihepatic_fluid"]
    assert (base["fluid_ml"], base["fluid_as_liver_ml"], base["fluid_as_tumor_ml"]) == (300.0, 21.0, 15.0)
    assert base["false_lesions"] == 2
    cand = summary["candidate"]["per_perturbation"]["perihepatic_fluid"]
    assert (cand["fluid_ml"], cand["fluid_as_liver_ml"], cand["fluid_as_tumor_ml"]) == (300.0, 9.0, 2.0)
    assert "fluid_ml" not in summary["base"]["per_perturbation"]["original"]  # no water put in there
    assert "fluid_ml" not in summary["base"]  # fluid_region's and perihepatic_fluid's water are not one number
    printed = capsys.readouterr().out
    assert "perihepatic_fluid" in printed and "300.0 / 21.0 / 15.0 | 300.0 / 9.0 / 2.0" in printed


def test_the_exophytic_rows_outside_part_is_summed_over_cases_and_seeds(compare, tmp_path, capsys):
    """The exophytic lever's rule reads the share of the tumor put outside the liver that was called tumor, summed
    over cases and seeds: the comparison printed the row's Dice alone and dropped its outside_part_* mL (sums by hand
    below)."""
    def exo(case, put, liver, tumor):
        return dict(_row(case, "exophytic", 0.97, 0.6, 0), outside_part_ml=put, outside_part_as_liver_ml=liver,
                    outside_part_as_tumor_ml=tumor)
    files = []
    for seed in (0, 1):
        path = tmp_path / f"seed{seed}.json"
        path.write_text(json.dumps(_doc(seed, [exo("a", 20.0, 1.0, 4.0 + seed), exo("b", 10.0, 0.0, 2.0),
                                               _row("a", "original", 0.9, None, 0)],
                                        [exo("a", 20.0, 0.5, 15.0), exo("b", 10.0, 0.0, 8.0 - seed)])))
        files.append(str(path))
    out = tmp_path / "summary.json"
    assert compare.main(files + ["--base", "default", "--candidate", "v5/", "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    base = summary["base"]["per_perturbation"]["exophytic"]
    assert (base["outside_part_ml"], base["outside_part_as_liver_ml"], base["outside_part_as_tumor_ml"]) == \
        (60.0, 2.0, 13.0)
    cand = summary["candidate"]["per_perturbation"]["exophytic"]
    assert (cand["outside_part_ml"], cand["outside_part_as_liver_ml"], cand["outside_part_as_tumor_ml"]) == \
        (60.0, 1.0, 45.0)
    assert "outside_part_ml" not in summary["base"]["per_perturbation"]["original"]
    assert "outside_part_ml" not in summary["base"] and "fluid_ml" not in summary["base"]["per_perturbation"]["exophytic"]
    printed = capsys.readouterr().out
    assert "tumor put outside the liver" in printed and "60.0 / 2.0 / 13.0 | 60.0 / 1.0 / 45.0" in printed
    assert "water put in" not in printed  # no water row: no water section


def test_detected_and_true_lesions_are_summed_per_perturbation(compare, tmp_path, capsys):
    """The small_lesions row asks how many lesions are missed, which the comparison did not print (only Dice and
    false lesions); rows without true tumors, or from older JSONs without the keys, add nothing (sums by hand)."""
    def small(case, true, found):
        return dict(_row(case, "small_lesions", 0.97, 0.4, 0), true_lesions=true, detected_lesions=found)
    files = []
    for seed in (0, 1):
        path = tmp_path / f"seed{seed}.json"
        path.write_text(json.dumps(_doc(seed, [small("a", 6, 2 + seed), small("b", 4, 1),
                                               dict(_row("a", "original", 0.9, None, 1), true_lesions=0,
                                                    detected_lesions=0),
                                               _row("a", "hyperdense", 0.9, 0.5, 0)],
                                        [small("a", 6, 5), small("b", 4, 4 - seed)])))
        files.append(str(path))
    out = tmp_path / "summary.json"
    assert compare.main(files + ["--base", "default", "--candidate", "v5/", "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    base = summary["base"]["per_perturbation"]
    assert (base["small_lesions"]["detected_lesions"], base["small_lesions"]["true_lesions"]) == (7, 20)
    cand = summary["candidate"]["per_perturbation"]["small_lesions"]
    assert (cand["detected_lesions"], cand["true_lesions"]) == (17, 20)
    assert "true_lesions" not in base["original"] and "true_lesions" not in base["hyperdense"]
    assert "true_lesions" not in summary["base"]
    printed = capsys.readouterr().out
    assert "detected / true" in printed and "7 / 20 | 17 / 20" in printed
    assert "  original " not in printed.split("detected / true")[1]
