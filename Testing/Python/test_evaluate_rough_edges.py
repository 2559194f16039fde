"""`evaluate` / `crossval` rough edges (issue 14) and evaluate's failure hygiene (issue 15, item 6):
pairing rule, tumor Dice of tumor-free cases, single-case plots, legend wording, help text, -o a file,
a corrupt --images CT leaving nothing behind."""
import json
import os
import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from evaluate_helpers import two_lesion_maps, write_evaluate_folders
from process_helpers import ended_process_id

from LiverTumorSegLib.cli import build_parser, main
from LiverTumorSegLib.io import write_label_map, write_volume
from LiverTumorSegLib.phantom import make_phantom
from LiverTumorSegLib.volume import CTVolume

DATA = Path(__file__).resolve().parents[1] / "Data"


def _case(folder: Path, name: str, seed: int = 0, tumor: bool = True):
    folder.mkdir(exist_ok=True)
    phantom = make_phantom(shape_zyx=(8, 24, 24), seed=seed, **({} if tumor else {"lesions": []}))
    write_label_map(folder / name, phantom.labels, phantom.ct.geometry)
    return phantom


def _ct_label_and_prediction(tmp_path: Path, ct: str, label: str, prediction: str):
    """``(data, pred)`` folders: Testing/Data's ``ct`` and ``label`` in one folder, the label copied as the
    prediction ``prediction`` into the other."""
    data, pred = tmp_path / "data", tmp_path / "pred"
    data.mkdir()
    pred.mkdir()
    for name in (ct, label):
        shutil.copy(DATA / name, data / name)
    shutil.copy(DATA / label, pred / prediction)
    return data, pred


def _evaluate(*args) -> int:
    return main(["evaluate"] + [str(a) for a in args])


def test_repo_test_data_pairs_ct_and_liver_seg_in_one_folder(tmp_path, capsys):
    """ct3slice_ct (CT) and ct3slice_liver_seg (label map) share the case name 'ct3slice'; the names tell
    --ref the label map and --images the CT, even when both lie in one folder (as in Testing/Data)."""
    both, pred = _ct_label_and_prediction(tmp_path, "ct3slice_ct.nii.gz", "ct3slice_liver_seg.nii.gz",
                                          "ct3slice_pred.nii.gz")
    code = _evaluate("--pred", pred, "--ref", both, "--images", both, "-o", tmp_path / "out", "--no-surface")
    out = capsys.readouterr()
    assert code == 0, out.err
    rows = list(csv.DictReader(open(tmp_path / "out" / "cases.csv", newline="")))
    assert [r["case"] for r in rows] == ["ct3slice"] and float(rows[0]["dice_liver"]) == 1.0
    assert (tmp_path / "out" / "plots" / "overlay_best_ct3slice.png").is_file()


def test_an_unmarked_file_beside_a_marked_one_is_the_other_role_but_never_the_prediction(tmp_path, capsys):
    """Testing/Data holds example_ct_sm.nii.gz (CT, unmarked) beside example_ct_sm_liver.nii.gz: --images refused
    it. A --pred folder with the real prediction '1.nii.gz' beside a stray copied reference 'segmentation-1.nii'
    scored the reference (Dice 1.0) without a word; that is ambiguous now."""
    data, pred = _ct_label_and_prediction(tmp_path, "example_ct_sm.nii.gz", "example_ct_sm_liver.nii.gz",
                                          "example_ct_sm.nii.gz")
    code = _evaluate("--pred", pred, "--ref", data, "--images", data, "-o", tmp_path / "out", "--no-surface")
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "plots" / "overlay_best_example_ct_sm.png").is_file()
    shutil.copy(DATA / "example_ct_sm_liver.nii.gz", pred / "segmentation-example_ct_sm.nii")
    assert _evaluate("--pred", pred, "--ref", data, "-o", tmp_path / "out2", "--no-surface") == 2
    err = capsys.readouterr().err
    assert "holds 2 files for case 'example_ct_sm'" in err and "segmentation-example_ct_sm.nii" in err
    # what 'segment case.nii.gz -o case_seg.nii.gz' leaves beside the CT: the _seg file is the prediction
    from LiverTumorSegLib.commands.evaluate import list_cases
    beside = tmp_path / "beside"
    beside.mkdir()
    shutil.copy(DATA / "example_ct_sm.nii.gz", beside / "case1.nii.gz")
    shutil.copy(DATA / "example_ct_sm_liver.nii.gz", beside / "case1_seg.nii.gz")
    assert list_cases(beside, "--pred")["case1"].name == "case1_seg.nii.gz"


def test_references_without_a_prediction_are_named_beside_the_numbers(tmp_path, capsys):
    """A case segment failed on vanished from the printed held-out numbers (stderr only)."""
    for name in ("a.nii.gz", "b.nii.gz", "c.nii.gz"):
        _case(tmp_path / "ref", name)
    _case(tmp_path / "pred", "a.nii.gz")
    assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / "out",
                     "--no-plots", "--no-surface") == 0
    out = capsys.readouterr().out
    assert "NOT IN THESE NUMBERS: 2 reference case(s) without a prediction (b, c)" in out


def test_no_surface_is_said_in_the_summarys_settings(tmp_path):
    """With --no-surface, summary.json's settings still described how surface distances are computed and listed
    assd_tumor_mm, hd_tumor_mm ... among the tumor columns, none of which cases.csv held."""
    _case(tmp_path / "ref", "a.nii.gz")
    _case(tmp_path / "pred", "a.nii.gz", seed=1)
    assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / "out",
                     "--no-plots", "--no-surface") == 0
    settings = json.loads((tmp_path / "out" / "summary.json").read_text())["settings"]
    with open(tmp_path / "out" / "cases.csv", newline="") as table:
        columns = next(csv.reader(table))
    assert settings["surface"].startswith("not computed (--no-surface)")
    assert "surface_distances_if_a_mask_is_empty" not in settings
    listed = settings["tumor_voe_rvd_surface_distances"]["columns"]
    assert listed == ["voe_tumor", "rvd_tumor"] and set(listed) <= set(columns)


def test_two_files_of_other_case_numbers_are_compared_with_a_warning(tmp_path, caplog):
    """volume-3 against segmentation-2 was scored without a word; 'pred' against 'gt' names no case at all."""
    _case(tmp_path, "volume-3.nii.gz")
    _case(tmp_path, "segmentation-2.nii.gz")
    assert _evaluate("--pred", tmp_path / "volume-3.nii.gz", "--ref", tmp_path / "segmentation-2.nii.gz",
                     "-o", tmp_path / "out", "--no-plots", "--no-surface") == 0
    err = caplog.text
    assert err.count("name different case numbers") == 1 and "'3'" in err and "'2'" in err
    _case(tmp_path, "pred.nii.gz")
    _case(tmp_path, "segmentation-02.nii.gz")
    _case(tmp_path / "other", "volume-3.nii.gz")
    for pred, ref in (("pred.nii.gz", "segmentation-2.nii.gz"), ("other/volume-3.nii.gz", "volume-3.nii.gz"),
                      ("segmentation-02.nii.gz", "segmentation-2.nii.gz")):
        caplog.clear()
        out = tmp_path / f"o_{pred}_{ref}".replace("/", "_")
        assert _evaluate("--pred", tmp_path / pred, "--ref", tmp_path / ref, "-o", out,
                         "--no-plots", "--no-surface") == 0
        assert "different case numbers" not in caplog.text


def test_a_prediction_that_is_the_reference_file_itself_is_refused(tmp_path, capsys):
    """The same file (or folder) given as --pred and --ref, a slip of the shell's completion, was scored against
    itself: Dice 1.0, exit 0, no word. Links to the reference's files in the --pred folder are the same files."""
    _case(tmp_path / "ref", "case1.nii.gz")
    _case(tmp_path / "ref", "case2.nii.gz", seed=1)
    (tmp_path / "pred").mkdir()
    (tmp_path / "pred" / "case1.nii.gz").symlink_to(tmp_path / "ref" / "case1.nii.gz")
    _case(tmp_path / "pred", "case2.nii.gz", seed=2)
    for pred, ref, said in ((tmp_path / "ref" / "case1.nii.gz", tmp_path / "ref" / "case1.nii.gz", "the same file"),
                            (tmp_path / "ref", tmp_path / "ref", "the same folder"),
                            (tmp_path / "pred", tmp_path / "ref", "1 case(s) of --pred")):
        assert _evaluate("--pred", pred, "--ref", ref, "-o", tmp_path / "out", "--no-surface") == 2
        err = capsys.readouterr().err
        assert said in err and "against themselves (Dice 1.0)" in err and err.count("\n") == 1
        assert not (tmp_path / "out").exists()
    assert "(case1)" in err


def test_a_reference_without_liver_or_tumor_is_warned_of(tmp_path, capsys, caplog):
    """An all-background reference scores liver Dice 0.0 against any prediction (1.0 against an empty one): a wrong
    file or unmapped label values, scored without a word."""
    phantom = _case(tmp_path / "pred", "case1.nii.gz")
    (tmp_path / "ref").mkdir()
    write_label_map(tmp_path / "ref" / "case1.nii.gz", np.zeros_like(phantom.labels), phantom.ct.geometry)
    assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / "out",
                     "--no-plots", "--no-surface") == 0
    assert caplog.text.count("holds no liver or tumor") == 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert any("holds no liver or tumor" in w for w in summary["warnings"]["case1"])
    row = next(csv.DictReader(open(tmp_path / "out" / "cases.csv", newline="")))
    assert float(row["dice_liver"]) == 0.0


def test_a_reference_of_tumor_without_liver_is_warned_of(tmp_path, capsys, caplog):
    """A tumor-only reference (label 2, no 1: the tumors annotated alone) gave a liver Dice that compares the
    predicted liver with the tumors (0.02 on a real CT) without a word; its liver numbers are now said not to
    measure the liver (printed and in summary.json), as measure says of such a map."""
    phantom = _case(tmp_path / "pred", "case1.nii.gz")
    (tmp_path / "ref").mkdir()
    tumor_only = np.where(phantom.labels == 2, 2, 0).astype(np.uint8)
    assert tumor_only.any()
    write_label_map(tmp_path / "ref" / "case1.nii.gz", tumor_only, phantom.ct.geometry)
    assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / "out",
                     "--no-plots", "--no-surface") == 0
    assert caplog.text.count("holds tumor (2) but no liver (1)") == 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert any("do not measure the liver" in w for w in summary["warnings"]["case1"])


def test_two_label_maps_of_one_case_are_refused_naming_both(tmp_path, capsys):
    _case(tmp_path / "ref", "case1_seg.nii.gz")
    _case(tmp_path / "ref", "case1_label.nii.gz")
    _case(tmp_path / "pred", "case1.nii.gz")
    assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "case1_label.nii.gz" in err and "case1_seg.nii.gz" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_tumor_dice_of_tumor_free_case_is_one_in_evaluate_and_crossval(tmp_path, capsys):
    from LiverTumorSegLib.training.trainer import whole_volume_row

    phantom = _case(tmp_path / "ref", "a.nii.gz", tumor=False)
    _case(tmp_path / "pred", "a.nii.gz", tumor=False)
    assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / "out",
                     "--no-plots", "--no-surface") == 0
    row = next(csv.DictReader(open(tmp_path / "out" / "cases.csv", newline="")))
    assert float(row["dice_tumor"]) == 1.0
    labels = phantom.labels
    assert whole_volume_row("a", labels, labels)["tumor_dice"] == 1.0            # crossval's per-case rule
    false_positive = labels.copy()
    false_positive[labels == 1] = 2
    assert whole_volume_row("a", false_positive, labels)["tumor_dice"] == 0.0
    # ... and the row says the reference had no tumor, so the 0.0 reads as "tumor predicted", not outlining
    assert whole_volume_row("a", false_positive, labels)["reference_has_tumor"] is False
    from types import SimpleNamespace

    from LiverTumorSegLib.training.crossval import fold_row, mean_row

    whole = {"liver_dice": 0.9, "tumor_dice": 0.0, "cases": [whole_volume_row("a", false_positive, labels)]}
    fold = fold_row(0, SimpleNamespace(validation={"whole_volume": whole}, val_cases=["a"], epochs_completed=1))
    two = fold_row(1, SimpleNamespace(validation={"whole_volume": whole}, val_cases=["ct 0", "ct 1"],
                                      epochs_completed=1))
    assert two["val_cases"] == "ct 0; ct 1"  # 'ct 0 ct 1' read as four cases
    assert fold["tumor_ref_cases"] == 0 and mean_row([fold])["tumor_ref_cases"] == 0


