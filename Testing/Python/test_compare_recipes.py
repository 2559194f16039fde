"""benchmarks/compare_recipes.py: per-package numbers, pairing by fold and training seed, the training seed's
spread, known answers; the CLI on two tiny fold packages; and the robustness score's tumor-outside volume."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from script_helpers import load_script  # noqa: E402

from LiverTumorSegLib.errors import InputError  # noqa: E402
from LiverTumorSegLib.training.datasets import Case  # noqa: E402

cr = load_script("benchmarks/compare_recipes.py", "compare_recipes_bench")
rb = cr.rb


def row(perturbation, seed=0, case="c0", liver=0.9, tumor=None, outside=0.0, tumor_outside=0.0, false=0):
    return {"case": case, "perturbation": perturbation, "bench_seed": seed, "liver_dice": liver,
            "tumor_dice": tumor, "liver_outside_ml": outside, "tumor_outside_ml": tumor_outside,
            "false_lesions": false}


def test_package_summary_averages_cases_then_seeds():
    rows = [row("original", case="a", liver=0.90, outside=10.0, tumor_outside=4.0, false=1),
            row("original", case="b", liver=0.80, outside=30.0, tumor_outside=0.0, false=3),
            row("baseline", 0, "a", tumor=0.6), row("baseline", 0, "b", tumor=0.2),   # seed 0: 0.4
            row("baseline", 1, "a", tumor=0.9), row("baseline", 1, "b", tumor=0.7)]   # seed 1: 0.8
    s = cr.package_summary(rows, ["baseline"])
    assert s["liver"] == pytest.approx(0.85) and s["outside_ml"] == pytest.approx(20.0)
    assert s["false_ml"] == pytest.approx(2.0) and s["false_n"] == pytest.approx(2.0)
    assert s["tumor"]["baseline"]["per_seed"] == pytest.approx([0.4, 0.8])
    assert s["tumor"]["baseline"]["mean"] == pytest.approx(0.6)
    assert (s["tumor"]["baseline"]["min"], s["tumor"]["baseline"]["max"]) == pytest.approx((0.4, 0.8))
    with pytest.raises(InputError, match="original"):
        cr.package_summary([row("baseline", tumor=0.5)], ["baseline"])


def entry(held, seed, **metrics):
    return {"held_out": held, "training_seed": seed, "pair_key": (held, seed), "metrics": metrics}


def test_pairs_match_fold_and_training_seed_and_the_seed_spread_is_per_fold():
    base = [entry(("p0",), 1, liver=0.90, false_ml=80.0), entry(("p0",), 2, liver=0.96, false_ml=0.0),
            entry(("p1",), 1, liver=0.50, false_ml=10.0), entry(("p1",), 2, liver=0.54, false_ml=20.0)]
    other = [entry(("p0",), 2, liver=0.95, false_ml=5.0), entry(("p0",), 1, liver=0.93, false_ml=10.0),
             entry(("p1",), 1, liver=0.52, false_ml=10.0), entry(("p2",), 1, liver=0.99, false_ml=0.0)]
    # pairs: (p0,1) +0.03, (p0,2) -0.01, (p1,1) +0.02; (p2,1) has no partner
    assert sorted(cr.paired_differences(base, other, "liver")) == pytest.approx([-0.01, 0.02, 0.03])
    assert sorted(cr.paired_differences(base, other, "false_ml")) == pytest.approx([-70.0, 0.0, 5.0])
    # seed spread: p0 range 0.06, p1 range 0.04 -> 0.05; false_ml: 80 and 10 -> 45
    assert cr.seed_spread(base, "liver") == pytest.approx(0.05)
    assert cr.seed_spread(base, "false_ml") == pytest.approx(45.0)
    assert cr.seed_spread(other, "liver") == pytest.approx(0.02)      # only p0 has two seeds
    assert cr.seed_spread([entry(("p0",), 1, liver=0.9)], "liver") is None
    assert cr.improved(-70.0, "false_ml") and not cr.improved(5.0, "false_ml")
    assert cr.improved(0.03, "liver") and not cr.improved(-0.01, "liver")


def test_summary_line_counts_the_improved_pairs():
    base = [entry(("p0",), 1, liver=0.90, outside_ml=1.0, false_ml=80.0, false_n=2.0),
            entry(("p0",), 2, liver=0.96, outside_ml=1.0, false_ml=0.0, false_n=0.0)]
    other = [entry(("p0",), 1, liver=0.93, outside_ml=1.0, false_ml=10.0, false_n=3.0),
             entry(("p0",), 2, liver=0.95, outside_ml=1.0, false_ml=0.0, false_n=0.0)]
    lines = cr.summary_lines([("off", base), ("field", other)], [])
    by_metric = {line.split()[0]: line for line in lines[2:]}
    assert by_metric["liver"].split()[1:4] == ["0.930", "0.940", "0.060"]   # means, then the seed spread
    assert "+0.010 [-0.010..+0.030] 1/2 better" in by_metric["liver"]
    assert "-35.000 [-70.000..+0.000] 1/2 better" in by_metric["false_ml"]
    assert "0/2 better" in by_metric["outside_ml"]                          # no change is not better


def test_held_out_cases_are_the_validation_only_cases():
    cases = [Case("a", "pa", "a.nii.gz", "a_liver.nii.gz", "csv"), Case("b", "pb", "b.nii.gz", "b_liver.nii.gz", "csv"),
             Case("c", "pa", "c.nii.gz", "c_liver.nii.gz", "csv")]
    meta = {"training": {"cases": ["b"], "patients": ["pb"], "validation_cases": ["a", "c"]}}
    assert [c.case_id for c in cr.held_out_cases(meta, cases)] == ["a", "c"]
    meta = {"training": {"cases": ["b"], "patients": ["pb", "pa"], "validation_cases": ["a"]}}
    assert cr.held_out_cases(meta, cases) == []                             # a scan of a training patient
    assert cr.training_seed({"training": {"config": {"seed": 7}}}) == 7
    assert cr.training_seed({"training": {"config": {"seed": True}}}) is None
    assert cr.training_seed({}) is None


def test_parse_arm_takes_folders_globs_and_lists(tmp_path):
    for n in ("f0", "f1"):
        (tmp_path / f"{n}.safetensors").write_bytes(b"x")
    assert cr.parse_arm(f"v2={tmp_path}") == ("v2", [tmp_path / "f0.safetensors", tmp_path / "f1.safetensors"])
    assert cr.parse_arm(f"v2={tmp_path}/f1*")[1] == [tmp_path / "f1.safetensors"]
    assert cr.parse_arm(f"a={tmp_path}/f0.safetensors,{tmp_path}/f1.safetensors")[1][1].name == "f1.safetensors"
    for bad in ("v2", "=x", f"v2={tmp_path}/missing.safetensors", f"v2={tmp_path / 'empty'}*"):
        with pytest.raises(InputError):
            cr.parse_arm(bad)


def test_score_gives_tumor_outside_the_true_tumor_in_ml():
    spacing = (2.5, 2.0, 2.0)                                  # 10 mm^3 voxels
    labels = np.zeros((10, 20, 20), dtype=np.uint8)
    labels[2:8, 2:18, 2:18] = 1
    labels[4:6, 5:10, 5:10] = 2                                # 50 tumor voxels
    sample = rb.Sample(np.zeros(labels.shape, np.float32), labels, spacing, spacing)
    pred = labels.copy()
    pred[4:6, 5:10, 10:14] = 2                                 # 40 voxels of tumor in true liver
    pred[7, 15:17, 15:17] = 2                                  # 4 voxels more, a separate false lesion
    scores = rb.score(sample, pred)
    assert scores["tumor_outside_ml"] == pytest.approx(0.44)   # 44 voxels x 10 mm^3
    assert scores["false_lesions"] == 1 and scores["true_lesions"] == 1 and scores["detected_lesions"] == 1


def _fold_package(folder: Path, name: str, seed: int):
    import torch

    from LiverTumorSegLib.models import build_model
    from LiverTumorSegLib.package import save_model_package
    from LiverTumorSegLib.preprocessing import PreprocessingConfig

    torch.manual_seed(seed)
    cfg = PreprocessingConfig(channels=[{"kind": "window", "level": 40.0, "width": 400.0}], context_slices=0,
                              target_spacing_mm=3.0, size_multiple=8, crop_to_body=True)
    model = build_model("unet", in_channels=cfg.in_channels, num_classes=3, channels=(4, 8, 16), strides=(2, 2))
    training = {"cases": ["case2_ct"], "patients": ["case2_ct"], "validation_cases": ["case1_ct"],
                "config": {"seed": seed, "fold": 0, "folds": 2}}
    return save_model_package(folder / f"{name}.safetensors", model, cfg, metadata={"name": name, "training": training})


def test_cli_compares_two_arms_of_tiny_fold_packages(tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_robustness_benchmark import write_case

    write_case(tmp_path / "data", "case1_ct")
    write_case(tmp_path / "data", "case2_ct")
    for arm in ("a", "b"):
        (tmp_path / arm).mkdir()
        for seed in (1, 2):
            _fold_package(tmp_path / arm, f"{arm}{seed}", seed)
    out = tmp_path / "cmp.json"
    code = cr.main(["--arm", f"a={tmp_path / 'a'}", "--arm", f"b={tmp_path / 'b'}", "--data", str(tmp_path / "data"),
                    "--seeds", "0,1", "--perturbations", "baseline", "--threads", "1", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "held out case1_ct" in printed and "seed spread" in printed
    doc = json.loads(out.read_text())
    entries = doc["arms"]["a"]
    assert [e["training_seed"] for e in entries] == [1, 2] and entries[0]["held_out"] == ["case1_ct"]
    rows = entries[0]["rows"]
    assert [(r["perturbation"], r["bench_seed"]) for r in rows] == [("original", 0), ("baseline", 0), ("baseline", 1)]
    # the same weights in both arms (same seeds): every paired difference is exactly 0
    line = [t for t in printed.splitlines() if t.strip().startswith("liver ")][-1]
    assert "+0.000 [+0.000..+0.000] 0/2 better" in line


def test_cli_refuses_a_package_without_a_held_out_case(tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_robustness_benchmark import write_case

    from inference_helpers import tiny_unet_package

    write_case(tmp_path / "data", "case1_ct")
    package = tiny_unet_package(tmp_path)                    # no training metadata: not a fold model
    code = cr.main(["--arm", f"a={package.path}", "--arm", f"b={package.path}", "--data", str(tmp_path / "data"),
                    "--seeds", "0", "--threads", "1"])
    assert code == 2
    assert "no validation-only case" in capsys.readouterr().err
    assert cr.main(["--arm", f"a={package.path}", "--data", str(tmp_path / "data")]) == 2
    assert "two or more --arm" in capsys.readouterr().err
    # --json replaced any file (the data CSV in an audit) after the run, and was checked only then
    data_file = next((tmp_path / "data").iterdir())
    before = data_file.read_bytes()
    existing = tmp_path / "old.json"
    existing.write_text("{}")
    for target, words in ((data_file, "must end in .json"), (existing, "already exists")):
        code = cr.main(["--arm", f"a={package.path}", "--arm", f"b={package.path}", "--data",
                        str(tmp_path / "data"), "--seeds", "0", "--json", str(target)])
        assert code == 2 and words in capsys.readouterr().err
    assert data_file.read_bytes() == before and existing.read_text() == "{}"


def test_repeated_pairing_keys_are_refused_and_spread_needs_different_seeds():
    """Two packages of one arm with the same fold and seed: the pairing kept the last and dropped the other
    without a word (+0.014 against one checkpoint, -0.002 against the other), and their difference was called
    the training seed's spread."""
    with pytest.raises(InputError, match="'a.safetensors' and 'b.safetensors' are both fold p0 with training seed 1"):
        cr.check_unique_pair_keys("v2", [("a.safetensors", (("p0",), 1)), ("b.safetensors", (("p0",), 1))])
    cr.check_unique_pair_keys("v2", [("a.safetensors", (("p0",), 1)), ("b.safetensors", (("p0",), 2))])
    same_seed = [entry(("p0",), 1, liver=0.973), entry(("p0",), None, liver=0.956)]
    assert cr.seed_spread(same_seed, "liver") is None


