"""Option values at the edge of what a number can be (found by fuzzing every option of every subcommand with nan,
inf, -1, 0, 1e308, a 400-digit number, '1,5', ...): each is refused in one line with exit status 2 before any data
is read, never an internal error."""
from pathlib import Path

import pytest

from LiverTumorSegLib.cli import main
from LiverTumorSegLib.errors import InputError
from LiverTumorSegLib.training.config import TrainConfig

DATA = Path(__file__).resolve().parents[1] / "Data"
HUGE = "9" * 400  # float() of it: OverflowError
LARGE = "99999999999999999999"  # a whole number float() cannot hold exactly: was called 'not a whole number'


def _train_argv(tmp_path: Path, *extra: str):
    csv = tmp_path / "cases.csv"
    csv.write_text(f"image,label\n{DATA / 'ct3slice_ct.nii.gz'},{DATA / 'ct3slice_liver_seg.nii.gz'}\n")
    return ["train", "--data", str(csv), "-o", str(tmp_path / "m.safetensors"), "--device", "cpu",
            "--no-progress", *extra]


@pytest.mark.parametrize("command", ["train", "crossval"])
@pytest.mark.parametrize("option", ["--epochs", "--batch-size", "--patch-size", "--seed", "--num-workers",
                                    "--warmup", "--checkpoint-every-steps"])
@pytest.mark.parametrize("value", [HUGE, LARGE])
def test_a_huge_whole_number_option_is_one_line_exit_2(tmp_path, capsys, command, option, value):
    """``train --epochs <400 digits>`` was 'internal error: OverflowError: int too large to convert to float'
    (exit 1); ``--epochs 99999999999999999999`` was refused as 'must be a whole number', which it is."""
    argv = _train_argv(tmp_path, option, value)
    argv[0] = command
    if command == "crossval":
        argv[argv.index("-o") + 1] = str(tmp_path / "cv")
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "OverflowError" not in err and "internal error" not in err
    assert f"Option {option} in command line must be a whole number from -9223372036854775807 to " \
           f"9223372036854775807, got " in lines[0]
    assert ("a number of 400 digits" if value == HUGE else LARGE) in lines[0]
    assert not (tmp_path / "m.safetensors").exists() and not (tmp_path / "cv").exists()


@pytest.mark.parametrize("key,words", [
    ("epochs", "Option epochs in {path} must be a whole number from -9223372036854775807 to 9223372036854775807, "
               "got a number of 400 digits"),
    ("lr", "Option lr in {path} must be a finite number, got a number of 400 digits"),
    ("augmentation.blur_probability", "AugmentationConfig.blur_probability must be a finite number, got a number "
                                      "of 400 digits"),
    ("lesions.min_liver_voxels", "LesionConfig.min_liver_voxels must be a whole number from "
                                 "-9223372036854775807 to 9223372036854775807, got a number of 400 digits"),
])
def test_a_huge_number_in_a_recipe_is_refused_by_name(tmp_path, key, words):
    """A training recipe (YAML) with a 400-digit number: the same OverflowError, top level and nested."""
    parts = key.split(".")
    text = f"{key}: {HUGE}\n" if len(parts) == 1 else f"{parts[0]}:\n  {parts[1]}: {HUGE}\n"
    (tmp_path / "r.yaml").write_text(text)
    with pytest.raises(InputError) as caught:
        TrainConfig.from_file(tmp_path / "r.yaml")
    assert words.format(path=tmp_path / "r.yaml") in str(caught.value)
    assert "\n" not in str(caught.value)


def test_whole_numbers_up_to_int64_are_still_taken():
    """Read as whole numbers (not 'not a whole number'); a count option then has its own limit (10000000 steps:
    test_training_option_upper_limits.py), an option without one takes them."""
    assert TrainConfig.from_dict({"split_seed": 2 ** 63 - 1}).split_seed == 2 ** 63 - 1
    with pytest.raises(InputError, match=r"checkpoint_every_steps must be at most 10000000 \(got 9223372036854775807"):
        TrainConfig.from_dict({"checkpoint_every_steps": 2 ** 63 - 1})
    assert TrainConfig.from_dict({"lr": 1}).lr == 1.0