def test_crossval_printout_names_the_folds_whose_tumor_dice_only_says_whether_tumor_was_predicted():
    """Three folds, one validation patient with a tumor (0.951) and two without (1.000: none predicted) printed mean
    tumor Dice 0.984 with no word; only a table where no fold had a reference tumor got a note."""
    from LiverTumorSegLib.commands.crossval import tumor_dice_notes
    from LiverTumorSegLib.training.crossval import mean_row

    def fold(index, tumor_dice, tumor_ref_cases):
        return {"fold": index, "liver_dice": 0.98, "tumor_dice": tumor_dice, "liver_dice_raw": 0.98,
                "tumor_dice_raw": tumor_dice, "tumor_ref_cases": tumor_ref_cases, "val_cases": f"c{index}"}

    mixed = [fold(0, 1.0, 0), fold(1, 0.951, 1), fold(2, 1.0, 0)]
    notes = tumor_dice_notes(mixed + [mean_row(mixed)])
    assert len(notes) == 1 and "fold(s) 0, 2 hold no reference tumor" in notes[0] and "the mean counts them" in notes[0]
    none = [fold(0, 1.0, 0), fold(1, 0.0, 0)]
    assert tumor_dice_notes(none + [mean_row(none)]) == [
        "no validation case has a reference tumor: 'tumor Dice' only says whether tumor was predicted (1 = none, "
        "0 = some), not how well it was outlined"]
    every = [fold(0, 0.7, 2), fold(1, 0.8, 1)]
    assert tumor_dice_notes(every + [mean_row(every)]) == []
    unknown = [fold(0, 0.7, float("nan")), fold(1, 0.8, 1)]  # an older package: not known, not said
    assert tumor_dice_notes(unknown + [mean_row(unknown)]) == []


@pytest.mark.parametrize("name", ["cv.csv", "crossval.json", "model.safetensors"])
def test_crossval_output_named_like_a_file_is_refused_before_any_fold_trains(tmp_path, capsys, monkeypatch, name):
    """`crossval -o cv.csv` trained every fold into a folder named cv.csv; refused in one line before any data is
    read (the data folder here does not even exist) or any fold trains."""
    import LiverTumorSegLib.training.crossval as crossval_module

    def no_training(*args, **kwargs):
        raise AssertionError("crossval started")

    monkeypatch.setattr(crossval_module, "run_crossval", no_training)
    monkeypatch.chdir(tmp_path)
    code = main(["crossval", "--data", str(tmp_path / "cases.csv"), "--folds", "2", "-o", name, "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and f"-o '{name}' names a" in err and "folder name" in err
    assert err.count("\n") == 1 and not (tmp_path / name).exists()


def test_crossval_table_first_column_is_fold(tmp_path):
    from LiverTumorSegLib.training.crossval import mean_row, write_table

    rows = [{"fold": 0, "liver_dice": 0.9, "tumor_dice": 0.5, "liver_dice_raw": 0.8, "tumor_dice_raw": 0.5,
             "val_cases": "a", "epochs": 1},
            {"fold": 1, "liver_dice": 0.7, "tumor_dice": 1.0, "liver_dice_raw": 0.7, "tumor_dice_raw": 1.0,
             "val_cases": "b", "epochs": 1}]
    write_table(rows + [mean_row(rows)], tmp_path)
    table = list(csv.reader(open(tmp_path / "crossval.csv", newline="")))
    assert table[0][0] == "fold" and "case" not in table[0]
    assert [r[0] for r in table[1:]] == ["0", "1", "mean"]
    assert float(table[3][table[0].index("liver_dice")]) == pytest.approx(0.8)


def test_single_case_has_no_box_plots_and_says_why(tmp_path, capsys):
    _case(tmp_path / "ref", "a.nii.gz")
    _case(tmp_path / "pred", "a.nii.gz", seed=1)
    assert _evaluate("--pred", tmp_path / "pred" / "a.nii.gz", "--ref", tmp_path / "ref" / "a.nii.gz",
                     "-o", tmp_path / "out", "--no-surface") == 0
    printed = capsys.readouterr().out
    assert not (tmp_path / "out" / "plots" / "boxplots.png").exists()
    assert "no box plots: 1 case" in printed
    assert (tmp_path / "out" / "plots" / "overlay_best_a.png").is_file()


def test_overlay_legend_says_reference_not_expert(tmp_path, monkeypatch):
    from LiverTumorSegLib.metrics import report

    captured = {}

    def keep_figure(fig, path, overwrite):
        captured["labels"] = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        return Path(path)

    monkeypatch.setattr(report, "_save_figure", keep_figure)
    labels = np.zeros((3, 10, 10), np.uint8)
    labels[1, 2:8, 2:8] = 1
    report.plot_case_overlay(labels, labels, tmp_path / "o.png")
    assert "liver, reference" in captured["labels"] and "liver, prediction" in captured["labels"]
    assert not any("expert" in text for text in captured["labels"])


@pytest.mark.parametrize("command", ["segment", "preprocess", "models", "train", "crossval", "evaluate"])
def test_help_has_no_raw_double_backticks(command):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    assert "``" not in sub.format_help()


def test_output_naming_a_file_is_a_one_line_error(tmp_path, capsys):
    _case(tmp_path / "ref", "a.nii.gz")
    target = tmp_path / "results.csv"
    target.write_text("keep me\n")
    code = _evaluate("--pred", tmp_path / "ref" / "a.nii.gz", "--ref", tmp_path / "ref" / "a.nii.gz", "-o", target)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "is a file" in err and err.count("\n") == 1
    assert "Traceback" not in err and target.read_text() == "keep me\n"


@pytest.mark.parametrize("name", ["results.csv", "summary.JSON"])
def test_new_output_named_like_a_file_is_a_one_line_error(tmp_path, capsys, name):
    """`-o results.csv` (a user expecting a table file) made a folder named results.csv holding cases.csv; as
    segment's batch refuses `-o seg.nii.gz`, evaluate refuses it before any case is read, writing nothing."""
    _case(tmp_path / "ref", "a.nii.gz")
    _case(tmp_path / "pred", "a.nii.gz", seed=1)
    target = tmp_path / name
    code = _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", target)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "names a" in err and "folder name" in err
    assert err.count("\n") == 1 and not target.exists()


@pytest.mark.parametrize("name", ["eval_v1.0", "eval_case1.nii.gz"])
def test_new_output_folder_with_a_dot_in_its_name_is_taken(tmp_path, capsys, name):
    """A folder name with a version number (`eval_v1.0`) or named after an input, as scripts name them, is taken:
    evaluated as before."""
    _case(tmp_path / "ref", "a.nii.gz")
    _case(tmp_path / "pred", "a.nii.gz", seed=1)
    target = tmp_path / name
    assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", target, "--no-plots") == 0
    assert (target / "cases.csv").is_file() and (target / "summary.json").is_file()


@pytest.mark.parametrize("existing_folder", [False, True])
def test_corrupt_images_ct_leaves_no_outputs(tmp_path, capsys, existing_folder):
    phantom = _case(tmp_path / "ref", "a.nii.gz")
    _case(tmp_path / "ref", "b.nii.gz")
    _case(tmp_path / "pred", "a.nii.gz")                       # perfect: the best case
    (tmp_path / "pred").mkdir(exist_ok=True)
    write_label_map(tmp_path / "pred" / "b.nii.gz", np.roll(phantom.labels, 3, axis=2), phantom.ct.geometry)
    images = tmp_path / "img"
    images.mkdir()
    phantom = make_phantom(shape_zyx=(8, 24, 24), seed=0)
    write_volume(images / "a.nii.gz", phantom.ct)
    (images / "b.nii.gz").write_bytes(b"\x1f\x8b\x08\x00 not really gzip")   # corrupt CT
    out = tmp_path / "out"
    if existing_folder:
        out.mkdir()
    code = _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "--images", images, "-o", out,
                     "--no-surface", "--rank-metric", "dice_liver")
    err = capsys.readouterr().err
    assert code == 2 and "b.nii.gz" in err and "Traceback" not in err
    assert (list(out.iterdir()) == []) if existing_folder else not out.exists()


def test_lits_batches_in_subfolders_and_255_references_with_label_map(tmp_path, capsys):
    """LiTS ships its training set as 'Training Batch 1' and 'Training Batch 2' folders and its test set as
    test-segmentation-N; IRCADb-style masks hold 0/255. --ref a folder without files of its own is searched
    below; --label-map maps the references' values; the scores are those of the same labels as 0/1/2."""
    ref = tmp_path / "lits"
    (ref / "Training Batch 1").mkdir(parents=True)
    (ref / "Training Batch 2").mkdir()
    (ref / "__MACOSX" / "Training Batch 1").mkdir(parents=True)
    (ref / "__MACOSX" / "Training Batch 1" / "._segmentation-0.nii").write_bytes(b"junk")
    phantoms = {n: make_phantom(shape_zyx=(8, 24, 24), seed=n) for n in (0, 1)}
    for n, batch in ((0, "Training Batch 1"), (1, "Training Batch 2")):
        write_label_map(ref / batch / f"segmentation-{n}.nii", phantoms[n].labels, phantoms[n].ct.geometry)
    pred = tmp_path / "pred"
    pred.mkdir()
    write_label_map(pred / "test-segmentation-0.nii.gz", phantoms[0].labels, phantoms[0].ct.geometry)
    shrunk = (phantoms[1].labels >= 1).astype(np.uint8)
    shrunk[:4] = 0  # half the slices: liver Dice = 2|A n B| / (|A| + |B|), computed below
    write_label_map(pred / "1_pred.nii.gz", shrunk, phantoms[1].ct.geometry)
    assert _evaluate("--pred", pred, "--ref", ref, "-o", tmp_path / "out", "--no-plots", "--no-surface") == 0
    rows = {r["case"]: r for r in csv.DictReader(open(tmp_path / "out" / "cases.csv", newline=""))}
    liver = phantoms[1].labels >= 1
    expected = 2 * np.count_nonzero(liver & (shrunk >= 1)) / (np.count_nonzero(liver) + np.count_nonzero(shrunk))
    assert sorted(rows) == ["0", "1"] and float(rows["0"]["dice_liver"]) == 1.0
    from LiverTumorSegLib.commands.evaluate import list_cases

    deep = ref / "a" / "b" / "c" / "d"  # deeper than the 3 levels searched (a home folder given by mistake)
    deep.mkdir(parents=True)
    write_label_map(deep / "segmentation-9.nii", phantoms[0].labels, phantoms[0].ct.geometry)
    assert sorted(list_cases(ref, "--ref")) == ["0", "1"]
    assert abs(float(rows["1"]["dice_liver"]) - expected) < 1e-4

    masks = tmp_path / "masks255"
    masks.mkdir()
    write_label_map(masks / "1.nii.gz", liver.astype(np.uint8) * 255, phantoms[1].ct.geometry)
    capsys.readouterr()
    assert _evaluate("--pred", pred / "1_pred.nii.gz", "--ref", masks / "1.nii.gz", "-o", tmp_path / "o2",
                     "--no-plots", "--no-surface") == 2
    assert "values 255 outside" in capsys.readouterr().err
    assert _evaluate("--pred", pred / "1_pred.nii.gz", "--ref", masks / "1.nii.gz", "-o", tmp_path / "o3",
                     "--no-plots", "--no-surface", "--label-map", '{"255": 1}') == 0
    row = next(csv.DictReader(open(tmp_path / "o3" / "cases.csv", newline="")))
    assert abs(float(row["dice_liver"]) - expected) < 1e-4
    assert _evaluate("--pred", pred, "--ref", masks, "-o", tmp_path / "o4", "--label-map", '{"255": 3}') == 2
    assert "targets must be 0, 1 or 2" in capsys.readouterr().err


def test_ircadb_masks_as_reference_get_a_hint(tmp_path, capsys):
    (tmp_path / "ircadb" / "3Dircadb1.1" / "MASKS_DICOM" / "liver").mkdir(parents=True)
    _case(tmp_path / "pred", "3Dircadb1.1.nii.gz")
    assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ircadb", "-o", tmp_path / "out") == 2
    assert "3D-IRCADb masks (MASKS_DICOM/ DICOM series) are not label map files" in capsys.readouterr().err


def test_a_dicom_mask_series_given_against_a_label_file_gets_the_ircadb_hint(tmp_path, capsys):
    """--ref 3Dircadb1.1/MASKS_DICOM/liver (a DICOM series) against one prediction file said only 'must both be
    files or both be folders'."""
    import SimpleITK as sitk

    masks = tmp_path / "3Dircadb1.1" / "MASKS_DICOM" / "liver"
    masks.mkdir(parents=True)
    writer = sitk.ImageFileWriter()
    writer.SetImageIO("GDCMImageIO")
    writer.SetFileName(str(masks / "image_0"))
    writer.Execute(sitk.GetImageFromArray(np.zeros((4, 4), np.int16)))
    _case(tmp_path / "pred", "3Dircadb1.1.nii.gz")
    assert _evaluate("--pred", tmp_path / "pred" / "3Dircadb1.1.nii.gz", "--ref", masks, "-o", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "must both be files or both be folders" in err
    assert f"'{masks}' is a DICOM series folder, not a label map file: evaluate reads one label map file per case" \
           in err and "load_case(case)" in err
    assert _evaluate("--pred", tmp_path / "pred" / "3Dircadb1.1.nii.gz", "--ref", tmp_path / "pred", "-o",
                     tmp_path / "out") == 2
    assert "DICOM" not in capsys.readouterr().err  # a folder of label files: no such hint
    for folder in (masks.parent, masks.parent.parent):  # MASKS_DICOM/ (no DICOM file of its own), the patient's
        assert _evaluate("--pred", tmp_path / "pred" / "3Dircadb1.1.nii.gz", "--ref", folder, "-o",
                         tmp_path / "out") == 2  # said only 'must both be files or both be folders'
        assert f"'{folder}' holds 3D-IRCADb's DICOM mask series" in capsys.readouterr().err


def test_interrupted_overwrite_keeps_the_previous_results(tmp_path, capsys, monkeypatch):
    """A Ctrl-C while plots were drawn in an --overwrite run deleted the previous cases.csv and summary.json
    (the new ones had replaced them and were then removed as this run's). Outputs are staged now."""
    from LiverTumorSegLib.metrics import report

    for name, seed in (("a.nii.gz", 0), ("b.nii.gz", 1)):
        _case(tmp_path / "ref", name, seed)
        _case(tmp_path / "pred", name, seed)
    out = tmp_path / "out"
    args = ["--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", out, "--no-surface"]
    assert _evaluate(*args) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert Path("cases.csv") in before and Path("plots") / "boxplots.png" in before

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "plot_metric_boxplots", interrupted)
    assert _evaluate(*args, "--overwrite") == 130
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    monkeypatch.undo()
    phantom = make_phantom(shape_zyx=(8, 24, 24), seed=1)  # another prediction: the rerun's table differs
    write_label_map(tmp_path / "pred" / "b.nii.gz", np.roll(phantom.labels, 3, axis=2), phantom.ct.geometry,
                    overwrite=True)
    assert _evaluate(*args, "--overwrite") == 0
    assert (out / "cases.csv").read_bytes() != before[Path("cases.csv")]
    assert sorted(p.name for p in out.iterdir()) == ["cases.csv", "plots", "summary.json"]


def test_a_move_failing_halfway_leaves_the_previous_results_whole(tmp_path, capsys, monkeypatch):
    """With --overwrite the staged files were moved one by one: a plot held open (or Ctrl-C) left the new
    cases.csv beside the previous run's summary.json."""
    from LiverTumorSegLib import fileutil
    _case(tmp_path / "ref", "a.nii.gz")
    _case(tmp_path / "ref", "b.nii.gz", seed=1)
    _case(tmp_path / "pred", "a.nii.gz")
    _case(tmp_path / "pred", "b.nii.gz", seed=2)
    out = tmp_path / "out"
    assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", out, "--no-surface") == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real = fileutil.replace_file

    def summary_held_open(source, target):
        if Path(target) == out / "summary.json" and ".old" not in str(source):  # the final move, not a restore
            raise PermissionError(13, "Permission denied", str(target))
        real(source, target)

    monkeypatch.setattr(fileutil, "replace_file", summary_held_open)
    (tmp_path / "pred" / "b.nii.gz").unlink()
    _case(tmp_path / "pred", "b.nii.gz", tumor=False)  # another prediction: other numbers
    assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", out, "--no-surface",
                     "--overwrite") == 2
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # every file of the first run, unchanged; nothing of the second
    # a later run over one case replaces the results whole: no plot of the earlier two-case run stays behind
    monkeypatch.setattr(fileutil, "replace_file", real)
    (tmp_path / "pred" / "b.nii.gz").unlink()
    assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", out, "--no-surface",
                     "--overwrite") == 0
    assert not (out / "plots" / "boxplots.png").exists()  # box plots need 2 cases: this run drew none


