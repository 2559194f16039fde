"""Command-line options shared by the commands (issue 14): ``--no-progress`` everywhere (``--no-progress-bar``
stays an alias), a misspelt option answered with the command's usage and the closest option, and train's
notice when tensorboard is missing."""
import re
import sys

import pytest

from LiverTumorSegLib.cli import build_parser, main


def _parse(argv):
    return build_parser().parse_args(argv)


@pytest.mark.parametrize("command", ["train", "crossval"])
@pytest.mark.parametrize("flag", ["--no-progress", "--no-progress-bar"])
def test_training_commands_take_no_progress_and_the_old_spelling(command, flag):
    assert _parse([command, "--data", "d.csv", flag]).progress_bar is False
    assert _parse([command, "--data", "d.csv"]).progress_bar is None          # not given: config file decides
    assert _parse([command, "--data", "d.csv", "--progress-bar"]).progress_bar is True


def _progress_off(args) -> bool:
    return getattr(args, "no_progress", None) is True or getattr(args, "progress", None) == "none"


@pytest.mark.parametrize("argv", [
    ["evaluate", "--pred", "p", "--ref", "r", "-o", "o"],
    ["preprocess", "ct.nii.gz", "-o", "p.png"]])
@pytest.mark.parametrize("flag", ["--no-progress", "--no-progress-bar"])
def test_other_long_commands_take_both_spellings(argv, flag):
    assert _progress_off(_parse(argv + [flag]))
    assert not _progress_off(_parse(argv))


def test_segment_takes_no_progress():
    assert _progress_off(_parse(["segment", "ct.nii.gz", "-o", "out.nii.gz", "--no-progress"]))


def test_no_progress_reaches_the_training_config():
    from LiverTumorSegLib.commands.train import config_from_args

    assert config_from_args(_parse(["train", "--data", "d.csv", "--no-progress"])).progress_bar is False
    assert config_from_args(_parse(["train", "--data", "d.csv"])).progress_bar is True