@pytest.mark.parametrize("option,values,words", [
    ("--augmentation", '{"fill_hu": 1e300}', "AugmentationConfig.fill_hu = 1e+300 is beyond any CT value: give HU "
                                             "from -10000 to 10000 (its default is -1024.0)."),
    ("--augmentation", '{"noise_std_hu": [1e300, 1e300]}', "AugmentationConfig.noise_std_hu = (1e+300, 1e+300) is "
                                                           "beyond any CT value"),
    ("--augmentation", '{"hu_shift_range": [-1e300, 1e300]}', "AugmentationConfig.hu_shift_range"),
    ("--augmentation", '{"fill_hu": -1000000}', "AugmentationConfig.fill_hu = -1000000.0 is beyond any CT value"),
    ("--lesions", '{"min_lesion_hu": 1e300}', "LesionConfig.min_lesion_hu = 1e+300 is beyond any CT value"),
    ("--lesions", '{"hypo_contrast_hu": [15, 100000]}', "LesionConfig.hypo_contrast_hu = (15.0, 100000.0) is beyond"),
])
def test_an_hu_setting_beyond_any_ct_value_is_refused_before_training(tmp_path, capsys, option, values, words):
    """An HU option of the augmentation or synthetic lesions at 1e300 was taken, and every augmented patch came out
    NaN/inf (float32); found only once training ran on them."""
    code = main(_train_argv(tmp_path, option, values))
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err


def test_hu_settings_within_the_range_and_hu_factors_are_taken():
    from LiverTumorSegLib.training.augmentation import AugmentationConfig
    from LiverTumorSegLib.training.synthetic_lesions import LesionConfig

    assert AugmentationConfig(fill_hu=-3024.0, hu_scale_range=(0.5, 2.0)).fill_hu == -3024.0
    assert LesionConfig(min_lesion_hu=-10000.0).min_lesion_hu == -10000.0


@pytest.mark.parametrize("section,key,value,words", [
    # a billion lesions per sample: the first sample never ended
    ("lesions", "count_range", [10 ** 9, 10 ** 9], "LesionConfig.count_range = (1000000000, 1000000000) is beyond "
                                                   "any sensible number: give a count from 0 to 100 (its default is "
                                                   "[1, 6])."),
    # 'Maximum allowed size exceeded' in the DataLoader
    ("lesions", "heterogeneity_scale_mm", [1e300, 1e300], "LesionConfig.heterogeneity_scale_mm = (1e+300, 1e+300) is "
                                                          "beyond any body (1 m): give mm from -1000 to 1000"),
    # NaN/inf in the lesion's HU
    ("lesions", "rim_width_mm", [1e300, 1e300], "LesionConfig.rim_width_mm"),
    ("lesions", "irregularity_range", [1e300, 1e300], "LesionConfig.irregularity_range = (1e+300, 1e+300) is beyond "
                                                      "any sensible factor: give a factor from -1000 to 1000"),
    ("lesions", "texture_noise_factor", [1e300, 1e300], "LesionConfig.texture_noise_factor"),
    ("lesions", "diameter_range_mm", [3, 1000000], "LesionConfig.diameter_range_mm"),
    ("lesions", "min_liver_voxels", 1e300, "LesionConfig.min_liver_voxels"),
    ("augmentation", "rotation_range_deg", [-1e300, 1e300], "AugmentationConfig.rotation_range_deg = (-1e+300, "
                                                            "1e+300) is beyond a full turn: give degrees from -360"),
    ("augmentation", "blur_sigma_px", [1e300, 1e300], "AugmentationConfig.blur_sigma_px"),
])
def test_a_nested_setting_beyond_any_sensible_size_is_refused_before_training(tmp_path, capsys, section, key, value,
                                                                              words):
    """Such recipe values were taken and found only once training ran on them (hang, NaN patches, DataLoader
    errors)."""
    import json

    code = main(_train_argv(tmp_path, f"--{section}", json.dumps({key: value})))
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err


def test_every_default_setting_lies_within_its_size_limit():
    import dataclasses

    from LiverTumorSegLib.configutil import setting_size_limit
    from LiverTumorSegLib.training.augmentation import AugmentationConfig
    from LiverTumorSegLib.training.synthetic_lesions import LesionConfig

    for config in (AugmentationConfig(), LesionConfig()):
        for f in dataclasses.fields(config):
            limit, value = setting_size_limit(f.name), getattr(config, f.name)
            if limit is not None and isinstance(value, (int, float, tuple)) and not isinstance(value, bool):
                assert all(limit[0] <= v <= limit[1] for v in (value if isinstance(value, tuple) else (value,)))