def test_a_failed_run_removes_every_folder_it_made_for_a_nested_output(tmp_path, capsys, monkeypatch):
    """-o new/deeper/out with only tmp_path there: a run failing while its results were put in place removed
    out/ but left new/deeper/ behind (a stop-31 known limit)."""
    from LiverTumorSegLib import fileutil
    _case(tmp_path / "ref", "a.nii.gz")
    _case(tmp_path / "pred", "a.nii.gz")

    def refused(source, target):
        raise PermissionError(13, "Permission denied", str(target))

    monkeypatch.setattr(fileutil, "replace_file", refused)
    out = tmp_path / "new" / "deeper" / "out"
    assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", out, "--no-surface") == 2
    assert "Permission denied" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()                          # a folder that was there stays, with its files
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / "kept" / "a" / "b",
                     "--no-surface") == 2
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["notes.txt"]


def test_an_unwritable_output_folder_is_refused_before_the_work(tmp_path, capsys):
    """evaluate -o READ_ONLY evaluated every case, then failed naming its hidden staging folder."""
    _case(tmp_path / "ref", "a.nii.gz")
    _case(tmp_path / "pred", "a.nii.gz")
    code = _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", Path("/sys/eval_out"))
    err = capsys.readouterr().err
    assert code == 2 and "'/sys' is not writable" in err and ".evaluate." not in err


def test_a_probability_map_and_ct_on_the_predictions_axis_order_are_reoriented_like_the_prediction(tmp_path,
                                                                                                      capsys, caplog):
    """The reference stores the grid with x reversed; the prediction was reoriented onto it, but its probability
    map (same file layout as the prediction) was refused ('Give the map written with this prediction', which it
    was), and an --images CT in that layout was drawn as a black overlay. Known answer: the map is 0.9 on tumor
    and 0.2 on liver, so the tumor ROC AUC is exactly 1."""
    import logging

    import nibabel as nib
    spacing = (0.7, 0.8, 2.5)
    shape = (20, 21, 22)                                            # (x, y, z) as nibabel stores it
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = [10, 20, -30]
    labels = np.zeros(shape, np.uint8)
    labels[5:15, 5:15, 5:15] = 1
    labels[7:10, 7:10, 7:10] = 2
    prob = np.where(labels == 2, 0.9, np.where(labels == 1, 0.2, 0.0)).astype(np.float32)
    ct = np.where(labels >= 1, 60, -1000).astype(np.int16)
    flipped = affine.copy()
    flipped[0, 0] = spacing[0]
    flipped[0, 3] = affine[0, 3] + affine[0, 0] * (shape[0] - 1)
    for folder in ("pred", "ref", "prob", "ct"):
        (tmp_path / folder).mkdir()
    nib.save(nib.Nifti1Image(labels[::-1].copy(), flipped), tmp_path / "ref" / "a.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), tmp_path / "pred" / "a.nii.gz")
    nib.save(nib.Nifti1Image(prob, affine), tmp_path / "prob" / "a.nii.gz")
    nib.save(nib.Nifti1Image(ct, affine), tmp_path / "ct" / "a.nii.gz")
    with caplog.at_level(logging.WARNING):
        code = _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "--prob", tmp_path / "prob",
                         "--images", tmp_path / "ct", "-o", tmp_path / "out", "--no-surface")
    assert code == 0, capsys.readouterr().err
    row = next(csv.DictReader(open(tmp_path / "out" / "cases.csv", newline="")))
    assert float(row["roc_auc_tumor"]) == pytest.approx(1.0) and float(row["dice_tumor"]) == 1.0
    assert "overlay without CT" not in caplog.text


def test_overwrite_removes_only_pictures_evaluate_draws(tmp_path, capsys):
    """--overwrite removed every PNG in OUT_DIR/plots that this run did not draw, a user's own figure too."""
    for name in ("a.nii.gz", "b.nii.gz"):
        _case(tmp_path / "ref", name)
        _case(tmp_path / "pred", name)
    plots = tmp_path / "out" / "plots"
    plots.mkdir(parents=True)
    (plots / "my_figure.png").write_bytes(b"mine")
    (plots / "overlay_best_gone.png").write_bytes(b"an earlier run's overlay of a case not evaluated now")
    code = _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / "out",
                     "--no-surface", "--overwrite")
    assert code == 0, capsys.readouterr().err
    names = sorted(p.name for p in plots.iterdir())
    assert "my_figure.png" in names and (plots / "my_figure.png").read_bytes() == b"mine"
    assert "overlay_best_gone.png" not in names and "boxplots.png" in names


def test_roc_counts_the_cases_with_a_probability_map(tmp_path, capsys):
    """The ROC title said '3 case(s)' when one of three cases had a probability map."""
    import json

    from LiverTumorSegLib.io import write_probability_map

    phantoms = {}
    for index, name in enumerate(("a", "b", "c")):
        phantoms[name] = _case(tmp_path / "ref", f"{name}.nii.gz", seed=index)
        _case(tmp_path / "pred", f"{name}.nii.gz", seed=index)
    (tmp_path / "prob").mkdir()
    labels = phantoms["a"].labels
    probability = np.where(labels == 2, 230, 25).astype(np.uint8)  # 255 x p, as segment --probabilities writes
    write_probability_map(tmp_path / "prob" / "a.nii.gz", probability, phantoms["a"].ct.geometry)
    titles = []
    import LiverTumorSegLib.metrics.report as report

    original = report.plot_roc_curve

    def spy(curve, path, title="", **kwargs):
        titles.append(title)
        return original(curve, path, title=title, **kwargs)

    report.plot_roc_curve = spy
    try:
        code = _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "--prob", tmp_path / "prob",
                         "-o", tmp_path / "out", "--no-surface")
    finally:
        report.plot_roc_curve = original
    assert code == 0, capsys.readouterr().err
    assert titles == ["ROC, tumor voxels, 1 case(s)"], titles
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["roc_pooled"]["n_cases"] == 1