def test_misspelt_option_gets_the_command_usage_and_a_suggestion(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", "ct.nii.gz", "-o", "out.nii.gz", "--no-progess"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "usage: livertumorseg segment" in err and "usage: livertumorseg [-h]" not in err
    assert "unrecognized arguments: --no-progess" in err and "did you mean --no-progress?" in err


@pytest.mark.parametrize("command", [["segment", "ct.nii.gz", "-o", "out.nii.gz"], ["evaluate", "--pred", "p",
                                                                                    "--ref", "r", "-o", "o"]])
def test_a_shortened_option_is_refused_with_the_options_it_starts(capsys, command):
    """argparse took any unambiguous prefix: --no-post ran as --no-postprocess (a different result, silently)."""
    shortened = "--no-post" if command[0] == "segment" else "--conn"
    with pytest.raises(SystemExit) as exit_info:
        main(command + [shortened])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"unrecognized arguments: {shortened}" in err
    assert ("spelt in full: --no-postprocess?" if command[0] == "segment" else "spelt in full: --connectivity?") in err
    with pytest.raises(SystemExit) as exit_info:  # the top level too
        main(["--deb", "models"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("argv, name", [(["segment", "-ct.nii.gz", "-o", "seg.nii.gz"], "-ct.nii.gz"),
                                        (["segment", "ct.nii.gz", "-o", "-seg.nii.gz"], "-seg.nii.gz"),
                                        (["segment", "ct.nii.gz", "-o", "s.nii.gz", "--model", "-m.safetensors"],
                                         "-m.safetensors"),
                                        (["segment", "-scans", "-o", "out"], "-scans")])
def test_a_file_name_starting_with_a_dash_is_named_with_how_to_write_it(capsys, tmp_path, monkeypatch, argv, name):
    """'segment -ct.nii.gz' was 'unrecognized arguments: -ct.nii.gz', '-o -seg.nii.gz' 'argument -o/--output:
    expected one argument' (one was given), without saying that a name starting with '-' is read as an option."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-scans").mkdir()
    (tmp_path / "-100").write_text("")
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "usage: livertumorseg segment" in err
    assert f"'{name}' starts with '-', so it is read as an option" in err and f"as './{name}'" in err
    parsed = _parse(["segment", "./-ct.nii.gz", "-o-seg.nii.gz", "--model=-m.safetensors", "--window-level", "-100",
                     "--window-width", "400"])  # the ways to write them, and a negative number, stay accepted
    assert (parsed.input, parsed.output, parsed.model, parsed.window_level) == (
        "./-ct.nii.gz", "-seg.nii.gz", "-m.safetensors", -100.0)


def test_unknown_top_level_option_keeps_the_top_level_usage(capsys):
    with pytest.raises(SystemExit):
        main(["--no-such-thing"])
    assert "usage: livertumorseg [-h]" in capsys.readouterr().err


def test_train_says_how_to_get_tensorboard_when_it_is_missing(tmp_path, monkeypatch):
    from LiverTumorSegLib.training.logs import TensorBoardLog

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # makes the import fail
    notices = []
    log = TensorBoardLog(tmp_path / "tb", enabled=True, notice=notices.append)
    assert log.writer is None and len(notices) == 1
    assert '".[train]"' in notices[0] and "--no-tensorboard" in notices[0]
    log.scalars({"loss": 1.0}, 1)  # a no-op, not an error


def test_train_ends_with_the_whole_volume_numbers_evaluate_gives():
    """train printed the slice-level Dice on the network grid (0.152) where crossval and evaluate gave the same
    model 0.164 on whole volumes; it now prints the whole-volume numbers, and says which kind it prints."""
    from LiverTumorSegLib.commands.train import validation_summary

    slices = {"liver_dice": 0.152, "tumor_dice": float("nan")}
    assert validation_summary(slices) == "validation (slices on the network grid) liver Dice 0.152, tumor Dice n/a"
    whole = dict(slices, whole_volume={"liver_dice": 0.1638, "tumor_dice": 0.5,
                                       "cases": [{"reference_has_tumor": True}, {"reference_has_tumor": False}]})
    assert validation_summary(whole) == "validation (whole volumes, CT grid) liver Dice 0.164, tumor Dice 0.500"
    tumor_free = dict(slices, whole_volume={"liver_dice": 0.2, "tumor_dice": 1.0,
                                            "cases": [{"reference_has_tumor": False}]})
    assert "only says whether tumor was predicted, 1.000 none, 0.000 some" in validation_summary(tumor_free)
    # a fold whose model predicted tumor where the reference has none printed "tumor Dice 0.000 (... tumor Dice
    # 1.000 only says none was predicted)": the caveat now reads for both values
    false_tumor = dict(slices, whole_volume={"liver_dice": 0.331, "tumor_dice": 0.0,
                                             "cases": [{"reference_has_tumor": False}]})
    assert "tumor Dice 0.000 (no validation case has a reference tumor: tumor Dice only says whether tumor was " \
           "predicted, 1.000 none, 0.000 some)" in validation_summary(false_tumor)
    # --val-fraction 0 (the final model on all patients) validates nothing: it printed 'validation (slices on the
    # network grid) liver Dice n/a, tumor Dice n/a', as if a validation had run and failed
    assert validation_summary({}) == "no validation (no validation cases)"


def test_crossval_help_describes_its_folds_and_refuses_fold(capsys, tmp_path, caplog):
    """crossval reused train's help: '--folds ... (0 = hold-out split)' although 0 runs 4 folds, and '--fold
    which fold to train' although crossval trains every fold."""
    import logging

    from LiverTumorSegLib.cli import main

    with pytest.raises(SystemExit):
        main(["crossval", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help lines
    assert "number of patient-level folds, 2 or more (default 4)" in text and "hold-out split" not in text and "--fold " not in text
    # -o is a folder and the logs go to <output>/fold_<i>_train, not "a .safetensors package" and "<output>_train/"
    assert "output folder: fold_<i>.safetensors, crossval.csv" in text and "(.safetensors)" not in text
    assert "<output>_train/" not in text
    assert main(["crossval", "--data", "cases.csv", "-o", "cv", "--fold", "2"]) == 2
    assert "crossval trains every fold" in capsys.readouterr().err
    # --fold 0 (the default's value) passed without a word and trained every fold, where one was meant
    assert main(["crossval", "--data", "cases.csv", "-o", str(tmp_path / "cv0"), "--folds", "2", "--fold", "0"]) == 2
    assert "crossval trains every fold; --fold picks one fold for 'livertumorseg train'" in capsys.readouterr().err
    assert not (tmp_path / "cv0").exists()
    # --val-fraction ("when --folds is 0") cannot apply: each fold validates on the patients it holds out
    assert "--val-fraction" not in text
    # given anyway (an option list shared with train), it is said to be ignored, before the data are read
    with caplog.at_level(logging.WARNING):
        assert main(["crossval", "--data", "missing.csv", "-o", str(tmp_path / "cv"), "--val-fraction", "0.3"]) == 2
    assert "warning: --val-fraction does not apply to crossval" in caplog.text
    # the missing data refused before any fold's banner (it came under '=== fold 0 (folds 0-3) ===')
    assert "=== fold" not in caplog.text + capsys.readouterr().out
    assert not (tmp_path / "cv").exists()
    # ... and so is a config file's val_fraction (it was ignored without a word)
    config = tmp_path / "recipe.yaml"
    config.write_text("val_fraction: 0.25\nepochs: 1\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(["crossval", "--config", str(config), "--data", "missing.csv", "-o", str(tmp_path / "cv")]) == 2
    assert f"warning: val_fraction in '{config}' does not apply to crossval" in caplog.text
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    train_help = " ".join(capsys.readouterr().out.split())
    assert "data layout: auto, lits, msd, ircadb or csv (default 'auto')" in train_help  # said once, not twice


def test_crossval_says_a_config_files_fold_and_hold_out_folds_are_ignored(tmp_path, caplog):
    """A recipe shared with train holding `folds: 0` (train's hold-out) made crossval run 4 folds without a word
    ('4-fold cross-validation needs at least 4 patients' on 2 patients nothing had asked 4 folds of), and its
    `fold: 1` was ignored silently, where `--fold 1` is refused."""
    import logging

    from LiverTumorSegLib.cli import main

    for text, said in (("folds: 0\n", "folds: 0 in '{}' is train's hold-out split; crossval makes 4 folds"),
                       ("folds: 2\nfold: 1\n", "fold: 1 in '{}' picks one fold for 'livertumorseg train'")):
        config = tmp_path / "recipe.yaml"
        config.write_text(text + "epochs: 1\n")
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert main(["crossval", "--config", str(config), "--data", str(tmp_path / "missing.csv"), "-o",
                         str(tmp_path / "cv")]) == 2  # said before the data are read
        assert said.format(config) in caplog.text
    config.write_text("folds: 2\nfold: 0\n")  # nothing to say
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(["crossval", "--config", str(config), "--data", str(tmp_path / "missing.csv"), "-o",
                     str(tmp_path / "cv")]) == 2
    assert "crossval makes 4 folds" not in caplog.text and "picks one fold" not in caplog.text


def test_crossval_checks_its_options_as_folds_not_as_trains_hold_out_split(tmp_path, capsys, caplog):
    """'crossval --val-fraction 0 --early-stopping-patience 5', or a recipe of an all-data train run ('val_fraction:
    0', 'use_best_checkpoint: true'), was refused because no validation cases would be left, right after the warning
    that --val-fraction is ignored; a recipe's lone 'fold: 2' was refused as 'fold 2 needs folds K' where crossval
    says it ignores it (the training audit). Each fold validates on the patients it holds out: the run goes on (here
    to the missing data)."""
    import logging

    from LiverTumorSegLib.cli import main

    missing = str(tmp_path / "missing.csv")
    config = tmp_path / "recipe.yaml"
    runs = [(["--val-fraction", "0", "--early-stopping-patience", "5"], None),
            ([], "val_fraction: 0\nuse_best_checkpoint: true\n"), ([], "fold: 2\nepochs: 1\n"),
            ([], "folds: 0\nval_fraction: 0\nuse_best_checkpoint: true\n")]
    for options, recipe in runs:
        if recipe is not None:
            config.write_text(recipe)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            code = main(["crossval", "--data", missing, "-o", str(tmp_path / "cv")] + options
                        + (["--config", str(config)] if recipe is not None else []))
        err = capsys.readouterr().err
        assert code == 2 and "missing.csv" in err, (options, recipe, err)
        assert "decides on the validation cases" not in err and "needs folds" not in err
        assert "ignored" in caplog.text or "crossval makes 4 folds" in caplog.text


@pytest.mark.parametrize("repeat, named", [
    (["--report", "a.json", "--report", "a.csv"], "--report given more than once"),
    (["--report=a.json", "--report", "a.csv"], "--report given more than once"),
    (["-o", "b.nii.gz"], "-o given more than once"),
    (["--progress", "json", "--no-progress"], "--progress / --no-progress given more than once"),
    (["--threads", "1", "--threads", "2"], "--threads given more than once")])
def test_an_option_given_twice_is_refused_instead_of_keeping_the_last(capsys, tmp_path, repeat, named):
    """argparse keeps the last of a repeated option without a word: `--report a.json --report a.csv` wrote only the
    CSV (audit)."""
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", str(tmp_path / "ct.nii.gz"), "-o", str(tmp_path / "out.nii.gz")] + repeat)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and named in err and "usage: livertumorseg segment" in err
    assert list(tmp_path.iterdir()) == []


def test_values_that_look_like_options_and_arguments_after_a_double_dash_are_not_options():
    from LiverTumorSegLib.cli import repeated_options

    segment = build_parser().parse_args(["segment", "ct.nii.gz", "-o", "o.nii.gz"])._command_parsers["segment"]
    assert repeated_options(segment, ["--window-level", "-50", "--window-width", "300", "-o", "a.nii.gz"]) == []
    assert repeated_options(segment, ["-o", "a.nii.gz", "--", "-o"]) == []
    assert repeated_options(segment, ["-oa.nii.gz", "--output=b.nii.gz"]) == ["-o / --output"]


def test_an_error_found_at_once_is_not_preceded_by_empty_progress_bars(capsys, tmp_path):
    """An install audit saw two empty '0%|' bars before 'error: ... does not exist'."""
    code = main(["segment", str(tmp_path / "missing.nii.gz"), "-o", str(tmp_path / "out.nii.gz"), "--progress", "bar"])
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err and "0%|" not in err


HELP_COMMANDS = ["", "segment", "preprocess", "models", "train", "crossval", "evaluate", "measure", "followup"]


def _help_text(capsys, monkeypatch, command: str, columns: int) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    with pytest.raises(SystemExit) as exit_info:
        main(([command] if command else []) + ["--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", HELP_COMMANDS)
def test_help_fits_80_columns_without_broken_words(capsys, monkeypatch, command):
    """evaluate's, measure's and followup's descriptions were printed as their docstrings are written (up to 120
    columns), preprocess's --preset choices made a 163-column usage line, crossval's usage had an 81-column line,
    and argparse's wrapping split option names at a hyphen ('--uncertain-' / 'lesion-max-ml' at 60 columns)."""
    for columns in (60, 70, 80, 100):
        lines = _help_text(capsys, monkeypatch, command, columns).splitlines()
        if columns == 80:
            assert [line for line in lines if len(line) > 80] == []
        for line, following in zip(lines, lines[1:]):  # a word or option split at its hyphen, '30' / '%'
            assert not (line.rstrip()[-1:] == "-" and following.strip()[:1].isalnum()), (line, following)
            assert not following.strip().startswith("%"), (line, following)
    assert "``" not in "\n".join(lines)  # reST markup of the docstrings


def test_train_help_gives_each_default_once_and_no_empty_ones(capsys, monkeypatch):
    text = " ".join(_help_text(capsys, monkeypatch, "train", 80).split())
    assert "(default '')" not in text  # --data, -o, --log-dir, --cache-dir, --name had no default to give
    assert "(default 'dice_ce')" not in text and "(default 'unet')" not in text  # said twice before
    for said in ("--lr LR learning rate", "--val-max-slices N validate on at most this many evenly spaced slices "
                 "per case (0 = all slices) (default 0)", "--step-size N --schedule step: multiply the learning "
                 "rate by --gamma every this many epochs (default 30)", "(default: <log_dir>/cache/)",
                 "TensorBoard logs in <log_dir>/tensorboard/ (default: on)", "--patch-size PIXELS",
                 "--max-time-minutes MINUTES"):
        assert said in text
    crossval = " ".join(_help_text(capsys, monkeypatch, "crossval", 80).split())
    assert "(default: <output folder>/cache/)" in crossval and "stop each fold gracefully" in crossval
    # --name said "(default: none)" while a package without it is named after its file, which --model NAME takes;
    # crossval's --log-dir said it holds the cache, which stays in the output folder (--cache-dir)
    assert "(default: the output file's name without .safetensors)" in text and "(default: none)" not in \
        text.split("--name TEXT")[1].split("--description")[0]
    assert "checkpoints and logs, fold_<i>_train/ in it (default: the output folder; the slice cache stays in " \
           "--cache-dir)" in crossval and "checkpoints, logs and cache" not in crossval


@pytest.mark.parametrize("extra, named", [
    (["--picture", "p.png", "--no-picture"], "--picture and --no-picture cannot be given together"),
    (["--no-picture", "--title=Patient A"], "--title and --no-picture cannot be given together")])
def test_followup_refuses_picture_options_with_no_picture(capsys, tmp_path, extra, named):
    """`followup --picture p.png --no-picture` wrote no picture and said nothing of the one asked for."""
    with pytest.raises(SystemExit) as exit_info:
        main(["followup", "--baseline", str(tmp_path / "a.nii.gz"), "--followup", str(tmp_path / "b.nii.gz"),
              "-o", str(tmp_path / "change.json")] + extra)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and named in err and "usage: livertumorseg followup" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("extra", [["--rank-metric", "dice_tumor"], ["--images", "ct.nii.gz"]])
def test_evaluate_refuses_overlay_options_with_no_plots(capsys, tmp_path, extra):
    """--rank-metric and --images only choose and draw the overlay PNGs: beside --no-plots they did nothing."""
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--pred", "p", "--ref", "r", "-o", str(tmp_path / "out"), "--no-plots"] + extra)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"{extra[0]} and --no-plots cannot be given together" in err
    assert _parse(["evaluate", "--pred", "p", "--ref", "r", "-o", "o"] + extra).no_plots is False  # alone: fine


def documented_message(row_start: str) -> str:
    """The message docs/bad_inputs.md shows in the row that starts with ``row_start`` (its first backticked span
    after the input column): a reworded message left the doc quoting words the user never sees."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "bad_inputs.md").read_text(encoding="utf-8")
    row = next(line for line in doc.splitlines() if line.startswith("| " + row_start + " |"))
    return re.search(r"`([^`]*error: [^`]*)`", row[len(row_start) + 2:]).group(1)


@pytest.mark.parametrize("structure", ["liver", "tumor"])
def test_evaluate_refuses_prob_structure_without_prob(capsys, tmp_path, structure):
    """`evaluate --prob-structure liver` without --prob ran, exit 0, and computed no ROC of anything."""
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--pred", "p", "--ref", "r", "-o", str(tmp_path / "out"), "--prob-structure", structure])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--prob-structure needs --prob" in err
    assert "usage: livertumorseg evaluate" in err
    assert documented_message("`--prob-structure liver` (or `tumor`) without `--prob`") == err.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == []
    for spelling in ("--prob", "--probabilities"):  # with the map, either spelling: fine
        assert _parse(["evaluate", "--pred", "p", "--ref", "r", "-o", "o", spelling, "pr",
                       f"--prob-structure={structure}"]).prob_structure == structure


@pytest.mark.parametrize("metric", ["hd95_tumor_mm", "assd_liver_mm", "lits_lesion_rmsd_mm"])
def test_evaluate_refuses_a_surface_rank_metric_with_no_surface(capsys, tmp_path, metric):
    """`--no-surface --rank-metric hd95_tumor_mm` read every case, then was refused as 'not a column of this
    evaluation's cases.csv', naming neither --no-surface nor why; now refused before any case is read."""
    code = main(["evaluate", "--pred", str(tmp_path / "missing_p"), "--ref", str(tmp_path / "missing_r"),
                 "-o", str(tmp_path / "out"), "--no-surface", "--rank-metric", metric])
    err = capsys.readouterr().err
    assert code == 2 and f"--rank-metric {metric} is a surface distance, which --no-surface leaves out" in err
    row = ("`--no-surface` with a surface distance as `--rank-metric` (`hd95_tumor_mm`, `assd_liver_mm`, "
           "`lits_lesion_hd_mm`)")
    assert documented_message(row).replace("hd95_tumor_mm", metric) == err.strip().splitlines()[-1]
    from LiverTumorSegLib.commands.evaluate import surface_columns
    assert metric in surface_columns() and "dice_liver" not in surface_columns()


def test_evaluate_takes_output_as_the_other_commands_spell_it(capsys):
    assert _parse(["evaluate", "--pred", "p", "--ref", "r", "--output", "o"]).output_dir == "o"
    assert _parse(["evaluate", "--pred", "p", "--ref", "r", "--output-dir", "o"]).output_dir == "o"
    # the probability map: --probabilities in segment and measure, --prob (kept) in evaluate
    assert _parse(["evaluate", "--pred", "p", "--ref", "r", "-o", "o", "--probabilities", "pr"]).prob == "pr"
    assert _parse(["evaluate", "--pred", "p", "--ref", "r", "-o", "o", "--prob", "pr"]).prob == "pr"
    with pytest.raises(SystemExit):
        _parse(["evaluate", "--pred", "p", "--ref", "r", "--output", "o", "-o", "p"])
    assert "given more than once" in capsys.readouterr().err


def test_a_misspelt_command_gets_the_closest_one(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["segmnt", "ct.nii.gz"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "invalid choice: 'segmnt'" in err and "did you mean 'segment'?" in err


def test_a_command_that_cannot_be_imported_says_why_whatever_its_arguments(capsys, monkeypatch):
    """A command whose module failed to import (a missing dependency) was answered 'unrecognized arguments:
    ct.nii.gz -o out.nii.gz' as soon as it was given any argument; only the bare command named the reason."""
    import LiverTumorSegLib.cli as cli

    load = cli._load_command

    def missing_segment(name):
        if name == "segment":
            raise ImportError("No module named 'SimpleITK'")
        return load(name)

    monkeypatch.setattr(cli, "_load_command", missing_segment)
    assert main(["segment", "ct.nii.gz", "-o", "out.nii.gz", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "command 'segment' is unavailable: No module named 'SimpleITK'" in err and "unrecognized" not in err


@pytest.mark.parametrize("option", ["--debug", "--version"])
def test_a_top_level_option_after_the_command_says_where_it_goes(capsys, option):
    """'measure x -o y.json --version' was answered 'did you mean --overwrite?', '--debug' with no hint."""
    with pytest.raises(SystemExit) as exit_info:
        main(["measure", "labels.nii.gz", "-o", "report.json", option])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "did you mean" not in err
    assert f"{option} goes before the command: livertumorseg {option} measure ..." in err


def test_train_names_a_typed_option_as_typed_and_a_config_files_key_as_written(tmp_path, capsys):
    """'error: Option batch_size must be at least 1' named a command-line option by its config-file key
    (helper-34's audit). A typed option is named as typed; a config file's setting keeps the file's key."""
    from LiverTumorSegLib.cli import main

    out = str(tmp_path / "m.safetensors")
    assert main(["train", "--data", "cases.csv", "-o", out, "--batch-size", "0"]) == 2
    assert "error: Option --batch-size must be at least 1 (got 0)." in capsys.readouterr().err
    assert main(["train", "--data", "cases.csv", "-o", out, "--val-fraction", "1.5"]) == 2
    assert "error: --val-fraction must be in [0, 1) (got 1.5)." in capsys.readouterr().err
    config = tmp_path / "recipe.yaml"
    config.write_text("batch_size: 0\n")
    assert main(["train", "--config", str(config), "--data", "cases.csv", "-o", out]) == 2
    assert "error: Option batch_size must be at least 1 (got 0)." in capsys.readouterr().err


@pytest.mark.parametrize("command", [c for c in HELP_COMMANDS if c])
def test_every_command_takes_no_progress(command):
    """A script passing --no-progress (and the older --no-progress-bar) to every command got 'unrecognized
    arguments' from measure, followup and models, which print no progress."""
    import argparse

    from LiverTumorSegLib.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    for spelling in ("--no-progress", "--no-progress-bar"):
        assert any(spelling in action.option_strings for action in sub._actions), (command, spelling)


def _suffixes_named(text):
    """The file suffixes a help text names (``.nii`` and ``.nii.gz`` told apart)."""
    import re

    return set(re.findall(r"(?<![\w.])(\.[a-z]+(?:\.[a-z]+)?)(?![\w.])", text))


@pytest.mark.parametrize("command, positional", [("segment", "input"), ("preprocess", "input"),
                                                 ("measure", "labels")])
def test_the_input_help_names_every_file_type_the_readers_take(command, positional):
    """segment's and preprocess's input help listed .nii.gz, .nii, .nrrd, .mha and .mhd, and measure's label map
    help not .nhdr or .mhd either, while all of them read a detached NRRD header (.nhdr) and a MetaImage header
    (.mhd): the help named the readers' suffixes only in part. It now names every one (io.formats.READ_SUFFIXES),
    and segment's --probabilities help every suffix the map is written in (.nii was missing)."""
    import argparse

    from LiverTumorSegLib.inference.options import PROBABILITY_SUFFIXES
    from LiverTumorSegLib.io.formats import READ_SUFFIXES

    parsers = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)][0].choices
    helps = {a.dest: a.help for a in parsers[command]._actions}
    assert set(READ_SUFFIXES) <= _suffixes_named(helps[positional]), helps[positional]
    if command == "segment":
        assert set(PROBABILITY_SUFFIXES) <= _suffixes_named(helps["probabilities"]), helps["probabilities"]


CROSS_REFERENCES = {"segment": {"--config"}, "preprocess": {"--patch-size"}, "models": {"--model"}}
"""Options the docs name, bare, beside a command that has not got them: 'segment has no `--config`',
preprocess's advice to set train's `--patch-size`, and the models row's 'a package whose name `--model` will not
reach' (segment's)."""


def _documented_options():
    """``(command, option, where)`` for each ``--option`` in a backticked span of docs/cli.md's section of
    ``livertumorseg COMMAND``, of README's command table row of COMMAND and of a README subsection headed
    ``### `livertumorseg COMMAND`...`` (crossval's row details stand there as bullets since 29 Nov 2026); a span that
    starts with another command's name (``evaluate --prob``, ``torchrun ...``) is that command's, not checked here."""
    import argparse
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    commands = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)][0].choices
    blocks = [(re.match(r"livertumorseg (\w+)", section).group(1), section, "docs/cli.md")
              for section in (root / "docs" / "cli.md").read_text(encoding="utf-8").split("\n## ")[1:]]
    blocks += [(re.match(r"\| `livertumorseg (\w+)", row).group(1), row, "README.md")
               for row in (root / "README.md").read_text(encoding="utf-8").splitlines()
               if row.startswith("| `livertumorseg ")]
    blocks += [(re.match(r"`livertumorseg (\w+)", section).group(1), section.split("\n#", 1)[0], "README.md")
               for section in (root / "README.md").read_text(encoding="utf-8").split("\n### ")[1:]
               if section.startswith("`livertumorseg ")]
    for command, text, where in blocks:
        for span in re.findall(r"`([^`]*)`", text):
            first = (span.split() or [""])[0]
            if first in ("torchrun", "python") or (first in commands and first != command):
                continue
            for option in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", span):
                yield command, option, where


def test_every_option_the_docs_name_for_a_command_is_one_it_takes():
    """docs/cli.md and README's command table name each command's options; one renamed or removed in the code
    would have stayed there unnoticed (no test read them). Every ``--option`` they give a command must be one of
    its parser's, bar the cross-references of :data:`CROSS_REFERENCES`."""
    import argparse

    commands = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)][0].choices
    found = list(_documented_options())
    assert len({command for command, _, _ in found}) >= 5 and len(found) > 50  # the docs were read
    unknown = [(command, option, where) for command, option, where in found
               if option not in {o for a in commands[command]._actions for o in a.option_strings}
               and option not in CROSS_REFERENCES.get(command, set())]
    assert unknown == []


def _documented_defaults():
    """``(command, option, documented default)`` for each row of docs/cli.md's options tables whose Default cell
    holds one value per option of its Option cell (``50 / 250`` for ``--epochs`` / ``--iterations-per-epoch``);
    cells in words ("all cores", "the model's window") are left out."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
    for section in text.split("\n## ")[1:]:
        command = re.match(r"livertumorseg (\w+)", section).group(1)
        for row in section.splitlines():
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]]
            if len(cells) != 3 or not cells[0].startswith("`--"):
                continue
            options = re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", cells[0])
            values = [re.sub(r" \((mm|mL)\)$", "", value.strip().strip("`")) for value in cells[1].split(" / ")]
            if len(options) == len(values):
                for option, value in zip(options, values):
                    if value == "off" or re.fullmatch(r"[\w.]+", value):
                        yield command, option, value


def test_documented_defaults_are_the_parsers():
    """docs/cli.md's options tables give each option's default; nothing compared them with the code, so a changed
    default would have stayed wrong there (the researcher-journey audit checked them by hand). Each must be the
    parser's default or the one its help names; "off" a switch."""
    import argparse
    import re

    commands = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)][0].choices
    checked, wrong = 0, []
    for command, option, value in _documented_defaults():
        action = {o: a for a in commands[command]._actions for o in a.option_strings}[option]
        if value == "off":
            ok = action.nargs == 0 and action.default is not True
        else:
            ok = str(action.default) == value or re.search(
                r"(?<![\w-])default:? '?" + re.escape(value) + r"'?(?![\w.])", action.help or "") is not None
        checked += 1
        if not ok:
            wrong.append((command, option, value, action.default, action.help))
    assert checked > 40  # the tables were read
    assert wrong == []


def test_debug_keeps_the_plotting_libraries_debug_lines_out(capsys):
    """`livertumorseg --debug segment ... --preview p.png` printed 231 lines, 220 of them matplotlib scoring each
    font file it knows, which buried the program's own debug lines (timings, the bf16 check)."""
    import logging

    loggers = [logging.getLogger(name) for name in ("matplotlib", "PIL", "LiverTumorSegLib")]
    before = [logger.level for logger in loggers]
    root_before = logging.getLogger().level
    try:
        logging.getLogger().setLevel(logging.DEBUG)  # what --debug's basicConfig sets (a no-op under pytest's handlers)
        assert main(["--debug"]) == 2  # no command: the help, after logging was set up
        capsys.readouterr()
        matplotlib_log, pil_log, ours = loggers
        assert not matplotlib_log.isEnabledFor(logging.DEBUG) and not pil_log.isEnabledFor(logging.DEBUG)
        assert matplotlib_log.isEnabledFor(logging.WARNING)
        assert ours.isEnabledFor(logging.DEBUG)
    finally:
        for logger, level in zip(loggers, before):
            logger.setLevel(level)
        logging.getLogger().setLevel(root_before)


def test_train_data_help_and_layout_error_name_the_csv_case_column():
    """train --help and the unknown-layout error named the CSV columns image,label[,patient]: the case column,
    which names rows (CTs of one file name, p1/ct.nii.gz and p2/ct.nii.gz, need it), was in the README alone."""
    import argparse

    from LiverTumorSegLib.training.datasets import _LAYOUT_HELP

    parsers = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)][0].choices
    for command in ("train", "crossval"):
        help_text = {o: a.help for a in parsers[command]._actions for o in a.option_strings}["--data"]
        assert "image,label[,patient][,case]" in help_text, (command, help_text)
    assert "image,label[,patient][,case]" in _LAYOUT_HELP