NUMBER_OPTIONS = [("segment", "--slice-thickness-mm", float), ("segment", "--min-lesion-ml", float),
                  ("segment", "--tumor-liver-margin-mm", float), ("segment", "--batch-size", int),
                  ("segment", "--threads", int), ("segment", "--window-level", float),
                  ("preprocess", "--slices", int), ("evaluate", "--detection-iou", float),
                  ("evaluate", "--connectivity", int), ("measure", "--slice-thickness-mm", float),
                  ("followup", "--min-new-lesion-mm", float), ("followup", "--nadir-sum-mm", float),
                  ("followup", "--baseline-slice-thickness-mm", float), ("train", "--lr", float),
                  ("train", "--epochs", int), ("train", "--split-seed", int), ("crossval", "--grad-clip", float)]


def _argv_for(command: str, tmp_path: Path):
    ct, labels = str(DATA / "ct3slice_ct.nii.gz"), str(DATA / "ct3slice_liver_seg.nii.gz")
    out = str(tmp_path / "out")
    return {"segment": ["segment", ct, "-o", out + ".nii.gz"], "preprocess": ["preprocess", ct, "-o", out + ".png"],
            "evaluate": ["evaluate", "--pred", labels, "--ref", labels, "-o", out],
            "measure": ["measure", labels, "-o", out + ".json"],
            "followup": ["followup", "--baseline", labels, "--followup", labels, "-o", out + ".json"],
            "train": _train_argv(tmp_path), "crossval": ["crossval"] + _train_argv(tmp_path)[1:]}[command]


@pytest.mark.parametrize("command,option,kind,value", [
    (command, option, kind, value) for command, option, kind in NUMBER_OPTIONS
    for value in ["1,5", "", "0x10", "1_0", "\u0664"] + (["2.5"] if kind is int else [])])
def test_a_number_option_typed_wrongly_says_what_to_type(tmp_path, capsys, command, option, kind, value):
    """argparse said only "invalid float value: '1,5'" (or '', '0x10'), and "invalid int value: '2.5'": what was
    wrong, not what to type. Now it says how to write it: a decimal point, digits alone, no fraction."""
    with pytest.raises(SystemExit) as exited:
        main(_argv_for(command, tmp_path) + [f"{option}={value}"])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"livertumorseg {command}: error: argument {option}: must be "
                           f"{'a whole number' if kind is int else 'a number'}"), err
    expected = {"1,5": "without ','" if kind is int else "write decimals with a point, e.g. 1.5",
                "": "got an empty value; give one, e.g.", "0x10": "written in decimal digits, got '0x10', e.g.",
                # Python reads these as 10 and 4: a mistyped --min-lesion-ml 1_0 ran as 10 mL (the command-line audit)
                "1_0": "written in decimal digits, got '1_0', e.g.", "\u0664": "written in decimal digits, got",
                "2.5": "got '2.5': give it without a fraction or exponent, e.g. 4"}[value]
    assert expected in last, err
    assert "Traceback" not in err and not list(tmp_path.glob("out*"))


@pytest.mark.parametrize("values,words", [
    # 'OverflowError: cannot convert float infinity to integer' in the DataLoader
    ({"elastic_grid_mm": 1e-308}, "AugmentationConfig.elastic_grid_mm = 1e-308 is below any CT pixel: a size other "
                                  "than 0 must be at least 0.1 mm (its default is 40.0)."),
    # NaN patches
    ({"zoom_range": [1e-300, 1e-300]}, "AugmentationConfig.zoom_range = (1e-300, 1e-300) is too small to be meant: a "
                                       "size other than 0 must be at least 1e-06"),
])
def test_a_nested_setting_too_small_to_be_meant_is_refused(tmp_path, capsys, values, words):
    import json

    code = main(_train_argv(tmp_path, "--augmentation", json.dumps(values)))
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert code == 2, err
    assert len(lines) == 1 and words in lines[0], err