def test_a_label_map_given_as_probabilities_is_refused(tmp_path, capsys):
    """A 0/1/2 prediction given to --prob was scored as probabilities 0, 1/255, 2/255 with exit 0."""
    phantom = _case(tmp_path / "ref", "a.nii.gz")
    _case(tmp_path / "pred", "a.nii.gz")
    _case(tmp_path / "prob", "a_seg.nii.gz")
    code = _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "--prob", tmp_path / "prob",
                     "-o", tmp_path / "out", "--no-surface")
    err = capsys.readouterr().err
    assert code == 2 and "holds only the integers 0, 1 and 2" in err and "label map" in err, err
    assert not (tmp_path / "out").exists()
    from LiverTumorSegLib.io.formats import PROBABILITY_255_CONTENT
    from LiverTumorSegLib.io.probability import probability_scores

    tagged = probability_scores(phantom.labels, "p.nii.gz", PROBABILITY_255_CONTENT)  # segment's own map: 2/255
    assert float(tagged.max()) == pytest.approx(2 / 255)
    assert float(probability_scores(np.array([0, 1, 3], np.uint8), "p").max()) == pytest.approx(3 / 255)


def test_nrrd_detached_headers_are_cases_in_folders(tmp_path, capsys):
    """A .nhdr label map was read as a single file but left out of a folder ('No case name matches')."""
    import SimpleITK as sitk

    for name in ("a", "b"):
        phantom = _case(tmp_path / "ref", f"{name}.nii.gz")
        (tmp_path / "pred").mkdir(exist_ok=True)
        image = sitk.GetImageFromArray(phantom.labels)
        sitk.WriteImage(image, str(tmp_path / "ref" / "tmp.nrrd"))  # the reference's grid, via a NIfTI round trip
        reference = sitk.ReadImage(str(tmp_path / "ref" / f"{name}.nii.gz"))
        image.CopyInformation(reference)
        sitk.WriteImage(image, str(tmp_path / "pred" / f"{name}.nhdr"))
        (tmp_path / "ref" / "tmp.nrrd").unlink()
    assert sorted(p.suffix for p in (tmp_path / "pred").iterdir()) == [".nhdr", ".nhdr", ".raw", ".raw"]
    code = _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / "out",
                     "--no-surface", "--no-plots")
    assert code == 0, capsys.readouterr().err
    rows = list(csv.DictReader(open(tmp_path / "out" / "cases.csv", newline="")))
    assert [(r["case"], float(r["dice_liver"])) for r in rows] == [("a", 1.0), ("b", 1.0)]


def test_an_interrupted_evaluate_leaves_another_runs_results_in_a_folder_both_made(tmp_path, monkeypatch):
    """Two runs into results/m1 and results/m2 while results/ did not exist: m1's Ctrl-C while writing removed the
    whole of results/, m2's finished cases.csv and summary.json with it (the folder 'made by this run')."""
    from LiverTumorSegLib.metrics import report

    _case(tmp_path / "pred", "c1.nii.gz")
    _case(tmp_path / "ref", "c1.nii.gz")
    results = tmp_path / "results"

    def other_run_finishes_then_ctrl_c(*args, **kwargs):
        (results / "m2").mkdir(parents=True, exist_ok=True)
        (results / "m2" / "summary.json").write_text("{}", encoding="utf-8")  # the other run, finished meanwhile
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "write_json", other_run_finishes_then_ctrl_c)
    command = ["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "-o", str(results / "m1"),
               "--no-surface"]
    assert main(command) == 130
    assert (results / "m2" / "summary.json").is_file()
    assert not (results / "m1").exists()  # this run's own folder, empty, is still removed
    shutil.rmtree(results / "m2")
    monkeypatch.setattr(report, "write_json", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert main(command) == 130
    assert results.is_dir() and not list(results.iterdir())  # results/ existed before this run: kept, empty


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGKILL"), reason="SIGKILL is POSIX")
def test_a_later_run_removes_the_staging_folder_of_a_killed_run_but_not_a_running_ones(tmp_path, capsys):
    """A SIGKILLed evaluate (the out-of-memory killer) left OUT/.evaluate.<random>.tmp/ with its results for good:
    the name did not say whose it was. It names its process now, and a later run into OUT removes one whose
    process has ended (untouched for 10 minutes: OUT may be shared with another computer); a running one's stays."""
    import os
    import subprocess
    import sys
    import time

    from LiverTumorSegLib import fileutil

    _case(tmp_path / "ref", "a.nii.gz")
    _case(tmp_path / "pred", "a.nii.gz")
    out = tmp_path / "out"
    args = ["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "-o", str(out),
            "--no-surface"]
    killed_while_moving = ("import os, signal, sys\n"
                           "from LiverTumorSegLib import cli, fileutil\n"
                           "fileutil.move_all_or_none = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
                           "sys.exit(cli.main(sys.argv[1:]))\n")
    repo = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
    run = subprocess.Popen([sys.executable, "-c", killed_while_moving] + args, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    _, err = run.communicate(timeout=300)
    assert run.returncode == -9, err
    left = [p for p in out.iterdir() if p.name.startswith(".evaluate.")]
    assert len(left) == 1 and left[0].is_dir() and left[0].name.startswith(f".evaluate.{run.pid}-")
    assert (left[0] / "cases.csv").is_file()
    running = out / f".evaluate.{os.getpid()}-k3j4h5g6.tmp"  # a run still going (this process: alive; the
    # parent is pid 0 when pytest is a container's first process, which names no process)
    running.mkdir()
    old = time.time() - 2 * fileutil.STALE_TEMPORARY_SECONDS
    for folder in (left[0], running):
        os.utime(folder, (old, old))
    assert main(args) == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted([running.name, "cases.csv", "plots", "summary.json"])


def test_results_a_killed_overwrite_run_left_hidden_are_put_back_before_they_are_judged(tmp_path, capsys, caplog):
    """A SIGKILL while evaluate --overwrite moved its results in left the earlier cases.csv and summary.json only
    as hidden '.cases.csv.<pid>.old' files; the next run without --overwrite then wrote its own beside them."""

    _case(tmp_path / "ref", "a.nii.gz")
    _case(tmp_path / "pred", "a.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    dead = ended_process_id()
    for name in ("cases.csv", "summary.json"):
        (out / f".{name}.{dead}.old").write_text(f"earlier {name}", encoding="utf-8")
    assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", out, "--no-surface") == 2
    err = capsys.readouterr().err + caplog.text  # logging goes to stderr in a real run, to caplog under pytest
    assert "cases.csv' was restored" in err and "already exists; pass --overwrite" in err
    assert sorted(p.name for p in out.iterdir()) == ["cases.csv", "summary.json"]
    assert (out / "cases.csv").read_text(encoding="utf-8") == "earlier cases.csv"


def test_the_lits_detection_line_names_the_connectivity_it_labelled_lesions_with(tmp_path, capsys):
    """The line "lesions as the LiTS script counts them" came at the default 26-connectivity, where the LiTS script
    labels lesions 6-connected: two reference lesions touching along an edge, of which the prediction finds one, are
    one lesion missed (recall 0.0) at 26 and one of two found (recall 0.5) at 6. The line now says which it used."""
    from LiverTumorSegLib.volume import ImageGeometry

    ref = np.zeros((6, 20, 20), np.uint8)
    ref[1:5, 2:18, 2:18] = 1
    ref[2:4, 4:8, 4:8] = 2
    ref[2:4, 8:12, 8:12] = 2                      # touches the first only along an edge: (z, 7, 7) and (z, 8, 8)
    pred = ref.copy()
    pred[2:4, 8:12, 8:12] = 1                     # finds the first only
    write_evaluate_folders(tmp_path, {"a": ref}, ImageGeometry(spacing=(1.0, 1.0, 1.0)), predictions={"a": pred})
    printed = {}
    for connectivity in (None, 6):
        args = ["--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / f"out{connectivity}",
                "--no-plots", "--no-surface", "--no-progress"] + ([] if connectivity is None else
                                                                   ["--connectivity", connectivity])
        assert _evaluate(*args) == 0
        printed[connectivity] = [line.strip() for line in capsys.readouterr().out.splitlines()
                                 if "lesions" in line and "recall" in line and "recall by size" not in line]
    assert printed[None] == [
        "lesions (26-connected): 0/1 detected, 1 false positive(s); precision 0.0000, recall 0.0000 (pooled over "
        "cases)",
        "lesions as the LiTS script counts them (one hit per detected group; 26-connected lesions; the LiTS script "
        "used 6: --connectivity 6): precision 0.0000, recall 0.0000"]
    assert printed[6] == [
        "lesions (6-connected): 1/2 detected, 0 false positive(s); precision 1.0000, recall 0.5000 (pooled over cases)",
        "lesions as the LiTS script counts them (one hit per detected group; 6-connected lesions, as the LiTS script "
        "labels them): precision 1.0000, recall 0.5000"]


def test_summary_and_printout_give_detection_pooled_not_a_mean_of_per_case_recalls(tmp_path, capsys):
    """The reviewer's example through the command: three tumor-free cases and one whose two lesions are missed.
    summary.json's metrics held lesion_recall with mean 0.75 (1.0 for each tumor-free case); detection is now given
    only pooled (recall 0.0), and cases.csv keeps the per-case values."""
    import json

    from LiverTumorSegLib.volume import ImageGeometry

    free = np.zeros((8, 30, 30), np.uint8)
    free[1:7, 3:27, 3:27] = 1
    with_tumor = free.copy()
    with_tumor[3:5, 10:14, 10:14] = 2
    with_tumor[3:5, 20:24, 20:24] = 2
    cases = {**{f"free{i}": free for i in range(3)}, "missed": with_tumor}
    write_evaluate_folders(tmp_path, cases, ImageGeometry(spacing=(0.7, 0.7, 5.0)),
                           predictions={name: free for name in cases})
    assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / "out", "--no-plots",
                     "--no-surface", "--no-progress") == 0
    printed = capsys.readouterr().out
    assert "0/2 detected, 0 false positive(s); precision n/a, recall 0.0000 (pooled over cases)" in printed
    assert "recall 0.75" not in printed               # (tumor Dice per case is 0.7500: a per-case metric in LiTS too)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert not {"lesion_recall", "lesion_precision"} & set(summary["metrics"])
    assert summary["lesion_detection"]["recall"] == 0.0 and summary["lesion_detection"]["precision"] is None
    rows = list(csv.DictReader(open(tmp_path / "out" / "cases.csv", newline="")))
    assert [float(r["lesion_recall"]) for r in rows] == [1.0, 1.0, 1.0, 0.0]


def test_tumor_metrics_are_printed_per_case_whole_mask_and_per_detected_lesion_each_labelled(tmp_path, capsys):
    """Lesion A found exactly, lesion B (35 mm away) missed: the whole-mask tumor ASSD is 7.36 mm, LiTS's per-lesion
    average over the one detected lesion 0.0 mm; the printout gives both, each saying what it is (it printed
    neither)."""
    from LiverTumorSegLib.volume import ImageGeometry

    ref, spacing_zyx = two_lesion_maps()
    pred = ref.copy()
    pred[8:12, 70:76, 70:76] = 1
    write_evaluate_folders(tmp_path, {"a": ref}, ImageGeometry(spacing=spacing_zyx[::-1]), predictions={"a": pred})
    assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / "out", "--no-plots",
                     "--no-progress") == 0
    lines = [line.strip() for line in capsys.readouterr().out.splitlines() if line.strip().startswith("tumor per")]
    assert lines == [
        "tumor per case, whole tumor mask (not LiTS's per-lesion average), means over the cases where each is "
        "defined: VOE 0.2647 (n=1), RVD -0.2647 (n=1), ASSD 7.3555 mm (n=1), HD 45.5377 mm (n=1), RMSD 17.8094 mm "
        "(n=1)",  # spacing as NIfTI stores it (float32)
        "tumor per detected lesion, averaged over all 1 detected lesion(s) of all cases as LiTS averages them (RVD "
        "(pred - ref) / ref; 6-connected surfaces, LiTS's are 18-connected): Dice 1.0000, VOE 0.0000, RVD 0.0000, "
        "ASSD 0.0000 mm, HD (LiTS MSD) 0.0000 mm, RMSD 0.0000 mm"]


def test_each_whole_mask_tumor_mean_gives_the_number_of_cases_it_is_taken_over(tmp_path, capsys):
    """One tumor found exactly, one tumor-free case, one tumor missed and one false tumor: the line printed
    'VOE 0.5000, RVD -0.3333, ASSD 0.0000 mm, HD 0.0000 mm', means over 4, 3 and 1 case(s) without saying so (a
    model that missed one tumor and invented another read as tumor HD 0 mm). Each mean now gives its n."""
    from LiverTumorSegLib.volume import ImageGeometry

    ref, spacing_zyx = two_lesion_maps()
    ref[8:12, 70:76, 70:76] = 1  # lesion A only
    tumor_free = np.where(ref == 2, 1, ref).astype(np.uint8)
    false_tumor = ref.copy()
    false_tumor[8:12, 20:30, 20:30] = 1
    false_tumor[4:6, 50:56, 50:56] = 2
    references = {"a_found": ref, "b_none": tumor_free, "c_missed": ref, "d_false": tumor_free}
    predictions = {"a_found": ref, "b_none": tumor_free, "c_missed": tumor_free, "d_false": false_tumor}
    write_evaluate_folders(tmp_path, references, ImageGeometry(spacing=spacing_zyx[::-1]), predictions=predictions)
    assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / "out", "--no-plots",
                     "--no-progress") == 0
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if "whole tumor mask" in ln]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["metrics"]
    counts = {column: summary[column]["n"] for column in ("voe_tumor", "rvd_tumor", "assd_tumor_mm", "hd_tumor_mm")}
    assert counts["assd_tumor_mm"] == counts["hd_tumor_mm"] == 1  # both masks hold tumor in case a only
    assert counts["voe_tumor"] > 1 and counts["rvd_tumor"] > 1
    assert "ASSD 0.0000 mm (n=1)" in line and f"VOE {summary['voe_tumor']['mean']:.4f} (n={counts['voe_tumor']})" in line
    assert f"RVD {summary['rvd_tumor']['mean']:.4f} (n={counts['rvd_tumor']})" in line