def test_train_with_a_bundled_recipe_warns_that_the_package_is_called_default(tmp_path, caplog, monkeypatch):
    """scripts/default_model_v2.yaml sets name: default and the bundled model's description: a package trained
    with it was called 'default' (which --model default never loads) with no word at run time."""
    import logging
    from pathlib import Path

    from LiverTumorSegLib.commands.train import config_from_args

    recipe = str(Path(__file__).resolve().parents[2] / "scripts" / "default_model_v2.yaml")
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING):
        config = config_from_args(_parse(["train", "--config", recipe, "--data", "d.csv", "-o", "mine.safetensors"]))
    assert config.name == "default"  # the recipe still names it (the bundled model's rebuild relies on that)
    assert "the package will be called 'default' and its description, from name in" in caplog.text
    assert "Give --name and --description" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        config = config_from_args(_parse(["train", "--config", recipe, "--data", "d.csv", "--name", "mine"]))
    assert config.name == "mine"
    assert "called 'default'" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        config_from_args(_parse(["train", "--data", "d.csv"]))
    assert "called 'default'" not in caplog.text


@pytest.mark.parametrize("argv, named", [
    (["measure", "labels.nii.gz", "-o", "m.json", "--ct", ""], "--ct was given an empty value"),
    (["followup", "--baseline", "a.nii.gz", "--followup", "b.nii.gz", "-o", "c.json", "--baseline-ct="],
     "--baseline-ct was given an empty value"),
    (["segment", "ct.nii.gz", "-o", ""], "-o was given an empty value"),
    (["segment", "", "-o", "seg.nii.gz"], "an empty argument ('') was given"),
    (["evaluate", "--pred", "p", "--ref", "r", "-o", "ev", "--prob", ""], "--prob was given an empty value")])