def test_zero_stays_a_size_where_a_setting_takes_it():
    from LiverTumorSegLib.training.augmentation import AugmentationConfig
    from LiverTumorSegLib.training.synthetic_lesions import LesionConfig

    assert AugmentationConfig(shift_range_fraction=(0.0, 0.0)).shift_range_fraction == (0.0, 0.0)
    assert LesionConfig(necrosis_min_diameter_mm=0.0, irregularity_range=(0.0, 0.0)).necrosis_min_diameter_mm == 0.0


def test_a_misspelt_rank_metric_is_refused_before_any_case_is_read(tmp_path, capsys, monkeypatch):
    """``evaluate --rank-metric dice_livr`` read and scored every case (minutes on a data set, with surface
    distances), then was refused, with nothing written."""
    from LiverTumorSegLib.commands import evaluate

    def no_read(*args, **kwargs):
        raise AssertionError("a case was read before --rank-metric was checked")

    monkeypatch.setattr(evaluate, "_read_case", no_read)
    labels = str(DATA / "ct3slice_liver_seg.nii.gz")
    ref = tmp_path / "ref.nii.gz"
    ref.write_bytes(Path(labels).read_bytes())
    code = main(["evaluate", "--pred", labels, "--ref", str(ref), "-o", str(tmp_path / "ev"),
                 "--rank-metric", "dice_livr", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: --rank-metric dice_livr is not a column of this evaluation's cases.csv; choose "
                           "one of: accuracy_liver, "), err
    assert " dice_liver, " in last and "AssertionError" not in err and not (tmp_path / "ev").exists()


@pytest.mark.parametrize("metric,no_surface,prob_structure,refused", [
    ("dice_liver", False, None, False), ("hd95_tumor_mm", False, None, False), ("lesion_recall", True, None, False),
    ("roc_auc_tumor", False, "tumor", False), ("roc_auc_tumor", False, None, True), ("dice_livr", True, None, True),
    ("hd95_tumor_mm", True, None, True)])
def test_rank_metric_columns_known_before_reading(metric, no_surface, prob_structure, refused):
    from LiverTumorSegLib.commands.evaluate import _refuse_an_unknown_rank_metric

    if refused:
        with pytest.raises(InputError, match=f"--rank-metric {metric} is not a column"):
            _refuse_an_unknown_rank_metric(metric, no_surface, prob_structure)
    else:
        _refuse_an_unknown_rank_metric(metric, no_surface, prob_structure)


@pytest.mark.parametrize("metric", ["volume_pred_liver_ml", "volume_ref_tumor_ml", "lesions_pred", "lesions_ref",
                                    "tumor_burden_pred", "lits_lesions_scored", "voxels_tp_liver",
                                    "lesions_size_lt10mm_ref"])
def test_a_rank_metric_that_measures_instead_of_scoring_is_refused_before_reading(metric):
    """``--rank-metric volume_pred_liver_ml`` drew the case with the largest predicted liver as the 'best' case (any
    column not named lower-is-better was ranked higher-is-better): a volume, burden or count has no better value.
    Refused before any case is read, naming scores to choose from (no measurement among them)."""
    from LiverTumorSegLib.commands.evaluate import _refuse_an_unknown_rank_metric

    with pytest.raises(InputError, match=f"--rank-metric {metric} measures a case") as refused:
        _refuse_an_unknown_rank_metric(metric, False, None)
    choices = str(refused.value).split("Choose a score: ")[1]
    assert "dice_liver" in choices and "lesions_pred_no_overlap" in choices and "hd95_liver_mm" in choices
    assert "volume_pred_liver_ml" not in choices and "lesions_pred," not in choices


def test_rank_cases_refuses_a_measurement_and_keeps_error_counts_lower_is_better():
    from LiverTumorSegLib.metrics import report

    rows = [{"case": "a", "volume_pred_liver_ml": 1500.0, "lesions_pred_no_overlap": 3},
            {"case": "b", "volume_pred_liver_ml": 900.0, "lesions_pred_no_overlap": 0}]
    with pytest.raises(ValueError, match="volume_pred_liver_ml measures a case"):
        report.rank_cases(rows, "volume_pred_liver_ml")
    assert report.rank_cases(rows, "lesions_pred_no_overlap") == ("b", "a")
    assert not report.is_measurement_column("lesions_pred_no_overlap")
    assert report.is_measurement_column("lesions_pred") and report.is_measurement_column("volume_ref_liver_ml")