def test_the_per_detected_lesion_line_names_surfaces_only_when_measured_and_is_left_out_without_a_detection(
        tmp_path, capsys):
    """With --no-surface the 'tumor per detected lesion' line still said '6-connected surfaces, LiTS's are
    18-connected' beside no surface metric; with no lesion detected it printed 'averaged over all 0 detected
    lesion(s) ...: Dice n/a, VOE n/a, RVD n/a'."""
    from LiverTumorSegLib.volume import ImageGeometry

    ref, spacing_zyx = two_lesion_maps()
    found_a = ref.copy()
    found_a[8:12, 70:76, 70:76] = 1
    write_evaluate_folders(tmp_path, {"a": ref}, ImageGeometry(spacing=spacing_zyx[::-1]),
                           predictions={"a": found_a})
    missed_all = tmp_path / "missed"
    missed_all.mkdir()
    write_evaluate_folders(missed_all, {"a": ref}, ImageGeometry(spacing=spacing_zyx[::-1]),
                           predictions={"a": np.where(ref == 2, 1, ref).astype(np.uint8)})
    printed = {}
    for name, root in (("found", tmp_path), ("missed", missed_all)):
        assert _evaluate("--pred", root / "pred", "--ref", root / "ref", "-o", root / "out", "--no-plots",
                         "--no-progress", "--no-surface") == 0
        printed[name] = [line.strip() for line in capsys.readouterr().out.splitlines()
                         if line.strip().startswith("tumor per detected lesion")]
    assert printed["found"] == [
        "tumor per detected lesion, averaged over all 1 detected lesion(s) of all cases as LiTS averages them (RVD "
        "(pred - ref) / ref): Dice 1.0000, VOE 0.0000, RVD 0.0000"]
    assert printed["missed"] == []


def test_evaluate_does_not_replace_a_result_that_appeared_in_its_folder_during_the_run(tmp_path, capsys, monkeypatch):
    """Without --overwrite, evaluate checked OUT before its run and then moved its results in with replacement: a
    summary.json another run (or the user) wrote into OUT meanwhile was replaced. It is kept now, the run says
    which file appeared, and none of this run's files are left in OUT (all or none)."""
    from LiverTumorSegLib.metrics import report

    _case(tmp_path / "pred", "c1.nii.gz")
    _case(tmp_path / "ref", "c1.nii.gz")
    out = tmp_path / "out"
    write_json = report.write_json

    def another_run_writes_its_summary(*args, **kwargs):
        result = write_json(*args, **kwargs)  # this run's summary, in its staging folder
        (out / "summary.json").write_text('{"theirs": 1}', encoding="utf-8")
        return result

    monkeypatch.setattr(report, "write_json", another_run_writes_its_summary)
    command = ["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "-o", str(out),
               "--no-surface"]
    assert main(command) != 0
    err = capsys.readouterr().err
    assert "summary.json' appeared while writing; not overwriting it" in err, err
    assert (out / "summary.json").read_text(encoding="utf-8") == '{"theirs": 1}'
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]  # no cases.csv, plots or staging folder left
    monkeypatch.setattr(report, "write_json", write_json)
    assert main(command + ["--overwrite"]) == 0  # asked for: replaced
    assert '"theirs"' not in (out / "summary.json").read_text(encoding="utf-8")
    assert (out / "cases.csv").is_file()


def test_a_misspelt_rank_metric_is_refused_with_the_metrics_there_are(tmp_path, capsys):
    """'--rank-metric bogus' drew no overlays with a warning and exit 0 after the whole evaluation."""
    _case(tmp_path / "ref", "a.nii.gz")
    _case(tmp_path / "pred", "a.nii.gz")
    out = tmp_path / "out"
    code = _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", out, "--no-surface",
                     "--rank-metric", "dice_livr")
    err = capsys.readouterr().err
    assert code == 2 and "--rank-metric dice_livr is not a column of this evaluation's cases.csv" in err
    assert "dice_liver" in err and "Traceback" not in err
    assert not out.exists() or list(out.iterdir()) == []
    assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", out, "--no-surface",
                     "--rank-metric", "dice_tumor") == 0


def test_an_all_nan_images_ct_is_said_and_the_overlay_drawn_without_it(tmp_path, capsys, caplog):
    """An all-NaN CT given with --images drew a blank overlay, without a word, exit 0."""
    phantom = _case(tmp_path / "ref", "a.nii.gz")
    _case(tmp_path / "pred", "a.nii.gz")
    images = tmp_path / "img"
    images.mkdir()
    nan_ct = CTVolume(np.full(phantom.ct.array.shape, np.nan, np.float32), phantom.ct.geometry)
    write_volume(images / "a.nii.gz", nan_ct)
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        code = _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "--images", images, "-o", out,
                         "--no-surface")
    assert code == 0
    assert f"of case 'a' has {nan_ct.array.size} NaN/Inf voxels; overlay without CT" in caplog.text
    assert any(p.name.startswith("overlay") or "best" in p.name for p in out.rglob("*.png"))


def test_a_label_map_given_as_the_images_ct_is_said_and_the_overlay_drawn_without_it(tmp_path, caplog):
    """--images naming the label maps' folder (the reference's) drew a black overlay without a word, exit 0."""
    _case(tmp_path / "ref", "a.nii.gz")
    _case(tmp_path / "pred", "a.nii.gz")
    with caplog.at_level("WARNING"):
        code = _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "--images", tmp_path / "ref",
                         "-o", tmp_path / "out", "--no-surface")
    assert code == 0
    assert "a.nii.gz', given with --images as the CT of case 'a', looks like a label map, not a CT (only 3 " \
           "distinct whole values (0, 1, 2)" in caplog.text
    assert "overlay without CT: give the CTs' folder" in caplog.text
    assert list((tmp_path / "out").rglob("*.png"))
    caplog.clear()
    images = tmp_path / "img"                       # the CT itself: no such warning
    images.mkdir()
    write_volume(images / "a.nii.gz", make_phantom(shape_zyx=(8, 24, 24), seed=0).ct)
    with caplog.at_level("WARNING"):
        assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "--images", images,
                         "-o", tmp_path / "out2", "--no-surface") == 0
    assert "looks like a label map" not in caplog.text


def _two_tumor_free_cases(tmp_path: Path):
    """ref/ and pred/ holding cases a and b (8 x 24 x 24 phantoms without lesions, prediction = reference); returns
    case a's phantom."""
    phantom = None
    for name in ("a.nii.gz", "b.nii.gz"):
        made = _case(tmp_path / "ref", name, tumor=False)
        _case(tmp_path / "pred", name, tumor=False)
        phantom = phantom or made
    return phantom


def test_a_users_plots_file_or_figure_in_the_output_folder_is_kept_and_nothing_written(tmp_path, capsys):
    """OUT/plots as a file, or a plots folder holding a figure, without --overwrite: refused before any result is
    written, the user's file left as it was."""
    _two_tumor_free_cases(tmp_path)
    (tmp_path / "o1").mkdir()
    (tmp_path / "o1" / "plots").write_text("my notes", encoding="utf-8")
    (tmp_path / "o2" / "plots").mkdir(parents=True)
    (tmp_path / "o2" / "plots" / "fig.png").write_bytes(b"mine")
    for out, says in (("o1", "plots' is a file, but evaluate writes its plots into a folder of that name; move it"),
                      ("o2", "plots' already holds plots; pass --overwrite or choose another -o folder")):
        code = _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / out, "--no-surface")
        assert code == 2 and says in capsys.readouterr().err
        assert not (tmp_path / out / "cases.csv").exists() and not (tmp_path / out / "summary.json").exists()
    assert (tmp_path / "o1" / "plots").read_text(encoding="utf-8") == "my notes"
    assert (tmp_path / "o2" / "plots" / "fig.png").read_bytes() == b"mine"


def test_one_ct_file_for_two_cases_or_a_missing_prob_folder_is_refused_and_a_ct_off_the_grid_is_said(
        tmp_path, capsys, caplog):
    """--images naming one CT file for two cases says to give a folder; a --prob path that is not there says so;
    a case's CT of another size draws its overlay without it, with a warning; a --rank-metric no case has a value
    of draws no overlay, with a warning (exit 0 for both)."""
    phantom = _two_tumor_free_cases(tmp_path)
    write_volume(tmp_path / "ct.nii.gz", phantom.ct)
    base = ["--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "--no-surface"]
    assert _evaluate(*base, "-o", tmp_path / "o1", "--images", tmp_path / "ct.nii.gz") == 2
    assert "ct.nii.gz' is one file but 2 cases are evaluated; give a folder" in capsys.readouterr().err
    assert _evaluate(*base, "-o", tmp_path / "o2", "--prob", tmp_path / "nope") == 2
    assert "--prob '" + str(tmp_path / "nope") + "' does not exist; check the path" in capsys.readouterr().err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()
    images = tmp_path / "img"
    images.mkdir()
    wider = make_phantom(shape_zyx=(8, 24, 26), seed=0)
    write_volume(images / "a.nii.gz", wider.ct)
    write_volume(images / "b.nii.gz", phantom.ct)
    with caplog.at_level("WARNING"):
        assert _evaluate(*base, "-o", tmp_path / "o3", "--images", images) == 0
        assert "a.nii.gz' is not on the label grid of case 'a'; overlay without CT" in caplog.text
        assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / "o4",
                         "--rank-metric", "hd95_tumor_mm") == 0  # surfaces measured: the column is there, empty
    assert "no case has a value for --rank-metric hd95_tumor_mm; no overlays drawn" in caplog.text
    assert not list((tmp_path / "o4").rglob("overlay*.png"))