def test_an_empty_argument_is_refused_before_any_work(tmp_path, capsys, monkeypatch, argv, named):
    """A script's `--ct "$CT"` with CT unset gave the option '': measure ran without the CT (its HU columns null),
    followup aligned on the labels, segment -o '' was told "Output '.' has no file extension" (the command-line
    audit). Refused now, naming the option, before anything is read; followup --title '' stays allowed."""
    from LiverTumorSegLib.cli import empty_argument_text, main

    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
    assert empty_argument_text(["followup", "--title", "", "--title="]) is None
    # after a flag, '' is an empty argument of its own, not the flag's value
    assert empty_argument_text(["segment", "--overwrite", ""], ["--overwrite"]).startswith("an empty argument")


def test_an_argument_ending_in_a_carriage_return_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    """A script with Windows line endings ends its last argument in '\r': a missing input's message overwrote itself
    on the terminal, and 'evaluate ... -o ecr\r' made a folder named 'ecr\r' and said it wrote 'ecr/cases.csv'
    (the portability audit). Refused, escaped, with the cause; a tab or 'Müller' is taken as it is."""
    import json

    from LiverTumorSegLib.cli import control_character_text

    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "--pred", "p", "--ref", "r", "-o", "ecr\r"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the argument 'ecr\\r' holds a control character (\\r). The script that ran this "
                          "has Windows line endings (CR LF)") and "\r" not in err
    assert list(tmp_path.iterdir()) == []
    assert main(["segment", "ct.nii.gz", "-o", "s.nii.gz", "--progress", "json", "--no-progress\r"]) == 2
    lines = capsys.readouterr()
    assert "holds a control character" in json.loads(lines.out.splitlines()[0])["error"]
    # a tab, and a line feed (pretty-printed JSON as --label-map's value, a two-line --title: the review) are taken
    assert control_character_text(["Müller\tct.nii.gz", '{\n "1": 1\n}', "Patient 7\nday 90"]) is None
    assert control_character_text(["a\x1bb"]) == "the argument 'a\\x1bb' holds a control character (\\x1b)."