def test_arm_means_cover_only_the_folds_every_arm_has_and_training_differences_are_named():
    """Reference f0 = 0.90 and f1 = 0.50, the other arm only f0 = 0.85: the means read 0.700 vs 0.850 beside a
    paired change of -0.050. The means are now over f0 alone, and the left-out package is counted."""
    base = [dict(entry(("f0",), 1, liver=0.90), package="r0.safetensors", training_steps=100),
            dict(entry(("f1",), 1, liver=0.50), package="r1.safetensors", training_steps=100)]
    other = [dict(entry(("f0",), 1, liver=0.85), package="n0.safetensors", training_steps=200)]
    for e in base + other:
        e["metrics"].update(outside_ml=0.0, false_ml=0.0, false_n=0.0)
    lines = cr.summary_lines([("ref", base), ("new", other)], [])
    liver = next(line for line in lines if line.split()[0] == "liver")
    assert liver.split()[1:3] == ["0.900", "0.850"] and "-0.050 [-0.050..-0.050] 0/1 better" in liver
    assert "  arm means over the 1 fold/seed pair(s) every arm has; left out of them (no partner in some arm): ref 1" \
        in lines
    assert any("n0.safetensors and r0.safetensors were trained with other steps (200 vs 100)" in line
               for line in lines)