def test_one_file_name_in_per_case_folders_is_told_apart_from_two_files_of_one_case(tmp_path):
    """TotalSegmentator writes CASE/liver.nii.gz; such a --pred folder was refused as 'case liver' with the advice
    to keep one of the files in this folder, which would have dropped all other cases."""
    from LiverTumorSegLib.commands.evaluate import list_cases
    from LiverTumorSegLib.errors import InputError

    phantom = make_phantom(shape_zyx=(3, 8, 8), spacing_xyz=(2.0, 2.0, 3.0), seed=0)
    for case in ("case1", "case2"):
        (tmp_path / "ts" / case).mkdir(parents=True)
        write_label_map(tmp_path / "ts" / case / "liver.nii.gz", phantom.labels, phantom.ct.geometry)
    with pytest.raises(InputError, match=r"holds 'liver.nii.gz' in 2 subfolders \('case1/liver.nii.gz', "
                                         r"'case2/liver.nii.gz'\), and case names come from file names, not from "
                                         r"folders .*under its case's name") as err:
        list_cases(tmp_path / "ts", "--pred")
    assert "keep one of them" not in str(err.value)
    (tmp_path / "one").mkdir()
    write_label_map(tmp_path / "one" / "case1_seg.nii.gz", phantom.labels, phantom.ct.geometry)
    write_label_map(tmp_path / "one" / "case1_label.nii.gz", phantom.labels, phantom.ct.geometry)
    with pytest.raises(InputError, match="holds 2 files for case 'case1'.*keep one of them"):
        list_cases(tmp_path / "one", "--pred")


def test_an_msd_data_set_folder_given_as_ref_or_images_names_the_subfolder_to_give(tmp_path):
    """--ref Task03_Liver (imagesTr/liver_0.nii.gz beside labelsTr/liver_0.nii.gz) was told to copy the files into
    one folder under their case names, where the answer is --ref Task03_Liver/labelsTr."""
    from LiverTumorSegLib.commands.evaluate import list_cases
    from LiverTumorSegLib.errors import InputError

    data_set = tmp_path / "msd" / "Task03_Liver"
    for sub in ("imagesTr", "labelsTr"):
        (data_set / sub).mkdir(parents=True)
        for n in (0, 1):
            (data_set / sub / f"liver_{n}.nii.gz").write_bytes(b"")  # list_cases reads names only
    for given, what, wanted in ((data_set, "--ref", "labelsTr"), (tmp_path / "msd", "--pred", "labelsTr"),
                                (data_set, "--images", "imagesTr")):
        with pytest.raises(InputError, match=rf"{what} folder '{given}' (is|holds) the MSD / nnU-Net data set "
                                             rf"'{data_set}'.*give its {wanted}/ folder '{data_set / wanted}' as "
                                             rf"{what}") as err:
            list_cases(given, what)
        assert "copy or link" not in str(err.value)
    assert list(list_cases(data_set / "labelsTr", "--ref")) == ["liver_0", "liver_1"]


def test_an_nnunet_data_set_folder_given_as_ref_names_labelstr_not_its_cts(tmp_path):
    """--ref Dataset003_Liver (nnU-Net: imagesTr/liver_000_0000.nii.gz, labelsTr/liver_000.nii.gz, imagesTs/
    liver_002_0000.nii.gz) paired labelsTr's files by their names' role but took imagesTs/'s CT for case
    liver_002's reference label map: evaluate scored the other cases, then failed on the CT's HU values (or warned
    of a reference without prediction). It is refused before any work, naming labelsTr/."""
    from LiverTumorSegLib.commands.evaluate import list_cases
    from LiverTumorSegLib.errors import InputError

    data_set = tmp_path / "nnUNet_raw" / "Dataset003_Liver"
    for sub, name in (("imagesTr", "liver_000_0000"), ("labelsTr", "liver_000"), ("imagesTs", "liver_002_0000")):
        (data_set / sub).mkdir(parents=True)
        (data_set / sub / f"{name}.nii.gz").write_bytes(b"")  # list_cases reads names only
    for given, what in ((data_set, "--ref"), (tmp_path / "nnUNet_raw", "--ref"), (data_set, "--pred")):
        with pytest.raises(InputError, match=rf"{what} folder '{given}' (is|holds) the MSD / nnU-Net data set "
                                             rf"'{data_set}', whose imagesT[rs]/ holds CTs .*give its labelsTr/ "
                                             rf"folder '{data_set / 'labelsTr'}' as {what}"):
            list_cases(given, what)
    assert list(list_cases(data_set / "labelsTr", "--ref")) == ["liver_000"]
    assert list(list_cases(data_set, "--images")) == ["liver_000", "liver_002"]  # CTs by their names' role


def _figure_of_overlay(monkeypatch):
    """Keeps the figures evaluate's plots would save (``{file name: figure}``), closed by the caller's end."""
    from LiverTumorSegLib.metrics import report

    figures = {}

    def keep_figure(fig, path, overwrite):
        figures[Path(path).name] = fig
        return Path(path)

    monkeypatch.setattr(report, "_save_figure", keep_figure)
    return figures


def test_overlay_marks_the_sides_and_a_lesion_on_the_patients_left_lies_beside_the_l(tmp_path, monkeypatch):
    """The overlay is radiological (image left = patient right) but said nowhere on it: a reader could not tell a
    lesion in the left lobe from one in the right. A NIfTI whose identity affine runs i toward the patient's right
    (RAS), with the tumor at low i (patient's LEFT): drawn on the image's right half, where the 'L' is."""
    import nibabel as nib

    figures = _figure_of_overlay(monkeypatch)
    ref = np.zeros((20, 20, 4), np.uint8)  # (i, j, k)
    ref[2:18, 2:18, 1:3] = 1
    ref[3:7, 8:12, 1:3] = 2
    for folder in ("ref", "pred"):
        (tmp_path / folder).mkdir()
        nib.save(nib.Nifti1Image(ref, np.eye(4)), str(tmp_path / folder / "a.nii.gz"))
    assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / "out",
                     "--no-surface", "--no-progress") == 0
    fig = figures["overlay_best_a.png"]
    try:
        ax = fig.axes[0]
        letters = {t.get_text(): t.get_position() for t in ax.texts}
        assert set(letters) == {"A", "P", "R", "L"}
        assert letters["R"][0] < 0.5 < letters["L"][0] and letters["P"][1] < 0.5 < letters["A"][1]
        tumor = [c for c in ax.collections if np.allclose(c.get_edgecolor()[0][:3], (1, 0, 0))]  # predicted
        vertices = np.concatenate([p.vertices for c in tumor for p in c.get_paths()])
        in_axes = ax.transAxes.inverted().transform(ax.transData.transform(vertices))
        assert in_axes[:, 0].min() > 0.5  # the patient's left: the image's right, the 'L' side
    finally:
        import matplotlib.pyplot as plt
        plt.close("all")


def test_overlay_of_an_unknown_orientation_has_no_side_letters(tmp_path, monkeypatch):
    from LiverTumorSegLib.metrics import report

    figures = _figure_of_overlay(monkeypatch)
    labels = np.zeros((3, 10, 10), np.uint8)
    labels[1, 2:8, 2:8] = 1
    report.plot_case_overlay(labels, labels, tmp_path / "o.png", orientation_known=False)
    assert [t.get_text() for t in figures["o.png"].axes[0].texts] == []


def test_evaluate_draws_no_side_letters_on_a_nifti_without_orientation(tmp_path, monkeypatch):
    """evaluate marked R/L/A/P on the overlay of a NIfTI with no sform or qform, whose sides are only a guess
    (helper-37's audit); the letters appear where the header gives an orientation (test above)."""
    import nibabel as nib

    figures = _figure_of_overlay(monkeypatch)
    ref = np.zeros((20, 20, 4), np.uint8)
    ref[2:18, 2:18, 1:3] = 1
    for folder in ("ref", "pred"):
        (tmp_path / folder).mkdir()
        image = nib.Nifti1Image(ref, np.eye(4))
        image.set_sform(None, code=0)
        image.set_qform(None, code=0)
        nib.save(image, str(tmp_path / folder / "a.nii.gz"))
    assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / "out",
                     "--no-surface", "--no-progress") == 0
    try:
        assert [t.get_text() for t in figures["overlay_best_a.png"].axes[0].texts] == []
    finally:
        import matplotlib.pyplot as plt
        plt.close("all")


def test_a_box_plot_leaving_out_undefined_cases_says_how_many_it_holds(tmp_path, monkeypatch):
    """The figure's title said '(3 cases)' over a hd95_tumor_mm box of 2 dots (the tumor-free case's distance is
    NaN), read as three cases' spread."""
    from LiverTumorSegLib.metrics import report

    figures = _figure_of_overlay(monkeypatch)
    rows = [{"case": "a", "dice_liver": 0.9, "hd95_tumor_mm": 3.0}, {"case": "b", "dice_liver": 0.8,
            "hd95_tumor_mm": float("nan")}, {"case": "c", "dice_liver": 0.7, "hd95_tumor_mm": 5.0}]
    report.plot_metric_boxplots(rows, tmp_path / "b.png", metrics=["dice_liver", "hd95_tumor_mm"])
    titles = [ax.get_title() for ax in figures["b.png"].axes]
    assert "n = 2 of 3 cases" in titles[1] and "n =" not in titles[0]
    assert figures["b.png"]._suptitle.get_text() == "Per-case metrics (3 cases)"


def test_evaluate_says_why_it_draws_one_overlay_when_every_case_ties(tmp_path, caplog):
    """Every case with liver Dice 1.0: best and worst were one case, and only 'best' was drawn without a word
    (helper-37's audit)."""
    import logging

    phantom = make_phantom((6, 24, 24), (2.0, 2.0, 4.0), lesions=[], noise_hu=0.0)
    for folder in ("ref", "pred"):
        (tmp_path / folder).mkdir()
        for case in ("a", "b"):
            write_label_map(tmp_path / folder / f"{case}.nii.gz", phantom.labels, phantom.ct.geometry)
    with caplog.at_level(logging.WARNING):
        assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / "out",
                         "--no-surface", "--no-progress") == 0
    assert "all 2 cases with a value have the same --rank-metric dice_liver; one overlay drawn (case 'a')" in caplog.text
    assert sorted(p.name for p in (tmp_path / "out").rglob("overlay_*.png")) == ["overlay_best_a.png"]


@pytest.mark.parametrize("option", ["--pred", "--ref"])
def test_an_output_folder_that_is_an_input_folder_is_refused(tmp_path, capsys, option):
    """-o PRED wrote cases.csv, summary.json and plots/ among the label maps (segment refuses its input folder as
    its output folder)."""
    _case(tmp_path / "pred", "case1.nii.gz")
    _case(tmp_path / "ref", "case1.nii.gz", seed=1)
    out = tmp_path / option.lstrip("-")
    before = sorted(p.name for p in out.iterdir())
    assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", out, "--no-surface") == 2
    err = capsys.readouterr().err
    assert f"is the {option} folder" in err and err.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == before


@pytest.mark.skipif(os.name != "posix", reason="folders are locked with flock (POSIX)")
def test_two_runs_into_one_output_folder_place_their_results_one_after_the_other(tmp_path, capsys, monkeypatch):
    """Two `evaluate --overwrite` runs into one OUT_DIR at once interleaved their moves: one run's rollback met
    the other's set-aside files ('internal error: FileNotFoundError: ... .cases.csv.<pid>.old'). Each run now
    places its results with OUT_DIR locked (as segment places its outputs), so the other waits."""
    import fcntl

    from LiverTumorSegLib import fileutil

    _case(tmp_path / "ref", "a.nii.gz")
    _case(tmp_path / "pred", "a.nii.gz", seed=1)
    out = tmp_path / "out"
    locked_while_moving = []
    real_move_all_or_none = fileutil.move_all_or_none

    def move_all_or_none(*args, **kwargs):
        handle = os.open(str(out), os.O_RDONLY)
        try:  # another run's lock on OUT_DIR (this one's, here) makes it wait
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked_while_moving.append(False)
        except BlockingIOError:
            locked_while_moving.append(True)
        finally:
            os.close(handle)
        return real_move_all_or_none(*args, **kwargs)

    monkeypatch.setattr(fileutil, "move_all_or_none", move_all_or_none)
    argv = ["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "-o", str(out),
            "--no-surface", "--no-plots"]
    assert main(argv) == 0, capsys.readouterr().err
    assert locked_while_moving == [True]