@pytest.mark.parametrize("argv, said", [
    (["segment", "ct.nii.gz", "-o", "s.nii.gz", "--min-new-lesion-mm", "5"],
     "--min-new-lesion-mm is an option of followup, not of segment"),
    (["followup", "--baseline", "a", "--followup", "b", "-o", "c.json", "--min-lesion-ml", "0.5"],
     "--min-lesion-ml is an option of segment, not of followup"),
    (["evaluate", "--pred", "p", "--ref", "r", "-o", "ev", "--threads", "2"], "--threads is an option of")])
def test_another_commands_option_is_named_as_such_not_matched_to_a_near_name(capsys, argv, said):
    """An option of another command was answered with this command's closest name: 'segment --min-new-lesion-mm 5 ->
    did you mean --min-lesion-ml?', which would remove every lesion under 5 mL (a 21 mm ball), and mL offered for mm
    the other way round (the command-line audit). The command that has the option is named; a misspelling of this
    command's own option still gets its close match."""
    from LiverTumorSegLib.cli import main

    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and said in err and "did you mean" not in err, err
    with pytest.raises(SystemExit):
        main(["segment", "ct.nii.gz", "-o", "s.nii.gz", "--no-progess"])
    assert "did you mean --no-progress?" in capsys.readouterr().err