def test_fine_tuned_folds_are_not_called_held_out_and_same_named_folds_are_told_apart():
    """A crossval fine-tuned from the bundled default (trained on every shared patient) against one from scratch:
    each fine-tuned fold was printed 'held out c3' like the others with no word, and crossval's packages, all
    named fold_<i>.safetensors, gave 'note: fold_0.safetensors and fold_0.safetensors were trained with other
    steps'. The lines now say which folds are not held out, and name the packages by path where names clash."""
    summary = {"liver": 0.99, "outside_ml": 0.5, "false_ml": 0.0, "false_n": 0.0, "tumor": {}}
    base = [dict(entry(("c3",), 1234, liver=0.43), package="cv/fold_0.safetensors", training_steps=3,
                 not_held_out=[], summary=summary)]
    tuned = [dict(entry(("c3",), 1234, liver=0.99), package="cvft/fold_0.safetensors", training_steps=2,
                  not_held_out=["dcmqi_ct3slice"], summary=summary)]
    for e in base + tuned:
        e["metrics"].update(outside_ml=0.0, false_ml=0.0, false_n=0.0)
    lines = cr.summary_lines([("scratch", base), ("tuned", tuned)], [])
    assert "  note: cvft/fold_0.safetensors and cv/fold_0.safetensors were trained with other steps (2 vs 3)" in lines
    assert "  note: tuned's cvft/fold_0.safetensors started (--init-from) from a package trained on dcmqi_ct3slice: " \
           "its numbers on them are not held out" in lines
    assert not any("scratch's" in line for line in lines)
    assert cr.package_line("tuned", tuned[0], []).endswith(
        "(not held out: its --init-from package was trained on dcmqi_ct3slice)")
    assert "not held out" not in cr.package_line("scratch", base[0], [])


def test_repeated_seeds_and_perturbations_run_once(tmp_path, capsys):
    """'--seeds 0,0 --perturbations baseline,baseline' ran every row four times (CPU time) and printed the
    tumor:baseline line twice."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_robustness_benchmark import write_case

    write_case(tmp_path / "data", "case1_ct")
    write_case(tmp_path / "data", "case2_ct")
    for arm in ("a", "b"):
        (tmp_path / arm).mkdir()
        _fold_package(tmp_path / arm, f"{arm}1", 1)
    out = tmp_path / "cmp.json"
    assert cr.main(["--arm", f"a={tmp_path / 'a'}", "--arm", f"b={tmp_path / 'b'}", "--data", str(tmp_path / "data"),
                    "--seeds", "0,0", "--perturbations", "baseline,baseline", "--threads", "1",
                    "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert sum(1 for t in printed.splitlines() if t.strip().startswith("tumor:baseline")) == 1
    doc = json.loads(out.read_text())
    assert doc["seeds"] == [0] and doc["perturbations"] == ["baseline"]
    rows = doc["arms"]["a"][0]["rows"]
    assert [(r["perturbation"], r["bench_seed"]) for r in rows] == [("original", 0), ("baseline", 0)]