def test_an_output_folder_removed_while_evaluate_runs_is_said_so(tmp_path, capsys, monkeypatch):
    """OUT_DIR removed (or moved) while evaluate ran: the error named its hidden staging folder and said to
    create it ("Output folder 'OUT/.evaluate.<pid>-...tmp/plots' does not exist; create it first")."""
    from LiverTumorSegLib.metrics import report

    _case(tmp_path / "ref", "a.nii.gz")
    _case(tmp_path / "pred", "a.nii.gz", seed=1)
    out = tmp_path / "out"
    real_write_json = report.write_json

    def removed_first(data, path, *args, **kwargs):
        shutil.rmtree(out)
        return real_write_json(data, path, *args, **kwargs)

    monkeypatch.setattr(report, "write_json", removed_first)
    code = main(["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "-o", str(out),
                 "--no-surface", "--no-plots"])
    err = capsys.readouterr().err
    assert code == 2 and f"The output folder '{out}'" in err and "was removed or moved while evaluate ran" in err
    assert ".evaluate." not in err.replace(".evaluate....tmp", "")


def test_a_long_named_overlay_a_killed_overwrite_run_left_hidden_is_put_back_with_the_table(tmp_path, capsys, caplog):
    """An overlay of a case named with 205+ characters is set aside under a cut name ending in a digest
    (fileutil.set_aside_name); the restore looked for plot names only as written, so a killed --overwrite run's
    earlier overlay stayed hidden while its cases.csv and summary.json were put back."""
    from LiverTumorSegLib import fileutil
    from LiverTumorSegLib.commands.evaluate import OVERLAY_PLOT_NAME

    case = "c" * 215
    _case(tmp_path / "ref", f"{case}.nii.gz")
    _case(tmp_path / "pred", f"{case}.nii.gz")
    out = tmp_path / "out"
    (out / "plots").mkdir(parents=True)
    dead = ended_process_id()
    for name in ("cases.csv", "summary.json"):
        (out / f".{name}.{dead}.old").write_text(f"earlier {name}", encoding="utf-8")
    overlay = OVERLAY_PLOT_NAME.format(tag="best", case=case)
    hidden = out / "plots" / f".{fileutil.set_aside_name(overlay, out / 'plots')}.{dead}.old"
    assert "~" in hidden.name  # the cut name
    hidden.write_bytes(b"earlier overlay")
    assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", out, "--no-surface") == 2
    err = capsys.readouterr().err + caplog.text
    assert "already exists; pass --overwrite" in err
    assert sorted(p.name for p in (out / "plots").iterdir()) == [overlay]
    assert (out / "plots" / overlay).read_bytes() == b"earlier overlay"
    assert (out / "cases.csv").read_text(encoding="utf-8") == "earlier cases.csv"


def test_references_named_with_a_tag_after_the_case_name_are_named_so(tmp_path, capsys, caplog):
    """A researcher's references carry a tag case names do not drop (case0_liver_tsv1, case1_gt beside the
    predictions case0, case1): evaluate said only that no case name matches (or listed them unmatched); it now says
    which names are another case's with a tag after it and to rename those files. They are not paired."""
    import logging

    for name in ("case0.nii.gz", "case1.nii.gz", "case2.nii.gz"):
        _case(tmp_path / "pred", name)
    for name in ("case0_liver_tsv1.nii.gz", "case1-gt.nii.gz"):
        _case(tmp_path / "ref", name)
    assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "No case name matches" in err
    assert "2 reference name(s) are another case's name with a tag after it ('case0' -> 'case0_liver_tsv1', " \
           "'case1' -> 'case1-gt')" in err and "rename (or link) each such file to its case's name, keeping its " \
                                              "extension (e.g. 'case0_liver_tsv1' as 'case0')" in err, err
    _case(tmp_path / "ref", "case2.nii.gz")
    with caplog.at_level(logging.WARNING):
        assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / "out2",
                         "--no-surface", "--no-plots") == 0
    assert "2 reference name(s) are another case's name with a tag after it" in capsys.readouterr().err + caplog.text


def test_cts_beside_the_label_maps_in_a_ref_folder_are_not_read_as_references(tmp_path, capsys, caplog):
    """A researcher's data folder holds each CT beside its label maps (case0.nii.gz, case0_liver_tsv1.nii.gz; the
    layout of the shared real cases): given as --ref, the CT, whose case name is the case's, was paired as the
    reference and the whole evaluation stopped ('Label map ... has values -1000 ...: is it the CT'). CTs (told by
    their first slice's air) are left out with a warning naming them; the tagged label map is named as such; a
    folder of CTs only is kept whole, so that the error says a CT was given."""
    import logging

    data = tmp_path / "data"
    phantom = _case(data, "case1_seg.nii.gz")
    write_volume(data / "case0.nii.gz", phantom.ct)
    write_volume(data / "case1.nii.gz", phantom.ct)
    write_label_map(data / "case0_liver_tsv1.nii.gz", phantom.labels, phantom.ct.geometry)
    for name in ("case0.nii.gz", "case1.nii.gz"):
        _case(tmp_path / "pred", name)
    with caplog.at_level(logging.WARNING):
        code = _evaluate("--pred", tmp_path / "pred", "--ref", data, "-o", tmp_path / "out", "--no-surface",
                         "--no-plots")
    text = capsys.readouterr().err + caplog.text
    assert code == 0, text
    assert "2 file(s) in --ref" in text and "hold CT values" in text and "(case0.nii.gz, case1.nii.gz)" in text
    assert "1 reference name(s) are another case's name with a tag after it ('case0' -> 'case0_liver_tsv1')" in text
    cases = list(csv.DictReader((tmp_path / "out" / "cases.csv").open(encoding="utf-8")))
    assert [row["case"] for row in cases] == ["case1"]
    cts = tmp_path / "cts"
    cts.mkdir()
    shutil.copy(data / "case1.nii.gz", cts)
    assert _evaluate("--pred", tmp_path / "pred", "--ref", cts, "-o", tmp_path / "out2", "--no-surface") == 2
    assert "is it the CT rather than the label map?" in capsys.readouterr().err


def test_no_matching_case_names_shows_what_each_side_s_names_became(tmp_path, capsys):
    """LiTS-named predictions (volume-0, from a batch of LiTS's volumes) against MSD labels (labelsTr/liver_0) were
    told only that no case name matches; the message now shows the case names each side's files became, so the
    mismatch of naming schemes shows, and says to rename or link the files."""
    _case(tmp_path / "pred", "volume-0.nii.gz")
    _case(tmp_path / "labelsTr", "liver_0.nii.gz")
    assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "labelsTr", "-o", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "No case name matches" in err and "'volume-0.nii.gz' -> '0'" in err
    assert "'liver_0.nii.gz' -> 'liver_0'" in err and "rename or link the files" in err


def test_the_liver_look_of_the_reference_check_reads_every_slice_without_a_whole_volume_temporary():
    """The tumor-without-liver check looked with `ref == 1`, a whole-volume temporary (260 MB for 512 x 512 x 1000);
    it now looks a few slices at a time: a liver voxel on the last slice, past every chunk, is still found."""
    from LiverTumorSegLib.commands.evaluate import _empty_reference_warnings, _holds_value

    ref = np.zeros((37, 8, 8), dtype=np.uint8)
    ref[3, 2, 2] = 2
    assert not _holds_value(ref, 1) and _holds_value(ref, 2)
    assert "but no liver (1)" in _empty_reference_warnings("c", ref)[0]
    ref[36, 7, 7] = 1  # the last slice, in the third chunk of 16
    assert _holds_value(ref, 1) and _empty_reference_warnings("c", ref) == []


def test_a_case_that_stops_a_folder_evaluation_is_named_with_its_place_and_what_to_do(tmp_path, capsys):
    """The third of four cases' prediction is on another grid: the run stops there, writes nothing, and says which
    case of how many stopped it and how to evaluate the others (it named only the file: in a folder of 100 cases
    nothing said that the cases before it had been scored in vain and those after it never read)."""
    from LiverTumorSegLib.volume import ImageGeometry

    ref = np.zeros((4, 12, 12), np.uint8)
    ref[1:3, 2:10, 2:10] = 1
    cases = {name: ref for name in ("a", "b", "c", "d")}
    write_evaluate_folders(tmp_path, cases, ImageGeometry(spacing=(1.0, 1.0, 2.0)))
    write_label_map(tmp_path / "pred" / "c.nii.gz", ref[:3], ImageGeometry(spacing=(1.0, 1.0, 2.0)), overwrite=True)
    assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / "out", "--no-plots",
                     "--no-progress") == 2
    err = capsys.readouterr().err
    assert "does not match its reference" in err  # the reader's own message comes first
    assert "(case 'c', 3 of 4: evaluate stops at the first case it cannot score and writes nothing" in err
    assert "to evaluate the other 3." in err
    assert not (tmp_path / "out").exists()


def test_a_single_case_evaluation_error_is_not_given_a_case_count(tmp_path, capsys):
    """Two files: the reader's message alone, without '1 of 1' and advice to move files out of folders."""
    from LiverTumorSegLib.volume import ImageGeometry

    ref = np.zeros((4, 12, 12), np.uint8)
    ref[1:3, 2:10, 2:10] = 1
    write_label_map(tmp_path / "ref.nii.gz", ref, ImageGeometry(spacing=(1.0, 1.0, 2.0)))
    write_label_map(tmp_path / "pred.nii.gz", ref[:3], ImageGeometry(spacing=(1.0, 1.0, 2.0)))
    assert _evaluate("--pred", tmp_path / "pred.nii.gz", "--ref", tmp_path / "ref.nii.gz", "-o",
                     tmp_path / "out", "--no-plots") == 2
    err = capsys.readouterr().err
    assert "does not match its reference" in err and "evaluate stops" not in err


def _another_file_system_than(path: Path):
    """A folder on another file system than ``path`` (/dev/shm on Linux), or None where there is none."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and os.stat(shm).st_dev != os.stat(path).st_dev:
        return shm
    return None


@pytest.mark.parametrize("kept_on", ["same file system", "another file system"])
def test_overwrite_writes_results_through_symbolic_links_as_segment_does(tmp_path, capsys, request, kept_on):
    """cases.csv and summary.json in -o that are symbolic links (to files kept elsewhere, on another file system
    too) were replaced by plain files with --overwrite, and the files they named kept the old results; segment,
    measure and followup write through a link (fileutil.through_link). Now evaluate does too, and refuses a link to
    nothing without --overwrite before the run, as they do."""
    for name, seed in (("a.nii.gz", 0), ("b.nii.gz", 1)):
        _case(tmp_path / "ref", name, seed)
        _case(tmp_path / "pred", name, seed)
    out = tmp_path / "out"
    out.mkdir()
    if kept_on == "same file system":
        kept = tmp_path / "kept"
        kept.mkdir()
    else:  # a rename into it fails ('Invalid cross-device link'): the results are copied beside the files first
        elsewhere = _another_file_system_than(tmp_path)
        if elsewhere is None:
            pytest.skip("no second file system here")
        import tempfile
        kept = Path(tempfile.mkdtemp(dir=str(elsewhere)))
        request.addfinalizer(lambda: shutil.rmtree(kept, ignore_errors=True))
    for name in ("cases.csv", "summary.json"):
        (kept / name).write_text("old\n")
        (out / name).symlink_to(kept / name)
    args = ["--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", out, "--no-surface"]
    assert _evaluate(*args) == 2  # an existing output, also through a link: refused without --overwrite
    assert _evaluate(*args, "--overwrite") == 0, capsys.readouterr().err
    for name in ("cases.csv", "summary.json"):
        assert (out / name).is_symlink() and os.readlink(out / name) == str(kept / name)
        assert (kept / name).read_text() != "old\n"
    assert json.loads((out / "summary.json").read_text())["n_cases"] == 2
    assert sorted(p.name for p in kept.iterdir()) == ["cases.csv", "summary.json"]  # no set-aside file left
    assert sorted(p.name for p in out.iterdir()) == ["cases.csv", "plots", "summary.json"]
    for name in ("cases.csv", "summary.json"):  # links to nothing: the user's, refused without --overwrite
        (kept / name).unlink()
    capsys.readouterr()
    assert _evaluate(*args) == 2
    assert "cases.csv' is a symbolic link (to the missing" in capsys.readouterr().err
    assert _evaluate(*args, "--overwrite") == 0  # with it, the links are replaced (as segment replaces one)
    assert (out / "summary.json").is_file() and not (out / "summary.json").is_symlink()


def test_a_folder_named_as_an_output_is_refused_before_the_run(tmp_path, capsys):
    """A folder OUT/cases.csv (the user's) was renamed by --overwrite to the hidden '.cases.csv.<mark>.old' and
    left there; it is refused before the run now, as segment refuses an output that is a folder."""
    _case(tmp_path / "ref", "a.nii.gz")
    _case(tmp_path / "pred", "a.nii.gz")
    (tmp_path / "out" / "cases.csv").mkdir(parents=True)
    (tmp_path / "out" / "cases.csv" / "mine.txt").write_text("the user's")
    code = _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / "out", "--no-surface",
                     "--overwrite")
    assert code == 2 and "cases.csv' is a folder" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cases.csv"]
    assert (tmp_path / "out" / "cases.csv" / "mine.txt").read_text() == "the user's"


@pytest.mark.parametrize("ext", [".nrrd", ".mha"])
def test_nrrd_and_metaimage_cts_beside_their_label_maps_in_a_ref_folder_are_screened_out_as_nifti_ones(
        tmp_path, capsys, caplog, ext):
    """The CT screen of a --ref folder read NIfTI only: a folder of .nrrd (or .mha) CTs beside .nrrd label maps paired
    each CT as the case's reference and the evaluation stopped (exit 2, 'is it the CT'). The CTs are now told by their
    first slice (read from the file's bytes) and left out with the NIfTI CTs' warning; a folder of label maps only
    is read as before, every file a case."""
    import logging

    data = tmp_path / "data"
    data.mkdir()
    phantom = _case(tmp_path / "pred", "case0.nii.gz")
    _case(tmp_path / "pred", "case1.nii.gz")
    labelled = {"case0": "case0_liver_tsv1", "case1": "case1_seg"}  # a tag case names keep, and one they drop
    for name in ("case0", "case1"):
        write_volume(data / f"{name}{ext}", phantom.ct)
        write_label_map(data / f"{labelled[name]}{ext}", phantom.labels, phantom.ct.geometry)
    with caplog.at_level(logging.WARNING):
        code = _evaluate("--pred", tmp_path / "pred", "--ref", data, "-o", tmp_path / "out", "--no-surface",
                         "--no-plots")
    text = capsys.readouterr().err + caplog.text
    assert code == 0, text
    assert "2 file(s) in --ref" in text and "hold CT values" in text and f"(case0{ext}, case1{ext})" in text
    assert "1 reference name(s) are another case's name with a tag after it ('case0' -> 'case0_liver_tsv1')" in text
    cases = list(csv.DictReader((tmp_path / "out" / "cases.csv").open(encoding="utf-8")))
    assert [row["case"] for row in cases] == ["case1"]
    labels = tmp_path / "labels"
    labels.mkdir()
    for name in ("case0", "case1"):
        shutil.copy(data / f"{labelled[name]}{ext}", labels / f"{name}{ext}")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert _evaluate("--pred", tmp_path / "pred", "--ref", labels, "-o", tmp_path / "out2", "--no-surface",
                         "--no-plots") == 0
    assert "hold CT values" not in capsys.readouterr().err + caplog.text
    cases = list(csv.DictReader((tmp_path / "out2" / "cases.csv").open(encoding="utf-8")))
    assert [row["case"] for row in cases] == ["case0", "case1"]


def test_the_tagged_names_hint_keeps_each_files_extension_and_reads_right_for_both_sides():
    """The hint advised 'case0.nii.gz' whatever the tagged file's format (a NRRD reference renamed so is a NRRD file
    under a NIfTI name, refused when read), and where predictions and references both held such names it said
    'rename (or link) each file file'."""
    from LiverTumorSegLib.commands.evaluate import tagged_names_hint

    mixed = tagged_names_hint(["case0", "case1-gt"], ["case0_liver_tsv1", "case1"])
    assert "2 file name(s) are another case's name" in mixed
    assert "file file" not in mixed and ".nii.gz" not in mixed, mixed
    assert "rename (or link) each such file to its case's name, keeping its extension (e.g. 'case0_liver_tsv1' " \
           "as 'case0')" in mixed, mixed
    assert tagged_names_hint(["case0"], ["case1"]) == ""


def test_a_lits_name_with_a_superscript_digit_is_a_name_not_a_case_number():
    """'volume-².nii': '²'.isdigit() is True and int('²') raised ValueError while pairing files (evaluate, batch
    listing); the name is now kept as written."""
    from pathlib import Path

    from LiverTumorSegLib.casenames import case_key

    assert case_key(Path("volume-\u00b2.nii")) == case_key(Path("volume-\u00b2.nii"))
    assert case_key(Path("volume-01.nii"))[0] == case_key(Path("segmentation-1.nii"))[0]


def test_a_prediction_whose_header_mirrors_it_is_named_not_only_scored(tmp_path, caplog):
    """A prediction equal to its reference but for a header flipped in x scored liver Dice 0.23, with the note
    'reoriented' in summary.json alone (the data-side audit). Now a warning says the voxels as stored would score
    1.0 and that a header is probably wrong. The same prediction stored flipped with a header that says so (a right
    reorientation) is not warned of."""
    import nibabel as nib

    data = Path(__file__).resolve().parents[1] / "Data" / "example_ct_sm_liver.nii.gz"
    ref = nib.load(str(data))
    voxels = np.asarray(ref.dataobj)
    flipped_axis = ref.affine.copy()
    flipped_axis[:, 0] *= -1
    flipped_axis[:3, 3] = ref.affine[:3, 3] + ref.affine[:3, 0] * (voxels.shape[0] - 1)
    nib.save(nib.Nifti1Image(voxels, ref.affine), str(tmp_path / "ref.nii.gz"))
    nib.save(nib.Nifti1Image(voxels, flipped_axis), str(tmp_path / "wrong.nii.gz"))  # voxels as drawn, header flipped
    nib.save(nib.Nifti1Image(np.ascontiguousarray(voxels[::-1]), flipped_axis), str(tmp_path / "right.nii.gz"))
    assert main(["evaluate", "--pred", str(tmp_path / "wrong.nii.gz"), "--ref", str(tmp_path / "ref.nii.gz"),
                 "-o", str(tmp_path / "a"), "--no-plots", "--no-surface", "--no-progress"]) == 0
    err = caplog.text
    assert "was reoriented onto it by its header, which gives liver Dice 0.2" in err
    assert "read in the reference's own voxel order it would be 1.0000" in err
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert "it would be 1.0000" in json.dumps(summary)
    assert main(["evaluate", "--pred", str(tmp_path / "right.nii.gz"), "--ref", str(tmp_path / "ref.nii.gz"),
                 "-o", str(tmp_path / "b"), "--no-plots", "--no-surface", "--no-progress"]) == 0
    assert caplog.text.count("probably wrong") == 1  # the first run's alone
    rows = list(csv.DictReader(open(tmp_path / "b" / "cases.csv")))
    assert float(rows[0]["dice_liver"]) == 1.0


def test_a_case_name_with_dollar_signs_is_drawn_as_written(tmp_path):
    """matplotlib read text between two '$' as math: a case named 'ct$\\x$' ended evaluate with an internal error
    (ParseFatalException) and nothing written, and 'case $1 and $2' was titled 'case 1and2' (the pictures audit).
    Texts of every picture are plain now."""
    from matplotlib.figure import Figure

    from LiverTumorSegLib.fileutil import picture_text_as_given

    labels = Path(__file__).resolve().parents[1] / "Data" / "ct3slice_liver_seg.nii.gz"
    for folder in ("p", "r"):
        (tmp_path / folder).mkdir()
        shutil.copy(labels, tmp_path / folder / "ct$\\x$.nii.gz")
    assert main(["evaluate", "--pred", str(tmp_path / "p"), "--ref", str(tmp_path / "r"), "-o", str(tmp_path / "o"),
                 "--no-surface", "--no-progress"]) == 0
    assert (tmp_path / "o" / "cases.csv").is_file() and list((tmp_path / "o" / "plots").glob("overlay_best_*.png"))

    @picture_text_as_given()
    def title(text):
        return Figure().suptitle(text)

    assert title("case $1 and $2").get_text() == "case $1 and $2" and not title("x").get_parse_math()


def test_cases_without_a_rank_metric_value_are_named_and_a_text_column_is_refused(tmp_path, capsys, caplog):
    """A case whose tumor was missed has no HD95 (undefined): it was left out of the 'worst' overlay without a word,
    and only the perfect case drawn; '--rank-metric case' read and scored every case, then drew nothing, exit 0
    (helper-404's audit)."""
    import logging

    for name in ("good.nii.gz", "missed.nii.gz"):
        phantom = _case(tmp_path / "ref", name)
        pred = phantom.labels.copy()
        if name.startswith("missed"):
            pred[pred == 2] = 1  # the tumor called liver
        (tmp_path / "pred").mkdir(exist_ok=True)
        write_label_map(tmp_path / "pred" / name, pred, phantom.ct.geometry)
    with caplog.at_level(logging.WARNING):
        assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / "out",
                         "--rank-metric", "hd95_tumor_mm", "--no-progress") == 0
    assert ("1 of 2 cases have no value of --rank-metric hd95_tumor_mm ('missed'; a surface distance is undefined"
            in caplog.text)
    code = _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / "out2",
                     "--rank-metric", "case", "--no-surface")
    err = capsys.readouterr().err
    assert code == 2 and "--rank-metric case is not a number in cases.csv" in err and "dice_liver" in err
    assert not (tmp_path / "out2").exists() or list((tmp_path / "out2").iterdir()) == []


def test_an_overlap_rank_metric_without_a_value_is_not_explained_as_a_surface_distance(tmp_path, caplog):
    """The warning said 'a surface distance is undefined' of every metric, iou_tumor under --no-surface too (the
    review)."""
    import logging

    for name, tumor in (("with.nii.gz", True), ("without.nii.gz", False)):
        for folder in ("ref", "pred"):
            _case(tmp_path / folder, name, tumor=tumor)
    with caplog.at_level(logging.WARNING):
        assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", tmp_path / "out",
                         "--rank-metric", "iou_tumor", "--no-surface", "--no-progress") == 0
    assert ("1 of 2 cases have no value of --rank-metric iou_tumor ('without'; undefined where neither side has that "
            "structure)") in caplog.text and "surface distance" not in caplog.text


def test_a_case_name_too_long_for_its_overlay_name_gets_a_cut_name_and_the_results(tmp_path):
    """A case named with 240 bytes (its label map's name within the limit) failed the whole evaluation after every
    case was scored: 'overlay_best_<case>.png' is 258 bytes, 'File name too long', nothing written (the portability
    audit). The overlay's case part is cut and ended with a digest; a second run with --overwrite replaces it."""
    long_name = "a" * 240
    for name in (long_name, "short"):
        phantom = _case(tmp_path / "ref", f"{name}.nii.gz")
        pred = phantom.labels.copy()
        if name == "short":
            pred[pred == 2] = 1  # a worse case
        (tmp_path / "pred").mkdir(exist_ok=True)
        write_label_map(tmp_path / "pred" / f"{name}.nii.gz", pred, phantom.ct.geometry)
    out = tmp_path / "out"
    for extra in ([], ["--overwrite"]):
        assert _evaluate("--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", out, "--no-surface",
                         "--rank-metric", "dice_tumor", "--no-progress", *extra) == 0
        rows = list(csv.DictReader(open(out / "cases.csv", newline="")))
        assert sorted(r["case"] for r in rows) == sorted([long_name, "short"])
        plots = sorted(p.name for p in (out / "plots").glob("overlay_*.png"))
        assert plots[0].startswith("overlay_best_aaaa") and len(plots[0].encode()) <= 255 and "~" in plots[0]
        assert plots[1] == "overlay_worst_short.png" and len(plots) == 2
